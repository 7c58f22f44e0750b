//! Helpers shared by the integration tests that drive the `vpath` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vpath_core::Path as VPath;

extern "C" {
    fn geteuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
}

const SIGTERM: i32 = 15;

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_vpath")
}

pub fn vpath() -> Command {
    Command::new(exe())
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("vpath runs")
}

/// A scratch directory, removed when the test passes and kept (for the
/// logs and truth files) when it fails.
pub struct TmpDir(pub PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tmpdir(name: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("vpath-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

/// True when this test may use BPF and namespaces; prints why not otherwise,
/// and panics in CI.
pub fn need_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: CI is set but this is not root: the eBPF tests must run in CI");
    }
    eprintln!(
        "SKIPPED {test}: needs root (CAP_BPF + CAP_PERFMON to load eBPF programs, CAP_SYS_ADMIN \
         for network namespaces); run the tests as root"
    );
    false
}

/// A port free on the host's loopback now; random, so that concurrent runs
/// (and their `--port` filters) do not collide.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes started by a test: SIGTERM (so vApp tiers flush their truth),
/// then SIGKILL after a grace period; on drop too, so a failing test leaves
/// nothing behind.
pub struct Procs(pub Vec<Child>);

impl Procs {
    pub fn stop(&mut self) {
        for c in &self.0 {
            // SAFETY: kill has no memory preconditions; the child is not yet
            // reaped, so its pid cannot have been reused.
            unsafe { kill(c.id() as i32, SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.0 {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The arguments of a vApp tier (after the vpath executable).
pub fn tier_args(dir: &Path, name: &str, listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "__vapp".into(),
        "tier".into(),
        "--name".into(),
        name.into(),
        "--listen".into(),
        listen.to_string(),
        "--model".into(),
        "thread-per-request".into(),
        "--truth".into(),
        dir.join(format!("{name}.truth.jsonl"))
            .display()
            .to_string(),
        "--ready".into(),
        dir.join(format!("{name}.ready")).display().to_string(),
    ];
    v.extend(extra.iter().cloned());
    v
}

/// A two-tier vApp on loopback: `front` calls `back` once per request.
/// Returns the processes and the two ports.
pub fn two_tiers_on_loopback(dir: &Path) -> (Procs, u16, u16) {
    let (front, back) = loop {
        let (f, b) = (free_port(), free_port());
        if f != b {
            break (f, b);
        }
    };
    let spawn = |args: Vec<String>| -> Child {
        vpath()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tier starts")
    };
    let mut p = Procs(Vec::new());
    let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
    p.0.push(spawn(tier_args(dir, "back", lo(back), &[])));
    p.0.push(spawn(tier_args(
        dir,
        "front",
        lo(front),
        &[
            "--upstream".into(),
            format!("back=127.0.0.1:{back}"),
            "--call".into(),
            "back:100:1".into(),
        ],
    )));
    wait_for(&dir.join("back.ready"));
    wait_for(&dir.join("front.ready"));
    (p, front, back)
}

pub fn parse_paths(stdout: &[u8]) -> Vec<VPath> {
    text(stdout)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {}: {e}: {l}", i + 1))
        })
        .collect()
}

pub fn read_truth(dir: &Path, names: &[&str]) -> Vec<vpath_demo::TruthRecord> {
    let mut truth = Vec::new();
    for n in names {
        let f = dir.join(format!("{n}.truth.jsonl"));
        truth.extend(vpath_demo::read_truth_file(&f).unwrap_or_else(|e| panic!("{e}")));
    }
    truth
}

/// A real-application stack under `stacks/` (issue 5), as its CI test sees it.
pub struct Stack {
    /// The folder under `stacks/`.
    pub name: &'static str,
    /// The environment variable that moves its folder, and the default.
    pub dir_env: &'static str,
    pub default_dir: &'static str,
    /// How many tiers `stack.sh status` reports running when it is up.
    pub tiers: usize,
    /// A file (relative to its folder) that exists once it is seeded.
    pub seeded: &'static str,
    /// Ports `vpath record` is limited to (the machine may carry other
    /// traffic on loopback).
    pub ports: &'static [&'static str],
}

impl Stack {
    pub fn dir(&self) -> PathBuf {
        std::env::var_os(self.dir_env)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(self.default_dir))
    }

    pub fn scripts(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../stacks")
            .join(self.name)
    }

    fn ready(&self) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(self.scripts().join("stack.sh"))
            .arg("status")
            .output()
            .map_err(|e| format!("running stack.sh status: {e}"))?;
        let status = text(&out.stdout);
        let running = status.lines().filter(|l| l.contains(" running ")).count();
        if running != self.tiers {
            return Err(format!("the stack is not running:\n{status}"));
        }
        if !self.dir().join(self.seeded).exists() {
            return Err("the stack is not seeded (stack.sh pages)".into());
        }
        Ok(())
    }

    /// True when the test can run: root, and the stack up. Outside CI it
    /// prints why not; in CI a missing stack is a failure (`.ci/run` sets
    /// the stacks up).
    pub fn available(&self, test: &str) -> bool {
        if !need_root(test) {
            return false;
        }
        match self.ready() {
            Ok(()) => true,
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!(
                    "{test}: CI must set up stacks/{} (.ci/run): {why}",
                    self.name
                )
            }
            Err(why) => {
                eprintln!(
                    "SKIPPED {test}: {why}; run stacks/{}/stack.sh install start pages",
                    self.name
                );
                false
            }
        }
    }

    /// Records `stack.sh load n c` with payload capture and analyzes it;
    /// returns the JSONL paths file (in `dir`).
    pub fn record_load(&self, dir: &Path, n: u32, c: u32) -> PathBuf {
        let log = dir.join("run.vpl");
        let paths = dir.join("paths.jsonl");
        let mut rec = Command::new(exe());
        rec.args(["record", "--payload-bytes", "4096"]);
        for port in self.ports {
            rec.args(["--port", port]);
        }
        rec.arg("-o").arg(&log).arg("--").arg("bash");
        rec.arg(self.scripts().join("stack.sh"));
        rec.args(["load", &n.to_string(), &c.to_string()]);
        let out = run(&mut rec);
        let err = text(&out.stderr);
        assert!(err.contains("0 lost in the kernel"), "{err}");
        let out = run(Command::new(exe())
            .arg("analyze")
            .arg(&log)
            .args(["--format", "jsonl", "-o"])
            .arg(&paths));
        eprintln!("{}", text(&out.stderr));
        paths
    }
}
