//! The MediaWiki checker: judges vpath's paths by what the application ties to each request, never by vpath's
//! own causality.
//!
//! Each page view is `GET /index.php?title=Page_N`. A path is a *page path* for N when its first HTTP span (else
//! its first FastCGI span) asks for `Page_N`. Then:
//!
//! - **precision**: every SQL statement and memcached key in the tree that names a page (`Page_M` as a title,
//!   raw or URL-encoded, or a page id of `Page_M` in a cache key or `page_id = ...` condition) must name N, and
//!   every nested HTTP/FastCGI request must be for N; otherwise the path has a *wrong stitch*.
//! - **completeness** (per page, as multisets of statement text): every statement in MariaDB's general log
//!   (within the load window) that names `Page_N` must be in exactly one page path for N. What the log has and
//!   the paths lack is *missing*; what the paths have more often than the log is *surplus* (a duplicated span).
//! - **per connection**: the page-naming statements a path shows on one MariaDB connection must be those of one
//!   connection (thread id) of the log, each log connection used once. This pins a missing, extra or swapped
//!   statement on the path that has it.
//! - **shape**: the path is `complete` (no span issue) and has the chain HTTP -> FastCGI -> SQL (and memcached,
//!   unless `require_cache` is off).
//!
//! A page path passing all four is *exact*. Statements in paths without an HTTP or FastCGI request (background
//! work, or work vpath could not tie to a request) are counted separately.

use crate::common::{clip, completeness, multiset_diff};
use crate::genlog::LogEntry;
use crate::jsonl::{PathRec, Proto, SpanRec};
use crate::names::{normalize_sql, page_of_title, requested_title, Namer};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// How to read the stack.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server port -> protocol, for spans without a `protocol` field.
    pub ports: BTreeMap<u16, Proto>,
    pub namer: Namer,
    /// Whether an exact path needs a memcached span under its FastCGI span.
    pub require_cache: bool,
    /// A path's statement shorter than the log's matches it when it is a prefix of at least this many bytes
    /// (payload capture truncates long statements).
    pub min_prefix: usize,
    /// How many findings the report lists (all are counted).
    pub max_findings: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ports: [
                (80, Proto::Http),
                (8080, Proto::Http),
                (9000, Proto::Fastcgi),
                (3306, Proto::Mysql),
                (11211, Proto::Memcached),
            ]
            .into_iter()
            .collect(),
            namer: Namer::mediawiki(HashMap::new()),
            require_cache: true,
            min_prefix: 24,
            max_findings: 40,
        }
    }
}

/// One thing found wrong (or noteworthy), for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `wrong-stitch`, `missing`, `surplus`, `connection-mismatch`, `no-chain`, `incomplete`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    pub detail: String,
}

impl crate::common::FindingRow for Finding {
    fn row(&self) -> (&str, Option<u64>, Option<u32>, &str) {
        (self.kind, self.path, self.page, &self.detail)
    }
}

/// The verdict for one stack run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub stack: String,
    /// Page views the load generator completed (ab's count), when known.
    pub requests: Option<u64>,
    pub paths: usize,
    pub complete_paths: usize,
    /// Paths whose request is for some Page_N.
    pub page_paths: usize,
    /// Paths with an HTTP request that is not a page view (or whose request text was not captured).
    pub other_http_paths: usize,
    /// Paths with no HTTP or FastCGI request at all.
    pub background_paths: usize,
    pub exact: usize,
    /// Page paths with at least one statement, key or nested request naming another page.
    pub wrong_stitch_paths: usize,
    /// Such statements, keys and requests.
    pub wrong_items: usize,
    /// Page paths marked `"complete": false` by vpath.
    pub incomplete: usize,
    /// Page paths without the HTTP -> FastCGI -> SQL (+ memcached) chain.
    pub no_chain: usize,
    /// Page paths whose page-naming statements on some connection match no connection of the log.
    pub connection_mismatch_paths: usize,
    /// Statements naming a page in the log window, and in page paths (for that page).
    pub log_page_queries: usize,
    pub path_page_queries: usize,
    /// Log statements naming Page_N found in no page path for N.
    pub missing_queries: usize,
    /// ... of which a path without a page request holds one with that text.
    pub missing_found_elsewhere: usize,
    /// Page-path statements for N beyond the log's count (duplicates).
    pub surplus_queries: usize,
    /// Statements naming a page in paths that are not page paths.
    pub non_page_path_page_queries: usize,
    /// Every span issue vpath reported, with how many spans carry it (all paths).
    pub issues: BTreeMap<String, usize>,
    /// Spans per protocol (all paths; origin spans with a server child not counted).
    pub spans: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
    pub findings_total: usize,
}

impl Report {
    /// Exact page paths as a share of the requests (or of the page paths when the request count is unknown).
    pub fn exact_share(&self) -> f64 {
        let base = self
            .requests
            .map_or(self.page_paths as u64, |r| r.max(self.page_paths as u64));
        if base == 0 {
            0.0
        } else {
            self.exact as f64 / base as f64
        }
    }

    /// True when nothing was found wrong and every request is an exact path.
    pub fn all_exact(&self) -> bool {
        self.wrong_items == 0
            && self.missing_queries == 0
            && self.surplus_queries == 0
            && self.connection_mismatch_paths == 0
            && self.exact == self.page_paths
            && self.requests.is_none_or(|r| r == self.exact as u64)
    }

    /// A small table, one stack per row.
    pub fn table(reports: &[&Report]) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<10} {:>8} {:>7} {:>10} {:>7} {:>7} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
            "stack",
            "requests",
            "paths",
            "page-paths",
            "exact",
            "exact%",
            "wrong",
            "incomplete",
            "no-chain",
            "conn-mis",
            "missing",
            "surplus",
            "background"
        );
        for r in reports {
            let _ = writeln!(
                s,
                "{:<10} {:>8} {:>7} {:>10} {:>7} {:>6.1}% {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
                r.stack,
                r.requests.map_or("-".to_string(), |n| n.to_string()),
                r.paths,
                r.page_paths,
                r.exact,
                100.0 * r.exact_share(),
                r.wrong_stitch_paths,
                r.incomplete,
                r.no_chain,
                r.connection_mismatch_paths,
                r.missing_queries,
                r.surplus_queries,
                r.background_paths
            );
        }
        s
    }
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Class {
    Page(u32),
    OtherHttp,
    Background,
}

struct Item {
    conn: String,
    text: String,
    names: BTreeSet<u32>,
}

struct View {
    id: u64,
    complete: bool,
    class: Class,
    sql: Vec<Item>,
    keys: Vec<Item>,
    /// Pages named by nested HTTP/FastCGI requests.
    requests: Vec<(Proto, u32)>,
    chain: bool,
}

/// A span that stands for a request its own: server and remote spans, and origins with no server child.
fn counts(s: &SpanRec) -> bool {
    s.kind == "server" || s.kind == "remote" || (s.kind == "origin" && s.children.is_empty())
}

fn request_target(s: &SpanRec) -> Option<String> {
    s.first_attr(&[
        "http.target",
        "url.full",
        "vpath.fastcgi.request_uri",
        "url.query",
        "fastcgi.request_uri",
    ])
    .or_else(|| s.name.clone())
}

fn has_below(s: &SpanRec, p: Proto, ports: &BTreeMap<u16, Proto>) -> bool {
    s.children
        .iter()
        .any(|c| (c.kind != "origin" && c.proto(ports) == p) || has_below(c, p, ports))
}

fn chain(s: &SpanRec, cfg: &Config) -> bool {
    let ports = &cfg.ports;
    let here = s.kind == "server" && s.proto(ports) == Proto::Http && {
        let mut ok = false;
        s.walk(&mut |f, d| {
            if d > 0
                && f.kind != "origin"
                && f.proto(ports) == Proto::Fastcgi
                && has_below(f, Proto::Mysql, ports)
                && (!cfg.require_cache || has_below(f, Proto::Memcached, ports))
            {
                ok = true;
            }
        });
        ok
    };
    here || s.children.iter().any(|c| chain(c, cfg))
}

fn view(p: &PathRec, cfg: &Config, rep: &mut Report) -> View {
    let ports = &cfg.ports;
    let mut first_http: Option<Option<u32>> = None;
    let mut first_fcgi: Option<u32> = None;
    let mut sql = Vec::new();
    let mut keys = Vec::new();
    let mut requests = Vec::new();
    p.root.walk(&mut |s, _| {
        for i in &s.issues {
            *rep.issues.entry(i.clone()).or_default() += 1;
        }
        let proto = s.proto(ports);
        if counts(s) {
            *rep.spans.entry(proto.as_str().to_string()).or_default() += 1;
        }
        match proto {
            Proto::Http | Proto::Fastcgi => {
                let page = request_target(s)
                    .and_then(|t| requested_title(&t))
                    .and_then(|t| page_of_title(&t));
                if proto == Proto::Http && first_http.is_none() {
                    first_http = Some(page);
                }
                if proto == Proto::Fastcgi && first_fcgi.is_none() {
                    first_fcgi = page;
                }
                if let Some(n) = page {
                    requests.push((proto, n));
                }
            }
            Proto::Mysql if counts(s) => {
                if let Some(t) = s
                    .first_attr(&["db.query.text", "db.statement"])
                    .or_else(|| s.name.clone())
                {
                    let text = normalize_sql(&t);
                    let names = cfg.namer.in_sql(&text);
                    sql.push(Item {
                        conn: conn_key(s),
                        text,
                        names,
                    });
                }
            }
            Proto::Memcached if counts(s) => {
                // every key of the command (a multi-key get may list only its first in `vpath.memcached.key`)
                let all: Vec<String> = ["vpath.memcached.keys", "vpath.memcached.key"]
                    .iter()
                    .filter_map(|k| s.attr(k))
                    .collect();
                let t = if all.is_empty() {
                    s.first_attr(&["db.query.text", "db.statement"])
                        .or_else(|| s.name.clone())
                } else {
                    Some(all.join(" "))
                };
                if let Some(t) = t {
                    let names = cfg.namer.in_key(&t);
                    keys.push(Item {
                        conn: conn_key(s),
                        text: t,
                        names,
                    });
                }
            }
            _ => {}
        }
    });
    let class = match (first_http, first_fcgi) {
        (Some(Some(n)), _) | (_, Some(n)) => Class::Page(n),
        (Some(None), None) => Class::OtherHttp,
        (None, None) => Class::Background,
    };
    View {
        id: p.path,
        complete: p.complete,
        class,
        sql,
        keys,
        requests,
        chain: chain(&p.root, cfg),
    }
}

fn conn_key(s: &SpanRec) -> String {
    format!(
        "{}|{}|{}",
        s.host.as_deref().unwrap_or(""),
        s.client_endpoint(),
        s.server_endpoint()
    )
}

/// Checks vpath's paths against the general log window (only `Query`/`Execute` entries count).
pub fn check(paths: &[PathRec], log: &[LogEntry], requests: Option<u64>, cfg: &Config) -> Report {
    let mut rep = Report {
        stack: "mediawiki".into(),
        requests,
        paths: paths.len(),
        ..Default::default()
    };
    let mut findings: Vec<Finding> = Vec::new();
    let views: Vec<View> = paths.iter().map(|p| view(p, cfg, &mut rep)).collect();

    // --- the log: statements naming pages, per page and per connection
    let mut log_by_page: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut threads: BTreeMap<u64, Vec<(String, BTreeSet<u32>)>> = BTreeMap::new();
    for e in log.iter().filter(|e| e.is_query()) {
        let text = normalize_sql(&e.text);
        let names = cfg.namer.in_sql(&text);
        if names.is_empty() {
            continue;
        }
        rep.log_page_queries += 1;
        for n in &names {
            log_by_page.entry(*n).or_default().push(text.clone());
        }
        threads.entry(e.thread).or_default().push((text, names));
    }
    // (page, sorted statements naming it) -> how many log connections show exactly that
    let mut log_sigs: HashMap<u32, Vec<(Vec<String>, usize)>> = HashMap::new();
    for stmts in threads.values() {
        let pages: BTreeSet<u32> = stmts.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        if pages.len() != 1 {
            continue;
        }
        let n = *pages.first().unwrap();
        let mut sig: Vec<String> = stmts.iter().map(|(t, _)| t.clone()).collect();
        sig.sort();
        let e = log_sigs.entry(n).or_default();
        match e.iter_mut().find(|(s, _)| *s == sig) {
            Some((_, c)) => *c += 1,
            None => e.push((sig, 1)),
        }
    }

    // --- the paths
    let mut path_by_page: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut elsewhere: Vec<String> = Vec::new();
    for v in &views {
        if v.complete {
            rep.complete_paths += 1;
        }
        let n = match v.class {
            Class::Page(n) => n,
            Class::OtherHttp | Class::Background => {
                if v.class == Class::OtherHttp {
                    rep.other_http_paths += 1;
                } else {
                    rep.background_paths += 1;
                }
                for it in v.sql.iter().filter(|i| !i.names.is_empty()) {
                    rep.non_page_path_page_queries += 1;
                    elsewhere.push(it.text.clone());
                }
                continue;
            }
        };
        rep.page_paths += 1;
        let mut ok = v.complete && v.chain;
        if !v.complete {
            rep.incomplete += 1;
        }
        if !v.chain {
            rep.no_chain += 1;
            findings.push(Finding {
                kind: "no-chain",
                path: Some(v.id),
                page: Some(n),
                detail: format!(
                    "no HTTP -> FastCGI -> SQL{} chain ({} SQL, {} memcached spans)",
                    if cfg.require_cache {
                        " + memcached"
                    } else {
                        ""
                    },
                    v.sql.len(),
                    v.keys.len()
                ),
            });
        }
        // precision
        let mut wrong = 0;
        for (what, items) in [("SQL", &v.sql), ("memcached", &v.keys)] {
            for it in items.iter() {
                if it.names.iter().any(|m| *m != n) {
                    wrong += 1;
                    findings.push(Finding {
                        kind: "wrong-stitch",
                        path: Some(v.id),
                        page: Some(n),
                        detail: format!("{what} names {:?}: {}", it.names, clip(&it.text)),
                    });
                }
            }
        }
        for (proto, m) in &v.requests {
            if *m != n {
                wrong += 1;
                findings.push(Finding {
                    kind: "wrong-stitch",
                    path: Some(v.id),
                    page: Some(n),
                    detail: format!("nested {} request for Page_{m}", proto.as_str()),
                });
            }
        }
        if wrong > 0 {
            rep.wrong_stitch_paths += 1;
            rep.wrong_items += wrong;
            ok = false;
        }
        // completeness inputs
        for it in v.sql.iter().filter(|i| i.names.contains(&n)) {
            path_by_page.entry(n).or_default().push(it.text.clone());
            rep.path_page_queries += 1;
        }
        // per connection
        let mut conns: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
        for it in &v.sql {
            conns.entry(it.conn.as_str()).or_default().push(it);
        }
        let mut mismatch = false;
        for (conn, items) in conns {
            let named: Vec<&&Item> = items.iter().filter(|i| !i.names.is_empty()).collect();
            if named.is_empty() || named.iter().any(|i| i.names.iter().any(|m| *m != n)) {
                continue; // nothing to match, or already a wrong stitch
            }
            let mut sig: Vec<&str> = named.iter().map(|i| i.text.as_str()).collect();
            sig.sort();
            let cands = log_sigs.entry(n).or_default();
            let hit = cands
                .iter()
                .position(|(s, c)| {
                    *c > 0 && s.len() == sig.len() && s.iter().zip(&sig).all(|(a, b)| a == b)
                })
                .or_else(|| {
                    cands.iter().position(|(s, c)| {
                        *c > 0 && s.len() == sig.len() && {
                            let l: Vec<&str> = s.iter().map(String::as_str).collect();
                            let (a, b) = multiset_diff(&l, &sig, cfg.min_prefix);
                            a.is_empty() && b.is_empty()
                        }
                    })
                });
            match hit {
                Some(i) => cands[i].1 -= 1,
                None => {
                    mismatch = true;
                    findings.push(Finding {
                        kind: "connection-mismatch",
                        path: Some(v.id),
                        page: Some(n),
                        detail: format!(
                            "connection {} shows {} page statement(s) that no unused log connection for Page_{n} has: {}",
                            conn.split('|').nth(1).unwrap_or(conn),
                            sig.len(),
                            sig.iter().map(|s| clip(s)).collect::<Vec<_>>().join(" ; ")
                        ),
                    });
                }
            }
        }
        if mismatch {
            rep.connection_mismatch_paths += 1;
            ok = false;
        }
        if !v.complete {
            findings.push(Finding {
                kind: "incomplete",
                path: Some(v.id),
                page: Some(n),
                detail: "vpath marked the path incomplete".into(),
            });
        }
        if ok {
            rep.exact += 1;
        }
    }

    // --- completeness per page
    for d in completeness(&log_by_page, &path_by_page, &elsewhere, cfg.min_prefix) {
        let n = d.item;
        rep.missing_queries += d.missing.len();
        rep.surplus_queries += d.surplus.len();
        for (m, found) in &d.missing {
            rep.missing_found_elsewhere += usize::from(*found);
            findings.push(Finding {
                kind: "missing",
                path: None,
                page: Some(n),
                detail: format!(
                    "in the log, in no page path for Page_{n}{}: {}",
                    if *found {
                        " (a non-page path has it)"
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
                page: Some(n),
                detail: format!(
                    "in page paths for Page_{n} more often than in the log: {}",
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

/// Everything from files, as `stack.sh` leaves them: the JSONL paths, and under `stack_dir` the general log
/// (`mysql/general.log`, between the load markers), the page ids (`mw/page-ids.tsv`, if present) and, unless
/// `requests` is given, ab's count from `load/last.json`. For wiring the check into a test.
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
    let mut cfg = Config::default();
    if let Ok(ids) = std::fs::read_to_string(stack_dir.join("mw/page-ids.tsv")) {
        cfg.namer = Namer::mediawiki(crate::names::parse_page_ids(&ids));
    }
    let requests = requests.or_else(|| {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(stack_dir.join("load/last.json")).ok()?).ok()?;
        v.get("requests")?.as_u64()
    });
    Ok(check(&paths, window, requests, &cfg))
}
