//! The reader's scheduling priority. A reader starved of CPU by the traced
//! workload (hundreds of busy threads on a few CPUs) lets the ring overflow:
//! events are lost, counted, and the paths they touch are incomplete.
//! Raising the draining thread's priority keeps up with bursts; the work it
//! does is the same.

/// Raises the calling thread's priority (a lower nice value) until dropped.
/// Does nothing where that is not permitted (no CAP_SYS_NICE). Threads and
/// processes the thread creates meanwhile inherit the raised value, so
/// create them first.
#[derive(Debug)]
pub struct ThreadPriority {
    tid: libc::id_t,
    old: Option<i32>,
}

impl ThreadPriority {
    /// The nice value the recorder's reader runs at.
    pub const READER_NICE: i32 = -15;

    pub fn raise(nice: i32) -> ThreadPriority {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        // SAFETY: getpriority/setpriority on this thread's id; -1 is a valid
        // nice value, so errno (cleared first) tells failure apart.
        let old = unsafe {
            *libc::__errno_location() = 0;
            let old = libc::getpriority(libc::PRIO_PROCESS, tid);
            (*libc::__errno_location() == 0
                && old > nice
                && libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0)
                .then_some(old)
        };
        ThreadPriority { tid, old }
    }

    /// Whether the priority was raised.
    pub fn raised(&self) -> bool {
        self.old.is_some()
    }
}

impl Drop for ThreadPriority {
    fn drop(&mut self) {
        if let Some(old) = self.old {
            // SAFETY: as in raise().
            unsafe { libc::setpriority(libc::PRIO_PROCESS, self.tid, old) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: as above.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn raised_while_held_then_restored() {
        let before = nice();
        {
            let p = ThreadPriority::raise(before - 1);
            if p.raised() {
                assert_eq!(nice(), before - 1);
            } else {
                // Without CAP_SYS_NICE nothing changes, and that is all.
                assert_eq!(nice(), before);
            }
        }
        assert_eq!(nice(), before);
    }
}
