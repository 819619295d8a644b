//! IdP metadata in: the entityID, every signing certificate, the SSO and SLO endpoints.
//!
//! Security property: [`IdpMetadata::load`] never returns a value without at least one usable
//! signing certificate. samael parses a response *unverified* when it is given no certificate;
//! refusing here (at start and on reload) closes that door for the whole process.

use std::path::Path;

use samael::crypto::CertificateDer;
use samael::metadata::EntityDescriptor;

pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("IdP metadata {path}: {msg}")]
    Invalid { path: String, msg: String },
}

/// One IdP signing certificate, parsed once at load.
#[derive(Clone)]
pub struct SigningCert {
    pub der: CertificateDer,
    pub subject: String,
    pub fingerprint: String,
    /// Unix seconds.
    pub not_after: i64,
}

#[derive(Clone)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub signing_certs: Vec<SigningCert>,
    /// The DER certificates as samael wants them (same order as `signing_certs`).
    pub certs_der: Vec<CertificateDer>,
    pub sso_redirect: Option<String>,
    pub sso_post: Option<String>,
    pub slo_redirect: Option<String>,
    pub slo_post: Option<String>,
}

impl IdpMetadata {
    pub fn load(path: &Path) -> Result<IdpMetadata, MetadataError> {
        let text = std::fs::read_to_string(path).map_err(|e| MetadataError::Invalid {
            path: path.display().to_string(),
            msg: format!("cannot read: {e}\n  fix: set [idp] metadata to the file G-MIS publishes"),
        })?;
        Self::parse(&text).map_err(|msg| MetadataError::Invalid {
            path: path.display().to_string(),
            msg,
        })
    }

    pub fn parse(xml: &str) -> Result<IdpMetadata, String> {
        if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
            return Err("contains a DOCTYPE or entity declaration; refused".into());
        }
        let ed: EntityDescriptor = xml
            .parse()
            .map_err(|e| format!("not SAML metadata (EntityDescriptor): {e}"))?;
        let entity_id = ed
            .entity_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or("EntityDescriptor has no entityID")?;
        let idps = ed
            .idp_sso_descriptors
            .as_ref()
            .filter(|v| !v.is_empty())
            .ok_or("no IDPSSODescriptor: this is not an IdP's metadata")?;

        let mut signing_certs = Vec::new();
        let mut sso_redirect = None;
        let mut sso_post = None;
        let mut slo_redirect = None;
        let mut slo_post = None;
        for idp in idps {
            for kd in &idp.key_descriptors {
                // use="signing" or no use at all (usable for both); never use="encryption".
                let usable = matches!(kd.key_use.as_deref(), None | Some("") | Some("signing"));
                if !usable {
                    continue;
                }
                for b64 in kd
                    .key_info
                    .x509_data
                    .iter()
                    .flat_map(|d| d.certificates.iter())
                {
                    let cert = parse_cert(b64)?;
                    if !signing_certs
                        .iter()
                        .any(|c: &SigningCert| c.fingerprint == cert.fingerprint)
                    {
                        signing_certs.push(cert);
                    }
                }
            }
            for s in &idp.single_sign_on_services {
                match s.binding.as_str() {
                    BINDING_REDIRECT => sso_redirect = sso_redirect.or(Some(s.location.clone())),
                    BINDING_POST => sso_post = sso_post.or(Some(s.location.clone())),
                    _ => {}
                }
            }
            for s in &idp.single_logout_services {
                match s.binding.as_str() {
                    BINDING_REDIRECT => slo_redirect = slo_redirect.or(Some(s.location.clone())),
                    BINDING_POST => slo_post = slo_post.or(Some(s.location.clone())),
                    _ => {}
                }
            }
        }
        if signing_certs.is_empty() {
            return Err("no signing certificate (KeyDescriptor use=\"signing\" or without use) with an X509Certificate; \
                        samlgate will not start without one, because it could not verify any response\n  \
                        fix: use the IdP's full metadata, which lists its signing certificate"
                .into());
        }
        let certs_der = signing_certs.iter().map(|c| c.der.clone()).collect();
        Ok(IdpMetadata {
            entity_id,
            signing_certs,
            certs_der,
            sso_redirect,
            sso_post,
            slo_redirect,
            slo_post,
        })
    }
}

fn parse_cert(b64: &str) -> Result<SigningCert, String> {
    use base64::Engine;
    let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| format!("X509Certificate is not base64: {e}"))?;
    let x = openssl::x509::X509::from_der(&der)
        .map_err(|e| format!("X509Certificate does not parse: {e}"))?;
    let key = x
        .public_key()
        .map_err(|e| format!("certificate public key: {e}"))?;
    let ok_key = match key.id() {
        openssl::pkey::Id::RSA => key.bits() >= 2048,
        openssl::pkey::Id::EC => true,
        _ => false,
    };
    if !ok_key {
        return Err(format!(
            "signing certificate {} has a {}-bit {:?} key; RSA >= 2048 or ECDSA required",
            subject_of(&x),
            key.bits(),
            key.id()
        ));
    }
    let fp = openssl::sha::sha256(&der);
    let not_after = asn1_to_unix(x.not_after());
    Ok(SigningCert {
        subject: subject_of(&x),
        fingerprint: fp
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        not_after,
        der: CertificateDer::from(der),
    })
}

pub fn subject_of(x: &openssl::x509::X509) -> String {
    x.subject_name()
        .entries()
        .filter_map(|e| e.data().to_string().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// Seconds since the epoch of an ASN.1 time.
pub fn asn1_to_unix(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).expect("epoch");
    epoch
        .diff(t)
        .map(|d| d.days as i64 * 86400 + d.secs as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_b64() -> String {
        use base64::Engine;
        let (_k, c) = crate::keys::self_signed("idp.test", 10).unwrap();
        base64::engine::general_purpose::STANDARD.encode(c.to_der().unwrap())
    }

    fn md(kds: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://gmis-idp.test/idp">
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{kds}
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://gmis-idp.test/idp/sso"/>
</md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    fn kd(use_: &str, cert: &str) -> String {
        format!(
            r#"<md:KeyDescriptor{use_}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        )
    }

    #[test]
    fn two_signing_certs_are_both_trusted() {
        let (a, b) = (cert_b64(), cert_b64());
        let m = IdpMetadata::parse(&md(&(kd(" use=\"signing\"", &a) + &kd("", &b)))).unwrap();
        assert_eq!(m.entity_id, "https://gmis-idp.test/idp");
        assert_eq!(m.signing_certs.len(), 2);
        assert_eq!(
            m.sso_redirect.as_deref(),
            Some("https://gmis-idp.test/idp/sso")
        );
    }

    #[test]
    fn encryption_only_metadata_is_refused() {
        let err = IdpMetadata::parse(&md(&kd(" use=\"encryption\"", &cert_b64())))
            .err()
            .unwrap();
        assert!(err.contains("no signing certificate"), "{err}");
    }

    #[test]
    fn no_keydescriptor_is_refused() {
        assert!(IdpMetadata::parse(&md("")).is_err());
    }

    #[test]
    fn doctype_in_metadata_is_refused() {
        let x = format!(
            "<!DOCTYPE x [<!ENTITY e \"x\">]>{}",
            md(&kd("", &cert_b64()))
        );
        assert!(IdpMetadata::parse(&x).err().unwrap().contains("DOCTYPE"));
    }
}
