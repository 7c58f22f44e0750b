//! Sinks: where paths go. One trait, one implementation per output format.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rustc_hash::FxHashMap;
use vpath_core::event::fmt_endpoint;
use vpath_core::{Path, Span, SpanKind, Stats};

use crate::source::SourceInfo;

/// What a run saw, for the closing report of a sink.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunInfo {
    pub sources: Vec<SourceInfo>,
    pub stats: Stats,
}

/// A consumer of paths, fed as the analyzer completes them.
pub trait Sink {
    fn path(&mut self, p: &Path) -> io::Result<()>;
    /// Called once at the end, with what the run saw.
    fn finish(&mut self, info: &RunInfo) -> io::Result<()>;
}

/// The JSONL contract: one path object per line.
pub struct JsonlSink<W: Write> {
    out: W,
}

impl<W: Write> JsonlSink<W> {
    pub fn new(out: W) -> Self {
        JsonlSink { out }
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, p)?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self, _info: &RunInfo) -> io::Result<()> {
        self.out.flush()
    }
}

/// Indented trees, like the paper's "discovered path" figures.
pub struct TextSink<W: Write> {
    out: W,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W) -> Self {
        TextSink { out }
    }
}

/// `comm[pid/tid]` or what is known of it.
pub fn who(s: &Span) -> String {
    match s.kind {
        SpanKind::Remote => "(not observed)".to_string(),
        _ => {
            let comm = s.comm.as_deref().unwrap_or("?");
            format!("{comm}[{}/{}]", s.pid.unwrap_or(0), s.tid.unwrap_or(0))
        }
    }
}

/// A one-line reading of what a span did, from its protocol fields:
/// `GET /index.php?title=Page_7 -> 200`, the SQL text, `get <key>`. None
/// when no protocol was recognized.
pub fn span_title(s: &Span) -> Option<String> {
    let a = |k: &str| s.attrs.get(k).map(String::as_str);
    let mut t = match s.protocol.as_deref()? {
        "http" => match (a("http.request.method"), a("http.target")) {
            (Some(m), Some(target)) => format!("{m} {target}"),
            _ => s.name.clone()?,
        },
        "fastcgi" => match (s.name.as_deref(), a("vpath.fastcgi.request_uri")) {
            (Some(n), Some(uri)) if !n.contains(uri) => format!("{n} {uri}"),
            (Some(n), _) => n.to_string(),
            (None, _) => "FCGI".into(),
        },
        "mysql" | "postgresql" => match a("db.query.text") {
            Some(q) => q.split_whitespace().collect::<Vec<_>>().join(" "),
            None => s.name.clone()?,
        },
        _ => s.name.clone()?,
    };
    const MAX: usize = 120;
    if t.chars().count() > MAX {
        t = t.chars().take(MAX - 1).collect::<String>() + "…";
    }
    if let Some(code) = a("http.response.status_code").or(a("db.response.status_code")) {
        t.push_str(&format!(" -> {code}"));
    }
    Some(t)
}

pub fn fmt_duration(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} us", ns as f64 / 1e3)
    }
}

/// Renders one path as an indented tree.
pub fn render_tree(p: &Path) -> String {
    let mut s = format!(
        "path {} {}\n",
        p.path,
        if p.complete { "complete" } else { "INCOMPLETE" }
    );
    fn go(s: &mut String, sp: &Span, prefix: &str, last: bool, top: bool) {
        let (branch, next) = if top {
            ("", String::from("  "))
        } else if last {
            ("└─ ", format!("{prefix}   "))
        } else {
            ("├─ ", format!("{prefix}│  "))
        };
        let kind = match sp.kind {
            SpanKind::Server => "server",
            SpanKind::Origin => "origin",
            SpanKind::Remote => "remote",
        };
        let arrow = match sp.kind {
            SpanKind::Origin => "->",
            _ => "<-",
        };
        let host = match (&sp.host, sp.netns) {
            (Some(h), Some(n)) => format!(" @{h}/netns:{n}"),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{}{}{kind} {}{host} {} {arrow} {}  {}  in {} B out {} B",
            if top { "  " } else { prefix },
            branch,
            who(sp),
            fmt_endpoint(&sp.local),
            fmt_endpoint(&sp.remote),
            fmt_duration(sp.end_ns.saturating_sub(sp.start_ns)),
            sp.bytes_in,
            sp.bytes_out,
        ));
        if !sp.issues.is_empty() {
            let names: Vec<&str> = sp.issues.iter().map(|i| i.name()).collect();
            s.push_str(&format!("  [{}]", names.join(", ")));
        }
        if let Some(t) = span_title(sp) {
            s.push_str(&format!("  {t:?}"));
        }
        s.push('\n');
        let n = sp.children.len();
        for (i, c) in sp.children.iter().enumerate() {
            go(s, c, if top { "  " } else { &next }, i + 1 == n, false);
        }
    }
    go(&mut s, &p.root, "", true, true);
    s
}

impl<W: Write> Sink for TextSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.out.write_all(render_tree(p).as_bytes())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        writeln!(self.out, "{}", health_line(info))?;
        self.out.flush()
    }
}

/// One line on what was analyzed and what was lost.
pub fn health_line(info: &RunInfo) -> String {
    let s = &info.stats;
    let mut line = format!(
        "{} paths ({} complete, {} incomplete) from {} events ({} data, {} lost in the kernel); links: {} stitched, {} to unobserved callees, {} missing",
        s.paths,
        s.complete_paths,
        s.incomplete_paths,
        s.events,
        s.data_events,
        s.lost_events,
        s.links_stitched,
        s.links_remote,
        s.links_missing
    );
    if s.spans_cut > 0 {
        line.push_str(&format!(
            "; {} spans cut off below the depth limit (their paths say depth-limit)",
            s.spans_cut
        ));
    }
    if s.stray_messages > 0 {
        line.push_str(&format!(
            "; {} messages outside any exchange (observation began mid-exchange, a server spoke first, or events were lost)",
            s.stray_messages
        ));
    }
    for src in &info.sources {
        if src.clean_end == Some(false) {
            line.push_str(&format!(
                "\nwarning: {} ended without its end record: the recording was cut short, its last paths may be incomplete",
                src.file
            ));
        }
        if src.skipped > 0 {
            line.push_str(&format!(
                "\nnote: {}: {} lines of no interest skipped",
                src.file, src.skipped
            ));
        }
    }
    line
}

/// Path patterns (the tree of tiers), their counts, and per-tier latency
/// percentiles. Memory: one entry per distinct pattern and tier, with a
/// fixed-size log-scale histogram per tier.
#[derive(Default)]
pub struct Summary {
    patterns: FxHashMap<String, (u64, u64)>,
    tiers: BTreeMap<String, Hist>,
}

impl Summary {
    pub fn add(&mut self, p: &Path) {
        let pat = pattern(&p.root);
        let e = self.patterns.entry(pat).or_insert((0, 0));
        e.0 += 1;
        if p.complete {
            e.1 += 1;
        }
        p.root.walk(&mut |s, _| {
            if s.kind == SpanKind::Server {
                self.tiers
                    .entry(tier(s))
                    .or_default()
                    .add(s.end_ns.saturating_sub(s.start_ns));
            }
        });
    }

    pub fn render(&self) -> String {
        let mut pats: Vec<_> = self.patterns.iter().collect();
        pats.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        let mut s = String::from("path patterns\n  count  complete  pattern\n");
        for (pat, (n, c)) in pats {
            s.push_str(&format!("  {n:>5}  {c:>8}  {pat}\n"));
        }
        s.push_str(
            "\nserver spans per tier\n  count       p50       p90       p99       max  tier\n",
        );
        for (t, h) in &self.tiers {
            s.push_str(&format!(
                "  {:>5} {:>9} {:>9} {:>9} {:>9}  {t}\n",
                h.count,
                fmt_duration(h.quantile(0.5)),
                fmt_duration(h.quantile(0.9)),
                fmt_duration(h.quantile(0.99)),
                fmt_duration(h.max)
            ));
        }
        s
    }
}

/// A tier: the program (its process name, else the thread's) and the
/// endpoint it serves.
pub fn tier(s: &Span) -> String {
    let name = s.process.as_deref().or(s.comm.as_deref()).unwrap_or("?");
    match s.kind {
        SpanKind::Remote => format!("remote {}", fmt_endpoint(&s.local)),
        SpanKind::Server => format!("{name} {}", fmt_endpoint(&s.local)),
        SpanKind::Origin => name.to_string(),
    }
}

/// The shape of a path as tiers: `client -> front 10.0.0.2:80 -> {db 10.0.0.3:3306 x2}`.
pub fn pattern(s: &Span) -> String {
    let mut out = tier(s);
    if s.children.is_empty() {
        return out;
    }
    let kids: Vec<String> = s.children.iter().map(pattern).collect();
    let mut runs: Vec<(String, usize)> = Vec::new();
    for k in kids {
        match runs.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => runs.push((k, 1)),
        }
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(k, n)| if n > 1 { format!("{k} x{n}") } else { k })
        .collect();
    if parts.len() == 1 {
        out.push_str(&format!(" -> {}", parts[0]));
    } else {
        out.push_str(&format!(" -> {{{}}}", parts.join(", ")));
    }
    out
}

/// A log-linear histogram of durations: 16 sub-buckets per power of two,
/// so quantiles are within about 6% of the true value, in fixed memory.
pub struct Hist {
    buckets: Vec<u64>,
    pub count: u64,
    pub max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            buckets: vec![0; 64 * 16],
            count: 0,
            max: 0,
        }
    }
}

impl Hist {
    fn index(v: u64) -> usize {
        if v < 16 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() as usize; // >= 4
        let sub = ((v >> (exp - 4)) & 15) as usize;
        (exp - 3) * 16 + sub
    }
    fn lower(i: usize) -> u64 {
        if i < 16 {
            return i as u64;
        }
        let exp = i / 16 + 3;
        let sub = (i % 16) as u64;
        (16 + sub) << (exp - 4)
    }
    pub fn add(&mut self, v: u64) {
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::lower(i).min(self.max);
            }
        }
        self.max
    }
}

/// `--summary`: collects, prints at the end.
pub struct SummarySink<W: Write> {
    out: W,
    summary: Summary,
}

impl<W: Write> SummarySink<W> {
    pub fn new(out: W) -> Self {
        SummarySink {
            out,
            summary: Summary::default(),
        }
    }
}

impl<W: Write> Sink for SummarySink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.summary.add(p);
        Ok(())
    }
    fn finish(&mut self, info: &RunInfo) -> io::Result<()> {
        self.out.write_all(self.summary.render().as_bytes())?;
        writeln!(self.out, "\n{}", health_line(info))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Hist::default();
        for v in 1..=10_000u64 {
            h.add(v * 1000);
        }
        for (q, want) in [(0.5, 5_000_000.0), (0.9, 9_000_000.0), (0.99, 9_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.07, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max, 10_000_000);
        for v in [0u64, 1, 15, 16, 17, 1 << 40, u64::MAX / 3] {
            assert!(Hist::lower(Hist::index(v)) <= v);
        }
    }
}
