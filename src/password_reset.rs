//! 「パスワードを忘れた方はこちら」 (issue 13): a reset link mailed to the account's address,
//! and its redemption, which leads into the forced password change of
//! [`crate::local_login`]. The decisions are [`crate::accounts`]' (the ticket, the per-account
//! mail limit, [`redeem_link`]); this module reads, stores with the audit line, and queues the
//! mail. Everything here blocks on the store: the web layer runs it on a blocking thread.
//!
//! What a person sees never depends on whether the id exists, has an address, is disabled
//! or has had too many mails: the page is answered before this runs. Only the audit log and
//! the operator's log say which it was. The token reaches only the mail; the store keeps its
//! hash, and no log line carries either.

use crate::accounts::account::{redeem_link, Ctx, LinkRefusal, LocalConfig, LoginStep};
use crate::accounts::policy::Blocklist;
use crate::accounts::reset::{ResetKind, ResetTicket};
use crate::audit::{self, AuditAction};
use crate::identity::local_accounts as la;
use crate::identity::put;
use crate::identity::users;
use crate::local_login::{subject, LocalAuth, LoginSteps, StepKind, STEP_TTL_SECS};
use crate::mail::{Mail, Mailer};
use crate::reason::Reason;
use crate::store::{Commit, Store, StoreError, Table, Versioned};

/// The per-IP limit on `POST /login/forgot` (`[local.reset] ip_burst`, `ip_per_minute`).
pub fn ip_rate(cfg: &LocalConfig) -> crate::accounts::throttle::RateConfig {
    crate::accounts::throttle::RateConfig {
        burst: cfg.reset.ip_burst.max(1),
        per_minute: cfg.reset.ip_per_minute.max(1),
        max_clients: 10_000,
    }
}

/// What became of a request: for the audit line and the log, never for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Mailed,
    UnknownId,
    Disabled,
    NoAddress,
    /// The account's hourly allowance of reset mails is used up.
    Throttled,
    /// `[mail]` is not configured.
    NoMail,
    /// Stored, but the mail could not be queued (logged with its reason by the mailer).
    NotQueued,
}

impl Requested {
    /// Why no mail went out; `None` when it did.
    pub fn reason(self) -> Option<Reason> {
        Some(match self {
            Requested::Mailed => return None,
            Requested::UnknownId => Reason::LocalUnknownId,
            Requested::Disabled => Reason::LocalDisabled,
            Requested::NoAddress => Reason::ResetNoAddress,
            Requested::Throttled => Reason::ResetMailThrottled,
            Requested::NoMail => Reason::ResetMailNotConfigured,
            Requested::NotQueued => Reason::ResetMailNotQueued,
        })
    }

    /// The audit detail and the log's `outcome=`: `mailed` (not a refusal, so not a
    /// [`Reason`]) or the reason's code.
    pub fn code(self) -> &'static str {
        self.reason().map_or("mailed", Reason::code)
    }
}

fn audit_only(store: &dyn Store, user_id: &str, r: Requested) -> Result<Requested, StoreError> {
    let s = subject(user_id);
    let line = audit::entry(
        store,
        &format!("user:{s}"),
        AuditAction::PasswordResetRequest,
        &s,
        r.code(),
        None,
    )?;
    store.apply(&[line])?;
    Ok(r)
}

/// "Forgot password" for `user_id`: issues a link bound to the account's password version,
/// stores its hash with the account's mail count and the audit line in one write, and queues
/// the mail to the user's address. `public_url` is the gateway's, without a trailing slash.
pub fn request(
    store: &dyn Store,
    cfg: &LocalConfig,
    mailer: Option<&Mailer>,
    public_url: &str,
    user_id: &str,
    now: i64,
) -> Result<Requested, StoreError> {
    for _ in 0..4 {
        let Some(l) = la::get(store, user_id)? else {
            return audit_only(store, user_id, Requested::UnknownId);
        };
        let Some(mailer) = mailer else {
            return audit_only(store, user_id, Requested::NoMail);
        };
        let mut a = l.account.clone();
        if a.disabled {
            return audit_only(store, user_id, Requested::Disabled);
        }
        let to = users::get(store, &a.user_id)?
            .map(|u| u.profile.email)
            .filter(|e| !e.trim().is_empty());
        let Some(to) = to else {
            return audit_only(store, user_id, Requested::NoAddress);
        };
        if !a.reset_mail.allow(now, cfg.reset.link_mails_per_hour) {
            return audit_only(store, user_id, Requested::Throttled);
        }
        let (token, ticket) =
            ResetTicket::issue_link(&a.user_id, a.password_version, now, &cfg.reset);
        let line = audit::entry(
            store,
            &format!("user:{}", a.user_id),
            AuditAction::PasswordResetRequest,
            &a.user_id,
            Requested::Mailed.code(),
            None,
        )?;
        if !la::save(store, &a, Some(&l), vec![la::put_ticket(&ticket), line])? {
            continue; // a login wrote the account meanwhile: read it again
        }
        let link = format!("{public_url}/login/reset?token={token}");
        let minutes = cfg.reset.link_ttl_secs.div_ceil(60);
        let mail = Mail::password_reset(&to, &a.user_id, &link, minutes);
        return Ok(match mailer.send(mail) {
            Ok(()) => Requested::Mailed,
            Err(_) => Requested::NotQueued,
        });
    }
    Err(StoreError::Io(
        "account kept changing during the reset request".into(),
    ))
}

fn ctx<'a>(cfg: &'a LocalConfig, auth: &'a LocalAuth, now: i64) -> Ctx<'a> {
    Ctx {
        cfg,
        hasher: &auth.hasher,
        blocklist: Blocklist::builtin(),
        now,
    }
}

/// The ticket a presented token names, with its stored bytes (the guard of its deletion).
fn ticket(
    store: &dyn Store,
    token: &str,
) -> Result<Option<(String, Versioned, ResetTicket)>, StoreError> {
    let key = format!(
        "link:{}",
        crate::accounts::reset::token_hash(token, ResetKind::MailLink)
    );
    let (t, read) = crate::identity::load_versioned(store, Table::ResetTickets, &key)?;
    Ok(t.map(|t| (key, read, t)))
}

/// Whether a link would lead on now (the page behind the mailed link, before the person
/// presses Continue): reads only, so a mail scanner that opens links uses nothing up.
pub fn peek(
    store: &dyn Store,
    cfg: &LocalConfig,
    auth: &LocalAuth,
    token: &str,
    now: i64,
) -> Result<Result<(), LinkRefusal>, StoreError> {
    let Some((_, _, t)) = ticket(store, token)? else {
        return Ok(Err(LinkRefusal::Invalid));
    };
    let Some(l) = la::get(store, &t.user_id)? else {
        return Ok(Err(LinkRefusal::Invalid));
    };
    let mut a = l.account;
    Ok(redeem_link(t, token, &mut a, &ctx(cfg, auth, now)).map(|_| ()))
}

/// Redeems a link: consumes its ticket and starts a login at the step it leads to (the TOTP
/// code if the account has one, else the password change), in one write guarded by the
/// ticket's version, so of two tabs (or two gateways) only one goes on.
pub fn redeem(
    store: &dyn Store,
    cfg: &LocalConfig,
    auth: &LocalAuth,
    token: &str,
    now: i64,
) -> Result<Result<LoginSteps, LinkRefusal>, StoreError> {
    let Some((key, read, t)) = ticket(store, token)? else {
        return Ok(Err(LinkRefusal::Invalid));
    };
    let user_id = t.user_id.clone();
    let Some(l) = la::get(store, &user_id)? else {
        return Ok(Err(LinkRefusal::Invalid));
    };
    let mut a = l.account;
    let actor = format!("user:{user_id}");
    let step = match redeem_link(t, token, &mut a, &ctx(cfg, auth, now)) {
        Ok(s) => s,
        Err(r) => {
            let line = audit::entry(
                store,
                &actor,
                AuditAction::PasswordResetRedeem,
                &user_id,
                r.code(),
                None,
            )?;
            // A link that can never work again goes now rather than at the sweep.
            let mut w = vec![line];
            if matches!(r, LinkRefusal::Expired | LinkRefusal::Superseded) {
                w.push(la::delete_ticket(&key));
            }
            store.apply(&w)?;
            return Ok(Err(r));
        }
    };
    let kind = match step {
        LoginStep::TotpNeeded(_) => StepKind::Totp,
        LoginStep::ChangePassword(_) => StepKind::ChangePassword,
        // A reset always asks for a new password before anything else: refuse the rest.
        LoginStep::EnrolTotp(_) | LoginStep::Done(_) => return Ok(Err(LinkRefusal::Invalid)),
    };
    let proven = step.proven().expect("a pending step").clone();
    let rec = LoginSteps {
        id: crate::session::random_id(),
        csrf: crate::session::random_id(),
        proven,
        step: kind,
        return_to: "/".into(),
        expires: now + STEP_TTL_SECS,
        enrol_secret: None,
    };
    let line = audit::entry(
        store,
        &actor,
        AuditAction::PasswordResetRedeem,
        &user_id,
        &format!("ok, next {kind:?}"),
        None,
    )?;
    let writes = vec![
        la::delete_ticket(&key),
        put(Table::LoginSteps, &rec.id, &rec),
        line,
    ];
    if !store.commit(&Commit::guarded(&read, writes))? {
        return Ok(Err(LinkRefusal::Invalid)); // used by another request just now
    }
    Ok(Ok(rec))
}
