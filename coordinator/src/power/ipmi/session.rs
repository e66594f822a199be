//! One session with one BMC: RMCP+ (IPMI 2.0) setup (Get Channel
//! Authentication Capabilities, Open Session, RAKP 1–4, Set Session
//! Privilege Level) or an IPMI 1.5 session ([`super::v15`]), and
//! request/response with retries, backoff and timeouts.

use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::crypto::{self, AuthAlg, RakpParams};
use super::packet::{self, Incoming, IpmiResponse, SessionKeys, payload};
use super::v15::{self, Lan15};
use super::{BmcConfig, IpmiError, IpmiVersion, Timing};

/// Cipher suites this client speaks.
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

    fn auth(self) -> AuthAlg {
        match self {
            Self::Suite3 => AuthAlg::HmacSha1,
            Self::Suite17 => AuthAlg::HmacSha256,
        }
    }

    /// (authentication, integrity, confidentiality) algorithm numbers.
    fn algorithms(self) -> (u8, u8, u8) {
        match self {
            Self::Suite3 => (0x01, 0x01, 0x01),
            Self::Suite17 => (0x03, 0x04, 0x01),
        }
    }
}

/// Name-only lookup bit of the RAKP 1 role byte (as ipmitool sends it).
const NAME_ONLY_LOOKUP: u8 = 0x10;

/// The protocol state of an RMCP+ session.
#[derive(Debug)]
struct Rmcpp {
    keys: SessionKeys,
    bmc_sid: u32,
    console_sid: u32,
    seq: u32,
}

impl Rmcpp {
    /// The next authenticated and encrypted packet of `payload_type`.
    fn next_packet(&mut self, payload_type: u8, payload: &[u8]) -> Result<Vec<u8>, IpmiError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        Ok(packet::v20_packet(
            payload_type,
            self.bmc_sid,
            self.seq,
            payload,
            Some((&self.keys, random16()?)),
        ))
    }

    /// `(payload type, payload)` of a packet of this session; `None` for
    /// foreign or forged packets.
    fn decode(&self, p: &[u8]) -> Option<(u8, Vec<u8>)> {
        match packet::parse_packet(p, Some(&self.keys))? {
            Incoming::V20 {
                payload_type,
                session_id,
                payload,
            } if session_id == self.console_sid => Some((payload_type, payload)),
            _ => None,
        }
    }

    /// The payload of a packet of `payload_type` in this session.
    fn accept(&self, p: &[u8], payload_type: u8) -> Option<Vec<u8>> {
        self.decode(p)
            .filter(|(t, _)| *t == payload_type)
            .map(|(_, payload)| payload)
    }
}

#[derive(Debug)]
enum Proto {
    V20(Rmcpp),
    V15(Lan15),
}

/// An established session.
#[derive(Debug)]
pub struct Session {
    sock: UdpSocket,
    proto: Proto,
    rq_seq: u8,
    timing: Timing,
    /// When the session last got an answer (BMCs drop idle sessions).
    pub last_used: Instant,
}

fn random16() -> Result<[u8; 16], IpmiError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| IpmiError::Io(format!("random: {e}")))?;
    Ok(b)
}

/// A random nonzero session ID or sequence number.
pub(super) fn random_u32() -> Result<u32, IpmiError> {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).map_err(|e| IpmiError::Io(format!("random: {e}")))?;
    Ok(u32::from_le_bytes(b) | 1)
}

/// Sends `packet` (rebuilt per attempt by `build`) and waits for a packet
/// `accept` takes, retrying with exponential backoff.
pub(super) async fn exchange<T>(
    sock: &UdpSocket,
    timing: &Timing,
    mut build: impl FnMut() -> Result<Vec<u8>, IpmiError>,
    mut accept: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, IpmiError> {
    let mut buf = vec![0u8; 1024];
    let mut wait = timing.timeout;
    for attempt in 0..=timing.retries {
        if attempt > 0 {
            tokio::time::sleep(timing.backoff * (1 << (attempt - 1).min(6))).await;
        }
        let p = build()?;
        sock.send(&p)
            .await
            .map_err(|e| IpmiError::Io(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    // ICMP port unreachable shows up as a receive error on a connected socket.
                    tracing::debug!(error = %e, attempt, "ipmi receive failed");
                    break;
                }
                Ok(Ok(n)) => {
                    if let Some(v) = accept(&buf[..n]) {
                        return Ok(v);
                    }
                }
            }
        }
        wait = (wait * 2).min(timing.timeout * 4);
    }
    Err(IpmiError::Timeout)
}

fn rakp_payload(p: &[u8], want_type: u8, tag: u8) -> Option<Vec<u8>> {
    match packet::parse_packet(p, None)? {
        Incoming::V20 {
            payload_type,
            payload,
            ..
        } if payload_type == want_type && payload.first() == Some(&tag) => Some(payload),
        _ => None,
    }
}

fn status_check(step: &'static str, payload: &[u8]) -> Result<(), IpmiError> {
    match payload.get(1) {
        Some(0) => Ok(()),
        Some(&code) => Err(IpmiError::Rakp { step, code }),
        None => Err(IpmiError::Protocol(format!("{step}: short message"))),
    }
}

impl Session {
    /// Opens a session: resolves and connects, then runs the RMCP+ or the
    /// IPMI 1.5 handshake, as `cfg.version` says.
    pub async fn open(cfg: &BmcConfig, timing: &Timing) -> Result<Self, IpmiError> {
        let sock = UdpSocket::bind(if cfg.host.contains(':') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })
        .await
        .map_err(|e| IpmiError::Io(e.to_string()))?;
        sock.connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|e| IpmiError::Io(format!("{}:{}: {e}", cfg.host, cfg.port)))?;
        let proto = match cfg.version {
            IpmiVersion::V20 => Proto::V20(Self::handshake_v20(&sock, cfg, timing).await?),
            IpmiVersion::V15 => Proto::V15(v15::handshake(&sock, cfg, timing).await?),
        };
        let mut session = Self {
            sock,
            proto,
            rq_seq: 0,
            timing: timing.clone(),
            last_used: Instant::now(),
        };
        // Raise the session to the requested privilege (it starts at User).
        session
            .request(0x06, 0x3B, &[cfg.privilege])
            .await?
            .completed("Set Session Privilege Level")?;
        tracing::debug!(host = %cfg.host, port = cfg.port, version = ?cfg.version, "ipmi session open");
        Ok(session)
    }

    /// The RMCP+ handshake.
    async fn handshake_v20(
        sock: &UdpSocket,
        cfg: &BmcConfig,
        timing: &Timing,
    ) -> Result<Rmcpp, IpmiError> {
        let suite = cfg.suite;
        let alg = suite.auth();

        // 1. Get Channel Authentication Capabilities (IPMI 1.5 framing, no session).
        let caps_req = packet::v15_unauthenticated(&packet::ipmi_request(
            0x06,
            0,
            0x38,
            &[0x8E, cfg.privilege],
        ));
        let caps = exchange(
            sock,
            timing,
            || Ok(caps_req.clone()),
            |p| match packet::parse_packet(p, None)? {
                Incoming::V15(m) => packet::parse_ipmi_response(&m).filter(|r| r.cmd == 0x38),
                _ => None,
            },
        )
        .await?
        .completed("Get Channel Authentication Capabilities")?;
        if caps.data.get(1).is_some_and(|b| b & 0x80 == 0) {
            return Err(IpmiError::Protocol(
                "the BMC does not support IPMI 2.0 (RMCP+)".into(),
            ));
        }

        // 2. Open Session.
        let console_sid = random_u32()?;
        let (a, i, c) = suite.algorithms();
        let mut open = vec![0x00, cfg.privilege, 0, 0];
        open.extend_from_slice(&console_sid.to_le_bytes());
        open.extend_from_slice(&[0x00, 0, 0, 0x08, a, 0, 0, 0]);
        open.extend_from_slice(&[0x01, 0, 0, 0x08, i, 0, 0, 0]);
        open.extend_from_slice(&[0x02, 0, 0, 0x08, c, 0, 0, 0]);
        let rsp = exchange(
            sock,
            timing,
            || {
                Ok(packet::v20_packet(
                    payload::OPEN_SESSION_REQ,
                    0,
                    0,
                    &open,
                    None,
                ))
            },
            |p| rakp_payload(p, payload::OPEN_SESSION_RSP, 0x00),
        )
        .await?;
        status_check("Open Session", &rsp)?;
        if rsp.len() < 12 || rsp[4..8] != console_sid.to_le_bytes() {
            return Err(IpmiError::Protocol("Open Session: bad response".into()));
        }
        let bmc_sid = u32::from_le_bytes([rsp[8], rsp[9], rsp[10], rsp[11]]);

        // 3. RAKP 1 / 2.
        let console_rand = random16()?;
        let role = cfg.privilege | NAME_ONLY_LOOKUP;
        let user = cfg.username.as_bytes();
        if user.len() > 16 {
            return Err(IpmiError::Protocol("user name longer than 16 bytes".into()));
        }
        let mut r1 = vec![0x01, 0, 0, 0];
        r1.extend_from_slice(&bmc_sid.to_le_bytes());
        r1.extend_from_slice(&console_rand);
        r1.extend_from_slice(&[role, 0, 0, user.len() as u8]);
        r1.extend_from_slice(user);
        let r2 = exchange(
            sock,
            timing,
            || Ok(packet::v20_packet(payload::RAKP1, 0, 0, &r1, None)),
            |p| rakp_payload(p, payload::RAKP2, 0x01),
        )
        .await?;
        status_check("RAKP 2", &r2)?;
        let hlen = alg.hmac(&[], &[]).len();
        if r2.len() < 40 + hlen {
            return Err(IpmiError::Protocol("RAKP 2: short message".into()));
        }
        let mut params = RakpParams {
            console_sid,
            bmc_sid,
            console_rand,
            bmc_rand: [0; 16],
            bmc_guid: [0; 16],
            role,
            username: user,
        };
        params.bmc_rand.copy_from_slice(&r2[8..24]);
        params.bmc_guid.copy_from_slice(&r2[24..40]);
        let kuid = crypto::password_key(cfg.password.as_bytes());
        if params.rakp2_auth(alg, &kuid) != r2[40..40 + hlen] {
            return Err(IpmiError::Auth(
                "RAKP 2 authentication code mismatch (wrong password?)".into(),
            ));
        }

        // 4. RAKP 3 / 4.
        let mut r3 = vec![0x02, 0, 0, 0];
        r3.extend_from_slice(&bmc_sid.to_le_bytes());
        r3.extend_from_slice(&params.rakp3_auth(alg, &kuid));
        let r4 = exchange(
            sock,
            timing,
            || Ok(packet::v20_packet(payload::RAKP3, 0, 0, &r3, None)),
            |p| rakp_payload(p, payload::RAKP4, 0x02),
        )
        .await?;
        status_check("RAKP 4", &r4)?;
        let kg = cfg.kg.clone().unwrap_or_else(|| kuid.clone());
        let sik = params.sik(alg, &kg);
        let icv = params.rakp4_icv(alg, &sik);
        if r4.get(8..8 + icv.len()) != Some(&icv[..]) {
            return Err(IpmiError::Auth(
                "RAKP 4 integrity check value mismatch".into(),
            ));
        }
        let (k1, aes) = crypto::derive_keys(alg, &sik);
        Ok(Rmcpp {
            keys: SessionKeys { alg, k1, aes },
            bmc_sid,
            console_sid,
            seq: 0,
        })
    }

    /// Sends one IPMI request in the session and returns the response.
    pub async fn request(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<IpmiResponse, IpmiError> {
        self.rq_seq = (self.rq_seq + 1) & 0x3F;
        let rq_seq = self.rq_seq;
        let msg = packet::ipmi_request(netfn, rq_seq, cmd, data);
        let matches =
            move |r: &IpmiResponse| r.rq_seq == rq_seq && r.cmd == cmd && r.netfn == netfn + 1;
        let Self {
            sock,
            proto,
            timing,
            ..
        } = self;
        let r = match proto {
            Proto::V20(s) => {
                // `accept` reads what `build` never changes: a copy of the keys and IDs.
                let reader = Rmcpp {
                    keys: s.keys.clone(),
                    bmc_sid: s.bmc_sid,
                    console_sid: s.console_sid,
                    seq: 0,
                };
                exchange(
                    sock,
                    timing,
                    || s.next_packet(payload::IPMI, &msg),
                    |p| {
                        reader
                            .accept(p, payload::IPMI)
                            .and_then(|m| packet::parse_ipmi_response(&m))
                            .filter(matches)
                    },
                )
                .await?
            }
            Proto::V15(s) => {
                let reader = s.clone();
                exchange(
                    sock,
                    timing,
                    || Ok(s.next_packet(&msg)),
                    |p| {
                        reader
                            .accept(p)
                            .and_then(|m| packet::parse_ipmi_response(&m))
                            .filter(matches)
                    },
                )
                .await?
            }
        };
        self.last_used = Instant::now();
        Ok(r)
    }

    /// The BMC's session ID (the one Close Session names, and the one Get
    /// Payload Instance Info names for a payload active in this session).
    pub(crate) fn bmc_session_id(&self) -> u32 {
        match &self.proto {
            Proto::V20(s) => s.bmc_sid,
            Proto::V15(s) => s.session_id,
        }
    }

    /// Sends one packet of another RMCP+ payload type (SOL) in the session,
    /// encrypted and authenticated like IPMI messages. Not available in
    /// IPMI 1.5 sessions.
    pub(crate) async fn send_payload(
        &mut self,
        payload_type: u8,
        payload: &[u8],
    ) -> Result<(), IpmiError> {
        let Proto::V20(s) = &mut self.proto else {
            return Err(IpmiError::Protocol(
                "payloads other than IPMI messages need an IPMI 2.0 session".into(),
            ));
        };
        let p = s.next_packet(payload_type, payload)?;
        self.sock
            .send(&p)
            .await
            .map_err(|e| IpmiError::Io(e.to_string()))?;
        Ok(())
    }

    /// Decodes a received packet of this session: `(payload type, payload)`
    /// for RMCP+ sessions; `None` for foreign or forged packets.
    pub(crate) fn decode(&self, p: &[u8]) -> Option<(u8, Vec<u8>)> {
        match &self.proto {
            Proto::V20(s) => s.decode(p),
            Proto::V15(_) => None,
        }
    }

    /// The session's connected socket (for receiving unsolicited packets).
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Limits retransmissions of later requests (for best-effort goodbyes).
    pub(crate) fn set_retries(&mut self, retries: u32) {
        self.timing.retries = retries;
    }

    /// Closes the session on the BMC (best effort, one attempt).
    pub async fn close(mut self) {
        self.timing.retries = 0;
        let sid = self.bmc_session_id().to_le_bytes();
        let _ = self.request(0x06, 0x3C, &sid).await;
    }

    /// Idle time since the last answer.
    pub fn idle(&self) -> Duration {
        self.last_used.elapsed()
    }
}
