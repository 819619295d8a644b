//! A strict look at the raw Response before any signature work.
//!
//! Security property: a document reaches libxml2/xmlsec only if it is well-formed UTF-8 XML
//! without a DOCTYPE, its root is `samlp:Response`, it holds exactly one `Assertion` or
//! `EncryptedAssertion` element anywhere, and that element is a direct child of the root. Wrapping
//! attacks need a second assertion somewhere (Extensions, `ds:Object`, inside another assertion),
//! so they end here, whichever one is signed.
//!
//! The envelope values collected here are *unsigned* when only the Assertion is signed: they are
//! used only to refuse (a Destination naming someone else), never to accept.

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

pub const NS_PROTOCOL: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
/// libxml2 refuses deeper documents anyway (256); SAML responses are ~10 deep.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrescanError {
    /// Not UTF-8, malformed, trailing content, too deep.
    BadXml(String),
    Doctype,
    NotAResponse(String),
    /// Zero, several, or a misplaced Assertion/EncryptedAssertion.
    AssertionCount(String),
}

/// The unsigned envelope of the Response, as found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: Option<String>,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub issuer: Option<String>,
    pub status_code: Option<String>,
    /// True when the one assertion is an EncryptedAssertion.
    pub encrypted: bool,
}

pub fn prescan(doc: &str) -> Result<Envelope, PrescanError> {
    let bad = |m: String| PrescanError::BadXml(m);
    let mut r = NsReader::from_str(doc);
    r.config_mut().check_end_names = true;

    let mut env = Envelope::default();
    let mut depth = 0usize;
    let mut root_done = false;
    let mut root_seen = false;
    let mut assertions = 0usize;
    let mut misplaced = false;
    // Path of local names from the root, for Issuer/Status at depth 1..2.
    let mut path: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut issuer_text: Option<String> = None;

    loop {
        let pos = r.buffer_position();
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| bad(format!("after byte {pos}: {e}")))?;
        let is_start = matches!(ev, Event::Start(_));
        match ev {
            Event::DocType(_) => return Err(PrescanError::Doctype),
            Event::Decl(d) => {
                if let Some(Ok(enc)) = d.encoding() {
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(bad(format!(
                            "encoding {} declared; only UTF-8 is accepted",
                            String::from_utf8_lossy(&enc)
                        )));
                    }
                }
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root_done {
                    return Err(bad("content after the root element".into()));
                }
                if matches!(ns, ResolveResult::Unknown(_)) {
                    return Err(bad(format!(
                        "undeclared namespace prefix in <{}>",
                        String::from_utf8_lossy(e.name().as_ref())
                    )));
                }
                let local = e.local_name().as_ref().to_vec();
                let in_ns =
                    |want: &[u8]| matches!(ns, ResolveResult::Bound(Namespace(n)) if n == want);
                if !root_seen {
                    if !(in_ns(NS_PROTOCOL) && local == b"Response") {
                        return Err(PrescanError::NotAResponse(format!(
                            "root element is {}",
                            String::from_utf8_lossy(e.name().as_ref())
                        )));
                    }
                    root_seen = true;
                    for a in e.attributes() {
                        let a = a.map_err(|x| bad(format!("attribute: {x}")))?;
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|x| bad(format!("attribute: {x}")))?
                            .into_owned();
                        match a.key.as_ref() {
                            b"ID" => env.id = Some(v),
                            b"Destination" => env.destination = Some(v),
                            b"InResponseTo" => env.in_response_to = Some(v),
                            _ => {}
                        }
                    }
                } else {
                    if in_ns(NS_ASSERTION)
                        && (local == b"Assertion" || local == b"EncryptedAssertion")
                    {
                        assertions += 1;
                        if depth != 1 {
                            misplaced = true;
                        }
                        env.encrypted = local == b"EncryptedAssertion";
                    }
                    // The top-level StatusCode: Response/Status/StatusCode.
                    if depth == 2
                        && local == b"StatusCode"
                        && in_ns(NS_PROTOCOL)
                        && path.last().is_some_and(|(p, n)| *p && n == b"Status")
                    {
                        for a in e.attributes().flatten() {
                            if a.key.as_ref() == b"Value" {
                                env.status_code = a
                                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .ok()
                                    .map(|v| v.into_owned());
                            }
                        }
                    }
                }
                if is_start {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(bad(format!("nesting deeper than {MAX_DEPTH}")));
                    }
                    let is_protocol = in_ns(NS_PROTOCOL);
                    if depth == 2 && local == b"Issuer" && in_ns(NS_ASSERTION) {
                        issuer_text = Some(String::new());
                    }
                    path.push((is_protocol, local));
                } else if depth == 0 {
                    root_done = true;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if let Some((_, name)) = path.pop() {
                    if depth == 1 && name == b"Issuer" {
                        if let Some(t) = issuer_text.take() {
                            env.issuer = Some(t.trim().to_string());
                        }
                    }
                }
                if depth == 0 {
                    root_done = true;
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|x| bad(format!("text: {x}")))?;
                if root_done || !root_seen {
                    if !s.trim().is_empty() {
                        return Err(bad("text outside the root element".into()));
                    }
                } else if let Some(buf) = issuer_text.as_mut() {
                    buf.push_str(&s);
                }
            }
            Event::GeneralRef(g) => {
                if let Some(buf) = issuer_text.as_mut() {
                    let name = g.decode().map_err(|x| bad(format!("reference: {x}")))?;
                    buf.push_str(
                        &resolve_predefined(&name)
                            .ok_or_else(|| bad(format!("unknown entity &{name};")))?,
                    );
                } else {
                    let name = g.decode().map_err(|x| bad(format!("reference: {x}")))?;
                    if resolve_predefined(&name).is_none() {
                        return Err(bad(format!("unknown entity &{name};")));
                    }
                }
            }
            Event::CData(_) if root_done || !root_seen => {
                return Err(bad("CDATA outside the root element".into()));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err(bad("no root element".into()));
    }
    if depth != 0 {
        return Err(bad("unclosed element".into()));
    }
    match (assertions, misplaced) {
        (1, false) => Ok(env),
        (0, _) => Err(PrescanError::AssertionCount(
            "no Assertion or EncryptedAssertion".into(),
        )),
        (1, true) => Err(PrescanError::AssertionCount(
            "the Assertion is not a direct child of the Response".into(),
        )),
        (n, _) => Err(PrescanError::AssertionCount(format!(
            "{n} Assertion/EncryptedAssertion elements"
        ))),
    }
}

/// The five predefined XML entities and character references; nothing else.
pub fn resolve_predefined(name: &str) -> Option<String> {
    Some(match name {
        "amp" => "&".into(),
        "lt" => "<".into(),
        "gt" => ">".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        _ => {
            let n = name.strip_prefix('#')?;
            let code = match n.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)?.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = r#"xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#;

    fn resp(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response {P} ID="_r" Destination="https://gw/saml/acs" InResponseTo="_q"><saml:Issuer>https://idp &amp; co</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{inner}</samlp:Response>"#
        )
    }

    #[test]
    fn one_assertion_passes_and_envelope_is_read() {
        let env = prescan(&resp(
            r#"<saml:Assertion ID="_a"><saml:Issuer>x</saml:Issuer></saml:Assertion>"#,
        ))
        .unwrap();
        assert_eq!(env.id.as_deref(), Some("_r"));
        assert_eq!(env.destination.as_deref(), Some("https://gw/saml/acs"));
        assert_eq!(env.in_response_to.as_deref(), Some("_q"));
        assert_eq!(env.issuer.as_deref(), Some("https://idp & co"));
        assert_eq!(
            env.status_code.as_deref(),
            Some("urn:oasis:names:tc:SAML:2.0:status:Success")
        );
        assert!(!env.encrypted);
    }

    #[test]
    fn counts_assertions_anywhere() {
        let two = resp(r#"<saml:Assertion ID="_a"/><saml:Assertion ID="_b"/>"#);
        assert!(matches!(
            prescan(&two),
            Err(PrescanError::AssertionCount(_))
        ));
        let nested = resp(r#"<samlp:Extensions><saml:Assertion ID="_a"/></samlp:Extensions>"#);
        assert!(matches!(
            prescan(&nested),
            Err(PrescanError::AssertionCount(_))
        ));
        let mixed = resp(r#"<saml:Assertion ID="_a"/><saml:EncryptedAssertion/>"#);
        assert!(matches!(
            prescan(&mixed),
            Err(PrescanError::AssertionCount(_))
        ));
        let none = resp("");
        assert!(matches!(
            prescan(&none),
            Err(PrescanError::AssertionCount(_))
        ));
        // A rebound prefix does not hide an assertion.
        let rebound = resp(
            r#"<x:Assertion xmlns:x="urn:oasis:names:tc:SAML:2.0:assertion"/><saml:Assertion/>"#,
        );
        assert!(matches!(
            prescan(&rebound),
            Err(PrescanError::AssertionCount(_))
        ));
    }

    #[test]
    fn doctype_and_junk_refused() {
        let d = format!(
            "<!DOCTYPE r [<!ENTITY x \"y\">]>{}",
            resp("<saml:Assertion/>")
        );
        assert_eq!(prescan(&d), Err(PrescanError::Doctype));
        let trailing = format!("{}<again/>", resp("<saml:Assertion/>"));
        assert!(matches!(prescan(&trailing), Err(PrescanError::BadXml(_))));
        assert!(matches!(
            prescan("<samlp:Response"),
            Err(PrescanError::BadXml(_))
        ));
        let enc = resp("<saml:Assertion/>").replace("UTF-8", "UTF-16");
        assert!(matches!(prescan(&enc), Err(PrescanError::BadXml(_))));
        let ent = resp("<saml:Assertion>&xxe;</saml:Assertion>");
        assert!(matches!(prescan(&ent), Err(PrescanError::BadXml(_))));
    }

    #[test]
    fn root_must_be_protocol_response() {
        let a = format!(r#"<saml:Assertion {P}/>"#);
        assert!(matches!(prescan(&a), Err(PrescanError::NotAResponse(_))));
        let wrong_ns = r#"<samlp:Response xmlns:samlp="urn:evil"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/></samlp:Response>"#;
        assert!(matches!(
            prescan(wrong_ns),
            Err(PrescanError::NotAResponse(_))
        ));
    }

    #[test]
    fn undeclared_prefix_refused() {
        let doc = resp("<saml:Assertion/><evil:Assertion/>");
        assert!(matches!(prescan(&doc), Err(PrescanError::BadXml(_))));
    }

    #[test]
    fn deep_nesting_refused() {
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        let doc = resp(&format!("<saml:Assertion/>{deep}"));
        assert!(matches!(prescan(&doc), Err(PrescanError::BadXml(_))));
    }
}
