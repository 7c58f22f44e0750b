//! `--format html`: one self-contained HTML file that opens offline and
//! makes no network request (its Content-Security-Policy forbids any).
//!
//! What it shows: the tier topology (an SVG laid out by layout-rs), the
//! discovered paths in a searchable, sortable table with a waterfall of the
//! selected path, the latency CDF of every tier (an SVG drawn by plotters),
//! the capture's health (events, kernel drops, incomplete paths and why),
//! and, when the caller adds them ([`HtmlReport::accuracy`],
//! [`HtmlReport::overhead`]), the demo's accuracy and overhead tables.
//!
//! Everything but the path table is rendered here, in Rust, as static HTML
//! and SVG. The paths are embedded once as JSON (`#vpath-data`, layout
//! below) and drawn lazily by a small hand-written script
//! (`assets/html/report.js`): a page of table rows at a time, one waterfall
//! at a time.
//!
//! Memory and size stay bounded: the topology, the CDFs and the counts are
//! aggregated over every path as it arrives (histograms), while at most
//! [`HtmlReport::max_paths`] paths are kept for the table: all of them up to
//! that cap; beyond it the slowest fifth of the cap and a uniform random
//! sample (reservoir, fixed seed) of the others. The page says so, with the
//! counts.
//!
//! # The embedded data
//! `{"meta": {...}, "nodes": [NODE], "places": [PLACE], "eps": [endpoint],
//! "issues": [issue name], "paths": [PATH]}` where
//! - NODE is `{"program", "tier", "group", "endpoint", "kind", "color"}`,
//!   the topology's nodes (a span's `node` indexes them);
//! - PLACE is `[host, netns, pid, tid, comm, process]` (for remote spans the
//!   caller's);
//! - PATH is `[id, complete (0/1), root start (Unix ms), duration ns, [SPAN]]`;
//! - SPAN is `[depth, parent (-1 for the root), kind (0 server, 1 origin,
//!   2 remote), node, place, local, remote, start ns (from the root's
//!   start, wall clock), duration ns, bytes in, bytes out, [issue], name]`,
//!   depth first; `name` is null until spans carry one, and the waterfall
//!   shows it instead of the program when present ([`span_name`]).

pub mod chart;
pub mod graph;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::io::{self, Write};

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{json, Value};
use vpath_core::event::fmt_endpoint;
use vpath_core::{Issue, Path, Span, SpanKind};

pub use chart::{cdf_svg, cdf_svg_file, short_duration, CdfSeries};
pub use graph::Graph;

use super::{flatten, Clocks, Place};
use crate::sink::{fmt_duration, health_line, Hist, RunInfo, Sink};

const CSS: &str = include_str!("../../../assets/html/report.css");
const JS: &str = include_str!("../../../assets/html/report.js");

/// Paths kept for the table by default.
pub const DEFAULT_MAX_PATHS: usize = 5000;
/// Tiers drawn in the latency CDF (those with the most spans).
pub const MAX_CDF_LINES: usize = 12;

/// A duration as the text output writes it, with `µs` for microseconds.
pub fn dur(ns: u64) -> String {
    let s = fmt_duration(ns);
    match s.strip_suffix(" us") {
        Some(v) => format!("{v} µs"),
        None => s,
    }
}

/// HTML-escapes text (also for attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// What the waterfall calls a span, when it has a better name than its
/// tier's program: its protocol reading (request line, SQL text, cache
/// command), shown in the waterfall, the search and the tooltips.
pub fn span_name(s: &Span) -> Option<String> {
    crate::sink::span_title(s)
}

/// One execution model's accuracy (the demo's ground-truth scoring).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccuracyRow {
    pub model: String,
    /// Requests in the ground truth.
    pub paths: u64,
    pub exact: u64,
    pub wrong: u64,
    pub incomplete: u64,
    pub false_complete: u64,
    /// Paths vpath discovered.
    pub discovered: u64,
    pub events: u64,
    pub events_lost: u64,
    /// Spans carrying each issue.
    pub issues: BTreeMap<String, u64>,
}

/// Latency and throughput of a set of load passes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadRow {
    pub label: String,
    /// Requests per second.
    pub throughput: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

/// A table of preformatted cells (the first column is left-aligned, the
/// others right-aligned).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub note: Option<String>,
}

/// The demo's overhead measurement: untraced against traced, their
/// response-time CDFs, and any further table (the dissection by stage).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OverheadSection {
    /// What was measured, in a line.
    pub description: String,
    pub untraced: LoadRow,
    pub traced: LoadRow,
    pub events: u64,
    pub events_dropped: u64,
    /// Response-time CDFs (untraced, traced).
    pub cdf: Vec<CdfSeries>,
    /// Where the CDF is as data (a CSV file).
    pub cdf_csv: Option<String>,
    pub tables: Vec<Table>,
}

/// The report's options and extra sections; [`HtmlReport::sink`] makes the
/// [`Sink`] that writes it.
#[derive(Clone, Debug)]
pub struct HtmlReport {
    pub title: String,
    pub subtitle: Option<String>,
    /// Paths kept for the table (see the module doc).
    pub max_paths: usize,
    /// Which run the paths come from, when the report holds more than one
    /// (e.g. "the thread-per-request accuracy pass").
    pub paths_from: Option<String>,
    pub accuracy: Vec<AccuracyRow>,
    pub accuracy_note: Option<String>,
    pub overhead: Option<OverheadSection>,
}

impl Default for HtmlReport {
    fn default() -> Self {
        HtmlReport {
            title: "vpath report".into(),
            subtitle: None,
            max_paths: DEFAULT_MAX_PATHS,
            paths_from: None,
            accuracy: Vec::new(),
            accuracy_note: None,
            overhead: None,
        }
    }
}

impl HtmlReport {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn title(mut self, t: impl Into<String>) -> Self {
        self.title = t.into();
        self
    }
    pub fn subtitle(mut self, t: impl Into<String>) -> Self {
        self.subtitle = Some(t.into());
        self
    }
    pub fn max_paths(mut self, n: usize) -> Self {
        self.max_paths = n;
        self
    }
    pub fn paths_from(mut self, t: impl Into<String>) -> Self {
        self.paths_from = Some(t.into());
        self
    }
    pub fn accuracy(mut self, rows: Vec<AccuracyRow>, note: Option<String>) -> Self {
        self.accuracy = rows;
        self.accuracy_note = note;
        self
    }
    pub fn overhead(mut self, o: OverheadSection) -> Self {
        self.overhead = Some(o);
        self
    }
    /// The sink that collects paths and writes the page at `finish`.
    pub fn sink<W: Write>(self, out: W) -> HtmlSink<W> {
        HtmlSink {
            out,
            state: Collected::new(self.max_paths),
            report: self,
        }
    }
}

/// A path kept for the table, with the topology node of each span.
struct Kept {
    dur: u64,
    seq: u64,
    path: Path,
    nodes: Vec<u32>,
}

impl PartialEq for Kept {
    fn eq(&self, o: &Self) -> bool {
        (self.dur, self.seq) == (o.dur, o.seq)
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Kept {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.dur, Reverse(self.seq)).cmp(&(o.dur, Reverse(o.seq)))
    }
}

/// What the sink aggregates over every path, and the paths it keeps.
struct Collected {
    graph: Graph,
    seen: u64,
    complete: u64,
    spans: u64,
    durations: Hist,
    issue_spans: BTreeMap<Issue, u64>,
    issue_paths: BTreeMap<Issue, u64>,
    /// The slowest paths (a min-heap on duration).
    slow: BinaryHeap<Reverse<Kept>>,
    slow_cap: usize,
    /// A uniform sample of the paths not among the slowest.
    sample: Vec<Kept>,
    sample_cap: usize,
    /// Paths offered to the sample.
    offered: u64,
    rng: u64,
}

impl Collected {
    fn new(cap: usize) -> Collected {
        let slow_cap = if cap == 0 { 0 } else { (cap / 5).max(1) };
        Collected {
            graph: Graph::default(),
            seen: 0,
            complete: 0,
            spans: 0,
            durations: Hist::default(),
            issue_spans: BTreeMap::new(),
            issue_paths: BTreeMap::new(),
            slow: BinaryHeap::new(),
            slow_cap,
            sample: Vec::new(),
            sample_cap: cap - slow_cap,
            offered: 0,
            rng: 0x7670_6174_6873_0001,
        }
    }

    fn next_rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn add(&mut self, p: &Path) {
        self.seen += 1;
        if p.complete {
            self.complete += 1;
        }
        let dur = p.root.end_ns.saturating_sub(p.root.start_ns);
        self.durations.add(dur);
        let nodes: Vec<u32> = self.graph.add(p).into_iter().map(|k| k as u32).collect();
        self.spans += nodes.len() as u64;
        let mut in_path: Vec<Issue> = Vec::new();
        p.root.walk(&mut |s, _| {
            for i in &s.issues {
                *self.issue_spans.entry(*i).or_default() += 1;
                if !in_path.contains(i) {
                    in_path.push(*i);
                }
            }
        });
        for i in in_path {
            *self.issue_paths.entry(i).or_default() += 1;
        }
        let item = Kept {
            dur,
            seq: self.seen,
            path: p.clone(),
            nodes,
        };
        if self.slow_cap == 0 {
            return;
        }
        if self.slow.len() < self.slow_cap {
            self.slow.push(Reverse(item));
            return;
        }
        let faster = match self.slow.peek() {
            Some(Reverse(min)) if item > *min => self.slow.pop().map(|Reverse(k)| k),
            _ => None,
        };
        let to_sample = match faster {
            Some(out) => {
                self.slow.push(Reverse(item));
                out
            }
            None => item,
        };
        self.offer(to_sample);
    }

    /// Reservoir sampling (Algorithm R): every offered path is kept with
    /// the same probability, whatever the order of the offers.
    fn offer(&mut self, k: Kept) {
        self.offered += 1;
        if self.sample.len() < self.sample_cap {
            self.sample.push(k);
            return;
        }
        let j = self.next_rand() % self.offered;
        if (j as usize) < self.sample_cap {
            self.sample[j as usize] = k;
        }
    }

    /// The kept paths in arrival order.
    fn kept(&mut self) -> Vec<Kept> {
        let mut v: Vec<Kept> = std::mem::take(&mut self.slow)
            .into_iter()
            .map(|Reverse(k)| k)
            .collect();
        v.append(&mut self.sample);
        v.sort_by_key(|k| k.seq);
        v
    }
}

/// Writes the HTML report at `finish`. Make one with [`HtmlReport::sink`]
/// (or [`HtmlSink::new`] for the plain report).
pub struct HtmlSink<W: Write> {
    out: W,
    report: HtmlReport,
    state: Collected,
}

impl<W: Write> HtmlSink<W> {
    pub fn new(out: W) -> Self {
        HtmlReport::new().sink(out)
    }
}

impl<W: Write> Sink for HtmlSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.state.add(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        let page = render(&self.report, &mut self.state, info);
        self.out.write_all(page.as_bytes())?;
        self.out.flush()
    }
}

fn issue_index(i: Issue) -> usize {
    ALL_ISSUES.iter().position(|x| *x == i).unwrap_or(0)
}

const ALL_ISSUES: [Issue; 12] = [
    Issue::EventsLost,
    Issue::TruncatedStart,
    Issue::NoReply,
    Issue::AmbiguousThread,
    Issue::HandOff,
    Issue::Unattributed,
    Issue::CalleeMissing,
    Issue::CallerMissing,
    Issue::Unaligned,
    Issue::RoleGuessed,
    Issue::LateBytes,
    Issue::DepthLimit,
];

/// What an issue means, in a sentence.
pub fn issue_meaning(i: Issue) -> &'static str {
    match i {
        Issue::EventsLost => "events were lost in the kernel (ring buffer full) while the span was active",
        Issue::TruncatedStart => "the request began before observation started, or its first bytes were not seen",
        Issue::NoReply => "the input ended, or the connection closed, before the reply was seen",
        Issue::AmbiguousThread => "the thread served several requests at once (an event loop): its calls cannot be attributed",
        Issue::HandOff => "another thread replied (thread-pool hand-off) and the worker's calls could not be proven to belong here",
        Issue::Unattributed => "calls made by a serving process's thread while it served no request",
        Issue::CalleeMissing => "the callee is observed but its server span was not found",
        Issue::CallerMissing => "the caller is observed but the call that led here was not found",
        Issue::Unaligned => "stream positions were unknown and the connection was seen mid-stream",
        Issue::RoleGuessed => "client and server roles were guessed from who spoke first",
        Issue::LateBytes => "bytes arrived for a message after its span had been flushed",
        Issue::DepthLimit => "the path went deeper than the analyzer's depth limit: the calls below were cut off",
    }
}

fn kind_code(k: SpanKind) -> u8 {
    match k {
        SpanKind::Server => 0,
        SpanKind::Origin => 1,
        SpanKind::Remote => 2,
    }
}

/// The embedded JSON (see the module doc).
fn data_json(report: &HtmlReport, st: &Collected, kept: &[Kept], clocks: &Clocks) -> String {
    let mut places: FxHashMap<Place, usize> = FxHashMap::default();
    let mut place_list: Vec<Value> = Vec::new();
    let mut eps: FxHashMap<String, usize> = FxHashMap::default();
    let mut ep_list: Vec<String> = Vec::new();
    let mut ep = |a: &std::net::SocketAddr| -> usize {
        let s = fmt_endpoint(a);
        if let Some(&k) = eps.get(&s) {
            return k;
        }
        ep_list.push(s.clone());
        eps.insert(s, ep_list.len() - 1);
        ep_list.len() - 1
    };
    let mut paths = Vec::with_capacity(kept.len());
    for k in kept {
        let fp = flatten(&k.path, clocks);
        let root_start = fp.spans.first().map_or(0, |s| s.start_wall_ns);
        let mut spans = Vec::with_capacity(fp.spans.len());
        for (i, f) in fp.spans.iter().enumerate() {
            let pl = match places.get(&f.place) {
                Some(&x) => x,
                None => {
                    let p = &f.place;
                    place_list.push(json!([
                        &*p.host,
                        p.netns,
                        p.pid,
                        p.tid,
                        &*p.comm,
                        &*p.process
                    ]));
                    places.insert(p.clone(), place_list.len() - 1);
                    place_list.len() - 1
                }
            };
            let s = f.span;
            let issues: Vec<usize> = s.issues.iter().map(|x| issue_index(*x)).collect();
            spans.push(json!([
                f.depth,
                f.parent.map_or(-1, |p| p as i64),
                kind_code(s.kind),
                k.nodes.get(i).copied().unwrap_or(0),
                pl,
                ep(&s.local),
                ep(&s.remote),
                f.start_wall_ns as i64 - root_start as i64,
                f.end_wall_ns - f.start_wall_ns,
                s.bytes_in,
                s.bytes_out,
                issues,
                span_name(s),
            ]));
        }
        let dur = fp
            .spans
            .first()
            .map_or(0, |s| s.end_wall_ns - s.start_wall_ns);
        paths.push(json!([
            k.path.path,
            k.path.complete as u8,
            root_start as f64 / 1e6,
            dur,
            spans
        ]));
    }
    let nodes: Vec<Value> = st
        .graph
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            json!({
                "program": n.program,
                "tier": n.tier,
                "group": n.group,
                "endpoint": n.endpoint,
                "kind": match n.kind { SpanKind::Server => "server", SpanKind::Origin => "origin", SpanKind::Remote => "remote" },
                "color": graph::color(&st.graph, k),
            })
        })
        .collect();
    let data = json!({
        "meta": {
            "title": report.title,
            "paths_seen": st.seen,
            "paths_kept": kept.len(),
            "max_paths": report.max_paths,
        },
        "nodes": nodes,
        "places": place_list,
        "eps": ep_list,
        "issues": ALL_ISSUES.iter().map(|i| i.name()).collect::<Vec<_>>(),
        "paths": paths,
    });
    // Inside <script>, "</script>" or "<!--" in a string would end it.
    serde_json::to_string(&data)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
}

fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        "–".into()
    } else {
        let v = 100.0 * a as f64 / b as f64;
        if v > 99.9 && a < b {
            "99.9%".into()
        } else if v < 0.1 && a > 0 {
            "<0.1%".into()
        } else {
            format!("{v:.1}%")
        }
    }
}

pub(crate) fn num(n: u64) -> String {
    // Groups of three digits from the right, joined by a narrow space.
    let digits: Vec<char> = n.to_string().chars().collect();
    let mut groups: Vec<String> = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(digits[end - 3..end].iter().collect());
        end -= 3;
    }
    groups.push(digits[..end].iter().collect());
    groups.reverse();
    groups.join("\u{202f}")
}

fn card(out: &mut String, class: &str, k: &str, v: &str, s: &str) {
    let _ = write!(
        out,
        "<div class=\"card {class}\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"s\">{}</div></div>",
        esc(k),
        esc(v),
        esc(s)
    );
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss UTC`.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn table_html(t: &Table) -> String {
    let mut s = String::new();
    if !t.caption.is_empty() {
        let _ = write!(s, "<h3 class=\"tcap\">{}</h3>", esc(&t.caption));
    }
    s.push_str("<div class=\"table-wrap\"><table><thead><tr>");
    for (i, c) in t.columns.iter().enumerate() {
        let _ = write!(
            s,
            "<th{}>{}</th>",
            if i > 0 { " class=\"num\"" } else { "" },
            esc(c)
        );
    }
    s.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        s.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let _ = write!(
                s,
                "<td{}>{}</td>",
                if i > 0 { " class=\"num\"" } else { "" },
                esc(c)
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    if let Some(n) = &t.note {
        let _ = write!(
            s,
            "<p class=\"lead\" style=\"margin-top:8px\">{}</p>",
            esc(n)
        );
    }
    s
}

fn legend_table(id: &str, rows: &[(String, String, Vec<String>)], columns: &[&str]) -> String {
    let mut s = format!(
        "<div class=\"table-wrap\"><table class=\"legend\" data-chart=\"{id}\"><thead><tr>"
    );
    for (i, c) in columns.iter().enumerate() {
        let _ = write!(
            s,
            "<th{}>{}</th>",
            if i > 0 { " class=\"num\"" } else { "" },
            esc(c)
        );
    }
    s.push_str("</tr></thead><tbody>");
    for (i, (color, label, cells)) in rows.iter().enumerate() {
        let _ = write!(
            s,
            "<tr data-series=\"{i}\"><td><span class=\"chip\" style=\"background:{}\"></span>{}</td>",
            esc(color),
            label
        );
        for c in cells {
            let _ = write!(s, "<td class=\"num\">{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    s
}

fn render(report: &HtmlReport, st: &mut Collected, info: &RunInfo) -> String {
    let clocks = Clocks::from_run(info);
    let kept = st.kept();
    let stats = &info.stats;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut h = String::with_capacity(1 << 16);
    let has_acc = !report.accuracy.is_empty();
    let has_ovh = report.overhead.is_some();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"vpath {}\">\
         <title>{}</title><style>{CSS}</style></head><body>\
         <header class=\"top\"><div class=\"brand\">vpath<span>report</span></div><nav>\
         <a href=\"#overview\">Overview</a><a href=\"#topology\">Topology</a><a href=\"#paths\">Paths</a>\
         <a href=\"#latency\">Latency</a>{}{}<a href=\"#health\">Capture health</a></nav></header><main>",
        env!("CARGO_PKG_VERSION"),
        esc(&report.title),
        if has_acc { "<a href=\"#accuracy\">Accuracy</a>" } else { "" },
        if has_ovh { "<a href=\"#overhead\">Overhead</a>" } else { "" },
    );

    // ---- overview
    let sources: Vec<String> = info
        .sources
        .iter()
        .map(|s| format!("{} ({}, host {})", s.file, s.format, s.host))
        .collect();
    let subtitle = report.subtitle.clone().unwrap_or_else(|| {
        if sources.is_empty() {
            "discovered request paths".into()
        } else {
            format!("from {}", sources.join(", "))
        }
    });
    let _ = write!(
        h,
        "<section id=\"overview\"><h1>{}</h1><p class=\"subtitle\">{} · generated {}</p><div class=\"cards\">",
        esc(&report.title),
        esc(&subtitle),
        utc(now)
    );
    let incomplete = st.seen - st.complete;
    card(
        &mut h,
        "",
        "Paths",
        &num(st.seen),
        &format!("{} spans", num(st.spans)),
    );
    card(
        &mut h,
        if st.seen > 0 && incomplete == 0 {
            "good"
        } else if incomplete > 0 {
            "warn"
        } else {
            ""
        },
        "Complete",
        &pct(st.complete, st.seen),
        &format!(
            "{} complete, {} incomplete",
            num(st.complete),
            num(incomplete)
        ),
    );
    card(
        &mut h,
        "",
        "Path latency p50",
        &dur(st.durations.quantile(0.5)),
        &format!(
            "p99 {} · max {}",
            dur(st.durations.quantile(0.99)),
            dur(st.durations.max)
        ),
    );
    card(
        &mut h,
        "",
        "Tiers",
        &st.graph.nodes.len().to_string(),
        &format!(
            "{} domains · {} call edges",
            st.graph.groups().len(),
            st.graph.edges.len()
        ),
    );
    card(
        &mut h,
        "",
        "Events",
        &num(stats.events),
        &format!("{} with data", num(stats.data_events)),
    );
    card(
        &mut h,
        if stats.lost_events > 0 { "bad" } else { "good" },
        "Lost in the kernel",
        &num(stats.lost_events),
        &if stats.events + stats.lost_events > 0 {
            format!(
                "{} of all events",
                pct(stats.lost_events, stats.events + stats.lost_events)
            )
        } else {
            "no events".into()
        },
    );
    if has_acc {
        let (ex, tot, wrong) = report.accuracy.iter().fold((0, 0, 0), |a, r| {
            (a.0 + r.exact, a.1 + r.paths, a.2 + r.wrong)
        });
        card(
            &mut h,
            if wrong == 0 { "good" } else { "bad" },
            "Wrong edges",
            &num(wrong),
            &format!("{} of {} requests exact, all models", num(ex), num(tot)),
        );
    }
    if let Some(o) = &report.overhead {
        let loss = if o.untraced.throughput > 0.0 {
            100.0 * (o.untraced.throughput - o.traced.throughput) / o.untraced.throughput
        } else {
            0.0
        };
        card(
            &mut h,
            "",
            "Tracing cost",
            &format!("{loss:.1}%"),
            "throughput, traced vs untraced",
        );
    }
    h.push_str("</div></section>");

    // ---- topology
    let g = &st.graph;
    let _ = write!(
        h,
        "<section id=\"topology\"><h2>Tier topology</h2><p class=\"lead\">Each box is a tier: a program serving an endpoint \
         in one domain (a host or network namespace), or a client. An arrow is a call seen in the discovered paths, \
         labelled with the number of calls and the callee's latency (p50 and p99). Hover for details.</p>\
         <div class=\"graph-wrap\">{}</div>",
        graph::svg(g)
    );
    if !g.edges.is_empty() {
        h.push_str("<details><summary>All calls as a table</summary><div class=\"table-wrap\"><table><thead><tr><th>caller</th><th>callee</th><th class=\"num\">calls</th><th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th><th class=\"num\">max</th></tr></thead><tbody>");
        for ((a, b), hist) in &g.edges {
            let _ = write!(
                h,
                "<tr><td><span class=\"chip\" style=\"background:{}\"></span>{}</td><td><span class=\"chip\" style=\"background:{}\"></span>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                graph::color(g, *a),
                esc(&g.nodes[*a].tier),
                graph::color(g, *b),
                esc(&g.nodes[*b].tier),
                num(hist.count),
                dur(hist.quantile(0.5)),
                dur(hist.quantile(0.9)),
                dur(hist.quantile(0.99)),
                dur(hist.max),
            );
        }
        h.push_str("</tbody></table></div></details>");
    }
    h.push_str("</section>");

    // ---- paths
    h.push_str("<section id=\"paths\"><h2>Paths</h2><p class=\"lead\">Every discovered request path. Search by tier, \
                process, thread, endpoint, issue or <code>#id</code>; sort by any column (Duration puts the slowest first); \
                click a path to see its waterfall: one bar per span, indented by depth, placed by start time \
                (wall clock, each host's offset applied).</p>");
    if let Some(from) = &report.paths_from {
        let _ = write!(
            h,
            "<p class=\"note info\">These are the paths of {}.</p>",
            esc(from)
        );
    }
    if (kept.len() as u64) < st.seen {
        let slow = kept.len().min(st.slow_cap);
        let _ = write!(
            h,
            "<p class=\"note\" id=\"sample-note\">Showing {} of {} paths: the {} slowest, and a uniform random sample of {} \
             of the other {}. The topology, latency and health sections count all {} paths.</p>",
            num(kept.len() as u64),
            num(st.seen),
            num(slow as u64),
            num((kept.len() - slow) as u64),
            num(st.seen - slow as u64),
            num(st.seen),
        );
    }
    h.push_str(
        "<div class=\"toolbar\"><input type=\"search\" id=\"path-search\" placeholder=\"Filter paths: tier, process, endpoint, issue, #id…\" autocomplete=\"off\">\
         <div class=\"seg\" id=\"path-status\"><button class=\"on\" data-status=\"all\">All</button><button data-status=\"complete\">Complete</button>\
         <button data-status=\"incomplete\">Incomplete</button></div>\
         <button class=\"btn\" id=\"slowest\">Slowest first</button><span class=\"count\" id=\"path-count\"></span></div>\
         <div class=\"paths-grid\"><div><div class=\"table-wrap\" id=\"path-table\"><table><thead><tr>\
         <th class=\"num\" data-key=\"id\">#</th><th data-key=\"status\">Status</th><th class=\"num\" data-key=\"dur\">Duration</th>\
         <th class=\"num\" data-key=\"spans\">Spans</th><th>Tiers</th><th class=\"num\" data-key=\"at\" title=\"start, from the first path shown\">At</th>\
         <th>Issues</th></tr></thead><tbody></tbody></table>\
         <div class=\"more\" id=\"path-more\"><button class=\"btn\">Show more</button></div></div></div>\
         <div id=\"waterfall\"></div></div></section>",
    );

    // ---- latency CDF per tier
    let mut order: Vec<usize> = (0..g.nodes.len())
        .filter(|&k| g.nodes[k].hist.count > 0)
        .collect();
    order.sort_by_key(|&k| (Reverse(g.nodes[k].hist.count), k));
    let drawn: Vec<usize> = {
        let mut d: Vec<usize> = order.iter().copied().take(MAX_CDF_LINES).collect();
        d.sort_unstable();
        d
    };
    let series: Vec<CdfSeries> = drawn
        .iter()
        .map(|&k| {
            CdfSeries::from_hist(
                g.nodes[k].tier.clone(),
                graph::color(g, k),
                &g.nodes[k].hist,
            )
        })
        .collect();
    h.push_str("<section id=\"latency\"><h2>Latency per tier</h2><p class=\"lead\">The distribution of span durations \
                per tier (server spans: request received to reply sent; client spans: request sent to reply received), \
                as a cumulative distribution on a logarithmic time axis. Hover a row to pick out its line.</p>");
    if order.len() > drawn.len() {
        let _ = write!(
            h,
            "<p class=\"note info\">The {} tiers with the most spans are drawn (of {}).</p>",
            drawn.len(),
            order.len()
        );
    }
    match cdf_svg(&series, 700, 430, "span duration (log scale)") {
        Some(svg) => {
            let rows: Vec<(String, String, Vec<String>)> = drawn
                .iter()
                .map(|&k| {
                    let n = &g.nodes[k];
                    (
                        graph::color(g, k).to_string(),
                        format!(
                            "{}<div class=\"mono\" style=\"color:#6b7280\">{}</div>",
                            esc(&n.program),
                            esc(n.endpoint.as_deref().unwrap_or("client"))
                        ),
                        vec![
                            num(n.hist.count),
                            dur(n.hist.quantile(0.5)),
                            dur(n.hist.quantile(0.9)),
                            dur(n.hist.quantile(0.99)),
                            dur(n.hist.max),
                        ],
                    )
                })
                .collect();
            let _ = write!(
                h,
                "<div class=\"chart-row\"><div id=\"tier-cdf\">{svg}</div>{}</div>",
                legend_table(
                    "tier-cdf",
                    &rows,
                    &["tier", "spans", "p50", "p90", "p99", "max"]
                )
            );
        }
        None => h.push_str("<p class=\"empty\">No spans, no latency to plot.</p>"),
    }
    h.push_str("</section>");

    // ---- accuracy
    if has_acc {
        h.push_str("<section id=\"accuracy\"><h2>Accuracy against ground truth</h2><p class=\"lead\">Each execution model \
                    was run and recorded; every request carried an id that only the scorer reads. <b>Exact</b>: the \
                    discovered path is complete and equals the request's true tree. <b>Wrong</b>: edges that join \
                    spans of different requests (must be 0). <b>Incomplete</b>: paths vpath marked incomplete (it \
                    refused to guess). <b>False-complete</b>: claimed complete but not exact (must be 0).</p>");
        if let Some(n) = &report.accuracy_note {
            let _ = write!(h, "<p class=\"note info\">{}</p>", esc(n));
        }
        h.push_str("<div class=\"table-wrap\"><table><thead><tr><th>model</th><th class=\"num\">requests</th><th class=\"num\">exact</th>\
                    <th class=\"bar-cell\">exact %</th><th class=\"num\">wrong</th><th class=\"num\">incomplete</th>\
                    <th class=\"num\">false-complete</th><th class=\"num\">events</th><th class=\"num\">lost</th><th>issues on spans</th></tr></thead><tbody>");
        for r in &report.accuracy {
            let frac = if r.paths > 0 {
                r.exact as f64 / r.paths as f64
            } else {
                0.0
            };
            let issues: Vec<String> = r
                .issues
                .iter()
                .map(|(k, v)| format!("<span class=\"pill warn\">{} {}</span>", esc(k), num(*v)))
                .collect();
            let _ = write!(
                h,
                "<tr><td class=\"name-cell\"><b>{}</b></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"bar-cell\"><div style=\"display:flex;align-items:center;gap:8px\"><div class=\"minibar\" style=\"flex:1\"><i style=\"width:{:.1}%\"></i></div><span>{}</span></div></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&r.model),
                num(r.paths),
                num(r.exact),
                frac * 100.0,
                pct(r.exact, r.paths),
                if r.wrong > 0 {
                    format!("<span class=\"pill bad\">{}</span>", num(r.wrong))
                } else {
                    "0".into()
                },
                num(r.incomplete),
                if r.false_complete > 0 {
                    format!("<span class=\"pill bad\">{}</span>", num(r.false_complete))
                } else {
                    "0".into()
                },
                num(r.events),
                num(r.events_lost),
                issues.join(" "),
            );
        }
        h.push_str("</tbody></table></div></section>");
    }

    // ---- overhead
    if let Some(o) = &report.overhead {
        let _ = write!(
            h,
            "<section id=\"overhead\"><h2>Capture overhead</h2><p class=\"lead\">{}</p>",
            esc(&o.description)
        );
        let change = |a: f64, b: f64| -> String {
            if a > 0.0 {
                let v = 100.0 * (b - a) / a;
                format!("{v:+.1}%")
            } else {
                "–".into()
            }
        };
        let (u, t) = (&o.untraced, &o.traced);
        let mut tbl = String::from("<div class=\"table-wrap\"><table><thead><tr><th></th><th class=\"num\">req/s</th><th class=\"num\">mean</th><th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th></tr></thead><tbody>");
        for l in [u, t] {
            let _ = write!(
                tbl,
                "<tr><td>{}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.1} µs</td><td class=\"num\">{:.1} µs</td><td class=\"num\">{:.1} µs</td><td class=\"num\">{:.1} µs</td></tr>",
                esc(&l.label),
                l.throughput,
                l.mean_us,
                l.p50_us,
                l.p90_us,
                l.p99_us
            );
        }
        let _ = write!(
            tbl,
            "<tr class=\"sub\"><td>change</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></tbody></table></div>\
             <p class=\"lead\" style=\"margin-top:8px\">{} events recorded over the traced passes, {} dropped in the kernel.{}</p>",
            change(u.throughput, t.throughput),
            change(u.mean_us, t.mean_us),
            change(u.p50_us, t.p50_us),
            change(u.p90_us, t.p90_us),
            change(u.p99_us, t.p99_us),
            num(o.events),
            num(o.events_dropped),
            o.cdf_csv
                .as_ref()
                .map(|c| format!(" The CDF as data: <code>{}</code>.", esc(c)))
                .unwrap_or_default(),
        );
        match cdf_svg(&o.cdf, 760, 380, "response time (log scale)") {
            Some(svg) => {
                let rows: Vec<(String, String, Vec<String>)> = o
                    .cdf
                    .iter()
                    .map(|s| (s.color.clone(), esc(&s.label), vec![num(s.count)]))
                    .collect();
                let _ = write!(
                    h,
                    "<div class=\"chart-row\"><div id=\"overhead-cdf\">{svg}</div><div>{tbl}<div style=\"height:14px\"></div>{}</div></div>",
                    legend_table("overhead-cdf", &rows, &["response time CDF", "requests"])
                );
            }
            None => h.push_str(&tbl),
        }
        for t in &o.tables {
            h.push_str("<div style=\"height:16px\"></div>");
            h.push_str(&table_html(t));
        }
        h.push_str("</section>");
    }

    // ---- health
    h.push_str("<section id=\"health\"><h2>Capture health</h2><p class=\"lead\">What the analysis saw and what it could \
                not prove. vpath never guesses: a path is complete exactly when none of its spans has an issue.</p><div class=\"cards\">");
    card(
        &mut h,
        "",
        "Records",
        &num(stats.records),
        &format!(
            "{} events, {} ignored",
            num(stats.events),
            num(stats.ignored_events)
        ),
    );
    card(
        &mut h,
        if stats.lost_events > 0 { "bad" } else { "good" },
        "Kernel drops",
        &num(stats.lost_events),
        "events lost (ring buffer full)",
    );
    card(
        &mut h,
        "",
        "Links stitched",
        &num(stats.links_stitched),
        &format!("{} to unobserved callees", num(stats.links_remote)),
    );
    card(
        &mut h,
        if stats.links_missing > 0 {
            "warn"
        } else {
            "good"
        },
        "Links missing",
        &num(stats.links_missing),
        "callee observed, span not found",
    );
    card(
        &mut h,
        if incomplete > 0 { "warn" } else { "good" },
        "Incomplete paths",
        &num(incomplete),
        &format!("{} of all paths", pct(incomplete, st.seen)),
    );
    card(
        &mut h,
        if stats.stray_messages > 0 { "warn" } else { "" },
        "Stray messages",
        &num(stats.stray_messages),
        "outside any exchange",
    );
    h.push_str("</div>");
    if !st.issue_spans.is_empty() {
        h.push_str("<h3 class=\"tcap\">Why paths are incomplete</h3><div class=\"table-wrap\"><table><thead><tr><th>issue</th><th class=\"num\">spans</th><th class=\"num\">paths</th><th>meaning</th></tr></thead><tbody>");
        for (i, n) in &st.issue_spans {
            let _ = write!(
                h,
                "<tr><td><span class=\"pill bad\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                i.name(),
                num(*n),
                num(st.issue_paths.get(i).copied().unwrap_or(0)),
                esc(issue_meaning(*i))
            );
        }
        h.push_str("</tbody></table></div>");
    }
    if !info.sources.is_empty() {
        h.push_str("<h3 class=\"tcap\">Sources</h3><div class=\"table-wrap\"><table><thead><tr><th>file</th><th>format</th><th>host</th><th>clock</th><th class=\"num\">records</th><th>end</th><th class=\"num\">skipped</th><th class=\"num\">errors</th></tr></thead><tbody>");
        for s in &info.sources {
            let end = match s.clean_end {
                Some(true) => "<span class=\"pill ok\">clean</span>",
                Some(false) => "<span class=\"pill bad\">cut short</span>",
                None => "–",
            };
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{end}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&s.file),
                esc(&s.format),
                esc(&s.host),
                esc(&s.clock),
                num(s.records),
                num(s.skipped),
                num(s.errors)
            );
        }
        h.push_str("</tbody></table></div>");
    }
    let _ = write!(
        h,
        "<p class=\"lead mono\" style=\"margin-top:14px;white-space:pre-wrap\">{}</p></section>",
        esc(&health_line(info))
    );

    let _ = writeln!(
        h,
        "</main><footer>vpath {} · exact request paths from socket activity, no instrumentation · this file is self-contained and makes no network request</footer>\
         <script type=\"application/json\" id=\"vpath-data\">{}</script><script>{JS}</script></body></html>",
        env!("CARGO_PKG_VERSION"),
        data_json(report, st, &kept, &clocks),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_764_147_723), "2025-11-26 09:02:03 UTC");
    }

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(num(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(num(12), "12");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(pct(1, 3), "33.3%");
        assert_eq!(pct(0, 0), "–");
        assert_eq!(short_duration(1_500_000.0), "1.5 ms");
        assert_eq!(short_duration(250_000.0), "250 µs");
        assert_eq!(short_duration(2e9), "2 s");
    }
}
