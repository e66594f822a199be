#![no_main]
//! `cargo +nightly fuzz run partition_table`: see ingot_fuzz_targets::partition_table.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::partition_table(data));
