//! The console's read side: the queues, search, and one account in one place. Lists are the
//! identity modules' own (the admin list ops return the same records as JSON); one account is
//! read through the show ops; sessions and the audit trail come from the store. Reads scan whole tables: the secretariat's records number in the
//! thousands, and the console is used by a handful of people.

use serde_json::Value;

use crate::admin::{execute_cfg, AdminError, Op};
use crate::audit::AuditEntry;
use crate::config::Config;
use crate::identity::applications::{normalise_id, Application, ApplicationStatus};
use crate::identity::consent::{ConsentDecision, ConsentState};
use crate::identity::users::User;
use crate::identity::Profile;
use crate::store::Store;
use crate::web::pages::Lang;

/// Where a row comes from, and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Revoked,
    ConsentAccepted,
    ConsentRejected,
    Blocked,
    User,
    Locked,
}

impl Status {
    pub fn label(&self, lang: &Lang) -> &'static str {
        match self {
            Status::Pending => lang.t("申請中", "Application pending"),
            Status::Approved => lang.t("申請承認済み", "Application approved"),
            Status::Revoked => lang.t("申請却下・取消", "Application rejected or revoked"),
            Status::ConsentAccepted => lang.t("同意済み", "Consent given"),
            Status::ConsentRejected => {
                lang.t("同意しない（連絡待ち）", "Consent refused (to contact)")
            }
            Status::Blocked => lang.t("利用停止中", "Suspended"),
            Status::User => lang.t("登録済み", "Registered"),
            Status::Locked => lang.t("ロック中", "Locked"),
        }
    }
}

/// One line of a queue or of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What the detail link names (the G-MIS id, else the local id).
    pub id: String,
    pub gmis_id: String,
    pub local_id: String,
    pub profile: Profile,
    pub phone: String,
    pub status: Status,
    /// The application's reason or the decision's detail.
    pub note: String,
    /// Local time (JST) of the event the row is about.
    pub at: String,
    /// For sorting: the stored RFC 3339 time.
    pub sort_at: String,
}

#[derive(Debug, Default)]
pub struct Queues {
    /// Pending applications, newest first.
    pub pending: Vec<Row>,
    /// 同意しない: the person is waiting for a call.
    pub rejected: Vec<Row>,
    /// Suspended by the secretariat.
    pub blocked: Vec<Row>,
    /// Local accounts locked after failed passwords.
    pub locked: Vec<Row>,
}

fn list<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    cfg: &Config,
    op: Op,
) -> Result<Vec<T>, AdminError> {
    let v = execute_cfg(store, cfg, &op)?;
    serde_json::from_value(v).map_err(|e| AdminError::Invalid(format!("{op:?}: {e}")))
}

pub fn app_row(a: &Application) -> Row {
    Row {
        id: a.gmis_id.clone(),
        gmis_id: a.gmis_id.clone(),
        local_id: a.link_to.clone().unwrap_or_default(),
        profile: a.profile.clone().unwrap_or_default(),
        phone: a.phone.clone(),
        status: match a.status {
            ApplicationStatus::Pending => Status::Pending,
            ApplicationStatus::Approved => Status::Approved,
            ApplicationStatus::Revoked => Status::Revoked,
        },
        note: a.reason.clone(),
        at: super::local_time(&a.updated),
        sort_at: a.updated.clone(),
    }
}

pub fn consent_row(c: &ConsentState) -> Row {
    Row {
        id: c.gmis_id.clone(),
        gmis_id: c.gmis_id.clone(),
        local_id: String::new(),
        profile: c.profile.clone().unwrap_or_default(),
        phone: String::new(),
        status: match c.decision {
            ConsentDecision::Accepted => Status::ConsentAccepted,
            ConsentDecision::Rejected => Status::ConsentRejected,
            ConsentDecision::BlockedBySecretariat => Status::Blocked,
        },
        // A secretariat block's detail is its reason; a person's decision's detail names the
        // assertion, which tells the secretariat nothing.
        note: match c.decision {
            ConsentDecision::BlockedBySecretariat => c.detail.clone(),
            _ => String::new(),
        },
        at: super::local_time(&c.at),
        sort_at: c.at.clone(),
    }
}

fn user_row(u: &User) -> Row {
    Row {
        id: u.gmis_id.clone().unwrap_or_else(|| u.id.clone()),
        gmis_id: u.gmis_id.clone().unwrap_or_default(),
        local_id: u.id.clone(),
        profile: u.profile.clone(),
        phone: String::new(),
        status: Status::User,
        note: String::new(),
        at: super::local_time(&u.updated),
        sort_at: u.updated.clone(),
    }
}

fn newest_first(rows: &mut [Row]) {
    rows.sort_by(|a, b| b.sort_at.cmp(&a.sort_at));
}

/// The local accounts the admin op lists, as (summary, locked).
fn local_accounts(store: &dyn Store, cfg: &Config) -> Result<Vec<Value>, AdminError> {
    use crate::account_ops::AccountOp;
    list(store, cfg, Op::Accounts(AccountOp::AccountsList))
}

fn account_row(a: &Value) -> Row {
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let id = s("user_id");
    Row {
        id: id.clone(),
        gmis_id: s("gmis_id"),
        local_id: id.clone(),
        profile: Profile {
            account_id: id,
            display_name: s("name"),
            email: s("email"),
            ..Default::default()
        },
        phone: String::new(),
        status: Status::Locked,
        note: String::new(),
        at: super::local_time(&s("updated")),
        sort_at: s("updated"),
    }
}

pub fn queues(store: &dyn Store, cfg: &Config) -> Result<Queues, AdminError> {
    let apps = crate::identity::applications::list(store)?;
    let consents = crate::identity::consent::list(store)?;
    let mut q = Queues {
        pending: apps
            .iter()
            .filter(|a| a.status == ApplicationStatus::Pending)
            .map(app_row)
            .collect(),
        ..Default::default()
    };
    for c in &consents {
        match c.decision {
            ConsentDecision::Rejected => q.rejected.push(consent_row(c)),
            ConsentDecision::BlockedBySecretariat => q.blocked.push(consent_row(c)),
            ConsentDecision::Accepted => {}
        }
    }
    q.locked = local_accounts(store, cfg)?
        .iter()
        .filter(|a| a.get("locked") == Some(&Value::Bool(true)))
        .map(account_row)
        .collect();
    for v in [
        &mut q.pending,
        &mut q.rejected,
        &mut q.blocked,
        &mut q.locked,
    ] {
        newest_first(v);
    }
    Ok(q)
}

/// What a search term matches: ids compared after full-width folding and upper-casing
/// (`ｇｍ００１２` finds `GM0012`), names and mail compared case-blind after NFKC.
#[derive(Debug, Clone)]
pub struct Query {
    id: String,
    text: String,
}

impl Query {
    /// `None` for an empty term.
    pub fn new(q: &str) -> Option<Query> {
        use unicode_normalization::UnicodeNormalization;
        let text: String = q.nfkc().collect::<String>().trim().to_lowercase();
        let id = normalise_id(q);
        (!text.is_empty()).then_some(Query { id, text })
    }

    pub fn matches(&self, r: &Row) -> bool {
        use unicode_normalization::UnicodeNormalization;
        // ASCII needs no NFKC (the common case, and the one that makes a search slow).
        let id = |v: &str| -> String {
            if v.is_ascii() {
                v.chars()
                    .filter(|c| !c.is_whitespace())
                    .map(|c| c.to_ascii_uppercase())
                    .collect()
            } else {
                normalise_id(v)
            }
        };
        let ids = [
            &r.gmis_id,
            &r.local_id,
            &r.profile.account_id,
            &r.profile.facility_code,
        ];
        let texts = [
            &r.profile.facility_name,
            &r.profile.display_name,
            &r.profile.email,
        ];
        ids.iter()
            .any(|v| !v.is_empty() && id(v).contains(&self.id))
            || texts.iter().any(|v| {
                let v: String = if v.is_ascii() {
                    v.to_ascii_lowercase()
                } else {
                    v.nfkc().collect::<String>().to_lowercase()
                };
                // Names: also without spaces (山田 花子 = 山田花子).
                v.contains(&self.text) || v.replace(' ', "").contains(&self.text.replace(' ', ""))
            })
    }
}

/// Every person the term matches, one row each (applications, consents, users, local
/// accounts; the most telling record of a person wins).
pub fn search(store: &dyn Store, cfg: &Config, q: &Query) -> Result<Vec<Row>, AdminError> {
    let apps = crate::identity::applications::list(store)?;
    let consents = crate::identity::consent::list(store)?;
    let users = crate::identity::users::list(store)?;
    let accounts = local_accounts(store, cfg)?;
    let mut rows: Vec<Row> = Vec::new();
    let candidates = apps
        .iter()
        .map(app_row)
        .chain(consents.iter().map(consent_row))
        .chain(users.iter().map(user_row))
        .chain(accounts.iter().map(|a| {
            let mut r = account_row(a);
            r.status = Status::User;
            if !r.gmis_id.is_empty() {
                r.id = r.gmis_id.clone();
            }
            r
        }));
    for r in candidates.filter(|r| q.matches(r)) {
        if !rows.iter().any(|x| x.id == r.id) {
            rows.push(r);
        }
    }
    newest_first(&mut rows);
    rows.truncate(200);
    Ok(rows)
}

/// A session of the account, as the console lists it (never the session id).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub method: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
}

/// Everything about one person, for the detail page.
#[derive(Debug, Default)]
pub struct Detail {
    pub gmis_id: Option<String>,
    pub local_id: Option<String>,
    /// The best profile known (user, else application, else consent).
    pub profile: Profile,
    pub user: Option<User>,
    pub application: Option<Application>,
    pub consent: Option<ConsentState>,
    /// The local ID/password account's summary (never a hash or secret).
    pub account: Option<Value>,
    pub sessions: Vec<SessionRow>,
    /// This person's audit lines, newest first.
    pub audit: Vec<AuditEntry>,
}

fn found<T: serde::de::DeserializeOwned>(
    r: Result<Value, AdminError>,
) -> Result<Option<T>, AdminError> {
    match r {
        Ok(Value::Null) => Ok(None),
        Ok(v) => Ok(serde_json::from_value(v).ok()),
        Err(AdminError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The person behind `id` (a G-MIS id or a local id), or `None` when nothing names it.
pub fn detail(store: &dyn Store, cfg: &Config, id: &str) -> Result<Option<Detail>, AdminError> {
    use crate::account_ops::AccountOp;
    let user: Option<User> = found(execute_cfg(store, cfg, &Op::UsersShow { id: id.into() }))?;
    let gmis = user
        .as_ref()
        .and_then(|u| u.gmis_id.clone())
        .unwrap_or_else(|| id.to_string());
    let show = match execute_cfg(
        store,
        cfg,
        &Op::ConsentShow {
            gmis_id: gmis.clone(),
        },
    ) {
        Ok(v) => v,
        Err(AdminError::NotFound(_)) => Value::Null,
        Err(e) => return Err(e),
    };
    let application: Option<Application> = found(Ok(show["application"].clone()))?;
    let consent: Option<ConsentState> = found(Ok(show["consent"].clone()))?;
    let user = user.or(found(Ok(show["user"].clone()))?);
    let local_id = user.as_ref().map(|u| u.id.clone());
    let account = match &local_id {
        Some(l) => found(execute_cfg(
            store,
            cfg,
            &Op::Accounts(AccountOp::AccountsShow { user_id: l.clone() }),
        ))?,
        None => None,
    };
    if user.is_none() && application.is_none() && consent.is_none() {
        return Ok(None);
    }
    let is_gmis = application.is_some()
        || consent.is_some()
        || user.as_ref().is_some_and(|u| u.gmis_id.is_some());
    let profile = user
        .as_ref()
        .map(|u| u.profile.clone())
        .or(application.as_ref().and_then(|a| a.profile.clone()))
        .or(consent.as_ref().and_then(|c| c.profile.clone()))
        .unwrap_or_default();
    let mut d = Detail {
        gmis_id: is_gmis.then_some(gmis),
        local_id,
        profile,
        user,
        application,
        consent,
        account,
        ..Default::default()
    };
    d.sessions = sessions(store, &d)?;
    d.audit = trail(store, cfg, &d)?;
    Ok(Some(d))
}

fn sessions(store: &dyn Store, d: &Detail) -> Result<Vec<SessionRow>, AdminError> {
    let mut recs = Vec::new();
    if let Some(g) = &d.gmis_id {
        recs.extend(store.sessions_by_account(g)?);
    }
    if let Some(l) = &d.local_id {
        for s in store.sessions_by_local_user(l)? {
            if !recs
                .iter()
                .any(|r: &crate::store::SessionRecord| r.id == s.id)
            {
                recs.push(s);
            }
        }
    }
    let now = chrono::Utc::now().timestamp();
    Ok(recs
        .iter()
        .filter(|s| s.expires > now)
        .map(|s| SessionRow {
            method: if s.auth_method.is_empty() {
                "saml".into()
            } else {
                s.auth_method.clone()
            },
            created: super::local_time_unix(s.created),
            last_seen: super::local_time_unix(s.last_seen),
            expires: super::local_time_unix(s.expires),
        })
        .collect())
}

/// How far back the detail page looks for this person's audit lines.
const TRAIL_SCAN: usize = 10_000;

fn trail(store: &dyn Store, cfg: &Config, d: &Detail) -> Result<Vec<AuditEntry>, AdminError> {
    let all: Vec<AuditEntry> = list(store, cfg, Op::AuditTail { n: TRAIL_SCAN })?;
    let ids: Vec<&str> = [d.gmis_id.as_deref(), d.local_id.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let mut v: Vec<AuditEntry> = all
        .into_iter()
        .filter(|e| ids.contains(&e.subject.as_str()))
        .collect();
    v.reverse();
    v.truncate(200);
    Ok(v)
}

impl Detail {
    /// The id actions and links name: the G-MIS id, else the local id.
    pub fn key(&self) -> &str {
        self.gmis_id
            .as_deref()
            .or(self.local_id.as_deref())
            .unwrap_or("")
    }

    pub fn consent_history(&self) -> Vec<&AuditEntry> {
        self.audit
            .iter()
            .filter(|e| e.action.starts_with("consent."))
            .collect()
    }

    pub fn application_status(&self) -> Option<ApplicationStatus> {
        self.application.as_ref().map(|a| a.status)
    }

    pub fn blocked(&self) -> bool {
        self.consent.as_ref().is_some_and(|c| c.blocks())
    }

    pub fn linked(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.gmis_id.is_some())
    }

    pub fn account_flag(&self, k: &str) -> bool {
        self.account
            .as_ref()
            .is_some_and(|a| a.get(k) == Some(&Value::Bool(true)))
    }

    /// The phone from the application form, if any.
    pub fn phone(&self) -> &str {
        self.application.as_ref().map_or("", |a| a.phone.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gmis: &str, name: &str, mail: &str) -> Row {
        Row {
            id: gmis.into(),
            gmis_id: gmis.into(),
            local_id: String::new(),
            profile: Profile {
                account_id: gmis.into(),
                display_name: name.into(),
                email: mail.into(),
                facility_code: "1310000001".into(),
                facility_name: "千代田保健所".into(),
                ..Default::default()
            },
            phone: String::new(),
            status: Status::Pending,
            note: String::new(),
            at: String::new(),
            sort_at: String::new(),
        }
    }

    #[test]
    fn ids_match_across_full_and_half_width_and_case() {
        let r = row("GM0012345", "山田 花子", "Hanako@Example.jp");
        for hit in [
            "ｇｍ００１２",
            "gm0012",
            "GM0012345",
            "１３１００",
            "山田花子",
            "山田 花子",
            "hanako@example",
            "ＨＡＮＡＫＯ",
            "千代田",
        ] {
            assert!(Query::new(hit).unwrap().matches(&r), "{hit}");
        }
        for miss in ["GM0099", "鈴木", "taro@"] {
            assert!(!Query::new(miss).unwrap().matches(&r), "{miss}");
        }
        assert!(Query::new("  ").is_none());
    }

    /// Not a check: how long the console's reads take with 5 000 applications, 5 000 consent
    /// decisions and 5 000 users on sled. `cargo test --lib console_reads_at_scale -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn console_reads_at_scale() {
        use crate::identity::{applications, consent, users};
        let d = tempfile::tempdir().unwrap();
        let s = crate::store::SledStore::open(&d.path().join("db")).unwrap();
        let cfg = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"http://x\"\n[sp]\nentity_id = \"e\"\nkeys_dir = \"k\"\n[idp]\nmetadata = \"m\"\n[store]\npath = \"s\"\n",
            std::path::Path::new("x.toml"),
            d.path(),
        )
        .unwrap();
        let now = crate::identity::now_rfc3339();
        for i in 0..5_000 {
            let p = Profile {
                account_id: format!("GM{i:07}"),
                display_name: format!("利用者 {i}"),
                facility_name: format!("施設{}", i % 300),
                facility_code: format!("13{i:08}"),
                email: format!("user{i}@example.jp"),
                category: "保健所".into(),
            };
            let app = Application {
                gmis_id: p.account_id.clone(),
                status: ApplicationStatus::Pending,
                link_to: None,
                note: String::new(),
                created: now.clone(),
                updated: now.clone(),
                profile: Some(p.clone()),
                phone: "03-0000-0000".into(),
                reason: "業務".into(),
            };
            let c = ConsentState {
                gmis_id: p.account_id.clone(),
                decision: ConsentDecision::Rejected,
                version: "v1".into(),
                at: now.clone(),
                detail: String::new(),
                profile: Some(p.clone()),
            };
            let u = User {
                id: p.account_id.clone(),
                gmis_id: Some(p.account_id.clone()),
                profile: p,
                created: now.clone(),
                updated: now.clone(),
                origin: crate::model::UserOrigin::Gmis,
            };
            let mut w = vec![applications::write(&app), consent::write(&c)];
            w.extend(users::local_account_writes(&u));
            s.apply(&w).unwrap();
        }
        let time = |what: &str, f: &dyn Fn()| {
            let t = std::time::Instant::now();
            for _ in 0..5 {
                f();
            }
            println!("{what}: {:?} per call", t.elapsed() / 5);
        };
        time("queues", &|| {
            assert_eq!(queues(&s, &cfg).unwrap().pending.len(), 5_000);
        });
        let q = Query::new("ｇｍ０００４９９９").unwrap();
        time("search ｇｍ０００４９９９", &|| {
            assert_eq!(search(&s, &cfg, &q).unwrap().len(), 1);
        });
        time("detail GM0004999", &|| {
            assert!(detail(&s, &cfg, "GM0004999").unwrap().is_some());
        });
    }
}
