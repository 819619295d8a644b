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
            keys.push(describe(e.id.clone(), e.state, key, cert)?);
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
pub fn new_key(dir: &Path, common_name: &str, days: u32) -> Result<(String, KeyState), KeyError> {
    let io = |msg: String| KeyError::Io {
        dir: dir.to_path_buf(),
        msg,
    };
    fs::create_dir_all(dir).map_err(|e| io(format!("cannot create directory: {e}")))?;
    let mut state = read_state(dir)?;
    let (key, cert) = self_signed(common_name, days).map_err(|e| io(format!("openssl: {e}")))?;
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
    });
    let json = serde_json::to_vec_pretty(&state).map_err(|e| io(e.to_string()))?;
    write_atomic(&dir.join("keyset.json"), &json, 0o644).map_err(|e| io(e.to_string()))?;
    Ok((id, st))
}

pub fn self_signed(
    cn: &str,
    days: u32,
) -> Result<(PKey<Private>, X509), openssl::error::ErrorStack> {
    let rsa = Rsa::generate(3072)?;
    let key = PKey::from_rsa(rsa)?;
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
}
