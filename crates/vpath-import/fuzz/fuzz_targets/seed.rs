#![no_main]
//! Any input: the seed importer returns records or errors, never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for r in vpath_import::SeedImporter::new(data) {
        if let Err(e) = r {
            assert!(e.line >= 1);
        }
    }
    let _ = vpath_import::sniff(data);
});
