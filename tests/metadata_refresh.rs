//! `[idp] metadata_url` against a real HTTPS server on 127.0.0.1 (python http.server + ssl,
//! tests/support/metadata_server.py, its own test CA): rotation, trust pinning and
//! `samlgate idp trust`, signed metadata (signed by signxml, an independent signer), and every
//! failure keeping the old metadata (tampered, expired validUntil, oversized, slow, down) with
//! logins still working and the failure counted in /metrics; a restart while the server is
//! down starts from the last good copy. Fingerprints come from the openssl CLI.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct MdServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl MdServer {
    fn start(dir: &Path) -> MdServer {
        std::fs::create_dir_all(dir).unwrap();
        run_support(
            "metadata_server.py",
            &["pki".as_ref(), "--out".as_ref(), dir.as_os_str()],
        );
        let mut s = MdServer {
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new(python())
            .arg(Path::new(ROOT).join("tests/support/metadata_server.py"))
            .args(["serve", "--dir"])
            .arg(&self.dir)
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn metadata server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "metadata server did not start");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/md.xml", self.port)
    }

    fn serve(&self, xml: &Path) {
        std::fs::copy(xml, self.dir.join("md.xml")).unwrap();
    }

    fn set_delay(&self, secs: Option<f64>) {
        let p = self.dir.join("delay");
        match secs {
            Some(s) => std::fs::write(p, s.to_string()).unwrap(),
            None => {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl Drop for MdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `AA:BB:...` as `openssl x509 -fingerprint -sha256` prints it.
fn openssl_fingerprint(cert: &Path) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_uppercase()
}

/// IdP metadata listing these signing certificates (the independent test IdP writes it).
fn metadata(out: &Path, certs: &[&KeyPair]) -> PathBuf {
    let mut args: Vec<std::ffi::OsString> = vec!["metadata".into()];
    for k in certs {
        args.push("--cert".into());
        args.push(k.cert.clone().into_os_string());
    }
    args.extend([
        "--entity-id".into(),
        IDP_ENTITY.into(),
        "--out".into(),
        out.into(),
    ]);
    run_idp(&args);
    out.to_path_buf()
}

fn sign(input: &Path, out: &Path, signer: &KeyPair, extra: &[&str]) -> PathBuf {
    let key: [&std::ffi::OsStr; 4] = [
        "--key".as_ref(),
        signer.key.as_os_str(),
        "--cert".as_ref(),
        signer.cert.as_os_str(),
    ];
    md_tool("sign", input, out, &key, extra)
}

fn edit(input: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    md_tool("edit", input, out, &[], extra)
}

/// `metadata_server.py CMD --in INPUT --out OUT ARGS... EXTRA...`: the file it wrote.
fn md_tool(
    cmd: &str,
    input: &Path,
    out: &Path,
    args: &[&std::ffi::OsStr],
    extra: &[&str],
) -> PathBuf {
    let mut a: Vec<&std::ffi::OsStr> = vec![
        cmd.as_ref(),
        "--in".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    a.extend(args);
    a.extend(extra.iter().map(std::ffi::OsStr::new));
    run_support("metadata_server.py", &a);
    out.to_path_buf()
}

/// `[idp]` fetches from `srv` (trusting its test CA) with `idp_lines` added; returns once the
/// refresh at start has been counted.
fn fetch_from(gw: &mut Gateway, srv: &MdServer, idp_lines: &str) {
    reconfigure(
        gw,
        &format!(
            "metadata_url = \"{}\"\nmetadata_ca_file = \"mdsrv/ca.crt\"\n{idp_lines}",
            srv.url()
        ),
    );
    wait_first_refresh(gw);
}

/// Adds `idp_lines` to `[idp]` and an admin token (the CLI reaches a running sled gateway
/// through the admin API), then restarts the gateway on the new config.
fn reconfigure(gw: &mut Gateway, idp_lines: &str) {
    gw.stop(true);
    let cfg = std::fs::read_to_string(&gw.config).unwrap();
    let cfg = cfg.replacen("[idp]\n", &format!("[idp]\n{idp_lines}\n"), 1)
        + "\n[admin]\ntoken_file = \"admin.token\"\n";
    std::fs::write(&gw.config, cfg).unwrap();
    let tok = gw.dir.path().join("admin.token");
    std::fs::write(&tok, "metadata-refresh-test-token-0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    gw.restart();
}

fn login_with(gw: &Gateway, k: &KeyPair) -> Resp {
    let key = k.key.to_str().unwrap();
    let cert = k.cert.to_str().unwrap();
    gw.post_acs(&gw.make_response(&["--key", key, "--cert", cert]), None)
}

fn assert_login(gw: &Gateway, k: &KeyPair, what: &str) {
    let r = login_with(gw, k);
    assert!(
        (r.status == 302 || r.status == 303) && r.session_cookie().is_some(),
        "{what}: login should work: {}\nlog:\n{}",
        r.summary(),
        gw.log_tail(40)
    );
}

fn assert_refused(gw: &Gateway, k: &KeyPair, what: &str) {
    let r = login_with(gw, k);
    assert_eq!(
        r.reason(),
        Some("signature_invalid"),
        "{what}: login should be refused: {}",
        r.summary()
    );
}

/// `n` successful refreshes so far.
fn assert_successes(gw: &Gateway, n: f64) {
    assert_eq!(
        metric(gw, "samlgate_idp_metadata_refresh_success_total"),
        n,
        "{}",
        gw.log_tail(20)
    );
}

/// `n` refreshes failed for `reason` so far.
fn assert_failures(gw: &Gateway, reason: &str, n: f64) {
    assert_eq!(failures(gw, reason), n, "{}", gw.log_tail(10));
}

fn metric(gw: &Gateway, name: &str) -> f64 {
    metric_value(&gw.metrics(), name).unwrap_or(0.0)
}

fn failures(gw: &Gateway, reason: &str) -> f64 {
    metric(
        gw,
        &format!("samlgate_idp_metadata_refresh_failures_total{{reason=\"{reason}\"}}"),
    )
}

fn attempts(gw: &Gateway) -> f64 {
    metric(gw, "samlgate_idp_metadata_refresh_success_total")
        + metric(gw, "samlgate_idp_metadata_refresh_failures_total")
}

/// SIGHUP, then waits until one more refresh finished and its reload ran.
fn refresh_now(gw: &Gateway) {
    let before = attempts(gw);
    gw.sighup();
    wait_attempts_over(gw, before, "no refresh after SIGHUP");
}

/// Waits for the refresh the gateway runs at start to be counted.
fn wait_first_refresh(gw: &Gateway) {
    wait_attempts_over(gw, 0.0, "no refresh at start");
}

/// Waits (up to 30 s) until more than `before` refreshes were counted, then for the reload.
fn wait_attempts_over(gw: &Gateway, before: f64, what: &str) {
    wait_until(gw, 30, what, || attempts(gw) > before);
}

/// Waits up to `secs` for `done` (a refresh counted), then for the reload that follows it.
fn wait_until(gw: &Gateway, secs: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}; log:\n{}",
            gw.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reload after a refresh runs on a blocking thread; give it its moment.
    std::thread::sleep(Duration::from_millis(300));
}

fn samlgate(gw: &Gateway, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .expect("spawn samlgate")
}

/// Salesforce-shaped unsigned metadata: a listed new certificate is accepted; an unlisted one is
/// refused (old metadata kept, logins with the old key still work) until `samlgate idp trust`.
#[test]
fn unsigned_metadata_rotation_follows_the_pins_and_idp_trust() {
    let mut gw = Gateway::start();
    let d = gw.dir.path().to_path_buf();
    let (k0, k1, k2) = (
        gw.idp[0].clone(),
        keygen(&d.join("idp-k1"), "gmis-idp-2027.test"),
        keygen(&d.join("idp-k2"), "gmis-idp-unlisted.test"),
    );
    let srv = MdServer::start(&d.join("mdsrv"));
    srv.serve(&metadata(&d.join("m0.xml"), &[&k0]));
    let fp1 = openssl_fingerprint(&k1.cert);
    let fp2 = openssl_fingerprint(&k2.cert);
    fetch_from(
        &mut gw,
        &srv,
        &format!(
            "trusted_fingerprints = [\"{}\"]",
            fp1.replace(':', "").to_lowercase()
        ),
    );
    assert_successes(&gw, 1.0);
    assert_login(&gw, &k0, "k0 before rotation");

    // G-MIS switches to k1 (listed in trusted_fingerprints).
    srv.serve(&metadata(&d.join("m1.xml"), &[&k1]));
    refresh_now(&gw);
    assert_successes(&gw, 2.0);
    assert_login(&gw, &k1, "k1 after a listed rotation");
    assert_refused(&gw, &k0, "k0 after the switch to k1");

    // Then to k2, which nobody listed: refused, k1 keeps working.
    srv.serve(&metadata(&d.join("m2.xml"), &[&k2]));
    refresh_now(&gw);
    assert_failures(&gw, "idp_metadata_untrusted_cert", 1.0);
    let log = gw.log();
    assert!(
        log.contains("idp_metadata_untrusted_cert") && log.contains(&fp2),
        "{log}"
    );
    assert_login(&gw, &k1, "k1 while k2 is refused");
    assert_refused(&gw, &k2, "k2 before idp trust");
    let kept = std::fs::read_to_string(d.join("idp-metadata.xml")).unwrap();
    assert_eq!(
        kept,
        std::fs::read_to_string(d.join("m1.xml")).unwrap(),
        "kept copy changed"
    );

    // The operator checks fp2 with G-MIS and trusts it (through the running gateway's API).
    let o = samlgate(&gw, &["idp", "trust", &fp2, "--by", "test-operator"]);
    assert!(
        o.status.success(),
        "idp trust: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = samlgate(&gw, &["idp", "trust", "not-a-fingerprint", "--by", "x"]);
    assert!(
        !o.status.success(),
        "a malformed fingerprint must be refused"
    );
    refresh_now(&gw);
    assert_successes(&gw, 3.0);
    assert_login(&gw, &k2, "k2 after idp trust");
    let o = samlgate(&gw, &["audit", "tail", "--json"]);
    let audit = String::from_utf8_lossy(&o.stdout);
    assert!(
        audit.contains("idp.trust") && audit.contains(&fp2),
        "audit: {audit}"
    );
    let o = samlgate(&gw, &["idp", "trusted"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&fp2));

    // cacheDuration PT10S shortens the 60-minute refresh: the next change arrives by itself.
    let m3 = metadata(&d.join("m3.xml"), &[&k2, &k1]);
    srv.serve(&edit(
        &m3,
        &d.join("m3c.xml"),
        &["--cache-duration", "PT10S"],
    ));
    refresh_now(&gw);
    let done = metric(&gw, "samlgate_idp_metadata_refresh_success_total");
    let m4 = metadata(&d.join("m4.xml"), &[&k1]);
    srv.serve(&edit(
        &m4,
        &d.join("m4c.xml"),
        &["--cache-duration", "PT10S"],
    ));
    wait_until(&gw, 25, "no refresh within cacheDuration", || {
        metric(&gw, "samlgate_idp_metadata_refresh_success_total") > done
    });
    assert_refused(&gw, &k2, "k2 after the timed refresh dropped it");
    assert_login(&gw, &k1, "k1 after the timed refresh");
}

/// Signed metadata (signxml) against a pinned signing certificate, then every failure: each
/// keeps the old metadata, counts its reason, and logins with the current key keep working.
#[test]
fn signed_metadata_and_every_failure_keep_the_old_copy() {
    let mut gw = Gateway::start();
    let d = gw.dir.path().to_path_buf();
    let (k0, k1, k2) = (
        gw.idp[0].clone(),
        keygen(&d.join("idp-k1"), "gmis-idp-2027.test"),
        keygen(&d.join("idp-k2"), "attacker.test"),
    );
    let signer = keygen(&d.join("md-signer"), "gmis-metadata-signer.test");
    let other = keygen(&d.join("md-other"), "not-the-metadata-signer.test");
    let srv = MdServer::start(&d.join("mdsrv"));
    let m1 = metadata(&d.join("m1.xml"), &[&k1]);
    srv.serve(&sign(&m1, &d.join("m1s.xml"), &signer, &[]));
    fetch_from(
        &mut gw,
        &srv,
        &format!(
            "metadata_signing_cert = \"{}\"\nmetadata_timeout_seconds = 2\nmetadata_max_kib = 64",
            signer.cert.display()
        ),
    );
    assert_successes(&gw, 1.0);
    assert_login(&gw, &k1, "k1 from signed metadata");
    assert_refused(&gw, &k0, "k0 after signed rotation to k1");
    let kept = d.join("idp-metadata.xml");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    // 0640 at most (the umask may take the group bit too): nobody else may change it.
    assert_eq!(mode & 0o137, 0, "kept copy mode {mode:o}");
    let good = std::fs::read(&kept).unwrap();

    let m2 = metadata(&d.join("m2.xml"), &[&k2]);
    let cases: Vec<(&str, PathBuf)> = vec![
        // k1 replaced by k2 after signing: the digest no longer matches.
        ("idp_metadata_signature_invalid", {
            let s = std::fs::read_to_string(d.join("m1s.xml")).unwrap();
            let b1 = cert_body(&k1.cert);
            assert!(s.contains(&b1));
            let t = d.join("tampered.xml");
            std::fs::write(&t, s.replace(&b1, &cert_body(&k2.cert))).unwrap();
            t
        }),
        // Properly signed, but by a key that is not the pinned metadata signer.
        (
            "idp_metadata_signature_invalid",
            sign(&m2, &d.join("m2-other.xml"), &other, &[]),
        ),
        // Unsigned.
        ("idp_metadata_signature_invalid", m2.clone()),
        (
            "idp_metadata_expired",
            sign(
                &m2,
                &d.join("m2-exp.xml"),
                &signer,
                &["--valid-until", "2020-01-01T00:00:00Z"],
            ),
        ),
        (
            "idp_metadata_too_large",
            edit(
                &sign(&m2, &d.join("m2-big0.xml"), &signer, &[]),
                &d.join("m2-big.xml"),
                &["--pad", "70000"],
            ),
        ),
    ];
    for (reason, file) in &cases {
        srv.serve(file);
        let before = failures(&gw, reason);
        refresh_now(&gw);
        assert_eq!(
            failures(&gw, reason),
            before + 1.0,
            "{reason} ({}): {}",
            file.display(),
            gw.log_tail(10)
        );
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            good,
            "{reason}: kept copy changed"
        );
        assert_login(&gw, &k1, reason);
        assert_refused(&gw, &k2, reason);
    }

    // Slow server (5 s, timeout 2 s), then no server at all.
    srv.serve(&sign(&m2, &d.join("m2-ok.xml"), &signer, &[]));
    srv.set_delay(Some(5.0));
    let t = Instant::now();
    refresh_now(&gw);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "timeout not applied: {:?}",
        t.elapsed()
    );
    assert_failures(&gw, "idp_metadata_timeout", 1.0);
    assert_login(&gw, &k1, "slow server");
    srv.set_delay(None);
    let mut srv = srv;
    srv.stop();
    refresh_now(&gw);
    assert_failures(&gw, "idp_metadata_unreachable", 1.0);
    assert_login(&gw, &k1, "server down");
    let last_ok = metric(&gw, "samlgate_idp_metadata_last_success_timestamp_seconds");
    assert!(last_ok > 1.7e9, "last success gauge {last_ok}");

    // A restart while the server is down starts from the last good copy.
    gw.restart();
    wait_first_refresh(&gw);
    assert_failures(&gw, "idp_metadata_unreachable", 1.0);
    assert_login(&gw, &k1, "restart while the metadata server is down");
    assert_refused(&gw, &k0, "restart: k0 still gone");

    // Back up with the new signed metadata: taken on the next refresh.
    srv.spawn();
    refresh_now(&gw);
    assert_login(&gw, &k2, "k2 after the server came back");
}

/// The base64 body of a PEM certificate, on one line (as it sits in metadata).
fn cert_body(pem: &Path) -> String {
    std::fs::read_to_string(pem)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// The swap is invisible to logins: refreshes that replace the metadata (both certificates
/// listed, order flipped each time, so every fetch writes and reloads) while logins signed by
/// either key run back to back: none fails.
#[test]
fn logins_during_refreshes_never_fail() {
    let mut gw = Gateway::start();
    let d = gw.dir.path().to_path_buf();
    let (k0, k1) = (
        gw.idp[0].clone(),
        keygen(&d.join("idp-k1"), "gmis-idp-2027.test"),
    );
    let srv = MdServer::start(&d.join("mdsrv"));
    let a = metadata(&d.join("a.xml"), &[&k0, &k1]);
    let b = metadata(&d.join("b.xml"), &[&k1, &k0]);
    srv.serve(&a);
    let fp1 = openssl_fingerprint(&k1.cert);
    fetch_from(
        &mut gw,
        &srv,
        &format!("trusted_fingerprints = [\"{fp1}\"]"),
    );
    let cases: Vec<Vec<&str>> = (0..40)
        .map(|i| {
            let k = if i % 2 == 0 { &k0 } else { &k1 };
            vec![
                "--key",
                k.key.to_str().unwrap(),
                "--cert",
                k.cert.to_str().unwrap(),
            ]
        })
        .collect();
    let responses = gw.make_responses(&cases);
    let replaced_before = gw.log().matches("Replaced").count();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, bad) = std::thread::scope(|s| {
        let logins = s.spawn(|| {
            let (mut ok, mut bad) = (0, Vec::new());
            for r in &responses {
                let resp = gw.post_acs(r, None);
                if (resp.status == 302 || resp.status == 303) && resp.session_cookie().is_some() {
                    ok += 1;
                } else {
                    bad.push(resp.summary());
                }
                // Spread over several refreshes (each takes about half a second).
                std::thread::sleep(Duration::from_millis(150));
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            (ok, bad)
        });
        let mut flip = false;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            flip = !flip;
            srv.serve(if flip { &b } else { &a });
            refresh_now(&gw);
        }
        logins.join().unwrap()
    });
    let replaced = gw.log().matches("Replaced").count() - replaced_before;
    println!("{ok} logins during {replaced} metadata replacements");
    assert!(
        bad.is_empty(),
        "{} logins failed during refreshes: {bad:?}",
        bad.len()
    );
    assert_eq!(ok, 40);
    assert!(
        replaced >= 2,
        "only {replaced} replacements happened during the logins"
    );
}
