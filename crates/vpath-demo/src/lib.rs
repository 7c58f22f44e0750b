//! vpath-demo: the vPath paper's "vApp" and its evaluation, made runnable.
//!
//! - [`vapp_main`]: vApp itself, a multi-tier TCP application (`tier`) in
//!   three execution models ([`Model`]) and its closed-loop load generator
//!   (`client`). Every process logs the ground truth ([`TruthRecord`]).
//! - [`score`]: compares vpath's discovered paths with the ground truth, edge
//!   by edge.
//! - [`run`]: the demo: one network namespace per tier ("hosts"), the eBPF
//!   recorder, load, analysis, scoring and overhead measurement.
//!
//! Architecture invariant: the tiers know nothing of vpath; vpath never reads
//! their payloads or logs. Only the scorer reads the truth.

pub mod cli;
pub mod client;
pub mod hosts;
pub mod proto;
pub mod run;
pub mod score;
pub mod tier;
pub mod topology;
pub mod truth;

pub use cli::vapp_main;
pub use run::{run, DemoOptions, DemoReport, OverheadOptions};
pub use score::{score, Score};
pub use topology::{CallSpec, Model, TierSpec, Topology};
pub use truth::{read_truth_file, TruthKind, TruthRecord};
