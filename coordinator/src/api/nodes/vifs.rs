//! `/v1/nodes/{ident}/vifs`: VIFs, recorded on the node's ports
//! (`internal_info.tenant_vif_port_id`), as Ironic does. With a network
//! interface that switches VLANs (`neutron`, docs/network.md) a VIF is a
//! tenant network of `[networks]`, by name or `uuid`; anything else is 400.
//! Attaching only records: the conductor moves the switch ports (at the end
//! of a deploy, or at the next network sync of an active node).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::check_unlocked;
use crate::api::{ApiError, Req, empty, json_ok, parse_object};
use crate::model::{Port, now_iso};

/// `GET /v1/nodes/{ident}/vifs`
pub async fn list(req: Req) -> Result<Response, ApiError> {
    let node = req.node().await?;
    let vifs: Vec<Value> = req
        .st
        .conductor
        .db()
        .list_ports(Some(&node.uuid))
        .await?
        .iter()
        .filter_map(|p| p.vif().map(|v| json!({"id": v})))
        .collect();
    json_ok(json!({"vifs": vifs}))
}

/// `POST /v1/nodes/{ident}/vifs`
pub async fn attach(req: Req, body: Bytes) -> Result<Response, ApiError> {
    req.ctx
        .require(28, "VIFs need API version 1.28 or later.")?;
    let obj = parse_object(&body, "vif", &["id", "port_uuid", "portgroup_uuid"])?;
    let vif = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'id' is a required string"))?;
    let node = req.node().await?;
    check_unlocked(&node)?;
    if crate::network::tenancy::vlan_per_phase(&node) {
        crate::network::tenancy::resolve_vif(req.st.conductor.config(), vif)
            .map_err(|e| ApiError::bad_request(format!("Unable to attach VIF {vif}: {e}")))?;
    }
    let ports = req.st.conductor.db().list_ports(Some(&node.uuid)).await?;
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
    let Some(port) = free.into_iter().next() else {
        return Err(ApiError::bad_request(format!(
            "Unable to attach VIF {vif}, not enough free physical ports."
        )));
    };
    record(&req, port, Some(vif)).await
}

/// `DELETE /v1/nodes/{ident}/vifs/{vif}`
pub async fn detach(
    req: Req,
    Path((_, vif)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let node = req.node().await?;
    let ports = req.st.conductor.db().list_ports(Some(&node.uuid)).await?;
    let Some(port) = ports.into_iter().find(|p| p.vif() == Some(vif.as_str())) else {
        return Err(ApiError::bad_request(format!(
            "Unable to detach VIF {vif} from node {}: it is not attached.",
            node.uuid
        )));
    };
    record(&req, port, None).await
}

/// Records `vif` on `port` (or, with `None`, removes it); 204.
async fn record(req: &Req, mut port: Port, vif: Option<&str>) -> Result<Response, ApiError> {
    match vif {
        Some(v) => port
            .internal_info
            .insert("tenant_vif_port_id".into(), json!(v)),
        None => port.internal_info.remove("tenant_vif_port_id"),
    };
    port.updated_at = Some(now_iso());
    req.st.conductor.db().update_port(&port).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
