//! MySQL / MariaDB client/server protocol: packets of a 3-byte little-endian length, a sequence
//! number and a payload.

use crate::keys;
use crate::sql::{self, Dialect};
use crate::util::{cstr, is_texty, is_token, le16, le24, le32, Builder};
use crate::{Label, Protocol, Redact};

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;

/// The first packet: (payload length, sequence number, the payload bytes present).
/// The length must agree with the bytes: the packet is whole (and anything after it starts like
/// another packet), or the input ends inside it.
fn packet(b: &[u8]) -> Option<(usize, u8, &[u8])> {
    let len = le24(b, 0)? as usize;
    let seq = *b.get(3)?;
    if len == 0 || len == 0xff_ffff {
        return None;
    }
    let avail = b.len() - 4;
    if avail > len {
        // More bytes than the packet: they must begin another packet, with a sane header.
        let next = &b[4 + len..];
        if next.len() >= 4 {
            let nlen = le24(next, 0)? as usize;
            let nseq = next[3];
            if nlen == 0 || (nseq != 0 && nseq != seq.wrapping_add(1)) {
                return None;
            }
        }
    }
    Some((len, seq, &b[4..4 + len.min(avail)]))
}

fn command_name(c: u8) -> Option<&'static str> {
    Some(match c {
        0x01 => "COM_QUIT",
        0x02 => "COM_INIT_DB",
        0x03 => "COM_QUERY",
        0x09 => "COM_STATISTICS",
        0x0c => "COM_PROCESS_KILL",
        0x0d => "COM_DEBUG",
        0x0e => "COM_PING",
        0x11 => "COM_CHANGE_USER",
        0x16 => "COM_STMT_PREPARE",
        0x17 => "COM_STMT_EXECUTE",
        0x19 => "COM_STMT_CLOSE",
        0x1a => "COM_STMT_RESET",
        0x1b => "COM_SET_OPTION",
        0x1c => "COM_STMT_FETCH",
        0x1f => "COM_RESET_CONNECTION",
        _ => return None,
    })
}

pub(crate) fn request(b: &[u8], redact: Redact) -> Option<Label> {
    let (len, seq, p) = packet(b)?;
    let truncated = p.len() < len;
    match seq {
        0 => command(len, p, truncated, redact),
        1 => login(len, p, truncated),
        _ => None,
    }
}

fn command(len: usize, p: &[u8], truncated: bool, redact: Redact) -> Option<Label> {
    let cmd = *p.first()?;
    let cname = command_name(cmd)?;
    let body = &p[1..];
    // Commands with a fixed payload length.
    let fixed = match cmd {
        0x01 | 0x09 | 0x0d | 0x0e | 0x1f => Some(1),
        0x0c | 0x19 | 0x1a => Some(5),
        0x1b => Some(3),
        0x1c => Some(9),
        _ => None,
    };
    if fixed.is_some_and(|f| f != len) {
        return None;
    }
    let mut l = Builder::db(Protocol::Mysql);
    l.push(keys::MYSQL_COMMAND, cname);
    let name: String = match cmd {
        0x03 | 0x16 => {
            // MySQL 8 with query attributes prefixes the text with two length-encoded counts.
            let text_b = if body.starts_with(&[0, 1]) {
                &body[2..]
            } else {
                body
            };
            if text_b.is_empty() && truncated {
                return None;
            }
            let kw = sql::check(text_b, Dialect::Mysql)?;
            sql::query_attrs(&mut l, text_b, kw, Dialect::Mysql, redact);
            kw.unwrap_or(if cmd == 0x03 { "Query" } else { "Prepare" })
                .into()
        }
        0x02 => {
            if body.is_empty() || !is_token(body) {
                return None;
            }
            l.push_text(keys::DB_NAMESPACE, body);
            "INIT_DB".into()
        }
        0x11 => {
            // user\0, auth data (1-byte length), database\0, ...: whole packets only.
            let (user, done) = cstr(body, 0);
            let auth = body.get(user.len() + 1).map(|&n| usize::from(n));
            let db_at = auth.map(|n| user.len() + 2 + n);
            let db = db_at.filter(|&d| d <= body.len()).map(|d| cstr(body, d));
            if truncated
                || !done
                || user.is_empty()
                || !is_token(user)
                || auth.is_none_or(|n| n > 64)
            {
                return None;
            }
            let Some((db, true)) = db else { return None };
            if !is_token(db) {
                return None;
            }
            l.push_text(keys::MYSQL_USER, user);
            if !db.is_empty() {
                l.push_text(keys::DB_NAMESPACE, db);
            }
            "CHANGE_USER".into()
        }
        0x17 => {
            // stmt id (4), flags (1), iteration count (4) = 1, then parameters.
            let iter = body.get(5..body.len().min(9)).unwrap_or(&[]);
            if len < 10
                || body.get(4).is_some_and(|&f| f > 0x0f)
                || iter != &[1, 0, 0, 0][..iter.len()]
            {
                return None;
            }
            if let Some(id) = le32(body, 0) {
                l.push(keys::MYSQL_STATEMENT_ID, id.to_string());
            }
            "STMT_EXECUTE".into()
        }
        0x19 | 0x1a | 0x1c => {
            if let Some(id) = le32(body, 0) {
                l.push(keys::MYSQL_STATEMENT_ID, id.to_string());
            }
            cname[4..].into()
        }
        0x1b => {
            if body.first().is_some_and(|&o| o > 1) || body.get(1).is_some_and(|&o| o != 0) {
                return None;
            }
            "SET_OPTION".into()
        }
        _ => cname[4..].into(),
    };
    Some(l.finish(name, truncated))
}

/// The handshake response (client login, sequence 1), or the SSL request that precedes it.
fn login(len: usize, p: &[u8], truncated: bool) -> Option<Label> {
    if len < 32 || p.len() < 32 {
        return None;
    }
    let caps = le32(p, 0)?;
    // Protocol 4.1, a character set, and a zero filler (MariaDB uses its last 4 bytes).
    if caps & CLIENT_PROTOCOL_41 == 0 || p[8] == 0 || p[9..28].iter().any(|&c| c != 0) {
        return None;
    }
    if caps & 1 != 0 && p[28..32].iter().any(|&c| c != 0) {
        return None;
    }
    let mut l = Builder::db(Protocol::Mysql);
    if len == 32 {
        if caps & CLIENT_SSL == 0 {
            return None;
        }
        return Some(l.finish("SSLRequest", truncated));
    }
    let (user, user_done) = cstr(p, 32);
    if !is_texty(user) {
        return None;
    }
    l.push_text(keys::MYSQL_USER, user);
    if user_done && caps & CLIENT_CONNECT_WITH_DB != 0 {
        // Skip the auth response (never read), then the database name.
        let at = 32 + user.len() + 1;
        let db_at = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            lenenc(p, at).map(|(n, w)| at + w + n as usize)
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            p.get(at).map(|&n| at + 1 + usize::from(n))
        } else {
            Some(at + cstr(p, at).0.len() + 1)
        };
        if let Some(db_at) = db_at.filter(|&d| d < p.len()) {
            let (db, _) = cstr(p, db_at);
            if !db.is_empty() {
                l.push_text(keys::DB_NAMESPACE, db);
            }
        }
    }
    Some(l.finish("Login", truncated))
}

/// A length-encoded integer at `at`: (value, width in bytes).
fn lenenc(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let c = *b.get(at)?;
    match c {
        0..=0xfa => Some((u64::from(c), 1)),
        0xfc => Some((u64::from(le16(b, at + 1)?), 3)),
        0xfd => Some((u64::from(le24(b, at + 1)?), 4)),
        0xfe => {
            let s = b.get(at + 1..at + 9)?;
            Some((u64::from_le_bytes(s.try_into().ok()?), 9))
        }
        _ => None,
    }
}

pub(crate) fn response(b: &[u8], known: bool) -> Option<Label> {
    let (len, seq, p) = packet(b)?;
    let truncated = p.len() < len;
    let whole = !truncated;
    let first = *p.first()?;
    let mut l = Builder::db(Protocol::Mysql);
    let name: &str = match first {
        0x0a if seq == 0 => {
            // The server greeting: version string, connection id.
            let (ver, done) = cstr(p, 1);
            if ver.is_empty() && !done || !is_texty(ver) || ver.len() > 64 {
                return None;
            }
            if !known && (!done || ver.len() < 3 || !ver[0].is_ascii_digit()) {
                return None;
            }
            if windows_contains(ver, b"MariaDB") {
                l.push(keys::DB_SYSTEM_NAME, "mariadb");
            }
            l.push_text(keys::MYSQL_SERVER_VERSION, ver);
            if done {
                if let Some(id) = le32(p, 1 + ver.len() + 1) {
                    l.push(keys::MYSQL_CONNECTION_ID, id.to_string());
                }
            }
            "Handshake"
        }
        0xff => {
            // ERR: code, then (protocol 4.1) '#' and a 5-character SQL state, then the message.
            let code = le16(p, 1);
            let has_state = p.get(3) == Some(&b'#');
            if !known {
                let state_ok = p
                    .get(4..9)
                    .is_some_and(|s| s.iter().all(u8::is_ascii_alphanumeric));
                if !(has_state && state_ok && whole && seq >= 1) {
                    return None;
                }
            }
            if let Some(code) = code {
                if !(1000..=65535).contains(&code) && !known {
                    return None;
                }
                l.push(keys::DB_RESPONSE_STATUS_CODE, code.to_string());
                l.push(keys::ERROR_TYPE, code.to_string());
            }
            let msg_at = if has_state {
                if let Some(s) = p.get(4..9) {
                    l.push_text(keys::MYSQL_SQLSTATE, s);
                }
                9
            } else {
                3
            };
            if let Some(m) = p.get(msg_at..).filter(|m| !m.is_empty()) {
                l.push_text(keys::MYSQL_ERROR_MESSAGE, m);
            }
            "ERR"
        }
        0x00 => {
            // OK: affected rows, last insert id, status flags, warnings.
            // Without the request: a whole packet that ends the input exactly.
            let exact = whole && b.len() == 4 + len && (7..=64).contains(&len) && seq >= 1;
            if !known && !exact {
                return None;
            }
            if len == 12 && p.get(9).is_none_or(|&c| c == 0) && known {
                // The answer to COM_STMT_PREPARE: statement id, columns, parameters.
                if let Some(id) = le32(p, 1) {
                    l.push(keys::MYSQL_STATEMENT_ID, id.to_string());
                }
                if let Some(n) = le16(p, 5) {
                    l.push(keys::MYSQL_COLUMN_COUNT, n.to_string());
                }
            } else if let Some((n, _)) = lenenc(p, 1) {
                l.push(keys::MYSQL_AFFECTED_ROWS, n.to_string());
            }
            "OK"
        }
        0xfe if len < 9 => {
            if !known {
                return None;
            }
            "EOF"
        }
        0xfe => {
            // Auth switch request after the login: the plugin name.
            if !known {
                return None;
            }
            let (plugin, _) = cstr(p, 1);
            if !is_token(plugin) {
                return None;
            }
            l.push_text(keys::MYSQL_AUTH_PLUGIN, plugin);
            "AuthSwitch"
        }
        0x01 if known && seq >= 2 => "AuthMoreData",
        0xfb if known => "LocalInfile",
        _ => {
            // A result set: the column count, alone in its packet.
            // (MariaDB's metadata cache adds a byte: whether column definitions follow.)
            let (n, w) = lenenc(p, 0)?;
            let mariadb_flag = w + 1 == len && p.get(w).is_none_or(|&f| f <= 1);
            if !(w == len || mariadb_flag) || n == 0 || seq != 1 {
                return None;
            }
            if !known {
                // The next packet must be a column definition: catalog "def".
                let next = b.get(4 + len..)?;
                if next.get(4..8) != Some(&[3, b'd', b'e', b'f'][..]) {
                    return None;
                }
            }
            l.push(keys::MYSQL_COLUMN_COUNT, n.to_string());
            "ResultSet"
        }
    };
    Some(l.finish(name, truncated))
}

fn windows_contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn com_query() {
        let m = pkt(0, b"\x03/* WikiPage::loadPageData */ SELECT page_id FROM page WHERE page_title = 'Main_Page'");
        let l = request(&m, Redact::Literals).unwrap();
        assert_eq!(l.name, "SELECT");
        assert_eq!(
            l.attr(keys::DB_QUERY_TEXT),
            Some("/* WikiPage::loadPageData */ SELECT page_id FROM page WHERE page_title = ?")
        );
        let l = request(&m[..40], Redact::Literals).unwrap();
        assert_eq!(l.name, "Query");
        assert!(l.truncated);
        assert!(request(&pkt(0, b"\x03\x00\x01SELECT 1"), Redact::None).is_some());
    }

    #[test]
    fn fixed_and_bad() {
        assert_eq!(
            request(&pkt(0, b"\x0e"), Redact::None).unwrap().name,
            "PING"
        );
        assert!(request(&pkt(0, b"\x0e\x00"), Redact::None).is_none());
        assert!(request(&pkt(0, b"\x03\x01\x02"), Redact::None).is_none());
        assert!(request(&pkt(2, b"\x03SELECT 1"), Redact::None).is_none());
        let mut m = pkt(0, b"\x03SELECT 1");
        m.extend_from_slice(b"garbage!");
        assert!(request(&m, Redact::None).is_none());
    }

    #[test]
    fn responses() {
        let ok = pkt(1, &[0, 1, 0, 2, 0, 0, 0]);
        let l = response(&ok, false).unwrap();
        assert_eq!(l.name, "OK");
        assert_eq!(l.attr(keys::MYSQL_AFFECTED_ROWS), Some("1"));
        let mut err = pkt(1, b"\xff\x28\x04#42000You have an error");
        let l = response(&err, false).unwrap();
        assert_eq!(l.attr(keys::DB_RESPONSE_STATUS_CODE), Some("1064"));
        assert_eq!(l.attr(keys::MYSQL_SQLSTATE), Some("42000"));
        err.truncate(12);
        assert!(response(&err, false).is_none());
        assert!(response(&err, true).unwrap().truncated);
        let mut rs = pkt(1, &[2]);
        rs.extend(pkt(2, b"\x03def\x00"));
        assert_eq!(response(&rs, false).unwrap().name, "ResultSet");
    }
}
