//! Inspection: with the `agent` inspect interface, PXE + power on → `inspect
//! wait`; on the agent's heartbeat `poll.get_hardware_info` returns the
//! inventory (a real IPA may instead POST it to `/v1/continue_inspection`).
//! The inventory becomes properties (cpus, memory_mb, local_gb, cpu_arch;
//! `local_gb` is the root disk chosen by `properties.root_device` hints, as the
//! agent will choose it, and inspection fails if no disk satisfies them) and
//! ports (one per NIC, LLDP → local_link_connection). The `fake` and
//! `no-inspect` interfaces finish at once. With fast track (`fast_track.rs`)
//! a running agent is driven instead of booting the ramdisk, and the node
//! stays powered on with the agent running afterwards.

use ingot_proto::agent::{CommandResult, CommandStatus};
use ingot_proto::inventory::{Interface, Inventory};
use serde_json::{Map, Value, json};
use tracing::info;

use super::outcome::{Outcome, Target, Until};
use super::phase::{Phase, Plan, agent_left};
use super::{Conductor, ConductorError, command_error_text, is_busy};
use crate::agent_client::AgentEndpoint;
use crate::db::{Db, DbError};
use crate::model::port::normalize_mac;
use crate::model::{Node, Port, new_uuid, now_iso};
use crate::state::{Event, ProvisionState};

fn tlv_bytes(hex_value: &str) -> Vec<u8> {
    (0..hex_value.len() / 2)
        .filter_map(|i| hex_value.get(i * 2..i * 2 + 2))
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

fn mac_of(b: &[u8]) -> Option<String> {
    (b.len() == 6).then(|| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// LLDP TLVs → Ironic's `local_link_connection` (`switch_id`, `port_id`, `switch_info`).
pub fn local_link_connection(iface: &Interface) -> Map<String, Value> {
    let mut out = Map::new();
    for (kind, value) in iface.lldp.iter().flatten() {
        let b = tlv_bytes(value);
        match (*kind, b.split_first()) {
            (1, Some((4, rest))) => {
                if let Some(m) = mac_of(rest) {
                    out.insert("switch_id".into(), json!(m));
                }
            }
            (1, Some((_, rest))) => {
                out.entry("switch_id")
                    .or_insert(json!(String::from_utf8_lossy(rest)));
            }
            (2, Some((3, rest))) => {
                if let Some(m) = mac_of(rest) {
                    out.insert("port_id".into(), json!(m));
                }
            }
            (2, Some((_, rest))) => {
                out.insert("port_id".into(), json!(String::from_utf8_lossy(rest)));
            }
            (5, _) => {
                out.insert("switch_info".into(), json!(String::from_utf8_lossy(&b)));
            }
            _ => {}
        }
    }
    out
}

/// The node's root device hints (`properties.root_device`), if any.
fn root_device_hints(node: &Node) -> Option<Map<String, Value>> {
    node.properties
        .get("root_device")
        .and_then(Value::as_object)
        .filter(|h| !h.is_empty())
        .cloned()
}

/// Why an inventory cannot finish inspection: the node has root device hints
/// and no disk of the inventory satisfies them (Ironic's inspector fails the
/// same way, so a deployment does not find out later).
pub fn check_root_device(node: &Node, raw: &Value) -> Result<(), String> {
    let Some(hints) = root_device_hints(node) else {
        return Ok(());
    };
    let inv: Inventory = serde_json::from_value(raw.clone()).unwrap_or_default();
    ingot_proto::hints::choose(&inv.disks, Some(&hints))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Applies an inventory: properties on the node, and a port for every NIC
/// that has none (existing ports get their LLDP data refreshed).
pub async fn apply_inventory(db: &Db, node: &mut Node, raw: &Value) -> Result<(), DbError> {
    let inv: Inventory = serde_json::from_value(raw.clone()).unwrap_or_default();
    let gib = 1024_u64 * 1024 * 1024;
    if inv.cpu.count > 0 {
        node.properties.insert("cpus".into(), json!(inv.cpu.count));
    }
    if !inv.cpu.architecture.is_empty() {
        node.properties
            .insert("cpu_arch".into(), json!(inv.cpu.architecture));
    }
    let mem = inv
        .memory
        .physical_mb
        .unwrap_or(inv.memory.total / (1024 * 1024));
    if mem > 0 {
        node.properties.insert("memory_mb".into(), json!(mem));
    }
    // Root disk as the agent will choose it: by the node's root device hints,
    // else the smallest disk of at least 4 GiB. Minus 1 GiB for partitioning,
    // as Ironic's inspector reports it.
    if let Ok(root) = ingot_proto::hints::choose(&inv.disks, root_device_hints(node).as_ref()) {
        node.properties.insert(
            "local_gb".into(),
            json!((root.size / gib).saturating_sub(1)),
        );
    }
    if !inv.boot.current_boot_mode.is_empty() {
        node.boot_mode = Some(inv.boot.current_boot_mode.clone());
    }
    node.inventory = Some(raw.clone());
    let pxe = inv.boot.pxe_interface.as_deref().and_then(boot_mac);
    for iface in &inv.interfaces {
        let Some(mac) = normalize_mac(&iface.mac_address) else {
            continue;
        };
        let llc = local_link_connection(iface);
        match db.get_port_by_address(&mac).await? {
            Some(mut p) if p.node_uuid == node.uuid => {
                // Ironic's inspection updates the PXE flag of known ports
                // too (`update_pxe_enabled`): only the boot NIC boots.
                let pxe_enabled = pxe.as_ref().map_or(p.pxe_enabled, |b| *b == mac);
                if !llc.is_empty() || pxe_enabled != p.pxe_enabled {
                    if !llc.is_empty() {
                        p.local_link_connection = llc;
                    }
                    p.pxe_enabled = pxe_enabled;
                    p.updated_at = Some(now_iso());
                    db.update_port(&p).await?;
                }
            }
            Some(_) => {}
            None => {
                let port = Port {
                    uuid: new_uuid(),
                    address: mac.clone(),
                    node_uuid: node.uuid.clone(),
                    local_link_connection: llc,
                    pxe_enabled: pxe.as_ref().is_none_or(|p| *p == mac),
                    created_at: Some(now_iso()),
                    ..Port::default()
                };
                db.insert_port(&port).await?;
            }
        }
    }
    Ok(())
}

/// Inspection, as an agent [`Phase`].
pub(super) struct Inspect;

/// An inspect interface other than `agent` (`fake`, `no-inspect`) finishes
/// at once.
fn inspected_without_agent() -> Outcome {
    Outcome::transition(Event::Done, Target::Clear, |n| {
        n.intent = None;
        n.last_error = None;
        n.inspection_finished_at = Some(now_iso());
    })
}

/// The inventory in the agent's answer to `poll.get_hardware_info`, or the
/// failure of the inspection.
fn hardware_info(r: CommandResult) -> Result<Value, Outcome> {
    match r.command_result {
        Some(inventory) if r.command_status == CommandStatus::Succeeded => Ok(inventory),
        _ => Err(Outcome::fail(
            format!(
                "Inspection failed: poll.get_hardware_info: {}",
                command_error_text(&r)
            ),
            true,
        )),
    }
}

/// Inspection finished with the inventory applied to `updated`; the agent
/// is kept running (`keep`) or the node was powered off.
fn inspected(updated: Node, keep: bool) -> Outcome {
    Outcome::transition(Event::Done, Target::Clear, move |n| {
        n.properties = updated.properties.clone();
        n.boot_mode = updated.boot_mode.clone();
        n.inventory = updated.inventory.clone();
        agent_left(keep, n);
        n.inspection_finished_at = Some(now_iso());
        n.last_error = None;
    })
}

impl Phase for Inspect {
    const START: ProvisionState = ProvisionState::Inspecting;
    const WAIT: ProvisionState = ProvisionState::InspectWait;
    const NAME: &'static str = "Inspection";
    const NETWORK: crate::network::config::Phase = crate::network::config::Phase::Inspection;

    async fn plan(&self, _c: &Conductor, node: Node) -> Result<Plan, ConductorError> {
        if node.inspect_interface.as_deref() != Some("agent") {
            return Ok(Plan::Now(inspected_without_agent()));
        }
        Ok(Plan::Agent {
            node: Box::new(node),
            reset: Box::new(|_: &mut Node| {}),
            record: Box::new(|n: &mut Node| {
                n.intent = None;
                n.last_error = None;
            }),
            target: Target::To(ProvisionState::Manageable),
        })
    }

    async fn drive(
        &self,
        c: &Conductor,
        node: Node,
        ep: &AgentEndpoint,
    ) -> Result<Outcome, ConductorError> {
        match c
            .agent_execute(&node, ep, "poll.get_hardware_info", Map::new(), true)
            .await
        {
            Ok(r) => match hardware_info(r) {
                Ok(inventory) => c.inspection_result(node, inventory).await,
                Err(failed) => Ok(failed),
            },
            Err(e) if is_busy(&e) => Ok(Outcome::wait(Until::Kicked)),
            Err(e) => Ok(Outcome::fail(format!("Inspection failed: {e}"), true)),
        }
    }
}

impl Conductor {
    /// Finishes inspection with an inventory the agent POSTed to
    /// `/v1/continue_inspection`. Returns false if the node is not waiting.
    pub async fn finish_inspection(
        &self,
        uuid: &str,
        inventory: Value,
    ) -> Result<bool, ConductorError> {
        let Some(node) = self
            .lock(uuid, |n| n.provision_state == ProvisionState::InspectWait)
            .await?
        else {
            return Ok(false);
        };
        let outcome = self.inspection_result(node, inventory).await?;
        self.apply(uuid, outcome).await?;
        Ok(true)
    }

    /// The end of the inspection of the reserved `node` with `inventory`:
    /// checked against the root device hints, applied (ports are created
    /// here), the agent kept or the node powered off.
    async fn inspection_result(
        &self,
        node: Node,
        inventory: Value,
    ) -> Result<Outcome, ConductorError> {
        if let Err(e) = check_root_device(&node, &inventory) {
            return Ok(Outcome::fail(format!("Inspection failed: {e}"), true));
        }
        let mut updated = node.clone();
        apply_inventory(self.db(), &mut updated, &inventory).await?;
        let (keep, powered_off) = self.leave_agent(&node).await;
        if let Err(e) = powered_off {
            tracing::warn!(node = %node.uuid, error = %e, "power off after inspection failed");
        }
        info!(node = %node.uuid, fast_track = keep, "inspection finished");
        Ok(inspected(updated, keep))
    }
}

/// The boot NIC's MAC from the inventory's `boot.pxe_interface`: a MAC, or
/// PXELINUX's `BOOTIF` form `01-52-54-00-e2-e0-01` (the `01-` is the ARP
/// hardware type, Ethernet), which Ironic strips.
fn boot_mac(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let mac = match raw.strip_prefix("01-") {
        Some(rest) if rest.split('-').count() == 6 => rest,
        _ => raw,
    };
    normalize_mac(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::PowerState;

    #[test]
    fn bootif_and_plain_macs() {
        let want = Some("52:54:00:e2:e0:01".to_owned());
        assert_eq!(boot_mac("01-52-54-00-e2-e0-01"), want);
        assert_eq!(boot_mac("52:54:00:E2:E0:01"), want);
        assert_eq!(boot_mac("52-54-00-e2-e0-01"), want);
        // Six octets after all: a MAC that starts with 01, kept whole.
        assert_eq!(
            boot_mac("01-52-54-00-e2-e0"),
            Some("01:52:54:00:e2:e0".to_owned())
        );
        assert_eq!(boot_mac("01-52-54-00-e2"), None);
        assert_eq!(boot_mac(""), None);
    }

    #[test]
    fn a_hardware_info_answer_finishes_or_fails_the_inspection() {
        let ok = CommandResult {
            id: "h".into(),
            command_name: "get_hardware_info".into(),
            command_status: CommandStatus::Succeeded,
            command_error: None,
            command_result: Some(json!({"cpu": {"count": 4}})),
        };
        assert_eq!(
            hardware_info(ok.clone()).ok(),
            Some(json!({"cpu": {"count": 4}}))
        );
        let failed = CommandResult {
            command_status: CommandStatus::Failed,
            ..ok.clone()
        };
        let Err(Outcome::Fail { reason, power_off }) = hardware_info(failed) else {
            panic!("a failed command fails the inspection");
        };
        assert!(reason.starts_with("Inspection failed: poll.get_hardware_info"));
        assert!(power_off);
        let empty = CommandResult {
            command_result: None,
            ..ok
        };
        assert!(hardware_info(empty).is_err());
    }

    #[test]
    fn an_inspected_node_is_manageable_with_its_properties() {
        let mut n = Node {
            provision_state: ProvisionState::InspectWait,
            target_provision_state: Some(ProvisionState::Manageable),
            last_error: Some("old".into()),
            ..Node::default()
        };
        let mut updated = n.clone();
        updated.properties.insert("cpus".into(), json!(4));
        inspected(updated, false).apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Manageable);
        assert_eq!(n.target_provision_state, None);
        assert_eq!(n.properties["cpus"], 4);
        assert_eq!(n.power_state, Some(PowerState::Off));
        assert!(n.inspection_finished_at.is_some() && n.last_error.is_none());

        let mut enrolled = Node {
            provision_state: ProvisionState::Inspecting,
            ..Node::default()
        };
        inspected_without_agent().apply_to(&mut enrolled).unwrap();
        assert_eq!(enrolled.provision_state, ProvisionState::Manageable);
    }
}
