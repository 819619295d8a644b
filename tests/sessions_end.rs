//! Every way a session ends goes through `sessions::end` (issue 16), seen from outside: each
//! path against `samlgate serve` ends the session it should (`/auth/verify` says 401 after)
//! and leaves the one `sessions ended` log line with its `why` and the count. The admin paths
//! run through the gateway's admin API (the CLI reaches the running gateway on sled).
//! `src/sessions.rs` holds the unit tests (selection, token cache) and the check that no other
//! module deletes sessions.

mod common;
mod local_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use local_common::*;

/// The server log without ANSI colour sequences.
fn plain_log(gw: &Gateway) -> String {
    let l = gw.log();
    let mut out = String::with_capacity(l.len());
    let mut it = l.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A field of a log line (`name=value` or `name="value"`).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let v = line[at..].split_whitespace().next()?;
    Some(v.trim_matches('"'))
}

/// (which, ended) of every `sessions ended` line with this `why`, in order.
fn ended(gw: &Gateway, why: &str) -> Vec<(String, u64)> {
    plain_log(gw)
        .lines()
        .filter(|l| l.contains("sessions ended") && field(l, "why") == Some(why))
        .map(|l| {
            (
                field(l, "which").unwrap_or("").to_string(),
                field(l, "ended").and_then(|n| n.parse().ok()).unwrap_or(0),
            )
        })
        .collect()
}

fn assert_ended(gw: &Gateway, why: &str, want: &[(&str, u64)]) {
    let got = ended(gw, why);
    let want: Vec<(String, u64)> = want.iter().map(|(w, n)| (w.to_string(), *n)).collect();
    assert_eq!(
        got,
        want,
        "`sessions ended` lines with why={why}; log:\n{}",
        gw.log_tail(3000)
    );
}

/// An admin op's answer: the count `sessions::end` gave back, and its log line. On sled the
/// CLI runs the op in the gateway (admin API), so the line is in the gateway's log; on
/// PostgreSQL the CLI runs it itself (its log is its own).
fn assert_admin_ended(gw: &Gateway, v: &serde_json::Value, why: &str, which: &str, n: u64) {
    assert_eq!(v["sessions_ended"], n, "{why}: {v}");
    if std::env::var("SAMLGATE_TEST_STORE").as_deref() != Ok("pg") {
        assert_ended(gw, why, &[(which, n)]);
    }
}

/// A G-MIS login in a fresh browser (or replacing `cookie`'s session): the new cookie.
fn saml_login(gw: &Gateway, nameid: &str, cookie: Option<&str>) -> String {
    let b64 = gw.make_response(&["--nameid", nameid]);
    let r = match cookie {
        Some(c) => gw.post_acs_with_cookie(&b64, c),
        None => gw.post_acs(&b64, None),
    };
    assert_eq!(r.status, 303, "login {nameid}: {}", r.summary());
    let c = r.session_cookie().expect("session cookie");
    assert_eq!(gw.verify(Some(&c)).status, 200, "fresh session verifies");
    c
}

fn alive(gw: &Gateway, cookie: &str) -> bool {
    gw.verify(Some(cookie)).status == 200
}

fn tool_ok(args: &[String]) -> String {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/slo_tool.py");
    let out = Command::new(python())
        .arg(tool)
        .args(args)
        .output()
        .expect("spawn slo_tool.py");
    assert!(
        out.status.success(),
        "slo_tool.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// An IdP LogoutRequest (Redirect binding, signed with IdP key 0): the query.
fn logout_request(gw: &Gateway, nameid: &str) -> String {
    let a: Vec<String> = [
        "logout-request",
        "--issuer",
        IDP_ENTITY,
        "--destination",
        &gw.url("/saml/slo"),
        "--binding",
        "redirect",
        "--key",
        &path_arg(&gw.idp[0].key),
        "--cert",
        &path_arg(&gw.idp[0].cert),
        "--nameid",
        nameid,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tool_ok(&a)
}

/// A response whose SessionNotOnOrAfter is `secs` from now (re-signed by slo_tool).
fn short_response(gw: &Gateway, nameid: &str, secs: &str) -> String {
    let unsigned = gw.make_response_xml(&["--sign", "none", "--nameid", nameid]);
    let path: PathBuf = gw.dir.path().join("short.xml");
    std::fs::write(&path, unsigned).unwrap();
    let a: Vec<String> = [
        "resign-response",
        "--in",
        &path_arg(&path),
        "--key",
        &path_arg(&gw.idp[0].key),
        "--cert",
        &path_arg(&gw.idp[0].cert),
        "--session-not-on-or-after",
        secs,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tool_ok(&a)
}

#[test]
fn saml_sessions_end_through_sessions_end() {
    let gw = gateway("");
    // Replaced: a second login in the same browser (the record went in the login's commit).
    let first = saml_login(&gw, "GM0012345", None);
    let second = saml_login(&gw, "GM0012345", Some(&first));
    assert!(!alive(&gw, &first) && alive(&gw, &second));
    assert_ended(&gw, "replaced", &[("committed", 1)]);

    // Logout.
    let r = gw.get("/logout", Some(&second));
    assert!(r.status < 400, "logout: {}", r.summary());
    assert!(!alive(&gw, &second));
    assert_ended(&gw, "logout", &[("session", 1)]);

    // Single logout: both sessions of the NameID, not another account's.
    let (a, b) = (
        saml_login(&gw, "GM0012345", None),
        saml_login(&gw, "GM0012345", None),
    );
    let other = saml_login(&gw, "GM0077777", None);
    let q = logout_request(&gw, "GM0012345");
    let r = gw.get(&format!("/saml/slo?{q}"), None);
    assert!(r.status < 400, "LogoutRequest: {}", r.summary());
    assert!(!alive(&gw, &a) && !alive(&gw, &b) && alive(&gw, &other));
    assert_ended(&gw, "single_logout", &[("idp_session", 2)]);

    // Block (the secretariat's CLI through the admin API), then reopen: one session ended by
    // the block, none left for the reopen.
    let c = saml_login(&gw, "GM0012345", None);
    let v = one(
        &gw,
        "consent",
        &["block", "GM0012345", "--by", "suzuki", "--note", "test"],
    );
    assert!(!alive(&gw, &c));
    assert_admin_ended(&gw, &v, "blocked", "gmis_account", 1);
    let v = one(
        &gw,
        "consent",
        &["reopen", "GM0012345", "--by", "suzuki", "--note", "ok"],
    );
    assert_admin_ended(&gw, &v, "reopened", "gmis_account", 0);

    // Expired: SessionNotOnOrAfter in 2 s; the next use after it ends the record.
    let r = gw.post_acs(&short_response(&gw, "GM0055555", "2"), None);
    assert_eq!(r.status, 303, "short login: {}", r.summary());
    let short = r.session_cookie().unwrap();
    // Used often, so the use that finds it expired comes well before the minutely sweep could.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while alive(&gw, &short) && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!alive(&gw, &short));
    assert_ended(&gw, "session_expired", &[("session", 1)]);
    // Gone from the store too: a second use finds no record to end.
    assert!(!alive(&gw, &short));
    assert_ended(&gw, "session_expired", &[("session", 1)]);
}

#[test]
fn password_sessions_end_through_sessions_end() {
    let gw = gateway("");
    let pw = add(&gw, "hanako");
    let mut b = Browser::new(&gw);
    let (s, _, _) = b.login("hanako", &pw);
    assert_eq!(s, 303);
    let (s, _, page) = change_password(&mut b, NEW_PASSWORD);
    assert_eq!(s, 303, "{page}");
    assert_eq!(b.verify().0, 200);
    let before = b.cookie_header();

    // Replaced: a second password login in the same browser, in the login's commit.
    let (s, _, _) = b.login("hanako", NEW_PASSWORD);
    assert_eq!(s, 303);
    assert_eq!(b.verify().0, 200);
    assert_eq!(gw.verify(Some(&before)).status, 401, "the earlier session");
    assert_ended(&gw, "replaced", &[("committed", 1)]);

    // Disabled by the secretariat.
    let v = one(
        &gw,
        "accounts",
        &["disable", "hanako", "--by", "suzuki", "--note", "left"],
    );
    assert_eq!(b.verify().0, 401);
    assert_admin_ended(&gw, &v, "disabled", "local_account", 1);
    one(&gw, "accounts", &["enable", "hanako", "--by", "suzuki"]);

    // Password reset by the secretariat.
    let (s, _, _) = b.login("hanako", NEW_PASSWORD);
    assert_eq!(s, 303);
    assert_eq!(b.verify().0, 200);
    let v = one(
        &gw,
        "accounts",
        &["reset", "hanako", "--by", "suzuki", "--note", "phone"],
    );
    assert_eq!(b.verify().0, 401);
    assert_admin_ended(&gw, &v, "password_reset", "local_account", 1);

    // A login that finishes after a step (here the forced change) replaces the browser's
    // earlier session too, whoever it was: hanako's session ends when taro's login finishes.
    let temp = v["temporary_password"].as_str().unwrap().to_string();
    assert_eq!(b.login("hanako", &temp).0, 303);
    let (s, _, page) = change_password(&mut b, "another long phrase for hanako 2026");
    assert_eq!(s, 303, "{page}");
    assert_eq!(b.verify().0, 200);
    let hanako = b.cookie_header();
    let taro = one(
        &gw,
        "accounts",
        &[
            "add",
            "taro",
            "--email",
            "taro@example.jp",
            "--name",
            "田中 太郎",
            "--by",
            "suzuki",
        ],
    );
    let taro_pw = taro["initial_password"].as_str().unwrap().to_string();
    assert_eq!(b.login("taro", &taro_pw).0, 303);
    let (s, _, page) = change_password(&mut b, NEW_PASSWORD);
    assert_eq!(s, 303, "{page}");
    let (s, h, _) = b.verify();
    assert_eq!(
        (s, header(&h, "x-samlgate-local-user")),
        (200, Some("taro"))
    );
    assert_eq!(
        gw.verify(Some(&hanako)).status,
        401,
        "hanako's session in the same browser"
    );
    let replaced = ended(&gw, "replaced");
    assert_eq!(
        replaced.last(),
        Some(&("committed".to_string(), 1)),
        "{replaced:?}"
    );
}
