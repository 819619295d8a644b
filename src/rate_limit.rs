//! A per-client token bucket: `per_minute` requests a minute, bursts up to `per_minute`.
//!
//! Used for `GET /saml/login`, the only unauthenticated request that costs an RSA signature.
//! Clients are keyed by IPv4 address or IPv6 /64 (one host usually has a whole /64). Memory is
//! bounded: past [`MAX_CLIENTS`] entries, full (idle) buckets are dropped, and if that is not
//! enough the table starts over; the signing pool still bounds the CPU in that case.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// About 100 bytes each: at most ~10 MB.
pub const MAX_CLIENTS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Refusals since this client last got through.
    refused: u64,
}

/// A refused request: when to come back, and whether it is the client's first refusal since it
/// last got through (log that one; a flood would otherwise write a log line per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
    pub first: bool,
}

pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<u128, Bucket>>,
}

/// The bucket key: an IPv4 address, or an IPv6 /64.
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            // Never an IPv4 key: the /64 prefix, with bit 32 set in the low half.
            None => (u128::from(v6) & !((1u128 << 64) - 1)) | (1u128 << 32),
        },
    }
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`, or says when the next one comes.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        let cap = f64::from(self.per_minute);
        let per_sec = cap / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS {
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < cap);
            if map.len() >= MAX_CLIENTS {
                map.clear();
            }
        }
        let b = map.entry(client_key(ip)).or_insert(Bucket {
            tokens: cap,
            at: now,
            refused: 0,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refused = 0;
            Ok(())
        } else {
            b.refused += 1;
            Err(Limited {
                retry_after_secs: ((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64,
                first: b.refused == 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_client() {
        let l = RateLimiter::new(6); // one token every 10 s
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..6 {
            assert!(l.check(a, t0).is_ok());
        }
        let limited = |secs, first| {
            Err(Limited {
                retry_after_secs: secs,
                first,
            })
        };
        assert_eq!(l.check(a, t0), limited(10, true));
        assert!(l.check(b, t0).is_ok(), "another client has its own bucket");
        assert_eq!(l.check(a, t0 + Duration::from_secs(5)), limited(5, false));
        assert!(l.check(a, t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(l.check(a, t0 + Duration::from_secs(10)), limited(10, true));
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        let l = RateLimiter::new(1);
        let t0 = Instant::now();
        assert!(l.check("2001:db8:1:2::1".parse().unwrap(), t0).is_ok());
        assert!(l.check("2001:db8:1:2::ffff".parse().unwrap(), t0).is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap(), t0).is_ok());
        assert!(l.check("::ffff:192.0.2.9".parse().unwrap(), t0).is_ok());
        assert!(
            l.check("192.0.2.9".parse().unwrap(), t0).is_err(),
            "mapped = v4"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let l = RateLimiter::new(60);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let _ = l.check(IpAddr::V4(i.into()), t0);
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
