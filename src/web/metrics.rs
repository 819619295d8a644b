//! Prometheus text metrics, with atomics only (no lock on the request path).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::reason::Reason;

/// Upper bounds of the ACS latency histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

pub use crate::reason::Outcome;

/// A fixed set of counters (std derives `Default` for arrays of at most 32 only).
pub struct Counters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> std::ops::Deref for Counters<N> {
    type Target = [AtomicU64; N];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[derive(Default)]
pub struct Metrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    refused: Counters<{ Reason::ALL.len() }>,
    acs_buckets: [AtomicU64; BUCKETS.len()],
    acs_count: AtomicU64,
    acs_sum_micros: AtomicU64,
    verify_requests: [AtomicU64; 2],
    sha1_logins: AtomicU64,
}

impl Metrics {
    pub fn outcome(&self, o: Outcome) {
        self.outcomes[o as usize].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, r: Reason) {
        let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.refused[i].fetch_add(1, Relaxed);
    }

    pub fn acs_latency(&self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.acs_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.acs_count.fetch_add(1, Relaxed);
        self.acs_sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    /// A response whose signature needed SHA-1 passed verification (`[idp] allow_sha1`).
    pub fn sha1_login(&self) {
        self.sha1_logins.fetch_add(1, Relaxed);
    }

    pub fn verify(&self, ok: bool) {
        self.verify_requests[ok as usize].fetch_add(1, Relaxed);
    }

    /// Renders everything; `extra` adds gauges known only to the caller (sessions, certs).
    pub fn render(&self, live_sessions: usize, extra: &str) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str(
            "# HELP samlgate_logins_total Login attempts at the ACS by outcome and reason code.\n",
        );
        s.push_str("# TYPE samlgate_logins_total counter\n");
        for o in Outcome::ALL {
            let _ = writeln!(
                s,
                "samlgate_logins_total{{outcome=\"{}\",reason=\"\"}} {}",
                o.name(),
                self.outcomes[o as usize].load(Relaxed)
            );
        }
        let counted = Reason::ALL.iter().enumerate();
        for (i, r) in counted.filter(|(_, r)| r.counted_as_login()) {
            let _ = writeln!(
                s,
                "samlgate_logins_total{{outcome=\"refused\",reason=\"{}\"}} {}",
                r.code(),
                self.refused[i].load(Relaxed)
            );
        }
        s.push_str("# HELP samlgate_acs_duration_seconds Time to answer an ACS post.\n");
        s.push_str("# TYPE samlgate_acs_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "samlgate_acs_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.acs_buckets[i].load(Relaxed)
            );
        }
        let count = self.acs_count.load(Relaxed);
        let _ = writeln!(
            s,
            "samlgate_acs_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "samlgate_acs_duration_seconds_sum {}",
            self.acs_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "samlgate_acs_duration_seconds_count {count}");
        s.push_str(
            "# HELP samlgate_auth_verify_total Forward-auth answers (ok = 200, denied = 401).\n",
        );
        s.push_str("# TYPE samlgate_auth_verify_total counter\n");
        let _ = writeln!(
            s,
            "samlgate_auth_verify_total{{result=\"denied\"}} {}",
            self.verify_requests[0].load(Relaxed)
        );
        let _ = writeln!(
            s,
            "samlgate_auth_verify_total{{result=\"ok\"}} {}",
            self.verify_requests[1].load(Relaxed)
        );
        s.push_str("# HELP samlgate_sessions_live Session records in the store.\n");
        s.push_str("# TYPE samlgate_sessions_live gauge\n");
        let _ = writeln!(s, "samlgate_sessions_live {live_sessions}");
        s.push_str(
            "# HELP samlgate_sha1_logins_total Responses verified with SHA-1 ([idp] allow_sha1).\n",
        );
        s.push_str("# TYPE samlgate_sha1_logins_total counter\n");
        let _ = writeln!(
            s,
            "samlgate_sha1_logins_total {}",
            self.sha1_logins.load(Relaxed)
        );
        s.push_str(extra);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.outcome(Outcome::Success);
        m.refused(Reason::Replay);
        m.refused(Reason::Replay);
        m.acs_latency(0.0015);
        let s = m.render(3, "");
        assert!(s.contains("samlgate_logins_total{outcome=\"success\",reason=\"\"} 1"));
        assert!(s.contains("samlgate_logins_total{outcome=\"refused\",reason=\"replay\"} 2"));
        assert!(s.contains("samlgate_acs_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(s.contains("samlgate_acs_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(s.contains("samlgate_sessions_live 3"));
    }
}
