//! Password logins enter the pipeline where G-MIS logins do, at the decision: the account is
//! read once with its version ([`read_account`]), `accounts::account` decides on that snapshot
//! (as `policy::decide` does on a G-MIS account's), and each step ends in ONE
//! [`Store::commit`] ([`commit_step`]): the account's new state (throttle count, rehash, last
//! use), the audit line, a step record when steps remain, and for a finished login the session
//! with the browser's earlier sessions ended, guarded by the account row (and the user row the
//! session copies) as read. A 事務局 disable or password reset that lands between the password
//! check and the commit changes the account row, so the commit writes nothing (no session);
//! the password and TOTP forms read again and decide again, the change and enrolment forms
//! answer "stale, log in again". Durable on return: nothing to flush.

use crate::accounts::account::{Account, AuthMethod};
use crate::config::SessionConfig;
use crate::identity::users::User;
use crate::store::{Commit, SessionRecord, Store, StoreError, Table, Versioned, Write};

use super::NewSession;

/// What a finished password login ends in.
#[derive(Debug, Clone)]
pub enum Ending {
    /// A gateway session (the same record, cookie and headers as SSO's) that replaces the
    /// browser's earlier sessions.
    Session {
        absolute_secs: i64,
        idle_secs: i64,
        replaces: Vec<String>,
    },
    /// No session: the console seals its own cookie. The account's change and audit line only.
    AccountOnly,
}

impl Ending {
    pub fn session(cfg: &SessionConfig, replaces: Vec<String>) -> Ending {
        Ending::Session {
            absolute_secs: cfg.absolute_hours as i64 * 3600,
            idle_secs: cfg.idle_minutes as i64 * 60,
            replaces,
        }
    }
}

/// A local account as a step read it: the account and its row (the guard of the commit).
pub struct ReadAccount {
    pub account: Account,
    pub row: Versioned,
}

/// Reads an account with its version; `None` when there is none.
pub fn read_account(store: &dyn Store, user_id: &str) -> Result<Option<ReadAccount>, StoreError> {
    let row = store.get_versioned(Table::Accounts, user_id.as_bytes())?;
    let Some(raw) = row.value.as_deref() else {
        return Ok(None);
    };
    let account = serde_json::from_slice(raw)
        .map_err(|e| StoreError::Corrupt(format!("accounts {user_id}: {e}")))?;
    Ok(Some(ReadAccount { account, row }))
}

/// The user a finished login is for, with its row (the session copies its profile).
pub struct ReadUser {
    pub user: User,
    pub row: Versioned,
}

pub fn read_user(store: &dyn Store, id: &str) -> Result<ReadUser, StoreError> {
    let row = store.get_versioned(Table::Users, id.as_bytes())?;
    let raw = row
        .value
        .as_deref()
        .ok_or_else(|| StoreError::Corrupt(format!("account {id} has no user record")))?;
    let user =
        serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("users {id}: {e}")))?;
    Ok(ReadUser { user, row })
}

/// One step of a password login as decided.
pub struct Step<'a> {
    /// The account row the decision read.
    pub read: &'a Versioned,
    /// The account's new state, the audit line, a step record.
    pub writes: Vec<Write>,
    /// For a finished login: its user and how it was proven.
    pub done: Option<(&'a ReadUser, AuthMethod)>,
}

/// What [`commit_step`] did.
pub enum Committed {
    /// A row the decision read changed meanwhile: nothing was written.
    Changed,
    /// Written; with the session when a finished login ends in one.
    Written(Option<Box<NewSession>>),
}

/// Commits a step: its writes and, for a finished login ending in a session, the session with
/// the browser's earlier sessions ended, in one transaction guarded by the rows read.
pub fn commit_step(
    store: &dyn Store,
    step: Step<'_>,
    ending: &Ending,
) -> Result<Committed, StoreError> {
    let mut commit = Commit {
        expect: vec![step.read.expect()],
        writes: step.writes,
        ..Commit::default()
    };
    let mut made = None;
    if let (
        Some((u, method)),
        Ending::Session {
            absolute_secs,
            idle_secs,
            replaces,
        },
    ) = (step.done, ending)
    {
        let (rec, max_age) = session_for(&u.user, method, *absolute_secs);
        commit.expect.push(u.row.expect());
        commit.session = Some((rec.clone(), *idle_secs));
        commit.end_sessions = replaces.clone();
        made = Some(Box::new(NewSession { rec, max_age }));
    }
    if !store.commit(&commit)? {
        return Ok(Committed::Changed);
    }
    Ok(Committed::Written(made))
}

/// A fresh session for a password login (never an id the browser already had).
fn session_for(user: &User, method: AuthMethod, absolute_secs: i64) -> (SessionRecord, i64) {
    let now = chrono::Utc::now().timestamp();
    let rec = SessionRecord {
        id: crate::session::random_id(),
        profile: user.profile.clone(),
        local_user_id: user.id.clone(),
        name_id: String::new(),
        name_id_format: None,
        session_index: None,
        created: now,
        last_seen: now,
        expires: now + absolute_secs,
        auth_method: method.header_value().to_string(),
    };
    (rec, absolute_secs)
}
