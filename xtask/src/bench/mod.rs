//! `cargo xtask bench <name>`: benchmarks that time Ingot against the machine's
//! own limits, measured in the same run.

pub mod api;
pub mod api_ironic;
pub mod convert;
pub mod fleet;
pub mod ha;
pub mod power_sync;
pub mod timing;
pub mod wipe;
pub mod write_image;

use anyhow::{Result, bail};

/// The benchmarks, for the usage text.
pub const NAMES: &str = "write-image | wipe | power-sync | convert | ha | api | fleet";

/// Runs the benchmark named by the first argument.
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("write-image") => write_image::run(&args[1..]),
        Some("wipe") => wipe::run(),
        Some("power-sync") => power_sync::run(&args[1..]),
        Some("convert") => convert::run(&args[1..]),
        Some("ha") => ha::run(&args[1..]),
        Some("api") => api::run(&args[1..]),
        Some("fleet") => fleet::run(&args[1..]),
        Some(other) => bail!("unknown benchmark {other:?}; expected one of: {NAMES}"),
        None => bail!("which benchmark? cargo xtask bench <{NAMES}>"),
    }
}

/// Builds the release coordinator and the simulated BMC fleet, makes an
/// empty scratch directory `ingot-bench-<name>-<pid>` and returns the release
/// directory and the scratch directory.
pub fn coordinator_and_fleet(name: &str) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    println!("\n==> building the coordinator and the BMC fleet (release)");
    crate::util::run(crate::util::cargo().args([
        "build",
        "--release",
        "-p",
        "ingot-coordinator",
        "-p",
        "ingot-bmc-fleet",
    ]))?;
    let release = crate::util::target_dir().join("release");
    let dir = std::env::temp_dir().join(format!("ingot-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok((release, dir))
}

/// `[--rounds N]` of a benchmark named `name`: N (at least 1), else `default`.
pub fn parse_rounds(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args {
        [] => Ok(default),
        [flag, n] if flag == "--rounds" => {
            let n: usize = n
                .parse()
                .map_err(|e| anyhow::anyhow!("--rounds takes a number: {e}"))?;
            if n == 0 {
                bail!("--rounds must be at least 1");
            }
            Ok(n)
        }
        _ => bail!("usage: cargo xtask bench {name} [--rounds N]"),
    }
}

/// The median of some samples (the mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
