//! A line reader with bounded memory: a line longer than the limit is an
//! error (and is skipped), not a reason to buffer the whole input.

use std::io::{BufRead, ErrorKind as IoKind};

use crate::error::{ErrorKind, ImportError};

/// Lines longer than this are rejected. strace abbreviates strings to 32
/// bytes by default, so real lines are far shorter.
pub const MAX_LINE: usize = 1 << 20;

pub(crate) struct Lines<R> {
    r: R,
    buf: Vec<u8>,
    line: u64,
    max: usize,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(r: R) -> Self {
        Lines {
            r,
            buf: Vec::new(),
            line: 0,
            max: MAX_LINE,
            done: false,
        }
    }

    /// The next line without its `\n` (and `\r`), or None at the end.
    /// After a read error, always None.
    pub(crate) fn next_line(&mut self) -> Option<Result<(u64, &str), ImportError>> {
        if self.done {
            return None;
        }
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let avail = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(ImportError::new(
                        self.line + 1,
                        ErrorKind::Io { source: e },
                    )));
                }
            };
            if avail.is_empty() {
                self.done = true;
                if !any {
                    return None;
                }
                break;
            }
            any = true;
            let (take, used, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&avail[..take]);
                }
            }
            self.r.consume(used);
            if end {
                break;
            }
        }
        self.line += 1;
        if too_long {
            return Some(Err(ImportError::new(
                self.line,
                ErrorKind::TooLong { max: self.max },
            )));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Some(Ok((self.line, s))),
            Err(e) => Some(Err(ImportError::new(
                self.line,
                ErrorKind::NotUtf8 {
                    offset: e.valid_up_to(),
                },
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_errors_and_reading_goes_on() {
        let mut text = "a\n".to_string();
        text.push_str(&"x".repeat(50));
        text.push_str("\nb\r\n");
        let mut l = Lines::new(std::io::BufReader::with_capacity(8, text.as_bytes()));
        l.max = 20;
        assert_eq!(l.next_line().unwrap().unwrap(), (1, "a"));
        let e = l.next_line().unwrap().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(e.kind, ErrorKind::TooLong { max: 20 }));
        assert_eq!(l.next_line().unwrap().unwrap(), (3, "b"));
        assert!(l.next_line().is_none());
    }

    #[test]
    fn last_line_without_newline_counts() {
        let mut l = Lines::new(&b"a\nb"[..]);
        assert_eq!(l.next_line().unwrap().unwrap(), (1, "a"));
        assert_eq!(l.next_line().unwrap().unwrap(), (2, "b"));
        assert!(l.next_line().is_none());
    }

    #[test]
    fn invalid_utf8_names_the_byte() {
        let mut l = Lines::new(&b"ab\xffc\n"[..]);
        let e = l.next_line().unwrap().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::NotUtf8 { offset: 2 }), "{e}");
    }
}
