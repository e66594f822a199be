//! Serial-over-LAN (IPMI 2.0 §15 and §24): the SOL payload (RMCP+ payload
//! type 1) in its own RMCP+ session, activated with Activate Payload (App
//! 0x48) and ended with Deactivate Payload (App 0x49).
//!
//! A SOL packet (both directions) is: packet sequence number (1–15; 0 marks
//! an ACK-only packet), the sequence number it acknowledges (0: none), the
//! accepted character count of that packet, an operation/status byte, then
//! character data. Every packet with data is acknowledged; one of our
//! packets is outstanding at a time and is retransmitted (same SOL sequence
//! number, a new session sequence number) until acknowledged. When the BMC
//! accepts fewer characters than sent, the rest is sent again in the next
//! packet; a NACK means "not now" and the packet is retried later. Packets
//! from the BMC repeating the last sequence number are retransmissions:
//! acknowledged again, not delivered twice. Like other payloads of the
//! session they are encrypted (AES-CBC-128) and authenticated.
//!
//! SOL packets do not keep the session alive: a BMC may count only IPMI
//! messages as session activity (OpenIPMI's `ipmi_sim` does, and closes the
//! session, silently deactivating SOL, 30 s after the last one). So a
//! keepalive goes out every 5 s however busy the console is, as
//! `ipmitool sol activate` sends one every 15 s. The keepalive is Get
//! Payload Instance Info (App 0x4B) for our SOL instance: its answer names
//! the session the instance is active in, so a payload that another
//! session deactivated (`ipmitool sol deactivate`, or an `ipmitool sol
//! activate` we took it from, on its way out), which the BMC need not tell
//! us about, is noticed within one interval even when nothing is typed.
//! The check is trusted only once an answer has named our own session; a
//! BMC that answers otherwise gets Get Device ID keepalives instead.
//!
//! This module is the SOL codec (no I/O); [`SolConsole`] (feature `client`)
//! runs the packet pump over a session's socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::message::IpmiResponse;

#[cfg(feature = "client")]
mod console;
#[cfg(feature = "client")]
pub use console::SolConsole;

/// RMCP+ payload type of SOL.
pub const PAYLOAD_SOL: u8 = 0x01;

/// Activate Payload (App).
pub const ACTIVATE_PAYLOAD: u8 = 0x48;
/// Deactivate Payload (App).
pub const DEACTIVATE_PAYLOAD: u8 = 0x49;
/// Get Payload Instance Info (App).
pub const GET_PAYLOAD_INSTANCE_INFO: u8 = 0x4B;
/// Activate Payload auxiliary byte: encrypt and authenticate the payload.
const AUX_ENCRYPT_AUTH: u8 = 0xC0;
/// Completion code: the payload is already active in another session.
pub const CC_ALREADY_ACTIVE: u8 = 0x80;

/// Status bit of BMC-to-console packets: not accepted now (NACK).
pub const STATUS_NACK: u8 = 0x40;
/// Status bit: character transfer unavailable.
pub const STATUS_UNAVAILABLE: u8 = 0x20;
/// Status bit: SOL is being deactivated.
pub const STATUS_DEACTIVATING: u8 = 0x10;

/// One SOL packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolPacket {
    /// Packet sequence number (1–15), 0 for ACK-only packets.
    pub seq: u8,
    /// The sequence number acknowledged, 0 for none.
    pub ack: u8,
    /// Characters accepted of the acknowledged packet.
    pub accepted: u8,
    /// Operation (console to BMC) or status (BMC to console) bits.
    pub status: u8,
    /// Character data.
    pub data: Vec<u8>,
}

impl SolPacket {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(4 + self.data.len());
        p.extend_from_slice(&[self.seq & 0x0F, self.ack & 0x0F, self.accepted, self.status]);
        p.extend_from_slice(&self.data);
        p
    }

    /// Decodes a payload.
    pub fn decode(p: &[u8]) -> Option<Self> {
        if p.len() < 4 {
            return None;
        }
        Some(Self {
            seq: p[0] & 0x0F,
            ack: p[1] & 0x0F,
            accepted: p[2],
            status: p[3],
            data: p[4..].to_vec(),
        })
    }
}

/// The Activate Payload request data for SOL instance 1.
pub fn activate_request() -> [u8; 6] {
    [PAYLOAD_SOL, 1, AUX_ENCRYPT_AUTH, 0, 0, 0]
}

/// The Deactivate Payload request data for SOL instance 1.
pub fn deactivate_request() -> [u8; 6] {
    [PAYLOAD_SOL, 1, 0, 0, 0, 0]
}

/// The Get Payload Instance Info request data for SOL instance 1.
pub fn instance_info_request() -> [u8; 2] {
    [PAYLOAD_SOL, 1]
}

/// Which session a Get Payload Instance Info answer says holds the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOwner {
    /// The session `our_session` names: ours.
    Ours,
    /// Another session, or none (session ID 0: not active).
    Other(u32),
    /// No usable answer (a completion code, or too short).
    Unknown,
}

/// Reads a Get Payload Instance Info answer (data: the session ID the
/// instance is active in, 4 bytes little-endian, 0 when inactive; then
/// payload-specific bytes) against the BMC's ID of our session.
pub fn instance_owner(r: &IpmiResponse, our_session: u32) -> InstanceOwner {
    match r.data.get(0..4) {
        Some(b) if r.completion == 0 => {
            let sid = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if sid == our_session {
                InstanceOwner::Ours
            } else {
                InstanceOwner::Other(sid)
            }
        }
        _ => InstanceOwner::Unknown,
    }
}

/// The sequence numbers of one console's packets, carried over from one
/// activation to the next. A BMC may remember the last packet's sequence
/// number and accepted count across activations (ipmi_sim does): a first
/// packet that repeated the previous session's last number would be taken
/// for its retransmission, and as many characters as that one carried
/// would be dropped. Cloning shares the counter.
#[derive(Debug, Clone, Default)]
pub struct SolSequence(Arc<AtomicU8>);

impl SolSequence {
    /// The next sequence number: 1 to 15, then 1 again.
    pub fn next(&self) -> u8 {
        let step = |s: u8| if (1..15).contains(&s) { s + 1 } else { 1 };
        let prev = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(step(s)))
            .unwrap_or_default();
        step(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sol_packet_layout() {
        let p = SolPacket {
            seq: 3,
            ack: 2,
            accepted: 5,
            status: 0,
            data: b"hi".to_vec(),
        };
        assert_eq!(p.encode(), [3, 2, 5, 0, b'h', b'i']);
        assert_eq!(SolPacket::decode(&p.encode()), Some(p));
        assert!(SolPacket::decode(&[1, 2, 3]).is_none());
        assert_eq!(activate_request(), [1, 1, 0xC0, 0, 0, 0]);
        assert_eq!(deactivate_request(), [1, 1, 0, 0, 0, 0]);
        assert_eq!(instance_info_request(), [1, 1]);
    }

    #[test]
    fn sequence_numbers_wrap_and_are_shared() {
        let a = SolSequence::default();
        let b = a.clone();
        let got: Vec<u8> = (0..16)
            .map(|i| if i % 2 == 0 { a.next() } else { b.next() })
            .collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 1]);
    }

    #[test]
    fn instance_owner_reads_the_session_id() {
        let answer = |completion: u8, data: &[u8]| IpmiResponse {
            netfn: crate::message::netfn::APP + 1,
            rq_seq: 1,
            cmd: GET_PAYLOAD_INSTANCE_INFO,
            completion,
            data: data.to_vec(),
        };
        // ipmi_sim's answer while its session 0x102 holds SOL (port 1).
        let held = answer(0, &[0x02, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(instance_owner(&held, 0x102), InstanceOwner::Ours);
        assert_eq!(instance_owner(&held, 0x103), InstanceOwner::Other(0x102));
        let inactive = answer(0, &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(instance_owner(&inactive, 0x102), InstanceOwner::Other(0));
        assert_eq!(
            instance_owner(&answer(0xC1, &[]), 0x102),
            InstanceOwner::Unknown
        );
        assert_eq!(
            instance_owner(&answer(0, &[2, 1]), 0x102),
            InstanceOwner::Unknown
        );
    }
}
