//! Live tests: load the probes, run real TCP traffic on loopback, and check
//! the exact events. They need root. Without root they are skipped (with
//! the reason printed) unless the environment variable CI is set, in which
//! case they fail.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use vpath_bpf::{ContentCapture, Counters, Filters, Recorder, RecorderOptions};
use vpath_core::{flags, Data, Event, Label, Op, Record, Syscall};

/// Whether to run a root test; panics under CI without root.
fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: needs root to load BPF programs, and CI is set: failing instead of skipping"
        );
    }
    // Straight to stderr, past the test harness's capture, so it is seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root to load BPF programs (set CI to make this a failure)"
    );
    false
}

fn opts() -> RecorderOptions {
    RecorderOptions {
        // The tests trace their own process and filter by port.
        exclude_self: false,
        ..Default::default()
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

fn check(rc: isize, what: &str) -> usize {
    assert!(
        rc >= 0,
        "{what} failed: {}",
        std::io::Error::last_os_error()
    );
    rc as usize
}

/// Records around `f`, with the given port filter; returns every record.
fn record(ports: Vec<u16>, options: RecorderOptions, f: impl FnOnce()) -> (Vec<Record>, Counters) {
    let filters = Filters {
        ports,
        ..Default::default()
    };
    let mut rec = Recorder::start(&filters, options).expect("start recorder");
    f();
    let mut out = Vec::new();
    rec.poll(&mut |r| out.push(r)).expect("poll");
    let counters = rec.stop(&mut |r| out.push(r)).expect("stop");
    (out, counters)
}

fn events(records: &[Record]) -> Vec<Event> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Checks the stream contract: events between checkpoints are in timestamp
/// order and none is at or before the previous checkpoint.
fn check_ordering(records: &[Record]) {
    let mut last_cp = 0u64;
    let mut last_ts = 0u64;
    let mut cps = 0;
    for r in records {
        match r {
            Record::Event(e) => {
                assert!(e.ts_ns > last_cp, "event {e:?} after checkpoint {last_cp}");
                assert!(e.ts_ns >= last_ts, "events out of order: {e:?}");
                last_ts = e.ts_ns;
            }
            Record::Checkpoint(c) => {
                assert!(c.ts_ns >= last_cp);
                last_cp = c.ts_ns;
                cps += 1;
            }
            Record::Thread(_) => {}
        }
    }
    assert!(cps >= 2, "expected a checkpoint per poll and one at stop");
}

// ---- raw syscalls on a socket fd -----------------------------------------

fn c_write(fd: RawFd, b: &[u8]) -> usize {
    // SAFETY: b is a valid buffer of b.len() bytes.
    check(
        unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) },
        "write",
    )
}
fn c_read(fd: RawFd, b: &mut [u8]) -> usize {
    // SAFETY: b is a valid writable buffer.
    check(
        unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) },
        "read",
    )
}
fn c_send(fd: RawFd, b: &[u8]) -> usize {
    // SAFETY: as above.
    check(
        unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), 0) },
        "send",
    )
}
fn c_recv(fd: RawFd, b: &mut [u8], flags: i32) -> usize {
    // SAFETY: as above.
    check(
        unsafe { libc::recv(fd, b.as_mut_ptr().cast(), b.len(), flags) },
        "recv",
    )
}
fn c_sendto(fd: RawFd, b: &[u8]) -> usize {
    // SAFETY: as above; a null address is allowed on a connected socket.
    check(
        unsafe { libc::sendto(fd, b.as_ptr().cast(), b.len(), 0, std::ptr::null(), 0) },
        "sendto",
    )
}
fn c_recvfrom(fd: RawFd, b: &mut [u8]) -> usize {
    // SAFETY: as above; null address pointers are allowed.
    check(
        unsafe {
            libc::recvfrom(
                fd,
                b.as_mut_ptr().cast(),
                b.len(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        },
        "recvfrom",
    )
}
fn iov(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut _,
        iov_len: b.len(),
    }
}
fn iov_mut(b: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    }
}
fn c_sendmsg(fd: RawFd, a: &[u8], b: &[u8]) -> usize {
    let v = [iov(a), iov(b)];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = v.as_ptr() as *mut _;
    m.msg_iovlen = 2;
    // SAFETY: m points at valid iovecs for the duration of the call.
    check(unsafe { libc::sendmsg(fd, &m, 0) }, "sendmsg")
}
fn c_recvmsg(fd: RawFd, a: &mut [u8], b: &mut [u8]) -> usize {
    let mut v = [iov_mut(a), iov_mut(b)];
    // SAFETY: as above.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = v.as_mut_ptr();
    m.msg_iovlen = 2;
    // SAFETY: as above.
    check(unsafe { libc::recvmsg(fd, &mut m, 0) }, "recvmsg")
}
fn c_writev(fd: RawFd, a: &[u8], b: &[u8]) -> usize {
    let v = [iov(a), iov(b)];
    // SAFETY: v holds two valid iovecs.
    check(unsafe { libc::writev(fd, v.as_ptr(), 2) }, "writev")
}
fn c_readv(fd: RawFd, a: &mut [u8], b: &mut [u8]) -> usize {
    let v = [iov_mut(a), iov_mut(b)];
    // SAFETY: v holds two valid iovecs.
    check(unsafe { libc::readv(fd, v.as_ptr(), 2) }, "readv")
}
fn c_sendfile(fd: RawFd, file: RawFd, n: usize) -> usize {
    let mut off: libc::off_t = 0;
    // SAFETY: off is a valid offset pointer; both fds are open.
    check(unsafe { libc::sendfile(fd, file, &mut off, n) }, "sendfile")
}

/// One step of the conversation: what the client thread did, what the
/// server thread did, in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expect {
    tid: u32,
    op: Op,
    syscall: Syscall,
    ret: i64,
    peek: bool,
}

/// Runs a scripted conversation over every send/recv-family syscall on
/// `addr` (IPv4 or IPv6 loopback) and checks the exact events.
fn conversation(bind: &str) {
    let listener = TcpListener::bind(bind).expect("bind");
    let server_addr = listener.local_addr().unwrap();
    let port = server_addr.port();

    // Lockstep: each side waits for the other's "done" before its next step,
    // so every read finds exactly the bytes of one write.
    let (to_server, server_rx) = mpsc::channel::<u32>();
    let (to_client, client_rx) = mpsc::channel::<u32>();
    let file = tempfile_with(&[7u8; 100]);
    let file_fd = file.as_raw_fd();

    let mut client_tid = 0;
    let mut server_tid = 0;
    let mut client_local: Option<SocketAddr> = None;

    let (records, counters) = record(vec![port], opts(), || {
        let server = std::thread::Builder::new()
            .name("vp-server".into())
            .spawn(move || {
                let tid = gettid();
                let (s, _) = listener.accept().expect("accept");
                let fd = s.as_raw_fd();
                let mut b = [0u8; 128];
                server_rx.recv().unwrap();
                assert_eq!(c_read(fd, &mut b[..16]), 16);
                assert_eq!(c_write(fd, &[1u8; 8]), 8);
                to_client.send(1).unwrap();
                server_rx.recv().unwrap();
                assert_eq!(c_recv(fd, &mut b[..12], libc::MSG_PEEK), 12);
                assert_eq!(c_recv(fd, &mut b[..12], 0), 12);
                to_client.send(2).unwrap();
                server_rx.recv().unwrap();
                assert_eq!(c_recvfrom(fd, &mut b[..20]), 20);
                assert_eq!(c_sendto(fd, &[2u8; 4]), 4);
                to_client.send(3).unwrap();
                server_rx.recv().unwrap();
                let (x, y) = b.split_at_mut(3);
                assert_eq!(c_recvmsg(fd, x, &mut y[..4]), 7);
                assert_eq!(c_sendmsg(fd, &[3u8; 5], &[4u8; 6]), 11);
                to_client.send(4).unwrap();
                server_rx.recv().unwrap();
                let (x, y) = b.split_at_mut(10);
                assert_eq!(c_readv(fd, x, &mut y[..15]), 25);
                assert_eq!(c_writev(fd, &[5u8; 2], &[6u8; 3]), 5);
                to_client.send(5).unwrap();
                server_rx.recv().unwrap();
                assert_eq!(c_read(fd, &mut b[..100]), 100);
                // Last bytes then the FIN at once: the client's read of them
                // may consume the FIN too (coalesced), which moves
                // copied_seq one further; the probe must correct for it.
                assert_eq!(c_write(fd, &[6u8; 3]), 3);
                drop(s); // close: ESTABLISHED -> FIN_WAIT1 by this thread
                to_client.send(6).unwrap();
                tid
            })
            .unwrap();
        let client = std::thread::Builder::new()
            .name("vp-client".into())
            .spawn(move || {
                let tid = gettid();
                let s = std::net::TcpStream::connect(server_addr).expect("connect");
                let local = s.local_addr().unwrap();
                let fd = s.as_raw_fd();
                let mut b = [0u8; 128];
                assert_eq!(c_write(fd, &[9u8; 16]), 16);
                to_server.send(1).unwrap();
                client_rx.recv().unwrap();
                assert_eq!(c_read(fd, &mut b[..8]), 8);
                assert_eq!(c_send(fd, &[8u8; 12]), 12);
                to_server.send(2).unwrap();
                client_rx.recv().unwrap();
                assert_eq!(c_sendto(fd, &[7u8; 20]), 20);
                to_server.send(3).unwrap();
                client_rx.recv().unwrap();
                assert_eq!(c_recvfrom(fd, &mut b[..4]), 4);
                assert_eq!(c_sendmsg(fd, &[1u8; 3], &[2u8; 4]), 7);
                to_server.send(4).unwrap();
                client_rx.recv().unwrap();
                let (x, y) = b.split_at_mut(5);
                assert_eq!(c_recvmsg(fd, x, &mut y[..6]), 11);
                assert_eq!(c_writev(fd, &[3u8; 10], &[4u8; 15]), 25);
                to_server.send(5).unwrap();
                client_rx.recv().unwrap();
                let (x, y) = b.split_at_mut(2);
                assert_eq!(c_readv(fd, x, &mut y[..3]), 5);
                assert_eq!(c_sendfile(fd, file_fd, 100), 100);
                to_server.send(6).unwrap();
                client_rx.recv().unwrap();
                assert_eq!(c_read(fd, &mut b[..3]), 3);
                assert_eq!(c_read(fd, &mut b[..10]), 0, "EOF after the server's close");
                drop(s); // close: CLOSE_WAIT -> LAST_ACK by this thread
                (tid, local)
            })
            .unwrap();
        server_tid = server.join().unwrap();
        let (t, l) = client.join().unwrap();
        client_tid = t;
        client_local = Some(l);
        std::thread::sleep(Duration::from_millis(30));
    });
    drop(file);
    let client_local = client_local.unwrap();
    check_ordering(&records);

    // Thread names arrive once per thread, before that thread's events.
    for (tid, name) in [(client_tid, "vp-client"), (server_tid, "vp-server")] {
        let first_thread = records
            .iter()
            .position(|r| matches!(r, Record::Thread(t) if t.tid == tid))
            .unwrap_or_else(|| panic!("no thread record for {name} ({tid})"));
        let first_event = records
            .iter()
            .position(|r| matches!(r, Record::Event(e) if e.tid == tid))
            .unwrap();
        assert!(first_thread < first_event);
        let Record::Thread(t) = &records[first_thread] else {
            unreachable!()
        };
        assert_eq!(t.comm, name);
        assert_eq!(t.pid, std::process::id());
        let n = records
            .iter()
            .filter(|r| matches!(r, Record::Thread(t) if t.tid == tid))
            .count();
        assert_eq!(n, 1, "comm of {name} sent {n} times");
    }

    let evs: Vec<Event> = events(&records)
        .into_iter()
        .filter(|e| e.tid == client_tid || e.tid == server_tid || e.tid == 0)
        .collect();
    let e = |tid, op, syscall, ret| Expect {
        tid,
        op,
        syscall,
        ret,
        peek: false,
    };
    let (c, s) = (client_tid, server_tid);
    use Op::*;
    let mut expected_client = vec![
        e(c, Connect, Syscall::Connect, 0),
        e(c, Send, Syscall::Write, 16),
        e(c, Recv, Syscall::Read, 8),
        e(c, Send, Syscall::Sendto, 12),
        e(c, Send, Syscall::Sendto, 20),
        e(c, Recv, Syscall::Recvfrom, 4),
        e(c, Send, Syscall::Sendmsg, 7),
        e(c, Recv, Syscall::Recvmsg, 11),
        e(c, Send, Syscall::Writev, 25),
        e(c, Recv, Syscall::Readv, 5),
        e(c, Send, Syscall::Sendfile, 100),
        e(c, Recv, Syscall::Read, 3),
        // The EOF read (ret 0) moved no bytes: counted, not recorded.
        e(c, Close, Syscall::Close, 0),
    ];
    let mut expected_server = vec![
        e(s, Recv, Syscall::Read, 16),
        e(s, Send, Syscall::Write, 8),
        // The MSG_PEEK of these 12 bytes: counted, not recorded.
        e(s, Recv, Syscall::Recvfrom, 12),
        e(s, Recv, Syscall::Recvfrom, 20),
        e(s, Send, Syscall::Sendto, 4),
        e(s, Recv, Syscall::Recvmsg, 7),
        e(s, Send, Syscall::Sendmsg, 11),
        e(s, Recv, Syscall::Readv, 25),
        e(s, Send, Syscall::Writev, 5),
        e(s, Recv, Syscall::Read, 100),
        e(s, Send, Syscall::Write, 3),
        e(s, Close, Syscall::Close, 0),
    ];
    let got = |tid| -> Vec<Expect> {
        evs.iter()
            .filter(|x| x.tid == tid && x.op != Accept)
            .map(|x| Expect {
                tid: x.tid,
                op: x.op,
                syscall: x.syscall,
                ret: x.ret,
                peek: x.is_peek(),
            })
            .collect()
    };
    assert_eq!(
        got(c),
        std::mem::take(&mut expected_client),
        "client events"
    );
    assert_eq!(
        got(s),
        std::mem::take(&mut expected_server),
        "server events"
    );

    // The accept: the passive open, with the new socket's tuple, before any
    // of its data; without thread filters it names no thread (it happens
    // in softirq; the accept syscall's own probe is attached only with a
    // pid or cgroup filter, see pid_and_netns_filters_apply_in_kernel).
    let accepts: Vec<&Event> = evs.iter().filter(|x| x.op == Accept).collect();
    assert_eq!(accepts.len(), 1, "{accepts:?}");
    let acc = accepts[0];
    assert_eq!((acc.pid, acc.tid), (0, 0));
    assert_eq!(acc.syscall, Syscall::Unknown);
    assert_eq!((acc.local, acc.remote), (server_addr, client_local));
    let first_server_data = evs.iter().find(|x| x.tid == s).unwrap();
    assert!(acc.ts_ns < first_server_data.ts_ns);

    // Tuples and sockets: one cookie per end, mirrored addresses.
    let client_sock = evs.iter().find(|x| x.tid == c).unwrap().sock;
    let server_sock = acc.sock;
    assert_ne!(client_sock, 0);
    assert_ne!(server_sock, 0);
    assert_ne!(client_sock, server_sock);
    for x in evs.iter().filter(|x| x.tid != 0) {
        assert_eq!(x.pid, std::process::id());
        assert_ne!(x.netns, 0);
        if x.tid == c && x.op == Op::Connect {
            // Recorded as the handshake begins: the local port is not
            // chosen yet (the socket's later records carry it).
            assert_eq!(x.sock, client_sock, "{x:?}");
            assert_eq!(x.local.ip(), client_local.ip(), "{x:?}");
            assert_eq!(x.local.port(), 0, "{x:?}");
            assert_eq!(x.remote, server_addr, "{x:?}");
        } else if x.tid == c {
            assert_eq!(x.sock, client_sock, "{x:?}");
            assert_eq!((x.local, x.remote), (client_local, server_addr), "{x:?}");
        } else {
            assert_eq!(x.sock, server_sock, "{x:?}");
            assert_eq!((x.local, x.remote), (server_addr, client_local), "{x:?}");
        }
    }

    // Stream positions: each direction's sends are contiguous and every
    // byte's position is the same number at the sender and the receiver.
    for (from, to) in [(c, s), (s, c)] {
        let data = |tid, op| -> Vec<&Event> {
            evs.iter()
                .filter(|x| x.tid == tid && x.op == op && x.ret > 0 && x.has_seq())
                .collect()
        };
        let sends = data(from, Send);
        let recvs: Vec<&Event> = data(to, Recv)
            .into_iter()
            .filter(|x| !x.is_peek())
            .collect();
        assert!(!sends.is_empty());
        for w in sends.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(w[0].ret as u32),
                "gap between sends {w:?}"
            );
        }
        assert_eq!(sends.len(), recvs.len(), "one receive per send in lockstep");
        for (snd, rcv) in sends.iter().zip(&recvs) {
            assert_eq!(snd.seq, rcv.seq, "send {snd:?} vs receive {rcv:?}");
            assert_eq!(snd.ret, rcv.ret);
        }
    }
    // The peek and the EOF read: the only operations that moved no bytes.
    assert_eq!(counters.ops_without_bytes, 2, "{counters:?}");

    // Nothing lost, and the counters account for every event delivered.
    assert_eq!(counters.events_dropped, 0);
    assert_eq!(counters.events_emitted, events(&records).len() as u64);
}

/// An unlinked temporary file holding `data`, positioned at 0.
fn tempfile_with(data: &[u8]) -> std::fs::File {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("vpath-bpf-sendfile-{}-{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(data).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn every_syscall_family_ipv4() {
    if have_root("every_syscall_family_ipv4") {
        conversation("127.0.0.1:0");
    }
}

#[test]
fn every_syscall_family_ipv6() {
    if have_root("every_syscall_family_ipv6") {
        conversation("[::1]:0");
    }
}

#[test]
fn refused_connect_is_reported_with_its_errno_as_the_sockets_abortive_close() {
    if !have_root("refused_connect_is_reported_with_its_errno_as_the_sockets_abortive_close") {
        return;
    }
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut tid = 0;
    let (records, _) = record(vec![port], opts(), || {
        tid = gettid();
        let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
    // The connect is the thread's (recorded when the handshake begins);
    // its failure is the socket's abortive close, in softirq, by cookie.
    let all = events(&records);
    let evs: Vec<&Event> = all.iter().filter(|e| e.tid == tid).collect();
    assert_eq!(evs.len(), 1, "{evs:?}");
    let c = evs[0];
    assert_eq!(c.op, Op::Connect);
    assert_eq!(c.syscall, Syscall::Connect);
    assert_eq!(c.ret, 0);
    assert_eq!(c.remote, SocketAddr::from(([127, 0, 0, 1], port)));
    let failed: Vec<&Event> = all
        .iter()
        .filter(|e| e.sock == c.sock && e.op == Op::Close)
        .collect();
    assert_eq!(failed.len(), 1, "{all:?}");
    assert_eq!(failed[0].ret, -(libc::ECONNREFUSED as i64));
    assert_eq!(failed[0].remote, c.remote);
}

#[test]
fn pid_and_netns_filters_apply_in_kernel() {
    if !have_root("pid_and_netns_filters_apply_in_kernel") {
        return;
    }
    let me = std::process::id();
    let accepts_of = |evs: &[Event]| -> Vec<u32> {
        evs.iter()
            .filter(|e| e.op == Op::Accept)
            .map(|e| e.tid)
            .collect()
    };
    let run_events = |filters: Filters| -> Vec<Event> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let filters = Filters {
            ports: vec![port],
            ..filters
        };
        let rec = Recorder::start(&filters, opts()).unwrap();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        let mut evs = Vec::new();
        rec.stop(&mut |r| {
            if let Record::Event(e) = r {
                evs.push(e)
            }
        })
        .unwrap();
        evs
    };
    let run = |filters: Filters| run_events(filters).len();
    let my_ns = vpath_bpf::netns_of_pid(me).unwrap();
    let all = run_events(Filters::default());
    assert!(all.len() >= 4, "connect, accept, send, recv: got {all:?}");
    // Without thread filters the accept is the passive open, reported
    // without its thread (softirq); with them, by the accepting thread.
    assert_eq!(accepts_of(&all), [0], "{all:?}");
    let mine = run_events(Filters {
        pids: vec![me],
        netns: Some(my_ns),
        ..Default::default()
    });
    assert_eq!(mine.len(), all.len());
    assert_eq!(accepts_of(&mine), [gettid()], "{mine:?}");
    assert_eq!(
        run(Filters {
            pids: vec![1],
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        run(Filters {
            netns: Some(my_ns.wrapping_add(1)),
            ..Default::default()
        }),
        0
    );
    // The recorder's own process is excluded by default.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let rec = Recorder::start(
        &Filters {
            ports: vec![port],
            ..Default::default()
        },
        RecorderOptions::default(),
    )
    .unwrap();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_s, _) = l.accept().unwrap();
    c.write_all(b"self").unwrap();
    let mut evs = Vec::new();
    rec.stop(&mut |r| {
        if let Record::Event(e) = r {
            evs.push(e)
        }
    })
    .unwrap();
    // Only the passive open, which names no thread: nothing the process
    // did. (vpath itself never accepts connections.)
    assert!(
        evs.iter().all(|e| e.op == Op::Accept && e.tid == 0),
        "own process traced: {evs:?}"
    );
}

#[test]
fn tiny_ring_drops_are_counted_exactly() {
    if !have_root("tiny_ring_drops_are_counted_exactly") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let options = RecorderOptions {
        ring_bytes: 4096,
        ..opts()
    };
    const N: usize = 20_000;
    let (records, counters) = record(vec![port], options, || {
        // Each side alternates between two connections, one byte at a
        // time, so no two consecutive operations of a thread merge: one
        // record per operation. (The writer finishes first; the socket
        // buffers hold it all.)
        let c1 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let c2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s1, _) = l.accept().unwrap();
        let (s2, _) = l.accept().unwrap();
        for _ in 0..N / 2 {
            assert_eq!(c_write(c1.as_raw_fd(), b"x"), 1);
            assert_eq!(c_write(c2.as_raw_fd(), b"y"), 1);
        }
        let mut b = [0u8; 1];
        for _ in 0..N / 2 {
            assert_eq!(c_read(s1.as_raw_fd(), &mut b), 1);
            assert_eq!(c_read(s2.as_raw_fd(), &mut b), 1);
        }
    });
    let delivered = events(&records).len() as u64;
    let last_cp = records
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Checkpoint(c) => Some(*c),
            _ => None,
        })
        .unwrap();
    assert!(counters.events_dropped > 0, "{counters:?}");
    assert!(counters.events_emitted > 2 * N as u64, "{counters:?}");
    assert_eq!(counters.ops_merged, 0, "{counters:?}");
    assert_eq!(counters.events_emitted, delivered + counters.events_dropped);
    assert_eq!(last_cp.lost_total, counters.events_dropped);
    eprintln!("tiny ring: {counters:?}, delivered {delivered}");
}

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity({cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The CPUs this process may run on (its main thread's affinity, which
/// the pinning of test threads does not narrow), in order: pinning to a CPU
/// outside a restricted mask (`taskset`) would fail.
fn usable_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it and
    // CPU_ISSET reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let pid = libc::getpid();
        assert_eq!(
            libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[test]
fn runs_merge_consecutive_operations_of_one_thread_only() {
    if !have_root("runs_merge_consecutive_operations_of_one_thread_only") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut tid = 0;
    let mut socks = (0u64, 0u64);
    let (records, counters) = record(vec![port], opts(), || {
        let cpus = usable_cpus();
        let w = std::thread::spawn(move || {
            pin_to_cpu(cpus[0]);
            let a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (sa, _) = l.accept().unwrap();
            let (sb, _) = l.accept().unwrap();
            // 1. A message in 51 writes: the first 64 bytes carry the label
            // prefix (their own record); the other 50 writes are one run.
            assert_eq!(c_write(a.as_raw_fd(), &[b'G'; 64]), 64);
            for _ in 0..50 {
                assert_eq!(c_write(a.as_raw_fd(), &[1u8; 100]), 100);
            }
            // 2. Alternating connections: nothing merges.
            for _ in 0..10 {
                assert_eq!(c_write(b.as_raw_fd(), &[2u8; 100]), 100);
                assert_eq!(c_write(a.as_raw_fd(), &[3u8; 100]), 100);
            }
            // 3. A run on A, then B on another CPU, then A again on the
            // first CPU: the thread made an operation in between (wherever
            // it ran), so A's last write must not join the run.
            let moved = cpus.len() >= 2;
            if moved {
                assert_eq!(c_write(b.as_raw_fd(), &[7u8; 100]), 100);
                assert_eq!(c_write(a.as_raw_fd(), &[4u8; 100]), 100);
                assert_eq!(c_write(a.as_raw_fd(), &[4u8; 100]), 100);
                pin_to_cpu(cpus[1]);
                assert_eq!(c_write(b.as_raw_fd(), &[5u8; 100]), 100);
                pin_to_cpu(cpus[0]);
                assert_eq!(c_write(a.as_raw_fd(), &[6u8; 100]), 100);
            } else {
                eprintln!("runs test: one CPU, the migration case is not exercised");
            }
            // 4. A run on A, then an accept by this thread (its peer
            // connects from another thread), then A again: without thread
            // filters the accept is the passive open, which names no
            // thread, so the run goes on.
            assert_eq!(c_write(b.as_raw_fd(), &[10u8; 100]), 100);
            assert_eq!(c_write(a.as_raw_fd(), &[8u8; 100]), 100);
            assert_eq!(c_write(a.as_raw_fd(), &[8u8; 100]), 100);
            let peer = std::thread::spawn(move || {
                std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()
            });
            let (sc, _) = l.accept().unwrap();
            let _peer = peer.join().unwrap();
            assert_eq!(c_write(a.as_raw_fd(), &[9u8; 100]), 100);
            drop(sc);
            let mut buf = vec![0u8; 1 << 16];
            drop(a);
            drop(b);
            for s in [sa, sb] {
                while c_read(s.as_raw_fd(), &mut buf) > 0 {}
            }
            gettid()
        });
        tid = w.join().unwrap();
    });
    check_ordering(&records);
    let accepts: Vec<Event> = events(&records)
        .into_iter()
        .filter(|e| e.op == Op::Accept)
        .collect();
    assert!(accepts.iter().all(|e| e.tid == 0), "{accepts:#?}");
    let sends: Vec<Event> = events(&records)
        .into_iter()
        .filter(|e| e.tid == tid && e.op == Op::Send)
        .collect();
    socks.0 = sends[0].sock;
    socks.1 = sends.iter().find(|e| e.sock != socks.0).unwrap().sock;
    let on = |s: u64| -> Vec<&Event> { sends.iter().filter(|e| e.sock == s).collect() };
    // Stream positions stay exact: each event starts where the previous
    // one on its connection ended, and the bytes add up.
    for s in [socks.0, socks.1] {
        for w in on(s).windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(w[0].ret as u32), "{w:?}");
        }
    }
    let a = on(socks.0);
    let total_a: i64 = a.iter().map(|e| e.ret).sum();
    let moved = usable_cpus().len() >= 2;
    assert_eq!(
        total_a,
        64 + 5000 + 1000 + if moved { 300 } else { 0 } + 300,
        "{a:#?} {counters:?}"
    );
    // 1: the labelled start, the run's first write, the other 49 merged.
    assert_eq!(a[0].ret, 64);
    assert_eq!((a[1].ret, a[1].flags & flags::MERGED), (100, 0));
    assert_eq!(
        (a[2].ret, a[2].flags & flags::MERGED),
        (4900, flags::MERGED)
    );
    assert!(a[2].ts_ns > a[1].ts_ns);
    // 2: one event per write, alternating.
    let b = on(socks.1);
    assert!(b[..10]
        .iter()
        .all(|e| e.ret == 100 && e.flags & flags::MERGED == 0));
    assert!(a[3..13]
        .iter()
        .all(|e| e.ret == 100 && e.flags & flags::MERGED == 0));
    for i in 0..10 {
        assert!(b[i].ts_ns < a[3 + i].ts_ns);
    }
    // 4: the third accept lies inside A's last run: its first write, then
    // the two after it merged.
    let n = a.len();
    assert_eq!(
        (a[n - 2].ret, a[n - 1].ret, a[n - 1].flags & flags::MERGED),
        (100, 200, flags::MERGED),
        "{a:#?}"
    );
    assert_eq!(accepts.len(), 3, "{accepts:#?}");
    assert!(a[n - 2].ts_ns < accepts[2].ts_ns && accepts[2].ts_ns < a[n - 1].ts_ns);
    // 3: the B write sits between A's run and A's last write.
    if moved {
        assert_eq!(a.len(), 18, "{a:#?}");
        assert_eq!((a[13].ret, a[14].ret, a[15].ret), (100, 100, 100));
        assert!(a[13..16].iter().all(|e| e.flags & flags::MERGED == 0));
        let bw = &b[11];
        assert!(
            a[14].ts_ns < bw.ts_ns && bw.ts_ns < a[15].ts_ns,
            "{a:#?} {bw:?}"
        );
    }
    assert!(counters.ops_merged >= 49, "{counters:?}");
    eprintln!("runs: {counters:?}");
}

#[test]
fn rejects_bad_ring_size_before_loading() {
    let r = Recorder::start(
        &Filters::default(),
        RecorderOptions {
            ring_bytes: 5000,
            ..opts()
        },
    );
    assert!(matches!(
        r,
        Err(vpath_bpf::RecordError::BadRingSize { bytes: 5000, .. })
    ));
}

/// The reader is blocked in read() while the peer writes its last bytes and
/// closes at once: the data and the FIN often reach the reader as one
/// segment, and the read that takes the bytes also consumes the FIN. The
/// receive's stream position must still equal the send's.
#[test]
fn last_bytes_with_fin_keep_their_position() {
    if !have_root("last_bytes_with_fin_keep_their_position") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    const ROUNDS: usize = 40;
    let (records, _) = record(vec![port], opts(), || {
        for _ in 0..ROUNDS {
            let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (s, _) = l.accept().unwrap();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                assert_eq!(c_write(s.as_raw_fd(), b"bye!!"), 5);
                drop(s);
            });
            let mut b = [0u8; 16];
            assert_eq!(c_read(c.as_raw_fd(), &mut b[..5]), 5);
            writer.join().unwrap();
        }
    });
    let evs = events(&records);
    let mut checked = 0;
    for snd in evs.iter().filter(|e| e.op == Op::Send) {
        let rcv = evs
            .iter()
            .find(|e| e.op == Op::Recv && e.remote == snd.local && e.local == snd.remote)
            .unwrap_or_else(|| panic!("no receive for {snd:?}"));
        assert_eq!(
            (rcv.ret, rcv.seq),
            (5, snd.seq),
            "send {snd:?} vs receive {rcv:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, ROUNDS);
}

fn set_thread_name(name: &str) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_NAME)");
}

/// The per-CPU thread cache must not hide a rename (the comm goes out
/// again), and short-lived threads on the same connection each get their
/// own comm record once, even when they run back to back on one CPU.
#[test]
fn renamed_and_short_lived_threads_send_their_comm() {
    if !have_root("renamed_and_short_lived_threads_send_their_comm") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    const THREADS: usize = 20;
    let mut renamed_tid = 0;
    let mut short_tids = Vec::new();
    let (records, _) = record(vec![port], opts(), || {
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        let (cfd, sfd) = (c.as_raw_fd(), s.as_raw_fd());
        let mut b = [0u8; 8];
        renamed_tid = std::thread::Builder::new()
            .name("vp-before".into())
            .spawn(move || {
                let mut b = [0u8; 8];
                for _ in 0..3 {
                    assert_eq!(c_write(cfd, b"ab"), 2);
                    assert_eq!(c_read(sfd, &mut b), 2);
                }
                set_thread_name("vp-after");
                for _ in 0..3 {
                    assert_eq!(c_write(cfd, b"cd"), 2);
                    assert_eq!(c_read(sfd, &mut b), 2);
                }
                gettid()
            })
            .unwrap()
            .join()
            .unwrap();
        for i in 0..THREADS {
            let tid = std::thread::Builder::new()
                .name(format!("vp-short{i}"))
                .spawn(move || {
                    assert_eq!(c_write(cfd, b"x"), 1);
                    gettid()
                })
                .unwrap()
                .join()
                .unwrap();
            short_tids.push(tid);
            assert_eq!(c_read(sfd, &mut b[..1]), 1);
        }
        drop((c, s));
    });
    check_ordering(&records);
    let comms = |tid: u32| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Thread(t) if t.tid == tid => Some(t.comm.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(comms(renamed_tid), ["vp-before", "vp-after"]);
    let evs = events(&records);
    assert_eq!(evs.iter().filter(|e| e.tid == renamed_tid).count(), 12);
    for (i, &tid) in short_tids.iter().enumerate() {
        assert_eq!(comms(tid), [format!("vp-short{i}")], "thread {i} ({tid})");
        let mine: Vec<&Event> = evs.iter().filter(|e| e.tid == tid).collect();
        assert_eq!(mine.len(), 1, "thread {i}: {mine:?}");
        assert_eq!((mine[0].op, mine[0].ret), (Op::Send, 1));
    }
}

/// The dissection modes: with `discard_in_kernel` nothing is produced;
/// `poll_discard` consumes records without handing them out.
#[test]
fn overhead_dissection_modes() {
    if !have_root("overhead_dissection_modes") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let traffic = |n: usize| {
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut b = [0u8; 1];
        for _ in 0..n {
            assert_eq!(c_write(c.as_raw_fd(), b"z"), 1);
            assert_eq!(c_read(s.as_raw_fd(), &mut b), 1);
        }
    };
    let filters = Filters {
        ports: vec![port],
        ..Default::default()
    };
    let discard = RecorderOptions {
        discard_in_kernel: true,
        ..opts()
    };
    let mut rec = Recorder::start(&filters, discard).expect("start recorder");
    traffic(50);
    assert_eq!(rec.poll_discard(), 0);
    let mut out = Vec::new();
    let c = rec.stop(&mut |r| out.push(r)).unwrap();
    assert_eq!(c, Counters::default(), "discarding probes produced records");
    assert!(events(&out).is_empty());

    let mut rec = Recorder::start(&filters, opts()).expect("start recorder");
    traffic(50);
    // 100 data events, connect, accept, two closes (FIN_WAIT1, LAST_ACK),
    // and a comm record for this thread.
    let n = rec.poll_discard();
    let mut out = Vec::new();
    let c = rec.stop(&mut |r| out.push(r)).unwrap();
    // (Comm records of other tests' connecting threads may come too: a
    // connect's ports are not known when its comm goes out.)
    assert_eq!(c.events_emitted, 104, "{c:?}");
    assert!(c.comms_emitted >= 1, "{c:?}");
    let handed_out = out
        .iter()
        .filter(|r| !matches!(r, Record::Checkpoint(_)))
        .count();
    assert_eq!(
        n + handed_out as u64,
        c.events_emitted + c.comms_emitted,
        "{c:?}"
    );
}

/// The bytes each event of `tid` carried: (op, offset, bytes), in order.
fn chunks_of(records: &[Record], tid: u32) -> Vec<(Op, u32, Vec<u8>)> {
    events(records)
        .into_iter()
        .filter(|e| e.tid == tid && matches!(e.op, Op::Send | Op::Recv))
        .map(|e| match e.data.as_deref() {
            Some(Data::Bytes { offset, bytes }) => (e.op, *offset, bytes.to_vec()),
            None => (e.op, u32::MAX, Vec::new()),
            Some(other) => panic!("payload capture gave {other:?}"),
        })
        .collect()
}

/// Opt-in payload capture: every event carries the bytes it moved that lie
/// in the first N bytes of its message, whichever syscall moved them
/// (plain, vectored with a short first segment, msghdr), and sendfile's
/// bytes, which the probe cannot reach, still count for the position.
#[test]
fn payload_capture_gives_each_message_start() {
    if !have_root("payload_capture_gives_each_message_start") {
        return;
    }
    const CAP: u32 = 16;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let (to_server, server_rx) = mpsc::channel::<u32>();
    let (to_client, client_rx) = mpsc::channel::<u32>();
    let file = tempfile_with(b"FILEFILEFILEFILEFILE");
    let file_fd = file.as_raw_fd();
    let mut tids = (0, 0);
    let options = RecorderOptions {
        content: ContentCapture::Payload { bytes: CAP },
        ..opts()
    };
    let (records, _) = record(vec![addr.port()], options, || {
        let server = std::thread::spawn(move || {
            let tid = gettid();
            let (s, _) = listener.accept().expect("accept");
            let fd = s.as_raw_fd();
            let mut b = [0u8; 256];
            server_rx.recv().unwrap();
            // Message 1, 20 bytes, read at once into a 3-byte then a long segment.
            let (x, y) = b.split_at_mut(3);
            assert_eq!(c_readv(fd, x, &mut y[..100]), 20);
            // Message 2 (reply), in two pieces.
            assert_eq!(c_sendto(fd, b"HTTP/1.1 200 OK\r\n"), 17);
            to_client.send(1).unwrap();
            server_rx.recv().unwrap();
            // Message 3: 100 + 5 bytes, then 20 bytes of sendfile.
            let mut got = 0;
            while got < 125 {
                got += c_read(fd, &mut b[..125 - got]);
            }
            assert_eq!(c_write(fd, b"ok"), 2);
            to_client.send(2).unwrap();
            tid
        });
        let client = std::thread::spawn(move || {
            let tid = gettid();
            let s = std::net::TcpStream::connect(addr).expect("connect");
            let fd = s.as_raw_fd();
            let mut b = [0u8; 64];
            assert_eq!(c_write(fd, b"0123456789"), 10);
            assert_eq!(c_sendmsg(fd, b"ab", b"cdefghij"), 10);
            to_server.send(1).unwrap();
            client_rx.recv().unwrap();
            assert_eq!(c_recvfrom(fd, &mut b[..5]), 5);
            assert_eq!(c_recv(fd, &mut b[..12], 0), 12);
            // A long first segment: only it is read (up to the cap).
            assert_eq!(c_writev(fd, &[b'x'; 100], b"yyyyy"), 105);
            assert_eq!(c_sendfile(fd, file_fd, 20), 20);
            to_server.send(2).unwrap();
            client_rx.recv().unwrap();
            assert_eq!(c_read(fd, &mut b[..2]), 2);
            tid
        });
        tids = (client.join().unwrap(), server.join().unwrap());
        std::thread::sleep(Duration::from_millis(30));
    });
    drop(file);
    let (client, server) = tids;
    let c = |s: &[u8]| s.to_vec();
    assert_eq!(
        chunks_of(&records, client),
        vec![
            (Op::Send, 0, c(b"0123456789")),
            (Op::Send, 10, c(b"abcdef")),
            (Op::Recv, 0, c(b"HTTP/")),
            (Op::Recv, 5, c(b"1.1 200 OK\r")),
            (Op::Send, 0, c(&[b'x'; 16])),
            // sendfile: past the cap, nothing to copy, no bytes.
            (Op::Send, u32::MAX, Vec::new()),
            (Op::Recv, 0, c(b"ok")),
        ]
    );
    let server_chunks = chunks_of(&records, server);
    assert_eq!(server_chunks[0], (Op::Recv, 0, c(b"0123456789abcdef")));
    assert_eq!(server_chunks[1], (Op::Send, 0, c(b"HTTP/1.1 200 OK\r")));
    // Message 3 arrives in reads of any size; their bytes are the first 16
    // of 'x' * 100 at increasing offsets.
    let mut msg3 = Vec::new();
    for (op, off, bytes) in &server_chunks[2..server_chunks.len() - 1] {
        assert_eq!(*op, Op::Recv);
        if *off != u32::MAX {
            assert_eq!(*off as usize, msg3.len(), "offsets follow on");
            msg3.extend_from_slice(bytes);
        }
    }
    assert_eq!(msg3, vec![b'x'; 16]);
    assert_eq!(server_chunks.last().unwrap(), &(Op::Send, 0, c(b"ok")));
}

/// The default content capture: no bytes leave the recorder, but messages
/// of known protocols carry a label, with literals redacted.
#[test]
fn default_capture_keeps_labels_not_bytes() {
    if !have_root("default_capture_keeps_labels_not_bytes") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let (records, _) = record(vec![addr.port()], opts(), || {
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let fd = s.as_raw_fd();
            let mut b = [0u8; 256];
            let n = c_read(fd, &mut b);
            assert!(n > 0);
            assert_eq!(c_write(fd, b"HTTP/1.1 404 Not Found\r\n\r\n"), 26);
        });
        let s = std::net::TcpStream::connect(addr).expect("connect");
        let fd = s.as_raw_fd();
        let req = b"GET /index.php?title=Page_7 HTTP/1.1\r\nHost: wiki\r\n\r\n";
        assert_eq!(c_write(fd, req), req.len());
        let mut b = [0u8; 64];
        assert_eq!(c_read(fd, &mut b), 26);
        server.join().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    });
    let evs = events(&records);
    assert!(
        evs.iter()
            .all(|e| !matches!(e.data.as_deref(), Some(Data::Bytes { .. }))),
        "no raw bytes by default"
    );
    let labels: Vec<&Label> = evs
        .iter()
        .filter_map(|e| match e.data.as_deref() {
            Some(Data::Label(l)) => Some(&**l),
            _ => None,
        })
        .collect();
    // The request on both ends, the reply on both ends.
    let requests: Vec<_> = labels.iter().filter(|l| !l.reply).collect();
    let replies: Vec<_> = labels.iter().filter(|l| l.reply).collect();
    assert_eq!(requests.len(), 2, "{labels:?}");
    assert_eq!(replies.len(), 2, "{labels:?}");
    for l in requests {
        assert_eq!(l.protocol, "http");
        assert_eq!(l.name, "GET /index.php");
        let text = format!("{:?}", l.attrs);
        assert!(
            !text.contains("Page_7"),
            "query values are redacted: {text}"
        );
    }
    for l in replies {
        assert!(
            l.attrs
                .iter()
                .any(|(k, v)| k == "http.response.status_code" && v == "404"),
            "{l:?}"
        );
    }
}

/// A socket whose messages the labeler cannot read (a protocol it does not
/// know) is named to the probes, which stop copying its bytes; a socket
/// speaking HTTP keeps its labels. Every operation on the unknown socket
/// stays an event of its own: each begins a message, and a message start
/// never joins a run.
#[test]
fn unrecognized_sockets_are_no_longer_copied() {
    if !have_root("unrecognized_sockets_are_no_longer_copied") {
        return;
    }
    const ROUNDS: usize = 30;
    let unknown = TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (ua, ha) = (unknown.local_addr().unwrap(), http.local_addr().unwrap());
    let filters = Filters {
        ports: vec![ua.port(), ha.port()],
        ..Default::default()
    };
    let mut rec = Recorder::start(&filters, opts()).expect("start recorder");
    let echo = |l: TcpListener, len: usize| {
        std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut b = vec![0u8; len];
            for _ in 0..2 * ROUNDS {
                assert_eq!(c_read(s.as_raw_fd(), &mut b), len);
                assert_eq!(c_write(s.as_raw_fd(), &b), len);
            }
        })
    };
    let (su, sh) = (echo(unknown, 32), echo(http, 40));
    let cu = std::net::TcpStream::connect(ua).expect("connect");
    let ch = std::net::TcpStream::connect(ha).expect("connect");
    let binary: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x9c).collect();
    let req = b"GET /item?id=77 HTTP/1.1\r\nHost: shop\r\n\r\n";
    assert_eq!(req.len(), 40);
    let mut out = Vec::new();
    let mut b = [0u8; 40];
    let mut exchange = |rounds: usize| {
        for _ in 0..rounds {
            assert_eq!(c_write(cu.as_raw_fd(), &binary), 32);
            assert_eq!(c_read(cu.as_raw_fd(), &mut b[..32]), 32);
            assert_eq!(c_write(ch.as_raw_fd(), req), 40);
            assert_eq!(c_read(ch.as_raw_fd(), &mut b), 40);
        }
    };
    // The labeler gives up on the unknown socket within these rounds; the
    // probes learn it at a poll and look it up at a later message start.
    exchange(ROUNDS);
    std::thread::sleep(Duration::from_millis(20));
    rec.poll(&mut |r| out.push(r)).expect("poll");
    exchange(ROUNDS);
    su.join().unwrap();
    sh.join().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    rec.poll(&mut |r| out.push(r)).expect("poll");
    let counters = rec.stop(&mut |r| out.push(r)).expect("stop");
    assert_eq!(counters.events_dropped, 0, "{counters:?}");
    assert_eq!(counters.sockets_unread, 2, "both ends: {counters:?}");
    assert!(
        counters.chunks_not_copied >= 2 * ROUNDS as u64,
        "the second half of the unknown conversation is not copied: {counters:?}"
    );
    let evs = events(&out);
    let data = |port: u16| {
        evs.iter()
            .filter(|e| {
                matches!(e.op, Op::Send | Op::Recv)
                    && (e.local.port() == port || e.remote.port() == port)
            })
            .collect::<Vec<_>>()
    };
    // 2 ends x (send + receive) per round, each an event: nothing merged
    // across message boundaries.
    let (du, dh) = (data(ua.port()), data(ha.port()));
    assert_eq!(du.len(), 8 * ROUNDS, "unknown protocol");
    assert!(du.iter().all(|e| e.data.is_none() && e.ret == 32));
    assert_eq!(dh.len(), 8 * ROUNDS, "http");
    let labels = dh
        .iter()
        .filter(|e| matches!(e.data.as_deref(), Some(Data::Label(l)) if l.protocol == "http"))
        .count();
    // Requests on both ends; the echoed "replies" are requests too.
    assert_eq!(labels, 8 * ROUNDS, "every HTTP message keeps its label");
}

/// One thread pinned to each CPU writes and reads while the recorder polls:
/// every CPU's ring is drained at every poll, so nothing is lost, every
/// event is handed out once, and the merged stream keeps the checkpoint
/// contract and each connection's stream order.
#[test]
fn every_cpus_ring_is_drained_in_order() {
    if !have_root("every_cpus_ring_is_drained_in_order") {
        return;
    }
    const N: usize = 3000;
    let cpus = usable_cpus();
    let ncpu = cpus.len().min(4);
    let listeners: Vec<TcpListener> = (0..ncpu)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let filters = Filters {
        ports: ports.clone(),
        ..Default::default()
    };
    let mut rec = Recorder::start(&filters, opts()).expect("start recorder");
    let workers: Vec<_> = listeners
        .into_iter()
        .zip(cpus)
        .map(|(l, cpu)| {
            std::thread::spawn(move || {
                pin_to_cpu(cpu);
                let port = l.local_addr().unwrap().port();
                let c1 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let c2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let (s1, _) = l.accept().unwrap();
                let (s2, _) = l.accept().unwrap();
                // Alternating connections, so that nothing merges.
                let mut b = [0u8; 1];
                for i in 0..N {
                    let (c, s) = if i % 2 == 0 { (&c1, &s1) } else { (&c2, &s2) };
                    assert_eq!(c_write(c.as_raw_fd(), b"z"), 1);
                    assert_eq!(c_read(s.as_raw_fd(), &mut b), 1);
                }
                gettid()
            })
        })
        .collect();
    let mut records = Vec::new();
    while !workers.iter().all(|w| w.is_finished()) {
        rec.poll(&mut |r| records.push(r)).expect("poll");
    }
    let tids: Vec<u32> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let counters = rec.stop(&mut |r| records.push(r)).expect("stop");
    check_ordering(&records);
    let evs = events(&records);
    assert_eq!(counters.events_dropped, 0, "{counters:?}");
    assert_eq!(counters.events_emitted, evs.len() as u64, "{counters:?}");
    for tid in tids {
        let mine: Vec<&Event> = evs.iter().filter(|e| e.tid == tid).collect();
        let sends = mine.iter().filter(|e| e.op == Op::Send).count();
        let recvs = mine.iter().filter(|e| e.op == Op::Recv).count();
        assert_eq!((sends, recvs), (N, N), "thread {tid}: {counters:?}");
        // Each connection's bytes in stream order.
        let mut socks: Vec<u64> = mine.iter().map(|e| e.sock).collect();
        socks.sort_unstable();
        socks.dedup();
        for s in socks {
            for op in [Op::Send, Op::Recv] {
                let on: Vec<&&Event> = mine.iter().filter(|e| e.sock == s && e.op == op).collect();
                for w in on.windows(2) {
                    assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{w:?}");
                }
            }
        }
    }
    eprintln!("{ncpu} CPUs: {counters:?}");
}
