//! `/v1/ports`: create, list (`node`, `node_uuid`, `address` filters), show,
//! JSON-Patch update and delete.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::collection;
use super::handler::{CreateBody, assign_uuid, from_body, with_location};
use super::nodes::{check_unlocked, find};
use super::{ApiError, AppState, Ctx, Req, empty, json_ok, json_response, patch, versions};
use crate::model::port::{WRITABLE_FIELDS, normalize_mac};
use crate::model::{Port, is_uuid, now_iso};

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
    let create = CreateBody {
        what: "port",
        allowed: &allowed,
        required: &["address", "node_uuid"],
        fields: versions::PORT_FIELDS,
    };
    let mut port: Port = from_body(create.parse::<Port>(&ctx, &body)?, "port")?;
    assign_uuid(&mut port.uuid)?;
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
    let resp = json_response(StatusCode::CREATED, &Value::Object(shown(&port, &ctx)));
    Ok(with_location(
        resp,
        &ctx,
        &format!("/v1/ports/{}", port.uuid),
    ))
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
    let db = st.conductor.db();
    // By MAC: one row through the unique index on `ports.address`.
    let mut ports = match &address {
        Some(a) => db
            .get_port_by_address(a)
            .await?
            .into_iter()
            .filter(|p| node_uuid.as_ref().is_none_or(|n| *n == p.node_uuid))
            .collect(),
        None => db.list_ports(node_uuid.as_deref()).await?,
    };
    // Callers who may not list every port see those of nodes they see.
    let caller = ctx.caller()?;
    if !super::policy::Rule::SystemReader.allows(caller, Default::default()) {
        let visible: std::collections::HashSet<String> = if address.is_some() {
            let mut v = std::collections::HashSet::new();
            for p in &ports {
                if let Some((n, _)) = db.get_node(&p.node_uuid).await? {
                    if super::policy::sees_node(caller, &n) {
                        v.insert(n.uuid);
                    }
                }
            }
            v
        } else {
            // The database selects the nodes whose owner or lessee is the
            // caller's project.
            let mut q = crate::db::node_query::NodeQuery::default();
            q.scope(&super::policy::node_list_scope(caller));
            db.query_nodes(&q)
                .await?
                .unwrap_or_default()
                .iter()
                .filter(|n| super::policy::sees_node(caller, n))
                .map(|n| n.uuid.clone())
                .collect()
        };
        ports.retain(|p| visible.contains(&p.node_uuid));
    }
    let items: Vec<Map<String, Value>> = ports.iter().map(|p| shown(p, ctx)).collect();
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
pub async fn list_of_node(req: Req) -> Result<Response, ApiError> {
    list_inner(&req.st, &req.ctx, Some(req.ident), false, "/v1/ports").await
}

/// `GET /v1/nodes/{ident}/ports/detail`
pub async fn list_of_node_detail(req: Req) -> Result<Response, ApiError> {
    list_inner(&req.st, &req.ctx, Some(req.ident), true, "/v1/ports/detail").await
}

/// The port the path names (by UUID or MAC address), or 404.
async fn find_port(req: &Req) -> Result<Port, ApiError> {
    let (db, ident) = (req.st.conductor.db(), &req.ident);
    let found = if is_uuid(ident) {
        db.get_port(ident).await?
    } else {
        match normalize_mac(ident) {
            Some(mac) => db.get_port_by_address(&mac).await?,
            None => None,
        }
    };
    found.ok_or_else(|| ApiError::not_found(format!("Port {ident} could not be found.")))
}

/// `GET /v1/ports/{uuid}`
pub async fn show(req: Req) -> Result<Response, ApiError> {
    let ctx = &req.ctx;
    versions::check_params(ctx, versions::SHOW_PARAMS)?;
    versions::check_requested_fields(ctx, versions::PORT_FIELDS)?;
    let port = find_port(&req).await?;
    let obj = collection::select(ctx, shown(&port, ctx), known_fields())?;
    Ok(json_response(StatusCode::OK, &Value::Object(obj)))
}

/// `PATCH /v1/ports/{uuid}`
pub async fn update(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let (ops, roots) = patch::parse_for(&body, versions::PORT_FIELDS, req.ctx.version)?;
    for root in roots {
        if !WRITABLE_FIELDS.contains(&root.as_str()) {
            return Err(ApiError::bad_request(format!(
                "'/{root}' is an internal attribute and can not be updated"
            )));
        }
    }
    let port = find_port(&req).await?;
    let mut updated = patch::apply_to(&port, &ops, "port")?;
    updated.uuid = port.uuid.clone();
    updated.internal_info = port.internal_info.clone();
    check(&req.st, &mut updated).await?;
    updated.updated_at = Some(now_iso());
    req.st.conductor.db().update_port(&updated).await?;
    json_ok(Value::Object(shown(&updated, &req.ctx)))
}

/// `DELETE /v1/ports/{uuid}`
pub async fn delete(req: Req) -> Result<Response, ApiError> {
    let port = find_port(&req).await?;
    let db = req.st.conductor.db();
    let node = db.get_node(&port.node_uuid).await?.map(|(n, _)| n);
    if let Some(node) = &node {
        check_unlocked(node)?;
    }
    db.delete_port(&port.uuid).await?;
    // A switched port nobody manages any more goes to quarantine.
    if let Some(node) = &node {
        req.st.conductor.quarantine_deleted(node, vec![port]);
    }
    Ok(empty(StatusCode::NO_CONTENT))
}
