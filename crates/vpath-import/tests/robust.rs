//! Bad input gives errors that name the line, never panics.

use proptest::prelude::*;
use vpath_import::{ErrorKind, ImportError, Record, SeedImporter, StraceImporter};

fn seed(text: &[u8]) -> Vec<Result<Record, ImportError>> {
    SeedImporter::new(text).collect()
}

fn strace(text: &[u8]) -> Vec<Result<Record, ImportError>> {
    StraceImporter::new(text).collect()
}

#[test]
fn garbage_names_its_line() {
    let text = b"# a comment\n\nthis is not a log line\n";
    for (name, out) in [("seed", seed(text)), ("strace", strace(text))] {
        assert_eq!(out.len(), 1, "{name}");
        let e = out[0].as_ref().unwrap_err();
        assert_eq!(e.line, 3, "{name}: {e}");
        assert!(
            matches!(e.kind, ErrorKind::Expected { column: 0, .. }),
            "{name}: {e}"
        );
        assert!(
            e.to_string().starts_with("line 3: byte 0: expected "),
            "{name}: {e}"
        );
    }
    // Each importer rejects the other's lines.
    let st = b"6381  1795674661.168570 execve(\"/tmp/tiers\", [\"/tmp/tiers\"], 0x7ffd) = 0\n";
    assert!(seed(st)[0].is_err());
    let sd = b"0733 Dom1 002780 cr3:04254000 ebp:bfe37034 eax:3 ebx:12\n";
    assert!(strace(sd)[0].is_err());
    // Binary junk is a UTF-8 error at its line.
    let e = strace(b"\n\xff\xfe\n").remove(0).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(matches!(e.kind, ErrorKind::NotUtf8 { offset: 0 }));
}

/// Lines built from pieces of real syntax, to get deeper than random text.
fn strace_line() -> impl Strategy<Value = String> {
    let pid = prop_oneof![
        Just("".to_string()),
        (1u32..5).prop_map(|p| format!("{p} ")),
        (1u32..5).prop_map(|p| format!("[pid {p}] "))
    ];
    let fd = prop_oneof![
        Just("3<TCP:[1.1.1.1:1->2.2.2.2:2]>".to_string()),
        Just("3<TCPv6:[[::1]:1->[::1]:2]>".to_string()),
        Just("4<TCP:[9]>".to_string()),
        Just("5<TCP:[1.1.1.1:80]>".to_string()),
        Just("3</dev/null<char 1:3>>".to_string()),
        Just("3".to_string()),
        "[0-9<>\\[\\]:.a-f-]{0,12}",
    ];
    let name = prop_oneof![
        Just("read"),
        Just("write"),
        Just("sendto"),
        Just("recvfrom"),
        Just("connect"),
        Just("accept4"),
        Just("close"),
        Just("clone3"),
        Just("execve"),
        Just("prctl"),
        Just("socket"),
    ];
    let arg = prop_oneof![
        Just("\"ab\\\"c\"...".to_string()),
        Just(
            "{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr(\"1.1.1.1\")}".to_string()
        ),
        Just("MSG_PEEK".to_string()),
        Just("{flags=CLONE_VM|CLONE_THREAD}".to_string()),
        Just("PR_SET_NAME".to_string()),
        "[ -~]{0,10}",
    ];
    let ret = prop_oneof![
        Just(") = 1".to_string()),
        Just(") = -1 EAGAIN (x)".to_string()),
        Just(") = 4<TCP:[1.1.1.1:1->2.2.2.2:3]>".to_string()),
        Just(") = ?".to_string()),
        Just(" <unfinished ...>".to_string()),
        "[ -~]{0,8}",
    ];
    let call = (name, fd, prop::collection::vec(arg, 0..3), ret).prop_map(|(n, fd, args, ret)| {
        let mut s = format!("{n}({fd}");
        for a in args {
            s.push_str(", ");
            s.push_str(&a);
        }
        s + &ret
    });
    let body = prop_oneof![
        4 => call,
        1 => Just("+++ exited with 0 +++".to_string()),
        1 => Just("--- SIGCHLD {si_pid=2} ---".to_string()),
        1 => prop_oneof![Just("read"), Just("clone3"), Just("write")].prop_map(|n| format!("<... {n} resumed>\"x\", 1) = 1")),
        1 => Just("strace: Process 3 attached".to_string()),
    ];
    (pid, 0u32..3, body).prop_map(|(p, t, b)| format!("{p}1.{t} {b}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        for r in seed(&bytes).into_iter().chain(strace(&bytes)) {
            if let Err(e) = r {
                prop_assert!(e.line >= 1);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\n]{0,300}") {
        let _ = seed(text.as_bytes());
        let _ = strace(text.as_bytes());
    }

    #[test]
    fn strace_like_lines_never_panic(lines in prop::collection::vec(strace_line(), 0..20)) {
        let text = lines.join("\n");
        let n = lines.len() as u64;
        for r in strace(text.as_bytes()) {
            if let Err(e) = r {
                prop_assert!(e.line >= 1 && e.line <= n.max(1), "{e}");
            }
        }
    }

    #[test]
    fn seed_like_lines_never_panic(lines in prop::collection::vec(
        (0u32..3, 0u32..3, 0u32..200, any::<bool>(), 0u32..20, prop::sample::select(vec![3u32, 4, 6, 102, 145, 146, 5])),
        0..20,
    )) {
        let mut text = String::new();
        for (i, (dom, thread, ts, hyper, sub, eax)) in lines.iter().enumerate() {
            if *hyper {
                let rs = if sub % 2 == 0 { "R" } else { "S" };
                text.push_str(&format!("{i} {rs} Dom{dom} sd:{} L:10.0.0.{dom}:80 R:10.0.0.9:{}\n", sub % 3, 1000 + ts % 3));
            } else {
                text.push_str(&format!("{i} Dom{dom} {ts} cr3:1000 ebp:{thread:x} eax:{eax} ebx:{}\n", sub % 3));
            }
        }
        let n = lines.len() as u64;
        for r in seed(text.as_bytes()) {
            match r {
                Ok(Record::Event(e)) => prop_assert!(e.flags & vpath_core::flags::NO_BYTES != 0),
                Ok(_) => {}
                Err(e) => prop_assert!(e.line >= 1 && e.line <= n, "{e}"),
            }
        }
    }
}
