//! Object uids, kept compact: a Kubernetes uuid in 16 bytes instead of a 36-byte string,
//! written back out without allocating.

use std::fmt;

/// A Kubernetes object uid: a uuid in 16 bytes, or any other text as given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Uid {
    /// A lowercase hyphenated uuid (what the API server assigns).
    Uuid([u8; 16]),
    /// Anything else (test fixtures, `namespace/name` for objects without a uid).
    Text(Box<str>),
}

impl Uid {
    /// Parses `text`, keeping it compact when it is a canonical uuid.
    pub fn new(text: &str) -> Uid {
        parse_uuid(text).map_or_else(|| Uid::Text(text.into()), Uid::Uuid)
    }

    /// Calls `with_text` with the uid as text, formatting a uuid on the stack (the hot
    /// path writes a pod's uid into every record it enriches; `to_string` would allocate
    /// and go through `fmt` for each of the 16 bytes).
    pub fn with_text<R>(&self, with_text: impl FnOnce(&str) -> R) -> R {
        match self {
            Uid::Text(text) => with_text(text),
            Uid::Uuid(bytes) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut text = [b'-'; 36];
                let mut at = 0;
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        at += 1;
                    }
                    text[at] = HEX[usize::from(byte >> 4)];
                    text[at + 1] = HEX[usize::from(byte & 0x0f)];
                    at += 2;
                }
                // Only ASCII hex digits and hyphens were written.
                with_text(std::str::from_utf8(&text).unwrap_or_default())
            }
        }
    }
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = bytes.iter().filter(|&&b| b != b'-');
    for byte in &mut out {
        let mut value = 0u8;
        for _ in 0..2 {
            let digit = match nibbles.next()? {
                d @ b'0'..=b'9' => d - b'0',
                d @ b'a'..=b'f' => d - b'a' + 10,
                // Upper case would not print back the same: keep it as text.
                _ => return None,
            };
            value = value << 4 | digit;
        }
        *byte = value;
    }
    Some(out)
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Text(text) => f.write_str(text),
            Uid::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl PartialEq<str> for Uid {
    fn eq(&self, other: &str) -> bool {
        match self {
            Uid::Text(text) => &**text == other,
            Uid::Uuid(bytes) => parse_uuid(other).as_ref() == Some(bytes),
        }
    }
}
