//! How the staff menu can trust samlgate (issue 6): the built-in reverse proxy (`[upstream]`),
//! the signed token (`X-Samlgate-Jwt` + `/.well-known/jwks.json`) checked by an independent JWT
//! library (python PyJWT, through the example app's verifier), and Caddy's `forward_auth` from
//! `deploy/caddy/Caddyfile` in front of the same stand-in staff menu.
//!
//! The stand-in staff menu is in this file, std only: a TcpListener thread that answers every
//! request with the request head it received (and the body) as its body, keeps every head for
//! the test, and speaks just enough RFC 6455 (handshake, one text frame echoed) for the
//! WebSocket test. The examples in `examples/` run as the staff menu in two tests.
//!
//! What must hold (DESIGN.md "Identity headers", issue 6):
//! - a client-sent identity header (any letter case, `_` spelling, duplicated, listed in
//!   `Connection`) never reaches the staff menu, with or without a session;
//! - with a live session the staff menu gets exactly one of each identity header, from the
//!   session, non-ASCII percent-encoded, and a JWT that PyJWT verifies with the JWKS keys;
//! - without a session: browser navigation -> 302 /login?return_to=..., anything else -> 401,
//!   nothing reaches the staff menu except `[upstream] public_paths` (without identity);
//! - a session ended by logout or a secretariat block is refused by the proxy and /auth/verify;
//! - the staff menu down -> a 502 page at once; hanging -> 504 after `timeout_seconds`.
//!
//! Needs `.venv` with PyJWT (tests/support/requirements.txt) and, for the Caddy test, Debian's
//! `caddy` (or SAMLGATE_CADDY=/path/to/caddy): missing tools FAIL the test, never skip it.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Gateway, Json, BIN, ROOT};

/// Every header only the gateway may set towards the staff menu, lower-case.
const OWNED: [&str; 8] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-samlgate-category",
    "x-samlgate-facility-code",
    "x-samlgate-facility-name",
    "x-samlgate-display-name",
    "x-samlgate-local-user",
    "x-samlgate-jwt",
];

/// 64 hex characters, as `openssl rand -hex 32` makes.
const ADMIN_TOKEN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// The test user's profile (attributes of the python IdP). `%` and non-ASCII on purpose.
const FACILITY_NAME: &str = "100%テスト病院";
const DISPLAY_NAME: &str = "山田 太郎";
const CATEGORY: &str = "病院";
const EMAIL: &str = "yamada@example.jp";
const FACILITY_CODE: &str = "1310000001";

fn user_attrs() -> Vec<String> {
    vec![
        format!("facilityName={FACILITY_NAME}"),
        format!("displayName={DISPLAY_NAME}"),
        format!("accountCategory={CATEGORY}"),
        format!("mail={EMAIL}"),
        format!("facilityCode={FACILITY_CODE}"),
    ]
}

// ------------------------------------------------------------------------------------------
// Small I/O helpers shared by the stand-in staff menu and the raw client

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; Ok(0) at EOF.
fn fill<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16384];
    let n = r.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn take_n<R: Read>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> io::Result<Vec<u8>> {
    while buf.len() < n {
        if fill(r, buf)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
        }
    }
    Ok(buf.drain(..n).collect())
}

fn take_line<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if fill(r, buf)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no line end"));
        }
    }
}

fn take_chunked<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = take_line(r, buf)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("chunk {line:?}")))?;
        if size == 0 {
            while !take_line(r, buf)?.is_empty() {}
            return Ok(out);
        }
        out.extend(take_n(r, buf, size)?);
        take_n(r, buf, 2)?;
    }
}

/// Header lines of a head (request or status line first), names lower-cased, in order.
fn head_headers(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn values<'a>(hs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    hs.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The gateway's header encoding (DESIGN.md): bytes outside printable ASCII, and `%`, as %XX.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if !(0x20..0x7f).contains(&b) || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// SHA-1 and base64 for the WebSocket handshake (RFC 6455 §1.3), std only

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn ws_accept(key: &str) -> String {
    let mut s = key.trim().as_bytes().to_vec();
    s.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    common::base64_encode(&sha1(&s))
}

/// One WebSocket frame: (opcode, payload). Client frames must be masked, server frames not.
fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>, masked: bool) -> io::Result<(u8, Vec<u8>)> {
    let h = take_n(r, buf, 2)?;
    let op = h[0] & 0x0f;
    if (h[1] & 0x80 != 0) != masked {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame mask bit {} (expected {masked})", h[1] & 0x80 != 0),
        ));
    }
    let len = match h[1] & 0x7f {
        126 => {
            let b = take_n(r, buf, 2)?;
            u16::from_be_bytes([b[0], b[1]]) as usize
        }
        127 => {
            let b = take_n(r, buf, 8)?;
            u64::from_be_bytes(b.try_into().unwrap()) as usize
        }
        n => n as usize,
    };
    let mask = if masked {
        take_n(r, buf, 4)?
    } else {
        vec![0; 4]
    };
    let mut p = take_n(r, buf, len)?;
    for (i, b) in p.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((op, p))
}

fn frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![0x80 | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

// ------------------------------------------------------------------------------------------
// The stand-in staff menu

#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn headers(&self) -> Vec<(String, String)> {
        head_headers(&self.head)
    }
    fn target(&self) -> String {
        self.head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }
}

struct StaffMenu {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StaffMenu {
    fn start() -> StaffMenu {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind staff menu");
        StaffMenu::on(l)
    }

    fn on(l: TcpListener) -> StaffMenu {
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let seen = s2.clone();
                thread::spawn(move || {
                    let _ = serve_conn(conn, &seen);
                });
            }
        });
        StaffMenu { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    /// Requests whose target contains `marker`.
    fn with(&self, marker: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target().contains(marker))
            .cloned()
            .collect()
    }
    fn all_heads(&self) -> String {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.head.clone())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// Keep-alive HTTP/1.1: each request is answered 200 with its head (+ "\r\n\r\n" + body) as
/// the body. A WebSocket upgrade is accepted and its text frames echoed with an "echo:" prefix.
fn serve_conn(mut c: TcpStream, seen: &Mutex<Vec<Seen>>) -> io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if fill(&mut c, &mut buf)? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let hs = head_headers(&head);
        let chunked = values(&hs, "transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            take_chunked(&mut c, &mut buf)?
        } else {
            let n = values(&hs, "content-length")
                .first()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            take_n(&mut c, &mut buf, n)?
        };
        seen.lock().unwrap().push(Seen {
            head: head.clone(),
            body: body.clone(),
        });
        let upgrade = values(&hs, "upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket"));
        if upgrade {
            let key = values(&hs, "sec-websocket-key")
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            write!(
                c,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                ws_accept(&key)
            )?;
            loop {
                let (op, p) = read_frame(&mut c, &mut buf, true)?;
                match op {
                    0x1 => {
                        let mut echo = b"echo:".to_vec();
                        echo.extend(p);
                        c.write_all(&frame(0x1, &echo, None))?;
                    }
                    0x8 => {
                        c.write_all(&frame(0x8, &p, None))?;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
        let mut out = head.into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend(body);
        write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             X-Staff-Menu: echo\r\n\r\n",
            out.len()
        )?;
        c.write_all(&out)?;
        c.flush()?;
        if values(&hs, "connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
    }
}

// ------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: the bytes we write are exactly what the gateway receives (header
// names in any case, duplicates, underscores), one request per connection.

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    elapsed: Duration,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        values(&self.headers, &name.to_ascii_lowercase())
            .first()
            .copied()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// What the stand-in staff menu saw (its echo), when it answered.
    fn echoed(&self) -> Option<Seen> {
        if self.header("x-staff-menu") != Some("echo") {
            return None;
        }
        let i = find(&self.body, b"\r\n\r\n")?;
        Some(Seen {
            head: String::from_utf8_lossy(&self.body[..i]).into_owned(),
            body: self.body[i + 4..].to_vec(),
        })
    }
    fn summary(&self) -> String {
        let mut t = self.text();
        if t.len() > 400 {
            let mut cut = 400;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            t.truncate(cut);
            t.push_str("...");
        }
        format!(
            "{} location={:?} ({:?}) body={t:?}",
            self.status,
            self.header("location"),
            self.elapsed
        )
    }
}

fn read_reply(s: &mut TcpStream, started: Instant) -> io::Result<Reply> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if fill(s, &mut buf)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("no response head ({} bytes)", buf.len()),
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = head_headers(&head);
    let body = if status == 101 || status == 304 || status == 204 {
        Vec::new()
    } else if values(&headers, "transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        take_chunked(s, &mut buf)?
    } else if let Some(n) = values(&headers, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
    {
        take_n(s, &mut buf, n)?
    } else {
        while fill(s, &mut buf)? > 0 {}
        std::mem::take(&mut buf)
    };
    Ok(Reply {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

/// Sends `raw` as it is and reads one response.
fn send_raw(port: u16, raw: &[u8]) -> io::Result<Reply> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw)?;
    read_reply(&mut s, started)
}

/// `METHOD path` with exactly these header lines (plus Host, Content-Length, Connection:
/// close), panicking on a transport error.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    send_raw(port, &raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    http(port, "GET", path, headers, b"")
}

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

// ------------------------------------------------------------------------------------------
// The gateway: the harness's config plus [upstream], [token] and [admin], restarted

/// Replaces (or appends) TOML section `[name]`.
fn set_section(cfg: &str, name: &str, body: &str) -> String {
    let header = format!("[{name}]");
    let mut out = String::new();
    let mut skipping = false;
    let mut found = false;
    for line in cfg.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') && !t.contains('=') {
            skipping = false;
            if t == header {
                found = true;
                skipping = true;
                out.push_str(&format!("{header}\n{body}\n"));
                continue;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("\n{header}\n{body}\n"));
    }
    out
}

struct Conf<'a> {
    upstream: Option<&'a str>,
    public_paths: &'a [&'a str],
    timeout_seconds: u64,
    token_lifetime: Option<i64>,
    admin: bool,
}

impl Default for Conf<'_> {
    fn default() -> Self {
        Conf {
            upstream: None,
            public_paths: &["/static/"],
            timeout_seconds: 10,
            token_lifetime: Some(120),
            admin: false,
        }
    }
}

/// `samlgate GROUP --config CFG REST...` (`keys` takes --config after its subcommand).
fn cli(gw: &Gateway, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    if args[0] == "keys" {
        cmd.args(args).arg("--config").arg(&gw.config);
    } else {
        cmd.arg(args[0])
            .arg("--config")
            .arg(&gw.config)
            .args(&args[1..]);
    }
    let out = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("spawn samlgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let (ok, out, err) = cli(gw, args);
    assert!(
        ok,
        "`samlgate {} (--config ...)` failed:\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    out
}

fn gateway(c: Conf) -> Gateway {
    let mut gw = Gateway::start();
    let mut cfg = fs::read_to_string(&gw.config).expect("read config");
    if let Some(url) = c.upstream {
        let pp: Vec<String> = c.public_paths.iter().map(|p| format!("{p:?}")).collect();
        cfg = set_section(
            &cfg,
            "upstream",
            &format!(
                "url = \"{url}\"\npublic_paths = [{}]\ntimeout_seconds = {}\n",
                pp.join(", "),
                c.timeout_seconds
            ),
        );
    }
    if let Some(l) = c.token_lifetime {
        cfg = set_section(
            &cfg,
            "token",
            &format!("keys_dir = \"token-keys\"\nlifetime_seconds = {l}\n"),
        );
    }
    if c.admin {
        let tok = gw.dir.path().join("admin.token");
        fs::write(&tok, format!("{ADMIN_TOKEN}\n")).unwrap();
        // The gateway refuses a token file others can read.
        fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        cfg = set_section(&cfg, "admin", "token_file = \"admin.token\"\n");
    }
    fs::write(&gw.config, cfg).expect("write config");
    if c.token_lifetime.is_some() {
        cli_ok(&gw, &["keys", "new", "--token"]);
    }
    gw.restart();
    gw
}

/// A session cookie (`samlgate=...`) for G-MIS account `id` with the test profile.
fn login(gw: &Gateway, id: &str) -> String {
    let attrs = user_attrs();
    let mut args: Vec<&str> = vec!["--nameid", id];
    for a in &attrs {
        args.push("--attr");
        args.push(a);
    }
    let b64 = gw.make_response(&args);
    let r = gw.post_acs(&b64, Some("/menu"));
    assert_eq!(
        r.status,
        303,
        "login {id}: {}\n{}",
        r.summary(),
        gw.log_tail(3000)
    );
    r.session_cookie()
        .unwrap_or_else(|| panic!("login {id}: no session cookie: {}", r.summary()))
}

/// The identity headers the session of `id` must produce (JWT checked elsewhere).
fn expected_identity(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-auth-request-user", id.to_string()),
        ("x-auth-request-email", pct(EMAIL)),
        ("x-samlgate-category", pct(CATEGORY)),
        ("x-samlgate-facility-code", pct(FACILITY_CODE)),
        ("x-samlgate-facility-name", pct(FACILITY_NAME)),
        ("x-samlgate-display-name", pct(DISPLAY_NAME)),
        ("x-samlgate-local-user", id.to_string()),
    ]
}

/// Problems with the identity headers of one request the staff menu received: with a session
/// (`Some(id)`) exactly one of each, from the session; without, none. Any spelling counts.
fn identity_problems(seen: &Seen, session: Option<&str>) -> Vec<String> {
    let hs = seen.headers();
    let mut p = Vec::new();
    for (k, v) in &hs {
        let norm = k.replace('_', "-");
        if OWNED.contains(&norm.as_str()) && norm != *k {
            p.push(format!(
                "underscore spelling reached the staff menu: {k}: {v}"
            ));
        }
        if OWNED.contains(&norm.as_str()) && v.to_ascii_lowercase().contains("spoofed") {
            p.push(format!("client value reached the staff menu: {k}: {v}"));
        }
    }
    match session {
        None => {
            for (k, v) in &hs {
                if OWNED.contains(&k.replace('_', "-").as_str()) {
                    p.push(format!("identity header without a session: {k}: {v}"));
                }
            }
        }
        Some(id) => {
            for (name, want) in expected_identity(id) {
                let got = values(&hs, name);
                if got != [want.as_str()] {
                    p.push(format!("{name}: got {got:?}, want [{want:?}]"));
                }
            }
            let jwt = values(&hs, "x-samlgate-jwt");
            if jwt.len() != 1 || jwt[0].split('.').count() != 3 {
                p.push(format!(
                    "x-samlgate-jwt: got {jwt:?}, want one JWS compact token"
                ));
            }
        }
    }
    p
}

/// Collects failures of many cases; panics once with all of them and the server log.
struct Failures(Vec<String>);

impl Failures {
    fn new() -> Self {
        Failures(Vec::new())
    }
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
    fn finish(self, gw: &Gateway) {
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
// 1. spoofed identity headers

/// Header lines a client adds to try to pass as someone else; `spoofed` marks every value.
fn spoof_cases() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("canonical", vec![("X-Auth-Request-User", "spoofed-admin")]),
        ("lower case", vec![("x-auth-request-user", "spoofed-admin")]),
        ("upper case", vec![("X-AUTH-REQUEST-USER", "spoofed-admin")]),
        ("mixed case", vec![("x-AuTh-ReQuEsT-uSeR", "spoofed-admin")]),
        (
            "duplicated",
            vec![
                ("X-Auth-Request-User", "spoofed-admin"),
                ("X-Auth-Request-User", "spoofed-admin2"),
                ("x-auth-request-user", "spoofed-admin3"),
            ],
        ),
        (
            "underscores",
            vec![("X_Auth_Request_User", "spoofed-admin")],
        ),
        (
            "underscores lower",
            vec![("x_auth_request_user", "spoofed-admin")],
        ),
        (
            "one underscore",
            vec![("X-Auth-Request_User", "spoofed-admin")],
        ),
        (
            "every owned header",
            vec![
                ("X-Auth-Request-Email", "spoofed@example.jp"),
                ("X-SAMLGATE-CATEGORY", "spoofed-cat"),
                ("x-samlgate-facility_code", "spoofed-code"),
                ("X-Samlgate-Facility-Name", "spoofed-name"),
                ("X_Samlgate_Display_Name", "spoofed-display"),
                ("X-Samlgate-Local-User", "spoofed-local"),
                ("x-samlgate-local_user", "spoofed-local2"),
                ("X-Samlgate-Jwt", "spoofed.jwt.value"),
                ("X_SAMLGATE_JWT", "spoofed.jwt.value2"),
            ],
        ),
        (
            "empty value",
            vec![("X-Auth-Request-User", ""), ("X-Samlgate-Category", "")],
        ),
    ]
}

#[test]
fn spoofed_identity_headers_never_reach_the_staff_menu() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let id = "GM1100001";
    let cookie = login(&gw, id);
    let mut f = Failures::new();

    for (i, (case, spoof)) in spoof_cases().into_iter().enumerate() {
        // (a) with a session: the session's identity, never the client's.
        let path = format!("/menu/s{i}");
        let mut h = spoof.clone();
        h.push(("Cookie", &cookie));
        let r = get(gw.port, &path, &h);
        match menu.with(&path).as_slice() {
            [seen] => {
                f.check(case, r.status == 200, || {
                    format!("with session: {}", r.summary())
                });
                f.add(
                    &format!("{case} / with session"),
                    identity_problems(seen, Some(id)),
                );
                f.check(case, !seen.head.contains("spoofed"), || {
                    format!(
                        "with session, `spoofed` reached the staff menu:\n{}",
                        seen.head
                    )
                });
            }
            other => f.check(case, false, || {
                format!(
                    "with session: staff menu saw {} requests; {}",
                    other.len(),
                    r.summary()
                )
            }),
        }

        // (b) no session, protected path: refused, nothing reaches the staff menu.
        let before = menu.count();
        let path = format!("/menu/n{i}");
        let r = get(gw.port, &path, &spoof);
        f.check(case, r.status == 401, || {
            format!("no session, protected path: {}", r.summary())
        });
        f.check(case, menu.count() == before, || {
            format!(
                "no session, protected path reached the staff menu:\n{}",
                menu.all_heads()
            )
        });

        // (c) no session, public path: passes, without any identity header.
        let path = format!("/static/p{i}.css");
        let r = get(gw.port, &path, &spoof);
        match menu.with(&path).as_slice() {
            [seen] => {
                f.check(case, r.status == 200, || {
                    format!("public path: {}", r.summary())
                });
                f.add(
                    &format!("{case} / public path"),
                    identity_problems(seen, None),
                );
                f.check(case, !seen.head.contains("spoofed"), || {
                    format!(
                        "public path, `spoofed` reached the staff menu:\n{}",
                        seen.head
                    )
                });
            }
            other => f.check(case, false, || {
                format!(
                    "public path: staff menu saw {} requests; {}",
                    other.len(),
                    r.summary()
                )
            }),
        }
    }

    // A header named in `Connection` is hop-by-hop: the gateway drops the client's copy, but
    // the ones it sets itself afterwards must still arrive.
    let path = "/menu/connection-named";
    let r = get(
        gw.port,
        path,
        &[
            ("Cookie", &cookie),
            ("X-Auth-Request-User", "spoofed-admin"),
            (
                "Connection",
                "X-Auth-Request-User, X-Samlgate-Jwt, X-Samlgate-Category, X-Forwarded-For",
            ),
        ],
    );
    match menu.with(path).as_slice() {
        [seen] => {
            f.add(
                "Connection names identity headers",
                identity_problems(seen, Some(id)),
            );
            f.check(
                "Connection names X-Forwarded-For",
                values(&seen.headers(), "x-forwarded-for") == ["127.0.0.1"],
                || {
                    format!(
                        "x-forwarded-for after `Connection: X-Forwarded-For`:\n{}",
                        seen.head
                    )
                },
            );
        }
        other => f.check("Connection names identity headers", false, || {
            format!("staff menu saw {} requests; {}", other.len(), r.summary())
        }),
    }

    // Malformed spellings are refused by the HTTP parser or arrive harmless; never as identity.
    for (case, raw_header) in [
        ("space before colon", "X-Auth-Request-User : spoofed-admin"),
        (
            "obs-fold",
            "X-Note: a\r\n X-Auth-Request-User: spoofed-admin",
        ),
        ("tab in name", "X-Auth-Request-User\t: spoofed-admin"),
    ] {
        let path = format!("/menu/malformed-{}", case.replace(' ', "-"));
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n{raw_header}\r\n\
             Connection: close\r\n\r\n"
        );
        let r = send_raw(gw.port, raw.as_bytes());
        for seen in menu.with(&path) {
            f.add(case, identity_problems(&seen, Some(id)));
        }
        if let Ok(r) = r {
            f.check(case, r.status == 200 || r.status == 400, || {
                format!("malformed header: {}", r.summary())
            });
        }
    }
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 2. a live session: identity headers, forwarding headers, bodies, the userinfo agreement

#[test]
fn a_session_reaches_the_staff_menu_with_its_identity() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let id = "GM1200001";
    let cookie = login(&gw, id);
    let mut f = Failures::new();

    let r = get(
        gw.port,
        "/menu/page?x=1&y=%E7%97%85",
        &[
            ("Cookie", &cookie),
            ("Accept", HTML),
            ("X-Forwarded-For", "203.0.113.66"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    f.check("GET", r.status == 200, || r.summary());
    let seen = r.echoed().expect("staff menu echo");
    f.add("GET identity", identity_problems(&seen, Some(id)));
    let hs = seen.headers();
    f.check(
        "target",
        seen.target() == "/menu/page?x=1&y=%E7%97%85",
        || format!("target {:?}", seen.target()),
    );
    // The decoded values are the profile's, exactly (percent-encoding is reversible).
    for (name, want) in [
        ("x-samlgate-facility-name", FACILITY_NAME),
        ("x-samlgate-display-name", DISPLAY_NAME),
        ("x-samlgate-category", CATEGORY),
    ] {
        let got = values(&hs, name)
            .first()
            .and_then(|v| common::percent_decode(v));
        f.check("decoding", got.as_deref() == Some(want), || {
            format!("{name} decodes to {got:?}, want {want:?}")
        });
    }
    // Forwarding headers are the gateway's: the test peer is not a trusted proxy.
    f.check(
        "x-forwarded-for",
        values(&hs, "x-forwarded-for") == ["127.0.0.1"],
        || format!("{:?}", values(&hs, "x-forwarded-for")),
    );
    f.check(
        "x-forwarded-proto",
        values(&hs, "x-forwarded-proto") == ["http"],
        || format!("{:?}", values(&hs, "x-forwarded-proto")),
    );
    let host = format!("127.0.0.1:{}", gw.port);
    f.check(
        "x-forwarded-host",
        values(&hs, "x-forwarded-host") == [host.as_str()],
        || format!("{:?}", values(&hs, "x-forwarded-host")),
    );
    let up_host = format!("127.0.0.1:{}", menu.port);
    f.check("host", values(&hs, "host") == [up_host.as_str()], || {
        format!("{:?}", values(&hs, "host"))
    });
    f.check(
        "x-request-id",
        values(&hs, "x-request-id").len() == 1,
        || format!("{:?}", values(&hs, "x-request-id")),
    );
    f.check(
        "response x-request-id",
        r.header("x-request-id") == values(&hs, "x-request-id").first().copied(),
        || format!("{:?}", r.header("x-request-id")),
    );

    // Request bodies stream through: Content-Length and chunked.
    let body = "form=1&name=%E5%B1%B1%E7%94%B0".repeat(2000);
    let r = http(
        gw.port,
        "POST",
        "/menu/post-cl",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    );
    let seen = r.echoed();
    f.check(
        "POST content-length",
        r.status == 200 && seen.as_ref().is_some_and(|s| s.body == body.as_bytes()),
        || format!("POST body did not arrive intact: {}", r.summary()),
    );
    if let Some(s) = &seen {
        f.add("POST identity", identity_problems(s, Some(id)));
    }
    let raw = format!(
        "POST /menu/post-chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let r = send_raw(gw.port, raw.as_bytes()).expect("chunked POST");
    f.check(
        "POST chunked",
        r.status == 200 && r.echoed().is_some_and(|s| s.body == b"hello world"),
        || format!("chunked body did not arrive intact: {}", r.summary()),
    );

    // /auth/verify and /auth/userinfo tell the same identity as the proxy.
    let v = get(gw.port, "/auth/verify", &[("Cookie", &cookie)]);
    f.check("verify", v.status == 200, || v.summary());
    for (name, want) in expected_identity(id) {
        f.check(
            "verify headers",
            v.header(name) == Some(want.as_str()),
            || format!("/auth/verify {name}: {:?}, want {want:?}", v.header(name)),
        );
    }
    f.check(
        "verify jwt",
        v.header("x-samlgate-jwt")
            .is_some_and(|t| t.split('.').count() == 3),
        || format!("/auth/verify has no X-Samlgate-Jwt: {:?}", v.headers),
    );
    let u = get(gw.port, "/auth/userinfo", &[("Cookie", &cookie)]);
    let j = Json::parse(&u.text()).unwrap_or(Json::Null);
    f.check(
        "userinfo",
        u.status == 200
            && j.str("user") == Some(id)
            && j.str("facility_name") == Some(FACILITY_NAME)
            && j.str("display_name") == Some(DISPLAY_NAME),
        || format!("userinfo: {}", u.summary()),
    );
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 3. no session

#[test]
fn without_a_session_browsers_go_to_login_and_other_requests_get_401() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let mut f = Failures::new();
    let before = menu.count();

    let target = "/menu/page?x=1&y=%E7%97%85&z=a%26b";
    let r = get(gw.port, target, &[("Accept", HTML)]);
    let loc = r.header("location").unwrap_or("").to_string();
    let ret = loc
        .strip_prefix("/login?return_to=")
        .and_then(|q| common::percent_decode(&q.replace('+', " ")));
    f.check("browser", r.status == 302, || r.summary());
    f.check("browser return_to", ret.as_deref() == Some(target), || {
        format!("Location {loc:?} -> return_to {ret:?}, want {target:?}")
    });
    // The login page it points to is the gateway's own, and carries the return path on.
    let l = get(gw.port, &loc, &[("Accept", HTML)]);
    f.check(
        "login page",
        l.status == 200 && l.text().contains("G-MIS"),
        || format!("GET {loc}: {}", l.summary()),
    );

    // An absolute-looking or odd target is never a return path off the site.
    for t in ["//evil.example/x", "/\\evil.example", "/%2F%2Fevil.example"] {
        let r = get(gw.port, t, &[("Accept", HTML)]);
        let loc = r.header("location").unwrap_or("");
        let ret = loc
            .strip_prefix("/login?return_to=")
            .and_then(common::percent_decode)
            .unwrap_or_default();
        f.check(
            t,
            r.status == 302 || r.status == 400 || r.status == 401,
            || r.summary(),
        );
        if r.status == 302 {
            f.check(
                t,
                ret.starts_with('/') && !ret.starts_with("//") && !ret.contains('\\'),
                || format!("return_to {ret:?} from target {t:?}"),
            );
        }
    }

    for (case, method, headers) in [
        ("API (JSON)", "GET", vec![("Accept", "application/json")]),
        ("no Accept", "GET", vec![]),
        ("POST from a form", "POST", vec![("Accept", HTML)]),
        ("HEAD", "HEAD", vec![("Accept", HTML)]),
        (
            "garbage cookie",
            "GET",
            vec![("Cookie", "samlgate=abc.def")],
        ),
        (
            "forged cookie",
            "GET",
            vec![(
                "Cookie",
                "samlgate=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )],
        ),
    ] {
        let r = if method == "HEAD" {
            // A HEAD answer has no body: read the head only.
            let raw = format!(
                "HEAD /menu/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {HTML}\r\nConnection: close\r\n\r\n"
            );
            let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(raw.as_bytes()).unwrap();
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
            let head = String::from_utf8_lossy(&b).into_owned();
            Reply {
                status: head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                headers: head_headers(&head),
                body: Vec::new(),
                elapsed: Duration::ZERO,
            }
        } else {
            http(gw.port, method, "/menu/x", &headers, b"")
        };
        f.check(case, r.status == 401, || r.summary());
    }
    f.check(
        "nothing reached the staff menu",
        menu.count() == before,
        || menu.all_heads(),
    );

    // Public paths pass without a session, without identity; only the configured prefix.
    let r = get(gw.port, "/static/app.css", &[]);
    f.check("public", r.status == 200, || r.summary());
    if let Some(s) = r.echoed() {
        f.add("public", identity_problems(&s, None));
    }
    let r = get(gw.port, "/static", &[]);
    f.check("prefix is /static/ not /static", r.status == 401, || {
        r.summary()
    });
    let r = get(gw.port, "/staticky/x", &[]);
    f.check(
        "prefix is not a string prefix of a segment",
        r.status == 401,
        || r.summary(),
    );
    // The gateway's own paths are never proxied.
    let before = menu.count();
    for p in [
        "/healthz",
        "/login",
        "/auth/verify",
        "/.well-known/jwks.json",
        "/saml/metadata",
    ] {
        let _ = get(gw.port, p, &[]);
    }
    f.check("own paths", menu.count() == before, || menu.all_heads());
    f.finish(&gw);
}

/// A public prefix is matched on the raw path; a staff menu (or a proxy after us) that removes
/// dot segments would serve a private page for it. Such a request must not reach the staff
/// menu without a session under a path that resolves outside the public prefix.
#[test]
fn dot_segments_do_not_open_private_paths_through_a_public_prefix() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let mut f = Failures::new();
    for target in [
        "/static/../menu/secret",
        "/static/./../menu/secret",
        "/static/%2e%2e/menu/secret",
        "/static/%2E%2E/menu/secret",
        "/static/.%2e/menu/secret",
    ] {
        let before = menu.count();
        let r = get(gw.port, target, &[]);
        let reached: Vec<String> = menu.seen.lock().unwrap()[before..]
            .iter()
            .map(|s| s.target())
            .collect();
        for t in &reached {
            let resolved = remove_dot_segments(&t.replace("%2e", ".").replace("%2E", "."));
            f.check(target, resolved.starts_with("/static/"), || {
                format!(
                    "reached the staff menu without a session as {t:?}, which resolves to \
                     {resolved:?} (outside /static/); gateway answered {}",
                    r.summary()
                )
            });
        }
    }
    f.finish(&gw);
}

/// Issue 12 item 10: with `public_paths = ["/static/"]`, targets that a Tomcat/Spring upstream
/// reads as `..` (`..;`, `%2e%2e;`, `..%3B`), as `/` (`%2F`, `%5C`, `\\`) are refused with 400
/// (`path_refused`), with or without a session, and never reach the staff menu. A genuinely
/// public path still passes without a session (the control).
#[test]
fn public_prefix_escapes_are_refused_and_never_reach_the_staff_menu() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let cookie = login(&gw, "GM1100010");
    let mut f = Failures::new();
    for target in [
        "/static/..;/private",
        "/static/%2e%2e;/private",
        "/static/..%3B/private",
        "/static/x/..%2F..%2Fprivate",
        "/static/..%5Cprivate",
        "/static/..\\private",
        "/static/.;/../private",
        "/static/%252e%252e%253b/private",
        "/static/%252F..%252Fprivate",
        // Review of the fixes, 1: an empty segment before `..` (nginx merge_slashes, Tomcat
        // read `/static//../private` as `/private`).
        "/static//../private",
        "/static/x//../../private",
        "/static//app.css",
        // 2: dot segments that a non-normalising upstream (Django, Flask, Express) routes
        // under the raw prefix, once- and twice-encoded; any %25; an overlong `.` (%c0%ae).
        "/private/../static/x",
        "/private/./x",
        "/private/%2e%2e/static/x",
        "/private/%2E%2e/static/x",
        "/private/%252e%252e/static/x",
        "/static/%25/x",
        "/static/%c0%ae%c0%ae/private",
        "/static/%ff/x",
    ] {
        for (who, hs) in [
            ("no session", vec![("Accept", HTML)]),
            (
                "session",
                vec![("Accept", HTML), ("Cookie", cookie.as_str())],
            ),
        ] {
            let case = format!("{target} ({who})");
            let before = menu.count();
            let r = get(gw.port, target, &hs);
            f.check(&case, r.status == 400, || {
                format!("want 400: {}", r.summary())
            });
            f.check(
                &case,
                r.header("x-samlgate-reason") == Some("path_refused"),
                || format!("want reason path_refused: {}", r.summary()),
            );
            f.check(&case, menu.count() == before, || {
                format!("reached the staff menu:\n{}", menu.all_heads())
            });
        }
    }
    let log = gw.log();
    f.check(
        "log",
        log.contains("path_refused") && log.contains("request target refused"),
        || "no `request target refused` line with reason path_refused in the log".into(),
    );
    // The control: a public path without a session, and a normal private one with a session.
    let r = get(gw.port, "/static/app.css", &[]);
    f.check(
        "public control",
        r.status == 200 && menu.with("/static/app.css").len() == 1,
        || r.summary(),
    );
    let r = get(gw.port, "/static/%2e%2e/menu/x", &[]);
    f.check(
        "decoded dots are refused",
        r.status == 400 && menu.with("/menu/x").is_empty(),
        || r.summary(),
    );
    // Ordinary targets still pass: a trailing slash, %25 in the query, encoded characters
    // that are not dots; and the gateway's own paths still answer.
    for (target, hs) in [
        ("/static/dir/", vec![]),
        ("/static/app.css?q=100%25&r=..%2F..", vec![]),
        ("/static/a%20b.css", vec![]),
        ("/menu/x/", vec![("Cookie", cookie.as_str())]),
        ("/menu/a.b/..c/?p=%252e", vec![("Cookie", cookie.as_str())]),
    ] {
        let before = menu.count();
        let r = get(gw.port, target, &hs);
        f.check(
            target,
            r.status == 200 && menu.count() == before + 1,
            || format!("want it proxied: {}", r.summary()),
        );
    }
    for p in ["/healthz", "/saml/metadata", "/login?return_to=%2Fmenu%2F"] {
        let r = get(gw.port, p, &[]);
        f.check(p, (200..400).contains(&r.status), || r.summary());
    }
    f.finish(&gw);
}

/// Forwarding headers a client might send; the `_` spellings are read as the same header by
/// some frameworks.
const CLIENT_FORWARDING: [(&str, &str); 30] = [
    ("Forwarded", "for=203.0.113.9;host=evil.example;proto=https"),
    ("X-Real-IP", "203.0.113.9"),
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "8443"),
    ("X-Forwarded-Prefix", "/evil"),
    ("X-Forwarded-Server", "evil.example"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Original-URL", "/admin/secret"),
    ("X-Rewrite-URL", "/admin/secret"),
    ("X-Original-URI", "/admin/secret"),
    ("True-Client-IP", "203.0.113.9"),
    ("X_Forwarded_Prefix", "/evil2"),
    ("X_Real_IP", "203.0.113.9"),
    ("x_original_url", "/admin/secret2"),
    // Review of the issue-12 fixes, finding 8: scheme, original-client and client-certificate
    // headers that frameworks and proxies (Envoy, IIS ARR, nginx ssl_client_*) act on.
    ("X-Scheme", "https"),
    ("X-Url-Scheme", "https"),
    ("Front-End-Https", "on"),
    ("X-Original-Forwarded-For", "203.0.113.9"),
    ("X-Envoy-Original-Path", "/admin/secret"),
    ("X-Envoy-External-Address", "203.0.113.9"),
    ("X-Envoy-Internal", "true"),
    ("X-ARR-ClientCert", "MIIB"),
    ("X-SSL-Client-Cert", "MIIB"),
    ("X-SSL-Client-Verify", "SUCCESS"),
    ("X-SSL-Client-S-DN", "CN=admin"),
    ("Ssl-Client-Cert", "MIIB"),
    ("X-Client-Cert", "MIIB"),
    ("X_SSL_Client_DN", "CN=admin"),
];

/// Issue 12 item 11: from a peer that is not in `trusted_proxies`, no forwarding header a client
/// sent reaches the staff menu; X-Forwarded-For is the peer, X-Forwarded-Host and -Proto come
/// from `public_url` (not from the request's Host). From a trusted peer the headers it set are
/// kept, X-Forwarded-For is appended to, and Host/Proto still come from `public_url`.
#[test]
fn forwarding_headers_from_untrusted_clients_never_reach_the_staff_menu() {
    let menu = StaffMenu::start();
    let mut gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let cookie = login(&gw, "GM1100011");
    let public_host = format!("127.0.0.1:{}", gw.port);
    let mut f = Failures::new();
    let send = |gw: &Gateway, path: &str| {
        let mut hs: Vec<(&str, &str)> = vec![("Cookie", cookie.as_str()), ("Host", "evil.example")];
        hs.extend(CLIENT_FORWARDING.iter().copied());
        // `http` adds its own Host: send the raw request so ours is the only one.
        let mut raw = format!("GET {path} HTTP/1.1\r\n");
        for (k, v) in &hs {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("Connection: close\r\n\r\n");
        send_raw(gw.port, raw.as_bytes()).expect("proxied request")
    };
    for path in ["/menu/fwd-session", "/static/fwd-public"] {
        let r = send(&gw, path);
        let Some(seen) = r.echoed() else {
            f.check(path, false, || format!("not proxied: {}", r.summary()));
            continue;
        };
        let hs = seen.headers();
        for (k, v) in &hs {
            let forwarding = k == "forwarded"
                || k.replace('_', "-").starts_with("x-forwarded")
                || CLIENT_FORWARDING
                    .iter()
                    .any(|(c, _)| c.to_ascii_lowercase() == *k);
            let ours = matches!(
                k.as_str(),
                "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto"
            );
            f.check(path, !forwarding || ours, || {
                format!("client header reached the staff menu: {k}: {v}")
            });
        }
        f.check(
            path,
            values(&hs, "x-forwarded-for") == ["127.0.0.1"],
            || format!("x-forwarded-for {:?}", values(&hs, "x-forwarded-for")),
        );
        f.check(
            path,
            values(&hs, "x-forwarded-host") == [public_host.as_str()],
            || {
                format!(
                    "x-forwarded-host {:?}, want public_url's",
                    values(&hs, "x-forwarded-host")
                )
            },
        );
        f.check(path, values(&hs, "x-forwarded-proto") == ["http"], || {
            format!("x-forwarded-proto {:?}", values(&hs, "x-forwarded-proto"))
        });
    }

    // The test client (127.0.0.1) as a trusted proxy: its headers are kept.
    let cfg = fs::read_to_string(&gw.config).unwrap();
    fs::write(
        &gw.config,
        cfg.replacen(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            1,
        ),
    )
    .unwrap();
    gw.restart();
    let r = send(&gw, "/menu/fwd-trusted");
    match r.echoed() {
        None => f.check("trusted", false, || format!("not proxied: {}", r.summary())),
        Some(seen) => {
            let hs = seen.headers();
            for (k, want) in [
                ("x-real-ip", "203.0.113.9"),
                ("x-forwarded-prefix", "/evil"),
                ("x-forwarded-for", "203.0.113.9, 127.0.0.1"),
                ("x-forwarded-host", public_host.as_str()),
                ("x-forwarded-proto", "http"),
            ] {
                f.check("trusted", values(&hs, k) == [want], || {
                    format!("{k} {:?}, want {want:?}", values(&hs, k))
                });
            }
        }
    }
    f.finish(&gw);
}

/// `*` and CONNECT targets name no page of the staff menu: refused with 400, never forwarded
/// (pasted into an upstream URI, `*` once sent the request to the upstream host's port 80).
/// An absolute-form target is cut to its path and still goes to the configured upstream.
#[test]
fn odd_request_targets_are_refused_or_kept_on_the_upstream() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let cookie = login(&gw, "GM1100009");
    let mut f = Failures::new();
    for (case, head) in [
        ("asterisk", "OPTIONS * HTTP/1.1\r\n".to_string()),
        ("asterisk GET", "GET * HTTP/1.1\r\n".to_string()),
        (
            "asterisk upgrade (shared pool)",
            "GET * HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                .to_string(),
        ),
        ("connect", "CONNECT 127.0.0.1:9 HTTP/1.1\r\n".to_string()),
    ] {
        let before = menu.count();
        let raw = format!(
            "{head}Host: 127.0.0.1:{}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            gw.port
        );
        // hyper may refuse the target itself and close: also fine, nothing forwarded.
        if let Ok(r) = send_raw(gw.port, raw.as_bytes()) {
            f.check(case, r.status == 400, || {
                format!("want 400: {}", r.summary())
            });
        }
        f.check(case, menu.count() == before, || {
            format!("reached the staff menu:\n{}", menu.all_heads())
        });
    }
    let raw = format!(
        "GET http://evil.example/menu/absolute HTTP/1.1\r\nHost: evil.example\r\n\
         Cookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    let r = send_raw(gw.port, raw.as_bytes()).expect("absolute-form request");
    let seen = menu.with("/menu/absolute");
    f.check("absolute form", r.status == 200 && seen.len() == 1, || {
        format!("want 200 from the staff menu: {}", r.summary())
    });
    if let [s] = seen.as_slice() {
        f.check("absolute form", s.target() == "/menu/absolute", || {
            format!("the staff menu saw target {:?}", s.target())
        });
    }
    f.finish(&gw);
}

/// RFC 3986 §5.2.4 on a path (query kept as is).
fn remove_dot_segments(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segs.iter().enumerate() {
        match *s {
            "." => {
                if i == segs.len() - 1 {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == segs.len() - 1 {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if let Some(q) = query {
        p.push('?');
        p.push_str(q);
    }
    p
}

// ------------------------------------------------------------------------------------------
// 4. the staff menu down or hanging

#[test]
fn a_down_staff_menu_is_a_502_page_at_once_and_a_hanging_one_a_504() {
    // A loopback port with nothing listening (bound, then released).
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let gw = gateway(Conf {
        upstream: Some(&url),
        timeout_seconds: 2,
        ..Conf::default()
    });
    let cookie = login(&gw, "GM1400001");
    let mut f = Failures::new();

    for (case, path, h) in [
        (
            "session, browser",
            "/menu/",
            vec![("Cookie", cookie.as_str()), ("Accept", HTML)],
        ),
        (
            "session, API",
            "/api/x",
            vec![("Cookie", cookie.as_str()), ("Accept", "application/json")],
        ),
        ("public path", "/static/a.css", vec![]),
    ] {
        let r = get(gw.port, path, &h);
        f.check(case, r.status == 502, || format!("down: {}", r.summary()));
        f.check(case, r.elapsed < Duration::from_secs(6), || {
            format!("down: took {:?}", r.elapsed)
        });
        if case == "session, browser" {
            f.check(
                case,
                r.header("content-type")
                    .unwrap_or("")
                    .starts_with("text/html")
                    && r.text().contains("<h1>"),
                || format!("502 is not a page: {}", r.summary()),
            );
        }
    }

    // Now something listens there but never answers: 504 after timeout_seconds (2 s).
    let hang = TcpListener::bind(("127.0.0.1", port)).expect("rebind the upstream port");
    hang.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let hang_thread = thread::spawn(move || {
        let mut held = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            match hang.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
        drop(held);
        drop(hang);
    });
    let r = get(
        gw.port,
        "/menu/hang",
        &[("Cookie", &cookie), ("Accept", HTML)],
    );
    f.check("hanging", r.status == 504, || {
        format!("hanging: {}", r.summary())
    });
    f.check(
        "hanging",
        r.elapsed >= Duration::from_millis(1500) && r.elapsed < Duration::from_secs(6),
        || {
            format!(
                "hanging: answered after {:?} (timeout_seconds = 2)",
                r.elapsed
            )
        },
    );
    stop.store(true, Ordering::SeqCst);
    hang_thread.join().unwrap();

    // And when the staff menu is back, requests pass again.
    let back = TcpListener::bind(("127.0.0.1", port)).expect("rebind for the staff menu");
    let menu = StaffMenu::on(back);
    let r = get(gw.port, "/menu/back", &[("Cookie", &cookie)]);
    f.check("back", r.status == 200 && menu.count() == 1, || {
        format!("after the staff menu came back: {}", r.summary())
    });
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 5. WebSocket

#[test]
fn websocket_upgrade_passes_through_with_a_session_only() {
    // The SHA-1 above against RFC 6455's own example.
    assert_eq!(
        ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let id = "GM1500001";
    let cookie = login(&gw, id);
    let key = "x3JJHMbDL1EzLkh9GBhXDw==";
    let upgrade = |cookie: Option<&str>| {
        let mut req = format!(
            "GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://127.0.0.1:{}\r\nX-Auth-Request-User: spoofed-admin\r\n",
            gw.port, gw.port
        );
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        req.push_str("\r\n");
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let r = read_reply(&mut s, started).expect("upgrade reply");
        (s, r)
    };

    // Without a session: refused, and the staff menu never sees it.
    let (_s, r) = upgrade(None);
    assert_eq!(r.status, 401, "upgrade without session: {}", r.summary());
    assert_eq!(menu.count(), 0, "{}", menu.all_heads());

    // The stand-in itself speaks WebSocket (checked straight, without the gateway).
    {
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", menu.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /ws/direct HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let r = read_reply(&mut s, started).expect("direct upgrade");
        assert_eq!(r.status, 101, "{}", r.summary());
        s.write_all(&frame(0x1, b"direct", Some([5, 6, 7, 8])))
            .unwrap();
        let (op, p) = read_frame(&mut s, &mut Vec::new(), false).expect("direct echo");
        assert_eq!((op, p.as_slice()), (0x1, &b"echo:direct"[..]));
    }
    let direct = menu.count();

    let (mut s, r) = upgrade(Some(&cookie));
    assert_eq!(
        r.status,
        101,
        "upgrade with session: {}\n{}",
        r.summary(),
        gw.log_tail(3000)
    );
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some(ws_accept(key).as_str()),
        "{:?}",
        r.headers
    );
    assert!(r
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    let mut buf = Vec::new();
    for msg in ["hello", "こんにちは 病院", &"x".repeat(300)] {
        s.write_all(&frame(0x1, msg.as_bytes(), Some([1, 2, 3, 4])))
            .unwrap();
        let (op, p) = read_frame(&mut s, &mut buf, false).expect("echo frame");
        assert_eq!(op, 0x1);
        assert_eq!(String::from_utf8_lossy(&p), format!("echo:{msg}"));
    }
    s.write_all(&frame(0x8, &[0x03, 0xe8], Some([9, 9, 9, 9])))
        .unwrap();
    let (op, _) = read_frame(&mut s, &mut buf, false).expect("close frame");
    assert_eq!(op, 0x8);

    let seen = menu.with("/ws/chat");
    assert_eq!(seen.len(), 1, "{}", menu.all_heads());
    assert_eq!(menu.count(), direct + 1);
    let p = identity_problems(&seen[0], Some(id));
    assert!(
        p.is_empty(),
        "upgrade request identity: {p:?}\n{}",
        seen[0].head
    );
}

// ------------------------------------------------------------------------------------------
// 6. revocation

#[test]
fn an_ended_session_is_refused_by_the_proxy_and_by_verify() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        admin: true,
        ..Conf::default()
    });
    let (a, b) = ("GM1600001", "GM1600002");
    let ca = login(&gw, a);
    let cb = login(&gw, b);
    let cb2 = login(&gw, b);
    let mut f = Failures::new();
    for (who, c) in [("a", &ca), ("b", &cb), ("b2", &cb2)] {
        let r = get(gw.port, "/menu/before", &[("Cookie", c)]);
        f.check(who, r.status == 200, || format!("before: {}", r.summary()));
        let v = get(gw.port, "/auth/verify", &[("Cookie", c)]);
        f.check(
            who,
            v.status == 200 && v.header("x-samlgate-jwt").is_some(),
            || format!("verify before: {}", v.summary()),
        );
    }

    let refused = |f: &mut Failures, case: &str, c: &str| {
        let before = menu.count();
        let r = get(
            gw.port,
            "/menu/after",
            &[("Cookie", c), ("Accept", "application/json")],
        );
        f.check(case, r.status == 401, || {
            format!("proxy API: {}", r.summary())
        });
        let r = get(gw.port, "/menu/after", &[("Cookie", c), ("Accept", HTML)]);
        f.check(
            case,
            r.status == 302
                && r.header("location")
                    .is_some_and(|l| l.starts_with("/login")),
            || format!("proxy browser: {}", r.summary()),
        );
        let v = get(gw.port, "/auth/verify", &[("Cookie", c)]);
        f.check(case, v.status == 401, || format!("verify: {}", v.summary()));
        f.check(case, v.header("x-samlgate-jwt").is_none(), || {
            format!("verify still hands out a token: {:?}", v.headers)
        });
        f.check(case, menu.count() == before, || {
            format!(
                "an ended session reached the staff menu:\n{}",
                menu.all_heads()
            )
        });
    };

    // Logout ends that session only.
    let r = get(gw.port, "/logout", &[("Cookie", &ca)]);
    f.check(
        "logout",
        r.status == 200 || r.status == 302 || r.status == 303,
        || r.summary(),
    );
    refused(&mut f, "after logout", &ca);
    let r = get(gw.port, "/menu/other", &[("Cookie", &cb)]);
    f.check(
        "another user's session survives a logout",
        r.status == 200,
        || r.summary(),
    );

    // A secretariat block (CLI through the admin API) ends every session of the account.
    cli_ok(
        &gw,
        &["consent", "block", b, "--by", "t", "--note", "proxy test"],
    );
    refused(&mut f, "after block (session 1)", &cb);
    refused(&mut f, "after block (session 2)", &cb2);
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 7. the signed token, checked by PyJWT

fn python() -> PathBuf {
    let py = common::python();
    let ok = Command::new(&py)
        .args(["-c", "import jwt; jwt.PyJWK"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import PyJWT: run scripts/install-deps.sh (tests/support/requirements.txt \
         lists PyJWT)",
        py.display()
    );
    py
}

fn jwt_check(args: &[String]) -> Json {
    let out = Command::new(python())
        .arg(Path::new(ROOT).join("tests/support/jwt_check.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn jwt_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "jwt_check.py {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Json::parse(stdout.trim()).unwrap_or_else(|e| panic!("jwt_check.py output ({e}): {stdout}"))
}

fn num(j: &Json, k: &str) -> Option<f64> {
    match j.get(k) {
        Some(Json::Num(n)) => Some(*n),
        _ => None,
    }
}

fn jwks(gw: &Gateway) -> Vec<Json> {
    let r = get(gw.port, "/.well-known/jwks.json", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    match Json::parse(&r.text())
        .ok()
        .and_then(|j| j.get("keys").cloned())
    {
        Some(Json::Arr(v)) => v,
        _ => panic!("JWKS is not {{\"keys\": [...]}}: {}", r.text()),
    }
}

fn proxied_token(gw: &Gateway, menu: &StaffMenu, cookie: &str, marker: &str) -> String {
    let path = format!("/menu/{marker}");
    let r = get(gw.port, &path, &[("Cookie", cookie)]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let seen = menu.with(&path);
    let hs = seen.last().expect("staff menu saw the request").headers();
    values(&hs, "x-samlgate-jwt")
        .first()
        .unwrap_or_else(|| panic!("no x-samlgate-jwt:\n{}", seen[0].head))
        .to_string()
}

fn token_header(t: &str) -> Json {
    let h = t.split('.').next().unwrap();
    let mut s = h.replace('-', "+").replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    Json::parse(&String::from_utf8(common::base64_decode(&s).unwrap()).unwrap()).unwrap()
}

#[test]
fn the_token_verifies_with_pyjwt_and_the_jwks_and_forgeries_do_not() {
    let menu = StaffMenu::start();
    let lifetime = 120;
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        token_lifetime: Some(lifetime),
        ..Conf::default()
    });
    let id = "GM1700001";
    let cookie = login(&gw, id);
    let mut f = Failures::new();

    // The JWKS: public EC P-256 keys only.
    let keys = jwks(&gw);
    f.check("jwks", keys.len() == 1, || format!("{keys:?}"));
    for k in &keys {
        f.check(
            "jwk",
            k.str("kty") == Some("EC")
                && k.str("crv") == Some("P-256")
                && k.str("alg") == Some("ES256")
                && k.str("kid").is_some_and(|s| !s.is_empty())
                && k.str("x").is_some()
                && k.str("y").is_some()
                && k.get("d").is_none(),
            || format!("JWK {k:?}"),
        );
    }

    let t1 = proxied_token(&gw, &menu, &cookie, "jwt-1");
    let v = get(gw.port, "/auth/verify", &[("Cookie", &cookie)]);
    let t2 = v
        .header("x-samlgate-jwt")
        .expect("verify token")
        .to_string();
    let issuer = gw.public_url();
    let audience = menu.url();
    let keys_dir = gw.dir.path().join("token-keys");
    let out = jwt_check(&[
        "suite".into(),
        "--jwks-url".into(),
        gw.url("/.well-known/jwks.json"),
        "--issuer".into(),
        issuer.clone(),
        "--audience".into(),
        audience.clone(),
        "--token".into(),
        t1.clone(),
        "--token".into(),
        t2.clone(),
        "--keys-dir".into(),
        keys_dir.display().to_string(),
    ]);
    let outcome = |k: &str| out.get(k).cloned().unwrap_or(Json::Null);
    let ok = |o: &Json| o.get("ok") == Some(&Json::Bool(true));
    let err = |o: &Json| o.str("error").map(str::to_string);

    // The header.
    let h = outcome("header");
    f.check("header", h.str("alg") == Some("ES256"), || format!("{h:?}"));
    f.check(
        "header kid",
        keys.iter().any(|k| k.str("kid") == h.str("kid")),
        || format!("kid {:?} not in the JWKS", h.str("kid")),
    );

    // The valid tokens (proxy and /auth/verify) and their claims.
    match outcome("valid") {
        Json::Arr(v) if v.len() == 2 => {
            for (i, o) in v.iter().enumerate() {
                f.check("valid", ok(o), || format!("token {i} refused: {o:?}"));
            }
            let c = v[0].get("claims").cloned().unwrap_or(Json::Null);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let (iat, nbf, exp) = (num(&c, "iat"), num(&c, "nbf"), num(&c, "exp"));
            for (k, want) in [
                ("iss", issuer.as_str()),
                ("aud", audience.as_str()),
                ("sub", id),
                ("email", EMAIL),
                ("category", CATEGORY),
                ("facility_code", FACILITY_CODE),
                ("facility_name", FACILITY_NAME),
                ("display_name", DISPLAY_NAME),
                ("local_user", id),
            ] {
                f.check("claims", c.str(k) == Some(want), || {
                    format!("claim {k}: {:?}, want {want:?} (claims {c:?})", c.get(k))
                });
            }
            f.check("sid", c.str("sid").is_some_and(|s| s.len() >= 16), || {
                format!("sid {:?}", c.get("sid"))
            });
            f.check(
                "times",
                matches!((iat, nbf, exp), (Some(i), Some(n), Some(e))
                    if n == i && e > i && e - i <= lifetime as f64
                        && (i - now).abs() < 30.0 && e > now),
                || format!("iat {iat:?} nbf {nbf:?} exp {exp:?} (lifetime {lifetime}, now {now})"),
            );
            // Both tokens are for the same session.
            let c2 = v[1].get("claims").cloned().unwrap_or(Json::Null);
            f.check("same session", c2.str("sid") == c.str("sid"), || {
                format!(
                    "proxy sid {:?} vs verify sid {:?}",
                    c.get("sid"),
                    c2.get("sid")
                )
            });
        }
        o => f.check("valid", false, || format!("{o:?}")),
    }
    f.check("valid again", ok(&outcome("valid_again")), || {
        format!("{:?}", outcome("valid_again"))
    });
    f.check(
        "cache",
        num(&out, "fetches_after_valid") == Some(1.0),
        || {
            format!(
                "JWKS fetched {:?} times for 3 verifications",
                num(&out, "fetches_after_valid")
            )
        },
    );
    f.check("PyJWKClient", ok(&outcome("pyjwkclient")), || {
        format!("{:?}", outcome("pyjwkclient"))
    });
    f.check(
        "expiry still ahead",
        ok(&outcome("valid_two_seconds_before_exp")),
        || format!("{:?}", outcome("valid_two_seconds_before_exp")),
    );
    f.check(
        "control re-signed",
        ok(&outcome("resigned_control")),
        || format!("{:?}", outcome("resigned_control")),
    );

    // Every forgery refused, for the right reason.
    for (case, want) in [
        ("tampered_exp", "InvalidSignatureError"),
        ("tampered_sub", "InvalidSignatureError"),
        ("tampered_signature", "InvalidSignatureError"),
        // An empty signature: PyJWT decodes it and the check fails.
        ("truncated", "InvalidSignatureError"),
        ("alg_none", "InvalidAlgorithmError"),
        ("alg_hs256_public_key", "InvalidAlgorithmError"),
        ("expired_by_clock", "ExpiredSignatureError"),
        ("expired_by_negative_leeway", "ExpiredSignatureError"),
        ("resigned_expired", "ExpiredSignatureError"),
        ("resigned_not_yet_valid", "ImmatureSignatureError"),
        ("resigned_without_exp", "MissingRequiredClaimError"),
        ("wrong_audience", "InvalidAudienceError"),
        ("wrong_issuer", "InvalidIssuerError"),
        ("unknown_kid", "UnknownKeyError"),
        ("unknown_kid_again", "UnknownKeyError"),
        ("unknown_kid_eager", "UnknownKeyError"),
        ("foreign_key_same_kid", "InvalidSignatureError"),
    ] {
        let o = outcome(case);
        f.check(case, !ok(&o) && err(&o).as_deref() == Some(want), || {
            format!("want refusal {want}, got {o:?}")
        });
    }
    // An unknown kid refreshes the JWKS once, and no more often than min_refresh_seconds.
    f.check(
        "refresh throttled",
        num(&out, "fetches_after_unknown_kids_throttled") == Some(1.0),
        || format!("{:?}", num(&out, "fetches_after_unknown_kids_throttled")),
    );
    f.check(
        "refresh on unknown kid",
        num(&out, "fetches_after_unknown_kid_eager") == Some(2.0),
        || format!("{:?}", num(&out, "fetches_after_unknown_kid_eager")),
    );

    // After logout, /auth/verify gives no token, and the proxy refuses; a token taken before
    // the logout is still valid until its exp (the documented trade-off of self-verified
    // tokens: keep lifetime_seconds short).
    let _ = get(gw.port, "/logout", &[("Cookie", &cookie)]);
    let v = get(gw.port, "/auth/verify", &[("Cookie", &cookie)]);
    f.check(
        "verify after logout",
        v.status == 401 && v.header("x-samlgate-jwt").is_none(),
        || v.summary(),
    );
    let again = jwt_check(&[
        "verify".into(),
        "--jwks-url".into(),
        gw.url("/.well-known/jwks.json"),
        "--issuer".into(),
        issuer,
        "--audience".into(),
        audience,
        "--token".into(),
        t1,
    ]);
    f.check(
        "trade-off: old token verifies until exp",
        matches!(again.get("results"), Some(Json::Arr(v)) if v.len() == 1 && ok(&v[0])),
        || format!("{again:?}"),
    );
    f.finish(&gw);
}

#[test]
fn a_token_key_rotation_is_published_before_it_signs() {
    let menu = StaffMenu::start();
    let gw = gateway(Conf {
        upstream: Some(&menu.url()),
        ..Conf::default()
    });
    let cookie = login(&gw, "GM1800001");
    let mut f = Failures::new();
    let issuer = gw.public_url();
    let audience = menu.url();
    let verify_all = |tokens: &[&str]| -> Json {
        let mut a: Vec<String> = vec![
            "verify".into(),
            "--jwks-url".into(),
            gw.url("/.well-known/jwks.json"),
            "--issuer".into(),
            issuer.clone(),
            "--audience".into(),
            audience.clone(),
        ];
        for t in tokens {
            a.push("--token".into());
            a.push(t.to_string());
        }
        jwt_check(&a)
    };
    let results = |j: &Json| -> Vec<Json> {
        match j.get("results") {
            Some(Json::Arr(v)) => v.clone(),
            _ => Vec::new(),
        }
    };
    let kid_of = |t: &str| token_header(t).str("kid").unwrap_or_default().to_string();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within 20 s (the gateway re-reads [token] keys_dir every \
                 10 s)\n{}",
                gw.log_tail(3000)
            );
            thread::sleep(Duration::from_millis(250));
        }
    };

    let t1 = proxied_token(&gw, &menu, &cookie, "rot-1");
    let k1 = kid_of(&t1);
    f.check("one key", jwks(&gw).len() == 1, || {
        format!("{:?}", jwks(&gw))
    });

    // keys new --token: published (next), not signing yet.
    let out = cli_ok(&gw, &["keys", "new", "--token"]);
    wait("the new token key in the JWKS", &|| jwks(&gw).len() == 2);
    let kids: Vec<String> = jwks(&gw)
        .iter()
        .filter_map(|k| k.str("kid").map(str::to_string))
        .collect();
    let k2 = kids
        .iter()
        .find(|k| **k != k1)
        .cloned()
        .unwrap_or_else(|| panic!("no new kid in {kids:?} ({out})"));
    let t_next = proxied_token(&gw, &menu, &cookie, "rot-2");
    f.check("next does not sign", kid_of(&t_next) == k1, || {
        format!("signed by {} before promote", kid_of(&t_next))
    });

    // promote: the new key signs; the old one is still published (state next), so tokens
    // signed before the promote verify until they expire.
    cli_ok(&gw, &["keys", "promote", "--token", &k2]);
    wait("tokens signed by the promoted key", &|| {
        kid_of(&proxied_token(&gw, &menu, &cookie, "rot-wait")) == k2
    });
    let t2 = proxied_token(&gw, &menu, &cookie, "rot-3");
    let v = get(gw.port, "/auth/verify", &[("Cookie", &cookie)]);
    let t2v = v.header("x-samlgate-jwt").unwrap_or_default().to_string();
    f.check("verify signs with the new key", kid_of(&t2v) == k2, || {
        format!("/auth/verify token kid {}", kid_of(&t2v))
    });
    f.check("both published", jwks(&gw).len() == 2, || {
        format!("{:?}", jwks(&gw))
    });
    let r = results(&verify_all(&[&t1, &t2, &t2v]));
    f.check(
        "old and new tokens verify after promote",
        r.len() == 3 && r.iter().all(|o| o.get("ok") == Some(&Json::Bool(true))),
        || format!("{r:?}"),
    );

    // retire the old key: unpublished; a token it signed no longer verifies anywhere.
    cli_ok(&gw, &["keys", "retire", "--token", &k1]);
    wait("the retired key gone from the JWKS", &|| {
        jwks(&gw).len() == 1
    });
    let r = results(&verify_all(&[&t2, &t1]));
    f.check(
        "after retire",
        r.len() == 2
            && r[0].get("ok") == Some(&Json::Bool(true))
            && r[1].str("error") == Some("UnknownKeyError"),
        || format!("{r:?}"),
    );
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 8. the examples as the staff menu

struct Py {
    child: Child,
    log: PathBuf,
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- {} -----\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn reserve_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_example(dir: &Path, script: &str, args: &[String], port: u16) -> Py {
    let log = dir.join(format!("{}.log", script.replace('/', "_")));
    let out = fs::File::create(&log).unwrap();
    let child = Command::new(python())
        .arg(Path::new(ROOT).join("examples").join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn example");
    let mut py = Py { child, log };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = py.child.try_wait() {
            panic!(
                "{script} exited ({st}):\n{}",
                fs::read_to_string(&py.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{script} did not listen on {port}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    py
}

#[test]
fn the_example_staff_menus_show_the_user_behind_the_proxy() {
    // (a) the header-trusting app.
    let port = reserve_port();
    let gw = gateway(Conf {
        upstream: Some(&format!("http://127.0.0.1:{port}")),
        ..Conf::default()
    });
    let _app = start_example(
        gw.dir.path(),
        "staff-menu-headers/app.py",
        &["--listen".into(), format!("127.0.0.1:{port}")],
        port,
    );
    let id = "GM1900001";
    let cookie = login(&gw, id);
    let mut f = Failures::new();
    let r = get(
        gw.port,
        "/",
        &[
            ("Cookie", &cookie),
            ("Accept", "application/json"),
            ("X-Auth-Request-User", "spoofed-admin"),
            ("X_Auth_Request_User", "spoofed-admin"),
        ],
    );
    let j = Json::parse(&r.text()).unwrap_or(Json::Null);
    f.check(
        "headers app",
        r.status == 200
            && j.str("user") == Some(id)
            && j.str("facility_name") == Some(FACILITY_NAME)
            && j.str("display_name") == Some(DISPLAY_NAME)
            && j.str("category") == Some(CATEGORY)
            && j.str("local_user") == Some(id),
        || format!("headers app JSON: {}", r.summary()),
    );
    let r = get(gw.port, "/", &[("Cookie", &cookie), ("Accept", HTML)]);
    f.check(
        "headers app page",
        r.status == 200
            && r.text()
                .contains(&format!("<span id=\"hello\">{DISPLAY_NAME}</span>")),
        || r.summary(),
    );
    let r = get(gw.port, "/static/site.css", &[]);
    f.check("headers app public", r.status == 200, || r.summary());
    // Straight to the app (bypassing the gateway) with no header: refused by the app itself.
    let r = get(port, "/", &[]);
    f.check("headers app direct", r.status == 401, || r.summary());
    f.finish(&gw);
    drop(_app);
    drop(gw);

    // (b) the JWT-verifying app: it ignores the headers and checks the token with the JWKS.
    let port = reserve_port();
    let gw = gateway(Conf {
        upstream: Some(&format!("http://127.0.0.1:{port}")),
        ..Conf::default()
    });
    let _app = start_example(
        gw.dir.path(),
        "staff-menu-jwt/app.py",
        &[
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--gateway".into(),
            gw.public_url(),
        ],
        port,
    );
    let cookie = login(&gw, id);
    let mut f = Failures::new();
    let r = get(
        gw.port,
        "/",
        &[("Cookie", &cookie), ("Accept", "application/json")],
    );
    let j = Json::parse(&r.text()).unwrap_or(Json::Null);
    f.check(
        "jwt app",
        r.status == 200
            && j.str("sub") == Some(id)
            && j.str("facility_name") == Some(FACILITY_NAME)
            && j.str("display_name") == Some(DISPLAY_NAME),
        || format!("jwt app JSON: {}", r.summary()),
    );
    let r = get(gw.port, "/", &[("Cookie", &cookie), ("Accept", HTML)]);
    f.check(
        "jwt app page",
        r.status == 200
            && r.text()
                .contains(&format!("<span id=\"hello\">{DISPLAY_NAME}</span>")),
        || r.summary(),
    );
    // Direct, with a made-up or a tampered token: refused by the app.
    let v = get(gw.port, "/auth/verify", &[("Cookie", &cookie)]);
    let tok = v.header("x-samlgate-jwt").unwrap_or_default().to_string();
    let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
    if parts.len() == 3 {
        parts[2] = parts[2].chars().rev().collect();
    }
    for (case, t) in [
        ("none", "".to_string()),
        ("garbage", "a.b.c".to_string()),
        ("tampered", parts.join(".")),
    ] {
        let r = get(port, "/", &[("X-Samlgate-Jwt", &t)]);
        f.check(case, r.status == 401, || {
            format!("jwt app direct {case}: {}", r.summary())
        });
    }
    let r = get(
        port,
        "/",
        &[("X-Samlgate-Jwt", &tok), ("Accept", "application/json")],
    );
    f.check("jwt app direct with a valid token", r.status == 200, || {
        r.summary()
    });
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 9. Caddy forward_auth (deploy/caddy/Caddyfile) in front of the staff menu

fn caddy_binary() -> PathBuf {
    let p = std::env::var_os("SAMLGATE_CADDY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/caddy"));
    assert!(
        p.is_file(),
        "caddy is not installed and tests/proxy.rs runs deploy/caddy/Caddyfile under the real \
         Caddy (it does not skip).\n  fix: `apt-get install -y --no-install-recommends caddy` \
         (Debian 12 has 2.6), or set SAMLGATE_CADDY=/path/to/caddy"
    );
    p
}

fn replace_required(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "deploy/caddy/Caddyfile no longer contains `{from}`; tests/proxy.rs rewrites it: update both"
    );
    text.replace(from, to)
}

#[test]
fn caddy_forward_auth_in_front_of_the_staff_menu() {
    let caddy = caddy_binary();
    let menu = StaffMenu::start();
    let caddy_port = reserve_port();
    // The gateway without [upstream]: Caddy does the proxying, samlgate only answers
    // /auth/verify and its own pages. Its public URL is Caddy's.
    let mut gw = gateway(Conf {
        token_lifetime: Some(120),
        ..Conf::default()
    });
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let cfg = cfg
        .replace(
            &format!("public_url = \"http://127.0.0.1:{}\"", gw.port),
            &format!("public_url = \"http://127.0.0.1:{caddy_port}\""),
        )
        .replace(
            &format!("entity_id = \"http://127.0.0.1:{}/saml/metadata\"", gw.port),
            &format!("entity_id = \"http://127.0.0.1:{caddy_port}/saml/metadata\""),
        );
    let cfg = set_section(
        &cfg,
        "server",
        &format!(
            "listen = \"127.0.0.1:{}\"\npublic_url = \"http://127.0.0.1:{caddy_port}\"\n\
             trusted_proxies = [\"127.0.0.1\"]\n",
            gw.port
        ),
    );
    fs::write(&gw.config, cfg).unwrap();
    gw.restart();

    let src = fs::read_to_string(Path::new(ROOT).join("deploy/caddy/Caddyfile"))
        .expect("deploy/caddy/Caddyfile");
    let site = replace_required(&src, "127.0.0.1:8080", &format!("127.0.0.1:{}", gw.port));
    let site = replace_required(&site, "127.0.0.1:9000", &format!("127.0.0.1:{}", menu.port));
    let site = replace_required(
        &site,
        "gw.example.jp {",
        &format!("http://127.0.0.1:{caddy_port} {{"),
    );
    let dir = gw.dir.path().join("caddy");
    fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("Caddyfile");
    fs::write(
        &conf,
        format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}"),
    )
    .unwrap();
    let log = dir.join("caddy.log");
    let child = Command::new(&caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(dir.join("caddy.err")).unwrap())
        .spawn()
        .expect("spawn caddy");
    let mut caddy_proc = Py {
        child,
        log: dir.join("caddy.err"),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", caddy_port)).is_err() {
        if let Ok(Some(st)) = caddy_proc.child.try_wait() {
            panic!(
                "caddy exited ({st}):\n{}",
                fs::read_to_string(dir.join("caddy.err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "caddy did not listen");
        thread::sleep(Duration::from_millis(100));
    }

    let mut f = Failures::new();
    let cp = caddy_port;
    // No session: the staff menu is never reached; a browser is sent to /login, an API gets 401.
    let before = menu.count();
    let r = get(
        cp,
        "/menu/page?x=1",
        &[("Accept", HTML), ("X-Auth-Request-User", "spoofed-admin")],
    );
    let loc = r.header("location").unwrap_or("").to_string();
    f.check(
        "caddy browser",
        r.status == 302 && loc.starts_with("/login?return_to="),
        || r.summary(),
    );
    let ret = loc
        .strip_prefix("/login?return_to=")
        .and_then(common::percent_decode)
        .unwrap_or_default();
    f.check("caddy return_to", ret == "/menu/page?x=1", || {
        format!("return_to {ret:?} from {loc:?}")
    });
    let r = get(
        cp,
        "/menu/api",
        &[
            ("Accept", "application/json"),
            ("X-Auth-Request-User", "spoofed-admin"),
        ],
    );
    f.check("caddy api", r.status == 401, || r.summary());
    f.check(
        "caddy: nothing reached the staff menu",
        menu.count() == before,
        || menu.all_heads(),
    );

    // Log in through Caddy (the ACS is the gateway's, under Caddy's public URL).
    let id = "GM2000001";
    let attrs = user_attrs();
    let mut args: Vec<String> = vec![
        "response".into(),
        "--sp-entity".into(),
        format!("http://127.0.0.1:{cp}/saml/metadata"),
        "--acs".into(),
        format!("http://127.0.0.1:{cp}/saml/acs"),
        "--key".into(),
        gw.idp[0].key.display().to_string(),
        "--cert".into(),
        gw.idp[0].cert.display().to_string(),
        "--nameid".into(),
        id.into(),
    ];
    for a in &attrs {
        args.push("--attr".into());
        args.push(a.clone());
    }
    let (r, cookie) = post_login(cp, &args);
    let Some(cookie) = cookie else {
        panic!(
            "login through caddy: {}\n{}",
            r.summary(),
            gw.log_tail(3000)
        );
    };

    // With a session: the identity from the gateway, never the client's, in any spelling.
    for (i, (case, spoof)) in spoof_cases().into_iter().enumerate() {
        let path = format!("/menu/caddy-s{i}");
        let mut h = spoof.clone();
        h.push(("Cookie", &cookie));
        let r = get(cp, &path, &h);
        match menu.with(&path).as_slice() {
            [seen] => {
                f.check(case, r.status == 200, || {
                    format!("caddy with session: {}", r.summary())
                });
                f.add(&format!("caddy {case}"), identity_problems(seen, Some(id)));
            }
            other => f.check(case, false, || {
                format!(
                    "caddy: staff menu saw {} requests; {}",
                    other.len(),
                    r.summary()
                )
            }),
        }
    }
    // The token from forward_auth verifies with PyJWT.
    if let Some(seen) = menu.with("/menu/caddy-s0").first() {
        let tok = values(&seen.headers(), "x-samlgate-jwt")
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let out = jwt_check(&[
            "verify".into(),
            "--jwks-url".into(),
            format!("http://127.0.0.1:{cp}/.well-known/jwks.json"),
            "--issuer".into(),
            format!("http://127.0.0.1:{cp}"),
            "--audience".into(),
            format!("http://127.0.0.1:{cp}"),
            "--token".into(),
            tok,
        ]);
        f.check(
            "caddy token",
            matches!(out.get("results"), Some(Json::Arr(v)) if v.len() == 1
                && v[0].get("ok") == Some(&Json::Bool(true))),
            || format!("{out:?}"),
        );
    }
    // A user without an e-mail address: samlgate answers an empty X-Auth-Request-Email, which
    // copy_headers does not copy; the client's own must still not arrive.
    let id2 = "GM2000002";
    let mut args2 = args.clone();
    let n = args2.iter().position(|a| a == id).unwrap();
    args2[n] = id2.into();
    args2.extend(["--drop-attr".to_string(), "mail".to_string()]);
    let (r, cookie2) = post_login(cp, &args2);
    let cookie2 =
        cookie2.unwrap_or_else(|| panic!("login without mail through caddy: {}", r.summary()));
    let r = get(
        cp,
        "/menu/caddy-no-mail",
        &[
            ("Cookie", &cookie2),
            ("X-Auth-Request-Email", "spoofed@example.jp"),
        ],
    );
    match menu.with("/menu/caddy-no-mail").as_slice() {
        [seen] => {
            let hs = seen.headers();
            f.check(
                "caddy no mail",
                values(&hs, "x-auth-request-user") == [id2],
                || seen.head.clone(),
            );
            f.check("caddy no mail", !seen.head.contains("spoofed"), || {
                format!("the client's e-mail reached the staff menu:\n{}", seen.head)
            });
        }
        other => f.check("caddy no mail", false, || {
            format!("staff menu saw {} requests; {}", other.len(), r.summary())
        }),
    }

    // Logout through Caddy ends it.
    let _ = get(cp, "/logout", &[("Cookie", &cookie)]);
    let before = menu.count();
    let r = get(
        cp,
        "/menu/after-logout",
        &[("Cookie", &cookie), ("Accept", "application/json")],
    );
    f.check(
        "caddy after logout",
        r.status == 401 && menu.count() == before,
        || r.summary(),
    );
    f.finish(&gw);
    drop(caddy_proc);
}

/// Posts a response the test IdP signs with `args` to the ACS behind `port` (RelayState
/// `/menu`): the reply and the session cookie pair (`samlgate=...`) it set, if any.
fn post_login(port: u16, args: &[String]) -> (Reply, Option<String>) {
    let b64 = String::from_utf8(common::run_idp(args)).unwrap();
    let body = format!(
        "SAMLResponse={}&RelayState=%2Fmenu",
        common::form_encode(b64.trim())
    );
    let r = http(
        port,
        "POST",
        "/saml/acs",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    let cookie = r
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| {
            let pair = v.split(';').next()?.trim();
            (pair.starts_with("samlgate=") && pair.len() > 9).then(|| pair.to_string())
        });
    (r, cookie)
}

/// An upstream that answers every request with `conn <n> req <m>` (its own connection counter
/// and the request number on that connection); with `close_each`, it closes the connection
/// after every answer (like a server with a zero keep-alive timeout).
fn counting_upstream(close_each: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let n = conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            thread::spawn(move || {
                let mut buf = Vec::new();
                for m in 1.. {
                    let head_end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i;
                        }
                        match fill(&mut c, &mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    };
                    buf.drain(..head_end + 4);
                    let body = format!("conn {n} req {m}");
                    let close = if close_each {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{body}",
                        body.len()
                    );
                    if c.write_all(resp.as_bytes()).is_err() || close_each {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Three requests on one keep-alive client connection; the bodies the upstream answered.
fn three_on_one_connection(port: u16) -> Vec<String> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (0..3)
        .map(|i| {
            let req = format!("GET /static/a{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let r = read_reply(&mut s, started).unwrap();
            assert_eq!(
                r.status,
                200,
                "request {i}: {}",
                String::from_utf8_lossy(&r.body)
            );
            String::from_utf8_lossy(&r.body).into_owned()
        })
        .collect()
}

#[test]
fn each_client_connection_keeps_its_own_upstream_connection() {
    let up = counting_upstream(false);
    let url = format!("http://127.0.0.1:{up}");
    let gw = gateway(Conf {
        upstream: Some(&url),
        ..Conf::default()
    });
    let a = three_on_one_connection(gw.port);
    let b = three_on_one_connection(gw.port);
    let conn_of = |s: &String| s.split(" req").next().unwrap_or("").to_string();
    // One upstream connection per client connection, reused for its requests in order...
    assert!(a.iter().all(|s| conn_of(s) == conn_of(&a[0])), "{a:?}");
    assert!(b.iter().all(|s| conn_of(s) == conn_of(&b[0])), "{b:?}");
    assert_eq!(a[2].split(" req ").nth(1), Some("3"), "{a:?}");
    // ...and never shared with another client connection.
    assert_ne!(conn_of(&a[0]), conn_of(&b[0]), "{a:?} {b:?}");

    // An upstream that closes after every answer: each request still gets through, on a new
    // upstream connection.
    let up = counting_upstream(true);
    let url = format!("http://127.0.0.1:{up}");
    let gw = gateway(Conf {
        upstream: Some(&url),
        ..Conf::default()
    });
    let c = three_on_one_connection(gw.port);
    assert!(c.iter().all(|s| s.ends_with("req 1")), "{c:?}");
    assert_eq!(
        c.iter()
            .map(conn_of)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "{c:?}"
    );
}

// ------------------------------------------------------------------------------------------
// `[admin] listen` (issue 12 item 14)

/// With `[admin] listen` set, the main listener answers 404 for the admin API and `/metrics`
/// (and does not proxy them to the staff menu); the admin listener serves both, and nothing
/// else. Without it (the control, first) the main listener serves them.
#[test]
fn admin_listen_moves_the_admin_api_and_metrics_off_the_main_listener() {
    let menu = StaffMenu::start();
    let mut gw = gateway(Conf {
        upstream: Some(&menu.url()),
        admin: true,
        ..Conf::default()
    });
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let op = |port: u16| {
        http(
            port,
            "POST",
            "/admin/v1/op",
            &[
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
            ],
            br#"{"op":"users_list"}"#,
        )
    };
    let mut f = Failures::new();
    let r = op(gw.port);
    f.check("control: admin API on main", r.status == 200, || {
        r.summary()
    });
    let r = get(gw.port, "/metrics", &[]);
    f.check("control: /metrics on main", r.status == 200, || r.summary());

    let admin_port = common::free_port();
    let cfg = fs::read_to_string(&gw.config).unwrap();
    fs::write(
        &gw.config,
        set_section(
            &cfg,
            "admin",
            &format!("token_file = \"admin.token\"\nlisten = \"127.0.0.1:{admin_port}\"\n"),
        ),
    )
    .unwrap();
    gw.restart();
    let before = menu.count();
    let r = op(gw.port);
    f.check("admin API on main", r.status == 404, || r.summary());
    let r = get(gw.port, "/metrics", &[]);
    f.check("/metrics on main", r.status == 404, || r.summary());
    f.check("not proxied", menu.count() == before, || menu.all_heads());

    let r = op(admin_port);
    f.check(
        "admin API on the admin listener",
        r.status == 200 && r.text().starts_with('['),
        || r.summary(),
    );
    let r = http(
        admin_port,
        "POST",
        "/admin/v1/op",
        &[],
        br#"{"op":"users_list"}"#,
    );
    f.check("still needs the token", r.status == 401, || r.summary());
    let r = get(admin_port, "/metrics", &[]);
    f.check(
        "/metrics on the admin listener",
        r.status == 200 && r.text().contains("samlgate_"),
        || r.summary(),
    );
    for path in ["/menu/x", "/auth/verify", "/saml/login"] {
        let r = get(admin_port, path, &[]);
        f.check(path, r.status == 404, || {
            format!("admin listener: {}", r.summary())
        });
    }
    f.check(
        "admin listener never proxies",
        menu.count() == before,
        || menu.all_heads(),
    );
    // The secretariat CLI finds the API on the admin listener.
    let out = cli_ok(&gw, &["users", "list"]);
    f.check(
        "CLI through the admin listener",
        !out.contains("error"),
        || out.clone(),
    );
    f.finish(&gw);
}
