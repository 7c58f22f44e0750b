//! Tomcat end to end (issue 5): Debian's Tomcat 10 (NIO connector: a poller thread hands each connection to an
//! exec-pool thread) serving item.jsp, which queries MariaDB over JDBC (Connector/J), as `stacks/tomcat` sets it
//! up; recorded by `vpath record --payload-bytes 4096` under `ab` load, analyzed, and judged by the independent
//! checker (`vpath_stacks::tomcat`), which compares the SQL text in each path with MariaDB's general query log
//! and never uses vpath's causality.
//!
//! `.ci/run` installs and starts the stack and seeds its items. Outside CI the test skips, saying why, when the
//! stack is not running.

mod common;

use common::{tmpdir, Stack};

const STACK: Stack = Stack {
    name: "tomcat",
    dir_env: "VPATH_TOMCAT_DIR",
    default_dir: "/tmp/vpath-stacks/tomcat",
    tiers: 2,
    seeded: "run/pages.done",
    ports: &["8081", "3307"],
};

/// Records `n` requests at concurrency `c` and checks every path.
fn record_and_check(n: u32, c: u32) {
    let dir = tmpdir(&format!("tomcat-c{c}"));
    let paths = STACK.record_load(&dir.0, n, c);
    let report =
        vpath_stacks::tomcat::check_stack_dir(&paths, &STACK.dir(), None).expect("checker");
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
    if !STACK.available("tomcat_paths_are_exact_at_concurrency_1_and_8") {
        return;
    }
    record_and_check(100, 1);
    record_and_check(200, 8);
}
