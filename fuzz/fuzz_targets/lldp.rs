#![no_main]
//! `cargo +nightly fuzz run lldp`: see ingot_fuzz_targets::lldp.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::lldp(data));
