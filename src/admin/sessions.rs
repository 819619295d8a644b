//! Ending an account's sessions after a block, revocation or unlink, so a later reopen or
//! re-approval cannot revive a session from before: the user logs in (and consents) again.

use super::error::AdminError;
use crate::store::Store;

/// Ends every session of a G-MIS account.
pub(crate) fn end_sessions(store: &dyn Store, gmis_id: &str) -> Result<usize, AdminError> {
    let mut n = 0;
    for s in store.sessions_by_account(gmis_id)? {
        if store.session_delete(&s.id)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Ends every session on a local account (whatever G-MIS account it was reached from).
pub(crate) fn end_local_sessions(store: &dyn Store, local_id: &str) -> Result<usize, AdminError> {
    let mut n = 0;
    for s in store.sessions_by_local_user(local_id)? {
        if store.session_delete(&s.id)? {
            n += 1;
        }
    }
    Ok(n)
}
