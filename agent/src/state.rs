//! The agent's shared state: configuration, what lookup returned (node,
//! config, token), the command history, and the log ring.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ingot_proto::agent::{LookupConfig, LookupNode};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::ca::TrustedCa;
use crate::ipa::executor::Executor;
use crate::logring::LogRing;

/// What power actions do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerPolicy {
    /// Call reboot(2): only as PID 1 or when explicitly allowed.
    Real,
    /// Log what would happen and do nothing (development and tests).
    DryRun,
}

/// Static configuration of the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Root of the sysfs/procfs tree the inventory is read from (`/` live).
    pub root: PathBuf,
    /// Testing: disks named `/dev/<name>` by the inventory are opened as
    /// `<dev_dir>/<name>` (regular files or loop devices) instead.
    pub dev_dir: Option<PathBuf>,
    /// Power actions.
    pub power: PowerPolicy,
    /// Directory for state that must survive an agent restart (the token).
    pub state_dir: Option<PathBuf>,
    /// Accept commands without a token when none is known (standalone use,
    /// no coordinator). Never set when a coordinator URL is given.
    pub allow_without_token: bool,
    /// CA certificates trusted for image, checksum and config drive downloads
    /// (besides the public roots).
    pub ca: TrustedCa,
    /// Do not verify TLS certificates of downloads (labs only).
    pub insecure: bool,
    /// The version reported in heartbeats and `/v1/status`.
    pub version: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            dev_dir: None,
            power: PowerPolicy::DryRun,
            state_dir: None,
            allow_without_token: false,
            ca: TrustedCa::none(),
            insecure: false,
            version: agent_version(),
        }
    }
}

/// The agent version: IPA's protocol version with Ingot's as local label, so
/// Ironic's version comparisons see a current IPA.
pub fn agent_version() -> String {
    format!(
        "{}+ingot.{}",
        ingot_proto::agent::IPA_COMPAT_VERSION,
        env!("CARGO_PKG_VERSION")
    )
}

/// Everything the API handlers and commands share.
#[derive(Debug)]
pub struct AgentState {
    /// Configuration.
    pub config: AgentConfig,
    /// Unix time the agent started.
    pub started_at: f64,
    /// The log ring.
    pub logs: LogRing,
    /// Command history and execution.
    pub executor: Executor,
    /// Signalled when an asynchronous command finished: heartbeat now.
    pub heartbeat_now: Notify,
    token: Mutex<Option<String>>,
    node: Mutex<Option<LookupNode>>,
    lookup_config: Mutex<Option<LookupConfig>>,
    partition_uuids: Mutex<Map<String, Value>>,
}

const TOKEN_FILE: &str = "agent-token";

impl AgentState {
    /// New state; a token saved by a previous run in `state_dir` is restored.
    pub fn new(config: AgentConfig, logs: LogRing) -> Arc<Self> {
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let saved = config
            .state_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join(TOKEN_FILE)).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if saved.is_some() {
            tracing::info!("restored the agent token saved by a previous run");
        }
        Arc::new(Self {
            config,
            started_at,
            logs,
            executor: Executor::default(),
            heartbeat_now: Notify::new(),
            token: Mutex::new(saved),
            node: Mutex::new(None),
            lookup_config: Mutex::new(None),
            partition_uuids: Mutex::new(Map::new()),
        })
    }

    /// The current token.
    pub fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    /// Sets the token and saves it in the state directory.
    pub fn set_token(&self, token: Option<String>) {
        if let (Some(dir), Some(t)) = (&self.config.state_dir, &token) {
            if let Err(e) = save_secret(dir, TOKEN_FILE, t) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot save the agent token");
            }
        }
        if let Ok(mut slot) = self.token.lock() {
            *slot = token;
        }
    }

    /// Takes the token a lookup offered. A token other than the one this agent
    /// holds (or held until the coordinator rejected it) means the coordinator
    /// wiped the old one: a power cycle or a new operation. The commands run
    /// under the old token belong to an operation that is over, and a real
    /// Ironic conductor reads the last command of `GET /v1/commands` to decide
    /// whether its own command finished, so they are dropped (a running one
    /// stays). The same token again keeps them. Returns how many were dropped.
    pub fn accept_lookup_token(&self, token: String) -> usize {
        let renewed = self.token().as_deref() != Some(token.as_str());
        self.set_token(Some(token));
        if !renewed {
            return 0;
        }
        let dropped = self.executor.clear_finished();
        if dropped > 0 {
            tracing::info!(
                dropped,
                "new agent token: dropped the command history of the previous operation"
            );
        }
        dropped
    }

    /// Checks a token given with a command (IPA: 401 when missing or wrong).
    pub fn token_ok(&self, given: Option<&str>) -> bool {
        match (self.token(), given) {
            (Some(t), Some(g)) => constant_time_eq(t.as_bytes(), g.as_bytes()),
            (None, _) => self.config.allow_without_token,
            (Some(_), None) => false,
        }
    }

    /// The node from the last lookup.
    pub fn node(&self) -> Option<LookupNode> {
        self.node.lock().ok().and_then(|n| n.clone())
    }

    /// Records what lookup returned.
    pub fn set_lookup(&self, node: LookupNode, config: LookupConfig) {
        if let Ok(mut n) = self.node.lock() {
            *n = Some(node);
        }
        if let Ok(mut c) = self.lookup_config.lock() {
            *c = Some(config);
        }
    }

    /// The config from the last lookup.
    pub fn lookup_config(&self) -> Option<LookupConfig> {
        self.lookup_config.lock().ok().and_then(|c| c.clone())
    }

    /// Whether md5 image checksums are allowed (the lookup config decides).
    pub fn md5_allowed(&self) -> bool {
        self.lookup_config()
            .and_then(|c| c.agent_md5_checksum_enable)
            .unwrap_or(false)
    }

    /// The path to open for a disk the inventory names `/dev/<name>`.
    pub fn device_path(&self, name: &str) -> PathBuf {
        match &self.config.dev_dir {
            Some(dir) => dir.join(name.trim_start_matches("/dev/")),
            None => PathBuf::from(name),
        }
    }

    /// Partition UUIDs recorded by the last image write.
    pub fn partition_uuids(&self) -> Map<String, Value> {
        self.partition_uuids
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Records partition UUIDs of the last image write.
    pub fn set_partition_uuids(&self, m: Map<String, Value>) {
        if let Ok(mut p) = self.partition_uuids.lock() {
            *p = m;
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a secret file with mode 0600.
fn save_secret(dir: &Path, name: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(value.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, dir.join(name))
}
