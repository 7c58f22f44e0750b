//! Jaeger UI "JSON file" upload format: `{"data":[trace, ...]}`, one trace
//! per path, times in microseconds, one process per (host, pid).
//!
//! A process's `serviceName` is its name (its main thread's comm, as the
//! spans report it), or the comm of its main thread when that thread has a
//! span in the trace; each span carries its own thread's comm as the
//! `thread.name` tag.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Value};
use vpath_core::{Path, SpanKind};

use super::{flatten, hex, operation_name, Buffer, Clocks, FlatPath};
use crate::sink::{RunInfo, Sink};

fn tag_s(key: &str, v: impl Into<String>) -> Value {
    json!({"key": key, "type": "string", "value": v.into()})
}
fn tag_i(key: &str, v: i64) -> Value {
    json!({"key": key, "type": "int64", "value": v})
}
fn tag_b(key: &str, v: bool) -> Value {
    json!({"key": key, "type": "bool", "value": v})
}

/// One path as a Jaeger trace object.
pub fn trace_json(fp: &FlatPath) -> Value {
    let trace_id = hex(&fp.trace_id);
    // (host, pid) -> (process id, service name)
    let mut procs: BTreeMap<(&str, u32), (String, String, u32)> = BTreeMap::new();
    for f in &fp.spans {
        let key = (&*f.place.host, f.place.pid);
        let n = procs.len();
        let e = procs.entry(key).or_insert_with(|| {
            (
                format!("p{}", n + 1),
                f.place.process.to_string(),
                f.place.netns,
            )
        });
        if f.place.tid == f.place.pid && f.span.kind != SpanKind::Remote {
            e.1 = f.place.comm.to_string();
        }
    }
    let mut spans = Vec::with_capacity(fp.spans.len());
    for f in &fp.spans {
        let sp = f.span;
        let mut tags = vec![
            tag_s(
                "span.kind",
                match sp.kind {
                    SpanKind::Server => "server",
                    _ => "client",
                },
            ),
            tag_s(
                "vpath.kind",
                match sp.kind {
                    SpanKind::Server => "server",
                    SpanKind::Origin => "origin",
                    SpanKind::Remote => "remote",
                },
            ),
            tag_i("thread.id", f.place.tid as i64),
            tag_s("thread.name", &*f.place.comm),
            tag_s("vpath.local", vpath_core::event::fmt_endpoint(&sp.local)),
            tag_s("vpath.remote", vpath_core::event::fmt_endpoint(&sp.remote)),
            tag_i("vpath.bytes_in", sp.bytes_in.min(i64::MAX as u64) as i64),
            tag_i("vpath.bytes_out", sp.bytes_out.min(i64::MAX as u64) as i64),
        ];
        if f.parent.is_none() {
            tags.push(tag_b("vpath.complete", fp.path.complete));
            tags.push(tag_i(
                "vpath.path",
                fp.path.path.min(i64::MAX as u64) as i64,
            ));
        }
        if !sp.issues.is_empty() {
            let names: Vec<&str> = sp.issues.iter().map(|x| x.name()).collect();
            tags.push(tag_b("error", true));
            tags.push(tag_s("vpath.issues", names.join(",")));
        }
        let references: Vec<Value> = f
            .parent
            .map(|p| {
                vec![json!({
                    "refType": "CHILD_OF",
                    "traceID": trace_id,
                    "spanID": hex(&fp.spans[p].span_id),
                })]
            })
            .unwrap_or_default();
        let pid = &procs[&(&*f.place.host, f.place.pid)].0;
        spans.push(json!({
            "traceID": trace_id,
            "spanID": hex(&f.span_id),
            "flags": 1,
            "operationName": operation_name(sp),
            "references": references,
            "startTime": f.start_wall_ns / 1000,
            "duration": (f.end_wall_ns - f.start_wall_ns) / 1000,
            "tags": tags,
            "logs": [],
            "processID": pid,
            "warnings": null,
        }));
    }
    let mut processes = serde_json::Map::new();
    for ((host, pid), (id, service, netns)) in &procs {
        processes.insert(
            id.clone(),
            json!({
                "serviceName": service,
                "tags": [
                    tag_s("host.name", *host),
                    tag_i("vpath.netns", *netns as i64),
                    tag_i("process.pid", *pid as i64),
                    tag_s("process.command", service.as_str()),
                ],
            }),
        );
    }
    json!({
        "traceID": trace_id,
        "spans": spans,
        "processes": processes,
        "warnings": null,
    })
}

/// `--format jaeger`: one JSON document for the Jaeger UI's upload.
pub struct JaegerSink<W: Write> {
    out: W,
    buf: Buffer,
}

impl<W: Write> JaegerSink<W> {
    pub fn new(out: W) -> Self {
        JaegerSink {
            out,
            buf: Buffer::default(),
        }
    }
}

/// All paths as one Jaeger document.
pub fn document(paths: &[Path], clocks: &Clocks) -> Value {
    let data: Vec<Value> = paths
        .iter()
        .map(|p| trace_json(&flatten(p, clocks)))
        .collect();
    json!({ "data": data })
}

impl<W: Write> Sink for JaegerSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.buf.push(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let doc = document(&self.buf.paths, &Clocks::from_run(info));
        serde_json::to_writer_pretty(&mut self.out, &doc)?;
        self.out.write_all(b"\n")?;
        self.buf.paths.clear();
        self.out.flush()
    }
}
