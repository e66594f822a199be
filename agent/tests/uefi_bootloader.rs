//! `install_bootloader`'s UEFI path against real disks: a GPT disk on a loop
//! device whose FAT ESP (made by mkfs.vfat at an offset, filled with mtools)
//! holds only `EFI/debian/grubx64.efi`; a DOS disk image whose 0xEF
//! partition already has the fallback loader; disks the agent must refuse.
//! The kernel here makes no partition nodes, so the agent works on the whole
//! disk by offset, as it must on a freshly written disk.
//!
//! The boot entries go to a plain directory standing in for efivarfs: this
//! VM has no UEFI variables (no /sys/firmware/efi), so a real efivarfs
//! cannot be mounted. The file format is efivarfs's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, clippy::all)]
mod common;

use std::path::Path;
use std::process::Command;

use common::{LoopDev, privileged, sh};
use ingot_agent::uefi::efivars::{EfiVars, GLOBAL_GUID};
use ingot_agent::uefi::loadopt::{LoadOption, render_device_path};
use ingot_agent::uefi::{UefiError, install};

const ESP_GUID: &str = "0d2b7c8e-5a1f-4e0b-9c7d-3e6f1a2b4c5d";
const MIB: u64 = 1 << 20;

fn mtools(args: &[&str]) -> String {
    sh(Command::new(args[0])
        .args(&args[1..])
        .env("MTOOLS_SKIP_CHECK", "1"))
}

/// A FAT file system of `mib` MiB at `offset_sectors` of `target`.
fn mkfs_at(target: &Path, offset_sectors: u64, mib: u64) {
    sh(Command::new("mkfs.vfat")
        .arg("--offset")
        .arg(offset_sectors.to_string())
        .arg(target)
        .arg((mib * 1024).to_string()));
}

fn loader_bytes() -> Vec<u8> {
    // A stand-in PE file: "MZ" and a pattern long enough to span clusters.
    let mut b = b"MZ".to_vec();
    b.extend((0..300_000u32).map(|i| (i * 7 % 251) as u8));
    b
}

#[test]
fn gpt_loop_device_gets_fallback_loader_and_boot_entry() {
    if !privileged("gpt_loop_device_gets_fallback_loader_and_boot_entry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDev::new(dir.path(), "disk.img", 96 * MIB, false);
    let dev = disk.path.to_str().unwrap();
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:+32M", "-t", "1:EF00", "-u"])
        .arg(format!("1:{ESP_GUID}"))
        .args(["-n", "2:0:0", "-t", "2:8300"])
        .arg(dev));
    mkfs_at(&disk.path, 2048, 32);
    let img = format!("{dev}@@1M");
    let grub = dir.path().join("grubx64.efi");
    std::fs::write(&grub, loader_bytes()).unwrap();
    mtools(&["mmd", "-i", &img, "::/EFI", "::/EFI/debian"]);
    mtools(&[
        "mcopy",
        "-i",
        &img,
        grub.to_str().unwrap(),
        "::/EFI/debian/grubx64.efi",
    ]);
    sh(&mut Command::new("sync"));

    let vars_dir = dir.path().join("efivars");
    std::fs::create_dir(&vars_dir).unwrap();
    let vars = EfiVars::new(&vars_dir);
    let report = install(&disk.path, None, Some(&vars)).unwrap();
    assert_eq!(report.esp_partition, 1);
    assert_eq!(report.esp_offset, MIB);
    assert_eq!(
        report.copied_from.as_deref(),
        Some("EFI/debian/grubx64.efi")
    );
    assert_eq!(report.boot_entry.as_deref(), Some("Boot0000"));
    assert_eq!(report.boot_order, Some(vec!["0000".to_string()]));

    // mtools reads the copy back from the disk at the ESP's offset.
    let listing = mtools(&["mdir", "-i", &img, "-b", "::/EFI/BOOT"]);
    assert!(listing.contains("BOOTX64.EFI"), "{listing}");
    let out = Command::new("mtype")
        .args(["-i", &img, "::/EFI/BOOT/BOOTX64.EFI"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, loader_bytes());
    // The FAT is consistent for dosfstools' checker (which has no offset
    // option: the partition is copied out first).
    let whole = std::fs::read(&disk.backing).unwrap();
    let part = dir.path().join("esp.img");
    std::fs::write(&part, &whole[MIB as usize..33 * MIB as usize]).unwrap();
    sh(Command::new("fsck.vfat").arg("-n").arg(&part));
    // The entry: HD(1,GPT,<the ESP's GUID>,0x800,0x10000)/File(\EFI\BOOT\BOOTX64.EFI).
    let raw = std::fs::read(vars_dir.join(format!("Boot0000-{GLOBAL_GUID}"))).unwrap();
    assert_eq!(&raw[..4], &[7, 0, 0, 0]);
    let opt = LoadOption::decode(&raw[4..]).unwrap();
    assert_eq!(opt.description, "ingot");
    assert_eq!(opt.attributes, 1);
    assert_eq!(
        render_device_path(&opt.file_path),
        format!("HD(1,GPT,{ESP_GUID},0x800,0x10000)/File(\\EFI\\BOOT\\BOOTX64.EFI)")
    );

    // A second run finds the loader and reuses the entry.
    let again = install(&disk.path, None, Some(&vars)).unwrap();
    assert_eq!(again.copied_from, None);
    assert_eq!(again.boot_entry.as_deref(), Some("Boot0000"));
    assert!(!again.boot_entry_created);
}

/// Writes a DOS partition table with one partition of `kind` at 1 MiB.
fn dos_table(path: &Path, kind: &str, mib: u64) {
    let script = format!(
        "label: dos\nlabel-id: 0x494e474f\nstart=2048, size={}, type={kind}\n",
        mib * 2048
    );
    let mut child = Command::new("sfdisk")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn dos_image_with_fallback_loader_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 * MIB)
        .unwrap();
    dos_table(&img, "ef", 32);
    mkfs_at(&img, 2048, 32);
    let at = format!("{}@@1M", img.display());
    let boot = dir.path().join("BOOTX64.EFI");
    std::fs::write(&boot, b"MZ loader").unwrap();
    mtools(&["mmd", "-i", &at, "::/EFI", "::/EFI/BOOT"]);
    mtools(&[
        "mcopy",
        "-i",
        &at,
        boot.to_str().unwrap(),
        "::/EFI/BOOT/BOOTX64.EFI",
    ]);
    let vars_dir = dir.path().join("efivars");
    std::fs::create_dir(&vars_dir).unwrap();
    let vars = EfiVars::new(&vars_dir);
    let report = install(&img, None, Some(&vars)).unwrap();
    assert_eq!(report.copied_from, None);
    let raw = std::fs::read(vars_dir.join(format!("Boot0000-{GLOBAL_GUID}"))).unwrap();
    let opt = LoadOption::decode(&raw[4..]).unwrap();
    assert_eq!(
        render_device_path(&opt.file_path),
        "HD(1,MBR,0x494e474f,0x800,0x10000)/File(\\EFI\\BOOT\\BOOTX64.EFI)"
    );
    // No NVRAM (a BIOS-booted agent): the loader is checked, nothing else.
    let bios = install(&img, None, None).unwrap();
    assert_eq!(bios.boot_entry, None);
}

#[test]
fn disks_without_a_usable_esp_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A Linux partition only.
    let img = dir.path().join("linux.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    dos_table(&img, "83", 4);
    assert!(matches!(
        install(&img, None, None),
        Err(UefiError::NoEsp(_))
    ));

    // An ESP whose FAT holds two unrelated loaders and no fallback.
    let two = dir.path().join("two.img");
    std::fs::File::create(&two)
        .unwrap()
        .set_len(40 * MIB)
        .unwrap();
    dos_table(&two, "ef", 32);
    mkfs_at(&two, 2048, 32);
    let at = format!("{}@@1M", two.display());
    let f = dir.path().join("x.efi");
    std::fs::write(&f, b"MZ").unwrap();
    mtools(&["mmd", "-i", &at, "::/EFI", "::/EFI/a", "::/EFI/b"]);
    mtools(&["mcopy", "-i", &at, f.to_str().unwrap(), "::/EFI/a/one.efi"]);
    mtools(&["mcopy", "-i", &at, f.to_str().unwrap(), "::/EFI/b/two.efi"]);
    match install(&two, None, None) {
        Err(UefiError::AmbiguousLoader(list)) => {
            assert!(
                list.contains("EFI/a/one.efi") && list.contains("EFI/b/two.efi"),
                "{list}"
            )
        }
        other => panic!("expected an ambiguous loader, got {other:?}"),
    }

    // An ESP that is not a FAT file system (garbage where the boot sector is).
    let junk = dir.path().join("junk.img");
    std::fs::File::create(&junk)
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    dos_table(&junk, "ef", 4);
    assert!(matches!(
        install(&junk, None, None),
        Err(UefiError::Io { .. })
    ));
}
