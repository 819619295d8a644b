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

use base64::Engine;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::X509;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, PrefixDeclaration, ResolveResult};
use quick_xml::{NsReader, Reader, XmlVersion};

use super::prescan::{prescan, resolve_predefined, NS_ASSERTION, NS_PROTOCOL};

pub const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";

pub const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
pub const TYPE_ENCRYPTED_KEY: &str = "http://www.w3.org/2001/04/xmlenc#EncryptedKey";

pub const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
pub const AES192_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes192-cbc";
pub const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES192_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes192-gcm";
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";

pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// Content-encryption algorithms decrypted here, strongest first (for SP metadata).
pub const DATA_ALGORITHMS: [&str; 6] = [
    AES256_GCM, AES192_GCM, AES128_GCM, AES256_CBC, AES192_CBC, AES128_CBC,
];
/// Key-transport algorithms decrypted here (for SP metadata).
pub const KEY_TRANSPORT_ALGORITHMS: [&str; 2] = [RSA_OAEP, RSA_OAEP_MGF1P];

/// EncryptedKeys tried per document (each costs one RSA private-key operation per SP key).
pub const MAX_ENCRYPTED_KEYS: usize = 4;
const MAX_DEPTH: usize = 64;
/// Elements inside the EncryptedAssertion (a real one has ~15).
const MAX_ELEMENTS: usize = 512;

/// One SP key able to decrypt. `id` is what [`decrypt_in_place`] returns and what
/// `<ds:KeyName>` may name.
pub struct DecryptKey<'a> {
    pub id: &'a str,
    pub key: &'a PKey<Private>,
    pub cert: &'a X509,
}

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// An algorithm, type or feature outside the allow-list, named by its URI.
    #[error("unsupported {what}: {uri}")]
    Unsupported { what: &'static str, uri: String },
    #[error("RSA-1_5 key transport ({RSA_1_5}) is refused; the IdP must use RSA-OAEP")]
    Rsa15Refused,
    /// Every (SP key, EncryptedKey) pair failed. `detail` says why per attempt: log it, never
    /// show it to the client.
    #[error("the EncryptedAssertion could not be decrypted with any SP key")]
    NoKeyWorked { detail: String },
    #[error("malformed EncryptedAssertion: {0}")]
    Malformed(String),
    #[error("no SP decryption key is configured")]
    NoKeys,
}

impl DecryptError {
    /// Everything known about the failure, for the log (includes the per-attempt reasons of
    /// `NoKeyWorked`, which `Display` leaves out on purpose).
    pub fn log_detail(&self) -> String {
        match self {
            DecryptError::NoKeyWorked { detail } => format!("{self}: {detail}"),
            other => other.to_string(),
        }
    }
}

fn malformed<T>(m: impl Into<String>) -> Result<T, DecryptError> {
    Err(DecryptError::Malformed(m.into()))
}

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
    let mut out = String::with_capacity(doc.len() + text.len());
    out.push_str(doc.get(..scan.start).ok_or("bad offset")?);
    // Declarations of the EncryptedAssertion (the plaintext's parsing context) for prefixes
    // the plaintext uses without declaring them, unless the Response makes the same one.
    let mut extra = String::new();
    for (prefix, uri) in &scan.ea_decls {
        let from_root = scan.root_decls.iter().any(|(p, u)| p == prefix && u == uri);
        let used = root.free_prefixes.iter().any(|p| p == prefix);
        if used && !from_root {
            extra.push(' ');
            if prefix.is_empty() {
                extra.push_str("xmlns");
            } else {
                extra.push_str("xmlns:");
                extra.push_str(prefix);
            }
            extra.push_str("=\"");
            extra.push_str(&escape_attr(uri));
            extra.push('"');
        }
    }
    if !text.is_char_boundary(root.name_end) {
        return Err("plaintext root name".into());
    }
    let (head, tail) = text.split_at(root.name_end);
    out.push_str(head);
    out.push_str(&extra);
    out.push_str(tail);
    out.push_str(doc.get(scan.end..).ok_or("bad offset")?);
    match prescan(&out) {
        Ok(env) if !env.encrypted => Ok(out),
        Ok(_) => Err("result still encrypted".into()),
        Err(e) => Err(format!("decrypted document refused by prescan: {e:?}")),
    }
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}

// ------------------------------------------------------------------------------------------
// Reading the document

/// An element of the EncryptedAssertion subtree, namespaces resolved.
#[derive(Debug, Default)]
struct El {
    ns: Option<String>,
    local: String,
    /// Unprefixed attributes (Algorithm, Type, URI, Id), values normalized.
    attrs: Vec<(String, String)>,
    /// Text and CDATA directly inside, references resolved.
    text: String,
    children: Vec<El>,
}

impl El {
    fn is(&self, ns: &str, local: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.local == local
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn kids<'s>(&'s self, ns: &'s str, local: &'s str) -> impl Iterator<Item = &'s El> + 's {
        self.children.iter().filter(move |c| c.is(ns, local))
    }
    /// The child `ns:local`, if any; two are malformed.
    fn kid(&self, ns: &str, local: &str) -> Result<Option<&El>, DecryptError> {
        let mut it = self.children.iter().filter(|c| c.is(ns, local));
        let first = it.next();
        if it.next().is_some() {
            return malformed(format!("{} has two {local} elements", self.local));
        }
        Ok(first)
    }
    fn qname(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }
}

struct Scan {
    /// Byte range of the EncryptedAssertion element in the document.
    start: usize,
    end: usize,
    ea: El,
    /// Namespace declarations (prefix, "" for the default; URI) on the root start tag and on
    /// the EncryptedAssertion start tag.
    root_decls: Vec<(String, String)>,
    ea_decls: Vec<(String, String)>,
}

fn decls_of(e: &BytesStart) -> Result<Vec<(String, String)>, DecryptError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|x| DecryptError::Malformed(format!("attribute: {x}")))?;
        if let Some(d) = a.key.as_namespace_binding() {
            let prefix = match d {
                PrefixDeclaration::Default => String::new(),
                PrefixDeclaration::Named(p) => String::from_utf8_lossy(p).into_owned(),
            };
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|x| DecryptError::Malformed(format!("attribute: {x}")))?;
            out.push((prefix, v.into_owned()));
        }
    }
    Ok(out)
}

fn element(ns: Option<String>, e: &BytesStart) -> Result<El, DecryptError> {
    let mut el = El {
        ns,
        local: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        ..El::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|x| DecryptError::Malformed(format!("attribute: {x}")))?;
        if a.key.as_namespace_binding().is_some() || a.key.prefix().is_some() {
            continue;
        }
        let v = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|x| DecryptError::Malformed(format!("attribute: {x}")))?;
        el.attrs.push((
            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
            v.into_owned(),
        ));
    }
    Ok(el)
}

/// One pass over the whole document: finds the EncryptedAssertion (exactly one, a direct child
/// of the Response root, no plain Assertion anywhere) and builds its subtree.
fn scan(doc: &str) -> Result<Scan, DecryptError> {
    let bad = |m: String| DecryptError::Malformed(m);
    let mut r = NsReader::from_str(doc);
    r.config_mut().check_end_names = true;

    let mut depth = 0usize;
    let mut root_seen = false;
    let mut root_decls = Vec::new();
    let mut ea_decls = Vec::new();
    let mut stack: Vec<El> = Vec::new();
    let mut start: Option<usize> = None;
    let mut found: Option<(usize, El)> = None;
    let mut elements = 0usize;

    loop {
        let pos = usize::try_from(r.buffer_position()).map_err(|_| bad("offset".into()))?;
        let (res, ev) = r
            .read_resolved_event()
            .map_err(|e| bad(format!("after byte {pos}: {e}")))?;
        let ns: Option<String> = match res {
            ResolveResult::Bound(Namespace(n)) => Some(String::from_utf8_lossy(n).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(bad(format!(
                    "undeclared namespace prefix {}",
                    String::from_utf8_lossy(&p)
                )))
            }
        };
        match ev {
            Event::DocType(_) => return Err(bad("DOCTYPE".into())),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(ev, Event::Start(_));
                let local = e.local_name();
                let local = local.as_ref();
                if !root_seen {
                    if !(ns.as_deref().map(str::as_bytes) == Some(NS_PROTOCOL)
                        && local == b"Response")
                    {
                        return Err(bad("the root element is not samlp:Response".into()));
                    }
                    root_seen = true;
                    root_decls = decls_of(e)?;
                } else if depth == 0 {
                    return Err(bad("content after the root element".into()));
                } else if ns.as_deref().map(str::as_bytes) == Some(NS_ASSERTION)
                    && (local == b"Assertion" || local == b"EncryptedAssertion")
                {
                    if local == b"Assertion" {
                        return Err(bad("a plain Assertion is present".into()));
                    }
                    if start.is_some() {
                        return Err(bad("more than one EncryptedAssertion".into()));
                    }
                    if depth != 1 {
                        return Err(bad(
                            "the EncryptedAssertion is not a direct child of the Response".into(),
                        ));
                    }
                    if !is_start {
                        return Err(bad("empty EncryptedAssertion".into()));
                    }
                    start = Some(pos);
                    ea_decls = decls_of(e)?;
                    stack.push(element(ns, e)?);
                } else if !stack.is_empty() {
                    elements += 1;
                    if elements > MAX_ELEMENTS {
                        return Err(bad(format!(
                            "more than {MAX_ELEMENTS} elements in the EncryptedAssertion"
                        )));
                    }
                    let el = element(ns, e)?;
                    if is_start {
                        stack.push(el);
                    } else if let Some(top) = stack.last_mut() {
                        top.children.push(el);
                    }
                }
                if is_start {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(bad(format!("nesting deeper than {MAX_DEPTH}")));
                    }
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if let Some(el) = stack.pop() {
                    match stack.last_mut() {
                        Some(top) => top.children.push(el),
                        None => {
                            let end = usize::try_from(r.buffer_position())
                                .map_err(|_| bad("offset".into()))?;
                            found = Some((end, el));
                        }
                    }
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.decode().map_err(|x| bad(format!("text: {x}")))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    let s = c.decode().map_err(|x| bad(format!("CDATA: {x}")))?;
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(g) => {
                let name = g.decode().map_err(|x| bad(format!("reference: {x}")))?;
                let v = resolve_predefined(&name)
                    .ok_or_else(|| bad(format!("unknown entity &{name};")))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&v);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen || depth != 0 {
        return Err(bad("incomplete document".into()));
    }
    match (start, found) {
        (Some(start), Some((end, ea))) if start < end && end <= doc.len() => Ok(Scan {
            start,
            end,
            ea,
            root_decls,
            ea_decls,
        }),
        _ => Err(bad("no EncryptedAssertion".into())),
    }
}

// ------------------------------------------------------------------------------------------
// Interpreting the structure

struct DataAlg {
    uri: &'static str,
    cipher: Cipher,
    key_len: usize,
    gcm: bool,
}

fn data_alg(uri: &str) -> Option<DataAlg> {
    let (uri, cipher, key_len, gcm) = match uri {
        AES128_CBC => (AES128_CBC, Cipher::aes_128_cbc(), 16, false),
        AES192_CBC => (AES192_CBC, Cipher::aes_192_cbc(), 24, false),
        AES256_CBC => (AES256_CBC, Cipher::aes_256_cbc(), 32, false),
        AES128_GCM => (AES128_GCM, Cipher::aes_128_gcm(), 16, true),
        AES192_GCM => (AES192_GCM, Cipher::aes_192_gcm(), 24, true),
        AES256_GCM => (AES256_GCM, Cipher::aes_256_gcm(), 32, true),
        _ => return None,
    };
    Some(DataAlg {
        uri,
        cipher,
        key_len,
        gcm,
    })
}

fn digest_alg(uri: &str) -> Option<MessageDigest> {
    Some(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2001/04/xmldsig-more#sha224" => MessageDigest::sha224(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

fn mgf_alg(uri: &str) -> Option<MessageDigest> {
    Some(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha224" => MessageDigest::sha224(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

/// What a `ds:KeyInfo` inside an EncryptedKey says about the recipient key. Only an ordering
/// hint: every key is tried anyway. X509IssuerSerial is matched on the serial number alone (issuer
/// DN strings are written in too many ways to compare).
#[derive(Debug, Default)]
struct Hints {
    key_names: Vec<String>,
    certs_der: Vec<Vec<u8>>,
    serials: Vec<String>,
    skis: Vec<Vec<u8>>,
}

struct EncKey {
    md: MessageDigest,
    mgf: MessageDigest,
    label: Option<Vec<u8>>,
    cipher: Vec<u8>,
    hints: Hints,
}

struct Plan {
    data: DataAlg,
    /// IV (CBC: 16 bytes; GCM: 12) || ciphertext (|| GCM tag, 16 bytes).
    cipher: Vec<u8>,
    keys: Vec<EncKey>,
}

fn b64(text: &str, max: usize, what: &str) -> Result<Vec<u8>, DecryptError> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if clean.len() > max {
        return malformed(format!("{what} is larger than the document"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|_| DecryptError::Malformed(format!("{what} is not base64")))
}

/// `xenc:CipherData/xenc:CipherValue` of an EncryptedData or EncryptedKey.
fn cipher_value(el: &El, doc_len: usize) -> Result<Vec<u8>, DecryptError> {
    let cd = match el.kid(NS_XENC, "CipherData")? {
        Some(cd) => cd,
        None => return malformed(format!("{} without CipherData", el.local)),
    };
    if cd.kid(NS_XENC, "CipherReference")?.is_some() {
        return Err(DecryptError::Unsupported {
            what: "CipherReference (detached ciphertext)",
            uri: format!("{NS_XENC}CipherReference"),
        });
    }
    match cd.kid(NS_XENC, "CipherValue")? {
        Some(cv) => {
            let v = b64(&cv.text, doc_len, "CipherValue")?;
            if v.is_empty() {
                return malformed("empty CipherValue");
            }
            Ok(v)
        }
        None => malformed(format!("{} without CipherValue", el.local)),
    }
}

fn algorithm<'e>(el: &'e El, of: &str) -> Result<&'e str, DecryptError> {
    match el.kid(NS_XENC, "EncryptionMethod")? {
        Some(em) => match em.attr("Algorithm") {
            Some(a) => Ok(a),
            None => malformed(format!("{of} EncryptionMethod without Algorithm")),
        },
        None => malformed(format!("{of} without EncryptionMethod")),
    }
}

fn read_hints(ek: &El, doc_len: usize) -> Result<Hints, DecryptError> {
    let mut h = Hints::default();
    let Some(ki) = ek.kid(NS_DS, "KeyInfo")? else {
        return Ok(h);
    };
    for n in ki.kids(NS_DS, "KeyName") {
        h.key_names.push(n.text.trim().to_string());
    }
    for xd in ki.kids(NS_DS, "X509Data") {
        for c in xd.kids(NS_DS, "X509Certificate") {
            h.certs_der.push(b64(&c.text, doc_len, "X509Certificate")?);
        }
        for is in xd.kids(NS_DS, "X509IssuerSerial") {
            for s in is.kids(NS_DS, "X509SerialNumber") {
                h.serials.push(s.text.trim().to_string());
            }
        }
        for s in xd.kids(NS_DS, "X509SKI") {
            h.skis.push(b64(&s.text, doc_len, "X509SKI")?);
        }
    }
    Ok(h)
}

fn read_encrypted_key(ek: &El, doc_len: usize) -> Result<EncKey, DecryptError> {
    let alg = algorithm(ek, "EncryptedKey")?;
    let xmlenc11 = match alg {
        RSA_OAEP_MGF1P => false,
        RSA_OAEP => true,
        RSA_1_5 => return Err(DecryptError::Rsa15Refused),
        other => {
            return Err(DecryptError::Unsupported {
                what: "key transport algorithm",
                uri: other.to_string(),
            })
        }
    };
    let em = ek
        .kid(NS_XENC, "EncryptionMethod")?
        .ok_or_else(|| DecryptError::Malformed("EncryptionMethod".into()))?;
    let md = match em.kid(NS_DS, "DigestMethod")? {
        None => MessageDigest::sha1(),
        Some(d) => {
            let uri = d.attr("Algorithm").unwrap_or_default();
            digest_alg(uri).ok_or_else(|| DecryptError::Unsupported {
                what: "OAEP digest algorithm",
                uri: uri.to_string(),
            })?
        }
    };
    let mgf = match em.kid(NS_XENC11, "MGF")? {
        None => MessageDigest::sha1(),
        Some(m) => {
            let uri = m.attr("Algorithm").unwrap_or_default();
            let mgf = mgf_alg(uri).ok_or_else(|| DecryptError::Unsupported {
                what: "OAEP mask generation function",
                uri: uri.to_string(),
            })?;
            if !xmlenc11 && mgf != MessageDigest::sha1() {
                return malformed("rsa-oaep-mgf1p uses MGF1 with SHA-1 only");
            }
            mgf
        }
    };
    let label = match em.kid(NS_XENC, "OAEPparams")? {
        None => None,
        Some(p) => Some(b64(&p.text, doc_len, "OAEPparams")?).filter(|l| !l.is_empty()),
    };
    if ek.kid(NS_XENC, "CipherData")?.is_none() {
        return malformed("EncryptedKey without CipherData");
    }
    let cipher = cipher_value(ek, doc_len)?;
    Ok(EncKey {
        md,
        mgf,
        label,
        cipher,
        hints: read_hints(ek, doc_len)?,
    })
}

fn read_structure(ea: &El, doc_len: usize) -> Result<Plan, DecryptError> {
    for c in &ea.children {
        if !(c.is(NS_XENC, "EncryptedData") || c.is(NS_XENC, "EncryptedKey")) {
            return malformed(format!("unexpected {} in EncryptedAssertion", c.qname()));
        }
    }
    let ed = match ea.kid(NS_XENC, "EncryptedData")? {
        Some(ed) => ed,
        None => return malformed("no xenc:EncryptedData in EncryptedAssertion"),
    };
    if let Some(t) = ed.attr("Type") {
        if t != TYPE_ELEMENT {
            return Err(DecryptError::Unsupported {
                what: "EncryptedData Type",
                uri: t.to_string(),
            });
        }
    }

    // EncryptedKeys: referenced siblings first, then those inside KeyInfo, then other siblings.
    let siblings: Vec<&El> = ea.kids(NS_XENC, "EncryptedKey").collect();
    let mut chosen: Vec<&El> = Vec::new();
    let mut inner: Vec<&El> = Vec::new();
    if let Some(ki) = ed.kid(NS_DS, "KeyInfo")? {
        for rm in ki.kids(NS_DS, "RetrievalMethod") {
            if let Some(t) = rm.attr("Type") {
                if t != TYPE_ENCRYPTED_KEY {
                    return Err(DecryptError::Unsupported {
                        what: "RetrievalMethod Type",
                        uri: t.to_string(),
                    });
                }
            }
            if rm.children.iter().any(|c| c.is(NS_DS, "Transforms")) {
                return Err(DecryptError::Unsupported {
                    what: "RetrievalMethod with Transforms",
                    uri: format!("{NS_DS}Transforms"),
                });
            }
            let uri = rm.attr("URI").unwrap_or_default();
            let Some(id) = uri.strip_prefix('#') else {
                return Err(DecryptError::Unsupported {
                    what: "RetrievalMethod URI (only same-document #id)",
                    uri: uri.to_string(),
                });
            };
            match siblings.iter().find(|s| s.attr("Id") == Some(id)) {
                Some(s) => {
                    if !chosen.iter().any(|c| std::ptr::eq(*c, *s)) {
                        chosen.push(s)
                    }
                }
                None => {
                    return malformed(format!(
                        "RetrievalMethod names #{id}, which is not an EncryptedKey here"
                    ))
                }
            }
        }
        inner.extend(ki.kids(NS_XENC, "EncryptedKey"));
        if ki.children.iter().any(|c| c.is(NS_XENC, "AgreementMethod")) {
            return Err(DecryptError::Unsupported {
                what: "key agreement",
                uri: format!("{NS_XENC}AgreementMethod"),
            });
        }
    }
    chosen.extend(inner);
    for s in siblings {
        if !chosen.iter().any(|c| std::ptr::eq(*c, s)) {
            chosen.push(s);
        }
    }
    if chosen.is_empty() {
        return malformed("no EncryptedKey (only RSA-OAEP key transport is supported)");
    }
    if chosen.len() > MAX_ENCRYPTED_KEYS {
        return malformed(format!(
            "{} EncryptedKeys; at most {MAX_ENCRYPTED_KEYS} are tried",
            chosen.len()
        ));
    }
    // RSA-1_5 anywhere is refused before anything else about the keys is judged.
    for ek in &chosen {
        if let Ok(RSA_1_5) = algorithm(ek, "EncryptedKey") {
            return Err(DecryptError::Rsa15Refused);
        }
    }
    let keys = chosen
        .iter()
        .map(|ek| read_encrypted_key(ek, doc_len))
        .collect::<Result<Vec<_>, _>>()?;

    let alg = algorithm(ed, "EncryptedData")?;
    let data = data_alg(alg).ok_or_else(|| DecryptError::Unsupported {
        what: "data encryption algorithm",
        uri: alg.to_string(),
    })?;
    let cipher = cipher_value(ed, doc_len)?;
    let min = if data.gcm { 12 + 16 } else { 16 + 16 };
    if cipher.len() < min || (!data.gcm && !cipher.len().is_multiple_of(16)) {
        return malformed(format!(
            "CipherValue of {} bytes is not valid for {}",
            cipher.len(),
            data.uri
        ));
    }
    Ok(Plan { data, cipher, keys })
}

fn names_key(h: &Hints, k: &DecryptKey) -> bool {
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

// ------------------------------------------------------------------------------------------
// Crypto

fn rsa_oaep_decrypt(key: &PKey<Private>, ek: &EncKey) -> Result<Vec<u8>, String> {
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

fn decrypt_content(alg: &DataAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
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

// ------------------------------------------------------------------------------------------
// Plaintext

struct PlainRoot {
    /// Byte offset in the plaintext just after the root element's name (`<saml:Assertion`).
    name_end: usize,
    /// Prefixes ("" for the default namespace) used in the plaintext without a declaration
    /// inside it: they take their meaning from the context.
    free_prefixes: Vec<String>,
}

fn prefix_decls(e: &BytesStart) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|x| format!("plaintext attribute: {x}"))?;
        match a.key.as_namespace_binding() {
            Some(PrefixDeclaration::Default) => out.push(String::new()),
            Some(PrefixDeclaration::Named(p)) => out.push(String::from_utf8_lossy(p).into_owned()),
            None => {}
        }
    }
    Ok(out)
}

/// Records in `free` the prefixes `e` uses (element and attribute names) that neither `e`
/// nor an enclosing plaintext element declares.
fn note_free_prefixes(
    e: &BytesStart,
    own: &[String],
    scopes: &[Vec<String>],
    free: &mut Vec<String>,
) -> Result<(), String> {
    let declared = |p: &str| own.iter().chain(scopes.iter().flatten()).any(|d| d == p);
    let mut used: Vec<String> = Vec::new();
    match e.name().prefix() {
        Some(p) => used.push(String::from_utf8_lossy(p.as_ref()).into_owned()),
        None => used.push(String::new()),
    }
    for a in e.attributes() {
        let a = a.map_err(|x| format!("plaintext attribute: {x}"))?;
        if a.key.as_namespace_binding().is_none() {
            if let Some(p) = a.key.prefix() {
                used.push(String::from_utf8_lossy(p.as_ref()).into_owned());
            }
        }
    }
    for p in used {
        if p != "xml" && !declared(&p) && !free.contains(&p) {
            free.push(p);
        }
    }
    Ok(())
}

/// The plaintext must be one balanced element named `Assertion` (any prefix), optionally
/// surrounded by whitespace, with no DOCTYPE or XML declaration anywhere.
fn check_plaintext(text: &str) -> Result<PlainRoot, String> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("<!doctype") {
        return Err("plaintext contains a DOCTYPE".into());
    }
    if lower.contains("<?xml") {
        return Err("plaintext contains an XML declaration".into());
    }
    let lead = text.len() - text.trim_start_matches([' ', '\t', '\r', '\n']).len();
    let body = &text[lead..];
    if !body.starts_with('<') || body[1..].starts_with(['!', '?', '/']) {
        return Err("plaintext does not start with an element".into());
    }
    let mut r = Reader::from_str(body);
    r.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut root: Option<PlainRoot> = None;
    let mut closed = false;
    // Declared prefixes of each open element.
    let mut scopes: Vec<Vec<String>> = Vec::new();
    let mut free: Vec<String> = Vec::new();
    loop {
        let ev = r
            .read_event()
            .map_err(|e| format!("plaintext is not well-formed: {e}"))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if closed {
                    return Err("plaintext holds more than one element".into());
                }
                if root.is_none() {
                    if e.local_name().as_ref() != b"Assertion" {
                        return Err("plaintext is not an Assertion".into());
                    }
                    root = Some(PlainRoot {
                        name_end: lead + 1 + e.name().as_ref().len(),
                        free_prefixes: Vec::new(),
                    });
                }
                let own = prefix_decls(e)?;
                note_free_prefixes(e, &own, &scopes, &mut free)?;
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err("plaintext nested too deep".into());
                    }
                    scopes.push(own);
                } else if depth == 0 {
                    closed = true;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                scopes.pop();
                if depth == 0 {
                    closed = true;
                }
            }
            Event::Text(t) if depth == 0 && !t.iter().all(|b| b.is_ascii_whitespace()) => {
                return Err("text outside the plaintext element".into());
            }
            Event::DocType(_) | Event::Decl(_) => {
                return Err("declaration in the plaintext".into());
            }
            Event::CData(_) | Event::GeneralRef(_) | Event::Comment(_) | Event::PI(_)
                if depth == 0 =>
            {
                return Err("content outside the plaintext element".into());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match root {
        Some(mut r) if closed && depth == 0 => {
            r.free_prefixes = free;
            Ok(r)
        }
        _ => Err("plaintext element is not closed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::encrypt::Encrypter;
    use openssl::rsa::Rsa;
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
