//! The PostgreSQL login commit inlines its values as SQL literals (`escape_literal`, bytea as
//! hex) in one simple-protocol string. These tests attack that on a real PostgreSQL: every
//! value an attacker can influence (keys, JSON documents, session ids, audit details) is an
//! adversarial string, under both settings of `standard_conforming_strings`, and must come
//! back byte for byte with no statement of its own run; and a commit string that fails half
//! way must leave its pooled connection usable and outside any transaction.

mod pgtest;

use samlgate::identity::Profile;
use samlgate::store::{Commit, PgOptions, PgStore, SessionRecord, Store, StoreError, Table};

/// Strings that would end a literal, start a comment or a second statement, or change under
/// a case or width mapping, if any of them escaped its quoting.
fn adversarial() -> Vec<String> {
    let mut v: Vec<String> = [
        "'",
        "''",
        "\\",
        "\\'",
        "'\\",
        "\\\\'",
        "x'); UPDATE store_generation SET n = 777777; --",
        "x\\'); UPDATE store_generation SET n = 777777; --",
        "E'\\x27'); UPDATE store_generation SET n = 777777; --",
        "$$; UPDATE store_generation SET n = 777777; $$",
        "$q$ ' $q$; UPDATE store_generation SET n = 777777; --",
        "'; COMMIT; UPDATE store_generation SET n = 777777; BEGIN; SELECT '",
        "*/ UPDATE store_generation SET n = 777777; /*",
        "-- ; \n UPDATE store_generation SET n = 777777;",
        "\"; DROP TABLE users; --",
        "' || (SELECT pg_sleep(3))::text || '",
        "U&'\\0027'",
        "\u{a5}\u{20a9}\u{ff07}\u{ff3c}\u{2019}\u{2bc}",
        "ソ表能十\u{5341}\\'",
        "İı Straße ǅ ﬃ ΣΑΣ",
        "\u{202e}'\u{200b}\u{feff}\u{2028}",
        "\u{1}\u{1f}\u{7f}\r\n\t\u{85}",
        "👩‍⚕️病院'\\",
        "e\u{301}'a\u{308}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Long: a literal of quotes and backslashes 40 000 characters long (a value, not a key:
    // an index entry has its own size limit).
    v.push("'\\".repeat(20_000));
    v
}

fn store(url: &str, pool: u32) -> PgStore {
    let mut o = PgOptions::new(url);
    o.pool_size = pool;
    PgStore::open(&o).unwrap()
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

fn session(id: &str, s: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        profile: Profile {
            account_id: s.into(),
            category: s.into(),
            facility_code: s.into(),
            facility_name: s.into(),
            display_name: s.into(),
            email: s.into(),
        },
        local_user_id: s.into(),
        name_id: s.into(),
        name_id_format: Some(s.into()),
        session_index: Some(s.into()),
        created: 1,
        last_seen: 1,
        expires: 10_000,
        auth_method: String::new(),
    }
}

/// A key no longer than an index entry allows.
fn key(s: &str) -> String {
    s.chars().take(500).collect()
}

/// One login commit where every attacker-influenced value is `s`: the guard's keys, the
/// written keys and documents, the session, the sessions it ends, the audit detail.
fn hostile_commit(st: &PgStore, i: usize, s: &str) -> Commit {
    let k = format!("{i}{}", key(s));
    let contact = [b"F\0".as_slice(), k.as_bytes()].concat();
    let rows = st.account(&k, Some(&contact)).unwrap();
    let doc = serde_json::json!({"id": k, "gmis_id": k, "name": s}).to_string();
    let audit = format!(
        "{{\"seq\":0,\"detail\":{}}}",
        serde_json::to_string(s).unwrap()
    );
    Commit {
        expect: rows.expectations(),
        writes: vec![
            (Table::Users, k.clone().into_bytes(), Some(doc.into_bytes())),
            // Raw text, not JSON: the value column takes any UTF-8.
            (
                Table::UserByGmis,
                k.clone().into_bytes(),
                Some(s.as_bytes().to_vec()),
            ),
            (Table::UserByContact, contact, Some(s.as_bytes().to_vec())),
        ],
        session: Some((session(&format!("s{k}"), s), 3600)),
        end_sessions: vec![format!("old{k}"), "x'y\\z".into()],
        audit: vec![audit.into_bytes()],
    }
}

fn generation_n(url: &str) -> i64 {
    admin(url)
        .query_one("SELECT n FROM store_generation", &[])
        .unwrap()
        .get(0)
}

fn round_trip(url: &str) {
    let st = store(url, 1);
    let gen0 = generation_n(url);
    let n = adversarial().len();
    for (i, s) in adversarial().iter().enumerate() {
        let k = format!("{i}{}", key(s));
        st.session_put(&session(&format!("old{k}"), "x"), 3600)
            .unwrap();
        let c = hostile_commit(&st, i, s);
        let t = std::time::Instant::now();
        assert!(st.commit(&c).unwrap(), "commit {i} {s:?}");
        assert!(t.elapsed().as_secs() < 3, "a value ran pg_sleep: {s:?}");
        assert_eq!(
            st.get(Table::Users, k.as_bytes()).unwrap(),
            Some(c.writes[0].2.clone().unwrap())
        );
        assert_eq!(
            st.get(Table::UserByGmis, k.as_bytes()).unwrap().as_deref(),
            Some(s.as_bytes())
        );
        assert_eq!(
            st.get(Table::UserByContact, &c.writes[2].1)
                .unwrap()
                .as_deref(),
            Some(s.as_bytes())
        );
        let got = st.session_get(&format!("s{k}")).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&c.session.as_ref().unwrap().0).unwrap(),
            "session of {s:?}"
        );
        assert!(st.session_get(&format!("old{k}")).unwrap().is_none());
        let last = st.scan(Table::Audit, b"", true, 1).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&last[0].1).unwrap();
        assert_eq!(line["detail"].as_str(), Some(s.as_str()));
        // The guard saw what was written: the same snapshot again is refused.
        let mut again = hostile_commit(&st, i, s);
        again.expect = c.expect.clone();
        assert!(!st.commit(&again).unwrap(), "stale guard of {s:?}");
    }
    // Exactly the rows written, and no statement of a value's ran.
    let mut a = admin(url);
    for (table, want) in [
        ("users", n),
        ("user_links", n),
        ("user_contacts", n),
        ("sessions", n),
        ("audit", n),
    ] {
        let got: i64 = a
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(got, want as i64, "rows in {table}");
    }
    let gen = generation_n(url);
    assert!(gen < 777777 && gen > gen0, "generation {gen0} -> {gen}");
}

#[test]
fn hostile_values_round_trip() {
    round_trip(&pgtest::fresh_db());
}

/// The same with `standard_conforming_strings = off`, where a backslash in '...' escapes,
/// on a database whose default client encoding is SJIS (a trail byte can be 0x5C there):
/// the client's own `client_encoding=UTF8` must win, as `escape_literal` assumes UTF-8.
#[test]
fn hostile_values_round_trip_without_standard_strings() {
    let url = pgtest::fresh_db();
    let db = url.rsplit('/').next().unwrap().to_string();
    admin(&url)
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET standard_conforming_strings = off; \
             ALTER DATABASE {db} SET client_encoding = 'SJIS'"
        ))
        .unwrap();
    let on: String = admin(&url)
        .query_one("SHOW standard_conforming_strings", &[])
        .unwrap()
        .get(0);
    assert_eq!(on, "off");
    round_trip(&url);
}

/// A NUL cannot be sent in a query string: the commit is refused before anything runs.
#[test]
fn nul_is_refused_before_the_database() {
    let url = pgtest::fresh_db();
    let st = store(&url, 1);
    let mut c = hostile_commit(&st, 0, "a");
    c.end_sessions.push("a\0b".into());
    assert!(matches!(st.commit(&c), Err(StoreError::Corrupt(_))));
    c.end_sessions.pop();
    c.session.as_mut().unwrap().0.id = "s\0".into();
    assert!(matches!(st.commit(&c), Err(StoreError::Corrupt(_))));
    assert!(st.get(Table::Users, b"0a").unwrap().is_none());
}

/// Connections of the store (application_name samlgate) inside a transaction.
fn open_transactions(url: &str) -> i64 {
    admin(url)
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'samlgate' \
             AND datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// A commit string that fails after BEGIN (a session document jsonb refuses: `\u0000` from a
/// NUL in an attribute) is an error, writes nothing, and leaves the one pooled connection
/// outside any transaction, with every statement the store prepared on it still usable.
#[test]
fn failed_commit_string_leaves_the_connection_clean() {
    let url = pgtest::fresh_db();
    let st = store(&url, 1);
    // Plan the snapshot (and a replay) on the connection first.
    st.account("GM1", Some(b"F\0m")).unwrap();
    let good = hostile_commit(&st, 0, "ok");
    assert!(st.commit(&good).unwrap());

    let mut bad = hostile_commit(&st, 1, "bad");
    bad.session.as_mut().unwrap().0.profile.display_name = "a\u{0}b".into();
    let r = st.commit(&bad);
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    assert!(st.get(Table::Users, b"1bad").unwrap().is_none());
    assert!(st.session_get("s1bad").unwrap().is_none());
    assert_eq!(open_transactions(&url), 0, "left in a transaction");

    // The same connection (pool of 1) serves the next login: snapshot, replay, commit.
    st.account("GM1", Some(b"F\0m"))
        .expect("snapshot after a failed commit");
    let fresh = st
        .replay_and_account("a\0idp\0id-1", 5000, 1, "GM1", None)
        .expect("replay after a failed commit");
    assert!(fresh.is_some());
    let next = hostile_commit(&st, 2, "next");
    assert!(st.commit(&next).expect("commit after a failed commit"));
    assert!(st.session_get("s2next").unwrap().is_some());
    assert_eq!(open_transactions(&url), 0);
}

/// A commit that fails while waiting for its row locks (lock_timeout) is the same: an error,
/// nothing written, the connection clean for the next caller.
#[test]
fn lock_timeout_leaves_the_connection_clean() {
    let url = pgtest::fresh_db();
    let st = store(&url, 1);
    st.account("GM1", None).unwrap();
    let c = hostile_commit(&st, 0, "locked");
    // Hold every advisory lock the commit will ask for, in another session.
    let mut holder = admin(&url);
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("SET LOCAL lock_timeout = 0").unwrap();
    for (t, k, _) in &c.writes {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id(*t, k)])
            .unwrap();
    }
    let r = st.commit(&c);
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    tx.rollback().unwrap();
    assert!(st.get(Table::Users, b"0locked").unwrap().is_none());
    assert_eq!(open_transactions(&url), 0, "left in a transaction");
    st.account("GM1", None)
        .expect("snapshot after a lock timeout");
    assert!(st.commit(&c).expect("the same commit, locks free"));
}

/// As src/store/pg/tables.rs `lock_id` (kept in step by the test above: a wrong id would not
/// block the commit, and it would not time out).
fn lock_id(t: Table, k: &[u8]) -> i64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(t.name().as_bytes());
    h.update([0]);
    h.update(k);
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().unwrap())
}

/// A commit whose guard and writes succeed but whose COMMIT fails (a deferred constraint
/// trigger the test adds to the database, raising at COMMIT for a marked user row) is an
/// error, never an acknowledged write: the guard's row arrived first, COMMIT did not succeed.
#[test]
fn failure_at_commit_is_not_acknowledged() {
    let url = pgtest::fresh_db();
    admin(&url)
        .batch_execute(
            "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.doc LIKE '%refuse-at-commit%' THEN \
             RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER refuse_marked AFTER INSERT OR UPDATE ON users \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_marked()",
        )
        .unwrap();
    let st = store(&url, 1);
    let bad = hostile_commit(&st, 0, "refuse-at-commit");
    let r = st.commit(&bad);
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    assert!(st
        .get(Table::Users, b"0refuse-at-commit")
        .unwrap()
        .is_none());
    assert!(st.session_get("s0refuse-at-commit").unwrap().is_none());
    assert_eq!(open_transactions(&url), 0, "left in a transaction");
    let good = hostile_commit(&st, 1, "fine");
    assert!(st.commit(&good).expect("the next commit"));
    assert!(st.session_get("s1fine").unwrap().is_some());
}

/// Finding R2 (fixed: the commit binds its values): a failing statement's text is written to
/// the PostgreSQL server log (`log_min_error_statement = error`, the default); with values
/// inlined as literals that included a local login's password hash and TOTP key. Bound
/// parameters are not logged by default (`log_parameter_max_length_on_error = 0`).
#[test]
fn failed_commit_values_stay_out_of_the_server_log() {
    let cluster = pgtest::OwnCluster::start("r2log");
    let st = store(&cluster.url, 1);
    let mut bad = hostile_commit(&st, 0, "x");
    bad.writes.push((
        Table::Accounts,
        b"0x".to_vec(),
        Some(br#"{"password":"$argon2id$SECRET-HASH-R2","totp":"SECRET-TOTP-R2"}"#.to_vec()),
    ));
    bad.session.as_mut().unwrap().0.profile.display_name = "a\u{0}b".into();
    assert!(st.commit(&bad).is_err());
    drop(st);
    let log = std::fs::read_to_string(format!("{}/postgres.log", cluster.dir)).unwrap();
    assert!(log.contains("ERROR"), "the failure was logged");
    assert!(
        !log.contains("SECRET-HASH-R2") && !log.contains("SECRET-TOTP-R2"),
        "secrets in the server log"
    );
}
