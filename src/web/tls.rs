//! TLS with rustls: the server certificate and key from PEM files.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;

/// A TLS acceptor for the PEM certificate chain and private key. Errors name the file.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let cfg = server_config(cert, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| format!("[server] tls: cannot read {}: {e}", p.display()))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("[server] tls.cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "[server] tls.cert {}: no PEM certificate found",
            cert.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("[server] tls.key {}: {e}", key.display()))?
        .ok_or_else(|| {
            format!(
                "[server] tls.key {}: no PEM private key found",
                key.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("[server] tls: certificate and key do not match or are unusable: {e}")
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
