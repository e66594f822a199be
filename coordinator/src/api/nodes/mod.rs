//! `/v1/nodes`: create, list (filters, fields, detail, pagination), show,
//! JSON-Patch update (with the `instance_uuid` reservation) and delete; the
//! node's sub-resources are in the submodules, one a resource.

pub mod boot_device;
pub mod console;
pub mod history;
pub mod inventory;
pub mod maintenance;
pub mod power;
pub mod provision;
pub mod render;
pub mod states;
pub mod traits;
pub mod transcode;
pub mod validate;
pub mod vifs;

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::collection;
use super::handler::{CreateBody, assign_uuid, from_body, with_location};
use super::{ApiError, AppState, Ctx, Req, empty, json_response, patch, versions};
use crate::db::listed_node::ListedNode;
use crate::db::node_query::{NodeQuery, SortKey};
use crate::drivers::hardware_type;
use crate::model::node::{INTERFACE_FIELDS, PATCHABLE_FIELDS};
use crate::model::{Node, is_uuid, now_iso};
use crate::state::ProvisionState;

/// Fields shown by a list without `detail` or `fields`.
pub const DEFAULT_LIST_FIELDS: [&str; 7] = [
    "uuid",
    "name",
    "instance_uuid",
    "power_state",
    "provision_state",
    "maintenance",
    "links",
];

/// Every API field of a node.
pub fn known_fields() -> &'static [String] {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN.get_or_init(|| Node::default().to_api("").keys().cloned().collect())
}

/// Finds a node by UUID or name, or 404.
pub async fn find(st: &AppState, ident: &str) -> Result<Node, ApiError> {
    st.conductor
        .db()
        .get_node(ident)
        .await?
        .map(|(n, _)| n)
        .ok_or_else(|| ApiError::node_not_found(ident))
}

/// 409 NodeLocked while a conductor holds the node's lock.
pub fn check_unlocked(node: &Node) -> Result<(), ApiError> {
    match &node.reservation {
        Some(host) => Err(ApiError::node_locked(&node.uuid, host)),
        None => Ok(()),
    }
}

/// Changes node `uuid` unless a conductor holds its lock (409), in one
/// compare-and-swap write (`f` runs again on a lost race).
pub async fn update_unlocked(
    st: &AppState,
    uuid: &str,
    mut f: impl FnMut(&mut Node) -> Result<(), ApiError>,
) -> Result<Node, ApiError> {
    Ok(st
        .conductor
        .db()
        .update_node(uuid, |n| {
            check_unlocked(n)?;
            f(n)
        })
        .await?)
}

/// Names that are also paths under `/v1/nodes/`, so a node with one of
/// them could never be reached by name.
const RESERVED_NAMES: [&str; 1] = ["detail"];

/// Checks a node name: Ironic allows host-name characters plus `._~`, and
/// names must not look like UUIDs nor be a path of the API (`detail`).
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if RESERVED_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ApiError::bad_request(format!(
            "Node name {name} is reserved: /v1/nodes/{name} is another resource."
        )));
    }
    let ok = !name.is_empty()
        && name.len() <= 255
        && !is_uuid(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Expected a logical name but received {name}."
        )))
    }
}

/// Checks the lengths (Ironic's column sizes) and forms of a node's string
/// fields, so that no oversized or malformed value is stored.
pub fn validate_fields(node: &Node) -> Result<(), ApiError> {
    let limits: [(&str, Option<&str>, usize); 12] = [
        ("driver", Some(node.driver.as_str()), 255),
        ("resource_class", node.resource_class.as_deref(), 80),
        ("conductor_group", Some(node.conductor_group.as_str()), 255),
        ("owner", node.owner.as_deref(), 255),
        ("lessee", node.lessee.as_deref(), 255),
        ("shard", node.shard.as_deref(), 255),
        ("description", node.description.as_deref(), 4096),
        (
            "maintenance_reason",
            node.maintenance_reason.as_deref(),
            4096,
        ),
        ("protected_reason", node.protected_reason.as_deref(), 4096),
        ("retired_reason", node.retired_reason.as_deref(), 4096),
        ("parent_node", node.parent_node.as_deref(), 255),
        ("instance_name", node.instance_name.as_deref(), 255),
    ];
    for (field, value, max) in limits {
        if let Some(v) = value
            && v.chars().count() > max
        {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {field}. Value: {} characters; at most {max} are allowed.",
                v.chars().count()
            )));
        }
    }
    if node.instance_name.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute instance_name. Value: ''. '' is too short",
        ));
    }
    let group = &node.conductor_group;
    if !group
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "Invalid conductor_group {group:?}: only letters, digits, '_', '-' and '.' are allowed."
        )));
    }
    Ok(())
}

/// Checks the root device hints in `properties` and `instance_info`, as
/// Ironic does on create and update (a bad hint fails now, not at deploy).
pub fn validate_root_device(node: &Node) -> Result<(), ApiError> {
    for (field, map) in [
        ("properties", &node.properties),
        ("instance_info", &node.instance_info),
    ] {
        let Some(hints) = map.get("root_device") else {
            continue;
        };
        let Some(hints) = hints.as_object() else {
            return Err(ApiError::bad_request(format!(
                "Invalid root device hints in {field}: root_device must be an object, not {hints}"
            )));
        };
        ingot_proto::hints::validate(hints).map_err(|e| {
            ApiError::bad_request(format!("Invalid root device hints in {field}: {e}"))
        })?;
    }
    Ok(())
}

/// Checks and fills the interfaces of a node against its hardware type.
/// `reset` fills unset interfaces with the defaults.
pub fn validate_interfaces(node: &mut Node) -> Result<(), ApiError> {
    let hw = hardware_type(&node.driver).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Could not find the following driver(s) or hardware type(s): {}.",
            node.driver
        ))
    })?;
    let mut v = match serde_json::to_value(&*node) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::internal("node does not serialize")),
    };
    for (field, iface) in INTERFACE_FIELDS {
        let supported = hw.supported(iface);
        match v.get(field).and_then(Value::as_str) {
            Some(given) if !supported.contains(&given) => {
                return Err(ApiError::bad_request(format!(
                    "Could not find the following interface in the 'ironic.hardware.interfaces.{iface}' entrypoint: {given}. Valid interfaces are {}.",
                    supported.join(", ")
                )));
            }
            Some(_) => {}
            None => {
                v.insert(
                    field.to_owned(),
                    supported
                        .first()
                        .map(|s| Value::String((*s).to_owned()))
                        .unwrap_or(Value::Null),
                );
            }
        }
    }
    *node = serde_json::from_value(Value::Object(v))
        .map_err(|e| ApiError::internal(format!("node does not parse back: {e}")))?;
    Ok(())
}

/// A node as `ctx`'s caller may see it.
fn shown(node: &Node, ctx: &Ctx) -> Result<Map<String, Value>, ApiError> {
    let mut obj = node.to_api(&ctx.base);
    super::policy::redact_node(ctx.caller()?, node, &mut obj);
    versions::node_at(&mut obj, ctx.version);
    Ok(obj)
}

/// The node as the API shows it: its `conductor` is the coordinator that
/// acts for it now (the hash ring's owner among the alive members, as in
/// Ironic), not the one that acted last.
fn with_owner(c: &crate::conductor::Conductor, node: &Node) -> Node {
    let mut n = node.clone();
    n.conductor = c.cluster().owner(node);
    n
}

fn node_response(
    st: &AppState,
    status: StatusCode,
    node: &Node,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    versions::check_requested_fields(ctx, versions::NODE_FIELDS)?;
    let node = with_owner(&st.conductor, node);
    let obj = collection::select(ctx, shown(&node, ctx)?, known_fields())?;
    Ok(json_response(status, &Value::Object(obj)))
}

/// `POST /v1/nodes`
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut allowed: Vec<&str> = PATCHABLE_FIELDS.to_vec();
    allowed.push("uuid");
    let create = CreateBody {
        what: "node",
        allowed: &allowed,
        required: &["driver"],
        fields: versions::NODE_FIELDS,
    };
    let mut node: Node = from_body(create.parse::<Node>(&ctx, &body)?, "node")?;
    // A project administrator (or service) creates nodes its project owns
    // (Ironic's baremetal:node:create:self_owned_node).
    super::policy::owned_by_caller(
        ctx.caller()?,
        &mut node.owner,
        super::policy::Rule::SystemAdmin,
        "baremetal:node:create",
        "baremetal:node:create:self_owned_node",
    )?;
    assign_uuid(&mut node.uuid)?;
    if let Some(n) = &node.name {
        validate_name(n)?;
    }
    if let Some(i) = &node.instance_uuid {
        if !is_uuid(i) {
            return Err(ApiError::bad_request(format!(
                "Expected a UUID for instance_uuid but received {i}."
            )));
        }
    }
    validate_fields(&node)?;
    validate_interfaces(&mut node)?;
    validate_root_device(&node)?;
    node.provision_state = if ctx.version.at_least(11) {
        ProvisionState::Enroll
    } else {
        ProvisionState::Available
    };
    // provision_updated_at stays null until the first state change, as in Ironic.
    node.created_at = Some(now_iso());
    node.progress_ms = crate::model::now_ms();
    node.conductor = Some(st.conductor.name().to_owned());
    if let Err(e) = st.conductor.db().insert_node(&node).await {
        return Err(match (e, &node.name) {
            (crate::db::DbError::Conflict(_), Some(name)) => {
                ApiError::conflict(format!("A node with name {name} already exists."))
            }
            (crate::db::DbError::Conflict(_), None) => {
                ApiError::conflict(format!("A node with UUID {} already exists.", node.uuid))
            }
            (e, _) => e.into(),
        });
    }
    tracing::info!(node = %node.uuid, driver = %node.driver, "node created");
    let resp = node_response(&st, StatusCode::CREATED, &node, &ctx)?;
    Ok(with_location(
        resp,
        &ctx,
        &format!("/v1/nodes/{}", node.uuid),
    ))
}

/// Ironic's node faults (`fault=` filter values).
const FAULTS: [&str; 4] = [
    "power failure",
    "clean failure",
    "rescue abort failure",
    "service failure",
];

/// Checks filter values that Ironic refuses whatever the nodes: an unknown
/// `fault` (400) and a `chassis_uuid` (404: Ingot has no chassis).
fn check_filter_values(ctx: &Ctx) -> Result<(), ApiError> {
    if let Some(f) = ctx.param("fault") {
        if !FAULTS.contains(&f) {
            return Err(ApiError::bad_request(format!(
                "Unrecognized fault \"{f}\" is specified, allowed faults are ({}).",
                FAULTS.map(|f| format!("'{f}'")).join(", ")
            )));
        }
    }
    if let Some(c) = ctx.param("chassis_uuid") {
        return Err(ApiError::not_found(format!(
            "Chassis {c} could not be found."
        )));
    }
    Ok(())
}

fn matches_filters(node: &Node, ctx: &Ctx) -> Result<bool, ApiError> {
    let eq = |key: &str, actual: Option<&str>| -> bool {
        match ctx.param(key) {
            None => true,
            Some(want) => actual == Some(want),
        }
    };
    if !eq("provision_state", Some(node.provision_state.as_str()))
        || !eq("resource_class", node.resource_class.as_deref())
        || !eq("instance_uuid", node.instance_uuid.as_deref())
        || !eq("driver", Some(node.driver.as_str()))
        || !eq("owner", node.owner.as_deref())
        || !eq("lessee", node.lessee.as_deref())
        || !eq("fault", node.fault.as_deref())
        || !eq("chassis_uuid", node.chassis_uuid.as_deref())
        || !eq("conductor", node.conductor.as_deref())
        || !eq("instance_name", node.instance_name.as_deref())
    {
        return Ok(false);
    }
    // Child nodes are listed only when asked for (Ironic 1.83).
    match (
        ctx.param("parent_node"),
        ctx.bool_param("include_children")?,
    ) {
        (Some(p), _) => {
            if node.parent_node.as_deref() != Some(p) {
                return Ok(false);
            }
        }
        (None, Some(true)) => {}
        (None, _) => {
            if node.parent_node.is_some() {
                return Ok(false);
            }
        }
    }
    if let Some(s) = ctx.bool_param("sharded")? {
        if s != node.shard.is_some() {
            return Ok(false);
        }
    }
    if let Some(g) = ctx.param("conductor_group") {
        if !g.eq_ignore_ascii_case(&node.conductor_group) {
            return Ok(false);
        }
    }
    if let Some(s) = ctx.param("shard") {
        if !s.split(',').any(|s| Some(s) == node.shard.as_deref()) {
            return Ok(false);
        }
    }
    if let Some(a) = ctx.bool_param("associated")? {
        if a != node.instance_uuid.is_some() {
            return Ok(false);
        }
    }
    if let Some(m) = ctx.bool_param("maintenance")? {
        if m != node.maintenance {
            return Ok(false);
        }
    }
    if let Some(r) = ctx.bool_param("retired")? {
        if r != node.retired {
            return Ok(false);
        }
    }
    if let Some(d) = ctx.param("description_contains") {
        if !node.description.as_deref().is_some_and(|x| x.contains(d)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Node list filters without a column: the coordinator applies them to
/// the rows the database selected (all of them: no `LIMIT` then, and the
/// page is cut in memory). `conductor` is the hash ring's owner, computed
/// per request.
const MEMORY_FILTERS: [&str; 3] = ["conductor", "instance_name", "description_contains"];

/// The node list filters that have a column, as a database select
/// (the same tests as [`matches_filters`], which still runs on the result).
fn sql_filters(ctx: &Ctx, q: &mut NodeQuery) -> Result<(), ApiError> {
    for (param, column) in [
        ("provision_state", "provision_state"),
        ("resource_class", "resource_class"),
        ("instance_uuid", "instance_uuid"),
        ("driver", "driver"),
        ("owner", "owner"),
        ("lessee", "lessee"),
        ("fault", "fault"),
    ] {
        if let Some(v) = ctx.param(param) {
            q.eq(column, v);
        }
    }
    match (
        ctx.param("parent_node"),
        ctx.bool_param("include_children")?,
    ) {
        (Some(p), _) => {
            q.eq("parent_node", p);
        }
        (None, Some(true)) => {}
        (None, _) => {
            q.null("parent_node", true);
        }
    }
    if let Some(s) = ctx.bool_param("sharded")? {
        q.null("shard", !s);
    }
    if let Some(g) = ctx.param("conductor_group") {
        q.eq("conductor_group", &g.to_ascii_lowercase());
    }
    if let Some(s) = ctx.param("shard") {
        q.shard_in(&s.split(',').collect::<Vec<_>>());
    }
    if let Some(a) = ctx.bool_param("associated")? {
        q.null("instance_uuid", !a);
    }
    if let Some(m) = ctx.bool_param("maintenance")? {
        q.flag("maintenance", m);
    }
    if let Some(r) = ctx.bool_param("retired")? {
        q.flag("retired", r);
    }
    Ok(())
}

/// Maps of a node that only a field list naming them shows: emptied
/// before rendering when `fields=` leaves them out (Nova's periodic list
/// asks for eleven cheap fields).
fn trim_unrequested(node: &mut Node, fields: &[String]) {
    let wants = |f: &str| fields.iter().any(|x| x == f);
    for (name, map) in [
        ("driver_info", &mut node.driver_info),
        ("driver_internal_info", &mut node.driver_internal_info),
        ("extra", &mut node.extra),
        ("instance_info", &mut node.instance_info),
        ("properties", &mut node.properties),
        ("clean_step", &mut node.clean_step),
        ("deploy_step", &mut node.deploy_step),
        ("service_step", &mut node.service_step),
        ("network_data", &mut node.network_data),
        ("raid_config", &mut node.raid_config),
        ("target_raid_config", &mut node.target_raid_config),
    ] {
        if !wants(name) {
            map.clear();
        }
    }
}

/// The nodes of a list as the caller sees them, filtered by
/// [`matches_filters`] (a no-op on what the database selected, except for
/// [`MEMORY_FILTERS`]).
fn shown_nodes(
    st: &AppState,
    ctx: &Ctx,
    nodes: Vec<Node>,
    fields: Option<&[String]>,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let caller = ctx.caller()?;
    let needs_owner = ctx.param("conductor").is_some()
        || fields.is_none_or(|f| f.iter().any(|x| x == "conductor"));
    let mut items = Vec::with_capacity(nodes.len());
    for mut node in nodes {
        if needs_owner {
            node.conductor = st.conductor.cluster().owner(&node);
        }
        if !(super::policy::sees_node(caller, &node) && matches_filters(&node, ctx)?) {
            continue;
        }
        node.inventory = None;
        if let Some(f) = fields {
            trim_unrequested(&mut node, f);
        }
        items.push(shown(&node, ctx)?);
    }
    Ok(items)
}

/// One page of the list as the caller sees it, written into one buffer
/// (see [`render`]): `{"next": …, "nodes": […]}` as [`collection::render`]
/// writes it. `nodes` are the page's, already ordered and cut, read with
/// their documents as text ([`crate::db::listed_node`]).
fn render_page(
    st: &AppState,
    ctx: &Ctx,
    path: &str,
    p: &collection::Params,
    nodes: Vec<ListedNode<'_>>,
    fields: Option<&[String]>,
    full: bool,
) -> Result<Vec<u8>, ApiError> {
    let caller = ctx.caller()?;
    let view = render::View::new(&ctx.base, ctx.version, fields);
    let needs_owner = ctx.param("conductor").is_some() || view.shows("conductor");
    // Filtered in place: a `ListedNode` holds a whole `Node`, and moving a
    // thousand of them into another vector cost a copy of megabytes.
    let mut page = nodes;
    let mut shown = Vec::with_capacity(page.len());
    for listed in &mut page {
        if needs_owner {
            listed.node.conductor = st.conductor.cluster().owner(&listed.node);
        }
        shown.push(
            super::policy::sees_node(caller, &listed.node) && matches_filters(&listed.node, ctx)?,
        );
    }
    let mut shown = shown.into_iter();
    page.retain(|_| shown.next().unwrap_or(false));
    let last = page.last().map(|n| n.node.uuid.as_str());
    let next = collection::next_link(ctx, path, p.limit, full, page.len(), last);
    let err = |e: serde_json::Error| ApiError::internal(format!("rendering the node list: {e}"));
    let hint = &PAGE_BYTES_PER_NODE[usize::from(fields.is_some())];
    let per_node = hint.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = Vec::with_capacity(page.len().saturating_mul(per_node).saturating_add(512));
    out.push(b'{');
    if let Some(next) = next {
        out.extend_from_slice(b"\"next\":");
        serde_json::to_writer(&mut out, &next).map_err(err)?;
        out.push(b',');
    }
    out.extend_from_slice(b"\"nodes\":[");
    let mut first = true;
    for listed in &page {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        let written = if super::policy::redacts_node(caller, &listed.node) {
            Err(None)
        } else {
            let r = render::Rendered {
                view: &view,
                node: &listed.node,
                conductor: listed.node.conductor.as_deref(),
                listed: Some(listed),
            };
            serde_json::to_writer(&mut out, &r).map_err(Some)
        };
        if let Err(e) = written {
            // A node the caller may not see whole, or a document that only a
            // full read refuses (then it is left out, as reading it whole
            // at load time left it out before): the node's own path.
            out.truncate(mark);
            if let Some(e) = e {
                tracing::debug!(node = %listed.node.uuid, error = %e, "rendering from the whole document");
            }
            let text = listed.text();
            let mut node = match st.conductor.db().whole_node(text) {
                Ok(n) => n,
                Err(e) => {
                    crate::db::node_query::skipped(&text.uuid, &e);
                    continue;
                }
            };
            if !first {
                out.push(b',');
            }
            node.conductor.clone_from(&listed.node.conductor);
            write_whole(&mut out, ctx, caller, &view, &node, fields)?;
        }
        first = false;
    }
    out.extend_from_slice(b"]}");
    if let Some(per_node) = out.len().checked_div(page.len()) {
        // Room for the next page: this one's size a node, and a little more.
        hint.store(
            per_node.saturating_add(per_node / 8).clamp(256, 64 * 1024),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    Ok(out)
}

/// The bytes a node took on the last page rendered (with some slack), for
/// pages of every field and for pages with a field list: the next page's
/// buffer is sized from it, so that it is not grown (copied) while written.
/// The detail view of a plain node takes about 3 kB.
static PAGE_BYTES_PER_NODE: [std::sync::atomic::AtomicUsize; 2] = [
    std::sync::atomic::AtomicUsize::new(2048),
    std::sync::atomic::AtomicUsize::new(512),
];

/// Writes `node` (read whole) into a page: with [`render`], or as the
/// old path shows it when `caller` may not see all its fields.
fn write_whole(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    caller: &crate::auth::Caller,
    view: &render::View<'_>,
    node: &Node,
    fields: Option<&[String]>,
) -> Result<(), ApiError> {
    let err = |e: serde_json::Error| ApiError::internal(format!("rendering the node list: {e}"));
    if !super::policy::redacts_node(caller, node) {
        let r = render::Rendered {
            view,
            node,
            conductor: node.conductor.as_deref(),
            listed: None,
        };
        return serde_json::to_writer(out, &r).map_err(err);
    }
    // The few fields a lessee may not see: the old path.
    let mut node = node.clone();
    node.inventory = None;
    if let Some(f) = fields {
        trim_unrequested(&mut node, f);
    }
    let obj = shown(&node, ctx)?;
    let obj = match fields {
        Some(f) => collection::project(obj, f),
        None => obj,
    };
    serde_json::to_writer(out, &obj).map_err(err)
}

async fn list_inner(
    st: &AppState,
    ctx: &Ctx,
    detail: bool,
    path: &str,
) -> Result<Response, ApiError> {
    versions::check_params(ctx, versions::NODE_LIST_PARAMS)?;
    versions::check_requested_fields(ctx, versions::NODE_FIELDS)?;
    versions::check_filters(ctx, versions::NODE_FILTERS)?;
    check_filter_values(ctx)?;
    let detail = detail || ctx.bool_param("detail")?.unwrap_or(false);
    let p = collection::Params::parse(ctx, known_fields(), detail)?;
    let mut q = NodeQuery::default();
    q.scope(&super::policy::node_list_scope(ctx.caller()?));
    sql_filters(ctx, &mut q)?;
    let db = st.conductor.db();
    let in_sql = !MEMORY_FILTERS.iter().any(|f| ctx.param(f).is_some());
    if let Some(sort) = SortKey::from_api(&p.sort_key).filter(|_| in_sql) {
        // Everything in the database: filters, order, marker, limit.
        q.order(sort, p.desc).limit(p.limit.saturating_add(1));
        if let Some(m) = &p.marker {
            q.after(m);
        }
        let texts = db.query_node_texts(&q).await?.ok_or_else(|| {
            collection::marker_not_found("nodes", p.marker.as_deref().unwrap_or_default())
        })?;
        let mut nodes = Vec::with_capacity(texts.len());
        for t in &texts {
            match db.listed_node(t) {
                Ok(n) => nodes.push(n),
                Err(e) => crate::db::node_query::skipped(&t.uuid, &e),
            }
        }
        let full = nodes.len() > p.limit;
        nodes.truncate(p.limit);
        // The short form without `detail` is a field list too.
        let short: Vec<String>;
        let fields = match (&p.fields, detail) {
            (Some(f), _) => Some(f.as_slice()),
            (None, false) => {
                short = DEFAULT_LIST_FIELDS.map(str::to_owned).to_vec();
                Some(short.as_slice())
            }
            (None, true) => None,
        };
        let body = render_page(st, ctx, path, &p, nodes, fields, full)?;
        return Ok(super::json_bytes_response(StatusCode::OK, body));
    }
    // A sort key or a filter without a column: the database filters what
    // it can, the rest is done on every row it returns.
    let nodes = db.query_nodes(&q).await?.unwrap_or_default();
    let items = shown_nodes(st, ctx, nodes, None)?;
    let body = collection::page(
        ctx,
        "nodes",
        path,
        items,
        known_fields(),
        Some(&DEFAULT_LIST_FIELDS),
        detail,
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/nodes`
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    list_inner(&st, &ctx, false, "/v1/nodes").await
}

/// `GET /v1/nodes/detail`
pub async fn list_detail(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    if ctx.param("fields").is_some() {
        return Err(ApiError::bad_request("Can not specify fields on /detail."));
    }
    list_inner(&st, &ctx, true, "/v1/nodes/detail").await
}

/// `GET /v1/nodes/{ident}`
pub async fn show(req: Req) -> Result<Response, ApiError> {
    versions::check_params(&req.ctx, versions::SHOW_PARAMS)?;
    node_response(&req.st, StatusCode::OK, &req.node().await?, &req.ctx)
}

/// Applies a JSON patch to a node, with Ironic's checks. Pure: used inside
/// the compare-and-swap loop.
pub fn patch_node(node: &mut Node, ops: &[patch::PatchOp]) -> Result<(), ApiError> {
    let only_instance_removal = ops
        .iter()
        .all(|o| o.op == "remove" && o.path == "/instance_uuid");
    check_unlocked(node)?;
    if node.target_provision_state.is_some()
        && !node.provision_state.allows_update_in_transition()
        && !(node.maintenance && only_instance_removal)
    {
        return Err(ApiError::conflict(format!(
            "Node {} can not be updated while a state transition is in progress.",
            node.uuid
        )));
    }
    let before = node.clone();
    let mut updated = patch::apply_to(&before, ops, "node")?;
    // Fields outside PATCHABLE_FIELDS were refused before; keep the rest as it was.
    updated.uuid = before.uuid.clone();
    if updated.driver != before.driver
        || INTERFACE_FIELDS.iter().any(|(f, _)| {
            serde_json::to_value(&updated)
                .ok()
                .and_then(|v| v.get(*f).cloned())
                != serde_json::to_value(&before)
                    .ok()
                    .and_then(|v| v.get(*f).cloned())
        })
    {
        validate_interfaces(&mut updated)?;
    }
    if updated.properties.get("root_device") != before.properties.get("root_device")
        || updated.instance_info.get("root_device") != before.instance_info.get("root_device")
    {
        validate_root_device(&updated)?;
    }
    if let Some(n) = &updated.name {
        if updated.name != before.name {
            validate_name(n)?;
        }
    }
    validate_fields(&updated)?;
    match (&before.instance_uuid, &updated.instance_uuid) {
        (Some(old), Some(new)) if old != new => {
            return Err(ApiError::conflict(format!(
                "Node {} is associated with instance {old}.",
                before.uuid
            )));
        }
        (_, Some(new)) if !is_uuid(new) => {
            return Err(ApiError::bad_request(format!(
                "Expected a UUID for instance_uuid but received {new}."
            )));
        }
        _ => {}
    }
    if !updated.maintenance {
        updated.maintenance_reason = None;
    }
    // As Ironic: a new instance_info's display_name names the instance,
    // unless a name is already set.
    if updated.instance_info != before.instance_info && updated.instance_name.is_none() {
        updated.instance_name = updated
            .instance_info
            .get("display_name")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    *node = updated;
    Ok(())
}

/// `PATCH /v1/nodes/{ident}`
pub async fn update(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let Req { st, ctx, .. } = &req;
    let (ops, roots) = patch::parse_for(&body, versions::NODE_FIELDS, ctx.version)?;
    for op in &ops {
        let root = op.root();
        if !PATCHABLE_FIELDS.contains(&root.as_str()) {
            return Err(if known_fields().contains(&root) {
                ApiError::bad_request(format!(
                    "'/{root}' is an internal attribute and can not be updated"
                ))
            } else {
                ApiError::bad_request(format!(
                    "Adding a new attribute (/{root}) to the root of the resource is not allowed."
                ))
            });
        }
        if root == "driver" && op.op == "remove" {
            return Err(ApiError::bad_request(
                "'/driver' is a mandatory attribute and can not be removed",
            ));
        }
    }
    let node = req.node().await?;
    super::policy::check_node_patch(ctx.caller()?, &node, &roots)?;
    let updated = st
        .conductor
        .db()
        .update_node(&node.uuid, |n| patch_node(n, &ops))
        .await
        .map_err(|e| match e {
            crate::db::UpdateError::Db(crate::db::DbError::Conflict(_)) => {
                ApiError::conflict(format!(
                    "Node {} could not be updated: another node already has this name or instance_uuid (the instance may be associated with another node).",
                    node.uuid
                ))
            }
            other => other.into(),
        })?;
    // Removing the instance (Nova's cleanup after a failed spawn) frees its
    // VIFs too, so that the next instance finds the NICs free.
    if node.instance_uuid.is_some() && updated.instance_uuid.is_none() {
        st.conductor.detach_vifs(&updated.uuid).await?;
    }
    node_response(st, StatusCode::OK, &updated, ctx)
}

/// `DELETE /v1/nodes/{ident}`
pub async fn delete(req: Req) -> Result<Response, ApiError> {
    let st = &req.st;
    let node = req.node().await?;
    // Lock the node for deletion so nothing starts on it meanwhile.
    let me = st.conductor.name().to_owned();
    update_unlocked(st, &node.uuid, |n| {
            if !n.provision_state.allows_delete() && !n.maintenance {
                return Err(ApiError::conflict(format!(
                    "Can not delete node {} while it is in provision state \"{}\". Valid provision states to start deletion are: manageable, enroll, available.",
                    n.uuid, n.provision_state
                )));
            }
            // In maintenance an associated node may go too (Ironic's way
            // out for hopelessly broken nodes); its allocation goes with it.
            if let Some(i) = n.instance_uuid.as_ref().filter(|_| !n.maintenance) {
                return Err(ApiError::conflict(format!(
                    "Node {} is associated with instance {i}.",
                    n.uuid
                )));
            }
            if n.protected {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("Node {} is protected and cannot be undeployed, rebuilt or deleted", n.uuid),
                ));
            }
            n.reservation = Some(me.clone());
            Ok(())
        })
        .await?;
    let ports = st.conductor.db().list_ports(Some(&node.uuid)).await?;
    st.conductor.db().delete_node(&node.uuid).await?;
    // Its switch ports go to quarantine (conductor/network.rs).
    st.conductor.quarantine_deleted(&node, ports);
    if let Some(alloc) = &node.allocation_uuid {
        match st.conductor.db().delete_allocation(alloc).await {
            Ok(_) | Err(crate::db::DbError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(node = %node.uuid, allocation = %alloc, error = %e, "deleting the allocation of a deleted node failed");
            }
        }
    }
    st.conductor.consoles().stop(&node.uuid).await;
    tracing::info!(node = %node.uuid, "node deleted");
    Ok(empty(StatusCode::NO_CONTENT))
}
