//! "Hosts" for the demo: one network namespace per tier, joined by veth pairs
//! to a bridge that lives in a namespace of its own, so that nothing touches
//! the machine's own network. Falls back to distinct loopback addresses when
//! namespaces cannot be made (not root).
//!
//! Everything made here is torn down by [`Hosts`]'s `Drop`, and by a
//! SIGINT/SIGTERM/SIGHUP hook that cleans every live [`Hosts`] before the
//! process exits.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

/// How the hosts are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostMode {
    /// A network namespace per host, 10.77.0.0/24 on a bridge.
    Netns,
    /// Distinct loopback addresses (127.77.N.x) in the caller's namespace.
    Loopback,
}

/// What the signal hook must clean up: live children and namespaces.
#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    netns: Vec<String>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// Set by the cleanup thread when a signal arrives, before it kills anything.
static TERMINATING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal's cleanup is under way: it kills the children and
/// deletes the namespaces, then exits the process with 128 + the signal.
pub fn terminating() -> bool {
    TERMINATING.load(Ordering::SeqCst)
}

/// Installs (once per process) a thread that, on SIGINT/SIGTERM/SIGHUP,
/// kills every registered child, deletes every registered namespace, and
/// exits with 128 + the signal number (as the default action would).
fn install_signal_hook() -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("vpd-cleanup".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    TERMINATING.store(true, Ordering::SeqCst);
                    let (pids, netns) = {
                        let mut r = lock();
                        (std::mem::take(&mut r.pids), std::mem::take(&mut r.netns))
                    };
                    for pid in pids {
                        // SAFETY: kill has no memory preconditions.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                    for ns in netns.iter().rev() {
                        let _ = ip(&["netns", "del", ns]);
                    }
                    eprintln!("vpath demo: cleaned up after signal {sig}");
                    std::process::exit(128 + sig);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    r.clone()
        .map_err(|e| anyhow::anyhow!("installing the signal hook: {e}"))
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The namespaces that exist now, by name.
pub fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The prefix of every namespace this process makes: `vpd-<pid>-`.
pub fn netns_prefix() -> String {
    format!("vpd-{}-", std::process::id())
}

/// A set of hosts and the processes running on them.
pub struct Hosts {
    mode: HostMode,
    run: String,
    /// Namespaces made, bridge first.
    netns: Vec<String>,
    addrs: BTreeMap<String, IpAddr>,
    children: Vec<(String, Child)>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("mode", &self.mode)
            .field("run", &self.run)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Hosts {
    /// Makes one host per name. With `prefer_netns` and root, each is a
    /// network namespace; otherwise a loopback address.
    pub fn create(names: &[&str], prefer_netns: bool) -> anyhow::Result<Hosts> {
        install_signal_hook()?;
        static RUN: AtomicU32 = AtomicU32::new(0);
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let run = format!("{}{n}", netns_prefix());
        let mut h = Hosts {
            mode: HostMode::Loopback,
            run,
            netns: Vec::new(),
            addrs: BTreeMap::new(),
            children: Vec::new(),
        };
        if prefer_netns && is_root() {
            match h.make_netns(names) {
                Ok(()) => {
                    h.mode = HostMode::Netns;
                    return Ok(h);
                }
                Err(e) => {
                    eprintln!("vpath demo: network namespaces unavailable ({e:#}); using loopback addresses");
                    h.delete_netns();
                }
            }
        }
        let third = (std::process::id() as u8).wrapping_add(n as u8);
        for (i, name) in names.iter().enumerate() {
            let ip = Ipv4Addr::new(127, 77, third, 2 + i as u8);
            h.addrs.insert(name.to_string(), IpAddr::V4(ip));
        }
        Ok(h)
    }

    fn ns_name(&self, host: &str) -> String {
        format!("{}-{host}", self.run)
    }

    fn add_ns(&mut self, name: &str) -> anyhow::Result<()> {
        // Register before creating, so that a signal in between still cleans.
        lock().netns.push(name.to_string());
        self.netns.push(name.to_string());
        ip(&["netns", "add", name])
    }

    fn make_netns(&mut self, names: &[&str]) -> anyhow::Result<()> {
        if names.len() > 200 {
            bail!("{} hosts asked for, at most 200 supported", names.len());
        }
        let br = self.ns_name("br");
        self.add_ns(&br)?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let ns = self.ns_name(name);
            self.add_ns(&ns)?;
            let port = format!("h{i}");
            let addr = Ipv4Addr::new(10, 77, 0, 2 + i as u8);
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            self.addrs.insert(name.to_string(), IpAddr::V4(addr));
        }
        Ok(())
    }

    fn delete_netns(&mut self) {
        for ns in self.netns.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("vpath demo: cleanup: {e:#}");
            }
            lock().netns.retain(|n| *n != ns);
        }
    }

    pub fn mode(&self) -> HostMode {
        self.mode
    }

    /// The names of the namespaces made (empty in loopback mode).
    pub fn namespaces(&self) -> &[String] {
        &self.netns
    }

    pub fn addr(&self, host: &str) -> Option<IpAddr> {
        self.addrs.get(host).copied()
    }

    /// Starts `cmd` on `host`. stdout goes to `stdout` (a file) or a pipe,
    /// stderr to `stderr`.
    pub fn spawn(
        &mut self,
        host: &str,
        cmd: &[String],
        stdin_pipe: bool,
        stdout: Option<&Path>,
        stderr: &Path,
    ) -> anyhow::Result<u32> {
        if cmd.is_empty() {
            bail!("empty command for host {host}");
        }
        if !self.addrs.contains_key(host) {
            bail!("no host named {host}");
        }
        let mut c = match self.mode {
            HostMode::Netns => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.ns_name(host)]).args(cmd);
                c
            }
            HostMode::Loopback => {
                let mut c = Command::new(&cmd[0]);
                c.args(&cmd[1..]);
                c
            }
        };
        c.stdin(if stdin_pipe {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        match stdout {
            Some(p) => {
                c.stdout(File::create(p).with_context(|| format!("creating {}", p.display()))?)
            }
            None => c.stdout(Stdio::piped()),
        };
        c.stderr(File::create(stderr).with_context(|| format!("creating {}", stderr.display()))?);
        // Hold the registry lock across spawn so the signal hook cannot miss it.
        let mut reg = lock();
        let child = c
            .spawn()
            .with_context(|| format!("starting {} on host {host}", cmd.join(" ")))?;
        let pid = child.id();
        reg.pids.push(pid);
        drop(reg);
        self.children.push((host.to_string(), child));
        Ok(pid)
    }

    pub fn child_mut(&mut self, pid: u32) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|(_, c)| c.id() == pid)
            .map(|(_, c)| c)
    }

    /// Removes a child that has exited (after `wait`) from the bookkeeping.
    pub fn forget(&mut self, pid: u32) {
        self.children.retain(|(_, c)| c.id() != pid);
        lock().pids.retain(|p| *p != pid);
    }

    /// Sends SIGTERM to the given children (all when `None`), waits up to
    /// `grace` for them, then SIGKILLs the rest. Returns the ones that had to
    /// be killed.
    pub fn stop(&mut self, which: Option<&[u32]>, grace: Duration) -> Vec<u32> {
        let selected: Vec<u32> = self
            .children
            .iter()
            .map(|(_, c)| c.id())
            .filter(|p| which.is_none_or(|w| w.contains(p)))
            .collect();
        for &pid in &selected {
            // SAFETY: kill has no memory preconditions; pid is our child,
            // not yet reaped, so it cannot have been reused.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        let mut killed = Vec::new();
        for &pid in &selected {
            let Some(c) = self.child_mut(pid) else {
                continue;
            };
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        killed.push(pid);
                        break;
                    }
                }
            }
            self.forget(pid);
        }
        killed
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.stop(None, Duration::from_secs(2));
        self.delete_netns();
    }
}

/// Processes whose parent is this process.
pub fn own_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(d) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in d.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The comm field may hold spaces and parentheses: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// BPF programs and links held open by this process (from /proc/self/fd).
pub fn own_bpf_fds() -> usize {
    let Ok(d) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    d.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| {
            let t = t.to_string_lossy();
            t.contains("bpf-prog") || t.contains("bpf_link") || t.contains("bpf-link")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_get_distinct_addresses_and_run_commands() {
        let mut h = Hosts::create(&["a", "b"], false).unwrap();
        assert_eq!(h.mode(), HostMode::Loopback);
        let (a, b) = (h.addr("a").unwrap(), h.addr("b").unwrap());
        assert_ne!(a, b);
        assert!(a.is_loopback());
        let dir = std::env::temp_dir().join(format!("vpd-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cmd = vec!["sleep".to_string(), "30".to_string()];
        let pid = h
            .spawn("a", &cmd, false, Some(&dir.join("o")), &dir.join("e"))
            .unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert!(h.spawn("zzz", &cmd, false, None, &dir.join("e")).is_err());
        drop(h);
        assert!(!own_children().contains(&pid));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
