//! Exports: golden files for Jaeger, Perfetto, DOT and Mermaid from the
//! strace fixture of three tiers, link checks against the JSONL contract,
//! OTLP decoded back (with the Rust prost types and with Python's official
//! `opentelemetry-proto`), and OTLP/HTTP delivery against a tiny receiver.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;
use vpath_core::{Config, Issue, Path, Span, SpanKind};
use vpath_io::export::otlp::{build_request, normalize_endpoint};
use vpath_io::export::{encode_request, Clocks, ExportError, RetryPolicy};
use vpath_io::{
    analyze, DotSink, JaegerSink, MermaidSink, OtlpHttpSink, OtlpJsonSink, PerfettoSink, RunInfo,
    Sink,
};

struct Collect(Vec<Path>);

impl Sink for Collect {
    fn path(&mut self, p: &Path) -> std::io::Result<()> {
        self.0.push(p.clone());
        Ok(())
    }
    fn finish(&mut self, _info: &RunInfo) -> std::io::Result<()> {
        Ok(())
    }
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture's paths and run info, through the real source and loop.
fn fixture() -> (Vec<Path>, RunInfo) {
    let f = manifest().join("../vpath-import/tests/data/strace/tiers-v4.strace");
    let src = vpath_io::open(&f).expect("open the strace fixture");
    let mut c = Collect(Vec::new());
    let info = analyze(vec![src], Config::default(), &mut c, &mut |e| {
        panic!("source error: {e}")
    })
    .unwrap();
    assert!(c.0.len() >= 3, "the fixture has several paths");
    assert!(
        c.0.iter().any(|p| p.root.count() >= 3),
        "and multi-tier ones"
    );
    (c.0, info)
}

fn render(make: impl FnOnce(&mut Vec<u8>) -> Box<dyn Sink + '_>) -> String {
    let (paths, info) = fixture();
    let mut out = Vec::new();
    {
        let mut s = make(&mut out);
        for p in &paths {
            s.path(p).unwrap();
        }
        s.finish(&info).unwrap();
    }
    String::from_utf8(out).unwrap()
}

fn golden(name: &str, got: &str) {
    let f = manifest().join("tests/data/export").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", f.display()));
    if want != got {
        let line = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(got.lines().count()));
        panic!(
            "{} differs from the output at line {} (UPDATE_GOLDEN=1 to accept)\nwant: {:?}\ngot:  {:?}",
            f.display(),
            line + 1,
            want.lines().nth(line),
            got.lines().nth(line)
        );
    }
}

/// A span's identity as the JSONL contract shows it: (local, remote, start us).
type Id = (String, String, u64);

/// Every parent -> child pair of the paths, read from their JSONL form (not
/// from the exporters' flattening).
fn jsonl_links(paths: &[Path]) -> Vec<(u64, Id, Id)> {
    fn id(v: &Value) -> Id {
        (
            v["local"].as_str().unwrap().to_string(),
            v["remote"].as_str().unwrap().to_string(),
            v["start_ns"].as_u64().unwrap() / 1000,
        )
    }
    fn go(path: u64, v: &Value, out: &mut Vec<(u64, Id, Id)>) {
        for c in v["children"].as_array().unwrap() {
            out.push((path, id(v), id(c)));
            go(path, c, out);
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let line = serde_json::to_string(p).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        go(v["path"].as_u64().unwrap(), &v["root"], &mut out);
    }
    out.sort();
    out
}

#[test]
fn jaeger_golden_and_every_link_is_a_reference() {
    let (paths, _) = fixture();
    let got = render(|w| Box::new(JaegerSink::new(w)));
    golden("tiers-v4.jaeger.json", &got);
    let doc: Value = serde_json::from_str(&got).unwrap();
    let data = doc["data"].as_array().unwrap();
    assert_eq!(data.len(), paths.len(), "one trace per path");
    let mut links = Vec::new();
    for t in data {
        let spans = t["spans"].as_array().unwrap();
        let tag = |s: &Value, k: &str| -> Value {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == k)
                .map(|t| t["value"].clone())
                .unwrap_or(Value::Null)
        };
        let by_id: BTreeMap<&str, &Value> = spans
            .iter()
            .map(|s| (s["spanID"].as_str().unwrap(), s))
            .collect();
        assert_eq!(by_id.len(), spans.len(), "span ids are unique");
        let ident = |s: &Value| -> Id {
            (
                tag(s, "vpath.local").as_str().unwrap().to_string(),
                tag(s, "vpath.remote").as_str().unwrap().to_string(),
                s["startTime"].as_u64().unwrap(),
            )
        };
        let root = spans
            .iter()
            .find(|s| s["references"].as_array().unwrap().is_empty())
            .expect("a root");
        let path = tag(root, "vpath.path").as_u64().unwrap();
        for s in spans {
            assert!(t["processes"][s["processID"].as_str().unwrap()].is_object());
            assert_eq!(s["traceID"], t["traceID"]);
            for r in s["references"].as_array().unwrap() {
                assert_eq!(r["refType"], "CHILD_OF");
                let parent = by_id[r["spanID"].as_str().unwrap()];
                links.push((path, ident(parent), ident(s)));
            }
        }
    }
    links.sort();
    assert_eq!(links, jsonl_links(&paths));
}

#[test]
fn perfetto_golden_nesting_and_every_link_is_a_flow() {
    let (paths, _) = fixture();
    let got = render(|w| Box::new(PerfettoSink::new(w)));
    golden("tiers-v4.perfetto.json", &got);
    let doc: Value = serde_json::from_str(&got).unwrap();
    let ev = doc["traceEvents"].as_array().unwrap();
    let origin: u64 = doc["otherData"]["origin_unix_ns"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Slices by thread, with their identity.
    type Slices = BTreeMap<(u64, u64), Vec<(f64, f64, Id)>>;
    let mut slices: Slices = BTreeMap::new();
    for e in ev.iter().filter(|e| e["ph"] == "X") {
        let ts = e["ts"].as_f64().unwrap();
        let start_us = (origin as f64 / 1000.0 + ts).round() as u64;
        let id = (
            e["args"]["local"].as_str().unwrap().to_string(),
            e["args"]["remote"].as_str().unwrap().to_string(),
            start_us,
        );
        slices
            .entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
            .or_default()
            .push((ts, ts + e["dur"].as_f64().unwrap(), id));
    }
    assert!(
        ev.iter()
            .any(|e| e["ph"] == "M" && e["name"] == "process_name"),
        "process names"
    );
    assert!(ev
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "thread_name"));
    // Thread slices nest.
    for (k, list) in &mut slices {
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for (s, e, _) in list.iter() {
            while stack.last().is_some_and(|&end| end <= *s) {
                stack.pop();
            }
            if let Some(&end) = stack.last() {
                assert!(*e <= end + 1e-9, "slices on {k:?} overlap without nesting");
            }
            stack.push(*e);
        }
    }
    // The innermost slice of a thread at a time.
    let at = |pid: u64, tid: u64, ts: f64, starting: bool| -> Option<Id> {
        slices
            .get(&(pid, tid))?
            .iter()
            .rev()
            .find_map(|(s, e, id)| {
                let hit = if starting {
                    (s - ts).abs() < 1e-6
                } else {
                    *s <= ts + 1e-6 && ts <= e + 1e-6
                };
                hit.then(|| id.clone())
            })
    };
    let mut starts: BTreeMap<u64, &Value> = BTreeMap::new();
    let mut flows = BTreeSet::new();
    for e in ev {
        match e["ph"].as_str() {
            Some("s") => {
                starts.insert(e["id"].as_u64().unwrap(), e);
            }
            Some("f") => {
                assert_eq!(e["bp"], "e");
                let s = starts[&e["id"].as_u64().unwrap()];
                let child = at(
                    e["pid"].as_u64().unwrap(),
                    e["tid"].as_u64().unwrap(),
                    e["ts"].as_f64().unwrap(),
                    true,
                )
                .expect("the flow ends on a slice");
                let parent = at(
                    s["pid"].as_u64().unwrap(),
                    s["tid"].as_u64().unwrap(),
                    s["ts"].as_f64().unwrap(),
                    false,
                )
                .expect("the flow starts in a slice");
                flows.insert((parent, child));
            }
            _ => {}
        }
    }
    for (_, parent, child) in jsonl_links(&paths) {
        // The innermost slice at the flow's start may be the child itself
        // when the child is a remote call on the caller's thread.
        assert!(
            flows.contains(&(parent.clone(), child.clone()))
                || flows.contains(&(child.clone(), child.clone())),
            "no flow for {parent:?} -> {child:?}"
        );
    }
    assert_eq!(
        ev.iter().filter(|e| e["ph"] == "f").count(),
        jsonl_links(&paths).len()
    );
}

fn span(kind: SpanKind, tid: u32, start: u64, end: u64, port: u16) -> Span {
    Span {
        kind,
        host: Some("h".into()),
        pid: Some(10),
        tid: Some(tid),
        comm: Some("loop".into()),
        process: None,
        netns: Some(1),
        local: format!("10.0.0.1:{port}").parse().unwrap(),
        remote: "10.0.0.9:5000".parse().unwrap(),
        start_ns: start,
        end_ns: end,
        bytes_in: 1,
        bytes_out: 2,
        issues: vec![],
        children: vec![],
        protocol: None,
        name: None,
        attrs: Default::default(),
    }
}

#[test]
fn perfetto_overlapping_spans_on_one_thread_become_async() {
    // An event loop: request 1 runs 0..100 us, request 2 runs 50..150 us.
    let mut a = span(SpanKind::Server, 7, 1_000_000, 1_100_000, 80);
    a.issues.push(Issue::AmbiguousThread);
    let b = span(SpanKind::Server, 7, 1_050_000, 1_150_000, 80);
    let paths = vec![
        Path {
            path: 1,
            complete: false,
            root: a,
        },
        Path {
            path: 2,
            complete: true,
            root: b,
        },
    ];
    let doc = vpath_io::export::perfetto::document(&paths, &Clocks::default());
    let ev = doc["traceEvents"].as_array().unwrap();
    let ph = |p: &str| ev.iter().filter(|e| e["ph"] == p).count();
    assert_eq!(ph("X"), 1, "the first span stays a slice");
    assert_eq!((ph("b"), ph("e")), (1, 1), "the overlapping one is async");
    let b = ev.iter().find(|e| e["ph"] == "b").unwrap();
    let e = ev.iter().find(|e| e["ph"] == "e").unwrap();
    assert_eq!(b["id"], e["id"]);
    assert_eq!(e["ts"].as_f64().unwrap() - b["ts"].as_f64().unwrap(), 100.0);
}

#[test]
fn dot_and_mermaid_golden_and_edge_counts_match_links() {
    let (paths, _) = fixture();
    let dot = render(|w| Box::new(DotSink::new(w)));
    let mer = render(|w| Box::new(MermaidSink::new(w)));
    golden("tiers-v4.dot", &dot);
    golden("tiers-v4.mmd", &mer);
    let links = jsonl_links(&paths).len() as u64;
    let count = |text: &str, arrow: &str| -> u64 {
        text.lines()
            .filter(|l| l.contains(arrow))
            .map(|l| {
                let lab = l
                    .split("label=\"")
                    .nth(1)
                    .or(l.split("|\"").nth(1))
                    .unwrap();
                lab.split(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum()
    };
    assert_eq!(
        count(&dot, " -> "),
        links,
        "DOT edge counts sum to the links"
    );
    assert_eq!(count(&mer, " -->|"), links, "Mermaid edge counts too");
    assert!(dot.starts_with("digraph") && dot.contains("subgraph cluster_"));
    assert!(mer.starts_with("flowchart LR") && mer.contains("subgraph g1"));
}

fn check_request(req: &ExportTraceServiceRequest, paths: &[Path]) {
    let spans: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
        .collect();
    let total: usize = paths.iter().map(|p| p.root.count()).sum();
    assert_eq!(spans.len(), total, "one OTLP span per vPath span");
    let ids: BTreeSet<(&[u8], &[u8])> = spans
        .iter()
        .map(|s| (&s.trace_id[..], &s.span_id[..]))
        .collect();
    assert_eq!(ids.len(), total, "span ids unique");
    let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
    assert_eq!(roots, paths.len(), "one root per path");
    for s in &spans {
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        assert!(
            s.start_time_unix_nano > 1_600_000_000_000_000_000,
            "wall clock"
        );
        if !s.parent_span_id.is_empty() {
            assert!(
                ids.contains(&(&s.trace_id[..], &s.parent_span_id[..])),
                "the parent is in the same trace"
            );
        }
    }
    // Children per parent match the JSONL.
    let per_parent: usize = spans
        .iter()
        .filter(|s| !s.parent_span_id.is_empty())
        .count();
    assert_eq!(per_parent, jsonl_links(paths).len());
    for r in &req.resource_spans {
        let keys: BTreeSet<&str> = r
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|k| k.key.as_str())
            .collect();
        for k in ["host.name", "vpath.netns", "process.pid", "process.command"] {
            assert!(keys.contains(k), "resource attribute {k}");
        }
    }
}

#[test]
fn otlp_protobuf_decodes_back() {
    let (paths, info) = fixture();
    let bytes = encode_request(&build_request(&paths, &Clocks::from_run(&info)));
    let req = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
    check_request(&req, &paths);
    // The server span of an observed tier is SERVER; the roots are CLIENT.
    let spans: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
        .collect();
    let origin_roots = paths
        .iter()
        .filter(|p| p.root.kind == SpanKind::Origin)
        .count();
    assert!(origin_roots > 0);
    let client_roots = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty() && s.kind == 3)
        .count();
    assert_eq!(client_roots, origin_roots, "origin roots are CLIENT");
    for s in spans.iter().filter(|s| s.parent_span_id.is_empty()) {
        assert!(s.attributes.iter().any(|a| a.key == "vpath.complete"));
    }
    assert!(spans.iter().any(|s| s.kind == 2), "some SERVER spans");
}

#[test]
fn otlp_json_is_an_export_request() {
    let (paths, _) = fixture();
    let got = render(|w| Box::new(OtlpJsonSink::new(w)));
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 1, "one request for a small run");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    let span0 = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span0["traceId"].as_str().unwrap().len(), 32, "hex trace id");
    assert_eq!(span0["spanId"].as_str().unwrap().len(), 16, "hex span id");
    let req: ExportTraceServiceRequest = serde_json::from_str(lines[0]).unwrap();
    check_request(&req, &paths);
}

/// A directory where Python's `opentelemetry-proto` is importable, or why not.
fn python_otel() -> Result<(String, PathBuf), String> {
    let py = ["python3", "python"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or("no python3")?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("otel-py");
    let probe = |d: &PathBuf| {
        std::process::Command::new(py)
            .env("PYTHONPATH", d)
            .args([
                "-c",
                "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if probe(&dir) {
        return Ok((py.to_string(), dir));
    }
    let out = std::process::Command::new(py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&dir)
        .arg("opentelemetry-proto")
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !out.status.success() || !probe(&dir) {
        return Err(format!(
            "pip install opentelemetry-proto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((py.to_string(), dir))
}

#[test]
fn otlp_protobuf_parses_with_python_opentelemetry_proto() {
    let (py, dir) = match python_otel() {
        Ok(x) => x,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: Python's opentelemetry-proto is unavailable: {why}");
            return;
        }
        Err(why) => panic!("CI is set and Python's opentelemetry-proto is unavailable: {why}"),
    };
    let (paths, info) = fixture();
    let bytes = encode_request(&build_request(&paths, &Clocks::from_run(&info)));
    let f = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tiers-v4.otlp.pb");
    std::fs::write(&f, &bytes).unwrap();
    let script = r#"
import sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
req = ExportTraceServiceRequest()
req.ParseFromString(open(sys.argv[1], 'rb').read())
spans = [s for r in req.resource_spans for ss in r.scope_spans for s in ss.spans]
ids = {(s.trace_id, s.span_id) for s in spans}
roots = [s for s in spans if not s.parent_span_id]
children = [s for s in spans if s.parent_span_id]
assert all((s.trace_id, s.parent_span_id) in ids for s in children), "dangling parent"
assert all(s.kind in (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT) for s in spans)
print(len(spans), len(ids), len(roots), len(children))
"#;
    let out = std::process::Command::new(&py)
        .env("PYTHONPATH", &dir)
        .arg("-c")
        .arg(script)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: usize = paths.iter().map(|p| p.root.count()).sum();
    let links = jsonl_links(&paths).len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{total} {total} {} {links}", paths.len())
    );
}

/// A tiny OTLP/HTTP receiver: answers 503 to the first `refuse` requests
/// (all if None), then 200. Keeps the accepted bodies and content types.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    accepted: Accepted,
}

/// (request line, content type, body) of each accepted request.
type Accepted = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

fn receiver(refuse: Option<usize>) -> Receiver {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (rq, acc) = (requests.clone(), accepted.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let (mut len, mut ctype) = (0usize, String::new());
            let mut first = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if first.is_empty() {
                    first = line.trim().to_string();
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("content-type:") {
                    ctype = v.trim().to_string();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let n = rq.fetch_add(1, Ordering::SeqCst);
            let ok = refuse.is_some_and(|k| n >= k);
            let status = if ok {
                acc.lock().unwrap().push((first, ctype, body));
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver {
        addr,
        requests,
        accepted,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn otlp_http_delivers_after_retries() {
    let (paths, info) = fixture();
    let rx = receiver(Some(2));
    let mut sink = OtlpHttpSink::new(&format!("http://{}", rx.addr)).unwrap();
    assert_eq!(sink.url(), format!("http://{}/v1/traces", rx.addr));
    sink.retry = fast_retry();
    for p in &paths {
        sink.path(p).unwrap();
    }
    sink.finish(&info).expect("delivered after two refusals");
    let total: usize = paths.iter().map(|p| p.root.count()).sum();
    let rep = sink.report().clone();
    assert_eq!(rep.delivered_spans, total);
    assert_eq!(rep.requests, 3, "two refused, one accepted");
    assert_eq!(rx.requests.load(Ordering::SeqCst), 3);
    let acc = rx.accepted.lock().unwrap();
    assert_eq!(acc.len(), 1);
    assert_eq!(acc[0].0, "POST /v1/traces HTTP/1.1");
    assert_eq!(acc[0].1, "application/x-protobuf");
    let req = ExportTraceServiceRequest::decode(&acc[0].2[..]).unwrap();
    check_request(&req, &paths);
}

#[test]
fn otlp_http_reports_what_was_not_delivered() {
    let (paths, info) = fixture();
    let rx = receiver(None);
    let mut sink = OtlpHttpSink::new(&format!("http://{}/v1/traces", rx.addr)).unwrap();
    sink.retry = fast_retry();
    // Small batches: several requests, each refused.
    sink.batch_spans = 4;
    for p in &paths {
        sink.path(p).unwrap();
    }
    let err = sink.finish(&info).expect_err("nothing was delivered");
    let total: usize = paths.iter().map(|p| p.root.count()).sum();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<ExportError>())
        .expect("an ExportError");
    match inner {
        ExportError::Undelivered {
            undelivered_spans,
            total_spans,
            undelivered_batches,
            total_batches,
            attempts,
            ..
        } => {
            assert_eq!(*undelivered_spans, total);
            assert_eq!(*total_spans, total);
            assert!(*total_batches > 1);
            assert_eq!(undelivered_batches, total_batches);
            assert_eq!(*attempts, 4);
            assert_eq!(rx.requests.load(Ordering::SeqCst), total_batches * 4);
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err
        .to_string()
        .contains(&format!("{total} of {total} spans")));
}

#[test]
fn otlp_http_reports_connection_refused() {
    let (paths, info) = fixture();
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = OtlpHttpSink::new(&format!("http://127.0.0.1:{port}")).unwrap();
    sink.retry = fast_retry();
    for p in &paths {
        sink.path(p).unwrap();
    }
    let err = sink.finish(&info).expect_err("no receiver");
    assert!(err.to_string().contains("not delivered"), "{err}");
    assert_eq!(sink.report().requests, 4, "retried to the bound");
}

#[test]
fn endpoints_are_normalized_or_refused() {
    assert_eq!(
        normalize_endpoint("http://collector").unwrap(),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(
        normalize_endpoint("http://127.0.0.1:9999/").unwrap(),
        "http://127.0.0.1:9999/v1/traces"
    );
    assert_eq!(
        normalize_endpoint("http://[::1]/x/traces").unwrap(),
        "http://[::1]:4318/x/traces"
    );
    for bad in ["https://a", "collector:4318", "http://", "http://a:99999"] {
        let e = normalize_endpoint(bad).unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn ids_are_deterministic_and_distinct() {
    let (paths, info) = fixture();
    let a = render(|w| Box::new(JaegerSink::new(w)));
    let b = render(|w| Box::new(JaegerSink::new(w)));
    assert_eq!(a, b);
    let clocks = Clocks::from_run(&info);
    let traces: BTreeSet<_> = paths
        .iter()
        .map(|p| vpath_io::export::flatten(p, &clocks).trace_id)
        .collect();
    assert_eq!(traces.len(), paths.len());
}

#[test]
fn otlp_maps_remote_leaves_issues_and_clocks() {
    // A server with an unobserved callee and an issue, on a monotonic host.
    let mut root = span(SpanKind::Server, 7, 1_000, 9_000, 80);
    root.issues.push(Issue::NoReply);
    let mut remote = span(SpanKind::Remote, 0, 2_000, 3_000, 0);
    remote.host = None;
    remote.pid = None;
    remote.tid = None;
    remote.comm = None;
    remote.netns = None;
    remote.local = "10.0.0.5:5432".parse().unwrap();
    remote.remote = "10.0.0.1:40000".parse().unwrap();
    root.children.push(remote);
    let paths = vec![Path {
        path: 1,
        complete: false,
        root,
    }];
    let mut clocks = Clocks::default();
    clocks.set("h", 1_700_000_000_000_000_000);
    let req = build_request(&paths, &clocks);
    assert_eq!(
        req.resource_spans.len(),
        1,
        "the remote call is the caller's"
    );
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, k: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let (srv, call) = (&spans[0], &spans[1]);
    assert_eq!(srv.kind, 2, "SERVER");
    assert_eq!(call.kind, 3, "CLIENT");
    assert_eq!(call.parent_span_id, srv.span_id);
    assert_eq!(srv.start_time_unix_nano, 1_700_000_000_000_001_000);
    assert_eq!(call.end_time_unix_nano, 1_700_000_000_000_003_000);
    assert_eq!(srv.status.as_ref().unwrap().code, 2, "ERROR");
    assert!(srv.status.as_ref().unwrap().message.contains("no-reply"));
    assert!(call.status.is_none());
    assert_eq!(attr(srv, "vpath.complete"), Some(V::BoolValue(false)));
    assert_eq!(
        attr(call, "server.address"),
        Some(V::StringValue("10.0.0.5".into()))
    );
    assert_eq!(attr(call, "server.port"), Some(V::IntValue(5432)));
    assert_eq!(attr(srv, "client.port"), Some(V::IntValue(5000)));
    assert_eq!(attr(call, "thread.id"), Some(V::IntValue(7)));
    match attr(srv, "vpath.issues") {
        Some(V::ArrayValue(a)) => assert_eq!(a.values.len(), 1),
        other => panic!("vpath.issues: {other:?}"),
    }
}
