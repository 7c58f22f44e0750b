//! Sources: anything that yields one host's records. The binary log, the
//! importers and (in the binary) the live recorder all stand behind
//! [`Source`], so the analysis does not care where events come from.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use vpath_core::Record;
use vpath_import::{Format, ImportError, SeedImporter, StraceImporter};
use vpath_log::{Clock, LogError, LogReader};

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

/// Opens a file, recognizing its format from its first bytes.
pub fn open(path: &Path) -> Result<Box<dyn Source>, SourceError> {
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
        return Ok(Box::new(LogSource::new(f, file)?));
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
}

impl LogSource {
    pub fn new(f: File, file: String) -> Result<Self, SourceError> {
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
        Ok(LogSource {
            reader: Some(reader),
            info,
        })
    }
}

impl Source for LogSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn next_record(&mut self) -> Result<Option<Record>, SourceError> {
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
