//! What the conductor writes into the node history (docs/operations.md):
//! every change of provision state and every failure, each deploy and
//! clean step from its start to its end with its result, next to the
//! journal of actions ([`Conductor::journaled`]) and takeovers. Entries are
//! written only while this coordinator still holds the node's fencing
//! token, and each node keeps at most `[conductor]
//! node_history_max_entries` of them.

use serde_json::{Map, Value};
use tracing::warn;

use super::Conductor;
use crate::db::NewEvent;
use crate::model::Node;

/// A step document's `interface.step`, if it holds one.
pub(super) fn step_id(step: &Map<String, Value>) -> Option<String> {
    let name = step.get("step")?.as_str()?;
    let iface = step
        .get("interface")
        .and_then(Value::as_str)
        .unwrap_or("deploy");
    Some(format!("{iface}.{name}"))
}

/// Milliseconds between two of our timestamps (`now_iso`), when both parse.
pub(super) fn ms_between(from: &str, to: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &Rfc3339)
            .or_else(|_| time::OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
            .ok()
    };
    let d = parse(to)? - parse(from)?;
    i64::try_from(d.whole_milliseconds()).ok()
}

/// The two kinds of steps the history follows, with their documents.
const STEP_KINDS: [(&str, &str); 2] = [("deploy_step", "Deploy"), ("clean_step", "Clean")];

fn step_doc<'a>(n: &'a Node, kind: &str) -> &'a Map<String, Value> {
    if kind == "deploy_step" {
        &n.deploy_step
    } else {
        &n.clean_step
    }
}

impl Conductor {
    /// A history entry about `node` by this coordinator, under the fencing
    /// token it holds.
    pub(super) fn event<'a>(
        &'a self,
        node: &'a Node,
        kind: &'a str,
        detail: &'a str,
    ) -> NewEvent<'a> {
        NewEvent {
            node_uuid: &node.uuid,
            conductor: self.name(),
            fence: self.held().get(&node.uuid).copied().unwrap_or(node.fence),
            kind,
            detail,
            severity: "INFO",
            state: Some(node.provision_state.as_str().to_owned()),
            target_state: node.target_provision_state.map(|t| t.as_str().to_owned()),
            ..NewEvent::default()
        }
    }

    /// Records an event that is over (fenced), then bounds the node's
    /// history. Failures are logged: the history never stops the work.
    pub(super) async fn record(&self, e: NewEvent<'_>) {
        match self.db().record_event(&e, true).await {
            Ok(true) => self.prune(e.node_uuid).await,
            Ok(false) => {}
            Err(err) => {
                warn!(node = %e.node_uuid, error = %err, "recording the node history failed")
            }
        }
    }

    /// Keeps the node's history within `node_history_max_entries`.
    pub(super) async fn prune(&self, uuid: &str) {
        let max = self.config().conductor.node_history_max_entries;
        if let Err(e) = self.db().prune_history(uuid, max).await {
            warn!(node = %uuid, error = %e, "pruning the node history failed");
        }
    }

    /// Records what changed from `before` to `after` in one write of the
    /// conductor: the steps that ended and started, the change of
    /// provision state, and `failure` (an operation that failed, with its
    /// reason).
    pub(super) async fn record_changes(&self, before: &Node, after: &Node, failure: Option<&str>) {
        for (kind, phase) in STEP_KINDS {
            // The same step whatever its progress says.
            let without_progress = |n: &Node| {
                let mut d = step_doc(n, kind).clone();
                d.remove(super::progress::KEY);
                d
            };
            let (old, new) = (without_progress(before), without_progress(after));
            if old == new {
                continue;
            }
            let (old, new) = (&old, &new);
            if let Some(id) = step_id(old) {
                self.end_step(after, kind, phase, &id, failure).await;
            }
            if let Some(id) = step_id(new) {
                let mut e = self.event(after, kind, &id);
                e.event = format!("{phase} step {id} started");
                match self.db().journal_begin(&e).await {
                    Ok(_) => self.prune(&after.uuid).await,
                    Err(err) => {
                        warn!(node = %after.uuid, error = %err, "recording the node history failed")
                    }
                }
            }
        }
        if before.provision_state != after.provision_state || failure.is_some() {
            let duration = before
                .provision_updated_at
                .as_deref()
                .zip(after.provision_updated_at.as_deref())
                .and_then(|(from, to)| ms_between(from, to));
            let mut e = self.event(after, "provisioning", after.provision_state.as_str());
            e.event = match failure {
                Some(reason) => reason.to_owned(),
                None => format!(
                    "Provision state changed from {} to {}",
                    before.provision_state, after.provision_state
                ),
            };
            if failure.is_some() {
                e.severity = "ERROR";
            }
            e.duration_ms = duration;
            self.record(e).await;
        }
    }

    /// Ends the step `id` in the history: the entry this coordinator
    /// opened at its start, or a new one when another coordinator started
    /// it.
    async fn end_step(
        &self,
        node: &Node,
        kind: &str,
        phase: &str,
        id: &str,
        failure: Option<&str>,
    ) {
        let (result, severity) = match failure {
            Some(reason) => (format!("failed: {reason}"), "ERROR"),
            None => ("succeeded".to_owned(), "INFO"),
        };
        let text = format!(
            "{phase} step {id} {}",
            if failure.is_some() {
                "failed"
            } else {
                "succeeded"
            }
        );
        let open = self
            .db()
            .open_event(&node.uuid, self.name(), kind, id)
            .await;
        let done = match open {
            Ok(Some(row)) => {
                self.db()
                    .journal_end(&row, &result, severity, Some(&text))
                    .await
            }
            Ok(None) => {
                let mut e = self.event(node, kind, id);
                e.event = text;
                e.severity = severity;
                e.result = Some(result);
                self.record(e).await;
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            warn!(node = %node.uuid, error = %e, "recording the node history failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_durations_read_from_the_node() {
        let step = serde_json::json!({"interface": "deploy", "step": "write_image"});
        assert_eq!(
            step_id(step.as_object().unwrap()).as_deref(),
            Some("deploy.write_image")
        );
        assert_eq!(step_id(&Map::new()), None);
        assert_eq!(
            ms_between(
                "2026-01-01T00:00:00.000000+00:00",
                "2026-01-01T00:01:01.500000+00:00"
            ),
            Some(61_500)
        );
        assert_eq!(ms_between("x", "2026-01-01T00:00:00+00:00"), None);
    }
}
