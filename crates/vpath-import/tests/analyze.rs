//! The strace capture of the tiers example, analyzed by vpath-core: prints
//! the paths (`cargo test -p vpath-import --test analyze -- --nocapture`)
//! and checks their shape: one path per client request, the middle tier's
//! span under the client's, with two backend calls under it.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use vpath_core::{Analyzer, Config, SpanKind};
use vpath_import::StraceImporter;

fn analyze(rel: &str, clients: usize, requests: usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    let f = BufReader::new(File::open(&path).expect("capture present"));
    let mut a = Analyzer::new(Config::default());
    let h = a.add_host("local", false);
    for r in StraceImporter::new(f) {
        a.push(h, &r.expect("the capture imports without errors"));
    }
    a.end_host(h);
    a.finish();
    let mut paths = Vec::new();
    while let Some(p) = a.pop() {
        println!("{}", serde_json::to_string(&p).expect("serializable"));
        paths.push(p);
    }
    println!("{rel}: {:?}", a.stats());
    assert_eq!(paths.len(), clients * requests, "one path per request");
    for p in &paths {
        let root = &p.root;
        assert_eq!(root.kind, SpanKind::Origin, "{p:?}");
        assert_eq!(root.children.len(), 1, "client → middle: {p:?}");
        let middle = &root.children[0];
        assert_eq!(middle.kind, SpanKind::Server);
        assert_eq!(middle.children.len(), 2, "middle → backend twice: {p:?}");
        assert!(middle.children.iter().all(|c| c.kind == SpanKind::Server));
        assert!(p.complete, "{p:?}");
    }
}

#[test]
fn tiers_ipv4_paths() {
    analyze("strace/tiers-v4.strace", 3, 2);
}

#[test]
fn tiers_ipv6_paths() {
    analyze("strace/tiers-v6.strace", 2, 2);
}
