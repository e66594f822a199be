//! The IPA-compatible agent protocol: lookup and heartbeat (agent → coordinator
//! or Ironic), and the command API on the agent (coordinator or Ironic's
//! conductor → agent, `/v1/commands/`).
//!
//! Field names, nesting and status strings are ironic-python-agent's, so a real
//! Ironic conductor can drive the Ingot agent and the Ingot coordinator can
//! drive a real IPA.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The IPA release whose protocol the agent speaks; Ironic compares versions.
pub const IPA_COMPAT_VERSION: &str = "13.0.0";
/// Ironic API version used for lookup (IPA's `AGENT_TOKEN_IRONIC_VERSION`).
pub const LOOKUP_API_VERSION: &str = "1.62";
/// Ironic API version used for heartbeats (with `agent_verify_ca`).
pub const HEARTBEAT_API_VERSION: &str = "1.68";
/// The agent API's default port.
pub const DEFAULT_AGENT_PORT: u16 = 9999;

/// `POST /v1/commands/` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// `<extension>.<command>`, e.g. `clean.get_clean_steps`.
    pub name: String,
    /// Command parameters.
    pub params: Map<String, Value>,
}

/// State of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    /// Still executing.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error (`command_error`).
    Failed,
    /// The hardware manager versions differ from the ones the steps came from.
    CleanVersionMismatch,
}

/// An error inside a command result (IPA `RESTError` serialization).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandError {
    /// Error class, e.g. `ImageChecksumError`, `CommandExecutionError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HTTP-like code (500, 400, 404, 409, …).
    pub code: u16,
    /// Short message.
    pub message: String,
    /// Details.
    pub details: String,
}

/// The command result envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// UUID of the command.
    pub id: String,
    /// The command name without the extension, e.g. `prepare_image`.
    pub command_name: String,
    /// Status.
    pub command_status: CommandStatus,
    /// Error, when failed.
    pub command_error: Option<CommandError>,
    /// Command-specific result.
    pub command_result: Option<Value>,
}

/// `GET /v1/commands/` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    /// Every command of this boot, in execution order.
    pub commands: Vec<CommandResult>,
}

/// The error body of the agent API (WSME style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFault {
    /// `Client` or `Server`.
    pub faultcode: String,
    /// The message.
    pub faultstring: String,
}

/// `GET /v1/status` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Unix time the agent started.
    pub started_at: f64,
    /// Agent version.
    pub version: String,
}

/// A deploy or clean step, as listed by `get_*_steps` and passed to `execute_*_step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step name, e.g. `erase_devices_metadata`.
    pub step: String,
    /// Priority (0 = only when requested).
    #[serde(default)]
    pub priority: i64,
    /// Interface, e.g. `deploy`, `raid`.
    pub interface: String,
    /// Whether the node must reboot after the step.
    #[serde(default)]
    pub reboot_requested: bool,
    /// Whether the step can be aborted.
    #[serde(default)]
    pub abortable: bool,
    /// Argument descriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argsinfo: Option<Value>,
    /// Arguments (in `execute_*_step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
}

/// What `image_info` carries (IPA `standby._validate_image_info`); unknown keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image identifier.
    pub id: String,
    /// URLs, tried in order.
    pub urls: Vec<String>,
    /// `raw`, `qcow2`, …
    #[serde(default)]
    pub disk_format: Option<String>,
    /// `bare`, …
    #[serde(default)]
    pub container_format: Option<String>,
    /// Stream raw images straight to disk.
    #[serde(default)]
    pub stream_raw_images: Option<bool>,
    /// Hex digest (md5/sha256/sha512 by length) or a URL to a checksums file.
    #[serde(default)]
    pub checksum: Option<String>,
    /// Glance's hash algorithm.
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    /// Glance's hash value.
    #[serde(default)]
    pub os_hash_value: Option<String>,
    /// The node.
    #[serde(default)]
    pub node_uuid: Option<String>,
    /// `whole-disk` or `partition`.
    #[serde(default)]
    pub image_type: Option<String>,
    /// A config drive (gzip+base64 ISO, or a URL).
    #[serde(default)]
    pub configdrive: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The node part of a lookup answer (only what the agent uses is typed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupNode {
    /// Node UUID.
    pub uuid: String,
    /// Node properties (root device hints in `root_device`).
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Instance info (root device hints in `root_device`).
    #[serde(default)]
    pub instance_info: Map<String, Value>,
    /// Driver internal info (erase parameters).
    #[serde(default)]
    pub driver_internal_info: Map<String, Value>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The config part of a lookup answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupConfig {
    /// Seconds after which the node counts as gone without a heartbeat.
    #[serde(default)]
    pub heartbeat_timeout: Option<f64>,
    /// The agent token: plain text on the first lookup, `******` afterwards.
    #[serde(default)]
    pub agent_token: Option<String>,
    /// Whether the token is required (always true since Ironic Victoria).
    #[serde(default)]
    pub agent_token_required: Option<bool>,
    /// Whether md5 checksums are allowed.
    #[serde(default)]
    pub agent_md5_checksum_enable: Option<bool>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `GET /v1/lookup` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// The node.
    pub node: LookupNode,
    /// Agent configuration.
    pub config: LookupConfig,
}

/// `POST /v1/heartbeat/<node>` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The agent API's URL, e.g. `https://10.0.0.5:9999`.
    pub callback_url: String,
    /// Agent version.
    pub agent_version: String,
    /// The token from lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
    /// PEM of the agent's self-signed certificate (auto-TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_verify_ca: Option<String>,
}

/// `clean.get_clean_steps` / `deploy.get_deploy_steps` result: steps by hardware manager.
pub type StepsByManager = BTreeMap<String, Vec<Step>>;
