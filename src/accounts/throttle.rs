//! Guessing limits. Per account: a delay that doubles with each consecutive failure, a lock
//! every `lock_after` failures released by time (or by the 事務局), and a permanent lock at
//! NIST's ceiling of 100 consecutive failures. Per client IP: a token bucket in a bounded map.
//! All pure: state in, `now` in, new state out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Message;

/// Config `[local.throttle]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Delay after the first failure; doubles with each further one.
    pub base_delay_secs: u64,
    /// The delay never exceeds this.
    pub max_delay_secs: u64,
    /// Consecutive failures that lock the account.
    pub lock_after: u32,
    /// How long a lock lasts; 0 = until the 事務局 unlocks it.
    pub lock_secs: u64,
    /// Consecutive failures after which only the 事務局 can unlock (NIST: at most 100).
    pub hard_lock_after: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            base_delay_secs: 1,
            max_delay_secs: 60,
            lock_after: 10,
            lock_secs: 30 * 60,
            hard_lock_after: 100,
        }
    }
}

/// Per-account state, stored in the account record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountThrottle {
    /// Consecutive failures (password or second factor) since the last success or unlock.
    pub failures: u32,
    pub last_failure: Option<i64>,
    pub lock: Option<Lock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub since: i64,
    /// `None`: until the 事務局 unlocks it.
    pub until: Option<i64>,
}

/// Why an attempt is refused before the password is even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Too soon after the last failure; try again in `secs`.
    Wait { secs: u64 },
    /// Locked; `until` is `None` when only the 事務局 can unlock.
    Locked { until: Option<i64> },
}

impl Blocked {
    pub fn message(&self) -> Message {
        match self {
            Blocked::Wait { secs } => Message {
                ja: format!("続けて失敗したため、{secs}秒待ってからもう一度お試しください。"),
                en: format!("Too many failed attempts. Wait {secs} seconds and try again."),
            },
            Blocked::Locked { until: Some(_) } => Message {
                ja: "失敗が続いたため、このアカウントは一時的にロックされています。しばらくしてからお試しいただくか、事務局にお問い合わせください。".into(),
                en: "This account is temporarily locked after repeated failures. Try again later or contact the secretariat.".into(),
            },
            Blocked::Locked { until: None } => Message {
                ja: "このアカウントはロックされています。事務局にお問い合わせください。".into(),
                en: "This account is locked. Contact the secretariat.".into(),
            },
        }
    }
}

impl AccountThrottle {
    /// May an attempt be checked now?
    pub fn check(&self, cfg: &ThrottleConfig, now: i64) -> Result<(), Blocked> {
        if let Some(l) = self.lock {
            match l.until {
                None => return Err(Blocked::Locked { until: None }),
                Some(u) if now < u => return Err(Blocked::Locked { until: Some(u) }),
                Some(_) => {}
            }
        }
        let Some(last) = self.last_failure else {
            return Ok(());
        };
        let ready = last.saturating_add(self.delay(cfg) as i64);
        if now < ready {
            return Err(Blocked::Wait {
                secs: (ready - now) as u64,
            });
        }
        Ok(())
    }

    /// The wait after the current run of failures: base·2^(k-1) for the k-th failure since the
    /// last lock (a released lock starts the doubling afresh), capped.
    fn delay(&self, cfg: &ThrottleConfig) -> u64 {
        let k = self.failures % cfg.lock_after.max(1);
        if k == 0 {
            return 0;
        }
        let d = cfg.base_delay_secs.saturating_mul(1u64 << (k - 1).min(32));
        d.min(cfg.max_delay_secs)
    }

    /// After a wrong password or second factor.
    pub fn on_failure(self, cfg: &ThrottleConfig, now: i64) -> AccountThrottle {
        let failures = self.failures.saturating_add(1);
        let lock = if failures >= cfg.hard_lock_after.max(1) {
            Some(Lock {
                since: now,
                until: None,
            })
        } else if failures.is_multiple_of(cfg.lock_after.max(1)) {
            let until = (cfg.lock_secs > 0).then(|| now.saturating_add(cfg.lock_secs as i64));
            Some(Lock { since: now, until })
        } else {
            // A lock that has run out is over: keep no stale lock.
            self.lock.filter(|l| l.until.is_none_or(|u| now < u))
        };
        AccountThrottle {
            failures,
            last_failure: Some(now),
            lock,
        }
    }

    /// After a complete, successful login.
    pub fn on_success(self) -> AccountThrottle {
        AccountThrottle::default()
    }

    /// The 事務局 unlocks: as after a success.
    pub fn unlock(self) -> AccountThrottle {
        AccountThrottle::default()
    }

    pub fn is_locked(&self, now: i64) -> bool {
        self.lock.is_some_and(|l| l.until.is_none_or(|u| now < u))
    }
}

/// Config `[local.rate_limit]`: per client IP (IPv6 per /64, what one host usually holds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Attempts allowed at once.
    pub burst: u32,
    /// Attempts regained per minute.
    pub per_minute: u32,
    /// Clients tracked at most; bounds memory under a spray from many addresses.
    pub max_clients: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            burst: 20,
            per_minute: 10,
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by client address. In memory (per instance): a restart forgets it,
/// which is acceptable because the per-account limits are stored.
pub struct IpRateLimiter {
    cfg: RateConfig,
    buckets: HashMap<IpKey, Bucket>,
}

/// IPv4 address, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(u128);

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(u32::from(v4) as u128),
                None => IpKey(u128::from(v6) & !((1u128 << 64) - 1) | (1 << 32)),
            },
        }
    }
}

impl IpRateLimiter {
    pub fn new(cfg: RateConfig) -> Self {
        IpRateLimiter {
            cfg,
            buckets: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refill(&self, b: Bucket, now: Instant) -> f64 {
        let secs = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + secs * self.cfg.per_minute as f64 / 60.0).min(self.cfg.burst as f64)
    }

    /// Takes one token for `ip`; `Err(secs)` says how long until one is available.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let key = IpKey::from(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.cfg.max_clients {
            self.make_room(now);
        }
        let b = self.buckets.get(&key).copied().unwrap_or(Bucket {
            tokens: self.cfg.burst as f64,
            at: now,
        });
        let tokens = self.refill(b, now);
        if tokens < 1.0 {
            let rate = self.cfg.per_minute.max(1) as f64 / 60.0;
            return Err(((1.0 - tokens) / rate).ceil() as u64);
        }
        self.buckets.insert(
            key,
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Drops buckets that have refilled (they equal a fresh one, so forgetting them loses
    /// nothing); if none has, drops the least recently used one. O(n), only when full.
    fn make_room(&mut self, now: Instant) {
        let full = self.cfg.burst as f64;
        let before = self.buckets.len();
        let buckets = std::mem::take(&mut self.buckets);
        self.buckets = buckets
            .into_iter()
            .filter(|(_, b)| self.refill(*b, now) < full)
            .collect();
        if self.buckets.len() < before {
            return;
        }
        if let Some(oldest) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.at)
            .map(|(k, _)| *k)
        {
            self.buckets.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests;
