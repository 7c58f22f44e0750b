//! The ground truth: every vApp process logs each request it handled (tiers)
//! or issued (the client), one JSON object per line, one file per process.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Which side of an exchange a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruthKind {
    /// The client's request (the root of a request tree).
    Origin,
    /// A tier's handling of one inbound request.
    Server,
}

/// One handled (or, for the client, issued) request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    pub kind: TruthKind,
    /// Tier name (`client` for the load generator).
    pub tier: String,
    /// Execution model of the tier (`client` for the load generator).
    pub model: String,
    /// The request id carried in the message header.
    pub id: u64,
    /// The id of the request the caller was serving; 0 for origins.
    pub parent: u64,
    pub pid: u32,
    /// The thread that received the request (server) or sent it (origin).
    pub tid: u32,
    /// The thread that sent the reply (server) or received it (origin);
    /// differs from `tid` after a thread-pool hand-off.
    pub reply_tid: u32,
    /// This process's end of the connection.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// CLOCK_MONOTONIC before the first byte of the request was read (server)
    /// or written (origin).
    pub start_ns: u64,
    /// CLOCK_MONOTONIC after the last byte of the reply was written (server)
    /// or read (origin).
    pub end_ns: u64,
    /// Bytes received on this connection for the exchange, header included.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("{file}: cannot read")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: expected a truth record (JSON object with kind, tier, id, ...)")]
    Parse {
        file: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}:{line}: {what}")]
    Invalid {
        file: PathBuf,
        line: usize,
        what: String,
    },
}

/// Reads one truth file. Blank lines are skipped.
pub fn read_truth_file(path: &Path) -> Result<Vec<TruthRecord>, TruthError> {
    let f = File::open(path).map_err(|source| TruthError::Io {
        file: path.into(),
        source,
    })?;
    read_truth(BufReader::new(f), path)
}

/// Reads truth records from `r`; `name` is used in errors.
pub fn read_truth(r: impl BufRead, name: &Path) -> Result<Vec<TruthRecord>, TruthError> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|source| TruthError::Io {
            file: name.into(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: TruthRecord = serde_json::from_str(&line).map_err(|source| TruthError::Parse {
            file: name.into(),
            line: i + 1,
            source,
        })?;
        if rec.end_ns < rec.start_ns {
            return Err(TruthError::Invalid {
                file: name.into(),
                line: i + 1,
                what: format!("end_ns {} is before start_ns {}", rec.end_ns, rec.start_ns),
            });
        }
        if rec.id == 0 {
            return Err(TruthError::Invalid {
                file: name.into(),
                line: i + 1,
                what: "request id 0 is reserved for \"no parent\"".into(),
            });
        }
        out.push(rec);
    }
    Ok(out)
}

/// A process's truth log: records are serialized as they come and written
/// on [`TruthLog::flush`] (the tiers flush periodically and on SIGTERM).
#[derive(Debug)]
pub struct TruthLog {
    disabled: bool,
    file: Mutex<Option<File>>,
    buf: Mutex<String>,
}

impl TruthLog {
    pub fn create(path: Option<&Path>) -> std::io::Result<TruthLog> {
        let file = match path {
            Some(p) => Some(File::create(p)?),
            None => None,
        };
        Ok(TruthLog {
            disabled: file.is_none(),
            file: Mutex::new(file),
            buf: Mutex::new(String::new()),
        })
    }

    /// Appends a record (nothing when the log has no file).
    pub fn log(&self, rec: &TruthRecord) {
        if self.disabled {
            return;
        }
        let line = match serde_json::to_string(rec) {
            Ok(l) => l,
            Err(_) => return, // plain data: cannot fail
        };
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        b.push_str(&line);
        b.push('\n');
    }

    pub fn flush(&self) -> std::io::Result<()> {
        let data = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()));
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = f.as_mut() {
            f.write_all(data.as_bytes())?;
            f.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> TruthRecord {
        TruthRecord {
            kind: TruthKind::Server,
            tier: "auth".into(),
            model: "thread-pool".into(),
            id: 5,
            parent: 3,
            pid: 10,
            tid: 11,
            reply_tid: 12,
            local: "10.77.0.3:8001".parse().unwrap(),
            remote: "10.77.0.2:40000".parse().unwrap(),
            start_ns: 100,
            end_ns: 200,
            bytes_in: 50,
            bytes_out: 60,
        }
    }

    #[test]
    fn records_round_trip_through_the_log() {
        let dir = std::env::temp_dir().join(format!("vpd-truth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.jsonl");
        let log = TruthLog::create(Some(&p)).unwrap();
        log.log(&rec());
        let mut r2 = rec();
        r2.kind = TruthKind::Origin;
        r2.id = u64::MAX;
        log.log(&r2);
        log.flush().unwrap();
        assert_eq!(read_truth_file(&p).unwrap(), vec![rec(), r2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_line() {
        let good = serde_json::to_string(&rec()).unwrap();
        let text = format!("{good}\n\n{{\"kind\":\"server\"}}\n");
        let err = read_truth(text.as_bytes(), Path::new("x.jsonl")).unwrap_err();
        assert!(matches!(err, TruthError::Parse { line: 3, .. }), "{err}");
        assert!(err.to_string().starts_with("x.jsonl:3:"));
        let mut bad = rec();
        bad.end_ns = 1;
        let text = serde_json::to_string(&bad).unwrap();
        let err = read_truth(text.as_bytes(), Path::new("y")).unwrap_err();
        assert!(matches!(err, TruthError::Invalid { line: 1, .. }), "{err}");
    }
}
