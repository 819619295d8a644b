//! `samlgate idp test-response` against the real binary, with responses from the independent
//! signer (tests/support/saml_idp.py, python signxml): good ones pass (exit 0, the signed part,
//! the profile), tampered, foreign-key, expired and DOCTYPE ones fail (exit 1) at the right check,
//! and nothing is written: the same response then logs in at the running gateway (no replay
//! record was made).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn test_response(gw: &Gateway, file: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["idp", "test-response"])
        .arg(file)
        .args(extra)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .expect("spawn samlgate")
}

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn save(gw: &Gateway, name: &str, body: &[u8]) -> std::path::PathBuf {
    let p = gw.dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn test_response_offline() {
    let gw = Gateway::start();
    let mut f = Failures::new();

    // Good, Response signed, base64 as posted.
    let b64 = gw.make_response(&["--sign", "response", "--nameid", "GM0100001"]);
    let file = save(&gw, "good.b64", b64.as_bytes());
    let o = test_response(&gw, &file, &[]);
    let s = out(&o);
    f.check("good: exit 0", o.status.success(), || s.clone());
    f.check(
        "good: signature on the response",
        s.contains("[ok    ] signature") && s.contains("verified signature on the response"),
        || s.clone(),
    );
    f.check(
        "good: declared algorithm",
        s.contains("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
        || s.clone(),
    );
    f.check(
        "good: profile",
        s.contains("\"account_id\":\"GM0100001\"") && s.contains("would log in"),
        || s.clone(),
    );
    // Nothing was written: the same response logs in (it is not a replay).
    let r = gw.post_acs(&b64, None);
    f.check(
        "good: logs in afterwards (no replay record)",
        r.session_set_cookie().is_some(),
        || r.summary(),
    );
    // Now it is a replay at the ACS, but test-response never looks at the store.
    let o = test_response(&gw, &file, &[]);
    f.check("good again: exit 0", o.status.success(), || out(&o));

    // Good, Assertion signed, XML.
    let xml = gw.make_response_xml(&["--sign", "assertion", "--nameid", "GM0100002"]);
    let file = save(&gw, "good.xml", &xml);
    let o = test_response(&gw, &file, &["--json"]);
    let j = Json::parse(String::from_utf8_lossy(&o.stdout).trim());
    f.check("xml: exit 0", o.status.success(), || out(&o));
    f.check(
        "xml: json says assertion signed",
        j.as_ref().ok().and_then(|j| j.str("signed")) == Some("assertion")
            && j.as_ref().ok().and_then(|j| j.get("would_log_in")) == Some(&Json::Bool(true)),
        || out(&o),
    );

    // Expired at --at one day later; the same file passes at its own time.
    let o = test_response(&gw, &file, &["--at", &later(86400)]);
    let s = out(&o);
    f.check(
        "--at +1 day: exit 1 at times (stale)",
        o.status.code() == Some(1)
            && s.contains("[FAILED] times")
            && s.contains("issue_instant_stale"),
        || s.clone(),
    );
    f.check(
        "--at +1 day: signature still reported ok",
        s.contains("[ok    ] signature"),
        || s.clone(),
    );

    let o = test_response(&gw, &file, &["--at", &later(-3600)]);
    f.check(
        "--at -1 hour: exit 1 at times (future)",
        o.status.code() == Some(1) && out(&o).contains("[FAILED] times"),
        || out(&o),
    );

    // Tampered after signing (the signer's own attack): signature check fails.
    let b64 = gw.make_response(&["--sign", "both", "--attack", "tamper-nameid"]);
    let o = test_response(&gw, &save(&gw, "tampered.b64", b64.as_bytes()), &[]);
    let s = out(&o);
    f.check(
        "tampered: exit 1 at signature",
        o.status.code() == Some(1)
            && s.contains("[FAILED] signature")
            && s.contains("signature_invalid")
            && s.contains("REFUSED"),
        || s.clone(),
    );

    // Signed by a key that is not in the metadata.
    let other = keygen(&gw.dir.path().join("other"), "attacker.test");
    let b64 = gw.make_response(&[
        "--sign",
        "response",
        "--key",
        other.key.to_str().unwrap(),
        "--cert",
        other.cert.to_str().unwrap(),
    ]);
    let o = test_response(&gw, &save(&gw, "foreign.b64", b64.as_bytes()), &[]);
    f.check(
        "foreign key: exit 1 at signature",
        o.status.code() == Some(1) && out(&o).contains("[FAILED] signature"),
        || out(&o),
    );

    // Wrong audience: signature ok, audience fails, later checks not evaluated.
    let b64 = gw.make_response(&["--sign", "response", "--audience", "https://other-sp.test"]);
    let o = test_response(&gw, &save(&gw, "aud.b64", b64.as_bytes()), &[]);
    let s = out(&o);
    f.check(
        "audience: FAILED audience, later not evaluated",
        o.status.code() == Some(1)
            && s.contains("[FAILED] audience")
            && s.contains("[-     ] subject confirmation"),
        || s.clone(),
    );

    // Missing required attribute: verification ok, mapping fails.
    let b64 = gw.make_response(&["--sign", "response", "--drop-attr", "facilityCode"]);
    let o = test_response(&gw, &save(&gw, "attr.b64", b64.as_bytes()), &[]);
    let s = out(&o);
    f.check(
        "missing attribute: FAILED mapping",
        o.status.code() == Some(1)
            && s.contains("[FAILED] attributes -> profile")
            && s.contains("[ok    ] audience"),
        || s.clone(),
    );

    // DOCTYPE: refused at the document check.
    let b64 = gw.make_response(&["--sign", "response", "--attack", "doctype"]);
    let o = test_response(&gw, &save(&gw, "doctype.b64", b64.as_bytes()), &[]);
    f.check(
        "doctype: FAILED document",
        o.status.code() == Some(1) && out(&o).contains("[FAILED] document"),
        || out(&o),
    );
    f.finish(&gw);
}

/// RFC 3339 `secs` from now (UTC), via the date CLI so the test does not reuse our code.
fn later(secs: i64) -> String {
    let o = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", now() + secs),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
