//! Whole scenarios: generated host streams plus expected paths, and the
//! harness that feeds them to an [`Analyzer`].

use std::sync::Arc;

use vpath_core::{Analyzer, Config, HostId, Path, Record, Stats};

use crate::config::{ConfigError, SimConfig};
use crate::engine::Engine;
use crate::rng::Rng;
use crate::topology::Topology;
use crate::truth::TruthSpan;

/// One host's log, as a recorder would have written it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostStream {
    pub name: Arc<str>,
    /// The stream carries loss checkpoints.
    pub checkpointed: bool,
    pub records: Vec<Record>,
}

/// A simulated execution: what the analyzer gets and what it should find.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub config: SimConfig,
    pub topology: Topology,
    /// The observed hosts' streams: the analyzer's input.
    pub hosts: Vec<HostStream>,
    /// What the unobserved hosts would have logged (never fed to the
    /// analyzer; used to validate the simulator).
    pub unobserved: Vec<HostStream>,
    /// The expected paths (`path` ids are 0; compare as multisets).
    pub expected: Vec<Path>,
    /// Every span of `expected`, flattened, with parents and caller views.
    pub truth: Vec<TruthSpan>,
}

/// Simulates the execution that `cfg` describes.
pub fn generate(cfg: &SimConfig) -> Result<Scenario, ConfigError> {
    cfg.validate()?;
    let mut rng = Rng::new(cfg.seed);
    let topology = Topology::generate(cfg, &mut rng);
    let observed: Vec<usize> = (0..topology.hosts.len())
        .filter(|&h| topology.hosts[h].observed)
        .collect();
    let unobserved: Vec<usize> = (0..topology.hosts.len())
        .filter(|&h| !topology.hosts[h].observed)
        .collect();
    let mut stream_of = vec![None; topology.hosts.len()];
    for (i, &h) in observed.iter().chain(unobserved.iter()).enumerate() {
        stream_of[h] = Some(i);
    }
    let mut streams: Vec<HostStream> = observed
        .iter()
        .chain(unobserved.iter())
        .map(|&h| HostStream {
            name: topology.hosts[h].name.clone(),
            checkpointed: cfg.checkpointed(),
            records: Vec::new(),
        })
        .collect();
    let mut engine = Engine::new(cfg.clone(), topology.clone(), rng, stream_of, true, true);
    let mut expected = Vec::new();
    let mut truth: Vec<TruthSpan> = Vec::new();
    loop {
        let more = engine.step();
        for (s, rec) in engine.out.drain(..) {
            streams[s].records.push(rec);
        }
        for d in engine.done.drain(..) {
            let base = truth.len();
            let pi = expected.len();
            truth.extend(d.truth.into_iter().map(|mut t| {
                t.path = pi;
                t.parent = t.parent.map(|p| p + base);
                t
            }));
            expected.push(d.path);
        }
        if !more {
            break;
        }
    }
    let unobs = streams.split_off(observed.len());
    Ok(Scenario {
        config: cfg.clone(),
        topology,
        hosts: streams,
        unobserved: unobs,
        expected,
        truth,
    })
}

impl Scenario {
    /// Events (not thread or checkpoint records) over the observed hosts.
    pub fn events(&self) -> usize {
        self.hosts
            .iter()
            .map(|h| {
                h.records
                    .iter()
                    .filter(|r| matches!(r, Record::Event(_)))
                    .count()
            })
            .sum()
    }

    /// The order in which [`analyze`] feeds records: `(host, index)` pairs,
    /// merging the hosts by timestamp, ties round-robin. Thread records go
    /// with the record before them.
    pub fn feed_order(&self) -> Vec<(usize, usize)> {
        feed_order(&self.hosts)
    }
}

/// Merges host streams by timestamp (round-robin among equal keys).
pub fn feed_order(hosts: &[HostStream]) -> Vec<(usize, usize)> {
    let total: usize = hosts.iter().map(|h| h.records.len()).sum();
    let mut pos = vec![0usize; hosts.len()];
    let mut last = vec![0u64; hosts.len()];
    let mut order = Vec::with_capacity(total);
    let mut rr = 0usize;
    let key = |h: usize, i: usize, last: u64| match &hosts[h].records[i] {
        Record::Event(e) => e.ts_ns,
        Record::Checkpoint(c) => c.ts_ns,
        Record::Thread(_) => last,
    };
    while order.len() < total {
        let mut best: Option<(u64, usize)> = None;
        for k in 0..hosts.len() {
            let h = (rr + k) % hosts.len();
            if pos[h] < hosts[h].records.len() {
                let kk = key(h, pos[h], last[h]);
                if best.is_none_or(|(b, _)| kk < b) {
                    best = Some((kk, h));
                }
            }
        }
        let Some((kk, h)) = best else { break };
        order.push((h, pos[h]));
        pos[h] += 1;
        last[h] = kk;
        rr = (h + 1) % hosts.len();
    }
    order
}

/// Feeds a scenario's observed hosts to `Analyzer::new(Config::default())`,
/// interleaved by timestamp, popping paths after every record.
pub fn analyze(s: &Scenario) -> (Vec<Path>, Stats) {
    analyze_with(s, Config::default(), |_, _| {})
}

/// Like [`analyze`] with a given config; `probe(analyzer, records_fed)` runs
/// after every record.
pub fn analyze_with(
    s: &Scenario,
    config: Config,
    mut probe: impl FnMut(&Analyzer, usize),
) -> (Vec<Path>, Stats) {
    let mut a = Analyzer::new(config);
    let ids: Vec<HostId> = s
        .hosts
        .iter()
        .map(|h| a.add_host(&h.name, h.checkpointed))
        .collect();
    let mut out = Vec::new();
    for (n, (h, i)) in s.feed_order().into_iter().enumerate() {
        a.push(ids[h], &s.hosts[h].records[i]);
        while let Some(p) = a.pop() {
            out.push(p);
        }
        probe(&a, n + 1);
    }
    a.finish();
    while let Some(p) = a.pop() {
        out.push(p);
    }
    let stats = a.stats().clone();
    (out, stats)
}
