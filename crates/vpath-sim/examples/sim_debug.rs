//! Debug helper: `cargo run -p vpath-sim --example sim_debug -- SEED [lossy]`
//! prints the lossy report, the truth spans, and the analyzer's paths.

use vpath_sim::{analyze, check_lossy, generate, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let lossy = args.next().is_some_and(|a| a == "lossy");
    let cfg = SimConfig::random(seed, lossy);
    let s = match generate(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("config: {cfg:?}");
    for (i, t) in s.truth.iter().enumerate() {
        println!(
            "truth {i}: path {} parent {:?} {:?} {:?} pid {:?} tid {:?} {}->{} [{}..{}] caller {:?}",
            t.path, t.parent, t.kind, t.host, t.pid, t.tid, t.local, t.remote, t.start_ns, t.end_ns, t.caller
        );
    }
    let (got, stats) = analyze(&s);
    for p in &got {
        println!("got: {}", serde_json::to_string(p).unwrap_or_default());
    }
    println!("stats: {stats:?}");
    println!("{}", check_lossy(&s, &got).render(10));
}
