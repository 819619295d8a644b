//! The audit log: an append-only record of consents, applications, user links, key changes
//! and secretariat actions, written in the same atomic batch as the change it describes.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Table, Write};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: String,
    /// Who: `user:<gmis id>`, `secretariat:<name>`, `admin-api`, `cli`.
    pub actor: String,
    /// What: `consent.accept`, `consent.reject`, `consent.reopen`, `application.approve`, ...
    pub action: String,
    /// Which account (G-MIS id or local id).
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_version: Option<String>,
}

/// The write that appends an entry; include it in the batch of the change.
pub fn entry(
    store: &dyn Store,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    consent_version: Option<&str>,
) -> Result<Write, StoreError> {
    let seq = store.next_seq()?;
    let e = AuditEntry {
        seq,
        at: crate::identity::now_rfc3339(),
        actor: actor.into(),
        action: action.into(),
        subject: subject.into(),
        detail: detail.into(),
        consent_version: consent_version.map(str::to_string),
    };
    Ok((
        Table::Audit,
        seq.to_be_bytes().to_vec(),
        Some(serde_json::to_vec(&e).expect("serialize")),
    ))
}

/// The last `n` entries, oldest first.
pub fn tail(store: &dyn Store, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let mut v: Vec<AuditEntry> = store
        .scan(Table::Audit, b"", true, n)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect();
    v.reverse();
    Ok(v)
}
