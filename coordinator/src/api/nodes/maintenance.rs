//! `/v1/nodes/{ident}/maintenance`: sets and clears maintenance mode.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::api::{ApiError, Req, empty, parse_object};

/// `PUT /v1/nodes/{ident}/maintenance`
pub async fn set(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_object(&body, "body", &["reason"])?
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    req.change_node(|n| {
        n.maintenance = true;
        n.maintenance_reason = reason.clone();
        Ok(())
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `DELETE /v1/nodes/{ident}/maintenance`
pub async fn unset(req: Req) -> Result<Response, ApiError> {
    req.change_node(|n| {
        n.maintenance = false;
        n.maintenance_reason = None;
        n.fault = None;
        Ok(())
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED))
}
