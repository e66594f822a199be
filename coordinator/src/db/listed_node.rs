//! A node row read for the node list (issue 21 item 5): the document's
//! scalar fields are parsed into a [`Node`] as usual (same defaults, same
//! checks), but its documents (`driver_info`, `properties`, …) are kept as
//! their stored JSON text, unparsed, and its `inventory` is skipped. The
//! list renderer writes the documents from that text, masking as it copies
//! (`api::nodes::transcode`), so a page of 1,000 nodes builds no
//! `BTreeMap` per document.
//!
//! Everything the list decides on (filters, policy, the hash ring's owner)
//! reads scalar fields only, so it works on [`ListedNode::node`] unchanged.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{Db, DbError};
use crate::model::Node;

/// The node's document fields (maps of JSON values), kept as stored text.
pub const DOCUMENT_FIELDS: [&str; 11] = [
    "driver_info",
    "driver_internal_info",
    "extra",
    "instance_info",
    "properties",
    "clean_step",
    "deploy_step",
    "service_step",
    "network_data",
    "raid_config",
    "target_raid_config",
];

/// The document field the list never shows, skipped unparsed.
const SKIPPED_FIELDS: [&str; 1] = ["inventory"];

/// A node row as stored: its UUID and its document's text.
#[derive(Debug, Clone)]
pub struct NodeText {
    /// The row's UUID.
    pub uuid: String,
    /// The node document (JSON).
    pub data: String,
}

/// A node read from a [`NodeText`] for the list.
#[derive(Debug)]
pub struct ListedNode<'a> {
    /// The node; its [`DOCUMENT_FIELDS`] are empty when [`Self::doc`] has
    /// them, and its `inventory` is `None`.
    pub node: Node,
    /// The stored text of each of [`DOCUMENT_FIELDS`] (in that order) that
    /// the document holds.
    docs: [Option<&'a RawValue>; DOCUMENT_FIELDS.len()],
    /// The row it was read from.
    text: &'a NodeText,
}

impl<'a> ListedNode<'a> {
    /// The stored text of document `field` (one of [`DOCUMENT_FIELDS`]), a
    /// JSON object; `None` when the node's map holds it (it was absent
    /// from the document, or the row was read whole).
    pub fn doc(&self, field: &str) -> Option<&'a RawValue> {
        let i = DOCUMENT_FIELDS.iter().position(|f| *f == field)?;
        self.docs[i]
    }

    /// The row it was read from.
    pub fn text(&self) -> &'a NodeText {
        self.text
    }

    /// Reads `text` with the documents left as text. Fails as reading the
    /// whole node would, except on what only a full parse finds inside a
    /// document (a number out of range, nesting deeper than 128): the
    /// renderer finds those and then reads the row whole.
    pub fn parse(text: &'a NodeText) -> Result<Self, serde_json::Error> {
        let mut docs = [None; DOCUMENT_FIELDS.len()];
        let mut de = serde_json::Deserializer::from_str(&text.data);
        let node = Node::deserialize(Splitter {
            de: &mut de,
            docs: &mut docs,
        })?;
        de.end()?;
        Ok(Self { node, docs, text })
    }

    /// `text` read whole (documents parsed into the node's maps).
    fn whole(node: Node, text: &'a NodeText) -> Self {
        Self {
            node,
            docs: [None; DOCUMENT_FIELDS.len()],
            text,
        }
    }
}

/// The stored documents' deserializer, seen by `Node`'s derived
/// `Deserialize` without its document fields.
struct Splitter<'s, 'a> {
    de: &'s mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    docs: &'s mut [Option<&'a RawValue>; DOCUMENT_FIELDS.len()],
}

impl<'de> Deserializer<'de> for Splitter<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.de.deserialize_any(SplitVisitor {
            inner: visitor,
            docs: self.docs,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.deserialize_struct(
            name,
            fields,
            SplitVisitor {
                inner: visitor,
                docs: self.docs,
            },
        )
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Hands the node's fields to `inner`, keeping the documents aside.
struct SplitVisitor<'s, 'a, V> {
    inner: V,
    docs: &'s mut [Option<&'a RawValue>; DOCUMENT_FIELDS.len()],
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SplitVisitor<'_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(SplitMap {
            map,
            docs: self.docs,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        // The positional form (never written by Ingot): read whole.
        self.inner.visit_seq(seq)
    }
}

/// The document's entries without the documents, which it stores aside.
struct SplitMap<'s, 'a, A> {
    map: A,
    docs: &'s mut [Option<&'a RawValue>; DOCUMENT_FIELDS.len()],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SplitMap<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key_seed(KeySeed)? {
            if let Some(i) = DOCUMENT_FIELDS.iter().position(|f| *f == key) {
                if self.docs[i].is_some() {
                    return Err(de::Error::duplicate_field(DOCUMENT_FIELDS[i]));
                }
                let raw: &'de RawValue = self.map.next_value()?;
                if !raw.get().starts_with('{') {
                    return Err(de::Error::invalid_type(
                        de::Unexpected::Other(raw.get()),
                        &"a map",
                    ));
                }
                self.docs[i] = Some(raw);
            } else if SKIPPED_FIELDS.contains(&&*key) {
                self.map.next_value::<IgnoredAny>()?;
            } else {
                return seed
                    .deserialize(de::value::CowStrDeserializer::new(key))
                    .map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Nesting from which a row is read whole: serde_json refuses more than
/// 128 levels; reading whole decides.
const DEEP: usize = 100;
/// A number token this long may be out of `f64`'s range (1e308).
const LONG_NUMBER: usize = 300;

/// True when `data` may hold what only a full parse refuses: nesting deeper
/// than [`DEEP`], or a number with an exponent or of [`LONG_NUMBER`] or more
/// characters (`1e999` is out of range). One pass over the bytes, aware of
/// strings and their escapes; plain rows (the rule) are never read twice.
fn needs_whole_read(data: &str) -> bool {
    let b = data.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&c) = b.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > DEEP {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while let Some(&c) = b.get(i + 1) {
                    match c {
                        b'e' | b'E' => return true,
                        b'0'..=b'9' | b'.' | b'-' | b'+' => i += 1,
                        _ => break,
                    }
                }
                if i - start + 1 >= LONG_NUMBER {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// A map key, borrowed from the text when it has no escapes.
pub(crate) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl Db {
    /// Reads a row for the list: documents as text, or read whole (secrets
    /// opened, as [`Db::node_from`] does) when its `driver_info` holds
    /// secrets encrypted at rest, which the key must open as before.
    pub fn listed_node<'a>(&self, text: &'a NodeText) -> Result<ListedNode<'a>, DbError> {
        // What only a full parse refuses inside a document must keep the
        // row out of every list, as reading it whole does (and `GET` of
        // the node says 500): such rows are read whole, which refuses them.
        if needs_whole_read(&text.data) {
            return self.whole_node(text).map(|n| ListedNode::whole(n, text));
        }
        let listed = ListedNode::parse(text).map_err(|source| DbError::Corrupt {
            kind: "node",
            id: text.uuid.clone(),
            source,
        })?;
        if listed
            .doc("driver_info")
            .is_some_and(|d| d.get().contains(super::secrets::PREFIX))
        {
            return self.whole_node(text).map(|n| ListedNode::whole(n, text));
        }
        Ok(listed)
    }

    /// Reads a row whole, as every other read does.
    pub fn whole_node(&self, text: &NodeText) -> Result<Node, DbError> {
        self.node_from(&text.uuid, &text.data)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(data: &str) -> NodeText {
        NodeText {
            uuid: "u".into(),
            data: data.into(),
        }
    }

    #[test]
    fn scalars_parse_as_whole_and_documents_stay_text() {
        let t = text(
            r#"{"uuid":"u","driver":"ipmi","driver_info":{"b":1, "a":[2]},"maintenance":true,
            "inventory":{"cpu":{"count":1}},"provision_state":"active","extra":{}}"#,
        );
        let l = ListedNode::parse(&t).unwrap();
        let mut whole: Node = serde_json::from_str(&t.data).unwrap();
        assert_eq!(l.doc("driver_info").unwrap().get(), r#"{"b":1, "a":[2]}"#);
        assert_eq!(l.doc("extra").unwrap().get(), "{}");
        assert!(l.doc("properties").is_none());
        for f in DOCUMENT_FIELDS {
            assert!(
                serde_json::to_value(&l.node).unwrap()[f]
                    .as_object()
                    .unwrap()
                    .is_empty()
            );
        }
        whole.driver_info.clear();
        whole.inventory = None;
        assert_eq!(l.node, whole);
    }

    #[test]
    fn finds_what_only_a_full_parse_refuses() {
        let deep = format!("{{\"extra\":{}1{}}}", "[".repeat(150), "]".repeat(150));
        assert!(needs_whole_read(&deep));
        assert!(needs_whole_read(r#"{"extra":{"n":1e999}}"#));
        assert!(needs_whole_read(r#"{"extra":{"n":-2E5}}"#));
        assert!(needs_whole_read(&format!(
            "{{\"extra\":{{\"n\":{}}}}}",
            "9".repeat(400)
        )));
        // In strings, brackets, exponents and escaped quotes are text.
        let quiet = format!(
            r#"{{"uuid":"u","name":"1e999 {} \" [","extra":{{"n":-12.5,"t":true,"f":false}}}}"#,
            "[".repeat(200)
        );
        assert!(!needs_whole_read(&quiet), "{quiet}");
        assert!(!needs_whole_read(
            r#"{"driver_info":{"a":[1,2,{"b":null}]}}"#
        ));
    }

    #[test]
    fn refuses_what_reading_whole_refuses() {
        for bad in [
            r#"{"driver_info":[]}"#,
            r#"{"driver_info":null}"#,
            r#"{"driver_info":{},"driver_info":{}}"#,
            r#"{"maintenance":"yes"}"#,
            r#"{"uuid":"u"} x"#,
            r#"{"driver_info":{"a":}}"#,
        ] {
            assert!(ListedNode::parse(&text(bad)).is_err(), "{bad}");
            assert!(serde_json::from_str::<Node>(bad).is_err(), "{bad}");
        }
    }
}
