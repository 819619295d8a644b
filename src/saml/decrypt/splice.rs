//! The plaintext back into the document: it must be one Assertion element, and the
//! EncryptedAssertion's namespace declarations it relies on are copied onto its root tag.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::PrefixDeclaration;
use quick_xml::Reader;

use super::algorithms::MAX_DEPTH;
use super::structure::Scan;
use crate::saml::prescan::prescan;

pub(super) fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}

pub(super) struct PlainRoot {
    /// Byte offset in the plaintext just after the root element's name (`<saml:Assertion`).
    pub(super) name_end: usize,
    /// Prefixes ("" for the default namespace) used in the plaintext without a declaration
    /// inside it: they take their meaning from the context.
    pub(super) free_prefixes: Vec<String>,
}

pub(super) fn prefix_decls(e: &BytesStart) -> Result<Vec<String>, String> {
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
pub(super) fn note_free_prefixes(
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

/// The length of the whitespace before the plaintext's first element; refuses a DOCTYPE or
/// XML declaration anywhere, and anything but an element first.
fn leading_whitespace(text: &str) -> Result<usize, String> {
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
    Ok(lead)
}

/// The plaintext must be one balanced element named `Assertion` (any prefix), optionally
/// surrounded by whitespace, with no DOCTYPE or XML declaration anywhere.
pub(super) fn check_plaintext(text: &str) -> Result<PlainRoot, String> {
    let lead = leading_whitespace(text)?;
    let body = &text[lead..];
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

/// `doc` with the EncryptedAssertion (`scan.start..scan.end`) replaced by the plaintext `text`;
/// the result must pass prescan with one plain Assertion.
pub(super) fn splice(
    doc: &str,
    scan: &Scan,
    text: &str,
    root: &PlainRoot,
) -> Result<String, String> {
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
