//! The `standby` extension: image deploy, partition UUIDs, sync.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::executor::Record;
use super::write::{deploy_whole_disk, node_dict, parse_image_info};
use super::{CmdError, CmdResult};
use crate::state::AgentState;

/// Checks `prepare_image` parameters before accepting the command.
pub fn validate_prepare_image(params: &Map<String, Value>) -> Result<(), CmdError> {
    parse_image_info(params.get("image_info")).map(|_| ())
}

/// `standby.prepare_image`: write a whole-disk image (and config drive).
pub async fn prepare_image(
    state: Arc<AgentState>,
    record: Arc<Record>,
    params: Map<String, Value>,
) -> CmdResult {
    let info = parse_image_info(params.get("image_info"))?;
    let configdrive = params
        .get("configdrive")
        .and_then(Value::as_str)
        .map(str::to_string);
    let node = node_dict(&state, &params);
    deploy_whole_disk(&state, &record, info, configdrive, node.as_ref())
        .await
        .map(Some)
}

/// `standby.get_partition_uuids`: what the last image write recorded.
pub async fn get_partition_uuids(
    state: Arc<AgentState>,
    _record: Arc<Record>,
    _params: Map<String, Value>,
) -> CmdResult {
    Ok(Some(Value::Object(state.partition_uuids())))
}

/// `standby.sync`: flush file systems, drop caches and flush disk buffers.
pub async fn sync(
    state: Arc<AgentState>,
    _record: Arc<Record>,
    _params: Map<String, Value>,
) -> CmdResult {
    tokio::task::spawn_blocking(move || full_sync(&state))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?;
    Ok(None)
}

/// sync(2), `drop_caches` and `BLKFLSBUF` on every disk (IPA's `full_sync`).
pub fn full_sync(state: &AgentState) {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    if state.config.root != std::path::Path::new("/") {
        return;
    }
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        tracing::debug!(error = %e, "cannot drop caches");
    }
    for d in crate::inventory::list_disks(&state.config.root) {
        let path = state.device_path(&d.name);
        match std::fs::File::open(&path) {
            Ok(f) => {
                use std::os::fd::AsRawFd;
                // SAFETY: BLKFLSBUF takes no argument; the fd is open.
                let r = unsafe {
                    libc::ioctl(
                        f.as_raw_fd(),
                        ingot_image_tools::blockdev::request(0x1261),
                        0,
                    )
                };
                if r != 0 {
                    tracing::debug!(disk = %d.name, error = %std::io::Error::last_os_error(), "BLKFLSBUF failed");
                }
            }
            Err(e) => tracing::debug!(disk = %d.name, error = %e, "cannot open for flushing"),
        }
    }
}
