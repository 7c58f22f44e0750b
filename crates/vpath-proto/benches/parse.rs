//! The cost of one parse of a recorder-sized prefix (64 bytes) of real messages.
//! Run: `cargo bench -p vpath-proto --bench parse`

use divan::{black_box, Bencher};
use vpath_proto::{parse_request, parse_response, Protocol, Redact};

fn main() {
    divan::main();
}

const HTTP: &[u8] = include_bytes!("../tests/data/http/curl0-c0-m00-req.bin");
const FASTCGI: &[u8] = include_bytes!("../tests/data/fastcgi/nginx-c0-m00-req.bin");
const MYSQL: &[u8] = include_bytes!("../tests/data/mysql/php-c0-m03-req.bin");
const PG: &[u8] = include_bytes!("../tests/data/postgresql/psql-c0-m06-req.bin");
const MEMCACHED: &[u8] = include_bytes!("../tests/data/memcached/text-c0-m02-req.bin");
const REDIS: &[u8] = include_bytes!("../tests/data/redis/cli0-c0-m00-req.bin");
const HTTP_RESP: &[u8] = include_bytes!("../tests/data/http/curl0-c0-m01-resp.bin");
const MYSQL_RESP: &[u8] = include_bytes!("../tests/data/mysql/php-c0-m10-resp.bin");
const PG_RESP: &[u8] = include_bytes!("../tests/data/postgresql/psql-c0-m07-resp.bin");

fn prefix(b: &[u8]) -> &[u8] {
    &b[..b.len().min(64)]
}

#[divan::bench(args = ["http", "fastcgi", "mysql", "postgresql", "memcached", "redis", "random"])]
fn request_64(bencher: Bencher, what: &str) {
    let random: Vec<u8> = (0u32..64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let b: &[u8] = match what {
        "http" => prefix(HTTP),
        "fastcgi" => prefix(FASTCGI),
        "mysql" => prefix(MYSQL),
        "postgresql" => prefix(PG),
        "memcached" => prefix(MEMCACHED),
        "redis" => prefix(REDIS),
        _ => &random,
    };
    assert_eq!(
        parse_request(b, Redact::Literals).is_some(),
        what != "random"
    );
    bencher.bench(|| parse_request(black_box(b), Redact::Literals));
}

#[divan::bench(args = ["http", "mysql", "postgresql"])]
fn request_64_raw(bencher: Bencher, what: &str) {
    let b = match what {
        "http" => prefix(HTTP),
        "mysql" => prefix(MYSQL),
        _ => prefix(PG),
    };
    bencher.bench(|| parse_request(black_box(b), Redact::None));
}

#[divan::bench(args = ["http", "mysql", "postgresql"])]
fn response_64(bencher: Bencher, what: &str) {
    let (b, p) = match what {
        "http" => (prefix(HTTP_RESP), Protocol::Http),
        "mysql" => (prefix(MYSQL_RESP), Protocol::Mysql),
        _ => (prefix(PG_RESP), Protocol::Postgresql),
    };
    assert!(parse_response(b, Some(p)).is_some());
    bencher.bench(|| parse_response(black_box(b), Some(p)));
}

/// A whole message: the FastCGI request with all its params (616 bytes).
#[divan::bench]
fn request_fastcgi_whole(bencher: Bencher) {
    bencher.bench(|| parse_request(black_box(FASTCGI), Redact::Literals));
}

/// For scale: building a label-like value of 7 small strings (what a label costs at least).
#[divan::bench]
fn baseline_seven_strings(bencher: Bencher) {
    bencher.bench(|| {
        let v: Vec<(&str, String)> = (0..6)
            .map(|i| {
                (
                    black_box("key"),
                    black_box("value").to_string() + ["", "x"][i % 2],
                )
            })
            .collect();
        (black_box("name").to_string(), v)
    });
}
