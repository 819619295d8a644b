//! The consent page (同意画面), `GET/POST /consent`.
//!
//! A verified login that needs consent is parked server-side as a [`PendingLogin`] (10 minutes)
//! and the browser gets a signed cookie naming it. The form carries a CSRF token bound to that
//! pending login. A decision consumes the pending login exactly once (guarded delete in the
//! same atomic batch as the decision and its audit line), so a double submit or a replayed
//! form changes nothing.

use askama::Template;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};

use super::cookies::Cookie;
use super::login as web_login;
use super::pages::{self, Lang, Resp};
use super::App;
use crate::audit::AuditAction;
use crate::identity::consent::{
    self, ConsentDecision, ConsentState, PendingLogin, PENDING_TTL_SECS,
};
use crate::identity::{now_rfc3339, put, Profile};
use crate::login::{self, Decision, Login};
use crate::reason::{Reason, Refusal};
use crate::store::{Commit, Table};

/// Which consent this is: the page's wording follows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsentCase {
    /// No earlier decision: the first login from G-MIS.
    First,
    /// An approved application links the G-MIS account to an existing account.
    Linking(String),
    /// Accepted before, on an older version of the document.
    NewVersion { previous: String },
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub lang: Lang,
    pub profile: &'a Profile,
    pub csrf: &'a str,
    pub version: &'a str,
    pub case: ConsentCase,
    /// The rendered `[consent] document` (safe HTML, identity::document), may be empty.
    pub document: &'a str,
    pub changes: &'a str,
    pub privacy_url: &'a str,
}

/// 「同意しない」 pressed: what happens and how to undo it, before anything is written.
#[derive(Template)]
#[template(path = "consent_reject.html")]
pub struct RejectConfirmPage<'a> {
    pub lang: Lang,
    pub profile: &'a Profile,
    pub csrf: &'a str,
}

/// After 同意しない the browser keeps a signed note of the account (an hour), so a reload or
/// Back shows the blocked state instead of "log in again".
fn decided_cookie_name(app: &App) -> &'static str {
    Cookie::Decided.of(app)
}

const DECIDED_PURPOSE: &str = "consent-decided";

fn decided_account(app: &App, headers: &hyper::HeaderMap) -> Option<String> {
    let values = headers.get_all(hyper::header::COOKIE);
    crate::session::cookie_values(
        decided_cookie_name(app),
        values.iter().filter_map(|v| v.to_str().ok()),
    )
    .into_iter()
    .filter_map(|t| app.sessions.open_data(DECIDED_PURPOSE, t))
    .find_map(|b| String::from_utf8(b).ok())
}

/// No pending login: a signed-in user (Back after 同意する) goes home, a browser that just
/// said 同意しない sees the account's blocked state, anyone else the expired page.
fn no_pending<B>(app: &App, req: &Request<B>, lang: Lang, rid: &str) -> Resp {
    if super::auth::live_session(app, req).is_some() {
        return pages::redirect(StatusCode::SEE_OTHER, "/");
    }
    if let Some(gmis) = decided_account(app, req.headers()) {
        if let Ok(Some(c)) = consent::get(&*app.store, &gmis) {
            if c.blocks() {
                return web_login::blocked_page(lang, c.decision, rid);
            }
        }
    }
    expired_page(lang, rid)
}

fn cookie_name(app: &App) -> &'static str {
    Cookie::Consent.of(app)
}

fn pending_cookie(app: &App, value: &str, max_age: i64) -> String {
    app.sessions.cookie(cookie_name(app), value, max_age)
}

/// Parks the login and sends the browser to the consent page.
pub fn start(
    app: &App,
    login: Login,
    link_to: Option<String>,
    _lang: Lang,
) -> Result<Resp, Refusal> {
    let pending = PendingLogin {
        id: crate::session::random_id(),
        csrf: crate::session::random_id(),
        profile: login.profile,
        name_id: login.name_id,
        name_id_format: login.name_id_format,
        session_index: login.session_index,
        session_not_on_or_after: login.session_not_on_or_after,
        relay_state: login.relay_state,
        assertion_id: login.assertion_id,
        link_to,
        expires: chrono::Utc::now().timestamp() + PENDING_TTL_SECS,
    };
    let park = Commit {
        writes: vec![put(Table::Pending, &pending.id, &pending)],
        ..Commit::default()
    };
    app.store.commit(&park).map_err(web_login::store_refusal)?;
    let mut r = pages::redirect(StatusCode::SEE_OTHER, "/consent");
    let c = pending_cookie(app, &app.sessions.seal(&pending.id), PENDING_TTL_SECS);
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    Ok(r)
}

/// The pending login named by the request's consent cookie, if it is ours and alive.
fn pending_of<B>(app: &App, req: &Request<B>) -> Option<PendingLogin> {
    app.sessions
        .open_cookies(cookie_name(app), req.headers())
        .into_iter()
        .find_map(|id| consent::pending_get(&*app.store, &id).ok().flatten())
}

fn expired_page(lang: Lang, rid: &str) -> Resp {
    pages::refusal_page(lang, Reason::ConsentExpired, rid, Some("/login"))
}

pub fn get_consent<B>(app: &App, req: &Request<B>, rid: &str) -> Resp {
    let lang = Lang::of(req);
    let Some(p) = pending_of(app, req) else {
        return no_pending(app, req, lang, rid);
    };
    let cfg = &app.cfg.consent;
    let case = match (&p.link_to, consent::get(&*app.store, &p.profile.account_id)) {
        (Some(existing), _) => ConsentCase::Linking(existing.clone()),
        (None, Ok(Some(c)))
            if c.decision == ConsentDecision::Accepted && c.version != cfg.version =>
        {
            ConsentCase::NewVersion {
                previous: c.version,
            }
        }
        _ => ConsentCase::First,
    };
    let page = ConsentPage {
        lang,
        profile: &p.profile,
        csrf: &p.csrf,
        version: &cfg.version,
        case,
        document: &cfg.loaded.html,
        changes: &cfg.loaded.changes_html,
        privacy_url: &cfg.privacy_url,
    };
    pages::render(StatusCode::OK, &page)
}

pub async fn post_consent(app: &App, req: Request<Incoming>, rid: &str) -> Resp {
    let lang = Lang::of(&req);
    let pending = pending_of(app, &req);
    let Some(p) = pending else {
        return no_pending(app, &req, lang, rid);
    };
    let headers = req.headers().clone();
    let body: Bytes = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return pages::refusal_page(lang, Reason::BadRequest, rid, None),
    };
    let mut decision = None;
    let mut csrf = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "decision" => decision = Some(v.into_owned()),
            "csrf" => csrf = Some(v.into_owned()),
            _ => {}
        }
    }
    let csrf_ok = csrf.is_some_and(|c| constant_time_eq(c.as_bytes(), p.csrf.as_bytes()));
    if !csrf_ok {
        tracing::warn!(target: "samlgate::consent", request_id = rid, reason = Reason::CsrfMismatch.code(), account_id = %p.profile.account_id, "consent form refused");
        return pages::refusal_page(lang, Reason::BadRequest, rid, None);
    }
    let accept = match decision.as_deref() {
        Some("accept") => true,
        Some("reject_confirmed") => false,
        Some("reject") => {
            tracing::info!(target: "samlgate::consent", request_id = rid, account_id = %p.profile.account_id, "consent reject asked to confirm");
            let page = RejectConfirmPage {
                lang,
                profile: &p.profile,
                csrf: &p.csrf,
            };
            return pages::render(StatusCode::OK, &page);
        }
        _ => return pages::refusal_page(lang, Reason::BadRequest, rid, None),
    };
    let old = super::auth::session_ids(app, &headers);
    match decide(app, &p, accept, lang, rid, old) {
        Ok(mut resp) => {
            if let Ok(v) = HeaderValue::from_str(&pending_cookie(app, "", 0)) {
                resp.headers_mut().append(SET_COOKIE, v);
            }
            if !accept {
                let token = app
                    .sessions
                    .seal_data(DECIDED_PURPOSE, p.profile.account_id.as_bytes());
                let c = app.sessions.cookie(decided_cookie_name(app), &token, 3600);
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(SET_COOKIE, v);
                }
            }
            resp
        }
        Err(ConsentError::AlreadyDecided) => {
            tracing::warn!(target: "samlgate::consent", request_id = rid, reason = Reason::BadRequest.code(), detail = "already decided", account_id = %p.profile.account_id, "consent failed");
            expired_page(lang, rid)
        }
        Err(ConsentError::Refused(r)) => {
            tracing::warn!(target: "samlgate::consent", request_id = rid, reason = r.reason.code(), detail = %r.detail, account_id = %p.profile.account_id, "consent failed");
            pages::refusal_page(lang, r.reason, rid, None)
        }
    }
}

/// Why a consent post did not record a decision.
enum ConsentError {
    /// The pending login was consumed already (a double submit, a replayed form): the page
    /// has expired for this browser.
    AlreadyDecided,
    Refused(Refusal),
}

impl From<Refusal> for ConsentError {
    fn from(r: Refusal) -> Self {
        ConsentError::Refused(r)
    }
}

/// The consent record and its audit line for this decision.
fn decision_writes(
    app: &App,
    p: &PendingLogin,
    accept: bool,
) -> Result<(AuditAction, Vec<crate::store::Write>), Refusal> {
    let version = &app.cfg.consent.version;
    let state = ConsentState {
        gmis_id: p.profile.account_id.clone(),
        decision: if accept {
            ConsentDecision::Accepted
        } else {
            ConsentDecision::Rejected
        },
        version: version.clone(),
        at: now_rfc3339(),
        detail: format!("assertion {}", p.assertion_id),
        // The verified profile, so the secretariat can contact a person who said no.
        profile: (!accept).then(|| p.profile.clone()),
    };
    let action = if accept {
        AuditAction::ConsentAccept
    } else {
        AuditAction::ConsentReject
    };
    let audit = crate::audit::entry(
        &*app.store,
        &format!("user:{}", p.profile.account_id),
        action,
        &p.profile.account_id,
        "",
        Some(version),
    )
    .map_err(web_login::store_refusal)?;
    Ok((action, vec![consent::write(&state), audit]))
}

/// Consumes the pending login, alone: of two racing submits exactly one goes on.
fn consume_pending(app: &App, p: &PendingLogin) -> Result<(), ConsentError> {
    let store = &*app.store;
    let key = p.id.as_bytes();
    let read = store
        .get_versioned(Table::Pending, key)
        .map_err(web_login::store_refusal)?;
    if read.value.is_none() {
        return Err(ConsentError::AlreadyDecided);
    }
    let consume = (Table::Pending, key.to_vec(), None);
    if !store
        .commit(&Commit::guarded(&read, vec![consume]))
        .map_err(web_login::store_refusal)?
    {
        return Err(ConsentError::AlreadyDecided);
    }
    Ok(())
}

/// Records the decision atomically with its audit line, after consuming the pending login.
fn decide(
    app: &App,
    p: &PendingLogin,
    accept: bool,
    lang: Lang,
    rid: &str,
    replaces: Vec<String>,
) -> Result<Resp, ConsentError> {
    let (action, writes) = decision_writes(app, p, accept)?;
    consume_pending(app, p)?;
    // The account may have changed while the page was open (a secretariat block, a revoked or
    // pending application): decide again on a fresh snapshot, and commit guarded by it.
    let admitted = match login::admit(&*app.store, &app.cfg, Login::resumed(p, replaces))
        .map_err(web_login::login_refusal)?
    {
        Decision::Blocked(by) => return Ok(web_login::blocked_page(lang, by, rid)),
        Decision::NeedsApplication(need, _) => {
            return Ok(web_login::application_page(
                app, lang, need, &p.profile, rid,
            ))
        }
        Decision::NeedsConsent(a) | Decision::Proceed(a) => a,
    };
    // The page named the link the user agreed to; a revoked or corrected application since
    // then is a different agreement: start over.
    if admitted.link_to != p.link_to {
        return Err(ConsentError::Refused(Refusal::new(
            Reason::AccountChanged,
            format!(
                "the consent page offered link_to {}, the application now names {}",
                p.link_to.as_deref().unwrap_or("-"),
                admitted.link_to.as_deref().unwrap_or("-")
            ),
        )));
    }
    tracing::info!(target: "samlgate::consent", request_id = rid, account_id = %p.profile.account_id, decision = action.name(), version = %app.cfg.consent.version, "consent decision");
    if accept {
        return Ok(web_login::finish(app, admitted, writes)?);
    }
    let commit = Commit {
        expect: admitted.account.rows.expectations(),
        writes,
        ..Commit::default()
    };
    if !app
        .store
        .commit(&commit)
        .map_err(web_login::store_refusal)?
    {
        return Err(ConsentError::Refused(Refusal::new(
            Reason::BadRequest,
            "account state changed meanwhile",
        )));
    }
    tracing::warn!(target: "samlgate::consent", request_id = rid, account_id = %p.profile.account_id, display_name = %p.profile.display_name, facility = %p.profile.facility_name, "consent rejected: SSO blocked; the secretariat should contact the person (samlgate consent show)");
    Ok(web_login::blocked_page(
        lang,
        ConsentDecision::Rejected,
        rid,
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
