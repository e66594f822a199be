//! The node list's renderer (issue 21 item 5): a page of nodes written
//! straight into one JSON buffer with serde, field by field from the
//! [`Node`]s, without the `serde_json::Value` tree per node that
//! [`Node::to_api`] builds (to_value, masking in place, links, removing
//! hidden fields, projecting, then serializing the tree again).
//!
//! The output is byte for byte the old one's: keys in the order of
//! `serde_json::Map` (sorted), the same masking ([`crate::model::mask`]),
//! the same links, fields hidden by the microversion, `fields=` and the
//! short form, and the old provision state names. A node whose fields the
//! caller may not all see (the `baremetal:node:get:*` redaction) takes the
//! old path. `tests` compares both on rich nodes.
//!
//! A node read for the list ([`ListedNode`]) keeps its documents as their
//! stored text: those are written from the text by [`super::transcode`],
//! masked on the way, without parsing them into maps.

use std::fmt;
use std::sync::OnceLock;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};

use super::transcode::MaskedText;
use crate::api::microversion::ApiVersion;
use crate::db::listed_node::ListedNode;
use crate::model::Node;
use crate::model::mask::{MASK, is_secret_key, mask_url_credentials};
use crate::model::power::PowerState;
use crate::state::ProvisionState;

/// A field's value, borrowed from the node.
enum Val<'a> {
    /// A string that may hold a URL with a password.
    Str(&'a str),
    /// The same, or null.
    OptStr(Option<&'a str>),
    Bool(bool),
    OptBool(Option<bool>),
    /// A document, masked at every depth.
    Doc(&'a Map<String, Value>),
    /// A list of strings (traits).
    Strs(&'a [String]),
    Prov(ProvisionState),
    OptProv(Option<ProvisionState>),
    Power(Option<PowerState>),
}

type Get = for<'a> fn(&'a Node) -> Val<'a>;

macro_rules! fields {
    ($($name:ident: $kind:ident),* $(,)?) => {
        [$((stringify!($name), (|n: &Node| Val::$kind(fields!(@v n, $kind, $name))) as Get)),*]
    };
    (@v $n:ident, Str, $f:ident) => { &$n.$f };
    (@v $n:ident, OptStr, $f:ident) => { $n.$f.as_deref() };
    (@v $n:ident, Bool, $f:ident) => { $n.$f };
    (@v $n:ident, OptBool, $f:ident) => { $n.$f };
    (@v $n:ident, Doc, $f:ident) => { &$n.$f };
    (@v $n:ident, Strs, $f:ident) => { &$n.$f };
    (@v $n:ident, Prov, $f:ident) => { $n.$f };
    (@v $n:ident, OptProv, $f:ident) => { $n.$f };
    (@v $n:ident, Power, $f:ident) => { $n.$f };
}

/// Every API field of a node but the links and the `conductor`
/// ([`EXTRA_FIELDS`]), in any order; [`table`] sorts them.
const NODE_FIELDS: [(&str, Get); 63] = fields![
    uuid: Str, name: OptStr, driver: Str, driver_info: Doc,
    driver_internal_info: Doc, extra: Doc, instance_info: Doc, instance_uuid: OptStr,
    instance_name: OptStr, properties: Doc, power_state: Power, target_power_state: Power,
    provision_state: Prov, target_provision_state: OptProv, provision_updated_at: OptStr,
    maintenance: Bool, maintenance_reason: OptStr, fault: OptStr, health: OptStr,
    last_error: OptStr, reservation: OptStr, console_enabled: Bool, created_at: OptStr,
    updated_at: OptStr, inspection_started_at: OptStr, inspection_finished_at: OptStr,
    clean_step: Doc, deploy_step: Doc, service_step: Doc, chassis_uuid: OptStr,
    resource_class: OptStr, conductor_group: Str, owner: OptStr, lessee: OptStr,
    protected: Bool, protected_reason: OptStr, description: OptStr, traits: Strs,
    allocation_uuid: OptStr, automated_clean: OptBool, retired: Bool, retired_reason: OptStr,
    network_data: Doc, boot_mode: OptStr, secure_boot: OptBool, shard: OptStr,
    parent_node: OptStr, disable_power_off: Bool, raid_config: Doc, target_raid_config: Doc,
    boot_interface: OptStr, console_interface: OptStr, deploy_interface: OptStr,
    inspect_interface: OptStr, management_interface: OptStr, network_interface: OptStr,
    power_interface: OptStr, raid_interface: OptStr, rescue_interface: OptStr,
    storage_interface: OptStr, vendor_interface: OptStr, bios_interface: OptStr,
    firmware_interface: OptStr,
];

/// The fields that are not the node's own: its links and its `conductor`.
const EXTRA_FIELDS: [(&str, Kind); 6] = [
    ("links", Kind::Links(None)),
    ("ports", Kind::Links(Some("ports"))),
    ("portgroups", Kind::Links(Some("portgroups"))),
    ("states", Kind::Links(Some("states"))),
    ("volume", Kind::Links(Some("volume"))),
    ("conductor", Kind::Conductor),
];

/// How a field is rendered.
#[derive(Clone, Copy)]
enum Kind {
    Field(Get),
    Links(Option<&'static str>),
    Conductor,
}

/// The API fields in the order the old renderer's map wrote them.
fn table() -> &'static [(&'static str, Kind)] {
    static TABLE: OnceLock<Vec<(&'static str, Kind)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Vec<(&'static str, Kind)> = NODE_FIELDS
            .iter()
            .map(|(name, get)| (*name, Kind::Field(*get)))
            .chain(EXTRA_FIELDS)
            .collect();
        t.sort_by(|a, b| a.0.cmp(b.0));
        t
    })
}

/// What one request renders: which fields, at which version, with which
/// base URL for the links.
pub struct View<'a> {
    base: &'a str,
    version: ApiVersion,
    /// Per [`table`] entry: shown.
    shown: Vec<bool>,
}

impl<'a> View<'a> {
    /// The fields `fields` names (all when `None`) that `version` knows.
    pub fn new(base: &'a str, version: ApiVersion, fields: Option<&[String]>) -> Self {
        let shown = table()
            .iter()
            .map(|(name, _)| {
                super::versions::known_at(super::versions::NODE_FIELDS, name, version)
                    && fields.is_none_or(|f| f.iter().any(|x| x == name))
            })
            .collect();
        Self {
            base,
            version,
            shown,
        }
    }

    /// Whether the view shows `field`.
    pub fn shows(&self, field: &str) -> bool {
        table()
            .iter()
            .zip(&self.shown)
            .any(|((name, _), shown)| *name == field && *shown)
    }
}

/// A node as `view` shows it, with its `conductor`.
pub struct Rendered<'v, 'n> {
    /// The request's view.
    pub view: &'v View<'v>,
    /// The node.
    pub node: &'n Node,
    /// The coordinator acting for it (the `conductor` field).
    pub conductor: Option<&'n str>,
    /// The node as read for the list, when it was: the documents it holds
    /// as text are written from that text (`node`'s maps are empty then).
    pub listed: Option<&'n ListedNode<'n>>,
}

impl Serialize for Rendered<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (node, view) = (self.node, self.view);
        let mut m = s.serialize_map(None)?;
        for ((name, kind), shown) in table().iter().zip(&view.shown) {
            if !shown {
                continue;
            }
            match kind {
                Kind::Field(get) => match get(node) {
                    Val::Prov(p) => m.serialize_entry(name, &StateAt(Some(p), view.version))?,
                    Val::OptProv(p) => m.serialize_entry(name, &StateAt(p, view.version))?,
                    Val::Doc(d) => match self.listed.and_then(|l| l.doc(name)) {
                        Some(text) => m.serialize_entry(name, &MaskedText(text))?,
                        None => m.serialize_entry(name, &MaskedMap(d))?,
                    },
                    v => m.serialize_entry(name, &v)?,
                },
                Kind::Links(sub) => m.serialize_entry(
                    name,
                    &Links {
                        base: view.base,
                        uuid: &node.uuid,
                        sub: *sub,
                    },
                )?,
                Kind::Conductor => m.serialize_entry(name, &self.conductor.map(MaskedStr))?,
            }
        }
        m.end()
    }
}

/// A provision state as `version` names it (`available` was null before
/// 1.2, `inspect wait` was `inspecting` before 1.39).
struct StateAt(Option<ProvisionState>, ApiVersion);

impl Serialize for StateAt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(ProvisionState::Available) if !self.1.at_least(2) => s.serialize_none(),
            Some(ProvisionState::InspectWait) if !self.1.at_least(39) => {
                s.serialize_str("inspecting")
            }
            p => p.serialize(s),
        }
    }
}

impl Serialize for Val<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Str(v) => masked_str(v, s),
            Val::OptStr(Some(v)) => masked_str(v, s),
            Val::OptStr(None) => s.serialize_none(),
            Val::Bool(b) => s.serialize_bool(*b),
            Val::OptBool(b) => b.serialize(s),
            Val::Doc(m) => MaskedMap(m).serialize(s),
            Val::Strs(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in *v {
                    seq.serialize_element(&MaskedStr(x))?;
                }
                seq.end()
            }
            Val::Prov(p) => p.serialize(s),
            Val::OptProv(p) => p.serialize(s),
            Val::Power(p) => p.serialize(s),
        }
    }
}

fn masked_str<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    match mask_url_credentials(v) {
        Some(m) => s.serialize_str(&m),
        None => s.serialize_str(v),
    }
}

/// A document masked as [`crate::model::mask::mask_value`] masks it.
struct MaskedMap<'a>(&'a Map<String, Value>);

impl Serialize for MaskedMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            if is_secret_key(k) && !v.is_null() {
                m.serialize_entry(k, MASK)?;
            } else {
                m.serialize_entry(k, &Masked(v))?;
            }
        }
        m.end()
    }
}

/// A string, masked.
struct MaskedStr<'a>(&'a str);

impl Serialize for MaskedStr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        masked_str(self.0, s)
    }
}

/// A value masked at every depth.
struct Masked<'a>(&'a Value);

impl Serialize for Masked<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => MaskedMap(m).serialize(s),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a {
                    seq.serialize_element(&Masked(x))?;
                }
                seq.end()
            }
            Value::String(v) => masked_str(v, s),
            v => v.serialize(s),
        }
    }
}

/// Ironic's `links` pair of a node or of one of its sub-resources, written
/// without building the URLs first.
struct Links<'a> {
    base: &'a str,
    uuid: &'a str,
    sub: Option<&'static str>,
}

impl Links<'_> {
    fn href(&self, v1: bool) -> impl fmt::Display + '_ {
        struct Href<'b>(&'b Links<'b>, bool);
        impl fmt::Display for Href<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let l = self.0;
                f.write_str(l.base)?;
                f.write_str(if self.1 { "/v1/nodes/" } else { "/nodes/" })?;
                f.write_str(l.uuid)?;
                if let Some(sub) = l.sub {
                    f.write_str("/")?;
                    f.write_str(sub)?;
                }
                Ok(())
            }
        }
        Href(self, v1)
    }
}

impl Serialize for Links<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct One<'b>(&'b Links<'b>, bool);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_key("href")?;
                m.serialize_value(&Collect(self.0.href(self.1)))?;
                m.serialize_entry("rel", if self.1 { "self" } else { "bookmark" })?;
                m.end()
            }
        }
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&One(self, true))?;
        seq.serialize_element(&One(self, false))?;
        seq.end()
    }
}

/// A `Display` serialized as a string (`collect_str`: no allocation with
/// serde_json).
struct Collect<D>(D);

impl<D: fmt::Display> Serialize for Collect<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::db::listed_node::NodeText;

    /// The old renderer: the node's map from `to_api`, hidden fields and
    /// state names of `version`, projected to `fields`.
    fn old(node: &Node, base: &str, version: ApiVersion, fields: Option<&[String]>) -> String {
        let mut obj = node.to_api(base);
        crate::api::versions::node_at(&mut obj, version);
        let obj = match fields {
            Some(f) => crate::api::collection::project(obj, f),
            None => obj,
        };
        Value::Object(obj).to_string()
    }

    fn new(node: &Node, base: &str, version: ApiVersion, fields: Option<&[String]>) -> String {
        let view = View::new(base, version, fields);
        serde_json::to_string(&Rendered {
            view: &view,
            node,
            conductor: node.conductor.as_deref(),
            listed: None,
        })
        .unwrap()
    }

    /// The renderer on `text` as the list reads it (documents as text).
    fn listed(text: &str, base: &str, version: ApiVersion, fields: Option<&[String]>) -> String {
        let view = View::new(base, version, fields);
        let text = NodeText {
            uuid: "u".into(),
            data: text.into(),
        };
        let l = ListedNode::parse(&text).unwrap();
        serde_json::to_string(&Rendered {
            view: &view,
            node: &l.node,
            conductor: l.node.conductor.as_deref(),
            listed: Some(&l),
        })
        .unwrap()
    }

    /// Stored documents as Ingot writes them (keys sorted) and as written
    /// by hand (the API benchmark's: keys in any order, spaces, a key
    /// twice).
    fn texts() -> Vec<String> {
        let mut t: Vec<String> = rich()
            .iter()
            .map(|n| serde_json::to_string(n).unwrap())
            .collect();
        t.push(
            r#"{"uuid":"3be26c0b-03f2-4d2e-ae87-c02d7f33c123","name":"node-00001","driver":"ipmi",
            "provision_state":"available","power_state":"power off","resource_class":"bm-small",
            "conductor_group":"","created_at":"2026-01-01T00:00:00.000001+00:00",
            "instance_uuid":null,"traits":["CUSTOM_RACK_1"],
            "properties":{"cpus":64,"memory_mb":262144,"local_gb":900,"cpu_arch":"x86_64","capabilities":"boot_mode:uefi"},
            "driver_info" : { "ipmi_address":"10.1.0.1","ipmi_username":"admin","ipmi_password":"secret",
              "deploy_kernel":"http://u:p@images/ipa.kernel","fast_track":true,"fast_track":false,
              "nested":{"z":[{"b":1,"a":2}],"y_token":{"k":1},"x":"\u00e9"}},
            "driver_internal_info":{"last_power_state_change":"2026","clean_steps":null},
            "instance_info":{},"extra":{"rack":"r1"},"inventory":{"cpu":{"count":4}},
            "intent":{"action":"deploy"},"fence":2}"#
                .to_owned(),
        );
        t
    }

    fn rich() -> Vec<Node> {
        let mut a: Node = serde_json::from_str(
            r#"{
            "uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123",
            "name": "rich-1",
            "driver": "ipmi",
            "driver_info": {
                "ipmi_address": "10.0.0.1", "ipmi_password": "p1", "ipmi_username": "admin",
                "redfish": {"password": "p2", "address": "https://u:p3@bmc/x", "list": [1, 2.5, "http://a:b@c/", null, {"token": "t"}]},
                "snmp_priv_key": "k", "empty_password": null, "deploy_kernel": "http://img/k",
                "unicode": "é \"quoted\" \\ \n tab\t", "Big_TOKEN": "x", "key": "y", "a-key": "z"
            },
            "driver_internal_info": {"agent_secret_token": "s", "agent_url": "http://10.0.0.5:9999", "ingot_progress": {"bytes_done": 1, "rate": 0.5}},
            "extra": {"configdrive": "cd", "n": 1e300, "neg": -3, "big": 18446744073709551615},
            "instance_info": {"image_source": "https://glance:pw@img.example/a.qcow2?x=y", "root_gb": 100},
            "instance_uuid": "10000000-0000-4000-8000-000000000001",
            "instance_name": "vm-1",
            "properties": {"cpus": 64, "capabilities": "boot_mode:uefi"},
            "power_state": "power on",
            "target_power_state": "power off",
            "provision_state": "inspect wait",
            "target_provision_state": "manageable",
            "maintenance": true,
            "maintenance_reason": "see http://x:y@z/",
            "last_error": "failed: <b>&\u0001",
            "reservation": "c1",
            "created_at": "2026-01-01T00:00:00+00:00",
            "clean_step": {"step": "erase_devices", "priority": 10},
            "deploy_step": {"step": "write_image", "ingot_progress": {"total": 5}},
            "resource_class": "bm-large",
            "conductor_group": "Group-A",
            "conductor": "ingot-1",
            "owner": "p1", "lessee": "p2",
            "protected": true, "protected_reason": "prod",
            "description": "desc", "traits": ["CUSTOM_A", "http://u:p@t/"],
            "automated_clean": false, "retired": true, "retired_reason": "old",
            "network_data": {"links": [{"id": "eth0"}]},
            "boot_mode": "uefi", "secure_boot": true, "shard": "s1", "parent_node": "p",
            "disable_power_off": true,
            "raid_config": {"logical_disks": []}, "target_raid_config": {},
            "boot_interface": "ipxe", "deploy_interface": "direct", "power_interface": "ipmitool",
            "intent": {"action": "deploy"}, "progress_ms": 5, "fence": 3,
            "inventory": {"cpu": {"count": 1}}
        }"#,
        )
        .unwrap();
        a.conductor = Some("ingot-1".into());
        let mut b = Node {
            uuid: "2be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
            provision_state: ProvisionState::Available,
            ..Node::default()
        };
        b.conductor = None;
        vec![a, b, Node::default()]
    }

    #[test]
    fn renders_as_the_old_renderer() {
        let fields: Vec<Vec<String>> = vec![
            super::super::DEFAULT_LIST_FIELDS
                .map(str::to_owned)
                .to_vec(),
            "uuid,power_state,target_power_state,provision_state,target_provision_state,\
             last_error,maintenance,properties,instance_uuid,traits,resource_class"
                .split(',')
                .map(str::to_owned)
                .collect(),
            vec![
                "driver_info".into(),
                "links".into(),
                "ports".into(),
                "conductor".into(),
            ],
        ];
        for node in rich() {
            for base in ["http://127.0.0.1:6385", "https://h\"x:1"] {
                for minor in [1, 2, 5, 38, 39, 78, 99] {
                    let v = ApiVersion(minor);
                    assert_eq!(
                        new(&node, base, v, None),
                        old(&node, base, v, None),
                        "1.{minor}"
                    );
                    for f in &fields {
                        let f = Some(f.as_slice());
                        assert_eq!(
                            new(&node, base, v, f),
                            old(&node, base, v, f),
                            "1.{minor} {f:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn renders_stored_text_as_the_old_renderer() {
        let fields = [
            None,
            Some(
                super::super::DEFAULT_LIST_FIELDS
                    .map(str::to_owned)
                    .to_vec(),
            ),
            Some(vec![
                "driver_info".to_owned(),
                "properties".to_owned(),
                "uuid".to_owned(),
            ]),
        ];
        for text in texts() {
            let node: Node = serde_json::from_str(&text).unwrap();
            for minor in [1, 39, 99] {
                let v = ApiVersion(minor);
                for f in &fields {
                    let f = f.as_deref();
                    assert_eq!(
                        listed(&text, "http://h:1", v, f),
                        old(&node, "http://h:1", v, f),
                        "1.{minor} {f:?} {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_table_is_every_api_field() {
        let names: Vec<&str> = table().iter().map(|(n, _)| *n).collect();
        let known: Vec<&str> = super::super::known_fields()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(names, known);
        assert!(!names.iter().any(|n| is_secret_key(n)));
    }
}
