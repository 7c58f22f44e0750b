//! Exports at scale, on simulated multi-host runs (event loops, unobserved
//! backends, several domains): structure checks on every exporter, and the
//! time and size of each (printed; run with `--nocapture` to see them).

use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;
use vpath_core::{Path, SpanKind};
use vpath_io::export::otlp::build_request;
use vpath_io::export::{encode_request, Clocks};
use vpath_io::{DotSink, JaegerSink, MermaidSink, PerfettoSink, RunInfo, Sink};
use vpath_sim::{generate, SimConfig};

fn paths(seed: u64, requests: usize) -> Vec<Path> {
    let cfg = SimConfig {
        seed,
        hosts: 3,
        services: 6,
        client_threads: 8,
        requests,
        unobserved_backend: true,
        ..SimConfig::random(seed, false)
    };
    let mut ps = generate(&cfg).unwrap().expected;
    for (k, p) in ps.iter_mut().enumerate() {
        p.path = k as u64 + 1;
    }
    ps
}

fn timed(name: &str, ps: &[Path], mut s: Box<dyn Sink + '_>) {
    let t = Instant::now();
    for p in ps {
        s.path(p).unwrap();
    }
    s.finish(&RunInfo::default()).unwrap();
    eprintln!("{name}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
}

#[test]
fn exporters_hold_on_simulated_runs() {
    for seed in [3u64, 11, 29] {
        let ps = paths(seed, 400);
        let spans: usize = ps.iter().map(|p| p.root.count()).sum();
        let links = spans - ps.len();
        let remote = ps
            .iter()
            .map(|p| {
                let mut n = 0;
                p.root
                    .walk(&mut |s, _| n += (s.kind == SpanKind::Remote) as usize);
                n
            })
            .sum::<usize>();
        eprintln!(
            "seed {seed}: {} paths, {spans} spans, {remote} remote",
            ps.len()
        );

        let t = Instant::now();
        let bytes = encode_request(&build_request(&ps, &Clocks::default()));
        let enc = t.elapsed();
        let req = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
        let got: Vec<_> = req
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
            .collect();
        assert_eq!(got.len(), spans);
        assert_eq!(
            got.iter().filter(|s| !s.parent_span_id.is_empty()).count(),
            links
        );
        eprintln!(
            "  otlp protobuf: {} bytes in {:.1} ms",
            bytes.len(),
            enc.as_secs_f64() * 1e3
        );

        let mut jaeger = Vec::new();
        timed("  jaeger", &ps, Box::new(JaegerSink::new(&mut jaeger)));
        let v: Value = serde_json::from_slice(&jaeger).unwrap();
        let refs: usize = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["spans"].as_array().unwrap())
            .map(|s| s["references"].as_array().unwrap().len())
            .sum();
        assert_eq!(refs, links);

        let mut perf = Vec::new();
        timed("  perfetto", &ps, Box::new(PerfettoSink::new(&mut perf)));
        let v: Value = serde_json::from_slice(&perf).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        let count = |ph: &str| ev.iter().filter(|e| e["ph"] == ph).count();
        assert_eq!(count("X") + count("b"), spans);
        assert_eq!(count("b"), count("e"));
        assert_eq!((count("s"), count("f")), (links, links));
        // Thread slices nest (overlaps went async).
        let mut by_thread: std::collections::BTreeMap<(u64, u64), Vec<(f64, f64)>> =
            Default::default();
        for e in ev.iter().filter(|e| e["ph"] == "X") {
            let ts = e["ts"].as_f64().unwrap();
            by_thread
                .entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
                .or_default()
                .push((ts, ts + e["dur"].as_f64().unwrap()));
        }
        for list in by_thread.values_mut() {
            list.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
            let mut stack: Vec<f64> = Vec::new();
            for &(s, e) in list.iter() {
                while stack.last().is_some_and(|&end| end <= s) {
                    stack.pop();
                }
                if let Some(&end) = stack.last() {
                    assert!(e <= end, "slices overlap without nesting");
                }
                stack.push(e);
            }
        }
        eprintln!(
            "  perfetto: {} bytes, {} async spans",
            perf.len(),
            count("b")
        );

        let mut dot = Vec::new();
        timed("  dot", &ps, Box::new(DotSink::new(&mut dot)));
        let dot = String::from_utf8(dot).unwrap();
        let calls: usize = dot
            .lines()
            .filter(|l| l.contains(" -> "))
            .map(|l| {
                l.split("label=\"")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(calls, links);
        let mut mer = Vec::new();
        timed("  mermaid", &ps, Box::new(MermaidSink::new(&mut mer)));
        assert!(String::from_utf8(mer).unwrap().starts_with("flowchart LR"));
    }
}
