//! Errors of the loader and reader. Each says what is missing and what to do.

use std::io;
use std::path::PathBuf;

/// Why recording could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not permitted to load BPF programs (missing {missing}): run as root, or grant CAP_BPF and CAP_PERFMON")]
    NotPermitted { missing: String },
    #[error("BPF is disabled in this kernel ({detail}): it needs CONFIG_BPF_SYSCALL=y")]
    BpfDisabled { detail: String },
    #[error("no kernel BTF at {path}: the kernel needs CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf {
        path: PathBuf,
        #[source]
        source: Option<io::Error>,
    },
    #[error("tracepoint {name} is missing: {hint}")]
    TracepointMissing { name: String, hint: &'static str },
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({source}): run `mount -t tracefs nodev /sys/kernel/tracing`")]
    NoTracefs {
        #[source]
        source: io::Error,
    },
    #[error("ring buffer size {bytes} bytes is invalid: expected a power of two, at least the page size {page} bytes")]
    BadRingSize { bytes: u32, page: u32 },
    #[error("message capture of {bytes} bytes is too large: at most {max} bytes per message")]
    BadContentSize { bytes: u32, max: u32 },
    #[error("bad filter: {what}")]
    BadFilter { what: String },
    #[error("cgroup {path}: {what}")]
    Cgroup {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Option<io::Error>,
    },
    #[error("network namespace {path}: cannot read its inode")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kernel's verifier rejected BPF program {program} ({errno}); the end of its log:\n{log}")]
    Verifier {
        program: String,
        errno: String,
        log: String,
    },
    #[error("loading the BPF object failed at {stage}")]
    Load {
        stage: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("BPF map {map}: {what}")]
    Map { map: &'static str, what: String },
}

impl RecordError {
    pub(crate) fn load(
        stage: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        RecordError::Load {
            stage: stage.into(),
            source: Box::new(e),
        }
    }
}

/// Maps an errno seen while creating maps or loading programs to the
/// specific error the user can act on, if there is one.
pub(crate) fn classify_errno(errno: Option<i32>) -> Option<RecordError> {
    match errno? {
        libc::EPERM | libc::EACCES => Some(RecordError::NotPermitted {
            missing: "permission for bpf() (EPERM)".into(),
        }),
        libc::ENOSYS => Some(RecordError::BpfDisabled {
            detail: "bpf() returned ENOSYS".into(),
        }),
        _ => None,
    }
}

/// The first `io::Error` errno in an error's source chain.
pub(crate) fn errno_in_chain(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

/// Capability bits that loading needs (linux/capability.h).
pub(crate) const CAP_SYS_ADMIN: u32 = 21;
pub(crate) const CAP_PERFMON: u32 = 38;
pub(crate) const CAP_BPF: u32 = 39;

/// Reads `CapEff:` from the text of /proc/self/status.
pub(crate) fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Names the capabilities missing for loading and attaching tracing programs,
/// or `None` when the effective set suffices.
pub(crate) fn missing_caps(cap_eff: u64) -> Option<String> {
    let has = |c: u32| cap_eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    let mut m = Vec::new();
    if !has(CAP_BPF) {
        m.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        m.push("CAP_PERFMON");
    }
    Some(m.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_and_judged() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(root), Some(0x1ff_ffff_ffff));
        assert_eq!(missing_caps(0x1ff_ffff_ffff), None);
        assert_eq!(missing_caps(0), Some("CAP_BPF and CAP_PERFMON".into()));
        assert_eq!(missing_caps(1 << CAP_BPF), Some("CAP_PERFMON".into()));
        assert_eq!(missing_caps((1 << CAP_BPF) | (1 << CAP_PERFMON)), None);
        assert_eq!(missing_caps(1 << CAP_SYS_ADMIN), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff(""), None);
    }

    #[test]
    fn errnos_map_to_actionable_errors() {
        assert!(matches!(
            classify_errno(Some(libc::EPERM)),
            Some(RecordError::NotPermitted { .. })
        ));
        assert!(matches!(
            classify_errno(Some(libc::ENOSYS)),
            Some(RecordError::BpfDisabled { .. })
        ));
        assert!(classify_errno(Some(libc::EINVAL)).is_none());
        assert!(classify_errno(None).is_none());
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let e = Outer(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(errno_in_chain(&e), Some(libc::EPERM));
    }
}
