//! IPMI messages (IPMI 2.0 §13.8): the LAN request and response format with
//! its two checksums, network functions, and the data of Get LAN
//! Configuration Parameters. Used inside RMCP+ and 1.5 packets, and by the
//! agent, whose kernel driver (`/dev/ipmi0`) takes network function,
//! command and data and returns completion code and data.

use crate::IpmiError;

/// The BMC's responder address.
pub const BMC_ADDR: u8 = 0x20;
/// Our (remote console software) requester address.
pub const CONSOLE_ADDR: u8 = 0x81;

/// Network functions (requests; the response's is one more).
pub mod netfn {
    /// Chassis.
    pub const CHASSIS: u8 = 0x00;
    /// Application.
    pub const APP: u8 = 0x06;
    /// Transport (LAN configuration).
    pub const TRANSPORT: u8 = 0x0C;
}

/// Two's complement checksum: the bytes plus it sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// An IPMI LAN request message (BMC at LUN 0).
pub fn ipmi_request(netfn: u8, rq_seq: u8, cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(7 + data.len());
    m.push(BMC_ADDR);
    m.push(netfn << 2);
    m.push(checksum(&m[0..2]));
    m.push(CONSOLE_ADDR);
    m.push(rq_seq << 2);
    m.push(cmd);
    m.extend_from_slice(data);
    m.push(checksum(&m[3..]));
    m
}

/// A decoded IPMI LAN response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiResponse {
    /// Response network function (request netfn + 1).
    pub netfn: u8,
    /// Requester sequence number it answers.
    pub rq_seq: u8,
    /// Command.
    pub cmd: u8,
    /// Completion code.
    pub completion: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

impl IpmiResponse {
    /// The response if its completion code is 0 ("command completed
    /// normally"), otherwise [`IpmiError::Completion`] naming `cmd`.
    pub fn completed(self, cmd: &'static str) -> Result<Self, IpmiError> {
        match self.completion {
            0 => Ok(self),
            code => Err(IpmiError::Completion { cmd, code }),
        }
    }
}

/// Decodes an IPMI LAN response message, checking both checksums.
pub fn parse_ipmi_response(m: &[u8]) -> Option<IpmiResponse> {
    if m.len() < 8 || checksum(&m[0..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return None;
    }
    Some(IpmiResponse {
        netfn: m[1] >> 2,
        rq_seq: m[4] >> 2,
        cmd: m[5],
        completion: m[6],
        data: m[7..m.len() - 1].to_vec(),
    })
}

/// A response as the kernel driver returns it (completion code, then data):
/// the data when the command completed normally.
pub fn completed_data(reply: &[u8]) -> Option<&[u8]> {
    match reply.split_first() {
        Some((0, rest)) => Some(rest),
        _ => None,
    }
}

/// Get LAN Configuration Parameters (Transport 0x02, IPMI 2.0 §23.2).
pub mod lan {
    /// The command.
    pub const GET_LAN_CONFIG: u8 = 0x02;
    /// Parameter 3: IP address.
    pub const PARAM_IP: u8 = 3;
    /// Parameter 5: MAC address.
    pub const PARAM_MAC: u8 = 5;

    /// The request data: channel, parameter, set selector 0, block selector 0.
    pub fn get_request(channel: u8, param: u8) -> [u8; 4] {
        [channel & 0x0F, param, 0, 0]
    }

    /// The IPv4 address in a parameter 3 answer (revision byte first);
    /// `None` for 0.0.0.0 or a short answer.
    pub fn parse_ip(data: &[u8]) -> Option<String> {
        let a = data.get(1..5)?;
        (a != [0, 0, 0, 0]).then(|| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]))
    }

    /// The MAC in a parameter 5 answer (revision byte first).
    pub fn parse_mac(data: &[u8]) -> Option<String> {
        let m = data.get(1..7)?;
        Some(
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_checksums_are_checked() {
        // Chassis status response: power on.
        let mut m = vec![0x81, 0x04, 0x00, 0x20, 0x08, 0x01, 0x00, 0x01, 0x00, 0x00];
        m[2] = checksum(&m[0..2]);
        let c = checksum(&m[3..]);
        m.push(c);
        let r = parse_ipmi_response(&m).expect("valid");
        assert_eq!((r.netfn, r.rq_seq, r.cmd, r.completion), (0x01, 2, 0x01, 0));
        assert_eq!(r.data, [0x01, 0x00, 0x00]);
        m[7] ^= 1;
        assert!(parse_ipmi_response(&m).is_none());
        assert!(parse_ipmi_response(&m[..5]).is_none());
    }

    #[test]
    fn lan_parameters() {
        assert_eq!(lan::get_request(1, lan::PARAM_IP), [1, 3, 0, 0]);
        assert_eq!(
            lan::parse_ip(&[0x11, 10, 1, 0, 23]).as_deref(),
            Some("10.1.0.23")
        );
        assert_eq!(lan::parse_ip(&[0x11, 0, 0, 0, 0]), None);
        assert_eq!(lan::parse_ip(&[0x11, 10]), None);
        assert_eq!(
            lan::parse_mac(&[0x11, 0xb4, 0x96, 0x91, 0xaa, 0xbb, 0]).as_deref(),
            Some("b4:96:91:aa:bb:00")
        );
        assert_eq!(completed_data(&[0, 1, 2]), Some(&[1u8, 2][..]));
        assert_eq!(completed_data(&[0xC1]), None);
        assert_eq!(completed_data(&[]), None);
    }
}
