//! The ID/password login pages in a real browser (Debian's chromium, playwright-core): the
//! 表示 checkbox reveals and hides the password (and is absent without JavaScript), the forced
//! password change and the TOTP enrolment with its QR code, keyboard only, Japanese and
//! English. The flow is tests/browser/local.mjs; screenshots go to target/screenshots/local/.
//! Needs chromium, node and npm (scripts/install-deps.sh); missing ones fail, never skip.

mod common;
mod local_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Gateway, BIN, ROOT};

/// tests/browser with its npm packages (playwright-core, axe-core) installed.
fn browser_dir() -> PathBuf {
    let dir = Path::new(ROOT).join("tests/browser");
    let have = |p: &str| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    };
    if !have("playwright-core") || !have("axe-core") {
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
    dir
}

#[test]
fn login_pages_in_chromium() {
    let dir = browser_dir();
    let mut gw = Gateway::start();
    let cfg = fs::read_to_string(&gw.config).unwrap();
    fs::write(
        &gw.config,
        format!("{cfg}\n[local]\nsecond_factor = \"required\"\n"),
    )
    .unwrap();
    gw.stop(true);
    let out = Command::new(BIN)
        .args(["accounts", "--config"])
        .arg(&gw.config)
        .args([
            "add",
            "keiko",
            "--email",
            "keiko@example.jp",
            "--name",
            "佐藤 恵子",
            "--by",
            "test",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pw = v["initial_password"].as_str().unwrap().to_string();
    gw.restart();

    let shots = Path::new(ROOT).join("target/screenshots/local");
    let _ = fs::remove_dir_all(&shots);
    let chromium =
        std::env::var("SAMLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = Command::new("node")
        .arg(dir.join("local.mjs"))
        .args(["--base", &gw.public_url(), "--out"])
        .arg(&shots)
        .args([
            "--user",
            "keiko",
            "--password",
            &pw,
            "--chromium",
            &chromium,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "tests/browser/local.mjs failed:\n{}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.log_tail(30)
    );
    for f in [
        "login-ja.png",
        "login-ja-revealed.png",
        "change-ja.png",
        "enrol-ja.png",
        "login-nojs.png",
        "login-en.png",
    ] {
        let len = fs::metadata(shots.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "screenshot {f} missing or empty ({len} bytes)");
    }
}

/// 「パスワードを忘れた方はこちら」 in chromium: the forgot form, the same answer for every id,
/// the link from a mail delivered to a real SMTP server on loopback, Continue, the change
/// after a reset, a used link; axe-core at desktop and phone width on each page. The flow is
/// tests/browser/reset.mjs; screenshots go to target/screenshots/reset/.
#[test]
fn forgot_and_reset_pages_in_chromium() {
    let dir = browser_dir();
    let smtp = local_common::SmtpSink::start("none", None);
    let gw = local_common::gateway(&format!(
        "[mail]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"noreply@iryou.example.jp\"\n",
        smtp.port
    ));
    local_common::add(&gw, "keiko");

    let shots = Path::new(ROOT).join("target/screenshots/reset");
    let _ = fs::remove_dir_all(&shots);
    let chromium =
        std::env::var("SAMLGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = Command::new("node")
        .arg(dir.join("reset.mjs"))
        .args(["--base", &gw.public_url(), "--out"])
        .arg(&shots)
        .args(["--user", "keiko", "--chromium", &chromium, "--maildir"])
        .arg(smtp.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "tests/browser/reset.mjs failed:\n{}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.log_tail(30)
    );
    for f in [
        "forgot-ja",
        "forgot-sent-ja",
        "reset-ja",
        "change-reset-ja",
        "reset-invalid-ja",
        "totp-setup-ja",
        "forgot-en",
        "forgot-sent-en",
    ] {
        for w in ["", "-phone"] {
            let p = shots.join(format!("{f}{w}.png"));
            let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(
                len > 5_000,
                "screenshot {} missing or empty ({len} bytes)",
                p.display()
            );
        }
    }
}
