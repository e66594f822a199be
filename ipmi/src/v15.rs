//! IPMI 1.5 LAN sessions, for BMCs older than RMCP+ (`ipmi_protocol_version`
//! "1.5"): Get Channel Authentication Capabilities, Get Session Challenge,
//! Activate Session (then Set Session Privilege Level and Close Session as
//! in 2.0), and the per-message authentication code.
//!
//! Framing (IPMI 2.0 spec §13.6, the v1.5 session header): RMCP header,
//! authentication type, session sequence number (LE), session ID (LE), a
//! 16-byte AuthCode unless the type is none, message length, message.
//!
//! AuthCodes: none (absent), straight password (the password, zero-padded
//! to 16 bytes) and MD5 (`MD5(password | session ID | message | session
//! sequence | password)`, the password zero-padded to 16 bytes). MD2 is not
//! implemented: MD5 is preferred whenever a BMC offers both.
//!
//! Sequence numbers: Activate Session is sent with the temporary session ID
//! from the challenge and sequence number 0; afterwards the console uses the
//! BMC's "initial inbound sequence number" for its first message and counts
//! up by one per transmitted packet (skipping 0).

use md5::Digest as _;

use crate::crypto;
use crate::message::{self as ipmi, netfn::APP as NETFN_APP};
use crate::packet::{AUTH_RMCPPLUS, RMCP_HEADER};
use crate::{BmcConfig, IpmiError};

/// Session authentication types (bit numbers of the capabilities mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// No authentication code.
    None = 0,
    /// MD5 of password, session ID, message, sequence number and password.
    Md5 = 2,
    /// The password in clear.
    Straight = 4,
}

impl AuthType {
    /// The strongest type this client speaks that the BMC's Get Channel
    /// Authentication Capabilities mask (response data byte 2) offers:
    /// MD5, then straight password, then none.
    pub fn choose(mask: u8) -> Option<Self> {
        [Self::Md5, Self::Straight, Self::None]
            .into_iter()
            .find(|t| mask & (1 << *t as u8) != 0)
    }

    /// The type byte in packets and commands.
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// A password zero-padded (or cut) to the 16 bytes IPMI 1.5 uses.
pub fn password16(password: &str) -> [u8; 16] {
    let mut p = [0u8; 16];
    let b = password.as_bytes();
    let n = b.len().min(16);
    p[..n].copy_from_slice(&b[..n]);
    p
}

/// The AuthCode of one message, `None` for auth type none.
pub fn auth_code(
    auth: AuthType,
    password: &[u8; 16],
    session_id: u32,
    seq: u32,
    msg: &[u8],
) -> Option<[u8; 16]> {
    match auth {
        AuthType::None => None,
        AuthType::Straight => Some(*password),
        AuthType::Md5 => {
            let mut h = md5::Md5::new();
            h.update(password);
            h.update(session_id.to_le_bytes());
            h.update(msg);
            h.update(seq.to_le_bytes());
            h.update(password);
            Some(h.finalize().into())
        }
    }
}

/// Encodes an IPMI 1.5 packet carrying `msg`.
pub fn packet(
    auth: AuthType,
    password: &[u8; 16],
    session_id: u32,
    seq: u32,
    msg: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(30 + msg.len());
    p.extend_from_slice(&RMCP_HEADER);
    p.push(auth.byte());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&session_id.to_le_bytes());
    if let Some(code) = auth_code(auth, password, session_id, seq, msg) {
        p.extend_from_slice(&code);
    }
    p.push(msg.len() as u8);
    p.extend_from_slice(msg);
    p
}

/// A decoded IPMI 1.5 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet15 {
    /// Authentication type byte.
    pub auth: u8,
    /// Session sequence number.
    pub seq: u32,
    /// Session ID.
    pub session_id: u32,
    /// AuthCode, when the type is not none.
    pub code: Option<[u8; 16]>,
    /// The IPMI message.
    pub msg: Vec<u8>,
}

/// Decodes an IPMI 1.5 packet (`None` for RMCP+ or malformed packets).
pub fn parse(p: &[u8]) -> Option<Packet15> {
    if p.len() < 14 || p[..4] != RMCP_HEADER || p[4] == AUTH_RMCPPLUS {
        return None;
    }
    let auth = p[4];
    let seq = u32::from_le_bytes(p[5..9].try_into().ok()?);
    let session_id = u32::from_le_bytes(p[9..13].try_into().ok()?);
    let (code, off) = if auth == 0 {
        (None, 13)
    } else {
        (Some(p.get(13..29)?.try_into().ok()?), 29)
    };
    let len = *p.get(off)? as usize;
    let msg = p.get(off + 1..off + 1 + len)?.to_vec();
    Some(Packet15 {
        auth,
        seq,
        session_id,
        code,
        msg,
    })
}

/// The state of an active IPMI 1.5 session.
#[derive(Debug, Clone)]
pub struct Lan15 {
    /// Negotiated authentication type.
    pub auth: AuthType,
    /// Session ID the BMC assigned.
    pub session_id: u32,
    /// The next session sequence number we send.
    pub seq: u32,
    /// The zero-padded password.
    pub password: [u8; 16],
    /// The BMC said per-message authentication is disabled (Get Channel
    /// Authentication Capabilities): answers may then come without AuthCode.
    pub unauthenticated_answers: bool,
}

impl Lan15 {
    /// The next packet in the session (each call uses a new sequence number,
    /// so retransmissions are fresh packets as the BMC's replay window wants).
    pub fn next_packet(&mut self, msg: &[u8]) -> Vec<u8> {
        let p = packet(self.auth, &self.password, self.session_id, self.seq, msg);
        self.seq = self.seq.wrapping_add(1).max(1);
        p
    }

    /// The message of a packet from the BMC in this session, after checking
    /// its session ID and, for MD5 and straight password, its AuthCode.
    pub fn accept(&self, p: &[u8]) -> Option<Vec<u8>> {
        let pk = parse(p)?;
        if pk.session_id != self.session_id {
            return None;
        }
        if pk.auth == self.auth.byte() && self.auth != AuthType::None {
            let want = auth_code(self.auth, &self.password, pk.session_id, pk.seq, &pk.msg);
            if pk.code != want {
                tracing::debug!("ipmi 1.5 response with a wrong AuthCode dropped");
                return None;
            }
        } else if pk.auth != self.auth.byte() && !(pk.auth == 0 && self.unauthenticated_answers) {
            return None;
        }
        Some(pk.msg)
    }
}

/// Checks a Get Session Challenge or Activate Session completion code.
pub fn session_completion(cmd: &'static str, code: u8) -> Result<(), IpmiError> {
    match code {
        0 => Ok(()),
        0x81 if cmd == "Get Session Challenge" => Err(IpmiError::Auth(
            "Get Session Challenge: invalid user name".into(),
        )),
        0x82 if cmd == "Get Session Challenge" => Err(IpmiError::Auth(
            "Get Session Challenge: null user name not enabled".into(),
        )),
        0x81 => Err(IpmiError::Auth(format!("{cmd}: no session slot available"))),
        0x84 | 0x86 => Err(IpmiError::Auth(format!(
            "{cmd}: requested privilege level not permitted (code {code:#04x})"
        ))),
        code => Err(IpmiError::Completion { cmd, code }),
    }
}

/// Where an IPMI 1.5 handshake is.
#[derive(Debug, Clone)]
enum Step {
    /// Get Channel Authentication Capabilities (no v2.0 bit).
    Capabilities,
    /// Get Session Challenge with the chosen type.
    Challenge {
        auth: AuthType,
        per_message_off: bool,
    },
    /// Activate Session, authenticated with the temporary session ID and
    /// sequence number 0.
    Activate {
        auth: AuthType,
        per_message_off: bool,
        temp_sid: u32,
        request: Vec<u8>,
    },
}

/// The IPMI 1.5 handshake (capabilities, challenge, activation) as a
/// state machine without I/O: send [`Handshake15::datagram`], feed what
/// arrives to [`Handshake15::receive`]. Set Session Privilege Level follows
/// in the session (see [`crate::session::Handshake`]).
#[derive(Debug, Clone)]
pub struct Handshake15 {
    password: [u8; 16],
    user: Vec<u8>,
    privilege: u8,
    host: String,
    step: Step,
}

/// What a datagram did to an IPMI 1.5 handshake.
#[derive(Debug)]
pub enum Progress15 {
    /// Not the answer to the current step.
    Ignored,
    /// The step is done: send the next datagram.
    Next,
    /// The session is active.
    Active(Lan15),
}

impl Handshake15 {
    /// Starts a handshake.
    pub fn new(cfg: &BmcConfig) -> Result<Self, IpmiError> {
        let user = cfg.username.as_bytes();
        if user.len() > 16 {
            return Err(IpmiError::Protocol("user name longer than 16 bytes".into()));
        }
        Ok(Self {
            password: password16(&cfg.password),
            user: user.to_vec(),
            privilege: cfg.privilege,
            host: format!("{}:{}", cfg.host, cfg.port),
            step: Step::Capabilities,
        })
    }

    fn outside(&self, cmd: u8, data: &[u8]) -> Vec<u8> {
        packet(
            AuthType::None,
            &self.password,
            0,
            0,
            &ipmi::ipmi_request(NETFN_APP, 0, cmd, data),
        )
    }

    /// The datagram of the current step (the same for each retransmission).
    pub fn datagram(&self) -> Vec<u8> {
        match &self.step {
            Step::Capabilities => self.outside(0x38, &[0x0E, self.privilege]),
            Step::Challenge { auth, .. } => {
                let mut data = vec![auth.byte()];
                data.extend_from_slice(&self.user);
                data.resize(17, 0);
                self.outside(0x39, &data)
            }
            Step::Activate { request, .. } => request.clone(),
        }
    }

    /// The error to report when the current step got no answer: BMCs drop
    /// activations whose AuthCode does not verify.
    pub fn no_answer(&self, e: IpmiError) -> IpmiError {
        match (&self.step, e) {
            (Step::Activate { auth, .. }, IpmiError::Timeout) if *auth != AuthType::None => {
                IpmiError::Auth("Activate Session got no answer (wrong password?)".into())
            }
            (_, e) => e,
        }
    }

    /// Takes a datagram from the BMC.
    pub fn receive(&mut self, p: &[u8]) -> Result<Progress15, IpmiError> {
        let unauth = |cmd: u8| {
            parse(p)
                .and_then(|pk| ipmi::parse_ipmi_response(&pk.msg))
                .filter(|r| r.cmd == cmd)
        };
        match &self.step {
            Step::Capabilities => {
                let Some(caps) = unauth(0x38) else {
                    return Ok(Progress15::Ignored);
                };
                let caps = caps.completed("Get Channel Authentication Capabilities")?;
                let mask = caps.data.get(1).copied().unwrap_or(0);
                let per_message_off = caps.data.get(2).is_some_and(|b| b & 0x10 != 0);
                let auth = AuthType::choose(mask).ok_or_else(|| {
                    IpmiError::Auth(format!(
                        "the BMC offers no IPMI 1.5 authentication type this client speaks (mask {mask:#04x}; MD2 and OEM are not supported)"
                    ))
                })?;
                if auth == AuthType::None {
                    tracing::warn!(bmc = %self.host, "ipmi 1.5 session without authentication: the BMC offers no MD5 or password type");
                }
                self.step = Step::Challenge {
                    auth,
                    per_message_off,
                };
                Ok(Progress15::Next)
            }
            Step::Challenge {
                auth,
                per_message_off,
            } => {
                let Some(ch) = unauth(0x39) else {
                    return Ok(Progress15::Ignored);
                };
                session_completion("Get Session Challenge", ch.completion)?;
                let Some(challenge) = ch.data.get(4..20) else {
                    return Err(IpmiError::Protocol(
                        "Get Session Challenge: short response".into(),
                    ));
                };
                let temp_sid = u32::from_le_bytes([ch.data[0], ch.data[1], ch.data[2], ch.data[3]]);
                let outbound = crypto::random_u32()?;
                let mut data = vec![auth.byte(), self.privilege];
                data.extend_from_slice(challenge);
                data.extend_from_slice(&outbound.to_le_bytes());
                let msg = ipmi::ipmi_request(NETFN_APP, 0, 0x3A, &data);
                self.step = Step::Activate {
                    auth: *auth,
                    per_message_off: *per_message_off,
                    temp_sid,
                    request: packet(*auth, &self.password, temp_sid, 0, &msg),
                };
                Ok(Progress15::Next)
            }
            Step::Activate {
                temp_sid,
                per_message_off,
                ..
            } => {
                let Some(act) = parse(p)
                    .filter(|pk| pk.session_id == *temp_sid || pk.session_id == 0)
                    .and_then(|pk| ipmi::parse_ipmi_response(&pk.msg))
                    .filter(|r| r.cmd == 0x3A)
                else {
                    return Ok(Progress15::Ignored);
                };
                session_completion("Activate Session", act.completion)?;
                let d = &act.data;
                if d.len() < 9 {
                    return Err(IpmiError::Protocol(
                        "Activate Session: short response".into(),
                    ));
                }
                let session_id = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
                let seq = u32::from_le_bytes([d[5], d[6], d[7], d[8]]);
                let auth = match d[0] & 0x0F {
                    0 => AuthType::None,
                    2 => AuthType::Md5,
                    4 => AuthType::Straight,
                    other => {
                        return Err(IpmiError::Protocol(format!(
                            "Activate Session: unsupported session auth type {other}"
                        )));
                    }
                };
                Ok(Progress15::Active(Lan15 {
                    auth,
                    session_id,
                    seq: seq.max(1),
                    password: self.password,
                    unauthenticated_answers: *per_message_off,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_auth_code_covers_password_sid_msg_seq_password() {
        let pw = password16("pw");
        let msg = [0x20, 0x18, 0xC8, 0x81, 0x04, 0x3B, 0x04, 0x3C];
        let code = auth_code(AuthType::Md5, &pw, 0x1122_3344, 7, &msg).expect("md5");
        let mut all = Vec::new();
        all.extend_from_slice(&pw);
        all.extend_from_slice(&[0x44, 0x33, 0x22, 0x11]);
        all.extend_from_slice(&msg);
        all.extend_from_slice(&[7, 0, 0, 0]);
        all.extend_from_slice(&pw);
        let want: [u8; 16] = md5::Md5::digest(&all).into();
        assert_eq!(code, want);
        assert_eq!(auth_code(AuthType::Straight, &pw, 1, 2, &msg), Some(pw));
        assert_eq!(auth_code(AuthType::None, &pw, 1, 2, &msg), None);
    }

    #[test]
    fn packets_round_trip_and_auth_choice() {
        let pw = password16("secret");
        let mut s = Lan15 {
            auth: AuthType::Md5,
            session_id: 0xAABB_CCDD,
            seq: 0xFFFF_FFFF,
            password: pw,
            unauthenticated_answers: false,
        };
        let p = s.next_packet(&[1, 2, 3]);
        assert_eq!(s.seq, 1, "sequence numbers skip 0");
        let pk = parse(&p).expect("parses");
        assert_eq!(
            (pk.auth, pk.seq, pk.session_id),
            (2, 0xFFFF_FFFF, 0xAABB_CCDD)
        );
        assert_eq!(pk.msg, [1, 2, 3]);
        assert_eq!(s.accept(&p).as_deref(), Some(&[1u8, 2, 3][..]));
        let mut bad = p.clone();
        bad[20] ^= 1;
        assert!(s.accept(&bad).is_none(), "AuthCode checked");
        let unauth = packet(AuthType::None, &pw, 0xAABB_CCDD, 5, &[1, 2, 3]);
        assert!(s.accept(&unauth).is_none(), "no AuthCode: refused");
        s.unauthenticated_answers = true;
        assert!(
            s.accept(&unauth).is_some(),
            "unless per-message auth is off"
        );
        let none = packet(AuthType::None, &pw, 0, 0, &[9]);
        assert_eq!(none.len(), 4 + 10 + 1);
        assert_eq!(AuthType::choose(0b0001_0111), Some(AuthType::Md5));
        assert_eq!(AuthType::choose(0b0001_0001), Some(AuthType::Straight));
        assert_eq!(AuthType::choose(0b0000_0001), Some(AuthType::None));
        assert_eq!(AuthType::choose(0b0000_0010), None, "MD2 only");
    }
}
