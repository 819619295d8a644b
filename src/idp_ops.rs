//! `samlgate idp ...`: what an operator asks about the IdP side. `status` lists the trusted
//! IdP signing certificates with their time left (crate::expiry decides what warns).

use std::path::Path;

use clap::Subcommand;

use crate::cli::ConfigArg;
use crate::config::Config;
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
}

pub fn run(cmd: IdpCmd) -> Result<(), String> {
    match cmd {
        IdpCmd::Status { config, json } => status(&config.config, json),
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
