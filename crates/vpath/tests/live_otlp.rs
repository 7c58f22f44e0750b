//! `vpath live --otlp-endpoint`: paths stream to an OTLP/HTTP collector as
//! they complete, while stdout still prints them. The collector here is a
//! small local receiver that refuses its first request (the sender retries).
//!
//! Needs root (eBPF). Runs when root; outside CI it skips with the reason
//! printed, and in CI (env CI set) it fails instead.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::*;

/// Request bodies a collector accepted.
type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// Accepts OTLP/HTTP posts on loopback; refuses (503) the first `refuse`.
fn collector(refuse: usize) -> (u16, Arc<AtomicUsize>, Bodies) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (rq, acc) = (requests.clone(), bodies.clone());
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
            let status = if rq.fetch_add(1, Ordering::SeqCst) >= refuse {
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
    (port, requests, bodies)
}

#[test]
fn live_streams_paths_to_an_otlp_collector() {
    if !need_root("live_streams_paths_to_an_otlp_collector") {
        return;
    }
    let d = tmpdir("live-otlp");
    let (mut tiers, front, back) = two_tiers_on_loopback(&d);
    let (port, requests, bodies) = collector(1);
    let url = format!("http://127.0.0.1:{port}");
    let mut live = Procs(vec![vpath()
        .args(["live", "--format", "jsonl", "--duration", "3"])
        .args(["--port", &front.to_string(), "--port", &back.to_string()])
        .args(["--otlp-endpoint", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vpath live starts")]);
    let mut so = live.0[0].stdout.take().unwrap();
    let se = live.0[0].stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = std::thread::spawn(move || {
        for l in BufReader::new(se).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // The first status line proves the probes are attached.
    let mut err_lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => {
                let status = l.starts_with("[live]");
                err_lines.push(l);
                if status {
                    break;
                }
            }
            Err(e) => panic!("no [live] status line ({e}): {err_lines:?}"),
        }
    }
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let (threads, requests_each) = (4u64, 10u64);
    let out = run(vpath()
        .args([
            "__vapp",
            "client",
            "--target",
            &format!("127.0.0.1:{front}"),
        ])
        .args(["--threads", &threads.to_string()])
        .args(["--requests", &requests_each.to_string()]));
    assert!(out.status.success(), "client: {}", text(&out.stderr));
    let t1 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = live.0[0].try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "vpath live --duration 3 did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    tiers.stop();
    let stdout = stdout.join().unwrap();
    stderr.join().unwrap();
    err_lines.extend(rx.try_iter());
    let err = err_lines.join("\n");
    assert!(status.success(), "{err}");

    let paths = parse_paths(&stdout);
    let n = threads * requests_each;
    assert_eq!(paths.len() as u64, n, "{err}");
    let spans: usize = paths.iter().map(|p| p.root.count()).sum();
    assert_eq!(spans as u64, 3 * n, "client -> front -> back");

    // What the collector got: every span once, one trace per path, in wall
    // time around the client's run.
    let bodies = bodies.lock().unwrap();
    let mut got = 0;
    let mut traces = BTreeSet::new();
    for b in bodies.iter() {
        let req = vpath_io::export::otlp::decode_request(b).expect("OTLP protobuf");
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    got += 1;
                    traces.insert(s.trace_id.clone());
                    let start = Duration::from_nanos(s.start_time_unix_nano);
                    assert!(
                        start + Duration::from_secs(2) >= t0
                            && start <= t1 + Duration::from_secs(2),
                        "span start {start:?} outside the client's run {t0:?}..{t1:?}"
                    );
                }
            }
        }
    }
    assert_eq!(got, spans, "{err}");
    assert_eq!(traces.len() as u64, n);
    assert!(
        requests.load(Ordering::SeqCst) > bodies.len(),
        "the refused request was retried"
    );
    let want = format!("[live] OTLP/HTTP to {url}/v1/traces: {spans} of {spans} spans delivered");
    assert!(err.contains(&want), "{want:?} not in:\n{err}");
}
