//! The ID/password login pages (issue 13): `/login` (form and POST), `/login/change` (forced
//! password change), `/login/totp` (second factor), `/login/forgot`. A translator: forms in,
//! [`crate::local_login`] decides, pages and the session out.
//!
//! No session exists before a login is done: the steps in between are named by a separate
//! short-lived cookie (`samlgate-login`) whose record is kept server-side. A finished login
//! gets a fresh session id, the same record, cookie, `/auth/verify` headers and JWT as SSO.

use std::net::SocketAddr;

use askama::Template;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER, SET_COOKIE};
use hyper::{Request, StatusCode};

use super::pages::{self, Lang, Resp};
use super::App;
use crate::accounts::account::LoginRefusal;
use crate::accounts::password::Password;
use crate::accounts::Message;
use crate::local_login::{self as ll, LoginSteps, Outcome, StepKind};
use crate::login::local::Ending;
use crate::login::NewSession;
use crate::reason::Reason;
use crate::return_path::safe_return_path;
use crate::sessions::{Which, Why};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    lang: Lang,
    gmis_href: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    user_id: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "password_change.html")]
struct ChangePage<'a> {
    lang: Lang,
    csrf: &'a str,
    errors: Vec<&'a str>,
    min_len: usize,
    /// Came by a mailed reset link, not the 事務局's one-time password.
    via_link: bool,
}

#[derive(Template)]
#[template(path = "login_totp.html")]
struct TotpPage<'a> {
    lang: Lang,
    csrf: &'a str,
    error: Option<&'a str>,
}

pub const LOGIN_JS: &str = include_str!("../../static/login.js");

pub(super) fn csrf_cookie_name(app: &App) -> &'static str {
    if app.cfg.https {
        "__Host-samlgate-csrf"
    } else {
        "samlgate-csrf"
    }
}

pub(super) fn steps_cookie_name(app: &App) -> &'static str {
    if app.cfg.https {
        "__Host-samlgate-login"
    } else {
        "samlgate-login"
    }
}

pub(super) fn set_cookie(r: &mut Resp, c: &str) {
    if let Ok(v) = HeaderValue::from_str(c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
}

fn gmis_href(app: &App, return_to: &str) -> String {
    if app.gmis_login_url == "/saml/login" && return_to != "/" {
        let enc: String = form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        format!("/saml/login?return_to={enc}")
    } else {
        app.gmis_login_url.clone()
    }
}

/// The login page with a fresh CSRF token (double submit: the cookie holds it sealed).
fn login_form(
    app: &App,
    lang: Lang,
    status: StatusCode,
    return_to: &str,
    user_id: &str,
    error: Option<&Message>,
) -> Resp {
    let csrf = crate::session::random_id();
    let text = error.map(|m| {
        format!(
            "{} / {}",
            lang.t(&m.ja, &m.en),
            lang.other().t(&m.ja, &m.en)
        )
    });
    let page = LoginPage {
        lang,
        gmis_href: &gmis_href(app, return_to),
        csrf: &csrf,
        return_to,
        user_id,
        error: text.as_deref(),
    };
    let mut r = pages::render(status, &page);
    let c = app
        .sessions
        .cookie(csrf_cookie_name(app), &app.sessions.seal(&csrf), 3600);
    set_cookie(&mut r, &c);
    r
}

pub fn login_page<B>(app: &App, req: &Request<B>) -> Resp {
    let return_to = safe_return_path(super::sso::return_to_param(req.uri().query()).as_deref());
    login_form(app, Lang::of(req), StatusCode::OK, &return_to, "", None)
}

pub(super) fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The form's fields; `None` when the body is too large or not a form.
pub(super) async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body: Bytes = Limited::new(req.into_body(), 8192)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(form_urlencoded::parse(&body).into_owned().collect())
}

pub(super) fn field<'a>(f: &'a [(String, String)], k: &str) -> &'a str {
    f.iter()
        .find(|(n, _)| n == k)
        .map_or("", |(_, v)| v.as_str())
}

/// Runs `f` on the bounded hash pool: argon2 (19 MiB, tens of ms each) never runs on the
/// async workers, and a flood of passwords queues here instead of starving `/auth/verify`.
async fn on_hash_pool<T: Send + 'static>(
    app: &App,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _slot = app.hash_slots.acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
}

pub async fn post_login(
    app: &std::sync::Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    rid: &str,
) -> Resp {
    let lang = Lang::of(&req);
    let client = super::client_ip(app, req.headers(), peer);
    let cookie_csrf = app
        .sessions
        .open_cookies(csrf_cookie_name(app), req.headers());
    let replaces = super::auth::session_ids(app, req.headers());
    let Some(f) = form(req).await else {
        return pages::refusal_page(lang, Reason::BadRequest, rid, Some("/login"));
    };
    let return_to = safe_return_path(Some(field(&f, "return_to")));
    let user_id = field(&f, "user_id").trim().to_string();
    if !csrf_ok(&cookie_csrf, &f) {
        tracing::warn!(target: "samlgate::local", request_id = rid, peer = %client, reason = Reason::CsrfMismatch.code(), "login form refused");
        let m = stale_form();
        return login_form(
            app,
            lang,
            StatusCode::FORBIDDEN,
            &return_to,
            &user_id,
            Some(&m),
        );
    }
    if let Err(wait) = app.local.allow_ip(client) {
        app.metrics.refused(Reason::RateLimited);
        tracing::warn!(target: "samlgate::local", request_id = rid, peer = %client, reason = Reason::RateLimited.code(), "password login refused: too many from this client");
        let mut r = pages::refusal_page(lang, Reason::RateLimited, rid, Some("/login"));
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait.max(1)));
        return r;
    }
    let pw = Password::new(field(&f, "password").to_string());
    let (a2, uid, rt) = (app.clone(), user_id.clone(), return_to.clone());
    let ending = Ending::session(&app.cfg.session, replaces);
    let e2 = ending.clone();
    let r = on_hash_pool(app, move || {
        ll::password(&*a2.store, &a2.cfg.local, &a2.local, &uid, &pw, &rt, &e2)
    })
    .await;
    forget_replaced(app, matches!(r, Some(Ok(Outcome::Done { .. }))), &ending);
    outcome(app, lang, rid, &user_id, &return_to, r)
}

/// After a finished login: the browser's earlier sessions, deleted in its commit, lose their
/// cached tokens too.
fn forget_replaced(app: &App, done: bool, ending: &Ending) {
    if let (true, Ending::Session { replaces, .. }) = (done, ending) {
        let _ = super::auth::end(app, Which::Committed(replaces), Why::Replaced);
    }
}

pub(super) fn stale_form() -> Message {
    Message {
        ja: "画面の有効期限が切れました。もう一度入力してください。".into(),
        en: "This form has expired. Please enter your details again.".into(),
    }
}

/// Turns a step's outcome into the answer: the session's cookie, the next step, or the form
/// again.
fn outcome(
    app: &App,
    lang: Lang,
    rid: &str,
    user_id: &str,
    return_to: &str,
    r: Option<Result<Outcome, crate::store::StoreError>>,
) -> Resp {
    let o = match r {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            tracing::error!(target: "samlgate::local", request_id = rid, reason = Reason::StoreUnavailable.code(), error = %e, "password login: store");
            return pages::refusal_page(lang, Reason::StoreUnavailable, rid, Some("/login"));
        }
        None => return pages::refusal_page(lang, Reason::Internal, rid, Some("/login")),
    };
    match o {
        Outcome::Done {
            user,
            method,
            session: Some(s),
        } => {
            tracing::info!(target: "samlgate::local", request_id = rid, local_user = %user.id, method = method.header_value(), "password login");
            session_cookie(app, &s, return_to)
        }
        // Every login here ends in a session (Ending::Session).
        Outcome::Done { session: None, .. } => {
            pages::refusal_page(lang, Reason::Internal, rid, Some("/login"))
        }
        Outcome::Next(rec) => next_step(app, &rec),
        Outcome::Refused(refusal) => {
            tracing::info!(target: "samlgate::local", request_id = rid, user_id = %user_id.chars().take(64).collect::<String>(), reason = refusal.code(), "password login refused");
            let status = match refusal {
                LoginRefusal::Blocked(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut r = login_form(
                app,
                lang,
                status,
                return_to,
                user_id,
                Some(&refusal.message()),
            );
            r.headers_mut().insert(
                "x-samlgate-reason",
                HeaderValue::from_static(refusal.code()),
            );
            set_cookie(&mut r, &app.sessions.cookie(steps_cookie_name(app), "", 0));
            r
        }
        Outcome::ChangeRefused(again, msgs) => {
            let mut r = change_form(app, lang, &again, &msgs, StatusCode::UNPROCESSABLE_ENTITY);
            let c = app.sessions.cookie(
                steps_cookie_name(app),
                &app.sessions.seal(&again.id),
                ll::STEP_TTL_SECS,
            );
            set_cookie(&mut r, &c);
            r
        }
    }
}

pub(super) fn next_step(app: &App, rec: &LoginSteps) -> Resp {
    let to = match rec.step {
        StepKind::ChangePassword => "/login/change",
        StepKind::Totp => "/login/totp",
        StepKind::EnrolTotp => "/login/enrol",
    };
    let mut r = pages::redirect(StatusCode::SEE_OTHER, to);
    let c = app.sessions.cookie(
        steps_cookie_name(app),
        &app.sessions.seal(&rec.id),
        ll::STEP_TTL_SECS,
    );
    set_cookie(&mut r, &c);
    r
}

/// The answer to a finished login: its session (committed with the login, a fresh id, as
/// SSO makes it) in the cookie; the step and CSRF cookies cleared.
fn session_cookie(app: &App, s: &NewSession, return_to: &str) -> Resp {
    let mut r = pages::redirect(StatusCode::SEE_OTHER, return_to);
    set_cookie(
        &mut r,
        &app.sessions
            .set_cookie(&app.sessions.seal(&s.rec.id), s.max_age),
    );
    set_cookie(&mut r, &app.sessions.cookie(steps_cookie_name(app), "", 0));
    set_cookie(&mut r, &app.sessions.cookie(csrf_cookie_name(app), "", 0));
    r
}

/// The step record named by the request's login cookie, if it is ours, alive and of `kind`.
fn steps_of<B>(app: &App, req: &Request<B>, kind: StepKind) -> Option<LoginSteps> {
    app.sessions
        .open_cookies(steps_cookie_name(app), req.headers())
        .into_iter()
        .find_map(|id| ll::steps_get(&*app.store, &id).ok().flatten())
        .filter(|r| r.step == kind)
}

/// A POST to a login step: its form, its language, the step record named by the login
/// cookie, which must be of `kind` and carry the form's CSRF token, and what a finished login
/// ends in (a session replacing the browser's earlier ones). Otherwise the answer to send: a
/// refusal for an unreadable form, the login form for a stale or forged one.
async fn step_post(
    app: &App,
    req: Request<Incoming>,
    kind: StepKind,
    rid: &str,
) -> Result<(Lang, Vec<(String, String)>, LoginSteps, Ending), Resp> {
    let lang = Lang::of(&req);
    let rec = steps_of(app, &req, kind);
    let replaces = super::auth::session_ids(app, req.headers());
    let (lang, f) = read_form(req, lang, rid, "/login").await?;
    match rec.filter(|r| ct_eq(&r.csrf, field(&f, "csrf"))) {
        Some(rec) => Ok((lang, f, rec, Ending::session(&app.cfg.session, replaces))),
        None => Err(login_form(
            app,
            lang,
            StatusCode::FORBIDDEN,
            "/",
            "",
            Some(&stale_form()),
        )),
    }
}

/// A form POST's body and the language it asks for; an unreadable body is a 400 refusal page
/// that leads back to `back`.
pub(super) async fn read_form(
    req: Request<Incoming>,
    lang: Lang,
    rid: &str,
    back: &'static str,
) -> Result<(Lang, Vec<(String, String)>), Resp> {
    match form(req).await {
        Some(f) => Ok((lang_of_form(&f, lang), f)),
        None => Err(pages::refusal_page(
            lang,
            Reason::BadRequest,
            rid,
            Some(back),
        )),
    }
}

/// The form's CSRF token matches one of the (sealed) CSRF cookies the browser sent.
pub(super) fn csrf_ok(cookies: &[String], f: &[(String, String)]) -> bool {
    cookies.iter().any(|c| ct_eq(c, field(f, "csrf")))
}

pub(super) fn lang_of_form(f: &[(String, String)], fallback: Lang) -> Lang {
    match field(f, "lang") {
        "en" => Lang::En,
        "ja" => Lang::Ja,
        _ => fallback,
    }
}

fn change_form(
    app: &App,
    lang: Lang,
    rec: &LoginSteps,
    msgs: &[Message],
    status: StatusCode,
) -> Resp {
    let texts: Vec<String> = msgs
        .iter()
        .map(|m| {
            format!(
                "{} / {}",
                lang.t(&m.ja, &m.en),
                lang.other().t(&m.ja, &m.en)
            )
        })
        .collect();
    let page = ChangePage {
        lang,
        csrf: &rec.csrf,
        errors: texts.iter().map(String::as_str).collect(),
        // The policy decides; the note shows the stricter minimum unless a second factor is
        // certain for every account.
        min_len: if app.cfg.local.second_factor == crate::accounts::account::SecondFactor::Required
        {
            app.cfg.local.password.min_with_second_factor
        } else {
            app.cfg.local.password.min_single_factor
        },
        via_link: rec.proven.is_reset(),
    };
    pages::render(status, &page)
}

pub fn change_page<B>(app: &App, req: &Request<B>) -> Resp {
    match steps_of(app, req, StepKind::ChangePassword) {
        Some(rec) => change_form(app, Lang::of(req), &rec, &[], StatusCode::OK),
        None => pages::redirect(StatusCode::SEE_OTHER, "/login"),
    }
}

pub async fn post_change(app: &std::sync::Arc<App>, req: Request<Incoming>, rid: &str) -> Resp {
    let (lang, f, rec, ending) = match step_post(app, req, StepKind::ChangePassword, rid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if field(&f, "new_password") != field(&f, "confirm") {
        let m = Message {
            ja: "確認のために入力したパスワードが一致しません。".into(),
            en: "The two passwords do not match.".into(),
        };
        return change_form(app, lang, &rec, &[m], StatusCode::UNPROCESSABLE_ENTITY);
    }
    let pw = Password::new(field(&f, "new_password").to_string());
    let (a2, r2, e2) = (app.clone(), rec.clone(), ending.clone());
    let r = on_hash_pool(app, move || {
        ll::change_password(&*a2.store, &a2.cfg.local, &a2.local, &r2, &pw, &e2)
    })
    .await;
    forget_replaced(app, matches!(r, Some(Ok(Outcome::Done { .. }))), &ending);
    let user = rec.proven.user_id().to_string();
    outcome(app, lang, rid, &user, &rec.return_to, r)
}

pub fn totp_page<B>(app: &App, req: &Request<B>) -> Resp {
    match steps_of(app, req, StepKind::Totp) {
        Some(rec) => pages::render(
            StatusCode::OK,
            &TotpPage {
                lang: Lang::of(req),
                csrf: &rec.csrf,
                error: None,
            },
        ),
        None => pages::redirect(StatusCode::SEE_OTHER, "/login"),
    }
}

pub async fn post_totp(app: &std::sync::Arc<App>, req: Request<Incoming>, rid: &str) -> Resp {
    let (lang, f, rec, ending) = match step_post(app, req, StepKind::Totp, rid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let recovery = field(&f, "use_recovery") == "1";
    let code = field(&f, if recovery { "recovery" } else { "code" }).to_string();
    let (a2, r2, e2) = (app.clone(), rec.clone(), ending.clone());
    let r = on_hash_pool(app, move || {
        ll::second_factor(
            &*a2.store,
            &a2.cfg.local,
            &a2.local,
            &r2,
            &code,
            recovery,
            &e2,
        )
    })
    .await;
    forget_replaced(
        app,
        matches!(r, Some(Ok((Outcome::Done { .. }, _)))),
        &ending,
    );
    match r {
        Some(Ok((Outcome::Refused(refusal), Some(again)))) => {
            let m = refusal.message();
            let text = format!(
                "{} / {}",
                lang.t(&m.ja, &m.en),
                lang.other().t(&m.ja, &m.en)
            );
            let mut resp = pages::render(
                StatusCode::UNAUTHORIZED,
                &TotpPage {
                    lang,
                    csrf: &again.csrf,
                    error: Some(&text),
                },
            );
            resp.headers_mut().insert(
                "x-samlgate-reason",
                HeaderValue::from_static(refusal.code()),
            );
            let c = app.sessions.cookie(
                steps_cookie_name(app),
                &app.sessions.seal(&again.id),
                ll::STEP_TTL_SECS,
            );
            set_cookie(&mut resp, &c);
            resp
        }
        other => {
            let user = rec.proven.user_id().to_string();
            outcome(
                app,
                lang,
                rid,
                &user,
                &rec.return_to,
                other.map(|r| r.map(|(o, _)| o)),
            )
        }
    }
}

#[derive(Template)]
#[template(path = "totp_enrol.html")]
pub(super) struct EnrolPage<'a> {
    pub lang: Lang,
    /// Where the form posts: the login step, or the settings page (by choice).
    pub action: &'a str,
    pub by_choice: bool,
    pub csrf: &'a str,
    pub qr_svg: &'a str,
    pub secret: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub(super) struct RecoveryPage<'a> {
    pub lang: Lang,
    pub codes: &'a [String],
    pub next: &'a str,
}

fn enrol_form(
    app: &App,
    lang: Lang,
    rec: &LoginSteps,
    status: StatusCode,
    error: Option<&str>,
) -> Resp {
    match ll::enrol_secret(&*app.store, rec) {
        Ok(Some((r, uri))) => {
            let secret = r
                .enrol_secret
                .as_ref()
                .map(|s| s.to_base32())
                .unwrap_or_default();
            let qr = crate::accounts::totp::qr_svg(&uri);
            let page = EnrolPage {
                lang,
                action: "/login/enrol",
                by_choice: false,
                csrf: &r.csrf,
                qr_svg: &qr,
                secret: &secret,
                error,
            };
            pages::render(status, &page)
        }
        _ => pages::redirect(StatusCode::SEE_OTHER, "/login"),
    }
}

pub fn enrol_page<B>(app: &App, req: &Request<B>) -> Resp {
    match steps_of(app, req, StepKind::EnrolTotp) {
        Some(rec) => enrol_form(app, Lang::of(req), &rec, StatusCode::OK, None),
        None => pages::redirect(StatusCode::SEE_OTHER, "/login"),
    }
}

pub async fn post_enrol(app: &std::sync::Arc<App>, req: Request<Incoming>, rid: &str) -> Resp {
    let (lang, f, rec, ending) = match step_post(app, req, StepKind::EnrolTotp, rid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let code = field(&f, "code").to_string();
    let (a2, r2, e2) = (app.clone(), rec.clone(), ending.clone());
    let r = on_hash_pool(app, move || {
        ll::enrol_confirm(&*a2.store, &a2.cfg.local, &a2.local, &r2, &code, &e2)
    })
    .await;
    forget_replaced(
        app,
        matches!(r, Some(Ok((Outcome::Done { .. }, _)))),
        &ending,
    );
    let user = rec.proven.user_id().to_string();
    match r {
        Some(Ok((Outcome::Refused(LoginRefusal::Totp(e)), _))) => {
            let m = LoginRefusal::Totp(e).message();
            let text = format!(
                "{} / {}",
                lang.t(&m.ja, &m.en),
                lang.other().t(&m.ja, &m.en)
            );
            enrol_form(app, lang, &rec, StatusCode::UNAUTHORIZED, Some(&text))
        }
        Some(Ok((o @ Outcome::Done { .. }, codes))) => {
            // The session's cookies go with the page that shows the codes once.
            let done = outcome(app, lang, rid, &user, &rec.return_to, Some(Ok(o)));
            if done.status() != StatusCode::SEE_OTHER {
                return done;
            }
            let page = RecoveryPage {
                lang,
                codes: &codes,
                next: &rec.return_to,
            };
            let mut r = pages::render(StatusCode::OK, &page);
            for c in done.headers().get_all(SET_COOKIE) {
                r.headers_mut().append(SET_COOKIE, c.clone());
            }
            r
        }
        other => outcome(
            app,
            lang,
            rid,
            &user,
            &rec.return_to,
            other.map(|r| r.map(|(o, _)| o)),
        ),
    }
}
