//! `GET /v1/nodes/{ident}/validate`: whether each interface of a node can work.

use axum::response::Response;
use serde_json::json;

use crate::api::{ApiError, Req, json_ok};

/// `GET /v1/nodes/{ident}/validate`: Ironic's answer per interface,
/// `{"result": true}` or `{"result": false, "reason": …}`. An interface the
/// node does not implement (`no-*`) is "not supported", as in Ironic; the
/// `fake` ones validate.
pub async fn get(req: Req) -> Result<Response, ApiError> {
    let st = &req.st;
    let node = req.node().await?;
    let ok = || json!({"result": true});
    let no = |r: String| json!({"result": false, "reason": r});
    let unsupported = |iface: &str| {
        no(format!(
            "Driver {} does not support {iface} (disabled or not implemented).",
            node.driver
        ))
    };
    let ports = st.conductor.db().list_ports(Some(&node.uuid)).await?;
    let has_ports = !ports.is_empty();
    let network = if crate::network::tenancy::vlan_per_phase(&node) {
        match crate::network::tenancy::check_ports(&ports, st.conductor.switches()) {
            Ok(()) => ok(),
            Err(e) => no(e),
        }
    } else {
        ok()
    };
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
    json_ok(json!({
            "boot": boot,
            "console": console,
            "deploy": deploy,
            "inspect": simple("inspect", node.inspect_interface.as_deref()),
            "management": management,
            "network": network,
            "power": power,
            "raid": simple("raid", node.raid_interface.as_deref()),
            "rescue": simple("rescue", node.rescue_interface.as_deref()),
            "storage": ok(),
            "bios": simple("bios", node.bios_interface.as_deref()),
            "firmware": simple("firmware", node.firmware_interface.as_deref()),
    }))
}
