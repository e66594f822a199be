//! `cargo xtask bench write-image`: `ingot-agent write-image` against the
//! machine's own limits, all timed in the same run.
//!
//! A 4 GiB GPT disk image (ESP + ext4 root of about 1.2 GiB of data, the rest
//! zeros; raw, `.zst` and `.qcow2`) is served by nginx (sendfile) on 127.0.0.1
//! and written to a loop device (`--direct-io=on`). Each stage's limit is timed
//! on its own (disk, HTTP, sha256, zstd, qemu-img), and so is the naive
//! `curl | tee >(sha256sum) | dd` pipeline. Rounds are interleaved, so a slow
//! patch of the machine hits every command alike; each figure is the median.
//! Each ingot format is then run once more onto a poisoned device and read back
//! with `cmp`. The result is a markdown table, also written to
//! `target/bench/write-image.md`.
//!
//! With `--busy`, a CPU-bound competitor (a shell busy loop pinned to CPU 0 by
//! `taskset`) runs through every round, during the baselines as during ingot,
//! so the ratios compare like with like on a machine that is not idle. That
//! report goes to `target/bench/write-image-busy.md`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::median;
use super::timing::{Sample, cpu_model, load_average, os, timed, warm};
use crate::disk_image::{self, Image, Spec};
use crate::util::{self, LoopDevice, Nginx};

const IMAGE: Spec = Spec {
    stem: "sparse",
    size: 4 << 30,
    esp: true,
    fill_from: &[
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/gcc",
        "/usr/share/locale",
    ],
    qcow2: true,
};
const DEFAULT_ROUNDS: usize = 3;
const MIB: f64 = (1u64 << 20) as f64;

/// A timed command.
struct Job {
    key: &'static str,
    label: String,
    argv: Vec<OsString>,
    /// Keep stdout (the agent's JSON summary) and check it.
    agent: bool,
    samples: Vec<Sample>,
}

impl Job {
    fn new(key: &'static str, label: impl Into<String>, argv: Vec<OsString>) -> Self {
        Self {
            key,
            label: label.into(),
            argv,
            agent: false,
            samples: Vec::new(),
        }
    }

    fn median_of(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(&self.samples.iter().map(f).collect::<Vec<_>>())
    }

    fn wall(&self) -> f64 {
        self.median_of(|s| s.wall)
    }
}

/// Fills the device with a non-zero pattern, so a read-back proves the writer
/// wrote (or zeroed) every byte.
fn poison(dev: &Path, size: u64) -> Result<()> {
    println!("filling {} with 0xA5", dev.display());
    let mut f = std::fs::OpenOptions::new().write(true).open(dev)?;
    let buf = vec![0xA5u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// The options: `[--busy] [--rounds N]`.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    rounds: usize,
    busy: bool,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let busy = args.iter().any(|a| a == "--busy");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--busy").cloned().collect();
    let rounds = super::parse_rounds(&rest, "write-image [--busy]", DEFAULT_ROUNDS)?;
    Ok(Options { rounds, busy })
}

/// A CPU-bound process pinned to CPU 0 while it lives: `sh`'s empty loop
/// never sleeps and makes no system calls.
struct Competitor(std::process::Child);

impl Competitor {
    fn start() -> Result<Self> {
        let child = Command::new("taskset")
            .args(["--cpu-list", "0", "sh", "-c", "while :; do :; done"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting the CPU-bound competitor (taskset)")?;
        println!("competitor: pid {} busy on CPU 0", child.id());
        Ok(Self(child))
    }
}

impl Drop for Competitor {
    fn drop(&mut self) {
        // taskset execs sh, so this is the busy loop itself.
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse_args(args)?;
    util::require_root("bench write-image")?;
    crate::deps::ensure()?;
    println!("\n==> building the static agent");
    let agent = util::build_agent()?;
    let dir = util::target_dir().join("bench");
    let img = disk_image::build_cached(&dir.join("image"), &IMAGE)?;
    let Some((qcow2, _, qcow2_sha)) = img.qcow2.clone() else {
        bail!("the image has no qcow2 variant");
    };

    let logs = dir.join("write-image-logs");
    std::fs::create_dir_all(&logs)?;
    let nginx = Nginx::start(&dir.join("image"), &dir.join("nginx"))?;
    let backing = dir.join("loop-target.img");
    util::sparse_file(&backing, img.raw_size)?;
    let result = (|| {
        let dev = LoopDevice::attach(&backing)?;
        measure(
            &agent,
            &nginx,
            &img,
            (qcow2.as_path(), qcow2_sha.as_str()),
            &dev.path,
            &logs,
            &opts,
        )
    })();
    drop(nginx);
    std::fs::remove_file(&backing).ok();
    let report = result?;
    println!("\n{report}");
    let out = dir.join(if opts.busy {
        "write-image-busy.md"
    } else {
        "write-image.md"
    });
    std::fs::write(&out, &report)?;
    println!("(written to {})", out.display());
    Ok(())
}

fn measure(
    agent: &Path,
    nginx: &Nginx,
    img: &Image,
    (qcow2, qcow2_sha): (&Path, &str),
    dev: &Path,
    logs: &Path,
    &Options { rounds, busy }: &Options,
) -> Result<String> {
    let name = |p: &Path| -> String {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let raw_url = nginx.url(&name(&img.raw));
    let zst_url = nginx.url(&name(&img.zst));
    let qcow2_url = nginx.url(&name(qcow2));
    let d = dev.as_os_str().to_owned();
    let ingot = |source: &str, sha: Option<&str>| -> Vec<OsString> {
        let mut v = vec![agent.as_os_str().to_owned()];
        v.extend(os(&["write-image", "--source", source, "--device"]));
        v.push(d.clone());
        if let Some(sha) = sha {
            v.extend(os(&["--checksum", &format!("sha256:{sha}")]));
        }
        v
    };
    let raw_path = img.raw.to_string_lossy().into_owned();
    let naive = format!(
        "set -o pipefail; curl -s {raw_url} | tee >(sha256sum >/dev/null) \
         | dd of={} bs=4M oflag=direct iflag=fullblock status=none",
        dev.display()
    );

    let mut dd = os(&["dd"]);
    dd.push(OsString::from(format!("if={}", img.raw.display())));
    dd.push(OsString::from(format!("of={}", dev.display())));
    dd.extend(os(&["bs=4M", "oflag=direct", "status=none"]));
    let mut openssl = os(&["openssl", "dgst", "-sha256"]);
    openssl.push(img.raw.clone().into());
    let mut zstd = os(&["zstd", "-q", "-dc"]);
    zstd.push(img.zst.clone().into());
    let mut qemu = os(&[
        "qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", "-t", "none",
    ]);
    qemu.push(qcow2.as_os_str().to_owned());
    qemu.push(d.clone());

    let mut jobs = vec![
        Job::new(
            "disk",
            "disk: `dd bs=4M oflag=direct`, cached file → loop",
            dd,
        ),
        Job::new(
            "http",
            "HTTP: `curl -s -o /dev/null`",
            os(&["curl", "-s", "-o", "/dev/null", &raw_url]),
        ),
        Job::new("hash", "hashing: `openssl dgst -sha256`", openssl),
        Job::new("zstd", "`zstd -dc` of the .zst → /dev/null", zstd),
        Job::new(
            "qemu",
            "`qemu-img convert -n -f qcow2 -O raw -t none` → loop",
            qemu,
        ),
        Job::new(
            "naive",
            r"naive: `curl \| tee >(sha256sum) \| dd oflag=direct`",
            os(&["bash", "-c", &naive]),
        ),
        Job::new(
            "ingot-raw",
            "**ingot write-image, raw, sha256**",
            ingot(&raw_url, Some(&img.raw_sha256)),
        ),
        Job::new(
            "ingot-zst",
            "ingot write-image, .zst, sha256",
            ingot(&zst_url, Some(&img.zst_sha256)),
        ),
        Job::new(
            "ingot-qcow2",
            "ingot write-image, .qcow2, sha256",
            ingot(&qcow2_url, Some(qcow2_sha)),
        ),
        // Diagnostics: what the checksum and what HTTP cost the raw deploy.
        Job::new(
            "ingot-raw-nosum",
            "diagnostic: ingot raw, no checksum",
            ingot(&raw_url, None),
        ),
        Job::new(
            "ingot-raw-file",
            "diagnostic: ingot raw from the local file, sha256",
            ingot(&raw_path, Some(&img.raw_sha256)),
        ),
    ];
    for j in jobs.iter_mut().filter(|j| j.key.starts_with("ingot")) {
        j.agent = true;
    }

    let load_at_start = load_average();
    warm(&[&img.raw, &img.zst, qcow2])?;
    // One untimed pass allocates the sparse backing file, so that no timed run
    // pays for it.
    println!("\n==> warm-up: one untimed write of the whole device");
    let disk = &jobs[0];
    timed(&disk.argv, None, &logs.join("warm-up.log"))?;
    let competitor = if busy {
        Some(Competitor::start()?)
    } else {
        None
    };
    for round in 1..=rounds {
        println!("\n==> round {round} of {rounds}");
        for job in &mut jobs {
            let log = logs.join(format!("{}.{round}.log", job.key));
            let json = logs.join(format!("{}.{round}.json", job.key));
            let sample = timed(&job.argv, job.agent.then_some(json.as_path()), &log)?;
            if job.agent && job.argv.iter().any(|a| a == "--checksum") {
                let summary = std::fs::read_to_string(&json)?;
                if !summary.contains("\"verified\": true") {
                    bail!(
                        "{}: the summary shows no verified checksum:\n{summary}",
                        job.key
                    );
                }
            }
            job.samples.push(sample);
        }
    }
    drop(competitor);

    println!("\n==> read-back: each format onto a poisoned device, then cmp");
    let checked = ["ingot-raw", "ingot-zst", "ingot-qcow2"];
    for job in jobs.iter().filter(|j| checked.contains(&j.key)) {
        poison(dev, img.raw_size)?;
        let log = logs.join(format!("{}.verify.log", job.key));
        let json = logs.join(format!("{}.verify.json", job.key));
        timed(&job.argv, Some(&json), &log)?;
        util::run(Command::new("blockdev").arg("--flushbufs").arg(dev))?;
        util::run(
            Command::new("cmp")
                .arg("-n")
                .arg(img.raw_size.to_string())
                .arg(&img.raw)
                .arg(dev),
        )
        .with_context(|| format!("{}: the device does not match the image", job.key))?;
    }

    Ok(report(&jobs, img, rounds, busy, &load_at_start))
}

fn report(jobs: &[Job], img: &Image, rounds: usize, busy: bool, load_at_start: &str) -> String {
    let get = |key: &str| jobs.iter().find(|j| j.key == key);
    let wall = |key: &str| get(key).map_or(f64::NAN, Job::wall);
    let date = util::output(Command::new("date").args(["-u", "+%Y-%m-%d"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let gb = img.raw_size as f64 / 1e9;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### write-image{}, {} image ({date})\n",
        if busy { " --busy" } else { "" },
        util::human_bytes(img.raw_size)
    );
    let _ = writeln!(
        md,
        "`cargo xtask bench write-image{}` on {}, kernel {kernel}.{} Image: {}{}. \
         Served by nginx (sendfile) on 127.0.0.1; written to a loop device \
         (`--direct-io=on`) over a sparse file. Median of {rounds} interleaved rounds; \
         GB/s is image bytes (10^9) per second; CPU and peak RSS are the median run's \
         from `/usr/bin/time`. Load average (1 min) {load_at_start} at the start, {} at \
         the end.\n",
        if busy { " --busy" } else { "" },
        cpu_model(),
        if busy {
            " A CPU-bound competitor (`taskset -c 0 sh -c 'while :; do :; done'`) \
             ran through every round, baselines included."
        } else {
            ""
        },
        img.describe(),
        if img.fat_esp {
            ", FAT32 ESP"
        } else {
            ", ESP left unformatted"
        },
        load_average()
    );
    md.push_str("| run | median | all runs (s) | GB/s | CPU user + sys | peak RSS |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for j in jobs {
        let runs: Vec<String> = j.samples.iter().map(|s| format!("{:.2}", s.wall)).collect();
        let _ = writeln!(
            md,
            "| {} | {:.2} s | {} | {:.2} | {:.2} + {:.2} s | {:.1} MiB |",
            j.label,
            j.wall(),
            runs.join(", "),
            gb / j.wall(),
            j.median_of(|s| s.user),
            j.median_of(|s| s.sys),
            j.median_of(|s| s.rss_kib as f64) / 1024.0
        );
    }

    let stages = [("disk", "disk"), ("http", "HTTP"), ("hash", "hashing")];
    let (slow_key, slow_name) = stages
        .iter()
        .copied()
        .max_by(|a, b| wall(a.0).total_cmp(&wall(b.0)))
        .unwrap_or(("hash", "hashing"));
    let raw = wall("ingot-raw");
    let peak_rss = jobs
        .iter()
        .filter(|j| j.agent)
        .flat_map(|j| j.samples.iter().map(|s| s.rss_kib))
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let raw_cpu = get("ingot-raw").map_or(f64::NAN, |j| j.median_of(|s| s.user + s.sys));
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let rows: Vec<(String, String, String, &str)> = vec![
        (
            format!("ingot raw ÷ slowest single stage ({slow_name})"),
            format!("{:.2}×", raw / wall(slow_key)),
            "≤ 1.25×".into(),
            verdict(raw / wall(slow_key) <= 1.25),
        ),
        (
            "ingot raw ÷ hashing alone (`openssl dgst -sha256`)".into(),
            format!("{:.2}×", raw / wall("hash")),
            "—".into(),
            "",
        ),
        (
            "ingot raw ÷ HTTP alone (`curl`)".into(),
            format!("{:.2}×", raw / wall("http")),
            "≤ 1.6× (stretch 1.3×)".into(),
            verdict(raw / wall("http") <= 1.6),
        ),
        (
            "ingot raw ÷ naive pipeline".into(),
            format!("{:.2}×", raw / wall("naive")),
            "—".into(),
            "",
        ),
        (
            "diagnostic: ingot raw with sha256 ÷ without".into(),
            format!("{:.2}×", raw / wall("ingot-raw-nosum")),
            "—".into(),
            "",
        ),
        (
            "diagnostic: ingot raw over HTTP ÷ from the local file".into(),
            format!("{:.2}×", raw / wall("ingot-raw-file")),
            "—".into(),
            "",
        ),
        (
            "ingot .zst ÷ ingot raw".into(),
            format!("{:.2}×", wall("ingot-zst") / raw),
            "—".into(),
            "",
        ),
        (
            "ingot .qcow2 ÷ ingot raw".into(),
            format!("{:.2}×", wall("ingot-qcow2") / raw),
            "—".into(),
            "",
        ),
        (
            "ingot .zst ÷ `zstd -dc`".into(),
            format!("{:.2}×", wall("ingot-zst") / wall("zstd")),
            "≤ 1.3×".into(),
            verdict(wall("ingot-zst") / wall("zstd") <= 1.3),
        ),
        (
            "ingot .qcow2 ÷ `qemu-img convert` (local file)".into(),
            format!("{:.2}×", wall("ingot-qcow2") / wall("qemu")),
            "≤ 2×".into(),
            verdict(wall("ingot-qcow2") / wall("qemu") <= 2.0),
        ),
        (
            "agent peak RSS, any run".into(),
            format!("{peak_rss:.1} MiB"),
            "≤ 64 MiB (stretch 32)".into(),
            verdict(peak_rss <= 64.0),
        ),
        (
            "agent CPU (user + sys), raw".into(),
            format!("{raw_cpu:.2} s"),
            "≤ 6 s".into(),
            verdict(raw_cpu <= 6.0),
        ),
    ];
    md.push_str("\n| ratio | value | target | |\n|---|---|---|---|\n");
    for (what, value, target, v) in rows {
        let _ = writeln!(md, "| {what} | {value} | {target} | {v} |");
    }
    let _ = writeln!(
        md,
        "\nRead-back: each format (raw, .zst, .qcow2; not the diagnostics) was written once more onto a device first filled with \
         0xA5, and `cmp` found the device equal to the raw image ({:.0} MiB compared each time).",
        img.raw_size as f64 / MIB
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let parse = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let opts = |rounds, busy| Options { rounds, busy };
        assert_eq!(parse(&[]).unwrap(), opts(DEFAULT_ROUNDS, false));
        assert_eq!(parse(&["--rounds", "1"]).unwrap(), opts(1, false));
        assert_eq!(parse(&["--busy"]).unwrap(), opts(DEFAULT_ROUNDS, true));
        assert_eq!(parse(&["--busy", "--rounds", "2"]).unwrap(), opts(2, true));
        assert_eq!(parse(&["--rounds", "2", "--busy"]).unwrap(), opts(2, true));
        assert!(parse(&["--rounds", "0"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }
}
