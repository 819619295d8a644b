//! [`Store::account`] and [`Store::commit`] on PostgreSQL: the snapshot is one statement (with
//! the replay entry's insert ahead of it, `replay_then_account`), the commit one round trip (a
//! per-connection function that takes the row locks, then runs the guard and every write as one
//! statement, called with its values bound), whatever the number of rows.
//!
//! Values are always bound, never inlined as literals: a failing statement's text goes to the
//! server log (`log_min_error_statement`, on by default), and bound values do not
//! (`log_parameter_max_length_on_error` is 0 by default). A commit carries password hashes,
//! TOTP secrets and session ids (`tests/pg_literals.rs`).

use postgres::types::{ToSql, Type};

use super::tables::{lock_id, spec, value_text, Key};
use super::{db_error, PgStore};
use crate::store::txn::{link_to_of, sequenced, AUDIT_UNSEQUENCED};
use crate::store::{AccountRows, Commit, StoreError, Table, Version, Versioned};

/// Rows of the snapshot, tagged by what they are (column 0).
const ACCOUNT_SQL: &str = "\
    SELECT 0, doc, xmin::text::bigint FROM consents WHERE gmis_id = $1 \
    UNION ALL SELECT 1, doc, xmin::text::bigint FROM applications WHERE gmis_id = $1 \
    UNION ALL SELECT 2, user_id, xmin::text::bigint FROM user_links WHERE gmis_id = $1 \
    UNION ALL SELECT 3, u.doc, u.xmin::text::bigint FROM users u \
      JOIN user_links l ON u.id = l.user_id COLLATE \"C\" WHERE l.gmis_id = $1 \
    UNION ALL SELECT 4, doc, xmin::text::bigint FROM users WHERE id = $1 \
    UNION ALL SELECT 5, u.doc, u.xmin::text::bigint FROM users u \
      JOIN applications a ON u.id = a.link_to COLLATE \"C\" WHERE a.gmis_id = $1 \
    UNION ALL SELECT 6, user_id, xmin::text::bigint FROM user_contacts WHERE contact = $2 \
    UNION ALL SELECT 7, u.doc, u.xmin::text::bigint FROM users u \
      JOIN user_contacts c ON u.id = c.user_id COLLATE \"C\" WHERE c.contact = $2";

fn found(t: Table, key: &[u8], doc: Option<&(String, i64)>) -> Versioned {
    match doc {
        Some((v, x)) => Versioned {
            table: t,
            key: key.to_vec(),
            value: Some(v.clone().into_bytes()),
            version: Version(*x as u64),
        },
        None => Versioned::absent(t, key),
    }
}

/// The snapshot from the tagged rows of [`ACCOUNT_SQL`], and whether a replay insert (tag 8)
/// counted a row.
fn snapshot(gmis_id: &str, contact: Option<&[u8]>, got: &[postgres::Row]) -> (bool, AccountRows) {
    let mut rows: [Option<(String, i64)>; 8] = Default::default();
    let mut fresh = false;
    for r in got {
        match r.get::<_, i32>(0) {
            8 => fresh = r.get::<_, i64>(2) == 1,
            tag => rows[tag as usize] = Some((r.get(1), r.get(2))),
        }
    }
    let key = gmis_id.as_bytes();
    let application = found(Table::Applications, key, rows[1].as_ref());
    let link = found(Table::UserByGmis, key, rows[2].as_ref());
    let contact = contact.map(|k| found(Table::UserByContact, k, rows[6].as_ref()));
    let link_target = application
        .value
        .as_deref()
        .and_then(link_to_of)
        .map(|id| found(Table::Users, id.as_bytes(), rows[5].as_ref()));
    let account = AccountRows {
        gmis_id: gmis_id.to_string(),
        consent: found(Table::Consents, key, rows[0].as_ref()),
        linked_user: named(&rows, &link, 3),
        same_id: found(Table::Users, key, rows[4].as_ref()),
        contact_user: contact.as_ref().and_then(|c| named(&rows, c, 7)),
        application,
        link,
        link_target,
        contact,
    };
    (fresh, account)
}

/// The row a present index row names (`users[value]`), as found by `tag`.
fn named(rows: &[Option<(String, i64)>; 8], index: &Versioned, tag: usize) -> Option<Versioned> {
    let id = index.value.as_deref()?;
    Some(found(Table::Users, id, rows[tag].as_ref()))
}

/// The replay entry's insert (as `replay_check_and_record`: a live entry returns no row) ahead
/// of the snapshot, one statement: `$3..$7` are idp, id, kind, expires, now. Tag 8 counts the
/// rows inserted (1: fresh). The insert commits with the statement, whatever the login decides.
static REPLAY_ACCOUNT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH r AS (INSERT INTO replay (idp, assertion_id, kind, expires_at) \
         VALUES ($3, $4, $5, $6) ON CONFLICT (idp, assertion_id, kind) \
         DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE replay.expires_at <= $7 \
         RETURNING 1) \
         SELECT 8, NULL, count(*) FROM r UNION ALL {ACCOUNT_SQL}"
    )
});

impl PgStore {
    /// One record and its version (`xmin`), as [`Self::account_rows`] reads them.
    pub(super) fn versioned_row(&self, t: Table, key: &[u8]) -> Result<Versioned, StoreError> {
        let sp = spec(t);
        let k = Key::new(sp.kind, key)?;
        let sql = format!(
            "SELECT {}, xmin::text::bigint FROM {} WHERE {} = $1",
            sp.value, sp.table, sp.key
        );
        let row = self.with(|c| {
            c.query_typed_opt(sql.as_str(), &[k.typed()])
                .map_err(db_error)
        })?;
        let doc = row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
        Ok(found(t, key, doc.as_ref()))
    }

    pub(super) fn account_rows(
        &self,
        gmis_id: &str,
        contact: Option<&[u8]>,
    ) -> Result<AccountRows, StoreError> {
        let contact_param: Option<Vec<u8>> = contact.map(<[u8]>::to_vec);
        let got = self.with_conn(|c| {
            let st = c.statement(ACCOUNT_SQL, &[Type::TEXT, Type::BYTEA])?;
            c.client
                .query(&st, &[&gmis_id, &contact_param])
                .map_err(db_error)
        })?;
        Ok(snapshot(gmis_id, contact, &got).1)
    }

    pub(super) fn replay_then_account(
        &self,
        replay_key: &str,
        expires: i64,
        now: i64,
        gmis_id: &str,
        contact: Option<&[u8]>,
    ) -> Result<Option<AccountRows>, StoreError> {
        let (idp, id, kind) = super::tables::replay_parts(replay_key);
        let contact_param: Option<Vec<u8>> = contact.map(<[u8]>::to_vec);
        let got = self.with_conn(|c| {
            let st = c.statement(
                &REPLAY_ACCOUNT_SQL,
                &[
                    Type::TEXT,
                    Type::BYTEA,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                ],
            )?;
            c.client
                .query(
                    &st,
                    &[&gmis_id, &contact_param, &idp, &id, &kind, &expires, &now],
                )
                .map_err(db_error)
        })?;
        let (fresh, rows) = snapshot(gmis_id, contact, &got);
        Ok(fresh.then_some(rows))
    }

    pub(super) fn commit_all(&self, c: &Commit) -> Result<bool, StoreError> {
        let shape = Shape::of(c)?;
        let (ids, excl) = locks_of(c);
        // One round trip with every value bound: the locks, then the guard and writes, run
        // inside a per-connection function (`Shape::function`) called as one autocommit
        // statement. Each statement of a VOLATILE plpgsql function takes a new snapshot
        // (READ COMMITTED), so the guard sees every write that held a lock before ours; the
        // call commits when it returns, an error at COMMIT included.
        let (ok, bumped) = self.with_conn(|conn| {
            let name = shape.function_name();
            if !conn.functions.contains(&name) {
                conn.client
                    .batch_execute(&shape.function(&name))
                    .map_err(db_error)?;
                conn.functions.insert(name.clone());
            }
            let mut types = shape.types.clone();
            types.extend([Type::INT8_ARRAY, Type::BOOL_ARRAY]);
            let st = conn.statement(&shape.call(&name), &types)?;
            let mut open = Open { conn, done: false };
            let mut params: Vec<&(dyn ToSql + Sync)> = shape
                .args
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            params.push(&ids);
            params.push(&excl);
            let row = open.conn.client.query_one(&st, &params).map_err(db_error)?;
            open.done = true;
            // Nothing was written when the guard failed.
            Ok((row.get::<_, bool>(0), row.get::<_, i64>(1) != 0))
        })?;
        if bumped {
            self.gen.bump();
        }
        Ok(ok)
    }
}

/// The row locks, as (ids, exclusive?). Written keys are locked exclusively, keys only read
/// shared: concurrent logins that read one row (a facility's contact entry) do not queue behind
/// each other, while a writer of that row (`apply` locks exclusively) waits for them and they
/// for it. One order for all (by id), as `apply` takes them, so no deadlock.
fn locks_of(c: &Commit) -> (Vec<i64>, Vec<bool>) {
    let mut locks: Vec<(i64, bool)> = c
        .writes
        .iter()
        .map(|(t, k, _)| (lock_id(*t, k), true))
        .chain(c.expect.iter().map(|e| (lock_id(e.table, &e.key), false)))
        .collect();
    // Exclusive first among equal ids, then keep one per id.
    locks.sort_unstable_by_key(|&(id, excl)| (id, !excl));
    locks.dedup_by_key(|l| l.0);
    locks.into_iter().unzip()
}

/// A commit call in flight on a pooled connection. Unless it finished, the connection is reset
/// before it goes back to the pool: rolled back (a no-op when the failed call's implicit
/// transaction already ended), and everything prepared on it dropped together with both
/// caches, so the two sides cannot disagree about what exists (finding R1: a kept statement
/// cache after `DEALLOCATE ALL` made every later snapshot on the connection fail with 26000).
struct Open<'a> {
    conn: &'a mut super::PgConn,
    done: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.client.batch_execute("ROLLBACK; DEALLOCATE ALL");
            self.conn.functions.clear();
            self.conn.statements.clear();
        }
    }
}

/// The SQL name of a bound value's type (the commit's parameters only).
fn sql_type(t: &Type) -> String {
    if *t == Type::TEXT_ARRAY {
        "text[]".into()
    } else {
        t.name().into()
    }
}

/// A bound value of a commit.
type Arg = Box<dyn ToSql + Sync + Send>;

/// A key as a bound value of its column's type.
fn key_arg(k: Key) -> (Arg, Type) {
    match k {
        Key::Text(s) => (Box::new(s), Type::TEXT),
        Key::Bytes(b) => (Box::new(b), Type::BYTEA),
        Key::Seq(i) => (Box::new(i), Type::INT8),
    }
}

/// Text as a bound value; NUL (which PostgreSQL's text refuses) is refused before the database.
fn text_arg(s: &str) -> Result<(Arg, Type), StoreError> {
    if s.contains('\0') {
        return Err(StoreError::Corrupt("a commit value contains NUL".into()));
    }
    Ok((Box::new(s.to_owned()), Type::TEXT))
}

/// Texts as one bound `text[]`.
fn texts_arg(v: Vec<String>) -> Result<(Arg, Type), StoreError> {
    if v.iter().any(|s| s.contains('\0')) {
        return Err(StoreError::Corrupt("a commit value contains NUL".into()));
    }
    Ok((Box::new(v), Type::TEXT_ARRAY))
}

/// The guard and the writes as one statement: a CTE computes whether every expectation holds,
/// and each write is a data-modifying CTE conditioned on it (all see one snapshot, taken after
/// the locks). Returns the guard and whether the generation moved. `sql` has `$n` parameters
/// and depends only on the commit's shape (which tables, how many rows); `args` are their
/// bound values, `types` their types.
struct Shape {
    sql: String,
    args: Vec<Arg>,
    types: Vec<Type>,
}

impl Shape {
    fn param(&mut self, (arg, ty): (Arg, Type)) -> String {
        self.args.push(arg);
        self.types.push(ty);
        format!("${}", self.args.len())
    }

    /// The function's name on a connection: a digest of the statement and its types (the
    /// shape: which tables, how many rows), never of a value.
    fn function_name(&self) -> String {
        use sha2::Digest;
        let mut d = sha2::Sha256::new();
        d.update(self.sql.as_bytes());
        for t in &self.types {
            d.update(t.name().as_bytes());
        }
        format!("samlgate_commit_{}", hex::encode(&d.finalize()[..8]))
    }

    /// `CREATE FUNCTION pg_temp.<name>(<the statement's parameters>, lock ids, exclusive?)`:
    /// takes the locks, then runs the guard and writes; `$1..$n` are the statement's own.
    fn function(&self, name: &str) -> String {
        let n = self.args.len();
        let mut decl: Vec<String> = self.types.iter().map(sql_type).collect();
        decl.extend(["int8[]".to_string(), "bool[]".to_string()]);
        format!(
            "CREATE OR REPLACE FUNCTION pg_temp.{name}({}) \
             RETURNS TABLE (sg_ok boolean, sg_bumps bigint) LANGUAGE plpgsql VOLATILE AS $sg$ \
             BEGIN \
             PERFORM count(CASE WHEN x THEN pg_advisory_xact_lock(k) \
             ELSE pg_advisory_xact_lock_shared(k) END) FROM unnest(${}, ${}) AS t(k, x); \
             RETURN QUERY {}; \
             END $sg$",
            decl.join(", "),
            n + 1,
            n + 2,
            self.sql
        )
    }

    /// The call of [`Shape::function`], every value bound.
    fn call(&self, name: &str) -> String {
        let params: Vec<String> = (1..=self.args.len() + 2).map(|i| format!("${i}")).collect();
        format!(
            "SELECT sg_ok, sg_bumps FROM pg_temp.{name}({})",
            params.join(", ")
        )
    }

    fn of(c: &Commit) -> Result<Shape, StoreError> {
        let mut s = Shape {
            sql: String::new(),
            args: Vec::new(),
            types: Vec::new(),
        };
        let mut conds = vec!["TRUE".to_string()];
        for e in &c.expect {
            let sp = spec(e.table);
            let k = s.param(key_arg(Key::new(sp.kind, &e.key)?));
            let v = s.param((Box::new(e.version.0 as i64), Type::INT8));
            conds.push(format!(
                "COALESCE((SELECT xmin::text::bigint FROM {} WHERE {} = {k}), 0) = {v}",
                sp.table, sp.key
            ));
        }
        let mut ctes = vec![format!("ok AS (SELECT {} AS ok)", conds.join(" AND "))];
        const IF_OK: &str = "(SELECT ok FROM ok)";
        for (i, (t, key, value)) in c.last_writes().into_iter().enumerate() {
            let sp = spec(*t);
            let k = s.param(key_arg(Key::new(sp.kind, key)?));
            ctes.push(match value {
                Some(v) => {
                    let v = s.param(text_arg(value_text(v)?)?);
                    format!(
                        "w{i} AS (INSERT INTO {t} ({kc}, {vc}) SELECT {k}, {v} WHERE {IF_OK} \
                         ON CONFLICT ({kc}) DO UPDATE SET {vc} = EXCLUDED.{vc})",
                        t = sp.table,
                        kc = sp.key,
                        vc = sp.value
                    )
                }
                None => format!(
                    "w{i} AS (DELETE FROM {} WHERE {} = {k} AND {IF_OK})",
                    sp.table, sp.key
                ),
            });
        }
        s.audit(c, &mut ctes)?;
        if let Some((rec, _)) = &c.session {
            let doc = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id = s.param(text_arg(&rec.id)?);
            let doc = s.param(text_arg(&doc)?);
            ctes.push(format!(
                "s AS (INSERT INTO sessions (id, doc) SELECT {id}, {doc}::jsonb WHERE {IF_OK})"
            ));
        }
        let ids = s.param(texts_arg(c.end_sessions.clone())?);
        ctes.push(format!(
            "e AS (DELETE FROM sessions WHERE id = ANY({ids}) AND {IF_OK} RETURNING 1)"
        ));
        // As `bump_generation` (the NOTIFY leaves at COMMIT), for a restricting write or an
        // ended session. Referenced below, so its RETURNING is surely evaluated.
        let restricts = s.param((Box::new(c.restricts()), Type::BOOL));
        ctes.push(format!(
            "g AS (UPDATE store_generation SET n = n + 1 WHERE id = 1 AND {IF_OK} \
             AND ({restricts} OR EXISTS (SELECT 1 FROM e)) \
             RETURNING pg_notify('samlgate_generation', n::text))"
        ));
        s.sql = format!(
            "WITH {} SELECT ok, (SELECT count(*) FROM g) FROM ok",
            ctes.join(", ")
        );
        Ok(s)
    }

    /// Audit lines numbered here, in their order: `{"seq":0,` becomes `{"seq":N,`
    /// (Commit::audit). nextval in the sorted subquery's target list runs after the sort.
    fn audit(&mut self, c: &Commit, ctes: &mut Vec<String>) -> Result<(), StoreError> {
        if c.audit.is_empty() {
            return Ok(());
        }
        let rests = c
            .audit
            .iter()
            .map(|doc| {
                let rest = sequenced(doc, 0)?.split_off(AUDIT_UNSEQUENCED.len());
                Ok(value_text(&rest)?.to_owned())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rests = self.param(texts_arg(rests)?);
        ctes.push(format!(
            "a AS (INSERT INTO audit (seq, doc) SELECT n, '{{\"seq\":' || n || ',' || rest \
             FROM (SELECT nextval('audit_seq') AS n, rest \
                   FROM unnest({rests}) WITH ORDINALITY AS t(rest, i) \
                   WHERE (SELECT ok FROM ok) ORDER BY i) q)"
        ));
        Ok(())
    }
}
