//! UEFI boot for deployed whole-disk images: the EFI system partition found
//! from the partition table ([`esp`]), the removable-media fallback loader
//! made sure of on its FAT file system ([`loader`], through a bounded window
//! on the disk, [`window`]), and the firmware's boot entries in NVRAM
//! ([`loadopt`] encodes `Boot####` variables, [`efivars`] reads and writes
//! them through efivarfs, [`nvram`] adds ours and cleans stale ones).
//!
//! Everything works on the whole-disk device by byte offset: the agent never
//! needs the kernel's partition nodes (which a freshly written disk may not
//! have yet) and never mounts the ESP.

pub mod efivars;
pub mod esp;
pub mod loader;
pub mod loadopt;
pub mod nvram;
pub mod window;

use std::path::Path;

use serde::Serialize;

/// What can go wrong installing the UEFI boot loader.
#[derive(Debug, thiserror::Error)]
pub enum UefiError {
    /// Reading or writing the disk or efivarfs failed.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The disk has no EFI system partition.
    #[error("no EFI system partition on {0} (is the image UEFI-bootable?)")]
    NoEsp(String),
    /// The ESP holds no loader the fallback path could be made from.
    #[error("no boot loader on the EFI system partition: {0}")]
    NoLoader(String),
    /// The ESP holds several loaders and none is preferred.
    #[error("several boot loaders on the EFI system partition and none preferred: {0}")]
    AmbiguousLoader(String),
    /// The loader is larger than [`loader::MAX_LOADER_BYTES`].
    #[error("boot loader {path} is {size} bytes, more than the {max} accepted")]
    LoaderTooLarge {
        /// Its path on the ESP.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
}

impl UefiError {
    /// An I/O error of step `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UefiError {
        let what = what.into();
        move |source| UefiError::Io { what, source }
    }
}

/// The removable-media loader name of this agent's architecture (UEFI 2.10
/// §3.5.1.1): `BOOTX64.EFI` on x86_64, `BOOTAA64.EFI` on aarch64.
pub fn fallback_loader_name() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "BOOTAA64.EFI"
    } else {
        "BOOTX64.EFI"
    }
}

/// The architecture suffix of boot loader file names (`x64`, `aa64`), as in
/// `shimx64.efi` and `grubaa64.efi`.
pub fn arch_suffix() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aa64"
    } else {
        "x64"
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The ESP's partition number.
    pub esp_partition: u32,
    /// The ESP's first byte on the disk.
    pub esp_offset: u64,
    /// The fallback loader path on the ESP (`\EFI\BOOT\BOOTX64.EFI`).
    pub loader: String,
    /// Where the fallback loader was copied from, if it was missing.
    pub copied_from: Option<String>,
    /// The boot entry written (`Boot0003`), when the firmware has NVRAM.
    pub boot_entry: Option<String>,
    /// Whether that entry was new (false: an identical one was reused).
    pub boot_entry_created: bool,
    /// Stale `ingot` entries for other disks that were removed.
    pub removed_entries: Vec<String>,
    /// BootOrder afterwards, when the firmware has NVRAM.
    pub boot_order: Option<Vec<String>>,
}

/// Installs the UEFI boot loader of the whole-disk image on `disk`: finds
/// the ESP (by type, else by `esp_uuid`), makes sure the fallback loader
/// exists, and when `efivars` is given (the firmware has NVRAM) writes a
/// boot entry for it and puts it first in `BootOrder`.
pub fn install(
    disk: &Path,
    esp_uuid: Option<&str>,
    efivars: Option<&efivars::EfiVars>,
) -> Result<InstallReport, UefiError> {
    let shown = disk.display().to_string();
    let (dev, size, sector) =
        crate::ptable::open_disk(disk).map_err(|(what, e)| UefiError::Io {
            what: format!("{what} {shown}"),
            source: e,
        })?;
    let esp = esp::find_esp(&dev, sector, size, esp_uuid)
        .map_err(UefiError::io(format!(
            "reading the partition table of {shown}"
        )))?
        .ok_or_else(|| UefiError::NoEsp(shown.clone()))?;
    let name = fallback_loader_name();
    tracing::info!(disk = %shown, partition = esp.number, offset = esp.offset(), "EFI system partition found");
    let outcome = loader::ensure_fallback_loader(&dev, &esp, name)?;
    dev.sync_all()
        .map_err(UefiError::io(format!("flushing {shown}")))?;
    let loader_path = format!("\\EFI\\BOOT\\{name}");
    let mut report = InstallReport {
        esp_partition: esp.number,
        esp_offset: esp.offset(),
        loader: loader_path.clone(),
        copied_from: outcome.copied_from,
        boot_entry: None,
        boot_entry_created: false,
        removed_entries: Vec::new(),
        boot_order: None,
    };
    if let Some(vars) = efivars {
        let path = loadopt::disk_file_path(&esp.hard_drive(), &loader_path);
        let entry = nvram::install_boot_entry(vars, &path, nvram::DESCRIPTION)
            .map_err(UefiError::io("writing the UEFI boot entry"))?;
        report.boot_entry = Some(nvram::boot_var_name(entry.number));
        report.boot_entry_created = entry.created;
        report.removed_entries = entry
            .removed
            .iter()
            .map(|n| nvram::boot_var_name(*n))
            .collect();
        report.boot_order = Some(
            entry
                .boot_order
                .iter()
                .map(|n| format!("{n:04X}"))
                .collect(),
        );
    }
    Ok(report)
}
