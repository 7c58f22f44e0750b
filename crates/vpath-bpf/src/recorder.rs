//! Loads the embedded BPF object, attaches it, and turns the per-CPU ring
//! buffers into ordered [`Record`]s with loss checkpoints.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{Array, ArrayOfMaps, HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::{
    BtfTracePoint, Iter, RawTracePoint, RawTracePointRunOptions, TestRun, TracePoint,
};
use aya::{Btf, Ebpf, EbpfLoader};
use std::sync::Arc;
use vpath_core::content::Labeler;
use vpath_core::{Checkpoint, Label, Record};

use crate::clock::{monotonic_ns, ClockOffset};
use crate::error::{classify_errno, errno_in_chain, missing_caps, parse_cap_eff};
use crate::raw::{self, RawError};
use crate::replay::{Replay, ReplayStats};
use crate::{Filters, RecordError};

/// The kernel side, built by scripts/build-bpf.sh from bpf/vpath.bpf.c.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/vpath.bpf.o");

/// Where the kernel exposes its BTF.
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
/// Where tracefs must be mounted for the accept tracepoints (attached only
/// with a pid or cgroup filter).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// BTF tracepoints: (program, tracepoint).
const BTF_PROGRAMS: [(&str, &str); 7] = [
    ("vp_task_rename", "task_rename"),
    ("vp_cgroup_attach", "cgroup_attach_task"),
    ("vp_exec", "sched_process_exec"),
    ("vp_exit", "sched_process_exit"),
    ("vp_state", "inet_sock_set_state"),
    ("vp_send", "sock_send_length"),
    ("vp_recv", "sock_recv_length"),
];
/// Classic tracepoints: (program, category, name). Attached only with a pid
/// or cgroup filter: the accepts' threads are then known, which the filters
/// need. Without, `vp_state` reports passive opens unattributed (see
/// bpf/vpath.bpf.c).
const TP_PROGRAMS: [(&str, &str, &str); 2] = [
    ("vp_accept4_exit", "syscalls", "sys_exit_accept4"),
    ("vp_accept_exit", "syscalls", "sys_exit_accept"),
];

/// The task iterator that closes every thread's open run (bpf/vpath.bpf.c).
/// The reader runs it at every poll; it is not a probe.
pub const FLUSH_PROGRAM: &str = "vp_flush_iter";
/// The program that puts a CPU's batch of records in its ring: the reader
/// runs it on every online CPU at every poll (`BPF_PROG_TEST_RUN` with
/// `BPF_F_TEST_RUN_ON_CPU`); it is never attached.
pub const BATCH_PROGRAM: &str = "vp_flush_batch";

/// How the recorder runs.
#[derive(Clone, Debug)]
pub struct RecorderOptions {
    /// Ring buffer memory in bytes, the online CPUs together: a power of
    /// two, at least a page. Each online CPU gets its own ring of
    /// `ring_bytes / online CPUs`; a CPU that is possible but offline gets
    /// the smallest ring; every ring holds at least four of the largest
    /// records (see [`ring_sizes`]; with batches, a batch of 4.6 KiB).
    /// Each socket event takes 96 bytes in a batch (plus message bytes,
    /// padded to 8; a batch adds 24 bytes of headers) or 104 on its own
    /// (96 + the ring's 8-byte header), a run of merged operations 120.
    pub ring_bytes: u32,
    /// The shortest wait of [`Recorder::poll`] after the previous poll.
    /// Events never wake the reader (BPF_RB_NO_WAKEUP).
    pub poll_interval: Duration,
    /// The longest: while polls drain little, the wait doubles up to this
    /// (a poll's fixed costs, mostly the task iterator's visit of every
    /// thread on the host, then recur less often); when they drain much, or
    /// a ring gets a quarter full, it halves back (see
    /// [`next_poll_interval`]). Equal to `poll_interval`: a fixed period.
    pub max_poll_interval: Duration,
    /// A poll that drains more than this (all rings together) makes the
    /// next one come sooner, one that drains less than half of it lets the
    /// next wait longer (see [`next_poll_interval`]). Small for a reader that
    /// parses (its data is warmer sooner) or feeds a live analysis; large
    /// for one that only stores the records (`vpath record`), whose cost is
    /// mostly per poll.
    pub poll_drain_bytes: usize,
    /// A checkpoint covers events up to `now - margin`: time for a probe
    /// that took its timestamp to reserve and submit its record.
    pub checkpoint_margin: Duration,
    /// Exclude the recorder's own process (default). Its own TCP traffic
    /// would otherwise feed back into the trace; tests that trace
    /// themselves turn this off and filter by port instead.
    pub exclude_self: bool,
    /// Overhead dissection only: the probes run their filters and return,
    /// so nothing reaches the ring ("events caught" stage). Never set for a
    /// real capture: every event is silently missing.
    pub discard_in_kernel: bool,
    /// What is kept of the first bytes of each message.
    pub content: ContentCapture,
}

/// What the recorder keeps of the application bytes at the start of each
/// message (consecutive data operations in one direction on one socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCapture {
    /// Nothing is read.
    Off,
    /// The default: the kernel copies the first `prefix` bytes of each
    /// message, the recorder reads them into a protocol label with literals
    /// redacted (`vpath_core::content::Labeler`) and drops the bytes.
    Labels { prefix: u32 },
    /// Opt-in payload capture: the first `bytes` bytes of each message are
    /// kept as they are (and the log says so).
    Payload { bytes: u32 },
}

impl ContentCapture {
    /// The built-in prefix that protocol labels are read from.
    pub const DEFAULT_PREFIX: u32 = 64;
    /// The most bytes of a message the kernel copies (VP_DATA_MAX).
    pub const MAX_BYTES: u32 = raw::DATA_MAX;

    /// Bytes the kernel copies at the start of each message.
    pub fn kernel_bytes(self) -> u32 {
        match self {
            ContentCapture::Off => 0,
            ContentCapture::Labels { prefix } => prefix,
            ContentCapture::Payload { bytes } => bytes,
        }
    }

    /// How the recorder describes this in a log header.
    pub fn describe(self) -> String {
        match self {
            ContentCapture::Off => "no message content".into(),
            ContentCapture::Labels { prefix } => {
                format!("protocol labels from the first {prefix} bytes of each message")
            }
            ContentCapture::Payload { bytes } => {
                format!("payloads: the first {bytes} bytes of each message")
            }
        }
    }
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            ring_bytes: 16 << 20,
            poll_interval: Duration::from_millis(20),
            max_poll_interval: Duration::from_millis(100),
            poll_drain_bytes: 256 << 10,
            checkpoint_margin: Duration::from_millis(2),
            exclude_self: true,
            discard_in_kernel: false,
            content: ContentCapture::Labels {
                prefix: ContentCapture::DEFAULT_PREFIX,
            },
        }
    }
}

/// The kernel's per-CPU counters, summed. `*_emitted` counts every record a
/// probe produced, including the dropped ones: delivered = emitted - dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Socket records the probes produced (including dropped ones): one per
    /// operation, or one per run of merged operations.
    pub events_emitted: u64,
    pub events_dropped: u64,
    pub comms_emitted: u64,
    pub comms_dropped: u64,
    /// Operations merged into the run record of an earlier one.
    pub ops_merged: u64,
    /// Sends and receives that moved no bytes (EAGAIN, EOF, errors) or
    /// peeked: counted, not recorded (the analyzer has no use for them).
    pub ops_without_bytes: u64,
    /// Events the reader made beyond one per record: a run of several
    /// operations becomes two (its first operation and the rest). Events
    /// handed out = `events_emitted - events_dropped + run_rest_events`.
    pub run_rest_events: u64,
    /// Ring records that did not match the record layout: skipped, and
    /// counted as lost in every checkpoint after them.
    pub records_skipped: u64,
    /// Events whose message bytes (or label) the reader dropped: the kernel
    /// could not place them in their message and they did not begin one
    /// (a message several threads wrote or read in turn; see `Replay`).
    pub labels_unplaced: u64,
    /// Sockets whose protocol the labeler did not recognize (several
    /// messages in a row, none ever): the probes were told to stop copying
    /// their bytes, which it no longer reads.
    pub sockets_unread: u64,
    /// Message chunks the probes did not copy for that reason.
    pub chunks_not_copied: u64,
}

impl Counters {
    /// Events handed out (or to be handed out) by the reader.
    pub fn events_delivered(&self) -> u64 {
        self.events_emitted.saturating_sub(self.events_dropped) + self.run_rest_events
    }

    /// Events the probes produced, counting a run of several operations as
    /// the two events it becomes: delivered + dropped.
    pub fn events_produced(&self) -> u64 {
        self.events_emitted + self.run_rest_events
    }
}

/// While alive, the kernel accounts the run time of every BPF program on the
/// host (BPF_ENABLE_STATS; released with the guard, like
/// `kernel.bpf_stats_enabled`). It costs each program run two clock reads,
/// so measurements of throughput should not hold one.
pub struct ProbeStats(#[allow(dead_code)] std::os::fd::OwnedFd);

impl ProbeStats {
    pub fn enable() -> Result<ProbeStats, RecordError> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(ProbeStats)
            .map_err(|e| RecordError::Map {
                map: "programs",
                what: format!(
                    "enabling run-time statistics (BPF_ENABLE_STATS, needs CAP_SYS_ADMIN): {e}"
                ),
            })
    }
}

/// What one poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollStats {
    /// Socket events read from the ring during this poll.
    pub events_read: u64,
    /// Socket events handed out (ordered; some may have been read earlier).
    pub events_out: u64,
    /// Thread records handed out.
    pub threads_out: u64,
    /// Records that did not parse (skipped; see [`Recorder::last_bad_record`]).
    pub bad_records: u64,
    /// Events handed out with a timestamp at or before an earlier checkpoint
    /// (a probe slower than the margin): the analyzer sees them late.
    pub late_events: u64,
    /// Events held back for ordering (timestamp after the checkpoint).
    pub held: u64,
    /// The checkpoint this poll emitted.
    pub checkpoint: Checkpoint,
    /// Counter values read for the checkpoint.
    pub counters: Counters,
}

impl PollStats {
    fn apply(&mut self, r: ReplayStats) {
        self.events_read = r.events_read;
        self.bad_records += r.bad_records;
        self.events_out = r.released.events_out;
        self.late_events = r.released.late_events;
        self.held = r.released.held;
        self.checkpoint = r.checkpoint;
    }

    fn new(counters: Counters) -> PollStats {
        PollStats {
            events_read: 0,
            events_out: 0,
            threads_out: 0,
            bad_records: 0,
            late_events: 0,
            held: 0,
            checkpoint: Checkpoint {
                ts_ns: 0,
                lost_total: counters.events_dropped,
            },
            counters,
        }
    }
}

/// In-kernel run statistics of one program (counted only while
/// `kernel.bpf_stats_enabled` is 1 or a [`ProbeStats`] guard is alive).
/// They exclude the tracepoint's own dispatch around each run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

impl ProgramStats {
    /// Mean in-kernel nanoseconds per run.
    pub fn ns_per_run(&self) -> f64 {
        if self.run_count == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.run_count as f64
        }
    }
}

/// A running capture. Dropping it detaches everything; [`Recorder::stop`]
/// also hands out what is still buffered.
pub struct Recorder {
    ebpf: Option<Ebpf>,
    /// One ring per possible CPU, index = CPU (the kernel's RINGS).
    rings: Vec<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    /// Orders what the rings give (see [`Replay`]).
    replay: Replay,
    /// Turns message starts into labels (the default content capture).
    labeler: Option<Labeler>,
    next_tick: Instant,
    /// The current wait between polls.
    interval: Duration,
    /// Each ring's size in bytes (index = CPU).
    ring_sizes: Vec<u32>,
    opts: RecorderOptions,
    clock: ClockOffset,
    /// The last record the reader could not take out of a ring.
    last_bad: Option<RawError>,
    /// Ring records that could not be taken, since the start: counted as
    /// lost in every checkpoint (events the analysis will not see).
    bad_total: u64,
    /// The link of [`FLUSH_PROGRAM`]; each poll reads a fresh iterator.
    flush_link: OwnedFd,
    /// The CPUs whose batches each poll flushes ([`BATCH_PROGRAM`]): those
    /// online at the start.
    online: Vec<u32>,
    /// With protocol labels: the sockets whose bytes the labeler does not
    /// read, told to the probes.
    no_content: Option<NoContent>,
}

/// The sockets whose bytes the labeler does not read, for the probes to
/// stop copying them (NO_CONTENT), and how many are in it (NO_CONTENT_N:
/// the probes look only when any are). A hint: a failed update only costs
/// copies nobody reads (and the map is LRU: it cannot fill up).
struct NoContent {
    sockets: BpfHashMap<MapData, u64, u8>,
    count: Array<MapData, u32>,
    /// In the map and not taken out again.
    live: u32,
    /// Named since the start.
    named: u64,
}

impl NoContent {
    /// Applies the labeler's changes (see `Labeler::take_unread_changes`).
    fn apply(&mut self, changes: Vec<(u64, bool)>) {
        let before = self.live;
        for (cookie, unread) in changes {
            if unread {
                if self.sockets.insert(cookie, 1u8, 0).is_ok() {
                    self.named += 1;
                    self.live += 1;
                }
            } else if self.sockets.remove(&cookie).is_ok() {
                self.live = self.live.saturating_sub(1);
            }
        }
        if self.live != before {
            let _ = self.count.set(0, self.live, 0);
        }
    }
}

/// Where [`Recorder::poll_raw`] puts each poll's records: what a raw log
/// stores, and what [`Replay`] turns into ordered records.
pub trait RawSink {
    /// One record of ring `ring` as [`raw::take_record`] kept it, with the
    /// label the recorder made of its message bytes.
    fn record(&mut self, ring: usize, kept: &[u8], label: Option<Arc<Label>>);
    /// The end of a poll: every record with `ts <= horizon` was given (or is
    /// counted in `lost_total`).
    fn checkpoint(&mut self, horizon: u64, lost_total: u64);
}

/// The recorder's own sink: a [`Replay`] handing records to `out`.
struct ReplaySink<'a, F: FnMut(Record)> {
    replay: &'a mut Replay,
    out: &'a mut F,
    stats: Option<ReplayStats>,
    finish: bool,
}

impl<F: FnMut(Record)> RawSink for ReplaySink<'_, F> {
    fn record(&mut self, ring: usize, kept: &[u8], label: Option<Arc<Label>>) {
        // A record that does not parse is counted by the replay.
        let _ = self.replay.record(ring, kept, label, self.out);
    }
    fn checkpoint(&mut self, horizon: u64, lost_total: u64) {
        self.stats = Some(if self.finish {
            self.replay.finish(horizon, lost_total, self.out)
        } else {
            self.replay.checkpoint(horizon, lost_total, self.out)
        });
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("held", &self.replay.held())
            .field("last_checkpoint", &self.replay.last_checkpoint())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Checks what loading needs, with the specific error for each missing piece.
pub fn preflight() -> Result<(), RecordError> {
    if !Path::new("/proc/sys/kernel/unprivileged_bpf_disabled").exists() {
        return Err(RecordError::BpfDisabled {
            detail: "/proc/sys/kernel/unprivileged_bpf_disabled is absent".into(),
        });
    }
    if let Err(e) = std::fs::metadata(BTF_PATH) {
        return Err(RecordError::NoBtf {
            path: BTF_PATH.into(),
            source: Some(e),
        });
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(missing) = parse_cap_eff(&status).and_then(missing_caps) {
            return Err(RecordError::NotPermitted { missing });
        }
    }
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing if it is not there (classic
/// tracepoints need it) and checks the accept tracepoints exist.
pub fn ensure_tracefs() -> Result<(), RecordError> {
    let events = Path::new(TRACEFS).join("events");
    if !events.exists() {
        let src = c"tracefs";
        let dst = c"/sys/kernel/tracing";
        // SAFETY: all pointers are valid NUL-terminated strings; data is null.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(RecordError::NoTracefs {
                source: std::io::Error::last_os_error(),
            });
        }
    }
    for (_, cat, name) in TP_PROGRAMS {
        if !events.join(cat).join(name).exists() {
            return Err(RecordError::TracepointMissing {
                name: format!("{cat}/{name}"),
                hint: "syscall tracepoints need CONFIG_FTRACE_SYSCALLS=y",
            });
        }
    }
    Ok(())
}

/// The ring buffer's header before each record.
const RING_HEADER: usize = 8;

/// The wait before the next poll, after one that drained `drained` bytes
/// from all rings and found the fullest ring `fill` full (0..1). A quiet
/// host's polls mostly pay their fixed costs (the task iterator visits
/// every thread), so below half of `target` bytes the wait doubles, up to
/// `max`. On a busy host a parsing reader's cost per event grows with the
/// batch (the demo's reader took 225 ns per event at 40-100 ms against 145
/// at 20 ms), so above `target`, or past a quarter of a ring, it halves,
/// down to `min`. In between it stays.
pub(crate) fn next_poll_interval(
    current: Duration,
    drained: usize,
    fill: f64,
    target: usize,
    min: Duration,
    max: Duration,
) -> Duration {
    let max = max.max(min);
    let next = if fill > 0.25 || drained > target {
        current / 2
    } else if drained < target / 2 {
        current.saturating_mul(2)
    } else {
        current
    };
    next.clamp(min, max)
}

/// The size of each possible CPU's ring (index = CPU id, `possible` of
/// them): the online CPUs share `ring_bytes`, each share rounded up to a
/// power of two; an offline CPU (hot-plug slots on a VM) gets the smallest
/// ring. No ring is smaller than a page or than four of the largest records
/// (`max_record` bytes with its header), so that a small `ring_bytes` over
/// many CPUs cannot leave a ring that refuses every message start.
pub(crate) fn ring_sizes(
    ring_bytes: u32,
    possible: u32,
    online: &[u32],
    page: u32,
    max_record: u32,
) -> Vec<u32> {
    let pow2 = |x: u32| x.checked_next_power_of_two().unwrap_or(1 << 31);
    let floor = pow2(page.max(max_record.saturating_mul(4)));
    let n_online = online.iter().filter(|&&c| c < possible).count().max(1) as u32;
    let share = pow2(ring_bytes / n_online).max(floor);
    (0..possible)
        .map(|cpu| if online.contains(&cpu) { share } else { floor })
        .collect()
}

/// Possible CPUs (the kernel's ids run below this) and the online ones.
fn cpus() -> Result<(u32, Vec<u32>), RecordError> {
    let err = |(path, e): (&str, std::io::Error)| RecordError::Map {
        map: "RINGS",
        what: format!("reading {path}: {e}"),
    };
    let possible = aya::util::nr_cpus().map_err(err)? as u32;
    let online = aya::util::online_cpus().map_err(err)?;
    Ok((possible, online))
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u32
    } else {
        4096
    }
}

/// Maps a load/attach failure to the most specific error.
/// A program load failure: a verifier rejection (the capabilities were
/// checked before loading, so EACCES/EINVAL here come from the verifier)
/// says so with the end of the verifier's log; anything else as `load_error`.
fn program_load_error(prog: &str, stage: String, e: aya::programs::ProgramError) -> RecordError {
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    {
        if matches!(io_error.raw_os_error(), Some(libc::EACCES | libc::EINVAL)) {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return RecordError::Verifier {
                program: prog.to_string(),
                errno: io_error.to_string(),
                log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            };
        }
    }
    load_error(stage, e)
}

fn load_error(stage: String, e: impl std::error::Error + Send + Sync + 'static) -> RecordError {
    classify_errno(errno_in_chain(&e)).unwrap_or_else(|| RecordError::load(stage, e))
}

impl Recorder {
    /// Loads and attaches the probes with the given filters. Nothing is
    /// recorded before the filter maps are filled.
    pub fn start(filters: &Filters, opts: RecorderOptions) -> Result<Recorder, RecordError> {
        filters.validate()?;
        let page = page_size();
        if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < page {
            return Err(RecordError::BadRingSize {
                bytes: opts.ring_bytes,
                page,
            });
        }
        preflight()?;
        let btf = Btf::from_sys_fs().map_err(|e| RecordError::NoBtf {
            path: BTF_PATH.into(),
            source: Some(std::io::Error::other(e)),
        })?;

        // u32::MAX is no process: pid_max is at most 2^22.
        let own_tgid: u32 = if opts.exclude_self {
            std::process::id()
        } else {
            u32::MAX
        };
        let filter_pids: u8 = (!filters.pids.is_empty()).into();
        let filter_ports: u8 = (!filters.ports.is_empty()).into();
        let filter_netns: u32 = filters.netns.unwrap_or(0);
        let filter_cgroup: u64 = filters.cgroup.map_or(0, |c| c.id);
        let filter_cgroup_level: u32 = filters.cgroup.map_or(0, |c| c.level);
        // The accept probes (classic syscall tracepoints) only with thread
        // filters, as the kernel side decides (`vp_thread_filters`):
        // without, passive opens are reported by vp_state, and no syscall
        // tracepoint puts every syscall on the host on the tracing slow
        // path.
        let accept_probes = filter_pids != 0 || filter_cgroup != 0;
        if accept_probes {
            ensure_tracefs()?;
        }
        let discard_events: u8 = opts.discard_in_kernel.into();
        let data_cap: u32 = opts.content.kernel_bytes();
        if data_cap > ContentCapture::MAX_BYTES {
            return Err(RecordError::BadContentSize {
                bytes: data_cap,
                max: ContentCapture::MAX_BYTES,
            });
        }
        // The labeler tells the probes which sockets' bytes it does not read;
        // a payload capture keeps every message's bytes.
        let content_skip: u8 = matches!(opts.content, ContentCapture::Labels { .. }).into();
        let (cpus, online) = cpus()?;
        // The largest record: a socket event with message bytes, and the
        // ring's 8-byte header.
        // And a batch of records, when records are batched.
        let mut max_record = size_of::<raw::VpSockEvent>() as u32 + data_cap + raw::SEG0_MAX + 8;
        if data_cap <= raw::BATCH_DATA_MAX {
            max_record = max_record.max(raw::BATCH_MAX + 8);
        }
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("own_tgid", &own_tgid, true)
            .override_global("filter_pids", &filter_pids, true)
            .override_global("filter_ports", &filter_ports, true)
            .override_global("filter_netns", &filter_netns, true)
            .override_global("filter_cgroup", &filter_cgroup, true)
            .override_global("filter_cgroup_level", &filter_cgroup_level, true)
            .override_global("discard_events", &discard_events, true)
            .override_global("data_cap", &data_cap, true)
            .override_global("content_skip", &content_skip, true)
            .map_max_entries("RINGS", cpus)
            // RUNS is task storage, which aya creates but has no type for.
            .allow_unsupported_maps()
            .load(OBJECT)
            .map_err(|e| load_error("creating maps".into(), e))?;

        fill_filter_maps(&mut ebpf, filters)?;
        let sizes = ring_sizes(opts.ring_bytes, cpus, &online, page, max_record);
        let rings = create_rings(&mut ebpf, &sizes)?;
        let counters = take_typed(&mut ebpf, "COUNTERS")?;
        let no_content = NoContent {
            sockets: take_typed(&mut ebpf, "NO_CONTENT")?,
            count: take_typed(&mut ebpf, "NO_CONTENT_N")?,
            live: 0,
            named: 0,
        };

        for (prog, tp) in BTF_PROGRAMS {
            let p: &mut BtfTracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| RecordError::Map {
                    map: "programs",
                    what: format!("program {prog} missing from the object"),
                })?
                .try_into()
                .map_err(|e| load_error(format!("program {prog}"), e))?;
            p.load(tp, &btf).map_err(|e| match e {
                aya::programs::ProgramError::Btf(_) => RecordError::TracepointMissing {
                    name: format!("tp_btf/{tp}"),
                    hint: "this kernel's BTF has no such tracepoint (needs Linux >= 5.10 with CONFIG_DEBUG_INFO_BTF)",
                },
                e => program_load_error(prog, format!("loading {prog} (tp_btf/{tp})"), e),
            })?;
            p.attach()
                .map_err(|e| load_error(format!("attaching {prog} to tp_btf/{tp}"), e))?;
        }
        let flush: &mut Iter = ebpf
            .program_mut(FLUSH_PROGRAM)
            .ok_or_else(|| RecordError::Map {
                map: "programs",
                what: format!("program {FLUSH_PROGRAM} missing from the object"),
            })?
            .try_into()
            .map_err(|e| load_error(format!("program {FLUSH_PROGRAM}"), e))?;
        flush.load("task", &btf).map_err(|e| {
            program_load_error(
                FLUSH_PROGRAM,
                format!("loading {FLUSH_PROGRAM} (iter/task)"),
                e,
            )
        })?;
        let prog_fd = flush
            .fd()
            .map_err(|e| load_error(format!("program {FLUSH_PROGRAM}"), e))?;
        let flush_link = iter_link_create(prog_fd.as_fd())
            .map_err(|e| load_error(format!("linking the task iterator {FLUSH_PROGRAM}"), e))?;
        let batch: &mut RawTracePoint = ebpf
            .program_mut(BATCH_PROGRAM)
            .ok_or_else(|| RecordError::Map {
                map: "programs",
                what: format!("program {BATCH_PROGRAM} missing from the object"),
            })?
            .try_into()
            .map_err(|e| load_error(format!("program {BATCH_PROGRAM}"), e))?;
        batch.load().map_err(|e| {
            program_load_error(
                BATCH_PROGRAM,
                format!("loading {BATCH_PROGRAM} (raw_tp)"),
                e,
            )
        })?;
        // Once on every CPU now: a kernel that cannot run it fails here, not
        // at the first poll.
        flush_batches(&mut ebpf, &online)?;
        for (prog, cat, name) in TP_PROGRAMS.iter().filter(|_| accept_probes) {
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| RecordError::Map {
                    map: "programs",
                    what: format!("program {prog} missing from the object"),
                })?
                .try_into()
                .map_err(|e| load_error(format!("program {prog}"), e))?;
            p.load()
                .map_err(|e| program_load_error(prog, format!("loading {prog}"), e))?;
            p.attach(cat, name)
                .map_err(|e| load_error(format!("attaching {prog} to {cat}/{name}"), e))?;
        }

        Ok(Recorder {
            ebpf: Some(ebpf),
            rings,
            counters,
            replay: Replay::new(),
            labeler: match opts.content {
                ContentCapture::Labels { prefix } => {
                    let mut l = Labeler::new(prefix as usize);
                    l.report_unread();
                    Some(l)
                }
                _ => None,
            },
            no_content: (content_skip != 0).then_some(no_content),
            next_tick: Instant::now() + opts.poll_interval,
            interval: opts.poll_interval,
            ring_sizes: sizes,
            opts,
            clock: ClockOffset::measure(),
            last_bad: None,
            bad_total: 0,
            flush_link,
            online,
        })
    }

    /// Monotonic-to-wall-clock offset, measured at start.
    pub fn clock_offset(&self) -> ClockOffset {
        self.clock
    }

    /// The options the recorder runs with.
    pub fn options(&self) -> &RecorderOptions {
        &self.opts
    }

    /// The last record that failed to parse, if any.
    pub fn last_bad_record(&self) -> Option<&RawError> {
        self.last_bad
            .as_ref()
            .or_else(|| self.replay.last_bad_record())
    }

    /// Per-program run counts and times (see [`ProgramStats`]); empty after
    /// [`Recorder::stop`].
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let Some(ebpf) = &self.ebpf else {
            return Vec::new();
        };
        let mut v: Vec<ProgramStats> = ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramStats {
                    name: name.to_string(),
                    run_count: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The kernel counters now.
    pub fn counters(&self) -> Result<Counters, RecordError> {
        let sum = |idx: u32| self.counter(idx);
        Ok(Counters {
            events_emitted: sum(raw::CNT_SOCK_EMITTED)?,
            events_dropped: sum(raw::CNT_SOCK_DROPPED)?,
            comms_emitted: sum(raw::CNT_COMM_EMITTED)?,
            comms_dropped: sum(raw::CNT_COMM_DROPPED)?,
            ops_merged: sum(raw::CNT_RUN_OPS)?,
            ops_without_bytes: sum(raw::CNT_NO_BYTES)?,
            chunks_not_copied: sum(raw::CNT_NO_CONTENT)?,
            sockets_unread: self.no_content.as_ref().map_or(0, |n| n.named),
            ..self.replay_counters(Counters::default())
        })
    }

    /// `c` with what the reader and its replay counted.
    fn replay_counters(&self, c: Counters) -> Counters {
        Counters {
            run_rest_events: self.replay.run_rest_events(),
            labels_unplaced: self.replay.unplaced_events(),
            records_skipped: self.bad_total + self.replay.bad_total(),
            ..c
        }
    }

    /// Sleeps until the next tick (the current interval after the previous
    /// one, between `poll_interval` and `max_poll_interval` by how full the
    /// rings got), then does [`Recorder::poll_now`].
    pub fn poll(&mut self, out: &mut impl FnMut(Record)) -> Result<PollStats, RecordError> {
        self.wait_tick();
        self.poll_now(out)
    }

    fn wait_tick(&mut self) {
        let now = Instant::now();
        if self.next_tick > now {
            std::thread::sleep(self.next_tick - now);
        }
        self.next_tick = (self.next_tick + self.interval).max(Instant::now());
    }

    /// After a drain that took `drained[i]` bytes out of ring `i`: the next
    /// interval, by the fullest ring.
    fn adapt(&mut self, drained: &[usize]) {
        let fill = drained
            .iter()
            .zip(&self.ring_sizes)
            .map(|(&d, &size)| d as f64 / f64::from(size.max(1)))
            .fold(0.0, f64::max);
        self.interval = next_poll_interval(
            self.interval,
            drained.iter().sum(),
            fill,
            self.opts.poll_drain_bytes,
            self.opts.poll_interval,
            self.opts.max_poll_interval,
        );
    }

    /// Drains every CPU's ring and hands out records: thread records at once,
    /// socket events in timestamp order up to the checkpoint, then a
    /// [`Checkpoint`]. Contract: every event with `ts <= checkpoint.ts_ns`
    /// was handed out before the checkpoint or is counted in `lost_total`.
    pub fn poll_now(&mut self, out: &mut impl FnMut(Record)) -> Result<PollStats, RecordError> {
        let (r, stats) = self.through_replay(out, false, |rec, sink| rec.poll_raw_now(sink));
        let mut st = r?;
        st.apply(stats.expect("a poll ends with a checkpoint"));
        // The counters were read while the replay was lent to the sink.
        st.counters = self.replay_counters(st.counters);
        Ok(st)
    }

    /// Runs `f` with a raw sink that feeds the recorder's own [`Replay`],
    /// which hands records to `out` (`finish`: the last checkpoint releases
    /// everything held); returns what `f` returned and the replay's stats.
    fn through_replay<F: FnMut(Record), R>(
        &mut self,
        out: &mut F,
        finish: bool,
        f: impl FnOnce(&mut Recorder, &mut ReplaySink<'_, F>) -> R,
    ) -> (R, Option<ReplayStats>) {
        let mut replay = std::mem::take(&mut self.replay);
        let mut sink = ReplaySink {
            replay: &mut replay,
            out,
            stats: None,
            finish,
        };
        let r = f(self, &mut sink);
        let stats = sink.stats;
        self.replay = replay;
        (r, stats)
    }

    /// As [`Recorder::poll`], but hands each ring record, as kept (see
    /// [`raw::take_record`]), to `sink`, then the poll's checkpoint: what a
    /// raw log stores. The returned stats count records read, not events
    /// (a run of several operations becomes two events at the replay).
    pub fn poll_raw(&mut self, sink: &mut impl RawSink) -> Result<PollStats, RecordError> {
        self.wait_tick();
        self.poll_raw_now(sink)
    }

    fn poll_raw_now(&mut self, sink: &mut impl RawSink) -> Result<PollStats, RecordError> {
        // Horizon first: a probe whose timestamp is <= horizon has had
        // `margin` to reserve (or count a drop) and submit.
        let margin = self.opts.checkpoint_margin.as_nanos() as u64;
        let horizon = monotonic_ns().saturating_sub(margin);
        // Then close every open run: a run's first operation may be older
        // than the horizon, and the checkpoint promises it too.
        self.flush_held()?;
        let counters = self.counters()?;
        let mut st = PollStats::new(counters);
        self.drain(sink, &mut st);
        let lost_total = counters.events_dropped + self.bad_total;
        sink.checkpoint(horizon, lost_total);
        st.checkpoint = Checkpoint {
            ts_ns: horizon,
            lost_total,
        };
        Ok(st)
    }

    /// Overhead dissection only ("ring-buffer transfer" stage): sleeps like
    /// [`Recorder::poll`], then consumes every record in the rings without
    /// parsing it and returns how many there were. The records are gone and
    /// not counted as lost, so a recorder polled this way must not feed an
    /// analysis.
    pub fn poll_discard(&mut self) -> u64 {
        self.wait_tick();
        // Same kernel work as a real poll; a failure only leaves runs open.
        let _ = self.flush_held();
        let mut n = 0;
        let mut drained = vec![0usize; self.rings.len()];
        for (ring, d) in self.rings.iter_mut().zip(&mut drained) {
            while let Some(item) = ring.next() {
                n += u64::from(raw::records_in(&item));
                *d += item.len() + RING_HEADER;
            }
        }
        self.adapt(&drained);
        n
    }

    /// Runs the task iterator once: every thread's open run goes into a
    /// ring (the one of the CPU this thread runs on).
    /// Puts everything the probes hold in the rings: every thread's open
    /// run (the task iterator), then every CPU's batch.
    ///
    /// The iterator visits every task on the host, so it runs only while a
    /// run is open: runs opened and taken are counted per CPU, and equal
    /// sums mean none is (a probe that opened one and has not counted it
    /// yet is inside the checkpoint margin, like any probe in flight). On
    /// a load that merges nothing (Tomcat) it was ~10% of the reader.
    fn flush_held(&mut self) -> Result<(), RecordError> {
        // Taken first: opened never falls behind it, so a run opened and
        // taken between the two reads makes them differ, never hides one.
        let taken = self.counter(raw::CNT_RUNS_TAKEN)?;
        let runs_open = self.counter(raw::CNT_RUNS_OPENED)? != taken;
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(());
        };
        if runs_open {
            iter_run(self.flush_link.as_fd()).map_err(|e| RecordError::Map {
                map: "RUNS",
                what: format!("running the task iterator {FLUSH_PROGRAM}: {e}"),
            })?;
        }
        flush_batches(ebpf, &self.online)
    }

    /// One kernel counter, summed over the CPUs.
    fn counter(&self, idx: u32) -> Result<u64, RecordError> {
        let v = self.counters.get(&idx, 0).map_err(|e| RecordError::Map {
            map: "COUNTERS",
            what: format!("reading index {idx}: {e}"),
        })?;
        Ok(v.iter().copied().fold(0u64, u64::wrapping_add))
    }

    /// Reads every ring to its end, one after the other, into `sink`.
    fn drain(&mut self, sink: &mut impl RawSink, st: &mut PollStats) {
        let mut drained = vec![0usize; self.rings.len()];
        let mut scratch = [0u8; size_of::<raw::VpSockEvent>()];
        for (i, (ring, d)) in self.rings.iter_mut().zip(&mut drained).enumerate() {
            while let Some(item) = ring.next() {
                *d += item.len() + RING_HEADER;
                let labeler = &mut self.labeler;
                let mut take = |b: &[u8]| match raw::take_record(b, labeler.as_mut(), &mut scratch)
                {
                    Ok((kept, label)) => {
                        if kept[0] == raw::REC_COMM {
                            st.threads_out += 1;
                        } else {
                            st.events_read += 1;
                        }
                        sink.record(i, kept, label);
                        None
                    }
                    Err(e) => Some(e),
                };
                let err = if item.first() == Some(&raw::REC_BATCH) {
                    // Its records one by one, as if the probes had put each
                    // in the ring (a raw log stores them so).
                    let mut first = None;
                    let r = raw::for_each_in_batch(&item, |one| {
                        if let Some(e) = take(one) {
                            first.get_or_insert(e);
                        }
                    });
                    match r {
                        // The records after a fault are not counted: a
                        // batch's header is the probes' own, so a fault is
                        // a layout mismatch, counted as one bad record.
                        Err(e) => Some(e),
                        Ok(_) => first,
                    }
                } else {
                    take(&item)
                };
                if let Some(e) = err {
                    st.bad_records += 1;
                    self.bad_total += 1;
                    self.last_bad = Some(e);
                }
            }
        }
        self.adapt(&drained);
        self.tell_unread();
    }

    /// Names the sockets the labeler stopped reading to the probes, and
    /// drops those it forgot (closed).
    fn tell_unread(&mut self) {
        if let (Some(labeler), Some(nc)) = (self.labeler.as_mut(), self.no_content.as_mut()) {
            nc.apply(labeler.take_unread_changes());
        }
    }

    /// Detaches the probes, hands out everything still buffered and a final
    /// checkpoint, and returns the final counters.
    pub fn stop(mut self, out: &mut impl FnMut(Record)) -> Result<Counters, RecordError> {
        let (r, _) = self.through_replay(out, true, |rec, sink| rec.stop_into(sink));
        Ok(self.replay_counters(r?))
    }

    /// As [`Recorder::stop`], into a raw sink: the last records, then a last
    /// checkpoint.
    pub fn stop_raw(mut self, sink: &mut impl RawSink) -> Result<Counters, RecordError> {
        self.stop_into(sink)
    }

    fn stop_into(&mut self, sink: &mut impl RawSink) -> Result<Counters, RecordError> {
        // Detach the probes, let those that were running finish their
        // submit, close the runs they left open, then drop the object.
        if let Some(ebpf) = &mut self.ebpf {
            for (prog, _) in BTF_PROGRAMS {
                if let Some(p) = ebpf.program_mut(prog) {
                    let p: Result<&mut BtfTracePoint, _> = p.try_into();
                    if let Ok(p) = p {
                        let _ = p.unload();
                    }
                }
            }
            for (prog, _, _) in TP_PROGRAMS {
                if let Some(p) = ebpf.program_mut(prog) {
                    let p: Result<&mut TracePoint, _> = p.try_into();
                    if let Ok(p) = p {
                        let _ = p.unload();
                    }
                }
            }
        }
        std::thread::sleep(self.opts.checkpoint_margin);
        self.flush_held()?;
        drop(self.ebpf.take());
        let horizon = monotonic_ns();
        let counters = self.counters()?;
        let mut st = PollStats::new(counters);
        self.drain(sink, &mut st);
        sink.checkpoint(horizon, counters.events_dropped + self.bad_total);
        let mut counters = counters;
        counters.records_skipped = self.bad_total;
        Ok(counters)
    }
}

/// `bpf(BPF_LINK_CREATE)` for an iterator program over all tasks (aya keeps
/// its own iterator links' fds private, and each run needs a fresh iterator
/// from the link).
fn iter_link_create(prog: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_TRACE_ITER: u32 = 28;
    // union bpf_attr's link_create: prog_fd, target_fd, attach_type, flags,
    // then iter_info (NULL: every task) and zeros.
    let mut attr = [0u32; 16];
    attr[0] = prog.as_raw_fd() as u32;
    attr[2] = BPF_TRACE_ITER;
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

/// Runs [`BATCH_PROGRAM`] on each CPU of `cpus`: their batches go to their
/// rings.
fn flush_batches(ebpf: &mut Ebpf, cpus: &[u32]) -> Result<(), RecordError> {
    let Some(p) = ebpf.program_mut(BATCH_PROGRAM) else {
        return Ok(());
    };
    let p: &mut RawTracePoint = p
        .try_into()
        .map_err(|e| load_error(format!("program {BATCH_PROGRAM}"), e))?;
    for &cpu in cpus {
        let opts = RawTracePointRunOptions {
            cpu: Some(cpu),
            ..Default::default()
        };
        p.test_run(opts).map_err(|e| RecordError::Map {
            map: "BATCH",
            what: format!("running {BATCH_PROGRAM} on CPU {cpu}: {e}"),
        })?;
    }
    Ok(())
}

/// Creates an iterator from `link` and reads it to its end (the program
/// writes nothing; reading runs it once over every task).
fn iter_run(link: BorrowedFd<'_>) -> std::io::Result<()> {
    const BPF_ITER_CREATE: libc::c_long = 33;
    let mut attr = [0u32; 16];
    attr[0] = link.as_raw_fd() as u32;
    let it = bpf_fd(BPF_ITER_CREATE, &mut attr)?;
    let mut f = std::fs::File::from(it);
    let mut buf = [0u8; 64];
    while std::io::Read::read(&mut f, &mut buf)? > 0 {}
    Ok(())
}

fn bpf_fd(cmd: libc::c_long, attr: &mut [u32; 16]) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed; the call
    // returns a new fd or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: r is a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Creates one ring per CPU, of `sizes[cpu]` bytes, and puts each in RINGS
/// at its CPU's index. The rings live as long as the returned handles or
/// RINGS.
fn create_rings(ebpf: &mut Ebpf, sizes: &[u32]) -> Result<Vec<RingBuf<MapData>>, RecordError> {
    let err = |what: String| RecordError::Map { map: "RINGS", what };
    let outer = ebpf
        .map_mut("RINGS")
        .ok_or_else(|| err("missing from the object".into()))?;
    let mut outer: ArrayOfMaps<&mut MapData, RingBuf<MapData>> =
        ArrayOfMaps::try_from(outer).map_err(|e| err(e.to_string()))?;
    (0..)
        .zip(sizes)
        .map(|(cpu, &bytes)| {
            let def = aya_obj::Map::new_from_params(
                aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
                0,
                0,
                bytes,
                0,
            );
            let data = MapData::create(def, &format!("VP_RING{cpu}"), None).map_err(|e| {
                load_error(format!("creating the ring of CPU {cpu} ({bytes} bytes)"), e)
            })?;
            let ring = Map::from_map_data(data)
                .and_then(RingBuf::try_from)
                .map_err(|e| err(format!("ring of CPU {cpu}: {e}")))?;
            outer
                .set(cpu, &ring, 0)
                .map_err(|e| err(format!("inserting the ring of CPU {cpu}: {e}")))?;
            Ok(ring)
        })
        .collect()
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, RecordError> {
    ebpf.take_map(name).ok_or(RecordError::Map {
        map: name,
        what: "missing from the object".into(),
    })
}

/// A map taken out of the object as its aya type.
fn take_typed<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, RecordError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(take_map(ebpf, name)?).map_err(|e| RecordError::Map {
        map: name,
        what: e.to_string(),
    })
}

fn fill_filter_maps(ebpf: &mut Ebpf, filters: &Filters) -> Result<(), RecordError> {
    fill_set(ebpf, "PID_FILTER", "pid", &filters.pids)?;
    fill_set(ebpf, "PORT_FILTER", "port", &filters.ports)
}

/// Puts `keys` into the hash map `map` used as a set (value 1). An empty
/// set leaves the map alone: the program then does not filter on it.
fn fill_set<K: aya::Pod + std::fmt::Display>(
    ebpf: &mut Ebpf,
    map: &'static str,
    what: &str,
    keys: &[K],
) -> Result<(), RecordError> {
    if keys.is_empty() {
        return Ok(());
    }
    let err = |what: String| RecordError::Map { map, what };
    let m = ebpf
        .map_mut(map)
        .ok_or_else(|| err("missing from the object".into()))?;
    let mut m: BpfHashMap<_, K, u8> = BpfHashMap::try_from(m).map_err(|e| err(e.to_string()))?;
    for k in keys {
        m.insert(k, 1, 0)
            .map_err(|e| err(format!("inserting {what} {k}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{next_poll_interval, ring_sizes};
    use std::time::Duration;

    #[test]
    fn the_poll_interval_follows_how_much_each_poll_drains() {
        let ms = Duration::from_millis;
        let kib = |k: usize| k << 10;
        let next = |cur, drained, fill| {
            next_poll_interval(ms(cur), drained, fill, kib(256), ms(20), ms(100))
        };
        // Quiet: doubles up to the maximum.
        assert_eq!(next(20, 0, 0.0), ms(40));
        assert_eq!(next(80, kib(100), 0.01), ms(100));
        assert_eq!(next(100, 0, 0.0), ms(100));
        // Busy: halves down to the minimum.
        assert_eq!(next(100, kib(300), 0.04), ms(50));
        assert_eq!(next(20, kib(900), 0.1), ms(20));
        // A ring past a quarter full halves it even for a small drain (a
        // small ring).
        assert_eq!(next(80, kib(8), 0.5), ms(40));
        // In between: stays.
        assert_eq!(next(40, kib(200), 0.1), ms(40));
        // A fixed period when max <= min.
        assert_eq!(
            next_poll_interval(ms(20), 0, 0.0, kib(256), ms(20), ms(20)),
            ms(20)
        );
        assert_eq!(
            next_poll_interval(ms(20), 0, 0.0, kib(256), ms(20), ms(5)),
            ms(20)
        );
        // A storing reader's larger target: 1 MiB per poll is not busy.
        assert_eq!(
            next_poll_interval(ms(100), kib(900), 0.05, kib(1024), ms(20), ms(250)),
            ms(100)
        );
        assert_eq!(
            next_poll_interval(ms(100), kib(300), 0.05, kib(1024), ms(20), ms(250)),
            ms(200)
        );
    }

    #[test]
    fn online_cpus_share_the_memory_in_powers_of_two_of_at_least_a_page() {
        let r = |bytes, possible, online: &[u32]| ring_sizes(bytes, possible, online, 4096, 232);
        assert_eq!(r(16 << 20, 2, &[0, 1]), [8 << 20, 8 << 20]);
        assert_eq!(r(16 << 20, 1, &[0]), [16 << 20]);
        assert_eq!(r(16 << 20, 3, &[0, 1, 2]), [8 << 20; 3]);
        assert_eq!(r(4096, 2, &[0, 1]), [4096, 4096]);
        assert_eq!(r(65536, 64, &(0..64).collect::<Vec<_>>()), [4096; 64]);
        assert_eq!(r(1 << 31, 1, &[0]), [1 << 31]);
    }

    #[test]
    fn offline_cpus_get_the_smallest_ring_and_do_not_dilute_the_share() {
        // A VM with 8 hot-plug slots and 2 CPUs online.
        let s = ring_sizes(16 << 20, 8, &[0, 1], 4096, 232);
        assert_eq!(s[..2], [8 << 20, 8 << 20]);
        assert!(s[2..].iter().all(|&b| b == 4096), "{s:?}");
    }

    #[test]
    fn every_ring_holds_four_of_the_largest_records() {
        // --payload-bytes 8192: a message start takes 96 + 8192 + 64 + 8.
        let max = 96 + 8192 + 64 + 8;
        let s = ring_sizes(1 << 20, 128, &(0..128).collect::<Vec<_>>(), 4096, max);
        assert!(
            s.iter().all(|&b| b >= 4 * max && b.is_power_of_two()),
            "{s:?}"
        );
    }
}
