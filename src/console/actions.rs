//! The console's actions: each form maps to one admin op ([`crate::admin::Op`], run through
//! [`crate::admin::execute_cfg`] like the CLI and the admin API, so the rules are theirs), and
//! each leaves a `console.<action>` audit line naming the operator, the note and the outcome.
//! Every action needs a note; a rejection's note is its reason, which the person is told.

use serde_json::Value;

use crate::account_ops::AccountOp;
use crate::admin::{execute_cfg, AdminError, IdReading, Op};
use crate::audit;
use crate::config::Config;
use crate::sessions::{self, Which, Why};
use crate::store::Store;

pub use super::action::Action;
use super::notice::{self, ActionMail};
use super::records::Detail;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("a note is required")]
    NoteMissing,
    #[error("this action does not apply to the account as it is now")]
    NotApplicable,
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// What an action did, for the page and the mail.
#[derive(Debug)]
pub struct Done {
    pub action: Action,
    /// The admin op's answer.
    pub result: Value,
    /// A password reset's one-time password, for the operator to hand over (never mailed).
    pub temporary_password: Option<String>,
    /// The message for the person, when they have a mail address.
    pub mail: Option<ActionMail>,
}

fn op_for(action: Action, d: &Detail, by: &str, note: &str) -> Result<Option<Op>, ActionError> {
    let gmis = || d.gmis_id.clone().ok_or(ActionError::NotApplicable);
    let local = || d.local_id.clone().ok_or(ActionError::NotApplicable);
    let by = by.to_string();
    let note = note.to_string();
    Ok(Some(match action {
        Action::Approve => Op::ApplicationApprove {
            gmis_id: gmis()?,
            by,
        },
        Action::Reject => Op::ApplicationRevoke {
            gmis_id: gmis()?,
            by,
            note,
        },
        Action::Reopen => Op::ConsentReopen {
            gmis_id: gmis()?,
            by,
            note,
        },
        Action::Block => Op::ConsentBlock {
            gmis_id: gmis()?,
            by,
            note,
        },
        Action::Unlink => Op::UsersUnlink {
            id: local()?,
            by,
            note,
            reading: Some(IdReading::Local),
        },
        Action::ResetPassword => Op::Accounts(AccountOp::AccountsReset {
            user_id: local()?,
            by,
            note,
            remove_totp: false,
        }),
        Action::Unlock => Op::Accounts(AccountOp::AccountsUnlock {
            user_id: local()?,
            by,
            note,
        }),
        // No admin op ends sessions alone; done here, audited like the others.
        Action::EndSessions => return Ok(None),
    }))
}

/// Ends every session of the person (G-MIS and local), returning how many.
fn end_sessions(store: &dyn Store, d: &Detail) -> Result<usize, AdminError> {
    let mut n = 0;
    if let Some(g) = &d.gmis_id {
        n += sessions::end(store, None, Which::GmisAccount(g), Why::Secretariat)?;
    }
    if let Some(l) = &d.local_id {
        n += sessions::end(store, None, Which::LocalAccount(l), Why::Secretariat)?;
    }
    Ok(n)
}

/// Runs `action` on the person `d` for `operator`, with the console's audit line.
pub fn run(
    store: &dyn Store,
    cfg: &Config,
    operator: &str,
    action: Action,
    d: &Detail,
    note: &str,
) -> Result<Done, ActionError> {
    let note = note.trim();
    if note.is_empty() {
        return Err(ActionError::NoteMissing);
    }
    if !action.applies(d) {
        return Err(ActionError::NotApplicable);
    }
    let result = match op_for(action, d, operator, note)? {
        Some(op) => execute_cfg(store, cfg, &op)?,
        None => serde_json::json!({"sessions_ended": end_sessions(store, d)?}),
    };
    let outcome = match result.get("sessions_ended") {
        Some(n) => format!("ok; sessions ended: {n}"),
        None => "ok".to_string(),
    };
    let line = audit::entry(
        store,
        &format!("secretariat:{operator}"),
        action.audit_action(),
        d.key(),
        &format!("note: {note}; {outcome}"),
        None,
    )
    .map_err(AdminError::from)?;
    store.apply(&[line]).map_err(AdminError::from)?;
    let temporary_password = result
        .get("temporary_password")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mail = notice::for_action(action, d, note, &cfg.support);
    Ok(Done {
        action,
        result,
        temporary_password,
        mail,
    })
}
