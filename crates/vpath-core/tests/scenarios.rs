//! Hand-written scenarios, each a small story with its exact expected tree.
//! (The exhaustive checks are the property tests in vpath-sim.)

use std::net::SocketAddr;

use vpath_core::{
    flags, Analyzer, Checkpoint, Config, Event, Issue, Op, Path, Record, SpanKind, Syscall,
    ThreadInfo,
};

/// Writes both ends of TCP connections on one or more hosts.
struct World {
    ts: u64,
    hosts: Vec<Vec<Record>>,
    next_sock: u64,
    seq: bool,
}

#[derive(Clone, Copy)]
struct Proc {
    host: usize,
    pid: u32,
    netns: u32,
}

struct Conn {
    c: Proc,
    s: Proc,
    c_sock: u64,
    s_sock: u64,
    caddr: SocketAddr,
    saddr: SocketAddr,
    up: u32,
    down: u32,
}

impl World {
    fn new(hosts: usize, seq: bool) -> Self {
        World {
            ts: 1_000_000,
            hosts: vec![Vec::new(); hosts],
            next_sock: 100,
            seq,
        }
    }

    fn tick(&mut self) -> u64 {
        self.ts += 1000;
        self.ts
    }

    fn thread(&mut self, p: Proc, tid: u32, comm: &str) {
        self.hosts[p.host].push(Record::Thread(ThreadInfo {
            pid: p.pid,
            tid,
            comm: comm.into(),
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn ev(
        &mut self,
        p: Proc,
        tid: u32,
        sock: u64,
        op: Op,
        sc: Syscall,
        ret: i64,
        seq: u32,
        l: SocketAddr,
        r: SocketAddr,
    ) {
        let ts = self.tick();
        let fl = if self.seq && matches!(op, Op::Send | Op::Recv) {
            flags::SEQ
        } else {
            0
        };
        self.hosts[p.host].push(Record::Event(Event {
            ts_ns: ts,
            netns: p.netns,
            cgroup: 0,
            pid: p.pid,
            tid,
            sock,
            op,
            syscall: sc,
            flags: fl,
            ret,
            seq: if fl != 0 { seq } else { 0 },
            local: l,
            remote: r,
            data: None,
        }));
    }

    fn connect(
        &mut self,
        c: Proc,
        ctid: u32,
        caddr: &str,
        s: Proc,
        stid: u32,
        saddr: &str,
    ) -> Conn {
        let caddr: SocketAddr = caddr.parse().unwrap();
        let saddr: SocketAddr = saddr.parse().unwrap();
        self.next_sock += 2;
        let conn = Conn {
            c,
            s,
            c_sock: self.next_sock,
            s_sock: self.next_sock + 1,
            caddr,
            saddr,
            // Stream positions wrap like TCP's (a debug build checks).
            up: 1_000_000u32.wrapping_mul(self.next_sock as u32),
            down: 7_000_000u32.wrapping_mul(self.next_sock as u32),
        };
        self.ev(
            c,
            ctid,
            conn.c_sock,
            Op::Connect,
            Syscall::Connect,
            0,
            0,
            caddr,
            saddr,
        );
        self.ev(
            s,
            stid,
            conn.s_sock,
            Op::Accept,
            Syscall::Accept4,
            0,
            0,
            saddr,
            caddr,
        );
        conn
    }

    /// Client thread writes `n` bytes in `parts` pieces.
    fn c_send(&mut self, k: &mut Conn, tid: u32, n: u32, parts: u32) {
        for i in 0..parts {
            let b = n / parts + if i == 0 { n % parts } else { 0 };
            let (c, s, l, r, seq) = (k.c, k.c_sock, k.caddr, k.saddr, k.up);
            self.ev(c, tid, s, Op::Send, Syscall::Write, b as i64, seq, l, r);
            k.up = k.up.wrapping_add(b);
        }
    }
    fn s_recv(&mut self, k: &mut Conn, tid: u32, n: u32, parts: u32, start: u32) {
        let mut seq = start;
        for i in 0..parts {
            let b = n / parts + if i == 0 { n % parts } else { 0 };
            let (sp, s, l, r) = (k.s, k.s_sock, k.saddr, k.caddr);
            self.ev(sp, tid, s, Op::Recv, Syscall::Read, b as i64, seq, l, r);
            seq = seq.wrapping_add(b);
        }
    }
    fn s_send(&mut self, k: &mut Conn, tid: u32, n: u32, parts: u32) {
        for i in 0..parts {
            let b = n / parts + if i == 0 { n % parts } else { 0 };
            let (sp, s, l, r, seq) = (k.s, k.s_sock, k.saddr, k.caddr, k.down);
            self.ev(sp, tid, s, Op::Send, Syscall::Writev, b as i64, seq, l, r);
            k.down = k.down.wrapping_add(b);
        }
    }
    fn c_recv(&mut self, k: &mut Conn, tid: u32, n: u32, parts: u32, start: u32) {
        let mut seq = start;
        for i in 0..parts {
            let b = n / parts + if i == 0 { n % parts } else { 0 };
            let (c, s, l, r) = (k.c, k.c_sock, k.caddr, k.saddr);
            self.ev(c, tid, s, Op::Recv, Syscall::Recvfrom, b as i64, seq, l, r);
            seq = seq.wrapping_add(b);
        }
    }

    fn analyze(&self, observed: &[usize], checkpointed: bool) -> Vec<Path> {
        let mut a = Analyzer::new(Config::default());
        let ids: Vec<_> = observed
            .iter()
            .map(|h| (a.add_host(&format!("h{h}"), checkpointed), *h))
            .collect();
        for (id, h) in &ids {
            for r in &self.hosts[*h] {
                a.push(*id, r);
            }
        }
        a.finish();
        let mut v = Vec::new();
        while let Some(p) = a.pop() {
            v.push(p);
        }
        v
    }
}

/// Renders a tree compactly: kind@tid[local<-remote in/out] (children).
fn shape(p: &Path) -> String {
    let mut s = String::new();
    p.root.walk(&mut |sp, d| {
        s.push_str(&"  ".repeat(d));
        let k = match sp.kind {
            SpanKind::Server => "server",
            SpanKind::Origin => "origin",
            SpanKind::Remote => "remote",
        };
        s.push_str(&format!(
            "{k} tid={:?} {} {} in={} out={} issues={:?}\n",
            sp.tid,
            vpath_core::event::fmt_endpoint(&sp.local),
            vpath_core::event::fmt_endpoint(&sp.remote),
            sp.bytes_in,
            sp.bytes_out,
            sp.issues
        ));
    });
    s
}

/// Client -> front (thread per request) -> two calls to db, on keep-alive.
fn three_tier(w: &mut World, requests: u32) -> (Proc, Proc, Proc) {
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let fe = Proc {
        host: 1,
        pid: 20,
        netns: 2,
    };
    let db = Proc {
        host: 2,
        pid: 30,
        netns: 3,
    };
    w.thread(cl, 11, "client");
    w.thread(fe, 21, "front");
    w.thread(db, 31, "db");
    let mut k1 = w.connect(cl, 11, "10.0.0.1:40000", fe, 21, "10.0.0.2:80");
    let mut k2 = w.connect(fe, 21, "10.0.0.2:40001", db, 31, "10.0.0.3:3306");
    for _ in 0..requests {
        let p = k1.up;
        w.c_send(&mut k1, 11, 300, 2);
        w.s_recv(&mut k1, 21, 300, 3, p);
        for _ in 0..2 {
            let p = k2.up;
            w.c_send(&mut k2, 21, 50, 1);
            w.s_recv(&mut k2, 31, 50, 1, p);
            let p = k2.down;
            w.s_send(&mut k2, 31, 5000, 2);
            w.c_recv(&mut k2, 21, 5000, 3, p);
        }
        let p = k1.down;
        w.s_send(&mut k1, 21, 1000, 2);
        w.c_recv(&mut k1, 11, 1000, 1, p);
    }
    (cl, fe, db)
}

#[test]
fn three_tiers_keep_alive_seq_mode() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 3);
    let paths = w.analyze(&[0, 1, 2], false);
    assert_eq!(paths.len(), 3, "{paths:#?}");
    for p in &paths {
        assert!(p.complete, "{}", shape(p));
        assert_eq!(
            shape(p),
            "origin tid=Some(11) 10.0.0.1:40000 10.0.0.2:80 in=1000 out=300 issues=[]\n\
             \x20 server tid=Some(21) 10.0.0.2:80 10.0.0.1:40000 in=300 out=1000 issues=[]\n\
             \x20   server tid=Some(31) 10.0.0.3:3306 10.0.0.2:40001 in=50 out=5000 issues=[]\n\
             \x20   server tid=Some(31) 10.0.0.3:3306 10.0.0.2:40001 in=50 out=5000 issues=[]\n"
        );
    }
}

#[test]
fn three_tiers_offset_mode() {
    let mut w = World::new(3, false);
    three_tier(&mut w, 2);
    let paths = w.analyze(&[0, 1, 2], false);
    assert_eq!(paths.len(), 2);
    assert!(
        paths.iter().all(|p| p.complete && p.root.count() == 4),
        "{paths:#?}"
    );
}

#[test]
fn unobserved_backend_is_a_remote_leaf() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 1);
    let paths = w.analyze(&[0, 1], false);
    assert_eq!(paths.len(), 1);
    let p = &paths[0];
    assert!(p.complete, "{}", shape(p));
    let fe = &p.root.children[0];
    assert_eq!(fe.children.len(), 2);
    assert!(fe
        .children
        .iter()
        .all(|c| c.kind == SpanKind::Remote && c.bytes_in == 50 && c.bytes_out == 5000));
}

#[test]
fn unobserved_client_makes_the_front_span_the_root() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 2);
    let paths = w.analyze(&[1, 2], false);
    assert_eq!(paths.len(), 2);
    for p in &paths {
        assert!(p.complete);
        assert_eq!(p.root.kind, SpanKind::Server);
        assert_eq!(p.root.tid, Some(21));
        assert_eq!(p.root.children.len(), 2);
    }
}

#[test]
fn loss_marks_touched_paths_incomplete_and_others_stay_exact() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 4);
    // Drop one event in the middle of the front tier's second request.
    let host1 = &mut w.hosts[1];
    let data: Vec<usize> = host1
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Record::Event(e) if e.op == Op::Send))
        .map(|(i, _)| i)
        .collect();
    let victim = data[4];
    let Record::Event(ev) = host1.remove(victim) else {
        unreachable!()
    };
    // Checkpoints: one before the loss, one reporting it, one at the end.
    let pos = host1
        .iter()
        .position(|r| matches!(r, Record::Event(e) if e.ts_ns > ev.ts_ns))
        .unwrap();
    host1.insert(
        pos,
        Record::Checkpoint(Checkpoint {
            ts_ns: ev.ts_ns + 1,
            lost_total: 1,
        }),
    );
    host1.push(Record::Checkpoint(Checkpoint {
        ts_ns: u64::MAX / 2,
        lost_total: 1,
    }));
    for h in [0, 2] {
        w.hosts[h].push(Record::Checkpoint(Checkpoint {
            ts_ns: u64::MAX / 2,
            lost_total: 0,
        }));
    }
    let paths = w.analyze(&[0, 1, 2], true);
    let complete = paths.iter().filter(|p| p.complete).count();
    assert!((1..4).contains(&complete), "{paths:#?}");
    for p in paths.iter().filter(|p| p.complete) {
        assert_eq!(p.root.count(), 4, "{}", shape(p));
    }
    assert!(paths.iter().any(|p| !p.complete && {
        let mut lost = false;
        p.root
            .walk(&mut |s, _| lost |= s.issues.contains(&Issue::EventsLost));
        lost
    }));
}

#[test]
fn pooled_connection_moves_between_threads() {
    let mut w = World::new(1, true);
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let fe = Proc {
        host: 0,
        pid: 20,
        netns: 1,
    };
    let db = Proc {
        host: 0,
        pid: 30,
        netns: 1,
    };
    // Two client connections, two front threads, one pooled db connection.
    let mut a = w.connect(cl, 11, "127.0.0.1:40000", fe, 21, "127.0.0.1:80");
    let mut b = w.connect(cl, 12, "127.0.0.1:40002", fe, 22, "127.0.0.1:80");
    let mut pool = w.connect(fe, 21, "127.0.0.1:40001", db, 31, "127.0.0.1:5432");
    for (which, ct, ft) in [(0, 11, 21), (1, 12, 22), (0, 11, 21)] {
        let k = if which == 0 { &mut a } else { &mut b };
        let p = k.up;
        w.c_send(k, ct, 10, 1);
        w.s_recv(k, ft, 10, 1, p);
        let p = pool.up;
        w.c_send(&mut pool, ft, 20, 1);
        w.s_recv(&mut pool, 31, 20, 1, p);
        let p = pool.down;
        w.s_send(&mut pool, 31, 30, 1);
        w.c_recv(&mut pool, ft, 30, 1, p);
        let p = k.down;
        w.s_send(k, ft, 40, 1);
        w.c_recv(k, ct, 40, 1, p);
    }
    let paths = w.analyze(&[0], false);
    assert_eq!(paths.len(), 3);
    let tids: Vec<_> = paths.iter().map(|p| p.root.children[0].tid).collect();
    assert_eq!(tids.iter().filter(|t| **t == Some(22)).count(), 1);
    for p in &paths {
        assert!(p.complete, "{}", shape(p));
        assert_eq!(p.root.count(), 3);
    }
}

#[test]
fn event_loop_calls_are_never_guessed() {
    let mut w = World::new(1, true);
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let px = Proc {
        host: 0,
        pid: 20,
        netns: 1,
    };
    let up = Proc {
        host: 0,
        pid: 30,
        netns: 1,
    };
    let mut a = w.connect(cl, 11, "127.0.0.1:40000", px, 21, "127.0.0.1:80");
    let mut b = w.connect(cl, 12, "127.0.0.1:40002", px, 21, "127.0.0.1:80");
    let mut u = w.connect(px, 21, "127.0.0.1:40001", up, 31, "127.0.0.1:8080");
    // The proxy thread reads both requests, then makes one upstream call.
    let (pa, pb) = (a.up, b.up);
    w.c_send(&mut a, 11, 10, 1);
    w.c_send(&mut b, 12, 10, 1);
    w.s_recv(&mut a, 21, 10, 1, pa);
    w.s_recv(&mut b, 21, 10, 1, pb);
    let p = u.up;
    w.c_send(&mut u, 21, 10, 1);
    w.s_recv(&mut u, 31, 10, 1, p);
    let p = u.down;
    w.s_send(&mut u, 31, 10, 1);
    w.c_recv(&mut u, 21, 10, 1, p);
    for (k, t) in [(&mut a, 11), (&mut b, 12)] {
        let p = k.down;
        w.s_send(k, 21, 10, 1);
        w.c_recv(k, t, 10, 1, p);
    }
    let paths = w.analyze(&[0], false);
    // No path may claim the upstream call as a child of either request.
    for p in &paths {
        p.root.walk(&mut |s, _| {
            if s.kind == SpanKind::Server && s.tid == Some(21) {
                assert!(s.children.is_empty() || !s.issues.is_empty());
            }
        });
    }
    assert!(paths.iter().all(|p| !p.complete), "{paths:#?}");
}

#[test]
fn loopback_in_two_netns_is_kept_apart() {
    // Two "containers" on one host, each with a client and a server on
    // 127.0.0.1 with identical ports and identical sequence numbers.
    let mut w = World::new(1, true);
    for netns in [7, 8] {
        let cl = Proc {
            host: 0,
            pid: 10 + netns,
            netns,
        };
        let sv = Proc {
            host: 0,
            pid: 20 + netns,
            netns,
        };
        let mut k = w.connect(cl, cl.pid, "127.0.0.1:40000", sv, sv.pid, "127.0.0.1:80");
        k.up = 5;
        k.down = 9;
        let p = k.up;
        w.c_send(&mut k, cl.pid, 10, 1);
        w.s_recv(&mut k, sv.pid, 10, 1, p);
        let p = k.down;
        w.s_send(&mut k, sv.pid, 10 + netns, 1);
        w.c_recv(&mut k, cl.pid, 10 + netns, 1, p);
    }
    let paths = w.analyze(&[0], false);
    assert_eq!(paths.len(), 2);
    for p in &paths {
        assert!(p.complete);
        assert_eq!(p.root.netns, p.root.children[0].netns);
        assert_eq!(p.root.bytes_in, p.root.children[0].bytes_out);
    }
}

#[test]
fn paths_round_trip_through_the_jsonl_contract() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 1);
    let paths = w.analyze(&[0, 1], false);
    let line = serde_json::to_string(&paths[0]).unwrap();
    // The contract's field names, and IPv4 written as ip:port.
    for field in [
        "\"path\":",
        "\"complete\":true",
        "\"kind\":\"origin\"",
        "\"kind\":\"server\"",
        "\"kind\":\"remote\"",
        "\"local\":\"10.0.0.1:40000\"",
        "\"start_ns\":",
        "\"end_ns\":",
        "\"bytes_in\":",
        "\"bytes_out\":",
        "\"children\":",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let back: Path = serde_json::from_str(&line).unwrap();
    assert_eq!(back, paths[0]);
    let bad = line.replace("10.0.0.1:40000", "10.0.0.1");
    let err = serde_json::from_str::<Path>(&bad).unwrap_err().to_string();
    assert!(err.contains("expected an endpoint"), "{err}");
}

/// Thread-pool hand-off: an IO thread receives the request, a worker makes
/// the downstream call and sends the reply.
fn handoff(w: &mut World, background_call_first: bool) {
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let fe = Proc {
        host: 0,
        pid: 20,
        netns: 1,
    };
    let db = Proc {
        host: 0,
        pid: 30,
        netns: 1,
    };
    let mut k = w.connect(cl, 11, "127.0.0.1:40000", fe, 21, "127.0.0.1:80");
    let mut pool = w.connect(fe, 22, "127.0.0.1:40001", db, 31, "127.0.0.1:5432");
    // The process serves (an earlier request on another connection).
    let mut warm = w.connect(cl, 12, "127.0.0.1:40002", fe, 23, "127.0.0.1:80");
    let p = warm.up;
    w.c_send(&mut warm, 12, 5, 1);
    w.s_recv(&mut warm, 23, 5, 1, p);
    let p = warm.down;
    w.s_send(&mut warm, 23, 5, 1);
    w.c_recv(&mut warm, 12, 5, 1, p);
    if background_call_first {
        // The worker calls the db before the request exists: not the request's.
        let p = pool.up;
        w.c_send(&mut pool, 22, 7, 1);
        w.s_recv(&mut pool, 31, 7, 1, p);
        let p = pool.down;
        w.s_send(&mut pool, 31, 7, 1);
        w.c_recv(&mut pool, 22, 7, 1, p);
    }
    let p = k.up;
    w.c_send(&mut k, 11, 10, 1);
    w.s_recv(&mut k, 21, 10, 2, p); // IO thread 21 reads the request
    let p = pool.up;
    w.c_send(&mut pool, 22, 20, 2); // worker 22 calls the db
    w.s_recv(&mut pool, 31, 20, 1, p);
    let p = pool.down;
    w.s_send(&mut pool, 31, 30, 1);
    w.c_recv(&mut pool, 22, 30, 1, p);
    let p = k.down;
    w.s_send(&mut k, 22, 40, 2); // and the worker replies
    w.c_recv(&mut k, 11, 40, 1, p);
}

#[test]
fn thread_pool_hand_off_attributes_the_workers_calls() {
    let mut w = World::new(1, true);
    handoff(&mut w, false);
    let paths = w.analyze(&[0], false);
    let p = paths
        .iter()
        .find(|p| p.root.tid == Some(11))
        .expect("the request's path");
    assert!(p.complete, "{}", shape(p));
    assert_eq!(
        shape(p),
        "origin tid=Some(11) 127.0.0.1:40000 127.0.0.1:80 in=40 out=10 issues=[]\n\
         \x20 server tid=Some(21) 127.0.0.1:80 127.0.0.1:40000 in=10 out=40 issues=[]\n\
         \x20   server tid=Some(31) 127.0.0.1:5432 127.0.0.1:40001 in=20 out=30 issues=[]\n"
    );
}

#[test]
fn a_workers_call_made_before_the_request_arrived_is_not_adopted() {
    let mut w = World::new(1, true);
    handoff(&mut w, true);
    let paths = w.analyze(&[0], false);
    let p = paths
        .iter()
        .find(|p| p.root.tid == Some(11))
        .expect("the request's path");
    // The request's own call is adopted; the earlier one is not.
    assert!(p.complete, "{}", shape(p));
    assert_eq!(p.root.children[0].children.len(), 1);
    assert_eq!(p.root.children[0].children[0].bytes_in, 20);
    let bg = paths
        .iter()
        .find(|p| p.root.tid == Some(22))
        .expect("the background call, on its own");
    assert!(!bg.complete);
    assert_eq!(bg.root.issues, vec![Issue::Unattributed]);
}

/// Found on a real recording after a lossy flood: thread A's call on a
/// pooled connection lost its reply, then thread B (new since the loss) sent
/// its own request on that connection. B's request is B's call, not more of
/// A's: B's path must include it (and must never be complete without it).
#[test]
fn a_pooled_connection_after_a_lost_reply_carries_the_next_threads_call() {
    let mut w = World::new(1, true);
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let fe = Proc {
        host: 0,
        pid: 20,
        netns: 1,
    };
    let db = Proc {
        host: 0,
        pid: 30,
        netns: 1,
    };
    w.thread(cl, 11, "client");
    w.thread(fe, 21, "front-a");
    w.thread(db, 31, "db");
    let mut ka = w.connect(cl, 11, "127.0.0.1:40000", fe, 21, "127.0.0.1:80");
    let mut pool = w.connect(fe, 21, "127.0.0.1:40001", db, 31, "127.0.0.1:5432");
    // Thread A's request, whose db reply is lost.
    let p = ka.up;
    w.c_send(&mut ka, 11, 10, 1);
    w.s_recv(&mut ka, 21, 10, 1, p);
    let p = pool.up;
    w.c_send(&mut pool, 21, 20, 1);
    w.s_recv(&mut pool, 31, 20, 1, p);
    let p = pool.down;
    w.s_send(&mut pool, 31, 30, 1);
    w.c_recv(&mut pool, 21, 30, 1, p);
    let lost = w.hosts[0].pop().unwrap(); // front never sees the db reply
    let Record::Event(lost) = lost else {
        unreachable!()
    };
    let p = ka.down;
    w.s_send(&mut ka, 21, 40, 1);
    w.c_recv(&mut ka, 11, 40, 1, p);
    w.hosts[0].push(Record::Checkpoint(Checkpoint {
        ts_ns: lost.ts_ns + 5_000,
        lost_total: 1,
    }));
    // Thread B, new after the loss, on a new client connection.
    w.ts += 10_000_000;
    w.thread(fe, 22, "front-b");
    w.thread(cl, 12, "client-b");
    let mut kb = w.connect(cl, 12, "127.0.0.1:40002", fe, 22, "127.0.0.1:80");
    let p = kb.up;
    w.c_send(&mut kb, 12, 11, 1);
    w.s_recv(&mut kb, 22, 11, 1, p);
    let p = pool.up;
    w.c_send(&mut pool, 22, 21, 1);
    w.s_recv(&mut pool, 31, 21, 1, p);
    let p = pool.down;
    w.s_send(&mut pool, 31, 31, 1);
    w.c_recv(&mut pool, 22, 31, 1, p);
    let p = kb.down;
    w.s_send(&mut kb, 22, 41, 1);
    w.c_recv(&mut kb, 12, 41, 1, p);
    let end = w.ts + 1;
    w.hosts[0].push(Record::Checkpoint(Checkpoint {
        ts_ns: end,
        lost_total: 1,
    }));
    let paths = w.analyze(&[0], true);
    let all: String = paths.iter().map(shape).collect();
    let b = paths
        .iter()
        .find(|p| p.root.tid == Some(12))
        .expect("B's path");
    // B's call is B's. (The db thread worked through the loss, so its span
    // is marked: the path is honest about that, but its edges are right.)
    assert_eq!(b.root.children[0].children.len(), 1, "{all}");
    assert_eq!(b.root.children[0].children[0].bytes_in, 21, "{all}");
    assert!(b.root.children[0].issues.is_empty(), "{all}");
    // A's span keeps no edge to B's call.
    let a = paths
        .iter()
        .find(|p| p.root.tid == Some(21))
        .expect("A's span");
    assert!(a.root.children.is_empty() && !a.complete, "{all}");
}

/// Gives every data event the bytes it would have carried of its message,
/// as payload capture does: `payload(port, request)` is the whole message
/// sent to or from the server on `port`; chunks are cut at `cap`.
fn attach_payloads(w: &mut World, cap: usize, payload: impl Fn(u16, bool) -> Vec<u8>) {
    for host in &mut w.hosts {
        let mut at: std::collections::HashMap<u64, (Op, usize)> = Default::default();
        for r in host.iter_mut() {
            let Record::Event(e) = r else { continue };
            if !matches!(e.op, Op::Send | Op::Recv) || e.ret <= 0 {
                continue;
            }
            // The server end is the one whose local port is the service's.
            let server_end = matches!(e.local.port(), 80 | 3306);
            let port = if server_end {
                e.local.port()
            } else {
                e.remote.port()
            };
            let request = (e.op == Op::Recv) == server_end;
            let (op, off) = at.entry(e.sock).or_insert((e.op, 0));
            if *op != e.op {
                *op = e.op;
                *off = 0;
            }
            let msg = payload(port, request);
            let end = (*off + e.ret as usize).min(cap).min(msg.len());
            if *off < end {
                e.data = Some(Box::new(vpath_core::Data::Bytes {
                    offset: *off as u32,
                    bytes: msg[*off..end].into(),
                }));
            }
            *off += e.ret as usize;
        }
    }
}

fn mysql_query(q: &str) -> Vec<u8> {
    let n = q.len() + 1;
    let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, 0, 0x03];
    v.extend_from_slice(q.as_bytes());
    v
}

fn wiki_payload(port: u16, request: bool) -> Vec<u8> {
    let mut m = match (port, request) {
        (80, true) => b"GET /index.php?title=Page_7 HTTP/1.1\r\nHost: wiki\r\n\r\n".to_vec(),
        (80, false) => b"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n".to_vec(),
        (3306, true) => mysql_query("SELECT id FROM page WHERE page_title='Page_7'"),
        _ => vec![7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0],
    };
    m.resize(6000, b'.');
    m
}

#[test]
fn payload_bytes_name_the_spans_of_a_path() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 2);
    // The requests' first bytes arrive in several reads (300 bytes in 3).
    attach_payloads(&mut w, 4096, wiki_payload);
    let paths = w.analyze(&[0, 1, 2], false);
    assert_eq!(paths.len(), 2);
    for p in &paths {
        assert!(p.complete, "{}", shape(p));
        let root = &p.root;
        assert_eq!(root.protocol.as_deref(), Some("http"), "{root:#?}");
        let front = &root.children[0];
        assert_eq!(front.protocol.as_deref(), Some("http"));
        assert_eq!(front.name.as_deref(), Some("GET /index.php"));
        assert_eq!(
            front
                .attrs
                .get("http.response.status_code")
                .map(String::as_str),
            Some("200"),
            "{:?}",
            front.attrs
        );
        assert!(
            front.attrs.values().any(|v| v.contains("title=Page_7")),
            "{:?}",
            front.attrs
        );
        for db in &front.children {
            assert_eq!(db.protocol.as_deref(), Some("mysql"));
            assert_eq!(db.name.as_deref(), Some("SELECT"));
            assert_eq!(
                db.attrs.get("db.query.text").map(String::as_str),
                Some("SELECT id FROM page WHERE page_title='Page_7'")
            );
        }
    }
    // An unobserved database: the caller's bytes name the remote leaf.
    let paths = w.analyze(&[0, 1], false);
    for p in &paths {
        for db in &p.root.children[0].children {
            assert_eq!(db.kind, SpanKind::Remote);
            assert_eq!(db.name.as_deref(), Some("SELECT"));
        }
    }
}

#[test]
fn labels_from_the_source_name_spans_without_bytes() {
    let mut w = World::new(3, true);
    three_tier(&mut w, 1);
    attach_payloads(&mut w, 64, wiki_payload);
    // What the recorder does by default: bytes become labels at the source.
    for host in &mut w.hosts {
        let mut l = vpath_core::content::Labeler::new(64);
        for r in host.iter_mut() {
            if let Record::Event(e) = r {
                l.apply(e);
                assert!(!matches!(
                    e.data.as_deref(),
                    Some(vpath_core::Data::Bytes { .. })
                ));
            }
        }
    }
    let paths = w.analyze(&[0, 1, 2], false);
    let front = &paths[0].root.children[0];
    assert_eq!(front.name.as_deref(), Some("GET /index.php"));
    let db = &front.children[0];
    assert_eq!(db.name.as_deref(), Some("SELECT"));
    let q = &db.attrs["db.query.text"];
    assert!(!q.contains("Page_7"), "literals are redacted: {q}");
}

impl World {
    /// One end of `k` closes its side: a Close event by `tid` with `sc`
    /// (shutdown keeps the descriptor, close drops it).
    fn close_end(&mut self, k: &Conn, server_end: bool, tid: u32, sc: Syscall) {
        let (p, sock, l, r) = if server_end {
            (k.s, k.s_sock, k.saddr, k.caddr)
        } else {
            (k.c, k.c_sock, k.caddr, k.saddr)
        };
        self.ev(p, tid, sock, Op::Close, sc, 0, 0, l, r);
    }
}

/// php-fpm's way: reply, `shutdown`, then the script's post-response work
/// (calls to the database), then read the request's last bytes, then the
/// next request. The post-response calls are the request's; the late bytes
/// are not a new request.
#[test]
fn work_after_reply_and_shutdown_stays_with_the_request() {
    let mut w = World::new(3, true);
    let web = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let fpm = Proc {
        host: 1,
        pid: 20,
        netns: 2,
    };
    let db = Proc {
        host: 2,
        pid: 30,
        netns: 3,
    };
    w.thread(web, 11, "apache2");
    w.thread(fpm, 21, "php-fpm");
    w.thread(db, 31, "mariadbd");
    let mut kd = w.connect(fpm, 21, "10.0.0.2:40001", db, 31, "10.0.0.3:3306");
    for i in 0..2u32 {
        let mut k = w.connect(
            web,
            11,
            &format!("10.0.0.1:{}", 41000 + i),
            fpm,
            21,
            "10.0.0.2:9000",
        );
        let p = k.up;
        w.c_send(&mut k, 11, 845, 1);
        // php-fpm reads all but the last 8 bytes.
        w.s_recv(&mut k, 21, 837, 2, p);
        let q = kd.up;
        w.c_send(&mut kd, 21, 40, 1);
        w.s_recv(&mut kd, 31, 40, 1, q);
        let q = kd.down;
        w.s_send(&mut kd, 31, 400, 1);
        w.c_recv(&mut kd, 21, 400, 1, q);
        let q = k.down;
        w.s_send(&mut k, 21, 30000, 3);
        w.c_recv(&mut k, 11, 30000, 2, q);
        w.close_end(&k, true, 21, Syscall::Shutdown);
        // Post-response work: a COMMIT, then maybe the last 8 bytes.
        let q = kd.up;
        w.c_send(&mut kd, 21, 30, 1);
        w.s_recv(&mut kd, 31, 30, 1, q);
        let q = kd.down;
        w.s_send(&mut kd, 31, 11, 1);
        w.c_recv(&mut kd, 21, 11, 1, q);
        if i == 0 {
            w.s_recv(&mut k, 21, 8, 1, p.wrapping_add(837));
        }
        w.close_end(&k, false, 11, Syscall::Close);
    }
    let paths = w.analyze(&[0, 1, 2], false);
    assert_eq!(paths.len(), 2, "{paths:#?}");
    for p in &paths {
        assert!(p.complete, "{}", shape(p));
        let fpm_span = &p.root.children[0];
        assert_eq!(fpm_span.tid, Some(21));
        assert_eq!(fpm_span.children.len(), 2, "{}", shape(p));
        assert_eq!(fpm_span.children[1].bytes_in, 30, "the COMMIT");
    }
    assert_eq!(
        paths[0].root.children[0].bytes_in, 845,
        "late bytes counted"
    );
}

/// A request answered by closing the connection (MySQL's COM_QUIT): both
/// ends know the exchange is over, so neither is marked `no-reply`.
#[test]
fn a_request_ended_by_close_is_one_way_not_missing_its_reply() {
    let mut w = World::new(2, true);
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let db = Proc {
        host: 1,
        pid: 30,
        netns: 3,
    };
    w.thread(cl, 11, "php");
    w.thread(db, 31, "mariadbd");
    let mut k = w.connect(cl, 11, "10.0.0.1:40000", db, 31, "10.0.0.3:3306");
    let p = k.up;
    w.c_send(&mut k, 11, 5, 1);
    w.s_recv(&mut k, 31, 5, 1, p);
    w.close_end(&k, false, 11, Syscall::Close);
    w.close_end(&k, true, 31, Syscall::Close);
    let paths = w.analyze(&[0, 1], false);
    assert_eq!(paths.len(), 1);
    assert!(paths[0].complete, "{}", shape(&paths[0]));
    // Without the close, the missing reply is an issue.
    let mut w = World::new(2, true);
    w.thread(cl, 11, "php");
    w.thread(db, 31, "mariadbd");
    let mut k = w.connect(cl, 11, "10.0.0.1:40000", db, 31, "10.0.0.3:3306");
    let p = k.up;
    w.c_send(&mut k, 11, 5, 1);
    w.s_recv(&mut k, 31, 5, 1, p);
    let paths = w.analyze(&[0, 1], false);
    assert!(!paths[0].complete, "{}", shape(&paths[0]));
}

/// MariaDB Connector/J's set-up on a new connection: two queries written
/// back to back (one message on the client side), answered one at a time,
/// both replies read together. The second query's span starts where the
/// first one's request ended: both are children of the request, and no
/// path is left over.
#[test]
fn pipelined_requests_in_one_message_are_all_children() {
    for seq in [true, false] {
        let mut w = World::new(2, seq);
        let app = Proc {
            host: 0,
            pid: 10,
            netns: 1,
        };
        let db = Proc {
            host: 1,
            pid: 30,
            netns: 3,
        };
        w.thread(app, 11, "tomcat-exec");
        w.thread(db, 31, "mariadbd");
        let mut k = w.connect(app, 11, "10.0.0.1:40000", db, 31, "10.0.0.3:3306");
        let p = k.up;
        w.c_send(&mut k, 11, 75 + 90, 2);
        w.s_recv(&mut k, 31, 75, 1, p);
        let q = k.down;
        w.s_send(&mut k, 31, 4, 1);
        w.s_recv(&mut k, 31, 90, 1, p.wrapping_add(75));
        w.s_send(&mut k, 31, 246, 1);
        w.c_recv(&mut k, 11, 250, 1, q);
        let paths = w.analyze(&[0, 1], false);
        assert_eq!(paths.len(), 1, "seq={seq}: {paths:#?}");
        let p = &paths[0];
        assert!(p.complete, "seq={seq}: {}", shape(p));
        assert_eq!(p.root.kind, SpanKind::Origin);
        let ins: Vec<u64> = p.root.children.iter().map(|c| c.bytes_in).collect();
        assert_eq!(ins, vec![75, 90], "seq={seq}: {}", shape(p));
    }
}

/// A pool process that hands requests off: after a worker replied to a
/// request it read itself and shut the connection down, its next calls may
/// be for a request another thread read. They must not go to the request it
/// shut down: the post-reply rule is not used in a process seen handing off.
#[test]
fn no_post_reply_rule_in_a_process_that_hands_off() {
    let mut w = World::new(3, true);
    let cl = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    let srv = Proc {
        host: 1,
        pid: 20,
        netns: 2,
    };
    let db = Proc {
        host: 2,
        pid: 30,
        netns: 3,
    };
    w.thread(cl, 11, "client");
    w.thread(cl, 12, "client");
    w.thread(srv, 21, "acceptor");
    w.thread(srv, 22, "worker");
    w.thread(db, 31, "db");
    let mut kd = w.connect(srv, 22, "10.0.0.2:40001", db, 31, "10.0.0.3:3306");
    let mut k0 = w.connect(cl, 11, "10.0.0.1:41000", srv, 21, "10.0.0.2:80");
    // R0: read by the acceptor, served and replied by the worker (hand-off).
    let p = k0.up;
    w.c_send(&mut k0, 11, 100, 1);
    w.s_recv(&mut k0, 21, 100, 1, p);
    let q = kd.up;
    w.c_send(&mut kd, 22, 40, 1);
    w.s_recv(&mut kd, 31, 40, 1, q);
    let q = kd.down;
    w.s_send(&mut kd, 31, 400, 1);
    w.c_recv(&mut kd, 22, 400, 1, q);
    let q = k0.down;
    w.s_send(&mut k0, 22, 500, 1);
    w.c_recv(&mut k0, 11, 500, 1, q);
    // R1: read and replied by the worker itself, then shut down.
    let mut k1 = w.connect(cl, 12, "10.0.0.1:41001", srv, 22, "10.0.0.2:80");
    let p = k1.up;
    w.c_send(&mut k1, 12, 100, 1);
    w.s_recv(&mut k1, 22, 100, 1, p);
    let q = k1.down;
    w.s_send(&mut k1, 22, 500, 1);
    w.c_recv(&mut k1, 12, 500, 1, q);
    w.close_end(&k1, true, 22, Syscall::Shutdown);
    // R2 read by the acceptor; the worker's next call is for it.
    let p = k0.up;
    w.c_send(&mut k0, 11, 100, 1);
    w.s_recv(&mut k0, 21, 100, 1, p);
    let q = kd.up;
    w.c_send(&mut kd, 22, 40, 1);
    w.s_recv(&mut kd, 31, 40, 1, q);
    let q = kd.down;
    w.s_send(&mut kd, 31, 400, 1);
    w.c_recv(&mut kd, 22, 400, 1, q);
    let q = k0.down;
    w.s_send(&mut k0, 22, 500, 1);
    w.c_recv(&mut k0, 11, 500, 1, q);
    let paths = w.analyze(&[0, 1, 2], false);
    // R1's path (client thread 12) has no child.
    let r1 = paths
        .iter()
        .find(|p| p.root.tid == Some(12))
        .expect("R1's path");
    assert!(r1.root.children[0].children.is_empty(), "{}", shape(r1));
    // And the requests the acceptor read keep their worker's calls: every
    // path exact (without the rule's guard, R1 would take R2's call as
    // ambiguous and three paths would be incomplete).
    assert_eq!(paths.len(), 3);
    for p in &paths {
        assert!(p.complete, "{}", shape(p));
        if p.root.tid == Some(11) {
            assert_eq!(p.root.children[0].children.len(), 1, "{}", shape(p));
        }
    }
}

/// One thread holding both ends of a connection, sending on one end and
/// reading on the other, over and over (a loopback benchmark): every round
/// trip is a request it sends itself, not a call made by the previous one.
/// The paths stay shallow however long the loop runs.
#[test]
fn a_thread_talking_to_itself_does_not_nest_its_round_trips() {
    let mut w = World::new(1, true);
    let p = Proc {
        host: 0,
        pid: 10,
        netns: 1,
    };
    w.thread(p, 11, "pingpong");
    let mut k = w.connect(p, 11, "127.0.0.1:40000", p, 11, "127.0.0.1:5000");
    for _ in 0..20_000 {
        let q = k.up;
        w.c_send(&mut k, 11, 1, 1);
        w.s_recv(&mut k, 11, 1, 1, q);
    }
    let paths = w.analyze(&[0], false);
    let deepest = paths
        .iter()
        .map(|p| {
            let mut d = 0;
            p.root.walk(&mut |_, depth| d = d.max(depth));
            d
        })
        .max()
        .unwrap();
    assert!(deepest <= 2, "paths nest {deepest} deep");
}

mod pipelining_property {
    //! Pipelined requests on a pooled connection, with and without a lost
    //! event: the pipelining rule (a call that sent more than its span read
    //! continues at the exact next position) must never join a span to the
    //! wrong exchange, and without loss every exchange is exact.
    use super::*;
    use proptest::prelude::*;

    /// One exchange: which client thread, the pipelined request sizes.
    type Plan = Vec<(bool, Vec<u32>)>;

    fn exchanges() -> impl Strategy<Value = Plan> {
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(1u32..300, 1..4)),
            1..8,
        )
    }

    /// Runs the plan; returns, per server span start time, its exchange, and
    /// per exchange (client tid, request sizes).
    fn run(w: &mut World, plan: &Plan) -> (Vec<(u64, usize)>, Vec<(u32, Vec<u32>)>) {
        let cl = Proc {
            host: 0,
            pid: 10,
            netns: 1,
        };
        let db = Proc {
            host: 1,
            pid: 30,
            netns: 3,
        };
        w.thread(cl, 11, "app");
        w.thread(cl, 12, "app");
        w.thread(db, 31, "db");
        let mut k = w.connect(cl, 11, "10.0.0.1:40000", db, 31, "10.0.0.3:3306");
        let mut spans = Vec::new();
        let mut truth = Vec::new();
        for (j, (second, sizes)) in plan.iter().enumerate() {
            let tid = if *second { 12 } else { 11 };
            let mut p = k.up;
            w.c_send(&mut k, tid, sizes.iter().sum(), 1);
            let q = k.down;
            for &n in sizes {
                w.s_recv(&mut k, 31, n, 1, p);
                spans.push((w.ts, j));
                p = p.wrapping_add(n);
                w.s_send(&mut k, 31, 20, 1);
            }
            w.c_recv(&mut k, tid, 20 * sizes.len() as u32, 1, q);
            truth.push((tid, sizes.clone()));
            // The recorder's periodic checkpoint (none lost yet).
            let ts = w.ts + 1;
            for h in &mut w.hosts {
                h.push(Record::Checkpoint(Checkpoint {
                    ts_ns: ts,
                    lost_total: 0,
                }));
            }
        }
        (spans, truth)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("VPATH_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
            ..ProptestConfig::default()
        })]

        #[test]
        fn pipelined_exchanges_are_exact_or_incomplete_never_wrong(
            plan in exchanges(),
            victim in prop::option::of((0usize..2, any::<prop::sample::Index>())),
        ) {
            let mut w = World::new(2, true);
            let (spans, truth) = run(&mut w, &plan);
            let mut lost = [0u64; 2];
            if let Some((h, idx)) = victim {
                let events: Vec<usize> = w.hosts[h]
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| matches!(r, Record::Event(e) if matches!(e.op, Op::Send | Op::Recv)))
                    .map(|(i, _)| i)
                    .collect();
                let at = events[idx.index(events.len())];
                let Record::Event(ev) = w.hosts[h].remove(at) else { unreachable!() };
                let pos = w.hosts[h]
                    .iter()
                    .position(|r| matches!(r, Record::Event(e) if e.ts_ns > ev.ts_ns))
                    .unwrap_or(w.hosts[h].len());
                w.hosts[h].insert(pos, Record::Checkpoint(Checkpoint { ts_ns: ev.ts_ns + 1, lost_total: 1 }));
                // Later checkpoints count it too (the total is cumulative).
                for r in &mut w.hosts[h][pos..] {
                    if let Record::Checkpoint(c) = r {
                        c.lost_total = 1;
                    }
                }
                lost[h] = 1;
            }
            // The recorder's last checkpoint covers the last event (not a
            // far future, which would end every wait before the input does).
            let end = w.ts + 1;
            for (h, l) in lost.iter().enumerate() {
                w.hosts[h].push(Record::Checkpoint(Checkpoint { ts_ns: end, lost_total: *l }));
            }
            let paths = w.analyze(&[0, 1], true);
            let exchange_of = |ts: u64| spans.iter().find(|(t, _)| *t == ts).map(|(_, j)| *j);
            for p in &paths {
                if p.root.kind != SpanKind::Origin {
                    continue;
                }
                // Every child of one origin is a request of one exchange, made
                // by the origin's thread, in order.
                let js: Vec<Option<usize>> =
                    p.root.children.iter().map(|c| exchange_of(c.start_ns)).collect();
                if let Some(Some(j)) = js.first() {
                    prop_assert!(js.iter().all(|x| *x == Some(*j)), "children from several exchanges: {}", shape(p));
                    prop_assert_eq!(Some(truth[*j].0), p.root.tid, "{}", shape(p));
                }
            }
            if victim.is_none() {
                prop_assert_eq!(paths.len(), plan.len());
                for p in &paths {
                    prop_assert!(p.complete, "{}", shape(p));
                    let j = exchange_of(p.root.children[0].start_ns).unwrap();
                    let ins: Vec<u64> = p.root.children.iter().map(|c| c.bytes_in).collect();
                    let want: Vec<u64> = truth[j].1.iter().map(|n| *n as u64).collect();
                    prop_assert_eq!(ins, want, "{}", shape(p));
                }
            }
        }
    }
}

/// A chain of `n` tiers, each calling the next before it replies: one path
/// `n` spans deep.
fn chain(w: &mut World, n: usize) {
    let procs: Vec<Proc> = (0..n)
        .map(|i| Proc {
            host: 0,
            pid: 100 + i as u32,
            netns: 1,
        })
        .collect();
    for (i, p) in procs.iter().enumerate() {
        w.thread(*p, 1_000_000 + i as u32, "tier");
    }
    let tid = |i: usize| 1_000_000 + i as u32;
    let addr =
        |i: usize, port: u16| format!("10.{}.{}.{}:{port}", i >> 16, (i >> 8) & 255, i & 255);
    let mut conns: Vec<Conn> = (0..n - 1)
        .map(|i| {
            w.connect(
                procs[i],
                tid(i),
                &addr(i, 40000),
                procs[i + 1],
                tid(i + 1),
                &addr(i + 1, 8000),
            )
        })
        .collect();
    let mut starts = Vec::new();
    for (i, k) in conns.iter_mut().enumerate() {
        let p = k.up;
        w.c_send(k, tid(i), 100, 1);
        w.s_recv(k, tid(i + 1), 100, 1, p);
        starts.push(k.down);
    }
    for (i, k) in conns.iter_mut().enumerate().rev() {
        w.s_send(k, tid(i + 1), 10, 1);
        w.c_recv(k, tid(i), 10, 1, starts[i]);
    }
}

#[test]
fn a_path_deeper_than_the_limit_is_cut_and_marked_not_a_stack_overflow() {
    let mut w = World::new(1, true);
    chain(&mut w, 20_000);
    let paths = w.analyze(&[0], false);
    assert_eq!(paths.len(), 1, "one path");
    let p = &paths[0];
    let mut depth = 0;
    let mut cut = Vec::new();
    p.root.walk(&mut |s, d| {
        depth = depth.max(d);
        if s.issues.contains(&Issue::DepthLimit) {
            cut.push(d);
        }
    });
    let limit = Config::default().max_depth;
    assert_eq!(depth + 1, limit, "spans kept down to the limit");
    assert_eq!(
        cut,
        vec![limit - 1],
        "the deepest kept span says it was cut"
    );
    assert!(!p.complete);
    // Short chains are untouched.
    let mut w = World::new(1, true);
    chain(&mut w, 10);
    let paths = w.analyze(&[0], false);
    assert_eq!(paths.len(), 1);
    assert!(paths[0].complete, "{}", shape(&paths[0]));
}
