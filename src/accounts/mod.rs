//! Local 医療情報ネット ID/password accounts (issue 13): the domain core, free of I/O.
//!
//! Each module is a pure piece that the store and web layers wire together:
//! - [`password`]: argon2id hashing (PHC strings), rehash on rising parameters, dummy verify;
//! - [`policy`]: password rules (length by factor count, blocklist, optional strict profile);
//! - [`totp`]: RFC 6238 codes, enrolment QR (SVG), replay guard, recovery codes;
//! - [`throttle`]: per-account delay and lockout, per-client-IP token bucket;
//! - [`reset`]: one-time reset tokens and codes, the secretariat's initial passwords;
//! - [`account`]: the stored record and the login state machine.
//!
//! Time is always passed in (`now`, unix seconds), so every decision is testable.
//! See docs/ACCOUNTS.md for the design and why the defaults are what they are.

pub mod account;
pub mod password;
pub mod policy;
pub mod reset;
pub mod throttle;
pub mod totp;

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A message for people, Japanese first then English (the page shows both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub ja: String,
    pub en: String,
}

impl Message {
    /// The reason's own message (`Reason::message`, the one table of wordings).
    pub fn of(reason: crate::reason::Reason) -> Message {
        let (ja, en) = reason.message();
        Message {
            ja: ja.into(),
            en: en.into(),
        }
    }
}

/// Characters that cannot be misread or mistyped: no 0/o, 1/l/i, no case (codes are read
/// aloud by the 事務局 on the phone and typed on a form that says "case-sensitive").
pub(crate) const READABLE: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// `groups` groups of `len` readable characters joined by '-', from the OS CSPRNG.
pub(crate) fn readable_code(groups: usize, len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    let parts: Vec<String> = (0..groups)
        .map(|_| {
            (0..len)
                .map(|_| READABLE[rng.gen_range(0..READABLE.len())] as char)
                .collect()
        })
        .collect();
    parts.join("-")
}

/// What a person typed for a readable code, in the form it was hashed: lower case, without
/// separators or spaces (full-width input is folded by NFKC first).
pub(crate) fn normalise_code(input: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    input
        .nfkc()
        .filter(|c| !matches!(c, '-' | ' ' | '\u{3000}'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Lower-case hex SHA-256: how one-time secrets with ≥ 79 bits of entropy are stored (a
/// slow hash buys nothing against a search space that large).
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two digests without an early exit, so response time says nothing about how many
/// leading characters matched.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_codes_use_only_the_unambiguous_alphabet() {
        let c = readable_code(4, 4);
        assert_eq!(c.len(), 19);
        assert_eq!(c.matches('-').count(), 3);
        for ch in c.chars().filter(|c| *c != '-') {
            assert!(READABLE.contains(&(ch as u8)), "{ch} in {c}");
            assert!(!"01ilo".contains(ch));
        }
        assert_ne!(readable_code(4, 4), readable_code(4, 4));
    }

    #[test]
    fn codes_normalise_full_width_case_and_separators() {
        assert_eq!(normalise_code("ＡＢ２３-cd　45 "), "ab23cd45");
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
    }
}
