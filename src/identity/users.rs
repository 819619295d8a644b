//! Local users of 医療情報ネット and their link to a G-MIS account.
//!
//! A user row is created only when a G-MIS login is accepted (consent given, or consent not
//! required). An existing local account (created by ID/password registration, imported with
//! `samlgate users import`) is linked to a G-MIS account only through an approved application
//! that names it; samlgate never guesses a link.

use super::account::Account;
use super::{load, load_all, now_rfc3339, put, Profile};
use crate::audit::AuditAction;
use crate::store::{Expectation, Store, StoreError, Table, Version, Write};

pub use crate::model::{contact_key, User};

pub fn get(store: &dyn Store, id: &str) -> Result<Option<User>, StoreError> {
    load(store, Table::Users, id)
}

/// The local account linked to this G-MIS account. An index entry whose account does not name
/// this G-MIS id back (left by an older version) is no link.
pub fn by_gmis(store: &dyn Store, gmis_id: &str) -> Result<Option<User>, StoreError> {
    match store.get(Table::UserByGmis, gmis_id.as_bytes())? {
        None => Ok(None),
        Some(id) => Ok(get(store, &String::from_utf8_lossy(&id))?
            .filter(|u| u.gmis_id.as_deref() == Some(gmis_id))),
    }
}

/// Whether a first login of this G-MIS account would collide with an existing local account
/// of the same id that is not linked to it (a local account, or one linked to someone else).
pub fn id_taken(store: &dyn Store, gmis_id: &str) -> Result<bool, StoreError> {
    Ok(get(store, gmis_id)?.is_some_and(|u| u.gmis_id.as_deref() != Some(gmis_id)))
}

/// Serializes the check-then-write of user rows and links (registration, linking, import,
/// unlink) within this process: the store's batch guard covers one key, and a registration
/// must see the users table unchanged between choosing an id and writing it.
pub fn registry_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
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

/// Why a G-MIS login cannot be registered as asked.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the application links to local account {0}, which does not exist")]
    LinkTargetMissing(String),
    #[error(
        "the application links to local account {local}, which is linked to G-MIS account {other}"
    )]
    LinkTargetTaken { local: String, other: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a registration did, for the audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Known user, nothing changed: no write.
    Unchanged,
    /// Known user, profile refreshed.
    Refreshed,
    /// A new local account with the G-MIS id.
    New,
    /// A new local account under a fresh id, because the G-MIS id is an existing account's.
    NewRenamed { taken: String },
    /// Linked to the existing local account an approved application named.
    Linked,
}

impl Registered {
    /// The audit action and detail, or `None` when nothing is worth a line (a refresh).
    pub fn audit(&self, u: &User) -> Option<(AuditAction, String)> {
        let g = u.gmis_id.as_deref().unwrap_or("");
        Some(match self {
            Registered::Unchanged | Registered::Refreshed => return None,
            Registered::New => (AuditAction::UserRegister, format!("G-MIS account {g} registered as new local account {}", u.id)),
            Registered::NewRenamed { taken } => (
                AuditAction::UserRegister,
                format!(
                    "G-MIS account {g} registered as new local account {}: local id {taken} belongs to an existing account, which was left unchanged",
                    u.id
                ),
            ),
            Registered::Linked => (
                AuditAction::UserLink,
                format!("G-MIS account {g} linked to existing local account {} by its approved application", u.id),
            ),
        })
    }
}

/// What registering a login writes, and the rows it read beyond the account snapshot.
pub struct Registration {
    pub user: User,
    pub writes: Vec<Write>,
    pub how: Registered,
    /// Guards for rows read outside the snapshot (a fresh id must still be free).
    pub expect: Vec<Expectation>,
}

/// The writes that register (or refresh) the user for an accepted G-MIS login, decided on the
/// account snapshot `a`: the linked account when there is one; else the account an approved
/// application names (`link_to`); else a new account, under the G-MIS id when that is free and
/// under a fresh id when an existing account has it. An existing account is never rewritten or
/// handed over except to the G-MIS account it is linked to, or through `link_to`. `store` is
/// read only for a fresh id, or a `link_to` the snapshot did not read.
pub fn register(
    store: &dyn Store,
    a: &Account,
    p: &Profile,
    link_to: Option<&str>,
) -> Result<Registration, RegisterError> {
    let now = now_rfc3339();
    let gmis = p.account_id.as_str();
    let mut expect = Vec::new();
    let (mut user, how) = if let Some(u) = a.linked.clone() {
        if u.profile == *p {
            return Ok(Registration {
                user: u,
                writes: Vec::new(),
                how: Registered::Unchanged,
                expect,
            });
        }
        (u, Registered::Refreshed)
    } else if let Some(id) = link_to {
        let target = match a.link_target.as_ref().filter(|u| u.id == id) {
            Some(u) => Some(u.clone()),
            None => get(store, id)?,
        };
        let u = target.ok_or_else(|| RegisterError::LinkTargetMissing(id.into()))?;
        if let Some(other) = u.gmis_id.as_deref().filter(|g| *g != gmis) {
            return Err(RegisterError::LinkTargetTaken {
                local: id.into(),
                other: other.into(),
            });
        }
        (u, Registered::Linked)
    } else {
        let (id, how) = if a.same_id.is_some() {
            let fresh = fresh_id(store, gmis)?;
            expect.push(Expectation {
                table: Table::Users,
                key: fresh.as_bytes().to_vec(),
                version: Version::ABSENT,
            });
            (fresh, Registered::NewRenamed { taken: gmis.into() })
        } else {
            (gmis.to_string(), Registered::New)
        };
        let u = User {
            id,
            gmis_id: None,
            profile: p.clone(),
            created: now.clone(),
            updated: now.clone(),
            origin: crate::model::UserOrigin::Gmis,
        };
        (u, how)
    };
    user.gmis_id = Some(gmis.to_string());
    user.profile = p.clone();
    user.updated = now;
    let writes = vec![
        put(Table::Users, &user.id, &user),
        (
            Table::UserByGmis,
            gmis.as_bytes().to_vec(),
            Some(user.id.as_bytes().to_vec()),
        ),
    ];
    Ok(Registration {
        user,
        writes,
        how,
        expect,
    })
}

/// [`register`] on what the store holds now (tools and tests; call under [`registry_lock`]).
pub fn register_writes(
    store: &dyn Store,
    p: &Profile,
    link_to: Option<&str>,
) -> Result<(User, Vec<Write>, Registered), RegisterError> {
    let a = Account::read(store, p)?;
    let r = register(store, &a, p, link_to)?;
    Ok((r.user, r.writes, r.how))
}

/// The first free local id of the form `<gmis>-g2`, `<gmis>-g3`, ...
fn fresh_id(store: &dyn Store, gmis: &str) -> Result<String, StoreError> {
    for n in 2.. {
        let id = format!("{gmis}-g{n}");
        if get(store, &id)?.is_none() {
            return Ok(id);
        }
    }
    unreachable!("an unbounded range ends only by returning")
}

/// The writes that undo `u`'s link to G-MIS: the account stays, without its G-MIS id, and the
/// index entry goes. The caller adds the audit line and ends the sessions.
pub fn unlink_writes(u: &User) -> Vec<Write> {
    let mut w = Vec::new();
    if let Some(g) = &u.gmis_id {
        w.push((Table::UserByGmis, g.as_bytes().to_vec(), None));
    }
    let mut plain = u.clone();
    plain.gmis_id = None;
    plain.updated = now_rfc3339();
    w.push(put(Table::Users, &u.id, &plain));
    w
}
