//! Node sub-resources: `states` (provision and power verbs), maintenance,
//! boot device, validate, VIFs, traits and the stored inventory.
//!
//! Provision and power requests record an intent in the same write as the
//! state change, then wake the conductor; they answer 202 at once.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::nodes::find;
use super::{ApiError, ApiVersion, AppState, Ctx, accepted_at, empty, json_response, parse_object};
use crate::configdrive::ConfigDriveError;
use crate::model::node::PowerIntent;
use crate::model::{Intent, Node, now_iso};
use crate::power::{BOOT_DEVICES, PowerAction};
use crate::state::machine::target_after;
use crate::state::{ProvisionState, Verb};

/// `GET /v1/nodes/{ident}/states`
pub async fn states(
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
    super::versions::hide(&mut doc, super::versions::STATES_FIELDS, ctx.version);
    super::versions::older_state_names(&mut doc, ctx.version);
    Ok(json_response(StatusCode::OK, &Value::Object(doc)))
}

fn validate_clean_steps(steps: &Value) -> Result<Vec<Value>, ApiError> {
    let Value::Array(list) = steps else {
        return Err(ApiError::bad_request("clean_steps must be a list of steps"));
    };
    for s in list {
        let ok = s.get("interface").is_some_and(Value::is_string)
            && s.get("step").is_some_and(Value::is_string);
        if !ok {
            return Err(ApiError::bad_request(format!(
                "Invalid clean step {s}: each step needs 'interface' and 'step'"
            )));
        }
        if let Some(k) = s.as_object().and_then(|o| {
            o.keys().find(|k| {
                !["interface", "step", "args", "priority", "abortable"].contains(&k.as_str())
            })
        }) {
            return Err(ApiError::bad_request(format!(
                "Invalid clean step {s}: unknown key {k}"
            )));
        }
    }
    Ok(list.clone())
}

fn invalid_state(verb: Verb, node: &Node) -> ApiError {
    ApiError::bad_request(format!(
        "The requested action \"{}\" can not be performed on node \"{}\" while it is in state \"{}\".",
        verb.as_str(),
        node.uuid,
        node.provision_state
    ))
}

/// Records a provision verb on the node (pure; runs inside the CAS loop).
fn apply_verb(
    n: &mut Node,
    verb: Verb,
    configdrive: &Option<Value>,
    clean_steps: &Option<Vec<Value>>,
) -> Result<(), ApiError> {
    if let Some(host) = &n.reservation {
        return Err(ApiError::node_locked(&n.uuid, host));
    }
    if n.maintenance
        && matches!(
            verb,
            Verb::Deploy | Verb::Rebuild | Verb::Provide | Verb::Clean | Verb::Inspect
        )
    {
        return Err(ApiError::bad_request(format!(
            "The requested action \"{}\" can not be performed on node \"{}\" while it is in maintenance mode.",
            verb.as_str(),
            n.uuid
        )));
    }
    if n.protected && matches!(verb, Verb::Undeploy | Verb::Rebuild) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Node {} is protected and cannot be undeployed, rebuilt or deleted",
                n.uuid
            ),
        ));
    }
    let next = n
        .provision_state
        .on(verb.event())
        .map_err(|_| invalid_state(verb, n))?;
    match verb {
        Verb::Abort => {
            let what = match n.provision_state {
                ProvisionState::CleanWait => "Cleaning",
                ProvisionState::InspectWait => "Inspection",
                _ => "Deployment",
            };
            n.set_provision_state(next, None);
            n.last_error = Some(format!("{what} aborted by the operator (abort)"));
            n.wipe_agent_info();
            n.intent = None;
            n.clean_step = Map::new();
            n.deploy_step = Map::new();
            n.power_intent = Some(PowerIntent {
                target: "power off".into(),
            });
            n.target_power_state = Some("power off".into());
            return Ok(());
        }
        Verb::Manage => {
            n.intent = (next == ProvisionState::Verifying).then_some(Intent::Verify);
        }
        Verb::Provide => n.intent = Some(Intent::Clean { steps: None }),
        Verb::Clean => {
            n.intent = Some(Intent::Clean {
                steps: clean_steps.clone(),
            })
        }
        Verb::Deploy | Verb::Rebuild => {
            match configdrive {
                Some(cd) => {
                    n.instance_info.insert("configdrive".into(), cd.clone());
                }
                None => {
                    n.instance_info.remove("configdrive");
                }
            }
            n.intent = Some(Intent::Deploy);
        }
        Verb::Undeploy => n.intent = Some(Intent::Undeploy),
        Verb::Inspect => {
            n.intent = Some(Intent::Inspect);
            n.inspection_started_at = Some(now_iso());
            n.inspection_finished_at = None;
        }
    }
    n.last_error = None;
    n.set_provision_state(next, target_after(verb, next));
    Ok(())
}

/// `null`, `""` or `{}`: no config drive (Ironic tests `not configdrive`).
fn is_empty_configdrive(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Checks a config drive at request time as Ironic's
/// `check_allow_configdrive` does: only with active (deploy) or rebuild
/// (1.35); a dict from 1.56 and as Ironic's schema allows it
/// ([`crate::configdrive::validate`]), `vendor_data` from 1.59; a string
/// is a URL or base64. Every refusal is a 400.
fn check_configdrive(verb: Verb, cd: &Value, version: ApiVersion) -> Result<(), ApiError> {
    let rebuild = version.at_least(35);
    if !(verb == Verb::Deploy || (verb == Verb::Rebuild && rebuild)) {
        return Err(ApiError::bad_request(format!(
            "Adding a config drive is only supported when setting provision state to {}",
            if rebuild { "active, rebuild" } else { "active" }
        )));
    }
    match cd {
        Value::Object(dict) => {
            crate::configdrive::validate(dict).map_err(|e| match e {
                ConfigDriveError::Invalid(m) => {
                    ApiError::bad_request(format!("Invalid configdrive format: {m}"))
                }
                other => ApiError::bad_request(other.to_string()),
            })?;
            if !version.at_least(56) {
                return Err(ApiError::bad_request(
                    "Providing a JSON object for configdrive is only supported starting with API version 1.56",
                ));
            }
            if dict.contains_key("vendor_data") && !version.at_least(59) {
                return Err(ApiError::bad_request(
                    "Providing vendor_data in configdrive is only supported starting with API version 1.59",
                ));
            }
        }
        // `:` is not base64: a URL.
        Value::String(s) if s.contains("://") => {}
        Value::String(s)
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=\n\r\t ".contains(c)) => {}
        Value::String(_) => {
            return Err(ApiError::bad_request(
                "Invalid configdrive format: it is neither a JSON, nor a URL, nor a base64 string",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "Invalid configdrive format: it must be a string (gzip+base64 ISO or URL) or an object",
            ));
        }
    }
    Ok(())
}

/// `PUT /v1/nodes/{ident}/states/provision`
pub async fn provision(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(
        &body,
        "body",
        &[
            "target",
            "configdrive",
            "clean_steps",
            "deploy_steps",
            "service_steps",
            "rescue_password",
            "disable_ramdisk",
            "runbook",
        ],
    )?;
    let target = obj.get("target").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute target. Value: 'target' is a required string",
        )
    })?;
    let verb = match Verb::parse(target, ctx.version.0) {
        Ok(v) => v,
        Err(Some(min)) => {
            return Err(ApiError::not_acceptable(format!(
                "The provision target \"{target}\" needs API version 1.{min} or later."
            )));
        }
        Err(None) => {
            return Err(ApiError::bad_request(format!(
                "Invalid provision state target \"{target}\"; Ingot supports active, deploy, rebuild, deleted, undeploy, manage, provide, inspect, clean and abort."
            )));
        }
    };
    for unsupported in ["service_steps", "rescue_password", "runbook"] {
        if obj.contains_key(unsupported) {
            return Err(ApiError::bad_request(format!(
                "{unsupported} is not supported by this coordinator."
            )));
        }
    }
    // As Ironic: an empty config drive (null, "" or {}) is none at all.
    let configdrive = obj
        .get("configdrive")
        .filter(|v| !is_empty_configdrive(v))
        .cloned();
    if let Some(cd) = &configdrive {
        check_configdrive(verb, cd, ctx.version)?;
    }
    let clean_steps = match (verb, obj.get("clean_steps")) {
        (Verb::Clean, Some(s)) => Some(validate_clean_steps(s)?),
        (Verb::Clean, None) => {
            return Err(ApiError::bad_request(
                "\"clean_steps\" is required when setting target provision state to clean",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "\"clean_steps\" is only valid when setting target provision state to clean",
            ));
        }
        _ => None,
    };
    let node = find(&st, &ident).await?;
    if matches!(verb, Verb::Deploy | Verb::Rebuild) && node.uses_agent() {
        if let Err(e) = st.conductor.check_image_source(&node) {
            return Err(ApiError::bad_request(format!(
                "Cannot deploy node {}: {e}",
                node.uuid
            )));
        }
    }
    let updated = st
        .conductor
        .db()
        .update_node(&node.uuid, |n| {
            apply_verb(n, verb, &configdrive, &clean_steps)
        })
        .await?;
    tracing::info!(node = %updated.uuid, verb = verb.as_str(), state = %updated.provision_state, "provision request");
    st.conductor.kick(&updated.uuid);
    Ok(accepted_at(&format!(
        "{}/v1/nodes/{}/states",
        ctx.base, updated.uuid
    )))
}

/// `PUT /v1/nodes/{ident}/states/power`
pub async fn power(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "body", &["target", "timeout"])?;
    let target = obj
        .get("target")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                "Invalid input for field/attribute target. Value: 'target' is a required string",
            )
        })?
        .to_owned();
    let action = PowerAction::parse(&target).ok_or_else(|| {
        ApiError::bad_request(format!("Invalid input for field/attribute target. Value: '{target}'. Value should be one of: power on, power off, rebooting, soft power off, soft rebooting"))
    })?;
    if matches!(action, PowerAction::SoftOff | PowerAction::SoftReboot) && !ctx.version.at_least(27)
    {
        return Err(ApiError::not_acceptable(
            "Soft power actions need API version 1.27 or later.",
        ));
    }
    if let Some(t) = obj.get("timeout") {
        if !ctx.version.at_least(27) {
            return Err(ApiError::not_acceptable(
                "The timeout needs API version 1.27 or later.",
            ));
        }
        if t.as_u64().is_none_or(|t| t == 0) {
            return Err(ApiError::bad_request(format!(
                "Invalid timeout value {t}: must be a positive integer"
            )));
        }
    }
    let node = find(&st, &ident).await?;
    let driver = st
        .conductor
        .power_driver(&node)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    driver
        .validate(&node.driver_info)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let updated = st
        .conductor
        .db()
        .update_node(&node.uuid, |n| {
            if let Some(host) = &n.reservation {
                return Err(ApiError::node_locked(&n.uuid, host));
            }
            if n.provision_state.is_transient() || n.power_intent.is_some() {
                return Err(ApiError::conflict(format!(
                    "Node {} is locked by host {}, please retry after the current operation is completed.",
                    n.uuid,
                    n.conductor.clone().unwrap_or_default()
                )));
            }
            n.power_intent = Some(PowerIntent { target: target.clone() });
            n.target_power_state = Some(target.clone());
            // A new power action clears the last error, except in a failure
            // state, whose error says why the node is there (Ironic).
            if !n.provision_state.is_failure() {
                n.last_error = None;
            }
            Ok(())
        })
        .await?;
    st.conductor.kick(&updated.uuid);
    Ok(accepted_at(&format!(
        "{}/v1/nodes/{}/states",
        ctx.base, updated.uuid
    )))
}

/// `PUT /v1/nodes/{ident}/maintenance`
pub async fn set_maintenance(
    State(st): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_object(&body, "body", &["reason"])?
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let node = find(&st, &ident).await?;
    st.conductor
        .db()
        .update_node::<ApiError, _>(&node.uuid, |n| {
            n.maintenance = true;
            n.maintenance_reason = reason.clone();
            Ok(())
        })
        .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `DELETE /v1/nodes/{ident}/maintenance`
pub async fn unset_maintenance(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    st.conductor
        .db()
        .update_node::<ApiError, _>(&node.uuid, |n| {
            n.maintenance = false;
            n.maintenance_reason = None;
            n.fault = None;
            Ok(())
        })
        .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `GET /v1/nodes/{ident}/management/boot_device`
pub async fn get_boot_device(
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
pub async fn supported_boot_devices(
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
pub async fn set_boot_device(
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

/// `GET /v1/nodes/{ident}/validate`: Ironic's answer per interface,
/// `{"result": true}` or `{"result": false, "reason": …}`. An interface the
/// node does not implement (`no-*`) is "not supported", as in Ironic; the
/// `fake` ones validate.
pub async fn validate(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    let ok = || json!({"result": true});
    let no = |r: String| json!({"result": false, "reason": r});
    let unsupported = |iface: &str| {
        no(format!(
            "Driver {} does not support {iface} (disabled or not implemented).",
            node.driver
        ))
    };
    let has_ports = !st
        .conductor
        .db()
        .list_ports(Some(&node.uuid))
        .await?
        .is_empty();
    let no_ports = || {
        no(format!(
            "Node {} does not have any port associated with it",
            node.uuid
        ))
    };
    let power = match st
        .conductor
        .power_driver(&node)
        .and_then(|d| d.validate(&node.driver_info))
    {
        Ok(()) => ok(),
        Err(e) => no(e.to_string()),
    };
    let management = match node.management_interface.as_deref() {
        Some("noop" | "fake") => ok(),
        _ => power.clone(),
    };
    let boot = match node.boot_interface.as_deref() {
        Some("ipxe" | "pxe") if !has_ports => no_ports(),
        _ => ok(),
    };
    let deploy = if node.uses_agent() {
        if has_ports {
            match st.conductor.check_image_source(&node) {
                Ok(()) => ok(),
                Err(e) => no(e),
            }
        } else {
            no_ports()
        }
    } else {
        ok()
    };
    let console = if crate::console::is_fake(&node) {
        ok()
    } else if !crate::console::supported(&node) {
        unsupported("console")
    } else if let Err(e) = crate::console::console_bmc(&node) {
        no(e)
    } else {
        power.clone()
    };
    // The interfaces whose only implementations here are `fake` (validates)
    // and `no-*` (not supported), plus `agent` RAID and inspection.
    let simple = |iface: &str, value: Option<&str>| match value {
        Some(v) if v.starts_with("no-") => unsupported(iface),
        None => unsupported(iface),
        Some(_) => ok(),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "boot": boot,
            "console": console,
            "deploy": deploy,
            "inspect": simple("inspect", node.inspect_interface.as_deref()),
            "management": management,
            "network": ok(),
            "power": power,
            "raid": simple("raid", node.raid_interface.as_deref()),
            "rescue": simple("rescue", node.rescue_interface.as_deref()),
            "storage": ok(),
            "bios": simple("bios", node.bios_interface.as_deref()),
            "firmware": simple("firmware", node.firmware_interface.as_deref()),
        }),
    ))
}

/// `GET /v1/nodes/{ident}/vifs`
pub async fn list_vifs(
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
pub async fn attach_vif(
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
pub async fn detach_vif(
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

/// `GET /v1/nodes/{ident}/traits`
pub async fn get_traits(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"traits": node.traits}),
    ))
}

fn check_trait(t: &str) -> Result<(), ApiError> {
    let ok = !t.is_empty()
        && t.len() <= 255
        && (t.starts_with("CUSTOM_")
            && t.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            || t.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid trait {t}: a trait must be a standard trait or begin with CUSTOM_ and contain only A-Z, 0-9 and _"
        )))
    }
}

async fn change_traits(
    st: &AppState,
    ident: &str,
    f: impl Fn(&mut Vec<String>) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let node = find(st, ident).await?;
    st.conductor
        .db()
        .update_node(&node.uuid, |n| {
            if let Some(host) = &n.reservation {
                return Err(ApiError::node_locked(&n.uuid, host));
            }
            f(&mut n.traits)
        })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `PUT /v1/nodes/{ident}/traits`
pub async fn set_traits(
    State(st): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "traits", &["traits"])?;
    let list: Vec<String> = serde_json::from_value(obj.get("traits").cloned().unwrap_or(json!([])))
        .map_err(|e| ApiError::bad_request(format!("traits must be a list of strings: {e}")))?;
    for t in &list {
        check_trait(t)?;
    }
    change_traits(&st, &ident, |tr| {
        let mut l = list.clone();
        l.sort();
        l.dedup();
        *tr = l;
        Ok(())
    })
    .await
}

/// `PUT /v1/nodes/{ident}/traits/{trait}`
pub async fn add_trait(
    State(st): State<AppState>,
    Path((ident, t)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_trait(&t)?;
    change_traits(&st, &ident, |tr| {
        if !tr.contains(&t) {
            tr.push(t.clone());
            tr.sort();
        }
        Ok(())
    })
    .await
}

/// `DELETE /v1/nodes/{ident}/traits/{trait}`
pub async fn delete_trait(
    State(st): State<AppState>,
    Path((ident, t)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change_traits(&st, &ident, |tr| {
        let before = tr.len();
        tr.retain(|x| *x != t);
        if tr.len() == before {
            return Err(ApiError::bad_request(format!(
                "Node does not have trait {t}"
            )));
        }
        Ok(())
    })
    .await
}

/// `DELETE /v1/nodes/{ident}/traits`
pub async fn delete_all_traits(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    change_traits(&st, &ident, |tr| {
        tr.clear();
        Ok(())
    })
    .await
}

/// `GET /v1/nodes/{ident}/inventory`: the last inventory from inspection.
pub async fn inventory(
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
