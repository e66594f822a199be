//! The partition table after a whole-disk write, checked with util-linux's
//! `sfdisk --verify` and, when installed, gdisk's `sgdisk -v`: a GPT image
//! smaller than the disk gets its backup header and table moved to the
//! disk's last sectors and its protective MBR sized to the disk (as
//! `sgdisk -e` does), by `write-image` on loop devices and disk image files,
//! and when a config drive partition is added.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::http::{Faults, TestServer};
use common::{LoopDev, privileged, sh, sha256_arg};

const MIB: u64 = 1 << 20;

/// A GPT disk image of `size` bytes made by sfdisk: one Linux partition from
/// 1 MiB to 7 MiB, filled with a pattern.
fn sfdisk_image(dir: &Path, size: u64) -> Vec<u8> {
    let path = dir.join("image.raw");
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let script = "label: gpt\nunit: sectors\nstart=2048, size=12288, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n";
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed");
    let data: Vec<u8> = (0..6 * MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&data, MIB).unwrap();
    drop(f);
    std::fs::read(&path).unwrap()
}

/// `sfdisk --verify` and `sgdisk -v` find nothing wrong with the disk at
/// `disk`; returns their combined output.
fn assert_verified(disk: &Path) -> String {
    let out = Command::new("sfdisk")
        .arg("--verify")
        .arg(disk)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("No errors detected") && !text.contains("mismatch"),
        "sfdisk --verify {}: {text}",
        disk.display()
    );
    let sgdisk = Command::new("sgdisk").arg("-v").arg(disk).output();
    match sgdisk {
        Ok(out) => {
            let v = String::from_utf8_lossy(&out.stdout);
            assert!(
                v.contains("No problems found"),
                "sgdisk -v {}: {v}",
                disk.display()
            );
            text + &v
        }
        Err(e) => {
            eprintln!("sgdisk not run ({e}): install gdisk for the second check");
            text
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// The disk's GPT ends at its last sector: the primary header names it as the
/// backup, a valid backup header is there, the protective MBR covers the
/// disk, and no stale header is left where the image's backup was.
fn assert_fitted(disk: &[u8], image_len: usize) {
    let sectors = (disk.len() / 512) as u64;
    let primary = &disk[512..1024];
    assert_eq!(&primary[..8], b"EFI PART");
    assert_eq!(u64_at(primary, 32), sectors - 1, "backup LBA");
    assert_eq!(u64_at(primary, 48), sectors - 34, "last usable LBA");
    let backup = &disk[disk.len() - 512..];
    assert_eq!(&backup[..8], b"EFI PART");
    assert_eq!(u64_at(backup, 24), sectors - 1);
    assert_eq!(u64_at(backup, 72), sectors - 33, "backup entries LBA");
    assert_eq!(
        u32_at(disk, 446 + 12),
        (sectors - 1) as u32,
        "protective MBR size"
    );
    assert!(
        disk[image_len - 512..image_len].iter().all(|&b| b == 0),
        "the image's own backup header was left behind"
    );
}

/// The image's partition data arrived untouched.
fn assert_data(disk: &[u8], image: &[u8]) {
    assert_eq!(
        &disk[MIB as usize..7 * MIB as usize],
        &image[MIB as usize..7 * MIB as usize]
    );
    // Entries are the same; only the headers' locations changed.
    assert_eq!(&disk[1024..34 * 512], &image[1024..34 * 512]);
}

fn write_image(source: &str, device: &Path, checksum: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .args(["write-image", "--source", source, "--device"])
        .arg(device)
        .args(["--checksum", checksum])
        .output()
        .unwrap()
}

#[test]
fn write_image_moves_the_backup_gpt_to_the_end_of_a_loop_device() {
    if !privileged("write_image_moves_the_backup_gpt_to_the_end_of_a_loop_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = Arc::new(sfdisk_image(dir.path(), 16 * MIB));
    let srv = TestServer::start(
        HashMap::from([("gpt.raw".to_string(), image.clone())]),
        Faults::default(),
    );
    let dev = LoopDev::new(dir.path(), "disk", 64 * MIB, false);
    let out = write_image(&srv.url("gpt.raw"), &dev.path, &sha256_arg(&image));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = assert_verified(&dev.path);
    let disk = dev.contents();
    assert_fitted(&disk, image.len());
    assert_data(&disk, &image);
    // sfdisk -d sees the table spanning the disk.
    let dump = sh(Command::new("sfdisk").arg("-d").arg(&dev.path));
    assert!(
        dump.contains(&format!("last-lba: {}", 64 * MIB / 512 - 34)),
        "{dump}\n{report}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fitted the GPT to the disk"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn write_image_fits_the_gpt_of_a_disk_image_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = sfdisk_image(dir.path(), 16 * MIB);
    let target = dir.path().join("disk.img");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(48 * MIB)
        .unwrap();
    let src = dir.path().join("image.raw");
    let out = write_image(src.to_str().unwrap(), &target, &sha256_arg(&image));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_verified(&target);
    let disk = std::fs::read(&target).unwrap();
    assert_fitted(&disk, image.len());
    assert_data(&disk, &image);

    // A file that grows to the image's size: the GPT already ends there,
    // and the disk is the image byte for byte.
    let grown = dir.path().join("grown.img");
    let out = write_image(src.to_str().unwrap(), &grown, &sha256_arg(&image));
    assert!(out.status.success());
    assert_eq!(std::fs::read(&grown).unwrap(), image);
}

/// A config drive added on a GPT disk whose image did not span it: the new
/// partition comes with the backup table at the disk's end and a protective
/// MBR that covers the whole disk (`sgdisk` rewrites it with the table).
#[test]
fn config_drive_on_gpt_fits_the_protective_mbr() {
    let dir = tempfile::tempdir().unwrap();
    let image = sfdisk_image(dir.path(), 16 * MIB);
    let disk_path = dir.path().join("image.raw");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk_path)
        .unwrap()
        .set_len(256 * MIB)
        .unwrap();
    assert_eq!(u32_at(&image, 446 + 12), (16 * MIB / 512 - 1) as u32);
    let drive = vec![0x42u8; 100_000];
    let placed = ingot_agent::configdrive::write_partition(&disk_path, &drive).unwrap();
    assert_eq!(placed.table, "gpt");
    assert_eq!(placed.partition, 2);
    assert!(placed.created);
    let report = assert_verified(&disk_path);
    let disk = std::fs::read(&disk_path).unwrap();
    assert_eq!(
        u32_at(&disk, 446 + 12),
        (256 * MIB / 512 - 1) as u32,
        "protective MBR size; {report}"
    );
    assert_eq!(&disk[disk.len() - 512..disk.len() - 504], b"EFI PART");
    let at = placed.offset as usize;
    assert_eq!(&disk[at..at + drive.len()], &drive[..]);
    let dump = sh(Command::new("sfdisk").arg("-d").arg(&disk_path));
    assert!(dump.contains("name=\"config-2\""), "{dump}");
}
