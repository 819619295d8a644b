//! Local 医療情報ネット ID/password accounts end to end (issue 13), against `samlgate serve`
//! and its CLI: the 事務局's `accounts` commands (through the running gateway's admin API on
//! sled, directly on PostgreSQL), audited without passwords.

mod common;
mod local_common;

use std::process::Command;

use common::*;
use local_common::*;

#[test]
fn secretariat_manages_accounts_with_the_cli_and_every_action_is_audited() {
    let gw = gateway("");
    let pw = add(&gw, "hanako");
    let (ok, _, err) = cli(
        &gw,
        "accounts",
        &[
            "add",
            "hanako",
            "--email",
            "x@example.jp",
            "--name",
            "x",
            "--by",
            "suzuki",
        ],
    );
    assert!(!ok && err.contains("already exists"), "second add: {err}");

    let list = cli_json(&gw, "accounts", &["list"]);
    assert_eq!(list.len(), 1);
    let a = &list[0];
    assert_eq!(a["user_id"], "hanako");
    assert_eq!(a["name"], "山田 花子");
    assert_eq!(a["must_change"], true);
    assert_eq!(a["role"], "staff");
    let text = serde_json::to_string(&list).unwrap();
    assert!(
        !text.contains("argon2") && !text.contains(&pw),
        "list shows secrets: {text}"
    );
    // One person is one user: the account's user is listed by `users`.
    let u = one(&gw, "users", &["show", "hanako"]);
    assert_eq!(u["origin"], "local");

    let v = one(
        &gw,
        "accounts",
        &["disable", "hanako", "--by", "suzuki", "--note", "left"],
    );
    assert_eq!(v["disabled"], true);
    let v = one(&gw, "accounts", &["enable", "hanako", "--by", "suzuki"]);
    assert_eq!(v["disabled"], false);
    let v = one(
        &gw,
        "accounts",
        &["reset", "hanako", "--by", "suzuki", "--note", "phone"],
    );
    let tmp = v["temporary_password"].as_str().unwrap().to_string();
    assert!(tmp.len() == 24 && tmp != pw, "{v}");
    let v = one(&gw, "accounts", &["unlock", "hanako", "--by", "suzuki"]);
    assert_eq!(v["locked"], false);
    let (ok, _, err) = cli(&gw, "accounts", &["show", "nobody"]);
    assert!(!ok && err.contains("no account nobody"), "{err}");

    let audit = cli_json(&gw, "audit", &["tail", "-n", "20"]);
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e["subject"] == "hanako")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "account.add",
            "account.disable",
            "account.enable",
            "account.reset",
            "account.unlock"
        ]
    );
    let all = serde_json::to_string(&audit).unwrap() + &gw.log();
    assert!(
        !all.contains(&pw) && !all.contains(&tmp),
        "a password in the audit log or the log"
    );

    // Every flag says what it is for.
    let (_, help, _) = cli(&gw, "accounts", &["add", "-h"]);
    for flag in [
        "--email",
        "--name",
        "--by",
        "--role",
        "--json",
        "--facility",
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag));
        let described = line.is_some_and(|l| l.split_whitespace().count() > 2);
        assert!(described, "{flag} has no help text:\n{help}");
    }
}

// ------------------------------------------------------------------------------------------
// the login pages, as a browser without JavaScript uses them

#[test]
fn first_login_forces_a_change_then_verify_carries_the_identity() {
    let gw = gateway("");
    let pw = add(&gw, "hanako");
    let mut b = Browser::new(&gw);
    let (s, _, page) = b.get("/login");
    assert_eq!(s, 200);
    for want in [
        "ユーザーID",
        "パスワード",
        "表示",
        "半角英数字",
        "大文字と小文字は区別",
        "ログイン",
        "G-MISからのログインはこちら",
        "G-MISにログイン後、医療情報ネットのリンクを選択",
        "パスワードを忘れた方はこちら",
        "type=\"password\"",
        "/_samlgate/login.js",
    ] {
        assert!(page.contains(want), "login page lacks {want}:\n{page}");
    }
    let (_, _, en) = b.get("/login?lang=en");
    assert!(
        en.contains("Forgot your password?") && en.contains("case-sensitive"),
        "{en}"
    );
    // The choice is kept (samlgate-lang cookie); back to Japanese for the pages below.
    b.get("/login?lang=ja");

    // A form without its CSRF token changes nothing.
    let (s, _, _) = b.post(
        "/login",
        &[("csrf", "forged"), ("user_id", "hanako"), ("password", &pw)],
    );
    assert_eq!(s, 403);

    // The one-time password leads to the change page, and to no session yet.
    let (s, h, body) = b.login("hanako", &pw);
    assert_eq!(s, 303, "{body}");
    assert_eq!(header(&h, "location"), Some("/login/change"));
    assert!(
        !b.jar.contains_key("samlgate"),
        "a session before the password was changed"
    );
    assert_eq!(b.verify().0, 401, "verify before the change");

    let (s, h, body) = change_password(&mut b, NEW_PASSWORD);
    assert_eq!(s, 303, "{body}");
    assert_eq!(header(&h, "location"), Some("/"));
    let (s, h, _) = b.verify();
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-samlgate-auth-method"), Some("password"));
    assert_eq!(header(&h, "x-samlgate-local-user"), Some("hanako"));
    assert_eq!(header(&h, "x-auth-request-user"), Some("hanako"));
    assert_eq!(
        header(&h, "x-auth-request-email"),
        Some("hanako@example.jp")
    );

    // Later logins: the new password goes straight in, with a new session id; the old
    // one-time password no longer works.
    let first = b.jar.get("samlgate").cloned().unwrap();
    let (s, h, _) = b.login("hanako", NEW_PASSWORD);
    assert_eq!((s, header(&h, "location")), (303, Some("/")));
    assert_ne!(
        b.jar.get("samlgate"),
        Some(&first),
        "the session id must change on login"
    );
    let mut other = Browser::new(&gw);
    let (s, h, page) = other.login("hanako", &pw);
    assert_eq!(s, 401, "{page}");
    assert_eq!(
        header(&h, "x-samlgate-reason"),
        Some("local_wrong_password")
    );
    // Exponential delay per account: 1 s after the first failure, 2 s after the second (time
    // is in whole seconds, so only the 2 s wait is sure to cover an immediate retry).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (s, _, _) = other.login("hanako", "another wrong password");
    assert_eq!(s, 401);
    let (s, h, _) = other.login("hanako", NEW_PASSWORD);
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (429, Some("local_throttled"))
    );
    // An unknown id gets the same answer as a wrong password.
    let (s, h, unknown) = other.login("nobody", "whatever password here");
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (401, Some("local_wrong_password"))
    );
    assert!(unknown.contains("login-error"));

    let audit = cli_json(&gw, "audit", &["tail", "-n", "50"]);
    let logins: Vec<String> = audit
        .iter()
        .filter(|e| e["action"].as_str().unwrap_or("").starts_with("login."))
        .map(|e| {
            format!(
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(logins.len() >= 7, "every attempt audited: {logins:?}");
    assert!(
        logins
            .iter()
            .any(|l| l == "login.password nobody local_unknown_id"),
        "{logins:?}"
    );
    let all = serde_json::to_string(&audit).unwrap() + &gw.log();
    for secret in [
        pw.as_str(),
        NEW_PASSWORD,
        "whatever password here",
        "another wrong password",
    ] {
        assert!(
            !all.contains(secret),
            "a password reached the audit log or the log"
        );
    }
}

#[test]
fn lockout_is_lifted_by_the_secretariat_and_a_reset_forces_a_change() {
    let gw = gateway("[local.throttle]\nbase_delay_secs = 0\nlock_after = 3\nlock_secs = 0\n");
    let pw = add(&gw, "taro");
    let mut b = Browser::new(&gw);
    let (s, _, _) = b.login("taro", &pw);
    assert_eq!(s, 303);
    let (s, _, _) = change_password(&mut b, NEW_PASSWORD);
    assert_eq!(s, 303);
    assert_eq!(b.verify().0, 200);

    let mut m = Browser::new(&gw);
    for _ in 0..3 {
        let (s, _, _) = m.login("taro", "wrong password, really wrong");
        assert_eq!(s, 401);
    }
    let (s, h, page) = m.login("taro", NEW_PASSWORD);
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (429, Some("local_locked")),
        "{page}"
    );
    assert_eq!(one(&gw, "accounts", &["show", "taro"])["locked"], true);
    one(&gw, "accounts", &["unlock", "taro", "--by", "suzuki"]);
    let (s, _, _) = m.login("taro", NEW_PASSWORD);
    assert_eq!(s, 303, "unlocked by the secretariat");

    // Reset by the 事務局: the sessions end; the one-time password forces a change again.
    let v = one(
        &gw,
        "accounts",
        &["reset", "taro", "--by", "suzuki", "--note", "phone"],
    );
    let tmp = v["temporary_password"].as_str().unwrap().to_string();
    assert!(v["sessions_ended"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(b.verify().0, 401, "a reset ends the sessions");
    let (s, _, _) = m.login("taro", NEW_PASSWORD);
    assert_eq!(s, 401, "the old password is gone");
    // (the wrong password above set a 0 s delay: go on at once)
    let (s, h, _) = m.login("taro", &tmp);
    assert_eq!((s, header(&h, "location")), (303, Some("/login/change")));
    let (s, _, _) = change_password(&mut m, "a brand new passphrase for taro");
    assert_eq!(s, 303);
    let (s, h, _) = m.verify();
    assert_eq!(
        (s, header(&h, "x-samlgate-local-user")),
        (200, Some("taro"))
    );

    // Disabled: even the right password is refused, and the sessions end.
    one(&gw, "accounts", &["disable", "taro", "--by", "suzuki"]);
    assert_eq!(m.verify().0, 401);
    let (s, h, _) = Browser::new(&gw).login("taro", "a brand new passphrase for taro");
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (401, Some("local_disabled"))
    );
}

// ------------------------------------------------------------------------------------------
// TOTP, with codes from an independent implementation (python pyotp)

#[test]
fn required_totp_is_enrolled_after_the_change_and_asked_at_every_login() {
    let gw = gateway("[local]\nsecond_factor = \"required\"\n");
    let pw = add(&gw, "jiro");
    let mut b = Browser::new(&gw);
    assert_eq!(b.login("jiro", &pw).0, 303);
    let (s, h, _) = change_password(&mut b, NEW_PASSWORD);
    assert_eq!((s, header(&h, "location")), (303, Some("/login/enrol")));
    assert!(
        !b.jar.contains_key("samlgate"),
        "no session before enrolment"
    );

    let (s, _, page) = b.get("/login/enrol");
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("<svg"),
        "the QR code is an inline SVG: {page}"
    );
    let secret = between(&page, "<code id=\"secret\">", "</code>").to_string();
    // A reload shows the same secret (kept server-side until confirmed).
    let (_, _, again) = b.get("/login/enrol");
    assert_eq!(between(&again, "<code id=\"secret\">", "</code>"), secret);
    let csrf = hidden(&again, "csrf");
    let (s, _, bad) = b.post("/login/enrol", &[("csrf", &csrf), ("code", "000000")]);
    assert_eq!(s, 401, "{bad}");
    let code = pyotp(&secret, 0);
    let (s, _, page) = b.post("/login/enrol", &[("csrf", &csrf), ("code", &code)]);
    assert_eq!(s, 200, "{page}");
    let codes: Vec<String> = between(
        &page,
        "<ul class=\"recovery\" id=\"recovery-codes\">",
        "</ul>",
    )
    .split("<code>")
    .skip(1)
    .map(|c| c.split("</code>").next().unwrap().to_string())
    .collect();
    assert_eq!(codes.len(), 10, "{page}");
    let (s, h, _) = b.verify();
    assert_eq!(
        (s, header(&h, "x-samlgate-auth-method")),
        (200, Some("password+totp"))
    );

    // Next login: the password alone is not enough; a recovery code works once.
    let mut r = Browser::new(&gw);
    let (s, h, _) = r.login("jiro", NEW_PASSWORD);
    assert_eq!((s, header(&h, "location")), (303, Some("/login/totp")));
    assert!(!r.jar.contains_key("samlgate"));
    let (_, _, page) = r.get("/login/totp");
    let csrf = hidden(&page, "csrf");
    let (s, _, _) = r.post(
        "/login/totp",
        &[
            ("csrf", &csrf),
            ("recovery", &codes[0]),
            ("use_recovery", "1"),
        ],
    );
    assert_eq!(s, 303);
    let (s, h, _) = r.verify();
    assert_eq!(
        (s, header(&h, "x-samlgate-auth-method")),
        (200, Some("password+recovery"))
    );

    // And a TOTP code: the enrolment used this time step, so take pyotp's next one (the
    // server accepts one step of drift; an earlier or equal step would be a replay).
    let mut t = Browser::new(&gw);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(t.login("jiro", NEW_PASSWORD).0, 303);
    let (_, _, page) = t.get("/login/totp");
    let csrf = hidden(&page, "csrf");
    let (s, h, page) = t.post(
        "/login/totp",
        &[
            ("csrf", &csrf),
            ("recovery", &codes[0]),
            ("use_recovery", "1"),
        ],
    );
    assert_eq!(
        (s, header(&h, "x-samlgate-reason")),
        (401, Some("local_recovery_wrong")),
        "a used recovery code: {page}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let csrf = hidden(&page, "csrf");
    let (s, _, page) = t.post(
        "/login/totp",
        &[("csrf", &csrf), ("code", &pyotp(&secret, 30))],
    );
    assert_eq!(s, 303, "{page}");
    let (s, h, _) = t.verify();
    assert_eq!(
        (s, header(&h, "x-samlgate-auth-method")),
        (200, Some("password+totp"))
    );
}

// ------------------------------------------------------------------------------------------
// one person, one user: a local account linked to G-MIS is reached both ways

#[test]
fn a_linked_account_is_the_same_user_by_password_and_by_g_mis() {
    let gw = gateway("");
    let pw = add(&gw, "hanako");
    let gmis = "GM8000001";
    one(
        &gw,
        "applications",
        &["add", gmis, "--link-to", "hanako", "--approve", "--by", "t"],
    );
    let b64 = gw.make_response(&["--nameid", gmis]);
    let r = gw.post_acs(&b64, Some("/"));
    let sso = r
        .session_cookie()
        .unwrap_or_else(|| panic!("SSO login: {}", r.summary()));
    let v = gw.verify(Some(&sso));
    assert_eq!(v.status, 200, "{}", v.summary());
    assert_eq!(v.header("x-samlgate-local-user"), Some("hanako"));
    assert_eq!(v.header("x-samlgate-auth-method"), Some("saml"));
    let by_sso = v.header("x-auth-request-user").map(str::to_string);

    let mut b = Browser::new(&gw);
    assert_eq!(b.login("hanako", &pw).0, 303);
    assert_eq!(change_password(&mut b, NEW_PASSWORD).0, 303);
    let (s, h, _) = b.verify();
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-samlgate-local-user"), Some("hanako"));
    assert_eq!(header(&h, "x-samlgate-auth-method"), Some("password"));
    assert_eq!(
        header(&h, "x-auth-request-user").map(str::to_string),
        by_sso,
        "the same identity both ways"
    );
    let users = cli_json(&gw, "users", &["list"]);
    assert_eq!(users.len(), 1, "one person is one user: {users:?}");
    assert_eq!(users[0]["gmis_id"], gmis);
}

#[test]
fn one_client_is_rate_limited_before_any_hash() {
    let gw = gateway("");
    let mut b = Browser::new(&gw);
    let mut statuses = Vec::new();
    for i in 0..24 {
        let (s, h, _) = b.login(&format!("nobody{i}"), "spray password 1");
        statuses.push((s, header(&h, "x-samlgate-reason").map(str::to_string)));
    }
    // Burst 20 per client address, then 10 a minute.
    assert!(
        statuses[..20].iter().all(|(s, _)| *s == 401),
        "{statuses:?}"
    );
    let (s, reason) = &statuses[23];
    assert_eq!(
        (*s, reason.as_deref()),
        (429, Some("rate_limited")),
        "{statuses:?}"
    );
}

#[test]
fn optional_totp_is_set_up_by_choice_from_a_password_session() {
    let gw = gateway("");
    let pw = add(&gw, "saburo");
    let mut b = Browser::new(&gw);
    // Not logged in: to the login page, coming back here.
    let (s, h, _) = b.get("/login/totp-setup");
    assert_eq!(s, 303);
    assert_eq!(
        header(&h, "location"),
        Some("/login?return_to=/login/totp-setup")
    );
    assert_eq!(b.login("saburo", &pw).0, 303);
    assert_eq!(change_password(&mut b, NEW_PASSWORD).0, 303);
    assert_eq!(
        header(&b.verify().1, "x-samlgate-auth-method"),
        Some("password"),
        "optional: not asked before setting it up"
    );

    let (s, _, page) = b.get("/login/totp-setup");
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("<svg") && page.contains("次回からのログイン"),
        "{page}"
    );
    let secret = between(&page, "<code id=\"secret\">", "</code>").to_string();
    let token = hidden(&page, "csrf");
    // A wrong code: the form again with a new secret; the old token still names the old one.
    let (s, _, again) = b.post("/login/totp-setup", &[("csrf", &token), ("code", "000000")]);
    assert_eq!(s, 422, "{again}");
    assert!(again.contains("enrol-error"));
    // Another session cannot use this page's token (it is bound to the session).
    let mut other = Browser::new(&gw);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(other.login("saburo", NEW_PASSWORD).0, 303);
    let (s, _, _) = other.post(
        "/login/totp-setup",
        &[("csrf", &token), ("code", &pyotp(&secret, 0))],
    );
    assert_eq!(s, 422, "a token from another session");
    // The right code from pyotp: recovery codes, once.
    let (s, _, page) = b.post(
        "/login/totp-setup",
        &[("csrf", &token), ("code", &pyotp(&secret, 0))],
    );
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("id=\"recovery-codes\""), "{page}");
    let (_, _, page) = b.get("/login/totp-setup");
    assert!(page.contains("すでに設定されています"), "{page}");
    assert!(!page.contains("<svg"), "no second enrolment over the first");

    // From now on the password alone is not enough.
    let mut n = Browser::new(&gw);
    let (s, h, _) = n.login("saburo", NEW_PASSWORD);
    assert_eq!((s, header(&h, "location")), (303, Some("/login/totp")));
    let audit = cli_json(&gw, "audit", &["tail", "-n", "30"]);
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "account.totp_enrol" && e["actor"] == "user:saburo"),
        "{audit:?}"
    );
}

#[test]
fn totp_setup_is_not_offered_when_the_second_factor_is_off() {
    let gw = gateway("[local]\nsecond_factor = \"off\"\n");
    let pw = add(&gw, "shiro");
    let mut b = Browser::new(&gw);
    assert_eq!(b.login("shiro", &pw).0, 303);
    assert_eq!(change_password(&mut b, NEW_PASSWORD).0, 303);
    let (s, _, page) = b.get("/login/totp-setup");
    assert_eq!(s, 404, "{page}");
    assert!(!page.contains("<svg"));
}

/// An argon2id hash of `pw` made by the reference C implementation (python argon2-cffi).
fn reference_argon2(pw: &str, m_kib: u32) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, argon2; print(argon2.PasswordHasher(time_cost=2, memory_cost=int(sys.argv[2]), parallelism=1).hash(sys.argv[1]))",
            pw,
            &m_kib.to_string(),
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "argon2-cffi (pip install -r tests/support/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn accounts_import_keeps_argon2id_hashes_takes_initial_passwords_and_issues_the_rest() {
    let gw = gateway("");
    const KEPT: &str = "the password from the old system";
    // A weaker hash than ours (m=8 MiB): it logs in, and is redone at our cost on login.
    let hash = reference_argon2(KEPT, 8192);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accounts.jsonl");
    let line = |v: serde_json::Value| v.to_string();
    let good = [
        line(
            serde_json::json!({"user_id": "kept", "email": "k@example.jp", "name": "保持 一郎", "password_hash": hash}),
        ),
        line(
            serde_json::json!({"user_id": "initial", "email": "i@example.jp", "name": "初期 二郎", "initial_password": "first-time-only-99"}),
        ),
        line(
            serde_json::json!({"user_id": "issued", "email": "s@example.jp", "name": "発行 三郎"}),
        ),
    ];
    // One bad line (a bcrypt hash) refuses the whole file: nothing is written.
    let bad = line(
        serde_json::json!({"user_id": "bcrypt", "email": "b@example.jp", "name": "x", "password_hash": "$2b$12$abcdefghijklmnopqrstuuxLrZ2Wk9ZFVf6b7X6VqnZ5P3p0yq6Oa"}),
    );
    std::fs::write(&file, format!("{}\n{bad}\n", good.join("\n"))).unwrap();
    let (ok, _, err) = cli(
        &gw,
        "accounts",
        &["import", file.to_str().unwrap(), "--by", "suzuki"],
    );
    assert!(!ok && err.contains("argon2id"), "{err}");
    assert!(
        cli_json(&gw, "accounts", &["list"]).is_empty(),
        "a refused file wrote accounts"
    );

    std::fs::write(&file, good.join("\n") + "\n").unwrap();
    let v = one(
        &gw,
        "accounts",
        &["import", file.to_str().unwrap(), "--by", "suzuki"],
    );
    assert_eq!(v["imported"], 3, "{v}");
    let issued = v["issued"][0]["initial_password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["issued"][0]["user_id"], "issued");
    // The kept hash is the person's current password: straight in, no change asked.
    let (s, h, _) = Browser::new(&gw).login("kept", KEPT);
    assert_eq!((s, header(&h, "location")), (303, Some("/")));
    // The given initial and the issued one-time password both lead to the change first.
    let (s, h, _) = Browser::new(&gw).login("initial", "first-time-only-99");
    assert_eq!((s, header(&h, "location")), (303, Some("/login/change")));
    let (s, h, _) = Browser::new(&gw).login("issued", &issued);
    assert_eq!((s, header(&h, "location")), (303, Some("/login/change")));
    // Again: existing ids are skipped.
    let v = one(
        &gw,
        "accounts",
        &["import", file.to_str().unwrap(), "--by", "suzuki"],
    );
    assert_eq!(v["imported"], 0);
    assert_eq!(v["skipped_existing"].as_array().unwrap().len(), 3);
    let audit = cli_json(&gw, "audit", &["tail", "-n", "40"]);
    let all = serde_json::to_string(&audit).unwrap() + &gw.log();
    assert!(
        !all.contains("first-time-only-99") && !all.contains(&issued) && !all.contains(KEPT),
        "a password reached the audit log or the log"
    );
    assert!(audit
        .iter()
        .any(|e| e["action"] == "account.import" && e["subject"] == "kept"));
}
