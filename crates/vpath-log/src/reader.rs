//! The streaming reader.

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use vpath_core::{flags, Checkpoint, Data, Event, Label, Op, Record, Syscall, ThreadInfo};

use crate::error::{FileError, FileErrorKind, LogError};
use crate::format::*;
use crate::varint::{self, VarintError};
use crate::writer::{dir, seq_after};

#[derive(Clone)]
struct SockSlot {
    live: bool,
    cookie: u64,
    netns: u32,
    local: SocketAddr,
    remote: SocketAddr,
    exp_seq: [u32; 2],
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

const EMPTY_SLOT: SockSlot = SockSlot {
    live: false,
    cookie: 0,
    netns: 0,
    local: UNSPECIFIED,
    remote: UNSPECIFIED,
    exp_seq: [0; 2],
};

/// Reads a log: the header at creation, then one [`Record`] at a time.
///
/// Interning records (sockets, thread state) are consumed internally; the
/// records returned are full `vpath_core` values. After the last record,
/// [`LogReader::end`] tells whether the log ended with its End trailer.
/// After an error the reader returns no more records.
pub struct LogReader<R: Read> {
    inner: R,
    header: Header,
    version: (u16, u16),
    /// The payload (or, for a truncated final block, its available part)
    /// of the current block.
    buf: Vec<u8>,
    pos: usize,
    declared: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// File offset of the next unread byte of `inner`.
    next_offset: u64,
    block_index: u32,
    prev_ts: u64,
    sockets: Vec<SockSlot>,
    threads: FxHashMap<u32, (u32, u64)>,
    /// Labels by id, since the start or the last Reset (format 1.2).
    labels: Vec<Arc<Label>>,
    /// A direct-mapped cache of `threads`: slot `tid % THREAD_CACHE`.
    thread_cache: Box<[ThreadCacheSlot; THREAD_CACHE]>,
    end: Option<EndStats>,
    events: u64,
    done: bool,
}

const THREAD_CACHE: usize = 256;

/// What [`LogReader::next_item`] returns.
#[derive(Debug)]
pub enum Item<'a> {
    Record(Record),
    /// A Raw record of a raw log (see [`crate::header_flags::RAW`]).
    Raw(RawRecord<'a>),
}

/// One record of a raw capture, as its recorder wrote it.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// The stream (the recorder's ring) it came from.
    pub stream: u32,
    /// The kernel record, in the layout named by the header's `raw_layout`.
    pub bytes: &'a [u8],
    /// The label the recorder made of the message bytes it took out.
    pub label: Option<Arc<Label>>,
    /// File offset of `bytes[0]`, for error messages.
    pub offset: u64,
}

/// A decoded record, with a Raw record's bytes as a range of the block.
enum Decoded {
    Record(Record),
    Raw {
        stream: u32,
        bytes: std::ops::Range<usize>,
        label: Option<Arc<Label>>,
        offset: u64,
    },
}

#[derive(Clone, Copy, Default)]
struct ThreadCacheSlot {
    valid: bool,
    tid: u32,
    pid: u32,
    cgroup: u64,
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Formats a malformed-data error at `offset`.
#[cold]
fn malformed(offset: u64, what: &'static str, detail: impl Into<String>) -> LogError {
    LogError::Malformed {
        offset,
        what,
        detail: detail.into(),
    }
}

/// A cursor over one record body, for the less hot record kinds.
struct Body<'a> {
    b: &'a [u8],
    p: usize,
    /// File offset of `b[0]`.
    base: u64,
    what: &'static str,
}

impl<'a> Body<'a> {
    fn err(&self, detail: impl Into<String>) -> LogError {
        malformed(self.base + self.p as u64, self.what, detail)
    }
    fn varint(&mut self, field: &str) -> Result<u64, LogError> {
        varint::get(self.b, &mut self.p)
            .map_err(|e| self.err(format!("reading {field}: {}", e.describe())))
    }
    /// A varint that may not exceed `max` (a length or count the reader
    /// would otherwise allocate for).
    fn varint_at_most(&mut self, field: &str, max: usize) -> Result<u64, LogError> {
        let at = self.p;
        let v = self.varint(field)?;
        if v > max as u64 {
            return Err(malformed(
                self.base + at as u64,
                self.what,
                format!("{field} {v} exceeds the maximum {max}"),
            ));
        }
        Ok(v)
    }
    fn u32(&mut self, field: &str) -> Result<u32, LogError> {
        let at = self.p;
        let v = self.varint(field)?;
        u32::try_from(v).map_err(|_| {
            malformed(
                self.base + at as u64,
                self.what,
                format!("{field} {v} does not fit in 32 bits"),
            )
        })
    }
    fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], LogError> {
        if self.b.len() - self.p < n {
            return Err(self.err(format!(
                "reading {field}: expected {n} bytes, the record has {} left",
                self.b.len() - self.p
            )));
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], LogError> {
        let s = self.bytes(N, field)?;
        Ok(s.try_into().expect("length checked"))
    }
    fn string(&mut self, field: &str, max: usize) -> Result<String, LogError> {
        let at = self.p;
        let len = self.varint(field)?;
        if len > max as u64 {
            return Err(malformed(
                self.base + at as u64,
                self.what,
                format!("{field} length {len} exceeds the maximum {max}"),
            ));
        }
        let s = self.bytes(len as usize, field)?;
        String::from_utf8(s.to_vec()).map_err(|e| {
            malformed(
                self.base + at as u64,
                self.what,
                format!("{field} is not UTF-8: {e}"),
            )
        })
    }
    fn addr(&mut self, field: &str) -> Result<SocketAddr, LogError> {
        let at = self.p;
        let fam = self.array::<1>(field)?[0];
        match fam {
            4 => {
                let ip: [u8; 4] = self.array(field)?;
                let port = u16::from_le_bytes(self.array(field)?);
                Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
            }
            6 => {
                let ip: [u8; 16] = self.array(field)?;
                let port = u16::from_le_bytes(self.array(field)?);
                let flowinfo = self.u32(field)?;
                let scope = self.u32(field)?;
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(ip),
                    port,
                    flowinfo,
                    scope,
                )))
            }
            f => Err(malformed(
                self.base + at as u64,
                self.what,
                format!("{field}: address family {f} is neither 4 nor 6"),
            )),
        }
    }
}

/// A label's body: `u8 reply, string protocol, string name, varint n, n x
/// (string key, string value)`.
fn decode_label(b: &mut Body<'_>) -> Result<Label, LogError> {
    let reply = b.array::<1>("label reply flag")?[0] & 1 != 0;
    let protocol = b.string("label protocol", MAX_LABEL_KEY)?;
    let name = b.string("label name", MAX_LABEL_VALUE)?;
    let n = b.varint_at_most("label attribute count", MAX_LABEL_ATTRS)?;
    let mut attrs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = b.string("label attribute key", MAX_LABEL_KEY)?;
        let v = b.string("label attribute value", MAX_LABEL_VALUE)?;
        attrs.push((k.into(), v));
    }
    Ok(Label {
        protocol: protocol.into(),
        name,
        attrs,
        reply,
    })
}

/// Reads an Event record's data extension (format 1.1; label references
/// 1.2). Unknown data kinds (of later minor versions) are skipped.
fn decode_data(b: &mut Body<'_>, labels: &[Arc<Label>]) -> Result<Option<Box<Data>>, LogError> {
    let at = b.p;
    let kind = b.array::<1>("data kind")?[0];
    let d = match kind {
        data_kind::BYTES => {
            let offset = b.u32("data offset")?;
            let len = b.varint_at_most("data length", MAX_DATA_BYTES)?;
            let bytes = b.bytes(len as usize, "data bytes")?;
            Data::Bytes {
                offset,
                bytes: bytes.into(),
            }
        }
        data_kind::LABEL => Data::Label(Arc::new(decode_label(b)?)),
        data_kind::LABEL_REF => {
            let id = b.varint("label id")?;
            match labels.get(id as usize) {
                Some(l) if id < MAX_LABEL_ID => Data::Label(Arc::clone(l)),
                _ => {
                    return Err(malformed(
                        b.base + at as u64,
                        b.what,
                        format!(
                            "label id {id} has no Label record before it ({} defined since the start or the last Reset)",
                            labels.len()
                        ),
                    ))
                }
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(Box::new(d)))
}

/// Finds which field of an Event body is bad (the cold path of
/// `decode_event`).
#[cold]
#[inline(never)]
fn event_field_error(body: &[u8], base: u64) -> LogError {
    let mut p = 2;
    for name in ["ts delta", "tid", "socket id", "ret", "seq"] {
        let at = p;
        if let Err(e) = varint::get(body, &mut p) {
            return malformed(
                base + at as u64,
                "Event record",
                format!("reading {name}: {}", e.describe()),
            );
        }
    }
    malformed(base, "Event record", "fields run past the end of the body")
}

/// The name of a record of kind `k` in error messages.
fn record_what(k: u8) -> &'static str {
    match k {
        kind::THREAD_STATE => "ThreadState record",
        kind::THREAD => "Thread record",
        kind::CHECKPOINT => "Checkpoint record",
        kind::END => "End record",
        kind::LABEL => "Label record",
        _ => "record",
    }
}

fn body_what(k: u8) -> &'static str {
    match k {
        kind::EVENT => "Event record body",
        kind::SOCKET => "Socket record body",
        kind::THREAD_STATE => "ThreadState record body",
        kind::THREAD => "Thread record body",
        kind::CHECKPOINT => "Checkpoint record body",
        kind::END => "End record body",
        kind::RESET => "Reset record body",
        kind::LABEL => "Label record body",
        _ => "record body",
    }
}

impl LogReader<File> {
    /// Opens a log file and reads its header; errors name the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|e| FileError {
            path: path.to_path_buf(),
            source: FileErrorKind::Open(e),
        })?;
        LogReader::new(f).map_err(|e| e.in_file(path))
    }
}

impl<R: Read> LogReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut inner: R) -> Result<Self, LogError> {
        let mut prefix = [0u8; FILE_PREFIX_LEN];
        let n = read_full(&mut inner, &mut prefix)
            .map_err(|source| LogError::Io { offset: 0, source })?;
        let m = n.min(MAGIC.len());
        if prefix[..m] != MAGIC[..m] {
            return Err(LogError::BadMagic {
                expected: MAGIC,
                found: prefix[..m].to_vec(),
            });
        }
        if n < FILE_PREFIX_LEN {
            return Err(LogError::Truncated {
                offset: 0,
                what: "file header prefix",
                expected: FILE_PREFIX_LEN as u64,
                found: n as u64,
            });
        }
        let major = u16::from_le_bytes([prefix[8], prefix[9]]);
        let minor = u16::from_le_bytes([prefix[10], prefix[11]]);
        if major != VERSION_MAJOR {
            return Err(LogError::UnsupportedVersion {
                offset: 8,
                major,
                minor,
                supported: VERSION_MAJOR,
            });
        }
        let blen = u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes"));
        if blen > MAX_HEADER_BODY {
            return Err(malformed(
                12,
                "file header",
                format!("header body length {blen} exceeds the maximum {MAX_HEADER_BODY}"),
            ));
        }
        let mut rest = vec![0u8; blen as usize + 4];
        let got = read_full(&mut inner, &mut rest).map_err(|source| LogError::Io {
            offset: FILE_PREFIX_LEN as u64,
            source,
        })?;
        if got < rest.len() {
            return Err(LogError::Truncated {
                offset: FILE_PREFIX_LEN as u64,
                what: "file header body and checksum",
                expected: rest.len() as u64,
                found: got as u64,
            });
        }
        let body = &rest[..blen as usize];
        let stored = u32::from_le_bytes(rest[blen as usize..].try_into().expect("4 bytes"));
        let mut h = crc32fast::Hasher::new();
        h.update(&prefix);
        h.update(body);
        let computed = h.finalize();
        let crc_at = (FILE_PREFIX_LEN + blen as usize) as u64;
        if stored != computed {
            return Err(LogError::Checksum {
                offset: crc_at,
                what: "file header",
                stored,
                computed,
            });
        }
        let mut b = Body {
            b: body,
            p: 0,
            base: FILE_PREFIX_LEN as u64,
            what: "file header",
        };
        let host = b.string("host name", MAX_HEADER_STRING)?;
        let wall_minus_mono_ns = i64::from_le_bytes(b.array("wall_minus_mono_ns")?);
        let at = b.p;
        let clock_byte = b.array::<1>("clock")?[0];
        let clock = Clock::from_u8(clock_byte).ok_or_else(|| {
            malformed(
                FILE_PREFIX_LEN as u64 + at as u64,
                "file header",
                format!("clock {clock_byte} is neither 0 (monotonic) nor 1 (wall)"),
            )
        })?;
        let at = b.p;
        let flags = u32::from_le_bytes(b.array("flags")?);
        if flags & !header_flags::ALL != 0 {
            return Err(malformed(
                FILE_PREFIX_LEN as u64 + at as u64,
                "file header",
                format!(
                    "flags {flags:#x} use bits this reader does not know (known: {:#x})",
                    header_flags::ALL
                ),
            ));
        }
        let recorder = b.string("recorder name", MAX_HEADER_STRING)?;
        let start_unix_ns = u64::from_le_bytes(b.array("start_unix_ns")?);
        let at = b.p;
        let raw_layout = if (major, minor) >= (1, 3) {
            b.string("raw layout", MAX_HEADER_STRING)?
        } else {
            String::new()
        };
        if (flags & header_flags::RAW != 0) == raw_layout.is_empty() {
            return Err(malformed(
                FILE_PREFIX_LEN as u64 + at as u64,
                "file header",
                if raw_layout.is_empty() {
                    "the RAW flag is set but no raw layout is named".to_string()
                } else {
                    format!("a raw layout ({raw_layout:?}) is named but the RAW flag is not set")
                },
            ));
        }
        // Bytes after these fields are extensions of later minor versions.
        let header = Header {
            host,
            wall_minus_mono_ns,
            clock,
            flags,
            recorder,
            start_unix_ns,
            raw_layout,
        };
        let off = crc_at + 4;
        Ok(LogReader {
            inner,
            header,
            version: (major, minor),
            buf: Vec::new(),
            pos: 0,
            declared: 0,
            buf_offset: off,
            next_offset: off,
            block_index: 0,
            prev_ts: 0,
            sockets: Vec::new(),
            threads: FxHashMap::default(),
            labels: Vec::new(),
            thread_cache: Box::new([ThreadCacheSlot::default(); THREAD_CACHE]),
            end: None,
            events: 0,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The (major, minor) format version of the log.
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// The End trailer, once the reader has reached it. `None` after the
    /// last record means the log did not end cleanly (truncated, or the
    /// recorder was killed).
    pub fn end(&self) -> Option<EndStats> {
        self.end
    }

    /// Events returned so far.
    pub fn events_read(&self) -> u64 {
        self.events
    }

    /// The file offset just after the last record decoded.
    pub fn position(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next record; `Ok(None)` at the end of the log (see
    /// [`LogReader::end`]). Every complete, undamaged record is returned
    /// before the error that stops reading. A raw log's Raw records are an
    /// error here: read a raw log with [`LogReader::next_item`].
    pub fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        match self.next_item()? {
            None => Ok(None),
            Some(Item::Record(r)) => Ok(Some(r)),
            Some(Item::Raw(raw)) => {
                let offset = raw.offset;
                self.done = true;
                Err(malformed(
                    offset,
                    "Raw record",
                    format!(
                        "a raw capture ({}) holds kernel records that only its recorder's parser reads",
                        self.header.raw_layout
                    ),
                ))
            }
        }
    }

    /// The next record or, in a raw log, Raw record; `Ok(None)` at the end
    /// of the log. As [`LogReader::next_record`] otherwise.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, LogError> {
        if self.done {
            return Ok(None);
        }
        match self.next_inner() {
            Ok(Some(Decoded::Record(r))) => Ok(Some(Item::Record(r))),
            Ok(Some(Decoded::Raw {
                stream,
                bytes,
                label,
                offset,
            })) => Ok(Some(Item::Raw(RawRecord {
                stream,
                bytes: &self.buf[bytes],
                label,
                offset,
            }))),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn next_inner(&mut self) -> Result<Option<Decoded>, LogError> {
        loop {
            if self.pos < self.buf.len() {
                if let Some(r) = self.decode_record()? {
                    return Ok(Some(r));
                }
                continue;
            }
            if self.buf.len() < self.declared {
                // A truncated final block: its complete records were
                // returned; now report the cut.
                return Err(LogError::Truncated {
                    offset: self.buf_offset + self.buf.len() as u64,
                    what: "block payload",
                    expected: (self.declared - self.buf.len()) as u64,
                    found: 0,
                });
            }
            if self.end.is_some() {
                let mut b = [0u8; 1];
                let n = read_full(&mut self.inner, &mut b).map_err(|source| LogError::Io {
                    offset: self.next_offset,
                    source,
                })?;
                if n != 0 {
                    return Err(LogError::TrailingData {
                        offset: self.next_offset,
                    });
                }
                return Ok(None);
            }
            if !self.load_block()? {
                return Ok(None);
            }
        }
    }

    /// Reads the next block; false at a clean end of input.
    fn load_block(&mut self) -> Result<bool, LogError> {
        let off = self.next_offset;
        let mut hdr = [0u8; BLOCK_HEADER_LEN];
        let n = read_full(&mut self.inner, &mut hdr).map_err(|source| LogError::Io {
            offset: off,
            source,
        })?;
        if n == 0 {
            return Ok(false);
        }
        if n < BLOCK_HEADER_LEN {
            return Err(LogError::Truncated {
                offset: off,
                what: "block header",
                expected: BLOCK_HEADER_LEN as u64,
                found: n as u64,
            });
        }
        let word = |i: usize| u32::from_le_bytes(hdr[i..i + 4].try_into().expect("4 bytes"));
        let (len, index, pcrc, hcrc) = (word(0), word(4), word(8), word(12));
        let computed = crc32fast::hash(&hdr[..12]);
        if computed != hcrc {
            return Err(LogError::Checksum {
                offset: off,
                what: "block header",
                stored: hcrc,
                computed,
            });
        }
        if index != self.block_index {
            return Err(LogError::BlockSequence {
                offset: off,
                expected: self.block_index,
                found: index,
            });
        }
        if len == 0 || len > MAX_BLOCK_PAYLOAD {
            return Err(malformed(
                off,
                "block header",
                format!("payload length {len} is outside 1..={MAX_BLOCK_PAYLOAD}"),
            ));
        }
        let payload_off = off + BLOCK_HEADER_LEN as u64;
        self.buf.clear();
        self.buf.reserve((len as usize).min(1 << 20));
        let got = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .map_err(|source| LogError::Io {
                offset: payload_off,
                source,
            })?;
        self.buf_offset = payload_off;
        self.next_offset = payload_off + got as u64;
        self.declared = len as usize;
        self.pos = 0;
        self.block_index = self.block_index.wrapping_add(1);
        if got == len as usize {
            let computed = crc32fast::hash(&self.buf);
            if computed != pcrc {
                self.buf.clear();
                return Err(LogError::Checksum {
                    offset: payload_off,
                    what: "block payload",
                    stored: pcrc,
                    computed,
                });
            }
        }
        Ok(true)
    }

    /// Decodes the record at `self.pos`; `None` for records consumed
    /// internally.
    fn decode_record(&mut self) -> Result<Option<Decoded>, LogError> {
        let start = self.pos;
        let base = self.buf_offset;
        let complete = self.buf.len() == self.declared;
        if self.end.is_some() {
            return Err(LogError::TrailingData {
                offset: base + start as u64,
            });
        }
        let k = self.buf[start];
        let mut p = start + 1;
        let len = match varint::get(&self.buf, &mut p) {
            Ok(v) => v,
            Err(VarintError::Eof) if !complete => {
                let found = (self.buf.len() - start) as u64;
                return Err(LogError::Truncated {
                    offset: base + start as u64,
                    what: "record header (kind and length)",
                    expected: found + 1,
                    found,
                });
            }
            Err(e) => {
                return Err(malformed(
                    base + start as u64,
                    "record header",
                    format!("{} record length: {}", kind::name(k), e.describe()),
                ))
            }
        };
        let avail = self.buf.len() - p;
        if len > avail as u64 {
            if complete {
                return Err(malformed(
                    base + start as u64,
                    "record header",
                    format!(
                        "{} record of {len} bytes runs past the end of its block ({avail} bytes left)",
                        kind::name(k)
                    ),
                ));
            }
            return Err(LogError::Truncated {
                offset: base + p as u64,
                what: body_what(k),
                expected: len,
                found: avail as u64,
            });
        }
        let (bs, be) = (p, p + len as usize);
        self.pos = be;
        // The cursor for the less hot kinds (Event and Socket decode apart).
        let mut b = Body {
            b: &self.buf[bs..be],
            p: 0,
            base: base + bs as u64,
            what: record_what(k),
        };
        let raw = self.header.is_raw();
        match k {
            kind::EVENT | kind::SOCKET | kind::THREAD_STATE | kind::THREAD if raw => {
                Err(malformed(
                    base + start as u64,
                    "record header",
                    format!(
                        "{} record in a raw log (which holds Raw records instead)",
                        kind::name(k)
                    ),
                ))
            }
            kind::RAW if !raw => Err(malformed(
                base + start as u64,
                "record header",
                "Raw record in a log without the RAW flag",
            )),
            kind::RAW => {
                let tag_at = b.base + b.p as u64;
                let tag = b.varint("stream")?;
                let label = if tag & 1 == 1 {
                    let at = b.base + b.p as u64;
                    let id = b.varint("label id")?;
                    let l = self.labels.get(id as usize).ok_or_else(|| {
                        malformed(
                            at,
                            "Raw record",
                            format!(
                                "label {id} is not defined (labels defined: {})",
                                self.labels.len()
                            ),
                        )
                    })?;
                    Some(Arc::clone(l))
                } else {
                    None
                };
                let stream = u32::try_from(tag >> 1).map_err(|_| {
                    malformed(
                        tag_at,
                        "Raw record",
                        format!("stream {} does not fit in 32 bits", tag >> 1),
                    )
                })?;
                if b.b.len() - b.p > MAX_RAW_BYTES {
                    return Err(malformed(
                        b.base + b.p as u64,
                        "Raw record",
                        format!(
                            "kernel record of {} bytes exceeds the maximum {MAX_RAW_BYTES}",
                            b.b.len() - b.p
                        ),
                    ));
                }
                self.events += 1;
                Ok(Some(Decoded::Raw {
                    stream,
                    bytes: bs + b.p..be,
                    label,
                    offset: b.base + b.p as u64,
                }))
            }
            kind::EVENT => self
                .decode_event(bs, be)
                .map(|e| Some(Decoded::Record(Record::Event(e)))),
            kind::SOCKET => self.decode_socket(bs, be).map(|_| None),
            kind::THREAD_STATE => {
                let tid = b.u32("tid")?;
                let pid = b.u32("pid")?;
                let cgroup = b.varint("cgroup")?;
                self.threads.insert(tid, (pid, cgroup));
                self.thread_cache[tid as usize % THREAD_CACHE] = ThreadCacheSlot {
                    valid: true,
                    tid,
                    pid,
                    cgroup,
                };
                Ok(None)
            }
            kind::THREAD => {
                let pid = b.u32("pid")?;
                let tid = b.u32("tid")?;
                let comm = b.string("comm", MAX_BLOCK_PAYLOAD as usize)?;
                Ok(Some(Decoded::Record(Record::Thread(ThreadInfo {
                    pid,
                    tid,
                    comm,
                }))))
            }
            kind::CHECKPOINT => {
                let ts_ns = b.varint("ts_ns")?;
                let lost_total = b.varint("lost_total")?;
                Ok(Some(Decoded::Record(Record::Checkpoint(Checkpoint {
                    ts_ns,
                    lost_total,
                }))))
            }
            kind::END => {
                let events_emitted = b.varint("events_emitted")?;
                let events_written = b.varint("events_written")?;
                let events_lost = b.varint("events_lost")?;
                self.end = Some(EndStats {
                    events_emitted,
                    events_written,
                    events_lost,
                });
                Ok(None)
            }
            kind::LABEL => {
                let id = b.varint("label id")?;
                // Writers allocate ids densely: a new id is the next one.
                if id != self.labels.len() as u64 || id >= MAX_LABEL_ID {
                    return Err(malformed(
                        b.base,
                        "Label record",
                        format!(
                            "label id {id} is not the next id ({}) or not below {MAX_LABEL_ID}",
                            self.labels.len()
                        ),
                    ));
                }
                let l = decode_label(&mut b)?;
                self.labels.push(Arc::new(l));
                Ok(None)
            }
            kind::RESET => {
                self.labels.clear();
                self.sockets.clear();
                self.threads.clear();
                self.thread_cache.fill(ThreadCacheSlot::default());
                Ok(None)
            }
            k if k >= kind::FIRST_SKIPPABLE => Ok(None),
            k => Err(malformed(
                base + start as u64,
                "record header",
                format!("unknown record kind {k} (kinds below 0x80 may not be skipped)"),
            )),
        }
    }

    fn decode_socket(&mut self, bs: usize, be: usize) -> Result<(), LogError> {
        let mut b = Body {
            b: &self.buf[bs..be],
            p: 0,
            base: self.buf_offset + bs as u64,
            what: "Socket record",
        };
        let id = b.varint("socket id")?;
        if id >= MAX_SOCKET_ID {
            return Err(malformed(
                b.base,
                "Socket record",
                format!("socket id {id} is not below {MAX_SOCKET_ID}"),
            ));
        }
        let cookie = b.varint("socket cookie")?;
        let netns = b.u32("netns")?;
        let local = b.addr("local address")?;
        let remote = b.addr("remote address")?;
        let id = id as usize;
        // Writers allocate ids densely: a new id is the next unused one.
        if id > self.sockets.len() {
            return Err(malformed(
                b.base,
                "Socket record",
                format!(
                    "socket id {id} skips ids: only {} are defined since the start or the last Reset",
                    self.sockets.len()
                ),
            ));
        }
        if id == self.sockets.len() {
            self.sockets.push(EMPTY_SLOT);
        }
        self.sockets[id] = SockSlot {
            live: true,
            cookie,
            netns,
            local,
            remote,
            exp_seq: [0; 2],
        };
        Ok(())
    }

    #[inline]
    fn decode_event(&mut self, bs: usize, be: usize) -> Result<Event, LogError> {
        let body = &self.buf[bs..be];
        let base = self.buf_offset + bs as u64;
        const WHAT: &str = "Event record";
        if body.len() < 2 {
            return Err(malformed(
                base,
                WHAT,
                format!("body of {} bytes is shorter than 2", body.len()),
            ));
        }
        let op = Op::from_u8(body[0] & 7).ok_or_else(|| {
            malformed(base, WHAT, format!("op {} is not a known op", body[0] & 7))
        })?;
        let syscall = Syscall::from_u8(body[0] >> 3).ok_or_else(|| {
            malformed(
                base,
                WHAT,
                format!("syscall {} is not a known syscall", body[0] >> 3),
            )
        })?;
        let fl = body[1];
        // Hot path: decode from the whole block buffer (so that varints
        // take the fast path), then check the fields stayed inside the body.
        let buf = &self.buf[..];
        let mut p = bs + 2;
        let (dts, tid, sid, ret, seqv) = match (
            varint::get(buf, &mut p),
            varint::get(buf, &mut p),
            varint::get(buf, &mut p),
            varint::get(buf, &mut p),
            varint::get(buf, &mut p),
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) if p <= be => (a, b, c, d, e),
            _ => return Err(event_field_error(body, base)),
        };
        let tid = u32::try_from(tid)
            .map_err(|_| malformed(base, WHAT, format!("tid {tid} does not fit in 32 bits")))?;
        let seqv = u32::try_from(seqv)
            .map_err(|_| malformed(base, WHAT, format!("seq {seqv} does not fit in 32 bits")))?;
        let c = &mut self.thread_cache[tid as usize % THREAD_CACHE];
        let (pid, cgroup) = if c.valid && c.tid == tid {
            (c.pid, c.cgroup)
        } else {
            let Some(&(pid, cgroup)) = self.threads.get(&tid) else {
                return Err(malformed(
                    base,
                    WHAT,
                    format!("thread {tid} has no ThreadState record before it"),
                ));
            };
            *c = ThreadCacheSlot {
                valid: true,
                tid,
                pid,
                cgroup,
            };
            (pid, cgroup)
        };
        let slot = match self.sockets.get_mut(sid as usize) {
            Some(s) if s.live && sid < MAX_SOCKET_ID => s,
            _ => {
                return Err(malformed(
                    base,
                    WHAT,
                    format!("socket id {sid} has no live Socket record before it"),
                ))
            }
        };
        let d = dir(op);
        let seq = if fl & flags::SEQ != 0 {
            slot.exp_seq[d].wrapping_add(varint::unzigzag32(seqv) as u32)
        } else {
            seqv
        };
        let ts_ns = self.prev_ts.wrapping_add(varint::unzigzag(dts) as u64);
        let e = Event {
            ts_ns,
            netns: slot.netns,
            cgroup,
            pid,
            tid,
            sock: slot.cookie,
            op,
            syscall,
            flags: fl,
            ret: varint::unzigzag(ret),
            seq,
            local: slot.local,
            remote: slot.remote,
            data: None,
        };
        let mut e = e;
        if p < be {
            // Format 1.1: the data extension.
            let mut b = Body {
                b: &self.buf[p..be],
                p: 0,
                base: self.buf_offset + p as u64,
                what: WHAT,
            };
            e.data = decode_data(&mut b, &self.labels)?;
        }
        if fl & flags::SEQ != 0 {
            slot.exp_seq[d] = seq_after(&e);
        }
        if op == Op::Close {
            slot.live = false;
        }
        self.prev_ts = ts_ns;
        self.events += 1;
        Ok(e)
    }
}

impl<R: Read> Iterator for LogReader<R> {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

impl<R: Read> std::iter::FusedIterator for LogReader<R> {}
