//! `ingot-agent write-image`: stream an image onto a disk, verified.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ingot_agent::ca::TrustedCa;
use ingot_agent::ptable;
use ingot_image_tools::checksum::Checksum;
use ingot_image_tools::format::FormatChoice;
use ingot_image_tools::progress::{Progress, spawn_reporter};
use ingot_image_tools::source::{SourceOptions, TlsOptions};
use ingot_image_tools::{WriteOptions, write_image};

/// Arguments of `write-image`.
#[derive(Debug, Args)]
pub struct WriteImageArgs {
    /// Image location: an http(s) URL or a local path.
    #[arg(long)]
    source: String,
    /// Block device or file to write.
    #[arg(long)]
    device: PathBuf,
    /// Expected checksum of the downloaded bytes: sha256:<hex> or sha512:<hex>
    /// (md5:<hex> only with --allow-md5).
    #[arg(long)]
    checksum: Option<Checksum>,
    /// Accept an md5 checksum.
    #[arg(long)]
    allow_md5: bool,
    /// Image format: auto (by magic bytes), raw, qcow2, zstd, gzip or xz.
    #[arg(long, default_value = "auto")]
    format: FormatChoice,
    /// Show progress on stderr (a bar on a terminal, log lines otherwise).
    #[arg(long)]
    progress: bool,
    /// The target already reads as zeros (e.g. freshly discarded): skip zero runs.
    #[arg(long)]
    target_is_zeroed: bool,
    /// Trust this PEM CA bundle for https sources.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (labs only).
    #[arg(long)]
    insecure: bool,
    /// Seconds without data before a connection counts as stalled.
    #[arg(long, default_value_t = 30)]
    read_timeout: u64,
    /// Attempts to resume a failed download before giving up.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Most memory the xz decoder may use: MiB, or with a unit (`512M`,
    /// `2G`, `1536MiB`). An xz image whose dictionary needs more is refused.
    /// Default: a quarter of the RAM, at least 128 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_memlimit)]
    xz_memlimit: Option<u64>,
}

/// Parses a memory size: a whole number of MiB, or one with a K, M or G unit
/// (`KiB`/`MiB`/`GiB` and `KB`/`MB`/`GB` mean the same, binary, as in xz).
fn parse_memlimit(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512M, 2G, or MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "k" | "kb" | "kib" => 10,
        "" | "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown unit {other:?} in {s:?} (K, M or G)")),
    };
    match number.checked_mul(1 << shift) {
        Some(0) => Err("the xz memory limit must be more than zero".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{s:?} is too large")),
    }
}

/// Runs the command; prints the JSON summary on stdout.
pub fn run(args: WriteImageArgs) -> anyhow::Result<()> {
    let mut opts = WriteOptions::new(args.source, args.device);
    opts.checksum = args.checksum;
    opts.allow_md5 = args.allow_md5;
    opts.format = args.format;
    opts.target_is_zeroed = args.target_is_zeroed;
    opts.xz_memlimit = args.xz_memlimit;
    // Checked here, so a bad bundle is refused before the target is opened.
    let ca_pem = match &args.ca_file {
        Some(p) => TrustedCa::from_pem_file(&format!("--ca-file {}", p.display()), p)?.pem(),
        None => None,
    };
    opts.source_options = SourceOptions {
        retry: ingot_image_tools::source::RetryPolicy {
            max_attempts: args.retries.max(1),
            read_timeout: Duration::from_secs(args.read_timeout.max(1)),
            ..Default::default()
        },
        tls: TlsOptions {
            ca_pem,
            insecure: args.insecure,
        },
    };
    let progress = Progress::new();
    let reporter = args
        .progress
        .then(|| spawn_reporter(progress.clone(), Duration::from_secs(5)));
    let result = write_image(&opts, &progress);
    progress
        .finished
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = reporter {
        r.join().ok();
    }
    let summary = result?;
    // On a whole disk (or a disk image file), a GPT image smaller than the
    // disk gets its backup table moved to the disk's end, as the agent's
    // deploy does. A partition is not a disk: its contents are left alone.
    if !ptable::is_partition(&opts.device) {
        ptable::fit::fit_gpt_to_disk(&opts.device)?;
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_memlimit;

    #[test]
    fn memory_limits_parse_with_and_without_units() {
        assert_eq!(parse_memlimit("64"), Ok(64 << 20));
        assert_eq!(parse_memlimit("512M"), Ok(512 << 20));
        assert_eq!(parse_memlimit("1536MiB"), Ok(1536 << 20));
        assert_eq!(parse_memlimit("2G"), Ok(2 << 30));
        assert_eq!(parse_memlimit("2 gib"), Ok(2 << 30));
        assert_eq!(parse_memlimit("65536k"), Ok(64 << 20));
        assert!(parse_memlimit("0").is_err());
        assert!(parse_memlimit("-1").is_err());
        assert!(parse_memlimit("1T").is_err());
        assert!(parse_memlimit("G").is_err());
        assert!(
            parse_memlimit("99999999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }
}
