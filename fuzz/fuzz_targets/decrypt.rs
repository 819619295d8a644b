#![no_main]
//! See fuzz/src/harness.rs (`decrypt`) for the entry point and its properties.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| samlgate_fuzz::harness::decrypt(data));
