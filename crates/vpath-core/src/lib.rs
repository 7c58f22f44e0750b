//! vpath-core: discovers request-processing paths from thread and socket
//! events, as vPath (USENIX ATC 2009) did, without touching the application.
//!
//! Architecture invariant: this crate does no IO and knows nothing of BPF,
//! files or formats. Events go in ([`Record`]), paths and diagnostics come
//! out ([`Path`], [`Stats`]). Lossy input is not an error: it yields paths
//! marked incomplete.
//!
//! The analysis runs in two stages:
//! 1. [`host`]: per host, internal causality. A thread that receives a
//!    request and, before replying, sends requests on other connections,
//!    caused those calls. Output: plain [`host::SpanRecord`]s with link keys.
//! 2. [`stitch`]: external causality, a join of each call's link key
//!    (connection + stream position of the request) with the callee span's
//!    key. Its inputs and outputs are plain records, so that it can later run
//!    in a distributed engine.

pub mod analyzer;
pub mod content;
pub mod event;
pub mod host;
pub mod path;
pub mod stitch;

pub use analyzer::{Analyzer, Config, HostId, Stats};
pub use event::{flags, Checkpoint, Data, Event, Label, Op, Record, Syscall, ThreadInfo};
pub use path::{Issue, Path, Span, SpanKind};
