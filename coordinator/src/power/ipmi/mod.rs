//! A native async IPMI 2.0 (RMCP+) client and the `ipmitool` power
//! interface built on it. No `ipmitool` processes: one UDP session per BMC
//! is opened on first use and reused; requests to one BMC are serialised and
//! spaced by a minimum interval (BMCs crash when polled too often).
//!
//! Cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) is used unless
//! `ipmi_cipher_suite` asks for 17. There is no cipher suite discovery (Get
//! Channel Cipher Suites), so a node without the key costs no probe time.
//! BMCs without RMCP+ are reached with IPMI 1.5 sessions ([`v15`]) when
//! `ipmi_protocol_version` is "1.5". Serial-over-LAN ([`sol`]) runs in its
//! own RMCP+ session.

pub mod client;
pub mod crypto;
pub mod driver;
pub mod packet;
pub mod session;
pub mod sol;
#[cfg(test)]
mod tests;
pub mod v15;

use std::time::Duration;

pub use client::{BootDevice, ChassisControl, DeviceId, IpmiClient};
pub use driver::IpmiPower;
pub use session::CipherSuite;

/// Privilege levels (`ipmi_priv_level`).
pub mod privilege {
    /// CALLBACK
    pub const CALLBACK: u8 = 1;
    /// USER
    pub const USER: u8 = 2;
    /// OPERATOR
    pub const OPERATOR: u8 = 3;
    /// ADMINISTRATOR
    pub const ADMINISTRATOR: u8 = 4;
}

/// The session protocol (`ipmi_protocol_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpmiVersion {
    /// IPMI 2.0, RMCP+ sessions (the default).
    #[default]
    V20,
    /// IPMI 1.5 sessions (no encryption; MD5, straight password or no AuthCode).
    V15,
}

/// Where and how to reach one BMC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BmcConfig {
    /// Address or host name.
    pub host: String,
    /// UDP port (623).
    pub port: u16,
    /// User name (may be empty).
    pub username: String,
    /// Password.
    pub password: String,
    /// BMC key K_G; the password is used when unset.
    pub kg: Option<Vec<u8>>,
    /// Cipher suite.
    pub suite: CipherSuite,
    /// Requested privilege level (see [`privilege`]).
    pub privilege: u8,
    /// Session protocol.
    pub version: IpmiVersion,
}

/// Timeouts, retries and pacing.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wait for the first answer to a request; doubled per retry up to 4x.
    pub timeout: Duration,
    /// Retransmissions after the first attempt.
    pub retries: u32,
    /// Pause before the first retransmission; doubled per retry.
    pub backoff: Duration,
    /// Minimum spacing of requests to one BMC.
    pub min_interval: Duration,
    /// Idle time after which a session is assumed expired and reopened.
    pub session_idle: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1000),
            retries: 3,
            backoff: Duration::from_millis(200),
            min_interval: Duration::from_millis(100),
            session_idle: Duration::from_secs(30),
        }
    }
}

/// IPMI client errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IpmiError {
    /// No answer after all retries.
    #[error("no answer from the BMC (timed out)")]
    Timeout,
    /// Socket or name resolution failure.
    #[error("network error: {0}")]
    Io(String),
    /// Malformed or unexpected messages.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Authentication failed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Session setup refused with an RMCP+ status code.
    #[error("{step} failed with RMCP+ status code {code:#04x}")]
    Rakp {
        /// Which message.
        step: &'static str,
        /// RMCP+ status code.
        code: u8,
    },
    /// A command completed with a non-zero completion code.
    #[error("{cmd} failed with completion code {code:#04x}")]
    Completion {
        /// Command name.
        cmd: &'static str,
        /// Completion code.
        code: u8,
    },
}
