//! The device being wiped: opened safely through `ingot_image_tools::target`,
//! classified (NVMe, ATA, partition, plain block device, file), and read with
//! O_DIRECT so that verification never sees the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use ingot_image_tools::blockdev;
use ingot_image_tools::buffer::{ALIGN, AlignedBuf};
use ingot_image_tools::target::{Target, TargetError, TargetKind};
use ingot_proto::wipe::DeviceKind;

/// Why a device could not be opened for wiping.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path does not exist: wipe never creates anything.
    #[error("{path}: no such device or file")]
    NotFound {
        /// The named path.
        path: PathBuf,
    },
    /// A regular file of size zero: nothing to wipe.
    #[error("{path}: empty file")]
    Empty {
        /// The named path.
        path: PathBuf,
    },
    /// Held by device-mapper, md or another exclusive user.
    #[error("{path} is in use (held by {holders})")]
    Held {
        /// The named path.
        path: PathBuf,
        /// Holder devices from sysfs.
        holders: String,
    },
    /// Read-only, mounted, in use, or any other refusal from the target layer.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Random-access reads, as the partition parser and signature prober need
/// them. Implemented by [`Device`] and, for tests, by byte slices.
pub trait ReadAt {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Reads `len` bytes at `offset`; bytes past the end read as zero.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let end = start.saturating_add(len).min(self.len());
        out[..end - start].copy_from_slice(&self[start..end]);
        Ok(out)
    }
}

/// An open device or file, ready to be wiped.
#[derive(Debug)]
pub struct Device {
    target: Target,
    path: PathBuf,
    kind: DeviceKind,
    size: u64,
    block_size: u64,
    /// `/sys/dev/block/M:m` for block devices.
    sysfs: Option<PathBuf>,
    model: Option<String>,
    serial: Option<String>,
}

impl Device {
    /// Opens `path` for wiping. Refuses missing paths (nothing is ever
    /// created), read-only, mounted, swapped-on and held devices, and
    /// opens block devices with O_EXCL so nobody else can open them meanwhile.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let meta = std::fs::metadata(path).map_err(|_| OpenError::NotFound {
            path: path.to_path_buf(),
        })?;
        let mut sysfs = None;
        let mut kind = DeviceKind::File;
        if meta.file_type().is_block_device() {
            let (major, minor) = blockdev::dev_numbers(&meta);
            let holders = blockdev::holders(major, minor);
            if !holders.is_empty() {
                return Err(OpenError::Held {
                    path: path.to_path_buf(),
                    holders: holders.join(", "),
                });
            }
            let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
            kind = if sys.join("partition").exists() {
                DeviceKind::Partition
            } else {
                DeviceKind::Block
            };
            sysfs = Some(sys);
        } else if meta.file_type().is_file() && meta.len() == 0 {
            return Err(OpenError::Empty {
                path: path.to_path_buf(),
            });
        }
        let target = Target::open(path)?;
        let size = match target.kind() {
            TargetKind::BlockDevice => target.capacity().unwrap_or(0),
            TargetKind::File => meta.len(),
        };
        let block_size = target.block_size().max(512);
        let (model, serial) = match &sysfs {
            Some(sys) => sysfs_identity(sys),
            None => (None, None),
        };
        Ok(Self {
            target,
            path: path.to_path_buf(),
            kind,
            size,
            block_size,
            sysfs,
            model,
            serial,
        })
    }

    /// The path as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What kind of device this is (NVMe/ATA are set by the secure-mode probe).
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// Records what the capability probe found.
    pub fn set_kind(&mut self, kind: DeviceKind) {
        self.kind = kind;
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.target.kind() == TargetKind::File
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Logical block size in bytes (at least 512).
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// `/sys/dev/block/M:m`, for block devices.
    pub fn sysfs(&self) -> Option<&Path> {
        self.sysfs.as_deref()
    }

    /// Model string, if known.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Serial number, if known.
    pub fn serial(&self) -> Option<&str> {
        self.serial.as_deref()
    }

    /// Replaces model and serial with what an identify command returned.
    pub fn set_identity(&mut self, model: Option<String>, serial: Option<String>) {
        if model.is_some() {
            self.model = model;
        }
        if serial.is_some() {
            self.serial = serial;
        }
    }

    /// The open file (for ioctls and parallel positional writes).
    pub fn file(&self) -> &File {
        self.target.file()
    }

    /// Writes `data` at `offset` (O_DIRECT when aligned).
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), TargetError> {
        self.target.write_at(data, offset)
    }

    /// Makes `[offset, offset + len)` read as zeros by the cheapest method:
    /// `BLKZEROOUT` on a device, `fallocate` on a file, else zero writes.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        let len = len.min(self.size.saturating_sub(offset));
        self.target.zero_range(offset, len)
    }

    /// fsync.
    pub fn sync(&self) -> Result<(), TargetError> {
        self.target.sync()
    }

    /// Reads `len` bytes at `offset` into `buf`, with O_DIRECT when the file
    /// was opened with it: `buf` must be [`ALIGN`]-aligned and `offset`/`len`
    /// multiples of the block size, except for a short read at a file's end.
    /// Returns the bytes read (less than `len` only at the end).
    pub fn read_aligned(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file().read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

impl ReadAt for Device {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let bs = self.block_size.max(ALIGN as u64);
        let start = offset - offset % bs;
        let end = offset.saturating_add(len as u64).min(self.size);
        if end <= offset {
            return Ok(vec![0u8; len]);
        }
        let aligned_end = end.div_ceil(bs) * bs;
        let span = usize::try_from(aligned_end - start).map_err(io::Error::other)?;
        let mut buf = AlignedBuf::new(span);
        let n = self.read_aligned(&mut buf, start)?;
        let mut out = vec![0u8; len];
        let from = usize::try_from(offset - start).map_err(io::Error::other)?;
        if n > from {
            let avail = (n - from).min(len);
            out[..avail].copy_from_slice(&buf[from..from + avail]);
        }
        Ok(out)
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Model and serial from sysfs: `device/model`, `device/serial`, `serial`
/// (virtio), `wwid`; for a loop device, its backing file as the model.
fn sysfs_identity(sys: &Path) -> (Option<String>, Option<String>) {
    let base = if sys.join("partition").exists() {
        sys.join("..")
    } else {
        sys.to_path_buf()
    };
    let model = read_trimmed(&base.join("device/model"))
        .or_else(|| read_trimmed(&base.join("loop/backing_file")).map(|b| format!("loop: {b}")));
    let serial = read_trimmed(&base.join("device/serial"))
        .or_else(|| read_trimmed(&base.join("serial")))
        .or_else(|| read_trimmed(&base.join("wwid")));
    (model, serial)
}

/// Reads a sysfs queue attribute of a block device as a number.
pub fn queue_attr(sys: &Path, name: &str) -> Option<u64> {
    read_trimmed(&sys.join("queue").join(name))?.parse().ok()
}
