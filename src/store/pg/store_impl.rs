//! [`Store`] on PostgreSQL: one statement or one transaction per call.

use postgres::types::{ToSql, Type};
use postgres::GenericClient;

use super::tables::{self, key_bytes, lock_id, spec, value_text, Key, KeyKind};
use super::{bump_generation, db_error, decode_session, PgStore};
use crate::store::transfer::Item;
use crate::store::{
    AccountRows, Commit, Entries, ReplayCheck, SessionRecord, Store, StoreError, Table, Write,
};

// Statements go as `*_typed` calls: the parameter types are given, so the server is not asked
// to describe the statement first (one round trip per statement instead of two).
type P<'a> = (&'a (dyn ToSql + Sync), Type);
fn text(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::TEXT)
}
fn int8(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::INT8)
}

/// A batch write, checked and converted before the transaction starts.
struct Prepared {
    table: Table,
    key: Key,
    value: Option<String>,
}

fn get_in(c: &mut impl GenericClient, t: Table, k: &Key) -> Result<Option<String>, StoreError> {
    let s = spec(t);
    let sql = format!("SELECT {} FROM {} WHERE {} = $1", s.value, s.table, s.key);
    let row = c
        .query_typed_opt(sql.as_str(), &[k.typed()])
        .map_err(db_error)?;
    Ok(row.map(|r| r.get(0)))
}

fn write_in(c: &mut impl GenericClient, w: &Prepared) -> Result<(), StoreError> {
    let s = spec(w.table);
    match &w.value {
        Some(v) => {
            let sql = format!(
                "INSERT INTO {t} ({k}, {v}) VALUES ($1, $2) \
                 ON CONFLICT ({k}) DO UPDATE SET {v} = EXCLUDED.{v}",
                t = s.table,
                k = s.key,
                v = s.value
            );
            c.execute_typed(sql.as_str(), &[w.key.typed(), text(v)])
        }
        None => {
            let sql = format!("DELETE FROM {} WHERE {} = $1", s.table, s.key);
            c.execute_typed(sql.as_str(), &[w.key.typed()])
        }
    }
    .map_err(db_error)?;
    Ok(())
}

fn prepare(writes: &[Write]) -> Result<Vec<Prepared>, StoreError> {
    writes
        .iter()
        .map(|(t, k, v)| {
            Ok(Prepared {
                table: *t,
                key: Key::new(spec(*t).kind, k)?,
                value: v.as_deref().map(value_text).transpose()?.map(str::to_owned),
            })
        })
        .collect()
}

impl Store for PgStore {
    fn replay_check_and_record(
        &self,
        key: &str,
        expires: i64,
        now: i64,
    ) -> Result<ReplayCheck, StoreError> {
        let (idp, id, kind) = tables::replay_parts(key);
        // One statement: insert, or take over an expired entry; a live entry returns no row.
        let n = self.with(|c| {
            c.execute_typed(
                "INSERT INTO replay (idp, assertion_id, kind, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (idp, assertion_id, kind) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                 WHERE replay.expires_at <= $5",
                &[text(&idp), text(&id), text(&kind), int8(&expires), int8(&now)],
            )
            .map_err(db_error)
        })?;
        Ok(if n == 1 {
            ReplayCheck::Fresh
        } else {
            ReplayCheck::Replayed
        })
    }

    fn replay_sweep(&self, now: i64) -> Result<usize, StoreError> {
        let n = self.with(|c| {
            c.execute_typed("DELETE FROM replay WHERE expires_at <= $1", &[int8(&now)])
                .map_err(db_error)
        })?;
        Ok(n as usize)
    }

    fn session_put(&self, rec: &SessionRecord, _idle_seconds: i64) -> Result<(), StoreError> {
        let doc = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // One statement (atomic on its own, no BEGIN/COMMIT): an overwrite can restrict the
        // session, so it moves the shared generation (see Store::generation); an insert not.
        let inserted: bool = self.with(|c| {
            Ok(c.query_typed_one(
                "WITH up AS ( \
                   INSERT INTO sessions (id, doc) VALUES ($1, $2::text::jsonb) \
                   ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc \
                   RETURNING (xmax = 0) AS inserted), \
                 bump AS ( \
                   UPDATE store_generation SET n = n + 1 \
                   WHERE id = 1 AND EXISTS (SELECT 1 FROM up WHERE NOT inserted) \
                   RETURNING pg_notify('samlgate_generation', n::text)) \
                 SELECT inserted, (SELECT count(*) FROM bump) FROM up",
                &[text(&rec.id), text(&doc)],
            )
            .map_err(db_error)?
            .get(0))
        })?;
        let replaced = !inserted;
        if replaced {
            self.gen.bump();
        }
        Ok(())
    }

    fn session_get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let doc: Option<String> = self.with(|c| {
            Ok(
                c.query_typed_opt("SELECT doc::text FROM sessions WHERE id = $1", &[text(&id)])
                    .map_err(db_error)?
                    .map(|r| r.get(0)),
            )
        })?;
        doc.as_deref().map(decode_session).transpose()
    }

    fn session_touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute_typed(
                "UPDATE sessions SET doc = jsonb_set(doc, '{last_seen}', to_jsonb($2::bigint)) \
                 WHERE id = $1",
                &[text(&id), int8(&now)],
            )
            .map_err(db_error)
        })?;
        Ok(())
    }

    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        let gone = self.tx(|tx| {
            let n = tx
                .execute_typed("DELETE FROM sessions WHERE id = $1", &[text(&id)])
                .map_err(db_error)?;
            if n > 0 {
                bump_generation(tx)?;
            }
            Ok(n > 0)
        })?;
        if gone {
            self.gen.bump();
        }
        Ok(gone)
    }

    fn session_sweep(&self, now: i64, idle_seconds: i64) -> Result<usize, StoreError> {
        let idle_before = now.saturating_sub(idle_seconds);
        let n = self.tx(|tx| {
            // ends_at(idle) <= now  <=>  expires <= now, or last_seen + idle <= now.
            let n = tx
                .execute_typed(
                    "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen <= $2",
                    &[int8(&now), int8(&idle_before)],
                )
                .map_err(db_error)?;
            if n > 0 {
                bump_generation(tx)?;
            }
            Ok(n)
        })?;
        if n > 0 {
            self.gen.bump();
        }
        Ok(n as usize)
    }

    fn session_count(&self) -> usize {
        self.with(|c| {
            let n: i64 = c
                .query_one("SELECT count(*) FROM sessions", &[])
                .map_err(db_error)?
                .get(0);
            Ok(n.max(0) as usize)
        })
        .unwrap_or(0)
    }

    fn expired_sweep(&self, t: Table, now: i64) -> Result<usize, StoreError> {
        // One indexed DELETE (expires_at is generated from the record's `expires`; NULL when
        // the record is unreadable, and btree indexes answer IS NULL too).
        let sql = match t {
            Table::Pending => {
                "DELETE FROM pending_logins WHERE expires_at <= $1 OR expires_at IS NULL"
            }
            Table::Requests => {
                "DELETE FROM authn_requests WHERE expires_at <= $1 OR expires_at IS NULL"
            }
            _ => return Ok(0),
        };
        let n = self.with(|c| c.execute_typed(sql, &[int8(&now)]).map_err(db_error))?;
        Ok(n as usize)
    }

    fn sessions_matching(
        &self,
        pred: &dyn Fn(&SessionRecord) -> bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let docs: Vec<String> = self.with(|c| {
            let rows = c
                .query("SELECT doc::text FROM sessions", &[])
                .map_err(db_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        let mut out = Vec::new();
        for d in docs {
            if let Ok(rec) = decode_session(&d) {
                if pred(&rec) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    fn sessions_by_name_id(&self, name_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_where("name_id", name_id)
    }

    fn sessions_by_account(&self, account_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_where("account_id", account_id)
    }

    fn sessions_by_local_user(&self, local_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_where("local_user_id", local_id)
    }

    fn secret_get_or_create(
        &self,
        name: &str,
        make: &dyn Fn() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let get = || {
            self.with(|c| {
                Ok(
                    c.query_typed_opt("SELECT value FROM secrets WHERE name = $1", &[text(&name)])
                        .map_err(db_error)?
                        .map(|r| r.get::<_, Vec<u8>>(0)),
                )
            })
        };
        if let Some(v) = get()? {
            return Ok(v);
        }
        let fresh = make();
        // First writer wins: a concurrent creator's value stays, and both return it.
        self.with(|c| {
            c.execute_typed(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[text(&name), (&fresh, Type::BYTEA)],
            )
            .map_err(db_error)
        })?;
        get()?.ok_or_else(|| StoreError::Io("secret vanished".into()))
    }

    fn generation(&self) -> u64 {
        self.gen.read()
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every acknowledged write was a COMMIT with synchronous_commit=on.
        Ok(())
    }

    fn account(&self, gmis_id: &str, contact: Option<&[u8]>) -> Result<AccountRows, StoreError> {
        self.account_rows(gmis_id, contact)
    }

    fn replay_and_account(
        &self,
        replay_key: &str,
        expires: i64,
        now: i64,
        gmis_id: &str,
        contact: Option<&[u8]>,
    ) -> Result<Option<AccountRows>, StoreError> {
        self.replay_then_account(replay_key, expires, now, gmis_id, contact)
    }

    fn commit(&self, c: &Commit) -> Result<bool, StoreError> {
        self.commit_all(c)
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = Key::new(spec(t).kind, key)?;
        Ok(self.with(|c| get_in(c, t, &k))?.map(String::into_bytes))
    }

    fn get_versioned(&self, t: Table, key: &[u8]) -> Result<crate::store::Versioned, StoreError> {
        self.versioned_row(t, key)
    }

    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        let prepared = prepare(writes)?;
        // Lock every key the batch writes, in one order (no deadlock between batches, nor with
        // a commit, which takes them in the same order): a guarded commit that read one of
        // these keys sees this batch whole or not at all.
        let mut locks: Vec<i64> = writes.iter().map(|(t, k, _)| lock_id(*t, k)).collect();
        locks.sort_unstable();
        locks.dedup();
        let restricts = writes.iter().any(|(t, _, _)| t.restricts_sessions());
        self.tx(|tx| {
            // In array order (WITH ORDINALITY keeps it): one round trip for all the keys.
            tx.execute_typed(
                "SELECT count(pg_advisory_xact_lock(k)) \
                 FROM unnest($1::int8[]) WITH ORDINALITY AS t(k, i)",
                &[(&locks, Type::INT8_ARRAY)],
            )
            .map_err(db_error)?;
            for w in &prepared {
                write_in(tx, w)?;
            }
            if restricts {
                bump_generation(tx)?;
            }
            Ok(())
        })?;
        // COMMIT returned (synchronous_commit=on): durable.
        if restricts {
            self.gen.bump();
        }
        Ok(())
    }

    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let s = spec(t);
        let order = if rev { "DESC" } else { "ASC" };
        let lim = i64::try_from(limit).unwrap_or(i64::MAX);
        let (filter, param): (&str, Option<Key>) = match s.kind {
            _ if prefix.is_empty() => ("TRUE", None),
            KeyKind::Text => (
                "starts_with({k}, $2)",
                Some(Key::new(KeyKind::Text, prefix)?),
            ),
            KeyKind::Bytes => (
                "substring({k} from 1 for length($2)) = $2",
                Some(Key::Bytes(prefix.to_vec())),
            ),
            // Sequence keys have no useful prefix but the whole key.
            KeyKind::Seq => ("{k} = $2", Some(Key::new(KeyKind::Seq, prefix)?)),
        };
        let sql = format!(
            "SELECT {k}, {v} FROM {t} WHERE {f} ORDER BY {k} {order} LIMIT $1",
            f = filter.replace("{k}", s.key),
            k = s.key,
            v = s.value,
            t = s.table,
        );
        self.with(|c| {
            let rows = match &param {
                None => c.query_typed(sql.as_str(), &[int8(&lim)]),
                Some(p) => c.query_typed(sql.as_str(), &[int8(&lim), p.typed()]),
            }
            .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|r| (key_bytes(s.kind, r), r.get::<_, String>(1).into_bytes()))
                .collect())
        })
    }

    fn next_seq(&self) -> Result<u64, StoreError> {
        let n: i64 = self.with(|c| {
            Ok(c.query_typed_one("SELECT nextval('audit_seq')", &[])
                .map_err(db_error)?
                .get(0))
        })?;
        Ok(n as u64)
    }

    fn seq_floor(&self, min: u64) -> Result<(), StoreError> {
        let min =
            i64::try_from(min).map_err(|_| StoreError::Corrupt("sequence too large".into()))?;
        self.with(|c| {
            c.execute(
                "SELECT setval('audit_seq', greatest($1, (SELECT last_value FROM audit_seq)))",
                &[&min.max(1)],
            )
            .map_err(db_error)
        })?;
        Ok(())
    }

    fn dump_state(
        &self,
        out: &mut dyn FnMut(Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use base64::Engine as _;
        let mut c = self.pool.get()?;
        for r in c
            .query("SELECT doc::text FROM sessions ORDER BY id", &[])
            .map_err(db_error)?
        {
            out(Item::Session {
                record: Box::new(decode_session(r.get(0))?),
            })?;
        }
        let rows = c
            .query(
                "SELECT idp, assertion_id, kind, expires_at FROM replay",
                &[],
            )
            .map_err(db_error)?;
        for r in rows {
            out(Item::Replay {
                key: tables::replay_key(r.get(0), r.get(1), r.get(2)),
                expires: r.get(3),
            })?;
        }
        for r in c
            .query("SELECT name, value FROM secrets ORDER BY name", &[])
            .map_err(db_error)?
        {
            out(Item::Secret {
                name: r.get(0),
                value_b64: base64::engine::general_purpose::STANDARD.encode(r.get::<_, Vec<u8>>(1)),
            })?;
        }
        Ok(())
    }
}
