//! Version documents, drivers, conductors, and the empty collections of
//! resources Ingot does not model (chassis, port groups).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::microversion::{max_version, min_version};
use super::{ApiError, AppState, Ctx, json_response};
use crate::drivers::{HARDWARE_TYPES, hardware_type};
use crate::model::node::links;

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": min_version(),
        "version": max_version(),
    })
}

/// `GET /`
pub async fn root(ctx: Ctx) -> Response {
    let v = version_doc(&ctx.base);
    json_response(
        StatusCode::OK,
        &json!({
            "name": "OpenStack Ironic API",
            "description": "Ironic is an OpenStack project which enables the management of Bare Metal servers. This is Ingot's coordinator, which implements its API.",
            "default_version": v,
            "versions": [v],
        }),
    )
}

/// `GET /v1/`
pub async fn v1(ctx: Ctx) -> Response {
    let b = &ctx.base;
    let mut doc = json!({
        "id": "v1",
        "links": [
            {"href": format!("{b}/v1/"), "rel": "self"},
            {"href": "https://docs.openstack.org//ironic/latest/contributor//webapi.html", "rel": "describedby", "type": "text/html"}
        ],
        "media_types": {"base": "application/json", "type": "application/vnd.openstack.ironic.v1+json"},
        "version": version_doc(b),
    });
    for r in [
        "chassis",
        "nodes",
        "ports",
        "portgroups",
        "drivers",
        "allocations",
        "conductors",
        "lookup",
        "heartbeat",
    ] {
        doc[r] = links(&format!("{b}/v1/{r}/"), &format!("{b}/{r}/"));
    }
    // Resources Ironic lists from the version that added them (Ingot
    // serves them empty: see `empty_collection`).
    for (r, since) in [
        ("volume", 32),
        ("events", 54),
        ("deploy_templates", 55),
        ("shards", 82),
        ("continue_inspection", 84),
        ("runbooks", 92),
        ("inspection_rules", 96),
    ] {
        if ctx.version.at_least(since) {
            doc[r] = links(&format!("{b}/v1/{r}/"), &format!("{b}/{r}/"));
        }
    }
    json_response(StatusCode::OK, &doc)
}

/// Resources Ingot does not model, which Ironic answers with an empty list
/// (clients read them on their normal paths: Nova's ironic driver lists
/// volume targets while it cleans up a failed spawn): the path, the list's
/// key, and the microversion Ironic added it in (404 below it, as Ironic).
pub const EMPTY_COLLECTIONS: [(&str, &str, u32); 5] = [
    ("/v1/volume/targets", "targets", 32),
    ("/v1/volume/connectors", "connectors", 32),
    ("/v1/deploy_templates", "deploy_templates", 55),
    ("/v1/shards", "shards", 82),
    ("/v1/runbooks", "runbooks", 92),
];

/// The same for node sub-resources: path below `/v1/nodes/{ident}`, key, version.
pub const EMPTY_NODE_COLLECTIONS: [(&str, &str, u32); 3] = [
    ("bios", "bios", 40),
    ("children", "children", 83),
    ("firmware", "firmware", 86),
];

/// An empty collection under `key`, from microversion `since`.
pub fn empty_collection(ctx: &Ctx, key: &str, since: u32) -> Result<Response, ApiError> {
    if !ctx.version.at_least(since) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    Ok(json_response(StatusCode::OK, &json!({ key: [] })))
}

/// `GET /v1/volume`: the volume resource's links (1.32).
pub async fn volume(ctx: Ctx) -> Result<Response, ApiError> {
    if !ctx.version.at_least(32) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let b = &ctx.base;
    let mut doc = json!({"links": links(&format!("{b}/v1/volume/"), &format!("{b}/volume/"))});
    for r in ["connectors", "targets"] {
        doc[r] = links(&format!("{b}/v1/volume/{r}"), &format!("{b}/volume/{r}"));
    }
    Ok(json_response(StatusCode::OK, &doc))
}

/// `GET /v1/portgroups[/detail]`: port groups are not modelled.
pub async fn empty_portgroups() -> Response {
    json_response(StatusCode::OK, &json!({"portgroups": []}))
}

/// `GET /v1/chassis`: chassis are not modelled.
pub async fn empty_chassis() -> Response {
    json_response(StatusCode::OK, &json!({"chassis": []}))
}

fn driver_doc(st: &AppState, ctx: &Ctx, name: &str, detail: bool) -> Value {
    let b = &ctx.base;
    let mut d = json!({
        "name": name,
        "hosts": [st.conductor.name()],
        "type": "dynamic",
        "links": links(&format!("{b}/v1/drivers/{name}"), &format!("{b}/drivers/{name}")),
        "properties": links(&format!("{b}/v1/drivers/{name}/properties"), &format!("{b}/drivers/{name}/properties")),
    });
    // Ironic: the properties link from 1.14; `type` and the interfaces
    // (detail) from 1.30, each interface from the version that added it.
    if !ctx.version.at_least(14) {
        if let Some(m) = d.as_object_mut() {
            m.remove("properties");
        }
    }
    if !ctx.version.at_least(30) {
        if let Some(m) = d.as_object_mut() {
            m.remove("type");
        }
        return d;
    }
    if detail {
        if let Some(hw) = hardware_type(name) {
            for (iface, _) in hw.interfaces {
                let since = match *iface {
                    "storage" => 33,
                    "rescue" => 38,
                    "bios" => 40,
                    "firmware" => 86,
                    _ => 30,
                };
                if !ctx.version.at_least(since) {
                    continue;
                }
                // The first entry of an interface wins (as `HardwareType::supported`).
                let list = hw.supported(iface);
                d[format!("default_{iface}_interface")] = json!(list.first());
                d[format!("enabled_{iface}_interfaces")] = json!(list);
            }
        }
    }
    d
}

/// `GET /v1/drivers`
pub async fn drivers(State(st): State<AppState>, ctx: Ctx) -> Response {
    let detail = ctx.bool_param("detail").ok().flatten().unwrap_or(false);
    let list: Vec<Value> = HARDWARE_TYPES
        .iter()
        .map(|h| driver_doc(&st, &ctx, h.name, detail))
        .collect();
    json_response(StatusCode::OK, &json!({"drivers": list}))
}

/// `GET /v1/drivers/{name}`
pub async fn driver(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    hardware_type(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        ))
    })?;
    Ok(json_response(
        StatusCode::OK,
        &driver_doc(&st, &ctx, &name, true),
    ))
}

/// `GET /v1/drivers/{name}/properties`
pub async fn driver_properties(Path(name): Path<String>) -> Result<Response, ApiError> {
    let hw = hardware_type(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        ))
    })?;
    Ok(json_response(StatusCode::OK, &hw.properties()))
}

/// A member of the group as Ironic shows a conductor.
fn conductor_doc(b: &str, r: &crate::db::ConductorRow, detail: bool) -> serde_json::Value {
    let name = &r.hostname;
    let mut doc = json!({
        "hostname": name,
        "conductor_group": r.conductor_group,
        "alive": r.alive,
        "links": links(&format!("{b}/v1/conductors/{name}"), &format!("{b}/conductors/{name}")),
    });
    if detail {
        doc["drivers"] = json!(r.drivers);
    }
    doc
}

/// `GET /v1/conductors`: every coordinator registered in the database
/// (the members of the group), with `alive` by the database's clock.
pub async fn conductors(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    let rows = st
        .conductor
        .db()
        .list_conductors(st.conductor.cluster().timeout_ms())
        .await?;
    let detail = ctx.bool_param("detail")?.unwrap_or(true);
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| conductor_doc(&ctx.base, r, detail))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"conductors": list})))
}

/// `GET /v1/conductors/{hostname}`
pub async fn conductor(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let rows = st
        .conductor
        .db()
        .list_conductors(st.conductor.cluster().timeout_ms())
        .await?;
    let row = rows
        .iter()
        .find(|r| r.hostname == name)
        .ok_or_else(|| ApiError::not_found(format!("Conductor {name} could not be found.")))?;
    Ok(json_response(
        StatusCode::OK,
        &conductor_doc(&ctx.base, row, true),
    ))
}
