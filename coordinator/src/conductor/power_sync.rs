//! Power-state sync, as Ironic's `_sync_power_states`: every
//! `power_sync.interval_ms` the conductor reads each node's power state
//! through its driver, `power_sync.workers` nodes at a time.
//!
//! - Skipped: nodes in maintenance, reserved (locked) nodes, nodes with a
//!   pending power request, and nodes in `enroll`, `clean wait`,
//!   `wait call-back` or a transient state (Ironic skips the same).
//! - A state that differs from the recorded one was changed outside Ingot:
//!   the new state is written to `power_state` and logged. An unknown
//!   recorded state is simply filled in.
//! - Failures are counted per node in memory; after `power_sync.max_retries`
//!   consecutive failures the node goes into maintenance with
//!   `fault = "power failure"` and a `maintenance_reason` that names the
//!   error and its kind ([`PowerErrorKind`]). A success clears the count.
//!   Nodes that failed recently are synced first. Only transient errors
//!   ([`PowerError::is_transient`]: no answer, a busy BMC, an unexplained
//!   failure) are retried: wrong credentials, a refusal, an unsupported
//!   request or invalid driver_info put the node into maintenance at the
//!   first failure, since the next pass would fail the same way.
//! - Every `power_sync.recovery_interval_ms`, a pass also reads the nodes
//!   that the sync put into maintenance (`fault = "power failure"`); one that
//!   answers leaves maintenance (Ironic's `power_failure_recovery_interval`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Conductor, ConductorError};
use crate::model::Node;
use crate::power::{PowerError, PowerErrorKind};
use crate::state::ProvisionState;

/// The `fault` Ironic records when power sync gives up on a node.
pub const POWER_FAILURE: &str = "power failure";

/// Per-conductor sync bookkeeping: consecutive failures per node.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    failures: Mutex<HashMap<String, u32>>,
    passes: AtomicUsize,
    last_recovery: Mutex<Option<Instant>>,
}

impl SyncState {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// What one sync pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes whose power state was read.
    pub checked: usize,
    /// Nodes skipped (maintenance, locked, waiting states).
    pub skipped: usize,
    /// Nodes whose state had changed outside Ingot (or was unknown).
    pub changed: usize,
    /// Nodes whose read failed.
    pub failed: usize,
    /// Nodes put into maintenance by this pass.
    pub to_maintenance: usize,
    /// Nodes in maintenance for a power failure that answered and left it.
    pub recovered: usize,
}

/// The result of syncing one node.
enum Outcome {
    Same,
    Changed,
    Failed,
    Maintenance,
    Recovered,
}

/// True for a node the sync put into maintenance.
fn power_failed(node: &Node) -> bool {
    node.maintenance && node.fault.as_deref() == Some(POWER_FAILURE) && !busy(node)
}

/// True when the sync leaves the node alone.
fn skip(node: &Node) -> bool {
    node.maintenance || busy(node)
}

/// True when someone else acts on the node, or it waits for its agent.
fn busy(node: &Node) -> bool {
    node.reservation.is_some()
        || node.power_intent.is_some()
        || node.target_power_state.is_some()
        || node.provision_state.is_transient()
        || matches!(
            node.provision_state,
            ProvisionState::Enroll | ProvisionState::CleanWait | ProvisionState::WaitCallBack
        )
}

/// The `maintenance_reason` of a node the sync gives up on.
fn maintenance_reason(
    uuid: &str,
    attempt: u32,
    transient: bool,
    kind: PowerErrorKind,
    e: &PowerError,
) -> String {
    if transient {
        format!(
            "During sync_power_state, max retries exceeded for node {uuid}: the power state \
             could not be read {attempt} times in a row ({kind}). Switching node to \
             maintenance mode. Error: {e}"
        )
    } else {
        format!(
            "During sync_power_state, the power state of node {uuid} could not be read \
             ({kind}; retrying would not help). Switching node to maintenance mode. \
             Error: {e}"
        )
    }
}

impl Conductor {
    /// Number of completed sync passes (for tests and benchmarks).
    pub fn power_sync_passes(&self) -> usize {
        self.inner.sync.passes.load(Ordering::Relaxed)
    }

    /// One full power-state sync pass over every node this coordinator owns.
    pub async fn sync_power_states(&self) -> Result<SyncReport, ConductorError> {
        self.sync_pass(None).await
    }

    /// A sync pass over the nodes this coordinator has just taken over from
    /// a member that died or stopped (their last sync was that member's).
    pub(super) async fn sync_adopted(
        &self,
        uuids: std::collections::HashSet<String>,
    ) -> Result<SyncReport, ConductorError> {
        self.sync_pass(Some(&uuids)).await
    }

    async fn sync_pass(
        &self,
        only: Option<&std::collections::HashSet<String>>,
    ) -> Result<SyncReport, ConductorError> {
        let started = Instant::now();
        let mut nodes = self.db().list_nodes().await?;
        // Each node is synced by its owner only (all of them when alone);
        // a coordinator whose lease ran out syncs nothing.
        let acting = self.cluster().can_act();
        nodes.retain(|n| {
            acting && self.cluster().owns(n) && only.is_none_or(|o| o.contains(&n.uuid))
        });
        let total = nodes.len();
        let recover = self.recovery_due();
        nodes.retain(|n| !skip(n) || (recover && power_failed(n)));
        let mut report = SyncReport {
            skipped: total - nodes.len(),
            ..SyncReport::default()
        };
        {
            let failures = self.inner.sync.failures();
            nodes.sort_by_key(|n| std::cmp::Reverse(failures.get(&n.uuid).copied().unwrap_or(0)));
        }
        let nodes = Arc::new(nodes);
        let next = Arc::new(AtomicUsize::new(0));
        let workers = self
            .config()
            .power_sync
            .workers
            .clamp(1, nodes.len().max(1));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (me, nodes, next) = (self.clone(), Arc::clone(&nodes), Arc::clone(&next));
            set.spawn(async move {
                let mut part = SyncReport::default();
                while let Some(node) = nodes.get(next.fetch_add(1, Ordering::Relaxed)) {
                    part.checked += 1;
                    match me.sync_node(node).await {
                        Ok(Outcome::Same) => {}
                        Ok(Outcome::Changed) => part.changed += 1,
                        Ok(Outcome::Failed) => part.failed += 1,
                        Ok(Outcome::Maintenance) => {
                            part.failed += 1;
                            part.to_maintenance += 1;
                        }
                        Ok(Outcome::Recovered) => part.recovered += 1,
                        Err(e) => {
                            warn!(node = %node.uuid, error = %e, "power sync: recording failed");
                        }
                    }
                }
                part
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(part) = r {
                report.checked += part.checked;
                report.changed += part.changed;
                report.failed += part.failed;
                report.to_maintenance += part.to_maintenance;
                report.recovered += part.recovered;
            }
        }
        if only.is_none() {
            self.inner.sync.passes.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        crate::metrics::power_sync_pass(elapsed);
        info!(
            adopted_only = only.is_some(),
            checked = report.checked,
            skipped = report.skipped,
            changed = report.changed,
            failed = report.failed,
            to_maintenance = report.to_maintenance,
            recovered = report.recovered,
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "power sync pass done"
        );
        let interval = Duration::from_millis(self.config().power_sync.interval_ms);
        if elapsed > interval.saturating_mul(3) {
            warn!(
                elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                interval_ms = self.config().power_sync.interval_ms,
                "power sync pass took more than 3x its interval"
            );
        }
        Ok(report)
    }

    /// Whether this pass also tries the nodes in maintenance for a power failure.
    fn recovery_due(&self) -> bool {
        let every = self.config().power_sync.recovery_interval_ms;
        if every == 0 {
            return false;
        }
        let mut last = match self.inner.sync.last_recovery.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(every));
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Reads one node's power state and records what it found.
    async fn sync_node(&self, node: &Node) -> Result<Outcome, ConductorError> {
        let read = async {
            let driver = self.power_driver(node)?;
            let target = Self::power_target(node);
            if !driver.knows_power_state(&target) {
                return Ok(None);
            }
            driver.get_power_state(&target).await.map(Some)
        }
        .await;
        let read = match read {
            Ok(None) => return Ok(Outcome::Same),
            Ok(Some(state)) => Ok(state),
            Err(e) => Err(e),
        };
        if power_failed(node) {
            return self.try_recover(node, read).await;
        }
        match read {
            Ok(state) => {
                self.inner.sync.failures().remove(&node.uuid);
                if node.power_state == Some(state) {
                    return Ok(Outcome::Same);
                }
                let recorded = node.power_state;
                let written = self
                    .db()
                    .update_node(&node.uuid, |n| {
                        // Someone acted on the node since it was listed: leave it.
                        if skip(n) || n.power_state != recorded {
                            return Err(());
                        }
                        n.power_state = Some(state);
                        Ok(())
                    })
                    .await;
                match written {
                    Ok(_) => {
                        if recorded.is_some() {
                            crate::metrics::out_of_band_change();
                        }
                        match &recorded {
                            Some(before) => info!(
                                node = %node.uuid,
                                recorded = %before,
                                actual = %state,
                                "power state changed outside Ingot; recorded"
                            ),
                            None => {
                                info!(node = %node.uuid, actual = %state, "power state learned")
                            }
                        }
                        Ok(Outcome::Changed)
                    }
                    Err(crate::db::UpdateError::Refused(())) => Ok(Outcome::Same),
                    Err(crate::db::UpdateError::Db(e)) => Err(e.into()),
                }
            }
            Err(e) => self.sync_failed(node, &e).await,
        }
    }

    /// Counts a failed read; after `max_retries` in a row, maintenance.
    async fn sync_failed(&self, node: &Node, e: &PowerError) -> Result<Outcome, ConductorError> {
        let max = self.config().power_sync.max_retries.max(1);
        let attempt = {
            let mut failures = self.inner.sync.failures();
            let count = failures.entry(node.uuid.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let kind = e.kind();
        crate::metrics::bmc_error(node.power_interface.as_deref(), kind);
        let transient = e.is_transient();
        if transient && attempt < max {
            warn!(
                node = %node.uuid, attempt, max_retries = max, kind = %kind, error = %e,
                "power sync: could not get the power state"
            );
            return Ok(Outcome::Failed);
        }
        let reason = maintenance_reason(&node.uuid, attempt, transient, kind, e);
        let written = self
            .db()
            .update_node(&node.uuid, |n| {
                if skip(n) {
                    return Err(());
                }
                n.maintenance = true;
                n.maintenance_reason = Some(reason.clone());
                n.fault = Some(POWER_FAILURE.to_owned());
                n.power_state = None;
                Ok(())
            })
            .await;
        match written {
            Ok(_) => {
                self.inner.sync.failures().remove(&node.uuid);
                warn!(node = %node.uuid, attempts = attempt, kind = %kind, error = %e,
                    "power sync: node put into maintenance");
                Ok(Outcome::Maintenance)
            }
            Err(crate::db::UpdateError::Refused(())) => Ok(Outcome::Failed),
            Err(crate::db::UpdateError::Db(e)) => Err(e.into()),
        }
    }

    /// A node in maintenance for a power failure: out of maintenance if its
    /// BMC answered, left alone (and not counted) if not.
    async fn try_recover(
        &self,
        node: &Node,
        read: Result<crate::power::PowerState, PowerError>,
    ) -> Result<Outcome, ConductorError> {
        let state = match read {
            Ok(s) => s,
            Err(e) => {
                info!(node = %node.uuid, kind = %e.kind(), error = %e, "power sync: BMC still failing; node stays in maintenance");
                return Ok(Outcome::Failed);
            }
        };
        let written = self
            .db()
            .update_node(&node.uuid, |n| {
                if !power_failed(n) {
                    return Err(());
                }
                n.maintenance = false;
                n.maintenance_reason = None;
                n.fault = None;
                n.power_state = Some(state);
                Ok(())
            })
            .await;
        match written {
            Ok(_) => {
                info!(node = %node.uuid, actual = %state, "power sync: BMC answers again; node out of maintenance");
                Ok(Outcome::Recovered)
            }
            Err(crate::db::UpdateError::Refused(())) => Ok(Outcome::Same),
            Err(crate::db::UpdateError::Db(e)) => Err(e.into()),
        }
    }

    /// Starts the periodic power-state sync (nothing when the interval is 0).
    pub fn spawn_power_sync(&self) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self.config().power_sync.interval_ms;
        if interval == 0 {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(interval.max(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.sync_power_states().await {
                    warn!(error = %e, "power sync pass failed");
                }
            }
        }))
    }
}
