//! Who the user is (the profile mapped from SAML attributes) and whether they may proceed
//! (the category policy and, later, consent and applications).

pub mod attributes;
pub mod policy;

use serde::{Deserialize, Serialize};

/// The local view of a G-MIS user, mapped by `[attributes]`. Values are the raw UTF-8 strings
/// the IdP signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub account_id: String,
    pub category: String,
    pub facility_code: String,
    pub facility_name: String,
    pub display_name: String,
    pub email: String,
}

impl Profile {
    pub fn field_mut(&mut self, field: &str) -> Option<&mut String> {
        Some(match field {
            "account_id" => &mut self.account_id,
            "category" => &mut self.category,
            "facility_code" => &mut self.facility_code,
            "facility_name" => &mut self.facility_name,
            "display_name" => &mut self.display_name,
            "email" => &mut self.email,
            _ => return None,
        })
    }

    pub fn field(&self, field: &str) -> Option<&str> {
        Some(match field {
            "account_id" => &self.account_id,
            "category" => &self.category,
            "facility_code" => &self.facility_code,
            "facility_name" => &self.facility_name,
            "display_name" => &self.display_name,
            "email" => &self.email,
            _ => return None,
        })
    }
}

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
