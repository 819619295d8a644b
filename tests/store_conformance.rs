//! One conformance suite for every store backend (oauth2-proxy's RunSessionStoreTests style):
//! the same functions run against sled and a real PostgreSQL (tests/pgtest). What the gateway
//! relies on: replay exactly once under concurrency, guarded batches, expiry sweeps, secrets
//! first-writer-wins, durability across a reopen, the generation contract (also for writes by
//! another instance), indexed session lookups, export/import between backends.

mod pgtest;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use samlgate::identity::Profile;
use samlgate::store::{Commit, ReplayCheck, SessionRecord, SledStore, Store, Table, Versioned};

/// How a test gets stores of one backend.
trait Backend {
    /// A store, and a second handle on the same data: for PostgreSQL a second instance (its
    /// own pool and listener); sled allows one handle per process, so the same one.
    fn pair(&self) -> (Arc<dyn Store>, Arc<dyn Store>);
    /// Drops `s` and opens the same data again (a restart).
    fn reopen(&self, s: Arc<dyn Store>) -> Arc<dyn Store>;
    /// Where the data is, for another process ([`durable_child`]): `sled:PATH` or `pg:URL`.
    fn locator(&self) -> String;
}

struct Sled(tempfile::TempDir);

impl Sled {
    fn new() -> Sled {
        Sled(tempfile::tempdir().unwrap())
    }
    fn open(&self) -> Arc<dyn Store> {
        let p = self.0.path().join("db");
        // sled lets go of its file lock shortly after a drop: retry like a restart would.
        for _ in 0..50 {
            if let Ok(s) = SledStore::open(&p) {
                return Arc::new(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot open sled at {}", p.display());
    }
}

impl Sled {
    fn open_boxed(&self) -> Box<dyn Store> {
        let p = self.0.path().join("db");
        for _ in 0..50 {
            if let Ok(s) = SledStore::open(&p) {
                return Box::new(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot reopen sled at {}", p.display());
    }
}

impl Backend for Sled {
    fn pair(&self) -> (Arc<dyn Store>, Arc<dyn Store>) {
        let s = self.open();
        (s.clone(), s)
    }
    fn reopen(&self, s: Arc<dyn Store>) -> Arc<dyn Store> {
        s.flush().unwrap();
        drop(s);
        self.open()
    }
    fn locator(&self) -> String {
        format!("sled:{}", self.0.path().join("db").display())
    }
}

struct Pg(String);

impl Pg {
    fn new() -> Pg {
        Pg(pgtest::fresh_db())
    }
}

impl Backend for Pg {
    fn pair(&self) -> (Arc<dyn Store>, Arc<dyn Store>) {
        (
            Arc::new(pgtest::open(&self.0)),
            Arc::new(pgtest::open(&self.0)),
        )
    }
    fn reopen(&self, s: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(s);
        Arc::new(pgtest::open(&self.0))
    }
    fn locator(&self) -> String {
        format!("pg:{}", self.0)
    }
}

fn session(id: &str, user: &str, last_seen: i64, expires: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        profile: Profile {
            account_id: user.into(),
            ..Default::default()
        },
        // A linked account: the local id differs from the G-MIS one.
        local_user_id: format!("local-{user}"),
        name_id: format!("nid-{user}"),
        name_id_format: None,
        session_index: Some(format!("si-{id}")),
        created: last_seen,
        last_seen,
        expires,
        auth_method: String::new(),
    }
}

fn replay_exactly_once_under_concurrency(b: &dyn Backend) {
    let (s1, s2) = b.pair();
    let key = "a\0https://idp.example/\0_assertion-1";
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.replay_check_and_record(key, 1000, 10).unwrap()
            })
        })
        .collect();
    let fresh = hs
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|r| *r == ReplayCheck::Fresh)
        .count();
    assert_eq!(
        fresh, 1,
        "exactly one of {n} concurrent first uses is fresh"
    );
    assert_eq!(
        s2.replay_check_and_record(key, 1000, 999).unwrap(),
        ReplayCheck::Replayed
    );
    // At its expiry the ID is free again, recorded anew.
    assert_eq!(
        s1.replay_check_and_record(key, 2000, 1000).unwrap(),
        ReplayCheck::Fresh
    );
    assert_eq!(
        s2.replay_check_and_record(key, 2000, 1500).unwrap(),
        ReplayCheck::Replayed
    );
    // Another IdP's ID, and a logout request with the same ID, are different entries.
    let other = "a\0https://other.example/\0_assertion-1";
    assert_eq!(
        s1.replay_check_and_record(other, 2000, 1500).unwrap(),
        ReplayCheck::Fresh
    );
    let logout = "l\0https://idp.example/\0_assertion-1";
    assert_eq!(
        s1.replay_check_and_record(logout, 2000, 1500).unwrap(),
        ReplayCheck::Fresh
    );
}

/// Contract (a), guards: a write that depends on a read is a [`Commit`] guarded by the
/// version read ([`Commit::guarded`]); if the record moved since (rewritten, even to the same
/// bytes on PostgreSQL; created; deleted), nothing of the commit is written and it answers
/// `Ok(false)`. `apply` is unguarded and all-or-nothing.
fn guarded_commit(b: &dyn Backend) {
    let (s, s2) = b.pair();
    let w = vec![
        (
            Table::Users,
            b"u1".to_vec(),
            Some(br#"{"id":"u1"}"#.to_vec()),
        ),
        (
            Table::UserByContact,
            b"F1\0a@b".to_vec(),
            Some(b"u1".to_vec()),
        ),
    ];
    let no_pending = s.get_versioned(Table::Pending, b"p").unwrap();
    assert!(s.commit(&Commit::guarded(&no_pending, w)).unwrap());
    assert_eq!(
        s2.get(Table::Users, b"u1").unwrap().as_deref(),
        Some(&br#"{"id":"u1"}"#[..])
    );
    assert_eq!(
        s2.get(Table::UserByContact, b"F1\0a@b").unwrap().as_deref(),
        Some(&b"u1"[..])
    );
    // A failed guard writes nothing at all: "u1 absent" no longer holds.
    let w2 = vec![
        (Table::Users, b"u2".to_vec(), Some(b"{}".to_vec())),
        (Table::Consents, b"u2".to_vec(), Some(b"{}".to_vec())),
    ];
    let u1_absent = Versioned::absent(Table::Users, b"u1");
    assert!(!s.commit(&Commit::guarded(&u1_absent, w2.clone())).unwrap());
    assert!(s2.get(Table::Users, b"u2").unwrap().is_none());
    assert!(s2.get(Table::Consents, b"u2").unwrap().is_none());
    // Read u1, then another instance rewrites it: the guard on the old version refuses.
    let read = s.get_versioned(Table::Users, b"u1").unwrap();
    s2.apply(&[(
        Table::Users,
        b"u1".to_vec(),
        Some(br#"{"id":"u1","n":2}"#.to_vec()),
    )])
    .unwrap();
    assert!(!s.commit(&Commit::guarded(&read, w2.clone())).unwrap());
    assert!(s2.get(Table::Users, b"u2").unwrap().is_none());
    // Deleted since the read: refused too.
    let read = s.get_versioned(Table::Users, b"u1").unwrap();
    s2.apply(&[(Table::Users, b"u1".to_vec(), None)]).unwrap();
    assert!(!s.commit(&Commit::guarded(&read, w2.clone())).unwrap());
    assert!(s2.get(Table::Users, b"u2").unwrap().is_none());
    // Unmoved since the read: the guarded write lands, through the other instance too.
    let read = s.get_versioned(Table::Users, b"u1").unwrap();
    assert!(read.version.is_absent());
    assert!(s2.commit(&Commit::guarded(&read, w2)).unwrap());
    assert!(s.get(Table::Consents, b"u2").unwrap().is_some());
    // Consume-once under concurrency: of many takers of one pending login, each reading its
    // version first, one wins.
    let v = br#"{"id":"p1","expires":5}"#.to_vec();
    s.apply(&[(Table::Pending, b"p1".to_vec(), Some(v.clone()))])
        .unwrap();
    let n = 12;
    let barrier = Arc::new(Barrier::new(n));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let st = if i % 2 == 0 { s.clone() } else { s2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let read = st.get_versioned(Table::Pending, b"p1").unwrap();
                barrier.wait();
                let take = vec![
                    (Table::Pending, b"p1".to_vec(), None),
                    (
                        Table::Consents,
                        b"g1".to_vec(),
                        Some(format!("{{\"by\":{i}}}").into_bytes()),
                    ),
                ];
                st.commit(&Commit::guarded(&read, take)).unwrap()
            })
        })
        .collect();
    let wins = hs
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1, "exactly one taker consumes the pending login");
    assert!(s.get(Table::Pending, b"p1").unwrap().is_none());
}

fn scans_and_sequences(b: &dyn Backend) {
    let (s, _) = b.pair();
    for k in ["b2", "a1", "b1", "c1", "b3"] {
        s.apply(&[(
            Table::Requests,
            k.as_bytes().to_vec(),
            Some(format!("\"{k}\"").into_bytes()),
        )])
        .unwrap();
    }
    let keys = |e: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
        e.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    };
    assert_eq!(
        keys(s.scan(Table::Requests, b"b", false, 10).unwrap()),
        ["b1", "b2", "b3"]
    );
    assert_eq!(
        keys(s.scan(Table::Requests, b"b", true, 2).unwrap()),
        ["b3", "b2"]
    );
    assert_eq!(
        keys(s.scan(Table::Requests, b"", false, 100).unwrap()).len(),
        5
    );
    let a = s.next_seq().unwrap();
    let b2 = s.next_seq().unwrap();
    assert!(b2 > a);
    for seq in [a, b2] {
        s.apply(&[(
            Table::Audit,
            seq.to_be_bytes().to_vec(),
            Some(format!("{{\"seq\":{seq}}}").into_bytes()),
        )])
        .unwrap();
    }
    let tail = s.scan(Table::Audit, b"", true, 1).unwrap();
    assert_eq!(
        tail[0].0,
        b2.to_be_bytes().to_vec(),
        "newest audit line last in key order"
    );
}

fn expiry_sweeps(b: &dyn Backend) {
    let (s, _) = b.pair();
    s.replay_check_and_record("a\0i\0r1", 100, 0).unwrap();
    s.replay_check_and_record("a\0i\0r2", 200, 0).unwrap();
    assert_eq!(s.replay_sweep(99).unwrap(), 0);
    assert_eq!(s.replay_sweep(100).unwrap(), 1);
    assert_eq!(
        s.replay_check_and_record("a\0i\0r2", 300, 150).unwrap(),
        ReplayCheck::Replayed
    );
    // Sessions: hard end at 1000, idle limit 100 after last use.
    s.session_put(&session("s1", "u1", 0, 1000), 100).unwrap();
    s.session_put(&session("s2", "u2", 0, 1000), 100).unwrap();
    s.session_put(&session("s3", "u3", 0, 50), 100).unwrap();
    assert_eq!(s.session_count(), 3);
    s.session_touch("s1", 90).unwrap();
    assert_eq!(s.session_get("s1").unwrap().unwrap().last_seen, 90);
    assert_eq!(s.session_sweep(49, 100).unwrap(), 0);
    assert_eq!(
        s.session_sweep(50, 100).unwrap(),
        1,
        "s3 reached its hard end"
    );
    assert_eq!(s.session_sweep(100, 100).unwrap(), 1, "s2 idle since 0");
    assert!(s.session_get("s1").unwrap().is_some(), "s1 was used at 90");
    assert_eq!(s.session_sweep(190, 100).unwrap(), 1);
    assert_eq!(s.session_count(), 0);
}

/// Pending logins and SP-initiated requests end at their `expires`; one sweep per table
/// deletes what is due (and what cannot be read), nothing else.
fn record_expiry_sweep(b: &dyn Backend) {
    let (s, s2) = b.pair();
    let rec = |exp: i64| Some(format!(r#"{{"id":"x","expires":{exp}}}"#).into_bytes());
    let w = |t: Table, k: &str, v: Option<Vec<u8>>| (t, k.as_bytes().to_vec(), v);
    let batch = vec![
        w(Table::Pending, "p1", rec(100)),
        w(Table::Pending, "p2", rec(200)),
        w(Table::Pending, "bad", Some(b"not json".to_vec())),
        w(Table::Requests, "r1", rec(100)),
        w(Table::Audit, "\0\0\0\0\0\0\0\x01", Some(b"{}".to_vec())),
    ];
    s.apply(&batch).unwrap();
    let keys = |st: &Arc<dyn Store>, t: Table| -> Vec<String> {
        let e = st.scan(t, b"", false, 100).unwrap();
        e.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    };
    assert_eq!(
        s2.expired_sweep(Table::Pending, 99).unwrap(),
        1,
        "the unreadable one"
    );
    assert_eq!(keys(&s, Table::Pending), ["p1", "p2"]);
    assert_eq!(s2.expired_sweep(Table::Pending, 100).unwrap(), 1);
    assert_eq!(keys(&s, Table::Pending), ["p2"]);
    assert_eq!(keys(&s, Table::Requests), ["r1"], "another table's sweep");
    // Extended before it came due: kept until its new expiry.
    s.apply(&[w(Table::Pending, "p2", rec(500))]).unwrap();
    assert_eq!(s2.expired_sweep(Table::Pending, 300).unwrap(), 0);
    assert_eq!(keys(&s, Table::Pending), ["p2"]);
    assert_eq!(s2.expired_sweep(Table::Pending, 500).unwrap(), 1);
    assert_eq!(s2.expired_sweep(Table::Requests, 100).unwrap(), 1);
    assert!(keys(&s, Table::Pending).is_empty() && keys(&s, Table::Requests).is_empty());
    assert_eq!(s2.expired_sweep(Table::Audit, i64::MAX).unwrap(), 0);
    assert_eq!(
        keys(&s, Table::Audit).len(),
        1,
        "the audit log does not expire"
    );
}

fn session_lookups(b: &dyn Backend) {
    let (s, s2) = b.pair();
    s.session_put(&session("x1", "alice", 0, 1000), 1800)
        .unwrap();
    s.session_put(&session("x2", "alice", 0, 1000), 1800)
        .unwrap();
    s.session_put(&session("x3", "bob", 0, 1000), 1800).unwrap();
    let ids = |v: Vec<SessionRecord>| {
        let mut ids: Vec<String> = v.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(s2.sessions_by_account("alice").unwrap()), ["x1", "x2"]);
    assert_eq!(ids(s2.sessions_by_name_id("nid-bob").unwrap()), ["x3"]);
    assert_eq!(
        ids(s2
            .sessions_matching(&|r| r.local_user_id == "local-bob")
            .unwrap()),
        ["x3"]
    );
    assert_eq!(
        s2.session_get("x1").unwrap().unwrap(),
        session("x1", "alice", 0, 1000)
    );
    assert!(s2.session_delete("x1").unwrap());
    assert!(!s.session_delete("x1").unwrap());
    assert!(s.session_get("x1").unwrap().is_none());
    // A deleted session leaves every lookup; a value that is a prefix of another is its own.
    s.session_put(&session("x4", "alice2", 0, 1000), 1800)
        .unwrap();
    assert_eq!(ids(s2.sessions_by_account("alice").unwrap()), ["x2"]);
    assert_eq!(ids(s2.sessions_by_name_id("nid-alice").unwrap()), ["x2"]);
    assert_eq!(
        ids(s2.sessions_by_local_user("local-alice").unwrap()),
        ["x2"]
    );
    assert_eq!(ids(s2.sessions_by_local_user("local-bob").unwrap()), ["x3"]);
    assert!(s2.sessions_by_account("nobody").unwrap().is_empty());
    // A session rewritten under another account moves to it (and its touch keeps it there).
    let mut moved = session("x2", "carol", 0, 1000);
    moved.last_seen = 5;
    s.session_put(&moved, 1800).unwrap();
    s.session_touch("x2", 7).unwrap();
    assert!(s2.sessions_by_account("alice").unwrap().is_empty());
    assert!(s2.sessions_by_local_user("local-alice").unwrap().is_empty());
    assert_eq!(ids(s2.sessions_by_account("carol").unwrap()), ["x2"]);
    assert_eq!(ids(s2.sessions_by_name_id("nid-carol").unwrap()), ["x2"]);
    // Swept sessions leave the lookups too.
    assert_eq!(s.session_sweep(1000, 1800).unwrap(), 3);
    assert!(s2.sessions_by_account("carol").unwrap().is_empty());
    assert!(s2.sessions_by_name_id("nid-bob").unwrap().is_empty());
}

fn secrets_first_writer_wins(b: &dyn Backend) {
    let (s1, s2) = b.pair();
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.secret_get_or_create("cookie-mac", &|| vec![i as u8; 32])
                    .unwrap()
            })
        })
        .collect();
    let vals: Vec<Vec<u8>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        vals.iter().all(|v| *v == vals[0]),
        "every handle got the one stored secret"
    );
    assert_eq!(
        s2.secret_get_or_create("cookie-mac", &|| vec![99]).unwrap(),
        vals[0]
    );
}

fn durable_across_reopen(b: &dyn Backend) {
    let (s, s2) = b.pair();
    drop(s2);
    s.replay_check_and_record("a\0i\0kept", i64::MAX, 0)
        .unwrap();
    s.session_put(&session("d1", "u1", 0, i64::MAX), 1800)
        .unwrap();
    s.apply(&[(
        Table::Consents,
        b"g".to_vec(),
        Some(b"{\"decision\":\"accepted\"}".to_vec()),
    )])
    .unwrap();
    let secret = s.secret_get_or_create("k", &|| vec![7; 16]).unwrap();
    let seq = s.next_seq().unwrap();
    let s = b.reopen(s);
    assert_eq!(
        s.replay_check_and_record("a\0i\0kept", i64::MAX, 1)
            .unwrap(),
        ReplayCheck::Replayed
    );
    assert!(s.session_get("d1").unwrap().is_some());
    assert!(s.get(Table::Consents, b"g").unwrap().is_some());
    assert_eq!(s.secret_get_or_create("k", &|| vec![1]).unwrap(), secret);
    assert!(
        s.next_seq().unwrap() > seq,
        "sequence numbers survive a restart"
    );
}

/// Contract (b), durability: a write is durable when the store call returns, with no
/// `flush` after it. For each write the request path acknowledges (an unguarded batch, a
/// guarded commit from a versioned read, a replay entry, a logout's session delete) a child
/// process (this test binary, [`durable_child`]) opens the store, makes that one write, says
/// so, and is killed with SIGKILL at once (sled's own timer flushes only every second); the
/// write is there after a reopen. One write per child, so no later write's flush covers it.
fn durable_when_the_call_returns(b: &dyn Backend) {
    for op in ["apply", "commit", "replay", "logout"] {
        let acked = run_child(&b.locator(), op);
        assert!(acked, "{op}: the child did not get its write acknowledged");
        let (s, _) = b.pair();
        match op {
            "apply" => assert!(
                s.get(Table::Consents, b"g-durable").unwrap().is_some(),
                "an acknowledged apply was lost"
            ),
            "commit" => {
                assert_eq!(
                    s.get(Table::Accounts, b"a-durable").unwrap().as_deref(),
                    Some(&br#"{"n":2}"#[..]),
                    "an acknowledged guarded commit was lost"
                );
                assert!(s
                    .get(Table::ResetTickets, b"link:durable")
                    .unwrap()
                    .is_none());
            }
            "replay" => assert_eq!(
                s.replay_check_and_record("a\0i\0durable", i64::MAX, 1)
                    .unwrap(),
                ReplayCheck::Replayed,
                "an acknowledged replay entry was lost"
            ),
            _ => assert!(
                s.session_get("d-logout").unwrap().is_none(),
                "an acknowledged logout came back"
            ),
        }
    }
}

/// Runs [`durable_child`] for `op` on the store at `at`; SIGKILLs it as soon as it says its
/// write was acknowledged. Returns whether it said so.
fn run_child(at: &str, op: &str) -> bool {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{op}:{at}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let acked = loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break false;
        }
        // libtest's "test durable_child ... " precedes it on the line.
        if line.trim_end().ends_with("acked") {
            break true;
        }
    };
    child.kill().unwrap(); // SIGKILL, right after the acknowledgement
    child.wait().unwrap();
    acked
}

const CHILD_ENV: &str = "SAMLGATE_DURABLE_CHILD";

/// The child half of [`durable_when_the_call_returns`]; does nothing unless that test
/// started it (`OP:sled:PATH` or `OP:pg:URL`).
#[test]
fn durable_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (op, at) = spec.split_once(':').expect("OP:BACKEND:WHERE");
    let s: Box<dyn Store> = match at.split_once(':') {
        Some(("sled", p)) => Box::new(SledStore::open(std::path::Path::new(p)).unwrap()),
        Some(("pg", url)) => Box::new(pgtest::open(url)),
        _ => panic!("bad {CHILD_ENV}: {spec}"),
    };
    match op {
        "apply" => s
            .apply(&[(Table::Consents, b"g-durable".to_vec(), Some(b"{}".to_vec()))])
            .unwrap(),
        "commit" => {
            // Set-up, made durable the old way: an account and its reset ticket.
            let ticket = (
                Table::ResetTickets,
                b"link:durable".to_vec(),
                Some(b"{}".to_vec()),
            );
            let account = (
                Table::Accounts,
                b"a-durable".to_vec(),
                Some(br#"{"n":1}"#.to_vec()),
            );
            s.apply(&[account, ticket]).unwrap();
            s.flush().unwrap();
            let read = s.get_versioned(Table::Accounts, b"a-durable").unwrap();
            let w = vec![
                (
                    Table::Accounts,
                    b"a-durable".to_vec(),
                    Some(br#"{"n":2}"#.to_vec()),
                ),
                (Table::ResetTickets, b"link:durable".to_vec(), None),
            ];
            assert!(s.commit(&Commit::guarded(&read, w)).unwrap());
        }
        "replay" => assert_eq!(
            s.replay_check_and_record("a\0i\0durable", i64::MAX, 0)
                .unwrap(),
            ReplayCheck::Fresh
        ),
        _ => {
            s.session_put(&session("d-logout", "u1", 0, i64::MAX / 4), 1800)
                .unwrap();
            s.flush().unwrap();
            assert!(s.session_delete("d-logout").unwrap());
        }
    }
    println!("acked");
    std::thread::sleep(Duration::from_secs(60));
}

/// Waits until `s.generation()` holds still (a PostgreSQL listener has confirmed itself).
fn settled(s: &dyn Store) -> u64 {
    let t = Instant::now();
    loop {
        let g = s.generation();
        std::thread::sleep(Duration::from_millis(50));
        if s.generation() == g {
            return g;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "generation never settles"
        );
    }
}

/// Waits until `s.generation()` differs from `g`; returns how long that took.
fn moved(s: &dyn Store, g: u64, what: &str) -> Duration {
    let t = Instant::now();
    while s.generation() == g {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{what}: not seen by the other handle within 1 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    t.elapsed()
}

fn generation_contract(b: &dyn Backend) {
    let (reader, writer) = b.pair();
    let g = settled(&*reader);
    // Writes that cannot restrict a session leave it.
    writer
        .session_put(&session("g1", "u1", 0, 1000), 1800)
        .unwrap();
    writer.session_touch("g1", 10).unwrap();
    writer.replay_check_and_record("a\0i\0g", 100, 0).unwrap();
    let quiet = vec![
        (Table::Pending, b"p".to_vec(), Some(b"{}".to_vec())),
        (Table::Requests, b"q".to_vec(), Some(b"{}".to_vec())),
        (
            Table::Audit,
            1u64.to_be_bytes().to_vec(),
            Some(b"{}".to_vec()),
        ),
    ];
    writer.apply(&quiet).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        reader.generation(),
        g,
        "new session, touch, replay, pending/request/audit leave it"
    );
    // Each restricting write by the *other* handle moves it, within 1 s.
    let g = settled(&*reader);
    writer
        .apply(&[(Table::Consents, b"u1".to_vec(), Some(b"{}".to_vec()))])
        .unwrap();
    moved(&*reader, g, "consent write");
    let g = settled(&*reader);
    // The consent just written is not absent: this guard fails.
    let x_absent = Versioned::absent(Table::Consents, b"u1");
    assert!(!writer
        .commit(&Commit::guarded(
            &x_absent,
            vec![(Table::Users, b"u1".to_vec(), Some(b"{}".to_vec()))]
        ))
        .unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reader.generation(), g, "a refused batch wrote nothing");
    writer
        .session_put(&session("g1", "u1", 0, 1000), 1800)
        .unwrap();
    moved(&*reader, g, "session overwrite");
    let g = settled(&*reader);
    assert!(writer.session_delete("g1").unwrap());
    moved(&*reader, g, "session delete");
    writer
        .session_put(&session("g2", "u1", 0, 5), 1800)
        .unwrap();
    let g = settled(&*reader);
    assert_eq!(writer.session_sweep(5, 1800).unwrap(), 1);
    moved(&*reader, g, "session sweep");
}

fn export_import_round_trip(from: &dyn Backend, to: &dyn Backend) {
    let (s, _) = from.pair();
    s.replay_check_and_record("a\0https://idp/\0_r", i64::MAX, 0)
        .unwrap();
    s.session_put(&session("e1", "u1", 5, i64::MAX), 1800)
        .unwrap();
    s.apply(&[
        (
            Table::Users,
            b"u1".to_vec(),
            Some(br#"{"id":"u1","gmis_id":"g1"}"#.to_vec()),
        ),
        (Table::UserByGmis, b"g1".to_vec(), Some(b"u1".to_vec())),
        (
            Table::UserByContact,
            b"F\0m@x".to_vec(),
            Some(b"u1".to_vec()),
        ),
        (
            Table::Audit,
            4242u64.to_be_bytes().to_vec(),
            Some(br#"{"seq":4242}"#.to_vec()),
        ),
    ])
    .unwrap();
    let secret = s.secret_get_or_create("cookie", &|| vec![3; 32]).unwrap();
    let mut buf = Vec::new();
    let counts = samlgate::store::transfer::export(&*s, &mut buf).unwrap();
    assert_eq!(counts.get("records"), Some(&4));
    assert_eq!(counts.get("sessions"), Some(&1));
    assert_eq!(counts.get("replay"), Some(&1));
    assert_eq!(counts.get("secrets"), Some(&1));
    let (t, _) = to.pair();
    let back = samlgate::store::transfer::import(&*t, buf.as_slice()).unwrap();
    assert_eq!(back, counts);
    assert_eq!(
        t.replay_check_and_record("a\0https://idp/\0_r", i64::MAX, 1)
            .unwrap(),
        ReplayCheck::Replayed
    );
    assert_eq!(
        t.session_get("e1").unwrap().unwrap(),
        session("e1", "u1", 5, i64::MAX)
    );
    assert_eq!(
        t.get(Table::UserByContact, b"F\0m@x").unwrap().as_deref(),
        Some(&b"u1"[..])
    );
    assert_eq!(
        t.secret_get_or_create("cookie", &|| vec![0]).unwrap(),
        secret
    );
    assert!(
        t.next_seq().unwrap() > 4242,
        "new audit lines sort after imported ones"
    );
    // And the target exports the same thing back.
    let mut again = Vec::new();
    samlgate::store::transfer::export(&*t, &mut again).unwrap();
    let lines = |b: &[u8]| {
        let mut l: Vec<String> = String::from_utf8(b.to_vec())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        l.sort();
        l
    };
    assert_eq!(lines(&again), lines(&buf));
}

/// Local ID/password accounts and their reset tickets (issue 13): an account stored by one
/// instance is read by the other, its guarded write refuses a stale copy (a lost throttle
/// count), a ticket is found by its token's hash only, consumed once, and expired ones swept.
fn accounts_and_reset_tickets(b: &dyn Backend) {
    use samlgate::accounts::account::{Account, Ctx, LocalConfig, Role};
    use samlgate::accounts::password::{HashParams, Hasher};
    use samlgate::accounts::policy::Blocklist;
    use samlgate::accounts::reset::ResetTicket;
    use samlgate::identity::local_accounts as la;

    let (s1, s2) = b.pair();
    let cfg = LocalConfig::default();
    let hasher = Hasher::new(HashParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    })
    .unwrap();
    let cx = Ctx {
        cfg: &cfg,
        hasher: &hasher,
        blocklist: Blocklist::builtin(),
        now: 1_000,
    };
    let (a, pw) = Account::create("u-local1", Role::Staff, &cx).unwrap();
    assert!(la::save(&*s1, &a, None, Vec::new()).unwrap());
    // A second create of the same id loses: the record exists.
    assert!(!la::save(&*s2, &a, None, Vec::new()).unwrap());
    let got = la::get(&*s2, "u-local1").unwrap().expect("stored");
    assert_eq!(got.account, a);
    assert!(hasher.verify(&pw, &got.account.password).is_ok());
    assert!(la::get(&*s2, "nobody").unwrap().is_none());

    // Two writers from the same read: the second is refused and writes nothing.
    let mut first = got.account.clone();
    first.unlock(2_000);
    first.set_disabled(true, 2_000);
    assert!(la::save(&*s1, &first, Some(&got), Vec::new()).unwrap());
    let mut stale = got.account.clone();
    stale.unlock(3_000);
    assert!(!la::save(&*s2, &stale, Some(&got), Vec::new()).unwrap());
    assert!(la::get(&*s2, "u-local1").unwrap().unwrap().account.disabled);
    assert_eq!(la::list(&*s2).unwrap().len(), 1);

    // A mailed link: found by the token, stored only as its hash, consumed with the password.
    let (token, t) = ResetTicket::issue_link("u-local1", 0, 1_000, &cfg.reset);
    s1.apply(&[la::put_ticket(&t)]).unwrap();
    for (k, v) in s2.scan(Table::ResetTickets, b"", false, 10).unwrap() {
        let (k, v) = (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap());
        assert!(
            !k.contains(&token) && !v.contains(&token),
            "token stored in clear"
        );
    }
    assert!(la::link_ticket(&*s2, "not-the-token").unwrap().is_none());
    let (key, found) = la::link_ticket(&*s2, &token).unwrap().expect("ticket");
    assert_eq!(found.clone().redeem(&token, 1_001).unwrap(), "u-local1");
    let cur = la::get(&*s2, "u-local1").unwrap().unwrap();
    let ticket_read = s2
        .get_versioned(Table::ResetTickets, key.as_bytes())
        .unwrap();
    assert!(ticket_read.value.is_some());
    let consume = |s: &dyn Store| {
        let w = vec![la::put(&cur.account), la::delete_ticket(&key)];
        s.commit(&Commit::guarded(&ticket_read, w)).unwrap()
    };
    assert!(consume(&*s2));
    assert!(!consume(&*s1), "a ticket is single use across instances");
    assert!(la::link_ticket(&*s1, &token).unwrap().is_none());

    // A 事務局 code is keyed by user: a new one replaces the old; expired ones are swept.
    let (_c1, t1) = ResetTicket::issue_code("u-local1", 1_000, &cfg.reset);
    let (c2, t2) = ResetTicket::issue_code("u-local1", 1_010, &cfg.reset);
    s1.apply(&[la::put_ticket(&t1)]).unwrap();
    s1.apply(&[la::put_ticket(&t2)]).unwrap();
    let (_, t) = la::code_ticket(&*s2, "u-local1").unwrap().unwrap();
    assert_eq!(t.redeem(&c2, 1_011).unwrap(), "u-local1");
    assert_eq!(la::sweep_tickets(&*s2, 1_010 + 1_800 - 1).unwrap(), 0);
    assert_eq!(la::sweep_tickets(&*s2, 1_010 + 1_800).unwrap(), 1);
    assert!(la::code_ticket(&*s1, "u-local1").unwrap().is_none());

    drop(s2);
    let s1 = b.reopen(s1);
    assert!(la::get(&*s1, "u-local1").unwrap().unwrap().account.disabled);
}

// ---- the login's snapshot and transaction (issue 17 §1, issue 16) ---------------------------

fn user_doc(id: &str, gmis: Option<&str>, tag: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "gmis_id": gmis, "tag": tag})
        .to_string()
        .into_bytes()
}

/// The snapshot reads every row a login decides on, absent ones too, each with a version that
/// moves with every write of the row and differs from "absent" after a delete.
fn account_snapshot(b: &dyn Backend) {
    let (s, s2) = b.pair();
    let contact = b"F1\0a@example.jp".as_slice();
    let a = s.account("GM1", Some(contact)).unwrap();
    assert_eq!(a.gmis_id, "GM1");
    assert!(a.rows().all(|r| r.value.is_none() && r.version.is_absent()));
    assert!(a.linked_user.is_none() && a.link_target.is_none() && a.contact_user.is_none());
    assert_eq!(
        a.rows().count(),
        5,
        "consent, application, link, same id, contact"
    );

    let app = br#"{"gmis_id":"GM1","status":"approved","link_to":"L9"}"#;
    s.apply(&[
        (
            Table::Consents,
            b"GM1".to_vec(),
            Some(b"{\"c\":1}".to_vec()),
        ),
        (Table::Applications, b"GM1".to_vec(), Some(app.to_vec())),
        (Table::UserByGmis, b"GM1".to_vec(), Some(b"U1".to_vec())),
        (
            Table::Users,
            b"U1".to_vec(),
            Some(user_doc("U1", Some("GM1"), "a")),
        ),
        (
            Table::Users,
            b"GM1".to_vec(),
            Some(user_doc("GM1", None, "a")),
        ),
        (Table::UserByContact, contact.to_vec(), Some(b"L2".to_vec())),
        (
            Table::Users,
            b"L2".to_vec(),
            Some(user_doc("L2", None, "a")),
        ),
    ])
    .unwrap();
    let a = s2.account("GM1", Some(contact)).unwrap();
    assert_eq!(a.consent.value.as_deref(), Some(&b"{\"c\":1}"[..]));
    assert_eq!(a.application.value.as_deref(), Some(&app[..]));
    assert_eq!(a.link.value.as_deref(), Some(&b"U1"[..]));
    let lu = a.linked_user.clone().unwrap();
    assert_eq!((lu.table, lu.key.as_slice()), (Table::Users, &b"U1"[..]));
    assert_eq!(lu.value, Some(user_doc("U1", Some("GM1"), "a")));
    assert_eq!(a.same_id.value, Some(user_doc("GM1", None, "a")));
    // The application names L9, which does not exist: read as absent, guarded as absent.
    let lt = a.link_target.clone().unwrap();
    assert_eq!((lt.key.as_slice(), lt.value.is_none()), (&b"L9"[..], true));
    assert!(lt.version.is_absent());
    assert_eq!(
        a.contact.as_ref().unwrap().value.as_deref(),
        Some(&b"L2"[..])
    );
    assert_eq!(
        a.contact_user.as_ref().unwrap().value,
        Some(user_doc("L2", None, "a"))
    );
    assert!(a
        .rows()
        .filter(|r| r.value.is_some())
        .all(|r| !r.version.is_absent()));
    // Without a contact key, no contact rows.
    let plain = s.account("GM1", None).unwrap();
    assert!(plain.contact.is_none() && plain.contact_user.is_none());

    // A rewrite moves the version; a delete makes it absent; a rewrite after that is new.
    let v1 = a.linked_user.as_ref().unwrap().version;
    s.apply(&[(
        Table::Users,
        b"U1".to_vec(),
        Some(user_doc("U1", Some("GM1"), "b")),
    )])
    .unwrap();
    let v2 = s2
        .account("GM1", None)
        .unwrap()
        .linked_user
        .unwrap()
        .version;
    assert_ne!(v1, v2);
    s.apply(&[(Table::Consents, b"GM1".to_vec(), None)])
        .unwrap();
    assert!(s2.account("GM1", None).unwrap().consent.version.is_absent());
    s.apply(&[(
        Table::Consents,
        b"GM1".to_vec(),
        Some(b"{\"c\":2}".to_vec()),
    )])
    .unwrap();
    let v3 = s2.account("GM1", None).unwrap().consent.version;
    assert!(!v3.is_absent());
    assert_ne!(v3, a.consent.version);
}

/// A login commit: the user row, the link, an audit line and the session.
fn login_commit(rows: &samlgate::store::AccountRows, sid: &str, seq: u64) -> Commit {
    Commit {
        expect: rows.expectations(),
        writes: vec![
            (
                Table::Users,
                b"GM1".to_vec(),
                Some(user_doc("GM1", Some("GM1"), sid)),
            ),
            (Table::UserByGmis, b"GM1".to_vec(), Some(b"GM1".to_vec())),
            (
                Table::Audit,
                seq.to_be_bytes().to_vec(),
                Some(format!("{{\"action\":\"user.register\",\"by\":\"{sid}\"}}").into_bytes()),
            ),
        ],
        session: Some((session(sid, "GM1", 100, 10_000), 3600)),
        // The browser's earlier session ends with it.
        end_sessions: vec!["old".into()],
        audit: Vec::new(),
    }
}

/// Several expectations, all or nothing: each one failing alone aborts the whole commit (no
/// record, no audit line, no session), and the commit goes through once all hold.
fn commit_is_all_or_nothing(b: &dyn Backend) {
    let (s, s2) = b.pair();
    let contact = b"F1\0a@example.jp".as_slice();
    let app = br#"{"gmis_id":"GM1","status":"approved","link_to":"L9"}"#;
    s.apply(&[
        (Table::Applications, b"GM1".to_vec(), Some(app.to_vec())),
        (
            Table::Consents,
            b"GM1".to_vec(),
            Some(b"{\"c\":1}".to_vec()),
        ),
    ])
    .unwrap();
    // One write per row the snapshot reads: each changes just that row.
    let disturb: Vec<(Table, &[u8])> = vec![
        (Table::Consents, b"GM1"),
        (Table::Applications, b"GM1"),
        (Table::UserByGmis, b"GM1"),
        (Table::Users, b"GM1"),
        (Table::Users, b"L9"),
        (Table::UserByContact, contact),
    ];
    s.session_put(&session("old", "GM0", 100, 10_000), 3600)
        .unwrap();
    for (i, (t, k)) in disturb.iter().enumerate() {
        let rows = s.account("GM1", Some(contact)).unwrap();
        let value = match t {
            // Still approved, still naming L9: a change the decision might not care about,
            // but a change of a row it read.
            Table::Applications => {
                format!(r#"{{"gmis_id":"GM1","status":"approved","link_to":"L9","n":{i}}}"#)
                    .into_bytes()
            }
            Table::UserByGmis | Table::UserByContact => b"X".to_vec(),
            _ => format!("{{\"n\":{i}}}").into_bytes(),
        };
        s2.apply(&[(*t, k.to_vec(), Some(value))]).unwrap();
        let sid = format!("sess-{i}");
        assert!(
            !s.commit(&login_commit(&rows, &sid, 900 + i as u64))
                .unwrap(),
            "a change of {t:?} {} alone must abort the commit",
            String::from_utf8_lossy(k)
        );
        assert!(s2.session_get(&sid).unwrap().is_none(), "no session");
        assert!(
            s2.session_get("old").unwrap().is_some(),
            "the old session stays"
        );
        assert!(s2
            .get(Table::Audit, &(900 + i as u64).to_be_bytes())
            .unwrap()
            .is_none());
        assert_ne!(
            s2.get(Table::Users, b"GM1").unwrap(),
            Some(user_doc("GM1", Some("GM1"), &sid))
        );
        // Back to absent for the rows the next round reads as absent.
        if matches!(t, Table::UserByGmis | Table::Users) {
            s2.apply(&[(*t, k.to_vec(), None)]).unwrap();
        }
    }
    // A row that was deleted and is absent again guards like any absent row.
    let rows = s.account("GM1", Some(contact)).unwrap();
    let g = settled(&*s2);
    assert!(s.commit(&login_commit(&rows, "sess-ok", 999)).unwrap());
    assert_eq!(
        s2.session_get("sess-ok").unwrap().unwrap().local_user_id,
        "local-GM1"
    );
    assert_eq!(s2.sessions_by_account("GM1").unwrap().len(), 1);
    assert!(
        s2.session_get("old").unwrap().is_none(),
        "ended in the commit"
    );
    assert!(s2.sessions_by_account("GM0").unwrap().is_empty());
    assert_eq!(s2.session_count(), 1);
    assert_eq!(
        s2.get(Table::UserByGmis, b"GM1").unwrap().as_deref(),
        Some(&b"GM1"[..])
    );
    assert!(s2
        .get(Table::Audit, &999u64.to_be_bytes())
        .unwrap()
        .is_some());
    // Ending the browser's earlier session restricts: the generation moves (on the other
    // instance too, within the contract).
    let moved_by = moved(&*s2, g, "login commit");
    assert!(moved_by < Duration::from_secs(1));
    // Creating a user row and link the guard proved absent does not (a first login's
    // registration must not empty every instance's session cache); rewriting them does.
    let rows = s.account("GM2", None).unwrap();
    let mut first = login_commit(&rows, "sess-gm2", 997);
    first.writes[0] = (
        Table::Users,
        b"GM2".to_vec(),
        Some(user_doc("GM2", Some("GM2"), "x")),
    );
    first.writes[1] = (Table::UserByGmis, b"GM2".to_vec(), Some(b"GM2".to_vec()));
    first.end_sessions.clear();
    let g = settled(&*s2);
    assert!(s.commit(&first).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s2.generation(), g, "a registration left the generation");
    let rows = s.account("GM2", None).unwrap();
    let mut refresh = first.clone();
    refresh.expect = rows.expectations();
    refresh.writes[0].2 = Some(user_doc("GM2", Some("GM2"), "y"));
    refresh.writes.truncate(1);
    refresh.session = None;
    assert!(s.commit(&refresh).unwrap());
    moved(&*s2, g, "a refresh of a user row");
    // The same snapshot again: its rows have changed, so a second commit on it aborts.
    assert!(!s.commit(&login_commit(&rows, "sess-2", 998)).unwrap());
    // An empty commit with no guard succeeds (and is durable).
    assert!(s.commit(&Commit::default()).unwrap());
    drop(s2);
    let s = b.reopen(s);
    assert!(s.session_get("sess-ok").unwrap().is_some(), "durable");
}

/// Concurrent first logins of one G-MIS account, half on each instance: exactly one
/// registration (one user row and link write, one audit line), and every login gets a session.
fn concurrent_first_logins_register_once(b: &dyn Backend) {
    let (s1, s2) = b.pair();
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let st = if i % 2 == 0 { s1.clone() } else { s2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let sid = format!("c-{i}");
                for attempt in 0..50 {
                    let rows = st.account("GM1", None).unwrap();
                    if attempt == 0 {
                        // Every first attempt decides on the empty account before any commits.
                        barrier.wait();
                    }
                    let mut c = login_commit(&rows, &sid, 500 + (i * 50 + attempt) as u64);
                    if rows.link.value.is_some() {
                        // Registered meanwhile: a returning login writes only its session.
                        c.writes.clear();
                    }
                    let registers = !c.writes.is_empty();
                    if st.commit(&c).unwrap() {
                        return registers;
                    }
                }
                panic!("login {i} never committed");
            })
        })
        .collect();
    let registrations = hs
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|r| *r)
        .count();
    assert_eq!(registrations, 1, "one registration");
    assert_eq!(s1.scan(Table::Audit, b"", false, 100).unwrap().len(), 1);
    assert_eq!(s2.sessions_by_account("GM1").unwrap().len(), n);
}

/// `get_versioned` (a password login's read of its account and user rows): the version it
/// gives guards a commit, also one made through another instance; a changed row refuses it,
/// writing nothing (no session).
fn versioned_read_guards_a_commit(b: &dyn Backend) {
    let (s1, s2) = b.pair();
    let key = b"u-versioned".to_vec();
    s1.apply(&[(Table::Accounts, key.clone(), Some(br#"{"n":1}"#.to_vec()))])
        .unwrap();
    let read = s2.get_versioned(Table::Accounts, &key).unwrap();
    assert_eq!(read.value.as_deref(), Some(&br#"{"n":1}"#[..]));
    assert!(!read.version.is_absent());
    let none = s2.get_versioned(Table::Accounts, b"nobody").unwrap();
    assert!(none.value.is_none() && none.version.is_absent());
    let commit = |sid: &str, n: u32, expect: Vec<samlgate::store::Expectation>| Commit {
        expect,
        writes: vec![(
            Table::Accounts,
            key.clone(),
            Some(format!(r#"{{"n":{n}}}"#).into_bytes()),
        )],
        session: Some((session(sid, "GM-v", 1, i64::MAX / 4), 3600)),
        end_sessions: Vec::new(),
        audit: Vec::new(),
    };
    // As read: the commit lands (through the other instance).
    assert!(s1
        .commit(&commit("sv1", 2, vec![read.expect(), none.expect()]))
        .unwrap());
    assert!(s2.session_get("sv1").unwrap().is_some());
    // The row moved on since `read`: nothing is written.
    assert!(!s2.commit(&commit("sv2", 3, vec![read.expect()])).unwrap());
    assert!(s1.session_get("sv2").unwrap().is_none());
    let now = s1.get_versioned(Table::Accounts, &key).unwrap();
    assert_eq!(now.value.as_deref(), Some(&br#"{"n":2}"#[..]));
    assert_ne!(now.version, read.version);
}

/// The login's first step: the replay entry and the account snapshot in one call. Of N
/// concurrent calls with one assertion across two instances exactly one gets the snapshot; the
/// entry stays recorded though no commit follows (the login may be refused after it); the
/// snapshot is the one `account` reads.
fn replay_with_snapshot_exactly_once(b: &dyn Backend) {
    let (s1, s2) = b.pair();
    let contact = b"F1\0a@example.jp".as_slice();
    s1.apply(&[
        (
            Table::Users,
            b"L7".to_vec(),
            Some(user_doc("L7", None, "c")),
        ),
        (Table::UserByContact, contact.to_vec(), Some(b"L7".to_vec())),
        (
            Table::Consents,
            b"GM1".to_vec(),
            Some(b"{\"c\":1}".to_vec()),
        ),
    ])
    .unwrap();
    let key = "a\0https://idp.example/\0_it's-1";
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.replay_and_account(key, 1000, 10, "GM1", Some(contact))
                    .unwrap()
            })
        })
        .collect();
    let fresh: Vec<_> = hs.into_iter().filter_map(|h| h.join().unwrap()).collect();
    assert_eq!(
        fresh.len(),
        1,
        "exactly one of {n} concurrent first uses is fresh"
    );
    assert_eq!(fresh[0], s2.account("GM1", Some(contact)).unwrap());
    assert_eq!(
        fresh[0].contact_user.as_ref().and_then(|u| u.value.clone()),
        Some(user_doc("L7", None, "c"))
    );
    assert!(fresh[0].consent.value.is_some() && fresh[0].link.value.is_none());
    // Recorded, with no commit after it: a replay on either path, on either instance.
    assert_eq!(
        s2.replay_check_and_record(key, 1000, 999).unwrap(),
        ReplayCheck::Replayed
    );
    assert!(s1
        .replay_and_account(key, 1000, 999, "GM1", None)
        .unwrap()
        .is_none());
    // At its expiry the ID is free again.
    assert!(s2
        .replay_and_account(key, 2000, 1000, "GM1", None)
        .unwrap()
        .is_some());
    assert_eq!(
        s1.replay_check_and_record(key, 2000, 1500).unwrap(),
        ReplayCheck::Replayed
    );
}

/// Audit lines numbered inside the commit (`Commit::audit`): each gets a fresh sequence number
/// as its key and in its `seq` field, byte for byte what `audit::entry` writes otherwise; a
/// refused commit writes none; a line that does not begin `{"seq":0,` is refused. Values with
/// quotes, backslashes and non-ASCII text come back exactly (PostgreSQL sends them as literals).
fn commit_numbers_audit_lines(b: &dyn Backend) {
    let (s, s2) = b.pair();
    let before = s.next_seq().unwrap();
    let rows = s.account("GM1", None).unwrap();
    let odd = "O'Brien \\ 'x'); DROP TABLE users; -- 東京 \\x00 $$ E'\\'";
    let doc = |tag: &str| {
        format!(
            "{{\"seq\":0,\"action\":\"user.register\",\"detail\":{}}}",
            serde_json::to_string(&format!("{odd} {tag}")).unwrap()
        )
        .into_bytes()
    };
    let mut c = login_commit(&rows, "sess-'q\\", 0);
    c.writes.retain(|w| w.0 != Table::Audit);
    c.writes[0].2 =
        Some(serde_json::to_vec(&serde_json::json!({ "id": "GM1", "odd": odd })).unwrap());
    c.end_sessions = vec!["it's".into(), "back\\slash".into()];
    c.audit = vec![doc("one"), doc("two")];
    // Refused (a row it read changed): no audit line.
    s2.apply(&[(Table::Consents, b"GM1".to_vec(), Some(b"{}".to_vec()))])
        .unwrap();
    assert!(!s.commit(&c).unwrap());
    assert!(s2.scan(Table::Audit, b"", false, 10).unwrap().is_empty());
    c.expect = s.account("GM1", None).unwrap().expectations();
    assert!(s.commit(&c).unwrap());
    let lines = s2.scan(Table::Audit, b"", false, 10).unwrap();
    assert_eq!(lines.len(), 2);
    for ((k, v), tag) in lines.iter().zip(["one", "two"]) {
        let seq = u64::from_be_bytes(k.as_slice().try_into().unwrap());
        assert!(seq > before, "numbered after every earlier next_seq");
        let want = String::from_utf8(doc(tag)).unwrap().replacen(
            "\"seq\":0,",
            &format!("\"seq\":{seq},"),
            1,
        );
        assert_eq!(String::from_utf8(v.clone()).unwrap(), want);
    }
    assert!(s.next_seq().unwrap() > u64::from_be_bytes(lines[1].0.as_slice().try_into().unwrap()));
    assert_eq!(
        s2.get(Table::Users, b"GM1").unwrap(),
        c.writes[0].2,
        "a value with quotes and backslashes comes back exactly"
    );
    assert!(s2.session_get("sess-'q\\").unwrap().is_some());
    // A line the store cannot number: an error, nothing written.
    let mut bad = login_commit(&s.account("GM3", None).unwrap(), "sess-bad", 0);
    bad.writes.retain(|w| w.0 != Table::Audit);
    bad.audit = vec![b"{\"action\":\"x\"}".to_vec()];
    assert!(s.commit(&bad).is_err());
    assert!(s2.session_get("sess-bad").unwrap().is_none());
    assert_eq!(s2.scan(Table::Audit, b"", false, 10).unwrap().len(), 2);
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sled_backend {
            $( #[test] fn $name() { super::$name(&super::Sled::new()); } )*
        }
        mod pg_backend {
            $( #[test] fn $name() { super::$name(&super::Pg::new()); } )*
        }
    };
}

both!(
    replay_exactly_once_under_concurrency,
    guarded_commit,
    scans_and_sequences,
    expiry_sweeps,
    record_expiry_sweep,
    session_lookups,
    secrets_first_writer_wins,
    durable_across_reopen,
    generation_contract,
    accounts_and_reset_tickets,
    account_snapshot,
    commit_is_all_or_nothing,
    concurrent_first_logins_register_once,
    versioned_read_guards_a_commit,
    replay_with_snapshot_exactly_once,
    commit_numbers_audit_lines,
    durable_when_the_call_returns,
);

#[test]
fn export_sled_import_pg() {
    export_import_round_trip(&Sled::new(), &Pg::new());
}

#[test]
fn export_pg_import_sled() {
    export_import_round_trip(&Pg::new(), &Sled::new());
}

/// How soon another instance's restricting write moves this instance's generation; the
/// contract says under 1 s. Prints the figures (run with --nocapture to see them).
#[test]
fn pg_generation_propagation_delay() {
    let db = Pg::new();
    let (reader, writer) = db.pair();
    let mut d = Vec::new();
    for i in 0..30 {
        let g = settled(&*reader);
        writer
            .apply(&[(
                Table::Consents,
                format!("p{i}").into_bytes(),
                Some(b"{}".to_vec()),
            )])
            .unwrap();
        d.push(moved(&*reader, g, "propagation"));
    }
    d.sort();
    eprintln!(
        "generation propagation across instances: median {:?}, p90 {:?}, max {:?} (n={})",
        d[d.len() / 2],
        d[d.len() * 9 / 10],
        d[d.len() - 1],
        d.len()
    );
    assert!(d[d.len() - 1] < Duration::from_secs(1));
}

/// The issue's full-disk trial, for real: sled on a 4 MiB tmpfs. Writes fail, the store says
/// so (`/readyz` red, logins 503) while reads go on. sled keeps the error after the disk grew;
/// a restart recovers with every acknowledged write. Mounting needs root (CI runs as root);
/// elsewhere this fails, loudly.
#[test]
fn sled_on_a_full_disk_is_unwritable_until_restarted() {
    use samlgate::store::health::Monitored;
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts a tmpfs: run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_str().unwrap().to_string();
    let sh = |args: &[&str]| {
        let st = std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    };
    sh(&["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", &mnt]);
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .args(["-l", &self.0])
                .status();
        }
    }
    let unmount = Unmount(mnt.clone());
    let s = Monitored::new(Box::new(SledStore::open(&dir.path().join("db")).unwrap()));
    let mut rec = session("first", "u1", 0, i64::MAX);
    s.session_put(&rec, 1800).unwrap();
    s.flush().unwrap();
    rec.profile.display_name = "x".repeat(8192);
    let mut n = 0;
    while s.writable() {
        rec.id = format!("s{n}");
        let _ = s.session_put(&rec, 1800).and_then(|_| s.flush());
        n += 1;
        assert!(n < 100_000, "4 MiB never filled");
    }
    assert!(
        !s.writable(),
        "a failed write turns the store unwritable (after {n} sessions)"
    );
    assert!(s.session_get("first").unwrap().is_some(), "reads go on");
    assert!(s.readable());
    sh(&["mount", "-o", "remount,size=256m", &mnt]);
    // sled 0.34 keeps an I/O error for good (its "global error"): the same handle fails on
    // after the disk grew, so /readyz stays red; a restart (reopen) recovers.
    let again = s
        .replay_check_and_record("probe\0t\0x", i64::MAX, 0)
        .and_then(|_| s.flush());
    assert!(
        again.is_err() && !s.writable(),
        "sled's error is sticky: {again:?}"
    );
    drop(s);
    let sled = Sled(dir);
    let s = Monitored::new(sled.open_boxed());
    s.replay_check_and_record("probe\0t\0y", i64::MAX, 0)
        .unwrap();
    s.flush().unwrap();
    assert!(s.writable(), "writable after a restart on the grown disk");
    assert!(
        s.session_get("first").unwrap().is_some(),
        "acknowledged writes kept"
    );
    // Close the store, unmount, then remove the directory.
    drop(s);
    drop(unmount);
    drop(sled);
}

/// `[store] ca_file`: TLS to the database through rustls, verified against that CA only. A
/// private cluster that accepts TLS connections only (pg_hba `hostssl`), with a certificate
/// made here by the openssl CLI: the right CA connects, another CA is refused.
#[test]
fn pg_tls_with_ca_file_connects_and_refuses_a_wrong_ca() {
    use samlgate::store::{PgOptions, PgStore};
    let script = format!("{}/scripts/pg.sh", env!("CARGO_MANIFEST_DIR"));
    let dir = format!("/tmp/samlgate-pg-tls.{}", std::process::id());
    let run = |cmd: &str, args: &[&str]| -> String {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let url = run(&script, &["start", &dir]);
    struct Stop(String, String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0)
                .args(["stop", &self.1])
                .status();
        }
    }
    let _stop = Stop(script.clone(), dir.clone());
    let certs = tempfile::tempdir().unwrap();
    let p = |n: &str| certs.path().join(n).to_str().unwrap().to_string();
    for ca in ["ca", "other"] {
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &p(&format!("{ca}.key")),
                "-out",
                &p(&format!("{ca}.pem")),
            ],
        );
    }
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{dir}/server.key"),
            "-out",
            &p("server.csr"),
        ],
    );
    fs_write(&p("ext"), "subjectAltName=DNS:localhost\n");
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p("ext"),
            "-out",
            &format!("{dir}/server.crt"),
        ],
    );
    run("chmod", &["0600", &format!("{dir}/server.key")]);
    if unsafe { libc::geteuid() } == 0 {
        run(
            "chown",
            &[
                "nobody",
                &format!("{dir}/server.key"),
                &format!("{dir}/server.crt"),
            ],
        );
    }
    let tls_url = url.replace("@127.0.0.1:", "@localhost:");
    let opts = |ca: &str| PgOptions {
        ca_file: Some(p(ca).into()),
        ..PgOptions::new(&tls_url)
    };
    // With ca_file set, a server that offers no TLS is refused: no plain-text fallback.
    let plain = PgStore::connect_unchecked(&opts("ca.pem"))
        .unwrap()
        .migrate();
    assert!(plain.is_err(), "ca_file set, server without TLS: {plain:?}");
    let conf = format!("{dir}/data/postgresql.conf");
    let mut c = std::fs::read_to_string(&conf).unwrap();
    c.push_str(&format!(
        "ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n"
    ));
    fs_write(&conf, &c);
    let hba = format!("{dir}/data/pg_hba.conf");
    let h = std::fs::read_to_string(&hba)
        .unwrap()
        .replace("\nhost ", "\nhostssl ");
    fs_write(&hba, &h);
    run(&script, &["down", &dir]);
    run(&script, &["up", &dir]);
    // Plain text is refused by the server (hostssl only): TLS is really in use below.
    assert!(PgStore::connect_unchecked(&PgOptions::new(&tls_url))
        .unwrap()
        .migrate()
        .is_err());
    let s = PgStore::connect_unchecked(&opts("ca.pem")).unwrap();
    s.migrate().expect("TLS with the right CA");
    let s = PgStore::open(&opts("ca.pem")).unwrap();
    assert_eq!(
        s.replay_check_and_record("a\0i\0tls", 100, 0).unwrap(),
        ReplayCheck::Fresh
    );
    let wrong = PgStore::connect_unchecked(&opts("other.pem"))
        .unwrap()
        .migrate();
    assert!(
        wrong.is_err(),
        "a server certificate from another CA is refused"
    );
}

fn fs_write(path: &str, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A database restart kills every pooled connection at once. The store recovers on the next
/// call, not after one failure per dead connection (the outage would otherwise last as many
/// probe rounds as the pool had connections). Simulated with pg_terminate_backend on this
/// test's database only, so other tests on the shared cluster are untouched.
#[test]
fn pg_recovers_in_one_call_after_its_connections_were_killed() {
    let url = pgtest::fresh_db();
    let s = Arc::new(pgtest::open(&url));
    let dbname = url.rsplit('/').next().unwrap().to_string();
    let mut admin = postgres::Client::connect(pgtest::base_url(), postgres::NoTls).unwrap();
    let backends = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query NOT LIKE 'LISTEN%'",
                &[&dbname],
            )
            .unwrap()
            .get(0)
    };
    // Open several pooled connections: concurrent calls.
    let t = Instant::now();
    while backends(&mut admin) < 4 {
        assert!(t.elapsed() < Duration::from_secs(20), "pool never grew");
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for j in 0..30 {
                        s.replay_check_and_record(&format!("a\0i\0w{i}-{j}"), 10, 0)
                            .unwrap();
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    }
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            &[&dbname],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 4, "killed {killed}");
    std::thread::sleep(Duration::from_millis(200));
    // The first call may meet a dead connection; the next one works.
    let _ = s.replay_check_and_record("a\0i\0after-1", 100, 0);
    let second = s.replay_check_and_record("a\0i\0after-2", 100, 0);
    assert_eq!(
        second.ok(),
        Some(ReplayCheck::Fresh),
        "the call after the first failure recovers"
    );
}
