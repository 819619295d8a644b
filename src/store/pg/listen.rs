//! [`Store::generation`](crate::store::Store::generation) across instances.
//!
//! Every write that can end or restrict a session bumps the `store_generation` row and sends
//! `NOTIFY samlgate_generation` in its own transaction, so the notice leaves at COMMIT. One
//! thread per store LISTENs on a dedicated connection and moves the local counter on each
//! notice; every [`PROBE`] it also reads the row (a missed notice shows as a changed `n`) and,
//! when that succeeds, records the time as *confirmed*. A reader trusts the counter only while
//! the last confirmation is younger than [`FRESH`]; otherwise `generation()` changes on every
//! call, so the session cache asks the database each time. Another instance's write is thus
//! seen within one notice delivery (milliseconds), and never later than [`FRESH`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

pub const CHANNEL: &str = "samlgate_generation";
/// How often the listener proves its connection alive and catches missed notices.
pub const PROBE: Duration = Duration::from_millis(200);
/// How long a confirmation stays good; the contract's upper bound on staleness.
pub const FRESH: Duration = Duration::from_millis(900);

pub struct Generation {
    counter: AtomicU64,
    origin: Instant,
    /// Milliseconds since `origin` of the last confirmation; 0 = never.
    confirmed_ms: AtomicU64,
    stop: AtomicBool,
}

impl Generation {
    pub fn new() -> Arc<Generation> {
        Arc::new(Generation {
            counter: AtomicU64::new(1),
            origin: Instant::now(),
            confirmed_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    pub fn bump(&self) {
        self.counter.fetch_add(1, Ordering::SeqCst);
    }

    fn now_ms(&self) -> u64 {
        // +1 so that "confirmed at start" is not mistaken for "never".
        self.origin.elapsed().as_millis() as u64 + 1
    }

    fn confirm(&self) {
        self.confirmed_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    fn unconfirm(&self) {
        self.confirmed_ms.store(0, Ordering::SeqCst);
    }

    /// True while the listener has proven itself within [`FRESH`].
    pub fn fresh(&self) -> bool {
        let at = self.confirmed_ms.load(Ordering::SeqCst);
        at != 0 && self.now_ms().saturating_sub(at) <= FRESH.as_millis() as u64
    }

    pub fn read(&self) -> u64 {
        if self.fresh() {
            self.counter.load(Ordering::SeqCst)
        } else {
            // Cannot prove freshness: a new number every time, so no cached entry matches.
            self.counter.fetch_add(1, Ordering::SeqCst) + 1
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs the listener until the store is dropped, reconnecting after any failure.
pub fn spawn(
    gen: Arc<Generation>,
    connect: impl Fn() -> Result<postgres::Client, String> + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("samlgate-pg-listen".into())
        .spawn(move || {
            let mut last_n: Option<i64> = None;
            while !gen.stop.load(Ordering::SeqCst) {
                match connect() {
                    Ok(c) => {
                        if let Err(e) = listen(&gen, c, &mut last_n) {
                            tracing::warn!(error = %e, "store: generation listener lost its connection; caches bypassed until it is back");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "store: generation listener cannot connect");
                    }
                }
                gen.unconfirm();
                gen.bump();
                std::thread::sleep(Duration::from_millis(250));
            }
        });
    if let Err(e) = spawned {
        // Without a listener generation() never confirms: correct, only slower.
        tracing::error!(error = %e, "store: cannot start the generation listener");
    }
}

fn listen(
    gen: &Generation,
    mut c: postgres::Client,
    last_n: &mut Option<i64>,
) -> Result<(), String> {
    c.batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| super::db_error(e).to_string())?;
    while !gen.stop.load(Ordering::SeqCst) {
        let n: i64 = c
            .query_one("SELECT n FROM store_generation WHERE id = 1", &[])
            .map_err(|e| super::db_error(e).to_string())?
            .get(0);
        if *last_n != Some(n) {
            // First read, or a write whose notice we missed: everything cached is suspect.
            gen.bump();
            *last_n = Some(n);
        }
        gen.confirm();
        // Wait for a notice, at most PROBE; then probe again (which also confirms).
        let mut notes = c.notifications();
        if notes
            .timeout_iter(PROBE)
            .next()
            .map_err(|e| super::db_error(e).to_string())?
            .is_some()
        {
            gen.bump();
        }
    }
    Ok(())
}
