//! How each record [`Table`] maps onto a typed PostgreSQL table: its name, its key column and
//! the key's type, and the value column. Values are UTF-8 (JSON records, or a user id).

use postgres::types::{ToSql, Type};

use crate::store::{StoreError, Table};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// text COLLATE "C" (no NUL bytes)
    Text,
    /// bytea (the contact index key holds a NUL)
    Bytes,
    /// bigint; the store key is its 8 big-endian bytes (audit sequence numbers)
    Seq,
}

pub struct Spec {
    pub table: &'static str,
    pub key: &'static str,
    pub kind: KeyKind,
    pub value: &'static str,
}

pub fn spec(t: Table) -> Spec {
    let (table, key, kind, value) = match t {
        Table::Users => ("users", "id", KeyKind::Text, "doc"),
        Table::UserByGmis => ("user_links", "gmis_id", KeyKind::Text, "user_id"),
        Table::Consents => ("consents", "gmis_id", KeyKind::Text, "doc"),
        Table::Applications => ("applications", "gmis_id", KeyKind::Text, "doc"),
        Table::Pending => ("pending_logins", "id", KeyKind::Text, "doc"),
        Table::Audit => ("audit", "seq", KeyKind::Seq, "doc"),
        Table::Requests => ("authn_requests", "id", KeyKind::Text, "doc"),
        Table::UserByContact => ("user_contacts", "contact", KeyKind::Bytes, "user_id"),
        Table::Accounts => ("accounts", "user_id", KeyKind::Text, "doc"),
        Table::ResetTickets => ("reset_tickets", "id", KeyKind::Text, "doc"),
        Table::LoginSteps => ("login_steps", "id", KeyKind::Text, "doc"),
        Table::Settings => ("settings", "name", KeyKind::Text, "doc"),
    };
    Spec {
        table,
        key,
        kind,
        value,
    }
}

/// A store key as a query parameter of the key column's type.
pub enum Key {
    Text(String),
    Bytes(Vec<u8>),
    Seq(i64),
}

impl Key {
    pub fn new(kind: KeyKind, k: &[u8]) -> Result<Key, StoreError> {
        match kind {
            KeyKind::Text => {
                let s = std::str::from_utf8(k)
                    .map_err(|_| StoreError::Corrupt("key is not UTF-8".into()))?;
                if s.contains('\0') {
                    return Err(StoreError::Corrupt("key contains NUL".into()));
                }
                Ok(Key::Text(s.to_owned()))
            }
            KeyKind::Bytes => Ok(Key::Bytes(k.to_vec())),
            KeyKind::Seq => {
                let arr: [u8; 8] = k
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("audit key is not 8 bytes".into()))?;
                Ok(Key::Seq(i64::from_be_bytes(arr)))
            }
        }
    }

    /// The key as a typed statement parameter.
    pub fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
        match self {
            Key::Text(s) => (s, Type::TEXT),
            Key::Bytes(b) => (b, Type::BYTEA),
            Key::Seq(i) => (i, Type::INT8),
        }
    }
}

/// The store key of a row's key column (column 0).
pub fn key_bytes(kind: KeyKind, row: &postgres::Row) -> Vec<u8> {
    match kind {
        KeyKind::Text => row.get::<_, String>(0).into_bytes(),
        KeyKind::Bytes => row.get::<_, Vec<u8>>(0),
        KeyKind::Seq => row.get::<_, i64>(0).to_be_bytes().to_vec(),
    }
}

pub fn value_text(v: &[u8]) -> Result<&str, StoreError> {
    let s = std::str::from_utf8(v).map_err(|_| StoreError::Corrupt("value is not UTF-8".into()))?;
    if s.contains('\0') {
        return Err(StoreError::Corrupt("value contains NUL".into()));
    }
    Ok(s)
}

/// A lock id for one record (pg_advisory_xact_lock): guarded batches lock every key they
/// read or write, in order, so a guard and the writes it protects are one atomic step.
pub fn lock_id(t: Table, k: &[u8]) -> i64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(t.name().as_bytes());
    h.update([0]);
    h.update(k);
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Splits a replay key `kind NUL idp NUL id` into (idp, id, kind); any other shape is kept
/// whole as the id with an empty idp and kind.
pub fn replay_parts(key: &str) -> (String, String, String) {
    let mut it = key.splitn(3, '\0');
    match (it.next(), it.next(), it.next()) {
        (Some(kind), Some(idp), Some(id)) => (idp.into(), id.into(), kind.into()),
        _ => (String::new(), key.into(), String::new()),
    }
}

/// The inverse of [`replay_parts`].
pub fn replay_key(idp: &str, id: &str, kind: &str) -> String {
    if kind.is_empty() && idp.is_empty() {
        id.into()
    } else {
        format!("{kind}\0{idp}\0{id}")
    }
}
