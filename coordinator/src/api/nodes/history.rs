//! `GET /v1/nodes/{ident}/history` and `/history/{event}` (1.78): the
//! node's history as Ironic serves it. The list shows `uuid`, `created_at`,
//! `severity` and `event` (cut to 255 characters); with `?detail=True`,
//! and for one entry, also `event_type`, `conductor` and `user`, `project`
//! from 1.113, and `state`, `target_provision_state` and
//! `duration_seconds` from 1.115. Below 1.78 the paths are 404.

use axum::extract::Path;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::api::{ApiError, Ctx, Req, collection, json_ok};
use crate::db::{HistoryEntry, NewEvent, REQUEST_KIND};
use crate::model::Node;

/// The fields of a listed entry.
const STANDARD: [&str; 4] = ["uuid", "created_at", "severity", "event"];

/// The fields of a detailed entry, each with the version that added it.
const DETAIL: [(&str, u32); 11] = [
    ("uuid", 78),
    ("created_at", 78),
    ("severity", 78),
    ("event_type", 78),
    ("event", 78),
    ("conductor", 78),
    ("user", 78),
    ("project", 113),
    ("state", 115),
    ("target_provision_state", 115),
    ("duration_seconds", 115),
];

/// Milliseconds since the epoch as Ironic's `created_at`.
fn iso_of_ms(ms: i64) -> Value {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => json!(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )),
        Err(_) => Value::Null,
    }
}

/// One entry as the API shows it.
fn to_api(ctx: &Ctx, node_uuid: &str, e: &HistoryEntry, detail: bool) -> Map<String, Value> {
    let mut all = Map::new();
    all.insert("uuid".into(), json!(e.id));
    all.insert("created_at".into(), iso_of_ms(e.started_ms));
    all.insert("severity".into(), json!(e.severity));
    all.insert("event_type".into(), json!(e.kind));
    let event = if detail || e.event.chars().count() <= 255 {
        e.event.clone()
    } else {
        let cut: String = e.event.chars().take(251).collect();
        format!("{cut}...")
    };
    let event = match (&e.result, e.finished_ms) {
        (None, None) if e.kind != REQUEST_KIND && e.kind != "provisioning" => {
            format!("{event} (in progress)")
        }
        _ => event,
    };
    all.insert("event".into(), json!(event));
    all.insert("conductor".into(), json!(e.conductor));
    all.insert("user".into(), json!(e.user));
    all.insert("project".into(), json!(e.project));
    all.insert("state".into(), json!(e.state));
    all.insert("target_provision_state".into(), json!(e.target_state));
    all.insert(
        "duration_seconds".into(),
        json!(e.duration_ms.map(|ms| ms / 1000)),
    );
    let mut out = if detail {
        DETAIL
            .iter()
            .filter(|(_, since)| ctx.version.at_least(*since))
            .filter_map(|(k, _)| all.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    } else {
        collection::project(all, &STANDARD.map(str::to_owned))
    };
    out.insert(
        "links".into(),
        json!([{
            "href": format!("{}/v1/nodes/{node_uuid}/history/{}", ctx.base, e.id),
            "rel": "self",
        }]),
    );
    out
}

/// `GET /v1/nodes/{ident}/history`: oldest first; `detail`, `limit`,
/// `marker`, `sort_key`, `sort_dir` as Ironic takes them.
pub async fn list(req: Req) -> Result<Response, ApiError> {
    let node = req.node().await?;
    let detail = req.ctx.bool_param("detail")?.unwrap_or(false);
    let entries = req.st.conductor.db().node_history(&node.uuid).await?;
    let items = entries
        .iter()
        .map(|e| to_api(&req.ctx, &node.uuid, e, detail))
        .collect();
    let known: Vec<String> = DETAIL.iter().map(|(k, _)| (*k).to_owned()).collect();
    let mut ctx = req.ctx.clone();
    // Ironic's history takes no `fields`; its default order is creation.
    ctx.query
        .retain(|(k, v)| k != "fields" && !(k == "sort_key" && v == "created_at"));
    let path = format!("/v1/nodes/{}/history", req.ident);
    json_ok(collection::page(
        &ctx, "history", &path, items, &known, None, false,
    )?)
}

/// `GET /v1/nodes/{ident}/history/{event}`: one entry, in detail.
pub async fn get(req: Req, Path((_, event)): Path<(String, String)>) -> Result<Response, ApiError> {
    let node = req.node().await?;
    let not_found =
        || ApiError::not_found(format!("Node history record {event} could not be found."));
    if !crate::model::is_uuid(&event) {
        return Err(not_found());
    }
    let entry = req
        .st
        .conductor
        .db()
        .history_entry(&node.uuid, &event)
        .await?
        .ok_or_else(not_found)?;
    json_ok(Value::Object(to_api(&req.ctx, &node.uuid, &entry, true)))
}

/// Records a caller's request on `node` in its history (unfenced: the
/// request is history whichever coordinator serves the API).
pub async fn record_request(req: &Req, node: &Node, detail: &str, text: String) {
    let caller = req.ctx.caller.as_ref();
    let project = caller.and_then(|c| match &c.scope {
        crate::auth::Scope::Project { id, .. } => Some(id.clone()),
        _ => None,
    });
    let db = req.st.conductor.db();
    let e = NewEvent {
        node_uuid: &node.uuid,
        conductor: req.st.conductor.name(),
        fence: node.fence,
        kind: REQUEST_KIND,
        detail,
        event: text,
        severity: "INFO",
        user: caller.map(|c| c.user.clone()),
        project,
        state: Some(node.provision_state.as_str().to_owned()),
        target_state: node.target_provision_state.map(|t| t.as_str().to_owned()),
        result: None,
        duration_ms: None,
    };
    let max = req.st.conductor.config().conductor.node_history_max_entries;
    let written = async {
        db.record_event(&e, false).await?;
        db.prune_history(&node.uuid, max).await
    }
    .await;
    if let Err(err) = written {
        tracing::warn!(node = %node.uuid, error = %err, "recording the node history failed");
    }
}
