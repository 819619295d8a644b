//! [`Store::account`] and [`Store::commit`] on PostgreSQL: the snapshot is one statement, the
//! commit three round trips (BEGIN with the row locks; the guard and every write as one
//! statement; COMMIT), whatever the number of rows.

use postgres::types::{ToSql, Type};

use super::tables::{lock_id, spec, value_text, Key};
use super::{db_error, PgStore};
use crate::store::txn::link_to_of;
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

/// The row a present index row names (`users[value]`), as found by `tag`.
fn named(rows: &[Option<(String, i64)>; 8], index: &Versioned, tag: usize) -> Option<Versioned> {
    let id = index.value.as_deref()?;
    Some(found(Table::Users, id, rows[tag].as_ref()))
}

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
        let got = self.with(|c| {
            c.query_typed(
                ACCOUNT_SQL,
                &[(&gmis_id, Type::TEXT), (&contact_param, Type::BYTEA)],
            )
            .map_err(db_error)
        })?;
        let mut rows: [Option<(String, i64)>; 8] = Default::default();
        for r in got {
            let tag: i32 = r.get(0);
            rows[tag as usize] = Some((r.get(1), r.get(2)));
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
        Ok(AccountRows {
            gmis_id: gmis_id.to_string(),
            consent: found(Table::Consents, key, rows[0].as_ref()),
            linked_user: named(&rows, &link, 3),
            same_id: found(Table::Users, key, rows[4].as_ref()),
            contact_user: contact.as_ref().and_then(|c| named(&rows, c, 7)),
            application,
            link,
            link_target,
            contact,
        })
    }

    pub(super) fn commit_all(&self, c: &Commit) -> Result<bool, StoreError> {
        let stmt = Statement::build(c)?;
        let begin = begin_with_locks(c);
        let ok = self.with(|client| {
            let mut open = Open {
                client,
                done: false,
            };
            open.client.batch_execute(&begin).map_err(db_error)?;
            let params: Vec<(&(dyn ToSql + Sync), Type)> =
                stmt.params.iter().map(|p| p.typed()).collect();
            let row = open
                .client
                .query_typed_one(stmt.sql.as_str(), &params)
                .map_err(db_error)?;
            let (ok, bumped): (bool, i64) = (row.get(0), row.get(1));
            // Nothing was written when the guard failed: COMMIT just releases the locks.
            open.client.batch_execute("COMMIT").map_err(db_error)?;
            open.done = true;
            Ok((ok, bumped > 0))
        })?;
        if ok.1 {
            self.gen.bump();
        }
        Ok(ok.0)
    }
}

/// BEGIN and the row locks, one statement of integers and booleans (inlined, so one round
/// trip). Written keys are locked exclusively, keys only read shared: concurrent logins that
/// read one row (a facility's contact entry) do not queue behind each other, while a writer of
/// that row (`apply` locks exclusively) waits for them and they for it. One order for all
/// (by id), as `apply` takes them, so no deadlock. The guard's statement starts after every
/// lock is held, so it sees every write that held one before.
fn begin_with_locks(c: &Commit) -> String {
    let mut locks: Vec<(i64, bool)> = c
        .writes
        .iter()
        .map(|(t, k, _)| (lock_id(*t, k), true))
        .chain(c.expect.iter().map(|e| (lock_id(e.table, &e.key), false)))
        .collect();
    // Exclusive first among equal ids, then keep one per id.
    locks.sort_unstable_by_key(|&(id, excl)| (id, !excl));
    locks.dedup_by_key(|l| l.0);
    if locks.is_empty() {
        return "BEGIN".into();
    }
    let ids: Vec<String> = locks.iter().map(|l| l.0.to_string()).collect();
    let excl: Vec<&str> = locks
        .iter()
        .map(|l| if l.1 { "true" } else { "false" })
        .collect();
    format!(
        "BEGIN; SELECT count(CASE WHEN x THEN pg_advisory_xact_lock(k) \
         ELSE pg_advisory_xact_lock_shared(k) END) \
         FROM unnest(ARRAY[{}]::int8[], ARRAY[{}]::bool[]) AS t(k, x)",
        ids.join(","),
        excl.join(",")
    )
}

/// An open transaction on a pooled connection: rolled back if the commit did not finish, so
/// the connection goes back to the pool outside any transaction.
struct Open<'a> {
    client: &'a mut postgres::Client,
    done: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// A statement parameter.
enum Param {
    Key(Key),
    Text(String),
    Int(i64),
    Texts(Vec<String>),
}

impl Param {
    fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
        match self {
            Param::Key(k) => k.typed(),
            Param::Text(s) => (s, Type::TEXT),
            Param::Int(i) => (i, Type::INT8),
            Param::Texts(v) => (v, Type::TEXT_ARRAY),
        }
    }
}

/// The guard and the writes as one statement: a CTE computes whether every expectation holds,
/// and each write is a data-modifying CTE conditioned on it (all see one snapshot, taken after
/// the locks). Returns the guard.
struct Statement {
    sql: String,
    params: Vec<Param>,
}

impl Statement {
    fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn build(c: &Commit) -> Result<Statement, StoreError> {
        let mut s = Statement {
            sql: String::new(),
            params: Vec::new(),
        };
        let mut conds = vec!["TRUE".to_string()];
        for e in &c.expect {
            let sp = spec(e.table);
            let k = s.param(Param::Key(Key::new(sp.kind, &e.key)?));
            let v = s.param(Param::Int(e.version.0 as i64));
            conds.push(format!(
                "COALESCE((SELECT xmin::text::bigint FROM {} WHERE {} = {k}), 0) = {v}",
                sp.table, sp.key
            ));
        }
        let mut ctes = vec![format!("ok AS (SELECT {} AS ok)", conds.join(" AND "))];
        const IF_OK: &str = "(SELECT ok FROM ok)";
        for (i, (t, key, value)) in c.last_writes().into_iter().enumerate() {
            let sp = spec(*t);
            let k = s.param(Param::Key(Key::new(sp.kind, key)?));
            ctes.push(match value {
                Some(v) => {
                    let v = s.param(Param::Text(value_text(v)?.to_owned()));
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
        if let Some((rec, _)) = &c.session {
            let doc = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id = s.param(Param::Text(rec.id.clone()));
            let doc = s.param(Param::Text(doc));
            ctes.push(format!(
                "s AS (INSERT INTO sessions (id, doc) SELECT {id}, {doc}::jsonb WHERE {IF_OK})"
            ));
        }
        let ids = s.param(Param::Texts(c.end_sessions.clone()));
        ctes.push(format!(
            "e AS (DELETE FROM sessions WHERE id = ANY({ids}) AND {IF_OK} RETURNING 1)"
        ));
        // As `bump_generation` (the NOTIFY leaves at COMMIT), for a restricting write or an
        // ended session. Referenced below, so its RETURNING is surely evaluated.
        ctes.push(format!(
            "g AS (UPDATE store_generation SET n = n + 1 WHERE id = 1 AND {IF_OK} \
             AND ({} OR EXISTS (SELECT 1 FROM e)) \
             RETURNING pg_notify('samlgate_generation', n::text))",
            c.restricts()
        ));
        s.sql = format!(
            "WITH {} SELECT ok, (SELECT count(*) FROM g) FROM ok",
            ctes.join(", ")
        );
        Ok(s)
    }
}
