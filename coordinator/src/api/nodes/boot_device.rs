//! `/v1/nodes/{ident}/management/boot_device`: the boot device through the
//! node's management interface (`noop` and `fake` answered here).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::check_unlocked;
use crate::api::{ApiError, Req, body_bool, empty, json_ok, parse_object};
use crate::conductor::Conductor;
use crate::power::BOOT_DEVICES;

/// `GET /v1/nodes/{ident}/management/boot_device`
pub async fn get(req: Req) -> Result<Response, ApiError> {
    let node = req.node().await?;
    match node.management_interface.as_deref() {
        Some("noop") => return json_ok(json!({"boot_device": null, "persistent": null})),
        // Ironic's fake management always answers PXE.
        Some("fake") => return json_ok(json!({"boot_device": "pxe", "persistent": false})),
        _ => {}
    }
    let (dev, persistent) = req
        .power_driver(&node)?
        .get_boot_device(&Conductor::power_target(&node))
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    json_ok(json!({"boot_device": dev, "persistent": persistent}))
}

/// `GET /v1/nodes/{ident}/management/boot_device/supported`
pub async fn supported(req: Req) -> Result<Response, ApiError> {
    let node = req.node().await?;
    let list = match node.management_interface.as_deref() {
        Some("noop") => Vec::new(),
        Some("fake") => vec!["pxe"],
        _ => req
            .power_driver(&node)
            .map(|d| d.supported_boot_devices())
            .unwrap_or_default(),
    };
    json_ok(json!({"supported_boot_devices": list}))
}

/// `PUT /v1/nodes/{ident}/management/boot_device`
pub async fn set(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "body", &["boot_device", "persistent"])?;
    let dev = obj
        .get("boot_device")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'boot_device' is a required string"))?;
    let persistent = match obj.get("persistent") {
        None | Some(Value::Null) => false,
        Some(v) => body_bool(v, "Invalid persistent value")?,
    };
    let node = req.node().await?;
    check_unlocked(&node)?;
    if !BOOT_DEVICES.contains(&dev) {
        return Err(ApiError::bad_request(format!(
            "Invalid boot device {dev} specified, valid devices are: {}.",
            BOOT_DEVICES.join(", ")
        )));
    }
    match node.management_interface.as_deref() {
        Some("noop") => return Ok(empty(StatusCode::NO_CONTENT)),
        Some("fake") if dev == "pxe" => return Ok(empty(StatusCode::NO_CONTENT)),
        Some("fake") => {
            return Err(ApiError::bad_request(format!(
                "Invalid boot device {dev} specified."
            )));
        }
        _ => {}
    }
    let driver = req.power_driver(&node)?;
    if !driver.supported_boot_devices().contains(&dev) {
        return Err(ApiError::bad_request(format!(
            "Invalid boot device {dev} specified for this node's management interface."
        )));
    }
    driver
        .set_boot_device(&Conductor::power_target(&node), dev, persistent)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(empty(StatusCode::NO_CONTENT))
}
