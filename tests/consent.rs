//! Black-box tests of issue #3: the consent page (同意画面), the category policy, SSO
//! applications, account linking, the secretariat's CLI and the admin API, against
//! `samlgate serve` (tests/common/mod.rs) with responses signed by tests/support/saml_idp.py.
//!
//! The harness writes `[consent] required = false`; [`gateway`] rewrites the config (consent
//! on, a consent version, `[admin] token_file`) and restarts before the test starts. The CLI
//! runs while the gateway is up, so it goes through the admin API (bearer token).
//!
//! Each test function has its own gateway and its own G-MIS account ids.
//! Run: scripts/install-deps.sh && cargo test --test consent
//! Keep a test's tempdir (config, server.log): SAMLGATE_TEST_KEEP=1 (kept anyway on failure).

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{form_encode, percent_decode, Gateway, Json, Resp, BIN};

const V1: &str = "2023-04";
/// 64 hex characters, as `openssl rand -hex 32` makes.
const ADMIN_TOKEN: &str = "6f1d0c9a4b7e2f58a3c60d1e9b8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a";

// ------------------------------------------------------------------------------------------
// set-up

/// A gateway with `[consent] required/version` set and, with `admin`, the admin API on.
fn gateway(consent_required: bool, version: &str, admin: bool) -> Gateway {
    let mut gw = Gateway::start();
    configure(&gw, consent_required, version, admin);
    gw.restart();
    gw
}

/// Rewrites the gateway's config file (takes effect at the next restart).
fn configure(gw: &Gateway, consent_required: bool, version: &str, admin: bool) {
    let cfg = fs::read_to_string(&gw.config).expect("read config");
    // A document file per version (`{version}` in the path), with markup that must be escaped
    // and a "what changed" section.
    fs::write(
        gw.dir.path().join(format!("consent-{version}.md")),
        format!("# 同意文書 {version}\n\n本文<script>x</script>を確認してください。\n\n## 変更点\n\n- 版{version}で追加した項目\n"),
    )
    .expect("write consent document");
    let mut cfg = set_section(
        &cfg,
        "consent",
        Some(&format!(
            "required = {consent_required}\nversion = \"{version}\"\ndocument = \"consent-{{version}}.md\"\nprivacy_url = \"https://privacy.example.jp/policy\"\n"
        )),
    );
    cfg = set_section(
        &cfg,
        "support",
        Some("name = \"テスト事務局\"\nphone = \"03-1234-5678\"\nemail = \"help@example.jp\"\nurl = \"https://help.example.jp/\"\nhours = \"平日 9:00-17:00\"\n"),
    );
    if admin {
        let tok = gw.dir.path().join("admin.token");
        fs::write(&tok, format!("{ADMIN_TOKEN}\n")).expect("write admin.token");
        // The gateway refuses a token file others can read.
        fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        cfg = set_section(&cfg, "admin", Some("token_file = \"admin.token\"\n"));
    } else {
        cfg = set_section(&cfg, "admin", None);
    }
    fs::write(&gw.config, cfg).expect("write config");
}

/// Replaces the body of TOML section `[name]` (appends the section when missing); `None`
/// removes the section.
fn set_section(cfg: &str, name: &str, body: Option<&str>) -> String {
    let header = format!("[{name}]");
    let is_header = |l: &str| {
        let t = l.trim();
        t.starts_with('[') && t.ends_with(']') && !t.contains('=')
    };
    let mut out = String::new();
    let mut skipping = false;
    let mut found = false;
    for line in cfg.lines() {
        if is_header(line) {
            skipping = false;
            if line.trim() == header {
                found = true;
                skipping = true;
                if let Some(b) = body {
                    out.push_str(&header);
                    out.push('\n');
                    out.push_str(b);
                    out.push('\n');
                }
                continue;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        if let Some(b) = body {
            out.push_str(&format!("\n{header}\n{b}"));
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// HTTP with cookies and arbitrary headers

fn request(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(30))
        .build();
    let mut req = agent.request(method, &gw.url(path));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let r = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!(
            "{method} {path}: transport error {e}\nserver log:\n{}",
            gw.log_tail(3000)
        ),
    };
    let status = r.status();
    let mut hs = Vec::new();
    let mut names = r.headers_names();
    // ureq lists a repeated header's name once per occurrence; `all` already returns each value.
    names.dedup();
    for name in names {
        for v in r.all(&name) {
            hs.push((name.to_ascii_lowercase(), v.to_string()));
        }
    }
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut body).expect("read body");
    Resp {
        status,
        headers: hs,
        body,
    }
}

fn fail(gw: &Gateway, msg: String) -> ! {
    panic!("{msg}\n--- server log tail ---\n{}", gw.log_tail(3000))
}

macro_rules! check {
    ($gw:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            fail(&$gw, format!($($fmt)+));
        }
    };
}

/// `samlgate-consent=<value>` from the response's Set-Cookie, if set non-empty.
fn pending_cookie(r: &Resp) -> Option<String> {
    r.headers_all("set-cookie").into_iter().find_map(|c| {
        let pair = c.trim().split(';').next()?.trim();
        let v = pair.strip_prefix("samlgate-consent=")?;
        (!v.is_empty()).then(|| pair.to_string())
    })
}

fn get_consent(gw: &Gateway, cookie: Option<&str>) -> Resp {
    let mut h = vec![("Accept-Language", "ja")];
    if let Some(c) = cookie {
        h.push(("Cookie", c));
    }
    request(gw, "GET", "/consent", &h, None)
}

fn post_consent(gw: &Gateway, cookie: Option<&str>, form: &str) -> Resp {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(c) = cookie {
        h.push(("Cookie", c));
    }
    request(gw, "POST", "/consent", &h, Some(form.as_bytes()))
}

fn form(csrf: &str, decision: &str) -> String {
    format!("csrf={}&decision={decision}", form_encode(csrf))
}

/// The value of the consent form's hidden `csrf` input.
fn csrf_of(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf\"")?;
    let start = html[..i].rfind('<')?;
    let end = i + html[i..].find('>')?;
    let tag = &html[start..end];
    if !tag.starts_with("<input") || !tag.contains("type=\"hidden\"") {
        return None;
    }
    let v = tag.find("value=\"")? + 7;
    let e = tag[v..].find('"')?;
    Some(tag[v..v + e].to_string()).filter(|s| !s.is_empty())
}

/// Asserts `r` is the ACS's 303 to /consent with a pending cookie and no session cookie;
/// returns the pending cookie pair.
fn expect_consent_redirect(gw: &Gateway, case: &str, r: &Resp) -> String {
    check!(
        gw,
        r.status == 303 && r.location() == Some("/consent"),
        "{case}: expected 303 to /consent: {}",
        r.summary()
    );
    check!(
        gw,
        r.session_set_cookie().is_none(),
        "{case}: a session cookie was set before consent: {}",
        r.summary()
    );
    let Some(c) = pending_cookie(r) else {
        fail(
            gw,
            format!("{case}: no samlgate-consent cookie: {}", r.summary()),
        )
    };
    let line = r
        .headers_all("set-cookie")
        .into_iter()
        .find(|l| l.trim_start().starts_with("samlgate-consent="))
        .unwrap()
        .to_ascii_lowercase();
    check!(
        gw,
        line.contains("httponly") && line.contains("samesite=lax") && line.contains("path=/"),
        "{case}: pending cookie without HttpOnly/SameSite=Lax/Path=/: {line}"
    );
    c
}

/// GET /consent with the pending cookie: 200 HTML with a csrf token; returns (html, csrf).
fn consent_page(gw: &Gateway, case: &str, pending: &str) -> (String, String) {
    let r = get_consent(gw, Some(pending));
    check!(gw, r.status == 200, "{case}: GET /consent: {}", r.summary());
    let html = r.text();
    let Some(csrf) = csrf_of(&html) else {
        fail(gw, format!("{case}: no hidden csrf input in:\n{html}"))
    };
    (html, csrf)
}

/// The whole first login: ACS -> /consent -> accept -> 303 to `relay` with a session.
/// Returns the `samlgate=<token>` pair.
fn login_with_consent(gw: &Gateway, case: &str, b64: &str, relay: &str) -> String {
    let r = gw.post_acs(b64, Some(relay));
    let pending = expect_consent_redirect(gw, case, &r);
    let (_, csrf) = consent_page(gw, case, &pending);
    let r = post_consent(gw, Some(&pending), &form(&csrf, "accept"));
    expect_session(gw, &format!("{case} (accept)"), &r, relay)
}

/// Asserts a 303 to `to` with a session cookie and no pending login; returns the cookie pair.
fn expect_session(gw: &Gateway, case: &str, r: &Resp, to: &str) -> String {
    check!(
        gw,
        r.status == 303 && r.location() == Some(to),
        "{case}: expected 303 to {to}: {}",
        r.summary()
    );
    check!(
        gw,
        pending_cookie(r).is_none(),
        "{case}: a new pending consent cookie: {}",
        r.summary()
    );
    let Some(c) = r.session_cookie() else {
        fail(gw, format!("{case}: no session cookie: {}", r.summary()))
    };
    let v = gw.verify(Some(&c));
    check!(
        gw,
        v.status == 200,
        "{case}: /auth/verify with the new session: {}",
        v.summary()
    );
    c
}

/// A refused login or consent: 4xx `status`, the reason, no session, never a redirect.
fn expect_terminal(gw: &Gateway, case: &str, r: &Resp, status: u16, reasons: &[&str]) {
    check!(
        gw,
        r.status == status && r.reason().is_some_and(|x| reasons.contains(&x)),
        "{case}: expected {status} with X-Samlgate-Reason in {reasons:?}: {}",
        r.summary()
    );
    check!(
        gw,
        r.session_cookie().is_none() && r.location().is_none(),
        "{case}: a terminal answer set a session or redirected: {}",
        r.summary()
    );
    check!(
        gw,
        pending_cookie(r).is_none(),
        "{case}: a terminal answer parked a consent: {}",
        r.summary()
    );
    let ct = r.header("content-type").unwrap_or("");
    check!(
        gw,
        ct.starts_with("text/html") && r.text().contains("<h1>"),
        "{case}: a terminal state must render a page: {}",
        r.summary()
    );
}

// ------------------------------------------------------------------------------------------
// the secretariat's CLI

/// `samlgate GROUP --config CFG ARGS...` -> (success, stdout, stderr).
fn cli(gw: &Gateway, group: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg(group)
        .arg("--config")
        .arg(&gw.config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("spawn samlgate CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(gw: &Gateway, group: &str, args: &[&str]) -> String {
    let (ok, out, err) = cli(gw, group, args);
    check!(
        gw,
        ok,
        "`samlgate {group} {}` failed:\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    out
}

/// The JSON lines of `samlgate GROUP --config CFG ARGS... --json`.
fn cli_json(gw: &Gateway, group: &str, args: &[&str]) -> Vec<Json> {
    let mut a = args.to_vec();
    a.push("--json");
    let out = cli_ok(gw, group, &a);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            Json::parse(l).unwrap_or_else(|e| {
                fail(
                    gw,
                    format!("`{group} {}`: not JSON ({e}): {l}", a.join(" ")),
                )
            })
        })
        .collect()
}

fn users(gw: &Gateway) -> Vec<Json> {
    cli_json(gw, "users", &["list"])
}

fn audit(gw: &Gateway) -> Vec<Json> {
    cli_json(gw, "audit", &["tail", "-n", "1000"])
}

fn consents(gw: &Gateway) -> Vec<Json> {
    cli_json(gw, "consent", &["list"])
}

/// Audit entries with this action and subject.
fn audit_of<'a>(entries: &'a [Json], action: &str, subject: &str) -> Vec<&'a Json> {
    entries
        .iter()
        .filter(|e| e.str("action") == Some(action) && e.str("subject") == Some(subject))
        .collect()
}

fn consent_of<'a>(list: &'a [Json], gmis: &str) -> Option<&'a Json> {
    list.iter().find(|c| c.str("gmis_id") == Some(gmis))
}

fn response_for(nameid: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--nameid".to_string(), nameid.to_string()];
    for e in extra {
        v.push("--attr".into());
        v.push(e.to_string());
    }
    v
}

/// Signed responses, made in parallel; each case is (nameid, ["attr=value", ...]).
fn responses(gw: &Gateway, cases: &[(&str, &[&str])]) -> Vec<String> {
    let owned: Vec<Vec<String>> = cases.iter().map(|(n, e)| response_for(n, e)).collect();
    let borrowed: Vec<Vec<&str>> = owned
        .iter()
        .map(|v| v.iter().map(String::as_str).collect())
        .collect();
    gw.make_responses(&borrowed)
}

// ------------------------------------------------------------------------------------------
// 1. consent required: accept

#[test]
fn accept_registers_the_user_and_the_next_login_skips_consent() {
    let gw = gateway(true, V1, true);
    let id = "GM1000001";
    let rs = responses(&gw, &[(id, &[]), (id, &[])]);
    let relay = "/menu/list?page=2";

    let before = gw.sessions_live();
    let r = gw.post_acs(&rs[0], Some(relay));
    let pending = expect_consent_redirect(&gw, "first login", &r);
    check!(
        gw,
        gw.sessions_live() == before,
        "a session was created before consent"
    );
    // Nothing is registered before the user decides.
    check!(
        gw,
        users(&gw).is_empty(),
        "a user row before consent: {:?}",
        users(&gw)
    );
    let (ok, out, err) = cli(&gw, "consent", &["show", id]);
    check!(
        gw,
        !ok,
        "`consent show {id}` before any decision succeeded: {out}{err}"
    );

    // The page: the mapped profile, a form with a hidden csrf and the two buttons.
    let (html, csrf) = consent_page(&gw, "consent page", &pending);
    for want in [
        "<html lang=\"ja\"",
        id,
        "区分",
        "病院",
        "1310000001",
        "テスト病院",
        "山田 太郎",
        "yamada@example.jp",
        "同意する",
        "同意しない",
        "method=\"post\"",
        "action=\"/consent\"",
        "name=\"decision\" value=\"accept\"",
        "name=\"decision\" value=\"reject\"",
        V1,
        "data-case=\"first\"",
        "<h2>同意文書 ",
        "本文&lt;script&gt;x&lt;/script&gt;を確認",
        "https://privacy.example.jp/policy",
        "利用目的",
        "tel:0312345678",
    ] {
        check!(
            gw,
            html.contains(want),
            "consent page lacks {want:?}:\n{html}"
        );
    }
    check!(
        gw,
        !html.contains("<script"),
        "the consent page uses a script:\n{html}"
    );
    // English by Accept-Language (same pending login, same token).
    let en = request(
        &gw,
        "GET",
        "/consent",
        &[("Cookie", &pending), ("Accept-Language", "en-US,en;q=0.9")],
        None,
    );
    let en_html = en.text();
    check!(
        gw,
        en.status == 200
            && en_html.contains("<html lang=\"en\"")
            && en_html.contains("Category")
            && en_html.contains("I agree")
            && csrf_of(&en_html).as_deref() == Some(csrf.as_str()),
        "English consent page: {}",
        en.summary()
    );

    // Accept: 303 to the RelayState, the session, the pending cookie cleared.
    let r = post_consent(&gw, Some(&pending), &form(&csrf, "accept"));
    let session = expect_session(&gw, "accept", &r, relay);
    // Back (the consent page again) while logged in: home, not "the consent page has expired".
    let back = get_consent(&gw, Some(&format!("{pending}; {session}")));
    check!(
        gw,
        back.status == 303 && back.location() == Some("/"),
        "Back after accept: {}",
        back.summary()
    );
    check!(
        gw,
        r.headers_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("samlgate-consent=;") && c.contains("Max-Age=0")),
        "accept does not clear the pending cookie: {}",
        r.summary()
    );
    let ui = gw.userinfo(Some(&session));
    check!(gw, ui.status == 200, "userinfo: {}", ui.summary());
    let ui = Json::parse(&ui.text()).expect("userinfo JSON");
    check!(
        gw,
        ui.str("user") == Some(id)
            && ui.str("category") == Some("病院")
            && ui.str("facility_code") == Some("1310000001")
            && ui.str("facility_name") == Some("テスト病院")
            && ui.str("display_name") == Some("山田 太郎")
            && ui.str("email") == Some("yamada@example.jp"),
        "userinfo after accept: {ui:?}"
    );

    // Recorded: the user row, the consent, the audit lines (CLI through the admin API).
    let us = users(&gw);
    check!(
        gw,
        us.len() == 1
            && us[0].str("id") == Some(id)
            && us[0].str("gmis_id") == Some(id)
            && us[0].str("origin") == Some("gmis"),
        "users list after accept: {us:?}"
    );
    let cs = consents(&gw);
    let c = consent_of(&cs, id);
    check!(
        gw,
        c.is_some_and(|c| c.str("decision") == Some("accepted") && c.str("version") == Some(V1)),
        "consent list after accept: {cs:?}"
    );
    let a = audit(&gw);
    let acc = audit_of(&a, "consent.accept", id);
    check!(
        gw,
        acc.len() == 1 && acc[0].str("consent_version") == Some(V1),
        "audit consent.accept with consent_version {V1}: {a:?}"
    );
    check!(
        gw,
        audit_of(&a, "user.register", id).len() == 1,
        "audit user.register: {a:?}"
    );

    // Second login: straight through, no consent page, no second registration.
    let r = gw.post_acs(&rs[1], None);
    expect_session(&gw, "second login", &r, "/");
    let a = audit(&gw);
    check!(
        gw,
        audit_of(&a, "consent.accept", id).len() == 1
            && audit_of(&a, "user.register", id).len() == 1,
        "the second login recorded a consent or a registration again: {a:?}"
    );
    check!(
        gw,
        users(&gw).len() == 1,
        "second login duplicated the user"
    );
}

// ------------------------------------------------------------------------------------------
// 2. reject, blocked, reopen

#[test]
fn reject_blocks_every_login_until_the_secretariat_reopens() {
    let gw = gateway(true, V1, true);
    let id = "GM2000001";
    let rs = responses(&gw, &[(id, &[]), (id, &[]), (id, &[]), (id, &[])]);

    let r = gw.post_acs(&rs[0], Some("/menu"));
    let pending = expect_consent_redirect(&gw, "first login", &r);
    let (_, csrf) = consent_page(&gw, "consent page", &pending);
    let before = gw.sessions_live();
    // 同意しない asks first and records nothing.
    let r = post_consent(&gw, Some(&pending), &form(&csrf, "reject"));
    check!(
        gw,
        r.status == 200
            && r.text().contains("value=\"reject_confirmed\"")
            && r.text().contains("元に戻すには")
            && r.text().contains("help@example.jp"),
        "reject did not ask to confirm: {}",
        r.summary()
    );
    let cs = consents(&gw);
    check!(gw, cs.is_empty(), "an unconfirmed reject recorded: {cs:?}");
    let r = post_consent(&gw, Some(&pending), &form(&csrf, "reject_confirmed"));
    expect_terminal(&gw, "reject", &r, 403, &["blocked_consent_rejected"]);
    check!(
        gw,
        r.text().contains("事務局"),
        "the blocked page does not mention the secretariat:\n{}",
        r.text()
    );
    // The support reference, not the request id, and the log ties the two.
    let rid = r.header("x-request-id").unwrap_or_default().to_string();
    let html = r.text();
    let reference = html
        .split("class=\"refno nowrap\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or_default()
        .to_string();
    check!(
        gw,
        reference.len() == 9
            && reference.as_bytes()[4] == b'-'
            && reference
                .replace('-', "")
                .chars()
                .all(|c| c.is_ascii_digit())
            && !html.contains(&rid),
        "support reference {reference:?} (request id {rid}) on:\n{html}"
    );
    check!(
        gw,
        gw.log()
            .lines()
            .any(|l| l.contains(&reference) && l.contains(&rid)),
        "no log line names reference {reference} with request id {rid}"
    );
    // Reload (the POST again) or Back after the reject: the blocked state, not "log in again".
    let decided = r
        .headers_all("set-cookie")
        .into_iter()
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|p| p.starts_with("samlgate-decided="))
        })
        .unwrap_or_default()
        .to_string();
    let both = format!("{pending}; {decided}");
    let again = post_consent(&gw, Some(&both), &form(&csrf, "reject_confirmed"));
    expect_terminal(
        &gw,
        "reload after reject",
        &again,
        403,
        &["blocked_consent_rejected"],
    );
    let back = get_consent(&gw, Some(&both));
    expect_terminal(
        &gw,
        "Back after reject",
        &back,
        403,
        &["blocked_consent_rejected"],
    );
    let shown = cli_ok(&gw, "consent", &["show", id]);
    check!(
        gw,
        shown.contains("\"email\"") && shown.contains("display_name"),
        "`consent show` lacks the contact details:\n{shown}"
    );
    check!(gw, gw.sessions_live() == before, "reject made a session");

    let cs = consents(&gw);
    check!(
        gw,
        consent_of(&cs, id)
            .is_some_and(|c| c.str("decision") == Some("rejected") && c.str("version") == Some(V1)),
        "consent list after reject: {cs:?}"
    );
    let a = audit(&gw);
    check!(
        gw,
        audit_of(&a, "consent.reject", id)
            .first()
            .is_some_and(|e| e.str("consent_version") == Some(V1)),
        "audit consent.reject with the version: {a:?}"
    );
    check!(
        gw,
        users(&gw).is_empty(),
        "reject created a user row: {:?}",
        users(&gw)
    );

    // A later, perfectly valid login: the blocked page, no session, no redirect loop.
    for (i, relay) in [Some("/menu"), None].into_iter().enumerate() {
        let r = gw.post_acs(&rs[1 + i], relay);
        expect_terminal(
            &gw,
            &format!("login {} after reject", i + 2),
            &r,
            403,
            &["blocked_consent_rejected"],
        );
    }
    // The old pending cookie is spent: a page, not a redirect.
    let r = get_consent(&gw, Some(&pending));
    expect_terminal(
        &gw,
        "GET /consent with the spent cookie",
        &r,
        400,
        &["consent_expired"],
    );
    check!(gw, gw.sessions_live() == before, "a session appeared");

    // Reopen: the next login asks again.
    cli_ok(
        &gw,
        "consent",
        &["reopen", id, "--by", "tester", "--note", "x"],
    );
    let a = audit(&gw);
    check!(
        gw,
        audit_of(&a, "consent.reopen", id)
            .first()
            .is_some_and(|e| e.str("actor") == Some("secretariat:tester")),
        "audit consent.reopen by secretariat:tester: {a:?}"
    );
    login_with_consent(&gw, "login after reopen", &rs[3], "/menu");
}

// ------------------------------------------------------------------------------------------
// 3. CSRF, double submit, foreign cookies

#[test]
fn consent_form_refuses_forged_replayed_and_foreign_tokens() {
    let gw = gateway(true, V1, true);
    let (a_id, b_id) = ("GM3000001", "GM3000002");
    let rs = responses(
        &gw,
        &[
            (a_id, &[]),
            (
                b_id,
                &[
                    "displayName=<script>alert(1)</script>&\"x\"",
                    "mail=b@example.jp",
                ],
            ),
        ],
    );
    let before = gw.sessions_live();

    // No pending login at all.
    let r = post_consent(&gw, None, "csrf=abc&decision=accept");
    expect_terminal(
        &gw,
        "POST /consent without cookie",
        &r,
        400,
        &["consent_expired"],
    );
    let r = get_consent(&gw, None);
    expect_terminal(
        &gw,
        "GET /consent without cookie",
        &r,
        400,
        &["consent_expired"],
    );

    // Two browsers, two pending logins.
    let pa = expect_consent_redirect(&gw, "login A", &gw.post_acs(&rs[0], Some("/a")));
    let pb = expect_consent_redirect(&gw, "login B", &gw.post_acs(&rs[1], Some("/b")));
    let (_, csrf_a) = consent_page(&gw, "page A", &pa);
    let (html_b, csrf_b) = consent_page(&gw, "page B", &pb);
    check!(
        gw,
        csrf_a != csrf_b,
        "two pending logins share a csrf token"
    );
    check!(
        gw,
        !html_b.contains("<script>alert") && html_b.contains("&lt;script&gt;"),
        "the display name is not escaped on the consent page:\n{html_b}"
    );

    let tampered = {
        let mut c = pa.clone();
        let last = c.pop().unwrap();
        c.push(if last == 'A' { 'B' } else { 'A' });
        c
    };
    let bad: Vec<(&str, Option<&str>, String, &[&str])> = vec![
        (
            "wrong csrf",
            Some(&pa),
            form("x".repeat(22).as_str(), "accept"),
            &["bad_request"],
        ),
        (
            "no csrf",
            Some(&pa),
            "decision=accept".to_string(),
            &["bad_request"],
        ),
        (
            "empty csrf",
            Some(&pa),
            form("", "reject"),
            &["bad_request"],
        ),
        (
            "A's cookie with B's csrf",
            Some(&pa),
            form(&csrf_b, "accept"),
            &["bad_request"],
        ),
        (
            "B's cookie with A's csrf",
            Some(&pb),
            form(&csrf_a, "reject"),
            &["bad_request"],
        ),
        (
            "unknown decision",
            Some(&pa),
            form(&csrf_a, "maybe"),
            &["bad_request"],
        ),
        (
            "tampered cookie",
            Some(&tampered),
            form(&csrf_a, "accept"),
            &["consent_expired"],
        ),
        (
            "no cookie, A's csrf",
            None,
            form(&csrf_a, "accept"),
            &["consent_expired"],
        ),
    ];
    for (case, cookie, body, reasons) in &bad {
        let r = post_consent(&gw, *cookie, body);
        expect_terminal(&gw, case, &r, 400, reasons);
    }
    // Nothing was recorded by any of them.
    check!(
        gw,
        gw.sessions_live() == before,
        "a refused consent POST made a session"
    );
    let cs = consents(&gw);
    check!(gw, cs.is_empty(), "refused consent POSTs recorded: {cs:?}");
    let (ok, out, err) = cli(&gw, "consent", &["show", a_id]);
    check!(
        gw,
        !ok && err.contains("no consent"),
        "`consent show {a_id}` after refused POSTs: ok={ok} {out}{err}"
    );
    check!(
        gw,
        users(&gw).is_empty(),
        "refused consent POSTs made users"
    );

    // The real answer still works (a forged POST cannot spoil the user's pending login) ...
    let r = post_consent(&gw, Some(&pa), &form(&csrf_a, "accept"));
    let session_a = expect_session(&gw, "A accepts", &r, "/a");
    // ... exactly once: the same form again is not a second session, nor a change of mind.
    for (case, decision) in [("double submit", "accept"), ("replay as reject", "reject")] {
        let r = post_consent(&gw, Some(&pa), &form(&csrf_a, decision));
        expect_terminal(&gw, case, &r, 400, &["consent_expired"]);
    }
    check!(
        gw,
        gw.sessions_live() == before + 1.0,
        "sessions after one accept and two replays: {} (before {before})",
        gw.sessions_live()
    );
    let cs = consents(&gw);
    check!(
        gw,
        consent_of(&cs, a_id).is_some_and(|c| c.str("decision") == Some("accepted")),
        "a replayed reject changed A's decision: {cs:?}"
    );
    // A session token is not a pending-login token.
    let as_pending = session_a.replacen("samlgate=", "samlgate-consent=", 1);
    let r = post_consent(&gw, Some(&as_pending), &form(&csrf_a, "accept"));
    expect_terminal(
        &gw,
        "session token as consent cookie",
        &r,
        400,
        &["consent_expired"],
    );

    // Two racing submits of B's form: one session, one refusal, one user row.
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| post_consent(&gw, Some(&pb), &form(&csrf_b, "accept"))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = answers
        .iter()
        .filter(|r| r.status == 303 && r.session_cookie().is_some())
        .count();
    let refused = answers
        .iter()
        .filter(|r| r.status == 400 && r.reason() == Some("consent_expired"))
        .count();
    check!(
        gw,
        wins == 1 && refused == 1,
        "racing submits: {:?}",
        answers.iter().map(Resp::summary).collect::<Vec<_>>()
    );
    let us = users(&gw);
    check!(
        gw,
        us.iter().filter(|u| u.str("gmis_id") == Some(b_id)).count() == 1,
        "racing submits: users {us:?}"
    );
    check!(
        gw,
        audit_of(&audit(&gw), "consent.accept", b_id).len() == 1,
        "racing submits: consent.accept not exactly once"
    );
}

// ------------------------------------------------------------------------------------------
// 4. a new consent version

#[test]
fn a_new_consent_version_asks_again() {
    let mut gw = gateway(true, V1, true);
    let id = "GM4000001";
    let rs = responses(&gw, &[(id, &[]), (id, &[]), (id, &[]), (id, &[])]);
    login_with_consent(&gw, "first login", &rs[0], "/");
    expect_session(&gw, "second login", &gw.post_acs(&rs[1], None), "/");

    configure(&gw, true, "2024-10", true);
    gw.restart();
    let r = gw.post_acs(&rs[2], Some("/after"));
    let pending = expect_consent_redirect(&gw, "login after the version change", &r);
    let (html, csrf) = consent_page(&gw, "consent page v2", &pending);
    check!(
        gw,
        html.contains("2024-10")
            && html.contains("data-case=\"new-version\"")
            && html.contains("版2024-10で追加した項目")
            && html.contains(V1),
        "the page does not show the new version, the old one and what changed:\n{html}"
    );
    let r = post_consent(&gw, Some(&pending), &form(&csrf, "accept"));
    expect_session(&gw, "accept v2", &r, "/after");
    let cs = consents(&gw);
    check!(
        gw,
        consent_of(&cs, id).is_some_and(|c| c.str("version") == Some("2024-10")),
        "consent version after re-consent: {cs:?}"
    );
    let a = audit(&gw);
    let acc = audit_of(&a, "consent.accept", id);
    check!(
        gw,
        acc.len() == 2
            && acc[0].str("consent_version") == Some(V1)
            && acc[1].str("consent_version") == Some("2024-10"),
        "audit consent.accept per version: {a:?}"
    );
    check!(gw, users(&gw).len() == 1, "re-consent duplicated the user");
    expect_session(
        &gw,
        "login after re-consent",
        &gw.post_acs(&rs[3], None),
        "/",
    );
}

// ------------------------------------------------------------------------------------------
// 5. closed categories and SSO applications

#[test]
fn closed_categories_need_an_approved_application() {
    let gw = gateway(true, V1, true);
    let (id, pref) = ("GM5000001", "GM5000002");
    let hc: &[&str] = &["accountCategory=保健所"];
    let rs = responses(
        &gw,
        &[
            (id, hc),
            (pref, &["accountCategory=都道府県"]),
            (id, hc),
            (id, hc),
            (id, &["accountCategory=病院"]),
            (id, hc),
            (id, hc),
        ],
    );
    let before = gw.sessions_live();
    for (case, b64) in [("保健所", &rs[0]), ("都道府県", &rs[1])] {
        let r = gw.post_acs(b64, Some("/menu"));
        expect_terminal(&gw, case, &r, 403, &["application_needed"]);
        check!(
            gw,
            r.text().contains("申請"),
            "{case}: the page does not explain the application:\n{}",
            r.text()
        );
    }
    gw.assert_refused(
        "closed category",
        &gw.post_acs(&rs[2], None),
        &["application_needed"],
        before,
    );

    // Pending application: sticky, even when G-MIS now says 病院.
    cli_ok(&gw, "applications", &["add", id, "--by", "t"]);
    let apps = cli_json(&gw, "applications", &["list"]);
    check!(
        gw,
        apps.iter()
            .any(|a| a.str("gmis_id") == Some(id) && a.str("status") == Some("pending")),
        "applications list: {apps:?}"
    );
    expect_terminal(
        &gw,
        "pending, 保健所",
        &gw.post_acs(&rs[3], None),
        403,
        &["application_pending"],
    );
    expect_terminal(
        &gw,
        "pending, category now 病院",
        &gw.post_acs(&rs[4], None),
        403,
        &["application_pending"],
    );

    // Approved: consent first, then the session.
    cli_ok(&gw, "applications", &["approve", id, "--by", "t"]);
    let session = login_with_consent(&gw, "approved 保健所", &rs[5], "/menu");
    let v = gw.verify(Some(&session));
    check!(
        gw,
        v.header("x-samlgate-category")
            .and_then(percent_decode)
            .as_deref()
            == Some("保健所"),
        "verify category header: {}",
        v.summary()
    );

    // Revoked: the existing session stops at once, a new login is refused.
    cli_ok(
        &gw,
        "applications",
        &["revoke", id, "--by", "t", "--note", "left"],
    );
    let v = gw.verify_after_cli(Some(&session), 401);
    check!(gw, v.status == 401, "verify after revoke: {}", v.summary());
    let u = gw.userinfo(Some(&session));
    check!(
        gw,
        u.status == 401,
        "userinfo after revoke: {}",
        u.summary()
    );
    expect_terminal(
        &gw,
        "login after revoke",
        &gw.post_acs(&rs[6], None),
        403,
        &["application_revoked", "application_needed"],
    );
    let a = audit(&gw);
    for action in [
        "application.add",
        "application.approve",
        "application.revoke",
    ] {
        check!(
            gw,
            !audit_of(&a, action, id).is_empty(),
            "audit lacks {action}: {a:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// 6. secretariat block

#[test]
fn a_secretariat_block_ends_sessions_and_refuses_logins() {
    let gw = gateway(true, V1, true);
    let id = "GM6000001";
    let rs = responses(&gw, &[(id, &[]), (id, &[]), (id, &[])]);
    let session = login_with_consent(&gw, "first login", &rs[0], "/");
    // Used before the block, so the gateway has it in memory (web/session_cache.rs).
    let v = gw.verify(Some(&session));
    check!(gw, v.status == 200, "verify before block: {}", v.summary());

    cli_ok(
        &gw,
        "consent",
        &["block", id, "--by", "t", "--note", "reported misuse"],
    );
    let v = gw.verify_after_cli(Some(&session), 401);
    check!(gw, v.status == 401, "verify after block: {}", v.summary());
    let u = gw.userinfo(Some(&session));
    check!(gw, u.status == 401, "userinfo after block: {}", u.summary());
    let before = gw.sessions_live();
    let r = gw.post_acs(&rs[1], Some("/menu"));
    expect_terminal(
        &gw,
        "login after block",
        &r,
        403,
        &["blocked_by_secretariat"],
    );
    check!(
        gw,
        gw.sessions_live() == before,
        "a blocked login made a session"
    );
    let show = cli_json(&gw, "consent", &["show", id]);
    check!(
        gw,
        show.len() == 1
            && show[0].get("consent").and_then(|c| c.str("decision"))
                == Some("blocked_by_secretariat"),
        "consent show after block: {show:?}"
    );
    let a = audit(&gw);
    check!(
        gw,
        audit_of(&a, "consent.block", id)
            .first()
            .is_some_and(|e| e.str("actor") == Some("secretariat:t")),
        "audit consent.block: {a:?}"
    );

    cli_ok(&gw, "consent", &["reopen", id, "--by", "t", "--note", "ok"]);
    login_with_consent(&gw, "login after reopen", &rs[2], "/");
}

/// A session from before a block must not come back when the secretariat reopens the account:
/// after a reopen the next SSO shows the consent page again (issue #3), so the way in is a new
/// login, not an old cookie.
#[test]
fn a_session_from_before_a_block_stays_ended_after_reopen() {
    let gw = gateway(true, V1, true);
    let id = "GM6000002";
    let rs = responses(&gw, &[(id, &[])]);
    let session = login_with_consent(&gw, "first login", &rs[0], "/");
    cli_ok(&gw, "consent", &["block", id, "--by", "t", "--note", "n"]);
    check!(
        gw,
        gw.verify_after_cli(Some(&session), 401).status == 401,
        "verify after block"
    );
    cli_ok(&gw, "consent", &["reopen", id, "--by", "t", "--note", "n"]);
    let v = gw.verify(Some(&session));
    check!(
        gw,
        v.status == 401,
        "the pre-block session works again after reopen, without SSO or consent: {}",
        v.summary()
    );
}

// ------------------------------------------------------------------------------------------
// 7. linking an existing local account

#[test]
fn an_existing_local_account_is_linked_not_duplicated() {
    let gw = gateway(true, V1, true);
    let (id, other) = ("GM7000001", "GM7000002");
    let file = gw.dir.path().join("local-users.jsonl");
    fs::write(
        &file,
        concat!(
            r#"{"account_id":"L100","category":"病院","facility_code":"1310000001","#,
            r#""facility_name":"テスト病院","display_name":"山田 太郎","email":"yamada@example.jp"}"#,
            "\n"
        ),
    )
    .unwrap();
    cli_ok(
        &gw,
        "users",
        &["import", file.to_str().unwrap(), "--by", "t"],
    );
    let us = users(&gw);
    check!(
        gw,
        us.len() == 1
            && us[0].str("id") == Some("L100")
            && us[0].get("gmis_id") == Some(&Json::Null)
            && us[0].str("origin") == Some("local"),
        "users after import: {us:?}"
    );

    // Same facility code and mail (the IdP's defaults), no application: refused, no guess.
    let rs = responses(
        &gw,
        &[
            (id, &[]),
            (other, &["mail=YAMADA@Example.JP"]),
            (id, &[]),
            (id, &[]),
        ],
    );
    let before = gw.sessions_live();
    expect_terminal(
        &gw,
        "unlinked match",
        &gw.post_acs(&rs[0], None),
        403,
        &["application_needed_existing_account"],
    );
    expect_terminal(
        &gw,
        "unlinked match, mail in other case",
        &gw.post_acs(&rs[1], None),
        403,
        &["application_needed_existing_account"],
    );
    check!(
        gw,
        gw.sessions_live() == before,
        "a session without an application"
    );

    cli_ok(
        &gw,
        "applications",
        &["add", id, "--link-to", "L100", "--approve", "--by", "t"],
    );
    let r = gw.post_acs(&rs[2], Some("/menu"));
    let pending = expect_consent_redirect(&gw, "approved link", &r);
    let (html, csrf) = consent_page(&gw, "consent page (linking)", &pending);
    check!(
        gw,
        html.contains("L100"),
        "the consent page does not say it links to L100:\n{html}"
    );
    expect_session(
        &gw,
        "accept (link)",
        &post_consent(&gw, Some(&pending), &form(&csrf, "accept")),
        "/menu",
    );
    let us = users(&gw);
    check!(
        gw,
        us.len() == 1 && us[0].str("id") == Some("L100") && us[0].str("gmis_id") == Some(id),
        "after linking, one user L100 linked to {id}: {us:?}"
    );
    let a = audit(&gw);
    check!(
        gw,
        !audit_of(&a, "user.link", "L100").is_empty(),
        "audit lacks user.link: {a:?}"
    );
    check!(
        gw,
        audit_of(&a, "user.register", id).is_empty(),
        "a linked login also registered a new user: {a:?}"
    );
    expect_session(
        &gw,
        "second login (linked)",
        &gw.post_acs(&rs[3], None),
        "/",
    );
    check!(
        gw,
        users(&gw).len() == 1,
        "second login duplicated the user"
    );

    // L100 is taken now: another G-MIS account cannot be linked to it.
    let (ok, out, err) = cli(
        &gw,
        "applications",
        &["add", other, "--link-to", "L100", "--approve", "--by", "t"],
    );
    check!(
        gw,
        !ok,
        "a second G-MIS account was allowed to link to L100: {out}{err}"
    );
}

// ------------------------------------------------------------------------------------------
// 8. durability: kill -9 right after the answer

#[test]
fn decisions_survive_kill_9() {
    let mut gw = gateway(true, V1, true);
    let (yes, no, blk) = ("GM8000001", "GM8000002", "GM8000003");
    let rs = responses(
        &gw,
        &[(yes, &[]), (yes, &[]), (no, &[]), (no, &[]), (blk, &[])],
    );

    let session = login_with_consent(&gw, "accept", &rs[0], "/");
    gw.crash_restart(); // SIGKILL right after the answer arrived
    check!(
        gw,
        gw.verify(Some(&session)).status == 200,
        "the session acknowledged before kill -9 is gone"
    );
    expect_session(&gw, "login after crash", &gw.post_acs(&rs[1], None), "/");
    check!(
        gw,
        users(&gw).iter().any(|u| u.str("gmis_id") == Some(yes)),
        "the user registered before kill -9 is gone"
    );

    let r = gw.post_acs(&rs[2], None);
    let pending = expect_consent_redirect(&gw, "login (reject)", &r);
    let (_, csrf) = consent_page(&gw, "page (reject)", &pending);
    let r = post_consent(&gw, Some(&pending), &form(&csrf, "reject_confirmed"));
    expect_terminal(&gw, "reject", &r, 403, &["blocked_consent_rejected"]);
    gw.crash_restart();
    expect_terminal(
        &gw,
        "login after reject + crash",
        &gw.post_acs(&rs[3], None),
        403,
        &["blocked_consent_rejected"],
    );

    // A secretariat change acknowledged by the admin API survives too.
    cli_ok(&gw, "consent", &["block", blk, "--by", "t", "--note", "n"]);
    gw.crash_restart();
    expect_terminal(
        &gw,
        "login after block + crash",
        &gw.post_acs(&rs[4], None),
        403,
        &["blocked_by_secretariat"],
    );
}

// ------------------------------------------------------------------------------------------
// 9. the admin API

fn admin_post(gw: &Gateway, auth: Option<&str>, body: &str) -> Resp {
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    request(gw, "POST", "/admin/v1/op", &h, Some(body.as_bytes()))
}

#[test]
fn the_admin_api_is_off_by_default_and_needs_the_token() {
    // The harness's config has no [admin] (and no consent page).
    let mut gw = Gateway::start();
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for auth in [None, Some(bearer.as_str())] {
        let r = admin_post(&gw, auth, r#"{"op":"consent_list"}"#);
        check!(
            gw,
            r.status == 404,
            "admin API without [admin] (auth {auth:?}): {}",
            r.summary()
        );
    }
    let (ok, _, err) = cli(&gw, "users", &["list"]);
    if std::env::var("SAMLGATE_TEST_STORE").as_deref() == Ok("pg") {
        // PostgreSQL serves many processes: the CLI opens the database itself.
        check!(gw, ok, "CLI beside a running gateway on PostgreSQL: {err}");
    } else {
        check!(
            gw,
            !ok && err.contains("[admin]"),
            "CLI against a running gateway without [admin] should say how to enable it: {err}"
        );
    }

    configure(&gw, false, V1, true);
    gw.restart();
    let wrong = format!("Bearer {}", ADMIN_TOKEN.replace('6', "7"));
    let cases: [(&str, Option<&str>); 5] = [
        ("no Authorization", None),
        ("wrong token", Some(&wrong)),
        ("empty bearer", Some("Bearer ")),
        ("token as Basic", Some(&format!("Basic {ADMIN_TOKEN}"))),
        ("token prefix", Some(&bearer[..bearer.len() - 1])),
    ];
    for (case, auth) in cases {
        let r = admin_post(&gw, auth, r#"{"op":"users_list"}"#);
        check!(gw, r.status == 401, "{case}: {}", r.summary());
        check!(
            gw,
            !r.text().contains("gmis_id"),
            "{case}: data in a 401: {}",
            r.text()
        );
    }
    let r = admin_post(&gw, Some(&bearer), r#"{"op":"consent_list"}"#);
    check!(
        gw,
        r.status == 200,
        "consent_list with the token: {}",
        r.summary()
    );
    check!(
        gw,
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
            && matches!(Json::parse(&r.text()), Ok(Json::Arr(_))),
        "consent_list is not a JSON array: {}",
        r.summary()
    );
    let r = admin_post(&gw, Some(&bearer), r#"{"op":"no_such_op"}"#);
    check!(gw, r.status == 400, "unknown op: {}", r.summary());

    // Consent not required: the first login goes straight through and registers the user.
    let id = "GM9000001";
    let b64 = gw.make_response(&["--nameid", id]);
    expect_session(
        &gw,
        "login, consent off",
        &gw.post_acs(&b64, Some("/x")),
        "/x",
    );
    let r = admin_post(&gw, Some(&bearer), r#"{"op":"users_list"}"#);
    let list = Json::parse(&r.text()).unwrap_or(Json::Null);
    check!(
        gw,
        matches!(&list, Json::Arr(v) if v.iter().any(|u| u.str("gmis_id") == Some(id))),
        "users_list through the API: {}",
        r.summary()
    );
}

/// A secretariat block that lands while the user looks at the consent page wins over the
/// user's 同意する: the block is sticky (DESIGN.md "Account states"), so the answer is the
/// blocked page, no session, and the block is still recorded.
#[test]
fn a_block_while_the_consent_page_is_open_wins() {
    let gw = gateway(true, V1, true);
    let id = "GM6000003";
    let rs = responses(&gw, &[(id, &[])]);
    let r = gw.post_acs(&rs[0], None);
    let pending = expect_consent_redirect(&gw, "login", &r);
    let (_, csrf) = consent_page(&gw, "consent page", &pending);
    cli_ok(&gw, "consent", &["block", id, "--by", "t", "--note", "n"]);
    let before = gw.sessions_live();
    let r = post_consent(&gw, Some(&pending), &form(&csrf, "accept"));
    let show = cli_json(&gw, "consent", &["show", id]);
    let decision = show
        .first()
        .and_then(|s| s.get("consent"))
        .and_then(|c| c.str("decision"))
        .map(str::to_string);
    check!(
        gw,
        decision.as_deref() == Some("blocked_by_secretariat"),
        "同意する on a page opened before the block replaced the secretariat's block: \
         consent is now {decision:?}; answer: {}",
        r.summary()
    );
    expect_terminal(
        &gw,
        "accept after a block",
        &r,
        403,
        &["blocked_by_secretariat"],
    );
    check!(
        gw,
        gw.sessions_live() == before,
        "accept after a block made a session"
    );
}

// ------------------------------------------------------------------------------------------
// issue #12 item 1: a first G-MIS login never takes over a local account with its id

/// The one user row with this id, as the CLI shows it.
fn user_row(gw: &Gateway, id: &str) -> Option<Json> {
    users(gw).into_iter().find(|u| u.str("id") == Some(id))
}

fn local_user_of(gw: &Gateway, cookie: &str) -> Option<String> {
    gw.verify(Some(cookie))
        .header("x-samlgate-local-user")
        .map(str::to_string)
}

#[test]
fn a_first_login_never_takes_over_an_existing_local_account() {
    let gw = gateway(false, V1, true);
    let (taken, b, linked_to_b) = ("GM0022222", "GM0033333", "GM0044444");
    let file = gw.dir.path().join("local-users.jsonl");
    let mut lines = String::new();
    for id in [taken, linked_to_b] {
        lines.push_str(&format!(
            r#"{{"account_id":"{id}","category":"病院","facility_code":"2720000009","facility_name":"別の病院","email":"{id}@other.example.jp"}}"#
        ));
        lines.push('\n');
    }
    fs::write(&file, lines).unwrap();
    cli_ok(
        &gw,
        "users",
        &["import", file.to_str().unwrap(), "--by", "t"],
    );
    let before = user_row(&gw, taken);
    let rs = responses(
        &gw,
        &[
            (taken, &[]),
            (taken, &[]),
            (b, &[]),
            (linked_to_b, &[]),
            (linked_to_b, &[]),
            (b, &[]),
        ],
    );

    // 1. Same id, no application: the existing-account application page; nothing written.
    let n = gw.sessions_live();
    expect_terminal(
        &gw,
        "colliding id",
        &gw.post_acs(&rs[0], None),
        403,
        &["application_needed_existing_account"],
    );
    check!(gw, gw.sessions_live() == n, "a session for a colliding id");
    check!(
        gw,
        user_row(&gw, taken) == before,
        "the local account was rewritten: {:?}",
        user_row(&gw, taken)
    );

    // 2. The secretariat approves without link_to: a fresh local id, the local one untouched.
    cli_ok(
        &gw,
        "applications",
        &["add", taken, "--approve", "--by", "t"],
    );
    let c = expect_session(
        &gw,
        "approved, colliding id",
        &gw.post_acs(&rs[1], None),
        "/",
    );
    let fresh = format!("{taken}-g2");
    let got = local_user_of(&gw, &c);
    check!(
        gw,
        got.as_deref() == Some(fresh.as_str()),
        "X-Samlgate-Local-User {got:?}, expected {fresh}"
    );
    check!(
        gw,
        user_row(&gw, taken) == before,
        "the local account was rewritten: {:?}",
        user_row(&gw, taken)
    );
    let row = user_row(&gw, &fresh);
    check!(
        gw,
        row.as_ref().and_then(|u| u.str("gmis_id")) == Some(taken),
        "no fresh user row: {row:?}"
    );
    let a = audit(&gw);
    let reg = audit_of(&a, "user.register", &fresh);
    check!(
        gw,
        reg.len() == 1
            && reg[0]
                .str("detail")
                .is_some_and(|d| d.contains(taken) && d.contains("left unchanged")),
        "audit does not say the id was taken: {a:?}"
    );
    check!(
        gw,
        audit_of(&a, "user.register", taken).is_empty(),
        "audit claims {taken} was registered: {a:?}"
    );

    // 3. A local account linked to G-MIS user B is never handed to a newcomer with its id.
    cli_ok(
        &gw,
        "applications",
        &["add", b, "--link-to", linked_to_b, "--approve", "--by", "t"],
    );
    let cb = expect_session(&gw, "B links", &gw.post_acs(&rs[2], None), "/");
    check!(
        gw,
        local_user_of(&gw, &cb).as_deref() == Some(linked_to_b),
        "B is not on {linked_to_b}"
    );
    expect_terminal(
        &gw,
        "newcomer with B's local id",
        &gw.post_acs(&rs[3], None),
        403,
        &["application_needed_existing_account"],
    );
    let (ok, out, err) = cli(
        &gw,
        "applications",
        &[
            "add",
            linked_to_b,
            "--link-to",
            linked_to_b,
            "--approve",
            "--by",
            "t",
        ],
    );
    check!(
        gw,
        !ok,
        "an application linking the newcomer to B's account was accepted: {out}{err}"
    );
    cli_ok(
        &gw,
        "applications",
        &["add", linked_to_b, "--approve", "--by", "t"],
    );
    let cn = expect_session(&gw, "newcomer approved", &gw.post_acs(&rs[4], None), "/");
    let want = format!("{linked_to_b}-g2");
    check!(
        gw,
        local_user_of(&gw, &cn).as_deref() == Some(want.as_str()),
        "newcomer got {:?}",
        local_user_of(&gw, &cn)
    );
    // B's next login still works and still gets its account.
    let cb = expect_session(&gw, "B again", &gw.post_acs(&rs[5], None), "/");
    check!(
        gw,
        local_user_of(&gw, &cb).as_deref() == Some(linked_to_b),
        "B lost {linked_to_b}"
    );
    let row = user_row(&gw, linked_to_b);
    check!(
        gw,
        row.as_ref().and_then(|u| u.str("gmis_id")) == Some(b),
        "{linked_to_b} now {row:?}"
    );
}

// ------------------------------------------------------------------------------------------
// issue #12 item 2: revoking a linking application unlinks; `users unlink` (CLI and API)

#[test]
fn revoke_and_unlink_remove_the_link_and_end_its_sessions() {
    let gw = gateway(false, V1, true);
    let id = "GM7100001";
    let file = gw.dir.path().join("local-users.jsonl");
    // Another facility and mail, so an unlinked login simply registers its own account.
    fs::write(
        &file,
        r#"{"account_id":"L710","category":"病院","facility_code":"2720000009","email":"l710@other.example.jp"}"#.to_string() + "\n",
    )
    .unwrap();
    cli_ok(
        &gw,
        "users",
        &["import", file.to_str().unwrap(), "--by", "t"],
    );
    let rs = responses(&gw, &[(id, &[]), (id, &[]), (id, &[])]);

    cli_ok(
        &gw,
        "applications",
        &["add", id, "--link-to", "L710", "--approve", "--by", "t"],
    );
    let c = expect_session(&gw, "linked", &gw.post_acs(&rs[0], None), "/");
    check!(
        gw,
        local_user_of(&gw, &c).as_deref() == Some("L710"),
        "not linked to L710"
    );

    // Revoke: the link goes (audited), the session ends, the next login is not L710.
    let out = cli_json(
        &gw,
        "applications",
        &["revoke", id, "--by", "t", "--note", "wrong person"],
    );
    check!(
        gw,
        out.first().and_then(|o| o.str("unlinked")) == Some("L710"),
        "revoke answer: {out:?}"
    );
    check!(
        gw,
        gw.verify_after_cli(Some(&c), 401).status == 401,
        "the linked session outlived the revoke"
    );
    let row = user_row(&gw, "L710");
    check!(
        gw,
        row.as_ref()
            .is_some_and(|u| u.get("gmis_id") == Some(&Json::Null)),
        "L710 still linked: {row:?}"
    );
    let a = audit(&gw);
    let un = audit_of(&a, "user.unlink", "L710");
    check!(
        gw,
        un.len() == 1
            && un[0]
                .str("detail")
                .is_some_and(|d| d.contains(id) && d.contains("wrong person")),
        "audit lacks user.unlink: {a:?}"
    );
    let c = expect_session(&gw, "after revoke", &gw.post_acs(&rs[1], None), "/");
    let got = local_user_of(&gw, &c);
    check!(
        gw,
        got.as_deref() == Some(id),
        "after the revoke the login got {got:?}, expected its own account {id}"
    );

    // `users unlink` (through the admin API: the gateway holds the store): undo a link.
    cli_ok(&gw, "users", &["unlink", id, "--by", "t", "--note", "test"]);
    check!(
        gw,
        gw.verify_after_cli(Some(&c), 401).status == 401,
        "the session outlived users unlink"
    );
    let row = user_row(&gw, id);
    check!(
        gw,
        row.as_ref()
            .is_some_and(|u| u.get("gmis_id") == Some(&Json::Null)),
        "{id} still linked: {row:?}"
    );
    check!(
        gw,
        audit_of(&audit(&gw), "user.unlink", id).len() == 1,
        "no user.unlink for {id}"
    );
    // The unlinked account keeps its id: the next login is sent to the secretariat.
    expect_terminal(
        &gw,
        "after unlink",
        &gw.post_acs(&rs[2], None),
        403,
        &["application_needed_existing_account"],
    );
    let (ok, _, err) = cli(&gw, "users", &["unlink", id, "--by", "t"]);
    check!(
        gw,
        !ok && err.contains("no linked account"),
        "unlinking twice: {err}"
    );
}

// ------------------------------------------------------------------------------------------
// review of the issue-12 fixes, finding 3: a consent page opened under one application must not
// link through it once the application was revoked or corrected

#[test]
fn accept_after_a_revoke_or_a_corrected_application_never_links_the_old_target() {
    let gw = gateway(true, V1, true);
    let file = gw.dir.path().join("local-users.jsonl");
    let mut lines = String::new();
    for id in ["L7201", "L7202", "L7203"] {
        lines.push_str(&format!(
            r#"{{"account_id":"{id}","category":"病院","facility_code":"2720000009","email":"{id}@other.example.jp"}}"#
        ));
        lines.push('\n');
    }
    fs::write(&file, lines).unwrap();
    cli_ok(
        &gw,
        "users",
        &["import", file.to_str().unwrap(), "--by", "t"],
    );
    // (G-MIS id, wrong target, what the secretariat does while the page is open)
    let revoke: &[&[&str]] = &[&["revoke", "GM7200001", "--by", "t", "--note", "wrong"]];
    let correct: &[&[&str]] = &[
        &["revoke", "GM7200002", "--by", "t", "--note", "wrong"],
        &[
            "add",
            "GM7200002",
            "--link-to",
            "L7203",
            "--approve",
            "--by",
            "t",
        ],
    ];
    for (id, wrong, meanwhile) in [
        ("GM7200001", "L7201", revoke),
        ("GM7200002", "L7202", correct),
    ] {
        cli_ok(
            &gw,
            "applications",
            &["add", id, "--link-to", wrong, "--approve", "--by", "t"],
        );
        let rs = responses(&gw, &[(id, &[])]);
        let pending = expect_consent_redirect(&gw, id, &gw.post_acs(&rs[0], None));
        let (html, csrf) = consent_page(&gw, id, &pending);
        check!(
            gw,
            html.contains(wrong),
            "{id}: the page does not name {wrong}"
        );
        for args in meanwhile {
            cli_ok(&gw, "applications", args);
        }
        let before = gw.sessions_live();
        let r = post_consent(&gw, Some(&pending), &form(&csrf, "accept"));
        check!(
            gw,
            r.session_cookie().is_none() && r.reason() == Some("account_changed"),
            "{id}: accept after the application changed: want account_changed and no session: {}",
            r.summary()
        );
        check!(
            gw,
            gw.sessions_live() == before,
            "{id}: accept after the application changed left a session"
        );
        let row = user_row(&gw, wrong);
        check!(
            gw,
            row.as_ref()
                .is_some_and(|u| u.get("gmis_id") == Some(&Json::Null)),
            "{id}: {wrong} was linked through a revoked or corrected application: {row:?}"
        );
        check!(
            gw,
            audit_of(&audit(&gw), "user.link", wrong).is_empty(),
            "{id}: audit has user.link for {wrong}"
        );
    }
}

/// A refused login (application needed) writes nothing but its replay entry, and no commit
/// follows to make that durable: `login::Fresh::admit` flushes it before the page is answered.
/// After `kill -9` the same response is still a replay, not a second look.
#[test]
fn a_refused_logins_replay_entry_survives_kill_9() {
    let mut gw = gateway(true, V1, true);
    let rs = responses(&gw, &[("GM5000009", &["accountCategory=保健所"])]);
    let r = gw.post_acs(&rs[0], Some("/menu"));
    expect_terminal(&gw, "保健所", &r, 403, &["application_needed"]);
    gw.crash_restart();
    let r = gw.post_acs(&rs[0], Some("/menu"));
    check!(
        gw,
        r.status == 403 && r.reason() == Some("replay"),
        "the same response after kill -9: {}",
        r.summary()
    );
}
