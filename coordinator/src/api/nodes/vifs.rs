//! `/v1/nodes/{ident}/vifs`: VIFs, recorded on the node's ports
//! (`internal_info.tenant_vif_port_id`), as Ironic's `noop` network does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::find;
use crate::api::{ApiError, AppState, Ctx, empty, json_response, parse_object};
use crate::model::now_iso;

/// `GET /v1/nodes/{ident}/vifs`
pub async fn list(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    let vifs: Vec<Value> = st
        .conductor
        .db()
        .list_ports(Some(&node.uuid))
        .await?
        .iter()
        .filter_map(|p| p.vif().map(|v| json!({"id": v})))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"vifs": vifs})))
}

/// `POST /v1/nodes/{ident}/vifs`
pub async fn attach(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !ctx.version.at_least(28) {
        return Err(ApiError::not_acceptable(
            "VIFs need API version 1.28 or later.",
        ));
    }
    let obj = parse_object(&body, "vif", &["id", "port_uuid", "portgroup_uuid"])?;
    let vif = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'id' is a required string"))?;
    let node = find(&st, &ident).await?;
    if let Some(host) = &node.reservation {
        return Err(ApiError::node_locked(&node.uuid, host));
    }
    let ports = st.conductor.db().list_ports(Some(&node.uuid)).await?;
    if let Some(p) = ports.iter().find(|p| p.vif() == Some(vif)) {
        return Err(ApiError::conflict(format!(
            "Unable to attach VIF {vif}, it is already attached to port {}.",
            p.uuid
        )));
    }
    let wanted = obj.get("port_uuid").and_then(Value::as_str);
    let mut free: Vec<_> = ports
        .into_iter()
        .filter(|p| p.vif().is_none() && wanted.is_none_or(|w| w == p.uuid))
        .collect();
    free.sort_by_key(|p| !p.pxe_enabled);
    let Some(mut port) = free.into_iter().next() else {
        return Err(ApiError::bad_request(format!(
            "Unable to attach VIF {vif}, not enough free physical ports."
        )));
    };
    port.internal_info
        .insert("tenant_vif_port_id".into(), json!(vif));
    port.updated_at = Some(now_iso());
    st.conductor.db().update_port(&port).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `DELETE /v1/nodes/{ident}/vifs/{vif}`
pub async fn detach(
    State(st): State<AppState>,
    Path((ident, vif)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    let ports = st.conductor.db().list_ports(Some(&node.uuid)).await?;
    let Some(mut port) = ports.into_iter().find(|p| p.vif() == Some(vif.as_str())) else {
        return Err(ApiError::bad_request(format!(
            "Unable to detach VIF {vif} from node {}: it is not attached.",
            node.uuid
        )));
    };
    port.internal_info.remove("tenant_vif_port_id");
    port.updated_at = Some(now_iso());
    st.conductor.db().update_port(&port).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
