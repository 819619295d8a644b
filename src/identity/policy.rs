//! The login decision: may this profile get a session now, and if not, which page ends the flow.
//!
//! The ACS asks [`decide`] and acts on the answer; it never inspects categories, consents or
//! applications itself. [`session_allowed`] runs the same gate on every request that uses a
//! session, because a category can change at G-MIS and the secretariat can block at any time.
//!
//! Order (DESIGN.md "Account states"): a block (rejected consent, secretariat) wins; a pending
//! application is sticky; then the category/application gate; then consent.

use super::account::Account;
use super::applications::{self, ApplicationStatus};
use super::consent::{self, ConsentDecision};
use super::Profile;
use crate::config::{ConsentConfig, PolicyConfig};
use crate::reason::Reason;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make the session and go on (registering/refreshing the user row).
    Proceed { link_to: Option<String> },
    /// Show the consent page first.
    NeedsConsent { link_to: Option<String> },
    /// An approved SSO application is needed.
    NeedsApplication(ApplicationNeed),
    /// SSO for this account is blocked until the secretariat reopens it.
    Blocked(ConsentDecision),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationNeed {
    /// The category is not in `[policy] open_categories`.
    Category,
    /// A local account with the same facility code and mail, or with the G-MIS account's id,
    /// exists and is not linked to it.
    ExistingAccount,
    /// An application is filed and waits for the secretariat.
    Pending,
    /// The application was revoked.
    Revoked,
    /// The approved application names a local account that is missing or linked to another
    /// G-MIS account: the secretariat must correct it.
    LinkConflict,
}

impl ApplicationNeed {
    pub fn reason(self) -> Reason {
        match self {
            ApplicationNeed::Category => Reason::ApplicationNeeded,
            ApplicationNeed::ExistingAccount => Reason::ApplicationNeededExistingAccount,
            ApplicationNeed::Pending => Reason::ApplicationPending,
            ApplicationNeed::Revoked => Reason::ApplicationRevoked,
            ApplicationNeed::LinkConflict => Reason::ApplicationLinkConflict,
        }
    }

    pub fn code(self) -> &'static str {
        self.reason().code()
    }
}

/// Whether the category may use SSO without an application.
pub fn category_open(policy: &PolicyConfig, category: &str) -> bool {
    policy.open_categories.iter().any(|c| c == category)
}

/// Decides the next step for a verified login, on the account as one snapshot read it. Pure:
/// the caller commits what follows guarded by the same rows, so the decision holds when it
/// lands (login::Admitted::finish).
pub fn decide(
    policy: &PolicyConfig,
    consent_cfg: &ConsentConfig,
    p: &Profile,
    a: &Account,
) -> Decision {
    if let Some(c) = a.consent.as_ref().filter(|c| c.blocks()) {
        return Decision::Blocked(c.decision);
    }
    let status = a.application.as_ref().map(|a| a.status);
    if status == Some(ApplicationStatus::Pending) {
        return Decision::NeedsApplication(ApplicationNeed::Pending);
    }
    let approved = status == Some(ApplicationStatus::Approved);
    let link_to = a
        .application
        .as_ref()
        .filter(|_| approved)
        .and_then(|a| a.link_to.clone());
    if !approved {
        if !category_open(policy, &p.category) {
            let need = if status == Some(ApplicationStatus::Revoked) {
                ApplicationNeed::Revoked
            } else {
                ApplicationNeed::Category
            };
            return Decision::NeedsApplication(need);
        }
        if a.linked.is_none() {
            if a.id_taken() {
                // Never take over the account that has this id: the secretariat decides.
                tracing::info!(target: "samlgate::identity", account_id = %p.account_id, reason = ApplicationNeed::ExistingAccount.code(), "a local account with this G-MIS id exists and is not linked to it");
                return Decision::NeedsApplication(ApplicationNeed::ExistingAccount);
            }
            if a.unlinked_match().is_some() {
                return Decision::NeedsApplication(ApplicationNeed::ExistingAccount);
            }
        }
    } else if let Some(target) = &link_to {
        if link_conflict(a, target) {
            return Decision::NeedsApplication(ApplicationNeed::LinkConflict);
        }
    }
    let accepted_now = a.consent.as_ref().is_some_and(|c| {
        c.decision == ConsentDecision::Accepted && c.version == consent_cfg.version
    });
    if consent_cfg.required && !accepted_now {
        return Decision::NeedsConsent { link_to };
    }
    Decision::Proceed { link_to }
}

/// Whether an approved application's `link_to` cannot be honoured: this G-MIS account is not
/// linked yet and the named account is missing or linked to another G-MIS account.
fn link_conflict(a: &Account, target: &str) -> bool {
    if a.linked.is_some() {
        return false;
    }
    let gmis_id = a.gmis_id();
    let conflict = match &a.link_target {
        None => Some("does not exist".to_string()),
        Some(u) => u
            .gmis_id
            .clone()
            .filter(|g| g != gmis_id)
            .map(|g| format!("is linked to G-MIS account {g}")),
    };
    if let Some(why) = &conflict {
        tracing::warn!(target: "samlgate::identity", account_id = %gmis_id, link_to = %target, reason = ApplicationNeed::LinkConflict.code(), "the approved application links to a local account that {why}");
    }
    conflict.is_some()
}

/// Whether a session for this profile may still be used: not blocked, no pending application,
/// and the category is open or an application is approved.
pub fn session_allowed(
    store: &dyn Store,
    policy: &PolicyConfig,
    p: &Profile,
) -> Result<bool, StoreError> {
    Ok(gate_facts(store, p)?.allows(policy, p))
}

/// What the store says about an account for the per-request gate: its block and its SSO
/// application. Split from the decision so a caller may keep the facts while the store's
/// [`Store::generation`] is unchanged and still judge them against the current policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateFacts {
    blocked: bool,
    application: Option<ApplicationStatus>,
}

pub fn gate_facts(store: &dyn Store, p: &Profile) -> Result<GateFacts, StoreError> {
    Ok(GateFacts {
        blocked: consent::get(store, &p.account_id)?.is_some_and(|c| c.blocks()),
        application: applications::get(store, &p.account_id)?.map(|a| a.status),
    })
}

impl GateFacts {
    /// A block wins; an approved application admits; a pending one holds; otherwise the
    /// category decides.
    pub fn allows(&self, policy: &PolicyConfig, p: &Profile) -> bool {
        if self.blocked {
            return false;
        }
        match self.application {
            Some(ApplicationStatus::Approved) => true,
            Some(ApplicationStatus::Pending) => false,
            _ => category_open(policy, &p.category),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::applications::Application;
    use crate::identity::consent::ConsentState;
    use crate::identity::now_rfc3339;
    use crate::identity::users;
    use crate::identity::users::User;
    use crate::store::SledStore;

    /// The decision on what the store holds now (the tests set the store up; decide is pure).
    fn decide_in(
        s: &SledStore,
        policy: &PolicyConfig,
        c: &ConsentConfig,
        p: &Profile,
    ) -> Result<Decision, StoreError> {
        Ok(decide(policy, c, p, &Account::read(s, p)?))
    }

    fn p(cat: &str) -> Profile {
        Profile {
            account_id: "GM1".into(),
            category: cat.into(),
            facility_code: "F1".into(),
            email: "a@example.jp".into(),
            ..Default::default()
        }
    }

    fn store() -> (tempfile::TempDir, SledStore) {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        (d, s)
    }

    fn consent_off() -> ConsentConfig {
        ConsentConfig {
            required: false,
            version: "v1".into(),
            ..Default::default()
        }
    }

    fn set_app(s: &SledStore, status: ApplicationStatus, link_to: Option<&str>) {
        let a = Application {
            gmis_id: "GM1".into(),
            status,
            link_to: link_to.map(str::to_string),
            note: String::new(),
            created: now_rfc3339(),
            updated: now_rfc3339(),
            profile: None,
            phone: String::new(),
            reason: String::new(),
        };
        s.apply(&[applications::write(&a)]).unwrap();
    }

    fn set_consent(s: &SledStore, d: ConsentDecision, v: &str) {
        let c = ConsentState {
            gmis_id: "GM1".into(),
            decision: d,
            version: v.into(),
            at: now_rfc3339(),
            detail: String::new(),
            profile: None,
        };
        s.apply(&[consent::write(&c)]).unwrap();
    }

    #[test]
    fn open_categories_proceed_others_need_application() {
        let (_d, s) = store();
        for cat in ["病院", "診療所", "歯科診療所", "助産所", "薬局"] {
            assert_eq!(
                decide_in(&s, &PolicyConfig::default(), &consent_off(), &p(cat)).unwrap(),
                Decision::Proceed { link_to: None },
                "{cat}"
            );
        }
        for cat in ["保健所", "都道府県", ""] {
            assert_eq!(
                decide_in(&s, &PolicyConfig::default(), &consent_off(), &p(cat)).unwrap(),
                Decision::NeedsApplication(ApplicationNeed::Category)
            );
        }
        set_app(&s, ApplicationStatus::Approved, None);
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("保健所")).unwrap(),
            Decision::Proceed { link_to: None }
        );
        assert!(session_allowed(&s, &PolicyConfig::default(), &p("保健所")).unwrap());
        set_app(&s, ApplicationStatus::Revoked, None);
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("保健所")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::Revoked)
        );
        assert!(!session_allowed(&s, &PolicyConfig::default(), &p("保健所")).unwrap());
    }

    #[test]
    fn pending_application_and_blocks_are_sticky() {
        let (_d, s) = store();
        set_app(&s, ApplicationStatus::Pending, None);
        // Even an open category waits while an application is pending.
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::Pending)
        );
        set_app(&s, ApplicationStatus::Approved, None);
        set_consent(&s, ConsentDecision::BlockedBySecretariat, "v1");
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::Blocked(ConsentDecision::BlockedBySecretariat)
        );
        assert!(!session_allowed(&s, &PolicyConfig::default(), &p("病院")).unwrap());
    }

    #[test]
    fn consent_asked_once_per_version() {
        let (_d, s) = store();
        let on = ConsentConfig {
            required: true,
            version: "v2".into(),
            ..Default::default()
        };
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::NeedsConsent { link_to: None }
        );
        set_consent(&s, ConsentDecision::Accepted, "v1");
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::NeedsConsent { link_to: None }
        );
        set_consent(&s, ConsentDecision::Accepted, "v2");
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::Proceed { link_to: None }
        );
        set_consent(&s, ConsentDecision::Rejected, "v2");
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::Blocked(ConsentDecision::Rejected)
        );
    }

    #[test]
    fn existing_local_account_needs_linking_application() {
        let (_d, s) = store();
        let local = User {
            id: "L100".into(),
            gmis_id: None,
            profile: Profile {
                account_id: "L100".into(),
                facility_code: "F1".into(),
                email: "A@example.jp".into(),
                ..Default::default()
            },
            created: now_rfc3339(),
            updated: now_rfc3339(),
            origin: crate::model::UserOrigin::Local,
        };
        s.apply(&users::local_account_writes(&local)).unwrap();
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
        set_app(&s, ApplicationStatus::Approved, Some("L100"));
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::Proceed {
                link_to: Some("L100".into())
            }
        );
        let (u, w, how) = users::register_writes(&s, &p("病院"), Some("L100")).unwrap();
        assert_eq!(how, users::Registered::Linked);
        s.apply(&w).unwrap();
        assert_eq!(u.id, "L100");
        assert_eq!(users::by_gmis(&s, "GM1").unwrap().unwrap().id, "L100");
        assert_eq!(users::list(&s).unwrap().len(), 1, "linked, not duplicated");
    }

    fn local(id: &str, gmis: Option<&str>, facility: &str) -> User {
        User {
            id: id.into(),
            gmis_id: gmis.map(str::to_string),
            profile: Profile {
                account_id: id.into(),
                category: "病院".into(),
                facility_code: facility.into(),
                email: format!("{id}@other.example.jp"),
                ..Default::default()
            },
            created: "2020-01-01T00:00:00Z".into(),
            updated: "2020-01-01T00:00:00Z".into(),
            origin: crate::model::UserOrigin::Local,
        }
    }

    fn approve_plain(s: &SledStore) {
        set_app(s, ApplicationStatus::Approved, None);
    }

    /// Issue #12 item 1: a local account whose id equals the G-MIS id (another facility,
    /// another mail) is neither rewritten nor linked by a first login.
    #[test]
    fn a_first_login_never_takes_over_a_local_account_with_its_id() {
        let (_d, s) = store();
        let l = local("GM1", None, "F9");
        s.apply(&users::local_account_writes(&l)).unwrap();
        let before = s.get(crate::store::Table::Users, b"GM1").unwrap();
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
        // Approved without link_to: a fresh local id, the local account untouched.
        approve_plain(&s);
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::Proceed { link_to: None }
        );
        let (u, w, how) = users::register_writes(&s, &p("病院"), None).unwrap();
        s.apply(&w).unwrap();
        assert_eq!(u.id, "GM1-g2");
        assert_eq!(
            how,
            users::Registered::NewRenamed {
                taken: "GM1".into()
            }
        );
        assert!(how.audit(&u).unwrap().1.contains("GM1-g2"));
        assert_eq!(s.get(crate::store::Table::Users, b"GM1").unwrap(), before);
        assert_eq!(users::by_gmis(&s, "GM1").unwrap().unwrap().id, "GM1-g2");
        // The next login finds its own account, still not the local one.
        let (u, w, how) = users::register_writes(&s, &p("病院"), None).unwrap();
        assert_eq!(
            (u.id.as_str(), w.len(), how),
            ("GM1-g2", 0, users::Registered::Unchanged)
        );
    }

    /// Issue #12 item 1, worse case: the account with the newcomer's id is linked to G-MIS
    /// user B. The newcomer never gets it, and B keeps it.
    #[test]
    fn an_account_linked_to_another_gmis_user_is_never_handed_over() {
        let (_d, s) = store();
        let l = local("GM1", Some("GMB"), "F9");
        let mut w = users::local_account_writes(&l);
        w.push((
            crate::store::Table::UserByGmis,
            b"GMB".to_vec(),
            Some(b"GM1".to_vec()),
        ));
        s.apply(&w).unwrap();
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
        // An approved application naming B's account cannot link to it.
        set_app(&s, ApplicationStatus::Approved, Some("GM1"));
        assert_eq!(
            decide_in(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::LinkConflict)
        );
        assert!(matches!(
            users::register_writes(&s, &p("病院"), Some("GM1")),
            Err(users::RegisterError::LinkTargetTaken { .. })
        ));
        approve_plain(&s);
        let (u, w, _) = users::register_writes(&s, &p("病院"), None).unwrap();
        s.apply(&w).unwrap();
        assert_eq!(u.id, "GM1-g2");
        let b = users::by_gmis(&s, "GMB").unwrap().unwrap();
        assert_eq!((b.id.as_str(), b.gmis_id.as_deref()), ("GM1", Some("GMB")));
        let mut pb = p("病院");
        pb.account_id = "GMB".into();
        assert_eq!(users::register_writes(&s, &pb, None).unwrap().0.id, "GM1");
    }

    /// The decision is a function of the snapshot alone: built here by hand, no store.
    #[test]
    fn decide_is_pure_over_the_account_snapshot() {
        use crate::store::{AccountRows, Table, Version, Versioned};
        let row = |t: Table, k: &str, v: Option<serde_json::Value>| Versioned {
            table: t,
            key: k.as_bytes().to_vec(),
            version: if v.is_some() {
                Version(7)
            } else {
                Version::ABSENT
            },
            value: v.map(|v| v.to_string().into_bytes()),
        };
        let snapshot = |consent: Option<serde_json::Value>, same_id: Option<serde_json::Value>| {
            Account::decode(AccountRows {
                gmis_id: "GM1".into(),
                consent: row(Table::Consents, "GM1", consent),
                application: row(Table::Applications, "GM1", None),
                link: row(Table::UserByGmis, "GM1", None),
                linked_user: None,
                same_id: row(Table::Users, "GM1", same_id),
                link_target: None,
                contact: None,
                contact_user: None,
            })
            .unwrap()
        };
        let on = ConsentConfig {
            required: true,
            version: "v1".into(),
            ..Default::default()
        };
        let pol = PolicyConfig::default();
        assert_eq!(
            decide(&pol, &on, &p("病院"), &snapshot(None, None)),
            Decision::NeedsConsent { link_to: None }
        );
        let accepted = serde_json::json!({"gmis_id": "GM1", "decision": "accepted", "version": "v1", "at": "t"});
        assert_eq!(
            decide(
                &pol,
                &on,
                &p("病院"),
                &snapshot(Some(accepted.clone()), None)
            ),
            Decision::Proceed { link_to: None }
        );
        assert_eq!(
            decide(&pol, &on, &p("保健所"), &snapshot(Some(accepted), None)),
            Decision::NeedsApplication(ApplicationNeed::Category)
        );
        let blocked = serde_json::json!({"gmis_id": "GM1", "decision": "blocked_by_secretariat", "version": "v1", "at": "t"});
        assert_eq!(
            decide(&pol, &on, &p("病院"), &snapshot(Some(blocked), None)),
            Decision::Blocked(ConsentDecision::BlockedBySecretariat)
        );
        let other = serde_json::json!({"id": "GM1", "gmis_id": null, "profile": {}, "created": "t", "updated": "t", "origin": "local"});
        assert_eq!(
            decide(
                &pol,
                &consent_off(),
                &p("病院"),
                &snapshot(None, Some(other))
            ),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
    }
}
