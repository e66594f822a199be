#![no_main]
//! `cargo +nightly fuzz run dhcp_coordinator`: see ingot_fuzz_targets::dhcp_coordinator.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::dhcp_coordinator(data));
