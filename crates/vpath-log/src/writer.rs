//! The streaming writer.

use std::io::Write;
use std::net::SocketAddr;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use vpath_core::{flags, Checkpoint, Data, Event, Label, Op, Record, ThreadInfo};

use crate::error::WriteError;
use crate::format::*;
use crate::varint;

/// Tuning of a [`LogWriter`]. The defaults suit a recorder.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// A block is written out once its payload reaches this many bytes.
    pub block_bytes: usize,
    /// At most this many sockets are interned at once; one more clears the
    /// interning tables (a Reset record). Bounded by [`MAX_SOCKET_ID`].
    pub max_sockets: usize,
    /// At most this many threads are interned at once; likewise.
    pub max_threads: usize,
    /// At most this many labels are interned at once; likewise. Bounded by
    /// [`MAX_LABEL_ID`].
    pub max_labels: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            block_bytes: 64 << 10,
            max_sockets: 1 << 16,
            max_threads: 1 << 16,
            max_labels: 4096,
        }
    }
}

struct SockState {
    id: u32,
    netns: u32,
    local: SocketAddr,
    remote: SocketAddr,
    /// Expected next stream position, \[send, receive\].
    exp_seq: [u32; 2],
}

/// Writes a log: the header at creation, then records in checksummed
/// blocks. Call [`LogWriter::finish`] to write the End trailer; a writer
/// dropped without it writes out what it buffered, and the log then reads as
/// not cleanly ended.
pub struct LogWriter<W: Write> {
    inner: Option<W>,
    opts: WriterOptions,
    /// The payload of the block being filled.
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Bytes written to `inner` so far.
    offset: u64,
    block_index: u32,
    prev_ts: u64,
    sockets: FxHashMap<u64, SockState>,
    free_ids: Vec<u32>,
    next_id: u32,
    threads: FxHashMap<u32, (u32, u64)>,
    /// Labels defined since the start or the last Reset, by the address of
    /// their shared reading (the Arc kept here, so that the address cannot
    /// be reused for another label while it names this one): the id.
    labels: FxHashMap<usize, (u32, Arc<Label>)>,
    /// An event's data extension or a new label's body, being encoded.
    ext: Vec<u8>,
    events: u64,
    /// The header's RAW flag: Raw records only, no Events.
    raw: bool,
    poisoned: bool,
}

/// Which of the two stream directions of a socket an event moves.
#[inline]
pub(crate) fn dir(op: Op) -> usize {
    if op == Op::Send {
        0
    } else {
        1
    }
}

/// The stream position after an event with [`flags::SEQ`].
#[inline]
pub(crate) fn seq_after(e: &Event) -> u32 {
    e.seq.wrapping_add(e.moved() as u32)
}

pub(crate) fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.ip().octets());
            out.extend_from_slice(&v4.port().to_le_bytes());
        }
        SocketAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.ip().octets());
            out.extend_from_slice(&v6.port().to_le_bytes());
            varint::put(out, v6.flowinfo() as u64);
            varint::put(out, v6.scope_id() as u64);
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str, max: usize) -> Result<(), WriteError> {
    if s.len() > max {
        return Err(WriteError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    varint::put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends an event's raw-bytes data extension (format 1.1, see FORMAT.md).
fn put_bytes(out: &mut Vec<u8>, offset: u32, bytes: &[u8]) -> Result<(), WriteError> {
    if bytes.len() > MAX_DATA_BYTES {
        return Err(WriteError::TooLong {
            what: "event data",
            len: bytes.len(),
            max: MAX_DATA_BYTES,
        });
    }
    out.push(data_kind::BYTES);
    varint::put(out, offset as u64);
    varint::put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends a label's body (`u8 reply, string protocol, string name, varint
/// n, n x (string key, string value)`: the Label record after its id).
fn put_label(out: &mut Vec<u8>, l: &Label) -> Result<(), WriteError> {
    if l.attrs.len() > MAX_LABEL_ATTRS {
        return Err(WriteError::TooLong {
            what: "label attributes",
            len: l.attrs.len(),
            max: MAX_LABEL_ATTRS,
        });
    }
    out.push(u8::from(l.reply));
    put_str(out, &l.protocol, "label protocol", MAX_LABEL_KEY)?;
    put_str(out, &l.name, "label name", MAX_LABEL_VALUE)?;
    varint::put(out, l.attrs.len() as u64);
    for (k, v) in &l.attrs {
        put_str(out, k, "label attribute key", MAX_LABEL_KEY)?;
        put_str(out, v, "label attribute value", MAX_LABEL_VALUE)?;
    }
    Ok(())
}

/// Encodes the file header (prefix, body, checksum).
pub(crate) fn encode_header(h: &Header, major: u16, minor: u16) -> Result<Vec<u8>, WriteError> {
    if h.flags & !header_flags::ALL != 0 {
        return Err(WriteError::UnknownFlags {
            flags: h.flags,
            known: header_flags::ALL,
        });
    }
    let mut body = Vec::with_capacity(64);
    put_str(&mut body, &h.host, "host name", MAX_HEADER_STRING)?;
    body.extend_from_slice(&h.wall_minus_mono_ns.to_le_bytes());
    body.push(h.clock.to_u8());
    body.extend_from_slice(&h.flags.to_le_bytes());
    put_str(&mut body, &h.recorder, "recorder name", MAX_HEADER_STRING)?;
    body.extend_from_slice(&h.start_unix_ns.to_le_bytes());
    if (major, minor) >= (1, 3) {
        put_str(&mut body, &h.raw_layout, "raw layout", MAX_HEADER_STRING)?;
    }
    match (h.is_raw(), h.raw_layout.is_empty()) {
        (true, true) => return Err(WriteError::RawWithoutLayout),
        (false, false) => {
            return Err(WriteError::LayoutWithoutRaw {
                layout: h.raw_layout.clone(),
            })
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(FILE_PREFIX_LEN + body.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&major.to_le_bytes());
    out.extend_from_slice(&minor.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

impl<W: Write> LogWriter<W> {
    /// Writes the file header to `w` and returns a writer for records.
    pub fn new(w: W, header: &Header) -> Result<Self, WriteError> {
        Self::with_options(w, header, WriterOptions::default())
    }

    pub fn with_options(
        mut w: W,
        header: &Header,
        opts: WriterOptions,
    ) -> Result<Self, WriteError> {
        let bytes = encode_header(header, VERSION_MAJOR, VERSION_MINOR)?;
        w.write_all(&bytes)
            .map_err(|source| WriteError::Io { offset: 0, source })?;
        let opts = WriterOptions {
            block_bytes: opts.block_bytes.clamp(1, MAX_BLOCK_PAYLOAD as usize / 2),
            max_sockets: opts.max_sockets.clamp(1, MAX_SOCKET_ID as usize),
            max_threads: opts.max_threads.max(1),
            max_labels: opts.max_labels.clamp(1, MAX_LABEL_ID as usize),
        };
        Ok(LogWriter {
            inner: Some(w),
            opts,
            buf: Vec::with_capacity(opts.block_bytes + 256),
            scratch: Vec::with_capacity(256),
            offset: bytes.len() as u64,
            block_index: 0,
            prev_ts: 0,
            sockets: FxHashMap::default(),
            free_ids: Vec::new(),
            next_id: 0,
            threads: FxHashMap::default(),
            labels: FxHashMap::default(),
            ext: Vec::with_capacity(256),
            events: 0,
            raw: header.is_raw(),
            poisoned: false,
        })
    }

    /// Events written so far (for [`EndStats::events_written`]).
    pub fn events_written(&self) -> u64 {
        self.events
    }

    /// Bytes handed to the underlying writer so far (excluding the block
    /// being filled).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    pub fn write(&mut self, rec: &Record) -> Result<(), WriteError> {
        match rec {
            Record::Event(e) => self.write_event(e),
            Record::Thread(t) => self.write_thread(t),
            Record::Checkpoint(c) => self.write_checkpoint(c),
        }
    }

    pub fn write_thread(&mut self, t: &ThreadInfo) -> Result<(), WriteError> {
        self.check()?;
        if self.raw {
            // A raw log's thread names are the recorder's own records.
            return Err(WriteError::Mixed {
                what: "a Thread record",
                log: "raw",
            });
        }
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        varint::put(&mut body, t.pid as u64);
        varint::put(&mut body, t.tid as u64);
        let r = put_str(
            &mut body,
            &t.comm,
            "thread comm",
            MAX_BLOCK_PAYLOAD as usize / 4,
        );
        if r.is_ok() {
            self.push_record(kind::THREAD, &body);
        }
        self.scratch = body;
        r?;
        self.maybe_flush_block()
    }

    pub fn write_checkpoint(&mut self, c: &Checkpoint) -> Result<(), WriteError> {
        self.check()?;
        let mut b = [0u8; 20];
        let mut n = 0;
        varint::put_arr(&mut b, &mut n, c.ts_ns);
        varint::put_arr(&mut b, &mut n, c.lost_total);
        self.push_record(kind::CHECKPOINT, &b[..n]);
        self.maybe_flush_block()
    }

    pub fn write_event(&mut self, e: &Event) -> Result<(), WriteError> {
        self.check()?;
        if self.raw {
            return Err(WriteError::Mixed {
                what: "an Event",
                log: "raw",
            });
        }
        let mut ext = std::mem::take(&mut self.ext);
        let r = self.write_event_in(e, &mut ext);
        self.ext = ext;
        r
    }

    /// [`LogWriter::write_event`], with `ext` as scratch for the event's
    /// data extension or a new label's body.
    fn write_event_in(&mut self, e: &Event, ext: &mut Vec<u8>) -> Result<(), WriteError> {
        // The data extension (raw bytes) is encoded, and so checked, before
        // anything is interned, so that an error leaves the stream
        // consistent.
        ext.clear();
        let label = match e.data.as_deref() {
            Some(Data::Label(l)) => Some(l),
            Some(Data::Bytes { offset, bytes }) => {
                put_bytes(ext, *offset, bytes)?;
                None
            }
            _ => None,
        };
        let known_label =
            label.is_some_and(|l| self.labels.contains_key(&(Arc::as_ptr(l) as usize)));
        // Decide on a reset first: it clears every table, so it must come
        // before any interning record of this event, which is then written
        // afresh.
        let known_thread = self.threads.get(&e.tid).copied();
        let known_sock = self.sockets.contains_key(&e.sock);
        if (known_thread.is_none() && self.threads.len() >= self.opts.max_threads)
            || (!known_sock && self.sockets.len() >= self.opts.max_sockets)
            || (label.is_some() && !known_label && self.labels.len() >= self.opts.max_labels)
        {
            self.reset();
            return self.write_event_in(e, ext);
        }
        let label_id = match label {
            Some(l) => Some(self.label_id(l)?),
            None => None,
        };
        if known_thread != Some((e.pid, e.cgroup)) {
            let mut b = [0u8; 30];
            let mut n = 0;
            varint::put_arr(&mut b, &mut n, e.tid as u64);
            varint::put_arr(&mut b, &mut n, e.pid as u64);
            varint::put_arr(&mut b, &mut n, e.cgroup);
            self.push_record(kind::THREAD_STATE, &b[..n]);
            self.threads.insert(e.tid, (e.pid, e.cgroup));
        }
        let sid = match self.sockets.get_mut(&e.sock) {
            Some(s) if s.netns == e.netns && s.local == e.local && s.remote == e.remote => s.id,
            Some(s) => {
                s.netns = e.netns;
                s.local = e.local;
                s.remote = e.remote;
                s.exp_seq = [0; 2];
                let id = s.id;
                self.emit_socket(id, e);
                id
            }
            None => {
                let id = match self.free_ids.pop() {
                    Some(id) => id,
                    None => {
                        self.next_id += 1;
                        self.next_id - 1
                    }
                };
                self.sockets.insert(
                    e.sock,
                    SockState {
                        id,
                        netns: e.netns,
                        local: e.local,
                        remote: e.remote,
                        exp_seq: [0; 2],
                    },
                );
                self.emit_socket(id, e);
                id
            }
        };

        // The Event record itself.
        let mut b = [0u8; 64];
        b[0] = e.op as u8 | (e.syscall as u8) << 3;
        b[1] = e.flags;
        let mut n = 2;
        varint::put_arr(
            &mut b,
            &mut n,
            varint::zigzag(e.ts_ns.wrapping_sub(self.prev_ts) as i64),
        );
        varint::put_arr(&mut b, &mut n, e.tid as u64);
        varint::put_arr(&mut b, &mut n, sid as u64);
        varint::put_arr(&mut b, &mut n, varint::zigzag(e.ret));
        if e.flags & flags::SEQ != 0 {
            let s = self.sockets.get_mut(&e.sock).expect("interned above");
            let d = dir(e.op);
            let delta = e.seq.wrapping_sub(s.exp_seq[d]) as i32;
            varint::put_arr(&mut b, &mut n, varint::zigzag32(delta) as u64);
            s.exp_seq[d] = seq_after(e);
        } else {
            varint::put_arr(&mut b, &mut n, e.seq as u64);
        }
        if let Some(id) = label_id {
            b[n] = data_kind::LABEL_REF;
            n += 1;
            varint::put_arr(&mut b, &mut n, id as u64);
        }
        self.push_record2(kind::EVENT, &b[..n], ext);
        self.prev_ts = e.ts_ns;
        self.events += 1;
        if e.op == Op::Close {
            if let Some(s) = self.sockets.remove(&e.sock) {
                self.free_ids.push(s.id);
            }
        }
        self.maybe_flush_block()
    }

    /// Writes one record of a raw capture (a log with
    /// [`header_flags::RAW`]): `bytes` as the recorder read them from stream
    /// (ring) `stream`, and the label the recorder made of the message bytes
    /// it took out of them, if any. Counts as one event written.
    pub fn write_raw(
        &mut self,
        stream: u32,
        bytes: &[u8],
        label: Option<&Arc<Label>>,
    ) -> Result<(), WriteError> {
        self.check()?;
        if !self.raw {
            return Err(WriteError::Mixed {
                what: "a Raw record",
                log: "event",
            });
        }
        if bytes.len() > MAX_RAW_BYTES {
            return Err(WriteError::TooLong {
                what: "raw record",
                len: bytes.len(),
                max: MAX_RAW_BYTES,
            });
        }
        let label_id = match label {
            None => None,
            Some(l) => Some(self.label_id(l)?),
        };
        let mut b = [0u8; 20];
        let mut n = 0;
        varint::put_arr(
            &mut b,
            &mut n,
            (u64::from(stream) << 1) | u64::from(label_id.is_some()),
        );
        if let Some(id) = label_id {
            varint::put_arr(&mut b, &mut n, u64::from(id));
        }
        self.push_record2(kind::RAW, &b[..n], bytes);
        self.events += 1;
        self.maybe_flush_block()
    }

    /// The id of a label, defined now (after a Reset if the table is full)
    /// if it has none. The label is encoded, and so checked, before
    /// anything is written.
    fn label_id(&mut self, l: &Arc<Label>) -> Result<u32, WriteError> {
        if let Some(&(id, _)) = self.labels.get(&(Arc::as_ptr(l) as usize)) {
            return Ok(id);
        }
        let mut ext = std::mem::take(&mut self.scratch);
        ext.clear();
        let r = put_label(&mut ext, l);
        if r.is_ok() {
            if self.labels.len() >= self.opts.max_labels {
                self.reset();
            }
            let id = self.labels.len() as u32;
            let mut b = [0u8; 10];
            let mut n = 0;
            varint::put_arr(&mut b, &mut n, id as u64);
            self.push_record2(kind::LABEL, &b[..n], &ext);
            self.labels
                .insert(Arc::as_ptr(l) as usize, (id, Arc::clone(l)));
        }
        self.scratch = ext;
        r.map(|()| self.labels.len() as u32 - 1)
    }

    fn emit_socket(&mut self, id: u32, e: &Event) {
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        varint::put(&mut body, id as u64);
        varint::put(&mut body, e.sock);
        varint::put(&mut body, e.netns as u64);
        put_addr(&mut body, &e.local);
        put_addr(&mut body, &e.remote);
        self.push_record(kind::SOCKET, &body);
        self.scratch = body;
    }

    fn reset(&mut self) {
        self.push_record(kind::RESET, &[]);
        self.sockets.clear();
        self.threads.clear();
        self.free_ids.clear();
        self.next_id = 0;
        self.labels.clear();
    }

    #[inline]
    fn push_record(&mut self, k: u8, body: &[u8]) {
        self.buf.push(k);
        varint::put(&mut self.buf, body.len() as u64);
        self.buf.extend_from_slice(body);
    }

    /// A record whose body is `a` then `b`.
    #[inline]
    fn push_record2(&mut self, k: u8, a: &[u8], b: &[u8]) {
        self.buf.push(k);
        varint::put(&mut self.buf, (a.len() + b.len()) as u64);
        self.buf.extend_from_slice(a);
        self.buf.extend_from_slice(b);
    }

    fn check(&self) -> Result<(), WriteError> {
        if self.poisoned || self.inner.is_none() {
            Err(WriteError::Poisoned)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn maybe_flush_block(&mut self) -> Result<(), WriteError> {
        if self.buf.len() >= self.opts.block_bytes {
            self.flush_block()
        } else {
            Ok(())
        }
    }

    fn flush_block(&mut self) -> Result<(), WriteError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(w) = self.inner.as_mut() else {
            return Err(WriteError::Poisoned);
        };
        let mut hdr = [0u8; BLOCK_HEADER_LEN];
        hdr[0..4].copy_from_slice(&(self.buf.len() as u32).to_le_bytes());
        hdr[4..8].copy_from_slice(&self.block_index.to_le_bytes());
        hdr[8..12].copy_from_slice(&crc32fast::hash(&self.buf).to_le_bytes());
        let hcrc = crc32fast::hash(&hdr[..12]);
        hdr[12..16].copy_from_slice(&hcrc.to_le_bytes());
        let r = w.write_all(&hdr).and_then(|_| w.write_all(&self.buf));
        if let Err(source) = r {
            self.poisoned = true;
            return Err(WriteError::Io {
                offset: self.offset,
                source,
            });
        }
        self.offset += (BLOCK_HEADER_LEN + self.buf.len()) as u64;
        self.block_index = self.block_index.wrapping_add(1);
        self.buf.clear();
        Ok(())
    }

    /// Ends the current block and flushes the underlying writer: everything
    /// written so far becomes readable.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.check()?;
        self.flush_block()?;
        let offset = self.offset;
        if let Some(w) = self.inner.as_mut() {
            w.flush().map_err(|source| {
                self.poisoned = true;
                WriteError::Io { offset, source }
            })?;
        }
        Ok(())
    }

    /// Writes the End trailer, flushes, and returns the underlying writer.
    pub fn finish(mut self, stats: EndStats) -> Result<W, WriteError> {
        self.check()?;
        let mut b = [0u8; 30];
        let mut n = 0;
        varint::put_arr(&mut b, &mut n, stats.events_emitted);
        varint::put_arr(&mut b, &mut n, stats.events_written);
        varint::put_arr(&mut b, &mut n, stats.events_lost);
        self.push_record(kind::END, &b[..n]);
        self.flush()?;
        Ok(self.inner.take().expect("checked above"))
    }
}

impl<W: Write> Drop for LogWriter<W> {
    /// Writes out the buffered records (without an End trailer).
    fn drop(&mut self) {
        if !self.poisoned && self.inner.is_some() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpath_core::Syscall;

    fn header() -> Header {
        Header {
            host: "h".into(),
            wall_minus_mono_ns: 0,
            clock: Clock::Monotonic,
            flags: 0,
            recorder: "t".into(),
            start_unix_ns: 0,
            raw_layout: String::new(),
        }
    }

    fn ev(sock: u64, tid: u32, op: Op) -> Event {
        Event {
            ts_ns: sock,
            netns: 1,
            cgroup: 0,
            pid: 1,
            tid,
            sock,
            op,
            syscall: Syscall::Unknown,
            flags: 0,
            ret: 0,
            seq: 0,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            data: None,
        }
    }

    #[test]
    fn closing_evicts_sockets_and_reuses_ids() {
        let mut w = LogWriter::new(Vec::new(), &header()).unwrap();
        for s in 0..10_000u64 {
            w.write_event(&ev(s, 1, Op::Send)).unwrap();
            w.write_event(&ev(s, 1, Op::Close)).unwrap();
        }
        assert_eq!(w.sockets.len(), 0);
        assert_eq!(w.next_id, 1);
    }

    #[test]
    fn tables_stay_within_their_caps() {
        let opts = WriterOptions {
            max_sockets: 10,
            max_threads: 5,
            ..WriterOptions::default()
        };
        let mut w = LogWriter::with_options(Vec::new(), &header(), opts).unwrap();
        for s in 0..1000u64 {
            w.write_event(&ev(s, s as u32 % 77, Op::Send)).unwrap();
            assert!(w.sockets.len() <= 10 && w.threads.len() <= 5);
            assert!(w.next_id <= 10);
        }
    }
}
