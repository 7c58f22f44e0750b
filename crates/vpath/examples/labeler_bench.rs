//! What the recorder's labeler costs on a real capture: replays a raw log
//! recorded with payload capture (`vpath record --format raw
//! --payload-bytes 64`), takes the message starts its events carry, and runs
//! them through `Labeler` the way the recorder does, several times.
//!
//!   cargo run --release -p vpath --example labeler_bench -- LOG [ROUNDS]
//!
//! Prints ns per labelled event and how many readings were new (parsed)
//! versus reused.

use std::time::Instant;

use vpath_bpf::Replay;
use vpath_core::content::Labeler;
use vpath_core::{Data, Event, Record};
use vpath_log::{Item, LogReader};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: labeler_bench LOG [ROUNDS]"))?;
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mut reader = LogReader::open(&path)?;
    anyhow::ensure!(reader.header().is_raw(), "{path}: not a raw log");
    let mut replay = Replay::new();
    let mut events: Vec<Event> = Vec::new();
    let mut keep = |r: Record| {
        if let Record::Event(e) = r {
            events.push(e);
        }
    };
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Raw(x) => {
                let _ = replay.record(x.stream as usize, x.bytes, x.label, &mut keep);
            }
            Item::Record(Record::Checkpoint(cp)) => {
                replay.checkpoint(cp.ts_ns, cp.lost_total, &mut keep);
            }
            Item::Record(_) => {}
        }
    }
    replay.finish(0, 0, &mut keep);
    // In ring order per CPU is what the recorder sees; time order is close.
    let with_bytes = events
        .iter()
        .filter(|e| matches!(e.data.as_deref(), Some(Data::Bytes { .. })))
        .count();
    anyhow::ensure!(
        with_bytes > 0,
        "{path}: no message bytes (record with --payload-bytes 64)"
    );
    let mut best = f64::MAX;
    let mut labelled = 0;
    let mut parsed = 0;
    for _ in 0..rounds {
        let mut batch = events.clone();
        let mut l = Labeler::new(64);
        let t = Instant::now();
        for e in &mut batch {
            l.apply(e);
        }
        let ns = t.elapsed().as_nanos() as f64 / with_bytes as f64;
        best = best.min(ns);
        parsed = l.parsed();
        labelled = batch
            .iter()
            .filter(|e| matches!(e.data.as_deref(), Some(Data::Label(_))))
            .count();
    }
    println!(
        "{} events, {} with message bytes, {} labelled, {} parsed; labeler {:.0} ns per event with bytes (best of {} rounds)",
        events.len(),
        with_bytes,
        labelled,
        parsed,
        best,
        rounds
    );
    Ok(())
}
