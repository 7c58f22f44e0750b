//! vpath-check-mediawiki: judges `vpath analyze --format jsonl` output of a MediaWiki load against MariaDB's
//! general query log, by request content only (see the crate docs).
//!
//!   vpath analyze /tmp/mw.vpl --format jsonl -o /tmp/mw.jsonl
//!   vpath-check-mediawiki --paths /tmp/mw.jsonl --stack-dir /tmp/vpath-stacks/mediawiki [--json report.json]
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
use vpath_stacks::{genlog, mediawiki, names, read_paths, Proto};

#[derive(Parser)]
#[command(
    name = "vpath-check-mediawiki",
    about = "Check vpath's MediaWiki paths against request content"
)]
struct Args {
    /// vpath's JSONL paths (`-` for standard input).
    #[arg(long)]
    paths: PathBuf,
    /// The stack folder (stacks/mediawiki/stack.sh's $VPATH_STACK_DIR): supplies the general log, the page ids
    /// and the load summary unless given one by one.
    #[arg(long)]
    stack_dir: Option<PathBuf>,
    /// MariaDB's general query log.
    #[arg(long)]
    general_log: Option<PathBuf>,
    /// `page_id<TAB>title` lines, so cache keys naming pages by id are checked too.
    #[arg(long)]
    page_ids: Option<PathBuf>,
    /// The load summary JSON (`stack.sh load` writes load/last.json); its `requests` is ab's count.
    #[arg(long)]
    load_summary: Option<PathBuf>,
    /// Requests completed by the load generator (overrides the summary).
    #[arg(long)]
    requests: Option<u64>,
    /// Use the whole general log instead of the part between the load markers.
    #[arg(long)]
    whole_log: bool,
    /// Exact paths need no memcached span.
    #[arg(long)]
    no_require_cache: bool,
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
    let mut cfg = mediawiki::Config {
        max_findings: a.max_findings,
        require_cache: !a.no_require_cache,
        ..Default::default()
    };
    for p in &a.ports {
        let (proto, port) = p.split_once('=').context("--port takes PROTO=PORT")?;
        let proto = Proto::parse(proto);
        if proto == Proto::Other {
            bail!("--port {p}: protocol must be http, fastcgi, mysql or memcached");
        }
        cfg.ports.retain(|_, v| *v != proto);
        cfg.ports.insert(
            port.parse()
                .with_context(|| format!("--port {p}: bad port"))?,
            proto,
        );
    }
    if let Some(f) = from_dir(&a.page_ids, "mw/page-ids.tsv") {
        let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        cfg.namer = names::Namer::mediawiki(names::parse_page_ids(&text));
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
    let rep = mediawiki::check(&paths, window, requests, &cfg);
    let mut out = mediawiki::Report::table(&[&rep]);
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
        "  page statements: log {} (window {} entries), page paths {}, missing {} ({} in non-page paths), surplus {}; in non-page paths {}",
        rep.log_page_queries,
        window.len(),
        rep.path_page_queries,
        rep.missing_queries,
        rep.missing_found_elsewhere,
        rep.surplus_queries,
        rep.non_page_path_page_queries
    );
    print_findings_and_json(
        out,
        "page",
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
    exit_with("vpath-check-mediawiki", strict, run(a));
}
