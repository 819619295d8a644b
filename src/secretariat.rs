//! The secretariat's CLI (`samlgate consent|applications|users|audit ...`): builds an
//! [`Op`], runs it on the store directly, or — when the running gateway holds the store's lock —
//! through its admin API, and prints the answer as a table or JSON lines.

use std::io::{Read, Write};
use std::path::Path;

use clap::Subcommand;
use serde_json::Value;

use crate::admin::{execute_cfg, IdReading, Op};
use crate::config::Config;
use crate::identity::Profile;

#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// Every recorded consent decision.
    List,
    /// One account: consent, application and linked user.
    Show {
        /// The G-MIS account id (e.g. GM0012345).
        gmis_id: String,
    },
    /// Reopen SSO after a rejected consent or a block; the next SSO shows the consent page again.
    Reopen {
        /// The G-MIS account id (e.g. GM0012345).
        gmis_id: String,
        /// Who reopens (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// Why (e.g. "confirmed by phone on 11/20").
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Block SSO for an account until reopened.
    Block {
        /// The G-MIS account id (e.g. GM0012345).
        gmis_id: String,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// The reason (required).
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApplicationsCmd {
    /// File an SSO application for a G-MIS account (pending until approved).
    Add {
        /// The G-MIS account id (e.g. GM0012345).
        gmis_id: String,
        /// Link the G-MIS account to this existing 医療情報ネット account instead of creating one.
        #[arg(long)]
        link_to: Option<String>,
        /// A note for the audit log (why).
        #[arg(long, default_value = "")]
        note: String,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// File it approved at once.
        #[arg(long)]
        approve: bool,
    },
    /// Approve a pending application: the next SSO login goes on (to the consent page).
    Approve {
        /// The G-MIS account id (e.g. GM0012345).
        gmis_id: String,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
    },
    /// Revoke an application: SSO for the account stops until a new one is approved.
    Revoke {
        /// The G-MIS account id (e.g. GM0012345).
        gmis_id: String,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// A note for the audit log (why).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Everything, as a table (or JSON lines with --json).
    List,
}

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Everything, as a table (or JSON lines with --json).
    List,
    /// One user, by local id or G-MIS id.
    Show {
        /// A local account id or a G-MIS account id.
        id: String,
    },
    /// Every user as JSON lines (for backups and other systems).
    Export,
    /// Undo a link to G-MIS (LOCAL_ID or GMIS_ID): the local account stays, unlinked; an
    /// approved application naming it is revoked; its sessions end. Audited.
    Unlink {
        /// A local account id or a G-MIS account id.
        id: String,
        /// Who unlinks (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// Why (e.g. "linked to the wrong person").
        #[arg(long, default_value = "")]
        note: String,
        /// Read ID as a local account id (needed when it is also another account's G-MIS id).
        #[arg(long, conflicts_with = "gmis")]
        local: bool,
        /// Read ID as a G-MIS account id.
        #[arg(long)]
        gmis: bool,
    },
    /// Register existing local accounts from a JSON-lines file of profiles
    /// ({"account_id": ..., "facility_code": ..., "email": ..., ...}), so G-MIS logins can be linked.
    Import {
        /// The JSON-lines file to read.
        file: std::path::PathBuf,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
    },
}

/// Runs `op` against the store, directly or through the running gateway.
pub fn run_op(config: &Path, op: &Op) -> Result<Value, String> {
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    crate::timezone::set(cfg.timezone.clone());
    let mut op = op.clone();
    if let Op::ApplicationAdd { gmis_id, .. } = &mut op {
        *gmis_id = checked_gmis_id(&cfg, gmis_id)?;
    }
    let op = &op;
    match crate::store::open(&cfg) {
        Ok(store) => execute_cfg(&*store, &cfg, op).map_err(|e| e.to_string()),
        Err(e) if is_lock_error(&e.to_string()) => via_api(&cfg, op),
        Err(e) => Err(e.to_string()),
    }
}

fn is_lock_error(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("lock") || m.contains("would block") || m.contains("temporarily unavailable")
}

/// A small HTTP/1.1 client for the gateway's admin API on its listen address (plain HTTP).
fn via_api(cfg: &Config, op: &Op) -> Result<Value, String> {
    let token_file = cfg.admin_token_file.as_ref().ok_or(
        "the gateway is running and holds the store; enable its admin API ([admin] token_file) \
         so the CLI can go through it, or stop the gateway",
    )?;
    if cfg.tls.is_some() {
        return Err(
            "the gateway serves HTTPS; the CLI's API client speaks plain HTTP only. \
                    Call POST /admin/v1/op with curl (see README), or stop the gateway"
                .into(),
        );
    }
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("{}: {e}", token_file.display()))?;
    let body = serde_json::to_vec(op).map_err(|e| e.to_string())?;
    // The admin API's own listener when `[admin] listen` is set.
    let addr = cfg.admin_listen.unwrap_or(cfg.listen);
    let mut s =
        std::net::TcpStream::connect(addr).map_err(|e| format!("gateway at {addr}: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok();
    let head = format!(
        "POST /admin/v1/op HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        addr,
        token.trim(),
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(&body))
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed answer from the gateway")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("gateway answered {status}: {e}"))?;
    if status == 200 {
        Ok(v)
    } else {
        Err(v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("error")
            .to_string())
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn consent(config: &Path, cmd: ConsentCmd, json: bool) -> Result<(), String> {
    let op = match cmd {
        ConsentCmd::List => Op::ConsentList,
        ConsentCmd::Show { gmis_id } => Op::ConsentShow { gmis_id },
        ConsentCmd::Reopen { gmis_id, by, note } => Op::ConsentReopen { gmis_id, by, note },
        ConsentCmd::Block { gmis_id, by, note } => Op::ConsentBlock { gmis_id, by, note },
    };
    let v = run_op(config, &op)?;
    print_value(
        &v,
        json,
        &[
            "gmis_id",
            "decision",
            "profile.display_name",
            "profile.facility_name",
            "profile.email",
            "version",
            "at",
            "detail",
        ],
    );
    Ok(())
}

pub fn applications(config: &Path, cmd: ApplicationsCmd, json: bool) -> Result<(), String> {
    let op = match cmd {
        ApplicationsCmd::Add {
            gmis_id,
            link_to,
            note,
            by,
            approve,
        } => Op::ApplicationAdd {
            gmis_id,
            link_to,
            note,
            by,
            approve,
        },
        ApplicationsCmd::Approve { gmis_id, by } => Op::ApplicationApprove { gmis_id, by },
        ApplicationsCmd::Revoke { gmis_id, by, note } => {
            Op::ApplicationRevoke { gmis_id, by, note }
        }
        ApplicationsCmd::List => Op::ApplicationList,
    };
    let v = run_op(config, &op)?;
    print_value(
        &v,
        json,
        &[
            "gmis_id",
            "status",
            "profile.display_name",
            "profile.facility_name",
            "phone",
            "link_to",
            "created",
            "updated",
            "reason",
        ],
    );
    Ok(())
}

pub fn users(config: &Path, cmd: UsersCmd, json: bool) -> Result<(), String> {
    let (op, export) = match cmd {
        UsersCmd::List => (Op::UsersList, false),
        UsersCmd::Show { id } => (Op::UsersShow { id }, false),
        UsersCmd::Export => (Op::UsersList, true),
        UsersCmd::Unlink {
            id,
            by,
            note,
            local,
            gmis,
        } => {
            let reading = match (local, gmis) {
                (true, _) => Some(IdReading::Local),
                (_, true) => Some(IdReading::Gmis),
                _ => None,
            };
            let op = Op::UsersUnlink {
                id,
                by,
                note,
                reading,
            };
            (op, false)
        }
        UsersCmd::Import { file, by } => {
            let users: Vec<Profile> = import_lines(&file)?;
            eprintln!("importing {} account(s) ...", users.len());
            (Op::UsersImport { users, by }, false)
        }
    };
    let v = run_op(config, &op)?;
    if export {
        for u in v.as_array().into_iter().flatten() {
            println!("{u}");
        }
        eprintln!("exported {} user(s)", v.as_array().map_or(0, Vec::len));
        return Ok(());
    }
    print_users(&v, json);
    Ok(())
}

/// `users list|show` as a table (the profile flattened) or as JSON.
fn print_users(v: &Value, json: bool) {
    // Flatten the profile for the table.
    let flat = |u: &Value| {
        let mut m = serde_json::Map::new();
        for k in ["id", "gmis_id", "origin"] {
            m.insert(k.into(), u.get(k).cloned().unwrap_or(Value::Null));
        }
        for k in ["category", "facility_code", "display_name"] {
            m.insert(
                k.into(),
                u.pointer(&format!("/profile/{k}"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        Value::Object(m)
    };
    let shown = match v {
        Value::Array(a) if !json => Value::Array(a.iter().map(flat).collect()),
        _ => v.clone(),
    };
    print_value(
        &shown,
        json,
        &[
            "id",
            "gmis_id",
            "origin",
            "category",
            "facility_code",
            "display_name",
        ],
    );
}

pub fn audit_tail(config: &Path, n: usize, json: bool) -> Result<(), String> {
    let v = run_op(config, &Op::AuditTail { n })?;
    print_value(
        &v,
        json,
        &[
            "seq",
            "at",
            "actor",
            "action",
            "subject",
            "consent_version",
            "detail",
        ],
    );
    Ok(())
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => local_time(s).unwrap_or_else(|| s.replace(['\n', '\t'], " ")),
        Some(other) => other.to_string(),
    }
}

/// An RFC 3339 UTC time in `[server] timezone` (`2026-12-03 18:40 JST`), the secretariat's
/// clock.
fn local_time(s: &str) -> Option<String> {
    if s.len() < 20 || !s.as_bytes()[10].eq(&b'T') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp();
    let z = crate::timezone::current();
    Some(format!("{} {}", z.format(t), z.abbrev(t)))
}

/// A column: a key, or a `/`-less dotted path into a nested object (`profile.email`).
fn column<'a>(row: &'a Value, c: &str) -> Option<&'a Value> {
    if c.contains('.') {
        row.pointer(&format!("/{}", c.replace('.', "/")))
    } else {
        row.get(c)
    }
}

/// Terminal columns: CJK characters take two.
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// Checks an `applications add` id against `[attributes] account_id_pattern` after
/// normalising it (full-width to half-width, upper case): `ｇｍ００１２` -> `GM0012`.
fn checked_gmis_id(cfg: &Config, id: &str) -> Result<String, String> {
    let id = crate::identity::applications::normalise_id(id);
    match cfg.attributes.account_id_regex() {
        Some(re) if !re.is_match(&id) => Err(format!(
            "`{id}` does not match [attributes] account_id_pattern `{}`: check the G-MIS account id",
            re.as_str()
        )),
        _ => Ok(id),
    }
}

/// A column's heading: the last part of its path, upper case.
fn header(c: &str) -> String {
    let last = c.rsplit('.').next().unwrap_or(c);
    match last {
        "display_name" => "NAME".into(),
        "facility_name" => "FACILITY".into(),
        other => other.to_uppercase(),
    }
}

/// Arrays as a table (or JSON lines), objects as `key: value` lines (or one JSON line).
fn print_value(v: &Value, json: bool, columns: &[&str]) {
    match v {
        Value::Array(rows) => {
            if json {
                for r in rows {
                    println!("{r}");
                }
                return;
            }
            if rows.is_empty() {
                println!("(none)");
                return;
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| columns.iter().map(|c| cell(column(r, c))).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    table
                        .iter()
                        .map(|r| width(&r[i]))
                        .max()
                        .unwrap_or(0)
                        .max(header(c).len())
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c}{}", " ".repeat(w - width(c))))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            println!("{}", line(columns.iter().map(|c| header(c)).collect()));
            for r in table {
                println!("{}", line(r));
            }
            println!("({} row(s))", rows.len());
        }
        Value::Object(m) if !json => {
            for (k, val) in m {
                match val {
                    Value::Object(_) => println!(
                        "{k}:\n  {}",
                        serde_json::to_string_pretty(val)
                            .unwrap_or_default()
                            .replace('\n', "\n  ")
                    ),
                    _ => println!("{k}: {}", cell(Some(val))),
                }
            }
        }
        other => println!("{other}"),
    }
}

/// `[--role]` of `accounts add`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RoleArg {
    /// A staff member of a facility (default).
    Staff,
    /// 事務局: manages accounts; always needs a second factor (TOTP).
    Secretariat,
}

#[derive(Subcommand, Debug)]
pub enum AccountsCmd {
    /// Create a local ID/password account and print its one-time initial password (changed at
    /// first login). An existing user with this id (e.g. a G-MIS user) gets the account: one
    /// person is one user.
    Add {
        /// The login id: 1-64 half-width letters, digits and . _ @ -.
        user_id: String,
        /// Mail address (for password-reset links).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Facility code (lets a later G-MIS application find this account).
        #[arg(long, default_value = "")]
        facility: String,
        /// Who creates it (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// The account's role.
        #[arg(long, value_enum, default_value = "staff")]
        role: RoleArg,
    },
    /// Every account: role, disabled, locked, must change, TOTP enrolled.
    List,
    /// One account.
    Show {
        /// The login id.
        user_id: String,
    },
    /// Stop the account from logging in and end its sessions.
    Disable {
        /// The login id.
        user_id: String,
        /// Who disables it (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// Why, recorded in the audit log.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Let a disabled account log in again.
    Enable {
        /// The login id.
        user_id: String,
        /// Who enables it (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// Why, recorded in the audit log.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Issue a new one-time password (printed; changed at next login); lifts a lock and ends
    /// the account's sessions.
    Reset {
        /// The login id.
        user_id: String,
        /// Who resets it (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// Why (e.g. "identity confirmed by phone"), recorded in the audit log.
        #[arg(long, default_value = "")]
        note: String,
        /// Also remove the enrolled authenticator app (lost phone): TOTP is enrolled again.
        #[arg(long)]
        remove_totp: bool,
    },
    /// Lift a lock after too many failed logins (the password is unchanged).
    Unlock {
        /// The login id.
        user_id: String,
        /// Who unlocks it (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
        /// Why, recorded in the audit log.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Create accounts from a JSON-lines file ({"user_id", "email", "name", "facility_code",
    /// "role", and "password_hash" (argon2id PHC, kept) or "initial_password" (changed at first
    /// login) or neither (a one-time password is issued and printed)). Checked whole first.
    Import {
        /// The JSON-lines file to read.
        file: std::path::PathBuf,
        /// Who imports them (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
    },
}

/// The lines of a `users import` or `accounts import` file: one JSON value a line, blank
/// lines skipped.
fn import_lines<T: serde::de::DeserializeOwned>(file: &Path) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        out.push(
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", file.display(), i + 1))?,
        );
    }
    Ok(out)
}

pub fn accounts(config: &Path, cmd: AccountsCmd, json: bool) -> Result<(), String> {
    use crate::account_ops::AccountOp as A;
    use crate::accounts::account::Role;
    let op = match cmd {
        AccountsCmd::Add {
            user_id,
            email,
            name,
            facility,
            by,
            role,
        } => A::AccountsAdd {
            user_id,
            email,
            name,
            facility_code: facility,
            role: match role {
                RoleArg::Staff => Role::Staff,
                RoleArg::Secretariat => Role::Secretariat,
            },
            by,
        },
        AccountsCmd::List => A::AccountsList,
        AccountsCmd::Show { user_id } => A::AccountsShow { user_id },
        AccountsCmd::Disable { user_id, by, note } => A::AccountsDisable { user_id, by, note },
        AccountsCmd::Enable { user_id, by, note } => A::AccountsEnable { user_id, by, note },
        AccountsCmd::Reset {
            user_id,
            by,
            note,
            remove_totp,
        } => A::AccountsReset {
            user_id,
            by,
            note,
            remove_totp,
        },
        AccountsCmd::Unlock { user_id, by, note } => A::AccountsUnlock { user_id, by, note },
        AccountsCmd::Import { file, by } => A::AccountsImport {
            accounts: import_lines(&file)?,
            by,
        },
    };
    let v = run_op(config, &Op::Accounts(op))?;
    print_accounts(&v, json);
    Ok(())
}

/// An `accounts` answer: the import summary with each initial password, or the table/JSON
/// (with a reminder when a one-time password is in it).
fn print_accounts(v: &Value, json: bool) {
    if v.get("imported").is_some() && !json {
        println!(
            "imported {}, skipped (existing) {}",
            v["imported"], v["skipped_existing"]
        );
        for i in v["issued"].as_array().into_iter().flatten() {
            println!(
                "{}\t{}",
                i["user_id"].as_str().unwrap_or(""),
                i["initial_password"].as_str().unwrap_or("")
            );
        }
        return;
    }
    print_value(
        v,
        json,
        &[
            "user_id",
            "name",
            "role",
            "disabled",
            "locked",
            "must_change",
            "totp",
            "updated",
        ],
    );
    if !json {
        for k in ["initial_password", "temporary_password"] {
            if v.get(k).is_some() {
                eprintln!(
                    "Hand this one-time password to the person only (it is shown once and must be changed at first login)."
                );
            }
        }
    }
}

// `samlgate notice ...` and `samlgate idp trust|trusted`: the notice module's operations from
// the command line (here, not in crate::notice, which admin runs: no admin <-> notice cycle).

#[derive(clap::Subcommand, Debug)]
pub enum NoticeCmd {
    /// Show TEXT on the login pages of every instance (within 5 s), e.g.
    /// "G-MISは現在メンテナンス中です".
    Set {
        /// The notice (at most 500 characters), as it should read on the page.
        text: String,
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
    },
    /// Remove the notice.
    Clear {
        /// Who does this (your name), recorded in the audit log.
        #[arg(long)]
        by: String,
    },
    /// Print the notice (JSON).
    Show,
}

/// `samlgate notice ...`: through the store, or the running gateway's admin API when it holds
/// the store (sled).
pub fn notice_cli(config: &Path, cmd: NoticeCmd) -> Result<(), String> {
    let op = match cmd {
        NoticeCmd::Set { text, by } => crate::notice::OperatorOp::NoticeSet { text, by },
        NoticeCmd::Clear { by } => crate::notice::OperatorOp::NoticeClear { by },
        NoticeCmd::Show => crate::notice::OperatorOp::NoticeShow,
    };
    let v = run_op(config, &Op::Operator(op))?;
    println!("{v}");
    Ok(())
}

/// `samlgate idp trust FINGERPRINT --by NAME` (`Some`) and `samlgate idp trusted` (`None`).
pub fn idp_trust_cli(config: &Path, trust: Option<(String, String)>) -> Result<(), String> {
    let op = match trust {
        Some((fingerprint, by)) => crate::notice::OperatorOp::IdpTrust { fingerprint, by },
        None => crate::notice::OperatorOp::IdpTrustList,
    };
    let v = run_op(config, &Op::Operator(op))?;
    println!("{v}");
    Ok(())
}
