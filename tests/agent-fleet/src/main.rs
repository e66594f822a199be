//! `ingot-agent-fleet`: the fleet benchmark's scenario, against Ingot or
//! OpenStack Ironic (the same API, the same simulated agents).
//!
//! ```text
//! ingot-agent-fleet --api http://127.0.0.1:6385 --nodes 1000 --flavor ingot|ironic
//!     [--bmc-base-port 20000 --bmc-user admin --bmc-password secret]
//!     [--wipe-ms 2000] [--write-ms 5000] [--heartbeat-s 10] [--timeout-s 1800]
//! ```
//!
//! Starts N simulated agents (agent i on 127.100.(i / 250).(i % 250 + 1):9999,
//! MAC 52:54:01:…), serves a 1 MiB image on 127.0.0.1, enrolls N nodes (Ingot:
//! `ipmi`, BMC i on UDP port base + i, an `ingot-bmc-fleet` BMC run in this
//! process; Ironic: `fake-hardware`), then drives every node at once through
//! manage, provide (automated cleaning) and deploy with a config drive. In a
//! phase that needs the ramdisk, an Ingot node's agent boots when the
//! coordinator powers its machine on (as a real one: never before), an
//! Ironic node's with the request (fake power has nothing to watch).
//! Progress goes to stderr; the result is one JSON object on stdout, with
//! the heartbeat-to-next-command latencies overall and by command.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ingot_agent_fleet::{Knobs, SimAgent, Stats, quantile};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// A gzipped, base64 config drive (64 KiB of zeros), as Nova sends one.
const CONFIGDRIVE: &str = "H4sIAAAAAAAC/+3BAQEAAACAkP6v7ggKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAauuOl9cAAAEA";
/// SHA-256 of the served image (1 MiB of zeros).
const IMAGE_SHA256: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
const IMAGE_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Ingot,
    Ironic,
}

struct Args {
    api: String,
    nodes: usize,
    flavor: Flavor,
    bmc_base_port: u16,
    bmc_user: String,
    bmc_password: String,
    knobs: Knobs,
    timeout: Duration,
}

const USAGE: &str = "usage: ingot-agent-fleet --api URL --nodes N --flavor ingot|ironic \
    [--bmc-base-port P --bmc-user U --bmc-password W] [--wipe-ms MS] [--write-ms MS] \
    [--heartbeat-s S] [--timeout-s S]";

fn parse() -> Result<Args> {
    let mut a = Args {
        api: String::new(),
        nodes: 0,
        flavor: Flavor::Ingot,
        bmc_base_port: 20000,
        bmc_user: "admin".into(),
        bmc_password: "secret".into(),
        knobs: Knobs {
            wipe: Duration::from_millis(2000),
            write: Duration::from_millis(5000),
            heartbeat: Duration::from_secs(10),
            lookup_retry: Duration::from_secs(1),
        },
        timeout: Duration::from_secs(1800),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().context(USAGE)?;
        match k.as_str() {
            "--api" => a.api = v.trim_end_matches('/').to_owned(),
            "--nodes" => a.nodes = v.parse().context("--nodes")?,
            "--flavor" => {
                a.flavor = match v.as_str() {
                    "ingot" => Flavor::Ingot,
                    "ironic" => Flavor::Ironic,
                    _ => bail!(USAGE),
                }
            }
            "--bmc-base-port" => a.bmc_base_port = v.parse().context("--bmc-base-port")?,
            "--bmc-user" => a.bmc_user = v.clone(),
            "--bmc-password" => a.bmc_password = v.clone(),
            "--wipe-ms" => a.knobs.wipe = Duration::from_millis(v.parse().context("--wipe-ms")?),
            "--write-ms" => a.knobs.write = Duration::from_millis(v.parse().context("--write-ms")?),
            "--heartbeat-s" => {
                a.knobs.heartbeat = Duration::from_secs(v.parse().context("--heartbeat-s")?)
            }
            "--timeout-s" => a.timeout = Duration::from_secs(v.parse().context("--timeout-s")?),
            _ => bail!(USAGE),
        }
    }
    if a.api.is_empty() || a.nodes == 0 || a.nodes > 60_000 {
        bail!("{USAGE} (N between 1 and 60000)");
    }
    Ok(a)
}

fn agent_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        100,
        u8::try_from(i / 250).unwrap_or(u8::MAX),
        u8::try_from(i % 250 + 1).unwrap_or(u8::MAX),
    ))
}

fn agent_mac(i: usize) -> String {
    format!(
        "52:54:01:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// The benchmark's API client (from 127.0.0.1, keep-alive).
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", "1.78");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// A call that must answer `want` (retried on 409/503, a busy node).
    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
        want: u16,
    ) -> Result<Value> {
        let mut tries = 0;
        loop {
            let (st, v) = match self.call(method.clone(), path, Some(body.clone())).await {
                Ok(r) => r,
                // A dropped connection (Ironic's API under load): again.
                Err(e) if tries < 5 => {
                    eprintln!("  {e:#}; trying again");
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if st == want {
                return Ok(v);
            }
            tries += 1;
            if (st == 409 || st == 503) && tries < 120 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            bail!("{method} {path}: {st} {v}");
        }
    }

    /// Every node's (provision_state, last_error), by UUID.
    async fn states(&self) -> Result<BTreeMap<String, (String, Option<String>)>> {
        let mut out = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let mut path = "/v1/nodes?fields=uuid,provision_state,last_error&limit=1000".to_owned();
            if let Some(m) = &marker {
                path.push_str(&format!("&marker={m}"));
            }
            let (st, v) = self.call(reqwest::Method::GET, &path, None).await?;
            if st != 200 {
                bail!("GET {path}: {st} {v}");
            }
            let nodes = v["nodes"].as_array().context("no nodes in the listing")?;
            for n in nodes {
                if let (Some(u), Some(s)) = (n["uuid"].as_str(), n["provision_state"].as_str()) {
                    out.insert(
                        u.to_owned(),
                        (s.to_owned(), n["last_error"].as_str().map(str::to_owned)),
                    );
                }
            }
            match nodes.last().and_then(|l| l["uuid"].as_str()) {
                Some(last) if nodes.len() == 1000 => marker = Some(last.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

/// Serves the image (GET and HEAD) on 127.0.0.1; returns its URL.
async fn image_server() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/img.raw", listener.local_addr()?);
    let data = axum::body::Bytes::from(vec![0u8; IMAGE_BYTES]);
    let app = axum::Router::new().route(
        "/img.raw",
        axum::routing::get(move || {
            let d = data.clone();
            async move { d }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

fn node_body(a: &Args, i: usize, image: &str) -> Value {
    let instance_info = json!({
        "image_source": image, "image_checksum": IMAGE_SHA256,
        "image_disk_format": "raw", "root_gb": 10,
    });
    let properties =
        json!({"cpus": 64, "memory_mb": 262144, "local_gb": 894, "cpu_arch": "x86_64"});
    match a.flavor {
        Flavor::Ingot => json!({
            "name": format!("fleet-{i:05}"), "driver": "ipmi",
            "deploy_interface": "direct", "boot_interface": "ipxe",
            "management_interface": "ipmitool", "power_interface": "ipmitool",
            "driver_info": {
                "ipmi_address": "127.0.0.1",
                "ipmi_port": usize::from(a.bmc_base_port) + i,
                "ipmi_username": a.bmc_user, "ipmi_password": a.bmc_password,
                "deploy_kernel": "http://127.0.0.1:1/ipa.kernel",
                "deploy_ramdisk": "http://127.0.0.1:1/ipa.initramfs",
            },
            "instance_info": instance_info, "properties": properties,
        }),
        Flavor::Ironic => json!({
            "name": format!("fleet-{i:05}"), "driver": "fake-hardware",
            "deploy_interface": "direct", "boot_interface": "fake",
            "management_interface": "noop", "power_interface": "fake",
            "network_interface": "noop",
            "driver_info": {
                "deploy_kernel": "http://127.0.0.1:1/ipa.kernel",
                "deploy_ramdisk": "http://127.0.0.1:1/ipa.initramfs",
            },
            "instance_info": instance_info, "properties": properties,
        }),
    }
}

/// Tells each agent when its machine's BMC started it or switched it off
/// (polled every 10 ms; the BMC counts starts, so an off-and-on between two
/// looks is seen).
fn watch_power(bmcs: ingot_bmc_fleet::Bmcs, agents: Vec<SimAgent>) {
    tokio::spawn(async move {
        let mut seen = vec![(false, 0u64); agents.len()];
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for ((agent, bmc), last) in agents.iter().zip(bmcs.iter()).zip(seen.iter_mut()) {
                let now = {
                    let b = ingot_bmc_fleet::lock(bmc);
                    (b.power_on(), b.boots())
                };
                if now != *last {
                    let started = now.1 != last.1;
                    *last = now;
                    agent.power_changed(started, now.0);
                }
            }
        }
    });
}

/// Whether and when a phase boots the agents.
#[derive(Clone, Copy)]
enum Ramdisk {
    /// The phase needs no ramdisk.
    No,
    /// Each agent boots when the coordinator starts its machine through
    /// the BMC (Ingot's `ipmi` nodes).
    OnPower,
    /// Each agent boots with the request (Ironic's `fake` power, which has
    /// nothing to watch).
    Now,
}

/// States a phase ends in badly.
fn failed_state(s: &str) -> bool {
    s.ends_with("failed") || s == "error"
}

/// One phase: `target` sent to every node at once (`ramdisk`: whether and
/// when each node's agent boots), then the API polled until every node is in `done` or
/// failed. Returns (seconds, failures as (uuid, state, last_error)).
async fn phase(
    api: &Api,
    uuids: &[String],
    agents: &[SimAgent],
    target: Value,
    done: &str,
    ramdisk: Ramdisk,
    timeout: Duration,
) -> Result<(f64, Vec<(String, String, String)>)> {
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for (i, u) in uuids.iter().enumerate() {
        let (api, u, target, sem) = (api.clone(), u.clone(), target.clone(), sem.clone());
        let agent = agents[i].clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            match ramdisk {
                Ramdisk::No => {}
                Ramdisk::OnPower => agent.arm(),
                Ramdisk::Now => agent.boot(),
            }
            api.expect(
                reqwest::Method::PUT,
                &format!("/v1/nodes/{u}/states/provision"),
                target,
                202,
            )
            .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "  {} requests accepted in {:.1} s",
        uuids.len(),
        t0.elapsed().as_secs_f64()
    );
    let index: BTreeMap<&str, usize> = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let states = match api.states().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("  polling the states: {e:#}");
                continue;
            }
        };
        let mut n_done = 0;
        let mut failures = Vec::new();
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for (u, (s, err)) in &states {
            let Some(&i) = index.get(u.as_str()) else {
                continue;
            };
            *by_state.entry(s.as_str()).or_default() += 1;
            if s == done {
                n_done += 1;
                agents[i].disarm();
                agents[i].power_off();
            } else if failed_state(s) {
                agents[i].disarm();
                agents[i].power_off();
                failures.push((u.clone(), s.clone(), err.clone().unwrap_or_default()));
            }
        }
        if n_done + failures.len() == uuids.len() {
            return Ok((t0.elapsed().as_secs_f64(), failures));
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!("  {:.0} s: {by_state:?}", t0.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        if t0.elapsed() > timeout {
            let stuck: Vec<(String, String, String)> = states
                .iter()
                .filter(|(u, (s, _))| index.contains_key(u.as_str()) && s != done)
                .map(|(u, (s, e))| (u.clone(), s.clone(), e.clone().unwrap_or_default()))
                .collect();
            eprintln!("  timed out with {by_state:?}");
            return Ok((t0.elapsed().as_secs_f64(), stuck));
        }
    }
}

fn failures_json(f: &[(String, String, String)]) -> Value {
    let mut by: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (_, s, e) in f {
        let entry = by.entry(s.clone()).or_insert((0, e.clone()));
        entry.0 += 1;
    }
    json!(
        by.into_iter()
            .map(|(s, (n, e))| json!({"state": s, "count": n, "example_error": e}))
            .collect::<Vec<_>>()
    )
}

async fn scenario(a: Args) -> Result<Value> {
    let stats = Arc::new(Stats::default());
    let image = image_server().await?;
    eprintln!("==> {} simulated agents", a.nodes);
    let mut agents = Vec::with_capacity(a.nodes);
    for i in 0..a.nodes {
        agents.push(
            SimAgent::start(&a.api, agent_ip(i), &agent_mac(i), a.knobs, stats.clone())
                .await
                .with_context(|| format!("agent {i} on {}", agent_ip(i)))?,
        );
    }
    // Ingot's nodes: their BMCs, in this process, so that each agent boots
    // when the coordinator powers its machine on, as a real one does.
    let _bmcs = match a.flavor {
        Flavor::Ingot => {
            let fleet =
                ingot_bmc_fleet::start(a.nodes, a.bmc_base_port, &a.bmc_user, &a.bmc_password)
                    .await
                    .context("starting the BMCs")?;
            watch_power(fleet.bmcs(), agents.clone());
            eprintln!(
                "==> {} simulated BMCs on 127.0.0.1:{}..",
                a.nodes, a.bmc_base_port
            );
            Some(fleet)
        }
        Flavor::Ironic => None,
    };
    let api = Api {
        base: a.api.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
    };
    eprintln!("==> enrolling {} nodes", a.nodes);
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..a.nodes {
        let (api, sem, body) = (api.clone(), sem.clone(), node_body(&a, i, &image));
        let mac = agent_mac(i);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let n = api
                .expect(reqwest::Method::POST, "/v1/nodes", body, 201)
                .await?;
            let uuid = n["uuid"].as_str().context("no uuid")?.to_owned();
            api.expect(
                reqwest::Method::POST,
                "/v1/ports",
                json!({"address": mac, "node_uuid": uuid}),
                201,
            )
            .await?;
            anyhow::Ok(uuid)
        }));
    }
    let mut uuids = Vec::with_capacity(a.nodes);
    for t in tasks {
        uuids.push(t.await??);
    }
    let enroll_s = t.elapsed().as_secs_f64();
    eprintln!("  {enroll_s:.1} s");

    let start = Instant::now();
    let mut phases = serde_json::Map::new();
    let mut all_failures = Vec::new();
    for (name, target, done, boot) in [
        ("manage", json!({"target": "manage"}), "manageable", false),
        ("provide", json!({"target": "provide"}), "available", true),
        (
            "deploy",
            json!({"target": "active", "configdrive": CONFIGDRIVE}),
            "active",
            true,
        ),
    ] {
        eprintln!("==> {name}: all {} nodes at once", a.nodes);
        let (secs, failures) = phase(
            &api,
            &uuids,
            &agents,
            target,
            done,
            match (boot, a.flavor) {
                (false, _) => Ramdisk::No,
                (true, Flavor::Ingot) => Ramdisk::OnPower,
                (true, Flavor::Ironic) => Ramdisk::Now,
            },
            a.timeout,
        )
        .await?;
        eprintln!("  {name}: {secs:.1} s, {} failed", failures.len());
        phases.insert(
            name.into(),
            json!({"seconds": secs, "failed": failures.len(), "failures": failures_json(&failures)}),
        );
        if !failures.is_empty() {
            // Nodes that failed a phase are left out of the next ones.
            let bad: std::collections::BTreeSet<&str> =
                failures.iter().map(|(u, _, _)| u.as_str()).collect();
            let keep: Vec<usize> = (0..uuids.len())
                .filter(|&i| !bad.contains(uuids[i].as_str()))
                .collect();
            uuids = keep.iter().map(|&i| uuids[i].clone()).collect();
            agents = keep.iter().map(|&i| agents[i].clone()).collect();
            all_failures.extend(failures);
        }
        if uuids.is_empty() {
            break;
        }
    }
    let total_s = start.elapsed().as_secs_f64();
    let lat = stats.latencies_us();
    let ms = |q: f64| quantile(&lat, q).map(|us| us as f64 / 1000.0);
    let by_command: serde_json::Map<String, Value> = stats
        .latencies_by_command_us()
        .into_iter()
        .map(|(name, l)| {
            let ms = |q: f64| quantile(&l, q).map(|us| us as f64 / 1000.0);
            (
                name,
                json!({"count": l.len(), "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0)}),
            )
        })
        .collect();
    Ok(json!({
        "nodes": a.nodes,
        "active": uuids.len(),
        "enroll_seconds": enroll_s,
        "total_seconds": total_s,
        "phases": phases,
        "latency_ms": {"count": lat.len(), "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0)},
        "latency_ms_by_command": by_command,
        "lookups": stats.lookups.load(std::sync::atomic::Ordering::Relaxed),
        "heartbeats": stats.heartbeats.load(std::sync::atomic::Ordering::Relaxed),
        "heartbeats_refused": stats.heartbeats_refused.load(std::sync::atomic::Ordering::Relaxed),
        "commands": stats.commands.load(std::sync::atomic::Ordering::Relaxed),
        "http_errors": stats.http_errors.load(std::sync::atomic::Ordering::Relaxed),
        "unknown_commands": stats.unknown_commands(),
    }))
}

fn main() -> Result<()> {
    let a = parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(scenario(a))?;
    println!("{out}");
    Ok(())
}
