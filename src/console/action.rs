//! The console's actions as the operator sees them: their names, labels, audit and mail
//! names, and when each applies. Running one is [`super::actions`]; its mail is
//! [`super::notice`] (both use this, neither the other: no cycle between them).

use crate::audit;
use crate::web::pages::Lang;

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
