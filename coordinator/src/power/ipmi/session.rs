//! One RMCP+ session with one BMC: setup (Get Channel Authentication
//! Capabilities, Open Session, RAKP 1–4, Set Session Privilege Level) and
//! request/response with retries, backoff and timeouts.

use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::crypto::{self, AuthAlg, RakpParams};
use super::packet::{self, Incoming, IpmiResponse, SessionKeys, payload};
use super::{BmcConfig, IpmiError, Timing};

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

/// An established session.
#[derive(Debug)]
pub struct Session {
    sock: UdpSocket,
    keys: SessionKeys,
    bmc_sid: u32,
    console_sid: u32,
    seq: u32,
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

fn random_u32() -> Result<u32, IpmiError> {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).map_err(|e| IpmiError::Io(format!("random: {e}")))?;
    Ok(u32::from_le_bytes(b) | 1)
}

/// Sends `packet` (rebuilt per attempt by `build`) and waits for a packet
/// `accept` takes, retrying with exponential backoff.
async fn exchange<T>(
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
    /// Opens a session: resolves and connects, then runs the RMCP+ handshake.
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
            &sock,
            timing,
            || Ok(caps_req.clone()),
            |p| match packet::parse_packet(p, None)? {
                Incoming::V15(m) => packet::parse_ipmi_response(&m).filter(|r| r.cmd == 0x38),
                _ => None,
            },
        )
        .await?;
        if caps.completion != 0 {
            return Err(IpmiError::Completion {
                cmd: "Get Channel Authentication Capabilities",
                code: caps.completion,
            });
        }
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
            &sock,
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
            &sock,
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
            &sock,
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
        let mut session = Self {
            sock,
            keys: SessionKeys { alg, k1, aes },
            bmc_sid,
            console_sid,
            seq: 0,
            rq_seq: 0,
            timing: timing.clone(),
            last_used: Instant::now(),
        };
        // 5. Raise the session to the requested privilege (it starts at User).
        let r = session.request(0x06, 0x3B, &[cfg.privilege]).await?;
        if r.completion != 0 {
            return Err(IpmiError::Completion {
                cmd: "Set Session Privilege Level",
                code: r.completion,
            });
        }
        tracing::debug!(host = %cfg.host, port = cfg.port, bmc_sid, "ipmi session open");
        Ok(session)
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
        let Self {
            sock,
            keys,
            bmc_sid,
            console_sid,
            seq,
            timing,
            ..
        } = self;
        let console_sid = *console_sid;
        let r = exchange(
            sock,
            timing,
            || {
                *seq = seq.wrapping_add(1).max(1);
                Ok(packet::v20_packet(
                    payload::IPMI,
                    *bmc_sid,
                    *seq,
                    &msg,
                    Some((keys, random16()?)),
                ))
            },
            |p| match packet::parse_packet(p, Some(keys))? {
                Incoming::V20 {
                    payload_type: payload::IPMI,
                    session_id,
                    payload,
                } if session_id == console_sid => packet::parse_ipmi_response(&payload)
                    .filter(|r| r.rq_seq == rq_seq && r.cmd == cmd && r.netfn == netfn + 1),
                _ => None,
            },
        )
        .await?;
        self.last_used = Instant::now();
        Ok(r)
    }

    /// Closes the session on the BMC (best effort, one attempt).
    pub async fn close(mut self) {
        self.timing.retries = 0;
        let sid = self.bmc_sid.to_le_bytes();
        let _ = self.request(0x06, 0x3C, &sid).await;
    }

    /// Idle time since the last answer.
    pub fn idle(&self) -> Duration {
        self.last_used.elapsed()
    }
}
