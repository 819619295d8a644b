//! Certificate expiry: every certificate the gateway depends on (IdP signing certificates, SP
//! keys, token keys, the TLS certificate) with its time left, and the one rule that turns time
//! left into a warning or a failure. `idp status`, `keys status`, `check-config`, `/readyz`
//! and `/metrics` all read this, so they cannot disagree.
//!
//! Why "expired" is red only for certificates in use: an IdP publishes its next certificate
//! beside the current one, and keeps an old one listed for a while after a switch (Salesforce
//! self-signed certificates live 1 year and change by a hard switch). An expired extra IdP
//! certificate is a warning; no IdP certificate left unexpired, or an expired active SP key,
//! active token key or TLS certificate, is a failure.

use serde::Serialize;

use crate::keys::{KeySet, KeyState};
use crate::saml::idp::{asn1_to_unix, subject_of, IdpMetadata};

/// Warn this many days before notAfter.
pub const WARN_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    IdpSigning,
    Sp,
    Token,
    Tls,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::IdpSigning => "IdP signing certificate",
            Kind::Sp => "SP key",
            Kind::Token => "token key",
            Kind::Tls => "TLS certificate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warn,
    Expired,
}

/// One watched certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    pub kind: Kind,
    /// The key id (SP, token keys), else empty.
    pub id: String,
    /// active / next / retired for keys, empty otherwise.
    pub state: String,
    pub subject: String,
    pub fingerprint: String,
    /// Unix seconds.
    pub not_after: i64,
    /// A failure when expired (see the module comment); IdP certificates count as a group.
    pub in_use: bool,
}

impl Watched {
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }

    /// Whole days left, rounded down (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        self.seconds_left(now).div_euclid(86400)
    }

    pub fn level(&self, now: i64) -> Level {
        let left = self.seconds_left(now);
        if left <= 0 {
            Level::Expired
        } else if left < WARN_DAYS * 86400 {
            Level::Warn
        } else {
            Level::Ok
        }
    }

    pub fn not_after_rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp(self.not_after, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }

    /// One line for people: what, which, and when.
    pub fn warning(&self, now: i64) -> String {
        let which = if self.id.is_empty() {
            format!("{} ({})", self.fingerprint, self.subject)
        } else {
            format!("{} {} ({})", self.id, self.state, self.fingerprint)
        };
        match self.level(now) {
            Level::Expired => format!(
                "{} {which} expired on {}",
                self.kind.describe(),
                self.not_after_rfc3339()
            ),
            _ => format!(
                "{} {which} expires in {} days ({})",
                self.kind.describe(),
                self.days_left(now),
                self.not_after_rfc3339()
            ),
        }
    }
}

pub fn from_idp(idp: &IdpMetadata) -> Vec<Watched> {
    idp.signing_certs
        .iter()
        .map(|c| Watched {
            kind: Kind::IdpSigning,
            id: String::new(),
            state: String::new(),
            subject: c.subject.clone(),
            fingerprint: c.fingerprint.clone(),
            not_after: c.not_after,
            in_use: true,
        })
        .collect()
}

/// The published keys of a set (active and next); retired keys only decrypt stragglers.
pub fn from_keys(kind: Kind, set: &KeySet) -> Vec<Watched> {
    set.published()
        .map(|k| Watched {
            kind,
            id: k.id.clone(),
            state: format!("{:?}", k.state).to_lowercase(),
            subject: subject_of(&k.cert),
            fingerprint: k.fingerprint.clone(),
            not_after: asn1_to_unix(k.cert.not_after()),
            in_use: k.state == KeyState::Active,
        })
        .collect()
}

pub fn tls(fingerprint: String, not_after: i64) -> Watched {
    Watched {
        kind: Kind::Tls,
        id: String::new(),
        state: String::new(),
        subject: String::new(),
        fingerprint,
        not_after,
        in_use: true,
    }
}

/// Lines for every certificate that warns or has expired.
pub fn warnings(items: &[Watched], now: i64) -> Vec<String> {
    items
        .iter()
        .filter(|w| w.level(now) != Level::Ok)
        .map(|w| w.warning(now))
        .collect()
}

/// Why the gateway cannot work with these certificates, if it cannot (see the module comment).
pub fn failures(items: &[Watched], now: i64) -> Vec<String> {
    let mut out = Vec::new();
    let idp: Vec<&Watched> = items
        .iter()
        .filter(|w| w.kind == Kind::IdpSigning)
        .collect();
    if !idp.is_empty() && idp.iter().all(|w| w.level(now) == Level::Expired) {
        out.push("every IdP signing certificate has expired".to_string());
    }
    out.extend(
        items
            .iter()
            .filter(|w| w.kind != Kind::IdpSigning && w.in_use && w.level(now) == Level::Expired)
            .map(|w| w.warning(now)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: Kind, not_after: i64, in_use: bool) -> Watched {
        Watched {
            kind,
            id: String::new(),
            state: String::new(),
            subject: "CN=x".into(),
            fingerprint: "AA".into(),
            not_after,
            in_use,
        }
    }

    #[test]
    fn levels_at_the_30_day_edge() {
        let now = 1_000_000_000;
        let day = 86400;
        assert_eq!(w(Kind::Sp, now + 31 * day, true).level(now), Level::Ok);
        assert_eq!(w(Kind::Sp, now + 30 * day, true).level(now), Level::Ok);
        assert_eq!(
            w(Kind::Sp, now + 30 * day - 1, true).level(now),
            Level::Warn
        );
        assert_eq!(w(Kind::Sp, now + 1, true).level(now), Level::Warn);
        assert_eq!(w(Kind::Sp, now, true).level(now), Level::Expired);
        assert_eq!(w(Kind::Sp, now + 29 * day + 5, true).days_left(now), 29);
        assert_eq!(w(Kind::Sp, now - 5, true).days_left(now), -1);
    }

    #[test]
    fn one_expired_idp_cert_beside_a_good_one_only_warns() {
        let now = 1_000_000_000;
        let items = vec![
            w(Kind::IdpSigning, now - 10, true),
            w(Kind::IdpSigning, now + 400 * 86400, true),
        ];
        assert!(failures(&items, now).is_empty());
        assert_eq!(warnings(&items, now).len(), 1);
        let all_gone = vec![w(Kind::IdpSigning, now - 10, true)];
        assert_eq!(failures(&all_gone, now).len(), 1);
    }

    #[test]
    fn expired_key_fails_only_when_in_use() {
        let now = 1_000_000_000;
        assert!(failures(&[w(Kind::Sp, now - 1, false)], now).is_empty());
        assert_eq!(failures(&[w(Kind::Token, now - 1, true)], now).len(), 1);
        assert_eq!(failures(&[w(Kind::Tls, now - 1, true)], now).len(), 1);
    }
}
