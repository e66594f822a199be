//! Simulated ironic-python-agents for the fleet benchmark
//! (`cargo xtask bench fleet`, docs/benchmarks.md).
//!
//! Each [`SimAgent`] is one ramdisk: it serves IPA's command API
//! (`/v1/commands/`, with IPA's result envelope and token check) on its own
//! loopback address, port 9999, and, once "booted", looks itself up by MAC
//! (`GET /v1/lookup`) and heartbeats (`POST /v1/heartbeat/{node}`) from that
//! same address, over real HTTP. Clean steps (the wipes) and the deploy's
//! `write_image` run for a configurable time ([`Knobs`]), then force a
//! heartbeat at once, as IPA does. Both Ingot and OpenStack Ironic drive it.
//!
//! [`Stats`] collects the latency the benchmark reports: from a heartbeat
//! sent while the agent is idle (no command running) to the next command
//! the conductor posts. A heartbeat after which no command comes (the last
//! one of a phase) is dropped when the node's token is wiped or the agent is
//! powered off.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// IPA's listen port.
pub const AGENT_PORT: u16 = 9999;

/// How long the simulated work takes, and how often the agent calls in.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// One clean step (`erase_devices_metadata`, `erase_devices`).
    pub wipe: Duration,
    /// The deploy's `write_image` step.
    pub write: Duration,
    /// The periodic heartbeat (a finished command forces one at once).
    pub heartbeat: Duration,
    /// The pause between lookups that found nothing.
    pub lookup_retry: Duration,
}

/// What the fleet measured, shared by all agents.
#[derive(Default)]
pub struct Stats {
    /// Heartbeat-to-next-command latencies by the command that ended the wait.
    by_command_us: Mutex<std::collections::BTreeMap<String, Vec<u64>>>,
    unknown: Mutex<BTreeSet<String>>,
    /// Lookups that returned a token.
    pub lookups: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Heartbeats the API refused (not 2xx).
    pub heartbeats_refused: AtomicU64,
    /// Commands received.
    pub commands: AtomicU64,
    /// Requests that failed at the HTTP level (connection refused, timeout).
    pub http_errors: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    fn record(&self, command: &str, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        lock(&self.by_command_us)
            .entry(command.to_owned())
            .or_default()
            .push(us);
    }

    /// The latencies by the command that ended the wait, each sorted.
    pub fn latencies_by_command_us(&self) -> Vec<(String, Vec<u64>)> {
        lock(&self.by_command_us)
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.sort_unstable();
                (k.clone(), v)
            })
            .collect()
    }

    /// Heartbeat-to-next-command latencies so far, in microseconds, sorted.
    pub fn latencies_us(&self) -> Vec<u64> {
        let mut v: Vec<u64> = lock(&self.by_command_us)
            .values()
            .flatten()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Command names the agents did not know (answered as a success anyway).
    pub fn unknown_commands(&self) -> Vec<String> {
        lock(&self.unknown).iter().cloned().collect()
    }
}

/// The `q`-quantile (0..=1) of sorted samples (nearest rank), if any.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[derive(Default)]
struct AgentState {
    booted: bool,
    token: Option<String>,
    node_uuid: Option<String>,
    commands: Vec<Value>,
    /// When the oldest heartbeat not yet followed by a command was sent.
    pending_since: Option<Instant>,
}

impl AgentState {
    fn busy(&self) -> bool {
        self.commands
            .last()
            .is_some_and(|c| c["command_status"] == "RUNNING")
    }
}

struct Inner {
    api: String,
    ip: IpAddr,
    mac: String,
    url: String,
    knobs: Knobs,
    stats: Arc<Stats>,
    state: Mutex<AgentState>,
    wake: Notify,
    /// The next power on boots the ramdisk ([`SimAgent::arm`]).
    armed: std::sync::atomic::AtomicBool,
}

/// One simulated agent (see the crate's documentation).
#[derive(Clone)]
pub struct SimAgent(Arc<Inner>);

/// The inventory the agent reports (`poll.get_hardware_info`).
fn inventory(mac: &str) -> Value {
    json!({
        "cpu": {"model_name": "Simulated CPU", "frequency": "2400", "count": 64, "architecture": "x86_64", "flags": ["lm"], "socket_count": 2},
        "memory": {"total": 274_877_906_944_u64, "physical_mb": 262_144},
        "disks": [{"name": "/dev/sda", "size": 960_197_124_096_u64, "rotational": false, "model": "sim"}],
        "interfaces": [{"name": "eth0", "mac_address": mac, "ipv4_address": null, "has_carrier": true, "lldp": null}],
        "bmc_address": null, "bmc_v6address": null,
        "system_vendor": {"product_name": "Simulated", "serial_number": "S1", "manufacturer": "Ingot", "firmware": {}},
        "boot": {"current_boot_mode": "uefi", "pxe_interface": mac},
        "hostname": "sim"
    })
}

fn fault(status: StatusCode, msg: &str) -> Response {
    (
        status,
        json!({"faultcode": "Client", "faultstring": msg}).to_string(),
    )
        .into_response()
}

fn token_of(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "agent_token")
        .map(|(_, v)| v.into_owned())
}

fn envelope(id: &str, short: &str, status: &str, result: Value) -> Value {
    json!({"id": id, "command_name": short, "command_status": status, "command_error": null, "command_result": result})
}

const HW_VERSION: &str = "1.2";

async fn commands_post(State(a): State<SimAgent>, uri: Uri, body: Bytes) -> Response {
    let inner = &a.0;
    let token = token_of(&uri);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let (Some(name), Some(params)) = (req["name"].as_str(), req.get("params")) else {
        return fault(StatusCode::BAD_REQUEST, "name and params are required");
    };
    let name = name.to_owned();
    let params = params.clone();
    let mut st = lock(&inner.state);
    if token.is_none() || token != st.token {
        return fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.");
    }
    if st.busy() {
        return fault(StatusCode::CONFLICT, "Agent is busy: executing command");
    }
    inner.stats.commands.fetch_add(1, Ordering::Relaxed);
    if let Some(t0) = st.pending_since.take() {
        inner.stats.record(&name, t0.elapsed());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let short = name.split('.').nth(1).unwrap_or(&name).to_owned();
    let hw = json!({"generic_hardware_manager": HW_VERSION});
    let step = params["step"]["step"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut power_off = false;
    let (status, result, run_for) = match name.as_str() {
        "clean.get_clean_steps" => (
            "SUCCEEDED",
            json!({"clean_steps": {"GenericHardwareManager": [
                {"step": "erase_devices", "priority": 10, "interface": "deploy", "reboot_requested": false, "abortable": true},
                {"step": "erase_devices_metadata", "priority": 99, "interface": "deploy", "reboot_requested": false, "abortable": true}
            ]}, "hardware_manager_version": hw}),
            None,
        ),
        "deploy.get_deploy_steps" => (
            "SUCCEEDED",
            // Not empty, as IPA's: Ironic asks again on every heartbeat
            // while its cache of the agent's steps is empty.
            json!({"deploy_steps": {"GenericHardwareManager": [
                {"step": "erase_devices_metadata", "priority": 0, "interface": "deploy", "reboot_requested": false},
                {"step": "apply_configuration", "priority": 0, "interface": "raid", "reboot_requested": false}
            ]}, "hardware_manager_version": hw}),
            None,
        ),
        "poll.get_hardware_info" => ("SUCCEEDED", inventory(&inner.mac), None),
        "clean.execute_clean_step" => ("RUNNING", Value::Null, Some(inner.knobs.wipe)),
        "deploy.execute_deploy_step" => (
            "RUNNING",
            Value::Null,
            Some(if step == "write_image" {
                inner.knobs.write
            } else {
                Duration::ZERO
            }),
        ),
        "standby.get_partition_uuids" => (
            "SUCCEEDED",
            json!({"root uuid": null, "efi system partition uuid": null, "PReP Boot partition uuid": null}),
            None,
        ),
        "standby.power_off" => {
            power_off = true;
            ("SUCCEEDED", Value::Null, None)
        }
        "standby.sync"
        | "image.install_bootloader"
        | "log.collect_system_logs"
        | "system.lockdown" => ("SUCCEEDED", Value::Null, None),
        other => {
            lock(&inner.stats.unknown).insert(other.to_owned());
            ("SUCCEEDED", Value::Null, None)
        }
    };
    let entry = envelope(&id, &short, status, result);
    st.commands.push(entry.clone());
    if power_off {
        // The ramdisk powers the machine off: it stops calling in.
        st.booted = false;
        st.token = None;
        st.pending_since = None;
    }
    drop(st);
    if let Some(d) = run_for {
        let a = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            a.finish(&id, &short, &params);
        });
    }
    (StatusCode::OK, entry.to_string()).into_response()
}

async fn commands_get(State(a): State<SimAgent>, uri: Uri) -> Response {
    let st = lock(&a.0.state);
    if token_of(&uri).is_none() || token_of(&uri) != st.token {
        return fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.");
    }
    (StatusCode::OK, json!({"commands": st.commands}).to_string()).into_response()
}

async fn command_get(State(a): State<SimAgent>, Path(id): Path<String>, uri: Uri) -> Response {
    let st = lock(&a.0.state);
    if token_of(&uri).is_none() || token_of(&uri) != st.token {
        return fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.");
    }
    match st.commands.iter().find(|c| c["id"] == id.as_str()) {
        Some(c) => (StatusCode::OK, c.to_string()).into_response(),
        None => fault(StatusCode::NOT_FOUND, "Command not found"),
    }
}

impl SimAgent {
    /// Binds the command API on `ip:9999` and starts the agent's loop
    /// (idle until [`SimAgent::boot`]). `api` is the API's base URL.
    pub async fn start(
        api: &str,
        ip: IpAddr,
        mac: &str,
        knobs: Knobs,
        stats: Arc<Stats>,
    ) -> std::io::Result<SimAgent> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, AGENT_PORT)).await?;
        let agent = SimAgent(Arc::new(Inner {
            api: api.trim_end_matches('/').to_owned(),
            ip,
            mac: mac.to_owned(),
            url: format!("http://{ip}:{AGENT_PORT}"),
            knobs,
            stats,
            state: Mutex::new(AgentState::default()),
            wake: Notify::new(),
            armed: std::sync::atomic::AtomicBool::new(false),
        }));
        let app = Router::new()
            .route(
                "/v1/commands/",
                axum::routing::post(commands_post).get(commands_get),
            )
            .route(
                "/v1/commands",
                axum::routing::post(commands_post).get(commands_get),
            )
            .route("/v1/commands/{id}", axum::routing::get(command_get))
            .with_state(agent.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let a = agent.clone();
        tokio::spawn(async move { a.run().await });
        Ok(agent)
    }

    /// The machine powered on into the ramdisk: a fresh agent looks itself up.
    pub fn boot(&self) {
        {
            let mut st = lock(&self.0.state);
            st.booted = true;
            st.token = None;
            st.commands.clear();
            st.pending_since = None;
        }
        self.0.wake.notify_one();
    }

    /// The machine's next start boots the ramdisk (the phase under way
    /// needs the agent): [`SimAgent::power_changed`] boots it then, once.
    pub fn arm(&self) {
        self.0.armed.store(true, Ordering::SeqCst);
    }

    /// The machine no longer boots the ramdisk (its phase is over).
    pub fn disarm(&self) {
        self.0.armed.store(false, Ordering::SeqCst);
    }

    /// The machine's BMC changed: `started` when it started again (power
    /// on, cycle or reset; it may have been off in between), `on` its power
    /// now. A start ends whatever ran; when armed, the ramdisk boots (once
    /// per [`SimAgent::arm`]; later starts boot the instance, which does not
    /// call in). Off stops the agent.
    pub fn power_changed(&self, started: bool, on: bool) {
        if started || !on {
            self.power_off();
        }
        if started && on && self.0.armed.swap(false, Ordering::SeqCst) {
            self.boot();
        }
    }

    /// The machine is off (or runs its instance): the agent stops calling in.
    pub fn power_off(&self) {
        let mut st = lock(&self.0.state);
        st.booted = false;
        st.token = None;
        st.pending_since = None;
    }

    /// Marks an async command finished and forces a heartbeat.
    fn finish(&self, id: &str, short: &str, params: &Value) {
        {
            let mut st = lock(&self.0.state);
            if let Some(c) = st.commands.iter_mut().find(|c| c["id"] == id) {
                c["command_status"] = json!("SUCCEEDED");
                c["command_result"] = if short == "execute_clean_step" {
                    json!({"clean_result": {"success": true}, "clean_step": params["step"]})
                } else {
                    json!({"deploy_result": {"result": "write_image: image written to device /dev/sda"}, "deploy_step": params["step"]})
                };
            }
        }
        self.0.wake.notify_one();
    }

    async fn run(self) {
        let inner = &self.0;
        let http = match reqwest::Client::builder()
            .local_address(inner.ip)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
        {
            Ok(c) => c,
            Err(_) => return,
        };
        loop {
            let (booted, token, node) = {
                let st = lock(&inner.state);
                (st.booted, st.token.clone(), st.node_uuid.clone())
            };
            if !booted {
                inner.wake.notified().await;
                continue;
            }
            match (token, node) {
                (Some(token), Some(node)) => {
                    let pause = self.heartbeat(&http, &token, &node).await;
                    let _ = tokio::time::timeout(pause, inner.wake.notified()).await;
                }
                _ => {
                    if !self.lookup(&http).await {
                        let _ =
                            tokio::time::timeout(inner.knobs.lookup_retry, inner.wake.notified())
                                .await;
                    }
                }
            }
        }
    }

    /// One lookup; true when it got a token.
    async fn lookup(&self, http: &reqwest::Client) -> bool {
        let inner = &self.0;
        let r = http
            .get(format!("{}/v1/lookup?addresses={}", inner.api, inner.mac))
            .header("X-OpenStack-Ironic-API-Version", "1.68")
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(_) => {
                inner.stats.http_errors.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        if r.status().as_u16() != 200 {
            return false;
        }
        let Ok(body) = r.bytes().await else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            return false;
        };
        let (Some(t), Some(node)) = (
            v["config"]["agent_token"].as_str(),
            v["node"]["uuid"].as_str(),
        ) else {
            return false;
        };
        if t == "******" {
            return false;
        }
        let mut st = lock(&inner.state);
        if !st.booted {
            return false;
        }
        st.token = Some(t.to_owned());
        st.node_uuid = Some(node.to_owned());
        st.commands.clear();
        inner.stats.lookups.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One heartbeat; returns how long to wait before the next one.
    async fn heartbeat(&self, http: &reqwest::Client, token: &str, node: &str) -> Duration {
        let inner = &self.0;
        {
            let mut st = lock(&inner.state);
            if !st.busy() && st.pending_since.is_none() {
                st.pending_since = Some(Instant::now());
            }
        }
        inner.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        let body =
            json!({"callback_url": inner.url, "agent_token": token, "agent_version": "13.0.0"});
        let r = http
            .post(format!("{}/v1/heartbeat/{node}", inner.api))
            .header("X-OpenStack-Ironic-API-Version", "1.68")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        match r.map(|r| r.status().as_u16()) {
            Ok(200..=299) => inner.knobs.heartbeat,
            Ok(409) | Ok(503) => {
                // The node is locked by the conductor: IPA tries again soon.
                inner
                    .stats
                    .heartbeats_refused
                    .fetch_add(1, Ordering::Relaxed);
                Duration::from_secs(1)
            }
            Ok(_) => {
                // The token was wiped (the phase is over): look up again.
                inner
                    .stats
                    .heartbeats_refused
                    .fetch_add(1, Ordering::Relaxed);
                let mut st = lock(&inner.state);
                st.token = None;
                st.pending_since = None;
                inner.knobs.lookup_retry
            }
            Err(_) => {
                inner.stats.http_errors.fetch_add(1, Ordering::Relaxed);
                Duration::from_secs(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
