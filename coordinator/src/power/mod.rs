//! Power and boot-device control behind the [`PowerDriver`] trait. The `fake`
//! driver keeps state in memory; `ipmitool` speaks IPMI 2.0 natively
//! ([`ipmi`]), `redfish` speaks Redfish ([`redfish`]) and `snmp` switches
//! PDU outlets over SNMP v1/v2c/v3 ([`snmp`]). [`PowerDrivers`] maps a node's
//! `power_interface` to a driver, and drivers can be replaced at start-up
//! with [`PowerDrivers::register`].

pub mod fake;
pub mod ipmi;
pub mod redfish;
pub mod snmp;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

/// A boxed future, so the trait can be used as `dyn PowerDriver`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boot device and whether it is persistent; either may be unknown.
pub type BootDeviceState = (Option<String>, Option<bool>);

pub use crate::model::power::{PowerAction, PowerState};

/// Boot devices (Ironic `ironic/common/boot_devices.py`).
pub const BOOT_DEVICES: [&str; 9] = [
    "pxe",
    "disk",
    "cdrom",
    "bios",
    "safe",
    "wanboot",
    "iscsiboot",
    "floppy",
    "uefihttp",
];

/// What a driver needs to know about the node it acts on.
#[derive(Debug, Clone)]
pub struct PowerTarget {
    /// Node UUID.
    pub node_uuid: String,
    /// The node's driver_info (addresses, credentials).
    pub driver_info: Map<String, Value>,
    /// The power state the coordinator last recorded.
    pub recorded: Option<PowerState>,
    /// The node's boot mode (`uefi` or `bios`) when known: the instance's or
    /// node's `boot_mode` capability, else what inspection found. IPMI sets
    /// the UEFI boot flag from it, Redfish `BootSourceOverrideMode`.
    pub boot_mode: Option<String>,
}

/// Errors of power drivers, by kind. The message (`Display`) is what the
/// API shows (`last_error`, error bodies); [`PowerError::kind`] is what the
/// power sync decides on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PowerError {
    /// driver_info lacks keys or has bad values (invalid configuration).
    #[error("{0}")]
    InvalidDriverInfo(String),
    /// The BMC or PDU did not answer: a timeout, an ICMP unreachable, a
    /// connection or name resolution failure.
    #[error("{0}")]
    Unreachable(String),
    /// The BMC or PDU refused the credentials (RAKP, HTTP 401/403, SNMPv3
    /// authentication).
    #[error("{0}")]
    Auth(String),
    /// The BMC or PDU answered with an error: an IPMI completion code or
    /// RMCP+ status, an HTTP status, an SNMP error-status.
    #[error("{message}")]
    Refused {
        /// The message.
        message: String,
        /// The answer said "not now" (IPMI node busy, HTTP 429 or 5xx,
        /// SNMP genErr or resourceUnavailable): worth retrying.
        busy: bool,
    },
    /// Not supported by this driver or this BMC.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else: malformed or unexpected answers, a power state not
    /// reached in time.
    #[error("{0}")]
    Failed(String),
}

/// The kinds of [`PowerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerErrorKind {
    /// [`PowerError::InvalidDriverInfo`].
    InvalidConfig,
    /// [`PowerError::Unreachable`].
    Unreachable,
    /// [`PowerError::Auth`].
    Auth,
    /// [`PowerError::Refused`].
    Refused,
    /// [`PowerError::Unsupported`].
    Unsupported,
    /// [`PowerError::Failed`].
    Failed,
}

impl PowerErrorKind {
    /// A short name for logs and maintenance reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidConfig => "invalid configuration",
            Self::Unreachable => "unreachable",
            Self::Auth => "authentication failed",
            Self::Refused => "refused by the BMC",
            Self::Unsupported => "unsupported",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for PowerErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PowerError {
    /// The kind.
    pub fn kind(&self) -> PowerErrorKind {
        match self {
            Self::InvalidDriverInfo(_) => PowerErrorKind::InvalidConfig,
            Self::Unreachable(_) => PowerErrorKind::Unreachable,
            Self::Auth(_) => PowerErrorKind::Auth,
            Self::Refused { .. } => PowerErrorKind::Refused,
            Self::Unsupported(_) => PowerErrorKind::Unsupported,
            Self::Failed(_) => PowerErrorKind::Failed,
        }
    }

    /// True when trying again later may succeed: no answer, a busy answer,
    /// or an unexplained failure. Wrong credentials, refusals, unsupported
    /// requests and invalid driver_info stay wrong until someone changes
    /// something.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Failed(_) => true,
            Self::Refused { busy, .. } => *busy,
            Self::InvalidDriverInfo(_) | Self::Auth(_) | Self::Unsupported(_) => false,
        }
    }
}

/// A power (and boot device) driver.
pub trait PowerDriver: Send + Sync {
    /// Checks driver_info without talking to the hardware.
    fn validate(&self, driver_info: &Map<String, Value>) -> Result<(), PowerError>;

    /// False when the driver cannot tell the node's power state at all: the
    /// `fake` driver before anything set or recorded one (Ironic's fake
    /// power then keeps `power_state` null). Verification and the power
    /// sync record nothing then.
    fn knows_power_state(&self, _target: &PowerTarget) -> bool {
        true
    }

    /// Reads the power state.
    fn get_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>>;

    /// Changes the power state.
    fn set_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
        action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>>;

    /// Sets the boot device (`pxe`, `disk`, …), for the next boot only or persistently.
    fn set_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
        device: &'a str,
        persistent: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>>;

    /// Reads the boot device: `(device, persistent)`, either unknown.
    fn get_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<BootDeviceState, PowerError>>;

    /// Boot devices this driver can set.
    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk"]
    }
}

/// Drivers by power interface name.
#[derive(Clone)]
pub struct PowerDrivers {
    drivers: HashMap<String, Arc<dyn PowerDriver>>,
}

impl std::fmt::Debug for PowerDrivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDrivers")
            .field("names", &self.drivers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for PowerDrivers {
    fn default() -> Self {
        let mut drivers: HashMap<String, Arc<dyn PowerDriver>> = HashMap::new();
        drivers.insert("fake".into(), Arc::new(fake::FakePower::default()));
        drivers.insert("ipmitool".into(), Arc::new(ipmi::IpmiPower::default()));
        drivers.insert("redfish".into(), Arc::new(redfish::RedfishPower::default()));
        drivers.insert("snmp".into(), Arc::new(snmp::SnmpPower::default()));
        Self { drivers }
    }
}

impl PowerDrivers {
    /// Installs (or replaces) the driver for a power interface.
    pub fn register(&mut self, power_interface: &str, driver: Arc<dyn PowerDriver>) {
        self.drivers.insert(power_interface.to_owned(), driver);
    }

    /// The driver for a power interface.
    pub fn get(&self, power_interface: &str) -> Option<Arc<dyn PowerDriver>> {
        self.drivers.get(power_interface).cloned()
    }
}

/// Checks that `keys` are present and non-empty strings in driver_info.
pub fn require_keys(driver_info: &Map<String, Value>, keys: &[&str]) -> Result<(), PowerError> {
    let missing: Vec<&str> = keys
        .iter()
        .filter(|k| match driver_info.get(**k) {
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Null) | None => true,
            Some(_) => false,
        })
        .copied()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PowerError::InvalidDriverInfo(format!(
            "Some parameters were missing in node's driver_info. Missing are: {}",
            missing.join(", ")
        )))
    }
}
