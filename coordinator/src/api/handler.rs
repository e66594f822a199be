//! What the handlers of one resource share: the [`Req`] extractor (the
//! state, the request's context and the identifier the path names), and the
//! steps every create takes the same way.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::versions::{self, Since};
use super::{ApiError, AppState, Ctx, nulls_as_absent, parse_object};
use crate::model::{Node, is_uuid, new_uuid};
use crate::power::PowerDriver;

/// A request on one resource: the handlers' shared state, the request's
/// context, and the identifier of the resource, the path's first parameter
/// (`{ident}` or `{uuid}`). Only for routes with a parameter.
#[derive(Debug, Clone)]
pub struct Req {
    /// The shared state.
    pub st: AppState,
    /// The request's context.
    pub ctx: Ctx,
    /// The resource's UUID or name, as the path gives it.
    pub ident: String,
}

impl FromRequestParts<AppState> for Req {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let ctx = Ctx::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let ident = params
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default();
        Ok(Self {
            st: st.clone(),
            ctx,
            ident,
        })
    }
}

impl Req {
    /// The node the path names, or 404.
    pub async fn node(&self) -> Result<Node, ApiError> {
        super::nodes::find(&self.st, &self.ident).await
    }

    /// Finds the node the path names and changes it in one
    /// compare-and-swap write (`f` runs again on a lost race).
    pub async fn change_node(
        &self,
        f: impl FnMut(&mut Node) -> Result<(), ApiError>,
    ) -> Result<Node, ApiError> {
        let node = self.node().await?;
        Ok(self.st.conductor.db().update_node(&node.uuid, f).await?)
    }

    /// The power driver of `node` (400 when there is none).
    pub fn power_driver(&self, node: &Node) -> Result<Arc<dyn PowerDriver>, ApiError> {
        self.st
            .conductor
            .power_driver(node)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// What a create request's body may and must hold.
#[derive(Debug, Clone, Copy)]
pub struct CreateBody<'a> {
    /// The resource, as errors name it (`node`, `port`, `allocation`).
    pub what: &'a str,
    /// The keys it may hold.
    pub allowed: &'a [&'a str],
    /// The keys it must hold, with a string value.
    pub required: &'a [&'a str],
    /// The resource's fields by the version that added them.
    pub fields: &'a [Since],
}

impl CreateBody<'_> {
    /// The object of a create request: parsed with only `allowed` keys,
    /// every field known at the request's version, `null` read as absent
    /// where `T` has no null, and the `required` strings there.
    pub fn parse<T: Default + Serialize>(
        &self,
        ctx: &Ctx,
        body: &[u8],
    ) -> Result<Map<String, Value>, ApiError> {
        let mut obj = parse_object(body, self.what, self.allowed)?;
        versions::check_create(&obj, self.fields, ctx.version)?;
        nulls_as_absent::<T>(&mut obj);
        if let Some(k) = self
            .required
            .iter()
            .find(|k| !obj.get(**k).is_some_and(Value::is_string))
        {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {}. Value: '{k}' is a required property",
                self.what
            )));
        }
        Ok(obj)
    }
}

/// The resource a create request's object describes (400 naming `what`
/// when a field has the wrong type).
pub fn from_body<T: DeserializeOwned>(obj: Map<String, Value>, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(obj)).map_err(|e| {
        ApiError::bad_request(format!("Invalid input for field/attribute {what}: {e}"))
    })
}

/// A new resource's UUID: a fresh one when the request gave none, else
/// the one given, which must be a UUID.
pub fn assign_uuid(uuid: &mut String) -> Result<(), ApiError> {
    if uuid.is_empty() {
        *uuid = new_uuid();
        Ok(())
    } else if is_uuid(uuid) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Expected a UUID but received {uuid}."
        )))
    }
}

/// `resp` with `Location: {base}{path}`.
pub fn with_location(mut resp: Response, ctx: &Ctx, path: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("{}{path}", ctx.base)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
