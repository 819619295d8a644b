//! The 事務局 console in a real browser (Debian's chromium, playwright-core) with axe-core on
//! every page at desktop and phone width: tests/browser/console.mjs. The data is made here as
//! in tests/console.rs (a 保健所 user's application from the refusal page, a hospital user's
//! confirmed 同意しない, a staff account, a secretariat operator with TOTP from python pyotp).
//! Screenshots: target/screenshots/console/. Needs chromium, node and npm
//! (scripts/install-deps.sh); missing ones fail, never skip.

mod common;
mod console_kit;
mod local_common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use console_kit::*;

/// A hospital user (open category) who says 同意しない and confirms it.
fn refuses_consent(gw: &Gateway) {
    let rs = gw.make_responses(&[vec![
        "--nameid",
        "GM7000002",
        "--attr",
        "accountCategory=病院",
        "--attr",
        "displayName=病院 花子",
        "--attr",
        "mail=hanako@hosp.example.jp",
        "--attr",
        "facilityName=中央総合病院",
        "--attr",
        "facilityCode=1320000002",
    ]]);
    let r = gw.post_acs(&rs[0], Some("/menu"));
    assert_eq!(r.location(), Some("/consent"), "{}", r.summary());
    let pending = r
        .headers_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("samlgate-consent="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = hidden(&gw.get("/consent", Some(&pending)).text(), "csrf");
    let r = ureq::post(&gw.url("/consent"))
        .set("Cookie", &pending)
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&format!(
            "csrf={}&decision=reject_confirmed",
            form_encode(&csrf)
        ));
    assert!(
        matches!(r, Err(ureq::Error::Status(403, _))),
        "the confirmed reject"
    );
}

#[test]
fn console_pages_in_chromium_with_axe() {
    let dir = Path::new(ROOT).join("tests/browser");
    let installed = |m: &str| dir.join(format!("node_modules/{m}/package.json")).exists();
    if !installed("playwright-core") || !installed("axe-core") {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "npm ci in tests/browser failed: run scripts/install-deps.sh"
        );
    }
    let gw = gateway("");
    let rs = hc_responses(&gw, 1);
    apply_from_refusal(&gw, &rs[0]);
    refuses_consent(&gw);
    add_account(&gw, "staff1", "staff");
    let secret = operator(&gw, "suzuki");

    let shots = Path::new(ROOT).join("target/screenshots/console");
    let _ = fs::remove_dir_all(&shots);
    let chromium =
        std::env::var("SAMLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = Command::new("node")
        .arg(dir.join("console.mjs"))
        .args(["--base", &gw.public_url(), "--out"])
        .arg(&shots)
        .args(["--user", "suzuki", "--password", NEW_PASSWORD])
        .args(["--code", &pyotp(&secret, 30), "--chromium", &chromium])
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "tests/browser/console.mjs failed:\n{}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.log_tail(30)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    for f in [
        "login",
        "totp",
        "home",
        "search",
        "account",
        "done",
        "support",
        "404",
        "account-en",
    ] {
        for suffix in ["", "-phone"] {
            let name = format!("console-{f}{suffix}.png");
            let len = fs::metadata(shots.join(&name))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(
                len > 5_000,
                "screenshot {name} missing or empty ({len} bytes)"
            );
        }
    }
}
