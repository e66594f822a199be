//! The node's history (`GET /v1/nodes/{id}/history`, Ironic API 1.78) read
//! once at the end of the lifecycle and checked against what the lab drove:
//! the provision states the lab waited for appear as recorded changes, in
//! order, the deploy's image write is recorded as a step that succeeded, and
//! nothing is recorded as an error.

use anyhow::{Result, ensure};
use serde::Serialize;
use serde_json::Value;

use crate::api::Api;

/// What the history showed (kept in `report.json`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct HistoryEvidence {
    /// Entries in the node's history.
    pub entries: usize,
    /// The provision states the recorded changes led to, in order.
    pub states: Vec<String>,
    /// Entries of severity `ERROR`.
    pub errors: usize,
    /// The recorded event of the image write.
    pub write_image: String,
}

/// The state a "Provision state changed from A to B" event led to.
fn changed_to(event: &str) -> Option<&str> {
    event
        .strip_prefix("Provision state changed from ")?
        .rsplit_once(" to ")
        .map(|(_, to)| to.trim())
}

/// Whether `want` appears in `seen` in this order (other states between).
fn in_order(seen: &[String], want: &[&str]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|w| it.any(|s| s == w))
}

/// States the conductor's own changes lead to in a lifecycle of the lab, in
/// order (changes an API request makes, such as `available` → `deploying`,
/// are recorded as the request).
pub const LIFECYCLE: [&str; 5] = ["manageable", "available", "active", "cleaning", "available"];

/// Reads the history of `node` and checks it against the lifecycle.
pub async fn check(api: &Api, node: &str) -> Result<HistoryEvidence> {
    let body = api
        .get(&format!("/v1/nodes/{node}/history?detail=true"))
        .await?;
    let entries: Vec<Value> = body["history"].as_array().cloned().unwrap_or_default();
    let mut ev = HistoryEvidence {
        entries: entries.len(),
        ..HistoryEvidence::default()
    };
    for e in &entries {
        let event = e["event"].as_str().unwrap_or("");
        if let Some(to) = changed_to(event) {
            ev.states.push(to.to_owned());
        }
        if e["severity"].as_str() == Some("ERROR") {
            ev.errors += 1;
        }
        if event.contains("deploy.write_image") && event.contains("succeeded") {
            ev.write_image = event.to_owned();
        }
    }
    ensure!(
        in_order(&ev.states, &LIFECYCLE),
        "the node history lacks the lifecycle's states {LIFECYCLE:?} in order: {:?}",
        ev.states
    );
    ensure!(
        !ev.write_image.is_empty(),
        "the node history has no successful deploy.write_image step"
    );
    ensure!(ev.errors == 0, "the node history has {} errors", ev.errors);
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_changes() {
        assert_eq!(
            changed_to("Provision state changed from wait call-back to deploying"),
            Some("deploying")
        );
        assert_eq!(changed_to("Power action power on succeeded"), None);
    }

    #[test]
    fn lifecycle_in_order_with_others_between() {
        let seen: Vec<String> = [
            "manageable",
            "inspect wait",
            "manageable",
            "clean wait",
            "available",
            "wait call-back",
            "active",
            "cleaning",
            "clean wait",
            "available",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert!(in_order(&seen, &LIFECYCLE));
        assert!(!in_order(&seen[..5], &LIFECYCLE));
    }
}
