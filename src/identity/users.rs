//! Local users of 医療情報ネット and their link to a G-MIS account.
//!
//! A user row is created only when a G-MIS login is accepted (consent given, or consent not
//! required). An existing local account (created by ID/password registration, imported with
//! `samlgate users import`) is linked to a G-MIS account only through an approved application
//! that names it; samlgate never guesses a link.

use serde::{Deserialize, Serialize};

use super::{load, load_all, now_rfc3339, put, Profile};
use crate::store::{Store, StoreError, Table, Write};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// The local account id (for users first created by G-MIS SSO, the G-MIS account id).
    pub id: String,
    pub gmis_id: Option<String>,
    pub profile: Profile,
    pub created: String,
    pub updated: String,
    /// "gmis" (created by SSO) or "local" (existed before, e.g. imported).
    pub origin: String,
}

pub fn get(store: &dyn Store, id: &str) -> Result<Option<User>, StoreError> {
    load(store, Table::Users, id)
}

pub fn by_gmis(store: &dyn Store, gmis_id: &str) -> Result<Option<User>, StoreError> {
    match store.get(Table::UserByGmis, gmis_id.as_bytes())? {
        None => Ok(None),
        Some(id) => get(store, &String::from_utf8_lossy(&id)),
    }
}

pub fn list(store: &dyn Store) -> Result<Vec<User>, StoreError> {
    load_all(store, Table::Users)
}

/// A local account, not linked to G-MIS, with the same facility code and mail: the person
/// probably has a 医療情報ネット account already, so a new one must not be created silently.
pub fn unlinked_match(store: &dyn Store, p: &Profile) -> Result<Option<User>, StoreError> {
    if p.facility_code.is_empty() || p.email.is_empty() {
        return Ok(None);
    }
    let Some(id) = store.get(Table::UserByContact, &contact_key(p))? else {
        return Ok(None);
    };
    Ok(get(store, &String::from_utf8_lossy(&id))?.filter(|u| u.gmis_id.is_none()))
}

/// The index key of a local account by facility code and mail (mail compared case-blind).
pub fn contact_key(p: &Profile) -> Vec<u8> {
    format!("{}\u{0}{}", p.facility_code, p.email.to_lowercase()).into_bytes()
}

/// The writes that register an existing local (ID/password) account, with its index entry.
pub fn local_account_writes(u: &User) -> Vec<Write> {
    let mut w = vec![put(Table::Users, &u.id, u)];
    if !u.profile.facility_code.is_empty() && !u.profile.email.is_empty() {
        w.push((
            Table::UserByContact,
            contact_key(&u.profile),
            Some(u.id.as_bytes().to_vec()),
        ));
    }
    w
}

/// The writes that register (or refresh) the user for an accepted G-MIS login: linked to
/// `link_to` when an approved application names an existing account, else a new row.
pub fn register_writes(
    store: &dyn Store,
    p: &Profile,
    link_to: Option<&str>,
) -> Result<(User, Vec<Write>), String> {
    let now = now_rfc3339();
    let existing = match by_gmis(store, &p.account_id).map_err(|e| e.to_string())? {
        Some(u) => Some(u),
        None => match link_to {
            Some(id) => Some(get(store, id).map_err(|e| e.to_string())?.ok_or_else(|| {
                format!("application links to local account {id:?}, which does not exist")
            })?),
            None => None,
        },
    };
    let user = match existing {
        // Nothing changed since the last login: no write.
        Some(u) if u.gmis_id.as_deref() == Some(p.account_id.as_str()) && u.profile == *p => {
            return Ok((u, Vec::new()));
        }
        Some(mut u) => {
            if u.gmis_id.as_deref().is_some_and(|g| g != p.account_id) {
                return Err(format!(
                    "local account {} is linked to another G-MIS account",
                    u.id
                ));
            }
            u.gmis_id = Some(p.account_id.clone());
            u.profile = p.clone();
            u.updated = now;
            u
        }
        None => User {
            id: p.account_id.clone(),
            gmis_id: Some(p.account_id.clone()),
            profile: p.clone(),
            created: now.clone(),
            updated: now,
            origin: "gmis".into(),
        },
    };
    let writes = vec![
        put(Table::Users, &user.id, &user),
        (
            Table::UserByGmis,
            p.account_id.as_bytes().to_vec(),
            Some(user.id.as_bytes().to_vec()),
        ),
    ];
    Ok((user, writes))
}
