//! Shared by tests/console.rs, tests/console_mail.rs and tests/browser_console.rs, on
//! tests/local_common (gateway with `[admin]`, CLI, browser): a gateway with consent required,
//! a secretariat operator set up as a new one is (first login, TOTP enrolment with python
//! pyotp), and the refused 保健所 user's application.
#![allow(dead_code)]

use super::common::*;
#[allow(unused_imports)] // tests/console.rs names it; the other users do not
pub use super::local_common::Page;
pub use super::local_common::{between, cli_json, hidden, pyotp, Client as Browser, NEW_PASSWORD};
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "console-test-admin-token-0123456789abcdef0123";
pub const HC: &str = "GM7000001";

/// The harness gateway with consent required, `[support]`, the admin API (for the CLI) and
/// `extra` appended.
pub fn gateway(extra: &str) -> Gateway {
    let consent_and_support = |cfg: String| {
        let cfg = cfg.replace("[consent]\nrequired = false", "[consent]\nrequired = true");
        format!("{cfg}\n[support]\nname = \"テスト事務局\"\nphone = \"03-1234-5678\"\nemail = \"help@example.jp\"\n")
    };
    super::local_common::admin_gateway(ADMIN_TOKEN, consent_and_support, extra)
}

pub fn application_status(gw: &Gateway, gmis: &str) -> Option<String> {
    cli_json(gw, "applications", &["list"])
        .into_iter()
        .find(|a| a["gmis_id"] == gmis)
        .and_then(|a| a["status"].as_str().map(str::to_string))
}

pub fn audit(gw: &Gateway) -> Vec<Value> {
    cli_json(gw, "audit", &["tail", "-n", "500"])
}

/// `accounts add ID --role ROLE` through the running gateway: the one-time password.
pub fn add_account(gw: &Gateway, id: &str, role: &str) -> String {
    let v = cli_json(
        gw,
        "accounts",
        &[
            "add",
            id,
            "--email",
            "ops@example.jp",
            "--name",
            "鈴木 一郎",
            "--by",
            "setup",
            "--role",
            role,
        ],
    );
    v[0]["initial_password"].as_str().unwrap().to_string()
}

/// A secretariat operator, set up as a new one is: the first login on the normal login pages
/// (forced change, TOTP enrolment with pyotp). Returns the TOTP secret; the enrolment used the
/// current time step, so the next code to use is `pyotp(secret, 30)`.
pub fn operator(gw: &Gateway, id: &str) -> String {
    let pw = add_account(gw, id, "secretariat");
    let mut b = Browser::new(&gw.public_url());
    let p = b.get("/login");
    let csrf = p.hidden("csrf");
    let p = b.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("return_to", "/"),
            ("user_id", id),
            ("password", &pw),
        ],
    );
    assert_eq!(p.location(), Some("/login/change"), "{}", p.body);
    let csrf = b.get("/login/change").hidden("csrf");
    let p = b.post(
        "/login/change",
        &[
            ("csrf", &csrf),
            ("new_password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ],
    );
    assert_eq!(
        p.location(),
        Some("/login/enrol"),
        "secretariat must enrol TOTP: {}",
        p.body
    );
    let page = b.get("/login/enrol");
    let secret = between(&page.body, "<code id=\"secret\">", "</code>").to_string();
    let code = pyotp(&secret, 0);
    let p = b.post(
        "/login/enrol",
        &[("csrf", &page.hidden("csrf")), ("code", &code)],
    );
    assert_eq!(p.status, 200, "enrolment: {}", p.body);
    secret
}

/// Password, then TOTP, at `base`/console/. Returns the browser, logged in.
pub fn console_login(base: &str, id: &str, secret: &str, offset: i64) -> Browser {
    let mut b = Browser::new(base);
    let p = b.get("/console/");
    assert_eq!((p.status, p.location()), (303, Some("/console/login")));
    let p = b.get("/console/login");
    assert_eq!(p.status, 200, "{}", p.body);
    let p = b.post(
        "/console/login",
        &[
            ("csrf", &p.hidden("csrf")),
            ("user_id", id),
            ("password", NEW_PASSWORD),
        ],
    );
    assert_eq!(
        (p.status, p.location()),
        (303, Some("/console/totp")),
        "{}",
        p.body
    );
    assert!(
        !b.jar.keys().any(|k| k == "samlgate-console"),
        "logged in before TOTP"
    );
    let p = b.get("/console/totp");
    let csrf = p.hidden("csrf");
    let p = b.post(
        "/console/totp",
        &[("csrf", &csrf), ("code", &pyotp(secret, offset))],
    );
    assert_eq!(
        (p.status, p.location()),
        (303, Some("/console/")),
        "{}",
        p.body
    );
    let cookie = p
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("samlgate-console="))
        .map(|(_, v)| v.clone())
        .expect("console cookie");
    for want in ["Path=/console/", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(want), "{want} missing: {cookie}");
    }
    b
}

/// The refused 保健所 user: the ACS refuses with the application form; it is filed.
pub fn apply_from_refusal(gw: &Gateway, b64: &str) {
    let r = gw.post_acs(b64, Some("/menu"));
    assert_eq!(r.reason(), Some("application_needed"), "{}", r.summary());
    let token = hidden(&r.text(), "token");
    let body = format!(
        "token={}&phone={}&reason={}",
        form_encode(&token),
        form_encode("０３－１１１１－２２２２"),
        form_encode("保健所の感染症対策業務で使用します")
    );
    let r = gw.post_raw(
        "/_samlgate/apply",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
    );
    assert_eq!(r.status, 200, "apply: {}", r.summary());
}

pub fn hc_responses(gw: &Gateway, n: usize) -> Vec<String> {
    let case = vec![
        "--nameid",
        HC,
        "--attr",
        "accountCategory=保健所",
        "--attr",
        "displayName=保健 太郎",
        "--attr",
        "mail=taro@hc.example.jp",
        "--attr",
        "facilityName=千代田保健所",
        "--attr",
        "facilityCode=1310000001",
    ];
    gw.make_responses(&vec![case; n])
}
