#![no_main]
//! `cargo +nightly fuzz run snmp_ber`: see ingot_fuzz_targets::snmp_ber.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::snmp_ber(data));
