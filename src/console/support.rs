//! Finding the event behind a support reference (`4821-7730`, shown on refusal pages).
//!
//! A reference is derived from the request id (`web::pages::support_ref`), and every page that
//! shows one logs a `samlgate::support` line with both. Two ways to look one up:
//! - the console: each gateway process remembers the last [`KEPT`] references it showed (time,
//!   status, reason code, request id) in memory. Per process and lost at a restart: with two
//!   instances, each knows its own; for older ones use the log;
//! - `samlgate support lookup REF [--log FILE]`: reads the log (a file, or stdin from
//!   `journalctl -u samlgate -o cat`), finds the reference's line(s), and prints every line of
//!   the same request id (the refusal's own log line says why, with the account where known).
//!
//! What is searchable: references of pages the gateway rendered itself with a reason or an
//! error status. Not searchable: the audit log (it has no references), proxied pages.

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::Mutex;

/// How many recent references a process keeps (about 100 bytes each).
pub const KEPT: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportEvent {
    pub reference: String,
    pub request_id: String,
    /// Unix seconds.
    pub at: i64,
    pub status: u16,
    pub reason: String,
}

impl SupportEvent {
    /// When, in the secretariat's clock.
    pub fn when(&self) -> String {
        super::local_time_unix(self.at)
    }
}

static RECENT: Mutex<VecDeque<SupportEvent>> = Mutex::new(VecDeque::new());

/// Notes a reference shown on a page (called where the `samlgate::support` line is logged).
pub fn remember(reference: &str, request_id: &str, status: u16, reason: &str) {
    let mut r = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if r.len() >= KEPT {
        r.pop_front();
    }
    r.push_back(SupportEvent {
        reference: reference.into(),
        request_id: request_id.into(),
        at: chrono::Utc::now().timestamp(),
        status,
        reason: reason.chars().take(64).collect(),
    });
}

/// A reference as a person reads it out: digits only, any width, any separators.
pub fn normalise(input: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let d: String = input.nfkc().filter(char::is_ascii_digit).collect();
    (d.len() == 8).then(|| format!("{}-{}", &d[..4], &d[4..]))
}

/// This process's events with that reference, newest first.
pub fn find(reference: &str) -> Vec<SupportEvent> {
    let Some(r) = normalise(reference) else {
        return Vec::new();
    };
    let recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    recent
        .iter()
        .rev()
        .filter(|e| e.reference == r)
        .cloned()
        .collect()
}

/// `s` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The request id in a log line (text or JSON format).
fn request_id_of(line: &str) -> Option<String> {
    let i = line.find("request_id")? + "request_id".len();
    let rest = line[i..].trim_start_matches(['"', '=', ':', ' ']);
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    (!id.is_empty()).then_some(id)
}

/// The log lines of every request that showed `reference`: the reference's own line and every
/// other line with its request id, in log order.
pub fn lookup_in_log(log: impl BufRead, reference: &str) -> std::io::Result<Vec<String>> {
    let Some(r) = normalise(reference) else {
        return Ok(Vec::new());
    };
    // Terminal colours (the text format writes them) would split `request_id=` apart.
    let lines: Vec<String> = log
        .lines()
        .map(|l| l.map(|l| strip_ansi(&l)))
        .collect::<Result<_, _>>()?;
    let ids: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(&r) && l.contains("support_ref"))
        .filter_map(|l| request_id_of(l))
        .collect();
    Ok(lines
        .into_iter()
        .filter(|l| {
            request_id_of(l).is_some_and(|id| ids.contains(&id))
                || (l.contains(&r) && l.contains("support_ref"))
        })
        .collect())
}

/// `samlgate support ...`.
#[derive(clap::Subcommand, Debug)]
pub enum SupportCmd {
    /// Print every log line of the request that showed REFERENCE (e.g. `4821-7730`): its
    /// `samlgate::support` line and the lines with the same request id. Reads the --log
    /// files, or standard input (`journalctl -u samlgate -o cat | samlgate support lookup REF`).
    Lookup {
        /// The reference as the person read it (digits; any separators, full-width is fine).
        reference: String,
        /// A log file to read (repeatable); without one, standard input.
        #[arg(long)]
        log: Vec<std::path::PathBuf>,
    },
}

pub fn run(cmd: SupportCmd) -> Result<(), String> {
    let SupportCmd::Lookup { reference, log } = cmd;
    let r = normalise(&reference).ok_or_else(|| {
        format!("{reference:?} is not a support reference (8 digits, e.g. 4821-7730)")
    })?;
    let mut found = Vec::new();
    if log.is_empty() {
        found = lookup_in_log(std::io::stdin().lock(), &r).map_err(|e| e.to_string())?;
    }
    for f in &log {
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        found.extend(
            lookup_in_log(std::io::BufReader::new(file), &r)
                .map_err(|e| format!("{}: {e}", f.display()))?,
        );
    }
    if found.is_empty() {
        return Err(format!(
            "support reference {r} is not in the log given (it may be in an older or another instance's log)"
        ));
    }
    for l in found {
        println!("{l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_in_any_width() {
        assert_eq!(
            normalise("４８２１ー７７３０").as_deref(),
            Some("4821-7730")
        );
        assert_eq!(normalise("48217730").as_deref(), Some("4821-7730"));
        assert_eq!(normalise("4821-773"), None);
    }

    #[test]
    fn the_log_gives_every_line_of_the_request() {
        let log = "\
2026-12-03T01:00:00Z  WARN samlgate::acs: refused request_id=\"abcDEF123456\" reason=\"replay\" account=GM1\n\
2026-12-03T01:00:00Z  INFO samlgate::support: support reference shown request_id=\"abcDEF123456\" support_ref=4821-7730 status=403\n\
2026-12-03T01:00:01Z  INFO samlgate::acs: ok request_id=\"other0000000\"\n\
\u{1b}[2m2026\u{1b}[0m INFO samlgate::support: \u{1b}[3mrequest_id\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"ansiREQ00001\" \u{1b}[3msupport_ref\u{1b}[0m\u{1b}[2m=\u{1b}[0m4821-7730\n\
{\"fields\":{\"request_id\":\"jsonREQ00001\",\"support_ref\":\"4821-7730\"}}\n";
        let got = lookup_in_log(log.as_bytes(), "4821 7730").unwrap();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].contains("account=GM1"));
        assert!(got[2].contains("request_id=\"ansiREQ00001\""), "{}", got[2]);
        assert!(got[3].contains("jsonREQ00001"));
        remember("1111-2222", "rid1", 403, "replay");
        assert_eq!(find("１１１１２２２２")[0].request_id, "rid1");
        assert!(find("1111-2223").is_empty());
    }
}
