//! Ironic's root device hints: choose the installation disk.
//!
//! Semantics of IPA's `device_hints.py` and oslo's `specs_matcher`: every hint
//! must match; strings compare lower-cased; operators `s==` (default for
//! strings), `s!=`, `s>=`, `s>`, `s<=`, `s<`, `<in>`, `<or>`; numbers `==`
//! (default), `!=`, `>=`, `>`, `<=`, `<`, `=` (meaning ≥) and
//! `<range-in> ( lo hi ]`; `size` in GiB compared as `bytes / 2^30`;
//! `rotational` a boolean. Without hints: the smallest disk of at least 4 GiB.

use crate::inventory::Disk;
use serde_json::{Map, Value};

/// Hints IPA accepts.
pub const VALID_HINTS: &[&str] = &[
    "size",
    "model",
    "wwn",
    "serial",
    "vendor",
    "wwn_with_extension",
    "wwn_vendor_extension",
    "name",
    "hctl",
    "by_path",
    "tran",
    "rotational",
];

/// Smallest disk chosen without hints.
pub const MIN_ROOT_DISK: u64 = 4 << 30;

/// Why no disk could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HintError {
    /// A hint name IPA does not know.
    #[error("root device hint {0:?} is not supported (valid: {valid})", valid = VALID_HINTS.join(", "))]
    Unknown(String),
    /// A hint value of the wrong type or a malformed expression.
    #[error("root device hint {name:?} has an invalid value {value}")]
    BadValue {
        /// The hint.
        name: String,
        /// Its value.
        value: String,
    },
    /// No disk matched.
    #[error("no disk matches the root device hints {0}")]
    NoMatch(String),
    /// No disk of at least 4 GiB without hints.
    #[error("no suitable root disk: none of at least 4 GiB")]
    NoDisk,
}

/// Chooses the root disk among `disks` (in their listed order).
pub fn choose<'a>(
    disks: &'a [Disk],
    hints: Option<&Map<String, Value>>,
) -> Result<&'a Disk, HintError> {
    match hints.filter(|h| !h.is_empty()) {
        None => disks
            .iter()
            .filter(|d| d.size >= MIN_ROOT_DISK)
            .min_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)))
            .ok_or(HintError::NoDisk),
        Some(h) => {
            for k in h.keys() {
                if !VALID_HINTS.contains(&k.as_str()) {
                    return Err(HintError::Unknown(k.clone()));
                }
            }
            for d in disks {
                if matches_all(d, h)? {
                    return Ok(d);
                }
            }
            Err(HintError::NoMatch(Value::Object(h.clone()).to_string()))
        }
    }
}

/// Checks hints without a disk: every name is one IPA accepts and every value
/// parses (Ironic refuses bad hints when a node is created or updated).
pub fn validate(hints: &Map<String, Value>) -> Result<(), HintError> {
    // A disk with every field present, so every hint's value is evaluated.
    let probe = Disk {
        name: "/dev/probe".into(),
        model: Some(String::new()),
        wwn: Some(String::new()),
        serial: Some(String::new()),
        vendor: Some(String::new()),
        wwn_with_extension: Some(String::new()),
        wwn_vendor_extension: Some(String::new()),
        hctl: Some(String::new()),
        by_path: Some(String::new()),
        tran: Some(String::new()),
        ..Disk::default()
    };
    for (name, want) in hints {
        if !VALID_HINTS.contains(&name.as_str()) {
            return Err(HintError::Unknown(name.clone()));
        }
        matches_one(&probe, name, want)?;
    }
    Ok(())
}

/// True if `disk` matches every hint (invalid hints never match).
pub fn matches(disk: &Disk, hints: &Map<String, Value>) -> bool {
    !hints.is_empty() && matches_all(disk, hints).unwrap_or(false)
}

fn bad(name: &str, v: &Value) -> HintError {
    HintError::BadValue {
        name: name.to_string(),
        value: v.to_string(),
    }
}

fn matches_all(d: &Disk, hints: &Map<String, Value>) -> Result<bool, HintError> {
    for (name, want) in hints {
        if !matches_one(d, name, want)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn matches_one(d: &Disk, name: &str, want: &Value) -> Result<bool, HintError> {
    match name {
        "size" => {
            let expr = match want {
                Value::Number(n) => format!("== {n}"),
                Value::String(s) if s.trim().parse::<f64>().is_ok() => format!("== {}", s.trim()),
                Value::String(s) => s.clone(),
                _ => return Err(bad(name, want)),
            };
            numeric_match(d.size as f64 / (1u64 << 30) as f64, &expr).ok_or_else(|| bad(name, want))
        }
        "rotational" => {
            let b = match want {
                Value::Bool(b) => *b,
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err(bad(name, want)),
                },
                Value::Number(n) => n.as_i64() != Some(0),
                _ => return Err(bad(name, want)),
            };
            Ok(d.rotational == b)
        }
        _ => {
            let expr = match want {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(bad(name, want)),
            };
            let have = match name {
                "model" => d.model.clone(),
                "wwn" => d.wwn.clone(),
                "serial" => d.serial.clone(),
                "vendor" => d.vendor.clone(),
                "wwn_with_extension" => d.wwn_with_extension.clone(),
                "wwn_vendor_extension" => d.wwn_vendor_extension.clone(),
                "name" => Some(d.name.clone()),
                "hctl" => d.hctl.clone(),
                "by_path" => d.by_path.clone(),
                "tran" => d.tran.clone(),
                _ => return Err(HintError::Unknown(name.to_string())),
            };
            let Some(have) = have else { return Ok(false) };
            let expr = if name == "name" {
                normalize_name(&expr)
            } else {
                expr
            };
            string_match(&have.to_lowercase(), &expr.to_lowercase()).ok_or_else(|| bad(name, want))
        }
    }
}

/// `sda` → `/dev/sda` (keeping an operator prefix).
fn normalize_name(expr: &str) -> String {
    let t = expr.trim();
    if t.starts_with("/dev/")
        || t.starts_with('<')
        || t.starts_with("s") && t.split_whitespace().count() > 1
    {
        t.to_string()
    } else {
        format!("/dev/{t}")
    }
}

/// oslo `specs_matcher` for strings; `None` for a malformed expression.
pub fn string_match(value: &str, expr: &str) -> Option<bool> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    let Some((&op, rest)) = words.split_first() else {
        return Some(value.is_empty());
    };
    let arg = rest.join(" ");
    Some(match op {
        "s==" => value == arg,
        "s!=" => value != arg,
        "s>=" => value >= arg.as_str(),
        "s>" => value > arg.as_str(),
        "s<=" => value <= arg.as_str(),
        "s<" => value < arg.as_str(),
        "<in>" => value.contains(arg.as_str()),
        "<or>" => {
            // "<or> a <or> b": the words between the <or> markers.
            let alts: Vec<String> = expr
                .split("<or>")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            alts.iter().any(|a| a == value)
        }
        "<all-in>" => rest.iter().all(|w| value.contains(w)),
        // No operator: the whole expression is the value.
        _ => value == expr.trim(),
    })
}

/// oslo `specs_matcher` for numbers; `None` for a malformed expression.
pub fn numeric_match(value: f64, expr: &str) -> Option<bool> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    let (&op, rest) = words.split_first()?;
    if op == "<range-in>" {
        // <range-in> [ lo hi ] with ( ) for open bounds.
        let joined = rest.join(" ");
        let t = joined.trim();
        let lo_incl = t.starts_with('[');
        let hi_incl = t.ends_with(']');
        if !(lo_incl || t.starts_with('(')) || !(hi_incl || t.ends_with(')')) {
            return None;
        }
        let inner: Vec<f64> = t[1..t.len() - 1]
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [lo, hi] = inner[..] else { return None };
        let above = if lo_incl { value >= lo } else { value > lo };
        let below = if hi_incl { value <= hi } else { value < hi };
        return Some(above && below);
    }
    if op == "<or>" {
        let alts: Option<Vec<f64>> = expr
            .split("<or>")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect();
        return Some(alts?.contains(&value));
    }
    let arg: f64 = rest.first()?.parse().ok()?;
    Some(match op {
        "==" => value == arg,
        "=" | ">=" => value >= arg,
        "!=" => value != arg,
        ">" => value > arg,
        "<=" => value <= arg,
        "<" => value < arg,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk(name: &str, gib: u64, serial: &str, rot: bool) -> Disk {
        Disk {
            name: name.into(),
            size: gib << 30,
            serial: Some(serial.into()),
            model: Some("Samsung SSD".into()),
            rotational: rot,
            ..Default::default()
        }
    }

    fn hints(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn validates_hints_without_a_disk() {
        assert_eq!(
            validate(&hints(json!({"serial": "X", "size": ">= 10"}))),
            Ok(())
        );
        assert_eq!(validate(&hints(json!({"rotational": "no"}))), Ok(()));
        assert!(matches!(
            validate(&hints(json!({"colour": "red"}))),
            Err(HintError::Unknown(_))
        ));
        assert!(matches!(
            validate(&hints(json!({"size": "big"}))),
            Err(HintError::BadValue { .. })
        ));
        assert!(matches!(
            validate(&hints(json!({"serial": ["a"]}))),
            Err(HintError::BadValue { .. })
        ));
        assert!(matches!(
            validate(&hints(json!({"rotational": "maybe"}))),
            Err(HintError::BadValue { .. })
        ));
    }

    #[test]
    fn chooses_by_hints() {
        let disks = [
            disk("/dev/sda", 100, "AAA", true),
            disk("/dev/sdb", 20, "BBB", false),
        ];
        let c = |h: Value| choose(&disks, Some(&hints(h))).map(|d| d.name.clone());
        assert_eq!(c(json!({"serial": "bbb"})), Ok("/dev/sdb".into()));
        assert_eq!(c(json!({"name": "sda"})), Ok("/dev/sda".into()));
        assert_eq!(c(json!({"size": 20})), Ok("/dev/sdb".into()));
        assert_eq!(c(json!({"size": ">= 50"})), Ok("/dev/sda".into()));
        assert_eq!(
            c(json!({"size": "<range-in> ( 10 30 ]"})),
            Ok("/dev/sdb".into())
        );
        assert_eq!(c(json!({"rotational": false})), Ok("/dev/sdb".into()));
        assert_eq!(
            c(json!({"model": "<in> samsung", "rotational": true})),
            Ok("/dev/sda".into())
        );
        assert_eq!(
            c(json!({"serial": "<or> zzz <or> bbb"})),
            Ok("/dev/sdb".into())
        );
        assert_eq!(c(json!({"serial": "s!= aaa"})), Ok("/dev/sdb".into()));
        assert!(matches!(
            c(json!({"serial": "nope"})),
            Err(HintError::NoMatch(_))
        ));
        assert!(matches!(
            c(json!({"colour": "red"})),
            Err(HintError::Unknown(_))
        ));
    }

    #[test]
    fn smallest_disk_of_4_gib_without_hints() {
        let disks = [
            disk("/dev/sda", 100, "A", true),
            disk("/dev/sdb", 20, "B", false),
            disk("/dev/sdc", 1, "C", false),
        ];
        assert_eq!(choose(&disks, None).unwrap().name, "/dev/sdb");
        assert_eq!(choose(&disks[2..], None), Err(HintError::NoDisk));
    }
}
