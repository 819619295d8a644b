//! `GET/POST /saml/slo` (the IdP's LogoutRequest, or its LogoutResponse to ours) and the
//! SP-initiated half of `/logout`.
//!
//! IdP-initiated: a signed LogoutRequest ends every session of its NameID (narrowed to the
//! SessionIndex values it names), and is answered with a signed LogoutResponse. It does not
//! depend on our session cookie, which a cross-site POST would not carry (SameSite=Lax).

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;

use super::pages::{self, Lang, Resp};
use super::App;
use crate::saml::authn::{self, TrackedRequest, REQUEST_TTL_SECS};
use crate::saml::idp::IdpMetadata;
use crate::saml::slo::{self, LogoutRequestIn, LogoutRequestOut, SloError, SloMessage};
use crate::sessions::{self, Which, Why};
use crate::store::{ReplayCheck, SessionRecord};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

fn slo_page(
    lang: Lang,
    status: StatusCode,
    title: (&str, &str),
    msg: (&str, &str),
    code: &'static str,
    rid: &str,
) -> Resp {
    let page = pages::ErrorPage {
        lang,
        title: lang.t(title.0, title.1),
        message: lang.t(msg.0, msg.1),
        other: lang.other().t(msg.0, msg.1),
        code,
        request_id: rid,
        action_href: Some("/login"),
        action_label: lang.t("ログイン画面へ", "Go to the login page"),
        // "Logged out" is news, not a warning.
        success: code.is_empty(),
    };
    let mut r = pages::render(status, &page);
    if !code.is_empty() {
        r.headers_mut()
            .insert("x-samlgate-reason", HeaderValue::from_static(code));
    }
    r
}

/// `gmis_closed`: whether the G-MIS session ended too (a completed single logout); else the
/// page says it is still open.
pub fn logged_out_page(lang: Lang, rid: &str, gmis_closed: bool) -> Resp {
    let msg = if gmis_closed {
        (
            "医療情報ネットとG-MISからログアウトしました。",
            "You have been logged out of the Medical Information Net and of G-MIS.",
        )
    } else {
        (
            "医療情報ネットからログアウトしました。G-MISへのログインはまだ続いています。共用の端末では、G-MISの画面でもログアウトするか、ブラウザを閉じてください。",
            "You have been logged out of the Medical Information Net. You are still logged in to G-MIS: on a shared computer, log out in G-MIS as well or close the browser.",
        )
    };
    slo_page(
        lang,
        StatusCode::OK,
        ("ログアウトしました", "You are logged out"),
        msg,
        "",
        rid,
    )
}

fn refused(lang: Lang, e: &SloError, rid: &str) -> Resp {
    let code = match e {
        SloError::Signature(_) => crate::reason::Reason::SloSignatureInvalid.code(),
        SloError::Malformed(_) => crate::reason::Reason::SloBadRequest.code(),
        SloError::Invalid(_) => crate::reason::Reason::SloRefused.code(),
    };
    tracing::warn!(target: "samlgate::slo", request_id = rid, reason = code, detail = %e, "logout message refused");
    slo_page(
        lang,
        StatusCode::BAD_REQUEST,
        (
            "ログアウト要求を処理できませんでした",
            "The logout message was refused",
        ),
        (
            "ログアウト要求を確認できませんでした。",
            "The logout message could not be verified.",
        ),
        code,
        rid,
    )
}

pub async fn handle(app: &App, req: Request<Incoming>, rid: &str) -> Resp {
    let lang = Lang::of(&req);
    let idp = app.idp();
    let (xml, relay) = match read_message(app, req, &idp).await {
        Ok(m) => m,
        Err(e) => return refused(lang, &e, rid),
    };
    match slo::parse(&xml) {
        Ok(SloMessage::Request(r)) => idp_logout(app, &idp, r, relay, lang, rid),
        Ok(SloMessage::Response(r)) => logout_response(app, &idp, &r, lang, rid),
        Err(e) => refused(lang, &e, rid),
    }
}

/// The verified message (XML) and its RelayState: from the Redirect binding's query (the
/// RelayState the signature covered), or from a POSTed form.
async fn read_message(
    app: &App,
    req: Request<Incoming>,
    idp: &Arc<IdpMetadata>,
) -> Result<(String, Option<String>), SloError> {
    if req.method() == Method::GET {
        let raw = req.uri().query().unwrap_or("").to_string();
        let m = slo::verify_redirect(&raw, idp, app.cfg.allow_sha1)?;
        return Ok((m.xml, m.relay_state));
    }
    let body = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|_| SloError::Malformed("body too large".into()))?
        .to_bytes();
    let mut msg = None;
    let mut relay = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "SAMLRequest" | "SAMLResponse" => msg = Some(v.into_owned()),
            "RelayState" => relay = Some(v.into_owned()),
            _ => {}
        }
    }
    let msg = msg.ok_or_else(|| SloError::Malformed("no SAML message".into()))?;
    let (idp2, sha1) = (idp.clone(), app.cfg.allow_sha1);
    match tokio::task::spawn_blocking(move || slo::verify_post(&msg, &idp2, sha1)).await {
        Ok(r) => r.map(|x| (x, relay)),
        Err(_) => Err(SloError::Invalid("verification task failed".into())),
    }
}

/// The IdP's LogoutResponse to our LogoutRequest (SP-initiated logout, second half).
fn logout_response(
    app: &App,
    idp: &IdpMetadata,
    r: &slo::LogoutResponseIn,
    lang: Lang,
    rid: &str,
) -> Resp {
    if r.issuer != idp.entity_id {
        return refused(
            lang,
            &SloError::Invalid(format!("Issuer {:?}", r.issuer)),
            rid,
        );
    }
    let now = chrono::Utc::now().timestamp();
    let tracked = r
        .in_response_to
        .as_deref()
        .and_then(|id| authn::lookup(&*app.store, id, now).ok().flatten());
    let Some(t) = tracked.filter(|t| authn::consume(&*app.store, t).unwrap_or(false)) else {
        return refused(
            lang,
            &SloError::Invalid("LogoutResponse to no request of ours".into()),
            rid,
        );
    };
    tracing::info!(target: "samlgate::slo", request_id = rid, logout_request = %t.id, idp_status = ?r.status, "single logout completed");
    if r.status.as_deref() == Some(SUCCESS) {
        return logged_out_page(lang, rid, true);
    }
    slo_page(
        lang,
        StatusCode::OK,
        ("ログアウトしました", "You are logged out"),
        (
            "医療情報ネットからはログアウトしました。G-MISのログアウトは完了していない可能性があります。ブラウザを閉じてください。",
            "You are logged out of the Medical Information Net. G-MIS may not have logged you out; please close the browser.",
        ),
        crate::reason::Reason::SloPartial.code(),
        rid,
    )
}

/// Issuer, Destination, ID, NameID, validity window and replay of an IdP's LogoutRequest.
fn check_logout_request(
    app: &App,
    idp: &IdpMetadata,
    r: &LogoutRequestIn,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), SloError> {
    let skew = chrono::Duration::seconds(app.cfg.clock_skew_seconds);
    if r.issuer != idp.entity_id {
        return Err(SloError::Invalid(format!(
            "Issuer: expected {:?}, received {:?}",
            idp.entity_id, r.issuer
        )));
    }
    if let Some(d) = &r.destination {
        if *d != app.cfg.slo_url() {
            return Err(SloError::Invalid(format!(
                "Destination: expected {:?}, received {d:?}",
                app.cfg.slo_url()
            )));
        }
    }
    if r.id.is_empty() || r.name_id.is_empty() {
        return Err(SloError::Malformed("no ID or NameID".into()));
    }
    if let Some(t) = r.not_on_or_after {
        if t + skew <= now {
            return Err(SloError::Invalid(format!("expired: NotOnOrAfter {t}")));
        }
    }
    if let Some(t) = r.issue_instant {
        if t > now + skew
            || t + chrono::Duration::seconds(app.cfg.max_issue_delay_seconds) + skew < now
        {
            return Err(SloError::Invalid(format!(
                "IssueInstant {t} outside the window"
            )));
        }
    } else {
        return Err(SloError::Malformed("no IssueInstant".into()));
    }
    let key = format!("l\u{0}{}\u{0}{}", idp.entity_id, r.id);
    let until =
        (now + chrono::Duration::seconds(app.cfg.max_issue_delay_seconds) + skew * 2).timestamp();
    match app
        .store
        .replay_check_and_record(&key, until, now.timestamp())
    {
        Ok(ReplayCheck::Fresh) => Ok(()),
        Ok(ReplayCheck::Replayed) => Err(SloError::Invalid("LogoutRequest ID already used".into())),
        Err(e) => Err(SloError::Invalid(format!("replay cache: {e}"))),
    }
}

fn idp_logout(
    app: &App,
    idp: &IdpMetadata,
    r: LogoutRequestIn,
    relay: Option<String>,
    lang: Lang,
    rid: &str,
) -> Resp {
    let now = chrono::Utc::now();
    if let Err(e) = check_logout_request(app, idp, &r, now) {
        return refused(lang, &e, rid);
    }
    // Fail closed: a logout we could not look up (or carry out) is not reported as done.
    let which = Which::IdpSession {
        name_id: &r.name_id,
        session_indexes: &r.session_indexes,
    };
    let ended = match sessions::end(&*app.store, app.tokens.as_ref(), which, Why::SingleLogout) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(target: "samlgate::slo", request_id = rid, reason = crate::reason::Reason::StoreUnavailable.code(), error = %e, "IdP-initiated logout refused");
            return pages::refusal_page(lang, crate::reason::Reason::StoreUnavailable, rid, None);
        }
    };
    tracing::info!(target: "samlgate::slo", request_id = rid, name_id = %r.name_id, sessions_ended = ended, "IdP-initiated logout");

    let Some(dest) = idp.slo_redirect.clone() else {
        return logged_out_page(lang, rid, true);
    };
    let xml = slo::logout_response_xml(
        &authn::new_request_id(),
        &r.id,
        &dest,
        &app.cfg.sp_entity_id,
        SUCCESS,
        now,
    );
    let keys = app.keys.read().expect("keys lock").clone();
    match authn::redirect_binding(
        "SAMLResponse",
        &dest,
        &xml,
        relay.as_deref().unwrap_or(""),
        Some(&keys.active().key),
    ) {
        Ok(url) => pages::redirect(StatusCode::FOUND, &url),
        Err(e) => {
            tracing::error!(target: "samlgate::slo", request_id = rid, error = %e, "LogoutResponse signing failed");
            logged_out_page(lang, rid, true)
        }
    }
}

/// After the local session ended: ask the IdP to end its session too, when it has an SLO
/// endpoint. Returns the redirect to the IdP, or `None` to show our own page.
pub fn start_idp_logout(app: &App, rec: &SessionRecord, rid: &str) -> Option<Resp> {
    let idp = app.idp();
    let dest = idp.slo_redirect.clone()?;
    let id = authn::new_request_id();
    let xml = LogoutRequestOut {
        id: &id,
        destination: &dest,
        issuer: &app.cfg.sp_entity_id,
        name_id: &rec.name_id,
        name_id_format: rec.name_id_format.as_deref(),
        session_index: rec.session_index.as_deref(),
    }
    .to_xml(chrono::Utc::now());
    let tracked = TrackedRequest {
        id: id.clone(),
        relay_handle: String::new(),
        return_to: "/login".into(),
        expires: chrono::Utc::now().timestamp() + REQUEST_TTL_SECS,
    };
    if authn::track(&*app.store, &tracked).is_err() {
        return None;
    }
    let keys = app.keys.read().expect("keys lock").clone();
    match authn::redirect_url(&dest, &xml, "", Some(&keys.active().key)) {
        Ok(url) => {
            tracing::info!(target: "samlgate::slo", request_id = rid, logout_request = %id, "SP-initiated single logout");
            Some(pages::redirect(StatusCode::FOUND, &url))
        }
        Err(e) => {
            tracing::error!(target: "samlgate::slo", request_id = rid, error = %e, "LogoutRequest signing failed");
            None
        }
    }
}
