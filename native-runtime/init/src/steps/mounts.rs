//! The spec's mounts, in order (proc, /dev tmpfs, devpts, sysfs, cgroup, mqueue, shm, the
//! propagated mount, the runtime dir, /etc/hosts and /etc/resolv.conf, the plugin's own mounts).
//!
//! Every destination is resolved inside the root ([`crate::resolve`]) and mounted on through
//! its fd. Then, as runc does: a bind gets a second `MS_REMOUNT` for the flags the first bind
//! ignores (ro, nosuid, ...); each propagation option is one more call, on a freshly reopened fd
//! of the new mount; a tmpfs asked to be `ro` is mounted rw and remounted after pivot_root;
//! proc and sysfs only go onto a real directory (never through a symlink), and nothing may be
//! mounted on the root itself or inside `/proc` (but a proc on `/proc`).

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use nix::sys::statfs::PROC_SUPER_MAGIC;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::mountopt::MountOpts;
use crate::resolve::{self, Kind, Root};
use crate::spec::Mount;
use crate::steps::cgroup_mount;
use crate::sys::{At, Syscall, magic};

/// Files under /proc that may be mount targets (lxcfs's), as in runc's `checkProcMount`.
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// Mounts every spec mount, in order.
pub fn mount_all(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    for m in ctx.spec.mounts.clone() {
        mount_one(ctx, s, &m).map_err(|source| StepError::Mount {
            dest: m.destination.clone(),
            source,
        })?;
    }
    Ok(())
}

fn mount_one(ctx: &mut Ctx, s: &dyn Syscall, m: &Mount) -> Result<(), Failure> {
    let opts = MountOpts::parse(&m.options).map_err(|e| Failure::Refused(e.to_string()))?;
    if opts.is_bind() || m.kind == "bind" {
        return bind(ctx.root()?, s, m, &opts);
    }
    match m.kind.as_str() {
        "proc" | "sysfs" => pseudo_fs(ctx.root()?, s, m, &opts),
        "cgroup" | "cgroup2" => cgroup_mount::mount(ctx.root()?, s, m, &opts),
        _ => filesystem(ctx, s, m, &opts),
    }
}

/// A bind mount: the mount point is a directory or an empty file, like the source.
pub fn bind(root: &Root, s: &dyn Syscall, m: &Mount, opts: &MountOpts) -> Result<(), Failure> {
    let src = Path::new(&m.source);
    let st = s
        .stat(src)
        .map_err(sys(format!("stat bind source {}", src.display())))?;
    let kind = if st.is_dir() { Kind::Dir } else { Kind::File };
    let (dst, _) = resolve::open_or_create(s, root, m.destination.as_ref(), kind)?;
    check_target(s, root, dst.as_fd(), m)?;
    let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    s.mount(Some(At::Path(src)), At::Fd(dst.as_fd()), None, flags, None)
        .map_err(sys(format!("bind {}", src.display())))?;
    let dst = resolve::reopen(s, root, dst.as_fd())?;
    if let Some(flags) = opts.bind_remount_flags() {
        s.mount(None, At::Fd(dst.as_fd()), None, flags, None)
            .map_err(sys("remount bind"))?;
    }
    propagate(s, dst.as_fd(), opts)
}

/// tmpfs, devpts, mqueue and other filesystems mounted fresh onto a directory.
fn filesystem(ctx: &mut Ctx, s: &dyn Syscall, m: &Mount, opts: &MountOpts) -> Result<(), Failure> {
    let root = ctx.root()?;
    let (dst, existed) = resolve::open_or_create(s, root, m.destination.as_ref(), Kind::Dir)?;
    check_target(s, root, dst.as_fd(), m)?;
    let mut flags = opts.flags;
    let mut data = opts.data.clone();
    let mut deferred = None;
    if m.kind == "tmpfs" {
        if flags.contains(MsFlags::MS_RDONLY) {
            flags.remove(MsFlags::MS_RDONLY);
            deferred = Some((m.destination.clone(), opts.flags));
        }
        if existed && !data.as_deref().unwrap_or("").contains("mode=") {
            data = Some(keep_mode(s, dst.as_fd(), data.as_deref())?);
        }
    }
    s.mount(
        Some(At::Path(m.source.as_ref())),
        At::Fd(dst.as_fd()),
        Some(&m.kind),
        flags,
        data.as_deref(),
    )
    .map_err(sys(format!("mount {}", m.kind)))?;
    if !opts.propagation.is_empty() {
        let dst = resolve::reopen(s, root, dst.as_fd())?;
        propagate(s, dst.as_fd(), opts)?;
    }
    ctx.deferred_ro.extend(deferred);
    Ok(())
}

/// A tmpfs over an existing directory keeps that directory's mode, as with runc.
fn keep_mode(s: &dyn Syscall, dst: BorrowedFd<'_>, data: Option<&str>) -> Result<String, Failure> {
    let st = s.fstat(dst).map_err(sys("fstat tmpfs mount point"))?;
    let mode = format!("mode={:04o}", st.mode & 0o7777);
    Ok(match data {
        Some(d) => format!("{mode},{d}"),
        None => mode,
    })
}

/// proc and sysfs: only onto a real directory. The last component is opened without following
/// a symlink, so `rootfs/proc -> /etc` is refused rather than followed (even inside the root).
fn pseudo_fs(root: &Root, s: &dyn Syscall, m: &Mount, opts: &MountOpts) -> Result<(), Failure> {
    let (dir, name) = resolve::parent_of(s, root, m.destination.as_ref())?;
    let name = Path::new(&name);
    let dst = real_dir(s, dir.as_fd(), name, &m.kind)?;
    check_target(s, root, dst.as_fd(), m)?;
    s.mount(
        Some(At::Path(m.source.as_ref())),
        At::Fd(dst.as_fd()),
        Some(&m.kind),
        opts.flags,
        opts.data.as_deref(),
    )
    .map_err(sys(format!("mount {}", m.kind)))?;
    if !opts.propagation.is_empty() {
        let dst = resolve::reopen(s, root, dst.as_fd())?;
        propagate(s, dst.as_fd(), opts)?;
    }
    Ok(())
}

/// `dir/name` as a directory that is not a symlink, created if missing.
fn real_dir(
    s: &dyn Syscall,
    dir: BorrowedFd<'_>,
    name: &Path,
    fs: &str,
) -> Result<OwnedFd, Failure> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW;
    let fd = match s.openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            s.mkdirat(dir, name, Mode::from_bits_truncate(0o755))
                .map_err(sys("mkdir"))?;
            s.openat(dir, name, flags | OFlag::O_DIRECTORY, Mode::empty())
                .map_err(sys("reopen"))?
        }
        Err(e) => return Err(sys("open mount point")(e)),
    };
    let st = s.fstat(fd.as_fd()).map_err(sys("fstat mount point"))?;
    if !st.is_dir() {
        let what = if st.kind() == nix::sys::stat::SFlag::S_IFLNK {
            "a symlink"
        } else {
            "not a directory"
        };
        return Err(Failure::Refused(format!(
            "{fs} must be mounted on a real directory; this is {what}"
        )));
    }
    Ok(fd)
}

/// Refuses a mount point that is the root itself, or in `/proc` unless the mount is a procfs
/// on `/proc` (fresh, or a bind of a procfs root) or one of lxcfs's files.
pub(crate) fn check_target(
    s: &dyn Syscall,
    root: &Root,
    dst: BorrowedFd<'_>,
    m: &Mount,
) -> Result<(), Failure> {
    let p = resolve::in_root_path(s, root, dst)?;
    if p == Path::new("/") {
        return Err(Failure::Refused(
            "the destination resolves to the sandbox root".into(),
        ));
    }
    if p == Path::new("/proc") {
        let procfs = m.kind == "proc"
            || (m.kind == "bind"
                && s.statfs(At::Path(m.source.as_ref()))
                    .is_ok_and(|f| f.fs_type == magic(PROC_SUPER_MAGIC)));
        return match procfs {
            true => Ok(()),
            false => Err(Failure::Refused(
                "only a procfs may be mounted on /proc".into(),
            )),
        };
    }
    if p.starts_with("/proc") && !PROC_ALLOWED.iter().any(|a| p == Path::new(a)) {
        return Err(Failure::Refused(format!(
            "the destination resolves into /proc ({})",
            p.display()
        )));
    }
    Ok(())
}

/// One propagation call per propagation option, on the new mount.
pub fn propagate(s: &dyn Syscall, dst: BorrowedFd<'_>, opts: &MountOpts) -> Result<(), Failure> {
    for p in &opts.propagation {
        s.mount(None, At::Fd(dst), None, *p, None)
            .map_err(sys(format!("propagation {p:?}")))?;
    }
    Ok(())
}
