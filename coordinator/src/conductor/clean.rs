//! Cleaning, automated (on provide and after tear-down) and manual (`clean`
//! with `clean_steps`).
//!
//! Automated cleaning runs `erase_devices_metadata` by default, or
//! `erase_devices` (secure) when the configuration (`secure_erase`) or the
//! node (`driver_info.ingot_secure_erase = true`) asks for it. With the agent:
//! PXE + power on → `clean wait`; on the first heartbeat `clean.get_clean_steps`
//! then the first step; each heartbeat that shows the step finished sends the
//! next one at once. Every finished step's `clean_result` (the agent's wipe
//! report) is appended to `driver_internal_info.clean_report`. With fast
//! track (`fast_track.rs`) a running agent is driven instead of booting the
//! ramdisk, and the node stays powered on with the agent running afterwards.

use serde_json::{Map, Value, json};
use tracing::info;

use super::outcome::{Outcome, Target, Until};
use super::{Conductor, ConductorError, Next, command_error_text, fast_track, is_busy};
use crate::agent_client::AgentEndpoint;
use crate::model::{Intent, Node, now_iso, now_ms};
use crate::power::PowerAction;
use crate::state::{Event, ProvisionState};

fn secure_requested(c: &Conductor, node: &Node) -> bool {
    node.driver_info_flag("ingot_secure_erase")
        .unwrap_or(c.config().secure_erase)
}

/// The event that ends cleaning: `available` after provide/tear-down,
/// `manageable` after a manual clean.
fn done_event(node: &Node) -> Event {
    if node.target_provision_state == Some(ProvisionState::Manageable) {
        Event::Manage
    } else {
        Event::Done
    }
}

impl Conductor {
    pub(super) async fn start_clean(&self, node: Node) -> Result<Next, ConductorError> {
        let Some(node) = self
            .lock(&node.uuid, |n| {
                n.provision_state == ProvisionState::Cleaning
            })
            .await?
        else {
            return Ok(Next::Idle);
        };
        let manual = match &node.intent {
            Some(Intent::Clean { steps: Some(s) }) => Some(s.clone()),
            _ => None,
        };
        let enabled = node
            .automated_clean
            .unwrap_or(self.config().automated_clean);
        if !node.uses_agent() || (manual.is_none() && !enabled) {
            info!(node = %node.uuid, "cleaning done (nothing to run in band)");
            let ev = done_event(&node);
            let outcome = Outcome::transition(ev, Target::Clear, |n| {
                n.intent = None;
                n.clean_step = Map::new();
                n.last_error = None;
            });
            self.apply(&node.uuid, outcome).await?;
            return Ok(Next::Idle);
        }
        let secure = secure_requested(self, &node);
        let steps: Vec<Value> = match manual {
            Some(s) => s,
            None if secure => vec![
                json!({"interface": "deploy", "step": "erase_devices", "priority": 10, "abortable": true}),
            ],
            None => vec![
                json!({"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "abortable": true}),
            ],
        };
        let mode = if manual_is_some(&node) {
            "manual"
        } else if secure {
            "secure"
        } else {
            "metadata"
        };
        let Some(fast) = self.agent_for_phase(&node, "Cleaning", |_| {}).await? else {
            return Ok(Next::Idle);
        };
        if fast {
            info!(node = %node.uuid, mode, "cleaning with the running agent (fast track)");
        } else {
            info!(node = %node.uuid, mode, "cleaning ramdisk booting, waiting for the agent");
        }
        let report =
            json!({"mode": mode, "started_at": now_iso(), "finished_at": null, "steps": []});
        let outcome = Outcome::transition(Event::Wait, Target::Keep, move |n| {
            n.intent = None;
            n.last_error = None;
            n.driver_internal_info
                .insert("clean_steps".into(), Value::Array(steps.clone()));
            n.driver_internal_info.remove("clean_step_index");
            n.driver_internal_info
                .insert("clean_report".into(), report.clone());
        });
        self.apply(&node.uuid, outcome).await?;
        // With fast track the agent is running already: drive it at once.
        Ok(if fast { Next::Again } else { Next::Idle })
    }

    pub(super) async fn continue_clean(&self, node: Node) -> Result<Next, ConductorError> {
        let Some((node, ep)) = self
            .lock_waiting_for_agent(&node, ProvisionState::CleanWait)
            .await?
        else {
            return Ok(Next::Idle);
        };
        let uuid = node.uuid.clone();
        let steps: Vec<Value> = node
            .driver_internal_info
            .get("clean_steps")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let index = node
            .driver_internal_info
            .get("clean_step_index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok());
        let Some(index) = index else {
            // First heartbeat: ask for the agent's steps (as Ironic does), then run the first.
            let params = self.step_params(&node).await?;
            let version = match self
                .agent()
                .execute(&ep, "clean.get_clean_steps", params, true)
                .await
            {
                Ok(r) => r
                    .command_result
                    .and_then(|v| v.get("hardware_manager_version").cloned())
                    .unwrap_or(json!({})),
                Err(e) if is_busy(&e) => {
                    self.apply(&uuid, Outcome::wait(Until::Kicked)).await?;
                    return Ok(Next::Idle);
                }
                Err(e) => {
                    self.fail(
                        &uuid,
                        format!("Cleaning failed: clean.get_clean_steps: {e}"),
                        true,
                    )
                    .await?;
                    return Ok(Next::Idle);
                }
            };
            self.modify(&uuid, move |n| {
                n.driver_internal_info
                    .insert("hardware_manager_version".into(), version.clone());
            })
            .await?;
            return self.send_clean_step(&node, &ep, &steps, 0).await;
        };
        let id = node
            .driver_internal_info
            .get("agent_command_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let commands = match self.agent().list_commands(&ep).await {
            Ok(c) => c,
            Err(e) => {
                self.fail(
                    &uuid,
                    format!("Cleaning failed: reading the agent's commands: {e}"),
                    true,
                )
                .await?;
                return Ok(Next::Idle);
            }
        };
        let step_name = steps
            .get(index)
            .and_then(|s| s.get("step"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let Some(cmd) = commands.iter().find(|c| c.id == id) else {
            info!(node = %uuid, step = %step_name, "clean step not known to the agent, sending it again");
            return self.send_clean_step(&node, &ep, &steps, index).await;
        };
        match cmd.command_status {
            ingot_proto::agent::CommandStatus::Running => {
                self.apply(&uuid, Outcome::still_running()).await?;
                Ok(Next::Idle)
            }
            ingot_proto::agent::CommandStatus::Succeeded => {
                let result = cmd
                    .command_result
                    .as_ref()
                    .and_then(|r| r.get("clean_result").cloned())
                    .unwrap_or(Value::Null);
                info!(node = %uuid, step = %step_name, "clean step finished");
                let entry = json!({"step": step_name, "finished_at": now_iso(), "result": result});
                let node = self
                    .modify(&uuid, move |n| append_report(n, entry.clone(), None))
                    .await?;
                if index + 1 < steps.len() {
                    self.send_clean_step(&node, &ep, &steps, index + 1).await
                } else {
                    self.finish_clean(node).await
                }
            }
            _ => {
                let err = command_error_text(cmd);
                let entry = json!({"step": step_name, "finished_at": now_iso(), "error": err, "result": cmd.command_result.as_ref().and_then(|r| r.get("clean_result").cloned())});
                self.modify(&uuid, move |n| {
                    append_report(n, entry.clone(), Some(now_iso()))
                })
                .await?;
                self.fail(
                    &uuid,
                    format!("Clean step deploy.{step_name} failed: {err}"),
                    true,
                )
                .await?;
                Ok(Next::Idle)
            }
        }
    }

    async fn send_clean_step(
        &self,
        node: &Node,
        ep: &AgentEndpoint,
        steps: &[Value],
        index: usize,
    ) -> Result<Next, ConductorError> {
        let uuid = node.uuid.clone();
        let Some(step) = steps.get(index).cloned() else {
            return self.finish_clean(node.clone()).await;
        };
        let mut params = self.step_params(node).await?;
        params.insert("step".into(), step.clone());
        params.insert(
            "clean_version".into(),
            node.driver_internal_info
                .get("hardware_manager_version")
                .cloned()
                .unwrap_or(json!({})),
        );
        match self
            .agent()
            .execute(ep, "clean.execute_clean_step", params, false)
            .await
        {
            Ok(r) => {
                let id = r.id.clone();
                let done = r.command_status != ingot_proto::agent::CommandStatus::Running;
                self.release(&uuid, move |n| {
                    n.driver_internal_info
                        .insert("agent_command_id".into(), json!(id));
                    n.driver_internal_info
                        .insert("clean_step_index".into(), json!(index));
                    n.clean_step = step.as_object().cloned().unwrap_or_default();
                    n.progress_ms = now_ms();
                })
                .await?;
                Ok(if done { Next::Again } else { Next::Idle })
            }
            Err(e) if is_busy(&e) => {
                self.apply(&uuid, Outcome::wait(Until::Kicked)).await?;
                Ok(Next::Idle)
            }
            Err(e) => {
                self.fail(
                    &uuid,
                    format!("Cleaning failed: sending clean step: {e}"),
                    true,
                )
                .await?;
                Ok(Next::Idle)
            }
        }
    }

    async fn finish_clean(&self, node: Node) -> Result<Next, ConductorError> {
        let uuid = node.uuid.clone();
        let keep = fast_track::keeps_agent(self.config(), &node);
        if !keep {
            if let Err(e) = self.set_power(&node, PowerAction::Off).await {
                self.fail(&uuid, format!("Cleaning failed: power off: {e}"), false)
                    .await?;
                return Ok(Next::Idle);
            }
        }
        let ev = done_event(&node);
        info!(node = %uuid, fast_track = keep, "cleaning done");
        let outcome = Outcome::transition(ev, Target::Clear, move |n| {
            fast_track::end_phase(keep, n);
            n.clean_step = Map::new();
            n.driver_internal_info.remove("clean_step_index");
            n.driver_internal_info.remove("clean_steps");
            if let Some(Value::Object(r)) = n.driver_internal_info.get_mut("clean_report") {
                r.insert("finished_at".into(), json!(now_iso()));
            }
            if !keep {
                n.power_state = Some("power off".into());
            }
            n.last_error = None;
        });
        self.apply(&uuid, outcome).await?;
        Ok(Next::Idle)
    }
}

fn manual_is_some(node: &Node) -> bool {
    matches!(node.intent, Some(Intent::Clean { steps: Some(_) }))
}

fn append_report(n: &mut Node, mut entry: Value, finished: Option<String>) {
    // What the agent replied is stored without anything secret-looking.
    crate::model::mask::mask_value(&mut entry);
    let report = n
        .driver_internal_info
        .entry("clean_report")
        .or_insert_with(|| json!({"steps": []}));
    if let Value::Object(r) = report {
        if let Some(Value::Array(steps)) = r.get_mut("steps") {
            steps.push(entry);
        } else {
            r.insert("steps".into(), Value::Array(vec![entry]));
        }
        if let Some(f) = finished {
            r.insert("finished_at".into(), json!(f));
        }
    }
}
