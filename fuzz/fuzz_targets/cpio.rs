#![no_main]
//! `cargo +nightly fuzz run cpio`: see ingot_fuzz_targets::cpio.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::cpio(data));
