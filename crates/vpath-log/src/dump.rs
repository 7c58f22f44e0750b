//! The text dump of a log: the header, one line per record, and a final line
//! saying how the log ended.

use std::io::{self, Read, Write};

use rustc_hash::FxHashMap;
use vpath_core::event::fmt_endpoint;
use vpath_core::{flags, Data, Record};

use crate::error::LogError;
use crate::format::{header_flags, EndStats};
use crate::reader::{Item, LogReader};

/// What [`dump`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpSummary {
    pub records: u64,
    pub events: u64,
    /// `None`: the log has no End trailer.
    pub end: Option<EndStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The log is damaged; the dump holds everything before the damage and a
    /// final line naming it.
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("writing the dump failed: {0}")]
    Output(#[source] io::Error),
}

/// Formats nanoseconds as `seconds.nanoseconds`.
pub fn fmt_ts(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

fn fmt_comm(c: &str) -> String {
    if c.is_empty()
        || c.chars()
            .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '"')
    {
        format!("{c:?}")
    } else {
        c.to_string()
    }
}

/// Prints the header and every record of `reader` to `out`, one line each,
/// then a final line: `# ended cleanly ...`, `# NOT ended cleanly ...` (no
/// End trailer) or `# DAMAGED ...` (and the error is returned).
pub fn dump<R: Read, W: Write>(
    reader: &mut LogReader<R>,
    out: &mut W,
) -> Result<DumpSummary, DumpError> {
    let o = DumpError::Output;
    let h = reader.header().clone();
    let (major, minor) = reader.version();
    writeln!(out, "# vpath log, format {major}.{minor}").map_err(o)?;
    writeln!(out, "# host: {}", h.host).map_err(o)?;
    writeln!(out, "# recorder: {}", h.recorder).map_err(o)?;
    writeln!(
        out,
        "# clock: {} (wall_minus_mono_ns={})",
        h.clock.name(),
        h.wall_minus_mono_ns
    )
    .map_err(o)?;
    writeln!(
        out,
        "# capture start: {} (Unix epoch)",
        fmt_ts(h.start_unix_ns)
    )
    .map_err(o)?;
    let mut fl = Vec::new();
    if h.flags & header_flags::CHECKPOINTED != 0 {
        fl.push("checkpointed");
    }
    if h.flags & header_flags::PAYLOADS != 0 {
        fl.push("payloads");
    }
    if h.is_raw() {
        fl.push("raw");
    }
    let fl = if fl.is_empty() {
        "none".to_string()
    } else {
        fl.join(",")
    };
    writeln!(out, "# flags: {fl}").map_err(o)?;
    if h.is_raw() {
        writeln!(out, "# raw layout: {}", h.raw_layout).map_err(o)?;
    }

    let mut comms: FxHashMap<u32, String> = FxHashMap::default();
    let mut records = 0u64;
    let mut events = 0u64;
    loop {
        let rec = match reader.next_item() {
            Ok(Some(Item::Record(r))) => r,
            Ok(Some(Item::Raw(raw))) => {
                // A raw capture's kernel records: this crate does not know
                // their layout (the recorder's replay parses them).
                records += 1;
                events += 1;
                write!(
                    out,
                    "raw stream={} len={} bytes={:02x?}",
                    raw.stream,
                    raw.bytes.len(),
                    &raw.bytes[..raw.bytes.len().min(16)]
                )
                .map_err(o)?;
                if let Some(l) = &raw.label {
                    let kind = if l.reply { "reply" } else { "request" };
                    write!(out, " {kind}={}:{:?}", l.protocol, l.name).map_err(o)?;
                }
                writeln!(out).map_err(o)?;
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                writeln!(
                    out,
                    "# DAMAGED after {records} records ({events} events): {e}"
                )
                .map_err(o)?;
                return Err(DumpError::Log(e));
            }
        };
        records += 1;
        match rec {
            Record::Event(e) => {
                events += 1;
                let comm = comms.get(&e.tid).map(String::as_str).unwrap_or("?");
                write!(
                    out,
                    "{} pid={} tid={} comm={} netns={}",
                    fmt_ts(e.ts_ns),
                    e.pid,
                    e.tid,
                    comm,
                    e.netns
                )
                .map_err(o)?;
                if e.cgroup != 0 {
                    write!(out, " cgroup={}", e.cgroup).map_err(o)?;
                }
                write!(
                    out,
                    " {} {} {}->{} sock={:#x} ret={}",
                    e.op,
                    e.syscall,
                    fmt_endpoint(&e.local),
                    fmt_endpoint(&e.remote),
                    e.sock,
                    e.ret
                )
                .map_err(o)?;
                if e.has_seq() {
                    write!(out, " seq={}", e.seq).map_err(o)?;
                }
                if e.is_peek() {
                    write!(out, " peek").map_err(o)?;
                }
                if !e.bytes_known() {
                    write!(out, " nobytes").map_err(o)?;
                }
                if e.flags & flags::MERGED != 0 {
                    write!(out, " merged").map_err(o)?;
                }
                if e.flags & !flags::ALL != 0 {
                    write!(out, " flags={:#x}", e.flags).map_err(o)?;
                }
                match e.data.as_deref() {
                    None => {}
                    Some(Data::Bytes { offset, bytes }) => {
                        write!(
                            out,
                            " data@{offset}[{}]=\"{}\"",
                            bytes.len(),
                            bytes.escape_ascii()
                        )
                        .map_err(o)?;
                    }
                    Some(Data::Label(l)) => {
                        let kind = if l.reply { "reply" } else { "request" };
                        write!(out, " {kind}={}:{:?}", l.protocol, l.name).map_err(o)?;
                        for (k, v) in &l.attrs {
                            write!(out, " {k}={v:?}").map_err(o)?;
                        }
                    }
                }
                writeln!(out).map_err(o)?;
            }
            Record::Thread(t) => {
                let c = fmt_comm(&t.comm);
                writeln!(out, "thread pid={} tid={} comm={}", t.pid, t.tid, c).map_err(o)?;
                comms.insert(t.tid, c);
            }
            Record::Checkpoint(c) => {
                writeln!(
                    out,
                    "{} checkpoint lost_total={}",
                    fmt_ts(c.ts_ns),
                    c.lost_total
                )
                .map_err(o)?;
            }
        }
    }
    let end = reader.end();
    match end {
        Some(s) => {
            writeln!(
                out,
                "end events_emitted={} events_written={} events_lost={}",
                s.events_emitted, s.events_written, s.events_lost
            )
            .map_err(o)?;
            if h.is_raw() {
                // The trailer counts socket records; which raw records are
                // those is the recorder's layout, unknown here.
                write!(out, "# ended cleanly: End trailer present, {events} raw records read")
                    .map_err(o)?;
            } else {
                write!(out, "# ended cleanly: End trailer present, {events} events read")
                    .map_err(o)?;
            }
            if !h.is_raw() && s.events_written != events {
                write!(
                    out,
                    "; WARNING: the trailer says {} events were written",
                    s.events_written
                )
                .map_err(o)?;
            }
            writeln!(out).map_err(o)?;
        }
        None => writeln!(
            out,
            "# NOT ended cleanly: no End trailer (log truncated at a block boundary, or the recorder was killed); {events} events read"
        )
        .map_err(o)?,
    }
    Ok(DumpSummary {
        records,
        events,
        end,
    })
}
