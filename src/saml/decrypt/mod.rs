//! XML Encryption: turning the one `saml:EncryptedAssertion` of a Response back into its
//! `saml:Assertion`, with openssl and the SP key set.
//!
//! [`decrypt_in_place`] returns the Response with the EncryptedAssertion element replaced, in
//! place, by the decrypted plaintext; the caller runs its full verification (prescan, signature,
//! conditions) on that document. Nothing here makes the assertion trusted.
//!
//! Security properties:
//! - Algorithms are an allow-list: key transport RSA-OAEP only (`xmlenc#rsa-oaep-mgf1p`,
//!   `xmlenc11#rsa-oaep`; OAEP digest SHA-1/224/256/384/512, MGF1 with SHA-1/224/256/384/512,
//!   optional `OAEPparams` label), content AES-128/192/256-CBC and AES-128/192/256-GCM. Anything
//!   else is refused with an error naming the algorithm. `xmlenc#rsa-1_5` (PKCS#1 v1.5,
//!   Bleichenbacher oracle class) is refused as [`DecryptError::Rsa15Refused`] while the
//!   structure is read, before any RSA operation. No key wrap, key agreement, CipherReference
//!   (detached data) or retrieval of anything outside the EncryptedAssertion.
//! - The whole structure (algorithms, EncryptedKeys, base64) is read and checked before any
//!   private-key operation; those errors depend only on public input.
//! - Every failure after that point (RSA-OAEP decoding, wrong content-key length, GCM tag,
//!   CBC padding, plaintext not UTF-8, plaintext not one well-formed Assertion element, result
//!   not passing [`prescan`]) is the same error, [`DecryptError::NoKeyWorked`], returned only
//!   after every (SP key, EncryptedKey) pair was tried. Its `Display` says nothing about the
//!   step that failed; the per-attempt reasons are in its `detail` field, for logs only. This
//!   does not remove timing differences. The plaintext test is all-or-nothing over the whole
//!   plaintext, so CBC malleability yields no byte-wise "is it well-formed" oracle (the
//!   Jager–Somorovsky 2011 attack on XML Encryption needed distinct parse errors); GCM is
//!   listed first in [`DATA_ALGORITHMS`] for the metadata. Where the IdP signs the whole
//!   Response, the caller should verify that signature *before* decrypting (see below), which
//!   shuts every chosen-ciphertext oracle for signed responses.
//! - Namespaces are resolved by URI with quick-xml's `NsReader`, so `xenc`/`ds`/`xenc11` may be
//!   bound to any prefix (or be the default namespace) on any element or ancestor.
//! - The plaintext must be UTF-8, must be exactly one element (after optional whitespace) whose
//!   local name is `Assertion`, balanced, without `<!DOCTYPE` or `<?xml` anywhere; the spliced
//!   document must pass [`prescan`] with exactly one, now plain, Assertion as a direct child of
//!   the Response. The assertion is not interpreted further here.
//! - XML-Enc parses the plaintext in the context of the EncryptedData's parent, i.e. the
//!   EncryptedAssertion. When the plaintext uses a prefix it does not declare, and the
//!   EncryptedAssertion start tag declares it differently from the Response (e.g.
//!   `<saml:EncryptedAssertion xmlns:saml=…>` under a Response that never binds `saml`), that
//!   declaration is copied onto the plaintext's root start tag, right after its name; that is
//!   the only change to the plaintext bytes. Exclusive c14n (SAML signatures) gives the same
//!   output either way, as the prefix meant the same URI where the plaintext was parsed.
//! - Bounded work: at most [`MAX_ENCRYPTED_KEYS`] EncryptedKeys, so at most that many RSA
//!   private-key operations per SP key; CipherValues larger than the document are refused; no
//!   unwrap/expect on input.
//!
//! What the caller must do:
//! - Response signed (the signature covers the EncryptedAssertion): the returned document no
//!   longer matches that signature. Verify the signature on the *encrypted* document first and
//!   decrypt the verified (signed) bytes; the decrypted assertion is then covered by it.
//! - Only the Assertion signed (signed, then encrypted): verify the returned document; the
//!   assertion's own signature is what makes it trusted.

mod algorithms;
mod crypto;
mod error;
mod splice;
mod structure;

pub use algorithms::{
    AES128_CBC, AES128_GCM, AES192_CBC, AES192_GCM, AES256_CBC, AES256_GCM, DATA_ALGORITHMS,
    KEY_TRANSPORT_ALGORITHMS, MAX_ENCRYPTED_KEYS, NS_DS, NS_XENC, NS_XENC11, RSA_1_5, RSA_OAEP,
    RSA_OAEP_MGF1P, TYPE_ELEMENT, TYPE_ENCRYPTED_KEY,
};
pub use crypto::DecryptKey;
pub use error::DecryptError;

use super::prescan::prescan;
use crypto::{decrypt_content, names_key, rsa_oaep_decrypt};
use splice::{check_plaintext, splice};
use structure::{read_structure, scan, EncKey, Plan, Scan};

/// Decrypts the one `saml:EncryptedAssertion` (a direct child of the `samlp:Response` root)
/// of `doc`. Returns the document with that element replaced by the plaintext Assertion, and
/// the id of the key that decrypted it. Keys named by the EncryptedKey's `ds:KeyInfo` are tried
/// first, then every other key.
pub fn decrypt_in_place(doc: &str, keys: &[DecryptKey]) -> Result<(String, String), DecryptError> {
    // The rest of the document must already be acceptable, so that a prescan failure of the
    // spliced result can only come from the plaintext.
    prescan(doc).map_err(|e| DecryptError::Malformed(format!("response: {e:?}")))?;
    let scan = scan(doc)?;
    let plan = read_structure(&scan.ea, doc.len())?;
    if keys.is_empty() {
        return Err(DecryptError::NoKeys);
    }

    // Try order: pairs whose EncryptedKey names the SP key, then every other pair.
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (ei, ek) in plan.keys.iter().enumerate() {
        for (ki, k) in keys.iter().enumerate() {
            if names_key(&ek.hints, k) && !order.contains(&(ki, ei)) {
                order.push((ki, ei));
            }
        }
    }
    for ki in 0..keys.len() {
        for ei in 0..plan.keys.len() {
            if !order.contains(&(ki, ei)) {
                order.push((ki, ei));
            }
        }
    }

    let mut detail = Vec::new();
    for (ki, ei) in order {
        let (k, ek) = match (keys.get(ki), plan.keys.get(ei)) {
            (Some(k), Some(ek)) => (k, ek),
            _ => continue,
        };
        match attempt(doc, &scan, &plan, k, ek) {
            Ok(out) => return Ok((out, k.id.to_string())),
            Err(why) => detail.push(format!("key {} / EncryptedKey #{ei}: {why}", k.id)),
        }
    }
    Err(DecryptError::NoKeyWorked {
        detail: detail.join("; "),
    })
}

/// One (SP key, EncryptedKey) attempt. The error is for the log only.
fn attempt(
    doc: &str,
    scan: &Scan,
    plan: &Plan,
    k: &DecryptKey,
    ek: &EncKey,
) -> Result<String, String> {
    let cek = rsa_oaep_decrypt(k.key, ek)?;
    if cek.len() != plan.data.key_len {
        return Err(format!(
            "content key is {} bytes, {} wants {}",
            cek.len(),
            plan.data.uri,
            plan.data.key_len
        ));
    }
    let plain = decrypt_content(&plan.data, &cek, &plan.cipher)?;
    let text = String::from_utf8(plain).map_err(|_| "plaintext is not UTF-8".to_string())?;
    let root = check_plaintext(&text)?;
    splice(doc, scan, &text, &root)
}

#[cfg(test)]
mod tests {
    use super::algorithms::*;
    use super::crypto::*;
    use super::splice::*;
    use super::*;
    use base64::Engine;
    use openssl::encrypt::Encrypter;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Padding;
    use openssl::rsa::Rsa;
    use openssl::symm::Cipher;
    use openssl::x509::X509;
    use std::sync::OnceLock;

    #[test]
    fn padding_is_xmlenc_not_pkcs7() {
        // Arbitrary padding bytes with the count last: accepted.
        let mut b = b"0123456789".to_vec();
        b.extend_from_slice(&[0xAA, 0x17, 0x00, 0xFF, 0x42, 6]);
        assert_eq!(xmlenc_unpad(&b), Some(10));
        // A whole padding block.
        let mut full = vec![7u8; 16];
        full[15] = 16;
        assert_eq!(xmlenc_unpad(&full), Some(0));
        // PKCS#7 still fine.
        let mut p = b"abc".to_vec();
        p.extend_from_slice(&[13u8; 13]);
        assert_eq!(xmlenc_unpad(&p), Some(3));
        // 0, >16, longer than the data, empty: refused.
        assert_eq!(xmlenc_unpad(&[1, 2, 3, 0]), None);
        assert_eq!(xmlenc_unpad(&[17u8; 32]), None);
        assert_eq!(xmlenc_unpad(&[5u8; 4]), None);
        assert_eq!(xmlenc_unpad(&[]), None);
    }

    const RESP_OPEN: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0">"#;

    fn key() -> &'static (PKey<Private>, X509) {
        static K: OnceLock<(PKey<Private>, X509)> = OnceLock::new();
        K.get_or_init(|| {
            let pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
            let mut b = openssl::x509::X509Builder::new().unwrap();
            b.set_pubkey(&pkey).unwrap();
            b.sign(&pkey, MessageDigest::sha256()).unwrap();
            (pkey, b.build())
        })
    }

    fn oaep(cek: &[u8], md: MessageDigest, mgf: MessageDigest) -> String {
        let (pk, _) = key();
        let mut e = Encrypter::new(pk).unwrap();
        e.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        e.set_rsa_oaep_md(md).unwrap();
        e.set_rsa_mgf1_md(mgf).unwrap();
        let mut out = vec![0; e.encrypt_len(cek).unwrap()];
        let n = e.encrypt(cek, &mut out).unwrap();
        out.truncate(n);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    fn gcm(cek: &[u8], plain: &str) -> String {
        let iv = [9u8; 12];
        let mut tag = [0u8; 16];
        let ct = openssl::symm::encrypt_aead(
            Cipher::aes_128_gcm(),
            cek,
            Some(&iv),
            &[],
            plain.as_bytes(),
            &mut tag,
        )
        .unwrap();
        let mut all = iv.to_vec();
        all.extend(ct);
        all.extend(tag);
        base64::engine::general_purpose::STANDARD.encode(all)
    }

    const ASSERTION: &str = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1"><saml:Subject><saml:NameID>GM1</saml:NameID></saml:Subject></saml:Assertion>"#;

    fn dk() -> Vec<DecryptKey<'static>> {
        let (k, c) = key();
        vec![DecryptKey {
            id: "k1",
            key: k,
            cert: c,
        }]
    }

    /// The same EncryptedAssertion written with prefixes declared locally, on the root, as
    /// default namespaces, and with unusual prefixes: all decrypt.
    #[test]
    fn namespaces_resolved_by_uri_not_prefix() {
        let cek = [3u8; 16];
        let ekv = oaep(&cek, MessageDigest::sha1(), MessageDigest::sha1());
        let cv = gcm(&cek, ASSERTION);
        let sa = r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#;
        let variants = [
            // local prefixes
            format!(
                r#"{RESP_OPEN}<saml:EncryptedAssertion {sa}><xenc:EncryptedData xmlns:xenc="{NS_XENC}" Type="{TYPE_ELEMENT}"><xenc:EncryptionMethod Algorithm="{AES128_GCM}"/><ds:KeyInfo xmlns:ds="{NS_DS}"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{RSA_OAEP_MGF1P}"><ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{ekv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{cv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#
            ),
            // default namespaces (ADFS style)
            format!(
                r#"{RESP_OPEN}<saml:EncryptedAssertion {sa}><EncryptedData xmlns="{NS_XENC}" Type="{TYPE_ELEMENT}"><EncryptionMethod Algorithm="{AES128_GCM}"/><KeyInfo xmlns="{NS_DS}"><EncryptedKey xmlns="{NS_XENC}"><EncryptionMethod Algorithm="{RSA_OAEP_MGF1P}"/><CipherData><CipherValue>{ekv}</CipherValue></CipherData></EncryptedKey></KeyInfo><CipherData><CipherValue>{cv}</CipherValue></CipherData></EncryptedData></saml:EncryptedAssertion></samlp:Response>"#
            ),
            // declared on the root, odd prefixes, swapped meanings of e/d
            format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:d="{NS_XENC}" xmlns:e="{NS_DS}" ID="_r"><saml:EncryptedAssertion {sa}><d:EncryptedData><d:EncryptionMethod Algorithm="{AES128_GCM}"/><e:KeyInfo><d:EncryptedKey><d:EncryptionMethod Algorithm="{RSA_OAEP_MGF1P}"/><d:CipherData><d:CipherValue>{ekv}</d:CipherValue></d:CipherData></d:EncryptedKey></e:KeyInfo><d:CipherData><d:CipherValue>{cv}</d:CipherValue></d:CipherData></d:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#
            ),
        ];
        for v in &variants {
            let (out, id) = decrypt_in_place(v, &dk()).unwrap_or_else(|e| panic!("{e:?}\n{v}"));
            assert_eq!(id, "k1");
            assert!(out.contains(ASSERTION), "{out}");
            assert!(out.starts_with(&v[..v.find("<saml:EncryptedAssertion").unwrap()]));
            assert!(out.ends_with("</samlp:Response>"));
        }
        // The right local names in the wrong namespace are not EncryptedData.
        let wrong = variants[0].replace(NS_XENC, "http://example.com/not-xenc#");
        assert!(matches!(
            decrypt_in_place(&wrong, &dk()),
            Err(DecryptError::Malformed(_))
        ));
        // An undeclared prefix is malformed, not guessed.
        let undeclared = variants[1]
            .replace(
                r#"<KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#">"#,
                "<ds:KeyInfo>",
            )
            .replace("</KeyInfo>", "</ds:KeyInfo>");
        assert!(decrypt_in_place(&undeclared, &dk()).is_err());
    }

    /// Declarations on the EncryptedAssertion are the plaintext's context.
    #[test]
    fn context_declarations_are_carried_over() {
        let cek = [4u8; 16];
        let ekv = oaep(&cek, MessageDigest::sha256(), MessageDigest::sha1());
        let plain = r#"<saml:Assertion ID="_a2"><saml:Issuer>x</saml:Issuer></saml:Assertion>"#;
        let cv = gcm(&cek, plain);
        let doc = format!(
            r#"{RESP_OPEN}<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="{NS_XENC}"><xenc:EncryptionMethod Algorithm="{AES128_GCM}"/><ds:KeyInfo xmlns:ds="{NS_DS}"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{RSA_OAEP_MGF1P}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/></xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{ekv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{cv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#
        );
        let (out, _) = decrypt_in_place(&doc, &dk()).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{RESP_OPEN}<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a2"><saml:Issuer>x</saml:Issuer></saml:Assertion></samlp:Response>"#
            )
        );
    }

    #[test]
    fn plaintext_checks() {
        assert!(check_plaintext(ASSERTION).is_ok());
        assert!(check_plaintext(&format!("\n  {ASSERTION}\n")).is_ok());
        let r = check_plaintext(&format!(" {ASSERTION}")).unwrap();
        assert_eq!(r.name_end, " <saml:Assertion".len());
        assert!(r.free_prefixes.is_empty());
        let r = check_plaintext(
            r#"<saml:Assertion a:x="1"><saml:Issuer/><b:Y xmlns:b="urn:b"><b:Z xml:lang="ja"/></b:Y><Q/></saml:Assertion>"#,
        )
        .unwrap();
        assert_eq!(r.free_prefixes, vec!["saml", "a", ""]);
        for bad in [
            format!("<?xml version=\"1.0\"?>{ASSERTION}"),
            format!("<!DOCTYPE x>{ASSERTION}"),
            ASSERTION.replace("<saml:Subject>", "<!DOCTYPE x><saml:Subject>"),
            ASSERTION.replace("<saml:Subject>", "<?xml version=\"1.0\"?><saml:Subject>"),
            format!("text{ASSERTION}"),
            format!("{ASSERTION}text"),
            format!("{ASSERTION}{ASSERTION}"),
            format!("<!-- c -->{ASSERTION}"),
            format!("{ASSERTION}</samlp:Response><samlp:Response>"),
            ASSERTION.replace("</saml:Assertion>", ""),
            "<saml:Attribute/>".to_string(),
            "\u{feff}<saml:Assertion/>".to_string(),
            String::new(),
        ] {
            assert!(check_plaintext(&bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn structure_errors_before_rsa() {
        let cek = [5u8; 16];
        let ekv = oaep(&cek, MessageDigest::sha1(), MessageDigest::sha1());
        let cv = gcm(&cek, ASSERTION);
        let mk = |kt: &str, data: &str, extra_em: &str| {
            format!(
                r#"{RESP_OPEN}<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="{NS_XENC}" xmlns:ds="{NS_DS}"><xenc:EncryptionMethod Algorithm="{data}"/><ds:KeyInfo><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{kt}">{extra_em}</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{ekv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{cv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#
            )
        };
        assert!(decrypt_in_place(&mk(RSA_OAEP_MGF1P, AES128_GCM, ""), &dk()).is_ok());
        // RSA-1_5 refused even with no keys at all (no RSA operation possible).
        assert!(matches!(
            decrypt_in_place(&mk(RSA_1_5, AES128_GCM, ""), &[]),
            Err(DecryptError::Rsa15Refused)
        ));
        let e = decrypt_in_place(&mk(RSA_OAEP_MGF1P, "urn:x:des", ""), &dk()).unwrap_err();
        assert!(e.to_string().contains("urn:x:des"), "{e}");
        let e = decrypt_in_place(
            &mk(
                RSA_OAEP_MGF1P,
                AES128_GCM,
                r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#ripemd160"/>"#,
            ),
            &dk(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ripemd160"), "{e}");
        // MGF other than SHA-1 only with xmlenc11#rsa-oaep.
        let mgf = format!(
            r#"<m:MGF xmlns:m="{NS_XENC11}" Algorithm="http://www.w3.org/2009/xmlenc11#mgf1sha256"/>"#
        );
        assert!(matches!(
            decrypt_in_place(&mk(RSA_OAEP_MGF1P, AES128_GCM, &mgf), &dk()),
            Err(DecryptError::Malformed(_))
        ));
        assert!(matches!(
            decrypt_in_place(&mk(RSA_OAEP_MGF1P, AES128_GCM, ""), &[]),
            Err(DecryptError::NoKeys)
        ));
        // A wrong label is just a failed key (no oracle).
        let label = r#"<xenc:OAEPparams>bGFiZWw=</xenc:OAEPparams>"#;
        let e = decrypt_in_place(&mk(RSA_OAEP_MGF1P, AES128_GCM, label), &dk()).unwrap_err();
        assert!(matches!(e, DecryptError::NoKeyWorked { .. }));
        assert!(!e.to_string().contains("OAEP"), "{e}");
        assert!(e.log_detail().contains("RSA-OAEP"), "{}", e.log_detail());
        // Character references and line breaks inside base64 are fine.
        let wrapped = mk(RSA_OAEP_MGF1P, AES128_GCM, "").replacen(
            &cv,
            &format!("{}&#13;\n{}", &cv[..20], &cv[20..]),
            1,
        );
        assert!(decrypt_in_place(&wrapped, &dk()).is_ok());
    }

    fn gcm_doc(plain: &str, extra_keys: usize) -> String {
        let cek = [6u8; 16];
        let ekv = oaep(&cek, MessageDigest::sha1(), MessageDigest::sha1());
        let cv = gcm(&cek, plain);
        let ek = format!(
            r#"<xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{RSA_OAEP_MGF1P}"/><xenc:CipherData><xenc:CipherValue>{ekv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>"#
        );
        format!(
            r#"{RESP_OPEN}<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="{NS_XENC}" xmlns:ds="{NS_DS}"><xenc:EncryptionMethod Algorithm="{AES128_GCM}"/><ds:KeyInfo>{}</ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{cv}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#,
            ek.repeat(1 + extra_keys)
        )
    }

    #[test]
    fn refusals() {
        assert!(decrypt_in_place(&gcm_doc(ASSERTION, 0), &dk()).is_ok());
        // Too many EncryptedKeys: refused before any RSA operation.
        assert!(matches!(
            decrypt_in_place(&gcm_doc(ASSERTION, MAX_ENCRYPTED_KEYS), &dk()),
            Err(DecryptError::Malformed(_))
        ));
        // Authenticated plaintexts that are not one Assertion: the same NoKeyWorked.
        for bad in [
            format!("<!DOCTYPE x>{ASSERTION}"),
            ASSERTION.replace("urn:oasis:names:tc:SAML:2.0:assertion", "urn:evil"),
            format!("{ASSERTION}<saml:Assertion/>"),
            "<saml:Assertion>".to_string(),
        ] {
            let e = decrypt_in_place(&gcm_doc(&bad, 0), &dk()).unwrap_err();
            assert!(matches!(e, DecryptError::NoKeyWorked { .. }), "{e:?}");
        }
        // A plain Assertion, or an EncryptedAssertion that is not a child of the root.
        let plain = format!(
            r#"{RESP_OPEN}<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/></samlp:Response>"#
        );
        assert!(matches!(
            decrypt_in_place(&plain, &dk()),
            Err(DecryptError::Malformed(_))
        ));
        let doc = gcm_doc(ASSERTION, 0);
        let nested = doc
            .replace(
                "<saml:EncryptedAssertion",
                "<samlp:Extensions><saml:EncryptedAssertion",
            )
            .replace(
                "</saml:EncryptedAssertion>",
                "</saml:EncryptedAssertion></samlp:Extensions>",
            );
        assert!(matches!(
            decrypt_in_place(&nested, &dk()),
            Err(DecryptError::Malformed(_))
        ));
        // Detached ciphertext.
        let cref = doc.replacen(
            "<xenc:CipherValue>",
            r#"<xenc:CipherReference URI="https://evil/x"/><xenc:CipherValue>"#,
            1,
        );
        assert!(matches!(
            decrypt_in_place(&cref, &dk()),
            Err(DecryptError::Unsupported { .. }) | Err(DecryptError::Malformed(_))
        ));
        // Not base64.
        let junk = doc.replacen("<xenc:CipherValue>", "<xenc:CipherValue>@@", 1);
        assert!(matches!(
            decrypt_in_place(&junk, &dk()),
            Err(DecryptError::Malformed(_))
        ));
    }
}
