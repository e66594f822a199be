//! `ingot-test-image`: builds the lab's bootable test disk image and prints
//! a JSON report (docs/test-image.md).

use std::path::PathBuf;

use clap::Parser;
use ingot_test_image::{Firmware, ImageFormat, TestImageOptions};

/// Build a bootable test disk image: a kernel and an initramfs whose /init is
/// the given static program (ingot-testimage-init), with the named kernel
/// modules; booted by syslinux on a FAT partition (BIOS) or, with
/// --firmware uefi, as a unified kernel image on a GPT disk's ESP.
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
    /// bios (DOS table, syslinux) or uefi (GPT, ESP with EFI/BOOT/BOOTX64.EFI).
    #[arg(long, default_value = "bios")]
    firmware: String,
    /// A module to carry (repeatable; replaces the default list:
    /// virtio_pci virtio_blk virtio_scsi sd_mod sr_mod nvme ahci isofs virtio_net).
    #[arg(long = "module")]
    module: Vec<String>,
    /// Extra kernel arguments after console=ttyS0,115200.
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
