//! CSV exports for the ministry's reporting: applications and consent decisions, UTF-8 with a
//! byte-order mark (so Excel reads the Japanese), CRLF line ends, RFC 4180 quoting. A cell that
//! Excel would run as a formula (`=`, `+`, `-`, `@`, tab, CR at the start) gets a leading `'`:
//! names and reasons are typed by the public.

use crate::identity::applications::{Application, ApplicationStatus};
use crate::identity::consent::{ConsentDecision, ConsentState};

const BOM: &str = "\u{feff}";

fn cell(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = String::from(BOM);
    let line = |cells: Vec<String>| cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&line(r));
        out.push_str("\r\n");
    }
    out
}

fn status(s: ApplicationStatus) -> &'static str {
    match s {
        ApplicationStatus::Pending => "pending",
        ApplicationStatus::Approved => "approved",
        ApplicationStatus::Revoked => "revoked",
    }
}

/// Applications, oldest first. Times in JST (`2026-12-03 18:40`).
pub fn applications(apps: &[Application]) -> String {
    let mut apps: Vec<&Application> = apps.iter().collect();
    apps.sort_by(|a, b| a.created.cmp(&b.created));
    table(
        &[
            "gmis_id",
            "status",
            "name",
            "facility_code",
            "facility_name",
            "category",
            "email",
            "phone",
            "reason",
            "link_to",
            "created_jst",
            "updated_jst",
        ],
        apps.into_iter().map(|a| {
            let p = a.profile.clone().unwrap_or_default();
            vec![
                a.gmis_id.clone(),
                status(a.status).into(),
                p.display_name,
                p.facility_code,
                p.facility_name,
                p.category,
                p.email,
                a.phone.clone(),
                a.reason.clone(),
                a.link_to.clone().unwrap_or_default(),
                super::local_time(&a.created),
                super::local_time(&a.updated),
            ]
        }),
    )
}

fn decision(d: ConsentDecision) -> &'static str {
    match d {
        ConsentDecision::Accepted => "accepted",
        ConsentDecision::Rejected => "rejected",
        ConsentDecision::BlockedBySecretariat => "blocked_by_secretariat",
    }
}

/// Consent decisions, oldest first.
pub fn consents(list: &[ConsentState]) -> String {
    let mut list: Vec<&ConsentState> = list.iter().collect();
    list.sort_by(|a, b| a.at.cmp(&b.at));
    table(
        &[
            "gmis_id",
            "decision",
            "version",
            "at_jst",
            "name",
            "facility_code",
            "facility_name",
            "email",
            "detail",
        ],
        list.into_iter().map(|c| {
            let p = c.profile.clone().unwrap_or_default();
            vec![
                c.gmis_id.clone(),
                decision(c.decision).into(),
                c.version.clone(),
                super::local_time(&c.at),
                p.display_name,
                p.facility_code,
                p.facility_name,
                p.email,
                c.detail.clone(),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1"), "'-1");
        let t = table(
            &["a", "b"],
            vec![vec!["保健所".into(), "x".into()]].into_iter(),
        );
        assert_eq!(t, "\u{feff}a,b\r\n保健所,x\r\n");
    }
}
