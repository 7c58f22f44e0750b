//! Self-checks of the simulator (independent of the analyzer).

use proptest::prelude::*;
use vpath_core::{Record, SpanKind};
use vpath_sim::{big_scenario, generate, strategy, validate, Loss, SimConfig};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Byte counts, stream positions, message runs, thread records, ts order
    /// and the expected paths all agree with the events.
    #[test]
    fn lossless_scenarios_validate(cfg in strategy::lossless()) {
        let s = generate(&cfg).unwrap();
        let sum = validate(&s).map_err(|e| TestCaseError::fail(format!("{e}\nconfig: {cfg:?}")))?;
        prop_assert_eq!(s.expected.len(), cfg.requests);
        prop_assert!(sum.data_events > 0);
    }

    /// A lossy stream is the lossless one minus the dropped events, and the
    /// checkpoints count exactly the drops so far.
    #[test]
    fn losses_are_counted_exactly(cfg in strategy::lossy()) {
        let s = generate(&cfg).unwrap();
        validate(&s).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let full = generate(&SimConfig { loss: Some(Loss { drop_ppm: 0 }), ..cfg.clone() }).unwrap();
        for (h, f) in s.hosts.iter().zip(&full.hosts) {
            prop_assert_eq!(&h.name, &f.name);
            let mut fi = f.records.iter().filter_map(|r| match r { Record::Event(e) => Some(e), _ => None });
            let mut dropped = 0u64;
            for r in &h.records {
                match r {
                    Record::Event(e) => loop {
                        let x = fi.next().expect("lossy event not in the lossless stream");
                        if x == e { break; }
                        dropped += 1;
                    },
                    Record::Checkpoint(c) => {
                        // Every event up to c.ts_ns was delivered or counted.
                        let mut ahead = 0;
                        for x in fi.clone() {
                            if x.ts_ns > c.ts_ns { break; }
                            ahead += 1;
                        }
                        prop_assert_eq!(c.lost_total, dropped + ahead, "host {} checkpoint at {}", h.name, c.ts_ns);
                    }
                    Record::Thread(_) => {}
                }
            }
        }
    }
}

fn pods_scenario(seed: u64) -> vpath_sim::Scenario {
    generate(&SimConfig {
        seed,
        services: 6,
        hosts: 1,
        containers: true,
        client_threads: 8,
        requests: 40,
        ..SimConfig::default()
    })
    .unwrap()
}

#[test]
fn pods_reuse_the_same_loopback_tuples_in_different_netns() {
    // Over a few seeds, some connection 4-tuple must appear in two netns.
    let mut found = false;
    for seed in 0..20 {
        let s = pods_scenario(seed);
        validate(&s).unwrap();
        let mut tuples = std::collections::BTreeMap::new();
        for h in &s.hosts {
            for r in &h.records {
                if let Record::Event(e) = r {
                    if e.local.ip().is_loopback() {
                        tuples
                            .entry((e.local, e.remote))
                            .or_insert_with(std::collections::BTreeSet::new)
                            .insert(e.netns);
                    }
                }
            }
        }
        found |= tuples.values().any(|n| n.len() > 1);
    }
    assert!(found, "no 4-tuple shared by two netns in 20 seeds");
}

#[test]
fn features_show_up_in_the_expected_paths() {
    let mut remote = 0;
    let mut origin = 0;
    let mut server_root = 0;
    let mut v6 = 0;
    let mut per_conn = 0;
    for seed in 0..100 {
        let s = generate(&SimConfig::random(seed, false)).unwrap();
        validate(&s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for p in &s.expected {
            match p.root.kind {
                SpanKind::Origin => origin += 1,
                SpanKind::Server => server_root += 1,
                SpanKind::Remote => panic!("remote root"),
            }
            p.root.walk(&mut |sp, _| {
                remote += (sp.kind == SpanKind::Remote) as usize;
                v6 += sp.local.is_ipv6() as usize;
                per_conn +=
                    (sp.pid.is_some() && sp.pid == sp.tid && sp.kind == SpanKind::Server) as usize;
            });
        }
    }
    assert!(remote > 0 && origin > 0 && server_root > 0 && v6 > 0 && per_conn > 0,
        "remote {remote} origin {origin} server roots {server_root} v6 {v6} per-connection {per_conn}");
}

#[test]
fn generation_is_deterministic() {
    let cfg = SimConfig::random(42, true);
    let a = generate(&cfg).unwrap();
    let b = generate(&cfg).unwrap();
    assert_eq!(a.hosts, b.hosts);
    assert_eq!(a.expected, b.expected);
    let c = generate(&SimConfig { seed: 43, ..cfg }).unwrap();
    assert_ne!(a.hosts, c.hosts);
}

#[test]
fn big_scenario_streams_in_order() {
    let mut it = big_scenario(7, 200_000);
    let n_hosts = it.hosts.len();
    let mut last = vec![0u64; n_hosts];
    let mut events = 0usize;
    for (h, r) in it.by_ref() {
        assert!(h < n_hosts);
        if let Record::Event(e) = r {
            assert!(
                e.ts_ns > last[h],
                "host {h}: ts {} after {}",
                e.ts_ns,
                last[h]
            );
            last[h] = e.ts_ns;
            events += 1;
        }
    }
    // Unobserved hosts' events count towards the target but are not output.
    assert!(events >= 150_000, "only {events} events");
    assert!(it.expected_paths() > 1000);
}

#[test]
fn invalid_configs_are_errors_not_panics() {
    let e = generate(&SimConfig {
        gap_ns: (0, 0),
        ..SimConfig::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("gap_ns"));
}

/// The validator must catch corruptions (so that its passing means something).
#[test]
fn validator_catches_corruptions() {
    let cfg = SimConfig {
        seed: 5,
        services: 4,
        requests: 10,
        noise: true,
        ..SimConfig::default()
    };
    let base = generate(&cfg).unwrap();
    validate(&base).unwrap();
    let first_data = |s: &vpath_sim::Scenario, op: vpath_core::Op| -> (usize, usize) {
        for (h, st) in s.hosts.iter().enumerate() {
            for (i, r) in st.records.iter().enumerate() {
                if let Record::Event(e) = r {
                    if e.op == op && e.is_data() {
                        return (h, i);
                    }
                }
            }
        }
        panic!("no data event")
    };
    type Mutation = Box<dyn Fn(&mut vpath_sim::Scenario)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "seq",
            Box::new(move |s| {
                let (h, i) = first_data(s, vpath_core::Op::Recv);
                if let Record::Event(e) = &mut s.hosts[h].records[i] {
                    e.seq = e.seq.wrapping_add(1)
                }
            }),
        ),
        (
            "bytes",
            Box::new(move |s| {
                let (h, i) = first_data(s, vpath_core::Op::Send);
                if let Record::Event(e) = &mut s.hosts[h].records[i] {
                    e.ret += 1
                }
            }),
        ),
        ("span bytes", Box::new(|s| s.expected[0].root.bytes_in += 1)),
        ("span start", Box::new(|s| s.expected[0].root.start_ns += 1)),
        (
            "child order",
            Box::new(|s| {
                let p = s
                    .expected
                    .iter_mut()
                    .find(|p| {
                        p.root.children.iter().any(|c| {
                            c.children.len() >= 2
                                && c.children[0].bytes_in != c.children[1].bytes_in
                        })
                    })
                    .expect("a span with two calls");
                let c = p
                    .root
                    .children
                    .iter_mut()
                    .find(|c| c.children.len() >= 2)
                    .unwrap();
                c.children.swap(0, 1);
            }),
        ),
        (
            "dropped path",
            Box::new(|s| {
                s.expected.pop();
            }),
        ),
        (
            "thread record",
            Box::new(|s| {
                let i = s.hosts[0]
                    .records
                    .iter()
                    .position(|r| matches!(r, Record::Thread(_)))
                    .unwrap();
                s.hosts[0].records.remove(i);
            }),
        ),
        (
            "ts order",
            Box::new(move |s| {
                let (h, i) = first_data(s, vpath_core::Op::Send);
                if let Record::Event(e) = &mut s.hosts[h].records[i] {
                    e.ts_ns += 10_000_000_000
                }
            }),
        ),
    ];
    for (name, m) in mutations {
        let mut s = base.clone();
        m(&mut s);
        assert!(validate(&s).is_err(), "mutation {name} not caught");
    }
}
