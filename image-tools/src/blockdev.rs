//! Thin, typed wrappers over the Linux block-device ioctls Ingot uses.
//!
//! Shared by the image writer and the wipe code. Each function takes an open
//! file descriptor and returns an `io::Error` from `errno` on failure.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// An ioctl request number in the type the C library declares: `unsigned long`
/// in glibc, `int` in musl. The kernel reads it as a 32-bit value either way.
pub const fn request(nr: u32) -> libc::Ioctl {
    nr as libc::Ioctl
}

// ioctl request numbers from <linux/fs.h> (the same on every Linux architecture
// Ingot targets: x86_64 and aarch64 use the generic _IO/_IOR encoding).
const BLKROGET: libc::Ioctl = request(0x125e);
const BLKRRPART: libc::Ioctl = request(0x125f);
const BLKSSZGET: libc::Ioctl = request(0x1268);
const BLKDISCARD: libc::Ioctl = request(0x1277);
const BLKPBSZGET: libc::Ioctl = request(0x127b);
const BLKSECDISCARD: libc::Ioctl = request(0x127d);
const BLKZEROOUT: libc::Ioctl = request(0x127f);
const BLKGETSIZE64: libc::Ioctl = request(0x8008_1272);

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Size of the device in bytes (`BLKGETSIZE64`).
pub fn size_bytes(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid
    // for the duration of the call.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) })?;
    Ok(size)
}

/// Logical block size (`BLKSSZGET`): the alignment O_DIRECT I/O needs.
pub fn logical_block_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size as *mut libc::c_int) })?;
    u32::try_from(size).map_err(|_| io::Error::other("negative logical block size"))
}

/// Physical block size (`BLKPBSZGET`).
pub fn physical_block_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one unsigned int through the pointer.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKPBSZGET, &mut size as *mut libc::c_uint) })?;
    Ok(size)
}

/// Whether the kernel marks the device read-only (`BLKROGET`).
pub fn is_read_only(file: &File) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKROGET, &mut ro as *mut libc::c_int) })?;
    Ok(ro != 0)
}

fn range_ioctl(file: &File, req: libc::Ioctl, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: the range ioctls read two u64s (start, length) through the pointer,
    // which points at a live array of exactly that shape.
    check(unsafe { libc::ioctl(file.as_raw_fd(), req, range.as_ptr()) })
}

/// Writes zeros over `[offset, offset + len)` in the device (`BLKZEROOUT`).
/// Both values must be multiples of 512. The kernel uses the device's Write
/// Zeroes command when it has one, and writes zero pages otherwise.
pub fn zero_out(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKZEROOUT, offset, len)
}

/// Discards (TRIMs / deallocates) `[offset, offset + len)` (`BLKDISCARD`).
pub fn discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKDISCARD, offset, len)
}

/// Secure discard of `[offset, offset + len)` (`BLKSECDISCARD`).
pub fn secure_discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKSECDISCARD, offset, len)
}

/// Asks the kernel to re-read the partition table (`BLKRRPART`).
pub fn reread_partitions(file: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKRRPART) })
}

/// Sets or clears `O_DIRECT` on an open file descriptor.
pub fn set_direct(file: &File, direct: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL only read and write the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if direct {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    if new != flags {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// `fallocate(2)` on a regular file.
pub fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let off = libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("length too large"))?;
    // SAFETY: fallocate only acts on the descriptor; no memory is passed.
    check(unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) })
}

/// Major and minor number of a block device node.
pub fn dev_numbers(meta: &std::fs::Metadata) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let rdev = meta.rdev();
    (libc::major(rdev), libc::minor(rdev))
}

/// Mount points (from `/proc/self/mountinfo`) of the device `major:minor` or of
/// any of its partitions (found through `/sys/dev/block/M:m/*/dev`).
pub fn mount_points(major: u32, minor: u32) -> Vec<String> {
    let mut devs = vec![format!("{major}:{minor}")];
    let sys = format!("/sys/dev/block/{major}:{minor}");
    if let Ok(entries) = std::fs::read_dir(&sys) {
        for e in entries.flatten() {
            if let Ok(d) = std::fs::read_to_string(e.path().join("dev")) {
                let d = d.trim().to_string();
                if e.path().join("partition").exists() {
                    devs.push(d);
                }
            }
        }
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in info.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && devs.iter().any(|d| d == f[2]) {
            found.push(f[4].to_string());
        }
    }
    // Swap areas in use do not appear in mountinfo.
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        for line in swaps.lines().skip(1) {
            if let Some(path) = line.split_whitespace().next() {
                if let Ok(m) = std::fs::metadata(path) {
                    let (ma, mi) = dev_numbers(&m);
                    if devs.contains(&format!("{ma}:{mi}")) {
                        found.push(format!("swap ({path})"));
                    }
                }
            }
        }
    }
    found
}

/// Holders of a block device (`/sys/dev/block/M:m/holders`), e.g. dm or md devices.
pub fn holders(major: u32, minor: u32) -> Vec<String> {
    let dir = format!("/sys/dev/block/{major}:{minor}/holders");
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Loop devices whose backing file is `path` (so writing to it writes a disk
/// that may be mounted elsewhere).
pub fn loop_devices_backed_by(path: &Path) -> Vec<String> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(backing.trim()) == target {
                found.push(format!("/dev/{name}"));
            }
        }
    }
    found
}
