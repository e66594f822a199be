//! `cargo xtask bench ha [--nodes N] [--sync-interval-ms MS]
//! [--heartbeat-timeout S] [--ring-reset S]`: three coordinators
//! (`ingot-coordinator serve`, separate processes) on one private PostgreSQL
//! cluster (`tests/pg-cluster`) and N simulated IPMI BMCs (`tests/bmc-fleet`,
//! default 10,000), issue 17 item 8.
//!
//! For each setting of the members' `[conductor]` section (by default two:
//! Ingot's defaults, then `heartbeat_interval = 1`, `heartbeat_timeout = 5`),
//! on a fresh database:
//!
//! 1. **Spread**: once the three members agree on every node's owner
//!    (`GET /v1/nodes?fields=uuid,conductor`, paginated, asked of each), the
//!    number of nodes each owns (target: a third ±10 %).
//! 2. **Takeover**: `c3` is killed with SIGKILL; the time until every node it
//!    owned has another owner in both survivors' views (polled), and the time
//!    until every BMC has answered a power-status query again (from the
//!    fleet's counters: the latest BMC's first query after the kill).
//! 3. **One owner per node**, from the BMCs' side: each BMC records when it
//!    answered Get Chassis Status and in which session (each coordinator has
//!    its own). A node synced by two coordinators in one pass shows as two
//!    queries in different sessions less than half a sync interval apart;
//!    that is counted in the steady state before the kill and after the
//!    takeover (over at least two intervals each).
//!
//! Nodes are enrolled with one SQL statement through `psql` (as the
//! power-sync benchmark does with `sqlite3`), after the first member has run
//! the migrations; node i is BMC i on UDP port 20000 + i.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ingot_pg_cluster::Cluster;

use super::power_sync::{self as ps, BASE_PORT, Guard, PASSWORD, USER};
use crate::util;

/// The members' names (`conductor_name`); the last one is killed.
const MEMBERS: [&str; 3] = ["c1", "c2", "c3"];
const VICTIM: usize = 2;

/// A `[conductor]` section, or none (the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heartbeat {
    interval: u64,
    timeout: u64,
    ring_reset: Option<u64>,
}

struct Args {
    nodes: usize,
    sync_ms: u64,
    settings: Vec<Option<Heartbeat>>,
}

const USAGE: &str = "usage: cargo xtask bench ha [--nodes N] [--sync-interval-ms MS] \
                     [--heartbeat-timeout S] [--ring-reset S]";

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        nodes: 10_000,
        sync_ms: 2_000,
        settings: Vec::new(),
    };
    let mut timeout = None;
    let mut ring_reset = None;
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().context(USAGE)?;
        match k.as_str() {
            "--nodes" => a.nodes = v.parse().context("--nodes")?,
            "--sync-interval-ms" => a.sync_ms = v.parse().context("--sync-interval-ms")?,
            "--heartbeat-timeout" => {
                timeout = Some(v.parse::<u64>().context("--heartbeat-timeout")?)
            }
            "--ring-reset" => ring_reset = Some(v.parse::<u64>().context("--ring-reset")?),
            _ => bail!(USAGE),
        }
    }
    if a.nodes < MEMBERS.len() || a.nodes > 40_000 {
        bail!("--nodes must be between 3 and 40000");
    }
    if a.sync_ms < 200 {
        bail!("--sync-interval-ms must be at least 200");
    }
    a.settings = match timeout {
        // One setting: the timeout asked for, heartbeats 5 times as often.
        Some(t) if t >= 2 => vec![Some(Heartbeat {
            interval: (t / 5).clamp(1, 10),
            timeout: t,
            ring_reset,
        })],
        Some(_) => bail!("--heartbeat-timeout must be at least 2"),
        None => vec![
            None,
            Some(Heartbeat {
                interval: 1,
                timeout: 5,
                ring_reset,
            }),
        ],
    };
    Ok(a)
}

fn label(setting: Option<Heartbeat>) -> String {
    match setting {
        None => "defaults".into(),
        Some(h) => {
            let mut s = format!(
                "heartbeat_interval {}, heartbeat_timeout {}",
                h.interval, h.timeout
            );
            if let Some(r) = h.ring_reset {
                s.push_str(&format!(", hash_ring_reset_interval {r}"));
            }
            s
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// One status query a BMC answered: when (ms since the epoch) and in which session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Query {
    at_ms: u64,
    session: u32,
}

/// The running fleet and its control port.
struct Fleet {
    _guard: Guard,
    control: u16,
    count: usize,
}

impl Fleet {
    fn start(release: &Path, count: usize) -> Result<Fleet> {
        let mut cmd = ps::with_nofile(&release.join("ingot-bmc-fleet"));
        cmd.args(["--count", &count.to_string()])
            .args(["--base-port", &BASE_PORT.to_string()])
            .args(["--user", USER, "--password", PASSWORD])
            .args(["--control-port", "0"]);
        util::announce(&cmd);
        let mut guard = Guard(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the fleet")?,
        );
        let mut line = String::new();
        if let Some(out) = guard.0.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let control = match words.as_slice() {
            ["ready", _, _, control] => control.parse().context("the fleet's control port")?,
            _ => bail!("the fleet did not start: {line:?}"),
        };
        Ok(Fleet {
            _guard: guard,
            control,
            count,
        })
    }

    /// Every BMC's status queries at or after `since_ms`, in BMC order.
    fn queries(&self, since_ms: u64) -> Result<Vec<Vec<Query>>> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.control))?;
        conn.write_all(format!("status-queries {since_ms}\n").as_bytes())?;
        let mut text = String::new();
        conn.read_to_string(&mut text)?;
        parse_queries(&text, self.count)
    }
}

/// Parses the fleet's `status-queries` answer (tests/bmc-fleet/README.md).
fn parse_queries(text: &str, count: usize) -> Result<Vec<Vec<Query>>> {
    let mut out = Vec::with_capacity(count);
    let mut ended = false;
    for line in text.lines() {
        if line == "end" {
            ended = true;
            break;
        }
        let mut words = line.split(' ');
        let index: usize = words.next().unwrap_or_default().parse()?;
        if index != out.len() {
            bail!("the fleet's answer skips BMC {}", out.len());
        }
        let mut queries = Vec::new();
        for w in words {
            let (at, session) = w.split_once('/').context("a query is <at_ms>/<session>")?;
            queries.push(Query {
                at_ms: at.parse()?,
                session: session.parse()?,
            });
        }
        out.push(queries);
    }
    if !ended || out.len() != count {
        bail!(
            "the fleet answered for {} BMCs of {count} (complete: {ended})",
            out.len()
        );
    }
    Ok(out)
}

/// A GET on a member's API (latest microversion), parsed.
fn api_get(port: u16, path: &str) -> Result<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = util::output(Command::new("curl").args([
        "-sS",
        "-f",
        "--max-time",
        "60",
        "-H",
        "X-OpenStack-Ironic-API-Version: latest",
        &url,
    ]))?;
    serde_json::from_str(&out).with_context(|| format!("GET {url}: not JSON"))
}

/// Node i's index from its UUID (`ps::node_uuid`).
fn node_index(uuid: &str) -> Option<usize> {
    usize::from_str_radix(uuid.rsplit('-').next()?, 16).ok()
}

/// Every node's owner as the member on `port` sees it, by node index.
fn owners(port: u16, n: usize) -> Result<Vec<Option<String>>> {
    let mut out = vec![None; n];
    let mut marker: Option<String> = None;
    loop {
        let mut path = String::from("/v1/nodes?fields=uuid,conductor&limit=1000");
        if let Some(m) = &marker {
            path.push_str(&format!("&marker={m}"));
        }
        let page = api_get(port, &path)?;
        let nodes = page["nodes"]
            .as_array()
            .context("no nodes in the listing")?;
        for node in nodes {
            let uuid = node["uuid"].as_str().context("a node without uuid")?;
            if let Some(slot) = node_index(uuid).and_then(|i| out.get_mut(i)) {
                *slot = node["conductor"].as_str().map(str::to_owned);
            }
        }
        match nodes.last().and_then(|l| l["uuid"].as_str()) {
            Some(last) if nodes.len() == 1000 => marker = Some(last.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Whether the member on `port` still names `owner` as some node's owner
/// (`?conductor=` filter, one node asked for: the cheapest listing).
fn names_owner(port: u16, owner: &str) -> Result<bool> {
    let page = api_get(
        port,
        &format!("/v1/nodes?conductor={owner}&fields=uuid&limit=1"),
    )?;
    Ok(page["nodes"].as_array().is_some_and(|a| !a.is_empty()))
}

/// The members `GET /v1/conductors` lists as alive.
fn alive(port: u16) -> Result<Vec<String>> {
    let v = api_get(port, "/v1/conductors")?;
    Ok(v["conductors"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["alive"].as_bool() == Some(true))
                .filter_map(|c| c["hostname"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Nodes per owner (`(none)` for a node without one).
fn spread(view: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in view {
        *m.entry(o.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert(0) += 1;
    }
    m
}

/// What the BMCs saw in one window of time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Length of the window.
    ms: u64,
    /// BMCs with at least one status query in it.
    queried: usize,
    /// BMCs queried in more than one session.
    two_sessions: usize,
    /// BMCs with two queries from different sessions less than half an
    /// interval apart: synced by two coordinators in one pass.
    double: usize,
    /// BMCs with two queries in one session less than half an interval apart.
    repeat: usize,
}

/// Counts what the BMCs saw between `from_ms` (included) and `to_ms` (excluded).
fn window(all: &[Vec<Query>], from_ms: u64, to_ms: u64, interval_ms: u64) -> Window {
    let mut w = Window {
        ms: to_ms.saturating_sub(from_ms),
        ..Window::default()
    };
    for bmc in all {
        let q: Vec<&Query> = bmc
            .iter()
            .filter(|q| q.at_ms >= from_ms && q.at_ms < to_ms)
            .collect();
        if q.is_empty() {
            continue;
        }
        w.queried += 1;
        if q.iter().any(|x| x.session != q[0].session) {
            w.two_sessions += 1;
        }
        let close = |same: bool| {
            q.windows(2).any(|p| {
                (p[0].session == p[1].session) == same
                    && p[1].at_ms.saturating_sub(p[0].at_ms) < interval_ms / 2
            })
        };
        if close(false) {
            w.double += 1;
        }
        if close(true) {
            w.repeat += 1;
        }
    }
    w
}

/// The time from `since_ms` until every BMC had answered a status query, if all have.
fn covered(all: &[Vec<Query>], since_ms: u64) -> Option<u64> {
    all.iter()
        .map(|q| q.iter().find(|q| q.at_ms >= since_ms).map(|q| q.at_ms))
        .try_fold(since_ms, |latest, first| Some(latest.max(first?)))
        .map(|latest| latest - since_ms)
}

/// The enrolment: `n` manageable ipmi nodes in one statement, node i on BMC i.
fn enroll_sql(n: usize) -> String {
    let last = n - 1;
    format!(
        "INSERT INTO nodes (uuid, name, instance_uuid, provision_state, reservation, version, \
         created_at, data) \
         SELECT u, nm, NULL, 'manageable', NULL, 1, created, json_build_object(\
         'uuid', u, 'name', nm, 'driver', 'ipmi', 'power_interface', 'ipmitool', \
         'management_interface', 'ipmitool', 'provision_state', 'manageable', \
         'power_state', 'power off', 'created_at', created, 'driver_info', json_build_object(\
         'ipmi_address', '127.0.0.1', 'ipmi_port', {BASE_PORT} + i, \
         'ipmi_username', '{USER}', 'ipmi_password', '{PASSWORD}'))::text \
         FROM (SELECT i, '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0') AS u, \
         'bmc-' || lpad(i::text, 5, '0') AS nm, \
         '2026-01-01T00:00:00.' || lpad(i::text, 6, '0') || '+00:00' AS created \
         FROM generate_series(0, {last}) AS i) AS g"
    )
}

/// A member's configuration file (docs: ha-interfaces, `[conductor]`).
fn config_text(name: &str, port: u16, db_url: &str, hb: Option<Heartbeat>, sync_ms: u64) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase = \"{db_url}\"\nconductor_name = \"{name}\"\n\n"
    );
    if let Some(h) = hb {
        t.push_str(&format!(
            "[conductor]\nheartbeat_interval = {}\nheartbeat_timeout = {}\n",
            h.interval, h.timeout
        ));
        if let Some(r) = h.ring_reset {
            t.push_str(&format!("hash_ring_reset_interval = {r}\n"));
        }
        t.push('\n');
    }
    t.push_str(&format!(
        "[boot]\napi_url = \"http://127.0.0.1:{port}\"\n\n[power_sync]\ninterval_ms = {sync_ms}\n"
    ));
    t
}

/// The last `power sync pass done` of a member's log: (checked, skipped, elapsed ms).
fn last_pass(log: &Path) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(log).ok()?;
    let l = text
        .lines()
        .rfind(|l| l.contains("power sync pass done") && !l.contains("adopted_only=true"))?;
    Some((
        ps::field(l, "checked")?,
        ps::field(l, "skipped")?,
        ps::field(l, "elapsed_ms")?,
    ))
}

/// Milliseconds since the epoch of a log line's timestamp
/// (`2026-12-06T10:59:14.679888Z …`, tracing's UTC format).
fn log_ms(line: &str) -> Option<u64> {
    let ts = line.get(..26)?;
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, micros) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + micros / 1000;
    u64::try_from(ms).ok()
}

/// From a survivor's log: when (ms since the epoch) it first rebuilt its
/// rings without `victim` at or after `since_ms`, and how many nodes it then
/// synced as moved to it.
fn ring_lost(log: &Path, victim: &str, since_ms: u64) -> Option<(u64, Option<u64>)> {
    let text = std::fs::read_to_string(log).ok()?;
    let quoted = format!("\"{victim}\"");
    let mut lines = text
        .lines()
        .filter(|l| log_ms(l).is_some_and(|t| t >= since_ms));
    let at = lines.by_ref().find_map(|l| {
        let lost = l
            .split_once("hash rings rebuilt")?
            .1
            .split_once("lost=[")?
            .1;
        let lost = lost.split_once(']')?.0;
        lost.contains(&quoted).then(|| log_ms(l)).flatten()
    })?;
    let moved = lines
        .find(|l| l.contains("nodes that moved here"))
        .and_then(|l| ps::field(l, "nodes"));
    Some((at, moved))
}

/// One setting's results.
struct Row {
    setting: String,
    spread: BTreeMap<String, usize>,
    disagree: usize,
    victim_nodes: usize,
    owned_ms: Option<u64>,
    poll_ms: u64,
    rebuilt: Option<u64>,
    covered_ms: Option<u64>,
    before: Window,
    after: Window,
    after_spread: BTreeMap<String, usize>,
}

struct Ctx<'a> {
    n: usize,
    sync_ms: u64,
    release: &'a Path,
    dir: &'a Path,
    cluster: &'a Cluster,
    fleet: &'a Fleet,
}

struct Member {
    name: &'static str,
    port: u16,
    log: std::path::PathBuf,
    guard: Option<Guard>,
}

impl Member {
    fn start(&mut self, ctx: &Ctx<'_>, config: &Path) -> Result<()> {
        let bin = ctx.release.join("ingot-coordinator");
        let mut g = ps::start_coordinator(&bin, config, &self.log)?;
        ps::wait_listening(self.port, &mut g)
            .with_context(|| format!("{}; log in {}", self.name, self.log.display()))?;
        self.guard = Some(g);
        Ok(())
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(g) = &mut self.guard
            && let Some(st) = g.0.try_wait()?
        {
            bail!("{} exited: {st}; log in {}", self.name, self.log.display());
        }
        Ok(())
    }
}

/// Sleeps until the wall clock reads `at_ms`.
fn sleep_until(at_ms: u64) {
    let now = now_ms();
    if at_ms > now {
        std::thread::sleep(Duration::from_millis(at_ms - now));
    }
}

/// Waits until every BMC has answered a status query at or after `since_ms`.
fn wait_covered(ctx: &Ctx<'_>, since_ms: u64, limit: Duration) -> Result<Option<u64>> {
    let t = Instant::now();
    loop {
        let all = ctx.fleet.queries(since_ms)?;
        if let Some(ms) = covered(&all, since_ms) {
            return Ok(Some(ms));
        }
        if t.elapsed() > limit {
            let missing = all.iter().filter(|q| q.is_empty()).count();
            println!("  {missing} BMCs not queried within {} s", limit.as_secs());
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn run_setting(ctx: &Ctx<'_>, k: usize, hb: Option<Heartbeat>) -> Result<Row> {
    let n = ctx.n;
    let setting = label(hb);
    println!("\n==> setting {}: [conductor] {setting}", k + 1);
    let db = format!("ingot_bench_ha_{k}");
    let url = ctx.cluster.create_db(&db)?;
    let dir = ctx.dir.join(format!("setting-{k}"));
    std::fs::create_dir_all(&dir)?;
    let mut members = Vec::new();
    for name in MEMBERS {
        let mut port = util::free_port()?;
        while members.iter().any(|m: &Member| m.port == port) {
            port = util::free_port()?;
        }
        members.push(Member {
            name,
            port,
            log: dir.join(format!("{name}.log")),
            guard: None,
        });
    }
    let configs: Vec<_> = members
        .iter()
        .map(|m| {
            let path = dir.join(format!("{}.toml", m.name));
            std::fs::write(&path, config_text(m.name, m.port, &url, hb, ctx.sync_ms))?;
            Ok(path)
        })
        .collect::<Result<_>>()?;

    // The first member runs the migrations, then the nodes go in with SQL.
    members[0].start(ctx, &configs[0])?;
    let t = Instant::now();
    ctx.cluster.psql(&db, &enroll_sql(n))?;
    println!(
        "enrolled {n} nodes with psql in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    for i in 1..members.len() {
        members[i].start(ctx, &configs[i])?;
    }
    let p0 = members[0].port;
    let t = Instant::now();
    while alive(p0)?.len() < MEMBERS.len() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("{p0}: not 3 alive members within 120 s: {:?}", alive(p0)?);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("3 members alive after {:.1} s", t.elapsed().as_secs_f64());

    // Settle: a ring refresh, then the three views of the ownership must
    // agree (a listing of every node costs seconds: asked a few times only).
    let ring_reset = hb.and_then(|h| h.ring_reset).unwrap_or(15);
    let t = Instant::now();
    let mut views;
    let mut tries = 0;
    loop {
        tries += 1;
        std::thread::sleep(Duration::from_secs(if tries == 1 {
            3
        } else {
            ring_reset + 1
        }));
        for m in &mut members {
            m.check_running()?;
        }
        views = members
            .iter()
            .map(|m| owners(m.port, n))
            .collect::<Result<Vec<_>>>()?;
        let agree = views.iter().all(|v| v == &views[0]) && views[0].iter().all(Option::is_some);
        if agree {
            println!(
                "the members agree on every node's owner ({:.1} s after all were alive)",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        if tries == 4 {
            println!("WARNING: the members' views of the ownership still differ; going on");
            break;
        }
    }
    let steady_from = now_ms();
    let limit = Duration::from_millis(ctx.sync_ms * 5 + 60_000);
    match wait_covered(ctx, steady_from, limit)? {
        Some(ms) => println!("a power sync covered all {n} BMCs in {}", secs(ms)),
        None => println!("WARNING: the power sync did not cover every BMC"),
    }
    // Two more intervals of steady state.
    sleep_until(now_ms() + ctx.sync_ms * 5 / 2);
    let view = owners(p0, n)?;
    let sp = spread(&view);
    let disagree = members[1..]
        .iter()
        .map(|m| owners(m.port, n))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .map(|v| v.iter().zip(&view).filter(|(a, b)| a != b).count())
        .max()
        .unwrap_or(0);
    println!("spread (as c1 sees it; {disagree} nodes seen otherwise by another member):");
    for (owner, count) in &sp {
        println!(
            "  {owner}: {count} nodes ({:+.1} % from a third)",
            (*count as f64 / (n as f64 / 3.0) - 1.0) * 100.0
        );
    }
    for m in &members {
        if let Some((checked, skipped, ms)) = last_pass(&m.log) {
            println!(
                "  {}'s last pass: {checked} checked, {skipped} skipped, {ms} ms",
                m.name
            );
        }
    }

    // SIGKILL the victim.
    let victim = MEMBERS[VICTIM];
    let theirs: Vec<usize> = (0..n)
        .filter(|&i| view[i].as_deref() == Some(victim))
        .collect();
    let survivors: Vec<u16> = members
        .iter()
        .filter(|m| m.name != victim)
        .map(|m| m.port)
        .collect();
    for m in &mut members {
        m.check_running()?;
    }
    let t_kill = now_ms();
    drop(members[VICTIM].guard.take());
    println!("\nSIGKILL {victim} (it owned {} nodes)", theirs.len());
    let deadline = Instant::now() + Duration::from_secs(hb.map_or(60, |h| h.timeout) + 240);
    let (mut owned_ms, mut covered_ms) = (None, None);
    let mut polls = 0u64;
    let mut last_report = Instant::now();
    while owned_ms.is_none() || covered_ms.is_none() {
        if Instant::now() > deadline {
            println!("WARNING: gave up waiting at {}", secs(now_ms() - t_kill));
            break;
        }
        if owned_ms.is_none() {
            let mut left = Vec::new();
            for (&p, name) in survivors.iter().zip(["c1", "c2"]) {
                if names_owner(p, victim)? {
                    left.push(name);
                }
            }
            polls += 1;
            if left.is_empty() {
                let ms = now_ms() - t_kill;
                println!(
                    "no node names {victim} as its owner in either survivor's view at {}",
                    secs(ms)
                );
                owned_ms = Some(ms);
            } else if last_report.elapsed() > Duration::from_secs(10) {
                println!(
                    "  {}: {left:?} still name {victim} as an owner",
                    secs(now_ms() - t_kill)
                );
                last_report = Instant::now();
            }
        }
        if covered_ms.is_none() {
            let all = ctx.fleet.queries(t_kill)?;
            if let Some(ms) = covered(&all, t_kill) {
                println!(
                    "every BMC answered a status query again {} after the kill",
                    secs(ms)
                );
                covered_ms = Some(ms);
            }
        }
        for m in &mut members {
            m.check_running()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let poll_ms = owned_ms.map_or(0, |ms| ms / polls.max(1));
    // The survivors' own account: when each rebuilt its ring without the
    // victim, and how many nodes it took (from their logs).
    let mut rebuilt = Vec::new();
    for m in members.iter().filter(|m| m.name != victim) {
        if let Some((at, moved)) = ring_lost(&m.log, victim, t_kill) {
            println!(
                "{} rebuilt its ring without {victim} {} after the kill; {} nodes moved to it",
                m.name,
                secs(at.saturating_sub(t_kill)),
                moved.map_or("?".into(), |n| n.to_string())
            );
            rebuilt.push(at.saturating_sub(t_kill));
        }
    }
    let rebuilt = rebuilt.iter().max().copied().filter(|_| rebuilt.len() == 2);

    // Steady state after the takeover: two and a half intervals more.
    let after_from = t_kill + owned_ms.unwrap_or(0).max(covered_ms.unwrap_or(0));
    sleep_until(after_from + ctx.sync_ms * 5);
    let t_end = now_ms();
    let all = ctx.fleet.queries(steady_from)?;
    let before = window(&all, steady_from, t_kill, ctx.sync_ms);
    let after = window(&all, after_from, t_end, ctx.sync_ms);
    let after_spread = spread(&owners(survivors[0], n)?);
    for (name, w) in [("before the kill", before), ("after the takeover", after)] {
        println!(
            "{name}, {}: {} BMCs queried, {} by two coordinators in one pass, {} in two sessions, {} twice by one",
            secs(w.ms),
            w.queried,
            w.double,
            w.two_sessions,
            w.repeat
        );
    }
    println!("spread after the takeover: {after_spread:?}");
    for m in &members {
        if m.guard.is_some()
            && let Some((checked, skipped, ms)) = last_pass(&m.log)
        {
            println!(
                "  {}'s last pass: {checked} checked, {skipped} skipped, {ms} ms",
                m.name
            );
        }
    }
    drop(members);
    Ok(Row {
        setting,
        spread: sp,
        disagree,
        victim_nodes: theirs.len(),
        owned_ms,
        poll_ms,
        rebuilt,
        covered_ms,
        before,
        after,
        after_spread,
    })
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    if Command::new("curl").arg("--version").output().is_err() {
        bail!("needs curl (apt-get install curl)");
    }
    if ingot_pg_cluster::find_bin().is_none() {
        bail!("needs the PostgreSQL server (apt-get install postgresql)");
    }
    let (release, dir) = super::coordinator_and_fleet("ha")?;
    let result = measure(&a, &release, &dir);
    println!("the members' logs are in {}", dir.display());
    result
}

fn measure(a: &Args, release: &Path, dir: &Path) -> Result<()> {
    let n = a.nodes;
    println!("\n==> a private PostgreSQL");
    let mut cluster = Cluster::start(&dir.join("pg"))?;
    cluster.stop_when_process_exits()?;
    println!("PostgreSQL on 127.0.0.1:{}", cluster.port());
    println!(
        "\n==> {n} simulated BMCs on 127.0.0.1:{BASE_PORT}..{}",
        usize::from(BASE_PORT) + n - 1
    );
    let fleet = Fleet::start(release, n)?;
    let ctx = Ctx {
        n,
        sync_ms: a.sync_ms,
        release,
        dir,
        cluster: &cluster,
        fleet: &fleet,
    };
    let mut rows = Vec::new();
    for (k, hb) in a.settings.iter().enumerate() {
        rows.push(run_setting(&ctx, k, *hb)?);
    }

    println!(
        "\n==> results: {n} nodes, 3 coordinators on one PostgreSQL, power sync every {} ms; {}, load {}",
        a.sync_ms,
        super::timing::cpu_model(),
        super::timing::load_average()
    );
    println!(
        "| [conductor] | nodes per member (target: a third ±10 %) | c3 killed: its nodes re-owned (API poll; members' logs) | all {n} synced again | double syncs before / after (BMCs) |"
    );
    println!("|---|---|---|---|---|");
    for r in &rows {
        let worst = r
            .spread
            .values()
            .map(|&c| (c as f64 / (n as f64 / 3.0) - 1.0).abs() * 100.0)
            .fold(0.0, f64::max);
        println!(
            "| {} | {} (worst {worst:.1} %{}) | {} nodes: {} (poll every ~{} ms); {} | {} | {} / {} |",
            r.setting,
            counts(&r.spread),
            if r.disagree > 0 {
                format!(", {} seen otherwise", r.disagree)
            } else {
                String::new()
            },
            r.victim_nodes,
            r.owned_ms.map_or("not within the limit".into(), secs),
            r.poll_ms,
            r.rebuilt.map_or("?".into(), |ms| format!(
                "both rings rebuilt by {}",
                secs(ms)
            )),
            r.covered_ms.map_or("not within the limit".into(), secs),
            r.before.double,
            r.after.double,
        );
    }
    for r in &rows {
        println!(
            "{}: after the takeover {}; steady windows {} and {} ({} and {} BMCs queried; in two sessions {} / {}; twice by one member within half an interval {} / {})",
            r.setting,
            counts(&r.after_spread),
            secs(r.before.ms),
            secs(r.after.ms),
            r.before.queried,
            r.after.queried,
            r.before.two_sessions,
            r.after.two_sessions,
            r.before.repeat,
            r.after.repeat
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(at_ms: u64, session: u32) -> Query {
        Query { at_ms, session }
    }

    #[test]
    fn parses_the_fleets_answer() {
        let text = "0 1000/257 2000/257\n1\n2 1500/300\nend\n";
        let all = parse_queries(text, 3).expect("parsed");
        assert_eq!(
            all,
            vec![vec![q(1000, 257), q(2000, 257)], vec![], vec![q(1500, 300)]]
        );
        assert!(parse_queries("0\nend\n", 2).is_err(), "a BMC missing");
        assert!(parse_queries("0\n1\n", 2).is_err(), "no end");
        assert!(parse_queries("0 12\n1\nend\n", 2).is_err(), "no session");
    }

    #[test]
    fn a_window_counts_double_syncs_by_session_and_gap() {
        let interval = 1000;
        let all = vec![
            // One owner, once per interval.
            vec![q(0, 1), q(1000, 1), q(2010, 1)],
            // Two owners in one pass.
            vec![q(0, 1), q(100, 2), q(1000, 1)],
            // A handover: a new session, an interval later.
            vec![q(0, 1), q(1000, 2)],
            // One owner twice in a row.
            vec![q(0, 1), q(200, 1)],
            // Nothing.
            vec![],
        ];
        let w = window(&all, 0, 5000, interval);
        assert_eq!(
            w,
            Window {
                ms: 5000,
                queried: 4,
                two_sessions: 2,
                double: 1,
                repeat: 1,
            }
        );
        // Queries outside the window do not count.
        assert_eq!(window(&all, 500, 5000, interval).double, 0);
        assert_eq!(covered(&all, 0), None);
        assert_eq!(covered(&all[..4], 500), None);
        assert_eq!(covered(&all[..3], 500), Some(500));
    }

    #[test]
    fn reads_the_members_logs() {
        assert_eq!(
            log_ms("2026-12-06T10:59:14.679888Z  INFO x"),
            Some(1_796_554_754_679)
        );
        assert_eq!(log_ms("1970-01-01T00:00:01.002000Z"), Some(1002));
        assert_eq!(log_ms("garbage"), None);
        let dir = std::env::temp_dir().join(format!("xtask-ha-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("c1.log");
        std::fs::write(
            &log,
            "2026-12-06T10:57:18.118409Z  INFO m: the group changed: hash rings rebuilt alive={\"c1\", \"c2\", \"c3\"} lost=[] joined=[\"c3\"]\n\
             2026-12-06T10:59:14.679888Z  INFO m: the group changed: hash rings rebuilt alive={\"c1\", \"c2\"} lost=[\"c3\"] joined=[]\n\
             2026-12-06T10:59:15.177706Z  INFO m: syncing the power state of the nodes that moved here nodes=1737\n",
        )
        .expect("log written");
        let since = log_ms("2026-12-06T10:59:00.000000Z").expect("a time");
        assert_eq!(
            ring_lost(&log, "c3", since),
            Some((1_796_554_754_679, Some(1737)))
        );
        assert_eq!(ring_lost(&log, "c2", since), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn node_uuids_map_back_to_bmcs() {
        assert_eq!(node_index(&ps::node_uuid(0)), Some(0));
        assert_eq!(node_index(&ps::node_uuid(9999)), Some(9999));
    }

    #[test]
    fn the_configs_follow_the_settings() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.settings.len(), 2);
        assert_eq!(a.settings[0], None);
        let args: Vec<String> = ["--heartbeat-timeout", "20"].map(String::from).to_vec();
        let a = parse(&args).expect("one setting");
        assert_eq!(
            a.settings,
            vec![Some(Heartbeat {
                interval: 4,
                timeout: 20,
                ring_reset: None
            })]
        );
        let t = config_text("c2", 7000, "postgres://x/db", a.settings[0], 2000);
        assert!(t.contains("conductor_name = \"c2\""), "{t}");
        assert!(
            t.contains("[conductor]\nheartbeat_interval = 4\nheartbeat_timeout = 20\n"),
            "{t}"
        );
        assert!(t.contains("[power_sync]\ninterval_ms = 2000\n"), "{t}");
        assert!(!config_text("c1", 7000, "x", None, 2000).contains("[conductor]"));
    }
}
