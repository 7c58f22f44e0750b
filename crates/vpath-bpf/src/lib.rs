//! vpath-bpf: the capture side. CO-RE eBPF probes (bpf/vpath.bpf.c) watch
//! every TCP send and receive, connect, accept and close, per thread, and a
//! [`Recorder`] turns the per-CPU ring buffers into [`vpath_core::Record`]s.
//!
//! - [`raw`]: the record layouts of `bpf/vpath.h`, mirrored and checked at
//!   compile time, and the safe parser. No kernel needed.
//! - [`Replay`]: kept ring records to ordered records with checkpoints, for
//!   the recorder's polls and for raw logs alike. No kernel needed.
//! - [`Recorder`]: loads the embedded object (built by
//!   `scripts/build-bpf.sh`), sets the filters, attaches, and polls the
//!   rings on a timer (the probes never wake the reader).
//! - [`Filters`]: pids, cgroup (path to id), network namespace, ports; all
//!   checked in the kernel.
//!
//! Architecture invariant: this crate knows nothing of log files or
//! analysis; it produces records in the event model of `vpath-core`.
//! Inventory of probes and maps with measured costs: docs/probes.md.

mod clock;
mod error;
mod filters;
pub mod order;
mod priority;
pub mod raw;
mod recorder;
mod replay;

pub use clock::{monotonic_ns, ClockOffset};
pub use error::RecordError;
pub use filters::{
    netns_inode, netns_of_pid, CgroupFilter, Filters, CGROUP2_ROOT, MAX_PIDS, MAX_PORTS,
};
pub use priority::ThreadPriority;
pub use raw::{parse_record, RawError};
/// A [`Recorder`] can be moved to a polling thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Recorder>();
};

pub use recorder::{
    ensure_tracefs, preflight, ContentCapture, Counters, PollStats, ProbeStats, ProgramStats,
    RawSink, Recorder, RecorderOptions, BTF_PATH, FLUSH_PROGRAM, TRACEFS,
};
pub use replay::{raw_layout, reads_layout, Replay, ReplayStats, READ_LAYOUTS};
