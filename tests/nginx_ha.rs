//! Two gateway instances on one real PostgreSQL behind Debian's nginx, round-robin: the
//! deployment of deploy/postgresql/ end to end. nginx runs deploy/nginx/samlgate.conf with its
//! `upstream samlgate` replaced by deploy/postgresql/nginx-upstream.conf (addresses rewritten to
//! the two test instances). Every browser request goes through nginx; the instances are only
//! called directly to pin a step to one of them ("on A", "seen on B") and for /readyz.
//!
//! nginx answers with `X-Test-Upstream: $upstream_addr` and passes the instance that decided
//! a forward-auth subrequest to the staff menu as `X-Test-Auth-Upstream` (test-only lines), so
//! each assertion knows which instance served it. One worker process: round-robin alternates.
//!
//!   - a login through nginx is a session on both instances (forward-auth served by A and B);
//!   - a response accepted on one is a replay on the other; 8 concurrent posts of one
//!     response through nginx give exactly one session;
//!   - a consent page shown by one instance is accepted on the other, and a consent accepted
//!     on A is not asked again on B;
//!   - a logout through nginx on A, and a secretariat block on A (admin API), end the
//!     session on B within 1 s (measured, printed);
//!   - `kill -9` of A while logins and forward-auth stream through nginx: every acknowledged
//!     login is a session on B, forward-auth never fails, at most the post in flight is lost;
//!   - a PostgreSQL restart while traffic streams: 503 `store_unavailable` on logins, no
//!     staff page served, /readyz red on both, then recovery with the same processes.
//!
//! nginx must be installed (scripts/install-deps.sh); without it this test fails, never skips.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{form_encode, pgtest, Gateway, Resp};

const ADMIN_TOKEN: &str = "nginx-ha-admin-token-0123456789abcdef";
/// One staff-menu path; nginx guards it with auth_request.
const MENU: &str = "/staff/menu";

// ------------------------------------------------------------------------------------------
// The stand-in staff menu: 200 with the request head it received as the body.

fn start_staff_menu() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind staff menu");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = echo(conn);
            });
        }
    });
    port
}

fn echo(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    loop {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        // GETs only (nginx sends no body for them); keep-alive, as nginx's upstream keepalive.
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{head}",
            head.len()
        )?;
        conn.flush()?;
    }
}

// ------------------------------------------------------------------------------------------
// nginx

struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- nginx error.log ---\n{}",
                fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
            );
        }
        // SIGTERM: the master stops its worker too (SIGKILL would orphan it).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    let bin = std::env::var_os("SAMLGATE_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        bin.is_file(),
        "{} not found: tests/nginx_ha.rs needs the real nginx (scripts/install-deps.sh installs \
         Debian's `nginx`, or set SAMLGATE_NGINX)",
        bin.display()
    );
    bin
}

fn replace_required(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(
        text.contains(from),
        "{file} no longer contains `{from}`; tests/nginx_ha.rs rewrites it: update both"
    );
    text.replacen(from, to, 1)
}

/// deploy/nginx/samlgate.conf with deploy/postgresql/nginx-upstream.conf as its samlgate
/// upstream (the two test instances), plain HTTP on `port`, the redirect server dropped, and
/// the test-only upstream headers.
fn site_conf(a: u16, b: u16, staff: u16, port: u16) -> String {
    let root = Path::new(common::ROOT);
    let up_file = "deploy/postgresql/nginx-upstream.conf";
    let upstream = fs::read_to_string(root.join(up_file)).expect(up_file);
    let upstream = replace_required(
        &upstream,
        "10.0.0.11:8080",
        &format!("127.0.0.1:{a}"),
        up_file,
    );
    let upstream = replace_required(
        &upstream,
        "10.0.0.12:8080",
        &format!("127.0.0.1:{b}"),
        up_file,
    );
    let file = "deploy/nginx/samlgate.conf";
    let src = fs::read_to_string(root.join(file)).expect(file);
    let start = src.find("upstream samlgate {").expect("upstream samlgate");
    let end = start + src[start..].find("}\n").unwrap() + 2;
    let src = format!("{}{}{}", &src[..start], upstream, &src[end..]);
    let src = replace_required(
        &src,
        "server 127.0.0.1:9000;",
        &format!("server 127.0.0.1:{staff};"),
        file,
    );
    let src = replace_required(
        &src,
        "        auth_request /auth/verify;\n",
        "        auth_request /auth/verify;\n        auth_request_set $test_auth_upstream $upstream_addr;\n        proxy_set_header X-Test-Auth-Upstream $test_auth_upstream;\n",
        file,
    );
    let src = replace_required(
        &src,
        "    server_tokens off;\n    # Relative",
        "    server_tokens off;\n    add_header X-Test-Upstream $upstream_addr always;\n    # Relative",
        file,
    );
    // The http->https redirect server is not under test here.
    let redirect = src
        .find("server {\n    listen 80;")
        .expect("redirect server");
    let redirect_end = redirect + src[redirect..].find("\n}\n").unwrap() + 3;
    let src = format!("{}{}", &src[..redirect], &src[redirect_end..]);
    let mut out = String::new();
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("ssl_") || (t.starts_with("listen ") && t.contains("[::]")) {
            continue;
        }
        if t.starts_with("listen ") {
            out.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn start_nginx(dir: &Path, site: String) -> Nginx {
    use std::os::unix::fs::PermissionsExt;
    // As root, nginx's worker runs as `nobody` and must reach the temp paths.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.display();
    fs::write(dir.join("site.conf"), site).unwrap();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\nhttp {{\n  access_log {d}/access.log;\n\
         client_body_temp_path {d}/cb;\n  proxy_temp_path {d}/px;\n  fastcgi_temp_path {d}/fc;\n\
         uwsgi_temp_path {d}/uw;\n  scgi_temp_path {d}/sc;\n  include {d}/site.conf;\n}}\n"
    );
    fs::write(dir.join("nginx.conf"), main).unwrap();
    let args = |t: bool| {
        let mut v = vec![];
        if t {
            v.push("-t".to_string());
        }
        v.extend([
            "-p".to_string(),
            format!("{d}/"),
            "-e".into(),
            format!("{d}/error.log"),
            "-c".into(),
            format!("{d}/nginx.conf"),
        ]);
        v
    };
    let check = Command::new(nginx_binary())
        .args(args(true))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}\n{}",
        String::from_utf8_lossy(&check.stderr),
        fs::read_to_string(dir.join("site.conf")).unwrap()
    );
    let child = Command::new(nginx_binary())
        .args(args(false))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Nginx {
        child,
        dir: dir.to_path_buf(),
    }
}

// ------------------------------------------------------------------------------------------
// Two instances behind nginx

struct Ha {
    a: Gateway,
    b: Gateway,
    base: String,
    _nginx: Nginx,
    _dir: tempfile::TempDir,
}

/// `gw`'s config for instance `port` of the pair: PostgreSQL at `db`, the public URL nginx's,
/// nginx trusted for X-Forwarded-*, the consent page on, the admin API on.
fn pair_config(gw: &Gateway, port: u16, db: &str, public: &str) -> String {
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let here = gw.dir.path().display().to_string();
    let mut out = String::new();
    for line in cfg.lines() {
        let l = if line == "path = \"store\"" || line.starts_with("url = \"postgres") {
            format!("url = \"{db}\"")
        } else if line.starts_with("listen = ") {
            format!("listen = \"127.0.0.1:{port}\"")
        } else if line.starts_with("public_url = ") {
            format!("public_url = \"{public}\"\ntrusted_proxies = [\"127.0.0.1\"]")
        } else if line == "required = false" {
            "required = true".into()
        } else {
            line.replace("\"sp-keys\"", &format!("\"{here}/sp-keys\""))
                .replace(
                    "\"idp-metadata.xml\"",
                    &format!("\"{here}/idp-metadata.xml\""),
                )
        };
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(&format!("\n[admin]\ntoken_file = \"{here}/admin.token\"\n"));
    out
}

impl Ha {
    /// A and B on `db` (a migrated database) behind a fresh nginx.
    fn start(db: &str) -> Ha {
        let dir = tempfile::tempdir().unwrap();
        let (nginx_port, staff) = (common::free_port(), start_staff_menu());
        let base = format!("http://127.0.0.1:{nginx_port}");
        let mut a = Gateway::start();
        let mut b = Gateway::start();
        // B runs A's config (same SP entity, keys, IdP metadata), on its own port.
        let tok = a.dir.path().join("admin.token");
        fs::write(&tok, format!("{ADMIN_TOKEN}\n")).unwrap();
        fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let (cfg_a, cfg_b) = (
            pair_config(&a, a.port, db, &base),
            pair_config(&a, b.port, db, &base),
        );
        fs::write(&a.config, cfg_a).unwrap();
        fs::write(&b.config, cfg_b).unwrap();
        a.restart();
        b.restart();
        let nginx = start_nginx(dir.path(), site_conf(a.port, b.port, staff, nginx_port));
        let ha = Ha {
            a,
            b,
            base,
            _nginx: nginx,
            _dir: dir,
        };
        let t = Instant::now();
        while ha.try_get("/login", None).is_none_or(|r| r.status != 200) {
            assert!(t.elapsed() < Duration::from_secs(20), "nginx not up");
            std::thread::sleep(Duration::from_millis(50));
        }
        ha
    }

    fn acs(&self) -> String {
        format!("{}/saml/acs", self.base)
    }

    /// A signed response for `nameid`, addressed to nginx's ACS.
    fn response(&self, nameid: &str) -> String {
        let acs = self.acs();
        self.a.make_response(&["--nameid", nameid, "--acs", &acs])
    }

    fn try_call(
        &self,
        method: &str,
        path: &str,
        h: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Option<Resp> {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(10))
            .build();
        let mut req = agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in h {
            req = req.set(k, v);
        }
        let r = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let r = match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(_) => return None,
        };
        let status = r.status();
        let mut headers = Vec::new();
        let mut names = r.headers_names();
        names.dedup();
        for n in names {
            for v in r.all(&n) {
                headers.push((n.to_ascii_lowercase(), v.to_string()));
            }
        }
        let mut body = Vec::new();
        r.into_reader().read_to_end(&mut body).ok()?;
        Some(Resp {
            status,
            headers,
            body,
        })
    }

    fn call(&self, method: &str, path: &str, h: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        self.try_call(method, path, h, body)
            .unwrap_or_else(|| panic!("{method} {path} through nginx: transport error"))
    }

    fn try_get(&self, path: &str, cookie: Option<&str>) -> Option<Resp> {
        let h: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        self.try_call("GET", path, &h, None)
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        self.call("GET", path, &h, None)
    }

    fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Resp {
        let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(c) = cookie {
            h.push(("Cookie", c));
        }
        self.call("POST", path, &h, Some(form.as_bytes()))
    }

    fn post_acs(&self, b64: &str) -> Resp {
        self.post(
            "/saml/acs",
            None,
            &format!("SAMLResponse={}", form_encode(b64)),
        )
    }

    /// The instance port that answered a request nginx proxied to samlgate.
    fn served_by(&self, r: &Resp) -> u16 {
        port_of(r.header("x-test-upstream").unwrap_or(""))
            .unwrap_or_else(|| panic!("no X-Test-Upstream: {}", r.summary()))
    }

    /// Moves nginx's round-robin so the next samlgate request goes to `port` (one worker:
    /// A and B alternate); the caller asserts it with `served_by`.
    fn next_to(&self, port: u16) {
        for _ in 0..3 {
            if self.served_by(&self.get("/login", None)) != port {
                return;
            }
        }
        panic!("round-robin never left :{port}");
    }

    /// GET the staff menu through nginx: (status, identity user, instance that authorized).
    fn menu(&self, cookie: &str) -> (u16, String, Option<u16>) {
        let r = self.get(MENU, Some(cookie));
        let body = r.text();
        let field = |name: &str| {
            body.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.trim().to_string())
        };
        let user = if r.status == 200 {
            field("x-auth-request-user").unwrap_or_default()
        } else {
            String::new()
        };
        let by = field("x-test-auth-upstream").and_then(|v| port_of(&v));
        (r.status, user, by)
    }

    /// The whole first login through nginx: ACS (on `on`), consent page and accept on the
    /// other instance and `on` again. Returns the session cookie.
    fn login_with_consent(&self, b64: &str, on: u16) -> String {
        self.next_to(on);
        let r = self.post_acs(b64);
        assert_eq!(self.served_by(&r), on, "ACS pinned");
        assert_eq!(
            r.location(),
            Some("/consent"),
            "first login asks: {}",
            r.summary()
        );
        let pending = cookie_pair(&r, "samlgate-consent=").expect("pending consent cookie");
        let page = self.get("/consent", Some(&pending));
        assert_ne!(
            self.served_by(&page),
            on,
            "consent page from the other instance"
        );
        assert_eq!(page.status, 200, "consent page: {}", page.summary());
        let csrf = csrf_of(&page.text()).expect("csrf in the consent page");
        let form = format!("csrf={}&decision=accept", form_encode(&csrf));
        let r = self.post("/consent", Some(&pending), &form);
        assert_eq!(self.served_by(&r), on, "accept pinned");
        r.session_cookie()
            .unwrap_or_else(|| panic!("accept gave no session: {}", r.summary()))
    }
}

fn port_of(addr: &str) -> Option<u16> {
    // "$upstream_addr" may list several tries ("a:1, b:2"): the last one answered.
    addr.rsplit(", ")
        .next()?
        .rsplit(':')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn cookie_pair(r: &Resp, prefix: &str) -> Option<String> {
    r.headers_all("set-cookie").into_iter().find_map(|c| {
        let pair = c.trim().split(';').next()?.trim();
        (pair.starts_with(prefix) && pair.len() > prefix.len()).then(|| pair.to_string())
    })
}

fn csrf_of(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf\"")?;
    let tag = &html[html[..i].rfind('<')?..i + html[i..].find('>')?];
    let v = tag.find("value=\"")? + 7;
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    t.elapsed()
}

// ------------------------------------------------------------------------------------------

#[test]
fn a_login_through_nginx_is_a_session_on_both_and_a_replay_on_the_other() {
    let ha = Ha::start(&pgtest::fresh_db());
    let (a, b) = (ha.a.port, ha.b.port);
    // First login (consent on), then a returning login: a session without the consent page.
    let first = ha.response("GM0007001");
    ha.login_with_consent(&first, a);
    let b64 = ha.response("GM0007001");
    ha.next_to(a);
    let r = ha.post_acs(&b64);
    assert_eq!(ha.served_by(&r), a);
    let cookie = r
        .session_cookie()
        .unwrap_or_else(|| panic!("login on A: {}", r.summary()));
    // Forward-auth alternates: both instances accept the session made on A.
    let mut by = Vec::new();
    for _ in 0..4 {
        let (status, user, inst) = ha.menu(&cookie);
        assert_eq!(
            (status, user.as_str()),
            (200, "GM0007001"),
            "staff menu through nginx"
        );
        by.push(inst.expect("X-Test-Auth-Upstream"));
    }
    assert!(by.contains(&a) && by.contains(&b), "forward-auth by {by:?}");
    // The response accepted on A is a replay on B.
    ha.next_to(b);
    let r = ha.post_acs(&b64);
    assert_eq!(ha.served_by(&r), b);
    assert_eq!(r.reason(), Some("replay"), "replay on B: {}", r.summary());
    assert!(r.session_cookie().is_none());
    // 8 concurrent posts of one fresh response through nginx: exactly one session.
    let b64 = ha.response("GM0007001");
    let results: Vec<(u16, Option<String>, Option<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let r = ha.post_acs(&b64);
                    (
                        ha.served_by(&r),
                        r.session_cookie(),
                        r.reason().map(str::to_string),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sessions = results.iter().filter(|r| r.1.is_some()).count();
    assert_eq!(sessions, 1, "8 concurrent posts through nginx: {results:?}");
    assert!(
        results.iter().any(|r| r.0 == a) && results.iter().any(|r| r.0 == b),
        "the posts reached both instances: {results:?}"
    );
    for r in results.iter().filter(|r| r.1.is_none()) {
        assert_eq!(r.2.as_deref(), Some("replay"), "{results:?}");
    }
}

#[test]
fn a_consent_accepted_on_a_is_not_asked_again_on_b() {
    let ha = Ha::start(&pgtest::fresh_db());
    let (a, b) = (ha.a.port, ha.b.port);
    let first = ha.response("GM0007101");
    let c1 = ha.login_with_consent(&first, a);
    assert_eq!(ha.menu(&c1).0, 200);
    // The next login of that account lands on B: no consent page, a session at once.
    let b64 = ha.response("GM0007101");
    ha.next_to(b);
    let r = ha.post_acs(&b64);
    assert_eq!(ha.served_by(&r), b);
    assert_ne!(
        r.location(),
        Some("/consent"),
        "B asked again: {}",
        r.summary()
    );
    let c2 = r
        .session_cookie()
        .unwrap_or_else(|| panic!("login on B: {}", r.summary()));
    assert_eq!(ha.menu(&c2).0, 200);
    // Another account still gets the consent page on B (B does ask when it should).
    let other = ha.response("GM0007102");
    ha.next_to(b);
    let r = ha.post_acs(&other);
    assert_eq!(
        (ha.served_by(&r), r.location()),
        (b, Some("/consent")),
        "{}",
        r.summary()
    );
}

/// Polls B directly (its own cache, not nginx's choice) until it refuses `cookie`; asserts
/// the bound, then that nginx serves the staff menu from neither instance.
fn ended_on_b_within_a_second(ha: &Ha, cookie: &str, what: &str) {
    let t = Instant::now();
    let took = wait_for(what, Duration::from_secs(1), || {
        ha.b.verify(Some(cookie)).status == 401
    });
    eprintln!("{what}: seen on B after {took:?} (contract: < 1 s)");
    assert!(t.elapsed() < Duration::from_secs(1));
    for _ in 0..4 {
        let (status, _, _) = ha.menu(cookie);
        assert_eq!(
            status, 302,
            "{what}: the staff menu through nginx after the end"
        );
    }
}

#[test]
fn a_logout_or_block_on_a_ends_the_session_on_b_within_a_second() {
    let ha = Ha::start(&pgtest::fresh_db());
    let a = ha.a.port;
    let s1 = ha.login_with_consent(&ha.response("GM0007201"), a);
    let s2 = ha.login_with_consent(&ha.response("GM0007202"), a);
    for c in [&s1, &s2] {
        // B has seen both sessions, so its /auth/verify cache holds them.
        for _ in 0..3 {
            assert_eq!(ha.b.verify(Some(c)).status, 200);
        }
    }
    // Logout through nginx, on A.
    ha.next_to(a);
    let r = ha.get("/logout", Some(&s1));
    assert_eq!(ha.served_by(&r), a);
    assert!(r.status < 400, "logout: {}", r.summary());
    ended_on_b_within_a_second(&ha, &s1, "logout on A");
    // The secretariat blocks the other account through A's admin API.
    let agent = ureq::AgentBuilder::new().build();
    let op = r#"{"op":"consent_block","gmis_id":"GM0007202","by":"test","note":"nginx ha"}"#;
    let r = agent
        .post(&ha.a.url("/admin/v1/op"))
        .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .set("Content-Type", "application/json")
        .send_string(op);
    assert!(r.is_ok(), "consent_block on A: {r:?}");
    ended_on_b_within_a_second(&ha, &s2, "block on A");
    // Blocked means blocked on B as well: a new login there is refused.
    ha.next_to(ha.b.port);
    let r = ha.post_acs(&ha.response("GM0007202"));
    assert_eq!(
        r.reason(),
        Some("blocked_by_secretariat"),
        "{}",
        r.summary()
    );
}

#[test]
fn kill_9_of_a_mid_traffic_loses_no_acknowledged_login_and_b_keeps_serving() {
    let mut ha = Ha::start(&pgtest::fresh_db());
    let (a, b) = (ha.a.port, ha.b.port);
    let keep = ha.login_with_consent(&ha.response("GM0007300"), a);
    // Accounts that consented already (returning logins are one request each).
    let ids = ["GM0007301", "GM0007302"];
    for id in ids {
        ha.login_with_consent(&ha.response(id), a);
    }
    let acs = ha.acs();
    let cases: Vec<Vec<&str>> = (0..40)
        .map(|i| vec!["--nameid", ids[i % 2], "--acs", acs.as_str()])
        .collect();
    let responses = ha.a.make_responses(&cases);
    let killed = Mutex::new(None::<Instant>);
    // (posted at, acknowledged cookie or None, status)
    let posts = Mutex::new(Vec::new());
    let menus = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let ha_ref = &ha;
    std::thread::scope(|s| {
        s.spawn(|| {
            for b64 in &responses {
                let r = ha_ref.try_call(
                    "POST",
                    "/saml/acs",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    Some(format!("SAMLResponse={}", form_encode(b64)).as_bytes()),
                );
                let at = Instant::now();
                let (status, cookie) = r.map_or((0, None), |r| (r.status, r.session_cookie()));
                posts.lock().unwrap().push((at, cookie, status));
            }
            done.store(true, SeqCst);
        });
        s.spawn(|| {
            while !done.load(SeqCst) {
                let st = ha_ref.try_get(MENU, Some(&keep)).map_or(0, |r| r.status);
                menus.lock().unwrap().push((Instant::now(), st));
            }
        });
        while posts
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.1.is_some())
            .count()
            < 10
            && !done.load(SeqCst)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        *killed.lock().unwrap() = Some(Instant::now());
        kill_9(&ha_ref.a);
    });
    let killed = killed.into_inner().unwrap().unwrap();
    let posts = posts.into_inner().unwrap();
    let acked: Vec<&String> = posts.iter().filter_map(|p| p.1.as_ref()).collect();
    for c in &acked {
        let r = ha.b.verify(Some(c));
        assert_eq!(
            r.status,
            200,
            "an acknowledged login is a session on B: {}",
            r.summary()
        );
    }
    let after: Vec<_> = posts.iter().filter(|p| p.0 > killed).collect();
    let lost = after.iter().filter(|p| p.1.is_none()).count();
    eprintln!(
        "{} of {} logins acknowledged through nginx, {} after the kill -9 of A; {lost} not \
         acknowledged (in flight at the kill); all acknowledged are sessions on B",
        acked.len(),
        posts.len(),
        after.len()
    );
    assert!(after.len() >= 15, "logins after the kill: {}", after.len());
    assert!(
        lost <= 1,
        "posts lost after the kill: {:?}",
        after.iter().map(|p| p.2).collect::<Vec<_>>()
    );
    let menus = menus.into_inner().unwrap();
    let bad: Vec<u16> = menus.iter().filter(|m| m.1 != 200).map(|m| m.1).collect();
    let after_kill = menus.iter().filter(|m| m.0 > killed).count();
    eprintln!(
        "forward-auth through nginx: {} requests, {after_kill} after the kill, non-200: {bad:?}",
        menus.len()
    );
    assert!(
        bad.is_empty() && after_kill > 0,
        "forward-auth failed: {bad:?}"
    );
    // B alone serves: a login and the staff menu.
    let r = ha.post_acs(&ha.response("GM0007300"));
    assert_eq!(ha.served_by(&r), b, "{}", r.summary());
    assert!(r.session_cookie().is_some(), "{}", r.summary());
    ha.a.stop(false); // reaps the killed process
}

/// kill -9 of `gw`'s process while other threads still use the pair (`stop` needs `&mut`).
fn kill_9(gw: &Gateway) {
    let pid = gw.pid().expect("A running");
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 {pid}");
}

/// Traffic phases of the PostgreSQL restart test; only the steady ones are judged.
const UP: u8 = 0;
const GOING_DOWN: u8 = 1;
const DOWN: u8 = 2;
const COMING_BACK: u8 = 3;
const BACK: u8 = 4;

/// One request of the traffic thread: (phase, "menu" | "login", status, reason, seconds).
type Seen = (u8, &'static str, u16, Option<String>, f64);

/// Streams forward-auth and (every 8th round) logins through nginx until `stop`, each tagged
/// with the phase it started in. The last 10 responses are kept for the BACK phase.
fn traffic(
    ha: &Ha,
    keep: &str,
    responses: &[String],
    phase: &AtomicU8,
    stop: &AtomicBool,
    down_logins: &AtomicUsize,
) -> Vec<Seen> {
    let (mut seen, mut used) = (Vec::new(), 0);
    for round in 0.. {
        if stop.load(SeqCst) {
            break;
        }
        let p = phase.load(SeqCst);
        let t = Instant::now();
        let st = ha.try_get(MENU, Some(keep)).map_or(0, |r| r.status);
        seen.push((p, "menu", st, None, t.elapsed().as_secs_f64()));
        let spare = if p == BACK { 0 } else { 10 };
        if round % 8 == 0 && used + spare < responses.len() {
            let t = Instant::now();
            let r = ha.post_acs(&responses[used]);
            used += 1;
            let reason = r.reason().map(str::to_string);
            seen.push((p, "login", r.status, reason, t.elapsed().as_secs_f64()));
            if p == DOWN {
                down_logins.fetch_add(1, SeqCst);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

fn both_readyz(ha: &Ha, status: u16) -> bool {
    [&ha.a, &ha.b].iter().all(|g| {
        let t = Instant::now();
        let st = g.get("/readyz", None).status;
        let took = t.elapsed();
        if took > Duration::from_millis(500) {
            eprintln!(":{} /readyz took {took:?} ({st})", g.port);
        }
        st == status
    })
}

#[test]
fn a_postgresql_restart_mid_traffic_gives_503s_then_recovers_without_restart() {
    let cluster = pgtest::OwnCluster::start("nginx-ha");
    let ha = Ha::start(&cluster.url);
    let pids = (ha.a.pid(), ha.b.pid());
    let keep = ha.login_with_consent(&ha.response("GM0007400"), ha.a.port);
    let acs = ha.acs();
    let cases: Vec<Vec<&str>> = (0..40)
        .map(|_| vec!["--nameid", "GM0007400", "--acs", acs.as_str()])
        .collect();
    let responses = ha.a.make_responses(&cases);
    let (phase, stop) = (AtomicU8::new(UP), AtomicBool::new(false));
    let down_logins = AtomicUsize::new(0);
    let seen = std::thread::scope(|s| {
        let t = s.spawn(|| traffic(&ha, &keep, &responses, &phase, &stop, &down_logins));
        // A failed assertion below must stop the traffic, or the scope would wait for ever.
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(800));
        phase.store(GOING_DOWN, SeqCst);
        cluster.down();
        let red = wait_for("/readyz red on both", Duration::from_secs(20), || {
            both_readyz(&ha, 503)
        });
        eprintln!("both /readyz red {red:?} after the database stopped");
        phase.store(DOWN, SeqCst);
        // A load balancer's health check gets its answer at once, not after a pool timeout.
        for g in [&ha.a, &ha.b] {
            let t = Instant::now();
            assert_eq!(g.get("/readyz", None).status, 503);
            let took = t.elapsed();
            eprintln!(":{} /readyz during the outage: {took:?}", g.port);
            assert!(took < Duration::from_millis(500), "/readyz took {took:?}");
        }
        // At least a second of outage, and until a login has been tried in it (a fixed second
        // saw none once, on a machine busy with other suites).
        std::thread::sleep(Duration::from_millis(1000));
        wait_for("a login during the outage", Duration::from_secs(10), || {
            down_logins.load(SeqCst) > 0
        });
        phase.store(COMING_BACK, SeqCst);
        cluster.up();
        let green = wait_for("/readyz green on both", Duration::from_secs(15), || {
            both_readyz(&ha, 200)
        });
        eprintln!("both /readyz green {green:?} after the database came back");
        phase.store(BACK, SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, SeqCst);
        t.join().unwrap()
    });
    let of = |p: u8, what: &str| -> Vec<&Seen> {
        seen.iter().filter(|l| l.0 == p && l.1 == what).collect()
    };
    let mut counts = std::collections::BTreeMap::new();
    for l in &seen {
        *counts.entry((l.0, l.1, l.2, l.3.clone())).or_insert(0) += 1;
    }
    eprintln!("(phase, what, status, reason): count\n{counts:#?}");
    let (menu, login) = (of(UP, "menu"), of(UP, "login"));
    assert!(
        menu.iter().chain(&login).all(|l| matches!(l.2, 200 | 303)),
        "before the outage: {menu:?} {login:?}"
    );
    let (menu, login) = (of(DOWN, "menu"), of(DOWN, "login"));
    assert!(
        !menu.is_empty() && !login.is_empty(),
        "traffic during the outage"
    );
    // Fail closed: nginx turns the 503 from auth_request into 500, never the staff page.
    assert!(
        menu.iter().all(|l| l.2 == 500),
        "staff menu during the outage: {menu:?}"
    );
    assert!(
        login
            .iter()
            .all(|l| l.2 == 503 && l.3.as_deref() == Some("store_unavailable")),
        "logins during the outage: {login:?}"
    );
    // Known gaps while the database goes away (not asserted; reported in the run's output):
    // a live session answered 401 (302 to the login page) instead of 503, and a login in
    // flight answered 500 `internal_error` (the replay cache's I/O error) instead of 503.
    let odd: Vec<&Seen> = seen
        .iter()
        .filter(|l| l.0 == GOING_DOWN && (l.2 == 302 || l.2 == 500 && l.1 == "login"))
        .collect();
    eprintln!("while going down, 302 for a live session or 500 for a login: {odd:?}");
    let slowest = seen.iter().map(|l| l.4).fold(0.0, f64::max);
    eprintln!("slowest answer through nginx: {slowest:.3} s");
    assert!(slowest < 3.0, "an answer took {slowest} s (no hang)");
    let (menu, login) = (of(BACK, "menu"), of(BACK, "login"));
    assert!(
        !menu.is_empty() && menu.iter().all(|l| l.2 == 200),
        "staff menu after: {menu:?}"
    );
    assert!(
        !login.is_empty() && login.iter().all(|l| l.2 == 303),
        "logins after: {login:?}"
    );
    assert_eq!(
        (ha.a.pid(), ha.b.pid()),
        pids,
        "the same samlgate processes (no restart)"
    );
}
