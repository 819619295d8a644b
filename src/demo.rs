//! `samlgate demo`: the gateway plus a development IdP, both on loopback, so a person can click
//! through the whole login in a browser with nothing configured.
//!
//! The development IdP signs with samael/xmlsec (our code path, not an independent one: the
//! tests use python signxml for that). It refuses to listen anywhere but loopback: it hands out
//! signed assertions for any test user to anyone who asks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::pkey::{PKey, Private};
use samael::crypto::{Crypto, CryptoProvider};

use crate::keys;
use crate::saml::metadata::xml_escape;

pub const DEMO_IDP_ENTITY: &str = "https://gmis-idp.demo/idp";

/// A test user of the development IdP.
pub struct DemoUser {
    pub account_id: &'static str,
    pub category: &'static str,
    pub facility_code: &'static str,
    pub facility_name: &'static str,
    pub display_name: &'static str,
    pub email: &'static str,
}

pub const USERS: [DemoUser; 4] = [
    DemoUser {
        account_id: "GM0012345",
        category: "病院",
        facility_code: "1310000001",
        facility_name: "テスト総合病院",
        display_name: "山田 太郎",
        email: "yamada@example.jp",
    },
    DemoUser {
        account_id: "GM0023456",
        category: "薬局",
        facility_code: "1340000002",
        facility_name: "さくら薬局",
        display_name: "佐藤 花子",
        email: "sato@example.jp",
    },
    DemoUser {
        account_id: "GM0045678",
        category: "歯科診療所",
        facility_code: "1330000004",
        facility_name: "みどり歯科クリニック",
        display_name: "高橋 美咲",
        email: "takahashi@example.jp",
    },
    DemoUser {
        account_id: "GM0034567",
        category: "保健所",
        facility_code: "1390000003",
        facility_name: "みなと保健所",
        display_name: "鈴木 一郎",
        email: "suzuki@example.jp",
    },
];

/// Creates the demo directory on first run (config, IdP key and metadata, SP key) and serves.
pub fn run(dir: &Path, port: u16) -> Result<(), String> {
    let idp_port = port.checked_add(1).ok_or("--port too high")?;
    let cfg_path = prepare(dir, port, idp_port)?;
    let loaded = crate::server::load(&cfg_path).map_err(|e| e.to_string())?;
    seed_password_account(&loaded.cfg)?;
    let idp_key = read_key(&dir.join("idp/idp.key"))?;
    let idp_cert_b64 = cert_b64(&dir.join("idp/idp.crt"))?;
    let idp = Arc::new(DemoIdp {
        key_der: idp_key.private_key_to_der().map_err(|e| e.to_string())?,
        cert_b64: idp_cert_b64,
        acs: loaded.cfg.acs_url(),
        audience: loaded.cfg.sp_entity_id.clone(),
    });
    let idp_addr: SocketAddr = ([127, 0, 0, 1], idp_port).into();
    println!("\nsamlgate demo");
    println!("  gateway        {}/login", loaded.cfg.public_url);
    println!("  demo G-MIS IdP http://{idp_addr}/   (pick a test user, press 「医療情報ネットへ（SSO）」)");
    println!("  files          {}\n", dir.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(idp_addr)
            .await
            .map_err(|e| format!("demo IdP cannot listen on {idp_addr}: {e}"))?;
        let idp_task = Box::pin(serve_idp(idp, listener));
        crate::server::serve_loaded(loaded, Some(idp_task))
            .await
            .map_err(|e| e.to_string())
    })
}

/// The ID/password account README names (account_ops::seed_demo), made on the first run.
fn seed_password_account(cfg: &crate::config::Config) -> Result<(), String> {
    let store = crate::store::open(cfg).map_err(|e| e.to_string())?;
    if crate::account_ops::seed_demo(&*store, &cfg.local).map_err(|e| e.to_string())? {
        println!(
            "  ID/password    {} / first password {} (changed at first login)",
            crate::account_ops::DEMO_USER_ID,
            crate::account_ops::DEMO_FIRST_PASSWORD
        );
    }
    Ok(())
}

fn prepare(dir: &Path, port: u16, idp_port: u16) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| format!("demo dir {}: {e}", dir.display());
    std::fs::create_dir_all(dir.join("idp")).map_err(io)?;
    let cfg_path = dir.join("samlgate.toml");
    if !cfg_path.exists() {
        std::fs::write(&cfg_path, demo_config(port)).map_err(io)?;
    }
    if !dir.join("admin.token").exists() {
        let token = hex::encode(rand::random::<[u8; 32]>());
        keys::write_atomic(
            &dir.join("admin.token"),
            format!("{token}\n").as_bytes(),
            0o600,
        )
        .map_err(io)?;
    }
    let doc = dir.join("consent-2023-04.md");
    if !doc.exists() {
        std::fs::write(&doc, DEMO_CONSENT_DOCUMENT).map_err(io)?;
    }
    if !dir.join("idp/idp.key").exists() {
        println!(
            "first run: generating development certificates in {} ...",
            dir.display()
        );
        let (k, c) = keys::self_signed("gmis-idp.demo", 3650).map_err(|e| e.to_string())?;
        keys::write_atomic(
            &dir.join("idp/idp.key"),
            &k.private_key_to_pem_pkcs8().map_err(|e| e.to_string())?,
            0o600,
        )
        .map_err(io)?;
        keys::write_atomic(
            &dir.join("idp/idp.crt"),
            &c.to_pem().map_err(|e| e.to_string())?,
            0o644,
        )
        .map_err(io)?;
    }
    // The metadata names the IdP port, so it is rewritten each run.
    let cert = cert_b64(&dir.join("idp/idp.crt"))?;
    std::fs::write(dir.join("idp/metadata.xml"), idp_metadata(&cert, idp_port)).map_err(io)?;
    let cfg = crate::config::Config::load(&cfg_path).map_err(|e| e.to_string())?;
    if crate::keys::KeySet::load(&cfg.keys_dir).is_err()
        && !cfg.keys_dir.join("keyset.json").exists()
    {
        keys::new_key(&cfg.keys_dir, "127.0.0.1", 3650).map_err(|e| e.to_string())?;
    }
    // A demo dir made by an older version has a world-readable store; these are the demo's
    // own files, so it fixes them instead of being refused at start.
    private_tree(&cfg.store_path).map_err(io)?;
    Ok(cfg_path)
}

fn private_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(m.permissions().mode() & 0o700),
    )?;
    if m.is_dir() {
        for e in std::fs::read_dir(path)? {
            private_tree(&e?.path())?;
        }
    }
    Ok(())
}

/// The demo's consent document (`[consent] document`), an example of the Markdown subset.
const DEMO_CONSENT_DOCUMENT: &str =
    "# 医療情報ネット（関係者向けメニュー）利用者情報の取扱いについて

G-MISアカウントでログインするにあたり、G-MISから提供される次の情報を医療情報ネットに登録します。

- G-MISアカウントID、区分
- 医療機関等コード、医療機関等名称
- 氏名、メールアドレス

## 利用目的

登録した情報は、本人確認、関係者向けメニューの利用者管理、および事務局からの連絡にのみ利用します。

## 第三者提供

法令に基づく場合を除き、第三者に提供しません。
";

fn demo_config(port: u16) -> String {
    format!(
        r#"# samlgate demo configuration (generated by `samlgate demo`; edit freely).
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[sp]
entity_id = "http://127.0.0.1:{port}/saml/metadata"
keys_dir = "sp-keys"

[idp]
metadata = "idp/metadata.xml"
clock_skew_seconds = 60

[store]
path = "store"

[attributes]
account_id = "gmisAccountId"
account_id_pattern = "^GM[0-9]{{7}}$"
category = "accountCategory"
facility_code = "facilityCode"
facility_name = "facilityName"
display_name = "displayName"
email = "mail"

[consent]
required = true
version = "2023-04"
document = "consent-{{version}}.md"
privacy_url = "https://www.example.go.jp/privacy"

[policy]
open_categories = ["病院", "診療所", "歯科診療所", "助産所", "薬局"]

[session]
idle_minutes = 30
absolute_hours = 8

# The admin API, so the secretariat's CLI commands work while the demo runs.
[admin]
token_file = "admin.token"

[support]
name = "G-MIS事務局（デモ）"
phone = "0120-000-000"
email = "gmis-support@example.go.jp"
url = "https://www.example.go.jp/gmis/help"
hours = "平日 9:00〜17:00"
"#
    )
}

fn idp_metadata(cert_b64: &str, idp_port: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{DEMO_IDP_ENTITY}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://127.0.0.1:{idp_port}/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#
    )
}

fn read_key(p: &Path) -> Result<PKey<Private>, String> {
    let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    PKey::private_key_from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))
}

fn cert_b64(p: &Path) -> Result<String, String> {
    use base64::Engine;
    let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let x = openssl::x509::X509::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(x.to_der().map_err(|e| e.to_string())?))
}

pub struct DemoIdp {
    /// PKCS#1 DER, as xmlsec loads it.
    pub key_der: Vec<u8>,
    pub cert_b64: String,
    pub acs: String,
    pub audience: String,
}

impl DemoIdp {
    /// A Response signed over the whole Response (enveloped, RSA-SHA256, exc-c14n).
    pub fn signed_response(
        &self,
        u: &DemoUser,
        in_response_to: Option<&str>,
    ) -> Result<String, String> {
        let now = chrono::Utc::now();
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (issue, nb, noa) = (
            fmt(now),
            fmt(now - chrono::Duration::seconds(30)),
            fmt(now + chrono::Duration::seconds(300)),
        );
        let rid = format!("_r{}", hex::encode(rand::random::<[u8; 16]>()));
        let aid = format!("_a{}", hex::encode(rand::random::<[u8; 16]>()));
        let irt = in_response_to
            .map(|i| format!(" InResponseTo=\"{}\"", xml_escape(i)))
            .unwrap_or_default();
        let attr = |name: &str, v: &str| {
            format!(
                r#"<saml:Attribute Name="{name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue></saml:Attribute>"#,
                xml_escape(v)
            )
        };
        let attrs = [
            attr("gmisAccountId", u.account_id),
            attr("accountCategory", u.category),
            attr("facilityCode", u.facility_code),
            attr("facilityName", u.facility_name),
            attr("displayName", u.display_name),
            attr("mail", u.email),
        ]
        .concat();
        let acs = xml_escape(&self.acs);
        let aud = xml_escape(&self.audience);
        let xml = format!(
            r##"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{rid}" Version="2.0" IssueInstant="{issue}" Destination="{acs}"{irt}><saml:Issuer>{DEMO_IDP_ENTITY}</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#{rid}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:Assertion ID="{aid}" Version="2.0" IssueInstant="{issue}"><saml:Issuer>{DEMO_IDP_ENTITY}</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{nameid}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{noa}" Recipient="{acs}"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{nb}" NotOnOrAfter="{noa}"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{issue}" SessionIndex="{aid}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion></samlp:Response>"##,
            cert = self.cert_b64,
            nameid = xml_escape(u.account_id),
        );
        Crypto::sign_xml(xml.as_bytes(), &self.key_der).map_err(|e| format!("signing: {e}"))
    }
}

async fn serve_idp(idp: Arc<DemoIdp>, listener: tokio::net::TcpListener) {
    match listener.local_addr() {
        Ok(a) if a.ip().is_loopback() => {}
        other => {
            tracing::error!(addr = ?other, "the demo IdP only runs on a loopback address; not starting it");
            return;
        }
    }
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let idp = idp.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let idp = idp.clone();
                async move { Ok::<_, Infallible>(idp_route(&idp, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// The ID of a deflated, base64 AuthnRequest (the demo does not check its signature; the
/// tests do, with an independent implementation).
fn authn_request_id(b64: &str) -> Option<String> {
    use base64::Engine;
    use std::io::Read;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(raw.as_slice())
        .take(64 * 1024)
        .read_to_string(&mut xml)
        .ok()?;
    let mut r = quick_xml::Reader::from_str(&xml);
    loop {
        match r.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return e.try_get_attribute("ID").ok().flatten().and_then(|a| {
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .ok()
                        .map(|v| v.into_owned())
                });
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

fn page(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

const DEMO_STYLE: &str = "body{font-family:'Noto Sans CJK JP',sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.7;color:#1a1a1a}\
h1{color:#5a2d82}.banner{background:#fff4d6;border:2px dashed #8a6d0b;padding:.5rem 1rem}label{display:block;padding:.4rem 0}\
button{background:#5a2d82;color:#fff;border:0;border-radius:4px;padding:.6rem 1.4rem;font-size:1rem}button:focus,input:focus{outline:3px solid #b34700;outline-offset:2px}";

async fn idp_route(idp: &DemoIdp, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") | (&Method::GET, "/sso") => login_page(&req),
        (&Method::POST, "/login") => post_login(idp, req).await,
        (&Method::GET, "/autopost.js") => {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"document.getElementById('post').submit();\n",
            )));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/javascript"));
            r
        }
        _ => page(StatusCode::NOT_FOUND, "not found".into()),
    }
}

/// The user picker. An SP-initiated login brings SAMLRequest (deflated AuthnRequest) and
/// RelayState; the answer carries InResponseTo and the RelayState back unchanged.
fn login_page(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let relay = get("RelayState").unwrap_or_else(|| "/".into());
    let request_id = get("SAMLRequest")
        .and_then(|r| authn_request_id(&r))
        .unwrap_or_default();
    let mut users = String::new();
    for (i, u) in USERS.iter().enumerate() {
        users.push_str(&format!(
            "<label><input type=\"radio\" name=\"user\" value=\"{i}\"{}> {} ({}) — {} / {}</label>\n",
            if i == 0 { " checked" } else { "" },
            u.display_name, u.account_id, u.category, u.facility_name
        ));
    }
    let solicited = if request_id.is_empty() {
        "IdP-initiated（G-MISのメニューから） / IdP-initiated"
    } else {
        "SP-initiated（医療情報ネットからの要求に応答） / answering the gateway's AuthnRequest"
    };
    page(StatusCode::OK, format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>G-MIS（デモ）</title><style>{DEMO_STYLE}</style></head><body>\
<p class=\"banner\">開発用のデモIdPです。本番のG-MISではありません。 / Development IdP, not the real G-MIS.</p>\
<h1>G-MIS（デモ）</h1><p>ログインする利用者を選び、「医療情報ネットへ」を押してください。 / Choose a test user and press the button.</p><p>{solicited}</p>\
<form method=\"post\" action=\"/login\"><fieldset><legend>テスト利用者 / Test user</legend>{users}</fieldset>\
<input type=\"hidden\" name=\"RelayState\" value=\"{}\"><input type=\"hidden\" name=\"InResponseTo\" value=\"{}\"><button type=\"submit\">医療情報ネットへ（SSO） / Go to 医療情報ネット</button></form></body></html>",
        xml_escape(&relay), xml_escape(&request_id)
    ))
}

/// The picked user's signed Response, auto-posted to the gateway's ACS.
async fn post_login(idp: &DemoIdp, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), 8192).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return page(StatusCode::BAD_REQUEST, "bad form".into()),
    };
    let mut user = 0usize;
    let mut relay = "/".to_string();
    let mut in_response_to = String::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "user" => user = v.parse().unwrap_or(0),
            "RelayState" => relay = v.into_owned(),
            "InResponseTo" => in_response_to = v.into_owned(),
            _ => {}
        }
    }
    let u = &USERS[user.min(USERS.len() - 1)];
    let irt = Some(in_response_to.as_str()).filter(|s| !s.is_empty());
    match idp.signed_response(u, irt) {
        Ok(xml) => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
            page(StatusCode::OK, format!(
                "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>G-MIS（デモ）</title><style>{DEMO_STYLE}</style><script src=\"/autopost.js\" defer></script></head><body>\
<p class=\"banner\">デモIdP / Development IdP</p><p>{} さんとして医療情報ネットへ移動します。 / Signing in as {}.</p>\
<form id=\"post\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"SAMLResponse\" value=\"{b64}\"><input type=\"hidden\" name=\"RelayState\" value=\"{}\">\
<button type=\"submit\">続ける / Continue</button></form></body></html>",
                xml_escape(u.display_name), xml_escape(u.account_id), xml_escape(&idp.acs), xml_escape(&relay)
            ))
        }
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("signing failed: {}", xml_escape(&e)),
        ),
    }
}
