//! The table of commands: name, sync or async, parameter check, and body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ingot_proto::agent::{CommandRequest, CommandResult};
use serde_json::{Map, Value};

use super::executor::Record;
use super::{CmdError, CmdResult, image, log, power, standby, steps};
use crate::state::AgentState;

/// The future a command body returns.
pub type CmdFuture = Pin<Box<dyn Future<Output = CmdResult> + Send>>;
/// A command body.
pub type CmdFn = fn(Arc<AgentState>, Arc<Record>, Map<String, Value>) -> CmdFuture;
/// A parameter check run before the command is accepted (400 on failure).
pub type Validator = fn(&Map<String, Value>) -> Result<(), CmdError>;

/// One command.
#[derive(Debug)]
pub struct Spec {
    /// Extension, e.g. `standby`.
    pub extension: &'static str,
    /// Command, e.g. `prepare_image`.
    pub name: &'static str,
    /// Answered with its result (true) or `RUNNING` (false).
    pub sync: bool,
    /// Parameter check.
    pub validate: Option<Validator>,
    /// The body.
    pub run: CmdFn,
}

const SPECS: &[Spec] = &[
    Spec {
        extension: "standby",
        name: "prepare_image",
        sync: false,
        validate: Some(standby::validate_prepare_image),
        run: |s, r, p| Box::pin(standby::prepare_image(s, r, p)),
    },
    Spec {
        extension: "standby",
        name: "get_partition_uuids",
        sync: true,
        validate: None,
        run: |s, r, p| Box::pin(standby::get_partition_uuids(s, r, p)),
    },
    Spec {
        extension: "standby",
        name: "sync",
        sync: true,
        validate: None,
        run: |s, r, p| Box::pin(standby::sync(s, r, p)),
    },
    Spec {
        extension: "standby",
        name: "power_off",
        sync: false,
        validate: None,
        run: |s, r, p| Box::pin(power::power_off(s, r, p)),
    },
    Spec {
        extension: "standby",
        name: "reboot",
        sync: false,
        validate: None,
        run: |s, r, p| Box::pin(power::reboot(s, r, p)),
    },
    Spec {
        extension: "standby",
        name: "run_image",
        sync: false,
        validate: None,
        run: |s, r, p| Box::pin(power::reboot(s, r, p)),
    },
    Spec {
        extension: "clean",
        name: "get_clean_steps",
        sync: true,
        validate: None,
        run: |s, r, p| Box::pin(steps::get_clean_steps(s, r, p)),
    },
    Spec {
        extension: "clean",
        name: "execute_clean_step",
        sync: false,
        validate: Some(steps::validate_execute_step),
        run: |s, r, p| Box::pin(steps::execute_clean_step(s, r, p)),
    },
    Spec {
        extension: "deploy",
        name: "get_deploy_steps",
        sync: true,
        validate: None,
        run: |s, r, p| Box::pin(steps::get_deploy_steps(s, r, p)),
    },
    Spec {
        extension: "deploy",
        name: "execute_deploy_step",
        sync: false,
        validate: Some(steps::validate_execute_step),
        run: |s, r, p| Box::pin(steps::execute_deploy_step(s, r, p)),
    },
    Spec {
        extension: "image",
        name: "install_bootloader",
        sync: false,
        validate: None,
        run: |s, r, p| Box::pin(image::install_bootloader(s, r, p)),
    },
    Spec {
        extension: "log",
        name: "collect_system_logs",
        sync: true,
        validate: None,
        run: |s, r, p| Box::pin(log::collect_system_logs(s, r, p)),
    },
    Spec {
        extension: "poll",
        name: "get_hardware_info",
        sync: true,
        validate: None,
        run: |s, r, p| Box::pin(log::get_hardware_info(s, r, p)),
    },
];

/// Finds a command: 400 for a malformed name or unknown command, 404 for an
/// unknown extension (IPA's codes).
pub fn find(full_name: &str) -> Result<&'static Spec, CmdError> {
    let Some((ext, cmd)) = full_name.split_once('.') else {
        return Err(CmdError::invalid_content(format!(
            "command name {full_name:?} is not <extension>.<command>"
        )));
    };
    if !SPECS.iter().any(|s| s.extension == ext) {
        return Err(CmdError::not_found(format!("extension {ext:?} not found")));
    }
    SPECS
        .iter()
        .find(|s| s.extension == ext && s.name == cmd)
        .ok_or_else(|| {
            CmdError::invalid_command(format!("unknown command {cmd:?} of extension {ext:?}"))
        })
}

/// Submits a command. Errors are the HTTP errors of the submission (400,
/// 404, 409); failures inside the command are in the returned envelope.
pub async fn execute(
    state: &Arc<AgentState>,
    req: CommandRequest,
    wait: bool,
) -> Result<CommandResult, CmdError> {
    let spec = find(&req.name)?;
    if let Some(v) = spec.validate {
        v(&req.params)?;
    }
    let record = state.executor.begin(spec.name)?;
    tracing::info!(command = %req.name, id = %record.id, "executing command");
    let fut = (spec.run)(state.clone(), record.clone(), req.params);
    if spec.sync {
        let outcome = fut.await;
        log_outcome(&req.name, &outcome);
        record.finish(outcome);
        return Ok(record.snapshot());
    }
    let bg = record.clone();
    let st = state.clone();
    let name = req.name.clone();
    tokio::spawn(async move {
        let outcome = fut.await;
        log_outcome(&name, &outcome);
        bg.finish(outcome);
        st.heartbeat_now.notify_one();
    });
    if wait {
        record.wait().await;
    }
    Ok(record.snapshot())
}

fn log_outcome(name: &str, outcome: &CmdResult) {
    match outcome {
        Ok(_) => tracing::info!(command = %name, "command succeeded"),
        Err(e) => tracing::error!(command = %name, error = %e, "command failed"),
    }
}
