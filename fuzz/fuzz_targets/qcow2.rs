#![no_main]
//! `cargo +nightly fuzz run qcow2`: see ingot_fuzz_targets::qcow2.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::qcow2(data));
