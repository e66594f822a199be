//! Metadata mode on real partition tables and filesystems made by the real
//! tools (sfdisk, mkfs.*, mkswap, cryptsetup, pvcreate), checked afterwards
//! with `wipefs --no-act` and `blkid -p` at each partition's offset. The
//! kernel here has no partition parser, so filesystems are made at offsets
//! of the image (or as separate images copied in) rather than on /dev/loopNpM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;
mod wipe_support;

use std::path::Path;

use wipe_support::*;

const MIB: u64 = 1 << 20;

/// Start and size in bytes of each partition, from `sfdisk --json`.
fn partitions(image: &Path) -> Vec<(u64, u64)> {
    let json = sh(&format!("sfdisk --json '{}'", image.display()));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect()
}

/// Copies a filesystem image into `image` at `offset`, keeping both sparse.
fn copy_in(fs: &Path, image: &Path, offset: u64) {
    sh(&format!(
        "dd if='{}' of='{}' bs=1M seek={} oflag=seek_bytes conv=notrunc,sparse status=none",
        fs.display(),
        image.display(),
        offset
    ));
}

/// Builds a GPT disk: ext4, vfat, swap, then xfs, btrfs, LUKS2 and LUKS1
/// where the tools exist. Returns the partitions and the names blkid reports.
fn build_gpt_disk(dir: &Path, image: &Path) -> (Vec<(u64, u64)>, Vec<&'static str>) {
    sparse(image, 1024 * MIB);
    sh(&format!(
        "printf 'label: gpt\\nsize=64MiB, type=L\\nsize=64MiB, type=U\\nsize=32MiB, type=S\\n\
         size=320MiB, type=L\\nsize=128MiB, type=L\\nsize=32MiB, type=L\\nsize=32MiB, type=L\\n' \
         | sfdisk -q '{}'",
        image.display()
    ));
    let parts = partitions(image);
    let img = image.display();
    let mut expected = vec!["ext4", "vfat", "swap"];
    sh(&format!(
        "mkfs.ext4 -q -F -E offset={} '{img}' {}k",
        parts[0].0,
        parts[0].1 / 1024
    ));
    sh(&format!(
        "mkfs.vfat -F 16 --offset {} '{img}' {} >/dev/null",
        parts[1].0 / 512,
        parts[1].1 / 1024
    ));
    let swap = dir.join("swap.img");
    sparse(&swap, parts[2].1);
    sh(&format!("mkswap '{}' >/dev/null 2>&1", swap.display()));
    copy_in(&swap, image, parts[2].0);
    let fs_images: [(&str, &str, usize, &'static str); 4] = [
        ("mkfs.xfs", "mkfs.xfs -q -f", 3, "xfs"),
        ("mkfs.btrfs", "mkfs.btrfs -q -f", 4, "btrfs"),
        (
            "cryptsetup",
            "echo -n pw | cryptsetup -q luksFormat --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file -",
            5,
            "crypto_LUKS",
        ),
        (
            "cryptsetup",
            "echo -n pw | cryptsetup -q luksFormat --type luks1 --pbkdf-force-iterations 1000 --key-file -",
            6,
            "crypto_LUKS",
        ),
    ];
    for (tool, cmd, idx, name) in fs_images {
        if !have(tool) {
            eprintln!("NOTE: {tool} not installed; {name} not covered");
            continue;
        }
        let fs = dir.join(format!("p{idx}.img"));
        sparse(&fs, parts[idx].1);
        sh(&format!("{cmd} '{}' >/dev/null", fs.display()));
        copy_in(&fs, image, parts[idx].0);
        expected.push(name);
    }
    sh("sync");
    (parts, expected)
}

fn assert_clean(image: &Path, parts: &[(u64, u64)]) {
    let left = wipefs_list(image);
    assert!(left.is_empty(), "wipefs still finds: {left:?}");
    let size = std::fs::metadata(image).unwrap().len();
    assert_eq!(blkid_at(image, 0, size), None, "whole disk");
    for &(off, len) in parts {
        assert_eq!(blkid_at(image, off, len), None, "partition at {off}");
    }
}

fn check_gpt_wipe(target: &str, image: &Path, parts: &[(u64, u64)], expected: &[&str]) {
    // Data in the middle of partition 1 is not metadata and must survive (ext4
    // here has 8 MiB groups: backup superblocks at 8, 24, 40 and 56 MiB).
    let marker = b"user data, not metadata";
    let mid = parts[0].0 + 44 * MIB;
    write_at(image, mid, marker);
    sh("sync");
    for (i, &(off, len)) in parts.iter().enumerate().take(expected.len()) {
        let found = blkid_at(image, off, len).unwrap_or_default();
        assert!(
            found.contains(&format!("TYPE=\"{}\"", expected[i])),
            "fixture: partition {i} should hold {}: {found}",
            expected[i]
        );
    }
    let (ok, report, out) = wipe(&["--mode", "metadata", "--device", target]);
    let d = only(&report);
    assert!(ok, "{d:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.status, ingot_proto::wipe::WipeStatus::Verified, "{d:#?}");
    assert!(report.success);
    assert_eq!(d.partitions.len(), parts.len(), "{:?}", d.partitions);
    for (p, &(off, len)) in d.partitions.iter().zip(parts) {
        assert_eq!((p.offset, p.size), (off, len));
    }
    let names: Vec<&str> = d.signatures.iter().map(|s| s.name.as_str()).collect();
    for want in expected.iter().chain(&["gpt", "PMBR"]) {
        assert!(names.contains(want), "{want} not reported: {names:?}");
    }
    assert_eq!(
        names.iter().filter(|n| **n == "gpt").count(),
        2,
        "both GPT headers"
    );
    assert!(d.seconds < 1.0, "metadata wipe took {} s", d.seconds);
    let v = d.verification.as_ref().unwrap();
    assert!(v.passed && v.signatures_left.is_empty(), "{v:?}");
    assert_clean(image, parts);
    assert_eq!(read_at(image, mid, marker.len()), marker);
    // First and last MiB are zero.
    let size = std::fs::metadata(image).unwrap().len();
    assert!(read_at(image, 0, MIB as usize).iter().all(|&b| b == 0));
    assert!(
        read_at(image, size - MIB, MIB as usize)
            .iter()
            .all(|&b| b == 0)
    );
}

#[test]
fn metadata_wipe_gpt_image_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let (parts, expected) = build_gpt_disk(dir.path(), &image);
    assert!(wipefs_list(&image).len() >= 3, "fixture has GPT + PMBR");
    check_gpt_wipe(image.to_str().unwrap(), &image, &parts, &expected);
}

#[test]
fn metadata_wipe_gpt_loop_device() {
    if !common::privileged("metadata_wipe_gpt_loop_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "disk.img", 1024 * MIB, false);
    let (parts, expected) = build_gpt_disk(dir.path(), &lo.backing);
    check_gpt_wipe(lo.path.to_str().unwrap(), &lo.backing, &parts, &expected);
}

#[test]
fn metadata_wipe_dos_with_logical_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("dos.img");
    sparse(&image, 256 * MIB);
    sh(&format!(
        "printf 'label: dos\\n1: size=48MiB, type=83\\n2: size=160MiB, type=5\\n5: size=48MiB, type=82\\n6: size=48MiB, type=c\\n' \
         | sfdisk -q '{}'",
        image.display()
    ));
    let parts = partitions(&image);
    // 1: primary, 2: extended, 5 and 6: logical (sfdisk lists the extended one too).
    assert_eq!(parts.len(), 4, "{parts:?}");
    let (p1, p5, p6) = (parts[0], parts[2], parts[3]);
    let img = image.display();
    sh(&format!(
        "mkfs.ext4 -q -F -E offset={} '{img}' {}k",
        p1.0,
        p1.1 / 1024
    ));
    let swap = dir.path().join("swap.img");
    sparse(&swap, p5.1);
    sh(&format!("mkswap '{}' >/dev/null 2>&1", swap.display()));
    copy_in(&swap, &image, p5.0);
    sh(&format!(
        "mkfs.vfat -F 32 -s 1 --offset {} '{img}' {} >/dev/null",
        p6.0 / 512,
        p6.1 / 1024
    ));
    assert!(blkid_at(&image, p6.0, p6.1).unwrap().contains("vfat"));
    let (ok, report, _) = wipe(&["--mode", "metadata", "--device", image.to_str().unwrap()]);
    let d = only(&report);
    assert!(ok, "{d:#?}");
    let numbers: Vec<(String, u32)> = d
        .partitions
        .iter()
        .map(|p| (p.table.clone(), p.number))
        .collect();
    assert_eq!(
        numbers,
        vec![
            ("dos".into(), 1),
            ("dos-logical".into(), 5),
            ("dos-logical".into(), 6)
        ]
    );
    let names: Vec<&str> = d.signatures.iter().map(|s| s.name.as_str()).collect();
    for want in ["dos", "ext4", "swap", "vfat"] {
        assert!(names.contains(&want), "{want}: {names:?}");
    }
    assert_clean(&image, &[p1, p5, p6]);
    // FAT32 keeps a backup boot sector at sector 6: gone too.
    assert!(read_at(&image, p6.0 + 6 * 512, 512).iter().all(|&b| b == 0));
}

#[test]
fn metadata_wipe_lvm_pv_on_loop_device() {
    if !common::privileged("metadata_wipe_lvm_pv_on_loop_device") {
        return;
    }
    if !have("pvcreate") {
        eprintln!("NOTE: lvm2 not installed; LVM2_member on a real PV not covered");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "pv.img", 64 * MIB, false);
    sh(&format!(
        "pvcreate -q -ff -y {} 2>/dev/null",
        lo.path.display()
    ));
    let size = 64 * MIB;
    assert!(
        blkid_at(&lo.backing, 0, size)
            .unwrap()
            .contains("LVM2_member")
    );
    let (ok, report, _) = wipe(&["--mode", "metadata", "--device", lo.path.to_str().unwrap()]);
    let d = only(&report);
    assert!(ok, "{d:#?}");
    assert!(d.signatures.iter().any(|s| s.name == "LVM2_member"));
    assert_clean(&lo.backing, &[]);
}
