//! Wire encoding: the RMCP header and the IPMI 1.5 and 2.0 (RMCP+) session
//! wrappers (IPMI 2.0 §13.6–13.7). The messages inside are [`crate::message`]'s,
//! re-exported here.

use crate::crypto;
pub use crate::message::{
    BMC_ADDR, CONSOLE_ADDR, IpmiResponse, checksum, ipmi_request, parse_ipmi_response,
};

/// RMCP header for IPMI class messages (version 6, sequence 0xFF: no ACK).
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xFF, 0x07];
/// Authentication type byte marking an RMCP+ (IPMI 2.0) session header.
pub const AUTH_RMCPPLUS: u8 = 0x06;

/// RMCP+ payload types.
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQ: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RSP: u8 = 0x11;
    /// RAKP message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP message 4.
    pub const RAKP4: u8 = 0x15;
}

/// An IPMI 1.5 packet without authentication (used before a session exists,
/// for Get Channel Authentication Capabilities).
pub fn v15_unauthenticated(msg: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(14 + msg.len());
    p.extend_from_slice(&RMCP_HEADER);
    p.push(0x00); // auth type none
    p.extend_from_slice(&[0; 4]); // session sequence
    p.extend_from_slice(&[0; 4]); // session ID
    p.push(msg.len() as u8);
    p.extend_from_slice(msg);
    p
}

/// Keys protecting an active RMCP+ session's packets.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    /// Integrity algorithm (HMAC-SHA1-96 or HMAC-SHA256-128), keyed with K1.
    pub alg: crypto::AuthAlg,
    /// K1.
    pub k1: Vec<u8>,
    /// AES-CBC-128 key (K2's first 16 bytes).
    pub aes: [u8; 16],
}

/// Encodes an RMCP+ packet. With `keys`, the payload is encrypted (with
/// `iv`) and the packet carries an integrity trailer.
pub fn v20_packet(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<(&SessionKeys, [u8; 16])>,
) -> Vec<u8> {
    let body = match keys {
        Some((k, iv)) => crypto::encrypt(&k.aes, &iv, payload),
        None => payload.to_vec(),
    };
    let mut p = Vec::with_capacity(40 + body.len());
    p.extend_from_slice(&RMCP_HEADER);
    p.push(AUTH_RMCPPLUS);
    let flags = if keys.is_some() { 0xC0 } else { 0x00 };
    p.push(flags | payload_type);
    p.extend_from_slice(&session_id.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(body.len() as u16).to_le_bytes());
    p.extend_from_slice(&body);
    if let Some((k, _)) = keys {
        // Pad so that AuthType..NextHeader is a multiple of 4 bytes.
        let covered = p.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        p.extend(std::iter::repeat_n(0xFF, pad));
        p.push(pad as u8);
        p.push(0x07);
        let mut code = k.alg.hmac(&k.k1, &p[4..]);
        code.truncate(k.alg.icv_len());
        p.extend_from_slice(&code);
    }
    p
}

/// A decoded incoming packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An IPMI 1.5 packet's message.
    V15(Vec<u8>),
    /// An RMCP+ packet: payload type (without the flag bits), session ID, plain payload.
    V20 {
        /// Payload type.
        payload_type: u8,
        /// Session ID field.
        session_id: u32,
        /// Decrypted payload.
        payload: Vec<u8>,
    },
}

/// Decodes a packet; checks integrity and decrypts with `keys` when the
/// packet is marked authenticated/encrypted. `None` for anything malformed
/// or failing the integrity check.
pub fn parse_packet(p: &[u8], keys: Option<&SessionKeys>) -> Option<Incoming> {
    if p.len() < 5 || p[0] != 0x06 || p[3] != 0x07 {
        return None;
    }
    if p[4] != AUTH_RMCPPLUS {
        let auth = p[4];
        let off = if auth == 0 { 13 } else { 29 };
        let len = *p.get(off)? as usize;
        return Some(Incoming::V15(p.get(off + 1..off + 1 + len)?.to_vec()));
    }
    if p.len() < 16 {
        return None;
    }
    let ptype = p[5];
    let session_id = u32::from_le_bytes(p[6..10].try_into().ok()?);
    let len = u16::from_le_bytes(p[14..16].try_into().ok()?) as usize;
    let body = p.get(16..16 + len)?;
    let authenticated = ptype & 0x40 != 0;
    let encrypted = ptype & 0x80 != 0;
    if authenticated || encrypted {
        let k = keys?;
        if authenticated {
            let icv = k.alg.icv_len();
            if p.len() < 16 + len + 2 + icv {
                return None;
            }
            let (covered, code) = p.split_at(p.len() - icv);
            let mut want = k.alg.hmac(&k.k1, &covered[4..]);
            want.truncate(icv);
            if want != code {
                return None;
            }
        }
        let payload = if encrypted {
            crypto::decrypt(&k.aes, body)?
        } else {
            body.to_vec()
        };
        return Some(Incoming::V20 {
            payload_type: ptype & 0x3F,
            session_id,
            payload,
        });
    }
    Some(Incoming::V20 {
        payload_type: ptype & 0x3F,
        session_id,
        payload: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_channel_auth_caps_matches_ipmitool_bytes() {
        // ipmitool -I lanplus's first packet: Get Channel Authentication
        // Capabilities (App 0x38), channel 0x0E with the v2.0 bit, admin.
        let msg = ipmi_request(0x06, 0, 0x38, &[0x8E, 0x04]);
        assert_eq!(msg, [0x20, 0x18, 0xC8, 0x81, 0x00, 0x38, 0x8E, 0x04, 0xB5]);
        let p = v15_unauthenticated(&msg);
        let want = [
            "0600ff07",
            "00",
            "00000000",
            "00000000",
            "09",
            "2018c88100388e04b5",
        ]
        .concat();
        assert_eq!(hex::encode(&p), want);
    }

    #[test]
    fn authenticated_packet_round_trip_and_tamper() {
        let keys = SessionKeys {
            alg: crypto::AuthAlg::HmacSha1,
            k1: vec![0x11; 20],
            aes: [0x22; 16],
        };
        let msg = ipmi_request(0x00, 5, 0x01, &[]);
        let p = v20_packet(payload::IPMI, 0xA0B0C0D0, 7, &msg, Some((&keys, [3; 16])));
        // AuthType..NextHeader is a multiple of 4, followed by a 12-byte code.
        assert_eq!((p.len() - 4 - 12) % 4, 0);
        assert_eq!(p[5], 0xC0);
        assert_eq!(&p[6..10], &0xA0B0C0D0u32.to_le_bytes());
        assert_eq!(&p[10..14], &7u32.to_le_bytes());
        match parse_packet(&p, Some(&keys)) {
            Some(Incoming::V20 {
                payload_type,
                session_id,
                payload,
            }) => {
                assert_eq!(payload_type, payload::IPMI);
                assert_eq!(session_id, 0xA0B0C0D0);
                assert_eq!(payload, msg);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut bad = p.clone();
        bad[20] ^= 0x80;
        assert!(parse_packet(&bad, Some(&keys)).is_none());
    }
}
