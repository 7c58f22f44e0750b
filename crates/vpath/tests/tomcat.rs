//! Tomcat end to end (issue 5): Debian's Tomcat 10 (NIO connector: a poller thread hands each connection to an
//! exec-pool thread) serving item.jsp, which queries MariaDB over JDBC (Connector/J), as `stacks/tomcat` sets it
//! up; recorded by `vpath record --payload-bytes 4096` under `ab` load, analyzed, and judged by the independent
//! checker (`vpath_stacks::tomcat`), which compares the SQL text in each path with MariaDB's general query log
//! and never uses vpath's causality.
//!
//! `.ci/run` installs and starts the stack and seeds its items. Outside CI the test skips, saying why, when the
//! stack is not running.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{exe, need_root, run, text, tmpdir};

fn stack_dir() -> PathBuf {
    std::env::var_os("VPATH_TOMCAT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/vpath-stacks/tomcat"))
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../stacks/tomcat")
}

/// Both tiers run and the items are seeded.
fn stack_ready() -> Result<(), String> {
    let out = Command::new("bash")
        .arg(scripts().join("stack.sh"))
        .arg("status")
        .output()
        .map_err(|e| format!("running stack.sh status: {e}"))?;
    let status = text(&out.stdout);
    let running = status.lines().filter(|l| l.contains(" running ")).count();
    if running != 2 {
        return Err(format!("the stack is not running:\n{status}"));
    }
    if !stack_dir().join("run/pages.done").exists() {
        return Err("the stack has no items (stack.sh pages)".into());
    }
    Ok(())
}

/// Records `n` item views at concurrency `c` and checks every path.
fn record_and_check(n: u32, c: u32) {
    let dir = tmpdir(&format!("tomcat-c{c}"));
    let log = dir.0.join("run.vpl");
    let paths = dir.0.join("paths.jsonl");
    let mut rec = Command::new(exe());
    rec.args(["record", "--payload-bytes", "4096"]);
    for port in ["8081", "3307"] {
        rec.args(["--port", port]);
    }
    rec.arg("-o").arg(&log).arg("--").arg("bash");
    rec.arg(scripts().join("stack.sh"));
    rec.args(["load", &n.to_string(), &c.to_string()]);
    let out = run(&mut rec);
    let err = text(&out.stderr);
    assert!(err.contains("0 lost in the kernel"), "{err}");
    let out = run(Command::new(exe())
        .arg("analyze")
        .arg(&log)
        .args(["--format", "jsonl", "-o"])
        .arg(&paths));
    eprintln!("{}", text(&out.stderr));
    let report =
        vpath_stacks::tomcat::check_stack_dir(&paths, &stack_dir(), None).expect("checker");
    eprintln!("c={c}: {}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.requests, Some(n as u64), "ab completed every view");
    assert_eq!(report.item_paths, n as usize, "one path per item view");
    assert_eq!(report.wrong_stitch_paths, 0, "no wrong stitch");
    assert_eq!(
        report.connection_mismatch_paths, 0,
        "no statement in the wrong path"
    );
    assert_eq!(
        report.missing_queries, 0,
        "every item statement is in its path"
    );
    assert_eq!(report.surplus_queries, 0, "and in no other");
    assert_eq!(report.count_mismatch_paths, 0, "three statements per path");
    assert_eq!(
        report.complete_but_lacking, 0,
        "no path is complete without its connection's set-up statements"
    );
    assert_eq!(report.exact, n as usize, "every path exact: {report:?}");
}

#[test]
fn tomcat_paths_are_exact_at_concurrency_1_and_8() {
    if !need_root("tomcat_paths_are_exact_at_concurrency_1_and_8") {
        return;
    }
    if let Err(why) = stack_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("CI must set up the Tomcat stack (.ci/run): {why}");
        }
        eprintln!("SKIPPED tomcat test: {why}; run stacks/tomcat/stack.sh install start pages");
        return;
    }
    record_and_check(100, 1);
    record_and_check(200, 8);
}
