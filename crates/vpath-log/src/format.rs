//! Constants and plain types of the on-disk format (see FORMAT.md).

/// The first 8 bytes of every log.
pub const MAGIC: [u8; 8] = [0x89, b'V', b'P', b'A', b'T', b'H', b'\r', b'\n'];
/// The major format version this crate writes and reads. Readers reject
/// other major versions.
pub const VERSION_MAJOR: u16 = 1;
/// The minor format version this crate writes. Minor versions only add
/// things older readers may ignore (record kinds >= 0x80, trailing bytes in
/// record bodies).
pub const VERSION_MINOR: u16 = 3;

/// Size of the fixed file-header prefix: magic, major, minor, body length.
pub const FILE_PREFIX_LEN: usize = 16;
/// Upper bound of the file-header body.
pub const MAX_HEADER_BODY: u32 = 1 << 16;
/// Upper bound of a header string (host, recorder).
pub const MAX_HEADER_STRING: usize = 4096;
/// Size of a block header: payload length, block index, payload crc, header crc.
pub const BLOCK_HEADER_LEN: usize = 16;
/// Upper bound of one block payload.
pub const MAX_BLOCK_PAYLOAD: u32 = 16 << 20;
/// Socket ids are below this bound.
pub const MAX_SOCKET_ID: u64 = 1 << 20;

/// Record kinds. Kinds >= [`kind::FIRST_SKIPPABLE`] unknown to a reader are
/// skipped; other unknown kinds are an error.
pub mod kind {
    pub const EVENT: u8 = 1;
    pub const SOCKET: u8 = 2;
    pub const THREAD_STATE: u8 = 3;
    pub const THREAD: u8 = 4;
    pub const CHECKPOINT: u8 = 5;
    pub const END: u8 = 6;
    pub const RESET: u8 = 7;
    /// A recorder's record as the kernel wrote it (format 1.3, only in logs
    /// with [`super::header_flags::RAW`]): `varint stream << 1 | labelled,
    /// [varint label id], bytes`. Not skippable: a reader that cannot parse
    /// it must not read the log as if it were empty.
    pub const RAW: u8 = 8;
    pub const FIRST_SKIPPABLE: u8 = 0x80;
    /// A label definition (format 1.2): `varint id, label`. Skippable: a
    /// 1.1 reader skips it and ignores the references (data kind 3), so it
    /// reads a 1.2 log without its labels.
    pub const LABEL: u8 = 0x80;

    pub fn name(k: u8) -> &'static str {
        match k {
            EVENT => "Event",
            SOCKET => "Socket",
            THREAD_STATE => "ThreadState",
            THREAD => "Thread",
            CHECKPOINT => "Checkpoint",
            END => "End",
            RESET => "Reset",
            RAW => "Raw",
            LABEL => "Label",
            k if k >= FIRST_SKIPPABLE => "skippable",
            _ => "unknown",
        }
    }
}

/// The kinds of an Event record's data extension (format 1.1).
pub mod data_kind {
    /// Raw message bytes: `varint offset, varint len, len bytes`.
    pub const BYTES: u8 = 1;
    /// A protocol label: `u8 reply, string protocol, string name, varint n,
    /// n x (string key, string value)`.
    pub const LABEL: u8 = 2;
    /// A label defined earlier by a Label record (format 1.2): `varint id`.
    pub const LABEL_REF: u8 = 3;
}

/// Label ids are below this bound (the writer's table, and so the reader's,
/// holds at most this many labels between Resets).
pub const MAX_LABEL_ID: u64 = 1 << 14;

/// Most bytes of one Raw record's kernel record.
pub const MAX_RAW_BYTES: usize = 1 << 20;

/// Most raw bytes one event carries.
pub const MAX_DATA_BYTES: usize = 64 * 1024;
/// Most attributes of one label.
pub const MAX_LABEL_ATTRS: usize = 64;
/// Longest label protocol or attribute key.
pub const MAX_LABEL_KEY: usize = 256;
/// Longest label name or attribute value.
pub const MAX_LABEL_VALUE: usize = 64 * 1024;

/// Header flag bits.
pub mod header_flags {
    /// The stream carries loss checkpoints.
    pub const CHECKPOINTED: u32 = 1;
    /// Events may carry raw message bytes (the recorder's opt-in payload
    /// capture). Without it, events carry at most protocol labels.
    pub const PAYLOADS: u32 = 2;
    /// The stream carries the recorder's kernel records as they were
    /// written (Raw records, format 1.3), to be parsed by a reader of the
    /// layout named in [`super::Header::raw_layout`]. Readers of 1.2 and
    /// older reject such logs (an unknown flag).
    pub const RAW: u32 = 4;
    pub const ALL: u32 = CHECKPOINTED | PAYLOADS | RAW;
}

/// The clock of the events' `ts_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clock {
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns). Add `wall_minus_mono_ns` for
    /// Unix-epoch time.
    Monotonic,
    /// Nanoseconds since the Unix epoch.
    Wall,
}

impl Clock {
    pub fn to_u8(self) -> u8 {
        match self {
            Clock::Monotonic => 0,
            Clock::Wall => 1,
        }
    }
    pub fn from_u8(v: u8) -> Option<Clock> {
        match v {
            0 => Some(Clock::Monotonic),
            1 => Some(Clock::Wall),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Clock::Monotonic => "monotonic",
            Clock::Wall => "wall",
        }
    }
}

/// The file header: what is true for the whole stream of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name of the recorded host.
    pub host: String,
    /// Add to a monotonic timestamp to get Unix-epoch nanoseconds (0 when
    /// `clock` is [`Clock::Wall`]).
    pub wall_minus_mono_ns: i64,
    /// The clock of `Event::ts_ns` and `Checkpoint::ts_ns`.
    pub clock: Clock,
    /// See [`header_flags`].
    pub flags: u32,
    /// Name and version of the recorder, e.g. `vpath-bpf 0.1.0`.
    pub recorder: String,
    /// When the capture started, Unix-epoch nanoseconds.
    pub start_unix_ns: u64,
    /// With [`header_flags::RAW`]: the layout of the Raw records' bytes, as
    /// the recorder names it (e.g. `vpath-bpf abi 4`); empty otherwise
    /// (format 1.3; read as empty from older logs).
    pub raw_layout: String,
}

impl Header {
    /// Whether the stream holds Raw records (see [`header_flags::RAW`]).
    pub fn is_raw(&self) -> bool {
        self.flags & header_flags::RAW != 0
    }

    pub fn checkpointed(&self) -> bool {
        self.flags & header_flags::CHECKPOINTED != 0
    }
    /// Converts a timestamp of this log's clock to Unix-epoch nanoseconds.
    pub fn to_unix_ns(&self, ts_ns: u64) -> u64 {
        match self.clock {
            Clock::Wall => ts_ns,
            Clock::Monotonic => ts_ns.wrapping_add(self.wall_minus_mono_ns as u64),
        }
    }
}

/// The trailer of a cleanly closed log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndStats {
    /// Events the source produced (delivered + lost).
    pub events_emitted: u64,
    /// Events written to this log; [`crate::LogWriter::events_written`].
    pub events_written: u64,
    /// Events the source lost (e.g. ring buffer full).
    pub events_lost: u64,
}
