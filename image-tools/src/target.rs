//! The write target: a block device or a regular file, opened safely for
//! O_DIRECT writes, with zeroing that uses the cheapest correct method.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::blockdev;
use crate::buffer::{ALIGN, AlignedBuf};

/// What kind of target was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A block device (opened with O_EXCL).
    BlockDevice,
    /// A regular file (created if missing).
    File,
}

/// Why a target could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The path does not exist (and is not to be created).
    #[error("target {path}: no such device or file")]
    NotFound {
        /// The target path.
        path: PathBuf,
    },
    /// The target is neither a block device nor a regular file.
    #[error("target {path} is not a block device or a regular file")]
    NotWritableKind {
        /// The target path.
        path: PathBuf,
    },
    /// The device or file is read-only.
    #[error("target {path} is read-only")]
    ReadOnly {
        /// The target path.
        path: PathBuf,
    },
    /// Mounted, used as swap, held by dm/md, or opened exclusively elsewhere.
    #[error("target {path} is in use{}", describe_users(.users))]
    InUse {
        /// The target path.
        path: PathBuf,
        /// Mount points, holders or loop devices found.
        users: Vec<String>,
    },
    /// Any other I/O error, with what was being done.
    #[error("target {path}: {action}: {source}")]
    Io {
        /// The target path.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn describe_users(users: &[String]) -> String {
    if users.is_empty() {
        " (opened exclusively by another process, or held by RAID/LVM/device-mapper)".to_string()
    } else {
        format!(" ({})", users.join(", "))
    }
}

/// How zero runs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZeroMethod {
    /// `BLKZEROOUT` on a block device.
    ZeroOut,
    /// `fallocate(FALLOC_FL_ZERO_RANGE)` on a file.
    ZeroRange,
    /// `fallocate(FALLOC_FL_PUNCH_HOLE | KEEP_SIZE)` on a file (tmpfs).
    PunchHole,
    /// Plain writes of a zero buffer.
    Write,
}

/// An open write target.
#[derive(Debug)]
pub struct Target {
    file: File,
    path: PathBuf,
    kind: TargetKind,
    capacity: Option<u64>,
    block_size: u64,
    direct: bool,
    zero_method: ZeroMethod,
    zeros: Option<AlignedBuf>,
}

/// Size of the zero buffer used when zeros must be written as data.
const ZERO_BUF_LEN: usize = 1 << 20;

impl Target {
    /// Opens `path` for writing an image.
    ///
    /// Block devices are opened `O_EXCL | O_DIRECT` after checking that they are
    /// writable and not mounted. A regular file is created if missing; if it
    /// exists and is not empty, its size is its capacity (it is a disk image),
    /// otherwise it grows to the image size.
    pub fn open(path: &Path) -> Result<Self, TargetError> {
        let io_err = |action: &'static str| {
            let path = path.to_path_buf();
            move |source: io::Error| TargetError::Io {
                path,
                action,
                source,
            }
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("stat")(e)),
        };
        match meta {
            Some(m) if m.file_type().is_block_device() => Self::open_block(path, &m),
            Some(m) if m.file_type().is_file() => Self::open_file(path, Some(m.len())),
            Some(_) => Err(TargetError::NotWritableKind {
                path: path.to_path_buf(),
            }),
            None => {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                if parent.is_some_and(|p| !p.exists()) || path.starts_with("/dev") {
                    return Err(TargetError::NotFound {
                        path: path.to_path_buf(),
                    });
                }
                Self::open_file(path, None)
            }
        }
    }

    fn open_block(path: &Path, meta: &std::fs::Metadata) -> Result<Self, TargetError> {
        let p = path.to_path_buf();
        let (major, minor) = blockdev::dev_numbers(meta);
        let ro = File::open(path).map_err(|source| TargetError::Io {
            path: p.clone(),
            action: "open",
            source,
        })?;
        if blockdev::is_read_only(&ro).unwrap_or(false) {
            return Err(TargetError::ReadOnly { path: p });
        }
        let mounts = blockdev::mount_points(major, minor);
        if !mounts.is_empty() {
            return Err(TargetError::InUse {
                path: p,
                users: mounts
                    .into_iter()
                    .map(|m| format!("mounted at {m}"))
                    .collect(),
            });
        }
        drop(ro);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .custom_flags(libc::O_EXCL | libc::O_DIRECT | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EBUSY) => TargetError::InUse {
                    path: p.clone(),
                    users: blockdev::holders(major, minor)
                        .into_iter()
                        .map(|h| format!("held by {h}"))
                        .collect(),
                },
                Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => {
                    TargetError::ReadOnly { path: p.clone() }
                }
                _ => TargetError::Io {
                    path: p.clone(),
                    action: "open for writing",
                    source,
                },
            })?;
        let capacity = blockdev::size_bytes(&file).map_err(|source| TargetError::Io {
            path: p.clone(),
            action: "read size",
            source,
        })?;
        let block_size = blockdev::logical_block_size(&file).map_or(512, u64::from);
        Ok(Self {
            file,
            path: p,
            kind: TargetKind::BlockDevice,
            capacity: Some(capacity),
            block_size,
            direct: true,
            zero_method: ZeroMethod::ZeroOut,
            zeros: None,
        })
    }

    fn open_file(path: &Path, existing_len: Option<u64>) -> Result<Self, TargetError> {
        let p = path.to_path_buf();
        let loops = blockdev::loop_devices_backed_by(path);
        let users: Vec<String> = loops
            .iter()
            .filter_map(|dev| {
                let m = std::fs::metadata(dev).ok()?;
                let (ma, mi) = blockdev::dev_numbers(&m);
                let mounts = blockdev::mount_points(ma, mi);
                (!mounts.is_empty())
                    .then(|| format!("backs {dev}, mounted at {}", mounts.join(", ")))
            })
            .collect();
        if !users.is_empty() {
            return Err(TargetError::InUse { path: p, users });
        }
        let open = |direct: bool| {
            let mut o = OpenOptions::new();
            o.write(true).read(true).create(true);
            o.custom_flags(libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 });
            o.open(path)
        };
        let (file, direct) = match open(true) {
            Ok(f) => (f, true),
            // Some filesystems (older tmpfs, some FUSE) refuse O_DIRECT.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                open(false).map_err(|source| file_open_error(&p, source))?,
                false,
            ),
            Err(e) => return Err(file_open_error(&p, e)),
        };
        Ok(Self {
            file,
            path: p,
            kind: TargetKind::File,
            capacity: existing_len.filter(|&l| l > 0),
            block_size: 512,
            direct,
            zero_method: ZeroMethod::ZeroRange,
            zeros: None,
        })
    }

    /// The target's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Block device or file.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Bytes that fit on the target; `None` for a file that grows.
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    /// Logical block size (the O_DIRECT alignment).
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// The open file, for ioctls beyond what this type offers.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn err(&self, action: &'static str) -> impl FnOnce(io::Error) -> TargetError + '_ {
        move |source| TargetError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn check_room(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.capacity {
            Some(cap) if offset.saturating_add(len) > cap => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "write of {len} bytes at offset {offset} goes past the end of the target ({cap} bytes)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Writes `data` at `offset`. Aligned writes go straight to the device with
    /// O_DIRECT; an unaligned one (an image tail, tiny qcow2 clusters) is written
    /// through the page cache instead.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), TargetError> {
        self.check_room(offset, data.len() as u64)
            .map_err(self.err("write"))?;
        let bs = self.block_size;
        let aligned = offset % bs == 0
            && (data.len() as u64) % bs == 0
            && (data.as_ptr() as usize) % ALIGN == 0;
        if self.direct && !aligned {
            blockdev::set_direct(&self.file, false).map_err(self.err("clear O_DIRECT"))?;
            let res = self.file.write_all_at(data, offset);
            // Push the buffered bytes out before O_DIRECT writes resume.
            let synced = res.and_then(|()| self.file.sync_data());
            blockdev::set_direct(&self.file, true).map_err(self.err("set O_DIRECT"))?;
            return synced.map_err(self.err("write"));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(self.err("write"))
    }

    /// Makes `[offset, offset + len)` read as zeros, by the cheapest method the
    /// target supports, falling back to writing zeros.
    pub fn zero_range(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        if len == 0 {
            return Ok(());
        }
        self.check_room(offset, len).map_err(self.err("zero"))?;
        let sector_aligned = offset % 512 == 0 && len % 512 == 0;
        loop {
            let res = match self.zero_method {
                ZeroMethod::ZeroOut if sector_aligned => {
                    blockdev::zero_out(&self.file, offset, len)
                }
                ZeroMethod::ZeroRange => {
                    blockdev::fallocate(&self.file, libc::FALLOC_FL_ZERO_RANGE, offset, len)
                }
                ZeroMethod::PunchHole => self.punch_hole(offset, len),
                _ => return self.write_zeros(offset, len),
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) if unsupported(&e) => {
                    self.zero_method = match self.zero_method {
                        ZeroMethod::ZeroRange => ZeroMethod::PunchHole,
                        _ => ZeroMethod::Write,
                    };
                    tracing::debug!(method = ?self.zero_method, error = %e, "zeroing method fallback");
                }
                Err(e) => return Err(self.err("zero")(e)),
            }
        }
    }

    fn punch_hole(&mut self, offset: u64, len: u64) -> io::Result<()> {
        // A punched hole past the end does not grow the file, so grow it first.
        let end = offset + len;
        if self.file.metadata()?.len() < end {
            self.file.set_len(end)?;
        }
        blockdev::fallocate(
            &self.file,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn write_zeros(&mut self, mut offset: u64, len: u64) -> Result<(), TargetError> {
        let zeros = self
            .zeros
            .take()
            .unwrap_or_else(|| AlignedBuf::new(ZERO_BUF_LEN));
        let end = offset + len;
        let mut res = Ok(());
        while offset < end {
            let n =
                usize::try_from((end - offset).min(ZERO_BUF_LEN as u64)).unwrap_or(ZERO_BUF_LEN);
            if let Err(e) = self.write_at(&zeros[..n], offset) {
                res = Err(e);
                break;
            }
            offset += n as u64;
        }
        self.zeros = Some(zeros);
        res
    }

    /// Extends a growing file target to `len` bytes (no-op for devices).
    pub fn ensure_len(&mut self, len: u64) -> Result<(), TargetError> {
        if self.kind == TargetKind::File {
            let cur = self.file.metadata().map_err(self.err("stat"))?.len();
            if cur < len {
                self.file.set_len(len).map_err(self.err("extend"))?;
            }
        }
        Ok(())
    }

    /// Cuts a file target to `len` bytes (no-op for devices, and for files
    /// that are not longer).
    pub fn truncate(&mut self, len: u64) -> Result<(), TargetError> {
        if self.kind == TargetKind::File {
            let cur = self.file.metadata().map_err(self.err("stat"))?.len();
            if cur > len {
                self.file.set_len(len).map_err(self.err("truncate"))?;
            }
        }
        Ok(())
    }

    /// Flushes everything to stable storage.
    pub fn sync(&self) -> Result<(), TargetError> {
        self.file.sync_all().map_err(self.err("fsync"))
    }

    /// Asks the kernel to re-read a block device's partition table, retrying
    /// while it is busy. Devices without partition support (a loop device
    /// without partscan) say EINVAL, which is not an error for the write.
    pub fn reread_partitions(&self) {
        if self.kind != TargetKind::BlockDevice {
            return;
        }
        for attempt in 0..5 {
            match blockdev::reread_partitions(&self.file) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 4 => {
                    std::thread::sleep(std::time::Duration::from_millis(100 << attempt));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // No partition support (a loop device without partscan).
                    tracing::debug!(device = %self.path.display(), "device has no partition table support");
                    return;
                }
                Err(e) => {
                    tracing::warn!(device = %self.path.display(), error = %e, "partition table not re-read");
                    return;
                }
            }
        }
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOTTY) | Some(libc::ENOSYS)
    )
}

fn file_open_error(path: &Path, source: io::Error) -> TargetError {
    match source.raw_os_error() {
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => TargetError::ReadOnly {
            path: path.to_path_buf(),
        },
        _ => TargetError::Io {
            path: path.to_path_buf(),
            action: "open for writing",
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_target_grows_and_zeroes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let mut t = Target::open(&path).unwrap();
        assert_eq!(t.kind(), TargetKind::File);
        assert_eq!(t.capacity(), None);
        let mut buf = AlignedBuf::new(8192);
        buf.fill(0xab);
        t.write_at(&buf, 0).unwrap();
        t.write_at(&buf[..100], 8192).unwrap(); // unaligned tail
        t.zero_range(4096, 4096).unwrap();
        t.ensure_len(8292).unwrap();
        t.sync().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 8292);
        assert!(got[..4096].iter().all(|&b| b == 0xab));
        assert!(got[4096..8192].iter().all(|&b| b == 0));
        assert!(got[8192..].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn existing_file_has_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, vec![1u8; 4096]).unwrap();
        let mut t = Target::open(&path).unwrap();
        assert_eq!(t.capacity(), Some(4096));
        let buf = AlignedBuf::new(8192);
        let err = t.write_at(&buf, 0).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn missing_directory_is_not_found() {
        let err = Target::open(Path::new("/nonexistent-dir/x.img")).unwrap_err();
        assert!(matches!(err, TargetError::NotFound { .. }), "{err}");
    }
}
