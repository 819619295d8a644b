//! The login decision: may this profile get a session now, and if not, which page ends the flow.
//!
//! The ACS asks [`decide`] and acts on the answer; it never inspects categories, consents or
//! applications itself. [`session_allowed`] runs the same gate on every request that uses a
//! session, because a category can change at G-MIS and the secretariat can block at any time.
//!
//! Order (DESIGN.md "Account states"): a block (rejected consent, secretariat) wins; a pending
//! application is sticky; then the category/application gate; then consent.

use super::applications::{self, ApplicationStatus};
use super::consent::{self, ConsentDecision};
use super::{users, Profile};
use crate::config::{ConsentConfig, PolicyConfig};
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
    /// A local account with the same facility code and mail exists and nothing links it.
    ExistingAccount,
    /// An application is filed and waits for the secretariat.
    Pending,
    /// The application was revoked.
    Revoked,
}

impl ApplicationNeed {
    pub fn code(self) -> &'static str {
        match self {
            ApplicationNeed::Category => "application_needed",
            ApplicationNeed::ExistingAccount => "application_needed_existing_account",
            ApplicationNeed::Pending => "application_pending",
            ApplicationNeed::Revoked => "application_revoked",
        }
    }
}

/// Whether the category may use SSO without an application.
pub fn category_open(policy: &PolicyConfig, category: &str) -> bool {
    policy.open_categories.iter().any(|c| c == category)
}

/// Decides the next step for a verified login.
pub fn decide(
    store: &dyn Store,
    policy: &PolicyConfig,
    consent_cfg: &ConsentConfig,
    p: &Profile,
) -> Result<Decision, StoreError> {
    let consent = consent::get(store, &p.account_id)?;
    if let Some(c) = consent.as_ref().filter(|c| c.blocks()) {
        return Ok(Decision::Blocked(c.decision));
    }
    let app = applications::get(store, &p.account_id)?;
    let status = app.as_ref().map(|a| a.status);
    if status == Some(ApplicationStatus::Pending) {
        return Ok(Decision::NeedsApplication(ApplicationNeed::Pending));
    }
    let approved = status == Some(ApplicationStatus::Approved);
    let link_to = app.filter(|_| approved).and_then(|a| a.link_to);
    if !approved {
        if !category_open(policy, &p.category) {
            let need = if status == Some(ApplicationStatus::Revoked) {
                ApplicationNeed::Revoked
            } else {
                ApplicationNeed::Category
            };
            return Ok(Decision::NeedsApplication(need));
        }
        if users::by_gmis(store, &p.account_id)?.is_none()
            && users::unlinked_match(store, p)?.is_some()
        {
            return Ok(Decision::NeedsApplication(ApplicationNeed::ExistingAccount));
        }
    }
    let accepted_now = consent.as_ref().is_some_and(|c| {
        c.decision == ConsentDecision::Accepted && c.version == consent_cfg.version
    });
    if consent_cfg.required && !accepted_now {
        return Ok(Decision::NeedsConsent { link_to });
    }
    Ok(Decision::Proceed { link_to })
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
    use crate::identity::users::User;
    use crate::store::SledStore;

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
        };
        s.apply(&[applications::write(&a)], None).unwrap();
    }

    fn set_consent(s: &SledStore, d: ConsentDecision, v: &str) {
        let c = ConsentState {
            gmis_id: "GM1".into(),
            decision: d,
            version: v.into(),
            at: now_rfc3339(),
            detail: String::new(),
        };
        s.apply(&[consent::write(&c)], None).unwrap();
    }

    #[test]
    fn open_categories_proceed_others_need_application() {
        let (_d, s) = store();
        for cat in ["病院", "診療所", "歯科診療所", "助産所", "薬局"] {
            assert_eq!(
                decide(&s, &PolicyConfig::default(), &consent_off(), &p(cat)).unwrap(),
                Decision::Proceed { link_to: None },
                "{cat}"
            );
        }
        for cat in ["保健所", "都道府県", ""] {
            assert_eq!(
                decide(&s, &PolicyConfig::default(), &consent_off(), &p(cat)).unwrap(),
                Decision::NeedsApplication(ApplicationNeed::Category)
            );
        }
        set_app(&s, ApplicationStatus::Approved, None);
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("保健所")).unwrap(),
            Decision::Proceed { link_to: None }
        );
        assert!(session_allowed(&s, &PolicyConfig::default(), &p("保健所")).unwrap());
        set_app(&s, ApplicationStatus::Revoked, None);
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("保健所")).unwrap(),
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
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::Pending)
        );
        set_app(&s, ApplicationStatus::Approved, None);
        set_consent(&s, ConsentDecision::BlockedBySecretariat, "v1");
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
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
        };
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::NeedsConsent { link_to: None }
        );
        set_consent(&s, ConsentDecision::Accepted, "v1");
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::NeedsConsent { link_to: None }
        );
        set_consent(&s, ConsentDecision::Accepted, "v2");
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
            Decision::Proceed { link_to: None }
        );
        set_consent(&s, ConsentDecision::Rejected, "v2");
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &on, &p("病院")).unwrap(),
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
            origin: "local".into(),
        };
        s.apply(&users::local_account_writes(&local), None).unwrap();
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
        set_app(&s, ApplicationStatus::Approved, Some("L100"));
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::Proceed {
                link_to: Some("L100".into())
            }
        );
        let (u, w) = users::register_writes(&s, &p("病院"), Some("L100")).unwrap();
        s.apply(&w, None).unwrap();
        assert_eq!(u.id, "L100");
        assert_eq!(users::by_gmis(&s, "GM1").unwrap().unwrap().id, "L100");
        assert_eq!(users::list(&s).unwrap().len(), 1, "linked, not duplicated");
    }
}
