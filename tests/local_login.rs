//! Local 医療情報ネット ID/password accounts end to end (issue 13), against `samlgate serve`
//! and its CLI: the 事務局's `accounts` commands (through the running gateway's admin API on
//! sled, directly on PostgreSQL), audited without passwords.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const ADMIN_TOKEN: &str = "local-login-test-admin-token-0123456789abcdef";

/// The harness's gateway with `[admin]` (so the CLI reaches it while it runs) and `extra`
/// appended to the config.
fn gateway(extra: &str) -> Gateway {
    let mut gw = Gateway::start();
    fs::write(
        gw.dir.path().join("admin.token"),
        format!("{ADMIN_TOKEN}\n"),
    )
    .unwrap();
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let cfg = format!("{cfg}\n[admin]\ntoken_file = \"admin.token\"\n{extra}\n");
    fs::write(&gw.config, cfg).unwrap();
    gw.restart();
    gw
}

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

/// The JSON lines of a successful `samlgate GROUP ... --json`.
fn cli_json(gw: &Gateway, group: &str, args: &[&str]) -> Vec<Value> {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = cli(gw, group, &a);
    assert!(
        ok,
        "`samlgate {group} {}` failed:\n{out}\n{err}\nlog:\n{}",
        a.join(" "),
        gw.log_tail(40)
    );
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn one(gw: &Gateway, group: &str, args: &[&str]) -> Value {
    let v = cli_json(gw, group, args);
    assert_eq!(
        v.len(),
        1,
        "`{group} {}`: one object expected: {v:?}",
        args.join(" ")
    );
    v.into_iter().next().unwrap()
}

/// `accounts add` through the running gateway: the one-time password, once, as
/// `initial_password`.
fn add(gw: &Gateway, id: &str) -> String {
    let v = one(
        gw,
        "accounts",
        &[
            "add",
            id,
            "--email",
            "hanako@example.jp",
            "--name",
            "山田 花子",
            "--by",
            "suzuki",
        ],
    );
    let pw = v["initial_password"]
        .as_str()
        .expect("initial_password")
        .to_string();
    assert_eq!(pw.len(), 24, "{v}");
    pw
}

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
