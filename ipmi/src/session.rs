//! One session with one BMC as a state machine without I/O.
//!
//! [`Handshake`] runs RMCP+ (IPMI 2.0) session setup (Get Channel
//! Authentication Capabilities, Open Session, RAKP 1–4) or an IPMI 1.5
//! handshake ([`crate::v15`]), then Set Session Privilege Level: the caller
//! sends [`Handshake::datagram`] (again on each retransmission) and feeds
//! every datagram that arrives to [`Handshake::receive`] until it says
//! [`Progress::Established`]. [`Session`] is the established session:
//! [`Session::request`] starts a request, [`Session::datagram`] encodes it
//! (a fresh session sequence number per transmission) and
//! [`Session::response`] picks its answer out of the datagrams received.
//! Sockets, timers and retries belong to the caller ([`crate::client`]
//! with tokio; the BMC fleet's tests drive it without any socket).

use crate::crypto::{self, AuthAlg, RakpParams};
use crate::message::{self, IpmiResponse, netfn};
use crate::packet::{self, Incoming, SessionKeys, payload};
use crate::v15::{Handshake15, Lan15, Progress15};
use crate::{BmcConfig, CipherSuite, IpmiError, IpmiVersion};

/// Set Session Privilege Level (App).
const SET_SESSION_PRIVILEGE: u8 = 0x3B;
/// Close Session (App).
const CLOSE_SESSION: u8 = 0x3C;
/// Name-only lookup bit of the RAKP 1 role byte (as ipmitool sends it).
const NAME_ONLY_LOOKUP: u8 = 0x10;

impl CipherSuite {
    fn auth(self) -> AuthAlg {
        match self {
            Self::Suite3 => AuthAlg::HmacSha1,
            Self::Suite17 => AuthAlg::HmacSha256,
        }
    }
}

/// The protocol state of an RMCP+ session.
#[derive(Debug, Clone)]
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
            Some((&self.keys, crypto::random16()?)),
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
}

#[derive(Debug, Clone)]
enum Proto {
    V20(Rmcpp),
    V15(Lan15),
}

/// An IPMI request in a session: its message, and what its answer must match.
#[derive(Debug, Clone)]
pub struct Request {
    msg: Vec<u8>,
    netfn: u8,
    cmd: u8,
    rq_seq: u8,
}

impl Request {
    /// The command.
    pub fn cmd(&self) -> u8 {
        self.cmd
    }
}

/// An established session (no I/O; see the module docs).
#[derive(Debug, Clone)]
pub struct Session {
    proto: Proto,
    rq_seq: u8,
}

impl Session {
    fn new(proto: Proto) -> Self {
        Self { proto, rq_seq: 0 }
    }

    /// Starts an IPMI request (the next requester sequence number).
    pub fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Request {
        self.rq_seq = (self.rq_seq + 1) & 0x3F;
        Request {
            msg: message::ipmi_request(netfn, self.rq_seq, cmd, data),
            netfn,
            cmd,
            rq_seq: self.rq_seq,
        }
    }

    /// The datagram carrying `req`; each call (each retransmission) uses a
    /// new session sequence number, as the BMC's replay window wants.
    pub fn datagram(&mut self, req: &Request) -> Result<Vec<u8>, IpmiError> {
        match &mut self.proto {
            Proto::V20(s) => s.next_packet(payload::IPMI, &req.msg),
            Proto::V15(s) => Ok(s.next_packet(&req.msg)),
        }
    }

    /// The answer to `req` if datagram `p` is it.
    pub fn response(&self, req: &Request, p: &[u8]) -> Option<IpmiResponse> {
        let msg = match &self.proto {
            Proto::V20(s) => s
                .decode(p)
                .filter(|(t, _)| *t == payload::IPMI)
                .map(|(_, m)| m)?,
            Proto::V15(s) => s.accept(p)?,
        };
        message::parse_ipmi_response(&msg)
            .filter(|r| r.rq_seq == req.rq_seq && r.cmd == req.cmd && r.netfn == req.netfn + 1)
    }

    /// Close Session for this session.
    pub fn close_request(&mut self) -> Request {
        let sid = self.bmc_session_id().to_le_bytes();
        self.request(netfn::APP, CLOSE_SESSION, &sid)
    }

    /// The BMC's session ID (the one Close Session names, and the one Get
    /// Payload Instance Info names for a payload active in this session).
    pub fn bmc_session_id(&self) -> u32 {
        match &self.proto {
            Proto::V20(s) => s.bmc_sid,
            Proto::V15(s) => s.session_id,
        }
    }

    /// A datagram of another RMCP+ payload type (SOL) in the session,
    /// encrypted and authenticated like IPMI messages. Not available in
    /// IPMI 1.5 sessions.
    pub fn payload_datagram(
        &mut self,
        payload_type: u8,
        payload: &[u8],
    ) -> Result<Vec<u8>, IpmiError> {
        match &mut self.proto {
            Proto::V20(s) => s.next_packet(payload_type, payload),
            Proto::V15(_) => Err(IpmiError::Protocol(
                "payloads other than IPMI messages need an IPMI 2.0 session".into(),
            )),
        }
    }

    /// Decodes a received datagram of this session: `(payload type,
    /// payload)` for RMCP+ sessions; `None` for foreign or forged packets
    /// and in IPMI 1.5 sessions.
    pub fn decode(&self, p: &[u8]) -> Option<(u8, Vec<u8>)> {
        match &self.proto {
            Proto::V20(s) => s.decode(p),
            Proto::V15(_) => None,
        }
    }
}

/// What a datagram did to a [`Handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not the answer to the current step (stale, foreign or malformed):
    /// keep waiting.
    Ignored,
    /// The step is done: send [`Handshake::datagram`] for the next one.
    Next,
    /// The session is established at the requested privilege:
    /// [`Handshake::into_session`].
    Established,
}

/// Where an RMCP+ handshake is.
#[derive(Debug, Clone)]
enum Rakp {
    Capabilities,
    Open {
        console_sid: u32,
    },
    Rakp1 {
        console_sid: u32,
        bmc_sid: u32,
        console_rand: [u8; 16],
    },
    Rakp3 {
        console_sid: u32,
        bmc_sid: u32,
        console_rand: [u8; 16],
        bmc_rand: [u8; 16],
        bmc_guid: [u8; 16],
    },
}

#[derive(Debug, Clone)]
enum Phase {
    V20(Rakp),
    V15(Handshake15),
    /// Set Session Privilege Level in the new session.
    Privilege(Session, Request),
    Established(Session),
}

/// Session setup as a state machine (see the module docs).
#[derive(Debug, Clone)]
pub struct Handshake {
    cfg: BmcConfig,
    phase: Phase,
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

fn array16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    let n = b.len().min(16);
    a[..n].copy_from_slice(&b[..n]);
    a
}

impl Handshake {
    /// Starts setting up a session as `cfg` says (RMCP+ or IPMI 1.5).
    pub fn new(cfg: &BmcConfig) -> Result<Self, IpmiError> {
        if cfg.username.len() > 16 {
            return Err(IpmiError::Protocol("user name longer than 16 bytes".into()));
        }
        let phase = match cfg.version {
            IpmiVersion::V20 => Phase::V20(Rakp::Capabilities),
            IpmiVersion::V15 => Phase::V15(Handshake15::new(cfg)?),
        };
        Ok(Self {
            cfg: cfg.clone(),
            phase,
        })
    }

    fn role(&self) -> u8 {
        self.cfg.privilege | NAME_ONLY_LOOKUP
    }

    fn params(
        &self,
        console_sid: u32,
        bmc_sid: u32,
        console_rand: [u8; 16],
        bmc_rand: [u8; 16],
        bmc_guid: [u8; 16],
    ) -> RakpParams<'_> {
        RakpParams {
            console_sid,
            bmc_sid,
            console_rand,
            bmc_rand,
            bmc_guid,
            role: self.role(),
            username: self.cfg.username.as_bytes(),
        }
    }

    fn kuid(&self) -> Vec<u8> {
        crypto::password_key(self.cfg.password.as_bytes())
    }

    /// The datagram of the current step. Send it again for each
    /// retransmission: handshake messages repeat, the privilege request
    /// gets a new session sequence number each time.
    pub fn datagram(&mut self) -> Result<Vec<u8>, IpmiError> {
        if let Phase::Privilege(session, req) = &mut self.phase {
            return session.datagram(req);
        }
        let cfg = &self.cfg;
        Ok(match &self.phase {
            Phase::V20(Rakp::Capabilities) => {
                // IPMI 1.5 framing, no session; the v2.0 bit asks for RMCP+ support.
                packet::v15_unauthenticated(&message::ipmi_request(
                    netfn::APP,
                    0,
                    0x38,
                    &[0x8E, cfg.privilege],
                ))
            }
            Phase::V20(Rakp::Open { console_sid }) => {
                let (a, i, c) = cfg.suite.algorithms();
                let mut open = vec![0x00, cfg.privilege, 0, 0];
                open.extend_from_slice(&console_sid.to_le_bytes());
                open.extend_from_slice(&[0x00, 0, 0, 0x08, a, 0, 0, 0]);
                open.extend_from_slice(&[0x01, 0, 0, 0x08, i, 0, 0, 0]);
                open.extend_from_slice(&[0x02, 0, 0, 0x08, c, 0, 0, 0]);
                packet::v20_packet(payload::OPEN_SESSION_REQ, 0, 0, &open, None)
            }
            Phase::V20(Rakp::Rakp1 {
                bmc_sid,
                console_rand,
                ..
            }) => {
                let user = cfg.username.as_bytes();
                let mut r1 = vec![0x01, 0, 0, 0];
                r1.extend_from_slice(&bmc_sid.to_le_bytes());
                r1.extend_from_slice(console_rand);
                r1.extend_from_slice(&[cfg.privilege | NAME_ONLY_LOOKUP, 0, 0, user.len() as u8]);
                r1.extend_from_slice(user);
                packet::v20_packet(payload::RAKP1, 0, 0, &r1, None)
            }
            Phase::V20(Rakp::Rakp3 {
                console_sid,
                bmc_sid,
                console_rand,
                bmc_rand,
                bmc_guid,
            }) => {
                let p = self.params(*console_sid, *bmc_sid, *console_rand, *bmc_rand, *bmc_guid);
                let mut r3 = vec![0x02, 0, 0, 0];
                r3.extend_from_slice(&bmc_sid.to_le_bytes());
                r3.extend_from_slice(&p.rakp3_auth(self.cfg.suite.auth(), &self.kuid()));
                packet::v20_packet(payload::RAKP3, 0, 0, &r3, None)
            }
            Phase::V15(h) => h.datagram(),
            Phase::Privilege(..) | Phase::Established(_) => {
                return Err(IpmiError::Protocol(
                    "the session is already established".into(),
                ));
            }
        })
    }

    /// The error to report when the current step got no answer after all
    /// retries (`e`, usually [`IpmiError::Timeout`]).
    pub fn no_answer(&self, e: IpmiError) -> IpmiError {
        match &self.phase {
            Phase::V15(h) => h.no_answer(e),
            _ => e,
        }
    }

    /// Takes a datagram from the BMC.
    pub fn receive(&mut self, p: &[u8]) -> Result<Progress, IpmiError> {
        let alg = self.cfg.suite.auth();
        if let Phase::V15(h) = &mut self.phase {
            let next = match h.receive(p)? {
                Progress15::Ignored => return Ok(Progress::Ignored),
                Progress15::Next => return Ok(Progress::Next),
                Progress15::Active(lan) => self.privilege(Proto::V15(lan)),
            };
            self.phase = next;
            return Ok(Progress::Next);
        }
        let next = match &self.phase {
            Phase::V20(Rakp::Capabilities) => {
                let Some(caps) = (match packet::parse_packet(p, None) {
                    Some(Incoming::V15(m)) => {
                        message::parse_ipmi_response(&m).filter(|r| r.cmd == 0x38)
                    }
                    _ => None,
                }) else {
                    return Ok(Progress::Ignored);
                };
                let caps = caps.completed("Get Channel Authentication Capabilities")?;
                if caps.data.get(1).is_some_and(|b| b & 0x80 == 0) {
                    return Err(IpmiError::Protocol(
                        "the BMC does not support IPMI 2.0 (RMCP+)".into(),
                    ));
                }
                Phase::V20(Rakp::Open {
                    console_sid: crypto::random_u32()?,
                })
            }
            Phase::V20(Rakp::Open { console_sid }) => {
                let Some(rsp) = rakp_payload(p, payload::OPEN_SESSION_RSP, 0x00) else {
                    return Ok(Progress::Ignored);
                };
                status_check("Open Session", &rsp)?;
                if rsp.len() < 12 || rsp[4..8] != console_sid.to_le_bytes() {
                    return Err(IpmiError::Protocol("Open Session: bad response".into()));
                }
                Phase::V20(Rakp::Rakp1 {
                    console_sid: *console_sid,
                    bmc_sid: u32::from_le_bytes([rsp[8], rsp[9], rsp[10], rsp[11]]),
                    console_rand: crypto::random16()?,
                })
            }
            Phase::V20(Rakp::Rakp1 {
                console_sid,
                bmc_sid,
                console_rand,
            }) => {
                let Some(r2) = rakp_payload(p, payload::RAKP2, 0x01) else {
                    return Ok(Progress::Ignored);
                };
                status_check("RAKP 2", &r2)?;
                let hlen = alg.hmac(&[], &[]).len();
                if r2.len() < 40 + hlen {
                    return Err(IpmiError::Protocol("RAKP 2: short message".into()));
                }
                let (console_sid, bmc_sid, console_rand) = (*console_sid, *bmc_sid, *console_rand);
                let (bmc_rand, bmc_guid) = (array16(&r2[8..24]), array16(&r2[24..40]));
                let params = self.params(console_sid, bmc_sid, console_rand, bmc_rand, bmc_guid);
                if params.rakp2_auth(alg, &self.kuid()) != r2[40..40 + hlen] {
                    return Err(IpmiError::Auth(
                        "RAKP 2 authentication code mismatch (wrong password?)".into(),
                    ));
                }
                Phase::V20(Rakp::Rakp3 {
                    console_sid,
                    bmc_sid,
                    console_rand,
                    bmc_rand,
                    bmc_guid,
                })
            }
            Phase::V20(Rakp::Rakp3 {
                console_sid,
                bmc_sid,
                console_rand,
                bmc_rand,
                bmc_guid,
            }) => {
                let Some(r4) = rakp_payload(p, payload::RAKP4, 0x02) else {
                    return Ok(Progress::Ignored);
                };
                status_check("RAKP 4", &r4)?;
                let (console_sid, bmc_sid) = (*console_sid, *bmc_sid);
                let params = self.params(console_sid, bmc_sid, *console_rand, *bmc_rand, *bmc_guid);
                let kuid = self.kuid();
                let kg = self.cfg.kg.clone().unwrap_or(kuid);
                let sik = params.sik(alg, &kg);
                let icv = params.rakp4_icv(alg, &sik);
                if r4.get(8..8 + icv.len()) != Some(&icv[..]) {
                    return Err(IpmiError::Auth(
                        "RAKP 4 integrity check value mismatch".into(),
                    ));
                }
                let (k1, aes) = crypto::derive_keys(alg, &sik);
                self.privilege(Proto::V20(Rmcpp {
                    keys: SessionKeys { alg, k1, aes },
                    bmc_sid,
                    console_sid,
                    seq: 0,
                }))
            }
            Phase::Privilege(session, req) => {
                let Some(r) = session.response(req, p) else {
                    return Ok(Progress::Ignored);
                };
                r.completed("Set Session Privilege Level")?;
                self.phase = Phase::Established(session.clone());
                return Ok(Progress::Established);
            }
            Phase::V15(_) | Phase::Established(_) => return Ok(Progress::Ignored),
        };
        self.phase = next;
        Ok(Progress::Next)
    }

    /// The session raises itself to the requested privilege (it starts at User).
    fn privilege(&self, proto: Proto) -> Phase {
        let mut session = Session::new(proto);
        let req = session.request(netfn::APP, SET_SESSION_PRIVILEGE, &[self.cfg.privilege]);
        Phase::Privilege(session, req)
    }

    /// The established session; `None` before [`Progress::Established`].
    pub fn into_session(self) -> Option<Session> {
        match self.phase {
            Phase::Established(s) => Some(s),
            _ => None,
        }
    }
}
