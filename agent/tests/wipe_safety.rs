//! Refusals and error reporting: read-only and mounted devices are refused
//! untouched, I/O errors (ENOSPC on a tiny tmpfs) are reported, never swallowed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;
mod wipe_support;

use std::process::Command;

use ingot_proto::wipe::WipeStatus;
use wipe_support::*;

const MIB: u64 = 1 << 20;

#[test]
fn refuses_read_only_loop_device() {
    if !common::privileged("refuses_read_only_loop_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "ro.img", 16 * MIB, true);
    write_at(&lo.backing, 0, b"precious");
    for mode in ["metadata", "secure"] {
        let (ok, report, _) = wipe(&["--mode", mode, "--device", lo.path.to_str().unwrap()]);
        let d = only(&report);
        assert!(!ok);
        assert_eq!(d.status, WipeStatus::Failed);
        assert!(d.error.as_deref().unwrap().contains("read-only"), "{d:?}");
        assert!(d.verification.is_none() && d.method.is_none());
    }
    assert_eq!(read_at(&lo.backing, 0, 8), b"precious");
}

/// Unmounts on drop.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        Command::new("umount").arg(&self.0).status().ok();
    }
}

#[test]
fn refuses_mounted_device_and_its_backing_file() {
    if !common::privileged("refuses_mounted_device_and_its_backing_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "fs.img", 32 * MIB, false);
    sh(&format!("mkfs.ext4 -q -F {}", lo.path.display()));
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(&format!("mount {} '{}'", lo.path.display(), mnt.display()));
    let _m = Mount(mnt.clone());
    for target in [lo.path.to_str().unwrap(), lo.backing.to_str().unwrap()] {
        let (ok, report, _) = wipe(&[
            "--mode",
            "metadata",
            "--allow-overwrite-fallback",
            "--device",
            target,
        ]);
        let d = only(&report);
        assert!(!ok);
        let err = d.error.as_deref().unwrap();
        assert!(
            err.contains("in use") && err.contains("mounted"),
            "{target}: {err}"
        );
    }
    assert!(blkid_at(&lo.backing, 0, 32 * MIB).unwrap().contains("ext4"));
}

#[test]
fn reports_enospc_from_a_tiny_tmpfs() {
    if !common::privileged("reports_enospc_from_a_tiny_tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tmpfs");
    std::fs::create_dir(&mnt).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=12m tmpfs '{}'",
        mnt.display()
    ));
    let _m = Mount(mnt.clone());
    // A sparse 32 MiB "disk" on 12 MiB: the samples fit, the overwrite does not.
    let img = mnt.join("disk.img");
    sparse(&img, 32 * MIB);
    let (ok, report, out) = wipe(&[
        "--device",
        img.to_str().unwrap(),
        "--allow-overwrite-fallback",
    ]);
    let d = only(&report);
    assert!(!ok);
    assert_eq!(d.status, WipeStatus::Failed);
    let err = d.error.as_deref().unwrap();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("overwrite pass 1"), "{err}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

#[test]
fn refuses_missing_and_duplicate_devices() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse(&img, MIB);
    let p = img.to_str().unwrap();
    let (ok, report, _) = wipe(&["--mode", "metadata", "--device", p, "--device", p]);
    assert!(!ok);
    assert_eq!(report.devices[0].status, WipeStatus::Verified);
    assert!(
        report.devices[1]
            .error
            .as_deref()
            .unwrap()
            .contains("more than once")
    );
    // The same file under other names: a symlink, a `..` detour, a hard link.
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let hard = dir.path().join("hard.img");
    std::fs::hard_link(&img, &hard).unwrap();
    let detour = dir.path().join("sub/../disk.img");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    for other in [&link, &detour, &hard] {
        let (ok, report, _) = wipe(&[
            "--mode",
            "metadata",
            "--device",
            p,
            "--device",
            other.to_str().unwrap(),
        ]);
        assert!(!ok, "{other:?}");
        assert_eq!(report.devices[0].status, WipeStatus::Verified);
        assert_eq!(report.devices[1].status, WipeStatus::Failed, "{other:?}");
        let err = report.devices[1].error.as_deref().unwrap();
        assert!(
            err.contains(&format!(
                "named more than once: {} is the same file as {p}",
                other.display()
            )),
            "{err}"
        );
    }
    let (ok, report, _) = wipe(&["--device", "/dev/does-not-exist"]);
    assert!(!ok);
    assert!(
        only(&report)
            .error
            .as_deref()
            .unwrap()
            .contains("no such device")
    );
    // No device named: clap refuses; there is no "wipe everything" default.
    let out = Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .arg("wipe")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device"));
}

/// One loop device under two device nodes (the second made with mknod, as a
/// udev alias or a container's /dev would be): wiped once, the repeat refused
/// with both names and the device number.
#[test]
fn refuses_one_block_device_under_two_nodes() {
    if !common::privileged("refuses_one_block_device_under_two_nodes") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "disk.img", 16 * MIB, false);
    let rdev = std::fs::metadata(&lo.path).unwrap().rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let alias = dir.path().join("alias");
    sh(&format!("mknod '{}' b {major} {minor}", alias.display()));
    let dev = lo.path.to_str().unwrap();
    let (ok, report, _) = wipe(&[
        "--mode",
        "metadata",
        "--device",
        dev,
        "--device",
        alias.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(report.devices.len(), 2);
    assert_eq!(
        report.devices[0].status,
        WipeStatus::Verified,
        "{report:#?}"
    );
    assert_eq!(report.devices[1].status, WipeStatus::Failed);
    let err = report.devices[1].error.as_deref().unwrap();
    assert!(
        err.contains(&format!(
            "named more than once: {} is the same block device {major}:{minor} as {dev}",
            alias.display()
        )),
        "{err}"
    );
    // Refused before it was opened: nothing about the device is reported.
    assert!(report.devices[1].verification.is_none() && report.devices[1].method.is_none());
}
