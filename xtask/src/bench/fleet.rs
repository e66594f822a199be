//! `cargo xtask bench fleet [--nodes N]… [--db sqlite|postgres|both]
//! [--ironic] [--ironic-nodes M] [--wipe-ms MS] [--write-ms MS]
//! [--heartbeat-s S] [--db-pool N] [--max-starts N] [--no-build]`: concurrent deploys at fleet scale (issue 21 item 4).
//!
//! For each database (SQLite, then PostgreSQL on the private cluster of
//! `tests/pg-cluster`) and each N (default 100 and 1,000), one release
//! coordinator on a fresh database, and `ingot-agent-fleet` (tests/agent-fleet)
//! as the scenario: N simulated IPA agents over real HTTP, each on its own
//! loopback address, and N `ipmi` nodes whose BMCs are `ingot-bmc-fleet`'s
//! (run inside the agent fleet, so that an agent boots when its machine is
//! powered on),
//! all driven at once through manage, provide (automated cleaning) and
//! deploy with a config drive.
//!
//! With `--ironic`, in the same run, OpenStack Ironic (the venv of
//! `INGOT_IRONIC_VENV`, default /work/ironic-ref/.venv; standalone, noauth,
//! SQLite, `fake-hardware`) with the same scenario and agents for M nodes
//! (default 100), and the ratios.
//!
//! Reported per run: wall time from the first `manage` until every node is
//! active, deploys per minute (over the deploy phase), the API process's CPU
//! seconds per deploy (user + system over the three phases, from
//! /proc/<pid>/stat, Ironic's whole process tree), its peak RSS (VmHWM from
//! /proc), and p50/p99 of the time from an idle agent's heartbeat to the
//! next command the conductor posts to it.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ingot_pg_cluster::Cluster;
use serde_json::Value;

use super::power_sync::{
    BASE_PORT, Guard, PASSWORD, USER, start_coordinator, wait_listening, with_nofile,
};
use crate::util;

const USAGE: &str = "usage: cargo xtask bench fleet [--nodes N]... [--db sqlite|postgres|both] \
                     [--ironic] [--ironic-nodes M] [--wipe-ms MS] [--write-ms MS] [--heartbeat-s S] [--db-pool N] [--max-starts N] [--no-build]";

#[derive(Debug)]
struct Args {
    nodes: Vec<usize>,
    sqlite: bool,
    postgres: bool,
    ironic: Option<usize>,
    wipe_ms: u64,
    write_ms: u64,
    heartbeat_s: u64,
    /// The coordinator's `database_max_connections` (its default when unset).
    db_pool: Option<u32>,
    /// The coordinator's `[conductor] max_concurrent_starts` (its default when unset).
    max_starts: Option<usize>,
    /// Use the release binaries already in the target directory.
    no_build: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        nodes: Vec::new(),
        sqlite: true,
        postgres: true,
        ironic: None,
        wipe_ms: 2000,
        write_ms: 5000,
        heartbeat_s: 10,
        db_pool: None,
        max_starts: None,
        no_build: false,
    };
    let mut ironic_nodes = 100;
    let mut ironic = false;
    let mut it = args.iter();
    while let Some(k) = it.next() {
        if k == "--ironic" {
            ironic = true;
            continue;
        }
        if k == "--no-build" {
            a.no_build = true;
            continue;
        }
        let v = it.next().context(USAGE)?;
        match k.as_str() {
            "--nodes" => a.nodes.push(v.parse().context("--nodes")?),
            "--db" => {
                (a.sqlite, a.postgres) = match v.as_str() {
                    "sqlite" => (true, false),
                    "postgres" => (false, true),
                    "both" => (true, true),
                    _ => bail!(USAGE),
                }
            }
            "--ironic-nodes" => ironic_nodes = v.parse().context("--ironic-nodes")?,
            "--wipe-ms" => a.wipe_ms = v.parse().context("--wipe-ms")?,
            "--write-ms" => a.write_ms = v.parse().context("--write-ms")?,
            "--heartbeat-s" => a.heartbeat_s = v.parse().context("--heartbeat-s")?,
            "--db-pool" => a.db_pool = Some(v.parse().context("--db-pool")?),
            "--max-starts" => a.max_starts = Some(v.parse().context("--max-starts")?),
            _ => bail!(USAGE),
        }
    }
    if a.nodes.is_empty() {
        a.nodes = vec![100, 1000];
    }
    if a.nodes.iter().any(|&n| n == 0 || n > 20_000) || ironic_nodes == 0 {
        bail!("--nodes must be between 1 and 20000");
    }
    if a.heartbeat_s == 0 {
        bail!("--heartbeat-s must be at least 1");
    }
    a.ironic = ironic.then_some(ironic_nodes);
    Ok(a)
}

/// One measured run.
struct Row {
    label: String,
    nodes: usize,
    result: Value,
    cpu_s: f64,
    rss_mib: f64,
}

impl Row {
    fn num(&self, path: &[&str]) -> f64 {
        let mut v = &self.result;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or(f64::NAN)
    }
    fn active(&self) -> f64 {
        self.num(&["active"])
    }
    fn wall(&self) -> f64 {
        self.num(&["total_seconds"])
    }
    fn per_minute(&self) -> f64 {
        self.active() * 60.0 / self.num(&["phases", "deploy", "seconds"])
    }
    fn cpu_per_deploy(&self) -> f64 {
        self.cpu_s / self.active().max(1.0)
    }
    fn p50(&self) -> f64 {
        self.num(&["latency_ms", "p50"])
    }
    fn p99(&self) -> f64 {
        self.num(&["latency_ms", "p99"])
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, usually 100).
fn clk_tck() -> f64 {
    util::output(Command::new("getconf").arg("CLK_TCK"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (ppid, user + system ticks, children's ticks) of a live process.
fn stat(pid: u32) -> Option<(u32, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
    // rest[0] is field 3 (state): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
    Some((u32::try_from(n(1)?).ok()?, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some((ppid, _, _)) = stat(p)
            {
                all.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// CPU seconds used so far by `pid`'s process tree (the reaped children of
/// the root included).
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    let ticks: u64 = tree(pid)
        .iter()
        .filter_map(|&p| stat(p))
        .enumerate()
        .map(|(i, (_, own, children))| if i == 0 { own + children } else { own })
        .sum();
    ticks as f64 / clk_tck()
}

/// Sum of VmHWM (peak RSS) over `pid`'s process tree, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let kib: u64 = tree(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum();
    kib as f64 / 1024.0
}

/// Runs the scenario against `api` while `server` (the API process) runs.
fn scenario(
    a: &Args,
    release: &Path,
    api: &str,
    n: usize,
    flavor: &str,
    server: &mut Guard,
    label: String,
) -> Result<Row> {
    let pid = server.0.id();
    let mut cmd = with_nofile(&release.join("ingot-agent-fleet"));
    cmd.args(["--api", api, "--nodes", &n.to_string(), "--flavor", flavor])
        .args(["--bmc-base-port", &BASE_PORT.to_string()])
        .args(["--bmc-user", USER, "--bmc-password", PASSWORD])
        .args(["--wipe-ms", &a.wipe_ms.to_string()])
        .args(["--write-ms", &a.write_ms.to_string()])
        .args(["--heartbeat-s", &a.heartbeat_s.to_string()])
        .args(["--timeout-s", "900"]);
    util::announce(&cmd);
    let mut child = Guard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ingot-agent-fleet")?,
    );
    // Progress lines: echoed; the CPU counter starts when enrolment ends.
    let stderr = child.0.stderr.take().context("no stderr")?;
    let mut cpu0 = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.starts_with("==> manage") {
            cpu0 = Some(cpu_seconds(pid));
        }
        println!("  {line}");
        if let Some(st) = server.0.try_wait()? {
            bail!("{label}: the API process exited ({st}); see its log");
        }
    }
    let cpu1 = cpu_seconds(pid);
    let rss = peak_rss_mib(pid);
    let mut out = String::new();
    if let Some(mut o) = child.0.stdout.take() {
        std::io::Read::read_to_string(&mut o, &mut out)?;
    }
    let status = child.0.wait()?;
    if !status.success() {
        bail!("{label}: ingot-agent-fleet failed ({status})");
    }
    let result: Value = serde_json::from_str(out.trim())
        .with_context(|| format!("ingot-agent-fleet's result: {out:?}"))?;
    println!("  result: {result}");
    Ok(Row {
        label,
        nodes: n,
        result,
        cpu_s: cpu1 - cpu0.unwrap_or(cpu1),
        rss_mib: rss,
    })
}

fn coordinator_config(dir: &Path, port: u16, db_url: &str, a: &Args) -> Result<PathBuf> {
    let path = dir.join("coordinator.toml");
    let pool = a
        .db_pool
        .map(|n| format!("database_max_connections = {n}\n"))
        .unwrap_or_default();
    let starts = a
        .max_starts
        .map(|n| format!("[conductor]\nmax_concurrent_starts = {n}\n"))
        .unwrap_or_default();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase = \"{db_url}\"\n{pool}\n{starts}[boot]\napi_url = \"http://127.0.0.1:{port}\"\n"
    );
    std::fs::write(&path, text).with_context(|| path.display().to_string())?;
    Ok(path)
}

fn run_ingot(
    a: &Args,
    release: &Path,
    dir: &Path,
    db_url: &str,
    label: &str,
    n: usize,
) -> Result<Row> {
    let dir = dir.join(format!("{label}-{n}"));
    std::fs::create_dir_all(&dir)?;
    let port = util::free_port()?;
    let config = coordinator_config(&dir, port, db_url, a)?;
    let log = dir.join("coordinator.log");
    let mut coord = start_coordinator(&release.join("ingot-coordinator"), &config, &log)?;
    wait_listening(port, &mut coord)?;
    println!("\n==> Ingot on {label}, {n} nodes (log: {})", log.display());
    let row = scenario(
        a,
        release,
        &format!("http://127.0.0.1:{port}"),
        n,
        "ingot",
        &mut coord,
        format!("Ingot, {label}"),
    );
    println!(
        "  slow database pool acquires (sqlx warnings in the log): {}",
        slow_acquires(&log)
    );
    row
}

/// How many times the coordinator waited long for a database connection
/// (sqlx's "acquire … slow threshold" warnings in its log).
fn slow_acquires(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("acquire") && l.contains("slow"))
                .count()
        })
        .unwrap_or(0)
}

/// The venv holding OpenStack Ironic.
fn ironic_venv() -> PathBuf {
    std::env::var_os("INGOT_IRONIC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/ironic-ref/.venv"))
}

/// ../shared/reference/ironic-standalone/ironic.conf, with automated
/// cleaning on (metadata only, as Ingot's default), no limit on concurrent
/// deploys and cleans, and its own port.
fn ironic_conf(port: u16) -> String {
    let reference = include_str!("fleet_ironic.conf");
    reference.replace("@PORT@", &port.to_string())
}

fn run_ironic(a: &Args, release: &Path, dir: &Path, n: usize) -> Result<Row> {
    let venv = ironic_venv();
    let bin = venv.join("bin");
    if !bin.join("ironic").exists() {
        bail!(
            "no Ironic in {} (see ../shared/reference/ironic-standalone.md; INGOT_IRONIC_VENV)",
            venv.display()
        );
    }
    let dir = dir.join(format!("ironic-{n}"));
    for d in [
        "logs",
        "state/tmp",
        "state/locks",
        "state/httpboot",
        "state/tftpboot",
    ] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let port = util::free_port()?;
    std::fs::write(dir.join("ironic.conf"), ironic_conf(port))?;
    util::run(
        Command::new(bin.join("ironic-dbsync"))
            .args(["--config-file", "ironic.conf", "create_schema"])
            .current_dir(&dir),
    )?;
    let mut cmd = Command::new(bin.join("ironic"));
    cmd.args(["--config-file", "ironic.conf"]).current_dir(&dir);
    util::announce(&cmd);
    let mut server = Guard(
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("logs/ironic.stdout"))?)
            .stderr(Stdio::from(std::fs::File::create(
                dir.join("logs/ironic.stderr"),
            )?))
            .process_group(0)
            .spawn()
            .context("starting ironic")?,
    );
    let t = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sS", "-f", "--max-time", "5"])
            .args(["-H", "X-OpenStack-Ironic-API-Version: latest"])
            .arg(format!("http://127.0.0.1:{port}/v1/drivers"))
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("fake-hardware")) {
            break;
        }
        if let Some(st) = server.0.try_wait()? {
            bail!("ironic exited: {st}; see {}", dir.display());
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "ironic did not list fake-hardware within 120 s; see {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "\n==> OpenStack Ironic (standalone, SQLite, fake-hardware), {n} nodes, ready in {:.1} s (logs: {})",
        t.elapsed().as_secs_f64(),
        dir.join("logs").display()
    );
    let pid = server.0.id();
    let row = scenario(
        a,
        release,
        &format!("http://127.0.0.1:{port}"),
        n,
        "ironic",
        &mut server,
        "Ironic, SQLite".into(),
    );
    // The all-in-one process has workers: stop the whole group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
    row
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    if a.postgres && ingot_pg_cluster::find_bin().is_none() {
        bail!("needs the PostgreSQL server (apt-get install postgresql), or --db sqlite");
    }
    if !a.no_build {
        println!("\n==> building the coordinator and the agent fleet (release)");
        util::run(util::cargo().args([
            "build",
            "--release",
            "-p",
            "ingot-coordinator",
            "-p",
            "ingot-agent-fleet",
        ]))?;
    }
    let release = util::target_dir().join("release");
    let dir = std::env::temp_dir().join(format!("ingot-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&a, &release, &dir);
    println!("logs are in {}", dir.display());
    result
}

fn measure(a: &Args, release: &Path, dir: &Path) -> Result<()> {
    let max = a.nodes.iter().copied().max().unwrap_or(0);
    if usize::from(BASE_PORT) + max > usize::from(u16::MAX) {
        bail!("--nodes {max}: the BMCs' UDP ports would pass 65535");
    }
    let mut rows = Vec::new();
    if let Some(n) = a.ironic {
        match run_ironic(a, release, dir, n) {
            Ok(r) => rows.push(r),
            Err(e) => println!("WARNING: Ironic: {e:#}"),
        }
    }
    if a.sqlite {
        for &n in &a.nodes {
            let url = format!("sqlite://{}/ingot-{n}.db", dir.display());
            rows.push(run_ingot(a, release, dir, &url, "SQLite", n)?);
        }
    }
    if a.postgres {
        let mut cluster = Cluster::start(&dir.join("pg"))?;
        cluster.stop_when_process_exits()?;
        for &n in &a.nodes {
            let url = cluster.create_db(&format!("fleet{n}"))?;
            rows.push(run_ingot(a, release, dir, &url, "PostgreSQL", n)?);
        }
    }
    println!(
        "\n==> results: write_image {} ms, each wipe {} ms, heartbeat every {} s; {}, load {}",
        a.write_ms,
        a.wipe_ms,
        a.heartbeat_s,
        super::timing::cpu_model(),
        super::timing::load_average()
    );
    println!(
        "| API | nodes | active | manage → all active | deploy phase | deploys/min | CPU s/deploy | peak RSS | heartbeat → next command p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} s | {:.1} s | {:.0} | {:.3} | {:.0} MiB | {:.0} / {:.0} ms |",
            r.label,
            r.nodes,
            r.active(),
            r.wall(),
            r.num(&["phases", "deploy", "seconds"]),
            r.per_minute(),
            r.cpu_per_deploy(),
            r.rss_mib,
            r.p50(),
            r.p99(),
        );
    }
    for r in &rows {
        println!(
            "{} {}: phases manage {:.1} s, provide {:.1} s, deploy {:.1} s; {} lookups, {} heartbeats ({} refused), {} commands, {} HTTP errors, {} latency samples; failures {}; unknown commands {}",
            r.label,
            r.nodes,
            r.num(&["phases", "manage", "seconds"]),
            r.num(&["phases", "provide", "seconds"]),
            r.num(&["phases", "deploy", "seconds"]),
            r.result["lookups"],
            r.result["heartbeats"],
            r.result["heartbeats_refused"],
            r.result["commands"],
            r.result["http_errors"],
            r.result["latency_ms"]["count"],
            failures(&r.result),
            r.result["unknown_commands"],
        );
    }
    for r in &rows {
        let by: Vec<String> = r.result["latency_ms_by_command"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, l)| {
                        format!(
                            "{name} {:.0} / {:.0} ms",
                            l["p50"].as_f64().unwrap_or(f64::NAN),
                            l["p99"].as_f64().unwrap_or(f64::NAN)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{} {}: heartbeat → next command p50 / p99 by that command: {}",
            r.label,
            r.nodes,
            by.join(", ")
        );
    }
    if let Some(ir) = rows.iter().find(|r| r.label.starts_with("Ironic")) {
        for r in rows
            .iter()
            .filter(|r| r.label.starts_with("Ingot") && r.nodes == ir.nodes)
        {
            println!(
                "ratios Ironic / {} at {} nodes: wall {:.1}x, deploys/min {:.1}x (Ingot's higher), CPU per deploy {:.1}x, peak RSS {:.1}x, p50 {:.1}x, p99 {:.1}x",
                r.label,
                r.nodes,
                ir.wall() / r.wall(),
                r.per_minute() / ir.per_minute(),
                ir.cpu_per_deploy() / r.cpu_per_deploy(),
                ir.rss_mib / r.rss_mib,
                ir.p50() / r.p50(),
                ir.p99() / r.p99(),
            );
        }
    }
    for r in rows.iter().filter(|r| r.label.starts_with("Ingot")) {
        let ok = r.active() as usize == r.nodes;
        println!(
            "targets, {} {}: all deploys complete {}; p99 < 1 s {}; RSS < 512 MiB {}",
            r.label,
            r.nodes,
            if ok { "yes" } else { "NO" },
            if r.p99() < 1000.0 { "yes" } else { "NO" },
            if r.rss_mib < 512.0 { "yes" } else { "NO" },
        );
    }
    Ok(())
}

fn failures(result: &Value) -> String {
    let mut out = Vec::new();
    for p in ["manage", "provide", "deploy"] {
        if let Some(list) = result["phases"][p]["failures"].as_array() {
            for f in list {
                out.push(format!(
                    "{p}: {} in {} ({})",
                    f["count"], f["state"], f["example_error"]
                ));
            }
        }
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.nodes, vec![100, 1000]);
        assert!(a.sqlite && a.postgres && a.ironic.is_none());
        let args: Vec<String> = [
            "--nodes",
            "10",
            "--db",
            "sqlite",
            "--ironic",
            "--ironic-nodes",
            "5",
        ]
        .map(String::from)
        .to_vec();
        let a = parse(&args).expect("parsed");
        assert_eq!(a.nodes, vec![10]);
        assert!(a.sqlite && !a.postgres);
        assert_eq!(a.ironic, Some(5));
        assert!(parse(&["--db".into(), "mysql".into()]).is_err());
    }

    #[test]
    fn reads_its_own_cpu_time() {
        let me = std::process::id();
        let (ppid, _, _) = stat(me).expect("own stat");
        assert!(ppid > 0);
        assert!(tree(me).contains(&me));
        assert!(cpu_seconds(me) >= 0.0);
        assert!(peak_rss_mib(me) > 0.0);
        assert!(ironic_conf(1234).contains("port = 1234"));
    }
}
