//! The second factor: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, ±1 step accepted),
//! enrolment by an otpauth:// URI shown as a server-side SVG QR code, a replay guard on the
//! last used step, and single-use recovery codes kept only as hashes.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use qrcode::{render::svg, EcLevel, QrCode};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::Sha1;
use zeroize::Zeroizing;

use super::{ct_eq, normalise_code, readable_code, sha256_hex, Message};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps accepted either side of now: absorbs clock drift and a code typed as it rolls over.
pub const WINDOW: i64 = 1;
/// RFC 4226 §4 asks for at least 128 bits and recommends 160: the size of an HMAC-SHA-1 key.
pub const SECRET_BYTES: usize = 20;

/// A shared TOTP key. Stored (base32) in the account record, as it must be to verify codes;
/// never formatted by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// 160 random bits from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut k);
        TotpSecret(k)
    }

    /// Upper-case base32 without padding, as authenticator apps expect it.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// Reads a stored secret; `None` for anything that is not base32 of at least 128 bits.
    pub fn from_base32(s: &str) -> Option<Self> {
        let k = BASE32_NOPAD.decode(s.as_bytes()).ok()?;
        (k.len() >= 16).then(|| TotpSecret(Zeroizing::new(k)))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl Serialize for TotpSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base32())
    }
}

impl<'de> Deserialize<'de> for TotpSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        TotpSecret::from_base32(&s).ok_or_else(|| serde::de::Error::custom("bad TOTP secret"))
    }
}

/// RFC 4226 HOTP with dynamic truncation, `digits` long.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    bin % 10u32.pow(digits)
}

/// The time step that contains unix time `now`.
pub fn step_at(now: i64) -> u64 {
    now.max(0) as u64 / STEP_SECS as u64
}

/// The 6-digit code of `step`, zero-padded (as an authenticator shows it).
pub fn code_at(secret: &TotpSecret, step: u64) -> String {
    format!("{:06}", hotp(&secret.0, step, DIGITS))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("not a 6-digit code")]
    Malformed,
    #[error("wrong code")]
    Wrong,
    /// Right code, but its step was already used: someone may have seen it.
    #[error("code already used")]
    Replayed,
}

impl TotpError {
    pub fn reason(self) -> crate::reason::Reason {
        use crate::reason::Reason;
        match self {
            TotpError::Malformed => Reason::LocalTotpMalformed,
            TotpError::Wrong => Reason::LocalTotpWrong,
            TotpError::Replayed => Reason::LocalTotpReplayed,
        }
    }

    pub fn message(&self) -> Message {
        Message::of(self.reason())
    }
}

/// Checks `input` at `now`. Accepts steps now-1..=now+1 that are later than `last_step`, and
/// returns the matched step: the caller must store it as the new `last_step` so the same
/// code cannot be used twice (RFC 6238 §5.2).
pub fn verify(
    secret: &TotpSecret,
    input: &str,
    now: i64,
    last_step: Option<u64>,
) -> Result<u64, TotpError> {
    let code = normalise_code(input);
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }
    let centre = step_at(now) as i64;
    let mut replayed = false;
    // Every candidate is computed and compared, so timing does not tell which step matched.
    let mut accepted = None;
    for step in (centre - WINDOW..=centre + WINDOW).filter(|s| *s >= 0) {
        let step = step as u64;
        if ct_eq(&code_at(secret, step), &code) {
            if last_step.is_some_and(|l| step <= l) {
                replayed = true;
            } else if accepted.is_none() {
                accepted = Some(step);
            }
        }
    }
    match (accepted, replayed) {
        (Some(s), _) => Ok(s),
        (None, true) => Err(TotpError::Replayed),
        (None, false) => Err(TotpError::Wrong),
    }
}

/// What to show on the enrolment page: the secret (for typing by hand), its URI and a QR code.
pub struct Enrolment {
    pub secret: TotpSecret,
    pub uri: String,
    /// An `<svg>` element (no XML declaration), ready to inline in the page.
    pub qr_svg: String,
}

/// Characters kept as-is in the otpauth label and issuer; the rest is percent-encoded (UTF-8),
/// including ':' which separates issuer from account in the label.
const LABEL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// The Key URI Format understood by Google Authenticator, Microsoft Authenticator, FreeOTP
/// and 1Password; the issuer appears both as label prefix and parameter, as it asks.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    let iss = utf8_percent_encode(issuer, LABEL).to_string();
    let acc = utf8_percent_encode(account, LABEL);
    format!(
        "otpauth://totp/{iss}:{acc}?secret={}&issuer={iss}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        secret.to_base32()
    )
}

/// The QR code of `data` as an SVG element, drawn here (no external service sees the secret).
pub fn qr_svg(data: &str) -> String {
    // EC level M: survives a glare spot on a screen; the URI fits a version ~8 symbol.
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .expect("an otpauth URI fits in a QR code");
    let svg = code
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    }
}

impl Enrolment {
    /// A new secret for `account` (the user id) at `issuer` (e.g. 医療情報ネット).
    pub fn new(issuer: &str, account: &str) -> Self {
        let secret = TotpSecret::generate();
        let uri = otpauth_uri(&secret, issuer, account);
        let qr_svg = qr_svg(&uri);
        Enrolment {
            secret,
            uri,
            qr_svg,
        }
    }
}

/// How many recovery codes an enrolment issues.
pub const RECOVERY_CODES: usize = 10;

/// Recovery codes, kept only as SHA-256 of their normalised form: each is 16 characters from a
/// 31-symbol alphabet (79 bits), too many to search even with a fast hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecoveryCodes(Vec<String>);

impl RecoveryCodes {
    /// New codes: the plain ones to show once (`xxxx-xxxx-xxxx-xxxx`), and their hashes.
    pub fn generate() -> (Vec<String>, RecoveryCodes) {
        let plain: Vec<String> = (0..RECOVERY_CODES).map(|_| readable_code(4, 4)).collect();
        let hashes = plain
            .iter()
            .map(|c| sha256_hex(normalise_code(c).as_bytes()))
            .collect();
        (plain, RecoveryCodes(hashes))
    }

    pub fn remaining(&self) -> usize {
        self.0.len()
    }

    /// Uses up the code `input` if it is one of the unused ones; `false` otherwise.
    pub fn redeem(&mut self, input: &str) -> bool {
        let h = sha256_hex(normalise_code(input).as_bytes());
        // Compare against every entry, so timing does not reveal the position.
        let mut hit = None;
        for (i, stored) in self.0.iter().enumerate() {
            if ct_eq(stored, &h) && hit.is_none() {
                hit = Some(i);
            }
        }
        hit.map(|i| self.0.remove(i)).is_some()
    }
}

#[cfg(test)]
mod tests;
