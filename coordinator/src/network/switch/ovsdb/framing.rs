//! Splitting the byte stream of an OVSDB connection into JSON messages.
//!
//! RFC 7047 sends JSON-RPC messages back to back with no length prefix:
//! a message ends where its top-level object closes. [`Framer`] finds that
//! end with a small scanner (nesting depth, strings and escapes) that keeps
//! its state between reads, so each byte is looked at once, and it refuses
//! a message longer than its limit before buffering more of it: a broken or
//! hostile server cannot make us allocate without bound (an endless string,
//! an endless array, a huge reply). The complete message is then parsed by
//! serde_json, which also limits nesting (128 levels).

/// Why the stream cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A message is longer than the limit.
    #[error("a message exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Something other than a JSON object or array at the top level.
    #[error("unexpected byte 0x{byte:02x} between messages")]
    Garbage {
        /// The byte.
        byte: u8,
    },
    /// Nesting deeper than the scanner counts.
    #[error("nesting deeper than {0} levels")]
    TooDeep(u32),
}

/// The deepest nesting the scanner accepts (serde_json stops at 128 anyway).
const MAX_DEPTH: u32 = 1024;

/// Splits a byte stream into top-level JSON values (objects or arrays).
#[derive(Debug)]
pub struct Framer {
    limit: usize,
    /// Bytes received and not yet returned as a message.
    buf: Vec<u8>,
    /// How far into `buf` the scanner has looked.
    scanned: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Framer {
    /// A framer that refuses messages longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: Vec::new(),
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    /// Adds received bytes. Call [`Framer::next_message`] until it returns
    /// `None` after each call.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many bytes may be read before the next call to
    /// [`Framer::next_message`] at most, so that the buffer stays within
    /// the limit (plus one byte, to tell "exactly at the limit" from "over").
    pub fn room(&self) -> usize {
        self.limit.saturating_add(1).saturating_sub(self.buf.len())
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        while self.scanned < self.buf.len() {
            let byte = self.buf[self.scanned];
            self.scanned += 1;
            if self.depth == 0 {
                // Between messages: whitespace is dropped at once, so that
                // it cannot pile up either.
                if byte.is_ascii_whitespace() {
                    self.buf.drain(..self.scanned);
                    self.scanned = 0;
                    continue;
                }
                if byte != b'{' && byte != b'[' {
                    return Err(FrameError::Garbage { byte });
                }
                self.depth = 1;
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(FrameError::TooDeep(MAX_DEPTH));
                    }
                }
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        if self.scanned > self.limit {
                            return Err(FrameError::TooLarge { limit: self.limit });
                        }
                        let rest = self.buf.split_off(self.scanned);
                        let message = std::mem::replace(&mut self.buf, rest);
                        self.scanned = 0;
                        return Ok(Some(message));
                    }
                }
                _ => {}
            }
        }
        if self.buf.len() > self.limit {
            return Err(FrameError::TooLarge { limit: self.limit });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn all(framer: &mut Framer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = framer.next_message().unwrap() {
            out.push(String::from_utf8(m).unwrap());
        }
        out
    }

    #[test]
    fn splits_back_to_back_messages() {
        let mut f = Framer::new(1024);
        f.push(br#"{"id":1,"result":[]} {"id":"echo","method":"echo","params":[]}"#);
        assert_eq!(
            all(&mut f),
            [
                r#"{"id":1,"result":[]}"#,
                r#"{"id":"echo","method":"echo","params":[]}"#
            ]
        );
    }

    #[test]
    fn a_message_split_anywhere_comes_out_whole() {
        let text = br#"{"a":"x}\"]{","b":[1,{"c":"\\"}],"d":{}}"#;
        for cut in 0..text.len() {
            let mut f = Framer::new(1024);
            f.push(&text[..cut]);
            assert_eq!(all(&mut f), Vec::<String>::new(), "cut at {cut}");
            f.push(&text[cut..]);
            assert_eq!(
                all(&mut f),
                [String::from_utf8(text.to_vec()).unwrap()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn braces_inside_strings_do_not_count() {
        let mut f = Framer::new(1024);
        f.push(br#"{"s":"}}}]]]"}"#);
        assert_eq!(all(&mut f).len(), 1);
    }

    #[test]
    fn an_endless_string_is_refused_at_the_limit() {
        let mut f = Framer::new(64);
        f.push(br#"{"s":""#);
        assert_eq!(f.next_message(), Ok(None));
        let mut refused = false;
        for _ in 0..100 {
            let n = f.room().min(16);
            f.push(&vec![b'x'; n]);
            match f.next_message() {
                Ok(None) => {}
                Err(e) => {
                    assert_eq!(e, FrameError::TooLarge { limit: 64 });
                    refused = true;
                    break;
                }
                Ok(Some(_)) => panic!("no message expected"),
            }
        }
        assert!(refused);
        assert!(f.buf.len() <= 65);
    }

    #[test]
    fn a_message_of_exactly_the_limit_passes_and_one_more_byte_does_not() {
        let mut f = Framer::new(10);
        f.push(br#"{"a":"12"}"#);
        assert_eq!(all(&mut f).len(), 1);
        let mut f = Framer::new(10);
        f.push(br#"{"a":"123"}"#);
        assert_eq!(f.next_message(), Err(FrameError::TooLarge { limit: 10 }));
    }

    #[test]
    fn garbage_between_messages_is_refused() {
        let mut f = Framer::new(64);
        f.push(b"  \n x");
        assert_eq!(f.next_message(), Err(FrameError::Garbage { byte: b'x' }));
    }

    #[test]
    fn whitespace_between_messages_does_not_accumulate() {
        let mut f = Framer::new(8);
        for _ in 0..100 {
            f.push(&[b' '; 8]);
            assert_eq!(f.next_message(), Ok(None));
        }
        f.push(b"{}");
        assert_eq!(all(&mut f), ["{}"]);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut f = Framer::new(1 << 20);
        f.push(&vec![b'['; 2000]);
        assert_eq!(f.next_message(), Err(FrameError::TooDeep(MAX_DEPTH)));
    }
}
