//! Arbitrary bytes as a request and as a response, of any protocol or none: never a panic, and
//! every label well formed. Seed it with the real messages:
//! `cargo +nightly fuzz run parse ../tests/data/*/ -- -max_total_time=60` (from crates/vpath-proto).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpath_proto::{
    parse_request, parse_request_as, parse_response, Label, Protocol, Redact, MAX_VALUE,
};

fn check(l: Option<Label>) {
    if let Some(l) = l {
        assert!(!l.name.is_empty());
        assert!(l.attrs.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(l.attrs.iter().all(|(_, v)| v.len() <= MAX_VALUE));
    }
}

fuzz_target!(|data: &[u8]| {
    for redact in [Redact::None, Redact::Literals] {
        check(parse_request(data, redact));
        for p in Protocol::ALL {
            check(parse_request_as(data, p, redact));
        }
    }
    check(parse_response(data, None));
    for p in Protocol::ALL {
        check(parse_response(data, Some(p)));
    }
});
