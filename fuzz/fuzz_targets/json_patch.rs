#![no_main]
//! `cargo +nightly fuzz run json_patch`: see ingot_fuzz_targets::json_patch.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::json_patch(data));
