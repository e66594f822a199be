//! `GET|PUT /v1/nodes/{ident}/states/console`: Ironic's console API over
//! [`crate::console`]. PUT `{"enabled": true|false}` answers 202 once the
//! endpoint is listening (or stopped); GET answers `console_enabled` and
//! `console_info` (`{"type": "socat", "url": "tcp://host:port", "token": …}`
//! while enabled, else null). Only this resource shows the token.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::find;
use crate::api::{ApiError, AppState, Ctx, accepted_at, json_response, parse_object};
use crate::console;
use crate::model::Node;

fn check_interface(n: &Node) -> Result<(), ApiError> {
    if console::supported(n) || console::is_fake(n) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "Driver {} does not support console (disabled or not implemented): node {} has console interface {}; use {}.",
        n.driver,
        n.uuid,
        n.console_interface.as_deref().unwrap_or("no-console"),
        console::SOCAT
    )))
}

/// The host part of the API address the client used (for an unspecified listen address).
fn host_of(ctx: &Ctx) -> String {
    let hostport = ctx.base.trim_start_matches("http://");
    match hostport.rfind(':') {
        Some(i) if !hostport.ends_with(']') => hostport[..i].to_owned(),
        _ => hostport.to_owned(),
    }
}

/// `GET /v1/nodes/{ident}/states/console`
pub async fn get(
    State(st): State<AppState>,
    Path(ident): Path<String>,
    ctx: Ctx,
) -> Result<Response, ApiError> {
    let n = find(&st, &ident).await?;
    check_interface(&n)?;
    let info = if n.console_enabled && console::is_fake(&n) {
        Some(json!({}))
    } else if n.console_enabled {
        st.conductor
            .consoles()
            .info(&n.uuid)
            .await
            .map(|i| i.to_json(&host_of(&ctx)))
    } else {
        None
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"console_enabled": n.console_enabled, "console_info": info}),
    ))
}

/// `PUT /v1/nodes/{ident}/states/console`
pub async fn set(
    State(st): State<AppState>,
    Path(ident): Path<String>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "console", &["enabled"])?;
    let enabled = match obj.get("enabled") {
        Some(v) => crate::model::json_bool(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for field/attribute enabled. Value: {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            ))
        })?,
        None => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute enabled. Mandatory field missing.",
            ));
        }
    };
    let n = find(&st, &ident).await?;
    check_interface(&n)?;
    if let Some(host) = &n.reservation {
        return Err(ApiError::node_locked(&n.uuid, host));
    }
    let consoles = st.conductor.consoles();
    if enabled && !console::is_fake(&n) {
        let cfg = console::console_bmc(&n).map_err(ApiError::bad_request)?;
        let bind = st.conductor.config().listen.ip();
        consoles
            .start(&n.uuid, cfg, bind)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    let recorded = st
        .conductor
        .db()
        .update_node(&n.uuid, |m| {
            if let Some(host) = &m.reservation {
                return Err(ApiError::node_locked(&m.uuid, host));
            }
            m.console_enabled = enabled;
            Ok(())
        })
        .await;
    if !enabled || recorded.is_err() {
        consoles.stop(&n.uuid).await;
    }
    recorded?;
    tracing::info!(node = %n.uuid, enabled, "console mode set");
    Ok(accepted_at(&format!(
        "{}/v1/nodes/{}/states/console",
        ctx.base, n.uuid
    )))
}
