//! `ingot-image`: tools for people who build images.

use clap::{Parser, Subcommand};

/// Inspect images; build the test image.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an image's format (by magic bytes) and, for qcow2, its header.
    Inspect {
        /// Path of the image.
        image: std::path::PathBuf,
    },
    /// Build a BIOS-bootable test disk image: syslinux on a FAT partition,
    /// a kernel, and an initramfs whose /init is the given static program
    /// (ingot-testimage-init), with the named kernel modules.
    TestImage {
        /// The kernel (vmlinuz-<version>).
        #[arg(long)]
        kernel: std::path::PathBuf,
        /// lib/modules/<version>, or a directory holding it (an unpacked kernel package).
        #[arg(long)]
        modules: std::path::PathBuf,
        /// The static init binary.
        #[arg(long)]
        init: std::path::PathBuf,
        /// The image file to write.
        #[arg(long)]
        output: std::path::PathBuf,
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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { image } => inspect(&image),
        Command::TestImage {
            kernel,
            modules,
            init,
            output,
            size_mib,
            format,
            module,
            append,
        } => {
            use ingot_image_tools::testimage::{ImageFormat, TestImageOptions};
            let mut opts = TestImageOptions::new(kernel, modules, init, output);
            opts.size_mib = size_mib;
            opts.format = match format.as_str() {
                "raw" => ImageFormat::Raw,
                "qcow2" => ImageFormat::Qcow2,
                other => anyhow::bail!("--format {other}: expected raw or qcow2"),
            };
            if !module.is_empty() {
                opts.module_names = module;
            }
            opts.append = append;
            opts.mtime = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("SOURCE_DATE_EPOCH={v}: {e}"))?,
                Err(_) => 0,
            };
            let report = ingot_image_tools::testimage::build(&opts)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn inspect(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    head.truncate(n);
    let len = f.metadata()?.len();
    let detected = ingot_image_tools::format::detect(&head);
    let mut out = serde_json::json!({
        "path": path.display().to_string(),
        "file_bytes": len,
        "format": match detected {
            ingot_image_tools::format::Detected::Supported(f) => f.name(),
            ingot_image_tools::format::Detected::Unsupported(n) => n,
        },
    });
    if detected
        == ingot_image_tools::format::Detected::Supported(ingot_image_tools::format::Format::Qcow2)
    {
        let h = ingot_image_tools::qcow2::parse_header(&head)?;
        out["qcow2"] = serde_json::json!({
            "version": h.version,
            "cluster_size": h.cluster_size(),
            "virtual_size": h.size,
            "compression": format!("{:?}", h.compression).to_lowercase(),
        });
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
