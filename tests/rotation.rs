//! End-to-end tests of certificate rotation (issue 4) against a real `samlgate serve`:
//!
//! 1. `encrypted_assertions_through_acs`: EncryptedAssertions made by an independent
//!    implementation (`tests/support/saml_encrypt.py`, python `cryptography`; one case with the
//!    xmlsec1 CLI) to the SP certificate taken from `GET /saml/metadata`, for every data
//!    algorithm x key transport, with the Assertion signed before encryption or the Response
//!    signed after it (signxml, `tests/support/rotation_tool.py`); the refusals
//!    (`encrypted_unsupported`, `decrypt_failed`, `signature_invalid`, `encryption_required`).
//! 2. `sp_key_rollover_under_login_traffic`: `keys new -> promote -> retire -> remove` while a
//!    thread posts distinct valid responses encrypted to the old and the new key; no failed
//!    login, metadata and audit log follow the sequence.
//! 3. `idp_key_rollover_and_corrupt_metadata`: IdP metadata A -> A+B -> B (atomic renames,
//!    file check and SIGHUP); broken metadata files are refused and the old set keeps serving.
//! 4. `corrupt_sp_key_set_keeps_serving`: broken key files / keyset.json are refused, logins and
//!    metadata unchanged; a keyset.json naming key files that arrive later is picked up by the
//!    file check once they are there (the runbook's "fix the file and it reloads within 10 s").
//! 5. `tls_cert_swap_seen_by_clients`: `[server] tls`; the served certificate changes for new
//!    connections, no connection refused, an open connection keeps working, a mismatched pair
//!    is refused.
//!
//! Each test starts its own gateway (own config: TLS, `require_encryption`), so it has its own
//! small harness here (`Gw`); `tests/common` provides the python IdP, keygen and helpers. Every
//! batch of responses is made by one `rotation_tool.py gen` process. Server logs and tempdirs
//! are kept when a test fails (or with SAMLGATE_TEST_KEEP=1).

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{
    base64_decode, form_encode, free_port, keygen, metric_value, python, run_idp, Json, KeyPair,
    Resp, BIN, IDP_ENTITY, ROOT,
};
use serde_json::{json, Value};

// ------------------------------------------------------------------------------------------
// HTTP/1.1 over plain TCP or TLS (openssl, no verification: the tests look at the fingerprint)

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connector() -> &'static openssl::ssl::SslConnector {
    static C: OnceLock<openssl::ssl::SslConnector> = OnceLock::new();
    C.get_or_init(|| {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .expect("ssl connector");
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        b.build()
    })
}

fn sha256_hex(der: &[u8]) -> String {
    openssl::sha::sha256(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens a connection; with TLS also the served leaf certificate's SHA-256 (lower-case hex).
fn open(port: u16, tls: bool) -> Result<(Box<dyn Stream>, Option<String>), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(30))).ok();
    tcp.set_nodelay(true).ok();
    if !tls {
        return Ok((Box::new(tcp), None));
    }
    let cfg = connector()
        .configure()
        .map_err(|e| e.to_string())?
        .use_server_name_indication(false)
        .verify_hostname(false);
    let s = cfg
        .connect("127.0.0.1", tcp)
        .map_err(|e| format!("TLS handshake with 127.0.0.1:{port}: {e}"))?;
    let fp = s
        .ssl()
        .peer_certificate()
        .and_then(|c| c.to_der().ok())
        .map(|d| sha256_hex(&d));
    if fp.is_none() {
        return Err("TLS: no peer certificate".into());
    }
    Ok((Box::new(s), fp))
}

/// A complete response in `raw`, if there is one (`eof`: the peer closed).
fn parse_response(raw: &[u8], eof: bool) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let off = end + 4;
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = find("content-length") {
        let len: usize = len.parse().ok()?;
        if raw.len() < off + len {
            return None;
        }
        raw[off..off + len].to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut body = Vec::new();
        let mut i = off;
        loop {
            let le = raw[i..].windows(2).position(|w| w == b"\r\n")? + i;
            let size_txt = String::from_utf8_lossy(&raw[i..le]);
            let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
            i = le + 2;
            if size == 0 {
                break;
            }
            if raw.len() < i + size + 2 {
                return None;
            }
            body.extend_from_slice(&raw[i..i + size]);
            i += size + 2;
        }
        body
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if eof {
        raw[off..].to_vec()
    } else {
        return None;
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Writes one request and reads one response (the connection may stay open).
fn exchange(s: &mut dyn Stream, req: &[u8]) -> Result<Resp, String> {
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("flush: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(r) = parse_response(&raw, false) {
            return Ok(r);
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => return Err(format!("read: {e}")),
            Err(_) => break,
        }
    }
    parse_response(&raw, true)
        .ok_or_else(|| format!("no complete HTTP response ({} bytes)", raw.len()))
}

fn request_bytes(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: {}\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        r.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

// ------------------------------------------------------------------------------------------
// small helpers

/// A log line without terminal colour sequences (the text log format has them).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hex_colon_upper(der: &[u8]) -> String {
    openssl::sha::sha256(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn pem_der(pem_path: &Path) -> Vec<u8> {
    let pem = fs::read(pem_path).unwrap_or_else(|e| panic!("read {}: {e}", pem_path.display()));
    openssl::x509::X509::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{} is not a PEM certificate: {e}", pem_path.display()))
        .to_der()
        .unwrap()
}

fn pem_from_b64(b64: &str) -> String {
    let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in clean.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// Replaces `path` the way the runbook says: a temporary file in the same directory, then a
/// rename over the old one.
fn replace_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.rotation-tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    // Service-only, as an operator must install keys: a reload refuses a key others can read.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename over {}: {e}", path.display()));
}

/// `(KeyName, base64 certificate)` of each `<md:KeyDescriptor use="USE">` in SP metadata.
fn key_descriptors(md: &str, use_: &str) -> Vec<(String, String)> {
    let open_tag = format!("KeyDescriptor use=\"{use_}\"");
    let mut out = Vec::new();
    let mut rest = md;
    while let Some(i) = rest.find(&open_tag) {
        let after = &rest[i..];
        let end = after.find("KeyDescriptor>").unwrap_or(after.len());
        let kd = &after[..end];
        let text_of = |tag: &str| -> String {
            let t = format!("{tag}>");
            kd.find(&t)
                .map(|j| {
                    let v = &kd[j + t.len()..];
                    v[..v.find("</").unwrap_or(v.len())].trim().to_string()
                })
                .unwrap_or_default()
        };
        out.push((text_of("KeyName"), text_of("X509Certificate")));
        rest = &after[end.min(after.len())..];
        if end == after.len() {
            break;
        }
    }
    out
}

/// EncryptionMethod Algorithms listed in the `use="encryption"` KeyDescriptors.
fn encryption_methods(md: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in md.split("EncryptionMethod Algorithm=\"").skip(1) {
        if let Some(e) = part.find('"') {
            out.insert(part[..e].to_string());
        }
    }
    out
}

/// Label sets of `samlgate_cert_expiry_seconds` samples of one kind: (labels, value).
fn cert_gauges(metrics: &str, kind: &str) -> Vec<(String, f64)> {
    let prefix = format!("samlgate_cert_expiry_seconds{{kind=\"{kind}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let close = l.find('}')?;
            let v: f64 = l[close + 1..].trim().parse().ok()?;
            Some((l[..close + 1].to_string(), v))
        })
        .collect()
}

fn label(sample: &str, name: &str) -> Option<String> {
    let k = format!("{name}=\"");
    let i = sample.find(&k)? + k.len();
    let e = sample[i..].find('"')? + i;
    Some(sample[i..e].to_string())
}

/// Polls `f` every `every` until it gives `Some`, or panics after `limit` with `what`.
fn wait_for<T>(
    gw: &Gw,
    limit: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, t0.elapsed());
        }
        if t0.elapsed() > limit {
            panic!(
                "timed out after {:?} waiting for: {what}\nserver log tail:\n{}",
                limit,
                gw.log_tail(4000)
            );
        }
        std::thread::sleep(every);
    }
}

#[derive(Default)]
struct Fails(Vec<String>);

impl Fails {
    fn add(&mut self, case: &str, problems: Vec<String>) {
        if !problems.is_empty() {
            self.0
                .push(format!("[{case}]\n    {}", problems.join("\n    ")));
        }
    }
    fn check(&mut self, case: &str, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("[{case}]\n    {}", msg()));
        }
    }
    fn finish(self, gw: &Gw) {
        if !self.0.is_empty() {
            panic!(
                "{} case(s) failed:\n{}\n--- server log tail ---\n{}",
                self.0.len(),
                self.0.join("\n"),
                gw.log_tail(5000)
            );
        }
    }
}

const DATA: [&str; 6] = [
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "aes128-gcm",
    "aes192-gcm",
    "aes256-gcm",
];
const KEY_TRANSPORT: [&str; 2] = ["rsa-oaep-mgf1p", "xmlenc11-rsa-oaep-sha256"];

/// How the IdP protects an encrypted assertion.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Prot {
    /// (a) the Assertion is signed, then encrypted; the Response is not signed.
    SignedAssertion,
    /// (b) the Assertion is not signed; the Response is signed after encryption, over the
    /// EncryptedAssertion.
    SignedResponse,
    /// both: a signed Assertion, encrypted, inside a Response signed after encryption
    Both,
}

// ------------------------------------------------------------------------------------------
// the gateway under test

#[derive(Clone)]
struct Opts {
    /// IdP signing keys made (idp[0] is the default signer)
    idp_keys: usize,
    /// which of them the IdP metadata file lists at start
    metadata_keys: Vec<usize>,
    require_encryption: bool,
    tls: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            idp_keys: 2,
            metadata_keys: vec![0],
            require_encryption: false,
            tls: false,
        }
    }
}

struct Gw {
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    config: PathBuf,
    log_path: PathBuf,
    keys_dir: PathBuf,
    idp_md: PathBuf,
    idp: Vec<KeyPair>,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    pid: u32,
    child: Mutex<Option<Child>>,
    gen_n: AtomicUsize,
}

/// `openssl req -x509` self-signed certificate for 127.0.0.1: `DIR/NAME.crt`, `DIR/NAME.key`.
fn tls_pair(dir: &Path, name: &str, ec: bool, days: u32) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes", "-sha256", "-newkey"]);
    if ec {
        cmd.args(["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    } else {
        cmd.arg("rsa:2048");
    }
    cmd.arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args([
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/CN=127.0.0.1 {name}"),
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .stdin(Stdio::null());
    let out = cmd.output().expect("spawn openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // samlgate refuses to start with a private key others can read.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    (crt, key)
}

impl Gw {
    fn start(opts: Opts) -> Gw {
        let dir = tempfile::Builder::new()
            .prefix("samlgate-rot-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let mut idp = Vec::new();
        for i in 0..opts.idp_keys.max(1) {
            idp.push(keygen(
                &dir.path().join(format!("idp{i}")),
                &format!("gmis-idp-{i}.test"),
            ));
        }
        let scheme = if opts.tls { "https" } else { "http" };
        let tls_dir = dir.path().join("tls");
        let (tls_cert, tls_key) = (tls_dir.join("tls.crt"), tls_dir.join("tls.key"));
        let tls_line = if opts.tls {
            let (c, k) = tls_pair(&tls_dir, "initial", false, 30);
            fs::copy(&c, &tls_cert).unwrap();
            fs::copy(&k, &tls_key).unwrap();
            "tls = { cert = \"tls/tls.crt\", key = \"tls/tls.key\" }\n"
        } else {
            ""
        };
        let cfg = format!(
            r#"# written by tests/rotation.rs
[server]
listen = "127.0.0.1:{port}"
public_url = "{scheme}://127.0.0.1:{port}"
{tls_line}
[sp]
entity_id = "{scheme}://127.0.0.1:{port}/saml/metadata"
keys_dir = "sp-keys"
require_encryption = {req}
retired_grace_hours = 24

[idp]
metadata = "idp/idp-metadata.xml"
clock_skew_seconds = 60
allow_unsolicited = true

[store]
path = "store"

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
"#,
            req = opts.require_encryption
        );
        let config = dir.path().join("samlgate.toml");
        fs::write(&config, cfg).unwrap();
        fs::create_dir_all(dir.path().join("idp")).unwrap();
        let mut gw = Gw {
            port,
            tls: opts.tls,
            config,
            log_path: dir.path().join("server.log"),
            keys_dir: dir.path().join("sp-keys"),
            idp_md: dir.path().join("idp/idp-metadata.xml"),
            idp,
            tls_cert,
            tls_key,
            pid: 0,
            child: Mutex::new(None),
            gen_n: AtomicUsize::new(0),
            dir,
        };
        let md = gw.idp_metadata_bytes(&opts.metadata_keys);
        fs::write(&gw.idp_md, md).unwrap();
        gw.keys(&["new"]);
        gw.spawn();
        gw
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn samlgate serve");
        self.pid = child.id();
        *self.child.lock().unwrap() = Some(child);
        let t0 = Instant::now();
        loop {
            if let Some(st) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                panic!("samlgate serve exited early ({st}); log:\n{}", self.log());
            }
            if matches!(self.try_req("GET", "/readyz", None, None), Ok(r) if r.status == 200) {
                return;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                panic!("samlgate not ready within 30 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn base(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.tls { "https" } else { "http" },
            self.port
        )
    }
    fn sp_entity(&self) -> String {
        format!("{}/saml/metadata", self.base())
    }
    fn acs(&self) -> String {
        format!("{}/saml/acs", self.base())
    }
    fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-samlgate"
        } else {
            "samlgate"
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
    fn log_tail(&self, n: usize) -> String {
        let l = self.log();
        let mut s = l.len().saturating_sub(n);
        while !l.is_char_boundary(s) {
            s += 1;
        }
        l[s..].to_string()
    }
    /// Log lines containing every needle.
    fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }
    fn count_log(&self, needles: &[&str]) -> usize {
        self.log_lines(needles).len()
    }

    fn sighup(&self) {
        let st = Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(st.success(), "kill -HUP {} failed", self.pid);
    }

    fn try_req(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let (mut s, _) = open(self.port, self.tls)?;
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = cookie {
            h.push(("Cookie", c));
        }
        if form.is_some() {
            h.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        exchange(
            &mut *s,
            &request_bytes(self.port, method, path, &h, form, false),
        )
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.try_req("GET", path, cookie, None).unwrap_or_else(|e| {
            panic!("GET {path}: {e}\nserver log tail:\n{}", self.log_tail(3000))
        })
    }

    fn try_post_acs(&self, b64: &str) -> Result<Resp, String> {
        let body = format!("SAMLResponse={}", form_encode(b64));
        self.try_req("POST", "/saml/acs", None, Some(body.as_bytes()))
    }

    fn post_acs(&self, b64: &str) -> Resp {
        self.try_post_acs(b64).unwrap_or_else(|e| {
            panic!(
                "POST /saml/acs: {e}\nserver log tail:\n{}",
                self.log_tail(3000)
            )
        })
    }

    fn metrics(&self) -> String {
        let r = self.get("/metrics", None);
        assert_eq!(r.status, 200, "GET /metrics: {}", r.summary());
        r.text()
    }
    fn sessions_live(&self) -> f64 {
        let m = self.metrics();
        metric_value(&m, "samlgate_sessions_live")
            .unwrap_or_else(|| panic!("no samlgate_sessions_live in /metrics:\n{m}"))
    }
    fn sp_metadata(&self) -> String {
        let r = self.get("/saml/metadata", None);
        assert_eq!(r.status, 200, "GET /saml/metadata: {}", r.summary());
        r.text()
    }

    /// `samlgate keys ARGS --config CFG`; stdout, panics on failure.
    fn keys(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .arg("keys")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("spawn samlgate keys");
        if !out.status.success() {
            panic!(
                "`samlgate keys {args:?}` failed ({}):\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (id, state) from `samlgate keys list --json`.
    fn key_list(&self) -> Vec<(String, String)> {
        self.keys(&["list", "--json"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let j = Json::parse(l).unwrap_or_else(|e| panic!("keys list --json: {e}: {l}"));
                (
                    j.str("id").unwrap_or_default().to_string(),
                    j.str("state").unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn active_key(&self) -> String {
        let act: Vec<String> = self
            .key_list()
            .into_iter()
            .filter(|(_, s)| s == "active")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(act.len(), 1, "exactly one active key: {act:?}");
        act[0].clone()
    }

    fn idp_metadata_bytes(&self, which: &[usize]) -> Vec<u8> {
        let mut args: Vec<std::ffi::OsString> = vec!["metadata".into()];
        for &i in which {
            args.push("--cert".into());
            args.push(self.idp[i].cert.clone().into_os_string());
        }
        args.extend([
            "--entity-id".into(),
            IDP_ENTITY.into(),
            "--out".into(),
            "-".into(),
        ]);
        run_idp(&args)
    }

    /// Writes a PEM certificate (from metadata base64) into the test dir.
    fn write_pem(&self, name: &str, b64: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, pem_from_b64(b64)).unwrap();
        p
    }

    /// One `rotation_tool.py gen` job: a response for this gateway signed by `idp[signer]`.
    fn job(
        &self,
        nameid: &str,
        signer: usize,
        sign: &str,
        encrypt: Option<Vec<String>>,
        sign_after: bool,
    ) -> Value {
        let k = &self.idp[signer];
        let mut j = json!({
            "response": [
                "--sp-entity", self.sp_entity(), "--acs", self.acs(),
                "--key", k.key.to_string_lossy(), "--cert", k.cert.to_string_lossy(),
                "--sign", sign, "--nameid", nameid,
            ],
            "encrypt": encrypt,
        });
        if sign_after {
            j["sign_response_after"] =
                json!({"key": k.key.to_string_lossy(), "cert": k.cert.to_string_lossy()});
        }
        j
    }

    /// An encrypted response to `cert` protected as `prot`.
    fn enc_job(&self, nameid: &str, signer: usize, prot: Prot, enc: Vec<String>) -> Value {
        match prot {
            Prot::SignedAssertion => self.job(nameid, signer, "assertion", Some(enc), false),
            Prot::SignedResponse => self.job(nameid, signer, "none", Some(enc), true),
            Prot::Both => self.job(nameid, signer, "assertion", Some(enc), true),
        }
    }

    /// Runs one python process for all jobs; base64 SAMLResponses in order.
    fn gen(&self, jobs: &[Value]) -> Vec<String> {
        let n = self.gen_n.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("jobs-{n}.json"));
        fs::write(&path, serde_json::to_vec_pretty(&jobs).unwrap()).unwrap();
        let out = Command::new(python())
            .arg(Path::new(ROOT).join("tests/support/rotation_tool.py"))
            .arg("gen")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("spawn rotation_tool.py");
        assert!(
            out.status.success(),
            "rotation_tool.py gen {} failed ({}):\n{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            v.len(),
            jobs.len(),
            "rotation_tool.py: one response per job"
        );
        v
    }

    /// The session cookie pair `NAME=value` set by `resp`, if any.
    fn session_cookie(&self, resp: &Resp) -> Option<String> {
        let prefix = format!("{}=", self.cookie_name());
        resp.headers_all("set-cookie")
            .into_iter()
            .map(str::trim_start)
            .find(|c| c.starts_with(&prefix))
            .and_then(|c| {
                let pair = c.split(';').next()?.trim();
                (pair.len() > prefix.len()).then(|| pair.to_string())
            })
    }

    /// A successful login: 303, a session cookie, and `/auth/verify` with it gives `nameid`.
    fn login_problems(&self, resp: &Resp, nameid: &str) -> Vec<String> {
        let mut p = Vec::new();
        if resp.status != 303 {
            p.push(format!("status {} (want 303)", resp.status));
        }
        match self.session_cookie(resp) {
            None => p.push(format!("no {} cookie", self.cookie_name())),
            Some(c) => match self.try_req("GET", "/auth/verify", Some(&c), None) {
                Ok(v) if v.status == 200 => {
                    let user = v.header("x-auth-request-user").unwrap_or_default();
                    if user != nameid {
                        p.push(format!("/auth/verify user {user:?}, want {nameid:?}"));
                    }
                }
                Ok(v) => p.push(format!("/auth/verify with the cookie: {}", v.status)),
                Err(e) => p.push(format!("/auth/verify: {e}")),
            },
        }
        if !p.is_empty() {
            p.push(format!("response: {}", resp.summary()));
        }
        p
    }

    /// A refusal: 4xx, the expected reason, no session cookie, no new session.
    fn refusal_problems(&self, resp: &Resp, expected: &str, sessions_before: f64) -> Vec<String> {
        let mut p = Vec::new();
        if !(400..=499).contains(&resp.status) {
            p.push(format!("status {} is not 4xx", resp.status));
        }
        if resp.reason() != Some(expected) {
            p.push(format!(
                "X-Samlgate-Reason {:?}, want {expected:?}",
                resp.reason()
            ));
        }
        let any_cookie = resp
            .headers_all("set-cookie")
            .into_iter()
            .find(|c| c.contains("samlgate=") && !c.contains("samlgate=;"));
        if let Some(c) = any_cookie {
            p.push(format!("a session cookie was set: {c:?}"));
        }
        let after = self.sessions_live();
        if after != sessions_before {
            p.push(format!(
                "samlgate_sessions_live changed {sessions_before} -> {after}"
            ));
        }
        if !p.is_empty() {
            p.push(format!("response: {}", resp.summary()));
        }
        p
    }

    /// Posts and checks a refusal; returns problems.
    fn expect_refused(&self, b64: &str, reason: &str) -> Vec<String> {
        let before = self.sessions_live();
        let r = self.post_acs(b64);
        self.refusal_problems(&r, reason, before)
    }

    fn expect_login(&self, b64: &str, nameid: &str) -> Vec<String> {
        let r = self.post_acs(b64);
        self.login_problems(&r, nameid)
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() || std::env::var_os("SAMLGATE_TEST_KEEP").is_some() {
            let p = self.dir.path().to_path_buf();
            let d = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let _ = d.keep();
            eprintln!(
                "rotation test dir kept: {} (server.log inside)",
                p.display()
            );
        }
    }
}

fn enc_args(certs: &[&Path], data: &str, kt: &str, extra: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for c in certs {
        v.push("--cert".to_string());
        v.push(c.to_string_lossy().into_owned());
    }
    v.extend(
        ["--data", data, "--key-transport", kt]
            .iter()
            .map(|s| s.to_string()),
    );
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

// ------------------------------------------------------------------------------------------
// 1. encrypted assertions through the real ACS

#[test]
fn encrypted_assertions_through_acs() {
    let t_start = Instant::now();
    let gw = Gw::start(Opts::default());
    let mut f = Fails::default();

    // The SP certificate as an IdP gets it: from the published metadata.
    let md = gw.sp_metadata();
    let enc = key_descriptors(&md, "encryption");
    let sig = key_descriptors(&md, "signing");
    let active = gw.active_key();
    assert_eq!(enc.len(), 1, "one use=\"encryption\" KeyDescriptor:\n{md}");
    assert_eq!(sig, enc, "use=\"signing\" lists the same key:\n{md}");
    assert_eq!(enc[0].0, active, "KeyName is the active key id");
    let der = base64_decode(&enc[0].1).expect("metadata certificate base64");
    let key_crt = gw.keys_dir.join(format!("{active}.crt"));
    assert_eq!(
        der,
        pem_der(&key_crt),
        "metadata publishes the active key's certificate"
    );
    let methods = encryption_methods(&md);
    let want_methods = [
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        "http://www.w3.org/2009/xmlenc11#aes128-gcm",
        "http://www.w3.org/2009/xmlenc11#aes192-gcm",
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        "http://www.w3.org/2009/xmlenc11#rsa-oaep",
    ];
    for m in want_methods {
        f.check("metadata EncryptionMethod", methods.contains(m), || {
            format!("{m} not listed; listed: {methods:?}")
        });
    }
    f.check(
        "metadata EncryptionMethod",
        !methods.iter().any(|m| m.contains("rsa-1_5")),
        || format!("rsa-1_5 listed: {methods:?}"),
    );

    let sp_pem = gw.write_pem("sp-from-metadata.crt", &enc[0].1);
    let sp = sp_pem.as_path();
    // a certificate that is not in the SP key set (any RSA certificate will do)
    let unknown = gw.idp[1].cert.clone();

    // ---- accepted: data algorithm x key transport, alternating protection and layout
    let hints = ["cert", "issuer-serial", "ski", "keyname", "none"];
    let decls = ["local", "root", "ancestor", "default-ns"];
    let mut ok_cases: Vec<(String, String, Value)> = Vec::new(); // (case, nameid, job)
    let mut i = 0;
    for data in DATA {
        for kt in KEY_TRANSPORT {
            let prot = if i % 2 == 0 {
                Prot::SignedAssertion
            } else {
                Prot::SignedResponse
            };
            let hint = hints[i % hints.len()];
            let decl = decls[i % decls.len()];
            let placement = if i % 3 == 2 { "sibling" } else { "keyinfo" };
            let mut extra = vec!["--hint", hint, "--ds-decl", decl, "--placement", placement];
            if hint == "keyname" {
                extra.extend(["--key-name", active.as_str()]);
            }
            let nameid = format!("GMENC{i:04}");
            let case = format!("{data} + {kt}, {prot:?}, hint {hint}, ds {decl}, {placement}");
            let job = gw.enc_job(&nameid, 0, prot, enc_args(&[sp], data, kt, &extra));
            ok_cases.push((case, nameid, job));
            i += 1;
        }
    }
    let extra_ok: Vec<(&str, Prot, Vec<String>)> = vec![
        (
            "signed Assertion inside a Response signed after encryption",
            Prot::Both,
            enc_args(&[sp], "aes256-gcm", "xmlenc11-rsa-oaep-sha256", &[]),
        ),
        (
            "two EncryptedKeys (an unknown certificate first, then the SP's)",
            Prot::SignedResponse,
            enc_args(&[&unknown, sp], "aes128-gcm", "rsa-oaep-mgf1p", &[]),
        ),
        (
            "xmlsec1 CLI encryption (aes256-cbc, rsa-oaep-mgf1p), signed Assertion",
            Prot::SignedAssertion,
            enc_args(
                &[sp],
                "aes256-cbc",
                "rsa-oaep-mgf1p",
                &["--engine", "xmlsec1"],
            ),
        ),
        (
            "xmlsec1 CLI encryption (aes128-cbc, rsa-oaep-mgf1p), Response signed after",
            Prot::SignedResponse,
            enc_args(
                &[sp],
                "aes128-cbc",
                "rsa-oaep-mgf1p",
                &["--engine", "xmlsec1"],
            ),
        ),
    ];
    for (case, prot, args) in extra_ok {
        let nameid = format!("GMENC{i:04}");
        ok_cases.push((
            case.to_string(),
            nameid.clone(),
            gw.enc_job(&nameid, 0, prot, args),
        ));
        i += 1;
    }

    // ---- refused
    let mut bad: Vec<(String, &str, Value)> = Vec::new(); // (case, reason, job)
    let rsa15 = |data: &str| enc_args(&[sp], data, "rsa-1_5", &[]);
    bad.push((
        "rsa-1_5 key transport, signed Assertion".into(),
        "encrypted_unsupported",
        gw.enc_job("GMBAD001", 0, Prot::SignedAssertion, rsa15("aes128-cbc")),
    ));
    bad.push((
        "rsa-1_5 key transport, Response signed after encryption".into(),
        "encrypted_unsupported",
        gw.enc_job("GMBAD002", 0, Prot::SignedResponse, rsa15("aes256-gcm")),
    ));
    bad.push((
        "encrypted to a key not in the set (hint: its certificate)".into(),
        "decrypt_failed",
        gw.enc_job(
            "GMBAD003",
            0,
            Prot::SignedAssertion,
            enc_args(&[&unknown], "aes128-cbc", "rsa-oaep-mgf1p", &[]),
        ),
    ));
    bad.push((
        "encrypted to a key not in the set (no hint)".into(),
        "decrypt_failed",
        gw.enc_job(
            "GMBAD004",
            0,
            Prot::SignedAssertion,
            enc_args(
                &[&unknown],
                "aes256-gcm",
                "xmlenc11-rsa-oaep-sha256",
                &["--hint", "none"],
            ),
        ),
    ));
    bad.push((
        "encrypted to a key not in the set, Response signed after encryption".into(),
        "decrypt_failed",
        gw.enc_job(
            "GMBAD005",
            0,
            Prot::SignedResponse,
            enc_args(&[&unknown], "aes128-gcm", "rsa-oaep-mgf1p", &[]),
        ),
    ));
    let unsigned_idx = bad.len();
    bad.push((
        "plaintext Assertion unsigned, Response unsigned".into(),
        "signature_invalid",
        gw.job(
            "GMBAD006",
            0,
            "none",
            Some(enc_args(&[sp], "aes256-cbc", "rsa-oaep-mgf1p", &[])),
            false,
        ),
    ));
    bad.push((
        "Assertion signed by a key not in the IdP metadata, then encrypted".into(),
        "signature_invalid",
        gw.enc_job(
            "GMBAD007",
            1,
            Prot::SignedAssertion,
            enc_args(&[sp], "aes128-cbc", "rsa-oaep-mgf1p", &[]),
        ),
    ));
    bad.push((
        "Response signed after encryption by a key not in the IdP metadata".into(),
        "signature_invalid",
        gw.enc_job(
            "GMBAD008",
            1,
            Prot::SignedResponse,
            enc_args(&[sp], "aes128-gcm", "xmlenc11-rsa-oaep-sha256", &[]),
        ),
    ));
    // A genuinely signed Response whose EncryptedAssertion is swapped for another one (with an
    // unsigned assertion inside): the Response signature no longer holds, and the assertion has
    // none of its own.
    let mut swapped = gw.enc_job(
        "GMBAD009",
        0,
        Prot::SignedResponse,
        enc_args(&[sp], "aes256-cbc", "rsa-oaep-mgf1p", &[]),
    );
    // job indexes in the batch: ok cases first, then the refusals
    swapped["substitute_encrypted_from"] = json!(ok_cases.len() + unsigned_idx);
    bad.push((
        "signed Response with its EncryptedAssertion swapped for another".into(),
        "signature_invalid",
        swapped,
    ));

    let mut jobs: Vec<Value> = ok_cases.iter().map(|c| c.2.clone()).collect();
    jobs.extend(bad.iter().map(|c| c.2.clone()));
    let t_gen = Instant::now();
    let responses = gw.gen(&jobs);
    eprintln!(
        "encrypted_assertions: {} responses made in {:?}",
        jobs.len(),
        t_gen.elapsed()
    );

    for (k, (case, nameid, _)) in ok_cases.iter().enumerate() {
        let r = gw.post_acs(&responses[k]);
        eprintln!("case ok  {case}: {} {:?}", r.status, r.reason());
        f.add(case, gw.login_problems(&r, nameid));
    }
    for (k, (case, reason, _)) in bad.iter().enumerate() {
        let b64 = &responses[ok_cases.len() + k];
        let before = gw.sessions_live();
        let r = gw.post_acs(b64);
        eprintln!("case bad {case}: {} {:?}", r.status, r.reason());
        f.add(case, gw.refusal_problems(&r, reason, before));
    }
    f.finish(&gw);
    drop(gw);

    // ---- [sp] require_encryption = true
    let gw = Gw::start(Opts {
        require_encryption: true,
        ..Opts::default()
    });
    let mut f = Fails::default();
    let md = gw.sp_metadata();
    let enc = key_descriptors(&md, "encryption");
    assert_eq!(enc.len(), 1, "{md}");
    let sp_pem = gw.write_pem("sp-from-metadata.crt", &enc[0].1);
    let jobs = vec![
        gw.job("GMREQ001", 0, "both", None, false),
        gw.job("GMREQ002", 0, "assertion", None, false),
        gw.job("GMREQ003", 0, "response", None, false),
        gw.enc_job(
            "GMREQ004",
            0,
            Prot::SignedAssertion,
            enc_args(&[&sp_pem], "aes128-gcm", "rsa-oaep-mgf1p", &[]),
        ),
        gw.enc_job(
            "GMREQ005",
            0,
            Prot::SignedResponse,
            enc_args(&[&sp_pem], "aes256-cbc", "xmlenc11-rsa-oaep-sha256", &[]),
        ),
    ];
    let rs = gw.gen(&jobs);
    for (k, what) in [
        "Response+Assertion signed",
        "Assertion signed",
        "Response signed",
    ]
    .iter()
    .enumerate()
    {
        f.add(
            &format!("require_encryption: plain assertion, {what}"),
            gw.expect_refused(&rs[k], "encryption_required"),
        );
    }
    f.add(
        "require_encryption: encrypted, signed Assertion",
        gw.expect_login(&rs[3], "GMREQ004"),
    );
    f.add(
        "require_encryption: encrypted, Response signed after",
        gw.expect_login(&rs[4], "GMREQ005"),
    );
    f.finish(&gw);
    eprintln!("encrypted_assertions_through_acs: {:?}", t_start.elapsed());
}

// ------------------------------------------------------------------------------------------
// 2. SP key rollover under continuous login traffic

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Old,
    New,
}

struct Sent {
    kind: Kind,
    phase: usize,
    nameid: String,
    problems: Vec<String>,
}

struct Traffic {
    pools: [Mutex<VecDeque<(String, String)>>; 2],
    allow: [AtomicBool; 2],
    stop: AtomicBool,
    phase: AtomicUsize,
    iterations: AtomicUsize,
    sent: Mutex<Vec<Sent>>,
    starved: [AtomicUsize; 2],
}

impl Traffic {
    fn idx(k: Kind) -> usize {
        match k {
            Kind::Old => 0,
            Kind::New => 1,
        }
    }
    fn count(&self, phase: usize, k: Kind) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.phase == phase && s.kind == k)
            .count()
    }
    /// Waits until the loop has finished at least `n` more iterations.
    fn wait_iterations(&self, n: usize) {
        let start = self.iterations.load(Ordering::SeqCst);
        let t0 = Instant::now();
        while self.iterations.load(Ordering::SeqCst) < start + n {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "traffic loop stalled"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn traffic_loop(gw: &Gw, t: &Traffic) {
    let mut turn = 0usize;
    while !t.stop.load(Ordering::SeqCst) {
        let phase = t.phase.load(Ordering::SeqCst);
        let order = if turn.is_multiple_of(2) {
            [Kind::Old, Kind::New]
        } else {
            [Kind::New, Kind::Old]
        };
        turn += 1;
        let mut item = None;
        for k in order {
            let i = Traffic::idx(k);
            if !t.allow[i].load(Ordering::SeqCst) {
                continue;
            }
            match t.pools[i].lock().unwrap().pop_front() {
                Some(x) => {
                    item = Some((k, x));
                    break;
                }
                None => {
                    t.starved[i].fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if let Some((kind, (nameid, b64))) = item {
            let problems = match gw.try_post_acs(&b64) {
                Ok(r) => gw.login_problems(&r, &nameid),
                Err(e) => vec![format!("transport: {e}")],
            };
            t.sent.lock().unwrap().push(Sent {
                kind,
                phase,
                nameid,
                problems,
            });
        }
        t.iterations.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (phase, encryption key names, signing key names) seen in /saml/metadata
type Observed = (usize, BTreeSet<String>, BTreeSet<String>);

fn published(gw: &Gw) -> (BTreeSet<String>, BTreeSet<String>) {
    let md = gw.sp_metadata();
    let e = key_descriptors(&md, "encryption")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let s = key_descriptors(&md, "signing")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    (e, s)
}

/// Which SP key signed the AuthnRequest of `GET /saml/login` (HTTP-Redirect binding: the
/// signature over `SAMLRequest=..&RelayState=..&SigAlg=..` as sent), among the key set's
/// certificates on disk; `None` if unsigned or signed by none of them.
fn authn_request_signer(gw: &Gw, key_ids: &[&str]) -> Option<String> {
    let r = gw.get("/saml/login?return_to=/", None);
    let loc = r
        .location()
        .unwrap_or_else(|| panic!("GET /saml/login: no Location: {}", r.summary()))
        .to_string();
    let query = &loc[loc.find('?')? + 1..];
    let (signed, sig) = query.split_once("&Signature=")?;
    let sig = base64_decode(&common::percent_decode(sig)?)?;
    for id in key_ids {
        let Ok(pem) = fs::read(gw.keys_dir.join(format!("{id}.crt"))) else {
            continue;
        };
        let pk = openssl::x509::X509::from_pem(&pem)
            .ok()?
            .public_key()
            .ok()?;
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pk).ok()?;
        v.update(signed.as_bytes()).ok()?;
        if v.verify(&sig).unwrap_or(false) {
            return Some(id.to_string());
        }
    }
    None
}

fn sp_states(gw: &Gw) -> Vec<(String, String)> {
    cert_gauges(&gw.metrics(), "sp")
        .into_iter()
        .map(|(l, _)| {
            (
                label(&l, "key").unwrap_or_default(),
                label(&l, "state").unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn sp_key_rollover_under_login_traffic() {
    const N_OLD: usize = 320;
    const N_NEW: usize = 260;
    const MIN_PER_PHASE: usize = 8;
    let t_start = Instant::now();
    let reload_limit = Duration::from_secs(15);
    let poll = Duration::from_millis(250);

    let gw = Gw::start(Opts::default());
    let old = gw.active_key();
    let md = gw.sp_metadata();
    let enc = key_descriptors(&md, "encryption");
    assert_eq!(enc.len(), 1, "{md}");
    assert_eq!(enc[0].0, old);
    let old_pem = gw.write_pem("old-from-metadata.crt", &enc[0].1);

    // Responses encrypted to OLD (made now, one python process); the last two are kept back
    // for after the removal.
    let variant = |i: usize| {
        let prot = if i.is_multiple_of(2) {
            Prot::SignedAssertion
        } else {
            Prot::SignedResponse
        };
        (prot, DATA[i % 6], KEY_TRANSPORT[(i / 6) % 2])
    };
    let t_gen = Instant::now();
    let old_jobs: Vec<Value> = (0..N_OLD + 2)
        .map(|i| {
            let (prot, d, kt) = variant(i);
            gw.enc_job(
                &format!("GMOLD{i:05}"),
                0,
                prot,
                enc_args(&[&old_pem], d, kt, &[]),
            )
        })
        .collect();
    let mut old_rs = gw.gen(&old_jobs);
    let after_remove: Vec<(String, String)> = (N_OLD..N_OLD + 2)
        .map(|i| (format!("GMOLD{i:05}"), old_rs[i].clone()))
        .collect();
    old_rs.truncate(N_OLD);
    eprintln!(
        "rollover: {} OLD responses made in {:?}",
        N_OLD + 2,
        t_gen.elapsed()
    );

    let traffic = Traffic {
        pools: [
            Mutex::new(
                old_rs
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| (format!("GMOLD{i:05}"), b))
                    .collect(),
            ),
            Mutex::new(VecDeque::new()),
        ],
        allow: [AtomicBool::new(true), AtomicBool::new(false)],
        stop: AtomicBool::new(false),
        phase: AtomicUsize::new(0),
        iterations: AtomicUsize::new(0),
        sent: Mutex::new(Vec::new()),
        starved: [AtomicUsize::new(0), AtomicUsize::new(0)],
    };
    // (phase, encryption key names, signing key names) seen in /saml/metadata
    let observed: Mutex<Vec<Observed>> = Mutex::new(Vec::new());
    let observe = |phase: usize| {
        let (e, s) = published(&gw);
        observed.lock().unwrap().push((phase, e.clone(), s));
        e
    };
    let wait_counts = |phase: usize, old_min: usize, new_min: usize| {
        wait_for(
            &gw,
            Duration::from_secs(60),
            Duration::from_millis(100),
            &format!("phase {phase}: {old_min} OLD and {new_min} NEW logins"),
            || {
                observe(phase);
                (traffic.count(phase, Kind::Old) >= old_min
                    && traffic.count(phase, Kind::New) >= new_min)
                    .then_some(())
            },
        );
    };
    let mut timings: Vec<(String, Duration)> = Vec::new();
    let mut new_id = String::new();

    std::thread::scope(|s| {
        let h = s.spawn(|| traffic_loop(&gw, &traffic));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // phase 0: only OLD exists
            wait_counts(0, MIN_PER_PHASE, 0);

            // keys new -> NEW is `next`: published and decrypting
            let out = gw.keys(&["new"]);
            let ids: Vec<(String, String)> = gw.key_list();
            let next: Vec<&(String, String)> = ids.iter().filter(|(_, st)| st == "next").collect();
            assert_eq!(
                next.len(),
                1,
                "one next key after `keys new`: {ids:?}\n{out}"
            );
            new_id = next[0].0.clone();
            let want_both: BTreeSet<String> = [old.clone(), new_id.clone()].into();
            let (_, took) = wait_for(
                &gw,
                Duration::from_secs(30),
                poll,
                "metadata lists OLD and NEW",
                || (observe(0) == want_both).then_some(()),
            );
            timings.push(("keys new -> metadata lists 2 keys".into(), took));
            assert!(
                took <= reload_limit,
                "reload after `keys new` took {took:?} (> 15 s)"
            );
            traffic.phase.store(1, Ordering::SeqCst);

            // the IdP takes NEW's certificate from the metadata and starts encrypting to it
            let md = gw.sp_metadata();
            let new_b64 = key_descriptors(&md, "encryption")
                .into_iter()
                .find(|(n, _)| *n == new_id)
                .map(|(_, c)| c)
                .expect("NEW in metadata");
            let new_pem = gw.write_pem("new-from-metadata.crt", &new_b64);
            assert_eq!(
                base64_decode(&new_b64).unwrap(),
                pem_der(&gw.keys_dir.join(format!("{new_id}.crt"))),
                "metadata publishes NEW's certificate"
            );
            let t_gen = Instant::now();
            let new_jobs: Vec<Value> = (0..N_NEW)
                .map(|i| {
                    let (prot, d, kt) = variant(i + 1);
                    gw.enc_job(
                        &format!("GMNEW{i:05}"),
                        0,
                        prot,
                        enc_args(&[&new_pem], d, kt, &[]),
                    )
                })
                .collect();
            let new_rs = gw.gen(&new_jobs);
            eprintln!(
                "rollover: {N_NEW} NEW responses made in {:?} (while OLD traffic ran)",
                t_gen.elapsed()
            );
            traffic.pools[1].lock().unwrap().extend(
                new_rs
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| (format!("GMNEW{i:05}"), b)),
            );
            traffic.allow[1].store(true, Ordering::SeqCst);
            wait_counts(1, MIN_PER_PHASE, MIN_PER_PHASE);
            // `next` is published but does not sign yet
            assert_eq!(
                authn_request_signer(&gw, &[&old, &new_id]),
                Some(old.clone()),
                "AuthnRequest signer while NEW is `next`"
            );

            // promote NEW: it signs; OLD becomes `next` (still published, still decrypting)
            gw.keys(&["promote", &new_id]);
            let (_, took) = wait_for(
                &gw,
                Duration::from_secs(30),
                poll,
                "NEW active in /metrics",
                || {
                    observe(1);
                    let st = sp_states(&gw);
                    (st.contains(&(new_id.clone(), "Active".into()))
                        && st.contains(&(old.clone(), "Next".into())))
                    .then_some(())
                },
            );
            timings.push(("keys promote -> reloaded".into(), took));
            assert!(
                took <= reload_limit,
                "reload after `keys promote` took {took:?}"
            );
            traffic.phase.store(2, Ordering::SeqCst);
            assert_eq!(
                authn_request_signer(&gw, &[&old, &new_id]),
                Some(new_id.clone()),
                "AuthnRequest signer once NEW is active"
            );
            wait_counts(2, MIN_PER_PHASE, MIN_PER_PHASE);

            // retire OLD: unpublished, still decrypts
            gw.keys(&["retire", &old]);
            let want_new: BTreeSet<String> = [new_id.clone()].into();
            let (_, took) = wait_for(
                &gw,
                Duration::from_secs(30),
                poll,
                "metadata lists only NEW",
                || (observe(2) == want_new).then_some(()),
            );
            timings.push(("keys retire -> metadata lists NEW only".into(), took));
            assert!(
                took <= reload_limit,
                "reload after `keys retire` took {took:?}"
            );
            traffic.phase.store(3, Ordering::SeqCst);
            let st = sp_states(&gw);
            assert!(
                st.contains(&(old.clone(), "Retired".into())),
                "OLD is Retired in /metrics: {st:?}"
            );
            wait_counts(3, MIN_PER_PHASE, MIN_PER_PHASE);

            // stop sending to OLD (and let any OLD post in flight finish), then remove it
            traffic.allow[0].store(false, Ordering::SeqCst);
            traffic.wait_iterations(2);
            traffic.phase.store(4, Ordering::SeqCst);
            gw.keys(&["remove", &old, "--force"]);
            let (_, took) = wait_for(
                &gw,
                Duration::from_secs(30),
                poll,
                "OLD gone from /metrics",
                || {
                    observe(4);
                    (!sp_states(&gw).iter().any(|(k, _)| *k == old)).then_some(())
                },
            );
            timings.push(("keys remove -> reloaded".into(), took));
            assert!(
                took <= reload_limit,
                "reload after `keys remove` took {took:?}"
            );
            traffic.phase.store(5, Ordering::SeqCst);
            wait_counts(5, 0, MIN_PER_PHASE);
        }));
        traffic.stop.store(true, Ordering::SeqCst);
        h.join().expect("traffic thread");
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });

    let mut f = Fails::default();
    // zero failed logins
    let per_phase: Vec<String> = (0..=5)
        .map(|p| {
            format!(
                "phase {p}: OLD {} NEW {}",
                traffic.count(p, Kind::Old),
                traffic.count(p, Kind::New)
            )
        })
        .collect();
    let sent = traffic.sent.lock().unwrap();
    let failed: Vec<String> = sent
        .iter()
        .filter(|s| !s.problems.is_empty())
        .map(|s| {
            format!(
                "{:?} {} (phase {}): {}",
                s.kind,
                s.nameid,
                s.phase,
                s.problems.join("; ")
            )
        })
        .collect();
    eprintln!(
        "rollover: {} logins posted ({}), {} failed; starved OLD {} NEW {}",
        sent.len(),
        per_phase.join(", "),
        failed.len(),
        traffic.starved[0].load(Ordering::SeqCst),
        traffic.starved[1].load(Ordering::SeqCst)
    );
    f.check("zero failed logins", failed.is_empty(), || {
        format!(
            "{} of {} logins failed:\n    {}",
            failed.len(),
            sent.len(),
            failed.join("\n    ")
        )
    });
    f.check(
        "no OLD response posted once OLD was to be removed",
        sent.iter().all(|s| !(s.kind == Kind::Old && s.phase >= 4)),
        || "an OLD response was posted in phase 4/5".into(),
    );
    drop(sent);

    // metadata: OLD alone, then both between `new` and `retire`, then NEW only
    let obs = observed.lock().unwrap();
    let want_old: BTreeSet<String> = [old.clone()].into();
    let want_both: BTreeSet<String> = [old.clone(), new_id.clone()].into();
    let want_new: BTreeSet<String> = [new_id.clone()].into();
    for (phase, e, s) in obs.iter() {
        f.check(
            "metadata: signing and encryption list the same keys",
            e == s,
            || format!("phase {phase}: encryption {e:?} signing {s:?}"),
        );
        let ok = match phase {
            0 => *e == want_old || *e == want_both,
            1 | 2 => *e == want_both || (*phase == 2 && *e == want_new),
            _ => *e == want_new,
        };
        f.check("metadata keys per phase", ok, || {
            format!("phase {phase}: published {e:?}")
        });
    }
    // the observation that ended phase 2 is the only one allowed to show NEW alone in phase 2
    let p2_new_only = obs
        .iter()
        .filter(|(p, e, _)| *p == 2 && *e == want_new)
        .count();
    f.check(
        "metadata keeps both keys until retire",
        p2_new_only <= 1,
        || format!("{p2_new_only} phase-2 observations showed only NEW"),
    );
    f.check(
        "metadata observed in every phase",
        [1usize, 2, 3, 4]
            .iter()
            .all(|p| obs.iter().any(|(q, _, _)| q == p)),
        || "missing metadata observations".into(),
    );
    drop(obs);

    // after removal, a response encrypted to OLD cannot be decrypted any more
    for (nameid, b64) in &after_remove {
        f.add(
            &format!("OLD-encrypted {nameid} after `keys remove`"),
            gw.expect_refused(b64, "decrypt_failed"),
        );
    }

    // the key set on disk and the audit log
    let list = gw.key_list();
    f.check(
        "key set after rollover",
        list == vec![(new_id.clone(), "active".to_string())],
        || format!("keys list: {list:?}"),
    );
    f.check(
        "OLD key files deleted",
        !gw.keys_dir.join(format!("{old}.key")).exists()
            && !gw.keys_dir.join(format!("{old}.crt")).exists(),
        || "OLD's .key/.crt still exist".into(),
    );
    let audit = fs::read_to_string(gw.keys_dir.join("audit.jsonl")).unwrap_or_default();
    let got: Vec<(String, String)> = audit
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let j = Json::parse(l).unwrap_or_else(|e| panic!("audit.jsonl line {l:?}: {e}"));
            f.check(
                "audit line has at/actor",
                j.str("at").is_some() && j.str("actor").is_some(),
                || l.to_string(),
            );
            (
                j.str("action").unwrap_or_default().to_string(),
                j.str("key").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("keys.new", &old),
        ("keys.new", &new_id),
        ("keys.promote", &new_id),
        ("keys.retire", &old),
        ("keys.remove", &old),
    ]
    .iter()
    .map(|(a, k)| (a.to_string(), k.to_string()))
    .collect();
    f.check("audit.jsonl sequence", got == want, || {
        format!("got {got:?}\n    want {want:?}\n    file:\n{audit}")
    });
    let refused = gw.log_lines(&["reload_refused"]);
    f.check(
        "no reload refused during the rollover",
        refused.is_empty(),
        || refused.join("\n    "),
    );
    for (what, d) in &timings {
        eprintln!("rollover: {what}: {d:?}");
    }
    f.finish(&gw);
    eprintln!(
        "sp_key_rollover_under_login_traffic: {:?}",
        t_start.elapsed()
    );
}

// ------------------------------------------------------------------------------------------
// 3. IdP signing key rollover; broken metadata files

fn idp_fps(gw: &Gw) -> BTreeSet<String> {
    cert_gauges(&gw.metrics(), "idp_signing")
        .into_iter()
        .filter_map(|(l, _)| label(&l, "fingerprint"))
        .collect()
}

#[test]
fn idp_key_rollover_and_corrupt_metadata() {
    let t_start = Instant::now();
    let gw = Gw::start(Opts::default()); // metadata: A = idp[0] only; B = idp[1]
    let mut f = Fails::default();
    let fp_a = hex_colon_upper(&pem_der(&gw.idp[0].cert));
    let fp_b = hex_colon_upper(&pem_der(&gw.idp[1].cert));
    let only_a: BTreeSet<String> = [fp_a.clone()].into();
    let only_b: BTreeSet<String> = [fp_b.clone()].into();
    let both: BTreeSet<String> = [fp_a.clone(), fp_b.clone()].into();
    assert_eq!(idp_fps(&gw), only_a, "/metrics idp_signing at start");

    let md = gw.sp_metadata();
    let sp_pem = gw.write_pem("sp.crt", &key_descriptors(&md, "encryption")[0].1);
    const N: usize = 10;
    let mut jobs = Vec::new();
    for i in 0..N {
        jobs.push(gw.job(&format!("GMIDPA{i:03}"), 0, "both", None, false));
    }
    for i in 0..N {
        jobs.push(gw.job(&format!("GMIDPB{i:03}"), 1, "both", None, false));
    }
    // B-signed and encrypted, both ways
    jobs.push(gw.enc_job(
        "GMIDPBE01",
        1,
        Prot::SignedAssertion,
        enc_args(&[&sp_pem], "aes256-gcm", "xmlenc11-rsa-oaep-sha256", &[]),
    ));
    jobs.push(gw.enc_job(
        "GMIDPBE02",
        1,
        Prot::SignedResponse,
        enc_args(&[&sp_pem], "aes128-cbc", "rsa-oaep-mgf1p", &[]),
    ));
    let rs = gw.gen(&jobs);
    let a = |i: usize| (format!("GMIDPA{i:03}"), rs[i].clone());
    let b = |i: usize| (format!("GMIDPB{i:03}"), rs[N + i].clone());
    let (mut na, mut nb) = (0usize, 0usize);
    let mut next_a = || {
        na += 1;
        a(na - 1)
    };
    let mut next_b = || {
        nb += 1;
        b(nb - 1)
    };

    // A only: A accepted, B refused
    let (n, r) = next_a();
    f.add("A-only metadata: A-signed", gw.expect_login(&r, &n));
    let (b0_name, b0) = next_b();
    f.add(
        "A-only metadata: B-signed refused",
        gw.expect_refused(&b0, "signature_invalid"),
    );

    // A+B by atomic rename, picked up by the file check
    replace_atomic(&gw.idp_md, &gw.idp_metadata_bytes(&[0, 1]));
    let (_, took) = wait_for(
        &gw,
        Duration::from_secs(20),
        Duration::from_millis(250),
        "IdP metadata A+B loaded",
        || (idp_fps(&gw) == both).then_some(()),
    );
    eprintln!("idp rollover: A+B picked up by the file check in {took:?}");
    f.check(
        "A+B reload within 15 s",
        took <= Duration::from_secs(15),
        || format!("{took:?}"),
    );
    let reloaded = gw.log_lines(&["idp_metadata", "reloaded", &fp_a, &fp_b]);
    f.check(
        "log: reloaded with both fingerprints",
        !reloaded.is_empty(),
        || "no `reloaded` line for idp_metadata naming both certificates".into(),
    );
    let (n, r) = next_a();
    f.add("A+B metadata: A-signed", gw.expect_login(&r, &n));
    // the very response refused before is accepted now (it was not consumed by the refusal)
    f.add(
        "A+B metadata: the B-signed response refused before",
        gw.expect_login(&b0, &b0_name),
    );
    let (n, r) = next_b();
    f.add("A+B metadata: B-signed", gw.expect_login(&r, &n));
    f.add(
        "A+B metadata: B-signed Assertion, encrypted",
        gw.expect_login(&rs[2 * N], "GMIDPBE01"),
    );
    f.add(
        "A+B metadata: encrypted, Response signed by B after",
        gw.expect_login(&rs[2 * N + 1], "GMIDPBE02"),
    );

    // B only, SIGHUP: A refused at once
    replace_atomic(&gw.idp_md, &gw.idp_metadata_bytes(&[1]));
    gw.sighup();
    let (_, took) = wait_for(
        &gw,
        Duration::from_secs(10),
        Duration::from_millis(50),
        "IdP metadata B loaded",
        || (idp_fps(&gw) == only_b).then_some(()),
    );
    eprintln!("idp rollover: B-only picked up after SIGHUP in {took:?}");
    let (_, r) = next_a();
    f.add(
        "B-only metadata: A-signed refused at once",
        gw.expect_refused(&r, "signature_invalid"),
    );
    let (n, r) = next_b();
    f.add("B-only metadata: B-signed", gw.expect_login(&r, &n));

    // broken files: refused, B keeps serving
    let good = gw.idp_metadata_bytes(&[0, 1]);
    let no_signing = String::from_utf8(good.clone())
        .unwrap()
        .replace("use=\"signing\"", "use=\"encryption\"")
        .into_bytes();
    assert!(no_signing != good);
    // The file-check case comes first, so any `file changed` refusal while it is in place is
    // its own; the others count `why="SIGHUP"` refusals, which only our signal produces.
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("valid XML without a signing certificate", no_signing, false),
        (
            "garbage",
            b"\x00\x01 this is not metadata <<<".to_vec(),
            true,
        ),
        (
            "truncated (half a copy)",
            good[..good.len() / 2].to_vec(),
            true,
        ),
    ];
    for (what, bytes, hup) in cases {
        let why = if hup {
            "\"SIGHUP\""
        } else {
            "\"file changed\""
        };
        let needles = ["reload_refused", "idp_metadata", why];
        let before = gw.count_log(&needles);
        replace_atomic(&gw.idp_md, &bytes);
        if hup {
            gw.sighup();
        }
        let (_, took) = wait_for(
            &gw,
            Duration::from_secs(20),
            Duration::from_millis(100),
            &format!("reload_refused for {what}"),
            || (gw.count_log(&needles) > before).then_some(()),
        );
        eprintln!(
            "idp corrupt {what}: refused after {took:?} ({})",
            if hup { "SIGHUP" } else { "file check" }
        );
        if !hup {
            f.check(
                &format!("{what}: refused within 15 s"),
                took <= Duration::from_secs(15),
                || format!("{took:?}"),
            );
        }
        let case = format!("corrupt metadata ({what})");
        f.check(&case, idp_fps(&gw) == only_b, || {
            format!("/metrics idp_signing now {:?}", idp_fps(&gw))
        });
        let rd = gw.get("/readyz", None);
        f.check(&case, rd.status == 200, || format!("/readyz {}", rd.status));
        let (n, r) = next_b();
        f.add(
            &format!("{case}: B-signed still accepted"),
            gw.expect_login(&r, &n),
        );
        let (_, r) = next_a();
        f.add(
            &format!("{case}: A-signed still refused"),
            gw.expect_refused(&r, "signature_invalid"),
        );
    }

    // a good file again: reloads normally
    replace_atomic(&gw.idp_md, &good);
    gw.sighup();
    wait_for(
        &gw,
        Duration::from_secs(10),
        Duration::from_millis(50),
        "A+B loaded again",
        || (idp_fps(&gw) == both).then_some(()),
    );
    let (n, r) = next_a();
    f.add(
        "good metadata after the broken ones: A-signed",
        gw.expect_login(&r, &n),
    );
    f.finish(&gw);
    eprintln!(
        "idp_key_rollover_and_corrupt_metadata: {:?}",
        t_start.elapsed()
    );
}

// ------------------------------------------------------------------------------------------
// 4. corrupt SP key set

#[test]
fn corrupt_sp_key_set_keeps_serving() {
    let t_start = Instant::now();
    let gw = Gw::start(Opts::default());
    let mut f = Fails::default();
    let active = gw.active_key();
    let md0 = gw.sp_metadata();
    let enc = key_descriptors(&md0, "encryption");
    assert_eq!(enc.len(), 1);
    let sp_pem = gw.write_pem("sp.crt", &enc[0].1);
    let mut jobs = Vec::new();
    const N: usize = 14;
    for i in 0..N {
        let prot = if i % 2 == 0 {
            Prot::SignedAssertion
        } else {
            Prot::SignedResponse
        };
        jobs.push(gw.enc_job(
            &format!("GMKEYE{i:03}"),
            0,
            prot,
            enc_args(&[&sp_pem], DATA[i % 6], KEY_TRANSPORT[i % 2], &[]),
        ));
        jobs.push(gw.job(&format!("GMKEYP{i:03}"), 0, "both", None, false));
    }
    let rs = gw.gen(&jobs);
    let mut next = 0usize;
    let mut logins = |f: &mut Fails, case: &str| {
        let i = next;
        next += 1;
        f.add(
            &format!("{case}: encrypted login"),
            gw.expect_login(&rs[2 * i], &format!("GMKEYE{i:03}")),
        );
        f.add(
            &format!("{case}: plain login"),
            gw.expect_login(&rs[2 * i + 1], &format!("GMKEYP{i:03}")),
        );
        let md = gw.sp_metadata();
        f.check(
            &format!("{case}: /saml/metadata unchanged"),
            md == md0,
            || format!("metadata now:\n{md}"),
        );
        let st = sp_states(&gw);
        f.check(
            &format!("{case}: /metrics sp keys unchanged"),
            st == vec![(active.clone(), "Active".to_string())],
            || format!("{st:?}"),
        );
    };
    logins(&mut f, "before");

    // the file-check case comes first; the SIGHUP ones count `why="SIGHUP"` lines only
    let refused = || gw.count_log(&["reload_refused", "sp_keys"]);
    let refused_hup = || gw.count_log(&["reload_refused", "sp_keys", "\"SIGHUP\""]);
    let reloaded = || gw.count_log(&["sp_keys", "reloaded", "\"SIGHUP\""]);
    let key_path = gw.keys_dir.join(format!("{active}.key"));
    let crt_path = gw.keys_dir.join(format!("{active}.crt"));
    let set_path = gw.keys_dir.join("keyset.json");
    let key0 = fs::read(&key_path).unwrap();
    let crt0 = fs::read(&crt_path).unwrap();
    let set0 = fs::read(&set_path).unwrap();

    // (a) the active key truncated in place; found by the file check
    let before = refused();
    fs::write(&key_path, &key0[..key0.len() / 2]).unwrap();
    let (_, took) = wait_for(
        &gw,
        Duration::from_secs(20),
        Duration::from_millis(100),
        "reload_refused for a truncated key",
        || (refused() > before).then_some(()),
    );
    eprintln!("sp keys: truncated key refused by the file check after {took:?}");
    f.check(
        "truncated key refused within 15 s",
        took <= Duration::from_secs(15),
        || format!("{took:?}"),
    );
    logins(&mut f, "truncated active .key");
    let before = reloaded();
    fs::write(&key_path, &key0).unwrap();
    gw.sighup();
    wait_for(
        &gw,
        Duration::from_secs(10),
        Duration::from_millis(50),
        "key set reloaded after repair",
        || (reloaded() > before).then_some(()),
    );
    logins(&mut f, "key file repaired");

    // (b)..(e): broken states swapped in atomically, SIGHUP
    let mut with_missing: Value = serde_json::from_slice(&set0).unwrap();
    with_missing["keys"].as_array_mut().unwrap().push(json!({
        "id": "sp-missing-key", "state": "next", "created": "2026-01-01T00:00:00+00:00"
    }));
    let mut no_active: Value = serde_json::from_slice(&set0).unwrap();
    no_active["keys"][0]["state"] = json!("retired");
    let other_cert = fs::read(&gw.idp[0].cert).unwrap();
    let cases: Vec<(&str, &PathBuf, Vec<u8>, &Vec<u8>)> = vec![
        (
            "keyset.json names a missing key",
            &set_path,
            serde_json::to_vec_pretty(&with_missing).unwrap(),
            &set0,
        ),
        (
            "keyset.json not JSON",
            &set_path,
            b"{\"keys\": [".to_vec(),
            &set0,
        ),
        (
            "keyset.json without an active key",
            &set_path,
            serde_json::to_vec_pretty(&no_active).unwrap(),
            &set0,
        ),
        (
            "the active .crt replaced by another certificate",
            &crt_path,
            other_cert,
            &crt0,
        ),
    ];
    for (what, path, bad, good) in cases {
        let before = refused_hup();
        replace_atomic(path, &bad);
        gw.sighup();
        wait_for(
            &gw,
            Duration::from_secs(10),
            Duration::from_millis(50),
            &format!("reload_refused: {what}"),
            || (refused_hup() > before).then_some(()),
        );
        logins(&mut f, what);
        let before = reloaded();
        replace_atomic(path, good);
        gw.sighup();
        wait_for(
            &gw,
            Duration::from_secs(10),
            Duration::from_millis(50),
            &format!("reloaded after repairing: {what}"),
            || (reloaded() > before).then_some(()),
        );
    }
    logins(&mut f, "all repaired");

    // keyset.json names a key whose files are not there yet (state copied before the key
    // files), and the file check has refused it; the repair is to put the files in place.
    // The runbook: "fix the file and it reloads within 10 s" -- so the file check must notice
    // the new files.
    let refused_check = || gw.count_log(&["reload_refused", "sp_keys", "\"file changed\""]);
    let before = refused_check();
    replace_atomic(
        &set_path,
        &serde_json::to_vec_pretty(&with_missing).unwrap(),
    );
    wait_for(
        &gw,
        Duration::from_secs(20),
        Duration::from_millis(100),
        "reload_refused by the file check: keyset.json names sp-missing-key",
        || (refused_check() > before).then_some(()),
    );
    let t_fix = Instant::now();
    tls_pair(&gw.keys_dir, "sp-missing-key", false, 365);
    let want_states = vec![
        (active.clone(), "Active".to_string()),
        ("sp-missing-key".to_string(), "Next".to_string()),
    ];
    let mut picked_up = None;
    while t_fix.elapsed() < Duration::from_secs(25) {
        if sp_states(&gw) == want_states {
            picked_up = Some(t_fix.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("sp keys: missing key files added; picked up by the file check: {picked_up:?}");
    f.check(
        "missing key files put in place: reloaded by the file check within 15 s",
        picked_up.is_some_and(|d| d <= Duration::from_secs(15)),
        || {
            format!(
                "not reloaded {:?} after sp-missing-key.key/.crt appeared (keyset.json unchanged \
                 since the refused reload); /metrics sp keys: {:?}; sp_keys log lines:\n      {}",
                t_fix.elapsed(),
                sp_states(&gw),
                gw.log_lines(&["sp_keys"])
                    .iter()
                    .rev()
                    .take(4)
                    .rev()
                    .map(|l| strip_ansi(l))
                    .collect::<Vec<_>>()
                    .join("\n      ")
            )
        },
    );
    if picked_up.is_none() {
        // SIGHUP loads the very same files: the set itself is fine, only the check missed it
        gw.sighup();
        let mut hup_ok = false;
        for _ in 0..100 {
            if sp_states(&gw) == want_states {
                hup_ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("sp keys: after SIGHUP the repaired set loads: {hup_ok}");
        f.check("the repaired set loads on SIGHUP", hup_ok, || {
            format!("{:?}", sp_states(&gw))
        });
    }
    f.finish(&gw);
    eprintln!("corrupt_sp_key_set_keeps_serving: {:?}", t_start.elapsed());
}

// ------------------------------------------------------------------------------------------
// 5. TLS certificate swap

/// (when, Ok((served fingerprint, /healthz status)) or the connection error)
type Sample = (Duration, Result<(String, u16), String>);

fn served_fp(port: u16) -> Result<String, String> {
    open(port, true).map(|(_, fp)| fp.unwrap_or_default())
}

#[test]
fn tls_cert_swap_seen_by_clients() {
    let t_start = Instant::now();
    let gw = Gw::start(Opts {
        tls: true,
        ..Opts::default()
    });
    let mut f = Fails::default();
    let tls_dir = gw.dir.path().join("tls");
    let fp1 = sha256_hex(&pem_der(&gw.tls_cert));
    let (c2, k2) = tls_pair(&tls_dir, "second", true, 90); // ECDSA P-256, 90 days
    let (c3, _k3) = tls_pair(&tls_dir, "third", false, 45);
    let fp2 = sha256_hex(&pem_der(&c2));
    let fp3 = sha256_hex(&pem_der(&c3));

    assert_eq!(
        served_fp(gw.port).expect("TLS handshake"),
        fp1,
        "served certificate at start"
    );
    let day = 86_400.0;
    let tls_gauge = |gw: &Gw| -> Vec<(String, f64)> {
        cert_gauges(&gw.metrics(), "tls")
            .into_iter()
            .map(|(l, v)| (label(&l, "sha256").unwrap_or_default(), v))
            .collect()
    };
    let m = gw.metrics();
    let g = tls_gauge(&gw);
    f.check(
        "metrics kind=tls at start",
        g.len() == 1 && g[0].0 == fp1 && g[0].1 > 29.0 * day && g[0].1 <= 30.0 * day + 60.0,
        || format!("{g:?}"),
    );
    f.check("metrics kind=sp", cert_gauges(&m, "sp").len() == 1, || {
        m.clone()
    });
    f.check(
        "metrics kind=idp_signing",
        cert_gauges(&m, "idp_signing").len() == 1,
        || m.clone(),
    );
    for (_, v) in cert_gauges(&m, "sp")
        .iter()
        .chain(cert_gauges(&m, "idp_signing").iter())
    {
        f.check("cert expiry gauges positive", *v > 0.0, || m.clone());
    }

    let jobs: Vec<Value> = (0..4)
        .map(|i| gw.job(&format!("GMTLS{i:03}"), 0, "both", None, false))
        .collect();
    let rs = gw.gen(&jobs);
    let https_login = |f: &mut Fails, i: usize, case: &str| {
        let r = gw.post_acs(&rs[i]);
        f.add(case, gw.login_problems(&r, &format!("GMTLS{i:03}")));
        let sc: Vec<&str> = r.headers_all("set-cookie");
        let host = sc.iter().find(|c| c.starts_with("__Host-samlgate="));
        f.check(
            case,
            host.is_some_and(|c| {
                c.contains("Secure") && c.contains("Path=/") && !c.contains("Domain")
            }),
            || format!("__Host- cookie must be Secure, Path=/, no Domain: {sc:?}"),
        );
        f.check(case, !sc.iter().any(|c| c.starts_with("samlgate=")), || {
            format!("plain `samlgate` cookie on https: {sc:?}")
        });
    };
    https_login(&mut f, 0, "https login before the swap");

    // clients: a new connection every 100 ms; and one kept-alive connection used every 500 ms
    let stop = AtomicBool::new(false);
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let kept: Mutex<Vec<Result<u16, String>>> = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let mut swap_took = Duration::ZERO;
    let port = gw.port;
    std::thread::scope(|s| {
        let h1 = s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let r = open(port, true).and_then(|(mut st, fp)| {
                    let resp = exchange(
                        &mut *st,
                        &request_bytes(port, "GET", "/healthz", &[], None, false),
                    )?;
                    Ok((fp.unwrap_or_default(), resp.status))
                });
                samples.lock().unwrap().push((t0.elapsed(), r));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let h2 = s.spawn(|| {
            let (mut st, fp) = match open(port, true) {
                Ok(x) => x,
                Err(e) => {
                    kept.lock().unwrap().push(Err(e));
                    return;
                }
            };
            if fp.as_deref() != Some(fp1.as_str()) {
                kept.lock()
                    .unwrap()
                    .push(Err(format!("kept connection cert {fp:?}")));
            }
            while !stop.load(Ordering::SeqCst) {
                let r = exchange(
                    &mut *st,
                    &request_bytes(port, "GET", "/healthz", &[], None, true),
                )
                .map(|r| r.status);
                let failed = r.is_err();
                kept.lock().unwrap().push(r);
                if failed {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::sleep(Duration::from_millis(800));
            // the runbook's order: key first, then certificate, each by rename
            let ts = Instant::now();
            replace_atomic(&gw.tls_key, &fs::read(&k2).unwrap());
            replace_atomic(&gw.tls_cert, &fs::read(&c2).unwrap());
            let (_, took) = wait_for(
                &gw,
                Duration::from_secs(20),
                Duration::from_millis(100),
                "new connections see the new certificate",
                || (served_fp(gw.port).ok()? == fp2).then_some(()),
            );
            swap_took = took;
            eprintln!(
                "tls: new certificate served {:?} after the renames (file check)",
                ts.elapsed()
            );
            std::thread::sleep(Duration::from_millis(800));

            // a mismatched pair (third certificate, second key): refused, second keeps serving
            let needles = ["reload_refused", "tls", "\"SIGHUP\""];
            let before = gw.count_log(&needles);
            replace_atomic(&gw.tls_cert, &fs::read(&c3).unwrap());
            gw.sighup();
            wait_for(
                &gw,
                Duration::from_secs(10),
                Duration::from_millis(50),
                "reload_refused for the mismatched TLS pair",
                || (gw.count_log(&needles) > before).then_some(()),
            );
            std::thread::sleep(Duration::from_millis(800));
        }));
        stop.store(true, Ordering::SeqCst);
        h1.join().unwrap();
        h2.join().unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });

    f.check(
        "new certificate within 15 s",
        swap_took <= Duration::from_secs(15),
        || format!("{swap_took:?}"),
    );
    for _ in 0..3 {
        let fp = served_fp(gw.port);
        f.check(
            "after the mismatched pair: second certificate still served",
            fp.as_deref() == Ok(fp2.as_str()),
            || format!("served {fp:?}, want {fp2} (third would be {fp3})"),
        );
    }
    let g = tls_gauge(&gw);
    f.check(
        "metrics kind=tls after the swap",
        g.len() == 1 && g[0].0 == fp2 && g[0].1 > 89.0 * day && g[0].1 <= 90.0 * day + 60.0,
        || format!("{g:?} (want sha256 {fp2}, ~90 days)"),
    );
    let rl = gw.log_lines(&["tls", "reloaded", &fp2]);
    f.check("log: tls reloaded sha256=<second>", !rl.is_empty(), || {
        "no such line".into()
    });
    https_login(&mut f, 1, "https login after the swap");

    // the loop: no refused or failed connection; fingerprints go first -> second, never back
    let samples = samples.into_inner().unwrap();
    let errors: Vec<String> = samples
        .iter()
        .filter_map(|(t, r)| match r {
            Err(e) => Some(format!("{t:?}: {e}")),
            Ok((_, st)) if *st != 200 => Some(format!("{t:?}: /healthz {st}")),
            _ => None,
        })
        .collect();
    f.check("client loop: enough samples", samples.len() >= 20, || {
        format!("{} samples", samples.len())
    });
    f.check(
        "client loop: no failed connection",
        errors.is_empty(),
        || errors.join("\n    "),
    );
    let fps: Vec<&str> = samples
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|(fp, _)| fp.as_str()))
        .collect();
    let first2 = fps.iter().position(|fp| *fp == fp2);
    f.check(
        "client loop saw the first and then the second certificate",
        first2.is_some_and(|i| i > 0) && fps[0] == fp1,
        || {
            format!(
                "{} samples, first {:?}, first second-cert at {first2:?}",
                fps.len(),
                fps.first()
            )
        },
    );
    if let Some(i) = first2 {
        let bad: Vec<(usize, &str)> = fps
            .iter()
            .enumerate()
            .skip(i)
            .filter(|(_, fp)| **fp != fp2)
            .map(|(j, fp)| (j, *fp))
            .collect();
        f.check(
            "client loop: only the second certificate after the swap",
            bad.is_empty(),
            || format!("{bad:?} (third = {fp3})"),
        );
    }
    f.check(
        "client loop: only known certificates",
        fps.iter().all(|fp| *fp == fp1 || *fp == fp2),
        || format!("unexpected fingerprints; third = {fp3}"),
    );
    let kept = kept.into_inner().unwrap();
    let kept_bad: Vec<String> = kept
        .iter()
        .filter_map(|r| match r {
            Ok(200) => None,
            Ok(s) => Some(format!("status {s}")),
            Err(e) => Some(e.clone()),
        })
        .collect();
    f.check(
        "kept-alive connection survives the swap",
        kept.len() >= 4 && kept_bad.is_empty(),
        || format!("{} requests on it; problems: {kept_bad:?}", kept.len()),
    );

    // an independent client: the runbook's openssl s_client command
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let want = fp2
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    f.check(
        "openssl s_client sees the second certificate",
        text.contains(&want),
        || format!("s_client: {text:?}, want {want}"),
    );
    eprintln!(
        "tls: {} loop connections, {} on the kept-alive one, swap seen after {swap_took:?}",
        samples.len(),
        kept.len()
    );
    f.finish(&gw);
    eprintln!("tls_cert_swap_seen_by_clients: {:?}", t_start.elapsed());
}

// ------------------------------------------------------------------------------------------
// issue #12 item 15: a file fixed after a refused reload is picked up

/// The IdP metadata is swapped for a broken copy (refused), then fixed in place with the same
/// size and the broken copy's mtime, so the files' stamp does not change: the fixed metadata
/// must still be loaded (the watcher retries a refused part), and a B-signed login accepted.
#[test]
fn a_file_fixed_after_a_refused_reload_is_picked_up() {
    let gw = Gw::start(Opts::default()); // metadata: A only
    let fp_a = hex_colon_upper(&pem_der(&gw.idp[0].cert));
    let fp_b = hex_colon_upper(&pem_der(&gw.idp[1].cert));
    let both: BTreeSet<String> = [fp_a, fp_b].into();
    let rs = gw.gen(&[gw.job("GMRETRY01", 1, "both", None, false)]);

    let good = gw.idp_metadata_bytes(&[0, 1]);
    let text = String::from_utf8(good.clone()).unwrap();
    // Same length, no longer well-formed (the root's start and end tags differ).
    let broken = text
        .replacen("EntityDescriptor", "EntityDescriptoX", 1)
        .into_bytes();
    assert_eq!(broken.len(), good.len());
    let needles = ["reload_refused", "idp_metadata"];
    let before = gw.count_log(&needles);
    replace_atomic(&gw.idp_md, &broken);
    wait_for(
        &gw,
        Duration::from_secs(25),
        Duration::from_millis(100),
        "the broken metadata refused",
        || (gw.count_log(&needles) > before).then_some(()),
    );
    let stamp = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.len(), m.modified().unwrap())
    };
    let broken_stamp = stamp(&gw.idp_md);
    {
        let mut f = fs::OpenOptions::new().write(true).open(&gw.idp_md).unwrap();
        f.write_all(&good).unwrap();
        f.set_modified(broken_stamp.1).unwrap();
    }
    assert_eq!(stamp(&gw.idp_md), broken_stamp, "the fix changed the stamp");
    let (_, took) = wait_for(
        &gw,
        Duration::from_secs(25),
        Duration::from_millis(250),
        "the fixed metadata (A+B) loaded without a stamp change",
        || (idp_fps(&gw) == both).then_some(()),
    );
    eprintln!("fixed metadata picked up {took:?} after the fix");
    let mut f = Fails::default();
    f.add(
        "B-signed login after the fix",
        gw.expect_login(&rs[0], "GMRETRY01"),
    );
    let retried = gw.log_lines(&["idp_metadata", "reloaded", "retry after a refused reload"]);
    f.check("log: reloaded on retry", !retried.is_empty(), || {
        "no `reloaded` line with why=\"retry after a refused reload\"".into()
    });
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// review of the issue-12 fixes, finding 6: a reload checks the key files' modes like a start

/// A private key that group or others can read is refused by a reload (SIGHUP) with the
/// `chmod` to run, as `serve` refuses it at start; once fixed, the next reload loads it.
/// For the SP key set and the TLS key.
#[test]
fn a_reload_refuses_a_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let gw = Gw::start(Opts {
        tls: true,
        ..Opts::default()
    });
    let mut f = Fails::default();
    let sp_key = gw.keys_dir.join(format!("{}.key", gw.active_key()));
    let set_mode =
        |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    // A SIGHUP reloads the parts in order, TLS last: its line ends the round.
    let hup = |what: &str| {
        let done = ["\"tls\"", "\"SIGHUP\""];
        let n = gw.count_log(&done);
        gw.sighup();
        wait_for(
            &gw,
            Duration::from_secs(15),
            Duration::from_millis(50),
            what,
            || (gw.count_log(&done) > n).then_some(()),
        );
    };
    for (part, key) in [
        ("\"sp_keys\"", sp_key.clone()),
        ("\"tls\"", gw.tls_key.clone()),
    ] {
        let fix = format!("chmod 600 {}", key.display());
        let refused = [part, "\"SIGHUP\"", "reload_refused", fix.as_str()];
        let reloaded = [part, "\"SIGHUP\"", "reloaded"];
        let (r0, l0) = (gw.count_log(&refused), gw.count_log(&reloaded));
        set_mode(&key, 0o644);
        hup(&format!("{part}: a reload after chmod 644"));
        f.check(part, gw.count_log(&reloaded) == l0, || {
            format!("{part}: a key others can read was reloaded")
        });
        f.check(part, gw.count_log(&refused) == r0 + 1, || {
            format!("{part}: no reload_refused line naming `{fix}`")
        });
        set_mode(&key, 0o600);
        hup(&format!("{part}: a reload after chmod 600"));
        f.check(part, gw.count_log(&reloaded) == l0 + 1, || {
            format!("{part}: not reloaded once the mode was fixed")
        });
    }
    f.finish(&gw);
}
