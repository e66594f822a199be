//! The SOL console: the packet pump of one activated SOL payload over a
//! session's socket (see the module docs of [`super`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{
    ACTIVATE_PAYLOAD, CC_ALREADY_ACTIVE, DEACTIVATE_PAYLOAD, GET_PAYLOAD_INSTANCE_INFO,
    InstanceOwner, PAYLOAD_SOL, STATUS_DEACTIVATING, STATUS_NACK, STATUS_UNAVAILABLE, SolPacket,
    SolSequence, activate_request, deactivate_request, instance_info_request, instance_owner,
};
use crate::chassis::GET_DEVICE_ID;
use crate::client::{Connection, Timing};
use crate::message::{self, IpmiResponse, netfn::APP as NETFN_APP};
use crate::packet::payload;
use crate::{BmcConfig, IpmiError, IpmiVersion};

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
        let mut session = Connection::open(cfg, timing).await?;
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
    session: &mut Connection,
    cfg: &BmcConfig,
) -> Result<IpmiResponse, IpmiError> {
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
    session: Connection,
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
                        if let Some(r) = message::parse_ipmi_response(&body) {
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
                        message::ipmi_request(NETFN_APP, self.rq_seq, GET_DEVICE_ID, &[])
                    } else {
                        message::ipmi_request(NETFN_APP, self.rq_seq, GET_PAYLOAD_INSTANCE_INFO, &instance_info_request())
                    };
                    self.session.send_payload(payload::IPMI, &msg).await?;
                    keepalive_at = Instant::now() + KEEPALIVE;
                }
            }
        }
    }

    /// Checks a keepalive's answer (any answer already counted as "heard"):
    /// an error when the payload is active in another session, or in none.
    fn keepalive_answer(&mut self, r: &IpmiResponse) -> Result<(), IpmiError> {
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
