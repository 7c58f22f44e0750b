//! The incremental analyzer: host stages feeding one stitch.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::Record;
use crate::host::{HostOutput, HostStage};
use crate::path::Path;
use crate::stitch::Stitch;

/// Index of a host (one input stream) in an [`Analyzer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub u16);

/// Tunables. The defaults suit recorded logs on one machine.
#[derive(Clone, Debug)]
pub struct Config {
    /// A server span whose thread has sent its reply and then stays idle for
    /// this long (stream time) is flushed to the stitch.
    pub idle_flush_ns: u64,
    /// How long (stream time) the stitch waits for the other end of a link
    /// before it decides that the callee is unobserved, or that a span has no
    /// observed caller. Must exceed the clock skew between hosts.
    pub horizon_ns: u64,
    /// Spans deeper than this in one path are cut off: the deepest span kept
    /// carries [`crate::Issue::DepthLimit`] and the spans below it are
    /// counted in [`Stats::spans_cut`]. It bounds the recursion of every
    /// consumer of a path (walks, renderers, serializers); the default keeps
    /// the JSONL contract within serde_json's default nesting limit (128:
    /// two levels per span).
    pub max_depth: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_flush_ns: 1_000_000_000,
            horizon_ns: 5_000_000_000,
            max_depth: 60,
        }
    }
}

/// Counters over everything the analyzer has seen. Nothing is dropped
/// without being counted here.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub records: u64,
    pub events: u64,
    /// Data events (sends and receives that moved bytes).
    pub data_events: u64,
    /// Events that were not TCP data nor lifecycle (errors, EOF, peeks).
    pub ignored_events: u64,
    /// Events lost in the kernel, from checkpoints.
    pub lost_events: u64,
    pub paths: u64,
    pub complete_paths: u64,
    pub incomplete_paths: u64,
    pub spans: u64,
    /// Spans left out of their path because they lay deeper than
    /// [`Config::max_depth`].
    pub spans_cut: u64,
    /// Links (calls) resolved to an observed server span.
    pub links_stitched: u64,
    /// Calls whose callee was not observed: remote leaf spans.
    pub links_remote: u64,
    /// Calls whose callee is observed but whose span was not found.
    pub links_missing: u64,
    /// Replies or request bytes that fit no open span (for example the first
    /// bytes of a recording that started mid-request).
    pub stray_messages: u64,
}

/// Turns host streams of [`Record`]s into [`Path`]s, incrementally.
///
/// Feed each host's records in stream order with [`Analyzer::push`]; the
/// streams of different hosts may be interleaved in any way that keeps each
/// within `horizon_ns` of the others. Completed paths are taken with
/// [`Analyzer::pop`]. [`Analyzer::finish`] flushes everything at end of input.
pub struct Analyzer {
    hosts: Vec<HostStage>,
    names: Vec<Arc<str>>,
    stitch: Stitch,
    ready: VecDeque<Path>,
    stats: Stats,
    buf: Vec<HostOutput>,
    config: Config,
}

impl Analyzer {
    pub fn new(config: Config) -> Self {
        Analyzer {
            stitch: Stitch::new(config.clone()),
            hosts: Vec::new(),
            names: Vec::new(),
            ready: VecDeque::new(),
            stats: Stats::default(),
            buf: Vec::new(),
            config,
        }
    }

    /// Registers a host stream. `checkpointed` says that the stream carries
    /// loss checkpoints (recorded logs do); then spans are held until a
    /// checkpoint proves that no event of theirs was lost.
    pub fn add_host(&mut self, name: &str, checkpointed: bool) -> HostId {
        let id = HostId(self.hosts.len() as u16);
        let name: Arc<str> = Arc::from(name);
        self.hosts.push(HostStage::new(
            id,
            name.clone(),
            checkpointed,
            self.config.clone(),
        ));
        self.names.push(name);
        self.stitch.add_host(id);
        id
    }

    /// Maps host `h`'s clock onto a common clock (for example its offset from
    /// monotonic to wall-clock time), so that waits across hosts compare like
    /// with like. Paths keep each host's own timestamps.
    pub fn set_clock_offset(&mut self, h: HostId, offset_ns: i64) {
        self.stitch.set_clock_offset(h, offset_ns);
    }

    pub fn host_name(&self, h: HostId) -> &str {
        &self.names[h.0 as usize]
    }

    /// Feeds one record of host `h`.
    pub fn push(&mut self, h: HostId, rec: &Record) {
        self.stats.records += 1;
        let stage = &mut self.hosts[h.0 as usize];
        stage.push(rec, &mut self.stats, &mut self.buf);
        self.drain_host(h);
    }

    /// Declares that host `h` has no more records.
    pub fn end_host(&mut self, h: HostId) {
        let stage = &mut self.hosts[h.0 as usize];
        stage.finish(&mut self.stats, &mut self.buf);
        self.drain_host(h);
        self.stitch.end_host(h, &mut self.stats, &mut self.ready);
    }

    /// Ends every host and flushes all paths.
    pub fn finish(&mut self) {
        for i in 0..self.hosts.len() {
            self.end_host(HostId(i as u16));
        }
        self.stitch.finish(&mut self.stats, &mut self.ready);
    }

    fn drain_host(&mut self, h: HostId) {
        for out in self.buf.drain(..) {
            self.stitch.push(h, out, &mut self.stats, &mut self.ready);
        }
    }

    /// Takes the next completed path, if any.
    pub fn pop(&mut self) -> Option<Path> {
        self.ready.pop_front()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Spans and links held in memory now: the in-flight state.
    pub fn in_flight(&self) -> usize {
        self.hosts.iter().map(|h| h.in_flight()).sum::<usize>() + self.stitch.in_flight()
    }
}
