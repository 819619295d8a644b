//! SSO application operations: add (optionally linking an existing account), approve,
//! revoke, list.

use serde_json::{json, Value};

use super::error::{nonempty, to_json, AdminError};
use super::users::unlink;
use crate::audit::{self, AuditAction};
use crate::identity::applications::{self, Application, ApplicationStatus};
use crate::identity::users;
use crate::identity::{load_versioned, now_rfc3339};
use crate::sessions::{self, Which, Why};
use crate::store::{Commit, Store, Table};

pub struct List;

impl List {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        Ok(Value::Array(
            applications::list(store)?.iter().map(to_json).collect(),
        ))
    }
}

/// A linking application may name only an existing local account that is not linked to
/// another G-MIS account.
fn check_link_target(store: &dyn Store, gmis_id: &str, local: &str) -> Result<(), AdminError> {
    let u = users::get(store, local)?
        .ok_or_else(|| AdminError::NotFound(format!("local account {local} does not exist")))?;
    match u.gmis_id {
        Some(g) if g != gmis_id => Err(AdminError::Invalid(format!(
            "local account {local} is already linked to {g}"
        ))),
        _ => Ok(()),
    }
}

pub struct Add<'a> {
    pub gmis_id: &'a str,
    pub link_to: Option<&'a str>,
    pub note: &'a str,
    pub by: &'a str,
    pub approve: bool,
}

impl Add<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        let Add {
            gmis_id,
            link_to,
            note,
            by,
            approve,
        } = *self;
        nonempty("gmis_id", gmis_id)?;
        nonempty("by", by)?;
        if let Some(l) = link_to {
            check_link_target(store, gmis_id, l)?;
        }
        if applications::get(store, gmis_id)?
            .is_some_and(|a| a.status != ApplicationStatus::Revoked)
        {
            return Err(AdminError::Invalid(format!(
                "{gmis_id} already has an application; approve or revoke it"
            )));
        }
        let now = now_rfc3339();
        let app = Application {
            gmis_id: gmis_id.into(),
            status: if approve {
                ApplicationStatus::Approved
            } else {
                ApplicationStatus::Pending
            },
            link_to: link_to.map(str::to_string),
            note: note.into(),
            created: now.clone(),
            updated: now,
            profile: None,
            phone: String::new(),
            reason: String::new(),
        };
        let detail = format!("status={:?} link_to={}", app.status, link_to.unwrap_or("-"));
        let a = audit::entry(
            store,
            &format!("secretariat:{by}"),
            AuditAction::ApplicationAdd,
            gmis_id,
            &detail,
            None,
        )?;
        store.apply(&[applications::write(&app), a])?;
        Ok(to_json(&app))
    }
}

/// Approves (`note` is then empty) or revokes an application.
pub struct Decide<'a> {
    pub gmis_id: &'a str,
    pub by: &'a str,
    pub approve: bool,
    pub note: &'a str,
}

impl Decide<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        let Decide {
            gmis_id,
            by,
            approve,
            note,
        } = *self;
        nonempty("by", by)?;
        let (app, read) = load_versioned::<Application>(store, Table::Applications, gmis_id)?;
        let mut app =
            app.ok_or_else(|| AdminError::NotFound(format!("{gmis_id} has no application")))?;
        if let (true, Some(l)) = (approve, &app.link_to) {
            // Another application may have linked the account since this one was filed.
            check_link_target(store, gmis_id, l)?;
        }
        app.status = if approve {
            ApplicationStatus::Approved
        } else {
            ApplicationStatus::Revoked
        };
        app.updated = now_rfc3339();
        let action = if approve {
            AuditAction::ApplicationApprove
        } else {
            AuditAction::ApplicationRevoke
        };
        let _registry = users::registry_lock();
        let mut writes = vec![
            applications::write(&app),
            audit::entry(
                store,
                &format!("secretariat:{by}"),
                action,
                gmis_id,
                note,
                None,
            )?,
        ];
        // Revoking a linking application removes the link it made, in the same batch.
        let unlinked = match (&app.link_to, users::by_gmis(store, gmis_id)?) {
            (Some(l), Some(u)) if !approve && &u.id == l => {
                let why = format!("application revoked: {note}");
                writes.extend(unlink(store, &u, by, &why)?);
                Some(u.id)
            }
            _ => None,
        };
        if !store.commit(&Commit::guarded(&read, writes))? {
            return Err(AdminError::Invalid(
                "the application changed meanwhile; try again".into(),
            ));
        }
        if approve {
            return Ok(to_json(&app));
        }
        let ended = sessions::end(store, None, Which::GmisAccount(gmis_id), Why::Revoked)?
            + unlinked.as_deref().map_or(Ok(0), |l| {
                sessions::end(store, None, Which::LocalAccount(l), Why::Revoked)
            })?;
        Ok(json!({"application": app, "unlinked": unlinked, "sessions_ended": ended}))
    }
}
