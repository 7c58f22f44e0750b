//! Recognizes the application protocol of one TCP message from its first bytes, and names it.
//!
//! Given the first bytes of one message (possibly cut at any byte), [`parse_request`] says which
//! protocol it is and returns a span name and OpenTelemetry-style attributes; [`parse_response`]
//! does the same for a reply, knowing the request's protocol when it was recognized. The analyzer
//! calls them for each message whose first bytes were captured, and the recorder to reduce its
//! 64-byte prefix to a [`Label`].
//!
//! The crate does no IO, has no dependencies, never panics on any input (property-tested and
//! fuzzed), allocates little beyond the label it returns (each value at most [`MAX_VALUE`]
//! bytes, whatever the input's length), and reads only the bytes that it needs: a 64-byte prefix
//! takes a few hundred nanoseconds (`cargo bench -p vpath-proto --bench parse`).
//!
//! ```
//! use vpath_proto::{keys, parse_request, parse_response, Protocol, Redact};
//!
//! let req = b"GET /index.php?title=Page_7 HTTP/1.1\r\nHost: wiki\r\n\r\n";
//! let l = parse_request(req, Redact::Literals).unwrap();
//! assert_eq!((l.protocol, l.name.as_str()), (Protocol::Http, "GET /index.php"));
//! assert_eq!(l.attr(keys::HTTP_TARGET), Some("/index.php?title=?"));
//!
//! // A MySQL COM_QUERY cut by the recorder's 64-byte prefix still names the span.
//! let sql = b"/* WikiPage::loadPageData */ SELECT page_id FROM page WHERE page_title = 'Main_Page'";
//! let mut q = ((sql.len() + 1) as u32).to_le_bytes()[..3].to_vec(); // packet length
//! q.extend_from_slice(&[0, 0x03]); // sequence 0, COM_QUERY
//! q.extend_from_slice(sql);
//! let l = parse_request(&q[..64], Redact::Literals).unwrap();
//! assert_eq!(l.name, "SELECT");
//! assert!(l.truncated);
//!
//! let l = parse_response(b"HTTP/1.1 404 Not Found\r\n", Some(Protocol::Http)).unwrap();
//! assert_eq!(l.attr(keys::HTTP_RESPONSE_STATUS_CODE), Some("404"));
//! ```
//!
//! # What is read, and why
//!
//! vpath captures payload bytes only to name spans: the path of a request is found from socket
//! events alone, never from payloads. So each parser reads the smallest unit that names the
//! message (the *unit* below) and skips the rest; [`Label::truncated`] is true when the input
//! ended inside the unit. By default ([`Redact::Literals`]) the values that carry user data are
//! replaced by `?`: SQL string and number literals, URL query values (keys stay), Redis arguments
//! other than the key. Credentials are never read, whatever the redaction: no password message,
//! no auth data of a MySQL login, no argument of Redis `AUTH`, `HELLO`, `ACL` or `MIGRATE`.
//!
//! | protocol | request: unit, and what is read | response: unit, and what is read |
//! |---|---|---|
//! | HTTP/1.x | the request line: method, target (path and query), version; no header (they hold cookies and credentials); the HTTP/2 preface is named `HTTP/2` | the status line: version, status code |
//! | FastCGI | `BEGIN_REQUEST` (request id, role) and the `PARAMS` stream up to its empty record; of the params only `REQUEST_METHOD`, `SCRIPT_NAME`, `DOCUMENT_URI`, `REQUEST_URI`, `QUERY_STRING`, `SCRIPT_FILENAME`: the others are mostly the client's headers and address | `STDOUT` up to the end of the CGI headers, for the `Status` header only (200 when absent); `STDERR` is noted, not read; `END_REQUEST`: app and protocol status |
//! | MySQL / MariaDB | the first packet: the command; the SQL text of `COM_QUERY` and `COM_STMT_PREPARE` (its first keyword names the span; a leading comment, as MediaWiki writes `/* Class::method */`, is skipped for the name and kept in the text); the database of `COM_INIT_DB`; the statement id of `COM_STMT_EXECUTE`/`CLOSE`/`RESET`/`FETCH`; of the login packet, the user and database only | the first packet: OK (affected rows; statement id after a prepare), ERR (code, SQL state, message), EOF, result set (column count), the server greeting (version, connection id), auth switch (plugin name) |
//! | PostgreSQL v3 | the first message: startup (user, database, application name), SSL/GSS/cancel requests, the SQL text of `Q` and `P` (and the statement name), portal and statement names of `B`/`E`/`D`/`C`; password and SASL messages are named only | the messages up to `ReadyForQuery` (or an auth challenge, copy-in or fatal error, after which the server waits or hangs up): auth request kind, column count, command tag (rows returned), error severity, SQLSTATE and message, transaction status |
//! | memcached | text: the command line (command, keys, flags, expiry, length, `noreply`), not the data block; meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`) the same; binary: the 24-byte header, extras and key | text: the first line (`VALUE` key and length, status word, error message, version); binary: the header (opcode, status, value length) |
//! | Redis | RESP: the whole command array (the command, its first key, the other arguments only without redaction); inline commands: the line | the first line: reply type, simple string, error prefix and message, integer, length |
//!
//! # How it recognizes, and what it may confuse
//!
//! Recognition is conservative, as a false "mysql" on random bytes is worse than nothing: each
//! parser checks magic numbers, lengths that must agree with the bytes given (or with a cut
//! prefix of them), known command codes and names, and the shape of what follows, and rejects
//! everything else. The cheap exact tests go first (dispatch on the first byte); MySQL, whose
//! first byte is a length and may be anything, comes last. The test suite measures it: no random
//! input of 300 000 (1 to 128 bytes) is taken for a request, one for a reply (Redis), and none
//! for MySQL or PostgreSQL; a MySQL or PostgreSQL header followed by 60 random bytes is rejected
//! (20 000 of each).
//!
//! Rules where bytes are ambiguous: a lower-case memcached command line (`get k`) is memcached,
//! while an upper-case command that is not an HTTP request line (`GET k`) is a Redis inline
//! command (only whole lines are read as inline commands, so that a cut HTTP request line is never
//! one). A Redis command array starts with a known command name, so that an array reply of short
//! strings is not taken for a command, but a command is still a well-formed array reply.
//! Without the request's protocol, only replies with strong evidence are recognized: a
//! PostgreSQL reply must start with a whole, valid message of a kind that can start a reply; a
//! MySQL OK packet must end the input exactly; a memcached `OK`, a bare number or a meta reply,
//! and the one-byte answer to a PostgreSQL SSL request, need the request's protocol.
//!
//! # Attributes
//!
//! Keys are OpenTelemetry semantic-convention keys where one exists ([`keys`]), else
//! `vpath.<protocol>.<field>`; [`Label::attrs`] is sorted by key without duplicates. Every
//! database label has `db.system.name` (`mariadb` when a MySQL greeting says so) and
//! `network.protocol.name`.

mod fastcgi;
mod http;
pub mod keys;
mod memcached;
mod mysql;
mod pg;
mod redis;
mod sql;
mod util;

use std::fmt;

/// The longest attribute value, in bytes: longer values are cut (at a character boundary).
pub const MAX_VALUE: usize = 4096;

/// An application protocol that this crate recognizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    FastCgi,
    Mysql,
    Postgresql,
    Memcached,
    Redis,
}

impl Protocol {
    /// Every protocol, in declaration order.
    pub const ALL: [Protocol; 6] = [
        Protocol::Http,
        Protocol::FastCgi,
        Protocol::Mysql,
        Protocol::Postgresql,
        Protocol::Memcached,
        Protocol::Redis,
    ];

    /// The protocol's name, lower case: `http`, `fastcgi`, `mysql`, `postgresql`, `memcached`,
    /// `redis` (the OpenTelemetry `db.system.name` values for the databases).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::FastCgi => "fastcgi",
            Protocol::Mysql => "mysql",
            Protocol::Postgresql => "postgresql",
            Protocol::Memcached => "memcached",
            Protocol::Redis => "redis",
        }
    }

    /// The protocol of a [`Protocol::name`] (exact, lower case).
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a message was recognized as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub protocol: Protocol,
    /// Span name, short, e.g. "GET /index.php", "FCGI GET /index.php", "SELECT", "get", "Query".
    pub name: String,
    /// OTel semantic-convention keys where they exist (http.request.method, url.path, url.query,
    /// http.response.status_code, db.system.name, db.query.text, db.operation.name, db.namespace,
    /// network.protocol.name ...), else `vpath.<protocol>.<field>`. Sorted by key, no duplicates.
    pub attrs: Vec<(&'static str, String)>,
    /// True when the input ended before the recognized unit did (the prefix was cut).
    pub truncated: bool,
}

impl Label {
    /// The value of attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| self.attrs[i].1.as_str())
    }
}

/// How much of the payload text a label may keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Redact {
    /// Text as is: the user opted in to payload capture (`--payload-bytes N`).
    None,
    /// The default: SQL string and number literals, URL query values (keys are kept) and
    /// command arguments after the key become `?`, as OTel's `db.query.text` sanitization
    /// recommends.
    #[default]
    Literals,
}

/// The first bytes of a request (client -> server) message.
pub fn parse_request(bytes: &[u8], redact: Redact) -> Option<Label> {
    let b = bytes;
    let first = *b.first()?;
    match first {
        0x01 => fastcgi::request(b, redact),
        0x00 => pg::startup(b),
        0x80 => memcached::binary_request(b),
        b'*' => redis::request(b, redact),
        b'A'..=b'Z' | b'a'..=b'z' => pg::request(b, redact)
            .or_else(|| http::request(b, redact))
            .or_else(|| memcached::text_request(b))
            .or_else(|| redis::inline_request(b, redact)),
        _ => None,
    }
    // A MySQL packet starts with its length, which may be any byte: it comes last.
    .or_else(|| mysql::request(b, redact))
}

/// The first bytes of a request, read as `protocol` only (when the connection's protocol is
/// already known, e.g. from an earlier message on it).
pub fn parse_request_as(bytes: &[u8], protocol: Protocol, redact: Redact) -> Option<Label> {
    match protocol {
        Protocol::Http => http::request(bytes, redact),
        Protocol::FastCgi => fastcgi::request(bytes, redact),
        Protocol::Mysql => mysql::request(bytes, redact),
        Protocol::Postgresql => pg::startup(bytes).or_else(|| pg::request(bytes, redact)),
        Protocol::Memcached => {
            memcached::binary_request(bytes).or_else(|| memcached::text_request(bytes))
        }
        Protocol::Redis => {
            redis::request(bytes, redact).or_else(|| redis::inline_request(bytes, redact))
        }
    }
}

/// The first bytes of a reply (server -> client), knowing the request's protocol if it was recognized.
///
/// With `request` known, the bytes are read as that protocol's reply only, and shorter or weaker
/// forms are accepted (a one-byte PostgreSQL SSL answer, a memcached `OK`, a MySQL OK packet).
/// Without it, only replies with strong evidence are recognized.
pub fn parse_response(bytes: &[u8], request: Option<Protocol>) -> Option<Label> {
    let b = bytes;
    if b.is_empty() {
        return None;
    }
    match request {
        Some(Protocol::Http) => http::response(b),
        Some(Protocol::FastCgi) => fastcgi::response(b, true),
        Some(Protocol::Mysql) => mysql::response(b, true),
        Some(Protocol::Postgresql) => pg::response(b, true),
        Some(Protocol::Memcached) => memcached::response(b, true),
        Some(Protocol::Redis) => redis::response(b, true),
        None => match b[0] {
            b'H' => http::response(b),
            0x01 => fastcgi::response(b, false),
            0x81 => memcached::response(b, false),
            b'+' | b'-' | b':' | b'$' | b'*' | b'_' | b'#' | b',' | b'(' | b'!' | b'=' | b'%'
            | b'~' | b'>' | b'|' => redis::response(b, false),
            _ => None,
        }
        .or_else(|| memcached::response(b, false))
        .or_else(|| pg::response(b, false))
        .or_else(|| mysql::response(b, false)),
    }
}
