//! Import errors: every error names the input line (from 1) it is about.

use std::io;

/// An error at one line of the input.
///
/// Parse errors are not fatal: the importer goes on with the next line when
/// asked for the next record. Read errors ([`ErrorKind::Io`]) end the input.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ImportError {
    /// The line (from 1) the error is about; for errors found at the end of
    /// the input, the line that started the unfinished business.
    pub line: u64,
    pub kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("read failed: {source}")]
    Io {
        #[source]
        source: io::Error,
    },
    #[error("the line is not valid UTF-8 (byte {offset} of the line)")]
    NotUtf8 { offset: usize },
    #[error("the line is longer than {max} bytes")]
    TooLong { max: usize },
    /// The line does not have the expected syntax.
    #[error("byte {column}: expected {expected}, found {found:?}")]
    Expected {
        /// Byte offset in the line, from 0.
        column: usize,
        expected: &'static str,
        /// The text found there (shortened).
        found: String,
    },
    /// Seed format: a syscall line that needs a hypercall line was followed
    /// by another syscall line of the same domain (or by the end of input).
    #[error("the {syscall} syscall of Dom{domain} on line {syscall_line} has no hypercall line")]
    MissingHypercall {
        domain: u32,
        syscall_line: u64,
        syscall: &'static str,
    },
    /// Seed format: a hypercall line with no syscall line before it.
    #[error("hypercall line of Dom{domain} follows no syscall line of that domain")]
    UnpairedHypercall { domain: u32 },
    /// Seed format: the hypercall says R where the syscall sends, or S where
    /// it receives.
    #[error("hypercall type {found} does not match the {syscall} syscall on line {syscall_line} (expected {expected})")]
    DirectionMismatch {
        syscall_line: u64,
        syscall: &'static str,
        expected: char,
        found: char,
    },
    /// Seed format: the hypercall's descriptor differs from the syscall's
    /// EBX, for a syscall whose EBX is the descriptor.
    #[error(
        "hypercall sd:{sd} differs from descriptor {ebx} of the syscall on line {syscall_line}"
    )]
    DescriptorMismatch {
        syscall_line: u64,
        ebx: u32,
        sd: u32,
    },
    /// strace: `<... X resumed>` where the thread's unfinished call is
    /// another one.
    #[error(
        "thread {tid} resumes {found} but its unfinished call (line {pending_line}) is {pending}"
    )]
    ResumeMismatch {
        tid: u32,
        found: String,
        pending: String,
        pending_line: u64,
    },
}

impl ImportError {
    pub(crate) fn new(line: u64, kind: ErrorKind) -> Self {
        ImportError { line, kind }
    }

    pub(crate) fn expected(line: u64, column: usize, expected: &'static str, rest: &str) -> Self {
        ImportError::new(
            line,
            ErrorKind::Expected {
                column,
                expected,
                found: shorten(rest),
            },
        )
    }
}

/// At most 40 characters of `s`, cut at a character boundary.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
