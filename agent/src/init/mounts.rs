//! The API file systems PID 1 mounts: /proc, /sys, /dev (devtmpfs), /run
//! and /tmp; each only if not mounted already (a second start, or a kernel
//! that mounted devtmpfs itself).

use std::ffi::CString;

const MOUNTS: &[(&str, &str, &str, libc::c_ulong, &str)] = &[
    (
        "proc",
        "/proc",
        "proc",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    (
        "sysfs",
        "/sys",
        "sysfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
    (
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    ),
    (
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    ),
    (
        "efivarfs",
        "/sys/firmware/efi/efivars",
        "efivarfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
];

fn is_mountpoint(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(path)))
        .unwrap_or(false)
}

/// Mounts what is missing; failures are printed (logging is not up yet).
pub fn mount_api_filesystems() {
    mount(MOUNTS);
}

/// Mounts efivarfs again, once its module is loaded (Debian's kernels build
/// it as a module, so the first attempt, before any module, fails there).
pub fn mount_efivarfs() {
    mount(&MOUNTS[MOUNTS.len() - 1..]);
}

fn mount(entries: &[(&str, &str, &str, libc::c_ulong, &str)]) {
    for (src, target, fstype, flags, data) in entries {
        if *target == "/sys/firmware/efi/efivars" && !std::path::Path::new(target).exists() {
            continue;
        }
        if *target != "/proc" && is_mountpoint(target) {
            continue;
        }
        std::fs::create_dir_all(target).ok();
        let (Ok(s), Ok(t), Ok(f), Ok(d)) = (
            CString::new(*src),
            CString::new(*target),
            CString::new(*fstype),
            CString::new(*data),
        ) else {
            continue;
        };
        // SAFETY: valid NUL-terminated strings; data is a plain option string.
        let r = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                f.as_ptr(),
                *flags,
                d.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                eprintln!("ingot-agent: mount {fstype} on {target}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn efivarfs_is_the_last_entry() {
        // mount_efivarfs mounts the last entry only.
        assert_eq!(super::MOUNTS[super::MOUNTS.len() - 1].2, "efivarfs");
    }
}
