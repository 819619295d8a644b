//! `samlgate idp ...`: what an operator asks about the IdP side. `status` lists the trusted
//! IdP signing certificates with their time left (crate::expiry decides what warns);
//! `test-response` runs a saved response through the verification offline (saml::diagnose).

use std::path::Path;

use clap::Subcommand;

use crate::config::Config;
use crate::config::ConfigArg;
use crate::expiry::{self, Level};
use crate::saml::idp::IdpMetadata;

#[derive(Subcommand, Debug)]
pub enum IdpCmd {
    /// Each trusted IdP signing certificate (subject, SHA-256, notAfter, days left). Exits 1
    /// when one expires within 30 days or has expired.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run a saved SAML Response (base64 or XML; `-` = stdin) through the whole verification,
    /// offline, at `--at` (default now): every check with its result, the signatures, the
    /// mapped profile. Writes nothing (no replay record). Exits 0 when it would log in.
    TestResponse {
        #[command(flatten)]
        config: ConfigArg,
        /// A saved SAMLResponse: the base64 form value as posted, or the decoded XML.
        file: std::path::PathBuf,
        /// The instant to verify at (RFC 3339, e.g. 2026-12-03T09:00:00Z).
        #[arg(long)]
        at: Option<String>,
        /// One JSON object (every check, the signed elements, the mapped profile).
        #[arg(long)]
        json: bool,
    },
    /// Accept a new IdP signing certificate for unsigned metadata fetched from
    /// `[idp] metadata_url` (check the fingerprint with G-MIS first). Stored in the store, so
    /// every instance accepts it at its next refresh; audited.
    Trust {
        #[command(flatten)]
        config: ConfigArg,
        /// SHA-256 fingerprint, as the refusal log line and `idp status` print it.
        fingerprint: String,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
    },
    /// The certificates accepted with `idp trust`.
    Trusted {
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub fn run(cmd: IdpCmd) -> Result<(), String> {
    match cmd {
        IdpCmd::Status { config, json } => status(&config.config, json),
        IdpCmd::TestResponse {
            config,
            file,
            at,
            json,
        } => test_response(&config.config, &file, at.as_deref(), json),
        IdpCmd::Trust {
            config,
            fingerprint,
            by,
        } => crate::secretariat::idp_trust_cli(&config.config, Some((fingerprint, by))),
        IdpCmd::Trusted { config } => crate::secretariat::idp_trust_cli(&config.config, None),
    }
}

fn status(config: &Path, json: bool) -> Result<(), String> {
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    let idp = IdpMetadata::load(&cfg.idp_metadata).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let certs = expiry::from_idp(&idp);
    let warnings = expiry::warnings(&certs, now);
    if json {
        let list: Vec<serde_json::Value> = certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "subject": c.subject, "fingerprint_sha256": c.fingerprint,
                    "not_after": c.not_after_rfc3339(), "days_left": c.days_left(now),
                    "level": c.level(now),
                })
            })
            .collect();
        let doc = serde_json::json!({"entity_id": idp.entity_id,
            "metadata": cfg.idp_metadata, "certificates": list, "warnings": warnings});
        println!("{doc}");
    } else {
        println!("IdP {}  ({})", idp.entity_id, cfg.idp_metadata.display());
        println!(
            "{:<9} {:<10} {:<21} {:<96} SUBJECT",
            "STATUS", "DAYS LEFT", "NOT AFTER", "SHA-256"
        );
        for c in &certs {
            let level = match c.level(now) {
                Level::Ok => "ok",
                Level::Warn => "EXPIRING",
                Level::Expired => "EXPIRED",
            };
            println!(
                "{level:<9} {:<10} {:<21} {:<96} {}",
                c.days_left(now),
                c.not_after_rfc3339(),
                c.fingerprint,
                c.subject
            );
        }
        for w in &warnings {
            println!("warning: {w}");
        }
    }
    if warnings.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} IdP certificate(s) expire within {} days or have expired; see deploy/RUNBOOK.md \
             (G-MIS changed its certificate)",
            warnings.len(),
            expiry::WARN_DAYS
        ))
    }
}

fn test_response(config: &Path, file: &Path, at: Option<&str>, json: bool) -> Result<(), String> {
    use crate::saml::acs::Expectations;
    use crate::saml::decrypt::DecryptKey;
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    let idp = IdpMetadata::load(&cfg.idp_metadata).map_err(|e| e.to_string())?;
    let keys = crate::keys::KeySet::load(&cfg.keys_dir).map_err(|e| e.to_string())?;
    let input = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?
    };
    let now = match at {
        None => chrono::Utc::now(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| format!("--at {t}: not RFC 3339 ({e}); example: 2026-12-03T09:00:00Z"))?
            .with_timezone(&chrono::Utc),
    };
    let decrypt_keys: Vec<DecryptKey> = keys
        .decrypting(cfg.retired_grace_hours, now.timestamp())
        .map(|k| DecryptKey {
            id: &k.id,
            key: &k.key,
            cert: &k.cert,
        })
        .collect();
    let acs = cfg.acs_url();
    let exp = Expectations {
        idp: &idp,
        sp_entity_id: &cfg.sp_entity_id,
        acs_url: &acs,
        skew: chrono::Duration::seconds(cfg.clock_skew_seconds),
        max_issue_delay: chrono::Duration::seconds(cfg.max_issue_delay_seconds),
        allow_unsolicited: cfg.allow_unsolicited,
        expected_request_ids: &[],
        decrypt_keys: &decrypt_keys,
        require_encryption: cfg.require_encryption,
        allow_sha1: cfg.allow_sha1,
        now,
    };
    let d = crate::saml::diagnose::diagnose(&input, &exp, &cfg.attributes);
    if json {
        print_diagnosis_json(&d, &cfg, now);
    } else {
        print_diagnosis(&d, &cfg, now);
    }
    if d.would_log_in() {
        Ok(())
    } else {
        Err("this response would be refused".into())
    }
}

fn print_diagnosis_json(
    d: &crate::saml::diagnose::Diagnosis,
    cfg: &Config,
    now: chrono::DateTime<chrono::Utc>,
) {
    let v = d.verified.as_ref();
    let open = d
        .profile
        .as_ref()
        .map(|p| crate::identity::policy::category_open(&cfg.policy, &p.category));
    let doc = serde_json::json!({
        "at": now.to_rfc3339(), "would_log_in": d.would_log_in(), "checks": d.checks,
        "signatures": d.signatures,
        "signed": v.map(|v| v.signed.as_str()), "sha1": v.map(|v| v.sha1),
        "name_id": v.map(|v| &v.name_id), "name_id_format": v.and_then(|v| v.name_id_format.as_ref()),
        "attributes": v.map(|v| &v.attributes), "profile": d.profile, "category_open": open,
    });
    println!("{doc}");
}

fn print_diagnosis(
    d: &crate::saml::diagnose::Diagnosis,
    cfg: &Config,
    now: chrono::DateTime<chrono::Utc>,
) {
    use crate::saml::diagnose::Outcome;
    println!("verifying at {}", now.to_rfc3339());
    for c in &d.checks {
        let mark = match c.outcome {
            Outcome::Ok => "ok    ",
            Outcome::Failed => "FAILED",
            Outcome::NotEvaluated => "-     ",
            Outcome::NotApplicable => "n/a   ",
        };
        let extra = match (&c.outcome, c.reason.is_empty(), c.detail.is_empty()) {
            (Outcome::NotEvaluated, _, _) => {
                " (not evaluated: verification stops at the first failure)".to_string()
            }
            (_, false, _) => format!(": {} — {}", c.reason, c.detail),
            (_, true, false) => format!(": {}", c.detail),
            _ => String::new(),
        };
        println!("  [{mark}] {}{extra}", c.name);
    }
    println!("signatures in the document (as declared, before verification):");
    if d.signatures.is_empty() {
        println!("  none");
    }
    for s in &d.signatures {
        println!(
            "  on {} (Reference {}): {} / digest {} / c14n {}{}",
            s.parent,
            s.reference_uri,
            s.signature_method,
            s.digest_method,
            s.canonicalization,
            s.inclusive_namespaces
                .as_ref()
                .map(|p| format!(" / InclusiveNamespaces \"{p}\""))
                .unwrap_or_default()
        );
    }
    if let Some(v) = &d.verified {
        println!(
            "NameID {} ({})",
            v.name_id,
            v.name_id_format.as_deref().unwrap_or("no Format")
        );
        for (n, vs) in &v.attributes {
            println!("  attribute {n} = {vs:?}");
        }
    }
    if let Some(p) = &d.profile {
        println!("profile {}", serde_json::to_string(p).unwrap_or_default());
        let open = crate::identity::policy::category_open(&cfg.policy, &p.category);
        println!(
            "category {:?}: {}",
            p.category,
            if open {
                "open ([policy] open_categories)"
            } else {
                "needs an approved SSO application (looked up in the store at login)"
            }
        );
    }
    println!(
        "result: {}",
        if d.would_log_in() {
            "would log in (consent and applications are decided at login)"
        } else {
            "REFUSED"
        }
    );
}
