//! The audit log: an append-only record of consents, applications, user links, key changes
//! and secretariat actions, written in the same atomic batch as the change it describes.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Table, Write};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: String,
    /// Who: `user:<gmis id>`, `secretariat:<name>`, `admin-api`, `cli`.
    pub actor: String,
    /// What: `consent.accept`, `consent.reject`, `consent.reopen`, `application.approve`, ...
    pub action: String,
    /// Which account (G-MIS id or local id).
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_version: Option<String>,
}

/// Every action the audit log records (the `action` field spells it as [`AuditAction::name`]).
/// Key changes go to the key directory's own audit file, with the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    ConsentAccept,
    ConsentReject,
    ConsentReopen,
    ConsentBlock,
    ApplicationFile,
    ApplicationAdd,
    ApplicationApprove,
    ApplicationRevoke,
    UserRegister,
    UserLink,
    UserUnlink,
    UsersImport,
    AccountAdd,
    AccountReset,
    /// A reset that also removed the second factor.
    AccountResetTotpRemoved,
    AccountDisable,
    AccountEnable,
    AccountUnlock,
    LoginPassword,
    LoginPasswordChange,
    LoginTotp,
    LoginTotpEnrol,
    LoginRecoveryCode,
    AccountImport,
    KeysNew,
    KeysPromote,
    KeysRetire,
    KeysRemove,
    /// The 事務局's console actions (crate::console::actions), one per action.
    ConsoleApprove,
    ConsoleReject,
    ConsoleReopen,
    ConsoleBlock,
    ConsoleUnlink,
    ConsoleEndSessions,
    ConsoleResetPassword,
    ConsoleUnlock,
    AccountTotpEnrol,
    NoticeSet,
    NoticeClear,
    IdpTrust,
    PasswordResetRequest,
    PasswordResetRedeem,
}

impl AuditAction {
    pub const ALL: [AuditAction; 42] = [
        Self::ConsentAccept,
        Self::ConsentReject,
        Self::ConsentReopen,
        Self::ConsentBlock,
        Self::ApplicationFile,
        Self::ApplicationAdd,
        Self::ApplicationApprove,
        Self::ApplicationRevoke,
        Self::UserRegister,
        Self::UserLink,
        Self::UserUnlink,
        Self::UsersImport,
        Self::AccountAdd,
        Self::AccountReset,
        Self::AccountResetTotpRemoved,
        Self::AccountDisable,
        Self::AccountEnable,
        Self::AccountUnlock,
        Self::LoginPassword,
        Self::LoginPasswordChange,
        Self::LoginTotp,
        Self::LoginTotpEnrol,
        Self::LoginRecoveryCode,
        Self::AccountImport,
        Self::KeysNew,
        Self::KeysPromote,
        Self::KeysRetire,
        Self::KeysRemove,
        Self::ConsoleApprove,
        Self::ConsoleReject,
        Self::ConsoleReopen,
        Self::ConsoleBlock,
        Self::ConsoleUnlink,
        Self::ConsoleEndSessions,
        Self::ConsoleResetPassword,
        Self::ConsoleUnlock,
        Self::AccountTotpEnrol,
        Self::NoticeSet,
        Self::NoticeClear,
        Self::IdpTrust,
        Self::PasswordResetRequest,
        Self::PasswordResetRedeem,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ConsentAccept => "consent.accept",
            Self::ConsentReject => "consent.reject",
            Self::ConsentReopen => "consent.reopen",
            Self::ConsentBlock => "consent.block",
            Self::ApplicationFile => "application.file",
            Self::ApplicationAdd => "application.add",
            Self::ApplicationApprove => "application.approve",
            Self::ApplicationRevoke => "application.revoke",
            Self::UserRegister => "user.register",
            Self::UserLink => "user.link",
            Self::UserUnlink => "user.unlink",
            Self::UsersImport => "users.import",
            Self::AccountAdd => "account.add",
            Self::AccountReset => "account.reset",
            Self::AccountResetTotpRemoved => "account.reset+totp_removed",
            Self::AccountDisable => "account.disable",
            Self::AccountEnable => "account.enable",
            Self::AccountUnlock => "account.unlock",
            Self::LoginPassword => "login.password",
            Self::LoginPasswordChange => "login.password_change",
            Self::LoginTotp => "login.totp",
            Self::LoginTotpEnrol => "login.totp_enrol",
            Self::LoginRecoveryCode => "login.recovery_code",
            Self::AccountImport => "account.import",
            Self::KeysNew => "keys.new",
            Self::KeysPromote => "keys.promote",
            Self::KeysRetire => "keys.retire",
            Self::KeysRemove => "keys.remove",
            Self::ConsoleApprove => "console.approve",
            Self::ConsoleReject => "console.reject",
            Self::ConsoleReopen => "console.reopen",
            Self::ConsoleBlock => "console.block",
            Self::ConsoleUnlink => "console.unlink",
            Self::ConsoleEndSessions => "console.end_sessions",
            Self::ConsoleResetPassword => "console.reset_password",
            Self::ConsoleUnlock => "console.unlock",
            Self::AccountTotpEnrol => "account.totp_enrol",
            Self::NoticeSet => "notice.set",
            Self::NoticeClear => "notice.clear",
            Self::IdpTrust => "idp.trust",
            Self::PasswordResetRequest => "password_reset.request",
            Self::PasswordResetRedeem => "password_reset.redeem",
        }
    }

    pub fn from_name(name: &str) -> Option<AuditAction> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The write that appends an entry; include it in the batch of the change.
pub fn entry(
    store: &dyn Store,
    actor: &str,
    action: AuditAction,
    subject: &str,
    detail: &str,
    consent_version: Option<&str>,
) -> Result<Write, StoreError> {
    let seq = store.next_seq()?;
    let e = AuditEntry {
        seq,
        at: crate::identity::now_rfc3339(),
        actor: actor.into(),
        action: action.name().into(),
        subject: subject.into(),
        detail: detail.into(),
        consent_version: consent_version.map(str::to_string),
    };
    Ok((
        Table::Audit,
        seq.to_be_bytes().to_vec(),
        Some(serde_json::to_vec(&e).expect("serialize")),
    ))
}

/// The last `n` entries, oldest first.
pub fn tail(store: &dyn Store, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let mut v: Vec<AuditEntry> = store
        .scan(Table::Audit, b"", true, n)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect();
    v.reverse();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn every_action_has_one_name() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::from_name(a.name()), Some(a));
        }
        let mut names: Vec<_> = AuditAction::ALL.iter().map(|a| a.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), AuditAction::ALL.len());
        assert_eq!(AuditAction::from_name("consent.whatever"), None);
    }

    /// `accounts reset --remove-totp` writes its own action name; while `entry` took a string
    /// that name was missing from the enum and the reset panicked in debug builds.
    #[test]
    fn a_reset_that_removes_the_second_factor_is_audited() {
        use crate::account_ops::{execute, AccountOp};
        let d = tempfile::tempdir().unwrap();
        let s = crate::store::SledStore::open(&d.path().join("db")).unwrap();
        let cfg = crate::accounts::account::LocalConfig {
            argon2: crate::accounts::password::HashParams {
                m_kib: 1024,
                t: 1,
                p: 1,
            },
            ..Default::default()
        };
        let add = AccountOp::AccountsAdd {
            user_id: "hanako".into(),
            email: "a@example.jp".into(),
            name: "山田 花子".into(),
            facility_code: String::new(),
            role: crate::accounts::account::Role::Staff,
            by: "suzuki".into(),
        };
        execute(&s, &cfg, &add).unwrap();
        let reset = AccountOp::AccountsReset {
            user_id: "hanako".into(),
            by: "suzuki".into(),
            note: "lost phone".into(),
            remove_totp: true,
        };
        execute(&s, &cfg, &reset).unwrap();
        let last = super::tail(&s, 1).unwrap().pop().unwrap();
        assert_eq!(last.action, "account.reset+totp_removed");
    }
}
