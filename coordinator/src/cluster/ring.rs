//! The consistent hash ring that maps nodes to coordinators, as Ironic's:
//! every coordinator has `2^exponent` points on a ring of 64-bit MD5
//! hashes, and a node belongs to the coordinator of the first point at or
//! after the hash of its UUID. When a member joins or leaves, only the nodes
//! between its points and their predecessors move.

use md5::{Digest, Md5};

/// A ring over a set of coordinator names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashRing {
    points: Vec<(u64, usize)>,
    hosts: Vec<String>,
}

fn hash(text: &str) -> u64 {
    let d = Md5::digest(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl HashRing {
    /// A ring over `hosts` (order does not matter) with `2^exponent`
    /// points each; `exponent` is capped at 16.
    pub fn new<S: AsRef<str>>(hosts: &[S], exponent: u32) -> Self {
        let mut hosts: Vec<String> = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        hosts.sort();
        hosts.dedup();
        let per_host = 1usize << exponent.min(16);
        let mut points = Vec::with_capacity(hosts.len().saturating_mul(per_host));
        for (i, h) in hosts.iter().enumerate() {
            for p in 0..per_host {
                points.push((hash(&format!("{h}-{p}")), i));
            }
        }
        points.sort_unstable();
        Self { points, hosts }
    }

    /// The coordinators on the ring, sorted.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The coordinator for `key` (a node UUID); `None` on an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash(key);
        let i = self.points.partition_point(|(p, _)| *p < h);
        let (_, host) = self.points.get(i).or_else(|| self.points.first())?;
        self.hosts.get(*host).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn uuid(i: usize) -> String {
        format!("00000000-0000-4000-8000-{i:012x}")
    }

    fn spread(ring: &HashRing, n: usize) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for i in 0..n {
            if let Some(o) = ring.owner(&uuid(i)) {
                *m.entry(o.to_owned()).or_default() += 1;
            }
        }
        m
    }

    #[test]
    fn an_empty_ring_owns_nothing_and_one_host_owns_all() {
        assert_eq!(HashRing::new::<&str>(&[], 5).owner("x"), None);
        let ring = HashRing::new(&["a"], 5);
        assert!((0..100).all(|i| ring.owner(&uuid(i)) == Some("a")));
    }

    #[test]
    fn three_members_share_ten_thousand_nodes_within_ten_percent() {
        let exponent = crate::config::DEFAULT_HASH_PARTITION_EXPONENT;
        for set in 0..20 {
            let names: Vec<String> = (0..3).map(|k| format!("ingot-{set}-{k}")).collect();
            let ring = HashRing::new(&names, exponent);
            let s = spread(&ring, 10_000);
            for n in &names {
                let got = s.get(n).copied().unwrap_or(0);
                assert!(
                    (3_000..=3_667).contains(&got),
                    "{n} holds {got} of 10,000: {s:?}"
                );
            }
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_nodes() {
        let all = HashRing::new(&["c1", "c2", "c3"], 7);
        let two = HashRing::new(&["c1", "c3"], 7);
        for i in 0..5_000 {
            let k = uuid(i);
            let before = all.owner(&k);
            let after = two.owner(&k);
            if before != Some("c2") {
                assert_eq!(before, after, "node {k} moved although its owner stayed");
            } else {
                assert_ne!(after, Some("c2"));
            }
        }
    }

    #[test]
    fn the_order_of_hosts_does_not_matter() {
        let a = HashRing::new(&["x", "y", "z"], 5);
        let b = HashRing::new(&["z", "x", "y", "x"], 5);
        assert_eq!(a, b);
    }
}
