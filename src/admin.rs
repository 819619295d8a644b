//! The secretariat's operations (consents, applications, users, audit), as one set of
//! functions over the store. The CLI runs them directly when it can open the store, and
//! through the running gateway's admin API (`POST /admin/v1/op`, bearer token) when the
//! gateway holds the store's lock; both paths run [`execute`], so they cannot drift apart.
//!
//! An [`Op`] is the parsed request (its JSON shape is the API); [`execute`] hands it to the
//! struct of that operation (in `admin/`), whose `apply` does it. Every change is one atomic
//! batch with its audit line, durable before the answer.

pub mod applications;
pub mod consent;
pub mod error;
pub mod users;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::AdminError;
pub use users::IdReading;

use crate::audit;
use crate::model::Profile;
use crate::store::Store;

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
        Op::ConsentList => consent::List.apply(store)?,
        Op::ConsentShow { gmis_id } => consent::Show {
            gmis_id,
            current_version: consent_version,
        }
        .apply(store)?,
        Op::ConsentReopen { gmis_id, by, note } => {
            consent::Reopen { gmis_id, by, note }.apply(store)?
        }
        Op::ConsentBlock { gmis_id, by, note } => consent::Block {
            gmis_id,
            by,
            note,
            consent_version,
        }
        .apply(store)?,
        Op::ApplicationAdd {
            gmis_id,
            link_to,
            note,
            by,
            approve,
        } => applications::Add {
            gmis_id,
            link_to: link_to.as_deref(),
            note,
            by,
            approve: *approve,
        }
        .apply(store)?,
        Op::ApplicationApprove { gmis_id, by } => applications::Decide {
            gmis_id,
            by,
            approve: true,
            note: "",
        }
        .apply(store)?,
        Op::ApplicationRevoke { gmis_id, by, note } => applications::Decide {
            gmis_id,
            by,
            approve: false,
            note,
        }
        .apply(store)?,
        Op::ApplicationList => applications::List.apply(store)?,
        Op::UsersList => users::List.apply(store)?,
        Op::UsersShow { id } => users::Show { id }.apply(store)?,
        Op::UsersUnlink {
            id,
            by,
            note,
            reading,
        } => users::Unlink {
            id,
            reading: *reading,
            by,
            note,
        }
        .apply(store)?,
        Op::UsersImport { users: list, by } => users::Import { users: list, by }.apply(store)?,
        Op::Operator(o) => crate::notice::execute(store, o)?,
        Op::Accounts(_) => {
            return Err(AdminError::Invalid(
                "account operations need the [local] config".into(),
            ))
        }
        Op::AuditTail { n } => Value::Array(
            audit::tail(store, (*n).min(10_000))?
                .iter()
                .map(error::to_json)
                .collect(),
        ),
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::applications::{self, ApplicationStatus};
    use crate::identity::consent::{self, ConsentDecision, ConsentState};
    use crate::identity::now_rfc3339;
    use crate::identity::users;
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
        s.apply(&[consent::write(&st)]).unwrap();
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
        s.apply(&w).unwrap();
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
                s.apply(&w).unwrap();
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
