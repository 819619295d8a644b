//! `samlgate idp test-response`: a saved Response through the whole verification, offline, at a
//! chosen time, with every check and its result. Nothing is written: no replay record, no
//! session, no user row. It runs the same [`verify_response`] the ACS runs, so it cannot say
//! "ok" for a response the ACS would refuse.
//!
//! [`verify_response`] stops at the first failure and returns its reason; the reason names the
//! check that failed. The signature is verified before any content is read, so a content
//! failure also proves the signature was good; checks after the failing one are reported as
//! not evaluated rather than guessed.

use quick_xml::events::Event;
use quick_xml::NsReader;
use serde::Serialize;

use super::acs::{decode_saml_response, verify_response, Expectations, Verified};
use super::prescan::{prescan, Envelope};
use crate::identity::Profile;
use crate::reason::{Reason, Refusal};

const NS_DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    NotEvaluated,
    NotApplicable,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    /// The reason code when failed.
    pub reason: String,
    pub detail: String,
}

/// A `<ds:Signature>` as the document declares it (before verification: what the IdP claims).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeclaredSignature {
    /// The element that holds it: Response or Assertion.
    pub parent: String,
    pub reference_uri: String,
    pub signature_method: String,
    pub digest_method: String,
    pub canonicalization: String,
    pub transforms: Vec<String>,
    pub inclusive_namespaces: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Diagnosis {
    pub checks: Vec<Check>,
    pub signatures: Vec<DeclaredSignature>,
    #[serde(skip)]
    pub verified: Option<Verified>,
    pub profile: Option<Profile>,
}

impl Diagnosis {
    /// The ACS would accept the response and map a profile (consent and applications live in
    /// the store and are decided at login).
    pub fn would_log_in(&self) -> bool {
        self.profile.is_some()
            && self
                .checks
                .iter()
                .all(|c| !matches!(c.outcome, Outcome::Failed))
    }
}

/// The checks in the order the ACS runs them, and the reason codes each can refuse with.
const CHECKS: &[(&str, &[Reason])] = &[
    ("decode (base64 or XML, UTF-8)", &[Reason::BadBase64]),
    (
        "document (well-formed, no DTD, a Response with exactly one Assertion)",
        &[
            Reason::BadXml,
            Reason::DoctypeForbidden,
            Reason::NotAResponse,
            Reason::AssertionCount,
        ],
    ),
    (
        "decryption (EncryptedAssertion with an SP key)",
        &[
            Reason::EncryptedUnsupported,
            Reason::EncryptionRequired,
            Reason::DecryptFailed,
        ],
    ),
    (
        "signature (IdP metadata keys only, allow-listed algorithms)",
        &[Reason::SignatureInvalid, Reason::SignatureAlgorithmRefused],
    ),
    ("status Success", &[Reason::StatusNotSuccess]),
    ("issuer = IdP entityID", &[Reason::IssuerMismatch]),
    ("destination = ACS URL", &[Reason::DestinationMismatch]),
    (
        "times (IssueInstant, NotBefore, NotOnOrAfter, with clock skew)",
        &[
            Reason::Expired,
            Reason::NotYetValid,
            Reason::IssueInstantFuture,
            Reason::IssueInstantStale,
        ],
    ),
    ("audience = SP entityID", &[Reason::AudienceMismatch]),
    (
        "subject confirmation (bearer, Recipient = ACS URL)",
        &[
            Reason::SubjectMissing,
            Reason::BearerMissing,
            Reason::RecipientMismatch,
        ],
    ),
    ("AuthnStatement", &[Reason::AuthnStatementMissing]),
    (
        "InResponseTo / unsolicited",
        &[Reason::InResponseToUnknown, Reason::UnsolicitedRefused],
    ),
    (
        "attributes -> profile ([attributes] map, required)",
        &[Reason::AttributeMissing],
    ),
];

/// Runs the checks on `input` (base64 or XML). `exp.expected_request_ids` is ignored: offline
/// there is no browser request cookie, so the response's own InResponseTo is taken as known.
pub fn diagnose(input: &str, exp: &Expectations, map: &crate::config::AttributeMap) -> Diagnosis {
    let xml = match decode_input(input) {
        Ok(x) => x,
        Err(r) => return report(Some(r), None, None, vec![], None),
    };
    let signatures = declared_signatures(&xml);
    let env = prescan(&xml).ok();
    let irt = env.as_ref().and_then(|e| e.in_response_to.clone());
    let known: Vec<&str> = irt.as_deref().into_iter().collect();
    let offline = Expectations {
        expected_request_ids: &known,
        ..*exp
    };
    match verify_response(&xml, &offline) {
        Err(r) => report(Some(r), None, None, signatures, env.as_ref()),
        Ok(v) => match crate::identity::attributes::map_profile(map, &v.name_id, &v.attributes) {
            Ok(p) => report(None, Some(v), Some(p), signatures, env.as_ref()),
            Err(r) => report(Some(r), Some(v), None, signatures, env.as_ref()),
        },
    }
}

/// A saved response as an operator has it: the XML, or the base64 form value.
fn decode_input(input: &str) -> Result<String, Refusal> {
    let t = input.trim_start_matches('\u{feff}').trim();
    if t.starts_with('<') {
        Ok(t.to_string())
    } else {
        // A form value copied from a browser may still be URL-encoded.
        let unescaped = t
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        decode_saml_response(&unescaped)
    }
}

fn report(
    refusal: Option<Refusal>,
    verified: Option<Verified>,
    profile: Option<Profile>,
    signatures: Vec<DeclaredSignature>,
    env: Option<&Envelope>,
) -> Diagnosis {
    let failed_at = refusal
        .as_ref()
        .and_then(|r| CHECKS.iter().position(|(_, rs)| rs.contains(&r.reason)))
        // A reason no check names (internal): report it on the last check.
        .map(|i| i as isize)
        .unwrap_or(if refusal.is_some() {
            CHECKS.len() as isize - 1
        } else {
            isize::MAX
        });
    let encrypted = env.map(|e| e.encrypted);
    let checks = CHECKS
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let i = i as isize;
            let (outcome, reason, detail) = if i == failed_at {
                let r = refusal.as_ref().expect("failed_at implies a refusal");
                (
                    Outcome::Failed,
                    r.reason.code().to_string(),
                    r.detail.clone(),
                )
            } else if i > failed_at {
                (Outcome::NotEvaluated, String::new(), String::new())
            } else if i == 2 && encrypted == Some(false) {
                (
                    Outcome::NotApplicable,
                    String::new(),
                    "plain Assertion".into(),
                )
            } else {
                (
                    Outcome::Ok,
                    String::new(),
                    ok_detail(i, verified.as_ref(), env),
                )
            };
            Check {
                name,
                outcome,
                reason,
                detail,
            }
        })
        .collect();
    Diagnosis {
        checks,
        signatures,
        verified,
        profile,
    }
}

fn ok_detail(i: isize, v: Option<&Verified>, env: Option<&Envelope>) -> String {
    match (i, v) {
        (3, Some(v)) => format!(
            "verified signature on the {}{}",
            v.signed.as_str(),
            if v.sha1 {
                " (SHA-1: accepted only because [idp] allow_sha1 = true)"
            } else {
                ""
            }
        ),
        (11, _) => match env.and_then(|e| e.in_response_to.as_deref()) {
            Some(id) => {
                format!("InResponseTo {id} (offline: not matched against a browser's request)")
            }
            None => "no InResponseTo (IdP-initiated; [idp] allow_unsolicited = true)".into(),
        },
        _ => String::new(),
    }
}

/// Every `<ds:Signature>` in the document as received, with what it declares.
pub fn declared_signatures(xml: &str) -> Vec<DeclaredSignature> {
    let mut r = NsReader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out: Vec<DeclaredSignature> = Vec::new();
    let mut in_sig = 0usize; // depth of the open Signature element, 0 = none
    loop {
        let ev = match r.read_resolved_event() {
            Ok((_, Event::Eof)) | Err(_) => break,
            Ok(x) => x,
        };
        let (ns, ev) = ev;
        let dsig = matches!(ns, quick_xml::name::ResolveResult::Bound(n) if n.as_ref() == NS_DSIG);
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let attr = |name: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == name)
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()
                                .map(|v| v.into_owned())
                        })
                        .unwrap_or_default()
                };
                if dsig && local == "Signature" && in_sig == 0 {
                    out.push(DeclaredSignature {
                        parent: stack.last().cloned().unwrap_or_default(),
                        ..Default::default()
                    });
                    in_sig = stack.len() + 1;
                } else if in_sig > 0 {
                    let s = out.last_mut().expect("open signature");
                    match local.as_str() {
                        "CanonicalizationMethod" => s.canonicalization = attr(b"Algorithm"),
                        "SignatureMethod" => s.signature_method = attr(b"Algorithm"),
                        "DigestMethod" => s.digest_method = attr(b"Algorithm"),
                        "Reference" => s.reference_uri = attr(b"URI"),
                        "Transform" => s.transforms.push(attr(b"Algorithm")),
                        "InclusiveNamespaces" => s.inclusive_namespaces = Some(attr(b"PrefixList")),
                        _ => {}
                    }
                }
                if matches!(ev, Event::Start(_)) {
                    stack.push(local);
                }
            }
            Event::End(_) => {
                if in_sig == stack.len() {
                    in_sig = 0;
                }
                stack.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_signature_of_a_salesforce_shaped_response() {
        let xml = r##"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">x</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/><ds:Reference URI="#_r"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="ds saml samlp xs xsi"/></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></ds:Reference></ds:SignedInfo></ds:Signature><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a"/></samlp:Response>"##;
        let s = declared_signatures(xml);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].parent, "Response");
        assert_eq!(s[0].reference_uri, "#_r");
        assert!(s[0].signature_method.ends_with("#rsa-sha1"));
        assert!(s[0].digest_method.ends_with("#sha1"));
        assert_eq!(s[0].transforms.len(), 2);
        assert_eq!(
            s[0].inclusive_namespaces.as_deref(),
            Some("ds saml samlp xs xsi")
        );
    }

    #[test]
    fn input_may_be_xml_or_base64() {
        assert!(decode_input("  <samlp:Response/>")
            .unwrap()
            .starts_with('<'));
        assert_eq!(decode_input("PGEvPg==\n").unwrap(), "<a/>");
        assert_eq!(decode_input("PGEvPg%3D%3D").unwrap(), "<a/>");
        assert!(decode_input("not base64!").is_err());
    }
}
