//! `/v1/allocations`: a node picked by resource class, traits and candidate
//! list, reserved by setting its `instance_uuid` and `allocation_uuid` with
//! the same compare-and-swap as a Nova reservation (so two allocations, or an
//! allocation and Nova, never get the same node).

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::handler::{CreateBody, assign_uuid, from_body, with_location};
use super::{ApiError, AppState, Ctx, Req, empty, json_ok, json_response, patch, versions};
use crate::db::UpdateError;
use crate::model::{Allocation, now_iso};
use crate::state::ProvisionState;

/// Every API field of an allocation.
fn known_fields() -> &'static [String] {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN.get_or_init(|| Allocation::default().to_api("").keys().cloned().collect())
}

/// An allocation as the request's version shows it.
fn shown(a: &Allocation, ctx: &Ctx) -> Map<String, Value> {
    let mut doc = a.to_api(&ctx.base);
    versions::hide(&mut doc, versions::ALLOCATION_FIELDS, ctx.version);
    doc
}

/// The allocation the path names, or 404.
async fn find(req: &Req) -> Result<Allocation, ApiError> {
    let ident = &req.ident;
    req.st
        .conductor
        .db()
        .get_allocation(ident)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Allocation {ident} could not be found.")))
}

/// Picks and reserves a node; sets `state` to `active` or `error`. The
/// candidates and the failure messages are Ironic's: available, not in
/// maintenance, unassociated, with a known power state, of the resource
/// class (and owner, and `candidate_nodes`); then those with the traits.
async fn allocate(st: &AppState, a: &mut Allocation) -> Result<(), ApiError> {
    let nodes = st.conductor.db().list_nodes().await?;
    let eligible: Vec<_> = nodes
        .into_iter()
        .filter(|n| {
            n.provision_state == ProvisionState::Available
                && !n.maintenance
                && !n.retired
                && n.instance_uuid.is_none()
                && n.allocation_uuid.is_none()
                && n.power_state.is_some()
                && a.resource_class
                    .as_deref()
                    .is_none_or(|rc| n.resource_class.as_deref() == Some(rc))
                // An owned allocation picks among its project's nodes (Ironic).
                && a.owner
                    .as_ref()
                    .is_none_or(|o| n.owner.as_ref() == Some(o) || n.lessee.as_ref() == Some(o))
                && (a.candidate_nodes.is_empty()
                    || a.candidate_nodes
                        .iter()
                        .any(|c| *c == n.uuid || Some(c) == n.name.as_ref()))
        })
        .collect();
    let rc = a.resource_class.clone().unwrap_or_default();
    let failed = |a: &mut Allocation, why: String| {
        a.state = "error".into();
        a.last_error = Some(format!("Failed to process allocation {}: {why}.", a.uuid));
    };
    if eligible.is_empty() {
        let why = if a.candidate_nodes.is_empty() {
            format!("no available nodes match the resource class {rc}")
        } else {
            format!("none of the requested nodes are available and match the resource class {rc}")
        };
        failed(a, why);
        return Ok(());
    }
    let mut candidates: Vec<_> = eligible
        .into_iter()
        .filter(|n| a.traits.iter().all(|t| n.traits.contains(t)))
        .collect();
    if candidates.is_empty() {
        let why = format!(
            "no suitable nodes have the requested traits {}",
            a.traits.join(", ")
        );
        failed(a, why);
        return Ok(());
    }
    // Prefer a node whose name is the allocation's name (as Ironic does).
    candidates.sort_by_key(|n| n.name.is_none() || n.name != a.name);
    for node in candidates {
        let auuid = a.uuid.clone();
        let traits = a.traits.clone();
        let r = st
            .conductor
            .db()
            .update_node(&node.uuid, |n| {
                if n.instance_uuid.is_some()
                    || n.allocation_uuid.is_some()
                    || n.reservation.is_some()
                    || n.provision_state != ProvisionState::Available
                {
                    return Err(());
                }
                n.allocation_uuid = Some(auuid.clone());
                n.instance_uuid = Some(auuid.clone());
                // The allocation's traits (an empty list too) go to the
                // node's instance_info.traits, as Ironic copies them.
                n.instance_info
                    .insert("traits".into(), serde_json::json!(traits));
                Ok(())
            })
            .await;
        match r {
            Ok(n) => {
                a.node_uuid = Some(n.uuid);
                a.state = "active".into();
                a.last_error = None;
                return Ok(());
            }
            Err(UpdateError::Refused(()))
            | Err(UpdateError::Db(crate::db::DbError::Conflict(_))) => continue,
            Err(UpdateError::Db(e)) => return Err(e.into()),
        }
    }
    // Every candidate was taken meanwhile.
    failed(
        a,
        format!("no available nodes match the resource class {rc}"),
    );
    Ok(())
}

/// `POST /v1/allocations`
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let create = CreateBody {
        what: "allocation",
        allowed: &[
            "uuid",
            "name",
            "resource_class",
            "traits",
            "candidate_nodes",
            "extra",
            "owner",
            "node",
        ],
        required: &[],
        fields: versions::ALLOCATION_FIELDS,
    };
    let mut obj = create.parse::<Allocation>(&ctx, &body)?;
    if obj.get("node").is_some_and(Value::is_null) {
        obj.remove("node");
    }
    if obj.get("node").is_some_and(|n| !n.is_null()) {
        return Err(ApiError::bad_request(
            "Backfilling allocations (node) is not supported by this coordinator.",
        ));
    }
    let mut a: Allocation = from_body(obj, "allocation")?;
    // A project member allocates for its own project; naming another owner
    // needs baremetal:allocation:create_restricted (system members).
    super::policy::owned_by_caller(
        ctx.caller()?,
        &mut a.owner,
        super::policy::Rule::SystemMember,
        "baremetal:allocation:create",
        "baremetal:allocation:create_restricted",
    )?;
    if a.resource_class.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute allocation. Value: 'resource_class' is a required property",
        ));
    }
    assign_uuid(&mut a.uuid)?;
    if let Some(n) = &a.name {
        super::nodes::validate_name(n)?;
    }
    // Candidates named by name are stored as UUIDs, as Ironic does.
    let mut candidates = Vec::with_capacity(a.candidate_nodes.len());
    for c in &a.candidate_nodes {
        match st.conductor.db().get_node(c).await? {
            Some((n, _)) => candidates.push(n.uuid),
            None => {
                return Err(ApiError::bad_request(format!(
                    "Node {c} could not be found."
                )));
            }
        }
    }
    a.candidate_nodes = candidates;
    a.state = "allocating".into();
    a.created_at = Some(now_iso());
    st.conductor
        .db()
        .insert_allocation(&a)
        .await
        .map_err(|e| match e {
            crate::db::DbError::Conflict(_) => ApiError::conflict(format!(
                "An allocation with name {} already exists.",
                a.name.clone().unwrap_or_else(|| a.uuid.clone())
            )),
            e => e.into(),
        })?;
    allocate(&st, &mut a).await?;
    a.updated_at = Some(now_iso());
    st.conductor.db().update_allocation(&a).await?;
    let resp = json_response(StatusCode::CREATED, &Value::Object(shown(&a, &ctx)));
    Ok(with_location(
        resp,
        &ctx,
        &format!("/v1/allocations/{}", a.uuid),
    ))
}

/// `GET /v1/allocations`
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    versions::check_params(&ctx, versions::ALLOCATION_LIST_PARAMS)?;
    versions::check_requested_fields(&ctx, versions::ALLOCATION_FIELDS)?;
    let caller = ctx.caller()?;
    let node = match ctx.param("node") {
        Some(n) => Some(super::nodes::find(&st, n).await?.uuid),
        None => None,
    };
    let items: Vec<Map<String, Value>> = st
        .conductor
        .db()
        .list_allocations()
        .await?
        .iter()
        .filter(|a| {
            node.as_ref()
                .is_none_or(|n| a.node_uuid.as_ref() == Some(n))
        })
        .filter(|a| ctx.param("state").is_none_or(|s| a.state == s))
        .filter(|a| {
            ctx.param("resource_class")
                .is_none_or(|r| a.resource_class.as_deref() == Some(r))
        })
        .filter(|a| {
            ctx.param("owner")
                .is_none_or(|o| a.owner.as_deref() == Some(o))
        })
        .filter(|a| super::policy::sees_allocation(caller, a))
        .map(|a| shown(a, &ctx))
        .collect();
    let body = super::collection::page(
        &ctx,
        "allocations",
        "/v1/allocations",
        items,
        known_fields(),
        None,
        true,
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/allocations/{ident}`
pub async fn show(req: Req) -> Result<Response, ApiError> {
    let ctx = &req.ctx;
    versions::check_params(ctx, versions::SHOW_PARAMS)?;
    versions::check_requested_fields(ctx, versions::ALLOCATION_FIELDS)?;
    let a = find(&req).await?;
    json_ok(Value::Object(super::collection::select(
        ctx,
        shown(&a, ctx),
        known_fields(),
    )?))
}

/// `PATCH /v1/allocations/{ident}`: `name`, `extra` and `owner` only.
pub async fn update(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let (ops, _) = patch::parse_for(&body, versions::ALLOCATION_FIELDS, req.ctx.version)?;
    if let Some(op) = ops
        .iter()
        .find(|o| !["name", "extra", "owner"].contains(&o.root().as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "'{}' can not be updated on an allocation",
            op.path
        )));
    }
    let a = find(&req).await?;
    // The roots are name, extra and owner: their defaults are null, {} and null.
    let mut updated = patch::apply_to(&a, &ops, "allocation")?;
    if let Some(n) = &updated.name {
        super::nodes::validate_name(n)?;
    }
    updated.updated_at = Some(now_iso());
    req.st.conductor.db().update_allocation(&updated).await?;
    json_ok(Value::Object(shown(&updated, &req.ctx)))
}

/// `DELETE /v1/allocations/{ident}`: frees the node unless it is deployed.
pub async fn delete(req: Req) -> Result<Response, ApiError> {
    let st = &req.st;
    let a = find(&req).await?;
    if let Some(node_uuid) = &a.node_uuid {
        let auuid = a.uuid.clone();
        let r = st
            .conductor
            .db()
            .update_node(node_uuid, |n| {
                if n.allocation_uuid.as_deref() != Some(auuid.as_str()) {
                    return Ok(());
                }
                if !matches!(
                    n.provision_state,
                    ProvisionState::Available | ProvisionState::Manageable | ProvisionState::Enroll
                ) && !n.maintenance
                {
                    return Err(ApiError::conflict(format!(
                        "Cannot remove allocation {auuid} of node {} in state \"{}\"; undeploy it first.",
                        n.uuid, n.provision_state
                    )));
                }
                n.allocation_uuid = None;
                if n.instance_uuid.as_deref() == Some(auuid.as_str()) {
                    n.instance_uuid = None;
                }
                Ok(())
            })
            .await;
        match r {
            Ok(_) | Err(UpdateError::Db(crate::db::DbError::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    st.conductor.db().delete_allocation(&a.uuid).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
