//! Wagtail end to end (issue 5): ab in a client host -> Wagtail (Django) under gunicorn sync workers in a web
//! host -> PostgreSQL 15 in a db host, each host a network namespace, as `stacks/wagtail` sets it up; recorded
//! host-wide by `vpath record --payload-bytes 4096` under `ab` load, analyzed, and judged by the independent
//! checker (`vpath-stacks`), which compares the SQL in each path with PostgreSQL's own statement log (per session,
//! with the session's client port) and never uses vpath's causality.
//!
//! `.ci/run` installs and starts the stack and seeds its items. Outside CI the test skips, saying why, when the
//! stack is not running.

mod common;

use common::{tmpdir, Stack};

const STACK: Stack = Stack {
    name: "wagtail",
    dir_env: "VPATH_wagtail",
    default_dir: "/tmp/vpath-stacks/wagtail",
    tiers: 2,
    seeded: "site/page-ids.tsv",
    ports: &["18000", "15432"],
};

/// Records `n` requests at concurrency `c` and checks every path.
fn record_and_check(n: u32, c: u32) {
    let dir = tmpdir(&format!("wagtail-c{c}"));
    let paths = STACK.record_load(&dir.0, n, c);
    let report =
        vpath_stacks::wagtail::check_stack_dir(&paths, &STACK.dir(), None).expect("checker");
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
    if !STACK.available("wagtail_paths_are_exact_at_concurrency_1_and_8") {
        return;
    }
    record_and_check(60, 1);
    record_and_check(160, 8);
}
