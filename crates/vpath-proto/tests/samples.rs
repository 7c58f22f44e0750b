//! Real protocol bytes, captured from real servers and clients on loopback (tests/data/README.md):
//! the labels they get, and the labels of every prefix of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use vpath_proto::{keys, parse_request, parse_response, Label, Protocol, Redact};

const PROTOCOL_DIRS: [&str; 6] = [
    "http",
    "fastcgi",
    "mysql",
    "postgresql",
    "memcached",
    "redis",
];

struct Sample {
    /// `proto/name-cC-mMM-req.bin`, relative to tests/data.
    name: String,
    bytes: Vec<u8>,
    request: bool,
    /// The protocol this sample was captured from (its folder).
    dir_protocol: Protocol,
    /// For a response: the label of the request before it on the same connection, if any.
    request_protocol: Option<Protocol>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for dir in PROTOCOL_DIRS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir().join(dir))
            .unwrap_or_else(|e| panic!("tests/data/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        // The connection of a file: everything before "-mNN-".
        let mut last_request: BTreeMap<String, Protocol> = BTreeMap::new();
        for f in files {
            let file = f.file_name().unwrap().to_str().unwrap().to_string();
            let conn = file[..file.rfind("-m").unwrap()].to_string();
            let bytes = std::fs::read(&f).unwrap();
            let request = file.ends_with("-req.bin");
            let dir_protocol = Protocol::from_name(dir).unwrap();
            let request_protocol = if request {
                if let Some(l) = parse_request(&bytes, Redact::Literals) {
                    last_request.insert(conn.clone(), l.protocol);
                }
                None
            } else {
                last_request.get(&conn).copied()
            };
            out.push(Sample {
                name: format!("{dir}/{file}"),
                bytes,
                request,
                dir_protocol,
                request_protocol,
            });
        }
    }
    assert!(out.len() > 100, "only {} samples", out.len());
    out
}

fn label_of(s: &Sample, bytes: &[u8], redact: Redact) -> Option<Label> {
    if s.request {
        parse_request(bytes, redact)
    } else {
        parse_response(bytes, s.request_protocol)
    }
}

fn describe(out: &mut String, what: &str, l: &Option<Label>) {
    match l {
        None => writeln!(out, "{what}: not recognized").unwrap(),
        Some(l) => {
            let cut = if l.truncated { " (truncated)" } else { "" };
            writeln!(out, "{what}: {} {:?}{cut}", l.protocol, l.name).unwrap();
            for (k, v) in &l.attrs {
                writeln!(out, "    {k} = {v:?}").unwrap();
            }
        }
    }
}

/// Every sample's label, compared with tests/data/labels.txt (a reviewed golden file; after a
/// deliberate change, `VPATH_PROTO_BLESS=1 cargo test -p vpath-proto --test samples` rewrites it,
/// and the diff is reviewed before it is committed).
#[test]
fn labels_of_real_messages() {
    let mut out = String::new();
    for s in samples() {
        let l = label_of(&s, &s.bytes, Redact::Literals);
        describe(&mut out, &s.name, &l);
        if !s.request {
            let alone = parse_response(&s.bytes, None).map(|l| l.protocol);
            if alone.is_none() {
                writeln!(out, "    (not recognized without the request)").unwrap();
            }
        }
    }
    let golden = data_dir().join("labels.txt");
    if std::env::var_os("VPATH_PROTO_BLESS").is_some() {
        std::fs::write(&golden, &out).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if want != out {
        let first = want
            .lines()
            .zip(out.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(out.lines().count()));
        let ctx = |t: &str| {
            t.lines()
                .skip(first.saturating_sub(3))
                .take(8)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "labels differ from tests/data/labels.txt at line {}:\n--- want\n{}\n--- got\n{}\n\
             (VPATH_PROTO_BLESS=1 rewrites the file; review its diff)",
            first + 1,
            ctx(&want),
            ctx(&out)
        );
    }
}

/// Every request and response is recognized as the protocol it was captured from, and without
/// the request's protocol a response is never taken for another protocol.
#[test]
fn every_sample_is_recognized_as_its_protocol() {
    let mut alone = 0;
    let mut responses = 0;
    for s in samples() {
        let l = label_of(&s, &s.bytes, Redact::Literals)
            .unwrap_or_else(|| panic!("{}: not recognized", s.name));
        assert_eq!(l.protocol, s.dir_protocol, "{}", s.name);
        if !s.request {
            responses += 1;
            if let Some(a) = parse_response(&s.bytes, None) {
                assert_eq!(a.protocol, s.dir_protocol, "{} without the request", s.name);
                alone += 1;
            }
        }
    }
    println!("{alone} of {responses} responses recognized without their request");
}

/// Names that a cut prefix may give before the full name is known.
const GENERIC: &[&str] = &["Query", "Prepare", "Parse"];

/// The label of every prefix of every sample is None or consistent with the label of the whole:
/// same protocol; if not truncated, equal; if truncated, a name that is a prefix of the whole's
/// (requests) and attributes that are the whole's or prefixes of them.
#[test]
fn every_prefix_is_consistent() {
    let mut checked = 0;
    for s in samples() {
        for redact in [Redact::Literals, Redact::None] {
            let full = label_of(&s, &s.bytes, redact).unwrap();
            for n in 0..s.bytes.len() {
                let Some(p) = label_of(&s, &s.bytes[..n], redact) else {
                    continue;
                };
                checked += 1;
                let at = format!("{} cut at {n} ({redact:?})", s.name);
                assert_eq!(p.protocol, full.protocol, "{at}");
                if !p.truncated {
                    assert_eq!(
                        p, full,
                        "{at}: not truncated, so it must be the whole's label"
                    );
                    continue;
                }
                if s.request {
                    assert!(
                        full.name.starts_with(&p.name) || GENERIC.contains(&p.name.as_str()),
                        "{at}: name {:?} vs {:?}",
                        p.name,
                        full.name
                    );
                }
                for (k, v) in &p.attrs {
                    let whole = full.attr(k).unwrap_or_else(|| {
                        panic!(
                            "{at}: attribute {k}={v:?} not in the whole's {:?}",
                            full.attrs
                        )
                    });
                    assert!(
                        whole.starts_with(v.as_str()),
                        "{at}: {k}: {v:?} vs {whole:?}"
                    );
                }
            }
        }
    }
    assert!(checked > 5000, "{checked}");
}

/// The recorder's 64-byte prefix already names the span for HTTP, MySQL COM_QUERY, PostgreSQL
/// simple queries, memcached and Redis; FastCGI says at least "FCGI".
#[test]
fn a_64_byte_prefix_names_the_span() {
    for s in samples().iter().filter(|s| s.request && s.bytes.len() > 64) {
        let full = parse_request(&s.bytes, Redact::Literals).unwrap();
        let p = parse_request(&s.bytes[..64], Redact::Literals)
            .unwrap_or_else(|| panic!("{}: 64-byte prefix not recognized", s.name));
        let query = full.attr(keys::MYSQL_COMMAND) == Some("COM_QUERY")
            || full.attr(keys::PG_MESSAGE) == Some("Query");
        match full.protocol {
            Protocol::Http | Protocol::Memcached | Protocol::Redis => {
                assert_eq!(p.name, full.name, "{}", s.name)
            }
            Protocol::Mysql | Protocol::Postgresql if query => {
                assert_eq!(p.name, full.name, "{}", s.name)
            }
            Protocol::FastCgi => {
                // "FCGI", or more when the params that name it come first (nginx sends
                // QUERY_STRING and REQUEST_METHOD first).
                assert!(full.name.starts_with(&p.name), "{}", s.name);
                assert!(p.truncated);
            }
            _ => {}
        }
    }
}

/// The default redaction leaves no literal of the captured statements and URLs; opting in keeps
/// them.
#[test]
fn literals_are_redacted_by_default() {
    let secrets = [
        "Main_Page",
        "Page_7",
        "New_Page",
        "hello-value",
        "Hello+world",
        "1201",
    ];
    for s in samples().iter().filter(|s| s.request) {
        let l = parse_request(&s.bytes, Redact::Literals).unwrap();
        for (k, v) in &l.attrs {
            if *k == keys::DB_OPERATION_NAME || *k == keys::URL_PATH {
                continue;
            }
            for secret in secrets {
                assert!(
                    !v.contains(secret),
                    "{}: {k}={v:?} shows {secret:?}",
                    s.name
                );
            }
        }
    }
    let raw = |name: &str, key: &str| {
        let s = samples().into_iter().find(|s| s.name == name).unwrap();
        parse_request(&s.bytes, Redact::None)
            .unwrap()
            .attr(key)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        raw("http/curl0-c0-m00-req.bin", keys::HTTP_TARGET),
        "/index.php?title=Page_7&action=view"
    );
    assert!(raw("mysql/php-c0-m03-req.bin", keys::DB_QUERY_TEXT).contains("'Page_7'"));
    assert!(raw("postgresql/psql-c0-m06-req.bin", keys::DB_QUERY_TEXT).contains("'Main_Page'"));
    assert!(raw("redis/cli0-c0-m00-req.bin", keys::DB_QUERY_TEXT).contains("hello-value"));
    assert_eq!(
        raw("fastcgi/nginx-c0-m00-req.bin", keys::URL_QUERY),
        "title=Page_7&action=view"
    );
}

/// Credentials are never shown, whatever the redaction.
#[test]
fn credentials_are_never_read() {
    for s in samples() {
        for redact in [Redact::None, Redact::Literals] {
            if let Some(l) = label_of(&s, &s.bytes, redact) {
                for (k, v) in &l.attrs {
                    assert!(!v.contains("wikipass"), "{}: {k}", s.name);
                    assert!(
                        !v.contains("n,,n=") && !v.contains("c=biws"),
                        "{}: {k}",
                        s.name
                    );
                }
            }
        }
    }
}

/// A reply is not taken for a request (a reader that does not know the direction, like the
/// recorder's labeler, tries the request first), and a request is not taken for a reply, except
/// that a Redis command is also a well-formed Redis reply (an array of bulk strings).
#[test]
fn replies_and_requests_are_not_confused() {
    let mut wrong = Vec::new();
    for s in samples() {
        if s.request {
            for p in [None, Some(s.dir_protocol)] {
                if let Some(l) = parse_response(&s.bytes, p) {
                    if l.protocol != Protocol::Redis {
                        wrong.push(format!("{} as a reply to {p:?}: {l:?}", s.name));
                    }
                }
            }
        } else if let Some(l) = parse_request(&s.bytes, Redact::None) {
            wrong.push(format!("{} as a request: {l:?}", s.name));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
