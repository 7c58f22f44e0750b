//! The Wagtail checker (`stacks/wagtail`: ab -> gunicorn sync workers running Wagtail -> PostgreSQL, each tier in
//! a network namespace of its own): judges vpath's paths by what the application ties to each request, never by
//! vpath's own causality.
//!
//! Each request is `GET /item-N/`. A path is an *item path* for N when its first HTTP span asks for `/item-N/`.
//! Wagtail names the item in its SQL by slug (`'item-N'`), URL path (`'/home/item-N/'`), tree path (a quoted
//! literal equal to the page's `path`, e.g. `'000100010003'`) and page id (`"wagtailcore_page"."id" = 5`,
//! `"page_ptr_id" = 5`, `"page_id" IN (1, 2, 5)`); [`Items`] maps all of these to N from the page table
//! (`site/page-ids.tsv`, written by `stack.sh pages`). Then:
//!
//! - **precision**: every SQL statement in the tree that names an item must name N, and every nested HTTP request
//!   must be for N; otherwise the path has a *wrong stitch*.
//! - **completeness** (per item, as multisets of statement text): every statement in PostgreSQL's log (within the
//!   load window) that names item N must be in exactly one item path for N. What the log has and the paths lack is
//!   *missing*; what the paths have more often than the log is *surplus*.
//! - **per session**: PostgreSQL logs each session's client address (`connection received: host=H port=P`, with
//!   `log_connections`) and tags every statement with the session id (`%c` in `log_line_prefix`). The statements a
//!   path shows on the connection from port P, in call order and all of them (not only the item-naming ones), must
//!   be a run of consecutive statements of a log session from port P that no other path claimed; with Django's
//!   default of a connection per request the run is the whole session. A session left with statements that no
//!   path claimed makes every path that claimed a run of it a mismatch (with a connection per request: the
//!   request's own path lacks a statement). This pins a missing, extra or swapped statement on the path that has
//!   it; a path connection whose port has no log session is a mismatch too. With persistent connections
//!   (`WT_CONN_MAX_AGE` > 0) each request is one run of its worker's session.
//! - **shape**: the path is `complete` (vpath found no issue) and has the chain HTTP server span -> PostgreSQL span.
//!
//! An item path passing all four is *exact*. Statements in paths without an HTTP request (work vpath could not tie
//! to a request) are counted separately.

use crate::common::{clip, completeness, multiset_diff, same_stmt};
use crate::jsonl::{port_of, PathRec, SpanRec};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// Item pages: page id -> N and tree path -> N (slugs and URL paths name N themselves).
#[derive(Clone, Debug, Default)]
pub struct Items {
    pub by_id: HashMap<u64, u32>,
    pub by_path: HashMap<String, u32>,
}

impl Items {
    /// `id<TAB>slug<TAB>path<TAB>url_path` lines (`seed_items --ids`); lines whose slug is not `item-N` are skipped.
    pub fn parse_tsv(text: &str) -> Items {
        let mut it = Items::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 3 {
                continue;
            }
            let (Ok(id), Some(n)) = (f[0].trim().parse::<u64>(), item_in_slug(f[1].trim())) else {
                continue;
            };
            it.by_id.insert(id, n);
            it.by_path.insert(f[2].trim().to_string(), n);
        }
        it
    }

    /// Items N with page id `id0 + N` and tree path `00010001` + N in 4 base-36 digits, as Wagtail numbers the
    /// children of the home page (for tests).
    pub fn synthetic(count: u32, id0: u64) -> Items {
        let mut it = Items::default();
        for n in 1..=count {
            it.by_id.insert(id0 + n as u64, n);
            it.by_path.insert(format!("00010001{}", base36_4(n)), n);
        }
        it
    }

    /// The items a SQL statement names.
    pub fn in_sql(&self, sql: &str) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        // slugs and URL paths: item-N not followed by a digit
        let b = sql.as_bytes();
        let mut from = 0;
        while let Some(i) = sql[from..].find("item-") {
            let at = from + i + 5;
            let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
            let before_ok = from + i == 0 || !b[from + i - 1].is_ascii_alphanumeric();
            if digits > 0 && before_ok {
                if let Ok(n) = sql[at..at + digits].parse::<u32>() {
                    out.insert(n);
                }
            }
            from = at;
        }
        // quoted literals that are an item's tree path
        let mut rest = sql;
        while let Some(i) = rest.find('\'') {
            let after = &rest[i + 1..];
            let Some(j) = after.find('\'') else { break };
            if let Some(n) = self.by_path.get(&after[..j]) {
                out.insert(*n);
            }
            rest = &after[j + 1..];
        }
        // page ids after a page-id column: `= 5` or `IN (1, 2, 5)`
        for col in [
            "\"wagtailcore_page\".\"id\"",
            "\"page_ptr_id\"",
            "\"page_id\"",
            " page_ptr_id",
            " page_id",
            "(page_id",
        ] {
            let mut from = 0;
            while let Some(i) = sql[from..].find(col) {
                let at = from + i + col.len();
                from = at;
                let tail = sql[at..].trim_start();
                let ids: Vec<u64> = if let Some(t) = tail.strip_prefix('=') {
                    let t = t.trim_start();
                    let d: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
                    d.parse().ok().into_iter().collect()
                } else if let Some(t) = tail
                    .strip_prefix("IN")
                    .or_else(|| tail.strip_prefix("in"))
                    .map(str::trim_start)
                    .and_then(|t| t.strip_prefix('('))
                {
                    let end = t.find(')').unwrap_or(t.len());
                    t[..end]
                        .split(',')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect()
                } else {
                    Vec::new()
                };
                for id in ids {
                    if let Some(n) = self.by_id.get(&id) {
                        out.insert(*n);
                    }
                }
            }
        }
        out
    }
}

fn base36_4(mut n: u32) -> String {
    const D: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut s = [b'0'; 4];
    for i in (0..4).rev() {
        s[i] = D[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(s.to_vec()).unwrap()
}

/// `item-N` exactly.
fn item_in_slug(s: &str) -> Option<u32> {
    s.strip_prefix("item-")?.parse().ok()
}

/// The item an HTTP target asks for: `/item-N/` (with or without host, query or trailing slash).
pub fn item_of_target(target: &str) -> Option<u32> {
    let t = target.split(['?', '#']).next()?;
    let i = t.find("/item-")?;
    let d: String = t[i + 6..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let rest = &t[i + 6 + d.len()..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    d.parse().ok()
}

/// Whitespace runs to one space, a trailing `;` dropped.
pub fn normalize_sql(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.trim_end_matches(';').trim_end().to_string()
}

// --- PostgreSQL's log ------------------------------------------------------------------------------------------

/// One entry of PostgreSQL's stderr log written with `log_line_prefix = '%m [%p] %c %q%u@%d '`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgEntry {
    /// 1-based line of the entry's first line.
    pub line: usize,
    pub pid: u32,
    /// `%c`: the session id (start time and pid in hex).
    pub session: String,
    /// `LOG`, `ERROR`, `DETAIL`, ...
    pub severity: String,
    /// The message after the severity (continuation lines joined with `\n`).
    pub message: String,
}

impl PgEntry {
    /// The SQL of a `statement: ...` or `execute NAME: ...` entry.
    pub fn statement(&self) -> Option<&str> {
        if self.severity != "LOG" {
            return None;
        }
        if let Some(s) = self.message.strip_prefix("statement: ") {
            return Some(s);
        }
        let s = self.message.strip_prefix("execute ")?;
        let (_, sql) = s.split_once(": ")?;
        Some(sql)
    }

    /// The client port of a `connection received: host=H port=P` entry.
    pub fn connection_port(&self) -> Option<(String, u16)> {
        let s = self.message.strip_prefix("connection received: ")?;
        let mut host = None;
        let mut port = None;
        for kv in s.split_whitespace() {
            if let Some(h) = kv.strip_prefix("host=") {
                host = Some(h.to_string());
            } else if let Some(p) = kv.strip_prefix("port=") {
                port = p.parse().ok();
            }
        }
        Some((host?, port?))
    }
}

const SEVERITIES: &[&str] = &[
    "LOG:",
    "ERROR:",
    "FATAL:",
    "PANIC:",
    "WARNING:",
    "NOTICE:",
    "INFO:",
    "DETAIL:",
    "HINT:",
    "STATEMENT:",
    "CONTEXT:",
    "DEBUG:",
    "DEBUG1:",
    "DEBUG2:",
    "DEBUG3:",
    "DEBUG4:",
    "DEBUG5:",
    "LOCATION:",
    "QUERY:",
];

fn parse_head(line: &str) -> Option<(u32, String, String, String)> {
    // 2026-11-26 09:38:42.309 UTC [14017] 6b07fe22.36c1 postgres@postgres LOG:  statement: ...
    let b = line.as_bytes();
    if b.len() < 24 || !b[0].is_ascii_digit() || b[4] != b'-' || b[10] != b' ' {
        return None;
    }
    let open = line.find(" [")?;
    let close = open + line[open..].find("] ")?;
    let pid: u32 = line[open + 2..close].parse().ok()?;
    let rest = &line[close + 2..];
    let (session, rest) = rest.split_once(' ')?;
    if !session.contains('.') {
        return None;
    }
    // optional user@db, then the severity
    let mut rest = rest;
    for _ in 0..2 {
        for sev in SEVERITIES {
            if let Some(m) = rest.strip_prefix(sev) {
                return Some((
                    pid,
                    session.to_string(),
                    sev.trim_end_matches(':').to_string(),
                    m.trim_start_matches(' ').to_string(),
                ));
            }
        }
        rest = rest.split_once(' ')?.1;
    }
    None
}

/// Parses the log; a line that does not start an entry continues the previous one (a statement with newlines).
pub fn parse_pglog(text: &str) -> Vec<PgEntry> {
    let mut out: Vec<PgEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_head(line) {
            Some((pid, session, severity, message)) => out.push(PgEntry {
                line: i + 1,
                pid,
                session,
                severity,
                message,
            }),
            None => {
                if let Some(last) = out.last_mut() {
                    last.message.push('\n');
                    last.message.push_str(line);
                }
            }
        }
    }
    out
}

/// The entries after the last statement containing `begin` and before the first statement containing `end` after
/// it (the whole log when the markers are missing).
pub fn pglog_window<'a>(entries: &'a [PgEntry], begin: &str, end: &str) -> &'a [PgEntry] {
    let b = entries
        .iter()
        .rposition(|e| e.statement().is_some_and(|s| s.contains(begin)))
        .map_or(0, |i| i + 1);
    let e = entries[b..]
        .iter()
        .position(|e| e.statement().is_some_and(|s| s.contains(end)))
        .map_or(entries.len(), |i| b + i);
    &entries[b..e]
}

/// Session id -> client port, from the `connection received` entries.
pub fn session_ports(entries: &[PgEntry]) -> HashMap<String, u16> {
    entries
        .iter()
        .filter_map(|e| e.connection_port().map(|(_, p)| (e.session.clone(), p)))
        .collect()
}

// --- the check -------------------------------------------------------------------------------------------------

/// How to read the stack.
#[derive(Clone, Debug)]
pub struct Config {
    pub http_ports: BTreeSet<u16>,
    pub db_ports: BTreeSet<u16>,
    pub items: Items,
    /// Client ports of sessions that connected before the log window (persistent connections), from
    /// [`session_ports`] over the whole log.
    pub session_ports: HashMap<String, u16>,
    /// A path's statement shorter than the log's matches it when it is a prefix of at least this many bytes
    /// (payload capture truncates long statements).
    pub min_prefix: usize,
    /// How many findings the report lists (all are counted).
    pub max_findings: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            http_ports: [18000].into_iter().collect(),
            db_ports: [15432].into_iter().collect(),
            items: Items::default(),
            session_ports: HashMap::new(),
            min_prefix: 24,
            max_findings: 40,
        }
    }
}

/// One thing found wrong (or noteworthy), for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `wrong-stitch`, `missing`, `surplus`, `session-mismatch`, `no-chain`, `incomplete`.
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

/// The verdict for one stack run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub stack: String,
    /// Requests the load generator completed (ab's count), when known.
    pub requests: Option<u64>,
    pub paths: usize,
    pub complete_paths: usize,
    /// Paths whose request is for some item.
    pub item_paths: usize,
    /// Paths with an HTTP request that is not an item view (or whose request text was not captured).
    pub other_http_paths: usize,
    /// Paths with no HTTP request at all.
    pub background_paths: usize,
    pub exact: usize,
    /// Item paths with at least one statement or nested request naming another item.
    pub wrong_stitch_paths: usize,
    pub wrong_items: usize,
    /// Item paths marked `"complete": false` by vpath.
    pub incomplete: usize,
    /// Item paths without the HTTP -> PostgreSQL chain.
    pub no_chain: usize,
    /// Item paths whose statements on some connection are no unclaimed run of a log session from that port, or
    /// that claimed a run of a session some of whose statements are in no path.
    pub session_mismatch_paths: usize,
    /// Sessions in the log window (with statements), and those naming an item.
    pub log_sessions: usize,
    pub log_item_sessions: usize,
    /// Log sessions naming an item with statements that no item path claimed.
    pub unmatched_item_sessions: usize,
    /// Statements naming an item in the log window, and in item paths (for that item).
    pub log_item_statements: usize,
    pub path_item_statements: usize,
    /// Log statements naming item N found in no item path for N.
    pub missing_statements: usize,
    /// ... of which a path without an item request holds one with that text.
    pub missing_found_elsewhere: usize,
    /// Item-path statements for N beyond the log's count (duplicates).
    pub surplus_statements: usize,
    /// Statements naming an item in paths that are not item paths.
    pub non_item_path_item_statements: usize,
    /// Every span issue vpath reported, with how many spans carry it (all paths).
    pub issues: BTreeMap<String, usize>,
    /// Spans per protocol (all paths; origin spans with a server child not counted).
    pub spans: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
    pub findings_total: usize,
}

impl Report {
    /// True when nothing was found wrong and every request is an exact path.
    pub fn all_exact(&self) -> bool {
        self.wrong_items == 0
            && self.missing_statements == 0
            && self.surplus_statements == 0
            && self.session_mismatch_paths == 0
            && self.unmatched_item_sessions == 0
            && self.exact == self.item_paths
            && self.requests.is_none_or(|r| r == self.exact as u64)
    }

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

    /// One line of the table (`table_header` first).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<8} {:>8} {:>6} {:>10} {:>6} {:>7} {:>6} {:>10} {:>8} {:>9} {:>8} {:>8} {:>10}",
            "stack",
            "requests",
            "paths",
            "item-paths",
            "exact",
            "exact%",
            "wrong",
            "incomplete",
            "no-chain",
            "sess-mis",
            "missing",
            "surplus",
            "background"
        );
        let _ = writeln!(
            s,
            "{:<8} {:>8} {:>6} {:>10} {:>6} {:>6.1}% {:>6} {:>10} {:>8} {:>9} {:>8} {:>8} {:>10}",
            self.stack,
            self.requests.map_or("-".to_string(), |n| n.to_string()),
            self.paths,
            self.item_paths,
            self.exact,
            100.0 * self.exact_share(),
            self.wrong_stitch_paths,
            self.incomplete,
            self.no_chain,
            self.session_mismatch_paths,
            self.missing_statements,
            self.surplus_statements,
            self.background_paths
        );
        s
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Http,
    Pg,
    Other,
}

fn proto(s: &SpanRec, cfg: &Config) -> Proto {
    match s
        .protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("http" | "http/1.0" | "http/1.1") => return Proto::Http,
        Some("postgresql" | "postgres" | "pgsql") => return Proto::Pg,
        _ => {}
    }
    match port_of(s.server_endpoint()) {
        Some(p) if cfg.http_ports.contains(&p) => Proto::Http,
        Some(p) if cfg.db_ports.contains(&p) => Proto::Pg,
        _ => Proto::Other,
    }
}

/// A span that stands for a request of its own: server and remote spans, and origins with no server child.
fn counts(s: &SpanRec) -> bool {
    s.kind == "server" || s.kind == "remote" || (s.kind == "origin" && s.children.is_empty())
}

struct Stmt {
    /// The client port of the connection.
    port: Option<u16>,
    text: String,
    names: BTreeSet<u32>,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Class {
    Item(u32),
    OtherHttp,
    Background,
}

struct View {
    id: u64,
    complete: bool,
    class: Class,
    sql: Vec<Stmt>,
    requests: Vec<u32>,
    chain: bool,
}

fn has_pg_below(s: &SpanRec, cfg: &Config) -> bool {
    s.children
        .iter()
        .any(|c| (c.kind != "origin" && proto(c, cfg) == Proto::Pg) || has_pg_below(c, cfg))
}

fn chain(s: &SpanRec, cfg: &Config) -> bool {
    (s.kind == "server" && proto(s, cfg) == Proto::Http && has_pg_below(s, cfg))
        || s.children.iter().any(|c| chain(c, cfg))
}

fn view(p: &PathRec, cfg: &Config, rep: &mut Report) -> View {
    let mut first_http: Option<Option<u32>> = None;
    let mut sql = Vec::new();
    let mut requests = Vec::new(); // every HTTP request in the tree (the path's own too): all must be for N
    p.root.walk(&mut |s, _| {
        for i in &s.issues {
            *rep.issues.entry(i.clone()).or_default() += 1;
        }
        let pr = proto(s, cfg);
        if counts(s) {
            let name = match pr {
                Proto::Http => "http",
                Proto::Pg => "postgresql",
                Proto::Other => "other",
            };
            *rep.spans.entry(name.to_string()).or_default() += 1;
        }
        match pr {
            Proto::Http => {
                let item = s
                    .first_attr(&["http.target", "url.path", "url.full"])
                    .or_else(|| s.name.clone())
                    .and_then(|t| item_of_target(&t));
                if first_http.is_none() {
                    first_http = Some(item);
                }
                if let Some(n) = item {
                    requests.push(n);
                }
            }
            Proto::Pg if counts(s) => {
                if let Some(t) = s.first_attr(&["db.query.text", "db.statement"]) {
                    let text = normalize_sql(&t);
                    let names = cfg.items.in_sql(&text);
                    sql.push(Stmt {
                        port: port_of(s.client_endpoint()),
                        text,
                        names,
                    });
                }
            }
            _ => {}
        }
    });
    let class = match first_http {
        Some(Some(n)) => Class::Item(n),
        Some(None) => Class::OtherHttp,
        None => Class::Background,
    };
    View {
        id: p.path,
        complete: p.complete,
        class,
        sql,
        requests,
        chain: chain(&p.root, cfg),
    }
}

struct Session {
    port: Option<u16>,
    stmts: Vec<String>,
    names: BTreeSet<u32>,
    /// Statements already claimed by a path.
    covered: Vec<bool>,
    /// Indexes (in `checked`) of the item paths that claimed runs of this session.
    paths: Vec<usize>,
}

/// The first position k where `want` equals `have[k..]` (statement by statement, truncation allowed) over
/// statements no path has claimed yet.
fn find_run(have: &[String], covered: &[bool], want: &[&str], min: usize) -> Option<usize> {
    if want.is_empty() || want.len() > have.len() {
        return None;
    }
    (0..=have.len() - want.len()).find(|&k| {
        want.iter()
            .enumerate()
            .all(|(i, w)| !covered[k + i] && same_stmt(w, &have[k + i], min))
    })
}

/// Checks vpath's paths against PostgreSQL's log window.
pub fn check(paths: &[PathRec], log: &[PgEntry], requests: Option<u64>, cfg: &Config) -> Report {
    let mut rep = Report {
        stack: "wagtail".into(),
        requests,
        paths: paths.len(),
        ..Default::default()
    };
    let mut findings: Vec<Finding> = Vec::new();
    let views: Vec<View> = paths.iter().map(|p| view(p, cfg, &mut rep)).collect();

    // --- the log: sessions (with their client port) and the statements naming items
    let mut order: Vec<String> = Vec::new();
    let mut sessions: HashMap<String, Session> = HashMap::new();
    let mut log_by_item: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for e in log {
        let s = sessions.entry(e.session.clone()).or_insert_with(|| {
            order.push(e.session.clone());
            Session {
                port: None,
                stmts: Vec::new(),
                names: BTreeSet::new(),
                covered: Vec::new(),
                paths: Vec::new(),
            }
        });
        if let Some((_, port)) = e.connection_port() {
            s.port = Some(port);
        }
        if let Some(sql) = e.statement() {
            let text = normalize_sql(sql);
            let names = cfg.items.in_sql(&text);
            if !names.is_empty() {
                rep.log_item_statements += 1;
                for n in &names {
                    log_by_item.entry(*n).or_default().push(text.clone());
                }
            }
            s.names.extend(names);
            s.stmts.push(text);
            s.covered.push(false);
        }
    }
    let mut by_port: HashMap<u16, Vec<String>> = HashMap::new();
    for id in &order {
        let s = sessions.get_mut(id).unwrap();
        if s.port.is_none() {
            s.port = cfg.session_ports.get(id).copied();
        }
        let s = &sessions[id];
        if s.stmts.is_empty() {
            continue;
        }
        rep.log_sessions += 1;
        if !s.names.is_empty() {
            rep.log_item_sessions += 1;
        }
        if let Some(p) = s.port {
            by_port.entry(p).or_default().push(id.clone());
        }
    }

    // --- the paths
    let mut path_by_item: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // (path id, item, exact but for the session check, session mismatch)
    let mut checked: Vec<(u64, u32, bool, bool)> = Vec::new();
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
                for it in v.sql.iter().filter(|i| !i.names.is_empty()) {
                    rep.non_item_path_item_statements += 1;
                    elsewhere.push(it.text.clone());
                }
                continue;
            }
        };
        rep.item_paths += 1;
        let mut ok = v.complete && v.chain;
        if !v.complete {
            rep.incomplete += 1;
            findings.push(Finding {
                kind: "incomplete",
                path: Some(v.id),
                item: Some(n),
                detail: "vpath marked the path incomplete".into(),
            });
        }
        if !v.chain {
            rep.no_chain += 1;
            findings.push(Finding {
                kind: "no-chain",
                path: Some(v.id),
                item: Some(n),
                detail: format!("no HTTP -> PostgreSQL chain ({} SQL spans)", v.sql.len()),
            });
        }
        // precision
        let mut wrong = 0;
        for it in &v.sql {
            if it.names.iter().any(|m| *m != n) {
                wrong += 1;
                findings.push(Finding {
                    kind: "wrong-stitch",
                    path: Some(v.id),
                    item: Some(n),
                    detail: format!("SQL names items {:?}: {}", it.names, clip(&it.text)),
                });
            }
        }
        for m in &v.requests {
            if *m != n {
                wrong += 1;
                findings.push(Finding {
                    kind: "wrong-stitch",
                    path: Some(v.id),
                    item: Some(n),
                    detail: format!("nested HTTP request for item-{m}"),
                });
            }
        }
        if wrong > 0 {
            rep.wrong_stitch_paths += 1;
            rep.wrong_items += wrong;
            ok = false;
        }
        for it in v.sql.iter().filter(|i| i.names.contains(&n)) {
            path_by_item.entry(n).or_default().push(it.text.clone());
            rep.path_item_statements += 1;
        }
        // per session: the statements of each connection, in call order, against a run of the log session
        // from that port (the whole session when Django opens a connection per request)
        let mut conns: BTreeMap<Option<u16>, Vec<&str>> = BTreeMap::new();
        for it in &v.sql {
            conns.entry(it.port).or_default().push(it.text.as_str());
        }
        let mut mismatch = false;
        for (port, stmts) in conns {
            let cands = port.and_then(|p| by_port.get(&p));
            let hit = cands.and_then(|ids| {
                ids.iter().find_map(|id| {
                    let s = &sessions[id];
                    find_run(&s.stmts, &s.covered, &stmts, cfg.min_prefix).map(|k| (id.clone(), k))
                })
            });
            match hit {
                Some((id, k)) => {
                    let s = sessions.get_mut(&id).unwrap();
                    for c in &mut s.covered[k..k + stmts.len()] {
                        *c = true;
                    }
                    s.paths.push(checked.len());
                }
                None => {
                    mismatch = true;
                    let detail = match cands {
                        None => format!(
                            "connection from port {} ({} statements): no log session from that port",
                            port.map_or("?".into(), |p| p.to_string()),
                            stmts.len()
                        ),
                        Some(ids) => {
                            // the statements of that port's sessions not yet in a path, to show the difference
                            let l: Vec<&str> = ids
                                .iter()
                                .flat_map(|id| {
                                    let s = &sessions[id];
                                    s.stmts.iter().zip(&s.covered).filter(|(_, c)| !**c).map(|(t, _)| t.as_str())
                                })
                                .collect();
                            let (a, b) = multiset_diff(&l, &stmts, cfg.min_prefix);
                            format!(
                                "connection from port {} ({} statements) is no run of a log session from that port: the sessions' unclaimed statements lack {} of them [{}]",
                                port.map_or("?".into(), |p| p.to_string()),
                                stmts.len(),
                                b.len(),
                                b.iter().map(|s| clip(s)).collect::<Vec<_>>().join(" ; "),
                            ) + &if a.is_empty() { String::new() } else { format!("; {} unclaimed there", a.len()) }
                        }
                    };
                    findings.push(Finding {
                        kind: "session-mismatch",
                        path: Some(v.id),
                        item: Some(n),
                        detail,
                    });
                }
            }
        }
        checked.push((v.id, n, ok, mismatch));
    }
    // a session with statements in no path: the paths that took runs of it are not exact either (with one
    // connection per request, that is the request's own path lacking a statement)
    for id in &order {
        let s = &sessions[id];
        let left: Vec<&str> = s
            .stmts
            .iter()
            .zip(&s.covered)
            .filter(|(_, c)| !**c)
            .map(|(t, _)| t.as_str())
            .collect();
        if s.stmts.is_empty() || left.is_empty() {
            continue;
        }
        if !s.names.is_empty() {
            rep.unmatched_item_sessions += 1;
        }
        for &i in &s.paths {
            let (pid, n, _, ref mut mismatch) = checked[i];
            if !*mismatch {
                *mismatch = true;
                findings.push(Finding {
                    kind: "session-mismatch",
                    path: Some(pid),
                    item: Some(n),
                    detail: format!(
                        "its log session (from port {}) has {} statement(s) in no path: {}",
                        s.port.map_or("?".into(), |p| p.to_string()),
                        left.len(),
                        left.iter().map(|t| clip(t)).collect::<Vec<_>>().join(" ; ")
                    ),
                });
            }
        }
    }
    for (_, _, ok, mismatch) in &checked {
        if *mismatch {
            rep.session_mismatch_paths += 1;
        }
        if *ok && !*mismatch {
            rep.exact += 1;
        }
    }

    // --- completeness per item
    for d in completeness(&log_by_item, &path_by_item, &elsewhere, cfg.min_prefix) {
        let n = d.item;
        rep.missing_statements += d.missing.len();
        rep.surplus_statements += d.surplus.len();
        for (m, found) in &d.missing {
            rep.missing_found_elsewhere += usize::from(*found);
            findings.push(Finding {
                kind: "missing",
                path: None,
                item: Some(n),
                detail: format!(
                    "in the log, in no item path for item-{n}{}: {}",
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
                    "in item paths for item-{n} more often than in the log: {}",
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

/// Everything from files, as `stacks/wagtail/stack.sh` leaves them: the JSONL paths, and under `stack_dir`
/// PostgreSQL's log (`pg/log/postgresql.log`, between the load markers), the item ids (`site/page-ids.tsv`) and,
/// unless `requests` is given, ab's count from `load/last.json`.
pub fn check_stack_dir(
    paths: &std::path::Path,
    stack_dir: &std::path::Path,
    requests: Option<u64>,
) -> anyhow::Result<Report> {
    use anyhow::Context;
    let f = std::fs::File::open(paths).with_context(|| format!("opening {}", paths.display()))?;
    let paths = crate::jsonl::read_paths(std::io::BufReader::new(f))?;
    let log = std::fs::read(stack_dir.join("pg/log/postgresql.log"))
        .context("reading PostgreSQL's log")?;
    let entries = parse_pglog(&String::from_utf8_lossy(&log));
    let window = pglog_window(&entries, "vpath-load-begin", "vpath-load-end");
    let ids = std::fs::read_to_string(stack_dir.join("site/page-ids.tsv"))
        .context("reading site/page-ids.tsv")?;
    let cfg = Config {
        items: Items::parse_tsv(&ids),
        session_ports: session_ports(&entries),
        ..Config::default()
    };
    let requests = requests.or_else(|| {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(stack_dir.join("load/last.json")).ok()?).ok()?;
        v.get("requests")?.as_u64()
    });
    Ok(check(&paths, window, requests, &cfg))
}
