//! The consent decision (同意) per G-MIS account, and the pending logins waiting for it.

use serde::{Deserialize, Serialize};

use super::{load, load_all, put, Profile};
use crate::store::{Store, StoreError, Table, Write};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConsentDecision {
    Accepted,
    /// The user said 同意しない: SSO is blocked until the secretariat reopens it.
    Rejected,
    /// The secretariat blocked SSO for this account.
    BlockedBySecretariat,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsentState {
    pub gmis_id: String,
    pub decision: ConsentDecision,
    /// The consent text's version the decision was made on.
    pub version: String,
    pub at: String,
    #[serde(default)]
    pub detail: String,
    /// The verified profile at the decision (name, facility, mail): the secretariat contacts
    /// a person who said 同意しない. Absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

impl ConsentState {
    pub fn blocks(&self) -> bool {
        matches!(
            self.decision,
            ConsentDecision::Rejected | ConsentDecision::BlockedBySecretariat
        )
    }
}

pub fn get(store: &dyn Store, gmis_id: &str) -> Result<Option<ConsentState>, StoreError> {
    load(store, Table::Consents, gmis_id)
}

pub fn list(store: &dyn Store) -> Result<Vec<ConsentState>, StoreError> {
    load_all(store, Table::Consents)
}

pub fn write(state: &ConsentState) -> Write {
    put(Table::Consents, &state.gmis_id, state)
}

/// A verified login waiting on the consent page. Server-side only; the browser holds a
/// signed cookie naming it. Consumed exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingLogin {
    pub id: String,
    /// The form's CSRF token, bound to this pending login.
    pub csrf: String,
    pub profile: Profile,
    pub name_id: String,
    #[serde(default)]
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    /// Unix seconds, the session's hard end from the assertion (if any).
    pub session_not_on_or_after: Option<i64>,
    pub relay_state: String,
    pub assertion_id: String,
    pub link_to: Option<String>,
    /// Unix seconds.
    pub expires: i64,
}

pub const PENDING_TTL_SECS: i64 = 600;

pub fn pending_get(store: &dyn Store, id: &str) -> Result<Option<PendingLogin>, StoreError> {
    let p: Option<PendingLogin> = load(store, Table::Pending, id)?;
    Ok(p.filter(|p| p.expires > chrono::Utc::now().timestamp()))
}

/// Deletes expired pending logins.
pub fn pending_sweep(store: &dyn Store, now: i64) -> Result<usize, StoreError> {
    store.expired_sweep(Table::Pending, now)
}
