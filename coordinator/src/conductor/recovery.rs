//! Restart recovery and wait-state timeouts.
//!
//! At start-up, nodes left in a transient state (verifying, inspecting,
//! cleaning, deploying, deleting) had their operation cut short: they move to
//! the failure state with a `last_error` that says so, as Ironic does for
//! "stuck" states. Wait states (wait call-back, clean wait, inspect wait)
//! survive a restart: the agent is still running and heartbeats continue.
//! Reservations this conductor held are released, and so are those held
//! under a name that is not an alive coordinator (one that died, or this
//! one under an earlier name): at start and after every heartbeat. Pending
//! power changes are picked up again.
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
    let timeout_ms = i64::try_from(c.config().conductor_heartbeat_timeout.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    let alive: Vec<String> = c
        .db()
        .list_conductors(timeout_ms)
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

pub(super) async fn recover(c: &Conductor) -> Result<usize, ConductorError> {
    let me = c.name().to_owned();
    c.db()
        .register_conductor(
            &me,
            &c.config().conductor_group,
            &c.config().agent_base_url(),
        )
        .await?;
    release_dead_reservations(c).await?;
    let mut recovered = 0;
    for node in c.db().list_nodes().await? {
        let state = node.provision_state;
        let stale_lock = node.reservation.as_deref() == Some(me.as_str());
        if !state.is_transient() && !stale_lock && node.power_intent.is_none() {
            continue;
        }
        let me2 = me.clone();
        let updated = c
            .db()
            .update_node::<std::convert::Infallible, _>(&node.uuid, move |n| {
                if n.reservation.as_deref() == Some(me2.as_str()) {
                    n.reservation = None;
                }
                let s = n.provision_state;
                if s.is_transient() {
                    if let Some(f) = s.failure_state() {
                        n.set_provision_state(f, None);
                        n.last_error = Some(format!(
                            "The coordinator restarted while the node was in state \"{s}\"; the operation was interrupted and did not complete. Retry it."
                        ));
                        n.intent = None;
                        n.wipe_agent_info();
                        n.clean_step = Default::default();
                        n.deploy_step = Default::default();
                    }
                }
                Ok(())
            })
            .await?;
        if state.is_transient() {
            recovered += 1;
            warn!(node = %node.uuid, from = %state, to = %updated.provision_state, "recovered after restart");
        }
        if updated.power_intent.is_some() {
            c.kick(&updated.uuid);
        }
    }
    if recovered > 0 {
        info!(nodes = recovered, "restart recovery done");
    }
    Ok(recovered)
}

pub(super) async fn check_timeouts(c: &Conductor) -> Result<usize, ConductorError> {
    let waits = [
        ProvisionState::WaitCallBack,
        ProvisionState::CleanWait,
        ProvisionState::InspectWait,
    ];
    let names: Vec<&str> = waits.iter().map(|s| s.as_str()).collect();
    let mut expired = 0;
    for uuid in c.db().node_uuids_in_states(&names).await? {
        let Some((node, _)) = c.db().get_node(&uuid).await? else {
            continue;
        };
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
            Ok(node) => {
                expired += 1;
                warn!(node = %uuid, state = %node.provision_state, "wait state timed out");
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
