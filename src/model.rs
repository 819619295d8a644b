//! Plain data the domain modules and the store share (a leaf: it imports nothing of ours),
//! so `store` can hold a profile without depending on `identity`.

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

/// Where a registered user came from (stored as "gmis" / "local").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserOrigin {
    /// Created by a G-MIS SSO login.
    Gmis,
    /// Existed before (imported, or a local ID/password account).
    Local,
}

impl UserOrigin {
    /// As stored and shown: "gmis" or "local".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gmis => "gmis",
            Self::Local => "local",
        }
    }
}

impl std::fmt::Display for UserOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile field: what `[attributes]` maps, `required` names and the identity headers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileField {
    AccountId,
    Category,
    FacilityCode,
    FacilityName,
    DisplayName,
    Email,
}

impl ProfileField {
    /// In profile order.
    pub const ALL: [ProfileField; 6] = [
        Self::AccountId,
        Self::Category,
        Self::FacilityCode,
        Self::FacilityName,
        Self::DisplayName,
        Self::Email,
    ];
    /// The names config files use, in profile order.
    pub const NAMES: [&'static str; 6] = [
        "account_id",
        "category",
        "facility_code",
        "facility_name",
        "display_name",
        "email",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<ProfileField> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for ProfileField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Profile {
    pub fn field_mut(&mut self, field: ProfileField) -> &mut String {
        match field {
            ProfileField::AccountId => &mut self.account_id,
            ProfileField::Category => &mut self.category,
            ProfileField::FacilityCode => &mut self.facility_code,
            ProfileField::FacilityName => &mut self.facility_name,
            ProfileField::DisplayName => &mut self.display_name,
            ProfileField::Email => &mut self.email,
        }
    }

    pub fn field(&self, field: ProfileField) -> &str {
        match field {
            ProfileField::AccountId => &self.account_id,
            ProfileField::Category => &self.category,
            ProfileField::FacilityCode => &self.facility_code,
            ProfileField::FacilityName => &self.facility_name,
            ProfileField::DisplayName => &self.display_name,
            ProfileField::Email => &self.email,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProfileField;

    #[test]
    fn field_names_round_trip() {
        for f in ProfileField::ALL {
            assert_eq!(ProfileField::from_name(f.name()), Some(f));
        }
        assert_eq!(ProfileField::from_name("phone"), None);
    }
}

/// A local user of 医療情報ネット (crate::identity::users has its operations).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// The local account id (for users first created by G-MIS SSO, the G-MIS account id).
    pub id: String,
    pub gmis_id: Option<String>,
    pub profile: Profile,
    pub created: String,
    pub updated: String,
    /// "gmis" (created by SSO) or "local" (existed before, e.g. imported).
    pub origin: UserOrigin,
}

/// The index key of a local account by facility code and mail (mail compared case-blind).
pub fn contact_key(p: &Profile) -> Vec<u8> {
    format!("{}\u{0}{}", p.facility_code, p.email.to_lowercase()).into_bytes()
}
