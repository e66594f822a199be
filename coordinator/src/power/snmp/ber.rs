//! The BER subset SNMP v1/v2c messages need: INTEGER, OCTET STRING, NULL,
//! OBJECT IDENTIFIER, SEQUENCE, the PDU tags and the v2c exception values.
//! Definite lengths only (short and long form), as RFC 3417 requires.

use super::SnmpError;

/// Universal and SNMP tags.
pub mod tag {
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// SEQUENCE
    pub const SEQUENCE: u8 = 0x30;
    /// GetRequest-PDU
    pub const GET_REQUEST: u8 = 0xa0;
    /// Response-PDU (GetResponse in v1)
    pub const RESPONSE: u8 = 0xa2;
    /// SetRequest-PDU
    pub const SET_REQUEST: u8 = 0xa3;
    /// Report-PDU (SNMPv3)
    pub const REPORT: u8 = 0xa8;
    /// v2c exception noSuchObject
    pub const NO_SUCH_OBJECT: u8 = 0x80;
    /// v2c exception noSuchInstance
    pub const NO_SUCH_INSTANCE: u8 = 0x81;
    /// v2c exception endOfMibView
    pub const END_OF_MIB_VIEW: u8 = 0x82;
}

/// Parses a dotted OID (`1.3.6.1…`, a leading dot allowed).
pub fn parse_oid(s: &str) -> Result<Vec<u32>, SnmpError> {
    let arcs: Vec<u32> = s
        .trim_start_matches('.')
        .split('.')
        .map(|a| a.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| SnmpError::Encode(format!("bad OID {s:?}")))?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
        return Err(SnmpError::Encode(format!("bad OID {s:?}")));
    }
    Ok(arcs)
}

/// Formats an OID in dotted form with a leading dot.
pub fn format_oid(arcs: &[u32]) -> String {
    arcs.iter().map(|a| format!(".{a}")).collect()
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends one TLV.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_len(out, content.len());
    out.extend_from_slice(content);
}

/// The minimal two's-complement content octets of an INTEGER.
pub fn integer_content(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // Drop leading octets that only repeat the sign of the next one.
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// The content octets of an OBJECT IDENTIFIER.
pub fn oid_content(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arcs.len() + 2);
    let first = u64::from(arcs.first().copied().unwrap_or(0)) * 40
        + u64::from(arcs.get(1).copied().unwrap_or(0));
    push_base128(&mut out, first);
    for a in arcs.iter().skip(2) {
        push_base128(&mut out, u64::from(*a));
    }
    out
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(tmp[i] | if i > 0 { 0x80 } else { 0 });
    }
}

/// A reader over BER-encoded bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

fn short(what: &str) -> SnmpError {
    SnmpError::Decode(format!("truncated {what}"))
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads any TLV: its tag and content.
    pub fn any(&mut self) -> Result<(u8, &'a [u8]), SnmpError> {
        let (&t, rest) = self.buf.split_first().ok_or_else(|| short("tag"))?;
        if t & 0x1f == 0x1f {
            return Err(SnmpError::Decode(format!("multi-octet tag {t:#04x}")));
        }
        let (&l0, mut rest) = rest.split_first().ok_or_else(|| short("length"))?;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(SnmpError::Decode(format!("bad length octet {l0:#04x}")));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(short("content"));
        }
        let (content, after) = rest.split_at(len);
        self.buf = after;
        Ok((t, content))
    }

    /// Reads a TLV that must have `want` as its tag.
    pub fn expect(&mut self, want: u8, what: &str) -> Result<&'a [u8], SnmpError> {
        let (t, c) = self.any()?;
        if t != want {
            return Err(SnmpError::Decode(format!(
                "{what}: expected tag {want:#04x}, got {t:#04x}"
            )));
        }
        Ok(c)
    }

    /// Reads an INTEGER.
    pub fn integer(&mut self, what: &str) -> Result<i64, SnmpError> {
        let c = self.expect(tag::INTEGER, what)?;
        decode_integer(c).ok_or_else(|| SnmpError::Decode(format!("{what}: bad INTEGER")))
    }

    /// Reads an OCTET STRING.
    pub fn octets(&mut self, what: &str) -> Result<&'a [u8], SnmpError> {
        self.expect(tag::OCTET_STRING, what)
    }

    /// Reads an OBJECT IDENTIFIER.
    pub fn oid(&mut self, what: &str) -> Result<Vec<u32>, SnmpError> {
        let c = self.expect(tag::OID, what)?;
        decode_oid(c).ok_or_else(|| SnmpError::Decode(format!("{what}: bad OID")))
    }
}

/// Decodes INTEGER content octets (1 to 8 of them).
pub fn decode_integer(c: &[u8]) -> Option<i64> {
    if c.is_empty() || c.len() > 8 {
        return None;
    }
    let init: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    Some(c.iter().fold(init, |acc, b| (acc << 8) | i64::from(*b)))
}

/// Decodes OBJECT IDENTIFIER content octets.
pub fn decode_oid(c: &[u8]) -> Option<Vec<u32>> {
    let mut subids = Vec::new();
    let mut acc: u64 = 0;
    let mut open = false;
    for &b in c {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if acc > u64::from(u32::MAX) * 40 + 39 {
            return None;
        }
        open = b & 0x80 != 0;
        if !open {
            subids.push(acc);
            acc = 0;
        }
    }
    if open || subids.is_empty() {
        return None;
    }
    let first = subids[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut arcs = vec![a as u32, u32::try_from(b).ok()?];
    for s in &subids[1..] {
        arcs.push(u32::try_from(*s).ok()?);
    }
    Some(arcs)
}
