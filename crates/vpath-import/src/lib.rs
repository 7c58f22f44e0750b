//! vpath-import: importers that turn logs written by other tools into
//! vpath-core [`Record`]s, one host per input.
//!
//! - [`seed`]: the Xen log of the vPath prototype (the seed's slides, "Path
//!   Data Processing").
//! - [`strace`]: the output of `strace -f -ttt -yy -o FILE` (and the
//!   `[pid N]`-prefixed form strace writes without `-o`).
//!
//! Both importers stream: they read line by line, and their memory is
//! bounded by the open state of the input (threads, open sockets,
//! unfinished calls), not by its size. Records come out in the order the
//! file gives them, which is timestamp order per thread. Each importer is an
//! [`Iterator`] of `Result<Record, ImportError>`; a parse error names the
//! line and what was expected, and iteration goes on with the next line.
//! Lines that are valid but say nothing about TCP sockets are skipped and
//! counted (`skipped()`).
//!
//! Architecture invariant: this crate knows nothing of the analysis; it only
//! produces records.

mod error;
mod lines;
pub mod seed;
pub mod strace;
pub mod text;

pub use error::{ErrorKind, ImportError};
pub use lines::MAX_LINE;
pub use seed::SeedImporter;
pub use strace::StraceImporter;

#[doc(no_inline)]
pub use vpath_core::Record;

/// An input format this crate imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The vPath seed's Xen log.
    Seed,
    /// strace output.
    Strace,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Seed => "seed",
            Format::Strace => "strace",
        }
    }
}

/// Guesses the format from the first bytes of an input (a few KiB is
/// plenty): the first line that is neither blank nor a `#` comment decides.
/// None when that line is neither format (or `first_bytes` holds none).
pub fn sniff(first_bytes: &[u8]) -> Option<Format> {
    let mut rest = first_bytes;
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let l = &rest[..i];
                rest = &rest[i + 1..];
                (l, true)
            }
            None => {
                let l = rest;
                rest = &[];
                (l, false)
            }
        };
        // A cut-off last line may end inside a UTF-8 sequence.
        let line = match std::str::from_utf8(line) {
            Ok(s) => s,
            Err(e) if !complete => std::str::from_utf8(&line[..e.valid_up_to()]).ok()?,
            Err(_) => return None,
        };
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if seed::looks_like(t) {
            return Some(Format::Seed);
        }
        if strace::looks_like(t) {
            return Some(Format::Strace);
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_the_formats_apart() {
        let seed = b"# comment\n\n0733 Dom1 002780 cr3:04254000 ebp:bfe37034 eax:3 ebx:12\n";
        assert_eq!(sniff(seed), Some(Format::Seed));
        let hyper = b"0734 R Dom1 sd:12 L:130.203.8.24:41845 R:130.203.8.25:8009\n";
        assert_eq!(sniff(hyper), Some(Format::Seed));
        let st = b"6381  1795674661.168570 execve(\"/tmp/tiers\", [\"/tmp/tiers\"], 0x7ffd3b1a6db8 /* 35 vars */) = 0\n";
        assert_eq!(sniff(st), Some(Format::Strace));
        let cut = b"6381  1795674661.168570 execve(\"/tmp/ti";
        assert_eq!(sniff(cut), Some(Format::Strace));
        let bracket = b"[pid  6634] 1795674685.987051 rt_sigprocmask(SIG_BLOCK, ~[], [], 8) = 0\n";
        assert_eq!(sniff(bracket), Some(Format::Strace));
        let bare = b"1795674685.977293 execve(\"/tmp/tiers\", [\"/tmp/tiers\"], 0x7ffc /* 35 vars */) = 0\n";
        assert_eq!(sniff(bare), Some(Format::Strace));
        assert_eq!(sniff(b"hello world\n"), None);
        assert_eq!(sniff(b"\n# only comments\n"), None);
        assert_eq!(sniff(b"{\"ts\": 1}\n"), None);
    }
}
