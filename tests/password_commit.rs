//! Password logins commit once (`login::local`), guarded by the account as read: a 事務局
//! disable or password reset landing between the password check and the commit leaves no
//! session. (Here, not in `src/`: the interleaving store delegates `session_delete`, which only
//! `sessions::end` may call in `src/`.)

use std::sync::Mutex;

use samlgate::account_ops::{execute, AccountOp};
use samlgate::accounts::account::{AuthMethod, LocalConfig, LoginRefusal, Role};
use samlgate::accounts::password::{HashParams, Password};
use samlgate::local_login::{self as ll, LocalAuth, Outcome};
use samlgate::login::local::{commit_step, read_account, read_user, Committed, Ending, Step};
use samlgate::store::transfer::Item;
use samlgate::store::{
    AccountRows, Commit, Entries, ReplayCheck, SessionRecord, SledStore, Store, StoreError, Table,
    Versioned, Write,
};

/// Another party's write, run once.
type Hook = Box<dyn FnOnce(&SledStore) + Send>;

/// The real sled store, with one write of another party run just before the first commit:
/// the interleaving "password checked, then the 事務局 acts, then the login commits".
/// It also records the writes it is asked for.
struct Between {
    inner: SledStore,
    before_commit: Mutex<Option<Hook>>,
    calls: Mutex<Vec<&'static str>>,
}

impl Between {
    fn called(&self, what: &'static str) {
        self.calls.lock().unwrap().push(what);
    }
    /// The writes asked for since the last call, in order.
    fn take_calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Store for Between {
    fn replay_check_and_record(
        &self,
        key: &str,
        expires: i64,
        now: i64,
    ) -> Result<ReplayCheck, StoreError> {
        self.inner.replay_check_and_record(key, expires, now)
    }
    fn replay_sweep(&self, now: i64) -> Result<usize, StoreError> {
        self.inner.replay_sweep(now)
    }
    fn session_put(&self, rec: &SessionRecord, idle_seconds: i64) -> Result<(), StoreError> {
        self.called("session_put");
        self.inner.session_put(rec, idle_seconds)
    }
    fn session_get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.session_get(id)
    }
    fn session_touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.inner.session_touch(id, now)
    }
    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.session_delete(id)
    }
    fn session_sweep(&self, now: i64, idle_seconds: i64) -> Result<usize, StoreError> {
        self.inner.session_sweep(now, idle_seconds)
    }
    fn session_count(&self) -> usize {
        self.inner.session_count()
    }
    fn expired_sweep(&self, t: Table, now: i64) -> Result<usize, StoreError> {
        self.inner.expired_sweep(t, now)
    }
    fn sessions_matching(
        &self,
        pred: &dyn Fn(&SessionRecord) -> bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.sessions_matching(pred)
    }
    fn sessions_by_name_id(&self, name_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.sessions_by_name_id(name_id)
    }
    fn sessions_by_account(&self, account_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.sessions_by_account(account_id)
    }
    fn sessions_by_local_user(&self, local_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.sessions_by_local_user(local_id)
    }
    fn secret_get_or_create(
        &self,
        name: &str,
        make: &dyn Fn() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        self.inner.secret_get_or_create(name, make)
    }
    fn generation(&self) -> u64 {
        self.inner.generation()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.called("flush");
        self.inner.flush()
    }
    fn account(&self, gmis_id: &str, contact: Option<&[u8]>) -> Result<AccountRows, StoreError> {
        self.inner.account(gmis_id, contact)
    }
    fn commit(&self, c: &Commit) -> Result<bool, StoreError> {
        self.called("commit");
        let hook = self.before_commit.lock().unwrap().take();
        if let Some(h) = hook {
            h(&self.inner);
        }
        self.inner.commit(c)
    }
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(t, key)
    }
    fn get_versioned(&self, t: Table, key: &[u8]) -> Result<Versioned, StoreError> {
        self.inner.get_versioned(t, key)
    }
    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.called("apply");
        self.inner.apply(writes)
    }
    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.inner.scan(t, prefix, rev, limit)
    }
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.inner.next_seq()
    }
    fn seq_floor(&self, min: u64) -> Result<(), StoreError> {
        self.inner.seq_floor(min)
    }
    fn dump_state(
        &self,
        out: &mut dyn FnMut(Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.dump_state(out)
    }
}

const GOOD: &str = "a long phrase nobody else uses";

fn cfg() -> LocalConfig {
    LocalConfig {
        argon2: HashParams {
            m_kib: 256,
            t: 1,
            p: 1,
        },
        ..LocalConfig::default()
    }
}

fn ending(replaces: Vec<String>) -> Ending {
    Ending::session(&samlgate::config::SessionConfig::default(), replaces)
}

/// A store with account "hanako" whose password is GOOD (first-login change done), and the
/// session that change made.
fn settled(d: &std::path::Path, c: &LocalConfig, auth: &LocalAuth) -> (Between, String) {
    let s = Between {
        inner: SledStore::open(&d.join("db")).unwrap(),
        before_commit: Mutex::new(None),
        calls: Mutex::new(Vec::new()),
    };
    let add = AccountOp::AccountsAdd {
        user_id: "hanako".into(),
        email: "a@example.jp".into(),
        name: "山田 花子".into(),
        facility_code: String::new(),
        role: Role::Staff,
        by: "suzuki".into(),
    };
    let v = execute(&s, c, &add).unwrap();
    let first = Password::new(v["initial_password"].as_str().unwrap().into());
    let Outcome::Next(rec) =
        ll::password(&s, c, auth, "hanako", &first, "/", &ending(vec![])).unwrap()
    else {
        panic!("first login: the password change comes first")
    };
    let o = ll::change_password(
        &s,
        c,
        auth,
        &rec,
        &Password::new(GOOD.into()),
        &ending(vec![]),
    );
    let Outcome::Done {
        session: Some(n), ..
    } = o.unwrap()
    else {
        panic!("the change finishes the login")
    };
    (s, n.rec.id)
}

fn sessions_of(s: &dyn Store, user: &str) -> usize {
    s.sessions_by_local_user(user).unwrap().len()
}

fn audit_count(s: &dyn Store) -> usize {
    s.scan(Table::Audit, b"", false, usize::MAX).unwrap().len()
}

#[test]
fn a_login_commits_account_audit_and_session_once_and_replaces_the_old_session() {
    let d = tempfile::tempdir().unwrap();
    let (c, auth) = (cfg(), LocalAuth::new(&cfg()).unwrap());
    let (s, first) = settled(d.path(), &c, &auth);
    let lines = audit_count(&s);
    s.take_calls();
    let o = ll::password(
        &s,
        &c,
        &auth,
        "hanako",
        &Password::new(GOOD.into()),
        "/",
        &ending(vec![first.clone()]),
    );
    let Outcome::Done {
        session: Some(n), ..
    } = o.unwrap()
    else {
        panic!("a settled account logs in")
    };
    assert_eq!(n.rec.local_user_id, "hanako");
    assert_eq!(n.rec.auth_method, "password");
    assert!(s.session_get(&n.rec.id).unwrap().is_some());
    assert!(
        s.session_get(&first).unwrap().is_none(),
        "the browser's earlier session ended"
    );
    assert_eq!(
        audit_count(&s),
        lines + 1,
        "one audit line with the session"
    );
    assert_eq!(
        s.take_calls(),
        ["commit"],
        "one commit: no separate account write, session write or flush"
    );
}

/// A password login of hanako with `op` (a 事務局 action) run just before the login's commit:
/// the outcome, whether the op ran, and how many sessions hanako has after.
fn password_login_with_op_before_commit(op: AccountOp) -> (Outcome, bool, usize) {
    let d = tempfile::tempdir().unwrap();
    let (c, auth) = (cfg(), LocalAuth::new(&cfg()).unwrap());
    let (s, _) = settled(d.path(), &c, &auth);
    let c2 = c.clone();
    *s.before_commit.lock().unwrap() = Some(Box::new(move |inner: &SledStore| {
        execute(inner, &c2, &op).unwrap();
    }));
    let o = ll::password(
        &s,
        &c,
        &auth,
        "hanako",
        &Password::new(GOOD.into()),
        "/",
        &ending(vec![]),
    );
    let ran = s.before_commit.lock().unwrap().is_none();
    (o.unwrap(), ran, sessions_of(&s, "hanako"))
}

#[test]
fn a_disable_between_the_password_check_and_the_commit_leaves_no_session() {
    let (o, ran, sessions) = password_login_with_op_before_commit(AccountOp::AccountsDisable {
        user_id: "hanako".into(),
        by: "suzuki".into(),
        note: "left".into(),
    });
    assert!(ran, "the disable ran");
    assert!(
        matches!(o, Outcome::Refused(LoginRefusal::Disabled)),
        "decided again on the disabled account"
    );
    assert_eq!(sessions, 0);
}

#[test]
fn a_password_reset_between_the_check_and_the_commit_leaves_no_session() {
    let (o, ran, sessions) = password_login_with_op_before_commit(AccountOp::AccountsReset {
        user_id: "hanako".into(),
        by: "suzuki".into(),
        note: String::new(),
        remove_totp: false,
    });
    assert!(ran, "the reset ran");
    assert!(
        matches!(o, Outcome::Refused(LoginRefusal::WrongPassword)),
        "the old password no longer counts"
    );
    assert_eq!(sessions, 0);
}

#[test]
fn a_stale_account_version_commits_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (c, auth) = (cfg(), LocalAuth::new(&cfg()).unwrap());
    let (s, _) = settled(d.path(), &c, &auth);
    let read = read_account(&s, "hanako").unwrap().unwrap();
    let user = read_user(&s, "hanako").unwrap();
    // Another writer moves the account on (a failed attempt elsewhere counts).
    let mut other = read.account.clone();
    other.updated = "moved".into();
    let as_read = samlgate::identity::local_accounts::Loaded {
        account: read.account.clone(),
        read: read.row.clone(),
    };
    assert!(samlgate::identity::local_accounts::save(&s, &other, Some(&as_read), vec![]).unwrap());
    let (sessions, lines) = (s.session_count(), audit_count(&s));
    let step = Step {
        read: &read.row,
        writes: vec![
            samlgate::identity::local_accounts::put(&read.account),
            (Table::Audit, b"x".to_vec(), Some(b"{}".to_vec())),
        ],
        done: Some((&user, AuthMethod::Password)),
    };
    assert!(matches!(
        commit_step(&s, step, &ending(vec![])).unwrap(),
        Committed::Changed
    ));
    assert_eq!(s.session_count(), sessions, "no session");
    assert_eq!(audit_count(&s), lines, "no audit line");
    let now = read_account(&s, "hanako").unwrap().unwrap();
    assert_eq!(
        now.account.updated, "moved",
        "the other writer's account stays"
    );
}
