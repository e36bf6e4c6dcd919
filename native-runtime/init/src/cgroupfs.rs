//! What the sandbox's `/sys/fs/cgroup` shows on a cgroup v1 (or hybrid) host, matching runc
//! (`mountCgroupV1`) and dockerd's probes: a `mode=755` tmpfs holding one read-only bind per v1
//! hierarchy, each of the process's **own** cgroup in it (so a plugin sees its cgroup as the
//! hierarchy root), named after the host mountpoint (`cpu,cpuacct` gets `cpu` and `cpuacct`
//! symlinks). The unified (cgroup2) hierarchy of a hybrid host is not shown, as in the probes.

use std::path::{Path, PathBuf};

use crate::mountinfo::MountInfo;

/// One hierarchy to bind into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupBind {
    /// Host path of the process's cgroup in this hierarchy.
    pub source: PathBuf,
    /// Directory name under the sandbox's cgroup mount (the host mountpoint's basename).
    pub name: String,
}

impl CgroupBind {
    /// The names that need a symlink to [`Self::name`] (co-mounted controllers).
    pub fn aliases(&self) -> Vec<&str> {
        if !self.name.contains(',') {
            return Vec::new();
        }
        self.name.split(',').filter(|s| !s.is_empty()).collect()
    }
}

/// `(controllers, path)` per v1 line of `/proc/self/cgroup` (`id:cpu,cpuacct:/path`).
fn own_cgroups(proc_cgroup: &str) -> Vec<(Vec<&str>, &str)> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            (!ctrls.is_empty()).then(|| (ctrls.split(',').collect(), path))
        })
        .collect()
}

/// The binds for every v1 hierarchy mounted on the host, in mountinfo order. A hierarchy whose
/// mount root is not an ancestor of the process's cgroup (a foreign view) is skipped.
pub fn v1_binds(mounts: &[MountInfo], proc_cgroup: &str) -> Vec<CgroupBind> {
    let own = own_cgroups(proc_cgroup);
    let mut used = vec![false; own.len()];
    let mut binds = Vec::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        let opts: Vec<&str> = m.superopts.split(',').collect();
        let Some(i) = own
            .iter()
            .position(|(ctrls, _)| ctrls.iter().all(|c| opts.contains(c)))
        else {
            continue;
        };
        if std::mem::replace(&mut used[i], true) {
            continue;
        }
        let Ok(rel) = Path::new(own[i].1).strip_prefix(&m.root) else {
            continue;
        };
        let mountpoint = Path::new(&m.mountpoint);
        let Some(name) = mountpoint.file_name() else {
            continue;
        };
        let source = match rel.as_os_str().is_empty() {
            true => mountpoint.to_path_buf(),
            false => mountpoint.join(rel),
        };
        binds.push(CgroupBind {
            source,
            name: name.to_string_lossy().into_owned(),
        });
    }
    binds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo;

    /// This VM's layout (and the dockerd probes'): separate cpu/cpuacct, memory in a sub-cgroup.
    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "9:name=systemd:/p1\n4:memory:/process_api/x/p1\n1:cpu:/p1\n0::/p1\n";

    #[test]
    fn binds_own_cgroup_of_each_v1_hierarchy() {
        let b = v1_binds(&mountinfo::parse(MOUNTINFO), CGROUP);
        let got: Vec<(String, String)> = b
            .iter()
            .map(|b| (b.source.display().to_string(), b.name.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("/sys/fs/cgroup/cpu/p1".to_string(), "cpu".to_string()),
                (
                    "/sys/fs/cgroup/memory/process_api/x/p1".into(),
                    "memory".into()
                ),
                ("/sys/fs/cgroup/systemd/p1".into(), "systemd".into()),
            ]
        );
    }

    #[test]
    fn comounted_controllers_get_aliases() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let b = v1_binds(&mountinfo::parse(mi), "2:cpu,cpuacct:/\n");
        assert_eq!(b[0].source, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(b[0].aliases(), ["cpu", "cpuacct"]);
    }

    #[test]
    fn foreign_mount_roots_are_skipped() {
        let mi = "32 31 0:29 /other /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert!(v1_binds(&mountinfo::parse(mi), "1:cpu:/p1\n").is_empty());
    }
}
