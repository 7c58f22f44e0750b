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
use std::time::Duration;

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

/// `--otlp-endpoint URL`: POSTs OTLP/HTTP protobuf batches at the end of the
/// run, retrying 429, 5xx and connection errors with exponential back-off.
/// `finish` fails with [`ExportError::Undelivered`] (inside the io::Error)
/// when any batch was not delivered.
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

    /// Sends one body; Ok(()) on 2xx; Err((retryable, message)).
    fn post(&self, agent: &ureq::Agent, body: &[u8]) -> Result<(), (bool, String)> {
        match agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .send(body)
        {
            Ok(resp) => {
                let code = resp.status().as_u16();
                if (200..300).contains(&code) {
                    Ok(())
                } else {
                    let retry = code == 429 || code == 502 || code == 503 || code == 504;
                    let retry = retry || (500..600).contains(&code);
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
}

impl Sink for OtlpHttpSink {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.buf.push(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let clocks = Clocks::from_run(info);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(self.retry.timeout))
            .build()
            .into();
        let paths = std::mem::take(&mut self.buf.paths);
        let mut report = DeliveryReport::default();
        let attempts = self.retry.max_attempts.max(1);
        for (b, n) in batches(&paths, self.batch_spans.max(1)) {
            report.batches += 1;
            report.spans += n;
            let body = encode_request(&build_request(b, &clocks));
            let mut backoff = self.retry.initial_backoff;
            for attempt in 1..=attempts {
                report.requests += 1;
                match self.post(&agent, &body) {
                    Ok(()) => {
                        report.delivered_batches += 1;
                        report.delivered_spans += n;
                        break;
                    }
                    Err((retry, msg)) => {
                        report.last_error = Some(msg);
                        if !retry || attempt == attempts {
                            break;
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(self.retry.max_backoff);
                    }
                }
            }
        }
        self.report = report.clone();
        if report.delivered_spans < report.spans {
            return Err(io::Error::other(ExportError::Undelivered {
                url: self.url.clone(),
                undelivered_spans: report.spans - report.delivered_spans,
                total_spans: report.spans,
                undelivered_batches: report.batches - report.delivered_batches,
                total_batches: report.batches,
                attempts,
                last_error: report.last_error.unwrap_or_default(),
            }));
        }
        Ok(())
    }
}
