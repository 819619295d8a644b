//! Whether G-MIS is up, as far as we can tell: `[idp] status_url` probed in the background every
//! `status_cache_seconds` (timeout `status_timeout_seconds`). `/saml/login` reads the cached
//! answer only, so a login never waits for the probe. Up: any answer below 500. Down: no answer
//! in time, a refused connection, or 5xx. A stale answer (the probe task stuck) counts as up:
//! the page that says "G-MIS is unavailable" must not be shown on old evidence.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

use super::StatusConfig;

#[derive(Default)]
pub struct Probe {
    down: AtomicBool,
    /// Unix seconds of the last probe answer (or failure); 0 = never probed.
    checked_at: AtomicI64,
}

impl Probe {
    /// True when the last fresh probe found the IdP down.
    pub fn idp_down(&self, cfg: Option<&StatusConfig>) -> bool {
        let Some(cfg) = cfg else {
            return false;
        };
        let at = self.checked_at.load(Relaxed);
        let fresh = chrono::Utc::now().timestamp() - at
            <= 3 * cfg.cache.as_secs() as i64 + cfg.timeout.as_secs() as i64;
        at > 0 && fresh && self.down.load(Relaxed)
    }

    pub fn render(&self, cfg: Option<&StatusConfig>) -> String {
        if cfg.is_none() {
            return String::new();
        }
        format!(
            "# HELP samlgate_idp_up Whether the last [idp] status_url probe found G-MIS up (1) or down (0).\n# TYPE samlgate_idp_up gauge\nsamlgate_idp_up {}\n",
            u8::from(!self.idp_down(cfg))
        )
    }

    pub fn record(&self, down: bool) {
        self.down.store(down, Relaxed);
        self.checked_at
            .store(chrono::Utc::now().timestamp(), Relaxed);
    }
}

/// Why the status URL says the IdP is down (for the log line).
#[derive(Debug, thiserror::Error)]
pub enum Down {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Unreachable(#[from] super::fetch::FetchError),
}

/// Probes once; returns whether the IdP looked down, with the reason.
pub async fn probe(cfg: &StatusConfig) -> Result<(), Down> {
    match super::fetch::get(
        &cfg.url,
        cfg.ca_file.as_deref(),
        cfg.timeout,
        64 * 1024,
        true,
    )
    .await
    {
        Ok(a) if a.status < 500 => Ok(()),
        Ok(a) => Err(Down::Status(a.status)),
        Err(e) => Err(Down::Unreachable(e)),
    }
}

/// The probe loop; logs only changes (up -> down, down -> up). `record` takes each answer
/// (the gateway passes its [`Probe::record`]; this module does not know the HTTP layer).
pub fn spawn(cfg: StatusConfig, record: impl Fn(bool) + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.cache);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_down = false;
        loop {
            tick.tick().await;
            let r = probe(&cfg).await;
            let down = r.is_err();
            record(down);
            if down != was_down {
                match r {
                    Err(e) => {
                        tracing::warn!(target: "samlgate::idp_status", url = %cfg.url, reason = crate::reason::Reason::IdpUnavailable.code(), error = %e, "G-MIS looks down; /saml/login shows the outage page")
                    }
                    Ok(()) => {
                        tracing::info!(target: "samlgate::idp_status", url = %cfg.url, "G-MIS is reachable again")
                    }
                }
            }
            was_down = down;
        }
    });
}
