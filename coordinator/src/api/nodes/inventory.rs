//! `GET /v1/nodes/{ident}/inventory`: the inventory stored by the last
//! inspection.

use axum::response::Response;
use serde_json::json;

use crate::api::{ApiError, Req, json_ok};

/// `GET /v1/nodes/{ident}/inventory`: the last inventory from inspection.
pub async fn get(req: Req) -> Result<Response, ApiError> {
    let node = req.node().await?;
    match node.inventory {
        Some(inv) => json_ok(json!({"inventory": inv, "plugin_data": {}})),
        None => Err(ApiError::not_found(format!(
            "Inventory for node {} could not be found.",
            node.uuid
        ))),
    }
}
