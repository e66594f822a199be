//! The `fake` power driver: remembers power state and boot device in memory,
//! starting from what the coordinator recorded. For tests and `fake-hardware`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};

use super::{BoxFuture, PowerAction, PowerDriver, PowerError, PowerState, PowerTarget};

#[derive(Debug, Clone, Default)]
struct FakeState {
    power: Option<PowerState>,
    boot_device: Option<(String, bool)>,
}

/// The fake driver.
#[derive(Debug, Default)]
pub struct FakePower {
    nodes: Mutex<HashMap<String, FakeState>>,
}

impl FakePower {
    fn with<T>(&self, uuid: &str, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let mut g = match self.nodes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(g.entry(uuid.to_owned()).or_default())
    }
}

impl PowerDriver for FakePower {
    fn validate(&self, _driver_info: &Map<String, Value>) -> Result<(), PowerError> {
        Ok(())
    }

    fn knows_power_state(&self, target: &PowerTarget) -> bool {
        target.recorded.is_some() || self.with(&target.node_uuid, |s| s.power.is_some())
    }

    fn get_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            Ok(self.with(&target.node_uuid, |s| {
                s.power.or(target.recorded).unwrap_or(PowerState::Off)
            }))
        })
    }

    fn set_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
        action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            if target
                .driver_info
                .get("fake_power_fail")
                .and_then(Value::as_bool)
                == Some(true)
            {
                return Err(PowerError::Failed(
                    "fake power failure (driver_info.fake_power_fail)".into(),
                ));
            }
            self.with(&target.node_uuid, |s| {
                s.power = Some(action.resulting_state())
            });
            Ok(())
        })
    }

    fn set_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
        device: &'a str,
        persistent: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            self.with(&target.node_uuid, |s| {
                s.boot_device = Some((device.to_owned(), persistent));
            });
            Ok(())
        })
    }

    fn get_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<super::BootDeviceState, PowerError>> {
        Box::pin(async move {
            Ok(self.with(&target.node_uuid, |s| match &s.boot_device {
                Some((d, p)) => (Some(d.clone()), Some(*p)),
                None => (None, None),
            }))
        })
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        super::BOOT_DEVICES.to_vec()
    }
}
