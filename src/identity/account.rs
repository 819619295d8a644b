//! One G-MIS account as a login sees it: the rows of one [`Store::account`] read, decoded.
//! The policy decides on this alone ([`super::policy::decide`] is pure), and the login's commit
//! is guarded by exactly these rows ([`AccountRows::expectations`]).

use serde::de::DeserializeOwned;

use super::applications::Application;
use super::consent::ConsentState;
use super::Profile;
use crate::model::{contact_key, User};
use crate::store::{AccountRows, Store, StoreError, Versioned};

#[derive(Debug, Clone)]
pub struct Account {
    /// As read, with their versions: the guard of whatever is decided on them.
    pub rows: AccountRows,
    pub consent: Option<ConsentState>,
    pub application: Option<Application>,
    /// The local user linked to this G-MIS account: the link names it and it names the G-MIS
    /// id back (an index entry left by an older version that does not is no link).
    pub linked: Option<User>,
    /// The local user whose id is the G-MIS id, linked or not.
    pub same_id: Option<User>,
    /// The local user the application's `link_to` names.
    pub link_target: Option<User>,
    /// The local user with the profile's facility code and mail.
    pub contact_user: Option<User>,
}

fn decode<T: DeserializeOwned>(r: Option<&Versioned>) -> Result<Option<T>, StoreError> {
    let Some(v) = r.and_then(|r| r.value.as_deref().map(|v| (r, v))) else {
        return Ok(None);
    };
    serde_json::from_slice(v.1).map(Some).map_err(|e| {
        StoreError::Corrupt(format!(
            "{} {}: {e}",
            v.0.table.name(),
            String::from_utf8_lossy(&v.0.key)
        ))
    })
}

impl Account {
    /// One read of everything a login of `p` decides on.
    pub fn read(store: &dyn Store, p: &Profile) -> Result<Account, StoreError> {
        Account::decode(store.account(&p.account_id, Account::contact_of(p).as_deref())?)
    }

    /// The facility-and-mail index key the snapshot of `p` reads, when `p` has both.
    pub fn contact_of(p: &Profile) -> Option<Vec<u8>> {
        (!p.facility_code.is_empty() && !p.email.is_empty()).then(|| contact_key(p))
    }

    pub fn decode(rows: AccountRows) -> Result<Account, StoreError> {
        let gmis = rows.gmis_id.as_str();
        let linked: Option<User> = decode(rows.linked_user.as_ref())?;
        Ok(Account {
            consent: decode(Some(&rows.consent))?,
            application: decode(Some(&rows.application))?,
            linked: linked.filter(|u| u.gmis_id.as_deref() == Some(gmis)),
            same_id: decode(Some(&rows.same_id))?,
            link_target: decode(rows.link_target.as_ref())?,
            contact_user: decode(rows.contact_user.as_ref())?,
            rows,
        })
    }

    pub fn gmis_id(&self) -> &str {
        &self.rows.gmis_id
    }

    /// Whether a first login would collide with an existing local account of the same id that
    /// is not linked to this G-MIS account.
    pub fn id_taken(&self) -> bool {
        let gmis = self.gmis_id();
        self.same_id
            .as_ref()
            .is_some_and(|u| u.gmis_id.as_deref() != Some(gmis))
    }

    /// A local account, not linked to G-MIS, with the same facility code and mail: the person
    /// probably has a 医療情報ネット account already.
    pub fn unlinked_match(&self) -> Option<&User> {
        self.contact_user.as_ref().filter(|u| u.gmis_id.is_none())
    }
}
