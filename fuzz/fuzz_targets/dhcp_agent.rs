#![no_main]
//! `cargo +nightly fuzz run dhcp_agent`: see ingot_fuzz_targets::dhcp_agent.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingot_fuzz_targets::dhcp_agent(data));
