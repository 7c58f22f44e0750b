//! vpath-log: a compact, versioned, streaming binary log of one host's
//! [`vpath_core::Record`]s, and its text dump.
//!
//! The byte layout is specified in `FORMAT.md`. In short: a checksummed file
//! header, then checksummed, numbered blocks of records. Socket endpoints and
//! per-thread state are interned (sent when first seen or changed), so an
//! event costs about a dozen bytes. The reader rebuilds full
//! [`vpath_core::Event`]s, detects truncation and corruption, and names the
//! byte offset of any damage after returning every record before it.
//!
//! ```
//! use vpath_log::{Clock, EndStats, Header, LogReader, LogWriter};
//! let header = Header {
//!     host: "web1".into(),
//!     wall_minus_mono_ns: 0,
//!     clock: Clock::Monotonic,
//!     flags: vpath_log::header_flags::CHECKPOINTED,
//!     recorder: "doc 0".into(),
//!     start_unix_ns: 0,
//!     raw_layout: String::new(),
//! };
//! let w = LogWriter::new(Vec::new(), &header).unwrap();
//! let bytes = w.finish(EndStats::default()).unwrap();
//! let mut r = LogReader::new(&bytes[..]).unwrap();
//! assert!(r.next_record().unwrap().is_none());
//! assert!(r.end().is_some());
//! ```
//!
//! Architecture invariant: this crate knows files and bytes, not BPF or the
//! analysis; it depends on vpath-core only for the record types.

mod dump;
mod error;
mod format;
mod reader;
mod varint;
mod writer;

pub use dump::{dump, fmt_ts, DumpError, DumpSummary};
pub use error::{FileError, FileErrorKind, LogError, WriteError};
pub use format::{
    data_kind, header_flags, kind, Clock, EndStats, Header, BLOCK_HEADER_LEN, MAGIC,
    MAX_BLOCK_PAYLOAD, MAX_DATA_BYTES, MAX_LABEL_ATTRS, MAX_LABEL_KEY, MAX_LABEL_VALUE,
    MAX_RAW_BYTES, MAX_SOCKET_ID, VERSION_MAJOR, VERSION_MINOR,
};
pub use reader::{Item, LogReader, RawRecord};
pub use writer::{LogWriter, WriterOptions};

/// Test support: builds a header with another format version, for tests of
/// version handling in this and other crates.
#[doc(hidden)]
pub fn encode_header_with_version(
    h: &Header,
    major: u16,
    minor: u16,
) -> Result<Vec<u8>, WriteError> {
    writer::encode_header(h, major, minor)
}

#[doc(hidden)]
pub mod synth;
