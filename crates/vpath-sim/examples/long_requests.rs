//! Requests longer than the stitch's horizon: `cargo run --release -p vpath-sim --example long_requests -- GAP_MS`.
use vpath_sim::{analyze, diff_paths, generate, SimConfig};

fn main() {
    let gap_ms: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let s = generate(&SimConfig {
        seed: 11,
        services: 5,
        hosts: 3,
        client_threads: 8,
        requests: 500,
        per_connection: true,
        ipv6: true,
        containers: true,
        skew_ns: 2_000_000,
        gap_ns: (gap_ms * 800_000, gap_ms * 1_200_000),
        checkpoint_every: Some(256),
        ..SimConfig::default()
    })
    .unwrap();
    let longest = s
        .expected
        .iter()
        .map(|p| p.root.end_ns - p.root.start_ns)
        .max()
        .unwrap_or(0);
    let (got, stats) = analyze(&s);
    println!(
        "expected {} paths, got {}; longest request {} ms",
        s.expected.len(),
        got.len(),
        longest / 1_000_000
    );
    println!("{stats:?}");
    let d = diff_paths(&s.expected, &got);
    println!("{}", d.render(400));
}
