//! Round trip, damage, version and dump tests of the binary log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;
use vpath_core::{flags, Checkpoint, Data, Event, Label, Op, Record, Syscall, ThreadInfo};
use vpath_log::*;

fn header() -> Header {
    Header {
        host: "web1".into(),
        wall_minus_mono_ns: 1_700_000_000_123_456_789,
        clock: Clock::Monotonic,
        flags: header_flags::CHECKPOINTED,
        recorder: "vpath-log-tests 0.1".into(),
        start_unix_ns: 1_700_000_100_000_000_000,
        raw_layout: String::new(),
    }
}

fn encode_with(recs: &[Record], opts: WriterOptions, end: EndStats) -> Vec<u8> {
    let mut w = LogWriter::with_options(Vec::new(), &header(), opts).unwrap();
    for r in recs {
        w.write(r).unwrap();
    }
    w.finish(end).unwrap()
}

/// A log without End trailer: writes into a shared buffer, then drops the
/// writer.
fn encode_unfinished(recs: &[Record], opts: WriterOptions) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = LogWriter::with_options(&mut out, &header(), opts).unwrap();
        for r in recs {
            w.write(r).unwrap();
        }
    }
    out
}

fn small_blocks() -> WriterOptions {
    WriterOptions {
        block_bytes: 64,
        ..WriterOptions::default()
    }
}

fn stats(n: u64) -> EndStats {
    EndStats {
        events_emitted: n + 2,
        events_written: n,
        events_lost: 2,
    }
}

/// Reads all records; the error (if any) ends the list.
fn read_all(bytes: &[u8]) -> (Vec<Record>, Result<Option<EndStats>, LogError>) {
    let mut r = match LogReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => out.push(rec),
            Ok(None) => return (out, Ok(r.end())),
            Err(e) => {
                // Fused: nothing after an error.
                assert!(matches!(r.next_record(), Ok(None)));
                return (out, Err(e));
            }
        }
    }
}

fn ev(ts: u64, tid: u32, sock: u64, op: Op, ret: i64, seq: u32) -> Event {
    Event {
        ts_ns: ts,
        netns: 4026531840,
        cgroup: 0,
        pid: 100,
        tid,
        sock,
        op,
        syscall: match op {
            Op::Send => Syscall::Writev,
            Op::Recv => Syscall::Read,
            Op::Connect => Syscall::Connect,
            Op::Accept => Syscall::Accept4,
            Op::Close => Syscall::Close,
        },
        flags: if matches!(op, Op::Send | Op::Recv) {
            flags::SEQ
        } else {
            0
        },
        ret,
        seq,
        local: "10.0.0.1:80".parse().unwrap(),
        remote: format!("10.0.0.2:{}", 4000 + sock).parse().unwrap(),
        data: None,
    }
}

/// A small log with every record kind, IPv6, changes and a close.
fn sample() -> Vec<Record> {
    let mut v = vec![
        Record::Thread(ThreadInfo {
            pid: 100,
            tid: 101,
            comm: "nginx".into(),
        }),
        Record::Event(ev(12_345_678_901, 101, 0x1f, Op::Accept, 5, 0)),
        Record::Event(Event {
            data: Some(Box::new(Data::Bytes {
                offset: 0,
                bytes: b"GET /a?b=1 HTTP/1.1\r\n\x00\xff"[..].into(),
            })),
            ..ev(12_345_680_000, 101, 0x1f, Op::Recv, 120, 1000)
        }),
        Record::Event(ev(12_345_690_000, 101, 0x20, Op::Connect, 0, 0)),
        Record::Event(Event {
            data: Some(Box::new(Data::Label(std::sync::Arc::new(Label {
                protocol: "mysql".into(),
                name: "SELECT".into(),
                attrs: vec![
                    ("db.query.text".into(), "SELECT a FROM t WHERE b = ?".into()),
                    ("db.system.name".into(), "mysql".into()),
                ],
                reply: false,
            })))),
            ..ev(12_345_700_000, 101, 0x20, Op::Send, 80, 555)
        }),
        Record::Thread(ThreadInfo {
            pid: 100,
            tid: 102,
            comm: "nginx worker".into(),
        }),
        Record::Event(ev(12_345_710_000, 102, 0x20, Op::Recv, 300, 777)),
        Record::Checkpoint(Checkpoint {
            ts_ns: 12_345_720_000,
            lost_total: 3,
        }),
        Record::Event(ev(12_345_730_000, 101, 0x1f, Op::Send, 512, 1000)),
        Record::Event(ev(12_345_740_000, 101, 0x1f, Op::Recv, -11, 1120)),
        Record::Event(ev(12_345_750_000, 101, 0x1f, Op::Close, 0, 0)),
    ];
    let mut e6 = ev(12_345_760_000, 102, 0x21, Op::Recv, 0, 99);
    e6.local = "[fd00::1]:443".parse().unwrap();
    e6.remote = "[::ffff:10.0.0.9]:5555".parse().unwrap();
    e6.cgroup = 4242;
    e6.flags |= flags::PEEK;
    v.push(Record::Event(e6.clone()));
    // The same socket after its addresses changed (local port 0 after close).
    e6.local = "[fd00::1]:0".parse().unwrap();
    e6.ts_ns += 1000;
    e6.flags = flags::NO_BYTES;
    e6.seq = 0;
    v.push(Record::Event(e6));
    v
}

fn n_events(recs: &[Record]) -> u64 {
    recs.iter()
        .filter(|r| matches!(r, Record::Event(_)))
        .count() as u64
}

#[test]
fn sample_round_trips_and_ends_cleanly() {
    let recs = sample();
    let bytes = encode_with(&recs, small_blocks(), stats(n_events(&recs)));
    let (got, end) = read_all(&bytes);
    assert_eq!(got, recs);
    assert_eq!(end.unwrap(), Some(stats(n_events(&recs))));
}

#[test]
fn log_without_trailer_reads_but_reports_no_end() {
    let recs = sample();
    let bytes = encode_unfinished(&recs, small_blocks());
    let (got, end) = read_all(&bytes);
    assert_eq!(got, recs);
    assert_eq!(end.unwrap(), None);
}

#[test]
fn events_are_compact() {
    let recs = synth::workload(50_000, 7);
    let n = n_events(&recs);
    let bytes = encode_with(&recs, WriterOptions::default(), stats(n));
    let per_event = bytes.len() as f64 / n as f64;
    eprintln!("{per_event:.2} bytes per event");
    assert!(per_event < 20.0, "{per_event:.2} bytes per event");
    let (got, end) = read_all(&bytes);
    assert!(end.unwrap().is_some());
    assert_eq!(got, recs);
}

#[test]
fn writer_memory_stays_bounded_and_resets_round_trip() {
    // Sockets that are never closed, threads that never repeat: the tables
    // hit their caps and are reset; the reader must follow.
    let mut recs = Vec::new();
    for i in 0..2000u64 {
        let mut e = ev(
            i * 10,
            1000 + (i % 300) as u32,
            5000 + i,
            Op::Send,
            10,
            i as u32,
        );
        e.pid = 7;
        recs.push(Record::Event(e));
    }
    let opts = WriterOptions {
        block_bytes: 512,
        max_sockets: 16,
        max_threads: 8,
        max_labels: 4,
    };
    let bytes = encode_with(&recs, opts, stats(2000));
    let (got, end) = read_all(&bytes);
    assert!(end.unwrap().is_some());
    assert_eq!(got, recs);
}

#[test]
fn closed_sockets_reuse_ids() {
    // 10 000 connections opened and closed one after another: with eviction
    // each Socket record reuses id 0, so the log grows linearly and small.
    let mut recs = Vec::new();
    for i in 0..10_000u64 {
        recs.push(Record::Event(ev(i * 100, 5, 9000 + i, Op::Send, 10, 1)));
        recs.push(Record::Event(ev(
            i * 100 + 50,
            5,
            9000 + i,
            Op::Close,
            0,
            0,
        )));
    }
    let bytes = encode_with(&recs, WriterOptions::default(), stats(20_000));
    let (got, _) = read_all(&bytes);
    assert_eq!(got, recs);
    // An event referring to a closed socket must not decode: the reader
    // evicts too. Checked through a crafted log in
    // `event_on_evicted_socket_is_malformed`.
}

// ---- crafted logs -------------------------------------------------------

/// Builds one block around `payload`.
fn block(index: u32, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&index.to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let c = crc32fast::hash(&h);
    h.extend_from_slice(&c.to_le_bytes());
    h.extend_from_slice(payload);
    h
}

/// Splits a log made by the writer into its header and block payloads.
fn split(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let hlen = 16 + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize + 4;
    let mut blocks = Vec::new();
    let mut p = hlen;
    while p < bytes.len() {
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
        blocks.push(bytes[p + 16..p + 16 + len].to_vec());
        p += 16 + len;
    }
    (bytes[..hlen].to_vec(), blocks)
}

#[test]
fn event_on_evicted_socket_is_malformed() {
    let recs = vec![
        Record::Event(ev(10, 5, 77, Op::Close, 0, 0)),
        Record::Event(ev(20, 5, 88, Op::Send, 1, 1)),
    ];
    let bytes = encode_with(&recs, WriterOptions::default(), stats(2));
    let (hdr, blocks) = split(&bytes);
    assert_eq!(blocks.len(), 1);
    // Payload: ThreadState, Socket(id 0), Event(close), Socket(id 0),
    // Event, End. Drop the second Socket record: the last event then names
    // a socket id the reader has evicted.
    let p = &blocks[0];
    let mut recs_at = Vec::new();
    let mut i = 0;
    while i < p.len() {
        recs_at.push((p[i], i));
        i += 2 + p[i + 1] as usize; // all lengths here are < 128
    }
    let kinds: Vec<u8> = recs_at.iter().map(|r| r.0).collect();
    assert_eq!(kinds, [3, 2, 1, 2, 1, 6]);
    let (s2, e2) = (recs_at[3].1, recs_at[4].1);
    let mut payload = p[..s2].to_vec();
    payload.extend_from_slice(&p[e2..]);
    let mut log = hdr.clone();
    log.extend(block(0, &payload));
    let (got, end) = read_all(&log);
    assert_eq!(got.len(), 1);
    let err = end.unwrap_err();
    assert!(
        err.to_string()
            .contains("socket id 0 has no live Socket record"),
        "{err}"
    );
    assert_eq!(err.offset(), (hdr.len() + 16 + s2 + 2) as u64);
}

#[test]
fn newer_minor_version_with_skippable_records_is_read() {
    let h = header();
    let mut log = encode_header_with_version(&h, VERSION_MAJOR, VERSION_MINOR + 3).unwrap();
    let recs = vec![Record::Checkpoint(Checkpoint {
        ts_ns: 5,
        lost_total: 1,
    })];
    let bytes = encode_with(&recs, WriterOptions::default(), stats(0));
    let (_, blocks) = split(&bytes);
    // A future skippable record kind before the checkpoint, and a future
    // field appended to the checkpoint body.
    let mut payload = vec![0x90, 3, 1, 2, 3];
    let p = &blocks[0];
    let cp_len = p[1] as usize;
    payload.push(p[0]);
    payload.push(cp_len as u8 + 1);
    payload.extend_from_slice(&p[2..2 + cp_len]);
    payload.push(0x7f);
    payload.extend_from_slice(&p[2 + cp_len..]);
    log.extend(block(0, &payload));
    let mut r = LogReader::new(&log[..]).unwrap();
    assert_eq!(r.version(), (VERSION_MAJOR, VERSION_MINOR + 3));
    assert_eq!(r.next_record().unwrap(), Some(recs[0].clone()));
    assert_eq!(r.next_record().unwrap(), None);
    assert_eq!(r.end(), Some(stats(0)));
    // An unknown kind below 0x80 is an error naming its offset.
    let mut bad = encode_header_with_version(&h, 1, 0).unwrap();
    let at = bad.len() + 16;
    bad.extend(block(0, &[0x33, 0]));
    let err = LogReader::new(&bad[..]).unwrap().next_record().unwrap_err();
    assert_eq!(err.offset(), at as u64);
    assert!(err.to_string().contains("unknown record kind 51"), "{err}");
}

#[test]
fn unknown_major_version_is_rejected() {
    for major in [0u16, 2, 3, 0xffff] {
        let log = encode_header_with_version(&header(), major, 0).unwrap();
        let err = LogReader::new(&log[..]).err().expect("must reject");
        assert!(
            matches!(err, LogError::UnsupportedVersion { offset: 8, major: m, .. } if m == major),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "unsupported format version {major}.0 at byte 8: this reader supports major version 1"
            )
        );
    }
}

#[test]
fn bad_magic_and_unknown_header_flags_are_rejected() {
    let err = LogReader::new(&b"{\"ts\": 1}\n and some more text"[..])
        .err()
        .unwrap();
    assert!(matches!(err, LogError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().starts_with("bad magic at byte 0"), "{err}");
    let mut h = header();
    h.flags = 0x100;
    assert!(matches!(
        LogWriter::new(Vec::new(), &h),
        Err(WriteError::UnknownFlags { .. })
    ));
}

#[test]
fn trailing_data_after_end_is_an_error() {
    let mut bytes = encode_with(&sample(), small_blocks(), stats(10));
    let n = bytes.len();
    bytes.push(0);
    let (got, end) = read_all(&bytes);
    assert_eq!(got, sample());
    let err = end.unwrap_err();
    assert!(matches!(err, LogError::TrailingData { offset } if offset == n as u64));
}

#[test]
fn file_errors_name_the_file() {
    let err = LogReader::open("/nonexistent/dir/x.vlog").err().unwrap();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/dir/x.vlog: cannot open"),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("vpath-log-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.vlog");
    let bytes = encode_with(&sample(), small_blocks(), stats(10));
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let mut r = LogReader::open(&path).unwrap();
    let err = loop {
        match r.next_record() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("cut log read cleanly"),
            Err(e) => break e.in_file(&path),
        }
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: truncated End record body at byte ",
            path.display()
        )),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- damage ---------------------------------------------------------------

/// Record end offsets of a clean read: element i is the file offset just
/// after record i.
fn record_ends(bytes: &[u8]) -> Vec<u64> {
    let mut r = LogReader::new(bytes).unwrap();
    let mut ends = Vec::new();
    while r.next_record().unwrap().is_some() {
        ends.push(r.position());
    }
    ends
}

#[test]
fn truncation_at_every_offset_returns_complete_records_then_names_the_cut() {
    let recs = sample();
    let bytes = encode_with(&recs, small_blocks(), stats(n_events(&recs)));
    let ends = record_ends(&bytes);
    assert_eq!(ends.len(), recs.len());
    let mut errors = 0;
    for cut in 0..bytes.len() {
        let (got, end) = read_all(&bytes[..cut]);
        let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
        assert_eq!(got.len(), complete, "cut at {cut}");
        assert_eq!(&got[..], &recs[..complete], "cut at {cut}");
        match end {
            Ok(None) => {} // cut at a block boundary: no End trailer
            Ok(Some(_)) => panic!("cut at {cut} read as a clean log"),
            Err(e) => {
                errors += 1;
                match e {
                    LogError::Truncated {
                        offset,
                        found,
                        expected,
                        ..
                    } => {
                        assert_eq!(offset + found, cut as u64, "cut at {cut}: {e}");
                        assert!(expected > found, "cut at {cut}: {e}");
                        assert!(e.to_string().contains(&format!("at byte {offset}")));
                    }
                    other => panic!("cut at {cut}: not a truncation: {other}"),
                }
            }
        }
    }
    assert!(errors > bytes.len() / 2);
}

#[test]
fn truncated_event_message_names_offset_and_sizes() {
    let recs = vec![Record::Event(ev(1, 1, 1, Op::Send, 300, 7))];
    let bytes = encode_unfinished(&recs, WriterOptions::default());
    let (_, blocks) = split(&bytes);
    let p = &blocks[0];
    // The Event record is the last one of the payload.
    let mut i = 0;
    let mut last = 0;
    while i < p.len() {
        last = i;
        i += 2 + p[i + 1] as usize;
    }
    let body_len = p[last + 1] as usize;
    let payload_at = bytes.len() - p.len();
    let cut = payload_at + last + 2 + 1;
    let (_, end) = read_all(&bytes[..cut]);
    let err = end.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "truncated Event record body at byte {}: expected {body_len} bytes, found 1",
            payload_at + last + 2
        )
    );
}

fn assert_detected(bytes: &[u8], orig: &[Record], what: &str) {
    let (got, end) = read_all(bytes);
    assert!(
        got.len() <= orig.len() && got[..] == orig[..got.len()],
        "{what}: returned wrong records"
    );
    assert!(end.is_err(), "{what}: corruption not detected");
}

#[test]
fn every_single_byte_corruption_is_detected() {
    let recs = sample();
    let bytes = encode_with(&recs, small_blocks(), stats(n_events(&recs)));
    for pos in 0..bytes.len() {
        for x in [0x01u8, 0x80, 0xff, 0x5a] {
            let mut b = bytes.clone();
            b[pos] ^= x;
            assert_detected(&b, &recs, &format!("byte {pos} ^ {x:#x}"));
        }
    }
}

#[test]
fn checksum_errors_name_the_block() {
    let recs = sample();
    let bytes = encode_with(&recs, small_blocks(), stats(11));
    let (hdr, blocks) = split(&bytes);
    let second_payload = hdr.len() + 16 + blocks[0].len() + 16;
    let mut b = bytes.clone();
    b[second_payload + 1] ^= 4;
    let (got, end) = read_all(&b);
    let err = end.unwrap_err();
    assert!(
        matches!(err, LogError::Checksum { what: "block payload", offset, .. } if offset == second_payload as u64),
        "{err}"
    );
    assert!(err.to_string().starts_with(&format!(
        "checksum mismatch in block payload at byte {second_payload}"
    )));
    // Exactly the records of the first block came back.
    let first_block_end = (hdr.len() + 16 + blocks[0].len()) as u64;
    let ends = record_ends(&bytes);
    assert_eq!(
        got.len(),
        ends.iter().filter(|&&e| e <= first_block_end).count()
    );
    // A block removed from the middle is noticed too.
    let mut cut = hdr.clone();
    let mut p = hdr.len();
    for (i, bl) in blocks.iter().enumerate() {
        if i != 1 {
            cut.extend_from_slice(&bytes[p..p + 16 + bl.len()]);
        }
        p += 16 + bl.len();
    }
    let (_, end) = read_all(&cut);
    assert!(matches!(
        end.unwrap_err(),
        LogError::BlockSequence {
            expected: 1,
            found: 2,
            ..
        }
    ));
}

// ---- dump -----------------------------------------------------------------

fn dump_to_string(bytes: &[u8]) -> (String, Result<DumpSummary, DumpError>) {
    let mut r = LogReader::new(bytes).unwrap();
    let mut out = Vec::new();
    let res = dump(&mut r, &mut out);
    (String::from_utf8(out).unwrap(), res)
}

#[test]
fn dump_matches_golden() {
    let recs = sample();
    let bytes = encode_with(&recs, small_blocks(), stats(n_events(&recs)));
    let (text, res) = dump_to_string(&bytes);
    let s = res.unwrap();
    assert_eq!(s.events, n_events(&recs));
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample.dump");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(golden).expect("golden file; UPDATE_GOLDEN=1 writes it");
    assert_eq!(text, want);
}

#[test]
fn dump_reports_missing_trailer_and_damage() {
    let recs = sample();
    let unfinished = encode_unfinished(&recs, small_blocks());
    let (text, res) = dump_to_string(&unfinished);
    assert_eq!(res.unwrap().end, None);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("# NOT ended cleanly"),
        "{text}"
    );

    let bytes = encode_with(&recs, small_blocks(), stats(n_events(&recs)));
    let (text, res) = dump_to_string(&bytes[..bytes.len() - 2]);
    assert!(matches!(
        res,
        Err(DumpError::Log(LogError::Truncated { .. }))
    ));
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(
            "# DAMAGED after 13 records (10 events): truncated End record body at byte"
        ),
        "{last}"
    );
}

// ---- properties -----------------------------------------------------------

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, fl, sc)| SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                fl,
                sc
            ))
        ),
        // A few fixed ones, so that sockets keep their addresses often.
        Just("10.0.0.1:80".parse().unwrap()),
        Just("[fd00::2]:8080".parse().unwrap()),
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    (
        (
            prop_oneof![any::<u64>(), 0u64..10_000],
            prop_oneof![Just(4026531840u32), any::<u32>()],
            prop_oneof![Just(0u64), any::<u64>()],
            0u32..4,
            prop_oneof![0u32..6, any::<u32>()],
            prop_oneof![0u64..6, any::<u64>()],
        ),
        (
            prop_oneof![4 => 1u8..=2, 1 => 1u8..=5],
            0usize..Syscall::ALL.len(),
            prop_oneof![0u8..=flags::ALL, any::<u8>()],
            prop_oneof![-20i64..5000, any::<i64>()],
            prop_oneof![0u32..3000, any::<u32>()],
            arb_addr(),
            arb_addr(),
        ),
        // Mostly, a socket keeps its endpoints, so that its stream
        // positions are delta-encoded across events.
        prop::bool::weighted(0.8),
        arb_data(),
    )
        .prop_map(
            |(
                (ts_ns, mut netns, cgroup, pid, tid, sock),
                (op, sc, fl, ret, seq, mut local, mut remote),
                stable,
                data,
            )| {
                if stable {
                    netns = 4026531840;
                    local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), sock as u16);
                    remote = "[fd00::2]:8080".parse().unwrap();
                }
                Event {
                    ts_ns,
                    netns,
                    cgroup,
                    pid,
                    tid,
                    sock,
                    op: Op::from_u8(op).unwrap(),
                    syscall: Syscall::ALL[sc],
                    flags: fl,
                    ret,
                    seq,
                    local,
                    remote,
                    data,
                }
            },
        )
}

fn arb_data() -> impl Strategy<Value = Option<Box<Data>>> {
    prop_oneof![
        6 => Just(None),
        1 => (any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(
            |(offset, bytes)| Some(Box::new(Data::Bytes {
                offset,
                bytes: bytes.into()
            }))
        ),
        1 => (
            "[a-z]{0,10}",
            ".{0,40}",
            prop::collection::vec(("[a-z.]{1,20}", ".{0,60}"), 0..5),
            any::<bool>()
        )
            .prop_map(|(protocol, name, attrs, reply)| Some(Box::new(Data::Label(std::sync::Arc::new(Label {
                protocol: protocol.into(),
                name,
                attrs: attrs.into_iter().map(|(k, v): (String, String)| (k.into(), v)).collect(),
                reply
            }))))),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        8 => arb_event().prop_map(Record::Event),
        1 => (any::<u32>(), any::<u32>(), ".{0,20}")
            .prop_map(|(pid, tid, comm)| Record::Thread(ThreadInfo { pid, tid, comm })),
        1 => (any::<u64>(), any::<u64>())
            .prop_map(|(ts_ns, lost_total)| Record::Checkpoint(Checkpoint { ts_ns, lost_total })),
    ]
}

/// Makes labelled events share readings, as the recorder's labeler does: the
/// i-th labelled event takes the label of an earlier labelled event picked
/// by `picks[i]` (when there is one), the same `Arc`.
fn share_labels(mut recs: Vec<Record>, picks: &[prop::sample::Index]) -> Vec<Record> {
    let mut seen: Vec<std::sync::Arc<Label>> = Vec::new();
    let mut k = 0;
    for r in &mut recs {
        if let Record::Event(e) = r {
            if let Some(Data::Label(l)) = e.data.as_deref_mut() {
                match picks.get(k) {
                    Some(i) if !seen.is_empty() && k % 3 != 0 => {
                        *l = seen[i.index(seen.len())].clone()
                    }
                    _ => seen.push(l.clone()),
                }
                k += 1;
            }
        }
    }
    recs
}

/// Makes runs of events on the same socket look like a real stream: the
/// next position follows from the previous event (exercises seq deltas).
fn streamify(mut recs: Vec<Record>) -> Vec<Record> {
    let mut next = std::collections::HashMap::new();
    for r in &mut recs {
        if let Record::Event(e) = r {
            if e.tid % 2 == 0 && e.has_seq() {
                if let Some(&s) = next.get(&(e.sock, e.op == Op::Send)) {
                    e.seq = s;
                }
                next.insert(
                    (e.sock, e.op == Op::Send),
                    e.seq.wrapping_add(e.moved() as u32),
                );
            }
        }
    }
    recs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_records_round_trip(
        recs in prop::collection::vec(arb_record(), 0..120).prop_map(streamify),
        block_bytes in 1usize..400,
        max_sockets in 1usize..8,
        max_threads in 1usize..8,
        max_labels in 1usize..4,
        shared in prop::collection::vec(any::<prop::sample::Index>(), 0..120),
        end in any::<(u64, u64, u64)>(),
    ) {
        let recs = share_labels(recs, &shared);
        let opts = WriterOptions { block_bytes, max_sockets, max_threads, max_labels };
        let stats = EndStats { events_emitted: end.0, events_written: end.1, events_lost: end.2 };
        let bytes = encode_with(&recs, opts, stats);
        let (got, res) = read_all(&bytes);
        prop_assert_eq!(res.unwrap(), Some(stats));
        prop_assert_eq!(got, recs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_all(&bytes);
        // And the same bytes behind a valid file header.
        let mut log = encode_header_with_version(&header(), 1, 0).unwrap();
        log.extend_from_slice(&bytes);
        let _ = read_all(&log);
    }

    #[test]
    fn damaged_logs_never_panic_and_are_detected(
        recs in prop::collection::vec(arb_record(), 1..40),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let bytes = encode_with(&recs, small_blocks(), stats(0));
        let mut b = bytes.clone();
        for (i, x) in &edits {
            let n = b.len();
            b[i.index(n)] ^= x;
        }
        if b != bytes {
            assert_detected(&b, &recs, "random edits");
        }
    }

    #[test]
    fn garbage_blocks_with_valid_checksums_never_panic(
        payload in prop::collection::vec(any::<u8>(), 1..300),
    ) {
        // Checksums only catch damage; a writer bug (or a forged block)
        // must still yield an error, never a panic.
        let mut log = encode_header_with_version(&header(), 1, 0).unwrap();
        log.extend(block(0, &payload));
        let _ = read_all(&log);
        let mut framed = vec![kind::EVENT, payload.len().min(127) as u8];
        framed.extend_from_slice(&payload[..payload.len().min(127)]);
        let mut log = encode_header_with_version(&header(), 1, 0).unwrap();
        log.extend(block(0, &framed));
        let _ = read_all(&log);
    }
}

#[test]
fn format_is_stable_against_stored_logs() {
    // Logs written by each version of the format, stored in the repo: the
    // reader must still read them all, and the writer must still produce
    // exactly the current version's bytes. A deliberate format change bumps
    // the version and adds a new fixture (UPDATE_GOLDEN=1 rewrites the
    // current one).
    let recs = sample();
    let bytes = encode_with(&recs, small_blocks(), stats(n_events(&recs)));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-v1.3.bin");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let stored = std::fs::read(path).expect("fixture; UPDATE_GOLDEN=1 writes it");
    let (got, end) = read_all(&stored);
    assert_eq!(got, recs);
    assert_eq!(end.unwrap(), Some(stats(n_events(&recs))));
    assert!(
        stored == bytes,
        "the writer's output changed: bump the format version"
    );

    // 1.2 had no raw layout in its header: the same records.
    let stored = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample-v1.2.bin"
    ))
    .unwrap();
    assert_eq!(LogReader::new(&stored[..]).unwrap().version(), (1, 2));
    let (got, end) = read_all(&stored);
    assert_eq!(got, recs);
    assert_eq!(end.unwrap(), Some(stats(n_events(&recs))));

    // 1.1 wrote labels inline with each event: the same records.
    let stored = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample-v1.1.bin"
    ))
    .unwrap();
    assert_eq!(LogReader::new(&stored[..]).unwrap().version(), (1, 1));
    let (got, end) = read_all(&stored);
    assert_eq!(got, recs);
    assert_eq!(end.unwrap(), Some(stats(n_events(&recs))));

    // 1.0 had no event data: the same records without it.
    let v10: Vec<Record> = recs
        .iter()
        .cloned()
        .map(|mut r| {
            if let Record::Event(e) = &mut r {
                e.data = None;
            }
            r
        })
        .collect();
    let stored = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample-v1.0.bin"
    ))
    .unwrap();
    assert_eq!(LogReader::new(&stored[..]).unwrap().version(), (1, 0));
    let (got, end) = read_all(&stored);
    assert_eq!(got, v10);
    assert_eq!(end.unwrap(), Some(stats(n_events(&v10))));
}

fn mysql_label(text: &str) -> std::sync::Arc<Label> {
    std::sync::Arc::new(Label {
        protocol: "mysql".into(),
        name: "SELECT".into(),
        attrs: vec![("db.query.text".into(), text.into())],
        reply: false,
    })
}

#[test]
fn shared_labels_are_written_once_and_read_back_shared() {
    // Three readings, each shared by many events (the labeler hands out one
    // Arc per reading): each label is written once, events name it by id,
    // and the reader hands back one Arc per label too.
    let texts = [
        "SELECT a FROM t WHERE b = ? AND c = ? ORDER BY d LIMIT ?",
        "SELECT x, y, z FROM u JOIN v ON u.k = v.k WHERE v.w IN (?)",
        "UPDATE t SET a = ? WHERE b = ?",
    ];
    let labels: Vec<_> = texts.iter().map(|t| mysql_label(t)).collect();
    let mut recs = Vec::new();
    for i in 0..3000u64 {
        let mut e = ev(i * 10, 101, 0x1f, Op::Send, 80, (i * 80) as u32);
        e.data = Some(Box::new(Data::Label(labels[(i % 3) as usize].clone())));
        recs.push(Record::Event(e));
    }
    let bytes = encode_with(&recs, WriterOptions::default(), stats(3000));
    let label_bytes: usize = texts.iter().map(|t| t.len()).sum();
    assert!(
        bytes.len() < 3000 * 14 + 2 * label_bytes,
        "{} bytes for 3000 events and 3 labels",
        bytes.len()
    );
    let (got, end) = read_all(&bytes);
    assert!(end.unwrap().is_some());
    assert_eq!(got, recs);
    let arc_of = |r: &Record| match r {
        Record::Event(e) => match e.data.as_deref() {
            Some(Data::Label(l)) => l.clone(),
            _ => panic!("no label"),
        },
        _ => panic!("not an event"),
    };
    assert!(std::sync::Arc::ptr_eq(
        &arc_of(&got[0]),
        &arc_of(&got[2997])
    ));
    assert!(!std::sync::Arc::ptr_eq(&arc_of(&got[0]), &arc_of(&got[1])));
}

#[test]
fn label_table_cap_resets_and_round_trips() {
    // More distinct labels than the table holds, revisited in turn: every
    // reset forgets them, so each is defined again when next used.
    let labels: Vec<_> = (0..10)
        .map(|i| mysql_label(&format!("SELECT {i}")))
        .collect();
    let mut recs = Vec::new();
    for i in 0..200u64 {
        let mut e = ev(i * 10, 101, 0x1f, Op::Send, 8, (i * 8) as u32);
        e.data = Some(Box::new(Data::Label(labels[(i * 7 % 10) as usize].clone())));
        recs.push(Record::Event(e));
    }
    let opts = WriterOptions {
        max_labels: 3,
        block_bytes: 256,
        ..WriterOptions::default()
    };
    let bytes = encode_with(&recs, opts, stats(200));
    let (got, end) = read_all(&bytes);
    assert!(end.unwrap().is_some());
    assert_eq!(got, recs);
}

#[test]
fn label_reference_without_definition_is_malformed() {
    let mut e = ev(10, 5, 77, Op::Send, 1, 1);
    e.data = Some(Box::new(Data::Label(mysql_label("SELECT 1"))));
    let bytes = encode_with(&[Record::Event(e)], WriterOptions::default(), stats(1));
    let (hdr, blocks) = split(&bytes);
    // Payload: Label, ThreadState, Socket, Event, End; drop the Label.
    let p = &blocks[0];
    let mut at = Vec::new();
    let mut i = 0;
    while i < p.len() {
        at.push((p[i], i));
        i += 2 + p[i + 1] as usize; // all lengths here are < 128
    }
    let kinds: Vec<u8> = at.iter().map(|r| r.0).collect();
    assert_eq!(kinds, [kind::LABEL, 3, 2, 1, 6]);
    let payload = p[at[1].1..].to_vec();
    let mut log = hdr.clone();
    log.extend(block(0, &payload));
    let (got, end) = read_all(&log);
    assert!(got.is_empty());
    let err = end.unwrap_err();
    assert!(
        err.to_string()
            .contains("label id 0 has no Label record before it"),
        "{err}"
    );
}

#[test]
fn data_limits_are_checked_on_write_and_read() {
    let mut e = ev(1, 101, 0x1f, Op::Recv, 10, 0);
    e.data = Some(Box::new(Data::Bytes {
        offset: 0,
        bytes: vec![0u8; MAX_DATA_BYTES + 1].into(),
    }));
    let mut w = LogWriter::new(Vec::new(), &header()).unwrap();
    let err = w.write_event(&e).unwrap_err();
    assert!(err.to_string().contains("event data"), "{err}");
    // The stream stays usable: the event was not half-written.
    e.data = None;
    w.write_event(&e).unwrap();
}

#[test]
fn socket_ids_must_be_dense() {
    // A Socket record that names id 5 when no id is defined: rejected
    // without allocating for the id.
    let mut body = vec![5u8, 1, 1, 4, 127, 0, 0, 1, 80, 0, 4, 127, 0, 0, 1, 81, 0];
    let mut payload = vec![kind::SOCKET, body.len() as u8];
    payload.append(&mut body);
    let mut log = encode_header_with_version(&header(), 1, 0).unwrap();
    let at = log.len() + 16 + 2;
    log.extend(block(0, &payload));
    let (got, end) = read_all(&log);
    assert!(got.is_empty());
    let err = end.unwrap_err();
    assert_eq!(err.offset(), at as u64);
    assert!(err.to_string().contains("socket id 5 skips ids"), "{err}");
    // Id 0 is fine.
    payload[2] = 0;
    let mut log = encode_header_with_version(&header(), 1, 0).unwrap();
    log.extend(block(0, &payload));
    let (_, end) = read_all(&log);
    assert_eq!(end.unwrap(), None);
}
