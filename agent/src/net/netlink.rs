//! rtnetlink requests over a raw `NETLINK_ROUTE` socket: link up, IPv4
//! address (add and delete), default route. Each request waits for the kernel's ACK.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_DHCP: u8 = 16;
const RTN_UNICAST: u8 = 1;

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Sends one request (header added here) and waits for its ACK.
fn request(kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
    let fd = socket()?;
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    // SAFETY: sockaddr_nl is plain old data.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: sending a valid buffer to a valid netlink address.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: receiving into a local buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut off = 0;
        while off + 16 <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if ty == NLMSG_ERROR && off + 20 <= n {
                let err = i32::from_ne_bytes([
                    buf[off + 16],
                    buf[off + 17],
                    buf[off + 18],
                    buf[off + 19],
                ]);
                return if err == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-err))
                };
            }
            if len < 16 {
                break;
            }
            off += len.next_multiple_of(4);
        }
    }
}

/// Sets a link administratively up.
pub fn link_up(ifindex: u32) -> io::Result<()> {
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    b[12..16].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    request(RTM_NEWLINK, 0, &b)
}

/// struct ifaddrmsg (family, prefixlen, flags, scope, index) with the
/// local and peer address attributes.
fn address_message(ifindex: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut b = vec![libc::AF_INET as u8, prefix, 0, 0];
    b.extend_from_slice(&ifindex.to_ne_bytes());
    attr(&mut b, IFA_LOCAL, &addr.octets());
    attr(&mut b, IFA_ADDRESS, &addr.octets());
    b
}

/// Adds (or replaces) an IPv4 address.
pub fn add_address(ifindex: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut b = address_message(ifindex, addr, prefix);
    if prefix < 31 {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let bcast = Ipv4Addr::from(u32::from(addr) | !mask);
        attr(&mut b, IFA_BROADCAST, &bcast.octets());
    }
    request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &b)
}

/// Deletes an IPv4 address; the kernel drops the routes that depended on it
/// (the prefix route, and routes through a gateway only it reached).
pub fn delete_address(ifindex: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    request(RTM_DELADDR, 0, &address_message(ifindex, addr, prefix))
}

/// Adds (or replaces) the default route through `gateway`.
pub fn add_default_route(ifindex: u32, gateway: Ipv4Addr) -> io::Result<()> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut b = vec![
        libc::AF_INET as u8,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        0,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut b, RTA_GATEWAY, &gateway.octets());
    attr(&mut b, RTA_OIF, &ifindex.to_ne_bytes());
    request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &b)
}
