//! Stage 1: host-local analysis, internal causality.
//!
//! One [`HostStage`] per host stream. It follows every thread and every
//! socket of the host and turns their operations into plain records:
//!
//! - a [`SpanRecord`] per server span (one thread's handling of one inbound
//!   request, with the calls it made before replying) and per origin exchange
//!   (a call made by a thread that was serving nothing);
//! - a [`HostOutput::Link`] as soon as a call's request starts, so that the
//!   stitch knows that the callee's span has an observed caller;
//! - [`HostOutput::ServerEndpoint`] the first time an endpoint is seen serving;
//! - [`HostOutput::Loss`] for every checkpoint interval in which the kernel
//!   lost events.
//!
//! # Rules
//! *Messages.* On one socket, consecutive data operations in one direction
//! form one message; a message ends when the other direction speaks, when
//! the sequence numbers jump (bytes we did not see), when another thread
//! starts writing a request on a client connection (a pooled connection
//! changing hands), or when the socket closes. A message's position is the stream position of its first
//! byte: the TCP sequence number when the source knows it ([`flags::SEQ`]),
//! otherwise the byte offset since connect/accept (or, for sources without
//! byte counts, the message ordinal), together with the incarnation of the
//! 4-tuple. A connection seen mid-stream without sequence numbers has no
//! position: its links cannot be proven and are left out.
//!
//! *Roles.* The end that called `connect` is the client, the end returned by
//! `accept` the server. Otherwise, in order: a local endpoint already seen
//! serving on this host is a server; an end whose peer is such an endpoint is
//! a client; a port below 1024 facing one above serves; an ephemeral port
//! (32768 and up) facing a lower one is a client; failing all of these the end
//! that speaks first is taken as the client and its records carry
//! [`Issue::RoleGuessed`].
//!
//! *Internal causality (vPath's thread model).* A request received on a server
//! socket opens a span on the receiving thread. Requests the same thread sends
//! on client sockets before it sends the reply are the span's calls. A thread
//! with two requests open at once (an event loop) cannot attribute its calls:
//! they and the spans are marked [`Issue::AmbiguousThread`]. A call made by a
//! thread serving nothing is an origin, unless its process serves requests.
//!
//! *Thread-pool hand-off.* In a serving process, calls made by a thread that
//! serves nothing wait ("floating"). If that thread next sends the reply of a
//! request another thread received, they are that request's calls: the same
//! one-request-at-a-time assumption vPath makes for a request's thread, applied
//! to the thread that finishes the request. Only calls that began after the
//! request arrived qualify. Otherwise (the thread receives a request itself,
//! replies to something unseen, or stays idle past `horizon_ns`) they belong to
//! an unknown request ([`Issue::Unattributed`]); a span whose worker gave up a
//! call since its request arrived is marked [`Issue::HandOff`].
//!
//! *Post-reply work.* A thread that replied and then shut down its side of
//! the connection (`shutdown`, the descriptor kept) still holds the request
//! ([`Phase::Tail`]): its calls until it takes up other work, and bytes it
//! then reads on that connection, are the request's (not in a process seen
//! handing requests off, where a thread's calls may be for a request it did
//! not read). A request whose
//! connection closes without a reply is one-way: no [`Issue::NoReply`] (but
//! under loss its calls are withdrawn like any unreplied span's).
//!
//! *Loss.* Every record covers a window of its thread's timeline, from the
//! thread's previous operation to the operation that ended the record. When a
//! checkpoint reports lost events, every record whose window overlaps the
//! checkpoint interval gets [`Issue::EventsLost`]. With a checkpointed source
//! records are held until a checkpoint covers their window.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::analyzer::{Config, HostId, Stats};
use crate::content::{add_data, Content};
use crate::event::{canonical, Event, Op, Record, Syscall};
use crate::path::Issue;

/// Stream position of a message's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pos {
    /// TCP sequence number: the same on both ends.
    Seq(u32),
    /// Byte offset since connect/accept, in the `inc`-th connection with this
    /// 4-tuple seen by this host.
    Offset { inc: u32, offset: u64 },
    /// Message ordinal since connect/accept (sources without byte counts).
    Ordinal { inc: u32, n: u64 },
}

/// Disambiguates loopback traffic: 127.0.0.1 in one network namespace is not
/// 127.0.0.1 in another. 0 for routable addresses.
pub type Scope = u64;

/// What joins a caller's call to the callee's server span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    pub caller: SocketAddr,
    pub callee: SocketAddr,
    pub scope: Scope,
    pub pos: Pos,
}

/// An endpoint seen serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub addr: SocketAddr,
    pub scope: Scope,
}

/// Globally unique id of a record: host in the top 16 bits.
pub type RecId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecKind {
    Server,
    Origin,
}

/// One request/reply exchange made by a record's thread, as the caller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// None when the position is unknown (see [`Issue::Unaligned`]).
    pub key: Option<LinkKey>,
    pub scope: Scope,
    /// The caller's endpoint.
    pub local: SocketAddr,
    /// The callee's endpoint.
    pub remote: SocketAddr,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Request bytes.
    pub bytes_out: u64,
    /// Reply bytes.
    pub bytes_in: u64,
    /// A reply was seen (sources without byte counts report 0 bytes).
    pub replied: bool,
    /// The connection closed before any reply: a one-way request (MySQL's
    /// COM_QUIT), not a reply we missed.
    pub closed: bool,
    /// Made by a worker thread and adopted by the request it replied to
    /// (see [`HostStage::adopt`]).
    pub adopted: bool,
    pub issues: Vec<Issue>,
    /// What the request and reply carried (see [`crate::content`]).
    pub content: Option<Box<Content>>,
}

/// A finished span: the plain record that the stitch joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRecord {
    pub id: RecId,
    pub kind: RecKind,
    pub host: Arc<str>,
    pub pid: u32,
    pub tid: u32,
    pub comm: Option<Arc<str>>,
    /// The process's name: its main thread's comm, where known.
    pub process: Option<Arc<str>>,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// For server spans: the key of the request that opened it.
    pub uplink: Option<LinkKey>,
    pub calls: Vec<Call>,
    pub issues: Vec<Issue>,
    /// Keys this record announced in a [`HostOutput::Link`] but withdrew
    /// because they may be wrong (see [`Issue::EventsLost`]).
    pub withdrawn: Vec<LinkKey>,
    /// Records merged into this one (a worker's calls adopted by the request
    /// it replied to): their `Link`s name these ids as parent.
    pub adopted: Vec<RecId>,
    /// For server spans: what the request and reply carried.
    pub content: Option<Box<Content>>,
    /// For server spans: the reply was seen. (Without it, when the
    /// connection closed, there is no `NoReply` issue, but under loss the
    /// calls still cannot be proven.)
    pub replied: bool,
    /// For server spans: its connection closed, or this end shut it down,
    /// with no request after this one: bytes the caller sent beyond this
    /// span's request were never read by anyone.
    pub last: bool,
}

/// What a host stage hands to the stitch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostOutput {
    Link {
        key: LinkKey,
        parent: RecId,
    },
    ServerEndpoint(EndpointKey),
    /// A call without a position was made on this connection (calls with a
    /// position announce themselves with `Link`).
    CallerSeen {
        caller: SocketAddr,
        callee: SocketAddr,
        scope: Scope,
    },
    Record(Box<SpanRecord>),
    /// Events were lost in (from, to].
    Loss {
        from: u64,
        to: u64,
    },
    /// Stream time of this host has reached this value.
    Watermark(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Unknown,
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Out = 0,
    In = 1,
}

/// Who owns the exchange in progress on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cur {
    None,
    /// Server socket: the span that received the current request.
    Span(RecId),
    /// Client socket: call `idx` of record `rec`.
    Call(RecId, u32),
}

struct Sock {
    local: SocketAddr,
    remote: SocketAddr,
    netns: u32,
    scope: Scope,
    role: Role,
    guessed: bool,
    /// connect/accept was seen, so offsets count from the connection's start.
    aligned: bool,
    /// Incarnation of the 4-tuple, assigned at the first data operation.
    inc: Option<u32>,
    off_out: u64,
    off_in: u64,
    msgs_out: u64,
    msgs_in: u64,
    dir: Option<Dir>,
    /// Stream position expected next, per direction (Out, In), where known.
    next_seq: [Option<u32>; 2],
    cur: Cur,
    /// This end shut down its sending side (a FIN by `shutdown`) at this
    /// time, after replying: the socket is kept to catch the rest of the
    /// request, read late (php-fpm reads FastCGI's last empty record after
    /// replying), and forgotten later.
    shut: Option<u64>,
}

impl Sock {
    /// The key of a request at `pos` on this connection, seen from this end
    /// playing `role`: the caller is the client end either way.
    fn link(&self, role: Role, pos: Pos) -> LinkKey {
        let (caller, callee) = match role {
            Role::Server => (self.remote, self.local),
            _ => (self.local, self.remote),
        };
        LinkKey {
            caller,
            callee,
            scope: self.scope,
            pos,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving the request.
    Request,
    /// Has made calls, no reply yet.
    Calling,
    /// Sending the reply.
    Reply,
    /// Replied, then shut down its side of the connection and kept it (a
    /// FIN by `shutdown`, not `close`): the thread still holds the request,
    /// so its calls are this span's until it takes up other work, and bytes
    /// read on the connection are the rest of this request (php-fpm replies,
    /// shuts down, runs the script's post-response work, and may read
    /// FastCGI's last empty record only then).
    Tail,
}

struct OpenRec {
    rec: Box<SpanRecord>,
    phase: Phase,
    /// For server spans: the socket of the inbound request.
    sock: u64,
    /// Start of the record's window on its thread's timeline.
    win_start: u64,
    /// Last time anything happened to the record (for idle flushing).
    last_ns: u64,
    /// An origin made by a thread of a serving process while it served
    /// nothing: it waits to be adopted (see [`HostStage::adopt`]).
    floating: bool,
    /// For server spans: the thread sending the reply.
    replier: Option<u32>,
    /// Its connection closed: nothing more can happen in this exchange, so a
    /// missing reply was never sent (a one-way request), not missed.
    closed: bool,
}

struct Thread {
    pid: u32,
    comm: Option<Arc<str>>,
    /// Time of the thread's last data operation (0 before the first).
    last_ns: u64,
    /// Open server spans, normally at most one.
    spans: Vec<RecId>,
    /// Origin exchanges in progress: normally at most one; an event loop can
    /// have several calls in flight.
    origins: Vec<RecId>,
    /// From when this thread's history is known: when its name was announced
    /// (the recorder announces a thread before its first event), else 0.
    since: u64,
    /// The thread has made an origin exchange that was proven lossless back
    /// to `since`: it is a client. Until then, the claim that it served
    /// nothing when it made a call rests on its whole known history, so a
    /// loss anywhere since `since` makes its origins unverifiable (the lost
    /// event may have been a request it received).
    established: bool,
    /// Calls made while serving nothing in a serving process (origin
    /// records), waiting for the request this thread replies to next.
    floating: Vec<RecId>,
    /// Start of the latest floating call given up as unattributed.
    gave_up_since: u64,
    /// Start of the latest call this thread made that did not float: one
    /// attached to a request it read itself, or an ambiguous or plain origin.
    other_calls_since: u64,
}

impl Thread {
    /// Where the thread's known timeline resumes for its next record: its
    /// last operation, or, before its first, when it was announced.
    fn history_from(&self) -> u64 {
        if self.last_ns == 0 {
            self.since
        } else {
            self.last_ns
        }
    }
}

struct Held {
    rec: Box<SpanRecord>,
    win_start: u64,
    win_end: u64,
}

/// Stage 1 for one host.
pub struct HostStage {
    id: HostId,
    name: Arc<str>,
    checkpointed: bool,
    config: Config,
    next_rec: u64,
    now: u64,
    threads: FxHashMap<u32, Thread>,
    socks: FxHashMap<u64, Sock>,
    recs: FxHashMap<RecId, OpenRec>,
    /// Thread names: tid -> (pid, comm, stream time of the announcement).
    comms: FxHashMap<u32, (u32, Arc<str>, u64)>,
    /// Endpoints seen serving on this host.
    servers: FxHashSet<EndpointKey>,
    /// Processes that serve requests.
    serving: FxHashSet<u32>,
    /// Processes seen handing a request from the thread that read it to
    /// another that replied: their threads may work on requests they did not
    /// read, so a thread's calls after its reply prove nothing
    /// ([`Phase::Tail`] is not used there).
    hands_off: FxHashSet<u32>,
    /// Incarnations of each 4-tuple seen with connect/accept.
    incs: FxHashMap<(SocketAddr, SocketAddr, Scope), u32>,
    /// Finished records waiting for a checkpoint.
    held: VecDeque<Held>,
    /// Checkpoint intervals with loss, (from, to].
    lossy: LossSet,
    last_ck: Option<(u64, u64)>,
    /// Events were lost, so positions counted in user space (byte offsets,
    /// message ordinals, 4-tuple incarnations) may be shifted from here on.
    counts_poisoned: bool,
    next_flush_check: u64,
    next_gc: u64,
    last_watermark: u64,
    /// Sockets kept after this end's `shutdown`, oldest first.
    shut_socks: VecDeque<(u64, u64)>,
}

const FLUSH_CHECK_NS: u64 = 100_000_000;
const GC_EVERY_NS: u64 = 10_000_000_000;
/// How long a socket is kept after this end's `shutdown`, for the rest of
/// its last request.
const SHUT_TTL_NS: u64 = 2_000_000_000;
/// A thread with nothing open and no operation for this long is forgotten
/// (threads come and go: process-per-connection servers, short-lived
/// clients). If it comes back, its next record's loss window reaches back
/// to the start, which can only mark more records lost.
const THREAD_TTL_NS: u64 = 120_000_000_000;
const WATERMARK_STEP_NS: u64 = 10_000_000;

impl HostStage {
    pub fn new(id: HostId, name: Arc<str>, checkpointed: bool, config: Config) -> Self {
        HostStage {
            id,
            name,
            checkpointed,
            config,
            next_rec: 1,
            now: 0,
            threads: FxHashMap::default(),
            socks: FxHashMap::default(),
            recs: FxHashMap::default(),
            comms: FxHashMap::default(),
            servers: FxHashSet::default(),
            serving: FxHashSet::default(),
            hands_off: FxHashSet::default(),
            incs: FxHashMap::default(),
            held: VecDeque::new(),
            lossy: LossSet::default(),
            last_ck: None,
            counts_poisoned: false,
            next_flush_check: 0,
            next_gc: 0,
            last_watermark: 0,
            shut_socks: VecDeque::new(),
        }
    }

    /// Records and sockets held in memory.
    pub fn in_flight(&self) -> usize {
        self.recs.len() + self.held.len() + self.socks.len()
    }

    pub fn push(&mut self, rec: &Record, stats: &mut Stats, out: &mut Vec<HostOutput>) {
        match rec {
            Record::Event(e) => {
                stats.events += 1;
                if e.ts_ns > self.now {
                    self.now = e.ts_ns;
                }
                match e.op {
                    Op::Send | Op::Recv => {
                        if e.is_data() {
                            stats.data_events += 1;
                            self.data(e, stats, out);
                        } else {
                            stats.ignored_events += 1;
                        }
                    }
                    Op::Connect | Op::Accept => self.open_conn(e, out),
                    Op::Close if e.syscall == Syscall::Shutdown && e.tid != 0 => {
                        self.shutdown(e, out)
                    }
                    Op::Close => self.close(e.sock, out),
                }
                if self.now >= self.next_flush_check {
                    self.next_flush_check = self.now + FLUSH_CHECK_NS;
                    self.idle_flush(out);
                    self.forget_shut_sockets(out);
                }
                if self.now >= self.next_gc {
                    self.next_gc = self.now + GC_EVERY_NS;
                    self.forget_idle_threads();
                }
                if self.now >= self.last_watermark + WATERMARK_STEP_NS {
                    self.last_watermark = self.now;
                    out.push(HostOutput::Watermark(self.watermark()));
                }
            }
            Record::Thread(t) => {
                let comm: Arc<str> = Arc::from(t.comm.as_str());
                if let Some(th) = self.threads.get_mut(&t.tid) {
                    th.pid = t.pid;
                    th.comm = Some(comm.clone());
                }
                let since = self
                    .comms
                    .get(&t.tid)
                    .filter(|c| c.0 == t.pid)
                    .map_or(self.now, |c| c.2);
                self.comms.insert(t.tid, (t.pid, comm, since));
            }
            Record::Checkpoint(c) => self.checkpoint(c.ts_ns, c.lost_total, stats, out),
        }
    }

    /// End of this host's input: flush everything.
    pub fn finish(&mut self, stats: &mut Stats, out: &mut Vec<HostOutput>) {
        let mut ids: Vec<RecId> = self.recs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.finalize(id, out);
        }
        // Records not covered by any checkpoint could not be verified lossless.
        let verified_to = self.last_ck.map(|c| c.0).unwrap_or(0);
        while let Some(h) = self.held.pop_front() {
            let unverified = (self.checkpointed && h.win_end > verified_to).then_some(verified_to);
            let cut = match (self.loss_cut(h.win_start, h.win_end), unverified) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.release(h.rec, cut, out);
        }
        let _ = stats;
        out.push(HostOutput::Watermark(u64::MAX));
    }

    fn new_id(&mut self) -> RecId {
        let id = ((self.id.0 as u64) << 48) | self.next_rec;
        self.next_rec += 1;
        id
    }

    fn scope_of(&self, netns: u32, local: &SocketAddr, remote: &SocketAddr) -> Scope {
        if is_loopback(local.ip()) || is_loopback(remote.ip()) {
            ((self.id.0 as u64 + 1) << 32) | netns as u64
        } else {
            0
        }
    }

    fn sock_entry(&mut self, e: &Event) -> &mut Sock {
        // The common case first: a known socket with a complete tuple.
        if let Some(s) = self.socks.get(&e.sock) {
            if s.local.port() != 0 && s.remote.port() != 0 {
                return self.socks.get_mut(&e.sock).unwrap();
            }
        }
        let local = canonical(&e.local);
        let remote = canonical(&e.remote);
        let scope = self.scope_of(e.netns, &local, &remote);
        let s = self.socks.entry(e.sock).or_insert_with(|| Sock {
            local,
            remote,
            netns: e.netns,
            scope,
            role: Role::Unknown,
            guessed: false,
            aligned: false,
            inc: None,
            off_out: 0,
            off_in: 0,
            msgs_out: 0,
            msgs_in: 0,
            dir: None,
            next_seq: [None; 2],
            cur: Cur::None,
            shut: None,
        });
        // A tuple learnt late (connect before the port was bound), or lost
        // after close (ports read 0): keep the most complete one.
        if local.port() != 0 && remote.port() != 0 && (s.local != local || s.remote != remote) {
            s.local = local;
            s.remote = remote;
            s.scope = scope;
        }
        s
    }

    fn open_conn(&mut self, e: &Event, out: &mut Vec<HostOutput>) {
        // A new connection on a cookie we still track: the old one is over.
        if let Some(s) = self.socks.get(&e.sock) {
            if s.dir.is_some() {
                self.close(e.sock, out);
            }
        }
        let pid = e.pid;
        let s = self.sock_entry(e);
        s.aligned = true;
        s.inc = None;
        s.off_in = 0;
        s.off_out = 0;
        s.msgs_in = 0;
        s.msgs_out = 0;
        s.dir = None;
        s.next_seq = [None; 2];
        s.guessed = false;
        if e.op == Op::Connect {
            s.role = Role::Client;
        } else {
            s.role = Role::Server;
            let key = EndpointKey {
                addr: s.local,
                scope: s.scope,
            };
            // An open reported without its thread (the recorder sees a
            // passive open in softirq) names no process: the serving one
            // is marked by its first operation on the socket.
            if pid != 0 {
                self.serving.insert(pid);
            }
            if self.servers.insert(key) {
                out.push(HostOutput::ServerEndpoint(key));
            }
        }
    }

    fn decide_role(&mut self, sock: u64, first: Dir, pid: u32, out: &mut Vec<HostOutput>) {
        let s = self.socks.get_mut(&sock).expect("socket exists");
        if s.role != Role::Unknown {
            return;
        }
        let here = EndpointKey {
            addr: s.local,
            scope: s.scope,
        };
        let there = EndpointKey {
            addr: s.remote,
            scope: s.scope,
        };
        let (lp, rp) = (s.local.port(), s.remote.port());
        // Which end serves, by the documented rules (module doc, "Roles").
        let serves_here = self.servers.contains(&here);
        let serves_there = self.servers.contains(&there);
        let well_known_here = lp < 1024 && rp >= 1024;
        let well_known_there = rp < 1024 && lp >= 1024;
        let ephemeral_here = lp >= 32768 && rp < 32768;
        let ephemeral_there = rp >= 32768 && lp < 32768;
        s.role = if serves_here {
            Role::Server
        } else if serves_there || well_known_there {
            Role::Client
        } else if well_known_here {
            Role::Server
        } else if ephemeral_here {
            Role::Client
        } else if ephemeral_there {
            Role::Server
        } else {
            s.guessed = true;
            if first == Dir::Out {
                Role::Client
            } else {
                Role::Server
            }
        };
        if s.role == Role::Server {
            self.serving.insert(pid);
            if self.servers.insert(here) {
                out.push(HostOutput::ServerEndpoint(here));
            }
        }
    }

    fn thread(&mut self, pid: u32, tid: u32) -> &mut Thread {
        let comms = &self.comms;
        let th = self.threads.entry(tid).or_insert_with(|| Thread {
            pid,
            comm: comms.get(&tid).filter(|c| c.0 == pid).map(|c| c.1.clone()),
            since: comms.get(&tid).filter(|c| c.0 == pid).map_or(0, |c| c.2),
            established: false,
            floating: Vec::new(),
            gave_up_since: 0,
            other_calls_since: 0,
            last_ns: 0,
            spans: Vec::new(),
            origins: Vec::new(),
        });
        if th.pid != pid {
            // A reused tid: a new thread.
            th.pid = pid;
            th.comm = comms.get(&tid).filter(|c| c.0 == pid).map(|c| c.1.clone());
            th.since = comms.get(&tid).filter(|c| c.0 == pid).map_or(0, |c| c.2);
            th.established = false;
            th.last_ns = 0;
        }
        th
    }

    fn data(&mut self, e: &Event, stats: &mut Stats, out: &mut Vec<HostOutput>) {
        let dir = if e.op == Op::Send { Dir::Out } else { Dir::In };
        self.sock_entry(e);
        self.decide_role(e.sock, dir, e.pid, out);
        self.thread(e.pid, e.tid);

        // Message boundary and position of this operation's first byte.
        let (role, new_msg, pos) = {
            let s = self.socks.get_mut(&e.sock).unwrap();
            let d = dir as usize;
            // A gap in the stream (bytes we did not see) ends a message: what
            // follows is not known to belong to it.
            let gap = e.has_seq() && s.next_seq[d].is_some_and(|n| n != e.seq);
            let new_msg = s.dir != Some(dir) || gap;
            // Incarnations matter only where positions are counted here.
            if s.aligned && s.inc.is_none() && !e.has_seq() {
                let c = self.incs.entry((s.local, s.remote, s.scope)).or_insert(0);
                *c += 1;
                s.inc = Some(*c);
            }
            if new_msg {
                match dir {
                    Dir::Out => s.msgs_out += 1,
                    Dir::In => s.msgs_in += 1,
                }
            }
            let (off, n) = match dir {
                Dir::Out => (&mut s.off_out, s.msgs_out),
                Dir::In => (&mut s.off_in, s.msgs_in),
            };
            let pos = if e.has_seq() {
                Some(Pos::Seq(e.seq))
            } else if self.counts_poisoned {
                None
            } else if let (true, Some(inc)) = (s.aligned, s.inc) {
                if e.bytes_known() {
                    Some(Pos::Offset { inc, offset: *off })
                } else {
                    Some(Pos::Ordinal { inc, n })
                }
            } else {
                None
            };
            *off += e.moved();
            s.next_seq[d] = e.has_seq().then(|| e.seq.wrapping_add(e.moved() as u32));
            s.dir = Some(dir);
            (s.role, new_msg, pos)
        };

        // The process that uses a server socket serves, whoever accepted it
        // (a pre-forking parent, say).
        if role == Role::Server && !self.serving.contains(&e.pid) {
            self.serving.insert(e.pid);
        }
        match (role, dir) {
            (Role::Server, Dir::In) => self.server_recv(e, new_msg, pos, stats, out),
            (Role::Server, Dir::Out) => self.server_send(e, new_msg, stats, out),
            (Role::Client, Dir::Out) => self.client_send(e, new_msg, pos, out),
            (Role::Client, Dir::In) => self.client_recv(e, new_msg, stats, out),
            (Role::Unknown, _) => unreachable!("role decided above"),
        }
        self.threads.get_mut(&e.tid).unwrap().last_ns = e.ts_ns;
    }

    /// The thread moves on to new work: whatever it had finished is final.
    fn thread_moves_on(&mut self, tid: u32, out: &mut Vec<HostOutput>) {
        self.finish_replied_origins(tid, out);
        let th = self.threads.get_mut(&tid).unwrap();
        if th.spans.is_empty() {
            return;
        }
        let spans = std::mem::take(&mut th.spans);
        let mut keep = Vec::with_capacity(spans.len());
        let mut done = Vec::new();
        for id in spans {
            match self.recs.get(&id) {
                Some(r)
                    if matches!(r.phase, Phase::Reply | Phase::Tail)
                        && r.replier.is_none_or(|t| t == tid) =>
                {
                    done.push(id)
                }
                Some(_) => keep.push(id),
                None => {}
            }
        }
        self.threads.get_mut(&tid).unwrap().spans = keep;
        for id in done {
            self.finalize(id, out);
        }
    }

    fn server_recv(
        &mut self,
        e: &Event,
        new_msg: bool,
        pos: Option<Pos>,
        stats: &mut Stats,
        out: &mut Vec<HostOutput>,
    ) {
        let cur = self.socks[&e.sock].cur;
        if self.socks[&e.sock].shut.is_some() {
            // After this end's FIN, a new request could not be answered:
            // these bytes are the rest of the last one.
            if let Some(r) = match cur {
                Cur::Span(id) => self.recs.get_mut(&id),
                _ => None,
            } {
                r.rec.bytes_in += e.moved();
                r.last_ns = e.ts_ns;
                return;
            }
            stats.stray_messages += 1;
            return;
        }
        let mut pos = pos;
        if !new_msg {
            let open = match cur {
                Cur::Span(id) => self.recs.get_mut(&id),
                _ => None,
            };
            let Some(r) = open else {
                // More request bytes, but the span they belong to is gone.
                stats.stray_messages += 1;
                self.thread_moves_on(e.tid, out);
                return;
            };
            if r.phase == Phase::Request {
                r.rec.bytes_in += e.moved();
                add_data(&mut r.rec.content, e, false);
                r.last_ns = e.ts_ns;
                if r.rec.tid != e.tid {
                    add_issue(&mut r.rec.issues, Issue::HandOff);
                }
                return;
            }
            // Request bytes after the span made calls. In the thread model a
            // request is read whole before any call, so this is the next
            // request and the previous reply was not seen: never let the
            // previous span adopt this request's calls. (Ordinals did not
            // count this as a message, so they cannot place it.)
            if let Some(Pos::Ordinal { .. }) = pos {
                pos = None;
            }
        }
        // This thread serves a request itself: calls it made while serving
        // nothing belong to no request it will reply to.
        self.give_up_floating(e.tid, out);
        // A new request on this socket: the previous exchange on it is over.
        if let Cur::Span(prev) = cur {
            self.finalize(prev, out);
        }
        self.thread_moves_on(e.tid, out);

        let s = &self.socks[&e.sock];
        let (local, remote, netns, guessed) = (s.local, s.remote, s.netns, s.guessed);
        let uplink = pos.map(|pos| s.link(Role::Server, pos));
        let id = self.new_id();
        let mut issues = Vec::new();
        if uplink.is_none() {
            issues.push(Issue::Unaligned);
        }
        if guessed {
            issues.push(Issue::RoleGuessed);
        }
        // A thread may hold several requests open (an event loop, or an IO
        // thread handing requests to workers); that is ambiguous only for
        // calls it makes meanwhile, which `client_send` marks.
        let mut rec = self.new_record(id, RecKind::Server, e, netns, local, remote, issues);
        rec.bytes_in = e.moved();
        add_data(&mut rec.content, e, false);
        rec.uplink = uplink;
        let win_start = self.threads[&e.tid].history_from();
        self.recs.insert(
            id,
            OpenRec {
                rec: Box::new(rec),
                phase: Phase::Request,
                sock: e.sock,
                win_start,
                last_ns: e.ts_ns,
                floating: false,
                replier: None,
                closed: false,
            },
        );
        self.threads.get_mut(&e.tid).unwrap().spans.push(id);
        self.socks.get_mut(&e.sock).unwrap().cur = Cur::Span(id);
    }

    /// A record opened by event `e` of its thread, before its first bytes.
    #[allow(clippy::too_many_arguments)]
    fn new_record(
        &self,
        id: RecId,
        kind: RecKind,
        e: &Event,
        netns: u32,
        local: SocketAddr,
        remote: SocketAddr,
        issues: Vec<Issue>,
    ) -> SpanRecord {
        SpanRecord {
            id,
            kind,
            host: self.name.clone(),
            pid: e.pid,
            tid: e.tid,
            comm: self.threads.get(&e.tid).and_then(|t| t.comm.clone()),
            process: self
                .comms
                .get(&e.pid)
                .filter(|c| c.0 == e.pid)
                .map(|c| c.1.clone()),
            netns,
            local,
            remote,
            start_ns: e.ts_ns,
            end_ns: e.ts_ns,
            bytes_in: 0,
            bytes_out: 0,
            uplink: None,
            calls: Vec::new(),
            issues,
            withdrawn: Vec::new(),
            adopted: Vec::new(),
            content: None,
            replied: false,
            last: false,
        }
    }

    fn server_send(
        &mut self,
        e: &Event,
        new_msg: bool,
        stats: &mut Stats,
        out: &mut Vec<HostOutput>,
    ) {
        let cur = self.socks[&e.sock].cur;
        let Cur::Span(id) = cur else {
            // A reply to a request we never saw (greeting, or mid-stream start).
            stats.stray_messages += 1;
            self.give_up_floating(e.tid, out);
            self.thread_moves_on(e.tid, out);
            return;
        };
        let Some(r) = self.recs.get_mut(&id) else {
            if !new_msg {
                stats.stray_messages += 1;
            }
            self.thread_moves_on(e.tid, out);
            return;
        };
        r.phase = Phase::Reply;
        r.replier = Some(e.tid);
        r.rec.bytes_out += e.moved();
        add_data(&mut r.rec.content, e, true);
        r.rec.end_ns = e.ts_ns;
        r.last_ns = e.ts_ns;
        let owner = r.rec.tid;
        if owner != e.tid {
            self.hands_off.insert(e.pid);
            if new_msg {
                self.adopt(id, e.tid, out);
            }
            // The replying worker is done with whatever it did before.
            self.thread_moves_on(e.tid, out);
        } else if new_msg {
            // Finishing this span is the owner's next step; its other spans
            // stay open (event loop) and any origin exchange is over.
            self.finish_replied_origins(e.tid, out);
        }
    }

    fn client_send(
        &mut self,
        e: &Event,
        new_msg: bool,
        pos: Option<Pos>,
        out: &mut Vec<HostOutput>,
    ) {
        let cur = self.socks[&e.sock].cur;
        if !new_msg {
            if let Cur::Call(id, idx) = cur {
                // More of the request in progress, by the thread writing it.
                // Another thread writing on the connection starts a request of
                // its own (a pooled connection changed hands while the reply
                // of the last call went unseen).
                // And only while that call is still what the thread is doing:
                // if it has taken up a request since the call began, the
                // call's reply (and the old request's) went unseen, and these
                // bytes may be the new request's call.
                // (Only a thread holding more than one request can have.)
                let th = &self.threads[&e.tid];
                let moved_on = th.spans.len() > 1 && {
                    let t0 = self
                        .recs
                        .get(&id)
                        .map_or(0, |r| r.rec.calls[idx as usize].start_ns);
                    th.spans
                        .iter()
                        .any(|x| *x != id && self.recs.get(x).is_some_and(|o| o.rec.start_ns > t0))
                };
                if let Some(r) = self
                    .recs
                    .get_mut(&id)
                    .filter(|r| r.rec.tid == e.tid && !moved_on)
                {
                    let c = &mut r.rec.calls[idx as usize];
                    c.bytes_out += e.moved();
                    add_data(&mut c.content, e, false);
                    c.end_ns = e.ts_ns;
                    r.last_ns = e.ts_ns;
                    return;
                }
            }
        }
        // A new call (a call without reply on this socket is flagged when its
        // record is finalized). Spans of this thread that had replied are final now.
        self.finish_replied_origins(e.tid, out);
        let spans = std::mem::take(&mut self.threads.get_mut(&e.tid).unwrap().spans);
        let mut keep = Vec::with_capacity(spans.len());
        let mut active: Vec<RecId> = Vec::with_capacity(spans.len());
        let (sock_local, sock_remote) = {
            let s = &self.socks[&e.sock];
            (s.local, s.remote)
        };
        for id in spans {
            match self.recs.get(&id).map(|r| (r.phase, r.replier)) {
                Some((Phase::Reply, rep)) if rep.is_none_or(|t| t == e.tid) => {
                    self.finalize(id, out)
                }
                // Replied by another thread (a hand-off): not this thread's
                // to finish, and not open for its calls.
                Some((Phase::Reply, _)) => keep.push(id),
                Some(_) => {
                    keep.push(id);
                    // A request on the very connection this span's request
                    // came in on (the thread holds both ends: it talks to
                    // itself) is not a call the span made. Taking it as one
                    // would nest every round trip in the previous one.
                    let r = &self.recs[&id].rec;
                    if !(r.local == sock_remote && r.remote == sock_local) {
                        active.push(id);
                    }
                }
                None => {}
            }
        }
        let th = self.threads.get_mut(&e.tid).unwrap();
        th.spans = keep;

        let s = &self.socks[&e.sock];
        let (local, remote, scope, guessed, netns) =
            (s.local, s.remote, s.scope, s.guessed, s.netns);
        let key = pos.map(|pos| s.link(Role::Client, pos));
        let mut call_issues = Vec::new();
        if guessed {
            call_issues.push(Issue::RoleGuessed);
        }
        let mut call = Call {
            key,
            scope,
            local,
            remote,
            start_ns: e.ts_ns,
            end_ns: e.ts_ns,
            bytes_out: e.moved(),
            bytes_in: 0,
            replied: false,
            closed: false,
            adopted: false,
            issues: call_issues,
            content: None,
        };
        add_data(&mut call.content, e, false);
        let parent = if active.len() == 1 {
            let id = active[0];
            let r = self.recs.get_mut(&id).unwrap();
            if r.phase != Phase::Tail {
                r.phase = Phase::Calling;
            }
            r.last_ns = e.ts_ns;
            r.rec.calls.push(call);
            (id, r.rec.calls.len() as u32 - 1)
        } else {
            // No inbound request: an origin exchange (or, in a serving
            // process or an event loop, one we cannot attribute).
            let mut issues = Vec::new();
            let floating = active.is_empty() && self.serving.contains(&e.pid);
            if active.len() > 1 {
                issues.push(Issue::AmbiguousThread);
            }
            let ambiguous = active.clone();
            let id = self.new_id();
            let mut rec = self.new_record(id, RecKind::Origin, e, netns, local, remote, issues);
            rec.calls.push(call);
            let th = &self.threads[&e.tid];
            let win_start = if th.established {
                th.last_ns
            } else {
                th.since.min(th.history_from())
            };
            self.recs.insert(
                id,
                OpenRec {
                    rec: Box::new(rec),
                    phase: Phase::Calling,
                    sock: e.sock,
                    win_start,
                    last_ns: e.ts_ns,
                    floating,
                    replier: None,
                    closed: false,
                },
            );
            let th = self.threads.get_mut(&e.tid).unwrap();
            if floating {
                th.floating.push(id);
            } else {
                th.origins.push(id);
            }
            for other in ambiguous {
                if let Some(r) = self.recs.get_mut(&other) {
                    add_issue(&mut r.rec.issues, Issue::AmbiguousThread);
                }
            }
            (id, 0)
        };
        match key {
            Some(key) => out.push(HostOutput::Link {
                key,
                parent: parent.0,
            }),
            None => out.push(HostOutput::CallerSeen {
                caller: local,
                callee: remote,
                scope,
            }),
        }
        let floated = self.recs.get(&parent.0).is_some_and(|r| r.floating);
        if !floated {
            self.threads.get_mut(&e.tid).unwrap().other_calls_since = e.ts_ns;
        }
        self.socks.get_mut(&e.sock).unwrap().cur = Cur::Call(parent.0, parent.1);
    }

    fn client_recv(
        &mut self,
        e: &Event,
        new_msg: bool,
        stats: &mut Stats,
        out: &mut Vec<HostOutput>,
    ) {
        let cur = self.socks[&e.sock].cur;
        let _ = new_msg;
        if let Cur::Call(id, idx) = cur {
            if let Some(r) = self.recs.get_mut(&id) {
                let c = &mut r.rec.calls[idx as usize];
                c.bytes_in += e.moved();
                add_data(&mut c.content, e, true);
                c.replied = true;
                c.end_ns = e.ts_ns;
                r.last_ns = e.ts_ns;
                if r.rec.tid != e.tid {
                    add_issue(&mut c.issues, Issue::HandOff);
                }
                return;
            }
        }
        // A reply to a call we never saw (or a server greeting).
        stats.stray_messages += 1;
        self.finish_replied_origins(e.tid, out);
    }

    /// Thread `worker` sends the reply of span `span`, whose request another
    /// thread received: a thread-pool hand-off. Under the thread model that
    /// vPath assumes for a request's thread (it works on one request until it
    /// replies), the calls the worker made while serving nothing belong to the
    /// request it replies to, provided they began after that request arrived.
    /// Calls that began earlier cannot be its and are given up. If the worker
    /// gave up any call since the request arrived, or serves requests of its
    /// own, the span's children cannot be proven: [`Issue::HandOff`].
    fn adopt(&mut self, span: RecId, worker: u32, out: &mut Vec<HostOutput>) {
        let Some(span_start) = self.recs.get(&span).map(|r| r.rec.start_ns) else {
            return;
        };
        let th = self.threads.get_mut(&worker).unwrap();
        let floating = std::mem::take(&mut th.floating);
        let own: Vec<RecId> = th.spans.clone();
        // A call this worker attached to a request it read itself, made after
        // this request arrived, may have been this request's.
        let gave_up_since = th.gave_up_since.max(th.other_calls_since);
        // Requests this worker read itself and still holds open: the calls it
        // made since this request arrived were attached to them, but may have
        // been for this one. Such edges cannot be proven either way.
        let mut busy = false;
        for x in own {
            let Some(r) = self.recs.get_mut(&x) else {
                continue;
            };
            if r.phase == Phase::Reply {
                continue;
            }
            busy = true;
            let mut doubtful = false;
            for c in r.rec.calls.iter_mut() {
                if c.start_ns >= span_start {
                    if let Some(k) = c.key.take() {
                        r.rec.withdrawn.push(k);
                    }
                    add_issue(&mut c.issues, Issue::AmbiguousThread);
                    doubtful = true;
                }
            }
            if doubtful {
                add_issue(&mut r.rec.issues, Issue::AmbiguousThread);
            }
        }
        let mut unproven = busy || gave_up_since >= span_start;
        // Calls the reading thread attached to this request before it was
        // handed off: that thread may have gone on to other work meanwhile,
        // so they cannot be proven this request's.
        if let Some(r) = self.recs.get_mut(&span) {
            let mut doubtful = false;
            for c in r.rec.calls.iter_mut() {
                if let Some(k) = c.key.take() {
                    r.rec.withdrawn.push(k);
                }
                add_issue(&mut c.issues, Issue::HandOff);
                doubtful = true;
            }
            unproven |= doubtful;
        }
        for o in floating {
            let Some(or) = self.recs.get(&o) else {
                continue;
            };
            let call = &or.rec.calls[0];
            if call.start_ns < span_start || !call.replied {
                if call.start_ns >= span_start {
                    unproven = true;
                }
                self.give_up(o, out);
                continue;
            }
            let or = self.recs.remove(&o).unwrap();
            let r = self.recs.get_mut(&span).unwrap();
            let mut call = or.rec.calls.into_iter().next().unwrap();
            call.adopted = true;
            r.rec.calls.push(call);
            r.rec.adopted.push(o);
            r.win_start = r.win_start.min(or.win_start);
            let idx = r.rec.calls.len() as u32 - 1;
            if let Some(s) = self.socks.get_mut(&or.sock) {
                if s.cur == Cur::Call(o, 0) {
                    s.cur = Cur::Call(span, idx);
                }
            }
        }
        if unproven {
            if let Some(r) = self.recs.get_mut(&span) {
                add_issue(&mut r.rec.issues, Issue::HandOff);
            }
        }
    }

    /// Finalizes a floating origin as a call of an unknown request.
    fn give_up(&mut self, id: RecId, out: &mut Vec<HostOutput>) {
        let Some(r) = self.recs.get_mut(&id) else {
            return;
        };
        add_issue(&mut r.rec.issues, Issue::Unattributed);
        let (tid, start) = (r.rec.tid, r.rec.calls[0].start_ns);
        if let Some(th) = self.threads.get_mut(&tid) {
            th.floating.retain(|x| *x != id);
            th.gave_up_since = th.gave_up_since.max(start);
        }
        self.finalize(id, out);
    }

    fn give_up_floating(&mut self, tid: u32, out: &mut Vec<HostOutput>) {
        let Some(th) = self.threads.get_mut(&tid) else {
            return;
        };
        for id in std::mem::take(&mut th.floating) {
            self.give_up(id, out);
        }
    }

    /// Origin exchanges of a thread whose reply has come are over once the
    /// thread does something else. Unanswered ones stay open: an event loop
    /// may have several calls in flight, written in interleaved pieces.
    fn finish_replied_origins(&mut self, tid: u32, out: &mut Vec<HostOutput>) {
        let Some(th) = self.threads.get(&tid) else {
            return;
        };
        if th.origins.is_empty() {
            return;
        }
        let done: Vec<RecId> = th
            .origins
            .iter()
            .copied()
            .filter(|id| self.recs.get(id).is_none_or(|r| r.rec.calls[0].replied))
            .collect();
        for id in done {
            self.finalize(id, out);
        }
        let recs = &self.recs;
        if let Some(th) = self.threads.get_mut(&tid) {
            th.origins.retain(|id| recs.contains_key(id));
        }
    }

    /// This end sent its FIN with `shutdown` (the descriptor stays open). On
    /// a server socket whose request was answered, the socket is kept: the
    /// rest of that request may still be read (see [`Phase::Tail`]).
    fn shutdown(&mut self, e: &Event, out: &mut Vec<HostOutput>) {
        let replied = match self.socks.get(&e.sock) {
            Some(s) if s.role == Role::Server && !self.hands_off.contains(&e.pid) => match s.cur {
                Cur::Span(id) => self.recs.get(&id).is_some_and(|r| r.phase == Phase::Reply),
                _ => false,
            },
            _ => false,
        };
        if replied {
            let s = self.socks.get_mut(&e.sock).unwrap();
            s.shut = Some(e.ts_ns);
            if let Cur::Span(id) = s.cur {
                let r = self.recs.get_mut(&id).unwrap();
                // The thread that replied and shut down keeps the request.
                if r.rec.tid == e.tid && r.replier.is_none_or(|t| t == e.tid) {
                    r.phase = Phase::Tail;
                    r.last_ns = e.ts_ns;
                }
            }
            self.shut_socks.push_back((e.ts_ns, e.sock));
        } else {
            self.close(e.sock, out);
        }
    }

    /// Forgets sockets shut down more than [`SHUT_TTL_NS`] ago.
    fn forget_shut_sockets(&mut self, out: &mut Vec<HostOutput>) {
        let limit = self.now.saturating_sub(SHUT_TTL_NS);
        while let Some(&(ts, sock)) = self.shut_socks.front() {
            if ts > limit {
                break;
            }
            self.shut_socks.pop_front();
            if self.socks.get(&sock).is_some_and(|s| s.shut == Some(ts)) {
                self.close(sock, out);
            }
        }
    }

    fn close(&mut self, sock: u64, out: &mut Vec<HostOutput>) {
        let Some(s) = self.socks.remove(&sock) else {
            return;
        };
        match s.cur {
            Cur::Span(id) => {
                if let Some(r) = self.recs.get_mut(&id) {
                    r.closed = true;
                }
                self.finalize(id, out)
            }
            Cur::Call(id, idx) => {
                if let Some(r) = self.recs.get_mut(&id) {
                    if let Some(c) = r.rec.calls.get_mut(idx as usize) {
                        c.closed = true;
                    }
                    if r.rec.kind == RecKind::Origin && !r.floating {
                        self.finalize(id, out);
                    }
                }
            }
            Cur::None => {}
        }
    }

    fn forget_idle_threads(&mut self) {
        let limit = self.now.saturating_sub(THREAD_TTL_NS);
        let comms = &mut self.comms;
        self.threads.retain(|tid, th| {
            let keep = th.last_ns >= limit
                || !th.spans.is_empty()
                || !th.origins.is_empty()
                || !th.floating.is_empty();
            if !keep {
                comms.remove(tid);
            }
            keep
        });
        // A process is known to serve while any of its threads is known.
        let live: FxHashSet<u32> = self.threads.values().map(|t| t.pid).collect();
        self.serving.retain(|pid| live.contains(pid));
    }

    /// Flushes records whose reply has been idle for `idle_flush_ns`.
    fn idle_flush(&mut self, out: &mut Vec<HostOutput>) {
        let limit = self.now.saturating_sub(self.config.idle_flush_ns);
        // A worker's floating calls wait longer: its reply may be slow.
        let give_up_limit = self.now.saturating_sub(self.config.horizon_ns);
        let mut idle: Vec<(RecId, bool)> = self
            .recs
            .iter()
            .filter(|(_, r)| {
                let limit = if r.floating { give_up_limit } else { limit };
                r.last_ns < limit
                    && (matches!(r.phase, Phase::Reply | Phase::Tail)
                        || (r.rec.kind == RecKind::Origin && r.rec.calls[0].replied))
            })
            .map(|(id, r)| (*id, r.floating))
            .collect();
        idle.sort_unstable();
        for (id, floating) in idle {
            if floating {
                self.give_up(id, out);
            } else {
                self.finalize(id, out);
            }
        }
    }

    /// Removes an open record and hands it on (or holds it for a checkpoint).
    fn finalize(&mut self, id: RecId, out: &mut Vec<HostOutput>) {
        let Some(r) = self.recs.remove(&id) else {
            return;
        };
        if let Some(th) = self.threads.get_mut(&r.rec.tid) {
            th.spans.retain(|s| *s != id);
            th.origins.retain(|o| *o != id);
            th.floating.retain(|o| *o != id);
        }
        if let Some(s) = self.socks.get_mut(&r.sock) {
            if s.cur == Cur::Span(id) || matches!(s.cur, Cur::Call(x, _) if x == id) {
                s.cur = Cur::None;
            }
        }
        let mut rec = r.rec;
        // Its process may have been seen serving since the call began.
        if rec.kind == RecKind::Origin
            && self.serving.contains(&rec.pid)
            && !rec.issues.contains(&Issue::AmbiguousThread)
        {
            add_issue(&mut rec.issues, Issue::Unattributed);
        }
        if rec.kind == RecKind::Origin {
            let c = &rec.calls[0];
            rec.start_ns = c.start_ns;
            rec.end_ns = c.end_ns;
            rec.bytes_out = c.bytes_out;
            rec.bytes_in = c.bytes_in;
        }
        rec.replied = matches!(r.phase, Phase::Reply | Phase::Tail);
        rec.last = r.closed || r.phase == Phase::Tail;
        if rec.kind == RecKind::Server && !r.closed && !rec.replied {
            add_issue(&mut rec.issues, Issue::NoReply);
        }
        for c in rec.calls.iter_mut() {
            if !c.replied && !c.closed {
                add_issue(&mut c.issues, Issue::NoReply);
            }
            if let Some(content) = c.content.as_deref_mut() {
                content.settle();
            }
        }
        if let Some(content) = rec.content.as_deref_mut() {
            content.settle();
        }
        let win_end = self.now;
        if self.checkpointed {
            let verified = self.last_ck.map(|c| c.0).unwrap_or(0);
            if win_end <= verified {
                let cut = self.loss_cut(r.win_start, win_end);
                self.release(rec, cut, out);
            } else {
                self.held.push_back(Held {
                    rec,
                    win_start: r.win_start,
                    win_end,
                });
            }
        } else {
            self.release(rec, None, out);
        }
    }

    /// Hands a finished record to the stitch, marked if events of its window
    /// may have been lost after `cut`.
    fn release(&mut self, mut rec: Box<SpanRecord>, cut: Option<u64>, out: &mut Vec<HostOutput>) {
        match cut {
            Some(cut) => mark_lost(&mut rec, cut),
            None if rec.kind == RecKind::Origin && rec.issues.is_empty() => {
                if let Some(th) = self.threads.get_mut(&rec.tid).filter(|t| t.pid == rec.pid) {
                    th.established = true;
                }
            }
            None => {}
        }
        out.push(HostOutput::Record(rec));
    }

    /// Where events of a record's window `[from, to]` may have been lost:
    /// the start of the earliest loss interval that overlaps it.
    fn loss_cut(&self, from: u64, to: u64) -> Option<u64> {
        self.lossy.first_overlap(from, to)
    }

    fn checkpoint(
        &mut self,
        ts: u64,
        lost_total: u64,
        stats: &mut Stats,
        out: &mut Vec<HostOutput>,
    ) {
        let (prev_ts, prev_lost) = self.last_ck.unwrap_or((0, 0));
        let ts = ts.max(prev_ts);
        if lost_total > prev_lost {
            stats.lost_events += lost_total - prev_lost;
            self.counts_poisoned = true;
            self.lossy.insert(prev_ts, ts);
            out.push(HostOutput::Loss {
                from: prev_ts,
                to: ts,
            });
        }
        self.last_ck = Some((ts, lost_total.max(prev_lost)));
        if ts > self.now {
            self.now = ts;
        }
        // Release held records that this checkpoint covers. Windows end in
        // stream order, so the queue is ordered by `win_end`.
        while self.held.front().is_some_and(|h| h.win_end <= ts) {
            let h = self.held.pop_front().unwrap();
            let cut = self.loss_cut(h.win_start, h.win_end);
            self.release(h.rec, cut, out);
        }
        out.push(HostOutput::Watermark(self.watermark()));
    }

    /// How far the stitch may consider this host's stream time done: not
    /// past the start of any record still held for a checkpoint, since
    /// something may be waiting for it.
    fn watermark(&self) -> u64 {
        self.held
            .iter()
            .map(|h| h.rec.start_ns)
            .min()
            .map_or(self.now, |s| s.min(self.now))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A record whose thread may have lost events after `cut`. It is still
/// reported, but never joined by a key that might be wrong:
/// - a call that began after `cut` may belong to another request (the lost
///   event may have been that request's arrival, or this one's reply), so its
///   key is withdrawn;
/// - a server span whose reply was not seen keeps none of its calls (see
///   below);
/// - a call adopted from a worker is this request's only if the worker
///   replied to nothing else between the call and this reply, which a loss
///   may hide, so its key is withdrawn too;
/// - keys counted in user space (offsets, ordinals) may be shifted by the
///   loss, so they are withdrawn too.
fn mark_lost(rec: &mut SpanRecord, cut: u64) {
    add_issue(&mut rec.issues, Issue::EventsLost);
    // Without its reply we cannot tell whether the thread kept the request
    // (its calls are the request's) or handed it off and worked on another
    // (the lost reply was the evidence): none of its calls can be proven.
    let no_reply = rec.kind == RecKind::Server && !rec.replied;
    let counted = |k: &Option<LinkKey>| {
        matches!(
            k,
            Some(LinkKey {
                pos: Pos::Offset { .. } | Pos::Ordinal { .. },
                ..
            })
        )
    };
    if counted(&rec.uplink) {
        rec.uplink = None;
    }
    for c in rec.calls.iter_mut() {
        if c.key.is_some() && (counted(&c.key) || c.start_ns > cut || c.adopted || no_reply) {
            rec.withdrawn.push(c.key.take().unwrap());
            add_issue(&mut c.issues, Issue::EventsLost);
        }
    }
}

/// Time intervals `(from, to]` in which events were lost, in bounded memory.
///
/// No interval can be forgotten: a thread's next record covers the time back
/// to its previous operation, however long ago. So past the cap the two
/// closest intervals are merged into one that covers both: an
/// over-approximation, which can only mark more records lost, never fewer.
#[derive(Clone, Debug, Default)]
pub(crate) struct LossSet {
    spans: Vec<(u64, u64)>,
}

impl LossSet {
    const CAP: usize = 64;

    pub(crate) fn insert(&mut self, from: u64, to: u64) {
        let at = self.spans.partition_point(|&(a, _)| a < from);
        self.spans.insert(at, (from, to.max(from)));
        // Coalesce overlapping neighbours.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.spans.len());
        for &(a, b) in &self.spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.spans = merged;
        while self.spans.len() > Self::CAP {
            let i = (0..self.spans.len() - 1)
                .min_by_key(|&i| self.spans[i + 1].0 - self.spans[i].1)
                .expect("at least two spans");
            let next = self.spans.remove(i + 1);
            self.spans[i].1 = self.spans[i].1.max(next.1);
        }
    }

    /// Whether any lost event may lie in `[from, to]`.
    pub(crate) fn overlaps(&self, from: u64, to: u64) -> bool {
        self.first_overlap(from, to).is_some()
    }

    /// The start of the earliest interval that overlaps `(from, to]`: a
    /// window opens just after an operation the thread was seen doing (or
    /// after the checkpoint its announcement followed), so a loss ending
    /// exactly there is not its own.
    pub(crate) fn first_overlap(&self, from: u64, to: u64) -> Option<u64> {
        self.spans
            .iter()
            .find(|&&(a, b)| a < to && b > from)
            .map(|&(a, _)| a)
    }
}

pub(crate) fn add_issue(v: &mut Vec<Issue>, i: Issue) {
    if !v.contains(&i) {
        v.push(i);
    }
}
