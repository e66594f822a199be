//! `ingot-image`: tools for people who build images.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ingot_image_tools::checksum::{self, Algorithm};
use ingot_image_tools::convert::{self, ConvertOptions};
use ingot_image_tools::format::{Format, FormatChoice};
use ingot_image_tools::source::SourceOptions;

/// Inspect, convert and checksum disk images, with the agent's own readers.
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
        image: PathBuf,
    },
    /// Convert an image (raw, qcow2, zstd, gzip, xz; detected by magic bytes)
    /// into raw, qcow2, zstd, gzip or xz, streamed. Prints a JSON report.
    Convert {
        /// The output format: raw, qcow2, zstd, gz (gzip) or xz.
        #[arg(short = 'O', long = "output-format")]
        output_format: Format,
        /// The input format: auto (by magic bytes) or one to insist on.
        #[arg(short = 'f', long = "format", default_value = "auto")]
        input_format: FormatChoice,
        /// Compression level: zstd 1-19 (default 3), gzip 1-9 (6), xz 0-9 (6).
        #[arg(long)]
        level: Option<u32>,
        /// Cluster size of a qcow2 output in bytes (a power of two, 512 to 2 MiB).
        #[arg(long, default_value_t = 65536)]
        cluster_size: u64,
        /// The input: a path, or an http(s) URL.
        source: String,
        /// The file to write (replaced if it exists).
        output: PathBuf,
    },
    /// Print the digest the coordinator and the agent check an image file
    /// against (`image_checksum`, `image_os_hash_value`): of the file as it
    /// is downloaded, not of the disk it decodes to.
    Checksum {
        /// sha256, sha512 or md5.
        #[arg(long, default_value = "sha256")]
        algo: String,
        /// Print JSON (with the instance_info fields) instead of `<algo>:<hex>`.
        #[arg(long)]
        json: bool,
        /// The image file: a path, or an http(s) URL.
        source: String,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingot-image: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { image } => inspect(&image),
        Command::Convert {
            output_format,
            input_format,
            level,
            cluster_size,
            source,
            output,
        } => {
            if !cluster_size.is_power_of_two() {
                anyhow::bail!("--cluster-size {cluster_size} is not a power of two");
            }
            let mut opts = ConvertOptions::new(source, output, output_format);
            opts.input_format = input_format;
            opts.level = level;
            opts.qcow2_cluster_bits = cluster_size.trailing_zeros();
            let report = convert::convert(&opts)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Checksum { algo, json, source } => {
            let algorithm = Algorithm::from_name(&algo)?;
            let d = checksum::digest_source(&source, algorithm, &SourceOptions::default())?;
            if json {
                let c = &d.checksum;
                let out = serde_json::json!({
                    "source": source,
                    "bytes": d.bytes,
                    "algorithm": c.algorithm.name(),
                    "digest": c.hex,
                    "checksum": c.to_string(),
                    "instance_info": {
                        "image_os_hash_algo": c.algorithm.name(),
                        "image_os_hash_value": c.hex,
                        "image_checksum": c.hex,
                    },
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{}", d.checksum);
            }
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
