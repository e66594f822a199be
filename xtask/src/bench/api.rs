//! `cargo xtask bench api [--nodes N] [--requests R] [--binary PATH] [--samples DIR] [--sqlite-only] [--ironic]`:
//! the API of one release coordinator on a database of N nodes (default
//! 10,000) with two ports each, on SQLite and again on PostgreSQL (the
//! private cluster of `tests/pg-cluster`), over real HTTP/1.1 with
//! keep-alive, one client:
//!
//! - `GET /v1/nodes?detail=true&limit=1000`, following `next` to the end;
//! - Nova's periodic refresh: `GET /v1/nodes?fields=<Nova's _NODE_FIELDS>`,
//!   following `next`;
//! - `GET /v1/nodes?provision_state=available&resource_class=…`;
//! - `GET /v1/ports?address=<MAC>` (a random port each time);
//! - `GET /v1/lookup?addresses=<MAC>` (the agent's lookup; the available
//!   nodes have fast track on, so the lookup answers 200).
//!
//! Prints p50/p99 latency and throughput per call. Nodes and ports are
//! inserted directly in the database with the columns of schema 0001 only
//! (so the coordinator's start fills the list columns of migration 0007
//! from the documents, which is timed too). `--binary` runs another
//! coordinator build (e.g. the base commit's, for the in-memory baseline).
//! `--ironic` runs the same calls on the real Ironic with the same data
//! (`api_ironic.rs`) and prints them side by side with the ratios.
//! `--samples DIR` writes every sample, in the order taken, to
//! `DIR/<backend>.tsv` (call, sample number, milliseconds), to see where
//! the slow ones fall.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::power_sync::{Guard, start_coordinator, wait_listening};
use crate::util;

/// Nova's `_NODE_FIELDS` (nova/virt/ironic/driver.py).
const NOVA_FIELDS: &str = "uuid,power_state,target_power_state,provision_state,\
                           target_provision_state,last_error,maintenance,properties,\
                           instance_uuid,traits,resource_class";

const RESOURCE_CLASSES: [&str; 4] = ["bm-small", "bm-medium", "bm-large", "bm-gpu"];

struct Args {
    nodes: usize,
    requests: usize,
    binary: Option<PathBuf>,
    sqlite_only: bool,
    ironic: bool,
    /// Where to write every sample, in the order taken (`--samples DIR`).
    samples: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        nodes: 10_000,
        requests: 300,
        binary: None,
        sqlite_only: false,
        ironic: false,
        samples: None,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        if k == "--sqlite-only" {
            a.sqlite_only = true;
            continue;
        }
        if k == "--ironic" {
            a.ironic = true;
            continue;
        }
        let v = it.next().context("each option needs a value")?;
        match k.as_str() {
            "--nodes" => a.nodes = v.parse()?,
            "--requests" => a.requests = v.parse()?,
            "--binary" => a.binary = Some(PathBuf::from(v)),
            "--samples" => a.samples = Some(PathBuf::from(v)),
            _ => bail!(
                "usage: cargo xtask bench api [--nodes N] [--requests R] [--binary PATH] [--samples DIR] [--sqlite-only] [--ironic]"
            ),
        }
    }
    if a.nodes == 0 || a.nodes > 100_000 || a.requests == 0 {
        bail!("--nodes must be between 1 and 100000, --requests at least 1");
    }
    Ok(a)
}

pub(super) fn node_uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

pub(super) fn port_uuid(i: usize, k: usize) -> String {
    format!("00000000-0000-4000-9000-{:012x}", i * 2 + k)
}

pub(super) fn mac(i: usize, k: usize) -> String {
    let n = i * 2 + k;
    format!(
        "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
        (n >> 24) & 0xff,
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// The benchmark's node `i`, as both Ingot and Ironic store it: the
/// column values and the JSON documents.
pub(super) struct FakeNode {
    pub uuid: String,
    pub name: String,
    pub driver: &'static str,
    pub state: &'static str,
    pub power: &'static str,
    pub resource_class: &'static str,
    /// `2026-01-01T00:00:00.<i>+00:00`.
    pub created: String,
    pub instance_uuid: Option<String>,
    pub traits: Vec<String>,
    pub properties: String,
    pub driver_info: String,
    pub driver_internal_info: String,
    pub instance_info: String,
    pub extra: String,
}

/// Node `i`: 50 % available (fast track on), 40 % active, 10 % manageable.
pub(super) fn fake_node(i: usize) -> FakeNode {
    let state = match i % 10 {
        0..=4 => "available",
        5..=8 => "active",
        _ => "manageable",
    };
    let created = format!("2026-01-01T00:00:00.{i:06}+00:00");
    FakeNode {
        uuid: node_uuid(i),
        name: format!("node-{i:05}"),
        driver: if i.is_multiple_of(5) {
            "ipmi"
        } else {
            "fake-hardware"
        },
        state,
        power: if state == "active" {
            "power on"
        } else {
            "power off"
        },
        resource_class: RESOURCE_CLASSES[i % RESOURCE_CLASSES.len()],
        instance_uuid: (state == "active").then(|| format!("10000000-0000-4000-8000-{i:012x}")),
        traits: vec![format!("CUSTOM_RACK_{}", i % 40)],
        properties: "{\"cpus\":64,\"memory_mb\":262144,\"local_gb\":900,\"cpu_arch\":\"x86_64\",\
                     \"capabilities\":\"boot_mode:uefi\"}"
            .to_owned(),
        driver_info: format!(
            "{{\"ipmi_address\":\"10.1.{}.{}\",\"ipmi_username\":\"admin\",\
             \"ipmi_password\":\"secret\",\"deploy_kernel\":\"http://images/ipa.kernel\",\
             \"deploy_ramdisk\":\"http://images/ipa.initramfs\",\"fast_track\":{}}}",
            (i / 250) % 256,
            i % 250,
            state == "available",
        ),
        driver_internal_info: format!(
            "{{\"last_power_state_change\":\"{created}\",\"clean_steps\":null}}"
        ),
        instance_info: if state == "active" {
            "{\"image_source\":\"http://images/ubuntu.qcow2\",\"root_gb\":100,\"display_name\":\"vm\"}"
                .to_owned()
        } else {
            "{}".to_owned()
        },
        extra: format!("{{\"rack\":\"r{}\"}}", i % 40),
        created,
    }
}

/// `INSERT` statements for node `i` and its two ports (schema 0001's columns).
fn node_sql(i: usize, out: &mut String) {
    let f = fake_node(i);
    let uuid = &f.uuid;
    let (state, created) = (f.state, &f.created);
    let data = format!(
        "{{\"uuid\":\"{uuid}\",\"name\":\"{}\",\"driver\":\"{}\",\
         \"provision_state\":\"{state}\",\"power_state\":\"{}\",\
         \"resource_class\":\"{}\",\"conductor_group\":\"\",\"created_at\":\"{created}\",\
         \"instance_uuid\":{},\"traits\":{},\"properties\":{},\"driver_info\":{},\
         \"driver_internal_info\":{},\"instance_info\":{},\"extra\":{}}}",
        f.name,
        f.driver,
        f.power,
        f.resource_class,
        f.instance_uuid
            .as_ref()
            .map(|u| format!("\"{u}\""))
            .unwrap_or_else(|| "null".into()),
        serde_json::to_string(&f.traits).unwrap_or_default(),
        f.properties,
        f.driver_info,
        f.driver_internal_info,
        f.instance_info,
        f.extra,
    );
    let instance_sql = f
        .instance_uuid
        .map(|u| format!("'{u}'"))
        .unwrap_or_else(|| "NULL".into());
    let _ = writeln!(
        out,
        "INSERT INTO nodes (uuid, name, instance_uuid, provision_state, reservation, version, \
         created_at, data) VALUES ('{uuid}', '{}', {instance_sql}, '{state}', NULL, 1, \
         '{created}', '{data}');",
        f.name
    );
    for k in 0..2 {
        let (pu, m) = (port_uuid(i, k), mac(i, k));
        let _ = writeln!(
            out,
            "INSERT INTO ports (uuid, address, node_uuid, created_at, data) VALUES ('{pu}', '{m}', \
             '{uuid}', '{created}', '{{\"uuid\":\"{pu}\",\"address\":\"{m}\",\"node_uuid\":\"{uuid}\",\
             \"pxe_enabled\":{},\"created_at\":\"{created}\",\"local_link_connection\":{}}}');",
            k == 0,
            local_link(i, k),
        );
    }
}

/// Port `k` of node `i`'s `local_link_connection`.
pub(super) fn local_link(i: usize, k: usize) -> String {
    format!("{{\"switch_id\":\"aa:bb:cc:dd:ee:ff\",\"port_id\":\"Ethernet{i}/{k}\"}}")
}

fn write_config(dir: &Path, port: u16, db_url: &str) -> Result<PathBuf> {
    let path = dir.join("coordinator.toml");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase = \"{db_url}\"\n\n[power_sync]\ninterval_ms = 0\n"
    );
    std::fs::write(&path, text).with_context(|| path.display().to_string())?;
    Ok(path)
}

/// One keep-alive HTTP/1.1 connection to the coordinator (or to Ironic).
pub(super) struct Client {
    port: u16,
    conn: BufReader<TcpStream>,
    /// The server processes whose CPU time a call is charged (each with
    /// its descendants): the coordinator, and PostgreSQL's postmaster.
    servers: Vec<u32>,
}

impl Client {
    pub(super) fn connect(port: u16) -> Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            port,
            conn: BufReader::new(s),
            servers: Vec::new(),
        })
    }

    /// `GET path`: status and body. A connection the server closed (its
    /// keep-alive ended) is opened again once.
    pub(super) fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>)> {
        match self.get_once(path) {
            Ok(Some(r)) => Ok(r),
            Ok(None) | Err(_) => {
                let servers = std::mem::take(&mut self.servers);
                *self = Self::connect(self.port)?;
                self.servers = servers;
                self.get_once(path)?
                    .with_context(|| format!("GET {path}: connection closed"))
            }
        }
    }

    fn get_once(&mut self, path: &str) -> Result<Option<(u16, Vec<u8>)>> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             X-OpenStack-Ironic-API-Version: latest\r\nAccept: application/json\r\n\r\n",
            self.port
        );
        self.conn.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if self.conn.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.conn.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = Some(v.trim().parse::<usize>()?);
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        if chunked {
            return Ok(Some((status, self.read_chunks()?)));
        }
        let mut body = vec![0; len.context("no Content-Length")?];
        self.conn.read_exact(&mut body)?;
        Ok(Some((status, body)))
    }

    /// A chunked body (Ironic's WSGI server may send one).
    fn read_chunks(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.conn.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    line.clear();
                    if self.conn.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.conn.read_exact(&mut body[start..])?;
            line.clear();
            self.conn.read_line(&mut line)?;
        }
    }

    /// CPU seconds each server has used so far.
    fn server_cpu(&self) -> Vec<f64> {
        self.servers
            .iter()
            .map(|&p| super::fleet::cpu_seconds(p))
            .collect()
    }

    /// Each server's CPU milliseconds per call since `before`, over `calls`.
    fn cpu_since(&self, before: &[f64], calls: usize) -> Vec<f64> {
        self.server_cpu()
            .iter()
            .zip(before)
            .map(|(now, was)| (now - was) * 1000.0 / calls.max(1) as f64)
            .collect()
    }

    /// `GET path`, expecting 200; the body parsed.
    fn get_json(&mut self, path: &str) -> Result<serde_json::Value> {
        Self::parse_ok(path, self.get(path)?)
    }

    /// The body of a 200 answer to `path`, parsed (outside the timed part).
    fn parse_ok(path: &str, (status, body): (u16, Vec<u8>)) -> Result<serde_json::Value> {
        if status != 200 {
            bail!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// Latencies of one kind of call.
struct Stats {
    name: &'static str,
    ms: Vec<f64>,
    /// Each server's CPU milliseconds per call (the coordinator's, then
    /// PostgreSQL's; Ironic's process tree), averaged over the calls; the
    /// kernel counts in ticks (10 ms), so a few hundred calls are needed.
    cpu_ms: Vec<f64>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
        v[idx.min(v.len() - 1)]
    }

    /// Calls per second, one client, back to back (the client's own
    /// parsing and checks left out).
    fn per_s(&self) -> f64 {
        let busy: f64 = self.ms.iter().sum::<f64>() / 1000.0;
        self.ms.len() as f64 / busy
    }
}

/// Path and query of a `next` link.
fn path_of(next: &str) -> Option<String> {
    let rest = next.split_once("://")?.1;
    Some(rest[rest.find('/')?..].to_owned())
}

/// Walks a paginated list from `first` to its end, `walks` times; one
/// sample per page. Checks that every walk sees `expect` items.
fn walk(
    c: &mut Client,
    name: &'static str,
    first: &str,
    walks: usize,
    expect: usize,
) -> Result<Stats> {
    let mut ms = Vec::new();
    let cpu = c.server_cpu();
    for _ in 0..walks {
        let mut path = Some(first.to_owned());
        let mut seen = 0;
        while let Some(p) = path.take() {
            let t = Instant::now();
            let answer = c.get(&p)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let doc = Client::parse_ok(&p, answer)?;
            seen += doc["nodes"].as_array().map_or(0, Vec::len);
            path = doc["next"].as_str().and_then(path_of);
        }
        if seen != expect {
            bail!("{name}: a walk saw {seen} nodes, expected {expect}");
        }
    }
    let cpu_ms = c.cpu_since(&cpu, ms.len());
    Ok(Stats { name, ms, cpu_ms })
}

/// `n` calls of `path(k)`, one sample each, all expected to answer 200.
fn repeat(
    c: &mut Client,
    name: &'static str,
    n: usize,
    path: impl Fn(usize) -> String,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Result<Stats> {
    let mut ms = Vec::with_capacity(n);
    let cpu = c.server_cpu();
    for k in 0..n {
        let p = path(k);
        let t = Instant::now();
        let answer = c.get(&p)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let doc = Client::parse_ok(&p, answer)?;
        if !check(&doc) {
            bail!("{name}: unexpected answer to {p}: {doc}");
        }
    }
    let cpu_ms = c.cpu_since(&cpu, n);
    Ok(Stats { name, ms, cpu_ms })
}

/// A spread of indexes in 0..n (a fixed multiplicative walk, no RNG crate).
fn spread(k: usize, n: usize) -> usize {
    (k.wrapping_mul(7919).wrapping_add(13)) % n
}

/// The five calls of the benchmark, in this order: the detail walk, Nova's
/// walk, the filtered list, ports by MAC and the agent's lookup. `walks`
/// walks of the lists, `requests` of each other call.
fn core_calls(c: &mut Client, n: usize, walks: usize, requests: usize) -> Result<Vec<Stats>> {
    let mut out = vec![walk(
        c,
        "nodes?detail=true&limit=1000 (per page)",
        "/v1/nodes?detail=true&limit=1000",
        walks,
        n,
    )?];
    out.push(walk(
        c,
        "nodes?fields=<Nova's 11> (per page)",
        &format!("/v1/nodes?fields={NOVA_FIELDS}"),
        walks,
        n,
    )?);
    out.push(repeat(
        c,
        "nodes?provision_state=available&resource_class=…",
        requests,
        |_| filtered_path(""),
        |d| d["nodes"].as_array().map(Vec::len) == Some(filtered_count(n)),
    )?);
    out.push(repeat(
        c,
        "ports?address=<MAC>",
        requests,
        |k| format!("/v1/ports?address={}", mac(spread(k, n), k % 2)),
        |d| d["ports"].as_array().map(Vec::len) == Some(1),
    )?);
    // Lookups of available nodes (i % 10 <= 4): fast track is on for them.
    let available: Vec<usize> = (0..n).filter(|i| i % 10 <= 4).collect();
    out.push(repeat(
        c,
        "lookup?addresses=<MAC> (agent)",
        requests,
        |k| {
            let i = available[spread(k, available.len())];
            format!("/v1/lookup?addresses={}", mac(i, 0))
        },
        |d| d["node"]["uuid"].is_string(),
    )?);
    Ok(out)
}

/// The filtered list's path, with `extra` appended to its query.
fn filtered_path(extra: &str) -> String {
    format!(
        "/v1/nodes?provision_state=available&resource_class={}{extra}",
        RESOURCE_CLASSES[0]
    )
}

/// How many nodes the filtered list returns (a page of at most 1,000).
fn filtered_count(n: usize) -> usize {
    (0..n)
        .filter(|i| i % 10 <= 4 && i % RESOURCE_CLASSES.len() == 0)
        .count()
        .min(1000)
}

fn walks_for(a: &Args) -> usize {
    (a.requests / a.nodes.div_ceil(1000)).clamp(2, 20)
}

fn measure_calls(port: u16, servers: Vec<u32>, a: &Args) -> Result<Vec<Stats>> {
    let n = a.nodes;
    let mut c = Client::connect(port)?;
    c.servers = servers;
    // Warm-up: one of each.
    c.get_json("/v1/nodes?limit=1")?;
    let mut out = core_calls(&mut c, n, walks_for(a), a.requests)?;
    // The in-memory path, as every list ran before (every node read,
    // rendered, sorted and cut per request): the same calls with a
    // `conductor` filter, which every node passes but no column holds.
    let me = c.get_json("/v1/nodes?fields=conductor&limit=1")?;
    let me = me["nodes"][0]["conductor"]
        .as_str()
        .context("no conductor on the first node")?
        .to_owned();
    out.push(walk(
        &mut c,
        "  in memory: detail=true&limit=1000 (per page)",
        &format!("/v1/nodes?detail=true&limit=1000&conductor={me}"),
        1,
        n,
    )?);
    out.push(walk(
        &mut c,
        "  in memory: fields=<Nova's 11> (per page)",
        &format!("/v1/nodes?fields={NOVA_FIELDS}&conductor={me}"),
        1,
        n,
    )?);
    out.push(repeat(
        &mut c,
        "  in memory: provision_state=…&resource_class=…",
        (a.requests / 10).max(5),
        |_| filtered_path(&format!("&conductor={me}")),
        |d| d["nodes"].as_array().map(Vec::len) == Some(filtered_count(n)),
    )?);
    Ok(out)
}

/// The same five calls on Ironic: one walk of each list, and a tenth of
/// the requests (at least 20) of the others (Ironic is slower).
fn measure_ironic(port: u16, pid: u32, a: &Args) -> Result<Vec<Stats>> {
    let mut c = Client::connect(port)?;
    c.servers = vec![pid];
    c.get_json("/v1/nodes?limit=1")?;
    core_calls(&mut c, a.nodes, 1, (a.requests / 10).max(20))
}

/// Writes `stats`' samples to `dir/<backend>.tsv` (see `--samples`).
fn write_samples(dir: &Path, backend: &str, stats: &[Stats]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut out = String::from("call\tsample\tms\n");
    for s in stats {
        for (k, ms) in s.ms.iter().enumerate() {
            let _ = writeln!(out, "{}\t{k}\t{ms:.3}", s.name.trim());
        }
    }
    let file = dir.join(format!(
        "{}.tsv",
        backend.to_lowercase().replace([' ', '(', ')'], "")
    ));
    std::fs::write(&file, out).with_context(|| format!("writing {}", file.display()))
}

fn print_table(backend: &str, stats: &[Stats], target: bool) {
    println!("\n{backend}:");
    println!(
        "  {:<50} {:>8} {:>9} {:>9} {:>9}  CPU ms a call (server + database)",
        "call", "samples", "p50 ms", "p99 ms", "calls/s"
    );
    for s in stats {
        let cpu: Vec<String> = s.cpu_ms.iter().map(|c| format!("{c:.2}")).collect();
        println!(
            "  {:<50} {:>8} {:>9.2} {:>9.2} {:>9.1}  {}",
            s.name,
            s.ms.len(),
            s.pct(50.0),
            s.pct(99.0),
            s.per_s(),
            cpu.join(" + ")
        );
    }
    for (sql, mem) in [(0, 5), (1, 6), (2, 7)] {
        if let (Some(s), Some(m)) = (stats.get(sql), stats.get(mem)) {
            println!(
                "  in SQL vs in memory, {}: {:.1}x faster at p50",
                s.name.trim(),
                m.pct(50.0) / s.pct(50.0)
            );
        }
    }
    if !target {
        return;
    }
    let worst = stats
        .iter()
        .filter(|s| !s.name.starts_with("  in memory"))
        .map(|s| s.pct(99.0))
        .fold(0.0_f64, f64::max);
    println!(
        "  worst p99: {worst:.2} ms (target: under 50 ms) -> {}",
        if worst < 50.0 { "met" } else { "NOT met" }
    );
}

/// Loads `sql` (one statement a line) into the database: SQLite with the
/// `sqlite3` shell, PostgreSQL with `psql` in chunks under the argument size limit.
fn load(
    sql: &str,
    sqlite: Option<&Path>,
    pg: Option<(&ingot_pg_cluster::Cluster, &str)>,
) -> Result<()> {
    if let Some(db) = sqlite {
        let file = db.with_extension("load.sql");
        std::fs::write(&file, format!("BEGIN;\n{sql}COMMIT;\n"))?;
        util::output(
            Command::new("sqlite3")
                .arg(db)
                .arg(format!(".read {}", file.display())),
        )?;
    }
    if let Some((cluster, name)) = pg {
        let mut chunk = String::new();
        for line in sql.lines() {
            if chunk.len() + line.len() > 100_000 {
                cluster.psql(name, &chunk)?;
                chunk.clear();
            }
            chunk.push_str(line);
            chunk.push('\n');
        }
        if !chunk.is_empty() {
            cluster.psql(name, &chunk)?;
        }
    }
    Ok(())
}

/// The PostgreSQL cluster's postmaster (the first line of its pid file):
/// its backends are its children.
fn postmaster(cluster: &ingot_pg_cluster::Cluster) -> Option<u32> {
    std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Creates the schema with a first start, loads the data, starts the
/// coordinator for good (timing the start, which fills the list columns)
/// and measures.
fn run_backend(
    a: &Args,
    bin: &Path,
    dir: &Path,
    db_url: &str,
    sqlite: Option<&Path>,
    pg: Option<(&ingot_pg_cluster::Cluster, &str)>,
) -> Result<Vec<Stats>> {
    let port = util::free_port()?;
    let config = write_config(dir, port, db_url)?;
    let mut first = start_coordinator(bin, &config, &dir.join("schema.log"))?;
    wait_listening(port, &mut first)?;
    drop(first);
    let mut sql = String::new();
    for i in 0..a.nodes {
        node_sql(i, &mut sql);
    }
    let t = Instant::now();
    load(&sql, sqlite, pg)?;
    println!(
        "inserted {} nodes and {} ports in {:.1} s",
        a.nodes,
        a.nodes * 2,
        t.elapsed().as_secs_f64()
    );
    let log = dir.join("coordinator.log");
    let t = Instant::now();
    let mut coord: Guard = start_coordinator(bin, &config, &log)?;
    wait_listening(port, &mut coord)?;
    println!(
        "the coordinator listens {:.2} s after start (fills the list columns of the new rows)",
        t.elapsed().as_secs_f64()
    );
    let mut servers = vec![coord.0.id()];
    if let Some((cluster, _)) = pg {
        servers.extend(postmaster(cluster));
    }
    let stats = measure_calls(port, servers, a);
    drop(coord);
    stats.with_context(|| format!("coordinator log in {}", log.display()))
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    if Command::new("sqlite3").arg("-version").output().is_err() {
        bail!("needs sqlite3 (apt-get install sqlite3)");
    }
    let bin = match &a.binary {
        Some(b) => b.clone(),
        None => {
            println!("\n==> building the coordinator (release)");
            util::run(util::cargo().args(["build", "--release", "-p", "ingot-coordinator"]))?;
            util::target_dir().join("release").join("ingot-coordinator")
        }
    };
    let dir = std::env::temp_dir().join(format!("ingot-bench-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_both(&a, &bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_both(a: &Args, bin: &Path, dir: &Path) -> Result<()> {
    // The venv first: making it must not happen between measurements.
    let venv = if a.ironic {
        Some(super::api_ironic::venv()?)
    } else {
        None
    };
    println!("\n==> SQLite: {} nodes, {} ports", a.nodes, a.nodes * 2);
    let sdir = dir.join("sqlite");
    std::fs::create_dir_all(&sdir)?;
    let db = sdir.join("ingot.db");
    let sqlite = run_backend(
        a,
        bin,
        &sdir,
        &format!("sqlite://{}", db.display()),
        Some(&db),
        None,
    )?;
    print_table("SQLite", &sqlite, true);
    let ironic = match &venv {
        None => None,
        Some(venv) => {
            println!(
                "\n==> Ironic (SQLite): {} nodes, {} ports",
                a.nodes,
                a.nodes * 2
            );
            let idir = dir.join("ironic");
            std::fs::create_dir_all(&idir)?;
            let server = super::api_ironic::start(venv, &idir, a.nodes)?;
            let stats = measure_ironic(server.port, server.child.id(), a)
                .with_context(|| format!("Ironic's log in {}", server.log.display()));
            drop(server);
            let stats = stats?;
            print_table("Ironic (SQLite)", &stats, false);
            Some(stats)
        }
    };
    let mut pg = None;
    if a.sqlite_only {
    } else if ingot_pg_cluster::find_bin().is_none() {
        println!("\nPostgreSQL: skipped (no server binaries; apt-get install postgresql)");
    } else {
        println!("\n==> PostgreSQL: {} nodes, {} ports", a.nodes, a.nodes * 2);
        let pdir = dir.join("pg");
        std::fs::create_dir_all(&pdir)?;
        let cluster = ingot_pg_cluster::Cluster::start(&pdir.join("cluster"))?;
        let url = cluster.create_db("ingot_bench_api")?;
        pg = Some(run_backend(
            a,
            bin,
            &pdir,
            &url,
            None,
            Some((&cluster, "ingot_bench_api")),
        )?);
    }
    print_table("SQLite", &sqlite, true);
    if let Some(pg) = &pg {
        print_table("PostgreSQL", pg, true);
    }
    if let Some(dir) = &a.samples {
        write_samples(dir, "SQLite", &sqlite)?;
        if let Some(pg) = &pg {
            write_samples(dir, "PostgreSQL", pg)?;
        }
        if let Some(ironic) = &ironic {
            write_samples(dir, "Ironic", ironic)?;
        }
        println!("\nsamples written to {}", dir.display());
    }
    if let Some(ironic) = &ironic {
        print_table("Ironic (SQLite)", ironic, false);
        let mut ours = vec![("Ingot SQLite", sqlite.as_slice())];
        if let Some(pg) = &pg {
            ours.push(("Ingot PostgreSQL", pg.as_slice()));
        }
        print_vs_ironic(&ours, ironic);
    }
    Ok(())
}

/// The five calls side by side with Ironic's, and the throughput ratios
/// (calls per second, one client, against Ironic's).
fn print_vs_ironic(ours: &[(&str, &[Stats])], ironic: &[Stats]) {
    println!("\nSide by side with Ironic (p50 / p99 ms, and throughput against Ironic's):");
    let mut head = format!("  {:<50}", "call");
    for (name, _) in ours {
        let _ = write!(head, " {name:>28}");
    }
    let _ = write!(head, " {:>22}", "Ironic (SQLite)");
    println!("{head}");
    let mut worst = f64::INFINITY;
    for (i, theirs) in ironic.iter().enumerate() {
        let mut line = format!("  {:<50}", theirs.name);
        for (_, stats) in ours {
            let Some(s) = stats.get(i) else { continue };
            let ratio = s.per_s() / theirs.per_s();
            worst = worst.min(ratio);
            let _ = write!(
                line,
                " {:>9.2} / {:>8.2} ({:>5.1}x)",
                s.pct(50.0),
                s.pct(99.0),
                ratio
            );
        }
        let _ = write!(
            line,
            " {:>10.2} / {:>9.2}",
            theirs.pct(50.0),
            theirs.pct(99.0)
        );
        println!("{line}");
    }
    println!(
        "  lowest throughput ratio: {worst:.1}x (target: at least 10x) -> {}",
        if worst >= 10.0 { "met" } else { "NOT met" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_unique_and_next_links_parse() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..3000 {
            for k in 0..2 {
                assert!(seen.insert(mac(i, k)));
            }
        }
        assert_eq!(
            path_of("http://127.0.0.1:6385/v1/nodes?limit=2&marker=x").as_deref(),
            Some("/v1/nodes?limit=2&marker=x")
        );
    }
}
