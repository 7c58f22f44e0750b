//! Redis: RESP2/RESP3 command arrays, inline commands, and the first line of replies.

use crate::keys;
use crate::util::{digits, is_texty, is_token, line, text, upper, Builder};
use crate::{Label, Protocol, Redact, MAX_VALUE};

/// At most this many arguments are read (the query text shows no more).
const MAX_ARGS: usize = 16;

/// Commands without a key in their first argument.
fn keyless(cmd: &str) -> bool {
    matches!(
        cmd,
        "PING"
            | "ECHO"
            | "AUTH"
            | "SELECT"
            | "QUIT"
            | "INFO"
            | "CONFIG"
            | "CLIENT"
            | "HELLO"
            | "COMMAND"
            | "MULTI"
            | "EXEC"
            | "DISCARD"
            | "SCRIPT"
            | "FLUSHALL"
            | "FLUSHDB"
            | "DBSIZE"
            | "TIME"
            | "SAVE"
            | "BGSAVE"
            | "BGREWRITEAOF"
            | "LASTSAVE"
            | "SHUTDOWN"
            | "MONITOR"
            | "SLOWLOG"
            | "ROLE"
            | "REPLICAOF"
            | "SLAVEOF"
            | "SUBSCRIBE"
            | "PSUBSCRIBE"
            | "UNSUBSCRIBE"
            | "PUNSUBSCRIBE"
            | "SSUBSCRIBE"
            | "PUBLISH"
            | "SPUBLISH"
            | "RESET"
            | "WAIT"
            | "ACL"
            | "CLUSTER"
            | "DEBUG"
            | "LATENCY"
            | "MEMORY"
            | "MODULE"
            | "FUNCTION"
            | "KEYS"
            | "SCAN"
            | "RANDOMKEY"
            | "SWAPDB"
            | "READONLY"
            | "READWRITE"
            | "XREAD"
            | "XREADGROUP"
            | "FAILOVER"
            | "OBJECT"
            | "XINFO"
            | "LOLWUT"
            | "UNWATCH"
            | "REPLCONF"
            | "PSYNC"
            | "SYNC"
    )
}

/// Commands whose first argument is a subcommand, kept in the redacted query text.
fn has_subcommand(cmd: &str) -> bool {
    matches!(
        cmd,
        "CONFIG"
            | "CLIENT"
            | "COMMAND"
            | "SCRIPT"
            | "ACL"
            | "CLUSTER"
            | "MEMORY"
            | "OBJECT"
            | "FUNCTION"
            | "XINFO"
            | "SLOWLOG"
            | "LATENCY"
            | "MODULE"
            | "DEBUG"
            | "INFO"
    )
}

/// Commands that carry credentials: their arguments are never shown.
fn secret(cmd: &str) -> bool {
    matches!(cmd, "AUTH" | "HELLO" | "MIGRATE" | "ACL")
}

/// The commands of Redis (7.x), sorted: a command array or inline line must start with one
/// (or with a module command, `MODULE.NAME`), so that an array reply of short strings is not
/// taken for a command.
const COMMANDS: &[&str] = &[
    "ACL",
    "APPEND",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITOP",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "COPY",
    "DBSIZE",
    "DEBUG",
    "DECR",
    "DECRBY",
    "DEL",
    "DISCARD",
    "DUMP",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "FAILOVER",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HELLO",
    "HEXISTS",
    "HEXPIRE",
    "HEXPIREAT",
    "HEXPIRETIME",
    "HGET",
    "HGETALL",
    "HGETDEL",
    "HGETEX",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HPERSIST",
    "HPEXPIRE",
    "HPEXPIREAT",
    "HPEXPIRETIME",
    "HPTTL",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETEX",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LMPOP",
    "LOLWUT",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MEMORY",
    "MGET",
    "MIGRATE",
    "MODULE",
    "MONITOR",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "OBJECT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFDEBUG",
    "PFMERGE",
    "PFSELFTEST",
    "PING",
    "PSETEX",
    "PSUBSCRIBE",
    "PSYNC",
    "PTTL",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "RENAME",
    "RENAMENX",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "RESTORE",
    "RESTORE-ASKING",
    "ROLE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SAVE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SDIFF",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SHUTDOWN",
    "SINTER",
    "SINTERCARD",
    "SINTERSTORE",
    "SISMEMBER",
    "SLAVEOF",
    "SLOWLOG",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XGROUP",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREADGROUP",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTER",
    "ZINTERCARD",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMPOP",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
    "ZUNIONSTORE",
];

fn is_known_command(upper: &str) -> bool {
    COMMANDS.binary_search(&upper).is_ok()
        || upper.split_once('.').is_some_and(|(m, c)| {
            m.len() >= 2
                && !c.is_empty()
                && upper
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        })
}

/// One argument: its bytes, and whether it is whole (false: cut by the end of the input).
type Arg<'a> = (&'a [u8], bool);

fn is_command_name(c: &[u8]) -> bool {
    (1..=32).contains(&c.len())
        && c.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'|'))
        && c[0].is_ascii_alphabetic()
}

fn build(args: &[Arg<'_>], truncated: bool, redact: Redact) -> Option<Label> {
    let (cmd, cmd_whole) = *args.first()?;
    if !cmd_whole || !is_command_name(cmd) {
        return None;
    }
    let name = upper(cmd);
    if !is_known_command(&name) {
        return None;
    }
    let mut l = Builder::db(Protocol::Redis);
    l.push(keys::DB_OPERATION_NAME, name.clone());
    let key_at = match name.as_str() {
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => match args.get(2) {
            Some((n, true)) if digits(n).is_some_and(|n| n > 0) => Some(3),
            _ => None,
        },
        c if keyless(c) => None,
        _ => Some(1),
    };
    if let Some((k, _)) = key_at.and_then(|i| args.get(i)) {
        l.push_text(keys::REDIS_KEY, k);
    }
    if name == "SELECT" {
        if let Some((db, true)) = args.get(1) {
            l.push_text(keys::DB_NAMESPACE, db);
        }
    }
    let mut q = name.clone();
    for (i, (a, _)) in args.iter().enumerate().skip(1) {
        if q.len() >= MAX_VALUE {
            break;
        }
        q.push(' ');
        let keep = !secret(&name)
            && (redact == Redact::None || Some(i) == key_at || (i == 1 && has_subcommand(&name)));
        if keep {
            q.push_str(&text(a));
        } else {
            q.push('?');
        }
    }
    q.truncate(crate::util::cut_incomplete_char(
        &q.as_bytes()[..q.len().min(MAX_VALUE)],
    ));
    l.push(keys::DB_QUERY_TEXT, q);
    Some(l.finish(name, truncated))
}

/// The `\r\n`-ended line at `at`: (content, whole). A line must end with CR LF exactly.
fn crlf_line(b: &[u8], at: usize) -> Option<(&[u8], bool)> {
    let rest = b.get(at..)?;
    match rest.iter().position(|&c| c == b'\n') {
        Some(n) if n > 0 && rest[n - 1] == b'\r' => Some((&rest[..n - 1], true)),
        Some(_) => None,
        None => Some((rest.strip_suffix(b"\r").unwrap_or(rest), false)),
    }
}

/// Digits, whole or (when cut) a prefix of some.
fn count(b: &[u8], whole: bool, max: u64) -> Option<Option<u64>> {
    if whole {
        digits(b).filter(|&n| n <= max).map(Some)
    } else if b.len() <= 10 && b.iter().all(u8::is_ascii_digit) {
        Some(None)
    } else {
        None
    }
}

pub(crate) fn request(b: &[u8], redact: Redact) -> Option<Label> {
    let (hdr, whole) = crlf_line(b, 1)?;
    let n = count(hdr, whole, 1 << 20)??;
    if n == 0 {
        return None;
    }
    let mut at = 1 + hdr.len() + 2;
    let mut args: [Arg<'_>; MAX_ARGS] = [(&[], false); MAX_ARGS];
    let mut got = 0; // whole arguments, with their CR LF
    let mut kept = 0;
    while (got as u64) < n && at < b.len() {
        if b[at] != b'$' {
            return None;
        }
        let (len_s, len_whole) = crlf_line(b, at + 1)?;
        let len = count(len_s, len_whole, 512 << 20)?;
        let Some(len) = len else { break };
        let start = at + 1 + len_s.len() + 2;
        let len = len as usize;
        let data = &b[start.min(b.len())..(start + len).min(b.len())];
        let whole = data.len() == len;
        if kept < MAX_ARGS {
            args[kept] = (data, whole);
            kept += 1;
        }
        if !whole {
            break;
        }
        match b.get(start + len..start + len + 2) {
            Some(b"\r\n") => {}
            Some(_) => return None,
            None => {
                if b.get(start + len).is_some_and(|&c| c != b'\r') {
                    return None;
                }
                break;
            }
        }
        got += 1;
        at = start + len + 2;
    }
    build(&args[..kept], (got as u64) < n, redact)
}

pub(crate) fn inline_request(b: &[u8], redact: Redact) -> Option<Label> {
    // First the command word, cheaply: it must be a known one.
    let w = b
        .iter()
        .take(33)
        .position(|&c| !c.is_ascii_alphanumeric() && c != b'_' && c != b'.' && c != b'-')?;
    let mut word = [0u8; 32];
    word[..w].copy_from_slice(&b[..w]);
    word[..w].make_ascii_uppercase();
    if !std::str::from_utf8(&word[..w]).is_ok_and(is_known_command) {
        return None;
    }
    // Only a whole line: a cut `GET /...` or `GET h...` may still become an HTTP request line.
    let (l, complete) = line(b);
    if !complete || !is_texty(l) {
        return None;
    }
    let mut args: [Arg<'_>; MAX_ARGS] = [(&[], false); MAX_ARGS];
    let mut n = 0;
    for t in l
        .split(|&c| c == b' ')
        .filter(|t| !t.is_empty())
        .take(MAX_ARGS)
    {
        if !is_token(t) {
            return None;
        }
        args[n] = (t, true);
        n += 1;
    }
    build(&args[..n], false, redact)
}

pub(crate) fn response(b: &[u8], known: bool) -> Option<Label> {
    let t = b[0];
    let (content, whole) = crlf_line(b, 1)?;
    if !whole && !known || !is_texty(content) || content.len() > 4096 && !whole {
        return None;
    }
    let mut l = Builder::db(Protocol::Redis);
    let num = |signed: bool| {
        let d = if signed {
            content
                .strip_prefix(b"-")
                .or_else(|| content.strip_prefix(b"+"))
                .unwrap_or(content)
        } else {
            content
        };
        (!d.is_empty() || !whole) && d.len() <= 20 && d.iter().all(u8::is_ascii_digit)
    };
    let name: String = match t {
        b'+' => {
            if whole
                && (1..=16).contains(&content.len())
                && content
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                text(content)
            } else {
                "String".into()
            }
        }
        b'-' => {
            let word = content.iter().position(|&c| c == b' ');
            if let Some(w) = word.or(whole.then_some(content.len())) {
                let w = &content[..w];
                if !w.is_empty() && w.iter().all(|c| c.is_ascii_uppercase() || *c == b'_') {
                    l.push_text(keys::ERROR_TYPE, w);
                } else if !known {
                    return None;
                }
            }
            l.push_text(keys::REDIS_ERROR_MESSAGE, content);
            "Error".into()
        }
        b':' if num(true) => "Integer".into(),
        b'$' | b'*' if content == b"-1" => "Nil".into(),
        b'$' if num(false) => "Bulk".into(),
        b'*' if num(false) => {
            if whole {
                l.push_text(keys::REDIS_COUNT, content);
            }
            "Array".into()
        }
        b'_' if content.is_empty() => "Null".into(),
        b'#' if matches!(content, b"t" | b"f") || content.is_empty() && !whole => "Boolean".into(),
        b',' if !content.is_empty() || !whole => "Double".into(),
        b'(' if num(true) => "BigNumber".into(),
        b'!' if num(false) => "Error".into(),
        b'=' if num(false) => "Verbatim".into(),
        b'%' if num(false) => "Map".into(),
        b'~' if num(false) => "Set".into(),
        b'>' if num(false) => "Push".into(),
        b'|' if num(false) => "Attribute".into(),
        _ => return None,
    };
    Some(l.finish(name, !whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_commands() {
        let m = b"*3\r\n$3\r\nSET\r\n$11\r\nmy_wiki:foo\r\n$5\r\nhello\r\n";
        let l = request(m, Redact::Literals).unwrap();
        assert_eq!(l.name, "SET");
        assert_eq!(l.attr(keys::REDIS_KEY), Some("my_wiki:foo"));
        assert_eq!(l.attr(keys::DB_QUERY_TEXT), Some("SET my_wiki:foo ?"));
        assert!(!l.truncated);
        let l = request(m, Redact::None).unwrap();
        assert_eq!(l.attr(keys::DB_QUERY_TEXT), Some("SET my_wiki:foo hello"));
        let l = request(&m[..37], Redact::None).unwrap();
        assert!(l.truncated);
        assert_eq!(l.attr(keys::DB_QUERY_TEXT), Some("SET my_wiki:foo he"));
        let l = request(b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n", Redact::None).unwrap();
        assert_eq!(l.attr(keys::DB_QUERY_TEXT), Some("AUTH ?"));
        assert!(request(b"*1\r\n$3\r\nSE", Redact::None).is_none());
        assert!(request(b"*1\r\n:3\r\n", Redact::None).is_none());
    }

    #[test]
    fn inline() {
        let l = inline_request(b"PING\r\n", Redact::None).unwrap();
        assert_eq!(l.name, "PING");
        let l = inline_request(b"set k v\r\n", Redact::Literals).unwrap();
        assert_eq!(l.attr(keys::DB_QUERY_TEXT), Some("SET k ?"));
        assert!(inline_request(b"HELLOX\r\n", Redact::None).is_none());
        assert!(request(b"*2\r\n$1\r\nc\r\n$1\r\nb\r\n", Redact::None).is_none());
        assert_eq!(
            request(b"*1\r\n$8\r\nJSON.GET\r\n", Redact::None)
                .unwrap()
                .name,
            "JSON.GET"
        );
        assert!(COMMANDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn replies() {
        assert_eq!(response(b"+OK\r\n", false).unwrap().name, "OK");
        let l = response(b"-WRONGTYPE Operation against a key\r\n", false).unwrap();
        assert_eq!(l.attr(keys::ERROR_TYPE), Some("WRONGTYPE"));
        assert_eq!(response(b"$-1\r\n", false).unwrap().name, "Nil");
        assert_eq!(
            response(b"*2\r\n$1\r\na\r\n", false)
                .unwrap()
                .attr(keys::REDIS_COUNT),
            Some("2")
        );
        assert!(response(b"+OK", false).is_none());
        assert!(response(b"+OK", true).unwrap().truncated);
        assert!(response(b":x\r\n", false).is_none());
    }
}
