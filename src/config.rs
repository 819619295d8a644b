//! The TOML configuration file, validated into a [`Config`].
//!
//! Every error names the key and says how to fix it: an operator reading a failed start-up
//! should not need the source. Relative paths are resolved against the config file's directory,
//! so a unit file can start the gateway from any working directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::ProfileField;

/// `--config FILE`, shared by the subcommands that read the config.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArg {
    /// The TOML config file (README.md "Configuration" lists every key).
    #[arg(
        long,
        short,
        global = true,
        env = "SAMLGATE_CONFIG",
        default_value = "samlgate.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}\n  fix: pass an existing file with --config FILE (or set SAMLGATE_CONFIG)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}\n  fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: String,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The raw file, as serde sees it. `deny_unknown_fields` turns a typo into an error that names it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    sp: RawSp,
    idp: RawIdp,
    store: RawStore,
    #[serde(default)]
    attributes: AttributeMap,
    #[serde(default)]
    consent: ConsentConfig,
    #[serde(default)]
    policy: PolicyConfig,
    #[serde(default)]
    session: SessionConfig,
    upstream: Option<UpstreamConfig>,
    admin: Option<AdminConfig>,
    token: Option<TokenConfig>,
    #[serde(default)]
    support: SupportConfig,
    /// Local ID/password accounts (issue 13; docs/ACCOUNTS.md).
    #[serde(default)]
    local: crate::accounts::account::LocalConfig,
    /// Outgoing mail (password-reset links, notices): src/mail.rs.
    mail: Option<crate::mail::MailConfig>,
    /// The 事務局's console at /console/ (issue 14; crate::console).
    #[serde(default)]
    console: ConsoleConfig,
}

/// `[support]`: who a refused or stuck person contacts. Shown on every refusal and terminal
/// page and in the footer; an empty value is left off the page.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SupportConfig {
    pub name: String,
    pub phone: String,
    pub email: String,
    pub url: String,
    pub hours: String,
}

impl Default for SupportConfig {
    fn default() -> Self {
        SupportConfig {
            name: "G-MIS事務局".into(),
            phone: String::new(),
            email: String::new(),
            url: String::new(),
            hours: String::new(),
        }
    }
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

impl SupportConfig {
    /// `tel:` target: the digits and a leading + of `phone`.
    pub fn tel_href(&self) -> String {
        let digits: String = self
            .phone
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        format!("tel:{digits}")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(invalid(
                "support.name",
                "is empty",
                "name the desk people contact, e.g. \"G-MIS事務局\"",
            ));
        }
        if !self.url.is_empty() && !is_http_url(&self.url) {
            return Err(invalid(
                "support.url",
                format!("`{}` is not an http(s) URL", self.url),
                "give the help page's address, e.g. \"https://www.example.go.jp/help\"",
            ));
        }
        if !self.email.is_empty()
            && (self.email.contains(char::is_whitespace) || !self.email.contains('@'))
        {
            return Err(invalid(
                "support.email",
                format!("`{}` is not a mail address", self.email),
                "e.g. \"support@example.go.jp\"",
            ));
        }
        Ok(())
    }
}

/// Signed identity tokens (JWT ES256) for backends that verify them; off unless present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token key set (EC P-256), managed with `samlgate keys ... --token`.
    pub keys_dir: PathBuf,
    /// Token lifetime; keep it short (a self-verified token cannot see a logout).
    #[serde(default = "default_token_lifetime")]
    pub lifetime_seconds: i64,
    /// `aud` claim; default: the upstream URL, else public_url.
    pub audience: Option<String>,
}

fn default_token_lifetime() -> i64 {
    300
}

/// The secretariat's HTTP API under `/admin/`; off unless this section exists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// A file holding the bearer token (one line, at least 32 characters).
    pub token_file: PathBuf,
    /// When set (e.g. "127.0.0.1:9090"), the admin API and `/metrics` are served only on this
    /// plain-HTTP listener, and the main listener answers 404 for them.
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    public_url: String,
    tls: Option<TlsFiles>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_max_acs_concurrency")]
    max_concurrent_verifications: usize,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_header_timeout")]
    header_read_timeout_seconds: u64,
    #[serde(default = "default_saml_login_rate")]
    saml_login_rate_per_minute: u32,
    /// The clock of the secretariat's lists (crate::timezone).
    #[serde(default = "default_timezone")]
    timezone: String,
}

fn default_timezone() -> String {
    crate::timezone::DEFAULT.into()
}

/// `GET /saml/login` per client address (IPv6: per /64) and minute, also the burst size. One
/// browser needs one per login; 60 leaves room for a hospital's staff behind one NAT address.
fn default_saml_login_rate() -> u32 {
    60
}

fn default_max_connections() -> usize {
    10_000
}
fn default_header_timeout() -> u64 {
    10
}

fn default_max_body() -> usize {
    256 * 1024
}
fn default_max_acs_concurrency() -> usize {
    // Verification (with the form and base64 decoding) is CPU-bound: more in flight than
    // cores only queues, and 4 x cores let a flood of large invalid posts crowd out the
    // threads answering /auth/verify (p99 38 ms with 8 slots on 2 cores, 7 ms with 2:
    // bench/HARDENING.md).
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSp {
    entity_id: String,
    keys_dir: PathBuf,
    #[serde(default = "default_grace")]
    retired_grace_hours: i64,
    #[serde(default)]
    require_encryption: bool,
}

fn default_grace() -> i64 {
    24
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdp {
    metadata: PathBuf,
    #[serde(default = "default_skew")]
    clock_skew_seconds: i64,
    #[serde(default = "default_issue_delay")]
    max_issue_delay_seconds: i64,
    #[serde(default = "yes")]
    allow_unsolicited: bool,
    #[serde(default = "yes")]
    sign_authn_requests: bool,
    #[serde(default = "default_nameid_format")]
    name_id_format: String,
    #[serde(default)]
    force_authn: bool,
    #[serde(default)]
    allow_sha1: bool,
    // Issue 15: where the metadata comes from and whether the IdP is up (crate::idp_source).
    metadata_url: Option<String>,
    refresh_minutes: Option<u64>,
    metadata_signing_cert: Option<PathBuf>,
    #[serde(default)]
    trusted_fingerprints: Vec<String>,
    metadata_ca_file: Option<PathBuf>,
    metadata_timeout_seconds: Option<u64>,
    metadata_max_kib: Option<u64>,
    status_url: Option<String>,
    status_timeout_seconds: Option<u64>,
    status_cache_seconds: Option<u64>,
}

impl RawIdp {
    /// `metadata_url` and `status_url` with their keys, checked (crate::idp_source).
    fn source(
        &mut self,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<crate::idp_source::SourceConfig, ConfigError> {
        crate::idp_source::SourceConfig::new(crate::idp_source::RawSource {
            metadata_url: self.metadata_url.take(),
            refresh_minutes: self.refresh_minutes,
            metadata_signing_cert: self.metadata_signing_cert.as_deref().map(resolve),
            trusted_fingerprints: std::mem::take(&mut self.trusted_fingerprints),
            metadata_ca_file: self.metadata_ca_file.as_deref().map(resolve),
            metadata_timeout_seconds: self.metadata_timeout_seconds,
            metadata_max_kib: self.metadata_max_kib,
            status_url: self.status_url.take(),
            status_timeout_seconds: self.status_timeout_seconds,
            status_cache_seconds: self.status_cache_seconds,
        })
        .map_err(|(key, problem, fix)| invalid(key, problem, fix))
    }
}

fn default_nameid_format() -> String {
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into()
}

fn default_skew() -> i64 {
    60
}
fn default_issue_delay() -> i64 {
    300
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// sled directory (the embedded store). Exactly one of `path` and `url`.
    path: Option<PathBuf>,
    /// PostgreSQL (several instances on one database): `postgresql://user@host:port/db`.
    url: Option<String>,
    pool_size: Option<u32>,
    connect_timeout_seconds: Option<u64>,
    /// PEM CA file: TLS to the database (rustls), verified against these roots only.
    ca_file: Option<PathBuf>,
    /// sled's page cache. What sled reads and writes stays cached up to this size; RSS grows
    /// with it (bench/RESULTS.md: 4, 8 and 16 MiB measured). The hot set (live sessions,
    /// users, consents) is small.
    #[serde(default = "default_cache_mib")]
    cache_mib: u64,
}
fn default_cache_mib() -> u64 {
    8
}

/// `[store]` for PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStoreConfig {
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_seconds: u64,
    pub ca_file: Option<PathBuf>,
}

impl PgStoreConfig {
    /// Whether the URL carries a password (`user:pw@` or `?password=`): then the config file
    /// is a secret too.
    pub fn has_password(&self) -> bool {
        self.url
            .parse::<postgres::Config>()
            .is_ok_and(|c| c.get_password().is_some())
    }
}

/// Exactly one backend: `path` (sled) or `url` (PostgreSQL), each with only its own keys.
fn store_backend(
    raw: &RawStore,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<(PathBuf, Option<PgStoreConfig>), ConfigError> {
    let Some(url) = &raw.url else {
        for (key, set) in [
            ("store.pool_size", raw.pool_size.is_some()),
            (
                "store.connect_timeout_seconds",
                raw.connect_timeout_seconds.is_some(),
            ),
            ("store.ca_file", raw.ca_file.is_some()),
        ] {
            if set {
                return Err(invalid(
                    key,
                    "applies to PostgreSQL only",
                    "set [store] url, or remove it",
                ));
            }
        }
        let path = raw.path.as_deref().ok_or_else(|| {
            invalid(
                "store.path",
                "no store configured",
                "set [store] path (sled) or [store] url (PostgreSQL)",
            )
        })?;
        return Ok((resolve(path), None));
    };
    if raw.path.is_some() {
        return Err(invalid(
            "store.url",
            "[store] path and url are both set",
            "keep path for the embedded sled store, or url for PostgreSQL, not both",
        ));
    }
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://"))
        || url.parse::<postgres::Config>().is_err()
    {
        return Err(invalid(
            "store.url",
            "not a PostgreSQL URL",
            "use postgresql://user@host:port/db",
        ));
    }
    let pool_size = raw.pool_size.unwrap_or(16);
    if !(1..=1000).contains(&pool_size) {
        return Err(invalid(
            "store.pool_size",
            format!("{pool_size} is out of range"),
            "use 1 to 1000 (default 16)",
        ));
    }
    let connect_timeout_seconds = raw.connect_timeout_seconds.unwrap_or(5);
    if !(1..=300).contains(&connect_timeout_seconds) {
        return Err(invalid(
            "store.connect_timeout_seconds",
            format!("{connect_timeout_seconds} is out of range"),
            "use 1 to 300 (default 5)",
        ));
    }
    Ok((
        PathBuf::new(),
        Some(PgStoreConfig {
            url: url.clone(),
            pool_size,
            connect_timeout_seconds,
            ca_file: raw.ca_file.as_deref().map(resolve),
        }),
    ))
}

/// Profile field -> SAML attribute Name. `"NameID"` means the Subject's NameID.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeMap {
    pub account_id: String,
    pub category: String,
    pub facility_code: String,
    pub facility_name: String,
    pub display_name: String,
    pub email: String,
    /// Profile fields that must be present (non-empty) or the login is refused.
    pub required: Vec<String>,
    /// `[attributes.transform.FIELD]`: value as sent -> value as used, e.g. category
    /// `"01" = "病院"`. A value not in the table passes unchanged (see identity::attributes).
    pub transform: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// A regular expression every G-MIS account id entered by hand must match, e.g.
    /// `^GM[0-9]{7}$` (`applications add` refuses a typo). Absent: any id.
    pub account_id_pattern: Option<String>,
}

/// The profile field names `[attributes]` accepts (`required`, `transform`).
pub const PROFILE_FIELDS: [&str; 6] = ProfileField::NAMES;

impl Default for AttributeMap {
    fn default() -> Self {
        AttributeMap {
            account_id: "gmisAccountId".into(),
            category: "accountCategory".into(),
            facility_code: "facilityCode".into(),
            facility_name: "facilityName".into(),
            display_name: "displayName".into(),
            email: "mail".into(),
            // No facility_code: public bodies (保健所, 都道府県) have none and log in with an
            // approved application.
            required: vec!["account_id".into(), "category".into()],
            transform: Default::default(),
            account_id_pattern: None,
        }
    }
}

impl AttributeMap {
    /// `[attributes]` at load: required fields, transform tables, mapped names, the pattern.
    fn validate(&self) -> Result<(), ConfigError> {
        for f in &self.required {
            if !PROFILE_FIELDS.contains(&f.as_str()) {
                return Err(invalid(
                    "attributes.required",
                    format!("`{f}` is not a profile field"),
                    format!("use only: {}", PROFILE_FIELDS.join(", ")),
                ));
            }
        }
        if !self.required.iter().any(|f| f == "account_id") {
            return Err(invalid(
                "attributes.required",
                "does not include account_id",
                "account_id identifies the user; keep it in the list",
            ));
        }
        self.check_transform()?;
        for (field, name) in self.pairs() {
            if name.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "attributes",
                    problem: format!("field `{field}` maps to an empty attribute name"),
                    fix: "give the SAML attribute Name, or \"NameID\" for the subject".into(),
                });
            }
        }
        Ok(())
    }

    /// Checked after `[support]`, as before the split (the order errors are reported in).
    fn validate_pattern(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.account_id_pattern {
            regex::Regex::new(p).map_err(|e| {
                invalid(
                    "attributes.account_id_pattern",
                    format!("`{p}` is not a regular expression: {e}"),
                    "e.g. \"^GM[0-9]{7}$\"",
                )
            })?;
        }
        Ok(())
    }

    /// `[attributes.transform]`: only profile fields other than account_id (the identity is
    /// the signed value, never rewritten), each a non-empty table of non-empty strings.
    fn check_transform(&self) -> Result<(), ConfigError> {
        let bad = |problem: String, fix: &str| ConfigError::Invalid {
            key: "attributes.transform",
            problem,
            fix: fix.into(),
        };
        for (field, table) in &self.transform {
            if !PROFILE_FIELDS.contains(&field.as_str()) {
                return Err(bad(
                    format!("`{field}` is not a profile field"),
                    &format!("use one of: {}", PROFILE_FIELDS[1..].join(", ")),
                ));
            }
            if field == "account_id" {
                return Err(bad(
                    "account_id cannot be transformed".into(),
                    "the account id is used exactly as G-MIS signed it; remove the table",
                ));
            }
            if table.is_empty() {
                return Err(bad(
                    format!("the table for `{field}` is empty"),
                    "add \"code\" = \"value\" lines or remove the table",
                ));
            }
            if let Some((k, v)) = table
                .iter()
                .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty() || k.trim() != k.as_str())
            {
                return Err(bad(
                    format!("`{field}`: {k:?} = {v:?} has an empty or space-padded side"),
                    "both sides must be non-empty; values are trimmed before lookup",
                ));
            }
        }
        Ok(())
    }

    /// `account_id_pattern`, compiled (checked at load, so a bad one never gets here).
    pub fn account_id_regex(&self) -> Option<regex::Regex> {
        self.account_id_pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok())
    }

    /// (profile field, SAML attribute name) pairs, in profile order.
    pub fn pairs(&self) -> [(ProfileField, &str); 6] {
        [
            (ProfileField::AccountId, &self.account_id),
            (ProfileField::Category, &self.category),
            (ProfileField::FacilityCode, &self.facility_code),
            (ProfileField::FacilityName, &self.facility_name),
            (ProfileField::DisplayName, &self.display_name),
            (ProfileField::Email, &self.email),
        ]
    }

    /// `required`, typed (names were checked at load; an unknown one is skipped).
    pub fn required_fields(&self) -> Vec<ProfileField> {
        self.required
            .iter()
            .filter_map(|f| ProfileField::from_name(f))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentConfig {
    pub required: bool,
    pub version: String,
    /// The consent document of `version`: a Markdown file or an HTML fragment, shown in full on
    /// the consent page. `{version}` in the path is replaced by `version` (a file per version).
    pub document: Option<PathBuf>,
    /// The privacy policy the consent page links to.
    pub privacy_url: String,
    /// The document, rendered at load time.
    #[serde(skip)]
    pub loaded: crate::identity::document::ConsentDocument,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            required: true,
            version: "2023-04".into(),
            document: None,
            privacy_url: String::new(),
            loaded: Default::default(),
        }
    }
}

impl ConsentConfig {
    /// Resolves and reads `document` (with `{version}` filled in) and checks `privacy_url`.
    fn load_document(&mut self, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<(), ConfigError> {
        if !self.privacy_url.is_empty() && !is_http_url(&self.privacy_url) {
            return Err(invalid(
                "consent.privacy_url",
                format!("`{}` is not an http(s) URL", self.privacy_url),
                "give the privacy policy's address, e.g. \"https://www.example.go.jp/privacy\"",
            ));
        }
        if let Some(d) = &self.document {
            let path = resolve(Path::new(
                &d.to_string_lossy().replace("{version}", &self.version),
            ));
            self.loaded = crate::identity::document::load(&path).map_err(|e| {
                invalid(
                    "consent.document",
                    e,
                    "give a readable Markdown (.md) file or an HTML fragment (.html) of plain tags",
                )
            })?;
            self.document = Some(path);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub open_categories: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            open_categories: ["病院", "診療所", "歯科診療所", "助産所", "薬局"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub idle_minutes: u64,
    pub absolute_hours: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_minutes: 30,
            absolute_hours: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The staff menu, e.g. "http://127.0.0.1:9000" (http only: it runs beside the gateway).
    pub url: String,
    /// Path prefixes that pass without a session (identity headers are still stripped).
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// Seconds to wait for the upstream's response headers.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_seconds: u64,
    /// Speak HTTP/2 (prior knowledge, h2c) to the upstream instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
}

fn default_upstream_timeout() -> u64 {
    60
}

/// The validated configuration. Paths are absolute; URLs are checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub listen: SocketAddr,
    /// Without a trailing slash, e.g. `https://gw.example.jp`.
    pub public_url: String,
    pub https: bool,
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<IpAddr>,
    pub max_body_bytes: usize,
    pub max_concurrent_verifications: usize,
    /// Open connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A client must send its request headers within this (slowloris).
    pub header_read_timeout_seconds: u64,
    /// `GET /saml/login` per client address and minute (429 beyond).
    pub saml_login_rate_per_minute: u32,
    pub sp_entity_id: String,
    pub keys_dir: PathBuf,
    /// How long a retired SP key keeps decrypting before `keys remove` will delete it.
    pub retired_grace_hours: i64,
    /// Refuse assertions that were not encrypted to us.
    pub require_encryption: bool,
    pub idp_metadata: PathBuf,
    pub clock_skew_seconds: i64,
    pub max_issue_delay_seconds: i64,
    pub allow_unsolicited: bool,
    /// Sign AuthnRequests (Redirect binding, RSA-SHA256) with the active SP key.
    pub sign_authn_requests: bool,
    /// NameIDPolicy Format asked for in AuthnRequests ("" = none).
    pub name_id_format: String,
    pub force_authn: bool,
    /// `[idp] allow_sha1`: accept RSA-SHA1 / SHA-1 digests from the metadata keys (warned).
    pub allow_sha1: bool,
    /// `[idp] metadata_url` and its trust, `[idp] status_url` (crate::idp_source).
    pub idp_source: crate::idp_source::SourceConfig,
    pub store_path: PathBuf,
    /// sled page cache, MiB (`[store] cache_mib`, default 8).
    pub store_cache_mib: u64,
    /// `[store] url` and its settings: PostgreSQL instead of sled (`store_path` is then empty).
    pub store_pg: Option<PgStoreConfig>,
    pub attributes: AttributeMap,
    pub consent: ConsentConfig,
    pub policy: PolicyConfig,
    pub session: SessionConfig,
    pub upstream: Option<UpstreamConfig>,
    /// SHA-256 of the admin bearer token; `None` = admin API off.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub admin_token_file: Option<PathBuf>,
    /// `[admin] listen`: the admin API and `/metrics` only there.
    pub admin_listen: Option<SocketAddr>,
    pub token: Option<TokenConfig>,
    pub support: SupportConfig,
    /// `[local]`: ID/password accounts (password rules, throttle, resets, second factor).
    pub local: crate::accounts::account::LocalConfig,
    /// `[mail]`: SMTP; `None` = reset links are not mailed (the 事務局 resets instead).
    pub mail: Option<crate::mail::MailConfig>,
    /// `[console]`: the 事務局's console (idle timeout).
    pub console: ConsoleConfig,
    /// `[server] timezone`: the clock of the console's and the CLI's lists.
    pub timezone: crate::timezone::Zone,
}

impl Config {
    /// The ACS URL: the Destination and Recipient every accepted response must name.
    pub fn acs_url(&self) -> String {
        format!("{}/saml/acs", self.public_url)
    }

    pub fn slo_url(&self) -> String {
        format!("{}/saml/slo", self.public_url)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_toml(&text, path, &base)
    }

    /// Parses the file, then checks each section (each says what it yields), then assembles.
    pub fn from_toml(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: file.to_path_buf(),
            message: explain_toml_error(&e),
        })?;
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let (store_path, store_pg) = store_backend(&raw.store, &resolve)?;
        let server = raw.server.validate()?;
        raw.store.validate_cache()?;
        raw.server.validate_limits()?;
        raw.sp.validate()?;
        raw.idp.validate()?;
        raw.attributes.validate()?;
        raw.consent.validate_version()?;
        raw.session.validate()?;
        raw.upstream
            .as_ref()
            .map(UpstreamConfig::validate)
            .transpose()?;
        let admin = match &raw.admin {
            None => AdminSection::default(),
            Some(a) => a.validate(server.listen, &resolve)?,
        };
        let token = raw.token.take().map(|t| t.validate(&resolve)).transpose()?;
        raw.support.validate()?;
        raw.attributes.validate_pattern()?;
        raw.consent.load_document(&resolve)?;
        let idp_source = raw.idp.source(&resolve)?;
        let mail = raw
            .mail
            .take()
            .map(|m| m.checked(&resolve))
            .transpose()
            .map_err(|e| invalid(e.key, e.problem, e.fix))?;
        let tls = raw.server.tls.take().map(|t| TlsFiles {
            cert: resolve(&t.cert),
            key: resolve(&t.key),
        });
        let checked = Checked {
            store_path,
            store_pg,
            server,
            admin,
            token,
            idp_source,
            mail,
            tls,
        };
        Self::assemble(file, raw, checked, &resolve)
    }

    /// The checked sections and the rest of the raw file into one [`Config`] (the console
    /// and time zone are checked here, last, as before).
    fn assemble(
        file: &Path,
        raw: RawConfig,
        c: Checked,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Config, ConfigError> {
        Ok(Config {
            file: file.to_path_buf(),
            listen: c.server.listen,
            public_url: c.server.public_url,
            https: c.server.https,
            tls: c.tls,
            trusted_proxies: c.server.trusted_proxies,
            max_body_bytes: raw.server.max_body_bytes,
            max_concurrent_verifications: raw.server.max_concurrent_verifications,
            max_connections: raw.server.max_connections,
            header_read_timeout_seconds: raw.server.header_read_timeout_seconds,
            saml_login_rate_per_minute: raw.server.saml_login_rate_per_minute,
            sp_entity_id: raw.sp.entity_id,
            keys_dir: resolve(&raw.sp.keys_dir),
            retired_grace_hours: raw.sp.retired_grace_hours,
            require_encryption: raw.sp.require_encryption,
            idp_metadata: resolve(&raw.idp.metadata),
            clock_skew_seconds: raw.idp.clock_skew_seconds,
            max_issue_delay_seconds: raw.idp.max_issue_delay_seconds,
            allow_unsolicited: raw.idp.allow_unsolicited,
            sign_authn_requests: raw.idp.sign_authn_requests,
            name_id_format: raw.idp.name_id_format,
            force_authn: raw.idp.force_authn,
            allow_sha1: raw.idp.allow_sha1,
            idp_source: c.idp_source,
            store_path: c.store_path,
            store_cache_mib: raw.store.cache_mib,
            store_pg: c.store_pg,
            attributes: raw.attributes,
            consent: raw.consent,
            policy: raw.policy,
            session: raw.session,
            upstream: raw.upstream,
            admin_token_sha256: c.admin.token_sha256,
            admin_token_file: c.admin.token_file,
            admin_listen: c.admin.listen,
            token: c.token,
            support: raw.support,
            local: raw.local,
            mail: c.mail,
            console: raw.console.checked()?,
            timezone: crate::timezone::Zone::load(&raw.server.timezone).map_err(|e| {
                invalid("server.timezone", e, "an IANA zone name such as Asia/Tokyo")
            })?,
        })
    }
}

/// What `from_toml`'s section checks yield, for `assemble`.
struct Checked {
    store_path: PathBuf,
    store_pg: Option<PgStoreConfig>,
    server: ServerSection,
    admin: AdminSection,
    token: Option<TokenConfig>,
    idp_source: crate::idp_source::SourceConfig,
    mail: Option<crate::mail::MailConfig>,
    tls: Option<TlsFiles>,
}

/// `[server]` checked: the parts of [`Config`] it yields.
struct ServerSection {
    listen: SocketAddr,
    public_url: String,
    https: bool,
    trusted_proxies: Vec<IpAddr>,
}

impl RawServer {
    fn validate(&self) -> Result<ServerSection, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("`{}` is not an address:port", self.listen),
                "write it as \"127.0.0.1:8080\" or \"[::1]:8080\"",
            )
        })?;
        let (public_url, https) = self.public_url()?;
        let mut trusted_proxies = Vec::new();
        for p in &self.trusted_proxies {
            trusted_proxies.push(p.parse().map_err(|_| {
                invalid(
                    "server.trusted_proxies",
                    format!("`{p}` is not an IP address"),
                    "list proxy IP addresses, e.g. [\"127.0.0.1\"]",
                )
            })?);
        }
        if self.max_body_bytes < 4096 || self.max_body_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "server.max_body_bytes",
                format!("{} is out of range", self.max_body_bytes),
                "use a value between 4096 and 16777216 (default 262144)",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be at least 1",
                "leave it out for the default (10000)",
            ));
        }
        Ok(ServerSection {
            listen,
            public_url,
            https,
            trusted_proxies,
        })
    }

    /// `public_url` without its trailing slash, and whether it is https.
    fn public_url(&self) -> Result<(String, bool), ConfigError> {
        let public_url = self.public_url.trim_end_matches('/').to_string();
        let https = if public_url.starts_with("https://") {
            true
        } else if public_url.starts_with("http://") {
            false
        } else {
            return Err(invalid(
                "server.public_url",
                format!("`{public_url}` is not an http(s) URL"),
                "give the URL browsers and the IdP use, e.g. \"https://gw.example.jp\"",
            ));
        };
        if public_url[public_url.find("://").unwrap_or(0) + 3..].contains('/') {
            return Err(invalid(
                "server.public_url",
                format!("`{public_url}` has a path"),
                "samlgate serves at the root of its origin; give scheme://host[:port] only",
            ));
        }
        Ok((public_url, https))
    }

    /// The limits checked after `[store] cache_mib` (the order errors are reported in).
    fn validate_limits(&self) -> Result<(), ConfigError> {
        if !(1..=300).contains(&self.header_read_timeout_seconds) {
            return Err(invalid(
                "server.header_read_timeout_seconds",
                format!("{} is out of range", self.header_read_timeout_seconds),
                "use 1..=300 (default 10)",
            ));
        }
        if !(1..=1_000_000).contains(&self.saml_login_rate_per_minute) {
            return Err(invalid(
                "server.saml_login_rate_per_minute",
                format!("{} is out of range", self.saml_login_rate_per_minute),
                "use 1..=1000000 (default 60 per client address and minute)",
            ));
        }
        if self.max_concurrent_verifications == 0 {
            return Err(invalid(
                "server.max_concurrent_verifications",
                "must be at least 1",
                "leave it out for the default (4 x CPU cores)",
            ));
        }
        Ok(())
    }
}

impl RawStore {
    fn validate_cache(&self) -> Result<(), ConfigError> {
        if !(1..=4096).contains(&self.cache_mib) {
            return Err(invalid(
                "store.cache_mib",
                format!("{} is out of range", self.cache_mib),
                "use 1 to 4096 (MiB); the default 8 suits a single gateway",
            ));
        }
        Ok(())
    }
}

impl RawSp {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.entity_id.trim().is_empty() {
            return Err(invalid(
                "sp.entity_id",
                "is empty",
                "set the SP entityID the IdP knows, e.g. \"https://gw.example.jp/saml/metadata\"",
            ));
        }
        Ok(())
    }
}

impl RawIdp {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0..=600).contains(&self.clock_skew_seconds) {
            return Err(invalid(
                "idp.clock_skew_seconds",
                format!("{} is out of range", self.clock_skew_seconds),
                "use 0..=600 seconds (default 60); fix the clocks (NTP) rather than widening it",
            ));
        }
        if !(10..=3600).contains(&self.max_issue_delay_seconds) {
            return Err(invalid(
                "idp.max_issue_delay_seconds",
                format!("{} is out of range", self.max_issue_delay_seconds),
                "use 10..=3600 seconds (default 300)",
            ));
        }
        Ok(())
    }
}

impl ConsentConfig {
    fn validate_version(&self) -> Result<(), ConfigError> {
        if self.version.trim().is_empty() {
            return Err(invalid(
                "consent.version",
                "is empty",
                "name the consent text's version, e.g. \"2023-04\"",
            ));
        }
        Ok(())
    }
}

impl SessionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.idle_minutes == 0 || self.absolute_hours == 0 {
            return Err(invalid(
                "session",
                "idle_minutes and absolute_hours must be at least 1",
                "defaults are idle_minutes = 30, absolute_hours = 8",
            ));
        }
        Ok(())
    }
}

impl UpstreamConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.url.starts_with("http://") || self.url.parse::<hyper::Uri>().is_err() {
            return Err(invalid(
                "upstream.url",
                format!("`{}` is not an http:// URL", self.url),
                "e.g. \"http://127.0.0.1:9000\" (the staff menu beside the gateway; TLS to it is not supported)",
            ));
        }
        for p in &self.public_paths {
            if !p.starts_with('/') {
                return Err(invalid(
                    "upstream.public_paths",
                    format!("`{p}` does not start with /"),
                    "e.g. [\"/static/\"]",
                ));
            }
        }
        Ok(())
    }
}

/// `[admin]` checked: the token's hash, its file and the admin listener.
#[derive(Default)]
struct AdminSection {
    token_sha256: Option<[u8; 32]>,
    token_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

impl AdminConfig {
    fn validate(
        &self,
        server_listen: SocketAddr,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<AdminSection, ConfigError> {
        let path = resolve(&self.token_file);
        let tok = std::fs::read_to_string(&path).map_err(|e| {
            invalid(
                "admin.token_file",
                format!("cannot read {}: {e}", path.display()),
                "create it with `openssl rand -hex 32 > FILE; chmod 600 FILE`, or remove [admin]",
            )
        })?;
        let tok = tok.trim();
        if tok.len() < 32 {
            return Err(invalid(
                "admin.token_file",
                "the token is shorter than 32 characters",
                "use `openssl rand -hex 32` to make one",
            ));
        }
        let listen = match self.listen.as_deref() {
            None => None,
            Some(l) => {
                let addr: SocketAddr = l.parse().map_err(|_| {
                    invalid(
                        "admin.listen",
                        format!("`{l}` is not an address:port"),
                        "write it as \"127.0.0.1:9090\" (keep it off the internet)",
                    )
                })?;
                if addr == server_listen {
                    return Err(invalid(
                        "admin.listen",
                        format!("{addr} is also [server] listen"),
                        "give the admin listener its own port, or remove admin.listen",
                    ));
                }
                Some(addr)
            }
        };
        Ok(AdminSection {
            token_sha256: Some(sha2_256(tok.as_bytes())),
            token_file: Some(path),
            listen,
        })
    }
}

impl TokenConfig {
    fn validate(mut self, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Self, ConfigError> {
        if !(30..=3600).contains(&self.lifetime_seconds) {
            return Err(invalid(
                "token.lifetime_seconds",
                format!("{} is out of range", self.lifetime_seconds),
                "use 30..=3600 (default 300): a token cannot be revoked before it expires",
            ));
        }
        self.keys_dir = resolve(&self.keys_dir);
        Ok(self)
    }
}

/// Said at start-up, by `check-config` and on every SHA-1 login while `[idp] allow_sha1 = true`.
pub const SHA1_WARNING: &str = "[idp] allow_sha1 = true: RSA-SHA1 signatures and SHA-1 digests \
     from the IdP's metadata keys are accepted; SHA-1 is broken for collisions. Ask the IdP to \
     sign with RSA-SHA256, then remove allow_sha1";

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// toml's messages already carry line and column; add the fix for the common cases.
fn explain_toml_error(e: &toml::de::Error) -> String {
    let msg = e.to_string();
    let hint = if msg.contains("unknown field") {
        "\n  fix: remove or rename the key; see README.md \"Configuration\" for the keys samlgate knows"
    } else if msg.contains("missing field") {
        "\n  fix: add the key; README.md \"Configuration\" lists every key with an example"
    } else if msg.contains("invalid type") {
        "\n  fix: check the value's type (strings in quotes, numbers and true/false bare)"
    } else {
        ""
    };
    format!("{}{hint}", msg.trim_end())
}

/// `[console]`: the 事務局's console (crate::console).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// An operator idle this long is logged out (default 900 s = 15 min).
    pub idle_timeout_seconds: u64,
    /// A console login ends after this however busy (default 8 h).
    pub max_hours: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            idle_timeout_seconds: 900,
            max_hours: 8,
        }
    }
}

impl ConsoleConfig {
    pub fn checked(self) -> Result<ConsoleConfig, ConfigError> {
        if !(1..=3600).contains(&self.idle_timeout_seconds) {
            return Err(ConfigError::Invalid {
                key: "console.idle_timeout_seconds",
                problem: format!("{} is out of range", self.idle_timeout_seconds),
                fix: "use 1-3600 seconds (the console is an administrative tool: keep it short)"
                    .into(),
            });
        }
        if !(1..=24).contains(&self.max_hours) {
            return Err(ConfigError::Invalid {
                key: "console.max_hours",
                problem: format!("{} is out of range", self.max_hours),
                fix: "use 1-24 hours".into(),
            });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/"
[sp]
entity_id = "http://127.0.0.1:8080/saml/metadata"
keys_dir = "certs/sp"
[idp]
metadata = "metadata/idp.xml"
[store]
path = "data/samlgate"
"#;

    /// Every section's check after the parse-then-validate split (issue 16): one bad value
    /// each, refused with its key and a fix, in the order the checks run.
    #[test]
    fn each_section_validates_its_keys() {
        let d = tempfile::tempdir().unwrap();
        let short = d.path().join("short.token");
        std::fs::write(&short, "abc").unwrap();
        let good = d.path().join("good.token");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef").unwrap();
        let (short, good) = (short.display(), good.display());
        let cases: Vec<(String, &str)> = vec![
            (
                "[server]\nmax_body_bytes = 1".into(),
                "server.max_body_bytes",
            ),
            (
                "[server]\nmax_connections = 0".into(),
                "server.max_connections",
            ),
            (
                "[server]\ntrusted_proxies = [\"x\"]".into(),
                "server.trusted_proxies",
            ),
            ("[store]\ncache_mib = 0".into(), "store.cache_mib"),
            (
                "[server]\nheader_read_timeout_seconds = 0".into(),
                "server.header_read_timeout_seconds",
            ),
            (
                "[server]\nsaml_login_rate_per_minute = 0".into(),
                "server.saml_login_rate_per_minute",
            ),
            (
                "[server]\nmax_concurrent_verifications = 0".into(),
                "server.max_concurrent_verifications",
            ),
            (
                "[idp]\nmax_issue_delay_seconds = 5".into(),
                "idp.max_issue_delay_seconds",
            ),
            ("[consent]\nversion = \" \"".into(), "consent.version"),
            ("[session]\nidle_minutes = 0".into(), "session"),
            ("[upstream]\nurl = \"ftp://x\"".into(), "upstream.url"),
            (
                "[upstream]\nurl = \"http://127.0.0.1:9\"\npublic_paths = [\"x\"]".into(),
                "upstream.public_paths",
            ),
            (
                "[admin]\ntoken_file = \"/nonexistent/t\"".into(),
                "admin.token_file",
            ),
            (
                format!("[admin]\ntoken_file = \"{short}\""),
                "admin.token_file",
            ),
            (
                format!("[admin]\ntoken_file = \"{good}\"\nlisten = \"x\""),
                "admin.listen",
            ),
            (
                format!("[admin]\ntoken_file = \"{good}\"\nlisten = \"127.0.0.1:8080\""),
                "admin.listen",
            ),
            (
                "[token]\nkeys_dir = \"t\"\nlifetime_seconds = 5".into(),
                "token.lifetime_seconds",
            ),
        ];
        for (extra, key) in cases {
            // A section already in MIN gets the key added to it; others are appended.
            let (section, body) = extra.split_once('\n').unwrap();
            let text = if MIN.contains(&format!("{section}\n")) {
                MIN.replace(&format!("{section}\n"), &format!("{section}\n{body}\n"))
            } else {
                format!("{MIN}{extra}\n")
            };
            let msg = Config::from_toml(&text, Path::new("x.toml"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(&format!("config key `{key}`")) && msg.contains("fix:"),
                "{key}: {msg}"
            );
        }
        let text = MIN.replace(
            "entity_id = \"http://127.0.0.1:8080/saml/metadata\"",
            "entity_id = \" \"",
        );
        let msg = Config::from_toml(&text, Path::new("x.toml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("config key `sp.entity_id`"), "{msg}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MIN, Path::new("x.toml"), Path::new("/etc/samlgate")).unwrap();
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.acs_url(), "http://127.0.0.1:8080/saml/acs");
        assert_eq!(c.keys_dir, PathBuf::from("/etc/samlgate/certs/sp"));
        assert_eq!(c.clock_skew_seconds, 60);
        assert!(c.consent.required);
        assert_eq!(c.policy.open_categories.len(), 5);
        assert_eq!(c.max_body_bytes, 262144);
        assert_eq!(c.attributes.required, ["account_id", "category"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MIN.replace("[store]", "[store]\npaht = \"x\"");
        let err = Config::from_toml(&text, Path::new("x.toml"), Path::new(".")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("paht"), "{msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }

    #[test]
    fn missing_key_is_named() {
        let text = MIN.replace("keys_dir = \"certs/sp\"\n", "");
        let msg = Config::from_toml(&text, Path::new("x.toml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("keys_dir"), "{msg}");
    }

    #[test]
    fn bad_values_name_key_and_fix() {
        let cases = [
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"localhost\"",
                "server.listen",
            ),
            (
                "public_url = \"http://127.0.0.1:8080/\"",
                "public_url = \"ftp://x\"",
                "server.public_url",
            ),
            (
                "public_url = \"http://127.0.0.1:8080/\"",
                "public_url = \"http://x/app\"",
                "server.public_url",
            ),
            (
                "[idp]\n",
                "[idp]\nclock_skew_seconds = 7200\n",
                "idp.clock_skew_seconds",
            ),
        ];
        for (from, to, key) in cases {
            let text = MIN.replace(from, to);
            let msg = Config::from_toml(&text, Path::new("x.toml"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key) && msg.contains("fix:"), "{key}: {msg}");
        }
    }

    #[test]
    fn required_must_name_profile_fields() {
        let text = format!("{MIN}\n[attributes]\nrequired = [\"account_id\", \"phone\"]\n");
        let msg = Config::from_toml(&text, Path::new("x.toml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("attributes.required") && msg.contains("phone"),
            "{msg}"
        );
    }

    #[test]
    fn attribute_transform_validated_at_load() {
        let ok = format!(
            "{MIN}\n[attributes.transform.category]\n\"01\" = \"病院\"\n\"02\" = \"診療所\"\n"
        );
        let c = Config::from_toml(&ok, Path::new("/x/s.toml"), Path::new("/x")).unwrap();
        assert_eq!(c.attributes.transform["category"]["01"], "病院");
        for (bad, needle) in [
            ("[attributes.transform.phone]\n\"1\" = \"x\"\n", "phone"),
            (
                "[attributes.transform.account_id]\n\"1\" = \"x\"\n",
                "account_id",
            ),
            ("[attributes.transform.category]\n", "empty"),
            ("[attributes.transform.category]\n\"01\" = \"\"\n", "empty"),
        ] {
            let text = format!("{MIN}\n{bad}");
            let msg = Config::from_toml(&text, Path::new("/x/s.toml"), Path::new("/x"))
                .err()
                .unwrap_or_else(|| panic!("accepted: {bad}"))
                .to_string();
            assert!(
                msg.contains("attributes.transform") && msg.contains(needle),
                "{bad}: {msg}"
            );
        }
    }
}
