//! Reading the EncryptedAssertion: one pass over the document finds it and builds its subtree
//! ([`scan`]), then [`read_structure`] checks algorithms, EncryptedKeys and base64 into a
//! [`Plan`], all before any private-key operation (errors here depend on public input only).

use base64::Engine;
use openssl::hash::MessageDigest;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, PrefixDeclaration, ResolveResult};
use quick_xml::{NsReader, XmlVersion};

use super::algorithms::*;
use super::error::{malformed, DecryptError};
use crate::saml::prescan::{resolve_predefined, NS_ASSERTION, NS_PROTOCOL};

/// An element of the EncryptedAssertion subtree, namespaces resolved.
#[derive(Debug, Default)]
pub(super) struct El {
    pub(super) ns: Option<String>,
    pub(super) local: String,
    /// Unprefixed attributes (Algorithm, Type, URI, Id), values normalized.
    pub(super) attrs: Vec<(String, String)>,
    /// Text and CDATA directly inside, references resolved.
    pub(super) text: String,
    pub(super) children: Vec<El>,
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

pub(super) struct Scan {
    /// Byte range of the EncryptedAssertion element in the document.
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) ea: El,
    /// Namespace declarations (prefix, "" for the default; URI) on the root start tag and on
    /// the EncryptedAssertion start tag.
    pub(super) root_decls: Vec<(String, String)>,
    pub(super) ea_decls: Vec<(String, String)>,
}

pub(super) fn decls_of(e: &BytesStart) -> Result<Vec<(String, String)>, DecryptError> {
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

pub(super) fn element(ns: Option<String>, e: &BytesStart) -> Result<El, DecryptError> {
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
pub(super) fn scan(doc: &str) -> Result<Scan, DecryptError> {
    let mut r = NsReader::from_str(doc);
    r.config_mut().check_end_names = true;
    let mut w = Walk::default();
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
            Event::Start(ref e) => w.element(ns, e, true, pos)?,
            Event::Empty(ref e) => w.element(ns, e, false, pos)?,
            Event::End(_) => {
                let end = usize::try_from(r.buffer_position()).map_err(|_| bad("offset".into()));
                w.end(end)?;
            }
            // Text counts only inside the EncryptedAssertion (prescan checked the rest).
            Event::Text(t) if w.inside() => {
                w.text(&t.decode().map_err(|x| bad(format!("text: {x}")))?)
            }
            Event::CData(c) if w.inside() => {
                w.text(&c.decode().map_err(|x| bad(format!("CDATA: {x}")))?)
            }
            Event::GeneralRef(g) => {
                let name = g.decode().map_err(|x| bad(format!("reference: {x}")))?;
                let v = resolve_predefined(&name)
                    .ok_or_else(|| bad(format!("unknown entity &{name};")))?;
                w.text(&v);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    w.finish(doc.len())
}

fn bad(m: String) -> DecryptError {
    DecryptError::Malformed(m)
}

/// The state of [`scan`].
#[derive(Default)]
struct Walk {
    depth: usize,
    root_seen: bool,
    root_decls: Vec<(String, String)>,
    ea_decls: Vec<(String, String)>,
    /// Open elements of the EncryptedAssertion subtree.
    stack: Vec<El>,
    start: Option<usize>,
    found: Option<(usize, El)>,
    elements: usize,
}

impl Walk {
    /// A start (`is_start`) or empty element at byte `pos`.
    fn element(
        &mut self,
        ns: Option<String>,
        e: &BytesStart,
        is_start: bool,
        pos: usize,
    ) -> Result<(), DecryptError> {
        let local = e.local_name();
        let local = local.as_ref();
        if !self.root_seen {
            if !(ns.as_deref().map(str::as_bytes) == Some(NS_PROTOCOL) && local == b"Response") {
                return Err(bad("the root element is not samlp:Response".into()));
            }
            self.root_seen = true;
            self.root_decls = decls_of(e)?;
        } else if self.depth == 0 {
            return Err(bad("content after the root element".into()));
        } else if ns.as_deref().map(str::as_bytes) == Some(NS_ASSERTION)
            && (local == b"Assertion" || local == b"EncryptedAssertion")
        {
            self.assertion(ns, e, local == b"Assertion", is_start, pos)?;
        } else if !self.stack.is_empty() {
            self.elements += 1;
            if self.elements > MAX_ELEMENTS {
                return Err(bad(format!(
                    "more than {MAX_ELEMENTS} elements in the EncryptedAssertion"
                )));
            }
            let el = element(ns, e)?;
            if is_start {
                self.stack.push(el);
            } else if let Some(top) = self.stack.last_mut() {
                top.children.push(el);
            }
        }
        if is_start {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(bad(format!("nesting deeper than {MAX_DEPTH}")));
            }
        }
        Ok(())
    }

    /// A `saml:Assertion` (refused) or the one `saml:EncryptedAssertion`, in place.
    fn assertion(
        &mut self,
        ns: Option<String>,
        e: &BytesStart,
        plain: bool,
        is_start: bool,
        pos: usize,
    ) -> Result<(), DecryptError> {
        if plain {
            return Err(bad("a plain Assertion is present".into()));
        }
        if self.start.is_some() {
            return Err(bad("more than one EncryptedAssertion".into()));
        }
        if self.depth != 1 {
            return Err(bad(
                "the EncryptedAssertion is not a direct child of the Response".into(),
            ));
        }
        if !is_start {
            return Err(bad("empty EncryptedAssertion".into()));
        }
        self.start = Some(pos);
        self.ea_decls = decls_of(e)?;
        self.stack.push(element(ns, e)?);
        Ok(())
    }

    /// An end tag; `end` is the byte after it (needed only when it closes the
    /// EncryptedAssertion).
    fn end(&mut self, end: Result<usize, DecryptError>) -> Result<(), DecryptError> {
        self.depth = self.depth.saturating_sub(1);
        if let Some(el) = self.stack.pop() {
            match self.stack.last_mut() {
                Some(top) => top.children.push(el),
                None => self.found = Some((end?, el)),
            }
        }
        Ok(())
    }

    fn inside(&self) -> bool {
        !self.stack.is_empty()
    }

    fn text(&mut self, s: &str) {
        if let Some(top) = self.stack.last_mut() {
            top.text.push_str(s);
        }
    }

    fn finish(self, doc_len: usize) -> Result<Scan, DecryptError> {
        if !self.root_seen || self.depth != 0 {
            return Err(bad("incomplete document".into()));
        }
        match (self.start, self.found) {
            (Some(start), Some((end, ea))) if start < end && end <= doc_len => Ok(Scan {
                start,
                end,
                ea,
                root_decls: self.root_decls,
                ea_decls: self.ea_decls,
            }),
            _ => Err(bad("no EncryptedAssertion".into())),
        }
    }
}

/// What a `ds:KeyInfo` inside an EncryptedKey says about the recipient key. Only an ordering
/// hint: every key is tried anyway. X509IssuerSerial is matched on the serial number alone (issuer
/// DN strings are written in too many ways to compare).
#[derive(Debug, Default)]
pub(super) struct Hints {
    pub(super) key_names: Vec<String>,
    pub(super) certs_der: Vec<Vec<u8>>,
    pub(super) serials: Vec<String>,
    pub(super) skis: Vec<Vec<u8>>,
}

pub(super) struct EncKey {
    pub(super) md: MessageDigest,
    pub(super) mgf: MessageDigest,
    pub(super) label: Option<Vec<u8>>,
    pub(super) cipher: Vec<u8>,
    pub(super) hints: Hints,
}

pub(super) struct Plan {
    pub(super) data: DataAlg,
    /// IV (CBC: 16 bytes; GCM: 12) || ciphertext (|| GCM tag, 16 bytes).
    pub(super) cipher: Vec<u8>,
    pub(super) keys: Vec<EncKey>,
}

pub(super) fn b64(text: &str, max: usize, what: &str) -> Result<Vec<u8>, DecryptError> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if clean.len() > max {
        return malformed(format!("{what} is larger than the document"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|_| DecryptError::Malformed(format!("{what} is not base64")))
}

/// `xenc:CipherData/xenc:CipherValue` of an EncryptedData or EncryptedKey.
pub(super) fn cipher_value(el: &El, doc_len: usize) -> Result<Vec<u8>, DecryptError> {
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

pub(super) fn algorithm<'e>(el: &'e El, of: &str) -> Result<&'e str, DecryptError> {
    match el.kid(NS_XENC, "EncryptionMethod")? {
        Some(em) => match em.attr("Algorithm") {
            Some(a) => Ok(a),
            None => malformed(format!("{of} EncryptionMethod without Algorithm")),
        },
        None => malformed(format!("{of} without EncryptionMethod")),
    }
}

pub(super) fn read_hints(ek: &El, doc_len: usize) -> Result<Hints, DecryptError> {
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

pub(super) fn read_encrypted_key(ek: &El, doc_len: usize) -> Result<EncKey, DecryptError> {
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

pub(super) fn read_structure(ea: &El, doc_len: usize) -> Result<Plan, DecryptError> {
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

    let chosen = choose_encrypted_keys(ea, ed)?;
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

/// The EncryptedKeys to try, in order: siblings the EncryptedData's KeyInfo references (same
/// document, `#id` only), then those inside its KeyInfo, then the other siblings.
fn choose_encrypted_keys<'e>(ea: &'e El, ed: &'e El) -> Result<Vec<&'e El>, DecryptError> {
    let siblings: Vec<&El> = ea.kids(NS_XENC, "EncryptedKey").collect();
    let mut chosen: Vec<&El> = Vec::new();
    let mut inner: Vec<&El> = Vec::new();
    if let Some(ki) = ed.kid(NS_DS, "KeyInfo")? {
        for rm in ki.kids(NS_DS, "RetrievalMethod") {
            let s = retrieved(rm, &siblings)?;
            if !chosen.iter().any(|c| std::ptr::eq(*c, s)) {
                chosen.push(s)
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
    Ok(chosen)
}

/// A `ds:RetrievalMethod` in the EncryptedData's KeyInfo: the sibling EncryptedKey it names.
fn retrieved<'e>(rm: &El, siblings: &[&'e El]) -> Result<&'e El, DecryptError> {
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
        Some(s) => Ok(s),
        None => malformed(format!(
            "RetrievalMethod names #{id}, which is not an EncryptedKey here"
        )),
    }
}
