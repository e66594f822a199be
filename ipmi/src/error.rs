//! The crate's error type.

/// IPMI errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IpmiError {
    /// No answer after all retries.
    #[error("no answer from the BMC (timed out)")]
    Timeout,
    /// The network reported the BMC unreachable (an ICMP error such as port
    /// unreachable, seen on the last attempt).
    #[error("the BMC is unreachable: {0}")]
    Unreachable(String),
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

impl IpmiError {
    /// True for RMCP+ status codes that refuse the credentials or the
    /// requested role (IPMI 2.0 table 13-15): invalid role (0x09),
    /// unauthorised role or privilege (0x0A), invalid name length (0x0C),
    /// unauthorised name (0x0D) or GUID (0x0E), invalid integrity check
    /// value (0x0F).
    pub fn is_auth_status(&self) -> bool {
        matches!(
            self,
            Self::Rakp {
                code: 0x09 | 0x0A | 0x0C..=0x0F,
                ..
            }
        )
    }

    /// True for RMCP+ status codes naming algorithms the BMC does not
    /// offer (0x04–0x07, 0x10, 0x11: no matching cipher suite).
    pub fn is_unsupported_status(&self) -> bool {
        matches!(
            self,
            Self::Rakp {
                code: 0x04..=0x07 | 0x10 | 0x11,
                ..
            }
        )
    }

    /// True for errors that mean the BMC did not answer at all.
    pub fn is_no_answer(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unreachable(_) | Self::Io(_))
    }

    /// True for answers that mean "not now" rather than "no": completion
    /// codes node busy (0xC0), timeout (0xC3), out of space (0xC4),
    /// response could not be provided (0xCE) and unspecified (0xFF), and
    /// the RMCP+ status "insufficient resources" (0x01, 0x0B).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Completion {
                code: 0xC0 | 0xC3 | 0xC4 | 0xCE | 0xFF,
                ..
            } | Self::Rakp {
                code: 0x01 | 0x0B,
                ..
            }
        )
    }
}
