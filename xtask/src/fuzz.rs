//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs every fuzz target (or
//! the ones named) under libFuzzer for N seconds each (default 60), then
//! prints a table: executions, corpus, coverage and any crash.
//!
//! The targets are the files of `fuzz/fuzz_targets/`; their entry points live
//! in `fuzz/targets` (ingot-fuzz-targets), which the ordinary `cargo test`
//! replays every corpus through on stable. Fuzzing needs the nightly
//! toolchain and cargo-fuzz, both installed here if missing, and one
//! instrumented build (release, debug assertions on so that arithmetic
//! overflow panics, no sanitizer: the code under test is safe Rust) in
//! `<target dir>/fuzz/`. New inputs go to `<target dir>/fuzz/corpus/<target>/`
//! (kept between runs; the seeds in `fuzz/corpus/` are only read), crashes
//! to `<target dir>/fuzz/artifacts/<target>/`, each run's output to
//! `<target dir>/fuzz/logs/<target>.log`. See docs/fuzzing.md for what to do
//! with a crash.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util;

const DEFAULT_SECONDS: u64 = 60;
/// An input slower than this is reported as a timeout (a hang).
const TIMEOUT_SECONDS: u64 = 10;
/// libFuzzer's default memory limit, stated.
const RSS_LIMIT_MB: u64 = 2048;

/// The options of one invocation.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    targets: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let n = it.next().context("--seconds takes a number")?;
                seconds = n
                    .parse()
                    .with_context(|| format!("--seconds takes a number, not {n:?}"))?;
                if seconds == 0 {
                    bail!("--seconds must be at least 1");
                }
            }
            flag if flag.starts_with('-') => {
                bail!("usage: cargo xtask fuzz [--seconds N] [TARGET...]")
            }
            name => targets.push(name.to_owned()),
        }
    }
    Ok(Options { seconds, targets })
}

fn fuzz_dir() -> PathBuf {
    util::repo_root().join("fuzz")
}

/// The targets: the file names of `fuzz/fuzz_targets/*.rs`, sorted.
fn all_targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "rs")
            && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// `cargo +nightly …` through rustup, without the variables the stable
/// cargo that runs xtask set: a cargo-fuzz that found `CARGO` would build
/// with it, and build scripts that watch `CARGO_PKG_NAME` and the like
/// (ring's does) would run again, and everything above them be rebuilt,
/// whenever the fuzz build is started from xtask after a plain
/// `cargo +nightly fuzz build`, or the reverse.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(util::repo_root());
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        let set_by_cargo = name.starts_with("CARGO_") && name != "CARGO_HOME";
        if set_by_cargo
            || [
                "CARGO",
                "RUSTC",
                "RUSTDOC",
                "RUSTUP_TOOLCHAIN",
                "RUSTC_WRAPPER",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(&var);
        }
    }
    cmd
}

/// Installs the nightly toolchain and cargo-fuzz if they are missing.
fn ensure_tools() -> Result<()> {
    let toolchains = util::output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("rust toolchain nightly: present");
    } else {
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    match util::output(nightly_cargo().args(["fuzz", "--version"])) {
        Ok(v) => println!("{}: present", v.trim()),
        Err(_) => util::run(
            // The stable cargo installs it (a plain binary in ~/.cargo/bin).
            util::cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?,
    }
    Ok(())
}

/// The flags of every `cargo fuzz build` and `run` (the same, or `run`
/// would rebuild): no sanitizer, debug assertions, our target directory.
fn build_flags(target_dir: &Path) -> Vec<String> {
    vec![
        "--sanitizer".into(),
        "none".into(),
        "--debug-assertions".into(),
        "--target-dir".into(),
        target_dir.display().to_string(),
    ]
}

/// What one target's run did.
#[derive(Debug, Default, PartialEq)]
struct RunStats {
    /// libFuzzer's own count (`Done N runs in S second(s)`): without the
    /// build that `cargo fuzz run` may do first.
    seconds: Option<u64>,
    execs: u64,
    execs_per_sec: u64,
    cov: u64,
    peak_rss_mb: u64,
}

/// Reads libFuzzer's output: the `stat::` lines of `-print_final_stats=1`
/// and the last progress line's `cov:`.
fn parse_stats(log: &str) -> RunStats {
    let mut s = RunStats::default();
    for line in log.lines() {
        let line = line.trim();
        let num = |v: &str| v.trim().parse::<u64>().unwrap_or(0);
        if let Some(rest) = line.strip_prefix("Done ")
            && let Some((_, secs)) = rest.split_once(" runs in ")
        {
            s.seconds = secs.split_whitespace().next().map(num);
        } else if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            s.execs = num(v);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            s.execs_per_sec = num(v);
        } else if let Some(v) = line.strip_prefix("stat::peak_rss_mb:") {
            s.peak_rss_mb = num(v);
        } else if line.starts_with('#')
            && let Some(rest) = line.split("cov: ").nth(1)
        {
            s.cov = num(rest.split_whitespace().next().unwrap_or("0"));
        }
    }
    s
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0)
}

/// One row of the summary.
struct Row {
    target: String,
    seconds: f64,
    stats: RunStats,
    seeds: usize,
    corpus: usize,
    outcome: String,
}

fn run_target(name: &str, seconds: u64, work: &Path) -> Result<Row> {
    let seeds_dir = fuzz_dir().join("corpus").join(name);
    let regressions = fuzz_dir().join("regressions").join(name);
    let corpus = work.join("corpus").join(name);
    let artifacts = work.join("artifacts").join(name);
    let logs = work.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).context("create the log")?;
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "run"])
        .args(build_flags(work))
        .arg(name)
        .arg(&corpus)
        .arg(&seeds_dir);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    cmd.arg("--").args([
        format!("-max_total_time={seconds}"),
        format!("-timeout={TIMEOUT_SECONDS}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-artifact_prefix={}/", artifacts.display()),
        "-print_final_stats=1".into(),
    ]);
    util::announce(&cmd);
    let started = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("could not start cargo fuzz run")?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let outcome = if status.success() {
        "ok".to_owned()
    } else {
        let found: Vec<String> = std::fs::read_dir(&artifacts)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for l in tail.iter().rev() {
            println!("    {l}");
        }
        format!(
            "FAILED ({status}); artifacts: {}; log: {}",
            if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(" ")
            },
            log_path.display()
        )
    };
    let stats = parse_stats(&text);
    Ok(Row {
        target: name.to_owned(),
        seconds: stats.seconds.map_or(elapsed, |s| s as f64),
        stats,
        seeds: count_files(&seeds_dir) + count_files(&regressions),
        corpus: count_files(&corpus),
        outcome,
    })
}

/// Runs the task.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse_args(args)?;
    let all = all_targets()?;
    let targets = if opts.targets.is_empty() {
        all
    } else {
        for t in &opts.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; the targets are: {}", all.join(" "));
            }
        }
        opts.targets
    };
    println!("==> checking prerequisites");
    ensure_tools()?;
    let work = util::target_dir().join("fuzz");
    println!("\n==> building {} fuzz targets", targets.len());
    let t = Instant::now();
    let mut build = nightly_cargo();
    build.args(["fuzz", "build"]).args(build_flags(&work));
    util::run(&mut build)?;
    let build_seconds = t.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for name in &targets {
        println!("\n==> fuzzing {name} for {} s", opts.seconds);
        rows.push(run_target(name, opts.seconds, &work)?);
    }
    println!("\n==> summary (build {build_seconds:.0} s)");
    println!(
        "  {:<16} {:>7} {:>11} {:>8} {:>6} {:>14} {:>7}  result",
        "target", "seconds", "execs", "exec/s", "cov", "seeds+new", "rss MB"
    );
    let mut failed = 0;
    for r in &rows {
        if r.outcome != "ok" {
            failed += 1;
        }
        println!(
            "  {:<16} {:>7.0} {:>11} {:>8} {:>6} {:>14} {:>7}  {}",
            r.target,
            r.seconds,
            r.stats.execs,
            r.stats.execs_per_sec,
            r.stats.cov,
            format!("{}+{}", r.seeds, r.corpus),
            r.stats.peak_rss_mb,
            r.outcome
        );
    }
    if failed > 0 {
        bail!(
            "{failed} target(s) crashed: fix the parser, copy the input into fuzz/regressions/<target>/ (docs/fuzzing.md)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&[]).expect("valid arguments"),
            Options {
                seconds: 60,
                targets: vec![]
            }
        );
        assert_eq!(
            a(&["--seconds", "5", "qcow2", "lldp"]).expect("valid arguments"),
            Options {
                seconds: 5,
                targets: vec!["qcow2".into(), "lldp".into()]
            }
        );
        assert!(a(&["--seconds"]).is_err());
        assert!(a(&["--seconds", "0"]).is_err());
        assert!(a(&["--frob"]).is_err());
    }

    #[test]
    fn reads_libfuzzer_statistics() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #5000\tDONE   cov: 123 ft: 456 corp: 40/2Kb lim: 4 exec/s: 2500 rss: 45Mb\n\
                   Done 5000 runs in 2 second(s)\n\
                   stat::number_of_executed_units: 5000\n\
                   stat::average_exec_per_sec:     2500\n\
                   stat::new_units_added:          39\n\
                   stat::slowest_unit_time_sec:    0\n\
                   stat::peak_rss_mb:              45\n";
        assert_eq!(
            parse_stats(log),
            RunStats {
                seconds: Some(2),
                execs: 5000,
                execs_per_sec: 2500,
                cov: 123,
                peak_rss_mb: 45
            }
        );
    }
}
