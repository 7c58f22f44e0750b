//! Comparing the analyzer's paths with the ground truth.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use vpath_core::event::canonical;
use vpath_core::{Path, Span, SpanKind};

use crate::scenario::Scenario;
use crate::truth::TruthSpan;

/// A path with its emission id cleared, for comparison.
pub fn normalized(p: &Path) -> Path {
    Path {
        path: 0,
        ..p.clone()
    }
}

fn key(p: &Path) -> String {
    format!("{}|{:?}", p.complete, p.root)
}

/// The difference of two multisets of paths (ids ignored).
#[derive(Debug, Default)]
pub struct Diff {
    /// Expected but not emitted.
    pub missing: Vec<Path>,
    /// Emitted but not expected (or emitted more often than expected).
    pub unexpected: Vec<Path>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// A human-readable report with up to `max` paths of each side.
    pub fn render(&self, max: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} expected paths missing, {} unexpected paths",
            self.missing.len(),
            self.unexpected.len()
        );
        for (what, v) in [("MISSING", &self.missing), ("UNEXPECTED", &self.unexpected)] {
            for p in v.iter().take(max) {
                let _ = writeln!(
                    s,
                    "{what}: {}",
                    serde_json::to_string(p).unwrap_or_else(|e| e.to_string())
                );
            }
        }
        s
    }
}

/// Compares paths as multisets, every field but `path`.
pub fn diff_paths(expected: &[Path], got: &[Path]) -> Diff {
    let mut want: BTreeMap<String, Vec<&Path>> = BTreeMap::new();
    for p in expected {
        want.entry(key(&normalized(p))).or_default().push(p);
    }
    let mut d = Diff::default();
    for p in got {
        let n = normalized(p);
        match want.get_mut(&key(&n)) {
            Some(v) if !v.is_empty() => {
                v.pop();
            }
            _ => d.unexpected.push(n),
        }
    }
    d.missing = want.into_values().flatten().map(normalized).collect();
    d
}

/// What the lossy property found.
#[derive(Debug, Default)]
pub struct LossyReport {
    pub expected: usize,
    pub emitted: usize,
    pub emitted_complete: usize,
    /// Expected paths emitted exactly (and marked complete).
    pub recovered: usize,
    /// Complete paths that are not one of the expected paths.
    pub wrong_complete: Vec<Path>,
    /// Complete paths emitted more than once.
    pub duplicate_complete: Vec<Path>,
    pub edges_checked: usize,
    /// Parent->child edges (in any emitted path) absent from the truth.
    pub bad_edges: Vec<String>,
}

impl LossyReport {
    pub fn ok(&self) -> bool {
        self.wrong_complete.is_empty()
            && self.duplicate_complete.is_empty()
            && self.bad_edges.is_empty()
    }

    pub fn render(&self, max: usize) -> String {
        let mut s = format!(
            "expected {} paths; emitted {} ({} complete); recovered exactly {}, lost to incompleteness {}; \
             {} edges checked\n",
            self.expected,
            self.emitted,
            self.emitted_complete,
            self.recovered,
            self.expected - self.recovered,
            self.edges_checked
        );
        for p in self.wrong_complete.iter().take(max) {
            let _ = writeln!(
                s,
                "WRONG COMPLETE PATH: {}",
                serde_json::to_string(p).unwrap_or_default()
            );
        }
        for p in self.duplicate_complete.iter().take(max) {
            let _ = writeln!(
                s,
                "DUPLICATE COMPLETE PATH: {}",
                serde_json::to_string(p).unwrap_or_default()
            );
        }
        for e in self.bad_edges.iter().take(max) {
            let _ = writeln!(s, "WRONG STITCH: {e}");
        }
        s
    }
}

fn within(t_start: u64, t_end: u64, s: &Span) -> bool {
    (t_start..=t_end).contains(&s.start_ns) || (t_start..=t_end).contains(&s.end_ns)
}

/// Whether emitted span `s` is (part of) truth span `t`: same thread and
/// overlapping times for observed spans; same connection and a time within
/// the caller's view for remote spans.
pub fn matches_truth(s: &Span, t: &TruthSpan) -> bool {
    match s.kind {
        SpanKind::Server | SpanKind::Origin => {
            t.kind == s.kind
                && t.host == s.host
                && t.tid == s.tid
                && t.pid == s.pid
                && within(t.start_ns, t.end_ns, s)
        }
        SpanKind::Remote => {
            t.kind != SpanKind::Origin
                && canonical(&t.local) == canonical(&s.local)
                && canonical(&t.remote) == canonical(&s.remote)
                && t.caller
                    .as_ref()
                    .is_some_and(|c| within(c.start_ns, c.end_ns, s))
        }
    }
}

/// Whether origin span `s` is the caller's side of the call `t`.
fn is_callers_view(s: &Span, t: &TruthSpan) -> bool {
    t.kind != SpanKind::Origin
        && canonical(&t.local) == canonical(&s.remote)
        && canonical(&t.remote) == canonical(&s.local)
        && t.caller.as_ref().is_some_and(|c| {
            Some(&c.host) == s.host.as_ref()
                && Some(c.tid) == s.tid
                && within(c.start_ns, c.end_ns, s)
        })
}

fn describe(s: &Span) -> String {
    format!(
        "{:?} host={:?} pid={:?} tid={:?} {}->{} [{}..{}]",
        s.kind, s.host, s.pid, s.tid, s.local, s.remote, s.start_ns, s.end_ns
    )
}

/// Checks the lossy properties: complete paths are exact and unique, and no
/// edge of any emitted path is a wrong stitch.
pub fn check_lossy(s: &Scenario, got: &[Path]) -> LossyReport {
    let mut r = LossyReport {
        expected: s.expected.len(),
        emitted: got.len(),
        ..Default::default()
    };
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for p in &s.expected {
        *want.entry(key(&normalized(p))).or_default() += 1;
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for p in got.iter().filter(|p| p.complete) {
        r.emitted_complete += 1;
        let n = normalized(p);
        let k = key(&n);
        let c = seen.entry(k.clone()).or_default();
        *c += 1;
        match want.get(&k) {
            None => r.wrong_complete.push(n),
            Some(&w) if *c > w => r.duplicate_complete.push(n),
            Some(_) => r.recovered += 1,
        }
    }
    // Children of each truth span.
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); s.truth.len()];
    for (i, t) in s.truth.iter().enumerate() {
        if let Some(p) = t.parent {
            kids[p].push(i);
        }
    }
    for p in got {
        p.root.walk(&mut |span, _| {
            if span.children.is_empty() {
                return;
            }
            let parents: Vec<usize> = (0..s.truth.len()).filter(|&i| matches_truth(span, &s.truth[i])).collect();
            // The true children of the spans that `span` is (part of); and
            // when `span` is an origin, the calls whose caller's view it is
            // (a serving thread whose inbound request was lost looks like an
            // origin: its call's callee is still the right child).
            let mut allowed: Vec<usize> = parents.iter().flat_map(|&pi| kids[pi].iter().copied()).collect();
            if span.kind == SpanKind::Origin {
                allowed.extend((0..s.truth.len()).filter(|&i| is_callers_view(span, &s.truth[i])));
            }
            for c in &span.children {
                r.edges_checked += 1;
                let ok = allowed.iter().any(|&ci| matches_truth(c, &s.truth[ci]));
                if !ok {
                    r.bad_edges.push(format!(
                        "path {} (complete={}): parent {} -> child {} (parent matches {} truth spans)",
                        p.path,
                        p.complete,
                        describe(span),
                        describe(c),
                        parents.len()
                    ));
                }
            }
        });
    }
    r
}
