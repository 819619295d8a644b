//! Issue 16's structural checks, runnable by anyone with `cargo test --test architecture`:
//! the module import graph of src/ has no cycles, no non-test function in src/ is over
//! 100 lines, and every reason code is spelled in src/reason.rs only (and listed in the
//! README). Each runs the script a person would run by hand (scripts/import-graph.py,
//! scripts/fn-length.py, scripts/reason-codes.py), so the test and the command line cannot
//! disagree; each failure prints the script's listing.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The scripts need only the standard library: the system python3 is enough.
fn run_script(script: &str, args: &[&str]) -> (bool, String) {
    let python = std::env::var("SAMLGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(Path::new(ROOT).join("scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} scripts/{script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Issue 16's bar: the module import graph of src/ has no cycles.
#[test]
fn src_has_no_import_cycles() {
    let (ok, text) = run_script("import-graph.py", &[]);
    assert!(
        ok,
        "import cycles in src/ (scripts/import-graph.py):\n{text}"
    );
}

/// Issue 16's bar was 100 lines; the brief's is ~80, which src/ now meets: hold it there.
#[test]
fn no_function_over_80_lines() {
    let (ok, text) = run_script("fn-length.py", &["--max", "80"]);
    assert!(
        ok,
        "functions over 80 lines in src/ (scripts/fn-length.py):\n{text}"
    );
}

/// Issue 16's bar: `Reason` is the only place a reason code is spelled; the README lists them.
#[test]
fn reason_codes_are_spelled_only_in_reason_rs() {
    let (ok, text) = run_script("reason-codes.py", &[]);
    assert!(
        ok,
        "reason codes spelled outside src/reason.rs, or missing from README.md (scripts/reason-codes.py):\n{text}"
    );
}

/// The reason check can fail: a copied code in a tiny tree is found, a test module's copy and
/// a comment are not, and a code missing from the README is named.
#[test]
fn the_reason_check_finds_a_planted_copy() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(d.path().join("scripts")).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(
        Path::new(ROOT).join("scripts/reason-codes.py"),
        d.path().join("scripts/reason-codes.py"),
    )
    .unwrap();
    std::fs::write(
        src.join("reason.rs"),
        "reasons! {\n    Replay = \"replay\", FORBIDDEN, Login;\n    Busy = \"busy\", SERVICE_UNAVAILABLE, Login;\n}\n",
    )
    .unwrap();
    std::fs::write(d.path().join("README.md"), "Reason codes: `replay`.\n").unwrap();
    let clean = "// \"busy\" in a comment\npub fn f() -> &'static str { \"replayed\" }\n\n#[cfg(test)]\nmod tests {\n    const X: &str = \"busy\";\n}\n";
    std::fs::write(src.join("a.rs"), clean).unwrap();
    let run = || {
        let out = Command::new("python3")
            .arg(d.path().join("scripts/reason-codes.py"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, text) = run();
    assert!(
        !ok && text.contains("README.md does not list `busy`"),
        "{text}"
    );
    assert!(!text.contains("src/a.rs"), "{text}");
    std::fs::write(d.path().join("README.md"), "`replay`, `busy`\n").unwrap();
    assert!(run().0, "{}", run().1);
    std::fs::write(
        src.join("a.rs"),
        format!("{clean}pub fn g() -> &'static str {{\n    \"busy\"\n}}\n"),
    )
    .unwrap();
    let (ok, text) = run();
    assert!(
        !ok && text.contains("src/a.rs:9: \"busy\" is Reason::Busy"),
        "{text}"
    );
}

/// The checks themselves can fail: a cycle and a long function planted in a copy of a tiny
/// tree are found (so a green run above means something).
#[test]
fn the_checks_find_a_planted_cycle_and_a_long_function() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(d.path().join("scripts")).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    for s in ["import-graph.py", "fn-length.py"] {
        std::fs::copy(
            Path::new(ROOT).join("scripts").join(s),
            d.path().join("scripts").join(s),
        )
        .unwrap();
    }
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::g;\npub fn f() { g() }\n").unwrap();
    let long_body = "    let _ = 1;\n".repeat(101);
    std::fs::write(
        src.join("b.rs"),
        format!("pub fn g() {{\n    crate::a::f();\n{long_body}}}\n\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn t() {{\n{long_body}    }}\n}}\n"),
    )
    .unwrap();
    let run = |script: &str, args: &[&str]| {
        let out = Command::new("python3")
            .arg(d.path().join("scripts").join(script))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, text) = run("import-graph.py", &[]);
    assert!(!ok && text.contains("cycle: a, b"), "{text}");
    let (ok, text) = run("fn-length.py", &["--max", "80"]);
    assert!(
        !ok && text.contains("too long: g at src/b.rs:1: 104 lines")
            && !text.contains("too long: t "),
        "{text}"
    );
    // Without the cycle and the long body both pass.
    std::fs::write(src.join("b.rs"), "pub fn g() {}\n").unwrap();
    assert!(run("import-graph.py", &[]).0);
    assert!(run("fn-length.py", &["--max", "80"]).0);
}
