//! The HA lab (issue 17, "proof in the lab"): three coordinators on a
//! private PostgreSQL cluster drive the lab's one server; members die by
//! SIGKILL in the middle of the work, and the node still gets there.
//!
//! - enroll (ipmi), manage, provide (cleaning, no kill: the same-run
//!   baseline of a cleaning);
//! - deploy with a config drive; once the agent is writing the image
//!   (`deploy_step.step = write_image`), the node's owner (its `conductor`)
//!   is killed; the deploy must still reach `active` and the server boot
//!   from disk with its config drive, with no operator action;
//! - undeploy; once the node is in `clean wait`, its owner (a second
//!   member) is killed; cleaning must complete on the last member;
//! - for each kill: kill → the member shows `alive=false` in
//!   `GET /v1/conductors` (detection), kill → the node's `conductor` names
//!   a survivor (takeover), kill → the next provision state, and the
//!   phase's time against the same work without a kill;
//! - the double-ownership check on the `node_events` journal
//!   ([`crate::journal`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ingot_pg_cluster::Cluster;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::bmc;
use crate::console::strip_ansi;
use crate::journal;
use crate::members::{self, LAB_TIMING, Member, Timing};
use crate::proc;
use crate::report::Report;
use crate::scenario::{Lab, Options, PhaseRun, Progress, VDA_SERIAL};

/// Members in the lab.
pub const MEMBERS: usize = 3;
/// The database all members share.
const DB: &str = "ingot";
/// The file in the work directory naming the cluster's directory (kept
/// outside the work directory, which the postgres user may not reach).
const PG_DIR_FILE: &str = "pg-dir.txt";
/// Prefix of the cluster's directory under the temporary directory.
const PG_DIR_PREFIX: &str = "ingot-lab-ha-pg-";
/// How often the node and the member list are read after a kill.
const POLL: Duration = Duration::from_millis(200);

/// The HA lab's database and members (stopped and removed when dropped).
pub struct HaLab {
    /// The members' liveness settings.
    pub timing: Timing,
    workdir: PathBuf,
    members: Mutex<Vec<Member>>,
    /// Dropped after the members (field order).
    cluster: Cluster,
}

impl HaLab {
    /// Starts the cluster (in the temporary directory; its path noted in
    /// the work directory for a later run to clean up) and the members.
    pub(crate) fn start(opts: &Options, progress: &Progress) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("{PG_DIR_PREFIX}{}", std::process::id()));
        std::fs::write(opts.workdir.join(PG_DIR_FILE), dir.display().to_string())?;
        let t = Instant::now();
        let mut cluster = Cluster::start(&dir).context("starting the PostgreSQL cluster")?;
        // If the lab itself is killed, the server still goes.
        cluster.stop_when_process_exits()?;
        let url = cluster.create_db(DB)?;
        progress.say(&format!(
            "PostgreSQL: {url} ({} in {:.1} s)",
            dir.display(),
            t.elapsed().as_secs_f64()
        ));
        let members = members::start(
            MEMBERS,
            &opts.workdir,
            &opts.coordinator,
            &url,
            LAB_TIMING,
            &opts.artifacts.kernel,
            &opts.artifacts.initramfs,
        )?;
        Ok(Self {
            timing: LAB_TIMING,
            workdir: opts.workdir.clone(),
            members: Mutex::new(members),
            cluster,
        })
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        // A panic elsewhere does not make the list wrong.
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The members' API base URLs, in order.
    pub fn bases(&self) -> Vec<String> {
        self.members().iter().map(Member::base).collect()
    }

    /// iPXE's first script: each member in turn.
    pub fn chain_script(&self) -> String {
        self.chain_script_from("")
    }

    /// iPXE's first script with member `first` first: it then serves the
    /// boot scripts, and comes first in the agent's `ingot.api=` list.
    pub fn chain_script_from(&self, first: &str) -> String {
        let ms = self.members();
        let ports: Vec<u16> = ms
            .iter()
            .filter(|m| m.name == first)
            .chain(ms.iter().filter(|m| m.name != first))
            .map(|m| m.port)
            .collect();
        members::chain_script(&ports)
    }

    /// The port of member `name`.
    fn port(&self, name: &str) -> Option<u16> {
        self.members()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.port)
    }

    /// The members' database URL.
    pub fn database_url(&self) -> String {
        self.cluster.url(DB)
    }

    /// Waits until every member answers.
    pub fn wait_up(&self, rt: &tokio::runtime::Runtime) -> Result<()> {
        members::wait_up(&mut self.members(), rt, Duration::from_secs(30))
    }

    /// The members' names.
    fn names(&self) -> Vec<String> {
        self.members().iter().map(|m| m.name.clone()).collect()
    }

    /// Kills member `name` with SIGKILL; the Unix time just before.
    fn kill(&self, name: &str) -> Result<f64> {
        let mut ms = self.members();
        let m = ms
            .iter_mut()
            .find(|m| m.name == name)
            .with_context(|| format!("no member named {name:?}"))?;
        m.kill()
    }

    /// Kill times (ms since the epoch) by member.
    fn kills_ms(&self) -> BTreeMap<String, i64> {
        self.members()
            .iter()
            .filter_map(|m| Some((m.name.clone(), (m.killed_at? * 1000.0) as i64)))
            .collect()
    }

    /// The members still running.
    fn running(&self) -> Vec<String> {
        self.members()
            .iter_mut()
            .filter_map(|m| m.running().then(|| m.name.clone()))
            .collect()
    }
}

impl Drop for HaLab {
    fn drop(&mut self) {
        // The members first (SIGTERM, then SIGKILL after a grace period),
        // then the server's log is kept before the cluster is removed.
        self.members().clear();
        let _ = std::fs::write(self.workdir.join("postgres.log"), self.cluster.log_text());
    }
}

/// Stops and removes the cluster an earlier, killed run noted in `workdir`.
pub fn stop_left_over(workdir: &Path) {
    let Ok(text) = std::fs::read_to_string(workdir.join(PG_DIR_FILE)) else {
        return;
    };
    let dir = PathBuf::from(text.trim());
    // Only a directory this module made.
    let ours = dir.parent() == Some(std::env::temp_dir().as_path())
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PG_DIR_PREFIX));
    if ours {
        ingot_pg_cluster::stop_left_over(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// One kill and what followed, in seconds after it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KillRecord {
    /// The phase it happened in.
    pub phase: String,
    /// The member killed (the node's owner at that moment).
    pub member: String,
    /// The node's provision state, and its deploy or clean step, when killed.
    pub seen: String,
    /// Unix time just before the signal.
    pub killed_at: f64,
    /// Kill → `alive=false` in `GET /v1/conductors` (detection).
    pub detected_after: Option<f64>,
    /// Kill → the node's `conductor` names a survivor (takeover).
    pub takeover_after: Option<f64>,
    /// That survivor.
    pub new_owner: Option<String>,
    /// Kill → the node's next provision state.
    pub next_state_after: Option<f64>,
    /// That state.
    pub next_state: Option<String>,
    /// The agent's console lines after the kill that name the killed
    /// member's URL (its failover to a live member).
    pub agent_lines: Vec<String>,
    /// The phase's wall time.
    pub phase_seconds: f64,
    /// Its power-on → first heartbeat (the ramdisk's boot, which the
    /// machine's load stretches; left out of the comparison).
    pub phase_boot_seconds: Option<f64>,
    /// The same work without a kill.
    pub baseline_seconds: Option<f64>,
    /// Its power-on → first heartbeat.
    pub baseline_boot_seconds: Option<f64>,
    /// Where the baseline comes from.
    pub baseline_from: String,
    /// The delay the kill added: the phase less its ramdisk boot, against
    /// the baseline less its boot (both times without the boot when both
    /// are known, else the whole phases).
    pub added_seconds: Option<f64>,
}

/// The delay a kill added (see [`KillRecord::added_seconds`]).
fn added(
    phase: f64,
    phase_boot: Option<f64>,
    baseline: Option<f64>,
    baseline_boot: Option<f64>,
) -> Option<f64> {
    let b = baseline?;
    Some(match (phase_boot, baseline_boot) {
        (Some(pb), Some(bb)) => (phase - pb) - (b - bb),
        _ => phase - b,
    })
}

impl KillRecord {
    /// Sets the baseline and the added delay.
    fn compare(&mut self, baseline: Option<(f64, Option<f64>)>, from: &str) {
        self.baseline_from = from.to_owned();
        if let Some((b, bb)) = baseline {
            self.baseline_seconds = Some(b);
            self.baseline_boot_seconds = bb;
            self.added_seconds = added(self.phase_seconds, self.phase_boot_seconds, Some(b), bb);
        }
    }

    /// One line for a person.
    pub fn line(&self) -> String {
        let s = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.1} s"));
        format!(
            "{}: killed {} in {}; detected (alive=false) {}, takeover {} ({}), next state {} ({}); \
             phase {:.1} s (ramdisk boot {}) vs {} (boot {}) without a kill ({}): {} added",
            self.phase,
            self.member,
            self.seen,
            s(self.detected_after),
            s(self.takeover_after),
            self.new_owner.as_deref().unwrap_or("—"),
            s(self.next_state_after),
            self.next_state.as_deref().unwrap_or("—"),
            self.phase_seconds,
            s(self.phase_boot_seconds),
            s(self.baseline_seconds),
            s(self.baseline_boot_seconds),
            self.baseline_from,
            self.added_seconds
                .map_or("—".to_owned(), |v| format!("{v:+.1} s")),
        )
    }
}

/// What the HA run proves, in `report.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HaEvidence {
    /// The members (`conductor_name`s).
    pub members: Vec<String>,
    /// Their liveness settings.
    pub timing: Option<Timing>,
    /// The shared database.
    pub database: String,
    /// `GET /v1/conductors` before the first kill and at the end.
    pub conductors_before: Value,
    /// See `conductors_before`.
    pub conductors_after: Value,
    /// The kills, in order.
    pub kills: Vec<KillRecord>,
    /// The member that owned the node at the end.
    pub final_owner: String,
    /// The double-ownership check of the node's journal.
    pub journal: journal::Summary,
}

/// The members listed by `GET /v1/conductors`: hostname → alive.
fn conductors_alive(list: &Value) -> BTreeMap<String, bool> {
    list["conductors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["hostname"].as_str()?.to_owned(), c["alive"].as_bool()?)))
        .collect()
}

/// Fails on a failed state or maintenance.
fn ensure_not_failed(n: &Value) -> Result<()> {
    let state = n["provision_state"].as_str().unwrap_or("");
    if state.ends_with("failed") || n["maintenance"].as_bool() == Some(true) {
        bail!(
            "node went to {state} (maintenance {}): {}",
            n["maintenance"],
            n["last_error"].as_str().unwrap_or("no last_error")
        );
    }
    Ok(())
}

/// The node's state and its step, for the record.
fn state_and_step(n: &Value) -> String {
    let state = n["provision_state"].as_str().unwrap_or("?");
    let step = [&n["deploy_step"]["step"], &n["clean_step"]["step"]]
        .into_iter()
        .find_map(|s| s.as_str().map(str::to_owned));
    match step {
        Some(step) => format!("{state} (step {step})"),
        None => state.to_owned(),
    }
}

/// Polls the node (every 100 ms: the window may be short) until `pred`
/// holds; fails if it reaches `too_late` (the phase ended without the
/// moment being seen), a failed state, or `timeout`.
async fn wait_for(
    api: &Api,
    ph: &mut PhaseRun<'_>,
    uuid: &str,
    timeout: Duration,
    what: &str,
    too_late: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = api.node(uuid).await?;
        ph.observe(&n);
        if pred(&n) {
            return Ok(n);
        }
        ensure_not_failed(&n)?;
        ensure!(
            n["provision_state"] != too_late,
            "the node reached {too_late} before {what} was seen"
        );
        ensure!(
            Instant::now() < deadline,
            "{what} not seen within {} s (node {})",
            timeout.as_secs(),
            state_and_step(&n)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the node's owner as `n` shows it and follows the node until it is
/// `want` (with no target pending), recording detection, takeover and the
/// next state; then waits for detection if the phase ended first.
async fn kill_owner_and_follow(
    lab: &Lab,
    ha: &HaLab,
    ph: &mut PhaseRun<'_>,
    uuid: &str,
    n: &Value,
    want: &str,
    timeout: Duration,
) -> Result<KillRecord> {
    let api = &lab.api;
    let owner = n["conductor"]
        .as_str()
        .filter(|c| !c.is_empty())
        .with_context(|| {
            format!(
                "the node has no `conductor` field naming its owner: {}",
                n["conductor"]
            )
        })?
        .to_owned();
    let state_at_kill = n["provision_state"].as_str().unwrap_or("").to_owned();
    let mut rec = KillRecord {
        phase: ph.phase.name.clone(),
        member: owner.clone(),
        seen: state_and_step(n),
        ..KillRecord::default()
    };
    let console_at_kill = std::fs::metadata(&lab.srv.console).map_or(0, |m| m.len());
    rec.killed_at = ha.kill(&owner)?;
    ph.say(&format!(
        "SIGKILL {owner}, the node's owner, in {}",
        rec.seen
    ));
    let since = |at: f64| proc::unix_now() - at;
    let deadline = Instant::now() + timeout;
    loop {
        if rec.detected_after.is_none()
            && let Ok(list) = api.get("/v1/conductors").await
            && conductors_alive(&list).get(&owner) == Some(&false)
        {
            let s = since(rec.killed_at);
            rec.detected_after = Some(s);
            ph.say(&format!(
                "{owner} shows alive=false, {s:.1} s after the kill"
            ));
        }
        let n = api.node(uuid).await?;
        ph.observe(&n);
        if rec.takeover_after.is_none()
            && let Some(c) = n["conductor"].as_str()
            && !c.is_empty()
            && c != owner
        {
            let s = since(rec.killed_at);
            rec.takeover_after = Some(s);
            rec.new_owner = Some(c.to_owned());
            ph.say(&format!(
                "the node's conductor is {c}, {s:.1} s after the kill"
            ));
        }
        let state = n["provision_state"].as_str().unwrap_or("");
        if rec.next_state.is_none() && state != state_at_kill {
            let s = since(rec.killed_at);
            rec.next_state_after = Some(s);
            rec.next_state = Some(state.to_owned());
            ph.say(&format!("next state {state}, {s:.1} s after the kill"));
        }
        let arrived = state == want && n["target_provision_state"].is_null();
        if arrived && rec.detected_after.is_some() && rec.takeover_after.is_some() {
            if let Some(port) = ha.port(&owner) {
                rec.agent_lines = console_lines_naming(
                    &lab.srv.console,
                    console_at_kill,
                    &format!("10.0.2.2:{port}"),
                );
            }
            return Ok(rec);
        }
        if !arrived {
            ensure_not_failed(&n)?;
        }
        ensure!(
            Instant::now() < deadline,
            "{} s after killing {owner}: node {} (want {want}); detected {:?}, takeover {:?}",
            timeout.as_secs(),
            state_and_step(&n),
            rec.detected_after,
            rec.takeover_after
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The deploy time of a single-coordinator run's `report.json`, and its
/// power-on → first heartbeat.
fn baseline_deploy(path: &Path) -> Option<(f64, Option<f64>)> {
    let r: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let p = r["phases"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "deploy")?;
    Some((p["seconds"].as_f64()?, p["power_on_to_heartbeat"].as_f64()))
}

/// Lines of the console log, from the point `from` bytes in, that name
/// `needle` (the killed member's address), without the early boot's
/// "Network unreachable" (no link yet).
fn console_lines_naming(console: &Path, from: u64, needle: &str) -> Vec<String> {
    let text = std::fs::read(console).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    strip_ansi(&String::from_utf8_lossy(&text[from..]))
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("Network unreachable"))
        .map(|l| l.trim().chars().take(300).collect())
        .take(20)
        .collect()
}

/// Waits for the deployed image's marker with the instance UUID from the
/// config drive on the console log.
async fn wait_boot_marker(lab: &Lab, instance: &str, timeout: Duration) -> Result<String> {
    let want = format!("instance_uuid={instance}");
    let deadline = Instant::now() + timeout;
    loop {
        let text = strip_ansi(&std::fs::read_to_string(&lab.srv.console).unwrap_or_default());
        if let Some(line) = text
            .lines()
            .rev()
            .find(|l| l.contains("INGOT-TEST-IMAGE") && l.contains(&want))
        {
            return Ok(line.trim().to_owned());
        }
        ensure!(
            Instant::now() < deadline,
            "the deployed image did not print {want} within {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The HA lifecycle (see the module's documentation).
pub(crate) async fn lifecycle(
    opts: &Options,
    lab: &Lab,
    progress: &Progress,
    report: &mut Report,
) -> Result<()> {
    let ha = lab.ha.as_ref().context("not an HA lab")?;
    let api = &lab.api;
    let mut ev = HaEvidence {
        members: ha.names(),
        timing: Some(ha.timing),
        database: ha.database_url(),
        ..HaEvidence::default()
    };
    let result = ha_phases(opts, lab, ha, progress, report, &mut ev).await;
    // The journal and the member list also when a phase failed: they
    // tell why.
    if !report.node_uuid.is_empty() {
        let checked = check_journal(&opts.workdir, ha, &report.node_uuid, &mut ev, progress);
        if let Ok(list) = api.get("/v1/conductors").await {
            ev.conductors_after = list;
        }
        let _ = std::fs::write(
            opts.workdir.join("conductors.json"),
            serde_json::to_vec_pretty(&json!({
                "before": ev.conductors_before,
                "after": ev.conductors_after,
            }))
            .unwrap_or_default(),
        );
        let summary = summary_line(&ev);
        let _ = std::fs::write(opts.workdir.join("ha-summary.txt"), format!("{summary}\n"));
        report.ha = Some(ev);
        result?;
        checked?;
    } else {
        report.ha = Some(ev);
        result?;
    }
    Ok(())
}

/// One line for CI's summary: each kill's detection, takeover and added delay.
fn summary_line(ev: &HaEvidence) -> String {
    let s = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.1}"));
    let kills: Vec<String> = ev
        .kills
        .iter()
        .map(|k| {
            format!(
                "{} kill: detected {} s, takeover {} s, added {} s",
                k.phase.split_whitespace().next().unwrap_or(""),
                s(k.detected_after),
                s(k.takeover_after),
                k.added_seconds
                    .map_or("—".to_owned(), |v| format!("{v:+.1}"))
            )
        })
        .collect();
    format!(
        "{}; journal {} rows, {} violations",
        kills.join("; "),
        ev.journal.rows,
        ev.journal.violations.len()
    )
}

async fn ha_phases(
    opts: &Options,
    lab: &Lab,
    ha: &HaLab,
    progress: &Progress,
    report: &mut Report,
    ev: &mut HaEvidence,
) -> Result<()> {
    let api = &lab.api;
    let t = opts.phase_timeout;
    let (bmc_port, fwd) = (lab.srv.bmc_port, lab.srv.agent_forward);

    // Enroll and manage; every member is alive.
    let mut ph = PhaseRun::new(lab, progress, "enroll");
    let node = api
        .post(
            "/v1/nodes",
            json!({
                "name": "ha-node-1",
                "driver": "ipmi",
                "properties": {"root_device": {"serial": VDA_SERIAL}},
                "driver_info": {
                    "ipmi_address": "127.0.0.1",
                    "ipmi_port": bmc_port,
                    "ipmi_username": bmc::USER,
                    "ipmi_password": bmc::PASSWORD,
                    "kernel_append_params": format!("%default% console=ttyS0,115200n8 ipa-advertise-host=127.0.0.1 ipa-advertise-port={fwd}"),
                },
            }),
        )
        .await?;
    let uuid = node["uuid"].as_str().context("node uuid")?.to_owned();
    report.node_uuid = uuid.clone();
    api.post(
        "/v1/ports",
        json!({"address": crate::scenario::PXE_MAC, "node_uuid": uuid, "pxe_enabled": true}),
    )
    .await?;
    api.provision(&uuid, "manage", json!({})).await?;
    let n = ph.wait(&uuid, "manageable", t).await?;
    let list = api.get("/v1/conductors").await?;
    let alive = conductors_alive(&list);
    ev.conductors_before = list;
    for m in &ev.members {
        ensure!(
            alive.get(m) == Some(&true),
            "GET /v1/conductors does not list {m} alive: {alive:?}"
        );
    }
    let owner = n["conductor"].as_str().unwrap_or("").to_owned();
    // The owner serves the boot scripts and comes first in the agent's
    // ingot.api= list: the deploy's kill then also takes the agent's
    // coordinator away, and the agent must fail over.
    std::fs::write(
        opts.workdir.join("tftp").join("boot.ipxe"),
        ha.chain_script_from(&owner),
    )?;
    ph.say(&format!(
        "members alive: {alive:?}; the node's conductor is {owner}, first in iPXE's chain"
    ));
    ph.finish(report);

    // Provide: cleaning without a kill, the baseline of the one with.
    let mut ph = PhaseRun::new(lab, progress, "provide (clean)");
    api.provision(&uuid, "provide", json!({})).await?;
    ph.wait(&uuid, "available", t).await?;
    let clean_baseline = (
        ph.started.elapsed().as_secs_f64(),
        ph.phase.power_on_to_heartbeat,
    );
    ph.finish(report);

    // Deploy; the owner dies while the agent writes the image.
    let instance = uuid::Uuid::new_v4().to_string();
    report.instance_uuid = instance.clone();
    let mut ph = PhaseRun::new(lab, progress, "deploy (owner killed)");
    api.patch(
        &format!("/v1/nodes/{uuid}"),
        json!([
            {"op": "add", "path": "/instance_uuid", "value": instance},
            {"op": "add", "path": "/instance_info", "value": {
                "image_source": lab.srv.image_url,
                "image_os_hash_algo": "sha256",
                "image_os_hash_value": lab.srv.image_sha256,
                "image_disk_format": "raw",
            }},
        ]),
    )
    .await?;
    api.provision(
        &uuid,
        "active",
        json!({"configdrive": {
            "meta_data": {"uuid": instance, "hostname": "ha-instance", "name": "ha-instance"},
            "user_data": "#cloud-config\n",
        }}),
    )
    .await?;
    let n = wait_for(
        api,
        &mut ph,
        &uuid,
        t,
        "the agent writing the image (deploy_step write_image)",
        "active",
        |n| n["deploy_step"]["step"] == "write_image",
    )
    .await?;
    let mut k = kill_owner_and_follow(lab, ha, &mut ph, &uuid, &n, "active", t).await?;
    k.phase_seconds = ph.started.elapsed().as_secs_f64();
    k.phase_boot_seconds = ph.phase.power_on_to_heartbeat;
    match opts.baseline.as_deref().and_then(baseline_deploy) {
        Some(b) => k.compare(Some(b), "the single-coordinator lab's deploy"),
        None => k.compare(None, "none: no single-coordinator report given"),
    }
    ph.say(&k.line());
    ev.kills.push(k);
    ph.finish(report);

    // The server boots its new disk and prints the UUID from its config drive.
    let mut ph = PhaseRun::new(lab, progress, "boot from disk");
    report.boot_marker = wait_boot_marker(lab, &instance, t).await?;
    ph.say(&format!("  console: {}", report.boot_marker));
    ph.pump_console();
    ph.finish(report);

    // Undeploy; the owner (a second member) dies in clean wait.
    let mut ph = PhaseRun::new(lab, progress, "undeploy (kill in clean)");
    api.provision(&uuid, "deleted", json!({})).await?;
    let n = wait_for(api, &mut ph, &uuid, t, "clean wait", "available", |n| {
        n["provision_state"] == "clean wait"
    })
    .await?;
    let mut k = kill_owner_and_follow(lab, ha, &mut ph, &uuid, &n, "available", t).await?;
    k.phase_seconds = ph.started.elapsed().as_secs_f64();
    k.phase_boot_seconds = ph.phase.power_on_to_heartbeat;
    k.compare(Some(clean_baseline), "provide's cleaning in this run");
    ph.say(&k.line());
    ev.kills.push(k);
    let n = api.node(&uuid).await?;
    let running = ha.running();
    ensure!(
        running.len() == 1,
        "after two kills {} members run: {running:?}",
        running.len()
    );
    let owner = n["conductor"].as_str().unwrap_or("").to_owned();
    ensure!(
        running.contains(&owner),
        "cleaning completed but the node's conductor is {owner:?}, not the last member {running:?}"
    );
    ev.final_owner = owner;
    ph.finish(report);
    report.lifecycle_seconds = report.phases.iter().map(|p| p.seconds).sum();
    Ok(())
}

/// Reads the node's journal with psql, keeps it as `node_events.json` and
/// checks it for double ownership.
fn check_journal(
    workdir: &Path,
    ha: &HaLab,
    uuid: &str,
    ev: &mut HaEvidence,
    progress: &Progress,
) -> Result<()> {
    let out = ha
        .cluster
        .psql(DB, &journal::query(uuid))
        .context("reading node_events with psql")?;
    let events = journal::parse(&out)?;
    std::fs::write(
        workdir.join("node_events.json"),
        serde_json::to_vec_pretty(&events)?,
    )?;
    let s = journal::check(&events, &ha.kills_ms(), (proc::unix_now() * 1000.0) as i64);
    progress.say(&format!(
        "journal: {} rows ({:?}), fences {:?}, {} violations",
        s.rows,
        s.per_conductor,
        s.fences,
        s.violations.len(),
    ));
    ev.journal = s.clone();
    ensure!(s.rows > 0, "the node's journal (node_events) is empty");
    ensure!(
        s.violations.is_empty(),
        "double ownership in the node's journal: {:?}",
        s.violations
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_member_list() {
        let list = json!({"conductors": [
            {"hostname": "c1", "conductor_group": "", "alive": false},
            {"hostname": "c2", "conductor_group": "", "alive": true},
            {"hostname": "c3"},
        ]});
        let m = conductors_alive(&list);
        assert_eq!(m.len(), 2);
        assert!(!m["c1"]);
        assert!(m["c2"]);
        assert!(conductors_alive(&json!({})).is_empty());
    }

    #[test]
    fn names_state_and_step() {
        assert_eq!(
            state_and_step(
                &json!({"provision_state": "wait call-back", "deploy_step": {"step": "write_image"}, "clean_step": {}})
            ),
            "wait call-back (step write_image)"
        );
        assert_eq!(
            state_and_step(
                &json!({"provision_state": "clean wait", "deploy_step": {}, "clean_step": {}})
            ),
            "clean wait"
        );
    }

    #[test]
    fn reads_the_baseline_deploy() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("report.json");
        std::fs::write(
            &p,
            r#"{"phases": [{"name": "provide (clean)", "seconds": 20.5}, {"name": "deploy", "seconds": 33.25}]}"#,
        )?;
        assert_eq!(baseline_deploy(&p), Some((33.25, None)));
        std::fs::write(
            &p,
            r#"{"phases": [{"name": "deploy", "seconds": 17.5, "power_on_to_heartbeat": 14.5}]}"#,
        )?;
        assert_eq!(baseline_deploy(&p), Some((17.5, Some(14.5))));
        assert_eq!(baseline_deploy(&dir.path().join("none.json")), None);
        Ok(())
    }

    #[test]
    fn the_added_delay_leaves_the_boots_out() {
        // 39.3 s with a 29.0 s boot against 17.6 s with a 14.5 s boot.
        let a = added(39.3, Some(29.0), Some(17.6), Some(14.5)).expect("baseline");
        assert!((a - 7.2).abs() < 1e-9, "{a}");
        let a = added(39.3, None, Some(17.6), Some(14.5)).expect("baseline");
        assert!((a - 21.7).abs() < 1e-9, "{a}");
        assert_eq!(added(39.3, Some(29.0), None, None), None);
    }

    #[test]
    fn finds_the_agents_lines_about_the_killed_member() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("console.log");
        std::fs::write(
            &p,
            "old line http://10.0.2.2:4000/ heartbeat failed\n\
             WARN coordinator not reachable error=http://10.0.2.2:4000/: Network unreachable (os error 101)\n\
             \x1b[0mWARN heartbeat failed error=http://10.0.2.2:4000/v1/heartbeat/x: Connection refused\r\n\
             INFO switched coordinator from=http://10.0.2.2:4000 to=http://10.0.2.2:4001\n\
             INFO heartbeat http://10.0.2.2:4001 accepted\n",
        )?;
        let from = "old line http://10.0.2.2:4000/ heartbeat failed\n".len() as u64;
        let lines = console_lines_naming(&p, from, "10.0.2.2:4000");
        assert_eq!(
            lines,
            vec![
                "WARN heartbeat failed error=http://10.0.2.2:4000/v1/heartbeat/x: Connection refused",
                "INFO switched coordinator from=http://10.0.2.2:4000 to=http://10.0.2.2:4001",
            ]
        );
        assert!(console_lines_naming(&p, 1 << 40, "10.0.2.2:4000").is_empty());
        Ok(())
    }

    #[test]
    fn summarises_the_kills() {
        let ev = HaEvidence {
            kills: vec![
                KillRecord {
                    phase: "deploy (owner killed)".into(),
                    detected_after: Some(5.43),
                    takeover_after: Some(6.01),
                    added_seconds: Some(8.0),
                    ..KillRecord::default()
                },
                KillRecord {
                    phase: "undeploy (kill in clean)".into(),
                    detected_after: Some(5.2),
                    ..KillRecord::default()
                },
            ],
            journal: journal::Summary {
                rows: 12,
                ..journal::Summary::default()
            },
            ..HaEvidence::default()
        };
        assert_eq!(
            summary_line(&ev),
            "deploy kill: detected 5.4 s, takeover 6.0 s, added +8.0 s; \
             undeploy kill: detected 5.2 s, takeover — s, added — s; journal 12 rows, 0 violations"
        );
    }
}
