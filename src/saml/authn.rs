//! SP-initiated login: the AuthnRequest, its HTTP-Redirect binding and signature, and the
//! request tracker that binds a response's InResponseTo to the browser that started it.
//!
//! Written here rather than with samael: samael's request IDs carry 32 random bits and its
//! POST form does not escape RelayState (research/samael.md §4). Properties:
//! - request IDs carry 128 random bits;
//! - the Redirect signature is computed over the exact query octets sent (SAML bindings
//!   3.4.4.1), RSA-SHA256 with the active SP key;
//! - an SP-initiated request's state (ID, RelayState handle, return path, expiry) rides in a
//!   cookie sealed with the session MAC key, so an anonymous `/saml/login` writes nothing to
//!   the store; the request is consumed at most once (recorded in the replay cache when a
//!   verified response answers it) and expires after [`REQUEST_TTL_SECS`];
//! - the tracked-request table remains for SP-initiated logout (a signed-in user's request).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};

use super::metadata::xml_escape;
use crate::store::{Commit, Store, StoreError, Table};

pub const SIG_ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const REQUEST_TTL_SECS: i64 = 600;

pub fn new_request_id() -> String {
    format!("_{}", hex::encode(rand::random::<[u8; 16]>()))
}

pub struct AuthnRequest<'a> {
    pub id: &'a str,
    pub destination: &'a str,
    pub acs_url: &'a str,
    pub issuer: &'a str,
    pub name_id_format: Option<&'a str>,
    pub force_authn: bool,
}

impl AuthnRequest<'_> {
    pub fn to_xml(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let policy = self
            .name_id_format
            .map(|f| {
                format!(
                    r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#,
                    xml_escape(f)
                )
            })
            .unwrap_or_default();
        let force = if self.force_authn {
            r#" ForceAuthn="true""#
        } else {
            ""
        };
        format!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{ii}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"{force}><saml:Issuer>{issuer}</saml:Issuer>{policy}</samlp:AuthnRequest>"#,
            id = xml_escape(self.id),
            ii = now.format("%Y-%m-%dT%H:%M:%SZ"),
            dest = xml_escape(self.destination),
            acs = xml_escape(self.acs_url),
            issuer = xml_escape(self.issuer),
        )
    }
}

fn url_encode(s: &[u8]) -> String {
    form_urlencoded::byte_serialize(s).collect()
}

/// Why a Redirect-binding URL could not be made (the caller logs it; the person gets
/// `internal_error` or the local logout page).
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("deflate: {0}")]
    Deflate(#[from] std::io::Error),
    #[error("signature: {0}")]
    Sign(#[from] openssl::error::ErrorStack),
}

/// The HTTP-Redirect binding URL: DEFLATE + base64 + URL-encode, and when `key` is given the
/// signature over `SAMLRequest=..&RelayState=..&SigAlg=..` exactly as sent.
pub fn redirect_url(
    sso_url: &str,
    xml: &str,
    relay_state: &str,
    key: Option<&PKey<Private>>,
) -> Result<String, BindingError> {
    redirect_binding("SAMLRequest", sso_url, xml, relay_state, key)
}

/// The same for any message: `param` is `SAMLRequest` or `SAMLResponse`.
pub fn redirect_binding(
    param: &str,
    sso_url: &str,
    xml: &str,
    relay_state: &str,
    key: Option<&PKey<Private>>,
) -> Result<String, BindingError> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(xml.as_bytes())?;
    let deflated = enc.finish()?;
    let mut query = format!("{param}={}", url_encode(B64.encode(deflated).as_bytes()));
    if !relay_state.is_empty() {
        query.push_str(&format!(
            "&RelayState={}",
            url_encode(relay_state.as_bytes())
        ));
    }
    if let Some(key) = key {
        query.push_str(&format!(
            "&SigAlg={}",
            url_encode(SIG_ALG_RSA_SHA256.as_bytes())
        ));
        let mut signer = Signer::new(MessageDigest::sha256(), key)?;
        signer.update(query.as_bytes())?;
        let sig = signer.sign_to_vec()?;
        query.push_str(&format!(
            "&Signature={}",
            url_encode(B64.encode(sig).as_bytes())
        ));
    }
    let sep = if sso_url.contains('?') { '&' } else { '?' };
    Ok(format!("{sso_url}{sep}{query}"))
}

/// An SP-initiated login in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackedRequest {
    pub id: String,
    /// The opaque RelayState sent with the request; the response must bring it back.
    pub relay_handle: String,
    /// Where to go after login (a checked same-origin path).
    pub return_to: String,
    /// Unix seconds.
    pub expires: i64,
}

/// The purpose label of a sealed login request (`SessionCodec::seal_data`).
const COOKIE_PURPOSE: &str = "req1";

/// The request cookie's value: the whole request, sealed (JSON, base64url, MAC).
pub fn seal(codec: &crate::session::SessionCodec, r: &TrackedRequest) -> String {
    codec.seal_data(COOKIE_PURPOSE, &serde_json::to_vec(r).expect("serialize"))
}

/// The request sealed in a cookie value, if it is ours, intact and not expired.
pub fn open(codec: &crate::session::SessionCodec, token: &str, now: i64) -> Option<TrackedRequest> {
    let data = codec.open_data(COOKIE_PURPOSE, token)?;
    serde_json::from_slice::<TrackedRequest>(&data)
        .ok()
        .filter(|r| r.expires > now)
}

/// Records that a verified response answered request `id`: true for exactly one caller (the
/// replay cache's atomic check-and-record), kept until the request would have expired anyway.
pub fn answer_once(store: &dyn Store, r: &TrackedRequest, now: i64) -> Result<bool, StoreError> {
    // `kind NUL idp NUL id`, the shape every replay key has (PostgreSQL stores the three
    // parts in typed columns; a two-part key kept its NUL in the id, which text refuses).
    let key = format!("r\u{0}\u{0}{}", r.id);
    Ok(matches!(
        store.replay_check_and_record(&key, r.expires + 1, now)?,
        crate::store::ReplayCheck::Fresh
    ))
}

pub fn track(store: &dyn Store, r: &TrackedRequest) -> Result<(), StoreError> {
    store.apply(&[crate::identity::put(Table::Requests, &r.id, r)])?;
    Ok(())
}

/// The live tracked request with this id, without consuming it.
pub fn lookup(store: &dyn Store, id: &str, now: i64) -> Result<Option<TrackedRequest>, StoreError> {
    let r: Option<TrackedRequest> = crate::identity::load(store, Table::Requests, id)?;
    Ok(r.filter(|r| r.expires > now))
}

/// Consumes the request: true for exactly one caller.
pub fn consume(store: &dyn Store, r: &TrackedRequest) -> Result<bool, StoreError> {
    let (now, read) =
        crate::identity::load_versioned::<TrackedRequest>(store, Table::Requests, &r.id)?;
    // As it was looked up, else another answer consumed (or replaced) it meanwhile.
    if now.as_ref() != Some(r) {
        return Ok(false);
    }
    let consume = (Table::Requests, r.id.as_bytes().to_vec(), None);
    store.commit(&Commit::guarded(&read, vec![consume]))
}

/// Deletes expired tracked requests.
pub fn sweep(store: &dyn Store, now: i64) -> Result<usize, StoreError> {
    store.expired_sweep(Table::Requests, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_request_round_trip_expiry_and_single_answer() {
        let codec = crate::session::SessionCodec::new(vec![3; 32], false);
        let r = TrackedRequest {
            id: new_request_id(),
            relay_handle: "h".into(),
            return_to: "/staff/menu?x=1".into(),
            expires: 1_000,
        };
        let t = seal(&codec, &r);
        assert_eq!(open(&codec, &t, 999), Some(r.clone()));
        assert_eq!(open(&codec, &t, 1_000), None, "expired");
        assert_eq!(
            open(&codec, &codec.seal(&r.id), 0),
            None,
            "a bare id is not a request"
        );
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(&dir.path().join("db")).unwrap();
        assert!(answer_once(&store, &r, 10).unwrap());
        assert!(!answer_once(&store, &r, 11).unwrap());
    }

    #[test]
    fn ids_have_128_bits() {
        let a = new_request_id();
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_'));
        assert_ne!(a, new_request_id());
    }

    #[test]
    fn xml_is_escaped() {
        let r = AuthnRequest {
            id: "_1",
            destination: "https://idp/sso?a=1&b=2",
            acs_url: "https://sp/saml/acs",
            issuer: "https://sp/\"meta\"",
            name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
            force_authn: false,
        };
        let x = r.to_xml(chrono::Utc::now());
        assert!(x.contains("Destination=\"https://idp/sso?a=1&amp;b=2\""));
        assert!(x.contains("https://sp/&quot;meta&quot;"));
        assert!(x.contains("NameIDPolicy"));
    }

    #[test]
    fn redirect_signature_covers_the_query_as_sent() {
        let (key, cert) = crate::keys::self_signed("sp", 1).unwrap();
        let url = redirect_url(
            "https://idp/sso?x=1",
            "<samlp:AuthnRequest/>",
            "h a/ndle",
            Some(&key),
        )
        .unwrap();
        let (base, query) = url.split_once("?x=1&").unwrap();
        assert_eq!(base, "https://idp/sso");
        let (signed, sig) = query.rsplit_once("&Signature=").unwrap();
        assert!(signed.contains("&RelayState=h+a%2Fndle&SigAlg="));
        let sig: Vec<u8> = form_urlencoded::parse(format!("s={sig}").as_bytes())
            .next()
            .map(|(_, v)| B64.decode(v.as_bytes()).unwrap())
            .unwrap();
        let pk = cert.public_key().unwrap();
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &pk).unwrap();
        v.update(signed.as_bytes()).unwrap();
        assert!(v.verify(&sig).unwrap());
    }
}
