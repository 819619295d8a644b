//! Password reset secrets: the mailed link's token, the 事務局's reset code, and the one-time
//! initial password the 事務局 issues with a new account. Tokens and codes are kept only as
//! SHA-256 hashes with an expiry; a ticket is consumed by redeeming it.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::password::Password;
use super::{ct_eq, normalise_code, readable_code, sha256_hex, Message};

/// Config `[local.reset]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResetConfig {
    /// Life of a mailed link: long enough to reach a mailbox, short enough that an old mail
    /// found later is useless.
    pub link_ttl_secs: u64,
    /// Life of a reset code issued by the 事務局 (read out on the phone, used at once).
    pub code_ttl_secs: u64,
    /// Life of an initial (or reset-by-事務局) one-time password before first use: it travels
    /// by letter or mail to a facility and may wait some days.
    pub initial_ttl_secs: u64,
    /// Reset links mailed to one account per hour at most: "forgot password" cannot be used
    /// to flood a person's mailbox. Further requests get the same page and no mail.
    pub link_mails_per_hour: u32,
    /// `POST /login/forgot` per client address: this many at once, then `ip_per_minute`
    /// (a person needs one or two; a script asking for every id gets few answers).
    pub ip_burst: u32,
    pub ip_per_minute: u32,
}

impl Default for ResetConfig {
    fn default() -> Self {
        ResetConfig {
            link_ttl_secs: 30 * 60,
            code_ttl_secs: 30 * 60,
            initial_ttl_secs: 14 * 86400,
            link_mails_per_hour: 3,
            ip_burst: 5,
            ip_per_minute: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetKind {
    /// 256-bit token in a mailed link.
    MailLink,
    /// 16 readable characters issued by the 事務局 with `accounts reset`.
    SecretariatCode,
}

/// What is stored for one outstanding reset. The store keys it by `key()` (link) or by user
/// id (code), and deletes it in the same write that sets the new password: single use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetTicket {
    pub user_id: String,
    pub kind: ResetKind,
    token_hash: String,
    pub issued_at: i64,
    pub expires_at: i64,
    /// A link is good only while the account's `password_version` is still this one.
    #[serde(default)]
    pub password_version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    #[error("reset token or code does not match")]
    Wrong,
    #[error("reset token or code has expired")]
    Expired,
}

impl ResetError {
    pub fn message(&self) -> Message {
        // One message for both: a wrong link and an old one lead to the same way forward.
        match self {
            ResetError::Wrong | ResetError::Expired => {
                Message::of(crate::reason::Reason::LocalResetLinkInvalid)
            }
        }
    }
}

/// The store key and the comparison form of a presented token or code.
pub fn token_hash(presented: &str, kind: ResetKind) -> String {
    match kind {
        // Link tokens are exact (base64url); codes are typed by people, so fold them.
        ResetKind::MailLink => sha256_hex(presented.trim().as_bytes()),
        ResetKind::SecretariatCode => sha256_hex(normalise_code(presented).as_bytes()),
    }
}

impl ResetTicket {
    /// A mailed-link ticket: returns the token for the URL (43 base64url chars) and the
    /// ticket to store.
    /// `password_version` is the account's now: a later password change voids the link.
    pub fn issue_link(
        user_id: &str,
        password_version: u64,
        now: i64,
        cfg: &ResetConfig,
    ) -> (String, ResetTicket) {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut t = Self::new(user_id, ResetKind::MailLink, &token, now, cfg.link_ttl_secs);
        t.password_version = password_version;
        (token, t)
    }

    /// A 事務局 reset code (`xxxx-xxxx-xxxx-xxxx`, 79 bits) and the ticket to store.
    pub fn issue_code(user_id: &str, now: i64, cfg: &ResetConfig) -> (String, ResetTicket) {
        let code = readable_code(4, 4);
        let kind = ResetKind::SecretariatCode;
        let t = Self::new(user_id, kind, &code, now, cfg.code_ttl_secs);
        (code, t)
    }

    fn new(user_id: &str, kind: ResetKind, secret: &str, now: i64, ttl: u64) -> ResetTicket {
        ResetTicket {
            user_id: user_id.to_string(),
            kind,
            token_hash: token_hash(secret, kind),
            issued_at: now,
            expires_at: now.saturating_add(ttl as i64),
            password_version: 0,
        }
    }

    /// The store key of a link ticket (the hash, never the token).
    pub fn key(&self) -> &str {
        &self.token_hash
    }

    /// Consumes the ticket: the user id whose password may now be set, if `presented` is its
    /// secret and it has not expired.
    pub fn redeem(self, presented: &str, now: i64) -> Result<String, ResetError> {
        let ok = ct_eq(&token_hash(presented, self.kind), &self.token_hash);
        if !ok {
            return Err(ResetError::Wrong);
        }
        if now >= self.expires_at {
            return Err(ResetError::Expired);
        }
        Ok(self.user_id)
    }
}

/// The reset links mailed to one account in the current hour (stored on the account, so every
/// gateway instance counts the same mails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetMailRate {
    pub window_start: i64,
    pub sent: u32,
}

impl ResetMailRate {
    /// Counts one more mail if the hour's allowance has room; `false`: send none.
    pub fn allow(&mut self, now: i64, per_hour: u32) -> bool {
        if now - self.window_start >= 3600 || now < self.window_start {
            *self = ResetMailRate {
                window_start: now,
                sent: 0,
            };
        }
        if self.sent >= per_hour {
            return false;
        }
        self.sent += 1;
        true
    }
}

/// A one-time initial password (`xxxx-xxxx-xxxx-xxxx-xxxx`, 24 characters, ~99 bits) that the
/// 事務局 hands over: no ambiguous characters, and always a letter, a digit and a symbol ('-'),
/// so it passes the policy even in the strict profile without a second factor.
pub fn initial_password() -> Password {
    loop {
        let s = readable_code(5, 4);
        let letter = s.bytes().any(|b| b.is_ascii_lowercase());
        let digit = s.bytes().any(|b| b.is_ascii_digit());
        if letter && digit {
            return Password::new(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::policy::{Blocklist, Context, PolicyConfig, Profile};

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn link_token_redeems_once_before_expiry() {
        let cfg = ResetConfig::default();
        let (token, t) = ResetTicket::issue_link("u1", 0, NOW, &cfg);
        assert_eq!(token.len(), 43);
        assert_eq!(t.expires_at, NOW + 1800);
        assert_eq!(t.key(), token_hash(&token, ResetKind::MailLink));
        // Stored form holds neither the token nor anything it can be read from.
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains(&token));
        assert_eq!(t.clone().redeem(&token, NOW + 1799), Ok("u1".into()));
        assert_eq!(
            t.clone().redeem(&token, NOW + 1800),
            Err(ResetError::Expired)
        );
        let mut other = token.clone();
        other.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
        assert_eq!(t.redeem(&other, NOW), Err(ResetError::Wrong));
    }

    #[test]
    fn link_tokens_are_random() {
        let cfg = ResetConfig::default();
        let (a, _) = ResetTicket::issue_link("u1", 0, NOW, &cfg);
        let (b, _) = ResetTicket::issue_link("u1", 0, NOW, &cfg);
        assert_ne!(a, b);
    }

    #[test]
    fn secretariat_code_is_forgiving_in_form_only() {
        let cfg = ResetConfig::default();
        let (code, t) = ResetTicket::issue_code("u2", NOW, &cfg);
        assert_eq!(code.len(), 19);
        let typed = code.replace('-', " ").to_uppercase();
        assert_eq!(t.clone().redeem(&typed, NOW + 60), Ok("u2".into()));
        assert_eq!(
            t.clone().redeem(&code, NOW + 1800),
            Err(ResetError::Expired)
        );
        assert_eq!(t.redeem("2222-2222-2222-2222", NOW), Err(ResetError::Wrong));
    }

    #[test]
    fn initial_passwords_pass_the_strictest_policy_and_are_readable() {
        let strict = PolicyConfig {
            profile: Profile::Strict,
            ..PolicyConfig::default()
        };
        let cx = Context {
            user_id: "u1",
            second_factor: false,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = initial_password();
            assert_eq!(p.chars(), 24);
            assert!(
                !p.expose().contains(['0', '1', 'i', 'l', 'o']),
                "{}",
                p.expose()
            );
            let r = strict.check(&p, &cx, Blocklist::builtin());
            assert!(r.is_empty(), "{}: {r:?}", p.expose());
            assert!(seen.insert(p.expose().to_string()));
        }
    }

    #[test]
    fn link_mails_per_account_are_limited_per_hour() {
        let mut r = ResetMailRate::default();
        assert!(r.allow(NOW, 3));
        assert!(r.allow(NOW + 10, 3));
        assert!(r.allow(NOW + 20, 3));
        assert!(!r.allow(NOW + 3599, 3), "a 4th mail within the hour");
        assert!(r.allow(NOW + 3600, 3), "a new hour");
        assert!(!ResetMailRate::default().allow(NOW, 0));
    }

    #[test]
    fn a_link_carries_the_password_version_it_was_issued_for() {
        let (_, t) = ResetTicket::issue_link("u1", 7, NOW, &ResetConfig::default());
        assert_eq!(t.password_version, 7);
    }

    #[test]
    fn expired_and_wrong_share_one_message() {
        assert_eq!(ResetError::Wrong.message(), ResetError::Expired.message());
        assert!(ResetError::Wrong.message().ja.contains("事務局"));
    }
}
