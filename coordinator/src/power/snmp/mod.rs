//! The `snmp` power interface: PDU outlet control over SNMP v1, v2c and v3,
//! for the PDU families Ironic supported ([`pdu::FAMILIES`], chosen by
//! `snmp_driver`). The client ([`client::SnmpClient`]) is written here: it
//! needs only GET and SET of one INTEGER, so the BER subset in [`ber`],
//! [`message`] (v1/v2c) and [`usm`] (v3: HMAC-MD5-96, HMAC-SHA-96, the
//! RFC 7860 SHA-2 HMACs, AES-128/192/256-CFB) is small. DES and 3DES
//! privacy are refused with [`PowerError::InvalidDriverInfo`].
//!
//! PDUs have no boot device: the hardware type's management interface is
//! `noop`, and the boot device calls here answer [`PowerError::Unsupported`].

pub mod ber;
pub mod client;
pub mod driver;
pub mod message;
pub mod pdu;
#[cfg(test)]
mod tests;
pub mod usm;

use std::time::Duration;

pub use client::{Agent, SnmpClient};
pub use driver::{Settings, SnmpPower};
pub use message::Version;
pub use pdu::Family;

use super::PowerError;

/// Timeouts and retries of one SNMP request.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wait for an answer to each transmission (Ironic: `udp_transport_timeout`, 1 s).
    pub timeout: Duration,
    /// Retransmissions after the first (Ironic: `udp_transport_retries`, 5).
    pub retries: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// SNMP client errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnmpError {
    /// No answer after all retries.
    #[error("no answer from the SNMP agent at {0} (timed out)")]
    Timeout(String),
    /// The last attempt got an ICMP error (port, host or network unreachable).
    #[error("the SNMP agent at {agent} is unreachable: {error}")]
    Unreachable {
        /// The agent's address.
        agent: String,
        /// The error the socket reported.
        error: String,
    },
    /// Socket or name resolution failure.
    #[error("network error: {0}")]
    Io(String),
    /// A request could not be encoded (bad OID).
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// A malformed answer.
    #[error("malformed SNMP answer: {0}")]
    Decode(String),
    /// The agent answered with a non-zero error-status.
    #[error("SNMP {op} of {oid} failed: {name} (error-status {status})")]
    Status {
        /// `GET` or `SET`.
        op: &'static str,
        /// The object.
        oid: String,
        /// error-status.
        status: i64,
        /// Its RFC 3416 name.
        name: &'static str,
    },
    /// The object does not exist on the agent.
    #[error("the SNMP agent has no object {0}")]
    NoSuchObject(String),
    /// The agent refused an SNMPv3 message (a USM Report).
    #[error("SNMPv3: {0}")]
    Usm(String),
    /// The object is not an INTEGER.
    #[error("SNMP object {oid} has type {tag:#04x}, not INTEGER")]
    WrongType {
        /// The object.
        oid: String,
        /// Its BER tag.
        tag: u8,
    },
}

impl From<SnmpError> for PowerError {
    fn from(e: SnmpError) -> Self {
        let message = format!("SNMP PDU: {e}");
        match e {
            SnmpError::Timeout(_) | SnmpError::Unreachable { .. } | SnmpError::Io(_) => {
                PowerError::Unreachable(message)
            }
            SnmpError::Usm(reason) => match reason.as_str() {
                "unknown user name"
                | "wrong digest (authentication key)"
                | "decryption error (privacy key)"
                | "unsupported security level" => PowerError::Auth(message),
                _ => PowerError::Failed(message),
            },
            // noAccess, authorizationError: the community or user may not do this.
            SnmpError::Status { status: 6 | 16, .. } => PowerError::Auth(message),
            SnmpError::Status { status, .. } => PowerError::Refused {
                message,
                // genErr, resourceUnavailable.
                busy: matches!(status, 5 | 13),
            },
            SnmpError::NoSuchObject(_) => PowerError::Refused {
                message,
                busy: false,
            },
            SnmpError::Encode(_) => PowerError::InvalidDriverInfo(message),
            SnmpError::Decode(_) | SnmpError::WrongType { .. } => PowerError::Failed(message),
        }
    }
}
