//! Restart recovery and wait-state timeouts.
//!
//! At start-up, nodes left in a transient state (verifying, inspecting,
//! cleaning, deploying, deleting) had their operation cut short: they
//! resume from their recorded intent, since every handler is idempotent
//! (Ironic fails them instead). Wait states (wait call-back, clean wait,
//! inspect wait) go on: the agent is still running and heartbeats continue.
//! Reservations this conductor held are released, and so are those held
//! under a name that is not an alive coordinator (one that died, or this
//! one under an earlier name): at start and whenever the group changes.
//! Pending power changes are picked up again. A coordinator of a group
//! does the same for the nodes of a member that died ([`super::membership`]).
//!
//! Every wait state times out when nothing was heard from the agent (no
//! heartbeat, no step progress) for the configured time.

use tracing::{error, info, warn};

use super::{Conductor, ConductorError, wait_timeout_ms};
use crate::model::now_ms;
use crate::power::PowerAction;
use crate::state::{Event, ProvisionState};

/// Releases reservations held under names of coordinators that are not
/// alive; returns how many. This coordinator's own name counts as alive
/// here (its reservations are its workers'); at start, [`recover`] releases
/// those.
pub(super) async fn release_dead_reservations(c: &Conductor) -> Result<usize, ConductorError> {
    let alive: Vec<String> = c
        .db()
        .list_conductors(c.cluster().timeout_ms())
        .await?
        .into_iter()
        .filter(|r| r.alive)
        .map(|r| r.hostname)
        .collect();
    let mut released = 0;
    for (uuid, holder) in c.db().reserved_nodes().await? {
        if holder == c.name() || alive.contains(&holder) {
            continue;
        }
        let dead = holder.clone();
        let r = c
            .db()
            .update_node::<std::convert::Infallible, _>(&uuid, move |n| {
                if n.reservation.as_deref() == Some(dead.as_str()) {
                    n.reservation = None;
                }
                Ok(())
            })
            .await;
        match r {
            Ok(n) if n.reservation.is_none() => {
                released += 1;
                warn!(node = %uuid, holder = %holder, "released the reservation of a coordinator that is not alive");
            }
            Ok(_) => {}
            Err(crate::db::UpdateError::Db(crate::db::DbError::NotFound(_))) => {}
            Err(e) => {
                return Err(ConductorError::Db(match e {
                    crate::db::UpdateError::Db(d) => d,
                    crate::db::UpdateError::Refused(never) => match never {},
                }));
            }
        }
    }
    Ok(released)
}

/// Releases the reservations held under this coordinator's own name: at
/// start (what an earlier run held is stale) and at a graceful stop.
pub(super) async fn release_own_reservations(c: &Conductor) -> Result<usize, ConductorError> {
    let me = c.name().to_owned();
    let mut released = 0;
    for (uuid, holder) in c.db().reserved_nodes().await? {
        if holder != me {
            continue;
        }
        let me2 = me.clone();
        let r = c
            .db()
            .update_node::<std::convert::Infallible, _>(&uuid, move |n| {
                if n.reservation.as_deref() == Some(me2.as_str()) {
                    n.reservation = None;
                }
                Ok(())
            })
            .await;
        match r {
            Ok(_) => released += 1,
            Err(crate::db::UpdateError::Db(crate::db::DbError::NotFound(_))) => {}
            Err(crate::db::UpdateError::Db(e)) => return Err(e.into()),
            Err(crate::db::UpdateError::Refused(never)) => match never {},
        }
    }
    Ok(released)
}

/// Start-up: joins the group, releases stale reservations (this
/// coordinator's earlier run's, and those of members that are not alive),
/// then adopts the nodes it owns: operations cut short in a transient state
/// resume from their recorded intent (the handlers are idempotent), wait
/// states go on with the running agent, pending power changes are made,
/// enabled consoles start again. Returns how many nodes were mid-operation.
pub(super) async fn recover(c: &Conductor) -> Result<usize, ConductorError> {
    release_own_reservations(c).await?;
    c.join().await?;
    release_dead_reservations(c).await?;
    let mut resumed = 0;
    for node in c.db().nodes_needing_conductor().await? {
        if node.provision_state.is_transient() && c.cluster().owns(&node) {
            resumed += 1;
            info!(node = %node.uuid, state = %node.provision_state, "resuming the operation cut short");
        }
    }
    // join() read the group for the first time: adopt() ran.
    if resumed > 0 {
        info!(nodes = resumed, "restart recovery: operations resume");
    }
    Ok(resumed)
}

pub(super) async fn check_timeouts(c: &Conductor) -> Result<usize, ConductorError> {
    let waits = [
        ProvisionState::WaitCallBack,
        ProvisionState::CleanWait,
        ProvisionState::InspectWait,
    ];
    let names: Vec<&str> = waits.iter().map(|s| s.as_str()).collect();
    let mut expired = 0;
    if !c.cluster().can_act() {
        return Ok(0);
    }
    for uuid in c.db().node_uuids_in_states(&names).await? {
        let Some((node, _)) = c.db().get_node(&uuid).await? else {
            continue;
        };
        if !c.cluster().owns(&node) {
            continue;
        }
        let Some(limit) = wait_timeout_ms(c.config(), node.provision_state) else {
            continue;
        };
        if node.reservation.is_some() || now_ms() - node.progress_ms <= limit {
            continue;
        }
        let secs = limit / 1000;
        let config = c.config().clone();
        let r = c
            .db()
            .update_node(&uuid, move |n| {
                let Some(limit) = wait_timeout_ms(&config, n.provision_state) else {
                    return Err(());
                };
                if n.reservation.is_some() || now_ms() - n.progress_ms <= limit {
                    return Err(());
                }
                let state = n.provision_state;
                let msg = match state {
                    ProvisionState::WaitCallBack => format!(
                        "Timeout reached while waiting for callback for node {}: no word from the agent for {secs} s (deploy_callback_timeout)",
                        n.uuid
                    ),
                    ProvisionState::CleanWait => format!(
                        "Timeout reached while cleaning the node: no word from the agent for {secs} s (clean_callback_timeout). Please check if the ramdisk responsible for the cleaning is running on the node."
                    ),
                    _ => format!(
                        "Timeout reached while inspecting the node: no inventory from the agent after {secs} s (inspect_wait_timeout)"
                    ),
                };
                let next = match state.on(Event::Fail) {
                    Ok(next) => next,
                    Err(refused) => {
                        error!(node = %n.uuid, state = %refused.state, event = ?refused.event, "the timeout's transition was refused by the state table");
                        return Err(());
                    }
                };
                n.set_provision_state(next, None);
                n.last_error = Some(msg);
                n.wipe_agent_info();
                n.clean_step = Default::default();
                n.deploy_step = Default::default();
                Ok(())
            })
            .await;
        match r {
            Ok(after) => {
                crate::metrics::phases::node_changed(&node, &after);
                expired += 1;
                warn!(node = %uuid, state = %after.provision_state, "wait state timed out");
                let reason = after.last_error.clone().unwrap_or_default();
                c.record_changes(&node, &after, Some(&reason)).await;
                let node = after;
                if let Err(e) = c.set_power(&node, PowerAction::Off).await {
                    warn!(node = %uuid, error = %e, "power off after timeout failed");
                }
            }
            Err(crate::db::UpdateError::Refused(())) => {}
            Err(crate::db::UpdateError::Db(e)) => return Err(e.into()),
        }
    }
    Ok(expired)
}
