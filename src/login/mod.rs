//! The login pipeline, as domain steps (no HTTP). A newcomer reads it top to bottom:
//!
//! ```text
//! Verified (saml::acs) --record_replay--> Fresh --admit(account snapshot, policy)--> Decision
//! Decision::Proceed(Admitted) | NeedsConsent(Admitted) --finish(one commit)--> NewSession
//! ```
//!
//! Each step consumes the previous one, so a session cannot be made from a login whose replay
//! entry was not recorded, nor committed on anything but the rows its decision read. `admit`
//! reads the account once ([`Account::read`]: one statement on PostgreSQL), the policy decides
//! on that snapshot alone, and `finish` commits the user row, link, consent, audit line and
//! session in one transaction guarded by every row read ([`crate::store::Store::commit`]).

pub mod local;
#[cfg(test)]
mod tests;

use crate::audit::AuditAction;
use crate::config::Config;
use crate::identity::account::Account;
use crate::identity::consent::{ConsentDecision, PendingLogin};
use crate::identity::policy::{self, ApplicationNeed};
use crate::identity::users::{self, RegisterError};
use crate::identity::Profile;
use crate::saml::acs::Verified;
use crate::store::{Commit, SessionRecord, Store, StoreError, Write};

/// A verified login, reduced to what the gateway keeps.
#[derive(Debug, Clone)]
pub struct Login {
    pub profile: Profile,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    /// Unix seconds.
    pub session_not_on_or_after: Option<i64>,
    /// Already checked to be a same-origin path.
    pub relay_state: String,
    pub assertion_id: String,
    /// Sessions the browser already had: ended when the new one starts (no fixation, no
    /// two live sessions in one browser).
    pub replaces: Vec<String>,
}

impl Login {
    /// The login a consent page parked, resumed by the browser that holds `replaces`.
    pub fn resumed(p: &PendingLogin, replaces: Vec<String>) -> Login {
        Login {
            profile: p.profile.clone(),
            name_id: p.name_id.clone(),
            name_id_format: p.name_id_format.clone(),
            session_index: p.session_index.clone(),
            session_not_on_or_after: p.session_not_on_or_after,
            relay_state: p.relay_state.clone(),
            assertion_id: p.assertion_id.clone(),
            replaces,
        }
    }
}

/// Why a login step did not go on.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The assertion was used before.
    #[error("Assertion ID already used (assertion {0})")]
    Replayed(String),
    /// A row the decision read changed before the commit: nothing was written.
    #[error("{0}")]
    AccountChanged(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A verified assertion whose replay entry is recorded: it can be used for this login only.
/// It carries the account snapshot read with the replay entry (one round trip).
pub struct Fresh {
    verified: Verified,
    profile: Profile,
    account: Account,
}

/// Records the assertion in the replay cache (exactly once across instances; it stays recorded
/// whatever the login then decides) and reads the account of `profile` (mapped from it) in the
/// same call ([`Store::replay_and_account`]); refuses a replay.
pub fn record_replay(
    store: &dyn Store,
    verified: Verified,
    idp_entity: &str,
    profile: Profile,
) -> Result<Fresh, LoginError> {
    let now = chrono::Utc::now().timestamp();
    // Whole seconds, rounded up, plus one: the store treats an entry as expired once
    // `now >= until`, and the time checks accept up to and including the limit itself.
    let r = verified.replay_until;
    let until = r.timestamp() + i64::from(r.timestamp_subsec_nanos() > 0) + 1;
    let contact = Account::contact_of(&profile);
    match store.replay_and_account(
        &verified.replay_key(idp_entity),
        until,
        now,
        &profile.account_id,
        contact.as_deref(),
    )? {
        Some(rows) => Ok(Fresh {
            verified,
            profile,
            account: Account::decode(rows)?,
        }),
        None => Err(LoginError::Replayed(verified.assertion_id)),
    }
}

impl Fresh {
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    /// Decides the login this assertion makes, landing on `relay_state`, on the snapshot read
    /// with the replay entry. A refusal (application needed, blocked) commits nothing, so the
    /// replay entry is made durable here; a login that goes on is made durable by its commit
    /// ([`Store::replay_and_account`]: one fsync per login on sled, not two).
    pub fn admit(
        self,
        store: &dyn Store,
        cfg: &Config,
        relay_state: String,
        replaces: Vec<String>,
    ) -> Result<Decision, LoginError> {
        let v = self.verified;
        let login = Login {
            profile: self.profile,
            name_id: v.name_id,
            name_id_format: v.name_id_format,
            session_index: v.session_index,
            session_not_on_or_after: v.session_not_on_or_after.map(|t| t.timestamp()),
            relay_state,
            assertion_id: v.assertion_id,
            replaces,
        };
        let d = decide(cfg, login, self.account);
        if matches!(d, Decision::NeedsApplication(..) | Decision::Blocked(_)) {
            store.flush()?;
        }
        Ok(d)
    }
}

/// What the policy decided on the account snapshot.
pub enum Decision {
    /// Make the session.
    Proceed(Admitted),
    /// Ask for consent first; the admitted login is parked until then.
    NeedsConsent(Admitted),
    /// An approved SSO application is needed (the login, for the application form).
    NeedsApplication(ApplicationNeed, Login),
    /// SSO for this account is blocked until the secretariat reopens it.
    Blocked(ConsentDecision),
}

/// A login the policy let through, with the snapshot it was decided on.
pub struct Admitted {
    pub login: Login,
    pub account: Account,
    /// The existing local account an approved application links the G-MIS account to.
    pub link_to: Option<String>,
}

/// Reads the account once and decides (a resumed consent, a password login).
pub fn admit(store: &dyn Store, cfg: &Config, login: Login) -> Result<Decision, LoginError> {
    let account = Account::read(store, &login.profile)?;
    Ok(decide(cfg, login, account))
}

/// The policy's decision on one snapshot.
fn decide(cfg: &Config, login: Login, account: Account) -> Decision {
    match policy::decide(&cfg.policy, &cfg.consent, &login.profile, &account) {
        policy::Decision::Proceed { link_to } => Decision::Proceed(Admitted {
            login,
            account,
            link_to,
        }),
        policy::Decision::NeedsConsent { link_to } => Decision::NeedsConsent(Admitted {
            login,
            account,
            link_to,
        }),
        policy::Decision::NeedsApplication(need) => Decision::NeedsApplication(need, login),
        policy::Decision::Blocked(by) => Decision::Blocked(by),
    }
}

/// A session committed with everything its login decided.
pub struct NewSession {
    pub rec: SessionRecord,
    /// Seconds until its hard end (the cookie's Max-Age).
    pub max_age: i64,
}

impl Admitted {
    /// Registers (or refreshes, or links) the user, writes `extra` (a consent and its audit
    /// line), creates a fresh session and ends the browser's earlier ones: one commit, guarded
    /// by every row the decision read. Refuses, writing nothing, when any of them changed.
    pub fn finish(
        self,
        store: &dyn Store,
        cfg: &Config,
        extra: Vec<Write>,
    ) -> Result<NewSession, LoginError> {
        let login = &self.login;
        let gmis = login.profile.account_id.as_str();
        let reg = users::register(
            store,
            &self.account,
            &login.profile,
            self.link_to.as_deref(),
        )
        .map_err(|e| match e {
            RegisterError::Store(e) => LoginError::Store(e),
            e => LoginError::AccountChanged(e.to_string()),
        })?;
        let mut writes = reg.writes;
        let mut audit = Vec::new();
        if let Some((action, detail)) = reg.how.audit(&reg.user) {
            // Numbered by the store inside the commit (no sequence round trip of its own).
            audit.push(audit_line(
                &format!("user:{gmis}"),
                action,
                &reg.user.id,
                &detail,
            ));
            tracing::info!(target: "samlgate::identity", account_id = %gmis, local_user = %reg.user.id, action = action.name(), detail = %detail, "user registered");
        }
        writes.extend(extra);
        let (rec, max_age) = session_for(cfg, login, &reg.user.id);
        let mut expect = self.account.rows.expectations();
        expect.extend(reg.expect);
        let commit = Commit {
            expect,
            writes,
            session: Some((rec.clone(), cfg.session.idle_minutes as i64 * 60)),
            end_sessions: login.replaces.clone(),
            audit,
        };
        if !store.commit(&commit)? {
            return Err(LoginError::AccountChanged(format!(
                "account {gmis} (local {}) changed while the login was decided (a block, an unlink, an application or another login); nothing was written",
                reg.user.id
            )));
        }
        Ok(NewSession { rec, max_age })
    }
}

/// The session record of a login for local account `local`, and its lifetime in seconds.
fn session_for(cfg: &Config, login: &Login, local: &str) -> (SessionRecord, i64) {
    let now = chrono::Utc::now().timestamp();
    let absolute = now + cfg.session.absolute_hours as i64 * 3600;
    let expires = login
        .session_not_on_or_after
        .map(|t| t.min(absolute))
        .unwrap_or(absolute);
    let rec = SessionRecord {
        local_user_id: local.to_string(),
        id: crate::session::random_id(),
        profile: login.profile.clone(),
        name_id: login.name_id.clone(),
        name_id_format: login.name_id_format.clone(),
        session_index: login.session_index.clone(),
        created: now,
        last_seen: now,
        expires,
        auth_method: String::new(),
    };
    (rec, expires - now)
}

/// An audit line for [`Commit::audit`]: `seq` 0, which the store replaces with the number it
/// assigns in the commit (the line is otherwise what `audit::entry` writes).
fn audit_line(actor: &str, action: AuditAction, subject: &str, detail: &str) -> Vec<u8> {
    let e = crate::audit::AuditEntry {
        seq: 0,
        at: crate::identity::now_rfc3339(),
        actor: actor.into(),
        action: action.name().into(),
        subject: subject.into(),
        detail: detail.into(),
        consent_version: None,
    };
    serde_json::to_vec(&e).expect("serialize")
}
