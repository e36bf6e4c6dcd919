//! Which cgroup hierarchies this host mounts, and where the daemon itself sits in each.
//!
//! The mode comes from `statfs("/sys/fs/cgroup")` (youki's and runc's test): `cgroup2` is unified;
//! `tmpfs` with a `cgroup2` at `/sys/fs/cgroup/unified` is hybrid; `tmpfs` without is legacy v1.
//! The hierarchies and the daemon's own place in them come from `/proc/self/cgroup` matched against
//! the cgroup mounts of `/proc/self/mountinfo`; the mount's `root` field is stripped from the path,
//! so a daemon in a container without a cgroup namespace (whose `/proc/self/cgroup` shows host paths)
//! still finds its own directory.

use super::CgroupError;
use std::path::{Path, PathBuf};

/// Where every layout is mounted on a conventional host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup2 mount of a hybrid host.
pub const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";
/// The environment switch that makes [`Layout::current`] take the v2 path on a hybrid host (tests).
pub const FORCE_V2_ENV: &str = "PLUGD_CGROUP_FORCE_V2";

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only cgroup v2 at `/sys/fs/cgroup`: devices are an eBPF program.
    Unified,
    /// v1 hierarchies (with the devices controller) plus a controller-less cgroup2 at `unified`.
    Hybrid,
    /// v1 hierarchies only.
    Legacy,
}

/// One mounted hierarchy and the daemon's own cgroup directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The v1 controllers (and `name=…`) bound to it; empty for cgroup2.
    pub controllers: Vec<String>,
    /// The daemon's own cgroup, as a directory: plugin cgroups are created inside it.
    pub own_dir: PathBuf,
}

impl Hierarchy {
    /// Whether this is the cgroup2 hierarchy.
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// The host's cgroup layout as seen from this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Unified, hybrid or legacy.
    pub mode: Mode,
    /// Every mounted hierarchy this process belongs to, in `/proc/self/cgroup` order.
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// [`Layout::detect`], then the v2 path forced when [`FORCE_V2_ENV`] is `1` (a test switch, so
    /// the eBPF device path can be exercised end to end on a hybrid host).
    pub fn current() -> Result<Layout, CgroupError> {
        Layout::detect()?.with_switch(std::env::var(FORCE_V2_ENV).ok().as_deref())
    }

    /// Applies the value of [`FORCE_V2_ENV`]: `1` forces v2, anything else changes nothing.
    fn with_switch(self, value: Option<&str>) -> Result<Layout, CgroupError> {
        match value {
            Some("1") => self.force_v2(),
            _ => Ok(self),
        }
    }

    /// Reads the layout of this host from `/sys/fs/cgroup`, `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    pub fn detect() -> Result<Layout, CgroupError> {
        let mode = match fs_magic(Path::new(CGROUP_ROOT))? {
            CGROUP2_SUPER_MAGIC => Mode::Unified,
            TMPFS_MAGIC => match fs_magic(Path::new(HYBRID_UNIFIED)) {
                Ok(CGROUP2_SUPER_MAGIC) => Mode::Hybrid,
                _ => Mode::Legacy,
            },
            magic => return Err(CgroupError::UnknownLayout { magic }),
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        Layout::from_tables(mode, &mountinfo, &own)
    }

    /// The layout for `mode` from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    /// Hierarchies that are not mounted here are left out (nothing can be created in them).
    pub fn from_tables(mode: Mode, mountinfo: &str, own: &str) -> Result<Layout, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let mut hierarchies = Vec::new();
        for line in own.lines().filter(|l| !l.is_empty()) {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(path)) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(CgroupError::Parse {
                    what: "/proc/self/cgroup",
                    line: line.to_owned(),
                });
            };
            let v2 = id == "0" && ctrls.is_empty();
            let wanted = if v2 {
                mode != Mode::Legacy
            } else {
                mode != Mode::Unified && !ctrls.is_empty()
            };
            if !wanted {
                continue;
            }
            let controllers: Vec<String> = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let Some(mount) = find_mount(&mounts, &controllers) else {
                continue;
            };
            let rel = relative_to_root(path, &mount.root).ok_or_else(|| CgroupError::Parse {
                what: "/proc/self/cgroup (path outside its hierarchy's mount)",
                line: line.to_owned(),
            })?;
            let own_dir = if rel.is_empty() {
                mount.mountpoint.clone()
            } else {
                mount.mountpoint.join(rel)
            };
            hierarchies.push(Hierarchy {
                controllers,
                own_dir,
            });
        }
        if mode == Mode::Unified && !hierarchies.iter().any(Hierarchy::is_v2) {
            return Err(CgroupError::NoV2);
        }
        if hierarchies.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(Layout { mode, hierarchies })
    }

    /// The same host seen as unified: only the cgroup2 hierarchy, device rules as eBPF. On a
    /// hybrid host this is the test switch for the v2 path.
    pub fn force_v2(self) -> Result<Layout, CgroupError> {
        let hierarchies: Vec<_> = self
            .hierarchies
            .into_iter()
            .filter(Hierarchy::is_v2)
            .collect();
        if hierarchies.is_empty() {
            return Err(CgroupError::NoV2);
        }
        Ok(Layout {
            mode: Mode::Unified,
            hierarchies,
        })
    }
}

/// A cgroup or cgroup2 line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    root: String,
    mountpoint: PathBuf,
    fstype: String,
    superopts: Vec<String>,
}

/// The cgroup and cgroup2 mounts; other lines and malformed ones are skipped.
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let _source = right.next()?;
            let superopts = right.next().unwrap_or("");
            Some(MountEntry {
                root: plugd_init::mountinfo::unescape(left.get(3)?),
                mountpoint: PathBuf::from(plugd_init::mountinfo::unescape(left.get(4)?)),
                fstype: fstype.to_owned(),
                superopts: superopts.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// The mount of the hierarchy with these controllers (cgroup2 when empty), preferring mounts under
/// `/sys/fs/cgroup` over other copies.
fn find_mount<'a>(mounts: &'a [MountEntry], controllers: &[String]) -> Option<&'a MountEntry> {
    let matches = |m: &&MountEntry| {
        if controllers.is_empty() {
            m.fstype == "cgroup2"
        } else {
            m.fstype == "cgroup" && controllers.iter().all(|c| m.superopts.contains(c))
        }
    };
    let conventional = mounts
        .iter()
        .filter(matches)
        .find(|m| m.mountpoint.starts_with(CGROUP_ROOT));
    conventional.or_else(|| mounts.iter().find(matches))
}

/// `path` relative to the mount's root, or `None` when the mount does not show it.
fn relative_to_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.trim_start_matches('/'))
    } else {
        None
    }
}

fn fs_magic(path: &Path) -> Result<i64, CgroupError> {
    let st = rustix::fs::statfs(path).map_err(|e| CgroupError::Statfs {
        path: path.to_owned(),
        source: e.into(),
    })?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc and linux_raw.
    Ok(st.f_type as i64)
}

fn read(path: &str) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine (hybrid, the daemon in a memory cgroup of its own).
    const HYBRID_MOUNTINFO: &str = "\
23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/d34d
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    fn dirs(l: &Layout) -> Vec<(String, String)> {
        l.hierarchies
            .iter()
            .map(|h| (h.controllers.join(","), h.own_dir.display().to_string()))
            .collect()
    }

    #[test]
    fn hybrid_host_lists_every_v1_hierarchy_and_unified() {
        let l = Layout::from_tables(Mode::Hybrid, HYBRID_MOUNTINFO, HYBRID_OWN).unwrap();
        assert_eq!(
            dirs(&l),
            [
                ("name=systemd", "/sys/fs/cgroup/systemd"),
                ("pids", "/sys/fs/cgroup/pids"),
                ("blkio", "/sys/fs/cgroup/blkio"),
                ("freezer", "/sys/fs/cgroup/freezer"),
                ("devices", "/sys/fs/cgroup/devices"),
                ("memory", "/sys/fs/cgroup/memory/process_api/d34d"),
                ("cpuset", "/sys/fs/cgroup/cpuset"),
                ("cpuacct", "/sys/fs/cgroup/cpuacct"),
                ("cpu", "/sys/fs/cgroup/cpu"),
                ("", "/sys/fs/cgroup/unified"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(l.clone().with_switch(Some("0")).unwrap(), l);
        assert_eq!(l.clone().with_switch(None).unwrap(), l);
        assert_eq!(
            l.clone().with_switch(Some("1")).unwrap(),
            l.clone().force_v2().unwrap()
        );
        let v2 = l.force_v2().unwrap();
        assert_eq!(v2.mode, Mode::Unified);
        assert_eq!(
            dirs(&v2),
            [("".to_owned(), "/sys/fs/cgroup/unified".to_owned())]
        );
    }

    #[test]
    fn legacy_skips_cgroup2_and_unified_skips_v1() {
        let l = Layout::from_tables(Mode::Legacy, HYBRID_MOUNTINFO, HYBRID_OWN).unwrap();
        assert!(l.hierarchies.iter().all(|h| !h.is_v2()));
        assert_eq!(l.hierarchies.len(), 9);
        assert_eq!(
            Layout::from_tables(Mode::Legacy, HYBRID_MOUNTINFO, "0::/\n")
                .unwrap_err()
                .to_string(),
            CgroupError::NoHierarchy.to_string()
        );
    }

    #[test]
    fn unified_host_and_a_daemon_in_a_container_without_cgroupns() {
        let mountinfo = "\
100 90 0:30 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate
";
        let l = Layout::from_tables(Mode::Unified, mountinfo, "0::/docker/abc/init\n").unwrap();
        assert_eq!(
            dirs(&l),
            [("".to_owned(), "/sys/fs/cgroup/init".to_owned())]
        );
        let err = Layout::from_tables(Mode::Unified, mountinfo, "0::/elsewhere\n").unwrap_err();
        assert!(matches!(err, CgroupError::Parse { .. }), "{err}");
        let err = Layout::from_tables(Mode::Unified, HYBRID_MOUNTINFO, "1:cpu:/\n").unwrap_err();
        assert!(matches!(err, CgroupError::NoV2), "{err}");
    }

    #[test]
    fn co_mounted_controllers_and_escaped_mountpoints() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 31 0:29 / /mnt/odd\\040dir rw - cgroup cgroup rw,net_cls,net_prio
";
        let own = "2:cpu,cpuacct:/a\n3:net_cls,net_prio:/b\n4:rdma:/\n";
        let l = Layout::from_tables(Mode::Legacy, mountinfo, own).unwrap();
        assert_eq!(
            dirs(&l),
            [
                ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/a"),
                ("net_cls,net_prio", "/mnt/odd dir/b"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn detects_this_host() {
        // Whatever this host is, detection must succeed on a Linux host with cgroups mounted.
        if !Path::new(CGROUP_ROOT).exists() {
            return eprintln!("skipped: no {CGROUP_ROOT}");
        }
        let l = Layout::detect().unwrap();
        assert!(!l.hierarchies.is_empty());
        for h in &l.hierarchies {
            assert!(h.own_dir.is_dir(), "{}", h.own_dir.display());
        }
    }
}
