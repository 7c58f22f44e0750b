//! vpath-io: the edges of vpath. Sources (the binary log, the importers)
//! behind one trait, and sinks (text, JSONL, summary) behind another.
//!
//! Architecture invariant: this crate moves records and paths between files
//! and the analysis; it decides nothing about causality.

pub mod drive;
pub mod export;
pub mod sink;
pub mod source;

pub use drive::analyze;
pub use export::{DotSink, JaegerSink, MermaidSink, OtlpHttpSink, OtlpJsonSink, PerfettoSink, Tee};
pub use sink::{JsonlSink, RunInfo, Sink, SummarySink, TextSink};
pub use source::{open, open_with, RawReplay, RawReplayFactory, Source, SourceError, SourceInfo};
