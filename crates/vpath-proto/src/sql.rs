//! SQL text: the first keyword (the operation) and literal redaction.

use crate::keys;
use crate::util::{cut_incomplete_char, into_text, is_texty, Builder};
use crate::{Redact, MAX_VALUE};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Mysql,
    Postgres,
}

/// Whether `b` can start SQL text: after blanks, a letter, a comment or a parenthesis.
pub(crate) fn plausible_start(b: &[u8]) -> bool {
    let s = skip_blank(b);
    match b.get(s) {
        None => true,
        Some(c) => c.is_ascii_alphabetic() || matches!(c, b'(' | b'/' | b'-' | b'#' | b'{'),
    }
}

fn skip_blank(b: &[u8]) -> usize {
    b.iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len())
}

/// The first keyword of the statement, upper case: leading blanks, comments (`/* */`, `--`, and
/// `#` for MySQL) and opening parentheses are skipped. None when the text ends before the
/// keyword does (it may be cut), or when it does not start with a keyword.
pub(crate) fn keyword(b: &[u8], dialect: Dialect) -> Option<&'static str> {
    let mut i = 0;
    loop {
        i += skip_blank(&b[i..]);
        let rest = &b[i..];
        if rest.starts_with(b"/*") {
            let end = rest[2..].windows(2).position(|w| w == b"*/")?;
            i += 2 + end + 2;
        } else if rest.starts_with(b"--") || (dialect == Dialect::Mysql && rest.starts_with(b"#")) {
            let end = rest.iter().position(|&c| c == b'\n')?;
            i += end + 1;
        } else if rest.starts_with(b"(") {
            i += 1;
        } else {
            break;
        }
    }
    let rest = &b[i..];
    let n = rest
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    if n == rest.len() || !(2..=24).contains(&n) {
        return None; // cut inside the keyword, or not a keyword
    }
    let after = rest[n];
    if after.is_ascii_digit() || after == b'_' || after == b'$' || after >= 0x80 {
        return None; // an identifier, not a keyword
    }
    let mut buf = [0u8; 24];
    buf[..n].copy_from_slice(&rest[..n]);
    buf[..n].make_ascii_uppercase();
    let kw = &buf[..n];
    let kw = std::str::from_utf8(kw).ok()?;
    STATEMENTS.binary_search(&kw).ok().map(|i| STATEMENTS[i])
}

/// The words that start an SQL statement (MySQL, MariaDB and PostgreSQL), sorted. Any other first word
/// names no operation: the span is then named after the message ("Query").
#[rustfmt::skip]
const STATEMENTS: &[&str] = &[
    "ABORT", "ALTER", "ANALYZE", "BEGIN", "BINLOG", "CACHE", "CALL", "CHECK", "CHECKPOINT",
    "CHECKSUM", "CLOSE", "CLUSTER", "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE",
    "DELETE", "DESC", "DESCRIBE", "DISCARD", "DO", "DROP", "END", "EXECUTE", "EXPLAIN", "FETCH",
    "FLUSH", "GET", "GRANT", "HANDLER", "HELP", "IMPORT", "INSERT", "INSTALL", "KILL", "LISTEN",
    "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY", "OPTIMIZE", "PREPARE", "PURGE", "REASSIGN",
    "REFRESH", "REINDEX", "RELEASE", "RENAME", "REPAIR", "REPLACE", "RESET", "RESIGNAL", "REVOKE",
    "ROLLBACK", "SAVEPOINT", "SECURITY", "SELECT", "SET", "SHOW", "SHUTDOWN", "SIGNAL", "START",
    "TABLE", "TRUNCATE", "UNINSTALL", "UNLISTEN", "UNLOCK", "UPDATE", "USE", "VACUUM", "VALUES",
    "WITH", "XA",
];

fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// `text` with its string and number literals replaced by `?`. Comments and identifiers
/// (also quoted ones) are kept. A literal cut by the end of the input still becomes `?`, so the
/// redaction of a prefix is a prefix of the redaction of the whole.
pub(crate) fn redact(b: &[u8], dialect: Dialect) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len().min(MAX_VALUE));
    let mut i = 0;
    while i < b.len() && out.len() < MAX_VALUE {
        let c = b[i];
        let prev_ident = i > 0 && ident_byte(b[i - 1]);
        match c {
            b'\'' => {
                // E'...' (PostgreSQL) takes backslash escapes; MySQL strings always do.
                let backslash = dialect == Dialect::Mysql
                    || (i > 0
                        && matches!(b[i - 1], b'e' | b'E')
                        && !(i > 1 && ident_byte(b[i - 2])));
                i = skip_quoted(b, i, b'\'', backslash);
                out.push(b'?');
            }
            b'"' if dialect == Dialect::Mysql => {
                i = skip_quoted(b, i, b'"', true);
                out.push(b'?');
            }
            b'"' | b'`' => {
                let end = skip_quoted(b, i, c, false);
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(b.len(), |n| i + 2 + n + 2);
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = copy_line(b, i, &mut out);
            }
            b'#' if dialect == Dialect::Mysql => {
                i = copy_line(b, i, &mut out);
            }
            b'$' if dialect == Dialect::Postgres && !prev_ident => {
                // $1 is a parameter; $tag$...$tag$ a string.
                let tag_len = b[i + 1..]
                    .iter()
                    .position(|&t| !(t.is_ascii_alphanumeric() || t == b'_'));
                match tag_len {
                    Some(n)
                        if b[i + 1 + n] == b'$'
                            && !b[i + 1..].first().is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = &b[i..i + n + 2];
                        let body = i + n + 2;
                        i = b[body..]
                            .windows(tag.len())
                            .position(|w| w == tag)
                            .map_or(b.len(), |p| body + p + tag.len());
                        out.push(b'?');
                    }
                    _ => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            b'0'..=b'9' if !prev_ident => {
                let end = number_end(b, i);
                if end < b.len() && ident_byte(b[end]) {
                    // 1abc: an identifier (MySQL allows them), not a number.
                    let id_end = b[end..]
                        .iter()
                        .position(|&t| !ident_byte(t))
                        .map_or(b.len(), |p| end + p);
                    out.extend_from_slice(&b[i..id_end]);
                    i = id_end;
                } else {
                    out.push(b'?');
                    i = end;
                }
            }
            b'.' if !prev_ident && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(b, i);
                out.push(b'?');
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.truncate(MAX_VALUE);
    out
}

/// The end of the quoted run that starts at `b[i]` (one past the closing quote, or the end of
/// input). A doubled quote is an escaped one; with `backslash`, so is `\'`.
fn skip_quoted(b: &[u8], i: usize, q: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if backslash && c == b'\\' {
            j += 2;
        } else if c == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

fn copy_line(b: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let end = b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n + 1);
    out.extend_from_slice(&b[i..end]);
    end
}

/// The end of the number that starts at `b[i]`: 0x1F, 0b101, 12, 1.5, .5, 1e-3.
fn number_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'b' | b'B')) {
        j += 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        return j;
    }
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j < b.len() && b[j] == b'.' {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    if j < b.len() && matches!(b[j], b'e' | b'E') {
        let mut k = j + 1;
        if k < b.len() && matches!(b[k], b'+' | b'-') {
            k += 1;
        }
        if k < b.len() && b[k].is_ascii_digit() {
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        } else if k >= b.len() {
            j = b.len(); // cut inside the exponent
        }
    }
    j
}

/// Adds `db.query.text` and `db.operation.name` (the keyword from [`check`]) for SQL text.
pub(crate) fn query_attrs(
    l: &mut Builder,
    text: &[u8],
    kw: Option<&'static str>,
    dialect: Dialect,
    redact: Redact,
) {
    match redact {
        Redact::None => l.push_text(keys::DB_QUERY_TEXT, text),
        Redact::Literals => l.push(keys::DB_QUERY_TEXT, into_text(self::redact(text, dialect))),
    }
    if let Some(k) = kw {
        l.push(keys::DB_OPERATION_NAME, k);
    }
}

/// Whether `b` looks like SQL text: None if not, else Some(its first keyword, if known).
/// SQL text starts like a statement, and its skeleton is UTF-8 text without control bytes. The
/// skeleton is the text before the first quote when the statement starts with a known keyword
/// (string literals may hold any bytes: MySQL clients send binary strings raw), else all of it.
pub(crate) fn check(b: &[u8], dialect: Dialect) -> Option<Option<&'static str>> {
    if !plausible_start(b) {
        return None;
    }
    let kw = keyword(b, dialect);
    let skeleton = if kw.is_some() {
        let q = b
            .iter()
            .position(|&c| c == b'\'' || c == b'"')
            .unwrap_or(b.len());
        &b[..q]
    } else {
        b
    };
    let ok = is_texty(skeleton)
        && std::str::from_utf8(&skeleton[..cut_incomplete_char(skeleton)]).is_ok();
    ok.then_some(kw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        String::from_utf8(redact(s.as_bytes(), Dialect::Mysql)).unwrap()
    }
    fn p(s: &str) -> String {
        String::from_utf8(redact(s.as_bytes(), Dialect::Postgres)).unwrap()
    }

    #[test]
    fn keywords() {
        let k = |s: &str| keyword(s.as_bytes(), Dialect::Mysql);
        assert_eq!(k("SELECT 1"), Some("SELECT"));
        assert_eq!(k("  select\n*"), Some("SELECT"));
        assert_eq!(k("/* WikiPage::loadPageData */ SELECT x"), Some("SELECT"));
        assert_eq!(k("-- hi\nINSERT INTO"), Some("INSERT"));
        assert_eq!(k("# hi\nUPDATE t"), Some("UPDATE"));
        assert_eq!(k("(SELECT 1) UNION"), Some("SELECT"));
        assert_eq!(k("SELEC"), None);
        assert_eq!(k("/* WikiPage::load"), None);
        assert_eq!(k("1"), None);
        assert_eq!(k("SELECT"), None);
        assert_eq!(k("SELEC broken"), None);
        assert!(STATEMENTS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(k("with x AS ("), Some("WITH"));
    }

    #[test]
    fn literals() {
        assert_eq!(
            r("SELECT * FROM page WHERE page_title = 'Main_Page' AND page_namespace = 0 LIMIT 1"),
            "SELECT * FROM page WHERE page_title = ? AND page_namespace = ? LIMIT ?"
        );
        assert_eq!(r("a IN (1, 2.5, -3e4, 0x1F, .5)"), "a IN (?, ?, -?, ?, ?)");
        assert_eq!(r("x = 'it''s' AND y = 'a\\'b'"), "x = ? AND y = ?");
        assert_eq!(
            r("x = \"str\" AND `col1` = t1.c2"),
            "x = ? AND `col1` = t1.c2"
        );
        assert_eq!(
            r("/* Foo::bar 127.0.0.1 */ SELECT 1a"),
            "/* Foo::bar 127.0.0.1 */ SELECT 1a"
        );
        assert_eq!(r("SELECT 'cut"), "SELECT ?");
        assert_eq!(r("-- 1\nSELECT 1 # 2"), "-- 1\nSELECT ? # 2");
        assert_eq!(
            p("SELECT \"Col\" FROM t WHERE a = $1 AND b = $$x$$ AND c = E'a\\'b'"),
            "SELECT \"Col\" FROM t WHERE a = $1 AND b = ? AND c = E?"
        );
        assert_eq!(p("SELECT $tag$ a $ b $tag$, 'x''y'"), "SELECT ?, ?");
    }

    #[test]
    fn redaction_of_prefix_is_prefix() {
        let full = "/* Foo::bar */ SELECT a1, 'x''y', 12.5e3, \"q\" FROM t WHERE b = 0x1f -- c\n";
        let whole = r(full);
        for n in 0..=full.len() {
            let part = r(&full[..n]);
            assert!(whole.starts_with(&part), "{n}: {part:?} vs {whole:?}");
        }
    }
}
