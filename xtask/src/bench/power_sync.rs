//! `cargo xtask bench power-sync [--nodes N] [--sample M] [--workers W]`:
//! one full power-state sync of N `ipmi` nodes (default 10,000) against the
//! simulated BMC fleet (`tests/bmc-fleet`), with the coordinator's peak RSS,
//! and, in the same run, `ipmitool … chassis power status` timed per node
//! over a sample and extrapolated to N.
//!
//! Nodes are enrolled directly in the coordinator's SQLite database (as
//! `manageable` `ipmi` nodes, one BMC port each): enrolling and verifying
//! 10,000 nodes through the API is not what is measured here. One node in a
//! hundred is recorded as `power on` while its BMC is off, so the pass also
//! records out-of-band changes.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

/// First UDP port of the simulated fleet (below Linux's ephemeral range).
pub(super) const BASE_PORT: u16 = 20000;
pub(super) const USER: &str = "admin";
pub(super) const PASSWORD: &str = "bench-secret";

/// Kills (SIGKILL) and reaps a child process on drop.
pub(super) struct Guard(pub(super) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Args {
    nodes: usize,
    sample: usize,
    workers: Option<usize>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        nodes: 10_000,
        sample: 50,
        workers: None,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().context("each option needs a value")?;
        match k.as_str() {
            "--nodes" => a.nodes = v.parse()?,
            "--sample" => a.sample = v.parse()?,
            "--workers" => a.workers = Some(v.parse()?),
            _ => {
                bail!("usage: cargo xtask bench power-sync [--nodes N] [--sample M] [--workers W]")
            }
        }
    }
    if a.nodes == 0 || a.nodes > 40_000 {
        bail!("--nodes must be between 1 and 40000");
    }
    a.sample = a.sample.clamp(1, a.nodes);
    Ok(a)
}

/// Runs `program args` with a raised file-descriptor limit (one UDP socket per BMC).
pub(super) fn with_nofile(program: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(program);
    c
}

pub(super) fn node_uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// The SQL that enrolls `n` manageable ipmi nodes, node i on BASE_PORT + i.
fn enroll_sql(n: usize) -> String {
    let mut sql = String::from("BEGIN;\n");
    for i in 0..n {
        let uuid = node_uuid(i);
        let port = usize::from(BASE_PORT) + i;
        let power = if i % 100 == 99 {
            "power on"
        } else {
            "power off"
        };
        let created = format!("2026-01-01T00:00:00.{i:06}+00:00");
        let data = format!(
            "{{\"uuid\":\"{uuid}\",\"name\":\"bmc-{i:05}\",\"driver\":\"ipmi\",\
             \"power_interface\":\"ipmitool\",\"management_interface\":\"ipmitool\",\
             \"provision_state\":\"manageable\",\"power_state\":\"{power}\",\
             \"created_at\":\"{created}\",\"driver_info\":{{\"ipmi_address\":\"127.0.0.1\",\
             \"ipmi_port\":{port},\"ipmi_username\":\"{USER}\",\"ipmi_password\":\"{PASSWORD}\"}}}}"
        );
        let _ = writeln!(
            sql,
            "INSERT INTO nodes (uuid, name, instance_uuid, provision_state, reservation, version, \
             created_at, data) VALUES ('{uuid}', 'bmc-{i:05}', NULL, 'manageable', NULL, 1, \
             '{created}', '{data}');"
        );
    }
    sql.push_str("COMMIT;\n");
    sql
}

fn write_config(
    dir: &Path,
    port: u16,
    interval_ms: u64,
    workers: Option<usize>,
) -> Result<PathBuf> {
    let path = dir.join("coordinator.toml");
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase = \"sqlite://{}/ingot.db\"\n\n[power_sync]\ninterval_ms = {interval_ms}\n",
        dir.display()
    );
    if let Some(w) = workers {
        let _ = writeln!(text, "workers = {w}");
    }
    std::fs::write(&path, text).with_context(|| path.display().to_string())?;
    Ok(path)
}

pub(super) fn start_coordinator(bin: &Path, config: &Path, log: &Path) -> Result<Guard> {
    let mut cmd = with_nofile(bin);
    cmd.args(["serve", "--config"]).arg(config);
    cmd.env("RUST_LOG", "info,ingot_coordinator::power=warn");
    let log = std::fs::File::create(log)?;
    util::announce(&cmd);
    Ok(Guard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the coordinator")?,
    ))
}

pub(super) fn wait_listening(port: u16, child: &mut Guard) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = child.0.try_wait()? {
            bail!("the coordinator exited: {st}");
        }
        if Instant::now() > deadline {
            bail!("the coordinator did not listen within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A finished sync pass, from the coordinator's log line.
#[derive(Debug)]
struct Pass {
    checked: u64,
    changed: u64,
    failed: u64,
    elapsed_ms: u64,
}

pub(super) fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(&format!("{key}="))? + key.len() + 1..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn passes(log: &Path) -> Vec<Pass> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("power sync pass done"))
        .filter_map(|l| {
            Some(Pass {
                checked: field(l, "checked")?,
                changed: field(l, "changed")?,
                failed: field(l, "failed")?,
                elapsed_ms: field(l, "elapsed_ms")?,
            })
        })
        .collect()
}

/// Peak resident set size (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    if Command::new("ipmitool").arg("-V").output().is_err()
        || Command::new("sqlite3").arg("-version").output().is_err()
    {
        bail!("needs ipmitool and sqlite3 (apt-get install ipmitool sqlite3)");
    }
    let (release, dir) = super::coordinator_and_fleet("power-sync")?;
    let result = measure(&a, &release, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(a: &Args, release: &Path, dir: &Path) -> Result<()> {
    let n = a.nodes;
    println!(
        "\n==> {n} simulated BMCs on 127.0.0.1:{BASE_PORT}..{}",
        usize::from(BASE_PORT) + n - 1
    );
    let mut fleet_cmd = with_nofile(&release.join("ingot-bmc-fleet"));
    fleet_cmd.args([
        "--count",
        &n.to_string(),
        "--base-port",
        &BASE_PORT.to_string(),
    ]);
    fleet_cmd.args(["--user", USER, "--password", PASSWORD]);
    util::announce(&fleet_cmd);
    let mut fleet = Guard(
        fleet_cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the fleet")?,
    );
    let mut line = String::new();
    if let Some(out) = fleet.0.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    if !line.starts_with("ready") {
        bail!("the fleet did not start: {line:?}");
    }

    println!("\n==> the database: schema from a first start, then {n} nodes inserted with sqlite3");
    let port = util::free_port()?;
    let bin = release.join("ingot-coordinator");
    let config = write_config(dir, port, 0, a.workers)?;
    let mut first = start_coordinator(&bin, &config, &dir.join("schema.log"))?;
    wait_listening(port, &mut first)?;
    drop(first);
    let sql = dir.join("enroll.sql");
    std::fs::write(&sql, enroll_sql(n))?;
    let t = Instant::now();
    let mut sqlite = Command::new("sqlite3");
    sqlite
        .arg(dir.join("ingot.db"))
        .arg(format!(".read {}", sql.display()));
    util::output(&mut sqlite)?;
    println!("enrolled {n} nodes in {:.2} s", t.elapsed().as_secs_f64());

    println!("\n==> the coordinator: a sync pass at start-up, a second one 1 s later");
    let config = write_config(dir, port, 1000, a.workers)?;
    let log = dir.join("coordinator.log");
    let mut coord = start_coordinator(&bin, &config, &log)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let p = passes(&log);
        if p.len() >= 2 {
            break p;
        }
        if let Some(st) = coord.0.try_wait()? {
            bail!("the coordinator exited: {st}; log in {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("two sync passes did not finish within 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rss_kib = peak_rss_kib(coord.0.id())?;
    drop(coord);
    let (cold, warm) = (&done[0], &done[1]);
    for (name, p) in [
        ("first (opens a session per BMC)", cold),
        ("second (sessions reused)", warm),
    ] {
        println!(
            "pass {name}: {} nodes in {:.2} s, {} out-of-band changes recorded, {} failures",
            p.checked,
            p.elapsed_ms as f64 / 1000.0,
            p.changed,
            p.failed
        );
    }
    if cold.checked != n as u64 || cold.failed != 0 {
        bail!("the first pass did not read every node: {cold:?}");
    }

    println!(
        "\n==> ipmitool -I lanplus -C 3 … chassis power status, one process per node, {} nodes",
        a.sample
    );
    let step = (n / a.sample).max(1);
    let t = Instant::now();
    for k in 0..a.sample {
        let p = usize::from(BASE_PORT) + k * step;
        let out = util::output(Command::new("ipmitool").args([
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            "127.0.0.1",
            "-p",
            &p.to_string(),
            "-U",
            USER,
            "-P",
            PASSWORD,
            "chassis",
            "power",
            "status",
        ]))?;
        if !out.contains("Chassis Power is") {
            bail!("ipmitool: unexpected answer {out:?}");
        }
    }
    let per = t.elapsed().as_secs_f64() / a.sample as f64;
    drop(fleet);
    let seq = per * n as f64;
    let ironic = seq / 8.0;
    let ours = cold.elapsed_ms as f64 / 1000.0;
    println!(
        "ipmitool: {:.1} ms per node → {n} nodes: {seq:.1} s one at a time, {ironic:.1} s with Ironic's 8 workers",
        per * 1000.0
    );

    println!("\n==> results ({n} nodes)");
    println!("full sync, cold:          {ours:.2} s (target ≤ 30 s for 10,000)");
    println!(
        "full sync, warm:          {:.2} s",
        warm.elapsed_ms as f64 / 1000.0
    );
    println!(
        "coordinator peak RSS:     {:.1} MiB (target ≤ 256 MiB)",
        rss_kib as f64 / 1024.0
    );
    println!("ipmitool, extrapolated:   {seq:.1} s sequential, {ironic:.1} s with 8 workers");
    println!(
        "ratios:                   {:.1}x faster than ipmitool sequential, {:.1}x than 8 ipmitool workers",
        seq / ours.max(0.001),
        ironic / ours.max(0.001)
    );
    Ok(())
}
