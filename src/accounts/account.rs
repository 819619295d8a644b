//! The stored account and the login state machine.
//!
//! A login moves through typed steps, each consumed by the action that completes it:
//! password → [`TotpNeeded`] (if enrolled and applicable) → [`ChangePassword`] (first login,
//! after a reset by the 事務局) → [`EnrolTotp`] (if a second factor is required and missing)
//! → [`Done`]. The web layer keeps [`Proven`] in its pending-login record between requests and
//! calls [`LoginStep::resume`], which recomputes the step from the account: a step cannot be
//! skipped by replaying an old form. Methods mutate the `Account`; the caller stores it.

use serde::{Deserialize, Serialize};

use super::password::{HashError, Hasher, Password, PhcHash};
use super::policy::{Blocklist, Context, PolicyConfig, Refusal};
use super::reset::{initial_password, ResetConfig, ResetMailRate};
use super::throttle::{AccountThrottle, ThrottleConfig};
use super::totp::{self, RecoveryCodes, TotpError, TotpSecret};
use super::Message;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Staff,
    /// 事務局: manages accounts, so always needs a second factor.
    Secretariat,
}

/// Config `[local] second_factor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondFactor {
    /// Every account enrols TOTP right after its first password change.
    Required,
    /// Asked for when the user has enrolled (default: staff can adopt it at their own pace).
    #[default]
    Optional,
    /// Never asked for (the 事務局 role still is).
    Off,
}

/// Config `[local]`: everything a login decision depends on besides the account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    pub second_factor: SecondFactor,
    pub password: PolicyConfig,
    pub throttle: ThrottleConfig,
    pub reset: ResetConfig,
    pub argon2: super::password::HashParams,
}

/// What a decision is made with: config, the process-wide hasher and blocklist, and now.
pub struct Ctx<'a> {
    pub cfg: &'a LocalConfig,
    pub hasher: &'a Hasher,
    pub blocklist: &'a Blocklist,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    pub secret: TotpSecret,
    /// The last accepted time step: a code of this step or earlier is a replay.
    pub last_step: Option<u64>,
    pub recovery: RecoveryCodes,
    pub enrolled_at: String,
}

/// A local ID/password account. `user_id` is the id of the `identity::users::User` it signs
/// in as: one person is one user, whether by G-MIS or by password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: String,
    pub password: PhcHash,
    /// The password was issued by the 事務局 (initial or reset): change before anything else.
    pub must_change: bool,
    /// Goes up with every new password (chosen or issued): a mailed reset link is bound to the
    /// version it was issued for, so a password change makes every older link useless.
    #[serde(default)]
    pub password_version: u64,
    /// When an issued one-time password stops working (unix seconds).
    #[serde(default)]
    pub temp_expires_at: Option<i64>,
    pub role: Role,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub throttle: AccountThrottle,
    #[serde(default)]
    pub totp: Option<TotpEnrolment>,
    /// Reset links mailed lately (the per-account limit of `[local.reset]`).
    #[serde(default)]
    pub reset_mail: ResetMailRate,
    pub created: String,
    pub updated: String,
}

fn rfc3339(now: i64) -> String {
    chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Why a new password could not be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    Refused(Vec<Refusal>),
    Hash(HashError),
}

impl Account {
    /// A new account with a one-time initial password (returned, to show once).
    pub fn create(user_id: &str, role: Role, cx: &Ctx) -> Result<(Account, Password), HashError> {
        let pw = initial_password();
        let a = Account {
            user_id: user_id.to_string(),
            password: cx.hasher.hash(&pw)?,
            must_change: true,
            password_version: 0,
            temp_expires_at: Some(cx.now + cx.cfg.reset.initial_ttl_secs as i64),
            role,
            disabled: false,
            throttle: AccountThrottle::default(),
            totp: None,
            reset_mail: ResetMailRate::default(),
            created: rfc3339(cx.now),
            updated: rfc3339(cx.now),
        };
        Ok((a, pw))
    }

    /// An account with an imported initial password (`users import`): still must change it.
    pub fn import(
        user_id: &str,
        role: Role,
        pw: &Password,
        cx: &Ctx,
    ) -> Result<Account, HashError> {
        let (mut a, _) = Account::create(user_id, role, cx)?;
        a.password = cx.hasher.hash(pw)?;
        Ok(a)
    }

    /// 事務局 reset: a new one-time password (returned, to hand over), to be changed at next
    /// login; also lifts a lock. TOTP stays enrolled (use `remove_totp` for a lost device).
    pub fn issue_temporary(&mut self, cx: &Ctx) -> Result<Password, HashError> {
        let pw = initial_password();
        self.password = cx.hasher.hash(&pw)?;
        self.must_change = true;
        self.password_version += 1;
        self.temp_expires_at = Some(cx.now + cx.cfg.reset.initial_ttl_secs as i64);
        self.throttle = AccountThrottle::default();
        self.touch(cx.now);
        Ok(pw)
    }

    pub fn set_disabled(&mut self, disabled: bool, now: i64) {
        self.disabled = disabled;
        self.touch(now);
    }

    pub fn unlock(&mut self, now: i64) {
        self.throttle = std::mem::take(&mut self.throttle).unlock();
        self.touch(now);
    }

    pub fn remove_totp(&mut self, now: i64) {
        self.totp = None;
        self.touch(now);
    }

    fn touch(&mut self, now: i64) {
        self.updated = rfc3339(now);
    }

    /// A second factor is demanded of this account: by config or by its role.
    pub fn second_factor_required(&self, mode: SecondFactor) -> bool {
        mode == SecondFactor::Required || self.role == Role::Secretariat
    }

    /// A second factor protects this account's logins (so a shorter password is allowed).
    pub fn second_factor_applies(&self, mode: SecondFactor) -> bool {
        self.second_factor_required(mode) || (mode == SecondFactor::Optional && self.totp.is_some())
    }

    /// Sets a password the person chose (forced change, reset link or code, settings page),
    /// after the policy and a check that it is not the current one.
    pub fn set_password(&mut self, new: &Password, cx: &Ctx) -> Result<(), ChangeError> {
        let pcx = Context {
            user_id: &self.user_id,
            second_factor: self.second_factor_applies(cx.cfg.second_factor),
        };
        let mut refused = cx.cfg.password.check(new, &pcx, cx.blocklist);
        // Costs one more hash, but reusing the 事務局's one-time password defeats the change.
        if cx.hasher.verify(new, &self.password).is_ok() {
            refused.push(Refusal::SameAsCurrent);
        }
        if !refused.is_empty() {
            return Err(ChangeError::Refused(refused));
        }
        self.password = cx.hasher.hash(new).map_err(ChangeError::Hash)?;
        self.must_change = false;
        self.password_version += 1;
        self.temp_expires_at = None;
        self.throttle = AccountThrottle::default();
        self.touch(cx.now);
        Ok(())
    }

    /// Enrols TOTP once the person has typed a code from the new secret (proving the app has
    /// it); returns the recovery codes to show once.
    pub fn enrol_totp(
        &mut self,
        secret: TotpSecret,
        code: &str,
        now: i64,
    ) -> Result<Vec<String>, TotpError> {
        let step = totp::verify(&secret, code, now, None)?;
        let (plain, recovery) = RecoveryCodes::generate();
        self.totp = Some(TotpEnrolment {
            secret,
            last_step: Some(step),
            recovery,
            enrolled_at: rfc3339(now),
        });
        self.touch(now);
        Ok(plain)
    }
}

mod login;
pub use login::*;

#[cfg(test)]
mod tests;
