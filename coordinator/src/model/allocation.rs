//! The allocation document (a request for a node by resource class and traits).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::node::links;

/// An Ironic allocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Allocation {
    /// UUID.
    pub uuid: String,
    /// Unique name.
    pub name: Option<String>,
    /// `allocating`, `active` or `error`.
    pub state: String,
    /// The node allocated.
    pub node_uuid: Option<String>,
    /// Resource class wanted.
    pub resource_class: Option<String>,
    /// Traits wanted.
    pub traits: Vec<String>,
    /// Candidate nodes (UUIDs or names).
    pub candidate_nodes: Vec<String>,
    /// Why it failed.
    pub last_error: Option<String>,
    /// Free-form data.
    pub extra: Map<String, Value>,
    /// Owner project.
    pub owner: Option<String>,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last update time.
    pub updated_at: Option<String>,
}

impl Allocation {
    /// The allocation as the API shows it.
    pub fn to_api(&self, base: &str) -> Map<String, Value> {
        let mut v = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        super::mask::mask_map(&mut v);
        v.insert(
            "links".into(),
            links(
                &format!("{base}/v1/allocations/{}", self.uuid),
                &format!("{base}/allocations/{}", self.uuid),
            ),
        );
        v
    }
}
