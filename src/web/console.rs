//! `/console/`: the 事務局's console in the browser. A translator: the login forms go to
//! [`crate::local_login`] (password, then TOTP) and [`crate::console::operator`] (the role and
//! the console's cookie); pages are built from [`crate::console::records`]; action forms go to
//! [`crate::console::actions`], which runs the admin ops. Nothing is decided here.
//!
//! Cookies are scoped to `Path=/console/`, `SameSite=Strict`, HttpOnly; `Secure` when the
//! listener is the main one behind https (the admin listener is plain HTTP by design).

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, SET_COOKIE};
use hyper::{Method, Request, StatusCode};

use super::pages::{self, Lang, Resp};
use super::App;
use crate::accounts::account::LoginRefusal;
use crate::accounts::password::Password;
use crate::console::actions::{self, Action, ActionError};
use crate::console::notice::ActionMail;
use crate::console::operator::{self, Gone, OperatorLogin};
use crate::console::records::{self, Detail, Query, Queues, Row};
use crate::console::support::{self, SupportEvent};
use crate::local_login::{self as ll, Outcome, StepKind};
use crate::login::local::Ending::AccountOnly;

const CONSOLE_CSS: &str = include_str!("../../static/console.css");

/// The parts of every console page around its content.
pub struct Chrome {
    pub lang: Lang,
    /// The logged-in operator (no navigation on the login pages).
    pub operator: Option<String>,
    pub csrf: String,
    /// This page in Japanese and in English (the query kept, `lang` replaced).
    pub ja_href: String,
    pub en_href: String,
}

impl Chrome {
    fn new<B>(req: &Request<B>, lang: Lang, login: Option<&OperatorLogin>) -> Chrome {
        let path = req.uri().path();
        let keep: Vec<(String, String)> = query(req)
            .into_iter()
            .filter(|(k, _)| k != "lang" && k != "done")
            .collect();
        let href = |l: &str| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &keep {
                s.append_pair(k, v);
            }
            s.append_pair("lang", l);
            format!("{path}?{}", s.finish())
        };
        Chrome {
            lang,
            operator: login.map(|l| l.operator.clone()),
            csrf: login.map(|l| l.csrf.clone()).unwrap_or_default(),
            ja_href: href("ja"),
            en_href: href("en"),
        }
    }
}

#[derive(Template)]
#[template(path = "console_login.html")]
struct LoginPage<'a> {
    c: Chrome,
    lang: Lang,
    csrf: &'a str,
    user_id: &'a str,
    error: Option<String>,
    info: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "console_totp.html")]
struct TotpPage {
    c: Chrome,
    lang: Lang,
    csrf: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console_home.html")]
struct HomePage {
    c: Chrome,
    lang: Lang,
    q: Queues,
}

#[derive(Template)]
#[template(path = "console_search.html")]
struct SearchPage {
    c: Chrome,
    lang: Lang,
    term: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console_account.html")]
struct AccountPage {
    c: Chrome,
    lang: Lang,
    d: Detail,
    actions: Vec<Action>,
    done: Option<Action>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console_done.html")]
struct DonePage {
    c: Chrome,
    lang: Lang,
    id: String,
    action: Action,
    password: String,
}

#[derive(Template)]
#[template(path = "console_support.html")]
struct SupportPage {
    c: Chrome,
    lang: Lang,
    reference: String,
    events: Vec<SupportEvent>,
    searched: bool,
}

#[derive(Template)]
#[template(path = "console_message.html")]
struct MessagePage<'a> {
    c: Chrome,
    title: &'a str,
    message: String,
    href: &'a str,
    link: &'a str,
}

fn query<B>(req: &Request<B>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<B>(req: &Request<B>, k: &str) -> String {
    query(req)
        .into_iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> &'a str {
    f.iter()
        .find(|(n, _)| n == k)
        .map_or("", |(_, v)| v.as_str())
}

async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body: Bytes = Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(form_urlencoded::parse(&body).into_owned().collect())
}

fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Cookie names: `__Secure-` where the cookie is Secure (`__Host-` needs `Path=/`).
fn name(secure: bool, base: &'static str) -> String {
    if secure {
        format!("__Secure-{base}")
    } else {
        base.to_string()
    }
}

const LOGIN_COOKIE: &str = "samlgate-console";
const STEP_COOKIE: &str = "samlgate-console-step";
const CSRF_COOKIE: &str = "samlgate-console-csrf";

fn set_cookie(r: &mut Resp, secure: bool, base: &'static str, value: &str, max_age: i64) {
    let s = if secure { "; Secure" } else { "" };
    let c = format!(
        "{}={value}; Path=/console/; HttpOnly; SameSite=Strict; Max-Age={max_age}{s}",
        name(secure, base)
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
}

fn cookies<B>(req: &Request<B>, secure: bool, base: &'static str) -> Vec<String> {
    let n = name(secure, base);
    let hs = req.headers().get_all(hyper::header::COOKIE);
    crate::session::cookie_values(&n, hs.iter().filter_map(|v| v.to_str().ok()))
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Runs store work off the async workers (PostgreSQL calls block).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

pub async fn route(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
    rid: &str,
) -> Resp {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/console/style.css") => {
            let css = format!("{}\n{CONSOLE_CSS}", pages::STYLE_CSS);
            pages::text(StatusCode::OK, "text/css; charset=utf-8", css)
        }
        (&Method::GET, "/console") => pages::redirect(StatusCode::SEE_OTHER, "/console/"),
        (&Method::GET, "/console/login") => {
            let info = match param(&req, "why").as_str() {
                "idle" => Some(Lang::of(&req).t(
                    "一定時間操作がなかったため、ログアウトしました。もう一度ログインしてください。",
                    "You were logged out after a period of inactivity. Please log in again.",
                )),
                "out" => Some(Lang::of(&req).t("ログアウトしました。", "You have logged out.")),
                _ => None,
            };
            login_form(&app.sessions, &req, secure, StatusCode::OK, "", None, info)
        }
        (&Method::POST, "/console/login") => post_login(app, req, peer, secure, rid).await,
        (&Method::GET, "/console/totp") => totp_page(app, &req, secure),
        (&Method::POST, "/console/totp") => post_totp(app, req, secure, rid).await,
        _ => authed(app, req, secure, rid).await,
    }
}

/// The pages behind the console login.
async fn authed(app: &Arc<App>, req: Request<Incoming>, secure: bool, rid: &str) -> Resp {
    let l = match operator_of(app, &req, secure).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let lang = match param(&req, "lang").as_str() {
        "en" => Lang::En,
        "ja" => Lang::Ja,
        _ if l.lang == "en" => Lang::En,
        _ => Lang::Ja,
    };
    let mut l = l;
    l.lang = lang.code().into();
    let path = req.uri().path().to_string();
    let mut r = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/console/") => home(app, &req, lang, &l).await,
        (Method::GET, "/console/search") => search(app, &req, lang, &l).await,
        (Method::GET, "/console/account") => account(app, &req, lang, &l, None, None).await,
        (Method::GET, "/console/support") => support_page(&req, lang, &l),
        (Method::GET, "/console/export/applications.csv") => export(app, true).await,
        (Method::GET, "/console/export/consents.csv") => export(app, false).await,
        (Method::POST, "/console/action") => post_action(app, req, lang, &l, rid).await,
        (Method::POST, "/console/logout") => {
            let r = logout(req, &l, secure).await;
            return r;
        }
        _ => message(
            Chrome::new(&req, lang, Some(&l)),
            StatusCode::NOT_FOUND,
            lang.t("ページが見つかりません", "Page not found"),
            String::new(),
        ),
    };
    // Rolling idle timeout: every page the operator opens restarts the clock.
    let idle = app.cfg.console.idle_timeout_seconds as i64;
    set_cookie(&mut r, secure, LOGIN_COOKIE, &l.seal(&app.sessions), idle);
    r
}

/// The operator behind the request's console cookie, or the answer that sends them to log in.
async fn operator_of<B>(
    app: &Arc<App>,
    req: &Request<B>,
    secure: bool,
) -> Result<OperatorLogin, Resp> {
    let now = chrono::Utc::now().timestamp();
    let mut gone = Gone::Absent;
    for t in cookies(req, secure, LOGIN_COOKIE) {
        match OperatorLogin::open(&app.sessions, &t, &app.cfg.console, now) {
            Ok(l) => {
                let (a, who) = (app.clone(), l.operator.clone());
                return match blocking(move || operator::allowed(&*a.store, &who)).await {
                    Some(Ok(true)) => Ok(l),
                    _ => Err(to_login(secure, "denied")),
                };
            }
            Err(g) => gone = g,
        }
    }
    Err(to_login(
        secure,
        match gone {
            Gone::Idle | Gone::TooOld => "idle",
            _ => "",
        },
    ))
}

fn to_login(secure: bool, why: &str) -> Resp {
    let to = if why.is_empty() {
        "/console/login".to_string()
    } else {
        format!("/console/login?why={why}")
    };
    let mut r = pages::redirect(StatusCode::SEE_OTHER, &to);
    set_cookie(&mut r, secure, LOGIN_COOKIE, "", 0);
    r
}

fn login_form<B>(
    codec: &crate::session::SessionCodec,
    req: &Request<B>,
    secure: bool,
    status: StatusCode,
    user_id: &str,
    error: Option<&crate::accounts::Message>,
    info: Option<&str>,
) -> Resp {
    let lang = Lang::of(req);
    let csrf = crate::session::random_id();
    let page = LoginPage {
        c: Chrome::new(req, lang, None),
        lang,
        csrf: &csrf,
        user_id,
        error: error.map(|m| {
            format!(
                "{} / {}",
                lang.t(&m.ja, &m.en),
                lang.other().t(&m.ja, &m.en)
            )
        }),
        info,
    };
    let mut r = pages::render(status, &page);
    // Double submit: the form carries the token, the cookie the same sealed (a cookie planted
    // by a sibling host cannot match a form value without the key).
    set_cookie(&mut r, secure, CSRF_COOKIE, &codec.seal(&csrf), 3600);
    r
}

fn refusal_message(ja: &str, en: &str) -> crate::accounts::Message {
    crate::accounts::Message {
        ja: ja.into(),
        en: en.into(),
    }
}

/// The login form shown again after a POST: for this request and the id typed.
struct Again<'a> {
    app: &'a App,
    req: &'a Request<()>,
    secure: bool,
    user_id: &'a str,
}

impl Again<'_> {
    /// The form with a message (JA / EN) and, when given, the reason header.
    fn refuse(&self, status: StatusCode, ja: &str, en: &str, reason: Option<&'static str>) -> Resp {
        let m = refusal_message(ja, en);
        let mut r = login_form(
            &self.app.sessions,
            self.req,
            self.secure,
            status,
            self.user_id,
            Some(&m),
            None,
        );
        if let Some(code) = reason {
            r.headers_mut()
                .insert("x-samlgate-reason", HeaderValue::from_static(code));
        }
        r
    }
}

async fn post_login(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
    rid: &str,
) -> Resp {
    let client = super::client_ip(app, req.headers(), peer);
    let csrf_cookie: Vec<String> = cookies(&req, secure, CSRF_COOKIE)
        .iter()
        .filter_map(|t| app.sessions.open(t))
        .collect();
    let (head, body) = req.into_parts();
    let req_head = Request::from_parts(head, ());
    let f = form(Request::new(body)).await.unwrap_or_default();
    let user_id = field(&f, "user_id").trim().to_string();
    let again = Again {
        app,
        req: &req_head,
        secure,
        user_id: &user_id,
    };
    if !csrf_cookie.iter().any(|c| ct_eq(c, field(&f, "csrf"))) {
        tracing::warn!(target: "samlgate::console", request_id = rid, peer = %client, reason = crate::reason::Reason::CsrfMismatch.code(), "console login form refused");
        return again.refuse(
            StatusCode::FORBIDDEN,
            "画面の有効期限が切れました。もう一度入力してください。",
            "This form has expired. Please enter your details again.",
            None,
        );
    }
    if app.local.allow_ip(client).is_err() {
        return again.refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "試行回数が多すぎます。しばらく待ってからもう一度お試しください。",
            "Too many attempts. Please wait a while and try again.",
            Some(crate::reason::Reason::RateLimited.code()),
        );
    }
    let pw = Password::new(field(&f, "password").to_string());
    let (a2, uid) = (app.clone(), user_id.clone());
    let r = on_hash_pool(app, move || {
        let o = ll::password(
            &*a2.store,
            &a2.cfg.local,
            &a2.local,
            &uid,
            &pw,
            "/console/",
            &AccountOnly,
        )?;
        let ok = operator::allowed(&*a2.store, &uid)?;
        Ok::<_, crate::store::StoreError>((o, ok))
    })
    .await;
    match r {
        Some(Ok((o, allowed))) => password_outcome(&again, o, allowed, rid),
        _ => again.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "現在ログインできません。しばらくしてからお試しください。",
            "Logging in is not possible right now. Please try again later.",
            Some(crate::reason::Reason::StoreUnavailable.code()),
        ),
    }
}

/// After the password: the TOTP step for a secretariat account, else the form again.
fn password_outcome(again: &Again, o: Outcome, allowed: bool, rid: &str) -> Resp {
    match o {
        Outcome::Refused(refusal) => {
            let status = match refusal {
                LoginRefusal::Blocked(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let m = refusal.message();
            again.refuse(status, &m.ja, &m.en, Some(refusal.code()))
        }
        // The password was right: only now does the role matter (a wrong password says
        // nothing about who may use the console).
        _ if !allowed => {
            tracing::warn!(target: "samlgate::console", request_id = rid, user_id = %again.user_id, reason = crate::reason::Reason::ConsoleNotSecretariat.code(), "console login refused: not a secretariat account");
            again.refuse(
                StatusCode::FORBIDDEN,
                "このアカウントでは事務局コンソールを利用できません。事務局の担当者のアカウントでログインしてください。",
                "This account cannot use the secretariat console. Please log in with a secretariat account.",
                Some(crate::reason::Reason::ConsoleNotSecretariat.code()),
            )
        }
        Outcome::Next(rec) if rec.step == StepKind::Totp => {
            let mut r = pages::redirect(StatusCode::SEE_OTHER, "/console/totp");
            let token = again.app.sessions.seal(&rec.id);
            set_cookie(&mut r, again.secure, STEP_COOKIE, &token, ll::STEP_TTL_SECS);
            r
        }
        // First login (password change, authenticator enrolment) happens on the normal login
        // pages; the console asks for the finished setup.
        _ => {
            let login = format!("{}/login", again.app.cfg.public_url);
            again.refuse(
                StatusCode::FORBIDDEN,
                &format!("初回ログインの設定（パスワード変更と認証アプリの登録）がまだです。先に {login} でログインして設定を済ませてから、もう一度お試しください。"),
                &format!("Your first-login setup (password change and authenticator app) is not finished. Log in at {login} first to complete it, then try again."),
                Some(crate::reason::Reason::ConsoleSetupNeeded.code()),
            )
        }
    }
}

async fn on_hash_pool<T: Send + 'static>(
    app: &App,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _slot = app.hash_slots.acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
}

fn step_of<B>(app: &App, req: &Request<B>, secure: bool) -> Option<ll::LoginSteps> {
    cookies(req, secure, STEP_COOKIE)
        .into_iter()
        .filter_map(|t| app.sessions.open(&t))
        .find_map(|id| ll::steps_get(&*app.store, &id).ok().flatten())
        .filter(|r| r.step == StepKind::Totp && r.return_to == "/console/")
}

fn totp_form<B>(
    req: &Request<B>,
    lang: Lang,
    status: StatusCode,
    csrf: &str,
    error: Option<String>,
) -> Resp {
    let page = TotpPage {
        c: Chrome::new(req, lang, None),
        lang,
        csrf: csrf.to_string(),
        error,
    };
    pages::render(status, &page)
}

fn totp_page<B>(app: &App, req: &Request<B>, secure: bool) -> Resp {
    match step_of(app, req, secure) {
        Some(rec) => totp_form(req, Lang::of(req), StatusCode::OK, &rec.csrf, None),
        None => pages::redirect(StatusCode::SEE_OTHER, "/console/login"),
    }
}

async fn post_totp(app: &Arc<App>, req: Request<Incoming>, secure: bool, rid: &str) -> Resp {
    let rec = step_of(app, &req, secure);
    let (head, body) = req.into_parts();
    let req_head = Request::from_parts(head, ());
    let lang = Lang::of(&req_head);
    let f = form(Request::new(body)).await.unwrap_or_default();
    let Some(rec) = rec.filter(|r| ct_eq(&r.csrf, field(&f, "csrf"))) else {
        let m = refusal_message(
            "画面の有効期限が切れました。もう一度ログインしてください。",
            "This form has expired. Please log in again.",
        );
        return login_form(
            &app.sessions,
            &req_head,
            secure,
            StatusCode::FORBIDDEN,
            "",
            Some(&m),
            None,
        );
    };
    let code = field(&f, "code").to_string();
    let (a2, r2) = (app.clone(), rec.clone());
    let r = on_hash_pool(app, move || {
        ll::second_factor(
            &*a2.store,
            &a2.cfg.local,
            &a2.local,
            &r2,
            &code,
            false,
            &AccountOnly,
        )
    })
    .await;
    let operator = rec.proven.user_id().to_string();
    match r {
        Some(Ok((Outcome::Done { user, method, .. }, _))) if method.is_multi_factor() => {
            logged_in(app, &user.id, method, lang, secure, rid).await
        }
        Some(Ok((Outcome::Refused(refusal), Some(again)))) => {
            totp_again(app, &req_head, secure, refusal, &again)
        }
        other => {
            let refusal = match other {
                Some(Ok((Outcome::Refused(r), None))) => Some(r),
                _ => None,
            };
            tracing::info!(target: "samlgate::console", request_id = rid, operator = %operator, reason = refusal.as_ref().map_or(crate::reason::Reason::ConsoleTotpFailed.code(), |r| r.code()), "console login refused at the second factor");
            let m = refusal.map(|r| r.message()).unwrap_or_else(|| {
                refusal_message(
                    "ログインできませんでした。もう一度お試しください。",
                    "Login failed. Please try again.",
                )
            });
            let mut r = login_form(
                &app.sessions,
                &req_head,
                secure,
                StatusCode::UNAUTHORIZED,
                &operator,
                Some(&m),
                None,
            );
            set_cookie(&mut r, secure, STEP_COOKIE, "", 0);
            r
        }
    }
}

/// A wrong code with tries left: the code form again, on a fresh step record.
fn totp_again(
    app: &App,
    req_head: &Request<()>,
    secure: bool,
    refusal: LoginRefusal,
    again: &ll::LoginSteps,
) -> Resp {
    let lang = Lang::of(req_head);
    let m = refusal.message();
    let text = format!(
        "{} / {}",
        lang.t(&m.ja, &m.en),
        lang.other().t(&m.ja, &m.en)
    );
    let mut r = totp_form(
        req_head,
        lang,
        StatusCode::UNAUTHORIZED,
        &again.csrf,
        Some(text),
    );
    r.headers_mut().insert(
        "x-samlgate-reason",
        HeaderValue::from_static(refusal.code()),
    );
    set_cookie(
        &mut r,
        secure,
        STEP_COOKIE,
        &app.sessions.seal(&again.id),
        ll::STEP_TTL_SECS,
    );
    r
}

/// Password and second factor done: the console login starts (the role is checked again).
async fn logged_in(
    app: &Arc<App>,
    operator: &str,
    method: crate::accounts::account::AuthMethod,
    lang: Lang,
    secure: bool,
    rid: &str,
) -> Resp {
    let (a2, who) = (app.clone(), operator.to_string());
    if !matches!(
        blocking(move || operator::allowed(&*a2.store, &who)).await,
        Some(Ok(true))
    ) {
        return to_login(secure, "denied");
    }
    tracing::info!(target: "samlgate::console", request_id = rid, operator, method = method.header_value(), "console login");
    let now = chrono::Utc::now().timestamp();
    let l = OperatorLogin::new(operator, lang.code(), now);
    let mut r = pages::redirect(StatusCode::SEE_OTHER, "/console/");
    let idle = app.cfg.console.idle_timeout_seconds as i64;
    set_cookie(&mut r, secure, LOGIN_COOKIE, &l.seal(&app.sessions), idle);
    set_cookie(&mut r, secure, STEP_COOKIE, "", 0);
    set_cookie(&mut r, secure, CSRF_COOKIE, "", 0);
    r
}

async fn logout(req: Request<Incoming>, l: &OperatorLogin, secure: bool) -> Resp {
    let f = form(req).await.unwrap_or_default();
    if !ct_eq(&l.csrf, field(&f, "csrf")) {
        return pages::text(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "CSRF token mismatch\n",
        );
    }
    tracing::info!(target: "samlgate::console", operator = %l.operator, "console logout");
    to_login(secure, "out")
}

fn message(c: Chrome, status: StatusCode, title: &str, message: String) -> Resp {
    let lang = c.lang;
    let page = MessagePage {
        c,
        title,
        message,
        href: "/console/",
        link: lang.t("受付一覧へ戻る", "Back to the queues"),
    };
    pages::render(status, &page)
}

fn store_trouble<B>(req: &Request<B>, lang: Lang, l: &OperatorLogin) -> Resp {
    message(
        Chrome::new(req, lang, Some(l)),
        StatusCode::SERVICE_UNAVAILABLE,
        lang.t("表示できません", "Cannot show this page"),
        lang.t(
            "データベースに接続できません。しばらくしてから再読み込みしてください。",
            "The database cannot be reached. Please reload in a moment.",
        )
        .to_string(),
    )
}

async fn home<B>(app: &Arc<App>, req: &Request<B>, lang: Lang, l: &OperatorLogin) -> Resp {
    let a = app.clone();
    match blocking(move || records::queues(&*a.store, &a.cfg)).await {
        Some(Ok(q)) => pages::render(
            StatusCode::OK,
            &HomePage {
                c: Chrome::new(req, lang, Some(l)),
                lang,
                q,
            },
        ),
        _ => store_trouble(req, lang, l),
    }
}

async fn search<B>(app: &Arc<App>, req: &Request<B>, lang: Lang, l: &OperatorLogin) -> Resp {
    let term = param(req, "q");
    let rows = match Query::new(&term) {
        None => Vec::new(),
        Some(q) => {
            let a = app.clone();
            match blocking(move || records::search(&*a.store, &a.cfg, &q)).await {
                Some(Ok(rows)) => rows,
                _ => return store_trouble(req, lang, l),
            }
        }
    };
    pages::render(
        StatusCode::OK,
        &SearchPage {
            c: Chrome::new(req, lang, Some(l)),
            lang,
            term,
            rows,
        },
    )
}

async fn account<B>(
    app: &Arc<App>,
    req: &Request<B>,
    lang: Lang,
    l: &OperatorLogin,
    id: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Resp {
    let id = id.unwrap_or_else(|| param(req, "id"));
    let a = app.clone();
    let d = match blocking(move || records::detail(&*a.store, &a.cfg, &id)).await {
        Some(Ok(Some(d))) => d,
        Some(Ok(None)) => {
            return message(
                Chrome::new(req, lang, Some(l)),
                StatusCode::NOT_FOUND,
                lang.t("見つかりません", "Not found"),
                lang.t(
                    "このIDの申請・同意・利用者の記録はありません。",
                    "No application, consent or user has this id.",
                )
                .to_string(),
            )
        }
        _ => return store_trouble(req, lang, l),
    };
    let actions = Action::ALL.into_iter().filter(|a| a.applies(&d)).collect();
    let done = Action::parse(&param(req, "done"));
    let (status, error) = match error {
        Some((s, e)) => (s, Some(e)),
        None => (StatusCode::OK, None),
    };
    pages::render(
        status,
        &AccountPage {
            c: Chrome::new(req, lang, Some(l)),
            lang,
            d,
            actions,
            done,
            error,
        },
    )
}

fn support_page<B>(req: &Request<B>, lang: Lang, l: &OperatorLogin) -> Resp {
    let reference = param(req, "ref");
    let searched = !reference.trim().is_empty();
    let events = if searched {
        support::find(&reference)
    } else {
        Vec::new()
    };
    pages::render(
        StatusCode::OK,
        &SupportPage {
            c: Chrome::new(req, lang, Some(l)),
            lang,
            reference: support::normalise(&reference).unwrap_or(reference),
            events,
            searched,
        },
    )
}

async fn export(app: &Arc<App>, applications: bool) -> Resp {
    use crate::admin::{execute_cfg, Op};
    let a = app.clone();
    let csv = blocking(move || -> Result<String, String> {
        let op = if applications {
            Op::ApplicationList
        } else {
            Op::ConsentList
        };
        let v = execute_cfg(&*a.store, &a.cfg, &op).map_err(|e| e.to_string())?;
        let e = |e: serde_json::Error| e.to_string();
        Ok(if applications {
            let apps: Vec<crate::identity::applications::Application> =
                serde_json::from_value(v).map_err(e)?;
            crate::console::export::applications(&apps)
        } else {
            let list: Vec<crate::identity::consent::ConsentState> =
                serde_json::from_value(v).map_err(e)?;
            crate::console::export::consents(&list)
        })
    })
    .await;
    let Some(Ok(csv)) = csv else {
        return pages::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "the store is unavailable\n",
        );
    };
    let day = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).expect("offset"))
        .format("%Y%m%d");
    let what = if applications {
        "applications"
    } else {
        "consents"
    };
    let mut r = pages::text(StatusCode::OK, "text/csv; charset=utf-8", csv);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"samlgate-{what}-{day}.csv\""
    )) {
        r.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    r
}

/// What the account page says when an action is refused.
fn refusal_text(lang: Lang, e: &ActionError) -> (StatusCode, String) {
    match e {
        ActionError::NoteMissing => (
            StatusCode::UNPROCESSABLE_ENTITY,
            lang.t("メモを入力してください。", "Please enter a note.").to_string(),
        ),
        ActionError::NotApplicable => (
            StatusCode::CONFLICT,
            lang.t(
                "この操作は現在の状態には行えません（他の担当者が先に操作した可能性があります）。",
                "This action does not apply to the account as it is now (someone may have acted first).",
            )
            .to_string(),
        ),
        ActionError::Admin(e @ crate::admin::AdminError::Store(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} ({e})", lang.t("データベースに接続できません", "The database cannot be reached")),
        ),
        ActionError::Admin(e) => (
            StatusCode::CONFLICT,
            format!("{} ({e})", lang.t("操作できませんでした", "The action failed")),
        ),
    }
}

/// Queues the action's mail to the person when `[mail]` is configured (delivery and failures
/// are logged by `crate::mail` with a reason code, never the body).
fn hand_to_mail(app: &App, m: &ActionMail, action: Action, about: &str, rid: &str) {
    let Some(mailer) = &app.mailer else {
        tracing::info!(target: "samlgate::console", request_id = rid, action = action.name(), subject = %about, "action mail not sent: no [mail] configured");
        return;
    };
    let mail = crate::mail::Mail {
        to: m.to.clone(),
        about: about.to_string(),
        // The mail log's label is the action's audit name (`console.approve`, ...).
        purpose: action.audit_action().name(),
        subject: m.subject.clone(),
        body: m.body.clone(),
    };
    if let Err(f) = mailer.send(mail) {
        tracing::warn!(target: "samlgate::console", request_id = rid, action = action.name(), subject = %about, reason = f.code(), "action mail not queued");
    }
}

async fn post_action(
    app: &Arc<App>,
    req: Request<Incoming>,
    lang: Lang,
    l: &OperatorLogin,
    rid: &str,
) -> Resp {
    let (head, body) = req.into_parts();
    let req_head = Request::from_parts(head, ());
    let f = form(Request::new(body)).await.unwrap_or_default();
    if !ct_eq(&l.csrf, field(&f, "csrf")) {
        tracing::warn!(target: "samlgate::console", request_id = rid, operator = %l.operator, reason = crate::reason::Reason::CsrfMismatch.code(), "console action refused");
        return message(
            Chrome::new(&req_head, lang, Some(l)),
            StatusCode::FORBIDDEN,
            lang.t("操作を受け付けられませんでした", "The action was not accepted"),
            lang.t(
                "画面の有効期限が切れたか、別の画面から送信されました。もう一度開き直して操作してください。",
                "The form has expired or was sent from elsewhere. Please open the page again and retry.",
            )
            .to_string(),
        );
    }
    let id = field(&f, "id").to_string();
    let Some(action) = Action::parse(field(&f, "action")) else {
        return account(
            app,
            &req_head,
            lang,
            l,
            Some(id),
            Some((StatusCode::BAD_REQUEST, "unknown action".into())),
        )
        .await;
    };
    let note = field(&f, "note").to_string();
    let (a, who, id2) = (app.clone(), l.operator.clone(), id.clone());
    let r = blocking(move || -> Result<actions::Done, ActionError> {
        let d = records::detail(&*a.store, &a.cfg, &id2)?
            .ok_or_else(|| crate::admin::AdminError::NotFound(format!("no record {id2}")))?;
        actions::run(&*a.store, &a.cfg, &who, action, &d, &note)
    })
    .await;
    let done = match r {
        Some(Ok(done)) => done,
        Some(Err(e)) => {
            tracing::info!(target: "samlgate::console", request_id = rid, operator = %l.operator, action = action.name(), subject = %id, error = %e, "console action refused");
            let (status, text) = refusal_text(lang, &e);
            return account(app, &req_head, lang, l, Some(id), Some((status, text))).await;
        }
        None => return store_trouble(&req_head, lang, l),
    };
    tracing::info!(target: "samlgate::console", request_id = rid, operator = %l.operator, action = action.name(), subject = %id, "console action");
    if let Some(m) = &done.mail {
        hand_to_mail(app, m, action, &id, rid);
    }
    if let Some(pw) = done.temporary_password {
        let page = DonePage {
            c: Chrome::new(&req_head, lang, Some(l)),
            lang,
            id,
            action,
            password: pw,
        };
        return pages::render(StatusCode::OK, &page);
    }
    let enc: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("id", &id)
        .append_pair("done", action.name())
        .finish();
    pages::redirect(StatusCode::SEE_OTHER, &format!("/console/account?{enc}"))
}
