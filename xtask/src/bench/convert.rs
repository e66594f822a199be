//! `cargo xtask bench convert`: `ingot-image convert` against `qemu-img
//! convert` on the same image in the same run, qcow2 → raw and raw → qcow2,
//! and `ingot-image checksum` against `sha256sum`.
//!
//! The image is a 1 GiB GPT disk with an ext4 root filled from `/usr/bin`,
//! `/usr/sbin`, `/usr/lib/gcc` and `/usr/share/locale` (about 0.6 GiB of
//! data, the rest zeros, a sparse file), and its `.qcow2` made by qemu-img,
//! built once and cached (`crate::disk_image`). `ingot-image` is the release
//! build. Every output goes to a fresh file on the same filesystem; inputs are
//! in the page cache. Rounds are interleaved, the order of the two tools
//! alternating, and each figure is the median. Afterwards the outputs are
//! compared: the two raw files with `cmp`, ingot's qcow2 with `qemu-img
//! check` and `qemu-img compare`. No root needed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::median;
use super::timing::{Sample, cpu_model, load_average, os, timed, warm};
use crate::disk_image::{self, Image, Spec};
use crate::util;

const IMAGE: Spec = Spec {
    stem: "convert",
    size: 1 << 30,
    esp: false,
    fill_from: &["/usr/bin", "/usr/sbin", "/usr/lib/gcc", "/usr/share/locale"],
    qcow2: true,
};
const DEFAULT_ROUNDS: usize = 5;
const MIB: f64 = (1u64 << 20) as f64;

/// A timed command and the file it writes.
struct Job {
    key: &'static str,
    label: &'static str,
    argv: Vec<OsString>,
    /// Removed before each run, so every run writes a new file.
    output: Option<PathBuf>,
    samples: Vec<Sample>,
}

impl Job {
    fn wall(&self) -> f64 {
        median(&self.samples.iter().map(|s| s.wall).collect::<Vec<_>>())
    }

    fn median_of(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(&self.samples.iter().map(f).collect::<Vec<_>>())
    }
}

fn parse_rounds(args: &[String]) -> Result<usize> {
    super::parse_rounds(args, "convert", DEFAULT_ROUNDS)
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let rounds = parse_rounds(args)?;
    crate::deps::ensure()?;
    println!("\n==> building ingot-image (release)");
    util::run(util::cargo().args([
        "build",
        "--release",
        "-p",
        "ingot-image-tools",
        "--bin",
        "ingot-image",
    ]))?;
    let bin = util::target_dir().join("release").join("ingot-image");
    let dir = util::target_dir().join("bench");
    let img = disk_image::build_cached(&dir.join("convert-image"), &IMAGE)?;
    let Some((qcow2, _, _)) = img.qcow2.clone() else {
        bail!("the image has no qcow2 variant");
    };
    let work = dir.join("convert");
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let report = measure(&bin, &img, &qcow2, &work, &logs, rounds);
    // The outputs (about 2.4 GiB) are not kept; the image is, for the next run.
    for name in ["qemu.raw", "ingot.raw", "qemu.qcow2", "ingot.qcow2"] {
        std::fs::remove_file(work.join(name)).ok();
    }
    let report = report?;
    println!("\n{report}");
    let out = dir.join("convert.md");
    std::fs::write(&out, &report)?;
    println!("(written to {})", out.display());
    Ok(())
}

fn jobs(bin: &Path, img: &Image, qcow2: &Path, work: &Path) -> Vec<Job> {
    let argv = |words: &[&str], paths: &[&Path]| -> Vec<OsString> {
        let mut v = os(words);
        v.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        v
    };
    let ingot = |words: &[&str], paths: &[&Path]| -> Vec<OsString> {
        let mut v = vec![bin.as_os_str().to_owned()];
        v.extend(argv(words, paths));
        v
    };
    let out = |name: &str| work.join(name);
    vec![
        Job {
            key: "q2r-qemu",
            label: "`qemu-img convert -f qcow2 -O raw`",
            argv: argv(
                &["qemu-img", "convert", "-f", "qcow2", "-O", "raw"],
                &[qcow2, &out("qemu.raw")],
            ),
            output: Some(out("qemu.raw")),
            samples: Vec::new(),
        },
        Job {
            key: "q2r-ingot",
            label: "**`ingot-image convert -O raw`** (qcow2 in)",
            argv: ingot(&["convert", "-O", "raw"], &[qcow2, &out("ingot.raw")]),
            output: Some(out("ingot.raw")),
            samples: Vec::new(),
        },
        Job {
            key: "r2q-qemu",
            label: "`qemu-img convert -f raw -O qcow2`",
            argv: argv(
                &["qemu-img", "convert", "-f", "raw", "-O", "qcow2"],
                &[&img.raw, &out("qemu.qcow2")],
            ),
            output: Some(out("qemu.qcow2")),
            samples: Vec::new(),
        },
        Job {
            key: "r2q-ingot",
            label: "**`ingot-image convert -O qcow2`** (raw in)",
            argv: ingot(
                &["convert", "-O", "qcow2"],
                &[&img.raw, &out("ingot.qcow2")],
            ),
            output: Some(out("ingot.qcow2")),
            samples: Vec::new(),
        },
        Job {
            key: "sum-coreutils",
            label: "`sha256sum` of the .qcow2",
            argv: argv(&["sha256sum"], &[qcow2]),
            output: None,
            samples: Vec::new(),
        },
        Job {
            key: "sum-ingot",
            label: "`ingot-image checksum` of the .qcow2",
            argv: ingot(&["checksum"], &[qcow2]),
            output: None,
            samples: Vec::new(),
        },
    ]
}

fn measure(
    bin: &Path,
    img: &Image,
    qcow2: &Path,
    work: &Path,
    logs: &Path,
    rounds: usize,
) -> Result<String> {
    let mut jobs = jobs(bin, img, qcow2, work);
    let load_at_start = load_average();
    warm(&[&img.raw, qcow2])?;
    for round in 1..=rounds {
        println!("\n==> round {round} of {rounds}");
        // Pairs (qemu-img or coreutils, ingot), in turn first and second.
        for pair in jobs.chunks_mut(2) {
            let order: Vec<usize> = if round % 2 == 1 {
                (0..pair.len()).collect()
            } else {
                (0..pair.len()).rev().collect()
            };
            for i in order {
                let job = &mut pair[i];
                if let Some(out) = &job.output {
                    std::fs::remove_file(out).ok();
                }
                let log = logs.join(format!("{}.{round}.log", job.key));
                let stdout = logs.join(format!("{}.{round}.out", job.key));
                job.samples.push(timed(&job.argv, Some(&stdout), &log)?);
            }
        }
    }
    let checks = verify(img, qcow2, work, logs, rounds)?;
    Ok(report(
        &jobs,
        img,
        qcow2,
        work,
        rounds,
        &load_at_start,
        &checks,
    ))
}

/// Checks the last round's outputs; returns what was checked, for the report.
fn verify(img: &Image, qcow2: &Path, work: &Path, logs: &Path, rounds: usize) -> Result<String> {
    println!("\n==> checking the outputs");
    util::run(
        Command::new("cmp")
            .arg(work.join("qemu.raw"))
            .arg(work.join("ingot.raw")),
    )
    .context("ingot's raw output differs from qemu-img's")?;
    let check = util::output(
        Command::new("qemu-img")
            .arg("check")
            .arg(work.join("ingot.qcow2")),
    )?;
    if !check.contains("No errors were found") {
        bail!("qemu-img check of ingot's qcow2:\n{check}");
    }
    let compare = util::output(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&img.raw)
            .arg(work.join("ingot.qcow2")),
    )?;
    if !compare.contains("Images are identical") {
        bail!("qemu-img compare of ingot's qcow2 with the raw image:\n{compare}");
    }
    let theirs = std::fs::read_to_string(logs.join(format!("sum-coreutils.{rounds}.out")))?;
    let ours = std::fs::read_to_string(logs.join(format!("sum-ingot.{rounds}.out")))?;
    let hex = theirs.split_whitespace().next().unwrap_or_default();
    if hex.is_empty() || ours.trim() != format!("sha256:{hex}") {
        bail!(
            "ingot-image checksum printed {:?}, sha256sum {hex:?} for {}",
            ours.trim(),
            qcow2.display()
        );
    }
    Ok(format!(
        "Checked after the last round: `cmp` found ingot's raw output equal to qemu-img's \
         ({:.0} MiB); `qemu-img check` found no errors in ingot's qcow2 and `qemu-img compare` \
         found it identical to the raw image; `ingot-image checksum` printed `sha256sum`'s digest.",
        img.raw_size as f64 / MIB
    ))
}

/// Bytes a file occupies on disk.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn report(
    jobs: &[Job],
    img: &Image,
    qcow2: &Path,
    work: &Path,
    rounds: usize,
    load_at_start: &str,
    checks: &str,
) -> String {
    let get = |key: &str| jobs.iter().find(|j| j.key == key);
    let wall = |key: &str| get(key).map_or(f64::NAN, Job::wall);
    let rss = |key: &str| get(key).map_or(f64::NAN, |j| j.median_of(|s| s.rss_kib as f64) / 1024.0);
    let date = util::output(Command::new("date").args(["-u", "+%Y-%m-%d"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let qemu_version = util::output(Command::new("qemu-img").arg("--version"))
        .ok()
        .and_then(|v| v.lines().next().map(str::to_string))
        .unwrap_or_default();
    let gb = img.raw_size as f64 / 1e9;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### convert, {} image ({date})\n",
        util::human_bytes(img.raw_size)
    );
    let _ = writeln!(
        md,
        "`cargo xtask bench convert` on {}, kernel {kernel}, {qemu_version}. Image: {}; \
         the raw file is sparse ({} allocated). Inputs in the page cache, outputs to new \
         files on the same filesystem, neither tool fsyncs. Median of {rounds} interleaved \
         rounds, the tools' order alternating; GB/s is disk bytes (10^9) per second; CPU and \
         peak RSS are medians from `/usr/bin/time`. Load average (1 min) {load_at_start} at \
         the start, {} at the end.\n",
        cpu_model(),
        img.describe(),
        util::human_bytes(allocated(&img.raw)),
        load_average()
    );
    md.push_str("| run | median | all runs (s) | GB/s | CPU user + sys | peak RSS |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for j in jobs {
        let runs: Vec<String> = j.samples.iter().map(|s| format!("{:.2}", s.wall)).collect();
        let rate = if j.key.starts_with("sum") {
            file_len(qcow2) as f64 / 1e9 / j.wall()
        } else {
            gb / j.wall()
        };
        let _ = writeln!(
            md,
            "| {} | {:.2} s | {} | {:.2} | {:.2} + {:.2} s | {:.1} MiB |",
            j.label,
            j.wall(),
            runs.join(", "),
            rate,
            j.median_of(|s| s.user),
            j.median_of(|s| s.sys),
            j.median_of(|s| s.rss_kib as f64) / 1024.0
        );
    }
    let verdict = |r: f64| if r <= 1.25 { "met" } else { "**missed**" };
    let q2r = wall("q2r-ingot") / wall("q2r-qemu");
    let r2q = wall("r2q-ingot") / wall("r2q-qemu");
    let sum = wall("sum-ingot") / wall("sum-coreutils");
    md.push_str("\n| ratio | value | target | |\n|---|---|---|---|\n");
    let _ = writeln!(
        md,
        "| ingot ÷ qemu-img, qcow2 → raw | {q2r:.2}× | ≤ 1.25× | {} |",
        verdict(q2r)
    );
    let _ = writeln!(
        md,
        "| ingot ÷ qemu-img, raw → qcow2 | {r2q:.2}× | ≤ 1.25× | {} |",
        verdict(r2q)
    );
    let _ = writeln!(md, "| ingot checksum ÷ `sha256sum` | {sum:.2}× | — |  |");
    let _ = writeln!(
        md,
        "| peak RSS, ingot ÷ qemu-img (qcow2 → raw, raw → qcow2) | {:.2}×, {:.2}× | — |  |",
        rss("q2r-ingot") / rss("q2r-qemu"),
        rss("r2q-ingot") / rss("r2q-qemu")
    );
    let _ = writeln!(
        md,
        "\nOutputs: qcow2 {} (ingot) and {} (qemu-img); raw {} allocated (ingot) and {} \
         (qemu-img), {} long. {checks}",
        util::human_bytes(file_len(&work.join("ingot.qcow2"))),
        util::human_bytes(file_len(&work.join("qemu.qcow2"))),
        util::human_bytes(allocated(&work.join("ingot.raw"))),
        util::human_bytes(allocated(&work.join("qemu.raw"))),
        util::human_bytes(file_len(&work.join("ingot.raw"))),
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_flag() {
        assert_eq!(parse_rounds(&[]).unwrap(), DEFAULT_ROUNDS);
        assert_eq!(parse_rounds(&["--rounds".into(), "2".into()]).unwrap(), 2);
        assert!(parse_rounds(&["--rounds".into(), "0".into()]).is_err());
        assert!(parse_rounds(&["--fast".into()]).is_err());
    }

    #[test]
    fn pairs_compare_like_with_like() {
        let img = Image {
            raw: "in.raw".into(),
            raw_size: 1 << 30,
            raw_sha256: String::new(),
            zst: "in.raw.zst".into(),
            zst_size: 0,
            zst_sha256: String::new(),
            qcow2: None,
            data_bytes: 0,
            runs: 0,
            fat_esp: false,
        };
        let jobs = jobs(
            Path::new("ingot-image"),
            &img,
            Path::new("in.qcow2"),
            Path::new("w"),
        );
        // Each pair: the yardstick first, ingot second, same input.
        for pair in jobs.chunks(2) {
            assert!(!pair[0].argv[0].to_string_lossy().contains("ingot"));
            assert_eq!(pair[1].argv[0], "ingot-image");
            let input = |j: &Job| {
                j.argv
                    .iter()
                    .find(|a| a.to_string_lossy().starts_with("in."))
                    .cloned()
            };
            assert_eq!(input(&pair[0]), input(&pair[1]));
        }
    }
}
