//! One metadata refresh: fetch, check ([`super::trust`]), keep. The last good copy is
//! `[idp] metadata`, replaced atomically (temporary file, fsync, rename, fsync of the
//! directory), so a restart while the IdP is down starts from it. `crate::reload` swaps the new
//! copy in; a failure leaves file and memory as they were.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::fetch::{self, FetchError};
use super::trust::{self, CheckError};
use super::FetchConfig;
use crate::reason::Reason;
use crate::saml::idp::IdpMetadata;
use crate::store::Store;
use std::sync::Arc;

/// Why a refresh kept the old metadata: the code logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Unreachable,
    Timeout,
    HttpStatus,
    TooLarge,
    Invalid,
    SignatureInvalid,
    UntrustedCert,
    Expired,
    StoreUnavailable,
    WriteFailed,
}

impl Failure {
    pub const ALL: [Failure; 10] = [
        Failure::Unreachable,
        Failure::Timeout,
        Failure::HttpStatus,
        Failure::TooLarge,
        Failure::Invalid,
        Failure::SignatureInvalid,
        Failure::UntrustedCert,
        Failure::Expired,
        Failure::StoreUnavailable,
        Failure::WriteFailed,
    ];

    pub fn code(self) -> &'static str {
        self.reason().code()
    }

    pub fn reason(self) -> Reason {
        match self {
            Failure::Unreachable => Reason::IdpMetadataUnreachable,
            Failure::Timeout => Reason::IdpMetadataTimeout,
            Failure::HttpStatus => Reason::IdpMetadataHttpStatus,
            Failure::TooLarge => Reason::IdpMetadataTooLarge,
            Failure::Invalid => Reason::IdpMetadataInvalid,
            Failure::SignatureInvalid => Reason::IdpMetadataSignatureInvalid,
            Failure::UntrustedCert => Reason::IdpMetadataUntrustedCert,
            Failure::Expired => Reason::IdpMetadataExpired,
            Failure::StoreUnavailable => Reason::StoreUnavailable,
            Failure::WriteFailed => Reason::IdpMetadataWriteFailed,
        }
    }
}

/// Counters and gauges for `/metrics`.
#[derive(Default)]
pub struct State {
    failures: [AtomicU64; Failure::ALL.len()],
    successes: AtomicU64,
    /// Unix seconds of the last good fetch (at start: the kept copy's mtime).
    last_success: AtomicI64,
    /// The interval the metadata asked for (cacheDuration), seconds; 0 = none.
    cache_seconds: AtomicU64,
    /// Unix seconds of the last attempt (0: none yet, so the first comes at start) and whether
    /// it failed.
    last_attempt: AtomicI64,
    last_failed: std::sync::atomic::AtomicBool,
    /// One refresh at a time (SIGHUP and the timer could meet; both write the same file).
    busy: tokio::sync::Mutex<()>,
}

impl State {
    pub fn new(kept_copy: &Path) -> State {
        let s = State::default();
        let mtime = std::fs::metadata(kept_copy)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        s.last_success.store(mtime, Relaxed);
        s
    }

    /// Whether a refresh is due: `refresh_minutes` after the last attempt, sooner when the
    /// metadata's cacheDuration says so (not below 10 s), at most 5 minutes after a failure.
    pub fn due(&self, refresh: Duration, now: i64) -> bool {
        let mut d = refresh;
        let c = self.cache_seconds.load(Relaxed);
        if c > 0 {
            d = d.min(Duration::from_secs(c.max(10)));
        }
        if self.last_failed.load(Relaxed) {
            d = d.min(Duration::from_secs(300));
        }
        now - self.last_attempt.load(Relaxed) >= d.as_secs() as i64
    }

    pub fn render(&self, enabled: bool) -> String {
        use std::fmt::Write;
        if !enabled {
            return String::new();
        }
        let mut s = String::from(
            "# HELP samlgate_idp_metadata_refresh_failures_total IdP metadata refreshes that kept the old metadata, by reason.\n# TYPE samlgate_idp_metadata_refresh_failures_total counter\n",
        );
        for (f, n) in Failure::ALL.iter().zip(&self.failures) {
            let _ = writeln!(
                s,
                "samlgate_idp_metadata_refresh_failures_total{{reason=\"{}\"}} {}",
                f.code(),
                n.load(Relaxed)
            );
        }
        let _ = write!(
            s,
            "# HELP samlgate_idp_metadata_refresh_success_total IdP metadata fetches that passed every check.\n# TYPE samlgate_idp_metadata_refresh_success_total counter\nsamlgate_idp_metadata_refresh_success_total {}\n\
             # HELP samlgate_idp_metadata_last_success_timestamp_seconds When the metadata in use was last fetched and checked.\n# TYPE samlgate_idp_metadata_last_success_timestamp_seconds gauge\nsamlgate_idp_metadata_last_success_timestamp_seconds {}\n",
            self.successes.load(Relaxed),
            self.last_success.load(Relaxed)
        );
        s
    }
}

/// What a successful refresh did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Same document as the kept copy: nothing written.
    Unchanged,
    /// A new copy was written; reload it.
    Replaced,
}

fn classify(e: &FetchError) -> Failure {
    match e {
        FetchError::Timeout(_) => Failure::Timeout,
        FetchError::TooLarge(_) => Failure::TooLarge,
        FetchError::Failed(_) => Failure::Unreachable,
    }
}

/// What a refresh reads and writes, handed over by its caller (the reload loop), so this
/// module does not depend on the HTTP layer's `App`.
pub struct Refresh<'a> {
    pub fetch: &'a FetchConfig,
    pub state: &'a State,
    pub store: Arc<dyn Store>,
    /// The metadata in use.
    pub current: Arc<IdpMetadata>,
    /// `[idp] metadata`: the kept copy.
    pub path: PathBuf,
}

/// Fetches and checks `[idp] metadata_url`; on success the kept copy holds the new document.
/// Logs one line either way and counts it.
pub async fn run(r: Refresh<'_>, why: &str) -> Option<Outcome> {
    let fc = r.fetch;
    let _one = r.state.busy.lock().await;
    let result = match fetch::get(
        &fc.url,
        fc.ca_file.as_deref(),
        fc.timeout,
        fc.max_bytes,
        false,
    )
    .await
    {
        Err(e) => Err((classify(&e), e.to_string())),
        Ok(a) if a.status != 200 => Err((Failure::HttpStatus, format!("HTTP {}", a.status))),
        Ok(a) => {
            let (fc, store, current, path) = (fc.clone(), r.store, r.current, r.path);
            tokio::task::spawn_blocking(move || keep(&fc, &*store, &current, &path, &a.body))
                .await
                .unwrap_or_else(|e| Err((Failure::Invalid, format!("check panicked: {e}"))))
        }
    };
    let state = r.state;
    state
        .last_attempt
        .store(chrono::Utc::now().timestamp(), Relaxed);
    state.last_failed.store(result.is_err(), Relaxed);
    match result {
        Ok((o, cache_seconds)) => {
            state.cache_seconds.store(cache_seconds, Relaxed);
            state.successes.fetch_add(1, Relaxed);
            state
                .last_success
                .store(chrono::Utc::now().timestamp(), Relaxed);
            tracing::info!(target: "samlgate::idp_refresh", why, url = %fc.url, outcome = ?o, "IdP metadata fetched and checked");
            Some(o)
        }
        Err((f, detail)) => {
            state.failures[f as usize].fetch_add(1, Relaxed);
            tracing::error!(target: "samlgate::idp_refresh", why, url = %fc.url, reason = f.code(), error = %detail, "IdP metadata refresh failed; kept the previous metadata");
            None
        }
    }
}

/// Checks a fetched body against the metadata in use and writes it when it differs; also
/// answers the cacheDuration it asked for (seconds, 0 = none).
fn keep(
    fc: &FetchConfig,
    store: &dyn Store,
    current: &IdpMetadata,
    path: &Path,
    body: &[u8],
) -> Result<(Outcome, u64), (Failure, String)> {
    let trusted: Vec<String> = trust::store_trusted(store)
        .map_err(|e| (Failure::StoreUnavailable, e.to_string()))?
        .into_iter()
        .map(|r| r.fingerprint)
        .collect();
    let checked = trust::check(body, fc, current, &trusted, chrono::Utc::now()).map_err(|e| {
        let f = match e {
            CheckError::Invalid(_) => Failure::Invalid,
            CheckError::Signature(_) => Failure::SignatureInvalid,
            CheckError::Untrusted(_) => Failure::UntrustedCert,
            CheckError::Expired(_) => Failure::Expired,
        };
        (f, e.to_string())
    })?;
    let secs = checked.cache_duration.map_or(0, |d| d.as_secs());
    if std::fs::read(path).is_ok_and(|old| old == checked.text.as_bytes()) {
        return Ok((Outcome::Unchanged, secs));
    }
    write_atomic(path, checked.text.as_bytes()).map_err(|e| (Failure::WriteFailed, e))?;
    Ok((Outcome::Replaced, secs))
}

/// Temporary file beside the target (0640), fsync, rename over, fsync the directory: a crash
/// leaves the old copy or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or("no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}
