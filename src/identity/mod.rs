//! Who the user is (the profile mapped from SAML attributes) and whether they may proceed
//! (the category policy and, later, consent and applications).

pub mod attributes;
pub mod policy;

use serde::Serialize;

pub use crate::model::Profile;

pub mod account;
pub mod applications;
pub mod consent;
pub mod document;
pub mod local_accounts;
pub mod users;

use crate::store::{Store, StoreError, Table};

/// Reads one JSON record.
pub fn load<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    t: Table,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(t, key.as_bytes())? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{} {key}: {e}", t.name()))),
    }
}

/// Reads one JSON record with its version, for a write guarded by it
/// ([`crate::store::Commit::guarded`]): the write lands only if nobody wrote the record since.
pub fn load_versioned<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    t: Table,
    key: &str,
) -> Result<(Option<T>, crate::store::Versioned), StoreError> {
    let read = store.get_versioned(t, key.as_bytes())?;
    let value = match &read.value {
        None => None,
        Some(v) => Some(
            serde_json::from_slice(v)
                .map_err(|e| StoreError::Corrupt(format!("{} {key}: {e}", t.name())))?,
        ),
    };
    Ok((value, read))
}

/// Every JSON record of a table (small tables: users, consents, applications).
pub fn load_all<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    t: Table,
) -> Result<Vec<T>, StoreError> {
    store
        .scan(t, b"", false, usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!("{} {}: {e}", t.name(), String::from_utf8_lossy(&k)))
            })
        })
        .collect()
}

/// A write of `value` as JSON.
pub fn put<T: Serialize>(t: Table, key: &str, value: &T) -> crate::store::Write {
    (
        t,
        key.as_bytes().to_vec(),
        Some(serde_json::to_vec(value).expect("records serialize")),
    )
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
