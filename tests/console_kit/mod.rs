//! Shared by tests/console.rs and tests/browser_console.rs: a gateway with consent required
//! and the admin API, a secretariat operator set up as a new one is (first login, TOTP
//! enrolment with python pyotp), a small cookie-keeping browser, and the refused 保健所 user's
//! application.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};

use super::common::*;
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "console-test-admin-token-0123456789abcdef0123";
pub const NEW_PASSWORD: &str = "correct horse battery staple 2026";
pub const HC: &str = "GM7000001";

/// The harness gateway with consent required, `[support]`, the admin API (for the CLI) and
/// `extra` appended.
pub fn gateway(extra: &str) -> Gateway {
    let mut gw = Gateway::start();
    let tok = gw.dir.path().join("admin.token");
    fs::write(&tok, format!("{ADMIN_TOKEN}\n")).unwrap();
    fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = fs::read_to_string(&gw.config)
        .unwrap()
        .replace("[consent]\nrequired = false", "[consent]\nrequired = true");
    let cfg = format!(
        "{cfg}\n[support]\nname = \"テスト事務局\"\nphone = \"03-1234-5678\"\nemail = \"help@example.jp\"\n\n[admin]\ntoken_file = \"admin.token\"\n{extra}\n"
    );
    fs::write(&gw.config, cfg).unwrap();
    gw.restart();
    gw
}

/// `samlgate GROUP ARGS... --config CFG --json` through the running gateway: its JSON lines.
pub fn cli_json(gw: &Gateway, group: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg(group)
        .args(args)
        .arg("--config")
        .arg(&gw.config)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("spawn samlgate CLI");
    assert!(
        out.status.success(),
        "`samlgate {group} {}`: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn application_status(gw: &Gateway, gmis: &str) -> Option<String> {
    cli_json(gw, "applications", &["list"])
        .into_iter()
        .find(|a| a["gmis_id"] == gmis)
        .and_then(|a| a["status"].as_str().map(str::to_string))
}

pub fn audit(gw: &Gateway) -> Vec<Value> {
    cli_json(gw, "audit", &["tail", "-n", "500"])
}

/// A browser: a cookie jar (path-blind; fine for one origin), no redirects followed.
pub struct Browser {
    pub base: String,
    pub jar: BTreeMap<String, String>,
    pub agent: ureq::Agent,
}

pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
    pub fn hidden(&self, name: &str) -> String {
        hidden(&self.body, name)
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            jar: BTreeMap::new(),
            agent: ureq::AgentBuilder::new().redirects(0).build(),
        }
    }

    pub fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Cookie", &cookies);
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
        for c in r.all("set-cookie") {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.into(), v.into());
            }
        }
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

/// `accounts add ID --role ROLE` through the running gateway: the one-time password.
pub fn add_account(gw: &Gateway, id: &str, role: &str) -> String {
    let v = cli_json(
        gw,
        "accounts",
        &[
            "add",
            id,
            "--email",
            "ops@example.jp",
            "--name",
            "鈴木 一郎",
            "--by",
            "setup",
            "--role",
            role,
        ],
    );
    v[0]["initial_password"].as_str().unwrap().to_string()
}

/// A secretariat operator, set up as a new one is: the first login on the normal login pages
/// (forced change, TOTP enrolment with pyotp). Returns the TOTP secret; the enrolment used the
/// current time step, so the next code to use is `pyotp(secret, 30)`.
pub fn operator(gw: &Gateway, id: &str) -> String {
    let pw = add_account(gw, id, "secretariat");
    let mut b = Browser::new(&gw.public_url());
    let p = b.get("/login");
    let csrf = p.hidden("csrf");
    let p = b.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("return_to", "/"),
            ("user_id", id),
            ("password", &pw),
        ],
    );
    assert_eq!(p.location(), Some("/login/change"), "{}", p.body);
    let csrf = b.get("/login/change").hidden("csrf");
    let p = b.post(
        "/login/change",
        &[
            ("csrf", &csrf),
            ("new_password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ],
    );
    assert_eq!(
        p.location(),
        Some("/login/enrol"),
        "secretariat must enrol TOTP: {}",
        p.body
    );
    let page = b.get("/login/enrol");
    let secret = between(&page.body, "<code id=\"secret\">", "</code>").to_string();
    let code = pyotp(&secret, 0);
    let p = b.post(
        "/login/enrol",
        &[("csrf", &page.hidden("csrf")), ("code", &code)],
    );
    assert_eq!(p.status, 200, "enrolment: {}", p.body);
    secret
}

/// Password, then TOTP, at `base`/console/. Returns the browser, logged in.
pub fn console_login(base: &str, id: &str, secret: &str, offset: i64) -> Browser {
    let mut b = Browser::new(base);
    let p = b.get("/console/");
    assert_eq!((p.status, p.location()), (303, Some("/console/login")));
    let p = b.get("/console/login");
    assert_eq!(p.status, 200, "{}", p.body);
    let p = b.post(
        "/console/login",
        &[
            ("csrf", &p.hidden("csrf")),
            ("user_id", id),
            ("password", NEW_PASSWORD),
        ],
    );
    assert_eq!(
        (p.status, p.location()),
        (303, Some("/console/totp")),
        "{}",
        p.body
    );
    assert!(
        !b.jar.keys().any(|k| k == "samlgate-console"),
        "logged in before TOTP"
    );
    let p = b.get("/console/totp");
    let csrf = p.hidden("csrf");
    let p = b.post(
        "/console/totp",
        &[("csrf", &csrf), ("code", &pyotp(secret, offset))],
    );
    assert_eq!(
        (p.status, p.location()),
        (303, Some("/console/")),
        "{}",
        p.body
    );
    let cookie = p
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("samlgate-console="))
        .map(|(_, v)| v.clone())
        .expect("console cookie");
    for want in ["Path=/console/", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(want), "{want} missing: {cookie}");
    }
    b
}

/// The refused 保健所 user: the ACS refuses with the application form; it is filed.
pub fn apply_from_refusal(gw: &Gateway, b64: &str) {
    let r = gw.post_acs(b64, Some("/menu"));
    assert_eq!(r.reason(), Some("application_needed"), "{}", r.summary());
    let token = hidden(&r.text(), "token");
    let body = format!(
        "token={}&phone={}&reason={}",
        form_encode(&token),
        form_encode("０３－１１１１－２２２２"),
        form_encode("保健所の感染症対策業務で使用します")
    );
    let r = gw.post_raw(
        "/_samlgate/apply",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
    );
    assert_eq!(r.status, 200, "apply: {}", r.summary());
}

pub fn hc_responses(gw: &Gateway, n: usize) -> Vec<String> {
    let case = vec![
        "--nameid",
        HC,
        "--attr",
        "accountCategory=保健所",
        "--attr",
        "displayName=保健 太郎",
        "--attr",
        "mail=taro@hc.example.jp",
        "--attr",
        "facilityName=千代田保健所",
        "--attr",
        "facilityCode=1310000001",
    ];
    gw.make_responses(&vec![case; n])
}
