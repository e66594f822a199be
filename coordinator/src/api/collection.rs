//! Collections: `fields`, sorting, `limit`/`marker` pagination and the `next` link.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::{ApiError, Ctx};

/// Ironic's `[api]max_limit`.
pub const MAX_LIMIT: usize = 1000;

/// Parses `fields=a,b` against the known field names.
pub fn fields(ctx: &Ctx, known: &[String]) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = ctx.param("fields") else {
        return Ok(None);
    };
    if !ctx.version.at_least(8) {
        return Err(ApiError::not_acceptable(
            "The fields parameter requires API version 1.8 or later.",
        ));
    }
    let list: Vec<String> = raw
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let bad: Vec<&str> = list
        .iter()
        .filter(|f| !known.contains(f))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Field(s) \"{}\" are not valid",
            bad.join(", ")
        )));
    }
    Ok(Some(list))
}

/// An object with only the `fields=` the request asks for (all without).
pub fn select(
    ctx: &Ctx,
    obj: Map<String, Value>,
    known: &[String],
) -> Result<Map<String, Value>, ApiError> {
    Ok(match fields(ctx, known)? {
        Some(f) => project(obj, &f),
        None => obj,
    })
}

/// Keeps only `fields` of an object.
pub fn project(mut obj: Map<String, Value>, fields: &[String]) -> Map<String, Value> {
    obj.retain(|k, _| fields.iter().any(|f| f == k));
    obj
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Orders JSON values: null first, then booleans, numbers, strings.
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The resource a collection key holds, as Ironic's errors name it.
fn resource_name(key: &str) -> &'static str {
    match key {
        "nodes" => "Node",
        "ports" => "Port",
        "allocations" => "Allocation",
        _ => "Resource",
    }
}

/// The paging parameters of a list request: `fields`, `limit`, `sort_key`,
/// `sort_dir` and `marker`, checked in Ironic's order.
#[derive(Debug, Clone)]
pub struct Params {
    /// `fields=`, if given.
    pub fields: Option<Vec<String>>,
    /// The page size (at most [`MAX_LIMIT`]).
    pub limit: usize,
    /// `sort_key` (`id` by default: creation order).
    pub sort_key: String,
    /// `sort_dir=desc`.
    pub desc: bool,
    /// `marker`, a UUID.
    pub marker: Option<String>,
}

impl Params {
    /// Parses and checks the parameters.
    pub fn parse(ctx: &Ctx, known: &[String], detail: bool) -> Result<Self, ApiError> {
        let fields = fields(ctx, known)?;
        if detail && fields.is_some() {
            return Err(ApiError::bad_request(
                "Can not specify ?detail=True and fields in the same request.",
            ));
        }
        let limit = match ctx.param("limit") {
            None => MAX_LIMIT,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if n > 0 => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
                Ok(0) => MAX_LIMIT,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Limit must be positive: {l}"
                    )));
                }
            },
        };
        let sort_key = ctx.param("sort_key").unwrap_or("id");
        let desc = match ctx.param("sort_dir").unwrap_or("asc") {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "Invalid sort direction: {other}. Acceptable values are 'asc' or 'desc'"
                )));
            }
        };
        if sort_key != "id" && !known.iter().any(|k| k == sort_key) {
            return Err(ApiError::bad_request(format!(
                "The sort_key value \"{sort_key}\" is an invalid field for sorting"
            )));
        }
        let marker = match ctx.param("marker") {
            Some(m) if !crate::model::is_uuid(m) => {
                return Err(ApiError::bad_request(format!(
                    "Expected a UUID but received {m}."
                )));
            }
            m => m.map(str::to_owned),
        };
        Ok(Self {
            fields,
            limit,
            sort_key: sort_key.to_owned(),
            desc,
            marker,
        })
    }
}

/// The 404 of a `marker` that names no resource of collection `key`.
pub fn marker_not_found(key: &str, marker: &str) -> ApiError {
    ApiError::not_found(format!(
        "{} {marker} could not be found.",
        resource_name(key)
    ))
}

/// Sorts, pages and projects full API objects; returns the collection body
/// under `key`, with `next` when the page is full.
pub fn page(
    ctx: &Ctx,
    key: &str,
    path: &str,
    mut items: Vec<Map<String, Value>>,
    known: &[String],
    default_fields: Option<&[&str]>,
    detail: bool,
) -> Result<Value, ApiError> {
    let p = Params::parse(ctx, known, detail)?;
    if p.sort_key != "id" {
        let sort_key = p.sort_key.as_str();
        items.sort_by(|a, b| {
            cmp_values(
                a.get(sort_key).unwrap_or(&Value::Null),
                b.get(sort_key).unwrap_or(&Value::Null),
            )
        });
    }
    if p.desc {
        items.reverse();
    }
    if let Some(marker) = &p.marker {
        // Ironic looks the marker up as a resource: unknown is 404.
        let pos = items
            .iter()
            .position(|i| i.get("uuid").and_then(Value::as_str) == Some(marker))
            .ok_or_else(|| marker_not_found(key, marker))?;
        items.drain(..=pos);
    }
    let full = items.len() > p.limit;
    items.truncate(p.limit);
    Ok(render(
        ctx,
        key,
        path,
        &p,
        items,
        full,
        default_fields,
        detail,
    ))
}

/// The collection body of one page: `items` (at most `p.limit`, already
/// sorted and after the marker) projected, under `key`, with `next` when
/// `full` (more items follow) or when a requested `limit` is filled.
#[allow(clippy::too_many_arguments)]
pub fn render(
    ctx: &Ctx,
    key: &str,
    path: &str,
    p: &Params,
    items: Vec<Map<String, Value>>,
    full: bool,
    default_fields: Option<&[&str]>,
    detail: bool,
) -> Value {
    let limit = p.limit;
    let last = items
        .last()
        .and_then(|i| i.get("uuid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let shown: Vec<Value> = items
        .into_iter()
        .map(|i| {
            Value::Object(match (&p.fields, detail, default_fields) {
                (Some(f), _, _) => project(i, f),
                (None, false, Some(d)) => {
                    let d: Vec<String> = d.iter().map(|s| (*s).to_owned()).collect();
                    project(i, &d)
                }
                _ => i,
            })
        })
        .collect();
    let count = shown.len();
    let mut body = Map::new();
    body.insert(key.to_owned(), Value::Array(shown));
    if let Some(next) = next_link(ctx, path, limit, full, count, last.as_deref()) {
        body.insert("next".into(), json!(next));
    }
    Value::Object(body)
}

/// The `next` link of a page of `count` items whose last is `last`: when
/// `full` (more items follow) or when a requested `limit` is filled.
pub fn next_link(
    ctx: &Ctx,
    path: &str,
    limit: usize,
    full: bool,
    count: usize,
    last: Option<&str>,
) -> Option<String> {
    let last = last?;
    if !(full || (ctx.param("limit").is_some() && count == limit)) {
        return None;
    }
    let mut q: Vec<(String, String)> = ctx
        .query
        .iter()
        .filter(|(k, _)| k != "marker" && k != "limit")
        .cloned()
        .collect();
    q.push(("limit".into(), limit.to_string()));
    q.push(("marker".into(), last.to_owned()));
    let qs: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q)
        .finish();
    Some(format!("{}{path}?{qs}", ctx.base))
}
