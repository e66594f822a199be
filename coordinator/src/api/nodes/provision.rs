//! `PUT /v1/nodes/{ident}/states/provision`: the provision verbs (deploy,
//! rebuild, undeploy, manage, provide, clean, inspect, abort), with Ironic's
//! checks of config drives and clean steps.
//!
//! A request records an intent in the same write as the state change, then
//! wakes the conductor; it answers 202 at once.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::{states, update_unlocked};
use crate::api::{ApiError, ApiVersion, Req, parse_object};
use crate::configdrive::ConfigDriveError;
use crate::model::node::PowerIntent;
use crate::model::power::{PowerAction, PowerState};
use crate::model::{Intent, Node, now_iso};
use crate::state::machine::target_after;
use crate::state::{ProvisionState, Verb};

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

/// Records a provision verb on an unlocked node (pure; runs inside the CAS
/// loop).
fn apply_verb(
    n: &mut Node,
    verb: Verb,
    configdrive: &Option<Value>,
    clean_steps: &Option<Vec<Value>>,
) -> Result<(), ApiError> {
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
                target: PowerAction::Off,
            });
            n.target_power_state = Some(PowerState::Off);
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
pub async fn set(req: Req, body: Bytes) -> Result<Response, ApiError> {
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
    let target = states::target(&obj)?;
    let verb = match Verb::parse(target, req.ctx.version.0) {
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
        check_configdrive(verb, cd, req.ctx.version)?;
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
    let node = req.node().await?;
    if matches!(verb, Verb::Deploy | Verb::Rebuild) && node.uses_agent() {
        if let Err(e) = req.st.conductor.check_image_source(&node) {
            return Err(ApiError::bad_request(format!(
                "Cannot deploy node {}: {e}",
                node.uuid
            )));
        }
    }
    let updated = update_unlocked(&req.st, &node.uuid, |n| {
        apply_verb(n, verb, &configdrive, &clean_steps)
    })
    .await?;
    tracing::info!(node = %updated.uuid, verb = verb.as_str(), state = %updated.provision_state, "provision request");
    if verb == Verb::Abort {
        if let Err(e) = req
            .st
            .conductor
            .db()
            .end_open_steps(&updated.uuid, "aborted")
            .await
        {
            tracing::warn!(node = %updated.uuid, error = %e, "ending the aborted step in the history failed");
        }
    }
    super::history::record_request(
        &req,
        &updated,
        verb.as_str(),
        format!(
            "Provision action {} requested: {} to {}",
            verb.as_str(),
            node.provision_state,
            updated.provision_state
        ),
    )
    .await;
    Ok(states::started(&req, &updated))
}
