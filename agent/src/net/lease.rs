//! DHCP lease maintenance (RFC 2131 §4.4.5), one thread per leased
//! interface: at T1 the client renews (RENEWING: a DHCPREQUEST with `ciaddr`,
//! IP-unicast to the server), at T2 it rebinds (REBINDING: the same request
//! broadcast, any server may answer), retransmitting at half the remaining
//! time, between 1 s and 60 s. An ACK extends the lease; a NAK or the expiry
//! removes the address (and with it the routes through it) and the client
//! starts over with DISCOVER until it has a lease again.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::dhcp::{self, BROADCAST_MAC, DhcpError, Lease, PacketSocket};
use super::dhcp_packet as pkt;
use super::{Link, NetOptions, links, netlink};

/// What happened to a lease; `net --keep` prints these as JSON lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LeaseEvent {
    /// A lease is in use (at start, or obtained again after a loss).
    Bound {
        /// The lease.
        lease: Lease,
    },
    /// T1 passed: renewing with the server that granted the lease.
    Renewing {
        /// Interface.
        interface: String,
        /// The leased address.
        address: Ipv4Addr,
    },
    /// T2 passed: rebinding with any server.
    Rebinding {
        /// Interface.
        interface: String,
        /// The leased address.
        address: Ipv4Addr,
    },
    /// A server extended the lease.
    Renewed {
        /// The lease as the ACK grants it.
        lease: Lease,
        /// Whether the ACK answered a REBINDING (broadcast) request.
        rebinding: bool,
    },
    /// The lease is gone; its address was removed.
    Lost {
        /// Interface.
        interface: String,
        /// The address that was removed.
        address: Ipv4Addr,
        /// Why: `nak` or `expired`.
        reason: LossReason,
    },
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// A server answered DHCPNAK.
    Nak,
    /// No server answered before the lease expired.
    Expired,
}

/// Receives every [`LeaseEvent`], from the maintenance threads.
pub type EventSink = Arc<dyn Fn(&LeaseEvent) + Send + Sync>;

/// The running maintenance; the threads stop (within about a second, or
/// after the DISCOVER round in progress) once [`Maintenance::stop`] is called.
/// Dropping it leaves them running.
#[derive(Debug, Clone)]
pub struct Maintenance {
    stop: Arc<AtomicBool>,
    /// How many interfaces are maintained.
    pub interfaces: usize,
}

impl Maintenance {
    /// Asks every maintenance thread to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The longest wait between two retransmissions (RFC 2131's 60 s).
const MAX_RETRANSMIT: Duration = Duration::from_secs(60);
/// The shortest wait, so short leases still get a few attempts.
const MIN_RETRANSMIT: Duration = Duration::from_secs(1);
/// How often a waiting thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(250);
/// One DISCOVER round when the lease is lost; repeated until a lease comes.
const REDISCOVER_ROUND: Duration = Duration::from_secs(30);

/// T1, T2 and the expiry, as offsets from the time the lease was requested;
/// `None` for an infinite lease (or none at all). T1 defaults to half the
/// lease, T2 to 7/8 (RFC 2131 §4.4.5); they are clamped to T1 ≤ T2 ≤ lease.
pub fn schedule(lease: &Lease) -> Option<(Duration, Duration, Duration)> {
    let secs = lease.lease_secs.filter(|s| *s != u32::MAX)?;
    let total = Duration::from_secs(u64::from(secs));
    let t2 = lease
        .rebind_secs
        .map_or(total.mul_f64(0.875), |s| Duration::from_secs(u64::from(s)))
        .min(total);
    let t1 = lease
        .renew_secs
        .map_or(total / 2, |s| Duration::from_secs(u64::from(s)))
        .min(t2);
    Some((t1, t2, total))
}

/// How long to wait for an answer before retransmitting, with `remaining`
/// left until the phase ends (T2 or the expiry): half of it, at least 1 s and
/// at most 60 s, never past the end.
pub fn retransmit_wait(remaining: Duration) -> Duration {
    (remaining / 2)
        .clamp(MIN_RETRANSMIT, MAX_RETRANSMIT)
        .min(remaining)
}

/// Starts maintenance for the DHCP leases `configure` returned. Nothing is
/// maintained for a static `ip=` configuration or an infinite lease. The
/// first lease with routers is the one that carries the default route, as in
/// `configure`; it is restored with the address after a loss.
pub fn maintain(leases: &[Lease], opts: &NetOptions, sink: EventSink) -> Maintenance {
    let stop = Arc::new(AtomicBool::new(false));
    let mut interfaces = 0;
    if opts.static_ip.is_some() {
        return Maintenance { stop, interfaces };
    }
    let route_owner = leases.iter().position(|l| !l.routers.is_empty());
    let all = links();
    for (i, lease) in leases.iter().enumerate() {
        if schedule(lease).is_none() {
            continue;
        }
        let Some(link) = all.iter().find(|l| l.name == lease.interface).cloned() else {
            tracing::warn!(interface = %lease.interface, "leased interface vanished: not maintained");
            continue;
        };
        let worker = Worker {
            link,
            carries_route: route_owner == Some(i),
            stop: stop.clone(),
            sink: sink.clone(),
        };
        let lease = lease.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dhcp-{}", lease.interface))
            .spawn(move || worker.run(lease));
        match spawned {
            Ok(_) => interfaces += 1,
            Err(e) => tracing::warn!(error = %e, "cannot start DHCP lease maintenance"),
        }
    }
    Maintenance { stop, interfaces }
}

/// How one renewal cycle ended.
enum Outcome {
    /// An ACK, for a request first sent at `sent`.
    Renewed {
        lease: Lease,
        sent: Instant,
        rebinding: bool,
    },
    Lost(LossReason),
    Stopped,
}

/// The maintenance of one interface's lease.
struct Worker {
    link: Link,
    carries_route: bool,
    stop: Arc<AtomicBool>,
    sink: EventSink,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps until `t`; false if asked to stop first.
    fn sleep_until(&self, t: Instant) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let left = t.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    fn run(self, mut lease: Lease) {
        let mut start = Instant::now();
        loop {
            match self.cycle(&lease, start) {
                Outcome::Stopped => return,
                Outcome::Renewed {
                    lease: new,
                    sent,
                    rebinding,
                } => {
                    self.renewed(&lease, &new, rebinding);
                    (lease, start) = (new, sent);
                }
                Outcome::Lost(reason) => {
                    self.lost(&lease, reason);
                    let Some((new, sent)) = self.rediscover() else {
                        return;
                    };
                    self.bound(&lease, &new);
                    (lease, start) = (new, sent);
                }
            }
        }
    }

    /// Waits for T1, then renews until T2, then rebinds until the expiry.
    fn cycle(&self, lease: &Lease, start: Instant) -> Outcome {
        let Some((t1, t2, expiry)) = schedule(lease) else {
            // Infinite: nothing to do until asked to stop.
            while self.sleep_until(Instant::now() + Duration::from_secs(3600)) {}
            return Outcome::Stopped;
        };
        if !self.sleep_until(start + t1) {
            return Outcome::Stopped;
        }
        let (interface, address) = (self.link.name.clone(), lease.address);
        tracing::info!(interface = %interface, address = %address, "DHCP lease at T1: renewing");
        (self.sink)(&LeaseEvent::Renewing {
            interface: interface.clone(),
            address,
        });
        match self.phase(lease, start + t2, false) {
            Outcome::Lost(LossReason::Expired) => {}
            done => return done,
        }
        tracing::info!(interface = %interface, address = %address, "DHCP lease at T2: rebinding");
        (self.sink)(&LeaseEvent::Rebinding { interface, address });
        self.phase(lease, start + expiry, true)
    }

    /// Sends renewal requests until `end`; `Lost(Expired)` means no answer.
    fn phase(&self, lease: &Lease, end: Instant, rebinding: bool) -> Outcome {
        let socket = match PacketSocket::open(self.link.index) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(interface = %self.link.name, error = %e, "cannot open the DHCP socket");
                None
            }
        };
        let mut xb = [0u8; 4];
        crate::random::fill(&mut xb);
        let xid = u32::from_ne_bytes(xb);
        let began = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end {
                return Outcome::Lost(LossReason::Expired);
            }
            let until = now + retransmit_wait(end - now);
            let secs = u16::try_from(began.elapsed().as_secs()).unwrap_or(u16::MAX);
            let answer = match &socket {
                Some(s) => self.attempt(s, lease, xid, secs, rebinding, until),
                None => Ok(None),
            };
            match answer {
                Ok(Some(new)) => {
                    return Outcome::Renewed {
                        lease: new,
                        sent: now,
                        rebinding,
                    };
                }
                Err(DhcpError::Nak) => return Outcome::Lost(LossReason::Nak),
                Err(e) => {
                    tracing::warn!(interface = %self.link.name, error = %e, "DHCP renewal request failed");
                }
                Ok(None) => {}
            }
            if !self.sleep_until(until) {
                return Outcome::Stopped;
            }
        }
    }

    /// Sends one request and waits until `until` for its ACK (or NAK).
    fn attempt(
        &self,
        s: &PacketSocket,
        lease: &Lease,
        xid: u32,
        secs: u16,
        rebinding: bool,
        until: Instant,
    ) -> Result<Option<Lease>, DhcpError> {
        let payload = pkt::renew_request(xid, self.link.mac, lease.address, secs);
        let (mac, dst) = match (rebinding, lease.server) {
            (false, Some(server)) => (lease.server_mac.unwrap_or(BROADCAST_MAC), server),
            _ => (BROADCAST_MAC, Ipv4Addr::BROADCAST),
        };
        s.send(mac, &pkt::ip_udp_between(lease.address, dst, &payload))?;
        loop {
            if self.stopped() {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            let chunk = (now + STOP_POLL).min(until);
            if let Some(ack) = s.receive(self.link.mac, xid, pkt::ACK, chunk)? {
                let mask = prefix_mask(lease.prefix);
                let mut new = dhcp::lease_from(&self.link, ack, Some(mask), lease.server);
                if new.lease_secs.is_none() {
                    new.lease_secs = lease.lease_secs;
                }
                return Ok(Some(new));
            }
        }
    }

    /// DISCOVER rounds until a lease comes (or a stop); applies it.
    fn rediscover(&self) -> Option<(Lease, Instant)> {
        loop {
            if self.stopped() {
                return None;
            }
            let sent = Instant::now();
            match dhcp::run_dhcp(&self.link, REDISCOVER_ROUND) {
                Ok(lease) => {
                    self.apply(&lease);
                    return Some((lease, sent));
                }
                Err(e) => {
                    tracing::warn!(interface = %self.link.name, error = %e, "DHCP failed; trying again");
                    if !self.sleep_until(Instant::now() + MIN_RETRANSMIT) {
                        return None;
                    }
                }
            }
        }
    }

    fn renewed(&self, old: &Lease, new: &Lease, rebinding: bool) {
        if new.address != old.address || new.prefix != old.prefix {
            self.remove(old);
            self.apply(new);
        } else if self.carries_route && new.routers.first() != old.routers.first() {
            self.apply(new);
        }
        tracing::info!(
            interface = %self.link.name,
            address = %new.address,
            lease_secs = new.lease_secs.unwrap_or(0),
            rebinding,
            "DHCP lease renewed"
        );
        (self.sink)(&LeaseEvent::Renewed {
            lease: new.clone(),
            rebinding,
        });
    }

    fn lost(&self, lease: &Lease, reason: LossReason) {
        tracing::warn!(
            interface = %self.link.name,
            address = %lease.address,
            reason = ?reason,
            "DHCP lease lost: address removed, discovering again"
        );
        self.remove(lease);
        (self.sink)(&LeaseEvent::Lost {
            interface: self.link.name.clone(),
            address: lease.address,
            reason,
        });
    }

    fn bound(&self, old: &Lease, new: &Lease) {
        if new.address != old.address {
            tracing::info!(
                interface = %self.link.name,
                address = %new.address,
                previous = %old.address,
                "DHCP lease obtained again with a different address"
            );
        } else {
            tracing::info!(interface = %self.link.name, address = %new.address, "DHCP lease obtained again");
        }
        (self.sink)(&LeaseEvent::Bound { lease: new.clone() });
    }

    fn remove(&self, lease: &Lease) {
        if let Err(e) = netlink::delete_address(self.link.index, lease.address, lease.prefix) {
            tracing::warn!(interface = %self.link.name, address = %lease.address, error = %e, "cannot remove the address");
        }
    }

    fn apply(&self, lease: &Lease) {
        super::apply_address(&self.link, lease, self.carries_route);
    }
}

fn prefix_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(secs: Option<u32>, t1: Option<u32>, t2: Option<u32>) -> Lease {
        Lease {
            interface: "eth0".into(),
            address: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            routers: Vec::new(),
            dns: Vec::new(),
            hostname: None,
            domain: None,
            lease_secs: secs,
            server: None,
            renew_secs: t1,
            rebind_secs: t2,
            server_mac: None,
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn t1_and_t2_default_to_half_and_seven_eighths() {
        assert_eq!(
            schedule(&lease(Some(3600), None, None)),
            Some((s(1800), s(3150), s(3600)))
        );
        assert_eq!(
            schedule(&lease(Some(120), Some(3), Some(6))),
            Some((s(3), s(6), s(120)))
        );
        // Out-of-order or too long values are clamped.
        assert_eq!(
            schedule(&lease(Some(100), Some(90), Some(200))),
            Some((s(90), s(100), s(100)))
        );
        assert_eq!(
            schedule(&lease(Some(100), Some(80), Some(50))),
            Some((s(50), s(50), s(100)))
        );
        assert_eq!(schedule(&lease(Some(u32::MAX), None, None)), None);
        assert_eq!(schedule(&lease(None, None, None)), None);
    }

    #[test]
    fn retransmissions_wait_half_the_rest_between_1_and_60_s() {
        assert_eq!(retransmit_wait(s(3600)), s(60));
        assert_eq!(retransmit_wait(s(100)), s(50));
        assert_eq!(retransmit_wait(s(3)), Duration::from_millis(1500));
        assert_eq!(retransmit_wait(s(1)), s(1));
        assert_eq!(
            retransmit_wait(Duration::from_millis(400)),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_mask(32), Ipv4Addr::BROADCAST);
        assert_eq!(prefix_mask(0), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn events_serialize_as_tagged_json() {
        let e = LeaseEvent::Lost {
            interface: "eth0".into(),
            address: Ipv4Addr::new(10, 0, 0, 5),
            reason: LossReason::Nak,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"event": "lost", "interface": "eth0", "address": "10.0.0.5", "reason": "nak"})
        );
        let r = serde_json::to_value(LeaseEvent::Renewed {
            lease: lease(Some(120), Some(3), None),
            rebinding: true,
        })
        .unwrap();
        assert_eq!(r["event"], "renewed");
        assert_eq!(r["lease"]["renew_secs"], 3);
        assert!(r["lease"].get("rebind_secs").is_none());
        assert!(r["lease"].get("server_mac").is_none());
    }
}
