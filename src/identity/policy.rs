//! The login decision: may this profile get a session now, and if not, which page ends the flow.
//!
//! This is the seam for consent and SSO applications: the ACS asks [`decide`] and acts on the
//! answer; it never inspects categories itself. The gate also runs on every request that uses a
//! session ([`category_allowed`]), because a category can change at G-MIS.

use super::Profile;
use crate::config::{ConsentConfig, PolicyConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make the session and go on.
    Proceed,
    /// Show the consent page first.
    NeedsConsent,
    /// The category needs an approved SSO application, and there is none.
    NeedsApplication,
    /// SSO for this account is blocked (rejected consent, or the secretariat).
    Blocked,
}

/// Whether the category may use SSO without an application.
pub fn category_open(policy: &PolicyConfig, category: &str) -> bool {
    policy.open_categories.iter().any(|c| c == category)
}

/// Whether a session for this profile may still be used.
pub fn category_allowed(policy: &PolicyConfig, profile: &Profile) -> bool {
    category_open(policy, &profile.category)
}

/// Decides the next step for a verified login.
pub fn decide(policy: &PolicyConfig, consent: &ConsentConfig, profile: &Profile) -> Decision {
    if !category_open(policy, &profile.category) {
        return Decision::NeedsApplication;
    }
    if consent.required {
        return Decision::NeedsConsent;
    }
    Decision::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cat: &str) -> Profile {
        Profile {
            account_id: "GM1".into(),
            category: cat.into(),
            ..Default::default()
        }
    }

    #[test]
    fn open_categories_proceed_without_consent_config() {
        let c = ConsentConfig {
            required: false,
            version: "v".into(),
        };
        for cat in ["病院", "診療所", "歯科診療所", "助産所", "薬局"] {
            assert_eq!(
                decide(&PolicyConfig::default(), &c, &p(cat)),
                Decision::Proceed,
                "{cat}"
            );
        }
        assert_eq!(
            decide(&PolicyConfig::default(), &c, &p("保健所")),
            Decision::NeedsApplication
        );
        assert_eq!(
            decide(&PolicyConfig::default(), &c, &p("")),
            Decision::NeedsApplication
        );
    }

    #[test]
    fn consent_required_asks_first() {
        let c = ConsentConfig::default();
        assert_eq!(
            decide(&PolicyConfig::default(), &c, &p("病院")),
            Decision::NeedsConsent
        );
    }
}
