//! Power interfaces that exist by name with Ironic's driver_info validation,
//! whose protocol code arrives with the power issue (SNMP; IPMI and Redfish
//! are in [`super::ipmi`] and [`super::redfish`]).

use serde_json::{Map, Value};

use super::{
    BoxFuture, PowerAction, PowerDriver, PowerError, PowerState, PowerTarget, require_keys,
};

/// A driver that validates driver_info and refuses to act.
#[derive(Debug)]
pub struct StubPower {
    name: &'static str,
    required: &'static [&'static str],
}

/// SNMP PDU families Ironic supported (`snmp_driver`).
pub const SNMP_DRIVERS: [&str; 10] = [
    "apc",
    "apc_masterswitch",
    "apc_masterswitchplus",
    "apc_rackpdu",
    "aten",
    "cyberpower",
    "eatonpower",
    "teltronix",
    "baytech_mrp27",
    "servertech_sentry3",
];

impl StubPower {
    /// `ipmitool`: needs `ipmi_address`. The default registry uses the
    /// native [`super::ipmi::IpmiPower`] instead; this stays for tests that
    /// want validation without a BMC.
    pub fn ipmi() -> Self {
        Self {
            name: "ipmitool",
            required: &["ipmi_address"],
        }
    }

    /// `redfish`: needs `redfish_address` (and `redfish_system_id` on
    /// multi-system BMCs). The default registry uses
    /// [`super::redfish::RedfishPower`] instead.
    pub fn redfish() -> Self {
        Self {
            name: "redfish",
            required: &["redfish_address"],
        }
    }

    /// `snmp`: needs `snmp_driver`, `snmp_address` and `snmp_outlet`.
    pub fn snmp() -> Self {
        Self {
            name: "snmp",
            required: &["snmp_driver", "snmp_address", "snmp_outlet"],
        }
    }

    fn not_yet<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, PowerError>> {
        let name = self.name.to_owned();
        Box::pin(async move { Err(PowerError::NotImplemented(name)) })
    }
}

fn check_port(driver_info: &Map<String, Value>, key: &str) -> Result<(), PowerError> {
    match driver_info.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse::<u64>().ok(),
                _ => None,
            };
            match n {
                Some(p) if (1..=65535).contains(&p) => Ok(()),
                _ => Err(PowerError::InvalidDriverInfo(format!(
                    "{key} must be an integer between 1 and 65535, got {v}"
                ))),
            }
        }
    }
}

impl PowerDriver for StubPower {
    fn validate(&self, driver_info: &Map<String, Value>) -> Result<(), PowerError> {
        require_keys(driver_info, self.required)?;
        match self.name {
            "ipmitool" => {
                check_port(driver_info, "ipmi_port")?;
                if let Some(v) = driver_info.get("ipmi_priv_level").and_then(Value::as_str) {
                    if !["ADMINISTRATOR", "CALLBACK", "OPERATOR", "USER"].contains(&v) {
                        return Err(PowerError::InvalidDriverInfo(format!(
                            "Invalid privilege level value:{v}, the valid value can be one of ADMINISTRATOR, CALLBACK, OPERATOR, USER"
                        )));
                    }
                }
            }
            "snmp" => {
                check_port(driver_info, "snmp_port")?;
                let d = driver_info
                    .get("snmp_driver")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !SNMP_DRIVERS.contains(&d) && d != "servertech_sentry4" && d != "raritan_pdu2" {
                    return Err(PowerError::InvalidDriverInfo(format!(
                        "SNMPPowerDriver: unknown driver: '{d}'"
                    )));
                }
                if let Some(v) = driver_info.get("snmp_version").and_then(Value::as_str) {
                    if !["1", "2c", "3"].contains(&v) {
                        return Err(PowerError::InvalidDriverInfo(format!(
                            "SNMPPowerDriver: unknown SNMP version: '{v}'"
                        )));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn get_power_state<'a>(
        &'a self,
        _target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        self.not_yet()
    }

    fn set_power_state<'a>(
        &'a self,
        _target: &'a PowerTarget,
        _action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        self.not_yet()
    }

    fn set_boot_device<'a>(
        &'a self,
        _target: &'a PowerTarget,
        _device: &'a str,
        _persistent: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        self.not_yet()
    }

    fn get_boot_device<'a>(
        &'a self,
        _target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<super::BootDeviceState, PowerError>> {
        self.not_yet()
    }
}
