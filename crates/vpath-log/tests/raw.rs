//! Raw logs (format 1.3): a recorder's kernel records, kept as they were
//! read, with the labels the recorder made.

use std::sync::Arc;

use vpath_core::{Checkpoint, Label, Record};
use vpath_log::*;

fn header(raw: bool) -> Header {
    Header {
        host: "h".into(),
        wall_minus_mono_ns: 5,
        clock: Clock::Monotonic,
        flags: header_flags::CHECKPOINTED | if raw { header_flags::RAW } else { 0 },
        recorder: "raw-tests".into(),
        start_unix_ns: 7,
        raw_layout: if raw {
            "test layout 1".into()
        } else {
            String::new()
        },
    }
}

fn label(name: &str) -> Arc<Label> {
    Arc::new(Label {
        protocol: "http".into(),
        name: name.into(),
        attrs: vec![("k".into(), name.to_uppercase())],
        reply: false,
    })
}

/// What a reader hands out, owned.
#[derive(Debug, PartialEq)]
enum Got {
    Raw(u32, Vec<u8>, Option<Label>),
    Rec(Record),
}

fn read_items(bytes: &[u8]) -> (Vec<Got>, Result<Option<EndStats>, LogError>) {
    let mut r = LogReader::new(bytes).unwrap();
    let mut out = Vec::new();
    loop {
        match r.next_item() {
            Ok(Some(Item::Raw(x))) => out.push(Got::Raw(
                x.stream,
                x.bytes.to_vec(),
                x.label.as_deref().cloned(),
            )),
            Ok(Some(Item::Record(rec))) => out.push(Got::Rec(rec)),
            Ok(None) => return (out, Ok(r.end())),
            Err(e) => return (out, Err(e)),
        }
    }
}

#[test]
fn raw_records_round_trip_with_their_labels_across_label_resets() {
    let labels: Vec<Arc<Label>> = (0..5).map(|i| label(&format!("l{i}"))).collect();
    let opts = WriterOptions {
        block_bytes: 100,
        max_labels: 2,
        ..WriterOptions::default()
    };
    let mut w = LogWriter::with_options(Vec::new(), &header(true), opts).unwrap();
    let mut want = Vec::new();
    for i in 0..60u32 {
        let bytes: Vec<u8> = (0..(i % 7) * 20 + 1)
            .map(|b| (b as u8) ^ (i as u8))
            .collect();
        let l = (i % 3 == 0).then(|| &labels[(i as usize / 3) % labels.len()]);
        w.write_raw(i % 4, &bytes, l).unwrap();
        want.push(Got::Raw(i % 4, bytes, l.map(|l| (**l).clone())));
        if i % 10 == 9 {
            let cp = Checkpoint {
                ts_ns: u64::from(i) * 1000,
                lost_total: u64::from(i / 10),
            };
            w.write_checkpoint(&cp).unwrap();
            want.push(Got::Rec(Record::Checkpoint(cp)));
        }
    }
    let end = EndStats {
        events_emitted: 61,
        events_written: w.events_written(),
        events_lost: 1,
    };
    assert_eq!(end.events_written, 60);
    let bytes = w.finish(end).unwrap();
    let r = LogReader::new(&bytes[..]).unwrap();
    assert!(r.header().is_raw());
    assert_eq!(r.header().raw_layout, "test layout 1");
    assert_eq!(r.version(), (1, 3));
    let (got, fin) = read_items(&bytes);
    assert_eq!(got, want);
    assert_eq!(fin.unwrap(), Some(end));
}

#[test]
fn the_same_label_is_written_once_and_read_back_shared() {
    let l = label("shared");
    let mut w = LogWriter::new(Vec::new(), &header(true)).unwrap();
    for i in 0..10u8 {
        w.write_raw(0, &[i; 40], Some(&l)).unwrap();
    }
    let bytes = w.finish(EndStats::default()).unwrap();
    let once = bytes.windows(6).filter(|x| x == b"shared").count();
    assert_eq!(once, 1, "the label's text is in the log once");
    let mut r = LogReader::new(&bytes[..]).unwrap();
    let mut seen: Vec<Arc<Label>> = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        let Item::Raw(x) = item else {
            panic!("only raw records were written")
        };
        seen.push(x.label.unwrap());
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().all(|x| Arc::ptr_eq(x, &seen[0])));
}

#[test]
fn headers_must_pair_the_raw_flag_with_a_layout() {
    let mut h = header(true);
    h.raw_layout.clear();
    let e = LogWriter::new(Vec::new(), &h).err().unwrap();
    assert!(matches!(e, WriteError::RawWithoutLayout), "{e}");
    let mut h = header(false);
    h.raw_layout = "x".into();
    let e = LogWriter::new(Vec::new(), &h).err().unwrap();
    assert!(e.to_string().contains("does not set the RAW flag"), "{e}");
}

#[test]
fn raw_and_event_records_do_not_mix() {
    let mut w = LogWriter::new(Vec::new(), &header(false)).unwrap();
    let e = w.write_raw(0, &[1, 2, 3], None).unwrap_err();
    assert!(
        e.to_string()
            .contains("a Raw record cannot go into a event log"),
        "{e}"
    );
    let mut w = LogWriter::new(Vec::new(), &header(true)).unwrap();
    let ev = vpath_core::Event {
        ts_ns: 1,
        netns: 0,
        cgroup: 0,
        pid: 1,
        tid: 1,
        sock: 1,
        op: vpath_core::Op::Send,
        syscall: vpath_core::Syscall::Write,
        flags: 0,
        ret: 1,
        seq: 0,
        local: "127.0.0.1:1".parse().unwrap(),
        remote: "127.0.0.1:2".parse().unwrap(),
        data: None,
    };
    let e = w.write_event(&ev).unwrap_err();
    assert!(
        e.to_string().contains("an Event cannot go into a raw log"),
        "{e}"
    );
    let t = Record::Thread(vpath_core::ThreadInfo {
        pid: 1,
        tid: 2,
        comm: "x".into(),
    });
    let e = w.write(&t).unwrap_err();
    assert!(
        e.to_string()
            .contains("a Thread record cannot go into a raw log"),
        "{e}"
    );
    // Refused records leave the log readable to its end.
    w.write_raw(0, &[1, 2], None).unwrap();
    let bytes = w.finish(EndStats::default()).unwrap();
    let (got, fin) = read_items(&bytes);
    assert_eq!(got, [Got::Raw(0, vec![1, 2], None)]);
    assert!(fin.unwrap().is_some());
}

#[test]
fn reading_a_raw_log_as_events_names_the_record() {
    let mut w = LogWriter::new(Vec::new(), &header(true)).unwrap();
    w.write_raw(3, &[9; 12], None).unwrap();
    let bytes = w.finish(EndStats::default()).unwrap();
    let mut r = LogReader::new(&bytes[..]).unwrap();
    let e = r.next_record().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("raw capture (test layout 1)"), "{msg}");
    assert!(
        e.offset() > 0 && (e.offset() as usize) < bytes.len(),
        "{msg}"
    );
    assert!(
        r.next_record().unwrap().is_none(),
        "the reader stops after an error"
    );
}

/// The blocks of `log` behind the header of `h`.
fn reheader(log: &[u8], from: &Header, h: &Header) -> Vec<u8> {
    let old = encode_header_with_version(from, VERSION_MAJOR, VERSION_MINOR).unwrap();
    assert!(log.starts_with(&old));
    let mut out = encode_header_with_version(h, VERSION_MAJOR, VERSION_MINOR).unwrap();
    out.extend_from_slice(&log[old.len()..]);
    out
}

#[test]
fn a_raw_record_in_an_event_log_and_an_event_in_a_raw_log_are_malformed() {
    let mut w = LogWriter::new(Vec::new(), &header(true)).unwrap();
    w.write_raw(0, &[1; 8], None).unwrap();
    let raw = w.finish(EndStats::default()).unwrap();
    let as_events = reheader(&raw, &header(true), &header(false));
    let (got, r) = read_items(&as_events);
    assert!(got.is_empty());
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("Raw record in a log without the RAW flag"),
        "{e}"
    );

    let mut w = LogWriter::new(Vec::new(), &header(false)).unwrap();
    w.write(&Record::Thread(vpath_core::ThreadInfo {
        pid: 1,
        tid: 2,
        comm: "x".into(),
    }))
    .unwrap();
    let events = w.finish(EndStats::default()).unwrap();
    let as_raw = reheader(&events, &header(false), &header(true));
    let (_, r) = read_items(&as_raw);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("Thread record in a raw log"), "{e}");
}

#[test]
fn a_raw_record_naming_an_undefined_label_is_malformed() {
    // A raw record that names label 5 in a log that defined none: the
    // writer never does this, so build it from one that named label 0 and
    // patch the id (the checksums are recomputed by re-writing the block).
    let l = label("a");
    let mut w = LogWriter::new(Vec::new(), &header(true)).unwrap();
    w.write_raw(0, &[7; 4], Some(&l)).unwrap();
    let good = w.finish(EndStats::default()).unwrap();
    let (got, r) = read_items(&good);
    assert_eq!(got.len(), 1);
    r.unwrap();
    // Find the Raw record: kind 8, length 6, tag 1 (stream 0, labelled), id 0.
    let at = good
        .windows(4)
        .position(|x| x == [kind::RAW, 6, 1, 0])
        .expect("the raw record");
    let hdr_len = encode_header_with_version(&header(true), VERSION_MAJOR, VERSION_MINOR)
        .unwrap()
        .len();
    let mut payload = good[hdr_len + BLOCK_HEADER_LEN..].to_vec();
    let rel = at - hdr_len - BLOCK_HEADER_LEN;
    payload[rel + 3] = 5;
    let mut bad = good[..hdr_len].to_vec();
    let mut bh = [0u8; BLOCK_HEADER_LEN];
    bh[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bh[8..12].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let hc = crc32fast::hash(&bh[..12]);
    bh[12..16].copy_from_slice(&hc.to_le_bytes());
    bad.extend_from_slice(&bh);
    bad.extend_from_slice(&payload);
    let (got, r) = read_items(&bad);
    assert!(got.is_empty());
    let e = r.unwrap_err();
    assert!(e.to_string().contains("label 5 is not defined"), "{e}");
    assert_eq!(e.offset() as usize, at + 3, "{e}");
}

#[test]
fn dump_shows_raw_records_and_the_layout() {
    let l = label("dumped");
    let mut w = LogWriter::new(Vec::new(), &header(true)).unwrap();
    w.write_raw(1, &[0xab; 20], Some(&l)).unwrap();
    let bytes = w.finish(EndStats::default()).unwrap();
    let mut out = Vec::new();
    dump(&mut LogReader::new(&bytes[..]).unwrap(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("# flags: checkpointed,raw"), "{text}");
    assert!(text.contains("# raw layout: test layout 1"), "{text}");
    assert!(text.contains("raw stream=1 len=20 bytes=[ab, ab"), "{text}");
    assert!(text.contains("request=http:\"dumped\""), "{text}");
}
