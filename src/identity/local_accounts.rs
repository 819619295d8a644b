//! Storage of local ID/password accounts ([`Account`]) and their reset tickets, over the
//! store's record tables. The account's key is the local user id of its
//! [`super::users::User`]: one person is one user, whether they come by G-MIS or by password.
//!
//! Every write of an account is guarded by the version it was read at, so two processes (two
//! gateways on PostgreSQL, the CLI beside a gateway) cannot lose each other's throttle count
//! or undo a reset: the loser reads again.

use crate::accounts::account::Account;
use crate::accounts::reset::{token_hash, ResetKind, ResetTicket};
use crate::store::{Commit, Store, StoreError, Table, Versioned, Write};

/// An account as read, with the version that guards its next write.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub account: Account,
    pub read: Versioned,
}

pub fn get(store: &dyn Store, user_id: &str) -> Result<Option<Loaded>, StoreError> {
    let (account, read) = super::load_versioned(store, Table::Accounts, user_id)?;
    Ok(account.map(|account| Loaded { account, read }))
}

/// Every account, in user id order (the 事務局's list; a few thousand at most).
pub fn list(store: &dyn Store) -> Result<Vec<Account>, StoreError> {
    super::load_all(store, Table::Accounts)
}

/// The write that stores `a`.
pub fn put(a: &Account) -> Write {
    super::put(Table::Accounts, &a.user_id, a)
}

/// Stores `a` with `extra` writes (audit line, ticket removal) in one commit, if the stored
/// record is still as `prev` read it (`None`: there is none yet). `Ok(false)`: someone else
/// wrote it first, nothing was written.
pub fn save(
    store: &dyn Store,
    a: &Account,
    prev: Option<&Loaded>,
    extra: Vec<Write>,
) -> Result<bool, StoreError> {
    let mut w = vec![put(a)];
    w.extend(extra);
    let read = match prev {
        Some(l) => l.read.clone(),
        None => Versioned::absent(Table::Accounts, a.user_id.as_bytes()),
    };
    store.commit(&Commit::guarded(&read, w))
}

/// The store key of a ticket: a link by its token's hash, a 事務局 code by its user id (one
/// outstanding code per account; a new one replaces the old).
pub fn ticket_key(t: &ResetTicket) -> String {
    match t.kind {
        ResetKind::MailLink => format!("link:{}", t.key()),
        ResetKind::SecretariatCode => format!("code:{}", t.user_id),
    }
}

pub fn put_ticket(t: &ResetTicket) -> Write {
    super::put(Table::ResetTickets, &ticket_key(t), t)
}

/// The write that consumes a ticket (in the same batch as the new password).
pub fn delete_ticket(key: &str) -> Write {
    (Table::ResetTickets, key.as_bytes().to_vec(), None)
}

/// The ticket a mailed token names, if any (looked up by the token's hash).
pub fn link_ticket(
    store: &dyn Store,
    token: &str,
) -> Result<Option<(String, ResetTicket)>, StoreError> {
    let key = format!("link:{}", token_hash(token, ResetKind::MailLink));
    Ok(super::load(store, Table::ResetTickets, &key)?.map(|t| (key, t)))
}

/// The outstanding 事務局 reset code of an account, if any.
pub fn code_ticket(
    store: &dyn Store,
    user_id: &str,
) -> Result<Option<(String, ResetTicket)>, StoreError> {
    let key = format!("code:{user_id}");
    Ok(super::load(store, Table::ResetTickets, &key)?.map(|t| (key, t)))
}

/// Deletes expired tickets; returns how many. Each is judged on a versioned read and deleted
/// only if still at that version (a ticket written under the key meanwhile stays).
pub fn sweep_tickets(store: &dyn Store, now: i64) -> Result<usize, StoreError> {
    let mut n = 0;
    for (k, _) in store.scan(Table::ResetTickets, b"", false, usize::MAX)? {
        let read = store.get_versioned(Table::ResetTickets, &k)?;
        let Some(v) = &read.value else { continue };
        let dead = serde_json::from_slice::<ResetTicket>(v).map_or(true, |t| t.expires_at <= now);
        if dead
            && store.commit(&Commit::guarded(
                &read,
                vec![(Table::ResetTickets, k.clone(), None)],
            ))?
        {
            n += 1;
        }
    }
    Ok(n)
}
