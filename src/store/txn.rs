//! The typed read and the transaction of a login (issue 17 §1): one snapshot of the account's
//! rows, each with a version, and one commit of everything the decision calls for, guarded by
//! every row the decision read.

use super::{SessionRecord, Table, Write};

/// A record's version. It changes with every write of the record, and "absent" is a version
/// of its own, so a guard on it also catches a delete followed by a rewrite. PostgreSQL: the
/// row's `xmin` (the writing transaction; a rewrite is a new row version). sled: a digest of
/// the stored bytes, compared inside the transaction that writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub(crate) u64);

impl Version {
    pub const ABSENT: Version = Version(0);

    pub fn is_absent(self) -> bool {
        self == Version::ABSENT
    }

    /// The sled version of a stored value: 64 bits of its SHA-256, never 0.
    pub(crate) fn of_bytes(v: &[u8]) -> Version {
        use sha2::Digest;
        let d = sha2::Sha256::digest(v);
        Version(u64::from_be_bytes(d[..8].try_into().expect("8 bytes")).max(1))
    }
}

/// One record as read: its key, its value (`None`: absent) and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub table: Table,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub version: Version,
}

impl Versioned {
    pub fn absent(table: Table, key: &[u8]) -> Versioned {
        Versioned {
            table,
            key: key.to_vec(),
            value: None,
            version: Version::ABSENT,
        }
    }

    /// The guard that this record is still as read.
    pub fn expect(&self) -> Expectation {
        Expectation {
            table: self.table,
            key: self.key.clone(),
            version: self.version,
        }
    }

    pub fn text(&self) -> Option<String> {
        self.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// What a login decision reads about one G-MIS account, in one call ([`super::Store::account`]):
/// the consent, the SSO application, the link and the user it names, the user whose id is the
/// G-MIS id, the user the application's `link_to` names, and the local account found by
/// facility code and mail. Absent rows are here too (with [`Version::ABSENT`]): the decision
/// depends on their absence as much as on a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRows {
    pub gmis_id: String,
    pub consent: Versioned,
    pub application: Versioned,
    /// `user_by_gmis[gmis_id]`: the local user id linked to this G-MIS account.
    pub link: Versioned,
    /// `users[link]`, when there is a link.
    pub linked_user: Option<Versioned>,
    /// `users[gmis_id]`.
    pub same_id: Versioned,
    /// `users[application.link_to]`, when the application names one.
    pub link_target: Option<Versioned>,
    /// `user_by_contact[contact]`, when a contact key was given.
    pub contact: Option<Versioned>,
    /// `users[contact]`, when the contact index names one.
    pub contact_user: Option<Versioned>,
}

impl AccountRows {
    /// Every row read, for the guard of the commit.
    pub fn rows(&self) -> impl Iterator<Item = &Versioned> {
        [&self.consent, &self.application, &self.link, &self.same_id]
            .into_iter()
            .chain(self.linked_user.iter())
            .chain(self.link_target.iter())
            .chain(self.contact.iter())
            .chain(self.contact_user.iter())
    }

    /// Guards for every row read.
    pub fn expectations(&self) -> Vec<Expectation> {
        self.rows().map(Versioned::expect).collect()
    }
}

/// A commit's guard: this record must still be at this version (absent: still absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub table: Table,
    pub key: Vec<u8>,
    pub version: Version,
}

/// Everything one decision writes, committed all or nothing ([`super::Store::commit`]).
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// Each must hold when the commit runs; if any does not, nothing is written.
    pub expect: Vec<Expectation>,
    /// Record writes (the user row, link, consent, audit line, ...); the last write of a key wins.
    pub writes: Vec<Write>,
    /// A new session (a fresh random id) and the idle limit in force.
    pub session: Option<(SessionRecord, i64)>,
    /// Sessions deleted in the same transaction (the browser's earlier sessions: no two live
    /// sessions in one browser, even after a crash).
    pub end_sessions: Vec<String>,
    /// Audit lines the store numbers in the same transaction ([`AUDIT_UNSEQUENCED`]): each gets
    /// the next [`super::Store::next_seq`] as its key and its `seq` field. Saves the separate
    /// sequence round trip of `audit::entry` on PostgreSQL.
    pub audit: Vec<Vec<u8>>,
}

/// How an unnumbered audit line for [`Commit::audit`] begins: a JSON object whose first member
/// is `"seq":0` (what `audit::AuditEntry` serialises to with `seq: 0`). The store replaces the
/// 0 with the number it assigns, so the stored bytes are what `audit::entry` would have written.
pub const AUDIT_UNSEQUENCED: &[u8] = b"{\"seq\":0,";

/// An audit line of [`Commit::audit`] with its number: `{"seq":N,...`.
pub(crate) fn sequenced(doc: &[u8], seq: u64) -> Result<Vec<u8>, super::StoreError> {
    let rest = doc.strip_prefix(AUDIT_UNSEQUENCED).ok_or_else(|| {
        super::StoreError::Corrupt("an audit line to number must begin with {\"seq\":0,".into())
    })?;
    let mut out = format!("{{\"seq\":{seq},").into_bytes();
    out.extend_from_slice(rest);
    Ok(out)
}

impl Commit {
    /// `writes`, committed only if `read` is still as it was read (its version unchanged;
    /// absent: still absent). The guarded form of [`super::Store::apply`].
    pub fn guarded(read: &Versioned, writes: Vec<Write>) -> Commit {
        Commit {
            expect: vec![read.expect()],
            writes,
            ..Commit::default()
        }
    }

    /// The writes with one entry per (table, key), the last one of each, in first-seen order.
    pub(crate) fn last_writes(&self) -> Vec<&Write> {
        let mut out: Vec<&Write> = Vec::with_capacity(self.writes.len());
        for w in &self.writes {
            match out.iter_mut().find(|o| o.0 == w.0 && o.1 == w.1) {
                Some(slot) => *slot = w,
                None => out.push(w),
            }
        }
        out
    }

    /// Whether the commit may end or restrict a session (moves [`super::Store::generation`]).
    /// A user row, link or contact entry that the guard proved absent and that the commit
    /// creates cannot: no session was decided on it. So a first login's registration leaves
    /// the generation (and every instance's session cache) alone; a refresh, link change,
    /// unlink, or any consent or application write moves it.
    pub(crate) fn restricts(&self) -> bool {
        self.writes.iter().any(|(t, k, v)| {
            let created = matches!(t, Table::Users | Table::UserByGmis | Table::UserByContact)
                && v.is_some()
                && self
                    .expect
                    .iter()
                    .any(|e| e.table == *t && e.key == *k && e.version.is_absent());
            t.restricts_sessions() && !created
        })
    }
}

/// The `link_to` field of an application record, without decoding the rest (the store reads
/// the row it names in the same snapshot).
pub(crate) fn link_to_of(application: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct LinkTo {
        #[serde(default)]
        link_to: Option<String>,
    }
    serde_json::from_slice::<LinkTo>(application)
        .ok()
        .and_then(|a| a.link_to)
        .filter(|s| !s.is_empty())
}
