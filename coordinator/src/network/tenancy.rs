//! Where a node's switch ports belong (issue 19 items 1 and 2): the pure
//! rules, without I/O; the conductor (`conductor/network.rs`) applies them.
//!
//! - A port is switched when its `local_link_connection` has a `port_id`
//!   (the port's name on the switch); `switch_info` names the configured
//!   switch (`[switches.<name>]`), and may be left out when exactly one
//!   switch is configured.
//! - During a service phase (inspection, cleaning, deploy, rescue) a
//!   PXE-enabled switched port is an access port on that phase's network;
//!   a switched port that does not boot is quarantined.
//! - On the tenant networks (the deployed instance) a port follows its
//!   `extra.switchport` when it has one (Ironic's standalone networking:
//!   `{"mode": "access"|"trunk"|"hybrid", "native_vlan": n,
//!   "allowed_vlans": [...]}`), else its VIF
//!   (`internal_info.tenant_vif_port_id`, a configured network's name or
//!   `uuid`) as an access port on that network's VLAN; a port with neither
//!   is quarantined. Only tenant networks (configured, and no role's) may
//!   be used, so an instance can never be put on the provisioning,
//!   cleaning or quarantine VLAN.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::config::{NetworkConfig, Phase};
use super::switch::{PortState, Switches, VlanId};
use crate::config::Config;
use crate::model::{Node, Port};

/// The `network_interface` names that switch VLANs per phase: Ironic's
/// `neutron` (here without Neutron: the networks are the coordinator's own)
/// and `ironic-networking` (Ironic's standalone switching interface).
pub const VLAN_INTERFACES: [&str; 2] = ["neutron", "ironic-networking"];

/// `port.internal_info` key of the state the coordinator last put the port
/// in (read by the network sync).
pub const INTENT_KEY: &str = "switch_intent";

/// `driver_internal_info` key of the node's isolation record.
pub const RECORD_KEY: &str = "isolation_report";

/// The isolation record keeps this many entries (the oldest go first).
pub const RECORD_LIMIT: usize = 100;

/// True when the node's ports are switched per phase.
pub fn vlan_per_phase(node: &Node) -> bool {
    node.network_interface
        .as_deref()
        .is_some_and(|i| VLAN_INTERFACES.contains(&i))
}

/// Where the node's ports should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A service phase's network.
    Service(Phase),
    /// The tenant networks (the instance).
    Tenant,
}

impl Placement {
    /// The reason written in the isolation record.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Service(Phase::Provisioning) => "provisioning",
            Self::Service(Phase::Cleaning) => "cleaning",
            Self::Service(Phase::Inspection) => "inspection",
            Self::Service(Phase::Rescue) => "rescue",
            Self::Tenant => "tenant",
        }
    }
}

/// A port of a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchPort {
    /// The configured switch's name.
    pub switch: String,
    /// The port's name on it.
    pub port: String,
}

/// The switch port behind `port`, from its `local_link_connection`: `None`
/// when it has no `port_id` (not switched).
pub fn switch_port(port: &Port, switches: &Switches) -> Result<Option<SwitchPort>, String> {
    let llc = &port.local_link_connection;
    let Some(port_id) = llc.get("port_id").and_then(Value::as_str) else {
        return Ok(None);
    };
    let switch = match llc.get("switch_info").and_then(Value::as_str) {
        Some(name) if switches.get(name).is_some() => name.to_owned(),
        Some(name) => {
            return Err(format!(
                "port {}: local_link_connection.switch_info {name:?} is no configured switch ([switches.<name>])",
                port.uuid
            ));
        }
        None => {
            let mut names = switches.names();
            match (names.next(), names.next()) {
                (Some(only), None) => only.to_owned(),
                _ => {
                    return Err(format!(
                        "port {}: local_link_connection has no switch_info naming one of the configured switches",
                        port.uuid
                    ));
                }
            }
        }
    };
    Ok(Some(SwitchPort {
        switch,
        port: port_id.to_owned(),
    }))
}

/// Whether a VLAN-per-phase node's ports can be switched (the network
/// interface's validation): at least one switched port, each naming a
/// configured switch.
pub fn check_ports(ports: &[Port], switches: &Switches) -> Result<(), String> {
    let mut switched = 0;
    for port in ports {
        if switch_port(port, switches)?.is_some() {
            switched += 1;
        }
    }
    if switched == 0 {
        return Err(
            "no port has a local_link_connection with port_id (and switch_info naming a configured switch)"
                .into(),
        );
    }
    Ok(())
}

/// True when `name` serves a role (provisioning, cleaning, inspection,
/// rescue, quarantine): never a tenant network.
fn is_role(config: &Config, name: &str) -> bool {
    let r = &config.network_roles;
    [
        &r.provisioning,
        &r.cleaning,
        &r.inspection,
        &r.rescue,
        &r.quarantine,
    ]
    .iter()
    .any(|n| n.as_deref() == Some(name))
}

/// The tenant network a VIF id names: a configured network's name or its
/// `uuid`. Role networks are refused (they are not tenant networks).
pub fn resolve_vif<'a>(
    config: &'a Config,
    vif: &str,
) -> Result<(&'a str, &'a NetworkConfig), String> {
    let found = config.networks.iter().find(|(name, n)| {
        name.as_str() == vif
            || n.uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(vif))
    });
    let Some((name, network)) = found else {
        return Err(format!(
            "VIF {vif} is no configured network ([networks.<name>] by name or uuid)"
        ));
    };
    if is_role(config, name) {
        return Err(format!(
            "network {name} serves a role in [network_roles] and is no tenant network"
        ));
    }
    Ok((name.as_str(), network))
}

/// The tenant network using `vlan`, if any.
fn tenant_vlan(config: &Config, vlan: VlanId) -> Option<&str> {
    config
        .networks
        .iter()
        .find(|(name, n)| n.vlan == vlan && !is_role(config, name))
        .map(|(name, _)| name.as_str())
}

/// A VLAN of `extra.switchport`: 1 to 4094 and a tenant network's.
fn switchport_vlan(config: &Config, port: &Port, v: &Value) -> Result<VlanId, String> {
    let vlan = v
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .and_then(VlanId::new)
        .ok_or_else(|| {
            format!(
                "port {}: extra.switchport has VLAN {v}, not 1 to 4094",
                port.uuid
            )
        })?;
    if tenant_vlan(config, vlan).is_none() {
        return Err(format!(
            "port {}: extra.switchport VLAN {vlan} is no tenant network's ([networks] other than the roles')",
            port.uuid
        ));
    }
    Ok(vlan)
}

/// The port's `extra.switchport` as a state, if it has one.
pub fn switchport_state(config: &Config, port: &Port) -> Result<Option<PortState>, String> {
    let Some(sp) = port.extra.get("switchport") else {
        return Ok(None);
    };
    let Some(sp) = sp.as_object() else {
        return Err(format!(
            "port {}: extra.switchport must be an object",
            port.uuid
        ));
    };
    if let Some(k) = sp
        .keys()
        .find(|k| !["mode", "native_vlan", "allowed_vlans"].contains(&k.as_str()))
    {
        return Err(format!(
            "port {}: extra.switchport.{k} is not supported (mode, native_vlan, allowed_vlans)",
            port.uuid
        ));
    }
    let native = sp
        .get("native_vlan")
        .filter(|v| !v.is_null())
        .map(|v| switchport_vlan(config, port, v))
        .transpose()?;
    let allowed = match sp.get("allowed_vlans") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|v| switchport_vlan(config, port, v))
                .collect::<Result<BTreeSet<_>, _>>()?,
        ),
        Some(_) => {
            return Err(format!(
                "port {}: extra.switchport.allowed_vlans must be a list",
                port.uuid
            ));
        }
    };
    match sp.get("mode").and_then(Value::as_str) {
        Some("access") => match (native, allowed) {
            (Some(vlan), None) => Ok(Some(PortState::access(vlan))),
            _ => Err(format!(
                "port {}: an access extra.switchport needs native_vlan and no allowed_vlans",
                port.uuid
            )),
        },
        Some("trunk" | "hybrid") => match allowed {
            Some(allowed) if !allowed.is_empty() => Ok(Some(PortState::Trunk { native, allowed })),
            _ => Err(format!(
                "port {}: a trunk extra.switchport needs allowed_vlans (an empty trunk carries every VLAN)",
                port.uuid
            )),
        },
        _ => Err(format!(
            "port {}: extra.switchport.mode must be access, trunk or hybrid",
            port.uuid
        )),
    }
}

/// What a port should be, and on which network (for the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The state to set.
    pub state: PortState,
    /// The network's name, `switchport` for `extra.switchport`, or
    /// `quarantine`.
    pub network: String,
}

impl Wanted {
    fn quarantine() -> Self {
        Self {
            state: PortState::Quarantined,
            network: "quarantine".into(),
        }
    }

    /// True when the port ends on a tenant network.
    pub fn is_tenant(&self) -> bool {
        self.state != PortState::Quarantined
    }
}

/// Where `port` goes for `placement`.
pub fn wanted(config: &Config, placement: Placement, port: &Port) -> Result<Wanted, String> {
    match placement {
        Placement::Service(phase) => {
            if !port.pxe_enabled {
                return Ok(Wanted::quarantine());
            }
            let name = config.network_roles.network(phase).ok_or_else(|| {
                format!(
                    "no {} network in [network_roles]",
                    Placement::Service(phase).reason()
                )
            })?;
            let network = config
                .networks
                .get(name)
                .ok_or_else(|| format!("no [networks.{name}]"))?;
            Ok(Wanted {
                state: PortState::access(network.vlan),
                network: name.to_owned(),
            })
        }
        Placement::Tenant => {
            if let Some(state) = switchport_state(config, port)? {
                return Ok(Wanted {
                    state,
                    network: "switchport".into(),
                });
            }
            match port.vif() {
                Some(vif) => {
                    let (name, network) =
                        resolve_vif(config, vif).map_err(|e| format!("port {}: {e}", port.uuid))?;
                    Ok(Wanted {
                        state: PortState::access(network.vlan),
                        network: name.to_owned(),
                    })
                }
                None => Ok(Wanted::quarantine()),
            }
        }
    }
}

/// A state as stored in `internal_info.switch_intent.state`.
pub fn state_to_json(state: &PortState) -> Value {
    match state {
        PortState::Access { vlan } => json!({"mode": "access", "vlan": vlan.get()}),
        PortState::Trunk { native, allowed } => json!({
            "mode": "trunk",
            "native_vlan": native.map(VlanId::get),
            "allowed_vlans": allowed.iter().map(|v| v.get()).collect::<Vec<_>>(),
        }),
        PortState::Quarantined => json!({"mode": "quarantine"}),
        other => json!({"mode": "other", "description": other.to_string()}),
    }
}

fn vlan_of(v: Option<&Value>) -> Option<VlanId> {
    v?.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .and_then(VlanId::new)
}

/// Reads [`state_to_json`] back; `None` for anything else.
pub fn state_from_json(v: &Value) -> Option<PortState> {
    match v.get("mode")?.as_str()? {
        "access" => Some(PortState::access(vlan_of(v.get("vlan"))?)),
        "trunk" => {
            let allowed = v
                .get("allowed_vlans")?
                .as_array()?
                .iter()
                .map(|x| vlan_of(Some(x)))
                .collect::<Option<BTreeSet<_>>>()?;
            if allowed.is_empty() {
                return None;
            }
            let native = match v.get("native_vlan") {
                None | Some(Value::Null) => None,
                n => Some(vlan_of(n)?),
            };
            Some(PortState::Trunk { native, allowed })
        }
        "quarantine" => Some(PortState::Quarantined),
        _ => None,
    }
}

/// What a port's `internal_info.switch_intent` holds.
pub fn intent_json(sp: &SwitchPort, wanted: &Wanted) -> Value {
    json!({
        "switch": sp.switch,
        "port": sp.port,
        "network": wanted.network,
        "state": state_to_json(&wanted.state),
    })
}

/// The intent stored on `port`, if any.
pub fn stored_intent(port: &Port) -> Option<Wanted> {
    let v = port.internal_info.get(INTENT_KEY)?;
    Some(Wanted {
        state: state_from_json(v.get("state")?)?,
        network: v.get("network")?.as_str()?.to_owned(),
    })
}

/// The VLAN untagged frames of a port in `state` are on (the quarantine
/// VLAN for [`PortState::Quarantined`]).
pub fn untagged_vlan(state: &PortState, quarantine: Option<VlanId>) -> Option<u16> {
    match state {
        PortState::Access { vlan } => Some(vlan.get()),
        PortState::Trunk { native, .. } => native.map(VlanId::get),
        PortState::Quarantined => quarantine.map(VlanId::get),
        PortState::AllVlans | PortState::Other { .. } => None,
    }
}

/// One change of a port's networks, as the isolation record keeps it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The switch port.
    pub at: &'a SwitchPort,
    /// The Ingot port's UUID.
    pub port_uuid: &'a str,
    /// Why: a placement's reason, `drift`, `maintenance`, `fail-closed`.
    pub reason: &'a str,
    /// Where it went.
    pub wanted: &'a Wanted,
    /// What the switch had before (`None`: unreadable).
    pub before: Option<&'a PortState>,
    /// Whether the read back after the change matched.
    pub read_back: bool,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// The isolation record entry of `change`.
pub fn record_entry(change: &Change<'_>, quarantine: Option<VlanId>, now: &str) -> Value {
    let mut e = Map::new();
    e.insert("at".into(), json!(now));
    e.insert("switch".into(), json!(change.at.switch));
    e.insert("switch_port".into(), json!(change.at.port));
    e.insert("port_uuid".into(), json!(change.port_uuid));
    e.insert("reason".into(), json!(change.reason));
    e.insert("network".into(), json!(change.wanted.network));
    e.insert(
        "before".into(),
        change.before.map_or(Value::Null, |s| json!(s.to_string())),
    );
    e.insert("after".into(), json!(change.wanted.state.to_string()));
    e.insert(
        "vlan_before".into(),
        json!(change.before.and_then(|s| untagged_vlan(s, quarantine))),
    );
    e.insert(
        "vlan_after".into(),
        json!(untagged_vlan(&change.wanted.state, quarantine)),
    );
    e.insert("read_back".into(), json!(change.read_back));
    if let Some(err) = &change.error {
        e.insert("error".into(), json!(err));
    }
    Value::Object(e)
}

/// Appends `entries` to the node's isolation record, keeping the last
/// [`RECORD_LIMIT`].
pub fn append_record(node: &mut Node, entries: &[Value]) {
    if entries.is_empty() {
        return;
    }
    let mut list = match node.driver_internal_info.remove(RECORD_KEY) {
        Some(Value::Array(l)) => l,
        _ => Vec::new(),
    };
    list.extend(entries.iter().cloned());
    let excess = list.len().saturating_sub(RECORD_LIMIT);
    list.drain(..excess);
    node.driver_internal_info
        .insert(RECORD_KEY.into(), Value::Array(list));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config() -> Config {
        toml::from_str(
            r#"
            [switches.tor1]
            driver = "ovsdb"
            address = "unix:/x"
            [networks.prov]
            vlan = 100
            [networks.clean]
            vlan = 101
            [networks.q]
            vlan = 4000
            [networks.tenant-a]
            vlan = 201
            uuid = "0d5e3c1a-1111-4222-8333-444455556666"
            [networks.tenant-b]
            vlan = 202
            [network_roles]
            provisioning = "prov"
            cleaning = "clean"
            quarantine = "q"
            "#,
        )
        .unwrap()
    }

    fn port(llc: Value, extra: Value, vif: Option<&str>, pxe: bool) -> Port {
        let mut p = Port {
            uuid: "p-1".into(),
            local_link_connection: llc.as_object().cloned().unwrap_or_default(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            pxe_enabled: pxe,
            ..Port::default()
        };
        if let Some(v) = vif {
            p.internal_info
                .insert("tenant_vif_port_id".into(), json!(v));
        }
        p
    }

    fn v(n: u16) -> VlanId {
        VlanId::new(n).unwrap()
    }

    #[test]
    fn switch_ports_come_from_local_link_connection() {
        let c = config();
        let sw = Switches::from_config(&c).unwrap();
        let p = port(
            json!({"port_id": "p1", "switch_info": "tor1"}),
            json!({}),
            None,
            true,
        );
        assert_eq!(
            switch_port(&p, &sw).unwrap(),
            Some(SwitchPort {
                switch: "tor1".into(),
                port: "p1".into()
            })
        );
        let one = port(json!({"port_id": "p1"}), json!({}), None, true);
        assert_eq!(switch_port(&one, &sw).unwrap().unwrap().switch, "tor1");
        let none = port(json!({"switch_id": "aa:bb"}), json!({}), None, true);
        assert_eq!(switch_port(&none, &sw).unwrap(), None);
        let bad = port(
            json!({"port_id": "p1", "switch_info": "tor9"}),
            json!({}),
            None,
            true,
        );
        assert!(switch_port(&bad, &sw).unwrap_err().contains("tor9"));
    }

    #[test]
    fn vifs_resolve_to_tenant_networks_only() {
        let c = config();
        assert_eq!(resolve_vif(&c, "tenant-a").unwrap().0, "tenant-a");
        assert_eq!(
            resolve_vif(&c, "0D5E3C1A-1111-4222-8333-444455556666")
                .unwrap()
                .0,
            "tenant-a"
        );
        assert!(
            resolve_vif(&c, "nope")
                .unwrap_err()
                .contains("no configured network")
        );
        for role in ["prov", "clean", "q"] {
            assert!(
                resolve_vif(&c, role).unwrap_err().contains("role"),
                "{role}"
            );
        }
    }

    #[test]
    fn service_phases_put_pxe_ports_on_their_network_and_quarantine_the_rest() {
        let c = config();
        let pxe = port(json!({"port_id": "p1"}), json!({}), Some("tenant-a"), true);
        let other = port(json!({"port_id": "p2"}), json!({}), None, false);
        let w = wanted(&c, Placement::Service(Phase::Cleaning), &pxe).unwrap();
        assert_eq!(w.state, PortState::access(v(101)));
        assert_eq!(w.network, "clean");
        let w = wanted(&c, Placement::Service(Phase::Inspection), &pxe).unwrap();
        assert_eq!(
            w.state,
            PortState::access(v(100)),
            "defaults to provisioning"
        );
        let w = wanted(&c, Placement::Service(Phase::Provisioning), &other).unwrap();
        assert_eq!(w.state, PortState::Quarantined);
    }

    #[test]
    fn tenant_ports_follow_switchport_then_the_vif() {
        let c = config();
        let vif = port(json!({"port_id": "p1"}), json!({}), Some("tenant-b"), true);
        let w = wanted(&c, Placement::Tenant, &vif).unwrap();
        assert_eq!(w.state, PortState::access(v(202)));
        assert!(w.is_tenant());
        let none = port(json!({"port_id": "p1"}), json!({}), None, true);
        assert!(!wanted(&c, Placement::Tenant, &none).unwrap().is_tenant());
        let trunk = port(
            json!({"port_id": "p1"}),
            json!({"switchport": {"mode": "trunk", "native_vlan": 201, "allowed_vlans": [201, 202]}}),
            Some("tenant-b"),
            true,
        );
        let w = wanted(&c, Placement::Tenant, &trunk).unwrap();
        assert_eq!(
            w.state,
            PortState::Trunk {
                native: Some(v(201)),
                allowed: [v(201), v(202)].into_iter().collect()
            }
        );
        assert_eq!(w.network, "switchport");
        for (sp, needle) in [
            (
                json!({"mode": "access", "native_vlan": 100}),
                "no tenant network",
            ),
            (json!({"mode": "access"}), "needs native_vlan"),
            (
                json!({"mode": "trunk", "native_vlan": 201}),
                "needs allowed_vlans",
            ),
            (
                json!({"mode": "trunk", "allowed_vlans": []}),
                "needs allowed_vlans",
            ),
            (
                json!({"mode": "fabric", "native_vlan": 201}),
                "mode must be",
            ),
            (
                json!({"mode": "access", "native_vlan": 5000}),
                "not 1 to 4094",
            ),
            (
                json!({"mode": "access", "native_vlan": 201, "mtu": 9000}),
                "mtu",
            ),
        ] {
            let p = port(
                json!({"port_id": "p1"}),
                json!({"switchport": sp}),
                None,
                true,
            );
            let e = wanted(&c, Placement::Tenant, &p).unwrap_err();
            assert!(e.contains(needle), "{sp}: {e}");
        }
        let bad_vif = port(json!({"port_id": "p1"}), json!({}), Some("prov"), true);
        assert!(wanted(&c, Placement::Tenant, &bad_vif).is_err());
    }

    #[test]
    fn intents_round_trip() {
        for state in [
            PortState::access(v(7)),
            PortState::Quarantined,
            PortState::Trunk {
                native: None,
                allowed: [v(3)].into_iter().collect(),
            },
            PortState::Trunk {
                native: Some(v(2)),
                allowed: [v(3), v(4)].into_iter().collect(),
            },
        ] {
            assert_eq!(state_from_json(&state_to_json(&state)), Some(state));
        }
        assert_eq!(
            state_from_json(&json!({"mode": "trunk", "allowed_vlans": []})),
            None
        );
        assert_eq!(state_from_json(&json!({"mode": "access", "vlan": 0})), None);
    }

    #[test]
    fn the_record_keeps_its_last_entries() {
        let sp = SwitchPort {
            switch: "tor1".into(),
            port: "p1".into(),
        };
        let w = Wanted {
            state: PortState::access(v(201)),
            network: "tenant-a".into(),
        };
        let before = PortState::access(v(100));
        let e = record_entry(
            &Change {
                at: &sp,
                port_uuid: "u",
                reason: "tenant",
                wanted: &w,
                before: Some(&before),
                read_back: true,
                error: None,
            },
            Some(v(4000)),
            "t",
        );
        assert_eq!(e["vlan_before"], 100);
        assert_eq!(e["vlan_after"], 201);
        assert_eq!(e["read_back"], true);
        assert_eq!(e["after"], "access VLAN 201");
        let mut n = Node::default();
        for _ in 0..RECORD_LIMIT + 5 {
            append_record(&mut n, std::slice::from_ref(&e));
        }
        assert_eq!(
            n.driver_internal_info[RECORD_KEY].as_array().unwrap().len(),
            RECORD_LIMIT
        );
    }
}
