//! The `clean` and `deploy` extensions: step lists (IPA's generic hardware
//! manager names and versions) and step execution through the wipe library
//! and the image writer.

use std::path::PathBuf;
use std::sync::Arc;

use ingot_proto::agent::Step;
use ingot_proto::wipe::{VerifyMode, WipeMode};
use serde_json::{Map, Value, json};

use super::executor::Record;
use super::write::{deploy_whole_disk, node_dict, parse_image_info};
use super::{CmdError, CmdResult};
use crate::state::AgentState;
use crate::wipe::{WipeOptions, WipeProgress, wipe_devices};

/// The hardware manager the steps are listed under (IPA's generic one).
pub const MANAGER: &str = "GenericHardwareManager";
/// Its name and version in `hardware_manager_version`.
pub const MANAGER_VERSION: (&str, &str) = ("generic_hardware_manager", "1.2");

fn step(name: &str, priority: i64, argsinfo: Option<Value>) -> Step {
    Step {
        step: name.to_string(),
        priority,
        interface: "deploy".to_string(),
        reboot_requested: false,
        abortable: true,
        argsinfo,
        args: None,
    }
}

/// The clean steps. `clean_uefi_nvram` has IPA's priority 0: it runs only
/// when requested (manual cleaning, or a priority override).
pub fn clean_steps() -> Vec<Step> {
    vec![
        step("erase_devices", 10, None),
        step("erase_devices_metadata", 99, None),
        step(
            "clean_uefi_nvram",
            0,
            Some(json!({
                "match_patterns": {
                    "description": "A list of regular expressions matched (case-insensitively) against the device path of each UEFI boot entry; matching entries are deleted. Default: [\"^HD\"], every entry on a disk partition.",
                    "required": false,
                },
            })),
        ),
    ]
}

/// The deploy steps (all priority 0: run only when requested).
pub fn deploy_steps() -> Vec<Step> {
    let mut w = step(
        "write_image",
        0,
        Some(json!({
            "image_info": {"description": "Information about the image to write", "required": true},
            "configdrive": {"description": "A config drive (gzip+base64 ISO or a URL)", "required": false},
        })),
    );
    w.abortable = false;
    vec![step("erase_devices_metadata", 0, None), w]
}

fn versions() -> Value {
    json!({ MANAGER_VERSION.0: MANAGER_VERSION.1 })
}

fn steps_result(key: &str, steps: Vec<Step>) -> CmdResult {
    let mut by_manager = Map::new();
    by_manager.insert(
        MANAGER.into(),
        serde_json::to_value(steps).map_err(|e| CmdError::execution(e.to_string()))?,
    );
    Ok(Some(
        json!({ key: by_manager, "hardware_manager_version": versions() }),
    ))
}

/// `clean.get_clean_steps`.
pub async fn get_clean_steps(
    _s: Arc<AgentState>,
    _r: Arc<Record>,
    _p: Map<String, Value>,
) -> CmdResult {
    steps_result("clean_steps", clean_steps())
}

/// `deploy.get_deploy_steps`.
pub async fn get_deploy_steps(
    _s: Arc<AgentState>,
    _r: Arc<Record>,
    _p: Map<String, Value>,
) -> CmdResult {
    steps_result("deploy_steps", deploy_steps())
}

/// Checks `execute_*_step` parameters: `step` must name a step.
pub fn validate_execute_step(params: &Map<String, Value>) -> Result<(), CmdError> {
    match params
        .get("step")
        .and_then(|s| s.get("step"))
        .and_then(Value::as_str)
    {
        Some(_) => Ok(()),
        None => Err(CmdError::invalid_params(
            "step must be an object with a \"step\" name",
        )),
    }
}

fn check_version(params: &Map<String, Value>, key: &str) -> Result<(), CmdError> {
    match params.get(key) {
        Some(Value::Object(v)) if !v.is_empty() && Value::Object(v.clone()) != versions() => {
            Err(CmdError::version_mismatch(format!(
                "steps were listed by {} but this agent runs {}",
                Value::Object(v.clone()),
                versions()
            )))
        }
        _ => Ok(()),
    }
}

/// `clean.execute_clean_step`.
pub async fn execute_clean_step(
    state: Arc<AgentState>,
    record: Arc<Record>,
    params: Map<String, Value>,
) -> CmdResult {
    check_version(&params, "clean_version")?;
    let step = params.get("step").cloned().unwrap_or(Value::Null);
    let name = step
        .get("step")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let node = node_dict(&state, &params);
    let result = match name.as_str() {
        "erase_devices_metadata" => {
            erase(&state, &record, node.as_ref(), WipeMode::Metadata).await?
        }
        "erase_devices" => erase(&state, &record, node.as_ref(), WipeMode::Secure).await?,
        "clean_uefi_nvram" => clean_uefi_nvram(&state, &step).await?,
        other => return Err(CmdError::no_such_step(format!("clean step {other}"))),
    };
    Ok(Some(json!({"clean_result": result, "clean_step": step})))
}

/// `deploy.execute_deploy_step`.
pub async fn execute_deploy_step(
    state: Arc<AgentState>,
    record: Arc<Record>,
    params: Map<String, Value>,
) -> CmdResult {
    check_version(&params, "deploy_version")?;
    let step = params.get("step").cloned().unwrap_or(Value::Null);
    let name = step
        .get("step")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let node = node_dict(&state, &params);
    let args = step
        .get("args")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let result = match name.as_str() {
        "write_image" => {
            let info = parse_image_info(args.get("image_info"))?;
            let cd = args
                .get("configdrive")
                .and_then(Value::as_str)
                .map(str::to_string);
            deploy_whole_disk(&state, &record, info, cd, node.as_ref()).await?
        }
        "erase_devices_metadata" => {
            erase(&state, &record, node.as_ref(), WipeMode::Metadata).await?
        }
        other => return Err(CmdError::no_such_step(format!("deploy step {other}"))),
    };
    Ok(Some(json!({"deploy_result": result, "deploy_step": step})))
}

/// IPA's `clean_uefi_nvram`: removes the boot entries whose device path
/// matches `match_patterns` (default `^HD`) and fixes `BootOrder`. Skipped
/// when the agent did not boot UEFI (no NVRAM to clean).
async fn clean_uefi_nvram(state: &Arc<AgentState>, step: &Value) -> Result<Value, CmdError> {
    let patterns: Vec<String> = match step.get("args").and_then(|a| a.get("match_patterns")) {
        None | Some(Value::Null) => crate::uefi::nvram::DEFAULT_CLEAN_PATTERNS
            .iter()
            .map(|p| p.to_string())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    CmdError::invalid_params("match_patterns must be a list of strings")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => {
            return Err(CmdError::invalid_params(
                "match_patterns must be a list of strings",
            ));
        }
    };
    let regexes = crate::uefi::nvram::compile_patterns(&patterns)
        .map_err(|e| CmdError::invalid_params(format!("match_patterns: {e}")))?;
    let root = state.config.root.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let Some(vars) = crate::uefi::efivars::EfiVars::open(&root) else {
            tracing::info!("no UEFI variables (not booted UEFI, or no efivarfs): nothing to clean");
            return Ok(None);
        };
        crate::uefi::nvram::clean_boot_entries(&vars, &regexes).map(Some)
    })
    .await
    .map_err(|e| CmdError::execution(e.to_string()))?
    .map_err(|e| CmdError::execution(format!("cleaning UEFI boot entries: {e}")))?;
    Ok(match removed {
        None => {
            json!({"skipped": "no UEFI variables (not booted in UEFI mode, or no efivarfs)", "patterns": patterns})
        }
        Some(r) => json!({"removed": r, "patterns": patterns}),
    })
}

fn dii_u64(node: Option<&Map<String, Value>>, key: &str) -> Option<u64> {
    let v = node?.get("driver_internal_info")?.get(key)?;
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// The disks to erase: every inventory disk not matched by one of the node's
/// `properties.skip_block_devices` hint sets.
async fn erase_targets(
    state: &Arc<AgentState>,
    node: Option<&Map<String, Value>>,
) -> Result<Vec<PathBuf>, CmdError> {
    let root = state.config.root.clone();
    let disks = tokio::task::spawn_blocking(move || crate::inventory::list_disks(&root))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?;
    let skips: Vec<Map<String, Value>> = node
        .and_then(|n| {
            n.get("properties")?
                .get("skip_block_devices")?
                .as_array()
                .cloned()
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
    Ok(disks
        .iter()
        .filter(|d| {
            let skip = skips.iter().any(|h| ingot_proto::hints::matches(d, h));
            if skip {
                tracing::info!(disk = %d.name, "skipped: listed in skip_block_devices");
            }
            !skip
        })
        .map(|d| state.device_path(&d.name))
        .collect())
}

async fn erase(
    state: &Arc<AgentState>,
    record: &Arc<Record>,
    node: Option<&Map<String, Value>>,
    mode: WipeMode,
) -> Result<Value, CmdError> {
    let targets = erase_targets(state, node).await?;
    let passes = dii_u64(node, "agent_erase_devices_iterations")
        .unwrap_or(1)
        .min(16) as u32;
    let opts = WipeOptions {
        mode,
        verify: VerifyMode::Sample,
        // IPA shreds disks without a usable secure erase.
        allow_overwrite: true,
        passes,
        ..WipeOptions::default()
    };
    // Overwrite passes count their bytes; the command status shows them.
    let progress = WipeProgress::default();
    record.set_progress(progress.0.clone());
    let opts = WipeOptions {
        progress: Some(progress),
        ..opts
    };
    tracing::info!(mode = ?mode, disks = targets.len(), "erasing disks");
    let report = tokio::task::spawn_blocking(move || wipe_devices(&targets, &opts))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?;
    let value = serde_json::to_value(&report).map_err(|e| CmdError::execution(e.to_string()))?;
    if report.devices.is_empty() {
        return Ok(value);
    }
    if !report.success {
        let failed: Vec<String> = report
            .devices
            .iter()
            .filter(|d| d.error.is_some() || d.status != ingot_proto::wipe::WipeStatus::Verified)
            .map(|d| {
                format!(
                    "{}: {}",
                    d.path,
                    d.error.clone().unwrap_or_else(|| format!("{:?}", d.status))
                )
            })
            .collect();
        return Err(CmdError::erase(format!(
            "{}; report: {value}",
            failed.join("; ")
        )));
    }
    Ok(value)
}
