//! Switch drivers: put a node's switch port on a VLAN, take it off again
//! (quarantine), and read back what the switch really has.
//!
//! - [`SwitchDriver`]: the trait every driver implements, async, one
//!   instance per configured switch.
//! - [`PortState`]: a port's VLAN settings, compared with `==` after every
//!   change ([`set_port_verified`]).
//! - [`ovsdb`]: Open vSwitch, spoken natively over OVSDB (RFC 7047).
//! - [`ssh`]: a vendor CLI (Cisco IOS and NX-OS, Arista EOS, Juniper
//!   Junos, Dell OS10, SONiC, Cumulus NVUE) over SSH.
//! - [`Switches`]: the configured switches by name (`[switches.<name>]`).

pub mod ovsdb;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;

/// A boxed future, as the drivers return them (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An IEEE 802.1Q VLAN id usable for a network: 1 to 4094 (0 means "no
/// VLAN" on the wire and 4095 is reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "u16")]
pub struct VlanId(u16);

impl VlanId {
    /// The lowest usable VLAN id.
    pub const MIN: u16 = 1;
    /// The highest usable VLAN id.
    pub const MAX: u16 = 4094;

    /// The id, if it is between 1 and 4094.
    pub fn new(id: u16) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&id).then_some(Self(id))
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for VlanId {
    type Error = String;

    fn try_from(id: u16) -> Result<Self, Self::Error> {
        Self::new(id)
            .ok_or_else(|| format!("VLAN {id} is out of range ({} to {})", Self::MIN, Self::MAX))
    }
}

impl std::fmt::Display for VlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A switch port's VLAN settings: what we ask for, and what we read back.
///
/// Only [`PortState::Access`], [`PortState::Trunk`] and
/// [`PortState::Quarantined`] can be set; the other two only come back from
/// a switch configured by someone else, and never equal anything we set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    /// Untagged frames, all in one VLAN; tagged frames are dropped.
    Access {
        /// The VLAN.
        vlan: VlanId,
    },
    /// Tagged frames of the allowed VLANs, and untagged frames in the native
    /// VLAN if there is one.
    Trunk {
        /// Untagged frames belong to this VLAN; without it they are dropped.
        native: Option<VlanId>,
        /// The VLANs carried tagged (not empty).
        allowed: BTreeSet<VlanId>,
    },
    /// Taken off every network: the driver's quarantine (on Open vSwitch,
    /// access to the quarantine VLAN, on which nothing else is).
    Quarantined,
    /// Every VLAN passes (Open vSwitch: no tag, no trunks): never set by us,
    /// and the one state a node's port must never be left in.
    AllVlans,
    /// A configuration this model does not describe (a native-tagged or
    /// 802.1ad port, VLAN 0 or 4095), as the driver describes it.
    Other {
        /// What the switch has, for logs and errors.
        description: String,
    },
}

impl PortState {
    /// An access port on `vlan`.
    pub fn access(vlan: VlanId) -> Self {
        Self::Access { vlan }
    }
}

impl std::fmt::Display for PortState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Access { vlan } => write!(f, "access VLAN {vlan}"),
            Self::Trunk { native, allowed } => {
                f.write_str("trunk VLANs ")?;
                for (i, v) in allowed.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                match native {
                    Some(n) => write!(f, " native {n}"),
                    None => f.write_str(" no native VLAN"),
                }
            }
            Self::Quarantined => f.write_str("quarantined"),
            Self::AllVlans => f.write_str("every VLAN (unrestricted)"),
            Self::Other { description } => write!(f, "other ({description})"),
        }
    }
}

/// What went wrong, without the switch and port ([`SwitchError`] adds them).
#[derive(Debug, thiserror::Error)]
pub enum SwitchErrorKind {
    /// The switch could not be reached (connection refused, no socket…).
    #[error("unreachable at {address}: {source}")]
    Unreachable {
        /// Where we tried.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// No complete answer in time.
    #[error("no answer within {ms} ms")]
    Timeout {
        /// The timeout.
        ms: u64,
    },
    /// The connection broke or closed before the answer.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The switch has no port of that name.
    #[error("no such port")]
    NoSuchPort,
    /// The switch answered something we cannot use (malformed, too large).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The switch refused the change (constraint violation, no permission…).
    #[error("refused: {0}")]
    Refused(String),
    /// The request cannot be expressed on this switch or is unsafe (an
    /// empty trunk, which Open vSwitch takes as "every VLAN").
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The state read back after a change is not the state asked for.
    #[error("read back {observed}, expected {expected}")]
    Mismatch {
        /// What was asked for.
        expected: PortState,
        /// What the switch has.
        observed: PortState,
    },
}

/// A switch operation failed: which switch, which port, and why.
#[derive(Debug, thiserror::Error)]
#[error("switch {switch}, port {port}: {kind}")]
pub struct SwitchError {
    /// The switch's configured name.
    pub switch: String,
    /// The port's name on that switch.
    pub port: String,
    /// Why.
    pub kind: SwitchErrorKind,
}

impl SwitchError {
    /// An error on `port` of `switch`.
    pub fn new(switch: &str, port: &str, kind: SwitchErrorKind) -> Self {
        Self {
            switch: switch.to_owned(),
            port: port.to_owned(),
            kind,
        }
    }

    /// True when trying again may help: the switch did not answer, or the
    /// state read back differed (someone changed it at the same time).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            SwitchErrorKind::Unreachable { .. }
                | SwitchErrorKind::Timeout { .. }
                | SwitchErrorKind::ConnectionLost(_)
                | SwitchErrorKind::Mismatch { .. }
        )
    }
}

/// A switch: sets and reads the VLAN settings of its ports.
pub trait SwitchDriver: Send + Sync + std::fmt::Debug {
    /// The switch's configured name (used in errors and records).
    fn name(&self) -> &str;

    /// Applies `state` to `port`: [`PortState::Access`],
    /// [`PortState::Trunk`] (with at least one allowed VLAN) or
    /// [`PortState::Quarantined`]; anything else is
    /// [`SwitchErrorKind::Invalid`]. Returns when the switch has accepted
    /// the change; it does not read it back ([`set_port_verified`] does).
    fn set_port<'a>(
        &'a self,
        port: &'a str,
        state: &'a PortState,
    ) -> BoxFuture<'a, Result<(), SwitchError>>;

    /// Reads `port`'s current state from the switch.
    fn read_port<'a>(&'a self, port: &'a str) -> BoxFuture<'a, Result<PortState, SwitchError>>;

    /// Takes `port` off every network (see [`PortState::Quarantined`]).
    fn quarantine_port<'a>(&'a self, port: &'a str) -> BoxFuture<'a, Result<(), SwitchError>> {
        Box::pin(async move { self.set_port(port, &PortState::Quarantined).await })
    }
}

/// Applies `state` to `port`, reads it back and compares: `Ok` only when the
/// switch has exactly `state`. A mismatch is tried again up to `attempts`
/// times in all (at least once); other errors are returned at once. The
/// caller decides what failing closed means (usually
/// [`SwitchDriver::quarantine_port`]).
pub async fn set_port_verified(
    driver: &dyn SwitchDriver,
    port: &str,
    state: &PortState,
    attempts: u32,
) -> Result<(), SwitchError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        driver.set_port(port, state).await?;
        let observed = driver.read_port(port).await?;
        if observed == *state {
            return Ok(());
        }
        tracing::warn!(
            switch = driver.name(),
            port,
            expected = %state,
            observed = %observed,
            attempt,
            "switch port read back differs from what was set"
        );
        if attempt >= attempts.max(1) {
            return Err(SwitchError::new(
                driver.name(),
                port,
                SwitchErrorKind::Mismatch {
                    expected: state.clone(),
                    observed,
                },
            ));
        }
    }
}

/// The configured switches by name.
#[derive(Debug, Clone, Default)]
pub struct Switches {
    drivers: BTreeMap<String, Arc<dyn SwitchDriver>>,
}

impl Switches {
    /// Builds a driver for each `[switches.<name>]` of a configuration
    /// that passed [`crate::network::config::validate`]. Nothing is
    /// contacted yet.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Self, crate::network::config::NetworkConfigError> {
        use crate::network::config::{NetworkConfigError, SwitchConfig};
        let quarantine = crate::network::config::quarantine_vlan(config)?;
        let mut drivers: BTreeMap<String, Arc<dyn SwitchDriver>> = BTreeMap::new();
        for (name, switch) in &config.switches {
            let driver: Arc<dyn SwitchDriver> = match switch {
                SwitchConfig::Ovsdb(c) => {
                    let quarantine = quarantine.ok_or_else(|| NetworkConfigError::Invalid {
                        what: format!("[switches.{name}]"),
                        why: "a switch needs [network_roles] quarantine".into(),
                    })?;
                    let address = ovsdb::OvsdbAddress::parse(&c.address).map_err(|why| {
                        NetworkConfigError::Invalid {
                            what: format!("[switches.{name}] address"),
                            why,
                        }
                    })?;
                    Arc::new(ovsdb::OvsdbSwitch::new(
                        name,
                        address,
                        std::time::Duration::from_millis(c.timeout_ms),
                        quarantine,
                    ))
                }
                SwitchConfig::Ssh(c) => {
                    let quarantine = quarantine.ok_or_else(|| NetworkConfigError::Invalid {
                        what: format!("[switches.{name}]"),
                        why: "a switch needs [network_roles] quarantine".into(),
                    })?;
                    Arc::new(ssh::SshSwitch::new(
                        name,
                        c.device_type,
                        ssh::session_settings(c).map_err(|why| NetworkConfigError::Invalid {
                            what: format!("[switches.{name}]"),
                            why,
                        })?,
                        quarantine,
                    ))
                }
            };
            drivers.insert(name.clone(), driver);
        }
        Ok(Self { drivers })
    }

    /// The switch named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn SwitchDriver>> {
        self.drivers.get(name)
    }

    /// True when no switch is configured.
    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    /// The names of the configured switches.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.drivers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn vlan_ids_outside_1_to_4094_are_refused() {
        assert!(VlanId::new(0).is_none());
        assert!(VlanId::new(4095).is_none());
        assert_eq!(VlanId::new(1).unwrap().get(), 1);
        assert_eq!(VlanId::new(4094).unwrap().get(), 4094);
        assert!(VlanId::try_from(5000).unwrap_err().contains("out of range"));
    }

    #[test]
    fn port_states_compare_and_print() {
        let v = |n| VlanId::new(n).unwrap();
        let a = PortState::Trunk {
            native: Some(v(10)),
            allowed: [v(30), v(20)].into_iter().collect(),
        };
        let b = PortState::Trunk {
            native: Some(v(10)),
            allowed: [v(20), v(30)].into_iter().collect(),
        };
        assert_eq!(a, b);
        assert_ne!(a, PortState::access(v(10)));
        assert_eq!(a.to_string(), "trunk VLANs 20,30 native 10");
        assert_eq!(PortState::access(v(7)).to_string(), "access VLAN 7");
    }

    #[test]
    fn errors_name_the_switch_and_port() {
        let e = SwitchError::new("tor1", "p1", SwitchErrorKind::NoSuchPort);
        assert_eq!(e.to_string(), "switch tor1, port p1: no such port");
        assert!(!e.is_transient());
        let e = SwitchError::new("tor1", "p1", SwitchErrorKind::Timeout { ms: 100 });
        assert!(e.is_transient());
    }
}
