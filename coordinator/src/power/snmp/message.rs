//! SNMP v1/v2c messages (RFC 1157, RFC 1905/3416): a community-based
//! message holding one GetRequest, SetRequest or Response PDU.

use super::SnmpError;
use super::ber::{self, Reader, tag};

/// Protocol versions on the wire (`snmp_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// SNMPv1 (wire value 0).
    V1,
    /// SNMPv2c (wire value 1).
    V2c,
}

impl Version {
    fn wire(self) -> i64 {
        match self {
            Self::V1 => 0,
            Self::V2c => 1,
        }
    }
}

/// A variable binding's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// INTEGER
    Integer(i64),
    /// NULL (in requests, and in v1 answers to gets of absent objects)
    Null,
    /// v2c noSuchObject / noSuchInstance / endOfMibView: the object is absent.
    NoSuch(u8),
    /// Any other type, by tag, with its content octets.
    Other(u8, Vec<u8>),
}

/// PDU kinds this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduKind {
    /// GetRequest
    Get,
    /// SetRequest
    Set,
}

/// A request: one variable binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Version.
    pub version: Version,
    /// Community string.
    pub community: &'a str,
    /// Get or set.
    pub kind: PduKind,
    /// request-id, echoed in the response.
    pub request_id: i32,
    /// The object.
    pub oid: &'a [u32],
    /// The value (NULL for a get).
    pub value: Value,
}

/// A PDU with one variable binding (any version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu<'a> {
    /// Get or set.
    pub kind: PduKind,
    /// request-id, echoed in the response.
    pub request_id: i32,
    /// The object.
    pub oid: &'a [u32],
    /// The value (NULL for a get).
    pub value: Value,
}

/// Appends a GetRequest or SetRequest PDU.
pub fn encode_pdu(out: &mut Vec<u8>, p: &Pdu<'_>) {
    let mut vb = Vec::new();
    ber::push_tlv(&mut vb, tag::OID, &ber::oid_content(p.oid));
    encode_value(&mut vb, &p.value);
    let mut vbs = Vec::new();
    ber::push_tlv(&mut vbs, tag::SEQUENCE, &vb);

    let mut pdu = Vec::new();
    ber::push_tlv(
        &mut pdu,
        tag::INTEGER,
        &ber::integer_content(i64::from(p.request_id)),
    );
    ber::push_tlv(&mut pdu, tag::INTEGER, &[0]); // error-status
    ber::push_tlv(&mut pdu, tag::INTEGER, &[0]); // error-index
    ber::push_tlv(&mut pdu, tag::SEQUENCE, &vbs);
    let pdu_tag = match p.kind {
        PduKind::Get => tag::GET_REQUEST,
        PduKind::Set => tag::SET_REQUEST,
    };
    ber::push_tlv(out, pdu_tag, &pdu);
}

/// Decodes a PDU's content (after its tag) into a [`Response`].
pub fn decode_pdu(version: i64, community: Vec<u8>, content: &[u8]) -> Result<Response, SnmpError> {
    let mut pdu = Reader::new(content);
    let request_id = pdu.integer("request-id")?;
    let error_status = pdu.integer("error-status")?;
    let error_index = pdu.integer("error-index")?;
    let mut vbs = Reader::new(pdu.expect(tag::SEQUENCE, "variable-bindings")?);
    let mut bindings = Vec::new();
    while !vbs.is_empty() {
        let mut vb = Reader::new(vbs.expect(tag::SEQUENCE, "variable binding")?);
        let oid = vb.oid("name")?;
        let (t, c) = vb.any()?;
        let value = match t {
            tag::INTEGER => Value::Integer(
                ber::decode_integer(c)
                    .ok_or_else(|| SnmpError::Decode("bad INTEGER value".into()))?,
            ),
            tag::NULL => Value::Null,
            tag::NO_SUCH_OBJECT | tag::NO_SUCH_INSTANCE | tag::END_OF_MIB_VIEW => Value::NoSuch(t),
            other => Value::Other(other, c.to_vec()),
        };
        bindings.push((oid, value));
    }
    Ok(Response {
        version,
        community,
        request_id,
        error_status,
        error_index,
        bindings,
    })
}

/// A decoded Response-PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Version from the message.
    pub version: i64,
    /// Community from the message.
    pub community: Vec<u8>,
    /// request-id.
    pub request_id: i64,
    /// error-status (0 = noError).
    pub error_status: i64,
    /// error-index.
    pub error_index: i64,
    /// The variable bindings.
    pub bindings: Vec<(Vec<u32>, Value)>,
}

fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Integer(i) => ber::push_tlv(out, tag::INTEGER, &ber::integer_content(*i)),
        Value::Null => ber::push_tlv(out, tag::NULL, &[]),
        Value::NoSuch(t) => ber::push_tlv(out, *t, &[]),
        Value::Other(t, c) => ber::push_tlv(out, *t, c),
    }
}

impl Request<'_> {
    /// Encodes the whole message.
    pub fn encode(&self) -> Vec<u8> {
        let mut msg = Vec::new();
        ber::push_tlv(
            &mut msg,
            tag::INTEGER,
            &ber::integer_content(self.version.wire()),
        );
        ber::push_tlv(&mut msg, tag::OCTET_STRING, self.community.as_bytes());
        encode_pdu(
            &mut msg,
            &Pdu {
                kind: self.kind,
                request_id: self.request_id,
                oid: self.oid,
                value: self.value.clone(),
            },
        );
        let mut out = Vec::with_capacity(msg.len() + 4);
        ber::push_tlv(&mut out, tag::SEQUENCE, &msg);
        out
    }
}

impl Response {
    /// Decodes a message that must carry a Response-PDU.
    pub fn decode(buf: &[u8]) -> Result<Self, SnmpError> {
        let mut outer = Reader::new(buf);
        let mut msg = Reader::new(outer.expect(tag::SEQUENCE, "message")?);
        let version = msg.integer("version")?;
        let community = msg.octets("community")?.to_vec();
        decode_pdu(
            version,
            community,
            msg.expect(tag::RESPONSE, "Response-PDU")?,
        )
    }
}

/// The name of an error-status (RFC 3416 §3).
pub fn error_status_name(code: i64) -> &'static str {
    match code {
        0 => "noError",
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        7 => "wrongType",
        8 => "wrongLength",
        9 => "wrongEncoding",
        10 => "wrongValue",
        11 => "noCreation",
        12 => "inconsistentValue",
        13 => "resourceUnavailable",
        14 => "commitFailed",
        15 => "undoFailed",
        16 => "authorizationError",
        17 => "notWritable",
        18 => "inconsistentName",
        _ => "unknown error",
    }
}
