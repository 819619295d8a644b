//! `POST /_samlgate/apply`: the form 「SSO利用申請を行う」 on the application-needed and existing-account
//! pages files a pending SSO application for the G-MIS account that just proved itself. The
//! form carries a short-lived token sealed by the gateway (session::seal_data) holding the
//! verified profile, so only that login can file, and only for itself.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

use super::login;
use super::pages::{self, Lang, Resp};
use super::App;
use crate::identity::applications::{self, Filing, FilingError};
use crate::identity::policy::ApplicationNeed;
use crate::identity::Profile;
use crate::reason::Reason;
use crate::store::{Commit, Table, Versioned};

use super::apply_token::open;

fn error_text(lang: Lang, e: &FilingError) -> &'static str {
    match e {
        FilingError::Phone => lang.t(
            "電話番号を確認してください（例: 03-1234-5678）。",
            "Please check the phone number (e.g. 03-1234-5678).",
        ),
        FilingError::Reason => lang.t(
            "申請の理由を1000文字以内で入力してください。",
            "Please give a reason (at most 1000 characters).",
        ),
        FilingError::LinkTo => lang.t(
            "既存の医療情報ネットのアカウントIDを確認してください。",
            "Please check your existing Medical Information Net account ID.",
        ),
    }
}

pub async fn post(app: &App, req: Request<Incoming>, rid: &str) -> Resp {
    let lang = Lang::of(&req);
    let body: Bytes = match Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return pages::refusal_page(lang, Reason::BadRequest, rid, None),
    };
    let mut f = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        f.insert(k.into_owned(), v.into_owned());
    }
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let Some(t) = open(app, field("token")) else {
        tracing::warn!(target: "samlgate::applications", request_id = rid, reason = Reason::BadRequest.code(), "application form: token missing, forged or expired");
        return pages::refusal_page(lang, Reason::BadRequest, rid, Some("/login"));
    };
    let need = if t.link {
        ApplicationNeed::ExistingAccount
    } else {
        ApplicationNeed::Category
    };
    let filing = match Filing::new(field("phone"), field("reason"), field("link_to"), t.link) {
        Ok(x) => x,
        Err(e) => {
            let (m, o) = (String::new(), String::new());
            let mut page = login::application_page_for(app, lang, need, &t.profile, &m, &o, rid);
            page.message = lang.t("入力内容を確認してください。", "Please check the form.");
            page.error = error_text(lang, &e);
            page.form_phone = field("phone");
            page.form_reason = field("reason");
            page.form_link_to = field("link_to");
            return pages::render(StatusCode::BAD_REQUEST, &page);
        }
    };
    match file(app, &t.profile, &filing, rid) {
        Ok(()) => filed_page(app, lang, &t.profile, rid),
        Err(e) => {
            tracing::error!(target: "samlgate::applications", request_id = rid, error = %e, "application not filed");
            pages::refusal_page(lang, Reason::Internal, rid, None)
        }
    }
}

/// Writes the pending application and its audit line, only if the account has none yet
/// (an existing application, whatever its state, is the secretariat's to change).
fn file(
    app: &App,
    p: &Profile,
    filing: &Filing,
    rid: &str,
) -> Result<(), crate::store::StoreError> {
    let store = &*app.store;
    let a = filing.application(p);
    let detail = format!(
        "phone {}; link_to {}; reason {}",
        a.phone,
        a.link_to.as_deref().unwrap_or("-"),
        a.reason
    );
    let audit = crate::audit::entry(
        store,
        &format!("user:{}", p.account_id),
        crate::audit::AuditAction::ApplicationFile,
        &p.account_id,
        &detail,
        None,
    )?;
    // Filed only if there is none yet (a second submit, or another tab, files nothing).
    let none_yet = Versioned::absent(Table::Applications, p.account_id.as_bytes());
    let written = store.commit(&Commit::guarded(
        &none_yet,
        vec![applications::write(&a), audit],
    ))?;
    if written {
        tracing::info!(target: "samlgate::applications", request_id = rid, account_id = %p.account_id, display_name = %p.display_name, facility = %p.facility_name, link_to = a.link_to.as_deref().unwrap_or(""), "sso application filed from the refusal page");
    } else {
        tracing::info!(target: "samlgate::applications", request_id = rid, account_id = %p.account_id, "sso application already exists; nothing filed");
    }
    Ok(())
}

fn filed_page(app: &App, lang: Lang, p: &Profile, rid: &str) -> Resp {
    let need = ApplicationNeed::Pending;
    let ja = "SSO利用申請を受け付けました。G-MIS事務局が確認のうえ承認します。承認後、もう一度G-MISからログインしてください。";
    let en = "Your SSO application has been filed. The G-MIS secretariat reviews and approves it; log in from G-MIS again once it is approved.";
    let mut page = login::application_page_for(
        app,
        lang,
        need,
        p,
        lang.t(ja, en),
        lang.other().t(ja, en),
        rid,
    );
    page.success = true;
    let mut r = pages::render(StatusCode::OK, &page);
    r.headers_mut()
        .insert("x-samlgate-reason", HeaderValue::from_static(need.code()));
    r
}
