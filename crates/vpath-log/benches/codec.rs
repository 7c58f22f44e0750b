//! Encode and decode throughput on a recorder-like workload.
//! Run: `cargo bench -p vpath-log --bench codec`

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use vpath_core::Record;
use vpath_log::{synth, Clock, EndStats, Header, LogReader, LogWriter};

const N: usize = 200_000;

fn header() -> Header {
    Header {
        host: "bench".into(),
        wall_minus_mono_ns: 1_700_000_000_000_000_000,
        clock: Clock::Monotonic,
        flags: vpath_log::header_flags::CHECKPOINTED,
        recorder: "bench 0".into(),
        start_unix_ns: 1_700_000_000_000_000_000,
        raw_layout: String::new(),
    }
}

fn encode(recs: &[Record]) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::with_capacity(recs.len() * 16), &header()).expect("header");
    for r in recs {
        w.write(r).expect("write");
    }
    let n = w.events_written();
    w.finish(EndStats {
        events_emitted: n,
        events_written: n,
        events_lost: 0,
    })
    .expect("finish")
}

fn events(recs: &[Record]) -> usize {
    recs.iter()
        .filter(|r| matches!(r, Record::Event(_)))
        .count()
}

#[divan::bench]
fn write(b: Bencher) {
    let recs = synth::workload(N, 42);
    let n = events(&recs);
    b.counter(ItemsCount::new(n))
        .bench(|| black_box(encode(black_box(&recs))).len());
}

#[divan::bench]
fn read(b: Bencher) {
    let recs = synth::workload(N, 42);
    let n = events(&recs);
    let bytes = encode(&recs);
    eprintln!(
        "\n{} events in {} bytes: {:.2} bytes/event",
        n,
        bytes.len(),
        bytes.len() as f64 / n as f64
    );
    b.counter(ItemsCount::new(n)).bench(|| {
        let mut r = LogReader::new(black_box(&bytes[..])).expect("header");
        let mut k = 0u64;
        while let Some(rec) = r.next_record().expect("read") {
            if let Record::Event(e) = rec {
                k = k.wrapping_add(e.ts_ns);
            }
        }
        assert!(r.end().is_some());
        k
    });
}

fn main() {
    divan::main();
}
