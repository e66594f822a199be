//! The partition tables the agent reads and changes: the DOS table and the
//! GPT, and what a whole-disk write does to them afterwards ([`fit`]).

pub mod fit;
pub mod gpt;
pub mod mbr;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use ingot_image_tools::blockdev;

/// A disk's size in bytes and its logical sector size: from the kernel for a
/// block device, the length and 512 for a file (a disk image).
pub fn disk_geometry(dev: &File) -> io::Result<(u64, u64)> {
    let meta = dev.metadata()?;
    if meta.file_type().is_block_device() {
        let size = blockdev::size_bytes(dev)?;
        let sector = u64::from(blockdev::logical_block_size(dev)?);
        Ok((size, sector))
    } else {
        Ok((meta.len(), 512))
    }
}

/// Opens the whole disk (or disk image) at `path` for reading and writing
/// and reads its geometry ([`disk_geometry`]). The error names the step
/// that failed (`open`, `read the disk size`).
pub fn open_disk(path: &Path) -> Result<(File, u64, u64), (&'static str, io::Error)> {
    let dev = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ("open", e))?;
    let (size, sector) = disk_geometry(&dev).map_err(|e| ("read the disk size", e))?;
    Ok((dev, size, sector))
}

/// Whether `dev` is a block device (whose partition table the kernel may
/// re-read).
pub fn is_block_device(dev: &File) -> bool {
    dev.metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// Whether `path` is a partition of a disk rather than a whole disk (its
/// sysfs node has a `partition` attribute). A regular file is a disk image.
pub fn is_partition(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.file_type().is_block_device() {
        return false;
    }
    let (major, minor) = blockdev::dev_numbers(&meta);
    Path::new(&format!("/sys/dev/block/{major}:{minor}/partition")).exists()
}
