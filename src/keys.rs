//! The SP key set: key pairs in `[sp] keys_dir`, each with a state.
//!
//! Layout: `keys_dir/<id>.key` (PKCS#8 PEM, mode 0600), `keys_dir/<id>.crt` (PEM), and
//! `keys_dir/keyset.json` naming each key's state. `keyset.json` is replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory), so a crash leaves the old or the new
//! state, never half of one. Key files are written before the state that names them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use serde::{Deserialize, Serialize};

use crate::audit::AuditAction;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key set {dir}: {msg}")]
    Io { dir: PathBuf, msg: String },
    #[error("key set {dir}: no key yet\n  fix: run `samlgate keys new --config FILE` to create the first SP key")]
    Empty { dir: PathBuf },
    #[error("key set {dir}: {msg}")]
    Invalid { dir: PathBuf, msg: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in metadata and able to decrypt; does not sign yet.
    Next,
    /// Signs, decrypts, published. Exactly one.
    Active,
    /// Not published, does not sign; still decrypts until removed.
    Retired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateEntry {
    id: String,
    state: KeyState,
    created: String,
    /// When the key was retired (RFC 3339); removal waits for the grace period after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct StateFile {
    keys: Vec<StateEntry>,
}

/// One loaded key pair.
pub struct SpKey {
    pub id: String,
    pub state: KeyState,
    pub key: PKey<Private>,
    pub cert: X509,
    /// Base64 DER, as it goes into `<ds:X509Certificate>`.
    pub cert_b64: String,
    /// SHA-256 of the DER, hex with colons.
    pub fingerprint: String,
    pub not_after: String,
    pub days_left: i64,
    /// When a retired key was retired (unix seconds).
    pub retired_at: Option<i64>,
}

pub struct KeySet {
    pub dir: PathBuf,
    pub keys: Vec<SpKey>,
}

impl KeySet {
    /// Loads and checks the whole set: every named key readable, its private key matching its
    /// certificate, exactly one active key.
    pub fn load(dir: &Path) -> Result<KeySet, KeyError> {
        let err = |msg: String| KeyError::Invalid {
            dir: dir.to_path_buf(),
            msg,
        };
        let state = read_state(dir)?;
        if state.keys.is_empty() {
            return Err(KeyError::Empty {
                dir: dir.to_path_buf(),
            });
        }
        let mut keys = Vec::new();
        for e in &state.keys {
            let key_pem = fs::read(dir.join(format!("{}.key", e.id)))
                .map_err(|x| err(format!("cannot read {}.key: {x}", e.id)))?;
            let crt_pem = fs::read(dir.join(format!("{}.crt", e.id)))
                .map_err(|x| err(format!("cannot read {}.crt: {x}", e.id)))?;
            let key = PKey::private_key_from_pem(&key_pem)
                .map_err(|x| err(format!("{}.key is not a PEM private key: {x}", e.id)))?;
            let cert = X509::from_pem(&crt_pem)
                .map_err(|x| err(format!("{}.crt is not a PEM certificate: {x}", e.id)))?;
            let pubkey = cert.public_key().map_err(|x| err(x.to_string()))?;
            if !pubkey.public_eq(&key) {
                return Err(err(format!("{}.key does not belong to {}.crt", e.id, e.id)));
            }
            let mut k = describe(e.id.clone(), e.state, key, cert)?;
            k.retired_at = e
                .retired_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp());
            keys.push(k);
        }
        let active = keys.iter().filter(|k| k.state == KeyState::Active).count();
        if active != 1 {
            return Err(err(format!(
                "{active} active keys; exactly one must be active"
            )));
        }
        Ok(KeySet {
            dir: dir.to_path_buf(),
            keys,
        })
    }

    pub fn active(&self) -> &SpKey {
        // `load` guarantees exactly one.
        self.keys
            .iter()
            .find(|k| k.state == KeyState::Active)
            .expect("one active key")
    }

    /// Keys that may decrypt now: active, next, and retired ones within the grace period.
    pub fn decrypting(&self, grace_hours: i64, now: i64) -> impl Iterator<Item = &SpKey> {
        self.keys
            .iter()
            .filter(move |k| match (k.state, k.retired_at) {
                (KeyState::Retired, Some(at)) => now < at + grace_hours * 3600,
                _ => true,
            })
    }

    /// Keys published in metadata: active and next.
    pub fn published(&self) -> impl Iterator<Item = &SpKey> {
        self.keys.iter().filter(|k| k.state != KeyState::Retired)
    }
}

fn describe(
    id: String,
    state: KeyState,
    key: PKey<Private>,
    cert: X509,
) -> Result<SpKey, KeyError> {
    use base64::Engine;
    let der = cert.to_der().map_err(|e| KeyError::Invalid {
        dir: PathBuf::new(),
        msg: e.to_string(),
    })?;
    let digest = openssl::sha::sha256(&der);
    let fingerprint = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let now = Asn1Time::days_from_now(0).expect("asn1 now");
    let days_left = now
        .diff(cert.not_after())
        .map(|d| d.days as i64)
        .unwrap_or(0);
    Ok(SpKey {
        id,
        state,
        cert_b64: base64::engine::general_purpose::STANDARD.encode(&der),
        fingerprint,
        not_after: cert.not_after().to_string(),
        days_left,
        retired_at: None,
        key,
        cert,
    })
}

fn read_state(dir: &Path) -> Result<StateFile, KeyError> {
    let path = dir.join("keyset.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeyError::Invalid {
            dir: dir.to_path_buf(),
            msg: format!("keyset.json is not valid: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(KeyError::Io {
            dir: dir.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

/// A secret that others can read, or whose mode cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum NotPrivate {
    #[error("{what} {}: {source}", path.display())]
    Unreadable {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} is accessible by group or others (mode {mode:03o}); only the service's user may read it\n  fix: {fix}", path.display())]
    Exposed {
        what: String,
        path: PathBuf,
        mode: u32,
        fix: String,
    },
}

/// Refuses a secret (a private key file, the store directory) that group or others can
/// access; the message gives the `chmod` that fixes it. A missing path passes (the store is
/// created private; a missing key is reported by whoever loads it).
pub fn ensure_private(path: &Path, what: &str) -> Result<(), NotPrivate> {
    use std::os::unix::fs::PermissionsExt;
    let m = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(NotPrivate::Unreadable {
                what: what.into(),
                path: path.into(),
                source,
            })
        }
    };
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let fix = if m.is_dir() {
        format!("chmod -R go-rwx {}", path.display())
    } else {
        format!("chmod 600 {}", path.display())
    };
    Err(NotPrivate::Exposed {
        what: what.into(),
        path: path.into(),
        mode,
        fix,
    })
}

/// [`ensure_private`] with the message as a string (for callers that report strings).
pub fn check_private(path: &Path, what: &str) -> Result<(), String> {
    ensure_private(path, what).map_err(|e| e.to_string())
}

/// The private key files (`*.key`) of a key-set directory.
pub fn private_key_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "key"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix, and the
/// new content survives a crash once this returns.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Creates a new RSA-3072 key with a self-signed certificate. The first key of a set becomes
/// active; later ones start as `next` (published, not signing) until promoted.
/// The kind of key pair a key set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA-3072: SAML signing and decryption.
    Rsa,
    /// ECDSA P-256: session tokens (JWT ES256).
    EcP256,
}

pub fn new_key(dir: &Path, common_name: &str, days: u32) -> Result<(String, KeyState), KeyError> {
    new_key_of(dir, common_name, days, KeyKind::Rsa)
}

pub fn new_key_of(
    dir: &Path,
    common_name: &str,
    days: u32,
    kind: KeyKind,
) -> Result<(String, KeyState), KeyError> {
    let io = |msg: String| KeyError::Io {
        dir: dir.to_path_buf(),
        msg,
    };
    fs::create_dir_all(dir).map_err(|e| io(format!("cannot create directory: {e}")))?;
    let _lock = lock_dir(dir)?;
    let mut state = read_state(dir)?;
    let made = match kind {
        KeyKind::Rsa => self_signed(common_name, days),
        KeyKind::EcP256 => self_signed_with(ec_p256()?, common_name, days),
    };
    let (key, cert) = made.map_err(|e| io(format!("openssl: {e}")))?;
    let id = format!("sp-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let id = if state.keys.iter().any(|k| k.id == id) {
        format!("{id}-{}", state.keys.len())
    } else {
        id
    };
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| io(e.to_string()))?;
    let crt_pem = cert.to_pem().map_err(|e| io(e.to_string()))?;
    write_atomic(&dir.join(format!("{id}.key")), &key_pem, 0o600).map_err(|e| io(e.to_string()))?;
    write_atomic(&dir.join(format!("{id}.crt")), &crt_pem, 0o644).map_err(|e| io(e.to_string()))?;
    let st = if state.keys.iter().any(|k| k.state == KeyState::Active) {
        KeyState::Next
    } else {
        KeyState::Active
    };
    state.keys.push(StateEntry {
        id: id.clone(),
        state: st,
        created: chrono::Utc::now().to_rfc3339(),
        retired_at: None,
    });
    let json = serde_json::to_vec_pretty(&state).map_err(|e| io(e.to_string()))?;
    write_atomic(&dir.join("keyset.json"), &json, 0o644).map_err(|e| io(e.to_string()))?;
    audit_key_change(dir, AuditAction::KeysNew, &id, &format!("state={st:?}"))?;
    Ok((id, st))
}

/// Serialises key-set changes between processes (two operators, or a script and a person).
fn lock_dir(dir: &Path) -> Result<fs::File, KeyError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(|e| KeyError::Io {
            dir: dir.to_path_buf(),
            msg: format!("lock file: {e}"),
        })?;
    f.lock().map_err(|e| KeyError::Io {
        dir: dir.to_path_buf(),
        msg: format!("lock: {e}"),
    })?;
    Ok(f)
}

/// Key changes are audited in `keys_dir/audit.jsonl` (append, fsync): the gateway's store is
/// locked by the running process, and rotation happens while it runs.
fn audit_key_change(
    dir: &Path,
    action: AuditAction,
    id: &str,
    detail: &str,
) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let line = serde_json::json!({
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "actor": std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into()),
        "action": action.name(),
        "key": id,
        "detail": detail,
    });
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(dir.join("audit.jsonl"))
        .and_then(|mut f| {
            writeln!(f, "{line}")?;
            f.sync_all()?;
            Ok(f)
        })
        .map_err(|e| KeyError::Io {
            dir: dir.to_path_buf(),
            msg: format!("audit.jsonl: {e}"),
        })?;
    let _ = f.flush();
    Ok(())
}

/// A state change of the key set, checked, written atomically and audited.
pub enum Transition {
    /// next -> active; the previous active key becomes next (published, decrypting, not signing)
    /// until it is retired.
    Promote,
    /// next -> retired (unpublished; still decrypts during the grace period).
    Retire,
    /// retired -> gone (files deleted) once the grace period has passed, or with `force`.
    Remove { grace_hours: i64, force: bool },
}

pub fn transition(dir: &Path, id: &str, t: Transition) -> Result<String, KeyError> {
    let err = |msg: String| KeyError::Invalid {
        dir: dir.to_path_buf(),
        msg,
    };
    let _lock = lock_dir(dir)?;
    let mut state = read_state(dir)?;
    let idx = state
        .keys
        .iter()
        .position(|k| k.id == id)
        .ok_or_else(|| err(format!("no key {id}; see `samlgate keys list`")))?;
    let cur = state.keys[idx].state;
    let (action, summary) = match t {
        Transition::Promote => {
            if cur != KeyState::Next {
                return Err(err(format!(
                    "{id} is {cur:?}; only a `next` key can be promoted"
                )));
            }
            let mut old = String::new();
            for k in state.keys.iter_mut() {
                if k.state == KeyState::Active {
                    k.state = KeyState::Next;
                    old = k.id.clone();
                }
            }
            state.keys[idx].state = KeyState::Active;
            (AuditAction::KeysPromote, format!("{id} is active; {old} is now next (still published and decrypting) until retired"))
        }
        Transition::Retire => {
            if cur != KeyState::Next {
                return Err(err(format!(
                    "{id} is {cur:?}; only a `next` key can be retired (promote another key first if it is active)"
                )));
            }
            state.keys[idx].state = KeyState::Retired;
            state.keys[idx].retired_at = Some(chrono::Utc::now().to_rfc3339());
            (
                AuditAction::KeysRetire,
                format!("{id} is retired: no longer published; still decrypts until removed"),
            )
        }
        Transition::Remove { grace_hours, force } => {
            if cur != KeyState::Retired {
                return Err(err(format!("{id} is {cur:?}; retire it first")));
            }
            let retired_at = state.keys[idx]
                .retired_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            if let Some(at) = retired_at {
                let left = at + chrono::Duration::hours(grace_hours) - chrono::Utc::now();
                if left > chrono::Duration::zero() && !force {
                    return Err(err(format!(
                        "{id} was retired {} ago; the grace period ({grace_hours} h) has {} min left. \
                         Assertions encrypted to it may still arrive. Use --force to remove now",
                        humanize(chrono::Utc::now() - at),
                        left.num_minutes()
                    )));
                }
            }
            state.keys.remove(idx);
            (AuditAction::KeysRemove, format!("{id} removed"))
        }
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| err(e.to_string()))?;
    write_atomic(&dir.join("keyset.json"), &json, 0o644).map_err(|e| err(e.to_string()))?;
    if action == AuditAction::KeysRemove {
        // The state no longer names the files; delete them after the state is durable.
        let _ = fs::remove_file(dir.join(format!("{id}.key")));
        let _ = fs::remove_file(dir.join(format!("{id}.crt")));
    }
    audit_key_change(dir, action, id, &summary)?;
    Ok(summary)
}

fn humanize(d: chrono::Duration) -> String {
    if d.num_hours() >= 1 {
        format!("{} h", d.num_hours())
    } else {
        format!("{} min", d.num_minutes())
    }
}

fn ec_p256() -> Result<PKey<Private>, KeyError> {
    let e = |x: openssl::error::ErrorStack| KeyError::Invalid {
        dir: PathBuf::new(),
        msg: x.to_string(),
    };
    let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(e)?;
    let ec = openssl::ec::EcKey::generate(&group).map_err(e)?;
    PKey::from_ec_key(ec).map_err(e)
}

pub fn self_signed(
    cn: &str,
    days: u32,
) -> Result<(PKey<Private>, X509), openssl::error::ErrorStack> {
    let rsa = Rsa::generate(3072)?;
    self_signed_with(PKey::from_rsa(rsa)?, cn, days)
}

pub fn self_signed_with(
    key: PKey<Private>,
    cn: &str,
    days: u32,
) -> Result<(PKey<Private>, X509), openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(128, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let (nb, na) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(days)?);
    b.set_not_before(&nb)?;
    b.set_not_after(&na)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((key, b.build()))
}

/// The host part of a URL, for a certificate CN.
pub fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split(['/', ':'])
        .next()
        .unwrap_or("samlgate")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_is_active_second_is_next() {
        let dir = tempfile::tempdir().unwrap();
        let (a, sa) = new_key(dir.path(), "gw.test", 30).unwrap();
        let (b, sb) = new_key(dir.path(), "gw.test", 30).unwrap();
        assert_eq!(sa, KeyState::Active);
        assert_eq!(sb, KeyState::Next);
        let set = KeySet::load(dir.path()).unwrap();
        assert_eq!(set.active().id, a);
        assert_eq!(set.published().count(), 2);
        assert!(set.keys.iter().any(|k| k.id == b));
        assert!(set.active().days_left >= 29);
    }

    #[test]
    fn rotation_sequence_and_guards() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = new_key(dir.path(), "gw.test", 30).unwrap();
        let (b, _) = new_key(dir.path(), "gw.test", 30).unwrap();
        assert!(
            transition(dir.path(), &a, Transition::Promote).is_err(),
            "active cannot be promoted"
        );
        assert!(
            transition(dir.path(), &a, Transition::Retire).is_err(),
            "active cannot be retired"
        );
        transition(dir.path(), &b, Transition::Promote).unwrap();
        let set = KeySet::load(dir.path()).unwrap();
        assert_eq!(set.active().id, b);
        assert_eq!(
            set.published().count(),
            2,
            "old key still published after promote"
        );
        transition(dir.path(), &a, Transition::Retire).unwrap();
        let set = KeySet::load(dir.path()).unwrap();
        assert_eq!(set.published().count(), 1);
        assert_eq!(set.keys.len(), 2, "retired key still loaded for decryption");
        let now = chrono::Utc::now().timestamp();
        assert_eq!(
            set.decrypting(24, now).count(),
            2,
            "retired key decrypts within the grace period"
        );
        assert_eq!(
            set.decrypting(24, now + 25 * 3600).count(),
            1,
            "and not after it"
        );
        let e = transition(
            dir.path(),
            &a,
            Transition::Remove {
                grace_hours: 24,
                force: false,
            },
        );
        assert!(e.err().unwrap().to_string().contains("grace"));
        transition(
            dir.path(),
            &a,
            Transition::Remove {
                grace_hours: 24,
                force: true,
            },
        )
        .unwrap();
        assert_eq!(KeySet::load(dir.path()).unwrap().keys.len(), 1);
        assert!(!dir.path().join(format!("{a}.key")).exists());
        let audit = fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        let actions: Vec<&str> = [
            "keys.new",
            "keys.new",
            "keys.promote",
            "keys.retire",
            "keys.remove",
        ]
        .to_vec();
        let seen: Vec<String> = audit
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(seen, actions);
    }

    #[test]
    fn mismatched_key_and_cert_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = new_key(dir.path(), "gw.test", 30).unwrap();
        let (_k, other) = self_signed("x", 1).unwrap();
        fs::write(dir.path().join(format!("{a}.crt")), other.to_pem().unwrap()).unwrap();
        let msg = KeySet::load(dir.path()).err().unwrap().to_string();
        assert!(msg.contains("does not belong"), "{msg}");
    }

    #[test]
    fn empty_set_says_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let msg = KeySet::load(dir.path()).err().unwrap().to_string();
        assert!(msg.contains("keys new"), "{msg}");
    }

    #[test]
    fn check_private_names_the_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tls.key");
        fs::write(&f, b"k").unwrap();
        let set = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        for bad in [0o644, 0o640, 0o604, 0o620] {
            set(&f, bad);
            let e = check_private(&f, "the private key file").unwrap_err();
            assert!(
                e.contains(&format!("fix: chmod 600 {}", f.display())),
                "{bad:o}: {e}"
            );
        }
        set(&f, 0o600);
        check_private(&f, "the private key file").unwrap();
        set(&f, 0o400);
        check_private(&f, "the private key file").unwrap();
        check_private(&d.path().join("missing"), "x").unwrap();
        set(d.path(), 0o755);
        let e = check_private(d.path(), "the store directory").unwrap_err();
        assert!(
            e.contains(&format!("fix: chmod -R go-rwx {}", d.path().display())),
            "{e}"
        );
        set(d.path(), 0o700);
        check_private(d.path(), "the store directory").unwrap();
        assert_eq!(private_key_files(d.path()), vec![f]);
    }
}
