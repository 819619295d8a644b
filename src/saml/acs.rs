//! Verifying a SAML Response posted to the ACS.
//!
//! Security properties of [`verify_response`]:
//! - The signature is checked by samael/xmlsec against the IdP *metadata* certificates only;
//!   KeyInfo in the message is never a trust source. Only RSA-SHA256/384/512 and ECDSA-SHA256/
//!   384/512 with SHA-2 digests are accepted; RSA-SHA1 and SHA-1 digests only with
//!   `[idp] allow_sha1 = true` (and then flagged in [`Verified::sha1`]).
//! - `ReduceMode::PreDigest` hands back the exact canonical bytes that were digested; every value
//!   used afterwards (NameID, attributes, times, audience) is parsed from those bytes alone. A
//!   comment or CDATA section inside a value cannot truncate it: c14n removes comments and turns
//!   CDATA into text, so the value is the whole signed string.
//! - The raw document passed [`prescan`] first: no DOCTYPE, exactly one assertion, in place.
//! - Every time, audience, recipient, destination, issuer and status check fails closed.
//!
//! It does not record the replay cache; the caller does that with [`Verified::replay_key`]
//! before the session is created.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, Duration, Utc};
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;
use samael::crypto::{AllowedSignatureAlgorithm, Crypto, CryptoError, CryptoProvider, ReduceMode};
use samael::schema::{Assertion, Conditions, Response, Subject, SubjectConfirmation};

use super::decrypt::DecryptError;
use super::idp::IdpMetadata;
use super::prescan::{prescan, Envelope, PrescanError, NS_ASSERTION, NS_PROTOCOL};
use crate::reason::{Reason, Refusal};

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// No SHA-1, no DSA, no HMAC.
pub const ALLOWED_ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// `[idp] allow_sha1 = true`: the list above plus RSA-SHA1 (which also admits SHA-1 digests).
pub const ALLOWED_ALGORITHMS_WITH_SHA1: [AllowedSignatureAlgorithm; 7] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
    AllowedSignatureAlgorithm::RsaSha1,
];

/// What the SP expects of a response.
pub struct Expectations<'a> {
    pub idp: &'a IdpMetadata,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub skew: Duration,
    pub max_issue_delay: Duration,
    /// Accept responses without InResponseTo.
    pub allow_unsolicited: bool,
    /// The AuthnRequest IDs this browser started (SP-initiated login; several when it
    /// started logins in several tabs).
    pub expected_request_ids: &'a [&'a str],
    /// SP keys that may decrypt an EncryptedAssertion (every key in the set).
    pub decrypt_keys: &'a [super::decrypt::DecryptKey<'a>],
    /// Refuse plain (unencrypted) assertions.
    pub require_encryption: bool,
    /// `[idp] allow_sha1`: accept RSA-SHA1 signatures and SHA-1 digests.
    pub allow_sha1: bool,
    pub now: DateTime<Utc>,
}

/// A verified assertion, reduced to what the gateway uses.
#[derive(Debug, Clone)]
pub struct Verified {
    pub assertion_id: String,
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub session_not_on_or_after: Option<DateTime<Utc>>,
    /// (Name, values) in document order. Values are whole signed strings.
    pub attributes: Vec<(String, Vec<String>)>,
    /// Keep replay entries until this instant.
    pub replay_until: DateTime<Utc>,
    /// Which element carried the verified signature.
    pub signed: SignedPart,
    /// The signature needed SHA-1 (accepted only with `[idp] allow_sha1 = true`).
    pub sha1: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedPart {
    Response,
    Assertion,
}

impl SignedPart {
    pub fn as_str(self) -> &'static str {
        match self {
            SignedPart::Response => "response",
            SignedPart::Assertion => "assertion",
        }
    }
}

impl Verified {
    /// The replay-cache key: (IdP, Assertion ID). The Assertion ID alone catches every
    /// replay: exactly one assertion is accepted and its ID is always under the signature, so
    /// a replayed Response carries it, and so does a signed assertion re-wrapped in a new
    /// envelope (whose Response ID is new). A Response ID key would add a second record and
    /// a second index entry per login and catch nothing more.
    pub fn replay_key(&self, idp_entity_id: &str) -> String {
        format!("a\u{0}{idp_entity_id}\u{0}{}", self.assertion_id)
    }
}

fn refuse<T>(reason: Reason, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(reason, detail))
}

/// Decodes the `SAMLResponse` form value. Whitespace (IdPs wrap base64 at 76 columns with CRLF)
/// is ignored; anything else that is not base64 is refused.
pub fn decode_saml_response(b64: &str) -> Result<String, Refusal> {
    use base64::Engine;
    let b64e = base64::engine::general_purpose::STANDARD;
    // Unwrapped base64 decodes as it is (whitespace is not base64, so success means there was
    // none); IdPs that wrap at 64 or 76 columns pay for a copy without the whitespace.
    let bytes = match b64e.decode(b64) {
        Ok(b) => b,
        Err(_) => {
            let mut clean = Vec::with_capacity(b64.len());
            clean.extend(b64.bytes().filter(|b| !b.is_ascii_whitespace()));
            b64e.decode(&clean)
                .map_err(|e| Refusal::new(Reason::BadBase64, format!("SAMLResponse: {e}")))?
        }
    };
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return refuse(Reason::BadXml, "UTF-16 document; only UTF-8 is accepted");
    }
    String::from_utf8(bytes).map_err(|_| Refusal::new(Reason::BadXml, "not UTF-8"))
}

/// Verifies a decoded Response document. CPU-bound (~0.5 ms): call it off the async threads.
pub fn verify_response(xml: &str, exp: &Expectations) -> Result<Verified, Refusal> {
    let env = prescan(xml).map_err(|e| match e {
        PrescanError::BadXml(m) => Refusal::new(Reason::BadXml, m),
        PrescanError::Doctype => Refusal::new(Reason::DoctypeForbidden, "DOCTYPE in response"),
        PrescanError::NotAResponse(m) => Refusal::new(Reason::NotAResponse, m),
        PrescanError::AssertionCount(m) => Refusal::new(Reason::AssertionCount, m),
    })?;
    if env.encrypted {
        return verify_encrypted(xml, exp);
    }
    if exp.require_encryption {
        return refuse(
            Reason::EncryptionRequired,
            "plain Assertion and [sp] require_encryption = true",
        );
    }
    let signed = verify_signature(xml, exp)?;
    signed.check(&env, exp)
}

/// An EncryptedAssertion. If the IdP signed the Response, that signature is checked on the
/// encrypted document first (before any RSA operation on attacker input) and the assertion
/// decrypted from the signed bytes is covered by it. Otherwise the decrypted document must
/// carry a valid signature of its own and goes through the full path again.
fn verify_encrypted(xml: &str, exp: &Expectations) -> Result<Verified, Refusal> {
    let decrypt = |doc: &str| {
        super::decrypt::decrypt_in_place(doc, exp.decrypt_keys).map_err(|e| {
            let reason = match e {
                DecryptError::Rsa15Refused | DecryptError::Unsupported { .. } => {
                    Reason::EncryptedUnsupported
                }
                _ => Reason::DecryptFailed,
            };
            Refusal::new(reason, e.log_detail())
        })
    };
    if let Ok(verified) = verify_signature(xml, exp) {
        if matches!(root_of(&verified.xml), Some(Root::Response)) {
            let (plain, key_id) = decrypt(&verified.xml)?;
            tracing::debug!(key = %key_id, "decrypted a Response-signed EncryptedAssertion");
            let env = prescan(&plain)
                .map_err(|e| Refusal::new(Reason::BadXml, format!("decrypted: {e:?}")))?;
            let plain = SignedBytes {
                xml: plain,
                sha1: verified.sha1,
            };
            return plain.check(&env, exp);
        }
    }
    let (plain, key_id) = decrypt(xml)?;
    tracing::debug!(key = %key_id, "decrypted an EncryptedAssertion; verifying its own signature");
    let env =
        prescan(&plain).map_err(|e| Refusal::new(Reason::BadXml, format!("decrypted: {e:?}")))?;
    if env.encrypted {
        return refuse(
            Reason::AssertionCount,
            "an encrypted assertion inside an encrypted assertion",
        );
    }
    let signed = verify_signature(&plain, exp)?;
    signed.check(&env, exp)
}

/// What xmlsec verified: the signed canonical bytes, and whether the signature needed SHA-1.
struct SignedBytes {
    xml: String,
    sha1: bool,
}

impl SignedBytes {
    fn check(self, env: &Envelope, exp: &Expectations) -> Result<Verified, Refusal> {
        let mut v = verify_signed_bytes(&self.xml, env, exp)?;
        v.sha1 = self.sha1;
        Ok(v)
    }
}

/// Checks everything on signed bytes: a signed Response (with its Assertion) or a signed
/// Assertion (with the unsigned envelope `env` as a source of refusals only).
fn verify_signed_bytes(
    verified_xml: &str,
    env: &Envelope,
    exp: &Expectations,
) -> Result<Verified, Refusal> {
    match root_of(verified_xml) {
        Some(Root::Response) => {
            let resp: Response = verified_xml
                .parse()
                .map_err(|e| Refusal::new(Reason::BadXml, format!("signed Response: {e}")))?;
            check_signed_envelope(&resp, exp)?;
            let assertion = resp.assertion.as_ref().ok_or_else(|| {
                Refusal::new(Reason::AssertionCount, "signed Response has no Assertion")
            })?;
            let in_response_to = resp.in_response_to.clone();
            check_assertion(
                assertion,
                in_response_to.as_deref(),
                SignedPart::Response,
                exp,
            )
        }
        Some(Root::Assertion) => {
            check_unsigned_envelope(env, exp)?;
            let assertion: Assertion = verified_xml
                .parse()
                .map_err(|e| Refusal::new(Reason::BadXml, format!("signed Assertion: {e}")))?;
            check_assertion(
                &assertion,
                env.in_response_to.as_deref(),
                SignedPart::Assertion,
                exp,
            )
        }
        None => refuse(
            Reason::SignatureInvalid,
            "the signature covers neither the Response nor the Assertion",
        ),
    }
}

/// libxml2 (which xmlsec verifies with) parses in recovery mode inside samael: an ill-formed
/// document could show xmlsec elements that quick-xml's prescan never counted. A strict parse
/// first makes both parsers see the same well-formed document, or neither runs.
pub fn strictly_well_formed(xml: &str) -> bool {
    use libxml::parser::{Parser, ParserOptions};
    let opts = ParserOptions {
        recover: false,
        no_net: true,
        ..Default::default()
    };
    Parser::default()
        .parse_string_with_options(xml, opts)
        .is_ok()
}

/// Runs xmlsec with panics contained; returns the signed canonical bytes. SHA-2 first; only
/// when that list refuses a SHA-1 algorithm and `allow_sha1` is set is it verified again with
/// RSA-SHA1 allowed, so [`SignedBytes::sha1`] says exactly whether SHA-1 was needed.
fn verify_signature(xml: &str, exp: &Expectations) -> Result<SignedBytes, Refusal> {
    if !strictly_well_formed(xml) {
        return refuse(Reason::BadXml, "not well-formed for libxml2 (strict parse)");
    }
    if exp.idp.certs_der.is_empty() {
        // Unreachable by construction (IdpMetadata refuses this); kept because failing open here
        // would mean accepting unsigned responses.
        return refuse(Reason::Internal, "no IdP signing certificate loaded");
    }
    match reduce(xml, exp.idp, &ALLOWED_ALGORITHMS) {
        Ok(s) => Ok(SignedBytes {
            xml: s,
            sha1: false,
        }),
        Err(Some(CryptoError::SignatureAlgorithmNotAllowed { algorithm }))
            if exp.allow_sha1 && is_sha1(&algorithm) =>
        {
            match reduce(xml, exp.idp, &ALLOWED_ALGORITHMS_WITH_SHA1) {
                Ok(s) => Ok(SignedBytes { xml: s, sha1: true }),
                Err(e) => Err(verify_refusal(e, true)),
            }
        }
        Err(e) => Err(verify_refusal(e, exp.allow_sha1)),
    }
}

/// `Err(None)`: xmlsec panicked (contained).
fn reduce(
    xml: &str,
    idp: &IdpMetadata,
    allowed: &[AllowedSignatureAlgorithm],
) -> Result<String, Option<CryptoError>> {
    catch_unwind(AssertUnwindSafe(|| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &idp.certs_der,
            ReduceMode::PreDigest,
            Some(allowed),
        )
    }))
    .map_err(|_| None)?
    .map_err(Some)
}

fn is_sha1(algorithm: &str) -> bool {
    let a = AllowedSignatureAlgorithm::RsaSha1;
    algorithm == a.signature_uri() || algorithm == a.digest_uri()
}

fn verify_refusal(e: Option<CryptoError>, allow_sha1: bool) -> Refusal {
    match e {
        Some(CryptoError::SignatureAlgorithmNotAllowed { algorithm }) => {
            let hint = if is_sha1(&algorithm) && !allow_sha1 {
                " (SHA-1; [idp] allow_sha1 = true accepts it from the metadata keys)"
            } else {
                ""
            };
            Refusal::new(
                Reason::SignatureAlgorithmRefused,
                format!("algorithm {algorithm} is not allowed{hint}"),
            )
        }
        Some(e) => Refusal::new(Reason::SignatureInvalid, format!("xmlsec: {e}")),
        None => Refusal::new(
            Reason::SignatureInvalid,
            "signature verification panicked (contained)",
        ),
    }
}

enum Root {
    Response,
    Assertion,
}

/// The namespace-resolved root of the verified bytes.
fn root_of(xml: &str) -> Option<Root> {
    let mut r = NsReader::from_str(xml);
    loop {
        match r.read_resolved_event().ok()? {
            (ns, Event::Start(e)) | (ns, Event::Empty(e)) => {
                let local = e.local_name();
                return match ns {
                    ResolveResult::Bound(Namespace(n))
                        if n == NS_PROTOCOL && local.as_ref() == b"Response" =>
                    {
                        Some(Root::Response)
                    }
                    ResolveResult::Bound(Namespace(n))
                        if n == NS_ASSERTION && local.as_ref() == b"Assertion" =>
                    {
                        Some(Root::Assertion)
                    }
                    _ => None,
                };
            }
            (_, Event::Eof) => return None,
            _ => {}
        }
    }
}

fn check_issuer(found: Option<&str>, exp: &Expectations, what: &str) -> Result<(), Refusal> {
    match found {
        Some(i) if i.trim() == exp.idp.entity_id => Ok(()),
        other => refuse(
            Reason::IssuerMismatch,
            format!(
                "{what} Issuer: expected {:?}, received {:?}",
                exp.idp.entity_id, other
            ),
        ),
    }
}

fn check_status(code: Option<&str>) -> Result<(), Refusal> {
    if code == Some(STATUS_SUCCESS) {
        Ok(())
    } else {
        refuse(Reason::StatusNotSuccess, format!("StatusCode {:?}", code))
    }
}

fn check_issue_instant(t: DateTime<Utc>, exp: &Expectations, what: &str) -> Result<(), Refusal> {
    if t > exp.now + exp.skew {
        return refuse(
            Reason::IssueInstantFuture,
            format!(
                "{what} IssueInstant {t} is {}s ahead of now {}",
                (t - exp.now).num_seconds(),
                exp.now
            ),
        );
    }
    if t + exp.max_issue_delay + exp.skew < exp.now {
        return refuse(
            Reason::IssueInstantStale,
            format!(
                "{what} IssueInstant {t} is {}s old (limit {}s + skew)",
                (exp.now - t).num_seconds(),
                exp.max_issue_delay.num_seconds()
            ),
        );
    }
    Ok(())
}

/// The Response was signed: its Destination is required and every field is trustworthy.
fn check_signed_envelope(resp: &Response, exp: &Expectations) -> Result<(), Refusal> {
    if resp.destination.as_deref() != Some(exp.acs_url) {
        return refuse(
            Reason::DestinationMismatch,
            format!(
                "Destination: expected {:?}, received {:?}",
                exp.acs_url, resp.destination
            ),
        );
    }
    if resp.issuer.is_some() {
        check_issuer(
            resp.issuer.as_ref().and_then(|i| i.value.as_deref()),
            exp,
            "Response",
        )?;
    }
    check_status(
        resp.status
            .as_ref()
            .and_then(|s| s.status_code.value.as_deref()),
    )?;
    check_issue_instant(resp.issue_instant, exp, "Response")?;
    if resp.version != "2.0" {
        return refuse(
            Reason::BadXml,
            format!("Response Version {:?}", resp.version),
        );
    }
    Ok(())
}

/// Only the Assertion was signed: the envelope is unsigned, so it can refuse but never vouch.
fn check_unsigned_envelope(env: &Envelope, exp: &Expectations) -> Result<(), Refusal> {
    if let Some(d) = &env.destination {
        if d != exp.acs_url {
            return refuse(
                Reason::DestinationMismatch,
                format!("Destination: expected {:?}, received {:?}", exp.acs_url, d),
            );
        }
    }
    if env.issuer.is_some() {
        check_issuer(env.issuer.as_deref(), exp, "Response")?;
    }
    check_status(env.status_code.as_deref())
}

fn check_in_response_to(irt: Option<&str>, exp: &Expectations) -> Result<(), Refusal> {
    match (irt, exp.expected_request_ids) {
        (None, _) if exp.allow_unsolicited => Ok(()),
        (None, _) => refuse(
            Reason::UnsolicitedRefused,
            "no InResponseTo and [idp] allow_unsolicited = false",
        ),
        (Some(got), want) if want.contains(&got) => Ok(()),
        (Some(got), want) => refuse(
            Reason::InResponseToUnknown,
            format!(
                "InResponseTo {got:?} does not match a request this browser started ({want:?})"
            ),
        ),
    }
}

/// The InResponseTo the login answers. The Response's and the confirmation's must agree.
/// When only the Assertion is signed, the Response's value is unsigned: it can refuse (it
/// names a request the signed confirmation does not) but never supply one, or an attacker
/// could turn an IdP-initiated assertion into an answer to a request this browser started.
fn signed_in_response_to(
    response: Option<&str>,
    confirmation: Option<String>,
    signed: SignedPart,
) -> Result<Option<String>, Refusal> {
    if let Some(r) = response {
        if confirmation.as_deref() != Some(r)
            && (confirmation.is_some() || signed == SignedPart::Assertion)
        {
            return refuse(
                Reason::InResponseToUnknown,
                format!(
                    "Response InResponseTo {r:?} ({} signed) != SubjectConfirmationData {confirmation:?}",
                    signed.as_str()
                ),
            );
        }
    }
    Ok(match signed {
        SignedPart::Response => confirmation.or(response.map(str::to_string)),
        SignedPart::Assertion => confirmation,
    })
}

/// Web SSO profile 4.1.4.2: a bearer assertion carries at least one AuthnStatement. Returns
/// its SessionIndex and the earliest SessionNotOnOrAfter (refused when already past).
fn authn_session(
    a: &Assertion,
    exp: &Expectations,
) -> Result<(Option<String>, Option<DateTime<Utc>>), Refusal> {
    let authn = a.authn_statements.as_deref().unwrap_or_default();
    if authn.is_empty() {
        return refuse(
            Reason::AuthnStatementMissing,
            format!("Assertion {} has no AuthnStatement", a.id),
        );
    }
    let session_index = authn.iter().find_map(|s| s.session_index.clone());
    let session_not_on_or_after = authn.iter().filter_map(|s| s.session_not_on_or_after).min();
    if let Some(snoa) = session_not_on_or_after {
        if snoa + exp.skew <= exp.now {
            return refuse(
                Reason::Expired,
                format!("SessionNotOnOrAfter {snoa}, now {}", exp.now),
            );
        }
    }
    Ok((session_index, session_not_on_or_after))
}

fn check_assertion(
    a: &Assertion,
    response_in_response_to: Option<&str>,
    signed: SignedPart,
    exp: &Expectations,
) -> Result<Verified, Refusal> {
    if a.version != "2.0" {
        return refuse(Reason::BadXml, format!("Assertion Version {:?}", a.version));
    }
    check_issuer(a.issuer.value.as_deref(), exp, "Assertion")?;
    check_issue_instant(a.issue_instant, exp, "Assertion")?;
    let cond = check_conditions(a, exp)?;
    let subject = a
        .subject
        .as_ref()
        .ok_or_else(|| Refusal::new(Reason::SubjectMissing, "no Subject"))?;
    let name_id = subject
        .name_id
        .as_ref()
        .map(|n| n.value.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Refusal::new(Reason::SubjectMissing, "no NameID"))?;
    let name_id_format = subject.name_id.as_ref().and_then(|n| n.format.clone());
    let (confirm_noa, confirm_irt) = bearer_confirmation(subject, exp)?;
    let in_response_to = signed_in_response_to(response_in_response_to, confirm_irt, signed)?;
    check_in_response_to(in_response_to.as_deref(), exp)?;
    let (session_index, session_not_on_or_after) = authn_session(a, exp)?;

    // Keep the IDs until nothing carrying them could still be accepted.
    let latest = [cond.not_on_or_after, Some(confirm_noa)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(exp.now);
    let floor = a.issue_instant + exp.max_issue_delay;
    let replay_until = latest.max(floor) + exp.skew;

    Ok(Verified {
        assertion_id: a.id.clone(),
        in_response_to,
        name_id,
        name_id_format,
        session_index,
        session_not_on_or_after,
        attributes: collect_attributes(a),
        replay_until,
        signed,
        sha1: false,
    })
}

/// Conditions: required, with a time window and our audience.
fn check_conditions<'a>(a: &'a Assertion, exp: &Expectations) -> Result<&'a Conditions, Refusal> {
    let (now, skew) = (exp.now, exp.skew);
    let cond = a.conditions.as_ref().ok_or_else(|| {
        Refusal::new(
            Reason::AudienceMismatch,
            "no Conditions (AudienceRestriction required)",
        )
    })?;
    if let Some(nb) = cond.not_before {
        if now + skew < nb {
            return refuse(
                Reason::NotYetValid,
                format!(
                    "Conditions NotBefore {nb}, now {now}, skew {}s",
                    skew.num_seconds()
                ),
            );
        }
    }
    if let Some(noa) = cond.not_on_or_after {
        if noa + skew <= now {
            return refuse(
                Reason::Expired,
                format!(
                    "Conditions NotOnOrAfter {noa}, now {now}, skew {}s",
                    skew.num_seconds()
                ),
            );
        }
    }
    let restrictions = cond.audience_restrictions.as_deref().unwrap_or_default();
    if restrictions.is_empty() {
        return refuse(Reason::AudienceMismatch, "no AudienceRestriction");
    }
    // Each AudienceRestriction must name us (they are ANDed, SAML core 2.5.1.4).
    for r in restrictions {
        if !r.audience.iter().any(|x| x.trim() == exp.sp_entity_id) {
            return refuse(
                Reason::AudienceMismatch,
                format!(
                    "Audience: expected {:?}, received {:?}",
                    exp.sp_entity_id, r.audience
                ),
            );
        }
    }
    Ok(cond)
}

/// The first bearer SubjectConfirmation for our ACS that is valid now: its NotOnOrAfter and
/// InResponseTo. When none is, the refusal of the first one tried.
fn bearer_confirmation(
    subject: &Subject,
    exp: &Expectations,
) -> Result<(DateTime<Utc>, Option<String>), Refusal> {
    let bearers: Vec<_> = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .collect();
    if bearers.is_empty() {
        return refuse(Reason::BearerMissing, "no bearer SubjectConfirmation");
    }
    let mut first_err: Option<Refusal> = None;
    for c in bearers {
        match check_bearer(c, exp) {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err
        .unwrap_or_else(|| Refusal::new(Reason::BearerMissing, "no usable bearer confirmation")))
}

fn check_bearer(
    c: &SubjectConfirmation,
    exp: &Expectations,
) -> Result<(DateTime<Utc>, Option<String>), Refusal> {
    let (now, skew) = (exp.now, exp.skew);
    let Some(d) = c.subject_confirmation_data.as_ref() else {
        return refuse(
            Reason::BearerMissing,
            "bearer without SubjectConfirmationData",
        );
    };
    if d.recipient.as_deref() != Some(exp.acs_url) {
        return refuse(
            Reason::RecipientMismatch,
            format!(
                "Recipient: expected {:?}, received {:?}",
                exp.acs_url, d.recipient
            ),
        );
    }
    let Some(noa) = d.not_on_or_after else {
        return refuse(
            Reason::BearerMissing,
            "bearer SubjectConfirmationData without NotOnOrAfter",
        );
    };
    if noa + skew <= now {
        return refuse(
            Reason::Expired,
            format!("SubjectConfirmationData NotOnOrAfter {noa}, now {now}"),
        );
    }
    if let Some(nb) = d.not_before {
        if now + skew < nb {
            return refuse(
                Reason::NotYetValid,
                format!("SubjectConfirmationData NotBefore {nb}, now {now}"),
            );
        }
    }
    Ok((noa, d.in_response_to.clone()))
}

/// Attribute values by Name, in document order; statements naming one attribute twice are
/// merged.
fn collect_attributes(a: &Assertion) -> Vec<(String, Vec<String>)> {
    let mut attributes: Vec<(String, Vec<String>)> = Vec::new();
    for st in a.attribute_statements.iter().flatten() {
        for attr in &st.attributes {
            let Some(name) = attr.name.clone() else {
                continue;
            };
            let values: Vec<String> = attr.values.iter().filter_map(|v| v.value.clone()).collect();
            match attributes.iter_mut().find(|(n, _)| *n == name) {
                Some((_, vs)) => vs.extend(values),
                None => attributes.push((name, values)),
            }
        }
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_differential_is_refused_before_xmlsec() {
        // Found by the prescan fuzzer: quick-xml sees one element with a quoted junk name,
        // libxml2's recovery parses the markup inside it as elements.
        let doc = include_str!(
            "../../tests/fuzz_corpus/prescan/differential-quoted-name-hides-assertion.xml"
        );
        assert!(!strictly_well_formed(doc));
        let ok = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><a/></samlp:Response>"#;
        assert!(strictly_well_formed(ok));
    }
}
