//! IdP operations against the real binary: `samlgate idp status`, certificate expiry in
//! `/metrics`, `/readyz`, `check-config` and `keys status`, and the Prometheus alert rules in
//! deploy/prometheus (with the real promtool; this test FAILS without it, it never skips).
//!
//! Certificates come from the independent test IdP (tests/support/saml_idp.py keygen --days),
//! fingerprints from the openssl CLI.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn samlgate(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("spawn samlgate")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// SHA-256 fingerprint as `openssl x509 -fingerprint` prints it (AA:BB:...).
fn openssl_fingerprint(cert: &Path) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    let s = String::from_utf8_lossy(&o.stdout);
    s.trim().rsplit('=').next().unwrap().to_uppercase()
}

fn cert_days(dir: &Path, days: i64) -> KeyPair {
    run_idp(&[
        "keygen".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
        "--cn".as_ref(),
        "gmis-idp-rotating.test".as_ref(),
        "--days".as_ref(),
        days.to_string().as_ref() as &std::ffi::OsStr,
    ]);
    KeyPair {
        key: dir.join("idp.key"),
        cert: dir.join("idp.crt"),
    }
}

fn write_metadata(gw: &Gateway, certs: &[&Path]) {
    let mut args: Vec<std::ffi::OsString> = vec!["metadata".into()];
    for c in certs {
        args.push("--cert".into());
        args.push(c.as_os_str().to_owned());
    }
    args.extend([
        "--entity-id".into(),
        IDP_ENTITY.into(),
        "--out".into(),
        gw.dir.path().join("idp-metadata.xml").into_os_string(),
    ]);
    run_idp(&args);
    gw.sighup();
}

/// `samlgate_idp_cert_expiry_seconds` samples: fingerprint -> seconds.
fn idp_gauge(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("samlgate_idp_cert_expiry_seconds{"))
        .filter_map(|l| {
            let i = l.find("fingerprint=\"")? + 13;
            let e = l[i..].find('"')? + i;
            let v = l[l.rfind(' ')? + 1..].parse().ok()?;
            Some((l[i..e].to_string(), v))
        })
        .collect()
}

fn wait_metrics(gw: &Gateway, what: &str, ok: impl Fn(&[(String, f64)]) -> bool) {
    let t0 = Instant::now();
    loop {
        let m = gw.metrics();
        if ok(&idp_gauge(&m)) {
            return;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            panic!(
                "timed out waiting for {what}; /metrics:\n{m}\nlog:\n{}",
                gw.log_tail(3000)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idp_cert_expiry_everywhere() {
    let gw = Gateway::start();
    let mut f = Failures::new();
    let day = 86400.0;
    let fp0 = openssl_fingerprint(&gw.idp[0].cert);

    // 1. A 10-year certificate: all quiet.
    let o = samlgate(&["idp", "status", "--json"], &gw.config);
    let j = Json::parse(String::from_utf8_lossy(&o.stdout).trim()).expect("idp status --json");
    f.check("status ok exits 0", o.status.success(), || text(&o));
    let certs: Vec<Json> = match j.get("certificates") {
        Some(Json::Arr(v)) => v.clone(),
        _ => vec![],
    };
    f.check("status lists 1 cert", certs.len() == 1, || text(&o));
    f.check(
        "status fingerprint = openssl's",
        certs.first().and_then(|c| c.str("fingerprint_sha256")) == Some(fp0.as_str()),
        || format!("{fp0} vs {}", text(&o)),
    );
    let g = idp_gauge(&gw.metrics());
    f.check(
        "gauge: one cert, ~3652 days",
        g.len() == 1 && g[0].0 == fp0 && g[0].1 > 3650.0 * day,
        || format!("{g:?}"),
    );
    let r = gw.get("/readyz", None);
    f.check(
        "readyz quiet",
        r.status == 200 && !r.text().contains("warning"),
        || r.summary(),
    );
    let o = samlgate(&["keys", "status"], &gw.config);
    f.check("keys status ok exits 0", o.status.success(), || text(&o));

    // 2. The next certificate ends in 10 days: warnings, still ready.
    let soon = cert_days(&gw.dir.path().join("soon"), 10);
    let fp_soon = openssl_fingerprint(&soon.cert);
    write_metadata(&gw, &[&gw.idp[0].cert, &soon.cert]);
    wait_metrics(&gw, "two IdP certs in /metrics", |g| g.len() == 2);
    let g = idp_gauge(&gw.metrics());
    let v = g
        .iter()
        .find(|(fp, _)| *fp == fp_soon)
        .map(|x| x.1)
        .unwrap_or(0.0);
    f.check(
        "gauge of the 10-day cert",
        v > 9.9 * day && v <= 10.0 * day,
        || format!("{g:?}"),
    );
    let o = samlgate(&["idp", "status"], &gw.config);
    let out = text(&o);
    f.check(
        "status exits 1 on a 10-day cert",
        o.status.code() == Some(1),
        || out.clone(),
    );
    f.check(
        "status names it",
        out.contains("EXPIRING") && out.contains(&fp_soon),
        || out.clone(),
    );
    let r = gw.get("/readyz", None);
    f.check(
        "readyz 200 with the warning",
        r.status == 200
            && r.text().contains("warning: IdP signing certificate")
            && r.text().contains(&fp_soon),
        || r.summary(),
    );
    let o = samlgate(&["check-config"], &gw.config);
    f.check(
        "check-config warns, exits 0",
        o.status.success()
            && text(&o).contains(&format!("warning: IdP signing certificate {fp_soon}")),
        || text(&o),
    );

    // 3. Only an expired certificate left: red.
    let gone = cert_days(&gw.dir.path().join("gone"), -1);
    write_metadata(&gw, &[&gone.cert]);
    let fp_gone = openssl_fingerprint(&gone.cert);
    wait_metrics(&gw, "the expired cert alone", |g| {
        g.len() == 1 && g[0].0 == fp_gone && g[0].1 < 0.0
    });
    let r = gw.get("/readyz", None);
    f.check(
        "readyz 503 when every IdP cert expired",
        r.status == 503 && r.text().contains("expired: every IdP signing certificate"),
        || r.summary(),
    );
    let o = samlgate(&["check-config"], &gw.config);
    f.check(
        "check-config exits 1 when expired",
        o.status.code() == Some(1),
        || text(&o),
    );
    let o = samlgate(&["idp", "status", "--json"], &gw.config);
    f.check(
        "status --json level expired",
        o.status.code() == Some(1)
            && String::from_utf8_lossy(&o.stdout).contains("\"level\":\"expired\""),
        || text(&o),
    );

    // 4. An SP key ending in 10 days: `keys status` exits 1.
    let o = samlgate(&["keys", "new", "--days", "10"], &gw.config);
    f.check("keys new --days 10", o.status.success(), || text(&o));
    let o = samlgate(&["keys", "status"], &gw.config);
    f.check(
        "keys status exits 1 with a 10-day key",
        o.status.code() == Some(1) && text(&o).contains("SP key"),
        || text(&o),
    );
    f.finish(&gw);
}

fn promtool(args: &[&str]) -> Output {
    Command::new(std::env::var("SAMLGATE_PROMTOOL").unwrap_or_else(|_| "promtool".into()))
        .args(args)
        .current_dir(Path::new(ROOT).join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool not found ({e}); this test needs it and does not skip.\n  \
                 fix: apt-get install prometheus (scripts/install-deps.sh), or SAMLGATE_PROMTOOL=/path"
            )
        })
}

#[test]
fn alert_rules_pass_promtool() {
    let o = promtool(&["check", "rules", "samlgate-alerts.yml"]);
    assert!(o.status.success(), "promtool check rules: {}", text(&o));
    // The unit test file fires the rules on series shaped like our /metrics.
    let o = promtool(&["test", "rules", "samlgate-alerts.test.yml"]);
    assert!(o.status.success(), "promtool test rules: {}", text(&o));
    // The rule file names the metric the gateway exports.
    let rules =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/samlgate-alerts.yml"))
            .unwrap();
    assert!(rules.contains("samlgate_idp_cert_expiry_seconds"));
}
