//! Prometheus metrics: `GET /metrics` on `[metrics] listen` ([`serve`]).
//!
//! One process-wide set of metrics ([`global`]): the call sites record into
//! it with the small functions below, without handing a registry around.
//! Node counts by state and the database pool are read at scrape time
//! ([`serve`]); phases and steps are timed from the node changes the
//! conductor writes ([`phases`]); API requests by a middleware ([`api`]).
//! Every label takes values from a bounded set (route patterns, not paths;
//! state names; driver and error kinds).

pub mod api;
pub mod phases;
pub mod serve;
pub mod text;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::power::PowerErrorKind;

/// A histogram per label set, with the buckets its constructor gives.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// `phase` (`deploy`, `clean`, `inspect`) and `result` (`success`, `failure`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase.
    pub phase: &'static str,
    /// How it ended.
    pub result: &'static str,
}

/// A step of a phase (`clean`, `deploy`): `interface.step` and its result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The phase.
    pub phase: &'static str,
    /// `interface.step`, as in Ironic's `clean_step` and `deploy_step`.
    pub step: String,
    /// How it ended.
    pub result: &'static str,
}

/// Nodes by provision and power state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeStateLabels {
    /// Ironic's provision state.
    pub provision_state: String,
    /// Ironic's power state (`unknown` when none is recorded).
    pub power_state: String,
}

/// A BMC error: the node's power interface and the error's kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BmcErrorLabels {
    /// `ipmi`, `redfish`, `snmp`, `fake`, or `other`.
    pub driver: &'static str,
    /// [`kind_label`].
    pub kind: &'static str,
}

/// An agent command (or the command list) and how it went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentCommandLabels {
    /// `clean.execute_clean_step`, … or `list_commands`.
    pub command: &'static str,
    /// `ok`, `busy`, `http_error`, `unreachable`, `bad_answer`.
    pub result: &'static str,
}

/// A `result` label alone.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The result.
    pub result: &'static str,
}

/// An API request: method, matched route pattern and status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The method (`other` for a non-standard one).
    pub method: &'static str,
    /// The route pattern (`/v1/nodes/{ident}`), `unmatched` for none.
    pub route: String,
    /// The status code.
    pub status: u16,
}

/// An API route: method and route pattern.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The method.
    pub method: &'static str,
    /// The route pattern.
    pub route: String,
}

/// A `state` label alone (database pool connections).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state.
    pub state: &'static str,
}

/// Every metric of the coordinator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    phase_seconds: Histograms<PhaseLabels>,
    step_seconds: Histograms<StepLabels>,
    nodes: Family<NodeStateLabels, Gauge>,
    power_sync_pass_seconds: Histogram,
    bmc_errors: Family<BmcErrorLabels, Counter>,
    out_of_band_changes: Counter,
    agent_command_seconds: Histograms<AgentCommandLabels>,
    lookups: Family<ResultLabels, Counter>,
    heartbeats: Family<ResultLabels, Counter>,
    api_requests: Family<RequestLabels, Counter>,
    api_seconds: Histograms<RouteLabels>,
    db_connections: Family<StateLabels, Gauge>,
    db_max_connections: Gauge,
    image_cache_requests: Family<ResultLabels, Counter>,
    image_served_bytes: Counter,
    image_downloaded_bytes: Counter,
}

fn phase_buckets() -> Histogram {
    // 1 s … about 2.3 hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn step_buckets() -> Histogram {
    // 0.1 s … about 1.8 hours.
    Histogram::new(exponential_buckets(0.1, 2.0, 17))
}

fn call_buckets() -> Histogram {
    // 1 ms … about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn request_buckets() -> Histogram {
    // 0.5 ms … about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let m = Self {
            registry: Registry::with_prefix("ingot"),
            phase_seconds: Family::new_with_constructor(phase_buckets),
            step_seconds: Family::new_with_constructor(step_buckets),
            nodes: Family::default(),
            power_sync_pass_seconds: call_buckets(),
            bmc_errors: Family::default(),
            out_of_band_changes: Counter::default(),
            agent_command_seconds: Family::new_with_constructor(call_buckets),
            lookups: Family::default(),
            heartbeats: Family::default(),
            api_requests: Family::default(),
            api_seconds: Family::new_with_constructor(request_buckets),
            db_connections: Family::default(),
            db_max_connections: Gauge::default(),
            image_cache_requests: Family::default(),
            image_served_bytes: Counter::default(),
            image_downloaded_bytes: Counter::default(),
        };
        // Series worth seeing at 0 before their first event.
        for result in ["accepted", "rejected"] {
            drop(m.lookups.get_or_create(&ResultLabels { result }));
            drop(m.heartbeats.get_or_create(&ResultLabels { result }));
        }
        for result in ["hit", "miss"] {
            drop(
                m.image_cache_requests
                    .get_or_create(&ResultLabels { result }),
            );
        }
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register_with_unit(
            "phase_duration",
            "Inspection, cleaning and deploy, from their start state to their end, by result",
            Unit::Seconds,
            self.phase_seconds.clone(),
        );
        r.register_with_unit(
            "step_duration",
            "Clean and deploy steps, from sending them to the agent to their end, by result",
            Unit::Seconds,
            self.step_seconds.clone(),
        );
        r.register(
            "nodes",
            "Nodes by provision and power state (read from the database at scrape time)",
            self.nodes.clone(),
        );
        r.register_with_unit(
            "power_sync_pass_duration",
            "Wall time of a power-state sync pass",
            Unit::Seconds,
            self.power_sync_pass_seconds.clone(),
        );
        r.register(
            "bmc_errors",
            "Failed reads and actions of power drivers, by driver and error kind",
            self.bmc_errors.clone(),
        );
        r.register(
            "power_sync_out_of_band_changes",
            "Power states found changed outside Ingot by the power sync",
            self.out_of_band_changes.clone(),
        );
        r.register_with_unit(
            "agent_command_duration",
            "Requests to the agent's command API, by command and result",
            Unit::Seconds,
            self.agent_command_seconds.clone(),
        );
        r.register(
            "agent_lookups",
            "Agent lookups (GET /v1/lookup), accepted or rejected",
            self.lookups.clone(),
        );
        r.register(
            "agent_heartbeats",
            "Agent heartbeats (POST /v1/heartbeat/{ident}), accepted or rejected",
            self.heartbeats.clone(),
        );
        r.register(
            "api_requests",
            "API requests by method, route pattern and status",
            self.api_requests.clone(),
        );
        r.register_with_unit(
            "api_request_duration",
            "API requests until the response head, by method and route pattern",
            Unit::Seconds,
            self.api_seconds.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database pool connections, idle or in use (at scrape time)",
            self.db_connections.clone(),
        );
        r.register(
            "db_pool_max_connections",
            "Most connections the database pool opens",
            self.db_max_connections.clone(),
        );
        r.register(
            "image_cache_requests",
            "Image cache look-ups: hit (cached already) or miss (downloaded)",
            self.image_cache_requests.clone(),
        );
        r.register_with_unit(
            "image_cache_served",
            "Bytes of cached images served to agents (as the responses declared)",
            Unit::Bytes,
            self.image_served_bytes.clone(),
        );
        r.register_with_unit(
            "image_cache_downloaded",
            "Bytes downloaded into the image cache",
            Unit::Bytes,
            self.image_downloaded_bytes.clone(),
        );
        self
    }

    /// The metrics in the OpenMetrics text format (Prometheus' exposition
    /// format, with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

/// The `kind` label of a power error.
pub fn kind_label(kind: PowerErrorKind) -> &'static str {
    match kind {
        PowerErrorKind::InvalidConfig => "invalid_config",
        PowerErrorKind::Unreachable => "unreachable",
        PowerErrorKind::Auth => "auth",
        PowerErrorKind::Refused => "refused",
        PowerErrorKind::Unsupported => "unsupported",
        PowerErrorKind::Failed => "failed",
    }
}

/// The `driver` label of a node's power interface: a known name or `other`
/// (the interface is a string of the node document).
pub fn driver_label(power_interface: Option<&str>) -> &'static str {
    match power_interface.unwrap_or("fake") {
        "ipmi" => "ipmi",
        "ipmitool" => "ipmitool",
        "redfish" => "redfish",
        "snmp" => "snmp",
        "fake" => "fake",
        "fake-hardware" => "fake-hardware",
        _ => "other",
    }
}

/// A power driver failed on a node whose power interface is `power_interface`.
pub fn bmc_error(power_interface: Option<&str>, kind: PowerErrorKind) {
    global()
        .bmc_errors
        .get_or_create(&BmcErrorLabels {
            driver: driver_label(power_interface),
            kind: kind_label(kind),
        })
        .inc();
}

/// The power sync found a power state changed outside Ingot.
pub fn out_of_band_change() {
    global().out_of_band_changes.inc();
}

/// A power sync pass took `took`.
pub fn power_sync_pass(took: Duration) {
    global().power_sync_pass_seconds.observe(took.as_secs_f64());
}

/// A request to the agent's command API (`command`, or `list_commands`)
/// ended with `result` after `took`.
pub fn agent_command(command: &str, result: &'static str, took: Duration) {
    global()
        .agent_command_seconds
        .get_or_create(&AgentCommandLabels {
            command: command_label(command),
            result,
        })
        .observe(took.as_secs_f64());
}

/// The commands the conductor sends, as labels (anything else is `other`).
fn command_label(command: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "list_commands",
        "clean.get_clean_steps",
        "clean.execute_clean_step",
        "deploy.get_deploy_steps",
        "deploy.execute_deploy_step",
        "image.install_bootloader",
        "poll.get_hardware_info",
        "standby.get_partition_uuids",
        "standby.power_off",
        "standby.sync",
    ];
    KNOWN
        .iter()
        .find(|k| **k == command)
        .copied()
        .unwrap_or("other")
}

/// An image was looked up in the cache: `hit` (it was there) or `miss`.
pub fn image_cache(hit: bool) {
    global()
        .image_cache_requests
        .get_or_create(&ResultLabels {
            result: if hit { "hit" } else { "miss" },
        })
        .inc();
}

/// `bytes` of a cached image were served.
pub fn image_served(bytes: u64) {
    global().image_served_bytes.inc_by(bytes);
}

/// `bytes` were downloaded into the image cache.
pub fn image_downloaded(bytes: u64) {
    global().image_downloaded_bytes.inc_by(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(driver_label(Some("ipmi")), "ipmi");
        assert_eq!(driver_label(None), "fake");
        assert_eq!(driver_label(Some("x\"y")), "other");
        assert_eq!(
            command_label("clean.execute_clean_step"),
            "clean.execute_clean_step"
        );
        assert_eq!(command_label("made.up"), "other");
    }

    #[test]
    fn the_registry_encodes_as_openmetrics() {
        out_of_band_change();
        let text = global().encode();
        assert!(text.contains("# TYPE ingot_power_sync_out_of_band_changes counter"));
        assert!(text.contains("# TYPE ingot_phase_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
