//! `GET /saml/login?return_to=PATH`: SP-initiated login. Builds and tracks an AuthnRequest,
//! binds it to this browser with a signed cookie, and redirects to the IdP.

use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};

use super::acs::safe_return_path;
use super::pages::{self, Lang, Resp};
use super::App;
use crate::reason::Reason;
use crate::saml::authn::{self, AuthnRequest, TrackedRequest, REQUEST_TTL_SECS};

/// The cookie naming the browser's request in flight. The IdP answers with a cross-site POST,
/// which carries only `SameSite=None` cookies, and those must be `Secure`: so on https the
/// cookie is `SameSite=None; Secure`. On plain http (development, same-site IdP) it is Lax.
pub fn cookie_name(app: &App) -> &'static str {
    if app.cfg.https {
        "__Host-samlgate-req"
    } else {
        "samlgate-req"
    }
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

/// The tracked request ids the browser's request cookie names (signed by us).
pub fn request_ids(app: &App, headers: &hyper::HeaderMap) -> Vec<String> {
    app.sessions.open_cookies(cookie_name(app), headers)
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

pub fn login<B>(app: &App, req: &Request<B>, rid: &str) -> Resp {
    let lang = Lang::of(req);
    let return_to = safe_return_path(return_to_param(req.uri().query()).as_deref());
    let idp = app.idp();
    let Some(sso) = idp.sso_redirect.clone() else {
        tracing::error!(target: "samlgate::sso", request_id = rid, reason = "no_sso_endpoint", "IdP metadata has no HTTP-Redirect SingleSignOnService");
        return pages::refusal_page(lang, Reason::Internal, rid, None);
    };
    let id = authn::new_request_id();
    let tracked = TrackedRequest {
        id: id.clone(),
        relay_handle: crate::session::random_id(),
        return_to,
        expires: chrono::Utc::now().timestamp() + REQUEST_TTL_SECS,
    };
    let acs = app.cfg.acs_url();
    let xml = AuthnRequest {
        id: &id,
        destination: &sso,
        acs_url: &acs,
        issuer: &app.cfg.sp_entity_id,
        name_id_format: Some(app.cfg.name_id_format.as_str()).filter(|f| !f.is_empty()),
        force_authn: app.cfg.force_authn,
    }
    .to_xml(chrono::Utc::now());
    let keys = app.keys.read().expect("keys lock").clone();
    let key = app.cfg.sign_authn_requests.then_some(&keys.active().key);
    let url = match authn::redirect_url(&sso, &xml, &tracked.relay_handle, key) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(target: "samlgate::sso", request_id = rid, error = %e, "AuthnRequest signing failed");
            return pages::refusal_page(lang, Reason::Internal, rid, None);
        }
    };
    if let Err(e) = authn::track(&*app.store, &tracked) {
        tracing::error!(target: "samlgate::sso", request_id = rid, error = %e, "request tracking failed");
        return pages::refusal_page(lang, Reason::Internal, rid, None);
    }
    tracing::info!(target: "samlgate::sso", request_id = rid, authn_request = %id, signed = key.is_some(), "SP-initiated login");
    let mut r = pages::redirect(StatusCode::FOUND, &url);
    let c = request_cookie(app, &app.sessions.seal(&id), REQUEST_TTL_SECS);
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
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
