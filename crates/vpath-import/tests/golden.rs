//! Golden tests: the imported records of each input under tests/data, as
//! text (vpath_import::text), must equal the committed `.expected` file.
//! `VPATH_BLESS=1 cargo test -p vpath-import --test golden` rewrites them.
//! The strace captures come from examples/tiers.rs (see capture.sh); beyond
//! the golden text, they are checked for properties that any correct import
//! of them has.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use vpath_core::event::canonical;
use vpath_core::{Event, Op, Record};
use vpath_import::text::fmt_record;
use vpath_import::{sniff, Format, ImportError, SeedImporter, StraceImporter};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Imports a file: records, errors (as text) and the skipped count.
fn import(path: &Path) -> (Vec<Record>, Vec<String>, usize) {
    let head = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let format = sniff(&head[..head.len().min(4096)]);
    let f = BufReader::new(File::open(path).expect("readable"));
    fn drain(
        it: &mut dyn Iterator<Item = Result<Record, ImportError>>,
    ) -> (Vec<Record>, Vec<String>) {
        let (mut ok, mut err) = (Vec::new(), Vec::new());
        for r in it {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => err.push(e.to_string()),
            }
        }
        (ok, err)
    }
    match format {
        Some(Format::Seed) => {
            let mut imp = SeedImporter::new(f);
            let (r, e) = drain(&mut imp);
            (r, e, imp.skipped())
        }
        Some(Format::Strace) => {
            let mut imp = StraceImporter::new(f);
            let (r, e) = drain(&mut imp);
            (r, e, imp.skipped())
        }
        None => panic!("{}: format not recognised", path.display()),
    }
}

fn golden(input: &str, expected: &str) -> Vec<Record> {
    let (records, errors, skipped) = import(&data(input));
    assert!(errors.is_empty(), "{input}: {errors:#?}");
    let mut text = String::new();
    for r in &records {
        text.push_str(&fmt_record(r));
        text.push('\n');
    }
    text.push_str(&format!("# skipped {skipped}\n"));
    let exp_path = data(expected);
    if std::env::var_os("VPATH_BLESS").is_some() {
        std::fs::write(&exp_path, &text).expect("write golden file");
    }
    let want = std::fs::read_to_string(&exp_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with VPATH_BLESS=1 to create it)",
            exp_path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "{input}: output differs from {expected} at line {}:\n  want: {:?}\n  got:  {:?}\n(VPATH_BLESS=1 rewrites it)",
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first)
        );
    }
    records
}

fn events(records: &[Record]) -> Vec<&Event> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn seed_slides_example() {
    let records = golden("seed/xen-log-example.txt", "seed/xen-log-example.expected");
    let ev = events(&records);
    // Four syscall/hypercall pairs in the example.
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().all(|e| !e.bytes_known() && e.is_data()));
}

/// Properties every correct import of a tiers capture has.
fn check_tiers(records: &[Record], clients: usize, requests: usize) {
    // A ThreadInfo precedes each thread's first event; per-thread order is
    // timestamp order.
    let mut announced = BTreeSet::new();
    let mut last_ts: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records {
        match r {
            Record::Thread(t) => {
                announced.insert(t.tid);
            }
            Record::Event(e) => {
                assert!(
                    announced.contains(&e.tid),
                    "event before its ThreadInfo: {e:?}"
                );
                let prev = last_ts.insert(e.tid, e.ts_ns).unwrap_or(0);
                assert!(
                    prev <= e.ts_ns,
                    "thread {} goes back in time at {e:?}",
                    e.tid
                );
            }
            Record::Checkpoint(_) => panic!("importers emit no checkpoints"),
        }
    }
    let ev = events(records);
    // Every event's addresses are known (held connects got theirs).
    for e in &ev {
        assert!(
            e.local.port() != 0 && e.remote.port() != 0,
            "unknown address: {e:?}"
        );
    }
    // Bytes sent on each connection direction are the bytes received at the
    // other end (both ends are in the capture).
    let mut sent: BTreeMap<(SocketAddr, SocketAddr), u64> = BTreeMap::new();
    let mut got: BTreeMap<(SocketAddr, SocketAddr), u64> = BTreeMap::new();
    for e in &ev {
        let (l, r) = (canonical(&e.local), canonical(&e.remote));
        match e.op {
            Op::Send => *sent.entry((l, r)).or_default() += e.moved(),
            Op::Recv => *got.entry((r, l)).or_default() += e.moved(),
            _ => {}
        }
    }
    assert!(!sent.is_empty());
    assert_eq!(sent, got, "bytes sent and received differ per direction");
    // 2 × clients connections: client→middle and middle→backend.
    let count = |op| ev.iter().filter(|e| e.op == op).count();
    assert_eq!(count(Op::Connect), 2 * clients);
    assert_eq!(count(Op::Accept), 2 * clients);
    // Each side closes each connection once.
    assert_eq!(count(Op::Close), 4 * clients);
    // One writev reply per request; one peek per backend request (plus one
    // at EOF per backend connection).
    let writev = ev
        .iter()
        .filter(|e| e.syscall == vpath_core::Syscall::Writev)
        .count();
    assert_eq!(writev, clients * requests);
    let peeks = ev.iter().filter(|e| e.is_peek()).count();
    assert_eq!(peeks, clients * (2 * requests + 1));
    // Three processes; threads of a process share its pid.
    let pids: BTreeSet<u32> = ev.iter().map(|e| e.pid).collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    // Socket ids are unique per connection end.
    let mut ends: BTreeMap<u64, (SocketAddr, SocketAddr)> = BTreeMap::new();
    for e in &ev {
        let prev = ends.insert(e.sock, (e.local, e.remote));
        assert!(
            prev.is_none() || prev == Some((e.local, e.remote)),
            "sock {} changes: {e:?}",
            e.sock
        );
    }
    assert_eq!(ends.len(), 4 * clients);
}

#[test]
fn strace_tiers_ipv4() {
    let records = golden("strace/tiers-v4.strace", "strace/tiers-v4.expected");
    check_tiers(&records, 3, 2);
}

#[test]
fn strace_tiers_ipv6() {
    let records = golden("strace/tiers-v6.strace", "strace/tiers-v6.expected");
    check_tiers(&records, 2, 2);
    assert!(events(&records).iter().all(|e| e.local.is_ipv6()));
}
