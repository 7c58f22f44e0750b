//! `vpath record` and `vpath live`: the eBPF recorder wired to the binary log
//! or straight to the analyzer.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use vpath_bpf::{CgroupFilter, ContentCapture, Filters, Recorder, RecorderOptions, ThreadPriority};
use vpath_core::{Analyzer, Config, Record};
use vpath_io::sink::render_tree;
use vpath_log::{header_flags, Clock, EndStats, Header, LogWriter};

use crate::rawlog::LogSink;

/// What to capture; shared by `record` and `live`.
#[derive(clap::Args, Clone, Debug)]
pub struct CaptureArgs {
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Only these processes (repeatable). Default: the whole host.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Only processes in this cgroup (v2 path, absolute or relative to /sys/fs/cgroup) and below.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Only this network namespace (inode, as in `ls -L -i /proc/PID/ns/net`).
    #[arg(long)]
    pub netns: Option<u32>,
    /// Only connections with this local or remote port (repeatable).
    #[arg(long = "port")]
    pub ports: Vec<u16>,
    /// Ring buffer memory in bytes, shared by the online CPUs (each has
    /// its own ring, a power of two of at least a page). The reader drains
    /// them every 20 ms, so each CPU's share must hold that CPU's 20 ms
    /// burst (104 bytes per event: 96 and the ring's 8-byte header); drops
    /// are counted and the paths they touch are marked incomplete.
    #[arg(long, default_value_t = 16 << 20)]
    pub ring_bytes: u32,
    /// Opt-in payload capture: keep the first N bytes (at most 8192) of
    /// every message, so spans show full protocol text (URLs, SQL). The log
    /// then holds application data and says so. By default only protocol
    /// labels, read from the first 64 bytes with literals redacted, are kept.
    #[arg(long, value_name = "N")]
    pub payload_bytes: Option<u32>,
    /// Read nothing of what messages carry: no protocol labels either.
    #[arg(long, conflicts_with = "payload_bytes")]
    pub no_content: bool,
    /// Run this command and record until it exits (the whole host is still
    /// recorded, since a workload's tiers often run outside its process tree).
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl CaptureArgs {
    /// What to keep of message contents.
    pub fn content(&self) -> ContentCapture {
        match (self.no_content, self.payload_bytes) {
            (true, _) | (false, Some(0)) => ContentCapture::Off,
            (false, Some(bytes)) => ContentCapture::Payload { bytes },
            (false, None) => ContentCapture::Labels {
                prefix: ContentCapture::DEFAULT_PREFIX,
            },
        }
    }

    fn filters(&self) -> anyhow::Result<Filters> {
        let cgroup = match &self.cgroup {
            Some(p) => Some(
                CgroupFilter::from_path(p).with_context(|| format!("--cgroup {}", p.display()))?,
            ),
            None => None,
        };
        Ok(Filters {
            pids: self.pids.clone(),
            cgroup,
            netns: self.netns,
            ports: self.ports.clone(),
        })
    }
}

/// Why the capture loop stopped.
enum Stop {
    Signal,
    Duration,
    Command(std::process::ExitStatus),
}

/// Runs the capture loop, handing every record to `each`, until a signal,
/// the duration, or the wrapped command ends.
struct Capture {
    rec: Recorder,
    child: Option<Child>,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    _priority: ThreadPriority,
}

impl Capture {
    /// `store`: the records only go to a file, so nothing waits for them:
    /// polls come as rarely as the rings allow (a poll's fixed costs, the
    /// task iterator's visit of every thread first, then recur less).
    fn start(args: &CaptureArgs, store: bool) -> anyhow::Result<Capture> {
        let filters = args.filters()?;
        let mut opts = RecorderOptions {
            ring_bytes: args.ring_bytes,
            content: args.content(),
            ..RecorderOptions::default()
        };
        if store {
            opts.max_poll_interval = Duration::from_millis(250);
            opts.poll_drain_bytes = (args.ring_bytes as usize / 16).max(opts.poll_drain_bytes);
        }
        let rec = Recorder::start(&filters, opts)?;
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())
                .context("installing a signal handler")?;
        }
        let child = match args.command.split_first() {
            Some((cmd, rest)) => Some(
                Command::new(cmd)
                    .args(rest)
                    .spawn()
                    .with_context(|| format!("cannot run {cmd}"))?,
            ),
            None => None,
        };
        let deadline = args
            .duration
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        // This thread drains the ring: keep it from being starved by the
        // workload (after the spawn, which would inherit it).
        let priority = ThreadPriority::raise(ThreadPriority::READER_NICE);
        Ok(Capture {
            rec,
            child,
            deadline,
            stop,
            _priority: priority,
        })
    }

    /// One poll; Some(why) when it is time to stop.
    fn poll(&mut self, each: &mut impl FnMut(Record)) -> anyhow::Result<Option<Stop>> {
        self.poll_with(|rec| rec.poll(each).map(|_| ()))
    }

    /// One poll made by `poll` (of either kind); Some(why) when it is time
    /// to stop.
    fn poll_with(
        &mut self,
        poll: impl FnOnce(&mut Recorder) -> Result<(), vpath_bpf::RecordError>,
    ) -> anyhow::Result<Option<Stop>> {
        poll(&mut self.rec)?;
        if self.stop.load(Ordering::Relaxed) {
            if let Some(c) = self.child.as_mut() {
                // Let the command see the signal too; wait for it below.
                let _ = c.kill();
                let _ = c.wait();
            }
            return Ok(Some(Stop::Signal));
        }
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                return Ok(Some(Stop::Command(st)));
            }
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Some(Stop::Duration));
        }
        Ok(None)
    }
}

/// The last ring record that did not match the layout, if any, as text
/// (read before the recorder stops).
fn last_bad(rec: &Recorder) -> Option<String> {
    rec.last_bad_record().map(|e| e.to_string())
}

/// Says so if any ring record did not match the layout: each was skipped
/// and counted as lost (so the paths it touched end incomplete).
fn report_bad(n: u64, last: Option<String>) {
    if n > 0 {
        eprintln!(
            "vpath: {n} ring records did not match the record layout, were skipped and are counted as lost (last: {})",
            last.as_deref().unwrap_or("in the final drain")
        );
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn exit_of(stop: &Stop) -> ExitCode {
    match stop {
        Stop::Command(st) => match st.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
            None => ExitCode::FAILURE,
        },
        _ => ExitCode::SUCCESS,
    }
}

/// What `vpath record` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The kernel's records as the rings gave them (format 1.3 raw): the
    /// cheapest to record (no parsing, ordering or interning while the
    /// workload runs), about 100 bytes per event; `analyze` replays them.
    Raw,
    /// Parsed, ordered and interned events (format 1.3 events): about 20
    /// bytes per event, at several times the recorder's CPU.
    Events,
}

pub fn record(
    args: &CaptureArgs,
    output: &std::path::Path,
    format: LogFormat,
) -> anyhow::Result<ExitCode> {
    if args.command.is_empty() && args.duration.is_none() {
        eprintln!(
            "vpath: recording until interrupted (Ctrl-C); use --duration S or -- CMD to bound it"
        );
    }
    let mut cap = Capture::start(args, true)?;
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let raw = format == LogFormat::Raw;
    let header = Header {
        host: hostname(),
        wall_minus_mono_ns: cap.rec.clock_offset().wall_minus_mono_ns,
        clock: Clock::Monotonic,
        flags: header_flags::CHECKPOINTED
            | match cap.rec.options().content {
                ContentCapture::Payload { .. } => header_flags::PAYLOADS,
                _ => 0,
            }
            | if raw { header_flags::RAW } else { 0 },
        recorder: format!(
            "vpath {}; {}",
            env!("CARGO_PKG_VERSION"),
            cap.rec.options().content.describe()
        ),
        start_unix_ns,
        raw_layout: if raw {
            vpath_bpf::raw_layout()
        } else {
            String::new()
        },
    };
    let file = crate::direct::LogFile::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let w =
        LogWriter::new(file, &header).with_context(|| format!("writing {}", output.display()))?;
    let t0 = Instant::now();
    let mut sink = LogSink::new(w, !raw);
    let why = loop {
        if let Some(why) = cap.poll_with(|rec| rec.poll_raw(&mut sink).map(|_| ()))? {
            break why;
        }
    };
    let last_bad = last_bad(&cap.rec);
    let counters = cap.rec.stop_raw(&mut sink)?;
    report_bad(counters.records_skipped + sink.skipped, last_bad);
    let (w, written) = sink
        .finish()
        .with_context(|| format!("writing {}", output.display()))?;
    // The End record counts socket records: a raw log's as the kernel made
    // them (a run is one), an event log's as events (a run of several
    // operations is two, so emitted is what was written and lost).
    let lost = counters.events_dropped;
    let emitted = if raw {
        counters.events_emitted
    } else {
        written + lost
    };
    w.finish(EndStats {
        events_emitted: emitted,
        events_written: written,
        events_lost: lost,
    })
    .with_context(|| format!("finishing {}", output.display()))?;
    eprintln!(
        "vpath: recorded {} {} in {:.1} s to {} ({} lost in the kernel{}; {} operations merged into runs; {} that moved no bytes not recorded)",
        written,
        if raw { "records" } else { "events" },
        t0.elapsed().as_secs_f64(),
        output.display(),
        counters.events_dropped,
        if counters.events_dropped > 0 {
            ": paths touched by the loss will be marked incomplete"
        } else {
            ""
        },
        counters.ops_merged,
        counters.ops_without_bytes,
    );
    report_unread(&counters);
    Ok(exit_of(&why))
}

pub fn live(
    args: &CaptureArgs,
    jsonl: bool,
    config: Config,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Some(url) = otlp_endpoint {
        vpath_io::export::otlp::normalize_endpoint(url)?;
    }
    let mut cap = Capture::start(args, false)?;
    let mut a = Analyzer::new(config);
    let host = hostname();
    let h = a.add_host(&host, true);
    // Paths stream to the collector as they complete, from a sender thread
    // (the loop never waits on it); the clock offset is known from the start.
    let mut otlp = match otlp_endpoint {
        Some(url) => {
            let mut clocks = vpath_io::export::Clocks::default();
            clocks.set(&host, cap.rec.clock_offset().wall_minus_mono_ns);
            Some(vpath_io::export::OtlpStream::new(url, clocks)?)
        }
        None => None,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut last = Instant::now();
    let (mut last_events, mut last_paths) = (0u64, 0u64);
    let emit = |a: &mut Analyzer,
                out: &mut dyn Write,
                otlp: &mut Option<vpath_io::export::OtlpStream>|
     -> std::io::Result<()> {
        while let Some(p) = a.pop() {
            if let Some(o) = otlp.as_mut() {
                o.path(&p);
            }
            if jsonl {
                serde_json::to_writer(&mut *out, &p)?;
                out.write_all(b"\n")?;
            } else {
                out.write_all(render_tree(&p).as_bytes())?;
            }
        }
        if let Some(o) = otlp.as_mut() {
            o.tick();
        }
        out.flush()
    };
    let why = loop {
        let why = cap.poll(&mut |r| a.push(h, &r))?;
        emit(&mut a, &mut out, &mut otlp)?;
        if last.elapsed() >= Duration::from_secs(1) {
            let s = a.stats();
            let dt = last.elapsed().as_secs_f64();
            eprintln!(
                "[live] {:.0} events/s, {} lost, {} in flight, {:.1} paths/s ({} complete, {} incomplete so far)",
                (s.events - last_events) as f64 / dt,
                s.lost_events,
                a.in_flight(),
                (s.paths - last_paths) as f64 / dt,
                s.complete_paths,
                s.incomplete_paths
            );
            last_events = s.events;
            last_paths = s.paths;
            last = Instant::now();
        }
        if let Some(why) = why {
            break why;
        }
    };
    let last_bad = last_bad(&cap.rec);
    let counters = cap.rec.stop(&mut |r| a.push(h, &r))?;
    report_bad(counters.records_skipped, last_bad);
    a.finish();
    emit(&mut a, &mut out, &mut otlp)?;
    let s = a.stats();
    eprintln!(
        "[live] done: {} paths ({} complete, {} incomplete), {} events, {} lost in the kernel",
        s.paths, s.complete_paths, s.incomplete_paths, s.events, s.lost_events
    );
    report_unplaced(counters.labels_unplaced);
    report_unread(&counters);
    if let Some(o) = otlp {
        let url = o.url().to_string();
        // What is still queued gets 10 s to reach the collector.
        match o.finish(Duration::from_secs(10)) {
            Ok(r) => eprintln!("[live] {}", r.summary(&url)),
            Err(u) => {
                eprintln!("[live] {}", u.report.summary(&url));
                return Err(u.error.into());
            }
        }
    }
    Ok(exit_of(&why))
}

/// Says how many sockets spoke a protocol the labeler does not know, whose
/// bytes the probes then stopped copying; nothing when none did.
fn report_unread(c: &vpath_bpf::Counters) {
    if c.sockets_unread > 0 {
        eprintln!(
            "vpath: {} sockets spoke no protocol vpath recognizes: the kernel stopped copying their message starts ({} chunks not copied; their spans carry no protocol label)",
            c.sockets_unread, c.chunks_not_copied
        );
    }
}

/// Says how many events lost their message label because the replay could
/// not place them in their message (see `vpath_bpf::Replay`); nothing when
/// none did.
pub fn report_unplaced(n: u64) {
    if n > 0 {
        eprintln!(
            "vpath: {n} events carry no label: their message was written or read by several threads in turn, and the bytes the kernel took could not be placed in it (docs/probes.md, \"Message starts\")"
        );
    }
}
