//! Phase and step durations, from the node changes the conductor writes.
//!
//! [`node_changed`] is called with the node before and after each change
//! the conductor applies ([`crate::conductor`]'s one place that applies
//! outcomes). A phase (`inspect`, `clean`, `deploy`) starts when the node
//! enters its start state (`inspecting`, `cleaning`, `deploying`: the time
//! of `provision_updated_at`) and ends when the node leaves the phase's
//! states; it failed when it ends in the phase's failure state. A step
//! starts when `clean_step` or `deploy_step` names it and ends when that
//! changes. Starts are kept in memory: a phase or step that a restart or a
//! takeover interrupted is not measured, nor one that ended outside the
//! conductor (an abort through the API); wait timeouts are measured as
//! failures.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::{PhaseLabels, StepLabels, global};
use crate::model::Node;
use crate::state::ProvisionState;

/// When a phase or step started.
#[derive(Debug, Clone, PartialEq)]
struct Started {
    /// The phase, or the phase and the step.
    what: (&'static str, Option<String>),
    at: SystemTime,
}

#[derive(Debug, Default)]
struct Starts {
    phases: HashMap<String, Started>,
    steps: HashMap<String, Started>,
}

fn starts() -> MutexGuard<'static, Starts> {
    static S: LazyLock<Mutex<Starts>> = LazyLock::new(Mutex::default);
    match S.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The phase a provision state belongs to.
pub fn phase_of(s: ProvisionState) -> Option<&'static str> {
    match s {
        ProvisionState::Inspecting | ProvisionState::InspectWait => Some("inspect"),
        ProvisionState::Cleaning | ProvisionState::CleanWait => Some("clean"),
        ProvisionState::Deploying | ProvisionState::WaitCallBack => Some("deploy"),
        _ => None,
    }
}

fn start_state(s: ProvisionState) -> bool {
    matches!(
        s,
        ProvisionState::Inspecting | ProvisionState::Cleaning | ProvisionState::Deploying
    )
}

/// How a phase or step that led to state `s` ended: `failure` in a failed
/// state, `success` in the end state of a phase, else `interrupted` (a
/// deploy deleted while waiting for its agent).
fn result_in(s: ProvisionState) -> &'static str {
    match s {
        ProvisionState::InspectFailed
        | ProvisionState::CleanFailed
        | ProvisionState::DeployFailed => "failure",
        ProvisionState::Manageable | ProvisionState::Available | ProvisionState::Active => {
            "success"
        }
        // Still within a phase: the step before this one finished.
        s if phase_of(s).is_some() => "success",
        _ => "interrupted",
    }
}

/// The running step of a node: its phase and `interface.step`.
pub fn step_of(node: &Node) -> Option<(&'static str, String)> {
    let (phase, step) = if !node.deploy_step.is_empty() {
        ("deploy", &node.deploy_step)
    } else if !node.clean_step.is_empty() {
        ("clean", &node.clean_step)
    } else {
        return None;
    };
    Some((phase, step_label(step)))
}

/// `interface.step`, or `other` for names that are not plain identifiers
/// (steps of manual cleaning come from the API).
fn step_label(step: &Map<String, Value>) -> String {
    let part = |k: &str| step.get(k).and_then(Value::as_str).unwrap_or_default();
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let (interface, name) = (part("interface"), part("step"));
    if ident(interface) && ident(name) {
        format!("{interface}.{name}")
    } else {
        "other".to_owned()
    }
}

fn parse_time(iso: Option<&str>) -> Option<SystemTime> {
    let t =
        time::OffsetDateTime::parse(iso?, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))
}

fn since(at: SystemTime, now: SystemTime) -> f64 {
    now.duration_since(at).unwrap_or_default().as_secs_f64()
}

/// Records the phase and step starts and ends that the change from
/// `before` to `after` (the same node) makes.
pub fn node_changed(before: &Node, after: &Node) {
    let now = SystemTime::now();
    let result = result_in(after.provision_state);
    let mut s = starts();
    let uuid = &after.uuid;
    let (pb, pa) = (
        phase_of(before.provision_state),
        phase_of(after.provision_state),
    );
    // A change the conductor writes in a phase's start state, which the API
    // entered (no state goes back to a start state: this is the phase's
    // first run, and any older start of the node is stale).
    if let Some(p) = pb
        && start_state(before.provision_state)
        && let Some(at) = parse_time(before.provision_updated_at.as_deref())
    {
        s.phases.insert(
            uuid.clone(),
            Started {
                what: (p, None),
                at,
            },
        );
    }
    if pb != pa {
        if let Some(p) = pb
            && let Some(st) = s.phases.remove(uuid)
            && st.what.0 == p
        {
            global()
                .phase_seconds
                .get_or_create(&PhaseLabels { phase: p, result })
                .observe(since(st.at, now));
        }
        if let Some(p) = pa {
            let at = parse_time(after.provision_updated_at.as_deref()).unwrap_or(now);
            s.phases.insert(
                uuid.clone(),
                Started {
                    what: (p, None),
                    at,
                },
            );
        }
    }
    let (sb, sa) = (step_of(before), step_of(after));
    if sb != sa {
        if let Some((phase, step)) = sb
            && let Some(st) = s.steps.remove(uuid)
            && st.what == (phase, Some(step.clone()))
        {
            global()
                .step_seconds
                .get_or_create(&StepLabels {
                    phase,
                    step,
                    result,
                })
                .observe(since(st.at, now));
        }
        if let Some((phase, step)) = sa {
            s.steps.insert(
                uuid.clone(),
                Started {
                    what: (phase, Some(step)),
                    at: now,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scrape(name: &str, with: &[(&str, &str)]) -> f64 {
        super::super::text::sum(&super::super::text::parse(&global().encode()), name, with)
    }

    fn count(phase: &str, result: &str) -> f64 {
        scrape(
            "ingot_phase_duration_seconds_count",
            &[("phase", phase), ("result", result)],
        )
    }

    #[test]
    fn a_deploy_is_timed_from_its_start_state_to_its_end() {
        let mut n = Node {
            uuid: "metrics-phase-test".into(),
            provision_state: ProvisionState::Deploying,
            provision_updated_at: Some("2020-01-01T00:00:00.000000+00:00".into()),
            ..Node::default()
        };
        let before_count = count("deploy", "success");
        let mut wait = n.clone();
        wait.set_provision_state(ProvisionState::WaitCallBack, None);
        wait.deploy_step = json!({"interface": "deploy", "step": "write_image"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        node_changed(&n, &wait);
        assert_eq!(count("deploy", "success"), before_count, "still deploying");
        n = wait.clone();
        let mut active = n.clone();
        active.set_provision_state(ProvisionState::Active, None);
        active.deploy_step = Map::new();
        node_changed(&n, &active);
        assert_eq!(count("deploy", "success"), before_count + 1.0);
        let sum = scrape(
            "ingot_phase_duration_seconds_sum",
            &[("phase", "deploy"), ("result", "success")],
        );
        assert!(sum > 1e8, "timed from 2020: {sum}");
        let steps = scrape(
            "ingot_step_duration_seconds_count",
            &[("step", "deploy.write_image"), ("result", "success")],
        );
        assert!(steps >= 1.0, "{steps}");
    }

    #[test]
    fn failed_and_interrupted_phases_are_told_apart() {
        assert_eq!(result_in(ProvisionState::CleanFailed), "failure");
        assert_eq!(result_in(ProvisionState::Available), "success");
        assert_eq!(result_in(ProvisionState::CleanWait), "success");
        assert_eq!(result_in(ProvisionState::Deleting), "interrupted");
        let clean = Node {
            uuid: "metrics-clean-test".into(),
            provision_state: ProvisionState::CleanWait,
            ..Node::default()
        };
        let started = Node {
            provision_state: ProvisionState::Cleaning,
            provision_updated_at: Some("2020-01-01T00:00:00+00:00".into()),
            ..clean.clone()
        };
        let before = count("clean", "failure");
        node_changed(&started, &clean);
        let mut failed = clean.clone();
        failed.set_provision_state(ProvisionState::CleanFailed, None);
        node_changed(&clean, &failed);
        assert_eq!(count("clean", "failure"), before + 1.0);
    }

    #[test]
    fn step_names_are_bounded() {
        let m = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            step_label(&m(json!({"interface": "deploy", "step": "erase_devices"}))),
            "deploy.erase_devices"
        );
        assert_eq!(
            step_label(&m(json!({"interface": "raid", "step": "x\"} 1"}))),
            "other"
        );
    }
}
