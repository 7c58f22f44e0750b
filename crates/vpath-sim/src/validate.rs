//! Self-checks of the simulator: the streams obey the recorder's contract,
//! both ends of every connection agree on bytes and stream positions, and
//! the expected paths are what the events say (an independent replay).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use vpath_core::event::canonical;
use vpath_core::{flags, Event, Op, Record, Span, SpanKind, Syscall};

use crate::scenario::{HostStream, Scenario};

/// A violated invariant of a generated scenario; `host` and `index` locate
/// the record in `Scenario::hosts` (or `unobserved`) by host name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("host {host} record {index}: timestamp {ts} is not after {prev}")]
    NotIncreasing {
        host: Arc<str>,
        index: usize,
        prev: u64,
        ts: u64,
    },
    #[error("host {host} record {index}: event of pid {pid} tid {tid} before its thread record")]
    NoThreadRecord {
        host: Arc<str>,
        index: usize,
        pid: u32,
        tid: u32,
    },
    #[error("host {host} record {index}: {what}")]
    BadEvent {
        host: Arc<str>,
        index: usize,
        what: String,
    },
    #[error("host {host} record {index}: checkpoint lost_total {lost} (previous {prev}, lossless: {lossless})")]
    BadCheckpoint {
        host: Arc<str>,
        index: usize,
        lost: u64,
        prev: u64,
        lossless: bool,
    },
    #[error("host {host} record {index}: socket {sock:#x} does not start with connect or accept")]
    NoLifecycle {
        host: Arc<str>,
        index: usize,
        sock: u64,
    },
    #[error("host {host} record {index}: no other end for connection {local} -> {remote}")]
    Unpaired {
        host: Arc<str>,
        index: usize,
        local: SocketAddr,
        remote: SocketAddr,
    },
    #[error("connection {client} -> {server}: {what}")]
    Connection {
        client: SocketAddr,
        server: SocketAddr,
        what: String,
    },
    #[error("expected path {path}, span {span}: {what}")]
    Truth {
        path: usize,
        span: String,
        what: String,
    },
    #[error("host {host} record {index}: data event of tid {tid} at {ts} is in no expected span")]
    Uncovered {
        host: Arc<str>,
        index: usize,
        tid: u32,
        ts: u64,
    },
}

/// Counts of what was validated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    pub data_events: usize,
    pub noise_events: usize,
    pub connections: usize,
    pub spans: usize,
    pub lost: u64,
}

type R<T> = Result<T, ValidationError>;

const SENDS: [Syscall; 5] = [
    Syscall::Write,
    Syscall::Writev,
    Syscall::Sendto,
    Syscall::Sendmsg,
    Syscall::Sendfile,
];
const RECVS: [Syscall; 4] = [
    Syscall::Read,
    Syscall::Readv,
    Syscall::Recvfrom,
    Syscall::Recvmsg,
];

/// Validates a scenario. Connection and truth checks need a lossless one.
pub fn validate(s: &Scenario) -> R<Summary> {
    let mut sum = Summary::default();
    let lossless = s.config.loss.is_none();
    let all: Vec<&HostStream> = s.hosts.iter().chain(s.unobserved.iter()).collect();
    for h in &all {
        check_stream(s, h, lossless, &mut sum)?;
    }
    if lossless {
        sum.connections = check_connections(s, &all)?;
        check_truth(s, &mut sum)?;
    }
    Ok(sum)
}

fn check_stream(s: &Scenario, h: &HostStream, lossless: bool, sum: &mut Summary) -> R<()> {
    let host = &h.name;
    let mut threads: Vec<(u32, u32)> = Vec::new();
    let mut last_ts = 0u64;
    let mut last_lost = 0u64;
    let bad = |index: usize, what: String| ValidationError::BadEvent {
        host: host.clone(),
        index,
        what,
    };
    for (index, rec) in h.records.iter().enumerate() {
        match rec {
            Record::Thread(t) => threads.push((t.pid, t.tid)),
            Record::Checkpoint(c) => {
                if !h.checkpointed {
                    return Err(bad(
                        index,
                        "checkpoint in a stream not marked checkpointed".into(),
                    ));
                }
                if c.ts_ns < last_ts {
                    return Err(ValidationError::NotIncreasing {
                        host: host.clone(),
                        index,
                        prev: last_ts,
                        ts: c.ts_ns,
                    });
                }
                if c.lost_total < last_lost || (lossless && c.lost_total != 0) {
                    return Err(ValidationError::BadCheckpoint {
                        host: host.clone(),
                        index,
                        lost: c.lost_total,
                        prev: last_lost,
                        lossless,
                    });
                }
                last_lost = c.lost_total;
                last_ts = c.ts_ns;
            }
            Record::Event(e) => {
                sum.events += 1;
                if e.ts_ns <= last_ts && index > 0 && last_ts != 0 {
                    return Err(ValidationError::NotIncreasing {
                        host: host.clone(),
                        index,
                        prev: last_ts,
                        ts: e.ts_ns,
                    });
                }
                last_ts = e.ts_ns;
                if !threads.contains(&(e.pid, e.tid)) {
                    return Err(ValidationError::NoThreadRecord {
                        host: host.clone(),
                        index,
                        pid: e.pid,
                        tid: e.tid,
                    });
                }
                let ok_call = match e.op {
                    Op::Send => SENDS.contains(&e.syscall),
                    Op::Recv => RECVS.contains(&e.syscall),
                    Op::Connect => e.syscall == Syscall::Connect && e.ret == 0,
                    Op::Accept => e.syscall == Syscall::Accept4 && e.ret == 0,
                    Op::Close => e.syscall == Syscall::Close && e.ret == 0,
                };
                if !ok_call {
                    return Err(bad(
                        index,
                        format!("op {} with syscall {} ret {}", e.op, e.syscall, e.ret),
                    ));
                }
                if matches!(e.op, Op::Send | Op::Recv) {
                    if e.has_seq() != s.config.seq_mode || (!s.config.seq_mode && e.seq != 0) {
                        return Err(bad(
                            index,
                            format!(
                                "flags {} seq {} in seq_mode={}",
                                e.flags, e.seq, s.config.seq_mode
                            ),
                        ));
                    }
                    if e.is_data() {
                        sum.data_events += 1;
                    } else {
                        sum.noise_events += 1;
                    }
                    if e.op == Op::Send && e.ret <= 0 {
                        return Err(bad(index, format!("send of {} bytes", e.ret)));
                    }
                }
                if e.cgroup != 0 || e.flags & !flags::ALL != 0 {
                    return Err(bad(index, format!("cgroup {} flags {}", e.cgroup, e.flags)));
                }
            }
        }
    }
    sum.lost += last_lost;
    Ok(())
}

/// One end of a connection: (stream, first record index, events in order).
struct End<'a> {
    host: Arc<str>,
    index: usize,
    netns: u32,
    local: SocketAddr,
    remote: SocketAddr,
    events: Vec<&'a Event>,
}

fn check_connections(s: &Scenario, all: &[&HostStream]) -> R<usize> {
    // Per stream, per socket, the events in order.
    let mut clients: Vec<End> = Vec::new();
    let mut servers: BTreeMap<(SocketAddr, SocketAddr, u32), VecDeque<End>> = BTreeMap::new();
    for h in all {
        let mut socks: BTreeMap<u64, usize> = BTreeMap::new();
        let mut ends: Vec<(bool, End)> = Vec::new();
        for (index, rec) in h.records.iter().enumerate() {
            let Record::Event(e) = rec else { continue };
            let k = match socks.get(&e.sock) {
                Some(&k) => k,
                None => {
                    let client = match e.op {
                        Op::Connect => true,
                        Op::Accept => false,
                        _ => {
                            return Err(ValidationError::NoLifecycle {
                                host: h.name.clone(),
                                index,
                                sock: e.sock,
                            })
                        }
                    };
                    ends.push((
                        client,
                        End {
                            host: h.name.clone(),
                            index,
                            netns: e.netns,
                            local: e.local,
                            remote: e.remote,
                            events: Vec::new(),
                        },
                    ));
                    socks.insert(e.sock, ends.len() - 1);
                    ends.len() - 1
                }
            };
            let end = &mut ends[k].1;
            if e.local != end.local || e.remote != end.remote || e.netns != end.netns {
                return Err(ValidationError::BadEvent {
                    host: h.name.clone(),
                    index,
                    what: format!("socket {:#x} changed its tuple or netns", e.sock),
                });
            }
            end.events.push(e);
        }
        for (client, end) in ends {
            if client {
                clients.push(end);
            } else {
                let ns = if end.local.ip().is_loopback() {
                    end.netns
                } else {
                    0
                };
                servers
                    .entry((canonical(&end.remote), canonical(&end.local), ns))
                    .or_default()
                    .push_back(end);
            }
        }
    }
    let n = clients.len();
    for c in clients {
        let ns = if c.local.ip().is_loopback() {
            c.netns
        } else {
            0
        };
        let Some(sv) = servers
            .get_mut(&(canonical(&c.local), canonical(&c.remote), ns))
            .and_then(|q| q.pop_front())
        else {
            return Err(ValidationError::Unpaired {
                host: c.host,
                index: c.index,
                local: c.local,
                remote: c.remote,
            });
        };
        if c.local.ip().is_loopback() && c.host != sv.host {
            return Err(ValidationError::Unpaired {
                host: c.host,
                index: c.index,
                local: c.local,
                remote: c.remote,
            });
        }
        check_pair(s, &c, &sv)?;
    }
    if let Some(end) = servers.into_values().flatten().next() {
        return Err(ValidationError::Unpaired {
            host: end.host,
            index: end.index,
            local: end.local,
            remote: end.remote,
        });
    }
    Ok(n)
}

/// Byte runs of one direction as seen by one end: consecutive data events
/// of one op, summed.
fn runs(events: &[&Event]) -> Vec<(Op, u64)> {
    let mut v: Vec<(Op, u64)> = Vec::new();
    for e in events.iter().filter(|e| e.is_data()) {
        match v.last_mut() {
            Some((op, n)) if *op == e.op => *n += e.moved(),
            _ => v.push((e.op, e.moved())),
        }
    }
    v
}

fn check_pair(s: &Scenario, c: &End, sv: &End) -> R<()> {
    let err = |what: String| ValidationError::Connection {
        client: c.local,
        server: c.remote,
        what,
    };
    // Message runs: what one end sends in a run, the other receives in one.
    let cr = runs(&c.events);
    let sr = runs(&sv.events);
    let flipped: Vec<(Op, u64)> = sr
        .iter()
        .map(|&(op, n)| (if op == Op::Send { Op::Recv } else { Op::Send }, n))
        .collect();
    if cr != flipped {
        return Err(err(format!("client runs {cr:?} but server runs {sr:?}")));
    }
    if cr.first().is_some_and(|r| r.0 != Op::Send) {
        return Err(err("the client does not speak first".into()));
    }
    if !s.config.seq_mode {
        return Ok(());
    }
    // Stream positions: each direction starts at one ISN on both ends and
    // advances by the bytes moved; noise sits at the current position.
    for (dir, (tx, rx)) in [(&c.events, &sv.events), (&sv.events, &c.events)]
        .into_iter()
        .enumerate()
    {
        let first = tx
            .iter()
            .find(|e| e.op == Op::Send && e.is_data())
            .map(|e| e.seq);
        let Some(isn) = first else { continue };
        let mut pos = isn;
        for e in tx.iter().filter(|e| e.op == Op::Send) {
            if e.seq != pos {
                return Err(err(format!(
                    "direction {dir}: send at {} with seq {} expected {pos}",
                    e.ts_ns, e.seq
                )));
            }
            pos = pos.wrapping_add(e.moved() as u32);
        }
        let end = pos;
        let mut rpos = isn;
        for e in rx.iter().filter(|e| e.op == Op::Recv) {
            if e.seq != rpos {
                return Err(err(format!(
                    "direction {dir}: recv at {} (ret {}) with seq {} expected {rpos}",
                    e.ts_ns, e.ret, e.seq
                )));
            }
            rpos = rpos.wrapping_add(e.moved() as u32);
        }
        if rpos != end {
            return Err(err(format!(
                "direction {dir}: sent up to {end}, received up to {rpos}"
            )));
        }
    }
    Ok(())
}

/// Per (observed host, tid): data events with their record index.
type ThreadEvents<'a> = BTreeMap<(Arc<str>, u32), Vec<(usize, &'a Event)>>;
/// Per (observed host, tid): the intervals of its spans.
type Intervals = BTreeMap<(Arc<str>, u32), Vec<(u64, u64)>>;

fn check_truth(s: &Scenario, sum: &mut Summary) -> R<()> {
    let mut by_thread: ThreadEvents = BTreeMap::new();
    let mut comms: BTreeMap<(Arc<str>, u32), String> = BTreeMap::new();
    for h in &s.hosts {
        for (i, rec) in h.records.iter().enumerate() {
            match rec {
                Record::Event(e) if e.is_data() => by_thread
                    .entry((h.name.clone(), e.tid))
                    .or_default()
                    .push((i, e)),
                Record::Thread(t) => {
                    comms.insert((h.name.clone(), t.tid), t.comm.clone());
                }
                _ => {}
            }
        }
    }
    let mut intervals: Intervals = BTreeMap::new();
    for (pi, p) in s.expected.iter().enumerate() {
        if !p.complete || !p.spans_clean() {
            return Err(ValidationError::Truth {
                path: pi,
                span: "root".into(),
                what: "not complete and clean".into(),
            });
        }
        let mut res = Ok(());
        p.root.walk(&mut |span, depth| {
            sum.spans += 1;
            if res.is_ok() {
                res = check_span(pi, span, depth, &by_thread, &comms, &mut intervals);
            }
        });
        res?;
    }
    // Thread-per-request: one thread's spans never overlap (except a
    // hand-off reader's, which reads requests while workers finish earlier
    // ones), and every data event of an observed thread lies in one of its
    // spans.
    let handoff = s.config.handoff != crate::config::Handoff::None;
    for (k, v) in intervals.iter_mut() {
        v.sort_unstable();
        for w in v.windows(2) {
            if !handoff && w[1].0 <= w[0].1 {
                return Err(ValidationError::Truth {
                    path: 0,
                    span: format!("{} tid {}", k.0, k.1),
                    what: format!("overlapping spans {:?} and {:?}", w[0], w[1]),
                });
            }
        }
    }
    for ((host, tid), evs) in &by_thread {
        let iv = intervals
            .get(&(host.clone(), *tid))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Intervals may overlap (hand-off readers): compare with the
        // furthest end among those starting before the event.
        let mut reach = Vec::with_capacity(iv.len());
        let mut far = 0;
        for &(_, end) in iv {
            far = far.max(end);
            reach.push(far);
        }
        for &(index, e) in evs {
            let k = iv.partition_point(|&(start, _)| start <= e.ts_ns);
            if k == 0 || reach[k - 1] < e.ts_ns {
                return Err(ValidationError::Uncovered {
                    host: host.clone(),
                    index,
                    tid: *tid,
                    ts: e.ts_ns,
                });
            }
        }
    }
    Ok(())
}

fn check_span(
    pi: usize,
    span: &Span,
    depth: usize,
    by_thread: &ThreadEvents,
    comms: &BTreeMap<(Arc<str>, u32), String>,
    intervals: &mut Intervals,
) -> R<()> {
    let err = |what: String| ValidationError::Truth {
        path: pi,
        span: format!(
            "{:?} {:?} tid {:?} at {}",
            span.kind, span.host, span.tid, span.start_ns
        ),
        what,
    };
    if span.kind == SpanKind::Remote {
        if !span.children.is_empty() || span.host.is_some() || span.tid.is_some() {
            return Err(err("a remote span with children or thread".into()));
        }
        return Ok(());
    }
    if span.kind == SpanKind::Origin && (depth != 0 || span.children.len() != 1) {
        return Err(err("an origin span must be a root with one child".into()));
    }
    let (Some(host), Some(tid)) = (span.host.clone(), span.tid) else {
        return Err(err("no host or tid".into()));
    };
    if comms.get(&(host.clone(), tid)).map(String::as_str) != span.comm.as_deref() {
        return Err(err(format!(
            "comm {:?} but thread record says {:?}",
            span.comm,
            comms.get(&(host, tid))
        )));
    }
    intervals
        .entry((host.clone(), tid))
        .or_default()
        .push((span.start_ns, span.end_ns));
    let in_window = |t: u32| -> Vec<&Event> {
        by_thread
            .get(&(host.clone(), t))
            .map(|v| {
                v.iter()
                    .map(|x| x.1)
                    .filter(|e| (span.start_ns..=span.end_ns).contains(&e.ts_ns))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut evs: Vec<&Event> = in_window(tid);
    // A thread-pool hand-off: the thread that read the request (the span's)
    // is not the one that sends the reply and makes the calls. Then the
    // span's events are the reader's on its connection, up to the end of
    // the request, and the replying thread's after that.
    if span.kind == SpanKind::Server {
        if let Some(first) = evs.first().copied() {
            let inbound = first.sock;
            let replier = by_thread
                .iter()
                .filter(|((h, _), _)| *h == host)
                .flat_map(|((_, t), v)| v.iter().map(move |x| (*t, x.1)))
                .filter(|(_, e)| e.sock == inbound && e.op == Op::Send && e.ts_ns == span.end_ns)
                .map(|(t, _)| t)
                .next();
            if let Some(w) = replier.filter(|w| *w != tid) {
                let req: Vec<&Event> = evs.iter().copied().filter(|e| e.sock == inbound).collect();
                let last_req = req
                    .iter()
                    .filter(|e| e.op == Op::Recv)
                    .map(|e| e.ts_ns)
                    .max()
                    .unwrap_or(0);
                evs = req.into_iter().filter(|e| e.op == Op::Recv).collect();
                // The worker's own events after the request was read and
                // after it finished its previous request (whose reply it
                // sent on another connection of this service).
                let worker = in_window(w);
                let prev_done = worker
                    .iter()
                    .filter(|e| {
                        e.op == Op::Send && e.local.port() == span.local.port() && e.sock != inbound
                    })
                    .map(|e| e.ts_ns)
                    .max()
                    .unwrap_or(0);
                let from = last_req.max(prev_done);
                evs.extend(worker.into_iter().filter(|e| e.ts_ns > from));
                // A worker's events are checked span by span above (its
                // exchanges must be the span's children); their coverage is
                // not checked, since when a worker picked a request up is not
                // in the events.
                intervals
                    .entry((host.clone(), w))
                    .or_default()
                    .push((0, u64::MAX));
            }
        }
    }
    let (Some(first), Some(last)) = (evs.first(), evs.last()) else {
        return Err(err("no events in the span".into()));
    };
    let (first_op, last_op) = if span.kind == SpanKind::Server {
        (Op::Recv, Op::Send)
    } else {
        (Op::Send, Op::Recv)
    };
    if first.ts_ns != span.start_ns
        || first.op != first_op
        || last.ts_ns != span.end_ns
        || last.op != last_op
    {
        return Err(err(format!(
            "first event {first:?} / last event {last:?} do not bound the span"
        )));
    }
    if first.local != span.local
        || first.remote != span.remote
        || Some(first.pid) != span.pid
        || Some(first.netns) != span.netns
    {
        return Err(err(format!(
            "endpoints/pid/netns differ from the first event {first:?}"
        )));
    }
    let inbound = first.sock;
    // The span's own connection: the request first, the reply last.
    let own_in: u64 = evs
        .iter()
        .filter(|e| e.sock == inbound && e.op == first_op)
        .map(|e| e.moved())
        .sum();
    let own_out: u64 = evs
        .iter()
        .filter(|e| e.sock == inbound && e.op == last_op)
        .map(|e| e.moved())
        .sum();
    let (want_in, want_out) = if span.kind == SpanKind::Server {
        (span.bytes_in, span.bytes_out)
    } else {
        (span.bytes_out, span.bytes_in)
    };
    if own_in != want_in || own_out != want_out {
        return Err(err(format!(
            "own connection moved {own_in}/{own_out} bytes, span says {want_in}/{want_out}"
        )));
    }
    if span.kind == SpanKind::Origin {
        if evs.iter().any(|e| e.sock != inbound) {
            return Err(err("an origin thread used another connection".into()));
        }
        let c = &span.children[0];
        if c.local != span.remote
            || c.remote != span.local
            || c.bytes_in != span.bytes_out
            || c.bytes_out != span.bytes_in
        {
            return Err(err("the child does not mirror the origin".into()));
        }
        return Ok(());
    }
    let last_req = evs
        .iter()
        .rposition(|e| e.sock == inbound && e.op == Op::Recv)
        .unwrap_or(0);
    let first_rep = evs
        .iter()
        .position(|e| e.sock == inbound && e.op == Op::Send)
        .unwrap_or(evs.len());
    if evs[..last_req].iter().any(|e| e.sock != inbound)
        || evs[first_rep..].iter().any(|e| e.sock != inbound)
    {
        return Err(err("calls overlap the request or the reply".into()));
    }
    // Outbound exchanges, in order: a new one on a socket change or on a
    // send after a receive.
    let mut exch: Vec<(&Event, u64, u64, u64, u64)> = Vec::new(); // first, sent, recvd, first ts, last ts
    let mut prev: Option<&Event> = None;
    for e in evs[last_req + 1..first_rep].iter().copied() {
        let new = match prev {
            None => true,
            Some(p) => p.sock != e.sock || (p.op == Op::Recv && e.op == Op::Send),
        };
        if new {
            if e.op != Op::Send {
                return Err(err(format!("a call starts with a receive: {e:?}")));
            }
            exch.push((e, 0, 0, e.ts_ns, e.ts_ns));
        }
        let x = exch.last_mut().expect("exchange");
        if e.op == Op::Send {
            x.1 += e.moved();
        } else {
            x.2 += e.moved();
        }
        x.4 = e.ts_ns;
        prev = Some(e);
    }
    if exch.len() != span.children.len() {
        return Err(err(format!(
            "{} outbound exchanges but {} children",
            exch.len(),
            span.children.len()
        )));
    }
    for (x, c) in exch.iter().zip(&span.children) {
        if x.0.local != c.remote || x.0.remote != c.local || x.1 != c.bytes_in || x.2 != c.bytes_out
        {
            return Err(err(format!(
                "exchange {}->{} {}/{} bytes vs child {}->{} {}/{}",
                x.0.local, x.0.remote, x.1, x.2, c.remote, c.local, c.bytes_in, c.bytes_out
            )));
        }
        if c.kind == SpanKind::Remote && (c.start_ns != x.3 || c.end_ns != x.4) {
            return Err(err(format!(
                "remote child times {}..{} vs exchange {}..{}",
                c.start_ns, c.end_ns, x.3, x.4
            )));
        }
    }
    Ok(())
}
