//! `ingot-ramdisk`: builds the provisioning ramdisk.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ingot_initramfs::modules::Class;
use ingot_initramfs::{Arch, BuildOptions, Compression};

/// Builds Ingot's reproducible provisioning ramdisk.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ArchArg {
    /// x86-64 (also `amd64`, Debian's name).
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    /// 64-bit Arm (also `arm64`, Debian's name).
    #[value(alias = "arm64")]
    Aarch64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build vmlinuz, initramfs.img, manifest.json and boot.ipxe into --out.
    Build {
        /// The kernel image.
        #[arg(long)]
        kernel: PathBuf,
        /// The kernel's lib/modules/<version> directory.
        #[arg(long)]
        modules: PathBuf,
        /// A lib/firmware tree to take firmware from.
        #[arg(long)]
        firmware: Option<PathBuf>,
        /// The static agent binary (becomes /init).
        #[arg(long)]
        agent: PathBuf,
        #[arg(long, value_enum, default_value = "x86_64")]
        arch: ArchArg,
        #[arg(long, value_enum, default_value = "zstd")]
        compress: CompressArg,
        /// Compression level (zstd 1-22, gzip 1-9).
        #[arg(long, default_value_t = 19)]
        level: i32,
        /// Module classes (storage, network, bmc, bus), comma-separated.
        #[arg(long, default_value = "storage,network,bmc,bus", value_delimiter = ',')]
        classes: Vec<String>,
        /// Extra file to add, as <source>:<path in the ramdisk>. Repeatable.
        #[arg(long)]
        extra: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Download and unpack the current Debian kernel (apt-get download, dpkg-deb -x).
    FetchKernel {
        /// Use Debian's linux-image package (the only source today).
        #[arg(long, required = true)]
        debian: bool,
        /// Debian architecture name (`amd64`, `arm64`; `x86_64` and
        /// `aarch64` are taken too). A foreign one needs `dpkg --add-architecture`.
        #[arg(long, default_value = "amd64")]
        arch: String,
        /// Where to unpack.
        #[arg(long, default_value = "target/kernel")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Build {
            kernel,
            modules,
            firmware,
            agent,
            arch,
            compress,
            level,
            classes,
            extra,
            out,
        } => {
            let classes = classes
                .iter()
                .map(|c| {
                    Class::from_name(c.trim())
                        .with_context(|| format!("unknown module class {c:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let extra = extra
                .iter()
                .map(|e| match e.split_once(':') {
                    Some((src, dest)) if !src.is_empty() && !dest.is_empty() => {
                        Ok((PathBuf::from(src), dest.to_string()))
                    }
                    _ => bail!("--extra takes <source>:<dest>, got {e:?}"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => v
                    .trim()
                    .parse()
                    .context("SOURCE_DATE_EPOCH must be a number of seconds")?,
                Err(_) => 0,
            };
            let opts = BuildOptions {
                kernel,
                modules,
                firmware,
                agent,
                arch: match arch {
                    ArchArg::X86_64 => Arch::X86_64,
                    ArchArg::Aarch64 => Arch::Aarch64,
                },
                compress: match compress {
                    CompressArg::Zstd => Compression::Zstd,
                    CompressArg::Gzip => Compression::Gzip,
                    CompressArg::None => Compression::None,
                },
                level,
                classes,
                extra,
                mtime,
                out: out.clone(),
            };
            let m = ingot_initramfs::build(&opts)?;
            for (name, why) in &m.modules_left_out {
                eprintln!("left out: {name}: {why}");
            }
            if !m.firmware_missing.is_empty() {
                eprintln!(
                    "firmware referenced but not provided ({}): {}",
                    m.firmware_missing.len(),
                    if opts.firmware.is_none() {
                        "no --firmware given"
                    } else {
                        "not in --firmware"
                    }
                );
            }
            println!(
                "{}: {} modules, {} files, initramfs {:.1} MiB ({:.1} MiB uncompressed), kernel {:.1} MiB",
                out.display(),
                m.modules.len(),
                m.totals.files,
                m.totals.initramfs_bytes as f64 / 1048576.0,
                m.totals.cpio_bytes as f64 / 1048576.0,
                m.totals.kernel_bytes as f64 / 1048576.0,
            );
            Ok(())
        }
        Command::FetchKernel {
            debian: _,
            arch,
            out,
        } => {
            let arch = match arch.as_str() {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            };
            let k = ingot_initramfs::fetch::debian(&out, arch).map_err(anyhow::Error::msg)?;
            println!(
                "{{\"version\": {:?}, \"vmlinuz\": {:?}, \"modules\": {:?}}}",
                k.version,
                k.vmlinuz.display().to_string(),
                k.modules.display().to_string()
            );
            Ok(())
        }
    }
}
