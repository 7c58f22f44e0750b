//! Exports of discovered paths to other tools' formats: OTLP (JSON file and
//! HTTP/protobuf delivery), Jaeger UI JSON, Chrome/Perfetto trace JSON, the
//! tier topology as Graphviz DOT or Mermaid, and a self-contained HTML report.
//!
//! Every exporter is a [`Sink`](crate::Sink). They buffer the paths and write
//! at [`finish`](crate::Sink::finish), because only then are the sources'
//! clock offsets known (`RunInfo.sources`), which turn each host's monotonic
//! timestamps into wall-clock time. Memory is therefore one copy of every
//! path of the run.
//!
//! Shared conventions:
//! - Ids are deterministic: the trace id hashes the path number and the
//!   root's host, tid and start; a span id hashes the trace id and the span's
//!   depth-first position. The same input gives the same ids.
//! - A remote span (a callee that was not observed) is shown as a call made
//!   by its caller: it takes the caller's host, netns, process and thread.

use std::io;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use vpath_core::{Path, Span, SpanKind};

use crate::sink::{RunInfo, Sink};

pub mod html;
pub mod jaeger;
pub mod otlp;
pub mod perfetto;
pub mod topology;

pub use html::{HtmlReport, HtmlSink};
pub use jaeger::JaegerSink;
pub use otlp::{
    encode_request, BatchSender, DeliveryReport, ExportError, OtlpHttpSink, OtlpJsonSink,
    OtlpStream, RetryPolicy, Undelivered,
};
pub use perfetto::PerfettoSink;
pub use topology::{DotSink, MermaidSink, Topology};

/// Each host's offset from its span timestamps to Unix-epoch nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Clocks {
    offsets: FxHashMap<String, i64>,
}

impl Clocks {
    pub fn from_run(info: &RunInfo) -> Clocks {
        let mut c = Clocks::default();
        for s in &info.sources {
            c.offsets.insert(s.host.clone(), s.wall_minus_mono_ns);
        }
        c
    }

    /// Sets one host's offset.
    pub fn set(&mut self, host: &str, wall_minus_mono_ns: i64) {
        self.offsets.insert(host.to_string(), wall_minus_mono_ns);
    }

    /// `ts` of `host` as Unix-epoch nanoseconds (unchanged for unknown hosts).
    pub fn wall(&self, host: Option<&str>, ts: u64) -> u64 {
        let off = host.and_then(|h| self.offsets.get(h)).copied().unwrap_or(0);
        (ts as i128 + off as i128).clamp(0, u64::MAX as i128) as u64
    }
}

/// Where a span ran: for remote spans, the caller's place.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub host: Arc<str>,
    pub netns: u32,
    pub pid: u32,
    pub tid: u32,
    /// The thread's name.
    pub comm: Arc<str>,
    /// The process's name (its main thread's), else the thread's.
    pub process: Arc<str>,
}

/// One span of a flattened path.
#[derive(Clone, Debug)]
pub struct FlatSpan<'a> {
    pub span: &'a Span,
    /// Depth-first position in the path, from 0 (the root).
    pub index: usize,
    pub parent: Option<usize>,
    pub depth: usize,
    pub place: Place,
    pub span_id: [u8; 8],
    /// Unix-epoch nanoseconds.
    pub start_wall_ns: u64,
    pub end_wall_ns: u64,
}

/// A path in depth-first order with ids, places and wall-clock times.
#[derive(Clone, Debug)]
pub struct FlatPath<'a> {
    pub path: &'a Path,
    pub trace_id: [u8; 16],
    pub spans: Vec<FlatSpan<'a>>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The deterministic trace id of a path (never all zeroes).
pub fn trace_id(p: &Path) -> [u8; 16] {
    let r = &p.root;
    let mut h = fnv(&p.path.to_le_bytes(), 0xcbf2_9ce4_8422_2325);
    h = fnv(r.host.as_deref().unwrap_or("").as_bytes(), h);
    h = fnv(&r.tid.unwrap_or(0).to_le_bytes(), h);
    h = fnv(&r.start_ns.to_le_bytes(), h);
    let a = splitmix(h);
    let b = splitmix(a ^ 0x5851_F42D_4C95_7F2D);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// The deterministic id of the span at depth-first `index` (never zero).
pub fn span_id(trace: &[u8; 16], index: usize) -> [u8; 8] {
    let t = u64::from_be_bytes(trace[..8].try_into().unwrap_or([0; 8]))
        ^ u64::from_be_bytes(trace[8..].try_into().unwrap_or([0; 8]));
    let v = splitmix(t ^ splitmix(index as u64 + 1));
    let v = if v == 0 { 1 } else { v };
    v.to_be_bytes()
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Flattens a path depth first, resolving places, ids and wall-clock times.
pub fn flatten<'a>(p: &'a Path, clocks: &Clocks) -> FlatPath<'a> {
    let tid = trace_id(p);
    let mut spans: Vec<FlatSpan<'a>> = Vec::with_capacity(p.root.count());
    let mut stack: Vec<usize> = Vec::new();
    p.root.walk(&mut |s, depth| {
        stack.truncate(depth);
        let parent = stack.last().copied();
        let index = spans.len();
        let inherited = parent.map(|i| spans[i].place.clone());
        let place = match (s.kind, inherited) {
            (SpanKind::Remote, Some(pl)) => pl,
            _ => Place {
                host: s.host.clone().unwrap_or_else(|| Arc::from("?")),
                netns: s.netns.unwrap_or(0),
                pid: s.pid.unwrap_or(0),
                tid: s.tid.unwrap_or(0),
                comm: s.comm.clone().unwrap_or_else(|| Arc::from("?")),
                process: s
                    .process
                    .clone()
                    .or_else(|| s.comm.clone())
                    .unwrap_or_else(|| Arc::from("?")),
            },
        };
        let host = if s.kind == SpanKind::Remote && s.host.is_none() {
            Some(&*place.host)
        } else {
            s.host.as_deref()
        };
        let start_wall_ns = clocks.wall(host, s.start_ns);
        let end_wall_ns = clocks.wall(host, s.end_ns).max(start_wall_ns);
        spans.push(FlatSpan {
            span: s,
            index,
            parent,
            depth,
            place,
            span_id: span_id(&tid, index),
            start_wall_ns,
            end_wall_ns,
        });
        stack.push(index);
    });
    FlatPath {
        path: p,
        trace_id: tid,
        spans,
    }
}

/// The program a span ran in: its process's name, else its thread's.
fn name(s: &Span) -> &str {
    s.process.as_deref().or(s.comm.as_deref()).unwrap_or("?")
}

/// A short, low-cardinality name for a span: what tier did what.
pub fn operation_name(s: &Span) -> String {
    use vpath_core::event::fmt_endpoint;
    // The protocol's name for the operation (`GET /index.php`, `SELECT`),
    // as OpenTelemetry's conventions name spans, when it was recognized.
    if let Some(n) = s.name.as_deref().filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    match s.kind {
        SpanKind::Server => format!("{} serve {}", name(s), fmt_endpoint(&s.local)),
        SpanKind::Origin => format!("{} call {}", name(s), fmt_endpoint(&s.remote)),
        SpanKind::Remote => format!("call {} (not observed)", fmt_endpoint(&s.local)),
    }
}

/// Feeds every path to two sinks (for `--otlp-endpoint` next to `--format`).
pub struct Tee {
    a: Box<dyn Sink>,
    b: Box<dyn Sink>,
}

impl Tee {
    pub fn new(a: Box<dyn Sink>, b: Box<dyn Sink>) -> Tee {
        Tee { a, b }
    }
}

impl Sink for Tee {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.a.path(p)?;
        self.b.path(p)
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let ra = self.a.finish(info);
        let rb = self.b.finish(info);
        ra.and(rb)
    }
}

/// Buffers paths until the run's clocks are known.
#[derive(Default)]
pub(crate) struct Buffer {
    pub paths: Vec<Path>,
}

impl Buffer {
    pub fn push(&mut self, p: &Path) {
        self.paths.push(p.clone());
    }
}
