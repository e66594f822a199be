//! `/v1/ports`: create, list (`node`, `node_uuid`, `address` filters), show,
//! JSON-Patch update and delete.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

use super::collection::{self, fields, project};
use super::nodes::find;
use super::{ApiError, AppState, Ctx, empty, json_response, parse_object, patch, versions};
use crate::model::port::{WRITABLE_FIELDS, normalize_mac};
use crate::model::{Port, is_uuid, new_uuid, now_iso};

/// Every API field of a port.
pub fn known_fields() -> &'static [String] {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN.get_or_init(|| Port::default().to_api("").keys().cloned().collect())
}

/// A port as the request's version shows it.
fn shown(port: &Port, ctx: &Ctx) -> Map<String, Value> {
    let mut doc = port.to_api(&ctx.base);
    versions::hide(&mut doc, versions::PORT_FIELDS, ctx.version);
    doc
}

async fn check(st: &AppState, port: &mut Port) -> Result<(), ApiError> {
    port.address = normalize_mac(&port.address).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Expected a MAC address but received {}.",
            port.address
        ))
    })?;
    if !is_uuid(&port.node_uuid) {
        return Err(ApiError::bad_request(format!(
            "Expected a UUID but received {}.",
            port.node_uuid
        )));
    }
    let node = st.conductor.db().get_node(&port.node_uuid).await?;
    if node.is_none() {
        return Err(ApiError::bad_request(format!(
            "Node {} could not be found.",
            port.node_uuid
        )));
    }
    Ok(())
}

/// `POST /v1/ports`
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut allowed = WRITABLE_FIELDS.to_vec();
    allowed.push("uuid");
    let mut obj = parse_object(&body, "port", &allowed)?;
    versions::check_create(&obj, versions::PORT_FIELDS, ctx.version)?;
    super::nulls_as_absent::<Port>(&mut obj);
    for required in ["address", "node_uuid"] {
        if !obj.get(required).is_some_and(Value::is_string) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute port. Value: '{required}' is a required property"
            )));
        }
    }
    let mut port: Port = serde_json::from_value(Value::Object(obj)).map_err(|e| {
        ApiError::bad_request(format!("Invalid input for field/attribute port: {e}"))
    })?;
    if port.uuid.is_empty() {
        port.uuid = new_uuid();
    } else if !is_uuid(&port.uuid) {
        return Err(ApiError::bad_request(format!(
            "Expected a UUID but received {}.",
            port.uuid
        )));
    }
    check(&st, &mut port).await?;
    let node = find(&st, &port.node_uuid).await?;
    super::policy::enforce(
        ctx.caller()?,
        super::policy::Rule::SystemAdminOrOwnerAdmin,
        "baremetal:port:create",
        super::policy::Target::node(&node),
    )?;
    port.created_at = Some(now_iso());
    st.conductor.db().insert_port(&port).await?;
    let mut resp = json_response(StatusCode::CREATED, &Value::Object(shown(&port, &ctx)));
    if let Ok(v) = HeaderValue::from_str(&format!("{}/v1/ports/{}", ctx.base, port.uuid)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list_inner(
    st: &AppState,
    ctx: &Ctx,
    node: Option<String>,
    detail: bool,
    path: &str,
) -> Result<Response, ApiError> {
    versions::check_params(ctx, versions::PORT_LIST_PARAMS)?;
    versions::check_requested_fields(ctx, versions::PORT_FIELDS)?;
    versions::check_filters(ctx, &[])?;
    let detail = detail || ctx.bool_param("detail")?.unwrap_or(false);
    let node_ident = node.or_else(|| {
        ctx.param("node")
            .or(ctx.param("node_uuid"))
            .map(str::to_owned)
    });
    let node_uuid = match node_ident {
        Some(i) => Some(find(st, &i).await?.uuid),
        None => None,
    };
    let address = ctx
        .param("address")
        .map(|a| normalize_mac(a).unwrap_or_else(|| a.to_owned()));
    // Callers who may not list every port see those of nodes they see.
    let caller = ctx.caller()?;
    let visible: Option<std::collections::HashSet<String>> =
        if super::policy::Rule::SystemReader.allows(caller, Default::default()) {
            None
        } else {
            Some(
                st.conductor
                    .db()
                    .list_nodes()
                    .await?
                    .iter()
                    .filter(|n| super::policy::sees_node(caller, n))
                    .map(|n| n.uuid.clone())
                    .collect(),
            )
        };
    let items: Vec<Map<String, Value>> = st
        .conductor
        .db()
        .list_ports(node_uuid.as_deref())
        .await?
        .iter()
        .filter(|p| address.as_ref().is_none_or(|a| *a == p.address))
        .filter(|p| visible.as_ref().is_none_or(|v| v.contains(&p.node_uuid)))
        .map(|p| shown(p, ctx))
        .collect();
    let body = collection::page(
        ctx,
        "ports",
        path,
        items,
        known_fields(),
        Some(&["uuid", "address", "links"]),
        detail,
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/ports`
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    list_inner(&st, &ctx, None, false, "/v1/ports").await
}

/// `GET /v1/ports/detail`
pub async fn list_detail(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    list_inner(&st, &ctx, None, true, "/v1/ports/detail").await
}

/// `GET /v1/nodes/{ident}/ports`
pub async fn list_of_node(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    list_inner(&st, &ctx, Some(ident), false, "/v1/ports").await
}

/// `GET /v1/nodes/{ident}/ports/detail`
pub async fn list_of_node_detail(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    list_inner(&st, &ctx, Some(ident), true, "/v1/ports/detail").await
}

async fn find_port(st: &AppState, ident: &str) -> Result<Port, ApiError> {
    let found = if is_uuid(ident) {
        st.conductor.db().get_port(ident).await?
    } else {
        match normalize_mac(ident) {
            Some(mac) => st.conductor.db().get_port_by_address(&mac).await?,
            None => None,
        }
    };
    found.ok_or_else(|| ApiError::not_found(format!("Port {ident} could not be found.")))
}

/// `GET /v1/ports/{uuid}`
pub async fn show(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    versions::check_params(&ctx, versions::SHOW_PARAMS)?;
    versions::check_requested_fields(&ctx, versions::PORT_FIELDS)?;
    let port = find_port(&st, &ident).await?;
    let obj = shown(&port, &ctx);
    let obj = match fields(&ctx, known_fields())? {
        Some(f) => project(obj, &f),
        None => obj,
    };
    Ok(json_response(StatusCode::OK, &Value::Object(obj)))
}

/// `PATCH /v1/ports/{uuid}`
pub async fn update(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ops = patch::parse(&body)?;
    let roots: Vec<String> = ops.iter().map(patch::PatchOp::root).collect();
    versions::check_patch(&roots, versions::PORT_FIELDS, ctx.version)?;
    for op in &ops {
        let root = op.root();
        if !WRITABLE_FIELDS.contains(&root.as_str()) {
            return Err(ApiError::bad_request(format!(
                "'/{root}' is an internal attribute and can not be updated"
            )));
        }
    }
    let port = find_port(&st, &ident).await?;
    let mut doc = match serde_json::to_value(&port) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::internal("port does not serialize")),
    };
    let defaults = match serde_json::to_value(Port::default()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    patch::apply(&mut doc, &ops, |f| {
        defaults.get(f).cloned().unwrap_or(Value::Null)
    })?;
    let mut updated: Port = serde_json::from_value(Value::Object(doc))
        .map_err(|e| ApiError::bad_request(format!("Invalid input for field/attribute: {e}")))?;
    updated.uuid = port.uuid.clone();
    updated.internal_info = port.internal_info.clone();
    check(&st, &mut updated).await?;
    updated.updated_at = Some(now_iso());
    st.conductor.db().update_port(&updated).await?;
    Ok(json_response(
        StatusCode::OK,
        &Value::Object(shown(&updated, &ctx)),
    ))
}

/// `DELETE /v1/ports/{uuid}`
pub async fn delete(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let port = find_port(&st, &ident).await?;
    if let Some((node, _)) = st.conductor.db().get_node(&port.node_uuid).await? {
        if let Some(host) = &node.reservation {
            return Err(ApiError::node_locked(&node.uuid, host));
        }
    }
    st.conductor.db().delete_port(&port.uuid).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
