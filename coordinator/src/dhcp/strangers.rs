//! A bound on the addresses machines of no enrolled port may hold, with
//! `unknown_macs = "inspect"` (`[dhcp] unknown_macs_limit`).
//!
//! Every offer holds an address for a minute and every acknowledgement for
//! the lease time, so without a bound a neighbour sending DISCOVERs from
//! random MACs would use up the pool and starve the enrolled machines.
//! Enrolled ports are never counted. The set lives in memory; at start it is
//! filled from the unexpired leases of MACs no port has.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// How often a refusal is logged at warning level (milliseconds).
const WARN_EVERY_MS: i64 = 60_000;

/// Unknown MACs holding an address, with when their hold ends.
#[derive(Debug)]
pub struct Strangers {
    limit: usize,
    held: Mutex<HashMap<String, i64>>,
    last_warn: AtomicI64,
}

impl Strangers {
    /// At most `limit` unknown MACs hold an address at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: Mutex::new(HashMap::new()),
            last_warn: AtomicI64::new(i64::MIN),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `mac` may be given an address at `now_ms`: it holds one
    /// already, or fewer than the limit do.
    pub fn admit(&self, mac: &str, now_ms: i64) -> bool {
        let mut held = self.held();
        held.retain(|_, until| *until > now_ms);
        held.contains_key(mac) || held.len() < self.limit
    }

    /// Records that `mac` holds an address until `until_ms`.
    pub fn hold(&self, mac: &str, until_ms: i64) {
        self.held().insert(mac.to_owned(), until_ms);
    }

    /// `mac` gave its address back.
    pub fn forget(&self, mac: &str) {
        self.held().remove(mac);
    }

    /// Whether a refusal at `now_ms` should be logged at warning level (at
    /// most once per minute; the others go to debug).
    pub fn should_warn(&self, now_ms: i64) -> bool {
        let last = self.last_warn.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_limit_strangers_hold_addresses() {
        let s = Strangers::new(2);
        assert!(s.admit("a", 0));
        s.hold("a", 100);
        assert!(s.admit("b", 0));
        s.hold("b", 100);
        assert!(!s.admit("c", 0), "the third is refused");
        assert!(s.admit("a", 50), "a holder is served again (renewal)");
        s.forget("a");
        assert!(s.admit("c", 50), "a released slot is free");
        s.hold("c", 100);
        assert!(!s.admit("d", 99));
        assert!(s.admit("d", 100), "expired holds free their slots");
    }

    #[test]
    fn refusals_warn_once_a_minute() {
        let s = Strangers::new(0);
        assert!(s.should_warn(1_000));
        assert!(!s.should_warn(30_000));
        assert!(s.should_warn(61_000));
    }
}
