//! Operator settings every instance shares through the store: the notice on the login pages
//! (`samlgate notice set "G-MISは現在メンテナンス中です"`, run by [`crate::secretariat::notice_cli`]) and the IdP certificates accepted with
//! `samlgate idp trust`. Each change is one batch with its audit line, durable on return.
//!
//! Pages read the notice from a per-process copy refreshed from the store every few seconds, so
//! rendering a login page never waits for the store and every instance shows a change within
//! [`CACHE_SECONDS`].

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::admin::error::AdminError;
use crate::store::{Store, StoreError, Table};

const KEY: &str = "notice";
/// How stale another instance's copy of the notice may be.
pub const CACHE_SECONDS: u64 = 5;
/// A notice is a sentence or two, not a page.
pub const MAX_CHARS: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    pub text: String,
    pub by: String,
    pub at: String,
}

/// Operator operations on shared settings (admin API `op` values `notice_*`, `idp_trust*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OperatorOp {
    NoticeSet {
        text: String,
        by: String,
    },
    NoticeClear {
        by: String,
    },
    NoticeShow,
    /// Accept an IdP signing certificate by its SHA-256 fingerprint (unsigned metadata).
    IdpTrust {
        fingerprint: String,
        by: String,
    },
    IdpTrustList,
}

impl OperatorOp {
    pub fn changes_state(&self) -> bool {
        !matches!(self, OperatorOp::NoticeShow | OperatorOp::IdpTrustList)
    }
}

static SHOWN: RwLock<Option<Arc<Notice>>> = RwLock::new(None);

/// The notice the pages show now (templates call this).
pub fn shown() -> Option<Arc<Notice>> {
    SHOWN.read().expect("notice lock").clone()
}

fn set_shown(n: Option<Notice>) {
    *SHOWN.write().expect("notice lock") = n.map(Arc::new);
}

pub fn get(store: &dyn Store) -> Result<Option<Notice>, StoreError> {
    Ok(store
        .get(Table::Settings, KEY.as_bytes())?
        .and_then(|v| serde_json::from_slice(&v).ok()))
}

fn nonempty(what: &str, s: &str) -> Result<(), AdminError> {
    if s.trim().is_empty() {
        return Err(AdminError::Invalid(format!("{what} is empty")));
    }
    Ok(())
}

pub fn execute(store: &dyn Store, op: &OperatorOp) -> Result<Value, AdminError> {
    match op {
        OperatorOp::NoticeShow => Ok(json!({ "notice": get(store)? })),
        OperatorOp::NoticeSet { text, by } => {
            nonempty("by (who sets it)", by)?;
            let text = text.trim();
            nonempty("the notice text", text)?;
            if text.chars().count() > MAX_CHARS || text.chars().any(|c| c.is_control() && c != '\n')
            {
                return Err(AdminError::Invalid(format!(
                    "the notice must be at most {MAX_CHARS} characters of text"
                )));
            }
            let n = Notice {
                text: text.to_string(),
                by: by.clone(),
                at: crate::identity::now_rfc3339(),
            };
            let line = crate::audit::entry(
                store,
                &format!("cli:{by}"),
                crate::audit::AuditAction::NoticeSet,
                "notice",
                text,
                None,
            )?;
            store.apply(&[crate::identity::put(Table::Settings, KEY, &n), line])?;
            set_shown(Some(n.clone()));
            Ok(json!({ "notice": n }))
        }
        OperatorOp::NoticeClear { by } => {
            nonempty("by (who clears it)", by)?;
            let line = crate::audit::entry(
                store,
                &format!("cli:{by}"),
                crate::audit::AuditAction::NoticeClear,
                "notice",
                "",
                None,
            )?;
            store.apply(&[(Table::Settings, KEY.as_bytes().to_vec(), None), line])?;
            set_shown(None);
            Ok(json!({ "notice": null }))
        }
        OperatorOp::IdpTrust { fingerprint, by } => {
            nonempty("by (who trusts it)", by)?;
            let fp = crate::idp_source::normalize_fingerprint(fingerprint).ok_or_else(|| {
                AdminError::Invalid(format!(
                    "`{fingerprint}` is not a SHA-256 fingerprint (64 hex digits, colons optional)"
                ))
            })?;
            let rec = crate::idp_source::trust::add_trusted(store, &fp, by)?;
            Ok(json!({ "trusted": rec }))
        }
        OperatorOp::IdpTrustList => Ok(json!({
            "trusted": crate::idp_source::trust::store_trusted(store)?
        })),
    }
}

/// Keeps this process's copy of the notice current (every instance runs one).
pub fn spawn_cache(store: Arc<dyn Store>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(CACHE_SECONDS));
        loop {
            tick.tick().await;
            let s = store.clone();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || get(&*s)).await {
                set_shown(n);
            }
        }
    });
}
