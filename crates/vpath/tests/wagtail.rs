//! Wagtail end to end (issue 5): ab in a client host -> Wagtail (Django) under gunicorn sync workers in a web
//! host -> PostgreSQL 15 in a db host, each host a network namespace, as `stacks/wagtail` sets it up; recorded
//! host-wide by `vpath record --payload-bytes 4096` under `ab` load, analyzed, and judged by the independent
//! checker (`vpath-stacks`), which compares the SQL in each path with PostgreSQL's own statement log (per session,
//! with the session's client port) and never uses vpath's causality.
//!
//! `.ci/run` installs and starts the stack and seeds its items. Outside CI the test skips, saying why, when the
//! stack is not running.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{exe, need_root, run, text, tmpdir};

fn stack_dir() -> PathBuf {
    std::env::var_os("VPATH_wagtail")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/vpath-stacks/wagtail"))
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../stacks/wagtail")
}

/// gunicorn and PostgreSQL run and the items exist.
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
    if !stack_dir().join("site/page-ids.tsv").exists() {
        return Err("the stack has no items (stack.sh pages)".into());
    }
    Ok(())
}

/// Records `n` item views at concurrency `c` and checks every path.
fn record_and_check(n: u32, c: u32) {
    let dir = tmpdir(&format!("wagtail-c{c}"));
    let log = dir.0.join("run.vpl");
    let paths = dir.0.join("paths.jsonl");
    let mut rec = Command::new(exe());
    rec.args([
        "record",
        "--payload-bytes",
        "4096",
        "--port",
        "18000",
        "--port",
        "15432",
    ]);
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
        vpath_stacks::wagtail::check_stack_dir(&paths, &stack_dir(), None).expect("checker");
    eprintln!("c={c}: {}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.requests, Some(n as u64), "ab completed every view");
    assert_eq!(report.item_paths, n as usize, "one path per item view");
    assert_eq!(report.wrong_stitch_paths, 0, "no wrong stitch");
    assert_eq!(
        report.session_mismatch_paths, 0,
        "every connection's statements are its session's"
    );
    assert_eq!(
        report.unmatched_item_sessions, 0,
        "every item session is in a path"
    );
    assert_eq!(
        report.missing_statements, 0,
        "every item statement is in its path"
    );
    assert_eq!(report.surplus_statements, 0, "and in no other");
    assert_eq!(
        report.log_sessions, n as usize,
        "one PostgreSQL session per request (CONN_MAX_AGE = 0)"
    );
    assert_eq!(report.exact, n as usize, "every path exact: {report:?}");
    assert!(report.all_exact());
}

#[test]
fn wagtail_paths_are_exact_at_concurrency_1_and_8() {
    if !need_root("wagtail_paths_are_exact_at_concurrency_1_and_8") {
        return;
    }
    if let Err(why) = stack_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("CI must set up the Wagtail stack (.ci/run): {why}");
        }
        eprintln!("SKIPPED wagtail test: {why}; run stacks/wagtail/stack.sh install start pages");
        return;
    }
    record_and_check(60, 1);
    record_and_check(160, 8);
}
