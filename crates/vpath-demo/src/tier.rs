//! One vApp tier process, in one of three execution models.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::proto::{
    gettid, mix, mono_ns, pick_size, wait_readable, Header, InMsg, OutMsg, ProtoError, Rng, Step,
    KIND_REPLY, KIND_REQUEST,
};
use crate::topology::{CallSpec, Model};
use crate::truth::{TruthKind, TruthLog, TruthRecord};

/// What a tier process runs with (parsed from its command line).
#[derive(Clone, Debug)]
pub struct TierConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub model: Model,
    pub truth: Option<PathBuf>,
    /// Created once the tier listens.
    pub ready: Option<PathBuf>,
    pub upstreams: Vec<(String, SocketAddr)>,
    pub calls: Vec<CallSpec>,
    /// Worker threads of the thread-pool model.
    pub workers: usize,
    pub large_pct: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("tier {tier}: cannot listen on {addr}")]
    Listen {
        tier: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("tier {tier}: call {call:?} names no --upstream")]
    NoUpstream { tier: String, call: String },
    #[error("tier {tier}: {what}")]
    Setup {
        tier: String,
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Why one exchange failed; the connection is dropped.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("call to {to}: {what}")]
    Call {
        to: SocketAddr,
        what: &'static str,
        #[source]
        source: Option<ProtoError>,
    },
    #[error("reply to {to} carries id {got}, expected {want}")]
    WrongReply { to: SocketAddr, got: u64, want: u64 },
    #[error("request from {from}")]
    Request {
        from: SocketAddr,
        #[source]
        source: ProtoError,
    },
}

/// Unique request ids: the process id in the high half, a counter below.
#[derive(Debug)]
pub struct IdGen {
    pid: u64,
    next: AtomicU32,
}

impl IdGen {
    pub fn new() -> IdGen {
        IdGen {
            pid: std::process::id() as u64,
            next: AtomicU32::new(1),
        }
    }
    pub fn next(&self) -> u64 {
        (self.pid << 32) | self.next.fetch_add(1, Ordering::Relaxed) as u64
    }
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen::new()
    }
}

/// One planned downstream call of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedCall {
    /// Index into the tier's upstreams.
    pub up: usize,
    pub req_len: u64,
    pub reply_len: u64,
}

/// The calls a request makes: a pure function of its id, so the same request
/// takes the same path whatever the model.
pub fn plan(calls: &[(usize, CallSpec)], id: u64, large_pct: u8) -> Vec<PlannedCall> {
    let mut rng = Rng::new(mix(id));
    let mut out = Vec::new();
    for (up, c) in calls {
        if !rng.chance(c.pct) {
            continue;
        }
        for _ in 0..rng.range(1, c.max_times as u64) {
            out.push(PlannedCall {
                up: *up,
                req_len: pick_size(&mut rng, large_pct),
                reply_len: pick_size(&mut rng, large_pct),
            });
        }
    }
    out
}

/// Keep-alive connections to the upstreams, shared by all threads of the
/// process: a connection goes back to the pool after each call and the next
/// call (from any thread) takes the most recently returned one.
#[derive(Debug, Default)]
pub struct Pool {
    conns: Mutex<HashMap<usize, Vec<TcpStream>>>,
}

impl Pool {
    pub fn take(&self, up: usize, addr: SocketAddr) -> io::Result<TcpStream> {
        let reuse = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&up)
            .and_then(|v| v.pop());
        match reuse {
            Some(s) => Ok(s),
            None => {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                s.set_nodelay(true)?;
                Ok(s)
            }
        }
    }
    pub fn put(&self, up: usize, s: TcpStream) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(up)
            .or_default()
            .push(s);
    }
}

/// State shared by a tier's threads.
struct Tier {
    cfg: TierConfig,
    /// The call specs with their upstream index resolved.
    calls: Vec<(usize, CallSpec)>,
    truth: Arc<TruthLog>,
    ids: IdGen,
    pool: Pool,
    pid: u32,
}

/// A request being served, as the truth log will record it.
#[derive(Clone, Copy, Debug)]
struct Inbound {
    hdr: Header,
    tid: u32,
    local: SocketAddr,
    remote: SocketAddr,
    start_ns: u64,
}

impl Tier {
    fn seed(&self) -> u64 {
        mix(mono_ns() ^ ((gettid() as u64) << 40))
    }

    /// A blocking call on a pooled connection.
    fn call(&self, parent: u64, c: PlannedCall) -> Result<(), ExchangeError> {
        let addr = self.cfg.upstreams[c.up].1;
        let err = |what, source| ExchangeError::Call {
            to: addr,
            what,
            source,
        };
        let s = self
            .pool
            .take(c.up, addr)
            .map_err(|e| err("connect failed", Some(e.into())))?;
        let id = self.ids.next();
        let h = Header {
            kind: KIND_REQUEST,
            len: c.req_len,
            reply_len: c.reply_len,
            id,
            parent,
        };
        OutMsg::new(&h, self.seed())
            .write_all(s.as_raw_fd())
            .map_err(|e| err("sending the request failed", Some(e.into())))?;
        let reply = InMsg::new(self.seed(), 0)
            .read_all(s.as_raw_fd())
            .map_err(|e| err("reading the reply failed", Some(e)))?
            .ok_or_else(|| err("connection closed before the reply", None))?;
        if reply.id != id || reply.kind != KIND_REPLY {
            return Err(ExchangeError::WrongReply {
                to: addr,
                got: reply.id,
                want: id,
            });
        }
        self.pool.put(c.up, s);
        Ok(())
    }

    /// Makes the request's calls and sends the reply (blocking), then logs.
    fn serve(&self, fd: RawFd, r: &Inbound) -> Result<(), ExchangeError> {
        for c in plan(&self.calls, r.hdr.id, self.cfg.large_pct) {
            self.call(r.hdr.id, c)?;
        }
        let reply = Header {
            kind: KIND_REPLY,
            len: r.hdr.reply_len,
            reply_len: 0,
            id: r.hdr.id,
            parent: 0,
        };
        let mut out = OutMsg::new(&reply, self.seed());
        out.write_all(fd).map_err(|e| ExchangeError::Call {
            to: r.remote,
            what: "sending the reply failed",
            source: Some(e.into()),
        })?;
        let end_ns = mono_ns();
        self.log(r, gettid(), end_ns, out.total());
        Ok(())
    }

    fn log(&self, r: &Inbound, reply_tid: u32, end_ns: u64, bytes_out: u64) {
        self.truth.log(&TruthRecord {
            kind: TruthKind::Server,
            tier: self.cfg.name.clone(),
            model: self.cfg.model.name().into(),
            id: r.hdr.id,
            parent: r.hdr.parent,
            pid: self.pid,
            tid: r.tid,
            reply_tid,
            local: r.local,
            remote: r.remote,
            start_ns: r.start_ns,
            end_ns,
            bytes_in: r.hdr.wire_len(),
            bytes_out,
        });
    }

    /// Waits for and reads one request on a blocking connection.
    /// `Ok(None)`: the peer closed the connection.
    fn read_request(&self, s: &TcpStream) -> Result<Option<Inbound>, ExchangeError> {
        let fd = s.as_raw_fd();
        let remote = s.peer_addr().unwrap_or(self.cfg.listen);
        let req_err = |source| ExchangeError::Request {
            from: remote,
            source,
        };
        wait_readable(fd, -1).map_err(|e| req_err(e.into()))?;
        let start_ns = mono_ns();
        let tid = gettid();
        let Some(hdr) = InMsg::new(self.seed(), 0).read_all(fd).map_err(req_err)? else {
            return Ok(None);
        };
        Ok(Some(Inbound {
            hdr,
            tid,
            local: s.local_addr().unwrap_or(self.cfg.listen),
            remote,
            start_ns,
        }))
    }
}

fn warn(tier: &str, e: &dyn std::error::Error) {
    let mut msg = format!("vapp tier {tier}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}

/// Runs a tier until the process is killed. Returns only on a setup error.
pub fn run_tier(cfg: TierConfig) -> Result<(), TierError> {
    let mut calls = Vec::new();
    for c in &cfg.calls {
        let up = cfg
            .upstreams
            .iter()
            .position(|(n, _)| *n == c.to)
            .ok_or_else(|| TierError::NoUpstream {
                tier: cfg.name.clone(),
                call: c.to.clone(),
            })?;
        calls.push((up, c.clone()));
    }
    let setup = |what: &str, source| TierError::Setup {
        tier: cfg.name.clone(),
        what: what.into(),
        source,
    };
    let truth = Arc::new(
        TruthLog::create(cfg.truth.as_deref()).map_err(|e| setup("creating the truth log", e))?,
    );
    let listener = TcpListener::bind(cfg.listen).map_err(|source| TierError::Listen {
        tier: cfg.name.clone(),
        addr: cfg.listen,
        source,
    })?;
    install_flush(&truth).map_err(|e| setup("installing the SIGTERM handler", e))?;
    if let Some(r) = &cfg.ready {
        std::fs::write(r, b"ready\n").map_err(|e| setup("writing the ready file", e))?;
    }
    let tier = Arc::new(Tier {
        calls,
        truth,
        ids: IdGen::new(),
        pool: Pool::default(),
        pid: std::process::id(),
        cfg,
    });
    match tier.cfg.model {
        Model::ThreadPerRequest => thread_per_request(tier, listener),
        Model::ThreadPool => thread_pool(tier, listener),
        Model::EventLoop => event_loop(tier, listener),
    }
}

/// Flushes the truth log every 100 ms and on SIGTERM/SIGINT/SIGHUP, then exits.
pub fn install_flush(truth: &Arc<TruthLog>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let t = truth.clone();
    std::thread::Builder::new()
        .name("truth-sig".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = t.flush();
                std::process::exit(0);
            }
        })?;
    let t = truth.clone();
    std::thread::Builder::new()
        .name("truth-flush".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let _ = t.flush();
        })?;
    Ok(())
}

fn accept_loop(
    tier: &Arc<Tier>,
    listener: TcpListener,
    mut on_conn: impl FnMut(TcpStream),
) -> Result<(), TierError> {
    for s in listener.incoming() {
        match s {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                on_conn(s)
            }
            Err(e) => {
                warn(&tier.cfg.name, &e);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

fn thread_per_request(tier: Arc<Tier>, listener: TcpListener) -> Result<(), TierError> {
    let t2 = tier.clone();
    accept_loop(&t2, listener, |s| {
        let tier = tier.clone();
        let _ = std::thread::Builder::new()
            .name(format!("{}-conn", tier.cfg.name))
            .spawn(move || loop {
                match tier.read_request(&s) {
                    Ok(Some(r)) => {
                        if let Err(e) = tier.serve(s.as_raw_fd(), &r) {
                            warn(&tier.cfg.name, &e);
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        warn(&tier.cfg.name, &e);
                        return;
                    }
                }
            });
    })
}

struct Job {
    /// The inbound connection; its reader thread keeps it open until `done`.
    fd: RawFd,
    req: Inbound,
    done: mpsc::SyncSender<bool>,
}

fn thread_pool(tier: Arc<Tier>, listener: TcpListener) -> Result<(), TierError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..tier.cfg.workers.max(1) {
        let rx = rx.clone();
        let tier = tier.clone();
        let name = tier.cfg.name.clone();
        std::thread::Builder::new()
            .name(format!("{name}-w{i}"))
            .spawn(move || loop {
                let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let ok = match tier.serve(job.fd, &job.req) {
                    Ok(()) => true,
                    Err(e) => {
                        warn(&tier.cfg.name, &e);
                        false
                    }
                };
                let _ = job.done.send(ok);
            })
            .map_err(|e| TierError::Setup {
                tier: name,
                what: "starting a worker".into(),
                source: e,
            })?;
    }
    let t2 = tier.clone();
    accept_loop(&t2, listener, |s| {
        let tier = tier.clone();
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name(format!("{}-io", tier.cfg.name))
            .spawn(move || {
                let (done_tx, done_rx) = mpsc::sync_channel(1);
                loop {
                    let req = match tier.read_request(&s) {
                        Ok(Some(r)) => r,
                        Ok(None) => return,
                        Err(e) => {
                            warn(&tier.cfg.name, &e);
                            return;
                        }
                    };
                    let job = Job {
                        fd: s.as_raw_fd(),
                        req,
                        done: done_tx.clone(),
                    };
                    if tx.send(job).is_err() || !done_rx.recv().unwrap_or(false) {
                        return;
                    }
                }
            });
    })
}

// ---------------------------------------------------------------------------
// Event loop

enum OutPhase {
    Send(OutMsg),
    Recv(InMsg),
}

struct OutCall {
    c: PlannedCall,
    conn: TcpStream,
    id: u64,
    phase: OutPhase,
}

enum ConnState {
    /// Waiting for / reading a request. `start_ns` is taken before the read
    /// that returns the first byte.
    Reading {
        msg: InMsg,
        start_ns: u64,
    },
    /// Making the request's calls, one after another.
    Calling {
        req: Inbound,
        plan: Vec<PlannedCall>,
        next: usize,
        out: Option<OutCall>,
    },
    Replying {
        req: Inbound,
        msg: OutMsg,
    },
}

struct Conn {
    s: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    state: ConnState,
}

/// Which fd a pollfd entry is for.
#[derive(Clone, Copy)]
enum Tag {
    Listener,
    Inbound(usize),
    Outbound(usize),
}

fn event_loop(tier: Arc<Tier>, listener: TcpListener) -> Result<(), TierError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| TierError::Setup {
            tier: tier.cfg.name.clone(),
            what: "making the listener non-blocking".into(),
            source: e,
        })?;
    let tid = gettid();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut tags: Vec<Tag> = Vec::new();
    loop {
        fds.clear();
        tags.clear();
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        tags.push(Tag::Listener);
        for (i, c) in conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let (fd, events, tag) = match &c.state {
                ConnState::Reading { .. } => (c.s.as_raw_fd(), libc::POLLIN, Tag::Inbound(i)),
                ConnState::Replying { .. } => (c.s.as_raw_fd(), libc::POLLOUT, Tag::Inbound(i)),
                ConnState::Calling { out: Some(o), .. } => (
                    o.conn.as_raw_fd(),
                    match o.phase {
                        OutPhase::Send(_) => libc::POLLOUT,
                        OutPhase::Recv(_) => libc::POLLIN,
                    },
                    Tag::Outbound(i),
                ),
                ConnState::Calling { out: None, .. } => {
                    (c.s.as_raw_fd(), libc::POLLOUT, Tag::Inbound(i))
                }
            };
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tags.push(tag);
        }
        // SAFETY: fds is a valid array of fds.len() pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                warn(&tier.cfg.name, &e);
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        for k in 0..fds.len() {
            if fds[k].revents == 0 {
                continue;
            }
            match tags[k] {
                Tag::Listener => loop {
                    match listener.accept() {
                        Ok((s, remote)) => {
                            if s.set_nonblocking(true).is_err() {
                                continue;
                            }
                            let _ = s.set_nodelay(true);
                            let local = s.local_addr().unwrap_or(tier.cfg.listen);
                            let c = Conn {
                                s,
                                local,
                                remote,
                                state: ConnState::Reading {
                                    msg: InMsg::new(tier.seed(), 0),
                                    start_ns: 0,
                                },
                            };
                            match conns.iter().position(|c| c.is_none()) {
                                Some(i) => conns[i] = Some(c),
                                None => conns.push(Some(c)),
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            warn(&tier.cfg.name, &e);
                            break;
                        }
                    }
                },
                Tag::Inbound(i) | Tag::Outbound(i) => {
                    let Some(c) = conns[i].as_mut() else { continue };
                    match drive(&tier, tid, c) {
                        Ok(true) => {}
                        Ok(false) => conns[i] = None,
                        Err(e) => {
                            warn(&tier.cfg.name, &e);
                            conns[i] = None;
                        }
                    }
                }
            }
        }
    }
}

/// Advances one inbound connection as far as it goes without blocking.
/// `Ok(false)`: the connection closed cleanly.
fn drive(tier: &Tier, tid: u32, c: &mut Conn) -> Result<bool, ExchangeError> {
    loop {
        let state = std::mem::replace(
            &mut c.state,
            ConnState::Reading {
                msg: InMsg::new(0, 0),
                start_ns: 0,
            },
        );
        let (next, blocked) = match state {
            ConnState::Reading { mut msg, start_ns } => {
                let start_ns = if msg.have() == 0 { mono_ns() } else { start_ns };
                match msg
                    .step(c.s.as_raw_fd())
                    .map_err(|source| ExchangeError::Request {
                        from: c.remote,
                        source,
                    })? {
                    Step::Eof => return Ok(false),
                    Step::WouldBlock => (ConnState::Reading { msg, start_ns }, true),
                    Step::Progress => (ConnState::Reading { msg, start_ns }, false),
                    Step::Done => {
                        let hdr = msg.header().expect("a complete message has a header");
                        let req = Inbound {
                            hdr,
                            tid,
                            local: c.local,
                            remote: c.remote,
                            start_ns,
                        };
                        let plan = plan(&tier.calls, hdr.id, tier.cfg.large_pct);
                        (
                            ConnState::Calling {
                                req,
                                plan,
                                next: 0,
                                out: None,
                            },
                            false,
                        )
                    }
                }
            }
            ConnState::Calling {
                req,
                plan,
                next,
                out: None,
            } => {
                if next == plan.len() {
                    let reply = Header {
                        kind: KIND_REPLY,
                        len: req.hdr.reply_len,
                        reply_len: 0,
                        id: req.hdr.id,
                        parent: 0,
                    };
                    (
                        ConnState::Replying {
                            req,
                            msg: OutMsg::new(&reply, tier.seed()),
                        },
                        false,
                    )
                } else {
                    let pc = plan[next];
                    let addr = tier.cfg.upstreams[pc.up].1;
                    // Connecting is blocking (fast on a local bridge); the
                    // exchange itself is not.
                    let conn = tier
                        .pool
                        .take(pc.up, addr)
                        .map_err(|e| ExchangeError::Call {
                            to: addr,
                            what: "connect failed",
                            source: Some(e.into()),
                        })?;
                    conn.set_nonblocking(true)
                        .map_err(|e| ExchangeError::Call {
                            to: addr,
                            what: "making the connection non-blocking failed",
                            source: Some(e.into()),
                        })?;
                    let id = tier.ids.next();
                    let h = Header {
                        kind: KIND_REQUEST,
                        len: pc.req_len,
                        reply_len: pc.reply_len,
                        id,
                        parent: req.hdr.id,
                    };
                    let out = OutCall {
                        c: pc,
                        conn,
                        id,
                        phase: OutPhase::Send(OutMsg::new(&h, tier.seed())),
                    };
                    (
                        ConnState::Calling {
                            req,
                            plan,
                            next,
                            out: Some(out),
                        },
                        false,
                    )
                }
            }
            ConnState::Calling {
                req,
                plan,
                next,
                out: Some(mut o),
            } => {
                let addr = tier.cfg.upstreams[o.c.up].1;
                let fd = o.conn.as_raw_fd();
                let call_err = |what, source| ExchangeError::Call {
                    to: addr,
                    what,
                    source,
                };
                let (step, reply) = match &mut o.phase {
                    OutPhase::Send(m) => (
                        m.step(fd)
                            .map_err(|e| call_err("sending the request failed", Some(e.into())))?,
                        None,
                    ),
                    OutPhase::Recv(m) => (
                        m.step(fd)
                            .map_err(|e| call_err("reading the reply failed", Some(e)))?,
                        m.header(),
                    ),
                };
                match step {
                    Step::WouldBlock => (
                        ConnState::Calling {
                            req,
                            plan,
                            next,
                            out: Some(o),
                        },
                        true,
                    ),
                    Step::Progress => (
                        ConnState::Calling {
                            req,
                            plan,
                            next,
                            out: Some(o),
                        },
                        false,
                    ),
                    Step::Eof => return Err(call_err("connection closed before the reply", None)),
                    Step::Done => match o.phase {
                        OutPhase::Send(_) => {
                            o.phase = OutPhase::Recv(InMsg::new(tier.seed(), 0));
                            (
                                ConnState::Calling {
                                    req,
                                    plan,
                                    next,
                                    out: Some(o),
                                },
                                false,
                            )
                        }
                        OutPhase::Recv(_) => {
                            let h = reply.expect("a complete message has a header");
                            if h.id != o.id || h.kind != KIND_REPLY {
                                return Err(ExchangeError::WrongReply {
                                    to: addr,
                                    got: h.id,
                                    want: o.id,
                                });
                            }
                            tier.pool.put(o.c.up, o.conn);
                            (
                                ConnState::Calling {
                                    req,
                                    plan,
                                    next: next + 1,
                                    out: None,
                                },
                                false,
                            )
                        }
                    },
                }
            }
            ConnState::Replying { req, mut msg } => {
                match msg.step(c.s.as_raw_fd()).map_err(|e| ExchangeError::Call {
                    to: c.remote,
                    what: "sending the reply failed",
                    source: Some(e.into()),
                })? {
                    Step::Done => {
                        tier.log(&req, tid, mono_ns(), msg.total());
                        (
                            ConnState::Reading {
                                msg: InMsg::new(tier.seed(), 0),
                                start_ns: 0,
                            },
                            true,
                        )
                    }
                    Step::WouldBlock => (ConnState::Replying { req, msg }, true),
                    _ => (ConnState::Replying { req, msg }, false),
                }
            }
        };
        c.state = next;
        if blocked {
            return Ok(true);
        }
    }
}
