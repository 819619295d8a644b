//! A per-client token bucket: `per_minute` requests a minute, bursts up to `per_minute`.
//!
//! Used for `GET /saml/login`, the only unauthenticated request that costs an RSA signature.
//! Clients are keyed by IPv4 address or IPv6 /64 (one host usually has a whole /64). An IPv6
//! client also takes a token from its /56 (4 times the size) and /48 (16 times): a site with
//! a /48 could otherwise rotate through 65,536 /64 buckets. Memory is bounded: past
//! [`MAX_CLIENTS`] entries, full (idle) buckets are dropped, and if that is not enough the
//! table starts over; the signing pool still bounds the CPU in that case.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// About 100 bytes each: at most ~10 MB.
pub const MAX_CLIENTS: usize = 100_000;

struct Bucket {
    tokens: f64,
    /// Tokens a minute, and the burst.
    cap: f64,
    at: Instant,
    /// Refusals since this client last got through.
    refused: u64,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let per_sec = self.cap / 60.0;
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec).min(self.cap);
        self.at = now;
    }

    /// Seconds until it has a token (0 when it has one now).
    fn wait(&self) -> f64 {
        if self.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - self.tokens) / (self.cap / 60.0)
        }
    }
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

/// The bucket keys of a client with their size (times `per_minute`), its own first: an IPv4
/// address, or an IPv6 /64 with its /56 and /48. IPv6 keys have bit 32 set (never an IPv4
/// key) and the prefix length in the low bits (the prefixes never reach them).
fn client_keys(ip: IpAddr) -> Vec<(u128, f64)> {
    let v6 = match ip {
        IpAddr::V4(v4) => return vec![(u128::from(u32::from(v4)), 1.0)],
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return vec![(u128::from(u32::from(v4)), 1.0)],
            None => u128::from(v6),
        },
    };
    [(64u32, 1.0), (56, 4.0), (48, 16.0)]
        .into_iter()
        .map(|(len, size)| {
            let prefix = v6 & !((1u128 << (128 - len)) - 1);
            (prefix | (1u128 << 32) | u128::from(len), size)
        })
        .collect()
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` from each of its buckets, or (taking none) says when every one
    /// of them has a token again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        let cap = f64::from(self.per_minute);
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS {
            map.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * b.cap / 60.0 < b.cap
            });
            if map.len() >= MAX_CLIENTS {
                map.clear();
            }
        }
        let keys = client_keys(ip);
        let mut wait: f64 = 0.0;
        for (k, size) in &keys {
            let b = map.entry(*k).or_insert(Bucket {
                tokens: cap * size,
                cap: cap * size,
                at: now,
                refused: 0,
            });
            b.refill(now);
            wait = wait.max(b.wait());
        }
        if wait == 0.0 {
            for (k, _) in &keys {
                if let Some(b) = map.get_mut(k) {
                    b.tokens -= 1.0;
                }
            }
            if let Some(own) = map.get_mut(&keys[0].0) {
                own.refused = 0;
            }
            return Ok(());
        }
        let own = map.get_mut(&keys[0].0).expect("inserted above");
        own.refused += 1;
        Err(Limited {
            retry_after_secs: wait.ceil().max(1.0) as u64,
            first: own.refused == 1,
        })
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

    /// Review of the issue-12 fixes, finding 7: a client with a /48 does not get 65,536 buckets
    /// by rotating its /64s: the /56 and /48 it is in have buckets too (4 and 16 times as big).
    #[test]
    fn rotating_ipv6_prefixes_hits_the_enclosing_buckets() {
        let l = RateLimiter::new(2);
        let t0 = Instant::now();
        let in_48 = |n: u32| -> IpAddr { format!("2001:db8:7:{:x}::1", n).parse().unwrap() };
        // One /56 (2001:db8:7:00xx::/56): 4 x 2 = 8, whatever the /64s.
        let got = (0..100).filter(|&n| l.check(in_48(n), t0).is_ok()).count();
        assert_eq!(got, 8, "one /56 through rotating /64s");
        // The whole /48: 16 x 2 = 32, whatever the /56s (8 already taken above).
        let got = (0..256)
            .filter(|&n| l.check(in_48(n << 8), t0).is_ok())
            .count();
        assert_eq!(got, 32 - 8, "one /48 through rotating /56s");
        // A refusal takes nothing: another /48 is untouched, and the limits refill.
        assert!(l.check("2001:db8:8::1".parse().unwrap(), t0).is_ok());
        let later = t0 + Duration::from_secs(60);
        assert!(l.check(in_48(0x1234), later).is_ok());
    }
}
