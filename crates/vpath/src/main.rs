//! The `vpath` command: a thin layer over the library crates.

mod capture;
mod direct;
mod rawlog;

/// The recorder allocates per labelled event (a boxed label reference),
/// and the reorder buffer frees those allocations a poll later, in another
/// order: glibc's malloc took a fifth of the reader's time under load
/// (docs/probes.md). mimalloc's thread-local free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use vpath_core::Config;
use vpath_io::{JsonlSink, Sink, SummarySink, TextSink};

#[derive(Parser)]
#[command(
    name = "vpath",
    version,
    about = "Exact request-processing paths from thread and socket activity, with no instrumentation"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Indented trees, like the paper's "discovered path" figures.
    Text,
    /// One JSON object per path: the stable machine contract.
    Jsonl,
    /// OTLP/JSON: one ExportTraceServiceRequest per line.
    OtlpJson,
    /// Jaeger UI JSON upload.
    Jaeger,
    /// Chrome/Perfetto trace-event JSON.
    Perfetto,
    /// Tier topology as Graphviz DOT.
    Dot,
    /// Tier topology as a Mermaid flowchart.
    Mermaid,
    /// One self-contained HTML report (topology, searchable paths with
    /// waterfalls, latency CDFs, capture health); opens offline.
    Html,
}

/// What `live` prints as paths complete (exports that need the whole run,
/// like Jaeger or Perfetto files, are for `analyze`).
#[derive(Clone, Copy, ValueEnum)]
enum LiveFormat {
    Text,
    Jsonl,
}

/// How the analyzer decides; shared by `analyze` and `live`.
#[derive(clap::Args, Clone, Debug)]
struct AnalysisArgs {
    /// How long (ms, stream time) to wait for the other end of a link
    /// before deciding it is unobserved. Must exceed clock skew between hosts.
    #[arg(long, default_value_t = 5000)]
    horizon_ms: u64,
    /// Flush a span whose reply has been idle this long (ms, stream time).
    #[arg(long, default_value_t = 1000)]
    idle_flush_ms: u64,
    /// Cut paths below this many levels of spans: the deepest span kept
    /// says `depth-limit` and the spans cut are counted. The default keeps
    /// `--format jsonl` within serde_json's default nesting limit.
    #[arg(long, default_value_t = Config::default().max_depth, value_parser = clap::value_parser!(usize))]
    max_depth: usize,
}

impl AnalysisArgs {
    fn config(&self) -> Config {
        Config {
            horizon_ns: self.horizon_ms.saturating_mul(1_000_000),
            idle_flush_ns: self.idle_flush_ms.saturating_mul(1_000_000),
            max_depth: self.max_depth,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Discover paths in recorded logs (one file per host): vpath logs,
    /// strace -f -ttt -yy output, or the vPath seed's Xen log.
    Analyze {
        /// Input files, one per host.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Print path patterns and per-tier latency percentiles instead of paths.
        #[arg(long)]
        summary: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisArgs,
        /// Also send the paths as OTLP/HTTP protobuf to this collector
        /// (`http://host[:port][/path]`; port 4318, path /v1/traces by default).
        #[arg(long, value_name = "URL")]
        otlp_endpoint: Option<String>,
    },
    /// Record thread and socket activity host-wide with eBPF into a log.
    Record {
        /// The log file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// `raw` (default): the kernel's records as they came, the cheapest
        /// to record (about 100 bytes per event; `analyze` parses them);
        /// `events`: parsed and interned while recording (about 20 bytes per
        /// event, several times the recorder's CPU).
        #[arg(long, value_enum, default_value = "raw")]
        format: capture::LogFormat,
        #[command(flatten)]
        capture: capture::CaptureArgs,
    },
    /// Capture and analyze together: print each path as it completes.
    Live {
        #[arg(long, value_enum, default_value = "text")]
        format: LiveFormat,
        /// Also stream the paths as they complete to this OTLP/HTTP collector
        /// (`http://host[:port][/path]`; port 4318, path /v1/traces by
        /// default), in batches of 512 spans or every second, from a sender
        /// thread; batches it cannot queue are dropped and reported at the end.
        #[arg(long, value_name = "URL")]
        otlp_endpoint: Option<String>,
        #[command(flatten)]
        analysis: AnalysisArgs,
        #[command(flatten)]
        capture: capture::CaptureArgs,
    },
    /// Run the built-in multi-tier application (vApp) in network namespaces,
    /// record it with eBPF, discover its paths, score them against ground
    /// truth, and measure the overhead. Needs root.
    Demo {
        /// A few seconds in all (what CI runs).
        #[arg(long)]
        quick: bool,
        /// Client threads driving the load.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Seconds recorded per execution model.
        #[arg(long)]
        duration: Option<f64>,
        /// Skip the overhead measurement.
        #[arg(long)]
        no_overhead: bool,
        /// Record as `vpath record --no-content` does: no message bytes
        /// read, so no protocol labels.
        #[arg(long)]
        no_content: bool,
        /// Keep ground truth, discovered paths and the latency CDF here.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Print the report as one JSON object on the last line, too.
        #[arg(long)]
        json: bool,
    },
    /// vApp itself, as launched by `vpath demo` (not for direct use).
    #[command(name = "__vapp", hide = true)]
    Vapp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a vpath log as text, one line per record (a raw log's records
    /// replayed into events, as `analyze` reads them).
    Dump {
        file: PathBuf,
        /// For a raw log: its records as stored (ring, length, first bytes),
        /// not replayed.
        #[arg(long)]
        raw: bool,
    },
    /// Rewrite a vpath log (raw or events) as an event log: a raw capture
    /// parsed, ordered and interned, about 5x smaller.
    Convert {
        file: PathBuf,
        /// The event log to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (vpath ... | head) is not an error worth a word.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("vpath: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn output(path: &Option<PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Analyze {
            files,
            format,
            summary,
            output: out,
            analysis,
            otlp_endpoint,
        } => {
            let mut sources = Vec::new();
            for f in &files {
                sources.push(vpath_io::open_with(f, Some(rawlog::replay_for))?);
            }
            let w = output(&out)?;
            let mut sink: Box<dyn Sink> = match (summary, format) {
                (true, _) => Box::new(SummarySink::new(w)),
                (false, Format::Text) => Box::new(TextSink::new(w)),
                (false, Format::Jsonl) => Box::new(JsonlSink::new(w)),
                (false, Format::OtlpJson) => Box::new(vpath_io::OtlpJsonSink::new(w)),
                (false, Format::Jaeger) => Box::new(vpath_io::JaegerSink::new(w)),
                (false, Format::Perfetto) => Box::new(vpath_io::PerfettoSink::new(w)),
                (false, Format::Dot) => Box::new(vpath_io::DotSink::new(w)),
                (false, Format::Mermaid) => Box::new(vpath_io::MermaidSink::new(w)),
                (false, Format::Html) => Box::new(vpath_io::export::HtmlSink::new(w)),
            };
            if let Some(url) = &otlp_endpoint {
                let otlp = vpath_io::OtlpHttpSink::new(url)?;
                sink = Box::new(vpath_io::Tee::new(sink, Box::new(otlp)));
            }
            let config = analysis.config();
            let mut errors = 0u64;
            let info = vpath_io::analyze(sources, config, sink.as_mut(), &mut |e| {
                errors += 1;
                eprintln!("vpath: {e}");
            })?;
            // Text and summary end with it on stdout; machine formats keep
            // stdout clean and say it on stderr.
            if !matches!(format, Format::Text) && !summary {
                eprintln!("{}", vpath_io::sink::health_line(&info));
            }
            Ok(if errors > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Record {
            output,
            format,
            capture,
        } => capture::record(&capture, &output, format),
        Cmd::Live {
            format,
            otlp_endpoint,
            analysis,
            capture,
        } => capture::live(
            &capture,
            matches!(format, LiveFormat::Jsonl),
            analysis.config(),
            otlp_endpoint.as_deref(),
        ),
        Cmd::Demo {
            quick,
            concurrency,
            duration,
            no_overhead,
            no_content,
            workdir,
            json,
        } => {
            let exe = std::env::current_exe().context("finding the vpath executable")?;
            let tier_cmd = vec![exe.display().to_string(), "__vapp".to_string()];
            let mut opts = if quick {
                vpath_demo::DemoOptions::quick(tier_cmd)
            } else {
                vpath_demo::DemoOptions::new(tier_cmd)
            };
            if let Some(c) = concurrency {
                opts.concurrency = c.max(1);
            }
            if let Some(d) = duration {
                opts.accuracy_duration = std::time::Duration::from_secs_f64(d.max(0.1));
            }
            if no_overhead {
                opts.overhead = None;
            }
            opts.no_content = no_content;
            if let Some(w) = workdir {
                opts.workdir = w;
            }
            let report = vpath_demo::run(&opts)?;
            let mut out = io::stdout().lock();
            out.write_all(report.render_text().as_bytes())?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report.to_json())?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Vapp { args } => Ok(vpath_demo::vapp_main(args)),
        Cmd::Convert { file, output } => rawlog::convert(&file, &output),
        Cmd::Dump { file, raw } => {
            let mut reader = vpath_log::LogReader::open(&file)?;
            // A raw log is replayed into a scratch event log, which dumps
            // as any other (and says whether the input ended cleanly).
            let _scratch;
            if reader.header().is_raw() && !raw {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let tmp = std::env::temp_dir()
                    .join(format!("vpath-dump-{}-{nanos}.vlog", std::process::id()));
                // Made here, new (never a file or link that was there), and
                // removed when the dump ends.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("creating the scratch file {}", tmp.display()))?;
                _scratch = rawlog::Scratch(tmp.clone());
                let conv = rawlog::convert_quiet(&file, &tmp)?;
                println!(
                    "# {}: a raw log, replayed (`vpath dump --raw` shows its records as stored)",
                    file.display()
                );
                if let Some(why) = conv.cut {
                    println!("# the replay stopped early: {why}");
                }
                reader = vpath_log::LogReader::open(&tmp)?;
            }
            let mut out = BufWriter::new(io::stdout().lock());
            let r = vpath_log::dump(&mut reader, &mut out);
            out.flush()?;
            r.with_context(|| format!("{}", file.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
