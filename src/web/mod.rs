//! The HTTP side: the shared [`App`] state, the accept loop (plain or rustls), and routing.
//! Read top to bottom: `App::new` builds the state, `serve` accepts connections, `route`
//! dispatches each request to a handler in `acs` or `auth`.

pub mod acs;
pub mod admin;
pub mod affinity;
pub mod apply;
pub mod apply_token;
pub mod auth;
pub mod consent;
pub mod console;
pub mod cookies;
pub mod forgot;
pub mod identity_headers;
pub mod local;
pub mod login;
pub mod metrics;
pub mod outage;
pub mod pages;
pub mod proxy;
pub mod session_cache;
pub mod settings;
pub mod slo;
pub mod sso;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::keys::KeySet;
use crate::saml::idp::IdpMetadata;
use crate::session::SessionCodec;
use crate::store::Store;
use pages::{Lang, Resp};

/// Everything a request handler needs. Swappable parts (IdP metadata, keys) sit behind
/// `RwLock<Arc<_>>`: a handler clones the Arc once and finishes with the set it started with.
pub struct App {
    pub cfg: Config,
    pub idp: RwLock<Arc<IdpMetadata>>,
    pub keys: RwLock<Arc<KeySet>>,
    pub sp_metadata: RwLock<Arc<String>>,
    pub store: Arc<dyn Store>,
    pub sessions: SessionCodec,
    /// Sessions in use, kept between requests (session_cache.rs says when an entry counts).
    pub live: session_cache::SessionCache,
    pub metrics: metrics::Metrics,
    /// Bounds concurrent signature verifications, so a flood of large signed documents queues
    /// here instead of starving `/auth/verify` of CPU.
    pub verify_slots: Semaphore,
    /// Bounds concurrent AuthnRequest signatures (`GET /saml/login`, anonymous): half the
    /// verification slots, at least one, so a login flood cannot take every core.
    pub sign_slots: Semaphore,
    /// `GET /saml/login` per client address (`[server] saml_login_rate_per_minute`).
    pub login_limiter: crate::rate_limit::RateLimiter,
    /// The staff menu behind us, when samlgate is its reverse proxy.
    pub upstream: Option<proxy::Upstream>,
    /// Signed identity tokens (JWT), when `[token]` is configured.
    pub tokens: Option<crate::token::TokenSigner>,
    /// The serving TLS certificate, swappable (None: plain HTTP).
    pub tls: Option<Arc<tls::CertStore>>,
    /// Where "G-MISからのログインはこちら" points (the demo IdP in `samlgate demo`).
    pub gmis_login_url: String,
    /// ID/password logins: the hasher and the per-IP limit.
    pub local: crate::local_login::LocalAuth,
    /// Bounds concurrent argon2 hashes (each 19 MiB, tens of ms): a password flood queues
    /// here, off the async workers, so `/auth/verify` keeps its cores.
    pub hash_slots: Semaphore,
    /// `[idp] metadata_url` refreshes (counters for /metrics) and the `[idp] status_url` probe.
    pub idp_refresh: crate::idp_source::refresh::State,
    pub idp_status: crate::idp_source::status::Probe,
    /// `[mail]`: the outgoing mail queue (reset links; notices). `None` without `[mail]`.
    pub mailer: Option<crate::mail::Mailer>,
    /// `POST /login/forgot` per client address (password_reset::ip_rate).
    pub forgot_ip: std::sync::Mutex<crate::accounts::throttle::IpRateLimiter>,
}

/// `[token]`: the JWT signer, its audience defaulting to the upstream, then our own URL.
fn token_signer(cfg: &Config) -> anyhow_like::Result<Option<crate::token::TokenSigner>> {
    let Some(t) = &cfg.token else {
        return Ok(None);
    };
    let keys = KeySet::load(&t.keys_dir).map_err(|e| {
        format!("[token] keys_dir: {e} (create one with `samlgate keys new --token`)")
    })?;
    let aud = t
        .audience
        .clone()
        .or_else(|| cfg.upstream.as_ref().map(|u| u.url.clone()))
        .unwrap_or_else(|| cfg.public_url.clone());
    Ok(Some(crate::token::TokenSigner::new(
        keys,
        t.lifetime_seconds,
        cfg.public_url.clone(),
        aud,
    )?))
}

impl App {
    pub fn new(
        cfg: Config,
        store: Arc<dyn Store>,
        idp: IdpMetadata,
        keys: KeySet,
        tls: Option<Arc<tls::CertStore>>,
    ) -> anyhow_like::Result<App> {
        let key = store
            .secret_get_or_create("session-mac-v1", &|| {
                let mut k = vec![0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut k);
                k
            })
            .map_err(|e| format!("store: {e}"))?;
        let sessions = SessionCodec::new(key, cfg.https);
        let upstream = cfg
            .upstream
            .as_ref()
            .map(|u| proxy::Upstream::new(u, &cfg.public_url))
            .transpose()?;
        let tokens = token_signer(&cfg)?;
        pages::set_support(&cfg.support);
        crate::timezone::set(cfg.timezone.clone());
        let md = crate::saml::metadata::sp_metadata(&cfg, &keys);
        // With an SSO endpoint the link starts an SP-initiated login; G-MIS users can always
        // start from G-MIS's own menu (IdP-initiated).
        let gmis_login_url = if idp.sso_redirect.is_some() {
            "/saml/login".to_string()
        } else {
            "/login".to_string()
        };
        let local = crate::local_login::LocalAuth::new(&cfg.local)?;
        let mailer = cfg
            .mail
            .as_ref()
            .map(crate::mail::Mailer::start)
            .transpose()?;
        Ok(App {
            mailer,
            forgot_ip: std::sync::Mutex::new(crate::accounts::throttle::IpRateLimiter::new(
                crate::password_reset::ip_rate(&cfg.local),
            )),
            local,
            idp_refresh: crate::idp_source::refresh::State::new(&cfg.idp_metadata),
            idp_status: Default::default(),
            hash_slots: Semaphore::new((cfg.max_concurrent_verifications / 2).max(1)),
            verify_slots: Semaphore::new(cfg.max_concurrent_verifications),
            sign_slots: Semaphore::new((cfg.max_concurrent_verifications / 2).max(1)),
            login_limiter: crate::rate_limit::RateLimiter::new(cfg.saml_login_rate_per_minute),
            cfg,
            idp: RwLock::new(Arc::new(idp)),
            keys: RwLock::new(Arc::new(keys)),
            sp_metadata: RwLock::new(Arc::new(md)),
            store,
            sessions,
            live: session_cache::SessionCache::default(),
            metrics: metrics::Metrics::default(),
            gmis_login_url,
            tls,
            upstream,
            tokens,
        })
    }

    pub fn idp(&self) -> Arc<IdpMetadata> {
        self.idp.read().expect("idp lock").clone()
    }

    /// Every certificate the gateway depends on now, for expiry checks (crate::expiry).
    pub fn watched_certs(&self) -> Vec<crate::expiry::Watched> {
        use crate::expiry::{self, Kind};
        let mut v = expiry::from_idp(&self.idp());
        v.extend(expiry::from_keys(
            Kind::Sp,
            &self.keys.read().expect("keys lock"),
        ));
        if let Some(t) = &self.tokens {
            v.extend(expiry::from_keys(
                Kind::Token,
                &t.keys.read().expect("token keys lock"),
            ));
        }
        if let Some(t) = &self.tls {
            v.push(expiry::tls(t.fingerprint(), t.not_after()));
        }
        v
    }
}

/// Minimal error plumbing for start-up: a message for the operator.
pub mod anyhow_like {
    pub type Result<T> = std::result::Result<T, String>;
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `[server] listen`: everything, except the admin API and `/metrics` when
    /// `[admin] listen` is set.
    Main,
    /// `[admin] listen`: only the admin API, `/metrics` and `/healthz`; never proxies.
    Admin,
}

/// Accepts connections until `shutdown` resolves, then lets requests in flight finish (up to
/// 20 s).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_on(app, listener, tls, Listener::Main, shutdown).await
}

/// The `[admin] listen` listener (plain HTTP: keep it on loopback or a management network).
pub async fn serve_admin(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_on(app, listener, None, Listener::Admin, shutdown).await
}

async fn serve_on(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    role: Listener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let conn_slots = Arc::new(Semaphore::new(app.cfg.max_connections));
    let header_timeout = Duration::from_secs(app.cfg.header_read_timeout_seconds);
    tokio::pin!(shutdown);
    loop {
        // At the connection cap, stop accepting: new clients wait in the kernel's backlog
        // instead of costing memory here.
        let permit = tokio::select! {
            p = conn_slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            tcp,
            peer,
            role,
            header_timeout,
            permit,
        };
        spawn_connection(&app, conn, tls.clone(), &graceful);
    }
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(Duration::from_secs(20), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 20 s");
    }
}

/// One accepted connection and what its task needs.
struct Conn {
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    role: Listener,
    header_timeout: Duration,
    /// Held until the connection ends (`[server] max_connections`).
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// Serves one connection in its own task (after the TLS handshake, if any), watched by
/// `graceful` so shutdown waits for it.
fn spawn_connection(
    app: &Arc<App>,
    c: Conn,
    tls: Option<tokio_rustls::TlsAcceptor>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) {
    let Conn {
        tcp,
        peer,
        role,
        header_timeout,
        permit,
    } = c;
    // With [upstream] (HTTP/1.1 to it), this connection's proxied requests get their own
    // upstream connection, polled in this connection's task (affinity.rs says why).
    let (affinity, opened) = match &app.upstream {
        Some(up) if !up.http2() && role == Listener::Main => {
            let (a, rx) = affinity::Affinity::new();
            (Some(Arc::new(a)), Some(rx))
        }
        _ => (None, None),
    };
    let app = app.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        let affinity = affinity.clone();
        async move { Ok::<_, Infallible>(handle(app, req, peer, role, affinity.as_deref()).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024);
    match tls {
        None => {
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                affinity::drive(conn, opened).await;
                drop(permit);
            });
        }
        Some(acceptor) => {
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let stream =
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                affinity::drive(watcher.watch(conn), opened).await;
                drop(permit);
            });
        }
    }
}

/// Our own pages have a complete body; proxied answers stream the upstream's.
pub type OutBody = http_body_util::Either<pages::Body, Incoming>;

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    role: Listener,
    affinity: Option<&affinity::Affinity>,
) -> hyper::Response<OutBody> {
    let request_id = crate::session::random_id()[..12].to_string();
    let chosen_lang = chosen_lang(&req);
    let own_path = is_own_path(req.uri().path());
    // With `[admin] listen`, the admin paths exist only there (and are not proxied here).
    let admin_elsewhere =
        role == Listener::Main && app.cfg.admin_listen.is_some() && is_admin_path(req.uri().path());
    let mut resp = match (&app.upstream, own_path) {
        _ if role == Listener::Admin || admin_elsewhere => {
            let mut r = match role {
                Listener::Admin => route_admin(&app, req, peer, &request_id).await,
                Listener::Main => not_found(Lang::of(&req), &request_id),
            };
            pages::secure_headers(&mut r, app.cfg.https);
            r.map(http_body_util::Either::Left)
        }
        (Some(up), false) => match proxy::forward(&app, up, req, peer, &request_id, affinity).await
        {
            proxy::Proxied::Upstream(r) => r.map(http_body_util::Either::Right),
            proxy::Proxied::Own(mut r) => {
                pages::secure_headers(&mut r, app.cfg.https);
                r.map(http_body_util::Either::Left)
            }
        },
        _ => {
            let mut r = route(&app, req, peer, &request_id).await;
            pages::secure_headers(&mut r, app.cfg.https);
            r.map(http_body_util::Either::Left)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    // Our own pages only: an upstream page's `lang` parameter is its own business.
    if let (Some(l), http_body_util::Either::Left(_)) = (chosen_lang, resp.body()) {
        remember_lang(&mut resp, l, app.cfg.https);
    }
    log_support_ref(&resp, &request_id);
    resp
}

/// The language a `?lang=ja|en` link asked for.
fn chosen_lang<B>(req: &Request<B>) -> Option<Lang> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| match (&*k, &*v) {
        ("lang", "en") => Some(Lang::En),
        ("lang", "ja") => Some(Lang::Ja),
        _ => None,
    })
}

/// Keeps the chosen language for a year (`pages::Lang::of` reads it), so it persists through
/// the SSO round trip to G-MIS and on pages that answer a POST.
fn remember_lang(resp: &mut hyper::Response<OutBody>, l: Lang, https: bool) {
    let secure = if https { "; Secure" } else { "" };
    let c = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000{secure}",
        pages::LANG_COOKIE,
        l.code()
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(hyper::header::SET_COOKIE, v);
    }
}

/// Our pages that refuse or end a flow show a support reference (pages::support_ref) instead
/// of the request id; this line ties the two, so `grep REF` on the log finds the request.
fn log_support_ref(resp: &hyper::Response<OutBody>, request_id: &str) {
    let ours = matches!(resp.body(), http_body_util::Either::Left(_));
    let page = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let reason = resp
        .headers()
        .get("x-samlgate-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Error pages, and 200 pages that carry a reason (the application filed).
    let shows_ref = !resp.status().is_success() || !reason.is_empty();
    if ours && page && shows_ref && !resp.status().is_redirection() {
        let reference = pages::support_ref(request_id);
        crate::console::support::remember(&reference, request_id, resp.status().as_u16(), reason);
        tracing::info!(
            target: "samlgate::support",
            request_id,
            support_ref = %pages::support_ref(request_id),
            status = resp.status().as_u16(),
            reason,
            "support reference shown"
        );
    }
}

/// Paths the gateway answers itself; with `[upstream]`, everything else is proxied.
pub fn is_own_path(path: &str) -> bool {
    const EXACT: [&str; 10] = [
        "/login",
        "/_samlgate/apply",
        "/logout",
        "/consent",
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/jwks.json",
        "/_samlgate/style.css",
        "/admin/v1/op",
    ];
    EXACT.contains(&path)
        || path.starts_with("/saml/")
        || path.starts_with("/auth/")
        || path.starts_with("/login/")
        || path == "/_samlgate/login.js"
        || is_console_path(path)
}

/// The 事務局's console (web/console.rs): on the admin listener when `[admin] listen` is set.
fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The paths `[admin] listen` takes off the main listener.
fn is_admin_path(path: &str) -> bool {
    path == "/metrics" || path == "/admin/v1/op" || is_console_path(path)
}

/// The admin listener: the secretariat API, `/metrics` and `/healthz`, nothing else.
async fn route_admin(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr, rid: &str) -> Resp {
    if is_console_path(req.uri().path()) {
        // The admin listener is plain HTTP: its cookies cannot be Secure.
        return console::route(app, req, peer, false, rid).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/admin/v1/op") => admin::op(app, req, rid).await,
        (&Method::GET, "/metrics") => metrics_page(app),
        (&Method::GET, "/healthz") => pages::text(StatusCode::OK, "text/plain", "ok\n"),
        _ => not_found(Lang::of(&req), rid),
    }
}

fn metrics_page(app: &App) -> Resp {
    let extra = cert_gauges(app)
        + &app.idp_refresh.render(app.cfg.idp_source.fetch.is_some())
        + &app.idp_status.render(app.cfg.idp_source.status.as_ref());
    let body = app.metrics.render(app.store.session_count(), &extra);
    pages::text(StatusCode::OK, "text/plain; version=0.0.4", body)
}

/// Fails closed while the store cannot serve a path: 503 `store_unavailable` with a page,
/// at once, instead of a hang or a wrong answer (store::health). Logins need writes;
/// `/auth/verify` needs reads (sled on a full disk still verifies existing sessions).
fn store_gate(app: &App, path: &str, lang: Lang, rid: &str) -> Option<Resp> {
    let needs_write = matches!(
        path,
        "/saml/acs"
            | "/saml/login"
            | "/consent"
            | "/login"
            | "/_samlgate/apply"
            | "/login/change"
            | "/login/totp"
            | "/login/enrol"
            | "/login/forgot"
            | "/login/reset"
            | "/login/totp-setup"
    );
    let needs_read = matches!(path, "/auth/verify" | "/auth/userinfo" | "/");
    let down = (needs_write && !app.store.writable())
        || ((needs_write || needs_read) && !app.store.readable());
    if !down {
        return None;
    }
    tracing::warn!(
        request_id = rid,
        path,
        reason = crate::reason::Reason::StoreUnavailable.code(),
        "refused: the store is unavailable"
    );
    Some(pages::refusal_page(
        lang,
        crate::reason::Reason::StoreUnavailable,
        rid,
        None,
    ))
}

async fn route(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr, rid: &str) -> Resp {
    let path = req.uri().path().to_string();
    if let Some(r) = store_gate(app, &path, Lang::of(&req), rid) {
        // Take what the client is sending (bounded, briefly) so it reads the 503 page instead
        // of a reset connection.
        let body = http_body_util::Limited::new(req.into_body(), app.cfg.max_body_bytes);
        let read = http_body_util::BodyExt::collect(body);
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        return r;
    }
    match (req.method(), path.as_str()) {
        _ if is_console_path(&path) => console::route(app, req, peer, app.cfg.https, rid).await,
        (&Method::POST, "/saml/acs") => acs::post_acs(app, req, peer, rid).await,
        (&Method::GET, "/auth/verify") => auth::verify(app, &req, rid),
        (&Method::GET, "/auth/userinfo") => auth::userinfo(app, &req, rid),
        (&Method::GET, "/logout") => auth::logout(app, &req, rid),
        (&Method::GET, "/saml/slo") | (&Method::POST, "/saml/slo") => {
            slo::handle(app, req, rid).await
        }
        (&Method::POST, "/admin/v1/op") => admin::op(app, req, rid).await,
        (&Method::GET, "/consent") => consent::get_consent(app, &req, rid),
        (&Method::POST, "/consent") => consent::post_consent(app, req, rid).await,
        (&Method::POST, "/_samlgate/apply") => apply::post(app, req, rid).await,
        (&Method::GET, "/saml/acs") => acs_get(Lang::of(&req), rid),
        (&Method::GET, "/login") => local::login_page(app, &req),
        (&Method::POST, "/login") => local::post_login(app, req, peer, rid).await,
        (&Method::GET, "/login/change") => local::change_page(app, &req),
        (&Method::POST, "/login/change") => local::post_change(app, req, rid).await,
        (&Method::GET, "/login/totp") => local::totp_page(app, &req),
        (&Method::POST, "/login/totp") => local::post_totp(app, req, rid).await,
        (&Method::GET, "/login/forgot") => forgot::forgot_page(app, &req),
        (&Method::POST, "/login/forgot") => forgot::post_forgot(app, req, peer, rid).await,
        (&Method::GET, "/login/reset") => forgot::reset_page(app, req, rid).await,
        (&Method::POST, "/login/reset") => forgot::post_reset(app, req, rid).await,
        (&Method::GET, "/login/totp-setup") => settings::setup_page(app, &req),
        (&Method::POST, "/login/totp-setup") => settings::post_setup(app, req, rid).await,
        (&Method::GET, "/login/enrol") => local::enrol_page(app, &req),
        (&Method::POST, "/login/enrol") => local::post_enrol(app, req, rid).await,
        (&Method::GET, "/_samlgate/login.js") => cached(
            "text/javascript; charset=utf-8",
            local::LOGIN_JS,
            "public, max-age=3600",
        ),
        (&Method::GET, "/saml/login") => sso::login(app, &req, peer, rid).await,
        (&Method::GET, "/") => auth::home(app, &req, rid),
        (&Method::GET, "/saml/metadata") => sp_metadata(app),
        (&Method::GET, "/.well-known/jwks.json") => jwks(app),
        (&Method::GET, "/healthz") => pages::text(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => readyz(app),
        (&Method::GET, "/metrics") => metrics_page(app),
        (&Method::GET, "/_samlgate/style.css") => cached(
            "text/css; charset=utf-8",
            pages::STYLE_CSS,
            "public, max-age=3600",
        ),
        (_, "/saml/acs") => method_not_allowed("POST"),
        _ => not_found(Lang::of(&req), rid),
    }
}

/// A 200 with a Cache-Control header (our static script and style sheet, the JWKS).
fn cached(content_type: &'static str, body: impl Into<bytes::Bytes>, cache: &'static str) -> Resp {
    let mut r = pages::text(StatusCode::OK, content_type, body);
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static(cache),
    );
    r
}

fn sp_metadata(app: &App) -> Resp {
    let md = app.sp_metadata.read().expect("md lock").clone();
    pages::text(
        StatusCode::OK,
        "application/samlmetadata+xml",
        md.as_bytes().to_vec(),
    )
}

fn jwks(app: &App) -> Resp {
    let body = app
        .tokens
        .as_ref()
        .map(|t| t.jwks())
        .unwrap_or_else(|| serde_json::json!({"keys": []}));
    cached(
        "application/jwk-set+json",
        body.to_string(),
        "public, max-age=300",
    )
}

/// The client's address for logs: the TCP peer, or — only when the peer is one of
/// `[server] trusted_proxies` — the nearest untrusted address in X-Forwarded-For.
pub fn client_ip(app: &App, headers: &hyper::HeaderMap, peer: SocketAddr) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| app.cfg.trusted_proxies.contains(ip);
    if !trusted(&peer.ip()) {
        return peer.ip();
    }
    let chain: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted(ip))
        .unwrap_or(peer.ip())
}

fn readyz(app: &App) -> Resp {
    // Ready when the store answers, its last write succeeded (store::health), and a signing
    // certificate is loaded. The flags first: while the store is known down, the probe read
    // would wait for the pool's connect timeout (5 s) before answering.
    let ok = !app.idp().certs_der.is_empty()
        && app.store.writable()
        && app.store.readable()
        && app.store.session_get("readyz-probe").is_ok();
    if !ok {
        return pages::text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n");
    }
    // Certificates: 30 days ahead a warning in the body (still 200, so the load balancer keeps
    // the instance); an expired certificate in use makes it red (crate::expiry).
    let now = chrono::Utc::now().timestamp();
    let certs = app.watched_certs();
    let failures = crate::expiry::failures(&certs, now);
    let warnings = crate::expiry::warnings(&certs, now);
    let mut body = String::new();
    let status = if failures.is_empty() {
        body.push_str("ready\n");
        StatusCode::OK
    } else {
        body.push_str("not ready\n");
        StatusCode::SERVICE_UNAVAILABLE
    };
    for f in &failures {
        body.push_str(&format!("expired: {f}\n"));
    }
    for w in &warnings {
        body.push_str(&format!("warning: {w}\n"));
    }
    pages::text(status, "text/plain", body)
}

fn cert_gauges(app: &App) -> String {
    use std::fmt::Write;
    let now = chrono::Utc::now().timestamp();
    let idp = crate::expiry::from_idp(&app.idp());
    let mut s = String::from(
        "# HELP samlgate_cert_expiry_seconds Seconds until each certificate's notAfter.\n# TYPE samlgate_cert_expiry_seconds gauge\n",
    );
    for c in &idp {
        let _ = writeln!(
            s,
            "samlgate_cert_expiry_seconds{{kind=\"idp_signing\",fingerprint=\"{}\"}} {}",
            c.fingerprint,
            c.seconds_left(now)
        );
    }
    if let Some(t) = &app.tls {
        let _ = writeln!(
            s,
            "samlgate_cert_expiry_seconds{{kind=\"tls\",sha256=\"{}\"}} {}",
            t.fingerprint(),
            t.not_after() - now
        );
    }
    let keys = app.keys.read().expect("keys lock").clone();
    let token_keys = app
        .tokens
        .as_ref()
        .map(|t| t.keys.read().expect("token keys lock").clone());
    let sets = [("sp", Some(keys)), ("token", token_keys)];
    for (kind, set) in sets.iter().filter_map(|(k, s)| Some((k, s.as_ref()?))) {
        for k in &set.keys {
            let na = crate::saml::idp::asn1_to_unix(k.cert.not_after());
            let _ = writeln!(
                s,
                "samlgate_cert_expiry_seconds{{kind=\"{kind}\",key=\"{}\",state=\"{:?}\"}} {}",
                k.id,
                k.state,
                na - now
            );
        }
    }
    s.push_str(&idp_cert_gauges(&idp, now));
    s
}

/// The IdP signing certificates alone, under the name alert rules use
/// (deploy/prometheus/samlgate-alerts.yml); the same values as kind="idp_signing" above.
fn idp_cert_gauges(idp: &[crate::expiry::Watched], now: i64) -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "# HELP samlgate_idp_cert_expiry_seconds Seconds until each trusted IdP signing certificate's notAfter.\n# TYPE samlgate_idp_cert_expiry_seconds gauge\n",
    );
    for c in idp {
        let subject = c.subject.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            s,
            "samlgate_idp_cert_expiry_seconds{{fingerprint=\"{}\",subject=\"{subject}\"}} {}",
            c.fingerprint,
            c.seconds_left(now)
        );
    }
    s
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = pages::text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        "method not allowed\n",
    );
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// `GET /saml/acs` (a bookmark, Back into the ACS, a reload): the ACS only takes the IdP's
/// POST; a page that says so and leads to the login page, not a bare 405.
fn acs_get(lang: Lang, rid: &str) -> Resp {
    let (ja, en) = (
        "このページはG-MISからのログインの途中でのみ使われるため、直接開くことはできません。ログイン画面からもう一度ログインしてください。",
        "This address is only used while logging in from G-MIS and cannot be opened directly. Please log in again from the login page.",
    );
    let page = pages::ErrorPage {
        lang,
        title: lang.t(
            "このページは直接開けません",
            "This page cannot be opened directly",
        ),
        message: lang.t(ja, en),
        other: lang.other().t(ja, en),
        code: "",
        request_id: rid,
        action_href: Some("/login"),
        action_label: lang.t("ログイン画面へ", "Go to the login page"),
        success: false,
    };
    let mut r = pages::render(StatusCode::METHOD_NOT_ALLOWED, &page);
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    r
}

fn not_found(lang: Lang, rid: &str) -> Resp {
    let page = pages::ErrorPage {
        lang,
        title: lang.t("ページが見つかりません", "Page not found"),
        message: lang.t(
            "お探しのページは見つかりませんでした。",
            "The page you are looking for does not exist.",
        ),
        other: lang.other().t(
            "お探しのページは見つかりませんでした。",
            "The page you are looking for does not exist.",
        ),
        code: "",
        request_id: rid,
        action_href: Some("/"),
        action_label: lang.t("トップへ", "Home"),
        success: false,
    };
    pages::render(StatusCode::NOT_FOUND, &page)
}
