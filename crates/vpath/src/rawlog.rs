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
    if !vpath_bpf::reads_layout(layout) {
        return Err(format!(
            "this vpath reads {} only (the log was recorded by another version of vpath)",
            vpath_bpf::READ_LAYOUTS
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Box::new(LogReplay::new()))
}

/// The replay, the lost total of the last checkpoint, and that checkpoint
/// itself until the log goes on: the recorder's last poll ends with a
/// checkpoint that releases everything (its stop), so a clean log's last
/// checkpoint is replayed as that finish, and the replay hands out exactly
/// what the live recorder did.
struct LogReplay {
    replay: Replay,
    lost: u64,
    held: Option<Checkpoint>,
}

impl LogReplay {
    fn new() -> LogReplay {
        LogReplay {
            replay: Replay::new(),
            lost: 0,
            held: None,
        }
    }

    fn release_held(&mut self, out: &mut dyn FnMut(Record)) {
        if let Some(cp) = self.held.take() {
            self.replay
                .checkpoint(cp.ts_ns, cp.lost_total, &mut |r| out(r));
        }
    }
}

impl RawReplay for LogReplay {
    fn record(
        &mut self,
        stream: u32,
        bytes: &[u8],
        label: Option<Arc<Label>>,
        out: &mut dyn FnMut(Record),
    ) -> Result<(), String> {
        self.release_held(out);
        self.replay
            .record(stream as usize, bytes, label, &mut |r| out(r))
            .map_err(|e| e.to_string())
    }
    fn checkpoint(&mut self, cp: Checkpoint, out: &mut dyn FnMut(Record)) {
        self.release_held(out);
        self.lost = cp.lost_total;
        self.held = Some(cp);
    }
    fn finish(&mut self, clean: bool, out: &mut dyn FnMut(Record)) {
        self.finish_replay(clean, out);
        crate::capture::report_unplaced(self.replay.unplaced_events());
    }
}

impl LogReplay {
    fn finish_replay(&mut self, clean: bool, out: &mut dyn FnMut(Record)) {
        if clean {
            if let Some(cp) = self.held.take() {
                self.replay.finish(cp.ts_ns, cp.lost_total, &mut |r| out(r));
                return;
            }
        }
        self.release_held(out);
        let last = self.replay.last_checkpoint();
        // A log cut short may miss records of its last poll (another
        // ring's, or the rest of one): what comes after the last checkpoint
        // goes out as touched by loss, so its paths end incomplete.
        let lost = self.lost + u64::from(!clean);
        self.replay.finish(last, lost, &mut |r| out(r));
    }
}

/// The recorder's polls into a log: a raw log as they come, or (`events`)
/// an event log, through the same replay that reads raw logs back. The
/// first write error is kept and writing stops; [`LogSink::finish`]
/// returns it.
pub struct LogSink<W: std::io::Write> {
    w: LogWriter<W>,
    /// For an event log: the replay the records go through.
    replay: Option<LogReplay>,
    err: Option<WriteError>,
    /// Socket records written to a raw log (thread records are not events).
    raw_events: u64,
    /// Records the event log's replay could not parse (counted as lost in
    /// its checkpoints).
    pub skipped: u64,
}

/// Writes `r` unless an earlier write failed.
fn put<W: std::io::Write>(w: &mut LogWriter<W>, err: &mut Option<WriteError>, r: &Record) {
    if err.is_none() {
        if let Err(e) = w.write(r) {
            *err = Some(e);
        }
    }
}

impl<W: std::io::Write> LogSink<W> {
    pub fn new(w: LogWriter<W>, events: bool) -> Self {
        LogSink {
            w,
            replay: events.then(LogReplay::new),
            err: None,
            raw_events: 0,
            skipped: 0,
        }
    }

    /// Ends the stream (an event log's last poll releases everything held,
    /// as the recorder's stop does) and returns the writer and the socket
    /// records (raw) or events written.
    pub fn finish(mut self) -> Result<(LogWriter<W>, u64), WriteError> {
        if let Some(r) = self.replay.as_mut() {
            let (w, err) = (&mut self.w, &mut self.err);
            r.finish(true, &mut |rec| put(w, err, &rec));
        }
        match self.err {
            Some(e) => Err(e),
            None => {
                let n = match self.replay {
                    Some(_) => self.w.events_written(),
                    None => self.raw_events,
                };
                Ok((self.w, n))
            }
        }
    }
}

impl<W: std::io::Write> RawSink for LogSink<W> {
    fn record(&mut self, ring: usize, kept: &[u8], label: Option<Arc<Label>>) {
        if self.err.is_some() {
            return;
        }
        let (w, err) = (&mut self.w, &mut self.err);
        match self.replay.as_mut() {
            Some(r) => {
                if r.record(ring as u32, kept, label, &mut |rec| put(w, err, &rec))
                    .is_err()
                {
                    self.skipped += 1;
                }
            }
            None => match w.write_raw(ring as u32, kept, label.as_ref()) {
                Ok(()) => self.raw_events += u64::from(kept[0] != vpath_bpf::raw::REC_COMM),
                Err(e) => *err = Some(e),
            },
        }
    }
    fn checkpoint(&mut self, horizon: u64, lost_total: u64) {
        let cp = Checkpoint {
            ts_ns: horizon,
            lost_total,
        };
        let (w, err) = (&mut self.w, &mut self.err);
        match self.replay.as_mut() {
            Some(r) => r.checkpoint(cp, &mut |rec| put(w, err, &rec)),
            None => {
                if err.is_none() {
                    if let Err(e) = w.write_checkpoint(&cp) {
                        *err = Some(e);
                    }
                }
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
    use std::os::unix::fs::MetadataExt;
    // Creating the output truncates it: never the input itself.
    if let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(output)) {
        if a.dev() == b.dev() && a.ino() == b.ino() {
            anyhow::bail!(
                "{} and {} are the same file: converting in place would destroy the input",
                input.display(),
                output.display()
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use vpath_bpf::raw::{VpCommEvent, VpSockEvent, AF_INET, REC_COMM, REC_SOCK};
    use vpath_log::{Clock, Header};

    fn sock(ts: u64, cookie: u64, op: u8) -> Vec<u8> {
        VpSockEvent {
            kind: REC_SOCK,
            op,
            flags: vpath_core::flags::SEQ,
            family: AF_INET,
            pid: 10,
            tid: 11,
            ts_ns: ts,
            cookie,
            ret: 7,
            seq: 100,
            sysnr: 1,
            lport: 80,
            rport: 5000,
            laddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            raddr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..VpSockEvent::default()
        }
        .to_bytes()
        .to_vec()
    }

    fn comm(tid: u32) -> Vec<u8> {
        VpCommEvent {
            kind: REC_COMM,
            pid: 10,
            tid,
            ts_ns: 1,
            comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
            ..VpCommEvent::default()
        }
        .to_bytes()
        .to_vec()
    }

    /// A raw log being written to `path`, in this build's layout.
    fn raw_writer(
        path: &std::path::Path,
        opts: vpath_log::WriterOptions,
    ) -> LogWriter<std::fs::File> {
        let header = Header {
            host: "h".into(),
            wall_minus_mono_ns: 0,
            clock: Clock::Monotonic,
            flags: header_flags::CHECKPOINTED | header_flags::RAW,
            recorder: "test".into(),
            start_unix_ns: 0,
            raw_layout: vpath_bpf::raw_layout(),
        };
        LogWriter::with_options(std::fs::File::create(path).unwrap(), &header, opts).unwrap()
    }

    /// One poll: (ring, record) pairs, then the horizon.
    type Poll = (Vec<(usize, Vec<u8>)>, u64);

    /// Two polls of a capture; the last is the recorder's stop (an event
    /// after its horizon included).
    fn polls() -> Vec<Poll> {
        vec![
            (
                vec![
                    (0, comm(11)),
                    (0, sock(10, 1, 1)),
                    (0, sock(30, 1, 2)),
                    (1, sock(20, 2, 1)),
                    (1, sock(40, 2, 2)),
                ],
                25,
            ),
            (vec![(1, sock(35, 2, 1)), (0, sock(50, 1, 1))], 45),
        ]
    }

    /// What the live recorder hands out for these polls.
    fn live() -> Vec<Record> {
        let mut r = Replay::new();
        let mut out = Vec::new();
        let polls = polls();
        for (k, (records, horizon)) in polls.iter().enumerate() {
            for (ring, b) in records {
                r.record(*ring, b, None, &mut |x| out.push(x)).unwrap();
            }
            if k + 1 == polls.len() {
                r.finish(*horizon, 0, &mut |x| out.push(x));
            } else {
                r.checkpoint(*horizon, 0, &mut |x| out.push(x));
            }
        }
        out
    }

    /// The same polls through a raw log and `vpath_io`'s replay; `end`:
    /// whether the log gets its End record.
    fn replayed(end: bool) -> Vec<Record> {
        let path = std::env::temp_dir().join(format!(
            "vpath-rawlog-test-{}-{end}.vlog",
            std::process::id()
        ));
        let mut w = raw_writer(&path, vpath_log::WriterOptions::default());
        for (records, horizon) in polls() {
            for (ring, b) in records {
                w.write_raw(ring as u32, &b, None).unwrap();
            }
            w.write_checkpoint(&Checkpoint {
                ts_ns: horizon,
                lost_total: 0,
            })
            .unwrap();
        }
        if end {
            w.finish(EndStats::default()).unwrap();
        } else {
            w.flush().unwrap();
            drop(w);
        }
        let mut src = vpath_io::open_with(&path, Some(replay_for)).unwrap();
        let mut out = Vec::new();
        while let Some(r) = src.next_record().unwrap() {
            out.push(r);
        }
        std::fs::remove_file(&path).unwrap();
        out
    }

    #[test]
    fn a_raw_log_replays_into_what_the_live_recorder_hands_out() {
        let live = live();
        assert!(live.len() > 8, "{live:?}");
        assert_eq!(replayed(true), live);
    }

    #[test]
    fn a_raw_log_cut_short_counts_a_loss_after_its_last_checkpoint() {
        let got = replayed(false);
        let cps: Vec<&Checkpoint> = got
            .iter()
            .filter_map(|r| match r {
                Record::Checkpoint(c) => Some(c),
                _ => None,
            })
            .collect();
        let last = cps.last().unwrap();
        assert_eq!(last.lost_total, 1, "{got:?}");
        // Every event still comes out, in time order.
        let ts: Vec<u64> = got
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e.ts_ns),
                _ => None,
            })
            .collect();
        assert_eq!(ts, [10, 20, 30, 35, 40, 50]);
    }

    #[test]
    fn a_damaged_raw_log_hands_out_what_came_before_then_the_error() {
        let path =
            std::env::temp_dir().join(format!("vpath-rawlog-cut-{}.vlog", std::process::id()));
        let opts = vpath_log::WriterOptions {
            block_bytes: 200,
            ..Default::default()
        };
        let mut w = raw_writer(&path, opts);
        for i in 0..20u64 {
            w.write_raw(0, &sock(10 + i, 1, 1), None).unwrap();
            if i % 5 == 4 {
                w.write_checkpoint(&Checkpoint {
                    ts_ns: 10 + i,
                    lost_total: 0,
                })
                .unwrap();
            }
        }
        w.finish(EndStats::default()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n * 2 / 3] ^= 0xff; // a checksum catches it
        std::fs::write(&path, &bytes).unwrap();
        let mut src = vpath_io::open_with(&path, Some(replay_for)).unwrap();
        let mut events = 0;
        let err = loop {
            match src.next_record() {
                Ok(Some(Record::Event(_))) => events += 1,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the damage went unnoticed"),
                Err(e) => break e,
            }
        };
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains("checksum"), "{err}");
        // Every event of the undamaged blocks came out before the error,
        // the ones held for ordering included.
        assert!((5..20).contains(&events), "{events}");
        assert_eq!(src.info().clean_end, Some(false));
    }

    #[test]
    fn converting_a_log_onto_itself_is_refused_and_leaves_it_whole() {
        let path =
            std::env::temp_dir().join(format!("vpath-conv-self-{}.vlog", std::process::id()));
        let mut w = raw_writer(&path, vpath_log::WriterOptions::default());
        w.write_raw(0, &sock(10, 1, 1), None).unwrap();
        w.finish(EndStats::default()).unwrap();
        let before = std::fs::read(&path).unwrap();
        // The same file under another name, too.
        let same = std::env::temp_dir()
            .join(".")
            .join(path.file_name().unwrap());
        let e = convert_quiet(&path, &same).err().unwrap().to_string();
        assert!(e.contains("are the same file"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_log_in_another_layout_is_refused_with_both_names() {
        let e = replay_for("vpath-bpf abi 1").err().unwrap();
        assert!(e.contains(&vpath_bpf::raw_layout()), "{e}");
    }
}
