//! The Wagtail checker on hand-made paths and PostgreSQL log snippets, including the cases it must fail (a
//! swapped, missing or duplicated statement, ...): a checker that cannot fail is worthless.

use serde_json::{json, Value};
use vpath_stacks::read_paths;
use vpath_stacks::wagtail::{
    self, check, item_of_target, parse_pglog, pglog_window, Config, Items, Report,
};

/// Item N: page id N + 2, tree path 00010001 + N in base 36 (as `seed_items` makes them under the home page).
fn items() -> Items {
    Items::synthetic(100, 2)
}

fn path36(n: u32) -> String {
    let d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut s = String::new();
    let mut m = n;
    for _ in 0..4 {
        s.insert(0, d[(m % 36) as usize] as char);
        m /= 36;
    }
    format!("00010001{s}")
}

const SETCONF: &str = "SELECT set_config('TimeZone', 'UTC', false)";
const SITE: &str = "SELECT \"wagtailcore_site\".\"id\", \"wagtailcore_site\".\"hostname\", \"wagtailcore_site\".\"root_page_id\" FROM \"wagtailcore_site\" INNER JOIN \"wagtailcore_page\" ON (\"wagtailcore_site\".\"root_page_id\" = \"wagtailcore_page\".\"id\") WHERE (\"wagtailcore_site\".\"hostname\" = '10.88.0.3' OR \"wagtailcore_site\".\"is_default_site\") ORDER BY 7 ASC";

/// The statements of one view of item N, as Wagtail 8 sends them (columns shortened).
fn view_sql(n: u32) -> Vec<String> {
    let id = n + 2;
    vec![
        SETCONF.into(),
        SITE.into(),
        format!("SELECT \"wagtailcore_page\".\"id\", \"wagtailcore_page\".\"path\" FROM \"wagtailcore_page\" WHERE (\"wagtailcore_page\".\"depth\" = 3 AND \"wagtailcore_page\".\"path\" BETWEEN '000100010000' AND '00010001ZZZZ' AND \"wagtailcore_page\".\"slug\" = 'item-{n}') LIMIT 21"),
        format!("SELECT \"wagtailcore_page\".\"id\", \"items_itempage\".\"body\" FROM \"items_itempage\" INNER JOIN \"wagtailcore_page\" ON (\"items_itempage\".\"page_ptr_id\" = \"wagtailcore_page\".\"id\") WHERE \"items_itempage\".\"page_ptr_id\" = {id} LIMIT 21"),
        format!("SELECT \"wagtailcore_page\".\"id\", \"wagtailcore_page\".\"alias_of_id\" FROM \"wagtailcore_page\" WHERE (\"wagtailcore_page\".\"path\" IN ('0001', '00010001', '{}') AND NOT (\"wagtailcore_page\".\"id\" = {id})) ORDER BY \"wagtailcore_page\".\"path\" ASC", path36(n)),
        format!("SELECT \"wagtailcore_pageviewrestriction\".\"id\", \"wagtailcore_pageviewrestriction\".\"page_id\" FROM \"wagtailcore_pageviewrestriction\" WHERE \"wagtailcore_pageviewrestriction\".\"page_id\" IN (1, 2, {id})"),
    ]
}

fn span(
    kind: &str,
    proto: &str,
    local: &str,
    remote: &str,
    attrs: Value,
    children: Vec<Value>,
) -> Value {
    json!({"kind": kind, "protocol": proto, "local": local, "remote": remote, "attrs": attrs, "children": children})
}

/// A view as vpath shows it: ab (origin) -> gunicorn (http) -> statements on the connection from `db_port`.
fn view(id: u64, n: u32, db_port: u16, sql: &[String]) -> Value {
    let calls: Vec<Value> = sql
        .iter()
        .map(|q| {
            span(
                "server",
                "postgresql",
                "10.88.0.4:15432",
                &format!("10.88.0.3:{db_port}"),
                json!({"db.query.text": q}),
                vec![],
            )
        })
        .collect();
    let target = format!("/item-{n}/");
    let http = span(
        "server",
        "http",
        "10.88.0.3:18000",
        &format!("10.88.0.2:{}", 40000 + id),
        json!({"http.target": target}),
        calls,
    );
    let origin = span(
        "origin",
        "http",
        &format!("10.88.0.2:{}", 40000 + id),
        "10.88.0.3:18000",
        json!({"http.target": target}),
        vec![http],
    );
    json!({"path": id, "complete": true, "root": origin})
}

/// The Terminate that Django sends after gunicorn wrote the reply: a path of its own.
fn terminate(id: u64, db_port: u16) -> Value {
    let srv = span(
        "server",
        "postgresql",
        "10.88.0.4:15432",
        &format!("10.88.0.3:{db_port}"),
        json!({}),
        vec![],
    );
    let mut o = span(
        "origin",
        "postgresql",
        &format!("10.88.0.3:{db_port}"),
        "10.88.0.4:15432",
        json!({}),
        vec![srv],
    );
    o["issues"] = json!(["unattributed"]);
    json!({"path": id, "complete": false, "root": o})
}

/// PostgreSQL's log for sessions (item, client port, statements), between the load markers.
fn pg_log(sessions: &[(u32, u16, Vec<String>)]) -> String {
    let mut s = String::from(
        "2026-11-26 09:38:40.100 UTC [100] 6b07fe20.64  LOG:  checkpoint starting: time\n\
         2026-11-26 09:38:42.309 UTC [200] 6b07fe22.c8 postgres@postgres LOG:  statement: SELECT 'vpath-load-begin'\n",
    );
    for (i, (_, port, stmts)) in sessions.iter().enumerate() {
        let pid = 1000 + i;
        let sid = format!("6b07fe22.{pid:x}");
        s += &format!("2026-11-26 09:38:42.356 UTC [{pid}] {sid} [unknown]@[unknown] LOG:  connection received: host=10.88.0.3 port={port}\n");
        s += &format!("2026-11-26 09:38:42.366 UTC [{pid}] {sid} wagtail@wagtail LOG:  connection authorized: user=wagtail database=wagtail\n");
        for q in stmts {
            s += &format!(
                "2026-11-26 09:38:42.367 UTC [{pid}] {sid} wagtail@wagtail LOG:  statement: {q}\n"
            );
        }
        s += &format!("2026-11-26 09:38:42.389 UTC [{pid}] {sid} wagtail@wagtail LOG:  disconnection: session time: 0:00:00.033 user=wagtail database=wagtail host=10.88.0.3 port={port}\n");
    }
    s += "2026-11-26 09:38:50.000 UTC [300] 6b07fe2a.12c postgres@postgres LOG:  statement: SELECT 'vpath-load-end'\n";
    s += "2026-11-26 09:38:51.000 UTC [301] 6b07fe2b.12d wagtail@wagtail LOG:  statement: SELECT 1 FROM \"wagtailcore_page\" WHERE \"slug\" = 'item-1'\n";
    s
}

fn cfg() -> Config {
    Config {
        items: items(),
        ..Config::default()
    }
}

fn run(paths: &[Value], log: &str, requests: Option<u64>) -> Report {
    let text: String = paths.iter().map(|p| format!("{p}\n")).collect();
    let paths = read_paths(text.as_bytes()).unwrap();
    let entries = parse_pglog(log);
    let window = pglog_window(&entries, "vpath-load-begin", "vpath-load-end");
    check(&paths, window, requests, &cfg())
}

/// Views of items 1..=k, view i on database port 50000 + i, with their Terminate paths; and the matching log.
fn good(k: u32) -> (Vec<Value>, Vec<(u32, u16, Vec<String>)>) {
    let mut paths = Vec::new();
    let mut sessions = Vec::new();
    for n in 1..=k {
        let port = 50000 + n as u16;
        paths.push(view(n as u64, n, port, &view_sql(n)));
        paths.push(terminate(1000 + n as u64, port));
        sessions.push((n, port, view_sql(n)));
    }
    (paths, sessions)
}

#[test]
fn items_are_named_by_slug_url_path_tree_path_and_id() {
    let it = items();
    let set = |v: &[u32]| {
        v.iter()
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
    };
    let q = view_sql(37);
    assert_eq!(it.in_sql(&q[0]), set(&[]));
    assert_eq!(
        it.in_sql(&q[1]),
        set(&[]),
        "the site query names no item (ids 1, 2 are root and home)"
    );
    assert_eq!(it.in_sql(&q[2]), set(&[37]));
    assert_eq!(it.in_sql(&q[3]), set(&[37]));
    assert_eq!(it.in_sql(&q[4]), set(&[37]));
    assert_eq!(it.in_sql(&q[5]), set(&[37]));
    assert_eq!(
        it.in_sql("WHERE \"url_path\" = '/home/item-10/'"),
        set(&[10])
    );
    assert_eq!(
        it.in_sql("WHERE \"slug\" = 'item-1'"),
        set(&[1]),
        "item-1 is not item-10"
    );
    assert_eq!(
        it.in_sql("WHERE \"slug\" IN ('item-1', 'item-10')"),
        set(&[1, 10])
    );
    assert_eq!(
        it.in_sql("FROM \"items_itempage\" LIMIT 21"),
        set(&[]),
        "itempage and LIMIT are not items"
    );
    assert_eq!(
        it.in_sql("WHERE \"wagtailcore_page\".\"depth\" = 5"),
        set(&[])
    );
    assert_eq!(
        it.in_sql("WHERE \"wagtailcore_revision\".\"id\" = 5"),
        set(&[]),
        "other tables' ids are not page ids"
    );
    assert_eq!(
        it.in_sql(&format!("WHERE \"path\" = '{}'", path36(36))),
        set(&[36])
    );
    assert_eq!(path36(36), "000100010010");
    assert_eq!(item_of_target("/item-7/"), Some(7));
    assert_eq!(
        item_of_target("http://10.88.0.3:18000/item-70/?x=1"),
        Some(70)
    );
    assert_eq!(item_of_target("/item-7x/"), None);
    assert_eq!(item_of_target("/"), None);
    let tsv =
        Items::parse_tsv("3\titem-1\t000100010001\t/home/item-1/\n2\thome\t00010001\t/home/\n");
    assert_eq!(tsv.by_id.get(&3), Some(&1));
    assert_eq!(tsv.by_id.len(), 1);
}

#[test]
fn pg_log_entries_sessions_ports_and_window() {
    let log = "2026-11-26 09:38:40.100 UTC [100] 6b07fe20.64  LOG:  checkpoint starting: time\n\
        2026-11-26 09:38:42.309 UTC [200] 6b07fe22.c8 postgres@postgres LOG:  statement: SELECT 'vpath-load-begin'\n\
        2026-11-26 09:38:42.356 UTC [201] 6b07fe22.c9 [unknown]@[unknown] LOG:  connection received: host=10.88.0.3 port=34362\n\
        2026-11-26 09:38:42.367 UTC [201] 6b07fe22.c9 wagtail@wagtail LOG:  statement: SELECT 1\n\
        \tFROM x\n\
        2026-11-26 09:38:42.368 UTC [201] 6b07fe22.c9 wagtail@wagtail LOG:  execute <unnamed>: SELECT $1\n\
        2026-11-26 09:38:42.368 UTC [201] 6b07fe22.c9 wagtail@wagtail DETAIL:  parameters: $1 = '5'\n\
        2026-11-26 09:38:42.369 UTC [202] 6b07fe22.ca postgres@postgres LOG:  statement: SELECT 'vpath-load-end'\n";
    let e = parse_pglog(log);
    assert_eq!(e.len(), 7);
    assert_eq!(e[0].pid, 100);
    assert_eq!(e[0].severity, "LOG");
    assert_eq!(
        e[2].connection_port(),
        Some(("10.88.0.3".to_string(), 34362))
    );
    assert_eq!(e[3].session, "6b07fe22.c9");
    assert_eq!(e[3].statement(), Some("SELECT 1\n\tFROM x"));
    assert_eq!(
        wagtail::normalize_sql(e[3].statement().unwrap()),
        "SELECT 1 FROM x"
    );
    assert_eq!(e[4].statement(), Some("SELECT $1"));
    assert_eq!(e[5].statement(), None, "a DETAIL is no statement");
    let w = pglog_window(&e, "vpath-load-begin", "vpath-load-end");
    assert_eq!(w.len(), 4);
    assert_eq!(w[0].line, 3);
}

#[test]
fn exact_paths_pass() {
    let (paths, sessions) = good(6);
    let r = run(&paths, &pg_log(&sessions), Some(6));
    assert_eq!(r.item_paths, 6);
    assert_eq!(r.exact, 6, "{r:#?}");
    assert_eq!(r.background_paths, 6, "the Terminate paths");
    assert_eq!(r.log_sessions, 6);
    assert_eq!(r.log_item_statements, 24);
    assert_eq!(r.path_item_statements, 24);
    assert!(r.all_exact(), "{r:#?}");
    assert_eq!(r.issues.get("unattributed"), Some(&6));
    assert_eq!(r.findings_total, 0, "{:?}", r.findings);
}

#[test]
fn a_truncated_statement_matches_its_prefix() {
    let (mut paths, sessions) = good(3);
    let mut q = view_sql(2);
    q[1].truncate(60);
    paths[2] = view(2, 2, 50002, &q);
    let r = run(&paths, &pg_log(&sessions), Some(3));
    assert!(r.all_exact(), "{r:#?}");
}

#[test]
fn swapped_statements_fail() {
    // item 1's slug lookup sits in item 2's path and the other way round
    let (mut paths, sessions) = good(4);
    let mut a = view_sql(1);
    let mut b = view_sql(2);
    std::mem::swap(&mut a[2], &mut b[2]);
    paths[0] = view(1, 1, 50001, &a);
    paths[2] = view(2, 2, 50002, &b);
    let r = run(&paths, &pg_log(&sessions), Some(4));
    assert!(!r.all_exact());
    assert_eq!(r.wrong_stitch_paths, 2, "{r:#?}");
    assert_eq!(r.wrong_items, 2);
    assert_eq!(r.session_mismatch_paths, 2);
    assert_eq!(r.exact, 2);
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "wrong-stitch" && f.item == Some(1)));
}

#[test]
fn a_swapped_statement_that_names_no_item_fails_too() {
    // the set_config of view 1 moved to view 2: no item is named wrongly, but the sessions do not match
    let (mut paths, sessions) = good(3);
    let mut a = view_sql(1);
    let mut b = view_sql(2);
    let moved = a.remove(0);
    b.push(moved);
    paths[0] = view(1, 1, 50001, &a);
    paths[2] = view(2, 2, 50002, &b);
    let r = run(&paths, &pg_log(&sessions), Some(3));
    assert!(!r.all_exact());
    assert_eq!(r.wrong_stitch_paths, 0);
    assert_eq!(
        r.missing_statements, 0,
        "set_config names no item: only the session check sees this"
    );
    assert_eq!(r.session_mismatch_paths, 2, "{r:#?}");
    assert_eq!(
        r.unmatched_item_sessions, 2,
        "session 1 lost a statement, session 2 is claimed by no path"
    );
    assert_eq!(r.exact, 1);
}

#[test]
fn a_missing_statement_fails() {
    let (mut paths, sessions) = good(3);
    let mut q = view_sql(3);
    q.remove(4);
    paths[4] = view(3, 3, 50003, &q);
    let r = run(&paths, &pg_log(&sessions), Some(3));
    assert!(!r.all_exact());
    assert_eq!(r.missing_statements, 1, "{r:#?}");
    assert_eq!(r.session_mismatch_paths, 1);
    assert_eq!(r.unmatched_item_sessions, 1);
    assert_eq!(r.exact, 2);
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "missing" && f.item == Some(3)));
}

#[test]
fn a_statement_in_a_path_of_its_own_is_missing_and_found_elsewhere() {
    let (mut paths, sessions) = good(2);
    let mut q = view_sql(2);
    let lost = q.remove(3);
    paths[2] = view(2, 2, 50002, &q);
    let bg = span(
        "origin",
        "postgresql",
        "10.88.0.3:50002",
        "10.88.0.4:15432",
        json!({"db.query.text": lost}),
        vec![],
    );
    paths.push(json!({"path": 99, "complete": false, "root": bg}));
    let r = run(&paths, &pg_log(&sessions), Some(2));
    assert_eq!(r.missing_statements, 1);
    assert_eq!(r.missing_found_elsewhere, 1);
    assert_eq!(r.non_item_path_item_statements, 1);
    assert!(!r.all_exact());
}

#[test]
fn a_duplicated_statement_fails() {
    let (mut paths, sessions) = good(3);
    let mut q = view_sql(1);
    q.push(q[3].clone());
    paths[0] = view(1, 1, 50001, &q);
    let r = run(&paths, &pg_log(&sessions), Some(3));
    assert!(!r.all_exact());
    assert_eq!(r.surplus_statements, 1, "{r:#?}");
    assert_eq!(r.session_mismatch_paths, 1);
    assert_eq!(r.exact, 2);
}

#[test]
fn a_duplicated_path_fails() {
    // the same view twice (vpath emitting one request's tree twice): surplus, and the second finds no session
    let (mut paths, sessions) = good(2);
    let mut dup = paths[0].clone();
    dup["path"] = json!(77);
    paths.push(dup);
    let r = run(&paths, &pg_log(&sessions), Some(2));
    assert!(!r.all_exact());
    assert_eq!(r.item_paths, 3);
    assert_eq!(r.surplus_statements, 4);
    assert_eq!(r.session_mismatch_paths, 1);
}

#[test]
fn a_connection_the_log_never_saw_fails() {
    let (mut paths, sessions) = good(2);
    paths[0] = view(1, 1, 60001, &view_sql(1));
    let r = run(&paths, &pg_log(&sessions), Some(2));
    assert!(!r.all_exact());
    assert_eq!(r.session_mismatch_paths, 1);
    assert!(r
        .findings
        .iter()
        .any(|f| f.detail.contains("no log session from that port")));
}

#[test]
fn a_nested_request_for_another_item_is_a_wrong_stitch() {
    let (mut paths, sessions) = good(2);
    let inner = view(9, 2, 59999, &[]);
    paths[0]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap()
        .push(inner["root"]["children"][0].clone());
    let r = run(&paths, &pg_log(&sessions), Some(2));
    assert_eq!(r.wrong_stitch_paths, 1, "{r:#?}");
    assert!(!r.all_exact());
}

#[test]
fn incomplete_chainless_and_lost_requests_are_not_exact() {
    let (mut paths, sessions) = good(3);
    paths[0]["complete"] = json!(false);
    paths[2] = view(2, 2, 50002, &[]); // no SQL at all under the HTTP span
    let r = run(&paths, &pg_log(&sessions), Some(3));
    assert_eq!(r.incomplete, 1);
    assert_eq!(r.no_chain, 1);
    assert_eq!(r.missing_statements, 4);
    assert_eq!(r.exact, 1);
    assert!(!r.all_exact());
    // every path fine, but ab counted one request more than there are paths
    let (paths, sessions) = good(3);
    let r = run(&paths, &pg_log(&sessions), Some(4));
    assert_eq!(r.exact, 3);
    assert!(!r.all_exact());
}

#[test]
fn a_reused_client_port_is_matched_by_content() {
    // two sessions from the same client port (the port came round again): each path takes the session it equals
    let (mut paths, mut sessions) = good(2);
    paths[2] = view(2, 2, 50001, &view_sql(2));
    sessions[1].1 = 50001;
    let r = run(&paths, &pg_log(&sessions), Some(2));
    assert!(r.all_exact(), "{r:#?}");
}

#[test]
fn persistent_connections_match_runs_of_one_session() {
    // one worker's connection (port 50001) serves three requests: one session, three runs
    let mut paths = Vec::new();
    let mut all = Vec::new();
    for n in 1..=3u32 {
        let mut q = view_sql(n);
        if n > 1 {
            q.remove(0); // set_config only when the connection opens
        }
        paths.push(view(n as u64, n, 50001, &q));
        all.extend(q);
    }
    let log = pg_log(&[(1, 50001, all.clone())]);
    let r = run(&paths, &log, Some(3));
    assert!(r.all_exact(), "{r:#?}");
    assert_eq!(r.log_sessions, 1);
    // the second request's ancestor query moved into the third request's path: runs no longer fit
    let mut bad = paths.clone();
    let mut q2 = view_sql(2);
    q2.remove(0);
    let moved = q2.remove(3);
    let mut q3 = view_sql(3);
    q3.remove(0);
    q3.insert(0, moved);
    bad[1] = view(2, 2, 50001, &q2);
    bad[2] = view(3, 3, 50001, &q3);
    let r = run(&bad, &log, Some(3));
    assert!(!r.all_exact());
    assert_eq!(r.wrong_stitch_paths, 1);
    assert!(r.session_mismatch_paths >= 1, "{r:#?}");
    // statements out of order on one connection are no run either
    let mut q1 = view_sql(1);
    q1.swap(2, 3);
    let mut swapped = paths.clone();
    swapped[0] = view(1, 1, 50001, &q1);
    let r = run(&swapped, &log, Some(3));
    assert!(!r.all_exact());
    assert!(r.session_mismatch_paths >= 1, "{r:#?}");
}

#[test]
fn a_connection_opened_before_the_window_takes_its_port_from_the_whole_log() {
    let sid = "6b07fe22.3e8";
    let mut log = format!("2026-11-26 09:38:41.000 UTC [1000] {sid} [unknown]@[unknown] LOG:  connection received: host=10.88.0.3 port=50001\n");
    log += "2026-11-26 09:38:42.309 UTC [200] 6b07fe22.c8 postgres@postgres LOG:  statement: SELECT 'vpath-load-begin'\n";
    for q in view_sql(1) {
        log += &format!(
            "2026-11-26 09:38:42.367 UTC [1000] {sid} wagtail@wagtail LOG:  statement: {q}\n"
        );
    }
    log += "2026-11-26 09:38:50.000 UTC [300] 6b07fe2a.12c postgres@postgres LOG:  statement: SELECT 'vpath-load-end'\n";
    let text = format!("{}\n", view(1, 1, 50001, &view_sql(1)));
    let paths = read_paths(text.as_bytes()).unwrap();
    let entries = parse_pglog(&log);
    let window = pglog_window(&entries, "vpath-load-begin", "vpath-load-end");
    let r = check(&paths, window, Some(1), &cfg());
    assert_eq!(
        r.session_mismatch_paths, 1,
        "the window alone does not know the port"
    );
    let with_ports = Config {
        session_ports: wagtail::session_ports(&entries),
        ..cfg()
    };
    let r = check(&paths, window, Some(1), &with_ports);
    assert!(r.all_exact(), "{r:#?}");
}

#[test]
fn statements_after_the_end_marker_do_not_count() {
    let (paths, sessions) = good(1);
    let r = run(&paths, &pg_log(&sessions), Some(1));
    assert!(
        r.all_exact(),
        "the item-1 statement after 'vpath-load-end' is outside the window: {r:#?}"
    );
}
