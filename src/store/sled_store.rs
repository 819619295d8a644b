//! The embedded store on sled. One tree per kind of record; values are JSON (records) or
//! big-endian i64 (replay expiry), so a record can be read with any sled tool when debugging.

use std::path::Path;

use super::{ReplayCheck, SessionRecord, Store, StoreError};

pub struct SledStore {
    db: sled::Db,
    replay: sled::Tree,
    sessions: sled::Tree,
    secrets: sled::Tree,
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
            .open()
            .map_err(|e| StoreError::Io(format!("cannot open store at {}: {e}", path.display())))?;
        Ok(SledStore {
            replay: db.open_tree("replay")?,
            sessions: db.open_tree("sessions")?,
            secrets: db.open_tree("secrets")?,
            db,
        })
    }

    /// The sled handle, for the other record kinds that live in this store.
    pub fn db(&self) -> &sled::Db {
        &self.db
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
        // sled serialises flushes internally: a caller arriving while another flush runs waits
        // for it and then finds little or nothing left to write, so concurrent logins share I/O.
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(
            s.replay_check_and_record("k", i64::MAX, 1).unwrap(),
            ReplayCheck::Replayed
        );
    }

    #[test]
    fn sessions_round_trip_and_sweep() {
        let (_d, s) = store();
        let rec = SessionRecord {
            id: "s1".into(),
            profile: Profile {
                account_id: "GM1".into(),
                ..Default::default()
            },
            name_id: "GM1".into(),
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
    fn secret_is_created_once() {
        let (_d, s) = store();
        let a = s.secret_get_or_create("k", &|| vec![1, 2, 3]).unwrap();
        let b = s.secret_get_or_create("k", &|| vec![9]).unwrap();
        assert_eq!(a, vec![1, 2, 3]);
        assert_eq!(a, b);
    }
}
