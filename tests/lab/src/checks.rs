//! What the host checks on the node's disk files after the secure wipe: no
//! partition table, no file system signature, and no data left.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

/// The verdict on one disk file.
#[derive(Debug, Clone, Serialize)]
pub struct DiskCheck {
    /// The file.
    pub path: String,
    /// Its apparent size.
    pub size: u64,
    /// Bytes the file system really holds (the rest are holes: read as zero).
    pub allocated: u64,
    /// Bytes that are not zero.
    pub nonzero_bytes: u64,
    /// Offset of the first non-zero byte, if any.
    pub first_nonzero: Option<u64>,
    /// An MBR signature (0x55AA at 510).
    pub mbr_signature: bool,
    /// A GPT header (`EFI PART`) at LBA 1 or in the last sector.
    pub gpt_header: bool,
    /// What `blkid -p` still finds (empty: nothing).
    pub blkid: String,
}

impl DiskCheck {
    /// True if nothing is left to find.
    pub fn clean(&self) -> bool {
        self.nonzero_bytes == 0 && !self.mbr_signature && !self.gpt_header && self.blkid.is_empty()
    }
}

fn seek(fd: i32, off: u64, whence: i32) -> Option<u64> {
    let off = i64::try_from(off).ok()?;
    // SAFETY: lseek(2) on a descriptor we own; no memory is passed.
    let r = unsafe { libc::lseek(fd, off, whence) };
    u64::try_from(r).ok()
}

/// Reads every data extent of `path` (SEEK_DATA/SEEK_HOLE, so a sparse
/// multi-GiB file costs only what is allocated) and probes it with `blkid -p`.
pub fn check_disk(path: &Path) -> Result<DiskCheck> {
    let f = File::open(path).with_context(|| format!("{}", path.display()))?;
    let size = f.metadata()?.len();
    let fd = f.as_raw_fd();
    let (mut allocated, mut nonzero, mut first) = (0u64, 0u64, None);
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let Some(data) = seek(fd, pos, libc::SEEK_DATA) else {
            break;
        };
        let hole = seek(fd, data, libc::SEEK_HOLE).unwrap_or(size).min(size);
        let mut off = data;
        while off < hole {
            let n = usize::try_from((hole - off).min(buf.len() as u64))?;
            let chunk = buf.get_mut(..n).context("buffer")?;
            f.read_exact_at(chunk, off)?;
            // Slice equality is a memcmp, fast even in a debug build.
            if chunk != zeros.get(..n).context("buffer")? {
                for (i, b) in chunk.iter().enumerate() {
                    if *b != 0 {
                        nonzero += 1;
                        first.get_or_insert(off + i as u64);
                    }
                }
            }
            allocated += n as u64;
            off += n as u64;
        }
        pos = hole;
    }
    let mut sector = [0u8; 512];
    f.read_exact_at(&mut sector, 0)?;
    let mbr = sector[510] == 0x55 && sector[511] == 0xaa;
    let mut gpt = false;
    for lba_off in [512, size.saturating_sub(512)] {
        if f.read_exact_at(&mut sector, lba_off).is_ok() && sector.starts_with(b"EFI PART") {
            gpt = true;
        }
    }
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(path)
        .output()
        .context("running blkid (util-linux)")?;
    Ok(DiskCheck {
        path: path.display().to_string(),
        size,
        allocated,
        nonzero_bytes: nonzero,
        first_nonzero: first,
        mbr_signature: mbr,
        gpt_header: gpt,
        blkid: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::FileExt as _;

    use super::check_disk;

    #[test]
    fn finds_what_is_left_and_passes_blank_disks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.raw");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        let c = check_disk(&p).unwrap();
        assert!(c.clean(), "{c:?}");
        assert_eq!(c.allocated, 0);

        // Zeros written are allocated but still clean.
        f.write_all_at(&vec![0u8; 1 << 20], 8 << 20).unwrap();
        let c = check_disk(&p).unwrap();
        assert!(c.clean() && c.allocated >= 1 << 20, "{c:?}");

        // An MBR signature and one stray byte deep in the disk are found.
        f.write_all_at(&[0x55, 0xaa], 510).unwrap();
        f.write_all_at(&[7], 40 << 20).unwrap();
        let c = check_disk(&p).unwrap();
        assert!(!c.clean());
        assert!(c.mbr_signature);
        assert_eq!(c.nonzero_bytes, 3);
        assert_eq!(c.first_nonzero, Some(510));

        // A backup GPT header in the last sector is found.
        let f2 = std::fs::File::create(dir.path().join("gpt.raw")).unwrap();
        f2.set_len(1 << 20).unwrap();
        f2.write_all_at(b"EFI PART", (1 << 20) - 512).unwrap();
        assert!(check_disk(&dir.path().join("gpt.raw")).unwrap().gpt_header);
    }
}
