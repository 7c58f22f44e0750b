//! What to record: filters checked in the kernel, before an event is built.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::RecordError;

/// Kernel-side filters. Empty fields mean "everything". All given filters
/// must match. The recorder's own process is always excluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only these processes (host tgids).
    pub pids: Vec<u32>,
    /// Only threads in this cgroup v2 or below it.
    pub cgroup: Option<CgroupFilter>,
    /// Only sockets in this network namespace (inode number).
    pub netns: Option<u32>,
    /// Only sockets whose local or remote port is one of these.
    pub ports: Vec<u16>,
}

/// Pid, port and filter-map capacities (the maps' max_entries).
pub const MAX_PIDS: usize = 4096;
pub const MAX_PORTS: usize = 1024;

impl Filters {
    pub(crate) fn validate(&self) -> Result<(), RecordError> {
        if self.pids.len() > MAX_PIDS {
            return Err(RecordError::BadFilter {
                what: format!(
                    "{} pids given, at most {MAX_PIDS} supported",
                    self.pids.len()
                ),
            });
        }
        if self.ports.len() > MAX_PORTS {
            return Err(RecordError::BadFilter {
                what: format!(
                    "{} ports given, at most {MAX_PORTS} supported",
                    self.ports.len()
                ),
            });
        }
        if self.netns == Some(0) {
            return Err(RecordError::BadFilter {
                what: "netns inode 0 is not a namespace".into(),
            });
        }
        if let Some(c) = &self.cgroup {
            if c.id == 0 {
                return Err(RecordError::BadFilter {
                    what: "cgroup id 0 is not a cgroup".into(),
                });
            }
        }
        Ok(())
    }
}

/// A cgroup v2 by id, and its depth below the root (root = 0), which the
/// kernel side needs to compare the acting thread's ancestor at that depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupFilter {
    pub id: u64,
    pub level: u32,
}

/// Where the cgroup v2 hierarchy is normally mounted.
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup";

impl CgroupFilter {
    /// The cgroup at `path`: either absolute (under the cgroup2 mount at
    /// [`CGROUP2_ROOT`]) or relative to that mount, e.g.
    /// `system.slice/nginx.service`. Its id is the directory's inode.
    pub fn from_path(path: &Path) -> Result<CgroupFilter, RecordError> {
        Self::from_path_under(Path::new(CGROUP2_ROOT), path)
    }

    /// As [`CgroupFilter::from_path`] with another cgroup2 mount point.
    pub fn from_path_under(root: &Path, path: &Path) -> Result<CgroupFilter, RecordError> {
        let full: PathBuf = if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        };
        let err = |what, source| RecordError::Cgroup {
            path: full.clone(),
            what,
            source,
        };
        let canon = full
            .canonicalize()
            .map_err(|e| err("does not exist", Some(e)))?;
        let root = root
            .canonicalize()
            .map_err(|e| err("the cgroup2 mount point does not exist", Some(e)))?;
        let rel = canon
            .strip_prefix(&root)
            .map_err(|_| err("is not under the cgroup2 mount point", None))?;
        let meta = std::fs::metadata(&canon).map_err(|e| err("cannot be read", Some(e)))?;
        if !meta.is_dir() {
            return Err(err("is not a cgroup directory", None));
        }
        Ok(CgroupFilter {
            id: meta.ino(),
            level: cgroup_level(rel),
        })
    }
}

/// Depth of a path relative to the cgroup root: "" -> 0, "a/b" -> 2.
pub(crate) fn cgroup_level(rel: &Path) -> u32 {
    rel.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count() as u32
}

/// The inode of a network namespace file, e.g. `/proc/PID/ns/net` or
/// `/run/netns/NAME`: the number the kernel side compares.
pub fn netns_inode(path: &Path) -> Result<u32, RecordError> {
    let meta = std::fs::metadata(path).map_err(|source| RecordError::Netns {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(meta.ino() as u32)
}

/// The network namespace inode of a process.
pub fn netns_of_pid(pid: u32) -> Result<u32, RecordError> {
    netns_inode(&PathBuf::from(format!("/proc/{pid}/ns/net")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_levels_count_components() {
        assert_eq!(cgroup_level(Path::new("")), 0);
        assert_eq!(cgroup_level(Path::new("a")), 1);
        assert_eq!(cgroup_level(Path::new("a/b/c")), 3);
    }

    #[test]
    fn cgroup_from_path_uses_inode_and_depth() {
        // A plain directory tree stands in for the cgroup2 mount.
        let root = std::env::temp_dir().join(format!("vpath-cg-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let f = CgroupFilter::from_path_under(&root, Path::new("a/b")).unwrap();
        assert_eq!(f.level, 2);
        assert_eq!(f.id, std::fs::metadata(root.join("a/b")).unwrap().ino());
        let abs = CgroupFilter::from_path_under(&root, &root.join("a")).unwrap();
        assert_eq!(abs.level, 1);
        let missing = CgroupFilter::from_path_under(&root, Path::new("nope"));
        assert!(matches!(
            missing,
            Err(RecordError::Cgroup {
                what: "does not exist",
                ..
            })
        ));
        let outside = CgroupFilter::from_path_under(&root.join("a"), &root);
        assert!(matches!(outside, Err(RecordError::Cgroup { .. })));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn filters_validate_limits() {
        assert!(Filters::default().validate().is_ok());
        let many = Filters {
            ports: vec![1; MAX_PORTS + 1],
            ..Default::default()
        };
        assert!(matches!(
            many.validate(),
            Err(RecordError::BadFilter { .. })
        ));
        let zero_ns = Filters {
            netns: Some(0),
            ..Default::default()
        };
        assert!(zero_ns.validate().is_err());
    }

    #[test]
    fn own_netns_inode_is_readable() {
        let me = netns_of_pid(std::process::id()).unwrap();
        assert_ne!(me, 0);
        assert!(matches!(
            netns_inode(Path::new("/nonexistent/ns")),
            Err(RecordError::Netns { .. })
        ));
    }
}
