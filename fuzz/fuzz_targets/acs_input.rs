#![no_main]
//! See fuzz/src/harness.rs (`acs_input`) for the entry point and its properties.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| samlgate_fuzz::harness::acs_input(data));
