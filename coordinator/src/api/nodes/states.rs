//! `GET /v1/nodes/{ident}/states`: the power, provision, console, RAID
//! and boot-mode state of a node.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::api::{ApiError, Req, accepted_at, json_response, versions};
use crate::model::Node;

/// `GET /v1/nodes/{ident}/states`
pub async fn get(req: Req) -> Result<Response, ApiError> {
    let n = req.node().await?;
    let mut doc = Map::new();
    if let Value::Object(m) = json!({
            "power_state": n.power_state,
            "target_power_state": n.target_power_state,
            "provision_state": n.provision_state,
            "target_provision_state": n.target_provision_state,
            "provision_updated_at": n.provision_updated_at,
            "last_error": n.last_error,
            "console_enabled": n.console_enabled,
            "raid_config": n.raid_config,
            "target_raid_config": n.target_raid_config,
            "boot_mode": n.boot_mode,
            "secure_boot": n.secure_boot,
    }) {
        doc = m;
    }
    versions::hide(&mut doc, versions::STATES_FIELDS, req.ctx.version);
    versions::older_state_names(&mut doc, req.ctx.version);
    Ok(json_response(StatusCode::OK, &Value::Object(doc)))
}

/// The `target` of a state change request (provision or power).
pub fn target(body: &Map<String, Value>) -> Result<&str, ApiError> {
    body.get("target").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute target. Value: 'target' is a required string",
        )
    })
}

/// The 202 of a state change recorded on `node`: wakes the conductor for
/// it and points at the node's states.
pub fn started(req: &Req, node: &Node) -> Response {
    req.st.conductor.kick(node);
    accepted_at(&req.ctx, &format!("/v1/nodes/{}/states", node.uuid))
}
