//! SSO applications (SSO利用申請): required for categories outside `[policy] open_categories`,
//! and for linking a G-MIS account to an existing 医療情報ネット account.

use serde::{Deserialize, Serialize};

use super::{load, load_all, put};
use crate::store::{Store, StoreError, Table, Write};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    /// Filed, not yet decided: SSO waits (sticky: no assertion clears it).
    Pending,
    Approved,
    Revoked,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Application {
    pub gmis_id: String,
    pub status: ApplicationStatus,
    /// An existing local account to link the G-MIS identity to, instead of creating one.
    pub link_to: Option<String>,
    #[serde(default)]
    pub note: String,
    pub created: String,
    pub updated: String,
}

pub fn get(store: &dyn Store, gmis_id: &str) -> Result<Option<Application>, StoreError> {
    load(store, Table::Applications, gmis_id)
}

pub fn list(store: &dyn Store) -> Result<Vec<Application>, StoreError> {
    load_all(store, Table::Applications)
}

pub fn write(a: &Application) -> Write {
    put(Table::Applications, &a.gmis_id, a)
}
