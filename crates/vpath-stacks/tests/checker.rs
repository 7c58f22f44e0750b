//! The MediaWiki checker on hand-made paths and general-log snippets, including the cases it must fail: a checker
//! that cannot fail is worthless.

use serde_json::{json, Value};
use std::collections::HashMap;
use vpath_stacks::mediawiki::{check, Config, Report};
use vpath_stacks::names::Namer;
use vpath_stacks::{genlog, read_paths};

/// What a page view does on the database (two statements name the page) and in memcached.
fn page_data(n: u32) -> String {
    format!("SELECT /* WikiPage::pageData */ page_id,page_title FROM `page` WHERE page_namespace = 0 AND page_title = 'Page_{n}' LIMIT 1")
}
fn talk(n: u32) -> String {
    format!("SELECT /* LinkBatch::doQuery (for Skin::preloadExistence) */ page_id FROM `page` WHERE (page_namespace = 1 AND page_title = 'Page_{n}')")
}
const SET: &str = "SET /* Wikimedia\\Rdbms\\DatabaseMysqlBase::open */ group_concat_max_len = 262144, `sql_mode` = ''";
const CATS: &str = "SELECT /* OutputPage::addCategoryLinksToLBAndGetResult */ page_id FROM `page` WHERE ((page_namespace = 14 AND page_title IN ('Boxed','Group_2') ))";
const COMMIT: &str = "COMMIT /* MediaWiki::preOutputCommit */";

fn view_queries(n: u32) -> Vec<String> {
    vec![
        SET.into(),
        "BEGIN".into(),
        page_data(n),
        CATS.into(),
        COMMIT.into(),
        talk(n),
    ]
}

/// Page ids: Page_N has id N + 100.
fn keys(n: u32) -> Vec<String> {
    vec![
        "get global:Wikimedia\\Rdbms\\ChronologyProtector:edec72f2:v3".into(),
        format!("get wikidb:pcache:idhash:{}-0!canonical", n + 100),
        format!(
            "get WANCache:global:revision-row-1.29:wikidb:{}:{}|#|v",
            n + 100,
            n + 100
        ),
    ]
}

fn span(
    kind: &str,
    proto: Option<&str>,
    local: &str,
    remote: &str,
    attrs: Value,
    children: Vec<Value>,
) -> Value {
    let mut s = json!({
        "kind": kind, "host": "h", "pid": 1, "tid": 1, "comm": "x", "netns": 1,
        "local": local, "remote": remote, "start_ns": 1, "end_ns": 2, "bytes_in": 1, "bytes_out": 1,
        "children": children
    });
    if let Some(p) = proto {
        s["protocol"] = json!(p);
    }
    if attrs != Value::Null {
        s["attrs"] = attrs;
    }
    s
}

/// A page view as vpath would show it: ab (origin) -> apache (http) -> php-fpm (fastcgi) -> statements on one
/// MariaDB connection from `db_port`, and memcached commands. `with_protocol` false leaves the protocol to ports.
fn view(
    id: u64,
    target: &str,
    db_port: u16,
    queries: &[String],
    mc: &[String],
    with_protocol: bool,
) -> Value {
    let p = |s: &'static str| if with_protocol { Some(s) } else { None };
    let mut calls: Vec<Value> = queries
        .iter()
        .map(|q| {
            span(
                "server",
                p("mysql"),
                "127.0.0.1:3306",
                &format!("127.0.0.1:{db_port}"),
                json!({"db.query.text": q, "db.system.name": "mysql"}),
                vec![],
            )
        })
        .collect();
    calls.extend(mc.iter().map(|k| {
        span(
            "server",
            p("memcached"),
            "127.0.0.1:11211",
            &format!("127.0.0.1:{}", db_port + 1000),
            json!({"vpath.memcached.key": k}),
            vec![],
        )
    }));
    let fcgi = span(
        "server",
        p("fastcgi"),
        "127.0.0.1:9000",
        "127.0.0.1:40000",
        json!({"url.query": target.split_once('?').map_or("", |x| x.1)}),
        calls,
    );
    let http = span(
        "server",
        p("http"),
        "127.0.0.1:8080",
        "127.0.0.1:50000",
        json!({"http.target": target}),
        vec![fcgi],
    );
    let origin = span(
        "origin",
        p("http"),
        "127.0.0.1:50000",
        "127.0.0.1:8080",
        json!({"http.target": target}),
        vec![http],
    );
    json!({"path": id, "complete": true, "root": origin})
}

/// The general log for views of `pages` (connection i+10 serves view i), between load markers.
fn general_log(pages: &[u32]) -> String {
    let mut s = String::from(
        "/usr/sbin/mariadbd, Version: 10.11.14-MariaDB-0+deb12u2-log (Debian 12). started with:\n\
         Tcp port: 3306  Unix socket: /tmp/m/mysqld.sock\nTime\t\t    Id Command\tArgument\n\
         261126  8:54:48\t     9 Connect\troot@localhost on  using Socket\n\
         \t\t     9 Query\tSELECT 'vpath-load-begin'\n\t\t     9 Quit\t\n",
    );
    for (i, n) in pages.iter().enumerate() {
        let t = i + 10;
        s +=
            &format!("261126  8:54:49\t  {t} Connect\twikiuser@127.0.0.1 on wikidb using TCP/IP\n");
        for q in view_queries(*n) {
            s += &format!("\t\t  {t} Query\t{q}\n");
        }
        s += &format!("\t\t  {t} Query\tCOMMIT /* MediaWiki::restInPeace */\n\t\t  {t} Quit\t\n");
    }
    s += "\t\t    99 Query\tSELECT 'vpath-load-end'\n\t\t   100 Query\tSELECT page_id FROM page WHERE page_title = 'Page_3'\n";
    s
}

fn cfg() -> Config {
    let ids: HashMap<u64, u32> = (1..=100).map(|n| (n as u64 + 100, n)).collect();
    Config {
        namer: Namer::mediawiki(ids),
        ..Default::default()
    }
}

fn run(paths: &[Value], log: &str, requests: Option<u64>, cfg: &Config) -> Report {
    let text: String = paths.iter().map(|p| format!("{p}\n")).collect();
    let paths = read_paths(text.as_bytes()).unwrap();
    let entries = genlog::parse(log);
    let w = genlog::window(&entries, "vpath-load-begin", "vpath-load-end");
    check(&paths, w, requests, cfg)
}

/// Three views: Page_3 (db port 41000), Page_7 (41001), Page_3 again (41002).
fn three() -> Vec<Value> {
    vec![
        view(
            1,
            "/index.php?title=Page_3",
            41000,
            &view_queries(3),
            &keys(3),
            true,
        ),
        view(
            2,
            "/index.php?title=Page_7",
            41001,
            &view_queries(7),
            &keys(7),
            true,
        ),
        view(
            3,
            "/index.php?title=Page_3",
            41002,
            &view_queries(3),
            &keys(3),
            false,
        ),
    ]
}

#[test]
fn all_exact_when_paths_match_the_log() {
    let r = run(&three(), &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!((r.paths, r.page_paths, r.exact), (3, 3, 3), "{r:#?}");
    assert_eq!(
        (
            r.wrong_items,
            r.missing_queries,
            r.surplus_queries,
            r.connection_mismatch_paths
        ),
        (0, 0, 0, 0)
    );
    // the statement after the end marker is outside the window
    assert_eq!(r.log_page_queries, 6);
    assert_eq!(r.path_page_queries, 6);
    assert!(r.all_exact());
    assert_eq!(r.spans["mysql"], 18);
    assert_eq!(r.spans["memcached"], 9);
    assert!((r.exact_share() - 1.0).abs() < 1e-9);
}

#[test]
fn fewer_paths_than_requests_is_not_all_exact() {
    let r = run(&three()[..2], &general_log(&[3, 7]), Some(3), &cfg());
    assert_eq!(r.exact, 2);
    assert!(!r.all_exact());
    assert!((r.exact_share() - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn a_swapped_query_is_a_wrong_stitch_in_both_paths() {
    let mut q3 = view_queries(3);
    let mut q7 = view_queries(7);
    std::mem::swap(&mut q3[2], &mut q7[2]); // the pageData statements trade places
    let paths = vec![
        view(1, "/index.php?title=Page_3", 41000, &q3, &keys(3), true),
        view(2, "/index.php?title=Page_7", 41001, &q7, &keys(7), true),
        view(
            3,
            "/index.php?title=Page_3",
            41002,
            &view_queries(3),
            &keys(3),
            true,
        ),
    ];
    let r = run(&paths, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(r.wrong_stitch_paths, 2, "{r:#?}");
    assert_eq!(r.wrong_items, 2);
    assert_eq!(r.exact, 1);
    // each page misses the statement that went to the other page's path
    assert_eq!(r.missing_queries, 2);
    assert!(!r.all_exact());
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "wrong-stitch" && f.path == Some(1) && f.detail.contains("Page_7")));
}

#[test]
fn a_missing_query_is_found_and_pinned_on_its_path() {
    let mut q7 = view_queries(7);
    q7.retain(|q| !q.contains("namespace = 1"));
    let paths = vec![
        three()[0].clone(),
        view(2, "/index.php?title=Page_7", 41001, &q7, &keys(7), true),
        three()[2].clone(),
    ];
    let r = run(&paths, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(r.missing_queries, 1, "{r:#?}");
    assert_eq!(r.connection_mismatch_paths, 1);
    assert_eq!(r.wrong_items, 0);
    assert_eq!(r.exact, 2);
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "connection-mismatch" && f.path == Some(2)));
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "missing" && f.page == Some(7)));
}

#[test]
fn a_duplicated_query_is_surplus() {
    // the same span in two paths: view 3 also shows view 1's pageData on view 1's connection
    let mut p3 = view(
        3,
        "/index.php?title=Page_3",
        41002,
        &view_queries(3),
        &keys(3),
        true,
    );
    let dup = span(
        "server",
        Some("mysql"),
        "127.0.0.1:3306",
        "127.0.0.1:41000",
        json!({"db.query.text": page_data(3)}),
        vec![],
    );
    p3["root"]["children"][0]["children"][0]["children"]
        .as_array_mut()
        .unwrap()
        .push(dup);
    let paths = vec![three()[0].clone(), three()[1].clone(), p3];
    let r = run(&paths, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(r.surplus_queries, 1, "{r:#?}");
    assert_eq!(r.missing_queries, 0);
    assert_eq!(r.connection_mismatch_paths, 1);
    assert_eq!(r.exact, 2);
    assert!(!r.all_exact());
}

#[test]
fn a_duplicate_within_one_connection_is_caught_too() {
    let mut q = view_queries(7);
    q.push(page_data(7));
    let paths = vec![
        three()[0].clone(),
        view(2, "/index.php?title=Page_7", 41001, &q, &keys(7), true),
        three()[2].clone(),
    ];
    let r = run(&paths, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(
        (r.surplus_queries, r.connection_mismatch_paths, r.exact),
        (1, 1, 2),
        "{r:#?}"
    );
}

#[test]
fn a_cache_key_naming_another_page_by_id_is_a_wrong_stitch() {
    let mut k = keys(3);
    k[1] = "get wikidb:pcache:idhash:107-0!canonical".into(); // Page_7's id
    let paths = vec![
        view(
            1,
            "/index.php?title=Page_3",
            41000,
            &view_queries(3),
            &k,
            true,
        ),
        three()[1].clone(),
        three()[2].clone(),
    ];
    let r = run(&paths, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(
        (r.wrong_stitch_paths, r.wrong_items, r.exact),
        (1, 1, 2),
        "{r:#?}"
    );
    // without the page-id map the key names nothing: the map is what makes keys checkable
    let blind = run(
        &paths,
        &general_log(&[3, 7, 3]),
        Some(3),
        &Config::default(),
    );
    assert_eq!(blind.wrong_items, 0);
}

#[test]
fn an_incomplete_path_is_not_exact_and_its_issues_are_counted() {
    let mut p = three();
    p[1]["complete"] = json!(false);
    p[1]["root"]["children"][0]["issues"] = json!(["hand-off"]);
    let r = run(&p, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(
        (r.incomplete, r.exact, r.complete_paths),
        (1, 2, 2),
        "{r:#?}"
    );
    assert_eq!(r.issues["hand-off"], 1);
}

#[test]
fn work_outside_any_request_is_reported_separately() {
    // vpath put Page_7's talk-page statement in a path of its own (php-fpm as a client serving nothing)
    let mut q7 = view_queries(7);
    q7.retain(|q| !q.contains("namespace = 1"));
    let bg = json!({"path": 9, "complete": true, "root": span("origin", Some("mysql"), "127.0.0.1:41001", "127.0.0.1:3306", Value::Null, vec![
        span("server", Some("mysql"), "127.0.0.1:3306", "127.0.0.1:41001", json!({"db.query.text": talk(7)}), vec![])])});
    let paths = vec![
        three()[0].clone(),
        view(2, "/index.php?title=Page_7", 41001, &q7, &keys(7), true),
        three()[2].clone(),
        bg,
    ];
    let r = run(&paths, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!(
        (r.background_paths, r.non_page_path_page_queries),
        (1, 1),
        "{r:#?}"
    );
    assert_eq!((r.missing_queries, r.missing_found_elsewhere), (1, 1));
    assert_eq!(r.exact, 2);
}

#[test]
fn a_path_without_the_database_tier_has_no_chain() {
    let paths = vec![
        view(1, "/index.php?title=Page_3", 41000, &[], &keys(3), true),
        three()[1].clone(),
    ];
    let r = run(&paths, &general_log(&[3, 7]), Some(2), &cfg());
    assert_eq!(
        (r.no_chain, r.exact, r.missing_queries),
        (1, 1, 2),
        "{r:#?}"
    );
    // memcached is required unless told otherwise
    let paths = vec![view(
        1,
        "/index.php?title=Page_3",
        41000,
        &view_queries(3),
        &[],
        true,
    )];
    assert_eq!(run(&paths, &general_log(&[3]), Some(1), &cfg()).exact, 0);
    let lax = Config {
        require_cache: false,
        ..cfg()
    };
    assert_eq!(run(&paths, &general_log(&[3]), Some(1), &lax).exact, 1);
}

#[test]
fn a_nested_request_for_another_page_is_a_wrong_stitch() {
    let mut p = three();
    p[0]["root"]["children"][0]["children"][0]["attrs"]["url.query"] = json!("title=Page_9");
    let r = run(&p, &general_log(&[3, 7, 3]), Some(3), &cfg());
    assert_eq!((r.wrong_stitch_paths, r.exact), (1, 2), "{r:#?}");
}

#[test]
fn truncated_statements_and_encoded_titles_still_match() {
    let mut q = view_queries(7);
    q[2].truncate(60); // payload capture cut the statement
    let paths = vec![
        view(
            1,
            "/index.php?title=Page%5F3",
            41000,
            &view_queries(3),
            &keys(3),
            true,
        ),
        view(2, "/index.php?title=Page+7", 41001, &q, &keys(7), true),
    ];
    let r = run(&paths, &general_log(&[3, 7]), Some(2), &cfg());
    // the cut statement no longer names Page_7: it is not counted, so Page_7's pageData is missing; the
    // connection shows only the talk statement, which matches no log connection
    assert_eq!(r.exact, 1, "{r:#?}");
    // a cut that keeps the title matches by prefix
    let mut q = view_queries(7);
    let keep = q[2].find("LIMIT").unwrap();
    q[2].truncate(keep);
    let paths = vec![
        paths[0].clone(),
        view(2, "/index.php?title=Page+7", 41001, &q, &keys(7), true),
    ];
    let r = run(&paths, &general_log(&[3, 7]), Some(2), &cfg());
    assert_eq!(
        (r.exact, r.missing_queries, r.surplus_queries),
        (2, 0, 0),
        "{r:#?}"
    );
}

#[test]
fn page_1_is_not_page_10() {
    let paths = vec![view(
        1,
        "/index.php?title=Page_1",
        41000,
        &view_queries(10),
        &keys(1),
        true,
    )];
    let r = run(&paths, &general_log(&[1]), Some(1), &cfg());
    assert_eq!(r.wrong_items, 2, "{r:#?}");
    assert_eq!(r.missing_queries, 2);
}

#[test]
fn other_http_requests_are_not_page_paths() {
    let p = view(
        1,
        "/load.php?modules=startup",
        41000,
        &[SET.to_string()],
        &[],
        true,
    );
    let r = run(&[p], &general_log(&[]), None, &cfg());
    assert_eq!(
        (r.paths, r.page_paths, r.other_http_paths, r.exact),
        (1, 0, 1, 0)
    );
    assert!(r.all_exact()); // nothing asked for, nothing wrong
}

#[test]
fn report_table_and_json() {
    let r = run(&three(), &general_log(&[3, 7, 3]), Some(3), &cfg());
    let t = Report::table(&[&r]);
    assert!(t.lines().next().unwrap().starts_with("stack"));
    assert!(t.contains("mediawiki"));
    assert!(t.contains("100.0%"));
    let j: Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(j["exact"], 3);
    assert_eq!(j["requests"], 3);
}

#[test]
fn a_whole_view_shown_twice_uses_its_log_connection_once() {
    let p = view(
        1,
        "/index.php?title=Page_3",
        41000,
        &view_queries(3),
        &keys(3),
        true,
    );
    let mut again = p.clone();
    again["path"] = json!(2);
    let r = run(&[p, again], &general_log(&[3]), Some(1), &cfg());
    assert_eq!(
        (
            r.page_paths,
            r.exact,
            r.connection_mismatch_paths,
            r.surplus_queries
        ),
        (2, 1, 1, 2),
        "{r:#?}"
    );
    assert!(!r.all_exact());
}
