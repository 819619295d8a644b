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
use crate::store::{SessionRecord, Store, StoreError};

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
    pub fn code(self) -> &'static str {
        match self {
            ApplicationNeed::Category => "application_needed",
            ApplicationNeed::ExistingAccount => "application_needed_existing_account",
            ApplicationNeed::Pending => "application_pending",
            ApplicationNeed::Revoked => "application_revoked",
            ApplicationNeed::LinkConflict => "application_link_conflict",
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
        if users::by_gmis(store, &p.account_id)?.is_none() {
            if users::id_taken(store, &p.account_id)? {
                // Never take over the account that has this id: the secretariat decides.
                tracing::info!(target: "samlgate::identity", account_id = %p.account_id, reason = ApplicationNeed::ExistingAccount.code(), "a local account with this G-MIS id exists and is not linked to it");
                return Ok(Decision::NeedsApplication(ApplicationNeed::ExistingAccount));
            }
            if users::unlinked_match(store, p)?.is_some() {
                return Ok(Decision::NeedsApplication(ApplicationNeed::ExistingAccount));
            }
        }
    } else if let Some(target) = &link_to {
        if link_conflict(store, &p.account_id, target)? {
            return Ok(Decision::NeedsApplication(ApplicationNeed::LinkConflict));
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

/// Whether an approved application's `link_to` cannot be honoured: this G-MIS account is not
/// linked yet and the named account is missing or linked to another G-MIS account.
fn link_conflict(store: &dyn Store, gmis_id: &str, target: &str) -> Result<bool, StoreError> {
    if users::by_gmis(store, gmis_id)?.is_some() {
        return Ok(false);
    }
    let conflict = match users::get(store, target)? {
        None => Some("does not exist".to_string()),
        Some(u) => u
            .gmis_id
            .filter(|g| g != gmis_id)
            .map(|g| format!("is linked to G-MIS account {g}")),
    };
    if let Some(why) = &conflict {
        tracing::warn!(target: "samlgate::identity", account_id = %gmis_id, link_to = %target, reason = ApplicationNeed::LinkConflict.code(), "the approved application links to a local account that {why}");
    }
    Ok(conflict.is_some())
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

/// Writes a new session, then checks the account again and deletes the session if it may not
/// be used; `Ok(false)` when it was deleted. `consent` is the account's consent record as the
/// login's guarded batch left it.
///
/// Why no session outlives a block (DESIGN.md "Blocks and new sessions"): a block writes the
/// block, then ends the account's sessions; a reopen deletes the block, then ends them again;
/// this writes the session, then reads the account. A session written before the block's scan
/// is found by it; one written after it and before the reopen is found by this check (still
/// blocked) or by the reopen's scan (which comes after the reopen, so after this write).
pub fn put_session_checked(
    store: &dyn Store,
    policy: &PolicyConfig,
    rec: &SessionRecord,
    idle_seconds: i64,
    consent: Option<&[u8]>,
) -> Result<bool, StoreError> {
    put_then_check(store, policy, rec, idle_seconds, consent, &|| {})
}

/// [`put_session_checked`] with a hook between the two steps, for tests of the interleavings.
fn put_then_check(
    store: &dyn Store,
    policy: &PolicyConfig,
    rec: &SessionRecord,
    idle_seconds: i64,
    consent: Option<&[u8]>,
    between: &dyn Fn(),
) -> Result<bool, StoreError> {
    store.session_put(rec, idle_seconds)?;
    between();
    let still = still_allowed(store, policy, rec, consent);
    if still.as_ref().is_ok_and(|ok| *ok) {
        return Ok(true);
    }
    // Fail closed: an unreadable account ends the session too.
    store.session_delete(&rec.id)?;
    still.map(|_| false)
}

fn still_allowed(
    store: &dyn Store,
    policy: &PolicyConfig,
    rec: &SessionRecord,
    consent: Option<&[u8]>,
) -> Result<bool, StoreError> {
    let gmis = &rec.profile.account_id;
    let consent_now = store.get(crate::store::Table::Consents, gmis.as_bytes())?;
    if consent_now.as_deref() != consent {
        return Ok(false);
    }
    let linked = users::by_gmis(store, gmis)?.map(|u| u.id);
    Ok(linked.as_deref() == Some(rec.local_user_id.as_str())
        && session_allowed(store, policy, &rec.profile)?)
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
        s.apply(&[applications::write(&a)], None).unwrap();
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
            ..Default::default()
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
            origin: crate::model::UserOrigin::Local,
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
        let (u, w, how) = users::register_writes(&s, &p("病院"), Some("L100")).unwrap();
        assert_eq!(how, users::Registered::Linked);
        s.apply(&w, None).unwrap();
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
        s.apply(&users::local_account_writes(&l), None).unwrap();
        let before = s.get(crate::store::Table::Users, b"GM1").unwrap();
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
        // Approved without link_to: a fresh local id, the local account untouched.
        approve_plain(&s);
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::Proceed { link_to: None }
        );
        let (u, w, how) = users::register_writes(&s, &p("病院"), None).unwrap();
        s.apply(&w, None).unwrap();
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
        s.apply(&w, None).unwrap();
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::ExistingAccount)
        );
        // An approved application naming B's account cannot link to it.
        set_app(&s, ApplicationStatus::Approved, Some("GM1"));
        assert_eq!(
            decide(&s, &PolicyConfig::default(), &consent_off(), &p("病院")).unwrap(),
            Decision::NeedsApplication(ApplicationNeed::LinkConflict)
        );
        assert!(matches!(
            users::register_writes(&s, &p("病院"), Some("GM1")),
            Err(users::RegisterError::LinkTargetTaken { .. })
        ));
        approve_plain(&s);
        let (u, w, _) = users::register_writes(&s, &p("病院"), None).unwrap();
        s.apply(&w, None).unwrap();
        assert_eq!(u.id, "GM1-g2");
        let b = users::by_gmis(&s, "GMB").unwrap().unwrap();
        assert_eq!((b.id.as_str(), b.gmis_id.as_deref()), ("GM1", Some("GMB")));
        let mut pb = p("病院");
        pb.account_id = "GMB".into();
        assert_eq!(users::register_writes(&s, &pb, None).unwrap().0.id, "GM1");
    }

    // ---- issue #12 item 3: no session outlives a block, whatever the interleaving --------

    /// What a login's guarded batch leaves: GM1 registered, consent accepted (v1). Returns the
    /// session to write and the consent record's bytes.
    fn accepted_login(s: &SledStore) -> (SessionRecord, Vec<u8>) {
        let c = ConsentState {
            gmis_id: "GM1".into(),
            decision: ConsentDecision::Accepted,
            version: "v1".into(),
            at: now_rfc3339(),
            detail: "assertion _a1".into(),
            profile: None,
        };
        let (u, mut w, _) = users::register_writes(s, &p("病院"), None).unwrap();
        let cw = consent::write(&c);
        let bytes = cw.2.clone().unwrap();
        w.push(cw);
        s.apply(&w, Some((crate::store::Table::Consents, b"GM1", None)))
            .unwrap();
        (session_for(u.id), bytes)
    }

    fn admin(s: &SledStore, op: crate::admin::Op) {
        crate::admin::execute(s, "v1", &op).unwrap();
    }

    fn block(s: &SledStore) {
        admin(
            s,
            crate::admin::Op::ConsentBlock {
                gmis_id: "GM1".into(),
                by: "t".into(),
                note: "n".into(),
            },
        );
    }

    fn reopen(s: &SledStore) {
        admin(
            s,
            crate::admin::Op::ConsentReopen {
                gmis_id: "GM1".into(),
                by: "t".into(),
                note: String::new(),
            },
        );
    }

    fn commit(s: &SledStore, rec: &SessionRecord, c: &[u8], between: &dyn Fn()) -> bool {
        put_then_check(s, &PolicyConfig::default(), rec, 3600, Some(c), between).unwrap()
    }

    #[test]
    fn untouched_login_keeps_its_session() {
        let (_d, s) = store();
        let (rec, c) = accepted_login(&s);
        assert!(commit(&s, &rec, &c, &|| {}));
        assert!(s.session_get("sess1").unwrap().is_some());
    }

    /// The window of the issue: the whole block (write, then ending sessions) lands between
    /// the login's guarded batch and its session write.
    #[test]
    fn block_before_the_session_write_leaves_no_session() {
        let (_d, s) = store();
        let (rec, c) = accepted_login(&s);
        block(&s);
        assert!(!commit(&s, &rec, &c, &|| {}));
        assert!(s.session_get("sess1").unwrap().is_none());
        reopen(&s);
        assert!(
            s.session_get("sess1").unwrap().is_none(),
            "reopen revived it"
        );
    }

    /// Block and reopen both land before the session write: the consent this login wrote is
    /// gone, so the session goes too (the next login asks for consent again).
    #[test]
    fn block_and_reopen_before_the_session_write_leave_no_session() {
        let (_d, s) = store();
        let (rec, c) = accepted_login(&s);
        block(&s);
        reopen(&s);
        assert!(!commit(&s, &rec, &c, &|| {}));
        assert!(s.session_get("sess1").unwrap().is_none());
    }

    /// The block's write lands between the session write and the check; its scan may run at
    /// any point after: here it never does, the check alone removes the session.
    #[test]
    fn block_write_between_session_write_and_check_leaves_no_session() {
        let (_d, s) = store();
        let (rec, c) = accepted_login(&s);
        let blocked = ConsentState {
            gmis_id: "GM1".into(),
            decision: ConsentDecision::BlockedBySecretariat,
            version: "v1".into(),
            at: now_rfc3339(),
            detail: "n".into(),
            profile: None,
        };
        assert!(!commit(&s, &rec, &c, &|| {
            s.apply(&[consent::write(&blocked)], None).unwrap();
        }));
        assert!(s.session_get("sess1").unwrap().is_none());
        // The full block there: its scan ends the session, the check agrees.
        let (_d2, s2) = store();
        let (rec, c) = accepted_login(&s2);
        assert!(!commit(&s2, &rec, &c, &|| block(&s2)));
        assert!(s2.session_get("sess1").unwrap().is_none());
    }

    /// An unlink (and a revoke) during the same window: the session would carry an account
    /// the G-MIS user no longer has.
    #[test]
    fn unlink_or_revoke_before_the_check_leaves_no_session() {
        let (_d, s) = store();
        let (rec, c) = accepted_login(&s);
        admin(
            &s,
            crate::admin::Op::UsersUnlink {
                id: "GM1".into(),
                by: "t".into(),
                note: String::new(),
                reading: None,
            },
        );
        assert!(!commit(&s, &rec, &c, &|| {}));
        let (_d2, s2) = store();
        set_app(&s2, ApplicationStatus::Approved, None);
        let (rec, c) = accepted_login(&s2);
        let mut closed = rec.clone();
        closed.profile.category = "保健所".into();
        admin(
            &s2,
            crate::admin::Op::ApplicationRevoke {
                gmis_id: "GM1".into(),
                by: "t".into(),
                note: String::new(),
            },
        );
        assert!(!commit(&s2, &closed, &c, &|| {}));
        assert!(s2.session_get("sess1").unwrap().is_none());
    }

    /// A login with no consent record (consent not required) writes its session during the
    /// block, and its check runs only after the reopen, so the check passes: the reopen's own
    /// scan must end that session.
    #[test]
    fn session_written_during_a_block_is_ended_by_the_reopen() {
        let (_d, s) = store();
        let (u, w, _) = users::register_writes(&s, &p("病院"), None).unwrap();
        s.apply(&w, Some((crate::store::Table::Consents, b"GM1", None)))
            .unwrap();
        let mut rec = session_for(u.id);
        rec.id = "sess2".into();
        block(&s);
        put_then_check(&s, &PolicyConfig::default(), &rec, 3600, None, &|| {
            reopen(&s)
        })
        .unwrap();
        assert!(
            s.session_get("sess2").unwrap().is_none(),
            "a session written while blocked survived the reopen"
        );
    }

    fn session_for(local: String) -> SessionRecord {
        let now = chrono::Utc::now().timestamp();
        SessionRecord {
            id: "sess1".into(),
            profile: p("病院"),
            local_user_id: local,
            name_id: "GM1".into(),
            name_id_format: None,
            session_index: None,
            created: now,
            last_seen: now,
            expires: now + 3600,
            auth_method: String::new(),
        }
    }
}
