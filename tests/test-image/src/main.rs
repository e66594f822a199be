//! `ingot-test-image`: builds the lab's bootable test disk image and prints
//! a JSON report (docs/test-image.md).

use std::path::PathBuf;

use clap::Parser;
use ingot_test_image::{ImageFormat, TestImageOptions};

/// Build a BIOS-bootable test disk image: syslinux on a FAT partition, a
/// kernel, and an initramfs whose /init is the given static program
/// (ingot-testimage-init), with the named kernel modules.
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
    /// A module to carry (repeatable; replaces the default list:
    /// virtio_pci virtio_blk virtio_scsi sd_mod sr_mod nvme ahci isofs).
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
