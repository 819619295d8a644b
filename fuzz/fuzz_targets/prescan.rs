#![no_main]
//! `prescan` (fuzz/src/harness.rs) plus the libxml2 differential (fuzz/src/differential.rs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    samlgate_fuzz::harness::prescan(data);
    samlgate_fuzz::differential::prescan_vs_libxml2(data);
});
