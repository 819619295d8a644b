//! Registered users: list, show, unlink, import existing local accounts.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{nonempty, to_json, AdminError};
use crate::audit::{self, AuditAction};
use crate::identity::applications::{self, ApplicationStatus};
use crate::identity::users::{self, User};
use crate::identity::{load_versioned, now_rfc3339};
use crate::model::{Profile, UserOrigin};
use crate::sessions::{self, Which, Why};
use crate::store::{Commit, Store, Table, Write};

/// How `users unlink` reads its id.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdReading {
    /// A local account id.
    Local,
    /// A G-MIS account id.
    Gmis,
}

pub struct List;

impl List {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        Ok(Value::Array(
            users::list(store)?.iter().map(to_json).collect(),
        ))
    }
}

/// One user by local id, else by G-MIS id.
pub struct Show<'a> {
    pub id: &'a str,
}

impl Show<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        let id = self.id;
        let u = users::get(store, id)?.or(users::by_gmis(store, id)?);
        Ok(to_json(&u.ok_or_else(|| {
            AdminError::NotFound(format!("no user {id}"))
        })?))
    }
}

/// The writes that undo `u`'s G-MIS link, with the `user.unlink` audit line.
pub(super) fn unlink(
    store: &dyn Store,
    u: &User,
    by: &str,
    why: &str,
) -> Result<Vec<Write>, AdminError> {
    let g = u.gmis_id.as_deref().unwrap_or("-");
    let mut w = users::unlink_writes(u);
    w.push(audit::entry(
        store,
        &format!("secretariat:{by}"),
        AuditAction::UserUnlink,
        &u.id,
        &format!(
            "local account {} unlinked from G-MIS account {g}; {why}",
            u.id
        ),
        None,
    )?);
    Ok(w)
}

/// The linked account `id` names. Without a reading, an id that is a linked local id and also
/// the G-MIS id of another account is refused: guessing would undo the wrong person's link.
fn unlink_target(
    store: &dyn Store,
    id: &str,
    reading: Option<IdReading>,
) -> Result<User, AdminError> {
    let local = users::get(store, id)?.filter(|u| u.gmis_id.is_some());
    let gmis = users::by_gmis(store, id)?;
    match (reading, local, gmis) {
        (Some(IdReading::Local), l, _) => {
            l.ok_or_else(|| AdminError::NotFound(format!("no linked account with local id {id}")))
        }
        (Some(IdReading::Gmis), _, g) => {
            g.ok_or_else(|| AdminError::NotFound(format!("no linked account for G-MIS id {id}")))
        }
        (None, Some(l), Some(g)) if l.id != g.id => Err(AdminError::Invalid(format!(
            "{id} is ambiguous: as a local id it is account {} (linked to G-MIS account {}); \
             as a G-MIS id it is linked to local account {}; say --local or --gmis",
            l.id,
            l.gmis_id.as_deref().unwrap_or("-"),
            g.id
        ))),
        (None, Some(u), _) | (None, None, Some(u)) => Ok(u),
        (None, None, None) => Err(AdminError::NotFound(format!(
            "no linked account {id} (local id or G-MIS id)"
        ))),
    }
}

fn changed_meanwhile() -> AdminError {
    AdminError::Invalid("the account changed meanwhile; try again".into())
}

/// `users unlink`: the account stays, without its link; an approved application that names
/// it is revoked too (else the next login would link it again); its sessions end.
pub struct Unlink<'a> {
    pub id: &'a str,
    pub reading: Option<IdReading>,
    pub by: &'a str,
    pub note: &'a str,
}

impl Unlink<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        nonempty("by", self.by)?;
        let _registry = users::registry_lock();
        let u = unlink_target(store, self.id, self.reading)?;
        // The row the guard holds to: as found above, else it changed meanwhile.
        let (now_u, read) = load_versioned::<User>(store, Table::Users, &u.id)?;
        if now_u.as_ref() != Some(&u) {
            return Err(changed_meanwhile());
        }
        let gmis = u.gmis_id.clone().unwrap_or_default();
        let mut why = format!("note: {}", self.note);
        let mut writes = Vec::new();
        if let Some(mut app) = applications::get(store, &gmis)?.filter(|a| {
            a.status == ApplicationStatus::Approved && a.link_to.as_deref() == Some(&u.id)
        }) {
            app.status = ApplicationStatus::Revoked;
            app.updated = now_rfc3339();
            writes.push(applications::write(&app));
            why.push_str("; its linking application was revoked");
        }
        writes.extend(unlink(store, &u, self.by, &why)?);
        if !store.commit(&Commit::guarded(&read, writes))? {
            return Err(changed_meanwhile());
        }
        let ended = sessions::end(store, None, Which::GmisAccount(&gmis), Why::Unlinked)?
            + sessions::end(store, None, Which::LocalAccount(&u.id), Why::Unlinked)?;
        Ok(json!({"id": u.id, "gmis_id": gmis, "unlinked": true, "sessions_ended": ended}))
    }
}

/// Registers existing local (ID/password) accounts, so G-MIS logins can be linked to them;
/// ids already registered are skipped.
pub struct Import<'a> {
    pub users: &'a [Profile],
    pub by: &'a str,
}

impl Import<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        nonempty("by", self.by)?;
        let _registry = users::registry_lock();
        let mut writes = Vec::new();
        let mut created = 0;
        for p in self.users {
            nonempty("account_id of an imported user", &p.account_id)?;
            if users::get(store, &p.account_id)?.is_some() {
                continue;
            }
            let now = now_rfc3339();
            let u = User {
                id: p.account_id.clone(),
                gmis_id: None,
                profile: p.clone(),
                created: now.clone(),
                updated: now,
                origin: UserOrigin::Local,
            };
            writes.extend(users::local_account_writes(&u));
            created += 1;
        }
        writes.push(audit::entry(
            store,
            &format!("secretariat:{}", self.by),
            AuditAction::UsersImport,
            "-",
            &format!("{created} local accounts"),
            None,
        )?);
        store.apply(&writes)?;
        Ok(json!({"imported": created, "skipped_existing": self.users.len() - created}))
    }
}
