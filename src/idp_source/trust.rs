//! Whether a fetched metadata document may replace the one in use. Checked completely, and
//! only what was checked is kept:
//! - signed metadata (`[idp] metadata_signing_cert`): xmlsec against that certificate only
//!   (never KeyInfo), the ACS's algorithm allow-list, the signature over the whole
//!   EntityDescriptor; the signed canonical bytes are what is parsed and written;
//! - unsigned metadata (Salesforce): every signing certificate in it is already trusted (in the
//!   copy in use), pinned in `[idp] trusted_fingerprints`, or accepted with `samlgate idp
//!   trust` (kept in the store, so every instance sees it; audited);
//! - both: the same entityID as the copy in use, `validUntil` in the future.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use chrono::{DateTime, Utc};
use samael::crypto::{CertificateDer, Crypto, CryptoProvider, ReduceMode};
use samael::metadata::EntityDescriptor;
use serde::{Deserialize, Serialize};

use super::{FetchConfig, Trust};
use crate::saml::idp::IdpMetadata;
use crate::store::{Store, StoreError, Table};

/// Settings key prefix of a certificate accepted with `samlgate idp trust`.
pub const TRUST_PREFIX: &str = "idp_trust:";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrustRecord {
    pub fingerprint: String,
    pub by: String,
    pub at: String,
}

/// The fingerprints accepted with `samlgate idp trust`.
pub fn store_trusted(store: &dyn Store) -> Result<Vec<TrustRecord>, StoreError> {
    Ok(store
        .scan(Table::Settings, TRUST_PREFIX.as_bytes(), false, 10_000)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// Records `fingerprint` as trusted, with its audit line, in one batch; durable on return.
pub fn add_trusted(
    store: &dyn Store,
    fingerprint: &str,
    by: &str,
) -> Result<TrustRecord, StoreError> {
    let rec = TrustRecord {
        fingerprint: fingerprint.to_string(),
        by: by.to_string(),
        at: crate::identity::now_rfc3339(),
    };
    let key = format!("{TRUST_PREFIX}{fingerprint}");
    let line = crate::audit::entry(
        store,
        &format!("cli:{by}"),
        crate::audit::AuditAction::IdpTrust,
        fingerprint,
        "",
        None,
    )?;
    store.apply(&[crate::identity::put(Table::Settings, &key, &rec), line])?;
    Ok(rec)
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Invalid(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("signing certificate(s) not trusted: {}; check them with G-MIS, then `samlgate idp trust FINGERPRINT`", .0.join("; "))]
    Untrusted(Vec<String>),
    #[error("validUntil {0} has passed")]
    Expired(String),
}

/// A document that passed every check: what to keep and how long it may be cached.
pub struct Checked {
    pub md: IdpMetadata,
    /// Exactly the checked text (for signed metadata: the signed canonical bytes).
    pub text: String,
    pub cache_duration: Option<Duration>,
    pub valid_until: Option<DateTime<Utc>>,
}

pub fn check(
    body: &[u8],
    fc: &FetchConfig,
    current: &IdpMetadata,
    store_trusted: &[String],
    now: DateTime<Utc>,
) -> Result<Checked, CheckError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| CheckError::Invalid("not UTF-8".into()))?
        .trim_start_matches('\u{feff}');
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err(CheckError::Invalid(
            "contains a DOCTYPE or entity declaration".into(),
        ));
    }
    if !crate::saml::acs::strictly_well_formed(text) {
        return Err(CheckError::Invalid("not well-formed XML".into()));
    }
    let text = match &fc.trust {
        Trust::Signature { cert_der, .. } => signed_bytes(text, cert_der)?,
        Trust::Pinned { .. } => text.to_string(),
    };
    let md = IdpMetadata::parse(&text).map_err(CheckError::Invalid)?;
    if md.entity_id != current.entity_id {
        return Err(CheckError::Invalid(format!(
            "entityID changed from {} to {}; refused (a new IdP is a config change, not a refresh)",
            current.entity_id, md.entity_id
        )));
    }
    if let Trust::Pinned { fingerprints } = &fc.trust {
        let known = |fp: &String| {
            current.signing_certs.iter().any(|c| &c.fingerprint == fp)
                || fingerprints.contains(fp)
                || store_trusted.contains(fp)
        };
        let unknown: Vec<String> = md
            .signing_certs
            .iter()
            .filter(|c| !known(&c.fingerprint))
            .map(|c| format!("{} ({})", c.fingerprint, c.subject))
            .collect();
        if !unknown.is_empty() {
            return Err(CheckError::Untrusted(unknown));
        }
    }
    let ed: EntityDescriptor = text
        .parse()
        .map_err(|e| CheckError::Invalid(format!("EntityDescriptor: {e}")))?;
    if let Some(v) = ed.valid_until {
        if v <= now {
            return Err(CheckError::Expired(v.to_rfc3339()));
        }
    }
    let cache_duration = match ed.cache_duration.as_deref() {
        None => None,
        Some(d) => Some(parse_duration(d).ok_or_else(|| {
            CheckError::Invalid(format!("cacheDuration `{d}` is not an xs:duration"))
        })?),
    };
    Ok(Checked {
        md,
        text,
        cache_duration,
        valid_until: ed.valid_until,
    })
}

/// The canonical bytes the pinned certificate signed, when they are the whole EntityDescriptor.
fn signed_bytes(text: &str, cert_der: &[u8]) -> Result<String, CheckError> {
    let certs = [CertificateDer::from(cert_der.to_vec())];
    let reduced = catch_unwind(AssertUnwindSafe(|| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            text,
            &certs,
            ReduceMode::PreDigest,
            Some(&crate::saml::acs::ALLOWED_ALGORITHMS),
        )
    }))
    .map_err(|_| CheckError::Signature("xmlsec failed".into()))?
    .map_err(|e| CheckError::Signature(e.to_string()))?;
    if !root_is_entity_descriptor(&reduced) {
        return Err(CheckError::Signature(
            "the signature does not cover the EntityDescriptor".into(),
        ));
    }
    Ok(reduced)
}

fn root_is_entity_descriptor(xml: &str) -> bool {
    use quick_xml::events::Event;
    use quick_xml::name::{Namespace, ResolveResult};
    let mut r = quick_xml::NsReader::from_str(xml);
    loop {
        match r.read_resolved_event() {
            Ok((ns, Event::Start(e) | Event::Empty(e))) => {
                return matches!(ns, ResolveResult::Bound(Namespace(n)) if n == b"urn:oasis:names:tc:SAML:2.0:metadata")
                    && e.local_name().as_ref() == b"EntityDescriptor";
            }
            Ok((_, Event::Eof)) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// xs:duration (`PnYnMnDTnHnMnS`, a year as 365 days and a month as 30), whole seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut any = false;
    let mut eat = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let mult = units.iter().find(|(u, _)| *u == c)?.1;
            secs += num.parse::<f64>().ok()? * mult;
            num.clear();
            any = true;
        }
        num.is_empty().then_some(())
    };
    eat(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        eat(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    any.then(|| Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_b64() -> String {
        use base64::Engine;
        let (_k, c) = crate::keys::self_signed("idp.test", 10).unwrap();
        base64::engine::general_purpose::STANDARD.encode(c.to_der().unwrap())
    }

    fn md(entity: &str, cert: &str, attrs: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}"{attrs}><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    fn pinned(fps: Vec<String>) -> FetchConfig {
        FetchConfig {
            url: "https://idp.test/md.xml".into(),
            refresh: Duration::from_secs(3600),
            trust: Trust::Pinned { fingerprints: fps },
            ca_file: None,
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn pinned_checks() {
        let (a, b) = (cert_b64(), cert_b64());
        let e = "https://idp.test/idp";
        let current = IdpMetadata::parse(&md(e, &a, "")).unwrap();
        let now = Utc::now();
        let fresh = md(e, &b, r#" cacheDuration="PT2H""#);
        let fp_b = IdpMetadata::parse(&fresh).unwrap().signing_certs[0]
            .fingerprint
            .clone();
        // b unknown: refused, and named.
        match check(fresh.as_bytes(), &pinned(vec![]), &current, &[], now) {
            Err(CheckError::Untrusted(v)) => assert!(v[0].contains(&fp_b), "{v:?}"),
            other => panic!("{:?}", other.err()),
        }
        // Pinned in config, or trusted in the store: accepted, cacheDuration read.
        let ok = check(
            fresh.as_bytes(),
            &pinned(vec![fp_b.clone()]),
            &current,
            &[],
            now,
        )
        .unwrap();
        assert_eq!(ok.cache_duration, Some(Duration::from_secs(7200)));
        assert!(check(
            fresh.as_bytes(),
            &pinned(vec![]),
            &current,
            std::slice::from_ref(&fp_b),
            now
        )
        .is_ok());
        // The certificate in use needs no pin.
        assert!(check(
            md(e, &a, "").as_bytes(),
            &pinned(vec![]),
            &current,
            &[],
            now
        )
        .is_ok());
        // Another entityID, a past validUntil, a DOCTYPE: refused whatever the pins.
        let other = md("https://evil.test/idp", &b, "");
        let r = check(
            other.as_bytes(),
            &pinned(vec![fp_b.clone()]),
            &current,
            &[],
            now,
        );
        assert!(matches!(r, Err(CheckError::Invalid(ref m)) if m.contains("entityID changed")));
        let old = md(e, &b, r#" validUntil="2020-01-01T00:00:00Z""#);
        let r = check(
            old.as_bytes(),
            &pinned(vec![fp_b.clone()]),
            &current,
            &[],
            now,
        );
        assert!(matches!(r, Err(CheckError::Expired(_))));
        let dtd = format!("<!DOCTYPE x>{}", md(e, &b, ""));
        let r = check(dtd.as_bytes(), &pinned(vec![fp_b]), &current, &[], now);
        assert!(matches!(r, Err(CheckError::Invalid(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("P1DT30M"),
            Some(Duration::from_secs(86400 + 1800))
        );
        assert_eq!(parse_duration("PT10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("P"), None);
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_duration("1H"), None);
        assert_eq!(parse_duration("PT5X"), None);
    }
}
