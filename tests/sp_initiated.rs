//! SP-initiated login, the return path, InResponseTo binding, single logout and session lifetime,
//! black-box against `samlgate serve` (issue 5), plus the SimpleSAMLphp interop script.
//!
//! Independent checks: the gateway's Redirect-binding signatures (AuthnRequest, LogoutRequest,
//! LogoutResponse) are verified by `tests/support/slo_tool.py` with python `cryptography` over
//! the query octets as sent, with the certificate published in `GET /saml/metadata`, and the
//! inflated XML is read with lxml. The IdP's LogoutRequests/LogoutResponses are built and signed
//! by the same tool (Redirect: RSA-SHA256 over the query; POST: signxml enveloped signature).
//!
//! Every request to the gateway is written on a raw socket (`Browser`), so the request target
//! carries exactly the octets a browser or nginx would send (raw `?`, `&`, `\`, `%09`...).
//!
//! Run: `cargo test --test sp_initiated` (needs `.venv`, see tests/README.md).
//! `simplesamlphp_interop` runs `scripts/simplesamlphp-interop.sh` (Debian `simplesamlphp`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{base64_encode, python, Failures, Gateway, Json, Resp, IDP_ENTITY, ROOT};

/// What saml_idp.py's `metadata` publishes.
const IDP_SSO: &str = "https://gmis-idp.test/idp/sso";
const IDP_SLO: &str = "https://gmis-idp.test/idp/slo";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

// ------------------------------------------------------------------------------------------
// raw HTTP and a browser with a cookie jar

/// Status, headers (names lower-cased), offset of the body.
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

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < nl + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[(nl + 4 + size).min(b.len())..];
    }
}

/// One HTTP/1.1 request with exactly this request target; `Connection: close`, read to EOF.
fn raw_http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> Result<Resp, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    if let Some(b) = body {
        s.write_all(b).map_err(|e| e.to_string())?;
    }
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        if split_head(&raw).is_none() {
            return Err(format!("read: {e} after {} bytes", raw.len()));
        }
    }
    let (status, headers, off) =
        split_head(&raw).ok_or_else(|| format!("no HTTP response ({} bytes)", raw.len()))?;
    let rest = &raw[off..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A browser: a cookie jar (name -> value) for one gateway, raw requests.
struct Browser {
    port: u16,
    jar: BTreeMap<String, String>,
    name: &'static str,
}

impl Browser {
    fn new(gw: &Gateway, name: &'static str) -> Browser {
        Browser {
            port: gw.port,
            jar: BTreeMap::new(),
            name,
        }
    }

    fn cookie_header(&self) -> Option<String> {
        if self.jar.is_empty() {
            return None;
        }
        Some(
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn absorb(&mut self, r: &Resp) {
        for line in r.headers_all("set-cookie") {
            let mut parts = line.split(';');
            let Some((k, v)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if v.is_empty() || expired {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
    }

    fn request(&mut self, method: &str, target: &str, form: Option<&str>) -> Resp {
        let mut h: Vec<(&str, String)> = Vec::new();
        if let Some(c) = self.cookie_header() {
            h.push(("Cookie", c));
        }
        if form.is_some() {
            h.push(("Content-Type", "application/x-www-form-urlencoded".into()));
        }
        let r = raw_http(self.port, method, target, &h, form.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("browser {}: {method} {target}: {e}", self.name));
        self.absorb(&r);
        r
    }

    fn get(&mut self, target: &str) -> Resp {
        self.request("GET", target, None)
    }

    fn post_acs(&mut self, b64: &str, relay: Option<&str>) -> Resp {
        let mut body = format!("SAMLResponse={}", common::form_encode(b64));
        if let Some(r) = relay {
            body.push_str("&RelayState=");
            body.push_str(&common::form_encode(r));
        }
        self.request("POST", "/saml/acs", Some(&body))
    }

    /// `samlgate=<token>` as a Cookie header value, if the jar has a session cookie.
    fn session(&self) -> Option<String> {
        ["samlgate", "__Host-samlgate"]
            .iter()
            .find_map(|n| self.jar.get(*n).map(|v| format!("{n}={v}")))
    }

    fn alive(&mut self) -> bool {
        self.get("/auth/verify").status == 200
    }
}

// ------------------------------------------------------------------------------------------
// python helpers

fn slo_tool_path() -> PathBuf {
    Path::new(ROOT).join("tests/support/slo_tool.py")
}

fn tool(args: &[String]) -> Output {
    Command::new(python())
        .arg(slo_tool_path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn slo_tool.py")
}

fn tool_ok(args: &[String]) -> String {
    let o = tool(args);
    if !o.status.success() {
        panic!(
            "slo_tool.py {args:?} failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn s(v: &str) -> String {
    v.to_string()
}

/// The certificates `GET /saml/metadata` publishes, written as base64 files for slo_tool.
fn sp_certs(gw: &Gateway) -> Vec<PathBuf> {
    let md = gw.get("/saml/metadata", None);
    assert_eq!(md.status, 200, "GET /saml/metadata: {}", md.summary());
    let text = md.text();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<ds:X509Certificate>") {
        let after = &rest[i + "<ds:X509Certificate>".len()..];
        let end = after.find("</ds:X509Certificate>").expect("closing tag");
        let p = gw.dir.path().join(format!("sp-cert-{}.b64", out.len()));
        fs::write(&p, after[..end].trim()).unwrap();
        out.push(p);
        rest = &after[end..];
    }
    assert!(!out.is_empty(), "no certificate in SP metadata:\n{text}");
    out
}

/// `slo_tool.py verify-redirect`: Ok(JSON) when the signature verifies with one of `certs`.
fn verify_redirect(certs: &[PathBuf], query: &str) -> Result<Json, String> {
    let mut a = vec![s("verify-redirect"), s("--query"), s(query)];
    for c in certs {
        a.push(s("--cert"));
        a.push(c.display().to_string());
    }
    let o = tool(&a);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    Json::parse(&String::from_utf8_lossy(&o.stdout)).map_err(|e| format!("JSON: {e}"))
}

fn field<'a>(j: &'a Json, k: &str) -> Option<&'a str> {
    j.get("fields")?.str(k)
}

fn field_list(j: &Json, k: &str) -> Vec<String> {
    match j.get("fields").and_then(|f| f.get(k)) {
        Some(Json::Arr(v)) => v
            .iter()
            .filter_map(|x| match x {
                Json::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Arguments for an IdP message signed with IdP key 0 (unless the caller adds --unsigned or
/// --wrong-key, which slo_tool honours).
fn idp_msg(gw: &Gateway, kind: &str, binding: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        s(kind),
        s("--issuer"),
        s(IDP_ENTITY),
        s("--destination"),
        gw.url("/saml/slo"),
        s("--binding"),
        s(binding),
        s("--key"),
        gw.idp[0].key.display().to_string(),
        s("--cert"),
        gw.idp[0].cert.display().to_string(),
    ];
    a.extend(extra.iter().map(|x| s(x)));
    a
}

// ------------------------------------------------------------------------------------------
// flows

fn query_of(location: &str) -> &str {
    location.split_once('?').map(|(_, q)| q).unwrap_or("")
}

/// The raw value of `name` in a raw query, still URL-encoded.
fn raw_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A started SP-initiated login.
struct Started {
    resp: Resp,
    query: String,
    /// verify-redirect's JSON
    msg: Json,
    id: String,
    relay: String,
}

/// `GET /saml/login?<raw_query>` in `b`; checks the redirect to the IdP and verifies the
/// AuthnRequest's signature independently. Err when the gateway did not redirect to the IdP.
fn start_login(
    gw: &Gateway,
    certs: &[PathBuf],
    b: &mut Browser,
    raw_query: &str,
) -> Result<Started, String> {
    let target = if raw_query.is_empty() {
        "/saml/login".to_string()
    } else {
        format!("/saml/login?{raw_query}")
    };
    let r = b.get(&target);
    let loc = r.location().unwrap_or("").to_string();
    if r.status != 302 || !loc.starts_with(&format!("{IDP_SSO}?")) {
        return Err(format!(
            "GET {}{target}: not a redirect to the IdP: {}",
            gw.public_url(),
            r.summary()
        ));
    }
    let query = query_of(&loc).to_string();
    let msg = verify_redirect(certs, &query)
        .map_err(|e| format!("AuthnRequest signature (python cryptography): {e}\n{loc}"))?;
    let id = field(&msg, "ID").unwrap_or("").to_string();
    let relay = msg.str("relay_state").unwrap_or("").to_string();
    Ok(Started {
        resp: r,
        query,
        msg,
        id,
        relay,
    })
}

/// The SessionIndex saml_idp.py put into a response.
fn session_index_of(xml: &str) -> String {
    let i = xml
        .find("SessionIndex=\"")
        .expect("SessionIndex in response")
        + 14;
    xml[i..i + xml[i..].find('"').unwrap()].to_string()
}

/// An IdP-initiated (unsolicited) login in a new browser: (browser, SessionIndex).
fn login_unsolicited(gw: &Gateway, name: &'static str, nameid: &str) -> (Browser, String) {
    let xml = String::from_utf8(gw.make_response_xml(&["--nameid", nameid])).unwrap();
    let si = session_index_of(&xml);
    let mut b = Browser::new(gw, name);
    let r = b.post_acs(&base64_encode(xml.as_bytes()), None);
    assert_eq!(
        r.status,
        303,
        "login of {name} ({nameid}): {}\n{}",
        r.summary(),
        gw.log_tail(2000)
    );
    assert!(b.session().is_some(), "{name}: no session cookie");
    assert!(
        b.alive(),
        "{name}: session does not verify right after login"
    );
    (b, si)
}

/// The server log without ANSI colour sequences.
fn plain_log(gw: &Gateway) -> String {
    let l = gw.log();
    let mut out = String::with_capacity(l.len());
    let mut it = l.chars().peekable();
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

/// Rewrites the gateway's config (`from` must occur) and restarts it.
fn reconfigure(gw: &mut Gateway, from: &str, to: &str) {
    let text = fs::read_to_string(&gw.config).unwrap();
    assert!(
        text.contains(from),
        "config has no {from:?} to replace:\n{text}"
    );
    fs::write(&gw.config, text.replacen(from, to, 1)).unwrap();
    gw.restart();
}

/// How a browser resolves a `Location` against the gateway's origin, reduced to the question
/// "does it stay on this origin?": tab/CR/LF are removed and `\` counts as `/` (WHATWG URL for
/// http(s)), so the value must start with exactly one `/`. Applied to the value as sent and to
/// it percent-decoded once (a later hop, e.g. an upstream app, may decode and redirect again:
/// the gateway refuses `/%2F` and `/%5C` prefixes for that reason).
fn same_origin_problem(loc: &str) -> Option<String> {
    let browser_view = |v: &str| -> String {
        v.chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .map(|c| if c == '\\' { '/' } else { c })
            .collect::<String>()
    };
    if loc.chars().any(|c| c.is_control() || c == ' ') {
        return Some(format!("{loc:?} has control characters or spaces"));
    }
    for (what, v) in [
        ("as sent", loc.to_string()),
        (
            "decoded once",
            common::percent_decode(loc).unwrap_or_else(|| loc.to_string()),
        ),
    ] {
        let b = browser_view(v.trim_start_matches([' ', '\u{c}']));
        if !b.starts_with('/') || b.starts_with("//") {
            return Some(format!(
                "{loc:?} ({what}: {v:?}) leaves the origin: a browser reads {b:?}"
            ));
        }
    }
    None
}

// ------------------------------------------------------------------------------------------
// 1. full SP-initiated round trip

#[test]
fn sp_initiated_round_trip() {
    let gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let mut a = Browser::new(&gw, "A");

    // nginx passes $request_uri unencoded: return_to=/staff/menu?x=1
    let st = start_login(&gw, &certs, &mut a, "return_to=/staff/menu?x=1")
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log_tail(3000)));
    let m = &st.msg;

    // the query: SAMLRequest, RelayState, SigAlg, Signature in binding order
    let order: Vec<String> = match m.get("param_order") {
        Some(Json::Arr(v)) => v
            .iter()
            .filter_map(|x| match x {
                Json::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    f.check(
        "query parameters",
        order == ["SAMLRequest", "RelayState", "SigAlg", "Signature"],
        || format!("{order:?}"),
    );
    f.check("SigAlg", m.str("sig_alg") == Some(RSA_SHA256), || {
        format!("{:?}", m.str("sig_alg"))
    });

    // the AuthnRequest, read by lxml
    f.check(
        "root",
        field(m, "root") == Some("AuthnRequest")
            && field(m, "root_ns") == Some("urn:oasis:names:tc:SAML:2.0:protocol"),
        || format!("{:?} {:?}", field(m, "root"), field(m, "root_ns")),
    );
    let id = st.id.clone();
    // 128 random bits: at least 32 hex digits plus an NCName-start character
    let hexdigits = id.chars().filter(|c| c.is_ascii_hexdigit()).count();
    f.check(
        "ID has >= 128 bits",
        id.len() >= 33
            && hexdigits >= 32
            && id
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic()),
        || format!("ID {id:?}"),
    );
    f.check("Version", field(m, "Version") == Some("2.0"), || {
        format!("{:?}", field(m, "Version"))
    });
    f.check(
        "Destination",
        field(m, "Destination") == Some(IDP_SSO),
        || format!("{:?}", field(m, "Destination")),
    );
    f.check(
        "AssertionConsumerServiceURL",
        field(m, "AssertionConsumerServiceURL") == Some(gw.acs_url().as_str()),
        || format!("{:?}", field(m, "AssertionConsumerServiceURL")),
    );
    f.check(
        "ProtocolBinding",
        field(m, "ProtocolBinding") == Some(POST_BINDING),
        || format!("{:?}", field(m, "ProtocolBinding")),
    );
    f.check(
        "Issuer",
        field(m, "Issuer") == Some(gw.sp_entity().as_str()),
        || format!("{:?}", field(m, "Issuer")),
    );
    f.check(
        "NameIDPolicy",
        field(m, "NameIDPolicy.Format") == Some(PERSISTENT),
        || format!("{:?}", field(m, "NameIDPolicy.Format")),
    );
    let ii = field(m, "IssueInstant").unwrap_or("");
    let now = chrono_like_now();
    f.check(
        "IssueInstant is now",
        iso_to_unix(ii).is_some_and(|t| (t - now).abs() <= 120),
        || format!("IssueInstant {ii:?}, now {now}"),
    );
    f.check(
        "no XML signature inside (Redirect binding signs the query)",
        m.get("fields").and_then(|x| x.get("has_xml_signature")) == Some(&Json::Bool(false)),
        || "ds:Signature in a Redirect-bound AuthnRequest".into(),
    );

    // RelayState is an opaque handle, not the URL
    f.check(
        "RelayState opaque",
        !st.relay.is_empty()
            && !st.relay.contains('/')
            && !st.relay.contains("staff")
            && st.relay.len() >= 16,
        || format!("RelayState {:?}", st.relay),
    );

    // the request cookie
    let req_cookie = st
        .resp
        .headers_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("samlgate-req="))
        .map(str::to_string);
    f.check(
        "request cookie",
        req_cookie.as_deref().is_some_and(|c| {
            c.contains("HttpOnly")
                && c.contains("Path=/")
                && c.contains("SameSite=Lax")
                && !c.contains("Domain")
        }),
        || format!("Set-Cookie {:?}", st.resp.headers_all("set-cookie")),
    );

    // the python verifier can fail: another certificate, a changed SAMLRequest, a changed
    // RelayState are all refused (so the successful verification above means something)
    let idp_cert = vec![gw.idp[0].cert.clone()];
    f.check(
        "python verify with the IdP cert fails",
        verify_redirect(&idp_cert, &st.query).is_err(),
        || "verified with the wrong certificate".into(),
    );
    let relay_raw = raw_param(&st.query, "RelayState").unwrap_or("").to_string();
    let tampered = st
        .query
        .replacen(&format!("RelayState={relay_raw}"), "RelayState=x", 1);
    f.check(
        "python verify of a changed RelayState fails",
        tampered != st.query && verify_redirect(&certs, &tampered).is_err(),
        || "a changed RelayState verified".into(),
    );

    // a second login gets a different ID and handle
    let mut other = Browser::new(&gw, "other");
    let st2 = start_login(&gw, &certs, &mut other, "return_to=/other");
    match &st2 {
        Ok(st2) => {
            f.check("fresh ID", st2.id != id, || format!("same ID {id}"));
            f.check("fresh RelayState", st2.relay != st.relay, || {
                "same RelayState".into()
            });
        }
        Err(e) => f.check("second login", false, || e.clone()),
    }

    // the IdP answers InResponseTo; the browser posts it with its cookie and the handle
    let resp = gw.make_response(&["--in-response-to", &id]);
    let r = a.post_acs(&resp, Some(&st.relay));
    f.check(
        "ACS 303 to the return path",
        r.status == 303 && r.location() == Some("/staff/menu?x=1"),
        || r.summary(),
    );
    f.check("session cookie", a.session().is_some(), || r.summary());
    f.check(
        "request cookie cleared",
        !a.jar.contains_key("samlgate-req"),
        || format!("jar {:?}", a.jar.keys().collect::<Vec<_>>()),
    );
    let v = a.get("/auth/verify");
    f.check(
        "session verifies",
        v.status == 200 && v.header("x-auth-request-user") == Some("GM0012345"),
        || v.summary(),
    );
    let u = a.get("/auth/userinfo");
    let uj = Json::parse(&u.text()).unwrap_or(Json::Null);
    f.check(
        "userinfo",
        u.status == 200
            && uj.str("user") == Some("GM0012345")
            && uj.str("category") == Some("病院"),
        || u.summary(),
    );
    let lg = gw.log();
    f.check("log names the AuthnRequest", lg.contains(&id), || {
        "request id not logged".into()
    });

    // the other browser's request is independent of A's: it is still pending and answerable
    if let Ok(st2) = &st2 {
        let r = other.post_acs(
            &gw.make_response(&["--in-response-to", &st2.id]),
            Some(&st2.relay),
        );
        f.check(
            "other browser's login",
            r.status == 303 && r.location() == Some("/other"),
            || r.summary(),
        );
    }
    f.finish(&gw);
}

/// Unix seconds now, without chrono in the test crate's API surface.
fn chrono_like_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `YYYY-MM-DDTHH:MM:SSZ` -> Unix seconds.
fn iso_to_unix(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (d, t) = s.split_once('T')?;
    let mut dp = d.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let mut tp = t
        .split(':')
        .map(|x| x.split('.').next().unwrap_or("").parse::<i64>());
    let (h, mi, se) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se)
}

// ------------------------------------------------------------------------------------------
// 2. the return path: only same-origin paths survive the round trip

#[test]
fn return_to_open_redirects() {
    let gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    // (raw query after /saml/login?, expected final Location; None: any same-origin path)
    let cases: Vec<(&str, Option<&str>)> = vec![
        // kept
        ("return_to=/staff/menu?x=1", Some("/staff/menu?x=1")),
        ("return_to=/a?x=1&y=2", Some("/a?x=1&y=2")),
        ("return_to=%2Fstaff%2Fmenu%3Fx%3D1", Some("/staff/menu?x=1")),
        ("lang=en&return_to=%2Fb", Some("/b")),
        ("", Some("/")),
        // replaced by /
        ("return_to=//evil.example", Some("/")),
        ("return_to=//evil.example/staff", Some("/")),
        ("return_to=https://evil.example/x", Some("/")),
        ("return_to=https%3A%2F%2Fevil.example%2Fx", Some("/")),
        ("return_to=/\\evil.example", Some("/")),
        ("return_to=/%5Cevil.example", Some("/")),
        ("return_to=/%5cevil", Some("/")),
        ("return_to=%2F%5Cevil.example", Some("/")),
        ("return_to=%2F%2Fevil.example", Some("/")),
        ("return_to=/%2F%2Fevil.example", Some("/")),
        ("return_to=/%2fevil.example", Some("/")),
        ("return_to=\\\\evil.example", Some("/")),
        ("return_to=%5C%5Cevil.example", Some("/")),
        ("return_to=http:/evil.example", Some("/")),
        ("return_to=http:evil.example", Some("/")),
        ("return_to=javascript:alert(1)", Some("/")),
        ("return_to=evil.example", Some("/")),
        ("return_to=@evil.example", Some("/")),
        ("return_to=%20//evil.example", Some("/")),
        ("return_to=%00//evil.example", Some("/")),
        ("return_to=%EF%BC%8F%EF%BC%8Fevil.example", Some("/")),
        ("lang=en&return_to=%2F%2Fevil.example", Some("/")),
        // tab / newline: browsers drop them from URLs, so "/\t/evil" is "//evil"
        ("return_to=%2F%09%2Fevil.example", Some("/")),
        ("return_to=%2F%0A%2Fevil.example", Some("/")),
        ("return_to=%2F%0D%0ASet-Cookie%3A%20x%3D1", Some("/")),
        // raw (nginx-style) value with the tab/newline still encoded right after the first
        // slash: a same-origin path as sent, but "//evil.example" once a later hop decodes it
        // (the same reasoning that makes the gateway refuse /%2F and /%5C)
        ("return_to=/%09/evil.example", None),
        ("return_to=/%0A/evil.example", None),
        ("return_to=/%0D%0A/evil.example", None),
        // header injection attempt: must stay encoded inside Location
        ("return_to=/%0D%0ASet-Cookie:%20x=1", None),
    ];
    for (q, want) in &cases {
        let case = format!("return_to case {q:?}");
        let mut b = Browser::new(&gw, "R");
        let st = match start_login(&gw, &certs, &mut b, q) {
            Ok(st) => st,
            Err(e) => {
                f.check(&case, false, || e);
                continue;
            }
        };
        let resp = gw.make_response(&["--in-response-to", &st.id]);
        let r = b.post_acs(&resp, Some(&st.relay));
        let loc = r.location().unwrap_or("").to_string();
        eprintln!("{case}: status {} Location {loc:?}", r.status);
        if r.status != 303 {
            f.check(&case, false, || format!("ACS: {}", r.summary()));
            continue;
        }
        if let Some(w) = want {
            f.check(&case, loc == *w, || format!("Location {loc:?}, want {w:?}"));
        }
        if let Some(p) = same_origin_problem(&loc) {
            f.check(&case, false, || p);
        }
        f.check(&case, !b.jar.contains_key("x"), || {
            "a cookie x was set (header injection)".into()
        });
    }

    // raw tab / CR / LF / backslash octets in the request target: refused by the HTTP layer,
    // or the round trip lands on a same-origin path
    for q in [
        "return_to=/\t/evil.example",
        "return_to=/\r\nSet-Cookie: x=1",
    ] {
        let case = format!("raw control octets {q:?}");
        let mut b = Browser::new(&gw, "raw");
        let r = b.get(&format!("/saml/login?{q}"));
        if r.status == 302 {
            f.check(&case, false, || {
                format!("accepted a raw control character: {}", r.summary())
            });
        } else {
            f.check(
                &case,
                (400..500).contains(&r.status) && r.location().is_none(),
                || r.summary(),
            );
        }
        f.check(&case, !b.jar.contains_key("x"), || {
            "header injection".into()
        });
    }

    // the login page keeps only a safe return path in its G-MIS link
    let mut b = Browser::new(&gw, "L");
    let p = b.get("/login?return_to=//evil.example");
    f.check(
        "login page, evil return_to",
        p.status == 200 && !p.text().contains("evil.example"),
        || p.summary(),
    );
    let p = b.get("/login?return_to=/staff/menu?x=1");
    f.check(
        "login page, good return_to",
        p.status == 200
            && p.text()
                .contains("/saml/login?return_to=%2Fstaff%2Fmenu%3Fx%3D1"),
        || p.summary(),
    );

    // a solicited response: the tracked return path wins over whatever RelayState comes back
    let mut b = Browser::new(&gw, "S");
    match start_login(&gw, &certs, &mut b, "return_to=/kept") {
        Ok(st) => {
            let resp = gw.make_response(&["--in-response-to", &st.id]);
            let r = b.post_acs(&resp, Some("//evil.example"));
            f.check(
                "solicited, RelayState replaced by //evil",
                r.status == 303 && r.location() == Some("/kept"),
                || r.summary(),
            );
        }
        Err(e) => f.check("solicited, RelayState replaced", false, || e),
    }
    // unsolicited: RelayState is the only return path and is checked the same way
    for (relay, want) in [
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/staff/menu?x=1", "/staff/menu?x=1"),
    ] {
        let mut b = Browser::new(&gw, "U");
        let r = b.post_acs(&gw.make_response(&[]), Some(relay));
        f.check(
            &format!("unsolicited RelayState {relay:?}"),
            r.status == 303 && r.location() == Some(want),
            || r.summary(),
        );
    }
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 3. a response belongs to the browser that started the request, once

#[test]
fn response_to_someone_elses_request() {
    let gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let mut a = Browser::new(&gw, "A");
    let mut b = Browser::new(&gw, "B");
    let st_a = start_login(&gw, &certs, &mut a, "return_to=/a-page").unwrap();
    let st_b = start_login(&gw, &certs, &mut b, "return_to=/b-page").unwrap();
    let for_a = gw.make_response(&["--in-response-to", &st_a.id, "--nameid", "GM0000001"]);

    let live0 = gw.sessions_live();
    // B (holding its own request cookie) posts the response to A's request, with A's handle
    let r = b.post_acs(&for_a, Some(&st_a.relay));
    f.add(
        "B posts A's response (B's cookie)",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live0),
    );
    f.check(
        "B has no session",
        b.session().is_none() && !b.alive(),
        || "B got a session".into(),
    );
    // a browser without any request cookie
    let mut c = Browser::new(&gw, "C");
    let r = c.post_acs(&for_a, Some(&st_a.relay));
    f.add(
        "C posts A's response (no cookie)",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live0),
    );
    // B's cookie value presented under a forged name / A's ID with a cookie B made up
    let mut d = Browser::new(&gw, "D");
    d.jar.insert("samlgate-req".into(), "forged".into());
    let r = d.post_acs(&for_a, Some(&st_a.relay));
    f.add(
        "D posts A's response (forged cookie)",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live0),
    );
    // a response answering a request ID nobody made, in A's browser
    let stray = gw.make_response(&["--in-response-to", "_0123456789abcdef0123456789abcdef"]);
    let r = a.post_acs(&stray, Some(&st_a.relay));
    f.add(
        "A posts a response to an unknown ID",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live0),
    );

    // the refusals did not burn A's request: A completes its login
    let r = a.post_acs(&for_a, Some(&st_a.relay));
    f.check(
        "A's own response",
        r.status == 303 && r.location() == Some("/a-page"),
        || r.summary(),
    );
    let a_cookie = a.session();
    f.check("A's session", a.alive(), || "A has no live session".into());

    // replayed by A after consumption: once with the old request cookie restored, once without
    let live1 = gw.sessions_live();
    let mut a2 = Browser::new(&gw, "A-replay");
    if let Some(c) = st_a
        .resp
        .headers_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("samlgate-req="))
    {
        let v = c
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("samlgate-req=");
        a2.jar.insert("samlgate-req".into(), v.to_string());
    }
    let r = a2.post_acs(&for_a, Some(&st_a.relay));
    f.add(
        "A replays its response (old request cookie)",
        gw.refusal_problems(&r, &["in_response_to_unknown", "replay"], live1),
    );
    let r = a.post_acs(&for_a, Some(&st_a.relay));
    f.add(
        "A replays its response (current jar)",
        gw.refusal_problems(&r, &["in_response_to_unknown", "replay"], live1),
    );
    // A's first session survives the replays
    f.check(
        "A still logged in",
        a_cookie.is_some() && gw.verify(a_cookie.as_deref()).status == 200,
        || "A's session ended by a replay".into(),
    );

    // a fresh response (new IDs) to A's already-answered request is refused too: the request,
    // not only the assertion, is single-use
    let again = gw.make_response(&["--in-response-to", &st_a.id, "--nameid", "GM0000001"]);
    let mut a3 = Browser::new(&gw, "A-again");
    a3.jar = a2.jar.clone();
    let r = a3.post_acs(&again, Some(&st_a.relay));
    f.add(
        "new response to a consumed request",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live1),
    );

    // B's own request is still usable by B
    let for_b = gw.make_response(&["--in-response-to", &st_b.id, "--nameid", "GM0000002"]);
    let r = b.post_acs(&for_b, Some(&st_b.relay));
    f.check(
        "B's own response",
        r.status == 303 && r.location() == Some("/b-page"),
        || r.summary(),
    );
    let v = b.get("/auth/verify");
    f.check(
        "B is B",
        v.header("x-auth-request-user") == Some("GM0000002"),
        || v.summary(),
    );
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 4. [idp] allow_unsolicited = false

#[test]
fn unsolicited_refused_when_configured() {
    let mut gw = Gateway::start();
    // the default (true): unsolicited accepted
    let mut u = Browser::new(&gw, "U0");
    let r = u.post_acs(&gw.make_response(&[]), None);
    assert_eq!(
        r.status,
        303,
        "unsolicited with the default config: {}",
        r.summary()
    );

    reconfigure(
        &mut gw,
        "allow_unsolicited = true",
        "allow_unsolicited = false",
    );
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let live = gw.sessions_live();
    let mut u = Browser::new(&gw, "U");
    let r = u.post_acs(&gw.make_response(&[]), Some("/x"));
    f.add(
        "unsolicited",
        gw.refusal_problems(&r, &["unsolicited_refused"], live),
    );
    // a browser with a pending request posting an unsolicited response is refused too
    let mut a = Browser::new(&gw, "A");
    let st = start_login(&gw, &certs, &mut a, "return_to=/after").unwrap();
    let r = a.post_acs(&gw.make_response(&[]), Some(&st.relay));
    f.add(
        "unsolicited in a browser with a request",
        gw.refusal_problems(&r, &["unsolicited_refused"], live),
    );
    // ... whose request is still answerable
    let r = a.post_acs(
        &gw.make_response(&["--in-response-to", &st.id]),
        Some(&st.relay),
    );
    f.check(
        "solicited",
        r.status == 303 && r.location() == Some("/after"),
        || r.summary(),
    );
    f.check("solicited session", a.alive(), || "no session".into());
    // the answer to another browser's request
    let mut b = Browser::new(&gw, "B");
    let st_b = start_login(&gw, &certs, &mut b, "").unwrap();
    let live = gw.sessions_live();
    let mut c = Browser::new(&gw, "C");
    let r = c.post_acs(&gw.make_response(&["--in-response-to", &st_b.id]), None);
    f.add(
        "someone else's request",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live),
    );
    f.finish(&gw);
}

/// On https the request cookie must survive the IdP's cross-site POST: `__Host-` prefix,
/// `SameSite=None; Secure`, no Domain. (The listener stays plain http: TLS in front.)
#[test]
fn https_request_cookie() {
    let mut gw = Gateway::start();
    let http = gw.public_url();
    let https = http.replacen("http://", "https://", 1);
    reconfigure(
        &mut gw,
        &format!("public_url = \"{http}\""),
        &format!("public_url = \"{https}\""),
    );
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let mut a = Browser::new(&gw, "A");
    let st = start_login(&gw, &certs, &mut a, "return_to=/s").unwrap();
    let c = st
        .resp
        .headers_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("__Host-samlgate-req="))
        .map(str::to_string);
    f.check(
        "cookie attributes",
        c.as_deref().is_some_and(|c| {
            c.contains("; Secure")
                && c.contains("SameSite=None")
                && c.contains("Path=/")
                && c.contains("HttpOnly")
                && !c.contains("Domain")
        }),
        || format!("{:?}", st.resp.headers_all("set-cookie")),
    );
    let acs = format!("{https}/saml/acs");
    f.check(
        "ACS URL in the AuthnRequest",
        field(&st.msg, "AssertionConsumerServiceURL") == Some(acs.as_str()),
        || format!("{:?}", field(&st.msg, "AssertionConsumerServiceURL")),
    );
    let resp = gw.make_response(&["--in-response-to", &st.id, "--acs", &acs]);
    let r = a.post_acs(&resp, Some(&st.relay));
    f.check(
        "round trip",
        r.status == 303 && r.location() == Some("/s"),
        || r.summary(),
    );
    f.check(
        "request cookie cleared",
        !a.jar.contains_key("__Host-samlgate-req"),
        || format!("{:?}", a.jar.keys().collect::<Vec<_>>()),
    );
    f.check("session", a.alive(), || "no session".into());
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 5. IdP-initiated single logout

/// Checks the gateway's answer to an accepted LogoutRequest: 302 to the IdP's SLO Redirect URL
/// with a LogoutResponse signed by the SP key (python verifies), InResponseTo = `req_id`.
fn logout_response_problems(
    gw: &Gateway,
    certs: &[PathBuf],
    r: &Resp,
    req_id: &str,
    relay: Option<&str>,
) -> Vec<String> {
    let mut p = Vec::new();
    let loc = r.location().unwrap_or("");
    if r.status != 302 || !loc.starts_with(&format!("{IDP_SLO}?")) {
        p.push(format!(
            "not a redirect to the IdP SLO URL: {}",
            r.summary()
        ));
        return p;
    }
    let q = query_of(loc);
    for k in ["SAMLResponse", "SigAlg", "Signature"] {
        if raw_param(q, k).is_none() {
            p.push(format!("no {k} in {loc}"));
        }
    }
    match verify_redirect(certs, q) {
        Err(e) => p.push(format!("LogoutResponse signature (python): {e}")),
        Ok(m) => {
            let want = [
                ("root", "LogoutResponse"),
                ("InResponseTo", req_id),
                ("StatusCode", SUCCESS),
                ("Destination", IDP_SLO),
                ("Issuer", &gw.sp_entity()),
                ("Version", "2.0"),
            ];
            for (k, v) in want {
                if field(&m, k) != Some(v) {
                    p.push(format!("{k}: {:?}, want {v:?}", field(&m, k)));
                }
            }
            if m.str("sig_alg") != Some(RSA_SHA256) {
                p.push(format!("SigAlg {:?}", m.str("sig_alg")));
            }
            if field(&m, "ID").is_none_or(|id| id.len() < 33 || id == req_id) {
                p.push(format!("ID {:?}", field(&m, "ID")));
            }
            if m.str("relay_state") != relay {
                p.push(format!(
                    "RelayState {:?}, want {relay:?}",
                    m.str("relay_state")
                ));
            }
        }
    }
    p
}

fn slo_get(gw: &Gateway, query: &str) -> (Resp, Duration) {
    let t = Instant::now();
    let r = raw_http(gw.port, "GET", &format!("/saml/slo?{query}"), &[], None)
        .unwrap_or_else(|e| panic!("GET /saml/slo: {e}\n{}", gw.log_tail(2000)));
    (r, t.elapsed())
}

fn slo_post(gw: &Gateway, param: &str, b64: &str, relay: Option<&str>) -> Resp {
    let mut body = format!("{param}={}", common::form_encode(b64));
    if let Some(r) = relay {
        body.push_str(&format!("&RelayState={}", common::form_encode(r)));
    }
    raw_http(
        gw.port,
        "POST",
        "/saml/slo",
        &[("Content-Type", "application/x-www-form-urlencoded".into())],
        Some(body.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("POST /saml/slo: {e}\n{}", gw.log_tail(2000)))
}

fn refused_with(r: &Resp, reasons: &[&str]) -> Option<String> {
    if (400..500).contains(&r.status) && r.reason().is_some_and(|x| reasons.contains(&x)) {
        None
    } else {
        Some(format!("want 4xx {reasons:?}: {}", r.summary()))
    }
}

#[test]
fn idp_initiated_logout() {
    let gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let (mut a, si_a) = login_unsolicited(&gw, "A", "GM0012345");
    let (mut b, si_b) = login_unsolicited(&gw, "B", "GM0012345");
    let (mut c, _si_c) = login_unsolicited(&gw, "C", "GM0077777");
    assert_ne!(
        si_a, si_b,
        "saml_idp.py gives each login its own SessionIndex"
    );
    let lr = |extra: &[&str]| tool_ok(&idp_msg(&gw, "logout-request", "redirect", extra));
    let lr_post = |extra: &[&str]| tool_ok(&idp_msg(&gw, "logout-request", "post", extra));
    let all_alive =
        |f: &mut Failures, case: &str, a: &mut Browser, b: &mut Browser, c: &mut Browser| {
            let st = (a.alive(), b.alive(), c.alive());
            f.check(case, st == (true, true, true), || {
                format!("sessions alive (A, B, C) = {st:?}")
            });
        };

    // --- refused: nothing ends
    let bad_redirect: Vec<(&str, Vec<&str>, &[&str])> = vec![
        (
            "unsigned",
            vec!["--unsigned", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "wrong key",
            vec!["--wrong-key", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "tampered NameID",
            vec!["--tamper", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "tampered RelayState",
            vec![
                "--tamper-relay",
                "--relay-state",
                "r1",
                "--nameid",
                "GM0012345",
            ],
            &["slo_signature_invalid"],
        ),
        (
            "SHA-1",
            vec!["--sig-alg", "rsa-sha1", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "other Issuer",
            vec![
                "--nameid",
                "GM0012345",
                "--issuer",
                "https://evil.example/idp",
            ],
            &["slo_refused"],
        ),
        (
            "other Destination",
            vec![
                "--nameid",
                "GM0012345",
                "--destination",
                "https://evil.example/slo",
            ],
            &["slo_refused"],
        ),
        (
            "expired NotOnOrAfter",
            vec!["--nameid", "GM0012345", "--not-on-or-after", "-600"],
            &["slo_refused"],
        ),
        (
            "old IssueInstant",
            vec!["--nameid", "GM0012345", "--issue-instant-offset", "-7200"],
            &["slo_refused"],
        ),
        (
            "future IssueInstant",
            vec!["--nameid", "GM0012345", "--issue-instant-offset", "7200"],
            &["slo_refused"],
        ),
    ];
    for (name, extra, reasons) in &bad_redirect {
        let q = lr(extra);
        let (r, _) = slo_get(&gw, &q);
        let case = format!("Redirect LogoutRequest, {name}");
        if let Some(p) = refused_with(&r, reasons) {
            f.check(&case, false, || p);
        }
        f.check(&case, r.location().is_none(), || {
            format!("redirected: {}", r.summary())
        });
        all_alive(&mut f, &case, &mut a, &mut b, &mut c);
    }
    // a query without SigAlg but with a Signature, and the reverse
    let q = lr(&["--nameid", "GM0012345"]);
    let no_alg: String = q
        .split('&')
        .filter(|p| !p.starts_with("SigAlg="))
        .collect::<Vec<_>>()
        .join("&");
    let no_sig: String = q
        .split('&')
        .filter(|p| !p.starts_with("Signature="))
        .collect::<Vec<_>>()
        .join("&");
    for (name, q) in [("no SigAlg", no_alg), ("no Signature", no_sig)] {
        let (r, _) = slo_get(&gw, &q);
        let case = format!("Redirect LogoutRequest, {name}");
        if let Some(p) = refused_with(&r, &["slo_signature_invalid"]) {
            f.check(&case, false, || p);
        }
        all_alive(&mut f, &case, &mut a, &mut b, &mut c);
    }
    let bad_post: Vec<(&str, Vec<&str>, &[&str])> = vec![
        (
            "unsigned",
            vec!["--unsigned", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "wrong key (its cert in KeyInfo)",
            vec!["--wrong-key", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "tampered NameID",
            vec!["--tamper", "--nameid", "GM0012345"],
            &["slo_signature_invalid"],
        ),
        (
            "DOCTYPE",
            vec!["--doctype", "--nameid", "GM0012345"],
            &["slo_bad_request", "slo_signature_invalid"],
        ),
        (
            "other Issuer",
            vec![
                "--nameid",
                "GM0012345",
                "--issuer",
                "https://evil.example/idp",
            ],
            &["slo_refused"],
        ),
    ];
    for (name, extra, reasons) in &bad_post {
        let v = lr_post(extra);
        let r = slo_post(&gw, "SAMLRequest", &v, None);
        let case = format!("POST LogoutRequest, {name}");
        if let Some(p) = refused_with(&r, reasons) {
            f.check(&case, false, || p);
        }
        all_alive(&mut f, &case, &mut a, &mut b, &mut c);
    }

    // --- DEFLATE bombs (16 MiB of zeros, ~16 KiB on the wire): refused fast, server alive
    for (name, extra, reasons) in [
        (
            "unsigned bomb",
            vec!["--unsigned", "--bomb", "16777216", "--nameid", "x"],
            &["slo_signature_invalid", "slo_bad_request"][..],
        ),
        (
            "IdP-signed bomb",
            vec!["--bomb", "16777216", "--nameid", "x"],
            &["slo_bad_request"][..],
        ),
    ] {
        let q = lr(&extra);
        let (r, took) = slo_get(&gw, &q);
        let case = format!("Redirect LogoutRequest, {name} ({} bytes)", q.len());
        if let Some(p) = refused_with(&r, reasons) {
            f.check(&case, false, || p);
        }
        f.check(&case, took < Duration::from_secs(3), || {
            format!("took {took:?}")
        });
        let h = gw.get("/healthz", None);
        f.check(&case, h.status == 200, || format!("/healthz {}", h.status));
        all_alive(&mut f, &case, &mut a, &mut b, &mut c);
    }

    // --- a SessionIndex nobody has: answered, nothing ends
    let id0 = "_00000000000000000000000000000001";
    let q = lr(&[
        "--nameid",
        "GM0012345",
        "--session-index",
        "_nosuchindex",
        "--id",
        id0,
    ]);
    let (r, _) = slo_get(&gw, &q);
    f.add(
        "unknown SessionIndex: answered",
        logout_response_problems(&gw, &certs, &r, id0, None),
    );
    all_alive(&mut f, "unknown SessionIndex", &mut a, &mut b, &mut c);

    // --- Redirect: NameID + A's SessionIndex ends A only; RelayState comes back
    let id1 = "_11111111111111111111111111111111";
    let q1 = lr(&[
        "--nameid",
        "GM0012345",
        "--session-index",
        &si_a,
        "--id",
        id1,
        "--relay-state",
        "idp state/1",
    ]);
    let (r, _) = slo_get(&gw, &q1);
    f.add(
        "Redirect LogoutRequest for A",
        logout_response_problems(&gw, &certs, &r, id1, Some("idp state/1")),
    );
    let st = (a.alive(), b.alive(), c.alive());
    f.check("after A's logout", st == (false, true, true), || {
        format!("alive (A, B, C) = {st:?}")
    });
    let lg = plain_log(&gw);
    f.check(
        "log line",
        lg.contains("IdP-initiated logout") && lg.contains("sessions_ended=1"),
        || "no 'IdP-initiated logout ... sessions_ended=1' log line".into(),
    );

    // --- replay of the same LogoutRequest, on either binding
    let (r, _) = slo_get(&gw, &q1);
    if let Some(p) = refused_with(&r, &["slo_refused"]) {
        f.check("Redirect replay", false, || p);
    }
    let v = lr_post(&["--nameid", "GM0012345", "--id", id1]);
    let r = slo_post(&gw, "SAMLRequest", &v, None);
    if let Some(p) = refused_with(&r, &["slo_refused"]) {
        f.check("same ID over POST", false, || p);
    }
    let st = (b.alive(), c.alive());
    f.check("replays end nothing", st == (true, true), || {
        format!("alive (B, C) = {st:?}")
    });

    // --- POST: NameID only ends every session of that NameID (B), not C
    let id2 = "_22222222222222222222222222222222";
    let v2 = lr_post(&["--nameid", "GM0012345", "--id", id2]);
    let r = slo_post(&gw, "SAMLRequest", &v2, Some("rs-post"));
    f.add(
        "POST LogoutRequest for GM0012345",
        logout_response_problems(&gw, &certs, &r, id2, Some("rs-post")),
    );
    let st = (b.alive(), c.alive());
    f.check("after the POST logout", st == (false, true), || {
        format!("alive (B, C) = {st:?}")
    });
    let r = slo_post(&gw, "SAMLRequest", &v2, Some("rs-post"));
    if let Some(p) = refused_with(&r, &["slo_refused"]) {
        f.check("POST replay", false, || p);
    }
    f.check("C survives everything", c.alive(), || "C logged out".into());
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 6. SP-initiated logout

#[test]
fn sp_initiated_logout() {
    let mut gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let (mut a, si_a) = login_unsolicited(&gw, "A", "GM0012345");
    let (mut other, _) = login_unsolicited(&gw, "O", "GM0012345");
    let old_cookie = a.session().unwrap();

    let r = a.get("/logout");
    let loc = r.location().unwrap_or("").to_string();
    f.check(
        "302 to the IdP SLO URL",
        r.status == 302 && loc.starts_with(&format!("{IDP_SLO}?")),
        || r.summary(),
    );
    f.check("session cookie cleared", a.session().is_none(), || {
        format!("{:?}", r.headers_all("set-cookie"))
    });
    f.check(
        "session ended server-side",
        gw.verify(Some(&old_cookie)).status == 401,
        || "old cookie still verifies".into(),
    );
    f.check(
        "the other browser's session is untouched",
        other.alive(),
        || "ended".into(),
    );
    let q = query_of(&loc).to_string();
    let mut req_id = String::new();
    match verify_redirect(&certs, &q) {
        Err(e) => f.check("LogoutRequest signature (python)", false, || {
            format!("{e}\n{loc}")
        }),
        Ok(m) => {
            req_id = field(&m, "ID").unwrap_or("").to_string();
            let children = field_list(&m, "children");
            f.check(
                "element order",
                children == ["Issuer", "NameID", "SessionIndex"],
                || format!("children {children:?}"),
            );
            for (k, v) in [
                ("root", "LogoutRequest"),
                ("NameID", "GM0012345"),
                ("NameID.Format", PERSISTENT),
                ("Destination", IDP_SLO),
                ("Issuer", gw.sp_entity().as_str()),
                ("Version", "2.0"),
            ] {
                f.check(
                    &format!("LogoutRequest {k}"),
                    field(&m, k) == Some(v),
                    || format!("{:?}, want {v:?}", field(&m, k)),
                );
            }
            f.check(
                "SessionIndex",
                field_list(&m, "SessionIndex") == [si_a.clone()],
                || format!("{:?}, want [{si_a:?}]", field_list(&m, "SessionIndex")),
            );
            f.check("ID", req_id.len() >= 33, || format!("ID {req_id:?}"));
            f.check("SigAlg", m.str("sig_alg") == Some(RSA_SHA256), || {
                format!("{:?}", m.str("sig_alg"))
            });
            let noa = field(&m, "NotOnOrAfter").and_then(iso_to_unix);
            let now = chrono_like_now();
            f.check(
                "NotOnOrAfter in the near future",
                noa.is_some_and(|t| t > now && t < now + 3600),
                || format!("{:?}", field(&m, "NotOnOrAfter")),
            );
        }
    }

    // the IdP answers: unsigned / wrong key / unknown InResponseTo are refused
    let lresp = |extra: &[&str]| tool_ok(&idp_msg(&gw, "logout-response", "redirect", extra));
    if !req_id.is_empty() {
        for (name, extra, reasons) in [
            (
                "unsigned",
                vec!["--unsigned", "--in-response-to", req_id.as_str()],
                &["slo_signature_invalid"][..],
            ),
            (
                "wrong key",
                vec!["--wrong-key", "--in-response-to", req_id.as_str()],
                &["slo_signature_invalid"][..],
            ),
            (
                "unknown InResponseTo",
                vec!["--in-response-to", "_ffffffffffffffffffffffffffffffff"],
                &["slo_refused"][..],
            ),
            (
                "other Issuer",
                vec![
                    "--in-response-to",
                    req_id.as_str(),
                    "--issuer",
                    "https://evil.example/idp",
                ],
                &["slo_refused"][..],
            ),
        ] {
            let (r, _) = slo_get(&gw, &lresp(&extra));
            if let Some(p) = refused_with(&r, reasons) {
                f.check(&format!("LogoutResponse, {name}"), false, || p);
            }
        }
        // the right one: 200 logged-out page; then it is used up
        let q = lresp(&["--in-response-to", &req_id]);
        let (r, _) = slo_get(&gw, &q);
        f.check(
            "LogoutResponse accepted",
            r.status == 200
                && r.reason().is_none()
                && (r.text().contains("ログアウトしました") || r.text().contains("logged out")),
            || r.summary(),
        );
        let (r, _) = slo_get(&gw, &q);
        if let Some(p) = refused_with(&r, &["slo_refused"]) {
            f.check("LogoutResponse replay", false, || p);
        }
    }

    // POST-binding LogoutResponse to a second logout, with a non-Success status: the page says
    // the IdP may not have logged out
    let mut o_req = String::new();
    let r = other.get("/logout");
    if let Ok(m) = verify_redirect(&certs, query_of(r.location().unwrap_or(""))) {
        o_req = field(&m, "ID").unwrap_or("").to_string();
    }
    f.check(
        "second /logout",
        r.status == 302 && !o_req.is_empty() && !other.alive(),
        || r.summary(),
    );
    if !o_req.is_empty() {
        let v = tool_ok(&idp_msg(
            &gw,
            "logout-response",
            "post",
            &["--in-response-to", &o_req, "--status", "Responder"],
        ));
        let r = slo_post(&gw, "SAMLResponse", &v, None);
        f.check(
            "POST LogoutResponse (Responder)",
            r.status == 200 && r.reason() == Some("slo_partial"),
            || r.summary(),
        );
    }

    // /logout without a session: the local page, no LogoutRequest
    let mut n = Browser::new(&gw, "N");
    let r = n.get("/logout");
    f.check(
        "/logout without a session",
        r.status == 200 && r.location().is_none(),
        || r.summary(),
    );

    // an IdP without a SingleLogoutService: /logout ends the session and shows our page
    let md = gw.dir.path().join("idp-metadata.xml");
    let text = fs::read_to_string(&md).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.contains("SingleLogoutService"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(
        stripped, text,
        "metadata had no SingleLogoutService to remove"
    );
    fs::write(&md, stripped).unwrap();
    gw.restart();
    let (mut d, _) = login_unsolicited(&gw, "D", "GM0012345");
    let dc = d.session().unwrap();
    let r = d.get("/logout");
    f.check(
        "no IdP SLO: 200 page",
        r.status == 200 && r.location().is_none(),
        || r.summary(),
    );
    f.check(
        "no IdP SLO: session ended",
        gw.verify(Some(&dc)).status == 401,
        || "alive".into(),
    );
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// 7. session lifetime

/// A login whose AuthnStatement says SessionNotOnOrAfter = now + 5 s ends then, while a
/// normal login (8 h) made at the same time lives on. A SessionNotOnOrAfter already past (more
/// than the clock skew) is refused at the ACS.
#[test]
fn session_not_on_or_after_caps_the_session() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let unsigned = gw.make_response_xml(&["--sign", "none", "--nameid", "GM0005555"]);
    let path = gw.dir.path().join("short.xml");
    fs::write(&path, &unsigned).unwrap();
    let resign = |secs: &str| {
        tool_ok(&[
            s("resign-response"),
            s("--in"),
            path.display().to_string(),
            s("--key"),
            gw.idp[0].key.display().to_string(),
            s("--cert"),
            gw.idp[0].cert.display().to_string(),
            s("--session-not-on-or-after"),
            s(secs),
        ])
    };
    let (mut long, _) = login_unsolicited(&gw, "L", "GM0006666");
    let short = resign("5");
    let made = Instant::now();
    let mut b = Browser::new(&gw, "S");
    let r = b.post_acs(&short, None);
    f.check(
        "short login accepted",
        r.status == 303 && b.session().is_some(),
        || r.summary(),
    );
    f.check("short session works now", b.alive(), || {
        "401 right after login".into()
    });
    // SessionNotOnOrAfter has whole seconds: now+5 s is over by 6 s after it was made
    let wait = Duration::from_secs(7).saturating_sub(made.elapsed());
    std::thread::sleep(wait);
    let v = b.get("/auth/verify");
    f.check(
        "short session over after SessionNotOnOrAfter",
        v.status == 401,
        || v.summary(),
    );
    let u = b.get("/auth/userinfo");
    f.check("userinfo too", u.status == 401, || u.summary());
    f.check("the 8 h session lives on", long.alive(), || "ended".into());

    // already past (beyond the 60 s skew): refused
    let past = {
        let unsigned = gw.make_response_xml(&["--sign", "none"]);
        fs::write(&path, &unsigned).unwrap();
        resign("-300")
    };
    let live = gw.sessions_live();
    let mut p = Browser::new(&gw, "P");
    let r = p.post_acs(&past, None);
    f.add(
        "SessionNotOnOrAfter in the past",
        gw.refusal_problems(&r, &["expired"], live),
    );
    f.finish(&gw);
}

/// `[session] idle_minutes = 1`: a session used every 15 s must stay alive past the first
/// minute (its last use is seconds ago), while one not used since login is over after 60 s.
/// Takes ~80 s (the minimum idle window is one minute); runs alongside the other tests.
#[test]
fn idle_timeout_one_minute() {
    let mut gw = Gateway::start();
    reconfigure(&mut gw, "idle_minutes = 30", "idle_minutes = 1");
    let mut f = Failures::new();
    let (mut busy, _) = login_unsolicited(&gw, "busy", "GM0001111");
    let (mut idle, _) = login_unsolicited(&gw, "idle", "GM0002222");
    let t0 = Instant::now();
    let mut died_at = None;
    // used at ~15, 30, 45, 55, 65, 75 s after login
    for at in [15u64, 30, 45, 55, 65, 75] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(t0.elapsed()));
        if !busy.alive() {
            died_at = Some(t0.elapsed());
            break;
        }
    }
    f.check(
        "a session in use every <= 15 s stays alive with idle_minutes = 1",
        died_at.is_none(),
        || {
            format!(
                "401 at {:?} after login although it was used every <= 15 s",
                died_at.unwrap()
            )
        },
    );
    std::thread::sleep(Duration::from_secs(76).saturating_sub(t0.elapsed()));
    let v = idle.get("/auth/verify");
    f.check(
        "a session unused for > 60 s is over",
        v.status == 401,
        || v.summary(),
    );
    f.finish(&gw);
}

/// `[session] idle_minutes` and `absolute_hours` must be at least 1: 0 is refused by
/// `check-config` (and so by `serve`), naming the key.
#[test]
fn session_limits_minimum_one() {
    let gw = Gateway::start();
    let text = fs::read_to_string(&gw.config).unwrap();
    for (from, to) in [
        ("idle_minutes = 30", "idle_minutes = 0"),
        ("absolute_hours = 8", "absolute_hours = 0"),
    ] {
        assert!(text.contains(from), "config has no {from:?}");
        let p = gw.dir.path().join("zero.toml");
        fs::write(&p, text.replacen(from, to, 1)).unwrap();
        let o = Command::new(common::BIN)
            .args(["check-config", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err =
            String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        assert!(!o.status.success(), "check-config accepted {to:?}:\n{err}");
        assert!(
            err.contains("at least 1"),
            "{to:?}: message does not say the minimum:\n{err}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// SimpleSAMLphp (Debian package) as the IdP

/// Runs `scripts/simplesamlphp-interop.sh` against this build's binary: SP-initiated login
/// (SimpleSAMLphp verifies our signed AuthnRequest, we verify its signed response), SP-initiated
/// and IdP-initiated single logout. Fails (no skip) when SimpleSAMLphp or php is missing.
#[test]
fn simplesamlphp_interop() {
    let script = Path::new(ROOT).join("scripts/simplesamlphp-interop.sh");
    let t = Instant::now();
    let o = Command::new("bash")
        .arg(&script)
        .env("SAMLGATE_BIN", common::BIN)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/simplesamlphp-interop.sh");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("{out}(took {:?})", t.elapsed());
    match o.status.code() {
        Some(0) => assert!(
            out.contains("all checks passed"),
            "exit 0 without 'all checks passed':\n{out}"
        ),
        Some(3) => panic!(
            "SimpleSAMLphp is not installed; scripts/install-deps.sh needs the Debian packages \
             php8.2-cgi php-cli php-xml php-mbstring php-curl simplesamlphp:\n{out}"
        ),
        other => panic!("simplesamlphp-interop.sh failed ({other:?}):\n{out}"),
    }
}

// ------------------------------------------------------------------------------------------
// issue 12 item 5: with only the Assertion signed, InResponseTo comes from the signed
// SubjectConfirmationData; the unsigned envelope's can only refuse

#[test]
fn unsigned_envelope_in_response_to_never_solicits() {
    let mut gw = Gateway::start();
    reconfigure(
        &mut gw,
        "allow_unsolicited = true",
        "allow_unsolicited = false",
    );
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let live = gw.sessions_live();
    let mut a = Browser::new(&gw, "A");
    let st = start_login(&gw, &certs, &mut a, "return_to=/after").unwrap();
    // an IdP-initiated assertion (no InResponseTo under the signature) in an envelope whose
    // InResponseTo an attacker copied from the /saml/login redirect
    let forged = gw.make_response(&["--sign", "assertion", "--envelope-in-response-to", &st.id]);
    let r = a.post_acs(&forged, Some(&st.relay));
    f.add(
        "IdP-initiated assertion, envelope InResponseTo copied from /saml/login",
        gw.refusal_problems(&r, &["in_response_to_unknown", "unsolicited_refused"], live),
    );
    // the envelope naming another request than the signed confirmation
    let other = gw.make_response(&[
        "--sign",
        "assertion",
        "--in-response-to",
        &st.id,
        "--envelope-in-response-to",
        "_0123456789abcdef0123456789abcdef",
    ]);
    let r = a.post_acs(&other, Some(&st.relay));
    f.add(
        "envelope InResponseTo != signed confirmation",
        gw.refusal_problems(&r, &["in_response_to_unknown"], live),
    );
    // the genuine answer (InResponseTo under the signature) still logs in
    let ok = gw.make_response(&["--sign", "assertion", "--in-response-to", &st.id]);
    let r = a.post_acs(&ok, Some(&st.relay));
    f.check(
        "signed SubjectConfirmationData InResponseTo",
        r.status == 303 && r.location() == Some("/after"),
        || r.summary(),
    );
    f.check("session", a.alive(), || "no session".into());
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// issue 12 item 7: the SLO Redirect binding's RelayState is exactly the signed raw pair

#[test]
fn slo_redirect_relay_state_is_the_signed_pair() {
    let gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let lr = |extra: &[&str]| tool_ok(&idp_msg(&gw, "logout-request", "redirect", extra));
    let evil = "Relay%53tate=https%3A%2F%2Fevil.example%2Fsteal";
    // a look-alike name (decodes to "RelayState") placed before a genuinely signed query
    let (_a, si_a) = login_unsolicited(&gw, "A", "GM0012345");
    let id1 = "_51111111111111111111111111111111";
    let q1 = lr(&[
        "--nameid",
        "GM0012345",
        "--session-index",
        &si_a,
        "--id",
        id1,
        "--relay-state",
        "idp state/1",
    ]);
    let (r, _) = slo_get(&gw, &format!("{evil}&{q1}"));
    f.add(
        "Relay%53tate before a signed RelayState",
        logout_response_problems(&gw, &certs, &r, id1, Some("idp state/1")),
    );
    // ... and before a signed query without RelayState: the answer carries none
    let (_b, si_b) = login_unsolicited(&gw, "B", "GM0012346");
    let id2 = "_52222222222222222222222222222222";
    let q2 = lr(&[
        "--nameid",
        "GM0012346",
        "--session-index",
        &si_b,
        "--id",
        id2,
    ]);
    let (r, _) = slo_get(&gw, &format!("{evil}&{q2}"));
    f.add(
        "Relay%53tate and no signed RelayState",
        logout_response_problems(&gw, &certs, &r, id2, None),
    );
    f.finish(&gw);
}

// issue 12 item 8 for single logout: with `[idp] allow_sha1 = true` an RSA-SHA1 LogoutRequest
// from the metadata key is honoured on both bindings (refused by default: idp_initiated_logout)
#[test]
fn slo_sha1_only_with_allow_sha1() {
    let mut gw = Gateway::start();
    reconfigure(
        &mut gw,
        "allow_unsolicited = true\n",
        "allow_unsolicited = true\nallow_sha1 = true\n",
    );
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let (mut a, si_a) = login_unsolicited(&gw, "A", "GM0012345");
    let (mut b, _) = login_unsolicited(&gw, "B", "GM0077777");
    let sha1 = |binding: &str, extra: &[&str]| {
        let mut x = vec!["--sig-alg", "rsa-sha1"];
        x.extend_from_slice(extra);
        tool_ok(&idp_msg(&gw, "logout-request", binding, &x))
    };
    let q = sha1("redirect", &["--nameid", "GM0012345", "--wrong-key"]);
    let (r, _) = slo_get(&gw, &q);
    if let Some(p) = refused_with(&r, &["slo_signature_invalid"]) {
        f.check("RSA-SHA1 from a key not in the metadata", false, || p);
    }
    f.check("A survives the foreign key", a.alive(), || {
        "A logged out".into()
    });
    let id1 = "_53333333333333333333333333333333";
    let q = sha1(
        "redirect",
        &[
            "--nameid",
            "GM0012345",
            "--session-index",
            &si_a,
            "--id",
            id1,
        ],
    );
    let (r, _) = slo_get(&gw, &q);
    f.add(
        "Redirect RSA-SHA1 LogoutRequest",
        logout_response_problems(&gw, &certs, &r, id1, None),
    );
    f.check("A logged out", !a.alive(), || "A still alive".into());
    let id2 = "_54444444444444444444444444444444";
    let v = sha1("post", &["--nameid", "GM0077777", "--id", id2]);
    let r = slo_post(&gw, "SAMLRequest", &v, None);
    f.add(
        "POST RSA-SHA1 (SHA-1 digest) LogoutRequest",
        logout_response_problems(&gw, &certs, &r, id2, None),
    );
    f.check("B logged out", !b.alive(), || "B still alive".into());
    f.finish(&gw);
}

// ------------------------------------------------------------------------------------------
// Issue 12 item 12: an anonymous `GET /saml/login` costs no store write, is rate limited per
// client, and each request is answered at most once.

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every record in the store, per sled tree, less the health probe's (the gateway must be
/// stopped: sled is one process).
fn store_counts(gw: &Gateway) -> BTreeMap<String, usize> {
    let db = sled::open(gw.dir.path().join("store")).expect("open the stopped gateway's store");
    db.tree_names()
        .into_iter()
        .map(|n| {
            // The store health probe (store::health) writes a replay entry every few seconds;
            // those are the gateway's own, not the requests'.
            let len = db.open_tree(&n).map_or(0, |t| {
                t.iter()
                    .keys()
                    .filter(|k| k.as_ref().map_or(true, |k| !contains(k, b"probe\0")))
                    .count()
            });
            (String::from_utf8_lossy(&n).into_owned(), len)
        })
        .collect()
}

#[test]
fn saml_login_writes_nothing_to_the_store() {
    let mut gw = Gateway::start();
    let certs = sp_certs(&gw);
    gw.stop(true);
    let before = store_counts(&gw);
    gw.restart();
    let mut f = Failures::new();
    for i in 0..40 {
        let mut b = Browser::new(&gw, "anonymous");
        let st = start_login(&gw, &certs, &mut b, &format!("return_to=/page/{i}"));
        f.check("login started", st.is_ok(), || format!("{:?}", st.err()));
    }
    gw.stop(true);
    let after = store_counts(&gw);
    f.check("no store growth", after == before, || {
        format!("store records before {before:?}\nafter 40 x GET /saml/login {after:?}")
    });
    gw.restart();
    f.finish(&gw);
}

#[test]
fn saml_login_rate_limit_answers_429_with_retry_after() {
    let mut gw = Gateway::start();
    reconfigure(
        &mut gw,
        "[server]\n",
        "[server]\nsaml_login_rate_per_minute = 5\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let mut b = Browser::new(&gw, "flooder");
    for i in 0..5 {
        let st = start_login(&gw, &certs, &mut b, "return_to=/x");
        f.check(&format!("login {i} within the limit"), st.is_ok(), || {
            format!("{:?}", st.err())
        });
    }
    let r = b.get("/saml/login?return_to=/x");
    f.check("6th: 429", r.status == 429, || r.summary());
    f.check("reason", r.reason() == Some("rate_limited"), || r.summary());
    let retry = r.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    f.check(
        "Retry-After",
        retry.is_some_and(|s| (1..=60).contains(&s)),
        || format!("Retry-After {:?}", r.header("retry-after")),
    );
    let body = r.text();
    f.check(
        "page in both languages",
        body.contains("ログインの要求が多すぎます") && body.contains("Too many login requests"),
        || r.summary(),
    );
    f.check(
        "no request cookie",
        !r.headers_all("set-cookie")
            .iter()
            .any(|c| c.contains("samlgate-req=")),
        || r.summary(),
    );
    // A 7th: refused too; logged once per client (not per request of a flood), all counted.
    let r7 = b.get("/saml/login?return_to=/x");
    f.check("7th: 429", r7.status == 429, || r7.summary());
    let lines = plain_log(&gw)
        .lines()
        .filter(|l| l.contains("rate_limited") && l.contains("too many from this client"))
        .count();
    f.check("logged once", lines == 1, || {
        format!("{lines} rate_limited log lines, want 1")
    });
    let m = gw.metrics();
    f.check(
        "counted",
        m.contains("samlgate_logins_total{outcome=\"refused\",reason=\"rate_limited\"} 2"),
        || m.lines().filter(|l| l.contains("rate_limited")).collect(),
    );
    // Another client behind the trusted proxy (127.0.0.1) has its own allowance.
    let other = raw_http(
        gw.port,
        "GET",
        "/saml/login?return_to=/y",
        &[("X-Forwarded-For", "198.51.100.7".to_string())],
        None,
    )
    .unwrap();
    f.check("other client", other.status == 302, || other.summary());
    f.finish(&gw);
}

#[test]
fn one_response_per_request_also_after_a_restart() {
    let mut gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut f = Failures::new();
    let mut a = Browser::new(&gw, "A");
    let st = start_login(&gw, &certs, &mut a, "return_to=/once").unwrap();
    let req_cookie = a.jar.clone();
    // A refused response (unsigned) does not use the request up.
    let bad = gw.make_response(&["--in-response-to", &st.id, "--sign", "none"]);
    let r = a.post_acs(&bad, Some(&st.relay));
    f.check("unsigned response refused", r.status >= 400, || r.summary());
    a.jar = req_cookie.clone();
    let r = a.post_acs(
        &gw.make_response(&["--in-response-to", &st.id]),
        Some(&st.relay),
    );
    f.check(
        "first response",
        r.status == 303 && r.location() == Some("/once"),
        || r.summary(),
    );
    for when in ["at once", "after a restart"] {
        if when == "after a restart" {
            gw.restart();
        }
        let live = gw.sessions_live();
        let mut again = Browser::new(&gw, "A-again");
        again.jar = req_cookie.clone();
        let fresh = gw.make_response(&["--in-response-to", &st.id]);
        let r = again.post_acs(&fresh, Some(&st.relay));
        f.add(
            &format!("second response to the request, {when}"),
            gw.refusal_problems(&r, &["in_response_to_unknown"], live),
        );
    }
    f.finish(&gw);
}

// review of the issue-12 fixes, finding 10: a browser with two request cookies (two tabs)

/// Two logins started in one browser send two request cookies; the response to the second
/// request is matched to it (the verified InResponseTo picks the request), not refused because
/// the first cookie names another request.
#[test]
fn the_request_answered_is_the_one_in_response_to_names() {
    let gw = Gateway::start();
    let certs = sp_certs(&gw);
    let mut b = Browser::new(&gw, "two tabs");
    let st1 = start_login(&gw, &certs, &mut b, "return_to=/tab-one").unwrap();
    let v1 = b
        .jar
        .get("samlgate-req")
        .cloned()
        .expect("first request cookie");
    let st2 = start_login(&gw, &certs, &mut b, "return_to=/tab-two").unwrap();
    let v2 = b
        .jar
        .get("samlgate-req")
        .cloned()
        .expect("second request cookie");
    assert_ne!(st1.id, st2.id);
    // Both cookies, the first request's first: `samlgate-req=v1; samlgate-req=v2`.
    b.jar
        .insert("samlgate-req".into(), format!("{v1}; samlgate-req={v2}"));
    let resp = gw.make_response(&["--in-response-to", &st2.id, "--nameid", "GM0000010"]);
    let r = b.post_acs(&resp, Some(&st2.relay));
    assert!(
        r.status == 303 && r.location() == Some("/tab-two") && b.session().is_some(),
        "the response to the second request: {}\n{}",
        r.summary(),
        gw.log_tail(2000)
    );
}
