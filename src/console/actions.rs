//! The console's actions: each form maps to one admin op ([`crate::admin::Op`], run through
//! [`crate::admin::execute_cfg`] like the CLI and the admin API, so the rules are theirs), and
//! each leaves a `console.<action>` audit line naming the operator, the note and the outcome.
//! Every action needs a note; a rejection's note is its reason, which the person is told.

use serde_json::Value;

use crate::account_ops::AccountOp;
use crate::admin::{execute_cfg, AdminError, IdReading, Op};
use crate::audit;
use crate::config::Config;
use crate::store::Store;
use crate::web::pages::Lang;

use super::notice::{self, ActionMail};
use super::records::Detail;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Approve a pending SSO application.
    Approve,
    /// Reject a pending application (or revoke an approved one), with a reason.
    Reject,
    /// Reopen SSO after 同意しない or a suspension: the next login asks for consent again.
    Reopen,
    /// Suspend SSO for the account.
    Block,
    /// Undo the link between the G-MIS account and a local account.
    Unlink,
    /// End every session of the person.
    EndSessions,
    /// Issue a new one-time password for the local account (shown once, to the operator).
    ResetPassword,
    /// Lift a lock after failed passwords.
    Unlock,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Approve,
        Action::Reject,
        Action::Reopen,
        Action::Block,
        Action::Unlink,
        Action::EndSessions,
        Action::ResetPassword,
        Action::Unlock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Reopen => "reopen",
            Action::Block => "block",
            Action::Unlink => "unlink",
            Action::EndSessions => "end_sessions",
            Action::ResetPassword => "reset_password",
            Action::Unlock => "unlock",
        }
    }

    /// The mail log's purpose label (`crate::mail::Mail::purpose`).
    pub fn mail_purpose(self) -> &'static str {
        match self {
            Action::Approve => "console.approve",
            Action::Reject => "console.reject",
            Action::Reopen => "console.reopen",
            Action::Block => "console.block",
            Action::Unlink => "console.unlink",
            Action::EndSessions => "console.end_sessions",
            Action::ResetPassword => "console.reset_password",
            Action::Unlock => "console.unlock",
        }
    }

    /// The audit log's action for this console action.
    pub fn audit_action(self) -> audit::AuditAction {
        use audit::AuditAction as A;
        match self {
            Action::Approve => A::ConsoleApprove,
            Action::Reject => A::ConsoleReject,
            Action::Reopen => A::ConsoleReopen,
            Action::Block => A::ConsoleBlock,
            Action::Unlink => A::ConsoleUnlink,
            Action::EndSessions => A::ConsoleEndSessions,
            Action::ResetPassword => A::ConsoleResetPassword,
            Action::Unlock => A::ConsoleUnlock,
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn label(self, lang: &Lang) -> &'static str {
        match self {
            Action::Approve => lang.t("申請を承認する", "Approve the application"),
            Action::Reject => lang.t("申請を却下する", "Reject the application"),
            Action::Reopen => lang.t("利用を再開する", "Reopen SSO"),
            Action::Block => lang.t("利用を停止する", "Suspend SSO"),
            Action::Unlink => lang.t("連携を解除する", "Unlink the accounts"),
            Action::EndSessions => lang.t("ログイン中のセッションを終了する", "End all sessions"),
            Action::ResetPassword => lang.t("パスワードを再発行する", "Reset the password"),
            Action::Unlock => lang.t("ロックを解除する", "Unlock the account"),
        }
    }

    /// What the note field asks for.
    pub fn note_label(self, lang: &Lang) -> &'static str {
        match self {
            Action::Reject => lang.t(
                "却下の理由（ご本人にメールで伝わります）",
                "Reason for the rejection (mailed to the person)",
            ),
            _ => lang.t("メモ（記録に残ります）", "Note (kept in the audit log)"),
        }
    }

    /// Whether the action applies to the account as it is now (the form is shown only then;
    /// the admin op checks again).
    pub fn applies(self, d: &Detail) -> bool {
        use crate::identity::applications::ApplicationStatus as S;
        match self {
            Action::Approve => d.application_status() == Some(S::Pending),
            Action::Reject => matches!(d.application_status(), Some(S::Pending | S::Approved)),
            Action::Reopen => d.blocked(),
            Action::Block => d.gmis_id.is_some() && !d.blocked(),
            Action::Unlink => d.linked(),
            Action::EndSessions => !d.sessions.is_empty(),
            Action::ResetPassword => d.account.is_some(),
            Action::Unlock => d.account_flag("locked"),
        }
    }

    /// The destructive ones are drawn as such.
    pub fn danger(self) -> bool {
        matches!(
            self,
            Action::Reject | Action::Block | Action::Unlink | Action::EndSessions
        )
    }
}

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
        for s in store.sessions_by_account(g)? {
            n += usize::from(store.session_delete(&s.id)?);
        }
    }
    if let Some(l) = &d.local_id {
        n += crate::admin::sessions::end_local_sessions(store, l)?;
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
    let line = audit::record(
        store,
        &format!("secretariat:{operator}"),
        action.audit_action(),
        d.key(),
        &format!("note: {note}; {outcome}"),
        None,
    )
    .map_err(AdminError::from)?;
    store.apply(&[line], None).map_err(AdminError::from)?;
    store.flush().map_err(AdminError::from)?;
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
