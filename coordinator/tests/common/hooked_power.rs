//! The `fake` power driver with hooks: tests wrap it to record, slow down
//! or look around when the conductor switches a node's power or sets its
//! boot device (a test of what the conductor asks for and when, which no
//! BMC can show deterministically).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ingot_coordinator::power::fake::FakePower;
use ingot_coordinator::power::{
    BootDeviceState, BoxFuture, PowerAction, PowerDriver, PowerError, PowerState, PowerTarget,
};
use serde_json::{Map, Value};

/// What a test does around the fake driver's actions.
pub trait Hooks: Send + Sync + 'static {
    /// Runs before each power action (the action waits for it).
    fn power<'a>(&'a self, _target: &'a PowerTarget, _action: PowerAction) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Runs before each boot-device change.
    fn boot_device(&self, _device: &str) {}
}

/// The fake driver with `hooks` around its actions.
#[derive(Default)]
pub struct HookedPower<H> {
    inner: FakePower,
    /// The test's hooks (and whatever they recorded).
    pub hooks: H,
}

impl<H> HookedPower<H> {
    /// The fake driver with `hooks`.
    pub fn new(hooks: H) -> Self {
        Self {
            inner: FakePower::default(),
            hooks,
        }
    }
}

/// The hooks' own methods (what they recorded) on the driver itself.
impl<H> std::ops::Deref for HookedPower<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hooks
    }
}

impl<H: Hooks> PowerDriver for HookedPower<H> {
    fn validate(&self, driver_info: &Map<String, Value>) -> Result<(), PowerError> {
        self.inner.validate(driver_info)
    }

    fn get_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        self.inner.get_power_state(target)
    }

    fn set_power_state<'a>(
        &'a self,
        target: &'a PowerTarget,
        action: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async move {
            self.hooks.power(target, action).await;
            self.inner.set_power_state(target, action).await
        })
    }

    fn set_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
        device: &'a str,
        persistent: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        self.hooks.boot_device(device);
        self.inner.set_boot_device(target, device, persistent)
    }

    fn get_boot_device<'a>(
        &'a self,
        target: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<BootDeviceState, PowerError>> {
        self.inner.get_boot_device(target)
    }
}
