//! The `ipmitool` power interface, on the native IPMI client of the
//! `ingot-ipmi` crate (RMCP+ and 1.5 sessions, SOL; no `ipmitool`
//! processes). One UDP session per BMC is opened on first use and reused;
//! requests to one BMC are serialised and spaced by a minimum interval
//! (BMCs crash when polled too often).
//!
//! Cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) is used unless
//! `ipmi_cipher_suite` asks for 17. There is no cipher suite discovery (Get
//! Channel Cipher Suites), so a node without the key costs no probe time.
//! BMCs without RMCP+ are reached with IPMI 1.5 sessions when
//! `ipmi_protocol_version` is "1.5". Serial-over-LAN ([`sol`]) runs in its
//! own RMCP+ session (the console endpoint, `crate::console`).
//!
//! The crate's items the coordinator uses are re-exported here.

pub mod driver;

pub use driver::IpmiPower;
pub use ingot_ipmi::{
    BmcConfig, BootDevice, ChassisControl, CipherSuite, DeviceId, IpmiClient, IpmiError,
    IpmiVersion, Timing, privilege, sol,
};
