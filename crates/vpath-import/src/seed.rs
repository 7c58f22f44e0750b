//! The vPath prototype's Xen log (the seed's slides, "Path Data
//! Processing"; example in `tests/data/seed/xen-log-example.txt`).
//!
//! Two kinds of lines, fields separated by blanks:
//! - syscall interception: `Event# Dom<D> TimeStamp cr3:<hex> ebp:<hex> eax:<dec> ebx:<dec>`
//! - hypercall: `Event# R|S Dom<D> sd:<dec> L:<ip:port> R:<ip:port>`
//!
//! # Mapping to records
//! - A syscall line is paired with the next hypercall line of the same
//!   domain, which gives the socket's 4-tuple. The event is emitted when the
//!   hypercall line is read, with the syscall line's timestamp.
//! - EAX is the i386 syscall number: 3 read, 4 write, 145 readv, 146 writev
//!   (EBX is the descriptor), 6 close (EBX is the descriptor), 102 socketcall
//!   with EBX the subcall: 3 connect, 5 accept, 9 send, 10 recv, 11 sendto,
//!   12 recvfrom, 13 shutdown, 16 sendmsg, 17 recvmsg, 18 accept4. Other
//!   syscalls are skipped and counted, together with a hypercall line that
//!   may follow them.
//! - Send calls need an `S` hypercall and receive calls an `R` one; where
//!   EBX is the descriptor, `sd` must equal it. Connect, accept, close and
//!   shutdown accept either letter, and may come without a hypercall: then
//!   close and shutdown use the socket's last known 4-tuple (and are skipped
//!   when it is unknown); connect and accept are skipped. For accept, `sd`
//!   is the accepted socket.
//! - The log has no byte counts: every event has [`flags::NO_BYTES`] and
//!   `ret` 0.
//! - `ts_ns` = TimeStamp × 1000. The slides do not give the unit; the value
//!   is treated as an opaque counter that grows monotonically (as if it
//!   counted microseconds). Only order matters to the analysis.
//! - `netns` = the domain number (Dom1 → 1); `cgroup` = 0.
//! - Synthetic ids, assigned from 1 in order of first appearance in the
//!   file (so the same file always gives the same ids): `pid` per
//!   (domain, CR3), `tid` per (domain, CR3, EBP), `sock` per
//!   (domain, CR3, sd) incarnation. An incarnation ends at close, or when
//!   the same descriptor shows another 4-tuple (a close the log missed);
//!   connect and accept always start one.
//! - A [`ThreadInfo`] precedes each thread's first event, with comm
//!   `dom<D>:<cr3>:<ebp>` (8 lowercase hex digits each), for example
//!   `dom1:04254000:bfe37034`.
//!
//! Lines starting with `#` and blank lines are skipped (not counted).

use std::collections::VecDeque;
use std::io::BufRead;
use std::net::SocketAddr;

use rustc_hash::FxHashMap;
use vpath_core::{flags, Event, Op, Record, Syscall, ThreadInfo};

use crate::error::{ErrorKind, ImportError};
use crate::lines::Lines;

/// Nanoseconds per TimeStamp unit.
pub const TS_SCALE: u64 = 1000;

/// Streams records out of a seed Xen log.
pub struct SeedImporter<R> {
    lines: Lines<R>,
    st: State,
}

#[derive(Default)]
struct State {
    out: VecDeque<Record>,
    /// Per domain, the syscall line waiting for its hypercall.
    pending: FxHashMap<u32, Pending>,
    procs: FxHashMap<(u32, u32), u32>,
    threads: FxHashMap<(u32, u32, u32), u32>,
    socks: FxHashMap<(u32, u32, u32), Sock>,
    next_sock: u64,
    skipped: usize,
    finished: bool,
}

#[derive(Clone, Copy)]
struct Pending {
    line: u64,
    ts_ns: u64,
    cr3: u32,
    ebp: u32,
    ebx: u32,
    /// None for a syscall that is skipped.
    call: Option<Call>,
}

#[derive(Clone, Copy)]
struct Call {
    op: Op,
    syscall: Syscall,
    /// EBX holds the descriptor.
    ebx_is_fd: bool,
}

struct Sock {
    id: u64,
    local: SocketAddr,
    remote: SocketAddr,
}

/// A parsed line.
enum Line {
    Syscall {
        domain: u32,
        ts: u64,
        cr3: u32,
        ebp: u32,
        eax: u32,
        ebx: u32,
    },
    Hypercall {
        send: bool,
        domain: u32,
        sd: u32,
        local: SocketAddr,
        remote: SocketAddr,
    },
}

impl<R: BufRead> SeedImporter<R> {
    pub fn new(reader: R) -> Self {
        SeedImporter {
            lines: Lines::new(reader),
            st: State::default(),
        }
    }

    /// Valid lines that produced no record: syscalls other than socket
    /// operations, and connect/accept/close without their 4-tuple.
    pub fn skipped(&self) -> usize {
        self.st.skipped
    }

    /// The next record, None at the end of the input. After an error, the
    /// next call goes on with the next line.
    pub fn next_record(&mut self) -> Result<Option<Record>, ImportError> {
        loop {
            if let Some(r) = self.st.out.pop_front() {
                return Ok(Some(r));
            }
            if self.st.finished {
                return Ok(None);
            }
            match self.lines.next_line() {
                None => self.st.finish()?,
                Some(Err(e)) => return Err(e),
                Some(Ok((no, text))) => {
                    let t = text.trim();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    let parsed = parse_line(no, text)?;
                    self.st.apply(no, parsed)?;
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for SeedImporter<R> {
    type Item = Result<Record, ImportError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Whether a (trimmed, non-comment) line parses as either seed line.
pub(crate) fn looks_like(line: &str) -> bool {
    parse_line(1, line).is_ok()
}

fn classify(eax: u32, ebx: u32) -> Option<Call> {
    let c = |op, syscall, ebx_is_fd| {
        Some(Call {
            op,
            syscall,
            ebx_is_fd,
        })
    };
    match eax {
        3 => c(Op::Recv, Syscall::Read, true),
        4 => c(Op::Send, Syscall::Write, true),
        6 => c(Op::Close, Syscall::Close, true),
        145 => c(Op::Recv, Syscall::Readv, true),
        146 => c(Op::Send, Syscall::Writev, true),
        102 => match ebx {
            3 => c(Op::Connect, Syscall::Connect, false),
            5 => c(Op::Accept, Syscall::Accept, false),
            9 => c(Op::Send, Syscall::Sendto, false),
            10 => c(Op::Recv, Syscall::Recvfrom, false),
            11 => c(Op::Send, Syscall::Sendto, false),
            12 => c(Op::Recv, Syscall::Recvfrom, false),
            13 => c(Op::Close, Syscall::Shutdown, false),
            16 => c(Op::Send, Syscall::Sendmsg, false),
            17 => c(Op::Recv, Syscall::Recvmsg, false),
            18 => c(Op::Accept, Syscall::Accept4, false),
            _ => None,
        },
        _ => None,
    }
}

impl Call {
    /// Whether the event can only be built from the hypercall.
    fn needs_hypercall(self) -> bool {
        matches!(self.op, Op::Send | Op::Recv)
    }
}

impl State {
    fn apply(&mut self, no: u64, line: Line) -> Result<(), ImportError> {
        match line {
            Line::Syscall {
                domain,
                ts,
                cr3,
                ebp,
                eax,
                ebx,
            } => {
                let ts_ns = ts.checked_mul(TS_SCALE).ok_or_else(|| {
                    ImportError::expected(no, 0, "a TimeStamp below 2^64/1000", "")
                })?;
                let call = classify(eax, ebx);
                if call.is_none() {
                    self.skipped += 1;
                }
                let new = Pending {
                    line: no,
                    ts_ns,
                    cr3,
                    ebp,
                    ebx,
                    call,
                };
                match self.pending.insert(domain, new) {
                    Some(old) => self.unpaired(domain, old),
                    None => Ok(()),
                }
            }
            Line::Hypercall {
                send,
                domain,
                sd,
                local,
                remote,
            } => {
                let p = self
                    .pending
                    .remove(&domain)
                    .ok_or_else(|| ImportError::new(no, ErrorKind::UnpairedHypercall { domain }))?;
                let Some(call) = p.call else {
                    return Ok(()); // the hypercall of a skipped syscall
                };
                let letter = if send { 'S' } else { 'R' };
                let expected = match call.op {
                    Op::Send => Some('S'),
                    Op::Recv => Some('R'),
                    _ => None,
                };
                if let Some(expected) = expected {
                    if expected != letter {
                        return Err(ImportError::new(
                            no,
                            ErrorKind::DirectionMismatch {
                                syscall_line: p.line,
                                syscall: call.syscall.name(),
                                expected,
                                found: letter,
                            },
                        ));
                    }
                }
                if call.ebx_is_fd && p.ebx != sd {
                    return Err(ImportError::new(
                        no,
                        ErrorKind::DescriptorMismatch {
                            syscall_line: p.line,
                            ebx: p.ebx,
                            sd,
                        },
                    ));
                }
                let key = (domain, p.cr3, sd);
                let fresh = matches!(call.op, Op::Connect | Op::Accept);
                let id = match self.socks.get(&key) {
                    Some(s) if !fresh && s.local == local && s.remote == remote => s.id,
                    _ => {
                        self.next_sock += 1;
                        self.socks.insert(
                            key,
                            Sock {
                                id: self.next_sock,
                                local,
                                remote,
                            },
                        );
                        self.next_sock
                    }
                };
                self.emit(domain, p, call, id, local, remote);
                if call.syscall == Syscall::Close {
                    self.socks.remove(&key);
                }
                Ok(())
            }
        }
    }

    /// A syscall line whose hypercall did not come.
    fn unpaired(&mut self, domain: u32, p: Pending) -> Result<(), ImportError> {
        let Some(call) = p.call else {
            return Ok(()); // skipped already
        };
        if call.needs_hypercall() {
            return Err(ImportError::new(
                p.line,
                ErrorKind::MissingHypercall {
                    domain,
                    syscall_line: p.line,
                    syscall: call.syscall.name(),
                },
            ));
        }
        let key = (domain, p.cr3, p.ebx);
        match self.socks.get(&key) {
            // Only where EBX is the descriptor do we know the socket.
            Some(s) if call.ebx_is_fd => {
                let (id, local, remote) = (s.id, s.local, s.remote);
                self.emit(domain, p, call, id, local, remote);
                if call.syscall == Syscall::Close {
                    self.socks.remove(&key);
                }
            }
            _ => self.skipped += 1,
        }
        Ok(())
    }

    fn emit(
        &mut self,
        domain: u32,
        p: Pending,
        call: Call,
        sock: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let next_pid = self.procs.len() as u32 + 1;
        let pid = *self.procs.entry((domain, p.cr3)).or_insert(next_pid);
        let next_tid = self.threads.len() as u32 + 1;
        let mut new_thread = false;
        let tid = *self
            .threads
            .entry((domain, p.cr3, p.ebp))
            .or_insert_with(|| {
                new_thread = true;
                next_tid
            });
        if new_thread {
            self.out.push_back(Record::Thread(ThreadInfo {
                pid,
                tid,
                comm: format!("dom{domain}:{:08x}:{:08x}", p.cr3, p.ebp),
            }));
        }
        self.out.push_back(Record::Event(Event {
            ts_ns: p.ts_ns,
            netns: domain,
            cgroup: 0,
            pid,
            tid,
            sock,
            op: call.op,
            syscall: call.syscall,
            flags: flags::NO_BYTES,
            ret: 0,
            seq: 0,
            local,
            remote,
            data: None,
        }));
    }

    /// End of input: resolve what still waits for a hypercall, in domain
    /// order. Reports the first missing hypercall (the others are dropped).
    fn finish(&mut self) -> Result<(), ImportError> {
        self.finished = true;
        let mut left: Vec<(u32, Pending)> = self.pending.drain().collect();
        left.sort_by_key(|(d, p)| (p.line, *d));
        let mut first_err = None;
        for (domain, p) in left {
            if let Err(e) = self.unpaired(domain, p) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Blank-separated fields with their byte offsets.
struct Fields<'a> {
    line: &'a str,
    no: u64,
    pos: usize,
}

impl<'a> Fields<'a> {
    fn next(&mut self, what: &'static str) -> Result<(usize, &'a str), ImportError> {
        let rest = &self.line[self.pos..];
        let start = self.pos + (rest.len() - rest.trim_start().len());
        let tail = &self.line[start..];
        let len = tail.find(char::is_whitespace).unwrap_or(tail.len());
        if len == 0 {
            return Err(ImportError::expected(self.no, start, what, "end of line"));
        }
        self.pos = start + len;
        Ok((start, &tail[..len]))
    }

    fn end(&self) -> Result<(), ImportError> {
        let rest = &self.line[self.pos..];
        let t = rest.trim_start();
        if t.is_empty() {
            Ok(())
        } else {
            let col = self.pos + (rest.len() - t.len());
            Err(ImportError::expected(self.no, col, "end of line", t))
        }
    }

    fn err(&self, col: usize, what: &'static str, found: &str) -> ImportError {
        ImportError::expected(self.no, col, what, found)
    }

    /// A field `prefix` followed by a number in `radix`.
    fn tagged(&mut self, prefix: &str, radix: u32, what: &'static str) -> Result<u32, ImportError> {
        let (col, f) = self.next(what)?;
        f.strip_prefix(prefix)
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_digit(radix)))
            .and_then(|v| u32::from_str_radix(v, radix).ok())
            .ok_or_else(|| self.err(col, what, f))
    }

    fn domain(&mut self) -> Result<u32, ImportError> {
        self.tagged("Dom", 10, "a domain like Dom1")
    }

    fn addr(&mut self, prefix: &str, what: &'static str) -> Result<SocketAddr, ImportError> {
        let (col, f) = self.next(what)?;
        f.strip_prefix(prefix)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.err(col, what, f))
    }
}

fn parse_line(no: u64, line: &str) -> Result<Line, ImportError> {
    let mut f = Fields { line, no, pos: 0 };
    let (col, event) = f.next("an event number")?;
    if !event.bytes().all(|b| b.is_ascii_digit()) {
        return Err(f.err(col, "an event number (decimal digits)", event));
    }
    let (col, second) = f.next("a domain (Dom1) or a hypercall type (R or S)")?;
    let line = match second {
        "R" | "S" => {
            let domain = f.domain()?;
            let sd = f.tagged("sd:", 10, "a socket descriptor like sd:12")?;
            let local = f.addr("L:", "a local address like L:10.0.0.1:80")?;
            let remote = f.addr("R:", "a remote address like R:10.0.0.2:8009")?;
            Line::Hypercall {
                send: second == "S",
                domain,
                sd,
                local,
                remote,
            }
        }
        d => {
            let domain = d
                .strip_prefix("Dom")
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| f.err(col, "a domain (Dom1) or a hypercall type (R or S)", d))?;
            let (col, ts) = f.next("a timestamp")?;
            let ts = Some(ts)
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| f.err(col, "a timestamp (decimal digits)", ts))?;
            let cr3 = f.tagged("cr3:", 16, "a page-table base like cr3:04254000")?;
            let ebp = f.tagged("ebp:", 16, "a stack pointer like ebp:bfe37034")?;
            let eax = f.tagged("eax:", 10, "a syscall number like eax:3")?;
            let ebx = f.tagged("ebx:", 10, "an argument like ebx:12")?;
            Line::Syscall {
                domain,
                ts,
                cr3,
                ebp,
                eax,
                ebx,
            }
        }
    };
    f.end()?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::fmt_record;

    fn import(text: &str) -> (Vec<Result<String, String>>, usize) {
        let mut imp = SeedImporter::new(text.as_bytes());
        let out = imp
            .by_ref()
            .map(|r| r.map(|r| fmt_record(&r)).map_err(|e| e.to_string()))
            .collect();
        (out, imp.skipped())
    }

    #[test]
    fn pairs_by_domain_across_interleaving() {
        let (out, skipped) = import(
            "1 Dom1 10 cr3:1000 ebp:a eax:4 ebx:5\n\
             2 Dom2 11 cr3:1000 ebp:a eax:3 ebx:7\n\
             3 R Dom2 sd:7 L:10.0.0.2:80 R:10.0.0.1:9\n\
             4 S Dom1 sd:5 L:10.0.0.1:9 R:10.0.0.2:80\n",
        );
        assert_eq!(skipped, 0);
        let out: Vec<String> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(out[0].starts_with("thread pid=1 tid=1 comm=\"dom2:00001000:0000000a\""));
        assert!(out[1].contains("ts=11000 netns=2") && out[1].contains("op=recv"));
        assert!(out[3].contains("ts=10000 netns=1") && out[3].contains("op=send"));
        assert!(out[3].contains("pid=2 tid=2 sock=2"));
    }

    #[test]
    fn socketcall_subcalls_and_skips() {
        let (out, skipped) = import(
            "1 Dom1 1 cr3:1 ebp:1 eax:102 ebx:3\n\
             2 S Dom1 sd:4 L:10.0.0.1:5 R:10.0.0.2:80\n\
             3 Dom1 2 cr3:1 ebp:1 eax:5 ebx:0\n\
             4 R Dom1 sd:4 L:10.0.0.1:5 R:10.0.0.2:80\n\
             5 Dom1 3 cr3:1 ebp:1 eax:102 ebx:16\n\
             6 S Dom1 sd:4 L:10.0.0.1:5 R:10.0.0.2:80\n\
             7 Dom1 4 cr3:1 ebp:1 eax:6 ebx:4\n\
             8 Dom1 5 cr3:1 ebp:1 eax:6 ebx:4\n",
        );
        let out: Vec<String> = out.into_iter().map(Result::unwrap).collect();
        // connect, sendmsg on the same socket, close without a hypercall
        // from the known state; the unknown syscall 5 (open) and its
        // hypercall are skipped, the second close knows no socket.
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(out[1].contains("sock=1 op=connect syscall=connect"));
        assert!(out[2].contains("sock=1 op=send syscall=sendmsg"));
        assert!(out[3].contains("ts=4000") && out[3].contains("sock=1 op=close"));
        assert_eq!(skipped, 2);
    }

    #[test]
    fn pairing_errors_name_lines() {
        let (out, _) =
            import("1 Dom1 1 cr3:1 ebp:1 eax:3 ebx:4\n2 Dom1 2 cr3:1 ebp:1 eax:3 ebx:4\n");
        let errs: Vec<String> = out.into_iter().filter_map(Result::err).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("line 1: the read syscall of Dom1 on line 1"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("line 2:"), "{errs:?}");

        let (out, _) = import("1 S Dom3 sd:4 L:10.0.0.1:5 R:10.0.0.2:80\n");
        assert_eq!(
            out[0].as_ref().unwrap_err(),
            "line 1: hypercall line of Dom3 follows no syscall line of that domain"
        );
        let (out, _) =
            import("1 Dom1 1 cr3:1 ebp:1 eax:3 ebx:4\n2 S Dom1 sd:4 L:10.0.0.1:5 R:10.0.0.2:80\n");
        assert!(
            out[0].as_ref().unwrap_err().contains("expected R"),
            "{out:?}"
        );
        let (out, _) =
            import("1 Dom1 1 cr3:1 ebp:1 eax:3 ebx:4\n2 R Dom1 sd:5 L:10.0.0.1:5 R:10.0.0.2:80\n");
        assert!(
            out[0]
                .as_ref()
                .unwrap_err()
                .contains("sd:5 differs from descriptor 4"),
            "{out:?}"
        );
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let cases = [
            ("x Dom1 1 cr3:1 ebp:1 eax:3 ebx:4", 0, "event number"),
            ("1 Dom1 1 cr3:zz ebp:1 eax:3 ebx:4", 9, "cr3:"),
            ("1 Dom1 1 cr3:1 ebp:1 eax:3", 26, "like ebx:12"),
            ("1 Dom1 1 cr3:1 ebp:1 eax:3 ebx:4 extra", 33, "end of line"),
            (
                "1 R Dom1 sd:4 L:10.0.0.1 R:10.0.0.2:80",
                14,
                "local address",
            ),
            ("1 Q Dom1", 2, "hypercall type"),
        ];
        for (line, col, what) in cases {
            let (out, _) = import(line);
            let e = out[0].as_ref().unwrap_err();
            assert!(
                e.starts_with(&format!("line 1: byte {col}: expected")),
                "{line}: {e}"
            );
            assert!(e.contains(what), "{line}: {e}");
        }
    }
}
