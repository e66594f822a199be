//! `GET /v1/nodes/{ident}/states`: the power, provision, console, RAID
//! and boot-mode state of a node.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::find;
use crate::api::{ApiError, AppState, Ctx, json_response, versions};

/// `GET /v1/nodes/{ident}/states`
pub async fn get(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let n = find(&st, &ident).await?;
    let mut doc = serde_json::Map::new();
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
    versions::hide(&mut doc, versions::STATES_FIELDS, ctx.version);
    versions::older_state_names(&mut doc, ctx.version);
    Ok(json_response(StatusCode::OK, &Value::Object(doc)))
}
