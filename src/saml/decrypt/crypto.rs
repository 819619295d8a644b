//! The private-key and symmetric steps: RSA-OAEP for the content key, AES-CBC/GCM for the
//! data, and which SP key an EncryptedKey names (an ordering hint only).

use openssl::encrypt::Decrypter;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Crypter, Mode};
use openssl::x509::X509;

use super::algorithms::DataAlg;
use super::structure::{EncKey, Hints};

/// One SP key able to decrypt. `id` is what [`decrypt_in_place`] returns and what
/// `<ds:KeyName>` may name.
pub struct DecryptKey<'a> {
    pub id: &'a str,
    pub key: &'a PKey<Private>,
    pub cert: &'a X509,
}

pub(super) fn names_key(h: &Hints, k: &DecryptKey) -> bool {
    if h.key_names.iter().any(|n| n == k.id) {
        return true;
    }
    if !h.certs_der.is_empty() {
        if let Ok(der) = k.cert.to_der() {
            if h.certs_der.contains(&der) {
                return true;
            }
        }
    }
    if !h.serials.is_empty() {
        if let Ok(dec) = k
            .cert
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_dec_str().map(|s| s.to_string()))
        {
            let norm = |s: &str| {
                let t = s.trim_start_matches('0');
                if t.is_empty() {
                    "0".to_string()
                } else {
                    t.to_string()
                }
            };
            if h.serials.iter().any(|s| norm(s) == norm(&dec)) {
                return true;
            }
        }
    }
    if let Some(ski) = k.cert.subject_key_id() {
        if h.skis.iter().any(|s| s.as_slice() == ski.as_slice()) {
            return true;
        }
    }
    false
}

pub(super) fn rsa_oaep_decrypt(key: &PKey<Private>, ek: &EncKey) -> Result<Vec<u8>, String> {
    if key.id() != Id::RSA {
        return Err("SP key is not RSA".into());
    }
    if ek.cipher.len() != key.size() {
        return Err(format!(
            "EncryptedKey is {} bytes, the RSA modulus {}",
            ek.cipher.len(),
            key.size()
        ));
    }
    let e = |x: openssl::error::ErrorStack| format!("RSA-OAEP: {x}");
    let mut d = Decrypter::new(key).map_err(e)?;
    d.set_rsa_padding(Padding::PKCS1_OAEP).map_err(e)?;
    d.set_rsa_oaep_md(ek.md).map_err(e)?;
    d.set_rsa_mgf1_md(ek.mgf).map_err(e)?;
    if let Some(label) = &ek.label {
        d.set_rsa_oaep_label(label).map_err(e)?;
    }
    let len = d.decrypt_len(&ek.cipher).map_err(e)?;
    let mut out = vec![0u8; len];
    let n = d.decrypt(&ek.cipher, &mut out).map_err(e)?;
    out.truncate(n);
    Ok(out)
}

/// XML-Enc block padding (XML Encryption 1.1 §5.2.1): the last byte is the number of padding
/// bytes, 1..=16; the other padding bytes are arbitrary (not PKCS#7). Returns the unpadded length.
pub(crate) fn xmlenc_unpad(block_plain: &[u8]) -> Option<usize> {
    let n = *block_plain.last()? as usize;
    if n == 0 || n > 16 || n > block_plain.len() {
        return None;
    }
    Some(block_plain.len() - n)
}

pub(super) fn decrypt_content(alg: &DataAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    if alg.gcm {
        if data.len() < 28 {
            return Err("ciphertext too short".into());
        }
        let (iv, rest) = data.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        openssl::symm::decrypt_aead(alg.cipher, key, Some(iv), &[], ct, tag)
            .map_err(|_| "AES-GCM: authentication failed".to_string())
    } else {
        if data.len() < 32 || !data.len().is_multiple_of(16) {
            return Err("ciphertext length".into());
        }
        let (iv, ct) = data.split_at(16);
        let e = |x: openssl::error::ErrorStack| format!("AES-CBC: {x}");
        let mut c = Crypter::new(alg.cipher, Mode::Decrypt, key, Some(iv)).map_err(e)?;
        c.pad(false);
        let mut out = vec![0u8; ct.len() + 16];
        let mut n = c.update(ct, &mut out).map_err(e)?;
        n += c.finalize(&mut out[n..]).map_err(e)?;
        out.truncate(n);
        let keep = xmlenc_unpad(&out).ok_or_else(|| "AES-CBC: bad padding".to_string())?;
        out.truncate(keep);
        Ok(out)
    }
}
