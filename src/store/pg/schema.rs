//! Versioned schema migrations, embedded in the binary (`migrations/NNNN_name.sql`). The
//! database records what it has in `schema_version`; `samlgate store migrate` applies what is
//! missing, all in one transaction. Everything else only checks, and refuses to run
//! on a schema it does not know (older: migrate first; newer: a newer samlgate wrote it).

use postgres::GenericClient;

use crate::store::StoreError;

/// (version, file name, SQL), in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_accounts.sql",
        include_str!("../../../migrations/0002_accounts.sql"),
    ),
    (
        3,
        "0003_settings.sql",
        include_str!("../../../migrations/0003_settings.sql"),
    ),
];

/// The schema version this build expects.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

fn pg(e: postgres::Error) -> StoreError {
    super::db_error(e)
}

/// The database's schema version; 0 when samlgate never migrated it.
pub fn current(c: &mut impl GenericClient) -> Result<i32, StoreError> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(pg)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = c
        .query_one("SELECT max(version) FROM schema_version", &[])
        .map_err(pg)?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Refuses a schema this build cannot run on, naming the command that fixes it.
pub fn check(c: &mut impl GenericClient) -> Result<(), StoreError> {
    let have = current(c)?;
    let want = latest();
    if have < want {
        return Err(StoreError::Schema(format!(
            "the database schema is at version {have}, this samlgate needs {want}; \
             run `samlgate store migrate --config <file>` first"
        )));
    }
    if have > want {
        return Err(StoreError::Schema(format!(
            "the database schema is at version {have}, newer than this samlgate knows ({want}); \
             run the samlgate version that migrated it"
        )));
    }
    Ok(())
}

/// Applies the missing migrations; returns the versions applied. Concurrent runs are
/// serialised by an advisory lock, so two instances starting `migrate` at once is safe.
pub fn migrate(c: &mut postgres::Client) -> Result<Vec<i32>, StoreError> {
    let mut tx = c.transaction().map_err(pg)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7277286203); \
         CREATE TABLE IF NOT EXISTS schema_version ( \
           version integer PRIMARY KEY, name text NOT NULL, \
           applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .map_err(pg)?;
    let have = current(&mut tx)?;
    if have > latest() {
        return Err(StoreError::Schema(format!(
            "the database schema is at version {have}, newer than this samlgate knows ({})",
            latest()
        )));
    }
    let mut done = Vec::new();
    for (v, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Schema(format!("migration {name}: {}", super::db_error(e))))?;
        tx.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[v, name],
        )
        .map_err(pg)?;
        done.push(*v);
    }
    tx.commit().map_err(pg)?;
    Ok(done)
}
