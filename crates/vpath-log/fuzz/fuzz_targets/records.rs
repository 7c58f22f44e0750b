//! Arbitrary bytes as the payload of a correctly checksummed first block,
//! so that the fuzzer reaches the record decoder past the checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpath_log::{Clock, Header};

fuzz_target!(|data: &[u8]| {
    let h = Header {
        host: "fuzz".into(),
        wall_minus_mono_ns: 0,
        clock: Clock::Monotonic,
        flags: 0,
        recorder: "fuzz".into(),
        start_unix_ns: 0,
        raw_layout: String::new(),
    };
    let mut log = vpath_log::encode_header_with_version(&h, 1, 0).unwrap();
    if data.is_empty() {
        return;
    }
    let mut bh = Vec::with_capacity(16);
    bh.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bh.extend_from_slice(&0u32.to_le_bytes());
    bh.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let c = crc32fast::hash(&bh);
    bh.extend_from_slice(&c.to_le_bytes());
    log.extend_from_slice(&bh);
    log.extend_from_slice(data);
    let mut r = vpath_log::LogReader::new(&log[..]).unwrap();
    while let Ok(Some(_)) = r.next_record() {}
});
