//! The recorder's remaining checks, end to end through the `vpath` binary:
//! three hosts (network namespaces) with exact per-domain paths, real and
//! counted kernel drops with a tiny ring, and `vpath live`.
//!
//! All of these need root (eBPF, namespaces). They run when root; outside CI
//! they skip with the reason printed, and in CI (env CI set) they fail instead.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vpath_core::{Issue, Path as VPath};
use vpath_demo::hosts::{list_netns, HostMode, Hosts};

mod common;
use common::*;

/// The number before " lost in the kernel" in the analyzer's health line.
fn lost_in_health_line(stderr: &str) -> Option<u64> {
    let i = stderr.find(" lost in the kernel")?;
    let before = &stderr[..i];
    let start = before
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |j| j + 1);
    before[start..].parse().ok()
}

/// The inode of a named network namespace: the `netns` a span of a process
/// in it carries.
fn netns_inode(name: &str) -> u32 {
    let p = Path::new("/run/netns").join(name);
    let md = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    md.ino() as u32
}

/// Three hosts, each its own network namespace with its own address on a
/// bridge: the client calls the middle tier, which calls the backend. Every
/// path is exact, and each of its three spans lies in its own domain.
#[test]
fn three_hosts_in_three_namespaces_give_exact_paths_one_domain_per_span() {
    if !need_root("three_hosts_in_three_namespaces_give_exact_paths_one_domain_per_span") {
        return;
    }
    let d = tmpdir("multihost");
    let mut hosts = Hosts::create(&["client", "middle", "backend"], true).expect("hosts");
    assert_eq!(
        hosts.mode(),
        HostMode::Netns,
        "root could not make network namespaces"
    );
    let ns_of = |h: &Hosts, host: &str| -> String {
        h.namespaces()
            .iter()
            .find(|n| n.ends_with(&format!("-{host}")))
            .unwrap_or_else(|| panic!("no namespace for {host}: {:?}", h.namespaces()))
            .clone()
    };
    let made: Vec<String> = hosts.namespaces().to_vec();
    let (client_ns, middle_ns, backend_ns) = (
        ns_of(&hosts, "client"),
        ns_of(&hosts, "middle"),
        ns_of(&hosts, "backend"),
    );
    let (pm, pb) = loop {
        let (a, b) = (free_port(), free_port());
        if a != b {
            break (a, b);
        }
    };
    let mid = SocketAddr::new(hosts.addr("middle").unwrap(), pm);
    let back = SocketAddr::new(hosts.addr("backend").unwrap(), pb);
    assert_ne!(mid.ip(), back.ip(), "each host has its own address");

    let cmd = |args: Vec<String>| -> Vec<String> {
        let mut v = vec![exe().to_string()];
        v.extend(args);
        v
    };
    hosts
        .spawn(
            "backend",
            &cmd(tier_args(&d, "backend", back, &[])),
            false,
            Some(&d.join("backend.out")),
            &d.join("backend.err"),
        )
        .expect("backend starts");
    hosts
        .spawn(
            "middle",
            &cmd(tier_args(
                &d,
                "middle",
                mid,
                &[
                    "--upstream".into(),
                    format!("backend={back}"),
                    "--call".into(),
                    "backend:100:1".into(),
                ],
            )),
            false,
            Some(&d.join("middle.out")),
            &d.join("middle.err"),
        )
        .expect("middle starts");
    wait_for(&d.join("backend.ready"));
    wait_for(&d.join("middle.ready"));

    let log = d.join("run.vlog");
    let (threads, requests) = (3u64, 20u64);
    let out = run(vpath()
        .args([
            "record",
            "--port",
            &pm.to_string(),
            "--port",
            &pb.to_string(),
        ])
        .arg("-o")
        .arg(&log)
        .args(["--", "ip", "netns", "exec", &client_ns, exe()])
        .args(["__vapp", "client", "--target", &mid.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--requests", &requests.to_string(), "--truth"])
        .arg(d.join("client.truth.jsonl")));
    assert!(
        out.status.success(),
        "record failed: {}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(d.join("middle.err")).unwrap_or_default()
    );
    // SIGTERM: the tiers flush their truth and exit.
    hosts.stop(None, Duration::from_secs(5));

    let inode = |ns: &str| netns_inode(ns);
    let (ci, mi, bi) = (inode(&client_ns), inode(&middle_ns), inode(&backend_ns));
    assert!(
        ci != mi && mi != bi && ci != bi,
        "three distinct domains: {ci} {mi} {bi}"
    );
    let root_ns = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
    assert!(![ci, mi, bi].contains(&root_ns), "none is the test's own");

    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&log));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths = parse_paths(&out.stdout);
    let truth = read_truth(&d, &["client", "middle", "backend"]);
    let n = threads * requests;
    let score = vpath_demo::score(&truth, &paths);
    eprintln!("multi-host: netns {ci} {mi} {bi}; score {score:?}");
    assert_eq!(score.paths, n, "{score:?}");
    assert_eq!(score.exact, n, "{score:?}");
    assert_eq!(score.wrong, 0, "{score:?}");
    assert_eq!(paths.len() as u64, n, "{}", text(&out.stderr));
    for p in &paths {
        assert!(p.complete, "{p:?}");
        let r = &p.root;
        assert_eq!(r.children.len(), 1, "{p:?}");
        let m = &r.children[0];
        assert_eq!(m.children.len(), 1, "{p:?}");
        let b = &m.children[0];
        assert!(b.children.is_empty(), "{p:?}");
        assert_eq!(
            (r.netns, m.netns, b.netns),
            (Some(ci), Some(mi), Some(bi)),
            "client, middle, backend spans each in their own namespace: path {}",
            p.path
        );
        assert_eq!(
            m.local, mid,
            "the middle span is at the middle host's address"
        );
        assert_eq!(
            b.local, back,
            "the backend span is at the backend's address"
        );
    }

    drop(hosts);
    let left = list_netns();
    for ns in &made {
        assert!(!left.contains(ns), "{ns} left behind: {left:?}");
    }
}

/// A 4 KiB ring under a flood: the kernel really drops events, the log's
/// End trailer accounts for every event (emitted = written + lost), and the
/// analyzer reports the loss and marks the touched paths incomplete without
/// ever stitching wrongly.
#[test]
fn tiny_ring_under_flood_drops_are_counted_and_paths_marked_incomplete() {
    if !need_root("tiny_ring_under_flood_drops_are_counted_and_paths_marked_incomplete") {
        return;
    }
    let d = tmpdir("drops");
    let (mut tiers, front, back) = two_tiers_on_loopback(&d);
    let log = d.join("flood.vlog");
    let out = run(vpath()
        .args(["record", "--ring-bytes", "4096"])
        .args(["--port", &front.to_string(), "--port", &back.to_string()])
        .arg("-o")
        .arg(&log)
        .args(["--", exe(), "__vapp", "client"])
        .args(["--target", &format!("127.0.0.1:{front}")])
        .args(["--threads", "16", "--duration-ms", "1500", "--truth"])
        .arg(d.join("client.truth.jsonl")));
    assert!(out.status.success(), "record failed: {}", text(&out.stderr));
    let rec_err = text(&out.stderr);
    tiers.stop();

    // The log (raw: the kernel's records as the rings gave them), record
    // by record, and its End trailer, which counts socket records.
    let mut r = vpath_log::LogReader::open(&log).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        r.header().is_raw(),
        "vpath record writes raw logs by default"
    );
    let (mut events, mut last_lost_total) = (0u64, 0u64);
    while let Some(item) = r
        .next_item()
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
    {
        match item {
            vpath_log::Item::Raw(x) => events += u64::from(x.bytes[0] != vpath_bpf::raw::REC_COMM),
            vpath_log::Item::Record(vpath_core::Record::Checkpoint(c)) => {
                assert!(c.lost_total >= last_lost_total, "lost_total is cumulative");
                last_lost_total = c.lost_total;
            }
            vpath_log::Item::Record(other) => panic!("a raw log holds {other:?}"),
        }
    }
    let end = r.end().expect("the log ended cleanly with an End trailer");
    assert_eq!(end.events_written, events, "{end:?}");
    assert_eq!(
        end.events_emitted,
        end.events_written + end.events_lost,
        "{end:?}"
    );
    assert!(
        end.events_lost > 0,
        "a 4 KiB ring under a 16-thread flood must drop: {end:?}\n{rec_err}"
    );
    assert!(
        last_lost_total > 0 && last_lost_total <= end.events_lost,
        "checkpoints carry the loss: last lost_total {last_lost_total}, {end:?}"
    );
    assert!(
        rec_err.contains(&format!("{} lost in the kernel", end.events_lost)),
        "{rec_err}"
    );

    // The dump of the records as stored ends with the same numbers.
    let out = run(vpath().args(["dump", "--raw"]).arg(&log));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump = text(&out.stdout);
    let tail = &dump[dump.len().saturating_sub(2000)..];
    assert!(tail.contains("ended cleanly"), "{tail}");
    assert!(
        tail.contains(&format!(
            "end events_emitted={} events_written={} events_lost={}",
            end.events_emitted, end.events_written, end.events_lost
        )),
        "the dump reports the loss: {tail}"
    );

    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&log));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let lost = lost_in_health_line(&err).unwrap_or_else(|| panic!("no loss count in: {err}"));
    assert!(lost > 0, "the analyzer reports the loss: {err}");
    assert!(lost <= end.events_lost, "{lost} > {end:?}");
    let paths = parse_paths(&out.stdout);
    let incomplete: Vec<&VPath> = paths.iter().filter(|p| !p.complete).collect();
    assert!(!incomplete.is_empty(), "{err}");
    let mut lost_marked = 0;
    for p in &incomplete {
        let mut has = false;
        p.root
            .walk(&mut |s, _| has |= s.issues.contains(&Issue::EventsLost));
        lost_marked += has as usize;
    }
    assert!(
        lost_marked > 0,
        "some incomplete path names events-lost: {err}"
    );
    for p in &paths {
        assert_eq!(p.complete, p.spans_clean(), "path {}", p.path);
    }
    let truth = read_truth(&d, &["client", "front", "back"]);
    let score = vpath_demo::score(&truth, &paths);
    eprintln!(
        "drops: {end:?}; analyzer: {lost} lost, {} paths, {} incomplete ({lost_marked} marked \
         events-lost); score {score:?}",
        paths.len(),
        incomplete.len()
    );
    assert!(score.paths > 0, "{score:?}");
    assert_eq!(score.wrong, 0, "{score:?}");
    assert_eq!(score.false_complete, 0, "{score:?}");
    assert!(
        score.exact < score.paths,
        "loss leaves some requests not exact: {score:?}"
    );
}

/// `vpath live --format jsonl` while a client drives a two-tier vApp: JSON
/// paths on stdout, all complete and exact; `[live]` status lines on stderr.
#[test]
fn live_prints_complete_jsonl_paths_and_status_lines() {
    if !need_root("live_prints_complete_jsonl_paths_and_status_lines") {
        return;
    }
    let d = tmpdir("live");
    let (mut tiers, front, back) = two_tiers_on_loopback(&d);
    let mut live = Procs(vec![vpath()
        .args(["live", "--format", "jsonl", "--duration", "3"])
        .args(["--port", &front.to_string(), "--port", &back.to_string()])
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
    let t = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => {
                let status = l.starts_with("[live]");
                err_lines.push(l);
                if status {
                    break;
                }
            }
            Err(e) => panic!(
                "no [live] status line after {:?} ({e}): {err_lines:?}",
                t.elapsed()
            ),
        }
    }
    let (threads, requests) = (4u64, 10u64);
    let out = run(vpath()
        .args([
            "__vapp",
            "client",
            "--target",
            &format!("127.0.0.1:{front}"),
        ])
        .args(["--threads", &threads.to_string()])
        .args(["--requests", &requests.to_string(), "--truth"])
        .arg(d.join("client.truth.jsonl")));
    assert!(out.status.success(), "client: {}", text(&out.stderr));
    let t = Instant::now();
    let status = loop {
        if let Some(st) = live.0[0].try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
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
    let n = threads * requests;
    assert_eq!(paths.len() as u64, n, "{err}");
    for p in &paths {
        assert!(p.complete, "{p:?}");
        assert_eq!(p.root.count(), 3, "client -> front -> back: {p:?}");
    }
    let truth = read_truth(&d, &["client", "front", "back"]);
    let score = vpath_demo::score(&truth, &paths);
    assert_eq!(
        (score.paths, score.exact, score.wrong),
        (n, n, 0),
        "{score:?}"
    );

    let status_lines = err_lines
        .iter()
        .filter(|l| l.starts_with("[live]") && l.contains("events/s"))
        .count();
    assert!(status_lines >= 1, "{err}");
    assert!(
        err.contains(&format!(
            "[live] done: {n} paths ({n} complete, 0 incomplete)"
        )),
        "{err}"
    );
}

/// Loss is local in time: after a lossy flood and a quiet gap, a calm client's
/// requests are exact again. The first exchange of a thread first seen after
/// a loss may still be flagged (its window reaches back into the loss), so at
/// most one of the calm client's requests may be inexact, and none may be
/// wrong or falsely complete.
#[test]
fn paths_after_a_lossy_flood_are_exact_again() {
    if !need_root("paths_after_a_lossy_flood_are_exact_again") {
        return;
    }
    let d = tmpdir("recover");
    let (mut tiers, front, back) = two_tiers_on_loopback(&d);
    let log = d.join("recover.vlog");
    let calm = 10u64;
    let script = format!(
        "\"$1\" __vapp client --target \"$2\" --threads 16 --duration-ms 1000 --truth \"$3\" \
         >/dev/null && sleep 0.3 && \"$1\" __vapp client --target \"$2\" --threads 1 \
         --requests {calm} --truth \"$4\" >/dev/null"
    );
    let out = run(vpath()
        .args(["record", "--ring-bytes", "65536"])
        .args(["--port", &front.to_string(), "--port", &back.to_string()])
        .arg("-o")
        .arg(&log)
        .args(["--", "sh", "-c", &script, "sh", exe()])
        .arg(format!("127.0.0.1:{front}"))
        .arg(d.join("flood.truth.jsonl"))
        .arg(d.join("calm.truth.jsonl")));
    assert!(out.status.success(), "record failed: {}", text(&out.stderr));
    tiers.stop();
    let mut r = vpath_log::LogReader::open(&log).unwrap_or_else(|e| panic!("{e}"));
    while r
        .next_item()
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .is_some()
    {}
    let end = r.end().expect("End trailer");
    assert!(
        end.events_lost > 0,
        "a 64 KiB ring under a 16-thread flood must drop: {end:?}"
    );

    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&log));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths = parse_paths(&out.stdout);
    let all = read_truth(&d, &["flood", "calm", "front", "back"]);
    let s = vpath_demo::score(&all, &paths);
    assert_eq!((s.wrong, s.false_complete), (0, 0), "{s:?}");
    let calm_truth = read_truth(&d, &["calm", "front", "back"]);
    let s = vpath_demo::score(&calm_truth, &paths);
    eprintln!("after loss ({end:?}): calm phase {s:?}");
    assert_eq!(s.paths, calm, "{s:?}");
    assert_eq!((s.wrong, s.false_complete), (0, 0), "{s:?}");
    assert!(s.exact + 1 >= calm, "loss poisoned later paths: {s:?}");
}
