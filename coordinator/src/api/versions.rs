//! What each microversion shows and accepts, by Ironic's rules: a field (or
//! link, filter, endpoint) added in 1.N is absent from documents below 1.N;
//! asking for it (`fields=`, `sort_key=`, a filter) or setting it (create,
//! PATCH) below 1.N is 406; endpoints added in 1.N are 404 below it.
//! The tables are the versions Ironic 39 (API 1.115) records for each.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::microversion::{ApiVersion, MIN_MINOR};
use super::{ApiError, Ctx};

/// A name and the minor version that added it.
pub type Since = (&'static str, u32);

/// Node fields (and the `states`, `portgroups`, `volume` links) by the
/// version that added them; fields not listed exist from 1.1.
pub const NODE_FIELDS: &[Since] = &[
    ("driver_internal_info", 3),
    ("name", 5),
    ("inspection_finished_at", 6),
    ("inspection_started_at", 6),
    ("clean_step", 7),
    ("raid_config", 12),
    ("target_raid_config", 12),
    ("states", 14),
    ("network_interface", 20),
    ("resource_class", 21),
    ("portgroups", 24),
    ("boot_interface", 31),
    ("console_interface", 31),
    ("deploy_interface", 31),
    ("inspect_interface", 31),
    ("management_interface", 31),
    ("power_interface", 31),
    ("raid_interface", 31),
    ("vendor_interface", 31),
    ("volume", 32),
    ("storage_interface", 33),
    ("traits", 37),
    ("rescue_interface", 38),
    ("bios_interface", 40),
    ("fault", 42),
    ("deploy_step", 44),
    ("conductor_group", 46),
    ("automated_clean", 47),
    ("protected", 48),
    ("protected_reason", 48),
    ("conductor", 49),
    ("owner", 50),
    ("description", 51),
    ("allocation_uuid", 52),
    ("retired", 61),
    ("retired_reason", 61),
    ("lessee", 65),
    ("network_data", 66),
    ("boot_mode", 75),
    ("secure_boot", 75),
    ("shard", 82),
    ("parent_node", 83),
    ("firmware_interface", 86),
    ("service_step", 87),
    ("disable_power_off", 95),
    ("instance_name", 104),
    ("health", 109),
];

/// Node list filters by the version that added them.
pub const NODE_FILTERS: &[Since] = &[
    ("provision_state", 9),
    ("driver", 16),
    ("resource_class", 21),
    ("fault", 42),
    ("conductor_group", 46),
    ("conductor", 49),
    ("owner", 50),
    ("lessee", 65),
    ("shard", 82),
    ("sharded", 82),
    ("parent_node", 83),
    ("include_children", 83),
    ("instance_name", 104),
];

/// Port fields by the version that added them.
pub const PORT_FIELDS: &[Since] = &[
    ("internal_info", 18),
    ("pxe_enabled", 19),
    ("local_link_connection", 19),
    ("portgroup_uuid", 24),
    ("physical_network", 34),
    ("is_smartnic", 53),
    ("name", 88),
    ("description", 97),
    ("vendor", 100),
    ("category", 101),
    ("available_for_dynamic_portgroup", 111),
];

/// Allocation fields by the version that added them (allocations: 1.52).
pub const ALLOCATION_FIELDS: &[Since] = &[("owner", 60)];

/// `GET /v1/nodes/{id}/states` fields by the version that added them.
pub const STATES_FIELDS: &[Since] = &[
    ("raid_config", 12),
    ("target_raid_config", 12),
    ("boot_mode", 75),
    ("secure_boot", 75),
];

/// `detail=true` on a list: 1.43.
pub const DETAIL_PARAM: u32 = 43;

/// Query parameters of `GET /v1/nodes` and `/v1/nodes/detail` (Ironic's
/// arguments; the ones Ingot does not filter by are accepted and ignored).
pub const NODE_LIST_PARAMS: &[&str] = &[
    "chassis_uuid",
    "instance_uuid",
    "associated",
    "maintenance",
    "retired",
    "provision_state",
    "marker",
    "limit",
    "sort_key",
    "sort_dir",
    "driver",
    "fields",
    "resource_class",
    "fault",
    "conductor_group",
    "conductor",
    "owner",
    "description_contains",
    "lessee",
    "project",
    "shard",
    "sharded",
    "include_children",
    "parent_node",
    "instance_name",
    "detail",
];

/// Query parameters of `GET /v1/ports` and `/v1/ports/detail`.
pub const PORT_LIST_PARAMS: &[&str] = &[
    "node",
    "node_uuid",
    "address",
    "marker",
    "limit",
    "sort_key",
    "sort_dir",
    "fields",
    "portgroup",
    "detail",
    "shard",
    "description_contains",
    "conductor_groups",
];

/// Query parameters of `GET /v1/allocations`.
pub const ALLOCATION_LIST_PARAMS: &[&str] = &[
    "node",
    "resource_class",
    "state",
    "marker",
    "limit",
    "sort_key",
    "sort_dir",
    "fields",
    "owner",
];

/// Query parameters of a single resource's `GET`.
pub const SHOW_PARAMS: &[&str] = &["fields"];

/// 400 for query parameters the endpoint does not take, as Ironic answers
/// ("Unexpected arguments: …"): a misspelt or foreign filter (metalsmith's
/// Neutron `binding:host_id` sent to the wrong endpoint) must not silently
/// list everything.
pub fn check_params(ctx: &Ctx, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unexpected: Vec<&str> = ctx
        .query
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.contains(k))
        .collect();
    unexpected.dedup();
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Unexpected arguments: {}",
            unexpected.join(", ")
        )))
    }
}

/// Names of `table` that `version` does not know.
fn unknown_at(table: &[Since], version: ApiVersion) -> impl Iterator<Item = &'static str> + '_ {
    table
        .iter()
        .filter(move |(_, since)| !version.at_least(*since))
        .map(|(name, _)| *name)
}

/// True if `name` exists at `version` (names not in `table` always do).
pub fn known_at(table: &[Since], name: &str, version: ApiVersion) -> bool {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .is_none_or(|(_, since)| version.at_least(*since))
}

/// Removes from a document the fields `version` does not know.
pub fn hide(doc: &mut Map<String, Value>, table: &[Since], version: ApiVersion) {
    for name in unknown_at(table, version) {
        doc.remove(name);
    }
}

/// A node document as `version` shows it: later fields removed, and the
/// state names older clients know (`available` was `null` before 1.2,
/// `inspect wait` was `inspecting` before 1.39).
pub fn node_at(doc: &mut Map<String, Value>, version: ApiVersion) {
    hide(doc, NODE_FIELDS, version);
    older_state_names(doc, version);
}

/// Ironic's older provision state names, in place.
pub fn older_state_names(doc: &mut Map<String, Value>, version: ApiVersion) {
    for key in ["provision_state", "target_provision_state"] {
        let renamed = match doc.get(key).and_then(Value::as_str) {
            Some("available") if !version.at_least(2) => Value::Null,
            Some("inspect wait") if !version.at_least(39) => Value::from("inspecting"),
            _ => continue,
        };
        doc.insert(key.to_owned(), renamed);
    }
}

fn not_acceptable() -> ApiError {
    ApiError::not_acceptable("Request not acceptable.")
}

/// 406 if `fields=` or `sort_key=` names a field `version` does not know.
pub fn check_requested_fields(ctx: &Ctx, table: &[Since]) -> Result<(), ApiError> {
    let mut asked: Vec<&str> = ctx
        .param("fields")
        .map(|f| f.split(',').map(str::trim).collect())
        .unwrap_or_default();
    asked.extend(ctx.param("sort_key"));
    if asked.iter().any(|f| !known_at(table, f, ctx.version)) {
        return Err(not_acceptable());
    }
    Ok(())
}

/// 406 if a list filter is newer than the request's version; 400 for
/// `detail` before 1.43.
pub fn check_filters(ctx: &Ctx, filters: &[Since]) -> Result<(), ApiError> {
    for (name, since) in filters {
        if ctx.param(name).is_some() && !ctx.version.at_least(*since) {
            return Err(ApiError::not_acceptable(format!(
                "Request not acceptable. The minimal required API version should be 1.{since}"
            )));
        }
    }
    if let Some(d) = ctx.param("detail") {
        if !ctx.version.at_least(DETAIL_PARAM) {
            return Err(ApiError::bad_request(format!(
                "Invalid query parameter ?detail={d} received."
            )));
        }
    }
    Ok(())
}

/// 406 if a create body sets a field `version` does not know. As in Ironic,
/// an explicit empty value is no setting: `null`, and `""` for
/// `conductor_group`.
pub fn check_create(
    body: &Map<String, Value>,
    table: &[Since],
    version: ApiVersion,
) -> Result<(), ApiError> {
    for name in unknown_at(table, version) {
        match (name, body.get(name)) {
            (_, None | Some(Value::Null)) => {}
            ("conductor_group", Some(Value::String(s))) if s.is_empty() => {}
            _ => return Err(not_acceptable()),
        }
    }
    Ok(())
}

/// 406 if a JSON patch touches a field `version` does not know.
pub fn check_patch(roots: &[String], table: &[Since], version: ApiVersion) -> Result<(), ApiError> {
    if roots.iter().any(|r| !known_at(table, r, version)) {
        return Err(not_acceptable());
    }
    Ok(())
}

/// Endpoints under `/v1` and the version that added them. Below it Ironic
/// answers 404, except traits (406 to GET, 405 otherwise).
fn endpoint_since(segments: &[&str]) -> Option<u32> {
    match segments {
        ["portgroups", ..] => Some(23),
        ["conductors", ..] => Some(49),
        ["allocations", ..] => Some(52),
        ["nodes", _, "portgroups", ..] => Some(24),
        ["nodes", _, "vifs", ..] => Some(28),
        ["nodes", _, "traits", ..] => Some(37),
        ["nodes", _, "allocation", ..] => Some(52),
        ["nodes", _, "inventory", ..] => Some(81),
        ["nodes", _, "history", ..] => Some(78),
        _ => None,
    }
}

/// Middleware (after version negotiation): endpoints newer than the
/// request's version, and node names before 1.5 (when names came; a name
/// is then just an unknown UUID).
pub async fn gate(req: Request, next: Next) -> Response {
    let version = req
        .extensions()
        .get::<ApiVersion>()
        .copied()
        .unwrap_or(ApiVersion(MIN_MINOR));
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/v1/") else {
        return next.run(req).await;
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(since) = endpoint_since(&segments) {
        if !version.at_least(since) {
            return match (segments.get(2), req.method()) {
                (Some(&"traits"), &Method::GET) => not_acceptable().into_response(),
                (Some(&"traits"), _) => {
                    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
                        .into_response()
                }
                (_, m) if segments.first() == Some(&"allocations") => {
                    let msg = "The API version does not allow allocations";
                    if m == Method::GET {
                        ApiError::not_found(msg).into_response()
                    } else {
                        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, msg).into_response()
                    }
                }
                _ => {
                    ApiError::not_found("The API is not supported for this version").into_response()
                }
            };
        }
    }
    if let ["nodes", ident, ..] = segments.as_slice() {
        if !version.at_least(5) && *ident != "detail" && !crate::model::is_uuid(ident) {
            return ApiError::node_not_found(ident).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_within_the_maximum() {
        for table in [
            NODE_FIELDS,
            NODE_FILTERS,
            PORT_FIELDS,
            ALLOCATION_FIELDS,
            STATES_FIELDS,
        ] {
            assert!(table.windows(2).all(|w| w[0].1 <= w[1].1));
            assert!(
                table
                    .iter()
                    .all(|(_, v)| *v <= super::super::microversion::MAX_MINOR)
            );
        }
    }

    #[test]
    fn older_names() {
        let mut doc = Map::new();
        doc.insert("provision_state".into(), "available".into());
        doc.insert("target_provision_state".into(), "inspect wait".into());
        older_state_names(&mut doc, ApiVersion(1));
        assert_eq!(doc["provision_state"], Value::Null);
        assert_eq!(doc["target_provision_state"], "inspecting");
    }

    #[test]
    fn create_checks() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"driver":"x","name":null,"conductor_group":""}"#)
                .unwrap_or_default();
        assert!(check_create(&body, NODE_FIELDS, ApiVersion(1)).is_ok());
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"driver":"x","name":"n"}"#).unwrap_or_default();
        assert!(check_create(&body, NODE_FIELDS, ApiVersion(1)).is_err());
        assert!(check_create(&body, NODE_FIELDS, ApiVersion(5)).is_ok());
    }
}
