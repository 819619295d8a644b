//! SSO applications (SSO利用申請): required for categories outside `[policy] open_categories`,
//! and for linking a G-MIS account to an existing 医療情報ネット account.

use serde::{Deserialize, Serialize};

use super::{load, load_all, now_rfc3339, put, Profile};
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
    /// The verified G-MIS profile of an application filed from the refusal page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Contact phone given on the form.
    #[serde(default)]
    pub phone: String,
    /// Why the person applies (the form's reason).
    #[serde(default)]
    pub reason: String,
}

/// What a person typed into the application form on the refusal page.
#[derive(Debug, Clone, PartialEq)]
pub struct Filing {
    pub phone: String,
    pub reason: String,
    pub link_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilingError {
    #[error("the phone number is missing or not a phone number")]
    Phone,
    #[error("the reason is missing or longer than 1000 characters")]
    Reason,
    #[error("the existing account id is missing or malformed")]
    LinkTo,
}

/// Full-width letters and digits to ASCII, upper case, no spaces (`ｇｍ００１２` -> `GM0012`).
pub fn normalise_id(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkc()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

impl Filing {
    /// Checks and normalises the form; `link_needed` when the person must name the account.
    pub fn new(
        phone: &str,
        reason: &str,
        link_to: &str,
        link_needed: bool,
    ) -> Result<Filing, FilingError> {
        use unicode_normalization::UnicodeNormalization;
        let phone: String = phone.nfkc().collect::<String>().trim().to_string();
        let digits = phone.chars().filter(|c| c.is_ascii_digit()).count();
        if !(6..=15).contains(&digits)
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | ' ' | '(' | ')'))
        {
            return Err(FilingError::Phone);
        }
        let reason = reason.trim().to_string();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(FilingError::Reason);
        }
        // Local account ids keep their case; only full-width forms and spaces go.
        let link: String = link_to.nfkc().filter(|c| !c.is_whitespace()).collect();
        let link_to = if link.is_empty() {
            None
        } else if link.len() <= 64
            && link
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            Some(link)
        } else {
            return Err(FilingError::LinkTo);
        };
        if link_needed && link_to.is_none() {
            return Err(FilingError::LinkTo);
        }
        Ok(Filing {
            phone,
            reason,
            link_to,
        })
    }

    /// The pending application for the verified `profile`.
    pub fn application(&self, profile: &Profile) -> Application {
        let now = now_rfc3339();
        Application {
            gmis_id: profile.account_id.clone(),
            status: ApplicationStatus::Pending,
            link_to: self.link_to.clone(),
            note: "filed from the refusal page".into(),
            created: now.clone(),
            updated: now,
            profile: Some(profile.clone()),
            phone: self.phone.clone(),
            reason: self.reason.clone(),
        }
    }
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

#[cfg(test)]
mod filing_tests {
    use super::*;

    #[test]
    fn ids_are_normalised_from_full_width() {
        assert_eq!(normalise_id("ｇｍ００１２"), "GM0012");
        assert_eq!(normalise_id(" gm 0012 "), "GM0012");
    }

    #[test]
    fn filing_checks_its_fields() {
        assert!(Filing::new("03-1234-5678", "保健所業務", "", false).is_ok());
        assert_eq!(
            Filing::new("０３－１２３４－５６７８", "x", "", false)
                .unwrap()
                .phone,
            "03-1234-5678"
        );
        assert_eq!(Filing::new("abc", "x", "", false), Err(FilingError::Phone));
        assert_eq!(
            Filing::new("0312345678", " ", "", false),
            Err(FilingError::Reason)
        );
        assert_eq!(
            Filing::new("0312345678", "x", "", true),
            Err(FilingError::LinkTo)
        );
        assert_eq!(
            Filing::new("0312345678", "x", "ｎａｖｉ－１", true)
                .unwrap()
                .link_to
                .as_deref(),
            Some("navi-1")
        );
        assert_eq!(
            Filing::new("0312345678", "x", "<x>", false),
            Err(FilingError::LinkTo)
        );
    }
}
