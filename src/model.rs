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
