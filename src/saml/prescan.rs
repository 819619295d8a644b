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

use quick_xml::events::{BytesStart, Event};
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
    let mut r = NsReader::from_str(doc);
    r.config_mut().check_end_names = true;
    let mut scan = Scan::default();
    loop {
        let pos = r.buffer_position();
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| bad(format!("after byte {pos}: {e}")))?;
        match ev {
            Event::DocType(_) => return Err(PrescanError::Doctype),
            Event::Decl(d) => check_decl(&d)?,
            Event::Start(ref e) => scan.element(&ns, e, true)?,
            Event::Empty(ref e) => scan.element(&ns, e, false)?,
            Event::End(_) => scan.end(),
            Event::Text(t) => scan.text(&t.decode().map_err(|x| bad(format!("text: {x}")))?)?,
            Event::GeneralRef(g) => {
                let name = g.decode().map_err(|x| bad(format!("reference: {x}")))?;
                scan.reference(&name)?;
            }
            Event::CData(_) if scan.outside_root() => {
                return Err(bad("CDATA outside the root element".into()));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    scan.finish()
}

fn bad(m: String) -> PrescanError {
    PrescanError::BadXml(m)
}

/// Only UTF-8 is accepted (a declared other encoding is refused, not converted).
fn check_decl(d: &quick_xml::events::BytesDecl) -> Result<(), PrescanError> {
    if let Some(Ok(enc)) = d.encoding() {
        if !enc.eq_ignore_ascii_case(b"utf-8") {
            return Err(bad(format!(
                "encoding {} declared; only UTF-8 is accepted",
                String::from_utf8_lossy(&enc)
            )));
        }
    }
    Ok(())
}

/// What the scan has seen so far.
#[derive(Default)]
struct Scan {
    env: Envelope,
    depth: usize,
    root_done: bool,
    root_seen: bool,
    assertions: usize,
    misplaced: bool,
    /// Path of (in the protocol namespace, local name) from the root, for Issuer/Status at
    /// depth 1..2.
    path: Vec<(bool, Vec<u8>)>,
    issuer_text: Option<String>,
}

impl Scan {
    fn outside_root(&self) -> bool {
        self.root_done || !self.root_seen
    }

    /// A start (`is_start`) or empty element.
    fn element(
        &mut self,
        ns: &ResolveResult,
        e: &BytesStart,
        is_start: bool,
    ) -> Result<(), PrescanError> {
        if self.root_done {
            return Err(bad("content after the root element".into()));
        }
        if matches!(ns, ResolveResult::Unknown(_)) {
            return Err(bad(format!(
                "undeclared namespace prefix in <{}>",
                String::from_utf8_lossy(e.name().as_ref())
            )));
        }
        let local = e.local_name().as_ref().to_vec();
        let in_ns = |want: &[u8]| matches!(ns, ResolveResult::Bound(Namespace(n)) if *n == want);
        if !self.root_seen {
            self.root(e, in_ns(NS_PROTOCOL) && local == b"Response")?;
        } else {
            if in_ns(NS_ASSERTION) && (local == b"Assertion" || local == b"EncryptedAssertion") {
                self.assertions += 1;
                if self.depth != 1 {
                    self.misplaced = true;
                }
                self.env.encrypted = local == b"EncryptedAssertion";
            }
            // The top-level StatusCode: Response/Status/StatusCode.
            if self.depth == 2
                && local == b"StatusCode"
                && in_ns(NS_PROTOCOL)
                && self.path.last().is_some_and(|(p, n)| *p && n == b"Status")
            {
                for a in e.attributes().flatten() {
                    if a.key.as_ref() == b"Value" {
                        self.env.status_code = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .ok()
                            .map(|v| v.into_owned());
                    }
                }
            }
        }
        if is_start {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(bad(format!("nesting deeper than {MAX_DEPTH}")));
            }
            if self.depth == 2 && local == b"Issuer" && in_ns(NS_ASSERTION) {
                self.issuer_text = Some(String::new());
            }
            self.path.push((in_ns(NS_PROTOCOL), local));
        } else if self.depth == 0 {
            self.root_done = true;
        }
        Ok(())
    }

    /// The root must be a protocol `Response`; its ID, Destination and InResponseTo are kept.
    fn root(&mut self, e: &BytesStart, is_response: bool) -> Result<(), PrescanError> {
        if !is_response {
            return Err(PrescanError::NotAResponse(format!(
                "root element is {}",
                String::from_utf8_lossy(e.name().as_ref())
            )));
        }
        self.root_seen = true;
        for a in e.attributes() {
            let a = a.map_err(|x| bad(format!("attribute: {x}")))?;
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|x| bad(format!("attribute: {x}")))?
                .into_owned();
            match a.key.as_ref() {
                b"ID" => self.env.id = Some(v),
                b"Destination" => self.env.destination = Some(v),
                b"InResponseTo" => self.env.in_response_to = Some(v),
                _ => {}
            }
        }
        Ok(())
    }

    fn end(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if let Some((_, name)) = self.path.pop() {
            if self.depth == 1 && name == b"Issuer" {
                if let Some(t) = self.issuer_text.take() {
                    self.env.issuer = Some(t.trim().to_string());
                }
            }
        }
        if self.depth == 0 {
            self.root_done = true;
        }
    }

    fn text(&mut self, s: &str) -> Result<(), PrescanError> {
        if self.outside_root() {
            if !s.trim().is_empty() {
                return Err(bad("text outside the root element".into()));
            }
        } else if let Some(buf) = self.issuer_text.as_mut() {
            buf.push_str(s);
        }
        Ok(())
    }

    /// `&name;`: only the predefined entities and character references exist.
    fn reference(&mut self, name: &str) -> Result<(), PrescanError> {
        let resolved =
            resolve_predefined(name).ok_or_else(|| bad(format!("unknown entity &{name};")))?;
        if let Some(buf) = self.issuer_text.as_mut() {
            buf.push_str(&resolved);
        }
        Ok(())
    }

    fn finish(self) -> Result<Envelope, PrescanError> {
        if !self.root_seen {
            return Err(bad("no root element".into()));
        }
        if self.depth != 0 {
            return Err(bad("unclosed element".into()));
        }
        match (self.assertions, self.misplaced) {
            (1, false) => Ok(self.env),
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
