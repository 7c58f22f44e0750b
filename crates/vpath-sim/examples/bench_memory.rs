//! Peak memory of streaming analysis against log length: generates and
//! analyzes N events without holding them, for N in the arguments (default
//! 1 M and 10 M), and prints the analyzer's peak in-flight state and the
//! process's peak RSS (VmHWM) for each, in a fresh child process each.
//! `cargo run --release -p vpath-sim --example bench_memory -- 1000000 10000000`

use std::time::Instant;

use vpath_core::{Analyzer, Config, HostId};
use vpath_sim::big_scenario;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn run(n: usize) {
    let t = Instant::now();
    let mut it = big_scenario(1, n);
    let mut a = Analyzer::new(Config::default());
    let ids: Vec<HostId> = it
        .hosts
        .iter()
        .map(|h| a.add_host(&h.name, h.checkpointed))
        .collect();
    let (mut records, mut paths, mut complete, mut peak) = (0u64, 0u64, 0u64, 0usize);
    for (h, r) in it.by_ref() {
        a.push(ids[h], &r);
        while let Some(p) = a.pop() {
            paths += 1;
            complete += p.complete as u64;
        }
        records += 1;
        if records % 1024 == 0 {
            peak = peak.max(a.in_flight());
        }
    }
    a.finish();
    while let Some(p) = a.pop() {
        paths += 1;
        complete += p.complete as u64;
    }
    println!(
        "events={} paths={paths} complete={complete} expected={} peak_in_flight={peak} peak_rss_kib={} secs={:.1}",
        a.stats().events,
        it.expected_paths(),
        vm_hwm_kib(),
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args
        .first()
        .and_then(|a| a.strip_prefix("--child="))
        .and_then(|s| s.parse().ok())
    {
        run(n);
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000_000, 10_000_000]
    } else {
        args.iter().filter_map(|s| s.parse().ok()).collect()
    };
    let exe = std::env::current_exe().expect("own path");
    for n in sizes {
        let out = std::process::Command::new(&exe)
            .arg(format!("--child={n}"))
            .output()
            .expect("child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
