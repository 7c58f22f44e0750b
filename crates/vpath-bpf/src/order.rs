//! Ordering and loss checkpoints, apart from the ring buffer so that the
//! contract can be tested without a kernel.
//!
//! Each CPU fills its own ring, nearly in timestamp order; the reader
//! parses each ring apart and merges them ([`Reorder::push_merged`]), so the
//! events arrive roughly but not exactly in timestamp order. Events are held
//! until a checkpoint horizon passes them, then handed out sorted, followed
//! by the checkpoint.

use vpath_core::{Checkpoint, Event, Record};

/// What one release did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub events_out: u64,
    pub late_events: u64,
    pub held: u64,
}

/// How far back from the end [`Reorder::push`] inserts an out-of-order
/// event in place. Per-CPU producers interleave with displacements of a few
/// records; anything farther (a run's first operation, sent when the run
/// ends) is set aside and merged in at release.
const INSERT_WINDOW: usize = 64;

#[derive(Debug, Default)]
pub struct Reorder {
    /// Held events with their arrival numbers, in (timestamp, arrival)
    /// order.
    pending: Vec<(u64, Event)>,
    /// Events that arrived too far out of order to insert cheaply, in
    /// arrival order; sorted and merged into `pending` at release.
    late: Vec<(u64, Event)>,
    arrivals: u64,
    last_checkpoint: u64,
}

impl Reorder {
    /// Adds an event. The ring is nearly sorted already, so keeping
    /// `pending` sorted costs a comparison per event and a short move for
    /// the few that arrive a little late; no per-poll sort of everything.
    pub fn push(&mut self, e: Event) {
        let ts = e.ts_ns;
        let n = self.arrivals;
        self.arrivals += 1;
        match self.pending.last() {
            Some(last) if last.1.ts_ns > ts => {
                let len = self.pending.len();
                let lo = len.saturating_sub(INSERT_WINDOW);
                // After equal timestamps: arrival order among equals.
                let at = lo + self.pending[lo..].partition_point(|x| x.1.ts_ns <= ts);
                if at == lo && lo > 0 && self.pending[lo - 1].1.ts_ns > ts {
                    self.late.push((n, e));
                } else {
                    self.pending.insert(at, (n, e));
                }
            }
            _ => self.pending.push((n, e)),
        }
    }

    /// Adds the events of several sources, each nearly in timestamp order
    /// (one per CPU ring), merged by the timestamp at the head of each and
    /// in source order among equals, and empties them. Pushing one source
    /// after the other instead would put most of the later ones' events in
    /// the set-aside pile, to be sorted at release.
    pub fn push_merged(&mut self, sources: &mut [Vec<Event>]) {
        let mut heads: Vec<std::vec::Drain<'_, Event>> = sources
            .iter_mut()
            .filter(|v| !v.is_empty())
            .map(|v| v.drain(..))
            .collect();
        // Few sources (CPUs with events this poll): a scan of the heads.
        while !heads.is_empty() {
            let mut best = 0;
            let mut best_ts = u64::MAX;
            for (i, h) in heads.iter().enumerate() {
                if let Some(e) = h.as_slice().first() {
                    if e.ts_ns < best_ts {
                        best = i;
                        best_ts = e.ts_ns;
                    }
                }
            }
            match heads[best].next() {
                Some(e) => self.push(e),
                None => {
                    heads.remove(best);
                }
            }
        }
    }

    pub fn last_checkpoint(&self) -> u64 {
        self.last_checkpoint
    }

    pub fn held(&self) -> usize {
        self.pending.len() + self.late.len()
    }

    /// Hands out, in timestamp order, every held event with
    /// `ts <= horizon`, then the checkpoint `{horizon, lost_total}`. The
    /// horizon never moves back. Events at or before an earlier checkpoint
    /// (they came later than the margin allowed) still go out, counted late.
    pub fn release(
        &mut self,
        horizon: u64,
        lost_total: u64,
        out: &mut impl FnMut(Record),
    ) -> (Released, Checkpoint) {
        let horizon = horizon.max(self.last_checkpoint);
        // Both in (timestamp, arrival) order; hand out the prefixes up to
        // the horizon merged, without moving what stays.
        let key = |x: &(u64, Event)| (x.1.ts_ns, x.0);
        self.late.sort_unstable_by_key(key);
        let n = self.pending.partition_point(|e| e.1.ts_ns <= horizon);
        let m = self.late.partition_point(|e| e.1.ts_ns <= horizon);
        let mut a = self.pending.drain(..n).peekable();
        let mut b = self.late.drain(..m).peekable();
        let mut r = Released::default();
        let last_cp = self.last_checkpoint;
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => key(x) <= key(y),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let Some((_, e)) = (if take_a { a.next() } else { b.next() }) else {
                break;
            };
            if last_cp != 0 && e.ts_ns <= last_cp {
                r.late_events += 1;
            }
            r.events_out += 1;
            out(Record::Event(e));
        }
        drop((a, b));
        r.held = self.held() as u64;
        let cp = Checkpoint {
            ts_ns: horizon,
            lost_total,
        };
        self.last_checkpoint = horizon;
        out(Record::Checkpoint(cp));
        (r, cp)
    }

    /// Hands out everything held, then a checkpoint at `horizon` or the
    /// last event's timestamp, whichever is later.
    pub fn finish(
        &mut self,
        horizon: u64,
        lost_total: u64,
        out: &mut impl FnMut(Record),
    ) -> (Released, Checkpoint) {
        let last = self
            .pending
            .iter()
            .chain(&self.late)
            .map(|e| e.1.ts_ns)
            .max()
            .unwrap_or(0);
        self.release(horizon.max(last), lost_total, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpath_core::{Op, Syscall};

    fn ev(ts: u64) -> Event {
        Event {
            ts_ns: ts,
            netns: 1,
            cgroup: 0,
            pid: 1,
            tid: 1,
            sock: 1,
            op: Op::Send,
            syscall: Syscall::Write,
            flags: 0,
            ret: 1,
            seq: 0,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            data: None,
        }
    }

    fn run(r: &mut Reorder, horizon: u64, lost: u64) -> (Vec<Record>, Released) {
        let mut v = Vec::new();
        let (rel, _) = r.release(horizon, lost, &mut |x| v.push(x));
        (v, rel)
    }

    fn ts_of(v: &[Record]) -> Vec<i64> {
        v.iter()
            .map(|r| match r {
                Record::Event(e) => e.ts_ns as i64,
                Record::Checkpoint(c) => -(c.ts_ns as i64),
                Record::Thread(_) => 0,
            })
            .collect()
    }

    #[test]
    fn events_go_out_sorted_up_to_the_horizon_then_the_checkpoint() {
        let mut r = Reorder::default();
        for ts in [30, 10, 50, 20] {
            r.push(ev(ts));
        }
        let (v, rel) = run(&mut r, 30, 0);
        assert_eq!(ts_of(&v), vec![10, 20, 30, -30]);
        assert_eq!(rel.held, 1);
        r.push(ev(40));
        let (v, rel) = run(&mut r, 100, 2);
        assert_eq!(ts_of(&v), vec![40, 50, -100]);
        assert_eq!(rel.late_events, 0);
        assert_eq!(
            v.last(),
            Some(&Record::Checkpoint(Checkpoint {
                ts_ns: 100,
                lost_total: 2
            }))
        );
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn horizon_never_moves_back_and_late_events_are_counted() {
        let mut r = Reorder::default();
        run(&mut r, 100, 0);
        r.push(ev(90)); // arrived after its checkpoint
        let (v, rel) = run(&mut r, 80, 0);
        assert_eq!(ts_of(&v), vec![90, -100]);
        assert_eq!(rel.late_events, 1);
        assert_eq!(r.last_checkpoint(), 100);
    }

    /// The reference: a stable sort of everything, as the reorder buffer
    /// did before it kept `pending` sorted on push.
    fn reference(pushes: &[Vec<u64>], horizons: &[u64]) -> Vec<Vec<i64>> {
        let mut pending: Vec<(u64, usize)> = Vec::new();
        let mut id = 0;
        let mut last = 0;
        let mut out = Vec::new();
        for (batch, &h) in pushes.iter().zip(horizons) {
            for &ts in batch {
                pending.push((ts, id));
                id += 1;
            }
            let h = h.max(last);
            pending.sort_by_key(|p| p.0);
            let n = pending.partition_point(|p| p.0 <= h);
            let mut v: Vec<i64> = pending.drain(..n).map(|p| p.1 as i64).collect();
            v.push(-(h as i64));
            last = h;
            out.push(v);
        }
        out
    }

    #[test]
    fn insertion_matches_a_stable_sort_near_and_far_out_of_order() {
        // Deterministic pseudo-random batches: mostly increasing with small
        // jitter, some events far in the past, duplicates.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for case in 0..40 {
            let mut pushes = Vec::new();
            let mut horizons = Vec::new();
            let mut t = 1000u64;
            for _ in 0..6 {
                let mut b = Vec::new();
                for _ in 0..(rnd(300) as usize) {
                    t += rnd(5);
                    let ts = match rnd(100) {
                        0 if case % 2 == 0 => t.saturating_sub(rnd(2000)), // far back
                        1..=20 => t.saturating_sub(rnd(30)),               // jitter
                        _ => t,
                    };
                    b.push(ts);
                }
                pushes.push(b);
                horizons.push(t.saturating_sub(rnd(200)));
            }
            let want = reference(&pushes, &horizons);
            let mut r = Reorder::default();
            let mut id = 0u64;
            for (k, (batch, &h)) in pushes.iter().zip(&horizons).enumerate() {
                for &ts in batch {
                    let mut e = ev(ts);
                    e.seq = id as u32; // identity, to check stability
                    id += 1;
                    r.push(e);
                }
                let mut got = Vec::new();
                r.release(h, 0, &mut |rec| {
                    got.push(match rec {
                        Record::Event(e) => e.seq as i64,
                        Record::Checkpoint(c) => -(c.ts_ns as i64),
                        Record::Thread(_) => i64::MIN,
                    })
                });
                assert_eq!(got, want[k], "case {case} batch {k}");
            }
        }
    }

    #[test]
    fn merged_sources_go_out_as_one_sorted_stream() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for case in 0..20 {
            let nsrc = 1 + case % 4;
            let mut sources: Vec<Vec<Event>> = vec![Vec::new(); nsrc as usize];
            let mut all = Vec::new();
            let mut id = 0u32;
            for src in sources.iter_mut() {
                let mut t = 1000u64;
                for _ in 0..rnd(400) {
                    t += rnd(7);
                    let ts = match rnd(100) {
                        0 => t.saturating_sub(rnd(3000)),    // far back
                        1..=15 => t.saturating_sub(rnd(20)), // jitter
                        _ => t,
                    };
                    let mut e = ev(ts);
                    e.seq = id;
                    id += 1;
                    all.push((ts, e.seq));
                    src.push(e);
                }
            }
            let mut r = Reorder::default();
            r.push_merged(&mut sources);
            assert!(sources.iter().all(|s| s.is_empty()));
            let mut got = Vec::new();
            r.release(u64::MAX, 0, &mut |rec| {
                if let Record::Event(e) = rec {
                    got.push((e.ts_ns, e.seq));
                }
            });
            // Sorted by time; every event exactly once.
            assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "case {case}");
            got.sort_unstable();
            all.sort_unstable();
            assert_eq!(got, all, "case {case}");
        }
    }

    #[test]
    fn finish_flushes_everything() {
        let mut r = Reorder::default();
        r.push(ev(500));
        r.push(ev(5));
        let mut v = Vec::new();
        let (rel, cp) = r.finish(100, 7, &mut |x| v.push(x));
        assert_eq!(ts_of(&v), vec![5, 500, -500]);
        assert_eq!((rel.events_out, rel.held), (2, 0));
        assert_eq!(
            cp,
            Checkpoint {
                ts_ns: 500,
                lost_total: 7
            }
        );
    }
}
