//! Where a browser may be sent after a login: a path on this gateway's origin, never another
//! site.
//!
//! Security property: every value returned starts with exactly one `/`, has no backslash, no
//! control character and no space, also after one round of percent-decoding; anything else
//! becomes `/`, never a partial repair. An absolute URL (IdPs such as SimpleSAMLphp, ADFS and
//! Salesforce's IdP-initiated "Start URL" send RelayState that way) is honoured only when its
//! origin is exactly `[server] public_url`, and then only as its path and query, through the
//! same checks.

/// Longest return path kept (RelayState is at most 80 bytes in the binding spec; IdPs send more).
const MAX_LEN: usize = 1024;

/// Why a RelayState was not used as the return path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// An absolute http(s) URL of another origin (scheme, host and port compared).
    OtherOrigin(String),
    /// Not a plain same-origin path (a scheme other than http(s), `//host`, a backslash,
    /// control characters, too long, unparsable).
    NotAPath,
}

impl Refused {
    pub fn reason(&self) -> crate::reason::Reason {
        match self {
            Refused::OtherOrigin(_) => crate::reason::Reason::RelayStateOtherOrigin,
            Refused::NotAPath => crate::reason::Reason::RelayStateNotAPath,
        }
    }

    pub fn code(&self) -> &'static str {
        self.reason().code()
    }
}

/// The return path a RelayState asks for: `/` when there is none, a checked path, or the
/// path and query of an absolute URL on `public_url`'s origin. `Err` means "use `/`".
pub fn from_relay_state(relay: Option<&str>, public_url: &str) -> Result<String, Refused> {
    let r = match relay {
        None | Some("") => return Ok("/".into()),
        Some(r) => r,
    };
    let lower = r.get(..8).unwrap_or(r).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return checked(r);
    }
    if r.len() > MAX_LEN {
        return Err(Refused::NotAPath);
    }
    let uri: hyper::Uri = r.parse().map_err(|_| Refused::NotAPath)?;
    let theirs = origin(&uri).ok_or(Refused::NotAPath)?;
    let ours = public_url
        .parse::<hyper::Uri>()
        .ok()
        .as_ref()
        .and_then(origin)
        .ok_or(Refused::NotAPath)?;
    if theirs != ours {
        return Err(Refused::OtherOrigin(theirs));
    }
    checked(uri.path_and_query().map_or("/", |pq| pq.as_str()))
}

/// `scheme://host:port`, lower-cased, with the default port made explicit. `None` for a URL
/// with user info (`https://gw.example@evil.example/` reads differently to people and parsers).
fn origin(uri: &hyper::Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let port = match (scheme.as_str(), authority.port_u16()) {
        (_, Some(p)) => p,
        ("http", None) => 80,
        ("https", None) => 443,
        _ => return None,
    };
    Some(format!(
        "{scheme}://{}:{port}",
        authority.host().to_ascii_lowercase()
    ))
}

fn checked(r: &str) -> Result<String, Refused> {
    // The same checks on the value and on its once-decoded form: a later hop (a proxy, the
    // browser) may decode `%2F`, `%5C` or `%09` and turn `/%09/evil` into `//evil`.
    let decoded = percent_encoding::percent_decode_str(r).decode_utf8_lossy();
    if r.len() <= MAX_LEN && is_plain_path(r) && !r.contains(' ') && is_plain_path(&decoded) {
        Ok(r.to_string())
    } else {
        Err(Refused::NotAPath)
    }
}

/// A same-origin path to continue to, or `/`.
///
/// Accepted: starts with one `/`, no `//` or `/\` prefix (protocol-relative), no backslash or
/// control characters anywhere (browsers turn `\` into `/`), no scheme. Everything else is
/// replaced by `/`, never partially repaired.
pub fn safe_return_path(relay: Option<&str>) -> String {
    relay
        .and_then(|r| checked(r).ok())
        .unwrap_or_else(|| "/".into())
}

/// One leading `/`, not `//` or `/\`, no backslash, no control character.
fn is_plain_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: [&str; 13] = [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil",
        "/%2F%2Fevil",
        "/%5cevil",
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%0D%0A/evil",
        "javascript:alert(1)",
        "evil",
        "/a\r\nSet-Cookie: x=1",
        "",
    ];

    #[test]
    fn return_path_is_same_origin_only() {
        assert_eq!(safe_return_path(Some("/staff/menu?x=1")), "/staff/menu?x=1");
        for bad in BAD {
            assert_eq!(safe_return_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_path(None), "/");
    }

    #[test]
    fn relay_state_absolute_url_on_our_origin_is_its_path() {
        let ours = "https://gw.example.jp";
        let ok = |r: &str| from_relay_state(Some(r), ours);
        assert_eq!(ok("https://gw.example.jp/menu?x=1").unwrap(), "/menu?x=1");
        assert_eq!(ok("HTTPS://GW.Example.JP:443/a").unwrap(), "/a");
        assert_eq!(ok("https://gw.example.jp").unwrap(), "/");
        assert_eq!(ok("/menu").unwrap(), "/menu");
        assert_eq!(from_relay_state(None, ours).unwrap(), "/");
        for (other, origin) in [
            ("https://evil.example/menu", "https://evil.example:443"),
            ("http://gw.example.jp/menu", "http://gw.example.jp:80"),
            (
                "https://gw.example.jp:8443/menu",
                "https://gw.example.jp:8443",
            ),
            (
                "https://gw.example.jp.evil.example/",
                "https://gw.example.jp.evil.example:443",
            ),
        ] {
            assert_eq!(
                ok(other),
                Err(Refused::OtherOrigin(origin.into())),
                "{other:?}"
            );
        }
        // Our origin, but a path that fails the path checks; user info; not http(s).
        for bad in [
            "https://gw.example.jp//evil.example/",
            "https://gw.example.jp/%2F%2Fevil.example",
            "https://gw.example.jp/%5Cevil",
            "https://gw.example.jp@evil.example/",
            "https://x@gw.example.jp/menu",
            "https://gw.example.jp/\\evil",
            "https://gw.example.jp/a b",
            "ftp://gw.example.jp/",
        ] {
            assert_eq!(ok(bad), Err(Refused::NotAPath), "{bad:?}");
        }
        for bad in BAD.iter().filter(|b| !b.is_empty()) {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
    }
}
