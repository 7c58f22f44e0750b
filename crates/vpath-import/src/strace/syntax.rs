//! The syntax of one strace line: prefix, timestamp, and the call with its
//! top-level arguments, `-yy` fd annotations and result.

use std::net::{IpAddr, SocketAddr};

use crate::error::ImportError;

/// Deepest bracket nesting accepted in arguments (strace prints far less).
const MAX_DEPTH: usize = 64;

/// The thread column of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// `1234  ` (written with `-f -o FILE`).
    Column(u32),
    /// `[pid  1234] ` (written to stderr with `-f`).
    Bracket(u32),
    /// No thread column.
    None,
}

/// What follows the timestamp.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// `+++ exited with 0 +++`, `+++ killed by SIGKILL +++`, ...
    Exit(&'a str),
    /// `--- SIGCHLD {...} ---`
    Signal,
    /// `<... NAME resumed>REST`
    Resumed { name: &'a str, rest: &'a str },
    /// `NAME(ARGS... <unfinished ...>` (text without the marker)
    Unfinished { name: &'a str, text: &'a str },
    /// `NAME(ARGS) = RET`
    Complete { name: &'a str, text: &'a str },
}

#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub who: Who,
    pub ts_ns: u64,
    /// Byte offset of `body` in the line.
    pub body_col: usize,
    pub body: &'a str,
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses the thread column and the `-ttt` timestamp.
pub(crate) fn head(no: u64, line: &str) -> Result<Head<'_>, ImportError> {
    let mut pos = 0;
    let mut who = Who::None;
    if let Some(rest) = line.strip_prefix("[pid") {
        let t = rest.trim_start();
        let close = t
            .find(']')
            .ok_or_else(|| ImportError::expected(no, 0, "`[pid N]`", line))?;
        let n = &t[..close];
        let tid = n
            .parse()
            .ok()
            .filter(|_| is_digits(n))
            .ok_or_else(|| ImportError::expected(no, line.len() - t.len(), "a pid", n))?;
        who = Who::Bracket(tid);
        pos = line.len() - t.len() + close + 1;
    } else {
        let first = line
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("");
        let after = &line[first.len()..];
        if !first.is_empty() && after.starts_with([' ', '\t']) {
            let tid = first
                .parse()
                .map_err(|_| ImportError::expected(no, 0, "a thread id", first))?;
            who = Who::Column(tid);
            pos = first.len();
        }
    }
    let rest = &line[pos..];
    let t = rest.trim_start();
    pos += rest.len() - t.len();
    let end = t.find(' ').unwrap_or(t.len());
    let ts = &t[..end];
    let ts_ns = parse_ts(ts).ok_or_else(|| {
        ImportError::expected(
            no,
            pos,
            "an epoch timestamp like 1700000000.123456 (strace -ttt)",
            t,
        )
    })?;
    pos += end;
    let rest = &line[pos..];
    let body = rest.trim_start();
    pos += rest.len() - body.len();
    if body.is_empty() {
        return Err(ImportError::expected(
            no,
            pos,
            "a system call",
            "end of line",
        ));
    }
    Ok(Head {
        who,
        ts_ns,
        body_col: pos,
        body,
    })
}

/// `SECONDS.FRACTION` (1 to 9 fraction digits) to nanoseconds.
fn parse_ts(s: &str) -> Option<u64> {
    let (sec, frac) = s.split_once('.')?;
    if !is_digits(sec) || !is_digits(frac) || frac.len() > 9 {
        return None;
    }
    let sec: u64 = sec.parse().ok()?;
    let mut ns: u64 = frac.parse().ok()?;
    for _ in frac.len()..9 {
        ns *= 10;
    }
    sec.checked_mul(1_000_000_000)?.checked_add(ns)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'?'
}

const UNFINISHED: &str = "<unfinished ...>";

/// Classifies the body. `col` is its offset in the line, for errors.
pub(crate) fn body(no: u64, col: usize, b: &str) -> Result<Body<'_>, ImportError> {
    if b.starts_with("+++") {
        return Ok(Body::Exit(b));
    }
    if b.starts_with("---") {
        return Ok(Body::Signal);
    }
    if let Some(r) = b.strip_prefix("<... ") {
        let end = r.find(' ').unwrap_or(r.len());
        let name = &r[..end];
        let rest = r[end..]
            .strip_prefix(" resumed>")
            .filter(|_| !name.is_empty() && name.bytes().all(is_name_byte));
        return match rest {
            Some(rest) => Ok(Body::Resumed { name, rest }),
            None => Err(ImportError::expected(no, col, "`<... NAME resumed>`", b)),
        };
    }
    let n = b.bytes().take_while(|&c| is_name_byte(c)).count();
    if n == 0 || !b[n..].starts_with('(') {
        return Err(ImportError::expected(
            no,
            col,
            "a system call like `name(args) = result`, `+++ ... +++` or `--- ... ---`",
            b,
        ));
    }
    let name = &b[..n];
    let t = b.trim_end();
    match t.strip_suffix(UNFINISHED) {
        Some(text) => Ok(Body::Unfinished { name, text }),
        None => Ok(Body::Complete { name, text: b }),
    }
}

/// Strips a trailing `<unfinished ...>` marker (for a resumed call that is
/// interrupted again).
pub(crate) fn strip_unfinished(text: &str) -> Option<&str> {
    text.trim_end().strip_suffix(UNFINISHED)
}

/// A `-yy` annotation of an fd: `3<TCP:[...]>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ann<'a> {
    pub fd: u32,
    /// The text between the angle brackets.
    pub text: &'a str,
}

/// A complete call, split.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    /// Top-level arguments, trimmed.
    pub args: Vec<&'a str>,
    /// fd annotations found in the arguments, in order.
    pub anns: Vec<Ann<'a>>,
    /// The text after `=`, trimmed.
    pub ret: &'a str,
}

/// Splits `name(args) = ret`. `col` is the offset of `text` in the line.
pub(crate) fn call<'a>(
    no: u64,
    col: usize,
    name: &'a str,
    text: &'a str,
) -> Result<Call<'a>, ImportError> {
    let b = text.as_bytes();
    let mut i = name.len() + 1; // past '('
    let mut stack: Vec<u8> = Vec::new();
    let mut args = Vec::new();
    let mut anns = Vec::new();
    let mut arg_start = i;
    let err = |at: usize, what: &'static str| {
        ImportError::expected(no, col + at, what, text.get(at..).unwrap_or(""))
    };
    loop {
        let Some(&c) = b.get(i) else {
            return Err(err(i, "`)` closing the arguments"));
        };
        match c {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(err(i, "`\"` closing a string")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'(' | b'[' | b'{' => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(i, "less deeply nested arguments"));
                }
                stack.push(match c {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                });
            }
            b')' if stack.is_empty() => {
                let a = text[arg_start..i].trim();
                if !a.is_empty() || !args.is_empty() {
                    args.push(a);
                }
                break;
            }
            // The guard pops the matching opener (a side effect on purpose).
            b')' | b']' | b'}' if stack.pop() != Some(c) => {
                return Err(err(i, "balanced brackets"));
            }
            b',' if stack.is_empty() => {
                args.push(text[arg_start..i].trim());
                arg_start = i + 1;
            }
            b'<' if i > 0 && b[i - 1].is_ascii_digit() => {
                let end = angle_end(b, i).ok_or_else(|| err(i, "`>` closing an fd annotation"))?;
                if let Some(fd) = fd_before(text, i) {
                    anns.push(Ann {
                        fd,
                        text: &text[i + 1..end],
                    });
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    let after = &text[i + 1..];
    let t = after.trim_start();
    let eq = i + 1 + (after.len() - t.len());
    let Some(ret) = t.strip_prefix('=') else {
        return Err(err(eq, "` = result` after the arguments"));
    };
    Ok(Call {
        args,
        anns,
        ret: ret.trim(),
    })
}

/// The index of the `>` that closes the `<` at `open`: nested angle
/// brackets count (`1</dev/null<char 1:3>>`), and so do square brackets,
/// so that the `->` of `TCP:[a->b]` does not close it.
fn angle_end(b: &[u8], open: usize) -> Option<usize> {
    let (mut angle, mut square) = (0usize, 0usize);
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'<' => angle += 1,
            b'[' => square += 1,
            b']' => square = square.saturating_sub(1),
            b'>' if square == 0 => {
                angle -= 1;
                if angle == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The decimal fd just before byte `at`.
fn fd_before(text: &str, at: usize) -> Option<u32> {
    let head = &text[..at];
    let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let start = at - digits;
    // `0x55<...` or `a1<` are not fds.
    if start > 0 {
        let p = text.as_bytes()[start - 1];
        if p.is_ascii_alphanumeric() || p == b'_' {
            return None;
        }
    }
    head[start..].parse().ok()
}

/// The parsed result of a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ret<'a> {
    /// `= ?`
    Unknown,
    /// `= N` (or `-errno` for `-1 ENAME`), with the fd annotation of a
    /// returned fd.
    Value(i64, Option<&'a str>),
}

/// Parses the text after `=`. `col` is its offset, for errors.
pub(crate) fn ret(no: u64, col: usize, r: &str) -> Result<Ret<'_>, ImportError> {
    let bad = |what| ImportError::expected(no, col, what, r);
    if r.starts_with('?') {
        return Ok(Ret::Unknown);
    }
    let b = r.as_bytes();
    let (neg, body) = match r.strip_prefix('-') {
        Some(x) => (true, x),
        None => (false, r),
    };
    let (v, used) = if let Some(hex) = body.strip_prefix("0x") {
        let n = hex.bytes().take_while(|b| b.is_ascii_hexdigit()).count();
        let v = u64::from_str_radix(&hex[..n], 16).map_err(|_| bad("a result number"))?;
        (v as i64, 2 + n)
    } else {
        let n = body.bytes().take_while(|b| b.is_ascii_digit()).count();
        let v: u64 = body[..n].parse().map_err(|_| bad("a result number"))?;
        (v as i64, n)
    };
    let used = used + neg as usize;
    let v = if neg { -v } else { v };
    let mut ann = None;
    let mut rest = &r[used..];
    if b.get(used) == Some(&b'<') {
        let end = angle_end(b, used).ok_or_else(|| bad("`>` closing the fd annotation"))?;
        ann = Some(&r[used + 1..end]);
        rest = &r[end + 1..];
    }
    if v == -1 {
        let name = rest.split_whitespace().next().unwrap_or("");
        if let Some(errno) = super::errno::by_name(name) {
            return Ok(Ret::Value(-errno, ann));
        }
        if name.starts_with('E') {
            return Err(ImportError::expected(
                no,
                col + used,
                "a known errno name",
                rest.trim_start(),
            ));
        }
    }
    Ok(Ret::Value(v, ann))
}

/// A parsed `-yy` socket annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sock {
    /// `TCP:[local->remote]`
    Tuple(SocketAddr, SocketAddr),
    /// `TCP:[local]` (listening or bound)
    Local(SocketAddr),
    /// `TCP:[inode]`
    Inode(u64),
}

/// The annotation of a TCP socket, None for anything else (files, pipes,
/// UNIX, UDP sockets, `socket:[inode]` that strace could not resolve).
/// Err for a TCP annotation whose addresses do not parse.
pub(crate) fn tcp(ann: &str) -> Result<Option<Sock>, &'static str> {
    let inner = match ann
        .strip_prefix("TCP:[")
        .or_else(|| ann.strip_prefix("TCPv6:["))
        .and_then(|s| s.strip_suffix(']'))
    {
        Some(i) => i,
        None => return Ok(None),
    };
    if is_digits(inner) {
        return inner
            .parse()
            .map(|n| Some(Sock::Inode(n)))
            .map_err(|_| "a socket inode");
    }
    let addr = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|_| "an ip:port or [ipv6]:port")
    };
    match inner.split_once("->") {
        Some((l, r)) => Ok(Some(Sock::Tuple(addr(l)?, addr(r)?))),
        None => Ok(Some(Sock::Local(addr(inner)?))),
    }
}

/// The address of an `AF_INET`/`AF_INET6` sockaddr argument, None for other
/// families (or NULL).
pub(crate) fn sockaddr(arg: &str) -> Option<SocketAddr> {
    let port = between(arg, "_port=htons(", ")")?.parse().ok()?;
    let ip: IpAddr = if arg.contains("sa_family=AF_INET6") {
        between(arg, "inet_pton(AF_INET6, \"", "\"")?.parse().ok()?
    } else if arg.contains("sa_family=AF_INET") {
        between(arg, "inet_addr(\"", "\"")?.parse().ok()?
    } else {
        return None;
    };
    Some(SocketAddr::new(ip, port))
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// The contents of a quoted C string argument `"..."` (or `"..."...`),
/// with the common escapes undone; None if the argument is not a string.
pub(crate) fn unquote(arg: &str) -> Option<String> {
    let a = arg.strip_suffix("...").unwrap_or(arg);
    let inner = a.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let h: String = it.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&h, 16).map(char::from).unwrap_or('?'));
            }
            Some(c) if c.is_digit(8) => {
                // octal: up to three digits; strace prints at most three
                let mut v = c.to_digit(8).unwrap_or(0);
                let rest = it.as_str();
                let more = rest.chars().take(2).take_while(|c| c.is_digit(8)).count();
                for d in rest.chars().take(more) {
                    v = v * 8 + d.to_digit(8).unwrap_or(0);
                }
                for _ in 0..more {
                    it.next();
                }
                out.push(char::from_u32(v).unwrap_or('?'));
            }
            Some(c) => out.push(c),
            None => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = head(1, "6381  1795674661.168570 execve(\"/x\") = 0").unwrap();
        assert_eq!(h.who, Who::Column(6381));
        assert_eq!(h.ts_ns, 1_795_674_661_168_570_000);
        assert_eq!(h.body, "execve(\"/x\") = 0");
        let h = head(1, "[pid  6634] 1795674685.987051 x() = 0").unwrap();
        assert_eq!(h.who, Who::Bracket(6634));
        let h = head(1, "1795674685.977293 x() = 0").unwrap();
        assert_eq!(h.who, Who::None);
        let h = head(1, "1 1.123456789 x() = 0").unwrap();
        assert_eq!(h.ts_ns, 1_123_456_789);
        let e = head(7, "6381  10:11:12.123 x() = 0").unwrap_err();
        assert_eq!(e.line, 7);
        assert!(
            e.to_string()
                .contains("byte 6: expected an epoch timestamp"),
            "{e}"
        );
    }

    #[test]
    fn calls_split_at_top_level_only() {
        let t = r#"read(3<TCP:[127.0.0.1:8080->127.0.0.1:54321]>, "a, \"b)", 1024) = 6"#;
        let c = call(1, 0, "read", t).unwrap();
        assert_eq!(
            c.args,
            vec![
                "3<TCP:[127.0.0.1:8080->127.0.0.1:54321]>",
                r#""a, \"b)""#,
                "1024"
            ]
        );
        assert_eq!(
            c.anns,
            vec![Ann {
                fd: 3,
                text: "TCP:[127.0.0.1:8080->127.0.0.1:54321]"
            }]
        );
        assert_eq!(c.ret, "6");
        let t = "write(1</dev/null<char 1:3>>, \"x\", 1) = 1";
        let c = call(1, 0, "write", t).unwrap();
        assert_eq!(c.anns[0].text, "/dev/null<char 1:3>");
        let t = "poll([{fd=3<TCP:[1.2.3.4:5->6.7.8.9:10]>, events=POLLOUT}], 1, 4999) = 1 ([{fd=3, revents=POLLOUT}])";
        let c = call(1, 0, "poll", t).unwrap();
        assert_eq!(c.anns.len(), 1);
        assert_eq!(c.args.len(), 3);
        assert!(call(1, 0, "read", "read(3, \"abc) = 1").is_err());
        assert!(call(1, 0, "read", "read(3, [1}) = 1").is_err());
        assert!(call(1, 0, "read", "read(3)").is_err());
        assert!(call(1, 0, "gettid", "gettid() = 5")
            .unwrap()
            .args
            .is_empty());
    }

    #[test]
    fn results() {
        assert_eq!(ret(1, 0, "?").unwrap(), Ret::Unknown);
        assert_eq!(ret(1, 0, "12").unwrap(), Ret::Value(12, None));
        assert_eq!(
            ret(1, 0, "-1 EAGAIN (Resource temporarily unavailable)").unwrap(),
            Ret::Value(-11, None)
        );
        assert_eq!(
            ret(1, 0, "0x7f00 (flags)").unwrap(),
            Ret::Value(0x7f00, None)
        );
        assert_eq!(
            ret(1, 0, "4<TCP:[1.2.3.4:5->6.7.8.9:10]>").unwrap(),
            Ret::Value(4, Some("TCP:[1.2.3.4:5->6.7.8.9:10]"))
        );
        assert!(ret(1, 0, "-1 EWHAT (x)").is_err());
        assert!(ret(1, 0, "x").is_err());
    }

    #[test]
    fn annotations_and_sockaddrs() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        assert_eq!(
            tcp("TCP:[127.0.0.1:1->[::1]:2]"),
            Ok(Some(Sock::Tuple(a, b)))
        );
        assert_eq!(tcp("TCPv6:[[::1]:2]"), Ok(Some(Sock::Local(b))));
        assert_eq!(tcp("TCP:[8131]"), Ok(Some(Sock::Inode(8131))));
        assert_eq!(tcp("UNIX-STREAM:[1->2]"), Ok(None));
        assert_eq!(tcp("/etc/passwd"), Ok(None));
        assert!(tcp("TCP:[1.2.3:4->x]").is_err());
        assert_eq!(
            sockaddr(r#"{sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("127.0.0.1")}"#),
            Some(a)
        );
        assert_eq!(
            sockaddr(
                r#"{sa_family=AF_INET6, sin6_port=htons(2), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}"#
            ),
            Some(b)
        );
        assert_eq!(sockaddr(r#"{sa_family=AF_UNIX, sun_path="/x"}"#), None);
        assert_eq!(unquote(r#""a\nb\x41\101"..."#).as_deref(), Some("a\nbAA"));
    }
}
