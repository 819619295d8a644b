//! Crash safety (issue #7 item 3): login traffic and acknowledged writes while the gateway is
//! killed with SIGKILL at random points, then restarted on the same store.
//!
//! Each round runs three writers against `samlgate serve` (consent required, admin API on):
//! - logins: pre-generated, distinct, valid responses for several users through the real
//!   pages (ACS -> /consent -> 同意する / 同意しない), then a second login of the same user;
//! - the admin API (`POST /admin/v1/op`), continuously until the kill: `application_add`
//!   (approved or pending), `consent_block`, `application_approve`;
//! - the key set: `samlgate keys new` and `samlgate keys promote` (files in `keys_dir`).
//!
//! After a random 50–800 ms the server gets SIGKILL and is started again on the same store.
//! Then everything that was acknowledged before the kill must be there: the consent decisions
//! and applications (admin API `consent_list`, `application_list`), the sessions (verify 200),
//! the key set (`keys_dir/keyset.json` equals the state after the last `keys` command that
//! exited 0, and `samlgate keys list` loads); every response the server answered is refused as
//! a `replay` when posted again; `/readyz` is 200. Some rounds also SIGKILL a `keys new`
//! halfway: `keyset.json` must then be the old state or the old state plus one `next` key.
//!
//! SAMLGATE_CRASH_SEED=N replays a run's timing (the seed is printed). Run:
//!   scripts/install-deps.sh && cargo test --test crash -- --nocapture

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::{form_encode, Gateway, Json, Resp, BIN, ROOT};

const V1: &str = "2023-04";
const ADMIN_TOKEN: &str = "0c7a5e9f3b2d4168a7e6c5d4b3a29180f7e6d5c4b3a2918070f6e5d4c3b2a190";
const ROUNDS: usize = 5;
const USERS_PER_ROUND: usize = 8;
/// Rounds in which a `keys new` is itself killed halfway.
const KILL_KEYS_CLI_IN: [usize; 2] = [1, 3];

// ------------------------------------------------------------------------------------------
// set-up

fn set_section(cfg: &str, name: &str, body: &str) -> String {
    let header = format!("[{name}]");
    let mut out = String::new();
    let mut skipping = false;
    let mut found = false;
    for line in cfg.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') && !t.contains('=') {
            skipping = t == header;
            if skipping {
                found = true;
                out.push_str(&format!("{header}\n{body}\n"));
                continue;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("\n{header}\n{body}\n"));
    }
    out
}

/// `[consent] required = true` and the admin API, as tests/consent.rs does.
fn gateway() -> Gateway {
    let mut gw = Gateway::start();
    let cfg = fs::read_to_string(&gw.config).expect("read config");
    let cfg = set_section(
        &cfg,
        "consent",
        &format!("required = true\nversion = \"{V1}\""),
    );
    fs::write(
        gw.dir.path().join("admin.token"),
        format!("{ADMIN_TOKEN}\n"),
    )
    .unwrap();
    // The gateway refuses a token file others can read.
    set_mode(&gw.dir.path().join("admin.token"), 0o600);
    let cfg = set_section(&cfg, "admin", "token_file = \"admin.token\"");
    fs::write(&gw.config, cfg).expect("write config");
    gw.restart();
    gw
}

/// Many signed responses from one python process (the test IdP imported as a module), in
/// order; each case is the `--nameid` value.
fn make_responses(gw: &Gateway, nameids: &[String]) -> Vec<String> {
    let script = r#"
import io, json, sys
sys.path.insert(0, sys.argv[1])
import saml_idp
for line in sys.stdin:
    argv = json.loads(line)
    sys.argv = ["saml_idp.py"] + argv
    buf, real = io.StringIO(), sys.stdout
    sys.stdout = buf
    try:
        saml_idp.main()
    finally:
        sys.stdout = real
    print(buf.getvalue().strip(), flush=True)
"#;
    let mut child = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(Path::new(ROOT).join("tests/support"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    {
        let mut stdin = child.stdin.take().unwrap();
        for id in nameids {
            let argv = [
                "response",
                "--sp-entity",
                &gw.sp_entity(),
                "--acs",
                &gw.acs_url(),
                "--key",
                gw.idp[0].key.to_str().unwrap(),
                "--cert",
                gw.idp[0].cert.to_str().unwrap(),
                "--nameid",
                id,
            ];
            let line = format!(
                "[{}]\n",
                argv.iter()
                    .map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            stdin.write_all(line.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "batch response generation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(v.len(), nameids.len(), "one response per case");
    v
}

// ------------------------------------------------------------------------------------------
// HTTP that survives the server dying (a transport error is Err, not a panic)

#[derive(Clone)]
struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(port: u16) -> Client {
        Client {
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let r = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = r.status();
        let mut names = r.headers_names();
        names.dedup();
        let mut hs = Vec::new();
        for name in names {
            for v in r.all(&name) {
                hs.push((name.to_ascii_lowercase(), v.to_string()));
            }
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).map_err(|e| e.to_string())?;
        Ok(Resp {
            status,
            headers: hs,
            body,
        })
    }

    fn post_acs(&self, b64: &str) -> Result<Resp, String> {
        let body = format!("SAMLResponse={}", form_encode(b64));
        self.request(
            "POST",
            "/saml/acs",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        )
    }

    fn admin(&self, body: &str) -> Result<Resp, String> {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.request(
            "POST",
            "/admin/v1/op",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            Some(body.as_bytes()),
        )
    }
}

fn pending_cookie(r: &Resp) -> Option<String> {
    r.headers_all("set-cookie").into_iter().find_map(|c| {
        let pair = c.trim().split(';').next()?.trim();
        let v = pair.strip_prefix("samlgate-consent=")?;
        (!v.is_empty()).then(|| pair.to_string())
    })
}

fn csrf_of(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf\"")?;
    let start = html[..i].rfind('<')?;
    let end = i + html[i..].find('>')?;
    let tag = &html[start..end];
    let v = tag.find("value=\"")? + 7;
    let e = tag[v..].find('"')?;
    Some(tag[v..v + e].to_string()).filter(|s| !s.is_empty())
}

// ------------------------------------------------------------------------------------------
// what was acknowledged

#[derive(Default)]
struct Acked {
    /// gmis_id -> "accepted" | "rejected" (the consent POST was answered) or
    /// "blocked_by_secretariat" (the admin API answered `consent_block`).
    consents: BTreeMap<String, &'static str>,
    /// gmis_id -> statuses it may have now: the acknowledged one first, then one whose
    /// request was in flight at the kill.
    applications: BTreeMap<String, Vec<&'static str>>,
    /// `samlgate=<token>` of every session the server created and answered.
    sessions: Vec<(String, String)>,
    /// Every response the ACS answered (it was recorded as used before the answer).
    consumed: Vec<(String, String)>,
    /// keyset.json (id -> state) after the last `keys` command that exited 0.
    keyset: BTreeMap<String, String>,
    /// Requests that got no answer (in flight at the kill, or sent while the server was down).
    interrupted: usize,
    /// Answers that are wrong whoever is killed when (checked at the end).
    anomalies: Vec<String>,
}

type Shared = Arc<Mutex<Acked>>;

fn keyset_of(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = fs::read_to_string(dir.join("keyset.json")).map_err(|e| e.to_string())?;
    let j = Json::parse(&text).map_err(|e| format!("keyset.json is not JSON ({e}): {text}"))?;
    let mut m = BTreeMap::new();
    match j.get("keys") {
        Some(Json::Arr(v)) => {
            for k in v {
                let (Some(id), Some(st)) = (k.str("id"), k.str("state")) else {
                    return Err(format!("keyset.json entry without id/state: {k:?}"));
                };
                m.insert(id.to_string(), st.to_string());
            }
        }
        _ => return Err(format!("keyset.json has no keys array: {text}")),
    }
    Ok(m)
}

fn samlgate(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("spawn samlgate CLI")
}

// ------------------------------------------------------------------------------------------
// the writers

fn interrupted(acked: &Shared) {
    acked.lock().unwrap().interrupted += 1;
}

/// Logins of this round's users: first login -> consent page -> decision, then a second login.
fn login_writer(c: &Client, users: &[(String, String, String)], stop: &AtomicBool, acked: &Shared) {
    for (i, (id, first, second)) in users.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let accept = i % 2 == 0;
        let Ok(r) = c.post_acs(first) else {
            return interrupted(acked);
        };
        if r.status != 303 || r.location() != Some("/consent") {
            acked.lock().unwrap().anomalies.push(format!(
                "{id}: first login: expected 303 to /consent: {}",
                r.summary()
            ));
            return;
        }
        acked
            .lock()
            .unwrap()
            .consumed
            .push((id.clone(), first.clone()));
        let Some(pending) = pending_cookie(&r) else {
            acked
                .lock()
                .unwrap()
                .anomalies
                .push(format!("{id}: no consent cookie"));
            return;
        };
        let Ok(page) = c.request("GET", "/consent", &[("Cookie", &pending)], None) else {
            return interrupted(acked);
        };
        let Some(csrf) = csrf_of(&page.text()) else {
            // A pending login need not survive a restart; before one it must render.
            acked.lock().unwrap().anomalies.push(format!(
                "{id}: consent page without csrf: {}",
                page.summary()
            ));
            return;
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A reject is the confirmed one (同意しない first shows a confirmation page that records
        // nothing; tests/consent.rs covers that step): the block is what must survive kill -9.
        let decision = if accept { "accept" } else { "reject_confirmed" };
        let form = format!("csrf={}&decision={decision}", form_encode(&csrf));
        let Ok(r) = c.request(
            "POST",
            "/consent",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &pending),
            ],
            Some(form.as_bytes()),
        ) else {
            return interrupted(acked);
        };
        {
            let mut a = acked.lock().unwrap();
            match (accept, r.status, r.session_cookie()) {
                (true, 303, Some(cookie)) => {
                    a.consents.insert(id.clone(), "accepted");
                    a.sessions.push((id.clone(), cookie));
                }
                (false, 403, None) if r.reason() == Some("blocked_consent_rejected") => {
                    a.consents.insert(id.clone(), "rejected");
                }
                _ => {
                    a.anomalies
                        .push(format!("{id}: consent {decision}: {}", r.summary()));
                    return;
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(r) = c.post_acs(second) else {
            return interrupted(acked);
        };
        let mut a = acked.lock().unwrap();
        match (accept, r.status, r.session_cookie()) {
            (true, 303, Some(cookie)) => {
                a.consumed.push((id.clone(), second.clone()));
                a.sessions.push((id.clone(), cookie));
            }
            (false, 403, None) if r.reason() == Some("blocked_consent_rejected") => {
                a.consumed.push((id.clone(), second.clone()));
            }
            _ => a
                .anomalies
                .push(format!("{id}: second login: {}", r.summary())),
        }
    }
}

/// The admin API until the kill: `application_add` (approved or pending), `consent_block`, and
/// `application_approve` of the pending ones.
fn admin_writer(c: &Client, round: usize, stop: &AtomicBool, acked: &Shared) {
    let mut pending: Vec<String> = Vec::new();
    for j in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (body, id, ok_state): (String, String, &'static str) = match j % 4 {
            0 | 1 => {
                let id = format!("GM8{round:02}{j:04}");
                let approve = j % 4 == 0;
                (
                    format!(
                        r#"{{"op":"application_add","gmis_id":"{id}","link_to":null,"note":"crash","by":"t","approve":{approve}}}"#
                    ),
                    id,
                    if approve { "approved" } else { "pending" },
                )
            }
            2 => match pending.pop() {
                Some(id) => {
                    // In flight from here: either state may be found after a kill.
                    acked
                        .lock()
                        .unwrap()
                        .applications
                        .get_mut(&id)
                        .unwrap()
                        .push("approved");
                    (
                        format!(r#"{{"op":"application_approve","gmis_id":"{id}","by":"t"}}"#),
                        id,
                        "approved",
                    )
                }
                None => continue,
            },
            _ => {
                let id = format!("GM9{round:02}{j:04}");
                (
                    format!(r#"{{"op":"consent_block","gmis_id":"{id}","by":"t","note":"crash"}}"#),
                    id,
                    "blocked_by_secretariat",
                )
            }
        };
        let Ok(r) = c.admin(&body) else {
            return interrupted(acked);
        };
        let mut a = acked.lock().unwrap();
        if r.status != 200 {
            a.anomalies.push(format!("{body}: {}", r.summary()));
            return;
        }
        if ok_state == "blocked_by_secretariat" {
            a.consents.insert(id, ok_state);
        } else {
            a.applications.insert(id.clone(), vec![ok_state]);
            if ok_state == "pending" {
                pending.push(id);
            }
        }
    }
}

/// `keys new`, then `keys promote` of the new key; the state after each success is recorded.
fn keys_writer(config: &Path, keys_dir: &Path, stop: &AtomicBool, acked: &Shared) {
    if stop.load(Ordering::SeqCst) {
        return;
    }
    let before = keyset_of(keys_dir).unwrap_or_default();
    let out = samlgate(config, &["keys", "new"]);
    if !out.status.success() {
        acked.lock().unwrap().anomalies.push(format!(
            "keys new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let after = keyset_of(keys_dir).unwrap_or_default();
    acked.lock().unwrap().keyset = after.clone();
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let [id] = new.as_slice() else {
        acked.lock().unwrap().anomalies.push(format!(
            "keys new: not one new key: {before:?} -> {after:?}"
        ));
        return;
    };
    if stop.load(Ordering::SeqCst) {
        return;
    }
    let out = samlgate(config, &["keys", "promote", id]);
    if out.status.success() {
        acked.lock().unwrap().keyset = keyset_of(keys_dir).unwrap_or_default();
    } else {
        acked.lock().unwrap().anomalies.push(format!(
            "keys promote {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

// ------------------------------------------------------------------------------------------
// the checks after a restart

fn check_after_restart(
    gw: &Gateway,
    c: &Client,
    acked: &Acked,
    replay_from: usize,
    round: &str,
) -> Vec<String> {
    let mut p = Vec::new();
    match c.request("GET", "/readyz", &[], None) {
        Ok(r) if r.status == 200 => {}
        other => p.push(format!(
            "readyz after restart: {:?}",
            other.map(|r| r.summary())
        )),
    }

    // consents
    match c
        .admin(r#"{"op":"consent_list"}"#)
        .map(|r| Json::parse(&r.text()))
    {
        Ok(Ok(Json::Arr(list))) => {
            for (id, want) in &acked.consents {
                let got = list
                    .iter()
                    .find(|x| x.str("gmis_id") == Some(id))
                    .and_then(|x| x.str("decision"));
                if got != Some(*want) {
                    p.push(format!("consent of {id}: acknowledged {want}, now {got:?}"));
                }
            }
        }
        other => p.push(format!("consent_list: {other:?}")),
    }

    // applications
    match c
        .admin(r#"{"op":"application_list"}"#)
        .map(|r| Json::parse(&r.text()))
    {
        Ok(Ok(Json::Arr(list))) => {
            for (id, may) in &acked.applications {
                let got = list
                    .iter()
                    .find(|x| x.str("gmis_id") == Some(id))
                    .and_then(|x| x.str("status"));
                if !got.is_some_and(|g| may.contains(&g)) {
                    p.push(format!(
                        "application of {id}: acknowledged {may:?}, now {got:?}"
                    ));
                }
            }
        }
        other => p.push(format!("application_list: {other:?}")),
    }

    // sessions
    for (id, cookie) in &acked.sessions {
        match c.request("GET", "/auth/verify", &[("Cookie", cookie)], None) {
            Ok(r) if r.status == 200 => {}
            other => p.push(format!(
                "session of {id} acknowledged before the kill: verify {:?}",
                other.map(|r| r.summary())
            )),
        }
    }

    // replays
    for (id, b64) in &acked.consumed[replay_from..] {
        match c.post_acs(b64) {
            Ok(r) if (400..500).contains(&r.status) && r.reason() == Some("replay") => {
                if r.session_cookie().is_some() {
                    p.push(format!("replay of {id}'s response set a session cookie"));
                }
            }
            other => p.push(format!(
                "a response of {id} answered before the kill was accepted again after restart \
                 (want 4xx replay): {:?}",
                other.map(|r| r.summary())
            )),
        }
    }

    // key set
    let keys_dir = gw.dir.path().join("sp-keys");
    match keyset_of(&keys_dir) {
        Ok(k) if k == acked.keyset => {}
        Ok(k) => p.push(format!(
            "keyset.json {k:?} != state after the last acknowledged keys command {:?}",
            acked.keyset
        )),
        Err(e) => p.push(format!("keyset.json: {e}")),
    }
    let out = samlgate(&gw.config, &["keys", "list", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout).lines().count();
    if !out.status.success() || listed != acked.keyset.len() {
        p.push(format!(
            "`samlgate keys list` ({} lines for {} keys): {}{}",
            listed,
            acked.keyset.len(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if gw.log().contains("panicked") {
        p.push("the server log shows a panic".into());
    }
    p.into_iter().map(|x| format!("[{round}] {x}")).collect()
}

/// SIGKILL a `keys new` after `delay`: keyset.json is then the old state, or the old state
/// plus one `next` key, never anything else; `keys list` loads.
fn kill_keys_new(gw: &Gateway, delay: Duration, acked: &mut Acked) -> Vec<String> {
    let keys_dir = gw.dir.path().join("sp-keys");
    let before = acked.keyset.clone();
    let mut child = Command::new(BIN)
        .args(["keys", "new", "--config"])
        .arg(&gw.config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keys new");
    std::thread::sleep(delay);
    let finished = child.try_wait().ok().flatten().is_some();
    eprintln!(
        "keys new killed after {delay:?} ({})",
        if finished {
            "it had already finished"
        } else {
            "while running"
        }
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut p = Vec::new();
    match keyset_of(&keys_dir) {
        Ok(after) => {
            let added: Vec<_> = after
                .iter()
                .filter(|(k, _)| !before.contains_key(*k))
                .collect();
            let kept = before.iter().all(|(k, v)| after.get(k) == Some(v));
            let ok = kept
                && (added.is_empty()
                    || (added.len() == 1
                        && added[0].1 == "next"
                        && after.len() == before.len() + 1));
            if !ok {
                p.push(format!(
                    "keys new killed after {delay:?}: keyset.json {before:?} -> {after:?}"
                ));
            }
            if finished && added.is_empty() {
                p.push("keys new exited before the kill but added no key".into());
            }
            acked.keyset = after;
        }
        Err(e) => p.push(format!("keys new killed after {delay:?}: keyset.json: {e}")),
    }
    let out = samlgate(&gw.config, &["keys", "list"]);
    if !out.status.success() {
        p.push(format!(
            "keys list after a killed keys new: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    p
}

// ------------------------------------------------------------------------------------------

#[test]
fn acknowledged_writes_survive_kill_9() {
    let t0 = Instant::now();
    let seed: u64 = std::env::var("SAMLGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (SAMLGATE_CRASH_SEED={seed} to repeat the timing)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut gw = gateway();
    let keys_dir: PathBuf = gw.dir.path().join("sp-keys");
    let config = gw.config.clone();

    // Two responses per user: the first login (consent) and a second one.
    let mut names = Vec::new();
    for r in 0..ROUNDS {
        for i in 0..USERS_PER_ROUND {
            let id = format!("GM7{r:02}{i:04}");
            names.push(id.clone());
            names.push(id);
        }
    }
    let rs = make_responses(&gw, &names);
    eprintln!("{} responses made in {:?}", rs.len(), t0.elapsed());

    let acked: Shared = Arc::new(Mutex::new(Acked {
        keyset: keyset_of(&keys_dir).expect("initial keyset.json"),
        ..Acked::default()
    }));
    let mut problems: Vec<String> = Vec::new();

    for round in 0..ROUNDS {
        let users: Vec<(String, String, String)> = (0..USERS_PER_ROUND)
            .map(|i| {
                let k = (round * USERS_PER_ROUND + i) * 2;
                (names[k].clone(), rs[k].clone(), rs[k + 1].clone())
            })
            .collect();
        let replay_from = acked.lock().unwrap().consumed.len();
        let delay = Duration::from_millis(rng.gen_range(50..=800));
        let stop = AtomicBool::new(false);
        let client = Client::new(gw.port);
        std::thread::scope(|s| {
            s.spawn(|| login_writer(&client, &users, &stop, &acked));
            s.spawn(|| admin_writer(&client, round, &stop, &acked));
            s.spawn(|| keys_writer(&config, &keys_dir, &stop, &acked));
            std::thread::sleep(delay);
            stop.store(true, Ordering::SeqCst);
            gw.crash_restart(); // SIGKILL, then start on the same store (waits for /readyz)
        });
        let a = acked.lock().unwrap();
        eprintln!(
            "round {round}: killed after {delay:?}; acknowledged so far: {} consents, {} applications, \
             {} sessions, {} responses, {} keys; {} requests unanswered so far",
            a.consents.len(),
            a.applications.len(),
            a.sessions.len(),
            a.consumed.len(),
            a.keyset.len(),
            a.interrupted
        );
        problems.extend(check_after_restart(
            &gw,
            &Client::new(gw.port),
            &a,
            replay_from,
            &format!("round {round}"),
        ));
        drop(a);
        if KILL_KEYS_CLI_IN.contains(&round) {
            let d = Duration::from_millis(rng.gen_range(10..=400));
            let mut a = acked.lock().unwrap();
            problems.extend(kill_keys_new(&gw, d, &mut a));
        }
    }

    // Once more, everything from every round, after one more crash.
    gw.crash_restart();
    let a = acked.lock().unwrap();
    problems.extend(check_after_restart(
        &gw,
        &Client::new(gw.port),
        &a,
        0,
        "final",
    ));
    problems.extend(a.anomalies.iter().cloned());
    assert!(
        !a.consents.is_empty() && !a.consumed.is_empty() && !a.applications.is_empty(),
        "the rounds acknowledged too little to test anything: {} consents, {} responses, {} applications",
        a.consents.len(),
        a.consumed.len(),
        a.applications.len()
    );
    eprintln!(
        "crash test: {} rounds in {:?}; {} consents, {} applications, {} sessions, {} replays refused, {} keys",
        ROUNDS,
        t0.elapsed(),
        a.consents.len(),
        a.applications.len(),
        a.sessions.len(),
        a.consumed.len(),
        a.keyset.len()
    );
    if !problems.is_empty() {
        panic!(
            "{} problem(s) (seed {seed}):\n{}\n--- server log tail ---\n{}",
            problems.len(),
            problems.join("\n"),
            gw.log_tail(4000)
        );
    }
}

// ------------------------------------------------------------------------------------------
// issue #12 item 13: the store and the private keys are the service's only

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path under `p` that group or others can access.
fn exposed(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mode = mode_of(p);
    if mode & 0o077 != 0 {
        out.push(format!("{} {mode:03o}", p.display()));
    }
    if p.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            out.extend(exposed(&e.unwrap().path()));
        }
    }
    out
}

/// `samlgate serve` (a second one; it must stop before it touches the store) and
/// `samlgate check-config` both refuse, naming the fix.
fn expect_refused_start(gw: &Gateway, fix: &str) {
    for cmd in ["check-config", "serve"] {
        let out = samlgate(&gw.config, &[cmd]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(fix),
            "`samlgate {cmd}` did not refuse with `{fix}`: {} {err}",
            out.status
        );
    }
}

#[test]
fn the_store_and_private_keys_are_private() {
    let gw = Gateway::start();
    let store = gw.dir.path().join("store");
    let keys = gw.dir.path().join("sp-keys");
    // On PostgreSQL (SAMLGATE_TEST_STORE=pg) there is no store directory; the keys still count.
    let sled = std::env::var("SAMLGATE_TEST_STORE").as_deref() != Ok("pg");
    if sled {
        assert_eq!(mode_of(&store), 0o700, "store directory");
        let bad = exposed(&store);
        assert!(bad.is_empty(), "store paths others can read: {bad:?}");
    }
    let key_files: Vec<PathBuf> = fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    assert!(!key_files.is_empty());
    for k in &key_files {
        assert_eq!(mode_of(k), 0o600, "{}", k.display());
    }
    let ok = samlgate(&gw.config, &["check-config"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    if sled {
        set_mode(&store, 0o755);
        expect_refused_start(&gw, &format!("fix: chmod -R go-rwx {}", store.display()));
        set_mode(&store, 0o700);
    }

    set_mode(&key_files[0], 0o640);
    expect_refused_start(&gw, &format!("fix: chmod 600 {}", key_files[0].display()));
    set_mode(&key_files[0], 0o600);
    let ok = samlgate(&gw.config, &["check-config"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
