//! `samlgate store migrate | export | import`: the PostgreSQL schema, and moving everything a
//! store holds between backends as JSON lines (one item per line; keys that may hold a NUL
//! byte travel in base64). Export reads a consistent-enough copy of a store that is in use;
//! import writes through the same [`Store`] operations the gateway uses, so the target's
//! rules (replay expiry, first-writer-wins secrets, audit ordering) hold.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{SessionRecord, Store, StoreError, Table, Write};

#[derive(clap::Subcommand, Debug)]
pub enum StoreCmd {
    /// Create or upgrade the PostgreSQL schema ([store] url). Safe to run again.
    Migrate,
    /// Write everything in the store to stdout (or --out) as JSON lines.
    Export {
        /// The file to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Read an export (a file, or stdin with `-`) into the configured store.
    Import {
        /// The export to read (`-`: stdin).
        file: PathBuf,
    },
}

/// One exported item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Record {
        table: String,
        key_b64: String,
        value: String,
    },
    Session {
        record: Box<SessionRecord>,
    },
    Replay {
        key: String,
        expires: i64,
    },
    Secret {
        name: String,
        value_b64: String,
    },
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Record { .. } => "records",
            Item::Session { .. } => "sessions",
            Item::Replay { .. } => "replay",
            Item::Secret { .. } => "secrets",
        }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub fn run(config: &Path, cmd: StoreCmd) -> Result<(), String> {
    let cfg = crate::config::Config::load(config).map_err(|e| e.to_string())?;
    match cmd {
        StoreCmd::Migrate => {
            let o = super::pg_options(&cfg)
                .ok_or("`store migrate` is for PostgreSQL: [store] url is not set (sled needs no migration)")?;
            let s = super::PgStore::connect_unchecked(&o).map_err(|e| e.to_string())?;
            let done = s.migrate().map_err(|e| e.to_string())?;
            if done.is_empty() {
                eprintln!(
                    "samlgate: schema is current (version {})",
                    super::pg::schema::latest()
                );
            } else {
                eprintln!(
                    "samlgate: applied migration(s) {done:?}; schema at version {}",
                    super::pg::schema::latest()
                );
            }
            Ok(())
        }
        StoreCmd::Export { out } => {
            let store = super::open(&cfg).map_err(|e| e.to_string())?;
            let counts = match out {
                Some(p) => {
                    let f =
                        std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                    export(&*store, &mut std::io::BufWriter::new(f))
                }
                None => export(
                    &*store,
                    &mut std::io::BufWriter::new(std::io::stdout().lock()),
                ),
            }
            .map_err(|e| e.to_string())?;
            eprintln!("samlgate: exported {}", summary(&counts));
            Ok(())
        }
        StoreCmd::Import { file } => {
            let store = super::open(&cfg).map_err(|e| e.to_string())?;
            let counts = if file.as_os_str() == "-" {
                import(&*store, std::io::stdin().lock())
            } else {
                let f =
                    std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                import(&*store, std::io::BufReader::new(f))
            }
            .map_err(|e| e.to_string())?;
            store.flush().map_err(|e| e.to_string())?;
            eprintln!("samlgate: imported {}", summary(&counts));
            Ok(())
        }
    }
}

pub type Counts = BTreeMap<&'static str, u64>;

fn summary(c: &Counts) -> String {
    let parts: Vec<String> = c.iter().map(|(k, v)| format!("{v} {k}")).collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

fn progress(c: &Counts, what: &str) {
    let total: u64 = c.values().sum();
    if total > 0 && total.is_multiple_of(10_000) {
        eprintln!("samlgate: {what} {total} items so far ({})", summary(c));
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// Writes every item of `store` to `out`; returns the counts by kind.
pub fn export(store: &dyn Store, out: &mut dyn std::io::Write) -> Result<Counts, StoreError> {
    let mut counts = Counts::new();
    let mut emit = |item: Item| -> Result<(), StoreError> {
        serde_json::to_writer(&mut *out, &item).map_err(|e| StoreError::Io(e.to_string()))?;
        out.write_all(b"\n").map_err(io)?;
        *counts.entry(item.kind()).or_default() += 1;
        progress(&counts, "exported");
        Ok(())
    };
    for t in Table::ALL {
        for (k, v) in store.scan(t, b"", false, usize::MAX)? {
            let value = String::from_utf8(v)
                .map_err(|_| StoreError::Corrupt(format!("{}: a value is not UTF-8", t.name())))?;
            emit(Item::Record {
                table: t.name().into(),
                key_b64: b64().encode(&k),
                value,
            })?;
        }
    }
    store.dump_state(&mut emit)?;
    out.flush().map_err(io)?;
    Ok(counts)
}

/// Reads items from `input` into `store`; returns the counts by kind.
pub fn import(store: &dyn Store, input: impl BufRead) -> Result<Counts, StoreError> {
    let mut counts = Counts::new();
    let mut batch: Vec<Write> = Vec::new();
    let mut max_seq = 0u64;
    let now = chrono::Utc::now().timestamp();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let item: Item = serde_json::from_str(&line)
            .map_err(|e| StoreError::Corrupt(format!("line {}: {e}", n + 1)))?;
        *counts.entry(item.kind()).or_default() += 1;
        match item {
            Item::Record {
                table,
                key_b64,
                value,
            } => {
                let t = Table::from_name(&table).ok_or_else(|| {
                    StoreError::Corrupt(format!("line {}: unknown table {table}", n + 1))
                })?;
                let key = b64()
                    .decode(key_b64)
                    .map_err(|e| StoreError::Corrupt(format!("line {}: {e}", n + 1)))?;
                if t == Table::Audit {
                    if let Ok(arr) = <[u8; 8]>::try_from(key.as_slice()) {
                        max_seq = max_seq.max(u64::from_be_bytes(arr));
                    }
                }
                batch.push((t, key, Some(value.into_bytes())));
                if batch.len() >= 500 {
                    store.apply(&std::mem::take(&mut batch))?;
                }
            }
            Item::Session { record } => store.session_put(&record, 0)?,
            Item::Replay { key, expires } => {
                store.replay_check_and_record(&key, expires, now)?;
            }
            Item::Secret { name, value_b64 } => {
                let v = b64()
                    .decode(value_b64)
                    .map_err(|e| StoreError::Corrupt(format!("line {}: {e}", n + 1)))?;
                let kept = store.secret_get_or_create(&name, &|| v.clone())?;
                if kept != v {
                    eprintln!("samlgate: secret {name} already existed in the target with another value; kept the target's (cookies signed by the source will not verify)");
                }
            }
        }
        progress(&counts, "imported");
    }
    if !batch.is_empty() {
        store.apply(&batch)?;
    }
    // New audit lines must sort after the imported ones.
    store.seq_floor(max_seq)?;
    Ok(counts)
}
