//! The boot mode a deploy uses (Ironic's `boot_mode_utils.get_boot_mode`).
//!
//! In order: `instance_info.deploy_boot_mode`, the `boot_mode` capability of
//! `instance_info.capabilities` (what Nova's flavor asked for), a requested
//! secure boot (`secure_boot:true` in either capabilities: UEFI), the
//! `boot_mode` capability of `properties.capabilities`, and the mode
//! inspection reported (`node.boot_mode`). Capabilities are a dict or
//! Ironic's string form `key:value,key:value`. With none of them the mode is
//! unknown: the agent keeps the mode it booted in, and power drivers send no
//! mode.

use serde_json::{Map, Value};

use super::Node;

/// The two boot modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// UEFI.
    Uefi,
    /// Legacy BIOS.
    Bios,
}

impl BootMode {
    /// Ironic's name: `uefi` or `bios`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uefi => "uefi",
            Self::Bios => "bios",
        }
    }

    /// Reads `uefi` or `bios` (any case); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uefi" => Some(Self::Uefi),
            "bios" => Some(Self::Bios),
            _ => None,
        }
    }
}

/// One capability from a capabilities value (dict or `k:v,k:v` string).
pub fn capability(caps: Option<&Value>, key: &str) -> Option<String> {
    match caps? {
        Value::Object(m) => match m.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        },
        Value::String(s) => s.split(',').find_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        }),
        _ => None,
    }
}

fn caps(m: &Map<String, Value>) -> Option<&Value> {
    m.get("capabilities")
}

fn is_true(v: Option<String>) -> bool {
    v.is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// The boot mode the node deploys and boots its instance in, when known.
pub fn for_deploy(node: &Node) -> Option<BootMode> {
    let instance = caps(&node.instance_info);
    let properties = caps(&node.properties);
    node.instance_info
        .get("deploy_boot_mode")
        .and_then(Value::as_str)
        .and_then(BootMode::parse)
        .or_else(|| capability(instance, "boot_mode").and_then(|s| BootMode::parse(&s)))
        .or_else(|| {
            (is_true(capability(instance, "secure_boot"))
                || is_true(capability(properties, "secure_boot")))
            .then_some(BootMode::Uefi)
        })
        .or_else(|| capability(properties, "boot_mode").and_then(|s| BootMode::parse(&s)))
        .or_else(|| node.boot_mode.as_deref().and_then(BootMode::parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(instance: Value, properties: Value, inspected: Option<&str>) -> Node {
        Node {
            instance_info: instance.as_object().cloned().unwrap_or_default(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            boot_mode: inspected.map(str::to_owned),
            ..Node::default()
        }
    }

    #[test]
    fn capabilities_as_dict_or_string() {
        let s = json!("cpu_vt:true, boot_mode:uefi,secure_boot:false");
        assert_eq!(capability(Some(&s), "boot_mode").as_deref(), Some("uefi"));
        assert_eq!(
            capability(Some(&s), "secure_boot").as_deref(),
            Some("false")
        );
        assert_eq!(capability(Some(&s), "boot"), None);
        let d = json!({"boot_mode": "bios", "secure_boot": true});
        assert_eq!(capability(Some(&d), "boot_mode").as_deref(), Some("bios"));
        assert_eq!(capability(Some(&d), "secure_boot").as_deref(), Some("true"));
        assert_eq!(capability(None, "boot_mode"), None);
        assert_eq!(capability(Some(&json!(3)), "boot_mode"), None);
    }

    #[test]
    fn the_instance_wins_then_secure_boot_then_properties_then_inspection() {
        assert_eq!(for_deploy(&node(json!({}), json!({}), None)), None);
        assert_eq!(
            for_deploy(&node(json!({}), json!({}), Some("uefi"))),
            Some(BootMode::Uefi)
        );
        assert_eq!(
            for_deploy(&node(
                json!({}),
                json!({"capabilities": "boot_mode:bios"}),
                Some("uefi")
            )),
            Some(BootMode::Bios)
        );
        assert_eq!(
            for_deploy(&node(
                json!({"capabilities": {"boot_mode": "UEFI"}}),
                json!({"capabilities": "boot_mode:bios"}),
                Some("bios")
            )),
            Some(BootMode::Uefi)
        );
        assert_eq!(
            for_deploy(&node(
                json!({"capabilities": {"secure_boot": "true"}}),
                json!({"capabilities": "boot_mode:bios"}),
                None
            )),
            Some(BootMode::Uefi)
        );
        assert_eq!(
            for_deploy(&node(
                json!({"deploy_boot_mode": "bios", "capabilities": {"boot_mode": "uefi"}}),
                json!({}),
                None
            )),
            Some(BootMode::Bios)
        );
        // Garbage is no mode: the next source decides.
        assert_eq!(
            for_deploy(&node(
                json!({"capabilities": {"boot_mode": "legacy-ish"}}),
                json!({}),
                Some("bios")
            )),
            Some(BootMode::Bios)
        );
    }
}
