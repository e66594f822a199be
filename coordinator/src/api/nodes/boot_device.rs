//! `/v1/nodes/{ident}/management/boot_device`: the boot device through the
//! node's management interface (`noop` and `fake` answered here).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::find;
use crate::api::{ApiError, AppState, empty, json_response, parse_object};
use crate::power::BOOT_DEVICES;

/// `GET /v1/nodes/{ident}/management/boot_device`
pub async fn get(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    match node.management_interface.as_deref() {
        Some("noop") => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"boot_device": null, "persistent": null}),
            ));
        }
        // Ironic's fake management always answers PXE.
        Some("fake") => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"boot_device": "pxe", "persistent": false}),
            ));
        }
        _ => {}
    }
    let driver = st
        .conductor
        .power_driver(&node)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (dev, persistent) = driver
        .get_boot_device(&crate::conductor::Conductor::power_target(&node))
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"boot_device": dev, "persistent": persistent}),
    ))
}

/// `GET /v1/nodes/{ident}/management/boot_device/supported`
pub async fn supported(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    let list = if node.management_interface.as_deref() == Some("noop") {
        Vec::new()
    } else if node.management_interface.as_deref() == Some("fake") {
        vec!["pxe"]
    } else {
        st.conductor
            .power_driver(&node)
            .map(|d| d.supported_boot_devices())
            .unwrap_or_default()
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"supported_boot_devices": list}),
    ))
}

/// `PUT /v1/nodes/{ident}/management/boot_device`
pub async fn set(
    State(st): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "body", &["boot_device", "persistent"])?;
    let dev = obj
        .get("boot_device")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'boot_device' is a required string"))?;
    let persistent = match obj.get("persistent") {
        None | Some(Value::Null) => false,
        Some(v) => crate::model::json_bool(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid persistent value {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            ))
        })?,
    };
    let node = find(&st, &ident).await?;
    if let Some(host) = &node.reservation {
        return Err(ApiError::node_locked(&node.uuid, host));
    }
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
    let driver = st
        .conductor
        .power_driver(&node)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !driver.supported_boot_devices().contains(&dev) {
        return Err(ApiError::bad_request(format!(
            "Invalid boot device {dev} specified for this node's management interface."
        )));
    }
    driver
        .set_boot_device(
            &crate::conductor::Conductor::power_target(&node),
            dev,
            persistent,
        )
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(empty(StatusCode::NO_CONTENT))
}
