//! From kept ring records to ordered [`Record`]s: what the [`crate::Recorder`]
//! does with each poll's records, and what `vpath analyze` does with a raw
//! log, which holds the same records and poll boundaries. One code path, so
//! a raw capture replays into exactly the records a live one hands out.
//!
//! No kernel needed: tested with records built by hand.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use vpath_core::{flags, Checkpoint, Event, Label, Op, Record};

use crate::order::{Released, Reorder};
use crate::raw::{self, RawError};

/// The name of the layout of the records a [`Replay`] reads, as a raw log's
/// header names it: the kernel ABI version of `bpf/vpath.h`.
pub fn raw_layout() -> String {
    format!("vpath-bpf abi {}", raw::ABI_VERSION)
}

/// The raw layouts a [`Replay`] reads: this build's and the earlier ones
/// whose stored records are laid out alike. ABI 4 never sets the placement
/// flags ([`raw::F_START`], [`raw::F_UNSURE`]: the kernel placed every
/// operation); ABI 6 added batches, which exist in rings only (a raw log
/// stores their records one by one).
pub const READ_LAYOUTS: [&str; 3] = ["vpath-bpf abi 6", "vpath-bpf abi 5", "vpath-bpf abi 4"];

/// Whether a [`Replay`] reads records of `layout` (a raw log header's
/// `raw_layout`): one of [`READ_LAYOUTS`].
pub fn reads_layout(layout: &str) -> bool {
    READ_LAYOUTS.contains(&layout)
}

/// Rings a replay accepts: one per possible CPU, and Linux has at most 8192.
pub const MAX_RINGS: usize = 8192;

/// Turns the kept records of a capture (see [`raw::take_record`]), one
/// poll after another, into records in timestamp order with loss
/// checkpoints.
///
/// Per poll: [`Replay::record`] for every record of every ring, then
/// [`Replay::checkpoint`] with the poll's horizon. The checkpoint contract
/// of [`crate::Recorder::poll_now`] holds as long as the polls are
/// replayed as they were made.
#[derive(Debug, Default)]
pub struct Replay {
    /// Each ring's events of the current poll, merged into `order` at the
    /// checkpoint (capacity kept across polls).
    rings: Vec<Vec<Event>>,
    order: Reorder,
    /// Socket events read since the last checkpoint.
    events_read: u64,
    threads_out: u64,
    bad_records: u64,
    /// Records that did not parse, since the start: each is an event
    /// missing from the stream, so checkpoints count it as lost.
    bad_total: u64,
    last_bad: Option<RawError>,
    run_rest_events: u64,
    places: Places,
}

/// What the replay decides of the operations the kernel could not place in
/// their messages ([`raw::F_UNSURE`]): the kernel knows a thread's recent
/// sockets only (`vp_msg_place` in bpf/vpath.bpf.c), so an operation on a
/// socket that another thread used since is placed here, from the socket's
/// operations in timestamp order. It begins a message when the socket's last
/// operation went the other way (or none was seen); otherwise (the message
/// goes on, or operations are missing) the bytes the kernel copied as if it
/// began one are not a message start: the event's bytes or label are
/// dropped, and so are those of the rest of that message. Never a wrong
/// label; at worst a missing one, and only when threads share a message.
#[derive(Debug, Default)]
struct Places {
    socks: FxHashMap<u64, Place>,
    /// Events whose message bytes were dropped here.
    dropped: u64,
    /// A placement bit was seen. Until then nothing is followed: with
    /// message capture on, the first operation the kernel sees of any
    /// thread on any socket carries one (START or UNSURE), so a capture
    /// without any (capture off, or a log of ABI 4) never needs placing.
    active: bool,
}

#[derive(Clone, Copy, Debug)]
struct Place {
    op: Op,
    /// The socket's last operation did not begin a message that the
    /// replay could place.
    unplaced: bool,
}

/// Sockets followed at most: past it all are forgotten (an unsure
/// operation on a forgotten socket counts as a message start, as on a
/// socket first seen).
const MAX_PLACES: usize = 1 << 16;

impl Places {
    /// Every event, in timestamp order: takes the placement bits off and
    /// drops the bytes that do not begin a message.
    fn pass(&mut self, e: &mut Event) {
        let bits = e.flags & (raw::F_START | raw::F_UNSURE);
        e.flags &= !(raw::F_START | raw::F_UNSURE);
        self.active |= bits != 0;
        if !self.active {
            return;
        }
        match e.op {
            Op::Close => {
                self.socks.remove(&e.sock);
                return;
            }
            Op::Send | Op::Recv if e.flags & flags::SEQ != 0 => {}
            _ => return,
        }
        if self.socks.len() >= MAX_PLACES && !self.socks.contains_key(&e.sock) {
            self.socks.clear();
        }
        let fresh = Place {
            op: e.op,
            unplaced: false,
        };
        let (prev, place) = match self.socks.entry(e.sock) {
            Entry::Occupied(o) => (Some(*o.get()), o.into_mut()),
            Entry::Vacant(v) => (None, v.insert(fresh)),
        };
        let unplaced = if bits & raw::F_START != 0 {
            false
        } else if bits & raw::F_UNSURE != 0 {
            prev.is_some_and(|p| p.op == e.op)
        } else {
            // The kernel placed it exactly, after an operation of the same
            // message.
            prev.is_some_and(|p| p.op == e.op && p.unplaced)
        };
        *place = Place { op: e.op, unplaced };
        if unplaced && e.data.take().is_some() {
            self.dropped += 1;
        }
    }
}

/// What one [`Replay::checkpoint`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayStats {
    /// Socket events read since the previous checkpoint.
    pub events_read: u64,
    /// Thread records handed out since the previous checkpoint.
    pub threads_out: u64,
    /// Records that did not parse since the previous checkpoint.
    pub bad_records: u64,
    pub released: Released,
    pub checkpoint: Checkpoint,
}

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    /// One kept record of ring `ring`, with the label its message bytes
    /// were read as. Thread records go to `out` at once; socket events wait
    /// for the checkpoint. A record that does not parse is counted and
    /// returned as the error (and the replay goes on).
    pub fn record(
        &mut self,
        ring: usize,
        kept: &[u8],
        label: Option<Arc<Label>>,
        out: &mut impl FnMut(Record),
    ) -> Result<(), RawError> {
        if ring >= MAX_RINGS {
            // A crafted log could name any ring: never allocate for it.
            let e = RawError::RingOutOfRange {
                ring,
                max: MAX_RINGS,
            };
            self.bad_records += 1;
            self.bad_total += 1;
            self.last_bad = Some(e.clone());
            return Err(e);
        }
        if ring >= self.rings.len() {
            self.rings.resize_with(ring + 1, Vec::new);
        }
        let events = &mut self.rings[ring];
        let threads = &mut self.threads_out;
        // The kernel's placement travels on the event (bits the core's
        // flags do not use) until `Places::pass` takes it off.
        let place = match kept {
            [raw::REC_SOCK, _, f, ..] => f & (raw::F_START | raw::F_UNSURE),
            _ => 0,
        };
        let mut push = |r: Record| match r {
            Record::Event(mut e) => {
                e.flags |= place;
                events.push(e)
            }
            r => {
                *threads += 1;
                out(r);
            }
        };
        match raw::parse_kept(kept, label, &mut push) {
            Ok(n) => {
                self.events_read += u64::from(n);
                self.run_rest_events += u64::from(n.saturating_sub(1));
                Ok(())
            }
            Err(e) => {
                self.bad_records += 1;
                self.bad_total += 1;
                self.last_bad = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The end of a poll: every event with `ts <= horizon` is in (or counted
    /// in `lost_total`). Hands them out in timestamp order, then the
    /// checkpoint, whose lost total also counts the records that did not
    /// parse (events the analysis will not see: their paths must end
    /// incomplete, not stitched without them).
    pub fn checkpoint(
        &mut self,
        horizon: u64,
        lost_total: u64,
        out: &mut impl FnMut(Record),
    ) -> ReplayStats {
        self.release(horizon, lost_total, false, out)
    }

    /// The end of the capture: hands out everything held, then a last
    /// checkpoint (at `horizon` or the last event, whichever is later).
    pub fn finish(
        &mut self,
        horizon: u64,
        lost_total: u64,
        out: &mut impl FnMut(Record),
    ) -> ReplayStats {
        self.release(horizon, lost_total, true, out)
    }

    fn release(
        &mut self,
        horizon: u64,
        lost_total: u64,
        all: bool,
        out: &mut impl FnMut(Record),
    ) -> ReplayStats {
        self.order.push_merged(&mut self.rings);
        let lost_total = lost_total + self.bad_total;
        let places = &mut self.places;
        let mut out = |mut r: Record| {
            if let Record::Event(e) = &mut r {
                places.pass(e);
            }
            out(r)
        };
        let (released, checkpoint) = if all {
            self.order.finish(horizon, lost_total, &mut out)
        } else {
            self.order.release(horizon, lost_total, &mut out)
        };
        let st = ReplayStats {
            events_read: self.events_read,
            threads_out: self.threads_out,
            bad_records: self.bad_records,
            released,
            checkpoint,
        };
        self.events_read = 0;
        self.threads_out = 0;
        self.bad_records = 0;
        st
    }

    /// Events held for ordering.
    pub fn held(&self) -> usize {
        self.order.held()
    }

    pub fn last_checkpoint(&self) -> u64 {
        self.order.last_checkpoint()
    }

    /// Records that did not parse, since the start.
    pub fn bad_total(&self) -> u64 {
        self.bad_total
    }

    /// The last record that did not parse.
    pub fn last_bad_record(&self) -> Option<&RawError> {
        self.last_bad.as_ref()
    }

    /// Events whose message bytes (or label) were dropped because they did
    /// not begin a message (see `Places`), since the start.
    pub fn unplaced_events(&self) -> u64 {
        self.places.dropped
    }

    /// Events made beyond one per record (see
    /// [`crate::Counters::run_rest_events`]).
    pub fn run_rest_events(&self) -> u64 {
        self.run_rest_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{VpCommEvent, VpSockEvent, AF_INET, REC_COMM, REC_SOCK};
    use vpath_core::content::Labeler;
    use vpath_core::{flags, Data, Op};

    fn sock(ts: u64, cookie: u64, op: u8, data: &[u8]) -> Vec<u8> {
        let e = VpSockEvent {
            kind: REC_SOCK,
            op,
            flags: flags::SEQ,
            family: AF_INET,
            pid: 10,
            tid: 11,
            netns: 1,
            ts_ns: ts,
            cookie,
            ret: data.len().max(1) as i64,
            seq: 1000,
            sysnr: 1,
            lport: 80,
            rport: 5000,
            data_len: data.len() as u16,
            laddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            raddr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..VpSockEvent::default()
        };
        let mut b = e.to_bytes().to_vec();
        b.extend_from_slice(data);
        // A ring item is longer than its record: room for the most message
        // bytes it could carry.
        b.extend_from_slice(&[0xee; 24]);
        b
    }

    fn comm(tid: u32) -> Vec<u8> {
        let mut c = VpCommEvent {
            kind: REC_COMM,
            pid: 10,
            tid,
            ts_ns: 1,
            ..VpCommEvent::default()
        };
        c.comm[..3].copy_from_slice(b"web");
        c.to_bytes().to_vec()
    }

    /// One poll: (ring, ring item) pairs, then the horizon.
    type Poll = (Vec<(usize, Vec<u8>)>, u64);

    /// Replays ring items as a recorder keeps them, with or without a
    /// labeler, poll after poll.
    fn replay(polls: &[Poll], labels: bool) -> Vec<Record> {
        let mut labeler = labels.then(|| Labeler::new(64));
        let mut r = Replay::new();
        let mut out = Vec::new();
        let mut scratch = [0u8; 96];
        for (items, horizon) in polls {
            for (ring, item) in items {
                let (kept, label) = raw::take_record(item, labeler.as_mut(), &mut scratch).unwrap();
                r.record(*ring, kept, label, &mut |x| out.push(x)).unwrap();
            }
            r.checkpoint(*horizon, 0, &mut |x| out.push(x));
        }
        r.finish(0, 0, &mut |x| out.push(x));
        out
    }

    fn ts_of(recs: &[Record]) -> Vec<String> {
        recs.iter()
            .map(|r| match r {
                Record::Event(e) => format!("e{}", e.ts_ns),
                Record::Thread(t) => format!("t{}", t.tid),
                Record::Checkpoint(c) => format!("c{}", c.ts_ns),
            })
            .collect()
    }

    /// A data record with the kernel's placement: `fl` (F_START,
    /// F_UNSURE or 0), at stream position `seq`, `off` into its message.
    fn placed(ts: u64, op: u8, seq: u32, fl: u8, off: u16, data: &[u8]) -> Vec<u8> {
        let mut b = sock(ts, 1, op, data);
        let mut e = VpSockEvent::from_bytes(&b).unwrap();
        e.flags |= fl;
        e.seq = seq;
        e.data_off = off;
        b[..96].copy_from_slice(&e.to_bytes());
        b
    }

    #[test]
    fn unsure_operations_begin_a_message_only_after_the_other_direction() {
        use raw::{F_START, F_UNSURE};
        let get = b"GET /a HTTP/1.1\r\n\r\n";
        let items = vec![
            // First seen: a start.
            (0, placed(10, 2, 100, F_UNSURE, 0, get)),
            (
                0,
                placed(20, 1, 500, F_START, 0, b"HTTP/1.1 200 OK\r\n\r\n"),
            ),
            // Another thread goes on with the same reply: not a start.
            (1, placed(30, 1, 519, F_UNSURE, 0, b"<html>body</html>")),
            // ... and that thread's next piece, placed after its own one.
            (1, placed(40, 1, 536, 0, 17, b"more")),
            // The next request, by yet another thread: after the reply, so
            // a start.
            (0, placed(50, 2, 119, F_UNSURE, 0, get)),
        ];
        for labels in [false, true] {
            let got = replay(&[(items.clone(), 100)], labels);
            let events: Vec<&Event> = got
                .iter()
                .filter_map(|r| match r {
                    Record::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            assert_eq!(events.len(), 5);
            for e in &events {
                assert_eq!(
                    e.flags & (F_START | F_UNSURE),
                    0,
                    "placement bits never leave the replay"
                );
            }
            let has: Vec<bool> = events.iter().map(|e| e.data.is_some()).collect();
            assert_eq!(has, [true, true, false, false, true], "labels: {labels}");
            if !labels {
                assert!(matches!(
                    events[4].data.as_deref(),
                    Some(Data::Bytes { offset: 0, bytes }) if &bytes[..] == get
                ));
            }
        }
        // The kernel's own placement is kept as it is: an exact
        // continuation after a start keeps its bytes.
        let items = vec![
            (0, placed(10, 1, 100, F_START, 0, b"GET /a")),
            (0, placed(20, 1, 106, 0, 6, b" HTTP/1.1\r\n\r\n")),
        ];
        let got = replay(&[(items, 100)], false);
        let kept = got
            .iter()
            .filter(|r| matches!(r, Record::Event(e) if e.data.is_some()))
            .count();
        assert_eq!(kept, 2);
    }

    #[test]
    fn this_builds_layout_is_read() {
        assert_eq!(READ_LAYOUTS[0], raw_layout());
        assert!(reads_layout(&raw_layout()));
        assert!(reads_layout("vpath-bpf abi 4"));
        assert!(!reads_layout("vpath-bpf abi 3"));
    }

    #[test]
    fn rings_merge_in_time_order_and_events_wait_for_their_checkpoint() {
        let polls = vec![
            (
                vec![
                    (0, comm(11)),
                    (0, sock(10, 1, 1, b"")),
                    (0, sock(30, 1, 1, b"")),
                    (1, sock(20, 2, 2, b"")),
                    (1, sock(40, 2, 2, b"")),
                ],
                25,
            ),
            (vec![(1, sock(35, 2, 2, b""))], 100),
        ];
        let got = replay(&polls, false);
        assert_eq!(
            ts_of(&got),
            ["t11", "e10", "e20", "c25", "e30", "e35", "e40", "c100", "c100"]
        );
    }

    #[test]
    fn labels_made_while_recording_equal_labels_made_while_parsing() {
        let get = b"GET /index.php?title=Page_7 HTTP/1.1\r\nHost: x\r\n\r\n";
        let items = vec![
            (0, sock(10, 1, 2, get)),
            (0, sock(20, 1, 1, b"HTTP/1.1 200 OK\r\n\r\n")),
            (0, sock(30, 1, 5, b"")),
        ];
        let labelled = replay(&[(items.clone(), 100)], true);
        // The same items through parse_into with a labeler, as the recorder
        // parsed them before raw logs.
        let mut labeler = Labeler::new(64);
        let mut want = Vec::new();
        for (_, b) in &items {
            raw::parse_into(b, Some(&mut labeler), &mut |r| want.push(r)).unwrap();
        }
        want.push(Record::Checkpoint(Checkpoint {
            ts_ns: 100,
            lost_total: 0,
        }));
        assert_eq!(labelled[..4], want[..]);
        let Record::Event(e) = &labelled[0] else {
            panic!("an event")
        };
        let Some(Data::Label(l)) = e.data.as_deref() else {
            panic!("a label, not bytes: {:?}", e.data)
        };
        assert!(l.name.contains("GET"), "{l:?}");
        // Without a labeler the bytes stay, exactly the record's own.
        let kept = replay(&[(items, 100)], false);
        let Record::Event(e) = &kept[0] else {
            panic!("an event")
        };
        let Some(Data::Bytes { offset: 0, bytes }) = e.data.as_deref() else {
            panic!("bytes: {:?}", e.data)
        };
        assert_eq!(&bytes[..], &get[..]);
        let Record::Event(close) = &kept[2] else {
            panic!("an event")
        };
        assert_eq!(close.op, Op::Close);
    }

    #[test]
    fn a_ring_beyond_any_cpu_is_a_bad_record_not_an_allocation() {
        let mut r = Replay::new();
        let good = sock(5, 1, 1, b"");
        let e = r.record(u32::MAX as usize, &good[..96], None, &mut |_| {});
        assert!(matches!(e, Err(RawError::RingOutOfRange { .. })), "{e:?}");
        assert!(r.rings.len() <= MAX_RINGS);
        let st = r.checkpoint(10, 0, &mut |_| {});
        assert_eq!((st.bad_records, st.checkpoint.lost_total), (1, 1));
    }

    #[test]
    fn a_record_that_does_not_parse_is_counted_and_the_replay_goes_on() {
        let mut r = Replay::new();
        let mut out = Vec::new();
        let bad = [9u8; 40];
        assert!(r.record(0, &bad, None, &mut |x| out.push(x)).is_err());
        let good = sock(5, 1, 1, b"");
        r.record(0, &good[..96], None, &mut |x| out.push(x))
            .unwrap();
        let st = r.checkpoint(10, 0, &mut |x| out.push(x));
        assert_eq!(st.bad_records, 1);
        assert_eq!(st.events_read, 1);
        assert!(matches!(
            r.last_bad_record(),
            Some(RawError::UnknownKind { kind: 9 })
        ));
        assert_eq!(ts_of(&out), ["e5", "c10"]);
        // The record that did not parse is an event the analysis never
        // sees: the checkpoint counts it lost, now and after.
        assert_eq!(st.checkpoint.lost_total, 1);
        let st = r.checkpoint(20, 3, &mut |x| out.push(x));
        assert_eq!(st.checkpoint.lost_total, 4);
    }
}
