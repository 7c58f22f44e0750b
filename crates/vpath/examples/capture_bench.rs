//! The recorder's capacity and cost, measured on this machine (needs root):
//!
//! ```text
//! cargo run --release -p vpath --example capture_bench [-- OPTIONS]
//! ```
//!
//! (a) **Capacity**: a loopback TCP ping-pong load at increasing concurrency
//!     runs under `vpath record`; each step reports the load's rate, the
//!     events the kernel emitted per second, and the events lost. The answer
//!     is the highest event rate with 0 drops.
//! (b) **Cost**: the same syscall-bound workload (one client thread, one
//!     server thread, 1-byte request and reply: 4 socket syscalls per round
//!     trip) untraced, under `vpath record`, and under `strace -f -o
//!     /dev/null`, reporting the time per round trip of each.
//!
//! The workload is this program itself (`capture_bench __load ...`), so
//! that `vpath record -- CMD` starts it only once the probes are attached.
//! Options:
//!   --steps 1,2,3,4,6,8,12,16   client threads per capacity step
//!   --secs S             seconds per capacity step (default 2)
//!   --ring-bytes B       ring buffer for the capacity steps (default: vpath's)
//!   --ops N              round trips per cost run (default 20000)
//!   --reps N             runs per cost variant; the median is reported (default 3)
//!   --vpath PATH         the vpath binary (default: env VPATH_BIN, else the one
//!                        next to this example, built on demand)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("argument {index}: unknown option {opt:?}")]
    Unknown { index: usize, opt: String },
    #[error("argument {index}: option {opt} needs a value")]
    Missing { index: usize, opt: String },
    #[error("argument {index}: bad value {value:?} for {opt}: expected {expected}")]
    Bad {
        index: usize,
        opt: String,
        value: String,
        expected: &'static str,
    },
}

struct Opts {
    steps: Vec<usize>,
    secs: f64,
    ring_bytes: Option<u32>,
    ops: u64,
    reps: usize,
    vpath: Option<PathBuf>,
}

fn parse_opts(args: &[String]) -> Result<Opts, ArgError> {
    let mut o = Opts {
        steps: vec![1, 2, 3, 4, 6, 8, 12, 16],
        secs: 2.0,
        ring_bytes: None,
        ops: 20_000,
        reps: 3,
        vpath: std::env::var_os("VPATH_BIN").map(PathBuf::from),
    };
    let mut i = 0;
    while i < args.len() {
        let opt = args[i].clone();
        let index = i + 1;
        let value = |i: usize| -> Result<String, ArgError> {
            args.get(i + 1).cloned().ok_or(ArgError::Missing {
                index,
                opt: opt.clone(),
            })
        };
        let bad = |value: &str, expected| ArgError::Bad {
            index: index + 1,
            opt: opt.clone(),
            value: value.to_string(),
            expected,
        };
        match opt.as_str() {
            "--steps" => {
                let v = value(i)?;
                o.steps = v
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(&v, "a comma-separated list of thread counts (>= 1)"))?;
            }
            "--secs" => {
                let v = value(i)?;
                o.secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s < 3600.0)
                    .ok_or_else(|| bad(&v, "seconds, more than 0"))?;
            }
            "--ring-bytes" => {
                let v = value(i)?;
                o.ring_bytes = Some(
                    v.parse()
                        .ok()
                        .filter(|b: &u32| b.is_power_of_two() && *b >= 4096)
                        .ok_or_else(|| bad(&v, "a power of two, at least 4096"))?,
                );
            }
            "--ops" => {
                let v = value(i)?;
                o.ops = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(&v, "a number of round trips (>= 1)"))?;
            }
            "--reps" => {
                let v = value(i)?;
                o.reps = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(&v, "a number of runs (>= 1)"))?;
            }
            "--vpath" => o.vpath = Some(PathBuf::from(value(i)?)),
            _ => return Err(ArgError::Unknown { index, opt }),
        }
        i += 2;
    }
    Ok(o)
}

// ---------------------------------------------------------------- workload

/// `__load PORT THREADS MILLIS OPS`: an echo server on 127.0.0.1:PORT and
/// THREADS clients, each doing 1-byte request/reply round trips on its own
/// connection until MILLIS have passed or it has done OPS (0: no limit).
/// Prints `ops=N ns=T` (round trips, nanoseconds of the load phase).
fn load(args: &[String]) -> anyhow::Result<()> {
    let num = |i: usize, what: &str| -> anyhow::Result<u64> {
        let v = args
            .get(i)
            .with_context(|| format!("__load: argument {} ({what}) missing", i + 1))?;
        v.parse()
            .with_context(|| format!("__load: argument {} ({what}): bad number {v:?}", i + 1))
    };
    let port = u16::try_from(num(0, "port")?).context("__load: port above 65535")?;
    let threads = num(1, "threads")?.max(1) as usize;
    let millis = num(2, "millis")?;
    let ops = num(3, "ops")?;
    if millis == 0 && ops == 0 {
        bail!("__load: give a duration or a number of round trips");
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut b = [0u8; 1];
                while matches!(s.read(&mut b), Ok(1)) {
                    if s.write_all(&b).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut conns = Vec::new();
    for _ in 0..threads {
        let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let done = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = (millis > 0).then(|| t0 + Duration::from_millis(millis));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let (done, total) = (done.clone(), total.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut b = [7u8; 1];
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) && (ops == 0 || n < ops) {
                    s.write_all(&b)?;
                    s.read_exact(&mut b)?;
                    n += 1;
                    if n & 255 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    for w in workers {
        match w.join() {
            Ok(r) => r.context("a load connection failed")?,
            Err(_) => bail!("a load thread panicked"),
        }
    }
    let ns = t0.elapsed().as_nanos();
    done.store(true, Ordering::Relaxed);
    println!("ops={} ns={ns}", total.load(Ordering::Relaxed));
    Ok(())
}

/// The `ops=N ns=T` line of a load run.
fn parse_load_line(out: &str) -> anyhow::Result<(u64, u64)> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("ops="))
        .with_context(|| format!("no `ops=N ns=T` line in the load's output: {out:?}"))?;
    let mut ops = None;
    let mut ns = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("ops", v)) => ops = v.parse().ok(),
            Some(("ns", v)) => ns = v.parse().ok(),
            _ => {}
        }
    }
    match (ops, ns) {
        (Some(o), Some(n)) if n > 0 => Ok((o, n)),
        _ => bail!("bad load line {line:?}: expected `ops=N ns=T` with numbers"),
    }
}

// ---------------------------------------------------------------- driver

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The vpath binary: given, or next to this example (built if missing).
fn vpath_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("{}: no such vpath binary", p.display());
        }
        return Ok(p);
    }
    let me = std::env::current_exe().context("finding this example's path")?;
    // <target>/<profile>/examples/capture_bench
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .context("this example is not under <target>/<profile>/examples")?;
    let bin = profile_dir.join("vpath");
    if bin.is_file() {
        return Ok(bin);
    }
    let target = profile_dir
        .parent()
        .context("this example is not under <target>/<profile>/examples")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    eprintln!("building the vpath binary ({})", bin.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "-p", "vpath", "--bin", "vpath", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target);
    if release {
        c.arg("--release");
    }
    let st = c
        .status()
        .context("running cargo build for the vpath binary")?;
    if !st.success() || !bin.is_file() {
        bail!(
            "could not build {}; build it with `cargo build --release -p vpath` or pass --vpath",
            bin.display()
        );
    }
    Ok(bin)
}

/// The End trailer of a recorded log.
fn end_stats(log: &Path) -> anyhow::Result<vpath_log::EndStats> {
    let mut r = vpath_log::LogReader::open(log)?;
    while r
        .next_item()
        .with_context(|| format!("reading {}", log.display()))?
        .is_some()
    {}
    r.end().with_context(|| {
        format!(
            "{}: no End trailer: the recording did not end cleanly",
            log.display()
        )
    })
}

struct Bench {
    me: PathBuf,
    vpath: PathBuf,
    dir: PathBuf,
}

/// How a workload run is wrapped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    None,
    Vpath,
    Strace,
}

impl Wrap {
    fn name(self) -> &'static str {
        match self {
            Wrap::None => "untraced",
            Wrap::Vpath => "vpath record",
            Wrap::Strace => "strace -f",
        }
    }
}

struct RunResult {
    ops: u64,
    ns: u64,
    end: Option<vpath_log::EndStats>,
}

impl Bench {
    fn run(
        &self,
        wrap: Wrap,
        threads: usize,
        millis: u64,
        ops: u64,
        ring: Option<u32>,
    ) -> anyhow::Result<RunResult> {
        let port = free_port()?;
        let load: Vec<String> = vec![
            "__load".into(),
            port.to_string(),
            threads.to_string(),
            millis.to_string(),
            ops.to_string(),
        ];
        let log = self.dir.join("bench.vlog");
        let mut c = match wrap {
            Wrap::None => Command::new(&self.me),
            Wrap::Strace => {
                let mut c = Command::new("strace");
                c.args(["-f", "-o", "/dev/null"]).arg(&self.me);
                c
            }
            Wrap::Vpath => {
                let mut c = Command::new(&self.vpath);
                c.args(["record", "--port", &port.to_string(), "-o"])
                    .arg(&log);
                if let Some(b) = ring {
                    c.args(["--ring-bytes", &b.to_string()]);
                }
                c.arg("--").arg(&self.me);
                c
            }
        };
        c.args(&load).stdin(Stdio::null());
        let out = c
            .output()
            .with_context(|| format!("running the load under {}", wrap.name()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "the load under {} failed ({}): {}",
                wrap.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (ops, ns) = parse_load_line(&stdout)?;
        let end = match wrap {
            Wrap::Vpath => Some(end_stats(&log)?),
            _ => None,
        };
        let _ = std::fs::remove_file(&log);
        Ok(RunResult { ops, ns, end })
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = if args.first().map(String::as_str) == Some("__load") {
        load(&args[1..])
    } else {
        bench(&args)
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capture_bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let o = parse_opts(args)?;
    let me = std::env::current_exe().context("finding this example's path")?;
    let vpath = vpath_bin(o.vpath.clone())?;
    let dir = std::env::temp_dir().join(format!("vpath-capture-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let b = Bench { me, vpath, dir };
    let r = bench_inner(&b, &o);
    let _ = std::fs::remove_dir_all(&b.dir);
    r
}

fn bench_inner(b: &Bench, o: &Opts) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("capture_bench: {cpus} CPUs, vpath = {}", b.vpath.display());
    println!(
        "\n(a) capacity: loopback 1-byte ping-pong, {:.1} s per step, ring {}",
        o.secs,
        o.ring_bytes
            .map_or("default (16 MiB)".to_string(), |r| format!("{r} bytes"))
    );
    println!(
        "{:>8} {:>12} {:>14} {:>14} {:>12} {:>8}",
        "threads", "round trips/s", "events emitted", "events/s", "lost", "lost %"
    );
    let millis = (o.secs * 1000.0) as u64;
    let mut best: Option<(usize, f64)> = None;
    let mut first_loss: Option<(usize, f64, u64)> = None;
    for &t in &o.steps {
        let r = b.run(Wrap::Vpath, t, millis, 0, o.ring_bytes)?;
        let end = r.end.unwrap_or_default();
        let secs = r.ns as f64 / 1e9;
        let rate = end.events_emitted as f64 / secs;
        println!(
            "{:>8} {:>12.0} {:>14} {:>14.0} {:>12} {:>7.2}%",
            t,
            r.ops as f64 / secs,
            end.events_emitted,
            rate,
            end.events_lost,
            100.0 * end.events_lost as f64 / end.events_emitted.max(1) as f64
        );
        if end.events_emitted != end.events_written + end.events_lost {
            println!(
                "         WARNING: emitted {} != written {} + lost {}",
                end.events_emitted, end.events_written, end.events_lost
            );
        }
        if end.events_lost == 0 {
            if best.is_none_or(|(_, r)| rate > r) {
                best = Some((t, rate));
            }
        } else if first_loss.is_none() {
            first_loss = Some((t, rate, end.events_lost));
        }
    }
    match best {
        Some((t, r)) => {
            println!("highest event rate with 0 drops: {r:.0} events/s ({t} client threads)")
        }
        None => println!("every step dropped events"),
    }
    if let Some((t, r, l)) = first_loss {
        println!("first loss: {t} threads, {r:.0} events/s, {l} lost");
    } else {
        println!("no step dropped events: the load, not the recorder, was the limit");
    }

    println!(
        "\n(b) cost: one thread, {} round trips of 1 byte (4 socket syscalls each), median of {}",
        o.ops, o.reps
    );
    println!(
        "{:>14} {:>16} {:>12} {:>10}",
        "variant", "ns/round trip", "ns/syscall", "vs untraced"
    );
    let mut base = None;
    for wrap in [Wrap::None, Wrap::Vpath, Wrap::Strace] {
        let mut per = Vec::new();
        let mut lost = 0;
        for _ in 0..o.reps {
            let r = b.run(wrap, 1, 0, o.ops, None)?;
            if r.ops == 0 {
                bail!("the load under {} made no round trips", wrap.name());
            }
            lost += r.end.map_or(0, |e| e.events_lost);
            per.push(r.ns as f64 / r.ops as f64);
        }
        per.sort_by(f64::total_cmp);
        let med = per[per.len() / 2];
        let base_v = *base.get_or_insert(med);
        println!(
            "{:>14} {:>16.0} {:>12.0} {:>9.2}x{}",
            wrap.name(),
            med,
            med / 4.0,
            med / base_v,
            if lost > 0 {
                format!("  ({lost} events lost)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
