//! Replays the fuzzing corpora through the fuzz targets' own entry points
//! (`fuzz/src/harness.rs`, included here by path), on stable Rust and in a debug build:
//!
//! - `tests/fuzz_corpus/<target>/*`: inputs kept as regression tests (crashes found by
//!   `scripts/fuzz.sh`, minimised, and other inputs worth keeping);
//! - `fuzz/seeds/<target>/*`: the seed corpora made by `fuzz/make_seeds.py`.
//!
//! Every file must pass its target's property checks without a panic. A new crash found by
//! libFuzzer (`fuzz/artifacts/<target>/crash-*`) becomes a test by copying it to
//! `tests/fuzz_corpus/<target>/`. The libxml2 differential of the `prescan` target
//! (`fuzz/src/differential.rs`) runs only under libFuzzer. Takes a few seconds.
//!
//! Run: cargo test --test fuzz_regressions

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.') || n == "README.md")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs every corpus and seed file of `target`; panics once, listing every failing file.
fn replay(target: &str) {
    let f = harness::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {target} in fuzz/src/harness.rs"));
    let dirs = [
        Path::new(ROOT).join("tests/fuzz_corpus").join(target),
        Path::new(ROOT).join("fuzz/seeds").join(target),
    ];
    let mut n = 0;
    let mut failures = Vec::new();
    // Quiet the default hook for the duration; failures are reported below with their file.
    for dir in &dirs {
        for path in files(dir) {
            let data = std::fs::read(&path).expect("read corpus file");
            n += 1;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-string panic".into());
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    assert!(
        n > 0,
        "no corpus for {target}: expected files in {} or {}",
        dirs[0].display(),
        dirs[1].display()
    );
    assert!(
        failures.is_empty(),
        "{target}: {} of {n} input(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{target}: {n} input(s) replayed");
}

#[test]
fn acs_input_corpus() {
    replay("acs_input");
}

#[test]
fn idp_metadata_corpus() {
    replay("idp_metadata");
}

#[test]
fn session_token_corpus() {
    replay("session_token");
}

#[test]
fn return_path_corpus() {
    replay("return_path");
}

#[test]
fn slo_redirect_corpus() {
    replay("slo_redirect");
}

#[test]
fn prescan_corpus() {
    replay("prescan");
}

#[test]
fn decrypt_corpus() {
    replay("decrypt");
}

/// The harness is not vacuous: the valid seeds verify at the fixed instant (so the fuzzer
/// starts from accepted documents and the NameID oracle is exercised), the others are refused,
/// each for the reason its name says.
#[test]
fn acs_seeds_reach_the_accepting_path() {
    let dir = Path::new(ROOT).join("fuzz/seeds/acs_input");
    let mut problems = Vec::new();
    let mut accepted = 0;
    for path in files(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let want_ok =
            name.starts_with("ok-") || name.starts_with("form-") || name.starts_with("enc-");
        match harness::acs_outcome(&data) {
            Some(Ok(v)) if want_ok => {
                accepted += 1;
                if !harness::KNOWN_NAME_IDS.contains(&v.name_id.as_str()) {
                    problems.push(format!("{name}: accepted unknown NameID {:?}", v.name_id));
                }
            }
            // Identity look-alikes outside the signed Assertion: reading only the signed one
            // (the harness's oracle checks which) or refusing are both right.
            Some(Ok(_)) if name.starts_with("attack-evil-") => {}
            Some(Ok(v)) => problems.push(format!("{name}: accepted ({:?})", v.name_id)),
            Some(Err(r)) if want_ok => {
                problems.push(format!("{name}: refused {:?}: {}", r.reason, r.detail))
            }
            None if want_ok => problems.push(format!("{name}: refused before verification")),
            _ => {}
        }
    }
    assert!(accepted >= 10, "only {accepted} seeds verified");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The slo seeds signed by the fixture IdP verify (the signature path is reached), and the
/// bomb is cut at the limit.
#[test]
fn slo_seeds_reach_the_verified_path() {
    use samlgate::saml::slo;
    let f = harness::fixture();
    let dir = Path::new(ROOT).join("fuzz/seeds/slo_redirect");
    for name in [
        "logout-request.txt",
        "logout-response.txt",
        "logout-request-sha512.txt",
    ] {
        let q = std::fs::read_to_string(dir.join(name)).unwrap();
        let xml = slo::verify_redirect(q.trim(), &f.idp, false)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .xml;
        assert!(slo::parse(&xml).is_ok(), "{name}: {xml}");
    }
    let bomb = std::fs::read(dir.join("deflate-bomb.bin")).unwrap();
    assert!(matches!(
        slo::inflate(&bomb),
        Err(slo::SloError::Malformed(_))
    ));
}

/// Triage helper, not a check: prints what the ACS path makes of each file in
/// $SAMLGATE_FUZZ_SHOW (a directory or a file).
/// `SAMLGATE_FUZZ_SHOW=fuzz/artifacts/acs_input cargo test --test fuzz_regressions show -- --ignored --nocapture`
#[test]
#[ignore]
fn show() {
    let Some(p) = std::env::var_os("SAMLGATE_FUZZ_SHOW") else {
        return;
    };
    let p = PathBuf::from(p);
    let list = if p.is_dir() { files(&p) } else { vec![p] };
    for path in list {
        let data = std::fs::read(&path).unwrap();
        let out = match harness::acs_outcome(&data) {
            None => "refused before verification".to_string(),
            Some(Ok(v)) => format!(
                "ACCEPTED name_id={:?} assertion={:?}",
                v.name_id, v.assertion_id
            ),
            Some(Err(r)) => format!("refused {:?}: {}", r.reason, r.detail),
        };
        let pre = std::str::from_utf8(&data)
            .map(|s| format!("{:?}", samlgate::saml::prescan::prescan(s).map(|_| "ok")))
            .unwrap_or_default();
        println!("{}: prescan {pre}; acs: {out}", path.display());
    }
}
