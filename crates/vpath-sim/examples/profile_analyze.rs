//! Analyzer-only timing on a pre-generated log: `cargo run --release -p vpath-sim --example profile_analyze -- [EVENTS]`.
use std::time::Instant;
use vpath_core::{Analyzer, Config, HostId, Record};
use vpath_sim::big_scenario;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
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
    let t = Instant::now();
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
    let s = t.elapsed().as_secs_f64();
    println!(
        "{events} events, {paths} paths in {s:.3} s: {:.2} M events/s",
        events as f64 / s / 1e6
    );
}
