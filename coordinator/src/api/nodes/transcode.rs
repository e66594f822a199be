//! A stored document written into the node list from its JSON text, masked
//! while it is copied (issue 21 item 5): what parsing it into a
//! `serde_json::Map` and writing that with `render::MaskedMap` gives, byte
//! for byte, without building the map.
//!
//! The text is read with serde_json and each value handed to the output
//! serializer as it comes, so numbers and strings are written exactly as
//! a `serde_json::Value` would write them. Two things a `Map` does are
//! redone here: its keys come out sorted, whatever order the text has them
//! in (the entries of an object are gathered as text and sorted first), and
//! of a key given twice the last value wins. Values under secret keys
//! become [`MASK`] without being read (a null stays null), and passwords in
//! URLs are masked in every string ([`crate::model::mask`]). Nesting deeper
//! than serde_json's own limit (128) is refused, as parsing would.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

use crate::db::listed_node::KeySeed;
use crate::model::mask::{MASK, is_secret_key, mask_url_credentials};

/// serde_json's nesting limit.
const MAX_DEPTH: usize = 128;

/// A stored JSON document (an object), serialized masked and with sorted
/// keys.
pub struct MaskedText<'a>(pub &'a RawValue);

impl Serialize for MaskedText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_value(self.0, s, MAX_DEPTH)
    }
}

/// One value of a document, `depth` levels of nesting still allowed.
struct Nested<'a>(&'a RawValue, usize);

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if verbatim(self.0.get()) {
            // serde_json writes a `RawValue` as it is.
            return self.0.serialize(s);
        }
        write_value(self.0, s, self.1)
    }
}

/// Whether the value's text is exactly what reading and writing it gives,
/// so that it may be copied as it is: `true`, `false`, `null`, and a
/// string without escapes (serde_json refuses control characters in one,
/// and writes back only those, `"` and `\` escaped) and without a URL
/// (whose password would be masked). Numbers are read (`1.50` is written
/// `1.5`), and so are containers (their keys are sorted, their secrets
/// masked).
fn verbatim(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(b't' | b'f' | b'n') => true,
        Some(b'"') => !text.contains('\\') && !text.contains("://"),
        _ => false,
    }
}

/// Writes the value `raw` to `s`, masked.
fn write_value<S: Serializer>(raw: &RawValue, s: S, depth: usize) -> Result<S::Ok, S::Error> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match de.deserialize_any(Writer { s, depth }) {
        Ok(written) => written,
        Err(e) => Err(ser::Error::custom(e)),
    }
}

/// Writes what the text holds to `s` (the visitor's value is the output's
/// result; its error is the input's).
struct Writer<S> {
    s: S,
    depth: usize,
}

impl<'de, S: Serializer> Visitor<'de> for Writer<S> {
    type Value = Result<S::Ok, S::Error>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.s.serialize_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.s.serialize_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.s.serialize_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value`: a number that is not finite is null.
        Ok(if v.is_finite() {
            self.s.serialize_f64(v)
        } else {
            self.s.serialize_unit()
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match mask_url_credentials(v) {
            Some(m) => self.s.serialize_str(&m),
            None => self.s.serialize_str(v),
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.s.serialize_unit())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let depth = nested(self.depth)?;
        let mut items: Vec<&'de RawValue> = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok((|| {
            let mut out = self.s.serialize_seq(Some(items.len()))?;
            for v in items {
                out.serialize_element(&Nested(v, depth))?;
            }
            out.end()
        })())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let depth = nested(self.depth)?;
        let mut entries: Vec<(Cow<'de, str>, Entry<'de>)> = Vec::new();
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let v = if is_secret_key(&k) {
                map.next_value_seed(SecretSeed)?
            } else {
                Entry::Value(map.next_value()?)
            };
            entries.push((k, v));
        }
        // A map's order, and of equal keys the last (a stable sort keeps
        // them in the text's order).
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((|| {
            let mut out = self.s.serialize_map(None)?;
            let mut it = entries.iter().peekable();
            while let Some((k, v)) = it.next() {
                if it.peek().is_some_and(|(next, _)| next == k) {
                    continue;
                }
                out.serialize_key(k.as_ref())?;
                match v {
                    Entry::Value(v) => out.serialize_value(&Nested(v, depth))?,
                    Entry::Masked => out.serialize_value(MASK)?,
                    Entry::Null => out.serialize_value(&())?,
                }
            }
            out.end()
        })())
    }
}

/// The nesting left inside a container at `depth`, or the parser's error.
fn nested<E: de::Error>(depth: usize) -> Result<usize, E> {
    depth
        .checked_sub(1)
        .filter(|d| *d > 0)
        .ok_or_else(|| E::custom("recursion limit exceeded"))
}

/// A map entry's value, as it will be written.
enum Entry<'a> {
    /// Written from its text.
    Value(&'a RawValue),
    /// A secret: the mask.
    Masked,
    /// A secret's null.
    Null,
}

/// Reads a secret's value only to tell null from the rest.
struct SecretSeed;

impl<'de> DeserializeSeed<'de> for SecretSeed {
    type Value = Entry<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let v: Option<IgnoredAny> = serde::Deserialize::deserialize(d)?;
        Ok(match v {
            Some(_) => Entry::Masked,
            None => Entry::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Map, Value};

    use super::*;

    /// What parsing into a map and writing it masked gives.
    fn through_map(text: &str) -> Result<String, serde_json::Error> {
        let m: Map<String, Value> = serde_json::from_str(text)?;
        let mut v = Value::Object(m);
        crate::model::mask::mask_value(&mut v);
        Ok(v.to_string())
    }

    fn transcoded(text: &str) -> Result<String, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        serde_json::to_string(&MaskedText(raw))
    }

    #[test]
    fn writes_what_the_map_writes() {
        for text in [
            "{}",
            r#"{"b":1,"a":2}"#,
            r#" { "z" : [ 1 , 2.50, -0, -3, 1e2, 1E-7, 18446744073709551615, 18446744073709551616 ] , "a" : null } "#,
            r#"{"ipmi_password":"p","ipmi_address":"10.0.0.1","token":null,"Big_TOKEN":{"x":1},"key":[1]}"#,
            r#"{"redfish":{"password":"p2","address":"https://u:p3@bmc/x","list":[1,"http://a:b@c/",null,{"token":"t"},[{"secret":2}]]}}"#,
            r#"{"a":1,"a":2,"b":{"c":1,"c":{"d":3}},"a":3}"#,
            r#"{"\u00e9":"\u00e9 \"q\" \\ \n\t\u0001","é":"x","e\u0301":1,"\ud83d\ude00":"😀"}"#,
            r#"{"configdrive":"H4sI","image_source":"https://glance:pw@img/a?x=y","s":"user@example.com"}"#,
            r#"{"k":true,"l":false,"m":"","n":0.1,"o":123456789012345678901234567890}"#,
            r#"{"clean_steps":null,"nested":{"b":{"z":1,"y":2},"a":[]}}"#,
        ] {
            assert_eq!(
                transcoded(text).unwrap(),
                through_map(text).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn copies_only_what_reads_back_the_same() {
        for (text, copied) in [
            ("true", true),
            ("false", true),
            ("null", true),
            (r#""plain é""#, true),
            (r#""a\"b""#, false),
            (r#""\u00e9""#, false),
            (r#""http://u:p@h/""#, false),
            ("1", false),
            ("1.50", false),
            ("[]", false),
            ("{}", false),
        ] {
            assert_eq!(verbatim(text), copied, "{text}");
            let v: Value = serde_json::from_str(text).unwrap();
            if copied {
                assert_eq!(v.to_string(), text);
            }
        }
    }

    #[test]
    fn refuses_what_the_map_refuses() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        for text in [r#"{"a":1e999}"#, r#"{"a":-1e400}"#, deep.as_str()] {
            assert!(through_map(text).is_err(), "{text}");
            assert!(transcoded(text).is_err(), "{text}");
        }
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(120), "]".repeat(120));
        assert_eq!(transcoded(&ok).unwrap(), through_map(&ok).unwrap());
    }
}
