//! The `ipmitool` power interface on the native client: power on, off,
//! reboot, soft off and state; boot device with the UEFI flag.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::power::{
    BootDeviceState, BoxFuture, PowerAction, PowerDriver, PowerError, PowerState, PowerTarget,
    require_keys,
};
use ingot_ipmi::{
    BmcConfig, BootDevice, ChassisControl, CipherSuite, IpmiClient, IpmiError, IpmiVersion, Timing,
    privilege,
};

/// The IPMI power driver.
#[derive(Debug)]
pub struct IpmiPower {
    client: IpmiClient,
    /// How long to wait for the BMC to report the requested power state.
    power_wait: Duration,
    /// Poll spacing while waiting.
    poll: Duration,
}

impl Default for IpmiPower {
    fn default() -> Self {
        Self::new(
            Timing::default(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
    }
}

fn bad(msg: String) -> PowerError {
    PowerError::InvalidDriverInfo(msg)
}

fn int_value(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_key<'a>(info: &'a Map<String, Value>, key: &str) -> &'a str {
    info.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Reads a [`BmcConfig`] from Ironic's ipmi_* driver_info keys.
pub fn bmc_config(info: &Map<String, Value>) -> Result<BmcConfig, PowerError> {
    require_keys(info, &["ipmi_address"])?;
    let port = match info.get("ipmi_port") {
        None | Some(Value::Null) => 623,
        Some(v) => match int_value(v) {
            Some(p @ 1..=65535) => p as u16,
            _ => {
                return Err(bad(format!(
                    "ipmi_port must be an integer between 1 and 65535, got {v}"
                )));
            }
        },
    };
    let privilege = match info.get("ipmi_priv_level").and_then(Value::as_str) {
        None | Some("ADMINISTRATOR") => privilege::ADMINISTRATOR,
        Some("OPERATOR") => privilege::OPERATOR,
        Some("USER") => privilege::USER,
        Some("CALLBACK") => privilege::CALLBACK,
        Some(v) => {
            return Err(bad(format!(
                "Invalid privilege level value:{v}, the valid value can be one of ADMINISTRATOR, CALLBACK, OPERATOR, USER"
            )));
        }
    };
    let suite = match info.get("ipmi_cipher_suite") {
        None | Some(Value::Null) => CipherSuite::Suite3,
        Some(v) => int_value(v)
            .and_then(|n| u8::try_from(n).ok())
            .and_then(CipherSuite::from_id)
            .ok_or_else(|| {
                bad(format!(
                    "ipmi_cipher_suite {v} is not supported; use 3 or 17"
                ))
            })?,
    };
    let version = match info.get("ipmi_protocol_version") {
        None | Some(Value::Null) => IpmiVersion::V20,
        Some(v) => match v.as_str().map(str::trim) {
            Some("2.0") | Some("2") => IpmiVersion::V20,
            Some("1.5") => IpmiVersion::V15,
            _ => {
                return Err(bad(format!(
                    "Invalid IPMI protocol version value {v}, the valid value can be one of 1.5, 2.0"
                )));
            }
        },
    };
    let kg = match info.get("ipmi_hex_kg_key").and_then(Value::as_str) {
        None | Some("") => None,
        Some(k) => Some(
            hex::decode(k)
                .map_err(|_| bad(format!("ipmi_hex_kg_key must be hexadecimal, got {k}")))?,
        ),
    };
    Ok(BmcConfig {
        host: str_key(info, "ipmi_address").to_owned(),
        port,
        username: str_key(info, "ipmi_username").to_owned(),
        password: str_key(info, "ipmi_password").to_owned(),
        kg,
        suite,
        privilege,
        version,
    })
}

/// The power error of an IPMI error, by kind; the message keeps Ironic's
/// "IPMI call failed" prefix.
pub fn failed(e: IpmiError) -> PowerError {
    let message = format!("IPMI call failed: {e}");
    if e.is_no_answer() {
        PowerError::Unreachable(message)
    } else if e.is_busy() {
        PowerError::Refused {
            message,
            busy: true,
        }
    } else if e.is_auth_status() {
        PowerError::Auth(message)
    } else if e.is_unsupported_status() {
        PowerError::Unsupported(message)
    } else {
        match e {
            IpmiError::Auth(_) => PowerError::Auth(message),
            IpmiError::Completion { .. } | IpmiError::Rakp { .. } => PowerError::Refused {
                message,
                busy: false,
            },
            _ => PowerError::Failed(message),
        }
    }
}

impl IpmiPower {
    /// A driver with the given client timing and power-state wait.
    pub fn new(timing: Timing, power_wait: Duration, poll: Duration) -> Self {
        Self {
            client: IpmiClient::new(timing),
            power_wait,
            poll,
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &IpmiClient {
        &self.client
    }

    async fn wait_for(&self, cfg: &BmcConfig, on: bool) -> Result<(), PowerError> {
        let deadline = tokio::time::Instant::now() + self.power_wait;
        loop {
            if self.client.power_is_on(cfg).await.map_err(failed)? == on {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PowerError::Failed(format!(
                    "the BMC did not report power {} within {} s",
                    if on { "on" } else { "off" },
                    self.power_wait.as_secs()
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Sends one chassis control and waits until the BMC reports `on`.
    async fn switch(
        &self,
        cfg: &BmcConfig,
        control: ChassisControl,
        on: bool,
    ) -> Result<(), PowerError> {
        self.client
            .chassis_control(cfg, control)
            .await
            .map_err(failed)?;
        self.wait_for(cfg, on).await
    }

    async fn act(&self, cfg: &BmcConfig, action: PowerAction) -> Result<(), PowerError> {
        match action {
            PowerAction::On => self.switch(cfg, ChassisControl::On, true).await,
            PowerAction::Off => self.switch(cfg, ChassisControl::Off, false).await,
            PowerAction::SoftOff => self.switch(cfg, ChassisControl::Soft, false).await,
            // As Ironic: off (hard or soft), then on; a cycle is refused by
            // some BMCs when the machine is off.
            PowerAction::Reboot | PowerAction::SoftReboot => {
                let off = if action == PowerAction::Reboot {
                    ChassisControl::Off
                } else {
                    ChassisControl::Soft
                };
                if self.client.power_is_on(cfg).await.map_err(failed)? {
                    self.switch(cfg, off, false).await?;
                }
                self.switch(cfg, ChassisControl::On, true).await
            }
        }
    }
}

impl PowerDriver for IpmiPower {
    fn validate(&self, driver_info: &Map<String, Value>) -> Result<(), PowerError> {
        bmc_config(driver_info).map(|_| ())
    }

    fn get_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            let cfg = bmc_config(&target.driver_info)?;
            let on = self.client.power_is_on(&cfg).await.map_err(failed)?;
            Ok(if on { PowerState::On } else { PowerState::Off })
        })
    }

    fn set_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
        action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let cfg = bmc_config(&target.driver_info)?;
            tracing::info!(node = %target.node_uuid, host = %cfg.host, action = ?action, "ipmi power action");
            self.act(&cfg, action).await
        })
    }

    fn set_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
        device: &'a str,
        persistent: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let cfg = bmc_config(&target.driver_info)?;
            let dev = BootDevice::from_ironic(device)
                .filter(|d| {
                    self.supported_boot_devices()
                        .contains(&d.ironic_name().unwrap_or(""))
                })
                .ok_or_else(|| {
                    PowerError::Unsupported(format!(
                        "Invalid boot device {device} specified, valid boot devices are {:?}",
                        self.supported_boot_devices()
                    ))
                })?;
            let uefi = target.boot_mode.as_deref() == Some("uefi");
            let disable_timeout = target
                .driver_info
                .get("ipmi_disable_boot_timeout")
                .map(|v| !matches!(v, Value::Bool(false)) && v.as_str() != Some("false"))
                .unwrap_or(true);
            if disable_timeout {
                // As Ironic: raw 0x00 0x08 0x03 0x08, so the BMC keeps the flags
                // past its 60 s timer. Not every BMC has it; failures are ignored.
                if let Err(e) = self.client.disable_boot_timeout(&cfg).await {
                    tracing::debug!(node = %target.node_uuid, error = %e, "disabling the boot flag timeout failed");
                }
            }
            self.client
                .set_boot_device(&cfg, dev, persistent, uefi)
                .await
                .map_err(failed)
        })
    }

    fn get_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<BootDeviceState, PowerError>> {
        Box::pin(async move {
            let cfg = bmc_config(&target.driver_info)?;
            let (dev, persistent, _uefi) = self.client.boot_device(&cfg).await.map_err(failed)?;
            Ok((
                dev.and_then(BootDevice::ironic_name).map(str::to_owned),
                Some(persistent),
            ))
        })
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk", "cdrom", "bios", "safe"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn ipmi_errors_map_to_kinds() {
        use crate::power::PowerErrorKind as K;
        let kind = |e: IpmiError| failed(e).kind();
        assert_eq!(kind(IpmiError::Timeout), K::Unreachable);
        assert_eq!(
            kind(IpmiError::Unreachable("refused".into())),
            K::Unreachable
        );
        assert_eq!(kind(IpmiError::Auth("RAKP 2".into())), K::Auth);
        let rakp = |code| IpmiError::Rakp {
            step: "RAKP 2",
            code,
        };
        assert_eq!(kind(rakp(0x0D)), K::Auth, "unauthorised name");
        assert_eq!(kind(rakp(0x11)), K::Unsupported, "no cipher suite match");
        let cc = |code| IpmiError::Completion {
            cmd: "Get Chassis Status",
            code,
        };
        assert_eq!(kind(cc(0xD4)), K::Refused);
        assert!(!failed(cc(0xD4)).is_transient(), "insufficient privilege");
        assert!(failed(cc(0xC0)).is_transient(), "node busy");
        assert_eq!(kind(IpmiError::Protocol("short".into())), K::Failed);
        assert!(
            failed(IpmiError::Timeout)
                .to_string()
                .starts_with("IPMI call failed: no answer")
        );
    }

    #[test]
    fn driver_info_defaults_to_suite_3_admin_port_623() {
        let c = bmc_config(&info(json!({"ipmi_address": "10.0.0.5"}))).expect("valid");
        assert_eq!(c.port, 623);
        assert_eq!(c.suite, CipherSuite::Suite3);
        assert_eq!(c.privilege, privilege::ADMINISTRATOR);
        let c = bmc_config(&info(json!({
            "ipmi_address": "h", "ipmi_port": "9623", "ipmi_cipher_suite": "17",
            "ipmi_priv_level": "OPERATOR", "ipmi_username": "u", "ipmi_password": "p"
        })))
        .expect("valid");
        assert_eq!(
            (c.port, c.suite, c.privilege),
            (9623, CipherSuite::Suite17, 3)
        );
        assert!(bmc_config(&info(json!({"ipmi_address": "h", "ipmi_cipher_suite": 1}))).is_err());
        assert!(bmc_config(&info(json!({"ipmi_address": "h", "ipmi_port": 0}))).is_err());
        assert!(
            bmc_config(&info(
                json!({"ipmi_address": "h", "ipmi_priv_level": "ROOT"})
            ))
            .is_err()
        );
        assert!(bmc_config(&info(json!({}))).is_err());
        let c = bmc_config(&info(
            json!({"ipmi_address": "h", "ipmi_protocol_version": "1.5"}),
        ))
        .expect("valid");
        assert_eq!(c.version, IpmiVersion::V15);
        assert!(
            bmc_config(&info(
                json!({"ipmi_address": "h", "ipmi_protocol_version": "3.0"})
            ))
            .is_err()
        );
        let c = bmc_config(&info(
            json!({"ipmi_address": "h", "ipmi_hex_kg_key": "0a0b"}),
        ))
        .expect("valid");
        assert_eq!(c.kg, Some(vec![0x0a, 0x0b]));
        assert!(
            bmc_config(&info(
                json!({"ipmi_address": "h", "ipmi_hex_kg_key": "xyz"})
            ))
            .is_err()
        );
    }
}
