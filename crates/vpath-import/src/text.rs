//! A one-line text form of a [`Record`], used by the golden tests (and
//! handy for `vpath import --dump`). Every field is printed, in a fixed
//! order, so a change in any of them shows in a diff.

use std::fmt::Write;

use vpath_core::event::fmt_endpoint;
use vpath_core::{flags, Record};

/// Formats a record as one line (without `\n`), for example
/// `event ts=2780000 netns=1 cgroup=0 pid=1 tid=1 sock=1 op=recv syscall=read flags=no-bytes ret=0 seq=0 local=130.203.8.24:41845 remote=130.203.8.25:8009`.
pub fn fmt_record(r: &Record) -> String {
    let mut s = String::new();
    match r {
        Record::Event(e) => {
            let _ = write!(
                s,
                "event ts={} netns={} cgroup={} pid={} tid={} sock={} op={} syscall={} flags={} ret={} seq={} local={} remote={}",
                e.ts_ns,
                e.netns,
                e.cgroup,
                e.pid,
                e.tid,
                e.sock,
                e.op,
                e.syscall,
                fmt_flags(e.flags),
                e.ret,
                e.seq,
                fmt_endpoint(&e.local),
                fmt_endpoint(&e.remote)
            );
        }
        Record::Thread(t) => {
            let _ = write!(s, "thread pid={} tid={} comm={:?}", t.pid, t.tid, t.comm);
        }
        Record::Checkpoint(c) => {
            let _ = write!(s, "checkpoint ts={} lost={}", c.ts_ns, c.lost_total);
        }
    }
    s
}

/// `-` for none, else the set names joined by `|` (unknown bits in hex).
pub fn fmt_flags(f: u8) -> String {
    let mut parts = Vec::new();
    if f & flags::PEEK != 0 {
        parts.push("peek".to_string());
    }
    if f & flags::SEQ != 0 {
        parts.push("seq".to_string());
    }
    if f & flags::NO_BYTES != 0 {
        parts.push("no-bytes".to_string());
    }
    if f & flags::MERGED != 0 {
        parts.push("merged".to_string());
    }
    if f & !flags::ALL != 0 {
        parts.push(format!("{:#x}", f & !flags::ALL));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_by_name() {
        assert_eq!(fmt_flags(0), "-");
        assert_eq!(fmt_flags(flags::PEEK | flags::NO_BYTES), "peek|no-bytes");
        assert_eq!(fmt_flags(0x80), "0x80");
    }
}
