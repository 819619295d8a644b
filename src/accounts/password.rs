//! Password hashing: argon2id in PHC string format, rehash when the configured cost rises,
//! and a dummy verification for unknown ids so response time does not reveal which exist.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// A password as typed, NFKC-normalised (full-width ＡＢＣ from a Japanese IME and the ASCII
/// "ABC" are the same password). The buffer is wiped on drop, it is neither `Clone` nor
/// `Serialize`, and `Debug`/`Display` print a placeholder, so it cannot reach a log by
/// formatting or by serialising a struct that holds it.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes ownership of the raw form value and wipes it once normalised.
    pub fn new(raw: String) -> Self {
        let raw = Zeroizing::new(raw);
        Password(Zeroizing::new(raw.nfkc().collect()))
    }

    /// The normalised text, for hashing and policy checks only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters (code points), the unit NIST SP 800-63B counts in.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Argon2id cost, from config `[local] argon2_*`. Default: OWASP's minimum (m=19 MiB, t=2,
/// p=1), about 20-40 ms per hash on one core here (see docs/ACCOUNTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams {
            m_kib: 19456,
            t: 2,
            p: 1,
        }
    }
}

/// A stored hash: the PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhcHash(String);

impl PhcHash {
    /// Wraps a PHC string read from the store or an import; checked when verified.
    pub fn from_phc(s: String) -> Self {
        PhcHash(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A hash brought from another system (`accounts import`): only an argon2id PHC string
    /// whose parameters parse is taken, so an import cannot plant a hash that fails open or
    /// that no login can ever verify.
    pub fn imported(s: &str) -> Result<PhcHash, HashError> {
        let parsed = PasswordHash::new(s.trim()).map_err(|_| HashError::Malformed)?;
        if parsed.algorithm != Algorithm::Argon2id.ident() || parsed.hash.is_none() {
            return Err(HashError::Malformed);
        }
        Params::try_from(&parsed).map_err(|_| HashError::Malformed)?;
        Ok(PhcHash(s.trim().to_string()))
    }
}

/// Shows only the algorithm and parameters: even a hash is not for logs.
impl fmt::Debug for PhcHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: Vec<&str> = self.0.split('$').take(4).collect();
        write!(f, "PhcHash({}$…)", head.join("$"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters rejected: {0}")]
    Params(String),
    #[error("stored password hash is not a valid argon2 PHC string")]
    Malformed,
    #[error("password does not match")]
    Mismatch,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The stored hash is weaker than the configured parameters (or not argon2id v1.3):
    /// the caller should store `Hasher::hash` of the same password now, while it has it.
    pub needs_rehash: bool,
}

/// Hashes and verifies at one configured cost. Built once at start-up: it also hashes a
/// random password to have a dummy hash of the same cost for unknown ids.
pub struct Hasher {
    params: HashParams,
    argon: Argon2<'static>,
    dummy: PhcHash,
}

impl Hasher {
    pub fn new(params: HashParams) -> Result<Self, HashError> {
        let p = Params::new(params.m_kib, params.t, params.p, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let mut h = Hasher {
            params,
            argon,
            dummy: PhcHash(String::new()),
        };
        let random = Password::new(crate::accounts::readable_code(4, 5));
        h.dummy = h.hash(&random)?;
        Ok(h)
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// A new PHC hash with a fresh 128-bit salt.
    pub fn hash(&self, pw: &Password) -> Result<PhcHash, HashError> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let h = self
            .argon
            .hash_password(pw.expose().as_bytes(), &salt)
            .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(PhcHash(h.to_string()))
    }

    /// Checks `pw` against `stored` with the parameters recorded in `stored` (so hashes made
    /// at an older cost still verify), and says whether to rehash at the current cost.
    pub fn verify(&self, pw: &Password, stored: &PhcHash) -> Result<Verified, HashError> {
        let parsed = PasswordHash::new(&stored.0).map_err(|_| HashError::Malformed)?;
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return Err(HashError::Malformed);
        }
        let theirs = Params::try_from(&parsed).map_err(|_| HashError::Malformed)?;
        // Verification uses the stored parameters; `self.argon` only supplies the algorithm.
        match self.argon.verify_password(pw.expose().as_bytes(), &parsed) {
            Ok(()) => {}
            Err(argon2::password_hash::Error::Password) => return Err(HashError::Mismatch),
            Err(_) => return Err(HashError::Malformed),
        }
        let weaker = theirs.m_cost() < self.params.m_kib
            || theirs.t_cost() < self.params.t
            || theirs.p_cost() < self.params.p
            || parsed.version != Some(Version::V0x13.into());
        Ok(Verified {
            needs_rehash: weaker,
        })
    }

    /// Spends the same work as `verify` for an id that has no account, then fails: the
    /// answer and its timing are those of a wrong password.
    pub fn dummy_verify(&self, pw: &Password) -> HashError {
        match self.verify(pw, &self.dummy) {
            // A random 20-character dummy cannot match in practice; fail closed regardless.
            Ok(_) | Err(HashError::Mismatch) => HashError::Mismatch,
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Cheap parameters for the logic tests; the default cost is exercised separately.
    fn cheap() -> HashParams {
        HashParams {
            m_kib: 256,
            t: 1,
            p: 1,
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s.to_string())
    }

    #[test]
    fn hash_is_argon2id_phc_with_configured_params_and_verifies() {
        let h = Hasher::new(cheap()).unwrap();
        let stored = h.hash(&pw("correct horse battery")).unwrap();
        assert!(
            stored.as_str().starts_with("$argon2id$v=19$m=256,t=1,p=1$"),
            "{}",
            stored.as_str()
        );
        let v = h.verify(&pw("correct horse battery"), &stored).unwrap();
        assert!(!v.needs_rehash);
        assert_eq!(
            h.verify(&pw("correct horse batterY"), &stored),
            Err(HashError::Mismatch)
        );
        // Salted: the same password hashes differently each time.
        assert_ne!(stored, h.hash(&pw("correct horse battery")).unwrap());
    }

    #[test]
    fn full_width_input_is_the_same_password() {
        let h = Hasher::new(cheap()).unwrap();
        let stored = h.hash(&pw("Secret123")).unwrap();
        assert!(h.verify(&pw("Ｓｅｃｒｅｔ１２３"), &stored).is_ok());
        assert_eq!(pw("ａｂｃ").chars(), 3);
    }

    #[test]
    fn rehash_when_any_stored_param_is_below_config_only() {
        let old = Hasher::new(cheap()).unwrap();
        let stored = old.hash(&pw("pw-for-rehash-test")).unwrap();
        for (m_kib, t, p, want) in [
            (512, 1, 1, true),
            (256, 2, 1, true),
            (256, 1, 2, true),
            (256, 1, 1, false),
            (128, 1, 1, false), // stronger stored hash: never downgrade
        ] {
            let now = Hasher::new(HashParams { m_kib, t, p }).unwrap();
            let v = now.verify(&pw("pw-for-rehash-test"), &stored).unwrap();
            assert_eq!(v.needs_rehash, want, "config m={m_kib} t={t} p={p}");
        }
        // And the new hash at the raised cost no longer asks for a rehash.
        let raised = Hasher::new(HashParams {
            m_kib: 512,
            t: 2,
            p: 1,
        })
        .unwrap();
        let new = raised.hash(&pw("pw-for-rehash-test")).unwrap();
        assert!(
            !raised
                .verify(&pw("pw-for-rehash-test"), &new)
                .unwrap()
                .needs_rehash
        );
    }

    #[test]
    fn other_algorithms_and_garbage_are_malformed_not_accepted() {
        let h = Hasher::new(cheap()).unwrap();
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(256, 1, 1, None).unwrap(),
        )
        .hash_password(b"x", &SaltString::generate(&mut rand::rngs::OsRng))
        .unwrap()
        .to_string();
        assert_eq!(
            h.verify(&pw("x"), &PhcHash::from_phc(argon2i)),
            Err(HashError::Malformed)
        );
        for bad in ["", "plain", "$argon2id$v=19$m=256,t=1,p=1$xx"] {
            let r = h.verify(&pw("x"), &PhcHash::from_phc(bad.into()));
            assert_eq!(r, Err(HashError::Malformed), "{bad}");
        }
    }

    #[test]
    fn password_and_hash_never_format_their_secret() {
        let p = pw("hunter2-super-secret");
        assert!(!format!("{p:?} {p} {p:#?}").contains("hunter2"));
        let h = Hasher::new(cheap()).unwrap().hash(&p).unwrap();
        let shown = format!("{h:?}");
        let salt = h.as_str().split('$').nth(4).unwrap();
        assert!(shown.contains("m=256") && !shown.contains(salt), "{shown}");
    }

    #[test]
    fn params_out_of_range_are_refused() {
        let r = Hasher::new(HashParams {
            m_kib: 1,
            t: 1,
            p: 1,
        });
        assert!(matches!(r, Err(HashError::Params(_))));
    }

    fn fastest(v: Vec<Duration>) -> Duration {
        v.into_iter().min().expect("samples")
    }

    /// Unknown id vs known id with a wrong password, at the default (OWASP) cost: the fastest
    /// runs must be within a factor of 1.5 of each other (~1.0 here, see the printout).
    /// Without `dummy_verify` the unknown-id path takes microseconds and this fails by ~1000x.
    #[test]
    fn dummy_verify_costs_the_same_as_a_wrong_password() {
        let h = Hasher::new(HashParams::default()).unwrap();
        let stored = h.hash(&pw("the real password of someone")).unwrap();
        let wrong = pw("a guess that is wrong");
        let (mut known, mut unknown) = (vec![], vec![]);
        // Interleaved, and compared by their fastest run: other load on the machine only ever
        // adds time, so the minimum is the cost of the work itself.
        for _ in 0..7 {
            let t = Instant::now();
            assert_eq!(h.verify(&wrong, &stored), Err(HashError::Mismatch));
            known.push(t.elapsed());
            let t = Instant::now();
            assert_eq!(h.dummy_verify(&wrong), HashError::Mismatch);
            unknown.push(t.elapsed());
        }
        let (k, u) = (fastest(known), fastest(unknown));
        let ratio = u.as_secs_f64() / k.as_secs_f64();
        eprintln!(
            "argon2id m=19456 t=2 p=1: wrong password {k:?}, unknown id {u:?}, ratio {ratio:.2}"
        );
        assert!(
            (1.0 / 1.5..1.5).contains(&ratio),
            "known {k:?} unknown {u:?}"
        );
    }
}
