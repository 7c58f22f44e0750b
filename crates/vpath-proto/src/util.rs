//! Small helpers shared by the protocol parsers: bounded text, integers, attribute lists.

use crate::{Label, Protocol, MAX_VALUE};

/// Bytes as attribute text: at most [`MAX_VALUE`] bytes, invalid UTF-8 replaced, and an incomplete
/// UTF-8 sequence at the end (the input was cut inside a character) dropped, so that the text of a
/// prefix is always a prefix of the text of the whole.
pub(crate) fn text(b: &[u8]) -> String {
    let mut s = String::new();
    push_text(&mut s, b);
    s
}

/// [`text`] of bytes already owned: no copy when they are valid UTF-8.
pub(crate) fn into_text(mut b: Vec<u8>) -> String {
    b.truncate(cut_incomplete_char(&b[..b.len().min(MAX_VALUE)]));
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `b` as [`text`] does, without going over [`MAX_VALUE`] bytes in all.
pub(crate) fn push_text(s: &mut String, b: &[u8]) {
    let room = MAX_VALUE.saturating_sub(s.len());
    let b = &b[..cut_incomplete_char(&b[..b.len().min(room)])];
    match std::str::from_utf8(b) {
        Ok(t) => s.push_str(t),
        Err(_) => s.push_str(&String::from_utf8_lossy(b)),
    }
}

/// The length of `b` without a UTF-8 sequence cut at its end.
pub(crate) fn cut_incomplete_char(b: &[u8]) -> usize {
    // The last lead byte among the last 4 bytes, and how long its sequence must be.
    for back in 1..=4.min(b.len()) {
        let i = b.len() - back;
        let c = b[i];
        if c & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match c {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return b.len(),
        };
        return if back < need { i } else { b.len() };
    }
    b.len()
}

/// Printable text as protocols send it in names and values: no ASCII control bytes except
/// tab, CR and LF. Bytes >= 0x80 (UTF-8) are allowed.
pub(crate) fn is_texty(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| c >= 0x20 && c != 0x7f || c == b'\t' || c == b'\r' || c == b'\n')
}

/// A name or key: printable, no spaces, no control bytes.
pub(crate) fn is_token(b: &[u8]) -> bool {
    b.iter().all(|&c| c > 0x20 && c != 0x7f)
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], 0]))
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The bytes up to the first NUL from `at`, and whether the NUL was found (false: cut).
pub(crate) fn cstr(b: &[u8], at: usize) -> (&[u8], bool) {
    let rest = b.get(at..).unwrap_or(&[]);
    match rest.iter().position(|&c| c == 0) {
        Some(n) => (&rest[..n], true),
        None => (rest, false),
    }
}

/// Parses ASCII decimal digits (non-empty, at most 19 digits).
pub(crate) fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n)
}

/// The line at the start of `b`: its content (without CR LF) and whether its end was seen.
/// A bare LF also ends a line. A trailing lone CR at the end of input is not content.
pub(crate) fn line(b: &[u8]) -> (&[u8], bool) {
    match b.iter().position(|&c| c == b'\n') {
        Some(n) => {
            let l = &b[..n];
            (l.strip_suffix(b"\r").unwrap_or(l), true)
        }
        None => (b.strip_suffix(b"\r").unwrap_or(b), false),
    }
}

/// Builds a [`Label`]: attributes sorted by key, duplicates removed (the first pushed wins).
/// Nothing is allocated until an attribute is pushed or the label is
/// finished, so that a parse that gives up early costs no allocation (the
/// recorder tries several protocols on every message start).
pub(crate) struct Builder {
    pub protocol: Protocol,
    pub attrs: Vec<(&'static str, String)>,
    /// Add the attributes every label of a database protocol carries.
    db: bool,
}

impl Builder {
    pub fn new(protocol: Protocol) -> Self {
        Builder {
            protocol,
            attrs: Vec::new(),
            db: false,
        }
    }

    /// A builder with the attributes every label of a database protocol
    /// carries (added when the label is finished, ahead of the others).
    pub fn db(protocol: Protocol) -> Self {
        Builder {
            db: true,
            ..Self::new(protocol)
        }
    }

    pub fn push(&mut self, key: &'static str, value: impl Into<String>) {
        self.attrs.push((key, value.into()));
    }

    pub fn push_text(&mut self, key: &'static str, value: &[u8]) {
        self.attrs.push((key, text(value)));
    }

    pub fn finish(mut self, name: impl Into<String>, truncated: bool) -> Label {
        if self.db {
            let p = self.protocol.name();
            self.attrs.splice(
                0..0,
                [
                    (crate::keys::DB_SYSTEM_NAME, p.to_string()),
                    (crate::keys::NETWORK_PROTOCOL_NAME, p.to_string()),
                ],
            );
        }
        // Stable: of two equal keys the first pushed stays first and is kept.
        self.attrs.sort_by_key(|a| a.0);
        self.attrs.dedup_by_key(|a| a.0);
        Label {
            protocol: self.protocol,
            name: name.into(),
            attrs: self.attrs,
            truncated,
        }
    }
}

/// Bytes as text, ASCII letters upper case (a command as a span name).
pub(crate) fn upper(b: &[u8]) -> String {
    let mut s = text(b);
    s.make_ascii_uppercase();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_drops_cut_char() {
        let s = "é".as_bytes();
        assert_eq!(text(&s[..1]), "");
        assert_eq!(text(s), "é");
        assert_eq!(text(b"a\xffb\xc3"), "a\u{fffd}b");
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn lines() {
        assert_eq!(line(b"ab\r\ncd"), (&b"ab"[..], true));
        assert_eq!(line(b"ab\r"), (&b"ab"[..], false));
        assert_eq!(line(b"ab\n"), (&b"ab"[..], true));
    }
}
