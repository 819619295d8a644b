//! What an admin operation answers when it refuses (a leaf: `account_ops` uses it too).

use serde::Serialize;
use serde_json::Value;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub(crate) fn nonempty(what: &str, v: &str) -> Result<(), AdminError> {
    if v.trim().is_empty() {
        return Err(AdminError::Invalid(format!("{what} is empty")));
    }
    Ok(())
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("records serialize")
}
