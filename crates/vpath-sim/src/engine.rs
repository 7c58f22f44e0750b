//! The execution engine: runs requests through the topology one step at a
//! time, interleaving all requests in flight, and emits the records a
//! recorder would log on each host, plus the expected paths.
//!
//! The model is vPath's: a worker thread receives a whole request, makes
//! synchronous calls (each on a connection taken from its process's pool),
//! sends its whole reply, and only then takes other work.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use vpath_core::{flags, Checkpoint, Event, Op, Path, Record, Span, SpanKind, Syscall, ThreadInfo};

use crate::config::{Handoff, SimConfig};
use crate::rng::{mix64, Rng};
use crate::topology::{ServerModel, Topology};
use crate::truth::{CallerView, TruthSpan};

const CLOCK_START_NS: u64 = 1_000_000_000_000;
const EPHEMERAL: (u16, u16) = (32768, 60999);
const SEND_CALLS: [Syscall; 5] = [
    Syscall::Write,
    Syscall::Writev,
    Syscall::Sendto,
    Syscall::Sendmsg,
    Syscall::Sendfile,
];
const RECV_CALLS: [Syscall; 4] = [
    Syscall::Read,
    Syscall::Readv,
    Syscall::Recvfrom,
    Syscall::Recvmsg,
];

type ProcId = usize;
type ConnId = usize;

/// A minimal slab: stable ids, reused slots, deterministic.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, t: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(t);
                i
            }
            None => {
                self.items.push(Some(t));
                self.items.len() - 1
            }
        }
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let t = self.items.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
    fn get(&self, i: usize) -> &T {
        self.items[i].as_ref().expect("live slab id")
    }
    fn get_mut(&mut self, i: usize) -> &mut T {
        self.items[i].as_mut().expect("live slab id")
    }
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some())
            .map(|(i, _)| i)
    }
    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ThreadRef {
    proc: ProcId,
    tid: u32,
}

enum ProcKind {
    Client,
    /// A thread pool; `acceptor` is the main thread.
    Pool {
        acceptor: u32,
        free: Vec<u32>,
    },
    /// The parent of per-connection processes.
    Master,
    /// A per-connection process.
    Child,
}

struct Proc {
    host: usize,
    netns: u32,
    pid: u32,
    svc: Option<usize>,
    kind: ProcKind,
    /// Idle client connections, any destination.
    pool: Vec<ConnId>,
    comm: Vec<(u32, Arc<str>)>,
}

impl Proc {
    fn comm(&self, tid: u32) -> Arc<str> {
        self.comm
            .iter()
            .find(|(t, _)| *t == tid)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Arc::from("?"))
    }
}

struct Conn {
    svc: usize,
    client_proc: ProcId,
    server_proc: ProcId,
    client_sock: u64,
    server_sock: u64,
    caddr: SocketAddr,
    saddr: SocketAddr,
    /// Initial sequence numbers, client->server and server->client.
    isn: [u32; 2],
    /// Bytes sent so far per direction.
    sent: [u64; 2],
    /// Bytes consumed so far per direction.
    recvd: [u64; 2],
    uses_left: u32,
    port_key: (usize, u32, IpAddr),
}

/// A call of the request tree, planned before it runs.
struct CallPlan {
    svc: usize,
    children: Vec<CallPlan>,
}

/// One message in flight: independent write and read splits.
struct Xfer {
    writes: Vec<u64>,
    reads: Vec<u64>,
    wi: usize,
    ri: usize,
    written: u64,
    read: u64,
}

impl Xfer {
    fn done(&self) -> bool {
        self.wi == self.writes.len() && self.ri == self.reads.len()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Acquire,
    Request,
    /// The request is read; a pool may hand it to another thread.
    Handoff,
    Children,
    Reply,
    Done,
}

struct Frame {
    plan: CallPlan,
    caller: ThreadRef,
    st: St,
    conn: Option<ConnId>,
    /// The server thread at work now: it reads the request, then (after a
    /// hand-off, possibly another thread) makes the calls and replies.
    worker: Option<ThreadRef>,
    /// The thread that read the request, when another thread took over.
    receiver: Option<ThreadRef>,
    xfer: Option<Xfer>,
    next_child: usize,
    req_bytes: u64,
    reply_bytes: u64,
    caller_first_send: u64,
    caller_last_recv: u64,
    srv_first_recv: u64,
    srv_last_send: u64,
    children: Vec<Node>,
}

/// A finished call: its span (children empty) and truth bookkeeping.
struct Node {
    span: Span,
    caller: CallerView,
    children: Vec<Node>,
}

enum Pending {
    Event {
        host: usize,
        ev: Event,
        release: Option<((usize, u32, IpAddr), u16)>,
    },
    Thread {
        host: usize,
        info: ThreadInfo,
    },
}

struct Job {
    frames: Vec<Frame>,
    pending: VecDeque<Pending>,
    origin: ThreadRef,
}

enum Step {
    Progress,
    Blocked,
    Finished,
}

struct HostRt {
    /// Events still to drop in the current loss burst.
    burst_left: u32,
    next_pid: u32,
    sock_salt: u64,
    sock_ctr: u64,
    lost: u64,
    since_ckpt: u32,
    last_ts: u64,
    events: u64,
}

struct PortAlloc {
    next: u16,
    live: Vec<u16>,
}

/// A completed request: its expected path and the truth spans of it.
pub(crate) struct Done {
    pub path: Path,
    pub truth: Vec<TruthSpan>,
}

pub(crate) struct Engine {
    cfg: SimConfig,
    pub(crate) topo: Topology,
    rng: Rng,
    loss_rng: Rng,
    clock: u64,
    hrt: Vec<HostRt>,
    procs: Slab<Proc>,
    conns: Slab<Conn>,
    ports: BTreeMap<(usize, u32, IpAddr), PortAlloc>,
    port_base: u16,
    svc_proc: Vec<ProcId>,
    client_proc: ProcId,
    clients: Vec<(u32, Option<Job>)>,
    started: usize,
    generated_events: u64,
    teardown_pending: VecDeque<Pending>,
    torn_down: bool,
    finished: bool,
    /// Output stream index of each topology host (None: unobserved).
    stream_of: Vec<Option<usize>>,
    /// Emit records of unobserved hosts too (for validation).
    emit_unobserved: bool,
    pub(crate) out: VecDeque<(usize, Record)>,
    pub(crate) done: VecDeque<Done>,
    collect_truth: bool,
    pub(crate) paths_completed: u64,
}

impl Engine {
    /// `stream_of[h]`: where records of topology host `h` go.
    pub(crate) fn new(
        cfg: SimConfig,
        topo: Topology,
        rng: Rng,
        stream_of: Vec<Option<usize>>,
        emit_unobserved: bool,
        collect_truth: bool,
    ) -> Engine {
        let mut rng = rng;
        let loss_rng = Rng::new(cfg.seed ^ 0x1055_1055_1055_1055);
        let hrt = (0..topo.hosts.len())
            .map(|_| HostRt {
                burst_left: 0,
                next_pid: 1000 + rng.range(0, 500) as u32,
                sock_salt: rng.next_u64(),
                sock_ctr: 0,
                lost: 0,
                since_ckpt: 0,
                last_ts: 0,
                events: 0,
            })
            .collect();
        let port_base = rng.range(EPHEMERAL.0 as u64, EPHEMERAL.0 as u64 + 1000) as u16;
        let mut e = Engine {
            cfg,
            topo,
            rng,
            loss_rng,
            clock: CLOCK_START_NS,
            hrt,
            procs: Slab::new(),
            conns: Slab::new(),
            ports: BTreeMap::new(),
            port_base,
            svc_proc: Vec::new(),
            client_proc: 0,
            clients: Vec::new(),
            started: 0,
            generated_events: 0,
            teardown_pending: VecDeque::new(),
            torn_down: false,
            finished: false,
            stream_of,
            emit_unobserved,
            out: VecDeque::new(),
            done: VecDeque::new(),
            collect_truth,
            paths_completed: 0,
        };
        e.spawn_processes();
        e
    }

    fn alloc_pid(&mut self, host: usize, n: u32) -> u32 {
        let h = &mut self.hrt[host];
        let pid = h.next_pid;
        h.next_pid += n;
        pid
    }

    fn spawn_processes(&mut self) {
        for s in 0..self.topo.services.len() {
            let spec = self.topo.services[s].clone();
            let (kind, threads) = match spec.model {
                ServerModel::Pool { workers } => {
                    let pid = self.alloc_pid(spec.host, workers + 1);
                    let free: Vec<u32> = (1..=workers).map(|k| pid + k).collect();
                    let mut comm = vec![(pid, spec.name.clone())];
                    for (k, &t) in free.iter().enumerate() {
                        comm.push((t, Arc::from(format!("{}-w{}", spec.name, k + 1))));
                    }
                    (
                        ProcKind::Pool {
                            acceptor: pid,
                            free,
                        },
                        (pid, comm),
                    )
                }
                ServerModel::PerConnection => {
                    let pid = self.alloc_pid(spec.host, 1);
                    (ProcKind::Master, (pid, vec![(pid, spec.name.clone())]))
                }
            };
            let id = self.procs.insert(Proc {
                host: spec.host,
                netns: spec.netns,
                pid: threads.0,
                svc: Some(s),
                kind,
                pool: Vec::new(),
                comm: threads.1,
            });
            self.svc_proc.push(id);
        }
        let c = self.topo.client.clone();
        let pid = self.alloc_pid(c.host, c.threads + 1);
        let mut comm = vec![(pid, Arc::from("loadgen"))];
        for k in 1..=c.threads {
            comm.push((pid + k, Arc::from(format!("loadgen-{k}"))));
        }
        self.clients = (1..=c.threads).map(|k| (pid + k, None)).collect();
        self.client_proc = self.procs.insert(Proc {
            host: c.host,
            netns: c.netns,
            pid,
            svc: None,
            kind: ProcKind::Client,
            pool: Vec::new(),
            comm,
        });
        // Thread records first, per host.
        let ids: Vec<ProcId> = self.procs.live().collect();
        for id in ids {
            let p = self.procs.get(id);
            let recs: Vec<(usize, ThreadInfo)> = p
                .comm
                .iter()
                .map(|(tid, comm)| {
                    (
                        p.host,
                        ThreadInfo {
                            pid: p.pid,
                            tid: *tid,
                            comm: comm.to_string(),
                        },
                    )
                })
                .collect();
            for (h, info) in recs {
                self.output(h, Record::Thread(info));
            }
        }
    }

    fn output(&mut self, host: usize, rec: Record) {
        if let Some(s) = self.stream_of[host] {
            if self.topo.hosts[host].observed || self.emit_unobserved {
                self.out.push_back((s, rec));
            }
        }
    }

    /// Stamps and emits one event; returns its (host) timestamp.
    fn emit(&mut self, host: usize, mut ev: Event) -> u64 {
        let (lo, hi) = self.cfg.gap_ns;
        self.clock += self.rng.range(lo, hi).max(1);
        let ts = (self.clock as i64 + self.topo.hosts[host].offset_ns) as u64;
        ev.ts_ns = ts;
        self.generated_events += 1;
        let observed = self.topo.hosts[host].observed;
        let burst = observed && self.hrt[host].burst_left > 0;
        let drop = burst
            || match self.cfg.loss {
                Some(l) if observed => self.loss_rng.below(1_000_000) < l.drop_ppm as u64,
                _ => false,
            };
        let more = if drop && !burst && self.cfg.loss_burst > 0 {
            self.loss_rng.below(self.cfg.loss_burst as u64 + 1) as u32
        } else {
            0
        };
        let h = &mut self.hrt[host];
        if burst {
            h.burst_left -= 1;
        } else {
            h.burst_left = more;
        }
        h.last_ts = ts;
        h.events += 1;
        if drop {
            h.lost += 1;
        }
        let mut ckpt = None;
        if let Some(k) = self.cfg.checkpoint_every {
            h.since_ckpt += 1;
            if h.since_ckpt >= k {
                h.since_ckpt = 0;
                ckpt = Some(Checkpoint {
                    ts_ns: ts,
                    lost_total: h.lost,
                });
            }
        }
        if !drop {
            self.output(host, Record::Event(ev));
        }
        if let Some(c) = ckpt {
            self.output(host, Record::Checkpoint(c));
        }
        ts
    }

    fn new_sock(&mut self, host: usize) -> u64 {
        let h = &mut self.hrt[host];
        h.sock_ctr += 1;
        mix64(h.sock_salt ^ h.sock_ctr)
    }

    fn alloc_port(&mut self, key: (usize, u32, IpAddr)) -> u16 {
        let base = self.port_base;
        let a = self.ports.entry(key).or_insert_with(|| PortAlloc {
            next: base,
            live: Vec::new(),
        });
        loop {
            let p = a.next;
            a.next = if p >= EPHEMERAL.1 { EPHEMERAL.0 } else { p + 1 };
            if !a.live.contains(&p) {
                a.live.push(p);
                return p;
            }
        }
    }

    fn release_port(&mut self, key: (usize, u32, IpAddr), port: u16) {
        if let Some(a) = self.ports.get_mut(&key) {
            a.live.retain(|&p| p != port);
            if a.live.is_empty() && a.next == self.port_base {
                self.ports.remove(&key);
            }
        }
    }

    fn seq_flags(&self) -> u8 {
        if self.cfg.seq_mode {
            flags::SEQ
        } else {
            0
        }
    }

    fn seq_at(&self, c: &Conn, dir: usize, pos: u64) -> u32 {
        if self.cfg.seq_mode {
            c.isn[dir].wrapping_add(pos as u32)
        } else {
            0
        }
    }

    /// An event on connection `c` by thread `t`, from the client side
    /// (`client == true`) or the server side.
    fn conn_event(
        &self,
        c: &Conn,
        t: ThreadRef,
        client: bool,
        op: Op,
        syscall: Syscall,
        ret: i64,
    ) -> Event {
        let p = self.procs.get(t.proc);
        let (sock, local, remote) = if client {
            (c.client_sock, c.caddr, c.saddr)
        } else {
            (c.server_sock, c.saddr, c.caddr)
        };
        Event {
            ts_ns: 0,
            netns: p.netns,
            cgroup: 0,
            pid: p.pid,
            tid: t.tid,
            sock,
            op,
            syscall,
            flags: 0,
            ret,
            seq: 0,
            local,
            remote,
            data: None,
        }
    }

    fn caller_addr(&self, proc: ProcId, ipv6: bool) -> IpAddr {
        let p = self.procs.get(proc);
        let (a4, a6): (Ipv4Addr, Ipv6Addr) = match p.svc {
            Some(s) => (self.topo.services[s].v4, self.topo.services[s].v6),
            None => (self.topo.client.v4, self.topo.client.v6),
        };
        if ipv6 {
            IpAddr::V6(a6)
        } else {
            IpAddr::V4(a4)
        }
    }

    /// Opens a connection from `caller` to service `svc`; the connect,
    /// accept (and fork) records go to `pending`.
    fn open_conn(
        &mut self,
        caller: ThreadRef,
        svc: usize,
        pending: &mut VecDeque<Pending>,
    ) -> ConnId {
        let s = self.topo.services[svc].clone();
        let (chost, cnetns) = {
            let p = self.procs.get(caller.proc);
            (p.host, p.netns)
        };
        let loopback = chost == s.host && cnetns == s.netns && (s.pod || self.topo.loopback);
        let (cip, sip) = if loopback {
            let l = if s.ipv6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            (l, l)
        } else {
            (self.caller_addr(caller.proc, s.ipv6), s.ip())
        };
        let key = (chost, cnetns, cip);
        let port = self.alloc_port(key);
        let caddr = SocketAddr::new(cip, port);
        let saddr = SocketAddr::new(sip, s.port);
        let client_sock = self.new_sock(chost);
        let server_sock = self.new_sock(s.host);
        let isn = [self.rng.next_u32(), self.rng.next_u32()];
        let master = self.svc_proc[svc];
        let (server_proc, acceptor) = match &self.procs.get(master).kind {
            ProcKind::Pool { acceptor, .. } => (master, *acceptor),
            _ => {
                let pid = self.alloc_pid(s.host, 1);
                let child = self.procs.insert(Proc {
                    host: s.host,
                    netns: s.netns,
                    pid,
                    svc: Some(svc),
                    kind: ProcKind::Child,
                    pool: Vec::new(),
                    comm: vec![(pid, s.name.clone())],
                });
                let mpid = self.procs.get(master).pid;
                (child, mpid)
            }
        };
        let conn = Conn {
            svc,
            client_proc: caller.proc,
            server_proc,
            client_sock,
            server_sock,
            caddr,
            saddr,
            isn,
            sent: [0; 2],
            recvd: [0; 2],
            uses_left: self.rng.range(1, self.cfg.max_uses as u64) as u32,
            port_key: key,
        };
        let connect = self.conn_event(&conn, caller, true, Op::Connect, Syscall::Connect, 0);
        let accept = self.conn_event(
            &conn,
            ThreadRef {
                proc: master,
                tid: acceptor,
            },
            false,
            Op::Accept,
            Syscall::Accept4,
            0,
        );
        pending.push_back(Pending::Event {
            host: chost,
            ev: connect,
            release: None,
        });
        pending.push_back(Pending::Event {
            host: s.host,
            ev: accept,
            release: None,
        });
        if server_proc != master {
            let p = self.procs.get(server_proc);
            pending.push_back(Pending::Thread {
                host: s.host,
                info: ThreadInfo {
                    pid: p.pid,
                    tid: p.pid,
                    comm: s.name.to_string(),
                },
            });
        }
        self.conns.insert(conn)
    }

    /// Closes connection `c` (idle) from the client thread `tid`: client
    /// close, server EOF read and close; a per-connection server process
    /// then closes its own pooled connections and exits.
    fn close_conn(&mut self, c: ConnId, client_tid: u32, pending: &mut VecDeque<Pending>) {
        let Some(conn) = self.conns.remove(c) else {
            return;
        };
        let chost = self.procs.get(conn.client_proc).host;
        let close = self.conn_event(
            &conn,
            ThreadRef {
                proc: conn.client_proc,
                tid: client_tid,
            },
            true,
            Op::Close,
            Syscall::Close,
            0,
        );
        pending.push_back(Pending::Event {
            host: chost,
            ev: close,
            release: Some((conn.port_key, conn.caddr.port())),
        });
        let sp = self.procs.get(conn.server_proc);
        let shost = sp.host;
        let is_child = matches!(sp.kind, ProcKind::Child);
        let stid = match &sp.kind {
            ProcKind::Pool { acceptor, .. } => *acceptor,
            _ => sp.pid,
        };
        let st = ThreadRef {
            proc: conn.server_proc,
            tid: stid,
        };
        if self.cfg.eof_reads {
            let mut eof = self.conn_event(&conn, st, false, Op::Recv, Syscall::Read, 0);
            eof.flags = self.seq_flags();
            eof.seq = self.seq_at(&conn, 0, conn.recvd[0]);
            pending.push_back(Pending::Event {
                host: shost,
                ev: eof,
                release: None,
            });
        }
        let sclose = self.conn_event(&conn, st, false, Op::Close, Syscall::Close, 0);
        pending.push_back(Pending::Event {
            host: shost,
            ev: sclose,
            release: None,
        });
        if is_child {
            let pool = std::mem::take(&mut self.procs.get_mut(conn.server_proc).pool);
            for cc in pool {
                self.close_conn(cc, stid, pending);
            }
            self.procs.remove(conn.server_proc);
        }
    }

    fn emit_pending(&mut self, p: Pending) {
        match p {
            Pending::Event { host, ev, release } => {
                self.emit(host, ev);
                if let Some((key, port)) = release {
                    self.release_port(key, port);
                }
            }
            Pending::Thread { host, info } => self.output(host, Record::Thread(info)),
        }
    }

    fn plan(&mut self, svc: usize, depth: u32) -> CallPlan {
        let mut children = Vec::new();
        let callees = self.topo.services[svc].callees.clone();
        if depth < self.cfg.max_depth && !callees.is_empty() {
            let k = self.rng.range(0, self.cfg.max_fanout as u64);
            for _ in 0..k {
                let c = callees[self.rng.index(callees.len())];
                children.push(self.plan(c, depth + 1));
            }
        }
        CallPlan { svc, children }
    }

    fn new_frame(&self, plan: CallPlan, caller: ThreadRef) -> Frame {
        Frame {
            plan,
            caller,
            st: St::Acquire,
            conn: None,
            worker: None,
            receiver: None,
            xfer: None,
            next_child: 0,
            req_bytes: 0,
            reply_bytes: 0,
            caller_first_send: 0,
            caller_last_recv: 0,
            srv_first_recv: 0,
            srv_last_send: 0,
            children: Vec::new(),
        }
    }

    fn new_xfer(&mut self) -> (u64, Xfer) {
        let size = self.rng.range(1, self.cfg.max_msg as u64);
        let wn = self.rng.range(1, 4);
        let rn = self.rng.range(1, 4);
        let writes = self.rng.split(size, wn);
        let reads = self.rng.split(size, rn);
        (
            size,
            Xfer {
                writes,
                reads,
                wi: 0,
                ri: 0,
                written: 0,
                read: 0,
            },
        )
    }

    fn start_job(&mut self, tid: u32) -> Job {
        let entries: Vec<usize> = (0..self.topo.services.len())
            .filter(|&s| self.topo.services[s].entry)
            .collect();
        let svc = entries[self.rng.index(entries.len())];
        let plan = self.plan(svc, 1);
        let origin = ThreadRef {
            proc: self.client_proc,
            tid,
        };
        let frame = self.new_frame(plan, origin);
        Job {
            frames: vec![frame],
            pending: VecDeque::new(),
            origin,
        }
    }

    /// One scheduler tick. Returns false when the run is over.
    pub(crate) fn step(&mut self) -> bool {
        if self.finished {
            return false;
        }
        let n = self.clients.len();
        let start = self.rng.index(n);
        let may_start = self.started < self.cfg.requests
            && self
                .cfg
                .stop_after_events
                .is_none_or(|lim| self.generated_events < lim);
        for k in 0..n {
            let i = (start + k) % n;
            let (tid, job) = &mut self.clients[i];
            let tid = *tid;
            let mut job = match job.take() {
                Some(j) => j,
                None if may_start => {
                    self.started += 1;
                    self.clients[i].1 = Some(self.start_job(tid));
                    return true;
                }
                None => continue,
            };
            match self.job_step(&mut job) {
                Step::Progress => {
                    self.clients[i].1 = Some(job);
                    return true;
                }
                Step::Blocked => {
                    self.clients[i].1 = Some(job);
                }
                Step::Finished => {
                    // Drain the job's pending records (closes) first.
                    if !job.pending.is_empty() {
                        self.clients[i].1 = Some(job);
                    }
                    return true;
                }
            }
        }
        if self.clients.iter().any(|(_, j)| j.is_some()) {
            panic!(
                "vpath-sim: all requests blocked (a bug in the simulator: the call graph is a DAG)"
            );
        }
        // All requests ran: tear down, then final checkpoints.
        if self.cfg.teardown && !self.torn_down {
            self.torn_down = true;
            let mut pending = VecDeque::new();
            let ids: Vec<ProcId> = self.procs.live().collect();
            for id in ids {
                let Some(Some(p)) = self.procs.items.get(id) else {
                    continue;
                };
                if matches!(p.kind, ProcKind::Child) {
                    continue;
                }
                let tid = match &p.kind {
                    ProcKind::Pool { free, .. } => free[0],
                    ProcKind::Client => self.clients[0].0,
                    _ => p.pid,
                };
                let pool = std::mem::take(&mut self.procs.get_mut(id).pool);
                for c in pool {
                    self.close_conn(c, tid, &mut pending);
                }
            }
            self.teardown_pending = pending;
        }
        if let Some(p) = self.teardown_pending.pop_front() {
            self.emit_pending(p);
            return true;
        }
        if self.cfg.checkpoint_every.is_some() {
            for h in 0..self.hrt.len() {
                if self.hrt[h].events > 0 {
                    let c = Checkpoint {
                        ts_ns: self.hrt[h].last_ts,
                        lost_total: self.hrt[h].lost,
                    };
                    self.output(h, Record::Checkpoint(c));
                }
            }
        }
        self.finished = true;
        false
    }

    fn job_step(&mut self, job: &mut Job) -> Step {
        if let Some(p) = job.pending.pop_front() {
            self.emit_pending(p);
            return Step::Progress;
        }
        let Some(fi) = job.frames.len().checked_sub(1) else {
            return Step::Finished;
        };
        let st = job.frames[fi].st;
        match st {
            St::Acquire => {
                let f = &mut job.frames[fi];
                let svc = f.plan.svc;
                let caller = f.caller;
                let pool = &self.procs.get(caller.proc).pool;
                let cands: Vec<usize> = (0..pool.len())
                    .filter(|&k| self.conns.get(pool[k]).svc == svc)
                    .collect();
                let c = if cands.is_empty() {
                    self.open_conn(caller, svc, &mut job.pending)
                } else {
                    let k = cands[self.rng.index(cands.len())];
                    self.procs.get_mut(caller.proc).pool.swap_remove(k)
                };
                let (size, x) = self.new_xfer();
                let f = &mut job.frames[fi];
                f.conn = Some(c);
                f.req_bytes = size;
                f.xfer = Some(x);
                f.st = St::Request;
                Step::Progress
            }
            St::Request | St::Reply => self.xfer_step(&mut job.frames[fi], st == St::Request),
            St::Handoff => {
                let f = &mut job.frames[fi];
                let w = f.worker.expect("the request was read");
                let mode = self.cfg.handoff;
                let next = match &mut self.procs.get_mut(w.proc).kind {
                    ProcKind::Pool { free, .. } if !free.is_empty() => {
                        let k = self.rng.index(free.len());
                        let w2 = free.swap_remove(k);
                        if mode == Handoff::Reuse {
                            // The reader goes back to the pool.
                            free.push(w.tid);
                        }
                        Some(w2)
                    }
                    ProcKind::Pool { .. } if mode == Handoff::Acceptor => None,
                    // No other thread: the reader goes on itself.
                    _ => Some(w.tid),
                };
                match next {
                    None => Step::Blocked,
                    Some(t) => {
                        if t != w.tid {
                            f.receiver = Some(w);
                            f.worker = Some(ThreadRef {
                                proc: w.proc,
                                tid: t,
                            });
                        }
                        f.st = St::Children;
                        Step::Progress
                    }
                }
            }
            St::Children => {
                let f = &mut job.frames[fi];
                if f.next_child < f.plan.children.len() {
                    let plan = std::mem::replace(
                        &mut f.plan.children[f.next_child],
                        CallPlan {
                            svc: usize::MAX,
                            children: Vec::new(),
                        },
                    );
                    f.next_child += 1;
                    let caller = f.worker.expect("worker assigned before children");
                    let nf = self.new_frame(plan, caller);
                    job.frames.push(nf);
                } else {
                    let (size, x) = self.new_xfer();
                    f.reply_bytes = size;
                    f.xfer = Some(x);
                    f.st = St::Reply;
                }
                Step::Progress
            }
            St::Done => {
                let f = job.frames.pop().expect("frame");
                let node = self.finish_call(f, &mut job.pending);
                match job.frames.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => self.finish_root(job.origin, node),
                }
                if job.frames.is_empty() && job.pending.is_empty() {
                    Step::Finished
                } else {
                    Step::Progress
                }
            }
        }
    }

    /// One step of a message transfer: a write by the sender, a read (or a
    /// noise receive) by the receiver, or the worker picking the request up.
    fn xfer_step(&mut self, f: &mut Frame, request: bool) -> Step {
        let cid = f.conn.expect("conn");
        let x = f.xfer.as_ref().expect("xfer");
        if x.done() {
            f.xfer = None;
            f.st = if !request {
                St::Done
            } else if self.cfg.handoff != Handoff::None {
                St::Handoff
            } else {
                St::Children
            };
            return Step::Progress;
        }
        let avail = x.written - x.read;
        let can_write = x.wi < x.writes.len();
        let reading = x.ri < x.reads.len();
        let need_worker = request && f.worker.is_none();
        let conn = self.conns.get(cid);
        let sproc = conn.server_proc;
        let worker_free = match &self.procs.get(sproc).kind {
            ProcKind::Pool { free, .. } => {
                !free.is_empty() || self.cfg.handoff == Handoff::Acceptor
            }
            _ => true,
        };
        let noise = self.cfg.noise && !need_worker && reading;
        // (action, weight): 0 write, 1 assign, 2 read, 3 eagain, 4 peek
        let mut acts: [(u8, u64); 5] = [(0, 0); 5];
        let mut n = 0;
        let mut add = |a: u8, w: u64| {
            acts[n] = (a, w);
            n += 1;
        };
        if can_write {
            add(0, 10);
        }
        if need_worker && avail > 0 && worker_free {
            add(1, 10);
        }
        if !need_worker && reading && avail >= x.reads[x.ri] {
            add(2, 10);
        }
        if noise && avail == 0 {
            add(3, 2);
        }
        if noise && avail > 0 {
            add(4, 1);
        }
        if n == 0 {
            return Step::Blocked;
        }
        let total: u64 = acts[..n].iter().map(|a| a.1).sum();
        let mut pick = self.rng.below(total);
        let mut act = acts[0].0;
        for a in &acts[..n] {
            if pick < a.1 {
                act = a.0;
                break;
            }
            pick -= a.1;
        }
        let dir = if request { 0 } else { 1 };
        // Sender and receiver threads, and which side each is on.
        let caller = f.caller;
        match act {
            1 => {
                let acceptor_reads = self.cfg.handoff == Handoff::Acceptor;
                let w = match &mut self.procs.get_mut(sproc).kind {
                    ProcKind::Pool { acceptor, .. } if acceptor_reads => *acceptor,
                    ProcKind::Pool { free, .. } => {
                        let k = self.rng.index(free.len());
                        free.swap_remove(k)
                    }
                    _ => self.procs.get(sproc).pid,
                };
                f.worker = Some(ThreadRef {
                    proc: sproc,
                    tid: w,
                });
                Step::Progress
            }
            0 => {
                let bytes = x.writes[x.wi];
                let (t, client) = if request {
                    (caller, true)
                } else {
                    (f.worker.expect("worker"), false)
                };
                let sc = SEND_CALLS[self.rng.index(SEND_CALLS.len())];
                let mut ev = self.conn_event(conn, t, client, Op::Send, sc, bytes as i64);
                ev.flags = self.seq_flags();
                ev.seq = self.seq_at(conn, dir, conn.sent[dir]);
                let host = self.procs.get(t.proc).host;
                let ts = self.emit(host, ev);
                self.conns.get_mut(cid).sent[dir] += bytes;
                let x = f.xfer.as_mut().expect("xfer");
                if request && x.wi == 0 {
                    f.caller_first_send = ts;
                }
                if !request {
                    f.srv_last_send = ts;
                }
                x.wi += 1;
                x.written += bytes;
                Step::Progress
            }
            _ => {
                let (t, client) = if request {
                    (f.worker.expect("worker"), false)
                } else {
                    (caller, true)
                };
                let host = self.procs.get(t.proc).host;
                let pos = conn.recvd[dir];
                let (ret, fl, sc) = match act {
                    2 => (
                        x.reads[x.ri] as i64,
                        0,
                        RECV_CALLS[self.rng.index(RECV_CALLS.len())],
                    ),
                    3 => (-11, 0, RECV_CALLS[self.rng.index(RECV_CALLS.len())]),
                    _ => (
                        self.rng.range(1, avail) as i64,
                        flags::PEEK,
                        if self.rng.chance(0.5) {
                            Syscall::Recvfrom
                        } else {
                            Syscall::Recvmsg
                        },
                    ),
                };
                let mut ev = self.conn_event(conn, t, client, Op::Recv, sc, ret);
                ev.flags = self.seq_flags() | fl;
                ev.seq = self.seq_at(conn, dir, pos);
                let ts = self.emit(host, ev);
                if act == 2 {
                    let bytes = ret as u64;
                    self.conns.get_mut(cid).recvd[dir] += bytes;
                    let x = f.xfer.as_mut().expect("xfer");
                    if request && x.ri == 0 {
                        f.srv_first_recv = ts;
                    }
                    if !request {
                        f.caller_last_recv = ts;
                    }
                    x.ri += 1;
                    x.read += bytes;
                }
                Step::Progress
            }
        }
    }

    fn host_name(&self, h: usize) -> Arc<str> {
        self.topo.hosts[h].name.clone()
    }

    /// Releases the worker and the connection of a finished call and builds
    /// its node.
    fn finish_call(&mut self, f: Frame, pending: &mut VecDeque<Pending>) -> Node {
        let cid = f.conn.expect("conn");
        let w = f.worker.expect("worker");
        let (caddr, saddr, svc) = {
            let c = self.conns.get(cid);
            (c.caddr, c.saddr, c.svc)
        };
        let shost = self.topo.services[svc].host;
        let caller_host = self.procs.get(f.caller.proc).host;
        let caller = CallerView {
            host: self.host_name(caller_host),
            tid: f.caller.tid,
            start_ns: f.caller_first_send,
            end_ns: f.caller_last_recv,
        };
        let span = if self.topo.hosts[shost].observed {
            let p = self.procs.get(w.proc);
            // The span belongs to the thread that read the request.
            let r = f.receiver.unwrap_or(w);
            Span {
                kind: SpanKind::Server,
                host: Some(self.host_name(shost)),
                pid: Some(p.pid),
                tid: Some(r.tid),
                comm: Some(p.comm(r.tid)),
                process: Some(p.comm(p.pid)),
                netns: Some(p.netns),
                local: saddr,
                remote: caddr,
                start_ns: f.srv_first_recv,
                end_ns: f.srv_last_send,
                bytes_in: f.req_bytes,
                bytes_out: f.reply_bytes,
                issues: Vec::new(),
                children: Vec::new(),
                protocol: None,
                name: None,
                attrs: Default::default(),
            }
        } else {
            Span {
                kind: SpanKind::Remote,
                host: None,
                pid: None,
                tid: None,
                comm: None,
                process: None,
                netns: None,
                local: saddr,
                remote: caddr,
                start_ns: f.caller_first_send,
                end_ns: f.caller_last_recv,
                bytes_in: f.req_bytes,
                bytes_out: f.reply_bytes,
                issues: Vec::new(),
                children: Vec::new(),
                protocol: None,
                name: None,
                attrs: Default::default(),
            }
        };
        if let ProcKind::Pool { free, .. } = &mut self.procs.get_mut(w.proc).kind {
            free.push(w.tid);
        }
        let conn = self.conns.get_mut(cid);
        conn.uses_left -= 1;
        if conn.uses_left == 0 {
            self.close_conn(cid, f.caller.tid, pending);
        } else {
            self.procs.get_mut(f.caller.proc).pool.push(cid);
        }
        Node {
            span,
            caller,
            children: f.children,
        }
    }

    fn finish_root(&mut self, origin: ThreadRef, node: Node) {
        self.paths_completed += 1;
        if !self.collect_truth {
            return;
        }
        let chost = self.topo.client.host;
        let root = if self.topo.hosts[chost].observed {
            let p = self.procs.get(origin.proc);
            let span = Span {
                kind: SpanKind::Origin,
                host: Some(self.host_name(chost)),
                pid: Some(p.pid),
                tid: Some(origin.tid),
                comm: Some(p.comm(origin.tid)),
                process: Some(p.comm(p.pid)),
                netns: Some(p.netns),
                local: node.span.remote,
                remote: node.span.local,
                start_ns: node.caller.start_ns,
                end_ns: node.caller.end_ns,
                bytes_in: node.span.bytes_out,
                bytes_out: node.span.bytes_in,
                issues: Vec::new(),
                children: Vec::new(),
                protocol: None,
                name: None,
                attrs: Default::default(),
            };
            Node {
                span,
                caller: node.caller.clone(),
                children: vec![node],
            }
        } else {
            node
        };
        let mut truth = Vec::new();
        let span = flatten(root, None, &mut truth);
        self.done.push_back(Done {
            path: Path {
                path: 0,
                complete: true,
                root: span,
            },
            truth,
        });
    }

    /// Live connections and processes (for memory checks of the engine).
    #[allow(dead_code)]
    pub(crate) fn live_objects(&self) -> usize {
        self.conns.len() + self.procs.len()
    }
}

/// Turns a node tree into a span tree, recording truth spans in pre-order
/// (indices local to the path; the caller rebases them).
fn flatten(node: Node, parent: Option<usize>, out: &mut Vec<TruthSpan>) -> Span {
    let me = out.len();
    let s = &node.span;
    out.push(TruthSpan {
        path: 0,
        parent,
        kind: s.kind,
        host: s.host.clone(),
        pid: s.pid,
        tid: s.tid,
        local: s.local,
        remote: s.remote,
        start_ns: s.start_ns,
        end_ns: s.end_ns,
        caller: if s.kind == SpanKind::Origin {
            None
        } else {
            Some(node.caller.clone())
        },
    });
    let mut span = node.span;
    span.children = node
        .children
        .into_iter()
        .map(|c| flatten(c, Some(me), out))
        .collect();
    span
}
