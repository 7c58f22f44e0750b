//! Arbitrary bytes as a whole log file: the reader and the dump must never
//! panic, and must stop after an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = vpath_log::LogReader::new(data) {
        let _ = vpath_log::dump(&mut r, &mut std::io::sink());
        assert!(matches!(r.next_record(), Ok(None)));
    }
});
