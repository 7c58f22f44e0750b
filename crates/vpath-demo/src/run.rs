//! The demo: hosts, vApp, the eBPF recorder, load, analysis, scoring and
//! overhead measurement.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use vpath_bpf::{ContentCapture, Filters, Recorder, RecorderOptions};
use vpath_core::{Analyzer, Config, Path, Record, Span, SpanKind, Stats};
use vpath_io::export::html::{AccuracyRow, CdfSeries, HtmlReport, LoadRow, OverheadSection, Table};
use vpath_io::{RunInfo, Sink, SourceInfo};

use crate::client::ClientSummary;
use crate::hosts::{HostMode, Hosts};
use crate::score::{score, Score};
use crate::topology::{Model, Topology};
use crate::truth::{read_truth_file, TruthRecord};

/// What the demo does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The command that runs vApp, before its `tier ...`/`client ...`
    /// arguments: e.g. `["/usr/bin/vpath", "__vapp"]`.
    pub tier_cmd: Vec<String>,
    pub topology: Topology,
    /// One run of the whole topology per model; accuracy is reported for each.
    pub models: Vec<Model>,
    /// Client threads (each with its own keep-alive connection).
    pub concurrency: usize,
    /// Length of each model's recorded (accuracy) pass.
    pub accuracy_duration: Duration,
    /// Overhead measurement, if any.
    pub overhead: Option<OverheadOptions>,
    /// Worker threads of thread-pool tiers.
    pub workers: usize,
    /// Truth logs, client outputs, tier stderr and the latency CDF go here.
    pub workdir: PathBuf,
    /// Use network namespaces when possible (else loopback addresses).
    pub prefer_netns: bool,
    /// How many discovered paths to render in the text report.
    pub show_paths: usize,
    pub seed: u64,
    /// Record without reading message bytes (`vpath record --no-content`).
    pub no_content: bool,
}

#[derive(Clone, Debug)]
pub struct OverheadOptions {
    pub model: Model,
    /// Untraced and traced passes each (alternating, untraced first).
    pub passes: usize,
    pub pass_duration: Duration,
    /// Untraced warm-up before the first pass (not measured).
    pub warmup: Duration,
}

impl DemoOptions {
    /// The full demo: three models, concurrency 8, 3 s recorded per model,
    /// overhead measured as 3 passes of 5 s per stage, stages alternating.
    pub fn new(tier_cmd: Vec<String>) -> DemoOptions {
        DemoOptions {
            tier_cmd,
            topology: Topology::default(),
            models: Model::ALL.to_vec(),
            concurrency: 8,
            accuracy_duration: Duration::from_secs(3),
            overhead: Some(OverheadOptions {
                model: Model::ThreadPerRequest,
                passes: 3,
                pass_duration: Duration::from_secs(5),
                warmup: Duration::from_secs(1),
            }),
            workers: 4,
            workdir: std::env::temp_dir().join(format!("vpath-demo-{}", std::process::id())),
            prefer_netns: true,
            show_paths: 2,
            seed: 1,
            no_content: false,
        }
    }

    /// For CI: a few seconds in total.
    pub fn quick(tier_cmd: Vec<String>) -> DemoOptions {
        DemoOptions {
            accuracy_duration: Duration::from_millis(700),
            overhead: Some(OverheadOptions {
                model: Model::ThreadPerRequest,
                passes: 1,
                pass_duration: Duration::from_millis(700),
                warmup: Duration::from_millis(200),
            }),
            ..DemoOptions::new(tier_cmd)
        }
    }
}

/// The analyzer's and the recorder's view of one recorded pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassStats {
    pub events: u64,
    pub events_lost: u64,
    pub paths: u64,
    pub complete_paths: u64,
    pub spans: u64,
    pub links_stitched: u64,
    pub recorder_events_delivered: u64,
    pub recorder_events_dropped: u64,
    /// The probes' in-kernel run time over the pass (BPF run-time
    /// statistics, held on for accuracy passes only), as a share of all the
    /// machine's CPUs during the client's run, per event delivered and per
    /// request the client completed (steadier across builds than per event:
    /// merging changes the events, not the requests). None: the statistics
    /// could not be turned on.
    pub probe_cpu_pct: Option<f64>,
    pub probe_ns_per_event: Option<f64>,
    pub probe_us_per_request: Option<f64>,
}

/// One model's accuracy.
#[derive(Clone, Debug, Serialize)]
pub struct ModelResult {
    #[serde(flatten)]
    pub score: Score,
    pub analyzer: PassStats,
    pub client: ClientSummary,
    pub truth_records: u64,
    /// Spans carrying each issue, over all discovered paths.
    pub issues: BTreeMap<String, u64>,
}

/// Latency and throughput of a set of passes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadStats {
    pub passes: usize,
    pub requests: u64,
    /// Requests per second.
    pub throughput: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

/// One stage of the overhead dissection: each adds one piece of the
/// recorder's work to the one before (the paper's dissection table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// No probes.
    Untraced,
    /// Probes attached; they run their filters, then return (nothing is
    /// recorded): the cost of catching events.
    EventsCaught,
    /// Events submitted to the ring buffer and drained by user space
    /// without parsing.
    RingTransfer,
    /// `vpath record`: the records as the rings gave them (message starts
    /// read into labels), written to a raw log that `vpath analyze` parses
    /// later; what `traced` reports when the demo runs from the vpath
    /// binary.
    LogWritten,
    /// Parsed, ordered and checkpointed in memory by the Recorder, as
    /// `vpath live` and the demo's accuracy passes feed the analyzer.
    Recorded,
}

impl Stage {
    /// What the stage runs, in a sentence's words.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Untraced => "no probes",
            Stage::EventsCaught => "probes attached, returning after their filters",
            Stage::RingTransfer => "records drained from the rings unparsed",
            Stage::LogWritten => {
                "`vpath record`: the eBPF recorder writing a raw log (parsed later by `vpath analyze`)"
            }
            Stage::Recorded => "the eBPF recorder attached, events parsed and ordered in memory",
        }
    }

    pub const ALL: [Stage; 5] = [
        Stage::Untraced,
        Stage::EventsCaught,
        Stage::RingTransfer,
        Stage::LogWritten,
        Stage::Recorded,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Untraced => "untraced",
            Stage::EventsCaught => "events caught",
            Stage::RingTransfer => "ring-buffer transfer",
            Stage::LogWritten => "raw log written",
            Stage::Recorded => "parsed and ordered",
        }
    }
}

/// Load statistics of one stage, and its change against `untraced`.
#[derive(Clone, Debug, Serialize)]
pub struct StageStats {
    pub stage: Stage,
    pub label: &'static str,
    #[serde(flatten)]
    pub load: LoadStats,
    pub throughput_loss_pct: f64,
    pub p50_increase_pct: f64,
    pub p99_increase_pct: f64,
    /// Events that reached user space (read from the ring, or written to
    /// the log) and events dropped in the kernel, over the stage's passes.
    pub events: u64,
    pub events_dropped: u64,
    /// Throughput of each pass, and the loss computed from the medians of
    /// the per-pass values (steadier than totals on a shared machine).
    pub pass_throughputs: Vec<f64>,
    pub median_throughput_loss_pct: f64,
    /// CPU time of the user-space reader (the demo's polling thread, or
    /// the `vpath record` process), as % of one core over the passes, and
    /// per event it received.
    pub reader_cpu_pct: f64,
    pub reader_cpu_ns_per_event: f64,
    /// The whole machine's busy CPU time (/proc/stat: user, nice, system,
    /// irq, softirq; not idle, iowait or steal) per request over the
    /// stage's passes, µs, and its change against untraced: what the
    /// tracer costs as CPU, whether or not the load saturates the machine.
    pub machine_cpu_us_per_request: f64,
    pub machine_cpu_per_request_change_pct: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Overhead {
    pub model: Model,
    pub concurrency: usize,
    pub pass_duration_ms: u64,
    pub untraced: LoadStats,
    pub traced: LoadStats,
    /// Which stage of the dissection `traced` is.
    pub traced_stage: Stage,
    /// The whole machine's busy CPU time per request, untraced and traced
    /// (µs), and the increase: the tracer's cost as CPU, which scatters
    /// less than throughput at saturation does.
    pub cpu_per_request_us: [f64; 2],
    pub cpu_per_request_increase_pct: f64,
    pub throughput_loss_pct: f64,
    pub mean_increase_pct: f64,
    pub p50_increase_pct: f64,
    pub p90_increase_pct: f64,
    pub p99_increase_pct: f64,
    /// Events the recorder delivered and dropped over the traced passes
    /// (drained and discarded: capture cost only, no analysis, no disk).
    pub events_delivered: u64,
    pub events_dropped: u64,
    /// `quantile,untraced_us,traced_us`.
    pub cdf_csv: PathBuf,
    /// The same CDFs as a plot (next to the CSV).
    pub cdf_svg: PathBuf,
    /// The CDFs' lines (for the HTML report).
    #[serde(skip)]
    pub cdf_series: Vec<CdfSeries>,
    /// The dissection, in [`Stage`] order: passes of all stages alternate
    /// in one run. `writing the log` is absent when the demo does not run
    /// from the vpath binary (no `vpath record` to run).
    pub stages: Vec<StageStats>,
}

/// What the demo found.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub hosts: HostMode,
    pub host_addrs: BTreeMap<String, String>,
    pub concurrency: usize,
    pub accuracy_duration_ms: u64,
    /// What the recorder read of message contents: "labels" (protocol
    /// labels from the first bytes of each message) or "off".
    pub content: &'static str,
    /// Per model name.
    pub accuracy: BTreeMap<String, ModelResult>,
    /// Calls seen in discovered paths, "caller -> callee" to count.
    pub topology: BTreeMap<String, u64>,
    /// A few discovered paths, rendered as trees.
    pub sample_paths: Vec<String>,
    pub overhead: Option<Overhead>,
    pub workdir: PathBuf,
    /// Every process started (all gone when `run` returns).
    pub pids: Vec<u32>,
    /// Namespaces made (all gone when `run` returns).
    pub namespaces: Vec<String>,
    /// The HTML report (`report.html` in the workdir): topology, paths and
    /// waterfalls of one accuracy pass, accuracy, capture health, overhead.
    pub report: Option<PathBuf>,
}

impl DemoReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let hosts = match self.hosts {
            HostMode::Netns => "a network namespace each, one veth bridge",
            HostMode::Loopback => "loopback addresses (no namespaces: not root)",
        };
        s.push_str(&format!(
            "vpath demo: vApp, {} hosts ({hosts}), recorded with eBPF\n",
            self.host_addrs.len()
        ));
        for (h, a) in &self.host_addrs {
            s.push_str(&format!("  {h:<8} {a}\n"));
        }
        s.push_str("\nDiscovered paths (examples):\n");
        for p in &self.sample_paths {
            s.push_str(p);
        }
        s.push_str("\nDiscovered tier topology (calls in discovered paths):\n");
        for (edge, n) in &self.topology {
            s.push_str(&format!("  {edge:<24} {n}\n"));
        }
        s.push_str(&format!(
            "\nAccuracy per execution model (concurrency {}, {} ms recorded each{}):\n",
            self.concurrency,
            self.accuracy_duration_ms,
            if self.content == "off" {
                ", no message bytes read"
            } else {
                ""
            }
        ));
        s.push_str(&format!(
            "  {:<20} {:>7} {:>8} {:>7} {:>6} {:>11} {:>15} {:>10} {:>7} {:>6} {:>7}\n",
            "model",
            "paths",
            "exact",
            "exact%",
            "wrong",
            "incomplete",
            "false-complete",
            "lost-ev",
            "probes",
            "ns/ev",
            "us/req"
        ));
        for (m, r) in &self.accuracy {
            let sc = &r.score;
            s.push_str(&format!(
                "  {:<20} {:>7} {:>8} {:>6.1}% {:>6} {:>11} {:>15} {:>10} {:>7} {:>6} {:>7}\n",
                m,
                sc.paths,
                sc.exact,
                sc.exact_pct(),
                sc.wrong,
                sc.incomplete,
                sc.false_complete,
                r.analyzer.events_lost,
                r.analyzer
                    .probe_cpu_pct
                    .map_or("-".into(), |v| format!("{v:.1}%")),
                r.analyzer
                    .probe_ns_per_event
                    .map_or("-".into(), |v| format!("{v:.0}")),
                r.analyzer
                    .probe_us_per_request
                    .map_or("-".into(), |v| format!("{v:.1}"))
            ));
        }
        s.push_str(
            "  (probes: the kernel probes' run time, % of all online CPUs during the pass; ns/ev: per event; us/req: per request)\n",
        );
        if let Some(o) = &self.overhead {
            s.push_str(&format!(
                "\nOverhead ({}, {} untraced + {} traced passes of {} ms, concurrency {}; traced = {}):\n",
                o.model,
                o.untraced.passes,
                o.traced.passes,
                o.pass_duration_ms,
                o.concurrency,
                o.traced_stage.describe()
            ));
            s.push_str(&format!(
                "  {:<10} {:>12} {:>10} {:>10} {:>10} {:>10}\n",
                "", "req/s", "mean us", "p50 us", "p90 us", "p99 us"
            ));
            for (name, l) in [("untraced", &o.untraced), ("traced", &o.traced)] {
                s.push_str(&format!(
                    "  {name:<10} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                    l.throughput, l.mean_us, l.p50_us, l.p90_us, l.p99_us
                ));
            }
            s.push_str(&format!(
                "  {:<10} {:>11.1}% {:>9.1}% {:>9.1}% {:>9.1}% {:>9.1}%\n",
                "change",
                -o.throughput_loss_pct,
                o.mean_increase_pct,
                o.p50_increase_pct,
                o.p90_increase_pct,
                o.p99_increase_pct
            ));
            s.push_str(&format!(
                "  machine CPU per request: untraced {:.1} us, traced {:.1} us ({:+.1}%)\n",
                o.cpu_per_request_us[0], o.cpu_per_request_us[1], o.cpu_per_request_increase_pct
            ));
            s.push_str(&format!(
                "  events recorded {} (dropped {}); latency CDF: {}\n",
                o.events_delivered,
                o.events_dropped,
                o.cdf_csv.display()
            ));
            if !o.stages.is_empty() {
                s.push_str(&format!(
                    "\n  Dissection (stages alternate, {} passes each):\n",
                    o.untraced.passes
                ));
                s.push_str(&format!(
                    "  {:<22} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>7} {:>10} {:>7} {:>7} {:>8} {:>7}\n",
                    "stage",
                    "req/s",
                    "change",
                    "median",
                    "p50 us",
                    "change",
                    "p99 us",
                    "change",
                    "events",
                    "rd cpu",
                    "ns/ev",
                    "cpu/req",
                    "change"
                ));
                for st in &o.stages {
                    s.push_str(&format!(
                        "  {:<22} {:>8.0} {:>6.1}% {:>6.1}% {:>8.1} {:>6.1}% {:>8.1} {:>6.1}% {:>10} {:>6.1}% {:>7.0} {:>6.1}us {:>6.1}%\n",
                        st.label,
                        st.load.throughput,
                        -st.throughput_loss_pct,
                        -st.median_throughput_loss_pct,
                        st.load.p50_us,
                        st.p50_increase_pct,
                        st.load.p99_us,
                        st.p99_increase_pct,
                        st.events,
                        st.reader_cpu_pct,
                        st.reader_cpu_ns_per_event,
                        st.machine_cpu_us_per_request,
                        st.machine_cpu_per_request_change_pct
                    ));
                }
                s.push_str(
                    "  (change: of total req/s; median: of per-pass req/s; rd cpu: the user-space reader, % of one core;\n   cpu/req: the whole machine's busy CPU time per request, and its change)\n",
                );
            }
        }
        if let Some(r) = &self.report {
            s.push_str(&format!(
                "\nReport (topology, paths with waterfalls, latency CDFs, accuracy, overhead; opens offline): {}\n",
                r.display()
            ));
        }
        s.push('\n');
        s.push_str(&self.summary());
        s.push('\n');
        s
    }

    /// One line.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (m, r) in &self.accuracy {
            parts.push(format!(
                "{m} {}/{} exact, {} wrong",
                r.score.exact, r.score.paths, r.score.wrong
            ));
        }
        let mut s = format!("summary: {}", parts.join("; "));
        if let Some(o) = &self.overhead {
            s.push_str(&format!(
                "; tracing cost {:.1}% throughput, p50 {:+.1}%, p99 {:+.1}%",
                o.throughput_loss_pct, o.p50_increase_pct, o.p99_increase_pct
            ));
        }
        s
    }
}

/// One recorded pass: its paths, what the analysis saw, and the clock.
struct PassRun {
    paths: Vec<Path>,
    stats: Stats,
    wall_minus_mono_ns: i64,
}

/// A running topology.
struct Running {
    pids: Vec<u32>,
    truth_dir: PathBuf,
}

struct Ctx<'a> {
    opts: &'a DemoOptions,
    hosts: Hosts,
    all_pids: Vec<u32>,
    addr_of: BTreeMap<String, SocketAddr>,
}

const CLIENT: &str = "client";

impl Ctx<'_> {
    fn entry(&self) -> SocketAddr {
        self.addr_of[&self.opts.topology.entry]
    }

    fn start_tiers(&mut self, model: Model, dir: &FsPath, truth: bool) -> anyhow::Result<Running> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let top = self.opts.topology.clone();
        let mut pids = Vec::new();
        let mut ready = Vec::new();
        for t in &top.tiers {
            let mut cmd = self.opts.tier_cmd.clone();
            let r = dir.join(format!("{}.ready", t.name));
            let _ = std::fs::remove_file(&r);
            cmd.extend(
                [
                    "tier",
                    "--name",
                    &t.name,
                    "--listen",
                    &self.addr_of[&t.name].to_string(),
                    "--model",
                    model.name(),
                    "--ready",
                    &r.to_string_lossy(),
                    "--workers",
                    &self.opts.workers.to_string(),
                    "--large-pct",
                    &top.large_pct.to_string(),
                ]
                .map(String::from),
            );
            if truth {
                cmd.push("--truth".into());
                cmd.push(
                    dir.join(format!("{}.truth.jsonl", t.name))
                        .to_string_lossy()
                        .into(),
                );
            }
            for c in &t.calls {
                cmd.push("--upstream".into());
                cmd.push(format!("{}={}", c.to, self.addr_of[&c.to]));
            }
            for c in &t.calls {
                cmd.push("--call".into());
                cmd.push(c.to_arg());
            }
            let pid = self.hosts.spawn(
                &t.name,
                &cmd,
                false,
                Some(&dir.join(format!("{}.out", t.name))),
                &dir.join(format!("{}.err", t.name)),
            )?;
            self.all_pids.push(pid);
            pids.push(pid);
            ready.push((t.name.clone(), pid, r));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, pid, r) in ready {
            while !r.exists() {
                if let Some(c) = self.hosts.child_mut(pid) {
                    if let Ok(Some(st)) = c.try_wait() {
                        let err = std::fs::read_to_string(dir.join(format!("{name}.err")))
                            .unwrap_or_default();
                        bail!("tier {name} exited at start ({st}): {}", err.trim());
                    }
                }
                if Instant::now() > deadline {
                    bail!("tier {name} not ready after 10 s");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(Running {
            pids,
            truth_dir: dir.to_path_buf(),
        })
    }

    fn stop_tiers(&mut self, r: &Running) -> anyhow::Result<()> {
        let killed = self.hosts.stop(Some(&r.pids), Duration::from_secs(3));
        if !killed.is_empty() {
            bail!("tiers {killed:?} did not exit on SIGTERM and were killed");
        }
        Ok(())
    }

    /// Starts a client that waits for "go" on stdin.
    fn start_client(
        &mut self,
        dir: &FsPath,
        tag: &str,
        duration: Duration,
        truth: bool,
        latency: bool,
    ) -> anyhow::Result<u32> {
        let mut cmd = self.opts.tier_cmd.clone();
        cmd.extend(
            [
                "client",
                "--target",
                &self.entry().to_string(),
                "--threads",
                &self.opts.concurrency.to_string(),
                "--duration-ms",
                &duration.as_millis().to_string(),
                "--wait-go",
                "--seed",
                &self.opts.seed.to_string(),
                "--large-pct",
                &self.opts.topology.large_pct.to_string(),
            ]
            .map(String::from),
        );
        if truth {
            cmd.push("--truth".into());
            cmd.push(
                dir.join(format!("{CLIENT}.truth.jsonl"))
                    .to_string_lossy()
                    .into(),
            );
        }
        if latency {
            cmd.push("--latency".into());
            cmd.push(dir.join(format!("{tag}.latency")).to_string_lossy().into());
        }
        let pid = self.hosts.spawn(
            CLIENT,
            &cmd,
            true,
            Some(&dir.join(format!("{tag}.out"))),
            &dir.join(format!("{tag}.err")),
        )?;
        self.all_pids.push(pid);
        Ok(pid)
    }

    fn go(&mut self, pid: u32) -> anyhow::Result<()> {
        let c = self.hosts.child_mut(pid).context("client vanished")?;
        let mut stdin = c.stdin.take().context("client has no stdin")?;
        stdin.write_all(b"go\n").context("starting the client")?;
        Ok(())
    }

    /// Waits for the client, calling `tick` meanwhile; returns its summary.
    fn finish_client(
        &mut self,
        pid: u32,
        dir: &FsPath,
        tag: &str,
        timeout: Duration,
        mut tick: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<ClientSummary> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.hosts.child_mut(pid).context("client vanished")?;
            if let Some(st) = c.try_wait().context("waiting for the client")? {
                self.hosts.forget(pid);
                let mut out = String::new();
                let _ = std::fs::File::open(dir.join(format!("{tag}.out")))
                    .and_then(|mut f| f.read_to_string(&mut out));
                let err =
                    std::fs::read_to_string(dir.join(format!("{tag}.err"))).unwrap_or_default();
                if !st.success() {
                    bail!("client failed ({st}): {}", err.trim());
                }
                return serde_json::from_str(out.trim())
                    .with_context(|| format!("client summary {:?}", out.trim()));
            }
            if Instant::now() > deadline {
                bail!("client did not finish within {timeout:?}");
            }
            tick()?;
        }
    }

    /// What the recorder reads of message contents.
    fn content(&self) -> ContentCapture {
        if self.opts.no_content {
            ContentCapture::Off
        } else {
            RecorderOptions::default().content
        }
    }

    fn recorder_for(&self, pids: &[u32]) -> anyhow::Result<Recorder> {
        let f = Filters {
            pids: pids.to_vec(),
            ..Default::default()
        };
        // The accuracy passes saturate both cores with the app, and the reader
        // shares them: a 64 MiB ring rides out the bursts it falls behind.
        let opts = RecorderOptions {
            ring_bytes: 64 << 20,
            content: self.content(),
            ..RecorderOptions::default()
        };
        Recorder::start(&f, opts).context("starting the eBPF recorder")
    }

    /// One model: start the tiers, record a pass, analyze, score.
    fn accuracy(&mut self, model: Model) -> anyhow::Result<(ModelResult, PassRun)> {
        let dir = self.opts.workdir.join(model.name());
        let _ = std::fs::remove_dir_all(&dir);
        let running = self.start_tiers(model, &dir, true)?;
        let result = self.accuracy_pass(&running, &dir);
        let stopped = self.stop_tiers(&running);
        let (analyzer, client, pass) = result?;
        stopped?;
        let paths = &pass.paths;
        let mut truth: Vec<TruthRecord> = Vec::new();
        let mut names: Vec<String> = self
            .opts
            .topology
            .tiers
            .iter()
            .map(|t| t.name.clone())
            .collect();
        names.push(CLIENT.into());
        for n in names {
            let p = running.truth_dir.join(format!("{n}.truth.jsonl"));
            truth.extend(read_truth_file(&p)?);
        }
        let sc = score(&truth, paths);
        let mut jsonl = String::new();
        for p in paths {
            jsonl.push_str(&serde_json::to_string(p)?);
            jsonl.push('\n');
        }
        let pj = running.truth_dir.join("paths.jsonl");
        std::fs::write(&pj, jsonl).with_context(|| format!("writing {}", pj.display()))?;
        let mut issues = BTreeMap::new();
        for p in paths {
            p.root.walk(&mut |s, _| {
                for i in &s.issues {
                    *issues.entry(i.name().to_string()).or_default() += 1;
                }
            });
        }
        Ok((
            ModelResult {
                score: sc,
                analyzer,
                client,
                truth_records: truth.len() as u64,
                issues,
            },
            pass,
        ))
    }

    fn accuracy_pass(
        &mut self,
        running: &Running,
        dir: &FsPath,
    ) -> anyhow::Result<(PassStats, ClientSummary, PassRun)> {
        // Run-time accounting for this pass only (it costs every program run
        // two clock reads, so the overhead passes never hold it), from
        // before the client starts: the accounting then spans its run.
        let probe_stats = vpath_bpf::ProbeStats::enable().ok();
        let cpid = self.start_client(dir, CLIENT, self.opts.accuracy_duration, true, false)?;
        let mut pids = running.pids.clone();
        pids.push(cpid);
        let mut rec = self.recorder_for(&pids)?;
        let wall_minus_mono_ns = rec.clock_offset().wall_minus_mono_ns;
        let mut an = Analyzer::new(Config::default());
        let h = an.add_host("vapp", true);
        let mut paths = Vec::new();
        self.go(cpid)?;
        // This thread drains the ring and analyzes; at high concurrency
        // hundreds of vApp threads compete with it for two CPUs and the ring
        // overflows. Raise its priority while it records (after the last
        // spawn: children would inherit it).
        let _boost = vpath_bpf::ThreadPriority::raise(vpath_bpf::ThreadPriority::READER_NICE);
        let timeout = self.opts.accuracy_duration + Duration::from_secs(30);
        let client = self.finish_client(cpid, dir, CLIENT, timeout, || {
            rec.poll(&mut |r: Record| an.push(h, &r))
                .context("polling the recorder")?;
            while let Some(p) = an.pop() {
                paths.push(p);
            }
            Ok(())
        })?;
        // The probes, not the task iterator: the reader runs that at every
        // poll (it is the reader's cost, on its own CPU time).
        let probe_ns: Option<u64> = probe_stats.as_ref().map(|_| {
            rec.program_stats()
                .iter()
                .filter(|p| p.name != vpath_bpf::FLUSH_PROGRAM)
                .map(|p| p.run_time_ns)
                .sum()
        });
        drop(probe_stats);
        let counters = rec
            .stop(&mut |r: Record| an.push(h, &r))
            .context("stopping the recorder")?;
        // The probes run on every online CPU, whatever this process's
        // affinity or quota.
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as f64;
        an.finish();
        while let Some(p) = an.pop() {
            paths.push(p);
        }
        let st = an.stats();
        Ok((
            PassStats {
                events: st.events,
                events_lost: st.lost_events,
                paths: st.paths,
                complete_paths: st.complete_paths,
                spans: st.spans,
                links_stitched: st.links_stitched,
                recorder_events_delivered: counters.events_delivered(),
                recorder_events_dropped: counters.events_dropped,
                probe_cpu_pct: probe_ns
                    .filter(|_| client.elapsed_ns > 0)
                    .map(|ns| 100.0 * ns as f64 / (client.elapsed_ns as f64 * cpus)),
                probe_ns_per_event: probe_ns
                    .filter(|_| counters.events_delivered() > 0)
                    .map(|ns| ns as f64 / counters.events_delivered() as f64),
                probe_us_per_request: probe_ns
                    .filter(|_| client.requests > 0)
                    .map(|ns| ns as f64 / 1e3 / client.requests as f64),
            },
            client,
            PassRun {
                paths,
                stats: st.clone(),
                wall_minus_mono_ns,
            },
        ))
    }

    fn overhead(&mut self, o: &OverheadOptions) -> anyhow::Result<Overhead> {
        let dir = self.opts.workdir.join("overhead");
        let _ = std::fs::remove_dir_all(&dir);
        let running = self.start_tiers(o.model, &dir, false)?;
        let result = self.overhead_passes(o, &running, &dir);
        let stopped = self.stop_tiers(&running);
        let r = result?;
        stopped?;
        Ok(r)
    }

    /// The vpath binary, when the demo runs from it (`tier_cmd` is
    /// `[vpath, "__vapp"]`): the log stage runs its `record` command.
    fn vpath_exe(&self) -> Option<&str> {
        match self.opts.tier_cmd.as_slice() {
            [exe, sub] if sub == "__vapp" => Some(exe.as_str()),
            _ => None,
        }
    }

    /// Starts `vpath record` for `pids` and waits until its probes are
    /// attached (it creates the log file only after attaching).
    fn start_log_recorder(
        &self,
        dir: &FsPath,
        tag: &str,
        pids: &[u32],
    ) -> anyhow::Result<(std::process::Child, PathBuf)> {
        let exe = self.vpath_exe().context("no vpath binary to run")?;
        let log = dir.join(format!("{tag}.vplog"));
        let _ = std::fs::remove_file(&log);
        let err_path = dir.join(format!("{tag}.record.err"));
        let err = std::fs::File::create(&err_path)
            .with_context(|| format!("creating {}", err_path.display()))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("record").arg("--output").arg(&log);
        if self.opts.no_content {
            cmd.arg("--no-content");
        }
        for p in pids {
            cmd.arg("--pid").arg(p.to_string());
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("running {exe} record"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log.exists() {
            let failed = match child.try_wait() {
                Ok(Some(st)) => Some(st.to_string()),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(st) = failed {
                let e = std::fs::read_to_string(&err_path).unwrap_or_default();
                bail!("vpath record exited at start ({st}): {}", e.trim());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("vpath record did not start within 10 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok((child, err_path))
    }

    /// Stops `vpath record` (SIGINT) and returns (events written, lost)
    /// from its closing line.
    fn stop_log_recorder(
        mut child: std::process::Child,
        err_path: &FsPath,
    ) -> anyhow::Result<(u64, u64, u64)> {
        let cpu = process_cpu_ns(child.id());
        // SAFETY: kill has no memory preconditions; the pid is our child's,
        // not yet waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            if let Some(st) = child.try_wait().context("waiting for vpath record")? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("vpath record did not stop within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = std::fs::read_to_string(err_path).unwrap_or_default();
        if !st.success() {
            bail!("vpath record failed ({st}): {}", text.trim());
        }
        let (written, lost) = parse_record_summary(&text);
        Ok((written, lost, cpu))
    }

    fn one_load_pass(
        &mut self,
        dir: &FsPath,
        tag: &str,
        duration: Duration,
        stage: Stage,
        tiers: &[u32],
        counts: &mut (u64, u64, u64, u64),
    ) -> anyhow::Result<(ClientSummary, Vec<u64>)> {
        let cpid = self.start_client(dir, tag, duration, false, true)?;
        let mut pids = tiers.to_vec();
        pids.push(cpid);
        let mut rec = match stage {
            Stage::EventsCaught | Stage::RingTransfer | Stage::Recorded => {
                let f = Filters {
                    pids: pids.clone(),
                    ..Default::default()
                };
                let opts = RecorderOptions {
                    discard_in_kernel: stage == Stage::EventsCaught,
                    content: self.content(),
                    ..RecorderOptions::default()
                };
                Some(Recorder::start(&f, opts).context("starting the eBPF recorder")?)
            }
            Stage::Untraced | Stage::LogWritten => None,
        };
        let mut logger = match stage {
            Stage::LogWritten => Some(self.start_log_recorder(dir, tag, &pids)?),
            _ => None,
        };
        // The log recorder's CPU from here on (its start-up is not counted).
        let log_cpu0 = logger.as_ref().map_or(0, |(c, _)| process_cpu_ns(c.id()));
        let busy0 = machine_busy_ns();
        let go = self.go(cpid);
        let cpu0 = thread_cpu_ns();
        let timeout = duration + Duration::from_secs(30);
        let summary = go.and_then(|()| {
            self.finish_client(cpid, dir, tag, timeout, || {
                match rec.as_mut() {
                    Some(r) if stage == Stage::Recorded => {
                        r.poll(&mut |_| {}).context("polling the recorder")?;
                    }
                    Some(r) => {
                        r.poll_discard();
                    }
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
                Ok(())
            })
        });
        counts.3 += machine_busy_ns().saturating_sub(busy0);
        if rec.is_some() {
            counts.2 += thread_cpu_ns().saturating_sub(cpu0);
        }
        if let Some((child, err_path)) = logger.take() {
            let (written, lost, cpu) = Self::stop_log_recorder(child, &err_path)?;
            counts.0 += written;
            counts.1 += lost;
            counts.2 += cpu.saturating_sub(log_cpu0);
        }
        let summary = summary?;
        if let Some(r) = rec {
            let c = r.stop(&mut |_| {}).context("stopping the recorder")?;
            counts.0 += c.events_delivered();
            counts.1 += c.events_dropped;
        }
        let p = dir.join(format!("{tag}.latency"));
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let mut lat = Vec::new();
        for (i, l) in text.lines().enumerate() {
            lat.push(
                l.trim().parse::<u64>().with_context(|| {
                    format!("{}:{}: expected a latency in ns", p.display(), i + 1)
                })?,
            );
        }
        Ok((summary, lat))
    }

    fn overhead_passes(
        &mut self,
        o: &OverheadOptions,
        running: &Running,
        dir: &FsPath,
    ) -> anyhow::Result<Overhead> {
        let mut scratch = (0, 0, 0, 0);
        if !o.warmup.is_zero() {
            self.one_load_pass(dir, "warmup", o.warmup, Stage::Untraced, &[], &mut scratch)?;
        }
        let stages: Vec<Stage> = Stage::ALL
            .into_iter()
            .filter(|s| *s != Stage::LogWritten || self.vpath_exe().is_some())
            .collect();
        let n = stages.len();
        let mut lat: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut reqs = vec![0u64; n];
        let mut secs = vec![0f64; n];
        let mut counts = vec![(0u64, 0u64, 0u64, 0u64); n];
        let mut pass_tp: Vec<Vec<f64>> = vec![Vec::new(); n];
        // Rounds of all stages in turn, so that drift in the machine's load
        // spreads over every stage alike.
        for round in 0..o.passes {
            for (k, &stage) in stages.iter().enumerate() {
                let tag = format!("pass{round}-{:?}", stage).to_lowercase();
                let (s, l) = self.one_load_pass(
                    dir,
                    &tag,
                    o.pass_duration,
                    stage,
                    &running.pids,
                    &mut counts[k],
                )?;
                reqs[k] += s.requests;
                let sec = s.elapsed_ns as f64 / 1e9;
                secs[k] += sec;
                pass_tp[k].push(if sec > 0.0 {
                    s.requests as f64 / sec
                } else {
                    0.0
                });
                lat[k].extend(l);
            }
        }
        let pct = |a: f64, b: f64| if a > 0.0 { 100.0 * (b - a) / a } else { 0.0 };
        let base_median = median(&pass_tp[0]);
        let cpu_per_req = |k: usize| {
            if reqs[k] > 0 {
                counts[k].3 as f64 / 1e3 / reqs[k] as f64
            } else {
                0.0
            }
        };
        let base_cpu = cpu_per_req(0);
        let mut out: Vec<StageStats> = Vec::new();
        for (k, &stage) in stages.iter().enumerate() {
            let load = load_stats(&mut lat[k], o.passes, reqs[k], secs[k]);
            let base = out.first().map(|b| b.load.clone()).unwrap_or(load.clone());
            out.push(StageStats {
                stage,
                label: stage.label(),
                throughput_loss_pct: -pct(base.throughput, load.throughput),
                p50_increase_pct: pct(base.p50_us, load.p50_us),
                p99_increase_pct: pct(base.p99_us, load.p99_us),
                median_throughput_loss_pct: -pct(base_median, median(&pass_tp[k])),
                reader_cpu_pct: if secs[k] > 0.0 {
                    100.0 * counts[k].2 as f64 / 1e9 / secs[k]
                } else {
                    0.0
                },
                reader_cpu_ns_per_event: if counts[k].0 > 0 {
                    counts[k].2 as f64 / counts[k].0 as f64
                } else {
                    0.0
                },
                pass_throughputs: std::mem::take(&mut pass_tp[k]),
                machine_cpu_us_per_request: cpu_per_req(k),
                machine_cpu_per_request_change_pct: pct(base_cpu, cpu_per_req(k)),
                load,
                events: counts[k].0,
                events_dropped: counts[k].1,
            });
        }
        let iu = 0;
        // What a user runs to record: `vpath record` when there is a vpath
        // binary to run, else the in-memory recorder.
        let it = stages
            .iter()
            .position(|s| *s == Stage::LogWritten)
            .or_else(|| stages.iter().position(|s| *s == Stage::Recorded))
            .context("no recorded stage")?;
        let traced_stage = stages[it];
        let u = out[iu].load.clone();
        let t = out[it].load.clone();
        let cdf_csv = dir.join("latency-cdf.csv");
        let (lu, lt) = lat.split_at_mut(it);
        write_cdf(&cdf_csv, &mut lu[iu], &mut lt[0])?;
        let cdf_series = vec![
            CdfSeries::from_samples("untraced", "#4e79a7", &lu[iu]),
            CdfSeries::from_samples(
                format!("traced ({})", traced_stage.label()),
                "#e15759",
                &lt[0],
            ),
        ];
        let cdf_svg = dir.join("latency-cdf.svg");
        let title = format!(
            "vApp response time, untraced vs traced ({}, concurrency {}, {} passes of {} ms each)",
            o.model,
            self.opts.concurrency,
            o.passes,
            o.pass_duration.as_millis()
        );
        if let Some(svg) =
            vpath_io::export::html::cdf_svg_file(&title, &cdf_series, "response time (log scale)")
        {
            std::fs::write(&cdf_svg, svg)
                .with_context(|| format!("writing {}", cdf_svg.display()))?;
        }
        Ok(Overhead {
            model: o.model,
            concurrency: self.opts.concurrency,
            pass_duration_ms: o.pass_duration.as_millis() as u64,
            throughput_loss_pct: -pct(u.throughput, t.throughput),
            mean_increase_pct: pct(u.mean_us, t.mean_us),
            p50_increase_pct: pct(u.p50_us, t.p50_us),
            p90_increase_pct: pct(u.p90_us, t.p90_us),
            p99_increase_pct: pct(u.p99_us, t.p99_us),
            untraced: u,
            traced: t,
            traced_stage,
            cpu_per_request_us: [
                out[iu].machine_cpu_us_per_request,
                out[it].machine_cpu_us_per_request,
            ],
            cpu_per_request_increase_pct: out[it].machine_cpu_per_request_change_pct,
            events_delivered: counts[it].0,
            events_dropped: counts[it].1,
            cdf_csv,
            cdf_svg,
            cdf_series,
            stages: out,
        })
    }
}

/// The machine's busy CPU time so far (all CPUs: user, nice, system, irq,
/// softirq from the first line of /proc/stat), ns; 0 if unreadable.
fn machine_busy_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    busy * (1_000_000_000 / hz)
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User + system CPU time of a live process, ns, from /proc/PID/stat
/// (clock-tick resolution); 0 if unreadable.
fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the ")" closing the command name: state is field 3,
    // utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    (ticks(11) + ticks(12)) * 1_000_000_000 / hz
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// (events written, events lost) from `vpath record`'s closing line
/// "vpath: recorded N events in S s to F (M lost in the kernel...)";
/// zeros when the line is not there.
fn parse_record_summary(text: &str) -> (u64, u64) {
    let Some(line) = text.lines().rev().find(|l| l.contains("recorded ")) else {
        return (0, 0);
    };
    let num_after = |key: &str| -> Option<u64> {
        let i = line.find(key)? + key.len();
        line[i..].split_whitespace().next()?.parse().ok()
    };
    let written = num_after("recorded ").unwrap_or(0);
    let lost = line
        .rfind('(')
        .and_then(|i| line[i + 1..].split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (written, lost)
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Latency statistics of `lat` (ns), sorted in place.
pub fn load_stats(lat: &mut [u64], passes: usize, requests: u64, secs: f64) -> LoadStats {
    lat.sort_unstable();
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len() as f64
    };
    LoadStats {
        passes,
        requests,
        throughput: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        mean_us: mean / 1e3,
        p50_us: quantile(lat, 0.50) as f64 / 1e3,
        p90_us: quantile(lat, 0.90) as f64 / 1e3,
        p99_us: quantile(lat, 0.99) as f64 / 1e3,
    }
}

/// Writes the two latency distributions as a CDF: 200 quantiles.
pub fn write_cdf(path: &FsPath, untraced: &mut [u64], traced: &mut [u64]) -> anyhow::Result<()> {
    untraced.sort_unstable();
    traced.sort_unstable();
    let mut s = String::from("quantile,untraced_us,traced_us\n");
    for i in 1..=200 {
        let q = i as f64 / 200.0;
        s.push_str(&format!(
            "{q:.3},{:.1},{:.1}\n",
            quantile(untraced, q) as f64 / 1e3,
            quantile(traced, q) as f64 / 1e3
        ));
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// Names of the tiers (by listening address) and hosts (by address).
struct Names {
    tiers: BTreeMap<SocketAddr, String>,
    hosts: BTreeMap<std::net::IpAddr, String>,
}

/// The tier a span belongs to, from its endpoints.
fn tier_of(s: &Span, n: &Names) -> String {
    let host = |a: &SocketAddr| n.hosts.get(&a.ip()).cloned().unwrap_or_else(|| "?".into());
    match s.kind {
        // A call by a thread serving nothing: the client, or an unattributed
        // call of a tier.
        SpanKind::Origin => host(&s.local),
        SpanKind::Server => n
            .tiers
            .get(&s.local)
            .cloned()
            .unwrap_or_else(|| host(&s.local)),
        SpanKind::Remote => format!("{} (unobserved)", host(&s.remote)),
    }
}

fn count_edges(s: &Span, n: &Names, out: &mut BTreeMap<String, u64>) {
    let me = tier_of(s, n);
    for c in &s.children {
        *out.entry(format!("{me} -> {}", tier_of(c, n))).or_default() += 1;
        count_edges(c, n, out);
    }
}

/// Runs the demo. Everything it makes (namespaces, processes, BPF programs)
/// is gone when it returns, on success or error.
pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoReport> {
    let r = run_demo(opts);
    if r.is_err() && crate::hosts::terminating() {
        // A signal's cleanup killed what this run was waiting for; it exits
        // the process (128 + the signal) once the namespaces are gone. An
        // error or a return from here would race it, and could end the
        // process before the namespaces are deleted.
        loop {
            std::thread::park();
        }
    }
    r
}

fn run_demo(opts: &DemoOptions) -> anyhow::Result<DemoReport> {
    opts.topology.validate()?;
    if opts.tier_cmd.is_empty() {
        bail!("tier_cmd is empty: give the command that runs vApp");
    }
    if opts.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    std::fs::create_dir_all(&opts.workdir)
        .with_context(|| format!("creating {}", opts.workdir.display()))?;
    let mut names: Vec<&str> = vec![CLIENT];
    names.extend(opts.topology.tiers.iter().map(|t| t.name.as_str()));
    let hosts = Hosts::create(&names, opts.prefer_netns)?;
    let mut addr_of = BTreeMap::new();
    for t in &opts.topology.tiers {
        let ip = hosts.addr(&t.name).context("host address")?;
        addr_of.insert(t.name.clone(), SocketAddr::new(ip, t.port));
    }
    let mut host_addrs = BTreeMap::new();
    for n in &names {
        if let Some(a) = hosts.addr(n) {
            host_addrs.insert(n.to_string(), a.to_string());
        }
    }
    let names_of = Names {
        tiers: addr_of.iter().map(|(n, a)| (*a, n.clone())).collect(),
        hosts: names
            .iter()
            .filter_map(|n| hosts.addr(n).map(|a| (a, n.to_string())))
            .collect(),
    };
    let mut ctx = Ctx {
        opts,
        hosts,
        all_pids: Vec::new(),
        addr_of,
    };
    let mut accuracy = BTreeMap::new();
    let mut topology = BTreeMap::new();
    let mut sample_paths = Vec::new();
    // The pass whose paths the HTML report shows: thread-per-request (the
    // paper's model) when it ran, else the first.
    let mut shown: Option<(Model, PassRun)> = None;
    for &m in &opts.models {
        let (r, pass) = ctx.accuracy(m)?;
        let paths = &pass.paths;
        for p in paths {
            count_edges(&p.root, &names_of, &mut topology);
        }
        if sample_paths.len() < opts.show_paths {
            let mut best: Vec<&Path> = paths.iter().filter(|p| p.complete).collect();
            best.sort_by_key(|p| std::cmp::Reverse(p.root.count()));
            for p in best.into_iter().take(opts.show_paths - sample_paths.len()) {
                sample_paths.push(format!("[{m}] {}", vpath_io::sink::render_tree(p)));
            }
        }
        accuracy.insert(m.name().to_string(), r);
        if shown.is_none() || m == Model::ThreadPerRequest {
            shown = Some((m, pass));
        }
    }
    let overhead = match &opts.overhead {
        Some(o) => Some(ctx.overhead(o)?),
        None => None,
    };
    let namespaces = ctx.hosts.namespaces().to_vec();
    let mode = ctx.hosts.mode();
    let pids = std::mem::take(&mut ctx.all_pids);
    drop(ctx); // tears the hosts down
    let mut report = DemoReport {
        hosts: mode,
        host_addrs,
        concurrency: opts.concurrency,
        accuracy_duration_ms: opts.accuracy_duration.as_millis() as u64,
        content: if opts.no_content { "off" } else { "labels" },
        accuracy,
        topology,
        sample_paths,
        overhead,
        workdir: opts.workdir.clone(),
        pids,
        namespaces,
        report: None,
    };
    let file = opts.workdir.join("report.html");
    write_html(&report, shown.as_ref(), &file)?;
    report.report = Some(file);
    Ok(report)
}

/// Writes the demo's HTML report: the paths of `shown`, the accuracy of
/// every model, the capture health of that pass, and the overhead.
fn write_html(
    report: &DemoReport,
    shown: Option<&(Model, PassRun)>,
    file: &FsPath,
) -> anyhow::Result<()> {
    let hosts = match report.hosts {
        HostMode::Netns => "a network namespace each",
        HostMode::Loopback => "loopback addresses",
    };
    let mut html = HtmlReport::new()
        .title("vpath demo: vApp")
        .subtitle(format!(
            "{} hosts ({hosts}), recorded with eBPF; concurrency {}, {} ms recorded per execution model",
            report.host_addrs.len(),
            report.concurrency,
            report.accuracy_duration_ms
        ));
    if let Some((m, _)) = shown {
        html = html.paths_from(format!(
            "the {m} accuracy pass ({} ms recorded at concurrency {}); the accuracy table below covers every model",
            report.accuracy_duration_ms, report.concurrency
        ));
    }
    let rows = report
        .accuracy
        .iter()
        .map(|(m, r)| AccuracyRow {
            model: m.clone(),
            paths: r.score.paths,
            exact: r.score.exact,
            wrong: r.score.wrong,
            incomplete: r.score.incomplete,
            false_complete: r.score.false_complete,
            discovered: r.score.discovered,
            events: r.analyzer.events,
            events_lost: r.analyzer.events_lost,
            issues: r.issues.clone(),
        })
        .collect();
    html = html.accuracy(
        rows,
        Some(
            "An event loop serving several requests at once is never wrong but mostly incomplete: vpath refuses \
             to guess which request its calls belong to."
                .into(),
        ),
    );
    if let Some(o) = &report.overhead {
        let load = |label: &str, l: &LoadStats| LoadRow {
            label: label.into(),
            throughput: l.throughput,
            mean_us: l.mean_us,
            p50_us: l.p50_us,
            p90_us: l.p90_us,
            p99_us: l.p99_us,
        };
        let mut tables = Vec::new();
        if !o.stages.is_empty() {
            tables.push(Table {
                caption: format!(
                    "Dissection: what each part of the recorder costs (stages alternate, {} passes each)",
                    o.untraced.passes
                ),
                columns: [
                    "stage", "req/s", "change", "median", "p50 µs", "change", "p99 µs", "change",
                    "events", "reader CPU", "ns/event", "machine CPU/req", "change",
                ]
                .map(String::from)
                .to_vec(),
                rows: o
                    .stages
                    .iter()
                    .map(|st| {
                        vec![
                            st.label.to_string(),
                            format!("{:.0}", st.load.throughput),
                            format!("{:+.1}%", -st.throughput_loss_pct),
                            format!("{:+.1}%", -st.median_throughput_loss_pct),
                            format!("{:.1}", st.load.p50_us),
                            format!("{:+.1}%", st.p50_increase_pct),
                            format!("{:.1}", st.load.p99_us),
                            format!("{:+.1}%", st.p99_increase_pct),
                            st.events.to_string(),
                            format!("{:.1}%", st.reader_cpu_pct),
                            format!("{:.0}", st.reader_cpu_ns_per_event),
                            format!("{:.1} µs", st.machine_cpu_us_per_request),
                            format!("{:+.1}%", st.machine_cpu_per_request_change_pct),
                        ]
                    })
                    .collect(),
                note: Some(
                    "change: of total req/s against untraced; median: of per-pass req/s; reader CPU: the \
                     user-space reader, % of one core; machine CPU/req: the whole machine's busy CPU time \
                     (not idle, iowait or steal) per request."
                        .into(),
                ),
            });
        }
        html = html.overhead(OverheadSection {
            description: format!(
                "vApp ({}) at saturation, concurrency {}: {} untraced and {} traced passes of {} ms, alternating. \
                 Traced = {}.",
                o.model,
                o.concurrency,
                o.untraced.passes,
                o.traced.passes,
                o.pass_duration_ms,
                o.traced_stage.describe()
            ),
            untraced: load("untraced", &o.untraced),
            traced: load("traced", &o.traced),
            events: o.events_delivered,
            events_dropped: o.events_dropped,
            cdf: o.cdf_series.clone(),
            cdf_csv: Some(o.cdf_csv.display().to_string()),
            tables,
        });
    }
    let (paths, info) = match shown {
        Some((m, pass)) => (
            &pass.paths[..],
            RunInfo {
                sources: vec![SourceInfo {
                    file: format!("live eBPF capture ({m} pass)"),
                    format: "live".into(),
                    host: "vapp".into(),
                    clock: "monotonic".into(),
                    wall_minus_mono_ns: pass.wall_minus_mono_ns,
                    checkpointed: true,
                    records: pass.stats.records,
                    clean_end: None,
                    skipped: 0,
                    errors: 0,
                }],
                stats: pass.stats.clone(),
            },
        ),
        None => (&[][..], RunInfo::default()),
    };
    let f = std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut sink = html.sink(std::io::BufWriter::new(f));
    for p in paths {
        sink.path(p)?;
    }
    sink.finish(&info)
        .with_context(|| format!("writing {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_serialize_with_their_names_and_changes() {
        let load = |t: f64| LoadStats {
            passes: 1,
            requests: t as u64,
            throughput: t,
            p50_us: 100.0 * 1000.0 / t,
            p99_us: 300.0 * 1000.0 / t,
            ..Default::default()
        };
        let st = StageStats {
            stage: Stage::RingTransfer,
            label: Stage::RingTransfer.label(),
            load: load(900.0),
            throughput_loss_pct: 10.0,
            p50_increase_pct: 11.1,
            p99_increase_pct: 11.1,
            events: 5,
            events_dropped: 1,
            pass_throughputs: vec![900.0],
            median_throughput_loss_pct: 10.0,
            reader_cpu_pct: 1.5,
            reader_cpu_ns_per_event: 300.0,
            machine_cpu_us_per_request: 210.0,
            machine_cpu_per_request_change_pct: 5.0,
        };
        let j = serde_json::to_value(&st).unwrap();
        assert_eq!(j["stage"], "ring_transfer");
        assert_eq!(j["label"], "ring-buffer transfer");
        assert_eq!(j["throughput"], 900.0);
        assert_eq!(j["throughput_loss_pct"], 10.0);
        assert_eq!(j["events"], 5);
        assert_eq!(j["reader_cpu_ns_per_event"], 300.0);
        assert_eq!(j["machine_cpu_us_per_request"], 210.0);
        assert!(machine_busy_ns() > 0, "/proc/stat is readable");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert!(process_cpu_ns(std::process::id()) < 3_600_000_000_000);
        assert!(thread_cpu_ns() > 0);
        let names: Vec<String> = Stage::ALL
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "untraced",
                "events_caught",
                "ring_transfer",
                "log_written",
                "recorded"
            ]
        );
    }

    #[test]
    fn record_summary_line_is_parsed() {
        let t = "noise\nvpath: recorded 123456 events in 5.0 s to /x/p.vplog (7 lost in the kernel: paths touched by the loss will be marked incomplete)\n";
        assert_eq!(parse_record_summary(t), (123456, 7));
        let t = "vpath: recorded 9 events in 5.0 s to /x (0 lost in the kernel)";
        assert_eq!(parse_record_summary(t), (9, 0));
        assert_eq!(parse_record_summary("vpath: error: boom"), (0, 0));
        assert_eq!(parse_record_summary(""), (0, 0));
    }

    #[test]
    fn stats_and_cdf_are_computed_from_the_samples() {
        let mut lat: Vec<u64> = (1..=100).rev().map(|x| x * 1000).collect();
        let s = load_stats(&mut lat, 1, 100, 2.0);
        assert_eq!(s.throughput, 50.0);
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p90_us, 90.0);
        assert_eq!(s.p99_us, 99.0);
        assert!((s.mean_us - 50.5).abs() < 1e-9);
        let dir = std::env::temp_dir().join(format!("vpd-cdf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.csv");
        write_cdf(
            &p,
            &mut lat.clone(),
            &mut lat.iter().map(|x| x * 2).collect::<Vec<_>>(),
        )
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 201);
        assert_eq!(lines[100], "0.500,50.0,100.0");
        assert_eq!(lines[200], "1.000,100.0,200.0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
