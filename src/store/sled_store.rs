//! The embedded store on sled. One tree per kind of record; values are JSON (records) or
//! big-endian i64 (replay expiry), so a record can be read with any sled tool when debugging.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{Entries, Expect, ReplayCheck, SessionRecord, Store, StoreError, Table, Write};

pub struct SledStore {
    db: sled::Db,
    replay: sled::Tree,
    sessions: sled::Tree,
    secrets: sled::Tree,
    /// Indexed by `Table::index`.
    tables: Vec<sled::Tree>,
    group: GroupFlush,
}

/// Group commit: a caller's writes are durable once a flush that *started after* the caller
/// asked has finished. One caller at a time runs the flush (the leader) on behalf of everyone
/// who asked before it started; the others wait for it instead of queueing their own fsync.
#[derive(Default)]
struct GroupFlush {
    state: std::sync::Mutex<FlushState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct FlushState {
    requested: u64,
    completed: u64,
    running: bool,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Io(e.to_string()))?;
        }
        let db = sled::Config::new()
            .path(path)
            // Durability comes from explicit flushes on acknowledged writes, not a timer.
            .flush_every_ms(Some(1000))
            // sled's default page cache is 1 GiB, and sled fills it with what it wrote (every
            // session and replay record), so RSS grew with every login. The working set (live
            // sessions read by /auth/verify, users, consents) is small; a miss is a page read.
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(|e| StoreError::Io(format!("cannot open store at {}: {e}", path.display())))?;
        let mut tables = Vec::new();
        for t in Table::ALL {
            tables.push(db.open_tree(t.name())?);
        }
        Ok(SledStore {
            group: GroupFlush::default(),
            tables,
            replay: db.open_tree("replay")?,
            sessions: db.open_tree("sessions")?,
            secrets: db.open_tree("secrets")?,
            db,
        })
    }

    fn table(&self, t: Table) -> &sled::Tree {
        &self.tables[t.index()]
    }
}

fn be(i: i64) -> [u8; 8] {
    i.to_be_bytes()
}

fn from_be(v: &[u8]) -> Result<i64, StoreError> {
    let arr: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("replay expiry".into()))?;
    Ok(i64::from_be_bytes(arr))
}

impl Store for SledStore {
    fn replay_check_and_record(
        &self,
        key: &str,
        expires: i64,
        now: i64,
    ) -> Result<ReplayCheck, StoreError> {
        let mut current: Option<sled::IVec> = None;
        loop {
            match self
                .replay
                .compare_and_swap(key, current.as_ref(), Some(&be(expires)))?
            {
                Ok(()) => return Ok(ReplayCheck::Fresh),
                Err(cas) => match cas.current {
                    Some(v) if from_be(&v)? > now => return Ok(ReplayCheck::Replayed),
                    // Expired entry not yet swept: the ID is free again; retry against it.
                    other => current = other,
                },
            }
        }
    }

    fn replay_sweep(&self, now: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.replay.iter() {
            let (k, v) = item?;
            if from_be(&v)? <= now {
                // Only remove what we saw, so a concurrent re-record is kept.
                if self
                    .replay
                    .compare_and_swap(&k, Some(&v), None::<&[u8]>)?
                    .is_ok()
                {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn session_put(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.sessions.insert(rec.id.as_bytes(), v)?;
        Ok(())
    }

    fn session_get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self.sessions.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("session {id}: {e}"))),
        }
    }

    fn session_touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        // Not flushed: losing a last_seen update on a crash only shortens an idle window.
        self.sessions.fetch_and_update(id.as_bytes(), |old| {
            let old = old?;
            let mut rec: SessionRecord = serde_json::from_slice(old).ok()?;
            rec.last_seen = now;
            serde_json::to_vec(&rec).ok()
        })?;
        Ok(())
    }

    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.sessions.remove(id.as_bytes())?.is_some())
    }

    fn session_sweep(&self, now: i64, idle_seconds: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let dead = match serde_json::from_slice::<SessionRecord>(&v) {
                Ok(rec) => rec.expires <= now || rec.last_seen + idle_seconds <= now,
                Err(_) => true,
            };
            if dead
                && self
                    .sessions
                    .compare_and_swap(&k, Some(&v), None::<&[u8]>)?
                    .is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn sessions_matching(
        &self,
        pred: &dyn Fn(&SessionRecord) -> bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.sessions.iter() {
            let (_, v) = item?;
            if let Ok(rec) = serde_json::from_slice::<SessionRecord>(&v) {
                if pred(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    fn secret_get_or_create(
        &self,
        name: &str,
        make: &dyn Fn() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(v) = self.secrets.get(name)? {
            return Ok(v.to_vec());
        }
        let fresh = make();
        let _ = self
            .secrets
            .compare_and_swap(name, None::<&[u8]>, Some(fresh.as_slice()))?;
        self.db.flush()?;
        let v = self
            .secrets
            .get(name)?
            .ok_or_else(|| StoreError::Io("secret vanished".into()))?;
        Ok(v.to_vec())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let g = &self.group;
        let mut st = g
            .state
            .lock()
            .map_err(|_| StoreError::Io("flush lock poisoned".into()))?;
        st.requested += 1;
        let mine = st.requested;
        loop {
            if st.completed >= mine {
                return Ok(());
            }
            if !st.running {
                // Lead: everything requested so far was written before it was requested.
                st.running = true;
                let target = st.requested;
                drop(st);
                let r = self.db.flush();
                st = g
                    .state
                    .lock()
                    .map_err(|_| StoreError::Io("flush lock poisoned".into()))?;
                st.running = false;
                if r.is_ok() {
                    st.completed = st.completed.max(target);
                }
                g.done.notify_all();
                r?;
                continue;
            }
            st = g
                .done
                .wait(st)
                .map_err(|_| StoreError::Io("flush lock poisoned".into()))?;
        }
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.table(t).get(key)?.map(|v| v.to_vec()))
    }

    fn apply(&self, writes: &[Write], expect: Option<Expect<'_>>) -> Result<bool, StoreError> {
        let r = self.tables[..].transaction(|views| {
            if let Some((t, k, want)) = expect {
                let cur = views[t.index()].get(k)?;
                if cur.as_deref() != want {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for (t, k, v) in writes {
                let view = &views[t.index()];
                match v {
                    Some(v) => {
                        view.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        view.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let it = self.table(t).scan_prefix(prefix);
        let mut out = Vec::new();
        let mut push = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StoreError> {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        };
        if rev {
            for item in it.rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in it {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the store at `path` again after an earlier handle in this process was dropped.
    /// sled's flusher thread lets go of the file lock shortly *after* the drop, so a reopen
    /// right away can fail under load; a restarted process does not have this race.
    fn reopen(path: &Path) -> SledStore {
        let mut tries = 0;
        loop {
            match SledStore::open(path) {
                Ok(s) => return s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("reopen {}: {e}", path.display()),
            }
        }
    }
    use crate::identity::Profile;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        (dir, s)
    }

    #[test]
    fn replay_is_fresh_once_then_replayed_until_expiry() {
        let (_d, s) = store();
        assert_eq!(
            s.replay_check_and_record("a", 100, 10).unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            s.replay_check_and_record("a", 100, 50).unwrap(),
            ReplayCheck::Replayed
        );
        // After expiry the entry no longer blocks (and is re-recorded).
        assert_eq!(
            s.replay_check_and_record("a", 300, 100).unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            s.replay_check_and_record("a", 300, 200).unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(s.replay_sweep(299).unwrap(), 0);
        assert_eq!(s.replay_sweep(300).unwrap(), 1);
    }

    #[test]
    fn replay_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(&dir.path().join("db")).unwrap();
            s.replay_check_and_record("k", i64::MAX, 0).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(&dir.path().join("db"));
        assert_eq!(
            s.replay_check_and_record("k", i64::MAX, 1).unwrap(),
            ReplayCheck::Replayed
        );
    }

    #[test]
    fn sessions_round_trip_and_sweep() {
        let (_d, s) = store();
        let rec = SessionRecord {
            local_user_id: "GM1".into(),
            id: "s1".into(),
            profile: Profile {
                account_id: "GM1".into(),
                ..Default::default()
            },
            name_id: "GM1".into(),
            name_id_format: None,
            session_index: None,
            created: 0,
            last_seen: 0,
            expires: 1000,
        };
        s.session_put(&rec).unwrap();
        assert_eq!(s.session_get("s1").unwrap().unwrap(), rec);
        s.session_touch("s1", 500).unwrap();
        assert_eq!(s.session_get("s1").unwrap().unwrap().last_seen, 500);
        assert_eq!(s.session_sweep(600, 1800).unwrap(), 0);
        assert_eq!(s.session_sweep(1000, 1800).unwrap(), 1);
        assert_eq!(s.session_count(), 0);
    }

    #[test]
    fn apply_is_all_or_nothing_with_guard() {
        let (_d, s) = store();
        let w = vec![
            (Table::Users, b"u1".to_vec(), Some(b"{}".to_vec())),
            (Table::Audit, b"1".to_vec(), Some(b"x".to_vec())),
        ];
        assert!(s.apply(&w, Some((Table::Pending, b"p", None))).unwrap());
        assert_eq!(
            s.get(Table::Users, b"u1").unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        // Guard fails: nothing written.
        let w2 = vec![(Table::Users, b"u2".to_vec(), Some(b"{}".to_vec()))];
        assert!(!s.apply(&w2, Some((Table::Users, b"u1", None))).unwrap());
        assert!(s.get(Table::Users, b"u2").unwrap().is_none());
        // Consume-once: delete guarded by the current value.
        s.apply(
            &[(Table::Pending, b"p".to_vec(), Some(b"v".to_vec()))],
            None,
        )
        .unwrap();
        let take = vec![(Table::Pending, b"p".to_vec(), None)];
        assert!(s
            .apply(&take, Some((Table::Pending, b"p", Some(b"v"))))
            .unwrap());
        assert!(!s
            .apply(&take, Some((Table::Pending, b"p", Some(b"v"))))
            .unwrap());
        let a = s.next_seq().unwrap();
        assert!(s.next_seq().unwrap() > a);
        assert_eq!(s.scan(Table::Audit, b"", true, 10).unwrap().len(), 1);
    }

    #[test]
    fn concurrent_flushes_all_return_and_data_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = std::sync::Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
            let hs: Vec<_> = (0..16)
                .map(|i| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for j in 0..20 {
                            s.replay_check_and_record(&format!("k{i}-{j}"), i64::MAX, 0)
                                .unwrap();
                            s.flush().unwrap();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
        let s = reopen(&dir.path().join("db"));
        for i in 0..16 {
            assert_eq!(
                s.replay_check_and_record(&format!("k{i}-19"), i64::MAX, 1)
                    .unwrap(),
                ReplayCheck::Replayed
            );
        }
    }

    #[test]
    fn secret_is_created_once() {
        let (_d, s) = store();
        let a = s.secret_get_or_create("k", &|| vec![1, 2, 3]).unwrap();
        let b = s.secret_get_or_create("k", &|| vec![9]).unwrap();
        assert_eq!(a, vec![1, 2, 3]);
        assert_eq!(a, b);
    }
}
