//! An IdP outage does not strand users (issue 15 item 3): `[idp] status_url` probed against a
//! real HTTP server on 127.0.0.1 (tests/support/metadata_server.py --plain; its `status` file
//! sets the answer, killing it takes it away); `/saml/login` shows the "G-MIS is unavailable"
//! page instead of a redirect while the probe finds G-MIS down, and redirects again when it is
//! back. `samlgate notice set/clear/show` (through the running gateway's admin API) on the
//! login pages, audited. The pages in chromium with axe-core (tests/browser/idp_down.mjs).

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NOTICE: &str = "G-MISは現在メンテナンス中です（12月5日 2:00〜6:00）";

struct StatusServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl StatusServer {
    fn start() -> StatusServer {
        let mut s = StatusServer {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new(python())
            .arg(Path::new(ROOT).join("tests/support/metadata_server.py"))
            .args(["serve", "--plain", "--dir"])
            .arg(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn status server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn answer(&self, code: u16) {
        std::fs::write(self.dir.path().join("status"), code.to_string()).unwrap();
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn gateway(status: &StatusServer) -> Gateway {
    let mut gw = Gateway::start();
    gw.stop(true);
    let cfg = std::fs::read_to_string(&gw.config).unwrap().replacen(
        "[idp]\n",
        &format!(
            "[idp]\nstatus_url = \"http://127.0.0.1:{}/status\"\nstatus_cache_seconds = 5\nstatus_timeout_seconds = 1\n",
            status.port
        ),
        1,
    ) + "\n[admin]\ntoken_file = \"admin.token\"\n";
    std::fs::write(&gw.config, cfg).unwrap();
    let tok = gw.dir.path().join("admin.token");
    std::fs::write(&tok, "idp-outage-test-token-0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    gw.restart();
    gw
}

/// Polls `/saml/login` until its status is `want` (the probe runs every 5 s).
fn wait_login_status(gw: &Gateway, want: u16) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = gw.get("/saml/login?return_to=%2Fmenu%2F", None);
        if r.status == want {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "/saml/login stayed {} (want {want}); log:\n{}",
            r.summary(),
            gw.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn samlgate(gw: &Gateway, args: &[&str]) -> std::process::Output {
    let o = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .expect("spawn samlgate");
    assert!(
        o.status.success(),
        "samlgate {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn outage_page_while_the_idp_is_down_and_the_notice() {
    let mut status = StatusServer::start();
    let gw = gateway(&status);

    // Up: the normal redirect to the IdP.
    let r = wait_login_status(&gw, 302);
    assert!(r.location().is_some(), "{}", r.summary());

    // G-MIS answers 503: the outage page, with the way forward.
    status.answer(503);
    let r = wait_login_status(&gw, 503);
    assert_eq!(r.reason(), Some("idp_unavailable"), "{}", r.summary());
    assert!(r.header("retry-after").is_some());
    let body = r.text();
    for want in [
        "G-MISは現在ご利用いただけません",
        "/login?return_to=%2Fmenu%2F",
        "G-MIS事務局",
        "(idp_unavailable)",
    ] {
        assert!(body.contains(want), "outage page lacks {want}:\n{body}");
    }
    assert!(r.session_set_cookie().is_none() && r.location().is_none());
    assert_eq!(metric_value(&gw.metrics(), "samlgate_idp_up"), Some(0.0));
    let log = gw.log();
    assert!(log.contains("G-MIS looks down"), "{log}");

    // Not answering at all is down too; the English page.
    status.stop();
    std::thread::sleep(Duration::from_secs(6));
    let r = gw.get("/saml/login?lang=en", None);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert!(
        r.text().contains("G-MIS is currently unavailable"),
        "{}",
        r.text()
    );

    // The operator's notice: on the login page and on the outage page of every instance.
    samlgate(&gw, &["notice", "set", NOTICE, "--by", "ops-tanaka"]);
    wait_for("the notice on /login", || {
        gw.get("/login", None).text().contains(NOTICE)
    });
    assert!(gw.get("/saml/login", None).text().contains(NOTICE));
    let shown = samlgate(&gw, &["notice", "show"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains(NOTICE));
    samlgate(&gw, &["notice", "clear", "--by", "ops-tanaka"]);
    wait_for("the notice gone", || {
        !gw.get("/login", None).text().contains(NOTICE)
    });
    let audit = samlgate(&gw, &["audit", "tail", "--json"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("notice.set") && audit.contains("notice.clear"),
        "{audit}"
    );

    // Back: logins start again.
    status.answer(200);
    status.spawn();
    wait_login_status(&gw, 302);
    assert_eq!(metric_value(&gw.metrics(), "samlgate_idp_up"), Some(1.0));
}

/// The outage page and the login page with a notice in chromium: axe-core clean at desktop and
/// phone width, screenshots in target/screenshots/ (idp-down-*.png, login-notice-ja*.png).
#[test]
fn outage_page_in_chromium() {
    let mut status = StatusServer::start();
    status.answer(503);
    let gw = gateway(&status);
    wait_login_status(&gw, 503);
    status.stop();
    samlgate(&gw, &["notice", "set", NOTICE, "--by", "ops-tanaka"]);
    wait_for("the notice on /login", || {
        gw.get("/login", None).text().contains(NOTICE)
    });
    let out = Path::new(ROOT).join("target/screenshots");
    let o = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/idp_down.mjs"))
        .args(["--base", &gw.public_url(), "--notice", NOTICE, "--out"])
        .arg(&out)
        .current_dir(Path::new(ROOT).join("tests/browser"))
        .output()
        .expect("node (scripts/install-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains(" passed, 0 failed"),
        "idp_down.mjs: {}\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{stdout}");
    for f in [
        "idp-down-ja.png",
        "idp-down-en-phone.png",
        "login-notice-ja.png",
    ] {
        let b = std::fs::read(out.join(f)).unwrap();
        assert!(b.starts_with(b"\x89PNG") && b.len() > 10_000, "{f}");
    }
}
