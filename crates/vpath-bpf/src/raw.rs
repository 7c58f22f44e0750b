//! The Rust mirror of `bpf/vpath.h`: ring-buffer record layouts, checked at
//! compile time, and a safe parser from record bytes to [`Record`]s.
//!
//! The parser reads each field at the offset of the mirror struct's field
//! (`offset_of!`), so the layout is written down once in Rust and asserted
//! against the numbers in the C header; `tests` also compiles the header with
//! the Rust offsets when clang is present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use core::mem::{offset_of, size_of};
use std::sync::Arc;
use vpath_core::content::Labeler;
use vpath_core::{flags, Data, Event, Label, Op, Record, Syscall, ThreadInfo};

/// `VP_REC_SOCK`: a [`VpSockEvent`].
pub const REC_SOCK: u8 = 1;
/// `VP_REC_COMM`: a [`VpCommEvent`].
pub const REC_COMM: u8 = 2;
/// `VP_REC_RUN`: a [`VpRunEvent`].
pub const REC_RUN: u8 = 3;
/// `VP_REC_BATCH`: a [`VpBatchHdr`] and socket records (rings only; see
/// [`for_each_in_batch`]).
pub const REC_BATCH: u8 = 4;
/// `VP_BATCH_BYTES`: a batch goes to its ring past this many bytes.
pub const BATCH_BYTES: u32 = 4096;
/// `VP_BATCH_DATA_MAX`: message bytes per record up to which records are
/// batched.
pub const BATCH_DATA_MAX: u32 = 256;
/// The largest batch in a ring: its header, the threshold and one more
/// record (`VP_BATCH_ROOM` in bpf/vpath.bpf.c bounds it at 4096 + 512).
pub const BATCH_MAX: u32 = size_of::<VpBatchHdr>() as u32 + BATCH_BYTES + 512;
/// `VP_AF_INET`.
pub const AF_INET: u8 = 2;
/// `VP_AF_INET6`.
pub const AF_INET6: u8 = 10;
/// `VP_SYSNR_UNKNOWN`.
pub const SYSNR_UNKNOWN: i32 = -1;

/// Indexes of the per-CPU `COUNTERS` map (`VP_CNT_*`).
pub const CNT_SOCK_EMITTED: u32 = 0;
pub const CNT_SOCK_DROPPED: u32 = 1;
pub const CNT_COMM_EMITTED: u32 = 2;
pub const CNT_COMM_DROPPED: u32 = 3;
pub const CNT_RUN_OPS: u32 = 4;
pub const CNT_NO_BYTES: u32 = 5;
pub const CNT_NO_CONTENT: u32 = 6;
pub const CNT_RUNS_OPENED: u32 = 7;
pub const CNT_RUNS_TAKEN: u32 = 8;
pub const CNT_MAX: u32 = 9;
/// `VP_ABI_VERSION`: the records' layout and meaning.
pub const ABI_VERSION: u32 = 6;
/// `VP_F_START`: the kernel proved that the operation begins its message.
pub const F_START: u8 = 16;
/// `VP_F_UNSURE`: the kernel could not place the operation in its message
/// and copied its bytes as if it began one; the reader decides
/// ([`crate::Replay`]).
pub const F_UNSURE: u8 = 32;
/// `VP_DATA_MAX`: the most message bytes one record carries.
pub const DATA_MAX: u32 = 8192;
/// `VP_SEG0_MAX`: the room a record with message bytes reserves beyond
/// `data_cap` (`96 + data_cap + SEG0_MAX` in all).
pub const SEG0_MAX: u32 = 64;

/// `struct vp_sock_event`: one socket operation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpSockEvent {
    pub kind: u8,
    pub op: u8,
    pub flags: u8,
    pub family: u8,
    pub pid: u32,
    pub tid: u32,
    pub netns: u32,
    pub ts_ns: u64,
    pub cgroup: u64,
    pub cookie: u64,
    pub ret: i64,
    pub seq: u32,
    pub sysnr: i32,
    pub lport: u16,
    pub rport: u16,
    /// Message bytes that follow the record in the ring buffer.
    pub data_len: u16,
    /// Their offset in their message.
    pub data_off: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

/// `struct vp_run_event`: consecutive data operations of one thread on one
/// socket, merged in the kernel. `e` is the first operation's record but
/// for `e.kind` ([`REC_RUN`]) and `e.ret` (the bytes of all of them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpRunEvent {
    pub e: VpSockEvent,
    pub ts_last: u64,
    pub count: u32,
    pub first_ret: u32,
}

/// `struct vp_batch_hdr`: the head of a batch of socket records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpBatchHdr {
    pub kind: u8,
    pub _pad0: [u8; 3],
    pub len: u32,
    pub count: u32,
    pub _pad1: u32,
}

const _: () = assert!(size_of::<VpBatchHdr>() == 16);
const _: () = assert!(offset_of!(VpBatchHdr, len) == 4);
const _: () = assert!(offset_of!(VpBatchHdr, count) == 8);

/// `struct vp_comm_event`: a thread's name, once per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpCommEvent {
    pub kind: u8,
    pub _pad0: [u8; 3],
    pub pid: u32,
    pub tid: u32,
    pub _pad1: u32,
    pub ts_ns: u64,
    pub comm: [u8; 16],
}

// Layout of bpf/vpath.h, asserted at compile time.
const _: () = assert!(size_of::<VpSockEvent>() == 96);
const _: () = assert!(offset_of!(VpSockEvent, kind) == 0);
const _: () = assert!(offset_of!(VpSockEvent, op) == 1);
const _: () = assert!(offset_of!(VpSockEvent, flags) == 2);
const _: () = assert!(offset_of!(VpSockEvent, family) == 3);
const _: () = assert!(offset_of!(VpSockEvent, pid) == 4);
const _: () = assert!(offset_of!(VpSockEvent, tid) == 8);
const _: () = assert!(offset_of!(VpSockEvent, netns) == 12);
const _: () = assert!(offset_of!(VpSockEvent, ts_ns) == 16);
const _: () = assert!(offset_of!(VpSockEvent, cgroup) == 24);
const _: () = assert!(offset_of!(VpSockEvent, cookie) == 32);
const _: () = assert!(offset_of!(VpSockEvent, ret) == 40);
const _: () = assert!(offset_of!(VpSockEvent, seq) == 48);
const _: () = assert!(offset_of!(VpSockEvent, sysnr) == 52);
const _: () = assert!(offset_of!(VpSockEvent, lport) == 56);
const _: () = assert!(offset_of!(VpSockEvent, rport) == 58);
const _: () = assert!(offset_of!(VpSockEvent, data_len) == 60);
const _: () = assert!(offset_of!(VpSockEvent, data_off) == 62);
const _: () = assert!(offset_of!(VpSockEvent, laddr) == 64);
const _: () = assert!(offset_of!(VpSockEvent, raddr) == 80);
const _: () = assert!(size_of::<VpRunEvent>() == 112);
const _: () = assert!(offset_of!(VpRunEvent, e) == 0);
const _: () = assert!(offset_of!(VpRunEvent, ts_last) == 96);
const _: () = assert!(offset_of!(VpRunEvent, count) == 104);
const _: () = assert!(offset_of!(VpRunEvent, first_ret) == 108);
const _: () = assert!(size_of::<VpCommEvent>() == 40);
const _: () = assert!(offset_of!(VpCommEvent, kind) == 0);
const _: () = assert!(offset_of!(VpCommEvent, pid) == 4);
const _: () = assert!(offset_of!(VpCommEvent, tid) == 8);
const _: () = assert!(offset_of!(VpCommEvent, ts_ns) == 16);
const _: () = assert!(offset_of!(VpCommEvent, comm) == 24);

/// A ring-buffer record that does not match `bpf/vpath.h`. Offsets are byte
/// offsets within the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    #[error("empty ring-buffer record: expected at least the kind byte at offset 0")]
    Empty,
    #[error("ring {ring} is out of range: rings are numbered below {max} (one per possible CPU)")]
    RingOutOfRange { ring: usize, max: usize },
    #[error("ring-buffer record of kind {kind} is {len} bytes: expected at least {expected}")]
    Truncated {
        kind: u8,
        len: usize,
        expected: usize,
    },
    #[error(
        "ring-buffer record kind {kind} at offset 0: expected 1 (socket event), 2 (comm), 3 (run) or 4 (batch, in rings)"
    )]
    UnknownKind { kind: u8 },
    #[error("run record: {what}")]
    BadRun { what: String },
    #[error("batch: {what}")]
    BadBatch { what: String },
    #[error(
        "socket event op {op} at offset 1: expected 1..=5 (send, recv, connect, accept, close)"
    )]
    UnknownOp { op: u8 },
    #[error("socket event family {family} at offset 3: expected 2 (AF_INET) or 10 (AF_INET6)")]
    UnknownFamily { family: u8 },
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}
fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(arr(b, off))
}
fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(arr(b, off))
}
fn rd_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(arr(b, off))
}

impl VpSockEvent {
    /// Reads the record from ring-buffer bytes (which must hold at least
    /// `size_of::<VpSockEvent>()` bytes).
    pub fn from_bytes(b: &[u8]) -> Result<VpSockEvent, RawError> {
        let kind = *b.first().ok_or(RawError::Empty)?;
        if b.len() < size_of::<VpSockEvent>() {
            return Err(RawError::Truncated {
                kind,
                len: b.len(),
                expected: size_of::<VpSockEvent>(),
            });
        }
        Ok(VpSockEvent {
            kind,
            op: b[offset_of!(VpSockEvent, op)],
            flags: b[offset_of!(VpSockEvent, flags)],
            family: b[offset_of!(VpSockEvent, family)],
            pid: rd_u32(b, offset_of!(VpSockEvent, pid)),
            tid: rd_u32(b, offset_of!(VpSockEvent, tid)),
            netns: rd_u32(b, offset_of!(VpSockEvent, netns)),
            ts_ns: rd_u64(b, offset_of!(VpSockEvent, ts_ns)),
            cgroup: rd_u64(b, offset_of!(VpSockEvent, cgroup)),
            cookie: rd_u64(b, offset_of!(VpSockEvent, cookie)),
            ret: rd_u64(b, offset_of!(VpSockEvent, ret)) as i64,
            seq: rd_u32(b, offset_of!(VpSockEvent, seq)),
            sysnr: rd_u32(b, offset_of!(VpSockEvent, sysnr)) as i32,
            lport: rd_u16(b, offset_of!(VpSockEvent, lport)),
            rport: rd_u16(b, offset_of!(VpSockEvent, rport)),
            data_len: rd_u16(b, offset_of!(VpSockEvent, data_len)),
            data_off: rd_u16(b, offset_of!(VpSockEvent, data_off)),
            laddr: arr(b, offset_of!(VpSockEvent, laddr)),
            raddr: arr(b, offset_of!(VpSockEvent, raddr)),
        })
    }

    /// The bytes the kernel would write for this record (for tests and
    /// replay tools).
    pub fn to_bytes(&self) -> [u8; size_of::<VpSockEvent>()] {
        let mut b = [0u8; size_of::<VpSockEvent>()];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(offset_of!(VpSockEvent, kind), &[self.kind]);
        put(offset_of!(VpSockEvent, op), &[self.op]);
        put(offset_of!(VpSockEvent, flags), &[self.flags]);
        put(offset_of!(VpSockEvent, family), &[self.family]);
        put(offset_of!(VpSockEvent, pid), &self.pid.to_ne_bytes());
        put(offset_of!(VpSockEvent, tid), &self.tid.to_ne_bytes());
        put(offset_of!(VpSockEvent, netns), &self.netns.to_ne_bytes());
        put(offset_of!(VpSockEvent, ts_ns), &self.ts_ns.to_ne_bytes());
        put(offset_of!(VpSockEvent, cgroup), &self.cgroup.to_ne_bytes());
        put(offset_of!(VpSockEvent, cookie), &self.cookie.to_ne_bytes());
        put(offset_of!(VpSockEvent, ret), &self.ret.to_ne_bytes());
        put(offset_of!(VpSockEvent, seq), &self.seq.to_ne_bytes());
        put(offset_of!(VpSockEvent, sysnr), &self.sysnr.to_ne_bytes());
        put(offset_of!(VpSockEvent, lport), &self.lport.to_ne_bytes());
        put(offset_of!(VpSockEvent, rport), &self.rport.to_ne_bytes());
        put(
            offset_of!(VpSockEvent, data_len),
            &self.data_len.to_ne_bytes(),
        );
        put(
            offset_of!(VpSockEvent, data_off),
            &self.data_off.to_ne_bytes(),
        );
        put(offset_of!(VpSockEvent, laddr), &self.laddr);
        put(offset_of!(VpSockEvent, raddr), &self.raddr);
        b
    }

    /// The message bytes that follow the record in `b` (the whole ring
    /// buffer sample), if it carries any.
    pub fn data(&self, b: &[u8]) -> Result<Option<Box<Data>>, RawError> {
        if self.data_len == 0 {
            return Ok(None);
        }
        let start = size_of::<VpSockEvent>();
        let end = start + self.data_len as usize;
        let Some(bytes) = b.get(start..end) else {
            return Err(RawError::Truncated {
                kind: self.kind,
                len: b.len(),
                expected: end,
            });
        };
        Ok(Some(Box::new(Data::Bytes {
            offset: self.data_off as u32,
            bytes: bytes.into(),
        })))
    }

    fn addr(family: u8, a: &[u8; 16], port: u16) -> Result<SocketAddr, RawError> {
        let ip = match family {
            AF_INET => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            AF_INET6 => IpAddr::V6(Ipv6Addr::from(*a)),
            _ => return Err(RawError::UnknownFamily { family }),
        };
        Ok(SocketAddr::new(ip, port))
    }

    /// Converts to the event model. Unknown syscall numbers become
    /// [`Syscall::Unknown`]; unknown flag bits are dropped.
    pub fn to_event(&self) -> Result<Event, RawError> {
        let op = Op::from_u8(self.op).ok_or(RawError::UnknownOp { op: self.op })?;
        Ok(Event {
            ts_ns: self.ts_ns,
            netns: self.netns,
            cgroup: self.cgroup,
            pid: self.pid,
            tid: self.tid,
            sock: self.cookie,
            op,
            syscall: syscall_from_x86_64(self.sysnr),
            flags: self.flags & (flags::PEEK | flags::SEQ),
            ret: self.ret,
            seq: self.seq,
            local: Self::addr(self.family, &self.laddr, self.lport)?,
            remote: Self::addr(self.family, &self.raddr, self.rport)?,
            data: None,
        })
    }
}

impl VpCommEvent {
    pub fn from_bytes(b: &[u8]) -> Result<VpCommEvent, RawError> {
        let kind = *b.first().ok_or(RawError::Empty)?;
        if b.len() < size_of::<VpCommEvent>() {
            return Err(RawError::Truncated {
                kind,
                len: b.len(),
                expected: size_of::<VpCommEvent>(),
            });
        }
        Ok(VpCommEvent {
            kind,
            _pad0: arr(b, offset_of!(VpCommEvent, _pad0)),
            pid: rd_u32(b, offset_of!(VpCommEvent, pid)),
            tid: rd_u32(b, offset_of!(VpCommEvent, tid)),
            _pad1: rd_u32(b, offset_of!(VpCommEvent, _pad1)),
            ts_ns: rd_u64(b, offset_of!(VpCommEvent, ts_ns)),
            comm: arr(b, offset_of!(VpCommEvent, comm)),
        })
    }

    pub fn to_bytes(&self) -> [u8; size_of::<VpCommEvent>()] {
        let mut b = [0u8; size_of::<VpCommEvent>()];
        b[0] = self.kind;
        b[1..4].copy_from_slice(&self._pad0);
        b[4..8].copy_from_slice(&self.pid.to_ne_bytes());
        b[8..12].copy_from_slice(&self.tid.to_ne_bytes());
        b[12..16].copy_from_slice(&self._pad1.to_ne_bytes());
        b[16..24].copy_from_slice(&self.ts_ns.to_ne_bytes());
        b[24..40].copy_from_slice(&self.comm);
        b
    }

    /// The comm up to its first NUL, lossily decoded.
    pub fn comm_str(&self) -> String {
        let end = self
            .comm
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }

    pub fn to_thread(&self) -> ThreadInfo {
        ThreadInfo {
            pid: self.pid,
            tid: self.tid,
            comm: self.comm_str(),
        }
    }
}

impl VpRunEvent {
    pub fn from_bytes(b: &[u8]) -> Result<VpRunEvent, RawError> {
        let kind = *b.first().ok_or(RawError::Empty)?;
        if b.len() < size_of::<VpRunEvent>() {
            return Err(RawError::Truncated {
                kind,
                len: b.len(),
                expected: size_of::<VpRunEvent>(),
            });
        }
        Ok(VpRunEvent {
            e: VpSockEvent::from_bytes(b)?,
            ts_last: rd_u64(b, offset_of!(VpRunEvent, ts_last)),
            count: rd_u32(b, offset_of!(VpRunEvent, count)),
            first_ret: rd_u32(b, offset_of!(VpRunEvent, first_ret)),
        })
    }

    pub fn to_bytes(&self) -> [u8; size_of::<VpRunEvent>()] {
        let mut b = [0u8; size_of::<VpRunEvent>()];
        b[..size_of::<VpSockEvent>()].copy_from_slice(&self.e.to_bytes());
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(offset_of!(VpRunEvent, ts_last), &self.ts_last.to_ne_bytes());
        put(offset_of!(VpRunEvent, count), &self.count.to_ne_bytes());
        put(
            offset_of!(VpRunEvent, first_ret),
            &self.first_ret.to_ne_bytes(),
        );
        b
    }

    /// The run as the events the analyzer would have seen without merging,
    /// up to what merging hides: the first operation exactly, then, when
    /// there were more, one event at the last operation's time for the rest
    /// of the bytes (flagged [`flags::MERGED`] when it stands for several).
    /// The analyzer treats consecutive same-direction operations of a thread
    /// on a socket as one unit, so nothing it uses is lost.
    pub fn to_events(&self) -> Result<(Event, Option<Event>), RawError> {
        let bad = |what: String| Err(RawError::BadRun { what });
        let total = self.e.ret;
        let first = i64::from(self.first_ret);
        if self.count == 0 {
            return bad("count 0 at offset 104: expected at least 1".into());
        }
        if self.e.op != Op::Send as u8 && self.e.op != Op::Recv as u8 {
            return bad(format!(
                "op {} at offset 1: expected 1 (send) or 2 (recv)",
                self.e.op
            ));
        }
        if first <= 0 || total < first || (self.count == 1 && total != first) {
            return bad(format!(
                "{total} bytes in {} operations, the first {first}: expected a first operation of at least 1 byte and a total at least that (equal for one operation)",
                self.count
            ));
        }
        if self.ts_last < self.e.ts_ns {
            return bad(format!(
                "last operation at {} ns before the first at {} ns",
                self.ts_last, self.e.ts_ns
            ));
        }
        let mut a = self.e.to_event()?;
        a.ret = first;
        if self.count == 1 {
            return Ok((a, None));
        }
        let mut b = a.clone();
        b.ts_ns = self.ts_last;
        b.ret = total - first;
        b.seq = self.e.seq.wrapping_add(self.first_ret);
        if self.count > 2 {
            b.flags |= flags::MERGED;
        }
        Ok((a, Some(b)))
    }
}

/// How many records a ring item holds, by its header alone (no parsing):
/// a batch's count, else 1 (0 for an empty item).
pub fn records_in(b: &[u8]) -> u32 {
    match b.first() {
        None => 0,
        Some(&REC_BATCH) if b.len() >= size_of::<VpBatchHdr>() => {
            rd_u32(b, offset_of!(VpBatchHdr, count))
        }
        Some(_) => 1,
    }
}

/// The records of a batch (a ring item of kind [`REC_BATCH`]), each
/// handed to `f` as a record of its own, in order. Returns how many. A
/// batch whose header or records do not add up is an error, and `f` has
/// seen the records before the fault.
pub fn for_each_in_batch(b: &[u8], mut f: impl FnMut(&[u8])) -> Result<u32, RawError> {
    let head = size_of::<VpBatchHdr>();
    let bad = |what: String| RawError::BadBatch { what };
    if b.len() < head {
        return Err(RawError::Truncated {
            kind: REC_BATCH,
            len: b.len(),
            expected: head,
        });
    }
    let len = rd_u32(b, offset_of!(VpBatchHdr, len)) as usize;
    let count = rd_u32(b, offset_of!(VpBatchHdr, count));
    let Some(body) = b.get(head..head + len) else {
        return Err(bad(format!(
            "{len} bytes of records at offset 4, in an item of {} bytes",
            b.len()
        )));
    };
    let mut at = 0;
    let mut n = 0;
    while at < body.len() {
        let rest = &body[at..];
        let one = match rest[0] {
            REC_SOCK if rest.len() >= size_of::<VpSockEvent>() => {
                size_of::<VpSockEvent>() + rd_u16(rest, offset_of!(VpSockEvent, data_len)) as usize
            }
            REC_RUN => size_of::<VpRunEvent>(),
            kind => {
                return Err(bad(format!(
                    "record {n} at offset {}: kind {kind} in {} bytes, expected a socket record (kind {REC_SOCK}, {} bytes or more) or a run (kind {REC_RUN}, {} bytes)",
                    head + at,
                    rest.len(),
                    size_of::<VpSockEvent>(),
                    size_of::<VpRunEvent>()
                )));
            }
        };
        if one > rest.len() {
            return Err(bad(format!(
                "record {n} at offset {}: {one} bytes, {} left",
                head + at,
                rest.len()
            )));
        }
        f(&rest[..one]);
        n += 1;
        at += (one + 7) & !7;
    }
    if n != count {
        return Err(bad(format!(
            "{n} records, the header at offset 8 says {count}"
        )));
    }
    Ok(n)
}

/// Parses one ring-buffer record into the event model: a thread, or one or
/// two socket events (two for a run of several operations).
pub fn parse_record(b: &[u8]) -> Result<Vec<Record>, RawError> {
    let mut v = Vec::with_capacity(2);
    parse_into(b, None, &mut |r| v.push(r))?;
    Ok(v)
}

/// Parses one ring-buffer record and hands its records to `out`. With a
/// `labeler`, message bytes go through it (in ring order, which for one
/// socket is the order of its operations: each is a syscall that ends before
/// the next begins) and only labels are kept, with no copy of the bytes;
/// without, the bytes are kept. Returns the number of socket events.
pub fn parse_into(
    b: &[u8],
    labeler: Option<&mut Labeler>,
    out: &mut impl FnMut(Record),
) -> Result<u32, RawError> {
    let mut scratch = [0u8; size_of::<VpSockEvent>()];
    if b.first() == Some(&REC_BATCH) {
        let mut labeler = labeler;
        let mut n = 0;
        let mut first_err = None;
        for_each_in_batch(b, |one| {
            if first_err.is_some() {
                return;
            }
            let r = take_record(one, labeler.as_deref_mut(), &mut scratch)
                .and_then(|(kept, label)| parse_kept(kept, label, out));
            match r {
                Ok(k) => n += k,
                Err(e) => first_err = Some(e),
            }
        })?;
        return first_err.map_or(Ok(n), Err);
    }
    let (kept, label) = take_record(b, labeler, &mut scratch)?;
    parse_kept(kept, label, out)
}

/// What a reader keeps of one ring-buffer record `b`: the record's own
/// bytes (a ring item may be longer: a record with message bytes reserves
/// room for the most it could carry) and, with a `labeler`, the record
/// without its message bytes (copied into `scratch`, `data_len` 0) and the
/// label the labeler made of them. A raw log stores exactly this; feed it
/// to [`parse_kept`] (or [`crate::Replay`]).
pub fn take_record<'a>(
    b: &'a [u8],
    labeler: Option<&mut Labeler>,
    scratch: &'a mut [u8; size_of::<VpSockEvent>()],
) -> Result<(&'a [u8], Option<Arc<Label>>), RawError> {
    let kind = *b.first().ok_or(RawError::Empty)?;
    let len = match kind {
        REC_SOCK => {
            // Only the fields needed here: the record is parsed once, by
            // `parse_kept`, if at all (a raw log stores it as it is).
            if b.len() < size_of::<VpSockEvent>() {
                return Err(RawError::Truncated {
                    kind,
                    len: b.len(),
                    expected: size_of::<VpSockEvent>(),
                });
            }
            let data_len = rd_u16(b, offset_of!(VpSockEvent, data_len));
            let len = size_of::<VpSockEvent>() + data_len as usize;
            if b.len() < len {
                return Err(RawError::Truncated {
                    kind,
                    len: b.len(),
                    expected: len,
                });
            }
            if let Some(labeler) = labeler {
                let raw_op = b[offset_of!(VpSockEvent, op)];
                let op = Op::from_u8(raw_op).ok_or(RawError::UnknownOp { op: raw_op })?;
                let cookie = rd_u64(b, offset_of!(VpSockEvent, cookie));
                if op == Op::Close {
                    labeler.forget(cookie);
                } else if data_len > 0 {
                    let label = labeler.label(
                        cookie,
                        op,
                        u32::from(rd_u16(b, offset_of!(VpSockEvent, data_off))),
                        &b[size_of::<VpSockEvent>()..len],
                    );
                    scratch.copy_from_slice(&b[..size_of::<VpSockEvent>()]);
                    let at = offset_of!(VpSockEvent, data_len);
                    scratch[at..at + 2].copy_from_slice(&0u16.to_ne_bytes());
                    return Ok((&scratch[..], label));
                }
            }
            len
        }
        REC_RUN => size_of::<VpRunEvent>(),
        REC_COMM => size_of::<VpCommEvent>(),
        kind => return Err(RawError::UnknownKind { kind }),
    };
    match b.get(..len) {
        Some(kept) => Ok((kept, None)),
        None => Err(RawError::Truncated {
            kind,
            len: b.len(),
            expected: len,
        }),
    }
}

/// Parses a record as [`take_record`] kept it, with the label made of its
/// message bytes, and hands its records to `out`: a thread, or one or two
/// socket events (two for a run of several operations). Returns the number
/// of socket events.
pub fn parse_kept(
    b: &[u8],
    label: Option<Arc<Label>>,
    out: &mut impl FnMut(Record),
) -> Result<u32, RawError> {
    match b.first() {
        None => Err(RawError::Empty),
        Some(&REC_SOCK) => {
            let raw = VpSockEvent::from_bytes(b)?;
            let mut e = raw.to_event()?;
            e.data = match label {
                Some(l) => Some(Box::new(Data::Label(l))),
                None => raw.data(b)?,
            };
            out(Record::Event(e));
            Ok(1)
        }
        Some(&REC_RUN) => {
            let (a, rest) = VpRunEvent::from_bytes(b)?.to_events()?;
            out(Record::Event(a));
            Ok(match rest {
                Some(r) => {
                    out(Record::Event(r));
                    2
                }
                None => 1,
            })
        }
        Some(&REC_COMM) => {
            out(Record::Thread(VpCommEvent::from_bytes(b)?.to_thread()));
            Ok(0)
        }
        Some(&kind) => Err(RawError::UnknownKind { kind }),
    }
}

/// Translates an x86_64 syscall number (`orig_ax`) into [`Syscall`].
pub fn syscall_from_x86_64(nr: i32) -> Syscall {
    match nr {
        0 => Syscall::Read,
        1 => Syscall::Write,
        3 => Syscall::Close,
        19 => Syscall::Readv,
        20 => Syscall::Writev,
        40 => Syscall::Sendfile,
        42 => Syscall::Connect,
        43 => Syscall::Accept,
        44 => Syscall::Sendto,
        45 => Syscall::Recvfrom,
        46 => Syscall::Sendmsg,
        47 => Syscall::Recvmsg,
        48 => Syscall::Shutdown,
        275 => Syscall::Splice,
        288 => Syscall::Accept4,
        295 | 327 => Syscall::Preadv,
        296 | 328 => Syscall::Pwritev,
        299 => Syscall::Recvmmsg,
        307 => Syscall::Sendmmsg,
        _ => Syscall::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_v4() -> VpSockEvent {
        VpSockEvent {
            kind: REC_SOCK,
            op: 1,
            flags: flags::SEQ,
            family: AF_INET,
            pid: 100,
            tid: 101,
            netns: 4026531840,
            ts_ns: 123_456_789,
            cgroup: 77,
            cookie: 0xdead_beef,
            ret: 42,
            seq: 0xffff_fff0,
            sysnr: 44,
            lport: 40000,
            rport: 8080,
            data_len: 0,
            data_off: 0,
            laddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            raddr: [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn sock_event_round_trips_and_converts() {
        let raw = sample_v4();
        let bytes = raw.to_bytes();
        assert_eq!(VpSockEvent::from_bytes(&bytes), Ok(raw));
        let Record::Event(e) = parse_record(&bytes).unwrap().remove(0) else {
            panic!("not an event")
        };
        assert_eq!(e.op, Op::Send);
        assert_eq!(e.syscall, Syscall::Sendto);
        assert_eq!(e.pid, 100);
        assert_eq!(e.tid, 101);
        assert_eq!(e.sock, 0xdead_beef);
        assert_eq!(e.ret, 42);
        assert_eq!(e.seq, 0xffff_fff0);
        assert!(e.has_seq());
        assert_eq!(e.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(e.remote, "10.1.2.3:8080".parse().unwrap());
        assert_eq!(e.netns, 4026531840);
        assert_eq!(e.cgroup, 77);
    }

    #[test]
    fn field_offsets_are_where_the_header_says() {
        // Poke distinct bytes at the C header's offsets and read them back.
        let mut b = [0u8; 96];
        b[0] = REC_SOCK;
        b[1] = 2; // op recv
        b[2] = flags::PEEK | flags::SEQ | 0x80; // unknown bit dropped
        b[3] = AF_INET6;
        b[4..8].copy_from_slice(&7u32.to_ne_bytes());
        b[8..12].copy_from_slice(&8u32.to_ne_bytes());
        b[40..48].copy_from_slice(&(-11i64).to_ne_bytes());
        b[48..52].copy_from_slice(&99u32.to_ne_bytes());
        b[52..56].copy_from_slice(&(-1i32).to_ne_bytes());
        b[56..58].copy_from_slice(&1u16.to_ne_bytes());
        b[58..60].copy_from_slice(&2u16.to_ne_bytes());
        b[64..80].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b[80..96].copy_from_slice(&"fd00::5".parse::<Ipv6Addr>().unwrap().octets());
        let Record::Event(e) = parse_record(&b).unwrap().remove(0) else {
            panic!("not an event")
        };
        assert_eq!((e.pid, e.tid, e.ret, e.seq), (7, 8, -11, 99));
        assert_eq!(e.op, Op::Recv);
        assert_eq!(e.flags, flags::PEEK | flags::SEQ);
        assert_eq!(e.syscall, Syscall::Unknown);
        assert_eq!(e.local, "[::1]:1".parse().unwrap());
        assert_eq!(e.remote, "[fd00::5]:2".parse().unwrap());
        assert_eq!(e.moved(), 0);
    }

    #[test]
    fn comm_record_converts() {
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"worker");
        let raw = VpCommEvent {
            kind: REC_COMM,
            pid: 5,
            tid: 6,
            ts_ns: 9,
            comm,
            ..Default::default()
        };
        let bytes = raw.to_bytes();
        assert_eq!(VpCommEvent::from_bytes(&bytes), Ok(raw));
        assert_eq!(
            parse_record(&bytes),
            Ok(vec![Record::Thread(ThreadInfo {
                pid: 5,
                tid: 6,
                comm: "worker".into()
            })])
        );
        // A full 16-byte comm without NUL is kept whole.
        let full = VpCommEvent {
            comm: *b"abcdefghijklmnop",
            ..raw
        };
        assert_eq!(full.comm_str(), "abcdefghijklmnop");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(parse_record(&[]), Err(RawError::Empty));
        assert_eq!(
            parse_record(&[9, 0, 0]),
            Err(RawError::UnknownKind { kind: 9 })
        );
        let short = &sample_v4().to_bytes()[..95];
        assert_eq!(
            parse_record(short),
            Err(RawError::Truncated {
                kind: REC_SOCK,
                len: 95,
                expected: 96
            })
        );
        assert!(matches!(
            parse_record(&[REC_COMM; 39]),
            Err(RawError::Truncated { expected: 40, .. })
        ));
        let mut bad_op = sample_v4();
        bad_op.op = 9;
        assert_eq!(
            parse_record(&bad_op.to_bytes()),
            Err(RawError::UnknownOp { op: 9 })
        );
        let mut bad_fam = sample_v4();
        bad_fam.family = 1;
        assert_eq!(
            parse_record(&bad_fam.to_bytes()),
            Err(RawError::UnknownFamily { family: 1 })
        );
        // Every prefix of a valid record parses or errors, never panics.
        let full = sample_v4().to_bytes();
        for n in 0..full.len() {
            assert!(parse_record(&full[..n]).is_err());
        }
    }

    fn sample_run(count: u32, first: u32, total: i64) -> VpRunEvent {
        VpRunEvent {
            e: VpSockEvent {
                kind: REC_RUN,
                op: Op::Recv as u8,
                ret: total,
                ..sample_v4()
            },
            ts_last: sample_v4().ts_ns + 5000,
            count,
            first_ret: first,
        }
    }

    fn events(b: &[u8]) -> Vec<Event> {
        parse_record(b)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Record::Event(e) => e,
                r => panic!("not an event: {r:?}"),
            })
            .collect()
    }

    #[test]
    fn run_record_becomes_its_first_operation_and_the_rest() {
        let run = sample_run(5, 100, 1000);
        let bytes = run.to_bytes();
        assert_eq!(bytes.len(), 112);
        assert_eq!(VpRunEvent::from_bytes(&bytes), Ok(run));
        let ev = events(&bytes);
        assert_eq!(ev.len(), 2);
        let (a, b) = (&ev[0], &ev[1]);
        assert_eq!((a.ts_ns, a.ret, a.seq), (123_456_789, 100, 0xffff_fff0));
        // The rest starts where the first ended (wrapping the stream
        // position) and carries the last operation's time.
        assert_eq!((b.ts_ns, b.ret, b.seq), (123_461_789, 900, 0x54));
        assert_eq!(
            (a.op, b.op, a.sock, b.sock),
            (Op::Recv, Op::Recv, 0xdead_beef, 0xdead_beef)
        );
        assert_eq!(a.flags, flags::SEQ);
        assert_eq!(b.flags, flags::SEQ | flags::MERGED);
        assert_eq!((b.local, b.remote), (a.local, a.remote));
        // Two operations: the second is exactly one operation, not merged.
        let two = events(&sample_run(2, 100, 150).to_bytes());
        assert_eq!(two[1].flags, flags::SEQ);
        assert_eq!(two[1].ret, 50);
        // One operation: one event, the operation itself.
        let one = events(&sample_run(1, 70, 70).to_bytes());
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].ret, one[0].ts_ns), (70, 123_456_789));
    }

    /// A batch as the probes lay it out: header, then records padded to 8.
    fn batch(records: &[Vec<u8>], count: u32) -> Vec<u8> {
        let mut body = Vec::new();
        for r in records {
            body.extend_from_slice(r);
            body.resize((body.len() + 7) & !7, 0xee);
        }
        let mut b = vec![REC_BATCH, 0, 0, 0];
        b.extend_from_slice(&(body.len() as u32).to_ne_bytes());
        b.extend_from_slice(&count.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&body);
        b
    }

    #[test]
    fn batches_split_into_their_records() {
        let a = sample_v4().to_bytes().to_vec();
        let mut with_data = sample_v4();
        with_data.data_len = 5;
        with_data.ts_ns += 1;
        let mut c = with_data.to_bytes().to_vec();
        c.extend_from_slice(b"GET /");
        // Runs go into batches too (112 bytes: no padding).
        let run = sample_run(3, 10, 20).to_bytes().to_vec();
        let b = batch(&[a.clone(), c.clone(), run.clone(), a.clone()], 4);
        let mut got = Vec::new();
        assert_eq!(for_each_in_batch(&b, |r| got.push(r.to_vec())), Ok(4));
        assert_eq!(records_in(&b), 4);
        assert_eq!(records_in(&a), 1);
        assert_eq!(got, vec![a.clone(), c.clone(), run.clone(), a.clone()]);
        // parse_record reads a batch as its records (a run of several
        // operations as two events).
        let recs = parse_record(&b).unwrap();
        assert_eq!(recs.len(), 5);
        let Record::Event(e) = &recs[1] else {
            panic!("not an event")
        };
        assert!(
            matches!(e.data.as_deref(), Some(Data::Bytes { bytes, .. }) if &bytes[..] == b"GET /")
        );

        // What does not add up is an error naming where, after the records
        // before the fault.
        let wrong_count = batch(&[a.clone()], 2);
        assert!(matches!(
            for_each_in_batch(&wrong_count, |_| {}),
            Err(RawError::BadBatch { what }) if what.contains("header at offset 8 says 2")
        ));
        let mut cut = batch(&[a.clone(), c.clone()], 2);
        cut.truncate(cut.len() - 8);
        let mut seen = 0;
        assert!(matches!(
            for_each_in_batch(&cut, |_| seen += 1),
            Err(RawError::BadBatch { .. })
        ));
        assert_eq!(seen, 0, "the header's length no longer fits the item");
        let mut cut_run = batch(&[a.clone(), run.clone()], 2);
        cut_run.truncate(cut_run.len() - 8);
        let at = offset_of!(VpBatchHdr, len);
        let len = (cut_run.len() - size_of::<VpBatchHdr>()) as u32;
        cut_run[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        // A bad record after a good one: the good one was handed out, the
        // error names the bad one.
        let bad_second = |b: &[u8], why: &str| {
            let mut seen = 0;
            let r = for_each_in_batch(b, |_| seen += 1);
            assert!(
                matches!(&r, Err(RawError::BadBatch { what }) if what.contains(why)),
                "{r:?}"
            );
            assert_eq!(seen, 1);
        };
        bad_second(&cut_run, "record 1 at offset 112: 112 bytes, 104 left");
        let mut comm_inside = batch(&[a.clone(), a.clone()], 2);
        comm_inside[16 + 96] = REC_COMM;
        bad_second(&comm_inside, "record 1 at offset 112");
        assert!(matches!(
            for_each_in_batch(&[REC_BATCH, 0, 0], |_| {}),
            Err(RawError::Truncated {
                kind: REC_BATCH,
                ..
            })
        ));
    }

    #[test]
    fn bad_run_records_are_errors() {
        for run in [
            sample_run(0, 10, 10),
            sample_run(1, 10, 20),
            sample_run(3, 0, 20),
            sample_run(3, 30, 20),
            VpRunEvent {
                ts_last: 1,
                ..sample_run(2, 10, 20)
            },
            VpRunEvent {
                e: VpSockEvent {
                    op: Op::Close as u8,
                    ..sample_run(2, 10, 20).e
                },
                ..sample_run(2, 10, 20)
            },
        ] {
            let r = parse_record(&run.to_bytes());
            assert!(matches!(r, Err(RawError::BadRun { .. })), "{run:?}: {r:?}");
        }
        let full = sample_run(3, 10, 30).to_bytes();
        for n in 0..full.len() {
            assert!(parse_record(&full[..n]).is_err());
        }
    }

    #[test]
    fn syscall_numbers_translate() {
        assert_eq!(syscall_from_x86_64(0), Syscall::Read);
        assert_eq!(syscall_from_x86_64(1), Syscall::Write);
        assert_eq!(syscall_from_x86_64(20), Syscall::Writev);
        assert_eq!(syscall_from_x86_64(40), Syscall::Sendfile);
        assert_eq!(syscall_from_x86_64(46), Syscall::Sendmsg);
        assert_eq!(syscall_from_x86_64(288), Syscall::Accept4);
        assert_eq!(syscall_from_x86_64(SYSNR_UNKNOWN), Syscall::Unknown);
        assert_eq!(syscall_from_x86_64(231), Syscall::Unknown);
    }

    /// Compiles bpf/vpath.h with the Rust offsets as C static assertions,
    /// so the header and this mirror cannot drift apart silently.
    #[test]
    fn c_header_agrees_with_rust_offsets() {
        let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
        if std::process::Command::new(&clang)
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping c_header_agrees_with_rust_offsets: {clang} not found");
            return;
        }
        let header = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/vpath.h");
        let mut c = format!("#include \"{header}\"\n");
        macro_rules! chk {
            ($ty:ident, $cty:literal, $($f:ident),*) => {
                c += &format!(
                    "_Static_assert(sizeof(struct {}) == {}, \"size\");\n",
                    $cty,
                    size_of::<$ty>()
                );
                $(c += &format!(
                    "_Static_assert(__builtin_offsetof(struct {}, {}) == {}, \"{}\");\n",
                    $cty,
                    stringify!($f),
                    offset_of!($ty, $f),
                    stringify!($f)
                );)*
            };
        }
        chk!(
            VpSockEvent,
            "vp_sock_event",
            kind,
            op,
            flags,
            family,
            pid,
            tid,
            netns,
            ts_ns,
            cgroup,
            cookie,
            ret,
            seq,
            sysnr,
            lport,
            rport,
            data_len,
            data_off,
            laddr,
            raddr
        );
        chk!(
            VpCommEvent,
            "vp_comm_event",
            kind,
            _pad0,
            pid,
            tid,
            _pad1,
            ts_ns,
            comm
        );
        chk!(VpRunEvent, "vp_run_event", e, ts_last, count, first_ret);
        chk!(VpBatchHdr, "vp_batch_hdr", kind, _pad0, len, count, _pad1);
        for (name, v) in [
            ("VP_REC_SOCK", REC_SOCK as i64),
            ("VP_REC_RUN", REC_RUN as i64),
            ("VP_REC_BATCH", REC_BATCH as i64),
            ("VP_BATCH_BYTES", BATCH_BYTES as i64),
            ("VP_BATCH_DATA_MAX", BATCH_DATA_MAX as i64),
            ("VP_CNT_RUN_OPS", CNT_RUN_OPS as i64),
            ("VP_CNT_NO_BYTES", CNT_NO_BYTES as i64),
            ("VP_CNT_NO_CONTENT", CNT_NO_CONTENT as i64),
            ("VP_CNT_RUNS_OPENED", CNT_RUNS_OPENED as i64),
            ("VP_CNT_RUNS_TAKEN", CNT_RUNS_TAKEN as i64),
            ("VP_ABI_VERSION", ABI_VERSION as i64),
            ("VP_REC_COMM", REC_COMM as i64),
            ("VP_AF_INET", AF_INET as i64),
            ("VP_AF_INET6", AF_INET6 as i64),
            ("VP_SYSNR_UNKNOWN", SYSNR_UNKNOWN as i64),
            ("VP_DATA_MAX", DATA_MAX as i64),
            ("VP_SEG0_MAX", SEG0_MAX as i64),
            ("VP_CNT_SOCK_EMITTED", CNT_SOCK_EMITTED as i64),
            ("VP_CNT_SOCK_DROPPED", CNT_SOCK_DROPPED as i64),
            ("VP_CNT_COMM_EMITTED", CNT_COMM_EMITTED as i64),
            ("VP_CNT_COMM_DROPPED", CNT_COMM_DROPPED as i64),
            ("VP_CNT_MAX", CNT_MAX as i64),
            ("VP_OP_SEND", Op::Send as i64),
            ("VP_OP_RECV", Op::Recv as i64),
            ("VP_OP_CONNECT", Op::Connect as i64),
            ("VP_OP_ACCEPT", Op::Accept as i64),
            ("VP_OP_CLOSE", Op::Close as i64),
            ("VP_F_PEEK", flags::PEEK as i64),
            ("VP_F_SEQ", flags::SEQ as i64),
            ("VP_F_START", F_START as i64),
            ("VP_F_UNSURE", F_UNSURE as i64),
        ] {
            c += &format!("_Static_assert({name} == {v}, \"{name}\");\n");
        }
        let dir = std::env::temp_dir().join(format!("vpath-bpf-hdr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("check.c");
        std::fs::write(&src, c).unwrap();
        let out = std::process::Command::new(&clang)
            .args(["-target", "bpf", "-fsyntax-only"])
            .arg(&src)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "bpf/vpath.h disagrees with raw.rs:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
