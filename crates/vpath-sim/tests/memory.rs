//! Property 3: the analyzer's in-flight state stays bounded on a long run
//! with bounded concurrency, independent of the run's length.

use vpath_core::Config;
use vpath_sim::{analyze_with, generate, Scenario, SimConfig};

fn scenario(requests: usize, gap_ns: (u64, u64)) -> Scenario {
    generate(&SimConfig {
        seed: 11,
        services: 5,
        hosts: 3,
        client_threads: 8,
        requests,
        per_connection: true,
        ipv6: true,
        containers: true,
        skew_ns: 2_000_000,
        gap_ns,
        checkpoint_every: Some(256),
        ..SimConfig::default()
    })
    .unwrap()
}

fn max_in_flight(s: &Scenario) -> (usize, u64) {
    let mut max = 0;
    let (paths, _) = analyze_with(s, Config::default(), |a, _| max = max.max(a.in_flight()));
    assert_eq!(
        paths.len(),
        s.expected.len(),
        "the analyzer must emit every path for this test to mean anything"
    );
    (max, paths.len() as u64)
}

/// The longest request (root span), in stream time.
fn longest_ns(s: &Scenario) -> u64 {
    s.expected
        .iter()
        .map(|p| p.root.end_ns - p.root.start_ns)
        .max()
        .unwrap_or(0)
}

#[test]
fn in_flight_is_bounded_independent_of_length() {
    // About 0.3 ms per event: a run spans many 5 s horizons while requests
    // (queueing at small worker pools included) stay well below one.
    let gap = (50_000, 550_000);
    let short = scenario(1000, gap);
    let long = scenario(4000, gap);
    for s in [&short, &long] {
        assert!(
            longest_ns(s) < 2_000_000_000,
            "precondition: a request took {} ms",
            longest_ns(s) / 1_000_000
        );
    }
    let (m_short, _) = max_in_flight(&short);
    let (m_long, _) = max_in_flight(&long);
    let span_ns = |s: &Scenario| {
        let ts: Vec<u64> = s
            .hosts
            .iter()
            .flat_map(|h| h.records.iter())
            .filter_map(|r| match r {
                vpath_core::Record::Event(e) => Some(e.ts_ns),
                _ => None,
            })
            .collect();
        ts.iter().max().unwrap() - ts.iter().min().unwrap()
    };
    println!(
        "short: {} events over {} s, max in_flight {m_short}; long: {} events over {} s, max in_flight {m_long}",
        short.events(),
        span_ns(&short) / 1_000_000_000,
        long.events(),
        span_ns(&long) / 1_000_000_000
    );
    assert!(
        m_long <= m_short + m_short / 2 + 64,
        "in_flight grows with length: {m_short} -> {m_long}"
    );
    // A loose absolute bound in terms of concurrency: 8 client threads, each
    // request at most 1 + 3 + 9 + 27 spans, over the horizon's worth of requests.
    assert!(m_long <= 8 * 40 * 20, "in_flight {m_long}");
}
