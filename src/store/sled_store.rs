//! The embedded store on sled. One tree per kind of record; values are JSON (records) or
//! big-endian i64 (replay expiry), so a record can be read with any sled tool when debugging.
//!
//! Expiring records (replay entries, sessions, pending logins, SP-initiated requests) have an *expiry index*: a second tree keyed by
//! big-endian due time then the record's key. The sweeper reads only the index entries that
//! are due, never the live records: a full scan every minute made RSS jump by ~17 MiB at 40,000
//! sessions (sled caches every page it reads) and cost CPU in proportion to the live set.
//! Index entries are written *before* the record they cover, so a crash can leave an index
//! entry without a record (dropped when it comes due) but never a record nobody will sweep.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::transfer::Item;
use super::{
    AccountRows, Commit, Entries, ReplayCheck, SessionRecord, Store, StoreError, Table, Version,
    Versioned, Write,
};

pub struct SledStore {
    db: sled::Db,
    replay: sled::Tree,
    sessions: sled::Tree,
    secrets: sled::Tree,
    /// due time (be i64) ++ replay key -> ()
    replay_due: sled::Tree,
    /// due time (be i64) ++ session id -> (); due = when the session could first be dead
    session_due: sled::Tree,
    /// due time (be i64) ++ key -> (), for the expiring record tables (pending logins,
    /// SP-initiated requests), at the record's `expires`.
    pending_due: sled::Tree,
    requests_due: sled::Tree,
    /// [`SessionKey`] byte ++ be u32 length ++ value ++ session id -> (): sessions by NameID,
    /// G-MIS account and local account (single logout; block, revoke, unlink).
    session_by: sled::Tree,
    /// Live session records, kept by this process (sled's `len()` is a full scan, and
    /// `/metrics` reads this on every scrape).
    session_n: std::sync::atomic::AtomicI64,
    /// [`Store::generation`]: bumped *after* each restricting write is done, so a reader that
    /// read the old number before its reads can only have tagged them as older.
    generation: std::sync::atomic::AtomicU64,
    /// Indexed by `Table::index`.
    tables: Vec<sled::Tree>,
    /// The record tables, then `sessions`: what one [`Store::commit`] transaction spans.
    commit_trees: Vec<sled::Tree>,
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

/// Creates the store directory 0700 (whatever the umask) if it is missing.
fn make_private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if path.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| StoreError::Io(format!("cannot create store at {}: {e}", path.display())))
}

/// Takes group and other access away from the store directory and everything in it (sled
/// creates its files with the process umask).
fn make_private_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    if meta.is_dir() {
        for e in std::fs::read_dir(path)? {
            make_private_tree(&e?.path())?;
        }
    }
    Ok(())
}

impl SledStore {
    /// Opens (or creates) the store with the default page cache (8 MiB).
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with_cache(path, 8)
    }

    /// `cache_mib`: sled's page cache (`[store] cache_mib`).
    pub fn open_with_cache(path: &Path, cache_mib: u64) -> Result<SledStore, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Io(e.to_string()))?;
        }
        make_private_dir(path)?;
        let db = sled::Config::new()
            .path(path)
            // Durability comes from explicit flushes on acknowledged writes, not a timer.
            .flush_every_ms(Some(1000))
            // sled's default page cache is 1 GiB, and sled fills it with what it wrote (every
            // session and replay record), so RSS grew with every login. The working set (live
            // sessions read by /auth/verify, users, consents) is small; a miss is a page read.
            // 4/8/16 MiB moved RSS at 60,000 logins by about the cache size and nothing else.
            .cache_capacity(cache_mib * 1024 * 1024)
            .open()
            .map_err(|e| StoreError::Io(format!("cannot open store at {}: {e}", path.display())))?;
        // The store holds the session MAC key: only the service may read it.
        make_private_tree(path)
            .map_err(|e| StoreError::Io(format!("store {}: {e}", path.display())))?;
        let mut tables = Vec::new();
        for t in Table::ALL {
            tables.push(db.open_tree(t.name())?);
        }
        let sessions = db.open_tree("sessions")?;
        let mut commit_trees = tables.clone();
        commit_trees.push(sessions.clone());
        let store = SledStore {
            group: GroupFlush::default(),
            commit_trees,
            tables,
            replay: db.open_tree("replay")?,
            session_n: std::sync::atomic::AtomicI64::new(sessions.len() as i64),
            generation: std::sync::atomic::AtomicU64::new(0),
            sessions,
            secrets: db.open_tree("secrets")?,
            replay_due: db.open_tree("replay_due")?,
            session_due: db.open_tree("session_due")?,
            session_by: db.open_tree("session_by")?,
            pending_due: db.open_tree("pending_due")?,
            requests_due: db.open_tree("requests_due")?,
            db,
        };
        store.build_due_index()?;
        store.build_session_index()?;
        store.build_record_due_index()?;
        Ok(store)
    }

    /// Stores written before the expiry index existed get one, once: replay entries at their
    /// expiry, sessions at 0 (the first sweep looks at each and files it at its real due time).
    fn build_due_index(&self) -> Result<(), StoreError> {
        const MARK: &str = "store.due_index.v1";
        if self.secrets.get(MARK)?.is_some() {
            return Ok(());
        }
        for item in self.replay.iter() {
            let (k, v) = item?;
            // A corrupt value is filed as due at once: the sweep drops it.
            self.replay_due
                .insert(due_key(from_be(&v).unwrap_or(0), &k), &[])?;
        }
        for item in self.sessions.iter() {
            let (k, _) = item?;
            self.session_due.insert(due_key(0, &k), &[])?;
        }
        self.secrets.insert(MARK, &b"1"[..])?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores written before the session lookup index existed get one, once.
    fn build_session_index(&self) -> Result<(), StoreError> {
        const MARK: &str = "store.session_index.v1";
        if self.secrets.get(MARK)?.is_some() {
            return Ok(());
        }
        for item in self.sessions.iter() {
            let (_, v) = item?;
            if let Ok(rec) = serde_json::from_slice::<SessionRecord>(&v) {
                for k in lookup_keys(&rec) {
                    self.session_by.insert(k, &[])?;
                }
            }
        }
        self.secrets.insert(MARK, &b"1"[..])?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores written before the record expiry index existed: every pending login and request
    /// filed at 0, once (the first sweep files each at its real expiry).
    fn build_record_due_index(&self) -> Result<(), StoreError> {
        const MARK: &str = "store.record_due_index.v1";
        if self.secrets.get(MARK)?.is_some() {
            return Ok(());
        }
        for t in Table::ALL.into_iter().filter(|t| t.expires()) {
            let index = self.due_tree(t).expect("expiring table");
            for k in self.table(t).iter().keys() {
                index.insert(due_key(0, &k?), &[])?;
            }
        }
        self.secrets.insert(MARK, &b"1"[..])?;
        self.db.flush()?;
        Ok(())
    }

    fn due_tree(&self, t: Table) -> Option<&sled::Tree> {
        match t {
            Table::Pending => Some(&self.pending_due),
            Table::Requests => Some(&self.requests_due),
            _ => None,
        }
    }

    /// Drops the lookup entries of a session record that was removed or replaced, keeping
    /// those the replacement still has.
    fn unindex(&self, old: &[u8], new: Option<&SessionRecord>) -> Result<(), StoreError> {
        let Ok(old) = serde_json::from_slice::<SessionRecord>(old) else {
            return Ok(());
        };
        let keep = new.map(lookup_keys).unwrap_or_default();
        for k in lookup_keys(&old) {
            if !keep.contains(&k) {
                self.session_by.remove(k)?;
            }
        }
        Ok(())
    }

    /// The sessions filed under one value. Entries are hints (written before the record,
    /// removed after it): each record is read and checked. A stale entry is skipped, not
    /// dropped here: it may be a `session_put` between its index write and its record write,
    /// and dropping it would hide that session from a block.
    fn sessions_by(&self, kind: SessionKey, value: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let prefix = lookup_prefix(kind, value);
        let mut out = Vec::new();
        for k in self.session_by.scan_prefix(&prefix).keys() {
            let k = k?;
            let id = &k[prefix.len()..];
            let rec = match self.sessions.get(id)? {
                Some(v) => serde_json::from_slice::<SessionRecord>(&v).ok(),
                None => None,
            };
            if let Some(r) = rec.filter(|r| kind.of(r) == value) {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn session_gone(&self) {
        self.session_n
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.bump();
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Records a replay entry (the atomic part of `replay_check_and_record`); not flushed.
    fn record_replay(&self, key: &str, expires: i64, now: i64) -> Result<ReplayCheck, StoreError> {
        // Index first (see the module doc). A replay attempt writes the same index key again
        // (same signed expiry), so refused replays add nothing.
        self.replay_due
            .insert(due_key(expires, key.as_bytes()), &[])?;
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

    /// [`Store::commit`] without the flush: the guard, the writes and the session in one sled
    /// transaction, then the indexes and counters. `Ok(false)`: a guard failed, nothing
    /// written. Also what [`Store::apply`] (then flushed) and the expiry sweep (not flushed:
    /// losing a sweep's delete on a crash only means sweeping it again) run.
    fn transact(&self, c: &Commit) -> Result<bool, StoreError> {
        let writes = c.last_writes();
        // Index entries first (see the module doc); a refused commit leaves harmless ones.
        for (t, k, v) in &writes {
            if let (Some(index), Some(v)) = (self.due_tree(*t), v) {
                index.insert(due_key(record_expiry(v), k), &[])?;
            }
        }
        let session = match &c.session {
            Some((rec, idle)) => {
                let v = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.session_due
                    .insert(due_key(rec.ends_at(*idle), rec.id.as_bytes()), &[])?;
                for k in lookup_keys(rec) {
                    self.session_by.insert(k, &[])?;
                }
                Some((rec.id.as_bytes(), v))
            }
            None => None,
        };
        // Audit lines numbered now (a refused commit leaves a gap, as on PostgreSQL).
        let audit = c
            .audit
            .iter()
            .map(|doc| {
                let seq = self.next_seq()?;
                Ok((seq.to_be_bytes(), super::txn::sequenced(doc, seq)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sessions = Table::ALL.len();
        // What the (possibly retried) transaction removed, for the indexes and counters after.
        let ended = std::cell::RefCell::new(Vec::new());
        let r = self.commit_trees[..].transaction(|views| {
            ended.borrow_mut().clear();
            for e in &c.expect {
                let cur = views[e.table.index()].get(&e.key)?;
                if cur.as_deref().map_or(Version::ABSENT, Version::of_bytes) != e.version {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for (t, k, v) in &writes {
                let view = &views[t.index()];
                match v {
                    Some(v) => view.insert(k.as_slice(), v.as_slice())?,
                    None => view.remove(k.as_slice())?,
                };
            }
            for (seq, doc) in &audit {
                views[Table::Audit.index()].insert(seq.as_slice(), doc.as_slice())?;
            }
            if let Some((id, v)) = &session {
                views[sessions].insert(*id, v.as_slice())?;
            }
            for id in &c.end_sessions {
                if let Some(old) = views[sessions].remove(id.as_bytes())? {
                    ended.borrow_mut().push(old);
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(TransactionError::Abort(())) => return Ok(false),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        if session.is_some() {
            self.session_n
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for old in ended.into_inner() {
            self.session_gone();
            self.unindex(&old, None)?;
        }
        if c.restricts() {
            self.bump();
        }
        Ok(true)
    }

    fn table(&self, t: Table) -> &sled::Tree {
        &self.tables[t.index()]
    }
}

fn be(i: i64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Index key: due time first (so a range read up to `now` finds exactly what is due), then
/// the record's own key. A time before 1970 is filed at 0: with no negative times, big-endian
/// byte order is time order.
fn due_key(due: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&be(due.max(0)));
    k.extend_from_slice(key);
    k
}

/// Index entries due at or before `now`, oldest first.
fn due_entries(
    index: &sled::Tree,
    now: i64,
) -> impl Iterator<Item = Result<(sled::IVec, Vec<u8>), StoreError>> {
    let end = be(now.saturating_add(1).max(0));
    index.range(..&end[..]).keys().map(|k| {
        let k = k?;
        let id = k.get(8..).map(<[u8]>::to_vec).unwrap_or_default();
        Ok((k, id))
    })
}

/// What a session can be looked up by.
#[derive(Clone, Copy)]
enum SessionKey {
    NameId = 1,
    Account = 2,
    LocalUser = 3,
}

impl SessionKey {
    const ALL: [SessionKey; 3] = [
        SessionKey::NameId,
        SessionKey::Account,
        SessionKey::LocalUser,
    ];

    fn of(self, r: &SessionRecord) -> &str {
        match self {
            SessionKey::NameId => &r.name_id,
            SessionKey::Account => &r.profile.account_id,
            SessionKey::LocalUser => &r.local_user_id,
        }
    }
}

/// Length-prefixed, so a value that is a prefix of another (or holds any byte) cannot match it.
fn lookup_prefix(kind: SessionKey, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + value.len());
    k.push(kind as u8);
    k.extend_from_slice(&(value.len() as u32).to_be_bytes());
    k.extend_from_slice(value.as_bytes());
    k
}

fn lookup_keys(r: &SessionRecord) -> Vec<Vec<u8>> {
    SessionKey::ALL
        .iter()
        .map(|&kind| {
            let mut k = lookup_prefix(kind, kind.of(r));
            k.extend_from_slice(r.id.as_bytes());
            k
        })
        .collect()
}

/// A pending login's or request's `expires`; an unreadable record is due at once.
fn record_expiry(v: &[u8]) -> i64 {
    #[derive(serde::Deserialize)]
    struct Expires {
        expires: i64,
    }
    serde_json::from_slice::<Expires>(v).map_or(0, |e| e.expires)
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
        let r = self.record_replay(key, expires, now)?;
        if r == ReplayCheck::Fresh {
            // Durable before the caller acts on it (grouped with concurrent callers).
            self.flush()?;
        }
        Ok(r)
    }

    fn replay_and_account(
        &self,
        replay_key: &str,
        expires: i64,
        now: i64,
        gmis_id: &str,
        contact: Option<&[u8]>,
    ) -> Result<Option<AccountRows>, StoreError> {
        // Not flushed here: the login's commit (or `Fresh::admit` for a refusal) does it.
        match self.record_replay(replay_key, expires, now)? {
            ReplayCheck::Fresh => self.account(gmis_id, contact).map(Some),
            ReplayCheck::Replayed => Ok(None),
        }
    }

    fn replay_sweep(&self, now: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in due_entries(&self.replay_due, now) {
            let (ik, key) = item?;
            if let Some(v) = self.replay.get(&key)? {
                // Only remove what we saw and what is expired: a key re-recorded later with a
                // later expiry has its own index entry and stays. A corrupt value goes too
                // (it would otherwise stop every sweep here).
                if from_be(&v).map_or(true, |exp| exp <= now)
                    && self
                        .replay
                        .compare_and_swap(&key, Some(&v), None::<&[u8]>)?
                        .is_ok()
                {
                    n += 1;
                }
            }
            self.replay_due.remove(ik)?;
        }
        Ok(n)
    }

    fn session_put(&self, rec: &SessionRecord, idle_seconds: i64) -> Result<(), StoreError> {
        let v = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.session_due
            .insert(due_key(rec.ends_at(idle_seconds), rec.id.as_bytes()), &[])?;
        for k in lookup_keys(rec) {
            self.session_by.insert(k, &[])?;
        }
        match self.sessions.insert(rec.id.as_bytes(), v)? {
            None => {
                self.session_n
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Some(old) => {
                self.bump();
                self.unindex(&old, Some(rec))?;
            }
        }
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
        // Its index entry stays until it comes due and is then dropped.
        let old = self.sessions.remove(id.as_bytes())?;
        if let Some(old) = &old {
            self.session_gone();
            self.unindex(old, None)?;
            // An acknowledged logout must not come back after a crash.
            self.flush()?;
        }
        Ok(old.is_some())
    }

    fn session_sweep(&self, now: i64, idle_seconds: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in due_entries(&self.session_due, now) {
            let (ik, id) = item?;
            if let Some(v) = self.sessions.get(&id)? {
                let due = match serde_json::from_slice::<SessionRecord>(&v) {
                    Ok(rec) => rec.ends_at(idle_seconds),
                    Err(_) => 0,
                };
                if due <= now {
                    if self
                        .sessions
                        .compare_and_swap(&id, Some(&v), None::<&[u8]>)?
                        .is_ok()
                    {
                        self.session_gone();
                        self.unindex(&v, None)?;
                        n += 1;
                    } else {
                        // Changed under us (touched): look again at the next sweep, never
                        // lose it from the index. (Filed after `now`, outside this range.)
                        self.session_due
                            .insert(due_key(now.saturating_add(1), &id), &[])?;
                    }
                } else {
                    // Used since it was filed: file it at its new due time (before dropping
                    // the old entry, so a crash in between leaves two entries, not none).
                    self.session_due.insert(due_key(due, &id), &[])?;
                }
            }
            self.session_due.remove(ik)?;
        }
        Ok(n)
    }

    fn session_count(&self) -> usize {
        self.session_n
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0) as usize
    }

    fn expired_sweep(&self, t: Table, now: i64) -> Result<usize, StoreError> {
        let Some(index) = self.due_tree(t) else {
            return Ok(0);
        };
        let mut n = 0;
        for item in due_entries(index, now) {
            let (ik, key) = item?;
            if let Some(v) = self.table(t).get(&key)? {
                let due = record_expiry(&v);
                if due > now {
                    // Rewritten with a later expiry, or filed at 0 by the upgrade: refile.
                    index.insert(due_key(due, &key), &[])?;
                } else {
                    let read = Versioned {
                        table: t,
                        key: key.clone(),
                        version: Version::of_bytes(&v),
                        value: Some(v.to_vec()),
                    };
                    if self.transact(&Commit::guarded(&read, vec![(t, key.clone(), None)]))? {
                        n += 1;
                    }
                }
                // A guard miss means it was rewritten meanwhile, and that write filed it.
            }
            index.remove(ik)?;
        }
        Ok(n)
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

    fn sessions_by_name_id(&self, name_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_by(SessionKey::NameId, name_id)
    }

    fn sessions_by_account(&self, account_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_by(SessionKey::Account, account_id)
    }

    fn sessions_by_local_user(&self, local_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_by(SessionKey::LocalUser, local_id)
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

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
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

    fn get_versioned(&self, t: Table, key: &[u8]) -> Result<Versioned, StoreError> {
        let value = self.get(t, key)?;
        Ok(Versioned {
            table: t,
            key: key.to_vec(),
            version: value.as_deref().map_or(Version::ABSENT, Version::of_bytes),
            value,
        })
    }

    fn account(&self, gmis_id: &str, contact: Option<&[u8]>) -> Result<AccountRows, StoreError> {
        let read = |t: Table, k: &[u8]| -> Result<Versioned, StoreError> {
            let value = self.get(t, k)?;
            Ok(Versioned {
                table: t,
                key: k.to_vec(),
                version: value.as_deref().map_or(Version::ABSENT, Version::of_bytes),
                value,
            })
        };
        let key = gmis_id.as_bytes();
        let application = read(Table::Applications, key)?;
        let link = read(Table::UserByGmis, key)?;
        let contact = contact.map(|c| read(Table::UserByContact, c)).transpose()?;
        let user_of = |r: Option<&Versioned>| {
            r.and_then(|r| r.value.clone())
                .map(|id| read(Table::Users, &id))
                .transpose()
        };
        let link_target = application
            .value
            .as_deref()
            .and_then(super::txn::link_to_of)
            .map(|id| read(Table::Users, id.as_bytes()))
            .transpose()?;
        Ok(AccountRows {
            gmis_id: gmis_id.to_string(),
            consent: read(Table::Consents, key)?,
            linked_user: user_of(Some(&link))?,
            same_id: read(Table::Users, key)?,
            contact_user: user_of(contact.as_ref())?,
            application,
            link,
            link_target,
            contact,
        })
    }

    fn commit(&self, c: &Commit) -> Result<bool, StoreError> {
        if !self.transact(c)? {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        let c = Commit {
            writes: writes.to_vec(),
            ..Commit::default()
        };
        self.transact(&c)?;
        self.flush()
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

    fn dump_state(
        &self,
        out: &mut dyn FnMut(Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use base64::Engine as _;
        for item in self.sessions.iter() {
            let (_, v) = item?;
            let record = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
            out(Item::Session {
                record: Box::new(record),
            })?;
        }
        for item in self.replay.iter() {
            let (k, v) = item?;
            out(Item::Replay {
                key: String::from_utf8_lossy(&k).into_owned(),
                expires: from_be(&v)?,
            })?;
        }
        for item in self.secrets.iter() {
            let (k, v) = item?;
            // `store.*` marks are this backend's own bookkeeping.
            if k.starts_with(b"store.") {
                continue;
            }
            out(Item::Secret {
                name: String::from_utf8_lossy(&k).into_owned(),
                value_b64: base64::engine::general_purpose::STANDARD.encode(&v),
            })?;
        }
        Ok(())
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
        let rec = session("s1", 0, 1000);
        s.session_put(&rec, 1800).unwrap();
        assert_eq!(s.session_get("s1").unwrap().unwrap(), rec);
        s.session_touch("s1", 500).unwrap();
        assert_eq!(s.session_get("s1").unwrap().unwrap().last_seen, 500);
        assert_eq!(s.session_sweep(600, 1800).unwrap(), 0);
        assert_eq!(s.session_sweep(1000, 1800).unwrap(), 1);
        assert_eq!(s.session_count(), 0);
    }

    fn session(id: &str, last_seen: i64, expires: i64) -> SessionRecord {
        SessionRecord {
            local_user_id: "GM1".into(),
            id: id.into(),
            profile: Profile {
                account_id: "GM1".into(),
                ..Default::default()
            },
            name_id: "GM1".into(),
            name_id_format: None,
            session_index: None,
            created: last_seen,
            last_seen,
            expires,
            auth_method: String::new(),
        }
    }

    #[test]
    fn sweep_refiles_a_session_used_since_it_was_filed() {
        let (_d, s) = store();
        s.session_put(&session("s1", 0, 1000), 100).unwrap();
        s.session_put(&session("s2", 0, 1000), 100).unwrap();
        s.session_touch("s1", 90).unwrap();
        // Both were filed at 100; s1 was used at 90, so only s2 is idle-dead at 100.
        assert_eq!(s.session_sweep(100, 100).unwrap(), 1);
        assert!(s.session_get("s1").unwrap().is_some());
        assert!(s.session_get("s2").unwrap().is_none());
        assert_eq!(s.session_sweep(189, 100).unwrap(), 0);
        assert_eq!(s.session_sweep(190, 100).unwrap(), 1);
        assert_eq!(s.session_count(), 0);
        // Nothing left in the index either.
        assert_eq!(s.session_due.len(), 0);
    }

    #[test]
    fn logout_then_sweep_drops_the_index_entry_and_counts_right() {
        let (_d, s) = store();
        s.session_put(&session("a", 0, 50), 1800).unwrap();
        s.session_put(&session("b", 0, 50), 1800).unwrap();
        // A second put of the same id (an update) is not a second session.
        s.session_put(&session("b", 0, 50), 1800).unwrap();
        assert_eq!(s.session_count(), 2);
        assert!(s.session_delete("a").unwrap());
        assert!(!s.session_delete("a").unwrap());
        assert_eq!(s.session_count(), 1);
        assert_eq!(s.session_sweep(50, 1800).unwrap(), 1);
        assert_eq!(s.session_count(), 0);
        assert_eq!(s.session_due.len(), 0);
    }

    #[test]
    fn a_store_written_before_the_index_gets_one_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = SledStore::open(&path).unwrap();
            s.replay_check_and_record("r", 100, 0).unwrap();
            s.session_put(&session("s", 0, 100), 1800).unwrap();
            // Make it look like an older store: no index, no mark.
            s.replay_due.clear().unwrap();
            s.session_due.clear().unwrap();
            s.secrets.remove("store.due_index.v1").unwrap();
            s.flush().unwrap();
        }
        let s = reopen(&path);
        assert_eq!(s.session_count(), 1);
        assert_eq!(s.replay_sweep(99).unwrap(), 0);
        assert_eq!(s.replay_sweep(100).unwrap(), 1);
        assert_eq!(s.session_sweep(99, 1800).unwrap(), 0);
        assert_eq!(s.session_sweep(100, 1800).unwrap(), 1);
    }

    #[test]
    fn session_lookups_come_from_the_index_which_is_built_on_open_and_emptied_on_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = SledStore::open(&path).unwrap();
            s.session_put(&session("s", 0, 100), 1800).unwrap();
            // An older store: no lookup index, no mark.
            s.session_by.clear().unwrap();
            s.secrets.remove("store.session_index.v1").unwrap();
            s.flush().unwrap();
        }
        let s = reopen(&path);
        let rec = s.session_get("s").unwrap().unwrap();
        assert_eq!(
            s.sessions_by_account(&rec.profile.account_id)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(s.sessions_by_name_id(&rec.name_id).unwrap().len(), 1);
        assert_eq!(
            s.sessions_by_local_user(&rec.local_user_id).unwrap().len(),
            1
        );
        // The lookups read the index, not the records: without it they find nothing.
        let saved: Vec<_> = s.session_by.iter().keys().map(|k| k.unwrap()).collect();
        s.session_by.clear().unwrap();
        assert!(s
            .sessions_by_account(&rec.profile.account_id)
            .unwrap()
            .is_empty());
        for k in saved {
            s.session_by.insert(k, &[]).unwrap();
        }
        assert!(s.session_delete("s").unwrap());
        assert_eq!(
            s.session_by.len(),
            0,
            "a deleted session leaves no lookup entry"
        );
    }

    #[test]
    fn pending_records_from_before_the_expiry_index_are_swept_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rec = |exp: i64| Some(format!(r#"{{"expires":{exp}}}"#).into_bytes());
        {
            let s = SledStore::open(&path).unwrap();
            let w = vec![
                (Table::Pending, b"old".to_vec(), rec(100)),
                (Table::Pending, b"live".to_vec(), rec(900)),
            ];
            s.apply(&w).unwrap();
            // An older store: no record expiry index, no mark.
            s.pending_due.clear().unwrap();
            s.secrets.remove("store.record_due_index.v1").unwrap();
            s.flush().unwrap();
        }
        let s = reopen(&path);
        assert_eq!(s.expired_sweep(Table::Pending, 100).unwrap(), 1);
        assert!(s.get(Table::Pending, b"live").unwrap().is_some());
        // "live" was refiled at 900 by that sweep.
        assert_eq!(s.expired_sweep(Table::Pending, 899).unwrap(), 0);
        assert_eq!(s.expired_sweep(Table::Pending, 900).unwrap(), 1);
        assert_eq!(s.pending_due.len(), 0);
    }

    #[test]
    fn generation_moves_on_restricting_writes_only() {
        let (_d, s) = store();
        let g = s.generation();
        s.session_put(&session("s1", 0, 1000), 1800).unwrap();
        s.session_touch("s1", 10).unwrap();
        s.replay_check_and_record("r", 100, 0).unwrap();
        let pending = vec![
            (Table::Pending, b"p".to_vec(), Some(b"{}".to_vec())),
            (Table::Requests, b"q".to_vec(), Some(b"{}".to_vec())),
            (Table::Audit, b"1".to_vec(), Some(b"{}".to_vec())),
        ];
        s.apply(&pending).unwrap();
        assert_eq!(
            s.generation(),
            g,
            "new session, touch, replay, pending/request/audit writes leave it"
        );
        let w = vec![(Table::Consents, b"GM1".to_vec(), Some(b"{}".to_vec()))];
        s.apply(&w).unwrap();
        let g2 = s.generation();
        assert_ne!(g2, g, "a record-table write moves it");
        // A refused commit wrote nothing.
        let stale = Versioned {
            version: Version::of_bytes(b"y"),
            ..Versioned::absent(Table::Users, b"x")
        };
        assert!(!s.commit(&Commit::guarded(&stale, w.clone())).unwrap());
        assert_eq!(s.generation(), g2);
        assert!(s.session_delete("s1").unwrap());
        let g3 = s.generation();
        assert_ne!(g3, g2, "a deleted session moves it");
        s.session_put(&session("s2", 0, 5), 1800).unwrap();
        s.session_put(&session("s2", 0, 5), 1800).unwrap();
        let g4 = s.generation();
        assert_ne!(g4, g3, "an overwritten session moves it");
        assert_eq!(s.session_sweep(5, 1800).unwrap(), 1);
        assert_ne!(s.generation(), g4, "a swept session moves it");
    }

    #[test]
    fn a_corrupt_replay_value_is_swept_not_a_dead_end() {
        let (_d, s) = store();
        s.replay_check_and_record("bad", 10, 0).unwrap();
        s.replay_check_and_record("good", 20, 0).unwrap();
        s.replay.insert("bad", &b"xyz"[..]).unwrap();
        assert_eq!(s.replay_sweep(20).unwrap(), 2);
        assert_eq!(s.replay.len(), 0);
        assert_eq!(s.replay_due.len(), 0);
    }

    #[test]
    fn apply_is_all_or_nothing_and_commit_guards_by_version() {
        let (_d, s) = store();
        let w = vec![
            (Table::Users, b"u1".to_vec(), Some(b"{}".to_vec())),
            (Table::Audit, b"1".to_vec(), Some(b"x".to_vec())),
        ];
        let no_pending = s.get_versioned(Table::Pending, b"p").unwrap();
        assert!(s.commit(&Commit::guarded(&no_pending, w)).unwrap());
        assert_eq!(
            s.get(Table::Users, b"u1").unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        // Guard fails (u1 is no longer absent): nothing written.
        let w2 = vec![(Table::Users, b"u2".to_vec(), Some(b"{}".to_vec()))];
        let u1_absent = Versioned::absent(Table::Users, b"u1");
        assert!(!s.commit(&Commit::guarded(&u1_absent, w2)).unwrap());
        assert!(s.get(Table::Users, b"u2").unwrap().is_none());
        // Consume-once: delete guarded by the version read.
        s.apply(&[(Table::Pending, b"p".to_vec(), Some(b"v".to_vec()))])
            .unwrap();
        let read = s.get_versioned(Table::Pending, b"p").unwrap();
        let take = vec![(Table::Pending, b"p".to_vec(), None)];
        assert!(s.commit(&Commit::guarded(&read, take.clone())).unwrap());
        assert!(!s.commit(&Commit::guarded(&read, take)).unwrap());
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

    /// Issue #12 item 13: the store is the service's only, whatever the umask.
    #[test]
    fn store_directory_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = SledStore::open(&path).unwrap();
        s.apply(&[(Table::Users, b"u".to_vec(), Some(b"{}".to_vec()))])
            .unwrap();
        s.flush().unwrap();
        let mut seen = 0;
        let mut stack = vec![path.clone()];
        while let Some(p) = stack.pop() {
            let m = std::fs::metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
            if m.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
            seen += 1;
        }
        assert!(seen >= 3, "expected sled's files, saw {seen}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
