//! "This link has no IPv6 router": ICMPv6 router advertisements for
//! IPv4-only provisioning networks (`[dhcp] advertise_no_ipv6_router`).
//!
//! Network-boot firmware configures IPv6 beside DHCPv4. iPXE, for one,
//! sends router solicitations and does not finish "Configuring" until a
//! router answers or its IPv6 autoconfiguration gives up, about 16 s later,
//! at every network boot. On a link with no IPv6 router, one advertisement
//! with router lifetime 0 (not a default router), no prefixes and no
//! managed/other flags ends that wait at once and configures nothing.
//!
//! The advertiser answers each router solicitation on the interface (at
//! most one answer per [`MIN_GAP`], so a neighbour flooding solicitations
//! gets a bounded reply rate) and repeats the advertisement every
//! [`INTERVAL`] for hosts that missed it. Needs CAP_NET_RAW. Do not turn it
//! on where a real IPv6 router serves the link: hosts would take the last
//! advertisement's flags.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, info};

use super::DhcpError;

/// ICMPv6 router solicitation.
const ROUTER_SOLICITATION: u8 = 133;
/// The advertisement: ICMPv6 type 134, code 0, checksum (the kernel fills it
/// in), current hop limit 0 (unspecified), flags 0 (no DHCPv6), router
/// lifetime 0 (not a default router), reachable time and retransmit timer
/// 0 (unspecified), and no options: no prefix to autoconfigure.
const ADVERTISEMENT: [u8; 16] = [134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// All nodes on the link.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All routers on the link: where solicitations go.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// Unsolicited advertisements, for hosts that missed the answer to theirs.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The shortest time between two advertisements.
pub const MIN_GAP: Duration = Duration::from_millis(200);

/// A bound advertiser; [`NoRouterAdvertiser::run`] serves it.
#[derive(Debug)]
pub struct NoRouterAdvertiser {
    /// The raw socket, driven through tokio's datagram type: only
    /// `send_to` and `recv` are used, which are the same calls on it.
    socket: UdpSocket,
    to: SocketAddrV6,
    interface: String,
}

/// The index of a network interface (not from sysfs: in a network namespace
/// entered with unshare(2), /sys still shows the namespace it was mounted in).
fn ifindex(interface: &str) -> Result<u32, std::io::Error> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(index)
}

impl NoRouterAdvertiser {
    /// Opens a raw ICMPv6 socket on `interface`, joined to the all-routers
    /// group so that solicitations reach it. Must run inside the runtime.
    pub fn bind(interface: &str) -> Result<Self, DhcpError> {
        let err = |source| DhcpError::Advertise {
            interface: interface.to_owned(),
            source,
        };
        let index = ifindex(interface).map_err(err)?;
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(err)?;
        s.bind_device(Some(interface.as_bytes())).map_err(err)?;
        // Neighbour discovery travels with hop limit 255 (RFC 4861 6.1.2).
        s.set_multicast_hops_v6(255).map_err(err)?;
        s.set_unicast_hops_v6(255).map_err(err)?;
        s.set_multicast_if_v6(index).map_err(err)?;
        s.set_multicast_loop_v6(false).map_err(err)?;
        s.join_multicast_v6(&ALL_ROUTERS, index).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        Ok(Self {
            socket: UdpSocket::from_std(std::net::UdpSocket::from(s)).map_err(err)?,
            to: SocketAddrV6::new(ALL_NODES, 0, 0, index),
            interface: interface.to_owned(),
        })
    }

    /// Sends one advertisement to all nodes. Until the interface has a
    /// link-local address (a bridge gets one with its first carrier) the
    /// kernel refuses: the next one counts.
    async fn advertise(&self) {
        if let Err(e) = self
            .socket
            .send_to(&ADVERTISEMENT, SocketAddr::V6(self.to))
            .await
        {
            debug!(interface = %self.interface, error = %e, "IPv6: advertisement not sent");
        }
    }

    /// Advertises now, then on every solicitation and every [`INTERVAL`].
    pub async fn run(self) {
        info!(interface = %self.interface, "IPv6: advertising that this link has no router");
        let mut last = Instant::now();
        self.advertise().await;
        let mut buf = [0u8; 1500];
        loop {
            let solicited = tokio::select! {
                r = self.socket.recv(&mut buf) => match r {
                    // A raw ICMPv6 socket delivers the ICMPv6 message
                    // without the IPv6 header.
                    Ok(n) => n > 0 && buf[0] == ROUTER_SOLICITATION,
                    Err(e) => {
                        debug!(interface = %self.interface, error = %e, "IPv6: receive failed");
                        tokio::time::sleep(MIN_GAP).await;
                        false
                    }
                },
                () = tokio::time::sleep_until(last + INTERVAL) => true,
            };
            if solicited && last.elapsed() >= MIN_GAP {
                self.advertise().await;
                last = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_says_no_router_and_no_prefix() {
        assert_eq!(ADVERTISEMENT[0], 134);
        // M and O flags clear, router lifetime 0.
        assert_eq!(ADVERTISEMENT[5], 0);
        assert_eq!(&ADVERTISEMENT[6..8], &[0, 0]);
        // Header only: no prefix information option.
        assert_eq!(ADVERTISEMENT.len(), 16);
    }
}
