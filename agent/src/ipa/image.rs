//! The `image` extension: `install_bootloader`.
//!
//! Whole-disk images carry their own boot loader. In BIOS mode there is
//! nothing to do (IPA does the same unless asked to install GRUB) and
//! nothing is written to NVRAM. In UEFI mode (`target_boot_mode`, else the
//! mode the agent booted in) the agent finds the EFI system partition of the
//! root disk, makes sure the removable-media loader `\EFI\BOOT\BOOTX64.EFI`
//! (`BOOTAA64.EFI`) exists, copying the image's vendor loader there if not,
//! and, when the firmware has NVRAM (the agent booted UEFI), writes an
//! `ingot` boot entry for it first in `BootOrder` ([`crate::uefi`]).
//!
//! Parameters as IPA receives them: `root_uuid` and `prep_boot_part_uuid`
//! (unused for whole-disk images), `efi_system_part_uuid` (the ESP when the
//! partition table does not say which), `target_boot_mode`,
//! `ignore_bootloader_failure` (a failure is logged and reported, not
//! raised).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::executor::Record;
use super::write::{node_dict, root_disk};
use super::{CmdError, CmdResult};
use crate::state::AgentState;
use crate::uefi::{self, UefiError, efivars::EfiVars};

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
    if target != "uefi" {
        return Ok(Some(json!({
            "result": "install_bootloader: BIOS: the whole-disk image's own boot loader is used"
        })));
    }
    let ignore_failure = params
        .get("ignore_bootloader_failure")
        .and_then(|v| {
            v.as_bool()
                .or_else(|| v.as_str().map(|s| s == "true" || s == "True"))
        })
        .unwrap_or(false);
    let esp_uuid = params
        .get("efi_system_part_uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let node = node_dict(&state, &params);
    let (disk_name, path) = root_disk(&state, node.as_ref()).await?;
    let root = state.config.root.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // NVRAM only where the firmware has it: the agent booted UEFI.
        let vars = EfiVars::open(&root);
        if vars.is_none() {
            tracing::warn!(
                "the agent did not boot UEFI: no boot entry written, the fallback loader boots"
            );
        }
        uefi::install(&path, esp_uuid.as_deref(), vars.as_ref())
    })
    .await
    .map_err(|e| CmdError::execution(e.to_string()))?;
    match outcome {
        Ok(report) => {
            let entry = report
                .boot_entry
                .clone()
                .unwrap_or_else(|| "no boot entry (no NVRAM)".into());
            Ok(Some(json!({
                "result": format!(
                    "install_bootloader: UEFI: {} on partition {} of {disk_name}; {entry}",
                    report.loader, report.esp_partition
                ),
                "uefi": report,
            })))
        }
        Err(e) if ignore_failure => {
            tracing::warn!(error = %e, "installing the UEFI boot loader failed (ignored)");
            Ok(Some(json!({
                "result": format!("install_bootloader: failure ignored: {e}")
            })))
        }
        Err(e @ UefiError::NoEsp(_)) => Err(CmdError::device_not_found(e.to_string())),
        Err(e) => Err(CmdError::execution(format!(
            "installing the UEFI boot loader on {disk_name}: {e}"
        ))),
    }
}
