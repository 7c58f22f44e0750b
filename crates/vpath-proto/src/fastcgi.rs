//! FastCGI (version 1): `BEGIN_REQUEST` + `PARAMS` records, and `STDOUT` CGI headers.

use std::borrow::Cow;

use crate::http::redact_query;
use crate::keys;
use crate::util::{be16, be32, digits, line, text, Builder};
use crate::{Label, Protocol, Redact};

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;

/// A record header: (type, request id, content length, padding length).
fn header(b: &[u8]) -> Option<(u8, u16, usize, usize)> {
    let h = b.get(..8)?;
    if h[0] != 1 || h[7] != 0 {
        return None;
    }
    Some((
        h[1],
        be16(h, 2)?,
        usize::from(be16(h, 4)?),
        usize::from(h[6]),
    ))
}

/// The params this crate reads; all others are skipped.
#[derive(Default)]
struct Params<'a> {
    method: Option<&'a [u8]>,
    script_name: Option<&'a [u8]>,
    document_uri: Option<&'a [u8]>,
    request_uri: Option<&'a [u8]>,
    query_string: Option<&'a [u8]>,
    script_filename: Option<&'a [u8]>,
}

/// A name-value pair length: 1 byte below 128, else 4 bytes with the high bit set.
fn nv_len(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let c = *b.get(at)?;
    if c < 0x80 {
        Some((usize::from(c), 1))
    } else {
        Some(((be32(b, at)? & 0x7fff_ffff) as usize, 4))
    }
}

/// Reads complete name-value pairs; a pair cut by the end of the input is left out.
fn read_params(s: &[u8]) -> Params<'_> {
    let mut p = Params::default();
    let mut i = 0;
    while i < s.len() {
        let Some((nl, a)) = nv_len(s, i) else { break };
        let Some((vl, c)) = nv_len(s, i + a) else {
            break;
        };
        let start = i + a + c;
        let Some(end) = start.checked_add(nl).and_then(|x| x.checked_add(vl)) else {
            break;
        };
        if end > s.len() {
            break;
        }
        let name = &s[start..start + nl];
        let value = &s[start + nl..end];
        let slot = match name {
            b"REQUEST_METHOD" => &mut p.method,
            b"SCRIPT_NAME" => &mut p.script_name,
            b"DOCUMENT_URI" => &mut p.document_uri,
            b"REQUEST_URI" => &mut p.request_uri,
            b"QUERY_STRING" => &mut p.query_string,
            b"SCRIPT_FILENAME" => &mut p.script_filename,
            _ => {
                i = end;
                continue;
            }
        };
        slot.get_or_insert(value);
        i = end;
    }
    p
}

pub(crate) fn request(b: &[u8], redact: Redact) -> Option<Label> {
    let (ty, id, len, pad) = header(b)?;
    if ty != BEGIN_REQUEST || len != 8 || id == 0 || pad > 7 {
        return None;
    }
    let role = be16(b, 8);
    if role.is_some_and(|r| !(1..=3).contains(&r)) {
        return None;
    }
    if b.get(10).is_some_and(|&f| f > 1) || b.iter().skip(11).take(5).any(|&c| c != 0) {
        return None;
    }
    // The PARAMS stream of the same request, possibly over several records.
    let mut at = 16 + pad;
    let mut chunks: [&[u8]; 8] = [&[]; 8];
    let mut n_chunks = 0;
    let mut done = false;
    let mut overflow: Option<Vec<u8>> = None;
    while at + 8 <= b.len() {
        let Some((t, rid, clen, cpad)) = header(&b[at..]) else {
            break;
        };
        if rid != id {
            break;
        }
        if t == STDIN || (t == PARAMS && clen == 0) {
            done = true;
            break;
        }
        if t != PARAMS {
            break;
        }
        let body = &b[(at + 8).min(b.len())..(at + 8 + clen).min(b.len())];
        if n_chunks < chunks.len() {
            chunks[n_chunks] = body;
            n_chunks += 1;
        } else {
            overflow
                .get_or_insert_with(Vec::new)
                .extend_from_slice(body);
        }
        at += 8 + clen + cpad;
    }
    let stream: Cow<'_, [u8]> = if n_chunks <= 1 && overflow.is_none() {
        Cow::Borrowed(chunks[0])
    } else {
        let mut v = Vec::new();
        for c in &chunks[..n_chunks] {
            v.extend_from_slice(c);
        }
        if let Some(o) = overflow {
            v.extend_from_slice(&o);
        }
        Cow::Owned(v)
    };
    let p = read_params(&stream);

    let mut l = Builder::new(Protocol::FastCgi);
    l.push(keys::NETWORK_PROTOCOL_NAME, "fastcgi");
    l.push(keys::FASTCGI_REQUEST_ID, id.to_string());
    if let Some(r) = role {
        l.push(
            keys::FASTCGI_ROLE,
            ["responder", "authorizer", "filter"][usize::from(r - 1)],
        );
    }
    // The name's path: SCRIPT_NAME, else DOCUMENT_URI once all params were seen.
    let path = p.script_name.or(if done { p.document_uri } else { None });
    let mut name = String::from("FCGI");
    if let Some(m) = p.method {
        let m = text(m);
        name.push(' ');
        name.push_str(&m);
        l.push(keys::HTTP_REQUEST_METHOD, m);
    }
    if let Some(path) = path {
        if p.method.is_some() || done {
            name.push(' ');
            name.push_str(&text(path));
        }
        l.push_text(keys::URL_PATH, path);
    }
    let q = |v: &[u8]| match redact {
        Redact::None => text(v),
        Redact::Literals => redact_query(v),
    };
    if let Some(qs) = p.query_string.filter(|q| !q.is_empty()) {
        l.push(keys::URL_QUERY, q(qs));
    }
    if let Some(uri) = p.request_uri {
        let shown = match uri.iter().position(|&c| c == b'?') {
            Some(n) => format!("{}?{}", text(&uri[..n]), q(&uri[n + 1..])),
            None => text(uri),
        };
        l.push(keys::FASTCGI_REQUEST_URI, shown);
    }
    if let Some(f) = p.script_filename {
        l.push_text(keys::FASTCGI_SCRIPT_FILENAME, f);
    }
    Some(l.finish(name, !done))
}

pub(crate) fn response(b: &[u8], known: bool) -> Option<Label> {
    let (ty, id, _, _) = header(b)?;
    if !matches!(ty, STDOUT | STDERR | END_REQUEST) || id == 0 {
        return None;
    }
    let mut l = Builder::new(Protocol::FastCgi);
    l.push(keys::NETWORK_PROTOCOL_NAME, "fastcgi");
    let mut at = 0;
    let mut stdout: Vec<u8> = Vec::new();
    let mut status: Option<u64> = None;
    let mut headers_done = false;
    let mut ended = false;
    let mut saw_stdout = false;
    while at + 8 <= b.len() {
        let Some((t, rid, clen, pad)) = header(&b[at..]) else {
            break;
        };
        if rid != id {
            break;
        }
        let body = &b[(at + 8).min(b.len())..(at + 8 + clen).min(b.len())];
        match t {
            STDERR => l.push(keys::FASTCGI_STDERR, "true"),
            STDOUT => {
                saw_stdout = true;
                stdout.extend_from_slice(&body[..body.len().min(8192 - stdout.len().min(8192))]);
                if let Some(s) = cgi_headers(&stdout) {
                    headers_done = true;
                    status = Some(s.unwrap_or(200));
                    break;
                }
            }
            END_REQUEST => {
                if body.len() >= 5 {
                    l.push(keys::FASTCGI_APP_STATUS, be32(body, 0)?.to_string());
                    l.push(keys::FASTCGI_PROTOCOL_STATUS, body[4].to_string());
                    ended = true;
                }
                break;
            }
            _ => break,
        }
        at += 8 + clen + pad;
    }
    if status.is_none() {
        // Headers not complete: a Status line already seen still counts.
        status = partial_status(&stdout);
    }
    let evidence = ended || saw_stdout && looks_like_headers(&stdout);
    if !known && !evidence {
        return None;
    }
    if let Some(s) = status {
        l.push(keys::HTTP_RESPONSE_STATUS_CODE, s.to_string());
        if s >= 500 {
            l.push(keys::ERROR_TYPE, s.to_string());
        }
    }
    let name = match status {
        Some(s) => format!("FCGI {s}"),
        None if ended => "FCGI END".to_string(),
        None => "FCGI".to_string(),
    };
    Some(l.finish(name, !(headers_done || ended)))
}

/// With the CGI header block complete: Some(its Status code, if any).
fn cgi_headers(s: &[u8]) -> Option<Option<u64>> {
    let mut rest = s;
    let mut status = None;
    loop {
        let (l, complete) = line(rest);
        if !complete {
            return None;
        }
        if l.is_empty() {
            return Some(status);
        }
        if status.is_none() {
            status = status_of(l);
        }
        rest = &rest[rest.iter().position(|&c| c == b'\n')? + 1..];
    }
}

fn partial_status(s: &[u8]) -> Option<u64> {
    let mut rest = s;
    loop {
        let (l, complete) = line(rest);
        if !complete || l.is_empty() {
            return None;
        }
        if let Some(st) = status_of(l) {
            return Some(st);
        }
        rest = &rest[rest.iter().position(|&c| c == b'\n')? + 1..];
    }
}

fn status_of(l: &[u8]) -> Option<u64> {
    if l.len() < 10 || !l[..7].eq_ignore_ascii_case(b"status:") {
        return None;
    }
    let v = l[7..].trim_ascii_start();
    let code = digits(v.get(..3)?)?;
    (100..=599).contains(&code).then_some(code)
}

/// The start of a CGI header block: `Name: value`.
fn looks_like_headers(s: &[u8]) -> bool {
    let (l, _) = line(s);
    match l.iter().position(|&c| c == b':') {
        Some(n) => {
            n > 0
                && l[..n]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(t: u8, id: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![1, t];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(body);
        v
    }

    fn pair(n: &str, v: &str) -> Vec<u8> {
        let mut o = vec![n.len() as u8];
        if v.len() < 128 {
            o.push(v.len() as u8);
        } else {
            o.extend_from_slice(&(v.len() as u32 | 0x8000_0000).to_be_bytes());
        }
        o.extend_from_slice(n.as_bytes());
        o.extend_from_slice(v.as_bytes());
        o
    }

    #[test]
    fn begin_and_params() {
        let mut m = record(1, 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
        let mut params = pair("SCRIPT_FILENAME", "/srv/w/index.php");
        params.extend(pair("QUERY_STRING", "title=Page_7"));
        params.extend(pair("REQUEST_METHOD", "GET"));
        params.extend(pair("SCRIPT_NAME", "/index.php"));
        params.extend(pair("LONG", &"x".repeat(300)));
        params.extend(pair("REQUEST_URI", "/index.php?title=Page_7"));
        // Split the stream over two records, inside a pair.
        m.extend(record(4, 1, &params[..40]));
        m.extend(record(4, 1, &params[40..]));
        m.extend(record(4, 1, &[]));
        let l = request(&m, Redact::Literals).unwrap();
        assert_eq!(l.name, "FCGI GET /index.php");
        assert!(!l.truncated);
        assert_eq!(l.attr(keys::URL_QUERY), Some("title=?"));
        assert_eq!(
            l.attr(keys::FASTCGI_REQUEST_URI),
            Some("/index.php?title=?")
        );
        assert_eq!(
            l.attr(keys::FASTCGI_SCRIPT_FILENAME),
            Some("/srv/w/index.php")
        );
        let l = request(&m[..64], Redact::Literals).unwrap();
        assert_eq!(l.name, "FCGI");
        assert!(l.truncated);
    }

    #[test]
    fn stdout_status() {
        let r = record(
            6,
            1,
            b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nhi",
        );
        let l = response(&r, false).unwrap();
        assert_eq!(l.attr(keys::HTTP_RESPONSE_STATUS_CODE), Some("404"));
        assert!(!l.truncated);
        let r = record(
            6,
            1,
            b"X-Powered-By: PHP\r\nContent-type: text/html\r\n\r\nhi",
        );
        assert_eq!(response(&r, false).unwrap().name, "FCGI 200");
        let l = response(&r[..20], true).unwrap();
        assert_eq!(l.name, "FCGI");
        assert!(l.truncated);
    }
}
