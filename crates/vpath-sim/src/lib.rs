//! vpath-sim: the ground truth for vpath's analyzer.
//!
//! It generates random multi-tier executions in vPath's thread-per-request
//! model (services in a DAG, thread pools, process-per-connection servers,
//! keep-alive connection pools, pods sharing loopback addresses, IPv6,
//! unobserved hosts, clock skew), synthesizes exactly the records an eBPF
//! recorder would log on each host (optionally with losses and
//! checkpoints), and computes the paths that the analyzer must find.
//!
//! Architecture invariant: this crate knows the analyzer only through its
//! public API (`Analyzer::{new, add_host, push, pop, finish, stats,
//! in_flight}`); the expected paths come from the simulation alone.
//!
//! Entry points: [`generate`] (a [`Scenario`] from a [`SimConfig`]),
//! [`analyze`] (feed it to an analyzer), [`check`] (compare),
//! [`validate`] (self-checks), [`big_scenario`] (streamed logs for
//! benchmarks), [`strategy`] (proptest strategies).

pub mod big;
pub mod check;
pub mod config;
mod engine;
pub mod rng;
pub mod scenario;
pub mod strategy;
pub mod topology;
pub mod truth;
pub mod validate;

pub use big::{big_config, big_scenario, BigScenario, HostInfo};
pub use check::{check_lossy, diff_paths, Diff, LossyReport};
pub use config::{ConfigError, Handoff, Loss, SimConfig};
pub use scenario::{analyze, analyze_with, generate, HostStream, Scenario};
pub use truth::{CallerView, TruthSpan};
pub use validate::{validate, Summary, ValidationError};
