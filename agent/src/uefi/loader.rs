//! The removable-media fallback loader on the ESP's FAT file system:
//! `\EFI\BOOT\BOOTX64.EFI` (`BOOTAA64.EFI`) is what firmware boots from a
//! disk without a boot entry. If the image lacks it but ships one vendor
//! loader (`\EFI\debian\shimx64.efi`, `grubx64.efi`, ...), that loader is
//! copied there.
//!
//! The image is untrusted: directories are read two levels deep at most
//! (`EFI/<vendor>/<file>`), at most [`MAX_DIR_ENTRIES`] entries each, and a
//! loader larger than [`MAX_LOADER_BYTES`] is refused. FAT cluster chains
//! are followed by `fatfs` within the partition window only.

use std::fs::File;
use std::io::{Read, Write};

use fatfs::{FileSystem, FsOptions};

use super::esp::Esp;
use super::window::PartitionWindow;
use super::{UefiError, arch_suffix};

/// Largest loader copied.
pub const MAX_LOADER_BYTES: u64 = 64 << 20;
/// Most directory entries read from one directory.
pub const MAX_DIR_ENTRIES: usize = 1024;

/// What [`ensure_fallback_loader`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderOutcome {
    /// `None`: the fallback loader was there. Otherwise the ESP path it was
    /// copied from (`EFI/debian/shimx64.efi`).
    pub copied_from: Option<String>,
}

/// Vendor loaders in order of preference: shim first (it chains to GRUB
/// under Secure Boot), then GRUB, then systemd-boot.
fn preferred() -> [String; 3] {
    let a = arch_suffix();
    [
        format!("shim{a}.efi"),
        format!("grub{a}.efi"),
        format!("systemd-boot{a}.efi"),
    ]
}

fn fat_err(what: &str) -> impl FnOnce(std::io::Error) -> UefiError + '_ {
    move |e| UefiError::Io {
        what: format!("EFI system partition: {what}"),
        source: e,
    }
}

/// Makes sure `EFI/BOOT/<name>` exists and is not empty on the ESP `esp` of
/// the disk `dev`, copying the one (or the preferred) vendor loader there
/// if it does not.
pub fn ensure_fallback_loader(
    dev: &File,
    esp: &Esp,
    name: &str,
) -> Result<LoaderOutcome, UefiError> {
    let window = PartitionWindow::new(dev, esp.offset(), esp.len_bytes()).ok_or_else(|| {
        UefiError::NoEsp(format!("partition {} beyond addressable bytes", esp.number))
    })?;
    let fs =
        FileSystem::new(window, FsOptions::new()).map_err(fat_err("open the FAT file system"))?;
    let outcome = {
        let root = fs.root_dir();
        let efi = root
            .open_dir("EFI")
            .map_err(|_| UefiError::NoLoader("no EFI directory".into()))?;
        let present = efi
            .open_file(&format!("BOOT/{name}"))
            .ok()
            .and_then(|mut f| {
                let mut b = [0u8; 1];
                f.read(&mut b).ok()
            })
            .is_some_and(|n| n > 0);
        if present {
            tracing::info!(loader = %name, "the fallback loader is present");
            LoaderOutcome { copied_from: None }
        } else {
            let (path, size) = choose_loader(&efi)?;
            if size > MAX_LOADER_BYTES {
                return Err(UefiError::LoaderTooLarge {
                    path,
                    size,
                    max: MAX_LOADER_BYTES,
                });
            }
            let mut data = Vec::new();
            efi.open_file(&path)
                .map_err(fat_err("open the loader"))?
                .take(MAX_LOADER_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(fat_err("read the loader"))?;
            if data.len() as u64 != size {
                return Err(UefiError::NoLoader(format!(
                    "EFI/{path}: read {} bytes of {size}",
                    data.len()
                )));
            }
            let boot = efi.create_dir("BOOT").map_err(fat_err("create EFI/BOOT"))?;
            let mut f = boot
                .create_file(name)
                .map_err(fat_err("create the fallback loader"))?;
            f.truncate()
                .map_err(fat_err("truncate the fallback loader"))?;
            f.write_all(&data)
                .map_err(fat_err("write the fallback loader"))?;
            f.flush().map_err(fat_err("write the fallback loader"))?;
            tracing::info!(from = %path, to = %name, bytes = size, "fallback loader copied");
            LoaderOutcome {
                copied_from: Some(format!("EFI/{path}")),
            }
        }
    };
    fs.unmount().map_err(fat_err("unmount"))?;
    Ok(outcome)
}

/// The vendor loader to copy, as `<vendor>/<file>` under `EFI`, and its
/// size: the preferred one if present, else the only `.efi` file.
fn choose_loader<T: fatfs::ReadWriteSeek>(
    efi: &fatfs::Dir<'_, T>,
) -> Result<(String, u64), UefiError> {
    let mut found: Vec<(String, String, u64)> = Vec::new();
    for vendor in efi.iter().take(MAX_DIR_ENTRIES) {
        let vendor = vendor.map_err(fat_err("read EFI"))?;
        let vname = vendor.file_name();
        if !vendor.is_dir() || vname == "." || vname == ".." || vname.eq_ignore_ascii_case("BOOT") {
            continue;
        }
        for f in vendor.to_dir().iter().take(MAX_DIR_ENTRIES) {
            let f = f.map_err(fat_err("read a vendor directory"))?;
            let fname = f.file_name();
            if f.is_file() && fname.to_ascii_lowercase().ends_with(".efi") {
                found.push((vname.clone(), fname, f.len()));
            }
        }
    }
    for want in preferred() {
        if let Some((v, f, len)) = found.iter().find(|(_, f, _)| f.eq_ignore_ascii_case(&want)) {
            return Ok((format!("{v}/{f}"), *len));
        }
    }
    match found.as_slice() {
        [] => Err(UefiError::NoLoader(
            "no EFI/BOOT loader and no EFI/<vendor>/*.efi".into(),
        )),
        [(v, f, len)] => Ok((format!("{v}/{f}"), *len)),
        many => Err(UefiError::AmbiguousLoader(
            many.iter()
                .map(|(v, f, _)| format!("EFI/{v}/{f}"))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}
