//! `PUT /v1/nodes/{ident}/states/power`: records a power intent and wakes
//! the conductor; answers 202 at once.

use axum::body::Bytes;
use axum::response::Response;

use super::{states, update_unlocked};
use crate::api::{ApiError, Req, parse_object};
use crate::model::node::PowerIntent;
use crate::power::PowerAction;

/// `PUT /v1/nodes/{ident}/states/power`
pub async fn set(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "body", &["target", "timeout"])?;
    let target = states::target(&obj)?.to_owned();
    let action = PowerAction::parse(&target).ok_or_else(|| {
        ApiError::bad_request(format!("Invalid input for field/attribute target. Value: '{target}'. Value should be one of: power on, power off, rebooting, soft power off, soft rebooting"))
    })?;
    if matches!(action, PowerAction::SoftOff | PowerAction::SoftReboot) {
        req.ctx
            .require(27, "Soft power actions need API version 1.27 or later.")?;
    }
    if let Some(t) = obj.get("timeout") {
        req.ctx
            .require(27, "The timeout needs API version 1.27 or later.")?;
        if t.as_u64().is_none_or(|t| t == 0) {
            return Err(ApiError::bad_request(format!(
                "Invalid timeout value {t}: must be a positive integer"
            )));
        }
    }
    let node = req.node().await?;
    req.power_driver(&node)?
        .validate(&node.driver_info)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let updated = update_unlocked(&req.st, &node.uuid, |n| {
        if n.provision_state.is_transient() || n.power_intent.is_some() {
            return Err(ApiError::conflict(format!(
                "Node {} is locked by host {}, please retry after the current operation is completed.",
                n.uuid,
                n.conductor.clone().unwrap_or_default()
            )));
        }
        n.power_intent = Some(PowerIntent { target: action });
        // As Ironic: the state the action leads to (`power on` for reboots).
        n.target_power_state = Some(action.resulting_state());
        // A new power action clears the last error, except in a failure
        // state, whose error says why the node is there (Ironic).
        if !n.provision_state.is_failure() {
            n.last_error = None;
        }
        Ok(())
    })
    .await?;
    super::history::record_request(
        &req,
        &updated,
        &action.to_string(),
        format!("Power action {action} requested"),
    )
    .await;
    Ok(states::started(&req, &updated))
}
