//! Microversion negotiation: `X-OpenStack-Ironic-API-Version: 1.N` (or
//! `OpenStack-API-Version: baremetal 1.N`, or `latest`); absent means 1.1.
//! Outside [1.MIN, 1.MAX] → 406 with the min/max headers. Every response
//! carries the min, max and used version, and a request ID.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::errors::ApiError;

/// Oldest supported minor version.
pub const MIN_MINOR: u32 = 1;
/// Newest supported minor version (Ironic 39's maximum: the `baremetal` CLI
/// sends it on every request).
pub const MAX_MINOR: u32 = 115;

/// The negotiated version (minor part of 1.N), in request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion(pub u32);

impl ApiVersion {
    /// True if the request asked for at least 1.`minor`.
    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

/// The maximum as a string.
pub fn max_version() -> String {
    format!("1.{MAX_MINOR}")
}

/// The minimum as a string.
pub fn min_version() -> String {
    format!("1.{MIN_MINOR}")
}

enum Requested {
    Absent,
    Latest,
    Version(u32, u32),
    Malformed(String),
}

fn requested(headers: &HeaderMap) -> Requested {
    let raw = if let Some(v) = headers.get("x-openstack-ironic-api-version") {
        v.to_str().unwrap_or("").trim().to_owned()
    } else if let Some(v) = headers.get("openstack-api-version") {
        let s = v.to_str().unwrap_or("").trim().to_owned();
        match s.strip_prefix("baremetal") {
            Some(rest) => rest.trim().to_owned(),
            None => return Requested::Absent,
        }
    } else {
        return Requested::Absent;
    };
    if raw.eq_ignore_ascii_case("latest") {
        return Requested::Latest;
    }
    let mut parts = raw.splitn(2, '.');
    match (
        parts.next().and_then(|m| m.parse::<u32>().ok()),
        parts.next().and_then(|m| m.parse::<u32>().ok()),
    ) {
        (Some(major), Some(minor)) => Requested::Version(major, minor),
        _ => Requested::Malformed(raw),
    }
}

fn add_headers(headers: &mut HeaderMap, used: Option<u32>) {
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(
        headers,
        "x-openstack-ironic-api-minimum-version",
        min_version(),
    );
    set(
        headers,
        "x-openstack-ironic-api-maximum-version",
        max_version(),
    );
    if let Some(u) = used {
        set(headers, "x-openstack-ironic-api-version", format!("1.{u}"));
        set(headers, "openstack-api-version", format!("baremetal 1.{u}"));
    }
    let rid = format!("req-{}", crate::model::new_uuid());
    set(headers, "x-openstack-request-id", rid.clone());
    set(headers, "openstack-request-id", rid);
}

/// The middleware.
pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let minor = match requested(req.headers()) {
        Requested::Absent => MIN_MINOR,
        Requested::Latest => MAX_MINOR,
        Requested::Version(1, m) if (MIN_MINOR..=MAX_MINOR).contains(&m) => m,
        Requested::Version(major, m) => {
            let desc = if major == 1 {
                format!(
                    "Version 1.{m} was requested but the minor version is not supported by this service. The supported version range is: [{}, {}].",
                    min_version(),
                    max_version()
                )
            } else {
                format!(
                    "Version {major}.{m} was requested but the major version is not supported by this service. The supported version range is: [{}, {}].",
                    min_version(),
                    max_version()
                )
            };
            let inner = json!({"code": 406, "title": "Not Acceptable", "description": desc});
            let body = json!({"error_message": inner.to_string()}).to_string();
            let mut resp = (StatusCode::NOT_ACCEPTABLE, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            add_headers(resp.headers_mut(), None);
            return resp;
        }
        Requested::Malformed(raw) => {
            let mut resp = ApiError::bad_request(format!(
                "Invalid value for X-OpenStack-Ironic-API-Version header: {raw}"
            ))
            .into_response();
            add_headers(resp.headers_mut(), None);
            return resp;
        }
    };
    req.extensions_mut().insert(ApiVersion(minor));
    let mut resp = next.run(req).await;
    add_headers(resp.headers_mut(), Some(minor));
    resp
}
