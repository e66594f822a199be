//! The first look at a datagram, before `dhcproto` parses it.
//!
//! `dhcproto` 0.15 can panic on hostile input (`chaddr()` with a hardware
//! length above 16, `debug_assert`s and a subtraction that underflows in some
//! option decoders, concatenation of repeated options). So a datagram is
//! first checked here with bounds-checked code: a BOOTP header, Ethernet
//! addresses, the magic cookie, and a well-formed option list of bounded
//! length. Only the options the server reads are kept (first occurrence,
//! fixed lengths checked); the rest is dropped before `dhcproto` sees it.

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder};

/// Fixed BOOTP header plus the magic cookie.
const HEADER: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// More options than this in one datagram is garbage.
const MAX_OPTIONS: usize = 256;

/// Options the server reads, with the length each must have (`None`: any
/// non-zero length).
fn kept(code: u8) -> Option<Option<usize>> {
    match code {
        12 | 55 | 60 | 61 | 77 | 97 | 175 => Some(None), // host name, PRL, classes, client ids, iPXE
        50 | 54 => Some(Some(4)),                        // requested address, server id
        53 => Some(Some(1)),                             // message type
        93 => Some(Some(2)), // client architecture (first entry only, see below)
        _ => None,
    }
}

/// A copy of `buf` with only well-formed, known options, or `None` when the
/// datagram is not an Ethernet BOOTP request with a valid option list.
pub fn sanitize(buf: &[u8]) -> Option<Vec<u8>> {
    let header = buf.get(..HEADER)?;
    // op = BOOTREQUEST, htype = Ethernet, hlen = 6.
    if header[0] != 1 || header[1] != 1 || header[2] != 6 || header[236..240] != MAGIC {
        return None;
    }
    let mut out = header.to_vec();
    let mut seen = [false; 256];
    let mut i = HEADER;
    let mut count = 0usize;
    loop {
        let code = *buf.get(i)?; // no End option: malformed
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        count += 1;
        if count > MAX_OPTIONS {
            return None;
        }
        let len = usize::from(*buf.get(i + 1)?);
        let start = i + 2;
        let end = start.checked_add(len)?;
        let data = buf.get(start..end)?;
        i = end;
        if seen[usize::from(code)] {
            continue;
        }
        seen[usize::from(code)] = true;
        let Some(want) = kept(code) else {
            continue;
        };
        let data = match (code, want) {
            // Several architectures may be listed; the first one counts.
            (93, _) if len >= 2 && len % 2 == 0 => &data[..2],
            (_, Some(n)) if len != n => return None,
            (_, None) if len == 0 => continue,
            _ => data,
        };
        out.push(code);
        out.push(u8::try_from(data.len()).ok()?);
        out.extend_from_slice(data);
    }
    out.push(255);
    Some(out)
}

/// Sanitises and decodes a datagram; `None` for anything malformed.
pub fn decode(buf: &[u8]) -> Option<Message> {
    let clean = sanitize(buf)?;
    Message::decode(&mut Decoder::new(&clean)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
    use dhcproto::{Encodable, Encoder};

    fn discover() -> Vec<u8> {
        let mut m = Message::default();
        m.set_chaddr(&[0x52, 0x54, 0, 0, 0, 1]);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        m.opts_mut().insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00007".to_vec(),
        ));
        m.opts_mut()
            .insert(DhcpOption::SubnetMask([255, 0, 0, 0].into()));
        let mut b = Vec::new();
        m.encode(&mut Encoder::new(&mut b)).unwrap();
        b
    }

    #[test]
    fn keeps_what_is_read_and_drops_the_rest() {
        let m = decode(&discover()).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert!(m.opts().get(OptionCode::ClassIdentifier).is_some());
        assert!(m.opts().get(OptionCode::SubnetMask).is_none());
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let good = discover();
        // Every truncation (the End option is lost, or the header).
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_none(), "truncated at {n}");
        }
        // Hardware length 17 (dhcproto's chaddr() would panic on it).
        let mut b = good.clone();
        b[2] = 17;
        assert!(decode(&b).is_none());
        // An option longer than what remains.
        let mut b = good[..HEADER].to_vec();
        b.extend_from_slice(&[53, 200, 1, 255]);
        assert!(decode(&b).is_none());
        // A message type of the wrong length.
        let mut b = good[..HEADER].to_vec();
        b.extend_from_slice(&[53, 2, 1, 1, 255]);
        assert!(decode(&b).is_none());
        // A huge number of options.
        let mut b = good[..HEADER].to_vec();
        while b.len() < 4000 {
            b.extend_from_slice(&[224, 0]);
        }
        b.push(255);
        assert!(decode(&b).is_none());
        // Options dhcproto mis-handles are never passed to it: a bulk-lease
        // status code of length 0 (underflow) and a repeated option.
        let mut b = good[..HEADER].to_vec();
        b.extend_from_slice(&[53, 1, 1, 151, 0, 60, 1, b'a', 60, 1, b'b', 255]);
        let m = decode(&b).unwrap();
        assert!(
            matches!(m.opts().get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(c)) if c == b"a")
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        let good = discover();
        let mut x: u32 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        };
        for len in [0usize, 1, 100, 239, 240, 241, 243, 260, 300, 600, 1500] {
            for _ in 0..2000 {
                // A valid header, then random options (the interesting part).
                let mut buf = good[..len.min(HEADER)].to_vec();
                while buf.len() < len {
                    buf.push(next());
                }
                if let Some(m) = decode(&buf) {
                    let _ = super::super::client_mac(&m);
                    let _ = super::super::policy::client(&m);
                    let _ = m.chaddr();
                }
            }
        }
    }
}
