//! `standby.power_off`, `standby.reboot` and `standby.run_image`: sync, then
//! reboot(2) — only when the policy allows it (PID 1, or explicitly); in
//! dry-run mode the action is logged and nothing happens.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::executor::Record;
use super::standby::full_sync;
use super::{CmdError, CmdResult};
use crate::state::{AgentState, PowerPolicy};

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power the machine off.
    PowerOff,
    /// Reboot the machine.
    Reboot,
}

impl PowerAction {
    fn name(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "power off",
            PowerAction::Reboot => "reboot",
        }
    }
}

/// `standby.power_off`.
pub async fn power_off(
    state: Arc<AgentState>,
    _r: Arc<Record>,
    _p: Map<String, Value>,
) -> CmdResult {
    act(state, PowerAction::PowerOff).await
}

/// `standby.reboot` / `standby.run_image`.
pub async fn reboot(state: Arc<AgentState>, _r: Arc<Record>, _p: Map<String, Value>) -> CmdResult {
    act(state, PowerAction::Reboot).await
}

async fn act(state: Arc<AgentState>, action: PowerAction) -> CmdResult {
    let st = state.clone();
    tokio::task::spawn_blocking(move || full_sync(&st))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?;
    match state.config.power {
        PowerPolicy::DryRun => {
            tracing::warn!(
                action = action.name(),
                "dry run: not touching the machine's power"
            );
        }
        PowerPolicy::Real => {
            tracing::warn!(action = action.name(), "in one second");
            // Let the command be recorded as finished (and a heartbeat go
            // out) before the machine goes away.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                execute(action);
            });
        }
    }
    Ok(None)
}

/// Syncs and calls reboot(2). Returns only if the call fails.
pub fn execute(action: PowerAction) {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let cmd = match action {
        PowerAction::PowerOff => libc::RB_POWER_OFF,
        PowerAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command; on success it does not return.
    let r = unsafe { libc::reboot(cmd) };
    if r != 0 {
        tracing::error!(action = action.name(), error = %std::io::Error::last_os_error(), "reboot(2) failed");
        // sysrq as IPA's fallback: o = power off, b = reboot.
        let key = if action == PowerAction::PowerOff {
            "o"
        } else {
            "b"
        };
        std::fs::write("/proc/sysrq-trigger", key).ok();
    }
}
