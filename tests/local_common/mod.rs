//! What the ID/password and console tests share: a gateway with `[admin]`, the 事務局's CLI,
//! a cookie-keeping browser (`Client`, answering `Page`s; `Browser`, the same over one gateway
//! answering tuples, which fills in the login forms as a browser without JavaScript does), and
//! an SMTP sink. tests/console_kit builds the console's operator set-up on it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "local-login-test-admin-token-0123456789abcdef";

/// The harness's gateway with `[admin]` (so the CLI reaches it while it runs) and `extra`
/// appended to the config.
pub fn gateway(extra: &str) -> Gateway {
    admin_gateway(ADMIN_TOKEN, |cfg| cfg, extra)
}

/// The harness's gateway, its config first changed by `edit`, then `[admin]` reading `token`
/// from a file and `extra` appended.
pub fn admin_gateway(token: &str, edit: impl FnOnce(String) -> String, extra: &str) -> Gateway {
    let mut gw = Gateway::start();
    let tok = gw.dir.path().join("admin.token");
    fs::write(&tok, format!("{token}\n")).unwrap();
    // Start-up refuses a token file others can read.
    fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = edit(fs::read_to_string(&gw.config).unwrap());
    let cfg = format!("{cfg}\n[admin]\ntoken_file = \"admin.token\"\n{extra}\n");
    fs::write(&gw.config, cfg).unwrap();
    gw.restart();
    gw
}

/// `samlgate GROUP --config CFG ARGS...` -> (success, stdout, stderr).
pub fn cli(gw: &Gateway, group: &str, args: &[&str]) -> (bool, String, String) {
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
pub fn cli_json(gw: &Gateway, group: &str, args: &[&str]) -> Vec<Value> {
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

pub fn one(gw: &Gateway, group: &str, args: &[&str]) -> Value {
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
pub fn add(gw: &Gateway, id: &str) -> String {
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

/// A browser: a cookie jar (path-blind; fine for one origin), no redirects followed.
pub struct Client {
    pub base: String,
    pub jar: BTreeMap<String, String>,
    pub agent: ureq::Agent,
}

/// One answer: status, headers (names in lower case, one pair per value) and body.
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
    pub fn hidden(&self, name: &str) -> String {
        hidden(&self.body, name)
    }
    pub fn into_parts(self) -> (u16, Vec<(String, String)>, String) {
        (self.status, self.headers, self.body)
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            jar: BTreeMap::new(),
            agent: ureq::AgentBuilder::new().redirects(0).build(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Takes the answer's cookies into the jar (an empty or Max-Age=0 one removes).
    pub fn keep(&mut self, r: &ureq::Response) {
        for c in r.all("set-cookie") {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.into(), v.into());
            }
        }
    }

    pub fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Cookie", &self.cookie_header());
        let res = match form {
            Some(f) => {
                let body: String = f
                    .iter()
                    .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                req.set("Content-Type", "application/x-www-form-urlencoded")
                    .send_string(&body)
            }
            None => req.call(),
        };
        let r = match res {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        self.keep(&r);
        let headers = r
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                r.all(&n)
                    .into_iter()
                    .map(move |v| (n.to_ascii_lowercase(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let status = r.status();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).unwrap();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form))
    }
}

/// A `Client` on one gateway whose answers are (status, headers, body) tuples.
pub struct Browser<'a> {
    pub gw: &'a Gateway,
    pub client: Client,
}

impl std::ops::Deref for Browser<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Browser<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl<'a> Browser<'a> {
    pub fn new(gw: &'a Gateway) -> Self {
        Browser {
            gw,
            client: Client::new(&gw.public_url()),
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> (u16, Vec<(String, String)>, String) {
        self.client.send(method, path, form).into_parts()
    }

    pub fn get(&mut self, path: &str) -> (u16, Vec<(String, String)>, String) {
        self.send("GET", path, None)
    }

    pub fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        self.send("POST", path, Some(form))
    }

    /// GET /login, then POST the ID/password form with its CSRF token.
    pub fn login(&mut self, id: &str, pw: &str) -> (u16, Vec<(String, String)>, String) {
        let (s, _, page) = self.get("/login");
        assert_eq!(s, 200);
        let csrf = hidden(&page, "csrf");
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("return_to", "/"),
                ("user_id", id),
                ("password", pw),
            ],
        )
    }

    pub fn verify(&mut self) -> (u16, Vec<(String, String)>, String) {
        self.get("/auth/verify")
    }
}

pub fn header<'h>(h: &'h [(String, String)], name: &str) -> Option<&'h str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn hidden(page: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = page
        .find(&pat)
        .unwrap_or_else(|| panic!("no hidden {name} in:\n{page}"))
        + pat.len();
    page[i..].split('"').next().unwrap().to_string()
}

/// pyotp's code for `secret` (base32) at now + `offset` seconds.
pub fn pyotp(secret: &str, offset: i64) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, time, pyotp; print(pyotp.TOTP(sys.argv[1]).at(time.time() + int(sys.argv[2])))",
            secret,
            &offset.to_string(),
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn between<'p>(page: &'p str, open: &str, close: &str) -> &'p str {
    let i = page
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in:\n{page}"))
        + open.len();
    &page[i..i + page[i..].find(close).unwrap()]
}

pub const NEW_PASSWORD: &str = "correct horse battery staple 2026";

/// Forced change: the form, a refused weak password (with the reason in both languages), then
/// a good one, which ends in a session.
pub fn change_password(b: &mut Browser, new: &str) -> (u16, Vec<(String, String)>, String) {
    let (s, _, page) = b.get("/login/change");
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("パスワード変更"), "{page}");
    let csrf = hidden(&page, "csrf");
    let (s, _, page) = b.post(
        "/login/change",
        &[
            ("csrf", &csrf),
            ("new_password", "password"),
            ("confirm", "password"),
        ],
    );
    assert_eq!(s, 422, "a blocklisted short password: {page}");
    assert!(page.contains("change-error"), "{page}");
    let csrf = hidden(&page, "csrf");
    // A step form without its CSRF token is refused and changes nothing.
    let (s, _, page) = b.post(
        "/login/change",
        &[("csrf", "forged"), ("new_password", new), ("confirm", new)],
    );
    assert_eq!(s, 403, "a forged CSRF token on the change form: {page}");
    b.post(
        "/login/change",
        &[("csrf", &csrf), ("new_password", new), ("confirm", new)],
    )
}

/// aiosmtpd on 127.0.0.1, killed on drop.
pub struct SmtpSink {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start(tls: &str, cert: Option<(&Path, &Path)>) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(Path::new(ROOT).join("tests/support/smtp_sink.py"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--port")
            .arg(port.to_string())
            .arg("--tls")
            .arg(tls)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((c, k)) = cert {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        let mut child = cmd.spawn().expect(
            "python smtp_sink.py (needs aiosmtpd: .venv/bin/pip install -r tests/support/requirements.txt)",
        );
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("ready"),
            "smtp_sink did not start: {line:?}"
        );
        SmtpSink { child, port, dir }
    }

    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits until `n` messages have arrived (mail goes out after the page is answered).
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > end {
                assert_eq!(m.len(), n, "messages delivered: {m:#?}");
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
