//! Raw logs: `vpath record` stores the kernel records as the rings gave them
//! (format 1.3), and the analysis replays them. This module joins the two
//! crates that must not know each other: vpath-log's container and
//! vpath-bpf's record layout and [`Replay`].

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use vpath_bpf::{RawSink, Replay};
use vpath_core::{Checkpoint, Label, Record};
use vpath_io::RawReplay;
use vpath_log::{header_flags, EndStats, LogReader, LogWriter, WriteError};

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

/// `vpath convert`: reads a vpath log (raw or events) through the replay and
/// writes it as an event log. The header is the input's, without the RAW
/// flag. A log that did not end cleanly converts into one that does not
/// either (no End record), and an input error stops the conversion with
/// what came before it written out.
pub fn convert(input: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let c = convert_quiet(input, output)?;
    match &c.cut {
        Some(why) => {
            eprintln!(
                "vpath: converted {} events to {} WITHOUT an end record: {why}",
                c.written,
                output.display()
            );
            Ok(ExitCode::from(2))
        }
        None => {
            eprintln!(
                "vpath: converted {} events to {}",
                c.written,
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What [`convert_quiet`] did.
pub struct Converted {
    pub written: u64,
    /// Why the output has no End record (the input was cut short), if so.
    pub cut: Option<String>,
}

/// A scratch file, removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// [`convert`] without the report on stderr.
pub fn convert_quiet(input: &Path, output: &Path) -> anyhow::Result<Converted> {
    let mut header = LogReader::open(input)?.header().clone();
    header.flags &= !header_flags::RAW;
    header.raw_layout.clear();
    let mut src = vpath_io::open_with(input, Some(replay_for))?;
    if src.info().format != "vlog" && src.info().format != "vlog-raw" {
        anyhow::bail!("{}: not a vpath log", input.display());
    }
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let mut w = LogWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), &header)
        .with_context(|| format!("writing {}", output.display()))?;
    let mut lost = 0;
    let mut failed = None;
    loop {
        match src.next_record() {
            Ok(Some(r)) => {
                if let vpath_core::Record::Checkpoint(cp) = &r {
                    lost = cp.lost_total;
                }
                w.write(&r)
                    .with_context(|| format!("writing {}", output.display()))?;
            }
            Ok(None) => break,
            Err(e) if e.is_fatal() => {
                failed = Some(e);
                break;
            }
            Err(e) => eprintln!("vpath: {e}"),
        }
    }
    let written = w.events_written();
    if failed.is_some() || src.info().clean_end != Some(true) {
        // Written out as it is, without End: the output says the input was
        // cut short, as the input did.
        w.flush()
            .with_context(|| format!("writing {}", output.display()))?;
        drop(w);
        return Ok(Converted {
            written,
            cut: Some(match &failed {
                Some(e) => e.to_string(),
                None => format!("{} did not end cleanly", input.display()),
            }),
        });
    }
    w.finish(EndStats {
        events_emitted: written + lost,
        events_written: written,
        events_lost: lost,
    })
    .with_context(|| format!("finishing {}", output.display()))?;
    Ok(Converted { written, cut: None })
}
