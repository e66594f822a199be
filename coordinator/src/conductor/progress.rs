//! Live progress of the step the agent runs (docs/operations.md): the
//! agent reports its image write's counters on the running command's
//! status (`command_result.progress`), which the conductor reads on each
//! heartbeat anyway (no request of its own). The node shows them as
//! `ingot_progress` in `driver_internal_info` and in the `deploy_step` or
//! `clean_step` document: the step and its start, bytes done of the total,
//! the rate and an ETA. Bytes done never go down: when the agent starts
//! counting again (it retries with another URL) the node keeps the highest
//! value until the new count passes it.

use ingot_proto::agent::CommandResult;
use serde_json::{Map, Value, json};

use super::history::step_id;
use crate::model::{Node, now_iso};

/// The key, in `driver_internal_info` and the step document.
pub const KEY: &str = "ingot_progress";

/// What the agent reported: bytes done, total (0 when unknown), bytes
/// written to the disk, and the milliseconds it has been counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Report {
    done: u64,
    total: u64,
    written: u64,
    elapsed_ms: Option<u64>,
}

/// The progress in a running command's status, if it has some.
pub(super) fn report(cmd: &CommandResult) -> Option<Report> {
    let p = cmd.command_result.as_ref()?.get("progress")?;
    let n = |k: &str| p.get(k).and_then(Value::as_u64);
    Some(Report {
        done: n("received_bytes")?,
        total: n("source_bytes").unwrap_or(0),
        written: n("written_bytes").unwrap_or(0),
        elapsed_ms: n("elapsed_ms"),
    })
}

/// The step document the agent works on now: `deploy_step` while
/// deploying, else `clean_step`.
fn step_doc(n: &mut Node) -> &mut Map<String, Value> {
    if n.deploy_step.is_empty() {
        &mut n.clean_step
    } else {
        &mut n.deploy_step
    }
}

/// A step starts: its progress is its name and start, nothing done yet.
pub(super) fn start(n: &mut Node) {
    let step = step_doc(n);
    step.remove(KEY);
    let Some(id) = step_id(step) else {
        n.driver_internal_info.remove(KEY);
        return;
    };
    let doc = json!({"step": id, "started_at": now_iso()});
    step.insert(KEY.into(), doc.clone());
    n.driver_internal_info.insert(KEY.into(), doc);
}

/// The step is over (or the operation): no progress to show.
pub(super) fn clear(n: &mut Node) {
    n.driver_internal_info.remove(KEY);
    n.deploy_step.remove(KEY);
    n.clean_step.remove(KEY);
}

/// Writes the agent's `report` into the node's progress, at `now_ms`
/// (ms since the epoch). A pure function of the node: the database may run
/// it again.
pub(super) fn update(n: &mut Node, r: Report, now_ms: i64) {
    let previous = n
        .driver_internal_info
        .get(KEY)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let step = step_doc(n);
    let Some(id) = step_id(step) else {
        return;
    };
    let same_step = previous.get("step").and_then(Value::as_str) == Some(id.as_str());
    let prev = |k: &str| {
        same_step
            .then(|| previous.get(k).and_then(Value::as_u64))
            .flatten()
            .unwrap_or(0)
    };
    let started_at = previous
        .get("started_at")
        .filter(|_| same_step)
        .cloned()
        .unwrap_or_else(|| json!(now_iso()));
    let done = r.done.max(prev("bytes_done"));
    let written = r.written.max(prev("bytes_written"));
    let total = (r.total > 0).then_some(r.total.max(done));
    // The agent's own clock, else the step's.
    let elapsed_ms = r.elapsed_ms.or_else(|| {
        let start = started_at.as_str()?;
        let ms = super::history::ms_between(start, &now_iso())?;
        u64::try_from(ms).ok()
    });
    let rate = elapsed_ms
        .filter(|ms| *ms > 0)
        .map(|ms| r.done.saturating_mul(1000) / ms);
    let eta = match (total, rate) {
        (Some(t), Some(rate)) if rate > 0 => Some(t.saturating_sub(done) / rate),
        _ => None,
    };
    let percent = total.map(|t| {
        let p = if t == 0 {
            100.0
        } else {
            done as f64 * 100.0 / t as f64
        };
        (p * 10.0).round() / 10.0
    });
    let doc = json!({
        "step": id,
        "started_at": started_at,
        "bytes_done": done,
        "bytes_total": total,
        "bytes_written": written,
        "percent": percent,
        "rate_bytes_per_second": rate,
        "eta_seconds": eta,
        "updated_at": now_iso(),
        "updated_ms": now_ms,
    });
    step.insert(KEY.into(), doc.clone());
    n.driver_internal_info.insert(KEY.into(), doc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingot_proto::agent::CommandStatus;

    fn running(done: u64, total: u64, elapsed_ms: u64) -> CommandResult {
        CommandResult {
            id: "c".into(),
            command_name: "execute_deploy_step".into(),
            command_status: CommandStatus::Running,
            command_error: None,
            command_result: Some(json!({"progress": {
                "received_bytes": done, "source_bytes": total,
                "written_bytes": done, "elapsed_ms": elapsed_ms,
            }})),
        }
    }

    #[test]
    fn progress_has_rate_and_eta_and_never_goes_down() {
        let mut n = Node {
            deploy_step: json!({"interface": "deploy", "step": "write_image"})
                .as_object()
                .cloned()
                .unwrap(),
            ..Node::default()
        };
        start(&mut n);
        let started = n.driver_internal_info[KEY]["started_at"].clone();
        assert_eq!(n.deploy_step[KEY]["step"], "deploy.write_image");
        update(&mut n, report(&running(100, 400, 1000)).unwrap(), 1);
        let p = &n.driver_internal_info[KEY];
        assert_eq!(p["bytes_done"], 100);
        assert_eq!(p["bytes_total"], 400);
        assert_eq!(p["rate_bytes_per_second"], 100);
        assert_eq!(p["eta_seconds"], 3);
        assert_eq!(p["percent"], 25.0);
        assert_eq!(p["started_at"], started);
        assert_eq!(n.deploy_step[KEY], *p);
        // The agent counts again from zero (another URL): the node keeps 100.
        update(&mut n, report(&running(10, 400, 100)).unwrap(), 2);
        assert_eq!(n.driver_internal_info[KEY]["bytes_done"], 100);
        update(&mut n, report(&running(300, 400, 2000)).unwrap(), 3);
        assert_eq!(n.driver_internal_info[KEY]["bytes_done"], 300);
        clear(&mut n);
        assert!(!n.driver_internal_info.contains_key(KEY) && !n.deploy_step.contains_key(KEY));
        let no_progress = CommandResult {
            command_result: None,
            ..running(0, 0, 0)
        };
        assert_eq!(report(&no_progress), None);
    }
}
