//! Cleaning, automated (on provide and after tear-down) and manual (`clean`
//! with `clean_steps`).
//!
//! Automated cleaning runs `erase_devices_metadata` by default, or
//! `erase_devices` (secure) when the configuration (`secure_erase`) or the
//! node (`driver_info.ingot_secure_erase = true`) asks for it; on a node that
//! boots UEFI ([`crate::model::boot_mode`]) IPA's `clean_uefi_nvram` runs
//! first, so that the previous tenant's boot entries go. With the agent:
//! PXE + power on → `clean wait`; on the first heartbeat `clean.get_clean_steps`
//! then the first step; each heartbeat that shows the step finished sends the
//! next one at once. Every finished step's `clean_result` (the agent's wipe
//! report) is appended to `driver_internal_info.clean_report`. With fast
//! track (`fast_track.rs`) a running agent is driven instead of booting the
//! ramdisk, and the node stays powered on with the agent running afterwards.

use ingot_proto::agent::{CommandResult, CommandStatus};
use serde_json::{Map, Value, json};
use tracing::info;

use super::outcome::{Outcome, Target, Until};
use super::phase::{Phase, Plan, Sent, agent_left, sent_command};
use super::{Conductor, ConductorError, command_error_text, is_busy};
use crate::agent_client::AgentEndpoint;
use crate::config::Config;
use crate::model::{Intent, Node, now_iso};
use crate::state::{Event, ProvisionState};

/// Cleaning, as an agent [`Phase`].
pub(super) struct Clean;

/// The event that ends cleaning: `available` after provide/tear-down,
/// `manageable` after a manual clean.
fn done_event(node: &Node) -> Event {
    if node.target_provision_state == Some(ProvisionState::Manageable) {
        Event::Manage
    } else {
        Event::Done
    }
}

/// How cleaning starts.
#[derive(Debug, PartialEq)]
enum CleanPlan {
    /// Nothing runs in band (a deploy interface without the agent, or
    /// automated cleaning off): cleaning ends at once with this event.
    Nothing(Event),
    /// These steps run on the agent; `mode` names them in the log and the
    /// report.
    Steps {
        /// The clean steps, in order.
        steps: Vec<Value>,
        /// `manual`, `secure` or `metadata`.
        mode: &'static str,
    },
}

/// Decides how cleaning starts on `node`: the manual steps of a `clean`
/// verb, else (automated cleaning) `erase_devices` when secure erase is asked
/// for (configuration `secure_erase`, `driver_info.ingot_secure_erase`),
/// else `erase_devices_metadata`; in UEFI mode `clean_uefi_nvram` first.
fn plan_clean(config: &Config, node: &Node) -> CleanPlan {
    let manual = match &node.intent {
        Some(Intent::Clean { steps: Some(s) }) => Some(s.clone()),
        _ => None,
    };
    let enabled = node.automated_clean.unwrap_or(config.automated_clean);
    if !node.uses_agent() || (manual.is_none() && !enabled) {
        return CleanPlan::Nothing(done_event(node));
    }
    let secure = node
        .driver_info_flag("ingot_secure_erase")
        .unwrap_or(config.secure_erase);
    let (erase, mode) = match manual {
        Some(steps) => {
            return CleanPlan::Steps {
                steps,
                mode: "manual",
            };
        }
        None if secure => (
            json!({"interface": "deploy", "step": "erase_devices", "priority": 10, "abortable": true}),
            "secure",
        ),
        None => (
            json!({"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "abortable": true}),
            "metadata",
        ),
    };
    let mut steps = vec![];
    // The previous tenant's boot entries (IPA's step, its default patterns).
    if crate::model::boot_mode::for_deploy(node) == Some(crate::model::boot_mode::BootMode::Uefi) {
        steps.push(json!({"interface": "deploy", "step": "clean_uefi_nvram", "priority": 100, "abortable": true, "args": {}}));
    }
    steps.push(erase);
    CleanPlan::Steps { steps, mode }
}

/// Cleaning ends without the agent.
fn cleaned_without_agent(event: Event) -> Outcome {
    Outcome::transition(event, Target::Clear, |n| {
        n.intent = None;
        n.clean_step = Map::new();
        n.last_error = None;
    })
}

/// What is written when cleaning goes to `clean wait`: the steps and a new
/// report.
fn clean_started(steps: Vec<Value>, mode: &str) -> impl Fn(&mut Node) + Send + Sync + 'static {
    let report = json!({"mode": mode, "started_at": now_iso(), "finished_at": null, "steps": []});
    move |n| {
        n.intent = None;
        n.last_error = None;
        n.driver_internal_info
            .insert("clean_steps".into(), Value::Array(steps.clone()));
        n.driver_internal_info.remove("clean_step_index");
        n.driver_internal_info
            .insert("clean_report".into(), report.clone());
    }
}

/// The steps cleaning runs, as recorded when it started.
fn clean_steps(node: &Node) -> Vec<Value> {
    node.driver_internal_info
        .get("clean_steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The index of the step sent last; `None` before the first.
fn step_index(node: &Node) -> Option<usize> {
    node.driver_internal_info
        .get("clean_step_index")
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok())
}

/// The name of step `index`, for the log, the report and `last_error`.
fn step_name(steps: &[Value], index: usize) -> String {
    steps
        .get(index)
        .and_then(|s| s.get("step"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

/// What the agent's command list means for clean step `index`.
#[derive(Debug, PartialEq)]
enum StepNext {
    /// The agent does not know the step: send it again.
    Resend,
    /// The step runs, with the progress the agent reported.
    Running(Option<super::progress::Report>),
    /// The step finished: `entry` goes into the report, then step `next`
    /// runs, or cleaning finishes.
    Finished {
        /// The report entry.
        entry: Value,
        /// The next step's index.
        next: Option<usize>,
    },
    /// The step failed.
    Failed {
        /// The report entry.
        entry: Value,
        /// For `last_error`.
        reason: String,
    },
}

/// Reads the agent's command list for clean step `index` of `node`.
fn after_step(node: &Node, steps: &[Value], index: usize, commands: &[CommandResult]) -> StepNext {
    let name = step_name(steps, index);
    let clean_result = |c: &CommandResult| {
        c.command_result
            .as_ref()
            .and_then(|r| r.get("clean_result").cloned())
    };
    match sent_command(node, commands) {
        Sent::Unknown => StepNext::Resend,
        Sent::Running(cmd) => StepNext::Running(super::progress::report(cmd)),
        Sent::Succeeded(cmd) => StepNext::Finished {
            entry: json!({"step": name, "finished_at": now_iso(), "result": clean_result(cmd).unwrap_or(Value::Null)}),
            next: index.checked_add(1).filter(|i| *i < steps.len()),
        },
        Sent::Failed(cmd) => {
            let err = command_error_text(cmd);
            StepNext::Failed {
                entry: json!({"step": name, "finished_at": now_iso(), "error": err, "result": clean_result(cmd)}),
                reason: format!("Clean step deploy.{name} failed: {err}"),
            }
        }
    }
}

/// Clean step `index` was sent and the agent answered `r`: the command is
/// recorded and the node waits for it; when the agent answered with a
/// finished command the conductor looks again at once.
fn clean_step_sent(r: &CommandResult, step: Value, index: usize) -> Outcome {
    let id = r.id.clone();
    let until = if r.command_status == CommandStatus::Running {
        Until::Kicked
    } else {
        Until::Now
    };
    Outcome::wait_with(until, move |n| {
        n.driver_internal_info
            .insert("agent_command_id".into(), json!(id));
        n.driver_internal_info
            .insert("clean_step_index".into(), json!(index));
        n.clean_step = step.as_object().cloned().unwrap_or_default();
        super::progress::start(n);
        n.progress_ms = crate::model::now_ms();
    })
}

/// Cleaning finished with `event`; the agent is kept running (`keep`) or
/// the node was powered off.
fn cleaned(event: Event, keep: bool) -> Outcome {
    Outcome::transition(event, Target::Clear, move |n| {
        agent_left(keep, n);
        super::progress::clear(n);
        n.clean_step = Map::new();
        n.driver_internal_info.remove("clean_step_index");
        n.driver_internal_info.remove("clean_steps");
        if let Some(Value::Object(r)) = n.driver_internal_info.get_mut("clean_report") {
            r.insert("finished_at".into(), json!(now_iso()));
        }
        n.last_error = None;
    })
}

impl Phase for Clean {
    const START: ProvisionState = ProvisionState::Cleaning;
    const WAIT: ProvisionState = ProvisionState::CleanWait;
    const NAME: &'static str = "Cleaning";
    const NETWORK: crate::network::config::Phase = crate::network::config::Phase::Cleaning;

    async fn plan(&self, c: &Conductor, node: Node) -> Result<Plan, ConductorError> {
        Ok(match plan_clean(c.config(), &node) {
            CleanPlan::Nothing(event) => {
                info!(node = %node.uuid, "cleaning done (nothing to run in band)");
                Plan::Now(cleaned_without_agent(event))
            }
            CleanPlan::Steps { steps, mode } => {
                info!(node = %node.uuid, mode, "cleaning starts");
                Plan::Agent {
                    node: Box::new(node),
                    reset: Box::new(|_: &mut Node| {}),
                    record: Box::new(clean_started(steps, mode)),
                    target: Target::Keep,
                }
            }
        })
    }

    async fn drive(
        &self,
        c: &Conductor,
        node: Node,
        ep: &AgentEndpoint,
    ) -> Result<Outcome, ConductorError> {
        let uuid = node.uuid.clone();
        let steps = clean_steps(&node);
        let Some(index) = step_index(&node) else {
            // First heartbeat: ask for the agent's steps (as Ironic does), then run the first.
            let params = c.step_params(&node).await?;
            let version = match c
                .agent_execute(&node, ep, "clean.get_clean_steps", params, true)
                .await
            {
                Ok(r) => r
                    .command_result
                    .and_then(|v| v.get("hardware_manager_version").cloned())
                    .unwrap_or(json!({})),
                Err(e) if is_busy(&e) => return Ok(Outcome::wait(Until::Kicked)),
                Err(e) => {
                    return Ok(Outcome::fail(
                        format!("Cleaning failed: clean.get_clean_steps: {e}"),
                        true,
                    ));
                }
            };
            c.modify(&uuid, move |n| {
                n.driver_internal_info
                    .insert("hardware_manager_version".into(), version.clone());
            })
            .await?;
            return send_clean_step(c, &node, ep, &steps, 0).await;
        };
        let commands = match c.agent().list_commands(ep).await {
            Ok(commands) => commands,
            Err(e) => {
                return Ok(Outcome::fail(
                    format!("Cleaning failed: reading the agent's commands: {e}"),
                    true,
                ));
            }
        };
        let step = step_name(&steps, index);
        match after_step(&node, &steps, index, &commands) {
            StepNext::Resend => {
                info!(node = %uuid, step = %step, "clean step not known to the agent, sending it again");
                send_clean_step(c, &node, ep, &steps, index).await
            }
            StepNext::Running(report) => Ok(Outcome::still_running_with(report)),
            StepNext::Finished { entry, next } => {
                info!(node = %uuid, step = %step, "clean step finished");
                let node = c
                    .modify(&uuid, move |n| append_report(n, entry.clone(), None))
                    .await?;
                match next {
                    Some(next) => send_clean_step(c, &node, ep, &steps, next).await,
                    None => finish_clean(c, &node).await,
                }
            }
            StepNext::Failed { entry, reason } => {
                c.modify(&uuid, move |n| {
                    append_report(n, entry.clone(), Some(now_iso()))
                })
                .await?;
                Ok(Outcome::fail(reason, true))
            }
        }
    }
}

/// Sends clean step `index` to the agent.
async fn send_clean_step(
    c: &Conductor,
    node: &Node,
    ep: &AgentEndpoint,
    steps: &[Value],
    index: usize,
) -> Result<Outcome, ConductorError> {
    let Some(step) = steps.get(index).cloned() else {
        return finish_clean(c, node).await;
    };
    let mut params = c.step_params(node).await?;
    params.insert("step".into(), step.clone());
    params.insert(
        "clean_version".into(),
        node.driver_internal_info
            .get("hardware_manager_version")
            .cloned()
            .unwrap_or(json!({})),
    );
    Ok(
        match c
            .agent_execute(node, ep, "clean.execute_clean_step", params, false)
            .await
        {
            Ok(r) => clean_step_sent(&r, step, index),
            Err(e) if is_busy(&e) => Outcome::wait(Until::Kicked),
            Err(e) => Outcome::fail(format!("Cleaning failed: sending clean step: {e}"), true),
        },
    )
}

/// The last step finished: the agent is kept (fast track) or the node
/// powered off, and cleaning ends.
async fn finish_clean(c: &Conductor, node: &Node) -> Result<Outcome, ConductorError> {
    let (keep, powered_off) = c.leave_agent(node).await;
    if let Err(e) = powered_off {
        return Ok(Outcome::fail(
            format!("Cleaning failed: power off: {e}"),
            false,
        ));
    }
    info!(node = %node.uuid, fast_track = keep, "cleaning done");
    Ok(cleaned(done_event(node), keep))
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

#[cfg(test)]
mod tests {
    use ingot_proto::agent::CommandError;

    use super::*;
    use crate::conductor::phase::tests::command;
    use crate::power::PowerState;

    fn agent_node(state: ProvisionState) -> Node {
        Node {
            uuid: "n1".into(),
            deploy_interface: Some("direct".into()),
            provision_state: state,
            target_provision_state: Some(ProvisionState::Available),
            ..Node::default()
        }
    }

    #[test]
    fn the_plan_follows_the_node_and_the_configuration() {
        let config = Config {
            automated_clean: true,
            ..Config::default()
        };
        let mut fake = agent_node(ProvisionState::Cleaning);
        fake.deploy_interface = Some("fake".into());
        assert_eq!(plan_clean(&config, &fake), CleanPlan::Nothing(Event::Done));

        let mut off = agent_node(ProvisionState::Cleaning);
        off.automated_clean = Some(false);
        assert_eq!(plan_clean(&config, &off), CleanPlan::Nothing(Event::Done));

        let n = agent_node(ProvisionState::Cleaning);
        let CleanPlan::Steps { steps, mode } = plan_clean(&config, &n) else {
            panic!("automated cleaning runs in band");
        };
        assert_eq!(mode, "metadata");
        assert_eq!(steps[0]["step"], "erase_devices_metadata");

        let mut secure = n.clone();
        secure
            .driver_info
            .insert("ingot_secure_erase".into(), json!("true"));
        assert!(matches!(
            plan_clean(&config, &secure),
            CleanPlan::Steps { mode: "secure", .. }
        ));

        let mut uefi = secure.clone();
        uefi.boot_mode = Some("uefi".into());
        let CleanPlan::Steps { steps, mode } = plan_clean(&config, &uefi) else {
            panic!("automated cleaning runs in band");
        };
        assert_eq!(mode, "secure");
        let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
        assert_eq!(names, ["clean_uefi_nvram", "erase_devices"]);

        let mut manual = n.clone();
        manual.automated_clean = Some(false);
        manual.target_provision_state = Some(ProvisionState::Manageable);
        manual.intent = Some(Intent::Clean {
            steps: Some(vec![
                json!({"interface": "deploy", "step": "erase_devices"}),
            ]),
        });
        assert!(matches!(
            plan_clean(&config, &manual),
            CleanPlan::Steps { mode: "manual", .. }
        ));
        manual.deploy_interface = Some("fake".into());
        assert_eq!(
            plan_clean(&config, &manual),
            CleanPlan::Nothing(Event::Manage),
            "a manual clean ends in manageable"
        );
    }

    #[test]
    fn cleaning_without_the_agent_ends_at_once() {
        let mut n = agent_node(ProvisionState::Cleaning);
        n.intent = Some(Intent::Clean { steps: None });
        cleaned_without_agent(Event::Done).apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Available);
        assert_eq!(n.target_provision_state, None);
        assert!(n.intent.is_none());
    }

    #[test]
    fn the_start_keeps_the_target_and_records_the_steps() {
        let mut n = agent_node(ProvisionState::Cleaning);
        n.target_provision_state = Some(ProvisionState::Manageable);
        n.driver_internal_info
            .insert("clean_step_index".into(), json!(3));
        let o = Outcome::transition(
            Event::Wait,
            Target::Keep,
            clean_started(vec![json!({"step": "erase_devices"})], "manual"),
        );
        o.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::CleanWait);
        assert_eq!(n.target_provision_state, Some(ProvisionState::Manageable));
        assert_eq!(clean_steps(&n).len(), 1);
        assert_eq!(step_index(&n), None);
        assert_eq!(n.driver_internal_info["clean_report"]["mode"], "manual");
    }

    #[test]
    fn each_agent_answer_has_its_next_move() {
        let steps = vec![
            json!({"step": "erase_devices_metadata"}),
            json!({"step": "erase_devices"}),
        ];
        let mut n = agent_node(ProvisionState::CleanWait);
        n.driver_internal_info
            .insert("agent_command_id".into(), json!("c1"));
        assert_eq!(after_step(&n, &steps, 0, &[]), StepNext::Resend);
        let running = [command("c1", CommandStatus::Running)];
        assert_eq!(after_step(&n, &steps, 0, &running), StepNext::Running(None));
        let done = [command("c1", CommandStatus::Succeeded)];
        let StepNext::Finished { entry, next } = after_step(&n, &steps, 0, &done) else {
            panic!("finished");
        };
        assert_eq!(next, Some(1));
        assert_eq!(entry["step"], "erase_devices_metadata");
        assert_eq!(entry["result"], json!({"ok": true}));
        assert!(matches!(
            after_step(&n, &steps, 1, &done),
            StepNext::Finished { next: None, .. }
        ));
        let mut failed = command("c1", CommandStatus::Failed);
        failed.command_error = Some(CommandError {
            kind: "CleaningError".into(),
            message: "disk busy".into(),
            details: String::new(),
            code: 500,
        });
        let StepNext::Failed { entry, reason } = after_step(&n, &steps, 1, &[failed]) else {
            panic!("failed");
        };
        assert_eq!(
            reason,
            "Clean step deploy.erase_devices failed: CleaningError: disk busy"
        );
        assert_eq!(entry["error"], "CleaningError: disk busy");
    }

    #[test]
    fn a_sent_step_is_recorded_and_waited_for() {
        let mut n = agent_node(ProvisionState::CleanWait);
        let step = json!({"interface": "deploy", "step": "erase_devices"});
        let o = clean_step_sent(&command("c2", CommandStatus::Running), step.clone(), 1);
        assert!(matches!(
            o,
            Outcome::Wait {
                until: Until::Kicked,
                ..
            }
        ));
        o.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::CleanWait);
        assert_eq!(n.driver_internal_info["agent_command_id"], "c2");
        assert_eq!(step_index(&n), Some(1));
        assert_eq!(n.clean_step["step"], "erase_devices");
        let sync = clean_step_sent(&command("c3", CommandStatus::Succeeded), step, 1);
        assert!(matches!(
            sync,
            Outcome::Wait {
                until: Until::Now,
                ..
            }
        ));
    }

    #[test]
    fn the_end_of_cleaning_keeps_or_forgets_the_agent() {
        let mut n = agent_node(ProvisionState::CleanWait);
        n.driver_internal_info
            .insert("agent_url".into(), json!("http://a:9999"));
        n.driver_internal_info.insert(
            "clean_report".into(),
            json!({"steps": [], "finished_at": null}),
        );
        n.last_error = Some("old".into());
        let mut kept = n.clone();
        cleaned(Event::Done, true).apply_to(&mut kept).unwrap();
        assert_eq!(kept.provision_state, ProvisionState::Available);
        assert_eq!(kept.agent_url(), Some("http://a:9999"));
        assert!(kept.driver_internal_info["clean_report"]["finished_at"].is_string());
        assert_eq!(kept.last_error, None);
        cleaned(Event::Manage, false).apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Manageable);
        assert_eq!(n.agent_url(), None);
        assert_eq!(n.power_state, Some(PowerState::Off));
    }
}
