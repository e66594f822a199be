//! `ingot-agent wipe`: erase named devices (metadata or secure), verify, report.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ingot_agent::wipe::{WipeOptions, wipe_devices};
use ingot_proto::wipe::{VerifyMode, WipeMethod, WipeMode, WipeReport};

/// Wipe mode on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Partition tables and filesystem/RAID/LVM/swap/LUKS signatures only.
    Metadata,
    /// All data, by the strongest method the device supports.
    Secure,
}

/// Verification on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum VerifyArg {
    /// Pattern at sample locations (secure) or a re-probe (metadata).
    Sample,
    /// Read the whole device back (secure mode).
    Full,
    /// No verification: the result is "unverified" and the exit status non-zero.
    None,
}

/// Arguments of `wipe`.
#[derive(Debug, Args)]
pub struct WipeArgs {
    /// Device (or disk image file) to wipe; repeat for several, wiped in parallel.
    #[arg(long = "device", required = true, num_args = 1)]
    devices: Vec<PathBuf>,
    /// What to erase.
    #[arg(long, value_enum, default_value = "secure")]
    mode: ModeArg,
    /// In secure mode, overwrite the device when nothing better is supported.
    #[arg(long)]
    allow_overwrite_fallback: bool,
    /// Pseudo-random passes of an overwrite, before the final zero pass.
    #[arg(long, default_value_t = 1)]
    passes: u32,
    /// How to check that the erase took effect.
    #[arg(long, value_enum, default_value = "sample")]
    verify: VerifyArg,
    /// Print the full report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Secure mode: use only this method, e.g. `overwrite` or `discard_zero_out`
    /// (for tests and benchmarks; the others are reported as skipped).
    #[arg(long, value_parser = parse_method)]
    method: Option<WipeMethod>,
}

fn parse_method(s: &str) -> Result<WipeMethod, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown method {s:?}"))
}

/// Runs the command. Exits non-zero unless every device is verified.
pub fn run(args: WipeArgs) -> anyhow::Result<()> {
    let opts = WipeOptions {
        mode: match args.mode {
            ModeArg::Metadata => WipeMode::Metadata,
            ModeArg::Secure => WipeMode::Secure,
        },
        verify: match args.verify {
            VerifyArg::Sample => VerifyMode::Sample,
            VerifyArg::Full => VerifyMode::Full,
            VerifyArg::None => VerifyMode::None,
        },
        allow_overwrite: args.allow_overwrite_fallback,
        passes: args.passes,
        only: args.method,
        progress: None,
    };
    let report = wipe_devices(&args.devices, &opts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    let failed = report
        .devices
        .iter()
        .filter(|d| d.status != ingot_proto::wipe::WipeStatus::Verified)
        .count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} devices not wiped and verified",
            report.devices.len()
        );
    }
    Ok(())
}

fn print_summary(report: &WipeReport) {
    for d in &report.devices {
        let method = d
            .method
            .map(|m| format!("{m:?}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{}: {:?} method={} category={:?} bytes={} seconds={:.3}",
            d.path, d.status, method, d.nist_category, d.bytes, d.seconds
        );
        for s in &d.skipped {
            println!("  skipped {:?}: {}", s.method, s.reason);
        }
        if let Some(v) = &d.verification {
            println!(
                "  verify {:?}: passed={} samples={} survived={} bytes_read={}{}",
                v.mode,
                v.passed,
                v.samples,
                v.samples_survived,
                v.bytes_read,
                v.detail
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            );
        }
        if let Some(e) = &d.error {
            println!("  error: {e}");
        }
    }
}
