//! The reader's per-event cost without a kernel: ring-buffer records as the
//! probes write them, parsed (with and without the default labeler), and
//! ordered with checkpoints. Run: `cargo bench -p vpath-bpf --bench parse`.
//!
//! Each benchmark handles `N` records per iteration; divide its time by `N`
//! for the cost per record. The workload mirrors the demo's mix: most
//! records plain operations, one in four a message start with a 64-byte
//! prefix, one in eight a run; one event in a hundred arrives far out of
//! order (a run's first operation, sent when the run ends).

use divan::{black_box, Bencher};
use vpath_bpf::order::Reorder;
use vpath_bpf::raw::{parse_into, VpRunEvent, VpSockEvent, AF_INET, REC_RUN, REC_SOCK};
use vpath_core::content::Labeler;
use vpath_core::{flags, Record};

fn main() {
    divan::main();
}

const N: usize = 4096;

fn sock(i: usize, ts: u64) -> VpSockEvent {
    VpSockEvent {
        kind: REC_SOCK,
        op: 1 + (i % 2) as u8,
        flags: flags::SEQ,
        family: AF_INET,
        pid: 100,
        tid: 100 + (i % 16) as u32,
        netns: 4026531840,
        ts_ns: ts,
        cgroup: 1,
        cookie: 0x1000 + (i % 64) as u64,
        ret: 512,
        seq: (i as u32).wrapping_mul(512),
        sysnr: 1,
        lport: 8000,
        rport: 40000 + (i % 64) as u16,
        data_len: 0,
        data_off: 0,
        laddr: [10, 77, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        raddr: [10, 77, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
}

/// `N` ring-buffer records in arrival order.
fn records() -> Vec<Vec<u8>> {
    const START: &[u8] = b"GET /index.php?title=Page_7 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-";
    (0..N)
        .map(|i| {
            let mut ts = 1_000_000 + i as u64 * 1000;
            if i % 100 == 50 {
                ts -= 500_000; // far back: set aside, merged at release
            }
            let e = sock(i, ts);
            match i % 8 {
                0 | 4 => {
                    let mut e = e;
                    e.data_len = START.len() as u16;
                    let mut b = e.to_bytes().to_vec();
                    b.extend_from_slice(START);
                    b.resize(b.len() + 64, 0);
                    b
                }
                7 => VpRunEvent {
                    e: VpSockEvent {
                        kind: REC_RUN,
                        ret: 4096,
                        ..e
                    },
                    ts_last: ts + 500,
                    count: 5,
                    first_ret: 512,
                }
                .to_bytes()
                .to_vec(),
                _ => e.to_bytes().to_vec(),
            }
        })
        .collect()
}

#[divan::bench]
fn parse_keep_bytes(b: Bencher) {
    let recs = records();
    b.bench_local(|| {
        let mut n = 0u64;
        for r in &recs {
            n += u64::from(parse_into(r, None, &mut |x| drop(black_box(x))).unwrap());
        }
        n
    });
}

#[divan::bench]
fn parse_labels(b: Bencher) {
    let recs = records();
    // One labeler for the whole run, as in the recorder (it keeps state
    // per socket).
    let mut labeler = Labeler::new(64);
    b.bench_local(|| {
        let mut n = 0u64;
        for r in &recs {
            n += u64::from(parse_into(r, Some(&mut labeler), &mut |x| drop(black_box(x))).unwrap());
        }
        n
    });
}

/// Parse with labels, order, and release at one checkpoint: the recorder's
/// whole per-event path ("parsed and ordered" in the demo's dissection).
/// The labeler and the reorder buffer live across iterations, as across
/// polls in the recorder.
#[divan::bench]
fn parse_labels_and_order(b: Bencher) {
    let recs = records();
    let mut labeler = Labeler::new(64);
    let mut order = Reorder::default();
    b.bench_local(|| {
        for r in &recs {
            parse_into(r, Some(&mut labeler), &mut |x| {
                if let Record::Event(e) = x {
                    order.push(e)
                }
            })
            .unwrap();
        }
        let mut out = 0u64;
        order.release(u64::MAX / 2, 0, &mut |x| {
            out += 1;
            drop(black_box(x))
        });
        out
    });
}

/// As `parse_labels_and_order`, with the records of two CPUs in two rings
/// (the recorder's per-CPU rings): each ring parsed apart, then merged into
/// the reorder buffer.
#[divan::bench]
fn parse_labels_and_order_two_rings(b: Bencher) {
    let recs = records();
    let mut rings: [Vec<&Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for (i, r) in recs.iter().enumerate() {
        rings[i % 2].push(r);
    }
    let mut labeler = Labeler::new(64);
    let mut order = Reorder::default();
    let mut events = vec![Vec::new(), Vec::new()];
    b.bench_local(|| {
        for (ring, ev) in rings.iter().zip(&mut events) {
            for r in ring {
                parse_into(r, Some(&mut labeler), &mut |x| {
                    if let Record::Event(e) = x {
                        ev.push(e)
                    }
                })
                .unwrap();
            }
        }
        order.push_merged(&mut events);
        let mut out = 0u64;
        order.release(u64::MAX / 2, 0, &mut |x| {
            out += 1;
            drop(black_box(x))
        });
        out
    });
}
