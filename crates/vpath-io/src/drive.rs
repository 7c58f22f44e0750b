//! The analysis loop: merge sources by time, feed the analyzer, hand
//! completed paths to sinks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use vpath_core::{Analyzer, Config, HostId, Record};

use crate::sink::{RunInfo, Sink};
use crate::source::{Source, SourceError};

fn ts_of(r: &Record) -> Option<u64> {
    match r {
        Record::Event(e) => Some(e.ts_ns),
        Record::Checkpoint(c) => Some(c.ts_ns),
        Record::Thread(_) => None,
    }
}

/// Runs the analysis over `sources` (one host each), feeding the records of
/// all hosts in order of their common-clock time so that memory stays
/// bounded by in-flight work. Errors are handed to `on_error` as they occur;
/// a source goes on after an error that is not fatal. Returns what the run saw.
pub fn analyze(
    mut sources: Vec<Box<dyn Source>>,
    config: Config,
    sink: &mut dyn Sink,
    on_error: &mut dyn FnMut(&SourceError),
) -> std::io::Result<RunInfo> {
    let mut a = Analyzer::new(config);
    let mut ids: Vec<HostId> = Vec::with_capacity(sources.len());
    let mut offsets = Vec::with_capacity(sources.len());
    for s in &sources {
        let i = s.info();
        let id = a.add_host(&i.host, i.checkpointed);
        a.set_clock_offset(id, i.wall_minus_mono_ns);
        ids.push(id);
        offsets.push(i.wall_minus_mono_ns);
    }
    // Each source's next record, keyed by common-clock time.
    let mut heads: Vec<Option<Record>> = vec![None; sources.len()];
    let mut heap = BinaryHeap::new();
    let refill = |k: usize,
                  src: &mut dyn Source,
                  heads: &mut Vec<Option<Record>>,
                  heap: &mut BinaryHeap<Reverse<(u64, usize)>>,
                  a: &mut Analyzer,
                  on_error: &mut dyn FnMut(&SourceError)| {
        loop {
            match src.next_record() {
                Ok(Some(r)) => match ts_of(&r) {
                    Some(ts) => {
                        let common =
                            (ts as i128 + offsets[k] as i128).clamp(0, u64::MAX as i128) as u64;
                        heads[k] = Some(r);
                        heap.push(Reverse((common, k)));
                        return;
                    }
                    None => a.push(ids[k], &r),
                },
                Ok(None) => {
                    a.end_host(ids[k]);
                    return;
                }
                Err(e) => {
                    on_error(&e);
                    if e.is_fatal() {
                        a.end_host(ids[k]);
                        return;
                    }
                }
            }
        }
    };
    for (k, s) in sources.iter_mut().enumerate() {
        refill(k, s.as_mut(), &mut heads, &mut heap, &mut a, on_error);
    }
    while let Some(Reverse((_, k))) = heap.pop() {
        let r = heads[k].take().expect("a head for every heap entry");
        a.push(ids[k], &r);
        while let Some(p) = a.pop() {
            sink.path(&p)?;
        }
        refill(
            k,
            sources[k].as_mut(),
            &mut heads,
            &mut heap,
            &mut a,
            on_error,
        );
    }
    a.finish();
    while let Some(p) = a.pop() {
        sink.path(&p)?;
    }
    let info = RunInfo {
        sources: sources.iter().map(|s| s.info().clone()).collect(),
        stats: a.stats().clone(),
    };
    sink.finish(&info)?;
    Ok(info)
}
