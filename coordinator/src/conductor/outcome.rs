//! What a handler decided, and the one place that applies it.
//!
//! The conductor's handlers (verify, inspection, cleaning, deploy,
//! tear-down, power changes) do their I/O (power actions, agent commands)
//! and return an [`Outcome`]; none of them changes the provision state
//! itself. [`Conductor::apply`] writes the outcome in one update of the node
//! while this conductor holds its reservation, and releases the reservation
//! in the same write. Every change of state goes through
//! [`ProvisionState::on`]: a transition that the table refuses is an error,
//! logged with the state and the event, recorded in the node's `last_error`
//! (the node stays where it is, its reservation released) and returned as
//! [`ConductorError::Transition`]; it is never skipped.
//!
//! [`Outcome::apply_to`] is the change without the database, so that the
//! decisions can be tested on a [`Node`] value.

use serde_json::Map;
use tracing::{error, warn};

use super::{Conductor, ConductorError, Next};
use crate::db::UpdateError;
use crate::model::{Node, now_ms};
use crate::power::PowerAction;
use crate::state::{Event, InvalidTransition, ProvisionState};

/// A change of node fields written with an outcome (phase data, results).
/// It may run more than once (the database retries contended updates).
pub(super) type Change = Box<dyn Fn(&mut Node) + Send + Sync>;

/// When the conductor looks again at a node that keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// On the next kick: an agent heartbeat, an API call, a timeout.
    Kicked,
    /// At once: there is work to do now (an agent command finished already).
    Now,
}

/// The target provision state written with a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// No target (the operation is over).
    Clear,
    /// The target the node has (cleaning goes on to `available` or
    /// `manageable`).
    Keep,
    /// This target.
    To(ProvisionState),
}

/// What a handler decided.
pub(super) enum Outcome {
    /// The node keeps its provision state (it waits for the agent, or the
    /// handler's work needed no change of state): `record` is written, the
    /// reservation released, and the node looked at again `until`.
    Wait {
        /// When to look again.
        until: Until,
        /// Fields to write.
        record: Change,
    },
    /// `event` moves the node on ([`ProvisionState::on`]) with `target`,
    /// `record` in the same write; the reservation is released and the node
    /// looked at again at once (its new state may call for work).
    Transition {
        /// The event.
        event: Event,
        /// The target state afterwards.
        target: Target,
        /// Fields to write.
        record: Change,
    },
    /// The operation failed: [`Event::Fail`] moves the node to the failure
    /// state, `reason` becomes `last_error`, the intent, the agent and the
    /// steps are forgotten; after a failed deploy the VIFs are detached, and
    /// the node is powered off when `power_off` (Ironic does so after
    /// failures in the ramdisk).
    Fail {
        /// For `last_error`.
        reason: String,
        /// Power the node off afterwards.
        power_off: bool,
    },
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wait { until, .. } => f.debug_struct("Wait").field("until", until).finish(),
            Self::Transition { event, target, .. } => f
                .debug_struct("Transition")
                .field("event", event)
                .field("target", target)
                .finish(),
            Self::Fail { reason, power_off } => f
                .debug_struct("Fail")
                .field("reason", reason)
                .field("power_off", power_off)
                .finish(),
        }
    }
}

impl Outcome {
    /// Waits with nothing to write (the agent is busy, say).
    pub(super) fn wait(until: Until) -> Self {
        Self::Wait {
            until,
            record: Box::new(|_: &mut Node| {}),
        }
    }

    /// Waits, writing `record`.
    pub(super) fn wait_with(
        until: Until,
        record: impl Fn(&mut Node) + Send + Sync + 'static,
    ) -> Self {
        Self::Wait {
            until,
            record: Box::new(record),
        }
    }

    /// An agent command is still running: the node waits for the next
    /// heartbeat, the wait's timeout starts again, and the node shows the
    /// progress the agent reported with the command ([`super::progress`]).
    pub(super) fn still_running_with(report: Option<super::progress::Report>) -> Self {
        let at = now_ms();
        Self::wait_with(Until::Kicked, move |n| {
            n.progress_ms = at;
            if let Some(r) = report {
                super::progress::update(n, r, at);
            }
        })
    }

    /// Fires `event` with `target`, writing `record`.
    pub(super) fn transition(
        event: Event,
        target: Target,
        record: impl Fn(&mut Node) + Send + Sync + 'static,
    ) -> Self {
        Self::Transition {
            event,
            target,
            record: Box::new(record),
        }
    }

    /// Fails the operation with `reason`.
    pub(super) fn fail(reason: impl Into<String>, power_off: bool) -> Self {
        Self::Fail {
            reason: reason.into(),
            power_off,
        }
    }

    /// Applies the outcome to `node` (without the reservation, which
    /// [`Conductor::apply`] releases). A refused transition changes
    /// nothing.
    pub(super) fn apply_to(&self, node: &mut Node) -> Result<(), InvalidTransition> {
        match self {
            Self::Wait { record, .. } => record(node),
            Self::Transition {
                event,
                target,
                record,
            } => {
                let next = node.provision_state.on(*event)?;
                record(node);
                let target = match target {
                    Target::Clear => None,
                    Target::Keep => node.target_provision_state,
                    Target::To(t) => Some(*t),
                };
                node.set_provision_state(next, target);
            }
            Self::Fail { reason, .. } => {
                let next = node.provision_state.on(Event::Fail)?;
                node.set_provision_state(next, None);
                node.last_error = Some(reason.clone());
                node.intent = None;
                node.wipe_agent_info();
                node.clean_step = Map::new();
                node.deploy_step = Map::new();
            }
        }
        Ok(())
    }

    /// Whether the handler runs again at once after this outcome.
    fn next(&self) -> Next {
        match self {
            Self::Wait {
                until: Until::Now, ..
            }
            | Self::Transition { .. } => Next::Again,
            Self::Wait {
                until: Until::Kicked,
                ..
            }
            | Self::Fail { .. } => Next::Idle,
        }
    }

    /// What `last_error` says when the table refused this outcome's event.
    fn refusal_text(&self, refused: &InvalidTransition) -> String {
        match self {
            Self::Fail { reason, .. } => {
                format!("{reason}. The node could not be moved to a failure state: {refused}")
            }
            _ => format!(
                "The conductor's change of state was refused: {refused}; the node stays in \"{}\"",
                refused.state
            ),
        }
    }
}

impl Conductor {
    /// Applies a handler's outcome to the node it holds (see the module
    /// documentation): one write that also releases the reservation, then,
    /// for a failure, the VIFs of a failed deploy and the power off.
    pub(super) async fn apply(&self, uuid: &str, outcome: Outcome) -> Result<Next, ConductorError> {
        if let Outcome::Fail { reason, .. } = &outcome {
            warn!(node = %uuid, error = %reason, "operation failed");
        }
        let ok = self.guard(uuid)?;
        let mut before = None;
        let written = self
            .db()
            .update_node::<Option<InvalidTransition>, _>(uuid, |n| {
                if !ok(n) {
                    return Err(None);
                }
                before = Some(n.clone());
                outcome.apply_to(n).map_err(Some)?;
                n.reservation = None;
                Ok(())
            })
            .await;
        let node = match written {
            Ok(node) => {
                if let Some(before) = &before {
                    let failure = match &outcome {
                        Outcome::Fail { reason, .. } => Some(reason.as_str()),
                        _ => None,
                    };
                    self.record_changes(before, &node, failure).await;
                }
                self.held().remove(uuid);
                if let Some(before) = &before {
                    crate::metrics::phases::node_changed(before, &node);
                }
                node
            }
            Err(UpdateError::Db(e)) => return Err(e.into()),
            Err(UpdateError::Refused(None)) => {
                self.held().remove(uuid);
                return Err(ConductorError::Fenced(uuid.to_owned()));
            }
            Err(UpdateError::Refused(Some(refused))) => {
                error!(
                    node = %uuid,
                    state = %refused.state,
                    event = ?refused.event,
                    "the conductor's transition was refused by the state table"
                );
                let text = outcome.refusal_text(&refused);
                self.release(uuid, move |n| n.last_error = Some(text.clone()))
                    .await?;
                return Err(ConductorError::Transition(refused));
            }
        };
        if let Outcome::Fail { power_off, .. } = outcome {
            if node.provision_state == ProvisionState::DeployFailed {
                if let Err(e) = self.detach_vifs(uuid).await {
                    warn!(node = %uuid, error = %e, "detaching the VIFs after a failed deploy failed");
                }
            }
            if power_off {
                if let Err(e) = self.set_power(&node, PowerAction::Off).await {
                    warn!(node = %uuid, error = %e, "power off after failure failed");
                }
            }
        }
        Ok(outcome.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Intent;

    fn node_in(state: ProvisionState) -> Node {
        Node {
            uuid: "n1".into(),
            provision_state: state,
            target_provision_state: Some(ProvisionState::Available),
            ..Node::default()
        }
    }

    #[test]
    fn a_transition_goes_through_the_table_with_its_record() {
        let mut n = node_in(ProvisionState::Cleaning);
        let o = Outcome::transition(Event::Wait, Target::Keep, |n| {
            n.last_error = Some("kept".into());
        });
        o.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::CleanWait);
        assert_eq!(n.target_provision_state, Some(ProvisionState::Available));
        assert_eq!(n.last_error.as_deref(), Some("kept"));
        assert_eq!(o.next(), Next::Again);
    }

    #[test]
    fn a_refused_transition_changes_nothing_and_says_why() {
        let mut n = node_in(ProvisionState::Available);
        let before = n.clone();
        let o = Outcome::transition(Event::Wait, Target::Clear, |n| {
            n.last_error = Some("should not be written".into());
        });
        let refused = o.apply_to(&mut n).unwrap_err();
        assert_eq!(n, before);
        assert_eq!(refused.state, ProvisionState::Available);
        assert_eq!(refused.event, Event::Wait);
        assert!(o.refusal_text(&refused).contains("\"available\""));
        let f = Outcome::fail("Deploy failed: x", true);
        let refused = f.apply_to(&mut n).unwrap_err();
        assert!(f.refusal_text(&refused).starts_with("Deploy failed: x. "));
    }

    #[test]
    fn a_failure_forgets_the_operation() {
        let mut n = node_in(ProvisionState::WaitCallBack);
        n.intent = Some(Intent::Clean { steps: None });
        n.driver_internal_info
            .insert("agent_url".into(), serde_json::json!("http://a:9999"));
        n.deploy_step
            .insert("step".into(), serde_json::json!("write_image"));
        let o = Outcome::fail("Deploy failed: boom", true);
        o.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::DeployFailed);
        assert_eq!(n.target_provision_state, None);
        assert_eq!(n.last_error.as_deref(), Some("Deploy failed: boom"));
        assert!(n.intent.is_none() && n.agent_url().is_none() && n.deploy_step.is_empty());
        assert_eq!(o.next(), Next::Idle);
    }

    #[test]
    fn waits_keep_the_state() {
        let mut n = node_in(ProvisionState::CleanWait);
        n.progress_ms = 1;
        let o = Outcome::still_running_with(None);
        o.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::CleanWait);
        assert!(n.progress_ms > 1);
        assert_eq!(o.next(), Next::Idle);
        assert_eq!(Outcome::wait(Until::Now).next(), Next::Again);
    }
}
