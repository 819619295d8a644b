//! One HTTP GET over rustls (ring), with a deadline on the whole exchange and a cap on the body:
//! the metadata fetch and the status probe. No redirects are followed, no openssl TLS.
//!
//! Roots: `[idp] metadata_ca_file` when set (only those), otherwise the system bundle
//! (`SSL_CERT_FILE`, or the usual Debian/RHEL paths).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("larger than the cap of {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
}

const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, FetchError> {
    let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let path = match ca_file {
        Some(p) => p.to_path_buf(),
        None => env
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(std::path::PathBuf::from)
                    .find(|p| p.exists())
            })
            .ok_or_else(|| {
                FetchError::Failed("no CA bundle found; set [idp] metadata_ca_file".into())
            })?,
    };
    let pem = std::fs::read(&path)
        .map_err(|e| FetchError::Failed(format!("CA file {}: {e}", path.display())))?;
    let mut store = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        // A bundle may hold a certificate rustls cannot use; skip it rather than fail them all.
        let _ = store.add(c);
    }
    if store.is_empty() {
        return Err(FetchError::Failed(format!(
            "CA file {}: no usable certificate",
            path.display()
        )));
    }
    Ok(store)
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Failed(format!("tls: {e}")))?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth())
}

/// The answer to a GET: its status and (capped) body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GET `url` (https://, or http:// when `plain_ok`), everything within `timeout`.
pub async fn get(
    url: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
    max_bytes: usize,
    plain_ok: bool,
) -> Result<Answer, FetchError> {
    tokio::time::timeout(timeout, get_inner(url, ca_file, max_bytes, plain_ok))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

/// Aborts the connection task when the request ends (also by the deadline).
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn get_inner(
    url: &str,
    ca_file: Option<&Path>,
    max_bytes: usize,
    plain_ok: bool,
) -> Result<Answer, FetchError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| FetchError::Failed(format!("{what}: {e}"));
    let uri: hyper::Uri = url.parse().map_err(|e| fail("URL", &e))?;
    let https = uri.scheme_str() == Some("https");
    let plain = plain_ok && uri.scheme_str() == Some("http");
    if !(https || plain) {
        return Err(FetchError::Failed(format!("{url}: not an https:// URL")));
    }
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Failed("URL has no host".into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| fail(&format!("connect {host}:{port}"), &e))?;
    let req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .header(hyper::header::USER_AGENT, "samlgate")
        .header(
            hyper::header::ACCEPT,
            "application/samlmetadata+xml, application/xml, text/xml, */*",
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("request", &e))?;
    if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| fail("server name", &e))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca_file)?));
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| fail("TLS", &e))?;
        exchange(TokioIo::new(tls), req, max_bytes).await
    } else {
        exchange(TokioIo::new(tcp), req, max_bytes).await
    }
}

async fn exchange<T>(
    io: T,
    req: hyper::Request<Empty<Bytes>>,
    max_bytes: usize,
) -> Result<Answer, FetchError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let fail = |what: &str, e: &dyn std::fmt::Display| FetchError::Failed(format!("{what}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| fail("HTTP", &e))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail("HTTP", &e))?;
    let status = resp.status().as_u16();
    let declared = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| fail("body", &e))?;
        if let Some(d) = frame.data_ref() {
            if out.len() + d.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            out.extend_from_slice(d);
        }
    }
    Ok(Answer { status, body: out })
}
