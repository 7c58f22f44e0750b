//! The event model: what every source (live ring buffer, binary log, importers)
//! produces and what the analyzer consumes.
//!
//! One [`Event`] per socket operation. Thread metadata (comm) travels once per
//! thread as a [`ThreadInfo`] record rather than on every event, and loss is
//! reported by [`Checkpoint`] records. Each stream of records belongs to one
//! host; the host is not repeated in every event.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// What a socket operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Op {
    Send = 1,
    Recv = 2,
    Connect = 3,
    Accept = 4,
    Close = 5,
}

impl Op {
    pub fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Send,
            2 => Op::Recv,
            3 => Op::Connect,
            4 => Op::Accept,
            5 => Op::Close,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Connect => "connect",
            Op::Accept => "accept",
            Op::Close => "close",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The system call that performed the operation. `Unknown` when the source
/// could not tell (for example a state change that ran in softirq context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Syscall {
    Unknown = 0,
    Read = 1,
    Write = 2,
    Readv = 3,
    Writev = 4,
    Recvfrom = 5,
    Sendto = 6,
    Recvmsg = 7,
    Sendmsg = 8,
    Recvmmsg = 9,
    Sendmmsg = 10,
    Sendfile = 11,
    Splice = 12,
    Connect = 13,
    Accept = 14,
    Accept4 = 15,
    Close = 16,
    Shutdown = 17,
    Preadv = 18,
    Pwritev = 19,
}

impl Syscall {
    pub const ALL: [Syscall; 20] = [
        Syscall::Unknown,
        Syscall::Read,
        Syscall::Write,
        Syscall::Readv,
        Syscall::Writev,
        Syscall::Recvfrom,
        Syscall::Sendto,
        Syscall::Recvmsg,
        Syscall::Sendmsg,
        Syscall::Recvmmsg,
        Syscall::Sendmmsg,
        Syscall::Sendfile,
        Syscall::Splice,
        Syscall::Connect,
        Syscall::Accept,
        Syscall::Accept4,
        Syscall::Close,
        Syscall::Shutdown,
        Syscall::Preadv,
        Syscall::Pwritev,
    ];

    pub fn from_u8(v: u8) -> Option<Syscall> {
        Syscall::ALL.get(v as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Syscall::Unknown => "?",
            Syscall::Read => "read",
            Syscall::Write => "write",
            Syscall::Readv => "readv",
            Syscall::Writev => "writev",
            Syscall::Recvfrom => "recvfrom",
            Syscall::Sendto => "sendto",
            Syscall::Recvmsg => "recvmsg",
            Syscall::Sendmsg => "sendmsg",
            Syscall::Recvmmsg => "recvmmsg",
            Syscall::Sendmmsg => "sendmmsg",
            Syscall::Sendfile => "sendfile",
            Syscall::Splice => "splice",
            Syscall::Connect => "connect",
            Syscall::Accept => "accept",
            Syscall::Accept4 => "accept4",
            Syscall::Close => "close",
            Syscall::Shutdown => "shutdown",
            Syscall::Preadv => "preadv",
            Syscall::Pwritev => "pwritev",
        }
    }

    /// Parses the names that [`Syscall::name`] prints (and `recv`/`send`,
    /// which libc implements with recvfrom/sendto).
    pub fn from_name(s: &str) -> Option<Syscall> {
        Some(match s {
            "recv" => Syscall::Recvfrom,
            "send" => Syscall::Sendto,
            "pread64" | "pwrite64" => return None,
            "preadv2" => Syscall::Preadv,
            "pwritev2" => Syscall::Pwritev,
            "sendfile64" => Syscall::Sendfile,
            _ => {
                return Syscall::ALL
                    .iter()
                    .copied()
                    .find(|c| c.name() == s && *c != Syscall::Unknown)
            }
        })
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bit flags on an [`Event`].
pub mod flags {
    /// The receive used `MSG_PEEK`: it returned bytes but consumed none.
    pub const PEEK: u8 = 1;
    /// [`super::Event::seq`] holds the TCP stream position of the first byte.
    pub const SEQ: u8 = 2;
    /// The source does not know how many bytes moved (`ret` is meaningless).
    /// The seed's Xen log is such a source.
    pub const NO_BYTES: u8 = 4;
    /// The event stands for several consecutive operations of its thread on
    /// its socket in one direction (the recorder merged them in the kernel:
    /// a run); `ret` is their total and `ts_ns` the last one's time.
    pub const MERGED: u8 = 8;
    pub const ALL: u8 = PEEK | SEQ | NO_BYTES | MERGED;
}

/// One socket operation by one thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (the clock of `bpf_ktime_get_ns`) for
    /// recorded logs; wall-clock nanoseconds since the Unix epoch for
    /// importers of wall-clock formats (strace).
    pub ts_ns: u64,
    /// Network-namespace inode: the "domain", as the paper's VMs were.
    pub netns: u32,
    /// cgroup v2 id, 0 where unknown.
    pub cgroup: u64,
    /// Host pid namespace process id (tgid).
    pub pid: u32,
    /// Host pid namespace thread id.
    pub tid: u32,
    /// A stable id of the socket for its lifetime on this host (the kernel's
    /// socket cookie for recorded logs).
    pub sock: u64,
    pub op: Op,
    pub syscall: Syscall,
    /// See [`flags`].
    pub flags: u8,
    /// The syscall's return value: bytes moved, 0 for EOF, negative errno.
    pub ret: i64,
    /// TCP stream position of the first byte moved (sender's `write_seq`,
    /// receiver's `copied_seq`): the same number on both ends for the same
    /// byte. Valid only with [`flags::SEQ`].
    pub seq: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// What the source saw of the application bytes this operation moved,
    /// when it looked (see [`Data`]); `None` for most events.
    pub data: Option<Box<Data>>,
}

/// What a source knows of the bytes that an operation moved, taken from the
/// start of its message (consecutive data operations in one direction on
/// one socket). Sources give at most the first few KiB of each message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// The bytes of this operation that lie at `offset ..` of its message
    /// (payload capture, which the user opted into).
    Bytes { offset: u32, bytes: Box<[u8]> },
    /// The protocol recognized in the first bytes of this operation's
    /// message, with no bytes kept (what the recorder keeps by default).
    /// Shared: the recorder hands out one reading for every message that
    /// starts with the same bytes.
    Label(std::sync::Arc<Label>),
}

/// An application-protocol reading of a message's first bytes: the span
/// name and attributes it gives (see the `vpath-proto` crate).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Label {
    /// `http`, `fastcgi`, `mysql`, `postgresql`, `memcached`, `redis`.
    /// (Borrowed when the recorder made the label: no allocation per event.)
    pub protocol: Cow<'static, str>,
    /// For requests: the span name (`GET /index.php`, `SELECT`); may be
    /// empty for replies.
    pub name: String,
    /// OpenTelemetry-style attributes, sorted by key. Keys are borrowed
    /// when the recorder made the label, owned when read from a log.
    pub attrs: Vec<(Cow<'static, str>, String)>,
    /// A reading of a reply (status, error), not of a request.
    pub reply: bool,
}

impl Event {
    pub fn has_seq(&self) -> bool {
        self.flags & flags::SEQ != 0
    }
    pub fn is_peek(&self) -> bool {
        self.flags & flags::PEEK != 0
    }
    pub fn bytes_known(&self) -> bool {
        self.flags & flags::NO_BYTES == 0
    }
    /// Bytes this event moved through the stream (0 for errors, EOF and peeks).
    pub fn moved(&self) -> u64 {
        if self.is_peek() || self.ret <= 0 {
            0
        } else {
            self.ret as u64
        }
    }
    /// Whether the event moved data (a send or receive that consumed bytes).
    /// Sources that do not know byte counts still report data operations.
    pub fn is_data(&self) -> bool {
        matches!(self.op, Op::Send | Op::Recv)
            && !self.is_peek()
            && (self.ret > 0 || !self.bytes_known())
    }
}

/// Thread metadata, sent once per thread (and again when it changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

/// A loss checkpoint: every event of this host with `ts_ns <= ts_ns` was
/// either delivered before this record or is counted in `lost_total`.
/// `lost_total` is cumulative since the start of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub ts_ns: u64,
    pub lost_total: u64,
}

/// One item of a host's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Event(Event),
    Thread(ThreadInfo),
    Checkpoint(Checkpoint),
}

/// Formats an endpoint as the JSONL contract wants: `ip:port`, `[v6]:port`,
/// IPv4-mapped IPv6 addresses as IPv4.
pub fn fmt_endpoint(a: &SocketAddr) -> String {
    match canonical(a) {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4 so that both ends of a dual-stack
/// connection compare equal.
pub fn canonical(a: &SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => *a,
        },
        _ => *a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names_round_trip() {
        for s in Syscall::ALL {
            if s != Syscall::Unknown {
                assert_eq!(Syscall::from_name(s.name()), Some(s));
            }
            assert_eq!(Syscall::from_u8(s as u8), Some(s));
        }
        assert_eq!(Syscall::from_u8(200), None);
    }

    #[test]
    fn endpoints_format_like_the_contract() {
        let v4: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:443".parse().unwrap();
        assert_eq!(fmt_endpoint(&v4), "10.0.0.1:80");
        assert_eq!(fmt_endpoint(&mapped), "10.0.0.1:80");
        assert_eq!(fmt_endpoint(&v6), "[fd00::1]:443");
    }

    #[test]
    fn moved_bytes_ignore_errors_eof_and_peek() {
        let mut e = Event {
            ts_ns: 1,
            netns: 1,
            cgroup: 0,
            pid: 1,
            tid: 1,
            sock: 1,
            op: Op::Recv,
            syscall: Syscall::Read,
            flags: 0,
            ret: 10,
            seq: 0,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            data: None,
        };
        assert_eq!(e.moved(), 10);
        e.ret = -11;
        assert_eq!(e.moved(), 0);
        assert!(!e.is_data());
        e.ret = 10;
        e.flags = flags::PEEK;
        assert_eq!(e.moved(), 0);
        assert!(!e.is_data());
    }
}
