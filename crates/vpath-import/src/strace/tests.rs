use super::*;
use crate::text::fmt_record;

fn import(text: &str) -> (Vec<String>, Vec<String>, usize) {
    let mut imp = StraceImporter::new(text.as_bytes());
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    for r in imp.by_ref() {
        match r {
            Ok(r) => ok.push(fmt_record(&r)),
            Err(e) => err.push(e.to_string()),
        }
    }
    (ok, err, imp.skipped())
}

fn ok(text: &str) -> Vec<String> {
    let (out, err, _) = import(text);
    assert!(err.is_empty(), "{err:#?}");
    out
}

const SERVER: &str = r#"100   1.000000 execve("/usr/sbin/some-long-server-name", ["x"], 0x1 /* 3 vars */) = 0
100   1.100000 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3<TCP:[11]>
100   1.200000 listen(3<TCP:[10.0.0.1:80]>, 128) = 0
100   1.300000 accept4(3<TCP:[10.0.0.1:80]>, {sa_family=AF_INET, sin_port=htons(5000), sin_addr=inet_addr("10.0.0.2")}, [128 => 16], SOCK_CLOEXEC) = 4<TCP:[10.0.0.1:80->10.0.0.2:5000]>
100   1.400000 read(4<TCP:[10.0.0.1:80->10.0.0.2:5000]>,  <unfinished ...>
100   1.500000 <... read resumed>"GET /", 1024) = 5
100   1.600000 recvfrom(4<TCP:[10.0.0.1:80->10.0.0.2:5000]>, "x", 1, MSG_PEEK|MSG_DONTWAIT, NULL, NULL) = 1
100   1.700000 recvfrom(4<TCP:[10.0.0.1:80->10.0.0.2:5000]>, 0x7ff, 1, MSG_DONTWAIT, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
100   1.800000 writev(4<TCP:[10.0.0.1:80->10.0.0.2:5000]>, [{iov_base="OK", iov_len=2}], 1) = 2
100   1.900000 read(5</etc/passwd>, "root", 4) = 4
100   2.000000 close(4<TCP:[10.0.0.1:80->10.0.0.2:5000]>) = 0
100   2.100000 close(3<TCP:[10.0.0.1:80]>) = 0
100   2.200000 +++ exited with 0 +++
"#;

#[test]
fn server_calls_map_to_events() {
    let (out, err, skipped) = import(SERVER);
    assert!(err.is_empty(), "{err:#?}");
    let want = [
        r#"thread pid=100 tid=100 comm="some-long-serve""#,
        "event ts=1300000000 netns=0 cgroup=0 pid=100 tid=100 sock=2 op=accept syscall=accept4 flags=- ret=4 seq=0 local=10.0.0.1:80 remote=10.0.0.2:5000",
        "event ts=1500000000 netns=0 cgroup=0 pid=100 tid=100 sock=2 op=recv syscall=read flags=- ret=5 seq=0 local=10.0.0.1:80 remote=10.0.0.2:5000",
        "event ts=1600000000 netns=0 cgroup=0 pid=100 tid=100 sock=2 op=recv syscall=recvfrom flags=peek ret=1 seq=0 local=10.0.0.1:80 remote=10.0.0.2:5000",
        "event ts=1700000000 netns=0 cgroup=0 pid=100 tid=100 sock=2 op=recv syscall=recvfrom flags=- ret=-11 seq=0 local=10.0.0.1:80 remote=10.0.0.2:5000",
        "event ts=1800000000 netns=0 cgroup=0 pid=100 tid=100 sock=2 op=send syscall=writev flags=- ret=2 seq=0 local=10.0.0.1:80 remote=10.0.0.2:5000",
        "event ts=2000000000 netns=0 cgroup=0 pid=100 tid=100 sock=2 op=close syscall=close flags=- ret=0 seq=0 local=10.0.0.1:80 remote=10.0.0.2:5000",
    ];
    assert_eq!(out, want);
    // execve, socket, listen, the file read, the listener's close, exit.
    assert_eq!(skipped, 6);
}

#[test]
fn connect_waits_for_its_local_address() {
    let out = ok(
        r#"7 5.000000 socket(AF_INET6, SOCK_STREAM, IPPROTO_IP) = 3<TCPv6:[9]>
7 5.100000 connect(3<TCPv6:[9]>, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 EINPROGRESS (Operation now in progress)
8 5.150000 write(4<TCP:[10.0.0.1:1->10.0.0.2:2]>, "x", 1) = 1
7 5.200000 poll([{fd=3<TCPv6:[[::1]:4000->[::1]:80]>, events=POLLOUT}], 1, 100) = 1 ([{fd=3, revents=POLLOUT}])
7 5.300000 sendto(3<TCPv6:[[::1]:4000->[::1]:80]>, "hi", 2, MSG_NOSIGNAL, NULL, 0) = 2
"#,
    );
    assert_eq!(out.len(), 5, "{out:#?}");
    assert!(out[0].starts_with(r#"thread pid=7 tid=7 comm="pid 7""#));
    assert!(out[1].starts_with(r#"thread pid=8 tid=8 comm="pid 8""#));
    assert!(
        out[3].contains("ts=5100000000") && out[3].contains("op=connect"),
        "{out:#?}"
    );
    assert!(
        out[3].contains("ret=-115 seq=0 local=[::1]:4000 remote=[::1]:80"),
        "{out:#?}"
    );
    assert!(out[4].contains("sock=1 op=send"));
}

#[test]
fn threads_join_their_process_even_before_clone_returns() {
    let out = ok(
        r#"10 1.0 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x1}, 88 <unfinished ...>
11 1.1 prctl(PR_SET_NAME, "worker") = 0
11 1.2 read(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, "a", 1) = 1
10 1.3 <... clone3 resumed> => {parent_tid=[11]}, 88) = 11
10 1.4 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 12
12 1.5 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, "b", 1) = 1
10 1.6 fork() = 13
13 1.7 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, "c", 1) = 1
10 1.8 clone(child_stack=NULL, flags=CLONE_VM|CLONE_THREAD|CLONE_SIGHAND, child_tidptr=0x1) = 14
14 1.9 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, "d", 1) = 1
"#,
    );
    let threads: Vec<&String> = out.iter().filter(|l| l.starts_with("thread")).collect();
    assert_eq!(
        threads,
        [
            r#"thread pid=10 tid=11 comm="worker""#,
            r#"thread pid=12 tid=12 comm="pid 12""#,
            r#"thread pid=13 tid=13 comm="pid 13""#,
            r#"thread pid=10 tid=14 comm="pid 10""#,
        ]
    );
    // Threads share the fd table: one socket; processes have their own.
    let socks: Vec<&str> = out
        .iter()
        .filter_map(|l| l.split(' ').find(|f| f.starts_with("sock=")))
        .collect();
    assert_eq!(socks, ["sock=1", "sock=2", "sock=3", "sock=1"]);
}

#[test]
fn fd_reuse_without_close_is_a_new_socket_and_unix_is_skipped() {
    let (out, err, skipped) = import(
        r#"1 1.0 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, "a", 1) = 1
1 1.1 write(3<TCP:[1.1.1.1:1->2.2.2.2:3]>, "a", 1) = 1
1 1.2 write(3<UNIX-STREAM:[5->6]>, "a", 1) = 1
1 1.3 write(3<TCP:[1.1.1.1:1->2.2.2.2:3]>, "a", 1) = 1
1 1.4 sendto(4<UDP:[1.1.1.1:1->2.2.2.2:53]>, "q", 1, 0, NULL, 0) = 1
"#,
    );
    assert!(err.is_empty());
    let socks: Vec<&str> = out
        .iter()
        .filter_map(|l| l.split(' ').find(|f| f.starts_with("sock=")))
        .collect();
    assert_eq!(socks, ["sock=1", "sock=2", "sock=3"]);
    assert_eq!(skipped, 2);
}

#[test]
fn stderr_form_with_attach_messages() {
    let text = "1.0 execve(\"/bin/cli\", [\"cli\"], 0x1 /* 1 var */) = 0\n\
1.1 clone3({flags=CLONE_VM|CLONE_THREAD, child_tid=0x1}, 88strace: Process 51 attached\n \
<unfinished ...>\n\
[pid    50] 1.2 <... clone3 resumed>) = 51\n\
[pid    51] 1.3 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"a\", 1) = 1\n\
[pid    50] 1.4 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"b\", 1) = 1\n";
    let out = ok(text);
    assert_eq!(
        out.iter()
            .filter(|l| l.starts_with("thread"))
            .collect::<Vec<_>>(),
        [
            r#"thread pid=50 tid=51 comm="cli""#,
            r#"thread pid=50 tid=50 comm="cli""#
        ]
    );
    // With the pid given, unprefixed lines are its own from the start.
    let mut imp =
        StraceImporter::new("1.0 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"a\", 1) = 1\n".as_bytes())
            .with_initial_pid(77);
    let first = imp.next().unwrap().unwrap();
    assert!(matches!(
        first,
        Record::Thread(ThreadInfo {
            pid: 77,
            tid: 77,
            ..
        })
    ));
}

#[test]
fn errors_name_lines_and_reading_goes_on() {
    let (out, err, _) = import(
        "1 1.0 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"a\", 1) = 1\n\
         garbage here\n\
         1 1.1 read(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"a\", 1 = 1\n\
         1 1.2 read(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"a\", 1) = -1 EBOGUS (x)\n\
         1 1.3 read(3<TCP:[1.1.1.1:1->2.2.2.2:x]>, \"a\", 1) = 1\n\
         1 1.4 read(3<TCP:[1.1.1.1:1->2.2.2.2:2]>,  <unfinished ...>\n\
         1 1.5 <... write resumed>\"a\", 1) = 1\n\
         1 1.6 write(3<TCP:[1.1.1.1:1->2.2.2.2:2]>, \"a\", 1) = 1\n",
    );
    assert_eq!(out.len(), 3, "{out:#?}"); // thread + 2 writes
    assert_eq!(err.len(), 5, "{err:#?}");
    assert!(
        err[0].starts_with("line 2: byte 0: expected an epoch timestamp"),
        "{err:#?}"
    );
    assert!(
        err[1].starts_with("line 3: ") && err[1].contains("`)` closing"),
        "{err:#?}"
    );
    assert!(
        err[2].starts_with("line 4: ") && err[2].contains("errno"),
        "{err:#?}"
    );
    assert!(
        err[3].starts_with("line 5: ") && err[3].contains("ip:port"),
        "{err:#?}"
    );
    assert_eq!(
        err[4],
        "line 7: thread 1 resumes write but its unfinished call (line 6) is read"
    );
}

#[test]
fn unfinished_calls_at_the_end_are_skipped() {
    let (out, err, skipped) =
        import("1 1.0 read(3<TCP:[1.1.1.1:1->2.2.2.2:2]>,  <unfinished ...>\n");
    assert!(out.is_empty() && err.is_empty());
    assert_eq!(skipped, 1);
}
