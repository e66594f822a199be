//! `/v1/nodes/{ident}/traits`: a node's traits, listed, replaced, added and
//! deleted one by one or all at once.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::check_unlocked;
use crate::api::{ApiError, Req, empty, json_ok, parse_object};

/// `GET /v1/nodes/{ident}/traits`
pub async fn list(req: Req) -> Result<Response, ApiError> {
    json_ok(json!({"traits": req.node().await?.traits}))
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

/// Changes the traits of the node the path names, unless it is locked; 204.
async fn change(
    req: &Req,
    f: impl Fn(&mut Vec<String>) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    req.change_node(|n| {
        check_unlocked(n)?;
        f(&mut n.traits)
    })
    .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `PUT /v1/nodes/{ident}/traits`
pub async fn set_all(req: Req, body: Bytes) -> Result<Response, ApiError> {
    let obj = parse_object(&body, "traits", &["traits"])?;
    let list: Vec<String> = serde_json::from_value(obj.get("traits").cloned().unwrap_or(json!([])))
        .map_err(|e| ApiError::bad_request(format!("traits must be a list of strings: {e}")))?;
    for t in &list {
        check_trait(t)?;
    }
    change(&req, |tr| {
        let mut l = list.clone();
        l.sort();
        l.dedup();
        *tr = l;
        Ok(())
    })
    .await
}

/// `PUT /v1/nodes/{ident}/traits/{trait}`
pub async fn add(req: Req, Path((_, t)): Path<(String, String)>) -> Result<Response, ApiError> {
    check_trait(&t)?;
    change(&req, |tr| {
        if !tr.contains(&t) {
            tr.push(t.clone());
            tr.sort();
        }
        Ok(())
    })
    .await
}

/// `DELETE /v1/nodes/{ident}/traits/{trait}`
pub async fn delete(req: Req, Path((_, t)): Path<(String, String)>) -> Result<Response, ApiError> {
    change(&req, |tr| {
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
pub async fn delete_all(req: Req) -> Result<Response, ApiError> {
    change(&req, |tr| {
        tr.clear();
        Ok(())
    })
    .await
}
