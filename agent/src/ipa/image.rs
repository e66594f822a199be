//! The `image` extension: `install_bootloader`.
//!
//! Whole-disk images carry their own boot loader. In BIOS mode there is
//! nothing to do (IPA does the same unless asked to install GRUB). In UEFI
//! mode IPA adds an NVRAM boot entry with efibootmgr; Ingot does not write
//! EFI variables yet and relies on the firmware's removable-media fallback
//! loader (`\EFI\BOOT\BOOTX64.EFI`), which whole-disk cloud images ship. The
//! result says so.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::CmdResult;
use super::executor::Record;
use crate::state::AgentState;

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
        "no UEFI NVRAM entry written; the image's fallback loader \\EFI\\BOOT\\BOOTX64.EFI boots"
    } else {
        "BIOS: the whole-disk image's own boot loader is used"
    };
    Ok(Some(
        json!({"result": format!("install_bootloader: {note}")}),
    ))
}
