//! What a proxied request path means to the staff menu, decided before it is forwarded.
//!
//! Upstreams disagree about paths: Tomcat/Spring decode `%2e` and drop `;params` (`..;` is
//! `..`), some turn `\` or `%5C` into `/`, nginx (merge_slashes) and Tomcat fold `//`, and
//! Django/Flask/Express route the raw path without resolving `..` at all. No single reading is
//! safe to decide "public" on, so every target they could read differently is refused: an
//! empty segment (`//`), any dot segment (`.`/`..`, raw or encoded), any `%25` (double
//! encoding), an encoded `/` or `\`, a raw `\`, a control character, invalid UTF-8 (overlong
//! `%c0%ae`). Browsers resolve dot segments before sending, so none of these is a real page.
//! What is left decodes to one path that every upstream reads the same way.

/// Why a target is refused (400, reason `path_refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// `%2F`: a segment that some hops split and others do not.
    EncodedSlash,
    /// `%5C`: read as `/` by some upstreams.
    EncodedBackslash,
    /// A raw `\`: read as `/` by some upstreams.
    Backslash,
    /// `..;x`, `%2e%2e;`, `..%3B`: `..` once the path parameter is dropped.
    DotSegmentParameter,
    /// `.` or `..` (raw or `%2e`): resolved by some upstreams, routed raw by others.
    DotSegment,
    /// `//` (an empty segment before the last): folded by some upstreams, not by others.
    EmptySegment,
    /// `%25`: decoded once by some hops and twice by others.
    EncodedPercent,
    /// A decoded control character (`%00`, `%0A`, ...).
    ControlCharacter,
    /// Not UTF-8 once decoded (overlong `%c0%ae` is `.` to lenient decoders).
    InvalidUtf8,
}

impl TargetError {
    /// For the operator's log line.
    pub fn detail(self) -> &'static str {
        match self {
            TargetError::EncodedSlash => "encoded '/' (%2F) in the path",
            TargetError::EncodedBackslash => "encoded '\\' (%5C) in the path",
            TargetError::Backslash => "'\\' in the path",
            TargetError::DotSegmentParameter => "';' in a dot segment (..;)",
            TargetError::DotSegment => "dot segment ('.' or '..', raw or encoded) in the path",
            TargetError::EmptySegment => "empty segment ('//') in the path",
            TargetError::EncodedPercent => "encoded '%' (%25) in the path",
            TargetError::ControlCharacter => "encoded control character in the path",
            TargetError::InvalidUtf8 => "invalid UTF-8 after decoding the path",
        }
    }
}

/// The path (without query), percent-decoded once, for targets every upstream reads the same
/// way; Err for every other target. (With `%25` refused, one decoding is the full decoding.)
pub fn canonical_path(raw: &str) -> Result<String, TargetError> {
    if raw.contains('\\') {
        return Err(TargetError::Backslash);
    }
    if raw.contains("%25") {
        return Err(TargetError::EncodedPercent);
    }
    let segs: Vec<&str> = raw.split('/').skip(1).collect();
    let last = segs.len().saturating_sub(1);
    let mut out = Vec::with_capacity(segs.len());
    for (i, seg) in segs.iter().enumerate() {
        let s: Vec<u8> = percent_encoding::percent_decode_str(seg).collect();
        check_segment(&s, i == last)?;
        out.push(String::from_utf8(s).map_err(|_| TargetError::InvalidUtf8)?);
    }
    Ok(format!("/{}", out.join("/")))
}

/// One decoded segment; `last` may be empty (a trailing slash names a directory).
fn check_segment(s: &[u8], last: bool) -> Result<(), TargetError> {
    if s.contains(&b'/') {
        return Err(TargetError::EncodedSlash);
    }
    if s.contains(&b'\\') {
        return Err(TargetError::EncodedBackslash);
    }
    if s.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(TargetError::ControlCharacter);
    }
    // What a servlet container sees once it drops `;params`.
    let (name, param) = match s.iter().position(|&b| b == b';') {
        Some(i) => (&s[..i], true),
        None => (s, false),
    };
    match name {
        b"." | b".." if param => Err(TargetError::DotSegmentParameter),
        b"." | b".." => Err(TargetError::DotSegment),
        b"" if !last => Err(TargetError::EmptySegment),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_upstreams_could_read_differently_are_refused() {
        use TargetError::*;
        for (raw, want) in [
            ("/static/..;/private", Err(DotSegmentParameter)),
            ("/static/%2e%2e;/private", Err(DotSegmentParameter)),
            ("/static/..%3B/private", Err(DotSegmentParameter)),
            ("/static/.;x/private", Err(DotSegmentParameter)),
            ("/static/x/..%2F..%2Fprivate", Err(EncodedSlash)),
            ("/static/%252F/x", Err(EncodedPercent)),
            ("/static/..%5Cprivate", Err(EncodedBackslash)),
            ("/static/..\\private", Err(Backslash)),
            ("/static/..%00/private", Err(ControlCharacter)),
            // Review of the issue-12 fixes: every dot segment, `//`, `%25`, overlong UTF-8.
            ("/static/../private", Err(DotSegment)),
            ("/static/%2e%2e/private", Err(DotSegment)),
            ("/static/%2E%2e/private", Err(DotSegment)),
            ("/static/.%2E/private", Err(DotSegment)),
            ("/static/./app.css", Err(DotSegment)),
            ("/private/../static/x", Err(DotSegment)),
            ("/static/x/..", Err(DotSegment)),
            ("/static/%252e%252e/private", Err(EncodedPercent)),
            ("/private/%252e%252e/static/x", Err(EncodedPercent)),
            ("/static/100%25", Err(EncodedPercent)),
            ("/static//../private", Err(EmptySegment)),
            ("/static/x//../../private", Err(EmptySegment)),
            ("//static/x", Err(EmptySegment)),
            ("/static/;x/app.css", Err(EmptySegment)),
            ("/static/%c0%ae%c0%ae/private", Err(InvalidUtf8)),
            ("/static/%ff", Err(InvalidUtf8)),
            // Ordinary paths.
            ("/static/app.css", Ok("/static/app.css".to_string())),
            ("/static/dir/", Ok("/static/dir/".to_string())),
            ("/static/...", Ok("/static/...".to_string())),
            ("/static/a.b/..c", Ok("/static/a.b/..c".to_string())),
            ("/%73tatic/a", Ok("/static/a".to_string())),
            ("/static/a%20b", Ok("/static/a b".to_string())),
            ("/static/%E5%B1%B1", Ok("/static/山".to_string())),
            ("/static/a;v=1/b", Ok("/static/a;v=1/b".to_string())),
            ("/", Ok("/".to_string())),
        ] {
            assert_eq!(canonical_path(raw), want, "{raw}");
        }
    }
}
