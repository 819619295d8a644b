//! Fuzzing support for samlgate: the shared entry points (also replayed by
//! `tests/fuzz_regressions.rs`) and the fixtures they use. Targets: `fuzz/fuzz_targets/`.

pub mod differential;
pub mod harness;
