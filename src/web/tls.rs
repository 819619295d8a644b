//! TLS with rustls. The certificate sits behind a resolver that can be swapped while serving:
//! handshakes in progress keep the key they started with; new ones get the new certificate.

use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("tls lock").clone())
    }
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, String> {
        Ok(Arc::new(CertStore {
            current: RwLock::new(Arc::new(certified_key(cert, key)?)),
        }))
    }

    /// Loads the files again; on any error the current certificate keeps serving.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<String, String> {
        let ck = certified_key(cert, key)?;
        let fp = fingerprint(&ck);
        *self.current.write().expect("tls lock") = Arc::new(ck);
        Ok(fp)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current.read().expect("tls lock"))
    }

    /// notAfter of the serving certificate, unix seconds.
    pub fn not_after(&self) -> i64 {
        let ck = self.current.read().expect("tls lock").clone();
        ck.cert
            .first()
            .and_then(|c| openssl::x509::X509::from_der(c.as_ref()).ok())
            .map(|x| crate::saml::idp::asn1_to_unix(x.not_after()))
            .unwrap_or(0)
    }
}

fn fingerprint(ck: &CertifiedKey) -> String {
    ck.cert
        .first()
        .map(|c| hex::encode(openssl::sha::sha256(c.as_ref())))
        .unwrap_or_default()
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
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
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("[server] tls.key {}: {e}", key.display()))?
        .ok_or_else(|| {
            format!(
                "[server] tls.key {}: no PEM private key found",
                key.display()
            )
        })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("[server] tls.key {}: {e}", key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| format!("[server] tls: certificate and key do not match: {e}"))?;
    Ok(ck)
}

pub fn acceptor(store: Arc<CertStore>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
