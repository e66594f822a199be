//! An async SNMP v1/v2c client for GET and SET of one INTEGER over UDP, with
//! a timeout per transmission and retransmissions of the same request-id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::net::UdpSocket;

use super::ber::format_oid;
use super::message::{PduKind, Request, Response, Value, Version, error_status_name};
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
}

/// The client. Each request uses its own ephemeral UDP socket.
#[derive(Debug)]
pub struct SnmpClient {
    timing: Timing,
    next_id: AtomicI32,
}

impl Default for SnmpClient {
    fn default() -> Self {
        Self::new(Timing::default())
    }
}

impl SnmpClient {
    /// A client with the given timing.
    pub fn new(timing: Timing) -> Self {
        let mut seed = [0u8; 4];
        // A fixed start is harmless: ids only pair answers with requests.
        let _ = getrandom::getrandom(&mut seed);
        let start = i32::from_be_bytes(seed) & 0x3fff_ffff;
        Self {
            timing,
            next_id: AtomicI32::new(start),
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
        let addr = resolve(&agent.host, agent.port).await?;
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| SnmpError::Io(format!("bind: {e}")))?;
        sock.connect(addr)
            .await
            .map_err(|e| SnmpError::Io(format!("connect {addr}: {e}")))?;
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
        let mut buf = vec![0u8; 65_535];
        for attempt in 0..=self.timing.retries {
            tracing::debug!(agent = %addr, oid = %format_oid(oid), ?kind, request_id, attempt, "snmp request");
            sock.send(&packet)
                .await
                .map_err(|e| SnmpError::Io(format!("send to {addr}: {e}")))?;
            let deadline = tokio::time::Instant::now() + self.timing.timeout;
            loop {
                let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    // ICMP port unreachable surfaces here; treat as no answer.
                    Ok(Err(e)) => {
                        tracing::debug!(agent = %addr, error = %e, "snmp receive failed");
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    Ok(Ok(n)) => n,
                };
                match Response::decode(&buf[..n]) {
                    Ok(r) if r.request_id == i64::from(request_id) => return Ok(r),
                    Ok(r) => {
                        tracing::debug!(agent = %addr, got = r.request_id, want = request_id, "stale snmp answer dropped");
                    }
                    Err(e) => {
                        tracing::warn!(agent = %addr, error = %e, "undecodable snmp answer dropped");
                    }
                }
            }
        }
        Err(SnmpError::Timeout(addr.to_string()))
    }
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

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, SnmpError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SnmpError::Io(format!("resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| SnmpError::Io(format!("{host} has no address")))
}
