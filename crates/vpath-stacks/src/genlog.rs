//! MariaDB's (and MySQL's) general query log, as written with `--general-log --log-output=FILE`:
//!
//! ```text
//! /usr/sbin/mariadbd, Version: 10.11.14-MariaDB-0+deb12u2-log (Debian 12). started with:
//! Tcp port: 3306  Unix socket: /tmp/vpath-stacks/mediawiki/mysql/mysqld.sock
//! Time<TAB><TAB>    Id Command<TAB>Argument
//! 261126  8:54:49<TAB>  1315 Query<TAB>COMMIT /* MediaWiki::restInPeace  */
//! <TAB><TAB>  1315 Quit<TAB>
//! ```
//!
//! A line starts an entry when it is `[time]\t[spaces]ID COMMAND\tARGUMENT` with a known command; any other line
//! continues the previous entry's argument (a query with newlines). Server start banners are skipped.

/// One entry: the connection (thread) id, the command (`Query`, `Connect`, `Quit`, ...) and its argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// 1-based line of the entry's first line.
    pub line: usize,
    pub thread: u64,
    pub command: String,
    pub text: String,
}

impl LogEntry {
    /// A statement the server executed (what a COM_QUERY or COM_STMT_EXECUTE span carries).
    pub fn is_query(&self) -> bool {
        self.command == "Query" || self.command == "Execute"
    }
}

const COMMANDS: &[&str] = &[
    "Sleep",
    "Quit",
    "Init DB",
    "Query",
    "Field List",
    "Create DB",
    "Drop DB",
    "Refresh",
    "Shutdown",
    "Statistics",
    "Processlist",
    "Connect",
    "Kill",
    "Debug",
    "Ping",
    "Time",
    "Delayed insert",
    "Change user",
    "Binlog Dump",
    "Table Dump",
    "Connect Out",
    "Register Slave",
    "Prepare",
    "Execute",
    "Long Data",
    "Close stmt",
    "Reset stmt",
    "Set option",
    "Fetch",
    "Daemon",
    "Reset connection",
    "Bulk_execute",
];

fn is_banner(line: &str) -> bool {
    (line.contains(", Version: ") && line.contains("started with:"))
        || line.starts_with("Tcp port:")
        || (line.starts_with("Time") && line.contains("Id Command"))
}

fn parse_head(line: &str) -> Option<(u64, &str, &str)> {
    // optional time, then a tab
    let rest = if let Some(stripped) = line.strip_prefix('\t') {
        stripped
    } else {
        let (time, rest) = line.split_once('\t')?;
        if time.is_empty()
            || !time
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | ':' | '.' | '-' | 'T' | 'Z'))
        {
            return None;
        }
        rest
    };
    let rest = rest.trim_start_matches(['\t', ' ']);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let thread: u64 = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(' ')?;
    let (command, arg) = match rest.split_once('\t') {
        Some((c, a)) => (c, a),
        None => (rest.trim_end(), ""),
    };
    COMMANDS
        .contains(&command)
        .then_some((thread, command, arg))
}

/// Parses a whole general log.
pub fn parse(text: &str) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if is_banner(line) {
            continue;
        }
        if let Some((thread, command, arg)) = parse_head(line) {
            out.push(LogEntry {
                line: i + 1,
                thread,
                command: command.to_string(),
                text: arg.to_string(),
            });
        } else if let Some(last) = out.last_mut() {
            last.text.push('\n');
            last.text.push_str(line);
        }
    }
    out
}

/// The entries strictly between the last query containing `begin` and the first query containing `end` after
/// it (`stack.sh load` writes `SELECT 'vpath-load-begin'` and `SELECT 'vpath-load-end'` over the unix socket).
/// Without a begin marker the window starts at the top; without an end marker it runs to the bottom.
pub fn window<'a>(entries: &'a [LogEntry], begin: &str, end: &str) -> &'a [LogEntry] {
    let start = entries
        .iter()
        .rposition(|e| e.is_query() && e.text.contains(begin))
        .map_or(0, |i| i + 1);
    let stop = entries[start..]
        .iter()
        .position(|e| e.is_query() && e.text.contains(end))
        .map_or(entries.len(), |i| start + i);
    &entries[start..stop]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str =
        "/usr/sbin/mariadbd, Version: 10.11.14-MariaDB-0+deb12u2-log (Debian 12). started with:\n\
Tcp port: 3306  Unix socket: /tmp/x/mysqld.sock\n\
Time\t\t    Id Command\tArgument\n\
261126  8:54:48\t   915 Connect\troot@localhost on  using Socket\n\
\t\t   915 Query\tSELECT 'vpath-load-begin'\n\
\t\t   915 Quit\t\n\
261126  8:54:49\t  1314 Connect\twikiuser@127.0.0.1 on wikidb using TCP/IP\n\
\t\t  1314 Query\tSELECT a\n\
FROM `page`\n\
\x20 WHERE page_title = 'Page_62'\n\
\t\t  1315 Query\tBEGIN\n\
\t\t  1314 Quit\t\n\
2026-11-26T08:54:50.123456Z\t   1316 Query\tSELECT 'vpath-load-end'\n\
\t\t  1317 Query\tSELECT after\n";

    #[test]
    fn parses_entries_continuations_and_banners() {
        let e = parse(LOG);
        let cmds: Vec<_> = e.iter().map(|e| (e.thread, e.command.as_str())).collect();
        assert_eq!(
            cmds,
            vec![
                (915, "Connect"),
                (915, "Query"),
                (915, "Quit"),
                (1314, "Connect"),
                (1314, "Query"),
                (1315, "Query"),
                (1314, "Quit"),
                (1316, "Query"),
                (1317, "Query")
            ]
        );
        assert_eq!(
            e[4].text,
            "SELECT a\nFROM `page`\n  WHERE page_title = 'Page_62'"
        );
        assert_eq!(e[4].line, 8);
        assert_eq!(e[2].text, "");
    }

    #[test]
    fn window_is_between_the_markers() {
        let e = parse(LOG);
        let w = window(&e, "vpath-load-begin", "vpath-load-end");
        assert_eq!(w.first().unwrap().thread, 915);
        assert_eq!(w.first().unwrap().command, "Quit");
        assert_eq!(w.last().unwrap().command, "Quit");
        assert_eq!(w.len(), 5);
        // no markers: everything
        assert_eq!(window(&e, "nope-begin", "nope-end").len(), e.len());
    }

    #[test]
    fn a_restart_banner_mid_log_is_not_a_continuation() {
        let text = format!("{LOG}/usr/sbin/mariadbd, Version: 10.11 (Debian 12). started with:\nTcp port: 3306  Unix socket: s\nTime\t\t    Id Command\tArgument\n\t\t     3 Query\tSELECT 2\n");
        let e = parse(&text);
        assert_eq!(e[8].text, "SELECT after");
        assert_eq!(e[9].text, "SELECT 2");
    }
}
