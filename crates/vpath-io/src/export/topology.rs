//! The tier topology of a run as Graphviz DOT or Mermaid: tiers are nodes
//! (comm and endpoint, as in `--summary`), grouped by host/domain; calls are
//! edges labelled with their count and the p50 of the callee span's
//! duration. Unobserved callees form a group of their own.

use std::collections::BTreeMap;
use std::io::{self, Write};

use vpath_core::{Path, Span, SpanKind};

use crate::sink::{fmt_duration, tier, Hist, RunInfo, Sink};

/// A group of nodes: `host netns:N`, or `not observed`.
fn group(s: &Span, parent_group: Option<&str>) -> String {
    match (s.kind, &s.host) {
        (SpanKind::Remote, _) => "not observed".to_string(),
        (_, Some(h)) => format!("{h} netns:{}", s.netns.unwrap_or(0)),
        (_, None) => parent_group.unwrap_or("?").to_string(),
    }
}

/// A node: (group, tier).
pub type Node = (String, String);

/// Tiers and the calls between them, over every path added.
#[derive(Default)]
pub struct Topology {
    /// (group, tier) -> spans seen
    nodes: BTreeMap<(String, String), u64>,
    /// (caller node, callee node) -> latency histogram of the callee spans
    edges: BTreeMap<(Node, Node), Hist>,
}

impl Topology {
    pub fn add(&mut self, p: &Path) {
        fn go(t: &mut Topology, s: &Span, g: String) {
            let node = (g.clone(), tier(s));
            *t.nodes.entry(node.clone()).or_default() += 1;
            for c in &s.children {
                let cg = group(c, Some(&g));
                t.edges
                    .entry((node.clone(), (cg.clone(), tier(c))))
                    .or_default()
                    .add(c.end_ns.saturating_sub(c.start_ns));
                go(t, c, cg);
            }
        }
        go(self, &p.root, group(&p.root, None));
    }

    fn ids(&self) -> BTreeMap<&(String, String), String> {
        self.nodes
            .keys()
            .enumerate()
            .map(|(k, n)| (n, format!("n{}", k + 1)))
            .collect()
    }

    fn groups(&self) -> BTreeMap<&str, Vec<&(String, String)>> {
        let mut g: BTreeMap<&str, Vec<&(String, String)>> = BTreeMap::new();
        for n in self.nodes.keys() {
            g.entry(n.0.as_str()).or_default().push(n);
        }
        g
    }

    fn edge_label(h: &Hist) -> String {
        format!(
            "{} call{}, p50 {}",
            h.count,
            if h.count == 1 { "" } else { "s" },
            fmt_duration(h.quantile(0.5))
        )
    }

    /// Calls per edge: ((caller group, tier), (callee group, tier)) -> count.
    pub fn edge_counts(&self) -> Vec<(&Node, &Node, u64)> {
        self.edges
            .iter()
            .map(|((a, b), h)| (a, b, h.count))
            .collect()
    }

    pub fn to_dot(&self) -> String {
        fn q(s: &str) -> String {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        let ids = self.ids();
        let mut s = String::from(
            "digraph vpath {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for (k, (g, nodes)) in self.groups().into_iter().enumerate() {
            s.push_str(&format!(
                "  subgraph cluster_{} {{\n    label={};\n",
                k + 1,
                q(g)
            ));
            for n in nodes {
                let label = n.1.replacen(' ', "\n", 1);
                s.push_str(&format!(
                    "    {} [label={}];\n",
                    ids[n],
                    q(&label).replace('\n', "\\n")
                ));
            }
            s.push_str("  }\n");
        }
        for ((a, b), h) in &self.edges {
            s.push_str(&format!(
                "  {} -> {} [label={}];\n",
                ids[a],
                ids[b],
                q(&Self::edge_label(h))
            ));
        }
        s.push_str("}\n");
        s
    }

    pub fn to_mermaid(&self) -> String {
        // Mermaid labels are in double quotes; quotes inside become #quot;
        fn q(s: &str) -> String {
            format!("\"{}\"", s.replace('"', "#quot;"))
        }
        let ids = self.ids();
        let mut s = String::from("flowchart LR\n");
        for (k, (g, nodes)) in self.groups().into_iter().enumerate() {
            s.push_str(&format!("  subgraph g{}[{}]\n", k + 1, q(g)));
            for n in nodes {
                s.push_str(&format!(
                    "    {}[{}]\n",
                    ids[n],
                    q(&n.1.replacen(' ', "<br/>", 1))
                ));
            }
            s.push_str("  end\n");
        }
        for ((a, b), h) in &self.edges {
            s.push_str(&format!(
                "  {} -->|{}| {}\n",
                ids[a],
                q(&Self::edge_label(h)),
                ids[b]
            ));
        }
        s
    }
}

/// `--format dot`.
pub struct DotSink<W: Write> {
    out: W,
    topo: Topology,
}

impl<W: Write> DotSink<W> {
    pub fn new(out: W) -> Self {
        DotSink {
            out,
            topo: Topology::default(),
        }
    }
}

impl<W: Write> Sink for DotSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.topo.add(p);
        Ok(())
    }
    fn finish(&mut self, _info: &RunInfo) -> io::Result<()> {
        self.out.write_all(self.topo.to_dot().as_bytes())?;
        self.out.flush()
    }
}

/// `--format mermaid`.
pub struct MermaidSink<W: Write> {
    out: W,
    topo: Topology,
}

impl<W: Write> MermaidSink<W> {
    pub fn new(out: W) -> Self {
        MermaidSink {
            out,
            topo: Topology::default(),
        }
    }
}

impl<W: Write> Sink for MermaidSink<W> {
    fn path(&mut self, p: &Path) -> io::Result<()> {
        self.topo.add(p);
        Ok(())
    }
    fn finish(&mut self, _info: &RunInfo) -> io::Result<()> {
        self.out.write_all(self.topo.to_mermaid().as_bytes())?;
        self.out.flush()
    }
}
