//! Arbitrary and damaged input: never a panic, labels always well formed, and random bytes
//! (almost) never recognized.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use vpath_proto::{
    parse_request, parse_request_as, parse_response, Label, Protocol, Redact, MAX_VALUE,
};

fn check(l: &Option<Label>) {
    if let Some(l) = l {
        assert!(!l.name.is_empty());
        assert!(l.name.len() <= MAX_VALUE + 64, "{}", l.name.len());
        for w in l.attrs.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "attributes not sorted or repeated: {:?}",
                l.attrs
            );
        }
        for (k, v) in &l.attrs {
            assert!(v.len() <= MAX_VALUE, "{k}: {} bytes", v.len());
        }
    }
}

fn all_parses(b: &[u8]) {
    for redact in [Redact::None, Redact::Literals] {
        check(&parse_request(b, redact));
        for p in Protocol::ALL {
            check(&parse_request_as(b, p, redact));
        }
    }
    check(&parse_response(b, None));
    for p in Protocol::ALL {
        check(&parse_response(b, Some(p)));
    }
}

fn real_samples() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "bin") {
                    out.push(std::fs::read(f).unwrap());
                }
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("VPATH_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        all_parses(&b);
    }

    /// Real messages with a few bytes changed, cut anywhere, or with bytes appended.
    #[test]
    fn damaged_real_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let samples = real_samples();
        let mut b = samples[pick.index(samples.len())].clone();
        for (at, v) in edits {
            if !b.is_empty() {
                let i = at.index(b.len());
                b[i] = v;
            }
        }
        b.truncate(cut.index(b.len() + 1));
        all_parses(&b);
        b.extend_from_slice(&tail);
        all_parses(&b);
    }
}

/// A tiny deterministic generator (xorshift64*), so that the measured rates are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random bytes of random lengths (1..=128): how many are taken for each protocol. MySQL and
/// PostgreSQL must never be claimed; all protocols together, rarely.
#[test]
fn random_bytes_are_mostly_not_recognized() {
    const N: usize = 300_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut req: BTreeMap<&str, usize> = BTreeMap::new();
    let mut resp: BTreeMap<&str, usize> = BTreeMap::new();
    let mut buf = [0u8; 128];
    for _ in 0..N {
        let len = 1 + (rng.next() % 128) as usize;
        for c in buf[..len].iter_mut() {
            *c = rng.next() as u8;
        }
        let b = &buf[..len];
        if let Some(l) = parse_request(b, Redact::Literals) {
            *req.entry(l.protocol.name()).or_default() += 1;
        }
        if let Some(l) = parse_response(b, None) {
            *resp.entry(l.protocol.name()).or_default() += 1;
        }
    }
    let total_req: usize = req.values().sum();
    let total_resp: usize = resp.values().sum();
    println!("{N} random inputs of 1..=128 bytes: requests recognized {total_req} {req:?}, responses (request unknown) {total_resp} {resp:?}");
    for p in ["mysql", "postgresql"] {
        assert_eq!(req.get(p), None, "random bytes taken for {p} requests");
        assert_eq!(resp.get(p), None, "random bytes taken for {p} responses");
    }
    assert!(total_req * 10_000 < N, "{total_req} of {N}");
    assert!(total_resp * 10_000 < N, "{total_resp} of {N}");
}

/// Random bytes behind a valid-looking start (a MySQL COM_QUERY header, a PostgreSQL 'Q' header,
/// a FastCGI BEGIN_REQUEST...): the structure checks past the first bytes reject most of them.
#[test]
fn random_bodies_behind_real_headers_are_mostly_rejected() {
    let heads: [(&str, &[u8]); 5] = [
        ("mysql COM_QUERY", &[0x40, 0, 0, 0, 0x03]),
        ("mysql login", &[0x40, 0, 0, 1]),
        ("postgresql Q", b"Q\x00\x00\x00\x40"),
        ("postgresql P", b"P\x00\x00\x00\x40"),
        ("memcached binary", &[0x80, 0x00]),
    ];
    let mut rng = Rng(42);
    for (what, head) in heads {
        let mut taken = 0;
        for _ in 0..20_000 {
            let mut b = head.to_vec();
            for _ in 0..60 {
                b.push(rng.next() as u8);
            }
            if parse_request(&b, Redact::Literals).is_some() {
                taken += 1;
            }
        }
        println!("{what} + 60 random bytes: {taken} of 20000 recognized");
        assert!(taken < 20, "{what}: {taken}");
    }
}

/// A huge message costs no more than its label: values are capped.
#[test]
fn huge_input_gives_bounded_values() {
    let mut q = b"SELECT '".to_vec();
    q.extend(std::iter::repeat_n(b'x', 1 << 20));
    q.extend_from_slice(b"' FROM t");
    let mut m = ((q.len() + 1) as u32).to_le_bytes()[..3].to_vec();
    m.extend_from_slice(&[0, 3]);
    m.extend_from_slice(&q);
    let l = parse_request(&m, Redact::None).unwrap();
    assert!(!l.truncated);
    check(&Some(l));
    let l = parse_request(&m[..200_000], Redact::Literals).unwrap();
    assert!(l.truncated);
    check(&Some(l));
    let mut h = b"GET /".to_vec();
    h.extend(std::iter::repeat_n(b'a', 100_000));
    let l = parse_request(&h, Redact::None).unwrap();
    assert!(l.attrs.iter().all(|(_, v)| v.len() <= MAX_VALUE));
}
