//! MediaWiki end to end (issue 5): Debian's MediaWiki on Apache `mpm_event` ->
//! php-fpm (FastCGI over TCP) -> MariaDB + memcached, as `stacks/mediawiki`
//! sets it up, recorded by `vpath record --payload-bytes 4096` under `ab`
//! load, analyzed, and judged by the independent checker (`vpath-stacks`),
//! which compares the request content in each path (SQL text, cache keys)
//! with MariaDB's general query log and never uses vpath's causality.
//!
//! `.ci/run` installs and starts the stack and creates its pages. Outside CI
//! the test skips, saying why, when the stack is not running.

mod common;

use common::{tmpdir, Stack};

const STACK: Stack = Stack {
    name: "mediawiki",
    dir_env: "VPATH_STACK_DIR",
    default_dir: "/tmp/vpath-stacks/mediawiki",
    tiers: 4,
    seeded: "mw/page-ids.tsv",
    ports: &["8080", "9000", "3306", "11211"],
};

/// Records `n` requests at concurrency `c` and checks every path.
fn record_and_check(n: u32, c: u32) {
    let dir = tmpdir(&format!("mediawiki-c{c}"));
    let paths = STACK.record_load(&dir.0, n, c);
    let report =
        vpath_stacks::mediawiki::check_stack_dir(&paths, &STACK.dir(), None).expect("checker");
    eprintln!("c={c}: {}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.requests, Some(n as u64), "ab completed every view");
    assert_eq!(report.page_paths, n as usize, "one path per page view");
    assert_eq!(report.wrong_stitch_paths, 0, "no wrong stitch");
    assert_eq!(
        report.connection_mismatch_paths, 0,
        "no statement in the wrong path"
    );
    assert_eq!(
        report.missing_queries, 0,
        "every page statement is in its path"
    );
    assert_eq!(report.surplus_queries, 0, "and in no other");
    assert_eq!(report.exact, n as usize, "every path exact: {report:?}");
}

#[test]
fn mediawiki_paths_are_exact_at_concurrency_1_and_8() {
    if !STACK.available("mediawiki_paths_are_exact_at_concurrency_1_and_8") {
        return;
    }
    record_and_check(100, 1);
    record_and_check(200, 8);
}
