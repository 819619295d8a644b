//! The pages in a real browser: Debian's chromium driven by playwright-core (node), against
//! `samlgate demo` (the gateway and its development IdP on loopback). The flows and checks are
//! in tests/browser/pages.mjs; this file starts a fresh demo per test, installs the node
//! package when `tests/browser/node_modules` is missing (`npm ci`, from the lock file), runs
//! the script and asserts its exit code and the screenshots it leaves in target/screenshots/.
//!
//! Needs the Debian packages chromium and fonts-noto-cjk, and node + npm
//! (scripts/install-deps.sh). A missing one is a failure, not a skip.
//! Run: cargo test --test browser    (SAMLGATE_CHROMIUM=/path overrides /usr/bin/chromium)

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{free_port, BIN, ROOT};

const INSTALL_HINT: &str = "run scripts/install-deps.sh (browser tests need the Debian packages \
     chromium and fonts-noto-cjk, and node with npm)";

fn chromium() -> PathBuf {
    let p = std::env::var_os("SAMLGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(p.exists(), "{} not found: {INSTALL_HINT}", p.display());
    p
}

fn browser_dir() -> PathBuf {
    Path::new(ROOT).join("tests/browser")
}

fn screenshots_dir() -> PathBuf {
    Path::new(ROOT).join("target/screenshots")
}

/// node, npm, a Japanese font and chromium are there, and playwright-core is installed.
fn prerequisites() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    chromium();
    for tool in ["node", "npm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "`{tool} --version` failed: {INSTALL_HINT}");
    }
    let fonts = Command::new("fc-list")
        .arg(":lang=ja")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !fonts.trim().is_empty(),
        "no Japanese font (fc-list :lang=ja is empty): the screenshots would show boxes; \
         {INSTALL_HINT}"
    );
    let dir = browser_dir();
    let installed = |m: &str| dir.join(format!("node_modules/{m}/package.json")).exists();
    if !installed("playwright-core") || !installed("axe-core") {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("spawn npm ci");
        assert!(
            out.status.success(),
            "`npm ci` in {} failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    *done = true;
}

/// `samlgate demo` in a tempdir: the gateway on `port`, its IdP on `port + 1`. Killed on drop.
struct Demo {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::Builder::new()
            .prefix("samlgate-browser-")
            .tempdir()
            .expect("tempdir");
        // Two adjacent free ports; a few tries against a race with other tests.
        let port = (0..50)
            .map(|_| free_port())
            .find(|p| *p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok())
            .expect("two adjacent free ports");
        let log = fs::File::create(dir.path().join("demo.log")).expect("demo.log");
        let child = Command::new(BIN)
            .arg("demo")
            .arg("--dir")
            .arg(dir.path().join("demo"))
            .arg("--port")
            .arg(port.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn samlgate demo");
        let mut d = Demo {
            dir,
            port,
            child: Some(child),
        };
        d.wait_ready();
        d
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("demo.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("samlgate demo exited early ({st}):\n{}", self.log());
            }
            let gw = agent.get(&format!("{}/readyz", self.base())).call();
            let idp = agent
                .get(&format!("http://127.0.0.1:{}/", self.port + 1))
                .call();
            if matches!(gw, Ok(ref r) if r.status() == 200) && idp.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "samlgate demo not ready within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs pages.mjs with `--flow flow` against a fresh demo; panics with its output (and the
/// demo's log) unless it exits 0 within the time limit.
fn run_flow(flow: &str, out_dir: &Path) -> String {
    prerequisites();
    let demo = Demo::start();
    let mut child = Command::new("node")
        .arg(browser_dir().join("pages.mjs"))
        .args(["--base", &demo.base(), "--flow", flow, "--out"])
        .arg(out_dir)
        .args(["--samlgate", BIN, "--config"])
        .arg(demo.dir.path().join("demo/samlgate.toml"))
        .arg("--chromium")
        .arg(chromium())
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    // Drain the pipes on threads so a chatty script cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (to.join().unwrap(), te.join().unwrap());
    let tail = |s: &str| {
        let start = s.len().saturating_sub(4000);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s[start..].to_string()
    };
    match status {
        Some(st) if st.success() => {
            // Shown with --nocapture: what was checked, the lowest contrast per page.
            println!("{stdout}");
            stdout
        }
        other => panic!(
            "tests/browser/pages.mjs --flow {flow}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- demo log (tail) ---\n{}",
            match other {
                Some(st) => format!("exited with {st}"),
                None => "killed after 120 s".into(),
            },
            tail(&demo.log())
        ),
    }
}

fn assert_png(path: &Path) {
    let b = fs::read(path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    assert!(
        b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 10_000,
        "{} is not a plausible screenshot ({} bytes)",
        path.display(),
        b.len()
    );
}

/// Consent accept (ja, keyboard), reject (en), the flow with JavaScript off, a closed category;
/// accessibility facts on every page; screenshots kept in target/screenshots/.
#[test]
fn consent_pages_in_chromium() {
    let out = screenshots_dir();
    let shots = [
        "login-ja.png",
        "consent-ja.png",
        "consent-ja-mobile.png",
        "home-ja.png",
        "consent-en.png",
        "blocked-en.png",
        "home-nojs.png",
        "application-ja.png",
        "reject-confirm-en.png",
        "reject-confirm-en-phone.png",
        "consent-ja-axe-phone.png",
        "application-ja-axe-phone.png",
        "login-ja-phone.png",
    ];
    for s in shots {
        let _ = fs::remove_file(out.join(s));
    }
    let stdout = run_flow("main", &out);
    assert!(
        stdout.contains(" passed, 0 failed"),
        "pages.mjs did not report its checks:\n{stdout}"
    );
    for s in shots {
        assert_png(&out.join(s));
    }
}

/// The header's 日本語 | English links keep the page: on the login and consent pages, and on
/// the pages that answer a POST (the application-needed page, the blocked page after 同意しない).
#[test]
fn language_links_keep_the_page() {
    let out = std::env::temp_dir();
    let stdout = run_flow("lang-links", &out);
    assert!(
        stdout.contains(" passed, 0 failed"),
        "pages.mjs did not report its checks:\n{stdout}"
    );
}

/// A refused 保健所 user files an SSO application from the refusal page (a bad phone number
/// first: nothing filed); `samlgate applications approve` (through the running demo's admin
/// API); the next login reaches the consent page.
#[test]
fn refused_user_applies_and_is_approved() {
    let out = screenshots_dir();
    let shots = [
        "apply-form-ja.png",
        "apply-filed-ja.png",
        "apply-filed-ja-phone.png",
    ];
    for s in shots {
        let _ = fs::remove_file(out.join(s));
    }
    let stdout = run_flow("apply", &out);
    assert!(
        stdout.contains(" passed, 0 failed"),
        "pages.mjs did not report its checks:\n{stdout}"
    );
    for s in shots {
        assert_png(&out.join(s));
    }
}
