//! Interface addresses: `getifaddrs` on a live system; on a fixture tree,
//! IPv6 from `/proc/net/if_inet6` and IPv4 by matching the local addresses of
//! `/proc/net/fib_trie` against the interface routes of `/proc/net/route`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// First IPv4 and best IPv6 address of each interface.
pub type Addresses = HashMap<String, (Option<String>, Option<String>)>;

/// Addresses by interface name.
pub fn by_interface(root: &Path, live: bool) -> Addresses {
    if live {
        if let Some(a) = live_addresses() {
            return a;
        }
    }
    let mut out = Addresses::new();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    for (name, v4) in ipv4_from_procfs(&read("proc/net/fib_trie"), &read("proc/net/route")) {
        out.entry(name).or_default().0.get_or_insert(v4.to_string());
    }
    for (name, v6) in ipv6_from_procfs(&read("proc/net/if_inet6")) {
        out.entry(name).or_default().1 = Some(v6);
    }
    out
}

/// Formats an IPv6 address the way IPA reports it (`%iface` on link-local).
fn format_v6(addr: Ipv6Addr, iface: &str) -> String {
    if addr.segments()[0] & 0xffc0 == 0xfe80 {
        format!("{addr}%{iface}")
    } else {
        addr.to_string()
    }
}

/// Preference among several IPv6 addresses: global, then site, then link-local.
fn v6_rank(addr: &Ipv6Addr) -> u8 {
    match addr.segments()[0] {
        s if s & 0xffc0 == 0xfe80 => 2,
        s if s & 0xffc0 == 0xfec0 => 1,
        _ => 0,
    }
}

/// The best IPv6 address per interface from `/proc/net/if_inet6`.
pub fn ipv6_from_procfs(if_inet6: &str) -> Vec<(String, String)> {
    let mut best: HashMap<String, Ipv6Addr> = HashMap::new();
    for line in if_inet6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] == "lo" {
            continue;
        }
        let Ok(bits) = u128::from_str_radix(f[0], 16) else {
            continue;
        };
        let addr = Ipv6Addr::from(bits);
        let slot = best.entry(f[5].to_string()).or_insert(addr);
        if v6_rank(&addr) < v6_rank(slot) {
            *slot = addr;
        }
    }
    let mut v: Vec<(String, String)> = best
        .into_iter()
        .map(|(n, a)| {
            let s = format_v6(a, &n);
            (n, s)
        })
        .collect();
    v.sort();
    v
}

/// Local IPv4 addresses mapped to interfaces through the interface routes.
pub fn ipv4_from_procfs(fib_trie: &str, route: &str) -> Vec<(String, Ipv4Addr)> {
    // Routes: (iface, destination, mask), little-endian hex as the kernel prints them.
    let routes: Vec<(String, u32, u32)> = route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
            Some((f.first()?.to_string(), hex(f.get(1)?)?, hex(f.get(7)?)?))
        })
        .filter(|r| r.2 != 0)
        .collect();
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            let Some(addr) = last.take() else { continue };
            if addr.is_loopback() {
                continue;
            }
            let a = u32::from(addr);
            let iface = routes
                .iter()
                .filter(|(_, dst, mask)| a & mask == *dst)
                .max_by_key(|(_, _, mask)| mask.count_ones())
                .map(|(n, _, _)| n.clone());
            if let Some(n) = iface {
                if !out
                    .iter()
                    .any(|(o, x): &(String, Ipv4Addr)| *o == n && *x == addr)
                {
                    out.push((n, addr));
                }
            }
        }
    }
    out
}

fn live_addresses() -> Option<Addresses> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut out = Addresses::new();
    let mut v6: HashMap<String, Ipv6Addr> = HashMap::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, still alive.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points to a sockaddr of at least sa_family's size.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            let a = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            out.entry(name).or_default().0.get_or_insert(a.to_string());
        } else if family == libc::AF_INET6 {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let slot = v6.entry(name).or_insert(a);
            if v6_rank(&a) < v6_rank(slot) {
                *slot = a;
            }
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    for (n, a) in v6 {
        let s = format_v6(a, &n);
        out.entry(n).or_default().1 = Some(s);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_prefers_global() {
        let t = "fe80000000000000505400fffe123456 02 40 20 80     eth0\n\
                 fec0000000000000505400fffe123456 02 40 40 40     eth0\n\
                 00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            ipv6_from_procfs(t),
            vec![("eth0".into(), "fec0::5054:ff:fe12:3456".into())]
        );
    }
}
