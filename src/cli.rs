//! The command line: what each subcommand does, and the start-up of `serve`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::keys::{self, KeySet};
use crate::server::{self, Loaded, StartupError};
use crate::web;

#[derive(Parser, Debug)]
#[command(
    name = "samlgate",
    version,
    about = "SAML 2.0 service-provider gateway for the 医療情報ネット staff menu (G-MIS SSO)",
    long_about = "samlgate receives signed SAML Responses from the G-MIS IdP at /saml/acs, verifies them \
against the IdP's metadata keys, and gives the staff menu a verified user: a session cookie checked by \
/auth/verify (nginx auth_request) or /auth/userinfo.\n\n\
Quick start (a demo IdP on loopback, nothing to configure):\n    samlgate demo\n\n\
Production:\n    samlgate keys new --config /etc/samlgate/samlgate.toml     # first SP key\n    \
samlgate metadata --config /etc/samlgate/samlgate.toml     # give this to G-MIS\n    \
samlgate check-config --config /etc/samlgate/samlgate.toml\n    \
samlgate serve --config /etc/samlgate/samlgate.toml"
)]
pub struct Cli {
    /// Log format: "text" for people, "json" for log collectors.
    #[arg(
        long,
        global = true,
        env = "SAMLGATE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::config::ConfigArg;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (HTTP, or HTTPS when [server] tls is set). SIGTERM finishes requests in flight.
    Serve(ConfigArg),
    /// Check the config, the IdP metadata, the SP key set and the store, then exit (0 = all good).
    CheckConfig(ConfigArg),
    /// Print the SP metadata XML to give to the IdP operator (G-MIS).
    Metadata(ConfigArg),
    /// Manage the SP key set in [sp] keys_dir (with --token: the JWT key set in [token] keys_dir).
    Keys {
        /// Operate on the session-token key set (EC P-256) instead of the SAML keys.
        #[arg(long, global = true)]
        token: bool,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// The secretariat's consent records: list, show, reopen a rejected/blocked account, block.
    Consent {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON output (one object per line).
        /// JSON output (one object per line).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: crate::secretariat::ConsentCmd,
    },
    /// SSO applications: add (optionally linking an existing account), approve, revoke, list.
    Applications {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON output (one object per line).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: crate::secretariat::ApplicationsCmd,
    },
    /// Registered users: list, show, export (JSON lines), import existing local accounts.
    Users {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON output (one object per line).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: crate::secretariat::UsersCmd,
    },
    /// Local ID/password accounts (事務局): add, list, show, disable, enable, reset, unlock.
    Accounts {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON output (one object per line).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: crate::secretariat::AccountsCmd,
    },
    /// The audit log (consents, applications, links, secretariat actions).
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON output (one object per line).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// The store: `migrate` (PostgreSQL schema), `export` / `import` (JSON lines; moves
    /// everything between sled and PostgreSQL).
    Store {
        /// The TOML config file; its [store] names the backend.
        #[arg(
            long,
            short,
            global = true,
            env = "SAMLGATE_CONFIG",
            default_value = "samlgate.toml"
        )]
        config: PathBuf,
        #[command(subcommand)]
        cmd: crate::store::transfer::StoreCmd,
    },
    /// The IdP side: `status` (trusted signing certificates, expiry), `test-response` (offline check).
    Idp {
        #[command(subcommand)]
        cmd: crate::idp_ops::IdpCmd,
    },
    /// The notice on the login pages, shared by every instance (`set`, `clear`, `show`).
    Notice {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        cmd: crate::secretariat::NoticeCmd,
    },
    /// Support references (`4821-7730`, shown on error pages): `lookup` finds the request
    /// behind one in the gateway's log.
    Support {
        #[command(subcommand)]
        cmd: crate::console::support::SupportCmd,
    },
    /// Start a self-contained demo: the gateway on 127.0.0.1:8080 and a development IdP on
    /// 127.0.0.1:8081 with test users. Files (config, dev certificates, store) go to --dir.
    Demo {
        /// Where the demo's config, keys and store live (created on first run).
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Gateway port (the IdP uses the next one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// The last entries, oldest first.
    Tail {
        /// How many entries.
        #[arg(short, long, default_value_t = 50)]
        n: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a new RSA-3072 key pair with a self-signed certificate. The first key becomes
    /// active; later ones start as "next" (published in metadata, not yet signing).
    New {
        #[command(flatten)]
        config: ConfigArg,
        /// Certificate lifetime in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Make a `next` key active (it signs from now on); the old active key becomes `next`.
    Promote {
        #[command(flatten)]
        config: ConfigArg,
        /// The key's id (as `keys status` lists it).
        id: String,
    },
    /// Stop publishing a `next` key; it still decrypts for [sp] retired_grace_hours.
    Retire {
        #[command(flatten)]
        config: ConfigArg,
        /// The key's id (as `keys status` lists it).
        id: String,
    },
    /// Delete a retired key after its grace period (--force: now).
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        /// The key's id (as `keys status` lists it).
        id: String,
        /// Delete now, before the grace period is over.
        #[arg(long)]
        force: bool,
    },
    /// The key set at a glance, with warnings (expiry within 30 days, no next key prepared).
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the keys with state, fingerprint and expiry.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    init_tracing(&cli.log_format);
    let r = match cli.command {
        Command::Serve(c) => server::serve(&c.config).map_err(|e| e.to_string()),
        Command::CheckConfig(c) => check_config(&c.config).map_err(|e| e.to_string()),
        Command::Metadata(c) => metadata(&c.config).map_err(|e| e.to_string()),
        Command::Keys { token, cmd } => keys_cmd(cmd, token),
        Command::Demo { dir, port } => crate::demo::run(&dir, port),
        Command::Consent { config, json, cmd } => {
            crate::secretariat::consent(&config.config, cmd, json)
        }
        Command::Applications { config, json, cmd } => {
            crate::secretariat::applications(&config.config, cmd, json)
        }
        Command::Users { config, json, cmd } => {
            crate::secretariat::users(&config.config, cmd, json)
        }
        Command::Store { config, cmd } => crate::store::transfer::run(&config, cmd),
        Command::Idp { cmd } => crate::idp_ops::run(cmd),
        Command::Notice { config, cmd } => crate::secretariat::notice_cli(&config.config, cmd),
        Command::Support { cmd } => crate::console::support::run(cmd),
        Command::Accounts { config, json, cmd } => {
            crate::secretariat::accounts(&config.config, cmd, json)
        }
        Command::Audit {
            config,
            json,
            cmd: AuditCmd::Tail { n },
        } => crate::secretariat::audit_tail(&config.config, n, json),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("samlgate: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

fn check_config(config: &Path) -> Result<(), StartupError> {
    let l = server::load(config)?;
    // A running gateway holds the store's lock; that is fine (and proves the path).
    let store_line = match crate::store::open(&l.cfg) {
        Ok(store) => format!(
            "{}  ({} live sessions)",
            crate::store::describe(&l.cfg),
            store.session_count()
        ),
        Err(e)
            if e.to_string().to_ascii_lowercase().contains("lock")
                || e.to_string().contains("unavailable") =>
        {
            format!(
                "{}  (in use by the running gateway)",
                l.cfg.store_path.display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    println!("config        {} ok", l.cfg.file.display());
    println!(
        "public URL    {}  (ACS {})",
        l.cfg.public_url,
        l.cfg.acs_url()
    );
    println!("SP entityID   {}", l.cfg.sp_entity_id);
    println!(
        "IdP           {}  ({} signing certificate(s))",
        l.idp.entity_id,
        l.idp.signing_certs.len()
    );
    for c in &l.idp.signing_certs {
        let days = (c.not_after - chrono::Utc::now().timestamp()) / 86400;
        println!(
            "  cert        {}  {}  {} days left",
            c.fingerprint, c.subject, days
        );
    }
    let a = l.keys.active();
    println!(
        "SP key        {} active, {} days left, {} key(s) in set",
        a.id,
        a.days_left,
        l.keys.keys.len()
    );
    println!("store         {store_line}");
    if !l.cfg.consent.required {
        println!("consent       off ([consent] required = false)");
    }
    if l.cfg.allow_sha1 {
        println!("warning: {}", crate::config::SHA1_WARNING);
    }
    check_cert_expiry(&l)
}

/// Every certificate 30 days ahead (crate::expiry): a warning line each; an expired one in
/// use fails the check, as it turns `/readyz` red.
fn check_cert_expiry(l: &Loaded) -> Result<(), StartupError> {
    use crate::expiry::{self, Kind};
    let mut certs = expiry::from_idp(&l.idp);
    certs.extend(expiry::from_keys(Kind::Sp, &l.keys));
    if let Some(t) = &l.cfg.token {
        let set = KeySet::load(&t.keys_dir).map_err(StartupError::TokenKeys)?;
        certs.extend(expiry::from_keys(Kind::Token, &set));
    }
    if let Some(t) = &l.cfg.tls {
        let store = web::tls::CertStore::load(&t.cert, &t.key).map_err(StartupError::Tls)?;
        certs.push(expiry::tls(store.fingerprint(), store.not_after()));
    }
    let now = chrono::Utc::now().timestamp();
    for w in expiry::warnings(&certs, now) {
        println!("warning: {w}; see deploy/RUNBOOK.md");
    }
    let failures = expiry::failures(&certs, now);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(StartupError::Expired(failures))
    }
}

fn metadata(config: &Path) -> Result<(), StartupError> {
    let cfg = Config::load(config)?;
    let keys = KeySet::load(&cfg.keys_dir)?;
    print!("{}", crate::saml::metadata::sp_metadata(&cfg, &keys));
    Ok(())
}

fn keys_new(config: &Path, days: u32, token: bool) -> Result<(), String> {
    let (cfg, dir, kind) = keys_target(config, token)?;
    let what = if token {
        "an EC P-256 token key"
    } else {
        "an RSA-3072 key"
    };
    eprintln!("generating {what} in {} ...", dir.display());
    let (id, state) = keys::new_key_of(&dir, &keys::host_of(&cfg.public_url), days, kind)
        .map_err(|e| e.to_string())?;
    let set = KeySet::load(&dir).map_err(|e| e.to_string())?;
    let k = set
        .keys
        .iter()
        .find(|k| k.id == id)
        .ok_or("new key not found after writing")?;
    println!(
        "created {id} ({state:?}), SHA-256 {}, expires {}",
        k.fingerprint, k.not_after
    );
    if state == keys::KeyState::Next {
        if token {
            println!("it is published in /.well-known/jwks.json now; promote it once verifiers have fetched it");
        } else {
            println!("it is published in the SP metadata now; give `samlgate metadata` to the IdP operator");
        }
    }
    Ok(())
}

fn keys_list(config: &Path, json: bool, token: bool) -> Result<(), String> {
    let (_cfg, dir, _) = keys_target(config, token)?;
    let set = KeySet::load(&dir).map_err(|e| e.to_string())?;
    if json {
        for k in &set.keys {
            let v = serde_json::json!({"id": k.id, "state": k.state, "fingerprint_sha256": k.fingerprint,
                "not_after": k.not_after, "days_left": k.days_left});
            println!("{v}");
        }
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<10} {:<26} SHA-256",
        "ID", "STATE", "DAYS LEFT", "NOT AFTER"
    );
    for k in &set.keys {
        println!(
            "{:<24} {:<8} {:<10} {:<26} {}",
            k.id,
            format!("{:?}", k.state).to_lowercase(),
            k.days_left,
            k.not_after,
            k.fingerprint
        );
    }
    let a = set.active();
    if a.days_left < 30 {
        println!(
            "warning: the active key {} expires in {} days",
            a.id, a.days_left
        );
    }
    Ok(())
}

/// The key set a `keys` command works on: the SP's, or with --token the JWT keys.
fn keys_target(config: &Path, token: bool) -> Result<(Config, PathBuf, keys::KeyKind), String> {
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    if !token {
        let dir = cfg.keys_dir.clone();
        return Ok((cfg, dir, keys::KeyKind::Rsa));
    }
    let dir = cfg.token.as_ref().map(|t| t.keys_dir.clone()).ok_or(
        "--token: the config has no [token] section; add [token] keys_dir = \"certs/token\"",
    )?;
    Ok((cfg, dir, keys::KeyKind::EcP256))
}

fn keys_cmd(cmd: KeysCmd, token: bool) -> Result<(), String> {
    use keys::Transition;
    match cmd {
        KeysCmd::New { config, days } => keys_new(&config.config, days, token),
        KeysCmd::List { config, json } => keys_list(&config.config, json, token),
        KeysCmd::Status { config } => keys_status(&config.config, token),
        KeysCmd::Promote { config, id } => {
            keys_transition(&config.config, token, &id, |_| Transition::Promote)
        }
        KeysCmd::Retire { config, id } => {
            keys_transition(&config.config, token, &id, |_| Transition::Retire)
        }
        KeysCmd::Remove { config, id, force } => {
            keys_transition(&config.config, token, &id, |cfg| Transition::Remove {
                grace_hours: cfg.retired_grace_hours,
                force,
            })
        }
    }
}

fn keys_transition(
    config: &Path,
    token: bool,
    id: &str,
    t: impl Fn(&Config) -> keys::Transition,
) -> Result<(), String> {
    let (cfg, dir, _) = keys_target(config, token)?;
    let summary = keys::transition(&dir, id, t(&cfg)).map_err(|e| e.to_string())?;
    // Check the result loads, as the running gateway will (it reloads within seconds or on SIGHUP).
    KeySet::load(&dir).map_err(|e| format!("after the change the key set does not load: {e}"))?;
    println!("{summary}");
    println!(
        "the running gateway picks this up within 10 s (or at once: systemctl reload samlgate)"
    );
    Ok(())
}

fn keys_status(config: &Path, token: bool) -> Result<(), String> {
    keys_list(config, false, token)?;
    let (cfg, dir, _) = keys_target(config, token)?;
    let set = KeySet::load(&dir).map_err(|e| e.to_string())?;
    let next = set
        .keys
        .iter()
        .filter(|k| k.state == keys::KeyState::Next)
        .count();
    let retired = set
        .keys
        .iter()
        .filter(|k| k.state == keys::KeyState::Retired)
        .count();
    println!();
    println!(
        "published in metadata: {} key(s); signing with {}",
        set.published().count(),
        set.active().id
    );
    if next == 0 && set.active().days_left < 60 {
        println!("next step: `samlgate keys new` and give the new metadata to G-MIS (active key has {} days left)", set.active().days_left);
    }
    if retired > 0 {
        println!("{retired} retired key(s) still decrypt; remove them after [sp] retired_grace_hours = {}", cfg.retired_grace_hours);
    }
    // Exit 1 on a warning, so a cron job or monitoring check notices.
    let kind = if token {
        crate::expiry::Kind::Token
    } else {
        crate::expiry::Kind::Sp
    };
    let w = crate::expiry::warnings(
        &crate::expiry::from_keys(kind, &set),
        chrono::Utc::now().timestamp(),
    );
    if w.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}; see deploy/RUNBOOK.md (key rollover)",
            w.join("; ")
        ))
    }
}
#[cfg(test)]
mod help_tests {
    /// Every subcommand and every flag or argument says what it is for (issue 14), and
    /// `--config` is accepted before or after a subcommand.
    #[test]
    fn every_subcommand_and_flag_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in cmd.get_subcommands() {
                if s.get_name() == "help" {
                    continue;
                }
                if s.get_about().is_none() && s.get_long_about().is_none() {
                    missing.push(format!("{path} {} (subcommand)", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "samlgate", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn config_is_accepted_anywhere() {
        use clap::Parser;
        for argv in [
            vec!["samlgate", "applications", "list", "--config", "x.toml"],
            vec!["samlgate", "applications", "--config", "x.toml", "list"],
        ] {
            super::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
    }
}
