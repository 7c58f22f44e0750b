//! Sources: anything that yields one host's records. The binary log, the
//! importers and (in the binary) the live recorder all stand behind
//! [`Source`], so the analysis does not care where events come from.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use vpath_core::{Checkpoint, Label, Record};
use vpath_import::{Format, ImportError, SeedImporter, StraceImporter};
use vpath_log::{Clock, Item, LogError, LogReader};

/// What a source is, and what it has delivered so far.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SourceInfo {
    /// The file (or `live`).
    pub file: String,
    /// `vlog`, `seed`, `strace`, `live`.
    pub format: String,
    /// The host's name: from the log header, else the file's stem.
    pub host: String,
    /// `monotonic` or `wall`: the clock of the source's timestamps.
    pub clock: String,
    /// Add to a timestamp to get Unix-epoch nanoseconds (0 for wall clocks).
    pub wall_minus_mono_ns: i64,
    /// The source carries loss checkpoints.
    pub checkpointed: bool,
    pub records: u64,
    /// For logs with an end record: whether it was there (None: the format
    /// has none).
    pub clean_end: Option<bool>,
    /// Lines of no interest skipped by an importer.
    pub skipped: u64,
    /// Errors reported (the source went on after each, or stopped at it).
    pub errors: u64,
}

/// A read error, with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{file}: {source}")]
    Open {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Log {
        file: String,
        #[source]
        source: LogError,
    },
    #[error("{file}: {source}")]
    Import {
        file: String,
        #[source]
        source: ImportError,
    },
    #[error("{file}: a raw capture (layout {layout:?}) that {why}")]
    RawLayout {
        file: String,
        layout: String,
        why: String,
    },
    #[error("{file}: raw record at byte {offset} does not parse ({detail}); skipped, and the replay goes on")]
    RawRecord {
        file: String,
        offset: u64,
        detail: String,
    },
    #[error("{file}: not a vpath log, a seed (Xen) log or strace output: the first line is neither (expected a vpath log's magic bytes, `NNNN DomN ...` or `PID TIMESTAMP syscall(...)`)")]
    UnknownFormat { file: String },
}

impl SourceError {
    /// Whether the source can go on after this error (a bad line of a text
    /// import) or has ended (damage in a binary log, a read error).
    pub fn is_fatal(&self) -> bool {
        match self {
            SourceError::Import { source, .. } => {
                matches!(source.kind, vpath_import::ErrorKind::Io { .. })
            }
            SourceError::RawRecord { .. } => false,
            _ => true,
        }
    }
}

/// One host's stream of records.
pub trait Source {
    fn info(&self) -> &SourceInfo;
    /// The next record; `Ok(None)` at the end. After a fatal error the
    /// source is at its end.
    fn next_record(&mut self) -> Result<Option<Record>, SourceError>;
}

/// Parses the Raw records of a raw log (format 1.3): kernel records in the
/// recorder's layout, which this crate does not know. The binary supplies
/// one (vpath-bpf's replay) through [`open_with`].
pub trait RawReplay {
    /// One Raw record, from stream (ring) `stream`, with the label the
    /// recorder made of its message bytes. Records go to `out`; an error
    /// says why the record does not parse.
    fn record(
        &mut self,
        stream: u32,
        bytes: &[u8],
        label: Option<Arc<Label>>,
        out: &mut dyn FnMut(Record),
    ) -> Result<(), String>;
    /// A poll's end, as the log's Checkpoint record says.
    fn checkpoint(&mut self, cp: Checkpoint, out: &mut dyn FnMut(Record));
    /// The end of the log: everything held goes out. `clean`: the log
    /// ended with its End record; else records of its last poll may be
    /// missing, and the replay must say so (count a loss) rather than
    /// promise them complete.
    fn finish(&mut self, clean: bool, out: &mut dyn FnMut(Record));
}

/// Makes the replay of a raw layout (the header's `raw_layout`), or says
/// why it cannot (a layout of another recorder version).
pub type RawReplayFactory = fn(layout: &str) -> Result<Box<dyn RawReplay>, String>;

/// Opens a file, recognizing its format from its first bytes. Raw logs need
/// [`open_with`].
pub fn open(path: &Path) -> Result<Box<dyn Source>, SourceError> {
    open_with(path, None)
}

/// As [`open`], with the replay of raw logs.
pub fn open_with(
    path: &Path,
    raw: Option<RawReplayFactory>,
) -> Result<Box<dyn Source>, SourceError> {
    let file = path.display().to_string();
    let open_err = |source| SourceError::Open {
        file: file.clone(),
        source,
    };
    let mut f = File::open(path).map_err(open_err)?;
    let mut head = vec![0u8; 8192];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_err(e)),
        }
    }
    head.truncate(n);
    let f = File::open(path).map_err(open_err)?;
    if head.starts_with(&vpath_log::MAGIC) {
        return Ok(Box::new(LogSource::with_raw(f, file, raw)?));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    match vpath_import::sniff(&head) {
        Some(Format::Seed) => Ok(Box::new(ImportSource::seed(f, file, stem))),
        Some(Format::Strace) => Ok(Box::new(ImportSource::strace(f, file, stem))),
        None => Err(SourceError::UnknownFormat { file }),
    }
}

/// The binary log written by `vpath record`.
pub struct LogSource {
    reader: Option<LogReader<BufReader<File>>>,
    info: SourceInfo,
    /// For a raw log: its replay, and the records it handed out that wait
    /// to be returned.
    replay: Option<Box<dyn RawReplay>>,
    pending: VecDeque<Record>,
    /// The error that ended a raw log, returned after the records the
    /// replay still held.
    deferred: Option<SourceError>,
}

impl LogSource {
    /// An event log (a raw log is an error: see [`LogSource::with_raw`]).
    pub fn new(f: File, file: String) -> Result<Self, SourceError> {
        Self::with_raw(f, file, None)
    }

    /// A log of either kind; a raw log is replayed with the replay `raw`
    /// makes for its layout.
    pub fn with_raw(
        f: File,
        file: String,
        raw: Option<RawReplayFactory>,
    ) -> Result<Self, SourceError> {
        let reader = LogReader::new(BufReader::with_capacity(1 << 20, f)).map_err(|source| {
            SourceError::Log {
                file: file.clone(),
                source,
            }
        })?;
        let h = reader.header();
        let info = SourceInfo {
            file,
            format: "vlog".into(),
            host: h.host.clone(),
            clock: h.clock.name().into(),
            wall_minus_mono_ns: if h.clock == Clock::Monotonic {
                h.wall_minus_mono_ns
            } else {
                0
            },
            checkpointed: h.checkpointed(),
            records: 0,
            clean_end: None,
            skipped: 0,
            errors: 0,
        };
        let replay = if h.is_raw() {
            let layout = h.raw_layout.clone();
            let Some(make) = raw else {
                return Err(SourceError::RawLayout {
                    file: info.file,
                    layout,
                    why: "only the vpath binary can replay".into(),
                });
            };
            let r = make(&layout).map_err(|why| SourceError::RawLayout {
                file: info.file.clone(),
                layout,
                why,
            })?;
            Some(r)
        } else {
            None
        };
        let mut info = info;
        if replay.is_some() {
            info.format = "vlog-raw".into();
        }
        Ok(LogSource {
            reader: Some(reader),
            info,
            replay,
            pending: VecDeque::new(),
            deferred: None,
        })
    }

    /// Reads on until the replay hands out a record (or the log ends).
    fn next_replayed(&mut self) -> Result<Option<Record>, SourceError> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                self.info.records += 1;
                return Ok(Some(r));
            }
            let (Some(reader), Some(replay)) = (self.reader.as_mut(), self.replay.as_mut()) else {
                return match self.deferred.take() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            };
            let pending = &mut self.pending;
            let mut out = |r: Record| pending.push_back(r);
            match reader.next_item() {
                Ok(Some(Item::Raw(x))) => {
                    if let Err(detail) = replay.record(x.stream, x.bytes, x.label, &mut out) {
                        self.info.errors += 1;
                        return Err(SourceError::RawRecord {
                            file: self.info.file.clone(),
                            offset: x.offset,
                            detail,
                        });
                    }
                }
                Ok(Some(Item::Record(Record::Checkpoint(cp)))) => replay.checkpoint(cp, &mut out),
                Ok(Some(Item::Record(r))) => out(r),
                Ok(None) => {
                    let clean = reader.end().is_some();
                    replay.finish(clean, &mut out);
                    self.info.clean_end = Some(clean);
                    self.reader = None;
                }
                Err(source) => {
                    // What the replay holds was read whole: it goes out
                    // first, then the error.
                    replay.finish(false, &mut out);
                    self.info.errors += 1;
                    self.info.clean_end = Some(false);
                    self.reader = None;
                    self.deferred = Some(SourceError::Log {
                        file: self.info.file.clone(),
                        source,
                    });
                }
            }
        }
    }
}

impl Source for LogSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn next_record(&mut self) -> Result<Option<Record>, SourceError> {
        if self.replay.is_some() {
            return self.next_replayed();
        }
        let Some(r) = self.reader.as_mut() else {
            return Ok(None);
        };
        match r.next_record() {
            Ok(Some(rec)) => {
                self.info.records += 1;
                Ok(Some(rec))
            }
            Ok(None) => {
                self.info.clean_end = Some(r.end().is_some());
                self.reader = None;
                Ok(None)
            }
            Err(source) => {
                self.info.errors += 1;
                self.info.clean_end = Some(false);
                self.reader = None;
                Err(SourceError::Log {
                    file: self.info.file.clone(),
                    source,
                })
            }
        }
    }
}

enum Importer {
    Seed(SeedImporter<BufReader<File>>),
    Strace(StraceImporter<BufReader<File>>),
}

/// A text log written by another tool.
pub struct ImportSource {
    imp: Option<Importer>,
    info: SourceInfo,
}

impl ImportSource {
    fn with(imp: Importer, file: String, host: String, format: &str, clock: &str) -> Self {
        ImportSource {
            imp: Some(imp),
            info: SourceInfo {
                file,
                format: format.into(),
                host,
                clock: clock.into(),
                ..SourceInfo::default()
            },
        }
    }
    pub fn seed(f: File, file: String, host: String) -> Self {
        // The seed's time stamps are an opaque counter: treat as monotonic.
        Self::with(
            Importer::Seed(SeedImporter::new(BufReader::new(f))),
            file,
            host,
            "seed",
            "monotonic",
        )
    }
    pub fn strace(f: File, file: String, host: String) -> Self {
        Self::with(
            Importer::Strace(StraceImporter::new(BufReader::new(f))),
            file,
            host,
            "strace",
            "wall",
        )
    }
}

impl Source for ImportSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn next_record(&mut self) -> Result<Option<Record>, SourceError> {
        let Some(imp) = self.imp.as_mut() else {
            return Ok(None);
        };
        let (next, skipped) = match imp {
            Importer::Seed(i) => (i.next(), i.skipped()),
            Importer::Strace(i) => (i.next(), i.skipped()),
        };
        self.info.skipped = skipped as u64;
        match next {
            Some(Ok(rec)) => {
                self.info.records += 1;
                Ok(Some(rec))
            }
            None => {
                self.imp = None;
                Ok(None)
            }
            Some(Err(source)) => {
                self.info.errors += 1;
                let e = SourceError::Import {
                    file: self.info.file.clone(),
                    source,
                };
                if e.is_fatal() {
                    self.imp = None;
                }
                Err(e)
            }
        }
    }
}
