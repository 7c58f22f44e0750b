//! vpath-check-wagtail: judges `vpath analyze --format jsonl` output of a Wagtail load (stacks/wagtail) against
//! PostgreSQL's statement log, by request content only (see `vpath_stacks::wagtail`).
//!
//!   vpath analyze /tmp/wt.vpl --format jsonl -o /tmp/wt.jsonl
//!   vpath-check-wagtail --paths /tmp/wt.jsonl --stack-dir /tmp/vpath-stacks/wagtail [--json report.json]
//!
//! Prints a table, then the report as one JSON object on the last line. Exit code 0 (1 with --strict when not
//! every request is an exact path or anything is wrong; 2 on bad input).

use anyhow::{Context, Result};
use clap::Parser;
use std::fmt::Write as _;
use std::fs;
use std::io::BufReader;
use std::path::PathBuf;
use vpath_stacks::common::{exit_with, print_findings_and_json};
use vpath_stacks::read_paths;
use vpath_stacks::wagtail;

#[derive(Parser)]
#[command(
    name = "vpath-check-wagtail",
    about = "Check vpath's Wagtail paths against PostgreSQL's statement log"
)]
struct Args {
    /// vpath's JSONL paths (`-` for standard input).
    #[arg(long)]
    paths: PathBuf,
    /// The stack folder (stacks/wagtail/stack.sh's $VPATH_wagtail): supplies the PostgreSQL log, the item ids and
    /// the load summary unless given one by one.
    #[arg(long)]
    stack_dir: Option<PathBuf>,
    /// PostgreSQL's log (log_statement = 'all', log_line_prefix '%m [%p] %c %q%u@%d ', log_connections = on).
    #[arg(long)]
    pg_log: Option<PathBuf>,
    /// `id<TAB>slug<TAB>path<TAB>url_path` lines of the item pages.
    #[arg(long)]
    page_ids: Option<PathBuf>,
    /// The load summary JSON (`stack.sh load` writes load/last.json); its `requests` is ab's count.
    #[arg(long)]
    load_summary: Option<PathBuf>,
    /// Requests completed by the load generator (overrides the summary).
    #[arg(long)]
    requests: Option<u64>,
    /// Use the whole log instead of the part between the load markers.
    #[arg(long)]
    whole_log: bool,
    /// The HTTP server port (gunicorn), for spans without a `protocol` field.
    #[arg(long, default_value_t = 18000)]
    http_port: u16,
    /// The PostgreSQL port, for spans without a `protocol` field.
    #[arg(long, default_value_t = 15432)]
    db_port: u16,
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
    let ids = from_dir(&a.page_ids, "site/page-ids.tsv")
        .context("no item ids: --page-ids or --stack-dir")?;
    let ids = fs::read_to_string(&ids).with_context(|| format!("reading {}", ids.display()))?;
    let cfg = wagtail::Config {
        http_ports: [a.http_port].into_iter().collect(),
        db_ports: [a.db_port].into_iter().collect(),
        items: wagtail::Items::parse_tsv(&ids),
        max_findings: a.max_findings,
        ..Default::default()
    };
    let paths = if a.paths.as_os_str() == "-" {
        read_paths(std::io::stdin().lock())?
    } else {
        let f =
            fs::File::open(&a.paths).with_context(|| format!("opening {}", a.paths.display()))?;
        read_paths(BufReader::new(f)).with_context(|| format!("in {}", a.paths.display()))?
    };
    let log_file = from_dir(&a.pg_log, "pg/log/postgresql.log")
        .context("no PostgreSQL log: --pg-log or --stack-dir")?;
    let log_text =
        fs::read(&log_file).with_context(|| format!("reading {}", log_file.display()))?;
    let entries = wagtail::parse_pglog(&String::from_utf8_lossy(&log_text));
    let window = if a.whole_log {
        &entries[..]
    } else {
        wagtail::pglog_window(&entries, "vpath-load-begin", "vpath-load-end")
    };
    let mut requests = a.requests;
    if requests.is_none() {
        if let Some(f) = from_dir(&a.load_summary, "load/last.json") {
            let v: serde_json::Value = serde_json::from_slice(
                &fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
            )
            .with_context(|| format!("{}: not JSON", f.display()))?;
            requests = v.get("requests").and_then(|r| r.as_u64());
        }
    }
    let cfg = wagtail::Config {
        session_ports: wagtail::session_ports(&entries),
        ..cfg
    };
    let rep = wagtail::check(&paths, window, requests, &cfg);
    let mut out = rep.table();
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
        "  sessions: log {} ({} naming an item, {} unmatched); item statements: log {} (window {} entries), item paths {}, missing {} ({} in non-item paths), surplus {}; in non-item paths {}",
        rep.log_sessions,
        rep.log_item_sessions,
        rep.unmatched_item_sessions,
        rep.log_item_statements,
        window.len(),
        rep.path_item_statements,
        rep.missing_statements,
        rep.missing_found_elsewhere,
        rep.surplus_statements,
        rep.non_item_path_item_statements
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
    exit_with("vpath-check-wagtail", strict, run(a));
}
