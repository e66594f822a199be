#![no_main]
//! `cargo +nightly fuzz run wipe_signatures`: see ingot_fuzz_targets::wipe_signatures.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::wipe_signatures(data));
