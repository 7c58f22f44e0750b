//! HTTP/1.x: the request line and the status line.

use crate::keys;
use crate::util::{digits, push_text, text, Builder};
use crate::{Label, Protocol, Redact};

const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];
/// Methods outside RFC 9110 that are still common (WebDAV, caches).
const OTHER_METHODS: &[&[u8]] = &[
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
    b"MKCALENDAR",
];

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn target_byte(c: u8) -> bool {
    c > 0x20 && c != 0x7f
}

/// `HTTP/d.d` or a prefix of that form at the end of the input. Returns (valid, complete).
fn version(v: &[u8]) -> (bool, bool) {
    const FORM: &[u8] = b"HTTP/1.1";
    let n = v.len().min(FORM.len());
    let ok = v.iter().take(n).enumerate().all(|(i, &c)| match i {
        5 | 7 => c.is_ascii_digit(),
        6 => c == b'.',
        _ => c == FORM[i],
    });
    (ok && v.len() <= FORM.len(), v.len() == FORM.len())
}

/// Replaces the value of each `key=value` of a query string by `?`; keys (and bare words) stay.
pub(crate) fn redact_query(q: &[u8]) -> String {
    let mut out = String::with_capacity(q.len());
    push_redacted_query(&mut out, q);
    out
}

fn push_redacted_query(out: &mut String, q: &[u8]) {
    for (n, part) in q.split(|&c| c == b'&').enumerate() {
        if out.len() >= crate::MAX_VALUE - 1 {
            break;
        }
        if n > 0 {
            out.push('&');
        }
        match part.iter().position(|&c| c == b'=') {
            Some(eq) => {
                push_text(out, &part[..eq + 1]);
                if eq + 1 < part.len() {
                    out.push('?');
                }
            }
            None => push_text(out, part),
        }
    }
}

/// Splits a request target into (path, query): an absolute URI loses its scheme and authority.
pub(crate) fn split_target(t: &[u8]) -> (&[u8], Option<&[u8]>) {
    let t = match t.iter().position(|&c| c == b'#') {
        Some(n) => &t[..n],
        None => t,
    };
    let (path, query) = match t.iter().position(|&c| c == b'?') {
        Some(n) => (&t[..n], Some(&t[n + 1..])),
        None => (t, None),
    };
    let path = if path.starts_with(b"http://") || path.starts_with(b"https://") {
        let after = path.iter().position(|&c| c == b':').map_or(0, |n| n + 3);
        match path[after..].iter().position(|&c| c == b'/') {
            Some(n) => &path[after + n..],
            None => b"/",
        }
    } else {
        path
    };
    (path, query)
}

pub(crate) fn request(b: &[u8], redact: Redact) -> Option<Label> {
    if b.starts_with(b"PRI * HTTP/2") || (b.len() >= 5 && H2_PREFACE.starts_with(b)) {
        let n = b.len().min(H2_PREFACE.len());
        if b[..n] != H2_PREFACE[..n] {
            return None;
        }
        let mut l = Builder::new(Protocol::Http);
        l.push(keys::NETWORK_PROTOCOL_NAME, "http");
        l.push(keys::NETWORK_PROTOCOL_VERSION, "2");
        return Some(l.finish("HTTP/2", b.len() < H2_PREFACE.len()));
    }
    let m = b.iter().take(17).position(|&c| c == b' ')?;
    let method = &b[..m];
    if !(3..=16).contains(&m) || !method.iter().all(|c| c.is_ascii_uppercase() || *c == b'-') {
        return None;
    }
    let known = METHODS.contains(&method);
    let common = known || OTHER_METHODS.contains(&method);
    let rest = &b[m + 1..];
    let t = rest
        .iter()
        .position(|&c| !target_byte(c))
        .unwrap_or(rest.len());
    let target = &rest[..t];
    let form_ok = match target.first() {
        Some(b'/') | Some(b'*') => true,
        Some(_) if method == b"CONNECT" => true,
        Some(_) => target.starts_with(b"http://") || target.starts_with(b"https://"),
        None => false,
    };
    if !form_ok {
        return None;
    }
    let after = &rest[t..];
    // What follows the target: " HTTP/1.1\r\n", or the end of the input.
    let (line_done, ver) = match after.first() {
        None => {
            if !common {
                return None;
            }
            (false, None)
        }
        Some(b' ') => {
            let v = &after[1..];
            let vend = v
                .iter()
                .position(|&c| c == b'\r' || c == b'\n')
                .unwrap_or(v.len());
            let (ok, complete) = version(&v[..vend]);
            if !ok || (!complete && vend < v.len()) {
                return None;
            }
            if !complete && !common {
                return None;
            }
            let tail = &v[vend..];
            let done = tail.starts_with(b"\r\n") || tail.starts_with(b"\n");
            if !done && !tail.is_empty() && tail != b"\r" {
                return None;
            }
            (done, complete.then(|| &v[5..8]))
        }
        Some(_) => return None, // a control byte inside the line: HTTP/0.9 or not HTTP
    };

    let target_done = !after.is_empty();
    let (path, query) = split_target(target);
    // The path is known whole once something follows it.
    let path_done = target_done || query.is_some() || target.contains(&b'#');

    let mut l = Builder::new(Protocol::Http);
    let method_s = text(method);
    if known {
        l.push(keys::HTTP_REQUEST_METHOD, method_s.clone());
    } else {
        l.push(keys::HTTP_REQUEST_METHOD, "_OTHER");
        l.push(keys::HTTP_REQUEST_METHOD_ORIGINAL, method_s.clone());
    }
    l.push(keys::NETWORK_PROTOCOL_NAME, "http");
    if let Some(v) = ver {
        l.push_text(keys::NETWORK_PROTOCOL_VERSION, v);
    }
    l.push_text(keys::URL_PATH, path);
    // The target as shown: up to the query, then the query (redacted).
    let mut full = String::with_capacity(target.len());
    push_text(
        &mut full,
        &target[..target.len() - query.map_or(0, |q| q.len() + 1)],
    );
    if let Some(q) = query {
        let mut shown = String::with_capacity(q.len());
        match redact {
            Redact::None => push_text(&mut shown, q),
            Redact::Literals => push_redacted_query(&mut shown, q),
        }
        full.push('?');
        full.push_str(&shown);
        full.truncate(crate::util::cut_incomplete_char(
            &full.as_bytes()[..full.len().min(crate::MAX_VALUE)],
        ));
        l.push(keys::URL_QUERY, shown);
    }
    l.push(keys::HTTP_TARGET, full);
    let mut name = method_s;
    if path_done {
        name.push(' ');
        push_text(&mut name, path);
    }
    Some(l.finish(name, !line_done))
}

pub(crate) fn response(b: &[u8]) -> Option<Label> {
    // HTTP/1.1 200 OK
    if b.len() < 12 || !b.starts_with(b"HTTP/") {
        return None;
    }
    let (ok, complete) = version(&b[..8]);
    if !ok || !complete || b[8] != b' ' {
        return None;
    }
    let code = digits(&b[9..12])?;
    if !(100..=599).contains(&code) {
        return None;
    }
    match b.get(12) {
        None | Some(b' ') | Some(b'\r') | Some(b'\n') => {}
        Some(_) => return None,
    }
    let done = b[12..].contains(&b'\n');
    let mut l = Builder::new(Protocol::Http);
    l.push(keys::HTTP_RESPONSE_STATUS_CODE, code.to_string());
    l.push(keys::NETWORK_PROTOCOL_NAME, "http");
    l.push_text(keys::NETWORK_PROTOCOL_VERSION, &b[5..8]);
    if code >= 500 {
        l.push(keys::ERROR_TYPE, code.to_string());
    }
    Some(l.finish(format!("HTTP {code}"), !done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line() {
        let l = request(
            b"GET /index.php?title=Page_7&action=view HTTP/1.1\r\nHost: x\r\n\r\n",
            Redact::Literals,
        )
        .unwrap();
        assert_eq!(l.name, "GET /index.php");
        assert!(!l.truncated);
        assert_eq!(l.attr(keys::URL_QUERY), Some("title=?&action=?"));
        assert_eq!(
            l.attr(keys::HTTP_TARGET),
            Some("/index.php?title=?&action=?")
        );
        assert_eq!(l.attr(keys::NETWORK_PROTOCOL_VERSION), Some("1.1"));
        let l = request(b"GET /index.php?title=Page_7 HTTP/1.1\r\n", Redact::None).unwrap();
        assert_eq!(l.attr(keys::HTTP_TARGET), Some("/index.php?title=Page_7"));
        assert_eq!(l.attr(keys::URL_QUERY), Some("title=Page_7"));
        let l = request(b"GET /ind", Redact::None).unwrap();
        assert_eq!(l.name, "GET");
        assert!(l.truncated);
        assert_eq!(l.attr(keys::URL_PATH), Some("/ind"));
        assert!(request(b"GET key\r\n", Redact::None).is_none());
        assert!(request(b"GET ", Redact::None).is_none());
        assert!(request(b"FOO /x", Redact::None).is_none());
        let l = request(b"FOO /x HTTP/1.0\r\n", Redact::None).unwrap();
        assert_eq!(l.attr(keys::HTTP_REQUEST_METHOD), Some("_OTHER"));
        let l = request(
            b"GET http://example.com/a/b?x=1 HTTP/1.1\r\n",
            Redact::Literals,
        )
        .unwrap();
        assert_eq!(l.name, "GET /a/b");
        assert_eq!(request(H2_PREFACE, Redact::None).unwrap().name, "HTTP/2");
    }

    #[test]
    fn status_line() {
        let l = response(b"HTTP/1.1 404 Not Found\r\n").unwrap();
        assert_eq!(l.attr(keys::HTTP_RESPONSE_STATUS_CODE), Some("404"));
        assert!(!l.truncated);
        assert!(response(b"HTTP/1.1 20").is_none());
        let l = response(b"HTTP/1.0 503").unwrap();
        assert!(l.truncated);
        assert_eq!(l.attr(keys::ERROR_TYPE), Some("503"));
    }
}
