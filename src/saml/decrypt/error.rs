//! How decryption fails.

use super::algorithms::RSA_1_5;

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// An algorithm, type or feature outside the allow-list, named by its URI.
    #[error("unsupported {what}: {uri}")]
    Unsupported { what: &'static str, uri: String },
    #[error("RSA-1_5 key transport ({RSA_1_5}) is refused; the IdP must use RSA-OAEP")]
    Rsa15Refused,
    /// Every (SP key, EncryptedKey) pair failed. `detail` says why per attempt: log it, never
    /// show it to the client.
    #[error("the EncryptedAssertion could not be decrypted with any SP key")]
    NoKeyWorked { detail: String },
    #[error("malformed EncryptedAssertion: {0}")]
    Malformed(String),
    #[error("no SP decryption key is configured")]
    NoKeys,
}

impl DecryptError {
    /// Everything known about the failure, for the log (includes the per-attempt reasons of
    /// `NoKeyWorked`, which `Display` leaves out on purpose).
    pub fn log_detail(&self) -> String {
        match self {
            DecryptError::NoKeyWorked { detail } => format!("{self}: {detail}"),
            other => other.to_string(),
        }
    }
}

pub(super) fn malformed<T>(m: impl Into<String>) -> Result<T, DecryptError> {
    Err(DecryptError::Malformed(m.into()))
}
