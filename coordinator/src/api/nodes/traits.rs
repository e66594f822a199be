//! `/v1/nodes/{ident}/traits`: a node's traits, listed, replaced, added and
//! deleted one by one or all at once.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::find;
use crate::api::{ApiError, AppState, empty, json_response, parse_object};

/// `GET /v1/nodes/{ident}/traits`
pub async fn list(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&st, &ident).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"traits": node.traits}),
    ))
}

fn check_trait(t: &str) -> Result<(), ApiError> {
    let ok = !t.is_empty()
        && t.len() <= 255
        && (t.starts_with("CUSTOM_")
            && t.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            || t.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid trait {t}: a trait must be a standard trait or begin with CUSTOM_ and contain only A-Z, 0-9 and _"
        )))
    }
}

async fn change(
    st: &AppState,
    ident: &str,
    f: impl Fn(&mut Vec<String>) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let node = find(st, ident).await?;
    st.conductor
        .db()
        .update_node(&node.uuid, |n| {
            if let Some(host) = &n.reservation {
                return Err(ApiError::node_locked(&n.uuid, host));
            }
            f(&mut n.traits)
        })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `PUT /v1/nodes/{ident}/traits`
pub async fn set_all(
    State(st): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "traits", &["traits"])?;
    let list: Vec<String> = serde_json::from_value(obj.get("traits").cloned().unwrap_or(json!([])))
        .map_err(|e| ApiError::bad_request(format!("traits must be a list of strings: {e}")))?;
    for t in &list {
        check_trait(t)?;
    }
    change(&st, &ident, |tr| {
        let mut l = list.clone();
        l.sort();
        l.dedup();
        *tr = l;
        Ok(())
    })
    .await
}

/// `PUT /v1/nodes/{ident}/traits/{trait}`
pub async fn add(
    State(st): State<AppState>,
    Path((ident, t)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_trait(&t)?;
    change(&st, &ident, |tr| {
        if !tr.contains(&t) {
            tr.push(t.clone());
            tr.sort();
        }
        Ok(())
    })
    .await
}

/// `DELETE /v1/nodes/{ident}/traits/{trait}`
pub async fn delete(
    State(st): State<AppState>,
    Path((ident, t)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change(&st, &ident, |tr| {
        let before = tr.len();
        tr.retain(|x| *x != t);
        if tr.len() == before {
            return Err(ApiError::bad_request(format!(
                "Node does not have trait {t}"
            )));
        }
        Ok(())
    })
    .await
}

/// `DELETE /v1/nodes/{ident}/traits`
pub async fn delete_all(
    State(st): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    change(&st, &ident, |tr| {
        tr.clear();
        Ok(())
    })
    .await
}
