//! Where the IdP metadata comes from when G-MIS publishes it at a URL, and whether G-MIS is up.
//!
//! - [`refresh`]: fetch `[idp] metadata_url` (rustls, timeout, size cap), check the document
//!   completely ([`trust`]: a signature against a pinned certificate, or pinned certificate
//!   fingerprints), then replace the last good copy on disk atomically; `crate::reload` swaps it
//!   in. Any failure keeps the old metadata and is counted by reason.
//! - [`status`]: the `[idp] status_url` probe behind the "G-MIS is unavailable" page.

pub mod fetch;
pub mod refresh;
pub mod status;
pub mod trust;

use std::path::PathBuf;
use std::time::Duration;

/// The `[idp]` keys of issue 15, as read from the file (paths already resolved).
#[derive(Debug, Default)]
pub struct RawSource {
    pub metadata_url: Option<String>,
    pub refresh_minutes: Option<u64>,
    pub metadata_signing_cert: Option<PathBuf>,
    pub trusted_fingerprints: Vec<String>,
    pub metadata_ca_file: Option<PathBuf>,
    pub metadata_timeout_seconds: Option<u64>,
    pub metadata_max_kib: Option<u64>,
    pub status_url: Option<String>,
    pub status_timeout_seconds: Option<u64>,
    pub status_cache_seconds: Option<u64>,
}

/// How a fetched metadata document earns trust.
#[derive(Debug, Clone)]
pub enum Trust {
    /// `[idp] metadata_signing_cert`: the document must carry an XML signature by this
    /// certificate (DER), over the whole EntityDescriptor.
    Signature { cert_der: Vec<u8>, file: PathBuf },
    /// Unsigned metadata (Salesforce): every signing certificate in it must already be trusted
    /// (in the current copy), listed in `[idp] trusted_fingerprints`, or accepted with
    /// `samlgate idp trust` (the store).
    Pinned { fingerprints: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub url: String,
    pub refresh: Duration,
    pub trust: Trust,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub max_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub url: String,
    /// `[idp] metadata_ca_file` (None: the system roots).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub cache: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct SourceConfig {
    pub fetch: Option<FetchConfig>,
    pub status: Option<StatusConfig>,
}

type ConfigProblem = (&'static str, String, String);

fn problem(key: &'static str, p: impl Into<String>, fix: impl Into<String>) -> ConfigProblem {
    (key, p.into(), fix.into())
}

/// `AB:CD:...` upper case (as `saml::idp::SigningCert::fingerprint`), from that form or bare hex.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        up.as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

impl SourceConfig {
    pub fn new(raw: RawSource) -> Result<SourceConfig, ConfigProblem> {
        let fetch = raw
            .metadata_url
            .as_ref()
            .map(|u| fetch_config(u, &raw))
            .transpose()?;
        if fetch.is_none()
            && (raw.metadata_signing_cert.is_some() || !raw.trusted_fingerprints.is_empty())
        {
            return Err(problem(
                "idp.metadata_url",
                "is not set, but metadata_signing_cert or trusted_fingerprints is",
                "set metadata_url to the IdP's metadata address, or remove the trust keys",
            ));
        }
        let status = match &raw.status_url {
            None => None,
            Some(u) => {
                check_url(u, "idp.status_url", true)?;
                Some(StatusConfig {
                    url: u.clone(),
                    ca_file: raw.metadata_ca_file.clone(),
                    timeout: Duration::from_secs(
                        raw.status_timeout_seconds.unwrap_or(3).clamp(1, 30),
                    ),
                    cache: Duration::from_secs(
                        raw.status_cache_seconds.unwrap_or(30).clamp(5, 3600),
                    ),
                })
            }
        };
        Ok(SourceConfig { fetch, status })
    }
}

fn check_url(u: &str, key: &'static str, http_ok: bool) -> Result<(), ConfigProblem> {
    let ok_scheme = u.starts_with("https://") || (http_ok && u.starts_with("http://"));
    let parsed = u.parse::<hyper::Uri>().ok().filter(|p| p.host().is_some());
    if !ok_scheme || parsed.is_none() {
        let want = if http_ok {
            "an http(s)://"
        } else {
            "an https://"
        };
        return Err(problem(
            key,
            format!("`{u}` is not {want} URL"),
            "e.g. \"https://gmis.example.go.jp/.well-known/samlidp.xml\"",
        ));
    }
    Ok(())
}

fn fetch_config(url: &str, raw: &RawSource) -> Result<FetchConfig, ConfigProblem> {
    check_url(url, "idp.metadata_url", false)?;
    let trust = match &raw.metadata_signing_cert {
        Some(file) => {
            let der = read_cert_der(file).map_err(|e| {
                problem(
                    "idp.metadata_signing_cert",
                    format!("{}: {e}", file.display()),
                    "name the PEM certificate the IdP signs its metadata with",
                )
            })?;
            Trust::Signature {
                cert_der: der,
                file: file.clone(),
            }
        }
        None => {
            let mut fps = Vec::new();
            for f in &raw.trusted_fingerprints {
                fps.push(normalize_fingerprint(f).ok_or_else(|| {
                    problem(
                        "idp.trusted_fingerprints",
                        format!("`{f}` is not a SHA-256 fingerprint"),
                        "64 hex digits, with or without colons (as `samlgate idp status` prints)",
                    )
                })?);
            }
            Trust::Pinned { fingerprints: fps }
        }
    };
    let minutes = raw.refresh_minutes.unwrap_or(60);
    if !(1..=10080).contains(&minutes) {
        return Err(problem(
            "idp.refresh_minutes",
            format!("{minutes} is out of range"),
            "use 1..=10080 minutes (default 60)",
        ));
    }
    Ok(FetchConfig {
        url: url.to_string(),
        refresh: Duration::from_secs(minutes * 60),
        trust,
        ca_file: raw.metadata_ca_file.clone(),
        timeout: Duration::from_secs(raw.metadata_timeout_seconds.unwrap_or(10).clamp(1, 120)),
        max_bytes: (raw.metadata_max_kib.unwrap_or(1024).clamp(4, 65536) * 1024) as usize,
    })
}

fn read_cert_der(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(file).map_err(|e| e.to_string())?;
    let x = openssl::x509::X509::from_pem(&pem)
        .or_else(|_| openssl::x509::X509::from_der(&pem))
        .map_err(|e| format!("not a certificate: {e}"))?;
    x.to_der().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalise_to_the_status_form() {
        let bare = "ab".repeat(32);
        let want = vec!["AB"; 32].join(":");
        assert_eq!(normalize_fingerprint(&bare).as_deref(), Some(want.as_str()));
        assert_eq!(normalize_fingerprint(&want).as_deref(), Some(want.as_str()));
        assert_eq!(normalize_fingerprint("abcd"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn metadata_url_must_be_https() {
        let raw = RawSource {
            metadata_url: Some("http://idp.test/md.xml".into()),
            ..Default::default()
        };
        assert_eq!(SourceConfig::new(raw).unwrap_err().0, "idp.metadata_url");
    }
}
