//! Consent operations: list, show, reopen a rejected or blocked account, block.

use serde_json::{json, Value};

use super::error::{nonempty, to_json, AdminError};
use crate::audit::{self, AuditAction};
use crate::identity::applications;
use crate::identity::consent::{self, ConsentDecision, ConsentState};
use crate::identity::users;
use crate::identity::{load_versioned, now_rfc3339};
use crate::sessions::{self, Which, Why};
use crate::store::{Commit, Store, Table};

pub struct List;

impl List {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        Ok(Value::Array(
            consent::list(store)?.iter().map(to_json).collect(),
        ))
    }
}

/// Everything about one G-MIS id: consent, application and user.
pub struct Show<'a> {
    pub gmis_id: &'a str,
    pub current_version: &'a str,
}

impl Show<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        let gmis_id = self.gmis_id;
        let c = consent::get(store, gmis_id)?;
        let app = applications::get(store, gmis_id)?;
        let user = users::by_gmis(store, gmis_id)?;
        if c.is_none() && app.is_none() && user.is_none() {
            return Err(AdminError::NotFound(format!(
                "no consent, application or user for {gmis_id}"
            )));
        }
        Ok(
            json!({"gmis_id": gmis_id, "consent": c, "application": app, "user": user, "current_version": self.current_version}),
        )
    }
}

/// Reopens SSO after a rejected consent or a secretariat block: the next SSO asks again.
pub struct Reopen<'a> {
    pub gmis_id: &'a str,
    pub by: &'a str,
    pub note: &'a str,
}

impl Reopen<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        let Reopen { gmis_id, by, note } = *self;
        nonempty("by (who reopens)", by)?;
        let (c, read) = load_versioned::<ConsentState>(store, Table::Consents, gmis_id)?;
        let c =
            c.ok_or_else(|| AdminError::NotFound(format!("{gmis_id} has no consent decision")))?;
        if !c.blocks() {
            return Err(AdminError::Invalid(format!(
                "{gmis_id} is not blocked (decision: {:?})",
                c.decision
            )));
        }
        let a = audit::entry(
            store,
            &format!("secretariat:{by}"),
            AuditAction::ConsentReopen,
            gmis_id,
            note,
            Some(&c.version),
        )?;
        let writes = vec![(Table::Consents, gmis_id.as_bytes().to_vec(), None), a];
        if !store.commit(&Commit::guarded(&read, writes))? {
            return Err(AdminError::Invalid(
                "the consent changed meanwhile; try again".into(),
            ));
        }
        // No session exists while blocked; one that slipped in beside the block (a login
        // finishing as it landed) must not come to life now.
        let ended = sessions::end(store, None, Which::GmisAccount(gmis_id), Why::Reopened)?;
        Ok(json!({"gmis_id": gmis_id, "reopened": true, "previous": c, "sessions_ended": ended}))
    }
}

/// Blocks SSO for an account (sticky until reopened).
pub struct Block<'a> {
    pub gmis_id: &'a str,
    pub by: &'a str,
    pub note: &'a str,
    pub consent_version: &'a str,
}

impl Block<'_> {
    pub fn apply(&self, store: &dyn Store) -> Result<Value, AdminError> {
        let Block {
            gmis_id, by, note, ..
        } = *self;
        nonempty("by", by)?;
        nonempty("note (the reason)", note)?;
        let st = ConsentState {
            gmis_id: gmis_id.into(),
            decision: ConsentDecision::BlockedBySecretariat,
            version: self.consent_version.into(),
            at: now_rfc3339(),
            detail: note.into(),
            // Keep the contact details of an earlier 同意しない.
            profile: consent::get(store, gmis_id)?.and_then(|c| c.profile),
        };
        let a = audit::entry(
            store,
            &format!("secretariat:{by}"),
            AuditAction::ConsentBlock,
            gmis_id,
            note,
            None,
        )?;
        store.apply(&[consent::write(&st), a])?;
        let ended = sessions::end(store, None, Which::GmisAccount(gmis_id), Why::Blocked)?;
        Ok(json!({"consent": st, "sessions_ended": ended}))
    }
}
