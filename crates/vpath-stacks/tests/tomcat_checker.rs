//! The Tomcat checker on hand-made paths and general-log snippets, including the cases it must fail (swapped,
//! missing, duplicated statements, a statement on the wrong connection): a checker that cannot fail is worthless.

use serde_json::{json, Value};
use vpath_stacks::tomcat::{check, Config, ConnMode, Report};
use vpath_stacks::{genlog, read_paths};

const INIT: [&str; 2] = [
    "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')",
    "SELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment",
];

/// What item.jsp runs for Item_N.
fn stmts(n: u32) -> Vec<String> {
    vec![
        format!("SELECT id, name, price, views FROM item WHERE name = 'Item_{n}'"),
        format!("SELECT id, stars, body FROM review WHERE item_name = 'Item_{n}' ORDER BY id"),
        format!("UPDATE item SET views = views + 1 WHERE name = 'Item_{n}'"),
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
    json!({
        "kind": kind, "host": "h", "pid": 1, "tid": 1, "comm": "x", "netns": 1, "protocol": proto,
        "local": local, "remote": remote, "start_ns": 1, "end_ns": 2, "bytes_in": 1, "bytes_out": 1,
        "attrs": attrs, "children": children
    })
}

/// ab (origin) -> tomcat (http) -> the statements, on MariaDB connections from the given client ports.
fn view(id: u64, item: u32, queries: &[(u16, String)]) -> Value {
    let calls: Vec<Value> = queries
        .iter()
        .map(|(port, q)| {
            span(
                "server",
                "mysql",
                "127.0.0.1:3307",
                &format!("127.0.0.1:{port}"),
                json!({"db.query.text": q, "db.system.name": "mysql"}),
                vec![],
            )
        })
        .collect();
    let target = format!("/item.jsp?id={item}");
    let client = format!("127.0.0.1:{}", 50000 + id);
    let http = span(
        "server",
        "http",
        "127.0.0.1:8081",
        &client,
        json!({"http.target": target}),
        calls,
    );
    let origin = span(
        "origin",
        "http",
        &client,
        "127.0.0.1:8081",
        json!({"http.target": target}),
        vec![http],
    );
    json!({"path": id, "complete": true, "root": origin})
}

/// A view on one new connection (client port 41000 + id): the driver's init statements, then the item's.
fn direct_view(id: u64, item: u32) -> Value {
    let port = 41000 + id as u16;
    let q: Vec<(u16, String)> = INIT
        .iter()
        .map(|s| s.to_string())
        .chain(stmts(item))
        .map(|s| (port, s))
        .collect();
    view(id, item, &q)
}

fn log_header() -> String {
    "/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:\n\
     Tcp port: 3307  Unix socket: /tmp/t/mysqld.sock\nTime\t\t    Id Command\tArgument\n\
     261126  9:54:48\t     9 Connect\troot@localhost on  using Socket\n\
     \t\t     9 Query\tSELECT 'vpath-load-begin'\n\t\t     9 Quit\t\n"
        .to_string()
}

fn log_footer() -> &'static str {
    "\t\t    99 Query\tSELECT 'vpath-load-end'\n\t\t   100 Query\tSELECT id FROM item WHERE name = 'Item_3'\n"
}

/// The general log of views of `items`, connection i+10 serving view i (a new connection each).
fn direct_log(items: &[u32]) -> String {
    let mut s = log_header();
    for (i, n) in items.iter().enumerate() {
        let t = i + 10;
        s += &format!("261126  9:54:49\t  {t} Connect\tshop@127.0.0.1 on shop using TCP/IP\n");
        for q in INIT.iter().map(|s| s.to_string()).chain(stmts(*n)) {
            s += &format!("\t\t  {t} Query\t{q}\n");
        }
        s += &format!("\t\t  {t} Quit\t\n");
    }
    s + log_footer()
}

fn run(paths: &[Value], log: &str, requests: Option<u64>, cfg: &Config) -> Report {
    let text: String = paths.iter().map(|p| format!("{p}\n")).collect();
    let paths = read_paths(text.as_bytes()).unwrap();
    let entries = genlog::parse(log);
    let w = genlog::window(&entries, "vpath-load-begin", "vpath-load-end");
    check(&paths, w, requests, cfg)
}

fn three() -> Vec<Value> {
    vec![direct_view(1, 3), direct_view(2, 7), direct_view(3, 3)]
}

#[test]
fn all_exact_when_paths_match_the_log() {
    let r = run(
        &three(),
        &direct_log(&[3, 7, 3]),
        Some(3),
        &Config::default(),
    );
    assert_eq!((r.paths, r.item_paths, r.exact), (3, 3, 3), "{r:#?}");
    assert_eq!((r.log_item_queries, r.path_item_queries), (9, 9));
    assert!(r.all_exact(), "{r:#?}");
    assert_eq!(r.wrong(), 0);
    assert_eq!(r.findings_total, 0, "{:#?}", r.findings);
}

/// Item_3's UPDATE and Item_7's UPDATE trade places: both paths are wrong.
#[test]
fn swapped_statements_are_wrong_stitches() {
    let mut p = three();
    let a = p[0]["root"]["children"][0]["children"][4]["attrs"]["db.query.text"].take();
    let b = p[1]["root"]["children"][0]["children"][4]["attrs"]["db.query.text"].take();
    p[0]["root"]["children"][0]["children"][4]["attrs"]["db.query.text"] = b;
    p[1]["root"]["children"][0]["children"][4]["attrs"]["db.query.text"] = a;
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(r.wrong_stitch_paths, 2, "{r:#?}");
    assert_eq!(r.wrong_items, 2);
    assert_eq!(r.exact, 1);
    assert!(!r.all_exact());
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "wrong-stitch" && f.item == Some(7)));
    // and the statements are missing from their own item's paths
    assert_eq!(r.missing_queries, 2, "{r:#?}");
}

/// A path lacks its review query: missing, and the path's count is off.
#[test]
fn a_missing_statement_fails() {
    let mut p = three();
    p[1]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap()
        .remove(3);
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(r.missing_queries, 1, "{r:#?}");
    assert_eq!(r.count_mismatch_paths, 1);
    assert_eq!(r.connection_mismatch_paths, 1);
    assert_eq!(r.exact, 2);
    assert!(!r.all_exact());
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "missing" && f.item == Some(7)));
}

/// A path shows one statement twice (a duplicated span): surplus, count, connection.
#[test]
fn a_duplicated_statement_fails() {
    let mut p = three();
    let kids = p[2]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap();
    let dup = kids[2].clone();
    kids.push(dup);
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(r.surplus_queries, 1, "{r:#?}");
    assert_eq!(r.count_mismatch_paths, 1);
    assert_eq!(r.exact, 2);
    assert!(!r.all_exact());
}

/// The same statement in two paths of the same item (a statement counted twice, another lost) is caught by the
/// per-path count even though the item's multiset cannot tell which path lost it.
#[test]
fn a_statement_moved_between_two_paths_of_one_item_fails() {
    let mut p = three();
    let moved = p[0]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap()
        .remove(4);
    p[2]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap()
        .push(moved);
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(
        (r.missing_queries, r.surplus_queries),
        (0, 0),
        "same item: the multiset balances"
    );
    assert_eq!(r.count_mismatch_paths, 2, "{r:#?}");
    assert!(r.connection_mismatch_paths >= 1, "{r:#?}");
    assert_eq!(r.exact, 1);
    assert!(!r.all_exact());
}

/// Statements of one path split over two connections, where the log has them on one: connection mismatch.
#[test]
fn a_statement_on_the_wrong_connection_fails() {
    let s = stmts(7);
    let p = vec![
        direct_view(1, 3),
        view(
            2,
            7,
            &[
                (41002, s[0].clone()),
                (41002, s[1].clone()),
                (41999, s[2].clone()),
            ],
        ),
        direct_view(3, 3),
    ];
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(r.connection_mismatch_paths, 1, "{r:#?}");
    assert_eq!((r.missing_queries, r.surplus_queries), (0, 0));
    assert_eq!(r.exact, 2);
    assert!(!r.all_exact());
}

#[test]
fn incomplete_paths_and_lost_requests_are_not_exact() {
    let mut p = three();
    p[1]["complete"] = json!(false);
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!((r.incomplete, r.exact, r.wrong()), (1, 2, 0), "{r:#?}");
    assert!(!r.all_exact());
    // ab completed 4 requests, vpath shows 3 paths
    let r = run(
        &three(),
        &direct_log(&[3, 7, 3]),
        Some(4),
        &Config::default(),
    );
    assert_eq!(r.exact, 3);
    assert!(!r.all_exact());
}

/// Statements vpath left in a path with no HTTP request: missing from the item, found elsewhere.
#[test]
fn statements_in_a_background_path_are_missing() {
    let mut p = three();
    let kids = p[1]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap();
    let orphan = kids.remove(4);
    p.push(json!({"path": 9, "complete": false, "root": orphan}));
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(r.background_paths, 1, "{r:#?}");
    assert_eq!((r.missing_queries, r.missing_found_elsewhere), (1, 1));
    assert!(!r.all_exact());
}

/// A pooled connection serving Item_3, Item_7, Item_3 in turn (one log thread, one client port).
fn pool_case() -> (Vec<Value>, String) {
    let paths = vec![
        view(
            1,
            3,
            &[INIT[0], INIT[1]]
                .iter()
                .map(|s| (41000, s.to_string()))
                .chain(stmts(3).into_iter().map(|s| (41000, s)))
                .collect::<Vec<_>>(),
        ),
        view(
            2,
            7,
            &stmts(7).into_iter().map(|s| (41000, s)).collect::<Vec<_>>(),
        ),
        view(
            3,
            3,
            &stmts(3).into_iter().map(|s| (41000, s)).collect::<Vec<_>>(),
        ),
    ];
    let mut log = log_header();
    log += "261126  9:54:49\t  10 Connect\tshop@127.0.0.1 on shop using TCP/IP\n";
    for q in INIT
        .iter()
        .map(|s| s.to_string())
        .chain(stmts(3))
        .chain(stmts(7))
        .chain(stmts(3))
    {
        log += &format!("\t\t  10 Query\t{q}\n");
    }
    (paths, log + log_footer())
}

#[test]
fn pooled_connections_match_runs_of_one_log_connection() {
    let (p, log) = pool_case();
    let pool = Config {
        conn_mode: ConnMode::Run,
        ..Default::default()
    };
    let r = run(&p, &log, Some(3), &pool);
    assert!(r.all_exact(), "{r:#?}");
    // the whole-connection rule rejects them: one log connection served three requests
    let r = run(&p, &log, Some(3), &Config::default());
    assert_eq!(r.connection_mismatch_paths, 3, "{r:#?}");
    assert!(!r.all_exact());
}

#[test]
fn pooled_swap_fails() {
    let (mut p, log) = pool_case();
    let a = p[0]["root"]["children"][0]["children"][3]["attrs"]["db.query.text"].take();
    let b = p[1]["root"]["children"][0]["children"][1]["attrs"]["db.query.text"].take();
    p[0]["root"]["children"][0]["children"][3]["attrs"]["db.query.text"] = b;
    p[1]["root"]["children"][0]["children"][1]["attrs"]["db.query.text"] = a;
    let pool = Config {
        conn_mode: ConnMode::Run,
        ..Default::default()
    };
    let r = run(&p, &log, Some(3), &pool);
    assert_eq!(r.wrong_stitch_paths, 2, "{r:#?}");
    assert!(!r.all_exact());
}

#[test]
fn truncated_statements_match_by_prefix() {
    let mut p = three();
    let s = p[1]["root"]["children"][0]["children"][3]["attrs"]["db.query.text"]
        .as_str()
        .unwrap()
        .to_string();
    p[1]["root"]["children"][0]["children"][3]["attrs"]["db.query.text"] = json!(s[..60]);
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert!(r.all_exact(), "{r:#?}");
}

/// A path that lacks one of its connection's set-up statements (naming no item) is still exact (the item's
/// statements are all there) but reported, and counted as complete-but-lacking when vpath said complete.
#[test]
fn a_missing_unnamed_statement_on_the_request_connection_is_reported() {
    let mut p = three();
    p[1]["root"]["children"][0]["children"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let r = run(&p, &direct_log(&[3, 7, 3]), Some(3), &Config::default());
    assert_eq!(r.exact, 3, "{r:#?}");
    assert_eq!(
        (
            r.unnamed_missing_paths,
            r.unnamed_missing_queries,
            r.complete_but_lacking
        ),
        (1, 1, 1)
    );
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "unnamed-missing" && f.path == Some(2)));
    // pooled connections: no such rule (a connection's set-up ran in some earlier request)
    let pool = Config {
        conn_mode: ConnMode::Run,
        ..Default::default()
    };
    let (pp, log) = pool_case();
    assert_eq!(run(&pp, &log, Some(3), &pool).unnamed_missing_paths, 0);
}
