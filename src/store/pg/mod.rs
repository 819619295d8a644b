//! The shared store on PostgreSQL, for several gateway instances on one database.
//!
//! Sync client (`postgres`) with an r2d2 pool: the [`Store`] trait is sync and is called from
//! blocking threads on the login path. Every call leaves the async runtime first
//! ([`off_runtime`]), so an inline call on a worker (the `/auth/verify` cache miss) hands the
//! worker's other tasks on instead of stalling them, and the client's own runtime never nests
//! in ours. Every wait is bounded: connect and pool checkout by `connect_timeout_seconds`,
//! statements by `statement_timeout`, dead peers by TCP keepalive and user timeout.
//!
//! Durability: COMMIT is durable (`synchronous_commit=on` is forced per connection), so
//! [`Store::flush`] has nothing left to do.

mod listen;
pub mod schema;
mod tables;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::GenericClient;
use r2d2_postgres::PostgresConnectionManager;

use super::{SessionRecord, StoreError};

pub use listen::{FRESH, PROBE};

/// `[store]` settings for PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// libpq-style URL: `postgresql://user@host:port/db?target_session_attrs=read-write`.
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    /// CA certificate(s), PEM: TLS to the database, verified against these roots only.
    pub ca_file: Option<PathBuf>,
}

impl PgOptions {
    pub fn new(url: &str) -> PgOptions {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

type Rustls = tokio_postgres_rustls::MakeRustlsConnect;

/// Plain TCP, or rustls with the configured roots.
#[derive(Clone)]
enum Tls {
    None(postgres::NoTls),
    Rustls(Rustls),
}

/// A pooled connection with what is prepared on it: the hot statements are planned once per
/// connection, not once per call (planning was half of the database's CPU per login).
pub(crate) struct PgConn {
    pub(crate) client: postgres::Client,
    /// Extended-protocol statements, by SQL text.
    statements: std::collections::HashMap<String, postgres::Statement>,
    /// Names of the commit functions created in this connection's `pg_temp` (one per shape).
    pub(crate) functions: std::collections::HashSet<String>,
}

impl PgConn {
    /// The statement for `sql`, prepared on this connection the first time.
    pub(crate) fn statement(
        &mut self,
        sql: &str,
        types: &[postgres::types::Type],
    ) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare_typed(sql, types).map_err(db_error)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// r2d2_postgres' manager, yielding [`PgConn`]s.
struct Manager<T>(PostgresConnectionManager<T>);

impl<T> r2d2::ManageConnection for Manager<T>
where
    T: postgres::tls::MakeTlsConnect<postgres::Socket> + Clone + 'static + Sync + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as postgres::tls::TlsConnect<postgres::Socket>>::Future: Send,
{
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.0.connect()?,
            statements: Default::default(),
            functions: Default::default(),
        })
    }

    fn is_valid(&self, c: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut c.client)
    }

    fn has_broken(&self, c: &mut PgConn) -> bool {
        self.0.has_broken(&mut c.client)
    }
}

/// The pool, of one TLS flavour or the other (the manager's type names it).
enum Pool {
    Plain(r2d2::Pool<Manager<postgres::NoTls>>),
    Tls(r2d2::Pool<Manager<Rustls>>),
}

enum Conn {
    Plain(r2d2::PooledConnection<Manager<postgres::NoTls>>),
    Tls(r2d2::PooledConnection<Manager<Rustls>>),
}

impl Conn {
    fn conn(&mut self) -> &mut PgConn {
        match self {
            Conn::Plain(c) => c,
            Conn::Tls(c) => c,
        }
    }
}

impl std::ops::Deref for Conn {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        match self {
            Conn::Plain(c) => &c.client,
            Conn::Tls(c) => &c.client,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.conn().client
    }
}

impl Pool {
    fn new(o: &PgOptions, config: postgres::Config, tls: Tls) -> Pool {
        fn builder<M: r2d2::ManageConnection>(o: &PgOptions) -> r2d2::Builder<M> {
            r2d2::Pool::builder()
                .max_size(o.pool_size.max(1))
                .min_idle(Some(1))
                .connection_timeout(o.connect_timeout)
                // A broken connection shows as an error and is dropped; no extra round trip.
                .test_on_check_out(false)
        }
        match tls {
            Tls::None(t) => Pool::Plain(
                builder(o).build_unchecked(Manager(PostgresConnectionManager::new(config, t))),
            ),
            Tls::Rustls(t) => Pool::Tls(
                builder(o).build_unchecked(Manager(PostgresConnectionManager::new(config, t))),
            ),
        }
    }

    fn get(&self) -> Result<Conn, StoreError> {
        match self {
            Pool::Plain(p) => p.get().map(Conn::Plain),
            Pool::Tls(p) => p.get().map(Conn::Tls),
        }
        .map_err(pool_error)
    }
}

/// How long a suspect connection gets to prove itself alive.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct PgStore {
    pool: Pool,
    pool_size: u32,
    /// Set by an I/O failure, cleared by a success: check connections before use meanwhile.
    suspect: AtomicBool,
    gen: Arc<listen::Generation>,
    /// How to connect the generation listener; taken when it starts (in `open`: a store
    /// opened only to migrate has none, and its generation() never claims freshness).
    listener: Option<(postgres::Config, Tls)>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.gen.stop();
    }
}

/// Maps a client error; the SQLSTATE is kept so an operator can look it up.
pub(crate) fn db_error(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Io(format!("postgresql {}: {}", d.code().code(), d.message())),
        None => StoreError::Io(format!("postgresql: {e}")),
    }
}

fn pool_error(e: r2d2::Error) -> StoreError {
    StoreError::Io(format!("postgresql: no connection: {e}"))
}

/// Runs `f` where blocking is allowed: on a multi-threaded runtime's worker, the worker's
/// other tasks move to another thread first; on a current-thread runtime (tests), a scoped
/// thread runs it; off the runtime (spawn_blocking, CLI), it just runs.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| s.spawn(f).join().expect("store thread")),
    }
}

impl PgStore {
    fn config(o: &PgOptions) -> Result<postgres::Config, StoreError> {
        let mut c: postgres::Config = o
            .url
            .parse()
            .map_err(|e| StoreError::Io(format!("[store] url: {e}")))?;
        c.connect_timeout(o.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(o.connect_timeout.max(Duration::from_secs(2)))
            .application_name("samlgate")
            // COMMIT is the durability point; a statement or lock never waits unbounded.
            .options(
                "-c synchronous_commit=on -c statement_timeout=5000 -c lock_timeout=5000 \
                 -c idle_in_transaction_session_timeout=10000 -c client_min_messages=warning",
            );
        if o.ca_file.is_some() {
            // With a CA configured, TLS is required: never fall back to plain text.
            c.ssl_mode(postgres::config::SslMode::Require);
        }
        Ok(c)
    }

    fn tls(o: &PgOptions) -> Result<Tls, StoreError> {
        let Some(path) = &o.ca_file else {
            return Ok(Tls::None(postgres::NoTls));
        };
        let pem = std::fs::read(path)
            .map_err(|e| StoreError::Io(format!("[store] ca_file {}: {e}", path.display())))?;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| StoreError::Io(format!("[store] ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| StoreError::Io(format!("[store] ca_file: {e}")))?;
        }
        if roots.is_empty() {
            return Err(StoreError::Io(format!(
                "[store] ca_file {}: no certificate in it",
                path.display()
            )));
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Io(format!("tls: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(
            cfg,
        )))
    }

    /// Connects without checking the schema (`store migrate` uses this).
    pub fn connect_unchecked(o: &PgOptions) -> Result<PgStore, StoreError> {
        let config = PgStore::config(o)?;
        let tls = PgStore::tls(o)?;
        let pool = Pool::new(o, config.clone(), tls.clone());
        Ok(PgStore {
            pool,
            pool_size: o.pool_size.max(1),
            suspect: AtomicBool::new(false),
            gen: listen::Generation::new(),
            listener: Some((config, tls)),
        })
    }

    /// Connects and refuses a schema this build does not know (`serve`, `check-config`).
    pub fn open(o: &PgOptions) -> Result<PgStore, StoreError> {
        let mut s = PgStore::connect_unchecked(o)?;
        s.with(schema::check)?;
        if let Some((config, tls)) = s.listener.take() {
            listen::spawn(s.gen.clone(), move || connect_one(&config, &tls));
        }
        Ok(s)
    }

    /// Applies pending migrations; returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        self.with(schema::migrate)
    }

    fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        self.with_conn(|c| f(&mut c.client))
    }

    /// As [`PgStore::with`], with the connection's prepared statements.
    fn with_conn<R: Send>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        off_runtime(|| {
            let mut c = self.checkout()?;
            let r = f(c.conn());
            match &r {
                Ok(_) => self.suspect.store(false, Ordering::SeqCst),
                Err(StoreError::Io(_)) => self.suspect.store(true, Ordering::SeqCst),
                Err(_) => {}
            }
            r
        })
    }

    /// A pooled connection. After a failure (a database restart leaves every idle connection
    /// dead) each is checked first, and dead ones are dropped, so one call recovers instead of
    /// one failed call per stale connection. In normal running this costs nothing.
    fn checkout(&self) -> Result<Conn, StoreError> {
        for _ in 0..=self.pool_size {
            let mut c = self.pool.get()?;
            if !self.suspect.load(Ordering::SeqCst) || c.is_valid(CHECK_TIMEOUT).is_ok() {
                return Ok(c);
            }
            // Dropped here: a closed client is discarded by the pool, not returned to it.
        }
        Err(StoreError::Io("postgresql: no live connection".into()))
    }

    /// Runs `f` in a transaction; commits if it returns Ok.
    fn tx<R: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db_error)?;
            let r = f(&mut tx)?;
            tx.commit().map_err(db_error)?;
            Ok(r)
        })
    }

    /// Every session whose `column` equals `value` (indexed).
    fn sessions_where(&self, column: &str, value: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!("SELECT doc::text FROM sessions WHERE {column} = $1");
        let docs = self.with(|c| {
            let rows = c
                .query_typed(sql.as_str(), &[(&value, postgres::types::Type::TEXT)])
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>())
        })?;
        docs.iter().map(|d| decode_session(d)).collect()
    }
}

fn connect_one(config: &postgres::Config, tls: &Tls) -> Result<postgres::Client, String> {
    match tls {
        Tls::None(t) => config.connect(*t),
        Tls::Rustls(t) => config.connect(t.clone()),
    }
    .map_err(|e| db_error(e).to_string())
}

/// Moves the shared generation in the caller's transaction; the NOTIFY leaves at COMMIT.
fn bump_generation(tx: &mut impl GenericClient) -> Result<(), StoreError> {
    tx.execute_typed(
        "UPDATE store_generation SET n = n + 1 WHERE id = 1 \
         RETURNING pg_notify('samlgate_generation', n::text)",
        &[],
    )
    .map_err(db_error)?;
    Ok(())
}

fn decode_session(doc: &str) -> Result<SessionRecord, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("session: {e}")))
}

mod store_impl;
mod txn;
