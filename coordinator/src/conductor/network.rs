//! Tenant network isolation in the state machine (issue 19 items 2 and 4):
//! the conductor moves a `neutron` node's switch ports
//! ([`tenancy::vlan_per_phase`]) before each phase powers the node on, to
//! the tenant networks before the final boot into the instance, back to
//! cleaning after tear-down; the periodic network sync corrects drift.
//!
//! Every change goes through [`set_port_verified`] (set, read back,
//! compare, retried). A change that fails closes the node off: all its
//! switched ports are quarantined (best effort) and the caller fails the
//! phase with an error naming the switch and port. Every change, correction
//! and failure is appended to the node's isolation record
//! (`driver_internal_info.isolation_report`, next to `clean_report`). The
//! state the coordinator put a port in is kept in the port's
//! `internal_info.switch_intent`, which the sync compares with the switch.

use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};

use super::{Conductor, ConductorError};
use crate::model::{Node, Port, now_iso};
use crate::network::config::quarantine_vlan;
use crate::network::switch::{PortState, SwitchError, SwitchErrorKind, set_port_verified};
use crate::network::tenancy::{
    self, Change, INTENT_KEY, Placement, SwitchPort, Wanted, append_record, intent_json,
    record_entry,
};
use crate::state::ProvisionState;

/// One switched port of a node and where it should go.
struct Planned {
    port: Port,
    at: SwitchPort,
    wanted: Wanted,
}

/// What one network sync pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetworkSyncReport {
    /// Switched ports compared with their switch.
    pub checked: usize,
    /// Ports found elsewhere than intended, and moved back.
    pub corrected: usize,
    /// Ports that could not be read or moved back (quarantined when a
    /// change failed).
    pub failed: usize,
}

impl Conductor {
    /// The configured switches.
    pub fn switches(&self) -> &crate::network::switch::Switches {
        &self.inner.switches
    }

    /// Tries of one switch change (`[network_sync] attempts`).
    fn switch_attempts(&self) -> u32 {
        self.config().network_sync.attempts.max(1)
    }

    /// The node's switched ports with where `placement` puts them; `Err`
    /// (the reason) when a port's settings cannot work.
    async fn plan_ports(
        &self,
        node: &Node,
        placement: Placement,
    ) -> Result<Result<Vec<Planned>, String>, ConductorError> {
        let mut planned = Vec::new();
        for port in self.db().list_ports(Some(&node.uuid)).await? {
            let at = match tenancy::switch_port(&port, self.switches()) {
                Ok(Some(at)) => at,
                Ok(None) => continue,
                Err(e) => return Ok(Err(e)),
            };
            let wanted = match tenancy::wanted(self.config(), placement, &port) {
                Ok(w) => w,
                Err(e) => return Ok(Err(e)),
            };
            planned.push(Planned { port, at, wanted });
        }
        if planned.is_empty() {
            return Ok(Err(format!(
                "network_interface {} needs ports with local_link_connection (port_id, switch_info); node {} has none",
                node.network_interface.as_deref().unwrap_or_default(),
                node.uuid
            )));
        }
        if placement == Placement::Tenant && !planned.iter().any(|p| p.wanted.is_tenant()) {
            return Ok(Err(format!(
                "No VIFs are attached to node {}: attach a tenant network (POST /v1/nodes/{}/vifs) or set a port's extra.switchport",
                node.uuid, node.uuid
            )));
        }
        Ok(Ok(planned))
    }

    /// Why the node cannot go onto its tenant networks, checked when a
    /// deploy starts (before anything is booted); `None` when it can, or
    /// when its ports are not switched.
    pub(super) async fn tenant_plan_error(
        &self,
        node: &Node,
    ) -> Result<Option<String>, ConductorError> {
        if !tenancy::vlan_per_phase(node) {
            return Ok(None);
        }
        Ok(self.plan_ports(node, Placement::Tenant).await?.err())
    }

    /// Moves the node's switched ports where `placement` wants them (nothing
    /// unless its network interface switches VLANs). `Err` is the reason to
    /// fail the phase with: it names the switch and port, and the node's
    /// switched ports were quarantined.
    pub(super) async fn place_ports(
        &self,
        node: &Node,
        placement: Placement,
    ) -> Result<Result<(), String>, ConductorError> {
        if !tenancy::vlan_per_phase(node) {
            return Ok(Ok(()));
        }
        let planned = match self.plan_ports(node, placement).await? {
            Ok(p) => p,
            Err(e) => {
                // Nothing is known to be safe: take every switched port off.
                let mut records = Vec::new();
                self.quarantine_all(node, &mut records).await?;
                self.record_isolation(node, records).await?;
                return Ok(Err(e));
            }
        };
        let quarantine = quarantine_vlan(self.config()).ok().flatten();
        let mut records = Vec::new();
        let mut failure = None;
        for mut p in planned {
            let before = self.read_port(&p.at).await.ok();
            let result = self.set_verified(&p.at, &p.wanted.state).await;
            let changed = before.as_ref() != Some(&p.wanted.state);
            if result.is_err() || changed {
                records.push(record_entry(
                    &Change {
                        at: &p.at,
                        port_uuid: &p.port.uuid,
                        reason: placement.reason(),
                        wanted: &p.wanted,
                        before: before.as_ref(),
                        read_back: result.is_ok(),
                        error: result.as_ref().err().map(ToString::to_string),
                    },
                    quarantine,
                    &now_iso(),
                ));
            }
            match result {
                Ok(()) => {
                    p.port
                        .internal_info
                        .insert(INTENT_KEY.into(), intent_json(&p.at, &p.wanted));
                    p.port.updated_at = Some(now_iso());
                    self.db().update_port(&p.port).await?;
                    info!(node = %node.uuid, switch = %p.at.switch, port = %p.at.port, state = %p.wanted.state, reason = placement.reason(), "switch port placed");
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let Some(e) = failure else {
            self.record_isolation(node, records).await?;
            return Ok(Ok(()));
        };
        warn!(node = %node.uuid, error = %e, "switch change failed; quarantining the node's ports");
        let unquarantined = self.quarantine_all(node, &mut records).await?;
        self.record_isolation(node, records).await?;
        let tail = if unquarantined.is_empty() {
            "; the node's switch ports were quarantined".to_owned()
        } else {
            format!("; quarantining failed too: {}", unquarantined.join("; "))
        };
        Ok(Err(format!("{e}{tail}")))
    }

    /// Quarantines every switched port of the node (best effort), recording
    /// each; returns the errors of those that failed.
    async fn quarantine_all(
        &self,
        node: &Node,
        records: &mut Vec<Value>,
    ) -> Result<Vec<String>, ConductorError> {
        let quarantine = quarantine_vlan(self.config()).ok().flatten();
        let wanted = Wanted {
            state: PortState::Quarantined,
            network: "quarantine".into(),
        };
        let mut errors = Vec::new();
        for mut port in self.db().list_ports(Some(&node.uuid)).await? {
            let Ok(Some(at)) = tenancy::switch_port(&port, self.switches()) else {
                continue;
            };
            let before = self.read_port(&at).await.ok();
            if before == Some(PortState::Quarantined) {
                continue;
            }
            let result = self.set_verified(&at, &PortState::Quarantined).await;
            records.push(record_entry(
                &Change {
                    at: &at,
                    port_uuid: &port.uuid,
                    reason: "fail-closed",
                    wanted: &wanted,
                    before: before.as_ref(),
                    read_back: result.is_ok(),
                    error: result.as_ref().err().map(ToString::to_string),
                },
                quarantine,
                &now_iso(),
            ));
            // Quarantine is the intent even when the switch did not take
            // it: the network sync finishes it when the switch is back.
            port.internal_info
                .insert(INTENT_KEY.into(), intent_json(&at, &wanted));
            port.updated_at = Some(now_iso());
            self.db().update_port(&port).await?;
            if let Err(e) = result {
                errors.push(e.to_string());
            }
        }
        Ok(errors)
    }

    /// Appends to the node's isolation record.
    async fn record_isolation(
        &self,
        node: &Node,
        records: Vec<Value>,
    ) -> Result<(), ConductorError> {
        if records.is_empty() {
            return Ok(());
        }
        self.modify(&node.uuid, move |n| append_record(n, &records))
            .await?;
        Ok(())
    }

    /// Reads a port from its switch.
    async fn read_port(&self, at: &SwitchPort) -> Result<PortState, SwitchError> {
        let Some(driver) = self.switches().get(&at.switch) else {
            return Err(no_switch(at));
        };
        driver.read_port(&at.port).await
    }

    /// [`set_port_verified`] on the port's switch, when this coordinator
    /// may act.
    async fn set_verified(&self, at: &SwitchPort, state: &PortState) -> Result<(), SwitchError> {
        let Some(driver) = self.switches().get(&at.switch) else {
            return Err(no_switch(at));
        };
        if !self.cluster().can_act() {
            return Err(SwitchError::new(
                &at.switch,
                &at.port,
                SwitchErrorKind::Refused("this coordinator does not act now".into()),
            ));
        }
        set_port_verified(driver.as_ref(), &at.port, state, self.switch_attempts()).await
    }

    /// Quarantines the switched `ports` of a deleted node, or deleted ports
    /// of `node`, in the background (nobody manages them any more). Called
    /// by the API after the delete.
    pub fn quarantine_deleted(&self, node: &Node, ports: Vec<Port>) {
        if !tenancy::vlan_per_phase(node) {
            return;
        }
        let me = self.clone();
        let uuid = node.uuid.clone();
        tokio::spawn(async move {
            for port in ports {
                let Ok(Some(at)) = tenancy::switch_port(&port, me.switches()) else {
                    continue;
                };
                match me.set_verified(&at, &PortState::Quarantined).await {
                    Ok(()) => {
                        info!(node = %uuid, switch = %at.switch, port = %at.port, "port of a deleted node quarantined")
                    }
                    Err(e) => {
                        warn!(node = %uuid, error = %e, "quarantining a port of a deleted node failed")
                    }
                }
            }
        });
    }

    /// One network sync pass over the switched ports of every node this
    /// coordinator owns and nobody acts on: each port is compared with
    /// where it should be (quarantine in maintenance, the tenant networks
    /// when active, else where the coordinator last put it). Only a node
    /// with a port elsewhere is reserved (so API calls and the node's own
    /// phases are not held up by a pass that finds nothing), checked again
    /// and its ports moved back, recorded as `drift` (or `maintenance`,
    /// `tenant` when where a port should be changed).
    pub async fn sync_networks(&self) -> Result<NetworkSyncReport, ConductorError> {
        let mut report = NetworkSyncReport::default();
        if self.switches().is_empty() || !self.cluster().can_act() {
            return Ok(report);
        }
        for node in self.db().list_nodes().await? {
            if !tenancy::vlan_per_phase(&node)
                || node.reservation.is_some()
                || node.provision_state.is_transient()
                || !self.cluster().owns(&node)
            {
                continue;
            }
            if !self.sync_node_ports(&node, &mut report, false).await? {
                continue;
            }
            let Some(node) = self
                .lock(&node.uuid, |n| {
                    n.reservation.is_none() && !n.provision_state.is_transient()
                })
                .await?
            else {
                continue;
            };
            let result = self.sync_node_ports(&node, &mut report, true).await;
            let released = self.release(&node.uuid, |_| {}).await;
            result?;
            released?;
        }
        if report.corrected > 0 || report.failed > 0 {
            info!(
                checked = report.checked,
                corrected = report.corrected,
                failed = report.failed,
                "network sync pass done"
            );
        }
        Ok(report)
    }

    /// Where the sync wants `port` of `node`, and the reason to record
    /// when it moves it; `None` when it has no say (never placed).
    fn sync_wanted(&self, node: &Node, port: &Port) -> Option<(Wanted, &'static str)> {
        let quarantined = Wanted {
            state: PortState::Quarantined,
            network: "quarantine".into(),
        };
        let stored = tenancy::stored_intent(port);
        let (wanted, reason) = if node.maintenance {
            (quarantined, "maintenance")
        } else if node.provision_state == ProvisionState::Active {
            match tenancy::wanted(self.config(), Placement::Tenant, port) {
                Ok(w) => (w, "tenant"),
                Err(e) => {
                    warn!(node = %node.uuid, error = %e, "network sync: a port's tenant settings do not work; quarantining it");
                    (quarantined, "fail-closed")
                }
            }
        } else {
            (stored.clone()?, "drift")
        };
        // Where it should be did not change: a difference is drift.
        let reason = if stored.as_ref() == Some(&wanted) {
            "drift"
        } else {
            reason
        };
        Some((wanted, reason))
    }

    /// Compares the node's switched ports with where they should be. Without
    /// `act`, only says whether one differs (nothing is counted or
    /// changed); with it (the node reserved), moves them back and records.
    async fn sync_node_ports(
        &self,
        node: &Node,
        report: &mut NetworkSyncReport,
        act: bool,
    ) -> Result<bool, ConductorError> {
        let quarantine = quarantine_vlan(self.config()).ok().flatten();
        let mut records = Vec::new();
        let mut differs = false;
        for mut port in self.db().list_ports(Some(&node.uuid)).await? {
            let Ok(Some(at)) = tenancy::switch_port(&port, self.switches()) else {
                continue;
            };
            let Some((wanted, reason)) = self.sync_wanted(node, &port) else {
                continue;
            };
            let stored = tenancy::stored_intent(&port);
            let observed = match self.read_port(&at).await {
                Ok(s) => s,
                Err(e) => {
                    if !act {
                        report.checked += 1;
                        report.failed += 1;
                        warn!(node = %node.uuid, error = %e, "network sync: reading the port failed");
                    }
                    continue;
                }
            };
            if observed == wanted.state {
                if !act {
                    report.checked += 1;
                }
                if act && stored.as_ref() != Some(&wanted) && !node.maintenance {
                    port.internal_info
                        .insert(INTENT_KEY.into(), intent_json(&at, &wanted));
                    self.db().update_port(&port).await?;
                }
                continue;
            }
            differs = true;
            if !act {
                report.checked += 1;
                continue;
            }
            warn!(node = %node.uuid, switch = %at.switch, port = %at.port, observed = %observed, expected = %wanted.state, reason, "network sync: switch port is not where it should be; moving it");
            let result = self.set_verified(&at, &wanted.state).await;
            records.push(record_entry(
                &Change {
                    at: &at,
                    port_uuid: &port.uuid,
                    reason,
                    wanted: &wanted,
                    before: Some(&observed),
                    read_back: result.is_ok(),
                    error: result.as_ref().err().map(ToString::to_string),
                },
                quarantine,
                &now_iso(),
            ));
            match result {
                Ok(()) => {
                    report.corrected += 1;
                    // In maintenance the intent is kept: leaving it puts
                    // the port back.
                    if !node.maintenance {
                        port.internal_info
                            .insert(INTENT_KEY.into(), intent_json(&at, &wanted));
                        port.updated_at = Some(now_iso());
                        self.db().update_port(&port).await?;
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    warn!(node = %node.uuid, error = %e, "network sync: moving the port back failed; quarantining");
                    if let Err(q) = self.set_verified(&at, &PortState::Quarantined).await {
                        warn!(node = %node.uuid, error = %q, "network sync: quarantining failed too");
                    }
                }
            }
        }
        self.record_isolation(node, records).await?;
        Ok(differs)
    }

    /// Starts the periodic network sync (nothing when the interval is 0 or
    /// no switch is configured).
    pub fn spawn_network_sync(&self) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self.config().network_sync.interval_ms;
        if interval == 0 || self.switches().is_empty() {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(interval.max(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.sync_networks().await {
                    warn!(error = %e, "network sync pass failed");
                }
            }
        }))
    }
}

fn no_switch(at: &SwitchPort) -> SwitchError {
    SwitchError::new(
        &at.switch,
        &at.port,
        SwitchErrorKind::Invalid("no such switch configured".into()),
    )
}
