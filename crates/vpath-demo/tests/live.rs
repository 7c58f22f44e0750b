//! The demo end to end: network namespaces, vApp, the eBPF recorder, the
//! analyzer and the scorer. Needs root; skipped (with a reason) only when not
//! root and CI is unset.
//!
//! One test function, so that the "nothing is left" checks (children of this
//! process, BPF fds, namespaces) are not disturbed by a parallel test.

use std::time::Duration;

use vpath_demo::hosts::{list_netns, netns_prefix, own_bpf_fds, own_children};
use vpath_demo::{run, DemoOptions, Model};

fn can_run() -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return false; // this process is the child of the signal test
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("the live demo test needs root (BPF, network namespaces); CI is set, so it may not skip");
    }
    eprintln!("skipping the live demo test: not root (needs BPF and network namespaces)");
    false
}

fn opts(concurrency: usize, models: Vec<Model>, overhead: bool) -> DemoOptions {
    let mut o = DemoOptions::quick(vec![env!("CARGO_BIN_EXE_vapp").to_string()]);
    o.concurrency = concurrency;
    o.models = models;
    o.accuracy_duration = Duration::from_millis(800);
    if !overhead {
        o.overhead = None;
    }
    o.workdir = std::env::temp_dir().join(format!(
        "vpath-demo-test-{}-{concurrency}",
        std::process::id()
    ));
    o
}

fn assert_nothing_left(bpf_before: usize) {
    let left: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&netns_prefix()))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert_eq!(
        own_children(),
        Vec::<u32>::new(),
        "child processes left behind"
    );
    assert_eq!(own_bpf_fds(), bpf_before, "BPF programs or links left open");
}

#[test]
fn demo_is_exact_for_thread_per_request_and_never_wrong_and_cleans_up() {
    if !can_run() {
        return;
    }
    let bpf_before = own_bpf_fds();

    // Concurrency 1: the paper's model must be exact.
    let r1 = run(&opts(1, vec![Model::ThreadPerRequest], false)).expect("demo at concurrency 1");
    println!("{}", r1.render_text());
    let tpr = &r1.accuracy["thread-per-request"].score;
    assert!(tpr.paths > 20, "too few requests: {tpr:?}");
    assert_eq!(tpr.exact, tpr.paths, "{tpr:?}");
    assert_eq!(tpr.wrong, 0, "{tpr:?}");
    assert_nothing_left(bpf_before);

    // Concurrency 8, every model, with the overhead passes.
    let r8 = run(&opts(8, Model::ALL.to_vec(), true)).expect("demo at concurrency 8");
    println!("{}", r8.render_text());
    let tpr = &r8.accuracy["thread-per-request"].score;
    assert!(tpr.paths > 50, "too few requests: {tpr:?}");
    assert_eq!(tpr.exact, tpr.paths, "{tpr:?}");
    for m in Model::ALL {
        let sc = &r8.accuracy[m.name()].score;
        assert_eq!(sc.wrong, 0, "{m}: {sc:?}");
        assert_eq!(sc.false_complete, 0, "{m}: {sc:?}");
        assert_eq!(sc.exact + sc.incomplete, sc.paths, "{m}: {sc:?}");
        assert!(sc.paths > 0, "{m}: no requests");
    }
    // The JSON contract of the report.
    let j = r8.to_json();
    for m in Model::ALL {
        for k in ["paths", "exact", "wrong", "incomplete"] {
            assert!(
                j["accuracy"][m.name()][k].is_u64(),
                "accuracy.{m}.{k} missing"
            );
        }
    }
    for k in [
        "throughput_loss_pct",
        "p50_increase_pct",
        "p99_increase_pct",
    ] {
        assert!(j["overhead"][k].is_f64(), "overhead.{k} missing");
    }
    let o = r8.overhead.as_ref().unwrap();
    assert!(o.untraced.requests > 0 && o.traced.requests > 0);
    assert!(o.events_delivered > 0, "the traced passes recorded nothing");
    let cdf = std::fs::read_to_string(&o.cdf_csv).unwrap();
    assert_eq!(cdf.lines().count(), 201);
    // The CDF as a plot, and the HTML report with every section.
    let svg = std::fs::read_to_string(&o.cdf_svg).unwrap();
    assert_eq!(
        svg.matches("class=\"cdf-line\"").count(),
        2,
        "untraced and traced"
    );
    let report = r8.report.as_ref().expect("the demo writes report.html");
    assert_eq!(j["report"], report.display().to_string());
    let html = std::fs::read_to_string(report).unwrap();
    for id in [
        "topology",
        "paths",
        "latency",
        "accuracy",
        "overhead",
        "health",
        "overhead-cdf",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "report.html lacks #{id}"
        );
    }
    for m in Model::ALL {
        assert!(
            html.contains(&format!("<b>{}</b>", m.name())),
            "accuracy row of {m}"
        );
    }
    assert!(html.contains("These are the paths of the thread-per-request accuracy pass"));
    // The discovered topology has the configured calls.
    for edge in [
        "client -> front",
        "front -> auth",
        "front -> cache",
        "catalog -> storage",
    ] {
        assert!(
            r8.topology.contains_key(edge),
            "{edge} not discovered: {:?}",
            r8.topology
        );
    }
    assert!(!r8.namespaces.is_empty());
    assert_nothing_left(bpf_before);
    let _ = std::fs::remove_dir_all(&r1.workdir);
    let _ = std::fs::remove_dir_all(&r8.workdir);

    signal_teardown();
    assert_nothing_left(bpf_before);
}

const CHILD_ENV: &str = "VPATH_DEMO_SIGNAL_CHILD";

/// Not a test on its own: the body of the child process that
/// `signal_teardown` starts (and kills).
#[test]
fn signal_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut o = opts(1, vec![Model::ThreadPerRequest], false);
    o.accuracy_duration = Duration::from_secs(60);
    o.workdir = dir.into();
    let _ = run(&o);
    panic!("the demo was expected to be killed by SIGTERM");
}

/// SIGTERM in the middle of a run: the hook kills the tiers and the client
/// and deletes the namespaces before the process exits.
fn signal_teardown() {
    let dir = std::env::temp_dir().join(format!("vpath-demo-sig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "signal_child", "--nocapture"])
        .env(CHILD_ENV, &dir)
        .spawn()
        .unwrap();
    let prefix = format!("vpd-{}-", child.id());
    let ready = dir.join("thread-per-request").join("client.err");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the child demo did not start"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child demo exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ours = |needle: &str| -> Vec<u32> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                if String::from_utf8_lossy(&c).contains(needle) {
                    v.push(pid);
                }
            }
        }
        v
    };
    let needle = dir.to_string_lossy().into_owned();
    let before = ours(&needle);
    assert!(
        before.len() >= 6,
        "expected the tiers and the client running: {before:?}"
    );
    assert!(list_netns().iter().any(|n| n.starts_with(&prefix)));
    // SAFETY: kill has no memory preconditions; the child is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(128 + libc::SIGTERM), "{st}");
    let mut left = ours(&needle);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        left = ours(&needle);
    }
    assert!(left.is_empty(), "processes left after SIGTERM: {left:?}");
    let ns: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(ns.is_empty(), "namespaces left after SIGTERM: {ns:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
