//! The `vpath` command as a user runs it: real files in, real output out.
//! Tests that need root and BPF run when root; outside CI they skip with the
//! reason printed, and in CI (env CI set) they fail instead of skipping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod common;
use common::*;

/// One JSON value per line of a command's output.
fn jsonl<T: serde::de::DeserializeOwned>(stdout: &[u8]) -> Vec<T> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
        .collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An strace capture of three tiers: 3 client threads x 2 requests, each
/// client -> middle -> backend twice (crates/vpath-import/examples/tiers.rs).
fn tiers_capture() -> PathBuf {
    repo().join("crates/vpath-import/tests/data/strace/tiers-v4.strace")
}

#[test]
fn analyze_strace_capture_gives_exact_paths_as_jsonl() {
    let cap = tiers_capture();
    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&cap));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = jsonl(&out.stdout);
    // The capture: 3 client threads x 2 requests; each request goes client ->
    // middle -> backend twice (see crates/vpath-import/examples/tiers.rs).
    assert_eq!(lines.len(), 6);
    for p in &lines {
        assert_eq!(p["complete"], true, "{p}");
        let root = &p["root"];
        assert_eq!(root["kind"], "origin");
        let mid = &root["children"][0];
        assert_eq!(mid["kind"], "server");
        assert_eq!(mid["children"].as_array().unwrap().len(), 2);
        let client = root["comm"].as_str().unwrap();
        let n = client.strip_prefix("client-").expect("client thread name");
        assert_eq!(mid["comm"], format!("middle-{n}"));
        for b in mid["children"].as_array().unwrap() {
            assert_eq!(b["comm"], format!("backend-{n}"));
            assert!(b["children"].as_array().unwrap().is_empty());
        }
    }
    assert!(
        text(&out.stderr).contains("6 paths (6 complete, 0 incomplete)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn max_depth_cuts_paths_and_says_so() {
    // The same capture, three levels deep (client -> middle -> backend), cut
    // to two: every backend span is cut off, counted, and the paths say so.
    let cap = tiers_capture();
    let out = run(vpath()
        .args(["analyze", "--format", "jsonl", "--max-depth", "2"])
        .arg(&cap));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = jsonl(&out.stdout);
    assert_eq!(lines.len(), 6);
    for p in &lines {
        assert_eq!(p["complete"], false, "{p}");
        let mid = &p["root"]["children"][0];
        assert!(mid["children"].as_array().unwrap().is_empty(), "{p}");
        assert_eq!(mid["issues"], serde_json::json!(["depth-limit"]), "{p}");
    }
    let err = text(&out.stderr);
    assert!(err.contains("6 paths (0 complete, 6 incomplete)"), "{err}");
    assert!(
        err.contains("12 spans cut off below the depth limit"),
        "{err}"
    );
}

#[test]
fn analyze_seed_example_is_honest_about_a_fragment() {
    let seed = repo().join("crates/vpath-import/tests/data/seed/xen-log-example.txt");
    let out = run(vpath().arg("analyze").arg(&seed));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Eight lines of the middle of a run: four operations, none of them a
    // whole exchange, so no path can be claimed; all four are accounted for.
    assert_eq!(
        text(&out.stdout).trim(),
        "0 paths (0 complete, 0 incomplete) from 4 events (4 data, 0 lost in the kernel); links: 0 stitched, 0 to \
         unobserved callees, 0 missing; 4 messages outside any exchange (observation began mid-exchange, a server \
         spoke first, or events were lost)"
    );
}

#[test]
fn summary_lists_patterns_and_tier_latencies() {
    let cap = repo().join("crates/vpath-import/tests/data/strace/tiers-v6.strace");
    let out = run(vpath().args(["analyze", "--summary"]).arg(&cap));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("path patterns"), "{s}");
    assert!(s.contains("server spans per tier"), "{s}");
    assert!(
        s.contains(" x2}") || s.contains(" x2"),
        "two backend calls per request: {s}"
    );
}

#[test]
fn garbage_input_names_the_file() {
    let d = tmpdir("garbage");
    let f = d.join("garbage.txt");
    std::fs::write(&f, "hello, world\nthis is not a log\n").unwrap();
    let out = run(vpath().arg("analyze").arg(&f));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("garbage.txt"), "{err}");
    assert!(err.contains("not a vpath log"), "{err}");
}

#[test]
fn bad_strace_line_names_file_and_line_and_keeps_the_rest() {
    let cap = tiers_capture();
    let mut lines: Vec<String> = std::fs::read_to_string(&cap)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(
        10,
        "1234 1700000000.000000 read(3<TCP:[1.2.3.4:5->6.7.8.9:10]>, \"x\", 1) = ".into(),
    );
    let d = tmpdir("badline");
    let f = d.join("damaged.strace");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&f));
    assert_eq!(out.status.code(), Some(2), "errors give exit code 2");
    let err = text(&out.stderr);
    assert!(err.contains("damaged.strace: line 11"), "{err}");
    // Everything else was still analyzed.
    assert_eq!(text(&out.stdout).lines().count(), 6);
}

/// The end-to-end check: `vpath record -- <multi-tier program>`, then
/// `vpath analyze`, recovers 100% of the paths against the ground truth the
/// program logs itself.
#[test]
fn record_a_wrapped_command_then_analyze_matches_ground_truth() {
    record_then_analyze("raw");
}

/// The same with the log written as parsed events.
#[test]
fn record_as_events_then_analyze_matches_ground_truth() {
    record_then_analyze("events");
}

fn record_then_analyze(format: &str) {
    if !need_root(&format!("record_then_analyze({format})")) {
        return;
    }
    let d = tmpdir(&format!("e2e-{format}"));
    let (front, back) = (free_port(), free_port());
    let exe = env!("CARGO_BIN_EXE_vpath");
    let tier = |name: &str, port: u16, extra: &[String]| -> Child {
        let mut c = Command::new(exe);
        c.args([
            "__vapp",
            "tier",
            "--name",
            name,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        c.args(["--model", "thread-per-request"]);
        c.arg("--truth").arg(d.join(format!("{name}.truth.jsonl")));
        c.arg("--ready").arg(d.join(format!("{name}.ready")));
        c.args(extra).stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().expect("tier starts")
    };
    let mut tiers = Procs(Vec::new());
    tiers.0.push(tier("back", back, &[]));
    tiers.0.push(tier(
        "front",
        front,
        &[
            "--upstream".into(),
            format!("back=127.0.0.1:{back}"),
            "--call".into(),
            "back:100:2".into(),
        ],
    ));
    wait_for(&d.join("back.ready"));
    wait_for(&d.join("front.ready"));

    let log = d.join("run.vlog");
    let out = run(vpath()
        .args([
            "record",
            "--format",
            format,
            "--port",
            &front.to_string(),
            "--port",
            &back.to_string(),
            "-o",
        ])
        .arg(&log)
        .args([
            "--",
            exe,
            "__vapp",
            "client",
            "--target",
            &format!("127.0.0.1:{front}"),
        ])
        .args(["--threads", "4", "--requests", "25", "--truth"])
        .arg(d.join("client.truth.jsonl")));
    assert!(out.status.success(), "record failed: {}", text(&out.stderr));
    tiers.stop(); // SIGTERM: the tiers flush their truth files and exit

    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&log));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths: Vec<vpath_core::Path> = jsonl(&out.stdout);
    if format == "raw" {
        // Converted to an event log, the capture analyzes into the very same
        // paths, from a smaller file.
        let conv = d.join("run.events.vlog");
        let c = run(vpath().arg("convert").arg(&log).arg("-o").arg(&conv));
        assert!(c.status.success(), "{}", text(&c.stderr));
        let again = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&conv));
        assert!(again.status.success(), "{}", text(&again.stderr));
        assert!(
            again.stdout == out.stdout,
            "converted log analyzes differently"
        );
        let (raw_len, ev_len) = (
            std::fs::metadata(&log).unwrap().len(),
            std::fs::metadata(&conv).unwrap().len(),
        );
        assert!(
            ev_len * 2 < raw_len,
            "event log {ev_len} B, raw {raw_len} B"
        );
    }
    let mut truth = Vec::new();
    for f in ["client", "front", "back"] {
        truth.extend(vpath_demo::read_truth_file(&d.join(format!("{f}.truth.jsonl"))).unwrap());
    }
    let score = vpath_demo::score(&truth, &paths);
    assert_eq!(score.paths, 100, "{score:?}");
    assert_eq!(score.exact, 100, "{score:?}");
    assert_eq!(score.wrong, 0, "{score:?}");
    assert_eq!(paths.len(), 100);
    assert!(paths
        .iter()
        .all(|p| p.complete && (3..=4).contains(&p.root.count())));

    // The log dumps as text, one line per record, and ended cleanly.
    let out = run(vpath().arg("dump").arg(&log));
    assert!(out.status.success());
    let dump = text(&out.stdout);
    assert!(
        dump.contains("ended cleanly"),
        "{}",
        &dump[dump.len().saturating_sub(500)..]
    );
    assert_eq!(dump.contains("a raw log, replayed"), format == "raw");
    assert!(
        dump.contains(" send ") && dump.contains(" recv "),
        "events, not raw records"
    );
    if format == "raw" {
        let out = run(vpath().args(["dump", "--raw"]).arg(&log));
        assert!(out.status.success());
        let stored = text(&out.stdout);
        assert!(
            stored.contains("# flags: checkpointed,raw"),
            "{}",
            &stored[..500.min(stored.len())]
        );
        assert!(stored.contains("raw stream="));
    }

    // A log cut short: the damage is named with its byte offset, every
    // complete record before it is still analyzed, and what the cut made
    // unverifiable is marked incomplete, never stitched wrongly.
    let bytes = std::fs::read(&log).unwrap();
    let cut = d.join("cut.vlog");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = run(vpath().args(["analyze", "--format", "jsonl"]).arg(&cut));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("cut.vlog: truncated") && err.contains("at byte"),
        "{err}"
    );
    assert!(err.contains("ended without its end record"), "{err}");
    let cut_paths: Vec<vpath_core::Path> = jsonl(&out.stdout);
    assert!(
        !cut_paths.is_empty(),
        "records before the damage are analyzed"
    );
    let s = vpath_demo::score(&truth, &cut_paths);
    assert_eq!(s.wrong, 0, "{s:?}");
    assert_eq!(s.false_complete, 0, "{s:?}");

    // Converting the cut log keeps what came before the damage and says
    // that the result is cut short too.
    let conv = d.join("cut.events.vlog");
    let c = run(vpath().arg("convert").arg(&cut).arg("-o").arg(&conv));
    assert_eq!(c.status.code(), Some(2), "{}", text(&c.stderr));
    assert!(
        text(&c.stderr).contains("WITHOUT an end record"),
        "{}",
        text(&c.stderr)
    );
    let dump = run(vpath().arg("dump").arg(&conv));
    assert!(
        text(&dump.stdout).contains("NOT ended cleanly"),
        "{}",
        text(&dump.stderr)
    );
}

#[test]
fn demo_quick_is_exact_for_thread_per_request_and_never_wrong() {
    if !need_root("demo_quick_is_exact_for_thread_per_request_and_never_wrong") {
        return;
    }
    for concurrency in ["8", "64"] {
        demo_at(concurrency, false);
    }
    // Without content capture the probes know no message boundaries from
    // bytes; a thread pool's reader thread reads request after request on
    // one connection, and merging those receives made its paths wrong.
    demo_at("8", true);
}

fn demo_at(concurrency: &str, no_content: bool) {
    let d = tmpdir(&format!("demo-{concurrency}-{no_content}"));
    let out = run(vpath()
        .args(["demo", "--quick", "--no-overhead", "--json"])
        .args(no_content.then_some("--no-content"))
        .args(["--concurrency", concurrency, "--workdir"])
        .arg(&*d));
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let j: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(
        j["concurrency"].to_string(),
        concurrency,
        "the run used what was asked"
    );
    assert_eq!(j["content"], if no_content { "off" } else { "labels" });
    // Thread-per-request (the paper's model) and thread-pool hand-off are
    // exact on every path; event loops are never wrong.
    for m in ["thread-per-request", "thread-pool"] {
        let a = &j["accuracy"][m];
        // The reader runs at a raised priority so that hundreds of vApp
        // threads cannot starve it: no event may be lost, or exactness
        // would go unchecked here.
        assert_eq!(
            a["analyzer"]["events_lost"].as_u64(),
            Some(0),
            "{m} at {concurrency}: events lost: {a}"
        );
        assert!(
            a["paths"].as_u64().unwrap() > 100,
            "{m} at {concurrency}: {a}"
        );
        assert_eq!(a["exact"], a["paths"], "{m} at {concurrency}: {a}");
    }
    for m in ["thread-per-request", "thread-pool", "event-loop"] {
        assert_eq!(j["accuracy"][m]["wrong"], 0, "{m}: {}", j["accuracy"][m]);
    }
    assert!(stdout.contains("Accuracy per execution model"));
    // Nothing left behind: no namespaces of this run.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = text(&ns.stdout);
    let run_ns: Vec<&str> = j["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!run_ns.is_empty());
    for n in run_ns {
        assert!(!ns.contains(n), "{n} left behind: {ns}");
    }
}
