//! What a proxied request path means to the staff menu, decided before it is forwarded.
//!
//! Servlet containers and frameworks (Tomcat, Spring) decode `%2e`, drop `;params` from a
//! segment (`..;` is `..`), and some turn `\` or `%5C` into `/`. So "is this under a public
//! prefix?" is answered on the path as the most decoding upstream would see it: fully
//! percent-decoded, dot segments resolved. Targets that upstreams disagree about are refused
//! outright instead of guessed: an encoded `/` or `\`, a raw `\`, a `;` in a dot segment, or a
//! control character.

/// Why a target is refused (400, reason `path_refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// `%2F` (also double-encoded): a segment that some hops split and others do not.
    EncodedSlash,
    /// `%5C`: read as `/` by some upstreams.
    EncodedBackslash,
    /// A raw `\`: read as `/` by some upstreams.
    Backslash,
    /// `..;x`, `%2e%2e;`, `..%3B`: `..` once the path parameter is dropped.
    DotSegmentParameter,
    /// A decoded control character (`%00`, `%0A`, ...).
    ControlCharacter,
}

impl TargetError {
    /// For the operator's log line.
    pub fn detail(self) -> &'static str {
        match self {
            TargetError::EncodedSlash => "encoded '/' (%2F) in the path",
            TargetError::EncodedBackslash => "encoded '\\' (%5C) in the path",
            TargetError::Backslash => "'\\' in the path",
            TargetError::DotSegmentParameter => "';' in a dot segment (..;)",
            TargetError::ControlCharacter => "encoded control character in the path",
        }
    }
}

/// Decodes `%XX` until nothing changes (at most 4 rounds: `%25252e` is still `.`); bytes that
/// are not an escape stay as they are.
fn decode_fully(seg: &str) -> Vec<u8> {
    let mut cur = seg.as_bytes().to_vec();
    for _ in 0..4 {
        let next: Vec<u8> = percent_encoding::percent_decode(&cur).collect();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// The path (without query) as the most decoding upstream reads it: every segment fully
/// percent-decoded, `.` and `..` resolved (RFC 3986 §5.2.4). Err for targets refused outright.
pub fn canonical_path(raw: &str) -> Result<String, TargetError> {
    if raw.contains('\\') {
        return Err(TargetError::Backslash);
    }
    let segs: Vec<Vec<u8>> = raw.split('/').skip(1).map(decode_fully).collect();
    for s in &segs {
        if s.contains(&b'/') {
            return Err(TargetError::EncodedSlash);
        }
        if s.contains(&b'\\') {
            return Err(TargetError::EncodedBackslash);
        }
        if s.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(TargetError::ControlCharacter);
        }
        if let Some(i) = s.iter().position(|&b| b == b';') {
            if matches!(&s[..i], b"." | b"..") {
                return Err(TargetError::DotSegmentParameter);
            }
        }
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let last = segs.len().saturating_sub(1);
    for (i, s) in segs.iter().enumerate() {
        match s.as_slice() {
            b"." | b".." => {
                if s.as_slice() == b".." {
                    out.pop();
                }
                // `/a/..` names the directory `/`: keep the trailing slash.
                if i == last {
                    out.push(b"");
                }
            }
            s => out.push(s),
        }
    }
    let joined: Vec<u8> = out.join(&b'/');
    Ok(format!("/{}", String::from_utf8_lossy(&joined)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escapes_from_issue_12_are_refused_or_resolved() {
        use TargetError::*;
        for (raw, want) in [
            ("/static/..;/private", Err(DotSegmentParameter)),
            ("/static/%2e%2e;/private", Err(DotSegmentParameter)),
            ("/static/..%3B/private", Err(DotSegmentParameter)),
            ("/static/.;x/private", Err(DotSegmentParameter)),
            ("/static/x/..%2F..%2Fprivate", Err(EncodedSlash)),
            ("/static/%252F/x", Err(EncodedSlash)),
            ("/static/..%5Cprivate", Err(EncodedBackslash)),
            ("/static/..\\private", Err(Backslash)),
            ("/static/..%00/private", Err(ControlCharacter)),
            ("/static/../private", Ok("/private".to_string())),
            ("/static/%2e%2e/private", Ok("/private".to_string())),
            ("/static/%252e%252e/private", Ok("/private".to_string())),
            ("/static/x/..", Ok("/static/".to_string())),
            ("/static/app.css", Ok("/static/app.css".to_string())),
            ("/%73tatic/a", Ok("/static/a".to_string())),
            ("/static/a;v=1/b", Ok("/static/a;v=1/b".to_string())),
            ("/", Ok("/".to_string())),
        ] {
            assert_eq!(canonical_path(raw), want, "{raw}");
        }
    }
}
