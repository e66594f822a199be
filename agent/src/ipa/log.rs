//! `log.collect_system_logs` (the agent's log ring, kernel messages and a
//! few system files as a base64 gzip tarball, as IPA returns) and
//! `poll.get_hardware_info` (the inventory).

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::executor::Record;
use super::{CmdError, CmdResult, tar};
use crate::inventory::{InventoryOptions, collect};
use crate::state::AgentState;

/// Reads what `/dev/kmsg` holds now, without blocking.
fn kernel_messages() -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    let mut out = String::new();
    let mut buf = vec![0u8; 8192];
    // Each read returns one record; EAGAIN at the end.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        let rec = String::from_utf8_lossy(&buf[..n]);
        let msg = rec.split_once(';').map_or(rec.as_ref(), |(_, m)| m);
        out.push_str(msg.lines().next().unwrap_or_default());
        out.push('\n');
    }
    Some(out)
}

/// Builds the gzip tarball.
pub fn bundle(state: &AgentState) -> Result<Vec<u8>, std::io::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut t = Vec::new();
    tar::append(&mut t, "ingot-agent.log", state.logs.text().as_bytes(), now);
    let inv = collect(&InventoryOptions {
        root: state.config.root.clone(),
        lldp_timeout: None,
        bmc: false,
    });
    tar::append(
        &mut t,
        "inventory.json",
        &serde_json::to_vec_pretty(&inv).unwrap_or_default(),
        now,
    );
    let root = &state.config.root;
    for (name, path) in [
        ("cmdline", "proc/cmdline"),
        ("mounts", "proc/mounts"),
        ("meminfo", "proc/meminfo"),
    ] {
        if let Ok(data) = std::fs::read(root.join(path)) {
            tar::append(&mut t, name, &data, now);
        }
    }
    if state.config.root == std::path::Path::new("/") {
        if let Some(k) = kernel_messages() {
            tar::append(&mut t, "dmesg", k.as_bytes(), now);
        }
    }
    tar::finish(&mut t);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&t)?;
    gz.finish()
}

/// `log.collect_system_logs`.
pub async fn collect_system_logs(
    state: Arc<AgentState>,
    _r: Arc<Record>,
    _p: Map<String, Value>,
) -> CmdResult {
    let gz = tokio::task::spawn_blocking(move || bundle(&state))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?
        .map_err(|e| CmdError::execution(e.to_string()))?;
    Ok(Some(
        json!({"system_logs": base64::engine::general_purpose::STANDARD.encode(gz)}),
    ))
}

/// `poll.get_hardware_info`.
pub async fn get_hardware_info(
    state: Arc<AgentState>,
    _r: Arc<Record>,
    _p: Map<String, Value>,
) -> CmdResult {
    let root = state.config.root.clone();
    let inv = tokio::task::spawn_blocking(move || {
        collect(&InventoryOptions {
            root,
            lldp_timeout: None,
            bmc: true,
        })
    })
    .await
    .map_err(|e| CmdError::execution(e.to_string()))?;
    Ok(Some(
        serde_json::to_value(inv).map_err(|e| CmdError::execution(e.to_string()))?,
    ))
}
