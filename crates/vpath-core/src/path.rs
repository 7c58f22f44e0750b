//! The analyzer's output: request-processing paths, as trees of spans.
//!
//! These types serialize to the stable JSONL contract (see README.md,
//! "The JSONL contract"). Fields may be added; none is renamed or removed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::event::fmt_endpoint;

/// What kind of span a node of a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// One thread's handling of one inbound request.
    Server,
    /// A request/reply exchange by a thread that had no inbound request.
    Origin,
    /// A callee that was not observed: what the caller saw of it.
    Remote,
}

/// One node of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub kind: SpanKind,
    /// The name of the host whose log held this span (absent for remote spans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Arc<str>>,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<Arc<str>>,
    /// The process's name (its main thread's comm), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Arc<str>>,
    pub netns: Option<u32>,
    #[serde(serialize_with = "ser_endpoint", deserialize_with = "de_endpoint")]
    pub local: SocketAddr,
    #[serde(serialize_with = "ser_endpoint", deserialize_with = "de_endpoint")]
    pub remote: SocketAddr,
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The application protocol recognized in the request's first bytes
    /// (`http`, `fastcgi`, `mysql`, `postgresql`, `memcached`, `redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A name for the request, from its protocol (`GET /index.php`, `SELECT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Attributes read from the request and reply, OpenTelemetry semantic
    /// convention keys where they exist (`http.response.status_code`,
    /// `db.query.text`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// Why this span is not known to be exact; empty when it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<Issue>,
    pub children: Vec<Span>,
}

impl Span {
    /// Visits this span and all its descendants, depth first, in order.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Span, usize)) {
        fn go<'a>(s: &'a Span, depth: usize, f: &mut impl FnMut(&'a Span, usize)) {
            f(s, depth);
            for c in &s.children {
                go(c, depth + 1, f);
            }
        }
        go(self, 0, f)
    }

    pub fn count(&self) -> usize {
        let mut n = 0;
        self.walk(&mut |_, _| n += 1);
        n
    }
}

fn ser_endpoint<S: serde::Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_endpoint(a))
}

fn de_endpoint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an endpoint `ip:port` or `[ipv6]:port`, found {s:?}"
        ))
    })
}

/// Why a span (and so its path) is not known to be exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Issue {
    /// Events were lost (kernel ring buffer full) while this span was active.
    EventsLost,
    /// The request began before observation started, or its first bytes were
    /// not seen.
    TruncatedStart,
    /// The input ended (or the connection closed) before the reply was seen.
    NoReply,
    /// The thread served more than one request at once (event loop), so its
    /// outbound calls could not be attributed to one of them.
    AmbiguousThread,
    /// The reply was sent by another thread than the one that received the
    /// request (thread-pool hand-off); calls made by the worker are not
    /// attributed.
    HandOff,
    /// Calls were made by a thread of a serving process while it had no
    /// inbound request: they belong to some request, unknown which.
    Unattributed,
    /// A call's callee is observed, but its server span was not found.
    CalleeMissing,
    /// This server span's caller is observed, but the call that led here was
    /// not found.
    CallerMissing,
    /// Stream positions were unknown and the connection was observed
    /// mid-stream, so the two ends could not be aligned.
    Unaligned,
    /// The client/server role of a connection was guessed from who spoke
    /// first, not known from connect/accept or a documented rule.
    RoleGuessed,
    /// Bytes arrived for a message after its span had already been flushed.
    LateBytes,
    /// The path went deeper than the analyzer's depth limit: this span's
    /// calls (and theirs) were cut off.
    DepthLimit,
}

impl Issue {
    pub fn name(self) -> &'static str {
        match self {
            Issue::EventsLost => "events-lost",
            Issue::TruncatedStart => "truncated-start",
            Issue::NoReply => "no-reply",
            Issue::AmbiguousThread => "ambiguous-thread",
            Issue::HandOff => "hand-off",
            Issue::Unattributed => "unattributed",
            Issue::CalleeMissing => "callee-missing",
            Issue::CallerMissing => "caller-missing",
            Issue::Unaligned => "unaligned",
            Issue::RoleGuessed => "role-guessed",
            Issue::LateBytes => "late-bytes",
            Issue::DepthLimit => "depth-limit",
        }
    }
}

/// One request-processing path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Path {
    /// Emission order, from 1; deterministic for a given input.
    pub path: u64,
    /// True when every span of the tree is exact and every link is proven.
    pub complete: bool,
    pub root: Span,
}

impl Path {
    /// Recomputes `complete` from the spans' issues.
    pub fn spans_clean(&self) -> bool {
        let mut clean = true;
        self.root.walk(&mut |s, _| clean &= s.issues.is_empty());
        clean
    }
}
