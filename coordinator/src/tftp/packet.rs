//! TFTP packets (RFC 1350) and option lists (RFC 2347): parsing and encoding.
//!
//! Parsing never panics: anything truncated, unterminated, non-UTF-8 or with
//! an unknown opcode is an error the server answers by dropping the packet.

use std::fmt::Write as _;

/// Opcodes.
const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// Most options a request may carry; more is treated as garbage.
const MAX_OPTIONS: usize = 16;

/// TFTP error codes (RFC 1350, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// Not defined, see the message.
    NotDefined = 0,
    /// File not found.
    FileNotFound = 1,
    /// Access violation.
    AccessViolation = 2,
    /// Illegal TFTP operation.
    IllegalOperation = 4,
    /// Unknown transfer ID.
    UnknownTid = 5,
    /// Option negotiation refused (RFC 2347).
    OptionRefused = 8,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The file name as sent.
    pub filename: String,
    /// The transfer mode, lower-cased (`octet`, `netascii`, `mail`).
    pub mode: String,
    /// Options in the order sent, names lower-cased.
    pub options: Vec<(String, String)>,
}

/// A parsed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request.
    Rrq(Request),
    /// Write request (always refused).
    Wrq(Request),
    /// A data block (only clients that misbehave send these to a server).
    Data {
        /// Block number on the wire.
        block: u16,
        /// Length of the payload.
        len: usize,
    },
    /// Acknowledgement.
    Ack(u16),
    /// Error from the peer.
    Error {
        /// Code.
        code: u16,
        /// Message.
        message: String,
    },
    /// Option acknowledgement (servers send these, clients do not).
    Oack(Vec<(String, String)>),
}

/// Why a packet was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its fixed part.
    #[error("truncated packet")]
    Truncated,
    /// Opcode outside 1-6.
    #[error("unknown opcode {0}")]
    Opcode(u16),
    /// A string without its terminating NUL.
    #[error("unterminated string")]
    Unterminated,
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// An option name without a value, or too many options.
    #[error("malformed options")]
    Options,
}

/// Splits `buf` into NUL-terminated strings; the last byte must be a NUL.
fn strings(buf: &[u8]) -> Result<Vec<String>, PacketError> {
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    if buf.last() != Some(&0) {
        return Err(PacketError::Unterminated);
    }
    let body = &buf[..buf.len() - 1];
    body.split(|b| *b == 0)
        .map(|s| {
            std::str::from_utf8(s)
                .map(str::to_owned)
                .map_err(|_| PacketError::NotUtf8)
        })
        .collect()
}

fn options(fields: &[String]) -> Result<Vec<(String, String)>, PacketError> {
    if fields.len() % 2 != 0 || fields.len() / 2 > MAX_OPTIONS {
        return Err(PacketError::Options);
    }
    Ok(fields
        .chunks_exact(2)
        .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].clone()))
        .collect())
}

fn request(rest: &[u8]) -> Result<Request, PacketError> {
    let fields = strings(rest)?;
    if fields.len() < 2 {
        return Err(PacketError::Truncated);
    }
    Ok(Request {
        filename: fields[0].clone(),
        mode: fields[1].to_ascii_lowercase(),
        options: options(&fields[2..])?,
    })
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, PacketError> {
    match buf.get(at..at.checked_add(2).ok_or(PacketError::Truncated)?) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(PacketError::Truncated),
    }
}

impl Packet {
    /// Parses one datagram.
    pub fn parse(buf: &[u8]) -> Result<Packet, PacketError> {
        let op = u16_at(buf, 0)?;
        let rest = &buf[2..];
        match op {
            RRQ => Ok(Packet::Rrq(request(rest)?)),
            WRQ => Ok(Packet::Wrq(request(rest)?)),
            DATA => Ok(Packet::Data {
                block: u16_at(buf, 2)?,
                len: buf.len().saturating_sub(4),
            }),
            ACK => Ok(Packet::Ack(u16_at(buf, 2)?)),
            ERROR => {
                let code = u16_at(buf, 2)?;
                let msg = strings(&buf[4..])?;
                Ok(Packet::Error {
                    code,
                    message: msg.into_iter().next().unwrap_or_default(),
                })
            }
            OACK => Ok(Packet::Oack(options(&strings(rest)?)?)),
            other => Err(PacketError::Opcode(other)),
        }
    }
}

/// Encodes a DATA packet into `out` (cleared first).
pub fn encode_data(out: &mut Vec<u8>, block: u16, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Encodes an ERROR packet.
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&(code as u16).to_be_bytes());
    // A NUL inside the message would end it early on the wire.
    out.extend(message.bytes().filter(|b| *b != 0));
    out.push(0);
    out
}

/// Encodes an OACK packet.
pub fn encode_oack(options: &[(&str, u64)]) -> Vec<u8> {
    let mut out = OACK.to_be_bytes().to_vec();
    let mut value = String::new();
    for (name, v) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        value.clear();
        let _ = write!(value, "{v}");
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Encodes a request (for tests and clients).
pub fn encode_request(
    write: bool,
    filename: &str,
    mode: &str,
    options: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = if write { WRQ } else { RRQ }.to_be_bytes().to_vec();
    for s in [filename, mode]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

/// Encodes an ACK (for tests and clients).
pub fn encode_ack(block: u16) -> Vec<u8> {
    let mut out = ACK.to_be_bytes().to_vec();
    out.extend_from_slice(&block.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let b = encode_request(
            false,
            "undionly.kpxe",
            "OCTET",
            &[("BlkSize", "1432"), ("tsize", "0")],
        );
        let p = Packet::parse(&b).unwrap();
        assert_eq!(
            p,
            Packet::Rrq(Request {
                filename: "undionly.kpxe".into(),
                mode: "octet".into(),
                options: vec![
                    ("blksize".into(), "1432".into()),
                    ("tsize".into(), "0".into())
                ],
            })
        );
        assert!(matches!(
            Packet::parse(&encode_request(true, "x", "octet", &[])),
            Ok(Packet::Wrq(_))
        ));
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        for bad in [
            &b""[..],
            &[0],
            &[0, 1],                            // RRQ with nothing
            &[0, 1, b'a', 0],                   // no mode
            &[0, 1, b'a', 0, b'o'],             // unterminated mode
            &[0, 1, b'a', 0, b'o', 0, b'x', 0], // option without value
            &[0, 1, 0xff, 0xfe, 0, b'o', 0],    // not UTF-8
            &[0, 3, 0],                         // DATA without a whole block number
            &[0, 4],                            // ACK without block
            &[0, 5, 0, 1, b'x'],                // ERROR unterminated
            &[0, 9, 0, 0],                      // unknown opcode
            &[0xff, 0xff, 0, 0, 0],
        ] {
            assert!(Packet::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn too_many_options_are_refused() {
        let opts: Vec<(String, String)> = (0..MAX_OPTIONS + 1)
            .map(|i| (format!("o{i}"), "1".into()))
            .collect();
        let refs: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            Packet::parse(&encode_request(false, "f", "octet", &refs)),
            Err(PacketError::Options)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: every length 0..64, many patterns.
        let mut x: u32 = 0x1234_5678;
        for len in 0..64usize {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        (x & 0xff) as u8
                    })
                    .collect();
                let _ = Packet::parse(&buf);
            }
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(encode_ack(0x0102), vec![0, 4, 1, 2]);
        assert_eq!(
            encode_error(ErrorCode::AccessViolation, "no\0pe"),
            b"\0\x05\0\x02nope\0".to_vec()
        );
        assert_eq!(
            encode_oack(&[("blksize", 1432)]),
            b"\0\x06blksize\x001432\0".to_vec()
        );
        let mut d = Vec::new();
        encode_data(&mut d, 65535, b"ab");
        assert_eq!(d, vec![0, 3, 0xff, 0xff, b'a', b'b']);
        assert!(matches!(
            Packet::parse(&d),
            Ok(Packet::Data {
                block: 65535,
                len: 2
            })
        ));
    }
}
