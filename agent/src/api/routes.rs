//! Request routing and IPA's response shapes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ingot_proto::agent::{AgentStatus, ApiFault, CommandList, CommandRequest};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ipa::{self, CmdError};
use crate::state::AgentState;

/// Largest accepted request body (a 64 MiB config drive, base64-encoded).
const MAX_BODY: usize = 96 << 20;

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// IPA's error body: WSME's `faultcode`/`faultstring`, plus the RESTError fields.
fn fault(status: StatusCode, faultstring: String, err: Option<&CmdError>) -> Response<Full<Bytes>> {
    let code = if status.is_client_error() {
        "Client"
    } else {
        "Server"
    };
    let mut v = serde_json::to_value(ApiFault {
        faultcode: code.into(),
        faultstring,
    })
    .unwrap_or(Value::Null);
    if let (Some(e), Value::Object(m)) = (err, &mut v) {
        m.insert("type".into(), json!(e.kind));
        m.insert("code".into(), json!(e.code));
        m.insert("message".into(), json!(e.message));
        m.insert("details".into(), json!(e.details));
    }
    json_response(status, &v)
}

fn cmd_fault(e: &CmdError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    fault(status, format!("{}: {}", e.message, e.details), Some(e))
}

fn unauthorized() -> Response<Full<Bytes>> {
    fault(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: Token invalid.".into(),
        None,
    )
}

/// Query parameters, percent-decoded.
fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(str::to_ascii_lowercase).as_deref(),
        Some("true" | "1" | "yes")
    )
}

fn root_doc(base: &str) -> Value {
    let v1 = json!({
        "id": "v1",
        "links": [
            {"href": format!("{base}/v1/"), "rel": "self"},
            {"href": "https://docs.openstack.org/ironic-python-agent", "rel": "describedby", "type": "text/html"}
        ]
    });
    json!({
        "name": "OpenStack Ironic Python Agent API",
        "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic (served by the Ingot agent)",
        "versions": [v1.clone()],
        "default_version": v1,
    })
}

fn v1_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "commands": [{"href": format!("{base}/v1/commands/"), "rel": "self"}],
        "status": [{"href": format!("{base}/v1/status/"), "rel": "self"}],
        "media_types": [{"base": "application/json", "type": "application/vnd.openstack.ironic-python-agent.v1+json"}],
    })
}

/// Handles one request.
pub async fn handle(state: Arc<AgentState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q = query(&req);
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let base = format!("http://{host}");
    let method = req.method().clone();
    tracing::debug!(method = %method, path = %path, "API request");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let segs: Vec<&str> = match segs.first() {
        Some(&"v1") => segs[1..].to_vec(),
        _ if segs.is_empty() => {
            return match method {
                Method::GET => json_response(StatusCode::OK, &root_doc(&base)),
                _ => fault(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method not allowed".into(),
                    None,
                ),
            };
        }
        // IPA also serves /status and /commands without the version prefix.
        _ => segs,
    };
    match (method, segs.as_slice()) {
        (Method::GET, []) => json_response(StatusCode::OK, &v1_doc(&base)),
        (Method::GET, ["status"]) => json_response(
            StatusCode::OK,
            &AgentStatus {
                started_at: state.started_at,
                version: state.config.version.clone(),
            },
        ),
        (Method::GET, ["commands"]) => {
            if !state.token_ok(param(&q, "agent_token")) {
                return unauthorized();
            }
            json_response(
                StatusCode::OK,
                &CommandList {
                    commands: state.executor.list(),
                },
            )
        }
        (Method::GET, ["commands", id]) => {
            if !state.token_ok(param(&q, "agent_token")) {
                return unauthorized();
            }
            let Some(rec) = state.executor.get(id) else {
                return cmd_fault(&CmdError::not_found(format!("command {id} not found")));
            };
            if truthy(param(&q, "wait")) {
                rec.wait().await;
            }
            json_response(StatusCode::OK, &rec.snapshot())
        }
        (Method::POST, ["commands"]) => {
            if !state.token_ok(param(&q, "agent_token")) {
                return unauthorized();
            }
            let wait = truthy(param(&q, "wait"));
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return cmd_fault(&CmdError::invalid_content(format!(
                        "cannot read the body: {e}"
                    )));
                }
            };
            let parsed: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return cmd_fault(&CmdError::invalid_content(format!("body is not JSON: {e}")));
                }
            };
            let name = parsed.get("name").and_then(Value::as_str);
            let params = match parsed.get("params") {
                Some(Value::Object(m)) => Some(m.clone()),
                None | Some(Value::Null) => Some(serde_json::Map::new()),
                Some(_) => None,
            };
            let (Some(name), Some(params)) = (name, params) else {
                return cmd_fault(&CmdError::invalid_content(
                    "the body needs \"name\" (a string) and \"params\" (an object)",
                ));
            };
            match ipa::execute(
                &state,
                CommandRequest {
                    name: name.to_string(),
                    params,
                },
                wait,
            )
            .await
            {
                Ok(result) => json_response(StatusCode::OK, &result),
                Err(e) => cmd_fault(&e),
            }
        }
        (_, ["status"] | ["commands"] | ["commands", _]) => fault(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed".into(),
            None,
        ),
        _ => fault(
            StatusCode::NOT_FOUND,
            format!("Resource {path} not found"),
            None,
        ),
    }
}
