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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::packet::{self, payload};
use super::session::Session;
use super::{BmcConfig, IpmiError, IpmiVersion, Timing};

/// RMCP+ payload type of SOL.
pub const PAYLOAD_SOL: u8 = 0x01;

const NETFN_APP: u8 = 0x06;
const ACTIVATE_PAYLOAD: u8 = 0x48;
const DEACTIVATE_PAYLOAD: u8 = 0x49;
const GET_PAYLOAD_INSTANCE_INFO: u8 = 0x4B;
const GET_DEVICE_ID: u8 = 0x01;
/// Activate Payload auxiliary byte: encrypt and authenticate the payload.
const AUX_ENCRYPT_AUTH: u8 = 0xC0;
/// Completion code: the payload is already active in another session.
const CC_ALREADY_ACTIVE: u8 = 0x80;

/// Status bits of BMC-to-console packets.
const STATUS_NACK: u8 = 0x40;
const STATUS_UNAVAILABLE: u8 = 0x20;
const STATUS_DEACTIVATING: u8 = 0x10;

/// How long to wait for an acknowledgement before retransmitting.
const RETRANSMIT: Duration = Duration::from_millis(500);
/// Transmissions of one packet before the session is given up.
const MAX_SENDS: u32 = 12;
/// Interval of keepalives (Get Payload Instance Info or Get Device ID),
/// sent whatever the SOL traffic: BMCs may time the session out on IPMI
/// messages alone (ipmi_sim: 30 s).
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Silence from the BMC after which the session counts as lost (three
/// keepalives unanswered).
const DEAD_AFTER: Duration = Duration::from_secs(16);

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
pub fn instance_owner(r: &packet::IpmiResponse, our_session: u32) -> InstanceOwner {
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

/// What the keepalive checks, see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerCheck {
    /// Asking Get Payload Instance Info; no answer has named us yet.
    Unproven,
    /// An answer named our session: later ones naming another end SOL.
    Trusted,
    /// The BMC's answers are not usable: Get Device ID, liveness only.
    Off,
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

/// A running SOL session: write serial input to `input`, read the
/// server's serial output from `output`. When `output` ends, the session
/// ended (stopped, deactivated by the BMC, or lost).
#[derive(Debug)]
pub struct SolConsole {
    /// Bytes for the server's serial input.
    pub input: mpsc::Sender<Vec<u8>>,
    /// Bytes of the server's serial output.
    pub output: mpsc::Receiver<Vec<u8>>,
    /// Dropping it (with the console) ends the pump too, which still
    /// deactivates the payload.
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl SolConsole {
    /// Opens an RMCP+ session, activates SOL (deactivating it first when
    /// another session holds it, e.g. ours before a coordinator restart),
    /// and starts the packet pump, numbering packets from `seq`.
    pub async fn activate(
        cfg: &BmcConfig,
        timing: &Timing,
        seq: SolSequence,
    ) -> Result<Self, IpmiError> {
        if cfg.version != IpmiVersion::V20 {
            return Err(IpmiError::Protocol(
                "serial-over-LAN needs IPMI 2.0 (RMCP+)".into(),
            ));
        }
        let mut session = Session::open(cfg, timing).await?;
        let r = match activate_payload(&mut session, cfg).await {
            Ok(r) => r,
            Err(e) => {
                // Not left open on the BMC: the endpoint retries, and every
                // leaked session would hold one of the BMC's few slots.
                session.close().await;
                return Err(e);
            }
        };
        // Response: aux (4), inbound payload size (2), outbound size (2), port (2), VLAN (2).
        let max_in = r
            .data
            .get(4..6)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .unwrap_or(0);
        let chunk = max_in.saturating_sub(4).clamp(1, 200);
        if let Some(b) = r.data.get(8..10) {
            let port = u16::from_le_bytes([b[0], b[1]]);
            if port != cfg.port && port != 0 {
                tracing::warn!(host = %cfg.host, bmc_port = cfg.port, sol_port = port,
                    "the BMC names another UDP port for SOL; staying on the session's port");
            }
        }
        tracing::info!(host = %cfg.host, port = cfg.port, chunk, "SOL payload activated");
        let (input, in_rx) = mpsc::channel(64);
        let (out_tx, output) = mpsc::channel(256);
        let (stop, stop_rx) = oneshot::channel();
        let host = format!("{}:{}", cfg.host, cfg.port);
        let task = tokio::spawn(async move {
            let mut pump = Pump {
                session,
                chunk,
                out: out_tx,
                queue: VecDeque::new(),
                pending: None,
                seq,
                last_rx: None,
                rq_seq: 0,
                owner_check: OwnerCheck::Unproven,
                lost_payload: false,
            };
            let end = pump.run(in_rx, stop_rx).await;
            match &end {
                Ok(()) => tracing::info!(bmc = %host, "SOL stopped"),
                Err(e) => tracing::warn!(bmc = %host, error = %e, "SOL session ended"),
            }
            if pump.lost_payload {
                // Deactivating now could end another session's SOL.
                pump.close().await;
            } else if !matches!(end, Err(IpmiError::Timeout)) {
                // A session the BMC stopped answering is not worth a goodbye.
                pump.deactivate().await;
            }
        });
        Ok(Self {
            input,
            output,
            stop,
            task,
        })
    }

    /// Deactivates the payload and closes the session (waits up to 5 s).
    pub async fn stop(self) {
        let Self { stop, mut task, .. } = self;
        let _ = stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Activates the SOL payload on `session`, deactivating it first when
/// another session holds it; returns the successful answer.
async fn activate_payload(
    session: &mut Session,
    cfg: &BmcConfig,
) -> Result<packet::IpmiResponse, IpmiError> {
    let mut r = session
        .request(NETFN_APP, ACTIVATE_PAYLOAD, &activate_request())
        .await?;
    if r.completion == CC_ALREADY_ACTIVE {
        tracing::info!(host = %cfg.host, port = cfg.port, "SOL active in another session; deactivating it");
        session
            .request(NETFN_APP, DEACTIVATE_PAYLOAD, &deactivate_request())
            .await?
            .completed("Deactivate Payload")?;
        r = session
            .request(NETFN_APP, ACTIVATE_PAYLOAD, &activate_request())
            .await?;
    }
    r.completed("Activate Payload")
}

/// A packet of ours awaiting its acknowledgement.
struct Pending {
    seq: u8,
    data: Vec<u8>,
    sent_at: Instant,
    sends: u32,
}

struct Pump {
    session: Session,
    chunk: usize,
    out: mpsc::Sender<Vec<u8>>,
    queue: VecDeque<u8>,
    pending: Option<Pending>,
    seq: SolSequence,
    last_rx: Option<u8>,
    rq_seq: u8,
    owner_check: OwnerCheck,
    /// Set when the BMC said the payload is no longer active in our session.
    lost_payload: bool,
}

impl Pump {
    async fn run(
        &mut self,
        mut input: mpsc::Receiver<Vec<u8>>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<(), IpmiError> {
        let mut buf = vec![0u8; 2048];
        let mut heard = Instant::now();
        // The first keepalive goes out at once: its answer, while the payload
        // is surely ours, proves the BMC's instance info names our session.
        let mut keepalive_at = Instant::now();
        let mut input_open = true;
        loop {
            self.send_next().await?;
            let retransmit_at = self.pending.as_ref().map(|p| p.sent_at + RETRANSMIT);
            tokio::select! {
                _ = &mut stop => return Ok(()),
                chunk = input.recv(), if input_open => match chunk {
                    Some(b) => self.queue.extend(b),
                    None => input_open = false,
                },
                r = self.session.socket().recv(&mut buf) => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) => {
                            // ICMP unreachable on the connected socket: the BMC is not there now.
                            tracing::debug!(error = %e, "SOL receive failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let Some((ptype, body)) = self.session.decode(&buf[..n]) else { continue };
                    heard = Instant::now();
                    if ptype == PAYLOAD_SOL {
                        if let Some(p) = SolPacket::decode(&body) {
                            self.received(p).await?;
                        }
                    } else if ptype == payload::IPMI {
                        if let Some(r) = packet::parse_ipmi_response(&body) {
                            self.keepalive_answer(&r)?;
                        }
                    }
                }
                _ = tokio::time::sleep_until(retransmit_at.unwrap_or(keepalive_at)), if retransmit_at.is_some() => {
                    if let Some(p) = &mut self.pending {
                        if p.sends >= MAX_SENDS {
                            return Err(IpmiError::Timeout);
                        }
                        p.sends += 1;
                        p.sent_at = Instant::now();
                        let pkt = SolPacket { seq: p.seq, ack: 0, accepted: 0, status: 0, data: p.data.clone() };
                        self.session.send_payload(PAYLOAD_SOL, &pkt.encode()).await?;
                    }
                }
                _ = tokio::time::sleep_until(keepalive_at) => {
                    if heard.elapsed() > DEAD_AFTER {
                        return Err(IpmiError::Timeout);
                    }
                    // Sent on a fixed schedule: SOL traffic alone does not
                    // keep the session open on every BMC.
                    self.rq_seq = (self.rq_seq + 1) & 0x3F;
                    let msg = if self.owner_check == OwnerCheck::Off {
                        packet::ipmi_request(NETFN_APP, self.rq_seq, GET_DEVICE_ID, &[])
                    } else {
                        packet::ipmi_request(NETFN_APP, self.rq_seq, GET_PAYLOAD_INSTANCE_INFO, &instance_info_request())
                    };
                    self.session.send_payload(payload::IPMI, &msg).await?;
                    keepalive_at = Instant::now() + KEEPALIVE;
                }
            }
        }
    }

    /// Checks a keepalive's answer (any answer already counted as "heard"):
    /// an error when the payload is active in another session, or in none.
    fn keepalive_answer(&mut self, r: &packet::IpmiResponse) -> Result<(), IpmiError> {
        if r.cmd != GET_PAYLOAD_INSTANCE_INFO || r.rq_seq != self.rq_seq {
            return Ok(());
        }
        let owner = instance_owner(r, self.session.bmc_session_id());
        match (self.owner_check, owner) {
            (OwnerCheck::Off, _) => {}
            (_, InstanceOwner::Ours) => self.owner_check = OwnerCheck::Trusted,
            (OwnerCheck::Unproven, owner) => {
                tracing::debug!(
                    ?owner,
                    completion = r.completion,
                    "Get Payload Instance Info does not name our session; keepalives check liveness only"
                );
                self.owner_check = OwnerCheck::Off;
            }
            (OwnerCheck::Trusted, InstanceOwner::Other(sid)) => {
                self.lost_payload = true;
                return Err(IpmiError::Protocol(if sid == 0 {
                    "SOL was deactivated by another session".into()
                } else {
                    format!("SOL is active in another session ({sid:#010x})")
                }));
            }
            // A BMC busy for a moment (e.g. completion code 0xC0).
            (OwnerCheck::Trusted, InstanceOwner::Unknown) => {}
        }
        Ok(())
    }

    /// Sends the next chunk of queued input when nothing is outstanding.
    async fn send_next(&mut self) -> Result<(), IpmiError> {
        if self.pending.is_some() || self.queue.is_empty() {
            return Ok(());
        }
        let n = self.queue.len().min(self.chunk);
        let data: Vec<u8> = self.queue.drain(..n).collect();
        let seq = self.seq.next();
        let pkt = SolPacket {
            seq,
            ack: 0,
            accepted: 0,
            status: 0,
            data: data.clone(),
        };
        self.session
            .send_payload(PAYLOAD_SOL, &pkt.encode())
            .await?;
        self.pending = Some(Pending {
            seq,
            data,
            sent_at: Instant::now(),
            sends: 1,
        });
        Ok(())
    }

    async fn received(&mut self, p: SolPacket) -> Result<(), IpmiError> {
        if p.ack != 0 {
            if let Some(pend) = self.pending.take_if(|q| q.seq == p.ack) {
                if p.status & (STATUS_NACK | STATUS_UNAVAILABLE) != 0 {
                    // Not accepted now: try again after the retransmit interval.
                    self.pending = Some(pend);
                } else if p.accepted != 0 {
                    // A partial accept: the rest goes out again first. An ACK
                    // counting 0 without NACK is taken as "all" (as ipmitool
                    // does), so characters are never typed twice.
                    let accepted = (p.accepted as usize).min(pend.data.len());
                    for b in pend.data[accepted..].iter().rev() {
                        self.queue.push_front(*b);
                    }
                }
            }
        }
        if p.seq != 0 && !p.data.is_empty() {
            if self.last_rx != Some(p.seq) {
                self.last_rx = Some(p.seq);
                // A full channel means nobody reads: drop rather than stall the BMC.
                let _ = self.out.try_send(p.data.clone());
            }
            let ack = SolPacket {
                seq: 0,
                ack: p.seq,
                accepted: p.data.len().min(255) as u8,
                status: 0,
                data: Vec::new(),
            };
            self.session
                .send_payload(PAYLOAD_SOL, &ack.encode())
                .await?;
        }
        if p.status & STATUS_DEACTIVATING != 0 {
            return Err(IpmiError::Protocol("the BMC deactivated SOL".into()));
        }
        Ok(())
    }

    /// Deactivate Payload (one retransmission) and Close Session (one attempt).
    async fn deactivate(mut self) {
        self.session.set_retries(1);
        let r = self
            .session
            .request(NETFN_APP, DEACTIVATE_PAYLOAD, &deactivate_request())
            .await;
        tracing::debug!(result = ?r.map(|r| r.completion), "SOL deactivate");
        self.session.close().await;
    }

    /// Close Session only (one attempt), for a payload no longer ours.
    async fn close(mut self) {
        self.session.set_retries(1);
        self.session.close().await;
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
        let answer = |completion: u8, data: &[u8]| packet::IpmiResponse {
            netfn: NETFN_APP + 1,
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
