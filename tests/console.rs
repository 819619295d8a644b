//! The 事務局's console at /console/ (issue 14, item 6), end to end against `samlgate serve`:
//! a refused 保健所 user applies from the refusal page; an operator (a local account of role
//! secretariat, TOTP codes from python pyotp) logs into the console, finds the application
//! with full-width input, approves it, and the user's next login reaches the consent page;
//! 同意しない (confirmed) puts the person in the console's queue with contact details, and the
//! console reopens. Also: CSV exports read by python's csv module, CSRF, the idle timeout, a
//! non-secretariat account refused, the console on the admin listener only.

mod common;
mod console_kit;
mod local_common;

use std::fs;
use std::process::Command;

use common::*;
use console_kit::*;

/// python's csv module on `bytes` (utf-8-sig: the BOM is required and removed): the rows.
fn python_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::write(f.path(), bytes).unwrap();
    let out = Command::new(python())
        .args([
            "-c",
            "import csv, json, sys\nraw = open(sys.argv[1], 'rb').read()\nassert raw.startswith(b'\\xef\\xbb\\xbf'), 'no BOM'\nwith open(sys.argv[1], newline='', encoding='utf-8-sig') as f:\n    print(json.dumps(list(csv.reader(f)), ensure_ascii=False))",
        ])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python csv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The account page's action form for `action`: (csrf).
fn action(b: &mut Browser, id: &str, action: &str, note: &str) -> Page {
    let page = b.get(&format!("/console/account?id={id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("value=\"{action}\"")),
        "no {action} form on:\n{}",
        page.body
    );
    let csrf = page.hidden("csrf");
    b.post(
        "/console/action",
        &[
            ("csrf", &csrf),
            ("id", id),
            ("action", action),
            ("note", note),
        ],
    )
}

#[test]
fn a_refused_health_centre_user_applies_and_the_console_approves_rejects_and_reopens() {
    let gw = gateway("");
    let rs = hc_responses(&gw, 4);
    apply_from_refusal(&gw, &rs[0]);
    assert_eq!(application_status(&gw, HC).as_deref(), Some("pending"));

    let secret = operator(&gw, "suzuki");
    let mut b = console_login(&gw.public_url(), "suzuki", &secret, 30);

    // The queue: newest first, with the verified profile, contact and reason.
    let home = b.get("/console/");
    assert_eq!(home.status, 200);
    let pending = between(&home.body, "id=\"h-pending\"", "</section>");
    for want in [
        HC,
        "保健 太郎",
        "千代田保健所",
        "taro@hc.example.jp",
        "03-1111-2222",
        "感染症対策業務",
    ] {
        assert!(
            pending.contains(want),
            "{want} not in the pending queue:\n{pending}"
        );
    }
    assert!(home.body.contains("lang=\"ja\""), "Japanese first");

    // Search with full-width input; by facility and by mail in upper case; a miss.
    for q in [
        "ｇｍ７０００００１",
        "ｇｍ７００",
        "千代田",
        "TARO@HC",
        "１３１００００００１",
    ] {
        let p = b.get(&format!("/console/search?q={}", form_encode(q)));
        assert!(
            p.body.contains(&format!("/console/account?id={HC}")),
            "search {q} did not find {HC}:\n{}",
            p.body
        );
    }
    let miss = b.get(&format!("/console/search?q={}", form_encode("ＧＭ７９")));
    assert!(!miss.body.contains(&format!("id={HC}")), "{}", miss.body);

    // Refused: no note; a forged CSRF token. Nothing changes.
    let p = action(&mut b, HC, "approve", "  ");
    assert_eq!(p.status, 422, "{}", p.body);
    let p = b.post(
        "/console/action",
        &[
            ("csrf", "forged"),
            ("id", HC),
            ("action", "approve"),
            ("note", "x"),
        ],
    );
    assert_eq!(p.status, 403, "a forged CSRF token: {}", p.body);
    assert_eq!(application_status(&gw, HC).as_deref(), Some("pending"));

    // Approve; the audit log names the operator and the note.
    let p = action(&mut b, HC, "approve", "電話で本人確認済み");
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        p.location(),
        Some(&*format!("/console/account?id={HC}&done=approve"))
    );
    assert_eq!(application_status(&gw, HC).as_deref(), Some("approved"));
    let a = audit(&gw);
    assert!(
        a.iter()
            .any(|e| e["action"] == "application.approve" && e["actor"] == "secretariat:suzuki"),
        "{a:?}"
    );
    assert!(
        a.iter().any(|e| e["action"] == "console.approve"
            && e["actor"] == "secretariat:suzuki"
            && e["detail"].as_str().unwrap().contains("電話で本人確認済み")),
        "{a:?}"
    );
    // No [mail] here: the mail is logged as not sent (tests/console_mail.rs delivers it).
    assert!(
        gw.log()
            .contains("action mail not sent: no [mail] configured"),
        "the approval mail was not handed over"
    );

    // The user's next login reaches the consent page; 同意しない, confirmed.
    let r = gw.post_acs(&rs[1], Some("/menu"));
    assert_eq!(
        (r.status, r.location()),
        (303, Some("/consent")),
        "{}",
        r.summary()
    );
    let pending = consent_cookie(&r);
    let c = gw.get("/consent", Some(&pending));
    let csrf = hidden(&c.text(), "csrf");
    let form = format!("csrf={}&decision=reject_confirmed", form_encode(&csrf));
    let r = request_post(&gw, "/consent", &pending, &form);
    assert_eq!(r.0, 403, "{}", r.1);
    let reference = between(&r.1, "class=\"refno nowrap\">", "<").to_string();

    // The console: the rejected queue, with contact details; the detail page; the reference.
    let home = b.get("/console/");
    let rejected = between(&home.body, "id=\"h-rejected\"", "</section>");
    for want in [HC, "保健 太郎", "taro@hc.example.jp", "千代田保健所"] {
        assert!(
            rejected.contains(want),
            "{want} not in the rejected queue:\n{rejected}"
        );
    }
    let d = b.get(&format!("/console/account?id={HC}"));
    for want in [
        "taro@hc.example.jp",
        "03-1111-2222",
        "consent.reject",
        "value=\"reopen\"",
    ] {
        assert!(
            d.body.contains(want),
            "{want} not on the account page:\n{}",
            d.body
        );
    }
    let s = b.get(&format!("/console/support?ref={}", form_encode(&reference)));
    assert!(
        s.body.contains("blocked_consent_rejected"),
        "reference {reference} not found:\n{}",
        s.body
    );

    // And from the log, with the CLI: the refusal's lines, by request id.
    let out = Command::new(BIN)
        .args(["support", "lookup", &reference.replace('-', " "), "--log"])
        .arg(&gw.log_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("support_ref=")
            && text.contains("blocked_consent_rejected"),
        "support lookup {reference}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // CSV exports, read by python's csv module.
    let apps = b.get("/console/export/applications.csv");
    assert_eq!(apps.header("content-type"), Some("text/csv; charset=utf-8"));
    let rows = python_csv(apps.body.as_bytes());
    assert_eq!(rows[0][0], "gmis_id");
    let row = rows
        .iter()
        .find(|r| r[0] == HC)
        .expect("the application row");
    let col = |n: &str| rows[0].iter().position(|h| h == n).unwrap();
    assert_eq!(row[col("status")], "approved");
    assert_eq!(row[col("phone")], "03-1111-2222");
    assert_eq!(row[col("facility_name")], "千代田保健所");
    let cons = python_csv(b.get("/console/export/consents.csv").body.as_bytes());
    assert!(
        cons.iter().any(|r| r[0] == HC
            && r[1] == "rejected"
            && r.contains(&"taro@hc.example.jp".to_string())),
        "{cons:?}"
    );

    // Reopen: the next login asks for consent again.
    let p = action(&mut b, HC, "reopen", "本人と電話で確認、誤操作とのこと");
    assert_eq!(p.status, 303, "{}", p.body);
    let r = gw.post_acs(&rs[2], Some("/menu"));
    assert_eq!(
        (r.status, r.location()),
        (303, Some("/consent")),
        "after reopen: {}",
        r.summary()
    );
    assert!(audit(&gw).iter().any(|e| e["action"] == "console.reopen"));

    // Agree this time: a session; the console ends it (no admin op does that alone).
    let pending = consent_cookie(&r);
    let csrf = hidden(&gw.get("/consent", Some(&pending)).text(), "csrf");
    let form = format!("csrf={}&decision=accept", form_encode(&csrf));
    let accepted = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .post(&gw.url("/consent"))
        .set("Cookie", &pending)
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&form)
        .unwrap();
    let session = accepted
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("samlgate="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(gw.verify(Some(&session)).status, 200);
    let d = b.get(&format!("/console/account?id={HC}"));
    assert!(d.body.contains("id=\"h-sessions\""), "{}", d.body);
    let p = action(&mut b, HC, "end_sessions", "端末の紛失の連絡");
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        gw.verify(Some(&session)).status,
        401,
        "the session survived"
    );
    assert!(audit(&gw)
        .iter()
        .any(|e| e["action"] == "console.end_sessions"
            && e["detail"].as_str().unwrap().contains("sessions ended: 1")));

    // Log out: the cookie is gone and the console asks for a login.
    let csrf = b.get("/console/").hidden("csrf");
    let p = b.post("/console/logout", &[("csrf", &csrf)]);
    assert_eq!(p.location(), Some("/console/login?why=out"));
    assert_eq!(b.get("/console/").location(), Some("/console/login"));
}

/// The pending-consent cookie pair the ACS set.
fn consent_cookie(r: &Resp) -> String {
    r.headers_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("samlgate-consent="))
        .expect("a pending consent cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// POST a form with one cookie: (status, body).
fn request_post(gw: &Gateway, path: &str, cookie: &str, form: &str) -> (u16, String) {
    let r = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .post(&gw.url(path))
        .set("Cookie", cookie)
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(form);
    let r = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (r.status(), r.into_string().unwrap())
}

#[test]
fn only_secretariat_accounts_get_in_and_forms_need_their_csrf_token() {
    let gw = gateway("");
    // A staff account with the right password: refused for its role (403), while a wrong
    // password is just a wrong password (401): the role is not told to a guesser.
    let pw = add_account(&gw, "staff1", "staff");
    let mut b = Browser::new(&gw.public_url());
    let csrf = b.get("/console/login").hidden("csrf");
    let p = b.post(
        "/console/login",
        &[("csrf", &csrf), ("user_id", "staff1"), ("password", &pw)],
    );
    assert_eq!(
        (p.status, p.header("x-samlgate-reason")),
        (403, Some("console_not_secretariat")),
        "{}",
        p.body
    );
    let csrf = p.hidden("csrf");
    let p = b.post(
        "/console/login",
        &[
            ("csrf", &csrf),
            ("user_id", "staff1"),
            ("password", "wrong password 123"),
        ],
    );
    assert_eq!(
        (p.status, p.header("x-samlgate-reason")),
        (401, Some("local_wrong_password")),
        "{}",
        p.body
    );
    assert!(
        !b.jar.contains_key("samlgate-console-step") && !b.jar.contains_key("samlgate-console")
    );

    // The login form without its CSRF cookie's token.
    let mut c = Browser::new(&gw.public_url());
    let p = c.post(
        "/console/login",
        &[("csrf", "x"), ("user_id", "staff1"), ("password", &pw)],
    );
    assert_eq!(p.status, 403, "{}", p.body);

    // A forged console cookie.
    let mut f = Browser::new(&gw.public_url());
    f.jar
        .insert("samlgate-console".into(), "console-v1.eyJ9.AAAA".into());
    assert_eq!(f.get("/console/").location(), Some("/console/login"));

    // A secretariat whose account is disabled meanwhile is let go at the next page.
    let secret = operator(&gw, "tanaka");
    let mut t = console_login(&gw.public_url(), "tanaka", &secret, 30);
    assert_eq!(t.get("/console/").status, 200);
    cli_json(
        &gw,
        "accounts",
        &["disable", "tanaka", "--by", "setup", "--note", "left"],
    );
    assert_eq!(
        t.get("/console/").location(),
        Some("/console/login?why=denied")
    );
}

#[test]
fn the_console_lives_on_the_admin_listener_and_times_out_when_idle() {
    let admin_port = free_port();
    let gw = gateway(&format!(
        "listen = \"127.0.0.1:{admin_port}\"\n\n[console]\nidle_timeout_seconds = 4\n"
    ));
    let admin = format!("http://127.0.0.1:{admin_port}");
    // Not on the main listener.
    let mut m = Browser::new(&gw.public_url());
    assert_eq!(m.get("/console/login").status, 404);
    let secret = operator(&gw, "sato");
    let mut b = console_login(&admin, "sato", &secret, 30);
    // Activity keeps the login alive past the timeout ...
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(2000));
        let p = b.get("/console/");
        assert_eq!(p.status, 200, "{:?}", p.location());
    }
    // ... idleness ends it (times are whole seconds: more than 4 s means at least 5.x s).
    std::thread::sleep(std::time::Duration::from_millis(5600));
    let p = b.get("/console/");
    assert_eq!(p.location(), Some("/console/login?why=idle"));
    let p = b.get("/console/login?why=idle");
    assert!(p.body.contains("一定時間操作がなかった"), "{}", p.body);
}

/// Issue 14, item 8: the language chosen with the header's link is marked `aria-current` and
/// persists through SSO (the ACS's page answers a POST from G-MIS, without `?lang=`).
#[test]
fn the_chosen_language_is_marked_and_persists_through_sso() {
    let gw = gateway("");
    let r = gw.get("/login?lang=en", None);
    assert!(
        r.text().contains("hreflang=\"en\" aria-current=\"true\""),
        "{}",
        r.text()
    );
    let cookie = r
        .headers_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("samlgate-lang=en;"))
        .expect("the language is remembered")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // The language links keep return_to.
    let r = gw.get("/login?return_to=%2Fmenu%2Freports", None);
    assert!(
        r.text()
            .contains("href=\"?lang=en&amp;return_to=/menu/reports\""),
        "{}",
        r.text()
    );
    let rs = hc_responses(&gw, 2);
    let plain = gw.post_acs(&rs[0], None);
    assert!(
        plain.text().contains("<html lang=\"ja\""),
        "{}",
        plain.summary()
    );
    let chosen = gw.post_acs_with_cookie(&rs[1], &cookie);
    assert_eq!(chosen.reason(), Some("application_needed"));
    assert!(
        chosen.text().contains("<html lang=\"en\""),
        "{}",
        chosen.text()
    );
}

/// `[server] timezone`: the CLI's lists in the configured zone (default Asia/Tokyo); an unknown
/// zone is refused at start-up, naming the key.
#[test]
fn lists_use_the_configured_timezone() {
    let mut gw = gateway("");
    let rs = hc_responses(&gw, 1);
    apply_from_refusal(&gw, &rs[0]);
    let list = |gw: &Gateway| {
        let out = Command::new(BIN)
            .args(["applications", "list", "--config"])
            .arg(&gw.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let now = |offset: i64| {
        chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + offset, 0)
            .unwrap()
            .format("%Y-%m-%d %H:")
            .to_string()
    };
    let jst = list(&gw);
    assert!(
        jst.contains(" JST") && jst.contains(&now(9 * 3600)),
        "{jst}"
    );
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let set = |zone: &str| {
        cfg.replacen(
            "[server]\n",
            &format!("[server]\ntimezone = \"{zone}\"\n"),
            1,
        )
    };
    fs::write(&gw.config, set("UTC")).unwrap();
    gw.restart();
    let utc = list(&gw);
    assert!(utc.contains(" UTC") && utc.contains(&now(0)), "{utc}");
    fs::write(&gw.config, set("Asia/Nowhere")).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("server.timezone"),
        "{err}"
    );
}
