//! The `cgroup` mount at `/sys/fs/cgroup`, as runc makes it without a cgroup namespace (the
//! plugin spec has none):
//! - cgroup v1 / hybrid host (this one, and dockerd's probes): a `mode=755` tmpfs with
//!   `nosuid,nodev,noexec`, then per v1 hierarchy a bind of the process's own cgroup
//!   (`/sys/fs/cgroup/cpu/<plugin cgroup>` → `/sys/fs/cgroup/cpu`), remounted with the spec's
//!   flags (`ro,nosuid,nodev,noexec`), plus symlinks for co-mounted controllers;
//! - cgroup v2 host: a fresh `cgroup2` mount with the spec's flags, falling back to binding the
//!   host's `/sys/fs/cgroup` on EPERM/EBUSY (runc `mountCgroupV2`).
//!
//! The host's mountinfo and `/proc/self/cgroup` are read here, before pivot_root, through the
//! host's `/proc` (the process is already in the plugin's cgroups: plugd-init joined them).

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statfs::CGROUP2_SUPER_MAGIC;

use crate::cgroupfs::{self, CgroupBind};
use crate::error::{Failure, sys};
use crate::mountinfo;
use crate::mountopt::MountOpts;
use crate::resolve::{self, Kind, Root};
use crate::spec::Mount;
use crate::steps::mounts;
use crate::sys::{At, Syscall, magic};

/// Where the host's cgroup filesystems are.
const HOST_CGROUP: &str = "/sys/fs/cgroup";

/// Mounts the cgroup filesystem view for `m`.
pub fn mount(root: &Root, s: &dyn Syscall, m: &Mount, opts: &MountOpts) -> Result<(), Failure> {
    let host = s
        .statfs(At::Path(Path::new(HOST_CGROUP)))
        .map_err(sys("statfs /sys/fs/cgroup"))?;
    if host.fs_type == magic(CGROUP2_SUPER_MAGIC) {
        return v2(root, s, m, opts);
    }
    v1(root, s, m, opts)
}

fn v1(root: &Root, s: &dyn Syscall, m: &Mount, opts: &MountOpts) -> Result<(), Failure> {
    let info = s
        .read_file(Path::new("/proc/self/mountinfo"))
        .map_err(sys("read mountinfo"))?;
    let own = s
        .read_file(Path::new("/proc/self/cgroup"))
        .map_err(sys("read /proc/self/cgroup"))?;
    let binds = cgroupfs::v1_binds(&mountinfo::parse(&info), &own);
    let (dst, _) = resolve::open_or_create(s, root, m.destination.as_ref(), Kind::Dir)?;
    mounts::check_target(s, root, dst.as_fd(), m)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    s.mount(
        Some(At::Path(Path::new("tmpfs"))),
        At::Fd(dst.as_fd()),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .map_err(sys("mount tmpfs"))?;
    let base = resolve::clean(m.destination.as_ref());
    for b in &binds {
        hierarchy(root, s, &base, b, opts)?;
    }
    Ok(())
}

/// One hierarchy: the bind, its remount with the spec's flags, and its alias symlinks.
fn hierarchy(
    root: &Root,
    s: &dyn Syscall,
    base: &Path,
    b: &CgroupBind,
    opts: &MountOpts,
) -> Result<(), Failure> {
    let dest: PathBuf = base.join(&b.name);
    let (dst, _) = resolve::open_or_create(s, root, &dest, Kind::Dir)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    s.mount(
        Some(At::Path(&b.source)),
        At::Fd(dst.as_fd()),
        None,
        flags,
        None,
    )
    .map_err(sys(format!("bind {}", b.source.display())))?;
    let dst = resolve::reopen(s, root, dst.as_fd())?;
    let remount = opts.flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    s.mount(None, At::Fd(dst.as_fd()), None, remount, None)
        .map_err(sys(format!("remount {}", dest.display())))?;
    mounts::propagate(s, dst.as_fd(), opts)?;
    for alias in b.aliases().into_iter().filter(|a| *a != b.name) {
        let (dir, name) = resolve::parent_of(s, root, &base.join(alias))?;
        match s.symlinkat(Path::new(&b.name), dir.as_fd(), Path::new(&name)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(sys(format!("symlink {alias}"))(e)),
        }
    }
    Ok(())
}

fn v2(root: &Root, s: &dyn Syscall, m: &Mount, opts: &MountOpts) -> Result<(), Failure> {
    let (dst, _) = resolve::open_or_create(s, root, m.destination.as_ref(), Kind::Dir)?;
    mounts::check_target(s, root, dst.as_fd(), m)?;
    let source = At::Path(Path::new("cgroup"));
    match s.mount(
        Some(source),
        At::Fd(dst.as_fd()),
        Some("cgroup2"),
        opts.flags,
        opts.data.as_deref(),
    ) {
        Ok(()) => {}
        Err(Errno::EPERM | Errno::EBUSY) => {
            let bind = Mount {
                source: HOST_CGROUP.into(),
                options: vec!["rbind".into()],
                kind: "bind".into(),
                ..m.clone()
            };
            let mut bind_opts = opts.clone();
            bind_opts.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            return mounts::bind(root, s, &bind, &bind_opts);
        }
        Err(e) => return Err(sys("mount cgroup2")(e)),
    }
    if opts.propagation.is_empty() {
        return Ok(());
    }
    let dst = resolve::reopen(s, root, dst.as_fd())?;
    mounts::propagate(s, dst.as_fd(), opts)
}
