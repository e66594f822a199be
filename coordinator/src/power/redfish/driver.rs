//! The `redfish` PowerDriver: power through ComputerSystem.Reset, boot
//! device through the Boot property's override fields (Ironic's mapping,
//! `ironic/drivers/modules/redfish/power.py` and `management.py`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::RedfishClient;
use super::{RedfishConfig, RedfishError, redfish_config};
use crate::power::{
    BootDeviceState, BoxFuture, PowerAction, PowerDriver, PowerError, PowerState, PowerTarget,
};

/// Boot devices: (Ironic name, BootSourceOverrideTarget).
const BOOT_TARGETS: [(&str, &str); 5] = [
    ("pxe", "Pxe"),
    ("disk", "Hdd"),
    ("cdrom", "Cd"),
    ("bios", "BiosSetup"),
    ("uefihttp", "UefiHttp"),
];

/// The PATCH body's `Boot` object for a device (`None` if unsupported):
/// the target, Once or Continuous, and the mode when the node's boot mode is
/// known (Ironic re-sends the mode with the target).
pub fn boot_patch(device: &str, persistent: bool, boot_mode: Option<&str>) -> Option<Value> {
    let (_, rf) = BOOT_TARGETS.iter().find(|(n, _)| *n == device)?;
    let mut boot = json!({
        "BootSourceOverrideTarget": rf,
        "BootSourceOverrideEnabled": if persistent { "Continuous" } else { "Once" },
    });
    match boot_mode {
        Some("uefi") => boot["BootSourceOverrideMode"] = json!("UEFI"),
        Some("bios") => boot["BootSourceOverrideMode"] = json!("Legacy"),
        _ => {}
    }
    Some(boot)
}

/// The Redfish power driver.
#[derive(Debug)]
pub struct RedfishPower {
    client: RedfishClient,
    power_wait: Duration,
    poll: Duration,
}

impl Default for RedfishPower {
    fn default() -> Self {
        Self::new(
            RedfishClient::default(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
    }
}

/// The power error of a Redfish error, by kind.
fn failed(e: RedfishError) -> PowerError {
    let message = format!("Redfish call failed: {e}");
    match e {
        RedfishError::Unreachable(_) => PowerError::Unreachable(message),
        RedfishError::Status {
            status: 401 | 403, ..
        } => PowerError::Auth(message),
        RedfishError::Status { status: 501, .. } => PowerError::Unsupported(message),
        RedfishError::Status { status, .. } => PowerError::Refused {
            message,
            busy: status == 429 || status >= 500,
        },
        RedfishError::Http(_) | RedfishError::Protocol(_) => PowerError::Failed(message),
    }
}

/// Ironic's reading of `PowerState`.
fn power_state(system: &Value) -> Result<PowerState, PowerError> {
    match system["PowerState"].as_str() {
        Some("On" | "PoweringOn") => Ok(PowerState::On),
        Some("Off" | "PoweringOff") => Ok(PowerState::Off),
        other => Err(PowerError::Failed(format!(
            "Redfish system reports an unknown PowerState {other:?}"
        ))),
    }
}

impl RedfishPower {
    /// A driver with a client and the power-state wait.
    pub fn new(client: RedfishClient, power_wait: Duration, poll: Duration) -> Self {
        Self {
            client,
            power_wait,
            poll,
        }
    }

    async fn system(&self, cfg: &RedfishConfig) -> Result<(String, Value), PowerError> {
        let path = self.client.system_path(cfg).await.map_err(failed)?;
        let v = self
            .client
            .request(cfg, Method::GET, &path, None)
            .await
            .map_err(failed)?;
        Ok((path, v))
    }

    async fn reset(
        &self,
        cfg: &RedfishConfig,
        path: &str,
        system: &Value,
        wanted: &[&str],
    ) -> Result<(), PowerError> {
        let action = &system["Actions"]["#ComputerSystem.Reset"];
        let target = action["target"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        let allowed: Vec<&str> = action["ResetType@Redfish.AllowableValues"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // The first wanted type the system allows (or the first, when it does not say).
        let reset_type = wanted
            .iter()
            .find(|w| allowed.is_empty() || allowed.contains(w))
            .ok_or_else(|| {
                PowerError::Unsupported(format!(
                    "the Redfish system allows none of {wanted:?} (it allows {allowed:?})"
                ))
            })?;
        tracing::info!(base = %cfg.base, system = path, reset_type, "redfish reset");
        self.client
            .request(
                cfg,
                Method::POST,
                &target,
                Some(&json!({"ResetType": reset_type})),
            )
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn wait_for(&self, cfg: &RedfishConfig, want: PowerState) -> Result<(), PowerError> {
        let deadline = tokio::time::Instant::now() + self.power_wait;
        loop {
            let (_, s) = self.system(cfg).await?;
            if power_state(&s)? == want {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PowerError::Failed(format!(
                    "the Redfish system did not reach {} within {} s",
                    want.as_str(),
                    self.power_wait.as_secs()
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn act(&self, cfg: &RedfishConfig, action: PowerAction) -> Result<(), PowerError> {
        let (path, system) = self.system(cfg).await?;
        let current = power_state(&system)?;
        let wanted: &[&str] = match (action, current) {
            (PowerAction::On, PowerState::On)
            | (PowerAction::Off | PowerAction::SoftOff, PowerState::Off) => {
                return Ok(());
            }
            (PowerAction::On, _) => &["On"],
            (PowerAction::Off, _) => &["ForceOff"],
            (PowerAction::SoftOff, _) => &["GracefulShutdown"],
            // Rebooting a node that is off is powering it on (as Ironic).
            (PowerAction::Reboot | PowerAction::SoftReboot, PowerState::Off) => &["On"],
            (PowerAction::Reboot, _) => &["ForceRestart", "PowerCycle"],
            (PowerAction::SoftReboot, _) => &["GracefulRestart", "ForceRestart", "PowerCycle"],
        };
        self.reset(cfg, &path, &system, wanted).await?;
        self.wait_for(cfg, action.resulting_state()).await
    }
}

impl PowerDriver for RedfishPower {
    fn validate(&self, driver_info: &Map<String, Value>) -> Result<(), PowerError> {
        redfish_config(driver_info).map(|_| ())
    }

    fn get_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            let cfg = redfish_config(&target.driver_info)?;
            let (_, s) = self.system(&cfg).await?;
            power_state(&s)
        })
    }

    fn set_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
        action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let cfg = redfish_config(&target.driver_info)?;
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
            let cfg = redfish_config(&target.driver_info)?;
            let boot =
                boot_patch(device, persistent, target.boot_mode.as_deref()).ok_or_else(|| {
                    PowerError::Unsupported(format!(
                        "Invalid boot device {device} specified, valid boot devices are {:?}",
                        self.supported_boot_devices()
                    ))
                })?;
            let path = self.client.system_path(&cfg).await.map_err(failed)?;
            self.client
                .request(&cfg, Method::PATCH, &path, Some(&json!({"Boot": boot})))
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn get_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<BootDeviceState, PowerError>> {
        Box::pin(async move {
            let cfg = redfish_config(&target.driver_info)?;
            let (_, s) = self.system(&cfg).await?;
            let boot = &s["Boot"];
            let device = boot["BootSourceOverrideTarget"].as_str().and_then(|t| {
                BOOT_TARGETS
                    .iter()
                    .find(|(_, rf)| *rf == t)
                    .map(|(n, _)| (*n).to_owned())
            });
            let persistent = boot["BootSourceOverrideEnabled"]
                .as_str()
                .map(|e| e == "Continuous");
            Ok((device, persistent))
        })
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        BOOT_TARGETS.iter().map(|(n, _)| *n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_override_bodies() {
        assert_eq!(
            boot_patch("pxe", false, Some("uefi")),
            Some(
                json!({"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
                "BootSourceOverrideMode": "UEFI"})
            )
        );
        assert_eq!(
            boot_patch("disk", true, Some("bios")),
            Some(
                json!({"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous",
                "BootSourceOverrideMode": "Legacy"})
            )
        );
        assert_eq!(
            boot_patch("bios", true, None),
            Some(
                json!({"BootSourceOverrideTarget": "BiosSetup", "BootSourceOverrideEnabled": "Continuous"})
            )
        );
        assert_eq!(boot_patch("floppy", true, None), None);
    }

    #[test]
    fn power_state_reading() {
        for (s, want) in [
            ("On", PowerState::On),
            ("PoweringOn", PowerState::On),
            ("Off", PowerState::Off),
            ("PoweringOff", PowerState::Off),
        ] {
            assert_eq!(power_state(&json!({"PowerState": s})).ok(), Some(want));
        }
        assert!(power_state(&json!({})).is_err());
    }
}
