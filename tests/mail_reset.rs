//! 「パスワードを忘れた方はこちら」 end to end (issue 13): `samlgate serve` with `[mail]` sends
//! through a real SMTP server on loopback (python aiosmtpd, tests/support/smtp_sink.py,
//! which parses each message with Python's own `email` package). The test takes the link
//! from the delivered mail, follows it, changes the password and logs in; and checks the
//! links that must not work, the same answer for an unknown id, SMTP down, and STARTTLS /
//! implicit TLS with a CA file.

mod common;
mod local_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use local_common::*;
use serde_json::Value;

const FROM: &str = "医療情報ネット事務局 <noreply@iryou.example.jp>";

fn mail_config(port: u16, tls: &str, extra: &str) -> String {
    format!(
        "[mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nfrom = \"{FROM}\"\n\
         attempts = 2\nretry_seconds = 1\ntimeout_seconds = 5\n{extra}\n"
    )
}

/// GET /login/forgot, then POST the id: the answer every id gets.
fn forgot(b: &mut Browser, id: &str) -> String {
    let (s, _, page) = b.get("/login/forgot");
    assert_eq!(s, 200, "{page}");
    let csrf = hidden(&page, "csrf");
    let (s, _, page) = b.post("/login/forgot", &[("csrf", &csrf), ("user_id", id)]);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("id=\"forgot-sent\""), "{page}");
    page
}

/// The reset link in a delivered mail, as a path on the gateway.
fn link_in(gw: &Gateway, mail: &Value) -> String {
    let body = mail["body"].as_str().unwrap();
    let prefix = format!("{}/login/reset?token=", gw.public_url());
    let start = body
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link in:\n{body}"));
    let url = body[start..].split_whitespace().next().unwrap();
    url[gw.public_url().len()..].to_string()
}

fn token_of(link: &str) -> &str {
    link.split("token=").nth(1).unwrap()
}

/// Opens the link and presses Continue: (status, headers, page) of the POST.
fn follow(b: &mut Browser, link: &str) -> (u16, Vec<(String, String)>, String) {
    let (s, h, page) = b.get(link);
    if s != 200 {
        return (s, h, page);
    }
    assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"));
    let csrf = hidden(&page, "csrf");
    b.post(
        "/login/reset",
        &[("csrf", &csrf), ("token", token_of(link))],
    )
}

/// A settled account (first password changed) named `id`; returns nothing: its password is
/// NEW_PASSWORD.
fn settled(gw: &Gateway, id: &str) {
    let pw = add(gw, id);
    let mut b = Browser::new(gw);
    assert_eq!(b.login(id, &pw).0, 303);
    let (s, _, page) = change_password(&mut b, NEW_PASSWORD);
    assert_eq!(s, 303, "{page}");
}

const RESET_PASSWORD: &str = "a new phrase after the reset mail";

#[test]
fn a_mailed_link_leads_to_a_new_password_and_a_session() {
    let smtp = SmtpSink::start("none", None);
    let gw = gateway(&mail_config(smtp.port, "none", ""));
    settled(&gw, "hanako");

    let mut b = Browser::new(&gw);
    let (_, _, page) = b.get("/login/forgot");
    assert!(
        page.contains("name=\"user_id\""),
        "with [mail], a form: {page}"
    );
    forgot(&mut b, "hanako");
    let mails = smtp.wait_for(1);
    let m = &mails[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["hanako@example.jp"]));
    assert_eq!(m["mail_from"], "noreply@iryou.example.jp");
    assert!(
        m["from"].as_str().unwrap().contains("医療情報ネット事務局"),
        "{m}"
    );
    assert!(
        m["subject"]
            .as_str()
            .unwrap()
            .starts_with("【医療情報ネット】パスワード再設定のご案内 / "),
        "{m}"
    );
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    let body = m["body"].as_str().unwrap();
    assert!(
        body.contains("30分間有効") && body.contains("30 minutes"),
        "{body}"
    );
    let link = link_in(&gw, m);
    assert_eq!(token_of(&link).len(), 43, "{link}");

    // Opening the link uses nothing up (mail scanners open links); Continue does.
    assert_eq!(b.get(&link).0, 200);
    let (s, h, page) = follow(&mut b, &link);
    assert_eq!(s, 303, "{page}");
    assert_eq!(header(&h, "location"), Some("/login/change"));
    assert!(
        !b.jar.contains_key("samlgate"),
        "a session before the change"
    );
    // Continue pressed again (another tab) before the change: the link is used up. The
    // form without its CSRF token is refused first.
    let mut tab = Browser::new(&gw);
    tab.jar = b.jar.clone();
    let (s, h, _) = tab.post(
        "/login/reset",
        &[("csrf", "forged"), ("token", token_of(&link))],
    );
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (403, Some("csrf_mismatch"))
    );
    let (_, _, p) = tab.get("/login/forgot");
    let csrf2 = hidden(&p, "csrf");
    let (s, h, _) = tab.post(
        "/login/reset",
        &[("csrf", &csrf2), ("token", token_of(&link))],
    );
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (410, Some("local_reset_link_invalid")),
        "a link redeemed twice"
    );
    let (s, _, page) = b.get("/login/change");
    assert_eq!(s, 200);
    assert!(
        page.contains("設定が終わると、そのままログインします"),
        "{page}"
    );
    let csrf = hidden(&page, "csrf");
    let (s, h, page) = b.post(
        "/login/change",
        &[
            ("csrf", &csrf),
            ("new_password", RESET_PASSWORD),
            ("confirm", RESET_PASSWORD),
        ],
    );
    assert_eq!((s, header(&h, "location")), (303, Some("/")), "{page}");
    let (s, h, _) = b.verify();
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-samlgate-local-user"), Some("hanako"));

    // The new password logs in; the old one does not.
    let mut c = Browser::new(&gw);
    assert_eq!(c.login("hanako", NEW_PASSWORD).0, 401);
    std::thread::sleep(Duration::from_millis(1100)); // the delay after a failure
    let (s, h, _) = c.login("hanako", RESET_PASSWORD);
    assert_eq!((s, header(&h, "location")), (303, Some("/")));

    // The same link a second time: gone, with the page's way forward.
    let (s, h, page) = Browser::new(&gw).get(&link);
    assert_eq!(s, 410, "{page}");
    assert_eq!(
        header(&h, "x-samlgate-reason"),
        Some("local_reset_link_invalid")
    );
    assert!(
        page.contains("/login/forgot") && page.contains("有効期限"),
        "{page}"
    );
    let mut d = Browser::new(&gw);
    let (_, _, p) = d.get("/login/forgot");
    let csrf = hidden(&p, "csrf");
    let (s, _, _) = d.post(
        "/login/reset",
        &[("csrf", &csrf), ("token", token_of(&link))],
    );
    assert_eq!(s, 410, "a used link posted again");

    // Audited without the token; neither the token nor the mail body reaches the log.
    let audit = cli_json(&gw, "audit", &["tail", "-n", "30"]);
    let resets: Vec<String> = audit
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("password_reset."))
        .map(|e| {
            format!(
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        resets,
        [
            "password_reset.request hanako mailed",
            "password_reset.redeem hanako ok, next ChangePassword"
        ]
    );
    let all = serde_json::to_string(&audit).unwrap() + &gw.log();
    let token = token_of(&link);
    assert!(
        !all.contains(token),
        "the reset token reached the audit log or the log"
    );
    assert!(
        !all.contains("一度だけ使えます"),
        "the mail body reached the log"
    );
    assert!(!all.contains(RESET_PASSWORD), "a password reached the log");
    assert!(gw.log().contains("mail sent"), "{}", gw.log_tail(20));
}

#[test]
fn links_work_once_in_time_for_the_password_they_replace_and_ids_are_not_told() {
    let smtp = SmtpSink::start("none", None);
    let gw = gateway(&mail_config(
        smtp.port,
        "none",
        "[local.reset]\nlink_ttl_secs = 3\nlink_mails_per_hour = 10\nip_burst = 50\n",
    ));
    settled(&gw, "taro");

    // Two links; the first is used, and the second is void with it (a new password).
    let mut b = Browser::new(&gw);
    forgot(&mut b, "taro");
    forgot(&mut b, "taro");
    let mails = smtp.wait_for(2);
    let (first, second) = (link_in(&gw, &mails[0]), link_in(&gw, &mails[1]));
    let (s, _, _) = follow(&mut b, &first);
    assert_eq!(s, 303);
    let (_, _, page) = b.get("/login/change");
    let csrf = hidden(&page, "csrf");
    let (s, _, _) = b.post(
        "/login/change",
        &[
            ("csrf", &csrf),
            ("new_password", RESET_PASSWORD),
            ("confirm", RESET_PASSWORD),
        ],
    );
    assert_eq!(s, 303);
    let (s, h, _) = follow(&mut Browser::new(&gw), &second);
    assert_eq!(s, 410);
    assert_eq!(
        header(&h, "x-samlgate-reason"),
        Some("local_reset_link_superseded")
    );

    // An expired link (3 s here).
    forgot(&mut b, "taro");
    let mails = smtp.wait_for(3);
    let late = link_in(&gw, &mails[2]);
    std::thread::sleep(Duration::from_millis(3200));
    let (s, h, page) = follow(&mut Browser::new(&gw), &late);
    assert_eq!(s, 410, "{page}");
    assert_eq!(
        header(&h, "x-samlgate-reason"),
        Some("local_reset_link_expired")
    );

    // A link, then the 事務局 resets the password: the link is void.
    forgot(&mut b, "taro");
    let mails = smtp.wait_for(4);
    let before_reset = link_in(&gw, &mails[3]);
    let v = one(&gw, "accounts", &["reset", "taro", "--by", "suzuki"]);
    assert!(v["temporary_password"].is_string(), "{v}");
    let (s, h, _) = follow(&mut Browser::new(&gw), &before_reset);
    assert_eq!(s, 410);
    assert_eq!(
        header(&h, "x-samlgate-reason"),
        Some("local_reset_link_superseded")
    );

    // An unknown id and a disabled account get the page every id gets, and no mail: the
    // mail asked for after them is the only one that arrives.
    let unknown = forgot(&mut Browser::new(&gw), "nobody");
    settled(&gw, "jiro");
    one(&gw, "accounts", &["disable", "jiro", "--by", "suzuki"]);
    let disabled = forgot(&mut Browser::new(&gw), "jiro");
    let known = forgot(&mut Browser::new(&gw), "taro");
    assert_eq!(unknown, known, "the page must not depend on the id");
    assert_eq!(disabled, known);
    let mails = smtp.wait_for(5);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.messages().len(), 5);
    assert!(mails[4]["body"].as_str().unwrap().contains("taro"));

    // A forged link.
    let (s, h, _) =
        Browser::new(&gw).get("/login/reset?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (410, Some("local_reset_link_invalid"))
    );

    let audit = cli_json(&gw, "audit", &["tail", "-n", "80"]);
    let details: Vec<String> = audit
        .iter()
        .filter(|e| e["action"] == "password_reset.request")
        .map(|e| {
            format!(
                "{} {}",
                e["subject"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        details.contains(&"nobody local_unknown_id".to_string()),
        "{details:?}"
    );
    assert!(
        details.contains(&"jiro local_disabled".to_string()),
        "{details:?}"
    );
}

#[test]
fn per_account_mail_limit_gives_the_same_page_and_no_mail() {
    let smtp = SmtpSink::start("none", None);
    let gw = gateway(&mail_config(
        smtp.port,
        "none",
        "[local.reset]\nlink_mails_per_hour = 2\nip_burst = 4\n",
    ));
    settled(&gw, "hanako");
    let mut b = Browser::new(&gw);
    let p1 = forgot(&mut b, "hanako");
    forgot(&mut b, "hanako");
    let p3 = forgot(&mut b, "hanako");
    assert_eq!(p1, p3);
    smtp.wait_for(2);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(smtp.messages().len(), 2, "a third mail within the hour");
    let audit = cli_json(&gw, "audit", &["tail", "-n", "20"]);
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "password_reset.request"
                && e["detail"] == "reset_mail_throttled"),
        "{audit:?}"
    );
}

#[test]
fn with_smtp_down_the_page_says_the_same_and_the_log_has_the_reason() {
    let dead = free_port(); // nothing listens there
    let gw = gateway(&mail_config(dead, "none", ""));
    settled(&gw, "hanako");
    let page = forgot(&mut Browser::new(&gw), "hanako");
    assert!(page.contains("forgot-sent"));
    let end = Instant::now() + Duration::from_secs(20);
    while !gw.log().contains("mail not sent: gave up") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("samlgate::mail"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("mail_connect_failed") && l.contains("gave up")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("will retry")),
        "bounded retries: {lines:#?}"
    );
    assert!(!log.contains("token="), "the link reached the log");
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).
fn ca_and_server(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=samlgate test mail CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

#[test]
fn starttls_and_implicit_tls_trust_the_configured_ca_only() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server(certs.path());
    let ca_line = format!("ca_file = \"{}\"", ca.display());

    let smtp = SmtpSink::start("starttls", Some((&cert, &key)));
    let mut gw = gateway(&mail_config(smtp.port, "starttls", &ca_line));
    settled(&gw, "hanako");
    forgot(&mut Browser::new(&gw), "hanako");
    let m = smtp.wait_for(1);
    assert_eq!(m[0]["tls"], true, "delivered over STARTTLS: {}", m[0]);

    // Implicit TLS (SMTPS) with the same CA.
    let smtps = SmtpSink::start("implicit", Some((&cert, &key)));
    set_mail(&mut gw, &mail_config(smtps.port, "implicit", &ca_line));
    forgot(&mut Browser::new(&gw), "hanako");
    let m = smtps.wait_for(1);
    assert_eq!(m[0]["tls"], true);

    // Without the CA the relay's certificate is not trusted: nothing is sent in the clear.
    set_mail(&mut gw, &mail_config(smtp.port, "starttls", ""));
    forgot(&mut Browser::new(&gw), "hanako");
    let end = Instant::now() + Duration::from_secs(20);
    while !gw.log().contains("mail_tls_failed") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.log().contains("mail_tls_failed"), "{}", gw.log_tail(30));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        smtp.messages().len(),
        1,
        "a mail went to an untrusted relay"
    );

    // Plain SMTP to anything but loopback is refused at start-up.
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let bad = cfg
        .replace("host = \"127.0.0.1\"", "host = \"smtp.example.jp\"")
        .replace("tls = \"starttls\"", "tls = \"none\"");
    fs::write(&gw.config, bad).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mail.tls"), "{err}");
}

/// Replaces the `[mail]` section (the last one in the file) and restarts.
fn set_mail(gw: &mut Gateway, mail: &str) {
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let i = cfg.find("[mail]").unwrap();
    fs::write(&gw.config, format!("{}{mail}", &cfg[..i])).unwrap();
    gw.restart();
}

#[test]
fn without_mail_the_forgot_page_sends_people_to_the_secretariat() {
    let gw = gateway("");
    settled(&gw, "hanako");
    let mut b = Browser::new(&gw);
    let (s, _, page) = b.get("/login/forgot");
    assert_eq!(s, 200);
    assert!(
        page.contains("事務局にご連絡ください") && page.contains("一時パスワード"),
        "{page}"
    );
    assert!(
        !page.contains("name=\"user_id\""),
        "no form without [mail]: {page}"
    );
    let (s, _, again) = b.post("/login/forgot", &[("user_id", "hanako")]);
    assert_eq!(s, 200);
    assert!(
        !again.contains("forgot-sent"),
        "no link is promised without [mail]"
    );
    let audit = cli_json(&gw, "audit", &["tail", "-n", "20"]);
    assert!(
        !audit
            .iter()
            .any(|e| e["action"] == "password_reset.request"),
        "{audit:?}"
    );
}
