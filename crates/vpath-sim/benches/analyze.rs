//! Analysis throughput on a big synthetic log (issue: >= 5 M events/s per
//! core). The log is generated before timing and held in memory; only the
//! analyzer is timed. `cargo bench -p vpath-sim --bench analyze`.
//! Set VPATH_BENCH_EVENTS to change the size (default 10 M).

use divan::counter::ItemsCount;
use divan::Bencher;
use vpath_core::{Analyzer, Config, HostId, Record};
use vpath_sim::big_scenario;

fn main() {
    divan::main();
}

/// Hosts (checkpointed, name), records (host index, record), event count.
type Log = (Vec<(bool, String)>, Vec<(usize, Record)>, usize);

fn log() -> Log {
    let n: usize = std::env::var("VPATH_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let mut it = big_scenario(1, n);
    let hosts: Vec<(bool, String)> = it
        .hosts
        .iter()
        .map(|h| (h.checkpointed, h.name.to_string()))
        .collect();
    let recs: Vec<(usize, Record)> = it.by_ref().collect();
    let events = recs
        .iter()
        .filter(|(_, r)| matches!(r, Record::Event(_)))
        .count();
    (hosts, recs, events)
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn analyze_10m_events(b: Bencher) {
    let (hosts, recs, events) = log();
    b.counter(ItemsCount::new(events)).bench_local(|| {
        let mut a = Analyzer::new(Config::default());
        let ids: Vec<HostId> = hosts.iter().map(|(c, n)| a.add_host(n, *c)).collect();
        let mut paths = 0u64;
        for (h, r) in &recs {
            a.push(ids[*h], r);
            while a.pop().is_some() {
                paths += 1;
            }
        }
        a.finish();
        while a.pop().is_some() {
            paths += 1;
        }
        divan::black_box(paths)
    });
}
