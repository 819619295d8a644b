//! Picking up changed files without a restart: the IdP metadata, the SP key set, the token key
//! set and the TLS certificate. Triggered by SIGHUP and by a check every 10 s of the files'
//! size and mtime; a part whose last reload was refused is tried again at every check.
//!
//! With `[idp] metadata_url`, SIGHUP and a timer (`refresh_minutes`, shortened by the
//! metadata's cacheDuration) first fetch and check the metadata (crate::idp_source), which
//! replaces the kept copy on disk; the IdP part then reloads from that file like any other.
//!
//! Each part is loaded and checked completely before it replaces the current one (an
//! `Arc` swap): requests in flight finish with the set they started with, and a broken file is
//! refused with a log line while the old set keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::keys::KeySet;
use crate::saml::idp::IdpMetadata;
use crate::web::App;

#[derive(Clone, PartialEq, Eq, Debug, Default)]
struct Stamp(Vec<Option<(SystemTime, u64)>>);

fn stamp(paths: &[PathBuf]) -> Stamp {
    Stamp(
        paths
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect(),
    )
}

fn idp_files(app: &App) -> Vec<PathBuf> {
    vec![app.cfg.idp_metadata.clone()]
}

/// Every file in a directory, sorted: a key file that appears after a refused reload (state
/// copied before the keys) changes the stamp too, so the fixed set loads without a SIGHUP.
fn dir_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| !p.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The same mode check as at start (`cli::load`): a key copied in at 0644 is refused now, not
/// accepted live and then refused by the next restart. (On one line: it goes into one log line.)
fn check_private(files: &[PathBuf]) -> Result<(), String> {
    files
        .iter()
        .try_for_each(|f| crate::keys::check_private(f, "the private key file"))
        .map_err(|e| e.replace("\n  ", "; "))
}

pub fn reload_tokens(app: &App, why: &str) -> bool {
    let (Some(t), Some(cfg)) = (&app.tokens, &app.cfg.token) else {
        return true;
    };
    match check_private(&crate::keys::private_key_files(&cfg.keys_dir))
        .and_then(|()| KeySet::load(&cfg.keys_dir).map_err(|e| e.to_string()))
        .and_then(|k| t.replace_keys(k))
    {
        Ok(()) => {
            tracing::info!(target: "samlgate::reload", why, part = "token_keys", "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(target: "samlgate::reload", why, part = "token_keys", reason = crate::reason::Reason::ReloadRefused.code(), error = %e, "kept the previous token keys");
            false
        }
    }
}

fn tls_files(app: &App) -> Vec<PathBuf> {
    app.cfg
        .tls
        .iter()
        .flat_map(|t| [t.cert.clone(), t.key.clone()])
        .collect()
}

pub fn reload_idp(app: &App, why: &str) -> bool {
    match IdpMetadata::load(&app.cfg.idp_metadata) {
        Ok(md) => {
            let fps: Vec<String> = md
                .signing_certs
                .iter()
                .map(|c| c.fingerprint.clone())
                .collect();
            if md.entity_id != app.idp().entity_id {
                tracing::warn!(target: "samlgate::reload", old = %app.idp().entity_id, new = %md.entity_id, "IdP entityID changed");
            }
            *app.idp.write().expect("idp lock") = Arc::new(md);
            tracing::info!(target: "samlgate::reload", why, part = "idp_metadata", certs = ?fps, "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(target: "samlgate::reload", why, part = "idp_metadata", reason = crate::reason::Reason::ReloadRefused.code(), error = %e, "kept the previous IdP metadata");
            false
        }
    }
}

pub fn reload_keys(app: &App, why: &str) -> bool {
    match check_private(&crate::keys::private_key_files(&app.cfg.keys_dir))
        .and_then(|()| KeySet::load(&app.cfg.keys_dir).map_err(|e| e.to_string()))
    {
        Ok(set) => {
            let md = crate::saml::metadata::sp_metadata(&app.cfg, &set);
            let summary: Vec<String> = set
                .keys
                .iter()
                .map(|k| format!("{}={:?}", k.id, k.state))
                .collect();
            *app.keys.write().expect("keys lock") = Arc::new(set);
            *app.sp_metadata.write().expect("md lock") = Arc::new(md);
            tracing::info!(target: "samlgate::reload", why, part = "sp_keys", keys = ?summary, "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(target: "samlgate::reload", why, part = "sp_keys", reason = crate::reason::Reason::ReloadRefused.code(), error = %e, "kept the previous key set");
            false
        }
    }
}

pub fn reload_tls(app: &App, why: &str) -> bool {
    let (Some(store), Some(files)) = (app.tls.as_ref(), app.cfg.tls.as_ref()) else {
        return true;
    };
    match check_private(std::slice::from_ref(&files.key))
        .and_then(|()| store.reload(&files.cert, &files.key))
    {
        Ok(fp) => {
            tracing::info!(target: "samlgate::reload", why, part = "tls", sha256 = %fp, "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(target: "samlgate::reload", why, part = "tls", reason = crate::reason::Reason::ReloadRefused.code(), error = %e, "kept the previous TLS certificate");
            false
        }
    }
}

/// The parts the watcher reloads, each with its files and its reload.
const PARTS: usize = 4;

fn part_files(app: &App, i: usize) -> Vec<PathBuf> {
    match i {
        0 => idp_files(app),
        1 => dir_files(&app.cfg.keys_dir),
        2 => app
            .cfg
            .token
            .as_ref()
            .map(|t| dir_files(&t.keys_dir))
            .unwrap_or_default(),
        _ => tls_files(app),
    }
}

fn reload_part(app: &App, i: usize, why: &str) -> bool {
    match i {
        0 => reload_idp(app, why),
        1 => reload_keys(app, why),
        2 => reload_tokens(app, why),
        _ => reload_tls(app, why),
    }
}

/// Per part, the files' stamp as it was just before the last successful load; `None` after a
/// refused one, so the part is tried again at every check until it loads. (Stamping after a
/// refusal would miss a file that finished changing during the refused load, or was fixed
/// without changing its size and mtime.)
type Loaded = Arc<std::sync::Mutex<[Option<Stamp>; PARTS]>>;

/// Reloads the parts whose files changed since they last loaded, or that were refused.
/// The stamp is taken before loading: a change during the load is seen at the next check.
fn check_parts(app: &App, loaded: &Loaded, why: &str, all: bool) {
    for i in 0..PARTS {
        let now = stamp(&part_files(app, i));
        let last = loaded.lock().expect("reload state")[i].clone();
        if !all && last.as_ref() == Some(&now) {
            continue;
        }
        let why = if last.is_none() && !all {
            "retry after a refused reload"
        } else {
            why
        };
        let ok = reload_part(app, i, why);
        loaded.lock().expect("reload state")[i] = ok.then_some(now);
    }
}

/// Fetches `[idp] metadata_url` when configured, then reloads what changed (`all`: everything).
async fn refresh_and_check(app: &Arc<App>, loaded: &Loaded, why: &'static str, all: bool) -> bool {
    let ok = match app.cfg.idp_source.fetch {
        Some(ref fetch) => {
            let r = crate::idp_source::refresh::Refresh {
                fetch,
                state: &app.idp_refresh,
                store: app.store.clone(),
                current: app.idp(),
                path: app.cfg.idp_metadata.clone(),
            };
            crate::idp_source::refresh::run(r, why).await.is_some()
        }
        None => true,
    };
    let (a, l) = (app.clone(), loaded.clone());
    let _ = tokio::task::spawn_blocking(move || check_parts(&a, &l, why, all)).await;
    ok
}

/// Watches for SIGHUP and for changed files, refreshes the IdP metadata from its URL, probes
/// the IdP's status and keeps the login-page notice current; runs until the process ends.
pub fn spawn(app: Arc<App>) {
    let loaded: Loaded = Arc::new(std::sync::Mutex::new(std::array::from_fn(|i| {
        Some(stamp(&part_files(&app, i)))
    })));
    if let Some(cfg) = app.cfg.idp_source.status.clone() {
        let a = app.clone();
        crate::idp_source::status::spawn(cfg, move |down| a.idp_status.record(down));
    }
    crate::notice::spawn_cache(app.store.clone());
    let (a, l) = (app.clone(), loaded.clone());
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            refresh_and_check(&a, &l, "SIGHUP", true).await;
        }
    });
    if let Some(fc) = app.cfg.idp_source.fetch.clone() {
        // Checked every 5 s, so a shorter cacheDuration learnt at a refresh applies at once;
        // the first refresh runs at start.
        let (a, l) = (app.clone(), loaded.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if a.idp_refresh
                    .due(fc.refresh, chrono::Utc::now().timestamp())
                {
                    refresh_and_check(&a, &l, "refresh timer", false).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let (a, l) = (app.clone(), loaded.clone());
            let _ = tokio::task::spawn_blocking(move || check_parts(&a, &l, "file changed", false))
                .await;
        }
    });
}
