//! `/login/totp-setup`: a person who logged in with their ID and password sets up TOTP by
//! choice (`[local] second_factor = "optional"`, the default). A translator:
//! [`crate::account_ops::enrol_by_choice`] decides and stores.
//!
//! The new secret travels in the form, sealed by the session key together with the session id
//! and an expiry: the page shows the same secret as a QR code anyway, the seal keeps anyone
//! else from choosing it, and binding it to the session makes it the form's CSRF token.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::local::{field, form, lang_of_form, EnrolPage, RecoveryPage};
use super::pages::{self, Lang, Resp};
use super::App;
use crate::account_ops::{enrol_by_choice, EnrolRefusal};
use crate::accounts::account::SecondFactor;
use crate::accounts::totp::{otpauth_uri, qr_svg, TotpSecret};
use crate::reason::Reason;

const PURPOSE: &str = "totp-setup";
/// The page must be finished within this (scan, type a code).
const TTL_SECS: i64 = 900;

#[derive(Serialize, Deserialize)]
struct Sealed {
    sid: String,
    secret: String,
    exp: i64,
}

/// The password session of the request, if any: (session id, account id).
fn password_session<B>(app: &App, req: &Request<B>) -> Option<(String, String)> {
    let live = super::auth::live_session(app, req)?;
    let r = &live.rec;
    r.auth_method
        .starts_with("password")
        .then(|| (r.id.clone(), r.local_user_id.clone()))
}

fn notice(lang: Lang, status: StatusCode, ja: &str, en: &str) -> Resp {
    let page = pages::ErrorPage {
        lang,
        title: lang.t("二要素認証の設定", "Two-factor authentication"),
        message: lang.t(ja, en),
        other: lang.other().t(ja, en),
        code: "",
        request_id: "",
        action_href: Some("/"),
        action_label: lang.t("メニューへ", "Go to the menu"),
        success: true,
    };
    pages::render(status, &page)
}

fn form_page(app: &App, lang: Lang, sid: &str, user: &str, error: Option<&str>) -> Resp {
    let secret = TotpSecret::generate();
    let sealed = Sealed {
        sid: sid.to_string(),
        secret: secret.to_base32(),
        exp: chrono::Utc::now().timestamp() + TTL_SECS,
    };
    let token = app
        .sessions
        .seal_data(PURPOSE, &serde_json::to_vec(&sealed).unwrap_or_default());
    let qr = qr_svg(&otpauth_uri(&secret, crate::local_login::TOTP_ISSUER, user));
    let page = EnrolPage {
        lang,
        action: "/login/totp-setup",
        by_choice: true,
        csrf: &token,
        qr_svg: &qr,
        secret: &sealed.secret,
        error,
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    pages::render(status, &page)
}

/// Refusals that need no form: not logged in by password, not offered, already enrolled.
fn precheck(app: &App, lang: Lang, user: &str) -> Option<Resp> {
    let enrolled = crate::identity::local_accounts::get(&*app.store, user)
        .ok()
        .flatten()
        .map(|l| l.account.totp.is_some());
    match enrolled {
        None => Some(pages::redirect(StatusCode::SEE_OTHER, "/")),
        Some(true) => Some(notice(
            lang,
            StatusCode::OK,
            "二要素認証はすでに設定されています。認証アプリを替えるときは事務局にご連絡ください。",
            "Two-factor authentication is already set up. To move it to a new app, contact the secretariat.",
        )),
        Some(false) if app.cfg.local.second_factor == SecondFactor::Off => Some(notice(
            lang,
            StatusCode::NOT_FOUND,
            "この環境では二要素認証を使用していません。",
            "Two-factor authentication is not used here.",
        )),
        Some(false) => None,
    }
}

pub fn setup_page<B>(app: &App, req: &Request<B>) -> Resp {
    let lang = Lang::of(req);
    let Some((sid, user)) = password_session(app, req) else {
        return pages::redirect(StatusCode::SEE_OTHER, "/login?return_to=/login/totp-setup");
    };
    if let Some(r) = precheck(app, lang, &user) {
        return r;
    }
    form_page(app, lang, &sid, &user, None)
}

pub async fn post_setup(app: &Arc<App>, req: Request<Incoming>, rid: &str) -> Resp {
    let lang = Lang::of(&req);
    let session = password_session(app, &req);
    let Some(f) = form(req).await else {
        return pages::refusal_page(lang, Reason::BadRequest, rid, Some("/"));
    };
    let lang = lang_of_form(&f, lang);
    let Some((sid, user)) = session else {
        return pages::redirect(StatusCode::SEE_OTHER, "/login?return_to=/login/totp-setup");
    };
    let now = chrono::Utc::now().timestamp();
    let sealed: Option<Sealed> = app
        .sessions
        .open_data(PURPOSE, field(&f, "csrf"))
        .and_then(|d| serde_json::from_slice(&d).ok())
        .filter(|s: &Sealed| s.sid == sid && s.exp > now);
    let Some(secret) = sealed.and_then(|s| TotpSecret::from_base32(&s.secret)) else {
        tracing::warn!(target: "samlgate::local", request_id = rid, reason = Reason::CsrfMismatch.code(), "TOTP setup form refused");
        return form_page(app, lang, &sid, &user, Some(&stale(lang)));
    };
    let code = field(&f, "code").to_string();
    let (a2, u2) = (app.clone(), user.clone());
    let r = tokio::task::spawn_blocking(move || {
        enrol_by_choice(&*a2.store, &a2.cfg.local, &u2, secret, &code)
    })
    .await;
    match r {
        Ok(Ok(Ok(codes))) => {
            tracing::info!(target: "samlgate::local", request_id = rid, local_user = %user, "TOTP enrolled by choice");
            let page = RecoveryPage {
                lang,
                codes: &codes,
                next: "/",
            };
            pages::render(StatusCode::OK, &page)
        }
        Ok(Ok(Err(EnrolRefusal::Code(e)))) => {
            let m = e.message();
            let text = format!(
                "{} / {}",
                lang.t(&m.ja, &m.en),
                lang.other().t(&m.ja, &m.en)
            );
            form_page(app, lang, &sid, &user, Some(&text))
        }
        Ok(Ok(Err(_))) => precheck(app, lang, &user)
            .unwrap_or_else(|| pages::redirect(StatusCode::SEE_OTHER, "/")),
        Ok(Err(e)) => {
            tracing::error!(target: "samlgate::local", request_id = rid, reason = Reason::StoreUnavailable.code(), error = %e, "TOTP setup: store");
            pages::refusal_page(lang, Reason::StoreUnavailable, rid, Some("/"))
        }
        Err(_) => pages::refusal_page(lang, Reason::Internal, rid, Some("/")),
    }
}

fn stale(lang: Lang) -> String {
    let (ja, en) = (
        "画面の有効期限が切れました。新しいQRコードでもう一度設定してください。",
        "This page has expired. Set up again with the new QR code.",
    );
    format!("{} / {}", lang.t(ja, en), lang.other().t(ja, en))
}
