//! The batching OTLP/HTTP sender that `vpath live --otlp-endpoint` streams
//! through ([`OtlpStream`] over [`BatchSender`]), against a local receiver:
//! delivery after refusals, batching by size and time, and a full queue that
//! drops (and counts) batches instead of blocking the caller.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use vpath_core::Path;
use vpath_io::export::{Clocks, OtlpStream, RetryPolicy};
use vpath_sim::{generate, SimConfig};

struct Receiver {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    /// Bodies of the accepted requests.
    accepted: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Refuses (503) the first `refuse` requests, then accepts, each after
/// `delay`.
fn receiver(refuse: usize, delay: Duration) -> Receiver {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (rq, acc) = (requests.clone(), accepted.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            std::thread::sleep(delay);
            let n = rq.fetch_add(1, Ordering::SeqCst);
            let status = if n >= refuse {
                acc.lock().unwrap().push(body);
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

fn paths(n: usize) -> Vec<Path> {
    let cfg = SimConfig {
        seed: 5,
        hosts: 2,
        services: 4,
        requests: n,
        ..SimConfig::default()
    };
    let mut ps = generate(&cfg).unwrap().expected;
    for (k, p) in ps.iter_mut().enumerate() {
        p.path = k as u64 + 1;
    }
    ps
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(80),
        timeout: Duration::from_secs(5),
    }
}

fn spans_in(bodies: &[Vec<u8>]) -> usize {
    bodies
        .iter()
        .map(|b| {
            let req = ExportTraceServiceRequest::decode(&b[..]).expect("protobuf");
            req.resource_spans
                .iter()
                .flat_map(|r| r.scope_spans.iter())
                .map(|s| s.spans.len())
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn streamed_batches_are_delivered_after_refusals() {
    let ps = paths(200);
    let total: usize = ps.iter().map(|p| p.root.count()).sum();
    let rx = receiver(3, Duration::ZERO);
    let mut clocks = Clocks::default();
    clocks.set("host0", 1_700_000_000_000_000_000);
    let mut s = OtlpStream::with(
        &format!("http://{}", rx.addr),
        clocks,
        retry(),
        64,
        Duration::from_millis(30),
        16,
    )
    .unwrap();
    assert_eq!(s.url(), format!("http://{}/v1/traces", rx.addr));
    let t = Instant::now();
    for (k, p) in ps.iter().enumerate() {
        s.path(p);
        if k % 50 == 0 {
            std::thread::sleep(Duration::from_millis(40));
            s.tick();
        }
    }
    let handed = t.elapsed();
    let rep = s.finish(Duration::from_secs(30)).expect("all delivered");
    assert_eq!(rep.spans, total);
    assert_eq!(rep.delivered_spans, total);
    assert_eq!(rep.dropped_batches, 0);
    assert!(rep.batches > 3, "batched by size and time: {rep:?}");
    assert_eq!(rep.requests, rep.batches + 3, "three refusals, retried");
    assert_eq!(rx.requests.load(Ordering::SeqCst), rep.requests);
    let acc = rx.accepted.lock().unwrap();
    assert_eq!(acc.len(), rep.batches);
    assert_eq!(spans_in(&acc), total, "every span arrived once");
    // The caller only buffers and queues (the sleeps are ours).
    assert!(handed < Duration::from_secs(2), "{handed:?}");
}

#[test]
fn a_full_queue_drops_batches_counts_them_and_never_blocks() {
    let ps = paths(300);
    let total: usize = ps.iter().map(|p| p.root.count()).sum();
    // A collector that takes 100 ms per request, and a queue of one batch.
    let rx = receiver(0, Duration::from_millis(100));
    let mut s = OtlpStream::with(
        &format!("http://{}", rx.addr),
        Clocks::default(),
        retry(),
        16,
        Duration::from_secs(3600),
        1,
    )
    .unwrap();
    let t = Instant::now();
    for p in &ps {
        s.path(p);
    }
    let handed = t.elapsed();
    assert!(
        handed < Duration::from_millis(300),
        "the caller waited on the collector: {handed:?}"
    );
    let u = s
        .finish(Duration::from_secs(30))
        .expect_err("batches were dropped");
    let (rep, err) = (u.report, u.error);
    assert!(rep.dropped_batches > 0, "{rep:?}");
    assert_eq!(rep.spans + rep.dropped_spans, total, "every span counted");
    assert_eq!(rep.delivered_spans, rep.spans, "what was queued arrived");
    let msg = err.to_string();
    assert!(msg.contains("not delivered"), "{msg}");
    assert!(msg.contains("send queue full"), "{msg}");
    let line = rep.summary("x");
    assert!(line.contains("dropped: the send queue was full"), "{line}");
    assert_eq!(spans_in(&rx.accepted.lock().unwrap()), rep.delivered_spans);
}

#[test]
fn an_absent_collector_is_abandoned_at_exit_within_the_wait() {
    let ps = paths(50);
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let slow = RetryPolicy {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
    };
    let mut s = OtlpStream::with(
        &format!("http://127.0.0.1:{port}"),
        Clocks::default(),
        slow,
        8,
        Duration::from_secs(3600),
        64,
    )
    .unwrap();
    for p in &ps {
        s.path(p);
    }
    let t = Instant::now();
    let rep = s
        .finish(Duration::from_millis(500))
        .expect_err("nothing delivered")
        .report;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(rep.delivered_spans, 0);
    assert!(rep.abandoned_batches > 0, "{rep:?}");
    assert!(rep.summary("x").contains("abandoned at exit"));
}
