//! One UDP request with retransmissions, shared by the IPMI client and the
//! coordinator's SNMP client, so both behave the same when the network
//! answers instead of the peer.
//!
//! An [`Exchange`] says which datagram to send for each attempt and which
//! received datagram is the answer. [`exchange`] sends, waits up to the
//! attempt's timeout (growing per retry up to [`Retry::max_timeout`]),
//! pauses [`Retry::backoff`] (doubled per retry) and sends again, until an
//! answer is accepted or the attempts (1 + [`Retry::retries`]) are spent.
//!
//! ICMP errors: on a connected UDP socket Linux reports an ICMP port, host
//! or network unreachable as `ECONNREFUSED`, `EHOSTUNREACH` or
//! `ENETUNREACH` on the next receive (or send). Such an error ends the
//! current attempt as failed; it does not end the request: the next
//! attempt follows after the usual pause, because a BMC or SNMP agent that
//! is restarting refuses for a moment and then answers. When all attempts
//! are spent, the result is [`UdpError::Unreachable`] (naming the ICMP
//! error) if the last attempt ended with one, and [`UdpError::Timeout`] if
//! it got no answer at all. Other socket errors end the request at once
//! ([`UdpError::Io`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Timeouts and retransmissions of one request.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Wait for an answer to the first transmission.
    pub timeout: Duration,
    /// The wait doubles per retransmission up to this (at least `timeout`).
    pub max_timeout: Duration,
    /// Retransmissions after the first attempt.
    pub retries: u32,
    /// Pause before the first retransmission, doubled per retransmission;
    /// zero for none.
    pub backoff: Duration,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// No answer to any attempt.
    #[error("no answer after {attempts} attempts (timed out)")]
    Timeout {
        /// Transmissions made.
        attempts: u32,
    },
    /// The last attempt ended with an ICMP error.
    #[error("{error} (after {attempts} attempts)")]
    Unreachable {
        /// Transmissions made.
        attempts: u32,
        /// The error the socket reported.
        error: String,
    },
    /// A socket error other than an ICMP report, or name resolution.
    #[error("{0}")]
    Io(String),
}

/// One request: the datagram per attempt and the test for its answer.
pub trait Exchange {
    /// What an accepted answer yields.
    type Output;
    /// Errors of building datagrams and of accepted answers.
    type Error: From<UdpError>;

    /// The datagram to send for the next attempt (called once per attempt,
    /// so retransmissions may differ, e.g. carry new sequence numbers).
    fn datagram(&mut self) -> Result<Vec<u8>, Self::Error>;

    /// Looks at a received datagram: `None` to ignore it (stale, foreign,
    /// malformed) and keep waiting, `Some` to end the request with it.
    fn receive(&mut self, datagram: &[u8]) -> Option<Result<Self::Output, Self::Error>>;
}

/// An [`Exchange`] of two closures: the datagram builder and the receiver.
#[derive(Debug)]
pub struct Closures<B, R>(pub B, pub R);

impl<B, R, T, E> Exchange for Closures<B, R>
where
    B: FnMut() -> Result<Vec<u8>, E>,
    R: FnMut(&[u8]) -> Option<Result<T, E>>,
    E: From<UdpError>,
{
    type Output = T;
    type Error = E;

    fn datagram(&mut self) -> Result<Vec<u8>, E> {
        (self.0)()
    }

    fn receive(&mut self, datagram: &[u8]) -> Option<Result<T, E>> {
        (self.1)(datagram)
    }
}

/// True for the errors a connected UDP socket reports for ICMP messages.
pub fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Largest datagram received.
const MAX_DATAGRAM: usize = 65_535;

/// Runs `x` on the connected socket `sock` (see the module docs).
pub async fn exchange<X: Exchange>(
    sock: &UdpSocket,
    retry: &Retry,
    x: &mut X,
) -> Result<X::Output, X::Error> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut wait = retry.timeout;
    let max_wait = retry.max_timeout.max(retry.timeout);
    let attempts = retry.retries.saturating_add(1);
    let mut last_icmp = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            let pause = retry.backoff.saturating_mul(1 << (attempt - 1).min(6));
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        let p = x.datagram()?;
        last_icmp = None;
        match sock.send(&p).await {
            Ok(_) => {}
            Err(e) if is_icmp_error(&e) => {
                tracing::debug!(error = %e, attempt, "udp send: icmp error reported");
                last_icmp = Some(e.to_string());
                wait = (wait.saturating_mul(2)).min(max_wait);
                continue;
            }
            Err(e) => return Err(UdpError::Io(format!("send: {e}")).into()),
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) if is_icmp_error(&e) => {
                    tracing::debug!(error = %e, attempt, "udp receive: icmp error reported");
                    last_icmp = Some(e.to_string());
                    break;
                }
                Ok(Err(e)) => return Err(UdpError::Io(format!("receive: {e}")).into()),
                Ok(Ok(n)) => {
                    if let Some(r) = x.receive(&buf[..n]) {
                        return r;
                    }
                }
            }
        }
        wait = (wait.saturating_mul(2)).min(max_wait);
    }
    Err(match last_icmp {
        Some(error) => UdpError::Unreachable { attempts, error },
        None => UdpError::Timeout { attempts },
    }
    .into())
}

/// Resolves `host` (an address, a name, or a bracketed IPv6 address).
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, UdpError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| UdpError::Io(format!("resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| UdpError::Io(format!("{host} has no address")))
}

/// A UDP socket on an ephemeral port, connected to `host:port` (so ICMP
/// errors are reported, and datagrams from elsewhere are not received).
pub async fn connect(host: &str, port: u16) -> Result<(UdpSocket, SocketAddr), UdpError> {
    let addr = resolve(host, port).await?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| UdpError::Io(format!("bind: {e}")))?;
    sock.connect(addr)
        .await
        .map_err(|e| UdpError::Io(format!("connect {addr}: {e}")))?;
    Ok((sock, addr))
}
