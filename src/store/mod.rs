//! Durable state behind one small interface: the replay cache, sessions and the gateway's own
//! secrets. `sled` is the embedded default; a networked backend (several gateway instances)
//! implements the same trait, so nothing outside `store/` knows which one runs.
//!
//! Durability rule: every write the gateway acknowledges has reached disk when the store call
//! returns. [`Store::commit`], [`Store::apply`], [`Store::replay_check_and_record`] (a `Fresh`
//! answer), [`Store::session_delete`] and [`Store::secret_get_or_create`] are durable (sled
//! flushes inside them, grouped with concurrent callers so they share one fsync; PostgreSQL is
//! durable on COMMIT), so no caller on the request path calls [`Store::flush`]. The exceptions
//! are named on their methods: touches, sweeps and bulk session writes (import, tests).
//!
//! Guards: a write that depends on what was read reads with [`Store::get_versioned`] (or
//! [`Store::account`]) and commits with [`Commit::expect`] on that version; nothing compares
//! stored bytes outside the backend.

pub mod health;
pub mod pg;
mod sled_store;
pub mod transfer;
mod txn;

pub use pg::{PgOptions, PgStore};
pub use sled_store::SledStore;
pub use txn::{AccountRows, Commit, Expectation, Version, Versioned, AUDIT_UNSEQUENCED};

use serde::{Deserialize, Serialize};

use crate::model::Profile;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(String),
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    /// The database schema is not the one this build runs on (the message names the fix).
    #[error("store schema: {0}")]
    Schema(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// What the replay cache says about a message ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// First use: recorded until the given expiry.
    Fresh,
    /// Seen before and not yet expired.
    Replayed,
}

/// A logged-in browser. Named by an unguessable id; the cookie carries only that id, signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub profile: Profile,
    /// The local 医療情報ネット account this login is linked to (the G-MIS id for users first
    /// registered by SSO; an existing account's id when an application linked it).
    #[serde(default)]
    pub local_user_id: String,
    /// The IdP's NameID and SessionIndex, for single logout.
    pub name_id: String,
    /// The NameID's Format, echoed in LogoutRequests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    /// Unix seconds.
    pub created: i64,
    pub last_seen: i64,
    /// Hard end: min(created + absolute lifetime, the IdP's SessionNotOnOrAfter).
    pub expires: i64,
    /// How the user logged in: empty for SAML (G-MIS), else an ID/password login's
    /// `X-Samlgate-Auth-Method` value (`password`, `password+totp`, `password+recovery`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
}

impl SessionRecord {
    /// An ID/password login: the category policy (a G-MIS matter) does not apply to it.
    pub fn is_local_login(&self) -> bool {
        !self.auth_method.is_empty()
    }

    /// The `X-Samlgate-Auth-Method` value.
    pub fn auth_method_header(&self) -> &str {
        if self.auth_method.is_empty() {
            "saml"
        } else {
            &self.auth_method
        }
    }

    /// When this session ends unless it is used again: its hard end, or its idle limit if
    /// sooner. The request path and the sweeper both judge liveness by this.
    pub fn ends_at(&self, idle_seconds: i64) -> i64 {
        self.expires
            .min(self.last_seen.saturating_add(idle_seconds))
    }
}

/// Record tables for the identity side (users, consents, applications, ...). Values are JSON
/// written by the module that owns the table; the store only keeps bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// local user id -> User
    Users,
    /// G-MIS account id -> local user id
    UserByGmis,
    /// G-MIS account id -> consent state
    Consents,
    /// G-MIS account id -> SSO application
    Applications,
    /// pending-login id -> a verified login waiting for the consent page
    Pending,
    /// big-endian sequence -> audit entry
    Audit,
    /// AuthnRequest ID -> an SP-initiated login in progress (return path, expiry)
    Requests,
    /// facility code NUL lowercased mail -> local user id (existing accounts, for linking)
    UserByContact,
    /// local user id -> ID/password account (accounts::account::Account)
    Accounts,
    /// ticket key (token hash for a mail link, user id for a 事務局 code) -> ResetTicket
    ResetTickets,
    /// random id -> an ID/password login between its steps (password change, TOTP)
    LoginSteps,
    /// operator setting name -> JSON (the login-page notice, IdP certificates trusted with
    /// `samlgate idp trust`): shared by every instance on one store.
    Settings,
}

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Users,
        Table::UserByGmis,
        Table::Consents,
        Table::Applications,
        Table::Pending,
        Table::Audit,
        Table::Requests,
        Table::UserByContact,
        Table::Accounts,
        Table::ResetTickets,
        Table::LoginSteps,
        Table::Settings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::UserByGmis => "user_by_gmis",
            Table::Consents => "consents",
            Table::Applications => "applications",
            Table::Pending => "pending",
            Table::Audit => "audit",
            Table::Requests => "requests",
            Table::UserByContact => "user_by_contact",
            Table::Accounts => "accounts",
            Table::ResetTickets => "reset_tickets",
            Table::LoginSteps => "login_steps",
            Table::Settings => "settings",
        }
    }

    /// True for tables whose writes can end or restrict an existing session (they move
    /// [`Store::generation`]); pending logins, SP-initiated requests and the audit log cannot.
    pub fn restricts_sessions(self) -> bool {
        match self {
            Table::Users
            | Table::UserByGmis
            | Table::Consents
            | Table::Applications
            | Table::UserByContact
            // Disabling an account or resetting its password ends its sessions.
            | Table::Accounts => true,
            Table::Pending | Table::Audit | Table::Requests | Table::ResetTickets
            | Table::LoginSteps
            | Table::Settings => false,
        }
    }

    /// True for tables whose records end at their `expires` field ([`Store::expired_sweep`]).
    pub fn expires(self) -> bool {
        matches!(self, Table::Pending | Table::Requests)
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    fn index(self) -> usize {
        Table::ALL.iter().position(|t| *t == self).expect("listed")
    }
}

/// One write of an atomic batch: `None` deletes.
pub type Write = (Table, Vec<u8>, Option<Vec<u8>>);
/// Key-value pairs from a scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

pub trait Store: Send + Sync + 'static {
    /// Records `key` in the replay cache until `expires` (unix seconds) unless it is already
    /// there and unexpired. Atomic: of two concurrent calls with one key, exactly one is `Fresh`.
    /// Durable when it answers `Fresh` (a refusal page or login follows; after a crash the
    /// message must still count as used).
    fn replay_check_and_record(
        &self,
        key: &str,
        expires: i64,
        now: i64,
    ) -> Result<ReplayCheck, StoreError>;
    /// Deletes expired replay entries; returns how many. Reads only what is due.
    fn replay_sweep(&self, now: i64) -> Result<usize, StoreError>;

    /// Writes the session. `idle_seconds` (the idle limit in force) only decides when the
    /// sweeper first looks at it; liveness is always judged from the record. Not durable on
    /// sled until [`Store::flush`]: logins create sessions with [`Store::commit`]; this is for
    /// `samlgate store import` (which flushes once at the end) and tests.
    fn session_put(&self, rec: &SessionRecord, idle_seconds: i64) -> Result<(), StoreError>;
    fn session_get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    fn session_touch(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// Durable when it returns `true` (a logout is acknowledged; it must not come back).
    fn session_delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes sessions whose hard end or idle limit has passed; returns how many. Reads only
    /// the records that are due, not every live session.
    fn session_sweep(&self, now: i64, idle_seconds: i64) -> Result<usize, StoreError>;
    fn session_count(&self) -> usize;
    /// Deletes the records of an expiring table ([`Table::expires`]: pending logins,
    /// SP-initiated requests) whose `expires` (unix seconds, a top-level JSON field; an
    /// unreadable record counts as due) is at or before `now`; returns how many. Reads only what
    /// is due. Other tables: `Ok(0)`.
    fn expired_sweep(&self, t: Table, now: i64) -> Result<usize, StoreError>;
    /// Every session the predicate selects; linear in the number of sessions. For tests and
    /// tools only: request and admin paths use the indexed lookups below.
    fn sessions_matching(
        &self,
        pred: &dyn Fn(&SessionRecord) -> bool,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// The sessions of one IdP NameID (single logout). Indexed on both backends.
    fn sessions_by_name_id(&self, name_id: &str) -> Result<Vec<SessionRecord>, StoreError>;
    /// The sessions of one G-MIS account, `profile.account_id` (block, revoke, unlink: what
    /// `admin::end_sessions` selects). Indexed on both backends.
    fn sessions_by_account(&self, account_id: &str) -> Result<Vec<SessionRecord>, StoreError>;
    /// The sessions on one local account, `local_user_id` (unlink, whatever G-MIS account the
    /// login came from). Indexed on both backends.
    fn sessions_by_local_user(&self, local_id: &str) -> Result<Vec<SessionRecord>, StoreError>;

    /// A secret the gateway generated for itself (e.g. the cookie MAC key): returned if present,
    /// otherwise created from `make`, stored durably, and returned. First writer wins.
    fn secret_get_or_create(
        &self,
        name: &str,
        make: &dyn Fn() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError>;

    /// A number that changes after every write that could end or restrict an existing
    /// session: a session deleted or overwritten, an [`Store::apply`] batch that writes a table
    /// where [`Table::restricts_sessions`] (consents, applications, users), a [`Store::commit`]
    /// that does so other than by creating user rows, links or contact entries its guard proved
    /// absent (a first login's registration). New sessions, touches, replay entries, pending
    /// logins, requests and audit lines leave it.
    /// A reader may keep what it read about sessions while this is unchanged; a backend shared
    /// by several gateways must change it for writes made by any of them.
    fn generation(&self) -> u64;

    /// False after a read failed for want of the store (I/O, unreachable), until a write
    /// succeeds again. Only [`health::Monitored`] tracks this; a bare backend says true.
    fn readable(&self) -> bool {
        true
    }
    /// False after a write failed for want of the store, until one succeeds again.
    fn writable(&self) -> bool {
        true
    }

    /// Makes every write so far durable. Concurrent callers share one disk flush. Not for the
    /// request path (its writes are durable on return): for what is not durable by itself
    /// (session touches at shutdown, an import's session and replay rows) and for the health
    /// probe, which asks the disk whether it still takes writes.
    fn flush(&self) -> Result<(), StoreError>;

    /// The rows a login decides on for one G-MIS account ([`AccountRows`]), each with its
    /// version, in one read (one statement on PostgreSQL). `contact`: the facility-and-mail
    /// index key of the login's profile, when it has one.
    fn account(&self, gmis_id: &str, contact: Option<&[u8]>) -> Result<AccountRows, StoreError>;

    /// What a login does first: [`Store::replay_check_and_record`], and when the key is fresh,
    /// [`Store::account`]; `None` for a replay. The replay entry is recorded exactly once across
    /// instances and stays recorded whatever the login then decides. One statement (one round
    /// trip) on PostgreSQL; the default makes the two calls.
    /// Durability: unlike `replay_check_and_record`, the entry may be durable only once the
    /// caller's next durable write returns (on sled the login's commit flushes everything
    /// before it: one fsync per login, not two). A caller that writes nothing after it (a
    /// refused login) calls [`Store::flush`]: `login::Fresh::admit` does.
    fn replay_and_account(
        &self,
        replay_key: &str,
        expires: i64,
        now: i64,
        gmis_id: &str,
        contact: Option<&[u8]>,
    ) -> Result<Option<AccountRows>, StoreError> {
        match self.replay_check_and_record(replay_key, expires, now)? {
            ReplayCheck::Fresh => self.account(gmis_id, contact).map(Some),
            ReplayCheck::Replayed => Ok(None),
        }
    }

    /// One transaction: checks every expectation, then writes the records and the session, or
    /// writes nothing and returns `Ok(false)` when any expectation fails. Durable when it
    /// returns `Ok(true)` (and makes every earlier write durable too). Serialised with
    /// [`Store::apply`] on the same keys, so a guarded read-decide-commit is one atomic step
    /// against any other writer, in this process or another instance.
    fn commit(&self, c: &Commit) -> Result<bool, StoreError>;

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// One record with its [`Version`], for a [`Commit`] guard (a password login's account
    /// and user rows: `login::local`).
    fn get_versioned(&self, t: Table, key: &[u8]) -> Result<Versioned, StoreError>;
    /// Applies all writes or none (a crash cannot leave half a decision and its audit line),
    /// unguarded; durable when it returns. A write that depends on what was read is a
    /// [`Store::commit`] guarded by the versions read, never an `apply`.
    fn apply(&self, writes: &[Write]) -> Result<(), StoreError>;
    /// Entries whose key starts with `prefix`, in key order; `rev` from the end; at most `limit`.
    fn scan(&self, t: Table, prefix: &[u8], rev: bool, limit: usize)
        -> Result<Entries, StoreError>;
    /// A strictly increasing number, unique across restarts (audit ordering).
    fn next_seq(&self) -> Result<u64, StoreError>;
    /// Makes every later [`Store::next_seq`] greater than `min` (after an import).
    fn seq_floor(&self, min: u64) -> Result<(), StoreError> {
        while self.next_seq()? <= min {}
        Ok(())
    }

    /// Everything outside the record tables (sessions, replay entries, generated secrets), for
    /// `samlgate store export`. Call it off the async runtime.
    fn dump_state(
        &self,
        out: &mut dyn FnMut(transfer::Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// The PostgreSQL settings of a config that selects PostgreSQL (`[store] url`).
pub fn pg_options(cfg: &crate::config::Config) -> Option<PgOptions> {
    cfg.store_pg.as_ref().map(|p| PgOptions {
        url: p.url.clone(),
        pool_size: p.pool_size,
        connect_timeout: std::time::Duration::from_secs(p.connect_timeout_seconds),
        ca_file: p.ca_file.clone(),
    })
}

/// Opens the configured backend: PostgreSQL for `[store] url` (refusing a schema this build
/// does not run on, naming `samlgate store migrate`), sled for `[store] path`; wrapped so its
/// health is known ([`health::Monitored`]).
pub fn open(cfg: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let inner: Box<dyn Store> = match pg_options(cfg) {
        Some(o) => Box::new(PgStore::open(&o)?),
        None => Box::new(SledStore::open_with_cache(
            &cfg.store_path,
            cfg.store_cache_mib,
        )?),
    };
    Ok(std::sync::Arc::new(health::Monitored::new(inner)))
}

/// Where the store is, for operators (never the URL's password).
pub fn describe(cfg: &crate::config::Config) -> String {
    match &cfg.store_pg {
        Some(p) => match p.url.parse::<postgres::Config>() {
            Ok(c) => {
                let hosts: Vec<String> = c
                    .get_hosts()
                    .iter()
                    .map(|h| match h {
                        postgres::config::Host::Tcp(h) => h.clone(),
                        postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .collect();
                format!(
                    "postgresql {}@{}/{}",
                    c.get_user().unwrap_or("?"),
                    hosts.join(","),
                    c.get_dbname().unwrap_or("?")
                )
            }
            Err(_) => "postgresql".into(),
        },
        None => format!("sled {}", cfg.store_path.display()),
    }
}
