//! Raw logs: `vpath record` stores the kernel records as the rings gave them
//! (format 1.3), and the analysis replays them. This module joins the two
//! crates that must not know each other: vpath-log's container and
//! vpath-bpf's record layout and [`Replay`].

use std::sync::Arc;

use vpath_bpf::{RawSink, Replay};
use vpath_core::{Checkpoint, Label, Record};
use vpath_io::RawReplay;
use vpath_log::{LogWriter, WriteError};

/// The replay of raw logs, for [`vpath_io::open_with`].
pub fn replay_for(layout: &str) -> Result<Box<dyn RawReplay>, String> {
    let ours = vpath_bpf::raw_layout();
    if layout != ours {
        return Err(format!(
            "this vpath reads {ours:?} only (the log was recorded by another version of vpath)"
        ));
    }
    Ok(Box::new(LogReplay {
        replay: Replay::new(),
        lost: 0,
    }))
}

/// The replay, and the lost total of the last checkpoint (finishing adds
/// no loss).
struct LogReplay {
    replay: Replay,
    lost: u64,
}

impl RawReplay for LogReplay {
    fn record(
        &mut self,
        stream: u32,
        bytes: &[u8],
        label: Option<Arc<Label>>,
        out: &mut dyn FnMut(Record),
    ) -> Result<(), String> {
        self.replay
            .record(stream as usize, bytes, label, &mut |r| out(r))
            .map_err(|e| e.to_string())
    }
    fn checkpoint(&mut self, cp: Checkpoint, out: &mut dyn FnMut(Record)) {
        self.lost = cp.lost_total;
        self.replay
            .checkpoint(cp.ts_ns, cp.lost_total, &mut |r| out(r));
    }
    fn finish(&mut self, clean: bool, out: &mut dyn FnMut(Record)) {
        let last = self.replay.last_checkpoint();
        // A log cut short may miss records of its last poll (another
        // ring's, or the rest of one): what comes after the last checkpoint
        // goes out as touched by loss, so its paths end incomplete.
        let lost = self.lost + u64::from(!clean);
        self.replay.finish(last, lost, &mut |r| out(r));
    }
}

/// The recorder's polls into a raw log. The first write error is kept
/// (and writing stops) in `err`.
pub struct LogSink<W: std::io::Write> {
    pub w: LogWriter<W>,
    pub err: Option<WriteError>,
    /// Socket records written (thread records are not events).
    pub events: u64,
}

impl<W: std::io::Write> RawSink for LogSink<W> {
    fn record(&mut self, ring: usize, kept: &[u8], label: Option<Arc<Label>>) {
        if self.err.is_none() {
            match self.w.write_raw(ring as u32, kept, label.as_ref()) {
                Ok(()) => self.events += u64::from(kept[0] != vpath_bpf::raw::REC_COMM),
                Err(e) => self.err = Some(e),
            }
        }
    }
    fn checkpoint(&mut self, horizon: u64, lost_total: u64) {
        if self.err.is_none() {
            let cp = Checkpoint {
                ts_ns: horizon,
                lost_total,
            };
            if let Err(e) = self.w.write_checkpoint(&cp) {
                self.err = Some(e);
            }
        }
    }
}
