//! Signed identity tokens for backends that verify the user themselves: a JWT (JWS compact,
//! ES256, `kid`) added to upstream requests and `/auth/verify` answers as `X-Samlgate-Jwt`,
//! with the public keys at `/.well-known/jwks.json`.
//!
//! The token keys live in their own key set (`[token] keys_dir`, EC P-256) with the same
//! next/active/retired life as the SP keys: `next` and `active` keys are published in the JWKS
//! (so verifiers learn a key before it signs), only `active` signs.
//!
//! Trade-off: a backend that only checks the token cannot see a logout or a revocation until
//! the token expires; hence short lifetimes (default 5 minutes). Backends behind the proxy get
//! a fresh token on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ecdsa::EcdsaSig;
use serde_json::json;

use crate::keys::KeySet;
use crate::store::SessionRecord;

pub struct TokenSigner {
    pub keys: RwLock<Arc<KeySet>>,
    pub lifetime: i64,
    pub issuer: String,
    pub audience: String,
    /// session id -> (exp, token): one signature per session per half-lifetime, not per request.
    cache: Mutex<HashMap<String, (i64, String)>>,
}

impl TokenSigner {
    pub fn new(
        keys: KeySet,
        lifetime: i64,
        issuer: String,
        audience: String,
    ) -> Result<TokenSigner, String> {
        check_ec(&keys)?;
        Ok(TokenSigner {
            keys: RwLock::new(Arc::new(keys)),
            lifetime,
            issuer,
            audience,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn replace_keys(&self, keys: KeySet) -> Result<(), String> {
        check_ec(&keys)?;
        *self.keys.write().expect("token keys lock") = Arc::new(keys);
        self.cache.lock().expect("token cache").clear();
        Ok(())
    }

    /// A token for this session, from the cache while it has more than half its life left.
    /// Call it only for a session proven live (`web::auth::insert_identity`, given a `Live`):
    /// that is why an ended session's cached token needs no clearing elsewhere
    /// ([`crate::sessions`]).
    pub fn token_for(&self, rec: &SessionRecord) -> Option<String> {
        let now = chrono::Utc::now().timestamp();
        if let Some((exp, t)) = self.cache.lock().ok()?.get(&rec.id) {
            if exp - now > self.lifetime / 2 {
                return Some(t.clone());
            }
        }
        let exp = (now + self.lifetime).min(rec.expires);
        let t = self.sign(rec, now, exp).ok()?;
        let mut c = self.cache.lock().ok()?;
        if c.len() > 100_000 {
            c.retain(|_, (e, _)| *e > now);
        }
        c.insert(rec.id.clone(), (exp, t.clone()));
        Some(t)
    }

    /// Forgets a session's cached token ([`crate::sessions::end`]).
    pub fn forget(&self, session_id: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(session_id);
        }
    }

    /// Whether a token for this session is in the cache.
    #[cfg(test)]
    pub(crate) fn is_cached(&self, session_id: &str) -> bool {
        self.cache.lock().is_ok_and(|c| c.contains_key(session_id))
    }

    pub fn sign(&self, rec: &SessionRecord, iat: i64, exp: i64) -> Result<String, String> {
        let keys = self.keys.read().expect("token keys lock").clone();
        let k = keys.active();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": k.id});
        let p = &rec.profile;
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": p.account_id,
            "sid": rec.id,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "email": p.email,
            "category": p.category,
            "facility_code": p.facility_code,
            "facility_name": p.facility_name,
            "display_name": p.display_name,
            "local_user": rec.local_user_id,
            "amr": amr(rec),
        });
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let digest = openssl::sha::sha256(signing_input.as_bytes());
        let ec = k.key.ec_key().map_err(|e| e.to_string())?;
        let sig = EcdsaSig::sign(&digest, &ec).map_err(|e| e.to_string())?;
        // JOSE wants r || s, each 32 bytes big-endian (RFC 7518 §3.4), not DER.
        let mut raw = sig.r().to_vec_padded(32).map_err(|e| e.to_string())?;
        raw.extend(sig.s().to_vec_padded(32).map_err(|e| e.to_string())?);
        Ok(format!("{signing_input}.{}", B64URL.encode(raw)))
    }

    /// The JWKS: every published (next and active) key.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.read().expect("token keys lock").clone();
        let mut out = Vec::new();
        for k in keys.published() {
            let Ok(ec) = k.key.ec_key() else { continue };
            let mut ctx = match BigNumContext::new() {
                Ok(c) => c,
                Err(_) => continue,
            };
            let (Ok(mut x), Ok(mut y)) = (openssl::bn::BigNum::new(), openssl::bn::BigNum::new())
            else {
                continue;
            };
            if ec
                .public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                .is_err()
            {
                continue;
            }
            let (Ok(xb), Ok(yb)) = (x.to_vec_padded(32), y.to_vec_padded(32)) else {
                continue;
            };
            out.push(json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": k.id,
                "x": B64URL.encode(xb), "y": B64URL.encode(yb),
            }));
        }
        json!({ "keys": out })
    }
}

fn check_ec(keys: &KeySet) -> Result<(), String> {
    for k in &keys.keys {
        let ok = k
            .key
            .ec_key()
            .ok()
            .and_then(|e| e.group().curve_name())
            .is_some_and(|n| n == openssl::nid::Nid::X9_62_PRIME256V1);
        if !ok {
            return Err(format!("token key {} is not an EC P-256 key; create token keys with `samlgate keys new --token`", k.id));
        }
    }
    Ok(())
}

/// The JWT `amr` (RFC 8176) of a session: `["ext"]` for a G-MIS (SAML) login, else the
/// ID/password login's methods.
fn amr(rec: &SessionRecord) -> Vec<&'static str> {
    match rec.auth_method.as_str() {
        "password" => vec!["pwd"],
        "password+totp" => vec!["pwd", "otp", "mfa"],
        "password+recovery" => vec!["pwd", "mfa"],
        _ => vec!["ext"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Profile;

    #[test]
    fn es256_token_verifies_with_the_jwks_key() {
        let dir = tempfile::tempdir().unwrap();
        crate::keys::new_key_of(dir.path(), "tok", 10, crate::keys::KeyKind::EcP256).unwrap();
        let t = TokenSigner::new(
            KeySet::load(dir.path()).unwrap(),
            300,
            "https://gw".into(),
            "menu".into(),
        )
        .unwrap();
        let rec = SessionRecord {
            local_user_id: "GM1".into(),
            id: "sid1".into(),
            profile: Profile {
                account_id: "GM1".into(),
                category: "病院".into(),
                ..Default::default()
            },
            name_id: "GM1".into(),
            name_id_format: None,
            session_index: None,
            created: 0,
            last_seen: 0,
            expires: i64::MAX,
            auth_method: String::new(),
        };
        let tok = t.sign(&rec, 100, 400).unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "GM1");
        assert_eq!(claims["category"], "病院");
        assert_eq!(claims["exp"], 400);
        // Verify r||s against the JWKS coordinates.
        let jwk = &t.jwks()["keys"][0];
        let x =
            openssl::bn::BigNum::from_slice(&B64URL.decode(jwk["x"].as_str().unwrap()).unwrap())
                .unwrap();
        let y =
            openssl::bn::BigNum::from_slice(&B64URL.decode(jwk["y"].as_str().unwrap()).unwrap())
                .unwrap();
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let pubk = openssl::ec::EcKey::from_public_key_affine_coordinates(&group, &x, &y).unwrap();
        let raw = B64URL.decode(parts[2]).unwrap();
        let sig = EcdsaSig::from_private_components(
            openssl::bn::BigNum::from_slice(&raw[..32]).unwrap(),
            openssl::bn::BigNum::from_slice(&raw[32..]).unwrap(),
        )
        .unwrap();
        let digest = openssl::sha::sha256(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(sig.verify(&digest, &pubk).unwrap());
        let bad = openssl::sha::sha256(b"other");
        assert!(!sig.verify(&bad, &pubk).unwrap());
    }

    #[test]
    fn rsa_keys_refused_for_tokens() {
        let dir = tempfile::tempdir().unwrap();
        crate::keys::new_key(dir.path(), "x", 10).unwrap();
        assert!(TokenSigner::new(
            KeySet::load(dir.path()).unwrap(),
            300,
            "i".into(),
            "a".into()
        )
        .is_err());
    }
}
