//! The `snmp` power interface on top of [`SnmpClient`]: reads and switches
//! one PDU outlet. A switch is followed by polling the outlet's status until
//! it reports the new state (PDUs may switch with a delay); reboot is off,
//! [`Settings::reboot_delay`] (or `snmp_reboot_delay` in driver_info), on.

use std::time::Duration;

use serde_json::{Map, Value};

use super::client::{Agent, SnmpClient};
use super::message::Version;
use super::pdu::{self, Family};
use super::usm::{AesKey, Auth, Usm};
use super::{SnmpError, Timing};
use crate::power::{
    BootDeviceState, BoxFuture, PowerAction, PowerDriver, PowerError, PowerState, PowerTarget,
    require_keys,
};

/// Waits around a switch.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a switched outlet may take to report its new state
    /// (Ironic: `[snmp]power_timeout`, 10 s).
    pub power_timeout: Duration,
    /// Status polling interval while waiting (1 s in Ironic).
    pub poll_interval: Duration,
    /// Off time of a reboot when driver_info has no `snmp_reboot_delay`
    /// (Ironic: `[snmp]reboot_delay`, 0 s).
    pub reboot_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            power_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            reboot_delay: Duration::ZERO,
        }
    }
}

/// The driver.
#[derive(Debug, Default)]
pub struct SnmpPower {
    client: SnmpClient,
    settings: Settings,
}

/// One node's outlet, parsed from driver_info.
#[derive(Debug, Clone)]
pub struct Outlet {
    /// The PDU.
    pub agent: Agent,
    /// Its family.
    pub family: &'static Family,
    /// The 1-based outlet index.
    pub index: u32,
    /// `snmp_reboot_delay`, when set.
    pub reboot_delay: Option<Duration>,
}

fn bad(msg: String) -> PowerError {
    PowerError::InvalidDriverInfo(msg)
}

/// A driver_info value as text (strings, numbers and booleans).
fn text(info: &Map<String, Value>, key: &str) -> Option<String> {
    match info.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses and checks the snmp_* keys.
pub fn outlet(info: &Map<String, Value>) -> Result<Outlet, PowerError> {
    require_keys(info, &["snmp_driver", "snmp_address", "snmp_outlet"])?;
    let driver = text(info, "snmp_driver").unwrap_or_default();
    let family = pdu::find(&driver).ok_or_else(|| {
        bad(format!(
            "SNMPPowerDriver: unknown driver: '{driver}'; known drivers are {}",
            pdu::names().join(", ")
        ))
    })?;
    let host = text(info, "snmp_address").unwrap_or_default();
    let port = match text(info, "snmp_port") {
        None => 161,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            bad(format!(
                "snmp_port must be an integer between 1 and 65535, got {p}"
            ))
        })?,
    };
    let raw_outlet = text(info, "snmp_outlet").unwrap_or_default();
    let index = raw_outlet
        .parse::<u32>()
        .ok()
        .filter(|o| *o > 0)
        .ok_or_else(|| {
            bad(format!(
                "snmp_outlet must be a positive integer, got {raw_outlet}"
            ))
        })?;
    let (version, usm) = match text(info, "snmp_version").as_deref() {
        None | Some("1") => (Version::V1, None),
        Some("2c") => (Version::V2c, None),
        Some("3") => (Version::V2c, Some(usm_user(info)?)),
        Some(v) => return Err(bad(format!("SNMPPowerDriver: unknown SNMP version: '{v}'"))),
    };
    let community = text(info, "snmp_community").unwrap_or_else(|| "public".into());
    let read_community = text(info, "snmp_community_read").unwrap_or_else(|| community.clone());
    let write_community = text(info, "snmp_community_write").unwrap_or(community);
    let reboot_delay = match text(info, "snmp_reboot_delay") {
        None => None,
        Some(d) => Some(
            d.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && (0.0..=3600.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    bad(format!(
                        "snmp_reboot_delay must be 0 to 3600 seconds, got {d}"
                    ))
                })?,
        ),
    };
    Ok(Outlet {
        agent: Agent {
            host,
            port,
            version,
            read_community,
            write_community,
            usm,
        },
        family,
        index,
        reboot_delay,
    })
}

/// The SNMPv3 user from `snmp_user`, `snmp_auth_*`, `snmp_priv_*` and
/// `snmp_context_*`. Supported: auth none, md5, sha (HMAC-SHA-96) or
/// sha224 to sha512 (RFC 7860); priv none, aes (AES-128-CFB), aes192blmt
/// or aes256blmt (Blumenthal key extension, as net-snmp). An auth key
/// without a protocol means md5, as in Ironic; a priv key needs
/// `snmp_priv_protocol: aes` (Ironic's default, DES, is not implemented).
fn usm_user(info: &Map<String, Value>) -> Result<Usm, PowerError> {
    require_keys(info, &["snmp_user"])?;
    let key = |name: &str| -> Result<Option<String>, PowerError> {
        match text(info, name) {
            Some(k) if k.len() < 8 => Err(bad(format!("{name} must be at least 8 characters"))),
            k => Ok(k),
        }
    };
    let auth_key = key("snmp_auth_key")?;
    let priv_key = key("snmp_priv_key")?;
    let auth_proto = text(info, "snmp_auth_protocol")
        .unwrap_or_else(|| if auth_key.is_some() { "md5" } else { "none" }.into());
    let auth = match (auth_proto.as_str(), auth_key) {
        ("none", _) => None,
        ("md5", Some(k)) => Some((Auth::Md5, k)),
        ("sha", Some(k)) => Some((Auth::Sha1, k)),
        ("sha224", Some(k)) => Some((Auth::Sha224, k)),
        ("sha256", Some(k)) => Some((Auth::Sha256, k)),
        ("sha384", Some(k)) => Some((Auth::Sha384, k)),
        ("sha512", Some(k)) => Some((Auth::Sha512, k)),
        ("md5" | "sha" | "sha224" | "sha256" | "sha384" | "sha512", None) => {
            return Err(bad(format!(
                "snmp_auth_protocol {auth_proto} needs snmp_auth_key"
            )));
        }
        (other, _) => {
            return Err(bad(format!(
                "SNMPv3 authentication protocol '{other}' is not supported by Ingot; use md5, sha or sha224 to sha512"
            )));
        }
    };
    let priv_proto = text(info, "snmp_priv_protocol")
        .unwrap_or_else(|| if priv_key.is_some() { "des" } else { "none" }.into());
    let (priv_aes, aes) = match (priv_proto.as_str(), priv_key) {
        ("none", _) => (None, AesKey::Aes128),
        ("aes" | "aes128", Some(k)) => (Some(k), AesKey::Aes128),
        ("aes192blmt", Some(k)) => (Some(k), AesKey::Aes192),
        ("aes256blmt", Some(k)) => (Some(k), AesKey::Aes256),
        ("aes" | "aes128" | "aes192blmt" | "aes256blmt", None) => {
            return Err(bad(format!(
                "snmp_priv_protocol {priv_proto} needs snmp_priv_key"
            )));
        }
        (other, _) => {
            return Err(bad(format!(
                "SNMPv3 privacy protocol '{other}' is not supported by Ingot; use aes, aes192blmt or aes256blmt"
            )));
        }
    };
    if priv_aes.is_some() && auth.is_none() {
        return Err(bad(
            "SNMPv3 privacy needs authentication (snmp_auth_protocol)".into(),
        ));
    }
    let context_engine_id = match text(info, "snmp_context_engine_id") {
        None => Vec::new(),
        Some(h) => hex::decode(h.trim_start_matches("0x")).map_err(|_| {
            bad(format!(
                "snmp_context_engine_id must be hexadecimal, got {h}"
            ))
        })?,
    };
    Ok(Usm {
        user: text(info, "snmp_user").unwrap_or_default(),
        auth,
        priv_aes,
        aes,
        context_engine_id,
        context_name: text(info, "snmp_context_name").unwrap_or_default(),
    })
}

impl SnmpPower {
    /// A driver with the given request timing and switch settings.
    pub fn new(timing: Timing, settings: Settings) -> Self {
        Self {
            client: SnmpClient::new(timing),
            settings,
        }
    }

    /// Reads an outlet's state; pending states are an error.
    pub async fn read(&self, o: &Outlet) -> Result<PowerState, PowerError> {
        let raw = self.read_raw(o).await?;
        o.family.state_of(raw).ok_or_else(|| {
            PowerError::Failed(format!(
                "SNMP PDU {}:{} outlet {} reports status {raw}, neither on nor off",
                o.agent.host, o.agent.port, o.index
            ))
        })
    }

    async fn read_raw(&self, o: &Outlet) -> Result<i64, SnmpError> {
        self.client
            .get_integer(&o.agent, &o.family.status_oid(o.index))
            .await
    }

    /// Switches an outlet and waits until its status says so.
    pub async fn switch(&self, o: &Outlet, state: PowerState) -> Result<(), PowerError> {
        let (oid, value) = o.family.switch(o.index, state);
        tracing::info!(
            pdu = %o.agent.host,
            port = o.agent.port,
            family = o.family.name,
            outlet = o.index,
            state = state.as_str(),
            "snmp outlet switch"
        );
        self.client.set_integer(&o.agent, &oid, value).await?;
        let deadline = tokio::time::Instant::now() + self.settings.power_timeout;
        loop {
            let raw = self.read_raw(o).await?;
            if o.family.state_of(raw) == Some(state) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PowerError::Failed(format!(
                    "SNMP PDU {}:{} outlet {} did not reach {} within {:?} (status {raw})",
                    o.agent.host,
                    o.agent.port,
                    o.index,
                    state.as_str(),
                    self.settings.power_timeout
                )));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }
}

fn no_boot_device() -> PowerError {
    PowerError::Unsupported(
        "the snmp power interface has no boot device control (PDUs switch outlets only)".into(),
    )
}

impl PowerDriver for SnmpPower {
    fn validate(&self, driver_info: &Map<String, Value>) -> Result<(), PowerError> {
        outlet(driver_info).map(|_| ())
    }

    fn get_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        Box::pin(async move { self.read(&outlet(&target.driver_info)?).await })
    }

    fn set_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
        action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let o = outlet(&target.driver_info)?;
            match action {
                PowerAction::On => self.switch(&o, PowerState::On).await,
                PowerAction::Off => self.switch(&o, PowerState::Off).await,
                PowerAction::Reboot => {
                    self.switch(&o, PowerState::Off).await?;
                    tokio::time::sleep(o.reboot_delay.unwrap_or(self.settings.reboot_delay)).await;
                    self.switch(&o, PowerState::On).await
                }
                // A PDU cannot ask the OS to shut down (Ironic refused these too).
                PowerAction::SoftOff | PowerAction::SoftReboot => Err(PowerError::Unsupported(
                    "the snmp power interface supports power on, power off and rebooting; \
                     a PDU cannot shut an operating system down"
                        .into(),
                )),
            }
        })
    }

    fn set_boot_device<'a>(
        &'a self,
        _target: &'a PowerTarget,
        _device: &'a str,
        _persistent: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async { Err(no_boot_device()) })
    }

    fn get_boot_device<'a>(
        &'a self,
        _target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<BootDeviceState, PowerError>> {
        Box::pin(async { Err(no_boot_device()) })
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        Vec::new()
    }
}
