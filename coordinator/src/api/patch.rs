//! JSON Patch (RFC 6902) with Ironic's rules: only `add`, `replace` and
//! `remove` (Ironic's patch type refuses the others, and `copy`, `move` and
//! `test` would let a client copy a masked secret into a field shown in clear,
//! or confirm guesses of it); `add` on an existing root attribute replaces it,
//! and `remove` of a root attribute resets it to its default.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::versions::{self, Since};
use super::{ApiError, ApiVersion};

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// `add`, `remove` or `replace`.
    pub op: String,
    /// JSON pointer.
    pub path: String,
    /// Value for add/replace.
    pub value: Option<Value>,
}

impl PatchOp {
    /// The first segment of the path (the root attribute).
    pub fn root(&self) -> String {
        split(&self.path).first().cloned().unwrap_or_default()
    }
}

/// Parses a patch document.
pub fn parse(body: &[u8]) -> Result<Vec<PatchOp>, ApiError> {
    let v = super::parse_json(body)?;
    let Value::Array(ops) = v else {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute patch. Value: not a list of JSON Patch operations.",
        ));
    };
    ops.into_iter()
        .map(|o| {
            let Value::Object(o) = o else {
                return Err(ApiError::bad_request(
                    "Invalid patch: each operation must be an object.",
                ));
            };
            if let Some(k) = o
                .keys()
                .find(|k| !["op", "path", "value"].contains(&k.as_str()))
            {
                return Err(ApiError::bad_request(format!(
                    "Invalid patch: unknown key {k}"
                )));
            }
            let op = o
                .get("op")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if !["add", "remove", "replace"].contains(&op.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Invalid patch: op '{op}' is not supported; use add, replace or remove"
                )));
            }
            let path = o
                .get("path")
                .and_then(Value::as_str)
                .filter(|p| p.starts_with('/') && p.len() > 1)
                .ok_or_else(|| {
                    ApiError::bad_request("Invalid patch: 'path' must be a JSON pointer like /name")
                })?
                .to_owned();
            let value = o.get("value").cloned();
            if ["add", "replace"].contains(&op.as_str()) && value.is_none() {
                return Err(ApiError::bad_request(format!(
                    "Invalid patch: '{op}' on {path} needs a value"
                )));
            }
            Ok(PatchOp { op, path, value })
        })
        .collect()
}

/// Parses a patch document of a resource whose fields by version are
/// `fields` (406 for a root the request's `version` does not know); returns
/// the operations and their root attributes.
pub fn parse_for(
    body: &[u8],
    fields: &[Since],
    version: ApiVersion,
) -> Result<(Vec<PatchOp>, Vec<String>), ApiError> {
    let ops = parse(body)?;
    let roots: Vec<String> = ops.iter().map(PatchOp::root).collect();
    versions::check_patch(&roots, fields, version)?;
    Ok((ops, roots))
}

/// `current` with the operations applied; a removed root attribute takes
/// its value in `T::default()`. `what` names the resource in errors.
pub fn apply_to<T: Serialize + DeserializeOwned + Default>(
    current: &T,
    ops: &[PatchOp],
    what: &str,
) -> Result<T, ApiError> {
    let mut doc = match serde_json::to_value(current) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::internal(format!("{what} does not serialize"))),
    };
    let defaults = match serde_json::to_value(T::default()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    apply(&mut doc, ops, |f| {
        defaults.get(f).cloned().unwrap_or(Value::Null)
    })?;
    serde_json::from_value(Value::Object(doc))
        .map_err(|e| ApiError::bad_request(format!("Invalid input for field/attribute: {e}")))
}

fn split(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// An array index as RFC 6901 writes it: `0`, or digits without a leading
/// zero (no sign): Ironic's jsonpointer refuses `01` and `+1`.
fn index(s: &str) -> Option<usize> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn parent_mut<'a>(doc: &'a mut Value, segs: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for s in segs {
        cur = match cur {
            Value::Object(m) => m.get_mut(s)?,
            Value::Array(a) => a.get_mut(index(s)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segs = split(path);
    let (last, parent) = segs.split_last().ok_or("empty path")?;
    match parent_mut(doc, parent) {
        Some(Value::Object(m)) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i = index(last).ok_or_else(|| format!("bad index in {path}"))?;
            if i > a.len() {
                return Err(format!("index out of range in {path}"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("cannot add {path}: the parent does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let segs = split(path);
    let (last, parent) = segs.split_last().ok_or("empty path")?;
    let missing = || format!("can't remove non-existent object '{}'", last);
    match parent_mut(doc, parent) {
        Some(Value::Object(m)) => m.remove(last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i = index(last).ok_or_else(missing)?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

/// Applies the operations to `doc` (an object). `root_default` gives the
/// value a removed root attribute takes.
pub fn apply(
    doc: &mut Map<String, Value>,
    ops: &[PatchOp],
    root_default: impl Fn(&str) -> Value,
) -> Result<(), ApiError> {
    let mut v = Value::Object(std::mem::take(doc));
    let result = (|| -> Result<(), String> {
        for op in ops {
            let segs = split(&op.path);
            let is_root = segs.len() == 1;
            match op.op.as_str() {
                "add" => add(&mut v, &op.path, op.value.clone().unwrap_or(Value::Null))?,
                "replace" => {
                    // The value in place (RFC 6902 §4.3): an array keeps its
                    // length, where `add` would insert.
                    let value = op.value.clone().unwrap_or(Value::Null);
                    match parent_mut(&mut v, &segs) {
                        Some(target) => *target = value,
                        None if is_root => add(&mut v, &op.path, value)?,
                        None => {
                            return Err(format!(
                                "can't replace non-existent object '{}'",
                                segs.last().cloned().unwrap_or_default()
                            ));
                        }
                    }
                }
                "remove" => {
                    if is_root {
                        let d = root_default(&segs[0]);
                        add(&mut v, &op.path, d)?;
                    } else {
                        remove(&mut v, &op.path)?;
                    }
                }
                other => return Err(format!("unknown op {other}")),
            }
        }
        Ok(())
    })();
    if let Value::Object(m) = v {
        *doc = m;
    }
    result.map_err(|e| ApiError::bad_request(format!("Couldn't apply patch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_remove_replace_nested() {
        let mut doc = json!({"instance_info": {}, "name": "a"})
            .as_object()
            .cloned()
            .unwrap();
        let ops = parse(
            br#"[{"op":"add","path":"/instance_info/image_source","value":"http://x"},
            {"op":"replace","path":"/name","value":"b"},
            {"op":"remove","path":"/instance_info/image_source"},
            {"op":"add","path":"/instance_info/root_gb","value":"10"}]"#,
        )
        .unwrap();
        apply(&mut doc, &ops, |_| Value::Null).unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({"instance_info": {"root_gb": "10"}, "name": "b"})
        );
    }

    /// Found by the `json_patch` fuzz target (fuzz/regressions/json_patch/).
    #[test]
    fn replace_in_an_array_replaces_and_indexes_are_strict() {
        let mut doc = json!({"extra": {"l": [1, 2]}})
            .as_object()
            .cloned()
            .unwrap();
        let ops = parse(br#"[{"op":"replace","path":"/extra/l/0","value":9}]"#).unwrap();
        apply(&mut doc, &ops, |_| Value::Null).unwrap();
        assert_eq!(Value::Object(doc.clone()), json!({"extra": {"l": [9, 2]}}));
        for bad in ["/extra/l/01", "/extra/l/+1", "/extra/l/-0"] {
            let ops =
                parse(format!(r#"[{{"op":"add","path":"{bad}","value":0}}]"#).as_bytes()).unwrap();
            assert!(apply(&mut doc, &ops, |_| Value::Null).is_err(), "{bad}");
        }
    }

    #[test]
    fn removing_missing_key_fails() {
        let mut doc = json!({"extra": {}}).as_object().cloned().unwrap();
        let ops = parse(br#"[{"op":"remove","path":"/extra/nope"}]"#).unwrap();
        assert!(apply(&mut doc, &ops, |_| Value::Null).is_err());
    }

    #[test]
    fn malformed_patches_are_refused() {
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"[{"op":"frob","path":"/a"}]"#).is_err());
        assert!(parse(br#"[{"op":"add","path":"/a"}]"#).is_err());
        assert!(parse(br#"[{"op":"add","path":"a","value":1}]"#).is_err());
    }

    #[test]
    fn copy_move_and_test_are_refused() {
        // They would copy a masked secret into a field shown in clear, or
        // confirm guesses of it.
        for op in [
            r#"[{"op":"copy","from":"/driver_info/ipmi_password","path":"/extra/p"}]"#,
            r#"[{"op":"move","from":"/instance_info/configdrive","path":"/extra/c"}]"#,
            r#"[{"op":"test","path":"/driver_info/ipmi_password","value":"guess"}]"#,
            r#"[{"op":"add","path":"/extra/x","value":1,"from":"/driver_info"}]"#,
        ] {
            let e = parse(op.as_bytes()).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{op}");
        }
    }
}
