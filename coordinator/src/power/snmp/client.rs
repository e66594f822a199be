//! An async SNMP v1/v2c/v3 client for GET and SET of one INTEGER over UDP,
//! with a timeout per transmission and retransmissions of the same
//! request-id, on the UDP request helper shared with IPMI
//! ([`ingot_ipmi::udp`]: an ICMP unreachable counts as one failed attempt).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use ingot_ipmi::udp::{self, Retry, UdpError};
use tokio::net::UdpSocket;

use super::ber::{format_oid, tag};
use super::message::{Pdu, PduKind, Request, Response, Value, Version, error_status_name};
use super::usm::{self, Engine, Keys, Usm};
use super::{SnmpError, Timing};

/// Where and how to reach one SNMP agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Agent {
    /// Address or host name.
    pub host: String,
    /// UDP port (161).
    pub port: u16,
    /// v1 or v2c.
    pub version: Version,
    /// Community for GET.
    pub read_community: String,
    /// Community for SET.
    pub write_community: String,
    /// The SNMPv3 user; when set, v3 is spoken and `version` and the
    /// communities are ignored.
    pub usm: Option<Usm>,
}

/// The client. Each request uses its own ephemeral UDP socket.
#[derive(Debug)]
pub struct SnmpClient {
    timing: Timing,
    next_id: AtomicI32,
    salt: AtomicU64,
}

impl Default for SnmpClient {
    fn default() -> Self {
        Self::new(Timing::default())
    }
}

impl SnmpClient {
    /// A client with the given timing.
    pub fn new(timing: Timing) -> Self {
        let mut seed = [0u8; 12];
        // A fixed start is harmless for ids (they only pair answers with
        // requests); the AES salt only has to differ per message.
        let _ = getrandom::getrandom(&mut seed);
        let [a, b, c, d, salt @ ..] = seed;
        let start = i32::from_be_bytes([a, b, c, d]) & 0x3fff_ffff;
        Self {
            timing,
            next_id: AtomicI32::new(start),
            salt: AtomicU64::new(u64::from_be_bytes(salt)),
        }
    }

    fn request_id(&self) -> i32 {
        self.next_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff
    }

    /// Reads an INTEGER object.
    pub async fn get_integer(&self, agent: &Agent, oid: &[u32]) -> Result<i64, SnmpError> {
        let resp = self
            .exchange(agent, PduKind::Get, oid, Value::Null, &agent.read_community)
            .await?;
        let name = format_oid(oid);
        check_status(&resp, "GET", &name)?;
        match resp.bindings.first() {
            Some((_, Value::Integer(v))) => Ok(*v),
            Some((_, Value::NoSuch(_))) => Err(SnmpError::NoSuchObject(name)),
            Some((_, Value::Null)) => Err(SnmpError::NoSuchObject(name)),
            Some((_, Value::Other(tag, _))) => Err(SnmpError::WrongType {
                oid: name,
                tag: *tag,
            }),
            None => Err(SnmpError::Decode(
                "response without variable bindings".into(),
            )),
        }
    }

    /// Writes an INTEGER object.
    pub async fn set_integer(
        &self,
        agent: &Agent,
        oid: &[u32],
        value: i64,
    ) -> Result<(), SnmpError> {
        let resp = self
            .exchange(
                agent,
                PduKind::Set,
                oid,
                Value::Integer(value),
                &agent.write_community,
            )
            .await?;
        check_status(&resp, "SET", &format_oid(oid))
    }

    async fn exchange(
        &self,
        agent: &Agent,
        kind: PduKind,
        oid: &[u32],
        value: Value,
        community: &str,
    ) -> Result<Response, SnmpError> {
        let (sock, addr) = connect(agent).await?;
        if let Some(u) = &agent.usm {
            return self.exchange_v3(&sock, addr, u, kind, oid, value).await;
        }
        let request_id = self.request_id();
        let packet = Request {
            version: agent.version,
            community,
            kind,
            request_id,
            oid,
            value,
        }
        .encode();
        tracing::debug!(agent = %addr, oid = %format_oid(oid), ?kind, request_id, "snmp request");
        self.round_trip(&sock, addr, &packet, |buf| match Response::decode(buf) {
            Ok(r) if r.request_id == i64::from(request_id) => Some(r),
            Ok(r) => {
                tracing::debug!(agent = %addr, got = r.request_id, want = request_id, "stale snmp answer dropped");
                None
            }
            Err(e) => {
                tracing::warn!(agent = %addr, error = %e, "undecodable snmp answer dropped");
                None
            }
        })
        .await
    }

    async fn exchange_v3(
        &self,
        sock: &UdpSocket,
        addr: SocketAddr,
        u: &Usm,
        kind: PduKind,
        oid: &[u32],
        value: Value,
    ) -> Result<Response, SnmpError> {
        // Discovery: an unauthenticated GET the agent answers with a Report
        // carrying its engine ID, boots and time.
        let none = Keys::none();
        let mut engine = self
            .send_v3(
                sock,
                addr,
                u,
                "",
                &Engine::default(),
                &none,
                PduKind::Get,
                oid,
                Value::Null,
            )
            .await?
            .engine;
        let keys = Keys::new(u, &engine.id);
        for _ in 0..2 {
            let answer = self
                .send_v3(
                    sock,
                    addr,
                    u,
                    &u.user,
                    &engine,
                    &keys,
                    kind,
                    oid,
                    value.clone(),
                )
                .await?;
            if answer.pdu_tag != tag::REPORT {
                return Ok(answer.pdu);
            }
            let reason = answer
                .pdu
                .bindings
                .first()
                .map(|(o, _)| usm::report_reason(o))
                .unwrap_or("report");
            if reason == "not in time window" {
                engine = answer.engine;
                continue;
            }
            return Err(SnmpError::Usm(reason.to_owned()));
        }
        Err(SnmpError::Usm("not in time window".into()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_v3(
        &self,
        sock: &UdpSocket,
        addr: SocketAddr,
        u: &Usm,
        user: &str,
        engine: &Engine,
        keys: &Keys,
        kind: PduKind,
        oid: &[u32],
        value: Value,
    ) -> Result<usm::Answer, SnmpError> {
        let request_id = self.request_id();
        let pdu = Pdu {
            kind,
            request_id,
            oid,
            value,
        };
        let salt = self.salt.fetch_add(1, Ordering::Relaxed);
        let packet = usm::encode(request_id, u, user, engine, keys, &pdu, salt)?;
        tracing::debug!(agent = %addr, oid = %format_oid(oid), ?kind, request_id, user, "snmpv3 request");
        self.round_trip(sock, addr, &packet, |buf| match usm::decode(buf, keys) {
            Ok(a) if a.msg_id == i64::from(request_id) => Some(a),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(agent = %addr, error = %e, "snmpv3 answer dropped");
                None
            }
        })
        .await
    }

    /// Sends `packet` and waits for an answer `accept` takes, retransmitting
    /// after each timeout (no pause between attempts), with
    /// [`ingot_ipmi::udp`]'s handling of ICMP errors.
    async fn round_trip<T>(
        &self,
        sock: &UdpSocket,
        addr: SocketAddr,
        packet: &[u8],
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, SnmpError> {
        let retry = Retry {
            timeout: self.timing.timeout,
            max_timeout: self.timing.timeout,
            retries: self.timing.retries,
            backoff: Duration::ZERO,
        };
        let mut attempt = 0u32;
        let mut x = udp::Closures(
            || {
                if attempt > 0 {
                    tracing::debug!(agent = %addr, attempt, "snmp retransmission");
                }
                attempt += 1;
                Ok::<_, UdpError>(packet.to_vec())
            },
            |buf: &[u8]| accept(buf).map(Ok),
        );
        udp::exchange(sock, &retry, &mut x)
            .await
            .map_err(|e| match e {
                UdpError::Timeout { .. } => SnmpError::Timeout(addr.to_string()),
                UdpError::Unreachable { error, .. } => SnmpError::Unreachable {
                    agent: addr.to_string(),
                    error,
                },
                UdpError::Io(e) => SnmpError::Io(format!("{addr}: {e}")),
            })
    }
}

async fn connect(agent: &Agent) -> Result<(UdpSocket, SocketAddr), SnmpError> {
    udp::connect(&agent.host, agent.port)
        .await
        .map_err(|e| SnmpError::Io(e.to_string()))
}

fn check_status(resp: &Response, op: &'static str, oid: &str) -> Result<(), SnmpError> {
    match resp.error_status {
        0 => Ok(()),
        // v1 reports an absent object as noSuchName.
        2 if op == "GET" => Err(SnmpError::NoSuchObject(oid.to_owned())),
        s => Err(SnmpError::Status {
            op,
            oid: oid.to_owned(),
            status: s,
            name: error_status_name(s),
        }),
    }
}
