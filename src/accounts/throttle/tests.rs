use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::*;

fn fail_n(
    mut t: AccountThrottle,
    cfg: &ThrottleConfig,
    n: u32,
    mut now: i64,
) -> (AccountThrottle, i64) {
    for _ in 0..n {
        // Each attempt waits out the delay, as a patient guesser would.
        while let Err(Blocked::Wait { secs }) = t.check(cfg, now) {
            now += secs as i64;
        }
        assert!(t.check(cfg, now).is_ok());
        t = t.on_failure(cfg, now);
    }
    (t, now)
}

#[test]
fn delay_doubles_after_each_failure_and_is_capped() {
    let cfg = ThrottleConfig::default();
    let mut t = AccountThrottle::default();
    let now = 1_000;
    assert!(t.check(&cfg, now).is_ok());
    let mut seen = vec![];
    for _ in 0..9 {
        t = t.on_failure(&cfg, now);
        match t.check(&cfg, now) {
            Err(Blocked::Wait { secs }) => seen.push(secs),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    // Once the delay has passed, the next attempt is allowed.
    assert!(t.check(&cfg, now + 60).is_ok());
    assert!(t.check(&cfg, now + 59).is_err());
}

#[test]
fn tenth_failure_locks_for_the_configured_time_then_releases() {
    let cfg = ThrottleConfig::default();
    let (t, at) = fail_n(AccountThrottle::default(), &cfg, 9, 0);
    assert!(!t.is_locked(at));
    let t = t.on_failure(&cfg, at + 100);
    let until = at + 100 + 1800;
    assert_eq!(
        t.check(&cfg, at + 100),
        Err(Blocked::Locked { until: Some(until) })
    );
    assert_eq!(
        t.check(&cfg, until - 1),
        Err(Blocked::Locked { until: Some(until) })
    );
    assert!(t.check(&cfg, until).is_ok());
    // After release the doubling starts afresh: 1 s after the next failure.
    let t = t.on_failure(&cfg, until);
    assert_eq!(t.check(&cfg, until), Err(Blocked::Wait { secs: 1 }));
    assert_eq!(t.lock, None, "the expired lock is cleared");
    // Ten more failures lock it again (the count is consecutive, not reset by the release).
    let (t, at2) = fail_n(t, &cfg, 8, until + 1);
    assert!(!t.is_locked(at2));
    let t = t.on_failure(&cfg, at2 + 100);
    assert_eq!(t.failures, 20);
    assert!(t.is_locked(at2 + 100));
}

#[test]
fn lock_secs_zero_means_until_the_secretariat() {
    let cfg = ThrottleConfig {
        lock_secs: 0,
        ..ThrottleConfig::default()
    };
    let (t, at) = fail_n(AccountThrottle::default(), &cfg, 10, 0);
    assert_eq!(
        t.check(&cfg, at + 10 * 365 * 86400),
        Err(Blocked::Locked { until: None })
    );
    let t = t.unlock();
    assert!(t.check(&cfg, at).is_ok());
    assert_eq!(t.failures, 0);
}

#[test]
fn hundred_consecutive_failures_lock_for_good() {
    let cfg = ThrottleConfig::default();
    let mut t = AccountThrottle::default();
    let mut now = 0;
    for _ in 0..99 {
        while let Err(b) = t.check(&cfg, now) {
            now = match b {
                Blocked::Wait { secs } => now + secs as i64,
                Blocked::Locked { until: Some(u) } => u,
                Blocked::Locked { until: None } => panic!("hard lock before 100"),
            };
        }
        t = t.on_failure(&cfg, now);
    }
    let now = now + 2000;
    assert!(t.check(&cfg, now).is_ok(), "{t:?}");
    let t = t.on_failure(&cfg, now);
    assert_eq!(t.failures, 100);
    assert_eq!(
        t.check(&cfg, now + 86400 * 30),
        Err(Blocked::Locked { until: None })
    );
}

#[test]
fn success_resets() {
    let cfg = ThrottleConfig::default();
    let (t, at) = fail_n(AccountThrottle::default(), &cfg, 5, 0);
    let t = t.on_success();
    assert_eq!(t, AccountThrottle::default());
    assert!(t.check(&cfg, at).is_ok());
}

#[test]
fn blocked_messages_are_bilingual() {
    for b in [
        Blocked::Wait { secs: 8 },
        Blocked::Locked { until: Some(1) },
        Blocked::Locked { until: None },
    ] {
        let m = b.message();
        assert!(m.ja.contains("事務局") || m.ja.contains('8'), "{}", m.ja);
        assert!(m.en.is_ascii());
    }
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
}

#[test]
fn ip_bucket_allows_a_burst_then_the_refill_rate() {
    let mut rl = IpRateLimiter::new(RateConfig::default());
    let t0 = Instant::now();
    for i in 0..20 {
        assert!(rl.allow(v4(1), t0).is_ok(), "attempt {i}");
    }
    assert_eq!(rl.allow(v4(1), t0), Err(6), "10/min: one token per 6 s");
    // Another client is unaffected.
    assert!(rl.allow(v4(2), t0).is_ok());
    assert!(rl.allow(v4(1), t0 + Duration::from_secs(5)).is_err());
    assert!(rl.allow(v4(1), t0 + Duration::from_secs(6)).is_ok());
    assert!(rl.allow(v4(1), t0 + Duration::from_secs(6)).is_err());
    // A minute later: 10 more.
    let t1 = t0 + Duration::from_secs(66);
    for _ in 0..10 {
        assert!(rl.allow(v4(1), t1).is_ok());
    }
    assert!(rl.allow(v4(1), t1).is_err());
}

#[test]
fn ipv6_is_limited_per_64_and_mapped_v4_as_v4() {
    let mut rl = IpRateLimiter::new(RateConfig {
        burst: 2,
        ..RateConfig::default()
    });
    let t0 = Instant::now();
    let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
    let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
    assert!(rl.allow(a.into(), t0).is_ok());
    assert!(rl.allow(b.into(), t0).is_ok());
    assert!(rl.allow(a.into(), t0).is_err(), "same /64");
    assert!(rl.allow(c.into(), t0).is_ok(), "other /64");
    let mapped: Ipv6Addr = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
    assert!(rl.allow(v4(7), t0).is_ok());
    assert!(rl.allow(mapped.into(), t0).is_ok());
    assert!(
        rl.allow(v4(7), t0).is_err(),
        "mapped counts as the v4 address"
    );
}

#[test]
fn ip_map_is_bounded_and_keeps_active_clients() {
    let cfg = RateConfig {
        burst: 3,
        per_minute: 1,
        max_clients: 100,
    };
    let mut rl = IpRateLimiter::new(cfg);
    let t0 = Instant::now();
    // A busy client exhausts its bucket.
    for _ in 0..3 {
        rl.allow(v4(1), t0).unwrap();
    }
    // A spray from many addresses, each once.
    for i in 0..1000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = rl.allow(ip, t0 + Duration::from_millis(1 + i as u64));
        assert!(rl.len() <= 100);
    }
    // Eviction drops a refilled bucket (equal to a fresh one) before the least recently used
    // one, so a spray cannot reset the bucket of a client that has used up its tokens.
    let mut rl = IpRateLimiter::new(cfg);
    for _ in 0..3 {
        rl.allow(v4(2), t0).unwrap(); // empty, and the least recently used
    }
    rl.allow(v4(1), t0 + Duration::from_secs(1)).unwrap(); // full again after 60 s
    rl.cfg = RateConfig {
        max_clients: 2,
        ..cfg
    };
    let later = t0 + Duration::from_secs(62);
    rl.allow(v4(3), later).unwrap();
    assert_eq!(rl.len(), 2);
    assert!(
        rl.allow(v4(2), later).is_ok(),
        "v4(2) kept its (nearly) empty bucket"
    );
    assert!(
        rl.allow(v4(2), later).is_err(),
        "v4(2) was not reset by eviction"
    );
}
