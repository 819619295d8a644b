//! Black-box tests of samlgate's ACS (`POST /saml/acs`) and session endpoints.
//!
//! Each test function runs its own gateway (see tests/common/mod.rs); cases inside one
//! function share it and are checked one after another, failures are collected and reported
//! together. Responses come from the independent test IdP tests/support/saml_idp.py (signxml;
//! one case is signed by the xmlsec1 CLI).
//!
//! Run: scripts/install-deps.sh && cargo test --test acs
//! Keep a test's tempdir (config, server.log): SAMLGATE_TEST_KEEP=1 (kept anyway on failure).

mod common;

use common::{
    accepted, accepted_as_or_refused, base64_encode, expect_refusals, percent_decode,
    userinfo_json, Failures, Gateway, Opts,
};

const NAMEID: &str = "GM0012345";
const XSW: &[&str] = &["assertion_count", "signature_invalid"];

#[test]
fn accepts_signed_responses_and_serves_sessions() {
    let gw = Gateway::start();
    let mut f = Failures::new();

    // nothing before login
    for (what, cookie) in [
        ("verify without cookie", None),
        ("verify with garbage cookie", Some("samlgate=garbage")),
        ("verify with empty cookie", Some("samlgate=")),
    ] {
        let r = gw.verify(cookie);
        f.check(what, r.status == 401, || {
            format!("expected 401: {}", r.summary())
        });
    }
    let r = gw.userinfo(None);
    f.check("userinfo without cookie", r.status == 401, || {
        format!("expected 401: {}", r.summary())
    });
    for p in ["/healthz", "/readyz"] {
        let r = gw.get(p, None);
        f.check(p, r.status == 200, || r.summary());
    }

    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "signed Response",
            "GM0000001",
            vec!["--sign", "response", "--nameid", "GM0000001"],
        ),
        (
            "signed Assertion",
            "GM0000002",
            vec!["--sign", "assertion", "--nameid", "GM0000002"],
        ),
        (
            "both signed",
            "GM0000003",
            vec!["--sign", "both", "--nameid", "GM0000003"],
        ),
        (
            "xmlsec1 CLI signed Response",
            "GM0000005",
            vec![
                "--signer",
                "xmlsec1",
                "--sign",
                "response",
                "--nameid",
                "GM0000005",
            ],
        ),
        (
            "xmlsec1 CLI signed Assertion+Response",
            "GM0000006",
            vec![
                "--signer",
                "xmlsec1",
                "--sign",
                "both",
                "--nameid",
                "GM0000006",
            ],
        ),
        (
            "default signing (both)",
            "GM0000007",
            vec!["--nameid", "GM0000007"],
        ),
    ];
    let args: Vec<Vec<&str>> = cases.iter().map(|c| c.2.clone()).collect();
    let responses = gw.make_responses(&args);

    let mut live = gw.sessions_live();
    let mut cookies = Vec::new();
    for ((name, nameid, _), b64) in cases.iter().zip(&responses) {
        let r = gw.post_acs(b64, None);
        let Some(cookie) = accepted(&gw, name, &r, &mut f) else {
            continue;
        };
        f.check(name, r.location() == Some("/"), || {
            format!("Location {:?} != \"/\" (no RelayState)", r.location())
        });
        let now = gw.sessions_live();
        f.check(name, now == live + 1.0, || {
            format!("samlgate_sessions_live {live} -> {now}, expected +1")
        });
        live = now;
        let v = gw.verify(Some(&cookie));
        f.check(name, v.status == 200, || format!("verify: {}", v.summary()));
        f.check(
            name,
            v.header("x-auth-request-user") == Some(nameid),
            || {
                format!(
                    "X-Auth-Request-User {:?} != {nameid:?}",
                    v.header("x-auth-request-user")
                )
            },
        );
        cookies.push((name.to_string(), cookie));
    }

    // attributes of one session in detail (the "both signed" one, GM0000003)
    if let Some((_, cookie)) = cookies.iter().find(|(n, _)| n == "both signed") {
        let case = "attributes via /auth/verify";
        let v = gw.verify(Some(cookie));
        let expect_hdr = [
            ("x-auth-request-user", "GM0000003"),
            ("x-auth-request-email", "yamada@example.jp"),
            ("x-samlgate-category", "病院"),
            ("x-samlgate-facility-code", "1310000001"),
            ("x-samlgate-facility-name", "テスト病院"),
            ("x-samlgate-display-name", "山田 太郎"),
        ];
        for (h, want) in expect_hdr {
            let got = v.header(h);
            let ok = match got {
                Some(g) => g.is_ascii() && percent_decode(g).as_deref() == Some(want),
                None => false,
            };
            f.check(case, ok, || {
                format!("{h}: {got:?} does not percent-decode to {want:?} (or is not ASCII)")
            });
        }
        f.check(
            case,
            v.header("x-samlgate-category") == Some("%E7%97%85%E9%99%A2"),
            || {
                format!(
                    "X-Samlgate-Category {:?} != %E7%97%85%E9%99%A2",
                    v.header("x-samlgate-category")
                )
            },
        );

        let case = "attributes via /auth/userinfo";
        match userinfo_json(&gw, cookie) {
            Err(e) => f.check(case, false, || e),
            Ok(j) => {
                for (k, want) in [
                    ("user", "GM0000003"),
                    ("email", "yamada@example.jp"),
                    ("category", "病院"),
                    ("facility_code", "1310000001"),
                    ("facility_name", "テスト病院"),
                    ("display_name", "山田 太郎"),
                ] {
                    f.check(case, j.str(k) == Some(want), || {
                        format!("{k}: {:?} != {want:?} in {j:?}", j.get(k))
                    });
                }
            }
        }
    } else {
        f.check("attributes", false, || {
            "no session from the 'both signed' case to inspect".into()
        });
    }

    // a tampered token is not a session
    if let Some((_, cookie)) = cookies.first() {
        let mut t = cookie.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        let r = gw.verify(Some(&t));
        f.check("verify with a modified token", r.status == 401, || {
            format!("expected 401: {}", r.summary())
        });
    }

    // logout ends the session
    if let Some((_, cookie)) = cookies.last() {
        let case = "logout";
        let before = gw.sessions_live();
        let r = gw.get("/logout", Some(cookie));
        f.check(case, r.status < 400, || {
            format!("GET /logout: {}", r.summary())
        });
        let v = gw.verify(Some(cookie));
        f.check(case, v.status == 401, || {
            format!("verify after logout: {}", v.summary())
        });
        let u = gw.userinfo(Some(cookie));
        f.check(case, u.status == 401, || {
            format!("userinfo after logout: {}", u.summary())
        });
        let after = gw.sessions_live();
        f.check(case, after == before - 1.0, || {
            format!("samlgate_sessions_live {before} -> {after} after logout")
        });
        // the other sessions are untouched
        if cookies.len() > 1 {
            let v = gw.verify(Some(&cookies[0].1));
            f.check(case, v.status == 200, || {
                format!("another session died with the logout: {}", v.summary())
            });
        }
    }

    // not part of the contract (only SHA-1 is named as disallowed): reported, not asserted
    let b64 = gw.make_response(&["--sig-alg", "rsa-sha512", "--nameid", "GM0000004"]);
    let r = gw.post_acs(&b64, None);
    eprintln!(
        "info: rsa-sha512 signed response -> status {} reason {:?} (not asserted)",
        r.status,
        r.reason()
    );

    let m = gw.metrics();
    f.check("metrics", m.contains("samlgate_logins_total{"), || {
        format!("no samlgate_logins_total in /metrics:\n{m}")
    });
    f.check("metrics", m.contains("outcome="), || {
        format!("samlgate_logins_total without outcome label:\n{m}")
    });
    f.finish(&gw);
}

/// A login in a browser that already has a session ends that session on the server, not only
/// its cookie: a copy of the old cookie (another tab, a shared machine, a stolen value) must not
/// stay a second live session.
#[test]
fn a_new_login_ends_the_browsers_earlier_session() {
    let gw = Gateway::start();
    let rs = gw.make_responses(&[vec!["--sign", "both"], vec!["--sign", "both"]]);
    let first = gw.post_acs(&rs[0], None);
    let old = first
        .session_cookie()
        .expect("first login sets a session cookie");
    assert_eq!(gw.verify(Some(&old)).status, 200, "first session works");
    let second = gw.post_acs_with_cookie(&rs[1], &old);
    let new = second
        .session_cookie()
        .unwrap_or_else(|| panic!("second login: {}", second.summary()));
    assert_ne!(new, old, "a new session id on every login");
    assert_eq!(gw.verify(Some(&new)).status, 200, "the new session works");
    let v = gw.verify(Some(&old));
    assert_eq!(
        v.status,
        401,
        "the replaced session still works: {}",
        v.summary()
    );
    assert_eq!(gw.sessions_live(), 1.0, "one live session, not two");
}

#[test]
fn relay_state_only_same_origin_paths() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let cases: Vec<(String, &str)> = vec![
        ("/staff/menu?x=1".into(), "/staff/menu?x=1"),
        ("https://evil.example/".into(), "/"),
        ("//evil.example".into(), "/"),
        ("/\\evil.example".into(), "/"),
        ("javascript:alert(1)".into(), "/"),
        ("".into(), "/"),
        // absolute URL of another port on the same host is another origin
        (
            format!("http://127.0.0.1:{}/x", gw.port.wrapping_add(1).max(1)),
            "/",
        ),
        // an absolute URL on public_url's origin (SimpleSAMLphp, ADFS, Salesforce's "Start
        // URL") is its path and query, through the same path checks
        (
            format!("{}/staff/menu?x=1", gw.public_url()),
            "/staff/menu?x=1",
        ),
        (format!("{}/Menu", gw.public_url().to_uppercase()), "/Menu"),
        (format!("{}//evil.example/", gw.public_url()), "/"),
        (format!("{}/%2F%2Fevil.example", gw.public_url()), "/"),
        (format!("{}@evil.example/x", gw.public_url()), "/"),
    ];
    // browsers drop tab/CR/LF inside URLs and read "\" as "/": these must not become
    // "//evil.example"; "/" or a harmless same-origin path (no control characters) is fine
    let tricky = [
        "/\t/evil.example",
        "/\r\n/evil.example",
        "\\\\evil.example",
        "/staff/\r\nSet-Cookie: samlgate=x",
    ];
    let n = cases.len() + tricky.len();
    let args: Vec<Vec<&str>> = (0..n).map(|_| vec!["--sign", "both"]).collect();
    let responses = gw.make_responses(&args);
    for ((rs, want), b64) in cases.iter().zip(&responses) {
        let case = format!("RelayState {rs:?}");
        let r = gw.post_acs(b64, Some(rs));
        if accepted(&gw, &case, &r, &mut f).is_some() {
            f.check(&case, r.location() == Some(want), || {
                format!("Location {:?}, expected {want:?}", r.location())
            });
        }
    }
    for (rs, b64) in tricky.iter().zip(&responses[cases.len()..]) {
        let case = format!("RelayState {rs:?}");
        let r = gw.post_acs(b64, Some(rs));
        if accepted(&gw, &case, &r, &mut f).is_some() {
            let loc = r.location().unwrap_or("");
            let safe = loc == "/"
                || (loc.starts_with('/')
                    && !loc[1..].starts_with(['/', '\\'])
                    && !loc.chars().any(|c| c.is_control() || c == '\\'));
            f.check(&case, safe, || format!("unsafe Location {loc:?}"));
            f.check(&case, r.headers_all("set-cookie").len() == 1, || {
                format!("Set-Cookie headers: {:?}", r.headers_all("set-cookie"))
            });
        }
    }
    // the operator sees why a RelayState was not used
    let log = gw.log();
    f.check(
        "log line for another origin",
        log.lines().any(|l| {
            l.contains("RelayState not used")
                && l.contains("relay_state_other_origin")
                && l.contains("https://evil.example:443")
        }),
        || "no 'RelayState not used ... relay_state_other_origin' line".into(),
    );
    f.finish(&gw);
}

#[test]
fn metadata_with_two_signing_keys() {
    let gw = Gateway::start_with(Opts {
        idp_keys: 2,
        ..Opts::default()
    });
    let mut f = Failures::new();
    let k1 = gw.idp[0].clone();
    let k2 = gw.idp[1].clone();
    let k3 = common::keygen(&gw.dir.path().join("not-in-metadata"), "gmis-idp.test");
    let (k1k, k1c) = (k1.key.to_str().unwrap(), k1.cert.to_str().unwrap());
    let (k2k, k2c) = (k2.key.to_str().unwrap(), k2.cert.to_str().unwrap());
    let (k3k, k3c) = (k3.key.to_str().unwrap(), k3.cert.to_str().unwrap());
    let args = vec![
        vec!["--key", k1k, "--cert", k1c, "--nameid", "GM0000011"],
        vec!["--key", k2k, "--cert", k2c, "--nameid", "GM0000012"],
        vec![
            "--key",
            k2k,
            "--cert",
            k2c,
            "--sign",
            "assertion",
            "--nameid",
            "GM0000013",
        ],
        vec!["--key", k3k, "--cert", k3c, "--nameid", "GM0000014"],
        vec![
            "--key",
            k3k,
            "--cert",
            k3c,
            "--sign",
            "assertion",
            "--nameid",
            "GM0000015",
        ],
    ];
    let rs = gw.make_responses(&args);
    for (i, name) in ["old key", "new key", "new key, Assertion signed"]
        .iter()
        .enumerate()
    {
        let r = gw.post_acs(&rs[i], None);
        if let Some(c) = accepted(&gw, name, &r, &mut f) {
            let v = gw.verify(Some(&c));
            let want = format!("GM000001{}", i + 1);
            f.check(
                name,
                v.header("x-auth-request-user") == Some(want.as_str()),
                || v.summary(),
            );
        }
    }
    expect_refusals(
        &gw,
        &[
            (
                "key not in metadata (same CN, cert in KeyInfo)",
                rs[3].clone(),
                &["signature_invalid"],
            ),
            (
                "key not in metadata, Assertion signed",
                rs[4].clone(),
                &["signature_invalid"],
            ),
        ],
        &mut f,
    );
    f.finish(&gw);
}

#[test]
fn refuses_protocol_violations() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    #[rustfmt::skip]
    let table: Vec<(&str, Vec<&str>, &[&str])> = vec![
        ("unsigned", vec!["--sign", "none"], &["signature_invalid"]),
        ("rsa-sha1 signature", vec!["--sig-alg", "rsa-sha1"], &["signature_algorithm_refused"]),
        ("rsa-sha1 on Assertion only", vec!["--sig-alg", "rsa-sha1", "--sign", "assertion"], &["signature_algorithm_refused"]),
        ("rsa-sha256 with sha1 digest", vec!["--digest-alg", "sha1"], &["signature_algorithm_refused"]),
        ("wrong Issuer", vec!["--issuer", "https://evil-idp.test/idp"], &["issuer_mismatch"]),
        ("wrong Destination", vec!["--destination", "http://127.0.0.1:9/saml/acs"], &["destination_mismatch"]),
        ("status Responder", vec!["--status", "Responder"], &["status_not_success"]),
        ("wrong Audience", vec!["--audience", "https://other-sp.example/saml/metadata"], &["audience_mismatch"]),
        ("no AudienceRestriction", vec!["--no-audience"], &["audience_mismatch"]),
        ("wrong Recipient", vec!["--recipient", "http://127.0.0.1:9/saml/acs"], &["recipient_mismatch"]),
        ("holder-of-key, no bearer", vec!["--no-bearer"], &["bearer_missing"]),
        ("no SubjectConfirmation", vec!["--no-subject-confirmation"], &["bearer_missing"]),
        // NotOnOrAfter 85 s ago (> 60 s skew), IssueInstant only 90 s old
        ("expired", vec!["--time-offset", "-90", "--validity", "5"], &["expired"]),
        ("expired 2 h ago", vec!["--time-offset", "-7800"], &["expired", "issue_instant_stale"]),
        // NotBefore in 5 min, IssueInstant now
        ("not yet valid", vec!["--time-offset", "300", "--issue-instant-offset", "-300"], &["not_yet_valid"]),
        ("everything 5 min ahead", vec!["--time-offset", "300"], &["not_yet_valid", "issue_instant_future"]),
        ("IssueInstant in 5 min", vec!["--issue-instant-offset", "300"], &["issue_instant_future"]),
        ("IssueInstant a day old", vec!["--issue-instant-offset", "-86400"], &["issue_instant_stale"]),
        ("InResponseTo never sent", vec!["--in-response-to", "_0123456789abcdef0123456789abcdef"], &["in_response_to_unknown"]),
        ("no facilityCode", vec!["--drop-attr", "facilityCode"], &["attribute_missing"]),
        ("no accountCategory", vec!["--drop-attr", "accountCategory"], &["attribute_missing"]),
        ("no gmisAccountId", vec!["--drop-attr", "gmisAccountId"], &["attribute_missing"]),
        ("no Assertion (signed Response)", vec!["--no-assertion"], &["assertion_count"]),
        // the same checks when only the Assertion is signed (the Response envelope is not)
        ("wrong Destination, Assertion signed", vec!["--sign", "assertion", "--destination", "http://127.0.0.1:9/saml/acs"], &["destination_mismatch"]),
        ("status Responder, Assertion signed", vec!["--sign", "assertion", "--status", "Responder"], &["status_not_success"]),
        ("wrong Issuer on the Assertion only", vec!["--assertion-issuer", "https://evil-idp.test/idp"], &["issuer_mismatch"]),
        // SubjectConfirmationData NotOnOrAfter passed (2 min ago) while Conditions are valid
        ("bearer confirmation expired", vec!["--scd-validity", "-120"], &["expired"]),
        // SAML core 2.5.1.4: every AudienceRestriction must be satisfied
        ("second AudienceRestriction for another SP", vec!["--extra-audience-restriction", "https://other-sp.example/saml/metadata"], &["audience_mismatch"]),
        // Web SSO profile 4.1.4.2: a bearer assertion must carry an AuthnStatement
        ("no AuthnStatement", vec!["--no-authn-statement"], &["authn_statement_missing"]),
        ("no AuthnStatement, Assertion signed", vec!["--sign", "assertion", "--no-authn-statement"], &["authn_statement_missing"]),
    ];
    let args: Vec<Vec<&str>> = table.iter().map(|c| c.1.clone()).collect();
    let rs = gw.make_responses(&args);
    let cases: Vec<(&str, String, &[&str])> = table
        .iter()
        .zip(rs)
        .map(|((n, _, e), b)| (*n, b, *e))
        .collect();
    expect_refusals(&gw, &cases, &mut f);
    f.finish(&gw);
}

#[test]
fn refuses_malformed_input() {
    let gw = Gateway::start();
    let mut f = Failures::new();

    // form-level problems
    #[rustfmt::skip]
    let forms: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("no SAMLResponse field", b"RelayState=%2Fstaff%2F".to_vec(), &["bad_request"]),
        ("empty body", Vec::new(), &["bad_request"]),
        ("empty SAMLResponse", b"SAMLResponse=&RelayState=%2F".to_vec(), &["bad_request", "bad_base64", "bad_xml"]),
        ("not base64", b"SAMLResponse=not*base64%21%21&RelayState=%2F".to_vec(), &["bad_base64"]),
        ("base64 of junk bytes", format!("SAMLResponse={}", common::form_encode(&base64_encode(&[0xff, 0xfe, 0x00, 0x01, 0x80, 0x3c, 0x3c]))).into_bytes(), &["bad_xml"]),
    ];
    for (name, body, expected) in &forms {
        let before = gw.sessions_live();
        let r = gw.post_form(body);
        eprintln!("case {name:?}: status {} reason {:?}", r.status, r.reason());
        f.add(name, gw.refusal_problems(&r, expected, before));
    }

    // oversize body (max_body_bytes = 262144)
    {
        let before = gw.sessions_live();
        let mut body = b"SAMLResponse=".to_vec();
        body.extend(std::iter::repeat_n(b'A', 300_000));
        let r = gw.post_raw("/saml/acs", "application/x-www-form-urlencoded", body);
        let mut p = gw.refusal_problems(&r, &["body_too_large"], before);
        if r.status != 413 {
            p.push(format!("status {} != 413", r.status));
        }
        f.add("body of 300000 bytes", p);
    }

    // XML-level problems (base64 is fine)
    let valid = gw.make_response_xml(&["--sign", "both"]);
    let truncated = valid[..valid.len() / 2].to_vec();
    let b64 = |x: &[u8]| base64_encode(x);
    let ns = r#"xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#;
    let logout = format!(
        r#"<samlp:LogoutResponse {ns} ID="_a1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://gmis-idp.test/idp</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:LogoutResponse>"#
    );
    let doctype_only = format!(
        r#"<?xml version="1.0"?><!DOCTYPE samlp:Response SYSTEM "http://127.0.0.1:9/x.dtd"><samlp:Response {ns} ID="_a2" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"/>"#
    );
    let depth = 20_000;
    let nested = format!(
        "<samlp:Response {ns} ID=\"_a3\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\">{}{}</samlp:Response>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    let mut cases: Vec<(&str, String, &[&str])> = vec![
        (
            "20000 nested elements",
            b64(nested.as_bytes()),
            &[
                "bad_xml",
                "not_a_response",
                "assertion_count",
                "signature_invalid",
            ],
        ),
        ("truncated XML", b64(&truncated), &["bad_xml"]),
        (
            "unclosed element",
            b64(format!("<samlp:Response {ns}><saml:Issuer>").as_bytes()),
            &["bad_xml"],
        ),
        ("plain text", b64(b"hello, this is not XML"), &["bad_xml"]),
        (
            "other root element",
            b64(b"<foo xmlns=\"urn:example\"><bar/></foo>"),
            &["not_a_response"],
        ),
        (
            "LogoutResponse",
            b64(logout.as_bytes()),
            &["not_a_response"],
        ),
        (
            "external DOCTYPE",
            b64(doctype_only.as_bytes()),
            &["doctype_forbidden"],
        ),
    ];
    let attacks = ["doctype", "xxe", "billion-laughs"];
    let args: Vec<Vec<&str>> = attacks.iter().map(|a| vec!["--attack", *a]).collect();
    let rs = gw.make_responses(&args);
    let names = [
        "internal DOCTYPE before a valid signed Response",
        "XXE (file:///etc/passwd in NameID)",
        "billion laughs",
    ];
    for (n, b) in names.iter().zip(rs) {
        cases.push((n, b, &["doctype_forbidden"]));
    }
    expect_refusals(&gw, &cases, &mut f);
    f.finish(&gw);
}

#[test]
fn refuses_signature_attacks() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    // Somorovsky et al. "On Breaking SAML" (2012) numbering: xsw-evil-first = XSW3,
    // xsw-evil-after = XSW3 with the evil copy last, xsw-wrap-in-extensions = Response-level
    // wrapping (XSW1/XSW2 family), xsw-evil-in-subject = XSW4 variant (inside the Subject),
    // xsw-evil-in-extensions = XSW7, xsw-assertion-in-object = XSW8. XSW1, XSW2, XSW4, XSW5 and
    // XSW6 proper are in tests/adversarial.rs.
    #[rustfmt::skip]
    let table: Vec<(&str, Vec<&str>, &[&str])> = vec![
        ("XSW: unsigned evil Assertion before the signed one", vec!["--attack", "xsw-evil-first"], XSW),
        ("XSW: unsigned evil Assertion after the signed one", vec!["--attack", "xsw-evil-after"], XSW),
        ("XSW: signed Response moved into Extensions of an evil one", vec!["--attack", "xsw-wrap-in-extensions"], XSW),
        ("XSW: signed Assertion hidden in ds:Object", vec!["--attack", "xsw-assertion-in-object"], XSW),
        ("XSW: signed Assertion inside the evil Assertion's Subject", vec!["--attack", "xsw-evil-in-subject"], XSW),
        ("XSW: unsigned evil Assertion in samlp:Extensions", vec!["--attack", "xsw-evil-in-extensions"], XSW),
        ("two signed Assertions", vec!["--attack", "two-signed-assertions"], &["assertion_count"]),
        ("two signed Assertions in a signed Response", vec!["--attack", "two-signed-assertions", "--sign", "both"], &["assertion_count"]),
        ("signed + unsigned duplicate Assertion", vec!["--attack", "two-assertions"], XSW),
        ("two Assertions in a signed Response", vec!["--attack", "two-assertions", "--sign", "response"], &["assertion_count"]),
        ("Assertion + EncryptedAssertion, all signed", vec!["--attack", "extra-encrypted-assertion"], &["assertion_count"]),
        ("attacker key, attacker cert in KeyInfo", vec!["--attack", "key-substitution"], &["signature_invalid"]),
        ("attacker key on Assertion only", vec!["--attack", "key-substitution", "--sign", "assertion"], &["signature_invalid"]),
        ("attacker key on Response only", vec!["--attack", "key-substitution", "--sign", "response"], &["signature_invalid"]),
        ("NameID changed after signing (both)", vec!["--attack", "tamper-nameid"], &["signature_invalid"]),
        ("NameID changed after signing (Response)", vec!["--attack", "tamper-nameid", "--sign", "response"], &["signature_invalid"]),
        ("NameID changed after signing (Assertion)", vec!["--attack", "tamper-nameid", "--sign", "assertion"], &["signature_invalid"]),
    ];
    let args: Vec<Vec<&str>> = table.iter().map(|c| c.1.clone()).collect();
    let rs = gw.make_responses(&args);
    let cases: Vec<(&str, String, &[&str])> = table
        .iter()
        .zip(rs)
        .map(|((n, _, e), b)| (*n, b, *e))
        .collect();
    expect_refusals(&gw, &cases, &mut f);
    f.finish(&gw);
}

/// `GM0012345<!---->.evil` / `GM0012345<![CDATA[.evil]]>` signed as-is: the signed string is
/// `GM0012345.evil`. Accepting it as anything else (the truncated `GM0012345`, someone
/// else's account) is the bug; refusing it is fine.
#[test]
fn comment_or_cdata_in_nameid_never_truncates() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let whole = format!("{NAMEID}.evil");
    #[rustfmt::skip]
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("comment, both signed", vec!["--comment-in-nameid", "--sign", "both"]),
        ("comment, Assertion signed", vec!["--comment-in-nameid", "--sign", "assertion"]),
        ("comment, Response signed", vec!["--comment-in-nameid", "--sign", "response"]),
        ("CDATA, both signed", vec!["--cdata-in-nameid", "--sign", "both"]),
        ("CDATA, Assertion signed", vec!["--cdata-in-nameid", "--sign", "assertion"]),
        ("CDATA, Response signed", vec!["--cdata-in-nameid", "--sign", "response"]),
        ("character reference &#46;, both signed", vec!["--charref-in-nameid", "--sign", "both"]),
        ("character reference &#46;, Assertion signed", vec!["--charref-in-nameid", "--sign", "assertion"]),
    ];
    let args: Vec<Vec<&str>> = table
        .iter()
        .map(|(_, a)| [a.clone(), vec!["--nameid", whole.as_str()]].concat())
        .collect();
    let rs = gw.make_responses(&args);
    for ((name, _), b64) in table.iter().zip(&rs) {
        accepted_as_or_refused(&gw, name, b64, &whole, &mut f);
    }
    f.finish(&gw);
}

#[test]
fn replay_is_refused_also_after_restart() {
    let mut gw = Gateway::start();
    let mut f = Failures::new();
    let rs = gw.make_responses(&[vec!["--sign", "both"], vec!["--sign", "assertion"]]);
    let (a, b) = (&rs[0], &rs[1]);
    let r = gw.post_acs(a, Some("/staff/"));
    let cookie = accepted(&gw, "first use", &r, &mut f);
    let before = gw.sessions_live();
    let r = gw.post_acs(a, Some("/staff/"));
    f.add(
        "same response again",
        gw.refusal_problems(&r, &["replay"], before),
    );
    let r = gw.post_acs(a, Some("/other/"));
    f.add(
        "same response, other RelayState",
        gw.refusal_problems(&r, &["replay"], before),
    );

    // the signed Assertion of an accepted response, re-wrapped in a new (unsigned) Response
    // envelope with a fresh ID: a replay cache keyed on the Response ID alone misses it
    let xml = gw.make_response_xml(&["--sign", "assertion", "--nameid", "GM0000021"]);
    let r = gw.post_acs(&base64_encode(&xml), None);
    accepted(&gw, "assertion-signed response, first use", &r, &mut f);
    let rewrapped = with_new_response_id(&xml);
    let before = gw.sessions_live();
    let r = gw.post_acs(&base64_encode(&rewrapped), None);
    f.add(
        "same signed Assertion in a new Response (new Response ID)",
        gw.refusal_problems(&r, &["replay"], before),
    );

    gw.restart();
    let before = gw.sessions_live();
    let r = gw.post_acs(a, Some("/staff/"));
    f.add(
        "same response after a graceful restart",
        gw.refusal_problems(&r, &["replay"], before),
    );
    // the store survives: a fresh response still works, and the old session is still known
    let r = gw.post_acs(b, None);
    accepted(&gw, "fresh response after restart", &r, &mut f);
    if let Some(c) = cookie {
        let v = gw.verify(Some(&c));
        f.check(
            "session survives a graceful restart",
            v.status == 200,
            || v.summary(),
        );
    }
    f.finish(&gw);
}

/// The XML with the root Response's ID (the first `ID="..."`) replaced by a fresh one.
fn with_new_response_id(xml: &[u8]) -> Vec<u8> {
    let s = String::from_utf8(xml.to_vec()).expect("utf-8 XML");
    let start = s.find(" ID=\"").expect("Response ID") + 5;
    let end = start + s[start..].find('"').unwrap();
    let fresh = format!(
        "_{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    format!("{}{}{}", &s[..start], fresh, &s[end..]).into_bytes()
}

#[test]
fn replay_is_refused_after_crash_restart() {
    let mut gw = Gateway::start();
    let mut f = Failures::new();
    let a = gw.make_response(&["--sign", "both"]);
    let r = gw.post_acs(&a, None);
    accepted(&gw, "first use", &r, &mut f);
    gw.crash_restart(); // SIGKILL right after the login
    let before = gw.sessions_live();
    let r = gw.post_acs(&a, None);
    f.add(
        "same response after SIGKILL + start",
        gw.refusal_problems(&r, &["replay"], before),
    );
    f.finish(&gw);
}

/// Attribute values end up in HTTP headers of /auth/verify: control characters must not split
/// or add headers. Accepting (with the value encoded) or refusing are both fine.
#[test]
fn attribute_values_cannot_inject_headers() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let evil_display = "Taro\r\nX-Auth-Request-User: GM0000000";
    let evil_fac = "病院\nX-Samlgate-Category: admin";
    let a1 = format!("displayName={evil_display}");
    let a2 = format!("facilityName={evil_fac}");
    let rs = gw.make_responses(&[vec!["--nameid", "GM0000031", "--attr", &a1, "--attr", &a2]]);
    let name = "CR/LF in displayName and facilityName";
    let before = gw.sessions_live();
    let r = gw.post_acs(&rs[0], None);
    eprintln!("case {name:?}: status {} reason {:?}", r.status, r.reason());
    if r.status == 303 {
        if let Some(c) = accepted(&gw, name, &r, &mut f) {
            let v = gw.verify(Some(&c));
            f.check(name, v.status == 200, || format!("verify: {}", v.summary()));
            let users = v.headers_all("x-auth-request-user");
            f.check(name, users == vec!["GM0000031"], || {
                format!("X-Auth-Request-User headers: {users:?}")
            });
            let cats = v.headers_all("x-samlgate-category");
            f.check(name, cats == vec!["%E7%97%85%E9%99%A2"], || {
                format!("X-Samlgate-Category headers: {cats:?}")
            });
            for (h, want) in [
                ("x-samlgate-display-name", evil_display),
                ("x-samlgate-facility-name", evil_fac),
            ] {
                let got = v.header(h);
                let ok = got
                    .map(|g| {
                        !g.contains(['\r', '\n']) && percent_decode(g).as_deref() == Some(want)
                    })
                    .unwrap_or(false);
                f.check(name, ok, || {
                    format!("{h}: {got:?} should percent-decode to {want:?}")
                });
            }
            match userinfo_json(&gw, &c) {
                Err(e) => f.check(name, false, || e),
                Ok(j) => f.check(name, j.str("display_name") == Some(evil_display), || {
                    format!("userinfo {j:?}")
                }),
            }
        }
    } else {
        let reason = r.reason().unwrap_or("").to_string();
        f.add(name, gw.refusal_problems(&r, &[reason.as_str()], before));
    }
    f.finish(&gw);
}

/// Identity and attributes come only from the signed Assertion: look-alikes elsewhere in the
/// unsigned parts of the document must not be read (refusing the document is fine too).
#[test]
fn identity_only_from_the_signed_assertion() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    #[rustfmt::skip]
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("look-alike Assertion in another namespace before the signed one", vec!["--attack", "evil-foreign-ns"]),
        ("bare NameID + AttributeStatement in samlp:Extensions", vec!["--attack", "evil-nameid-in-extensions"]),
        ("AttributeStatement after the signed Assertion", vec!["--attack", "evil-attrs-after-assertion"]),
    ];
    let amp = "医療法人A&B会 <テスト>病院 \"本院\"";
    let amp_attr = format!("facilityName={amp}");
    let mut args: Vec<Vec<&str>> = table.iter().map(|c| c.1.clone()).collect();
    args.push(vec!["--nameid", "GM0000041", "--attr", &amp_attr]);
    args.push(vec![
        "--nameid",
        "GM0000042",
        "--attr",
        "gmisAccountId=GM0000043",
    ]);
    args.push(vec![
        "--nameid",
        "GM0000044",
        "--attr",
        "gmisAccountId=GM0000044",
        "--attr",
        "gmisAccountId=GM0000045",
    ]);
    let rs = gw.make_responses(&args);
    for ((name, _), b64) in table.iter().zip(&rs) {
        accepted_as_or_refused(&gw, name, b64, NAMEID, &mut f);
    }

    // escaped markup characters in a value arrive whole (entity references are not boundaries)
    let name = "facilityName with & < > \" (escaped in XML)";
    let r = gw.post_acs(&rs[3], None);
    if let Some(c) = accepted(&gw, name, &r, &mut f) {
        match userinfo_json(&gw, &c) {
            Err(e) => f.check(name, false, || e),
            Ok(j) => f.check(name, j.str("facility_name") == Some(amp), || {
                format!("facility_name {:?} != {amp:?}", j.get("facility_name"))
            }),
        }
        let v = gw.verify(Some(&c));
        let got = v
            .header("x-samlgate-facility-name")
            .and_then(percent_decode);
        f.check(name, got.as_deref() == Some(amp), || {
            format!("X-Samlgate-Facility-Name decodes to {got:?}")
        });
    }

    // not in the contract: reported, not asserted
    for (i, what) in [
        (4, "NameID GM0000042 but gmisAccountId GM0000043"),
        (5, "gmisAccountId with two values GM0000044, GM0000045"),
    ] {
        let r = gw.post_acs(&rs[i], None);
        let user = r.session_cookie().map(|c| {
            userinfo_json(&gw, &c)
                .ok()
                .and_then(|j| j.str("user").map(str::to_string))
        });
        eprintln!(
            "info: {what} -> status {} reason {:?} user {:?} (not asserted)",
            r.status,
            r.reason(),
            user
        );
    }
    f.finish(&gw);
}

/// `samlgate GROUP --config CFG ARGS...`, which must succeed.
fn cli_ok(gw: &Gateway, group: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(common::BIN)
        .arg(group)
        .arg("--config")
        .arg(&gw.config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn samlgate CLI");
    assert!(
        out.status.success(),
        "`samlgate {group} {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 12 item 9: with the default `[attributes] required` (account_id, category), a
/// public-body account (保健所) that G-MIS sends without a facility code gets the application
/// page, and once its application is approved, a session.
#[test]
fn public_body_without_facility_code_logs_in_with_an_approved_application() {
    let mut gw = Gateway::start();
    // The harness lists facility_code explicitly; drop the line so the default applies. The
    // admin API lets the CLI file the application while the gateway runs.
    let line = "required = [\"account_id\", \"category\", \"facility_code\"]\n";
    let cfg = std::fs::read_to_string(&gw.config).unwrap();
    assert!(cfg.contains(line), "harness config changed:\n{cfg}");
    let tok = gw.dir.path().join("admin.token");
    std::fs::write(&tok, "0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = cfg.replacen(line, "", 1) + "\n[admin]\ntoken_file = \"admin.token\"\n";
    std::fs::write(&gw.config, cfg).unwrap();
    gw.restart();
    let mut f = Failures::new();
    let id = "GM0033333";
    let hokenjo = vec![
        "--nameid",
        id,
        "--attr",
        "accountCategory=保健所",
        "--attr",
        "facilityName=みなと保健所",
        "--drop-attr",
        "facilityCode",
    ];
    let rs = gw.make_responses(&[
        hokenjo.clone(),
        hokenjo,
        vec!["--nameid", "GM0033334", "--drop-attr", "accountCategory"],
    ]);
    let r = gw.post_acs(&rs[0], None);
    f.check(
        "保健所 without facility code, no application yet",
        r.status == 403 && r.reason() == Some("application_needed"),
        || r.summary(),
    );
    cli_ok(
        &gw,
        "applications",
        &["add", id, "--approve", "--by", "test"],
    );
    let r = gw.post_acs(&rs[1], Some("/menu"));
    if let Some(c) = accepted(&gw, "approved 保健所 without facility code", &r, &mut f) {
        f.check("lands on RelayState", r.location() == Some("/menu"), || {
            r.summary()
        });
        let v = gw.verify(Some(&c));
        f.check(
            "identity headers",
            v.status == 200
                && v.header("x-auth-request-user") == Some(id)
                && v.header("x-samlgate-facility-code")
                    .unwrap_or("")
                    .is_empty(),
            || v.summary(),
        );
    }
    expect_refusals(
        &gw,
        &[(
            "no accountCategory (still required by default)",
            rs[2].clone(),
            &["attribute_missing"],
        )],
        &mut f,
    );
    f.finish(&gw);
}

/// Issue 12 item 8: SHA-1 is refused by default with a reason that names the cause; with
/// `[idp] allow_sha1 = true` RSA-SHA1 and SHA-1 digests from the metadata keys are accepted,
/// warned about (start-up, check-config, every login) and counted in /metrics.
#[test]
fn sha1_refused_by_default_and_accepted_only_when_allowed() {
    let mut gw = Gateway::start();
    let mut f = Failures::new();
    let other = common::keygen(&gw.dir.path().join("not-in-metadata"), "gmis-idp.test");
    let (ok, oc) = (other.key.to_str().unwrap(), other.cert.to_str().unwrap());
    #[rustfmt::skip]
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("rsa-sha1, both signed", vec!["--sig-alg", "rsa-sha1", "--nameid", "GM0000101"]),
        ("rsa-sha1, Assertion signed", vec!["--sig-alg", "rsa-sha1", "--sign", "assertion", "--nameid", "GM0000102"]),
        ("rsa-sha256 with sha1 digests", vec!["--digest-alg", "sha1", "--nameid", "GM0000103"]),
        ("rsa-sha1 by the xmlsec1 CLI", vec!["--sig-alg", "rsa-sha1", "--signer", "xmlsec1", "--sign", "response", "--nameid", "GM0000104"]),
    ];
    let mut args: Vec<Vec<&str>> = table.iter().map(|c| c.1.clone()).collect();
    // after the switch: a key not in the metadata (its cert in KeyInfo), and a SHA-256 login
    args.push(vec!["--sig-alg", "rsa-sha1", "--key", ok, "--cert", oc]);
    args.push(vec!["--nameid", "GM0000105"]);
    let mut rs = gw.make_responses(&args);
    // the same documents are posted twice (refused, then accepted): a refusal records nothing
    let sha1_cases: Vec<(&str, String, &[&str])> = table
        .iter()
        .zip(&rs)
        .map(|((n, _), b)| (*n, b.clone(), &["signature_algorithm_refused"][..]))
        .collect();
    expect_refusals(&gw, &sha1_cases, &mut f);
    let log = gw.log();
    f.check(
        "refusal log names the algorithm",
        log.lines().any(|l| {
            l.contains("signature_algorithm_refused")
                && l.contains("http://www.w3.org/2000/09/xmldsig#rsa-sha1")
                && l.contains("allow_sha1")
        }) && log.contains("http://www.w3.org/2000/09/xmldsig#sha1"),
        || "no refusal line naming rsa-sha1 / sha1".into(),
    );

    let cfg = std::fs::read_to_string(&gw.config).unwrap();
    let cfg = cfg.replacen(
        "allow_unsolicited = true\n",
        "allow_unsolicited = true\nallow_sha1 = true\n",
        1,
    );
    std::fs::write(&gw.config, cfg).unwrap();
    gw.restart();
    let check = cli_ok(&gw, "check-config", &[]);
    f.check(
        "check-config warns",
        check.contains("warning:") && check.contains("allow_sha1"),
        || check.clone(),
    );
    f.check(
        "start-up warns",
        gw.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("allow_sha1 = true")),
        || gw.log_tail(2000),
    );
    let logins_warned = |gw: &Gateway| gw.log().matches("login signed with SHA-1").count();
    for ((name, _), b64) in table.iter().zip(&rs) {
        let r = gw.post_acs(b64, None);
        accepted(&gw, name, &r, &mut f);
    }
    let sha1_logins = |gw: &Gateway| {
        common::metric_value(&gw.metrics(), "samlgate_sha1_logins_total").unwrap_or(-1.0)
    };
    f.check("every SHA-1 login counted", sha1_logins(&gw) == 4.0, || {
        format!("samlgate_sha1_logins_total {}", sha1_logins(&gw))
    });
    f.check("every SHA-1 login warned", logins_warned(&gw) == 4, || {
        format!("{} 'login signed with SHA-1' lines", logins_warned(&gw))
    });
    let sha256 = rs.pop().unwrap();
    let foreign = rs.pop().unwrap();
    expect_refusals(
        &gw,
        &[(
            "rsa-sha1, key not in metadata",
            foreign,
            &["signature_invalid"],
        )],
        &mut f,
    );
    let r = gw.post_acs(&sha256, None);
    accepted(&gw, "rsa-sha256 with allow_sha1", &r, &mut f);
    f.check(
        "a SHA-256 login is not counted",
        sha1_logins(&gw) == 4.0,
        || format!("samlgate_sha1_logins_total {}", sha1_logins(&gw)),
    );
    f.finish(&gw);
}
