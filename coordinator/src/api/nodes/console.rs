//! `GET|PUT /v1/nodes/{ident}/states/console`: Ironic's console API over
//! [`crate::console`]. PUT `{"enabled": true|false}` answers 202 once the
//! endpoint is listening (or stopped); GET answers `console_enabled` and
//! `console_info` (`{"type": "socat", "url": "tcp://host:port", "token": …}`
//! while enabled, else null). Only this resource shows the token.

use axum::body::Bytes;
use axum::response::Response;
use serde_json::json;

use super::{check_unlocked, update_unlocked};
use crate::api::{ApiError, Ctx, Req, accepted_at, body_bool, json_ok, parse_object};
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
pub async fn get(req: Req) -> Result<Response, ApiError> {
    let n = req.node().await?;
    check_interface(&n)?;
    let info = if n.console_enabled && console::is_fake(&n) {
        Some(json!({}))
    } else if n.console_enabled {
        // Here, or as recorded by the member of the group that runs it.
        match req.st.conductor.consoles().info(&n.uuid).await {
            Some(i) => Some(i.to_json(&host_of(&req.ctx))),
            None => n.driver_internal_info.get(console::INFO_KEY).cloned(),
        }
    } else {
        None
    };
    json_ok(json!({"console_enabled": n.console_enabled, "console_info": info}))
}

/// `PUT /v1/nodes/{ident}/states/console`
pub async fn set(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "console", &["enabled"])?;
    let enabled = match obj.get("enabled") {
        Some(v) => body_bool(v, "Invalid input for field/attribute enabled. Value:")?,
        None => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute enabled. Mandatory field missing.",
            ));
        }
    };
    let n = req.node().await?;
    check_interface(&n)?;
    check_unlocked(&n)?;
    let st = &req.st;
    let c = &st.conductor;
    let consoles = c.consoles();
    // In a group, the console runs on one member: where it was started
    // while that member lives, else here.
    let elsewhere = console::host_of(&n)
        .filter(|h| *h != c.name() && c.cluster().view().alive().contains(*h))
        .map(str::to_owned);
    let mut info = None;
    if enabled && !console::is_fake(&n) && elsewhere.is_none() {
        let cfg = console::console_bmc(&n).map_err(ApiError::bad_request)?;
        let bind = c.config().listen.ip();
        let i = consoles
            .start(&n.uuid, cfg, bind)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        info = Some(i.to_json(&c.console_host()));
    }
    let me = c.name().to_owned();
    let recorded = update_unlocked(st, &n.uuid, |m| {
        m.console_enabled = enabled;
        if !enabled {
            console::forget(m);
        } else if let Some(i) = &info {
            console::record(m, &me, i.clone());
        }
        Ok(())
    })
    .await;
    if !enabled || recorded.is_err() {
        consoles.stop(&n.uuid).await;
        if let Some(host) = &elsewhere {
            c.wake(host, &n.uuid);
        }
    }
    recorded?;
    tracing::info!(node = %n.uuid, enabled, "console mode set");
    Ok(accepted_at(
        &req.ctx,
        &format!("/v1/nodes/{}/states/console", n.uuid),
    ))
}
