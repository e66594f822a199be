#![no_main]
//! `cargo +nightly fuzz run ipmi`: see ingot_fuzz_targets::ipmi.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::ipmi(data));
