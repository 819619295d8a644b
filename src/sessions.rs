//! Ending sessions: the one place a session record is deleted on purpose (the store's own
//! sweeper aside). Logout, single logout, the expiry found on use, a new login replacing the
//! browser's earlier session, and the secretariat's block, reopen, revoke, unlink, disable,
//! password reset and "end sessions" all call [`end`]: what to end ([`Which`]), why ([`Why`]),
//! the caller's token cache if it has one, and the number ended back. One structured log line
//! per call (`sessions ended`, with `why` and `ended`).
//!
//! Why a token cache in another process (the CLI, a second gateway, or this process's admin
//! paths, which run on the store alone) need not be cleared: a cached JWT is only ever handed
//! out by `web::auth::insert_identity`, and only for a `Live` session, which exists only after
//! `web::auth::find_session` proved the record is still in the store, within its limits and
//! admitted, or came from `web::session_cache` at the store's current generation, which every
//! session delete moves (on PostgreSQL for every instance). So once a record is gone, no
//! process hands out its cached token again, whoever deleted it; the stale entry is memory
//! only (pruned with the expired ones once the cache passes 100,000 entries). Forgetting it
//! where the cache is at hand keeps that memory small. (A token already handed out stays valid
//! until its `exp`: the trade-off `token` documents.)

use crate::store::{SessionRecord, Store, StoreError};
use crate::token::TokenSigner;

/// What to end.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// One session by id.
    Session(&'a str),
    /// Sessions a login's own [`crate::store::Commit`] already deleted (`end_sessions`,
    /// atomic with the new session): only their cached tokens go. Counted as named.
    Committed(&'a [String]),
    /// Every session of a G-MIS account (`profile.account_id`).
    GmisAccount(&'a str),
    /// Every session on a local account (`local_user_id`), whatever G-MIS account it was
    /// reached from.
    LocalAccount(&'a str),
    /// The sessions of an IdP NameID, narrowed to these SessionIndex values when any are named
    /// (a LogoutRequest's).
    IdpSession {
        name_id: &'a str,
        session_indexes: &'a [String],
    },
}

impl Which<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Which::Session(_) => "session",
            Which::Committed(_) => "committed",
            Which::GmisAccount(_) => "gmis_account",
            Which::LocalAccount(_) => "local_account",
            Which::IdpSession { .. } => "idp_session",
        }
    }
}

/// Why sessions end (the log line's `why`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `/logout`.
    Logout,
    /// The IdP's LogoutRequest.
    SingleLogout,
    /// Found past its hard end or idle limit when used.
    Expired,
    /// A new login in the same browser.
    Replaced,
    /// The secretariat blocked SSO for the account.
    Blocked,
    /// The secretariat reopened a blocked account (a session that slipped in stays dead).
    Reopened,
    /// The SSO application was revoked.
    Revoked,
    /// The G-MIS account was unlinked from its local account.
    Unlinked,
    /// The local account was disabled.
    Disabled,
    /// The local account's password was reset (the old one may be known to someone else).
    PasswordReset,
    /// The secretariat ended the person's sessions (console).
    Secretariat,
}

impl Why {
    pub fn code(self) -> &'static str {
        match self {
            Why::Logout => "logout",
            Why::SingleLogout => "single_logout",
            Why::Expired => "session_expired",
            Why::Replaced => "replaced",
            Why::Blocked => "blocked",
            Why::Reopened => "reopened",
            Why::Revoked => "revoked",
            Why::Unlinked => "unlinked",
            Why::Disabled => "disabled",
            Why::PasswordReset => "password_reset",
            Why::Secretariat => "secretariat",
        }
    }
}

/// Ends the sessions `which` names and forgets their cached tokens in `tokens` (the caller's
/// cache, when it has one). Returns how many records this call deleted (for
/// [`Which::Committed`]: how many were named). Durable when it returns (each delete is, on
/// every backend), so callers that acknowledge the end have nothing to flush.
pub fn end(
    store: &dyn Store,
    tokens: Option<&TokenSigner>,
    which: Which<'_>,
    why: Why,
) -> Result<usize, StoreError> {
    let ids: Vec<String> = match which {
        Which::Session(id) => vec![id.to_string()],
        // A login in a browser without an earlier session: nothing to say.
        Which::Committed([]) => return Ok(0),
        Which::Committed(ids) => ids.to_vec(),
        Which::GmisAccount(g) => ids_of(store.sessions_by_account(g)?),
        Which::LocalAccount(l) => ids_of(store.sessions_by_local_user(l)?),
        Which::IdpSession {
            name_id,
            session_indexes,
        } => ids_of(
            store
                .sessions_by_name_id(name_id)?
                .into_iter()
                .filter(|s| {
                    session_indexes.is_empty()
                        || s.session_index
                            .as_ref()
                            .is_some_and(|i| session_indexes.contains(i))
                })
                .collect(),
        ),
    };
    let mut ended = 0;
    for id in &ids {
        if let Some(t) = tokens {
            t.forget(id);
        }
        if matches!(which, Which::Committed(_)) || store.session_delete(id)? {
            ended += 1;
        }
    }
    tracing::info!(target: "samlgate::session", why = why.code(), which = which.kind(), ended, "sessions ended");
    Ok(ended)
}

fn ids_of(recs: Vec<SessionRecord>) -> Vec<String> {
    recs.into_iter().map(|s| s.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Profile;
    use crate::keys::{KeyKind, KeySet};
    use crate::store::SledStore;

    fn rec(id: &str, gmis: &str, local: &str, index: Option<&str>) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            profile: Profile {
                account_id: gmis.into(),
                category: "病院".into(),
                ..Default::default()
            },
            local_user_id: local.into(),
            name_id: gmis.into(),
            name_id_format: None,
            session_index: index.map(str::to_string),
            created: 0,
            last_seen: 0,
            expires: i64::MAX / 2,
            auth_method: String::new(),
        }
    }

    fn signer(dir: &std::path::Path) -> TokenSigner {
        crate::keys::new_key_of(dir, "tok", 10, KeyKind::EcP256).unwrap();
        TokenSigner::new(KeySet::load(dir).unwrap(), 300, "i".into(), "a".into()).unwrap()
    }

    /// A store with five sessions: GM1 twice (SessionIndex a, b), GM2 linked to local L1,
    /// a password session on L1, and GM3.
    fn five() -> (tempfile::TempDir, SledStore) {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        for r in [
            rec("s1", "GM1", "GM1", Some("a")),
            rec("s2", "GM1", "GM1", Some("b")),
            rec("s3", "GM2", "L1", None),
            rec("s4", "", "L1", None),
            rec("s5", "GM3", "GM3", None),
        ] {
            s.session_put(&r, 3600).unwrap();
        }
        (d, s)
    }

    fn live(s: &SledStore) -> Vec<String> {
        let mut v: Vec<String> = s
            .sessions_matching(&|_| true)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn each_selection_ends_what_it_names_and_counts_it() {
        let (_d, s) = five();
        let idx = ["b".to_string()];
        let by_index = Which::IdpSession {
            name_id: "GM1",
            session_indexes: &idx,
        };
        assert_eq!(end(&s, None, by_index, Why::SingleLogout).unwrap(), 1);
        assert_eq!(live(&s), ["s1", "s3", "s4", "s5"]);
        assert_eq!(
            end(&s, None, Which::LocalAccount("L1"), Why::Disabled).unwrap(),
            2
        );
        assert_eq!(live(&s), ["s1", "s5"]);
        assert_eq!(
            end(&s, None, Which::GmisAccount("GM1"), Why::Blocked).unwrap(),
            1
        );
        // Gone already: counted as nothing.
        assert_eq!(end(&s, None, Which::Session("s1"), Why::Logout).unwrap(), 0);
        assert_eq!(end(&s, None, Which::Session("s5"), Why::Logout).unwrap(), 1);
        assert!(live(&s).is_empty());
    }

    #[test]
    fn a_logout_request_without_session_index_ends_every_session_of_the_name_id() {
        let (_d, s) = five();
        let all = Which::IdpSession {
            name_id: "GM1",
            session_indexes: &[],
        };
        assert_eq!(end(&s, None, all, Why::SingleLogout).unwrap(), 2);
        assert_eq!(live(&s), ["s3", "s4", "s5"]);
    }

    #[test]
    fn the_callers_token_cache_forgets_every_ended_session() {
        let (d, s) = five();
        let t = signer(&d.path().join("tok"));
        let r1 = rec("s1", "GM1", "GM1", Some("a"));
        let r3 = rec("s3", "GM2", "L1", None);
        let first = t.token_for(&r1).unwrap();
        assert_eq!(t.token_for(&r1).unwrap(), first, "cached");
        let third = t.token_for(&r3).unwrap();
        end(&s, Some(&t), Which::GmisAccount("GM1"), Why::Blocked).unwrap();
        assert!(!t.is_cached("s1") && !t.is_cached("s2"));
        assert!(t.is_cached("s3"), "another account's token stays");
        end(
            &s,
            Some(&t),
            Which::Committed(&["s3".into()]),
            Why::Replaced,
        )
        .unwrap();
        assert!(!t.is_cached("s3"));
        assert_ne!(t.token_for(&r3).unwrap(), third);
        // Committed: the store is not touched (the login's commit deleted them).
        assert!(live(&s).contains(&"s3".to_string()));
    }

    /// Every deliberate session delete outside the store goes through [`end`]: no other
    /// module calls `session_delete`.
    #[test]
    fn no_module_but_this_one_deletes_sessions() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if p.is_dir() {
                    if rel != "store" {
                        stack.push(p);
                    }
                } else if rel.ends_with(".rs") && rel != "sessions.rs" {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        if line.contains("session_delete") {
                            found.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "sessions end through sessions::end only:\n{}",
            found.join("\n")
        );
    }
}
