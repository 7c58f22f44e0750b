//! Measures streaming generation, and with `analyze` the analyzer too:
//! `cargo run --release -p vpath-sim --example big_gen -- [EVENTS] [SEED] [analyze]`.

use std::time::Instant;

use vpath_core::{Analyzer, Config, HostId, Record};
use vpath_sim::big_scenario;

fn main() {
    let mut args = std::env::args().skip(1);
    let target: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let run_analyzer = args.next().is_some_and(|a| a == "analyze");
    let t = Instant::now();
    let mut it = big_scenario(seed, target);
    let hosts = it.hosts.clone();
    let (mut events, mut records) = (0u64, 0u64);
    let mut per_host = vec![0u64; hosts.len()];
    let mut a = Analyzer::new(Config::default());
    let ids: Vec<HostId> = hosts
        .iter()
        .map(|h| a.add_host(&h.name, h.checkpointed))
        .collect();
    let (mut paths, mut complete, mut max_in_flight) = (0u64, 0u64, 0usize);
    for (h, r) in it.by_ref() {
        if run_analyzer {
            a.push(ids[h], &r);
            while let Some(p) = a.pop() {
                paths += 1;
                complete += p.complete as u64;
            }
            if records % 4096 == 0 {
                max_in_flight = max_in_flight.max(a.in_flight());
            }
        }
        records += 1;
        if matches!(r, Record::Event(_)) {
            events += 1;
            per_host[h] += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{events} events ({records} records) in {secs:.2} s = {:.2} M events/s; {} expected paths",
        events as f64 / secs / 1e6,
        it.expected_paths()
    );
    if run_analyzer {
        a.finish();
        while let Some(p) = a.pop() {
            paths += 1;
            complete += p.complete as u64;
        }
        println!(
            "analyzer: {paths} paths, {complete} complete; max in_flight {max_in_flight} (sampled)"
        );
    }
    for (h, n) in hosts.iter().zip(per_host) {
        println!("  {} (checkpointed {}): {n} events", h.name, h.checkpointed);
    }
}
