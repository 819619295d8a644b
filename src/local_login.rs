//! ID/password logins (issue 13), between the web forms and the account rules: reads the
//! account, lets [`crate::accounts::account`] decide, and commits the account's new state with
//! the attempt's audit line and, for a login that has steps left, a server-side step record,
//! or for a finished one the session: one commit per step ([`crate::login::local`]). All
//! of it blocks (argon2, store): the web layer calls it on the bounded hash pool.
//!
//! Audit lines name the attempt's outcome code, never the password.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::accounts::account::{
    Account, AuthMethod, ChangeError, Ctx, LocalConfig, LoginRefusal, LoginStep, Proven,
};
use crate::accounts::password::{Hasher, Password};
use crate::accounts::policy::Blocklist;
use crate::accounts::throttle::{IpRateLimiter, RateConfig};
use crate::accounts::Message;
use crate::audit::{self, AuditAction};
use crate::identity::local_accounts as la;
use crate::identity::put;
use crate::identity::users::User;
use crate::login::local::{self as pipeline, Committed, Ending, ReadAccount, Step};
use crate::login::NewSession;
use crate::store::{Commit, Store, StoreError, Table, Write};

/// A login's steps must be finished within this (the change form is typed by hand).
pub const STEP_TTL_SECS: i64 = 900;

/// Process-wide state: the hasher (with its dummy hash made once at start), the per-IP limit.
pub struct LocalAuth {
    pub hasher: Hasher,
    pub ip_limit: Mutex<IpRateLimiter>,
}

impl LocalAuth {
    pub fn new(cfg: &LocalConfig) -> Result<LocalAuth, String> {
        Ok(LocalAuth {
            hasher: Hasher::new(cfg.argon2).map_err(|e| format!("[local.argon2]: {e}"))?,
            ip_limit: Mutex::new(IpRateLimiter::new(RateConfig::default())),
        })
    }

    /// Whether this client may try a password now (`Err`: seconds to wait).
    pub fn allow_ip(&self, ip: std::net::IpAddr) -> Result<(), u64> {
        let mut l = self.ip_limit.lock().unwrap_or_else(|e| e.into_inner());
        l.allow(ip, std::time::Instant::now())
    }
}

/// The step that comes next, for the page to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    ChangePassword,
    Totp,
    EnrolTotp,
}

/// A login between steps: server-side only; the browser holds a sealed cookie naming `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginSteps {
    pub id: String,
    /// The step forms' CSRF token.
    pub csrf: String,
    pub proven: Proven,
    pub step: StepKind,
    /// Where the user was going.
    pub return_to: String,
    pub expires: i64,
    /// TOTP enrolment: the secret the page showed, until the first code confirms it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrol_secret: Option<crate::accounts::totp::TotpSecret>,
}

pub enum Outcome {
    /// The login is finished for this user; the session committed with it (the same as
    /// SSO's), or `None` for [`Ending::AccountOnly`].
    Done {
        user: User,
        method: AuthMethod,
        session: Option<Box<NewSession>>,
    },
    /// Show the next step's page.
    Next(LoginSteps),
    Refused(LoginRefusal),
    /// The new password broke these rules (Japanese, English); the form is shown again for
    /// this fresh step record.
    ChangeRefused(LoginSteps, Vec<Message>),
}

fn ctx<'a>(cfg: &'a LocalConfig, auth: &'a LocalAuth) -> Ctx<'a> {
    Ctx {
        cfg,
        hasher: &auth.hasher,
        blocklist: Blocklist::builtin(),
        now: chrono::Utc::now().timestamp(),
    }
}

/// The typed id as it may appear in the audit log: bounded, printable.
pub(crate) fn subject(user_id: &str) -> String {
    user_id
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

fn step_of(s: &LoginStep) -> Option<StepKind> {
    match s {
        LoginStep::ChangePassword(_) => Some(StepKind::ChangePassword),
        LoginStep::TotpNeeded(_) => Some(StepKind::Totp),
        LoginStep::EnrolTotp(_) => Some(StepKind::EnrolTotp),
        LoginStep::Done(_) => None,
    }
}

/// The ID/password form. Commits the account's new state (throttle, rehash) with the audit
/// line, and the step record when steps remain or the session (per `ending`) when none do.
pub fn password(
    store: &dyn Store,
    cfg: &LocalConfig,
    auth: &LocalAuth,
    user_id: &str,
    pw: &Password,
    return_to: &str,
    ending: &Ending,
) -> Result<Outcome, StoreError> {
    for _ in 0..4 {
        let cx = ctx(cfg, auth);
        let loaded = pipeline::read_account(store, user_id)?;
        let mut account = loaded.as_ref().map(|l| l.account.clone());
        let r = crate::accounts::account::login(account.as_mut(), pw, &cx);
        let actor = format!("user:{}", subject(user_id));
        let Some((a, l)) = account.zip(loaded) else {
            let line = audit::entry(
                store,
                &actor,
                AuditAction::LoginPassword,
                &subject(user_id),
                crate::reason::Reason::LocalUnknownId.code(),
                None,
            )?;
            store.apply(&[line])?;
            return Ok(Outcome::Refused(LoginRefusal::WrongPassword));
        };
        let step = StepOf {
            action: AuditAction::LoginPassword,
            return_to,
            ending,
        };
        match finish_step(store, &cx, &l, a, r, &step)? {
            Some(o) => return Ok(o),
            None => continue,
        }
    }
    Err(StoreError::Io(
        "account kept changing during the login".into(),
    ))
}

/// Which step is finishing: its audit action, where the login goes, what it ends in.
struct StepOf<'a> {
    action: AuditAction,
    return_to: &'a str,
    ending: &'a Ending,
}

/// Commits the account and the outcome of one step (a finished login's session with them);
/// `None` when another writer changed the account (or user) first: nothing was written, the
/// caller reads again and retries.
fn finish_step(
    store: &dyn Store,
    cx: &Ctx,
    read: &ReadAccount,
    a: Account,
    r: Result<LoginStep, LoginRefusal>,
    s: &StepOf,
) -> Result<Option<Outcome>, StoreError> {
    let actor = format!("user:{}", a.user_id);
    let (detail, mut writes, then): (String, Vec<Write>, Then) = match r {
        Err(refusal) => (
            refusal.code().into(),
            Vec::new(),
            Then::Answer(Outcome::Refused(refusal)),
        ),
        Ok(LoginStep::Done(d)) => (
            format!("ok {}", d.method.header_value()),
            Vec::new(),
            Then::Done(pipeline::read_user(store, &d.user_id)?, d.method),
        ),
        Ok(step) => {
            let kind = step_of(&step).expect("not done");
            let rec = LoginSteps {
                id: crate::session::random_id(),
                csrf: crate::session::random_id(),
                proven: step.proven().expect("not done").clone(),
                step: kind,
                return_to: s.return_to.to_string(),
                expires: cx.now + STEP_TTL_SECS,
                enrol_secret: None,
            };
            let w = put(Table::LoginSteps, &rec.id, &rec);
            (
                format!("ok, next {kind:?}"),
                vec![w],
                Then::Answer(Outcome::Next(rec)),
            )
        }
    };
    writes.insert(0, la::put(&a));
    writes.push(audit::entry(
        store, &actor, s.action, &a.user_id, &detail, None,
    )?);
    let step = Step {
        read: &read.row,
        writes,
        done: match &then {
            Then::Done(u, m) => Some((u, *m)),
            Then::Answer(_) => None,
        },
    };
    let session = match pipeline::commit_step(store, step, s.ending)? {
        Committed::Changed => return Ok(None),
        Committed::Written(session) => session,
    };
    Ok(Some(match then {
        Then::Answer(o) => o,
        Then::Done(u, method) => Outcome::Done {
            user: u.user,
            method,
            session,
        },
    }))
}

/// What a step leads to: an answer now (refused, the next step), or a finished login (its
/// user, read for the session, and how it was proven).
enum Then {
    Answer(Outcome),
    Done(pipeline::ReadUser, AuthMethod),
}

pub fn steps_get(store: &dyn Store, id: &str) -> Result<Option<LoginSteps>, StoreError> {
    let rec: Option<LoginSteps> = crate::identity::load(store, Table::LoginSteps, id)?;
    Ok(rec.filter(|r| r.expires > chrono::Utc::now().timestamp()))
}

/// Consumes a step record (its form was submitted): of two racing submits one goes on.
fn take(store: &dyn Store, rec: &LoginSteps) -> Result<bool, StoreError> {
    let read = store.get_versioned(Table::LoginSteps, rec.id.as_bytes())?;
    if read.value.is_none() {
        return Ok(false);
    }
    let consume = (Table::LoginSteps, rec.id.as_bytes().to_vec(), None);
    store.commit(&Commit::guarded(&read, vec![consume]))
}

/// The forced password change (パスワード変更): the step record is consumed, and on a
/// refusal a fresh one is made so the person can try again.
pub fn change_password(
    store: &dyn Store,
    cfg: &LocalConfig,
    auth: &LocalAuth,
    rec: &LoginSteps,
    new: &Password,
    ending: &Ending,
) -> Result<Outcome, StoreError> {
    if rec.step != StepKind::ChangePassword || !take(store, rec)? {
        return Ok(Outcome::Refused(LoginRefusal::Stale));
    }
    let cx = ctx(cfg, auth);
    let Some(l) = pipeline::read_account(store, rec.proven.user_id())? else {
        return Ok(Outcome::Refused(LoginRefusal::Stale));
    };
    let mut a = l.account.clone();
    let step = match LoginStep::resume(rec.proven.clone(), &mut a, &cx) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Refused(e)),
    };
    let LoginStep::ChangePassword(c) = step else {
        return Ok(Outcome::Refused(LoginRefusal::Stale));
    };
    match c.submit(&mut a, new, &cx) {
        Ok(next) => {
            let step = StepOf {
                action: AuditAction::LoginPasswordChange,
                return_to: &rec.return_to,
                ending,
            };
            let r = finish_step(store, &cx, &l, a, Ok(next), &step)?;
            Ok(r.unwrap_or(Outcome::Refused(LoginRefusal::Stale)))
        }
        Err((_, ChangeError::Refused(why))) => {
            let again = LoginSteps {
                id: crate::session::random_id(),
                expires: cx.now + STEP_TTL_SECS,
                ..rec.clone()
            };
            let line = audit::entry(
                store,
                &format!("user:{}", a.user_id),
                AuditAction::LoginPasswordChange,
                &a.user_id,
                "refused by the password policy",
                None,
            )?;
            store.apply(&[put(Table::LoginSteps, &again.id, &again), line])?;
            let msgs = why.iter().map(|r| r.message()).collect();
            // The caller needs the new record to show the form again.
            Ok(Outcome::ChangeRefused(again, msgs))
        }
        Err((_, ChangeError::Hash(e))) => Ok(Outcome::Refused(LoginRefusal::Unusable(e))),
    }
}

/// The TOTP code (or a recovery code) of an enrolled account. A wrong code counts towards
/// the account's lock; the step record is consumed either way and remade on a refusal.
pub fn second_factor(
    store: &dyn Store,
    cfg: &LocalConfig,
    auth: &LocalAuth,
    rec: &LoginSteps,
    code: &str,
    recovery: bool,
    ending: &Ending,
) -> Result<(Outcome, Option<LoginSteps>), StoreError> {
    if rec.step != StepKind::Totp || !take(store, rec)? {
        return Ok((Outcome::Refused(LoginRefusal::Stale), None));
    }
    for _ in 0..4 {
        let cx = ctx(cfg, auth);
        let Some(l) = pipeline::read_account(store, rec.proven.user_id())? else {
            return Ok((Outcome::Refused(LoginRefusal::Stale), None));
        };
        let mut a = l.account.clone();
        let r = match LoginStep::resume(rec.proven.clone(), &mut a, &cx) {
            Ok(LoginStep::TotpNeeded(t)) if recovery => t.recovery(&mut a, code, &cx),
            Ok(LoginStep::TotpNeeded(t)) => t.code(&mut a, code, &cx),
            Ok(_) => return Ok((Outcome::Refused(LoginRefusal::Stale), None)),
            Err(e) => return Ok((Outcome::Refused(e), None)),
        };
        let again = r.is_err().then(|| LoginSteps {
            id: crate::session::random_id(),
            expires: cx.now + STEP_TTL_SECS,
            ..rec.clone()
        });
        let r = r.map_err(|(_, e)| e);
        let retry = match (&r, &again) {
            (Err(LoginRefusal::Blocked(_)), _) | (Ok(_), _) | (_, None) => None,
            (Err(_), Some(g)) => Some(g.clone()),
        };
        let action = if recovery {
            AuditAction::LoginRecoveryCode
        } else {
            AuditAction::LoginTotp
        };
        let step = StepOf {
            action,
            return_to: &rec.return_to,
            ending,
        };
        if let Some(o) = finish_step(store, &cx, &l, a, r, &step)? {
            if let Some(g) = &retry {
                store.apply(&[put(Table::LoginSteps, &g.id, g)])?;
            }
            return Ok((o, retry));
        }
    }
    Err(StoreError::Io(
        "account kept changing during the login".into(),
    ))
}

/// The issuer shown in authenticator apps.
pub const TOTP_ISSUER: &str = "医療情報ネット";

/// The enrolment page's secret: made once per step record and kept there (server-side), so
/// a reload shows the same QR code. Returns the record as stored and the otpauth URI.
pub fn enrol_secret(
    store: &dyn Store,
    rec: &LoginSteps,
) -> Result<Option<(LoginSteps, String)>, StoreError> {
    use crate::accounts::totp::{otpauth_uri, TotpSecret};
    if rec.step != StepKind::EnrolTotp {
        return Ok(None);
    }
    let mut r = rec.clone();
    if r.enrol_secret.is_none() {
        let read = store.get_versioned(Table::LoginSteps, rec.id.as_bytes())?;
        if read.value.is_none() {
            return Ok(None);
        }
        r.enrol_secret = Some(TotpSecret::generate());
        let w = put(Table::LoginSteps, &r.id, &r);
        if !store.commit(&Commit::guarded(&read, vec![w]))? {
            return Ok(None);
        }
    }
    let secret = r.enrol_secret.as_ref().expect("set above");
    let uri = otpauth_uri(secret, TOTP_ISSUER, rec.proven.user_id());
    Ok(Some((r, uri)))
}

/// The first code from the app confirms the enrolment; returns the outcome and, on success,
/// the recovery codes to show once. A wrong code keeps the record (and its secret).
pub fn enrol_confirm(
    store: &dyn Store,
    cfg: &LocalConfig,
    auth: &LocalAuth,
    rec: &LoginSteps,
    code: &str,
    ending: &Ending,
) -> Result<(Outcome, Vec<String>), StoreError> {
    let stale = || Ok((Outcome::Refused(LoginRefusal::Stale), Vec::new()));
    let Some(secret) = rec.enrol_secret.clone() else {
        return stale();
    };
    if rec.step != StepKind::EnrolTotp {
        return stale();
    }
    let cx = ctx(cfg, auth);
    let Some(l) = pipeline::read_account(store, rec.proven.user_id())? else {
        return stale();
    };
    let mut a = l.account.clone();
    let e = match LoginStep::resume(rec.proven.clone(), &mut a, &cx) {
        Ok(LoginStep::EnrolTotp(e)) => e,
        Ok(_) => return stale(),
        Err(r) => return Ok((Outcome::Refused(r), Vec::new())),
    };
    match e.confirm(&mut a, secret, code, &cx) {
        Ok((next, codes)) => {
            if !take(store, rec)? {
                return stale();
            }
            let step = StepOf {
                action: AuditAction::LoginTotpEnrol,
                return_to: &rec.return_to,
                ending,
            };
            let r = finish_step(store, &cx, &l, a, Ok(next), &step)?;
            Ok((r.unwrap_or(Outcome::Refused(LoginRefusal::Stale)), codes))
        }
        Err((_, err)) => Ok((Outcome::Refused(LoginRefusal::Totp(err)), Vec::new())),
    }
}

/// Deletes expired (or unreadable) step records; returns how many. A scan: step records live
/// minutes and are few (one per password login in progress); a record rewritten meanwhile is
/// kept by the guard.
pub fn sweep(store: &dyn Store, now: i64) -> Result<usize, StoreError> {
    let mut n = 0;
    for (k, _) in store.scan(Table::LoginSteps, b"", false, usize::MAX)? {
        // Judged on a versioned read, deleted only at that version.
        let read = store.get_versioned(Table::LoginSteps, &k)?;
        let Some(v) = &read.value else { continue };
        let dead = serde_json::from_slice::<LoginSteps>(v)
            .map(|r| r.expires <= now)
            .unwrap_or(true);
        let del = vec![(Table::LoginSteps, k.clone(), None)];
        if dead && store.commit(&Commit::guarded(&read, del))? {
            n += 1;
        }
    }
    Ok(n)
}
