//! Chrome trace-event JSON, as Perfetto and chrome://tracing read it.
//!
//! - one process (pid 1, 2, ...) per host/domain (host, netns), named by a
//!   `process_name` metadata event; one track per thread (the real tid),
//!   named `comm[pid/tid]` by `thread_name`;
//! - each span is a complete event (`ph:"X"`) on its thread; a remote span
//!   sits on its caller's thread, inside the caller's slice;
//! - each parent->child link is a flow (`ph:"s"` on the parent's thread,
//!   `ph:"f"` with `bp:"e"` on the child's), id = link number;
//! - where spans on one thread overlap without nesting (an event-loop
//!   thread serving several requests at once), those spans become async
//!   events (`ph:"b"`/`"e"`, one id per span) so thread slices stay nested.
//!   Flows bind to thread slices only, so a flow to an async span ends at
//!   whatever slice encloses it.
//!
//! `ts`/`dur` are microseconds since the earliest span start of the run
//! (`otherData.origin_unix_ns` holds that origin), which keeps nanosecond
//! digits exact in a JSON double.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Value};
use vpath_core::Path;

use super::{flatten, hex, operation_name, Buffer, Clocks, FlatPath};
use crate::sink::{RunInfo, Sink};

/// A span on a thread: (start, end, path index, span index).
type OnThread = (u64, u64, usize, usize);

fn us(ns: u64, origin: u64) -> f64 {
    ns.saturating_sub(origin) as f64 / 1000.0
}

/// The whole trace document for `paths`.
pub fn document(paths: &[Path], clocks: &Clocks) -> Value {
    let flats: Vec<FlatPath> = paths.iter().map(|p| flatten(p, clocks)).collect();
    let origin = flats
        .iter()
        .flat_map(|f| f.spans.iter().map(|s| s.start_wall_ns))
        .min()
        .unwrap_or(0);
    // (host, netns) -> chrome pid; (chrome pid, tid) -> thread name.
    let mut domains: BTreeMap<(String, u32), u32> = BTreeMap::new();
    for fp in &flats {
        for f in &fp.spans {
            let key = (f.place.host.to_string(), f.place.netns);
            let n = domains.len() as u32;
            domains.entry(key).or_insert(n + 1);
        }
    }
    let mut threads: BTreeMap<(u32, u32), String> = BTreeMap::new();
    // Per thread: (start, end, path k, span k) of every span.
    let mut per_thread: BTreeMap<(u32, u32), Vec<OnThread>> = BTreeMap::new();
    for (k, fp) in flats.iter().enumerate() {
        for f in &fp.spans {
            let pid = domains[&(f.place.host.to_string(), f.place.netns)];
            threads
                .entry((pid, f.place.tid))
                .or_insert_with(|| format!("{}[{}/{}]", f.place.comm, f.place.pid, f.place.tid));
            per_thread.entry((pid, f.place.tid)).or_default().push((
                f.start_wall_ns,
                f.end_wall_ns,
                k,
                f.index,
            ));
        }
    }
    // Which spans must be async: those that would break nesting.
    let mut async_spans: rustc_hash::FxHashSet<(usize, usize)> = Default::default();
    for list in per_thread.values_mut() {
        list.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut stack: Vec<u64> = Vec::new(); // ends of open slices
        for &(s, e, k, i) in list.iter() {
            while stack.last().is_some_and(|&end| end <= s) {
                stack.pop();
            }
            match stack.last() {
                Some(&end) if e > end => {
                    async_spans.insert((k, i));
                }
                _ => stack.push(e),
            }
        }
    }
    let mut ev: Vec<Value> = Vec::new();
    for ((host, netns), pid) in &domains {
        ev.push(
            json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
            "args": {"name": format!("{host} netns:{netns}")}}),
        );
    }
    for ((pid, tid), name) in &threads {
        ev.push(
            json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
            "args": {"name": name}}),
        );
    }
    let mut flow_id = 0u64;
    for (k, fp) in flats.iter().enumerate() {
        let trace = hex(&fp.trace_id);
        for f in &fp.spans {
            let pid = domains[&(f.place.host.to_string(), f.place.netns)];
            let sp = f.span;
            let mut args = json!({
                "path": fp.path.path,
                "trace_id": trace,
                "span_id": hex(&f.span_id),
                "kind": format!("{:?}", sp.kind).to_lowercase(),
                "local": vpath_core::event::fmt_endpoint(&sp.local),
                "remote": vpath_core::event::fmt_endpoint(&sp.remote),
                "bytes_in": sp.bytes_in,
                "bytes_out": sp.bytes_out,
            });
            if !sp.issues.is_empty() {
                let names: Vec<&str> = sp.issues.iter().map(|x| x.name()).collect();
                args["issues"] = json!(names);
            }
            if f.parent.is_none() {
                args["complete"] = json!(fp.path.complete);
            }
            let name = operation_name(sp);
            let ts = us(f.start_wall_ns, origin);
            if async_spans.contains(&(k, f.index)) {
                let id = format!("0x{}", hex(&f.span_id));
                ev.push(json!({"ph": "b", "cat": "vpath", "name": name, "id": id,
                    "pid": pid, "tid": f.place.tid, "ts": ts, "args": args}));
                ev.push(json!({"ph": "e", "cat": "vpath", "name": name, "id": id,
                    "pid": pid, "tid": f.place.tid, "ts": us(f.end_wall_ns, origin)}));
            } else {
                ev.push(json!({"ph": "X", "cat": "vpath", "name": name, "pid": pid,
                    "tid": f.place.tid, "ts": ts,
                    "dur": (f.end_wall_ns - f.start_wall_ns) as f64 / 1000.0, "args": args}));
            }
            if let Some(p) = f.parent {
                let par = &fp.spans[p];
                let ppid = domains[&(par.place.host.to_string(), par.place.netns)];
                flow_id += 1;
                // The flow leaves the parent's slice at the child's start,
                // clamped into the parent (clocks of two hosts may disagree).
                let from = f
                    .start_wall_ns
                    .clamp(par.start_wall_ns, par.end_wall_ns.max(par.start_wall_ns));
                ev.push(
                    json!({"ph": "s", "cat": "vpath.link", "name": "call", "id": flow_id,
                    "pid": ppid, "tid": par.place.tid, "ts": us(from, origin)}),
                );
                ev.push(
                    json!({"ph": "f", "bp": "e", "cat": "vpath.link", "name": "call",
                    "id": flow_id, "pid": pid, "tid": f.place.tid, "ts": ts}),
                );
            }
        }
    }
    json!({
        "traceEvents": ev,
        "displayTimeUnit": "ns",
        "otherData": {"origin_unix_ns": origin.to_string(), "generator": "vpath"},
    })
}

/// `--format perfetto`.
pub struct PerfettoSink<W: Write> {
    out: W,
    buf: Buffer,
}

impl<W: Write> PerfettoSink<W> {
    pub fn new(out: W) -> Self {
        PerfettoSink {
            out,
            buf: Buffer::default(),
        }
    }
}

impl<W: Write> Sink for PerfettoSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.buf.push(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let doc = document(&self.buf.paths, &Clocks::from_run(info));
        // One event per line: diffable, and still one JSON document.
        self.out.write_all(b"{\"traceEvents\":[\n")?;
        if let Some(evs) = doc["traceEvents"].as_array() {
            for (k, e) in evs.iter().enumerate() {
                serde_json::to_writer(&mut self.out, e)?;
                self.out
                    .write_all(if k + 1 < evs.len() { b",\n" } else { b"\n" })?;
            }
        }
        writeln!(
            self.out,
            "],\"displayTimeUnit\":\"ns\",\"otherData\":{}}}",
            doc["otherData"]
        )?;
        self.buf.paths.clear();
        self.out.flush()
    }
}
