//! The 事務局's console at `/console/` (issue 14, item 6): queues, search, account detail,
//! actions, CSV exports and support-reference lookup, for secretariat staff who are not
//! engineers. On the admin listener when `[admin] listen` is set, else on the main one.
//!
//! The console decides nothing itself: every change is an [`crate::admin::Op`] run through
//! [`crate::admin::execute_cfg`], the same path as the CLI and the admin API. What lives here:
//! - [`operator`]: who may use it (local accounts of role `secretariat`, password + TOTP), the
//!   console's own sealed cookie with its idle timeout and CSRF token;
//! - [`records`]: the read side (queues, search, one account in one place);
//! - [`actions`]: the action forms mapped to admin ops, each with the operator's audit line;
//! - [`notice`]: the mail text for each action (JA first, then EN), ready for `crate::mail`;
//! - [`export`]: CSV of applications and consents (UTF-8 with a BOM, for Excel);
//! - [`support`]: finding the event behind a support reference (`4821-7730`).
//!
//! `crate::web::console` translates HTTP to these and back.

pub mod action;
pub mod actions;
pub mod export;
pub mod notice;
pub mod operator;
pub mod records;
pub mod support;

pub use crate::config::ConsoleConfig;

/// A stored RFC 3339 UTC time as the secretariat's clock shows it (`2026-12-03 18:40`, in
/// `[server] timezone`).
pub fn local_time(s: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => local_time_unix(t.timestamp()),
        Err(_) => s.to_string(),
    }
}

/// Unix seconds as [`local_time`].
pub fn local_time_unix(secs: i64) -> String {
    crate::timezone::current().format(secs)
}
