//! Using a session: forward-auth (`/auth/verify`), `/auth/userinfo`, logout, and the two pages
//! a browser sees around a login (`/login`, `/`).

use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};

use std::sync::Arc;

pub use super::identity_headers::{encode_header_value, identity_headers, IDENTITY_HEADERS};
use super::pages::{self, Lang, Resp};
use super::session_cache::Live;
use super::App;
use crate::identity::policy;
use crate::reason::Reason;
use crate::sessions::{self, Which, Why};
use crate::store::{SessionRecord, StoreError};

/// Only idle-time updates older than this are written, so `/auth/verify` is a read.
const TOUCH_EVERY_SECS: i64 = 60;

/// The live session behind the request's cookie, if any; a store error counts as none.
/// For pages whose "none" is itself a refusal or a login page; `/auth/verify`, userinfo, `/`
/// and the proxy use [`find_session`], so an outage answers 503, not "log in".
pub fn live_session<B>(app: &App, req: &Request<B>) -> Option<Arc<Live>> {
    find_session(app, req).ok().flatten()
}

/// The live session behind the request's cookie: `Ok(None)` when there is none, `Err` when
/// the store could not say (fail closed: the caller answers 503, never 401 or 200).
///
/// Security property: returns a session only if a cookie carries a token this gateway sealed,
/// the record still exists (not logged out or revoked), it is within its absolute and idle
/// limits, and the category policy still admits the profile. The answer may come from
/// [`super::session_cache`] only while no restricting write has happened since it was read.
pub fn find_session<B>(app: &App, req: &Request<B>) -> Result<Option<Arc<Live>>, StoreError> {
    let now = chrono::Utc::now().timestamp();
    let idle = app.cfg.session.idle_minutes as i64 * 60;
    // Refresh often enough that an idle window of one minute still works; true when written.
    let touch_every = TOUCH_EVERY_SECS.min(idle / 2);
    let touch = |id: &str, last_seen: i64| {
        now - last_seen >= touch_every && app.store.session_touch(id, now).is_ok()
    };
    for id in session_ids(app, req.headers()) {
        // Read before anything else: what is read after it is at least this fresh.
        let generation = app.store.generation();
        if let Some((facts, live)) = app.live.get(&id, generation) {
            let rec = &live.rec;
            if rec.ends_at(idle) > now && admits(app, &facts, rec) {
                if touch(&id, rec.last_seen) {
                    app.live.touched(&id, now);
                }
                return Ok(Some(live));
            }
            // Anything but a yes is decided from the store below.
        }
        let Some(mut rec) = app.store.session_get(&id)? else {
            continue;
        };
        if rec.ends_at(idle) <= now {
            let _ = end(app, Which::Session(&id), Why::Expired);
            continue;
        }
        // The category gate runs on every use of a session, not only at login.
        let facts = policy::gate_facts(&*app.store, &rec.profile)?;
        if !admits(app, &facts, &rec) {
            continue;
        }
        if touch(&id, rec.last_seen) {
            rec.last_seen = now;
        }
        let live = Arc::new(Live::new(rec));
        app.live.put(&id, generation, facts, live.clone());
        return Ok(Some(live));
    }
    Ok(None)
}

/// The answer while the store cannot say whether a session is live: 503 `store_unavailable`
/// (as `web::store_gate` gives once the health flags have caught up), one log line.
pub fn store_unavailable(lang: Lang, rid: &str, e: &StoreError) -> Resp {
    tracing::error!(target: "samlgate::session", request_id = rid, reason = Reason::StoreUnavailable.code(), error = %e, "session lookup: store");
    pages::refusal_page(lang, Reason::StoreUnavailable, rid, None)
}

/// The category policy and G-MIS blocks gate SAML sessions only: an ID/password login is the
/// 事務局's decision (disabling its account ends its sessions).
fn admits(app: &App, facts: &policy::GateFacts, rec: &SessionRecord) -> bool {
    rec.is_local_login() || facts.allows(&app.cfg.policy, &rec.profile)
}

/// Puts the session's identity on an outgoing header map (the `/auth/verify` answer or the
/// proxied request): the identity headers, `X-Samlgate-Local-User`, and the JWT when tokens
/// are on. The caller has already removed whatever a client sent under these names.
pub fn insert_identity(app: &App, live: &Live, h: &mut hyper::HeaderMap) {
    for (k, v) in &live.headers {
        h.insert(k, v.clone());
    }
    if let Some(jwt) = app.tokens.as_ref().and_then(|t| t.token_for(&live.rec)) {
        if let Ok(v) = HeaderValue::from_str(&jwt) {
            h.insert("x-samlgate-jwt", v);
        }
    }
}

/// [`sessions::end`] with this process's store and token cache. (Flushing is the caller's.)
pub fn end(app: &App, which: Which<'_>, why: Why) -> Result<usize, StoreError> {
    sessions::end(&*app.store, app.tokens.as_ref(), which, why)
}

/// Ids of the sessions named by the request's (valid, ours) cookies, live or not.
pub fn session_ids(app: &App, headers: &hyper::HeaderMap) -> Vec<String> {
    app.sessions.open_cookies(app.sessions.cookie_name, headers)
}

pub fn verify<B>(app: &App, req: &Request<B>, rid: &str) -> Resp {
    match find_session(app, req) {
        Err(e) => {
            app.metrics.verify(false);
            store_unavailable(Lang::of(req), rid, &e)
        }
        Ok(Some(live)) => {
            app.metrics.verify(true);
            let mut r = pages::text(StatusCode::OK, "text/plain", "");
            insert_identity(app, &live, r.headers_mut());
            r
        }
        Ok(None) => {
            app.metrics.verify(false);
            // `?rd=1` (Traefik ForwardAuth, Caddy forward_auth): send the browser to the login
            // page with the original URI, which each proxy passes in its own header. nginx
            // auth_request understands only 2xx/401/403, so without rd it stays 401.
            let rd = req.uri().query().is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "rd" && v == "1")
            });
            if rd {
                let original = ["x-forwarded-uri", "x-original-uri"]
                    .iter()
                    .find_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()));
                let ret = crate::return_path::safe_return_path(original);
                let enc: String = form_urlencoded::byte_serialize(ret.as_bytes()).collect();
                return pages::redirect(StatusCode::FOUND, &format!("/login?return_to={enc}"));
            }
            pages::text(StatusCode::UNAUTHORIZED, "text/plain", "")
        }
    }
}

pub fn userinfo<B>(app: &App, req: &Request<B>, rid: &str) -> Resp {
    match find_session(app, req) {
        Err(e) => store_unavailable(Lang::of(req), rid, &e),
        Ok(Some(live)) => {
            let rec = &live.rec;
            let p = &rec.profile;
            let body = serde_json::json!({
                "user": p.account_id,
                "email": p.email,
                "category": p.category,
                "facility_code": p.facility_code,
                "facility_name": p.facility_name,
                "display_name": p.display_name,
                "local_user": rec.local_user_id,
            });
            pages::text(StatusCode::OK, "application/json", body.to_string())
        }
        Ok(None) => pages::text(
            StatusCode::UNAUTHORIZED,
            "application/json",
            "{\"error\":\"no session\"}",
        ),
    }
}

/// Ends the local session (record deleted, cookie cleared) and shows the login page link.
/// Ends the local session first (record deleted durably, cookie cleared), then, when the
/// IdP has an SLO endpoint, sends the browser there with a signed LogoutRequest.
pub fn logout<B>(app: &App, req: &Request<B>, rid: &str) -> Resp {
    let mut ended: Option<SessionRecord> = None;
    for id in session_ids(app, req.headers()) {
        if let Ok(Some(rec)) = app.store.session_get(&id) {
            tracing::info!(target: "samlgate::session", request_id = rid, account_id = %rec.profile.account_id, "logout");
            ended = Some(rec);
        }
        let _ = end(app, Which::Session(&id), Why::Logout);
    }
    let mut r = ended
        .and_then(|rec| super::slo::start_idp_logout(app, &rec, rid))
        .unwrap_or_else(|| super::slo::logged_out_page(Lang::of(req), rid, false));
    if let Ok(v) = HeaderValue::from_str(&app.sessions.clear_cookie()) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

/// `/` without an upstream: who is signed in, or the login page.
pub fn home<B>(app: &App, req: &Request<B>, rid: &str) -> Resp {
    let lang = Lang::of(req);
    match find_session(app, req) {
        Err(e) => store_unavailable(lang, rid, &e),
        Ok(Some(live)) => pages::render(
            StatusCode::OK,
            &pages::HomePage {
                lang,
                profile: &live.rec.profile,
            },
        ),
        Ok(None) => pages::redirect(StatusCode::SEE_OTHER, "/login"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_ascii_percent_encoded() {
        assert_eq!(
            encode_header_value("病院").to_str().unwrap(),
            "%E7%97%85%E9%99%A2"
        );
        assert_eq!(encode_header_value("a b%c").to_str().unwrap(), "a b%25c");
        assert_eq!(encode_header_value("x\r\ny").to_str().unwrap(), "x%0D%0Ay");
    }
}
