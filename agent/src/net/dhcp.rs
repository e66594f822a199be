//! The DHCPv4 exchange on one interface (DISCOVER → OFFER → REQUEST → ACK)
//! over an `AF_PACKET` datagram socket, which works before the interface has
//! an address. Retransmits with exponential backoff (RFC 2131 §4.1). The
//! RENEWING/REBINDING requests of lease maintenance (`super::lease`) use the
//! same socket type.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Link;
use super::dhcp_packet::{self as pkt, Reply};

/// A lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    /// Interface.
    pub interface: String,
    /// Address.
    pub address: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Routers.
    pub routers: Vec<Ipv4Addr>,
    /// Name servers.
    pub dns: Vec<Ipv4Addr>,
    /// Host name.
    pub hostname: Option<String>,
    /// Domain.
    pub domain: Option<String>,
    /// Lease time.
    pub lease_secs: Option<u32>,
    /// The DHCP server.
    pub server: Option<Ipv4Addr>,
    /// Renewal time T1 (option 58), if the server sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_secs: Option<u32>,
    /// Rebinding time T2 (option 59), if the server sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebind_secs: Option<u32>,
    /// The link-layer source of the ACK (the server, or the relay agent that
    /// forwarded it): where RENEWING requests are sent.
    #[serde(skip)]
    pub server_mac: Option<[u8; 6]>,
}

/// Why DHCP failed.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// Socket error.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// No answer in time.
    #[error("no DHCP answer within {0:?}")]
    Timeout(Duration),
    /// The server refused.
    #[error("the DHCP server refused the request (NAK)")]
    Nak,
}

/// An `AF_PACKET` datagram socket for IPv4 on one interface.
pub(super) struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

const ETH_P_IP: u16 = 0x0800;
/// The Ethernet broadcast address.
pub(super) const BROADCAST_MAC: [u8; 6] = [0xff; 6];

impl PacketSocket {
    /// Opens and binds the socket to the interface `ifindex`.
    pub(super) fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket creation.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IP.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let s = Self {
            fd,
            ifindex: ifindex as i32,
        };
        let sll = s.addr([0; 6]);
        // SAFETY: binding with a valid sockaddr_ll.
        let r = unsafe {
            libc::bind(
                s.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(s)
    }

    fn addr(&self, mac: [u8; 6]) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&mac);
        sll
    }

    fn broadcast(&self, payload: &[u8]) -> io::Result<()> {
        self.send(BROADCAST_MAC, &pkt::ip_udp(payload))
    }

    /// Sends an IPv4 packet to the link-layer address `mac`.
    pub(super) fn send(&self, mac: [u8; 6], packet: &[u8]) -> io::Result<()> {
        let sll = self.addr(mac);
        // SAFETY: sending a valid buffer to a valid link-layer address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until `deadline` for a reply of type `want` with `xid`; returns
    /// it with its link-layer source address.
    pub(super) fn receive(
        &self,
        mac: [u8; 6],
        xid: u32,
        want: u8,
        deadline: Instant,
    ) -> Result<Option<(Reply, [u8; 6])>, DhcpError> {
        let mut buf = vec![0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            let Ok((n, from)) = super::recv_from::<libc::sockaddr_ll>(self.fd.as_fd(), &mut buf)
            else {
                continue;
            };
            if n == 0 {
                continue;
            }
            let Some(payload) = pkt::udp_to_client(&buf[..n]) else {
                continue;
            };
            let Some(r) = pkt::parse_reply(payload, mac) else {
                continue;
            };
            if r.xid != xid {
                continue;
            }
            if r.kind == pkt::NAK {
                return Err(DhcpError::Nak);
            }
            if r.kind == want {
                let mut src = [0u8; 6];
                src.copy_from_slice(&from.sll_addr[..6]);
                return Ok(Some((r, src)));
            }
        }
    }
}

/// Sends `msg` and waits for `want`, retransmitting at 1, 2, 4, 8… s until `end`.
fn exchange(
    s: &PacketSocket,
    link: &Link,
    xid: u32,
    want: u8,
    end: Instant,
    build: &dyn Fn(u16) -> Vec<u8>,
    started: Instant,
) -> Result<Option<(Reply, [u8; 6])>, DhcpError> {
    let mut wait = Duration::from_secs(1);
    while Instant::now() < end {
        let secs = u16::try_from(started.elapsed().as_secs()).unwrap_or(u16::MAX);
        s.broadcast(&build(secs))?;
        let until = (Instant::now() + wait.mul_f64(crate::random::uniform(0.9, 1.1))).min(end);
        if let Some(r) = s.receive(link.mac, xid, want, until)? {
            return Ok(Some(r));
        }
        wait = (wait * 2).min(Duration::from_secs(16));
    }
    Ok(None)
}

/// Obtains a lease on `link` (blocking).
pub fn run_dhcp(link: &Link, timeout: Duration) -> Result<Lease, DhcpError> {
    let s = PacketSocket::open(link.index)?;
    let started = Instant::now();
    let end = started + timeout;
    let mut xb = [0u8; 4];
    crate::random::fill(&mut xb);
    let xid = u32::from_ne_bytes(xb);
    let mac = link.mac;
    tracing::info!(interface = %link.name, "DHCP discover");
    let offer = exchange(
        &s,
        link,
        xid,
        pkt::OFFER,
        end,
        &|secs| pkt::request(pkt::DISCOVER, xid, mac, None, None, secs),
        started,
    )?
    .ok_or(DhcpError::Timeout(timeout))?
    .0;
    let (ip, server) = (offer.yiaddr, offer.server);
    let ack = exchange(
        &s,
        link,
        xid,
        pkt::ACK,
        end,
        &|secs| pkt::request(pkt::REQUEST, xid, mac, Some(ip), server, secs),
        started,
    )?
    .ok_or(DhcpError::Timeout(timeout))?;
    let lease = lease_from(link, ack, offer.netmask, server);
    tracing::info!(interface = %link.name, address = %lease.address, prefix = lease.prefix, seconds = started.elapsed().as_secs_f64(), "DHCP lease");
    Ok(lease)
}

/// The lease an ACK (and its link-layer source) grants; `netmask` and
/// `server` fill in what the ACK left out.
pub(super) fn lease_from(
    link: &Link,
    (ack, src): (Reply, [u8; 6]),
    netmask: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Lease {
    let prefix = ack
        .netmask
        .or(netmask)
        .map_or(24, |m| u32::from(m).count_ones() as u8);
    Lease {
        interface: link.name.clone(),
        address: ack.yiaddr,
        prefix,
        routers: ack.routers,
        dns: ack.dns,
        hostname: ack.hostname,
        domain: ack.domain,
        lease_secs: ack.lease_secs,
        server: ack.server.or(server),
        renew_secs: ack.renew_secs,
        rebind_secs: ack.rebind_secs,
        server_mac: Some(src),
    }
}
