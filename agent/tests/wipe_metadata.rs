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
    let before = leftovers(image, parts, expected);
    for name in expected.iter().filter(|n| **n != "vfat" && **n != "swap") {
        let copies = before
            .iter()
            .filter(|l| l.starts_with(&format!("{name}@")))
            .count();
        // The primary and at least one copy (LUKS: one hit in each of its two partitions).
        assert!(
            copies >= 2,
            "fixture: {name} should have copies: {before:?}"
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
    let left = leftovers(image, parts, expected);
    assert!(left.is_empty(), "left after the wipe: {left:?}");
    // First and last MiB are zero.
    let size = std::fs::metadata(image).unwrap().len();
    assert!(read_at(image, 0, MIB as usize).iter().all(|&b| b == 0));
    assert!(
        read_at(image, size - MIB, MIB as usize)
            .iter()
            .all(|&b| b == 0)
    );
}

/// Beyond what blkid probes: superblock copies a repair tool could use
/// (ext4 backups, XFS secondary superblocks, btrfs mirrors), and LUKS key
/// material (headers and key slots up to the data offset: 2 MiB for LUKS1
/// here, 16 MiB for LUKS2). Returns what is left, as "name@offset".
fn leftovers(image: &Path, parts: &[(u64, u64)], expected: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for (i, name) in expected.iter().enumerate() {
        let (off, len) = parts[i];
        let data = read_at(image, off, len as usize);
        let hits: Vec<usize> = match *name {
            // ext4 (1 KiB blocks here): magic 0xEF53 at 0x38 of a 1 KiB block.
            "ext4" => (0..data.len() / 1024)
                .map(|b| b * 1024)
                .filter(|&o| data[o + 0x38..o + 0x3a] == [0x53, 0xef])
                .collect(),
            "xfs" => (0..data.len() / 512)
                .map(|s| s * 512)
                .filter(|&o| &data[o..o + 4] == b"XFSB")
                .collect(),
            "btrfs" => (0..data.len() / 4096)
                .map(|b| b * 4096)
                .filter(|&o| &data[o + 0x40..o + 0x48] == b"_BHRfS_M")
                .collect(),
            "crypto_LUKS" => {
                let keys = if i == 5 { 16 << 20 } else { 2 << 20 };
                data[..keys]
                    .iter()
                    .position(|&b| b != 0)
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        };
        left.extend(hits.iter().map(|h| format!("{name}@{}", off + *h as u64)));
    }
    left
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

fn u64_at(image: &Path, offset: u64) -> u64 {
    u64::from_le_bytes(read_at(image, offset, 8).try_into().unwrap())
}

/// A previous tenant's GPT whose entry 2 ends at LBA u64::MAX and entry 3 at
/// 2^55 + 10 (where `(last + 1) * 512` wraps to 5632), in both entry arrays:
/// both partitions are taken to end at the disk's end, their swap and ext4
/// are found and erased, the wipe is verified, and the log names each field
/// and value. Before, the debug binary died on the overflow (no report) and a
/// release build probed wrapped bounds.
#[test]
fn metadata_wipe_gpt_entries_ending_beyond_2_pow_64() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("hostile-gpt.img");
    let size = 64 * MIB;
    sparse(&image, size);
    sh(&format!(
        "printf 'label: gpt\\nsize=8MiB, type=L\\nsize=16MiB, type=S\\nsize=16MiB, type=L\\n' | sfdisk -q '{}'",
        image.display()
    ));
    let parts = partitions(&image);
    let (p1, p2, p3) = (parts[0], parts[1], parts[2]);
    let swap = dir.path().join("swap.img");
    sparse(&swap, p2.1);
    sh(&format!("mkswap '{}' >/dev/null 2>&1", swap.display()));
    copy_in(&swap, &image, p2.0);
    sh(&format!(
        "mkfs.ext4 -q -F -E offset={} '{}' {}k",
        p3.0,
        image.display(),
        p3.1 / 1024
    ));
    let near = (1u64 << 55) + 10;
    let backup_entries = u64_at(&image, size - 512 + 72) * 512;
    for array in [2 * 512, backup_entries] {
        write_at(&image, array + 128 + 40, &u64::MAX.to_le_bytes());
        write_at(&image, array + 2 * 128 + 40, &near.to_le_bytes());
    }
    let (ok, report, out) = wipe(&["--mode", "metadata", "--device", image.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let d = only(&report);
    assert!(ok, "{d:#?}\n{stderr}");
    let found: Vec<(u32, u64, u64)> = d
        .partitions
        .iter()
        .map(|p| (p.number, p.offset, p.size))
        .collect();
    assert_eq!(
        found,
        vec![
            (1, p1.0, p1.1),
            (2, p2.0, size - p2.0),
            (3, p3.0, size - p3.0)
        ]
    );
    let names: Vec<&str> = d.signatures.iter().map(|s| s.name.as_str()).collect();
    for want in ["gpt", "PMBR", "swap", "ext4"] {
        assert!(names.contains(&want), "{want}: {names:?}");
    }
    assert_clean(&image, &[p1, p2, p3]);
    for (entry, value) in [(2, u64::MAX), (3, near)] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("GPT entry {entry} (header at byte 512)")))
            .unwrap_or_else(|| panic!("no warning for entry {entry}:\n{stderr}"));
        assert!(
            line.contains("ending_lba")
                && line.contains(&format!("value={value}"))
                && line.contains("lies beyond the end of the disk (131072 sectors of 512 bytes); the partition is clamped to it"),
            "{line}"
        );
    }
}

/// A dos table with u32::MAX values: a primary entry starting far beyond the
/// 64 MiB disk, a logical partition running past its end, and an EBR link
/// pointing outside the extended partition. What lies on the disk is probed
/// and erased (verified); the rest is named in the log and skipped.
#[test]
fn metadata_wipe_dos_chain_with_huge_values() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("hostile-dos.img");
    let size = 64 * MIB;
    sparse(&image, size);
    sh(&format!(
        "printf 'label: dos\\n1: size=16MiB, type=82\\n2: size=32MiB, type=5\\n5: size=16MiB, type=82\\n' | sfdisk -q '{}'",
        image.display()
    ));
    let parts = partitions(&image);
    assert_eq!(parts.len(), 3, "{parts:?}");
    let (p1, p2, p5) = (parts[0], parts[1], parts[2]);
    for p in [p1, p5] {
        let swap = dir.path().join("swap.img");
        sparse(&swap, p.1);
        sh(&format!("mkswap '{}' >/dev/null 2>&1", swap.display()));
        copy_in(&swap, &image, p.0);
    }
    let max = u32::MAX.to_le_bytes();
    // MBR entry 3: a partition at sector u32::MAX, u32::MAX sectors long.
    write_at(&image, 446 + 32 + 4, &[0x83]);
    write_at(&image, 446 + 32 + 8, &max);
    write_at(&image, 446 + 32 + 12, &max);
    // The first EBR (at the extended partition's start): its logical
    // partition is u32::MAX sectors long, and its link points u32::MAX sectors
    // into the extended partition.
    write_at(&image, p2.0 + 446 + 12, &max);
    write_at(&image, p2.0 + 446 + 16 + 4, &[0x05]);
    write_at(&image, p2.0 + 446 + 16 + 8, &max);
    write_at(&image, p2.0 + 446 + 16 + 12, &1u32.to_le_bytes());
    let (ok, report, out) = wipe(&["--mode", "metadata", "--device", image.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let d = only(&report);
    assert!(ok, "{d:#?}\n{stderr}");
    let found: Vec<(String, u32, u64, u64)> = d
        .partitions
        .iter()
        .map(|p| (p.table.clone(), p.number, p.offset, p.size))
        .collect();
    assert_eq!(
        found,
        vec![
            ("dos".into(), 1, p1.0, p1.1),
            ("dos-logical".into(), 5, p5.0, size - p5.0)
        ]
    );
    let swaps = d.signatures.iter().filter(|s| s.name == "swap").count();
    assert_eq!(swaps, 2, "{:?}", d.signatures);
    assert_clean(&image, &[p1, p5]);
    for (location, field) in [
        ("dos partition 3", "\"start\""),
        ("logical partition 5", "\"sectors\""),
        (
            &format!("EBR at byte {}", p2.0) as &str,
            "\"next EBR start\"",
        ),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(location) && l.contains(field))
            .unwrap_or_else(|| panic!("no warning for {location} {field}:\n{stderr}"));
        assert!(line.contains("value=4294967295"), "{line}");
    }
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

/// An md 1.x superblock (what `mdadm --create --metadata=1.x` writes) for a
/// member of `size` bytes whose superblock sits at `sb_off` bytes, with a
/// valid checksum so that blkid recognises it.
fn md1_superblock(size: u64, sb_off: u64) -> Vec<u8> {
    let mut sb = vec![0u8; 1024];
    let put32 =
        |sb: &mut Vec<u8>, at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |sb: &mut Vec<u8>, at: usize, v: u64| sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut sb, 0, 0xa92b_4efc);
    put32(&mut sb, 4, 1); // major version
    sb[16..32].copy_from_slice(&[7u8; 16]); // set uuid
    sb[32..40].copy_from_slice(b"host:md0");
    put32(&mut sb, 72, 1); // raid1
    put64(&mut sb, 80, size / 512 - 2048);
    put32(&mut sb, 92, 2); // raid disks
    put64(&mut sb, 128, 2048); // data offset
    put64(&mut sb, 136, size / 512 - 2048);
    put64(&mut sb, 144, sb_off / 512); // super offset
    sb[168..184].copy_from_slice(&[9u8; 16]); // device uuid
    put64(&mut sb, 200, 1); // events
    put32(&mut sb, 220, 2); // max_dev
    sb[258] = 1; // dev_roles[1] = 1
    let mut sum: u64 = 0;
    for w in sb[..256 + 4].chunks_exact(4) {
        sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    put32(&mut sb, 216, csum);
    sb
}

/// An md 0.90 superblock (64 KiB-aligned, 64 KiB before the member's end).
fn md090_superblock(size: u64) -> Vec<u8> {
    let mut sb = vec![0u8; 4096];
    let words: [u32; 11] = [
        0xa92b_4efc,
        0,
        90,
        0,
        0,
        0x1122_3344,
        1_700_000_000,
        1,
        (size / 1024 - 64) as u32,
        2,
        2,
    ];
    for (i, w) in words.iter().enumerate() {
        sb[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    sb[52..56].copy_from_slice(&0x5566_7788u32.to_le_bytes());
    sb
}

#[test]
fn metadata_wipe_md_members_in_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("md.img");
    sparse(&image, 256 * MIB);
    sh(&format!(
        "printf 'label: gpt\\nsize=40MiB, type=R\\nsize=40MiB, type=R\\nsize=40MiB, type=R\\nsize=40MiB, type=R\\n' | sfdisk -q '{}'",
        image.display()
    ));
    let parts = partitions(&image);
    let size = parts[0].1;
    // 1.2 at 4 KiB, 1.1 at 0, 1.0 at the end - 8 KiB (4 KiB-aligned), 0.90.
    let v10 = ((size / 512 - 16) & !7) * 512;
    write_at(&image, parts[0].0 + 4096, &md1_superblock(size, 4096));
    write_at(&image, parts[1].0, &md1_superblock(size, 0));
    write_at(&image, parts[2].0 + v10, &md1_superblock(size, v10));
    write_at(
        &image,
        parts[3].0 + (size & !0xffff) - 0x10000,
        &md090_superblock(size),
    );
    for (i, version) in ["1.2", "1.1", "1.0", "0.90.0"].iter().enumerate() {
        let found = blkid_at(&image, parts[i].0, parts[i].1).unwrap_or_default();
        assert!(
            found.contains("linux_raid_member")
                && found.contains(&format!("VERSION=\"{version}\"")),
            "fixture {version}: {found}"
        );
    }
    let (ok, report, _) = wipe(&["--mode", "metadata", "--device", image.to_str().unwrap()]);
    let d = only(&report);
    assert!(ok, "{d:#?}");
    let raid = d
        .signatures
        .iter()
        .filter(|s| s.name == "linux_raid_member")
        .count();
    assert_eq!(raid, 4, "{:?}", d.signatures);
    assert_clean(&image, &parts);
}
