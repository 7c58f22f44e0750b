//! The checker on real data: two page views (Page_7, Page_42) as `vpath record --payload-bytes 4096` and
//! `vpath analyze --format jsonl` produced them on the MediaWiki stack (stacks/mediawiki, php-fpm with
//! pm.max_requests = 1, concurrency 8), and the two MariaDB connections of that run's general log that served
//! views of those pages. Unchanged, both are exact; each edit below is a mistake vpath could make, and the checker
//! must catch it.

use serde_json::Value;
use vpath_stacks::mediawiki::{check, Config, Report};
use vpath_stacks::names::{parse_page_ids, Namer};
use vpath_stacks::{genlog, read_paths};

const PATHS: &str = include_str!("data/mw-paths.jsonl");
const LOG: &str = include_str!("data/mw-general.log");
const IDS: &str = include_str!("data/mw-page-ids.tsv");

fn load() -> Vec<Value> {
    PATHS
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(paths: &[Value]) -> Report {
    let text: String = paths.iter().map(|p| format!("{p}\n")).collect();
    let paths = read_paths(text.as_bytes()).unwrap();
    let entries = genlog::parse(LOG);
    let w = genlog::window(&entries, "vpath-load-begin", "vpath-load-end");
    let cfg = Config {
        namer: Namer::mediawiki(parse_page_ids(IDS)),
        ..Default::default()
    };
    check(&paths, w, Some(2), &cfg)
}

/// Calls `f` on every span of a path, parents first.
fn each_span(s: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    f(s);
    if let Some(ch) = s["children"].as_array_mut() {
        for c in ch {
            each_span(c, f);
        }
    }
}

/// Removes the first child span (anywhere in the path) whose SELECT contains `needle`.
fn take_statement(p: &mut Value, needle: &str) -> Option<Value> {
    let mut taken = None;
    each_span(&mut p["root"], &mut |s| {
        if taken.is_some() {
            return;
        }
        if let Some(ch) = s["children"].as_array_mut() {
            if let Some(i) = ch.iter().position(|c| {
                attr(c, "db.query.text")
                    .is_some_and(|q| q.starts_with("SELECT") && q.contains(needle))
            }) {
                taken = Some(ch.remove(i));
            }
        }
    });
    taken
}

fn attr<'a>(s: &'a Value, k: &str) -> Option<&'a str> {
    s["attrs"][k].as_str()
}

#[test]
fn the_real_views_are_exact() {
    let r = run(&load());
    assert_eq!((r.paths, r.page_paths, r.exact), (2, 2, 2), "{r:#?}");
    assert_eq!(
        (
            r.log_page_queries,
            r.path_page_queries,
            r.missing_queries,
            r.surplus_queries
        ),
        (4, 4, 0, 0)
    );
    assert!(r.all_exact());
    assert!(
        r.spans["memcached"] > 10 && r.spans["mysql"] > 5,
        "{:?}",
        r.spans
    );
}

#[test]
fn a_statement_moved_to_the_other_view_is_caught() {
    let mut p = load();
    // Page_42's pageData statement ends up in Page_7's path
    let moved =
        take_statement(&mut p[1], "pageData").expect("Page_42's path has a pageData statement");
    let mut moved = Some(moved);
    each_span(&mut p[0]["root"], &mut |s| {
        if s["protocol"] == "fastcgi" {
            if let Some(m) = moved.take() {
                s["children"].as_array_mut().unwrap().push(m);
            }
        }
    });
    assert!(moved.is_none());
    let r = run(&p);
    assert_eq!((r.wrong_stitch_paths, r.exact), (1, 0), "{r:#?}");
    assert_eq!(r.missing_queries, 1);
    assert_eq!(r.connection_mismatch_paths, 1); // Page_42's connection now lacks a statement
}

#[test]
fn a_lost_statement_is_caught() {
    let mut p = load();
    assert!(take_statement(&mut p[0], "LinkBatch").is_some());
    let r = run(&p);
    assert_eq!(
        (r.missing_queries, r.connection_mismatch_paths, r.exact),
        (1, 1, 1),
        "{r:#?}"
    );
}

#[test]
fn a_view_shown_twice_is_caught() {
    let mut p = load();
    let mut again = p[1].clone();
    again["path"] = Value::from(999);
    p.push(again);
    let r = run(&p);
    assert_eq!(
        (
            r.page_paths,
            r.exact,
            r.surplus_queries,
            r.connection_mismatch_paths
        ),
        (3, 2, 2, 1),
        "{r:#?}"
    );
    assert!(!r.all_exact());
}

#[test]
fn a_cache_key_of_the_other_page_is_caught() {
    let mut p = load();
    let mut changed = 0;
    each_span(&mut p[1]["root"], &mut |s| {
        if let Some(k) = attr(s, "vpath.memcached.key").map(str::to_string) {
            if k.contains("pcache:idhash:54-") {
                s["attrs"]["vpath.memcached.key"] = Value::from(k.replace(":54-", ":19-"));
                changed += 1;
            }
        }
    });
    assert!(changed > 0, "Page_42 (id 54) reads its parser cache entry");
    let r = run(&p);
    assert_eq!((r.wrong_stitch_paths, r.exact), (1, 1), "{r:#?}");
}

#[test]
fn a_path_vpath_marked_incomplete_is_not_exact() {
    let mut p = load();
    p[0]["complete"] = Value::Bool(false);
    let r = run(&p);
    assert_eq!((r.incomplete, r.exact), (1, 1));
}

#[test]
fn check_stack_dir_reads_what_stack_sh_leaves() {
    let dir = std::env::temp_dir().join(format!("vpath-stacks-test-{}", std::process::id()));
    for sub in ["mysql", "mw", "load"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("mysql/general.log"), LOG).unwrap();
    std::fs::write(dir.join("mw/page-ids.tsv"), IDS).unwrap();
    std::fs::write(
        dir.join("load/last.json"),
        r#"{"requested":2,"requests":2,"rate":1.0}"#,
    )
    .unwrap();
    std::fs::write(dir.join("paths.jsonl"), PATHS).unwrap();
    let r = vpath_stacks::mediawiki::check_stack_dir(&dir.join("paths.jsonl"), &dir, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((r.requests, r.exact), (Some(2), 2), "{r:#?}");
    assert!(r.all_exact());
}
