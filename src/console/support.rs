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
    let lines: Vec<String> = log.lines().collect::<Result<_, _>>()?;
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
{\"fields\":{\"request_id\":\"jsonREQ00001\",\"support_ref\":\"4821-7730\"}}\n";
        let got = lookup_in_log(log.as_bytes(), "4821 7730").unwrap();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].contains("account=GM1"));
        assert!(got[2].contains("jsonREQ00001"));
        remember("1111-2222", "rid1", 403, "replay");
        assert_eq!(find("１１１１２２２２")[0].request_id, "rid1");
        assert!(find("1111-2223").is_empty());
    }
}
