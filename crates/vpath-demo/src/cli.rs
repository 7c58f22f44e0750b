//! vApp's command line: `tier ...` and `client ...`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{print_summary, run_client, ClientConfig};
use crate::tier::{run_tier, TierConfig};
use crate::topology::{CallSpec, Model};

pub const USAGE: &str = "\
usage: vapp tier --name NAME --listen ADDR --model MODEL [--truth FILE] [--ready FILE]
                 [--upstream NAME=ADDR]... [--call NAME:PERCENT:MAX_TIMES]... [--workers N]
                 [--large-pct P]
       vapp client --target ADDR [--threads N] [--duration-ms MS] [--requests N_PER_THREAD]
                 [--truth FILE] [--latency FILE] [--wait-go] [--seed S] [--large-pct P]
MODEL: thread-per-request | thread-pool | event-loop";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("missing subcommand: expected `tier` or `client`")]
    NoCommand,
    #[error("unknown subcommand {0:?}: expected `tier` or `client`")]
    UnknownCommand(String),
    #[error("argument {index}: unknown option {opt:?}")]
    UnknownOption { index: usize, opt: String },
    #[error("argument {index}: option {opt} needs a value")]
    MissingValue { index: usize, opt: String },
    #[error("argument {index}: bad value {value:?} for {opt}: {what}")]
    BadValue {
        index: usize,
        opt: String,
        value: String,
        what: String,
    },
    #[error("missing required option {0}")]
    Required(&'static str),
}

/// A parsed vApp command.
#[derive(Debug)]
pub enum Command {
    Tier(TierConfig),
    Client(ClientConfig),
}

struct Args {
    v: Vec<String>,
    i: usize,
}

impl Args {
    fn value(&mut self, opt: &str) -> Result<(usize, String), CliError> {
        self.i += 1;
        match self.v.get(self.i) {
            Some(v) => Ok((self.i, v.clone())),
            None => Err(CliError::MissingValue {
                index: self.i,
                opt: opt.into(),
            }),
        }
    }
    fn parsed<T: std::str::FromStr>(&mut self, opt: &str) -> Result<T, CliError>
    where
        T::Err: std::fmt::Display,
    {
        let (index, value) = self.value(opt)?;
        value.parse().map_err(|e: T::Err| CliError::BadValue {
            index,
            opt: opt.into(),
            what: e.to_string(),
            value,
        })
    }
}

/// Parses `args` (the arguments after the program name).
pub fn parse(args: Vec<String>) -> Result<Command, CliError> {
    let cmd = args.first().cloned().ok_or(CliError::NoCommand)?;
    let mut a = Args { v: args, i: 0 };
    match cmd.as_str() {
        "tier" => {
            let (mut name, mut listen, mut model) = (None, None, None);
            let mut cfg = TierConfig {
                name: String::new(),
                listen: SocketAddr::from(([0, 0, 0, 0], 0)),
                model: Model::ThreadPerRequest,
                truth: None,
                ready: None,
                upstreams: Vec::new(),
                calls: Vec::new(),
                workers: 4,
                large_pct: 3,
            };
            while a.i + 1 < a.v.len() {
                a.i += 1;
                let opt = a.v[a.i].clone();
                match opt.as_str() {
                    "--name" => name = Some(a.value(&opt)?.1),
                    "--listen" => listen = Some(a.parsed::<SocketAddr>(&opt)?),
                    "--model" => model = Some(a.parsed::<Model>(&opt)?),
                    "--truth" => cfg.truth = Some(PathBuf::from(a.value(&opt)?.1)),
                    "--ready" => cfg.ready = Some(PathBuf::from(a.value(&opt)?.1)),
                    "--workers" => cfg.workers = a.parsed(&opt)?,
                    "--large-pct" => cfg.large_pct = a.parsed(&opt)?,
                    "--call" => cfg.calls.push(a.parsed::<CallSpec>(&opt)?),
                    "--upstream" => {
                        let (index, v) = a.value(&opt)?;
                        let bad = |what: &str| CliError::BadValue {
                            index,
                            opt: opt.clone(),
                            value: v.clone(),
                            what: what.into(),
                        };
                        let (n, addr) =
                            v.split_once('=').ok_or_else(|| bad("expected NAME=ADDR"))?;
                        let addr: SocketAddr = addr
                            .parse()
                            .map_err(|e: std::net::AddrParseError| bad(&e.to_string()))?;
                        cfg.upstreams.push((n.to_string(), addr));
                    }
                    _ => return Err(CliError::UnknownOption { index: a.i, opt }),
                }
            }
            cfg.name = name.ok_or(CliError::Required("--name"))?;
            cfg.listen = listen.ok_or(CliError::Required("--listen"))?;
            cfg.model = model.ok_or(CliError::Required("--model"))?;
            Ok(Command::Tier(cfg))
        }
        "client" => {
            let mut target = None;
            let mut cfg = ClientConfig {
                target: SocketAddr::from(([0, 0, 0, 0], 0)),
                threads: 1,
                duration: None,
                requests: None,
                truth: None,
                latency: None,
                wait_go: false,
                seed: 1,
                large_pct: 3,
            };
            while a.i + 1 < a.v.len() {
                a.i += 1;
                let opt = a.v[a.i].clone();
                match opt.as_str() {
                    "--target" => target = Some(a.parsed::<SocketAddr>(&opt)?),
                    "--threads" => cfg.threads = a.parsed(&opt)?,
                    "--duration-ms" => cfg.duration = Some(Duration::from_millis(a.parsed(&opt)?)),
                    "--requests" => cfg.requests = Some(a.parsed(&opt)?),
                    "--truth" => cfg.truth = Some(PathBuf::from(a.value(&opt)?.1)),
                    "--latency" => cfg.latency = Some(PathBuf::from(a.value(&opt)?.1)),
                    "--wait-go" => cfg.wait_go = true,
                    "--seed" => cfg.seed = a.parsed(&opt)?,
                    "--large-pct" => cfg.large_pct = a.parsed(&opt)?,
                    _ => return Err(CliError::UnknownOption { index: a.i, opt }),
                }
            }
            cfg.target = target.ok_or(CliError::Required("--target"))?;
            if cfg.duration.is_none() && cfg.requests.is_none() {
                return Err(CliError::Required("--duration-ms or --requests"));
            }
            Ok(Command::Client(cfg))
        }
        other => Err(CliError::UnknownCommand(other.into())),
    }
}

fn report(e: &dyn std::error::Error) {
    let mut msg = format!("vapp: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}

/// vApp's entry point. `args` are the arguments after the program name,
/// starting with the subcommand (`tier` or `client`).
/// Sets the calling thread's name (the process's name, for the main thread).
fn name_this_thread(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

pub fn vapp_main(args: Vec<String>) -> ExitCode {
    let cmd = match parse(args) {
        Ok(cmd) => cmd,
        Err(e) => {
            report(&e);
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The process is named after its tier (its threads already are), so
    // that paths and topologies group by program.
    match cmd {
        Command::Tier(cfg) => {
            name_this_thread(&cfg.name);
            match run_tier(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    report(&e);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Client(cfg) => {
            name_this_thread("vapp-client");
            match run_client(cfg) {
                Ok(s) => {
                    print_summary(&s);
                    if s.errors > 0 {
                        eprintln!("vapp: client: {} requests failed", s.errors);
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    report(&e);
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_a_tier() {
        let c = parse(v(
            "tier --name catalog --listen 10.77.0.4:8002 --model event-loop \
             --upstream storage=10.77.0.5:8003 --call storage:100:2 --truth t.jsonl",
        ))
        .unwrap();
        let Command::Tier(t) = c else { panic!() };
        assert_eq!(t.name, "catalog");
        assert_eq!(t.model, Model::EventLoop);
        assert_eq!(t.upstreams[0].1, "10.77.0.5:8003".parse().unwrap());
        assert_eq!(t.calls[0].max_times, 2);
    }

    #[test]
    fn errors_say_which_argument() {
        assert_eq!(parse(vec![]).unwrap_err(), CliError::NoCommand);
        assert!(matches!(
            parse(v("tier --name a --listen nope")),
            Err(CliError::BadValue { index: 4, .. })
        ));
        assert!(matches!(
            parse(v("tier --name")),
            Err(CliError::MissingValue { index: 2, .. })
        ));
        assert!(matches!(
            parse(v("client --target 1.2.3.4:5 --bogus")),
            Err(CliError::UnknownOption { index: 3, .. })
        ));
        assert_eq!(
            parse(v("client --target 1.2.3.4:5")).unwrap_err(),
            CliError::Required("--duration-ms or --requests")
        );
        assert!(matches!(
            parse(v("tier --name a --listen 1.2.3.4:5 --model x")),
            Err(CliError::BadValue { .. })
        ));
    }
}
