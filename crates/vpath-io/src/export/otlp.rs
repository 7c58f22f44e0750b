//! OpenTelemetry: paths as OTLP traces, with the official prost types of the
//! `opentelemetry-proto` crate.
//!
//! Mapping (one trace per path, one OTLP span per vPath span):
//! - a server span is a SERVER span; an origin span (a thread with no inbound
//!   request calling out) is a CLIENT span;
//! - a remote span (a callee that was not observed) is a CLIENT span of its
//!   caller: it carries the caller's resource and thread, with the callee's
//!   endpoint as `server.address`/`server.port`;
//! - a child server span's parent is the span that called it directly (vPath
//!   has no separate client-side span for observed calls);
//! - the resource is one process of one domain: `host.name`,
//!   `vpath.netns`, `process.pid`, `process.command` and `service.name` (the
//!   process's name, else the thread's); `thread.id`/`thread.name` are span
//!   attributes, as in the semantic conventions (a resource per thread would
//!   multiply resources by the thread count);
//! - spans with issues get status ERROR with the issues as message, and
//!   `vpath.issues`; the root carries `vpath.complete`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind as OtlpKind, status::StatusCode, ResourceSpans, ScopeSpans, Span as OtlpSpan,
    Status,
};
use prost::Message;
use vpath_core::{Path, SpanKind};

use super::{flatten, operation_name, Buffer, Clocks, FlatPath, FlatSpan, Place};
use crate::sink::{RunInfo, Sink};

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}
fn i(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

fn resource(p: &Place) -> Resource {
    Resource {
        attributes: vec![
            s("service.name", &*p.process),
            s("host.name", &*p.host),
            i("vpath.netns", p.netns as i64),
            i("process.pid", p.pid as i64),
            s("process.command", &*p.process),
        ],
        ..Default::default()
    }
}

fn otlp_span(fp: &FlatPath, f: &FlatSpan) -> OtlpSpan {
    let sp = f.span;
    let (kind, server, client) = match sp.kind {
        SpanKind::Server => (OtlpKind::Server, sp.local, sp.remote),
        SpanKind::Origin => (OtlpKind::Client, sp.remote, sp.local),
        SpanKind::Remote => (OtlpKind::Client, sp.local, sp.remote),
    };
    let peer = match sp.kind {
        SpanKind::Server => client,
        _ => server,
    };
    let mut attrs = vec![
        s("server.address", server.ip().to_string()),
        i("server.port", server.port() as i64),
        s("client.address", client.ip().to_string()),
        i("client.port", client.port() as i64),
        s("network.peer.address", peer.ip().to_string()),
        i("network.peer.port", peer.port() as i64),
        s("network.transport", "tcp"),
        i("thread.id", f.place.tid as i64),
        s("thread.name", &*f.place.comm),
        s(
            "vpath.kind",
            match sp.kind {
                SpanKind::Server => "server",
                SpanKind::Origin => "origin",
                SpanKind::Remote => "remote",
            },
        ),
        i("vpath.bytes_in", sp.bytes_in.min(i64::MAX as u64) as i64),
        i("vpath.bytes_out", sp.bytes_out.min(i64::MAX as u64) as i64),
    ];
    // What the protocol reading gave: OpenTelemetry semantic-convention keys
    // (http.*, db.*, url.*) where they exist; integers where the conventions
    // want them.
    for (k, v) in &sp.attrs {
        let int_key = k.ends_with("status_code") && k.starts_with("http.")
            || k.ends_with("returned_rows")
            || k.ends_with(".port");
        match v.parse::<i64>() {
            Ok(n) if int_key => attrs.push(i(k, n)),
            _ => attrs.push(s(k, v.as_str())),
        }
    }
    if f.parent.is_none() {
        attrs.push(kv("vpath.complete", Value::BoolValue(fp.path.complete)));
        attrs.push(i("vpath.path", fp.path.path.min(i64::MAX as u64) as i64));
    }
    let mut status = None;
    if !sp.issues.is_empty() {
        let names: Vec<&str> = sp.issues.iter().map(|x| x.name()).collect();
        attrs.push(kv(
            "vpath.issues",
            Value::ArrayValue(ArrayValue {
                values: names
                    .iter()
                    .map(|n| AnyValue {
                        value: Some(Value::StringValue(n.to_string())),
                    })
                    .collect(),
            }),
        ));
        status = Some(Status {
            message: format!("vpath: not exact: {}", names.join(", ")),
            code: StatusCode::Error as i32,
        });
    }
    OtlpSpan {
        trace_id: fp.trace_id.to_vec(),
        span_id: f.span_id.to_vec(),
        parent_span_id: f
            .parent
            .map(|p| fp.spans[p].span_id.to_vec())
            .unwrap_or_default(),
        name: operation_name(sp),
        kind: kind as i32,
        start_time_unix_nano: f.start_wall_ns,
        end_time_unix_nano: f.end_wall_ns,
        attributes: attrs,
        status,
        ..Default::default()
    }
}

/// One export request holding all spans of `paths`, grouped by resource
/// (host, netns, pid, comm) in order of first appearance.
pub fn build_request(paths: &[Path], clocks: &Clocks) -> ExportTraceServiceRequest {
    let mut groups: Vec<(Place, Vec<OtlpSpan>)> = Vec::new();
    let mut index: rustc_hash::FxHashMap<Place, usize> = Default::default();
    for p in paths {
        let fp = flatten(p, clocks);
        for f in &fp.spans {
            // One resource per process: its threads' spans share it.
            let key = Place {
                tid: 0,
                comm: f.place.process.clone(),
                ..f.place.clone()
            };
            let g = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(otlp_span(&fp, f));
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(place, spans)| ResourceSpans {
                resource: Some(resource(&place)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "vpath".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// The protobuf bytes of a request (what OTLP/HTTP sends).
pub fn encode_request(r: &ExportTraceServiceRequest) -> Vec<u8> {
    r.encode_to_vec()
}

/// Decodes what [`encode_request`] wrote (for checks of what was sent).
pub fn decode_request(bytes: &[u8]) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
    ExportTraceServiceRequest::decode(bytes)
}

/// Splits paths into batches of about `max_spans` spans, never splitting a
/// path (a path larger than `max_spans` is a batch of its own).
fn batches(paths: &[Path], max_spans: usize) -> Vec<(&[Path], usize)> {
    let mut out = Vec::new();
    let (mut start, mut n) = (0, 0);
    for (k, p) in paths.iter().enumerate() {
        let c = p.root.count();
        if n > 0 && n + c > max_spans {
            out.push((&paths[start..k], n));
            start = k;
            n = 0;
        }
        n += c;
    }
    if n > 0 {
        out.push((&paths[start..], n));
    }
    out
}

/// `--format otlp-json`: OTLP/JSON, one `ExportTraceServiceRequest` per line
/// (the OTLP file-exporter layout); each holds up to `batch_spans` spans.
pub struct OtlpJsonSink<W: Write> {
    out: W,
    buf: Buffer,
    pub batch_spans: usize,
}

impl<W: Write> OtlpJsonSink<W> {
    pub fn new(out: W) -> Self {
        OtlpJsonSink {
            out,
            buf: Buffer::default(),
            batch_spans: 4096,
        }
    }
}

impl<W: Write> Sink for OtlpJsonSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.buf.push(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let clocks = Clocks::from_run(info);
        for (b, _) in batches(&self.buf.paths, self.batch_spans.max(1)) {
            serde_json::to_writer(&mut self.out, &build_request(b, &clocks))?;
            self.out.write_all(b"\n")?;
        }
        self.buf.paths.clear();
        self.out.flush()
    }
}

/// Why an OTLP/HTTP export did not (fully) succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTLP endpoint {url:?}: {reason}; expected `http://host[:port][/path]` (port 4318 and path /v1/traces by default; https is not supported by this build)")]
    BadEndpoint { url: String, reason: String },
    #[error("OTLP/HTTP export to {url}: {undelivered_spans} of {total_spans} spans ({undelivered_batches} of {total_batches} batches) not delivered (up to {attempts} tries each); last error: {last_error}")]
    Undelivered {
        url: String,
        undelivered_spans: usize,
        total_spans: usize,
        undelivered_batches: usize,
        total_batches: usize,
        attempts: u32,
        last_error: String,
    },
}

/// Bounded retries with exponential back-off.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per batch, the first included (at least 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What an OTLP/HTTP export delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub batches: usize,
    pub spans: usize,
    pub delivered_batches: usize,
    pub delivered_spans: usize,
    /// HTTP requests made, retries included.
    pub requests: usize,
    pub last_error: Option<String>,
    /// Batches (and their spans) never sent because the sender's queue was
    /// full: the collector was slower than the capture (streaming only).
    pub dropped_batches: usize,
    pub dropped_spans: usize,
    /// Batches (and spans) still queued when the sender was told to stop
    /// waiting for the collector.
    pub abandoned_batches: usize,
    pub abandoned_spans: usize,
}

impl DeliveryReport {
    /// Everything that was handed to the sender was delivered.
    pub fn complete(&self) -> bool {
        self.delivered_spans == self.spans
            && self.dropped_batches == 0
            && self.abandoned_batches == 0
    }

    /// One line for the end of a run.
    pub fn summary(&self, url: &str) -> String {
        let mut s = format!(
            "OTLP/HTTP to {url}: {} of {} spans delivered in {} of {} batches ({} requests)",
            self.delivered_spans,
            self.spans + self.dropped_spans,
            self.delivered_batches,
            self.batches + self.dropped_batches,
            self.requests
        );
        if self.dropped_batches > 0 {
            s.push_str(&format!(
                "; {} batches ({} spans) dropped: the send queue was full (the collector was slower than the capture)",
                self.dropped_batches, self.dropped_spans
            ));
        }
        if self.abandoned_batches > 0 {
            s.push_str(&format!(
                "; {} batches ({} spans) abandoned at exit",
                self.abandoned_batches, self.abandoned_spans
            ));
        }
        if let (false, Some(e)) = (self.complete(), &self.last_error) {
            s.push_str(&format!("; last error: {e}"));
        }
        s
    }

    fn error(&self, url: &str, attempts: u32) -> ExportError {
        let lost_batches = self.batches - self.delivered_batches + self.dropped_batches;
        ExportError::Undelivered {
            url: url.to_string(),
            undelivered_spans: self.spans - self.delivered_spans + self.dropped_spans,
            total_spans: self.spans + self.dropped_spans,
            undelivered_batches: lost_batches,
            total_batches: self.batches + self.dropped_batches,
            attempts,
            last_error: match (&self.last_error, self.dropped_batches) {
                (Some(e), 0) => e.clone(),
                (Some(e), d) => format!("{e}; {d} batches dropped (send queue full)"),
                (None, d) => format!("{d} batches dropped (send queue full)"),
            },
        }
    }
}

/// Normalizes an endpoint: `http://host` -> `http://host:4318/v1/traces`.
pub fn normalize_endpoint(url: &str) -> Result<String, ExportError> {
    let bad = |reason: &str| ExportError::BadEndpoint {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("the scheme is not http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(k) => (&rest[..k], &rest[k..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    if has_port {
        let port = authority.rsplit(':').next().unwrap_or("");
        if port.parse::<u16>().is_err() {
            return Err(bad("the port is not a number from 0 to 65535"));
        }
    }
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:4318")
    };
    let path = if path.is_empty() || path == "/" {
        "/v1/traces"
    } else {
        path
    };
    Ok(format!("http://{authority}{path}"))
}

fn agent(retry: &RetryPolicy) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(retry.timeout))
        .build()
        .into()
}

/// Sends one body; Ok(()) on 2xx; Err((retryable, message)).
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(), (bool, String)> {
    match agent
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .send(body)
    {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if (200..300).contains(&code) {
                Ok(())
            } else {
                let retry = code == 429 || (500..600).contains(&code);
                Err((retry, format!("HTTP status {code}")))
            }
        }
        Err(ureq::Error::Io(e)) => Err((true, format!("connection error: {e}"))),
        Err(ureq::Error::Timeout(t)) => Err((true, format!("timeout: {t}"))),
        Err(ureq::Error::ConnectionFailed) => Err((true, "connection failed".into())),
        Err(ureq::Error::HostNotFound) => Err((true, "host not found".into())),
        Err(e) => Err((false, e.to_string())),
    }
}

/// Sleeps `d`, in steps, unless `abandon` is set; false if it was.
fn nap(d: Duration, abandon: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if abandon.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// The batching OTLP/HTTP sender shared by `analyze --otlp-endpoint`
/// ([`OtlpHttpSink`]) and `live --otlp-endpoint` ([`OtlpStream`]): a thread
/// of its own that turns batches of paths into OTLP/HTTP protobuf requests
/// (at most `batch_spans` spans each, a path never split) and POSTs them,
/// retrying 429, 5xx and connection errors with exponential back-off.
///
/// The queue to the thread is bounded. [`send`](Self::send) waits for room
/// (a whole run handed over at once); [`try_send`](Self::try_send) never
/// waits: when the queue is full the batch is dropped and counted
/// ([`DeliveryReport::dropped_batches`]), so a slow or absent collector
/// never stalls a capture loop.
pub struct BatchSender {
    url: String,
    attempts: u32,
    tx: Option<mpsc::SyncSender<Vec<Path>>>,
    thread: Option<std::thread::JoinHandle<DeliveryReport>>,
    abandon: Arc<AtomicBool>,
    dropped_batches: usize,
    dropped_spans: usize,
}

impl BatchSender {
    /// Starts the sender thread. `url` is normalized ([`normalize_endpoint`]);
    /// `clocks` take each host's timestamps to wall-clock time; `queue` is
    /// how many batches may wait (at least 1).
    pub fn start(
        url: &str,
        clocks: Clocks,
        retry: RetryPolicy,
        batch_spans: usize,
        queue: usize,
    ) -> Result<BatchSender, ExportError> {
        let url = normalize_endpoint(url)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<Path>>(queue.max(1));
        let abandon = Arc::new(AtomicBool::new(false));
        let attempts = retry.max_attempts.max(1);
        let (u, ab) = (url.clone(), abandon.clone());
        let thread = std::thread::Builder::new()
            .name("vpath-otlp".into())
            .spawn(move || {
                let agent = agent(&retry);
                let mut report = DeliveryReport::default();
                for paths in rx {
                    for (b, n) in batches(&paths, batch_spans.max(1)) {
                        report.batches += 1;
                        report.spans += n;
                        if ab.load(Ordering::Relaxed) {
                            report.abandoned_batches += 1;
                            report.abandoned_spans += n;
                            continue;
                        }
                        let body = encode_request(&build_request(b, &clocks));
                        let mut backoff = retry.initial_backoff;
                        for attempt in 1..=attempts {
                            report.requests += 1;
                            match post(&agent, &u, &body) {
                                Ok(()) => {
                                    report.delivered_batches += 1;
                                    report.delivered_spans += n;
                                    break;
                                }
                                Err((again, msg)) => {
                                    report.last_error = Some(msg);
                                    if !again || attempt == attempts || !nap(backoff, &ab) {
                                        break;
                                    }
                                    backoff = (backoff * 2).min(retry.max_backoff);
                                }
                            }
                        }
                    }
                }
                report
            })
            .map_err(|e| ExportError::BadEndpoint {
                url: url.clone(),
                reason: format!("cannot start the sender thread: {e}"),
            })?;
        Ok(BatchSender {
            url,
            attempts,
            tx: Some(tx),
            thread: Some(thread),
            abandon,
            dropped_batches: 0,
            dropped_spans: 0,
        })
    }

    /// The normalized endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Hands `paths` to the sender, waiting for room in the queue.
    pub fn send(&mut self, paths: Vec<Path>) {
        let spans: usize = paths.iter().map(|p| p.root.count()).sum();
        if let Some(tx) = &self.tx {
            if tx.send(paths).is_err() {
                self.dropped_batches += 1;
                self.dropped_spans += spans;
            }
        }
    }

    /// Hands `paths` to the sender if the queue has room; otherwise drops
    /// them and counts them. Never waits. True if queued.
    pub fn try_send(&mut self, paths: Vec<Path>) -> bool {
        let spans: usize = paths.iter().map(|p| p.root.count()).sum();
        let queued = match &self.tx {
            Some(tx) => tx.try_send(paths).is_ok(),
            None => false,
        };
        if !queued {
            self.dropped_batches += 1;
            self.dropped_spans += spans;
        }
        queued
    }

    /// Lets the queue drain, waiting at most `wait` (None: until every
    /// batch has had all its tries), then stops the thread; what was still
    /// queued is counted as abandoned. The report covers the whole run.
    pub fn finish(mut self, wait: Option<Duration>) -> DeliveryReport {
        drop(self.tx.take());
        let mut report = match self.thread.take() {
            Some(t) => {
                if let Some(w) = wait {
                    let end = Instant::now() + w;
                    while !t.is_finished() && Instant::now() < end {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    self.abandon.store(true, Ordering::Relaxed);
                }
                t.join().unwrap_or_else(|_| DeliveryReport {
                    last_error: Some("the OTLP sender thread panicked".into()),
                    ..Default::default()
                })
            }
            None => DeliveryReport::default(),
        };
        report.dropped_batches += self.dropped_batches;
        report.dropped_spans += self.dropped_spans;
        report
    }

    /// [`finish`](Self::finish), then an error unless everything was
    /// delivered.
    pub fn finish_checked(
        self,
        wait: Option<Duration>,
    ) -> Result<DeliveryReport, Box<Undelivered>> {
        let (url, attempts) = (self.url.clone(), self.attempts);
        let report = self.finish(wait);
        if report.complete() {
            Ok(report)
        } else {
            let error = report.error(&url, attempts);
            Err(Box::new(Undelivered { report, error }))
        }
    }
}

/// A streamed or batched export that did not deliver everything: what it
/// did deliver, and the error that says what was lost.
#[derive(Debug)]
pub struct Undelivered {
    pub report: DeliveryReport,
    pub error: ExportError,
}

impl Drop for BatchSender {
    fn drop(&mut self) {
        // Dropped without finish: do not wait for the collector.
        self.abandon.store(true, Ordering::Relaxed);
        drop(self.tx.take());
    }
}

/// `--otlp-endpoint URL` for `analyze`: the run's paths, sent at its end
/// (only then are the sources' clock offsets known) through a
/// [`BatchSender`]. `finish` fails with [`ExportError::Undelivered`] (inside
/// the io::Error) when any batch was not delivered.
pub struct OtlpHttpSink {
    url: String,
    buf: Buffer,
    pub batch_spans: usize,
    pub retry: RetryPolicy,
    report: DeliveryReport,
}

impl OtlpHttpSink {
    pub fn new(endpoint: &str) -> Result<Self, ExportError> {
        Ok(OtlpHttpSink {
            url: normalize_endpoint(endpoint)?,
            buf: Buffer::default(),
            batch_spans: 2048,
            retry: RetryPolicy::default(),
            report: DeliveryReport::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn report(&self) -> &DeliveryReport {
        &self.report
    }
}

impl Sink for OtlpHttpSink {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.buf.push(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let mut sender = BatchSender::start(
            &self.url,
            Clocks::from_run(info),
            self.retry.clone(),
            self.batch_spans,
            1,
        )
        .map_err(io::Error::other)?;
        sender.send(std::mem::take(&mut self.buf.paths));
        match sender.finish_checked(None) {
            Ok(r) => {
                self.report = r;
                Ok(())
            }
            Err(u) => {
                let Undelivered { report, error } = *u;
                self.report = report;
                Err(io::Error::other(error))
            }
        }
    }
}

/// `--otlp-endpoint URL` for `live`: paths as they complete, in batches of
/// about `max_spans` spans or every `interval`, whichever comes first,
/// through a [`BatchSender`] that never blocks the caller (full queue:
/// batches dropped and counted).
pub struct OtlpStream {
    sender: BatchSender,
    buf: Vec<Path>,
    spans: usize,
    last: Instant,
    pub max_spans: usize,
    pub interval: Duration,
}

impl OtlpStream {
    /// Batches of 512 spans or 1 s, 64 batches queued at most.
    pub fn new(endpoint: &str, clocks: Clocks) -> Result<OtlpStream, ExportError> {
        Self::with(
            endpoint,
            clocks,
            RetryPolicy::default(),
            512,
            Duration::from_secs(1),
            64,
        )
    }

    pub fn with(
        endpoint: &str,
        clocks: Clocks,
        retry: RetryPolicy,
        max_spans: usize,
        interval: Duration,
        queue: usize,
    ) -> Result<OtlpStream, ExportError> {
        Ok(OtlpStream {
            sender: BatchSender::start(endpoint, clocks, retry, max_spans, queue)?,
            buf: Vec::new(),
            spans: 0,
            last: Instant::now(),
            max_spans,
            interval,
        })
    }

    pub fn url(&self) -> &str {
        self.sender.url()
    }

    /// Adds a completed path; sends the batch when it is full.
    pub fn path(&mut self, p: &Path) {
        self.spans += p.root.count();
        self.buf.push(p.clone());
        if self.spans >= self.max_spans {
            self.flush();
        }
    }

    /// Sends what is buffered if `interval` has passed since the last send.
    pub fn tick(&mut self) {
        if !self.buf.is_empty() && self.last.elapsed() >= self.interval {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.last = Instant::now();
        self.spans = 0;
        if !self.buf.is_empty() {
            self.sender.try_send(std::mem::take(&mut self.buf));
        }
    }

    /// Sends the rest (waiting for room), lets the queue drain for at most
    /// `wait`, and reports; an error unless everything was delivered.
    pub fn finish(mut self, wait: Duration) -> Result<DeliveryReport, Box<Undelivered>> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.sender.send(rest);
        }
        self.sender.finish_checked(Some(wait))
    }
}
