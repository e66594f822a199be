//! Ironic's REST API v1, as python-ironicclient (`baremetal`), openstacksdk,
//! metalsmith and Nova call it; and the ramdisk endpoints (lookup, heartbeat,
//! continue_inspection) agents call.

pub mod allocations;
pub mod boot;
pub mod collection;
pub mod errors;
pub mod handler;
pub mod limits;
pub mod microversion;
pub mod nodes;
pub mod patch;
pub mod policy;
pub mod ports;
pub mod ramdisk;
pub mod root;
pub mod versions;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::Value;

use crate::conductor::Conductor;
pub use errors::ApiError;
pub use handler::Req;
pub use microversion::ApiVersion;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The conductor (and through it the database and configuration).
    pub conductor: Conductor,
    /// Who may call the API.
    pub auth: crate::auth::SharedAuth,
}

/// Per-request context: negotiated version, base URL, query parameters.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The negotiated microversion.
    pub version: ApiVersion,
    /// `http(s)://host:port` as the client addressed us (for links).
    pub base: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    /// The authenticated caller (none on the public paths).
    pub caller: Option<crate::auth::Caller>,
}

impl Ctx {
    /// The authenticated caller; 401 on a path that has none.
    pub fn caller(&self) -> Result<&crate::auth::Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "The request you have made requires authentication.",
            )
        })
    }

    /// 406 with `message` unless the request asked for 1.`minor` or later.
    pub fn require(&self, minor: u32, message: &str) -> Result<(), ApiError> {
        if self.version.at_least(minor) {
            Ok(())
        } else {
            Err(ApiError::not_acceptable(message))
        }
    }

    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter (`True`, `true`, `1`, …).
    pub fn bool_param(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.param(key) {
            None => Ok(None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid value for {key}: {v} is not a boolean"))
            }),
        }
    }
}

pub use crate::model::parse_bool;

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let version = parts
            .extensions
            .get::<ApiVersion>()
            .copied()
            .unwrap_or(ApiVersion(microversion::MIN_MINOR));
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1:6385");
        let query = parts
            .uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let scheme = parts
            .extensions
            .get::<crate::http_server::RequestScheme>()
            .map_or("http", |s| s.0);
        Ok(Self {
            version,
            base: format!("{scheme}://{host}"),
            query,
            caller: parts.extensions.get::<crate::auth::Caller>().cloned(),
        })
    }
}

/// How deeply a request body's JSON may nest. Every document the API stores
/// is built from request bodies, and stored documents are read back with
/// serde_json's own recursion limit (128): bounding the input far below it
/// means nothing stored can fail to load. Ironic's deepest documents (RAID
/// configurations, clean steps with arguments) nest about 5 levels.
pub const MAX_JSON_DEPTH: usize = 32;

/// The nesting depth of a JSON value (a scalar is 0), computed without
/// recursion.
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0_usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// Parses a JSON request body, with Ironic-style 400s; refuses documents
/// nested deeper than [`MAX_JSON_DEPTH`].
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON document is required.",
        ));
    }
    let too_deep = || {
        ApiError::bad_request(format!(
            "Invalid JSON in request body: nested deeper than {MAX_JSON_DEPTH} levels"
        ))
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            too_deep()
        } else {
            ApiError::bad_request(format!("Invalid JSON in request body: {e}"))
        }
    })?;
    if json_depth(&v) > MAX_JSON_DEPTH {
        return Err(too_deep());
    }
    Ok(v)
}

/// Parses a JSON object body, refusing keys outside `allowed`.
pub fn parse_object(
    body: &[u8],
    what: &str,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let Value::Object(obj) = parse_json(body)? else {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {what}. Value: not an object."
        )));
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "Unknown attribute for argument {what}: {k}"
        )));
    }
    Ok(obj)
}

/// Drops the keys of a create body whose value is `null` where the stored
/// type has no null (a list, a map, a string): Ironic reads `null` as
/// "absent" there, and clients send it (metalsmith posts `"traits": null`,
/// `"candidate_nodes": null`, `"extra": null`, `"uuid": null`).
pub fn nulls_as_absent<T: Default + serde::Serialize>(obj: &mut serde_json::Map<String, Value>) {
    let Ok(Value::Object(defaults)) = serde_json::to_value(T::default()) else {
        return;
    };
    obj.retain(|k, v| !(v.is_null() && defaults.get(k).is_some_and(|d| !d.is_null())));
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut resp = (status, value.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response whose body is JSON already written.
pub fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 with a JSON document.
pub fn json_ok(value: Value) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &value))
}

/// A boolean of a request body (`true`, `"True"`, `"1"`, …); else 400
/// `{message} {value}`.
pub fn body_bool(v: &Value, message: &str) -> Result<bool, ApiError> {
    crate::model::json_bool(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{message} {}",
            v.as_str().map_or_else(|| v.to_string(), str::to_owned)
        ))
    })
}

/// An empty response with a status (202, 204).
pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// An empty 202 with `Location: {base}{path}`.
pub fn accepted_at(ctx: &Ctx, path: &str) -> Response {
    handler::with_location(StatusCode::ACCEPTED.into_response(), ctx, path)
}

async fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// Collections python-ironicclient lists with a trailing slash
/// (`GET /v1/nodes/?provision_state=…`), as Ironic accepts it.
const TRAILING_SLASH_ALIASES: [&str; 9] = [
    "/v1/nodes",
    "/v1/nodes/detail",
    "/v1/ports",
    "/v1/ports/detail",
    "/v1/portgroups",
    "/v1/chassis",
    "/v1/conductors",
    "/v1/drivers",
    "/v1/allocations",
];

/// The whole API.
pub fn router(state: AppState) -> Router {
    let mut r = routes();
    for path in TRAILING_SLASH_ALIASES {
        r = r.route(&format!("{path}/"), alias(path));
    }
    let limits = state.conductor.config().api.clone();
    // Layers run outermost last: the error envelope, then authentication
    // (before a body is read), body bounds, microversions, routing, and
    // after routing the route's policy.
    r.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        policy::authorize,
    ))
    .fallback(not_found)
    .layer(axum::middleware::from_fn(versions::gate))
    .layer(axum::middleware::from_fn(microversion::negotiate))
    .layer(axum::middleware::from_fn_with_state(
        limits,
        limits::bounded_body,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.auth.clone(),
        crate::auth::authenticate,
    ))
    .layer(axum::middleware::from_fn(limits::ironic_envelope))
    // `bounded_body` enforces `[api] max_body_bytes` before extractors run.
    .layer(axum::extract::DefaultBodyLimit::disable())
    // Outermost: sees the final status; per route, so the matched pattern.
    .layer(axum::middleware::from_fn(crate::metrics::api::track))
    .with_state(state)
}

/// The plain-HTTP boot listener's router (`[api] boot_listen`): the API's
/// `/boot/*` routes and nothing else.
pub fn boot_router(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            if req.uri().path().starts_with("/boot/") {
                next.run(req).await
            } else {
                ApiError::not_found("The boot listener serves /boot/* only.").into_response()
            }
        },
    ))
}

/// The method router of a collection path, for its trailing-slash twin.
fn alias(path: &str) -> axum::routing::MethodRouter<AppState> {
    match path {
        "/v1/nodes" => get(nodes::list).post(nodes::create),
        "/v1/nodes/detail" => get(nodes::list_detail),
        "/v1/ports" => get(ports::list).post(ports::create),
        "/v1/ports/detail" => get(ports::list_detail),
        "/v1/portgroups" => get(root::empty_portgroups),
        "/v1/chassis" => get(root::empty_chassis),
        "/v1/conductors" => get(root::conductors),
        "/v1/drivers" => get(root::drivers),
        _ => get(allocations::list).post(allocations::create),
    }
}

/// The routes of [`root::EMPTY_COLLECTIONS`] and
/// [`root::EMPTY_NODE_COLLECTIONS`].
fn empty_collections(mut r: Router<AppState>) -> Router<AppState> {
    for (path, key, since) in root::EMPTY_COLLECTIONS {
        r = r.route(
            path,
            get(move |ctx: Ctx| async move { root::empty_collection(&ctx, key, since) }),
        );
    }
    for (sub, key, since) in root::EMPTY_NODE_COLLECTIONS {
        r = r.route(
            &format!("/v1/nodes/{{ident}}/{sub}"),
            get(move |req: Req| async move {
                req.node().await?;
                root::empty_collection(&req.ctx, key, since)
            }),
        );
    }
    r.route("/v1/volume", get(root::volume))
}

fn routes() -> Router<AppState> {
    empty_collections(Router::new())
        .route("/", get(root::root))
        .route("/v1", get(root::v1))
        .route("/v1/", get(root::v1))
        .route("/v1/nodes", get(nodes::list).post(nodes::create))
        .route("/v1/nodes/detail", get(nodes::list_detail))
        .route(
            "/v1/nodes/{ident}",
            get(nodes::show).patch(nodes::update).delete(nodes::delete),
        )
        .route("/v1/nodes/{ident}/states", get(nodes::states::get))
        .route(
            "/v1/nodes/{ident}/states/provision",
            put(nodes::provision::set),
        )
        .route("/v1/nodes/{ident}/states/power", put(nodes::power::set))
        .route(
            "/v1/nodes/{ident}/states/console",
            get(nodes::console::get).put(nodes::console::set),
        )
        .route(
            "/v1/nodes/{ident}/maintenance",
            put(nodes::maintenance::set).delete(nodes::maintenance::unset),
        )
        .route(
            "/v1/nodes/{ident}/management/boot_device",
            get(nodes::boot_device::get).put(nodes::boot_device::set),
        )
        .route(
            "/v1/nodes/{ident}/management/boot_device/supported",
            get(nodes::boot_device::supported),
        )
        .route("/v1/nodes/{ident}/validate", get(nodes::validate::get))
        .route(
            "/v1/nodes/{ident}/vifs",
            get(nodes::vifs::list).post(nodes::vifs::attach),
        )
        .route(
            "/v1/nodes/{ident}/vifs/{vif}",
            axum::routing::delete(nodes::vifs::detach),
        )
        .route(
            "/v1/nodes/{ident}/traits",
            get(nodes::traits::list)
                .put(nodes::traits::set_all)
                .delete(nodes::traits::delete_all),
        )
        .route(
            "/v1/nodes/{ident}/traits/{trait_name}",
            put(nodes::traits::add).delete(nodes::traits::delete),
        )
        .route("/v1/nodes/{ident}/inventory", get(nodes::inventory::get))
        .route("/v1/nodes/{ident}/history", get(nodes::history::list))
        .route(
            "/v1/nodes/{ident}/history/{event}",
            get(nodes::history::get),
        )
        .route("/v1/nodes/{ident}/ports", get(ports::list_of_node))
        .route(
            "/v1/nodes/{ident}/ports/detail",
            get(ports::list_of_node_detail),
        )
        .route("/v1/ports", get(ports::list).post(ports::create))
        .route("/v1/ports/detail", get(ports::list_detail))
        .route(
            "/v1/ports/{uuid}",
            get(ports::show).patch(ports::update).delete(ports::delete),
        )
        .route("/v1/portgroups", get(root::empty_portgroups))
        .route("/v1/portgroups/detail", get(root::empty_portgroups))
        .route("/v1/chassis", get(root::empty_chassis))
        .route("/v1/chassis/detail", get(root::empty_chassis))
        .route("/v1/conductors", get(root::conductors))
        .route("/v1/conductors/{hostname}", get(root::conductor))
        .route("/v1/drivers", get(root::drivers))
        .route("/v1/drivers/{name}", get(root::driver))
        .route(
            "/v1/drivers/{name}/properties",
            get(root::driver_properties),
        )
        .route(
            "/v1/allocations",
            get(allocations::list).post(allocations::create),
        )
        .route(
            "/v1/allocations/{ident}",
            get(allocations::show)
                .patch(allocations::update)
                .delete(allocations::delete),
        )
        .route("/boot/boot.ipxe", get(boot::chain))
        .route("/boot/ipxe/{mac}", get(boot::per_mac))
        .route("/boot/vmlinuz", get(boot::kernel).head(boot::kernel))
        .route(
            "/boot/{arch}/vmlinuz",
            get(boot::arch_kernel).head(boot::arch_kernel),
        )
        .route(
            "/boot/{arch}/initramfs.img",
            get(boot::arch_initramfs).head(boot::arch_initramfs),
        )
        .route(
            "/boot/initramfs.img",
            get(boot::initramfs).head(boot::initramfs),
        )
        .route("/images/{key}", get(boot::image).head(boot::image))
        .route("/v1/lookup", get(ramdisk::lookup))
        .route("/v1/heartbeat/{ident}", post(ramdisk::heartbeat))
        .route(
            "/v1/continue_inspection",
            post(ramdisk::continue_inspection),
        )
}
