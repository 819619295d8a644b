//! Start-up of the gateway: load and check the config, IdP metadata and keys, open the store,
//! listen, and run until SIGTERM. `cli` (serve, check-config) and `demo` both start here.

use std::path::Path;
use std::sync::Arc;

use std::net::SocketAddr;

use crate::config::{Config, ConfigError};
use crate::keys::{self, KeyError, KeySet, NotPrivate};
use crate::saml::idp::{IdpMetadata, MetadataError};
use crate::store::{Store, StoreError};
use crate::web::{self, App};

/// Why the gateway did not start (or `check-config` failed): each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    NotPrivate(#[from] NotPrivate),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tokio runtime could not be built.
    #[error(transparent)]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}\n  fix: change [{section}] listen or stop what uses the port")]
    Listen {
        addr: SocketAddr,
        section: &'static str,
        source: std::io::Error,
    },
    /// `[server] tls` certificate or key (the message names the file).
    #[error("{0}")]
    Tls(String),
    /// `check-config`: certificates past their end.
    #[error("expired: {}", .0.join("; "))]
    Expired(Vec<String>),
    #[error("[token] keys_dir: {0}")]
    TokenKeys(KeyError),
    /// The gateway's state could not be set up (session key, token keys).
    #[error("{0}")]
    App(String),
}

/// Everything `serve` and `check-config` load, checked.
pub struct Loaded {
    pub cfg: Config,
    pub idp: IdpMetadata,
    pub keys: KeySet,
}

pub fn load(config: &Path) -> Result<Loaded, StartupError> {
    let cfg = Config::load(config)?;
    check_secrets_private(&cfg)?;
    let idp = IdpMetadata::load(&cfg.idp_metadata)?;
    let keys = KeySet::load(&cfg.keys_dir)?;
    Ok(Loaded { cfg, idp, keys })
}

/// `serve` and `check-config` refuse a store directory or private key file that group or
/// others can read: the store holds the session MAC key, the keys sign and decrypt.
fn check_secrets_private(cfg: &Config) -> Result<(), NotPrivate> {
    keys::ensure_private(&cfg.store_path, "the store directory")?;
    let mut key_files = keys::private_key_files(&cfg.keys_dir);
    if let Some(t) = &cfg.token {
        key_files.extend(keys::private_key_files(&t.keys_dir));
    }
    if let Some(t) = &cfg.tls {
        key_files.push(t.key.clone());
    }
    for f in key_files {
        keys::ensure_private(&f, "the private key file")?;
    }
    // The admin token opens the secretariat API; a PostgreSQL password opens the store.
    if let Some(f) = &cfg.admin_token_file {
        keys::ensure_private(f, "[admin] token_file")?;
    }
    if cfg.store_pg.as_ref().is_some_and(|pg| pg.has_password()) {
        keys::ensure_private(
            &cfg.file,
            "the config file (its [store] url has a password)",
        )?;
    }
    Ok(())
}

/// Everything samlgate creates (store, keys, audit files) is for its own user only.
pub fn private_umask() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// At most 2 glibc malloc arenas (unless `MALLOC_ARENA_MAX` is set). Call before any thread
/// starts. Why: glibc gives each of the ~26 threads (tokio workers, blocking verification and
/// store threads) its own arena up to 8 x cores, and each keeps the memory it freed; RSS after
/// 50,000 logins was 91.9 MiB with the default and 60.9 MiB with 2 arenas, at the same login
/// rate (bench/RESULTS.md §0).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// The listening socket, with a backlog for bursts: `TcpListener::bind` uses 128, and 1,000
/// browsers connecting at once overflowed it (SYNs dropped and retried after 1 s). The kernel
/// caps it at `net.core.somaxconn`.
fn listen_socket(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

/// Starts the gateway and blocks until SIGTERM/SIGINT.
pub fn serve(config: &Path) -> Result<(), StartupError> {
    let l = load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)?;
    rt.block_on(serve_loaded(l, None))
}

/// Starts the gateway from loaded parts; `extra` runs beside it (the demo IdP).
pub async fn serve_loaded(
    l: Loaded,
    extra: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
) -> Result<(), StartupError> {
    let store: Arc<dyn Store> = crate::store::open(&l.cfg)?;
    let listen = l.cfg.listen;
    let certs = match &l.cfg.tls {
        Some(t) => Some(web::tls::CertStore::load(&t.cert, &t.key).map_err(StartupError::Tls)?),
        None => None,
    };
    let tls = certs
        .clone()
        .map(web::tls::acceptor)
        .transpose()
        .map_err(StartupError::Tls)?;
    let app = App::new(l.cfg, store.clone(), l.idp, l.keys, certs).map_err(StartupError::App)?;
    let app = Arc::new(app);
    let listener = listen_socket(listen).map_err(|source| StartupError::Listen {
        addr: listen,
        section: "server",
        source,
    })?;
    tracing::info!(
        listen = %listen, public_url = %app.cfg.public_url, acs = %app.cfg.acs_url(),
        idp = %app.idp().entity_id, idp_certs = app.idp().signing_certs.len(),
        tls = tls.is_some(), "samlgate serving"
    );
    if app.cfg.allow_sha1 {
        tracing::warn!(target: "samlgate::config", "{}", crate::config::SHA1_WARNING);
    }
    if let Some(addr) = app.cfg.admin_listen {
        let l = listen_socket(addr).map_err(|source| StartupError::Listen {
            addr,
            section: "admin",
            source,
        })?;
        tracing::info!(admin_listen = %addr, "admin API and /metrics only on the admin listener");
        tokio::spawn(web::serve_admin(app.clone(), l, shutdown_signal()));
    }
    spawn_sweeper(app.clone());
    crate::store::health::spawn_probe(store.clone());
    crate::reload::spawn(app.clone());
    if let Some(x) = extra {
        tokio::spawn(x);
    }
    web::serve(app, listener, tls, shutdown_signal()).await;
    // Every acknowledged write is durable already; this keeps the session touches (last_seen),
    // which are not, across a clean restart.
    store.flush()?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Deletes expired replay entries and sessions once a minute.
fn spawn_sweeper(app: Arc<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let app = app.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let now = chrono::Utc::now().timestamp();
                let idle = app.cfg.session.idle_minutes as i64 * 60;
                let r = app.store.replay_sweep(now).unwrap_or(0);
                let s = app.store.session_sweep(now, idle).unwrap_or(0);
                let p = crate::identity::consent::pending_sweep(&*app.store, now).unwrap_or(0)
                    + crate::saml::authn::sweep(&*app.store, now).unwrap_or(0)
                    + crate::local_login::sweep(&*app.store, now).unwrap_or(0)
                    + crate::identity::local_accounts::sweep_tickets(&*app.store, now).unwrap_or(0);
                if r + s + p > 0 {
                    tracing::debug!(
                        replay = r,
                        sessions = s,
                        pending = p,
                        "swept expired records"
                    );
                }
            })
            .await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CFG: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/"
[sp]
entity_id = "http://127.0.0.1:8080/saml/metadata"
keys_dir = "keys"
[idp]
metadata = "idp.xml"
[admin]
token_file = "admin.token"
"#;

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    /// Review of the issue-12 fixes, finding 5: the admin token file, and the config file when
    /// its `[store] url` carries a password, are refused like a private key when others can
    /// read them.
    #[test]
    fn the_admin_token_and_a_config_with_a_store_password_must_be_private() {
        let d = tempfile::tempdir().unwrap();
        let token = d.path().join("admin.token");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
        let file = d.path().join("samlgate.toml");
        for (store, config_secret) in [
            ("[store]\npath = \"db\"\n", false),
            ("[store]\nurl = \"postgresql://sg@127.0.0.1/sg\"\n", false),
            ("[store]\nurl = \"postgresql://sg:pw@127.0.0.1/sg\"\n", true),
            (
                "[store]\nurl = \"postgresql://sg@127.0.0.1/sg?password=pw\"\n",
                true,
            ),
        ] {
            let text = format!("{CFG}{store}");
            std::fs::write(&file, &text).unwrap();
            let cfg = Config::from_toml(&text, &file, d.path()).unwrap();
            chmod(&token, 0o600);
            chmod(&file, 0o644);
            let got = check_secrets_private(&cfg);
            if config_secret {
                let e = got.unwrap_err().to_string();
                assert!(e.contains(&format!("chmod 600 {}", file.display())), "{e}");
            } else {
                got.unwrap();
            }
            chmod(&file, 0o600);
            chmod(&token, 0o640);
            let e = check_secrets_private(&cfg).unwrap_err().to_string();
            assert!(
                e.contains("[admin] token_file")
                    && e.contains(&format!("chmod 600 {}", token.display())),
                "{e}"
            );
        }
    }
}
