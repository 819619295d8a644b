//! 「パスワードを忘れた方はこちら」: `/login/forgot` (the form, and the same answer for every id)
//! and `/login/reset` (the page behind the mailed link, whose Continue leads into the forced
//! password change). A translator: [`crate::password_reset`] decides and stores.
//!
//! Without `[mail]` the forgot page tells people to contact the 事務局, who issues a one-time
//! password (`accounts reset`).

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};

use super::local::{
    csrf_cookie_name, csrf_ok, field, next_step, read_form, set_cookie, stale_form,
};
use super::pages::{self, Lang, Resp};
use super::App;
use crate::accounts::account::LinkRefusal;
use crate::accounts::Message;
use crate::password_reset as pr;
use crate::reason::Reason;

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage<'a> {
    lang: Lang,
    /// `None`: no `[mail]`, so the page says to contact the 事務局.
    csrf: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "forgot_sent.html")]
struct SentPage {
    lang: Lang,
    minutes: u64,
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    lang: Lang,
    csrf: &'a str,
    token: &'a str,
    error: Option<&'a str>,
}

fn both(lang: Lang, m: &Message) -> String {
    format!(
        "{} / {}",
        lang.t(&m.ja, &m.en),
        lang.other().t(&m.ja, &m.en)
    )
}

/// A page with a fresh CSRF token (double submit: the cookie holds it sealed).
fn with_csrf(app: &App, f: impl FnOnce(&str) -> Resp) -> Resp {
    let csrf = crate::session::random_id();
    let mut r = f(&csrf);
    let c = app
        .sessions
        .cookie(csrf_cookie_name(app), &app.sessions.seal(&csrf), 3600);
    set_cookie(&mut r, &c);
    r
}

fn forgot_form(app: &App, lang: Lang, status: StatusCode, error: Option<&Message>) -> Resp {
    if app.mailer.is_none() {
        let page = ForgotPage {
            lang,
            csrf: None,
            error: None,
        };
        return pages::render(status, &page);
    }
    let text = error.map(|m| both(lang, m));
    with_csrf(app, |csrf| {
        let page = ForgotPage {
            lang,
            csrf: Some(csrf),
            error: text.as_deref(),
        };
        pages::render(status, &page)
    })
}

pub fn forgot_page<B>(app: &App, req: &Request<B>) -> Resp {
    forgot_form(app, Lang::of(req), StatusCode::OK, None)
}

/// The form's answer is the same page whatever the id: the request runs after it, on a
/// blocking thread, so not even the answer's timing depends on the account.
pub async fn post_forgot(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    rid: &str,
) -> Resp {
    let lang = Lang::of(&req);
    let client = super::client_ip(app, req.headers(), peer);
    let cookies = app
        .sessions
        .open_cookies(csrf_cookie_name(app), req.headers());
    let (lang, f) = match read_form(req, lang, rid, "/login/forgot").await {
        Ok(x) => x,
        Err(page) => return page,
    };
    if app.mailer.is_none() {
        return forgot_form(app, lang, StatusCode::OK, None);
    }
    if !csrf_ok(&cookies, &f) {
        tracing::warn!(target: "samlgate::local", request_id = rid, peer = %client, reason = Reason::CsrfMismatch.code(), "forgot form refused");
        return forgot_form(app, lang, StatusCode::FORBIDDEN, Some(&stale_form()));
    }
    let limited = {
        let mut l = app.forgot_ip.lock().unwrap_or_else(|e| e.into_inner());
        l.allow(client, std::time::Instant::now())
    };
    if let Err(wait) = limited {
        app.metrics.refused(Reason::RateLimited);
        tracing::warn!(target: "samlgate::local", request_id = rid, peer = %client, reason = Reason::RateLimited.code(), "password reset request refused: too many from this client");
        let mut r = pages::refusal_page(lang, Reason::RateLimited, rid, Some("/login/forgot"));
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait.max(1)));
        return r;
    }
    let user_id: String = field(&f, "user_id").trim().chars().take(64).collect();
    let (a2, rid2) = (app.clone(), rid.to_string());
    // Bounded like everything else a request starts: a spray from many addresses queues no
    // more than this many lookups; beyond it the request is dropped (the page is the same).
    let Ok(slot) = REQUEST_SLOTS.try_acquire() else {
        tracing::warn!(target: "samlgate::local", request_id = rid, reason = Reason::Busy.code(), "password reset request dropped: too many in progress");
        return sent_page(app, lang);
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let now = chrono::Utc::now().timestamp();
        let r = pr::request(
            &*a2.store,
            &a2.cfg.local,
            a2.mailer.as_ref(),
            &a2.cfg.public_url,
            &user_id,
            now,
        );
        match r {
            Ok(r) => {
                tracing::info!(target: "samlgate::local", request_id = rid2, outcome = r.code(), "password reset request")
            }
            Err(e) => {
                tracing::error!(target: "samlgate::local", request_id = rid2, reason = Reason::StoreUnavailable.code(), error = %e, "password reset request: store")
            }
        }
    });
    sent_page(app, lang)
}

/// Reset requests being looked up at once (each a few store reads and one write).
static REQUEST_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// The answer every id gets.
fn sent_page(app: &App, lang: Lang) -> Resp {
    let page = SentPage {
        lang,
        minutes: app.cfg.local.reset.link_ttl_secs.div_ceil(60),
    };
    pages::render(StatusCode::OK, &page)
}

/// The token of `/login/reset?token=...`.
fn token_param<B>(req: &Request<B>) -> String {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.chars().take(128).collect())
        .unwrap_or_default()
}

fn invalid_link(lang: Lang, why: &LinkRefusal) -> Resp {
    let text = both(lang, &why.message());
    let page = ResetPage {
        lang,
        csrf: "",
        token: "",
        error: Some(&text),
    };
    let mut r = pages::render(StatusCode::GONE, &page);
    r.headers_mut()
        .insert("x-samlgate-reason", HeaderValue::from_static(why.code()));
    r
}

/// Keeps the token out of other sites' logs (the page has no outside links, but a browser
/// extension or a later navigation might send a Referer).
fn no_referrer(mut r: Resp) -> Resp {
    r.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

/// The page behind the mailed link: says whether it still works, and offers Continue. It
/// only reads, so a mail scanner that opens the link uses nothing up.
pub async fn reset_page(app: &Arc<App>, req: Request<Incoming>, rid: &str) -> Resp {
    let lang = Lang::of(&req);
    let token = token_param(&req);
    let (a2, t2) = (app.clone(), token.clone());
    let r = tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().timestamp();
        pr::peek(&*a2.store, &a2.cfg.local, &a2.local, &t2, now)
    })
    .await;
    let resp = match r {
        Ok(Ok(Ok(()))) => with_csrf(app, |csrf| {
            let page = ResetPage {
                lang,
                csrf,
                token: &token,
                error: None,
            };
            pages::render(StatusCode::OK, &page)
        }),
        Ok(Ok(Err(why))) => {
            tracing::info!(target: "samlgate::local", request_id = rid, reason = why.code(), "reset link refused");
            invalid_link(lang, &why)
        }
        Ok(Err(e)) => {
            tracing::error!(target: "samlgate::local", request_id = rid, reason = Reason::StoreUnavailable.code(), error = %e, "reset link: store");
            pages::refusal_page(lang, Reason::StoreUnavailable, rid, Some("/login/forgot"))
        }
        Err(_) => pages::refusal_page(lang, Reason::Internal, rid, Some("/login/forgot")),
    };
    no_referrer(resp)
}

/// Continue: consumes the link and starts the login at its next step (TOTP or the change).
pub async fn post_reset(app: &Arc<App>, req: Request<Incoming>, rid: &str) -> Resp {
    let lang = Lang::of(&req);
    let cookies = app
        .sessions
        .open_cookies(csrf_cookie_name(app), req.headers());
    let (lang, f) = match read_form(req, lang, rid, "/login/forgot").await {
        Ok(x) => x,
        Err(page) => return page,
    };
    if !csrf_ok(&cookies, &f) {
        tracing::warn!(target: "samlgate::local", request_id = rid, reason = Reason::CsrfMismatch.code(), "reset form refused");
        let why = LinkRefusal::Invalid;
        let mut r = invalid_link(lang, &why);
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            "x-samlgate-reason",
            HeaderValue::from_static(Reason::CsrfMismatch.code()),
        );
        return no_referrer(r);
    }
    let token: String = field(&f, "token").chars().take(128).collect();
    let a2 = app.clone();
    let r = tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().timestamp();
        pr::redeem(&*a2.store, &a2.cfg.local, &a2.local, &token, now)
    })
    .await;
    match r {
        Ok(Ok(Ok(rec))) => {
            tracing::info!(target: "samlgate::local", request_id = rid, local_user = %rec.proven.user_id(), "reset link redeemed");
            let mut resp = next_step(app, &rec);
            // Leave the page's language with the next step (the change form carries it on).
            if lang == Lang::En {
                if let Some(l) = resp.headers().get("location").cloned() {
                    let to = format!("{}?lang=en", l.to_str().unwrap_or("/login/change"));
                    if let Ok(v) = HeaderValue::from_str(&to) {
                        resp.headers_mut().insert("location", v);
                    }
                }
            }
            no_referrer(resp)
        }
        Ok(Ok(Err(why))) => {
            tracing::info!(target: "samlgate::local", request_id = rid, reason = why.code(), "reset link refused");
            no_referrer(invalid_link(lang, &why))
        }
        Ok(Err(e)) => {
            tracing::error!(target: "samlgate::local", request_id = rid, reason = Reason::StoreUnavailable.code(), error = %e, "reset link: store");
            pages::refusal_page(lang, Reason::StoreUnavailable, rid, Some("/login/forgot"))
        }
        Err(_) => pages::refusal_page(lang, Reason::Internal, rid, Some("/login/forgot")),
    }
}
