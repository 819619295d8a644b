//! Whether the store can be read and written right now, learned from the calls themselves.
//!
//! [`Monitored`] wraps any backend: a write that fails with an I/O error (sled on a full disk,
//! PostgreSQL unreachable) turns `writable` off, a read that fails turns `readable` off, and
//! any write that succeeds turns both on again. The web layer answers logins with 503
//! `store_unavailable` while `writable` is off and `/auth/verify` while `readable` is off
//! (sled on a full disk still reads: existing sessions keep working); `/readyz` needs both.
//! Because those answers stop traffic reaching the store, [`spawn_probe`] writes a small
//! replay entry itself (every second while unhealthy, every 5 s otherwise), so the flags come
//! back without a restart, and an outage is noticed with no traffic at all. (PostgreSQL
//! recovers so. sled 0.34 keeps an I/O error for good once it has one: after a full disk it
//! stays unwritable, `/readyz` red, until the process restarts; tests/store_conformance.rs.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::transfer::Item;
use super::{
    AccountRows, Commit, Entries, ReplayCheck, SessionRecord, Store, StoreError, Table, Write,
};

pub struct Monitored {
    inner: Box<dyn Store>,
    readable: AtomicBool,
    writable: AtomicBool,
}

impl Monitored {
    pub fn new(inner: Box<dyn Store>) -> Monitored {
        Monitored {
            inner,
            readable: AtomicBool::new(true),
            writable: AtomicBool::new(true),
        }
    }

    fn wrote<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Ok(_) => {
                self.readable.store(true, Ordering::SeqCst);
                if !self.writable.swap(true, Ordering::SeqCst) {
                    tracing::info!(
                        reason = crate::reason::Reason::StoreUnavailable.code(),
                        "store: writes succeed again; logins resume"
                    );
                }
            }
            Err(StoreError::Io(e)) | Err(StoreError::Schema(e)) => {
                if self.writable.swap(false, Ordering::SeqCst) {
                    tracing::error!(reason = crate::reason::Reason::StoreUnavailable.code(), error = %e, "store: a write failed; logins answer 503 until writes succeed");
                }
            }
            Err(StoreError::Corrupt(_)) => {}
        }
        r
    }

    fn read<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Io(e)) = &r {
            if self.readable.swap(false, Ordering::SeqCst) {
                tracing::error!(reason = crate::reason::Reason::StoreUnavailable.code(), error = %e, "store: a read failed; /auth/verify answers 503 until the store answers");
            }
        }
        r
    }
}

/// Keeps the health flags current while nothing else writes (see the module doc).
pub fn spawn_probe(store: Arc<dyn Store>) {
    let instance = format!("{:016x}", rand::random::<u64>());
    let spawned = std::thread::Builder::new()
        .name("samlgate-store-probe".into())
        .spawn(move || loop {
            let now = chrono::Utc::now().timestamp();
            let key = format!("probe\0{instance}\0{now}");
            let ok =
                store.replay_check_and_record(&key, now + 60, now).is_ok() && store.flush().is_ok();
            let healthy = ok && store.writable() && store.readable();
            std::thread::sleep(Duration::from_secs(if healthy { 5 } else { 1 }));
            // Ends with the process (the store lives as long as the gateway).
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "store: cannot start the health probe");
    }
}

impl Store for Monitored {
    fn readable(&self) -> bool {
        self.readable.load(Ordering::SeqCst)
    }
    fn writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }
    fn replay_check_and_record(
        &self,
        key: &str,
        expires: i64,
        now: i64,
    ) -> Result<ReplayCheck, StoreError> {
        self.wrote(self.inner.replay_check_and_record(key, expires, now))
    }
    fn replay_sweep(&self, now: i64) -> Result<usize, StoreError> {
        self.wrote(self.inner.replay_sweep(now))
    }
    fn session_put(&self, rec: &SessionRecord, idle_seconds: i64) -> Result<(), StoreError> {
        self.wrote(self.inner.session_put(rec, idle_seconds))
    }
    fn session_get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read(self.inner.session_get(id))
    }
    fn session_touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.wrote(self.inner.session_touch(id, now))
    }
    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.wrote(self.inner.session_delete(id))
    }
    fn session_sweep(&self, now: i64, idle_seconds: i64) -> Result<usize, StoreError> {
        self.wrote(self.inner.session_sweep(now, idle_seconds))
    }
    fn session_count(&self) -> usize {
        self.inner.session_count()
    }
    fn expired_sweep(&self, t: Table, now: i64) -> Result<usize, StoreError> {
        self.wrote(self.inner.expired_sweep(t, now))
    }
    fn sessions_matching(
        &self,
        pred: &dyn Fn(&SessionRecord) -> bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(self.inner.sessions_matching(pred))
    }
    fn sessions_by_name_id(&self, name_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(self.inner.sessions_by_name_id(name_id))
    }
    fn sessions_by_account(&self, account_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(self.inner.sessions_by_account(account_id))
    }
    fn sessions_by_local_user(&self, local_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(self.inner.sessions_by_local_user(local_id))
    }
    fn secret_get_or_create(
        &self,
        name: &str,
        make: &dyn Fn() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        self.wrote(self.inner.secret_get_or_create(name, make))
    }
    fn generation(&self) -> u64 {
        self.inner.generation()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.wrote(self.inner.flush())
    }
    fn account(&self, gmis_id: &str, contact: Option<&[u8]>) -> Result<AccountRows, StoreError> {
        self.read(self.inner.account(gmis_id, contact))
    }
    fn replay_and_account(
        &self,
        replay_key: &str,
        expires: i64,
        now: i64,
        gmis_id: &str,
        contact: Option<&[u8]>,
    ) -> Result<Option<AccountRows>, StoreError> {
        self.wrote(
            self.inner
                .replay_and_account(replay_key, expires, now, gmis_id, contact),
        )
    }
    fn commit(&self, c: &Commit) -> Result<bool, StoreError> {
        self.wrote(self.inner.commit(c))
    }
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(self.inner.get(t, key))
    }
    fn get_versioned(&self, t: Table, key: &[u8]) -> Result<super::Versioned, StoreError> {
        self.read(self.inner.get_versioned(t, key))
    }
    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.wrote(self.inner.apply(writes))
    }
    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.read(self.inner.scan(t, prefix, rev, limit))
    }
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.wrote(self.inner.next_seq())
    }
    fn seq_floor(&self, min: u64) -> Result<(), StoreError> {
        self.wrote(self.inner.seq_floor(min))
    }
    fn dump_state(
        &self,
        out: &mut dyn FnMut(Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read(self.inner.dump_state(out))
    }
}
