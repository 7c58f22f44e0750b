//! The tier graph of the HTML report as inline SVG.
//!
//! The aggregation is the one of [`Topology`](crate::export::Topology)
//! (nodes are `(domain, tier)`, edges carry the callee spans' latency), kept
//! here with per-node histograms for the CDFs. The layout is layout-rs's
//! (layered, left to right): we give it boxes and labelled edges sized for
//! our text, take back the positions and edge curves through a
//! [`RenderBackend`], and draw the SVG ourselves so that every node and edge
//! carries a class and an id the page (and its test) can find.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::{Point, Position};
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use vpath_core::event::fmt_endpoint;
use vpath_core::{Path, Span, SpanKind};

use super::{dur, esc, num, short_duration};
use crate::sink::{tier, Hist};

/// The domain a span ran in: `host netns:N`, or `not observed` (as in the
/// DOT and Mermaid exports).
pub fn group(s: &Span, parent_group: Option<&str>) -> String {
    match (s.kind, &s.host) {
        (SpanKind::Remote, _) => "not observed".to_string(),
        (_, Some(h)) => format!("{h} netns:{}", s.netns.unwrap_or(0)),
        (_, None) => parent_group.unwrap_or("?").to_string(),
    }
}

/// One tier in one domain.
pub struct Node {
    pub group: String,
    pub tier: String,
    /// The program (process name, else thread name); for remote spans `remote`.
    pub program: String,
    /// The endpoint it serves (server and remote spans).
    pub endpoint: Option<String>,
    pub kind: SpanKind,
    /// Durations of its spans.
    pub hist: Hist,
}

/// Tiers and calls over every path added.
#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    index: BTreeMap<(String, String), usize>,
    /// (caller, callee) -> durations of the callee spans.
    pub edges: BTreeMap<(usize, usize), Hist>,
}

impl Graph {
    fn node(&mut self, s: &Span, g: &str) -> usize {
        let t = tier(s);
        if let Some(&k) = self.index.get(&(g.to_string(), t.clone())) {
            return k;
        }
        let program = match s.kind {
            SpanKind::Remote => "remote".to_string(),
            _ => s
                .process
                .as_deref()
                .or(s.comm.as_deref())
                .unwrap_or("?")
                .to_string(),
        };
        let endpoint = match s.kind {
            SpanKind::Origin => None,
            _ => Some(fmt_endpoint(&s.local)),
        };
        self.nodes.push(Node {
            group: g.to_string(),
            tier: t.clone(),
            program,
            endpoint,
            kind: s.kind,
            hist: Hist::default(),
        });
        self.index.insert((g.to_string(), t), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Adds a path; returns the node of each span, depth first.
    pub fn add(&mut self, p: &Path) -> Vec<usize> {
        let mut out = Vec::new();
        fn go(gr: &mut Graph, s: &Span, g: String, out: &mut Vec<usize>) -> usize {
            let me = gr.node(s, &g);
            gr.nodes[me].hist.add(s.end_ns.saturating_sub(s.start_ns));
            out.push(me);
            for c in &s.children {
                let cg = group(c, Some(&g));
                let k = go(gr, c, cg, out);
                gr.edges
                    .entry((me, k))
                    .or_default()
                    .add(c.end_ns.saturating_sub(c.start_ns));
            }
            me
        }
        go(self, &p.root, group(&p.root, None), &mut out);
        out
    }

    /// The domains in order of first appearance.
    pub fn groups(&self) -> Vec<&str> {
        let mut g: Vec<&str> = Vec::new();
        for n in &self.nodes {
            if !g.contains(&n.group.as_str()) {
                g.push(&n.group);
            }
        }
        g
    }
}

/// Node fill accents: Tableau 10 (distinct, colour-blind aware).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#79706e",
];
pub const REMOTE_COLOR: &str = "#9aa0a6";

/// The colour of node `k`.
pub fn color(g: &Graph, k: usize) -> &'static str {
    if g.nodes[k].kind == SpanKind::Remote {
        return REMOTE_COLOR;
    }
    let observed = g.nodes[..k]
        .iter()
        .filter(|n| n.kind != SpanKind::Remote)
        .count();
    PALETTE[observed % PALETTE.len()]
}

/// What layout-rs tells us back: boxes by node id, edge curves by edge id,
/// label centres by edge id.
#[derive(Default)]
struct Collect {
    boxes: BTreeMap<usize, (Point, Point)>,
    curves: BTreeMap<usize, (Vec<(Point, Point)>, bool)>,
    labels: BTreeMap<usize, Point>,
}

/// Sizing-only text: layout-rs sizes a shape as `chars x lines` times the
/// font size. The first line carries an id for labels.
fn sizing(tag: &str, width_px: f64, height_px: f64) -> String {
    let cols = ((width_px / UNIT).ceil() as usize).max(tag.chars().count() + 1);
    let rows = ((height_px / UNIT).ceil() as usize).max(1);
    let mut s = format!("{tag}{}", " ".repeat(cols - tag.chars().count()));
    for _ in 1..rows {
        s.push_str("\n.");
    }
    s
}

/// What an origin node says instead of an endpoint.
const CLIENT: &str = "client (origin)";

/// layout-rs's size unit: one "character" of the sizing text.
const UNIT: f64 = 8.0;
/// Average advance of our 12.5px UI font, per character (generous).
const CHAR_W: f64 = 7.4;
const MONO_W: f64 = 7.0;

impl RenderBackend for Collect {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(id) = properties.and_then(|p| p.strip_prefix('n')?.parse().ok()) {
            self.boxes.insert(id, (xy, size));
        }
    }
    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}
    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}
    fn draw_text(&mut self, xy: Point, text: &str, _look: &StyleAttr) {
        if let Some(id) = text
            .strip_prefix("\u{2116}e")
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse().ok())
        {
            self.labels.insert(id, xy);
        }
    }
    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        _text: &str,
    ) {
        if let Some(id) = properties.and_then(|p| p.strip_prefix('e')?.parse().ok()) {
            // head.0: the edge was reversed to keep the graph acyclic.
            self.curves.insert(id, (path.to_vec(), head.0));
        }
    }
    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

fn trunc(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let t: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{t}…")
    }
}

fn calls(n: u64) -> String {
    format!("{} call{}", num(n), if n == 1 { "" } else { "s" })
}

/// The graph as an SVG element (`class="topology"`): a `g.node` per node
/// (`data-node` = index) and a `g.edge` per edge (`data-from`, `data-to`,
/// `data-calls`).
pub fn svg(g: &Graph) -> String {
    if g.nodes.is_empty() {
        return String::from(
            "<p class=\"empty\">No paths were discovered, so there is no topology to draw.</p>",
        );
    }
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let look = StyleAttr::new(Color::fast("black"), 1, None, 0, UNIT as usize);
    // Node boxes: program (bold), endpoint, domain; width from the longest.
    let mut sizes = Vec::new();
    let mut handles = Vec::new();
    for (k, n) in g.nodes.iter().enumerate() {
        let l1 = trunc(&n.program, 28).chars().count() as f64 * (CHAR_W + 0.6);
        let l2 = n.endpoint.as_deref().unwrap_or(CLIENT).chars().count() as f64 * MONO_W;
        let l3 = trunc(&n.group, 34).chars().count() as f64 * (CHAR_W - 1.0);
        let l4 = 24.0 * CHAR_W - 20.0;
        let w = l1.max(l2).max(l3).max(l4) + 28.0;
        let h = 76.0;
        sizes.push((w, h));
        let text = sizing(&format!("n{k}"), w - 20.0, h - 20.0);
        let mut e = Element::create_with_properties(
            ShapeKind::new_box(&text),
            look.clone(),
            Orientation::LeftToRight,
            Point::new(w, h),
            format!("n{k}"),
        );
        // Tighter than layout-rs's default 60 px around every box: the
        // gap between ranks (x) and between boxes of one rank (y).
        e.pos = Position::new(
            Point::zero(),
            Point::new(w, h),
            Point::zero(),
            Point::new(40.0, 26.0),
        );
        handles.push(vg.add_node(e));
    }
    let edge_list: Vec<(&(usize, usize), &Hist)> = g.edges.iter().collect();
    for (e, ((a, b), h)) in edge_list.iter().enumerate() {
        let (w, lh) = (edge_label_width(h), LABEL_H);
        let text = sizing(&format!("\u{2116}e{e}"), w - 20.0, lh - 20.0);
        let arrow = Arrow::with_properties(
            LineEndKind::None,
            LineEndKind::Arrow,
            LineStyleKind::Normal,
            &text,
            &look,
            format!("e{e}"),
            &None,
            &None,
        );
        vg.add_edge(arrow, handles[*a], handles[*b]);
    }
    let mut c = Collect::default();
    vg.do_it(false, false, false, &mut c);

    // The drawing's extent.
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    let mut grow = |p: Point| {
        x0 = x0.min(p.x);
        y0 = y0.min(p.y);
        x1 = x1.max(p.x);
        y1 = y1.max(p.y);
    };
    for (xy, size) in c.boxes.values() {
        grow(*xy);
        grow(xy.add(*size));
    }
    for (path, _) in c.curves.values() {
        for (a, b) in path {
            grow(*a);
            grow(*b);
        }
    }
    for (e, p) in &c.labels {
        let w = edge_label_width(edge_list[*e].1);
        grow(Point::new(p.x - w / 2.0, p.y - LABEL_H / 2.0));
        grow(Point::new(p.x + w / 2.0, p.y + LABEL_H / 2.0));
    }
    let pad = 12.0;
    let (w, h) = (x1 - x0 + 2.0 * pad, y1 - y0 + 2.0 * pad);
    let (dx, dy) = (pad - x0, pad - y0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w:.0} {h:.0}\" \
         width=\"{w:.0}\" height=\"{h:.0}\" style=\"width:100%;height:auto;max-width:{w:.0}px;min-width:{:.0}px\" role=\"img\" aria-label=\"tier topology\">\
         <defs><marker id=\"arrowhead\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"10\" \
         markerHeight=\"10\" markerUnits=\"userSpaceOnUse\" orient=\"auto-start-reverse\"><path d=\"M0 0L10 5L0 10z\" fill=\"#6b7280\"/></marker></defs>",
        // Shrinks to fit the page down to 3/4 of its size, then scrolls.
        w * 0.75
    );
    // Edges first, so that nodes and labels sit on top.
    for (e, ((a, b), hist)) in edge_list.iter().enumerate() {
        let Some((path, reversed)) = c.curves.get(&e) else {
            continue;
        };
        if path.len() < 2 {
            continue;
        }
        let mut d = format!(
            "M{:.1} {:.1}C{:.1} {:.1},{:.1} {:.1},{:.1} {:.1}",
            path[0].0.x + dx,
            path[0].0.y + dy,
            path[0].1.x + dx,
            path[0].1.y + dy,
            path[1].0.x + dx,
            path[1].0.y + dy,
            path[1].1.x + dx,
            path[1].1.y + dy
        );
        for p in path.iter().skip(2) {
            let _ = write!(
                d,
                "S{:.1} {:.1},{:.1} {:.1}",
                p.0.x + dx,
                p.0.y + dy,
                p.1.x + dx,
                p.1.y + dy
            );
        }
        let marker = if *reversed {
            "marker-start=\"url(#arrowhead)\""
        } else {
            "marker-end=\"url(#arrowhead)\""
        };
        let width = 1.2 + (hist.count as f64).log10().max(0.0) * 0.45;
        let _ = write!(
            s,
            "<g class=\"edge\" data-from=\"{a}\" data-to=\"{b}\" data-calls=\"{}\">\
             <title>{} → {}: {}, p50 {}, p99 {}</title>\
             <path d=\"{d}\" fill=\"none\" stroke=\"#9ca3af\" stroke-width=\"{width:.1}\" {marker}/>",
            hist.count,
            esc(&g.nodes[*a].tier),
            esc(&g.nodes[*b].tier),
            calls(hist.count),
            dur(hist.quantile(0.5)),
            dur(hist.quantile(0.99)),
        );
        if let Some(p) = c.labels.get(&e) {
            let lw = edge_label_width(hist);
            let (cx, cy) = (p.x + dx, p.y + dy);
            let top = cy - LABEL_H / 2.0 + 4.0;
            let _ = write!(
                s,
                "<rect class=\"elabel\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{lw:.1}\" height=\"{:.1}\" rx=\"6\"/>\
                 <text x=\"{cx:.1}\" y=\"{:.1}\" class=\"ecount\">{}</text>\
                 <text x=\"{cx:.1}\" y=\"{:.1}\" class=\"elat\">p50 {}</text>\
                 <text x=\"{cx:.1}\" y=\"{:.1}\" class=\"elat\">p99 {}</text>",
                cx - lw / 2.0,
                LABEL_H - 8.0,
                top + 14.0,
                calls(hist.count),
                top + 27.0,
                short_duration(hist.quantile(0.5) as f64),
                top + 39.0,
                short_duration(hist.quantile(0.99) as f64),
            );
        }
        s.push_str("</g>");
    }
    for (k, n) in g.nodes.iter().enumerate() {
        let Some((xy, _)) = c.boxes.get(&k) else {
            continue;
        };
        let (bw, bh) = sizes[k];
        // layout-rs centres our box in its slot; draw at our own size.
        let (x, y) = (xy.x + dx, xy.y + dy);
        let remote = n.kind == SpanKind::Remote;
        let col = color(g, k);
        let kind = match n.kind {
            SpanKind::Server => "server",
            SpanKind::Origin => "client",
            SpanKind::Remote => "not observed",
        };
        let _ = write!(
            s,
            "<g class=\"node{}\" data-node=\"{k}\" tabindex=\"0\">\
             <title>{} ({kind}) in {}: {} spans, p50 {}, p99 {}</title>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" rx=\"8\" class=\"nbox\"{}/>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"5\" height=\"{bh:.1}\" rx=\"2\" fill=\"{col}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"nname\">{}</text>",
            if remote { " remote" } else { "" },
            esc(&n.tier),
            esc(&n.group),
            num(n.hist.count),
            dur(n.hist.quantile(0.5)),
            dur(n.hist.quantile(0.99)),
            if remote {
                " stroke-dasharray=\"5 4\""
            } else {
                ""
            },
            x + 14.0,
            y + 21.0,
            esc(&trunc(&n.program, 28)),
        );
        let sub = match &n.endpoint {
            Some(e) => e.clone(),
            None => CLIENT.into(),
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"nep\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"ndom\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"nstat\">{} spans · p50 {}</text></g>",
            x + 14.0,
            y + 37.0,
            esc(&sub),
            x + 14.0,
            y + 52.0,
            esc(&trunc(&n.group, 34)),
            x + 14.0,
            y + 67.0,
            num(n.hist.count),
            dur(n.hist.quantile(0.5)),
        );
    }
    s.push_str("</svg>");
    s
}

/// Height of an edge label (three lines) with its margin.
const LABEL_H: f64 = 54.0;

fn edge_label_width(h: &Hist) -> f64 {
    let lines = [
        calls(h.count),
        format!("p50 {}", short_duration(h.quantile(0.5) as f64)),
        format!("p99 {}", short_duration(h.quantile(0.99) as f64)),
    ];
    lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * 6.4 + 14.0
}
