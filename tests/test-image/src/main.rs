//! `ingot-test-image`: builds the lab's bootable test disk image and prints
//! a JSON report (docs/test-image.md).

use std::path::PathBuf;

use clap::Parser;
use ingot_test_image::{Arch, Firmware, ImageFormat, TestImageOptions};

/// Build a bootable test disk image: a kernel and an initramfs whose /init is
/// the given static program (ingot-testimage-init), with the named kernel
/// modules; booted by syslinux on a FAT partition (BIOS) or, with
/// --firmware uefi, as a unified kernel image on a GPT disk's ESP (the only
/// choice with --arch aarch64).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The kernel (vmlinuz-<version>).
    #[arg(long)]
    kernel: PathBuf,
    /// lib/modules/<version>, or a directory holding it (an unpacked kernel package).
    #[arg(long)]
    modules: PathBuf,
    /// The static init binary.
    #[arg(long)]
    init: PathBuf,
    /// The image file to write.
    #[arg(long)]
    output: PathBuf,
    /// Disk size in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// raw or qcow2.
    #[arg(long, default_value = "raw")]
    format: String,
    /// bios (DOS table, syslinux) or uefi (GPT, ESP with EFI/BOOT/BOOTX64.EFI,
    /// or BOOTAA64.EFI for aarch64).
    #[arg(long, default_value = "bios")]
    firmware: String,
    /// x86_64 or aarch64 (UEFI only: systemd's linuxaa64.efi.stub,
    /// console=ttyAMA0; the kernel, modules and init must be arm64).
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// A module to carry (repeatable; replaces the default list:
    /// virtio_pci virtio_blk virtio_scsi sd_mod sr_mod nvme ahci isofs virtio_net).
    #[arg(long = "module")]
    module: Vec<String>,
    /// Extra kernel arguments after the console (console=ttyS0,115200, or
    /// console=ttyAMA0 for aarch64).
    #[arg(long, default_value = "")]
    append: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut opts = TestImageOptions::new(cli.kernel, cli.modules, cli.init, cli.output);
    opts.size_mib = cli.size_mib;
    opts.format = match cli.format.as_str() {
        "raw" => ImageFormat::Raw,
        "qcow2" => ImageFormat::Qcow2,
        other => anyhow::bail!("--format {other}: expected raw or qcow2"),
    };
    opts.firmware = match cli.firmware.as_str() {
        "bios" => Firmware::Bios,
        "uefi" => Firmware::Uefi,
        other => anyhow::bail!("--firmware {other}: expected bios or uefi"),
    };
    opts.arch = match cli.arch.as_str() {
        "x86_64" | "amd64" => Arch::X86_64,
        "aarch64" | "arm64" => Arch::Aarch64,
        other => anyhow::bail!("--arch {other}: expected x86_64 or aarch64"),
    };
    if !cli.module.is_empty() {
        opts.module_names = cli.module;
    }
    opts.append = cli.append;
    opts.mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("SOURCE_DATE_EPOCH={v}: {e}"))?,
        Err(_) => 0,
    };
    let report = ingot_test_image::build(&opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
