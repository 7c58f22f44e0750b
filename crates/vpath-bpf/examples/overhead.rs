//! Overhead of the probes on a syscall-bound loop: one thread writes 1 byte
//! to one end of a loopback TCP connection and reads it from the other end,
//! so every iteration is two traced syscalls (one send event, one receive
//! event). Rounds alternate untraced and traced in one run; a last traced
//! round with `kernel.bpf_stats_enabled=1` gives in-kernel time per program.
//! Each round also runs the loop with probes that return after their filters
//! (the "events caught" stage) and times an untraced syscall (getppid).
//!
//! Run as root: cargo run --release -p vpath-bpf --example overhead [ITERS] [ROUNDS]
//! `VPATH_CONTENT=off|labels|N` picks the content capture (default: labels,
//! as `vpath record`; N: payload capture of N bytes). Here every operation
//! starts a message (1-byte ping-pong), the worst case for content capture.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vpath_bpf::{ContentCapture, Filters, ProgramStats, Recorder, RecorderOptions};

fn content_from_env() -> ContentCapture {
    match std::env::var("VPATH_CONTENT").as_deref() {
        Ok("off") => ContentCapture::Off,
        Ok("labels") | Err(_) => ContentCapture::Labels {
            prefix: ContentCapture::DEFAULT_PREFIX,
        },
        Ok(n) => ContentCapture::Payload {
            bytes: n
                .parse()
                .expect("VPATH_CONTENT: off, labels or a byte count"),
        },
    }
}
use vpath_core::Record;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Returns (wall ns/iter, this thread's CPU ns/iter). CPU time includes the
/// probes (they run in the syscalls) but not time lost to other processes
/// on a busy machine, so it is the steadier of the two.
fn pingpong(a: i32, b: i32, iters: u64) -> (f64, f64) {
    let mut buf = [0u8; 1];
    let c0 = thread_cpu_ns();
    let t = Instant::now();
    for _ in 0..iters {
        // SAFETY: valid fds and a 1-byte buffer.
        let w = unsafe { libc::write(a, b"x".as_ptr().cast(), 1) };
        // SAFETY: as above.
        let r = unsafe { libc::read(b, buf.as_mut_ptr().cast(), 1) };
        assert!(w == 1 && r == 1, "write {w} read {r}");
    }
    let wall = t.elapsed().as_nanos() as f64 / iters as f64;
    (wall, (thread_cpu_ns() - c0) as f64 / iters as f64)
}

/// CPU ns per getppid(): a syscall no probe traces. Attaching the
/// classic accept tracepoints puts every syscall of every thread on the
/// kernel's syscall-tracing slow path; this shows what that costs.
fn other_syscall(iters: u64) -> f64 {
    let c0 = thread_cpu_ns();
    for _ in 0..iters {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    }
    (thread_cpu_ns() - c0) as f64 / iters as f64
}

struct Traced {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64, Vec<ProgramStats>)>,
}

fn start_traced(discard_in_kernel: bool) -> Traced {
    let opts = RecorderOptions {
        exclude_self: false, // the workload is this process
        discard_in_kernel,
        content: content_from_env(),
        ..Default::default()
    };
    let mut rec = Recorder::start(&Filters::default(), opts).expect("start recorder (run as root)");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut count = |r: Record| n += matches!(r, Record::Event(_)) as u64;
        while !s2.load(Ordering::Relaxed) {
            rec.poll(&mut count).expect("poll");
        }
        let stats = rec.program_stats();
        let c = rec.stop(&mut count).expect("stop");
        (n, c.events_dropped, stats)
    });
    Traced { stop, handle }
}

/// Detaching frees programs and a 16 MiB ring through RCU callbacks that
/// may run in softirq on the benchmark's CPU and be charged to its thread:
/// let them finish before the next timed loop.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn set_bpf_stats(on: bool) {
    let _ = std::fs::write(
        "/proc/sys/kernel/bpf_stats_enabled",
        if on { "1" } else { "0" },
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    a.set_nodelay(true).unwrap();
    let (b, _) = l.accept().unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    pingpong(fa, fb, iters / 4); // warm up

    set_bpf_stats(false);
    let (mut base, mut traced, mut base_cpu, mut traced_cpu) = (vec![], vec![], vec![], vec![]);
    let (mut other_u, mut other_t, mut caught_cpu) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let (u, uc) = pingpong(fa, fb, iters);
        other_u.push(other_syscall(iters * 4));
        // Probes that return after their filters: the cost of catching.
        let t = start_traced(true);
        let (_, cc) = pingpong(fa, fb, iters);
        t.stop.store(true, Ordering::Relaxed);
        t.handle.join().unwrap();
        settle();
        caught_cpu.push(cc);
        let t = start_traced(false);
        let (tr, tc) = pingpong(fa, fb, iters);
        other_t.push(other_syscall(iters * 4));
        t.stop.store(true, Ordering::Relaxed);
        let (events, dropped, _) = t.handle.join().unwrap();
        settle();
        println!(
            "round {round}: untraced {u:7.1} wall {uc:7.1} cpu ns/iter | traced {tr:7.1} wall {tc:7.1} cpu ns/iter | events {events} dropped {dropped}"
        );
        base.push(u);
        traced.push(tr);
        base_cpu.push(uc);
        traced_cpu.push(tc);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    for (what, b, t) in [
        ("wall", &mut base, &mut traced),
        ("cpu", &mut base_cpu, &mut traced_cpu),
    ] {
        let (mb, mt) = (median(b), median(t));
        println!(
            "median {what}: untraced {mb:.1} ns/iter, traced {mt:.1} ns/iter, ratio {:.3}, added {:.1} ns per traced syscall (2 per iter)",
            mt / mb,
            (mt - mb) / 2.0
        );
    }

    let (mb, mc) = (median(&mut base_cpu), median(&mut caught_cpu));
    println!(
        "median cpu, probes discarding after their filters: {mc:.1} ns/iter, added {:.1} ns per traced syscall",
        (mc - mb) / 2.0
    );
    let (ou, ot) = (median(&mut other_u), median(&mut other_t));
    println!(
        "median cpu per untraced syscall (getppid): {ou:.1} ns without probes, {ot:.1} ns with, added {:.1} ns",
        ot - ou
    );

    set_bpf_stats(true);
    let t = start_traced(false);
    pingpong(fa, fb, iters);
    t.stop.store(true, Ordering::Relaxed);
    let (_, _, stats) = t.handle.join().unwrap();
    set_bpf_stats(false);
    println!("in-kernel time per run (bpf_stats_enabled=1):");
    for s in stats.iter().filter(|s| s.run_count > 0) {
        println!(
            "  {:<16} runs {:>9}  {:6.1} ns/run",
            s.name,
            s.run_count,
            s.ns_per_run()
        );
    }
}
