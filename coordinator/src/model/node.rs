//! The node document. Field names and meanings are Ironic's node object; the
//! few fields that are Ingot's own bookkeeping are marked "internal" and never
//! leave the coordinator (see [`Node::to_api`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::power::{PowerAction, PowerState, deserialize_target};
use crate::state::ProvisionState;

/// What the API asked the conductor to do; the per-node handler acts on it and
/// clears it. Recorded in the same write as the state change that the API made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Intent {
    /// Verify the BMC credentials (`manage` from enroll).
    Verify,
    /// Inspect the hardware.
    Inspect,
    /// Clean: automated (`provide`, after tear-down) or manual (`clean_steps`).
    Clean {
        /// Manual clean steps; `None` means automated cleaning.
        #[serde(default)]
        steps: Option<Vec<Value>>,
    },
    /// Deploy (or rebuild) the instance in `instance_info`.
    Deploy,
    /// Tear the instance down, then clean.
    Undeploy,
}

/// A power change requested through `states/power`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerIntent {
    /// The requested action.
    pub target: PowerAction,
}

/// An Ironic node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// UUID.
    pub uuid: String,
    /// Unique name (a host name).
    pub name: Option<String>,
    /// Hardware type.
    pub driver: String,
    /// BMC address and credentials, deploy kernel/ramdisk.
    pub driver_info: Map<String, Value>,
    /// The conductor's bookkeeping (agent URL and token, steps, reports).
    pub driver_internal_info: Map<String, Value>,
    /// Free-form data.
    pub extra: Map<String, Value>,
    /// What to deploy (image_source, image_checksum, root_gb, configdrive, …).
    pub instance_info: Map<String, Value>,
    /// The instance that reserved the node.
    pub instance_uuid: Option<String>,
    /// The instance's name (set by the client, or from
    /// `instance_info.display_name`); cleared with the instance.
    pub instance_name: Option<String>,
    /// Hardware properties (cpus, memory_mb, local_gb, cpu_arch, capabilities).
    pub properties: Map<String, Value>,
    /// `power on`, `power off` or null (unknown).
    pub power_state: Option<PowerState>,
    /// The power state being set (Ironic's: `power on` for the reboots).
    #[serde(deserialize_with = "deserialize_target", default)]
    pub target_power_state: Option<PowerState>,
    /// Provision state.
    pub provision_state: ProvisionState,
    /// Target of the running operation.
    pub target_provision_state: Option<ProvisionState>,
    /// When the provision state last changed.
    pub provision_updated_at: Option<String>,
    /// Maintenance mode.
    pub maintenance: bool,
    /// Why in maintenance.
    pub maintenance_reason: Option<String>,
    /// Fault that put the node in maintenance.
    pub fault: Option<String>,
    /// Hardware health the management interface reports (`OK`, `Warning`,
    /// `Critical`); null when unknown, which with Ingot's drivers it is.
    pub health: Option<String>,
    /// Last error of an operation.
    pub last_error: Option<String>,
    /// The conductor holding the node's lock, while it works on the node.
    pub reservation: Option<String>,
    /// Console enabled.
    pub console_enabled: bool,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last update time.
    pub updated_at: Option<String>,
    /// Inspection start.
    pub inspection_started_at: Option<String>,
    /// Inspection end.
    pub inspection_finished_at: Option<String>,
    /// The running clean step.
    pub clean_step: Map<String, Value>,
    /// The running deploy step.
    pub deploy_step: Map<String, Value>,
    /// The running service step (Ironic's servicing; Ingot runs none).
    pub service_step: Map<String, Value>,
    /// Chassis.
    pub chassis_uuid: Option<String>,
    /// Resource class for scheduling.
    pub resource_class: Option<String>,
    /// Conductor group.
    pub conductor_group: String,
    /// The conductor handling the node.
    pub conductor: Option<String>,
    /// Owner project.
    pub owner: Option<String>,
    /// Lessee project.
    pub lessee: Option<String>,
    /// Protected from undeploy and rebuild.
    pub protected: bool,
    /// Why protected.
    pub protected_reason: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Traits.
    pub traits: Vec<String>,
    /// The allocation holding the node.
    pub allocation_uuid: Option<String>,
    /// Per-node override of automated cleaning.
    pub automated_clean: Option<bool>,
    /// Retired.
    pub retired: bool,
    /// Why retired.
    pub retired_reason: Option<String>,
    /// Static network configuration.
    pub network_data: Map<String, Value>,
    /// Boot mode (`uefi`, `bios`).
    pub boot_mode: Option<String>,
    /// Secure boot.
    pub secure_boot: Option<bool>,
    /// Shard.
    pub shard: Option<String>,
    /// Parent node.
    pub parent_node: Option<String>,
    /// Never power the node off.
    pub disable_power_off: bool,
    /// Current RAID configuration.
    pub raid_config: Map<String, Value>,
    /// Target RAID configuration.
    pub target_raid_config: Map<String, Value>,
    /// Boot interface.
    pub boot_interface: Option<String>,
    /// Console interface.
    pub console_interface: Option<String>,
    /// Deploy interface.
    pub deploy_interface: Option<String>,
    /// Inspect interface.
    pub inspect_interface: Option<String>,
    /// Management interface.
    pub management_interface: Option<String>,
    /// Network interface.
    pub network_interface: Option<String>,
    /// Power interface.
    pub power_interface: Option<String>,
    /// RAID interface.
    pub raid_interface: Option<String>,
    /// Rescue interface.
    pub rescue_interface: Option<String>,
    /// Storage interface.
    pub storage_interface: Option<String>,
    /// Vendor interface.
    pub vendor_interface: Option<String>,
    /// BIOS interface.
    pub bios_interface: Option<String>,
    /// Firmware interface.
    pub firmware_interface: Option<String>,
    /// Internal: the operation the API asked for.
    pub intent: Option<Intent>,
    /// Internal: the power change the API asked for.
    pub power_intent: Option<PowerIntent>,
    /// Internal: the last hardware inventory (`GET /v1/nodes/{id}/inventory`).
    pub inventory: Option<Value>,
    /// Internal: when the coordinator last heard from the agent or made
    /// progress (ms since the epoch); wait-state timeouts count from here.
    pub progress_ms: i64,
    /// Internal: the fencing token. It grows every time a coordinator takes
    /// the node's reservation from another (a takeover); actions and writes
    /// under an older token are refused (docs/ha.md).
    pub fence: i64,
}

impl Default for Node {
    fn default() -> Self {
        Self {
            uuid: String::new(),
            name: None,
            driver: String::new(),
            driver_info: Map::new(),
            driver_internal_info: Map::new(),
            extra: Map::new(),
            instance_info: Map::new(),
            instance_uuid: None,
            instance_name: None,
            properties: Map::new(),
            power_state: None,
            target_power_state: None,
            provision_state: ProvisionState::Enroll,
            target_provision_state: None,
            provision_updated_at: None,
            maintenance: false,
            maintenance_reason: None,
            fault: None,
            health: None,
            last_error: None,
            reservation: None,
            console_enabled: false,
            created_at: None,
            updated_at: None,
            inspection_started_at: None,
            inspection_finished_at: None,
            clean_step: Map::new(),
            deploy_step: Map::new(),
            service_step: Map::new(),
            chassis_uuid: None,
            resource_class: None,
            conductor_group: String::new(),
            conductor: None,
            owner: None,
            lessee: None,
            protected: false,
            protected_reason: None,
            description: None,
            traits: Vec::new(),
            allocation_uuid: None,
            automated_clean: None,
            retired: false,
            retired_reason: None,
            network_data: Map::new(),
            boot_mode: None,
            secure_boot: None,
            shard: None,
            parent_node: None,
            disable_power_off: false,
            raid_config: Map::new(),
            target_raid_config: Map::new(),
            boot_interface: None,
            console_interface: None,
            deploy_interface: None,
            inspect_interface: None,
            management_interface: None,
            network_interface: None,
            power_interface: None,
            raid_interface: None,
            rescue_interface: None,
            storage_interface: None,
            vendor_interface: None,
            bios_interface: None,
            firmware_interface: None,
            intent: None,
            power_intent: None,
            inventory: None,
            progress_ms: 0,
            fence: 0,
        }
    }
}

/// Keys of the node document that are Ingot's bookkeeping, not API fields.
pub const INTERNAL_FIELDS: [&str; 5] = [
    "intent",
    "power_intent",
    "inventory",
    "progress_ms",
    "fence",
];

/// Fields a client may change with PATCH.
pub const PATCHABLE_FIELDS: [&str; 38] = [
    "name",
    "instance_name",
    "driver",
    "driver_info",
    "extra",
    "instance_info",
    "instance_uuid",
    "properties",
    "chassis_uuid",
    "resource_class",
    "conductor_group",
    "owner",
    "lessee",
    "protected",
    "protected_reason",
    "description",
    "automated_clean",
    "retired",
    "retired_reason",
    "network_data",
    "shard",
    "parent_node",
    "disable_power_off",
    "maintenance",
    "maintenance_reason",
    "boot_interface",
    "console_interface",
    "deploy_interface",
    "inspect_interface",
    "management_interface",
    "network_interface",
    "power_interface",
    "raid_interface",
    "rescue_interface",
    "storage_interface",
    "vendor_interface",
    "bios_interface",
    "firmware_interface",
];

/// The interface fields, with the interface name they configure.
pub const INTERFACE_FIELDS: [(&str, &str); 13] = [
    ("boot_interface", "boot"),
    ("console_interface", "console"),
    ("deploy_interface", "deploy"),
    ("inspect_interface", "inspect"),
    ("management_interface", "management"),
    ("network_interface", "network"),
    ("power_interface", "power"),
    ("raid_interface", "raid"),
    ("rescue_interface", "rescue"),
    ("storage_interface", "storage"),
    ("vendor_interface", "vendor"),
    ("bios_interface", "bios"),
    ("firmware_interface", "firmware"),
];

pub use super::mask::MASK;

impl Node {
    /// Whether a coordinator must look after the node: a transient or wait
    /// state, a pending power request, or an enabled console. Stored beside
    /// the document (`needs_conductor`), so that the sweep for orphans and
    /// restart recovery read only these.
    pub fn needs_conductor(&self) -> bool {
        self.provision_state.is_transient()
            || self.provision_state.is_wait()
            || self.power_intent.is_some()
            || self.console_enabled
    }

    /// The node as the API shows it: internal fields removed, secrets masked,
    /// links added. `base` is the API's base URL (no trailing slash).
    pub fn to_api(&self, base: &str) -> Map<String, Value> {
        let mut v = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for k in INTERNAL_FIELDS {
            v.remove(k);
        }
        // Secrets at every depth of every document (driver_info,
        // instance_info with its config drive, extra, properties, …).
        super::mask::mask_map(&mut v);
        let me = format!("{base}/v1/nodes/{}", self.uuid);
        let bookmark = format!("{base}/nodes/{}", self.uuid);
        v.insert("links".into(), links(&me, &bookmark));
        for sub in ["ports", "portgroups", "states", "volume"] {
            v.insert(
                sub.into(),
                links(&format!("{me}/{sub}"), &format!("{bookmark}/{sub}")),
            );
        }
        v
    }

    /// True if the node's deploy interface needs the agent.
    pub fn uses_agent(&self) -> bool {
        matches!(self.deploy_interface.as_deref(), Some("direct" | "agent"))
    }

    /// A per-node switch in `driver_info` (a boolean, or one of Ironic's
    /// boolean spellings as a string); `None` when unset or unreadable, so
    /// the configuration's default applies.
    pub fn driver_info_flag(&self, key: &str) -> Option<bool> {
        super::json_bool(self.driver_info.get(key)?)
    }

    /// The agent's URL recorded from the last heartbeat.
    pub fn agent_url(&self) -> Option<&str> {
        self.driver_internal_info
            .get("agent_url")
            .and_then(Value::as_str)
    }

    /// The current agent token.
    pub fn agent_token(&self) -> Option<&str> {
        self.driver_internal_info
            .get("agent_secret_token")
            .and_then(Value::as_str)
    }

    /// Forgets the agent (token, URL, certificate): after power off, deploy or clean.
    pub fn wipe_agent_info(&mut self) {
        for k in [
            "agent_secret_token",
            "agent_url",
            "agent_verify_ca",
            "agent_command_id",
            "agent_last_heartbeat",
            "agent_version",
            "ingot_progress",
        ] {
            self.driver_internal_info.remove(k);
        }
    }

    /// Moves to `state`, updating the timestamps the API and the timeouts use.
    pub fn set_provision_state(&mut self, state: ProvisionState, target: Option<ProvisionState>) {
        self.provision_state = state;
        self.target_provision_state = target;
        self.provision_updated_at = Some(super::now_iso());
        self.progress_ms = super::now_ms();
    }
}

/// Ironic's `links` pair.
pub fn links(href: &str, bookmark: &str) -> Value {
    serde_json::json!([
        {"href": href, "rel": "self"},
        {"href": bookmark, "rel": "bookmark"},
    ])
}
