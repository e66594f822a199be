//! Request-level bounds and Ironic's error document for every error.
//!
//! - [`bounded_body`] reads each request body under `[api] max_body_bytes`
//!   (413) and `body_timeout_ms` (408) before any handler sees it, so a
//!   client that announces a body and stalls holds nothing for long.
//! - [`ironic_envelope`] turns error answers that are not JSON (axum's
//!   rejections: a path that is not UTF-8, a bad query) into Ironic's error
//!   document, so every client gets `{"error_message": …}`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use super::ApiError;
use crate::config::ApiConfig;

/// Reads the request body within the configured size and time.
pub async fn bounded_body(State(limits): State<ApiConfig>, req: Request, next: Next) -> Response {
    let max = limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(max).into_response();
    }
    let (parts, body) = req.into_parts();
    let timeout = Duration::from_millis(limits.body_timeout_ms);
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => {
            tracing::warn!(limit = "body_timeout_ms", path = %parts.uri.path(), "request body timed out");
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The request body did not arrive within {} ms.",
                    limits.body_timeout_ms
                ),
            )
            .into_response();
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return too_large(max).into_response();
        }
        Ok(Err(e)) => {
            return ApiError::bad_request(format!("The request body could not be read: {e}"))
                .into_response();
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("The request body is larger than {max} bytes ([api] max_body_bytes)."),
    )
}

/// Wraps error answers that are not JSON in Ironic's error document.
pub async fn ironic_envelope(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    // Keep headers a status needs (Content-Range of 416, Allow of 405).
    let (parts, body) = resp.into_parts();
    let text = match Limited::new(body, 16 * 1024).collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Request failed")
            .to_owned()
    } else {
        text
    };
    let mut wrapped = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            wrapped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    wrapped
}
