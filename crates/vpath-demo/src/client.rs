//! vApp's load generator: N threads, each with its own keep-alive connection
//! to the entry tier, in a closed loop.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::proto::{
    gettid, mix, mono_ns, pick_size, Header, InMsg, OutMsg, Rng, KIND_REPLY, KIND_REQUEST,
};
use crate::tier::IdGen;
use crate::truth::{TruthKind, TruthLog, TruthRecord};

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub target: SocketAddr,
    pub threads: usize,
    /// Stop issuing requests after this long...
    pub duration: Option<Duration>,
    /// ...or after this many requests per thread (whichever comes first).
    pub requests: Option<u64>,
    pub truth: Option<PathBuf>,
    /// One latency (ns) per line.
    pub latency: Option<PathBuf>,
    /// Wait for a line on stdin before starting (so that a recorder can be
    /// attached to this process first).
    pub wait_go: bool,
    pub seed: u64,
    pub large_pct: u8,
}

/// What the client prints on stdout (one JSON line) when done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientSummary {
    pub requests: u64,
    pub errors: u64,
    pub elapsed_ns: u64,
    pub throughput: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client: cannot connect to {target}")]
    Connect {
        target: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("client: cannot write {file}")]
    Output {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("client: neither a duration nor a request count given")]
    Unbounded,
}

struct ThreadResult {
    latencies: Vec<u64>,
    errors: u64,
}

pub fn run_client(cfg: ClientConfig) -> Result<ClientSummary, ClientError> {
    if cfg.duration.is_none() && cfg.requests.is_none() {
        return Err(ClientError::Unbounded);
    }
    let out_err = |file: &PathBuf| {
        let file = file.clone();
        move |source| ClientError::Output { file, source }
    };
    let truth = Arc::new(match &cfg.truth {
        Some(p) => TruthLog::create(Some(p)).map_err(out_err(p))?,
        None => TruthLog::create(None).map_err(out_err(&PathBuf::new()))?,
    });
    if cfg.wait_go {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    let ids = Arc::new(IdGen::new());
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut handles = Vec::new();
    for t in 0..cfg.threads.max(1) {
        let s =
            TcpStream::connect_timeout(&cfg.target, Duration::from_secs(5)).map_err(|source| {
                ClientError::Connect {
                    target: cfg.target,
                    source,
                }
            })?;
        let _ = s.set_nodelay(true);
        let truth = truth.clone();
        let ids = ids.clone();
        let cfg = cfg.clone();
        handles.push(std::thread::spawn(move || {
            client_thread(s, &cfg, t as u64, deadline, &ids, &truth)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        match h.join() {
            Ok(r) => {
                lat.extend(r.latencies);
                errors += r.errors;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    if let Some(p) = &cfg.truth {
        truth.flush().map_err(out_err(p))?;
    }
    if let Some(p) = &cfg.latency {
        let mut text = String::with_capacity(lat.len() * 8);
        for l in &lat {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        std::fs::write(p, text).map_err(out_err(p))?;
    }
    Ok(ClientSummary {
        requests: lat.len() as u64,
        errors,
        elapsed_ns: elapsed.as_nanos() as u64,
        throughput: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

fn client_thread(
    s: TcpStream,
    cfg: &ClientConfig,
    t: u64,
    deadline: Option<Instant>,
    ids: &IdGen,
    truth: &TruthLog,
) -> ThreadResult {
    let fd = s.as_raw_fd();
    let tid = gettid();
    let local = s.local_addr().unwrap_or(cfg.target);
    let mut rng = Rng::new(mix(cfg.seed ^ (t << 48) ^ std::process::id() as u64));
    let mut res = ThreadResult {
        latencies: Vec::new(),
        errors: 0,
    };
    let mut n = 0u64;
    loop {
        if cfg.requests.is_some_and(|r| n >= r) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        n += 1;
        let id = ids.next();
        let h = Header {
            kind: KIND_REQUEST,
            len: pick_size(&mut rng, cfg.large_pct),
            reply_len: pick_size(&mut rng, cfg.large_pct),
            id,
            parent: 0,
        };
        let mut out = OutMsg::new(&h, rng.next_u64());
        let start_ns = mono_ns();
        if out.write_all(fd).is_err() {
            res.errors += 1;
            break;
        }
        let reply = match InMsg::new(rng.next_u64(), 0).read_all(fd) {
            Ok(Some(r)) => r,
            _ => {
                res.errors += 1;
                break;
            }
        };
        let end_ns = mono_ns();
        if reply.id != id || reply.kind != KIND_REPLY {
            res.errors += 1;
            break;
        }
        res.latencies.push(end_ns - start_ns);
        truth.log(&TruthRecord {
            kind: TruthKind::Origin,
            tier: "client".into(),
            model: "client".into(),
            id,
            parent: 0,
            pid: std::process::id(),
            tid,
            reply_tid: tid,
            local,
            remote: cfg.target,
            start_ns,
            end_ns,
            bytes_in: reply.wire_len(),
            bytes_out: out.total(),
        });
    }
    res
}

/// Prints the summary as one JSON line.
pub fn print_summary(s: &ClientSummary) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, s);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
