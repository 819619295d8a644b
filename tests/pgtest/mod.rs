//! A real PostgreSQL for tests: the cluster scripts/test.sh started (SAMLGATE_TEST_PG_URL), or
//! one this process starts with scripts/pg.sh and stops at exit. Never skipped: no cluster is a
//! failure, loudly.

#![allow(dead_code)]

use std::sync::OnceLock;

use samlgate::store::{PgOptions, PgStore};

static BASE_URL: OnceLock<String> = OnceLock::new();
static OWN_DIR: OnceLock<String> = OnceLock::new();

extern "C" fn stop_own_cluster() {
    if let Some(dir) = OWN_DIR.get() {
        let _ = std::process::Command::new(script())
            .args(["stop", dir])
            .status();
    }
}

fn script() -> String {
    format!("{}/scripts/pg.sh", env!("CARGO_MANIFEST_DIR"))
}

/// The admin URL of the test cluster.
pub fn base_url() -> &'static str {
    BASE_URL.get_or_init(|| {
        if let Ok(u) = std::env::var("SAMLGATE_TEST_PG_URL") {
            if !u.is_empty() {
                return u;
            }
        }
        let dir = format!(
            "/tmp/samlgate-pg-test.{}.{}",
            std::process::id(),
            rand_suffix()
        );
        eprintln!(
            "SAMLGATE_TEST_PG_URL is not set: starting a cluster in {dir} with scripts/pg.sh"
        );
        let out = std::process::Command::new(script())
            .args(["start", &dir])
            .output()
            .expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "scripts/pg.sh start failed (PostgreSQL tests need a cluster): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = OWN_DIR.set(dir);
        // SAFETY: registers a plain extern "C" function; it only runs a child process.
        unsafe {
            libc::atexit(stop_own_cluster);
        }
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}

/// A fresh database on the test cluster, migrated; returns its URL.
pub fn fresh_db() -> String {
    let base = base_url();
    let name = format!("t_{}", rand_suffix());
    let mut c = postgres::Client::connect(base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster {base}: {e}"));
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => panic!("odd URL {base}"),
    };
    let s = PgStore::connect_unchecked(&PgOptions::new(&url)).unwrap();
    s.migrate().unwrap();
    url
}

/// A store on `url` (one more "instance").
pub fn open(url: &str) -> PgStore {
    PgStore::open(&PgOptions::new(url)).unwrap()
}

/// A private cluster (a test that stops and starts its database needs its own), started with
/// scripts/pg.sh and removed on drop.
pub struct OwnCluster {
    pub dir: String,
    pub url: String,
}

impl OwnCluster {
    /// Started and migrated (serve refuses an unmigrated schema).
    pub fn start(tag: &str) -> OwnCluster {
        let dir = format!(
            "/tmp/samlgate-pg-{tag}.{}.{}",
            std::process::id(),
            rand_suffix()
        );
        let url = pg(&["start", &dir]);
        PgStore::connect_unchecked(&PgOptions::new(&url))
            .unwrap()
            .migrate()
            .unwrap();
        OwnCluster { dir, url }
    }

    /// Stops the server, keeps the data (an outage).
    pub fn down(&self) {
        pg(&["down", &self.dir]);
    }

    /// Starts it again on the same port.
    pub fn up(&self) {
        pg(&["up", &self.dir]);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        pg(&["stop", &self.dir]);
    }
}

/// Runs scripts/pg.sh ARGS; returns its stdout, panics with its stderr on failure.
pub fn pg(args: &[&str]) -> String {
    let out = std::process::Command::new(script())
        .args(args)
        .output()
        .expect("scripts/pg.sh");
    assert!(
        out.status.success(),
        "pg.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
