//! The reverse proxy to the staff menu (`[upstream] url`): every path that is not the
//! gateway's own is forwarded with the session's identity headers.
//!
//! Security properties:
//! - every identity header a client sent is removed before anything else, with or without a
//!   session, whatever its letter case, and also its `_` spelling (`X_Auth_Request_User`),
//!   which some frameworks read as the same header;
//! - a request without a live session reaches the upstream only on a configured public path
//!   (and then without identity headers);
//! - forwarding headers (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Original-URL`, ...) from
//!   a client are removed unless the peer is in `[server] trusted_proxies`; X-Forwarded-Host and
//!   -Proto always come from `public_url`.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::affinity::{Affinity, SendError};
use super::auth::{find_session, insert_identity, IDENTITY_HEADERS};
use super::pages::{self, Lang, Resp};
use super::App;
use crate::config::UpstreamConfig;
use crate::reason::Reason;

/// The headers we own towards the upstream, in addition to the identity headers.
const OWNED: [&str; 3] = [
    "x-samlgate-jwt",
    "x-samlgate-local-user",
    "x-samlgate-auth-method",
];

const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    hyper::header::PROXY_AUTHENTICATE,
    hyper::header::PROXY_AUTHORIZATION,
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    UPGRADE,
];

pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    authority: String,
    public_paths: Vec<String>,
    timeout: Duration,
    http2: bool,
    /// X-Forwarded-Host and -Proto, from `[server] public_url`.
    public_host: HeaderValue,
    public_proto: HeaderValue,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig, public_url: &str) -> Result<Upstream, String> {
        let (scheme, host) = public_url
            .split_once("://")
            .ok_or("[server] public_url has no scheme")?;
        let public_host =
            HeaderValue::from_str(host).map_err(|e| format!("[server] public_url host: {e}"))?;
        let public_proto = HeaderValue::from_str(scheme).map_err(|e| e.to_string())?;
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("[upstream] url: {e}"))?;
        let authority = uri
            .authority()
            .ok_or("[upstream] url has no host")?
            .to_string();
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        conn.set_nodelay(true);
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256);
        if cfg.http2 {
            b.http2_only(true);
        }
        Ok(Upstream {
            client: b.build(conn),
            authority,
            public_paths: cfg.public_paths.clone(),
            timeout: Duration::from_secs(cfg.timeout_seconds),
            http2: cfg.http2,
            public_host,
            public_proto,
        })
    }

    /// True when the upstream speaks HTTP/2 (prior knowledge): one multiplexed pool connection.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// Over the client connection's own upstream connection when there is one, else (and
    /// for a request it could not send) over the shared pool. `req` has the origin form
    /// (`/path?query`), which is what a connection of our own sends; the pool is given the
    /// absolute URI it wants.
    async fn send(
        &self,
        affinity: Option<&Affinity>,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, String> {
        let mut req = match affinity {
            Some(a) => match a.send(&self.authority, req).await {
                Ok(resp) => return Ok(resp),
                Err(SendError::Failed(e)) => return Err(e.to_string()),
                Err(SendError::Retry(req)) => *req,
            },
            None => req,
        };
        // Built from parts, never by pasting strings: the authority is always ours.
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(self.authority.as_str())
            .path_and_query(pq)
            .build()
            .map_err(|e| e.to_string())?;
        self.client.request(req).await.map_err(|e| e.to_string())
    }

    /// A public prefix of the canonical path (`request_target::canonical_path`: decoded, and
    /// only for targets every upstream reads alike), so `/%73tatic/x` is public.
    fn is_public(&self, canonical: &str) -> bool {
        self.public_paths
            .iter()
            .any(|p| canonical.starts_with(p.as_str()))
    }
}

/// True for a header that names (or spells differently) one we set for the upstream.
/// (Compared byte by byte: this runs for every header of every proxied request.)
pub fn is_identity_header(name: &str) -> bool {
    let same = |ours: &str| {
        ours.len() == name.len()
            && ours.bytes().zip(name.bytes()).all(|(o, n)| {
                let n = if n == b'_' {
                    b'-'
                } else {
                    n.to_ascii_lowercase()
                };
                o == n
            })
    };
    IDENTITY_HEADERS.iter().any(|(h, _)| same(h)) || OWNED.iter().any(|h| same(h))
}

/// What the proxy answered: our own page, or the upstream's streaming response.
pub enum Proxied {
    Own(Resp),
    Upstream(Response<Incoming>),
}

fn bad_gateway(lang: Lang, rid: &str, status: StatusCode) -> Resp {
    let page = pages::ErrorPage {
        lang,
        title: lang.t("ただいま表示できません", "The staff menu is not available"),
        message: lang.t(
            "関係者向けメニューに接続できませんでした。しばらくしてから再度お試しください。",
            "The staff menu could not be reached. Please try again shortly.",
        ),
        other: lang.other().t(
            "関係者向けメニューに接続できませんでした。しばらくしてから再度お試しください。",
            "The staff menu could not be reached. Please try again shortly.",
        ),
        code: "",
        request_id: rid,
        action_href: None,
        action_label: "",
        success: false,
    };
    pages::render(status, &page)
}

/// 400 for a target refused by `request_target`: a page with the reason, and a way home.
fn path_refused(lang: Lang, rid: &str) -> Resp {
    let (ja, en) = Reason::PathRefused.message();
    let page = pages::ErrorPage {
        lang,
        title: lang.t(
            "このアドレスは使用できません",
            "This address cannot be used",
        ),
        message: lang.t(ja, en),
        other: lang.other().t(ja, en),
        code: Reason::PathRefused.code(),
        request_id: rid,
        action_href: Some("/"),
        action_label: lang.t("トップへ", "Home"),
        success: false,
    };
    let mut r = pages::render(Reason::PathRefused.status(), &page);
    r.headers_mut().insert(
        "x-samlgate-reason",
        HeaderValue::from_static(Reason::PathRefused.code()),
    );
    r
}

/// Checks the request (target, path, session), rewrites it for the upstream, sends it and
/// relays the answer; every refusal is our own page.
pub async fn forward(
    app: &App,
    up: &Upstream,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    rid: &str,
    affinity: Option<&Affinity>,
) -> Proxied {
    let lang = Lang::of(&req);
    if let Some(r) = refuse_target(&req) {
        return Proxied::Own(r);
    }
    let is_upgrade = is_websocket_upgrade(&req);
    // HTTP/1 clients send one request at a time: their own upstream connection fits. HTTP/2
    // clients multiplex, and upgrades leave the connection: both use the shared pool.
    let affinity = affinity.filter(|_| req.version() < hyper::Version::HTTP_2 && !is_upgrade);
    strip_incoming(req.headers_mut());
    // Decided on the path as the staff menu's framework will read it; what upstreams disagree
    // about is refused (request_target.rs).
    let path = match crate::request_target::canonical_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(
                target: "samlgate::proxy", request_id = rid,
                peer = %super::client_ip(app, req.headers(), peer),
                reason = Reason::PathRefused.code(), detail = e.detail(),
                path = %req.uri().path().chars().take(200).collect::<String>(),
                "request target refused"
            );
            return Proxied::Own(path_refused(lang, rid));
        }
    };
    if let Some(r) = identify(app, up, &mut req, &path, rid) {
        return Proxied::Own(r);
    }
    to_upstream(app, up, &mut req, peer, rid, is_upgrade);
    let server_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut req));
    let resp = match tokio::time::timeout(up.timeout, up.send(affinity, req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(target: "samlgate::proxy", request_id = rid, reason = Reason::UpstreamError.code(), error = %e, "upstream request failed");
            return Proxied::Own(bad_gateway(lang, rid, StatusCode::BAD_GATEWAY));
        }
        Err(_) => {
            tracing::warn!(target: "samlgate::proxy", request_id = rid, reason = Reason::UpstreamTimeout.code(), "upstream did not answer in time");
            return Proxied::Own(bad_gateway(lang, rid, StatusCode::GATEWAY_TIMEOUT));
        }
    };
    relay(resp, server_upgrade)
}

/// Only origin-form targets (`/path?query`; an absolute-form one is cut to that) are
/// forwarded: `*` and CONNECT's authority form name no resource of the staff menu, and
/// pasted into an upstream URI they could change where the request goes.
fn refuse_target(req: &Request<Incoming>) -> Option<Resp> {
    let origin_form = req
        .uri()
        .path_and_query()
        .is_some_and(|pq| pq.as_str().starts_with('/'));
    if req.method() == hyper::Method::CONNECT || !origin_form {
        return Some(pages::text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "bad request target\n",
        ));
    }
    None
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Removes what the client may not pass on, before we add ours or look at the session.
fn strip_incoming(h: &mut hyper::HeaderMap) {
    // 0. Hop-by-hop headers stay on this hop. First, before we add ours: a client must not be
    // able to name our headers in `Connection` and have them removed on the way out.
    strip_hop_by_hop(h);
    // 1. Strip what only we may set, before looking at the session.
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for n in names {
        h.remove(&n);
    }
}

/// The session's identity headers on the request; without a session, a public path passes
/// as is, a browser's GET goes to the login and anything else gets 401 (the answer, if any).
fn identify(
    app: &App,
    up: &Upstream,
    req: &mut Request<Incoming>,
    path: &str,
    rid: &str,
) -> Option<Resp> {
    // The store cannot say: a public path passes without identity, anything else is 503.
    let session = match find_session(app, req) {
        Ok(s) => s,
        Err(_) if up.is_public(path) => None,
        Err(e) => return Some(super::auth::store_unavailable(Lang::of(req), rid, &e)),
    };
    // The session cookie is ours; the staff menu does not need it.
    strip_cookie(req.headers_mut(), app.sessions.cookie_name);
    match &session {
        Some(live) => insert_identity(app, live, req.headers_mut()),
        None if up.is_public(path) => {}
        None => {
            let wants_html = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            if wants_html && req.method() == hyper::Method::GET {
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let ret = crate::return_path::safe_return_path(Some(target));
                let enc: String = form_urlencoded::byte_serialize(ret.as_bytes()).collect();
                return Some(pages::redirect(
                    StatusCode::FOUND,
                    &format!("/login?return_to={enc}"),
                ));
            }
            return Some(pages::text(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "login required\n",
            ));
        }
    }
    None
}

/// Our forwarding headers, the request id, the upgrade headers, origin form, HTTP/1.1 and
/// the upstream's Host.
fn to_upstream(
    app: &App,
    up: &Upstream,
    req: &mut Request<Incoming>,
    peer: SocketAddr,
    rid: &str,
    is_upgrade: bool,
) {
    // 2. Forwarding headers: ours (forwarding_headers says which a trusted proxy may add to).
    forwarding_headers(app, up, req.headers_mut(), peer);
    req.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(rid).unwrap_or(HeaderValue::from_static("-")),
    );
    // 3. A WebSocket upgrade is forwarded (its hop-by-hop headers were removed in step 0).
    if is_upgrade {
        req.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    // Origin form towards the upstream, whatever form the client used (an absolute-form
    // target names *our* host, never where to go).
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    *req.version_mut() = hyper::Version::HTTP_11;
    if let Ok(v) = HeaderValue::from_str(&up.authority) {
        req.headers_mut().insert(HOST, v);
    }
}

/// The upstream's answer to the client: a 101 joins the two upgraded connections; otherwise
/// its hop-by-hop headers stay here.
fn relay(
    mut resp: Response<Incoming>,
    server_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Proxied {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(server_side) = server_upgrade {
            let upstream_side = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (server_side.await, upstream_side.await) {
                    let mut a = TokioIo::new(a);
                    let mut b = TokioIo::new(b);
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
            return Proxied::Upstream(resp);
        }
    }
    strip_hop_by_hop(resp.headers_mut());
    Proxied::Upstream(resp)
}

/// Headers that tell an upstream who the client is or which URL was asked for. Frameworks act
/// on them (Spring's `X-Forwarded-Prefix`, IIS/Symfony's `X-Original-URL`, client-IP allow
/// lists, client-certificate auth), so only we, or a proxy in `[server] trusted_proxies`, may
/// send them.
const FORWARDING: [&str; 22] = [
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-host",
    "x-host",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "x-proxyuser-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    // The scheme (Werkzeug, Rails, IIS), the client before the last proxy, client certificates
    // (IIS ARR, nginx/Apache conventions): each lets a client pose as HTTPS, another IP or a
    // certificate holder.
    "x-scheme",
    "x-url-scheme",
    "front-end-https",
    "x-original-forwarded-for",
    "x-arr-clientcert",
    "x-arr-ssl",
    "x-client-cert",
    "ssl-client-cert",
];

/// Header families removed by prefix: `X-Forwarded-*`, Envoy's `X-Envoy-*` (Envoy trusts
/// `X-Envoy-Internal`, `-Original-Path`, `-External-Address`), and `X-SSL-Client-*` /
/// `SSL-Client-*` (certificate, verify result, subject DN).
const FORWARDING_PREFIXES: [&str; 4] = ["x-forwarded", "x-envoy-", "x-ssl-client-", "ssl-client-"];

/// True for the [`FORWARDING_PREFIXES`] families and the [`FORWARDING`] headers, also in the
/// `_` spelling.
/// (Header names arrive lower-cased; byte by byte: this runs for every proxied header.)
pub fn is_forwarding_header(name: &str) -> bool {
    let b = name.as_bytes();
    let same = |i: usize, o: u8| {
        b.get(i)
            .is_some_and(|&n| n == o || (n == b'_' && o == b'-'))
    };
    let prefix =
        |ours: &str| ours.len() <= b.len() && ours.bytes().enumerate().all(|(i, o)| same(i, o));
    FORWARDING_PREFIXES.iter().any(|p| prefix(p))
        || FORWARDING
            .iter()
            .any(|ours| ours.len() == b.len() && prefix(ours))
}

/// From an untrusted peer, every forwarding header is removed; then X-Forwarded-For is the
/// peer (appended to a trusted proxy's chain), and X-Forwarded-Host and -Proto always say what
/// `public_url` says: that is the one URL browsers use, whoever is in front.
fn forwarding_headers(app: &App, up: &Upstream, h: &mut hyper::HeaderMap, peer: SocketAddr) {
    let trusted = app.cfg.trusted_proxies.contains(&peer.ip());
    if !trusted {
        let names: Vec<HeaderName> = h
            .keys()
            .filter(|k| is_forwarding_header(k.as_str()))
            .cloned()
            .collect();
        for n in names {
            h.remove(&n);
        }
    }
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted => format!("{prev}, {}", peer.ip()),
        _ => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", up.public_proto.clone());
    h.insert("x-forwarded-host", up.public_host.clone());
}

/// Removes cookie `name` from the Cookie headers, keeping the others.
fn strip_cookie(h: &mut hyper::HeaderMap, name: &str) {
    let named = |c: &str| c.trim().split_once('=').map(|(k, _)| k) == Some(name);
    let present = h
        .get_all(hyper::header::COOKIE)
        .iter()
        .any(|v| v.to_str().map_or(true, |v| v.split(';').any(named)));
    if !present {
        return;
    }
    let kept: Vec<String> = h
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !named(c))
        .map(str::to_string)
        .collect();
    h.remove(hyper::header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            h.insert(hyper::header::COOKIE, v);
        }
    }
}

fn strip_hop_by_hop(h: &mut hyper::HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        h.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_in_any_spelling() {
        for n in [
            "X-Auth-Request-User",
            "x-auth-request-user",
            "X_AUTH_REQUEST_USER",
            "x-samlgate-category",
            "X-Samlgate-Jwt",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        assert!(!is_identity_header("x-auth-request-users"));
        assert!(!is_identity_header("accept"));
    }

    #[test]
    fn forwarding_headers_in_any_spelling() {
        for n in [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-prefix",
            "x_forwarded_host",
            "x-forwarded",
            "x-real-ip",
            "x_real_ip",
            "x-original-url",
            "x-rewrite-url",
            "x-scheme",
            "x_url_scheme",
            "front-end-https",
            "x-original-forwarded-for",
            "x-envoy-original-path",
            "x-envoy-external-address",
            "x-arr-clientcert",
            "x-ssl-client-cert",
            "x-ssl-client-s-dn",
            "ssl-client-cert",
            "ssl_client_verify",
        ] {
            assert!(is_forwarding_header(n), "{n}");
        }
        for n in [
            "accept",
            "forwarded-x",
            "x-real-ipx",
            "x-forward",
            "host",
            "x-schemes",
            "x-envoy",
            "x-ssl-client",
        ] {
            assert!(!is_forwarding_header(n), "{n}");
        }
    }
}
