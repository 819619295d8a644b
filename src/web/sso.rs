//! `GET /saml/login?return_to=PATH`: SP-initiated login. Builds an AuthnRequest, binds it to
//! this browser with a sealed cookie that carries the whole request state (nothing is written
//! to the store for an anonymous visitor), and redirects to the IdP. Anonymous and costly (an
//! RSA signature), so: a per-client rate limit first, then the signature on a blocking thread
//! under `App::sign_slots`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::{HeaderValue, RETRY_AFTER, SET_COOKIE};
use hyper::{Request, StatusCode};

use super::pages::{self, Lang, Resp};
use super::App;
use crate::reason::{Reason, Refusal};
use crate::return_path::safe_return_path;
use crate::saml::authn::{self, AuthnRequest, TrackedRequest, REQUEST_TTL_SECS};

/// The cookie naming the browser's request in flight. The IdP answers with a cross-site POST,
/// which carries only `SameSite=None` cookies, and those must be `Secure`: so on https the
/// cookie is `SameSite=None; Secure`. On plain http (development, same-site IdP) it is Lax.
pub fn cookie_name(app: &App) -> &'static str {
    super::cookies::Cookie::Request.of(app)
}

pub fn request_cookie(app: &App, value: &str, max_age: i64) -> String {
    let attrs = if app.cfg.https {
        "; SameSite=None; Secure"
    } else {
        "; SameSite=Lax"
    };
    format!(
        "{}={value}; Path=/; HttpOnly; Max-Age={max_age}{attrs}",
        cookie_name(app)
    )
}

/// The unexpired requests sealed in the browser's request cookies (ours and intact only).
pub fn tracked_requests(app: &App, headers: &hyper::HeaderMap, now: i64) -> Vec<TrackedRequest> {
    let values = headers.get_all(hyper::header::COOKIE);
    crate::session::cookie_values(
        cookie_name(app),
        values.iter().filter_map(|v| v.to_str().ok()),
    )
    .into_iter()
    .filter_map(|v| authn::open(&app.sessions, v, now))
    .collect()
}

/// The `return_to` query value. nginx can only pass `$request_uri` unencoded
/// (`/login?return_to=/a?x=1&y=2`), so when `return_to=` comes first, everything after it is
/// the value; an encoded value (`%2Fa%3Fx%3D1`) is decoded. Checked by the caller.
pub fn return_to_param(query: Option<&str>) -> Option<String> {
    let q = query?;
    if let Some(rest) = q.strip_prefix("return_to=") {
        if rest.starts_with('/') {
            return Some(rest.to_string());
        }
        return Some(
            percent_encoding::percent_decode_str(rest)
                .decode_utf8()
                .ok()?
                .into_owned(),
        );
    }
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
}

pub async fn login<B>(app: &Arc<App>, req: &Request<B>, peer: SocketAddr, rid: &str) -> Resp {
    let lang = Lang::of(req);
    let client = super::client_ip(app, req.headers(), peer);
    if let Err(limited) = app.login_limiter.check(client, Instant::now()) {
        app.metrics.refused(Reason::RateLimited);
        // One line when a client starts being refused, not one per request of a flood; every
        // refusal is counted in /metrics (samlgate_logins_total, reason rate_limited).
        if limited.first {
            tracing::warn!(target: "samlgate::sso", request_id = rid, peer = %client, reason = Reason::RateLimited.code(), retry_after = limited.retry_after_secs, "SP-initiated login refused: too many from this client (further refusals until it gets through are only counted)");
        }
        let mut r = pages::refusal_page(lang, Reason::RateLimited, rid, Some("/login"));
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(limited.retry_after_secs));
        return r;
    }
    let return_to = safe_return_path(return_to_param(req.uri().query()).as_deref());
    if let Some(page) = super::outage::gate(app, lang, &return_to, rid) {
        return page;
    }
    let idp = app.idp();
    let Some(sso) = idp.sso_redirect.clone() else {
        tracing::error!(target: "samlgate::sso", request_id = rid, reason = Reason::NoSsoEndpoint.code(), "IdP metadata has no HTTP-Redirect SingleSignOnService");
        return pages::refusal_page(lang, Reason::Internal, rid, None);
    };
    let tracked = TrackedRequest {
        id: authn::new_request_id(),
        relay_handle: crate::session::random_id(),
        return_to,
        expires: chrono::Utc::now().timestamp() + REQUEST_TTL_SECS,
    };
    let url = match signed_redirect(app, sso, &tracked).await {
        Ok(u) => u,
        Err(refusal) => {
            tracing::warn!(target: "samlgate::sso", request_id = rid, peer = %client, reason = refusal.reason.code(), detail = %refusal.detail, "SP-initiated login failed");
            let mut r = pages::refusal_page(lang, refusal.reason, rid, Some("/login"));
            if refusal.reason == Reason::Busy {
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            return r;
        }
    };
    tracing::info!(target: "samlgate::sso", request_id = rid, authn_request = %tracked.id, signed = app.cfg.sign_authn_requests, "SP-initiated login");
    let mut r = pages::redirect(StatusCode::FOUND, &url);
    let c = request_cookie(app, &authn::seal(&app.sessions, &tracked), REQUEST_TTL_SECS);
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

/// The Redirect-binding URL for `t`. Signing (RSA, ~3 ms of CPU) runs on a blocking thread
/// under `App::sign_slots`, so a flood of anonymous logins queues there, not on the async
/// threads that answer `/auth/verify`; no slot within 5 s -> `busy`.
async fn signed_redirect(
    app: &Arc<App>,
    sso: String,
    t: &TrackedRequest,
) -> Result<String, Refusal> {
    let acs = app.cfg.acs_url();
    let xml = AuthnRequest {
        id: &t.id,
        destination: &sso,
        acs_url: &acs,
        issuer: &app.cfg.sp_entity_id,
        name_id_format: Some(app.cfg.name_id_format.as_str()).filter(|f| !f.is_empty()),
        force_authn: app.cfg.force_authn,
    }
    .to_xml(chrono::Utc::now());
    if !app.cfg.sign_authn_requests {
        return authn::redirect_url(&sso, &xml, &t.relay_handle, None)
            .map_err(|e| Refusal::new(Reason::Internal, format!("AuthnRequest: {e}")));
    }
    let _permit = tokio::time::timeout(Duration::from_secs(5), app.sign_slots.acquire())
        .await
        .map_err(|_| Refusal::new(Reason::Busy, "no signing slot within 5 s"))?
        .map_err(|_| Refusal::new(Reason::Internal, "signing slots closed"))?;
    let keys = app.keys.read().expect("keys lock").clone();
    let relay = t.relay_handle.clone();
    tokio::task::spawn_blocking(move || {
        authn::redirect_url(&sso, &xml, &relay, Some(&keys.active().key))
    })
    .await
    .map_err(|e| Refusal::new(Reason::Internal, format!("signing task: {e}")))?
    .map_err(|e| Refusal::new(Reason::Internal, format!("AuthnRequest signing: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_raw_and_encoded() {
        assert_eq!(
            return_to_param(Some("return_to=/a?x=1&y=2")).as_deref(),
            Some("/a?x=1&y=2")
        );
        assert_eq!(
            return_to_param(Some("return_to=%2Fa%3Fx%3D1%26y%3D2")).as_deref(),
            Some("/a?x=1&y=2")
        );
        assert_eq!(
            return_to_param(Some("lang=en&return_to=%2Fb")).as_deref(),
            Some("/b")
        );
        assert_eq!(return_to_param(Some("lang=en")), None);
        // Whatever arrives is still checked by safe_return_path.
        assert_eq!(
            safe_return_path(return_to_param(Some("return_to=//evil")).as_deref()),
            "/"
        );
        assert_eq!(
            safe_return_path(return_to_param(Some("return_to=%2F%2Fevil")).as_deref()),
            "/"
        );
    }
}
