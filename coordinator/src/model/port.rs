//! The port document (a NIC of a node, by MAC address).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::node::links;

/// An Ironic port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Port {
    /// UUID.
    pub uuid: String,
    /// MAC address, lower case.
    pub address: String,
    /// The node.
    pub node_uuid: String,
    /// Free-form data.
    pub extra: Map<String, Value>,
    /// Switch port (`switch_id`, `port_id`, `switch_info`), e.g. from LLDP.
    pub local_link_connection: Map<String, Value>,
    /// PXE-capable.
    pub pxe_enabled: bool,
    /// Physical network.
    pub physical_network: Option<String>,
    /// Internal data (`tenant_vif_port_id` when a VIF is attached).
    pub internal_info: Map<String, Value>,
    /// Smart NIC.
    pub is_smartnic: bool,
    /// Port group.
    pub portgroup_uuid: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// May join a dynamic port group (Ironic 1.111; Ingot has no port
    /// groups, so it is only stored).
    pub available_for_dynamic_portgroup: bool,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last update time.
    pub updated_at: Option<String>,
}

impl Default for Port {
    fn default() -> Self {
        Self {
            uuid: String::new(),
            address: String::new(),
            node_uuid: String::new(),
            extra: Map::new(),
            local_link_connection: Map::new(),
            pxe_enabled: true,
            physical_network: None,
            internal_info: Map::new(),
            is_smartnic: false,
            portgroup_uuid: None,
            name: None,
            description: None,
            category: None,
            vendor: None,
            available_for_dynamic_portgroup: true,
            created_at: None,
            updated_at: None,
        }
    }
}

/// Fields a client may set on create or PATCH.
pub const WRITABLE_FIELDS: [&str; 13] = [
    "address",
    "node_uuid",
    "extra",
    "local_link_connection",
    "pxe_enabled",
    "physical_network",
    "is_smartnic",
    "portgroup_uuid",
    "name",
    "description",
    "category",
    "vendor",
    "available_for_dynamic_portgroup",
];

impl Port {
    /// The port as the API shows it.
    pub fn to_api(&self, base: &str) -> Map<String, Value> {
        let mut v = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        super::mask::mask_map(&mut v);
        v.insert(
            "links".into(),
            links(
                &format!("{base}/v1/ports/{}", self.uuid),
                &format!("{base}/ports/{}", self.uuid),
            ),
        );
        v
    }

    /// The VIF attached to this port, if any.
    pub fn vif(&self) -> Option<&str> {
        self.internal_info
            .get("tenant_vif_port_id")
            .and_then(Value::as_str)
    }
}

/// Normalises a MAC address (lower case, colons); `None` if it is not one.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let parts = s.split([':', '-']).count();
    if parts != 6 {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let bytes: Vec<&str> = (0..6).filter_map(|i| lower.get(i * 2..i * 2 + 2)).collect();
    Some(bytes.join(":"))
}
