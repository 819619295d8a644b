//! Two gateway instances on one real PostgreSQL (tests/pgtest), as behind a round-robin load
//! balancer: one public URL and SP entity, one SP key set, two processes on two ports.
//!   - a login on A gives a session B accepts (cookie MAC key shared through the store);
//!   - a response accepted on A is a replay on B; N concurrent posts across both: one session;
//!   - a logout on A ends the session on B within the contract (< 1 s, measured);
//!   - the database going away: 503 `store_unavailable` and /readyz red, then recovery when it
//!     is back, with no restart of samlgate; the very first login and /auth/verify of the
//!     outage are 503 too (not 500, not 401).

mod common;

use common::pgtest;

use std::fs;
use std::time::{Duration, Instant};

use common::Gateway;

/// Rewrites `gw`'s config to use `url` (PostgreSQL), on its own port, and with `like`'s public
/// URL, SP keys and IdP metadata when given (a second instance of the same gateway).
fn use_pg(gw: &mut Gateway, url: &str, like: Option<&Gateway>) {
    let cfg = fs::read_to_string(&gw.config).unwrap();
    let store_line = |l: &str| l == "path = \"store\"" || l.starts_with("url = \"postgres");
    let mut cfg: String = cfg
        .lines()
        .map(|l| {
            if store_line(l) {
                format!("url = \"{url}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    if let Some(a) = like {
        let a_cfg = fs::read_to_string(&a.config).unwrap();
        cfg = a_cfg
            .replace(
                &format!("listen = \"127.0.0.1:{}\"", a.port),
                &format!("listen = \"127.0.0.1:{}\"", gw.port),
            )
            .replace(
                "keys_dir = \"sp-keys\"",
                &format!("keys_dir = \"{}\"", a.dir.path().join("sp-keys").display()),
            )
            .replace(
                "metadata = \"idp-metadata.xml\"",
                &format!(
                    "metadata = \"{}\"",
                    a.dir.path().join("idp-metadata.xml").display()
                ),
            );
    }
    assert!(
        cfg.contains(&format!("url = \"{url}\"")),
        "config now names the database"
    );
    fs::write(&gw.config, cfg).unwrap();
    gw.restart();
}

/// Gateways A and B on one fresh database on `base` (a cluster URL).
fn pair_on(db_url: &str) -> (Gateway, Gateway) {
    let mut a = Gateway::start();
    use_pg(&mut a, db_url, None);
    let mut b = Gateway::start();
    use_pg(&mut b, db_url, Some(&a));
    (a, b)
}

fn login(gw: &Gateway, on: &Gateway, nameid: &str) -> String {
    let b64 = gw.make_response(&["--nameid", nameid]);
    let r = on.post_acs(&b64, None);
    r.session_cookie()
        .unwrap_or_else(|| panic!("login {nameid} on :{} refused: {}", on.port, r.summary()))
}

#[test]
fn a_login_on_a_is_a_session_on_b_and_replays_are_refused_across_both() {
    let (a, b) = pair_on(&pgtest::fresh_db());
    let cookie = login(&a, &a, "GM0000101");
    let r = b.verify(Some(&cookie));
    assert_eq!(r.status, 200, "B accepts A's session: {}", r.summary());
    // One response, accepted on A, is a replay on B.
    let b64 = a.make_response(&["--nameid", "GM0000102"]);
    assert!(a.post_acs(&b64, None).session_cookie().is_some());
    let r = b.post_acs(&b64, None);
    assert!(r.session_cookie().is_none(), "replay on B made a session");
    assert_eq!(r.reason(), Some("replay"), "{}", r.summary());
    // N concurrent posts of one fresh response across both instances: one session.
    let b64 = a.make_response(&["--nameid", "GM0000103"]);
    let sessions: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (gw, b64) = (if i % 2 == 0 { &a } else { &b }, &b64);
                s.spawn(move || gw.post_acs(b64, None).session_cookie().is_some() as usize)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        sessions, 1,
        "8 concurrent posts of one response gave {sessions} sessions"
    );
}

#[test]
fn a_logout_on_a_ends_the_session_on_b_within_a_second() {
    let (a, b) = pair_on(&pgtest::fresh_db());
    let cookie = login(&a, &a, "GM0000201");
    // B reads it once, so B's /auth/verify cache holds it.
    for _ in 0..3 {
        assert_eq!(b.verify(Some(&cookie)).status, 200);
    }
    let r = a.get("/logout", Some(&cookie));
    assert!(r.status < 400, "logout on A: {}", r.summary());
    let t = Instant::now();
    while b.verify(Some(&cookie)).status == 200 {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "B still accepts the session 1 s after the logout on A"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!("logout on A seen on B after {:?}", t.elapsed());
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

#[test]
fn a_database_outage_gives_503_and_readyz_red_then_recovers_without_restart() {
    let cluster = pgtest::OwnCluster::start("outage");
    let url = cluster.url.clone();
    let mut a = Gateway::start();
    use_pg(&mut a, &url, None);
    let cookie = login(&a, &a, "GM0000301");
    assert_eq!(a.verify(Some(&cookie)).status, 200);
    let b64 = a.make_response(&["--nameid", "GM0000302"]);

    cluster.down();
    let red = wait_for("/readyz red", Duration::from_secs(10), || {
        a.get("/readyz", None).status == 503
    });
    eprintln!("/readyz red {red:?} after the database stopped");
    // The session cache may answer from memory until the generation listener notices the
    // loss (the contract's bound, < 1 s); then /auth/verify asks the database and fails closed.
    let mut seen = Vec::new();
    let closed = wait_for("/auth/verify 503", Duration::from_secs(1), || {
        let s = a.verify(Some(&cookie)).status;
        seen.push(s);
        s == 503
    });
    assert!(
        seen.iter().all(|s| matches!(s, 200 | 503)),
        "/auth/verify while the database goes away: {seen:?}"
    );
    eprintln!("/auth/verify 503 {closed:?} after /readyz went red");
    let t = Instant::now();
    let v = a.verify(Some(&cookie));
    assert_eq!(v.status, 503, "/auth/verify fails closed: {}", v.summary());
    assert_eq!(v.reason(), Some("store_unavailable"));
    let r = a.post_acs(&b64, None);
    assert_eq!(r.status, 503, "a login fails closed: {}", r.summary());
    assert_eq!(r.reason(), Some("store_unavailable"));
    assert!(
        r.text().contains("一時的"),
        "a bilingual page: {}",
        r.text()
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "answers do not hang: {:?}",
        t.elapsed()
    );

    cluster.up();
    let green = wait_for("/readyz green again", Duration::from_secs(15), || {
        a.get("/readyz", None).status == 200
    });
    eprintln!("/readyz green {green:?} after the database came back");
    assert_eq!(
        a.verify(Some(&cookie)).status,
        200,
        "the session survived the outage"
    );
    let r = a.post_acs(&b64, None);
    assert!(
        r.session_cookie().is_some(),
        "logins work again: {}",
        r.summary()
    );
}

/// The first requests after the database stops, before the health flags know (store::health
/// flips them only on a failed call): a login in flight answers 503 `store_unavailable`, not
/// 500 `internal_error`, and /auth/verify with a valid cookie 503, never 401 (nginx would send
/// the user to the login page) and never 200 once the cache stops answering.
#[test]
fn the_first_requests_of_a_database_outage_answer_503_not_500_or_401() {
    let cluster = pgtest::OwnCluster::start("first");
    let mut a = Gateway::start();
    use_pg(&mut a, &cluster.url, None);
    let cookie = login(&a, &a, "GM0000601");
    let b64 = a.make_response(&["--nameid", "GM0000602"]);

    cluster.down();
    // Posted at once: the store's health probe (every 5 s) has most likely not failed yet,
    // so the login path itself meets the error.
    let r = a.post_acs(&b64, None);
    assert_eq!(r.status, 503, "a login in flight: {}", r.summary());
    assert_eq!(r.reason(), Some("store_unavailable"));
    // A failed write does not make /auth/verify refuse up front: its own read meets the error.
    let mut seen = Vec::new();
    wait_for(
        "/auth/verify stops answering 200",
        Duration::from_secs(2),
        || {
            let s = a.verify(Some(&cookie)).status;
            seen.push(s);
            s != 200
        },
    );
    let v = a.verify(Some(&cookie));
    assert_eq!(
        seen.last(),
        Some(&503),
        "/auth/verify during the outage: {seen:?}"
    );
    assert_eq!(v.status, 503, "{}", v.summary());
    assert_eq!(v.reason(), Some("store_unavailable"));
}

/// The secretariat blocks an account from the CLI (a third client of the database, as from
/// any node) while both instances serve it: neither accepts the session 1 s later.
#[test]
fn a_block_from_the_cli_ends_the_session_on_both_within_a_second() {
    let (a, b) = pair_on(&pgtest::fresh_db());
    let cookie = login(&a, &a, "GM0000401");
    for gw in [&a, &b] {
        assert_eq!(gw.verify(Some(&cookie)).status, 200);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_samlgate"))
        .args(["consent", "--config"])
        .arg(&a.config)
        .args([
            "block",
            "GM0000401",
            "--by",
            "test",
            "--note",
            "two instances",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "consent block: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    for gw in [&a, &b] {
        while gw.verify(Some(&cookie)).status == 200 {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                ":{} still accepts a blocked account's session after 1 s",
                gw.port
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    eprintln!("block from the CLI seen on A and B after {:?}", t.elapsed());
}

/// `kill -9` of A while logins stream into it: every login A acknowledged (a session cookie
/// sent) is a session on B, and B serves throughout.
#[test]
fn kill_9_of_a_mid_traffic_loses_no_acknowledged_login() {
    let (mut a, b) = pair_on(&pgtest::fresh_db());
    let ids: Vec<String> = (0..60).map(|i| format!("GM00005{i:02}")).collect();
    let cases: Vec<Vec<&str>> = ids.iter().map(|id| vec!["--nameid", id.as_str()]).collect();
    let responses = a.make_responses(&cases);
    let acs = a.acs_url();
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let poster = s.spawn(|| {
            let agent = ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(10))
                .build();
            for b64 in &responses {
                let body = format!("SAMLResponse={}", common::form_encode(b64));
                let r = agent
                    .post(&acs)
                    .set("Content-Type", "application/x-www-form-urlencoded")
                    .send_bytes(body.as_bytes());
                let Ok(r) = r else { continue };
                let cookie = r
                    .all("set-cookie")
                    .into_iter()
                    .filter_map(|c| c.split(';').next())
                    .find(|c| c.starts_with("samlgate=") && c.len() > "samlgate=".len())
                    .map(str::to_string);
                if let Some(c) = cookie {
                    acked.lock().unwrap().push(c);
                }
            }
        });
        while acked.lock().unwrap().len() < 10 {
            std::thread::sleep(Duration::from_millis(5));
        }
        a.crash_restart();
        poster.join().unwrap();
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 10, "logins acknowledged: {}", acked.len());
    for c in &acked {
        let r = b.verify(Some(c));
        assert_eq!(
            r.status,
            200,
            "an acknowledged login is a session on B: {}",
            r.summary()
        );
    }
    eprintln!(
        "{} of {} logins acknowledged around the kill -9; all are sessions on B",
        acked.len(),
        responses.len()
    );
}
