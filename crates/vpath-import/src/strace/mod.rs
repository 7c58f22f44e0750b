//! strace output: `strace -f -ttt -yy -o FILE` (a thread id column), or the
//! form strace writes to stderr without `-o` (`[pid N]` prefixes, none while
//! only one process is traced).
//!
//! # Mapping to records
//! - Calls: read, write, readv, writev, recvfrom/recv, sendto/send, recvmsg,
//!   sendmsg, sendfile (the socket is the out fd) become `Send`/`Recv`;
//!   connect, accept, accept4, close and shutdown become `Connect`,
//!   `Accept`, `Close`, `Close` (with [`Syscall::Shutdown`]). `MSG_PEEK` in
//!   the flags of recvfrom/recvmsg sets [`flags::PEEK`]. Calls on fds that
//!   are not TCP sockets (files, pipes, UNIX, UDP), other syscalls, signals
//!   and exits are skipped and counted ([`StraceImporter::skipped`]); so are
//!   failed accepts (no socket was made), closes of listening sockets, and
//!   calls that did not finish
//!   (`= ?`, or cut off by the end of the input).
//! - `ret` is the `= N` of the line; `= -1 EAGAIN (...)` becomes `-11`.
//!   accept's `ret` is the new fd.
//! - `ts_ns`: wall-clock nanoseconds from the `-ttt` epoch timestamp of the
//!   line that completes the call: the whole line, or the `<... resumed>`
//!   line of a call printed in two pieces (so a blocking receive is stamped
//!   when its data arrived). `<unfinished ...>` and `<... resumed>` lines are
//!   stitched per thread.
//! - Socket state is kept per (process, fd), from the `-yy` annotations
//!   (`3<TCP:[127.0.0.1:8080->127.0.0.1:54321]>`, `3<TCPv6:[[::1]:1->[::1]:2]>`,
//!   `3<TCP:[127.0.0.1:8080]>`, `3<TCP:[12345]>`) of every line, including
//!   syscalls that are otherwise skipped (poll, ioctl, ...), from connect's
//!   sockaddr argument and from accept's result. Without `-yy` no fd is
//!   known to be TCP and nothing is imported.
//! - `sock`: ids from 1 in order of first appearance of each
//!   (process, fd, incarnation). An incarnation starts when socket(),
//!   accept() or accept4() returns the fd, or when the fd shows another
//!   4-tuple or inode than before (a close the trace missed), and ends at
//!   close(). A dup()ed fd gets its own id.
//! - A connect's local address is not known when strace prints it (the
//!   annotation shows the inode). The event is held, per thread, until the
//!   thread's next record, its exit or the end of input, and takes the
//!   local address that later lines showed by then; if none did, it is the
//!   unspecified address with port 0. The same holds for any event whose
//!   socket's addresses are not fully known.
//! - Thread → process (tgid): a thread that a clone()/clone3() with
//!   `CLONE_THREAD` made belongs to the caller's process; a child of fork,
//!   vfork or a clone without `CLONE_THREAD` is its own process (tgid =
//!   tid); so is any thread seen without its clone (the traced command,
//!   attached processes). strace often prints a new thread's first lines
//!   before its creator's `<... clone resumed> = N`: a thread first seen
//!   while clone calls are unfinished is taken to be the child of the
//!   oldest of them.
//! - Without a thread column (the stderr form while a single process is
//!   traced), lines belong to [`StraceImporter::with_initial_pid`] if given;
//!   else to the only live thread seen so far; else to the first thread
//!   seen in a `[pid N]` prefix that no clone created (the traced command);
//!   else to pid 0 (until that thread is seen: the events of the traced
//!   command, and of threads it made, printed before any line of the
//!   traced command carries a `[pid N]` prefix, have pid 0).
//! - comm: the basename of the last successful execve (15 bytes at most, as
//!   the kernel keeps it), the name of `prctl(PR_SET_NAME, "...")`, or
//!   inherited from the creating thread; else `pid N` (N the tgid). A
//!   [`ThreadInfo`] precedes a thread's first event and follows any change.
//! - `netns` 0 and `cgroup` 0 (unknown); `seq` 0 without [`flags::SEQ`].

mod errno;
mod syntax;

use std::collections::VecDeque;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rustc_hash::FxHashMap;
use vpath_core::{flags, Event, Op, Record, Syscall, ThreadInfo};

use crate::error::{shorten, ErrorKind, ImportError};
use crate::lines::Lines;
use syntax::{Body, Ret, Sock as Ann, Who};

/// Streams records out of strace output.
pub struct StraceImporter<R> {
    lines: Lines<R>,
    st: State,
}

#[derive(Default)]
struct State {
    out: VecDeque<Record>,
    threads: FxHashMap<u32, Thread>,
    socks: FxHashMap<(u32, u32), Sock>,
    next_sock: u64,
    initial_pid: Option<u32>,
    /// Learned initial pid for lines without a thread column.
    learned_pid: Option<u32>,
    /// Threads known to be made by a clone or announced by strace as
    /// attached: not the traced command.
    children: rustc_hash::FxHashSet<u32>,
    /// A line fragment cut by strace's own `strace: Process N attached`.
    carry: Option<String>,
    skipped: usize,
    finished: bool,
}

struct Thread {
    tgid: u32,
    comm: Option<String>,
    /// The comm last sent in a ThreadInfo.
    announced: Option<String>,
    unfinished: Option<Unfinished>,
    /// An event held until its socket's addresses are known.
    held: Option<Held>,
}

struct Unfinished {
    line: u64,
    name: String,
    text: String,
}

struct Held {
    ev: Event,
    key: (u32, u32),
    id: u64,
}

#[derive(Clone, Copy)]
struct Sock {
    id: u64,
    inode: Option<u64>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

impl<R: BufRead> StraceImporter<R> {
    pub fn new(reader: R) -> Self {
        StraceImporter {
            lines: Lines::new(reader),
            st: State::default(),
        }
    }

    /// The thread that lines without a thread column belong to (the pid of
    /// the traced command, for strace's stderr form).
    pub fn with_initial_pid(mut self, pid: u32) -> Self {
        self.st.initial_pid = Some(pid);
        self
    }

    /// Valid lines (or stitched calls) that produced no record.
    pub fn skipped(&self) -> usize {
        self.st.skipped
    }

    /// The next record, None at the end of the input. After an error, the
    /// next call goes on with the next line.
    pub fn next_record(&mut self) -> Result<Option<Record>, ImportError> {
        loop {
            if let Some(r) = self.st.out.pop_front() {
                return Ok(Some(r));
            }
            if self.st.finished {
                return Ok(None);
            }
            match self.lines.next_line() {
                None => self.st.finish(),
                Some(Err(e)) => return Err(e),
                Some(Ok((no, text))) => self.st.line(no, text)?,
            }
        }
    }
}

impl<R: BufRead> Iterator for StraceImporter<R> {
    type Item = Result<Record, ImportError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Whether a (trimmed, non-comment) line starts like a strace line.
pub(crate) fn looks_like(line: &str) -> bool {
    match syntax::head(1, line) {
        Ok(h) => {
            let b = h.body;
            b.starts_with("+++")
                || b.starts_with("---")
                || b.starts_with("<... ")
                || matches!(b.find('('), Some(n) if n > 0
                    && b[..n].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        }
        Err(_) => false,
    }
}

const ATTACHED: &str = "strace: Process ";

/// Both known and different.
fn differs<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x != y)
}

fn unspecified(like: Option<SocketAddr>) -> SocketAddr {
    let ip: IpAddr = match like {
        Some(SocketAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// What a call means for us.
enum Kind {
    Data(Op, Syscall),
    Connect,
    Accept(Syscall),
    Close(Syscall),
    Socket,
    Clone,
    Fork,
    Execve,
    Prctl,
    Other,
}

fn kind(name: &str) -> Kind {
    match name {
        "read" => Kind::Data(Op::Recv, Syscall::Read),
        "write" => Kind::Data(Op::Send, Syscall::Write),
        "readv" => Kind::Data(Op::Recv, Syscall::Readv),
        "writev" => Kind::Data(Op::Send, Syscall::Writev),
        "recvfrom" | "recv" => Kind::Data(Op::Recv, Syscall::Recvfrom),
        "sendto" | "send" => Kind::Data(Op::Send, Syscall::Sendto),
        "recvmsg" => Kind::Data(Op::Recv, Syscall::Recvmsg),
        "sendmsg" => Kind::Data(Op::Send, Syscall::Sendmsg),
        "sendfile" | "sendfile64" => Kind::Data(Op::Send, Syscall::Sendfile),
        "connect" => Kind::Connect,
        "accept" => Kind::Accept(Syscall::Accept),
        "accept4" => Kind::Accept(Syscall::Accept4),
        "close" => Kind::Close(Syscall::Close),
        "shutdown" => Kind::Close(Syscall::Shutdown),
        "socket" => Kind::Socket,
        "clone" | "clone3" => Kind::Clone,
        "fork" | "vfork" => Kind::Fork,
        "execve" | "execveat" => Kind::Execve,
        "prctl" => Kind::Prctl,
        _ => Kind::Other,
    }
}

impl State {
    fn line(&mut self, no: u64, text: &str) -> Result<(), ImportError> {
        // strace's own messages share stderr with the trace, and can cut a
        // trace line in two: `clone3(...) = ...strace: Process 5 attached`
        // followed by ` <unfinished ...>` on the next line.
        let joined;
        let mut text = text;
        if let Some(frag) = self.carry.take() {
            joined = format!("{frag}{text}");
            text = &joined;
        }
        if let Some(at) = text.find(ATTACHED) {
            let msg = &text[at + ATTACHED.len()..];
            if let Some(pid) = msg.split(' ').next().and_then(|p| p.parse::<u32>().ok()) {
                if msg.ends_with(" attached") && self.learning() {
                    self.children.insert(pid);
                }
            }
            self.skipped += 1;
            if at > 0 {
                self.carry = Some(text[..at].to_string());
            }
            return Ok(());
        }
        let t = text.trim();
        if t.is_empty() || t.starts_with('#') {
            return Ok(());
        }
        let h = syntax::head(no, text)?;
        let tid = match h.who {
            Who::Column(t) | Who::Bracket(t) => t,
            Who::None => self.lone_thread(),
        };
        if let Who::Bracket(t) = h.who {
            if self.learning() && !self.children.contains(&t) {
                self.learn(t);
            }
        }
        self.thread(tid);
        match syntax::body(no, h.body_col, h.body)? {
            Body::Exit(msg) => {
                self.skipped += 1;
                if msg.contains("exited with") || msg.contains("killed by") {
                    self.exit(tid);
                } else if let Some(th) = self.threads.get_mut(&tid) {
                    th.unfinished = None; // e.g. superseded by execve
                }
                Ok(())
            }
            Body::Signal => {
                self.skipped += 1;
                Ok(())
            }
            Body::Unfinished { name, text } => {
                let th = self.threads.get_mut(&tid).expect("thread() made it");
                if th.unfinished.is_some() {
                    self.skipped += 1; // the earlier call never finished
                }
                th.unfinished = Some(Unfinished {
                    line: no,
                    name: name.to_string(),
                    text: text.to_string(),
                });
                Ok(())
            }
            Body::Resumed { name, rest } => {
                let th = self.threads.get_mut(&tid).expect("thread() made it");
                let Some(u) = th.unfinished.take() else {
                    // The trace started while the call was in progress.
                    self.skipped += 1;
                    return Ok(());
                };
                if u.name != name {
                    return Err(ImportError::new(
                        no,
                        ErrorKind::ResumeMismatch {
                            tid,
                            found: shorten(name),
                            pending: u.name,
                            pending_line: u.line,
                        },
                    ));
                }
                let full = format!("{}{}", u.text, rest);
                if let Some(again) = syntax::strip_unfinished(&full) {
                    let again = again.to_string();
                    let th = self.threads.get_mut(&tid).expect("thread() made it");
                    th.unfinished = Some(Unfinished {
                        line: u.line,
                        name: u.name,
                        text: again,
                    });
                    return Ok(());
                }
                // Columns of errors in a stitched call count from the start
                // of the unfinished text, shifted to this line's body.
                let col = h.body_col.saturating_sub(u.text.len());
                let u_name = u.name;
                self.complete(no, col, tid, h.ts_ns, &u_name, &full)
            }
            Body::Complete { name, text } => {
                self.complete(no, h.body_col, tid, h.ts_ns, name, text)
            }
        }
    }

    /// The thread of a line without a thread column.
    fn lone_thread(&self) -> u32 {
        if let Some(p) = self.initial_pid {
            return p;
        }
        if self.threads.len() == 1 {
            if let Some(&t) = self.threads.keys().next() {
                return t;
            }
        }
        self.learned_pid.unwrap_or(0)
    }

    /// Whether the thread of lines without a thread column is still unknown.
    fn learning(&self) -> bool {
        self.initial_pid.is_none() && self.learned_pid.is_none()
    }

    /// `pid` is the traced command: what was attributed to the placeholder
    /// thread 0 so far (unfinished call, comm, sockets) moves to it. This
    /// relies on strace's `Process N attached` messages to tell the traced
    /// command from its children (so not with `strace -q`).
    fn learn(&mut self, pid: u32) {
        self.learned_pid = Some(pid);
        self.children.clear();
        if pid == 0 {
            return;
        }
        if let Some(mut th0) = self.threads.remove(&0) {
            if let Some(h) = th0.held.take() {
                self.out.push_back(Record::Event(h.ev));
            }
            th0.announced = None;
            match self.threads.get_mut(&pid) {
                Some(th) => {
                    th.unfinished = th.unfinished.take().or(th0.unfinished.take());
                    th.comm = th.comm.take().or(th0.comm.take());
                }
                None => {
                    self.threads.insert(pid, th0);
                }
            }
            for t in self.threads.values_mut() {
                if t.tgid == 0 {
                    t.tgid = pid; // the placeholder's process
                }
            }
            let moved: Vec<_> = self
                .socks
                .iter()
                .filter(|(k, _)| k.0 == 0)
                .map(|(k, s)| (k.1, *s))
                .collect();
            for (fd, s) in moved {
                self.socks.remove(&(0, fd));
                self.socks.entry((pid, fd)).or_insert(s);
            }
        }
    }

    /// Makes sure `tid` has a Thread, deciding its process.
    fn thread(&mut self, tid: u32) {
        if self.threads.contains_key(&tid) {
            return;
        }
        // A new thread while clones are unfinished: the oldest one made it.
        let parent = self
            .threads
            .iter()
            .filter_map(|(&t, th)| {
                let u = th.unfinished.as_ref()?;
                matches!(kind(&u.name), Kind::Clone | Kind::Fork).then_some((u.line, t))
            })
            .min();
        let (tgid, comm) = match parent {
            Some((_, p)) => {
                let pt = &self.threads[&p];
                let u = pt.unfinished.as_ref().expect("filtered on it");
                let same = u.name.starts_with("clone") && u.text.contains("CLONE_THREAD");
                if self.learning() {
                    self.children.insert(tid);
                }
                (if same { pt.tgid } else { tid }, pt.comm.clone())
            }
            None => (tid, None),
        };
        self.threads.insert(
            tid,
            Thread {
                tgid,
                comm,
                announced: None,
                unfinished: None,
                held: None,
            },
        );
    }

    fn exit(&mut self, tid: u32) {
        self.release(tid);
        if let Some(th) = self.threads.remove(&tid) {
            if th.unfinished.is_some() {
                self.skipped += 1;
            }
            // The last thread of a process: its fds are gone.
            if !self.threads.values().any(|t| t.tgid == th.tgid) {
                self.socks.retain(|k, _| k.0 != th.tgid);
            }
        }
    }

    /// Emits the thread's held event, with what is known by now.
    fn release(&mut self, tid: u32) {
        let Some(th) = self.threads.get_mut(&tid) else {
            return;
        };
        let Some(Held { mut ev, key, id }) = th.held.take() else {
            return;
        };
        if let Some(s) = self.socks.get(&key).filter(|s| s.id == id) {
            if let Some(l) = s.local {
                ev.local = l;
            }
            if let Some(r) = s.remote {
                ev.remote = r;
            }
        }
        self.out.push_back(Record::Event(ev));
    }

    /// Sends the thread's ThreadInfo if it is new or its comm changed.
    fn announce(&mut self, tid: u32) {
        let th = self.threads.get_mut(&tid).expect("caller made it");
        let comm = th
            .comm
            .clone()
            .unwrap_or_else(|| format!("pid {}", th.tgid));
        if th.announced.as_deref() != Some(comm.as_str()) {
            th.announced = Some(comm.clone());
            self.out.push_back(Record::Thread(ThreadInfo {
                pid: th.tgid,
                tid,
                comm,
            }));
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        if self.carry.take().is_some() {
            self.skipped += 1;
        }
        let mut tids: Vec<u32> = self.threads.keys().copied().collect();
        tids.sort_unstable();
        for tid in tids {
            self.release(tid);
            if let Some(th) = self.threads.get_mut(&tid) {
                if th.unfinished.take().is_some() {
                    self.skipped += 1;
                }
            }
        }
    }

    /// Updates the socket state of (tgid, fd) from an annotation. Returns
    /// the socket, None when the fd is not a TCP socket (any state is
    /// dropped).
    fn observe(&mut self, key: (u32, u32), ann: Option<Ann>, fresh: bool) -> Option<Sock> {
        let Some(ann) = ann else {
            self.socks.remove(&key);
            return None;
        };
        let (inode, local, remote) = match ann {
            Ann::Tuple(l, r) => (None, Some(l), Some(r)),
            Ann::Local(l) => (None, Some(l), None),
            Ann::Inode(n) => (Some(n), None, None),
        };
        let keep = match self.socks.get(&key) {
            Some(s) => {
                !fresh
                    && !differs(s.inode, inode)
                    && !differs(s.local, local)
                    && !differs(s.remote, remote)
            }
            None => false,
        };
        let s = if keep {
            let s = self.socks.get_mut(&key).expect("checked");
            s.inode = s.inode.or(inode);
            s.local = s.local.or(local);
            s.remote = s.remote.or(remote);
            *s
        } else {
            self.next_sock += 1;
            let s = Sock {
                id: self.next_sock,
                inode,
                local,
                remote,
            };
            self.socks.insert(key, s);
            s
        };
        Some(s)
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        tid: u32,
        ts_ns: u64,
        key: (u32, u32),
        s: Sock,
        op: Op,
        syscall: Syscall,
        fl: u8,
        ret: i64,
    ) {
        let tgid = self.threads[&tid].tgid;
        let ev = Event {
            ts_ns,
            netns: 0,
            cgroup: 0,
            pid: tgid,
            tid,
            sock: s.id,
            op,
            syscall,
            flags: fl,
            ret,
            seq: 0,
            local: s.local.unwrap_or_else(|| unspecified(s.remote)),
            remote: s.remote.unwrap_or_else(|| unspecified(s.local)),
            data: None,
        };
        self.release(tid);
        self.announce(tid);
        let th = self.threads.get_mut(&tid).expect("caller made it");
        if s.local.is_some() && s.remote.is_some() {
            self.out.push_back(Record::Event(ev));
        } else {
            th.held = Some(Held { ev, key, id: s.id });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        no: u64,
        col: usize,
        tid: u32,
        ts_ns: u64,
        name: &str,
        text: &str,
    ) -> Result<(), ImportError> {
        let c = syntax::call(no, col, name, text)?;
        let tgid = self.threads[&tid].tgid;
        let ret_col = col + text.len() - c.ret.len();
        let bad_ann = |what| ImportError::expected(no, col, what, text);
        // Learn from every TCP annotation of the arguments.
        let mut known = Vec::with_capacity(c.anns.len());
        for a in &c.anns {
            let s = syntax::tcp(a.text).map_err(bad_ann)?;
            known.push((a.fd, self.observe((tgid, a.fd), s, false)));
        }
        let fd0 = || -> Option<u32> {
            let a = c.args.first()?;
            let n = a.bytes().take_while(|b| b.is_ascii_digit()).count();
            a[..n].parse().ok()
        };
        // The socket of the first argument, if it is a TCP socket.
        let sock0 = |st: &State| -> Option<(u32, Sock)> {
            let fd = fd0()?;
            match known.iter().find(|(f, _)| *f == fd) {
                Some((_, s)) => s.map(|s| (fd, s)),
                None => st.socks.get(&(tgid, fd)).map(|s| (fd, *s)),
            }
        };
        match kind(name) {
            Kind::Data(op, syscall) => {
                let Some((fd, s)) = sock0(self) else {
                    self.skipped += 1;
                    return Ok(());
                };
                let Ret::Value(ret, _) = syntax::ret(no, ret_col, c.ret)? else {
                    self.skipped += 1;
                    return Ok(());
                };
                let flags_arg = match syscall {
                    Syscall::Recvfrom => c.args.get(3),
                    Syscall::Recvmsg => c.args.get(2),
                    _ => None,
                };
                let peek = flags_arg.is_some_and(|f| f.split('|').any(|x| x.trim() == "MSG_PEEK"));
                let fl = if peek { flags::PEEK } else { 0 };
                self.event(tid, ts_ns, (tgid, fd), s, op, syscall, fl, ret);
            }
            Kind::Connect => {
                let Some((fd, mut s)) = sock0(self) else {
                    self.skipped += 1;
                    return Ok(());
                };
                let Ret::Value(ret, _) = syntax::ret(no, ret_col, c.ret)? else {
                    self.skipped += 1;
                    return Ok(());
                };
                if let Some(peer) = c.args.get(1).and_then(|a| syntax::sockaddr(a)) {
                    if s.remote.is_none() {
                        s.remote = Some(peer);
                        if let Some(st) = self.socks.get_mut(&(tgid, fd)) {
                            st.remote = Some(peer);
                        }
                    }
                }
                self.event(
                    tid,
                    ts_ns,
                    (tgid, fd),
                    s,
                    Op::Connect,
                    Syscall::Connect,
                    0,
                    ret,
                );
            }
            Kind::Accept(syscall) => {
                let listener = sock0(self);
                let r = syntax::ret(no, ret_col, c.ret)?;
                let (Some((_, l)), Ret::Value(fd, ann)) = (listener, r) else {
                    self.skipped += 1;
                    return Ok(());
                };
                if fd < 0 || fd > u32::MAX as i64 {
                    self.skipped += 1;
                    return Ok(());
                }
                let fd = fd as u32;
                let ann = match ann {
                    Some(a) => syntax::tcp(a).map_err(bad_ann)?,
                    None => Some(Ann::Inode(0)),
                };
                let Some(mut s) = self.observe((tgid, fd), ann, true) else {
                    self.skipped += 1;
                    return Ok(());
                };
                if s.inode == Some(0) {
                    s.inode = None;
                }
                s.local = s.local.or(l.local);
                s.remote = s.remote.or(c.args.get(1).and_then(|a| syntax::sockaddr(a)));
                self.socks.insert((tgid, fd), s);
                self.event(tid, ts_ns, (tgid, fd), s, Op::Accept, syscall, 0, fd as i64);
            }
            Kind::Close(syscall) => {
                let Some((fd, s)) = sock0(self) else {
                    // close() of a non-socket fd still ends its old state.
                    if syscall == Syscall::Close {
                        if let Some(fd) = fd0() {
                            self.socks.remove(&(tgid, fd));
                        }
                    }
                    self.skipped += 1;
                    return Ok(());
                };
                if s.remote.is_none() {
                    // A listening (or never connected) socket: no connection.
                    if syscall == Syscall::Close {
                        self.socks.remove(&(tgid, fd));
                    }
                    self.skipped += 1;
                    return Ok(());
                }
                let ret = match syntax::ret(no, ret_col, c.ret)? {
                    Ret::Value(v, _) => v,
                    Ret::Unknown => 0,
                };
                self.event(tid, ts_ns, (tgid, fd), s, Op::Close, syscall, 0, ret);
                if syscall == Syscall::Close {
                    self.socks.remove(&(tgid, fd));
                }
            }
            Kind::Socket => {
                self.skipped += 1;
                if let Ok(Ret::Value(fd, ann)) = syntax::ret(no, ret_col, c.ret) {
                    if (0..=u32::MAX as i64).contains(&fd) {
                        let ann = match ann {
                            Some(a) => syntax::tcp(a).map_err(bad_ann)?,
                            None => None,
                        };
                        self.observe((tgid, fd as u32), ann, true);
                    }
                }
            }
            Kind::Clone | Kind::Fork => {
                self.skipped += 1;
                if let Ok(Ret::Value(child, _)) = syntax::ret(no, ret_col, c.ret) {
                    if child > 0 && child <= u32::MAX as i64 {
                        let child = child as u32;
                        let same = name.starts_with("clone") && text.contains("CLONE_THREAD");
                        let ctgid = if same { tgid } else { child };
                        let comm = self.threads[&tid].comm.clone();
                        if self.learning() {
                            self.children.insert(child);
                        }
                        match self.threads.get_mut(&child) {
                            Some(th) => th.tgid = ctgid,
                            None => {
                                self.threads.insert(
                                    child,
                                    Thread {
                                        tgid: ctgid,
                                        comm,
                                        announced: None,
                                        unfinished: None,
                                        held: None,
                                    },
                                );
                            }
                        }
                    }
                }
            }
            Kind::Execve => {
                self.skipped += 1;
                if let Ok(Ret::Value(0, _)) = syntax::ret(no, ret_col, c.ret) {
                    let path_arg = if name == "execve" { 0 } else { 1 };
                    if let Some(path) = c.args.get(path_arg).and_then(|a| syntax::unquote(a)) {
                        let base = path.rsplit('/').next().unwrap_or(&path);
                        self.set_comm(tid, base);
                    }
                }
            }
            Kind::Prctl => {
                self.skipped += 1;
                if c.args.first() == Some(&"PR_SET_NAME") {
                    if let Ok(Ret::Value(0, _)) = syntax::ret(no, ret_col, c.ret) {
                        if let Some(n) = c.args.get(1).and_then(|a| syntax::unquote(a)) {
                            self.set_comm(tid, &n);
                        }
                    }
                }
            }
            Kind::Other => {
                self.skipped += 1;
                // A returned fd (dup, fcntl F_DUPFD) may be a socket.
                if let Ok(Ret::Value(fd, Some(a))) = syntax::ret(no, ret_col, c.ret) {
                    if (0..=u32::MAX as i64).contains(&fd) {
                        let s = syntax::tcp(a).map_err(bad_ann)?;
                        self.observe((tgid, fd as u32), s, false);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets a thread's comm as the kernel would keep it: 15 bytes at most.
    fn set_comm(&mut self, tid: u32, name: &str) {
        let mut end = name.len().min(15);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(th) = self.threads.get_mut(&tid) {
            th.comm = Some(name[..end].to_string());
        }
    }
}

#[cfg(test)]
mod tests;
