//! Ground truth beyond the expected paths: what each span's caller saw, so
//! that partial spans from lossy input can be mapped back to a true span.

use std::net::SocketAddr;
use std::sync::Arc;

use vpath_core::SpanKind;

/// The caller's view of a call: its thread and the times of its first send
/// of the request and last receive of the reply (caller host's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerView {
    pub host: Arc<str>,
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One span of the expected paths, flattened, with its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthSpan {
    /// Index into `Scenario::expected`.
    pub path: usize,
    /// Index into `Scenario::truth` of the parent span.
    pub parent: Option<usize>,
    pub kind: SpanKind,
    pub host: Option<Arc<str>>,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub start_ns: u64,
    pub end_ns: u64,
    /// For server and remote spans: the caller's view of the call.
    pub caller: Option<CallerView>,
}
