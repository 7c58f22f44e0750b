//! A synthetic, recorder-like workload, for benchmarks and tests.

use std::net::SocketAddr;

use vpath_core::{flags, Event, Op, Record, Syscall, ThreadInfo};

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` events of a multi-tier service: 64 threads over 8 processes, 256
/// concurrently open connections (IPv4 and IPv6) with tracked stream
/// positions, monotonic timestamps a few microseconds apart, occasional
/// errors and closes; Thread records for each thread first seen.
pub fn workload(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(n + n / 8);
    let mut ts: u64 = 1_000_000_000_000;
    let mut next_cookie: u64 = 4096;
    struct Conn {
        cookie: u64,
        local: SocketAddr,
        remote: SocketAddr,
        seq: [u32; 2],
    }
    let new_conn = |rng: &mut Rng, cookie: u64| {
        let port = 1024 + rng.below(60000) as u16;
        let (local, remote): (SocketAddr, SocketAddr) = if rng.below(4) == 0 {
            (
                format!("[fd00::1]:{port}").parse().expect("addr"),
                "[fd00::2]:8080".parse().expect("addr"),
            )
        } else {
            (
                format!("10.0.0.1:{port}").parse().expect("addr"),
                format!("10.0.0.{}:80", 2 + rng.below(3))
                    .parse()
                    .expect("addr"),
            )
        };
        Conn {
            cookie,
            local,
            remote,
            seq: [rng.next() as u32, rng.next() as u32],
        }
    };
    let mut conns: Vec<Conn> = (0..256)
        .map(|_| {
            next_cookie += 1;
            new_conn(&mut rng, next_cookie)
        })
        .collect();
    let mut seen = [false; 64];
    for _ in 0..n {
        ts += 200 + rng.below(5000);
        let t = rng.below(64) as usize;
        let pid = 1000 + (t as u32 / 8) * 100;
        let tid = pid + t as u32 % 8;
        if !seen[t] {
            seen[t] = true;
            out.push(Record::Thread(ThreadInfo {
                pid,
                tid,
                comm: format!("worker-{}", t / 8),
            }));
        }
        let ci = rng.below(conns.len() as u64) as usize;
        let r = rng.below(100);
        let (op, syscall, ret) = match r {
            0 => (Op::Close, Syscall::Close, 0),
            1 => (Op::Recv, Syscall::Read, -11),
            2..=50 => (Op::Send, Syscall::Writev, 1 + rng.below(4000) as i64),
            _ => (Op::Recv, Syscall::Read, 1 + rng.below(4000) as i64),
        };
        let c = &mut conns[ci];
        let d = usize::from(op != Op::Send);
        let seq = c.seq[d];
        if ret > 0 {
            c.seq[d] = seq.wrapping_add(ret as u32);
        }
        out.push(Record::Event(Event {
            ts_ns: ts,
            netns: 4026531840,
            cgroup: 7000 + t as u64 / 8,
            pid,
            tid,
            sock: c.cookie,
            op,
            syscall,
            flags: if op == Op::Close { 0 } else { flags::SEQ },
            ret,
            seq: if op == Op::Close { 0 } else { seq },
            local: c.local,
            remote: c.remote,
            data: None,
        }));
        if op == Op::Close {
            next_cookie += 1;
            conns[ci] = new_conn(&mut rng, next_cookie);
        }
    }
    out
}
