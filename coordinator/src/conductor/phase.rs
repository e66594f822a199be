//! The skeleton that inspection, cleaning and deploy share, written once.
//!
//! A phase starts in its start state (`inspecting`, `cleaning`,
//! `deploying`): the conductor reserves the node, the phase plans
//! ([`Phase::plan`]): done at once (nothing to run in band), failed, or run
//! by the agent; for the agent the running one is reused (fast track) or the
//! ramdisk booted ([`Conductor::agent_for_phase`]), and the node moves to
//! the phase's wait state. There, on every kick (heartbeats), the conductor
//! reserves the node with its agent endpoint and the phase drives the agent
//! one step ([`Phase::drive`]): send the next command, wait for a running
//! one, finish, or fail. Every answer is an [`Outcome`] that
//! [`Conductor::apply`] writes.

use std::future::Future;

use ingot_proto::agent::{CommandResult, CommandStatus};
use serde_json::Value;
use tracing::info;

use super::outcome::{Change, Outcome, Target};
use super::{Conductor, ConductorError, Next, fast_track};
use crate::agent_client::AgentEndpoint;
use crate::model::Node;
use crate::power::{PowerAction, PowerError, PowerState};
use crate::state::{Event, ProvisionState};

/// One agent phase: the parts that differ between inspection, cleaning and
/// deploy.
pub(super) trait Phase: Sync {
    /// The state in which the phase starts.
    const START: ProvisionState;
    /// The state in which it waits for the agent.
    const WAIT: ProvisionState;
    /// The phase's name at the start of failure messages.
    const NAME: &'static str;
    /// The network the node's switched ports sit on while the agent runs
    /// (conductor/network.rs).
    const NETWORK: crate::network::config::Phase;

    /// Decides how the phase starts on the reserved `node`.
    fn plan(
        &self,
        c: &Conductor,
        node: Node,
    ) -> impl Future<Output = Result<Plan, ConductorError>> + Send;

    /// One look at the reserved, waiting `node` whose agent answers at `ep`.
    fn drive(
        &self,
        c: &Conductor,
        node: Node,
        ep: &AgentEndpoint,
    ) -> impl Future<Output = Result<Outcome, ConductorError>> + Send;
}

/// How a phase starts.
pub(super) enum Plan {
    /// Without the agent: this outcome at once (done, or failed).
    Now(Outcome),
    /// With the agent: then the node waits for it.
    Agent {
        /// The node (as the plan may have changed it; boxed, it is large).
        node: Box<Node>,
        /// Phase data of earlier runs to forget, whichever agent runs.
        reset: Change,
        /// Written with the move to the wait state.
        record: Change,
        /// The target state while waiting.
        target: Target,
    },
}

impl Conductor {
    /// Starts `phase` on a node in its start state (see the module
    /// documentation).
    pub(super) async fn start_phase<P: Phase>(
        &self,
        phase: &P,
        node: Node,
    ) -> Result<Next, ConductorError> {
        let Some(node) = self
            .lock(&node.uuid, |n| n.provision_state == P::START)
            .await?
        else {
            return Ok(Next::Idle);
        };
        let uuid = node.uuid.clone();
        let outcome = match phase.plan(self, node).await? {
            Plan::Now(outcome) => outcome,
            Plan::Agent {
                node,
                reset,
                record,
                target,
            } => match self
                .place_ports(
                    &node,
                    crate::network::tenancy::Placement::Service(P::NETWORK),
                )
                .await?
            {
                Err(e) => Outcome::fail(format!("{} failed: {e}", P::NAME), true),
                Ok(()) => match self.agent_for_phase(&node, &*reset).await? {
                    Ok(fast) => {
                        if fast {
                            info!(node = %uuid, phase = P::NAME, "driving the running agent (fast track)");
                        } else {
                            info!(node = %uuid, phase = P::NAME, "ramdisk booting, waiting for the agent");
                        }
                        Outcome::Transition {
                            event: Event::Wait,
                            target,
                            record,
                        }
                    }
                    Err(e) => Outcome::fail(
                        format!("{} failed: booting the ramdisk: {e}", P::NAME),
                        false,
                    ),
                },
            },
        };
        self.apply(&uuid, outcome).await
    }

    /// Drives `phase` one step on a node waiting for its agent.
    pub(super) async fn continue_phase<P: Phase>(
        &self,
        phase: &P,
        node: Node,
    ) -> Result<Next, ConductorError> {
        let Some((node, ep)) = self.lock_waiting_for_agent(&node, P::WAIT).await? else {
            return Ok(Next::Idle);
        };
        let uuid = node.uuid.clone();
        let outcome = phase.drive(self, node, &ep).await?;
        self.apply(&uuid, outcome).await
    }

    /// Ends the agent's part of an inspection or cleaning: with fast track
    /// the agent keeps running ([`fast_track::keeps_agent`]), else the node
    /// is powered off. Returns whether the agent is kept, and how the power
    /// off went; [`agent_left`] writes the matching fields.
    pub(super) async fn leave_agent(&self, node: &Node) -> (bool, Result<(), PowerError>) {
        let keep = fast_track::keeps_agent(self.config(), node);
        if keep {
            return (true, Ok(()));
        }
        (false, self.set_power(node, PowerAction::Off).await)
    }
}

/// The node fields at the end of an inspection or cleaning whose agent is
/// kept (`keep`) or was powered off ([`Conductor::leave_agent`]).
pub(super) fn agent_left(keep: bool, node: &mut Node) {
    fast_track::end_phase(keep, node);
    if !keep {
        node.power_state = Some(PowerState::Off);
    }
}

/// Where the agent command the conductor sent last stands.
#[derive(Debug, PartialEq)]
pub(super) enum Sent<'a> {
    /// The agent does not know it (it restarted, or never got it).
    Unknown,
    /// It runs (its status may carry progress).
    Running(&'a CommandResult),
    /// It finished.
    Succeeded(&'a CommandResult),
    /// It failed.
    Failed(&'a CommandResult),
}

/// Finds the command recorded in `driver_internal_info.agent_command_id`
/// in the agent's command list.
pub(super) fn sent_command<'a>(node: &Node, commands: &'a [CommandResult]) -> Sent<'a> {
    let id = node
        .driver_internal_info
        .get("agent_command_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match commands.iter().find(|c| c.id == id) {
        None => Sent::Unknown,
        Some(c) => match c.command_status {
            CommandStatus::Running => Sent::Running(c),
            CommandStatus::Succeeded => Sent::Succeeded(c),
            CommandStatus::Failed | CommandStatus::CleanVersionMismatch => Sent::Failed(c),
        },
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    /// An agent command as the agent lists it.
    pub(in crate::conductor) fn command(id: &str, status: CommandStatus) -> CommandResult {
        CommandResult {
            id: id.into(),
            command_name: "execute_clean_step".into(),
            command_status: status,
            command_error: None,
            command_result: Some(json!({"clean_result": {"ok": true}})),
        }
    }

    #[test]
    fn the_sent_command_is_found_by_its_id() {
        let mut n = Node::default();
        let list = [
            command("a", CommandStatus::Succeeded),
            command("b", CommandStatus::Running),
            command("c", CommandStatus::Failed),
        ];
        assert_eq!(sent_command(&n, &list), Sent::Unknown, "nothing sent");
        for (id, want) in [
            ("a", Sent::Succeeded(&list[0])),
            ("b", Sent::Running(&list[1])),
            ("c", Sent::Failed(&list[2])),
            ("d", Sent::Unknown),
        ] {
            n.driver_internal_info
                .insert("agent_command_id".into(), json!(id));
            assert_eq!(sent_command(&n, &list), want, "{id}");
        }
    }

    #[test]
    fn an_agent_phase_ends_with_or_without_its_agent() {
        let mut n = Node::default();
        for (k, v) in [("agent_url", "http://a:9999"), ("agent_command_id", "x")] {
            n.driver_internal_info.insert(k.into(), json!(v));
        }
        let mut kept = n.clone();
        agent_left(true, &mut kept);
        assert_eq!(kept.agent_url(), Some("http://a:9999"));
        assert!(!kept.driver_internal_info.contains_key("agent_command_id"));
        assert_eq!(kept.power_state, None);
        agent_left(false, &mut n);
        assert_eq!(n.agent_url(), None);
        assert_eq!(n.power_state, Some(PowerState::Off));
    }
}
