//! The `image` extension: `install_bootloader`.
//!
//! Whole-disk images carry their own boot loader. In BIOS mode there is
//! nothing to do (IPA does the same unless asked to install GRUB). In UEFI
//! mode IPA adds an NVRAM boot entry with efibootmgr; Ingot does not write
//! EFI variables yet and relies on the firmware's removable-media fallback
//! loader (`\EFI\BOOT\BOOTX64.EFI`, `BOOTAA64.EFI` on aarch64), which
//! whole-disk cloud images ship. The result says so.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::CmdResult;
use super::executor::Record;
use crate::state::AgentState;

/// The UEFI removable-media loader of the agent's architecture (UEFI 2.10, 3.5.1.1).
const FALLBACK_LOADER: &str = if cfg!(target_arch = "aarch64") {
    "\\EFI\\BOOT\\BOOTAA64.EFI"
} else {
    "\\EFI\\BOOT\\BOOTX64.EFI"
};

/// `image.install_bootloader`.
pub async fn install_bootloader(
    state: Arc<AgentState>,
    _r: Arc<Record>,
    params: Map<String, Value>,
) -> CmdResult {
    let current = crate::inventory::boot_mode(&state.config.root);
    let target = params
        .get("target_boot_mode")
        .and_then(Value::as_str)
        .unwrap_or(current)
        .to_string();
    if target != current {
        tracing::warn!(target = %target, current, "target boot mode differs from the mode the agent booted in");
    }
    let note = if target == "uefi" {
        tracing::warn!(
            "no UEFI boot entry written: the firmware's fallback loader of the image is used"
        );
        format!("no UEFI NVRAM entry written; the image's fallback loader {FALLBACK_LOADER} boots")
    } else {
        "BIOS: the whole-disk image's own boot loader is used".to_string()
    };
    Ok(Some(
        json!({"result": format!("install_bootloader: {note}")}),
    ))
}
