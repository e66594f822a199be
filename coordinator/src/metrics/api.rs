//! API requests by route pattern and status, with latency; agent lookups
//! and heartbeats (accepted or rejected) among them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::{RequestLabels, ResultLabels, RouteLabels, global};

/// The route of agent lookups.
pub const LOOKUP_ROUTE: &str = "/v1/lookup";
/// The route of agent heartbeats.
pub const HEARTBEAT_ROUTE: &str = "/v1/heartbeat/{ident}";

/// Middleware of the API router (added with `Router::layer`, so it runs
/// after routing and sees the matched route): counts the request by
/// method, route pattern and status, and times it until the response head.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    record(method, route, resp.status().as_u16(), started);
    resp
}

fn record(method: &'static str, route: String, status: u16, started: Instant) {
    let m = global();
    let accepted = (200..300).contains(&status);
    let result = ResultLabels {
        result: if accepted { "accepted" } else { "rejected" },
    };
    match route.as_str() {
        LOOKUP_ROUTE => m.lookups.get_or_create(&result).inc(),
        HEARTBEAT_ROUTE => m.heartbeats.get_or_create(&result).inc(),
        _ => 0,
    };
    m.api_seconds
        .get_or_create(&RouteLabels {
            method,
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.api_requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
}

/// The method as a label: the standard ones, else `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
