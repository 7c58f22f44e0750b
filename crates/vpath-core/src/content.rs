//! Application content: the first bytes of messages, put together from the
//! chunks that sources give ([`Data`]) and read with `vpath-proto` into
//! [`Label`]s (a span's protocol, name and attributes).
//!
//! Sources give either raw bytes (payload capture, which the user opted into)
//! or labels made at the source from a short built-in prefix (the default:
//! no bytes leave the recorder). Both end here as one [`Label`] per message.
//! Nothing here decides causality: content only names what the thread and
//! socket model already found.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use vpath_proto::{Protocol, Redact};

use crate::event::{Data, Event, Label, Op};

/// The most bytes of one message that are kept while it is put together.
pub const MAX_MSG_BYTES: usize = 64 * 1024;

/// The start of one message, as its chunks arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsgStart {
    bytes: Vec<u8>,
    /// A chunk did not continue the bytes before it (an operation in between
    /// carried none): nothing after the gap is kept.
    gap: bool,
    /// The last label a source made for this message.
    label: Option<Arc<Label>>,
}

impl MsgStart {
    /// Adds what one operation of the message carried.
    pub fn add(&mut self, data: &Data) {
        match data {
            Data::Bytes { offset, bytes } => {
                let off = *offset as usize;
                if self.gap || off < self.bytes.len() {
                    // After a gap, or a repeat of bytes we have.
                    return;
                }
                if off > self.bytes.len() {
                    self.gap = true;
                    return;
                }
                let room = MAX_MSG_BYTES.saturating_sub(self.bytes.len());
                self.bytes
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Data::Label(l) => self.label = Some(l.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.label.is_none()
    }

    /// The message read as a request.
    pub fn request(&self) -> Option<Label> {
        if !self.bytes.is_empty() {
            return vpath_proto::parse_request(&self.bytes, Redact::None).map(from_proto);
        }
        self.label.as_deref().filter(|l| !l.reply).cloned()
    }

    /// The message read as the reply to a request of `protocol`.
    pub fn reply(&self, protocol: Option<&str>) -> Option<Label> {
        if !self.bytes.is_empty() {
            let p = protocol.and_then(Protocol::from_name);
            return vpath_proto::parse_response(&self.bytes, p).map(|l| {
                let mut l = from_proto(l);
                l.reply = true;
                l
            });
        }
        self.label.as_deref().filter(|l| l.reply).cloned()
    }
}

/// What one request/reply exchange carried, while it is open; read into
/// labels when it is final ([`Content::settle`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    pub request: MsgStart,
    pub reply: MsgStart,
    /// Set by [`Content::settle`].
    pub request_label: Option<Label>,
    pub reply_label: Option<Label>,
}

impl Content {
    /// Reads the messages into labels and drops their bytes.
    pub fn settle(&mut self) {
        self.request_label = self.request.request();
        let proto = self.request_label.as_ref().map(|l| l.protocol.as_ref());
        self.reply_label = self.reply.reply(proto);
        self.request = MsgStart::default();
        self.reply = MsgStart::default();
    }
}

/// What a span shows of an exchange: protocol, name, attributes.
pub type SpanFields = (
    Option<String>,
    Option<String>,
    std::collections::BTreeMap<String, String>,
);

impl Content {
    /// The span fields of a settled exchange: the request's protocol, name
    /// and attributes, and the reply's attributes.
    pub fn span_fields(c: Option<&Content>) -> SpanFields {
        let mut attrs = std::collections::BTreeMap::new();
        let Some(c) = c else {
            return (None, None, attrs);
        };
        let mut protocol = None;
        let mut name = None;
        if let Some(l) = &c.request_label {
            protocol = Some(l.protocol.to_string());
            name = (!l.name.is_empty()).then(|| l.name.clone());
            attrs.extend(l.attrs.iter().map(|(k, v)| (k.to_string(), v.clone())));
        }
        if let Some(l) = &c.reply_label {
            if protocol.is_none() {
                protocol = Some(l.protocol.to_string());
            }
            attrs.extend(l.attrs.iter().map(|(k, v)| (k.to_string(), v.clone())));
        }
        (protocol, name, attrs)
    }
}

/// Adds an event's data to the request or reply side of `content`.
pub fn add_data(content: &mut Option<Box<Content>>, e: &Event, reply: bool) {
    if let Some(d) = e.data.as_deref() {
        let c = content.get_or_insert_with(Default::default);
        if reply {
            c.reply.add(d)
        } else {
            c.request.add(d)
        }
    }
}

/// Reads a message start as a request, else as a reply in the socket's
/// protocol context.
fn read(bytes: &[u8], context: Option<Protocol>) -> Option<Reading> {
    let (l, reply) = match vpath_proto::parse_request(bytes, Redact::Literals) {
        Some(l) => (l, false),
        None => (vpath_proto::parse_response(bytes, context)?, true),
    };
    let fingerprint = fingerprint(&l, reply);
    let request = (!reply).then_some(l.protocol);
    let mut label = from_proto(l);
    label.reply = reply;
    Some(Reading {
        label: Arc::new(label),
        fingerprint,
        request,
    })
}

fn fingerprint(l: &vpath_proto::Label, reply: bool) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    l.protocol.hash(&mut h);
    l.name.hash(&mut h);
    l.attrs.hash(&mut h);
    reply.hash(&mut h);
    h.finish()
}

/// Converts `vpath-proto`'s reading into the event model's [`Label`].
pub fn from_proto(l: vpath_proto::Label) -> Label {
    Label {
        protocol: Cow::Borrowed(l.protocol.name()),
        name: l.name,
        attrs: l
            .attrs
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect(),
        reply: false,
    }
}

/// The recorder's default: turns the raw first bytes of each message into a
/// [`Label`] at the source, with literals redacted, so that no raw bytes are
/// kept. Feed it a host's events in stream order.
///
/// Each socket's message start is put together from its chunks; every event
/// whose chunk changes the reading carries the new label (the analyzer keeps
/// the last label of a message), the others carry nothing. Memory: one
/// prefix per open socket (at most the kernel's capture size, 64 bytes by
/// default), freed at close; past `max_sockets` sockets all are forgotten.
#[derive(Debug)]
pub struct Labeler {
    socks: FxHashMap<u64, LabelerSock>,
    max_sockets: usize,
    max_bytes: usize,
    /// Readings by message start, found by a keyed 64-bit hash of the
    /// protocol context (0: none, else 1 + its index in `Protocol::ALL`)
    /// and the bytes. Most messages repeat a start seen before (the same
    /// statement, URL or key); those are not parsed again. `None`: not
    /// recognized. The hash, not the bytes, is kept: no allocation per
    /// reading and no compare against a cold copy (a third of the
    /// labeler's time on Tomcat). Two starts with equal hashes would share
    /// a reading: with at most [`MAX_READINGS`] readings and a per-process
    /// random key, about 1 in 2^41 per table, and a reading only names a
    /// span (it never decides causality).
    readings: FxHashMap<u64, Option<Reading>>,
    /// The generation before: consulted on a miss, emptied as readings
    /// move back (see [`Labeler::label`]).
    old_readings: FxHashMap<u64, Option<Reading>>,
    /// The key of the readings' hash.
    hasher: foldhash::quality::RandomState,
    /// The labels of those readings by fingerprint: equal labels read from
    /// different starts are one `Arc`.
    labels: FxHashMap<u64, Arc<Label>>,
    /// With [`Labeler::report_unread`]: sockets that became unread (true)
    /// or were forgotten while unread (false), in that order, until
    /// [`Labeler::take_unread_changes`].
    unread_changes: Option<Vec<(u64, bool)>>,
    /// Message starts parsed (not found among the readings).
    parsed: u64,
}

/// A reading kept for reuse.
#[derive(Debug)]
struct Reading {
    label: Arc<Label>,
    fingerprint: u64,
    /// The protocol of a request (it becomes the socket's context).
    request: Option<Protocol>,
}

/// Readings kept at most (two generations of half as many each).
const MAX_READINGS: usize = 4096;

#[derive(Debug, Default)]
struct LabelerSock {
    op: Option<Op>,
    bytes: Vec<u8>,
    gap: bool,
    /// A fingerprint of the last label handed out for the current message
    /// (a 64-bit hash: a clone of the label cost more than its parse).
    last: Option<u64>,
    /// The protocol of the last request seen on this socket (in either
    /// direction: this end may be the client or the server).
    protocol: Option<Protocol>,
    /// Messages in a row that were not recognized.
    misses: u8,
}

/// A socket with this many unrecognized messages in a row, and no request
/// ever recognized, is taken to speak a protocol we do not know.
const UNKNOWN_AFTER: u8 = 4;

impl LabelerSock {
    /// Its bytes are not read any more (see [`UNKNOWN_AFTER`]); for good.
    fn unread(&self) -> bool {
        self.protocol.is_none() && self.misses >= UNKNOWN_AFTER
    }
}

impl Labeler {
    /// `max_bytes`: the prefix the recorder asked the kernel for.
    pub fn new(max_bytes: usize) -> Labeler {
        Labeler {
            socks: FxHashMap::default(),
            max_sockets: 1 << 16,
            max_bytes,
            readings: FxHashMap::default(),
            old_readings: FxHashMap::default(),
            labels: FxHashMap::default(),
            hasher: foldhash::quality::RandomState::default(),
            unread_changes: None,
            parsed: 0,
        }
    }

    /// From now on, keep a list of the sockets whose bytes the labeler
    /// stops reading (a protocol it does not know) and of those forgotten
    /// after that, for [`Labeler::take_unread_changes`]: a capture can then
    /// stop copying their bytes. Whoever turns this on must take the list.
    pub fn report_unread(&mut self) {
        self.unread_changes.get_or_insert_with(Vec::new);
    }

    /// Sockets that became unread (`true`) or were forgotten while unread
    /// (`false`) since the last call, in order.
    pub fn take_unread_changes(&mut self) -> Vec<(u64, bool)> {
        self.unread_changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// How many message starts were parsed so far (the others were found
    /// among the readings kept).
    pub fn parsed(&self) -> u64 {
        self.parsed
    }

    /// Replaces the event's raw bytes by a label (or by nothing).
    pub fn apply(&mut self, e: &mut Event) {
        if e.op == Op::Close {
            self.forget(e.sock);
            return;
        }
        if let Some(Data::Bytes { offset, bytes }) = e.data.as_deref() {
            e.data = self
                .label(e.sock, e.op, *offset, bytes)
                .map(|l| Box::new(Data::Label(l)));
        }
    }

    /// The socket is closed: its message start is forgotten.
    pub fn forget(&mut self, sock: u64) {
        if let Some(s) = self.socks.remove(&sock) {
            if s.unread() {
                if let Some(v) = self.unread_changes.as_mut() {
                    v.push((sock, false));
                }
            }
        }
    }

    /// Reads one operation's chunk of its message (`bytes` at `offset`) and
    /// returns the label the event should carry: a new reading of the
    /// message, or nothing when the reading did not change. Feed each
    /// socket's operations in order.
    pub fn label(&mut self, sock: u64, op: Op, offset: u32, bytes: &[u8]) -> Option<Arc<Label>> {
        if self.socks.len() >= self.max_sockets && !self.socks.contains_key(&sock) {
            if let Some(v) = self.unread_changes.as_mut() {
                v.extend(
                    self.socks
                        .iter()
                        .filter(|(_, s)| s.unread())
                        .map(|(&k, _)| (k, false)),
                );
            }
            self.socks.clear();
        }
        let s = self.socks.entry(sock).or_default();
        let off = offset as usize;
        if off == 0 || s.op != Some(op) {
            // A new message. A socket whose messages are not recognized
            // (after a few, none of them) is not read any more.
            if s.op.is_some() {
                s.misses = if s.last.is_some() {
                    0
                } else {
                    s.misses.saturating_add(1)
                };
            }
            s.op = Some(op);
            s.bytes.clear();
            s.gap = off != 0;
            s.last = None;
        }
        if s.unread() {
            if s.misses == UNKNOWN_AFTER {
                // Reported once: past UNKNOWN_AFTER the count only grows.
                s.misses += 1;
                if let Some(v) = self.unread_changes.as_mut() {
                    v.push((sock, true));
                }
            }
            return None;
        }
        if s.gap || off != s.bytes.len() {
            s.gap |= off > s.bytes.len();
            return None;
        }
        let room = self.max_bytes.saturating_sub(s.bytes.len());
        s.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let key = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = self.hasher.build_hasher();
            h.write_u8(
                s.protocol
                    .and_then(|p| Protocol::ALL.iter().position(|&q| q == p))
                    .map_or(0, |i| i as u8 + 1),
            );
            h.write(&s.bytes);
            h.finish()
        };
        // Most starts were read before: one probe of the table.
        if let Some(r) = self.readings.get(&key) {
            return hand_out(s, r.as_ref());
        }
        // Past the cap, the table becomes the old generation; a reading
        // used again comes back from it without a parse, so the readings
        // in use survive a stream of one-off starts (a handshake's random
        // salt, a reply's values).
        if self.readings.len() >= MAX_READINGS / 2 {
            self.old_readings = std::mem::take(&mut self.readings);
        }
        if self.labels.len() >= MAX_READINGS {
            self.labels.clear();
        }
        let r = match self.old_readings.remove(&key) {
            Some(r) => r,
            None => {
                self.parsed += 1;
                let mut r = read(&s.bytes, s.protocol);
                // Different starts often read the same (literals redacted,
                // a reply's values dropped): hand out one shared label, so
                // that the log writer, which interns by the shared label,
                // writes it once.
                if let Some(r) = r.as_mut() {
                    match self.labels.get(&r.fingerprint) {
                        Some(l) if **l == *r.label => r.label = Arc::clone(l),
                        Some(_) => {}
                        None => {
                            self.labels.insert(r.fingerprint, Arc::clone(&r.label));
                        }
                    }
                }
                r
            }
        };
        hand_out(s, self.readings.entry(key).or_insert(r).as_ref())
    }
}

/// What a socket's event carries for `reading` of its message: its label
/// if it is new for this message, else nothing.
fn hand_out(s: &mut LabelerSock, reading: Option<&Reading>) -> Option<Arc<Label>> {
    let r = reading?;
    if let Some(p) = r.request {
        s.protocol = Some(p);
    }
    // The same reading as the event before: nothing new to carry. (Two
    // different readings with equal 64-bit hashes would lose the second;
    // the odds are negligible next to a wrong reading's.)
    if s.last == Some(r.fingerprint) {
        return None;
    }
    s.last = Some(r.fingerprint);
    Some(Arc::clone(&r.label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(d: Option<Arc<Label>>) -> Option<Arc<Label>> {
        d
    }

    #[test]
    fn sockets_it_stops_reading_are_reported_once_and_when_forgotten() {
        let unknown = [0x9cu8, 0x01, 0xfe, 0x33, 0x00, 0x7f];
        let http = b"GET /a HTTP/1.1\r\n\r\n";
        let talk = |l: &mut Labeler, sock, bytes: &[u8], n: usize| {
            for i in 0..n {
                let op = if i % 2 == 0 { Op::Send } else { Op::Recv };
                l.label(sock, op, 0, bytes);
            }
        };
        // Not asked: nothing is kept.
        let mut quiet = Labeler::new(64);
        talk(&mut quiet, 1, &unknown, 12);
        assert!(quiet.take_unread_changes().is_empty());

        let mut l = Labeler::new(64);
        l.report_unread();
        talk(&mut l, 1, &unknown, UNKNOWN_AFTER as usize);
        assert!(l.take_unread_changes().is_empty(), "not yet given up");
        talk(&mut l, 1, &unknown, 8);
        talk(&mut l, 2, http, 12);
        assert_eq!(l.take_unread_changes(), vec![(1, true)], "once");
        l.forget(2);
        l.forget(1);
        l.forget(1);
        assert_eq!(l.take_unread_changes(), vec![(1, false)]);
    }

    #[test]
    fn a_repeated_message_start_reuses_its_reading() {
        let mut l = Labeler::new(64);
        let text = "SELECT * FROM t WHERE a=7";
        let mut q = vec![text.len() as u8 + 1, 0, 0, 0, 0x03];
        q.extend_from_slice(text.as_bytes());
        let a = label(l.label(1, Op::Send, 0, &q)).expect("a label");
        let b = label(l.label(2, Op::Send, 0, &q)).expect("a label");
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second socket's start is not parsed again"
        );
        assert_eq!(a.name, "SELECT");
        assert_eq!(
            a.attrs
                .iter()
                .find(|(k, _)| k == "db.query.text")
                .unwrap()
                .1,
            "SELECT * FROM t WHERE a=?"
        );
        // The next message on socket 1 (its reply) is read in that socket's
        // protocol: an OK packet is a MySQL reply.
        let ok = b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00";
        let r = label(l.label(1, Op::Recv, 0, ok)).expect("a reply label");
        assert!(r.reply);
        assert_eq!(r.protocol, "mysql");
        // The same bytes on a socket with no protocol yet are read again, in
        // that (empty) context: the context is part of the key.
        let _ = l.label(3, Op::Recv, 0, ok);
        assert_eq!(l.readings.len(), 3);
    }

    #[test]
    fn starts_that_read_the_same_share_one_label() {
        // Two URLs that differ only in a redacted literal: two readings,
        // one label.
        let mut l = Labeler::new(64);
        let a = label(l.label(1, Op::Recv, 0, b"GET /item?id=7 HTTP/1.1\r\n")).unwrap();
        let b = label(l.label(2, Op::Recv, 0, b"GET /item?id=8 HTTP/1.1\r\n")).unwrap();
        assert_eq!(l.readings.len(), 2);
        assert_eq!(a, b);
        assert!(Arc::ptr_eq(&a, &b));
        // A different label stays apart.
        let c = label(l.label(3, Op::Recv, 0, b"GET /other?id=8 HTTP/1.1\r\n")).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn the_reading_cache_is_bounded() {
        let mut l = Labeler::new(64);
        for i in 0..(MAX_READINGS + 10) {
            let get = format!("GET /p{i} HTTP/1.1\r\n");
            assert!(label(l.label(i as u64, Op::Recv, 0, get.as_bytes())).is_some());
        }
        assert!(l.readings.len() + l.old_readings.len() <= MAX_READINGS);
        assert!(l.labels.len() <= MAX_READINGS);
    }

    #[test]
    fn a_reading_in_use_survives_a_flood_of_one_off_starts() {
        let mut l = Labeler::new(64);
        let hot = b"GET /hot HTTP/1.1\r\n";
        let first = label(l.label(1, Op::Recv, 0, hot)).unwrap();
        for i in 0..3 * MAX_READINGS as u64 {
            let once = format!("GET /once{i} HTTP/1.1\r\n");
            assert!(label(l.label(10 + i, Op::Recv, 0, once.as_bytes())).is_some());
            l.forget(10 + i);
            if i % 100 == 0 {
                // In use all along: never parsed again, so the same label.
                let again = label(l.label(2 + i % 2, Op::Recv, 0, hot)).unwrap();
                assert!(
                    Arc::ptr_eq(&first, &again),
                    "read again after {i} one-off starts"
                );
                l.forget(2 + i % 2);
            }
        }
        assert!(l.readings.len() + l.old_readings.len() <= MAX_READINGS);
    }
}
