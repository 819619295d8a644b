//! The fuzzing entry points, shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/fuzz_regressions.rs`, which includes this file by path), so a
//! crash found by one is a regression test of the other.
//!
//! Each entry point takes arbitrary bytes, drives the same code the gateway runs on untrusted
//! input, and panics only when a property is broken (a panic in the code under test is a
//! finding too):
//!
//! - `acs_input`: form body -> `parse_form` -> `decode_saml_response` -> `verify_response` with
//!   the fixed IdP of `fuzz/fixtures/` at the fixed instant [`NOW`]. An input starting with `<`
//!   is taken as the XML document and posted as a form (base64, url-encoded), so the fuzzer
//!   mutates XML rather than base64. Oracle: whatever verifies names a subject the fixture IdP
//!   really signed ([`KNOWN_NAME_IDS`]), and its replay entry outlives [`NOW`]; the RelayState
//!   goes through the return-path property.
//! - `idp_metadata`: `IdpMetadata::parse`; a result always has a signing certificate.
//! - `session_token`: `SessionCodec::open` on the input and on each value of it read as a
//!   Cookie header; whatever opens is exactly
//!   the token `seal` makes for that id (the MAC cannot be forged, so only seeds open).
//! - `return_path`: `safe_return_path` on the raw value and on `return_to_param(query)`: the
//!   result is `/`, or starts with one `/`, not `//` or `/\`, no backslash, no control
//!   character; the same after one percent-decoding.
//! - `slo_redirect`: `verify_redirect` on the input as a query, `inflate` on the raw bytes
//!   (output <= `MAX_INFLATED`), `slo::parse` on both. What verifies is a seed message.
//! - `prescan`: `prescan` alone.
//! - `decrypt`: `decrypt_in_place` with the fixed SP key; a result passes `prescan` with one
//!   plain Assertion.
#![allow(dead_code)]

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use samlgate::return_path::safe_return_path;
use samlgate::saml::acs::{decode_saml_response, verify_response, Expectations, Verified};
use samlgate::saml::decrypt::{decrypt_in_place, DecryptKey};
use samlgate::saml::idp::IdpMetadata;
use samlgate::saml::prescan::prescan as prescan_doc;
use samlgate::saml::slo;
use samlgate::session::SessionCodec;
use samlgate::web::acs::parse_form;
use samlgate::web::sso::return_to_param;

/// The instant every verification runs at (the seeds are valid then). Keep in step with
/// `fuzz/make_seeds.py`.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}
pub const SP_ENTITY: &str = "https://gw.fuzz.test/saml/metadata";
pub const ACS: &str = "https://gw.fuzz.test/saml/acs";
/// The AuthnRequest this "browser" started (`ok-solicited.xml` answers it).
pub const REQUEST_ID: &str = "_req_fuzz_0001";
pub const SESSION_KEY: [u8; 32] = [0x5A; 32];

/// Every NameID the fixture IdP signed in a seed (`make_seeds.py`); the attack seeds' smuggled
/// identity (GM9999999) is not one of them.
pub const KNOWN_NAME_IDS: &[&str] = &[
    "GM0012345",
    "GM0000001",
    "GM0000002",
    "GM0000003",
    "GM0000004",
    "GM0000005",
    "GM0000006.x",
    "GM0000007.y",
    "GM0000008",
    "GM0000009",
    "GM0000010",
    "GM0000011",
];
/// The identity the attack seeds smuggle in, outside the signed parts.
pub const EVIL_NAME_ID: &str = "GM9999999";
/// The NameIDs / InResponseTo of the signed SLO seeds.
pub const KNOWN_SLO_VALUES: &[&str] = &["GM0000001", "GM0000002", "GM1", "_q1"];

const IDP_METADATA: &str = include_str!("../fixtures/idp-metadata.xml");
const SP_KEY: &str = include_str!("../fixtures/sp.key");
const SP_CERT: &str = include_str!("../fixtures/sp.crt");

pub struct Fixture {
    pub idp: IdpMetadata,
    pub sp_key: PKey<Private>,
    pub sp_cert: X509,
    pub codec: SessionCodec,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        idp: IdpMetadata::parse(IDP_METADATA).expect("fuzz/fixtures/idp-metadata.xml"),
        sp_key: PKey::private_key_from_pem(SP_KEY.as_bytes()).expect("fuzz/fixtures/sp.key"),
        sp_cert: X509::from_pem(SP_CERT.as_bytes()).expect("fuzz/fixtures/sp.crt"),
        codec: SessionCodec::new(SESSION_KEY.to_vec(), false),
    })
}

/// The targets by name (the directory names under `tests/fuzz_corpus/` and `fuzz/seeds/`).
pub type Target = fn(&[u8]);
pub const TARGETS: &[(&str, Target)] = &[
    ("acs_input", acs_input),
    ("idp_metadata", idp_metadata),
    ("session_token", session_token),
    ("return_path", return_path),
    ("slo_redirect", slo_redirect),
    ("prescan", prescan),
    ("decrypt", decrypt),
];

// ------------------------------------------------------------------------------------------
// acs_input

/// `SAMLResponse=<base64 of doc>&RelayState=%2Fmenu`, as a browser would post it.
pub fn form_of(doc: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc);
    let mut body = String::from("SAMLResponse=");
    body.extend(form_urlencoded::byte_serialize(b64.as_bytes()));
    body.push_str("&RelayState=%2Fmenu");
    body.into_bytes()
}

/// What the ACS path makes of `data` (None: refused before verification).
pub fn acs_outcome(data: &[u8]) -> Option<Result<Verified, samlgate::reason::Refusal>> {
    let body: Cow<[u8]> = if data.first() == Some(&b'<') {
        Cow::Owned(form_of(data))
    } else {
        Cow::Borrowed(data)
    };
    let (saml, relay) = parse_form(&body).ok()?;
    check_return_path(
        &safe_return_path(relay.as_deref()),
        relay.as_deref().unwrap_or(""),
    );
    let xml = decode_saml_response(&saml).ok()?;
    let f = fixture();
    let keys = [DecryptKey {
        id: "sp-fuzz",
        key: &f.sp_key,
        cert: &f.sp_cert,
    }];
    let exp = Expectations {
        idp: &f.idp,
        sp_entity_id: SP_ENTITY,
        acs_url: ACS,
        skew: Duration::seconds(60),
        max_issue_delay: Duration::seconds(300),
        allow_unsolicited: true,
        allow_sha1: false,
        expected_request_ids: &[REQUEST_ID],
        decrypt_keys: &keys,
        require_encryption: false,
        now: now(),
    };
    Some(verify_response(&xml, &exp))
}

pub fn acs_input(data: &[u8]) {
    if let Some(Ok(v)) = acs_outcome(data) {
        assert!(
            KNOWN_NAME_IDS.contains(&v.name_id.as_str()),
            "verify_response accepted NameID {:?}, which the fixture IdP never signed: {v:?}",
            v.name_id
        );
        assert!(
            v.replay_until >= now(),
            "accepted, but the replay entry ends before now: {v:?}"
        );
        assert!(
            !v.assertion_id.is_empty(),
            "accepted without an Assertion ID: {v:?}"
        );
        assert!(
            !v.attributes
                .iter()
                .flat_map(|(_, vs)| vs)
                .any(|x| x.contains(EVIL_NAME_ID)),
            "an attribute the IdP never signed was read: {v:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// idp_metadata

pub fn idp_metadata(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = IdpMetadata::parse(s) {
        assert!(
            !m.certs_der.is_empty() && m.certs_der.len() == m.signing_certs.len(),
            "metadata accepted without a signing certificate"
        );
        assert!(
            !m.entity_id.trim().is_empty(),
            "metadata accepted without entityID"
        );
    }
}

// ------------------------------------------------------------------------------------------
// session_token

pub fn session_token(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let codec = &fixture().codec;
    let check = |t: &str| {
        if let Some(id) = codec.open(t) {
            assert_eq!(
                codec.seal(&id),
                t,
                "SessionCodec::open accepted a token seal() would not make"
            );
        }
    };
    check(&s);
    // As a Cookie header: every `name=value` pair's value.
    for part in s.split(';') {
        if let Some((_, v)) = part.trim().split_once('=') {
            check(v.trim());
        }
    }
}

// ------------------------------------------------------------------------------------------
// return_path

/// The documented property of a return path the gateway redirects to.
pub fn check_return_path(out: &str, input: &str) {
    if out == "/" {
        return;
    }
    let decoded = percent_encoding::percent_decode_str(out).decode_utf8_lossy();
    for (what, p) in [("as returned", out), ("decoded once", decoded.as_ref())] {
        let ok = p.starts_with('/')
            && !p.starts_with("//")
            && !p.starts_with("/\\")
            && !p.contains('\\')
            && !p.chars().any(char::is_control);
        assert!(
            ok,
            "return path {out:?} ({what}: {p:?}) is not a plain same-origin path; input {input:?}"
        );
    }
}

pub fn return_path(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    check_return_path(&safe_return_path(Some(&s)), &s);
    let param = return_to_param(Some(&s));
    check_return_path(&safe_return_path(param.as_deref()), &s);
}

// ------------------------------------------------------------------------------------------
// slo_redirect

pub fn slo_redirect(data: &[u8]) {
    let f = fixture();
    let q = String::from_utf8_lossy(data);
    if let Ok(slo::RedirectMessage { xml, .. }) = slo::verify_redirect(&q, &f.idp, false) {
        assert!(
            xml.len() as u64 <= slo::MAX_INFLATED,
            "verified message over MAX_INFLATED"
        );
        let known = |v: &str| KNOWN_SLO_VALUES.contains(&v);
        match slo::parse(&xml) {
            Ok(slo::SloMessage::Request(r)) => assert!(
                known(&r.name_id),
                "verify_redirect accepted a LogoutRequest the IdP never signed: {r:?}"
            ),
            Ok(slo::SloMessage::Response(r)) => assert!(
                r.in_response_to.as_deref().is_some_and(known),
                "verify_redirect accepted a LogoutResponse the IdP never signed: {r:?}"
            ),
            Err(_) => {}
        }
    }
    if let Ok(x) = slo::inflate(data) {
        assert!(
            x.len() as u64 <= slo::MAX_INFLATED,
            "inflate returned {} bytes",
            x.len()
        );
        let _ = slo::parse(&x);
    }
    let _ = slo::parse(&q);
}

// ------------------------------------------------------------------------------------------
// prescan

pub fn prescan(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = prescan_doc(s);
    }
}

// ------------------------------------------------------------------------------------------
// decrypt

pub fn decrypt(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let keys = [DecryptKey {
        id: "sp-fuzz",
        key: &f.sp_key,
        cert: &f.sp_cert,
    }];
    if let Ok((out, id)) = decrypt_in_place(s, &keys) {
        assert_eq!(id, "sp-fuzz");
        match prescan_doc(&out) {
            Ok(env) => assert!(!env.encrypted, "decrypted document still encrypted"),
            Err(e) => panic!("decrypt_in_place returned a document prescan refuses: {e:?}"),
        }
    }
}
