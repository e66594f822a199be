//! `GET /v1/nodes/{ident}/inventory`: the inventory stored by the last
//! inspection.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::find;
use crate::api::{ApiError, AppState, json_response};

/// `GET /v1/nodes/{ident}/inventory`: the last inventory from inspection.
pub async fn get(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    match node.inventory {
        Some(inv) => Ok(json_response(
            StatusCode::OK,
            &json!({"inventory": inv, "plugin_data": {}}),
        )),
        None => Err(ApiError::not_found(format!(
            "Inventory for node {} could not be found.",
            node.uuid
        ))),
    }
}
