//! DHCPv4 messages (RFC 2131/2132): the fixed BOOTP header, the magic
//! cookie and the options the client needs. Encoded and parsed here because
//! the DHCP crates pull a DNS library into the static agent.

use std::net::Ipv4Addr;

/// DHCPDISCOVER.
pub const DISCOVER: u8 = 1;
/// DHCPOFFER.
pub const OFFER: u8 = 2;
/// DHCPREQUEST.
pub const REQUEST: u8 = 3;
/// DHCPACK.
pub const ACK: u8 = 5;
/// DHCPNAK.
pub const NAK: u8 = 6;

const COOKIE: [u8; 4] = [99, 130, 83, 99];
const OPT_SUBNET: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN: u8 = 15;
const OPT_MTU: u8 = 26;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE: u8 = 51;
const OPT_MSG_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_T1: u8 = 58;
const OPT_T2: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_VENDOR_CLASS: u8 = 60;
const OPT_END: u8 = 255;

/// A parsed server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Message type (OFFER, ACK, NAK).
    pub kind: u8,
    /// Transaction ID.
    pub xid: u32,
    /// The offered address.
    pub yiaddr: Ipv4Addr,
    /// Server identifier.
    pub server: Option<Ipv4Addr>,
    /// Subnet mask.
    pub netmask: Option<Ipv4Addr>,
    /// Routers.
    pub routers: Vec<Ipv4Addr>,
    /// Name servers.
    pub dns: Vec<Ipv4Addr>,
    /// Host name.
    pub hostname: Option<String>,
    /// Domain name.
    pub domain: Option<String>,
    /// Lease time in seconds.
    pub lease_secs: Option<u32>,
    /// Interface MTU.
    pub mtu: Option<u16>,
    /// Renewal time T1 in seconds (option 58).
    pub renew_secs: Option<u32>,
    /// Rebinding time T2 in seconds (option 59).
    pub rebind_secs: Option<u32>,
}

/// Builds a DHCPREQUEST for the RENEWING or REBINDING state (RFC 2131
/// §4.3.2): `ciaddr` is the leased address, there is no requested-address
/// (50) and no server-identifier (54) option, and the broadcast flag is clear
/// since the client can receive unicast at its address.
pub fn renew_request(xid: u32, mac: [u8; 6], ciaddr: Ipv4Addr, secs: u16) -> Vec<u8> {
    let mut m = header(xid, mac, secs, false);
    m[12..16].copy_from_slice(&ciaddr.octets());
    options(&mut m, REQUEST, mac, None, None);
    m
}

/// Builds a client message (DISCOVER or REQUEST), broadcast flag set.
pub fn request(
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    secs: u16,
) -> Vec<u8> {
    let mut m = header(xid, mac, secs, true);
    options(&mut m, kind, mac, requested, server);
    m
}

/// The fixed BOOTREQUEST header (236 bytes) with the magic cookie.
fn header(xid: u32, mac: [u8; 6], secs: u16, broadcast: bool) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[8..10].copy_from_slice(&secs.to_be_bytes());
    if broadcast {
        m[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast replies
    }
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&COOKIE);
    m
}

/// Appends the options, the end mark and the padding to 300 bytes.
fn options(
    m: &mut Vec<u8>,
    kind: u8,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) {
    m.extend_from_slice(&[OPT_MSG_TYPE, 1, kind]);
    let mut cid = vec![1u8];
    cid.extend_from_slice(&mac);
    m.extend_from_slice(&[OPT_CLIENT_ID, cid.len() as u8]);
    m.extend_from_slice(&cid);
    if let Some(ip) = requested {
        m.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
        m.extend_from_slice(&ip.octets());
    }
    if let Some(ip) = server {
        m.extend_from_slice(&[OPT_SERVER_ID, 4]);
        m.extend_from_slice(&ip.octets());
    }
    let vendor = b"ingot-agent";
    m.extend_from_slice(&[OPT_VENDOR_CLASS, vendor.len() as u8]);
    m.extend_from_slice(vendor);
    let params = [
        OPT_SUBNET,
        OPT_ROUTER,
        OPT_DNS,
        OPT_HOSTNAME,
        OPT_DOMAIN,
        OPT_MTU,
        OPT_LEASE,
        OPT_T1,
        OPT_T2,
    ];
    m.extend_from_slice(&[OPT_PARAMS, params.len() as u8]);
    m.extend_from_slice(&params);
    m.push(OPT_END);
    m.resize(m.len().max(300), 0);
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ))
}

/// Parses a BOOTREPLY; `None` if it is not a DHCP reply for `mac`.
pub fn parse_reply(m: &[u8], mac: [u8; 6]) -> Option<Reply> {
    if m.len() < 240 || m[0] != 2 || m[28..34] != mac || m[236..240] != COOKIE {
        return None;
    }
    let mut r = Reply {
        kind: 0,
        xid: u32::from_be_bytes([m[4], m[5], m[6], m[7]]),
        yiaddr: ip4(&m[16..20])?,
        server: None,
        netmask: None,
        routers: Vec::new(),
        dns: Vec::new(),
        hostname: None,
        domain: None,
        lease_secs: None,
        mtu: None,
        renew_secs: None,
        rebind_secs: None,
    };
    let mut o = &m[240..];
    while let Some((&code, rest)) = o.split_first() {
        if code == OPT_END {
            break;
        }
        if code == 0 {
            o = rest;
            continue;
        }
        let (&len, rest) = rest.split_first()?;
        let v = rest.get(..usize::from(len))?;
        match code {
            OPT_MSG_TYPE => r.kind = *v.first()?,
            OPT_SUBNET => r.netmask = ip4(v),
            OPT_ROUTER => r.routers = v.chunks(4).filter_map(ip4).collect(),
            OPT_DNS => r.dns = v.chunks(4).filter_map(ip4).collect(),
            OPT_HOSTNAME => r.hostname = Some(String::from_utf8_lossy(v).into_owned()),
            OPT_DOMAIN => r.domain = Some(String::from_utf8_lossy(v).into_owned()),
            OPT_LEASE => r.lease_secs = be32(v),
            OPT_T1 => r.renew_secs = be32(v),
            OPT_T2 => r.rebind_secs = be32(v),
            OPT_MTU if v.len() == 2 => r.mtu = Some(u16::from_be_bytes([v[0], v[1]])),
            OPT_SERVER_ID => r.server = ip4(v),
            _ => {}
        }
        o = &rest[usize::from(len)..];
    }
    (r.kind != 0).then_some(r)
}

/// The one's complement sum used by the IPv4 header checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Wraps a DHCP payload into IPv4 + UDP, 0.0.0.0:68 → 255.255.255.255:67.
pub fn ip_udp(payload: &[u8]) -> Vec<u8> {
    ip_udp_between(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, payload)
}

/// Wraps a DHCP payload into IPv4 + UDP, `src`:68 → `dst`:67.
pub fn ip_udp_between(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x10]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&68u16.to_be_bytes());
    p.extend_from_slice(&67u16.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4
    p.extend_from_slice(payload);
    p
}

/// The UDP payload of an IPv4 packet to port 68, if it is one.
pub fn udp_to_client(packet: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || *packet.get(9)? != 17 || packet.len() < ihl + 8 {
        return None;
    }
    let udp = &packet[ihl..];
    if u16::from_be_bytes([udp[2], udp[3]]) != 68 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    udp.get(8..len.max(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_reply() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut m = request(DISCOVER, 0xdead_beef, mac, None, None, 0);
        assert_eq!(m.len(), 300);
        // Turn it into a server reply.
        m[0] = 2;
        m[16..20].copy_from_slice(&[10, 0, 0, 5]);
        m.truncate(240);
        m.extend_from_slice(&[
            53, 1, OFFER, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 6, 8, 10, 0, 0, 53, 10, 0, 0,
            54, 51, 4, 0, 0, 14, 16, 54, 4, 10, 0, 0, 1, 255,
        ]);
        let r = parse_reply(&m, mac).unwrap();
        assert_eq!(r.kind, OFFER);
        assert_eq!(r.xid, 0xdead_beef);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(r.netmask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(r.dns.len(), 2);
        assert_eq!(r.lease_secs, Some(3600));
        assert!(parse_reply(&m, [0; 6]).is_none());
        let pkt = ip_udp(&m);
        assert_eq!(checksum(&pkt[..20]), 0);
    }

    /// The options after the cookie, as (code, value) pairs.
    fn opts(m: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut o = &m[240..];
        while let Some((&code, rest)) = o.split_first() {
            if code == OPT_END {
                break;
            }
            let len = usize::from(rest[0]);
            out.push((code, rest[1..1 + len].to_vec()));
            o = &rest[1 + len..];
        }
        out
    }

    #[test]
    fn renewal_request_has_ciaddr_and_no_server_or_requested_address() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let m = renew_request(0x0102_0304, mac, Ipv4Addr::new(10, 0, 0, 5), 7);
        assert_eq!(m.len(), 300);
        assert_eq!(&m[..4], &[1, 1, 6, 0]);
        assert_eq!(&m[4..8], &[1, 2, 3, 4]);
        assert_eq!(&m[8..10], &[0, 7], "secs");
        assert_eq!(&m[10..12], &[0, 0], "no broadcast flag");
        assert_eq!(&m[12..16], &[10, 0, 0, 5], "ciaddr");
        assert_eq!(&m[16..28], &[0; 12], "yiaddr, siaddr, giaddr");
        assert_eq!(&m[28..34], &mac);
        assert_eq!(&m[236..240], &COOKIE);
        let o = opts(&m);
        assert_eq!(o[0], (OPT_MSG_TYPE, vec![REQUEST]));
        assert!(
            o.iter()
                .all(|(c, _)| *c != OPT_REQUESTED_IP && *c != OPT_SERVER_ID),
            "{o:?}"
        );
        let params = &o.iter().find(|(c, _)| *c == OPT_PARAMS).unwrap().1;
        assert!(params.contains(&OPT_T1) && params.contains(&OPT_T2));
        // The SELECTING request still carries both and the broadcast flag.
        let sel = request(
            REQUEST,
            1,
            mac,
            Some(Ipv4Addr::new(10, 0, 0, 5)),
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            0,
        );
        assert_eq!(&sel[10..12], &[0x80, 0]);
        assert_eq!(&sel[12..16], &[0; 4]);
        let o = opts(&sel);
        assert!(o.contains(&(OPT_REQUESTED_IP, vec![10, 0, 0, 5])));
        assert!(o.contains(&(OPT_SERVER_ID, vec![10, 0, 0, 1])));
    }

    #[test]
    fn t1_and_t2_are_parsed() {
        let mac = [2, 0, 0, 0, 0, 1];
        let mut m = request(DISCOVER, 9, mac, None, None, 0);
        m[0] = 2;
        m.truncate(240);
        m.extend_from_slice(&[
            53, 1, ACK, 51, 4, 0, 0, 0, 120, 58, 4, 0, 0, 0, 3, 59, 4, 0, 0, 0, 6,
        ]);
        m.extend_from_slice(&[255]);
        let r = parse_reply(&m, mac).unwrap();
        assert_eq!(
            (r.lease_secs, r.renew_secs, r.rebind_secs),
            (Some(120), Some(3), Some(6))
        );
        // A malformed length is ignored, not misread.
        m.truncate(240);
        m.extend_from_slice(&[53, 1, ACK, 58, 2, 0, 3, 255]);
        let r = parse_reply(&m, mac).unwrap();
        assert_eq!(r.renew_secs, None);
    }

    #[test]
    fn ip_header_carries_the_given_addresses() {
        let p = ip_udp_between(
            Ipv4Addr::new(10, 0, 0, 5),
            Ipv4Addr::new(10, 0, 0, 1),
            &[0; 300],
        );
        assert_eq!(&p[12..16], &[10, 0, 0, 5]);
        assert_eq!(&p[16..20], &[10, 0, 0, 1]);
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(&p[20..24], &[0, 68, 0, 67]);
        assert_eq!(
            &ip_udp(&[0; 300])[12..20],
            &[0, 0, 0, 0, 255, 255, 255, 255]
        );
    }
}
