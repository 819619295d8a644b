//! Single logout: LogoutRequest/LogoutResponse out, and the IdP's messages in on the
//! HTTP-Redirect and HTTP-POST bindings.
//!
//! Written here rather than with samael, whose LogoutRequest serialiser puts SessionIndex before
//! NameID, loses SessionIndex on parse, does not escape the NameID, and whose Redirect
//! signature check re-encodes the query and panics on a missing SigAlg (research/samael.md §4).
//!
//! Security properties:
//! - a Redirect-binding signature is verified over the query octets exactly as received, with
//!   the IdP's metadata certificates only; SigAlg is allow-listed (no SHA-1 unless
//!   `[idp] allow_sha1 = true`); a message without SigAlg or Signature is refused, never a panic;
//! - the DEFLATE payload is inflated with a hard output limit ([`MAX_INFLATED`]);
//! - a POST-binding message is verified by xmlsec like a Response (PreDigest: only signed
//!   bytes are read) after the same DOCTYPE refusal;
//! - every value put into XML is escaped.

use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

use super::idp::IdpMetadata;
use super::metadata::xml_escape;
use super::prescan::{resolve_predefined, NS_ASSERTION, NS_PROTOCOL};

/// A LogoutRequest is a few hundred bytes; anything that inflates past this is refused.
pub const MAX_INFLATED: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SloError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("{0}")]
    Invalid(String),
}

fn mal(m: impl Into<String>) -> SloError {
    SloError::Malformed(m.into())
}

/// A LogoutRequest from the IdP, read from verified bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogoutRequestIn {
    pub id: String,
    pub issuer: String,
    pub destination: Option<String>,
    pub issue_instant: Option<chrono::DateTime<chrono::Utc>>,
    pub not_on_or_after: Option<chrono::DateTime<chrono::Utc>>,
    pub name_id: String,
    pub session_indexes: Vec<String>,
}

/// A LogoutResponse from the IdP (answering our LogoutRequest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogoutResponseIn {
    pub id: String,
    pub issuer: String,
    pub in_response_to: Option<String>,
    pub destination: Option<String>,
    pub status: Option<String>,
}

/// Which message a binding carried.
#[derive(Debug, Clone, PartialEq)]
pub enum SloMessage {
    Request(LogoutRequestIn),
    Response(LogoutResponseIn),
}

/// A SigAlg URI and the digest it uses.
type SigAlg = (&'static str, fn() -> MessageDigest);

const ALLOWED_SIG_ALGS: [SigAlg; 6] = [
    (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        MessageDigest::sha256,
    ),
    (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        MessageDigest::sha384,
    ),
    (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        MessageDigest::sha512,
    ),
    (
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        MessageDigest::sha256,
    ),
    (
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        MessageDigest::sha384,
    ),
    (
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        MessageDigest::sha512,
    ),
];

/// RSA-SHA1, only with `[idp] allow_sha1 = true`.
const RSA_SHA1: SigAlg = (
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    MessageDigest::sha1,
);

fn url_decode(raw: &str) -> Result<String, SloError> {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| mal("query value is not UTF-8"))
}

/// A verified HTTP-Redirect binding message.
#[derive(Debug, Clone, PartialEq)]
pub struct RedirectMessage {
    pub xml: String,
    /// Decoded from exactly the raw `RelayState=` pair the signature covered. A reader of
    /// its own (a form parser that decodes `Relay%53tate`, or takes the first of two) would
    /// see an unsigned value.
    pub relay_state: Option<String>,
}

/// Verifies an HTTP-Redirect binding message over the raw query and returns its XML and the
/// signed RelayState.
pub fn verify_redirect(
    raw_query: &str,
    idp: &IdpMetadata,
    allow_sha1: bool,
) -> Result<RedirectMessage, SloError> {
    let mut msg: Option<(&str, &str)> = None;
    let mut relay = None;
    let mut sig_alg = None;
    let mut signature = None;
    for part in raw_query.split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let slot = match k {
            "SAMLRequest" | "SAMLResponse" => {
                if msg.is_some() {
                    return Err(mal("two SAML messages in one query"));
                }
                msg = Some((k, v));
                continue;
            }
            "RelayState" => &mut relay,
            "SigAlg" => &mut sig_alg,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.is_some() {
            return Err(mal(format!("{k} given twice")));
        }
        *slot = Some(v);
    }
    let (name, value) = msg.ok_or_else(|| mal("no SAMLRequest or SAMLResponse"))?;
    let sig_alg_raw = sig_alg.ok_or_else(|| SloError::Signature("unsigned (no SigAlg)".into()))?;
    let sig_raw = signature.ok_or_else(|| SloError::Signature("unsigned (no Signature)".into()))?;
    let alg = url_decode(sig_alg_raw)?;
    let md = ALLOWED_SIG_ALGS
        .iter()
        .chain(allow_sha1.then_some(&RSA_SHA1))
        .find(|(uri, _)| *uri == alg)
        .map(|(_, md)| md())
        .ok_or_else(|| SloError::Signature(format!("SigAlg {alg} not allowed")))?;
    // The signed octets, in the order the binding defines, exactly as received.
    let mut signed = format!("{name}={value}");
    if let Some(r) = relay {
        signed.push_str(&format!("&RelayState={r}"));
    }
    signed.push_str(&format!("&SigAlg={sig_alg_raw}"));
    let sig = B64
        .decode(url_decode(sig_raw)?.as_bytes())
        .map_err(|_| SloError::Signature("Signature is not base64".into()))?;
    let mut ok = false;
    for c in &idp.signing_certs {
        let Ok(x) = openssl::x509::X509::from_der(c.der.der_data()) else {
            continue;
        };
        let Ok(pk) = x.public_key() else { continue };
        let Ok(mut v) = Verifier::new(md, &pk) else {
            continue;
        };
        if v.update(signed.as_bytes()).is_ok() && v.verify(&sig).unwrap_or(false) {
            ok = true;
            break;
        }
    }
    if !ok {
        return Err(SloError::Signature(
            "does not verify with any IdP signing certificate".into(),
        ));
    }
    let deflated = B64
        .decode(url_decode(value)?.as_bytes())
        .map_err(|_| mal("message is not base64"))?;
    Ok(RedirectMessage {
        xml: inflate(&deflated)?,
        relay_state: relay.map(url_decode).transpose()?,
    })
}

/// Raw DEFLATE with a hard output limit.
pub fn inflate(data: &[u8]) -> Result<String, SloError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(data)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|_| mal("message does not inflate"))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(mal(format!("message inflates past {MAX_INFLATED} bytes")));
    }
    String::from_utf8(out).map_err(|_| mal("message is not UTF-8"))
}

/// Verifies an HTTP-POST binding message (enveloped XML signature) and returns the signed bytes.
pub fn verify_post(b64: &str, idp: &IdpMetadata, allow_sha1: bool) -> Result<String, SloError> {
    use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
    let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = B64
        .decode(clean.as_bytes())
        .map_err(|_| mal("message is not base64"))?;
    let xml = String::from_utf8(bytes).map_err(|_| mal("message is not UTF-8"))?;
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(mal("DOCTYPE refused"));
    }
    if !super::acs::strictly_well_formed(&xml) {
        return Err(mal("not well-formed (strict parse)"));
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            &xml,
            &idp.certs_der,
            ReduceMode::PreDigest,
            Some(if allow_sha1 {
                &super::acs::ALLOWED_ALGORITHMS_WITH_SHA1[..]
            } else {
                &super::acs::ALLOWED_ALGORITHMS[..]
            }),
        )
    }));
    match r {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(SloError::Signature(format!("xmlsec: {e}"))),
        Err(_) => Err(SloError::Signature(
            "verification panicked (contained)".into(),
        )),
    }
}

/// The root's attributes, into both readings (which one applies is known by its name).
fn read_root(
    attr: &dyn Fn(&[u8]) -> Option<String>,
    req: &mut LogoutRequestIn,
    resp: &mut LogoutResponseIn,
) {
    let when = |v: Option<String>| {
        v.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    req.id = attr(b"ID").unwrap_or_default();
    req.destination = attr(b"Destination");
    req.issue_instant = when(attr(b"IssueInstant"));
    req.not_on_or_after = when(attr(b"NotOnOrAfter"));
    resp.id = req.id.clone();
    resp.destination = req.destination.clone();
    resp.in_response_to = attr(b"InResponseTo");
}

/// What `parse` has read so far: the root's kind, both readings, and the depth-1 element whose
/// text is being collected.
#[derive(Default)]
struct SloReader {
    depth: usize,
    root: Option<&'static str>,
    req: LogoutRequestIn,
    resp: LogoutResponseIn,
    text_target: Option<&'static str>,
    text: String,
}

impl SloReader {
    /// A Start or Empty element: the root, a depth-1 child whose text we want, or the
    /// response's first StatusCode.
    fn element(
        &mut self,
        local: &[u8],
        in_ns: &dyn Fn(&[u8]) -> bool,
        attr: &dyn Fn(&[u8]) -> Option<String>,
        empty: bool,
    ) -> Result<(), SloError> {
        if self.depth == 0 {
            self.root = match (in_ns(NS_PROTOCOL), local) {
                (true, b"LogoutRequest") => Some("request"),
                (true, b"LogoutResponse") => Some("response"),
                _ => return Err(mal("not a LogoutRequest or LogoutResponse")),
            };
            read_root(attr, &mut self.req, &mut self.resp);
        } else if self.depth == 1 {
            self.text_target = match (local, in_ns(NS_ASSERTION), in_ns(NS_PROTOCOL)) {
                (b"Issuer", true, _) => Some("issuer"),
                (b"NameID", true, _) => Some("name_id"),
                (b"SessionIndex", _, true) => Some("session_index"),
                _ => None,
            };
            self.text.clear();
        } else if self.depth == 2
            && local == b"StatusCode"
            && in_ns(NS_PROTOCOL)
            && self.resp.status.is_none()
        {
            self.resp.status = attr(b"Value");
        }
        if !empty {
            self.depth += 1;
        } else if self.depth == 1 {
            self.text_target = None;
        }
        Ok(())
    }

    /// An End: closing a depth-1 child stores its collected text.
    fn end(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 1 {
            let v = self.text.trim().to_string();
            match self.text_target.take() {
                Some("issuer") => {
                    self.req.issuer = v.clone();
                    self.resp.issuer = v;
                }
                Some("name_id") => self.req.name_id = v,
                Some("session_index") => self.req.session_indexes.push(v),
                _ => {}
            }
        }
    }

    fn finish(self) -> Result<SloMessage, SloError> {
        match self.root {
            Some("request") => Ok(SloMessage::Request(self.req)),
            Some("response") => Ok(SloMessage::Response(self.resp)),
            _ => Err(mal("empty document")),
        }
    }
}

/// Parses a (verified) LogoutRequest or LogoutResponse.
pub fn parse(xml: &str) -> Result<SloMessage, SloError> {
    let mut r = NsReader::from_str(xml);
    let mut st = SloReader::default();
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| mal(format!("XML: {e}")))?;
        let in_ns = |want: &[u8]| matches!(ns, ResolveResult::Bound(Namespace(n)) if n == want);
        let collecting = st.text_target.is_some();
        match ev {
            Event::DocType(_) => return Err(mal("DOCTYPE refused")),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let attr = |name: &[u8]| -> Option<String> {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()
                                .map(|v| v.into_owned())
                        })
                };
                let empty = matches!(ev, Event::Empty(_));
                st.element(e.local_name().as_ref(), &in_ns, &attr, empty)?;
            }
            Event::Text(t) if collecting => {
                st.text
                    .push_str(&t.decode().map_err(|_| mal("text encoding"))?);
            }
            Event::GeneralRef(g) if collecting => {
                let n = g.decode().map_err(|_| mal("reference"))?;
                st.text
                    .push_str(&resolve_predefined(&n).ok_or_else(|| mal(format!("entity &{n};")))?);
            }
            Event::CData(c) if collecting => {
                st.text
                    .push_str(&c.decode().map_err(|_| mal("CDATA encoding"))?);
            }
            Event::End(_) => st.end(),
            Event::Eof => break,
            _ => {}
        }
    }
    st.finish()
}

pub struct LogoutRequestOut<'a> {
    pub id: &'a str,
    pub destination: &'a str,
    pub issuer: &'a str,
    pub name_id: &'a str,
    pub name_id_format: Option<&'a str>,
    pub session_index: Option<&'a str>,
}

impl LogoutRequestOut<'_> {
    /// NameID before SessionIndex (schema order), every value escaped.
    pub fn to_xml(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let fmt = self
            .name_id_format
            .map(|f| format!(r#" Format="{}""#, xml_escape(f)))
            .unwrap_or_default();
        let si = self
            .session_index
            .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", xml_escape(s)))
            .unwrap_or_default();
        format!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{}" Version="2.0" IssueInstant="{}" Destination="{}" NotOnOrAfter="{}"><saml:Issuer>{}</saml:Issuer><saml:NameID{fmt}>{}</saml:NameID>{si}</samlp:LogoutRequest>"#,
            xml_escape(self.id),
            now.format("%Y-%m-%dT%H:%M:%SZ"),
            xml_escape(self.destination),
            (now + chrono::Duration::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ"),
            xml_escape(self.issuer),
            xml_escape(self.name_id),
        )
    }
}

pub fn logout_response_xml(
    id: &str,
    in_response_to: &str,
    destination: &str,
    issuer: &str,
    status: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    format!(
        r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{}" Version="2.0" IssueInstant="{}" Destination="{}" InResponseTo="{}"><saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{}"/></samlp:Status></samlp:LogoutResponse>"#,
        xml_escape(id),
        now.format("%Y-%m-%dT%H:%M:%SZ"),
        xml_escape(destination),
        xml_escape(in_response_to),
        xml_escape(issuer),
        xml_escape(status),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_request_is_ordered_and_escaped() {
        let x = LogoutRequestOut {
            id: "_1",
            destination: "https://idp/slo",
            issuer: "sp",
            name_id: "a</saml:NameID><evil/>&amp;",
            name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
            session_index: Some("s1"),
        }
        .to_xml(chrono::Utc::now());
        assert!(x.find("<saml:NameID").unwrap() < x.find("<samlp:SessionIndex>").unwrap());
        assert!(!x.contains("<evil/>"));
        match parse(&x).unwrap() {
            SloMessage::Request(r) => {
                assert_eq!(r.name_id, "a</saml:NameID><evil/>&amp;");
                assert_eq!(r.session_indexes, vec!["s1".to_string()]);
                assert_eq!(r.issuer, "sp");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_parses_status() {
        let x = logout_response_xml(
            "_2",
            "_1",
            "https://sp/slo",
            "idp",
            "urn:oasis:names:tc:SAML:2.0:status:Success",
            chrono::Utc::now(),
        );
        match parse(&x).unwrap() {
            SloMessage::Response(r) => {
                assert_eq!(r.in_response_to.as_deref(), Some("_1"));
                assert_eq!(
                    r.status.as_deref(),
                    Some("urn:oasis:names:tc:SAML:2.0:status:Success")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inflate_has_a_hard_limit() {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; 10 * 1024 * 1024]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 20_000);
        assert!(matches!(inflate(&bomb), Err(SloError::Malformed(_))));
    }

    fn idp_with(cert: &openssl::x509::X509) -> IdpMetadata {
        let b64 = B64.encode(cert.to_der().unwrap());
        IdpMetadata::parse(&format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="idp"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>"#
        ))
        .unwrap()
    }

    #[test]
    fn redirect_signature_over_raw_query() {
        let (key, cert) = crate::keys::self_signed("idp", 1).unwrap();
        let idp = idp_with(&cert);
        let xml = logout_response_xml(
            "_2",
            "_1",
            "https://sp/slo",
            "idp",
            "urn:oasis:names:tc:SAML:2.0:status:Success",
            chrono::Utc::now(),
        );
        // Sign with the same builder used for AuthnRequests, then rename the parameter.
        let url = super::super::authn::redirect_url(
            "https://sp/slo",
            &xml,
            "/after logout?x=1",
            Some(&key),
        )
        .unwrap();
        let query = url.split_once('?').unwrap().1.to_string();
        let out = verify_redirect(&query, &idp, false).unwrap();
        assert!(out.xml.contains("LogoutResponse"));
        assert_eq!(out.relay_state.as_deref(), Some("/after logout?x=1"));
        // An unsigned look-alike before the signed pair is not the RelayState.
        let spoofed = format!("Relay%53tate=https%3A%2F%2Fevil.example%2F&{query}");
        let out = verify_redirect(&spoofed, &idp, false).unwrap();
        assert_eq!(out.relay_state.as_deref(), Some("/after logout?x=1"));
        // Re-encoding a value (lower-case %2f) changes the octets: refused, not re-normalised.
        let tampered = query.replacen("%2F", "%2f", 1);
        assert!(matches!(
            verify_redirect(&tampered, &idp, false),
            Err(SloError::Signature(_))
        ));
        // Missing SigAlg or Signature: an error, not a panic.
        let no_sig = query.split("&Signature=").next().unwrap().to_string();
        assert!(matches!(
            verify_redirect(&no_sig, &idp, false),
            Err(SloError::Signature(_))
        ));
        let no_alg = query.replace("&SigAlg=", "&X=");
        assert!(matches!(
            verify_redirect(&no_alg, &idp, false),
            Err(SloError::Signature(_))
        ));
        // Another key: refused.
        let (k2, _) = crate::keys::self_signed("evil", 1).unwrap();
        let url2 =
            super::super::authn::redirect_url("https://sp/slo", &xml, "", Some(&k2)).unwrap();
        assert!(matches!(
            verify_redirect(url2.split_once('?').unwrap().1, &idp, false),
            Err(SloError::Signature(_))
        ));
    }
}
