//! Picking up changed files without a restart: the IdP metadata, the SP key set and the TLS
//! certificate. Triggered by SIGHUP and by a check every 10 s of the files' size and mtime.
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

fn key_files(app: &App) -> Vec<PathBuf> {
    let mut v = dir_files(&app.cfg.keys_dir);
    if let Some(t) = &app.cfg.token {
        v.extend(dir_files(&t.keys_dir));
    }
    v
}

pub fn reload_tokens(app: &App, why: &str) -> bool {
    let (Some(t), Some(cfg)) = (&app.tokens, &app.cfg.token) else {
        return true;
    };
    match KeySet::load(&cfg.keys_dir)
        .map_err(|e| e.to_string())
        .and_then(|k| t.replace_keys(k))
    {
        Ok(()) => {
            tracing::info!(target: "samlgate::reload", why, part = "token_keys", "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(target: "samlgate::reload", why, part = "token_keys", reason = "reload_refused", error = %e, "kept the previous token keys");
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
            tracing::error!(target: "samlgate::reload", why, part = "idp_metadata", reason = "reload_refused", error = %e, "kept the previous IdP metadata");
            false
        }
    }
}

pub fn reload_keys(app: &App, why: &str) -> bool {
    match KeySet::load(&app.cfg.keys_dir) {
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
            tracing::error!(target: "samlgate::reload", why, part = "sp_keys", reason = "reload_refused", error = %e, "kept the previous key set");
            false
        }
    }
}

pub fn reload_tls(app: &App, why: &str) -> bool {
    let (Some(store), Some(files)) = (app.tls.as_ref(), app.cfg.tls.as_ref()) else {
        return true;
    };
    match store.reload(&files.cert, &files.key) {
        Ok(fp) => {
            tracing::info!(target: "samlgate::reload", why, part = "tls", sha256 = %fp, "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(target: "samlgate::reload", why, part = "tls", reason = "reload_refused", error = %e, "kept the previous TLS certificate");
            false
        }
    }
}

pub fn reload_all(app: &App, why: &str) {
    reload_idp(app, why);
    reload_keys(app, why);
    reload_tokens(app, why);
    reload_tls(app, why);
}

/// Watches for SIGHUP and for changed files; runs until the process ends.
pub fn spawn(app: Arc<App>) {
    let a = app.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let a = a.clone();
            let _ = tokio::task::spawn_blocking(move || reload_all(&a, "SIGHUP")).await;
        }
    });
    tokio::spawn(async move {
        let mut last = (
            stamp(&idp_files(&app)),
            stamp(&key_files(&app)),
            stamp(&tls_files(&app)),
        );
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let app2 = app.clone();
            let prev = last.clone();
            let r = tokio::task::spawn_blocking(move || {
                let now = (
                    stamp(&idp_files(&app2)),
                    stamp(&key_files(&app2)),
                    stamp(&tls_files(&app2)),
                );
                // A half-copied file would fail to load and be retried at the next change.
                if now.0 != prev.0 {
                    reload_idp(&app2, "file changed");
                }
                if now.1 != prev.1 {
                    reload_keys(&app2, "file changed");
                    reload_tokens(&app2, "file changed");
                }
                if now.2 != prev.2 {
                    reload_tls(&app2, "file changed");
                }
                // Stamp again: the key list may have changed with the reload.
                (
                    stamp(&idp_files(&app2)),
                    stamp(&key_files(&app2)),
                    stamp(&tls_files(&app2)),
                )
            })
            .await;
            if let Ok(s) = r {
                last = s;
            }
        }
    });
}
