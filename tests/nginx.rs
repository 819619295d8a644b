//! The real nginx (Debian's `nginx` package) in front of a stand-in staff menu, configured from
//! `deploy/nginx/samlgate.conf`, with `samlgate demo` as the auth_request peer and its demo IdP.
//!
//! What it proves about the shipped nginx config and the gateway together:
//! (a) no session: the staff menu is never reached and the browser is sent to
//!     `/login?return_to=...`;
//! (b) after a G-MIS login through nginx's /saml/acs, the staff menu receives the identity
//!     headers, non-ASCII values percent-encoded;
//! (c) a client-sent identity header (any case, duplicated, underscore variant) never reaches
//!     the staff menu, with or without a session;
//! (d) after /logout the old cookie opens nothing.
//!
//! The gateway's config is `deploy/samlgate.toml` with only ports and paths rewritten (and the
//! consent page off), so the example production config is exercised too.
//!
//! nginx must be installed (`scripts/install-deps.sh` installs the Debian package `nginx`), or
//! named by `SAMLGATE_NGINX=/path/to/nginx`. Without it this test FAILS; it never skips.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const NGINX_PACKAGE: &str = "nginx";
const SAMLGATE: &str = env!("CARGO_BIN_EXE_samlgate");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The identity headers of DESIGN.md, lower-case.
const IDENTITY_HEADERS: [&str; 6] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-samlgate-category",
    "x-samlgate-facility-code",
    "x-samlgate-facility-name",
    "x-samlgate-display-name",
];

// ------------------------------------------------------------------------------------------
// Processes

/// A child process stopped with SIGTERM (then SIGKILL) when dropped; its log is printed when
/// the test is failing.
struct Proc {
    name: &'static str,
    child: Child,
    logs: Vec<PathBuf>,
}

impl Proc {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn dump_logs(&self) -> String {
        let mut s = String::new();
        for l in &self.logs {
            s.push_str(&format!(
                "----- {} {} -----\n{}\n",
                self.name,
                l.display(),
                fs::read_to_string(l).unwrap_or_else(|e| format!("(unreadable: {e})"))
            ));
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.dump_logs());
        }
        if self.exited().is_some() {
            return;
        }
        // SIGTERM lets nginx's master stop its workers and samlgate flush its store.
        let termed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while termed && Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("SAMLGATE_NGINX") {
        Some(p) => vec![PathBuf::from(p)],
        None => [
            "/usr/sbin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    };
    let Some(bin) = candidates.into_iter().find(|p| p.is_file()) else {
        panic!(
            "nginx is not installed, and tests/nginx.rs needs the real nginx (it does not skip).\n  \
             fix: run scripts/install-deps.sh (it installs the Debian package `{NGINX_PACKAGE}`), or \
             `apt-get install -y --no-install-recommends {NGINX_PACKAGE}`, or set \
             SAMLGATE_NGINX=/path/to/nginx"
        );
    };
    let out = Command::new(&bin)
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let v =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains("http_auth_request_module"),
        "{} lacks ngx_http_auth_request_module (nginx -V: {v}); install Debian's `{NGINX_PACKAGE}`",
        bin.display()
    );
    bin
}

/// A free loopback port, held (so the next pick cannot return it) until the listener is dropped.
fn reserve_port() -> (u16, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (l.local_addr().unwrap().port(), l)
}

/// A port P with P+1 also free (the demo IdP listens on the gateway's port + 1), both held.
fn reserve_port_pair() -> (u16, [TcpListener; 2]) {
    for _ in 0..50 {
        let (p, a) = reserve_port();
        if p < u16::MAX {
            if let Ok(b) = TcpListener::bind(("127.0.0.1", p + 1)) {
                return (p, [a, b]);
            }
        }
    }
    panic!("no two consecutive free loopback ports found");
}

fn wait_until(
    what: &str,
    procs: &mut [&mut Proc],
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return;
        }
        for p in procs.iter_mut() {
            if let Some(st) = p.exited() {
                panic!(
                    "{} exited ({st}) while waiting for {what}\n{}",
                    p.name,
                    p.dump_logs()
                );
            }
        }
        if Instant::now() > deadline {
            let logs: String = procs.iter().map(|p| p.dump_logs()).collect();
            panic!("timed out after {timeout:?} waiting for {what}\n{logs}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------------------
// The stand-in staff menu: answers 200 with the request head it received as the body, and
// keeps every head for the test to inspect.

struct StaffMenu {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl StaffMenu {
    fn start() -> StaffMenu {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind staff menu");
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let seen = s2.clone();
                thread::spawn(move || {
                    let _ = serve_echo(conn, &seen);
                });
            }
        });
        StaffMenu { port, seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn all(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_echo(mut conn: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    // Drain a body, if any, so nginx is not cut off mid-request.
    let clen = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = buf.len() - (head_end + 4);
    while have < clen {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    seen.lock().unwrap().push(head.clone());
    let body = format!("{head}\r\n");
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

/// Every value of `name` (case-insensitive) in a request or response head.
fn header_values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The gateway's header encoding: non-ASCII bytes, controls and `%` percent-encoded.
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
// Config generation from the deploy/ files.

fn replace_required(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(
        text.contains(from),
        "{file} no longer contains `{from}`; tests/nginx.rs rewrites it for the test: update both"
    );
    text.replace(from, to)
}

/// deploy/nginx/samlgate.conf with loopback test ports: the upstream addresses replaced, the
/// https server on `nginx_port` without TLS, the http->https redirect server on `redirect_port`.
fn nginx_site_conf(gw_port: u16, staff_port: u16, nginx_port: u16, redirect_port: u16) -> String {
    let file = "deploy/nginx/samlgate.conf";
    let src = fs::read_to_string(Path::new(MANIFEST_DIR).join(file)).expect(file);
    let src = replace_required(
        &src,
        "server 127.0.0.1:8080;",
        &format!("server 127.0.0.1:{gw_port};"),
        file,
    );
    let src = replace_required(
        &src,
        "server 127.0.0.1:9000;",
        &format!("server 127.0.0.1:{staff_port};"),
        file,
    );
    let (mut https, mut http) = (0, 0);
    let mut out = String::new();
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("ssl_") {
            continue;
        }
        if t.starts_with("listen ") {
            if t.contains("[::]") {
                continue; // IPv6 may be absent in a sandbox; loopback v4 is enough here.
            }
            if t.contains("443") {
                https += 1;
                out.push_str(&format!("    listen 127.0.0.1:{nginx_port};\n"));
            } else {
                http += 1;
                out.push_str(&format!("    listen 127.0.0.1:{redirect_port};\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(
        (https, http),
        (1, 1),
        "{file}: expected one https and one http server"
    );
    out
}

/// The whole nginx.conf for the test: foreground, everything under `dir`, no `user` directive.
fn nginx_main_conf(dir: &Path, site: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {};\n\
         }}\n",
        site.display()
    )
}

/// deploy/samlgate.toml for the demo: ports, public URL (nginx's), paths inside the demo dir,
/// and no consent page (the consent flow is not what this test is about).
fn gateway_conf(gw_port: u16, nginx_port: u16) -> String {
    let file = "deploy/samlgate.toml";
    let src = fs::read_to_string(Path::new(MANIFEST_DIR).join(file)).expect(file);
    let public = format!("http://127.0.0.1:{nginx_port}");
    let mut s = replace_required(
        &src,
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:{gw_port}\""),
        file,
    );
    s = replace_required(&s, "https://gw.example.jp", &public, file);
    s = replace_required(
        &s,
        "\"/etc/samlgate/idp-metadata.xml\"",
        "\"idp/metadata.xml\"",
        file,
    );
    s = replace_required(&s, "\"/var/lib/samlgate/", "\"", file);
    s = replace_required(&s, "required = true", "required = false", file);
    assert!(
        s.contains("trusted_proxies = [\"127.0.0.1\"]"),
        "{file}: trusted_proxies"
    );
    s
}

// ------------------------------------------------------------------------------------------
// HTTP client side (ureq 2: 4xx/5xx come back as Error::Status, which we turn into responses).

struct Resp {
    status: u16,
    location: Option<String>,
    set_cookie: Vec<String>,
    body: String,
}

fn call(req: ureq::Request, form: Option<&[(&str, &str)]>) -> Resp {
    let r = match form {
        Some(f) => req.send_form(f),
        None => req.call(),
    };
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = r.status();
    let location = r.header("location").map(str::to_string);
    let set_cookie = r.all("set-cookie").iter().map(|s| s.to_string()).collect();
    let body = r.into_string().unwrap_or_default();
    Resp {
        status,
        location,
        set_cookie,
        body,
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(20))
        .build()
}

/// `value="..."` of the input named `name` in the demo IdP's auto-post page.
fn form_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} input in:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("form action") + "action=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

fn assert_login_redirect(r: &Resp, asked: &str) {
    assert_eq!(
        r.status, 302,
        "expected a redirect to the login page, got {}: {}",
        r.status, r.body
    );
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/login?return_to={asked}").as_str()),
        "Location of the 401 -> @login redirect"
    );
}

// ------------------------------------------------------------------------------------------

#[test]
fn nginx_auth_request_in_front_of_the_staff_menu() {
    let nginx = nginx_binary();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    // When the test runs as root, nginx's workers run as `nobody` and must reach the temp
    // paths below `dir`.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }

    let staff = StaffMenu::start();
    // All ports are picked while the earlier picks are still held, so they are distinct; each
    // is released just before its process binds it.
    let (gw_port, gw_hold) = reserve_port_pair();
    let (nginx_port, nginx_hold) = reserve_port();
    let (redirect_port, redirect_hold) = reserve_port();
    let base = format!("http://127.0.0.1:{nginx_port}");
    let idp = format!("http://127.0.0.1:{}", gw_port + 1);

    // --- the gateway: `samlgate demo` on a config made from deploy/samlgate.toml ---
    let demo_dir = dir.join("demo");
    fs::create_dir_all(&demo_dir).unwrap();
    fs::write(
        demo_dir.join("samlgate.toml"),
        gateway_conf(gw_port, nginx_port),
    )
    .unwrap();
    drop(gw_hold);
    let gw_log = dir.join("samlgate.log");
    let log_file = fs::File::create(&gw_log).unwrap();
    let mut gateway = Proc {
        name: "samlgate demo",
        child: Command::new(SAMLGATE)
            .args(["demo", "--dir"])
            .arg(&demo_dir)
            .args(["--port", &gw_port.to_string()])
            .env("SAMLGATE_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start samlgate demo"),
        logs: vec![gw_log],
    };

    // --- nginx, from deploy/nginx/samlgate.conf ---
    let site = dir.join("samlgate.conf");
    fs::write(
        &site,
        nginx_site_conf(gw_port, staff.port, nginx_port, redirect_port),
    )
    .unwrap();
    let main_conf = dir.join("nginx.conf");
    fs::write(&main_conf, nginx_main_conf(&dir, &site)).unwrap();
    let prefix = format!("{}/", dir.display());
    let err_log = dir.join("error.log");
    let check = Command::new(&nginx)
        .args(["-t", "-p", &prefix, "-e"])
        .arg(&err_log)
        .arg("-c")
        .arg(&main_conf)
        .output()
        .expect("nginx -t");
    assert!(
        check.status.success(),
        "nginx -t rejected the config made from deploy/nginx/samlgate.conf:\n{}\n{}",
        String::from_utf8_lossy(&check.stderr),
        fs::read_to_string(&site).unwrap()
    );
    drop((nginx_hold, redirect_hold));
    let mut nginx_proc = Proc {
        name: "nginx",
        child: Command::new(&nginx)
            .args(["-p", &prefix, "-e"])
            .arg(&err_log)
            .arg("-c")
            .arg(&main_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx"),
        logs: vec![err_log.clone(), dir.join("access.log")],
    };

    let a = agent();
    // RSA key generation on the first demo run is slow in a debug build.
    wait_until(
        "samlgate /healthz",
        &mut [&mut gateway],
        Duration::from_secs(120),
        || {
            a.get(&format!("http://127.0.0.1:{gw_port}/healthz"))
                .call()
                .is_ok_and(|r| r.status() == 200)
        },
    );
    wait_until(
        "nginx to proxy /login",
        &mut [&mut nginx_proc, &mut gateway],
        Duration::from_secs(30),
        || matches!(a.get(&format!("{base}/login")).call(), Ok(r) if r.status() == 200),
    );

    // --- the samlgate locations are reachable; the forward-auth endpoint is not ---
    let login = call(a.get(&format!("{base}/login")), None);
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains("G-MISからのログインはこちら"),
        "{}",
        login.body
    );
    let css = call(a.get(&format!("{base}/_samlgate/style.css")), None);
    assert_eq!(css.status, 200, "/_samlgate/ is proxied to samlgate");
    let direct = call(a.get(&format!("{base}/auth/verify")), None);
    assert_eq!(direct.status, 404, "/auth/verify must be internal to nginx");
    let ui = call(a.get(&format!("{base}/auth/userinfo")), None);
    assert_eq!(ui.status, 401, "/auth/userinfo without a session");
    let plain = call(
        a.get(&format!("http://127.0.0.1:{redirect_port}/staff/")),
        None,
    );
    assert_eq!(plain.status, 301, "the port-80 server only redirects");
    assert!(plain
        .location
        .as_deref()
        .unwrap_or("")
        .starts_with("https://"));
    assert_eq!(staff.count(), 0, "nothing reached the staff menu yet");

    // --- (a) no session: 302 to the login page, the staff menu sees nothing ---
    assert_login_redirect(&call(a.get(&format!("{base}/staff/")), None), "/staff/");
    assert_login_redirect(
        &call(a.get(&format!("{base}/staff/list?page=2")), None),
        "/staff/list?page=2",
    );
    // A cookie samlgate did not seal is no session either.
    assert_login_redirect(
        &call(
            a.get(&format!("{base}/staff/"))
                .set("Cookie", "samlgate=v1.AAAA.BBBB"),
            None,
        ),
        "/staff/",
    );
    assert_eq!(
        staff.count(),
        0,
        "(a) the staff menu was reached without a session"
    );

    // --- (c, without a session) spoofed identity headers do not open anything ---
    let spoof = |req: ureq::Request| {
        req.set("X-Auth-Request-User", "admin")
            .set("x-auth-request-user", "admin")
            .set("X-AUTH-REQUEST-USER", "admin")
            .set("X_Auth_Request_User", "admin")
            .set("X-Samlgate-Category", "admin")
            .set("X-Auth-Request-Email", "admin@example.jp")
            .set("X-Samlgate-Facility-Code", "admin")
            .set("X-Forwarded-For", "10.9.9.9")
    };
    assert_login_redirect(
        &call(spoof(a.get(&format!("{base}/staff/"))), None),
        "/staff/",
    );
    assert_eq!(
        staff.count(),
        0,
        "(c) a spoofed header reached the staff menu without a session"
    );

    // --- (b) log in at the demo IdP, post the SAMLResponse through nginx ---
    let idp_page = call(
        a.post(&format!("{idp}/login")),
        Some(&[("user", "0"), ("RelayState", "/staff/")]),
    );
    assert_eq!(idp_page.status, 200, "demo IdP: {}", idp_page.body);
    let action = form_action(&idp_page.body);
    assert_eq!(
        action,
        format!("{base}/saml/acs"),
        "the IdP posts to nginx's ACS (public_url)"
    );
    let saml_response = form_field(&idp_page.body, "SAMLResponse");
    let relay = form_field(&idp_page.body, "RelayState");
    assert_eq!(relay, "/staff/");
    let acs = call(
        a.post(&action),
        Some(&[("SAMLResponse", &saml_response), ("RelayState", &relay)]),
    );
    assert_eq!(acs.status, 303, "ACS through nginx: {}", acs.body);
    assert_eq!(
        acs.location.as_deref(),
        Some("/staff/"),
        "ACS redirects to RelayState"
    );
    let cookie = acs
        .set_cookie
        .iter()
        .find_map(|c| {
            let pair = c.split(';').next().unwrap_or("").trim();
            (pair.starts_with("samlgate=") && pair.len() > "samlgate=".len())
                .then(|| pair.to_string())
        })
        .unwrap_or_else(|| panic!("no samlgate cookie in {:?}", acs.set_cookie));
    assert_eq!(
        staff.count(),
        0,
        "the ACS post is samlgate's, not the staff menu's"
    );

    let page = call(
        a.get(&format!("{base}/staff/")).set("Cookie", &cookie),
        None,
    );
    assert_eq!(page.status, 200, "with a session: {}", page.body);
    assert_eq!(staff.count(), 1);
    let head = staff.all().pop().unwrap();
    assert!(head.starts_with("GET /staff/ HTTP/1.1"), "{head}");
    let one = |name: &str| {
        let v = header_values(&head, name);
        assert_eq!(v.len(), 1, "exactly one {name} at the staff menu:\n{head}");
        v[0].clone()
    };
    assert_eq!(one("x-auth-request-user"), "GM0012345");
    assert_eq!(one("x-auth-request-email"), "yamada@example.jp");
    assert_eq!(one("x-samlgate-category"), pct("病院"));
    assert_eq!(one("x-samlgate-category"), "%E7%97%85%E9%99%A2");
    assert_eq!(one("x-samlgate-facility-code"), "1310000001");
    assert_eq!(one("x-samlgate-facility-name"), pct("テスト総合病院"));
    assert_eq!(one("x-samlgate-display-name"), pct("山田 太郎"));
    assert_eq!(one("x-forwarded-for"), "127.0.0.1");
    assert_eq!(one("x-forwarded-proto"), "http");
    assert!(head.is_ascii(), "identity headers are ASCII:\n{head}");
    // The body the browser got is the staff menu's echo of that head.
    assert!(page.body.contains("GM0012345"), "{}", page.body);

    let ui = call(
        a.get(&format!("{base}/auth/userinfo"))
            .set("Cookie", &cookie),
        None,
    );
    assert_eq!(ui.status, 200, "/auth/userinfo with a session");
    assert!(ui.body.contains("\"user\":\"GM0012345\""), "{}", ui.body);
    assert!(
        ui.body.contains("病院"),
        "userinfo carries raw UTF-8: {}",
        ui.body
    );

    // --- (c, with a session) spoofed headers are replaced by samlgate's values ---
    let before = staff.count();
    let page = call(
        spoof(a.get(&format!("{base}/staff/x"))).set("Cookie", &cookie),
        None,
    );
    assert_eq!(page.status, 200);
    assert_eq!(staff.count(), before + 1);
    let head = staff.all().pop().unwrap();
    assert!(
        !head.contains("admin"),
        "a client-sent identity value reached the staff menu:\n{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("x_auth_request_user"),
        "underscore variant passed:\n{head}"
    );
    for h in IDENTITY_HEADERS {
        assert!(
            header_values(&head, h).len() <= 1,
            "{h} duplicated:\n{head}"
        );
    }
    assert_eq!(header_values(&head, "x-auth-request-user"), ["GM0012345"]);
    assert_eq!(header_values(&head, "x-samlgate-category"), [pct("病院")]);
    assert_eq!(
        header_values(&head, "x-samlgate-facility-code"),
        ["1310000001"]
    );
    assert_eq!(
        header_values(&head, "x-forwarded-for"),
        ["127.0.0.1"],
        "client XFF replaced"
    );

    // --- (d) logout through nginx; the old cookie opens nothing ---
    let out = call(
        a.get(&format!("{base}/logout")).set("Cookie", &cookie),
        None,
    );
    // The demo IdP has no SLO endpoint: the gateway ends the local session and shows its
    // "logged out" page (with an SLO endpoint it would redirect to the IdP instead).
    assert_eq!(out.status, 200, "logout: {}", out.body);
    assert!(
        out.body.contains("ログアウトしました"),
        "logout page: {}",
        out.body
    );
    assert!(
        out.set_cookie
            .iter()
            .any(|c| c.starts_with("samlgate=;") && c.contains("Max-Age=0")),
        "logout clears the cookie: {:?}",
        out.set_cookie
    );
    let before = staff.count();
    assert_login_redirect(
        &call(
            a.get(&format!("{base}/staff/")).set("Cookie", &cookie),
            None,
        ),
        "/staff/",
    );
    assert_login_redirect(&call(a.get(&format!("{base}/staff/")), None), "/staff/");
    assert_login_redirect(
        &call(
            spoof(a.get(&format!("{base}/staff/"))).set("Cookie", &cookie),
            None,
        ),
        "/staff/",
    );
    assert_eq!(
        staff.count(),
        before,
        "(d) the staff menu was reached after logout"
    );
    let ui = call(
        a.get(&format!("{base}/auth/userinfo"))
            .set("Cookie", &cookie),
        None,
    );
    assert_eq!(ui.status, 401, "/auth/userinfo after logout");

    // No staff-menu request ever carried a client's identity value.
    for h in staff.all() {
        assert!(!h.contains("admin"), "{h}");
    }
    drop(nginx_proc);
    drop(gateway);
}
