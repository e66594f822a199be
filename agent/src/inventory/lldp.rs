//! LLDP: listen on raw `AF_PACKET` sockets for frames of ethertype 0x88cc and
//! report their TLVs as IPA does (`[type, hex value]` pairs), so the
//! coordinator can fill a port's `local_link_connection`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The LLDP ethertype.
pub const ETH_P_LLDP: u16 = 0x88cc;
/// The nearest-bridge multicast address LLDP frames are sent to.
const LLDP_MULTICAST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

/// Parses one Ethernet frame carrying LLDP into TLVs (the End TLV excluded).
/// Returns `None` for frames that are not LLDP or are malformed.
pub fn parse_frame(frame: &[u8]) -> Option<Vec<(u8, String)>> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    if ethertype == 0x8100 {
        off += 4;
        ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    if ethertype != ETH_P_LLDP {
        return None;
    }
    parse_tlvs(frame.get(off + 2..)?)
}

/// Parses an LLDPDU (the frame payload) into TLVs.
pub fn parse_tlvs(mut pdu: &[u8]) -> Option<Vec<(u8, String)>> {
    let mut tlvs = Vec::new();
    while pdu.len() >= 2 {
        let header = u16::from_be_bytes([pdu[0], pdu[1]]);
        let kind = (header >> 9) as u8;
        let len = usize::from(header & 0x1ff);
        if kind == 0 {
            break;
        }
        let value = pdu.get(2..2 + len)?;
        tlvs.push((kind, value.iter().map(|b| format!("{b:02x}")).collect()));
        pdu = &pdu[2 + len..];
    }
    Some(tlvs)
}

/// Listens on each interface for up to `timeout` and returns the TLVs of the
/// first LLDP frame seen on each. Interfaces without a frame are left out.
pub fn capture(interfaces: &[String], timeout: Duration) -> HashMap<String, Vec<(u8, String)>> {
    let mut socks: Vec<(String, std::os::fd::OwnedFd)> = interfaces
        .iter()
        .filter_map(|n| match open(n) {
            Ok(fd) => Some((n.clone(), fd)),
            Err(e) => {
                tracing::warn!(interface = %n, error = %e, "cannot listen for LLDP");
                None
            }
        })
        .collect();
    let mut found = HashMap::new();
    let deadline = Instant::now() + timeout;
    while !socks.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        use std::os::fd::AsRawFd;
        let mut fds: Vec<libc::pollfd> = socks
            .iter()
            .map(|(_, fd)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            continue;
        }
        let mut done = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            let mut buf = [0u8; 1600];
            // SAFETY: reading into a local buffer of the given length.
            let r =
                unsafe { libc::recv(p.fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if r > 0 {
                if let Some(tlvs) = parse_frame(&buf[..r as usize]) {
                    found.insert(socks[i].0.clone(), tlvs);
                    done.push(i);
                }
            }
        }
        for i in done.into_iter().rev() {
            socks.remove(i);
        }
    }
    found
}

fn open(name: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let cname = std::ffi::CString::new(name).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: cname is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let proto = ETH_P_LLDP.to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binding with a valid sockaddr_ll of the stated size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: packet_mreq is plain old data.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex as i32;
    mreq.mr_type = libc::PACKET_MR_MULTICAST as u16;
    mreq.mr_alen = 6;
    mreq.mr_address[..6].copy_from_slice(&LLDP_MULTICAST);
    // SAFETY: setsockopt with a valid packet_mreq of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as u32,
        )
    };
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_frame() {
        let mut f = vec![
            0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x52, 0x54, 0, 1, 2, 3, 0x88, 0xcc,
        ];
        // Chassis ID (type 1), subtype 4 (MAC), 6 bytes.
        f.extend_from_slice(&[0x02, 0x07, 0x04, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        // Port ID (type 2), subtype 5 (ifname) "Eth1".
        f.extend_from_slice(&[0x04, 0x05, 0x05, b'E', b't', b'h', b'1']);
        // End.
        f.extend_from_slice(&[0, 0]);
        assert_eq!(
            parse_frame(&f),
            Some(vec![(1, "04aabbccddeeff".into()), (2, "0545746831".into())])
        );
        f[12] = 0x08;
        assert_eq!(parse_frame(&f), None);
    }
}
