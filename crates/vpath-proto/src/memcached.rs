//! memcached: the text protocol (classic and meta commands) and the binary protocol.

use crate::keys;
use crate::util::{be16, be32, is_texty, is_token, line, text, Builder};
use crate::{Label, Protocol, MAX_VALUE};

/// How a text command's arguments are shaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// get, gets: one or more keys.
    Keys,
    /// gat, gats: an expiry, then keys.
    ExpKeys,
    /// set, add, ...: key flags exptime bytes [noreply]; cas has one more number.
    Store { cas: bool },
    /// delete key [time] [noreply]; incr/decr key value [noreply]; touch key exptime [noreply].
    KeyNum { min: usize },
    /// Meta commands: key, then flags (ms: key datalen flags).
    Meta { datalen: bool },
    /// No key: version, stats ..., flush_all ..., quit, verbosity ...
    NoKey,
}

fn shape(cmd: &[u8]) -> Option<Shape> {
    Some(match cmd {
        b"get" | b"gets" => Shape::Keys,
        b"gat" | b"gats" => Shape::ExpKeys,
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => Shape::Store { cas: false },
        b"cas" => Shape::Store { cas: true },
        b"delete" => Shape::KeyNum { min: 0 },
        b"incr" | b"decr" | b"touch" => Shape::KeyNum { min: 1 },
        b"mg" | b"md" | b"ma" | b"me" => Shape::Meta { datalen: false },
        b"ms" => Shape::Meta { datalen: true },
        b"mn" | b"version" | b"stats" | b"flush_all" | b"quit" | b"verbosity" | b"shutdown"
        | b"cache_memlimit" | b"lru_crawler" | b"slabs" | b"watch" | b"lru" | b"misbehave" => {
            Shape::NoKey
        }
        _ => return None,
    })
}

fn is_key(k: &[u8]) -> bool {
    !k.is_empty() && k.len() <= 250 && is_token(k)
}

/// A number argument: digits (a leading `-` for expiry times). A cut one may be a prefix.
fn is_num(t: &[u8], cut: bool) -> bool {
    let d = t.strip_prefix(b"-").unwrap_or(t);
    (!d.is_empty() || cut) && d.len() <= 20 && d.iter().all(u8::is_ascii_digit)
}

pub(crate) fn text_request(b: &[u8]) -> Option<Label> {
    // First the command word, cheaply: it must be a known one.
    let w = b
        .iter()
        .take(16)
        .position(|&c| !c.is_ascii_lowercase() && c != b'_')?;
    shape(&b[..w])?;
    let (l, complete) = line(b);
    if !is_texty(l) || l.contains(&b'\t') {
        return None;
    }
    let mut toks = l.split(|&c| c == b' ').filter(|t| !t.is_empty());
    let cmd = toks.next()?;
    // The command word must be whole: followed by a space or the end of the line.
    if !complete && cmd.len() == l.len() {
        return None;
    }
    let shape = shape(cmd)?;
    // The last token may be cut when the line is.
    let last_cut = !complete && !l.ends_with(b" ");
    let mut args: [&[u8]; 24] = [&[]; 24];
    let mut n = 0;
    let mut keys_joined = String::new();
    for t in toks {
        if n == args.len() {
            // Only a multi-get has this many tokens: the rest are keys.
            if !matches!(shape, Shape::Keys | Shape::ExpKeys) || !is_key(t) {
                return None;
            }
            if keys_joined.len() < MAX_VALUE {
                keys_joined.push(' ');
                keys_joined.push_str(&text(t));
            }
            continue;
        }
        args[n] = t;
        n += 1;
    }
    let args = &args[..n];
    let cut = |i: usize| last_cut && i + 1 == n;
    let num = |i: usize| args.get(i).is_none_or(|t| is_num(t, cut(i)));
    let noreply_ok = |i: usize| {
        args.get(i)
            .is_none_or(|t| *t == b"noreply" || cut(i) && b"noreply".starts_with(t))
    };
    let mut key: Option<&[u8]> = args.first().copied();
    let ok = match shape {
        Shape::Keys => args.iter().all(|k| is_key(k)) && (n >= 1 || !complete),
        Shape::ExpKeys => {
            key = args.get(1).copied();
            num(0) && args.iter().skip(1).all(|k| is_key(k)) && (n >= 2 || !complete)
        }
        Shape::Store { cas } => {
            let nums = if cas { 4 } else { 3 };
            let need = 1 + nums;
            args.first().is_none_or(|k| is_key(k))
                && (1..=nums).all(num)
                && noreply_ok(need)
                && n <= need + 1
                && (n >= need || !complete)
        }
        Shape::KeyNum { min } => {
            args.first().is_none_or(|k| is_key(k))
                && (1..=min).all(num)
                && (min + 1..n).all(|i| num(i) || noreply_ok(i))
                && n <= 3
                && (n > min || !complete)
        }
        Shape::Meta { datalen } => {
            if cmd == b"mn" {
                key = None;
                n == 0
            } else {
                args.first().is_none_or(|k| is_key(k))
                    && (!datalen || num(1))
                    && (n > usize::from(datalen) || !complete)
                    && args.iter().all(|t| is_token(t))
            }
        }
        Shape::NoKey => {
            key = None;
            n <= 8
        }
    };
    if !ok {
        return None;
    }
    let mut lb = Builder::db(Protocol::Memcached);
    let cmd_s = text(cmd);
    lb.push(keys::DB_OPERATION_NAME, cmd_s.clone());
    if let Some(k) = key {
        let mut joined = text(k);
        if matches!(shape, Shape::Keys | Shape::ExpKeys) {
            let first = usize::from(shape == Shape::ExpKeys) + 1;
            for k in args.iter().skip(first) {
                if joined.len() >= MAX_VALUE {
                    break;
                }
                joined.push(' ');
                joined.push_str(&text(k));
            }
            joined.push_str(&keys_joined);
        }
        joined.truncate(crate::util::cut_incomplete_char(
            &joined.as_bytes()[..joined.len().min(MAX_VALUE)],
        ));
        lb.push(keys::MEMCACHED_KEY, joined);
    }
    if let Shape::Store { .. } = shape {
        if n > 3 && !cut(3) {
            lb.push_text(keys::MEMCACHED_BYTES, args[3]);
        }
    }
    if complete && args.last() == Some(&&b"noreply"[..]) {
        lb.push(keys::MEMCACHED_NOREPLY, "true");
    }
    Some(lb.finish(cmd_s, !complete))
}

/// A binary-protocol opcode: its name and the extras length of a request (None: any).
fn opcode(op: u8) -> Option<(&'static str, Option<u8>, bool)> {
    // (name, request extras length, key required)
    Some(match op {
        0x00 => ("get", Some(0), true),
        0x01 => ("set", Some(8), true),
        0x02 => ("add", Some(8), true),
        0x03 => ("replace", Some(8), true),
        0x04 => ("delete", Some(0), true),
        0x05 => ("increment", Some(20), true),
        0x06 => ("decrement", Some(20), true),
        0x07 => ("quit", Some(0), false),
        0x08 => ("flush", None, false),
        0x09 => ("getq", Some(0), true),
        0x0a => ("noop", Some(0), false),
        0x0b => ("version", Some(0), false),
        0x0c => ("getk", Some(0), true),
        0x0d => ("getkq", Some(0), true),
        0x0e => ("append", Some(0), true),
        0x0f => ("prepend", Some(0), true),
        0x10 => ("stat", Some(0), false),
        0x11 => ("setq", Some(8), true),
        0x12 => ("addq", Some(8), true),
        0x13 => ("replaceq", Some(8), true),
        0x14 => ("deleteq", Some(0), true),
        0x15 => ("incrementq", Some(20), true),
        0x16 => ("decrementq", Some(20), true),
        0x17 => ("quitq", Some(0), false),
        0x18 => ("flushq", None, false),
        0x19 => ("appendq", Some(0), true),
        0x1a => ("prependq", Some(0), true),
        0x1c => ("touch", Some(4), true),
        0x1d => ("gat", Some(4), true),
        0x1e => ("gatq", Some(4), true),
        0x20 => ("sasl_list_mechs", Some(0), false),
        0x21 => ("sasl_auth", Some(0), true),
        0x22 => ("sasl_step", Some(0), true),
        0x23 => ("gatk", Some(4), true),
        0x24 => ("gatkq", Some(4), true),
        _ => return None,
    })
}

/// Opcodes whose request carries no value: the body is extras and key only.
fn no_value(op: u8) -> bool {
    matches!(
        op,
        0x00 | 0x04
            | 0x05
            | 0x06
            | 0x07
            | 0x09
            | 0x0a
            | 0x0b
            | 0x0c
            | 0x0d
            | 0x10
            | 0x14
            | 0x15
            | 0x16
            | 0x17
            | 0x1c
            | 0x1d
            | 0x1e
            | 0x20
            | 0x23
            | 0x24
    )
}

pub(crate) fn binary_request(b: &[u8]) -> Option<Label> {
    if b.len() < 12 || b[0] != 0x80 || b[5] != 0 {
        return None;
    }
    let op = b[1];
    let (name, extras, key_required) = opcode(op)?;
    let klen = usize::from(be16(b, 2)?);
    let elen = usize::from(b[4]);
    let blen = be32(b, 8)? as usize;
    if extras.is_some_and(|e| usize::from(e) != elen)
        || (extras.is_none() && elen != 0 && elen != 4)
    {
        return None;
    }
    // (stat takes an optional key)
    if key_required != (klen > 0) && op != 0x10 || klen > 250 || blen < elen + klen {
        return None;
    }
    if no_value(op) && blen != elen + klen {
        return None;
    }
    let unit = 24 + elen + klen;
    let mut l = Builder::db(Protocol::Memcached);
    l.push(keys::DB_OPERATION_NAME, name);
    if klen > 0 && b.len() > 24 + elen {
        let k = &b[24 + elen..unit.min(b.len())];
        if !is_token(k) {
            return None;
        }
        l.push_text(keys::MEMCACHED_KEY, k);
    }
    if !no_value(op) && op != 0x08 && op != 0x18 {
        l.push(keys::MEMCACHED_BYTES, (blen - elen - klen).to_string());
    }
    Some(l.finish(name, b.len() < unit))
}

fn status_name(s: u16) -> Option<&'static str> {
    Some(match s {
        0x0000 => "no_error",
        0x0001 => "key_not_found",
        0x0002 => "key_exists",
        0x0003 => "value_too_large",
        0x0004 => "invalid_arguments",
        0x0005 => "item_not_stored",
        0x0006 => "non_numeric_value",
        0x0007 => "vbucket_elsewhere",
        0x0008 => "auth_error",
        0x0009 => "auth_continue",
        0x0081 => "unknown_command",
        0x0082 => "out_of_memory",
        0x0083 => "not_supported",
        0x0084 => "internal_error",
        0x0085 => "busy",
        0x0086 => "temporary_failure",
        _ => return None,
    })
}

pub(crate) fn response(b: &[u8], known: bool) -> Option<Label> {
    if b[0] == 0x81 {
        return binary_response(b, known);
    }
    let (l, complete) = line(b);
    if !complete && !known || !is_texty(l) {
        return None;
    }
    let tok_end = l.iter().position(|&c| c == b' ').unwrap_or(l.len());
    if !complete && tok_end == l.len() {
        return None; // the word may be cut
    }
    let tok = &l[..tok_end];
    let rest = l.get(tok_end + 1..).unwrap_or(&[]);
    let args: Vec<&[u8]> = rest
        .split(|&c| c == b' ')
        .filter(|t| !t.is_empty())
        .take(8)
        .collect();
    let mut lb = Builder::db(Protocol::Memcached);
    let cut_last = !complete && !l.ends_with(b" ");
    let name: &str = match tok {
        b"VALUE" => {
            let n = args.len();
            let num_ok = |i: usize| {
                args.get(i)
                    .is_none_or(|t| is_num(t, cut_last && i + 1 == n))
            };
            if !(args.first().is_none_or(|k| is_key(k)) && num_ok(1) && num_ok(2) && num_ok(3)) {
                return None;
            }
            if complete && !(3..=4).contains(&n) {
                return None;
            }
            if let Some(k) = args.first() {
                lb.push_text(keys::MEMCACHED_KEY, k);
            }
            if n > 2 && !(cut_last && n == 3) {
                lb.push_text(keys::MEMCACHED_BYTES, args[2]);
            }
            "VALUE"
        }
        b"END" | b"STORED" | b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" | b"DELETED" | b"TOUCHED"
        | b"RESET" => {
            if !rest.is_empty() {
                return None;
            }
            std::str::from_utf8(tok).ok()?
        }
        b"OK" if known && rest.is_empty() => "OK",
        b"ERROR" | b"CLIENT_ERROR" | b"SERVER_ERROR" => {
            let t = std::str::from_utf8(tok).ok()?;
            lb.push(keys::ERROR_TYPE, t);
            if !rest.is_empty() {
                lb.push_text(keys::MEMCACHED_ERROR_MESSAGE, rest);
            }
            t
        }
        b"VERSION" => {
            if args.len() != 1 && complete {
                return None;
            }
            lb.push_text(keys::MEMCACHED_VERSION, rest);
            "VERSION"
        }
        b"STAT" => "STAT",
        b"HD" | b"EN" | b"NF" | b"NS" | b"EX" | b"MN" | b"VA" | b"ME" if known => {
            if tok == b"VA"
                && !args
                    .first()
                    .is_some_and(|t| is_num(t, cut_last && args.len() == 1))
            {
                return None;
            }
            std::str::from_utf8(tok).ok()?
        }
        t if known && rest.is_empty() && is_num(t, false) => "NUMBER",
        _ => return None,
    };
    Some(lb.finish(name, !complete))
}

fn binary_response(b: &[u8], known: bool) -> Option<Label> {
    if b.len() < 12 || (!known && b.len() < 24) || b[5] != 0 {
        return None;
    }
    let (name, _, _) = opcode(b[1])?;
    let klen = usize::from(be16(b, 2)?);
    let elen = usize::from(b[4]);
    let status = be16(b, 6)?;
    let blen = be32(b, 8)? as usize;
    let st = status_name(status)?;
    if blen < elen + klen || klen > 250 {
        return None;
    }
    let mut l = Builder::db(Protocol::Memcached);
    l.push(keys::DB_OPERATION_NAME, name);
    l.push(keys::MEMCACHED_STATUS, st);
    if matches!(status, 0x0004 | 0x0008 | 0x0081..=0x0086) {
        l.push(keys::ERROR_TYPE, st);
    }
    if status == 0 && matches!(b[1], 0x00 | 0x09 | 0x0c | 0x0d | 0x1d | 0x1e | 0x23 | 0x24) {
        l.push(keys::MEMCACHED_BYTES, (blen - elen - klen).to_string());
    }
    Some(l.finish(name, b.len() < 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_commands() {
        let l = text_request(b"get my_wiki:pcache:idhash:7-0!canonical\r\n").unwrap();
        assert_eq!(l.name, "get");
        assert_eq!(
            l.attr(keys::MEMCACHED_KEY),
            Some("my_wiki:pcache:idhash:7-0!canonical")
        );
        assert!(!l.truncated);
        let l = text_request(b"set k 0 300 5 noreply\r\nhello\r\n").unwrap();
        assert_eq!(l.attr(keys::MEMCACHED_BYTES), Some("5"));
        assert_eq!(l.attr(keys::MEMCACHED_NOREPLY), Some("true"));
        assert!(text_request(b"set k v\r\n").is_none());
        assert!(text_request(b"set up the thing\r\n").is_none());
        assert!(text_request(b"ge").is_none());
        let l = text_request(b"gets a b c\r\n").unwrap();
        assert_eq!(l.attr(keys::MEMCACHED_KEY), Some("a b c"));
        let l = text_request(b"mg foo v f t\r\n").unwrap();
        assert_eq!(l.name, "mg");
        assert_eq!(text_request(b"version\r\n").unwrap().name, "version");
        let l = text_request(b"set k 0 3").unwrap();
        assert!(l.truncated);
    }

    #[test]
    fn text_responses() {
        let l = response(b"VALUE k 0 5\r\nhello\r\nEND\r\n", false).unwrap();
        assert_eq!(l.name, "VALUE");
        assert_eq!(l.attr(keys::MEMCACHED_BYTES), Some("5"));
        assert_eq!(response(b"END\r\n", false).unwrap().name, "END");
        assert!(response(b"OK\r\n", false).is_none());
        assert_eq!(response(b"OK\r\n", true).unwrap().name, "OK");
        assert_eq!(response(b"HD\r\n", true).unwrap().name, "HD");
        assert_eq!(response(b"42\r\n", true).unwrap().name, "NUMBER");
        let l = response(b"SERVER_ERROR out of memory\r\n", false).unwrap();
        assert_eq!(l.attr(keys::ERROR_TYPE), Some("SERVER_ERROR"));
    }

    #[test]
    fn binary() {
        let mut get = vec![0x80, 0x00, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3];
        get.extend_from_slice(&[0; 12]);
        get.extend_from_slice(b"foo");
        let l = binary_request(&get).unwrap();
        assert_eq!(l.name, "get");
        assert_eq!(l.attr(keys::MEMCACHED_KEY), Some("foo"));
        assert!(binary_request(&get[..26]).unwrap().truncated);
        let mut resp = vec![0x81, 0x00, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9];
        resp.extend_from_slice(&[0; 12]);
        resp.extend_from_slice(b"Not found");
        let l = response(&resp, false).unwrap();
        assert_eq!(l.attr(keys::MEMCACHED_STATUS), Some("key_not_found"));
    }
}
