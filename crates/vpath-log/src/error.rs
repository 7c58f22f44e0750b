//! Errors of reading and writing logs. Every reader error names the byte
//! offset (from the start of the file) where the problem was found.

use std::io;
use std::path::{Path, PathBuf};

/// Why a log could not be read (further). Records before the damage have
/// been returned already.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("read error at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("bad magic at byte 0: expected {expected:02x?} (a vpath log), found {found:02x?}")]
    BadMagic { expected: [u8; 8], found: Vec<u8> },
    #[error(
        "unsupported format version {major}.{minor} at byte {offset}: \
         this reader supports major version {supported}"
    )]
    UnsupportedVersion {
        offset: u64,
        major: u16,
        minor: u16,
        supported: u16,
    },
    /// The input ended inside something: `found` bytes of the `expected`
    /// starting at `offset` were present, so the input is
    /// `offset + found` bytes long.
    #[error("truncated {what} at byte {offset}: expected {expected} bytes, found {found}")]
    Truncated {
        offset: u64,
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error(
        "checksum mismatch in {what} at byte {offset}: stored {stored:#010x}, \
         computed {computed:#010x} (the data is corrupt)"
    )]
    Checksum {
        offset: u64,
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("block at byte {offset} is block number {found}, expected block number {expected} (blocks lost or reordered)")]
    BlockSequence {
        offset: u64,
        expected: u32,
        found: u32,
    },
    /// Structurally invalid content. Inside checksummed data this means a
    /// writer bug, or damage in a truncated final block (which has no
    /// usable checksum).
    #[error("malformed {what} at byte {offset}: {detail}")]
    Malformed {
        offset: u64,
        what: &'static str,
        detail: String,
    },
    #[error("unexpected data at byte {offset}: the End record must be the last record of the log")]
    TrailingData { offset: u64 },
}

impl LogError {
    /// The byte offset the error names (none for I/O errors without one).
    pub fn offset(&self) -> u64 {
        match self {
            LogError::BadMagic { .. } => 0,
            LogError::Io { offset, .. }
            | LogError::UnsupportedVersion { offset, .. }
            | LogError::Truncated { offset, .. }
            | LogError::Checksum { offset, .. }
            | LogError::BlockSequence { offset, .. }
            | LogError::Malformed { offset, .. }
            | LogError::TrailingData { offset } => *offset,
        }
    }

    /// Whether the error means the input simply ended early (recorder killed,
    /// copy cut short) rather than held wrong bytes.
    pub fn is_truncation(&self) -> bool {
        matches!(self, LogError::Truncated { .. })
    }

    /// Attaches the file name, for messages like `web1.vlog: truncated ...`.
    pub fn in_file(self, path: impl AsRef<Path>) -> FileError {
        FileError {
            path: path.as_ref().to_path_buf(),
            source: FileErrorKind::Log(self),
        }
    }
}

/// A reading or writing error with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: FileErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum FileErrorKind {
    #[error("cannot open: {0}")]
    Open(#[source] io::Error),
    #[error(transparent)]
    Log(LogError),
    #[error(transparent)]
    Write(WriteError),
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("write error after {offset} bytes of log: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{what} is {len} bytes long; the format allows at most {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("header flags {flags:#x} use bits this format does not define (defined: {known:#x})")]
    UnknownFlags { flags: u32, known: u32 },
    #[error("the writer failed earlier and can not continue")]
    Poisoned,
    #[error("{what} cannot go into a {log} log (the header's RAW flag decides which records a log holds)")]
    Mixed {
        what: &'static str,
        log: &'static str,
    },
    #[error("a raw log's header must name its raw layout")]
    RawWithoutLayout,
    #[error("the header names a raw layout ({layout:?}) but does not set the RAW flag")]
    LayoutWithoutRaw { layout: String },
}

impl WriteError {
    /// Attaches the file name.
    pub fn in_file(self, path: impl AsRef<Path>) -> FileError {
        FileError {
            path: path.as_ref().to_path_buf(),
            source: FileErrorKind::Write(self),
        }
    }
}
