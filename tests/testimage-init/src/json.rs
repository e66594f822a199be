//! Just enough JSON to take one string member of the top-level object
//! (`uuid` of `meta_data.json`) without a JSON library in the init.

/// The string value of key `key` in the top-level object of `text`; `None`
/// if the text is not an object, the key is missing or not a string.
pub fn top_level_string(text: &str, key: &str) -> Option<String> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if p.peek()? == b'}' {
        return None;
    }
    loop {
        p.ws();
        let k = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        if k == key {
            return if p.peek()? == b'"' { p.string() } else { None };
        }
        p.skip_value(0)?;
        p.ws();
        match p.next()? {
            b',' => continue,
            _ => return None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out: Vec<u16> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => {
                    let c = match self.next()? {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            self.i += 4;
                            flush(&mut bytes, &mut out);
                            out.push(unit);
                            continue;
                        }
                        other => char::from(other),
                    };
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                c => bytes.push(c),
            }
        }
        flush(&mut bytes, &mut out);
        Some(String::from_utf16_lossy(&out))
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > 64 {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        c if c == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
                {
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

/// Moves UTF-8 bytes gathered so far into the UTF-16 output.
fn flush(bytes: &mut Vec<u8>, out: &mut Vec<u16>) {
    out.extend(String::from_utf8_lossy(bytes).encode_utf16());
    bytes.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_top_level_uuid_only() {
        let text = r#"{"devices": [{"uuid": "nested"}], "meta": {"uuid": "x"},
            "n": -1.5e3, "b": true, "s": "a\"b\\", "uuid": "1be26c0b-03f2", "z": null}"#;
        assert_eq!(
            top_level_string(text, "uuid").as_deref(),
            Some("1be26c0b-03f2")
        );
        assert_eq!(top_level_string(r#"{"uuid": 5}"#, "uuid"), None);
        assert_eq!(top_level_string("{}", "uuid"), None);
        assert_eq!(top_level_string("[1]", "uuid"), None);
        assert_eq!(
            top_level_string(r#"{"uuid":"caf\u00e9"}"#, "uuid").as_deref(),
            Some("café")
        );
    }
}
