//! The Tomcat checker (`stacks/tomcat`): Tomcat 10 (NIO) serving `GET /item.jsp?id=N`, which runs statements
//! naming `Item_N` on MariaDB over JDBC. It judges vpath's paths by what the application ties to each request,
//! never by vpath's own causality.
//!
//! A path is an *item path* for N when its first HTTP span asks for `item.jsp?id=N`. Then:
//!
//! - **precision**: every SQL statement in the tree that names an item (`Item_M`) names N, and every nested HTTP
//!   request is for N; otherwise the path has a *wrong stitch*.
//! - **completeness** (per item, multisets of statement text): every statement in MariaDB's general log (within
//!   the load window) naming `Item_N` is in exactly one item path for N. What the log has and the paths lack is
//!   *missing*; what the paths have more often than the log is *surplus* (a duplicated span).
//! - **count**: the path holds exactly `statements_per_request` statements naming N (item.jsp runs three), so a
//!   missing or duplicated statement is pinned on the path that has it.
//! - **per connection**: the item statements a path shows on one MariaDB connection must be those the log shows
//!   on one connection (thread id): with `ConnMode::Whole` (a new JDBC connection per request) all of that log
//!   connection's item statements; with `ConnMode::Run` (a pool: a connection serves many requests) a contiguous
//!   run of them. Each log statement backs one path at most.
//! - **shape**: vpath marked the path `complete`, and it has an HTTP server span with SQL spans below it.
//!
//! An item path passing all of these is *exact*.

use crate::common::{clip, completeness, multiset_diff};
use crate::genlog::LogEntry;
use crate::jsonl::{PathRec, Proto, SpanRec};
use crate::names::{normalize_sql, url_decode};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// How a log connection relates to requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConnMode {
    /// One connection per request (`TC_JDBC=direct`): a path's statements on a connection are all of one log
    /// connection's item statements.
    Whole,
    /// Pooled connections (`TC_JDBC=pool`): a path's statements on a connection are a contiguous run of one log
    /// connection's item statements.
    Run,
}

/// How to read the stack.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server port -> protocol, for spans without a `protocol` field.
    pub ports: BTreeMap<u16, Proto>,
    pub conn_mode: ConnMode,
    /// Statements naming the item that one request runs (item.jsp: 3); `None` skips the count rule.
    pub statements_per_request: Option<usize>,
    /// A path's statement shorter than the log's matches it when it is a prefix of at least this many bytes.
    pub min_prefix: usize,
    /// How many findings the report lists (all are counted).
    pub max_findings: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ports: [(8081, Proto::Http), (3307, Proto::Mysql)]
                .into_iter()
                .collect(),
            conn_mode: ConnMode::Whole,
            statements_per_request: Some(3),
            min_prefix: 24,
            max_findings: 40,
        }
    }
}

/// One thing found wrong, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `wrong-stitch`, `missing`, `surplus`, `count`, `connection-mismatch`, `no-chain`, `incomplete`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    pub detail: String,
}

impl crate::common::FindingRow for Finding {
    fn row(&self) -> (&str, Option<u64>, Option<u32>, &str) {
        (self.kind, self.path, self.item, &self.detail)
    }
}

/// The verdict for one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub stack: String,
    /// `direct` or `pool`, when known (the load summary says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jdbc: Option<String>,
    /// Requests the load generator completed, when known.
    pub requests: Option<u64>,
    pub paths: usize,
    pub complete_paths: usize,
    /// Paths whose request is for some item.
    pub item_paths: usize,
    /// Paths with an HTTP request that is not an item view.
    pub other_http_paths: usize,
    /// Paths with no HTTP request at all.
    pub background_paths: usize,
    pub exact: usize,
    /// Item paths with at least one statement or nested request naming another item.
    pub wrong_stitch_paths: usize,
    pub wrong_items: usize,
    /// Item paths marked `"complete": false` by vpath.
    pub incomplete: usize,
    /// Item paths without HTTP -> SQL.
    pub no_chain: usize,
    /// Item paths with more or fewer item statements than a request runs.
    pub count_mismatch_paths: usize,
    /// Item paths whose statements on some connection match no (unused) log connection or run.
    pub connection_mismatch_paths: usize,
    /// With `ConnMode::Whole`: item paths lacking some statement that names no item (driver set-up such as
    /// Connector/J's `SELECT @@max_allowed_packet...`) of the request's own MariaDB connection, and how many such
    /// statements. Reported, not part of `exact` (which is about the statements that name the item).
    pub unnamed_missing_paths: usize,
    pub unnamed_missing_queries: usize,
    /// ... of those paths, how many vpath marked `complete` all the same.
    pub complete_but_lacking: usize,
    /// Statements naming an item in the log window, and in item paths (for that item).
    pub log_item_queries: usize,
    pub path_item_queries: usize,
    pub missing_queries: usize,
    /// ... of which a path without an item request holds one with that text.
    pub missing_found_elsewhere: usize,
    pub surplus_queries: usize,
    /// Statements naming an item in paths that are not item paths.
    pub non_item_path_item_queries: usize,
    /// Every span issue vpath reported, with how many spans carry it.
    pub issues: BTreeMap<String, usize>,
    /// Spans per protocol (origin spans with a server child not counted).
    pub spans: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
    pub findings_total: usize,
}

impl Report {
    /// Exact item paths as a share of the requests (or of the item paths when the request count is unknown).
    pub fn exact_share(&self) -> f64 {
        let base = self
            .requests
            .map_or(self.item_paths as u64, |r| r.max(self.item_paths as u64));
        if base == 0 {
            0.0
        } else {
            self.exact as f64 / base as f64
        }
    }

    /// Nothing wrong, nothing missing, and every request an exact path.
    pub fn all_exact(&self) -> bool {
        self.wrong_items == 0
            && self.missing_queries == 0
            && self.surplus_queries == 0
            && self.connection_mismatch_paths == 0
            && self.count_mismatch_paths == 0
            && self.exact == self.item_paths
            && self.requests.is_none_or(|r| r == self.exact as u64)
    }

    /// Paths holding another request's work: wrong stitches, and statements on the wrong path.
    pub fn wrong(&self) -> usize {
        self.wrong_stitch_paths + self.connection_mismatch_paths
    }

    /// One line per run.
    pub fn table(reports: &[&Report]) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<8} {:<6} {:>8} {:>6} {:>10} {:>6} {:>7} {:>6} {:>10} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10}",
            "stack",
            "jdbc",
            "requests",
            "paths",
            "item-paths",
            "exact",
            "exact%",
            "wrong",
            "incomplete",
            "no-chain",
            "count",
            "conn-mis",
            "missing",
            "surplus",
            "background"
        );
        for r in reports {
            let _ = writeln!(
                s,
                "{:<8} {:<6} {:>8} {:>6} {:>10} {:>6} {:>6.1}% {:>6} {:>10} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10}",
                r.stack,
                r.jdbc.as_deref().unwrap_or("-"),
                r.requests.map_or("-".to_string(), |n| n.to_string()),
                r.paths,
                r.item_paths,
                r.exact,
                100.0 * r.exact_share(),
                r.wrong_stitch_paths,
                r.incomplete,
                r.no_chain,
                r.count_mismatch_paths,
                r.connection_mismatch_paths,
                r.missing_queries,
                r.surplus_queries,
                r.background_paths
            );
        }
        s
    }
}

/// The numbers N of every `Item_N` in `text`: `Item` not after a letter, digit or `_`, then `_` and all the
/// digits that follow (so `Item_10` is never 1).
pub fn items_named(text: &str) -> BTreeSet<u32> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(off) = text[from..].find("Item_") {
        let at = from + off;
        from = at + 5;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let digits = b[at + 5..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            continue;
        }
        if let Ok(n) = text[at + 5..at + 5 + digits].parse() {
            out.insert(n);
        }
    }
    out
}

/// The item an HTTP request target asks for: `/item.jsp?id=N` (the `id` parameter of an `item.jsp` path).
pub fn requested_item(target: &str) -> Option<u32> {
    let (path, query) = target.split_once('?')?;
    if !path.ends_with("item.jsp") {
        return None;
    }
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "id").then(|| url_decode(v).trim().parse().ok())?
    })
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Class {
    Item(u32),
    OtherHttp,
    Background,
}

struct Stmt {
    conn: String,
    text: String,
    names: BTreeSet<u32>,
}

struct View {
    id: u64,
    complete: bool,
    class: Class,
    sql: Vec<Stmt>,
    /// Items named by nested HTTP requests (after the first).
    nested: Vec<u32>,
    chain: bool,
}

fn counts(s: &SpanRec) -> bool {
    s.kind == "server" || s.kind == "remote" || (s.kind == "origin" && s.children.is_empty())
}

fn target(s: &SpanRec) -> Option<String> {
    s.first_attr(&["http.target", "url.full"])
        .or_else(|| {
            let p = s.attr("url.path")?;
            Some(match s.attr("url.query") {
                Some(q) => format!("{p}?{q}"),
                None => p,
            })
        })
        .or_else(|| s.name.clone())
}

fn has_sql_below(s: &SpanRec, ports: &BTreeMap<u16, Proto>) -> bool {
    s.children
        .iter()
        .any(|c| (c.kind != "origin" && c.proto(ports) == Proto::Mysql) || has_sql_below(c, ports))
}

fn chain(s: &SpanRec, ports: &BTreeMap<u16, Proto>) -> bool {
    (s.kind == "server" && s.proto(ports) == Proto::Http && has_sql_below(s, ports))
        || s.children.iter().any(|c| chain(c, ports))
}

fn conn_key(s: &SpanRec) -> String {
    format!(
        "{}|{}|{}",
        s.host.as_deref().unwrap_or(""),
        s.client_endpoint(),
        s.server_endpoint()
    )
}

fn view(p: &PathRec, cfg: &Config, rep: &mut Report) -> View {
    let ports = &cfg.ports;
    let mut first_http: Option<(Option<u32>, (String, String))> = None;
    let mut nested = Vec::new();
    let mut sql = Vec::new();
    p.root.walk(&mut |s, _| {
        for i in &s.issues {
            *rep.issues.entry(i.clone()).or_default() += 1;
        }
        let proto = s.proto(ports);
        if counts(s) {
            *rep.spans.entry(proto.as_str().to_string()).or_default() += 1;
        }
        match proto {
            Proto::Http => {
                let item = target(s).and_then(|t| requested_item(&t));
                let key = (
                    s.client_endpoint().to_string(),
                    s.server_endpoint().to_string(),
                );
                match &first_http {
                    None => first_http = Some((item, key)),
                    // the origin and its server span are one request; another connection's is nested
                    Some((_, k)) if *k != key => nested.extend(item),
                    Some(_) => {}
                }
            }
            Proto::Mysql if counts(s) => {
                if let Some(t) = s.first_attr(&["db.query.text", "db.statement"]) {
                    let text = normalize_sql(&t);
                    let names = items_named(&text);
                    sql.push(Stmt {
                        conn: conn_key(s),
                        text,
                        names,
                    });
                }
            }
            _ => {}
        }
    });
    let class = match first_http {
        Some((Some(n), _)) => Class::Item(n),
        Some((None, _)) => Class::OtherHttp,
        None => Class::Background,
    };
    View {
        id: p.path,
        complete: p.complete,
        class,
        sql,
        nested,
        chain: chain(&p.root, ports),
    }
}

fn same_multiset(a: &[&str], b: &[&str], min: usize) -> bool {
    a.len() == b.len() && {
        let (x, y) = multiset_diff(a, b, min);
        x.is_empty() && y.is_empty()
    }
}

/// Log connections' item statements, each usable once.
struct LogConns {
    /// thread -> its item statements in log order, and whether each is already claimed.
    threads: BTreeMap<u64, Vec<(String, bool)>>,
    /// thread -> all its statements (naming an item or not), in log order.
    all: BTreeMap<u64, Vec<String>>,
    /// item -> threads whose statements name it.
    by_item: HashMap<u32, Vec<u64>>,
}

impl LogConns {
    /// Claims, for a path of item `n`, log statements equal (as a multiset) to `sig`: a whole thread
    /// (`Whole`) or a contiguous unclaimed run in one thread (`Run`). Returns the thread.
    fn claim(&mut self, n: u32, sig: &[&str], mode: ConnMode, min: usize) -> Option<u64> {
        let cands = self.by_item.get(&n)?;
        for t in cands {
            let stmts = self.threads.get_mut(t).unwrap();
            match mode {
                ConnMode::Whole => {
                    if stmts.iter().any(|(_, used)| *used) {
                        continue;
                    }
                    let all: Vec<&str> = stmts.iter().map(|(s, _)| s.as_str()).collect();
                    if same_multiset(&all, sig, min) {
                        stmts.iter_mut().for_each(|x| x.1 = true);
                        return Some(*t);
                    }
                }
                ConnMode::Run => {
                    let k = sig.len();
                    if k == 0 || stmts.len() < k {
                        continue;
                    }
                    for i in 0..=stmts.len() - k {
                        let w = &stmts[i..i + k];
                        if w.iter().any(|(_, used)| *used) {
                            continue;
                        }
                        let texts: Vec<&str> = w.iter().map(|(s, _)| s.as_str()).collect();
                        if same_multiset(&texts, sig, min) {
                            stmts[i..i + k].iter_mut().for_each(|x| x.1 = true);
                            return Some(*t);
                        }
                    }
                }
            }
        }
        None
    }
}

/// Checks vpath's paths against the general log window (only `Query`/`Execute` entries count).
pub fn check(paths: &[PathRec], log: &[LogEntry], requests: Option<u64>, cfg: &Config) -> Report {
    let mut rep = Report {
        stack: "tomcat".into(),
        requests,
        paths: paths.len(),
        ..Default::default()
    };
    let mut findings: Vec<Finding> = Vec::new();
    let views: Vec<View> = paths.iter().map(|p| view(p, cfg, &mut rep)).collect();

    // --- the log: statements naming items, per item and per connection
    let mut log_by_item: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut conns = LogConns {
        threads: BTreeMap::new(),
        by_item: HashMap::new(),
        all: BTreeMap::new(),
    };
    for e in log.iter().filter(|e| e.is_query()) {
        let text = normalize_sql(&e.text);
        let names = items_named(&text);
        conns.all.entry(e.thread).or_default().push(text.clone());
        if names.is_empty() {
            continue;
        }
        rep.log_item_queries += 1;
        for n in &names {
            log_by_item.entry(*n).or_default().push(text.clone());
            let ts = conns.by_item.entry(*n).or_default();
            if ts.last() != Some(&e.thread) && !ts.contains(&e.thread) {
                ts.push(e.thread);
            }
        }
        conns
            .threads
            .entry(e.thread)
            .or_default()
            .push((text, false));
    }

    // --- the paths
    let mut path_by_item: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut elsewhere: Vec<String> = Vec::new();
    for v in &views {
        if v.complete {
            rep.complete_paths += 1;
        }
        let n = match v.class {
            Class::Item(n) => n,
            other => {
                if other == Class::OtherHttp {
                    rep.other_http_paths += 1;
                } else {
                    rep.background_paths += 1;
                }
                for s in v.sql.iter().filter(|s| !s.names.is_empty()) {
                    rep.non_item_path_item_queries += 1;
                    elsewhere.push(s.text.clone());
                }
                continue;
            }
        };
        rep.item_paths += 1;
        let mut ok = v.complete && v.chain;
        let mut push = |kind: &'static str, detail: String| {
            findings.push(Finding {
                kind,
                path: Some(v.id),
                item: Some(n),
                detail,
            })
        };
        if !v.complete {
            rep.incomplete += 1;
            push("incomplete", "vpath marked the path incomplete".into());
        }
        if !v.chain {
            rep.no_chain += 1;
            push(
                "no-chain",
                format!("no HTTP -> SQL chain ({} SQL spans)", v.sql.len()),
            );
        }
        // precision
        let mut wrong = 0;
        for s in &v.sql {
            if s.names.iter().any(|m| *m != n) {
                wrong += 1;
                push(
                    "wrong-stitch",
                    format!("SQL names {:?}: {}", s.names, clip(&s.text)),
                );
            }
        }
        for m in &v.nested {
            if *m != n {
                wrong += 1;
                push("wrong-stitch", format!("nested HTTP request for Item_{m}"));
            }
        }
        if wrong > 0 {
            rep.wrong_stitch_paths += 1;
            rep.wrong_items += wrong;
            ok = false;
        }
        // count
        let mine: Vec<&Stmt> = v.sql.iter().filter(|s| s.names.contains(&n)).collect();
        for s in &mine {
            path_by_item.entry(n).or_default().push(s.text.clone());
            rep.path_item_queries += 1;
        }
        if let Some(k) = cfg.statements_per_request {
            if mine.len() != k {
                rep.count_mismatch_paths += 1;
                ok = false;
                push(
                    "count",
                    format!(
                        "{} statements name Item_{n}; a request runs {k}",
                        mine.len()
                    ),
                );
            }
        }
        // per connection
        let mut by_conn: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in v.sql.iter().filter(|s| !s.names.is_empty()) {
            by_conn
                .entry(s.conn.as_str())
                .or_default()
                .push(s.text.as_str());
        }
        let mut mismatch = false;
        let mut unnamed_missing = 0;
        for (conn, sig) in by_conn {
            if sig.iter().any(|t| items_named(t).iter().any(|m| *m != n)) {
                continue; // already a wrong stitch
            }
            let Some(t) = conns.claim(n, &sig, cfg.conn_mode, cfg.min_prefix) else {
                mismatch = true;
                push(
                    "connection-mismatch",
                    format!(
                        "connection {} shows {} item statement(s) that no unused log connection{} for Item_{n} has: {}",
                        conn.split('|').nth(1).unwrap_or(conn),
                        sig.len(),
                        if cfg.conn_mode == ConnMode::Run { " run" } else { "" },
                        sig.iter().map(|s| clip(s)).collect::<Vec<_>>().join(" ; ")
                    ),
                );
                continue;
            };
            // a request's own connection: its other statements (driver set-up, naming no item) belong here too
            if cfg.conn_mode == ConnMode::Whole {
                let on_conn: Vec<&str> = v
                    .sql
                    .iter()
                    .filter(|s| s.conn == conn)
                    .map(|s| s.text.as_str())
                    .collect();
                let log_all: Vec<&str> = conns.all[&t].iter().map(String::as_str).collect();
                let (lacking, _) = multiset_diff(&log_all, &on_conn, cfg.min_prefix);
                if !lacking.is_empty() {
                    unnamed_missing += lacking.len();
                    push(
                        "unnamed-missing",
                        format!(
                            "complete={}, but {} statement(s) of its own MariaDB connection (thread {t}) are not in it: {}",
                            v.complete,
                            lacking.len(),
                            lacking.iter().map(|s| clip(s)).collect::<Vec<_>>().join(" ; ")
                        ),
                    );
                }
            }
        }
        if unnamed_missing > 0 {
            rep.unnamed_missing_paths += 1;
            rep.unnamed_missing_queries += unnamed_missing;
            if v.complete {
                rep.complete_but_lacking += 1;
            }
        }
        if mismatch {
            rep.connection_mismatch_paths += 1;
            ok = false;
        }
        if ok {
            rep.exact += 1;
        }
    }

    // --- completeness per item
    for d in completeness(&log_by_item, &path_by_item, &elsewhere, cfg.min_prefix) {
        let n = d.item;
        rep.missing_queries += d.missing.len();
        rep.surplus_queries += d.surplus.len();
        for (m, found) in &d.missing {
            rep.missing_found_elsewhere += usize::from(*found);
            findings.push(Finding {
                kind: "missing",
                path: None,
                item: Some(n),
                detail: format!(
                    "in the log, in no item path for Item_{n}{}: {}",
                    if *found {
                        " (a non-item path has it)"
                    } else {
                        ""
                    },
                    clip(m)
                ),
            });
        }
        for s in &d.surplus {
            findings.push(Finding {
                kind: "surplus",
                path: None,
                item: Some(n),
                detail: format!(
                    "in item paths for Item_{n} more often than in the log: {}",
                    clip(s)
                ),
            });
        }
    }
    rep.findings_total = findings.len();
    findings.truncate(cfg.max_findings);
    rep.findings = findings;
    rep
}

/// Everything from files, as `stacks/tomcat/stack.sh` leaves them: the JSONL paths and, under `stack_dir`, the
/// general log (`mysql/general.log`, between the load markers) and the load summary (`load/last.json`: ab's
/// request count unless `requests` is given, and the JDBC mode, which picks the connection rule).
pub fn check_stack_dir(
    paths: &std::path::Path,
    stack_dir: &std::path::Path,
    requests: Option<u64>,
) -> anyhow::Result<Report> {
    use anyhow::Context;
    let f = std::fs::File::open(paths).with_context(|| format!("opening {}", paths.display()))?;
    let paths = crate::jsonl::read_paths(std::io::BufReader::new(f))?;
    let log =
        std::fs::read(stack_dir.join("mysql/general.log")).context("reading the general log")?;
    let entries = crate::genlog::parse(&String::from_utf8_lossy(&log));
    let window = crate::genlog::window(&entries, "vpath-load-begin", "vpath-load-end");
    let summary: Option<serde_json::Value> = std::fs::read(stack_dir.join("load/last.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let jdbc = summary
        .as_ref()
        .and_then(|v| v.get("jdbc")?.as_str().map(str::to_string));
    let cfg = Config {
        conn_mode: conn_mode_of(jdbc.as_deref()),
        ..Default::default()
    };
    let requests = requests.or_else(|| summary.as_ref()?.get("requests")?.as_u64());
    let mut rep = check(&paths, window, requests, &cfg);
    rep.jdbc = jdbc;
    Ok(rep)
}

/// `pool` -> `ConnMode::Run`; anything else (`direct`, unknown) -> `ConnMode::Whole`.
pub fn conn_mode_of(jdbc: Option<&str>) -> ConnMode {
    if jdbc == Some("pool") {
        ConnMode::Run
    } else {
        ConnMode::Whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_and_targets() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(items_named("WHERE name = 'Item_10'"), set(&[10]));
        assert_eq!(
            items_named("'Item_1','Item_12' xItem_3 Item_ _Item_4"),
            set(&[1, 12])
        );
        assert_eq!(requested_item("/item.jsp?id=42"), Some(42));
        assert_eq!(requested_item("/item.jsp?x=1&id=7"), Some(7));
        assert_eq!(requested_item("/other.jsp?id=7"), None);
        assert_eq!(requested_item("/item.jsp"), None);
    }
}
