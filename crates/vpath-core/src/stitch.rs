//! Stage 2: the stitch, external causality.
//!
//! A join of each call's [`LinkKey`] (caller endpoint, callee endpoint,
//! stream position of the request's first byte) with the server span whose
//! request starts at the same position on the mirrored 4-tuple. Its inputs are
//! the plain [`HostOutput`] records of the host stages; its output is paths.
//!
//! # Rules
//! - A call and a server span are joined only on an exact key match. Nothing
//!   is joined on timing, so skewed clocks between hosts do not matter and a
//!   join is never a guess.
//! - A call whose key finds no span within `horizon_ns` of stream time after
//!   its reply becomes a leaf: a `remote` span when its callee endpoint was
//!   never seen serving on an observed host, otherwise a missing callee
//!   ([`Issue::CalleeMissing`]).
//! - A server span whose key no call announced ([`HostOutput::Link`]) within
//!   `horizon_ns` of its start is the root of a path (its caller is not
//!   observed). If events were lost on any host near that time, the caller
//!   may have been lost: the root carries [`Issue::CallerMissing`].
//! - A call that sent more bytes than the server span it joined read as its
//!   request carried further requests (pipelining): the next one starts
//!   exactly where that span's request ended, and is joined as a call of its
//!   own (unless that span was the last on its connection, when the rest was
//!   never read, or either record lost events, when the byte counts cannot
//!   be trusted).
//! - A path is complete when none of its spans carries an issue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::analyzer::{Config, HostId, Stats};
use crate::content::Content;
use std::net::SocketAddr;

use crate::host::{
    add_issue, Call, EndpointKey, HostOutput, LinkKey, LossSet, Pos, RecId, RecKind, Scope,
    SpanRecord,
};
use crate::path::{Issue, Path, Span, SpanKind};

type NodeId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Child {
    Pending,
    Node(NodeId),
    Remote,
    Missing,
}

struct Node {
    rec: Box<SpanRecord>,
    children: Vec<Child>,
    parent: Option<NodeId>,
    /// Pending calls in this node plus attached children not yet resolved.
    open: u32,
    /// Decided to be the root of a path.
    root: bool,
    /// Unique per node, unlike the reused `NodeId`.
    serial: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    Call(NodeId, u32, u64),
    Orphan(NodeId, u64),
}

pub struct Stitch {
    config: Config,
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    /// Calls whose parent record is here but whose server span is not yet.
    pending: FxHashMap<LinkKey, (NodeId, u32)>,
    /// Calls announced by a Link whose parent record is not here yet.
    links: FxHashMap<LinkKey, RecId>,
    /// Server spans whose call was announced but whose parent is not here yet.
    early: FxHashMap<LinkKey, NodeId>,
    /// Server spans with no announced caller (yet).
    orphans: FxHashMap<LinkKey, NodeId>,
    servers: FxHashSet<EndpointKey>,
    /// Connections whose caller side is observed, with when last seen.
    callers: FxHashMap<(SocketAddr, SocketAddr, Scope), u64>,
    next_prune: u64,
    losses: LossSet,
    deadlines: BinaryHeap<Reverse<(u64, Deadline)>>,
    watermarks: Vec<u64>,
    offsets: Vec<i64>,
    ended: Vec<bool>,
    low: u64,
    next_path: u64,
    serial: u64,
}

impl Stitch {
    pub fn new(config: Config) -> Self {
        Stitch {
            config,
            nodes: Vec::new(),
            free: Vec::new(),
            pending: FxHashMap::default(),
            links: FxHashMap::default(),
            early: FxHashMap::default(),
            orphans: FxHashMap::default(),
            servers: FxHashSet::default(),
            callers: FxHashMap::default(),
            next_prune: 0,
            losses: LossSet::default(),
            deadlines: BinaryHeap::new(),
            watermarks: Vec::new(),
            offsets: Vec::new(),
            ended: Vec::new(),
            low: 0,
            next_path: 1,
            serial: 0,
        }
    }

    pub fn add_host(&mut self, _h: HostId) {
        self.offsets.push(0);
        self.watermarks.push(0);
        self.ended.push(false);
    }

    /// Nodes, announced links and waiting keys held in memory.
    pub fn in_flight(&self) -> usize {
        (self.nodes.len() - self.free.len()) + self.links.len() + self.callers.len()
    }

    pub fn push(
        &mut self,
        h: HostId,
        o: HostOutput,
        stats: &mut Stats,
        ready: &mut VecDeque<Path>,
    ) {
        match o {
            HostOutput::Link { key, parent } => {
                self.links.insert(key, parent);
                let w = self.watermarks[h.0 as usize];
                self.callers.insert((key.caller, key.callee, key.scope), w);
            }
            HostOutput::CallerSeen {
                caller,
                callee,
                scope,
            } => {
                let w = self.watermarks[h.0 as usize];
                self.callers.insert((caller, callee, scope), w);
            }
            HostOutput::ServerEndpoint(k) => {
                self.servers.insert(k);
            }
            HostOutput::Loss { from, to } => {
                let (from, to) = (self.common(h.0, from), self.common(h.0, to));
                self.losses.insert(from, to);
            }
            HostOutput::Record(rec) => self.record(rec, stats, ready),
            HostOutput::Watermark(ts) => {
                let ts = self.common(h.0, ts);
                let w = &mut self.watermarks[h.0 as usize];
                if ts > *w {
                    *w = ts;
                    self.advance(stats, ready);
                }
            }
        }
    }

    /// Sets the offset that maps host `h`'s clock to the common clock in
    /// which the stitch keeps time (deadlines, watermarks). Joins never use
    /// time, so this only matters for how long the stitch waits.
    pub fn set_clock_offset(&mut self, h: HostId, offset_ns: i64) {
        self.offsets[h.0 as usize] = offset_ns;
    }

    fn common(&self, h: u16, ts: u64) -> u64 {
        if ts == u64::MAX {
            return ts;
        }
        (ts as i128 + self.offsets[h as usize] as i128).clamp(0, u64::MAX as i128 - 1) as u64
    }

    fn host_of(&self, n: NodeId) -> u16 {
        (self.node(n).rec.id >> 48) as u16
    }

    pub fn end_host(&mut self, h: HostId, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        self.ended[h.0 as usize] = true;
        self.watermarks[h.0 as usize] = u64::MAX;
        self.advance(stats, ready);
    }

    /// End of all input: every wait is over.
    pub fn finish(&mut self, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        for w in self.watermarks.iter_mut() {
            *w = u64::MAX;
        }
        self.advance(stats, ready);
        // Spans announced by a call whose parent record never came.
        let early: Vec<NodeId> = self.early.drain().map(|(_, n)| n).collect();
        for n in early {
            let node = self.node_mut(n);
            add_issue(&mut node.rec.issues, Issue::CallerMissing);
            self.make_root(n, stats, ready);
        }
        self.links.clear();
        // Safety net: nothing stays behind unreported.
        for n in 0..self.nodes.len() as NodeId {
            if self.nodes[n as usize]
                .as_ref()
                .is_some_and(|x| x.parent.is_none())
            {
                let node = self.node_mut(n);
                if node.open > 0 {
                    add_issue(&mut node.rec.issues, Issue::CalleeMissing);
                }
                self.emit(n, stats, ready);
            }
        }
        self.pending.clear();
        self.orphans.clear();
    }

    fn live(&self, n: NodeId, serial: u64) -> Option<&Node> {
        self.nodes
            .get(n as usize)
            .and_then(|x| x.as_ref())
            .filter(|x| x.serial == serial)
    }

    /// Whether the `Link` for `key` was announced by node `n`'s record (or a
    /// record it adopted).
    fn announced_by(&self, key: &LinkKey, n: NodeId) -> bool {
        let rec = &self.node(n).rec;
        self.links
            .get(key)
            .is_some_and(|p| *p == rec.id || rec.adopted.contains(p))
    }

    fn node(&self, n: NodeId) -> &Node {
        self.nodes[n as usize].as_ref().expect("live node")
    }

    fn node_mut(&mut self, n: NodeId) -> &mut Node {
        self.nodes[n as usize].as_mut().expect("live node")
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        if let Some(n) = self.free.pop() {
            self.nodes[n as usize] = Some(node);
            n
        } else {
            self.nodes.push(Some(node));
            (self.nodes.len() - 1) as NodeId
        }
    }

    fn record(&mut self, rec: Box<SpanRecord>, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        stats.spans += 1;
        let ncalls = rec.calls.len();
        let uplink = if rec.kind == RecKind::Server {
            rec.uplink
        } else {
            None
        };
        let is_origin = rec.kind == RecKind::Origin;
        self.serial += 1;
        let serial = self.serial;
        let n = self.alloc(Node {
            rec,
            children: vec![Child::Pending; ncalls],
            parent: None,
            open: 0,
            root: false,
            serial,
        });

        // Keys announced and then withdrawn: whoever waits on them waits in vain.
        for k in std::mem::take(&mut self.node_mut(n).rec.withdrawn) {
            if self.announced_by(&k, n) {
                self.links.remove(&k);
                if let Some(c) = self.early.remove(&k) {
                    add_issue(&mut self.node_mut(c).rec.issues, Issue::CallerMissing);
                    self.make_root(c, stats, ready);
                }
            }
        }

        // Downward: this record's calls.
        for i in 0..ncalls {
            self.link_call(n, i, stats);
        }

        // Upward: who called this span.
        match uplink {
            Some(k) => {
                if let Some((p, i)) = self.pending.remove(&k) {
                    self.attach(p, i, n, true, stats);
                    self.pipelined(p, i as usize, n, stats);
                    if self.node(n).open == 0 {
                        self.resolved(p, stats, ready);
                    }
                } else if self.early.contains_key(&k) || self.orphans.contains_key(&k) {
                    // Two spans claim one request: neither can be proven.
                    add_issue(&mut self.node_mut(n).rec.issues, Issue::CallerMissing);
                    self.make_root(n, stats, ready);
                } else if self.links.remove(&k).is_some() {
                    self.early.insert(k, n);
                } else {
                    let start = self.node(n).rec.start_ns;
                    let serial = self.node(n).serial;
                    self.orphans.insert(k, n);
                    let t = self
                        .common(self.host_of(n), start)
                        .saturating_add(self.config.horizon_ns);
                    self.deadlines
                        .push(Reverse((t, Deadline::Orphan(n, serial))));
                }
            }
            None => {
                if !is_origin {
                    // A server span without a position: its caller, if any,
                    // cannot be found.
                    let start = self.node(n).rec.start_ns;
                    if self.loss_near(self.common(self.host_of(n), start)) {
                        add_issue(&mut self.node_mut(n).rec.issues, Issue::CallerMissing);
                    }
                }
                self.make_root(n, stats, ready);
            }
        }
    }

    /// Joins call `i` of node `n` with its server span, if that is here, or
    /// waits for it.
    fn link_call(&mut self, n: NodeId, i: usize, stats: &mut Stats) {
        let (key, end) = {
            let c = &self.node(n).rec.calls[i];
            (c.key, c.end_ns)
        };
        let Some(key) = key else {
            // No position: it can be a leaf only if nobody observed serves it.
            // A call whose key was withdrawn (see `host::mark_lost`,
            // `HostStage::adopt`) is missing, never a remote leaf.
            let withdrawn = !self.node(n).rec.calls[i].issues.is_empty();
            let observed = withdrawn || !self.callee_unobserved(n, i);
            let node = self.node_mut(n);
            if observed {
                node.children[i] = Child::Missing;
                add_issue(&mut node.rec.calls[i].issues, Issue::Unaligned);
                stats.links_missing += 1;
            } else {
                node.children[i] = Child::Remote;
                stats.links_remote += 1;
            }
            return;
        };
        if self.announced_by(&key, n) {
            self.links.remove(&key);
        }
        let child = self
            .early
            .remove(&key)
            .or_else(|| self.orphans.remove(&key));
        match child {
            Some(c) => {
                self.attach(n, i as u32, c, false, stats);
                self.pipelined(n, i, c, stats);
            }
            None if self.pending.contains_key(&key) => {
                // Two calls claim one request: neither can be proven.
                let node = self.node_mut(n);
                node.children[i] = Child::Missing;
                add_issue(&mut node.rec.calls[i].issues, Issue::CalleeMissing);
                stats.links_missing += 1;
            }
            None => {
                let serial = self.node(n).serial;
                self.node_mut(n).open += 1;
                self.pending.insert(key, (n, i as u32));
                let t = self
                    .common(self.host_of(n), end)
                    .saturating_add(self.config.horizon_ns);
                self.deadlines
                    .push(Reverse((t, Deadline::Call(n, i as u32, serial))));
            }
        }
    }

    /// Call `i` of `p` sent more bytes than its server span `c` read as its
    /// request: the caller wrote further requests before reading a reply
    /// (pipelining: MariaDB Connector/J's set-up queries, HTTP pipelining).
    /// The next one starts where `c`'s request ended, an exact position: it
    /// becomes a call of its own, joined like any other. (If its span never
    /// comes, the call is missing and the path incomplete.)
    fn pipelined(&mut self, p: NodeId, i: usize, c: NodeId, stats: &mut Stats) {
        let (read, last, callee_lost) = {
            let r = &self.node(c).rec;
            (r.bytes_in, r.last, r.issues.contains(&Issue::EventsLost))
        };
        let parent = &self.node(p).rec;
        let call = &parent.calls[i];
        let Some(key) = call.key else { return };
        // Only byte counts that loss cannot have changed: a lost reply on the
        // caller's side merges its next request into this call's bytes, and
        // that request's span would be taken for a pipelined one (found by
        // the lossy property test).
        if callee_lost || parent.issues.contains(&Issue::EventsLost) || !call.issues.is_empty() {
            return;
        }
        // `last`: nothing was read on that connection after `c`'s request,
        // so the rest was never read (php-fpm may leave FastCGI's last empty
        // record unread), not a request whose span is missing.
        if read == 0 || call.bytes_out <= read || last {
            return;
        }
        let pos = match key.pos {
            Pos::Seq(s) => Pos::Seq(s.wrapping_add(read as u32)),
            Pos::Offset { inc, offset } => Pos::Offset {
                inc,
                offset: offset + read,
            },
            // Messages, not bytes: no position inside a message.
            Pos::Ordinal { .. } => return,
        };
        let mut next = call.clone();
        next.key = Some(LinkKey { pos, ..key });
        next.bytes_out = call.bytes_out - read;
        next.bytes_in = 0;
        next.content = None;
        let node = self.node_mut(p);
        node.rec.calls[i].bytes_out = read;
        node.rec.calls.push(next);
        node.children.push(Child::Pending);
        let j = node.rec.calls.len() - 1;
        self.link_call(p, j, stats);
    }

    /// Puts node `c` as child `i` of `p`. When the call was counted as
    /// pending in `p.open`, that count now stands for the child, and the
    /// caller resolves it if the child is already resolved.
    fn attach(&mut self, p: NodeId, i: u32, c: NodeId, counted: bool, stats: &mut Stats) {
        stats.links_stitched += 1;
        let child_open = self.node(c).open;
        self.node_mut(c).parent = Some(p);
        let pn = self.node_mut(p);
        pn.children[i as usize] = Child::Node(c);
        if !counted && child_open > 0 {
            pn.open += 1;
        }
    }

    /// One of `n`'s open items is resolved.
    fn resolved(&mut self, mut n: NodeId, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        loop {
            let node = self.node_mut(n);
            node.open -= 1;
            if node.open > 0 {
                return;
            }
            match node.parent {
                Some(p) => n = p,
                None => {
                    if node.root {
                        self.emit(n, stats, ready);
                    }
                    return;
                }
            }
        }
    }

    fn make_root(&mut self, n: NodeId, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        let node = self.node_mut(n);
        node.root = true;
        if node.open == 0 {
            self.emit(n, stats, ready);
        }
    }

    /// A call's callee may be called unobserved (a `remote` leaf) only when
    /// no observed host serves its endpoint and no host lost events around
    /// the call, since the loss might have swallowed all of the callee's.
    fn callee_unobserved(&self, n: NodeId, i: usize) -> bool {
        let c = &self.node(n).rec.calls[i];
        let served = self.servers.contains(&EndpointKey {
            addr: c.remote,
            scope: c.scope,
        });
        !served && !self.loss_near(self.common(self.host_of(n), c.start_ns))
    }

    fn loss_near(&self, ts: u64) -> bool {
        let h = self.config.horizon_ns;
        let (lo, hi) = (ts.saturating_sub(h), ts.saturating_add(h));
        self.losses.overlaps(lo, hi)
    }

    fn advance(&mut self, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        let low = self.watermarks.iter().copied().min().unwrap_or(u64::MAX);
        if low <= self.low && low != u64::MAX {
            return;
        }
        self.low = low;
        if low != u64::MAX && low >= self.next_prune {
            // Forget connections idle for three horizons: no span can still
            // be waiting on them.
            let keep = low.saturating_sub(3 * self.config.horizon_ns);
            self.callers.retain(|_, t| *t >= keep);
            self.next_prune = low.saturating_add(self.config.horizon_ns);
        }
        while let Some(Reverse((t, d))) = self.deadlines.peek().copied() {
            if t > low && low != u64::MAX {
                break;
            }
            self.deadlines.pop();
            match d {
                Deadline::Call(n, i, serial) => {
                    let Some(node) = self.live(n, serial) else {
                        continue;
                    };
                    if node.children[i as usize] != Child::Pending {
                        continue;
                    }
                    let c: &Call = &node.rec.calls[i as usize];
                    let Some(key) = c.key else { continue };
                    if self.pending.get(&key) != Some(&(n, i)) {
                        continue;
                    }
                    self.pending.remove(&key);
                    let observed = !self.callee_unobserved(n, i as usize);
                    let node = self.node_mut(n);
                    if observed {
                        node.children[i as usize] = Child::Missing;
                        add_issue(&mut node.rec.calls[i as usize].issues, Issue::CalleeMissing);
                        stats.links_missing += 1;
                    } else {
                        node.children[i as usize] = Child::Remote;
                        stats.links_remote += 1;
                    }
                    self.resolved(n, stats, ready);
                }
                Deadline::Orphan(n, serial) => {
                    let Some(node) = self.live(n, serial) else {
                        continue;
                    };
                    let Some(key) = node.rec.uplink else { continue };
                    let start = node.rec.start_ns;
                    if self.orphans.get(&key) != Some(&n) {
                        continue;
                    }
                    self.orphans.remove(&key);
                    // The caller is observed (it made calls on this
                    // connection), yet not this one: part of the path is missing.
                    let observed = self
                        .callers
                        .contains_key(&(key.caller, key.callee, key.scope));
                    if observed || self.loss_near(self.common(self.host_of(n), start)) {
                        add_issue(&mut self.node_mut(n).rec.issues, Issue::CallerMissing);
                    }
                    self.make_root(n, stats, ready);
                }
            }
        }
    }

    fn emit(&mut self, n: NodeId, stats: &mut Stats, ready: &mut VecDeque<Path>) {
        let root = self.build(n, 1, stats);
        let mut complete = true;
        root.walk(&mut |s, _| complete &= s.issues.is_empty());
        let path = Path {
            path: self.next_path,
            complete,
            root,
        };
        self.next_path += 1;
        stats.paths += 1;
        if complete {
            stats.complete_paths += 1;
        } else {
            stats.incomplete_paths += 1;
        }
        ready.push_back(path);
    }

    /// Frees a node and its subtree without building spans (iterative: the
    /// subtree may be as deep as the input makes it); returns their number.
    fn free_subtree(&mut self, n: NodeId) -> u64 {
        let mut stack = vec![n];
        let mut count = 0;
        while let Some(n) = stack.pop() {
            let node = self.nodes[n as usize].take().expect("live node");
            self.free.push(n);
            count += 1;
            stack.extend(node.children.into_iter().filter_map(|c| match c {
                Child::Node(c) => Some(c),
                _ => None,
            }));
        }
        count
    }

    /// Turns a node and its subtree into spans, freeing them. `depth` is the
    /// node's (the root is 1): below [`Config::max_depth`] the subtree is cut
    /// off and counted, and the deepest span kept says so.
    fn build(&mut self, n: NodeId, depth: usize, stats: &mut Stats) -> Span {
        let node = self.nodes[n as usize].take().expect("live node");
        self.free.push(n);
        let Node { rec, children, .. } = node;
        let rec = *rec;
        let SpanRecord {
            kind,
            host,
            pid,
            tid,
            comm,
            process,
            netns,
            local,
            remote,
            start_ns,
            end_ns,
            bytes_in,
            bytes_out,
            calls,
            mut issues,
            content,
            ..
        } = rec;
        let (protocol, name, attrs) = match kind {
            RecKind::Server => Content::span_fields(content.as_deref()),
            RecKind::Origin => {
                Content::span_fields(calls.first().and_then(|c| c.content.as_deref()))
            }
        };
        let mut spans = Vec::with_capacity(children.len());
        let cut = depth >= self.config.max_depth.max(1);
        for (call, child) in calls.into_iter().zip(children) {
            for i in &call.issues {
                add_issue(&mut issues, *i);
            }
            if cut && !matches!(child, Child::Missing | Child::Pending) {
                if let Child::Node(c) = child {
                    stats.spans_cut += self.free_subtree(c);
                }
                add_issue(&mut issues, Issue::DepthLimit);
                continue;
            }
            match child {
                Child::Node(c) => spans.push(self.build(c, depth + 1, stats)),
                Child::Remote => spans.push(remote_span(&call)),
                Child::Missing | Child::Pending => add_issue(&mut issues, Issue::CalleeMissing),
            }
        }
        issues.sort_unstable();
        Span {
            kind: match kind {
                RecKind::Server => SpanKind::Server,
                RecKind::Origin => SpanKind::Origin,
            },
            host: Some(host),
            pid: Some(pid),
            tid: Some(tid),
            comm,
            process,
            netns: Some(netns),
            local,
            remote,
            start_ns,
            end_ns,
            bytes_in,
            bytes_out,
            protocol,
            name,
            attrs,
            issues,
            children: spans,
        }
    }
}

fn remote_span(c: &Call) -> Span {
    let (protocol, name, attrs) = Content::span_fields(c.content.as_deref());
    Span {
        kind: SpanKind::Remote,
        host: None::<Arc<str>>,
        pid: None,
        tid: None,
        comm: None,
        process: None,
        netns: None,
        local: c.remote,
        remote: c.local,
        start_ns: c.start_ns,
        end_ns: c.end_ns,
        bytes_in: c.bytes_out,
        bytes_out: c.bytes_in,
        protocol,
        name,
        attrs,
        issues: Vec::new(),
        children: Vec::new(),
    }
}
