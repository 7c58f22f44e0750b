//! The scorer: vpath's discovered paths against the tiers' ground truth,
//! edge by edge.
//!
//! # Matching
//! A discovered span matches a truth record when they have the same kind
//! (origin or server), the same endpoints (local, remote), the span's thread
//! is the record's receiving or replying thread, and the span's time window
//! lies inside the record's: vpath's times are the syscalls' own, and the
//! tiers take their timestamps before the first read and after the last
//! write. A span that matches no record, or more than one, is *unmatched*.
//!
//! # Truth tree
//! The client's origin record R is a root; its child is the server record
//! with the same id (the entry tier's handling of R). A server record's
//! children are the server records whose parent id is its id, in order of
//! start time.
//!
//! # Verdicts
//! - A discovered edge parent->child whose two spans match truth records that
//!   are not parent and child in the truth is **wrong** (a wrong stitch).
//! - A request is **exact** when a discovered path is complete and its whole
//!   tree equals the request's truth tree: same nodes, same edges, same child
//!   order.
//! - A request that is not exact but has a discovered path that claims to be
//!   complete and is rooted at its origin is **false_complete** (for example a
//!   missing child that vpath did not flag).
//! - Every other request is **incomplete**: its paths are marked incomplete,
//!   or split, or missing.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Serialize;
use vpath_core::event::canonical;
use vpath_core::{Path, Span, SpanKind};

use crate::truth::{TruthKind, TruthRecord};

/// How well the discovered paths match the truth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Score {
    /// Truth requests (the client's origin records).
    pub paths: u64,
    pub exact: u64,
    /// Wrong edges (stitches) in the discovered paths; must be 0.
    pub wrong: u64,
    pub incomplete: u64,
    /// Requests whose discovered path claims to be complete but differs from
    /// the truth without a wrong edge; must be 0.
    pub false_complete: u64,
    /// Discovered paths and spans.
    pub discovered: u64,
    pub spans: u64,
    /// Discovered edges whose two ends matched truth records (checked edges).
    pub edges_checked: u64,
    /// Spans that matched no truth record (or more than one).
    pub unmatched_spans: u64,
    /// Truth requests whose path vpath reported as complete.
    pub discovered_complete: u64,
    /// A few examples of what went wrong, for the report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

const MAX_NOTES: usize = 5;

impl Score {
    pub fn exact_pct(&self) -> f64 {
        if self.paths == 0 {
            0.0
        } else {
            100.0 * self.exact as f64 / self.paths as f64
        }
    }

    fn note(&mut self, s: impl FnOnce() -> String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(s());
        }
    }
}

struct Truth<'a> {
    recs: &'a [TruthRecord],
    by_ends: HashMap<(SocketAddr, SocketAddr), Vec<usize>>,
    children: Vec<Vec<usize>>,
    /// The origin (request) each record belongs to.
    request: Vec<Option<usize>>,
    parent: Vec<Option<usize>>,
}

impl<'a> Truth<'a> {
    fn new(recs: &'a [TruthRecord]) -> Truth<'a> {
        let mut by_ends: HashMap<(SocketAddr, SocketAddr), Vec<usize>> = HashMap::new();
        let mut server_by_id: HashMap<u64, usize> = HashMap::new();
        for (i, r) in recs.iter().enumerate() {
            by_ends
                .entry((canonical(&r.local), canonical(&r.remote)))
                .or_default()
                .push(i);
            if r.kind == TruthKind::Server {
                server_by_id.insert(r.id, i);
            }
        }
        let mut parent = vec![None; recs.len()];
        let mut children = vec![Vec::new(); recs.len()];
        for (i, r) in recs.iter().enumerate() {
            let p = match r.kind {
                TruthKind::Origin => None,
                TruthKind::Server if r.parent != 0 => server_by_id.get(&r.parent).copied(),
                TruthKind::Server => None,
            };
            if let Some(p) = p {
                parent[i] = Some(p);
                children[p].push(i);
            }
            if r.kind == TruthKind::Origin {
                if let Some(&s) = server_by_id.get(&r.id) {
                    parent[s] = Some(i);
                    children[i].push(s);
                }
            }
        }
        for c in children.iter_mut() {
            c.sort_by_key(|&i| (recs[i].start_ns, i));
        }
        let mut request = vec![None; recs.len()];
        for (i, req) in request.iter_mut().enumerate() {
            // Walk up to the root; truth trees are shallow.
            let mut at = i;
            let mut steps = 0;
            while let Some(p) = parent[at] {
                at = p;
                steps += 1;
                if steps > recs.len() {
                    break; // a cycle in bad input
                }
            }
            if recs[at].kind == TruthKind::Origin {
                *req = Some(at);
            }
        }
        Truth {
            recs,
            by_ends,
            children,
            request,
            parent,
        }
    }

    /// The truth record a span matches, if exactly one.
    fn matching(&self, s: &Span) -> Option<usize> {
        let kind = match s.kind {
            SpanKind::Origin => TruthKind::Origin,
            SpanKind::Server => TruthKind::Server,
            SpanKind::Remote => return None,
        };
        let tid = s.tid?;
        let cands = self
            .by_ends
            .get(&(canonical(&s.local), canonical(&s.remote)))?;
        let mut found = None;
        for &i in cands {
            let r = &self.recs[i];
            if r.kind == kind
                && (r.tid == tid || r.reply_tid == tid)
                && r.start_ns <= s.start_ns
                && s.end_ns <= r.end_ns
            {
                if found.is_some() {
                    return None;
                }
                found = Some(i);
            }
        }
        found
    }
}

/// Scores discovered `paths` against the `truth` of the same run.
pub fn score(truth: &[TruthRecord], paths: &[Path]) -> Score {
    let t = Truth::new(truth);
    let mut sc = Score {
        paths: truth.iter().filter(|r| r.kind == TruthKind::Origin).count() as u64,
        discovered: paths.len() as u64,
        ..Score::default()
    };
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        None,
        ClaimedComplete,
        Exact,
    }
    let mut verdict = vec![Verdict::None; truth.len()];
    let mut claimed = vec![false; truth.len()];

    for p in paths {
        // Match every span, check every edge.
        let mut matched: Vec<Option<usize>> = Vec::new();
        p.root.walk(&mut |s, _| matched.push(t.matching(s)));
        sc.spans += matched.len() as u64;
        sc.unmatched_spans += matched.iter().filter(|m| m.is_none()).count() as u64;
        let mut idx = 0;
        check_edges(&p.root, &matched, &mut idx, &t, &mut sc, p.path);

        let Some(root) = matched[0] else {
            continue;
        };
        if truth[root].kind != TruthKind::Origin {
            continue;
        }
        if p.complete {
            claimed[root] = true;
            let mut idx = 0;
            if same_tree(&p.root, root, &matched, &mut idx, &t) {
                verdict[root] = Verdict::Exact;
            } else if verdict[root] == Verdict::None {
                verdict[root] = Verdict::ClaimedComplete;
                let id = truth[root].id;
                sc.note(|| {
                    format!(
                        "path {}: complete, but differs from the truth tree of request {id}",
                        p.path
                    )
                });
            }
        }
    }
    for (i, r) in truth.iter().enumerate() {
        if r.kind != TruthKind::Origin {
            continue;
        }
        if claimed[i] {
            sc.discovered_complete += 1;
        }
        match verdict[i] {
            Verdict::Exact => sc.exact += 1,
            Verdict::ClaimedComplete => sc.false_complete += 1,
            Verdict::None => sc.incomplete += 1,
        }
    }
    sc
}

/// Walks `s` in the same order as [`Span::walk`], checking each edge.
fn check_edges(
    s: &Span,
    matched: &[Option<usize>],
    idx: &mut usize,
    t: &Truth,
    sc: &mut Score,
    path: u64,
) {
    let me = matched[*idx];
    *idx += 1;
    for c in &s.children {
        let child = matched[*idx];
        if let (Some(p), Some(ch)) = (me, child) {
            sc.edges_checked += 1;
            if t.parent[ch] != Some(p) {
                sc.wrong += 1;
                let (pr, cr) = (&t.recs[p], &t.recs[ch]);
                let belongs = t.request[ch].map(|r| t.recs[r].id);
                sc.note(|| {
                    format!(
                        "path {path}: wrong edge {} request {} -> {} request {} (whose truth parent is {}, of request {:?})",
                        pr.tier, pr.id, cr.tier, cr.id, cr.parent, belongs
                    )
                });
            }
        }
        check_edges(c, matched, idx, t, sc, path);
    }
}

/// Whether the discovered subtree at `s` (matched at `matched[*idx]`) equals
/// the truth subtree of record `want`. Advances `idx` past the subtree.
fn same_tree(s: &Span, want: usize, matched: &[Option<usize>], idx: &mut usize, t: &Truth) -> bool {
    let me = matched[*idx];
    *idx += 1;
    let mut ok = me == Some(want) && s.children.len() == t.children[want].len();
    for (i, c) in s.children.iter().enumerate() {
        let next = t.children[want].get(i).copied();
        match next {
            Some(n) => ok &= same_tree(c, n, matched, idx, t),
            None => {
                // Skip the extra subtree.
                *idx += c.count();
                ok = false;
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A truth record with window [start, end] on thread `tid`.
    #[allow(clippy::too_many_arguments)]
    fn rec(
        kind: TruthKind,
        tier: &str,
        id: u64,
        parent: u64,
        tid: u32,
        local: &str,
        remote: &str,
        start: u64,
        end: u64,
    ) -> TruthRecord {
        TruthRecord {
            kind,
            tier: tier.into(),
            model: "thread-per-request".into(),
            id,
            parent,
            pid: tid,
            tid,
            reply_tid: tid,
            local: addr(local),
            remote: addr(remote),
            start_ns: start,
            end_ns: end,
            bytes_in: 1,
            bytes_out: 1,
        }
    }

    fn span(kind: SpanKind, r: &TruthRecord, children: Vec<Span>) -> Span {
        // Through the JSONL contract, so that fields added to Span later
        // (all optional there) take their defaults here.
        serde_json::from_value(serde_json::json!({
            "kind": kind,
            "host": "h",
            "pid": r.pid,
            "tid": r.tid,
            "comm": null,
            "netns": 1,
            "local": r.local.to_string(),
            "remote": r.remote.to_string(),
            // Strictly inside the truth window.
            "start_ns": r.start_ns + 1,
            "end_ns": r.end_ns - 1,
            "bytes_in": 1,
            "bytes_out": 1,
            "children": children,
        }))
        .expect("a span")
    }

    /// Two requests (ids 1 and 2) from two client threads:
    /// client -> front -> [auth, cache].
    fn truth() -> Vec<TruthRecord> {
        use TruthKind::*;
        let mut v = Vec::new();
        for (k, (id, tid)) in [(1u64, 100u32), (2, 200)].into_iter().enumerate() {
            let base = 1000 * k as u64;
            let cport = 40000 + k;
            let fport = 50000 + 10 * k;
            v.push(rec(
                Origin,
                "client",
                id,
                0,
                tid,
                &format!("10.0.0.1:{cport}"),
                "10.0.0.2:8000",
                base,
                base + 900,
            ));
            v.push(rec(
                Server,
                "front",
                id,
                0,
                tid + 1,
                "10.0.0.2:8000",
                &format!("10.0.0.1:{cport}"),
                base + 10,
                base + 890,
            ));
            v.push(rec(
                Server,
                "auth",
                id * 10,
                id,
                tid + 2,
                "10.0.0.3:8001",
                &format!("10.0.0.2:{fport}"),
                base + 20,
                base + 300,
            ));
            v.push(rec(
                Server,
                "cache",
                id * 10 + 1,
                id,
                tid + 3,
                "10.0.0.4:8004",
                &format!("10.0.0.2:{}", fport + 1),
                base + 400,
                base + 800,
            ));
        }
        v
    }

    /// The discovered path of request `k` (0 or 1), built from the truth.
    fn path_of(t: &[TruthRecord], k: usize, n: u64) -> Path {
        let b = 4 * k;
        Path {
            path: n,
            complete: true,
            root: span(
                SpanKind::Origin,
                &t[b],
                vec![span(
                    SpanKind::Server,
                    &t[b + 1],
                    vec![
                        span(SpanKind::Server, &t[b + 2], vec![]),
                        span(SpanKind::Server, &t[b + 3], vec![]),
                    ],
                )],
            ),
        }
    }

    #[test]
    fn exact_paths_score_exact() {
        let t = truth();
        let s = score(&t, &[path_of(&t, 0, 1), path_of(&t, 1, 2)]);
        assert_eq!(
            (s.paths, s.exact, s.wrong, s.incomplete),
            (2, 2, 0, 0),
            "{s:?}"
        );
        assert_eq!(s.edges_checked, 6);
        assert_eq!(s.unmatched_spans, 0);
    }

    #[test]
    fn a_swapped_edge_is_wrong() {
        let t = truth();
        let mut a = path_of(&t, 0, 1);
        let mut b = path_of(&t, 1, 2);
        // Swap the auth calls of the two requests.
        std::mem::swap(
            &mut a.root.children[0].children[0],
            &mut b.root.children[0].children[0],
        );
        let s = score(&t, &[a, b]);
        assert_eq!(s.wrong, 2, "{s:?}");
        assert_eq!(s.exact, 0);
        assert_eq!(s.false_complete, 2);
        assert!(s.notes[0].contains("wrong edge"), "{:?}", s.notes);
    }

    #[test]
    fn a_missing_child_is_not_exact() {
        let t = truth();
        let mut a = path_of(&t, 0, 1);
        a.root.children[0].children.pop();
        let s = score(&t, &[a, path_of(&t, 1, 2)]);
        assert_eq!((s.exact, s.wrong, s.false_complete), (1, 0, 1), "{s:?}");
        // Flagged as incomplete by vpath, it is an incomplete path.
        let mut a = path_of(&t, 0, 1);
        a.root.children[0].children.pop();
        a.complete = false;
        let s = score(&t, &[a]);
        assert_eq!(
            (s.exact, s.incomplete, s.false_complete),
            (0, 2, 0),
            "{s:?}"
        );
    }

    #[test]
    fn child_order_and_extra_children_matter() {
        let t = truth();
        let mut a = path_of(&t, 0, 1);
        a.root.children[0].children.swap(0, 1);
        let s = score(&t, &[a]);
        assert_eq!((s.exact, s.wrong, s.false_complete), (0, 0, 1), "{s:?}");
        let mut a = path_of(&t, 0, 1);
        let extra = a.root.children[0].children[1].clone();
        a.root.children[0].children.push(extra);
        let s = score(&t, &[a]);
        assert_eq!(s.exact, 0, "{s:?}");
    }

    #[test]
    fn spans_outside_the_truth_window_or_thread_do_not_match() {
        let t = truth();
        let mut a = path_of(&t, 0, 1);
        a.root.children[0].children[0].end_ns = t[2].end_ns + 1;
        let s = score(&t, &[a]);
        assert_eq!((s.exact, s.unmatched_spans), (0, 1), "{s:?}");
        let mut a = path_of(&t, 0, 1);
        a.root.children[0].tid = Some(9999);
        let s = score(&t, &[a]);
        assert_eq!((s.exact, s.unmatched_spans), (0, 1), "{s:?}");
    }

    #[test]
    fn a_split_path_is_incomplete_but_not_wrong() {
        let t = truth();
        let full = path_of(&t, 0, 1);
        let mut top = full.clone();
        top.complete = false;
        let lower = top.root.children.pop().unwrap();
        let rest = Path {
            path: 2,
            complete: false,
            root: lower,
        };
        let s = score(&t, &[top, rest]);
        assert_eq!((s.exact, s.wrong, s.incomplete), (0, 0, 2), "{s:?}");
        assert_eq!(s.discovered, 2);
    }
}
