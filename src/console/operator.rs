//! Who is at the console: a local account of role `secretariat` that logged in with its
//! password and a second factor. The login itself is [`crate::local_login`]'s (the same
//! throttle, lock and audit lines as `/login`); this module adds the role check and the
//! console's own login, kept in a sealed cookie scoped to `/console/`.
//!
//! The cookie is sealed with the store's session key (shared by every instance), so a console
//! behind two gateways keeps its operator; it holds the operator, the forms' CSRF token, the
//! language and two times. Every request checks the idle and absolute limits and reads the
//! account again: a disabled account or a lost role ends the console login at once.

use serde::{Deserialize, Serialize};

use crate::accounts::account::Role;
use crate::identity::local_accounts as la;
use crate::session::SessionCodec;
use crate::store::{Store, StoreError};

use super::ConsoleConfig;

/// The MAC purpose of the console cookie: a session or step token never opens as one.
const PURPOSE: &str = "console-v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorLogin {
    /// The operator's local account id (the name in the audit lines).
    pub operator: String,
    /// The console forms' CSRF token (random per login; the cookie is HttpOnly).
    pub csrf: String,
    /// Unix seconds.
    pub created: i64,
    pub last_seen: i64,
    /// "ja" or "en".
    pub lang: String,
}

/// Why a console cookie does not let its bearer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// No cookie, or not ours.
    Absent,
    /// Idle longer than `[console] idle_timeout_seconds`.
    Idle,
    /// Older than `[console] max_hours`.
    TooOld,
    /// The account is gone, disabled, or no longer of role secretariat.
    NotAllowed,
}

impl OperatorLogin {
    pub fn new(operator: &str, lang: &str, now: i64) -> OperatorLogin {
        OperatorLogin {
            operator: operator.to_string(),
            csrf: crate::session::random_id(),
            created: now,
            last_seen: now,
            lang: lang.to_string(),
        }
    }

    pub fn seal(&self, codec: &SessionCodec) -> String {
        codec.seal_data(PURPOSE, &serde_json::to_vec(self).expect("serialize"))
    }

    /// The login in `token`, if it is ours and within both limits, touched to `now`.
    pub fn open(
        codec: &SessionCodec,
        token: &str,
        cfg: &ConsoleConfig,
        now: i64,
    ) -> Result<OperatorLogin, Gone> {
        let raw = codec.open_data(PURPOSE, token).ok_or(Gone::Absent)?;
        let mut l: OperatorLogin = serde_json::from_slice(&raw).map_err(|_| Gone::Absent)?;
        if now - l.last_seen > cfg.idle_timeout_seconds as i64 {
            return Err(Gone::Idle);
        }
        if now - l.created > cfg.max_hours as i64 * 3600 {
            return Err(Gone::TooOld);
        }
        l.last_seen = now;
        Ok(l)
    }
}

/// Whether `user_id` may use the console now: an enabled account of role secretariat.
pub fn allowed(store: &dyn Store, user_id: &str) -> Result<bool, StoreError> {
    Ok(la::get(store, user_id)?
        .is_some_and(|l| l.account.role == Role::Secretariat && !l.account.disabled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> SessionCodec {
        SessionCodec::new(vec![7; 32], false)
    }

    #[test]
    fn the_cookie_opens_within_its_limits_only() {
        let cfg = ConsoleConfig {
            idle_timeout_seconds: 60,
            max_hours: 1,
        };
        let c = codec();
        let l = OperatorLogin::new("suzuki", "ja", 1000);
        let t = l.seal(&c);
        let back = OperatorLogin::open(&c, &t, &cfg, 1059).unwrap();
        assert_eq!((back.operator.as_str(), back.last_seen), ("suzuki", 1059));
        assert_eq!(OperatorLogin::open(&c, &t, &cfg, 1061), Err(Gone::Idle));
        let mut busy = l.clone();
        busy.last_seen = 1000 + 3600;
        let t2 = busy.seal(&c);
        assert_eq!(
            OperatorLogin::open(&c, &t2, &cfg, 1000 + 3601),
            Err(Gone::TooOld)
        );
        // Another key, a session token or a flipped byte: not a console login.
        let other = SessionCodec::new(vec![8; 32], false);
        assert_eq!(
            OperatorLogin::open(&other, &t, &cfg, 1001),
            Err(Gone::Absent)
        );
        assert_eq!(
            OperatorLogin::open(&c, &c.seal("sessionid"), &cfg, 1001),
            Err(Gone::Absent)
        );
        let mut bad = t.clone().into_bytes();
        bad[12] ^= 1;
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(OperatorLogin::open(&c, &bad, &cfg, 1001), Err(Gone::Absent));
    }
}
