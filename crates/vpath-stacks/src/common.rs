//! What the stack checkers share: comparing, per item, the statements the application's own log ties to it with
//! those vpath's paths for it hold (multisets; a statement vpath captured only in part matches a logged one it is a
//! prefix of).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A statement from a path is the logged one, or a prefix of it at least `min` bytes long (payload capture cut it).
pub fn same_stmt(path: &str, log: &str, min: usize) -> bool {
    path == log || (path.len() >= min && path.len() < log.len() && log.starts_with(path))
}

/// The log's statements no path statement accounts for, and the path statements no log statement does.
pub fn multiset_diff<'a>(
    log: &[&'a str],
    path: &[&'a str],
    min: usize,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in log {
        *counts.entry(l).or_default() += 1;
    }
    let mut left_path = Vec::new();
    for p in path {
        match counts.get_mut(p) {
            Some(c) if *c > 0 => *c -= 1,
            _ => left_path.push(*p),
        }
    }
    let mut left_log: Vec<&str> = Vec::new();
    for l in log {
        if let Some(c) = counts.get_mut(l) {
            if *c > 0 {
                *c -= 1;
                left_log.push(l);
            }
        }
    }
    // truncated statements: longest first, so a short prefix does not take a longer one's match
    left_path.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut still_path = Vec::new();
    for p in left_path {
        if let Some(i) = left_log.iter().position(|l| same_stmt(p, l, min)) {
            left_log.swap_remove(i);
        } else {
            still_path.push(p);
        }
    }
    (left_log, still_path)
}

/// A statement shortened for a finding.
pub fn clip(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// One item's completeness.
pub struct ItemDiff<'a> {
    pub item: u32,
    /// Logged statements in no path for the item, each with whether a path that names no item holds it (each
    /// such statement accounts for one missing one).
    pub missing: Vec<(&'a str, bool)>,
    /// Statements the item's paths hold beyond the log's count.
    pub surplus: Vec<&'a str>,
}

/// For every item of either map, in order: the multiset difference between its logged statements and its paths'.
pub fn completeness<'a>(
    log_by_item: &'a BTreeMap<u32, Vec<String>>,
    path_by_item: &'a BTreeMap<u32, Vec<String>>,
    elsewhere: &'a [String],
    min_prefix: usize,
) -> Vec<ItemDiff<'a>> {
    let items: BTreeSet<u32> = log_by_item
        .keys()
        .chain(path_by_item.keys())
        .copied()
        .collect();
    let strs = |m: &'a BTreeMap<u32, Vec<String>>, n: u32| -> Vec<&'a str> {
        m.get(&n)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    };
    let mut elsewhere_left: Vec<&str> = elsewhere.iter().map(String::as_str).collect();
    items
        .into_iter()
        .map(|n| {
            let (missing, surplus) =
                multiset_diff(&strs(log_by_item, n), &strs(path_by_item, n), min_prefix);
            let missing = missing
                .into_iter()
                .map(|m| {
                    let found = elsewhere_left
                        .iter()
                        .position(|e| same_stmt(e, m, min_prefix));
                    if let Some(i) = found {
                        elsewhere_left.swap_remove(i);
                    }
                    (m, found.is_some())
                })
                .collect();
            ItemDiff {
                item: n,
                missing,
                surplus,
            }
        })
        .collect()
}

/// One finding as the checkers print it: kind, path number, item (page) number, detail.
pub trait FindingRow {
    fn row(&self) -> (&str, Option<u64>, Option<u32>, &str);
}

/// What every checker binary prints after its own table: one line per finding (`id` names the item column),
/// how many were left out, then the report as one JSON object on the last line (also written to `json_to`).
/// Writes everything to stdout at once; a closed pipe (`| head`) is not an error.
pub fn print_findings_and_json<F: FindingRow, R: serde::Serialize>(
    mut out: String,
    id: &str,
    findings: &[F],
    findings_total: usize,
    report: &R,
    json_to: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::fmt::Write as _;
    use std::io::Write as _;
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for f in findings {
        let (kind, path, item, detail) = f.row();
        let _ = writeln!(
            out,
            "  {kind:<20} path {:<8} {id} {:<5} {detail}",
            dash(path.map(|p| p.to_string())),
            dash(item.map(|p| p.to_string())),
        );
    }
    if findings_total > findings.len() {
        let _ = writeln!(
            out,
            "  ... {} more findings",
            findings_total - findings.len()
        );
    }
    let json = serde_json::to_string(report)?;
    if let Some(f) = json_to {
        std::fs::write(f, format!("{json}\n"))
            .with_context(|| format!("writing {}", f.display()))?;
    }
    let _ = writeln!(out, "{json}");
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

/// A checker binary's exit: 0, or 1 with `strict` when not every path was exact, or 2 with the error.
pub fn exit_with(name: &str, strict: bool, result: anyhow::Result<bool>) -> ! {
    match result {
        Ok(all) => std::process::exit(if strict && !all { 1 } else { 0 }),
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::exit(2)
        }
    }
}
