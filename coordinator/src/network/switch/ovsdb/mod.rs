//! The Open vSwitch driver: OVSDB (RFC 7047) spoken natively to
//! `ovsdb-server`, on its unix socket or TCP. `ovs-vsctl` is never run.
//!
//! A port's VLAN settings are three columns of the `Port` table:
//!
//! | [`PortState`] | `tag` | `trunks` | `vlan_mode` |
//! |---|---|---|---|
//! | access VLAN v | v | empty | `access` |
//! | trunk, native n | n | allowed | `native-untagged` |
//! | trunk, no native | empty | allowed | `trunk` |
//! | quarantined | the quarantine VLAN | empty | `access` |
//!
//! Quarantine: Open vSwitch has no administrative state on a `Port`, and
//! the `Interface` table's `admin_state` is status that ovs-vswitchd
//! reports, not a setting. So a quarantined port is an access port on the
//! quarantine VLAN (`[network_roles] quarantine`), a VLAN that no other
//! network uses and nothing serves: the node's frames stay on it. Reading
//! back tag = quarantine VLAN gives [`PortState::Quarantined`], which is why
//! the quarantine VLAN cannot be set as an ordinary access or trunk VLAN.
//!
//! Each call is one transaction on a fresh connection ([`rpc`]): `update`
//! of the `Port` row selected by name (plus a `comment`, which
//! ovsdb-server keeps in its log), or `select` of its columns for the read
//! back. Every call has a timeout, and answers are limited in size
//! ([`DEFAULT_MAX_MESSAGE`]).

pub mod framing;
pub mod rpc;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

pub use rpc::OvsdbAddress;

use super::{BoxFuture, PortState, SwitchDriver, SwitchError, SwitchErrorKind, VlanId};

/// The database Open vSwitch keeps its configuration in.
pub const DATABASE: &str = "Open_vSwitch";

/// The largest message accepted from the server. The answers we ask for
/// are a few hundred bytes (one row, four columns; 4094 trunk VLANs are
/// 20 KiB), and a parsed JSON value takes up to about 30 times its text
/// (an array of one-digit numbers), so 1 MiB bounds the memory one answer
/// can cost to some 30 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// A switch run by Open vSwitch.
#[derive(Debug)]
pub struct OvsdbSwitch {
    name: String,
    address: OvsdbAddress,
    timeout: Duration,
    quarantine: VlanId,
    max_message: usize,
    next_id: AtomicU64,
}

impl OvsdbSwitch {
    /// A driver for the switch `name` whose ovsdb-server is at `address`;
    /// every call (connect, request, answer) must finish within `timeout`.
    /// Quarantined ports go on `quarantine`.
    pub fn new(name: &str, address: OvsdbAddress, timeout: Duration, quarantine: VlanId) -> Self {
        Self {
            name: name.to_owned(),
            address,
            timeout,
            quarantine,
            max_message: DEFAULT_MAX_MESSAGE,
            next_id: AtomicU64::new(1),
        }
    }

    /// Changes the largest message accepted from the server.
    pub fn with_max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    fn error(&self, port: &str, kind: SwitchErrorKind) -> SwitchError {
        SwitchError::new(&self.name, port, kind)
    }

    /// Runs one transaction (`ops` on [`DATABASE`]) and returns its results,
    /// one per operation; an operation's error becomes
    /// [`SwitchErrorKind::Refused`].
    async fn transact(&self, port: &str, ops: Vec<Value>) -> Result<Vec<Value>, SwitchError> {
        let count = ops.len();
        let mut params = Vec::with_capacity(count + 1);
        params.push(Value::from(DATABASE));
        params.extend(ops);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = rpc::call(
            &self.address,
            "transact",
            Value::Array(params),
            id,
            self.max_message,
        );
        let result = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                return Err(self.error(
                    port,
                    SwitchErrorKind::Timeout {
                        ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                    },
                ));
            }
            Ok(Err(e)) => return Err(self.error(port, self.kind(e))),
            Ok(Ok(result)) => result,
        };
        let Value::Array(results) = result else {
            return Err(self.error(
                port,
                SwitchErrorKind::Protocol(
                    "transact answered with something other than an array".into(),
                ),
            ));
        };
        // On failure the array holds an error object for the failing
        // operation, possibly one more for the commit (RFC 7047 4.1.3).
        if let Some(error) = results.iter().find(|r| r.get("error").is_some()) {
            return Err(self.error(port, SwitchErrorKind::Refused(rpc::describe_error(error))));
        }
        if results.len() < count {
            return Err(self.error(
                port,
                SwitchErrorKind::Protocol(format!(
                    "transact answered {} results for {count} operations",
                    results.len()
                )),
            ));
        }
        Ok(results)
    }

    fn kind(&self, e: rpc::RpcError) -> SwitchErrorKind {
        match e {
            rpc::RpcError::Connect(source) => SwitchErrorKind::Unreachable {
                address: self.address.to_string(),
                source,
            },
            rpc::RpcError::Lost(why) => SwitchErrorKind::ConnectionLost(why),
            rpc::RpcError::Protocol(why) => SwitchErrorKind::Protocol(why),
            rpc::RpcError::Server(why) => SwitchErrorKind::Refused(why),
        }
    }
}

/// `where` clause selecting the port named `port`.
fn by_name(port: &str) -> Value {
    json!([["name", "==", port]])
}

/// The columns a port's state is made of.
const COLUMNS: [&str; 4] = ["name", "tag", "trunks", "vlan_mode"];

/// An OVSDB set of integers (`["set", [...]]`, also for one or none).
fn int_set(values: impl IntoIterator<Item = u16>) -> Value {
    json!(["set", values.into_iter().collect::<Vec<_>>()])
}

/// The `Port` columns for `state`, or why it cannot be set.
pub fn encode(state: &PortState, quarantine: VlanId) -> Result<Map<String, Value>, String> {
    let (tag, trunks, mode): (Option<VlanId>, &BTreeSet<VlanId>, &str) = match state {
        PortState::Access { vlan } => {
            if *vlan == quarantine {
                return Err(format!(
                    "VLAN {vlan} is the quarantine VLAN: quarantine the port instead"
                ));
            }
            (Some(*vlan), &BTreeSet::new(), "access")
        }
        PortState::Trunk { native, allowed } => {
            if allowed.is_empty() {
                return Err(
                    "a trunk needs at least one allowed VLAN (Open vSwitch takes none as every VLAN)"
                        .into(),
                );
            }
            if *native == Some(quarantine) || allowed.contains(&quarantine) {
                return Err(format!(
                    "VLAN {quarantine} is the quarantine VLAN and cannot be trunked"
                ));
            }
            let mode = if native.is_some() {
                "native-untagged"
            } else {
                "trunk"
            };
            (*native, allowed, mode)
        }
        PortState::Quarantined => (Some(quarantine), &BTreeSet::new(), "access"),
        PortState::AllVlans | PortState::Other { .. } => {
            return Err(format!("{state} cannot be set"));
        }
    };
    let mut row = Map::new();
    row.insert(
        "tag".into(),
        match tag {
            Some(t) => Value::from(t.get()),
            None => int_set([]),
        },
    );
    row.insert("trunks".into(), int_set(trunks.iter().map(|v| v.get())));
    row.insert("vlan_mode".into(), Value::from(mode));
    Ok(row)
}

/// The elements of an OVSDB set value: `["set", [...]]`, or a single atom.
fn set_elements(value: &Value) -> Result<Vec<&Value>, String> {
    match value {
        Value::Array(a) if a.len() == 2 && a[0] == "set" => match &a[1] {
            Value::Array(items) => Ok(items.iter().collect()),
            _ => Err(format!("malformed set {value}")),
        },
        Value::Array(_) | Value::Object(_) => Err(format!("unexpected value {value}")),
        atom => Ok(vec![atom]),
    }
}

fn integer(value: &Value) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| format!("expected an integer, got {value}"))
}

/// An optional column (`min: 0, max: 1`): at most one element.
fn optional<'v>(row: &'v Map<String, Value>, column: &str) -> Result<Option<&'v Value>, String> {
    let value = row
        .get(column)
        .ok_or_else(|| format!("the answer has no {column} column"))?;
    let mut items = set_elements(value)?;
    match items.len() {
        0 => Ok(None),
        1 => Ok(items.pop()),
        _ => Err(format!("{column} holds more than one value")),
    }
}

/// A VLAN id read from the switch, if it is a usable one.
fn vlan(n: i64) -> Option<VlanId> {
    u16::try_from(n).ok().and_then(VlanId::new)
}

/// The [`PortState`] of a `Port` row (columns `tag`, `trunks`, `vlan_mode`).
pub fn decode(row: &Map<String, Value>, quarantine: VlanId) -> Result<PortState, String> {
    let tag = optional(row, "tag")?.map(integer).transpose()?;
    let trunks = set_elements(
        row.get("trunks")
            .ok_or_else(|| "the answer has no trunks column".to_owned())?,
    )?
    .into_iter()
    .map(integer)
    .collect::<Result<BTreeSet<i64>, String>>()?;
    let mode = match optional(row, "vlan_mode")? {
        Some(m) => Some(
            m.as_str()
                .ok_or_else(|| format!("vlan_mode {m} is not a string"))?,
        ),
        None => None,
    };
    let other = |why: &str| {
        let trunks: Vec<String> = trunks.iter().map(i64::to_string).collect();
        PortState::Other {
            description: format!(
                "{why}: tag={} trunks=[{}] vlan_mode={}",
                tag.map_or_else(|| "none".to_owned(), |t| t.to_string()),
                trunks.join(","),
                mode.unwrap_or("none"),
            ),
        }
    };
    // Without vlan_mode, a port with a tag is an access port and one
    // without is a trunk (ovs-vswitchd.conf.db(5)).
    let mode = mode.unwrap_or(if tag.is_some() { "access" } else { "trunk" });
    let allowed: Option<BTreeSet<VlanId>> = trunks.iter().map(|t| vlan(*t)).collect();
    Ok(match mode {
        // ovs-vswitchd ignores the trunks of an access port (with a
        // warning); we never set both, so both read back is drift.
        "access" if !trunks.is_empty() => other("access with trunks"),
        "access" => match tag.map(vlan) {
            Some(Some(v)) if v == quarantine => PortState::Quarantined,
            Some(Some(v)) => PortState::Access { vlan: v },
            Some(None) => other("access on an unusable VLAN"),
            None => other("access without a tag"),
        },
        "trunk" | "native-untagged" => {
            let native = match (mode, tag) {
                ("trunk", None) => None,
                ("trunk", Some(_)) => return Ok(other("trunk with a tag")),
                (_, Some(t)) => match vlan(t) {
                    Some(v) => Some(v),
                    None => return Ok(other("native VLAN unusable")),
                },
                (_, None) => return Ok(other("native-untagged without a tag")),
            };
            match allowed {
                _ if trunks.is_empty() => PortState::AllVlans,
                Some(allowed) => PortState::Trunk { native, allowed },
                None => other("trunks an unusable VLAN"),
            }
        }
        _ => other("unsupported vlan_mode"),
    })
}

impl SwitchDriver for OvsdbSwitch {
    fn name(&self) -> &str {
        &self.name
    }

    fn set_port<'a>(
        &'a self,
        port: &'a str,
        state: &'a PortState,
    ) -> BoxFuture<'a, Result<(), SwitchError>> {
        Box::pin(async move {
            let row = encode(state, self.quarantine)
                .map_err(|why| self.error(port, SwitchErrorKind::Invalid(why)))?;
            let ops = vec![
                json!({"op": "update", "table": "Port", "where": by_name(port), "row": row}),
                json!({"op": "comment", "comment": format!("ingot: port {port} to {state}")}),
            ];
            let results = self.transact(port, ops).await?;
            match results[0].get("count").and_then(Value::as_u64) {
                Some(0) => Err(self.error(port, SwitchErrorKind::NoSuchPort)),
                Some(_) => {
                    tracing::info!(switch = %self.name, port, state = %state, "switch port set");
                    Ok(())
                }
                None => Err(self.error(
                    port,
                    SwitchErrorKind::Protocol("update answered without a count".into()),
                )),
            }
        })
    }

    fn read_port<'a>(&'a self, port: &'a str) -> BoxFuture<'a, Result<PortState, SwitchError>> {
        Box::pin(async move {
            let ops = vec![json!({
                "op": "select", "table": "Port", "where": by_name(port), "columns": COLUMNS,
            })];
            let results = self.transact(port, ops).await?;
            let protocol = |why: String| self.error(port, SwitchErrorKind::Protocol(why));
            let rows = results[0]
                .get("rows")
                .and_then(Value::as_array)
                .ok_or_else(|| protocol("select answered without rows".into()))?;
            let row = match rows.as_slice() {
                [] => return Err(self.error(port, SwitchErrorKind::NoSuchPort)),
                [Value::Object(row)] => row,
                [_] => return Err(protocol("a row that is not an object".into())),
                _ => return Err(protocol(format!("{} ports named {port}", rows.len()))),
            };
            decode(row, self.quarantine).map_err(protocol)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v(n: u16) -> VlanId {
        VlanId::new(n).unwrap()
    }

    fn row(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    const Q: u16 = 4000;

    #[test]
    fn states_encode_to_port_columns() {
        let q = v(Q);
        assert_eq!(
            Value::Object(encode(&PortState::access(v(100)), q).unwrap()),
            json!({"tag": 100, "trunks": ["set", []], "vlan_mode": "access"})
        );
        let trunk = PortState::Trunk {
            native: Some(v(10)),
            allowed: [v(20), v(30)].into_iter().collect(),
        };
        assert_eq!(
            Value::Object(encode(&trunk, q).unwrap()),
            json!({"tag": 10, "trunks": ["set", [20, 30]], "vlan_mode": "native-untagged"})
        );
        let trunk = PortState::Trunk {
            native: None,
            allowed: [v(20)].into_iter().collect(),
        };
        assert_eq!(
            Value::Object(encode(&trunk, q).unwrap()),
            json!({"tag": ["set", []], "trunks": ["set", [20]], "vlan_mode": "trunk"})
        );
        assert_eq!(
            Value::Object(encode(&PortState::Quarantined, q).unwrap()),
            json!({"tag": Q, "trunks": ["set", []], "vlan_mode": "access"})
        );
    }

    #[test]
    fn unsafe_states_are_refused() {
        let q = v(Q);
        let empty = PortState::Trunk {
            native: Some(v(10)),
            allowed: BTreeSet::new(),
        };
        assert!(encode(&empty, q).unwrap_err().contains("every VLAN"));
        assert!(encode(&PortState::access(q), q).is_err());
        let with_q = PortState::Trunk {
            native: None,
            allowed: [v(10), q].into_iter().collect(),
        };
        assert!(encode(&with_q, q).is_err());
        assert!(encode(&PortState::AllVlans, q).is_err());
    }

    #[test]
    fn rows_decode_in_both_set_encodings() {
        let q = v(Q);
        let d = |r| decode(&row(r), q).unwrap();
        assert_eq!(
            d(json!({"name": "p1", "tag": 100, "trunks": ["set", []], "vlan_mode": ["set", []]})),
            PortState::access(v(100))
        );
        assert_eq!(
            d(json!({"tag": 100, "trunks": ["set", []], "vlan_mode": "access"})),
            PortState::access(v(100))
        );
        assert_eq!(
            d(json!({"tag": Q, "trunks": ["set", []], "vlan_mode": "access"})),
            PortState::Quarantined
        );
        // A single trunk comes as a bare integer.
        assert_eq!(
            d(json!({"tag": 10, "trunks": 20, "vlan_mode": "native-untagged"})),
            PortState::Trunk {
                native: Some(v(10)),
                allowed: [v(20)].into_iter().collect()
            }
        );
        assert_eq!(
            d(json!({"tag": ["set", []], "trunks": ["set", [20, 30]], "vlan_mode": ["set", []]})),
            PortState::Trunk {
                native: None,
                allowed: [v(20), v(30)].into_iter().collect()
            }
        );
        assert_eq!(
            d(json!({"tag": ["set", []], "trunks": ["set", []], "vlan_mode": ["set", []]})),
            PortState::AllVlans
        );
        assert!(matches!(
            d(json!({"tag": 10, "trunks": ["set", [20]], "vlan_mode": "native-tagged"})),
            PortState::Other { .. }
        ));
        assert!(matches!(
            d(json!({"tag": 100, "trunks": 5, "vlan_mode": ["set", []]})),
            PortState::Other { .. }
        ));
        assert!(matches!(
            d(json!({"tag": 0, "trunks": ["set", []], "vlan_mode": "access"})),
            PortState::Other { .. }
        ));
        assert!(decode(&row(json!({"tag": "x", "trunks": 1})), q).is_err());
        assert!(decode(&row(json!({"trunks": 1})), q).is_err());
    }

    #[test]
    fn every_settable_state_decodes_to_itself() {
        let q = v(Q);
        for state in [
            PortState::access(v(1)),
            PortState::access(v(4094)),
            PortState::Quarantined,
            PortState::Trunk {
                native: Some(v(5)),
                allowed: [v(6), v(7)].into_iter().collect(),
            },
            PortState::Trunk {
                native: None,
                allowed: [v(6)].into_iter().collect(),
            },
        ] {
            let mut row = encode(&state, q).unwrap();
            row.insert("name".into(), json!("p1"));
            assert_eq!(decode(&row, q).unwrap(), state);
        }
    }
}
