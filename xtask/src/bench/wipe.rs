//! `cargo xtask bench wipe`: `ingot-agent wipe` against the machine's own
//! tools on the same loop device in the same run.
//!
//! - **Overwrite**: `ingot-agent wipe --method overwrite --passes 1` (one
//!   pseudo-random pass, one zero pass, O_DIRECT) against
//!   `dd if=/dev/zero bs=4M oflag=direct`. Each pass is compared with dd's
//!   single pass (target: at least 0.95 of dd's rate).
//! - **Metadata**: `ingot-agent wipe --mode metadata` against `wipefs -a` on a
//!   GPT disk with ext4, vfat and swap partitions, rebuilt before each run
//!   (target: under 1 s).
//! - **Discard path**: `ingot-agent wipe` (secure mode picks BLKDISCARD +
//!   BLKZEROOUT on a loop device, sample-verified) against `blkdiscard` and
//!   `blkdiscard -z`, for reference.
//!
//! A 4 GiB sparse backing file is attached with `--direct-io=on`. Rounds are
//! interleaved and each figure is the median. The table is printed and written
//! to `target/bench/wipe.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::median;
use crate::util::{self, LoopDevice};

const SIZE: u64 = 4 << 30;
const ROUNDS: usize = 5;

/// Runs a command, returns its wall time; fails unless it exits 0.
fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    util::announce(cmd);
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", util::display(cmd)))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}\n{}",
            util::display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("  {secs:.3} s");
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The numbers of a `"pass_seconds": [a, b]` array in the agent's JSON report.
fn pass_seconds(json: &str) -> Result<Vec<f64>> {
    let key = "\"pass_seconds\"";
    let start = json.find(key).context("no pass_seconds in the report")? + key.len();
    let rest = &json[start..];
    let open = rest.find('[').context("pass_seconds is not an array")?;
    let close = rest.find(']').context("pass_seconds is not an array")?;
    rest[open + 1..close]
        .split(',')
        .map(|s| s.trim().parse::<f64>().context("pass_seconds entry"))
        .collect()
}

fn check_status(json: &str, method: &str) -> Result<()> {
    if !json.contains("\"status\": \"verified\"")
        || !json.contains(&format!("\"method\": \"{method}\""))
    {
        bail!("the agent did not report a verified {method} wipe:\n{json}");
    }
    Ok(())
}

/// Lays out a GPT disk with ext4, vfat and swap on `dev` (swap made in a
/// scratch file in `work` and copied in: there are no partition nodes).
fn make_layout(dev: &Path, work: &Path) -> Result<()> {
    let d = dev.display();
    let swap = work.join("swap.img");
    let w = swap.display();
    let script = format!(
        "printf 'label: gpt\\nsize=512MiB, type=L\\nsize=256MiB, type=U\\nsize=256MiB, type=S\\n' | sfdisk -q {d} && \
         mkfs.ext4 -q -F -E offset=1048576 {d} 524288k && \
         mkfs.vfat -F 32 --offset 1050624 {d} 262144 >/dev/null && \
         rm -f '{w}' && truncate -s 256M '{w}' && mkswap '{w}' >/dev/null 2>&1 && \
         dd if='{w}' of={d} bs=1M seek=769 conv=notrunc,sparse status=none && rm -f '{w}'"
    );
    util::output(Command::new("sh").arg("-c").arg(&script))?;
    let found = util::output(Command::new("wipefs").arg("--no-act").arg(dev))?;
    if !found.contains("gpt") {
        bail!("layout not created on {d}: {found}");
    }
    Ok(())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// Runs the benchmark.
pub fn run() -> Result<()> {
    util::require_root("bench wipe")?;
    let agent = util::build_agent()?;
    let work = util::target_dir().join("bench").join("wipe");
    std::fs::create_dir_all(&work)?;
    let backing = work.join("disk.img");
    util::sparse_file(&backing, SIZE)?;
    let lo = LoopDevice::attach(&backing)?;
    let dev = lo.path.clone();
    let dev_s = dev.display().to_string();
    let ow_backing = work.join("overwrite.img");
    util::sparse_file(&ow_backing, SIZE)?;
    let ow_lo = LoopDevice::attach(&ow_backing)?;
    let ow_s = ow_lo.path.display().to_string();
    println!("writing {ow_s} once so that every overwrite finds allocated blocks");
    timed(Command::new("dd").args([
        "if=/dev/zero",
        &format!("of={ow_s}"),
        "bs=4M",
        &format!("count={}", SIZE >> 22),
        "oflag=direct",
        "status=none",
    ]))?;

    let mut dd = Vec::new();
    let mut rnd = Vec::new();
    let mut zero = Vec::new();
    let mut ow_total = Vec::new();
    let mut meta = Vec::new();
    let mut meta_report = Vec::new();
    let mut wipefs = Vec::new();
    let mut discard = Vec::new();
    let mut blkdiscard = Vec::new();
    let mut blkdiscard_z = Vec::new();

    for round in 1..=ROUNDS {
        println!("== round {round}/{ROUNDS}");
        // Overwrite, on its own device whose backing file was written once
        // (writing into holes or unwritten extents costs allocation, which
        // would favour whichever command runs second); alternate the order.
        let dd_first = round % 2 == 1;
        for which in if dd_first { [0, 1] } else { [1, 0] } {
            if which == 0 {
                let (t, _) = timed(Command::new("dd").args([
                    "if=/dev/zero",
                    &format!("of={ow_s}"),
                    "bs=4M",
                    &format!("count={}", SIZE >> 22),
                    "oflag=direct",
                    "status=none",
                ]))?;
                dd.push(t);
            } else {
                let (t, json) = timed(
                    Command::new(&agent)
                        .args([
                            "--log-level",
                            "warn",
                            "wipe",
                            "--json",
                            "--allow-overwrite-fallback",
                        ])
                        .args(["--method", "overwrite", "--passes", "1", "--device", &ow_s]),
                )?;
                check_status(&json, "overwrite")?;
                let passes = pass_seconds(&json)?;
                let [r, z] = passes.as_slice() else {
                    bail!("expected two passes, got {passes:?}");
                };
                rnd.push(*r);
                zero.push(*z);
                ow_total.push(t);
            }
        }

        // Metadata.
        make_layout(&dev, &work)?;
        let (t, _) = timed(Command::new("wipefs").args(["-a", "-q", &dev_s]))?;
        wipefs.push(t);
        make_layout(&dev, &work)?;
        let (t, json) = timed(
            Command::new(&agent)
                .args([
                    "--log-level",
                    "warn",
                    "wipe",
                    "--json",
                    "--mode",
                    "metadata",
                ])
                .args(["--device", &dev_s]),
        )?;
        check_status(&json, "metadata")?;
        if !(json.contains("\"ext4\"") && json.contains("\"vfat\"") && json.contains("\"swap\"")) {
            bail!("metadata wipe did not find ext4, vfat and swap:\n{json}");
        }
        meta.push(t);
        meta_report.push(util::json_number(&json, "seconds").unwrap_or(f64::NAN));

        // Discard path.
        let (t, _) = timed(Command::new("blkdiscard").arg(&dev_s))?;
        blkdiscard.push(t);
        let (t, _) = timed(Command::new("blkdiscard").args(["-z", &dev_s]))?;
        blkdiscard_z.push(t);
        let (t, json) = timed(Command::new(&agent).args([
            "--log-level",
            "warn",
            "wipe",
            "--json",
            "--device",
            &dev_s,
        ]))?;
        check_status(&json, "discard_zero_out")?;
        discard.push(t);
    }
    drop(lo);
    drop(ow_lo);
    std::fs::remove_file(&backing).ok();
    std::fs::remove_file(&ow_backing).ok();

    let gb = SIZE as f64 / 1e9;
    let (dd_m, r_m, z_m, ow_m) = (median(&dd), median(&rnd), median(&zero), median(&ow_total));
    let mut md = String::new();
    writeln!(
        md,
        "4 GiB loop devices (`--direct-io=on`; the overwrite device's backing file fully written beforehand), {ROUNDS} interleaved rounds, medians; static musl agent."
    )?;
    writeln!(md)?;
    writeln!(md, "| what | median | rate | ratio |")?;
    writeln!(md, "|---|---|---|---|")?;
    writeln!(
        md,
        "| `dd if=/dev/zero bs=4M oflag=direct` | {dd_m:.2} s | {:.2} GB/s | 1.00 |",
        gb / dd_m
    )?;
    writeln!(
        md,
        "| overwrite, random pass | {r_m:.2} s | {:.2} GB/s | {:.2} of dd |",
        gb / r_m,
        ratio(dd_m, r_m)
    )?;
    writeln!(
        md,
        "| overwrite, zero pass (+ fsync) | {z_m:.2} s | {:.2} GB/s | {:.2} of dd |",
        gb / z_m,
        ratio(dd_m, z_m)
    )?;
    writeln!(
        md,
        "| `wipe --method overwrite --passes 1` (2 passes + samples, whole process) | {ow_m:.2} s | {:.2} GB/s written | {:.2} of dd |",
        2.0 * gb / ow_m,
        ratio(2.0 * dd_m, ow_m)
    )?;
    writeln!(
        md,
        "| `wipefs -a` (GPT, PMBR) | {:.3} s | | |",
        median(&wipefs)
    )?;
    writeln!(
        md,
        "| `wipe --mode metadata` (GPT, PMBR, ext4, vfat, swap; whole process) | {:.3} s | | {:.2}× wipefs; report says {:.3} s |",
        median(&meta),
        ratio(median(&meta), median(&wipefs)),
        median(&meta_report)
    )?;
    writeln!(md, "| `blkdiscard` | {:.3} s | | |", median(&blkdiscard))?;
    writeln!(
        md,
        "| `blkdiscard -z` | {:.3} s | | |",
        median(&blkdiscard_z)
    )?;
    writeln!(
        md,
        "| `wipe` (secure: discard + zero-out + sample verify; whole process) | {:.3} s | | |",
        median(&discard)
    )?;
    writeln!(md)?;
    let ok_ow = ratio(dd_m, r_m) >= 0.95 && ratio(dd_m, z_m) >= 0.95;
    let ok_meta = median(&meta) < 1.0;
    writeln!(
        md,
        "Targets: overwrite ≥ 0.95 of dd per pass: {}; metadata wipe < 1 s: {}.",
        if ok_ow { "met" } else { "NOT met" },
        if ok_meta { "met" } else { "NOT met" }
    )?;
    println!("\n{md}");
    let out = util::target_dir().join("bench").join("wipe.md");
    std::fs::write(&out, &md)?;
    println!("written to {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pass_seconds() {
        let json = "{\"passes\": 1,\n \"pass_seconds\": [\n 1.5,\n 2.25\n ],\n \"x\": 1}";
        assert_eq!(pass_seconds(json).unwrap(), vec![1.5, 2.25]);
        assert!(pass_seconds("{}").is_err());
    }
}
