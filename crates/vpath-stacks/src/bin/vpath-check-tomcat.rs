//! vpath-check-tomcat: judges `vpath analyze --format jsonl` output of a Tomcat stack load (stacks/tomcat)
//! against MariaDB's general query log, by request content only (see `vpath_stacks::tomcat`).
//!
//!   vpath analyze /tmp/tc.vpl --format jsonl -o /tmp/tc.jsonl
//!   vpath-check-tomcat --paths /tmp/tc.jsonl --stack-dir /tmp/vpath-stacks/tomcat [--json report.json]
//!
//! Prints a table, then the report as one JSON object on the last line. Exit code 0 (1 with --strict when not
//! every request is an exact path or anything is wrong; 2 on bad input).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::fmt::Write as _;
use std::fs;
use std::io::BufReader;
use std::path::PathBuf;
use vpath_stacks::common::{exit_with, print_findings_and_json};
use vpath_stacks::{genlog, read_paths, tomcat, Proto};

#[derive(Parser)]
#[command(
    name = "vpath-check-tomcat",
    about = "Check vpath's Tomcat paths against request content"
)]
struct Args {
    /// vpath's JSONL paths (`-` for standard input).
    #[arg(long)]
    paths: PathBuf,
    /// The stack folder (stacks/tomcat/stack.sh's $VPATH_TOMCAT_DIR): supplies the general log and the load
    /// summary unless given one by one.
    #[arg(long)]
    stack_dir: Option<PathBuf>,
    /// MariaDB's general query log.
    #[arg(long)]
    general_log: Option<PathBuf>,
    /// The load summary JSON (`stack.sh load` writes load/last.json): `requests` (ab's count) and `jdbc`.
    #[arg(long)]
    load_summary: Option<PathBuf>,
    /// Requests completed by the load generator (overrides the summary).
    #[arg(long)]
    requests: Option<u64>,
    /// `direct` (a JDBC connection per request) or `pool` (overrides the summary).
    #[arg(long)]
    jdbc: Option<String>,
    /// Statements naming the item per request (0: no count rule).
    #[arg(long, default_value_t = 3)]
    per_request: usize,
    /// Use the whole general log instead of the part between the load markers.
    #[arg(long)]
    whole_log: bool,
    /// Protocol of a server port, for spans without a `protocol` field (e.g. `--port http=8081`).
    #[arg(long = "port", value_name = "PROTO=PORT")]
    ports: Vec<String>,
    /// Also write the report JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// How many findings to list.
    #[arg(long, default_value_t = 40)]
    max_findings: usize,
    /// Exit 1 unless every request is an exact path and nothing is wrong.
    #[arg(long)]
    strict: bool,
}

fn run(a: Args) -> Result<bool> {
    let dir = a.stack_dir.clone();
    let from_dir = |p: &Option<PathBuf>, rel: &str| -> Option<PathBuf> {
        p.clone()
            .or_else(|| dir.as_ref().map(|d| d.join(rel)).filter(|p| p.exists()))
    };
    let mut cfg = tomcat::Config {
        max_findings: a.max_findings,
        statements_per_request: (a.per_request > 0).then_some(a.per_request),
        ..Default::default()
    };
    for p in &a.ports {
        let (proto, port) = p.split_once('=').context("--port takes PROTO=PORT")?;
        let proto = Proto::parse(proto);
        if !matches!(proto, Proto::Http | Proto::Mysql) {
            bail!("--port {p}: protocol must be http or mysql");
        }
        cfg.ports.retain(|_, v| *v != proto);
        cfg.ports.insert(
            port.parse()
                .with_context(|| format!("--port {p}: bad port"))?,
            proto,
        );
    }
    let paths = if a.paths.as_os_str() == "-" {
        read_paths(std::io::stdin().lock())?
    } else {
        let f =
            fs::File::open(&a.paths).with_context(|| format!("opening {}", a.paths.display()))?;
        read_paths(BufReader::new(f)).with_context(|| format!("in {}", a.paths.display()))?
    };
    let log_file = from_dir(&a.general_log, "mysql/general.log")
        .context("no general log: --general-log or --stack-dir")?;
    let log_text =
        fs::read(&log_file).with_context(|| format!("reading {}", log_file.display()))?;
    let entries = genlog::parse(&String::from_utf8_lossy(&log_text));
    let window = if a.whole_log {
        &entries[..]
    } else {
        genlog::window(&entries, "vpath-load-begin", "vpath-load-end")
    };
    let summary: Option<serde_json::Value> = match from_dir(&a.load_summary, "load/last.json") {
        Some(f) => Some(
            serde_json::from_slice(
                &fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
            )
            .with_context(|| format!("{}: not JSON", f.display()))?,
        ),
        None => None,
    };
    let requests = a
        .requests
        .or_else(|| summary.as_ref()?.get("requests")?.as_u64());
    let jdbc = a
        .jdbc
        .clone()
        .or_else(|| Some(summary.as_ref()?.get("jdbc")?.as_str()?.to_string()));
    if let Some(j) = &jdbc {
        if j != "direct" && j != "pool" {
            bail!("--jdbc must be direct or pool, not {j}");
        }
    }
    cfg.conn_mode = tomcat::conn_mode_of(jdbc.as_deref());
    let mut rep = tomcat::check(&paths, window, requests, &cfg);
    rep.jdbc = jdbc;
    let mut out = tomcat::Report::table(&[&rep]);
    let list = |m: &std::collections::BTreeMap<String, usize>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        out,
        "  spans: {}  issues: {}",
        list(&rep.spans),
        list(&rep.issues)
    );
    let _ = writeln!(
        out,
        "  item statements: log {} (window {} entries), item paths {}, missing {} ({} in non-item paths), surplus {}; in non-item paths {}",
        rep.log_item_queries,
        window.len(),
        rep.path_item_queries,
        rep.missing_queries,
        rep.missing_found_elsewhere,
        rep.surplus_queries,
        rep.non_item_path_item_queries
    );
    let _ = writeln!(
        out,
        "  item paths lacking a statement of their own connection that names no item: {} ({} statements; {} of those paths marked complete)",
        rep.unnamed_missing_paths, rep.unnamed_missing_queries, rep.complete_but_lacking
    );
    print_findings_and_json(
        out,
        "item",
        &rep.findings,
        rep.findings_total,
        &rep,
        a.json.as_deref(),
    )?;
    Ok(rep.all_exact())
}

fn main() {
    let a = Args::parse();
    let strict = a.strict;
    exit_with("vpath-check-tomcat", strict, run(a));
}
