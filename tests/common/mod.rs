//! Black-box harness for samlgate: one gateway process per test, driven over plain HTTP.
//!
//! Per [`Gateway`]: a tempdir with a fresh IdP key/cert and IdP metadata (made by the
//! independent test IdP `tests/support/saml_idp.py`, signxml on lxml), the gateway config,
//! `samlgate keys new`, then `samlgate serve` with `RUST_LOG=info` and stdout/stderr appended
//! to `<tempdir>/server.log`. Ready when `GET /readyz` answers 200. Killed on drop.
//!
//! Responses come from the python IdP (`.venv` made by `scripts/install-deps.sh`); a missing
//! venv is a hard failure, not a skip.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "../pgtest/mod.rs"]
pub mod pgtest;

/// The `[store]` line of a test gateway: sled in its directory, or with
/// `SAMLGATE_TEST_STORE=pg` a fresh migrated PostgreSQL database (the suites run on both).
fn store_line() -> String {
    match std::env::var("SAMLGATE_TEST_STORE").as_deref() {
        Ok("pg") => format!("url = \"{}\"", pgtest::fresh_db()),
        Ok("sled") | Err(_) => "path = \"store\"".into(),
        Ok(other) => panic!("SAMLGATE_TEST_STORE={other}: use sled or pg"),
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_samlgate");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const IDP_ENTITY: &str = "https://gmis-idp.test/idp";

// ------------------------------------------------------------------------------------------
// python test IdP

/// `.venv/bin/python` (override with SAMLGATE_TEST_PYTHON); panics with a hint when missing.
pub fn python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let py = std::env::var_os("SAMLGATE_TEST_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(ROOT).join(".venv/bin/python"));
            if !py.exists() {
                return Err(format!(
                    "python venv not found at {}: run scripts/install-deps.sh \
                     (it creates .venv from tests/support/requirements.txt)",
                    py.display()
                ));
            }
            let ok = Command::new(&py)
                .args(["-c", "import signxml, lxml, cryptography"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!(
                    "{} cannot import signxml/lxml/cryptography: run scripts/install-deps.sh",
                    py.display()
                ));
            }
            Ok(py)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn idp_script() -> PathBuf {
    Path::new(ROOT).join("tests/support/saml_idp.py")
}

/// Runs `saml_idp.py ARGS`; returns stdout, panics with stderr on failure.
pub fn run_idp<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<u8> {
    run_support("saml_idp.py", args)
}

/// Runs `tests/support/SCRIPT ARGS` with the venv python; returns stdout, panics with stderr
/// on failure.
pub fn run_support<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> Vec<u8> {
    let out = Command::new(python())
        .arg(Path::new(ROOT).join("tests/support").join(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn python test IdP");
    if !out.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        panic!(
            "{script} {:?} failed ({}):\n{}",
            shown,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

/// A signing key pair made by `saml_idp.py keygen`.
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub key: PathBuf,
    pub cert: PathBuf,
}

pub fn keygen(dir: &Path, cn: &str) -> KeyPair {
    run_idp(&[
        "keygen".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
        "--cn".as_ref(),
        cn.as_ref(),
    ]);
    KeyPair {
        key: dir.join("idp.key"),
        cert: dir.join("idp.crt"),
    }
}

// ------------------------------------------------------------------------------------------
// HTTP

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// header names lower-cased, in arrival order
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// `X-Samlgate-Reason`
    pub fn reason(&self) -> Option<&str> {
        self.header("x-samlgate-reason")
    }
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
    /// The whole `Set-Cookie: samlgate=...` line, if any.
    pub fn session_set_cookie(&self) -> Option<&str> {
        self.headers_all("set-cookie")
            .into_iter()
            .find(|c| c.trim_start().starts_with("samlgate="))
    }
    /// `samlgate=<token>` (ready for a Cookie header), if a non-empty session cookie was set.
    pub fn session_cookie(&self) -> Option<String> {
        let line = self.session_set_cookie()?;
        let pair = line.trim_start().split(';').next()?.trim();
        let val = pair.strip_prefix("samlgate=")?;
        if val.is_empty() {
            None
        } else {
            Some(pair.to_string())
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// One-line summary for failure messages.
    pub fn summary(&self) -> String {
        let mut body = self.text();
        if body.len() > 300 {
            let mut cut = 300;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        format!(
            "status={} reason={:?} location={:?} set-cookie={:?} body={:?}",
            self.status,
            self.reason(),
            self.location(),
            self.headers_all("set-cookie"),
            body
        )
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(30))
        .build()
}

fn from_ureq(r: ureq::Response) -> Resp {
    let status = r.status();
    let mut headers = Vec::new();
    for name in r.headers_names() {
        for v in r.all(&name) {
            headers.push((name.to_ascii_lowercase(), v.to_string()));
        }
    }
    let mut body = Vec::new();
    r.into_reader()
        .take(16 << 20)
        .read_to_end(&mut body)
        .expect("read response body");
    Resp {
        status,
        headers,
        body,
    }
}

fn call(req: ureq::Request, body: Option<&[u8]>) -> Result<Resp, String> {
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    match res {
        Ok(r) => Ok(from_ureq(r)),
        Err(ureq::Error::Status(_, r)) => Ok(from_ureq(r)),
        Err(e) => Err(e.to_string()),
    }
}

/// application/x-www-form-urlencoded value encoding.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-decoding (no `+` rule), for header values; None if not valid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Upper-case percent-encoding of every byte outside printable ASCII (what the gateway is
/// expected to put in non-ASCII headers).
pub fn percent_encode_non_ascii(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii() && !b.is_ascii_control() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut buf = 0u32;
    let mut bits = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        } as u32;
        buf = buf << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

// ------------------------------------------------------------------------------------------
// minimal JSON (the userinfo object) without depending on the crate's dependencies

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }
    pub fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(k),
            _ => None,
        }
    }
    pub fn str(&self, k: &str) -> Option<&str> {
        match self.get(k) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i).copied() {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value()?;
                    m.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let st = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[st..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {st}"))
            }
            None => Err("unexpected end".into()),
        }
    }
    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or("short \\u")?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())
    }
    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000
                                    + ((cp - 0xD800) << 10)
                                    + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            char::from_u32(cp).ok_or("bad code point")?
                        }
                        _ => return Err("bad escape".into()),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// the gateway under test

#[derive(Clone, Debug)]
pub struct Opts {
    /// signing keys listed in the IdP metadata (>= 1); key 0 is the default signer
    pub idp_keys: usize,
    pub max_body_bytes: Option<u64>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            idp_keys: 1,
            max_body_bytes: Some(262_144),
        }
    }
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    pub log_path: PathBuf,
    /// IdP signing keys in the metadata; `idp[0]` is used by `make_response`
    pub idp: Vec<KeyPair>,
    child: Option<Child>,
    agent: ureq::Agent,
}

/// A free loopback port below the kernel's ephemeral range (32768-60999 on Debian): a port
/// from bind(0) is ephemeral, so an outgoing connection of any other test could take it while
/// a gateway restarts on it ("Address already in use"). Never the same port twice per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20000 + (std::process::id() % 1000) as u16 * 12,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    // Ports are handed out in pairs and p + 1 is kept free too: some tests (the demo and its
    // IdP) listen on p and p + 1.
    loop {
        let p = NEXT.fetch_add(2, Ordering::SeqCst);
        let p = 20000 + (p - 20000) % 12000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("samlgate-it-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let mut idp = Vec::new();
        for i in 0..opts.idp_keys.max(1) {
            let kd = dir.path().join(format!("idp{i}"));
            idp.push(keygen(
                &kd,
                if i == 0 {
                    "gmis-idp.test"
                } else {
                    "gmis-idp-next.test"
                },
            ));
        }
        let md = dir.path().join("idp-metadata.xml");
        let mut args: Vec<std::ffi::OsString> = vec!["metadata".into()];
        for k in &idp {
            args.push("--cert".into());
            args.push(k.cert.clone().into_os_string());
        }
        args.extend([
            "--entity-id".into(),
            IDP_ENTITY.into(),
            "--out".into(),
            md.clone().into_os_string(),
        ]);
        run_idp(&args);

        let max_body = opts
            .max_body_bytes
            .map(|n| format!("max_body_bytes = {n}\n"))
            .unwrap_or_default();
        let store = store_line();
        let cfg = format!(
            r#"# written by tests/common/mod.rs
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
{max_body}
[sp]
entity_id = "http://127.0.0.1:{port}/saml/metadata"
keys_dir = "sp-keys"

[idp]
metadata = "idp-metadata.xml"
clock_skew_seconds = 60
allow_unsolicited = true

[store]
{store}

[attributes]
account_id = "gmisAccountId"
category = "accountCategory"
facility_code = "facilityCode"
facility_name = "facilityName"
display_name = "displayName"
email = "mail"
required = ["account_id", "category", "facility_code"]

[consent]
required = false
version = "2023-04"

[policy]
open_categories = ["病院", "診療所", "歯科診療所", "助産所", "薬局"]

[session]
idle_minutes = 30
absolute_hours = 8
"#
        );
        let config = dir.path().join("samlgate.toml");
        fs::write(&config, cfg).expect("write config");
        let log_path = dir.path().join("server.log");

        let out = Command::new(BIN)
            .args(["keys", "new", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("spawn samlgate keys new");
        if !out.status.success() {
            panic!(
                "`samlgate keys new --config {}` failed ({}):\nstdout: {}\nstderr: {}",
                config.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let mut gw = Gateway {
            dir,
            port,
            config,
            log_path,
            idp,
            child: None,
            agent: agent(),
        };
        gw.spawn();
        gw
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let log2 = log.try_clone().unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn samlgate serve");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let quick = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                panic!("samlgate serve exited early ({st}); log:\n{}", self.log());
            }
            if let Ok(r) = call(quick.get(&self.url("/readyz")), None) {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "samlgate not ready (GET /readyz != 200) within 20 s; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self, graceful: bool) {
        if let Some(mut c) = self.child.take() {
            if graceful {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if c.try_wait().ok().flatten().is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                eprintln!("samlgate did not exit within 10 s of SIGTERM; killing it");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful restart (SIGTERM, wait for exit, start again on the same config and store).
    pub fn restart(&mut self) {
        self.stop(true);
        self.spawn();
    }

    /// Crash restart (SIGKILL, start again on the same store).
    pub fn crash_restart(&mut self) {
        self.stop(false);
        self.spawn();
    }

    /// The running gateway's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGHUP to the running gateway: reload metadata and keys now.
    pub fn sighup(&self) {
        let pid = self.child.as_ref().expect("gateway running").id();
        let st = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(st.success(), "kill -HUP {pid} failed");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn acs_url(&self) -> String {
        self.url("/saml/acs")
    }
    pub fn sp_entity(&self) -> String {
        self.url("/saml/metadata")
    }

    /// Server stdout+stderr so far (all starts).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn must(&self, what: &str, r: Result<Resp, String>) -> Resp {
        r.unwrap_or_else(|e| {
            panic!(
                "{what}: transport error: {e}\nserver log:\n{}",
                self.log_tail(4000)
            )
        })
    }

    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log();
        if l.len() <= n {
            return l;
        }
        let mut s = l.len() - n;
        while !l.is_char_boundary(s) {
            s += 1;
        }
        l[s..].to_string()
    }

    /// `POST /saml/acs` with `SAMLResponse=<b64>[&RelayState=<relay>]`.
    pub fn post_acs(&self, b64: &str, relay_state: Option<&str>) -> Resp {
        let mut body = format!("SAMLResponse={}", form_encode(b64));
        if let Some(rs) = relay_state {
            body.push_str("&RelayState=");
            body.push_str(&form_encode(rs));
        }
        self.post_form(body.as_bytes())
    }

    /// `POST /saml/acs` from a browser that already holds `cookie` (`name=value`).
    pub fn post_acs_with_cookie(&self, b64: &str, cookie: &str) -> Resp {
        let body = format!("SAMLResponse={}", form_encode(b64));
        let req = self
            .agent
            .post(&self.acs_url())
            .set("Content-Type", "application/x-www-form-urlencoded")
            .set("Cookie", cookie);
        self.must("POST /saml/acs", call(req, Some(body.as_bytes())))
    }

    /// `POST /saml/acs` with an arbitrary url-encoded body.
    pub fn post_form(&self, body: &[u8]) -> Resp {
        let req = self
            .agent
            .post(&self.acs_url())
            .set("Content-Type", "application/x-www-form-urlencoded");
        self.must("POST /saml/acs", call(req, Some(body)))
    }

    /// `POST path` written on a raw socket while the response is read concurrently, so a
    /// server that answers (413) before reading a large body is still observed.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(head.as_bytes());
            let _ = w.write_all(&body);
            let _ = w.flush();
        });
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(r) = parse_complete_response(&raw) {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        let _ = writer.join();
                        return r;
                    }
                }
                Err(e) => {
                    if let Some(r) = parse_head_only(&raw) {
                        let _ = writer.join();
                        return r;
                    }
                    panic!(
                        "raw POST {path}: read error {e} after {} bytes; log:\n{}",
                        raw.len(),
                        self.log_tail(3000)
                    );
                }
            }
        }
        let _ = writer.join();
        parse_head_only(&raw)
            .unwrap_or_else(|| panic!("raw POST {path}: no HTTP response ({} bytes)", raw.len()))
    }

    pub fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut req = self.agent.get(&self.url(path));
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        self.must(&format!("GET {path}"), call(req, None))
    }

    /// `GET /auth/verify` with an optional `Cookie` header value (e.g. `samlgate=...`).
    pub fn verify(&self, cookie: Option<&str>) -> Resp {
        self.get("/auth/verify", cookie)
    }

    /// `/auth/verify` after a write made by another process (a CLI run). sled: that write
    /// went through this gateway's admin API, so the answer must already show it. PostgreSQL:
    /// the CLI wrote the database itself and the contract is "seen within a second" (the
    /// generation NOTIFY; docs/DESIGN.md), so this asks again until `want` or 1.5 s.
    pub fn verify_after_cli(&self, cookie: Option<&str>, want: u16) -> Resp {
        let on_pg = std::env::var("SAMLGATE_TEST_STORE").as_deref() == Ok("pg");
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        loop {
            let r = self.verify(cookie);
            if r.status == want || !on_pg || std::time::Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn userinfo(&self, cookie: Option<&str>) -> Resp {
        self.get("/auth/userinfo", cookie)
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics", None);
        assert_eq!(r.status, 200, "GET /metrics: {}", r.summary());
        r.text()
    }

    /// `samlgate_sessions_live` from `/metrics`.
    pub fn sessions_live(&self) -> f64 {
        let m = self.metrics();
        metric_value(&m, "samlgate_sessions_live")
            .unwrap_or_else(|| panic!("no samlgate_sessions_live in /metrics:\n{m}"))
    }

    /// Base64 SAMLResponse from the test IdP; defaults for this gateway (--sp-entity, --acs,
    /// --key/--cert of IdP key 0) come first so `args` can override them.
    pub fn make_response(&self, args: &[&str]) -> String {
        let out = run_idp(&self.response_args(args));
        String::from_utf8(out)
            .expect("utf-8 base64")
            .trim()
            .to_string()
    }

    /// Like `make_response` but the XML (`--xml`).
    pub fn make_response_xml(&self, args: &[&str]) -> Vec<u8> {
        let mut a = self.response_args(args);
        a.push("--xml".into());
        run_idp(&a)
    }

    /// Many responses at once (a few python processes in parallel), in order.
    pub fn make_responses(&self, cases: &[Vec<&str>]) -> Vec<String> {
        let width = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 6);
        let mut out = vec![String::new(); cases.len()];
        for (chunk_i, chunk) in cases.chunks(width).enumerate() {
            let res: Vec<String> = std::thread::scope(|s| {
                let hs: Vec<_> = chunk
                    .iter()
                    .map(|c| s.spawn(move || self.make_response(c)))
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("make_response thread"))
                    .collect()
            });
            for (j, r) in res.into_iter().enumerate() {
                out[chunk_i * width + j] = r;
            }
        }
        out
    }

    fn response_args(&self, args: &[&str]) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["response".into()];
        a.extend(self.idp_args());
        a.extend(args.iter().map(|s| std::ffi::OsString::from(*s)));
        a
    }

    /// `--sp-entity`, `--acs`, `--key`, `--cert` (IdP key 0) for this gateway, the options
    /// the python IdP scripts share.
    pub fn idp_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--sp-entity".into(),
            self.sp_entity().into(),
            "--acs".into(),
            self.acs_url().into(),
            "--key".into(),
            self.idp[0].key.clone().into_os_string(),
            "--cert".into(),
            self.idp[0].cert.clone().into_os_string(),
        ]
    }

    /// Asserts everything a refusal must satisfy; returns a list of violations (empty: ok).
    /// `sessions_before` is `sessions_live()` read before the POST.
    pub fn refusal_problems(
        &self,
        resp: &Resp,
        expected: &[&str],
        sessions_before: f64,
    ) -> Vec<String> {
        let mut p = Vec::new();
        if !(400..=499).contains(&resp.status) {
            p.push(format!("status {} is not 4xx", resp.status));
        }
        match resp.reason() {
            Some(r) if expected.contains(&r) => {}
            Some(r) => p.push(format!("X-Samlgate-Reason {r:?} not in {expected:?}")),
            None => p.push(format!(
                "no X-Samlgate-Reason header (expected one of {expected:?})"
            )),
        }
        if let Some(c) = resp.session_set_cookie() {
            p.push(format!("session cookie set: {c:?}"));
        }
        let after = self.sessions_live();
        if after != sessions_before {
            p.push(format!(
                "samlgate_sessions_live changed {sessions_before} -> {after}"
            ));
        }
        let h = self.get("/healthz", None);
        if h.status != 200 {
            p.push(format!("GET /healthz afterwards: {}", h.status));
        }
        if !p.is_empty() {
            p.push(format!("response: {}", resp.summary()));
        }
        p
    }

    /// Panicking form of `refusal_problems`.
    pub fn assert_refused(&self, case: &str, resp: &Resp, expected: &[&str], sessions_before: f64) {
        let p = self.refusal_problems(resp, expected, sessions_before);
        if !p.is_empty() {
            panic!(
                "{case}: refusal check failed:\n  {}\nserver log tail:\n{}",
                p.join("\n  "),
                self.log_tail(3000)
            );
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() || std::env::var_os("SAMLGATE_TEST_KEEP").is_some() {
            // keep the tempdir (config, log) for a post-mortem
            let p = self.dir.path().to_path_buf();
            let d = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let _ = d.keep();
            eprintln!(
                "samlgate test dir kept: {} (server.log inside)",
                p.display()
            );
        }
    }
}

/// Value of an unlabelled sample `name <value>` (or the sum over its labelled samples).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            continue;
        }
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let rest = if rest.starts_with('{') {
            match rest.find('}') {
                Some(i) => &rest[i + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') || rest.starts_with('\t') {
            rest
        } else {
            continue;
        };
        let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

/// (status, headers, body offset) of a raw HTTP response.
type Head = (u16, Vec<(String, String)>, usize);

fn split_head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers, end + 4))
}

fn parse_complete_response(raw: &[u8]) -> Option<Resp> {
    let (status, headers, off) = split_head(raw)?;
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")?
        .1
        .parse()
        .ok()?;
    if raw.len() >= off + len {
        Some(Resp {
            status,
            headers,
            body: raw[off..off + len].to_vec(),
        })
    } else {
        None
    }
}

fn parse_head_only(raw: &[u8]) -> Option<Resp> {
    let (status, headers, off) = split_head(raw)?;
    Some(Resp {
        status,
        headers,
        body: raw[off..].to_vec(),
    })
}

/// Collects failures of many cases in one test function and panics once, listing all.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn new() -> Self {
        Failures(Vec::new())
    }
    pub fn add(&mut self, case: &str, problems: Vec<String>) {
        if !problems.is_empty() {
            self.0
                .push(format!("[{case}]\n    {}", problems.join("\n    ")));
        }
    }
    pub fn check(&mut self, case: &str, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("[{case}]\n    {}", msg()));
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn finish(self, gw: &Gateway) {
        if !self.0.is_empty() {
            panic!(
                "{} case(s) failed:\n{}\n--- server log tail ---\n{}",
                self.0.len(),
                self.0.join("\n"),
                gw.log_tail(4000)
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// login outcomes (shared by the ACS suites)

/// Checks of a successful login; returns the `samlgate=<token>` cookie pair.
pub fn accepted(_gw: &Gateway, case: &str, r: &Resp, f: &mut Failures) -> Option<String> {
    let mut p = Vec::new();
    if r.status != 303 {
        p.push(format!("status {} != 303", r.status));
    }
    let line = r.session_set_cookie().map(str::to_string);
    match &line {
        None => p.push("no `Set-Cookie: samlgate=...`".into()),
        Some(l) => {
            let attrs: Vec<String> = l
                .split(';')
                .skip(1)
                .map(|a| a.trim().to_ascii_lowercase())
                .collect();
            if !attrs.iter().any(|a| a == "httponly") {
                p.push(format!("cookie without HttpOnly: {l}"));
            }
            if !attrs.iter().any(|a| a == "samesite=lax") {
                p.push(format!("cookie without SameSite=Lax: {l}"));
            }
            if !attrs.iter().any(|a| a == "path=/") {
                p.push(format!("cookie without Path=/: {l}"));
            }
            if attrs.iter().any(|a| a == "secure") {
                p.push(format!("cookie has Secure on a plain-http public_url: {l}"));
            }
        }
    }
    if r.reason().is_some() {
        p.push(format!("X-Samlgate-Reason on success: {:?}", r.reason()));
    }
    if !p.is_empty() {
        p.push(format!("response: {}", r.summary()));
    }
    let ok = p.is_empty();
    f.add(case, p);
    if ok {
        r.session_cookie()
    } else {
        None
    }
}

pub fn userinfo_json(gw: &Gateway, cookie: &str) -> Result<Json, String> {
    let r = gw.userinfo(Some(cookie));
    if r.status != 200 {
        return Err(format!("GET /auth/userinfo: {}", r.summary()));
    }
    Json::parse(&r.text()).map_err(|e| format!("userinfo not JSON ({e}): {}", r.text()))
}

/// Posts each (case, base64, expected reasons) and checks the refusal contract.
pub fn expect_refusals(gw: &Gateway, cases: &[(&str, String, &[&str])], f: &mut Failures) {
    for (name, b64, expected) in cases {
        let before = gw.sessions_live();
        let r = gw.post_acs(b64, Some("/staff/menu"));
        eprintln!("case {name:?}: status {} reason {:?}", r.status, r.reason());
        f.add(name, gw.refusal_problems(&r, expected, before));
    }
}

/// Posts `b64`; a login must be exactly `want_user` (userinfo `user` and X-Auth-Request-User),
/// otherwise the response must be a proper refusal (any reason code).
pub fn accepted_as_or_refused(
    gw: &Gateway,
    name: &str,
    b64: &str,
    want_user: &str,
    f: &mut Failures,
) {
    let before = gw.sessions_live();
    let r = gw.post_acs(b64, None);
    eprintln!("case {name:?}: status {} reason {:?}", r.status, r.reason());
    if r.status == 303 || r.session_set_cookie().is_some() {
        let Some(cookie) = accepted(gw, name, &r, f) else {
            return;
        };
        match userinfo_json(gw, &cookie) {
            Err(e) => f.check(name, false, || e),
            Ok(j) => f.check(name, j.str("user") == Some(want_user), || {
                format!(
                    "accepted as user {:?}; only {want_user:?} (the signed value) is acceptable",
                    j.get("user")
                )
            }),
        }
        let v = gw.verify(Some(&cookie));
        f.check(
            name,
            v.headers_all("x-auth-request-user") == vec![want_user],
            || {
                format!(
                    "X-Auth-Request-User {:?}; only {want_user:?} is acceptable",
                    v.headers_all("x-auth-request-user")
                )
            },
        );
    } else {
        let reason = r.reason().unwrap_or("").to_string();
        let expected: Vec<&str> = if reason.is_empty() {
            vec!["<any>"]
        } else {
            vec![reason.as_str()]
        };
        f.add(name, gw.refusal_problems(&r, &expected, before));
    }
}
