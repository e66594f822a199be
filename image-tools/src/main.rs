//! `ingot-image`: tools for people who build images.

use clap::{Parser, Subcommand};

/// Inspect images.
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { image } => inspect(&image),
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
