//! What a request with a session cookie needs, kept in memory between requests: the session
//! record, the account's gate facts (block, SSO application) and the identity headers already
//! encoded. `/auth/verify` and the proxy read it on every request; without it each request
//! cost three store reads and three JSON decodes (session, consent, application) plus six
//! percent-encodings.
//!
//! Security property: an entry is used only while the store's [`Store::generation`] equals
//! the generation read *before* the entry's data was read from the store. Every write that
//! can end or restrict a session (logout, single logout, sweep, a block, a revoked
//! application, any consent/application/user write) changes the generation when it is done,
//! so once such a write has returned, no request is answered from an entry that predates it.
//! Time limits (hard end, idle) and the category policy are judged on every request, from the
//! entry and the current configuration. Only the positive answer comes from here: anything
//! else (expired, idle, refused) is decided again from the store.
//!
//! [`Store::generation`]: crate::store::Store::generation

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderName, HeaderValue};

use crate::identity::policy::GateFacts;
use crate::store::SessionRecord;

/// At most this many sessions are kept (roughly 1.5 KB each by estimate, so ~6 MiB); past it, entries from an
/// older generation go first, then the map starts over. A miss is only slower.
const CAP: usize = 4096;

/// A session as the request path uses it.
pub struct Live {
    pub rec: SessionRecord,
    /// `X-Auth-Request-*`, `X-Samlgate-*` and `X-Samlgate-Local-User`, encoded once.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Live {
    pub fn new(rec: SessionRecord) -> Live {
        let mut headers: Vec<_> = super::identity_headers::identity_headers(&rec.profile).collect();
        headers.push((
            HeaderName::from_static("x-samlgate-local-user"),
            super::identity_headers::encode_header_value(&rec.local_user_id),
        ));
        headers.push((
            HeaderName::from_static("x-samlgate-auth-method"),
            super::identity_headers::encode_header_value(rec.auth_method_header()),
        ));
        Live { rec, headers }
    }
}

struct Entry {
    generation: u64,
    facts: GateFacts,
    live: Arc<Live>,
}

#[derive(Default)]
pub struct SessionCache {
    map: Mutex<HashMap<String, Entry>>,
}

impl SessionCache {
    /// The entry for `id`, if it was filled at `generation` (the store's current one).
    pub fn get(&self, id: &str, generation: u64) -> Option<(GateFacts, Arc<Live>)> {
        let map = self.map.lock().ok()?;
        let e = map.get(id)?;
        (e.generation == generation).then(|| (e.facts, e.live.clone()))
    }

    /// Files what was read from the store; `generation` must have been read before it.
    pub fn put(&self, id: &str, generation: u64, facts: GateFacts, live: Arc<Live>) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CAP && !map.contains_key(id) {
                map.retain(|_, e| e.generation == generation);
                if map.len() >= CAP {
                    map.clear();
                }
            }
            map.insert(
                id.to_string(),
                Entry {
                    generation,
                    facts,
                    live,
                },
            );
        }
    }

    /// After this process refreshed the record's idle time in the store.
    pub fn touched(&self, id: &str, last_seen: i64) {
        if let Ok(mut map) = self.map.lock() {
            if let Some(e) = map.get_mut(id) {
                let mut rec = e.live.rec.clone();
                rec.last_seen = last_seen;
                e.live = Arc::new(Live {
                    rec,
                    headers: e.live.headers.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::identity::policy::gate_facts;
    use crate::identity::Profile;
    use crate::store::{SledStore, Store};

    fn rec(id: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            profile: Profile {
                account_id: "GM1".into(),
                category: "病院".into(),
                display_name: "山田 太郎".into(),
                ..Default::default()
            },
            local_user_id: "GM1".into(),
            name_id: "GM1".into(),
            name_id_format: None,
            session_index: None,
            created: 0,
            last_seen: 0,
            expires: 100,
            auth_method: String::new(),
        }
    }

    #[test]
    fn an_entry_counts_only_at_the_generation_it_was_read_at() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(&d.path().join("db")).unwrap();
        let c = SessionCache::default();
        let g = s.generation();
        let r = rec("s1");
        let facts = gate_facts(&s, &r.profile).unwrap();
        assert!(facts.allows(&PolicyConfig::default(), &r.profile));
        c.put("s1", g, facts, Arc::new(Live::new(r)));
        assert!(c.get("s1", s.generation()).is_some());
        assert!(c.get("s2", s.generation()).is_none());
        // Any restricting write in between: the entry no longer answers.
        s.apply(&[(
            crate::store::Table::Consents,
            b"GM1".to_vec(),
            Some(b"{}".to_vec()),
        )])
        .unwrap();
        assert!(c.get("s1", s.generation()).is_none());
    }

    #[test]
    fn a_full_cache_drops_older_generations_first_and_stays_bounded() {
        let c = SessionCache::default();
        for i in 0..CAP {
            let g = if i % 2 == 0 { 1 } else { 2 };
            c.put(
                &format!("s{i}"),
                g,
                GateFacts::default(),
                Arc::new(Live::new(rec("x"))),
            );
        }
        c.put(
            "new",
            2,
            GateFacts::default(),
            Arc::new(Live::new(rec("x"))),
        );
        let n = c.map.lock().unwrap().len();
        assert_eq!(
            n,
            CAP / 2 + 1,
            "only the current generation's entries are kept"
        );
        assert!(c.get("s1", 2).is_some() && c.get("new", 2).is_some());
        for i in 0..2 * CAP {
            c.put(
                &format!("t{i}"),
                2,
                GateFacts::default(),
                Arc::new(Live::new(rec("x"))),
            );
        }
        assert!(c.map.lock().unwrap().len() <= CAP);
    }

    #[test]
    fn headers_are_encoded_once_and_touch_keeps_them() {
        let c = SessionCache::default();
        let r = rec("s1");
        let facts = GateFacts::default();
        c.put("s1", 7, facts, Arc::new(Live::new(r)));
        c.touched("s1", 42);
        let (_, live) = c.get("s1", 7).unwrap();
        assert_eq!(live.rec.last_seen, 42);
        let get = |n: &str| {
            live.headers
                .iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(get("x-auth-request-user").as_deref(), Some("GM1"));
        assert_eq!(
            get("x-samlgate-display-name").as_deref(),
            Some("%E5%B1%B1%E7%94%B0 %E5%A4%AA%E9%83%8E")
        );
        assert_eq!(get("x-samlgate-local-user").as_deref(), Some("GM1"));
    }
}
