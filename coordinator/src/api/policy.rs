//! Role-based access with Ironic's default policies (secure RBAC: system
//! scope, and project-scoped `owner` and `lessee` of nodes and allocations).
//!
//! [`authorize`] runs after routing: from the matched route and method it
//! picks the policy (`baremetal:node:set_provision_state`, …), loads the
//! node, port or allocation the path names, and answers 403 when the caller
//! lacks the roles, or 404 when a project-scoped caller has nothing to do
//! with the resource (as Ironic does, so existence does not leak). Lists are
//! filtered by the handlers ([`sees_node`], [`sees_allocation`]), and node
//! documents are redacted for callers that may not read every field
//! ([`redact_node`]). Field-level PATCH rules are in [`check_node_patch`].
//!
//! Under `noauth` every caller is a system administrator and all of this
//! allows everything.

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::model::{Allocation, Node};

/// What a rule is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The node's owner and lessee.
    pub node: Option<(&'a Option<String>, &'a Option<String>)>,
    /// The allocation's owner.
    pub allocation_owner: Option<&'a Option<String>>,
}

impl<'a> Target<'a> {
    /// A node.
    pub fn node(n: &'a Node) -> Self {
        Self {
            node: Some((&n.owner, &n.lessee)),
            allocation_owner: None,
        }
    }

    /// An allocation.
    pub fn allocation(a: &'a Allocation) -> Self {
        Self {
            node: None,
            allocation_owner: Some(&a.owner),
        }
    }
}

/// The check strings of Ironic's defaults (ironic/common/policy.py),
/// composed from the same personas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `role:reader or role:service` (lists, filtered).
    ApiReader,
    /// System readers.
    SystemReader,
    /// System members.
    SystemMember,
    /// System administrators.
    SystemAdmin,
    /// System readers, and readers of the owner or lessee project.
    SystemOrProjectReader,
    /// System members, and members of the owner or lessee project.
    SystemOrProjectMember,
    /// System readers and owner readers (not lessees).
    SystemOrOwnerReader,
    /// System members, owner members, lessee admins (and managers).
    SystemOrOwnerMemberAndLesseeAdmin,
    /// System members and owner members.
    SystemMemberOrOwnerMember,
    /// System members and owner admins (and managers).
    SystemMemberOrOwnerAdmin,
    /// System admins and owner admins (and managers).
    SystemAdminOrOwnerAdmin,
    /// System admins, and project admins of the node's owner.
    SystemAdminOrProjectAdmin,
    /// Creating nodes: system admins, and project admins or services
    /// (the node is then owned by their project).
    NodeCreate,
    /// Creating allocations: system members, and any member.
    AllocationCreator,
    /// System readers and readers of the allocation's owner.
    AllocationReader,
    /// System members and members of the allocation's owner.
    AllocationMember,
}

fn eq(project: Option<&str>, field: Option<&Option<String>>) -> bool {
    match (project, field) {
        (Some(p), Some(Some(f))) => p == f,
        _ => false,
    }
}

impl Rule {
    /// True if `caller` passes this rule for `target`.
    pub fn allows(self, c: &Caller, t: Target<'_>) -> bool {
        let sys = c.is_system();
        let project = c.project();
        let (owner, lessee) = match t.node {
            Some((o, l)) => (eq(project, Some(o)), eq(project, Some(l))),
            None => (false, false),
        };
        let alloc_owner = eq(project, t.allocation_owner);
        let system_admin = c.has("admin") && sys;
        let system_member = (c.has("member") && sys) || c.service_project;
        let system_reader = ((c.has("reader") || c.has("service")) && sys) || c.service_project;
        let system_service = c.has("service") && sys;
        let project_service = c.has("service") && owner;
        let owner_admin = owner && (c.has("admin") || c.has("manager"));
        let lessee_admin = lessee && (c.has("admin") || c.has("manager"));
        match self {
            Self::ApiReader => c.has("reader") || c.has("service"),
            Self::SystemReader => system_reader,
            Self::SystemMember => system_member,
            Self::SystemAdmin => system_admin,
            Self::SystemOrProjectReader => {
                system_reader || (c.has("reader") && (owner || lessee)) || project_service
            }
            Self::SystemOrProjectMember => {
                system_member || (c.has("member") && (owner || lessee)) || system_service
            }
            Self::SystemOrOwnerReader => {
                system_reader || system_service || (c.has("reader") && owner) || project_service
            }
            Self::SystemOrOwnerMemberAndLesseeAdmin => {
                system_member
                    || system_service
                    || (c.has("member") && owner)
                    || lessee_admin
                    || project_service
            }
            Self::SystemMemberOrOwnerMember => {
                system_member || system_service || (c.has("member") && owner) || project_service
            }
            Self::SystemMemberOrOwnerAdmin => {
                system_member || system_service || owner_admin || project_service
            }
            Self::SystemAdminOrOwnerAdmin => {
                system_admin || system_service || owner_admin || project_service
            }
            Self::SystemAdminOrProjectAdmin => system_admin || (c.has("admin") && owner),
            Self::NodeCreate => {
                system_admin || (project.is_some() && (c.has("admin") || c.has("service")))
            }
            Self::AllocationCreator => system_member || c.has("member"),
            Self::AllocationReader => system_reader || (c.has("reader") && alloc_owner),
            Self::AllocationMember => system_member || (c.has("member") && alloc_owner),
        }
    }
}

/// The 403 Ironic answers, naming the policy.
pub fn forbidden(policy: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("Access was denied to the following resource: {policy}"),
    )
}

/// Checks `rule` (named `policy` in errors) for `caller` on `target`.
pub fn enforce(c: &Caller, rule: Rule, policy: &str, t: Target<'_>) -> Result<(), ApiError> {
    if rule.allows(c, t) {
        Ok(())
    } else {
        tracing::info!(user = %c.user, policy, "access denied");
        Err(forbidden(policy))
    }
}

/// What a route needs: the policy, its rule, and which resource the path
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    None,
    Node,
    Port,
    Allocation,
}

/// The policy of a route; `None` for routes outside authorization (public
/// ones, and the fallback).
fn route_policy(method: &Method, route: &str) -> Option<(&'static str, Rule, Resource)> {
    use Resource::{Allocation as A, Node as N, None as X, Port as P};
    use Rule::*;
    let route = route.trim_end_matches('/');
    let m = method.as_str();
    let p = match (m, route) {
        ("GET", "/v1/nodes" | "/v1/nodes/detail") => ("baremetal:node:list", ApiReader, X),
        ("POST", "/v1/nodes") => ("baremetal:node:create", NodeCreate, X),
        ("GET", "/v1/nodes/{ident}") => ("baremetal:node:get", SystemOrProjectReader, N),
        ("PATCH", "/v1/nodes/{ident}") => ("baremetal:node:update", SystemOrProjectMember, N),
        ("DELETE", "/v1/nodes/{ident}") => ("baremetal:node:delete", SystemAdminOrProjectAdmin, N),
        ("GET", "/v1/nodes/{ident}/states") => {
            ("baremetal:node:get_states", SystemOrProjectReader, N)
        }
        ("PUT", "/v1/nodes/{ident}/states/provision") => (
            "baremetal:node:set_provision_state",
            SystemOrOwnerMemberAndLesseeAdmin,
            N,
        ),
        ("PUT", "/v1/nodes/{ident}/states/power") => {
            ("baremetal:node:set_power_state", SystemOrProjectMember, N)
        }
        ("GET", "/v1/nodes/{ident}/states/console") => {
            ("baremetal:node:get_console", SystemMemberOrOwnerMember, N)
        }
        ("PUT", "/v1/nodes/{ident}/states/console") => (
            "baremetal:node:set_console_state",
            SystemMemberOrOwnerMember,
            N,
        ),
        ("PUT", "/v1/nodes/{ident}/maintenance") => (
            "baremetal:node:set_maintenance",
            SystemOrOwnerMemberAndLesseeAdmin,
            N,
        ),
        ("DELETE", "/v1/nodes/{ident}/maintenance") => (
            "baremetal:node:clear_maintenance",
            SystemOrOwnerMemberAndLesseeAdmin,
            N,
        ),
        (
            "GET",
            "/v1/nodes/{ident}/management/boot_device"
            | "/v1/nodes/{ident}/management/boot_device/supported",
        ) => (
            "baremetal:node:get_boot_device",
            SystemMemberOrOwnerAdmin,
            N,
        ),
        ("PUT", "/v1/nodes/{ident}/management/boot_device") => (
            "baremetal:node:set_boot_device",
            SystemMemberOrOwnerAdmin,
            N,
        ),
        ("GET", "/v1/nodes/{ident}/validate") => (
            "baremetal:node:validate",
            SystemOrOwnerMemberAndLesseeAdmin,
            N,
        ),
        ("GET", "/v1/nodes/{ident}/vifs") => ("baremetal:node:vif:list", SystemOrProjectReader, N),
        ("POST", "/v1/nodes/{ident}/vifs") => (
            "baremetal:node:vif:attach",
            SystemOrOwnerMemberAndLesseeAdmin,
            N,
        ),
        ("DELETE", "/v1/nodes/{ident}/vifs/{vif}") => (
            "baremetal:node:vif:detach",
            SystemOrOwnerMemberAndLesseeAdmin,
            N,
        ),
        ("GET", "/v1/nodes/{ident}/traits") => {
            ("baremetal:node:traits:list", SystemOrProjectReader, N)
        }
        ("PUT", "/v1/nodes/{ident}/traits" | "/v1/nodes/{ident}/traits/{trait_name}") => {
            ("baremetal:node:traits:set", SystemMemberOrOwnerAdmin, N)
        }
        ("DELETE", "/v1/nodes/{ident}/traits" | "/v1/nodes/{ident}/traits/{trait_name}") => {
            ("baremetal:node:traits:delete", SystemMemberOrOwnerAdmin, N)
        }
        ("GET", "/v1/nodes/{ident}/inventory") => {
            ("baremetal:node:inventory:get", SystemOrOwnerReader, N)
        }
        ("GET", "/v1/nodes/{ident}/ports" | "/v1/nodes/{ident}/ports/detail") => {
            ("baremetal:port:get", SystemOrProjectReader, N)
        }
        ("GET", "/v1/ports" | "/v1/ports/detail") => ("baremetal:port:list", ApiReader, X),
        // The node comes from the body: checked again in the handler.
        ("POST", "/v1/ports") => ("baremetal:port:create", ApiReader, X),
        ("GET", "/v1/ports/{uuid}") => ("baremetal:port:get", SystemOrProjectReader, P),
        ("PATCH", "/v1/ports/{uuid}") => ("baremetal:port:update", SystemMemberOrOwnerAdmin, P),
        ("DELETE", "/v1/ports/{uuid}") => ("baremetal:port:delete", SystemAdminOrOwnerAdmin, P),
        ("GET", "/v1/portgroups" | "/v1/portgroups/detail") => {
            ("baremetal:portgroup:list", ApiReader, X)
        }
        ("GET", "/v1/chassis" | "/v1/chassis/detail") => ("baremetal:chassis:get", SystemReader, X),
        ("GET", "/v1/conductors" | "/v1/conductors/{hostname}") => {
            ("baremetal:conductor:get", SystemReader, X)
        }
        ("GET", "/v1/drivers" | "/v1/drivers/{name}") => ("baremetal:driver:get", SystemReader, X),
        ("GET", "/v1/drivers/{name}/properties") => {
            ("baremetal:driver:get_properties", SystemReader, X)
        }
        ("GET", "/v1/volume" | "/v1/volume/targets" | "/v1/volume/connectors") => {
            ("baremetal:volume:list", ApiReader, X)
        }
        ("GET", "/v1/deploy_templates") => ("baremetal:deploy_template:get", SystemReader, X),
        ("GET", "/v1/shards") => ("baremetal:shards:get", SystemReader, X),
        ("GET", "/v1/runbooks") => ("baremetal:runbook:list", ApiReader, X),
        ("GET", "/v1/nodes/{ident}/bios") => ("baremetal:node:bios:get", SystemOrProjectReader, N),
        ("GET", "/v1/nodes/{ident}/firmware") => {
            ("baremetal:node:firmware:get", SystemOrProjectReader, N)
        }
        ("GET", "/v1/nodes/{ident}/children") => ("baremetal:node:get", SystemOrProjectReader, N),
        ("GET", "/v1/nodes/{ident}/history" | "/v1/nodes/{ident}/history/{event}") => {
            ("baremetal:node:history:get", SystemOrOwnerReader, N)
        }
        ("GET", "/v1/allocations") => ("baremetal:allocation:list", ApiReader, X),
        ("POST", "/v1/allocations") => ("baremetal:allocation:create", AllocationCreator, X),
        ("GET", "/v1/allocations/{ident}") => ("baremetal:allocation:get", AllocationReader, A),
        ("PATCH", "/v1/allocations/{ident}") => {
            ("baremetal:allocation:update", AllocationMember, A)
        }
        ("DELETE", "/v1/allocations/{ident}") => {
            ("baremetal:allocation:delete", AllocationMember, A)
        }
        _ => return None,
    };
    Some(p)
}

/// The middleware (a route layer): enforces the route's policy.
pub async fn authorize(
    State(st): State<AppState>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        // Public routes carry no caller.
        return next.run(req).await;
    };
    let Some(route) = matched.as_ref().map(MatchedPath::as_str) else {
        return next.run(req).await;
    };
    let Some((policy, rule, resource)) = route_policy(req.method(), route) else {
        // A route with a caller but no policy is a mistake: refuse.
        tracing::error!(route, method = %req.method(), "route without a policy");
        return forbidden("unknown").into_response();
    };
    if let Err(rejection) = &params {
        // A path that does not decode (not UTF-8): the client's mistake.
        return ApiError::bad_request(format!("Invalid URL: {rejection}")).into_response();
    }
    let param = |name: &str| -> Option<String> {
        params
            .as_ref()
            .ok()?
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    // A caller the rule allows without looking at the resource (system
    // scope, noauth) needs no extra read: owner and lessee only add rights.
    if rule.allows(&caller, Target::default()) {
        return next.run(req).await;
    }
    let verdict = match resource {
        Resource::None => enforce(&caller, rule, policy, Target::default()),
        Resource::Node => match param("ident") {
            Some(ident) => node_verdict(&st, &caller, rule, policy, &ident).await,
            None => Err(forbidden(policy)),
        },
        Resource::Port => match param("uuid") {
            Some(uuid) => match st.conductor.db().get_port(&uuid).await {
                Ok(Some(port)) => node_verdict(&st, &caller, rule, policy, &port.node_uuid).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e.into()),
            },
            None => Err(forbidden(policy)),
        },
        Resource::Allocation => match param("ident") {
            Some(ident) => match st.conductor.db().get_allocation(&ident).await {
                Ok(Some(a)) => {
                    if rule.allows(&caller, Target::allocation(&a)) {
                        Ok(())
                    } else if caller.project().is_some()
                        && !Rule::AllocationReader.allows(&caller, Target::allocation(&a))
                    {
                        Err(ApiError::not_found(format!(
                            "Allocation {ident} could not be found."
                        )))
                    } else {
                        Err(forbidden(policy))
                    }
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e.into()),
            },
            None => Err(forbidden(policy)),
        },
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The verdict on a node: allowed; 404 for a project caller who may not
/// even read it (Ironic hides such nodes); else 403. A missing node passes
/// through to the handler's own 404.
async fn node_verdict(
    st: &AppState,
    caller: &Caller,
    rule: Rule,
    policy: &str,
    ident: &str,
) -> Result<(), ApiError> {
    let node = match st.conductor.db().get_node(ident).await {
        Ok(Some((n, _))) => n,
        Ok(None) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if rule.allows(caller, Target::node(&node)) {
        return Ok(());
    }
    if !caller.is_system() && !Rule::SystemOrProjectReader.allows(caller, Target::node(&node)) {
        return Err(ApiError::node_not_found(ident));
    }
    tracing::info!(user = %caller.user, policy, node = %node.uuid, "access denied");
    Err(forbidden(policy))
}

/// True if a list shows `node` to `caller`: everything to system readers,
/// else the nodes whose owner or lessee is the caller's project.
pub fn sees_node(caller: &Caller, node: &Node) -> bool {
    Rule::SystemReader.allows(caller, Target::default())
        || Rule::SystemOrProjectReader.allows(caller, Target::node(node))
}

/// The nodes a list shows to `caller`, for the database to select: the
/// rule of [`sees_node`] depends only on whether the caller's project owns
/// or leases the node, so probing it with the three cases gives it exactly.
pub fn node_list_scope(caller: &Caller) -> crate::db::node_query::Scope {
    use crate::db::node_query::Scope;
    let probe = |owner: Option<&str>, lessee: Option<&str>| {
        let n = Node {
            owner: owner.map(str::to_owned),
            lessee: lessee.map(str::to_owned),
            ..Node::default()
        };
        sees_node(caller, &n)
    };
    if probe(None, None) {
        return Scope::All;
    }
    let project = caller.project().unwrap_or_default();
    let seen = !project.is_empty();
    Scope::Project {
        project: project.to_owned(),
        owner: seen && probe(Some(project), None),
        lessee: seen && probe(None, Some(project)),
    }
}

/// True if a list shows `a` to `caller`.
pub fn sees_allocation(caller: &Caller, a: &Allocation) -> bool {
    Rule::AllocationReader.allows(caller, Target::allocation(a))
}

/// The owner of a resource a caller creates: callers passing `unrestricted`
/// (system admins for nodes, system members for allocations) name any
/// owner; others create for their own project only (`create` refused
/// without one, `restricted` when they name another).
pub fn owned_by_caller(
    caller: &Caller,
    owner: &mut Option<String>,
    unrestricted: Rule,
    create: &str,
    restricted: &str,
) -> Result<(), ApiError> {
    if unrestricted.allows(caller, Target::default()) {
        return Ok(());
    }
    let project = caller.project().ok_or_else(|| forbidden(create))?;
    match owner {
        Some(o) if o != project => Err(forbidden(restricted)),
        _ => {
            *owner = Some(project.to_owned());
            Ok(())
        }
    }
}

/// Fields a node document shows only to callers with the named policy
/// (system readers and the owner, not the lessee).
const OWNER_ONLY_FIELDS: [(&str, &str); 4] = [
    ("driver_info", "baremetal:node:get:driver_info"),
    (
        "driver_internal_info",
        "baremetal:node:get:driver_internal_info",
    ),
    ("last_error", "baremetal:node:get:last_error"),
    ("reservation", "baremetal:node:get:reservation"),
];

/// Whether [`redact_node`] changes what `caller` sees of `node`.
pub fn redacts_node(caller: &Caller, node: &Node) -> bool {
    !Rule::SystemOrOwnerReader.allows(caller, Target::node(node))
}

/// Redacts, in a node document shown to `caller`, the fields Ironic's
/// `baremetal:node:get:*` policies keep from lessees.
pub fn redact_node(caller: &Caller, node: &Node, doc: &mut Map<String, Value>) {
    if !redacts_node(caller, node) {
        return;
    }
    for (field, policy) in OWNER_ONLY_FIELDS {
        let Some(v) = doc.get_mut(field) else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        let note = format!("** Redacted - requires {policy} permission. **");
        *v = if v.is_object() {
            json!({ "content": note })
        } else {
            Value::String(note)
        };
    }
}

/// Field-level PATCH policies of nodes (Ironic's `baremetal:node:update:*`
/// and `update_extra`, `update_instance_info`).
pub fn check_node_patch(caller: &Caller, node: &Node, roots: &[String]) -> Result<(), ApiError> {
    let t = Target::node(node);
    for root in roots {
        let (policy, rule) = match root.as_str() {
            "extra" => ("baremetal:node:update_extra", Rule::SystemOrProjectMember),
            "instance_info" => (
                "baremetal:node:update_instance_info",
                Rule::SystemOrOwnerMemberAndLesseeAdmin,
            ),
            "driver_info" => (
                "baremetal:node:update:driver_info",
                Rule::SystemMemberOrOwnerMember,
            ),
            "properties" => (
                "baremetal:node:update:properties",
                Rule::SystemMemberOrOwnerMember,
            ),
            "chassis_uuid" => ("baremetal:node:update:chassis_uuid", Rule::SystemAdmin),
            "instance_uuid" => (
                "baremetal:node:update:instance_uuid",
                Rule::SystemMemberOrOwnerMember,
            ),
            "lessee" => (
                "baremetal:node:update:lessee",
                Rule::SystemMemberOrOwnerMember,
            ),
            "owner" => ("baremetal:node:update:owner", Rule::SystemMember),
            "network_data" => (
                "baremetal:node:update:network_data",
                Rule::SystemMemberOrOwnerMember,
            ),
            "conductor_group" => ("baremetal:node:update:conductor_group", Rule::SystemMember),
            "name" => (
                "baremetal:node:update:name",
                Rule::SystemMemberOrOwnerMember,
            ),
            "retired" | "retired_reason" => (
                "baremetal:node:update:retired",
                Rule::SystemMemberOrOwnerMember,
            ),
            "shard" => ("baremetal:node:update:shard", Rule::SystemAdmin),
            "parent_node" => ("baremetal:node:update:parent_node", Rule::SystemMember),
            "automated_clean" => ("baremetal:node:disable_cleaning", Rule::SystemAdmin),
            r if r == "driver" || r.ends_with("_interface") => (
                "baremetal:node:update:driver_interfaces",
                Rule::SystemMemberOrOwnerAdmin,
            ),
            _ => (
                "baremetal:node:update",
                Rule::SystemOrOwnerMemberAndLesseeAdmin,
            ),
        };
        enforce(caller, rule, policy, t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    fn project(id: &str, roles: &[&str]) -> Caller {
        Caller::new(
            "u",
            roles,
            Scope::Project {
                id: id.into(),
                name: id.into(),
            },
            "service",
        )
    }

    #[test]
    fn ironic_personas() {
        let node = Node {
            owner: Some("a".into()),
            lessee: Some("b".into()),
            ..Node::default()
        };
        let t = Target::node(&node);
        let sys_reader = Caller::new("r", &["reader"], Scope::System, "service");
        let sys_member = Caller::new("m", &["member"], Scope::System, "service");
        assert!(Rule::SystemOrProjectReader.allows(&sys_reader, t));
        assert!(!Rule::SystemOrProjectMember.allows(&sys_reader, t));
        assert!(Rule::SystemOrOwnerMemberAndLesseeAdmin.allows(&sys_member, t));
        assert!(!Rule::SystemAdmin.allows(&sys_member, t));
        // Owner member: provision yes; lessee member: power yes, provision no.
        assert!(Rule::SystemOrOwnerMemberAndLesseeAdmin.allows(&project("a", &["member"]), t));
        assert!(!Rule::SystemOrOwnerMemberAndLesseeAdmin.allows(&project("b", &["member"]), t));
        assert!(Rule::SystemOrOwnerMemberAndLesseeAdmin.allows(&project("b", &["admin"]), t));
        assert!(Rule::SystemOrProjectMember.allows(&project("b", &["member"]), t));
        // Another project sees nothing.
        assert!(!Rule::SystemOrProjectReader.allows(&project("c", &["admin"]), t));
        // The service role in the service project acts as a system member.
        let nova = Caller::new(
            "nova",
            &["service"],
            Scope::Project {
                id: "s".into(),
                name: "service".into(),
            },
            "service",
        );
        assert!(Rule::SystemOrOwnerMemberAndLesseeAdmin.allows(&nova, t));
        assert!(!Rule::SystemAdmin.allows(&nova, t));
    }
}
