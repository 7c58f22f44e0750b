//! vApp's wire protocol: a 40-byte header and an opaque payload.
//!
//! ```text
//! offset size field
//!      0    4 magic     0x56504431 ("VPD1"), little-endian like every field
//!      4    4 kind      1 = request, 2 = reply
//!      8    8 len       payload bytes that follow the header
//!     16    8 reply_len payload bytes the caller wants in the reply (0 in replies)
//!     24    8 id        request id (unique per message exchange)
//!     32    8 parent    id of the request the caller was serving (0 for origins)
//! ```
//!
//! vpath never reads these bytes; only the tiers and the scorer (through the
//! tiers' ground-truth logs) know the ids.
//!
//! Messages are written in several pieces (`write` and `writev` of varying
//! sizes) and read with varying buffer sizes ([`OutMsg`], [`InMsg`]). Both are
//! step-wise state machines, so the same code serves blocking threads and the
//! non-blocking event loop.

use std::io;
use std::os::fd::RawFd;

pub const MAGIC: u32 = 0x5650_4431;
pub const HEADER_LEN: usize = 40;
/// Largest payload accepted: bad input must not make a tier allocate or wait
/// for gigabytes.
pub const MAX_PAYLOAD: u64 = 16 << 20;
pub const KIND_REQUEST: u32 = 1;
pub const KIND_REPLY: u32 = 2;

/// Payload bytes are never looked at; they all come from this pattern.
const PATTERN_LEN: usize = 1 << 19;
static PATTERN: [u8; PATTERN_LEN] = [0x5a; PATTERN_LEN];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub len: u64,
    pub reply_len: u64,
    pub id: u64,
    pub parent: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("bad header at stream byte {offset}: magic {got:#010x}, expected {MAGIC:#010x}")]
    BadMagic { offset: u64, got: u32 },
    #[error("bad header at stream byte {offset}: kind {got}, expected 1 (request) or 2 (reply)")]
    BadKind { offset: u64, got: u32 },
    #[error("bad header at stream byte {offset}: payload length {len} exceeds {MAX_PAYLOAD}")]
    TooLong { offset: u64, len: u64 },
    #[error("connection closed {have} bytes into a {want}-byte message")]
    Truncated { have: u64, want: u64 },
    #[error("socket error")]
    Io(#[from] io::Error),
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.kind.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.reply_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.id.to_le_bytes());
        b[32..40].copy_from_slice(&self.parent.to_le_bytes());
        b
    }

    /// Decodes a header found at stream byte `offset` (for error messages).
    pub fn decode(b: &[u8; HEADER_LEN], offset: u64) -> Result<Header, ProtoError> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(ProtoError::BadMagic { offset, got: magic });
        }
        let kind = u32_at(4);
        if kind != KIND_REQUEST && kind != KIND_REPLY {
            return Err(ProtoError::BadKind { offset, got: kind });
        }
        let len = u64_at(8);
        let reply_len = u64_at(16);
        if len > MAX_PAYLOAD {
            return Err(ProtoError::TooLong { offset, len });
        }
        if reply_len > MAX_PAYLOAD {
            return Err(ProtoError::TooLong {
                offset: offset + 16,
                len: reply_len,
            });
        }
        Ok(Header {
            kind,
            len,
            reply_len,
            id: u64_at(24),
            parent: u64_at(32),
        })
    }

    /// Header plus payload.
    pub fn wire_len(&self) -> u64 {
        HEADER_LEN as u64 + self.len
    }
}

/// SplitMix64: small, seedable, good enough for choosing sizes and plans.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// True with probability `pct`/100.
    pub fn chance(&mut self, pct: u8) -> bool {
        self.next_u64() % 100 < pct as u64
    }
}

/// The SplitMix64 finalizer, also used to derive per-request decisions from ids.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A message size: mostly tens to hundreds of bytes, some tens of KiB, and a
/// few larger than a socket buffer (> 256 KiB).
pub fn pick_size(rng: &mut Rng, large_pct: u8) -> u64 {
    let r = rng.next_u64() % 100;
    if r < large_pct as u64 {
        rng.range(256 * 1024 + 1, 400 * 1024)
    } else if r < 20 {
        rng.range(1024, 64 * 1024)
    } else {
        rng.range(10, 600)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's kernel thread id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Waits until `fd` is readable (or hung up). `timeout_ms < 0` waits forever.
/// Returns false on timeout. `poll` is no socket send/receive, so waiting
/// here leaves no event: it lets the tiers timestamp a request's start just
/// before the read that returns its first bytes.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: p is one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// What one step of a message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Some bytes moved; call again.
    Progress,
    /// The socket would block (non-blocking sockets only).
    WouldBlock,
    /// The message is complete.
    Done,
    /// The peer closed the connection before the first byte (reads only).
    Eof,
}

fn syscall_result(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// An outgoing message, written in pieces.
#[derive(Debug)]
pub struct OutMsg {
    hdr: [u8; HEADER_LEN],
    total: u64,
    off: u64,
    /// 0: header alone, then payload chunks with write(); 1: writev(header,
    /// first chunk), then write(); 2: writev of header and rest of payload.
    style: u8,
    rng: Rng,
}

impl OutMsg {
    pub fn new(h: &Header, seed: u64) -> OutMsg {
        let mut rng = Rng::new(seed);
        let style = (rng.next_u64() % 3) as u8;
        OutMsg {
            hdr: h.encode(),
            total: h.wire_len(),
            off: 0,
            style,
            rng,
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    fn chunk(&mut self) -> usize {
        match self.rng.next_u64() % 4 {
            0 => self.rng.range(1, 200) as usize,
            1 => self.rng.range(1000, 5000) as usize,
            2 => self.rng.range(16 * 1024, 128 * 1024) as usize,
            _ => PATTERN_LEN,
        }
    }

    /// One write()/writev() call.
    pub fn step(&mut self, fd: RawFd) -> io::Result<Step> {
        if self.off >= self.total {
            return Ok(Step::Done);
        }
        let payload_left = (self.total - self.off.max(HEADER_LEN as u64)) as usize;
        let rc = if (self.off as usize) < HEADER_LEN {
            let n = match self.style {
                0 => 0,
                1 => self.chunk(),
                _ => PATTERN_LEN,
            }
            .min(payload_left);
            let h = &self.hdr[self.off as usize..];
            if n == 0 {
                // SAFETY: h is a valid buffer of h.len() bytes.
                syscall_result(unsafe { libc::write(fd, h.as_ptr().cast(), h.len()) })
            } else {
                let iov = [
                    libc::iovec {
                        iov_base: h.as_ptr() as *mut _,
                        iov_len: h.len(),
                    },
                    libc::iovec {
                        iov_base: PATTERN.as_ptr() as *mut _,
                        iov_len: n,
                    },
                ];
                // SAFETY: both iovecs point to live buffers of the given sizes.
                syscall_result(unsafe { libc::writev(fd, iov.as_ptr(), 2) })
            }
        } else {
            let n = self.chunk().min(payload_left);
            // SAFETY: PATTERN holds at least n bytes.
            syscall_result(unsafe { libc::write(fd, PATTERN.as_ptr().cast(), n) })
        };
        match rc {
            Ok(n) => {
                self.off += n as u64;
                Ok(if self.off >= self.total {
                    Step::Done
                } else {
                    Step::Progress
                })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Progress),
            Err(e) => Err(e),
        }
    }

    /// Writes the whole message on a blocking socket.
    pub fn write_all(&mut self, fd: RawFd) -> io::Result<()> {
        loop {
            match self.step(fd)? {
                Step::Done => return Ok(()),
                Step::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: p is one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 1000) };
                }
                _ => {}
            }
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; PATTERN_LEN]);
}

/// An incoming message, read with varying buffer sizes.
#[derive(Debug)]
pub struct InMsg {
    hdr: [u8; HEADER_LEN],
    have: u64,
    header: Option<Header>,
    rng: Rng,
    /// Stream offset of this message's first byte, for error messages.
    stream_off: u64,
}

impl InMsg {
    pub fn new(seed: u64, stream_off: u64) -> InMsg {
        InMsg {
            hdr: [0; HEADER_LEN],
            have: 0,
            header: None,
            rng: Rng::new(seed),
            stream_off,
        }
    }

    /// Bytes received so far.
    pub fn have(&self) -> u64 {
        self.have
    }

    pub fn header(&self) -> Option<Header> {
        self.header
    }

    fn bufsize(&mut self) -> usize {
        const SIZES: [usize; 7] = [7, 40, 512, 1500, 4096, 65536, 300_000];
        SIZES[(self.rng.next_u64() % SIZES.len() as u64) as usize]
    }

    /// One read()/recv() call.
    pub fn step(&mut self, fd: RawFd) -> Result<Step, ProtoError> {
        let want = self.header.map_or(HEADER_LEN as u64, |h| h.wire_len());
        if self.have >= want && self.header.is_some() {
            return Ok(Step::Done);
        }
        let cap = (want - self.have) as usize;
        let n = self.bufsize().min(cap);
        let use_recv = self.rng.next_u64() & 1 == 0;
        let in_header = (self.have as usize) < HEADER_LEN;
        let rc = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let buf: &mut [u8] = if in_header {
                &mut self.hdr[self.have as usize..self.have as usize + n]
            } else {
                &mut s[..n]
            };
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let rc = unsafe {
                if use_recv {
                    libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0)
                } else {
                    libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
                }
            };
            syscall_result(rc)
        });
        match rc {
            Ok(0) => {
                if self.have == 0 {
                    Ok(Step::Eof)
                } else {
                    Err(ProtoError::Truncated {
                        have: self.have,
                        want,
                    })
                }
            }
            Ok(got) => {
                self.have += got as u64;
                if self.header.is_none() && self.have == HEADER_LEN as u64 {
                    self.header = Some(Header::decode(&self.hdr, self.stream_off)?);
                }
                match self.header {
                    Some(h) if self.have >= h.wire_len() => Ok(Step::Done),
                    _ => Ok(Step::Progress),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Progress),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole message from a blocking socket. `Ok(None)` on a clean
    /// EOF before the first byte.
    pub fn read_all(&mut self, fd: RawFd) -> Result<Option<Header>, ProtoError> {
        loop {
            match self.step(fd)? {
                Step::Done => return Ok(self.header),
                Step::Eof => return Ok(None),
                Step::WouldBlock => {
                    wait_readable(fd, 1000)?;
                }
                Step::Progress => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn header_round_trips_and_rejects_bad_input() {
        let h = Header {
            kind: KIND_REQUEST,
            len: 300_000,
            reply_len: 17,
            id: u64::MAX - 3,
            parent: 42,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b, 0).unwrap(), h);
        let mut bad = b;
        bad[0] = 0;
        assert!(matches!(
            Header::decode(&bad, 80),
            Err(ProtoError::BadMagic { offset: 80, .. })
        ));
        let mut bad = b;
        bad[4] = 9;
        assert!(matches!(
            Header::decode(&bad, 0),
            Err(ProtoError::BadKind { got: 9, .. })
        ));
        let mut bad = b;
        bad[8..16].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        assert!(matches!(
            Header::decode(&bad, 0),
            Err(ProtoError::TooLong { .. })
        ));
    }

    #[test]
    fn messages_cross_a_socket_in_pieces() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sizes = [0u64, 1, 39, 40, 500, 70_000, 300_000];
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut off = 0;
            loop {
                let mut m = InMsg::new(got.len() as u64, off);
                match m.read_all(s.as_raw_fd()).unwrap() {
                    Some(h) => {
                        off += h.wire_len();
                        got.push(h)
                    }
                    None => return got,
                }
            }
        });
        let c = TcpStream::connect(addr).unwrap();
        let mut sent = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let h = Header {
                kind: KIND_REPLY,
                len,
                reply_len: 0,
                id: i as u64 + 1,
                parent: 7,
            };
            OutMsg::new(&h, i as u64 * 31)
                .write_all(c.as_raw_fd())
                .unwrap();
            sent.push(h);
        }
        drop(c);
        assert_eq!(t.join().unwrap(), sent);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let h = Header {
            kind: KIND_REQUEST,
            len: 100,
            reply_len: 0,
            id: 1,
            parent: 0,
        };
        std::io::Write::write_all(&mut c, &h.encode()[..]).unwrap();
        std::io::Write::write_all(&mut c, &[0u8; 10]).unwrap();
        drop(c);
        let err = InMsg::new(1, 0).read_all(s.as_raw_fd()).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::Truncated {
                    have: 50,
                    want: 140
                }
            ),
            "{err:?}"
        );
    }
}
