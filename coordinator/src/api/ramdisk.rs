//! Ramdisk endpoints: `GET /v1/lookup`, `POST /v1/heartbeat/{node}` and
//! `POST /v1/continue_inspection`, as ironic-python-agent calls them.
//!
//! The agent token is handed out once per operation, at the first lookup
//! (later lookups get `******`), and wiped when the operation ends. With fast
//! track (`[deploy] fast_track`, per node `driver_info.fast_track`) the token
//! is kept after inspection and cleaning: lookups and heartbeats are also
//! accepted in enroll, manageable and available, where a heartbeat only
//! records the agent (URL, version, time, CA) for the next operation.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::nodes::check_unlocked;
use super::{ApiError, AppState, Ctx, Req, empty, json_response, parse_object};
use crate::model::node::MASK;
use crate::model::port::normalize_mac;
use crate::model::{Node, now_iso, now_ms};

/// A fresh agent token: 32 bytes from two v4 UUIDs (244 random bits),
/// URL-safe base64 without padding (43 characters, like Ironic's).
fn new_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn lookup_not_found() -> ApiError {
    ApiError::not_found("Resource could not be found.")
}

async fn node_by_macs(st: &AppState, macs: &[String]) -> Result<Option<Node>, ApiError> {
    for mac in macs {
        if let Some(port) = st.conductor.db().get_port_by_address(mac).await? {
            if let Some((node, _)) = st.conductor.db().get_node(&port.node_uuid).await? {
                return Ok(Some(node));
            }
        }
    }
    Ok(None)
}

/// The `{node, config}` answer, with `token` in clear or masked.
fn lookup_body(st: &AppState, ctx: &Ctx, node: &Node, token: &str) -> Value {
    let api = node.to_api(&ctx.base);
    let pick = |k: &str| api.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "node": {
            "uuid": node.uuid,
            "properties": pick("properties"),
            "instance_info": pick("instance_info"),
            "driver_internal_info": pick("driver_internal_info"),
            "links": pick("links"),
        },
        "config": {
            "heartbeat_timeout": st.conductor.config().heartbeat_timeout,
            "agent_token": token,
            "agent_token_required": true,
            "agent_md5_checksum_enable": false,
            "disable_deep_image_inspection": false,
            "permitted_image_formats": ["raw", "gpt", "qcow2", "iso"],
            "agent_skip_bmc_detect": node.driver == "redfish",
            "enable_bios_bootloader_install": false,
            "tls_min_version": "1.2",
            "tls_cipher_suites": null,
            "metrics": {"backend": "noop", "prepend_host": false, "prepend_uuid": false, "prepend_host_reverse": true, "global_prefix": null},
            "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
            "agent_containers": {"allow_arbitrary_containers": false, "allowed_containers": [], "container_steps_file": "", "runner": "podman", "pull_options": "", "run_options": ""},
        }
    })
}

/// Gives the node a token if it has none; returns the token to show.
async fn issue_token(st: &AppState, node: &Node) -> Result<(Node, String), ApiError> {
    let fresh = new_token();
    let mut issued = false;
    let updated = st
        .conductor
        .db()
        .update_node(&node.uuid, |n| {
            issued = false;
            check_unlocked(n)?;
            if !st.conductor.lookup_allowed(n) {
                return Err(lookup_not_found());
            }
            if n.agent_token().is_none() {
                n.driver_internal_info
                    .insert("agent_secret_token".into(), json!(fresh));
                issued = true;
            }
            Ok(())
        })
        .await?;
    let shown = if issued { fresh } else { MASK.to_owned() };
    Ok((updated, shown))
}

/// A heartbeat in a stable state (enroll, manageable, available) of a node
/// without fast track: the agent should not be running any more (its token
/// is normally wiped when the operation ends, so this is only seen when fast
/// track was turned off meanwhile). 400 and a message that names the token,
/// as for a wiped one, so that the agent looks itself up again.
fn not_kept(n: &Node) -> ApiError {
    ApiError::bad_request(format!(
        "Heartbeat refused: node {} is in state \"{}\" and fast track is off for it, so its agent token is no longer valid.",
        n.uuid, n.provision_state
    ))
}

/// `GET /v1/lookup?addresses=<mac>,<mac>[&node_uuid=<uuid>]`
pub async fn lookup(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    ctx.require(22, "Lookup needs API version 1.22 or later.")?;
    let macs: Vec<String> = ctx
        .param("addresses")
        .unwrap_or("")
        .split(',')
        .filter_map(normalize_mac)
        .collect();
    let node_uuid = ctx.param("node_uuid").filter(|s| !s.is_empty());
    if macs.is_empty() && node_uuid.is_none() {
        return Err(ApiError::bad_request(
            "Incomplete lookup request: a valid MAC address or the node UUID is required.",
        ));
    }
    let node = match node_uuid {
        Some(u) => st.conductor.db().get_node(u).await?.map(|(n, _)| n),
        None => node_by_macs(&st, &macs).await?,
    };
    let Some(node) = node.filter(|n| st.conductor.lookup_allowed(n)) else {
        return Err(lookup_not_found());
    };
    let (node, token) = issue_token(&st, &node).await?;
    tracing::info!(node = %node.uuid, "agent looked up");
    Ok(json_response(
        StatusCode::OK,
        &lookup_body(&st, &ctx, &node, &token),
    ))
}

/// `POST /v1/heartbeat/{node}`: records the agent and wakes the conductor.
pub async fn heartbeat(req: Req, body: Bytes) -> Result<Response, ApiError> {
    req.ctx
        .require(22, "Heartbeats need API version 1.22 or later.")?;
    let obj = parse_object(
        &body,
        "heartbeat",
        &[
            "callback_url",
            "agent_token",
            "agent_version",
            "agent_verify_ca",
            "agent_status",
            "agent_status_message",
        ],
    )?;
    let callback = obj
        .get("callback_url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !(callback.starts_with("http://") || callback.starts_with("https://")) {
        return Err(ApiError::bad_request(format!(
            "Invalid callback_url {callback:?}"
        )));
    }
    let Some(token) = obj
        .get("agent_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(ApiError::bad_request(
            "Agent token is required for heartbeat processing.",
        ));
    };
    let version = obj.get("agent_version").cloned().unwrap_or(Value::Null);
    let ca = obj
        .get("agent_verify_ca")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let st = &req.st;
    let node = req.node().await?;
    let updated = st
        .conductor
        .db()
        .update_node(&node.uuid, |n| {
            if n.agent_token() != Some(token.as_str()) {
                return Err(ApiError::bad_request(
                    "Invalid or missing agent token received.",
                ));
            }
            if n.provision_state.keeps_agent() && !st.conductor.fast_track_enabled(n) {
                return Err(not_kept(n));
            }
            if let Some(old) = n.agent_url() {
                if old != callback && n.driver_internal_info.contains_key("agent_command_id") {
                    return Err(ApiError::bad_request(
                        "Detected change in ramdisk provided \"callback_url\"",
                    ));
                }
            }
            n.driver_internal_info
                .insert("agent_url".into(), json!(callback));
            n.driver_internal_info
                .insert("agent_version".into(), version.clone());
            n.driver_internal_info
                .insert("agent_last_heartbeat".into(), json!(now_iso()));
            match &ca {
                Some(c) => {
                    n.driver_internal_info
                        .insert("agent_verify_ca".into(), json!(c));
                }
                None => {
                    n.driver_internal_info.remove("agent_verify_ca");
                }
            }
            n.progress_ms = now_ms();
            Ok(())
        })
        .await?;
    if node.agent_url() != Some(callback.as_str()) {
        tracing::info!(node = %updated.uuid, agent_url = %callback, verify_ca = ca.is_some(), "agent heartbeat from a new URL");
    } else {
        tracing::debug!(node = %updated.uuid, "heartbeat");
    }
    st.conductor.kick(&updated);
    Ok(empty(StatusCode::ACCEPTED))
}

/// `POST /v1/continue_inspection`: IPA's inspection callback with the inventory.
pub async fn continue_inspection(
    State(st): State<AppState>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Value::Object(data) = super::parse_json(&body)? else {
        return Err(ApiError::bad_request(
            "The inspection data must be an object.",
        ));
    };
    let Some(inventory) = data.get("inventory").filter(|i| i.is_object()).cloned() else {
        return Err(ApiError::bad_request(
            "The inspection data needs an 'inventory' object.",
        ));
    };
    let macs: Vec<String> = inventory
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|i| i.get("mac_address").and_then(Value::as_str))
                .filter_map(normalize_mac)
                .collect()
        })
        .unwrap_or_default();
    let node = match data.get("node_uuid").and_then(Value::as_str) {
        Some(u) => st.conductor.db().get_node(u).await?.map(|(n, _)| n),
        None => node_by_macs(&st, &macs).await?,
    };
    let Some(node) = node else {
        return Err(lookup_not_found());
    };
    if !st
        .conductor
        .finish_inspection(&node.uuid, inventory)
        .await?
    {
        return Err(ApiError::conflict(format!(
            "Node {} is not waiting for inspection data.",
            node.uuid
        )));
    }
    let (node, _) = st
        .conductor
        .db()
        .get_node(&node.uuid)
        .await?
        .ok_or_else(lookup_not_found)?;
    let mut body = lookup_body(&st, &ctx, &node, MASK);
    if let Value::Object(m) = &mut body {
        m.insert("uuid".into(), json!(node.uuid));
    }
    Ok(json_response(StatusCode::OK, &body))
}
