//! The secretariat's operations (consents, applications, users, audit), as one set of
//! functions over the store. The CLI runs them directly when it can open the store, and
//! through the running gateway's admin API (`POST /admin/v1/op`, bearer token) when the
//! gateway holds the store's lock; both paths run [`execute`], so they cannot drift apart.
//!
//! Every change is one atomic batch with its audit line, flushed before the answer.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit;
use crate::identity::applications::{self, Application, ApplicationStatus};
use crate::identity::consent::{self, ConsentDecision, ConsentState};
use crate::identity::users::{self, User};
use crate::identity::{now_rfc3339, Profile};
use crate::store::{Store, StoreError, Table};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    ConsentList,
    ConsentShow {
        gmis_id: String,
    },
    /// Reopens SSO after a rejected consent or a secretariat block: the next SSO asks again.
    ConsentReopen {
        gmis_id: String,
        by: String,
        note: String,
    },
    /// Blocks SSO for an account (sticky until reopened).
    ConsentBlock {
        gmis_id: String,
        by: String,
        note: String,
    },
    ApplicationAdd {
        gmis_id: String,
        link_to: Option<String>,
        note: String,
        by: String,
        approve: bool,
    },
    ApplicationApprove {
        gmis_id: String,
        by: String,
    },
    ApplicationRevoke {
        gmis_id: String,
        by: String,
        note: String,
    },
    ApplicationList,
    UsersList,
    UsersShow {
        id: String,
    },
    /// Undoes a link between a local account and a G-MIS account (`id`: either one); an
    /// approved application naming that account is revoked with it, and its sessions end.
    UsersUnlink {
        id: String,
        by: String,
        #[serde(default)]
        note: String,
        /// Which reading of `id`; needed when it is both a linked local id and a G-MIS id
        /// of different accounts (after an id collision).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reading: Option<IdReading>,
    },
    /// Registers existing local (ID/password) accounts, so G-MIS logins can be linked to them.
    UsersImport {
        users: Vec<Profile>,
        by: String,
    },
    AuditTail {
        n: usize,
    },
    /// Local ID/password accounts (`accounts_add`, `accounts_list`, ...): see
    /// [`crate::account_ops`]; they need the `[local]` config, so run them with [`execute_cfg`].
    #[serde(untagged)]
    Accounts(crate::account_ops::AccountOp),
    /// The login-page notice and IdP certificate trust (`notice_set`, `idp_trust`, ...): see
    /// [`crate::notice`].
    #[serde(untagged)]
    Operator(crate::notice::OperatorOp),
}

/// How `users unlink` reads its id.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdReading {
    /// A local account id.
    Local,
    /// A G-MIS account id.
    Gmis,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl Op {
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Op::ConsentReopen { .. }
                | Op::ConsentBlock { .. }
                | Op::ApplicationAdd { .. }
                | Op::ApplicationApprove { .. }
                | Op::ApplicationRevoke { .. }
                | Op::UsersImport { .. }
                | Op::UsersUnlink { .. }
        ) || matches!(self, Op::Accounts(a) if a.changes_state())
            || matches!(self, Op::Operator(o) if o.changes_state())
    }
}

/// Ends every session of a G-MIS account, so a later reopen or re-approval cannot revive a
/// session from before the block: the user logs in (and consents) again.
fn end_sessions(store: &dyn Store, gmis_id: &str) -> Result<usize, AdminError> {
    let mut n = 0;
    for s in store.sessions_by_account(gmis_id)? {
        if store.session_delete(&s.id)? {
            n += 1;
        }
    }
    Ok(n)
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

/// Ends every session on a local account (whatever G-MIS account it was reached from).
pub(crate) fn end_local_sessions(store: &dyn Store, local_id: &str) -> Result<usize, AdminError> {
    let mut n = 0;
    for s in store.sessions_by_local_user(local_id)? {
        if store.session_delete(&s.id)? {
            n += 1;
        }
    }
    Ok(n)
}

/// The writes that undo `u`'s G-MIS link, with the `user.unlink` audit line.
fn unlink(
    store: &dyn Store,
    u: &User,
    by: &str,
    why: &str,
) -> Result<Vec<crate::store::Write>, AdminError> {
    let g = u.gmis_id.as_deref().unwrap_or("-");
    let mut w = users::unlink_writes(u);
    w.push(audit::entry(
        store,
        &format!("secretariat:{by}"),
        "user.unlink",
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

/// `users unlink`: the account stays, without its link; an approved application that names
/// it is revoked too (else the next login would link it again); its sessions end.
fn users_unlink(
    store: &dyn Store,
    id: &str,
    reading: Option<IdReading>,
    by: &str,
    note: &str,
) -> Result<Value, AdminError> {
    nonempty("by", by)?;
    let _registry = users::registry_lock();
    let u = unlink_target(store, id, reading)?;
    let gmis = u.gmis_id.clone().unwrap_or_default();
    let mut why = format!("note: {note}");
    let mut writes = Vec::new();
    if let Some(mut app) = applications::get(store, &gmis)?
        .filter(|a| a.status == ApplicationStatus::Approved && a.link_to.as_deref() == Some(&u.id))
    {
        app.status = ApplicationStatus::Revoked;
        app.updated = now_rfc3339();
        writes.push(applications::write(&app));
        why.push_str("; its linking application was revoked");
    }
    writes.extend(unlink(store, &u, by, &why)?);
    let prev = serde_json::to_vec(&u).expect("serialize");
    if !store.apply(&writes, Some((Table::Users, u.id.as_bytes(), Some(&prev))))? {
        return Err(AdminError::Invalid(
            "the account changed meanwhile; try again".into(),
        ));
    }
    let ended = end_sessions(store, &gmis)? + end_local_sessions(store, &u.id)?;
    Ok(json!({"id": u.id, "gmis_id": gmis, "unlinked": true, "sessions_ended": ended}))
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("records serialize")
}

fn nonempty(what: &str, v: &str) -> Result<(), AdminError> {
    if v.trim().is_empty() {
        return Err(AdminError::Invalid(format!("{what} is empty")));
    }
    Ok(())
}

/// Runs any operation with the gateway's config (the CLI and the admin API call this).
pub fn execute_cfg(
    store: &dyn Store,
    cfg: &crate::config::Config,
    op: &Op,
) -> Result<Value, AdminError> {
    match op {
        Op::Accounts(a) => crate::account_ops::execute(store, &cfg.local, a),
        _ => execute(store, &cfg.consent.version, op),
    }
}

pub fn execute(store: &dyn Store, consent_version: &str, op: &Op) -> Result<Value, AdminError> {
    let v = match op {
        Op::ConsentList => Value::Array(consent::list(store)?.iter().map(to_json).collect()),
        Op::ConsentShow { gmis_id } => {
            let c = consent::get(store, gmis_id)?;
            let app = applications::get(store, gmis_id)?;
            let user = users::by_gmis(store, gmis_id)?;
            if c.is_none() && app.is_none() && user.is_none() {
                return Err(AdminError::NotFound(format!(
                    "no consent, application or user for {gmis_id}"
                )));
            }
            json!({"gmis_id": gmis_id, "consent": c, "application": app, "user": user, "current_version": consent_version})
        }
        Op::ConsentReopen { gmis_id, by, note } => {
            nonempty("by (who reopens)", by)?;
            let c = consent::get(store, gmis_id)?.ok_or_else(|| {
                AdminError::NotFound(format!("{gmis_id} has no consent decision"))
            })?;
            if !c.blocks() {
                return Err(AdminError::Invalid(format!(
                    "{gmis_id} is not blocked (decision: {:?})",
                    c.decision
                )));
            }
            let a = audit::entry(
                store,
                &format!("secretariat:{by}"),
                "consent.reopen",
                gmis_id,
                note,
                Some(&c.version),
            )?;
            let prev = serde_json::to_vec(&c).expect("serialize");
            let ok = store.apply(
                &[(Table::Consents, gmis_id.as_bytes().to_vec(), None), a],
                Some((Table::Consents, gmis_id.as_bytes(), Some(&prev))),
            )?;
            if !ok {
                return Err(AdminError::Invalid(
                    "the consent changed meanwhile; try again".into(),
                ));
            }
            // No session exists while blocked; one that slipped in beside the block (a login
            // finishing as it landed) must not come to life now.
            let ended = end_sessions(store, gmis_id)?;
            json!({"gmis_id": gmis_id, "reopened": true, "previous": c, "sessions_ended": ended})
        }
        Op::ConsentBlock { gmis_id, by, note } => {
            nonempty("by", by)?;
            nonempty("note (the reason)", note)?;
            let st = ConsentState {
                gmis_id: gmis_id.clone(),
                decision: ConsentDecision::BlockedBySecretariat,
                version: consent_version.into(),
                at: now_rfc3339(),
                detail: note.clone(),
                // Keep the contact details of an earlier 同意しない.
                profile: consent::get(store, gmis_id)?.and_then(|c| c.profile),
            };
            let a = audit::entry(
                store,
                &format!("secretariat:{by}"),
                "consent.block",
                gmis_id,
                note,
                None,
            )?;
            store.apply(&[consent::write(&st), a], None)?;
            let ended = end_sessions(store, gmis_id)?;
            json!({"consent": st, "sessions_ended": ended})
        }
        Op::ApplicationAdd {
            gmis_id,
            link_to,
            note,
            by,
            approve,
        } => {
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
                gmis_id: gmis_id.clone(),
                status: if *approve {
                    ApplicationStatus::Approved
                } else {
                    ApplicationStatus::Pending
                },
                link_to: link_to.clone(),
                note: note.clone(),
                created: now.clone(),
                updated: now,
                profile: None,
                phone: String::new(),
                reason: String::new(),
            };
            let detail = format!(
                "status={:?} link_to={}",
                app.status,
                link_to.as_deref().unwrap_or("-")
            );
            let a = audit::entry(
                store,
                &format!("secretariat:{by}"),
                "application.add",
                gmis_id,
                &detail,
                None,
            )?;
            store.apply(&[applications::write(&app), a], None)?;
            to_json(&app)
        }
        Op::ApplicationApprove { gmis_id, by } | Op::ApplicationRevoke { gmis_id, by, .. } => {
            nonempty("by", by)?;
            let approve = matches!(op, Op::ApplicationApprove { .. });
            let mut app = applications::get(store, gmis_id)?
                .ok_or_else(|| AdminError::NotFound(format!("{gmis_id} has no application")))?;
            if let (true, Some(l)) = (approve, &app.link_to) {
                // Another application may have linked the account since this one was filed.
                check_link_target(store, gmis_id, l)?;
            }
            let prev = serde_json::to_vec(&app).expect("serialize");
            app.status = if approve {
                ApplicationStatus::Approved
            } else {
                ApplicationStatus::Revoked
            };
            app.updated = now_rfc3339();
            let note = match op {
                Op::ApplicationRevoke { note, .. } => note.as_str(),
                _ => "",
            };
            let action = if approve {
                "application.approve"
            } else {
                "application.revoke"
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
            let ok = store.apply(
                &writes,
                Some((Table::Applications, gmis_id.as_bytes(), Some(&prev))),
            )?;
            if !ok {
                return Err(AdminError::Invalid(
                    "the application changed meanwhile; try again".into(),
                ));
            }
            if approve {
                to_json(&app)
            } else {
                let ended = end_sessions(store, gmis_id)?
                    + unlinked
                        .as_deref()
                        .map_or(Ok(0), |l| end_local_sessions(store, l))?;
                json!({"application": app, "unlinked": unlinked, "sessions_ended": ended})
            }
        }
        Op::ApplicationList => {
            Value::Array(applications::list(store)?.iter().map(to_json).collect())
        }
        Op::UsersList => Value::Array(users::list(store)?.iter().map(to_json).collect()),
        Op::UsersShow { id } => {
            let u = users::get(store, id)?.or(users::by_gmis(store, id)?);
            to_json(&u.ok_or_else(|| AdminError::NotFound(format!("no user {id}")))?)
        }
        Op::UsersUnlink {
            id,
            by,
            note,
            reading,
        } => users_unlink(store, id, *reading, by, note)?,
        Op::UsersImport { users: list, by } => {
            nonempty("by", by)?;
            let _registry = users::registry_lock();
            let mut writes = Vec::new();
            let mut created = 0;
            for p in list {
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
                    origin: "local".into(),
                };
                writes.extend(users::local_account_writes(&u));
                created += 1;
            }
            writes.push(audit::entry(
                store,
                &format!("secretariat:{by}"),
                "users.import",
                "-",
                &format!("{created} local accounts"),
                None,
            )?);
            store.apply(&writes, None)?;
            json!({"imported": created, "skipped_existing": list.len() - created})
        }
        Op::Operator(o) => crate::notice::execute(store, o)?,
        Op::Accounts(_) => {
            return Err(AdminError::Invalid(
                "account operations need the [local] config".into(),
            ))
        }
        Op::AuditTail { n } => Value::Array(
            audit::tail(store, (*n).min(10_000))?
                .iter()
                .map(to_json)
                .collect(),
        ),
    };
    if op.changes_state() {
        store.flush()?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn reopen_only_blocked_and_audited() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        let reopen = Op::ConsentReopen {
            gmis_id: "GM1".into(),
            by: "tanaka".into(),
            note: "confirmed by phone".into(),
        };
        assert!(matches!(
            execute(&s, "v1", &reopen),
            Err(AdminError::NotFound(_))
        ));
        let st = ConsentState {
            gmis_id: "GM1".into(),
            decision: ConsentDecision::Rejected,
            version: "v1".into(),
            at: now_rfc3339(),
            detail: String::new(),
            profile: None,
        };
        s.apply(&[consent::write(&st)], None).unwrap();
        execute(&s, "v1", &reopen).unwrap();
        assert!(consent::get(&s, "GM1").unwrap().is_none());
        let tail = audit::tail(&s, 10).unwrap();
        assert_eq!(tail.last().unwrap().action, "consent.reopen");
        assert_eq!(tail.last().unwrap().actor, "secretariat:tanaka");
        assert_eq!(tail.last().unwrap().consent_version.as_deref(), Some("v1"));
    }

    #[test]
    fn application_lifecycle_and_link_checks() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        let add = Op::ApplicationAdd {
            gmis_id: "GM2".into(),
            link_to: Some("L1".into()),
            note: String::new(),
            by: "x".into(),
            approve: false,
        };
        assert!(
            matches!(execute(&s, "v1", &add), Err(AdminError::NotFound(_))),
            "link to a missing account"
        );
        let imp = Op::UsersImport {
            users: vec![Profile {
                account_id: "L1".into(),
                ..Default::default()
            }],
            by: "x".into(),
        };
        assert_eq!(execute(&s, "v1", &imp).unwrap()["imported"], 1);
        execute(&s, "v1", &add).unwrap();
        assert_eq!(
            applications::get(&s, "GM2").unwrap().unwrap().status,
            ApplicationStatus::Pending
        );
        assert!(execute(&s, "v1", &add).is_err(), "no second application");
        execute(
            &s,
            "v1",
            &Op::ApplicationApprove {
                gmis_id: "GM2".into(),
                by: "x".into(),
            },
        )
        .unwrap();
        assert_eq!(
            applications::get(&s, "GM2").unwrap().unwrap().status,
            ApplicationStatus::Approved
        );
        execute(
            &s,
            "v1",
            &Op::ApplicationRevoke {
                gmis_id: "GM2".into(),
                by: "x".into(),
                note: "left".into(),
            },
        )
        .unwrap();
        assert_eq!(
            applications::get(&s, "GM2").unwrap().unwrap().status,
            ApplicationStatus::Revoked
        );
        let actions: Vec<String> = audit::tail(&s, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "users.import",
                "application.add",
                "application.approve",
                "application.revoke"
            ]
        );
    }

    fn session_on(s: &SledStore, id: &str, gmis: &str, local: &str) {
        let rec = crate::store::SessionRecord {
            id: id.into(),
            profile: Profile {
                account_id: gmis.into(),
                ..Default::default()
            },
            local_user_id: local.into(),
            name_id: gmis.into(),
            name_id_format: None,
            session_index: None,
            created: 0,
            last_seen: chrono::Utc::now().timestamp(),
            expires: chrono::Utc::now().timestamp() + 3600,
            auth_method: String::new(),
        };
        s.session_put(&rec, 3600).unwrap();
    }

    /// L1 imported, GM3 linked to it by an approved application, with a session.
    fn linked(s: &SledStore) {
        let run = |op: Op| execute(s, "v1", &op).unwrap();
        run(Op::UsersImport {
            users: vec![Profile {
                account_id: "L1".into(),
                ..Default::default()
            }],
            by: "x".into(),
        });
        run(Op::ApplicationAdd {
            gmis_id: "GM3".into(),
            link_to: Some("L1".into()),
            note: String::new(),
            by: "x".into(),
            approve: true,
        });
        let p = Profile {
            account_id: "GM3".into(),
            ..Default::default()
        };
        let (u, w, _) = users::register_writes(s, &p, Some("L1")).unwrap();
        s.apply(&w, None).unwrap();
        assert_eq!(u.id, "L1");
        session_on(s, "s1", "GM3", "L1");
    }

    fn last_audit(s: &SledStore) -> audit::AuditEntry {
        audit::tail(s, 1).unwrap().pop().unwrap()
    }

    /// Issue #12 item 2: revoking a linking application removes the link, audited.
    #[test]
    fn revoking_a_linking_application_unlinks() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        linked(&s);
        let v = execute(
            &s,
            "v1",
            &Op::ApplicationRevoke {
                gmis_id: "GM3".into(),
                by: "x".into(),
                note: "wrong person".into(),
            },
        )
        .unwrap();
        assert_eq!(v["unlinked"], "L1");
        assert!(users::by_gmis(&s, "GM3").unwrap().is_none(), "still linked");
        let l1 = users::get(&s, "L1").unwrap().unwrap();
        assert_eq!(l1.gmis_id, None);
        assert!(s.session_get("s1").unwrap().is_none(), "session survived");
        let a = last_audit(&s);
        assert_eq!(
            (a.action.as_str(), a.subject.as_str()),
            ("user.unlink", "L1")
        );
        assert!(
            a.detail.contains("GM3") && a.detail.contains("wrong person"),
            "{}",
            a.detail
        );
    }

    /// Issue #12 item 2: `users unlink`, by local id or by G-MIS id.
    #[test]
    fn unlink_by_either_id_revokes_the_application_and_ends_sessions() {
        for by_id in ["L1", "GM3"] {
            let d = tempfile::tempdir().unwrap();
            let s = SledStore::open(&d.path().join("db")).unwrap();
            linked(&s);
            let op = Op::UsersUnlink {
                id: by_id.into(),
                by: "x".into(),
                note: "n".into(),
                reading: None,
            };
            let v = execute(&s, "v1", &op).unwrap();
            assert_eq!(
                (v["id"].as_str(), v["sessions_ended"].as_u64()),
                (Some("L1"), Some(1))
            );
            assert!(users::by_gmis(&s, "GM3").unwrap().is_none());
            assert_eq!(users::get(&s, "L1").unwrap().unwrap().gmis_id, None);
            assert_eq!(
                applications::get(&s, "GM3").unwrap().unwrap().status,
                ApplicationStatus::Revoked,
                "an approved application would link again at the next login"
            );
            assert_eq!(last_audit(&s).action, "user.unlink");
            assert!(
                matches!(execute(&s, "v1", &op), Err(AdminError::NotFound(_))),
                "unlinking twice"
            );
        }
    }

    /// Review of the issue-12 fixes, finding 9: after an id collision (local GM1 linked to GMB,
    /// G-MIS GM1 registered as GM1-g2), `users unlink GM1` names two accounts: refused with both
    /// readings, and `reading` chooses.
    #[test]
    fn unlink_refuses_an_id_with_two_readings_until_told_which() {
        let setup = || {
            let d = tempfile::tempdir().unwrap();
            let s = SledStore::open(&d.path().join("db")).unwrap();
            let run = |op: Op| execute(&s, "v1", &op).unwrap();
            run(Op::UsersImport {
                users: vec![Profile {
                    account_id: "GM1".into(),
                    ..Default::default()
                }],
                by: "x".into(),
            });
            let reg = |gmis: &str, link: Option<&str>| {
                let p = Profile {
                    account_id: gmis.into(),
                    ..Default::default()
                };
                let (u, w, _) = users::register_writes(&s, &p, link).unwrap();
                s.apply(&w, None).unwrap();
                u.id
            };
            assert_eq!(reg("GMB", Some("GM1")), "GM1");
            assert_eq!(reg("GM1", None), "GM1-g2");
            (d, s)
        };
        let op = |reading| Op::UsersUnlink {
            id: "GM1".into(),
            by: "x".into(),
            note: String::new(),
            reading,
        };
        let (_d, s) = setup();
        match execute(&s, "v1", &op(None)) {
            Err(AdminError::Invalid(m)) => assert!(
                m.contains("ambiguous") && m.contains("GMB") && m.contains("GM1-g2"),
                "{m}"
            ),
            other => panic!("an ambiguous id was unlinked: {other:?}"),
        }
        assert!(users::by_gmis(&s, "GMB").unwrap().is_some(), "GMB unlinked");
        assert!(users::by_gmis(&s, "GM1").unwrap().is_some(), "GM1 unlinked");
        for (reading, gone, kept) in [
            (IdReading::Local, "GMB", "GM1"),
            (IdReading::Gmis, "GM1", "GMB"),
        ] {
            let (_d, s) = setup();
            execute(&s, "v1", &op(Some(reading))).unwrap();
            assert!(users::by_gmis(&s, gone).unwrap().is_none(), "{reading:?}");
            assert!(users::by_gmis(&s, kept).unwrap().is_some(), "{reading:?}");
        }
    }
}
