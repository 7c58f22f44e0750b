//! Streaming generation of big synthetic logs (for benchmarks): records are
//! produced on demand, in global time order, without keeping them.

use std::sync::Arc;

use vpath_core::Record;

use crate::config::{ConfigError, SimConfig};
use crate::engine::Engine;
use crate::rng::Rng;
use crate::topology::Topology;

/// A host of a streamed scenario (index = the `usize` of each item).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub name: Arc<str>,
    pub checkpointed: bool,
}

/// An iterator of `(host index, record)` over the observed hosts. Each
/// host's records come in its stream order; hosts are interleaved by time.
pub struct BigScenario {
    pub hosts: Vec<HostInfo>,
    pub config: SimConfig,
    engine: Engine,
}

impl BigScenario {
    /// Streams the scenario `cfg` describes (its expected paths are not kept,
    /// only counted).
    pub fn new(cfg: SimConfig) -> Result<BigScenario, ConfigError> {
        cfg.validate()?;
        let mut rng = Rng::new(cfg.seed);
        let topo = Topology::generate(&cfg, &mut rng);
        let mut stream_of = vec![None; topo.hosts.len()];
        let mut hosts = Vec::new();
        for (h, spec) in topo.hosts.iter().enumerate() {
            if spec.observed {
                stream_of[h] = Some(hosts.len());
                hosts.push(HostInfo {
                    name: spec.name.clone(),
                    checkpointed: cfg.checkpointed(),
                });
            }
        }
        let engine = Engine::new(cfg.clone(), topo, rng, stream_of, false, false);
        Ok(BigScenario {
            hosts,
            config: cfg,
            engine,
        })
    }

    /// Requests completed so far; after the iterator is exhausted, the number
    /// of paths an exact analyzer emits.
    pub fn expected_paths(&self) -> u64 {
        self.engine.paths_completed
    }
}

impl Iterator for BigScenario {
    type Item = (usize, Record);

    fn next(&mut self) -> Option<(usize, Record)> {
        loop {
            if let Some(r) = self.engine.out.pop_front() {
                return Some(r);
            }
            if !self.engine.step() {
                return self.engine.out.pop_front();
            }
        }
    }
}

/// The configuration of [`big_scenario`]: 5 services on 3 hosts, 16 client
/// threads, seq mode, noise, pods, IPv6, process-per-connection services,
/// one unobserved leaf backend, 2 ms of skew, checkpoints every 4096 events,
/// about 50 us between events (10 M events span about 500 s).
pub fn big_config(seed: u64, target_events: usize) -> SimConfig {
    SimConfig {
        seed,
        services: 5,
        hosts: 3,
        client_threads: 16,
        requests: usize::MAX,
        stop_after_events: Some(target_events as u64),
        seq_mode: true,
        noise: true,
        eof_reads: true,
        containers: true,
        ipv6: true,
        per_connection: true,
        handoff: crate::config::Handoff::None,
        loss_burst: 0,
        unobserved_backend: true,
        unobserved_clients: false,
        skew_ns: 2_000_000,
        gap_ns: (1_000, 100_000),
        max_uses: 8,
        max_depth: 4,
        max_fanout: 3,
        max_msg: 20_000,
        loss: None,
        checkpoint_every: Some(4096),
        teardown: true,
    }
}

/// A big lossless synthetic log of about `target_events` events (a little
/// more: requests in flight are finished), generated lazily.
pub fn big_scenario(seed: u64, target_events: usize) -> BigScenario {
    BigScenario::new(big_config(seed, target_events)).expect("big_config is valid")
}
