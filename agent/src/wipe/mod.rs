//! Disk wiping: metadata mode (partition tables and signatures) and secure
//! mode (the strongest erase each device supports, verified), with a report
//! per device. See docs/wipe.md.
//!
//! Entry point: [`wipe_devices`]. Every named device is wiped in its own
//! thread; only named devices are ever opened, and each is refused if it is
//! mounted, in use, or read-only.

pub mod ata;
pub mod device;
pub mod metadata;
pub mod nvme;
pub mod overwrite;
pub mod partitions;
pub mod report;
pub mod secure;
pub mod signatures;
pub mod verify;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ingot_image_tools::target::TargetError;
use ingot_proto::wipe::{DeviceReport, VerifyMode, WipeMethod, WipeMode, WipeReport, WipeStatus};

use self::device::{Device, OpenError};

/// How to wipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WipeOptions {
    /// Metadata or secure.
    pub mode: WipeMode,
    /// Verification.
    pub verify: VerifyMode,
    /// Secure mode may fall back to overwriting.
    pub allow_overwrite: bool,
    /// Random passes before the zero pass of an overwrite.
    pub passes: u32,
    /// Secure mode: use only this method (the others are reported as skipped).
    pub only: Option<WipeMethod>,
    /// Counters of overwrite passes (bytes to write and written, all
    /// devices together), for the agent's command status.
    pub progress: Option<WipeProgress>,
}

/// Shared overwrite counters: `source_total` grows by each device's bytes
/// to write when its overwrite starts, `received` and `written` by each
/// chunk written. Options compare equal whatever counters they carry.
#[derive(Debug, Clone, Default)]
pub struct WipeProgress(pub std::sync::Arc<ingot_image_tools::progress::Progress>);

impl PartialEq for WipeProgress {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WipeProgress {}

impl Default for WipeOptions {
    fn default() -> Self {
        Self {
            mode: WipeMode::Secure,
            verify: VerifyMode::Sample,
            allow_overwrite: false,
            passes: 1,
            only: None,
            progress: None,
        }
    }
}

/// Why a device's wipe stopped.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    /// The device was refused or could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Reading the device failed.
    #[error("{action} failed")]
    Read {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing or zeroing through the target layer failed.
    #[error("{action} failed")]
    Target {
        /// What was being done.
        action: &'static str,
        /// The target error (which carries the OS error).
        #[source]
        source: TargetError,
    },
    /// Writing or reading the verification pattern failed.
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    /// The overwrite hit an I/O error.
    #[error(transparent)]
    Overwrite(#[from] overwrite::OverwriteError),
    /// An NVMe command failed.
    #[error(transparent)]
    Nvme(#[from] nvme::NvmeError),
    /// An ATA command failed.
    #[error(transparent)]
    Ata(#[from] ata::AtaError),
    /// The device rejected an ioctl as unsupported.
    #[error("unsupported")]
    Unsupported(#[source] io::Error),
    /// A method's own post-condition failed.
    #[error("{0}")]
    Method(String),
}

impl WipeError {
    fn read(action: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Read { action, source }
    }

    fn target(action: &'static str) -> impl FnOnce(TargetError) -> Self {
        move |source| Self::Target { action, source }
    }

    /// True for I/O failures of the device itself (EIO, ENOSPC, ...), which
    /// stop the wipe of the device instead of moving on to another method.
    pub fn is_io_failure(&self) -> bool {
        matches!(
            self,
            Self::Read { .. } | Self::Target { .. } | Self::Verify(_) | Self::Overwrite(_)
        )
    }
}

/// What makes two names one device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identity {
    /// A block device: its device number (`st_rdev`), whatever node names it.
    Block(u64),
    /// Anything else that exists: its filesystem and inode (hard links too).
    Inode(u64, u64),
    /// A path that cannot be looked at (it is refused as missing anyway).
    Path(PathBuf),
}

fn identity(path: &Path) -> Identity {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => Identity::Block(m.rdev()),
        Ok(m) => Identity::Inode(m.dev(), m.ino()),
        Err(_) => Identity::Path(std::fs::canonicalize(path).unwrap_or_else(|_| path.into())),
    }
}

/// For each path, why it is refused as a repeat of an earlier one: the same
/// path, a symlink to it, another device node with the same device number,
/// or a hard link to the same file.
fn duplicates(paths: &[PathBuf]) -> Vec<Option<String>> {
    let mut seen: HashMap<Identity, &Path> = HashMap::new();
    paths
        .iter()
        .map(|p| {
            let id = identity(p);
            let first = seen.get(&id).copied();
            if first.is_none() {
                seen.insert(id.clone(), p);
            }
            first.map(|first| {
                let how = match id {
                    Identity::Block(rdev) => format!(
                        "block device {}:{}",
                        libc::major(rdev),
                        libc::minor(rdev)
                    ),
                    Identity::Inode(..) | Identity::Path(_) => "file".into(),
                };
                tracing::warn!(device = %p.display(), same_as = %first.display(), %how, "device named more than once");
                format!(
                    "named more than once: {} is the same {how} as {}",
                    p.display(),
                    first.display()
                )
            })
        })
        .collect()
}

/// Wipes every named device in parallel (one thread each) and returns the
/// report, devices in the order given. A device named twice (by the same path
/// or another: a symlink, a second device node, a hard link) is wiped once;
/// the repeats are refused.
pub fn wipe_devices(paths: &[PathBuf], opts: &WipeOptions) -> WipeReport {
    let dup = duplicates(paths);
    let devices: Vec<DeviceReport> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .zip(&dup)
            .map(|(p, dup)| {
                s.spawn(move || match dup {
                    Some(why) => refused(p, opts, why),
                    None => wipe_device(p, opts),
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(paths)
            .map(|(h, p)| {
                h.join().unwrap_or_else(|_| {
                    refused(p, opts, "internal error: the wipe thread panicked")
                })
            })
            .collect()
    });
    let success = !devices.is_empty() && devices.iter().all(|d| d.status == WipeStatus::Verified);
    WipeReport { devices, success }
}

fn refused(path: &Path, opts: &WipeOptions, why: &str) -> DeviceReport {
    let clock = report::Clock::start();
    let mut r = clock.report(&path.display().to_string(), opts.mode);
    r.error = Some(why.to_string());
    clock.finish(&mut r);
    r
}

fn run_id() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_le_bytes(b)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    }
}

/// Wipes one device and returns its report (never panics on device errors:
/// they end up in `status` and `error`).
pub fn wipe_device(path: &Path, opts: &WipeOptions) -> DeviceReport {
    let clock = report::Clock::start();
    let mut r = clock.report(&path.display().to_string(), opts.mode);
    let span = tracing::info_span!("wipe", device = %path.display());
    let _enter = span.enter();
    match Device::open(path) {
        Err(e) => {
            let e = WipeError::from(e);
            tracing::error!(error = %report::error_chain(&e), "device refused");
            r.error = Some(report::error_chain(&e));
        }
        Ok(mut dev) => {
            r.size_bytes = dev.size();
            r.logical_block_size = dev.block_size();
            let res = match opts.mode {
                WipeMode::Metadata => run_metadata(&mut dev, opts, &mut r),
                WipeMode::Secure => run_secure(&mut dev, opts, &mut r),
            };
            r.kind = dev.kind();
            r.model = dev.model().map(str::to_string);
            r.serial = dev.serial().map(str::to_string);
            if let Err(e) = res {
                let msg = report::error_chain(&e);
                tracing::error!(error = %msg, "wipe failed");
                r.status = WipeStatus::Failed;
                r.error = Some(msg);
            }
        }
    }
    clock.finish(&mut r);
    tracing::info!(status = ?r.status, method = ?r.method, seconds = r.seconds, "wipe finished");
    r
}

/// Sets `status` from the verification: never `verified` without one.
fn settle(r: &mut DeviceReport) {
    r.status = match &r.verification {
        None => WipeStatus::Unverified,
        Some(v) if v.passed => WipeStatus::Verified,
        Some(v) => {
            r.error.get_or_insert_with(|| {
                format!(
                    "verification failed: {}",
                    v.detail.clone().unwrap_or_default()
                )
            });
            WipeStatus::Failed
        }
    };
    if r.status == WipeStatus::Unverified {
        r.error.get_or_insert_with(|| {
            "not verified (--verify none): not reported as a success".into()
        });
    }
}

fn run_metadata(
    dev: &mut Device,
    opts: &WipeOptions,
    r: &mut DeviceReport,
) -> Result<(), WipeError> {
    let out = metadata::wipe_metadata(dev, opts.verify)?;
    r.method = Some(WipeMethod::Metadata);
    r.nist_category = Some(WipeMethod::Metadata.nist_category());
    r.bytes = out.bytes;
    r.partitions = out.partitions;
    r.signatures = out.signatures;
    r.verification = out.verification;
    settle(r);
    Ok(())
}

fn run_secure(dev: &mut Device, opts: &WipeOptions, r: &mut DeviceReport) -> Result<(), WipeError> {
    let out = secure::wipe_secure(dev, opts, run_id())?;
    r.skipped = out.skipped;
    r.verification = out.verification;
    r.passes = out.passes;
    r.pass_seconds = out.pass_seconds;
    r.bytes = out.bytes;
    match out.method {
        Some(m) => {
            r.method = Some(m);
            r.nist_category = Some(m.nist_category());
            settle(r);
        }
        None => {
            r.status = WipeStatus::Failed;
            r.error = out.failure;
        }
    }
    Ok(())
}
