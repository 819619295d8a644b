//! Finishing a login that policy (and, when asked, the user) allowed: register or link the
//! user, create the session, set the cookie. Also the terminal pages of a login that may not
//! proceed (application needed, blocked): each ends the flow, none redirects back into a login.

use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::StatusCode;

use super::pages::{self, Lang, Resp};
use super::App;
use crate::identity::consent::ConsentDecision;
use crate::identity::policy::ApplicationNeed;
use crate::identity::Profile;
pub use crate::login::Login;
use crate::login::{Admitted, LoginError};
use crate::reason::{Reason, Refusal};
use crate::sessions::{Which, Why};
use crate::store::{StoreError, Write};

/// Finishes an admitted login (one commit: user, link, `extra`, audit, session, the browser's
/// earlier sessions ended) and answers 303 with the cookie. The commit is durable when it
/// returns: nothing to flush.
pub fn finish(app: &App, admitted: Admitted, extra: Vec<Write>) -> Result<Resp, Refusal> {
    let relay = admitted.login.relay_state.clone();
    let replaced = admitted.login.replaces.clone();
    let s = admitted
        .finish(&*app.store, &app.cfg, extra)
        .map_err(login_refusal)?;
    // The ended sessions' cached tokens go too (the records went in the commit).
    let _ = super::auth::end(app, Which::Committed(&replaced), Why::Replaced);
    let mut resp = pages::redirect(StatusCode::SEE_OTHER, &relay);
    let cookie = app
        .sessions
        .set_cookie(&app.sessions.seal(&s.rec.id), s.max_age);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}

/// The application-needed, existing-account, pending and revoked pages. The first two carry
/// the form 「SSO利用申請を行う」 with a signed token of the verified profile (web::apply).
#[derive(askama::Template)]
#[template(path = "application.html")]
pub struct ApplicationPage<'a> {
    pub lang: Lang,
    pub title: &'a str,
    pub message: &'a str,
    pub other: &'a str,
    pub code: &'a str,
    pub request_id: &'a str,
    pub profile: &'a Profile,
    /// The signed identity for the form; None: no form on this page.
    pub apply_token: Option<String>,
    pub link_needed: bool,
    pub error: &'a str,
    pub form_phone: &'a str,
    pub form_reason: &'a str,
    pub form_link_to: &'a str,
    /// The filing date (local time) and status of the person's application, when there is one.
    pub filed: Option<String>,
    pub status: &'a str,
    /// The message reports a success (green box), not a refusal.
    pub success: bool,
}

pub fn application_page(
    app: &App,
    lang: Lang,
    need: ApplicationNeed,
    p: &Profile,
    rid: &str,
) -> Resp {
    let message = application_message(lang, need, &p.category);
    let other = application_message(lang.other(), need, &p.category);
    let page = application_page_for(app, lang, need, p, &message, &other, rid);
    let mut r = pages::render(StatusCode::FORBIDDEN, &page);
    r.headers_mut()
        .insert("x-samlgate-reason", HeaderValue::from_static(need.code()));
    r
}

/// The page's content for `need`: the form when the person may apply, the filing date and
/// status when an application exists.
pub fn application_page_for<'a>(
    app: &App,
    lang: Lang,
    need: ApplicationNeed,
    p: &'a Profile,
    message: &'a str,
    other: &'a str,
    rid: &'a str,
) -> ApplicationPage<'a> {
    let can_apply = matches!(
        need,
        ApplicationNeed::Category | ApplicationNeed::ExistingAccount
    );
    let filed = crate::identity::applications::get(&*app.store, &p.account_id)
        .ok()
        .flatten();
    ApplicationPage {
        lang,
        title: match need {
            ApplicationNeed::Pending => {
                lang.t("SSO利用申請の確認中です", "SSO application under review")
            }
            _ => lang.t("SSO利用申請が必要です", "SSO application required"),
        },
        message,
        other,
        code: need.code(),
        request_id: rid,
        profile: p,
        apply_token: can_apply.then(|| super::apply_token::token(app, p, need)),
        link_needed: need == ApplicationNeed::ExistingAccount,
        error: "",
        form_phone: "",
        form_reason: "",
        form_link_to: "",
        status: match filed.as_ref().map(|a| a.status) {
            Some(crate::identity::applications::ApplicationStatus::Pending) => {
                lang.t("事務局で確認中", "Under review by the secretariat")
            }
            Some(crate::identity::applications::ApplicationStatus::Approved) => {
                lang.t("承認済み", "Approved")
            }
            Some(crate::identity::applications::ApplicationStatus::Revoked) => {
                lang.t("承認取消し", "Approval revoked")
            }
            None => "",
        },
        filed: filed.map(|a| local_time(&a.created)),
        success: false,
    }
}

/// An RFC 3339 time in Japan time (the users' and the secretariat's clock).
pub fn local_time(rfc3339: &str) -> String {
    let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("+09:00");
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&jst).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn application_message(lang: Lang, need: ApplicationNeed, cat: &str) -> String {
    match (need, lang) {
        (ApplicationNeed::Category, Lang::Ja) => format!(
            "区分「{cat}」のアカウントでG-MISからログインするには、事前にSSO利用申請が承認されている必要があります。G-MIS事務局にSSO利用申請を行ってください。承認後、もう一度G-MISからログインしてください。"
        ),
        (ApplicationNeed::Category, Lang::En) => format!(
            "Accounts of category \"{cat}\" need an approved SSO application before logging in from G-MIS. Please apply to the G-MIS secretariat, then log in from G-MIS again once it is approved."
        ),
        (ApplicationNeed::ExistingAccount, Lang::Ja) => "医療情報ネットのアカウントをすでにお持ちのようです。G-MISアカウントと連携するには、既存のアカウントIDを記載してSSO利用申請を行ってください。承認後、G-MISからログインすると既存のアカウントに連携されます。".into(),
        (ApplicationNeed::ExistingAccount, Lang::En) => "You seem to have a Medical Information Net account already. To link it to your G-MIS account, file an SSO application naming your existing account ID. Once it is approved, logging in from G-MIS links the two.".into(),
        (ApplicationNeed::Pending, Lang::Ja) => "SSO利用申請は現在G-MIS事務局で確認中です。承認されるまでG-MISからのログインはご利用いただけません。".into(),
        (ApplicationNeed::Pending, Lang::En) => "Your SSO application is being reviewed by the G-MIS secretariat. Logging in from G-MIS is possible once it is approved.".into(),
        (ApplicationNeed::Revoked, Lang::Ja) => "SSO利用申請の承認が取り消されています。G-MIS事務局にお問い合わせください。".into(),
        (ApplicationNeed::Revoked, Lang::En) => "Your SSO application approval was revoked. Please contact the G-MIS secretariat.".into(),
        (ApplicationNeed::LinkConflict, Lang::Ja) => "SSO利用申請で連携先に指定された医療情報ネットのアカウントは、存在しないか、別のG-MISアカウントに連携済みのため連携できません。G-MIS事務局にお問い合わせください。".into(),
        (ApplicationNeed::LinkConflict, Lang::En) => "The Medical Information Net account named in your SSO application cannot be linked: it does not exist or is linked to another G-MIS account. Please contact the G-MIS secretariat.".into(),
    }
}

pub fn blocked_page(lang: Lang, by: ConsentDecision, rid: &str) -> Resp {
    let reason = match by {
        ConsentDecision::BlockedBySecretariat => Reason::BlockedBySecretariat,
        _ => Reason::BlockedConsentRejected,
    };
    pages::refusal_page(lang, reason, rid, None)
}

/// The refusal a login step's error maps to.
pub(super) fn login_refusal(e: LoginError) -> Refusal {
    match e {
        LoginError::Replayed(_) => Refusal::new(Reason::Replay, e.to_string()),
        LoginError::AccountChanged(d) => Refusal::new(Reason::AccountChanged, d),
        LoginError::Store(e) => store_refusal(e),
    }
}

/// The one mapping of a store error on the login path (replay record, account read, commit,
/// flush): the database unreachable or on the wrong schema is 503 `store_unavailable` (try
/// again shortly), a corrupt record is 500 `internal_error`.
pub(super) fn store_refusal(e: StoreError) -> Refusal {
    let reason = match e {
        StoreError::Io(_) | StoreError::Schema(_) => Reason::StoreUnavailable,
        StoreError::Corrupt(_) => Reason::Internal,
    };
    Refusal::new(reason, format!("store: {e}"))
}
