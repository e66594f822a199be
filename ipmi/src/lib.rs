//! IPMI for Ingot, in three layers chosen with cargo features:
//!
//! - Always: the IPMI message codec ([`message`]: LAN request and response
//!   messages, checksums, network functions, completion codes) and the
//!   command data of the chassis and LAN commands Ingot sends
//!   ([`chassis`], [`message::lan`]). No crypto, no I/O: the agent uses it
//!   for its in-band `/dev/ipmi0` queries.
//! - `session`: RMCP+ (IPMI 2.0) and IPMI 1.5 packets ([`packet`],
//!   [`v15`]), RAKP and session crypto ([`crypto`]), the session state
//!   machine ([`session`]) and the Serial-over-LAN codec ([`sol`]). This
//!   core is sans-I/O: the state machine says which datagram to send and
//!   takes the datagrams received; the socket, timers and retries belong to
//!   the caller. The simulated BMC fleet uses the same code from the BMC side.
//! - `client` (default): the tokio side. [`udp`] is the UDP request/retry
//!   helper (also used by the coordinator's SNMP client), [`client`] runs
//!   sessions over sockets with a per-BMC session pool, and
//!   [`sol::SolConsole`] pumps a SOL console.
//!
//! Cipher suites 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and 17
//! (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128) are spoken; IPMI 1.5
//! sessions with MD5, straight password or no AuthCode.

pub mod chassis;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "session")]
pub mod crypto;
mod error;
pub mod message;
#[cfg(feature = "session")]
pub mod packet;
#[cfg(feature = "session")]
pub mod session;
#[cfg(feature = "session")]
pub mod sol;
#[cfg(all(test, feature = "session"))]
mod tests;
#[cfg(feature = "client")]
pub mod udp;
#[cfg(feature = "session")]
pub mod v15;

pub use chassis::{BootDevice, ChassisControl, DeviceId};
#[cfg(feature = "client")]
pub use client::{IpmiClient, Timing};
pub use error::IpmiError;

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

/// Cipher suites this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

impl CipherSuite {
    /// Parses `ipmi_cipher_suite`.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            3 => Some(Self::Suite3),
            17 => Some(Self::Suite17),
            _ => None,
        }
    }

    /// (authentication, integrity, confidentiality) algorithm numbers, as
    /// Open Session names them.
    pub fn algorithms(self) -> (u8, u8, u8) {
        match self {
            Self::Suite3 => (0x01, 0x01, 0x01),
            Self::Suite17 => (0x03, 0x04, 0x01),
        }
    }
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
