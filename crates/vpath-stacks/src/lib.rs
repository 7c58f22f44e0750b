//! Independent accuracy checkers for vpath on real application stacks (`stacks/` at the repository root).
//!
//! They never use vpath's causality: they read the request content that vpath records with
//! `vpath record --payload-bytes N` (span `protocol`, `name`, `attrs`) and the application's own logs (MariaDB's
//! general query log), and decide from what the application ties to each request whether a path holds exactly
//! that request's work. See `mediawiki` for the rules.

pub mod common;
pub mod genlog;
pub mod jsonl;
pub mod mediawiki;
pub mod names;
pub mod tomcat;
pub mod wagtail;

pub use genlog::LogEntry;
pub use jsonl::{read_paths, PathRec, Proto, SpanRec};
pub use mediawiki::{check, Config, Finding, Report};
pub use names::Namer;
