#![no_main]
//! See fuzz/src/harness.rs (`return_path`) for the entry point and its properties.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| samlgate_fuzz::harness::return_path(data));
