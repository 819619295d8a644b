//! The session cookie: a signed token naming a server-side session record.
//!
//! Token: `v1.<id>.<mac>` with `id` 128 random bits and `mac` = HMAC-SHA256(key, "v1.<id>"),
//! both base64url. The key is generated on first start and kept in the store. Security property:
//! [`SessionCodec::open`] returns an id only for a token this gateway made (constant-time MAC
//! check); the record behind it decides whether the session is still alive, so logout and
//! revocation take effect at once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const COOKIE_HTTP: &str = "samlgate";
pub const COOKIE_HTTPS: &str = "__Host-samlgate";

#[derive(Clone)]
pub struct SessionCodec {
    key: Vec<u8>,
    pub cookie_name: &'static str,
    secure: bool,
}

/// 128 random bits, base64url: session ids and request ids.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

impl SessionCodec {
    pub fn new(key: Vec<u8>, https: bool) -> SessionCodec {
        SessionCodec {
            key,
            cookie_name: if https { COOKIE_HTTPS } else { COOKIE_HTTP },
            secure: https,
        }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("hmac takes any key length");
        m.update(payload.as_bytes());
        m
    }

    pub fn seal(&self, id: &str) -> String {
        let payload = format!("v1.{id}");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", B64.encode(tag))
    }

    /// The session id inside a token, if the token is ours and intact.
    pub fn open(&self, token: &str) -> Option<String> {
        if token.len() > 200 {
            return None;
        }
        let (payload, tag) = token.rsplit_once('.')?;
        let id = payload.strip_prefix("v1.")?;
        if id.is_empty() || id.contains('.') {
            return None;
        }
        let tag = B64.decode(tag).ok()?;
        self.mac(payload).verify_slice(&tag).ok()?;
        Some(id.to_string())
    }

    /// Seals `data` for `purpose` (`<purpose>.<data>.<mac>`, base64url): the purpose is under
    /// the MAC, so a token made for one use never opens for another, nor as a session token.
    pub fn seal_data(&self, purpose: &str, data: &[u8]) -> String {
        let payload = format!("{purpose}.{}", B64.encode(data));
        // "d." keeps these MAC inputs apart from session tokens' ("v1.<id>").
        let tag = self.mac(&format!("d.{payload}")).finalize().into_bytes();
        format!("{payload}.{}", B64.encode(tag))
    }

    /// The data sealed by [`Self::seal_data`] for this purpose, if the token is ours and intact.
    pub fn open_data(&self, purpose: &str, token: &str) -> Option<Vec<u8>> {
        if token.len() > 4096 {
            return None;
        }
        let (payload, tag) = token.rsplit_once('.')?;
        let data = payload.strip_prefix(purpose)?.strip_prefix('.')?;
        let tag = B64.decode(tag).ok()?;
        self.mac(&format!("d.{payload}")).verify_slice(&tag).ok()?;
        B64.decode(data).ok()
    }

    pub fn set_cookie(&self, token: &str, max_age_secs: i64) -> String {
        self.cookie(self.cookie_name, token, max_age_secs)
    }

    pub fn clear_cookie(&self) -> String {
        self.cookie(self.cookie_name, "", 0)
    }

    /// A `Set-Cookie` value for one of our cookies: HttpOnly, SameSite=Lax, Path=/, and
    /// Secure on https.
    pub fn cookie(&self, name: &str, value: &str, max_age_secs: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
    }

    /// The ids sealed in every cookie `name` of the request that is ours and intact.
    pub fn open_cookies(&self, name: &str, headers: &hyper::HeaderMap) -> Vec<String> {
        let values = headers.get_all(hyper::header::COOKIE);
        cookie_values(name, values.iter().filter_map(|v| v.to_str().ok()))
            .into_iter()
            .filter_map(|t| self.open(t))
            .collect()
    }
}

/// Every value of cookie `name` in the given Cookie headers.
pub fn cookie_values<'a>(
    name: &str,
    cookie_headers: impl Iterator<Item = &'a str>,
) -> Vec<&'a str> {
    let mut out = Vec::new();
    for h in cookie_headers {
        for part in h.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name {
                    out.push(v.trim());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = SessionCodec::new(vec![7; 32], false);
        let id = random_id();
        let t = c.seal(&id);
        assert_eq!(c.open(&t).as_deref(), Some(id.as_str()));
        // Another key, a changed id, a truncated tag: all refused.
        assert!(SessionCodec::new(vec![8; 32], false).open(&t).is_none());
        let other = t.replacen(&id[..2], "zz", 1);
        assert!(c.open(&other).is_none());
        assert!(c.open(&t[..t.len() - 2]).is_none());
        assert!(c.open("v1..").is_none());
        assert!(c.open("garbage").is_none());
    }

    #[test]
    fn sealed_data_is_bound_to_its_purpose() {
        let c = SessionCodec::new(vec![7; 32], false);
        let t = c.seal_data("r1", b"{\"id\":\"_a\"}");
        assert_eq!(
            c.open_data("r1", &t).as_deref(),
            Some(&b"{\"id\":\"_a\"}"[..])
        );
        assert!(c.open_data("r2", &t).is_none());
        assert!(c.open(&t).is_none(), "not a session token");
        assert!(c.open_data("v1", &c.seal("abc")).is_none());
        assert!(SessionCodec::new(vec![8; 32], false)
            .open_data("r1", &t)
            .is_none());
        let changed = t.replacen("r1.", "r1.A", 1);
        assert!(c.open_data("r1", &changed).is_none());
    }

    #[test]
    fn cookie_flags() {
        let http = SessionCodec::new(vec![1], false);
        let s = http.set_cookie("tok", 60);
        assert!(
            s.starts_with("samlgate=tok;") && s.contains("HttpOnly") && s.contains("SameSite=Lax")
        );
        assert!(!s.contains("Secure"));
        let https = SessionCodec::new(vec![1], true);
        let s = https.set_cookie("tok", 60);
        assert!(
            s.starts_with("__Host-samlgate=tok;") && s.contains("; Secure") && s.contains("Path=/")
        );
    }

    #[test]
    fn finds_our_cookie_among_others() {
        let c = SessionCodec::new(vec![1], false);
        let v = cookie_values(
            c.cookie_name,
            ["a=1; samlgate=x.y.z; samlgate2=no", "samlgate=second"].into_iter(),
        );
        assert_eq!(v, vec!["x.y.z", "second"]);
    }
}
