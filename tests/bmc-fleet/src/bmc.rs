//! One simulated BMC: its power state and its RMCP+ sessions.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use ingot_ipmi::crypto::{self, AuthAlg, RakpParams};
use ingot_ipmi::packet::{self, Incoming, SessionKeys, payload};

/// Sessions kept per BMC; the oldest is dropped beyond this.
const MAX_SESSIONS: usize = 16;
/// Administrator privilege.
const ADMIN: u8 = 4;
/// Completion code "invalid command".
const INVALID_COMMAND: u8 = 0xC1;
/// Get Chassis Status queries remembered per BMC; the oldest are dropped beyond this.
pub const MAX_STATUS_QUERIES: usize = 4096;

/// One Get Chassis Status query a BMC answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusQuery {
    /// When it was answered: milliseconds since the Unix epoch (wall clock).
    pub at_ms: u64,
    /// The BMC's session ID it came in: each console (coordinator) opens its
    /// own session, so two session IDs close together mean two consoles.
    pub session: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct Session {
    console_sid: u32,
    privilege: u8,
    role: u8,
    console_rand: [u8; 16],
    bmc_rand: [u8; 16],
    keys: Option<SessionKeys>,
    seq: u32,
    /// The IPMI sequence number of the last Get Chassis Status in this
    /// session: a retransmission repeats it and is not counted again.
    last_status_seq: Option<u8>,
}

/// A simulated BMC.
#[derive(Debug)]
pub struct Bmc {
    index: u64,
    user: Vec<u8>,
    kuid: Vec<u8>,
    power_on: bool,
    /// Times the machine started: power on from off, a cycle or a reset.
    boots: u64,
    sessions: HashMap<u32, Session>,
    next_sid: u32,
    rng: u64,
    guid: [u8; 16],
    status_queries: VecDeque<StatusQuery>,
}

/// A parsed IPMI request message.
struct Request<'a> {
    rs_addr: u8,
    netfn: u8,
    rs_lun: u8,
    rq_addr: u8,
    rq_seq_lun: u8,
    cmd: u8,
    data: &'a [u8],
}

fn parse_request(m: &[u8]) -> Option<Request<'_>> {
    if m.len() < 7
        || packet::checksum(&m[0..2]) != m[2]
        || packet::checksum(&m[3..m.len() - 1]) != m[m.len() - 1]
    {
        return None;
    }
    Some(Request {
        rs_addr: m[0],
        netfn: m[1] >> 2,
        rs_lun: m[1] & 3,
        rq_addr: m[3],
        rq_seq_lun: m[4],
        cmd: m[5],
        data: &m[6..m.len() - 1],
    })
}

fn response(rq: &Request<'_>, completion: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + data.len());
    m.push(rq.rq_addr);
    m.push(((rq.netfn + 1) << 2) | (rq.rq_seq_lun & 3));
    m.push(packet::checksum(&m[0..2]));
    m.push(rq.rs_addr);
    m.push((rq.rq_seq_lun & !3) | rq.rs_lun);
    m.push(rq.cmd);
    m.push(completion);
    m.extend_from_slice(data);
    m.push(packet::checksum(&m[3..]));
    m
}

impl Bmc {
    /// BMC number `index` (its power starts off) accepting one user.
    pub fn new(index: u64, user: &str, password: &str) -> Self {
        let mut guid = [0u8; 16];
        guid[..8].copy_from_slice(&index.to_le_bytes());
        guid[8..].copy_from_slice(b"ingotbmc");
        Self {
            index,
            user: user.as_bytes().to_vec(),
            kuid: crypto::password_key(password.as_bytes()),
            power_on: false,
            boots: 0,
            sessions: HashMap::new(),
            next_sid: 0x100,
            rng: index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            guid,
            status_queries: VecDeque::new(),
        }
    }

    /// The Get Chassis Status queries answered at or after `since_ms`
    /// (milliseconds since the Unix epoch), oldest first; at most the last
    /// [`MAX_STATUS_QUERIES`] are kept. A retransmission (the same session
    /// and IPMI sequence number as the session's previous status query) is
    /// answered but counted once.
    pub fn status_queries(&self, since_ms: u64) -> impl Iterator<Item = StatusQuery> + '_ {
        self.status_queries
            .iter()
            .copied()
            .filter(move |q| q.at_ms >= since_ms)
    }

    /// Records a status query in session `sid` (IPMI sequence number `seq`).
    fn count_status_query(&mut self, sid: u32, seq: u8) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.last_status_seq == Some(seq) {
            return;
        }
        s.last_status_seq = Some(seq);
        if self.status_queries.len() >= MAX_STATUS_QUERIES {
            self.status_queries.pop_front();
        }
        self.status_queries.push_back(StatusQuery {
            at_ms: now_ms(),
            session: sid,
        });
    }

    /// Whether the simulated chassis is powered on.
    pub fn power_on(&self) -> bool {
        self.power_on
    }

    /// Switches the chassis power (out of band).
    pub fn set_power(&mut self, on: bool) {
        if on && !self.power_on {
            self.boots += 1;
        }
        self.power_on = on;
    }

    /// How many times the machine started (power on from off, a power
    /// cycle, a hard reset while on): a watcher that sees it move knows the
    /// machine booted again, however quickly it went off and on.
    pub fn boots(&self) -> u64 {
        self.boots
    }

    /// The BMC's index in its fleet.
    pub fn index(&self) -> u64 {
        self.index
    }

    fn random16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for chunk in out.chunks_mut(8) {
            // xorshift64: not secure, and need not be.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            chunk.copy_from_slice(&self.rng.to_le_bytes());
        }
        out
    }

    /// Answers one datagram; `None` when there is nothing to say.
    pub fn handle(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        if p.len() < 16 || p[0] != 0x06 || p[3] != 0x07 {
            return None;
        }
        if p[4] != packet::AUTH_RMCPPLUS {
            let Incoming::V15(msg) = packet::parse_packet(p, None)? else {
                return None;
            };
            let rq = parse_request(&msg)?;
            if rq.netfn != 0x06 || rq.cmd != 0x38 {
                return Some(packet::v15_unauthenticated(&response(
                    &rq,
                    INVALID_COMMAND,
                    &[],
                )));
            }
            // Channel 1; IPMI 2.0 extended capabilities; non-null user names;
            // IPMI 2.0 connections supported; no OEM.
            let caps = [0x01, 0x80, 0x04, 0x02, 0, 0, 0, 0];
            return Some(packet::v15_unauthenticated(&response(&rq, 0, &caps)));
        }
        let sid = u32::from_le_bytes(p[6..10].try_into().ok()?);
        if sid == 0 {
            let Incoming::V20 {
                payload_type,
                payload,
                ..
            } = packet::parse_packet(p, None)?
            else {
                return None;
            };
            return match payload_type {
                payload::OPEN_SESSION_REQ => self.open_session(&payload),
                payload::RAKP1 => self.rakp1(&payload),
                payload::RAKP3 => self.rakp3(&payload),
                _ => None,
            };
        }
        let session = self.sessions.get(&sid)?;
        if session.privilege == 0 {
            return None; // closed
        }
        let keys = session.keys.clone()?;
        let Incoming::V20 {
            payload_type: payload::IPMI,
            payload,
            ..
        } = packet::parse_packet(p, Some(&keys))?
        else {
            return None;
        };
        let rq = parse_request(&payload)?;
        let (completion, data) = self.command(sid, &rq);
        let msg = response(&rq, completion, &data);
        let iv = self.random16();
        let s = self.sessions.get_mut(&sid)?;
        s.seq = s.seq.wrapping_add(1).max(1);
        Some(packet::v20_packet(
            payload::IPMI,
            s.console_sid,
            s.seq,
            &msg,
            Some((&keys, iv)),
        ))
    }

    /// Runs an IPMI command inside session `sid`.
    fn command(&mut self, sid: u32, rq: &Request<'_>) -> (u8, Vec<u8>) {
        match (rq.netfn, rq.cmd) {
            // App: Get Device ID.
            (0x06, 0x01) => (
                0,
                vec![
                    0x20, 0x01, 0x01, 0x00, 0x02, 0x9F, 0x5B, 0x1E, 0x00, 0x01, 0x00,
                ],
            ),
            // App: Set Session Privilege Level.
            (0x06, 0x3B) => {
                let want = rq.data.first().copied().unwrap_or(0);
                match self.sessions.get_mut(&sid) {
                    Some(s) if want == 0 => (0, vec![s.privilege]),
                    Some(s) if want <= (s.role & 0x0F).max(ADMIN) => {
                        s.privilege = want;
                        (0, vec![want])
                    }
                    _ => (0x81, Vec::new()),
                }
            }
            // App: Close Session.
            (0x06, 0x3C) => {
                let close = rq
                    .data
                    .get(0..4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
                    .unwrap_or(sid);
                // Keep the session until the answer is sent (it needs the console ID).
                self.pending_close(close);
                (0, Vec::new())
            }
            // Chassis: Get Chassis Status.
            (0x00, 0x01) => {
                self.count_status_query(sid, rq.rq_seq_lun >> 2);
                (0, vec![u8::from(self.power_on), 0x00, 0x40, 0x00])
            }
            // Chassis: Chassis Control.
            (0x00, 0x02) => {
                match rq.data.first().map(|b| b & 0x0F) {
                    Some(0) | Some(5) => self.power_on = false,
                    Some(1) => self.set_power(true),
                    Some(2) => {
                        self.boots += 1;
                        self.power_on = true;
                    }
                    Some(3) if self.power_on => self.boots += 1,
                    Some(3) | Some(4) => {}
                    _ => return (0xCC, Vec::new()),
                }
                (0, Vec::new())
            }
            // Chassis: Set System Boot Options (accepted, not remembered).
            (0x00, 0x08) => (0, Vec::new()),
            _ => (INVALID_COMMAND, Vec::new()),
        }
    }

    fn pending_close(&mut self, sid: u32) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            // The reply to Close Session is still protected with the session's
            // keys; forget the session on the next Open Session instead of now.
            s.privilege = 0;
        }
    }

    fn open_session(&mut self, q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 32 {
            return None;
        }
        let tag = q[0];
        let console_sid = u32::from_le_bytes(q[4..8].try_into().ok()?);
        // Suite 3 only: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
        let suite3 = q[12] == 0x01 && q[20] == 0x01 && q[28] == 0x01;
        if !suite3 {
            let mut r = vec![tag, 0x11, 0, 0];
            r.extend_from_slice(&console_sid.to_le_bytes());
            return Some(packet::v20_packet(
                payload::OPEN_SESSION_RSP,
                0,
                0,
                &r,
                None,
            ));
        }
        // Closed sessions and the oldest go first.
        self.sessions.retain(|_, s| s.privilege != 0);
        while self.sessions.len() >= MAX_SESSIONS {
            let oldest = *self.sessions.keys().min()?;
            self.sessions.remove(&oldest);
        }
        self.next_sid = self.next_sid.wrapping_add(1).max(0x100);
        let bmc_sid = self.next_sid;
        let requested = q[1] & 0x0F;
        self.sessions.insert(
            bmc_sid,
            Session {
                console_sid,
                privilege: 2,
                role: if requested == 0 { ADMIN } else { requested },
                console_rand: [0; 16],
                bmc_rand: [0; 16],
                keys: None,
                seq: 0,
                last_status_seq: None,
            },
        );
        let mut r = vec![tag, 0, if requested == 0 { ADMIN } else { requested }, 0];
        r.extend_from_slice(&console_sid.to_le_bytes());
        r.extend_from_slice(&bmc_sid.to_le_bytes());
        r.extend_from_slice(&[0x00, 0, 0, 0x08, 0x01, 0, 0, 0]);
        r.extend_from_slice(&[0x01, 0, 0, 0x08, 0x01, 0, 0, 0]);
        r.extend_from_slice(&[0x02, 0, 0, 0x08, 0x01, 0, 0, 0]);
        Some(packet::v20_packet(
            payload::OPEN_SESSION_RSP,
            0,
            0,
            &r,
            None,
        ))
    }

    fn rakp1(&mut self, q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 28 {
            return None;
        }
        let tag = q[0];
        let bmc_sid = u32::from_le_bytes(q[4..8].try_into().ok()?);
        let ulen = usize::from(q[27]);
        let user = q.get(28..28 + ulen)?;
        let bmc_rand = self.random16();
        let guid = self.guid;
        let Some(s) = self.sessions.get_mut(&bmc_sid) else {
            let r = vec![tag, 0x02, 0, 0, 0, 0, 0, 0];
            return Some(packet::v20_packet(payload::RAKP2, 0, 0, &r, None));
        };
        let mut r = vec![tag, 0, 0, 0];
        r.extend_from_slice(&s.console_sid.to_le_bytes());
        if user != self.user.as_slice() {
            r[1] = 0x0D; // unauthorized name
            return Some(packet::v20_packet(payload::RAKP2, 0, 0, &r, None));
        }
        s.console_rand.copy_from_slice(&q[8..24]);
        s.role = q[24];
        s.bmc_rand = bmc_rand;
        let params = RakpParams {
            console_sid: s.console_sid,
            bmc_sid,
            console_rand: s.console_rand,
            bmc_rand,
            bmc_guid: guid,
            role: s.role,
            username: &self.user,
        };
        r.extend_from_slice(&bmc_rand);
        r.extend_from_slice(&guid);
        r.extend_from_slice(&params.rakp2_auth(AuthAlg::HmacSha1, &self.kuid));
        Some(packet::v20_packet(payload::RAKP2, 0, 0, &r, None))
    }

    fn rakp3(&mut self, q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 8 {
            return None;
        }
        let tag = q[0];
        let bmc_sid = u32::from_le_bytes(q[4..8].try_into().ok()?);
        let alg = AuthAlg::HmacSha1;
        let guid = self.guid;
        let Some(s) = self.sessions.get_mut(&bmc_sid) else {
            let r = vec![tag, 0x02, 0, 0, 0, 0, 0, 0];
            return Some(packet::v20_packet(payload::RAKP4, 0, 0, &r, None));
        };
        let params = RakpParams {
            console_sid: s.console_sid,
            bmc_sid,
            console_rand: s.console_rand,
            bmc_rand: s.bmc_rand,
            bmc_guid: guid,
            role: s.role,
            username: &self.user,
        };
        let mut r = vec![tag, 0, 0, 0];
        r.extend_from_slice(&s.console_sid.to_le_bytes());
        if q[1] != 0 || q.get(8..) != Some(&params.rakp3_auth(alg, &self.kuid)[..]) {
            r[1] = 0x0F; // invalid integrity check value
            return Some(packet::v20_packet(payload::RAKP4, 0, 0, &r, None));
        }
        let sik = params.sik(alg, &self.kuid);
        r.extend_from_slice(&params.rakp4_icv(alg, &sik));
        let (k1, aes) = crypto::derive_keys(alg, &sik);
        s.keys = Some(SessionKeys { alg, k1, aes });
        Some(packet::v20_packet(payload::RAKP4, 0, 0, &r, None))
    }
}
