//! The login state machine over an [`Account`].

use serde::{Deserialize, Serialize};

use super::{Account, ChangeError, Ctx, Message};
use crate::accounts::password::{HashError, Password};
use crate::accounts::reset::{ResetError, ResetKind, ResetTicket};
use crate::accounts::throttle::Blocked;
use crate::accounts::totp::{self, Enrolment, TotpError, TotpSecret};
use crate::reason::Reason;

/// How the login was completed: the `X-Samlgate-Auth-Method` header and the JWT `amr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Password,
    PasswordTotp,
    /// Password and a recovery code (a look-up secret: still a second factor).
    PasswordRecovery,
}

impl AuthMethod {
    pub fn header_value(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::PasswordTotp => "password+totp",
            AuthMethod::PasswordRecovery => "password+recovery",
        }
    }

    /// RFC 8176 values.
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            AuthMethod::Password => &["pwd"],
            AuthMethod::PasswordTotp => &["pwd", "otp", "mfa"],
            AuthMethod::PasswordRecovery => &["pwd", "mfa"],
        }
    }

    pub fn is_multi_factor(self) -> bool {
        self != AuthMethod::Password
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SecondVia {
    Totp,
    Recovery,
}

/// What a login in progress has proven so far: kept server-side in the pending-login record
/// (never in a form field) between the steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proven {
    user_id: String,
    second: Option<SecondVia>,
    /// Came by a mailed reset link instead of the password: a new password must be set
    /// before the login is done, whatever `must_change` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reset: bool,
    /// With `reset`: the account's password version the link was bound to. Any password
    /// change meanwhile (another link, the 事務局) makes this login stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pw_version: Option<u64>,
}

impl Proven {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// This login came by a mailed reset link (and has not set the new password yet).
    pub fn is_reset(&self) -> bool {
        self.reset
    }
}

/// Why a login step was refused. One answer for an unknown id and a wrong password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    WrongPassword,
    Blocked(Blocked),
    /// Only said after the right password, so guessing does not learn it.
    Disabled,
    /// The 事務局's one-time password was not used in time.
    TemporaryExpired,
    /// The stored hash cannot be read: an operator problem; fail closed.
    Unusable(HashError),
    Totp(TotpError),
    WrongRecoveryCode,
    /// The pending login does not belong to this account any more.
    Stale,
}

impl LoginRefusal {
    /// The reason for the audit line and the operator's log.
    pub fn reason(&self) -> Reason {
        match self {
            LoginRefusal::WrongPassword => Reason::LocalWrongPassword,
            LoginRefusal::Blocked(Blocked::Wait { .. }) => Reason::LocalThrottled,
            LoginRefusal::Blocked(Blocked::Locked { .. }) => Reason::LocalLocked,
            LoginRefusal::Disabled => Reason::LocalDisabled,
            LoginRefusal::TemporaryExpired => Reason::LocalTemporaryExpired,
            LoginRefusal::Unusable(_) => Reason::LocalHashUnusable,
            LoginRefusal::Totp(e) => e.reason(),
            LoginRefusal::WrongRecoveryCode => Reason::LocalRecoveryWrong,
            LoginRefusal::Stale => Reason::LocalLoginStale,
        }
    }

    pub fn code(&self) -> &'static str {
        self.reason().code()
    }

    /// The form's message: the reason's, except a throttle or lock, which says how long.
    pub fn message(&self) -> Message {
        match self {
            LoginRefusal::Blocked(b) => b.message(),
            _ => Message::of(self.reason()),
        }
    }
}

/// Where a login stands. Each pending step is consumed by the action that completes it.
#[derive(Debug)]
pub enum LoginStep {
    TotpNeeded(TotpNeeded),
    ChangePassword(ChangePassword),
    EnrolTotp(EnrolTotp),
    Done(Done),
}

#[derive(Debug)]
pub struct TotpNeeded(Proven);
#[derive(Debug)]
pub struct ChangePassword(Proven);
#[derive(Debug)]
pub struct EnrolTotp(Proven);

/// A completed login: make the session for `user_id` (the same `User` as SSO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub user_id: String,
    pub method: AuthMethod,
}

/// Checks the ID/password form. `account` is `None` for an unknown id (then a dummy hash is
/// computed, so the answer and its timing match a wrong password).
pub fn login(
    account: Option<&mut Account>,
    pw: &Password,
    cx: &Ctx,
) -> Result<LoginStep, LoginRefusal> {
    let Some(a) = account else {
        cx.hasher.dummy_verify(pw);
        return Err(LoginRefusal::WrongPassword);
    };
    // A locked or waiting account is refused before hashing: no oracle while locked.
    a.throttle
        .check(&cx.cfg.throttle, cx.now)
        .map_err(LoginRefusal::Blocked)?;
    match cx.hasher.verify(pw, &a.password) {
        Err(HashError::Mismatch) => {
            a.throttle = std::mem::take(&mut a.throttle).on_failure(&cx.cfg.throttle, cx.now);
            return Err(LoginRefusal::WrongPassword);
        }
        Err(e) => return Err(LoginRefusal::Unusable(e)),
        Ok(v) if v.needs_rehash => {
            // Upgrade while the password is at hand; on failure the old hash still works.
            if let Ok(h) = cx.hasher.hash(pw) {
                a.password = h;
            }
        }
        Ok(_) => {}
    }
    if a.disabled {
        return Err(LoginRefusal::Disabled);
    }
    if a.must_change && a.temp_expires_at.is_some_and(|t| cx.now >= t) {
        return Err(LoginRefusal::TemporaryExpired);
    }
    let proven = Proven {
        user_id: a.user_id.clone(),
        second: None,
        reset: false,
        pw_version: None,
    };
    Ok(advance(proven, a, cx))
}

/// Why a mailed reset link does not lead on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a ticket of this account, or wrong token.
    Invalid,
    Expired,
    /// The password changed after the link was mailed (the link was used, or the 事務局 reset
    /// it, or the person changed it): a link works once, for the password it replaced.
    Superseded,
    Refused(LoginRefusal),
}

impl LinkRefusal {
    pub fn reason(&self) -> Reason {
        match self {
            LinkRefusal::Invalid => Reason::LocalResetLinkInvalid,
            LinkRefusal::Expired => Reason::LocalResetLinkExpired,
            LinkRefusal::Superseded => Reason::LocalResetLinkSuperseded,
            LinkRefusal::Refused(r) => r.reason(),
        }
    }

    pub fn code(&self) -> &'static str {
        self.reason().code()
    }

    /// One message for the first three: the way forward is the same.
    pub fn message(&self) -> Message {
        match self {
            LinkRefusal::Refused(r) => r.message(),
            _ => Message::of(self.reason()),
        }
    }
}

/// A mailed reset link, presented: the ticket stored under the token's hash and the account
/// it names. Leads into the forced change (after the TOTP code, if the account has one: the
/// mailbox replaces the password, not the second factor). The caller deletes the ticket in
/// the write that stores the next step.
pub fn redeem_link(
    ticket: ResetTicket,
    token: &str,
    a: &mut Account,
    cx: &Ctx,
) -> Result<LoginStep, LinkRefusal> {
    if ticket.user_id != a.user_id || ticket.kind != ResetKind::MailLink {
        return Err(LinkRefusal::Invalid);
    }
    let version = ticket.password_version;
    match ticket.redeem(token, cx.now) {
        Ok(_) => {}
        Err(ResetError::Wrong) => return Err(LinkRefusal::Invalid),
        Err(ResetError::Expired) => return Err(LinkRefusal::Expired),
    }
    if version != a.password_version {
        return Err(LinkRefusal::Superseded);
    }
    let proven = Proven {
        user_id: a.user_id.clone(),
        second: None,
        reset: true,
        pw_version: Some(version),
    };
    LoginStep::resume(proven, a, cx).map_err(LinkRefusal::Refused)
}

/// The one place that orders the steps. Throttle state is cleared only here, at `Done`: a
/// right password followed by wrong codes keeps counting towards the lock.
fn advance(proven: Proven, a: &mut Account, cx: &Ctx) -> LoginStep {
    let mode = cx.cfg.second_factor;
    if a.second_factor_applies(mode) && a.totp.is_some() && proven.second.is_none() {
        return LoginStep::TotpNeeded(TotpNeeded(proven));
    }
    if a.must_change || proven.reset {
        return LoginStep::ChangePassword(ChangePassword(proven));
    }
    if a.second_factor_required(mode) && a.totp.is_none() {
        return LoginStep::EnrolTotp(EnrolTotp(proven));
    }
    a.throttle = std::mem::take(&mut a.throttle).on_success();
    let method = match proven.second {
        None => AuthMethod::Password,
        Some(SecondVia::Totp) => AuthMethod::PasswordTotp,
        Some(SecondVia::Recovery) => AuthMethod::PasswordRecovery,
    };
    LoginStep::Done(Done {
        user_id: proven.user_id,
        method,
    })
}

impl LoginStep {
    /// Picks a pending login up again with the account as it is now.
    pub fn resume(proven: Proven, a: &mut Account, cx: &Ctx) -> Result<LoginStep, LoginRefusal> {
        if proven.user_id != a.user_id {
            return Err(LoginRefusal::Stale);
        }
        if proven.pw_version.is_some_and(|v| v != a.password_version) {
            return Err(LoginRefusal::Stale);
        }
        if a.disabled {
            return Err(LoginRefusal::Disabled);
        }
        if a.throttle.is_locked(cx.now) {
            return Err(LoginRefusal::Blocked(Blocked::Locked {
                until: a.throttle.lock.and_then(|l| l.until),
            }));
        }
        Ok(advance(proven, a, cx))
    }

    /// What to keep in the pending-login record; `None` once done.
    pub fn proven(&self) -> Option<&Proven> {
        match self {
            LoginStep::TotpNeeded(TotpNeeded(p))
            | LoginStep::ChangePassword(ChangePassword(p))
            | LoginStep::EnrolTotp(EnrolTotp(p)) => Some(p),
            LoginStep::Done(_) => None,
        }
    }
}

impl TotpNeeded {
    /// A code from the authenticator. On refusal the step is handed back for another try.
    pub fn code(
        self,
        a: &mut Account,
        code: &str,
        cx: &Ctx,
    ) -> Result<LoginStep, (Self, LoginRefusal)> {
        if let Err(b) = a.throttle.check(&cx.cfg.throttle, cx.now) {
            return Err((self, LoginRefusal::Blocked(b)));
        }
        let Some(en) = a.totp.as_mut() else {
            return Err((self, LoginRefusal::Stale));
        };
        match totp::verify(&en.secret, code, cx.now, en.last_step) {
            Ok(step) => {
                en.last_step = Some(step);
                Ok(self.passed(SecondVia::Totp, a, cx))
            }
            Err(TotpError::Malformed) => Err((self, LoginRefusal::Totp(TotpError::Malformed))),
            Err(e) => {
                a.throttle = std::mem::take(&mut a.throttle).on_failure(&cx.cfg.throttle, cx.now);
                Err((self, LoginRefusal::Totp(e)))
            }
        }
    }

    /// A recovery code instead of a TOTP code; it is used up.
    pub fn recovery(
        self,
        a: &mut Account,
        code: &str,
        cx: &Ctx,
    ) -> Result<LoginStep, (Self, LoginRefusal)> {
        if let Err(b) = a.throttle.check(&cx.cfg.throttle, cx.now) {
            return Err((self, LoginRefusal::Blocked(b)));
        }
        let redeemed = a.totp.as_mut().is_some_and(|en| en.recovery.redeem(code));
        if !redeemed {
            a.throttle = std::mem::take(&mut a.throttle).on_failure(&cx.cfg.throttle, cx.now);
            return Err((self, LoginRefusal::WrongRecoveryCode));
        }
        Ok(self.passed(SecondVia::Recovery, a, cx))
    }

    fn passed(self, via: SecondVia, a: &mut Account, cx: &Ctx) -> LoginStep {
        let mut p = self.0;
        p.second = Some(via);
        advance(p, a, cx)
    }
}

impl ChangePassword {
    /// The new password (パスワード変更). Refusals list every rule broken.
    pub fn submit(
        self,
        a: &mut Account,
        new: &Password,
        cx: &Ctx,
    ) -> Result<LoginStep, (Self, ChangeError)> {
        match a.set_password(new, cx) {
            Ok(()) => {
                let mut p = self.0;
                // The reset is done: the new password is the one this login now stands on.
                p.reset = false;
                p.pw_version = None;
                Ok(advance(p, a, cx))
            }
            Err(e) => Err((self, e)),
        }
    }
}

impl EnrolTotp {
    /// A new secret, URI and QR code to show. Keep `secret` in the pending-login record until
    /// `confirm`.
    pub fn start(&self, issuer: &str) -> Enrolment {
        Enrolment::new(issuer, &self.0.user_id)
    }

    /// The first code from the app: enrols, and returns the recovery codes to show once.
    pub fn confirm(
        self,
        a: &mut Account,
        secret: TotpSecret,
        code: &str,
        cx: &Ctx,
    ) -> Result<(LoginStep, Vec<String>), (Self, TotpError)> {
        match a.enrol_totp(secret, code, cx.now) {
            Ok(codes) => {
                let mut p = self.0;
                p.second = Some(SecondVia::Totp);
                Ok((advance(p, a, cx), codes))
            }
            Err(e) => Err((self, e)),
        }
    }
}
