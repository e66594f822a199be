//! Timing helpers shared by the benchmarks: commands run under
//! `/usr/bin/time` (wall, CPU, peak RSS), the page cache warmed, and the
//! machine described in the report.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util;

/// One run's cost, from `/usr/bin/time`.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Wall seconds (measured here).
    pub wall: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak resident set size in KiB.
    pub rss_kib: u64,
}

/// The words of a command line.
pub fn os(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

/// Runs `argv` under `/usr/bin/time`; stdout goes to `out` (or /dev/null),
/// stderr to `log`.
pub fn timed(argv: &[OsString], out: Option<&Path>, log: &Path) -> Result<Sample> {
    let tf = log.with_extension("time");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %U %S %M", "-o"]).arg(&tf).args(argv);
    util::announce(&cmd);
    let stdout = match out {
        Some(p) => Stdio::from(File::create(p)?),
        None => Stdio::null(),
    };
    let t = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(File::create(log)?)
        .status()
        .with_context(|| format!("could not start `{}`", util::display(&cmd)))?;
    let wall = t.elapsed().as_secs_f64();
    if !status.success() {
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{}` failed ({status}):\n{}",
            util::display(&cmd),
            tail.join("\n")
        );
    }
    let text = std::fs::read_to_string(&tf)?;
    // The last line: an earlier one may say "Command exited with non-zero status".
    let last = text.lines().last().unwrap_or_default();
    let f: Vec<&str> = last.split_whitespace().collect();
    let [_, user, sys, rss] = f.as_slice() else {
        bail!("unexpected /usr/bin/time output: {text:?}");
    };
    let sample = Sample {
        wall,
        user: user.parse()?,
        sys: sys.parse()?,
        rss_kib: rss.parse()?,
    };
    println!(
        "  {:.2} s (user {:.2} s, sys {:.2} s, peak RSS {:.1} MiB)",
        sample.wall,
        sample.user,
        sample.sys,
        sample.rss_kib as f64 / 1024.0
    );
    Ok(sample)
}

/// Reads files once so that every command finds them in the page cache.
pub fn warm(paths: &[&Path]) -> Result<()> {
    let mut buf = vec![0u8; 8 << 20];
    for p in paths {
        println!("reading {} into the page cache", p.display());
        let mut f = File::open(p)?;
        while f.read(&mut buf)? > 0 {}
    }
    Ok(())
}

/// The CPU model, core count and whether it has SHA-NI.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let sha_ni = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{model}, {cores} cores, SHA-NI {}",
        if sha_ni { "yes" } else { "no" }
    )
}

/// The 1-minute load average, to show how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
