//! The 事務局's operations on local ID/password accounts (`samlgate accounts ...` and the
//! admin API's `accounts_*` ops). The decisions are [`Account`]'s; this module reads, stores
//! (guarded, with the audit line in the same batch), ends sessions where a change demands it,
//! and answers JSON. Passwords appear only in the answer that issues them, never in the audit
//! log or a log line.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::accounts::account::{Account, Ctx, LocalConfig, Role};
use crate::accounts::password::Hasher;
use crate::accounts::policy::Blocklist;
use crate::admin::error::AdminError;
use crate::audit::{self, AuditAction};
use crate::identity::local_accounts as la;
use crate::identity::users::{self, User};
use crate::identity::{now_rfc3339, Profile};
use crate::sessions::{self, Which, Why};
use crate::store::{Store, Write};

/// An account operation (the admin API's `op` values start with `accounts_`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AccountOp {
    /// Creates the account (and its user, unless one with this id exists: one person is one
    /// user) with a one-time initial password, returned once.
    AccountsAdd {
        user_id: String,
        email: String,
        name: String,
        #[serde(default)]
        facility_code: String,
        #[serde(default)]
        role: Role,
        by: String,
    },
    AccountsList,
    AccountsShow {
        user_id: String,
    },
    AccountsDisable {
        user_id: String,
        by: String,
        #[serde(default)]
        note: String,
    },
    AccountsEnable {
        user_id: String,
        by: String,
        #[serde(default)]
        note: String,
    },
    /// A new one-time password (changed at the next login); lifts a lock; ends sessions.
    /// With `remove_totp`, also drops the enrolled authenticator (a lost phone).
    AccountsReset {
        user_id: String,
        by: String,
        #[serde(default)]
        note: String,
        #[serde(default)]
        remove_totp: bool,
    },
    AccountsUnlock {
        user_id: String,
        by: String,
        #[serde(default)]
        note: String,
    },
    /// Accounts from another system (JSON lines for the CLI): each with an argon2id hash (its
    /// current password, kept), or an initial password (changed at first login), or neither
    /// (a one-time password is issued and returned once). Checked whole before anything is
    /// written; existing ids are skipped.
    AccountsImport {
        accounts: Vec<ImportedAccount>,
        by: String,
    },
}

/// One line of `accounts import`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImportedAccount {
    pub user_id: String,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub facility_code: String,
    #[serde(default)]
    pub role: Role,
    /// argon2id PHC string (`$argon2id$v=19$m=...`); nothing else is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_password: Option<Secret>,
}

/// A string that Debug never shows (an op may be printed; its passwords must not be).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl AccountOp {
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            AccountOp::AccountsList | AccountOp::AccountsShow { .. }
        )
    }
}

/// What the 事務局 sees of an account: never the hash, the TOTP secret or recovery hashes.
pub fn summary(a: &Account, u: Option<&User>, now: i64) -> Value {
    json!({
        "user_id": a.user_id,
        "name": u.map(|u| u.profile.display_name.as_str()),
        "email": u.map(|u| u.profile.email.as_str()),
        "gmis_id": u.and_then(|u| u.gmis_id.as_deref()),
        "role": a.role,
        "disabled": a.disabled,
        "must_change": a.must_change,
        "temp_expires_at": a.temp_expires_at,
        "locked": a.throttle.is_locked(now),
        "failures": a.throttle.failures,
        "totp": a.totp.is_some(),
        "created": a.created,
        "updated": a.updated,
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn need(what: &str, v: &str) -> Result<(), AdminError> {
    if v.trim().is_empty() {
        return Err(AdminError::Invalid(format!("{what} must not be empty")));
    }
    Ok(())
}

/// A user id as the login form accepts it: half-width letters, digits and `._@-`, 1-64.
fn valid_user_id(id: &str) -> Result<(), AdminError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !ok {
        return Err(AdminError::Invalid(format!(
            "user id {id:?}: use 1-64 half-width letters, digits and . _ @ -"
        )));
    }
    Ok(())
}

pub fn execute(store: &dyn Store, cfg: &LocalConfig, op: &AccountOp) -> Result<Value, AdminError> {
    let v = match op {
        AccountOp::AccountsAdd { .. } => add(store, cfg, op)?,
        AccountOp::AccountsList => {
            let t = now();
            let mut out = Vec::new();
            for a in la::list(store)? {
                let u = users::get(store, &a.user_id)?;
                out.push(summary(&a, u.as_ref(), t));
            }
            Value::Array(out)
        }
        AccountOp::AccountsShow { user_id } => {
            let l = la::get(store, user_id)?
                .ok_or_else(|| AdminError::NotFound(format!("no account {user_id}")))?;
            let u = users::get(store, user_id)?;
            summary(&l.account, u.as_ref(), now())
        }
        AccountOp::AccountsDisable { user_id, by, note }
        | AccountOp::AccountsEnable { user_id, by, note }
        | AccountOp::AccountsUnlock { user_id, by, note } => {
            let t = now();
            let (action, end) = match op {
                AccountOp::AccountsDisable { .. } => (AuditAction::AccountDisable, true),
                AccountOp::AccountsEnable { .. } => (AuditAction::AccountEnable, false),
                _ => (AuditAction::AccountUnlock, false),
            };
            let a = change(store, user_id, by, action, note, |a| {
                match op {
                    AccountOp::AccountsDisable { .. } => a.set_disabled(true, t),
                    AccountOp::AccountsEnable { .. } => a.set_disabled(false, t),
                    _ => a.unlock(t),
                }
                Ok(())
            })?;
            let ended = if end {
                sessions::end(store, None, Which::LocalAccount(user_id), Why::Disabled)?
            } else {
                0
            };
            let mut v = summary(&a, users::get(store, user_id)?.as_ref(), t);
            v["sessions_ended"] = json!(ended);
            v
        }
        AccountOp::AccountsReset {
            user_id,
            by,
            note,
            remove_totp,
        } => reset(store, cfg, user_id, by, note, *remove_totp)?,
        AccountOp::AccountsImport { accounts, by } => import(store, cfg, accounts, by)?,
    };
    Ok(v)
}

/// Reads, changes and stores one account with its audit line; retries when another process
/// wrote it in between (a login's throttle count, say), so neither change is lost.
fn change(
    store: &dyn Store,
    user_id: &str,
    by: &str,
    action: AuditAction,
    note: &str,
    f: impl Fn(&mut Account) -> Result<(), AdminError>,
) -> Result<Account, AdminError> {
    need("by", by)?;
    for _ in 0..16 {
        let l = la::get(store, user_id)?
            .ok_or_else(|| AdminError::NotFound(format!("no account {user_id}")))?;
        let mut a = l.account.clone();
        f(&mut a)?;
        let line = audit::entry(
            store,
            &format!("secretariat:{by}"),
            action,
            user_id,
            note,
            None,
        )?;
        if la::save(store, &a, Some(&l), vec![line])? {
            return Ok(a);
        }
    }
    Err(AdminError::Invalid(format!(
        "account {user_id} kept changing; try again"
    )))
}

fn ctx<'a>(cfg: &'a LocalConfig, hasher: &'a Hasher) -> Ctx<'a> {
    Ctx {
        cfg,
        hasher,
        blocklist: Blocklist::builtin(),
        now: now(),
    }
}

fn hasher(cfg: &LocalConfig) -> Result<Hasher, AdminError> {
    Hasher::new(cfg.argon2).map_err(|e| AdminError::Invalid(format!("[local.argon2]: {e}")))
}

fn add(store: &dyn Store, cfg: &LocalConfig, op: &AccountOp) -> Result<Value, AdminError> {
    let AccountOp::AccountsAdd {
        user_id,
        email,
        name,
        facility_code,
        role,
        by,
    } = op
    else {
        unreachable!("called for AccountsAdd only")
    };
    valid_user_id(user_id)?;
    need("by", by)?;
    need("email", email)?;
    need("name", name)?;
    let h = hasher(cfg)?;
    let cx = ctx(cfg, &h);
    let (a, pw) = Account::create(user_id, *role, &cx)
        .map_err(|e| AdminError::Invalid(format!("hash: {e}")))?;
    let _registry = users::registry_lock();
    let existing = users::get(store, user_id)?;
    let mut writes: Vec<Write> = Vec::new();
    if existing.is_none() {
        let now_s = now_rfc3339();
        let u = User {
            id: user_id.clone(),
            gmis_id: None,
            profile: Profile {
                account_id: user_id.clone(),
                facility_code: facility_code.clone(),
                display_name: name.clone(),
                email: email.clone(),
                ..Profile::default()
            },
            created: now_s.clone(),
            updated: now_s,
            origin: crate::model::UserOrigin::Local,
        };
        writes.extend(users::local_account_writes(&u));
    }
    let detail = format!(
        "role {}; {}",
        serde_json::to_value(role)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?"),
        if existing.is_some() {
            "for the existing user"
        } else {
            "new user"
        }
    );
    writes.push(audit::entry(
        store,
        &format!("secretariat:{by}"),
        AuditAction::AccountAdd,
        user_id,
        &detail,
        None,
    )?);
    if !la::save(store, &a, None, writes)? {
        return Err(AdminError::Invalid(format!(
            "account {user_id} already exists; use `accounts reset` for a new password"
        )));
    }
    let u = users::get(store, user_id)?;
    let mut v = summary(&a, u.as_ref(), cx.now);
    v["initial_password"] = json!(pw.expose());
    Ok(v)
}

fn reset(
    store: &dyn Store,
    cfg: &LocalConfig,
    user_id: &str,
    by: &str,
    note: &str,
    remove_totp: bool,
) -> Result<Value, AdminError> {
    let h = hasher(cfg)?;
    let issued = std::sync::Mutex::new(None);
    let action = if remove_totp {
        AuditAction::AccountResetTotpRemoved
    } else {
        AuditAction::AccountReset
    };
    let a = change(store, user_id, by, action, note, |a| {
        let cx = ctx(cfg, &h);
        let pw = a
            .issue_temporary(&cx)
            .map_err(|e| AdminError::Invalid(format!("hash: {e}")))?;
        if remove_totp {
            a.remove_totp(cx.now);
        }
        *issued.lock().unwrap_or_else(|e| e.into_inner()) = Some(pw);
        Ok(())
    })?;
    // The old password may be known to someone else: its sessions end.
    let ended = sessions::end(
        store,
        None,
        Which::LocalAccount(user_id),
        Why::PasswordReset,
    )?;
    let pw = issued
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .expect("set by the successful change");
    let mut v = summary(&a, users::get(store, user_id)?.as_ref(), now());
    v["temporary_password"] = json!(pw.expose());
    v["sessions_ended"] = json!(ended);
    Ok(v)
}

/// What an imported line brings for the password.
enum Given {
    Hash(crate::accounts::password::PhcHash),
    Initial(crate::accounts::password::Password),
    Issue,
}

fn given(a: &ImportedAccount) -> Result<Given, AdminError> {
    let bad = |why: &str| AdminError::Invalid(format!("import {}: {why}", a.user_id));
    match (&a.password_hash, &a.initial_password) {
        (Some(_), Some(_)) => Err(bad("give password_hash or initial_password, not both")),
        (Some(h), None) => crate::accounts::password::PhcHash::imported(&h.0)
            .map(Given::Hash)
            .map_err(|_| bad("password_hash is not an argon2id PHC string")),
        (None, Some(p)) if p.0.chars().count() < crate::accounts::policy::FLOOR => {
            Err(bad("initial_password is shorter than 8 characters"))
        }
        (None, Some(p)) => Ok(Given::Initial(crate::accounts::password::Password::new(
            p.0.clone(),
        ))),
        (None, None) => Ok(Given::Issue),
    }
}

/// `accounts import`: every line is checked before the first account is written.
fn import(
    store: &dyn Store,
    cfg: &LocalConfig,
    list: &[ImportedAccount],
    by: &str,
) -> Result<Value, AdminError> {
    need("by", by)?;
    let mut plan = Vec::new();
    for a in list {
        valid_user_id(&a.user_id)?;
        need("email", &a.email)?;
        need("name", &a.name)?;
        plan.push((a, given(a)?));
    }
    let h = hasher(cfg)?;
    let (mut imported, mut skipped, mut issued) = (0, Vec::new(), Vec::new());
    for (a, g) in plan {
        if la::get(store, &a.user_id)?.is_some() {
            skipped.push(a.user_id.clone());
            continue;
        }
        let add_op = AccountOp::AccountsAdd {
            user_id: a.user_id.clone(),
            email: a.email.clone(),
            name: a.name.clone(),
            facility_code: a.facility_code.clone(),
            role: a.role,
            by: by.to_string(),
        };
        let added = add(store, cfg, &add_op)?;
        let detail = match &g {
            Given::Hash(_) => "password hash kept",
            Given::Initial(_) => "initial password, change at first login",
            Given::Issue => "one-time password issued",
        };
        let action = AuditAction::AccountImport;
        change(store, &a.user_id, by, action, detail, |acc| {
            match &g {
                Given::Hash(ph) => {
                    acc.password = ph.clone();
                    acc.must_change = false;
                    acc.temp_expires_at = None;
                }
                Given::Initial(pw) => {
                    acc.password = h
                        .hash(pw)
                        .map_err(|e| AdminError::Invalid(format!("hash: {e}")))?;
                }
                Given::Issue => {}
            }
            Ok(())
        })?;
        if matches!(g, Given::Issue) {
            issued
                .push(json!({"user_id": a.user_id, "initial_password": added["initial_password"]}));
        }
        imported += 1;
    }
    Ok(json!({"imported": imported, "skipped_existing": skipped, "issued": issued}))
}

/// Why a person's own TOTP enrolment (`second_factor = "optional"`) did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolRefusal {
    /// The code did not match the new secret (or was malformed).
    Code(crate::accounts::totp::TotpError),
    /// Already enrolled: a new authenticator replaces the old only through the 事務局
    /// (`accounts reset --remove-totp`), so a stolen session cannot swap it.
    AlreadyEnrolled,
    /// `second_factor = "off"`, or no such account.
    NotOffered,
}

/// A person enrols TOTP by choice from their password session: the first code from the app
/// confirms `secret`; returns the recovery codes to show once. Stored guarded with the audit
/// line (`account.totp_enrol`, actor `user:<id>`).
pub fn enrol_by_choice(
    store: &dyn Store,
    cfg: &LocalConfig,
    user_id: &str,
    secret: crate::accounts::totp::TotpSecret,
    code: &str,
) -> Result<Result<Vec<String>, EnrolRefusal>, AdminError> {
    use crate::accounts::account::SecondFactor;
    for _ in 0..8 {
        let Some(l) = la::get(store, user_id)? else {
            return Ok(Err(EnrolRefusal::NotOffered));
        };
        let mut a = l.account.clone();
        if cfg.second_factor == SecondFactor::Off && a.role != Role::Secretariat {
            return Ok(Err(EnrolRefusal::NotOffered));
        }
        if a.totp.is_some() {
            return Ok(Err(EnrolRefusal::AlreadyEnrolled));
        }
        let codes = match a.enrol_totp(secret.clone(), code, now()) {
            Ok(c) => c,
            Err(e) => return Ok(Err(EnrolRefusal::Code(e))),
        };
        let line = audit::entry(
            store,
            &format!("user:{user_id}"),
            AuditAction::AccountTotpEnrol,
            user_id,
            "by choice",
            None,
        )?;
        if la::save(store, &a, Some(&l), vec![line])? {
            return Ok(Ok(codes));
        }
    }
    Err(AdminError::Invalid(format!(
        "account {user_id} kept changing; try again"
    )))
}

/// The demo's ID/password account (`samlgate demo`; README names it): a staff account whose
/// first password is fixed, so a person can try the ID/password login, the forced change and
/// TOTP enrolment by choice without the CLI.
pub const DEMO_USER_ID: &str = "navii-demo";
pub const DEMO_FIRST_PASSWORD: &str = "demo-first-password-2026";

/// Creates the demo account once (an existing one, changed or not, is left alone). Returns
/// whether it was created. Only for the demo: the password is public.
pub fn seed_demo(store: &dyn Store, cfg: &LocalConfig) -> Result<bool, AdminError> {
    if la::get(store, DEMO_USER_ID)?.is_some() {
        return Ok(false);
    }
    let op = AccountOp::AccountsAdd {
        user_id: DEMO_USER_ID.into(),
        email: "navii-demo@example.jp".into(),
        name: "デモ 利用者".into(),
        facility_code: String::new(),
        role: Role::Staff,
        by: "demo".into(),
    };
    execute(store, cfg, &op)?;
    let h = hasher(cfg)?;
    let known = crate::accounts::password::Password::new(DEMO_FIRST_PASSWORD.into());
    change(
        store,
        DEMO_USER_ID,
        "demo",
        AuditAction::AccountReset,
        "demo seed: the README's first password",
        |a| {
            a.password = h
                .hash(&known)
                .map_err(|e| AdminError::Invalid(format!("hash: {e}")))?;
            Ok(())
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::password::HashParams;
    use crate::store::SledStore;

    fn cfg() -> LocalConfig {
        LocalConfig {
            argon2: HashParams {
                m_kib: 1024,
                t: 1,
                p: 1,
            },
            ..LocalConfig::default()
        }
    }

    fn add_op(id: &str) -> AccountOp {
        AccountOp::AccountsAdd {
            user_id: id.into(),
            email: "a@example.jp".into(),
            name: "山田 花子".into(),
            facility_code: String::new(),
            role: Role::Staff,
            by: "suzuki".into(),
        }
    }

    #[test]
    fn add_reset_unlock_disable_are_audited_without_passwords() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        let c = cfg();
        let v = execute(&s, &c, &add_op("hanako")).unwrap();
        let pw = v["initial_password"].as_str().unwrap().to_string();
        assert_eq!(pw.len(), 24);
        assert_eq!(v["must_change"], json!(true));
        // One person is one user: the account's user exists under the same id.
        assert_eq!(
            users::get(&s, "hanako").unwrap().unwrap().origin,
            crate::model::UserOrigin::Local
        );
        assert!(matches!(
            execute(&s, &c, &add_op("hanako")),
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(
            execute(&s, &c, &add_op("bad id")),
            Err(AdminError::Invalid(_))
        ));
        let r = execute(
            &s,
            &c,
            &AccountOp::AccountsReset {
                user_id: "hanako".into(),
                by: "suzuki".into(),
                note: String::new(),
                remove_totp: false,
            },
        )
        .unwrap();
        let tmp = r["temporary_password"].as_str().unwrap().to_string();
        assert_ne!(tmp, pw);
        let l = la::get(&s, "hanako").unwrap().unwrap();
        let h = Hasher::new(c.argon2).unwrap();
        use crate::accounts::password::Password;
        assert!(h
            .verify(&Password::new(tmp.clone()), &l.account.password)
            .is_ok());
        assert!(h
            .verify(&Password::new(pw.clone()), &l.account.password)
            .is_err());
        for op in [
            AccountOp::AccountsDisable {
                user_id: "hanako".into(),
                by: "suzuki".into(),
                note: "left".into(),
            },
            AccountOp::AccountsUnlock {
                user_id: "hanako".into(),
                by: "suzuki".into(),
                note: String::new(),
            },
        ] {
            execute(&s, &c, &op).unwrap();
        }
        assert!(la::get(&s, "hanako").unwrap().unwrap().account.disabled);
        let lines = audit::tail(&s, 10).unwrap();
        let actions: Vec<&str> = lines.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "account.add",
                "account.reset",
                "account.disable",
                "account.unlock"
            ]
        );
        let all = serde_json::to_string(&lines).unwrap();
        assert!(
            !all.contains(&pw) && !all.contains(&tmp),
            "a password in the audit log"
        );
        let list = execute(&s, &c, &AccountOp::AccountsList).unwrap();
        let text = list.to_string();
        assert!(
            text.contains("hanako") && !text.contains("argon2"),
            "{text}"
        );
    }

    #[test]
    fn the_demo_account_is_seeded_once_with_the_readme_password() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        let c = cfg();
        assert!(seed_demo(&s, &c).unwrap());
        assert!(!seed_demo(&s, &c).unwrap(), "a second run leaves it alone");
        let a = la::get(&s, DEMO_USER_ID).unwrap().unwrap().account;
        assert!(a.must_change);
        let pw = crate::accounts::password::Password::new(DEMO_FIRST_PASSWORD.into());
        assert!(hasher(&c).unwrap().verify(&pw, &a.password).is_ok());
        assert_eq!(
            users::get(&s, DEMO_USER_ID).unwrap().unwrap().origin,
            crate::model::UserOrigin::Local
        );
    }

    #[test]
    fn admin_api_ops_parse_beside_the_tagged_ones() {
        let op: crate::admin::Op =
            serde_json::from_str(r#"{"op":"accounts_show","user_id":"x"}"#).unwrap();
        assert!(matches!(
            op,
            crate::admin::Op::Accounts(AccountOp::AccountsShow { .. })
        ));
        let op: crate::admin::Op = serde_json::from_str(r#"{"op":"users_list"}"#).unwrap();
        assert_eq!(op, crate::admin::Op::UsersList);
        let back =
            serde_json::to_value(crate::admin::Op::Accounts(AccountOp::AccountsList)).unwrap();
        assert_eq!(back, json!({"op": "accounts_list"}));
    }
}
