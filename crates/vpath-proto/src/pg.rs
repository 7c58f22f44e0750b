//! PostgreSQL frontend/backend protocol v3: a startup message (length, version, parameters), then
//! typed messages (a type byte and a big-endian length that counts itself).

use crate::keys;
use crate::sql::{self, Dialect};
use crate::util::{be16, be32, cstr, digits, is_texty, is_token, Builder};
use crate::{Label, Protocol, Redact};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// The startup-phase messages that have no type byte: startup, SSL, GSS and cancel requests.
pub(crate) fn startup(b: &[u8]) -> Option<Label> {
    let len = be32(b, 0)? as usize;
    let code = be32(b, 4)?;
    let truncated = b.len() < len;
    if b.len() > len {
        return None; // the client waits for the answer: nothing follows
    }
    let mut l = Builder::db(Protocol::Postgresql);
    let name = match code {
        SSL_REQUEST if len == 8 => "SSLRequest",
        GSSENC_REQUEST if len == 8 => "GSSENCRequest",
        CANCEL_REQUEST if len == 16 => "CancelRequest",
        0x0003_0000..=0x0003_00ff if (9..=10_000).contains(&len) => {
            // key\0value\0 ... \0
            let mut at = 8;
            while at < b.len() {
                let (key, key_done) = cstr(b, at);
                if key.is_empty() {
                    if key_done && at + 1 != len {
                        return None; // the terminator must end the message
                    }
                    break;
                }
                if !key
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                {
                    return None;
                }
                if !key_done {
                    break;
                }
                let (value, value_done) = cstr(b, at + key.len() + 1);
                if !is_texty(value) {
                    return None;
                }
                match key {
                    b"user" => l.push_text(keys::PG_USER, value),
                    b"database" => l.push_text(keys::DB_NAMESPACE, value),
                    b"application_name" => l.push_text(keys::PG_APPLICATION_NAME, value),
                    _ => {}
                }
                if !value_done {
                    break;
                }
                at += key.len() + 1 + value.len() + 1;
            }
            "Startup"
        }
        _ => return None,
    };
    l.push(keys::PG_MESSAGE, name);
    Some(l.finish(name, truncated))
}

fn is_request_type(t: u8) -> bool {
    matches!(
        t,
        b'Q' | b'P'
            | b'B'
            | b'E'
            | b'D'
            | b'C'
            | b'S'
            | b'H'
            | b'X'
            | b'c'
            | b'd'
            | b'f'
            | b'F'
            | b'p'
    )
}

/// A message header at `at`: (type, end offset). The length must be sane (and below 16 MiB
/// unless `large`).
fn msg(b: &[u8], at: usize, large: bool) -> Option<(u8, usize)> {
    let t = *b.get(at)?;
    let len = be32(b, at + 1)? as usize;
    if !(4..=1 << 30).contains(&len) || (!large && b[at + 1] != 0) {
        return None;
    }
    Some((t, at + 1 + len))
}

/// A statement or portal name: empty (the unnamed one) or a printable token.
fn is_name(b: &[u8]) -> bool {
    b.len() <= 256 && is_token(b)
}

pub(crate) fn request(b: &[u8], redact: Redact) -> Option<Label> {
    let (t, end) = msg(b, 0, false)?;
    if !is_request_type(t) {
        return None;
    }
    let truncated = b.len() < end;
    if let Some(next) = b.get(end..).filter(|n| !n.is_empty()) {
        // Messages sent together (Parse, Bind, Execute, Sync): the next must start like one.
        if !is_request_type(next[0]) || (next.len() >= 5 && msg(next, 0, false).is_none()) {
            return None;
        }
    }
    let body = &b[5.min(b.len())..end.min(b.len())];
    let blen = end - 5;
    let mut l = Builder::db(Protocol::Postgresql);
    let (name, message): (String, &str) = match t {
        b'Q' => {
            let (q, done) = cstr(body, 0);
            if done && q.len() + 1 != blen || q.is_empty() && !done {
                return None;
            }
            let kw = sql::check(q, Dialect::Postgres)?;
            sql::query_attrs(&mut l, q, kw, Dialect::Postgres, redact);
            (kw.unwrap_or("Query").into(), "Query")
        }
        b'P' => {
            let (stmt, stmt_done) = cstr(body, 0);
            if !stmt_done || !is_name(stmt) {
                return None;
            }
            let (q, q_done) = cstr(body, stmt.len() + 1);
            let kw = sql::check(q, Dialect::Postgres)?;
            if q_done && !truncated {
                // Then the parameter type count and that many OIDs.
                let at = stmt.len() + 1 + q.len() + 1;
                let n = be16(body, at)? as usize;
                if at + 2 + 4 * n != blen {
                    return None;
                }
            }
            if !stmt.is_empty() {
                l.push_text(keys::PG_STATEMENT, stmt);
            }
            sql::query_attrs(&mut l, q, kw, Dialect::Postgres, redact);
            (kw.unwrap_or("Parse").into(), "Parse")
        }
        b'B' => {
            let (portal, p_done) = cstr(body, 0);
            let (stmt, s_done) = cstr(body, portal.len() + 1);
            if !p_done || !s_done || !is_name(portal) || !is_name(stmt) {
                return None;
            }
            if !portal.is_empty() {
                l.push_text(keys::PG_PORTAL, portal);
            }
            if !stmt.is_empty() {
                l.push_text(keys::PG_STATEMENT, stmt);
            }
            ("EXECUTE".into(), "Bind")
        }
        b'E' => {
            let (portal, done) = cstr(body, 0);
            if !done || !is_name(portal) || blen != portal.len() + 1 + 4 {
                return None;
            }
            if !portal.is_empty() {
                l.push_text(keys::PG_PORTAL, portal);
            }
            ("EXECUTE".into(), "Execute")
        }
        b'D' | b'C' => {
            let kind = *body.first()?;
            let (n, done) = cstr(body, 1);
            if !matches!(kind, b'S' | b'P') || !done || !is_name(n) || blen != n.len() + 2 {
                return None;
            }
            if !n.is_empty() {
                let k = if kind == b'S' {
                    keys::PG_STATEMENT
                } else {
                    keys::PG_PORTAL
                };
                l.push_text(k, n);
            }
            let m = if t == b'D' { "Describe" } else { "Close" };
            (m.into(), m)
        }
        b'S' | b'H' | b'X' | b'c' => {
            if blen != 0 {
                return None;
            }
            let m = match t {
                b'S' => "Sync",
                b'H' => "Flush",
                b'X' => "Terminate",
                _ => "CopyDone",
            };
            (m.into(), m)
        }
        b'p' => {
            // Password, SASL initial response or SASL response: named, never read.
            let (first, _) = cstr(body, 0);
            if first.is_empty() || !is_texty(first) {
                return None;
            }
            ("Authentication".into(), "PasswordMessage")
        }
        _ => return None,
    };
    l.push(keys::PG_MESSAGE, message);
    Some(l.finish(name, truncated))
}

fn is_response_type(t: u8) -> bool {
    matches!(
        t,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'E'
            | b'N'
            | b'I'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b's'
            | b't'
            | b'A'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'V'
            | b'v'
    )
}

/// Message types that can start a reply, and whose structure is checked (CopyData, DataRow and
/// the like are too loose to recognize a reply by).
fn strong_first(t: u8) -> bool {
    matches!(
        t,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'C'
            | b'E'
            | b'N'
            | b'I'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b't'
            | b'G'
            | b'H'
            | b'W'
    )
}

fn kind_name(t: u8) -> &'static str {
    match t {
        b'R' => "Authentication",
        b'S' => "ParameterStatus",
        b'K' => "BackendKeyData",
        b'Z' => "ReadyForQuery",
        b'T' => "RowDescription",
        b'D' => "DataRow",
        b'C' => "CommandComplete",
        b'E' => "Error",
        b'N' => "Notice",
        b'I' => "EmptyQuery",
        b'1' => "ParseComplete",
        b'2' => "BindComplete",
        b'3' => "CloseComplete",
        b'n' => "NoData",
        b's' => "PortalSuspended",
        b't' => "ParameterDescription",
        b'A' => "Notification",
        b'G' => "CopyIn",
        b'H' => "CopyOut",
        b'W' => "CopyBoth",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'V' => "FunctionCallResponse",
        _ => "NegotiateProtocolVersion",
    }
}

fn auth_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "ok",
        2 => "kerberos_v5",
        3 => "cleartext_password",
        5 => "md5_password",
        7 => "gss",
        8 => "gss_continue",
        9 => "sspi",
        10 => "sasl",
        11 => "sasl_continue",
        12 => "sasl_final",
        _ => return None,
    })
}

/// `body` is a run of NUL-terminated strings that fills it exactly, ending with an empty one
/// when `terminated`.
fn cstrings_fill(body: &[u8], count: Option<usize>, terminated: bool) -> bool {
    let mut at = 0;
    let mut n = 0;
    loop {
        if count == Some(n) {
            return at == body.len();
        }
        let (s, done) = cstr(body, at);
        if !done || !is_texty(s) {
            return false;
        }
        at += s.len() + 1;
        n += 1;
        if terminated && s.is_empty() {
            return at == body.len();
        }
        if count.is_none() && !terminated && at == body.len() {
            return true;
        }
    }
}

/// The fields of an error or notice: (code byte, text) pairs, then a 0.
fn fields_valid(body: &[u8]) -> bool {
    let mut at = 0;
    loop {
        match body.get(at) {
            Some(0) => return at + 1 == body.len(),
            Some(c) if c.is_ascii_alphabetic() => {
                let (s, done) = cstr(body, at + 1);
                if !done || !is_texty(s) {
                    return false;
                }
                at += 1 + s.len() + 1;
            }
            _ => return false,
        }
    }
}

fn field(body: &[u8], code: u8) -> Option<&[u8]> {
    let mut at = 0;
    while let Some(&c) = body.get(at) {
        if c == 0 {
            break;
        }
        let (s, _) = cstr(body, at + 1);
        if c == code {
            return Some(s);
        }
        at += 1 + s.len() + 1;
    }
    None
}

/// Whether a complete message's body has its type's structure.
fn valid(t: u8, body: &[u8]) -> bool {
    let n = body.len();
    match t {
        b'R' => match be32(body, 0).and_then(|c| auth_name(c).map(|_| c)) {
            Some(0 | 2 | 3 | 7 | 9) => n == 4,
            Some(5) => n == 8,
            Some(10) => cstrings_fill(&body[4..], None, true),
            Some(_) => true,
            None => false,
        },
        b'S' => cstrings_fill(body, Some(2), false),
        b'K' => (8..=264).contains(&n),
        b'Z' => n == 1 && matches!(body[0], b'I' | b'T' | b'E'),
        b'T' => {
            let Some(count) = be16(body, 0) else {
                return false;
            };
            let mut at = 2;
            for _ in 0..count {
                let (s, done) = cstr(body, at);
                if !done || !is_texty(s) {
                    return false;
                }
                at += s.len() + 1 + 18;
            }
            at == n
        }
        b'D' => n >= 2,
        b'C' => cstrings_fill(body, Some(1), false) && n > 1,
        b'E' | b'N' => fields_valid(body),
        b'I' | b'1' | b'2' | b'3' | b'n' | b's' | b'c' => n == 0,
        b't' => be16(body, 0).is_some_and(|c| n == 2 + 4 * usize::from(c)),
        b'G' | b'H' | b'W' => n >= 3 && body[0] <= 1,
        b'A' => n >= 4 && cstrings_fill(&body[4..], Some(2), false),
        _ => true,
    }
}

/// The verb of a command tag: `INSERT 0 1` -> `INSERT`, `CREATE TABLE` -> `CREATE TABLE`.
fn tag_verb(tag: &[u8]) -> &[u8] {
    let mut t = tag;
    while let Some(sp) = t.iter().rposition(|&c| c == b' ') {
        if digits(&t[sp + 1..]).is_some() {
            t = &t[..sp];
        } else {
            break;
        }
    }
    t
}

pub(crate) fn response(b: &[u8], known: bool) -> Option<Label> {
    let mut l = Builder::db(Protocol::Postgresql);
    if known && b.len() == 1 && matches!(b[0], b'S' | b'N') {
        // The one-byte answer to an SSL or GSS request.
        l.push(
            keys::PG_SSL,
            if b[0] == b'S' { "accepted" } else { "refused" },
        );
        return Some(l.finish("SSLResponse", false));
    }
    let mut at = 0;
    let mut first: Option<u8> = None;
    let mut error = false;
    let mut verb: Option<Vec<u8>> = None;
    let (mut seen_r, mut seen_t, mut seen_c) = (false, false, false);
    let mut ready = false;
    while at < b.len() {
        let t = b[at];
        // Without the request's protocol, all the input must be messages.
        if !is_response_type(t) || at == 0 && !known && !strong_first(t) {
            if at == 0 || !known {
                return None;
            }
            break;
        }
        let Some((_, end)) = msg(b, at, known) else {
            if at == 0 && (b.len() >= 5 || !known) || !known && b.len() - at >= 5 {
                return None;
            }
            break; // a header cut by the end of the input
        };
        let complete = end <= b.len();
        let body = &b[(at + 5).min(b.len())..end.min(b.len())];
        if complete && !valid(t, body) {
            if at == 0 || !known {
                return None;
            }
            break;
        }
        if at == 0 && !known {
            // Without the request's protocol: a whole, valid message, with content or followed
            // by another whole one.
            if !complete {
                return None;
            }
            if body.is_empty() {
                let next_ok = msg(b, end, false).is_some_and(|(nt, ne)| {
                    is_response_type(nt) && ne <= b.len() && valid(nt, &b[end + 5..ne])
                });
                if !next_ok {
                    return None;
                }
            }
        }
        first.get_or_insert(t);
        if !complete {
            break;
        }
        match t {
            b'R' => {
                let code = be32(body, 0);
                if !seen_r {
                    seen_r = true;
                    if let Some(name) = code.and_then(auth_name) {
                        l.push(keys::PG_AUTH, name);
                    }
                }
                if code != Some(0) && code != Some(12) {
                    // An auth challenge: the server now waits for the client.
                    ready = true;
                    break;
                }
            }
            b'G' | b'W' => {
                // Copy in: the server now waits for the client's data.
                ready = true;
                break;
            }
            b'T' if !seen_t => {
                seen_t = true;
                if let Some(n) = be16(body, 0) {
                    l.push(keys::PG_COLUMN_COUNT, n.to_string());
                }
            }
            b'C' if !seen_c => {
                seen_c = true;
                let (tag, _) = cstr(body, 0);
                l.push_text(keys::PG_COMMAND_TAG, tag);
                if let Some(rows) = tag.strip_prefix(b"SELECT ").and_then(digits) {
                    l.push(keys::DB_RESPONSE_RETURNED_ROWS, rows.to_string());
                }
                verb = Some(tag_verb(tag).to_vec());
            }
            b'E' if !error => {
                error = true;
                if let Some(s) = field(body, b'V').or_else(|| field(body, b'S')) {
                    l.push_text(keys::PG_SEVERITY, s);
                }
                if let Some(c) = field(body, b'C') {
                    l.push_text(keys::DB_RESPONSE_STATUS_CODE, c);
                    l.push_text(keys::ERROR_TYPE, c);
                }
                if let Some(m) = field(body, b'M') {
                    l.push_text(keys::PG_ERROR_MESSAGE, m);
                }
                if matches!(field(body, b'V'), Some(b"FATAL" | b"PANIC")) {
                    // The server closes the connection: no ReadyForQuery follows.
                    ready = true;
                    break;
                }
            }
            b'Z' => {
                let st = match body[0] {
                    b'I' => "idle",
                    b'T' => "in_transaction",
                    _ => "failed",
                };
                l.push(keys::PG_TRANSACTION_STATUS, st);
                ready = true;
                break;
            }
            _ => {}
        }
        at = end;
    }
    let first = first?;
    let name = if error {
        "Error".to_string()
    } else if let Some(v) = verb {
        crate::util::text(&v)
    } else {
        kind_name(first).to_string()
    };
    Some(l.finish(name, !ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn query_and_startup() {
        let q = m(b'Q', b"SELECT * FROM t WHERE a = 'x'\0");
        let l = request(&q, Redact::Literals).unwrap();
        assert_eq!(l.name, "SELECT");
        assert_eq!(
            l.attr(keys::DB_QUERY_TEXT),
            Some("SELECT * FROM t WHERE a = ?")
        );
        assert!(!l.truncated);
        let mut s = Vec::new();
        let body = b"\x00\x03\x00\x00user\0wiki\0database\0wikidb\0\0";
        s.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        s.extend_from_slice(body);
        let l = startup(&s).unwrap();
        assert_eq!(l.attr(keys::DB_NAMESPACE), Some("wikidb"));
        assert_eq!(l.attr(keys::PG_USER), Some("wiki"));
        assert_eq!(
            startup(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]).unwrap().name,
            "SSLRequest"
        );
    }

    #[test]
    fn extended() {
        let mut v = m(b'P', b"\0SELECT $1\0\0\0");
        v.extend(m(b'B', b"\0\0\0\0\0\0\0\0"));
        v.extend(m(b'S', b""));
        let l = request(&v, Redact::Literals).unwrap();
        assert_eq!(l.name, "SELECT");
        assert_eq!(l.attr(keys::PG_MESSAGE), Some("Parse"));
    }

    #[test]
    fn responses() {
        let mut r = m(
            b'T',
            b"\0\x01a\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        );
        r.extend(m(b'D', b"\0\x01\0\0\0\x011"));
        r.extend(m(b'C', b"SELECT 1\0"));
        r.extend(m(b'Z', b"I"));
        let l = response(&r, false).unwrap();
        assert_eq!(l.name, "SELECT");
        assert_eq!(l.attr(keys::DB_RESPONSE_RETURNED_ROWS), Some("1"));
        assert_eq!(l.attr(keys::PG_COLUMN_COUNT), Some("1"));
        assert!(!l.truncated);
        let e = m(
            b'E',
            b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0",
        );
        let l = response(&e, false).unwrap();
        assert_eq!(l.name, "Error");
        assert_eq!(l.attr(keys::DB_RESPONSE_STATUS_CODE), Some("42P01"));
        assert!(response(b"N", false).is_none());
        assert_eq!(response(b"N", true).unwrap().name, "SSLResponse");
    }
}
