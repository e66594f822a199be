//! Choosing an address from the pool (full mode). Pure: the caller reads
//! the leases from the database and stores the result.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::db::leases::Lease;

/// Largest pool accepted (a /16): the search walks it linearly.
pub const MAX_POOL: u32 = 65536;

/// An inclusive range of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    start: u32,
    end: u32,
}

impl Pool {
    /// A pool from `start` to `end` inclusive; `None` when empty or larger
    /// than [`MAX_POOL`].
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> Option<Self> {
        let (s, e) = (u32::from(start), u32::from(end));
        let size = e.checked_sub(s)?.checked_add(1)?;
        (size <= MAX_POOL).then_some(Self { start: s, end: e })
    }

    /// Whether `ip` is in the pool.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&u32::from(ip))
    }

    /// The address for `mac`: its pinned address; else its current (or
    /// expired) lease if the address is in the pool and nobody else holds
    /// it; else the requested address when free; else the first address
    /// never leased; else the one whose lease expired longest ago. `avoid`
    /// (the server's own address) is never handed out from the pool.
    pub fn choose(
        &self,
        mac: &str,
        pinned: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
        leases: &[Lease],
        now_ms: i64,
        avoid: Option<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        if pinned.is_some() {
            return pinned;
        }
        let by_ip: HashMap<Ipv4Addr, &Lease> = leases.iter().map(|l| (l.ip, l)).collect();
        let free_for_me = |ip: Ipv4Addr| {
            self.contains(ip)
                && Some(ip) != avoid
                && by_ip
                    .get(&ip)
                    .is_none_or(|l| l.mac == mac || l.expires_ms <= now_ms)
        };
        if let Some(own) = leases.iter().find(|l| l.mac == mac)
            && free_for_me(own.ip)
        {
            return Some(own.ip);
        }
        if let Some(r) = requested
            && free_for_me(r)
        {
            return Some(r);
        }
        let mut oldest: Option<(i64, Ipv4Addr)> = None;
        for n in self.start..=self.end {
            let ip = Ipv4Addr::from(n);
            if Some(ip) == avoid {
                continue;
            }
            match by_ip.get(&ip) {
                None => return Some(ip),
                Some(l) if l.expires_ms <= now_ms => {
                    if oldest.is_none_or(|(t, _)| l.expires_ms < t) {
                        oldest = Some((l.expires_ms, ip));
                    }
                }
                Some(_) => {}
            }
        }
        oldest.map(|(_, ip)| ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn lease(i: &str, mac: &str, exp: i64) -> Lease {
        Lease {
            ip: ip(i),
            mac: mac.into(),
            expires_ms: exp,
            hostname: None,
        }
    }

    #[test]
    fn bounds() {
        assert!(Pool::new(ip("10.0.0.9"), ip("10.0.0.1")).is_none());
        assert!(Pool::new(ip("10.0.0.0"), ip("10.2.0.0")).is_none());
        assert!(Pool::new(ip("255.255.255.255"), ip("255.255.255.255")).is_some());
        assert!(Pool::new(ip("0.0.0.0"), ip("255.255.255.255")).is_none());
    }

    #[test]
    fn choice() {
        let p = Pool::new(ip("10.0.0.10"), ip("10.0.0.12")).unwrap();
        let a = "52:54:00:00:00:0a";
        let b = "52:54:00:00:00:0b";
        // First free, skipping the server's own address.
        assert_eq!(
            p.choose(a, None, None, &[], 0, Some(ip("10.0.0.10"))),
            Some(ip("10.0.0.11"))
        );
        // The pinned address wins, even outside the pool.
        assert_eq!(
            p.choose(a, Some(ip("10.9.9.9")), None, &[], 0, None),
            Some(ip("10.9.9.9"))
        );
        // Own lease, even expired, while nobody took it.
        let l = [lease("10.0.0.12", a, 5)];
        assert_eq!(
            p.choose(a, None, None, &l, 100, None),
            Some(ip("10.0.0.12"))
        );
        // Someone else's live lease is skipped; requested honoured when free.
        let l = [lease("10.0.0.10", b, 1000)];
        assert_eq!(
            p.choose(a, None, None, &l, 100, None),
            Some(ip("10.0.0.11"))
        );
        assert_eq!(
            p.choose(a, None, Some(ip("10.0.0.10")), &l, 100, None),
            Some(ip("10.0.0.11"))
        );
        assert_eq!(
            p.choose(a, None, Some(ip("10.0.0.12")), &l, 100, None),
            Some(ip("10.0.0.12"))
        );
        // Full: the oldest expired lease is reused; all live: none.
        let l = [
            lease("10.0.0.10", b, 50),
            lease("10.0.0.11", "x", 10),
            lease("10.0.0.12", "y", 1000),
        ];
        assert_eq!(
            p.choose(a, None, None, &l, 100, None),
            Some(ip("10.0.0.11"))
        );
        let l = [
            lease("10.0.0.10", b, 500),
            lease("10.0.0.11", "x", 500),
            lease("10.0.0.12", "y", 500),
        ];
        assert_eq!(p.choose(a, None, None, &l, 100, None), None);
    }
}
