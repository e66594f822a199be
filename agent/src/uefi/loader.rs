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
    let fs = open_fs(dev, esp)?;
    let found = {
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
            None
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
            Some((path, data, efi.open_dir("BOOT").is_ok()))
        }
    };
    let Some((path, data, has_boot)) = found else {
        fs.unmount().map_err(fat_err("unmount"))?;
        tracing::info!(loader = %name, "the fallback loader is present");
        return Ok(LoaderOutcome { copied_from: None });
    };
    let fs = if has_boot {
        fs
    } else {
        fs.root_dir()
            .create_dir("EFI/BOOT")
            .map_err(fat_err("create EFI/BOOT"))?;
        fs.unmount().map_err(fat_err("unmount"))?;
        let fixed = fix_dot_entries(dev, esp).map_err(fat_err("repair EFI/BOOT"))?;
        tracing::debug!(fixed, "dot entries of the new directory repaired");
        open_fs(dev, esp)?
    };
    {
        let root = fs.root_dir();
        let mut f = root
            .create_file(&format!("EFI/BOOT/{name}"))
            .map_err(fat_err("create the fallback loader"))?;
        f.truncate()
            .map_err(fat_err("truncate the fallback loader"))?;
        f.write_all(&data)
            .map_err(fat_err("write the fallback loader"))?;
        f.flush().map_err(fat_err("write the fallback loader"))?;
    }
    fs.unmount().map_err(fat_err("unmount"))?;
    tracing::info!(from = %path, to = %name, bytes = data.len(), "fallback loader copied");
    Ok(LoaderOutcome {
        copied_from: Some(format!("EFI/{path}")),
    })
}

fn open_fs<'a>(dev: &'a File, esp: &Esp) -> Result<FileSystem<PartitionWindow<'a>>, UefiError> {
    let window = PartitionWindow::new(dev, esp.offset(), esp.len_bytes()).ok_or_else(|| {
        UefiError::NoEsp(format!("partition {} beyond addressable bytes", esp.number))
    })?;
    FileSystem::new(window, FsOptions::new()).map_err(fat_err("open the FAT file system"))
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

/// The data area of a FAT file system from its boot sector: (bytes per
/// cluster, byte offset of cluster 2, clusters inside the partition).
/// `None` if the fields are out of range.
fn fat_layout(bs: &[u8; 512], part_len: u64) -> Option<(u64, u64, u64)> {
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
    let u32_at = |o: usize| u64::from(u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]));
    let bps = u16_at(11);
    let spc = u64::from(bs[13]);
    let reserved = u16_at(14);
    let fats = u64::from(bs[16]);
    let root_entries = u16_at(17);
    let total = match u16_at(19) {
        0 => u32_at(32),
        n => n,
    };
    let fat_size = match u16_at(22) {
        0 => u32_at(36),
        n => n,
    };
    if !bps.is_power_of_two() || !(512..=4096).contains(&bps) || !spc.is_power_of_two() {
        return None;
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let data_start = reserved
        .checked_add(fats.checked_mul(fat_size)?)?
        .checked_add(root_sectors)?;
    let clusters = total.checked_sub(data_start)? / spc;
    let cluster_bytes = spc * bps;
    let data_offset = data_start.checked_mul(bps)?;
    let fit = part_len.checked_sub(data_offset)? / cluster_bytes;
    Some((cluster_bytes, data_offset, clusters.min(fit)))
}

/// fatfs 0.3 writes long-name entries in front of the `.` and `..` entries
/// of the directories it creates, which `fsck.vfat` reports as corruption.
/// Rewrites every directory cluster that starts that way (long-name entry,
/// `.` pointing at that very cluster, long-name entry, `..`) to start with
/// plain `.` and `..`. Returns how many were repaired.
fn fix_dot_entries(dev: &File, esp: &Esp) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let base = esp.offset();
    let mut bs = [0u8; 512];
    dev.read_exact_at(&mut bs, base)?;
    let Some((cluster_bytes, data_offset, clusters)) = fat_layout(&bs, esp.len_bytes()) else {
        return Ok(0);
    };
    if cluster_bytes < 160 {
        return Ok(0);
    }
    let mut fixed = 0;
    let mut head = [0u8; 160];
    for i in 0..clusters {
        // Inside the partition (fat_layout), so no overflow.
        let at = base + data_offset + i * cluster_bytes;
        dev.read_exact_at(&mut head, at)?;
        let slot = |k: usize| &head[k * 32..(k + 1) * 32];
        let lfn = |k: usize| slot(k)[11] == 0x0f;
        let dir_named =
            |k: usize, name: &[u8; 11]| &slot(k)[..11] == name && slot(k)[11] & 0x10 != 0;
        let s1 = slot(1);
        let first = (u64::from(u16::from_le_bytes([s1[20], s1[21]])) << 16)
            | u64::from(u16::from_le_bytes([s1[26], s1[27]]));
        if lfn(0)
            && dir_named(1, b".          ")
            && first == i + 2
            && lfn(2)
            && dir_named(3, b"..         ")
        {
            let mut fixed_head = [0u8; 128];
            fixed_head[..32].copy_from_slice(slot(1));
            fixed_head[32..64].copy_from_slice(slot(3));
            // Slots 2 and 3 become free: end of directory if nothing follows.
            let free = if head[128] == 0 { 0x00 } else { 0xe5 };
            fixed_head[64] = free;
            fixed_head[96] = free;
            dev.write_all_at(&fixed_head, at)?;
            fixed += 1;
        }
    }
    Ok(fixed)
}
