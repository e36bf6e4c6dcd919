//! Propagation of `/` in the new mount namespace, as runc 1.1 (dockerd 20.10's runc) does it, plus
//! two guards of plugd's own.
//!
//! **runc 1.1's order.** Before anything is mounted, `/` becomes recursively slave (runc's default)
//! or shared (`rootfsPropagation: rshared`, which dockerd sets for a plugin with a propagated
//! mount). Then the rootfs's parent mount is made private and the rootfs bound onto itself
//! ([`crate::steps::rootfs`]), so the sandbox's `/` and every filesystem mounted fresh on it
//! (proc, `/dev`, devpts, sysfs, mqueue, shm, the masks) are **private**, and a bind is in
//! whatever peer group its source's mount has in the new namespace at that moment: with a shared
//! root, the binds of `/etc/hosts`, `/etc/resolv.conf` and of a host directory on the host's `/`
//! share one group (the namespace's copy of `/`), each cgroup hierarchy's bind has its own, and
//! the propagated mount joins the host's group of the propagated-mount directory. runc 1.1 does
//! **not** make the new root shared again after pivot_root (runc ≥ 1.2 does), and neither does
//! plugd: the probes under dockerd 20.10 see a private `/`.
//!
//! **Guard 1** (shared root only, [`before_pivot`]): a new mount namespace keeps the copies of the
//! host's shared mounts in the host's peer groups, so a bind from one of them (the host's
//! `/etc/hosts` where the host's `/` is shared, as under systemd) would be a peer of the host's
//! mount, and a mount the plugin made on it would appear on the host. So before `/` is made
//! shared, every such copy except the propagated-mount directory (and what is under it) is made a
//! slave: it still receives the host's mounts, never sends its own. On a host whose mounts are
//! private (the test VMs) this changes nothing, and the topology is runc's exactly; on a host with
//! shared mounts those binds are `shared:<own group> master:<host group>` where dockerd has them
//! in the host's group.
//!
//! **Guard 2** ([`check_host_peers`], after pivot_root): no sandbox mount may be in a peer group
//! a host mount was in, except the propagated mount and what is mounted under it; the start fails
//! otherwise. It catches what guard 1 cannot reach by path (a host peer hidden under another
//! mount and copied in by a recursive bind).

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::mountinfo;
use crate::mountopt;
use crate::sys::{At, Syscall};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The flags `rootfsPropagation` asks for; empty means runc's default, `rslave`.
pub fn root_flags(ctx: &Ctx) -> Result<MsFlags, Failure> {
    match ctx.spec.linux.rootfs_propagation.as_str() {
        "" => Ok(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        word => mountopt::propagation(word)
            .ok_or_else(|| Failure::Refused(format!("unknown rootfsPropagation {word:?}"))),
    }
}

/// `mount(NULL, "/", NULL, <propagation>)` before any other mount; with a shared root, guard 1
/// first (see the module docs).
pub fn before_pivot(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let flags = root_flags(ctx).map_err(StepError::RootPropagation)?;
    if flags.contains(MsFlags::MS_SHARED) {
        slave_host_peers(ctx, s).map_err(StepError::RootPropagation)?;
    }
    s.mount(None, At::Path(Path::new("/")), None, flags, None)
        .map_err(sys("mount / propagation"))
        .map_err(StepError::RootPropagation)
}

/// Guard 1: records the host's peer groups and makes every mount in one a slave, but the
/// propagated-mount directory and what is under it.
fn slave_host_peers(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), Failure> {
    let keep = match ctx.ext.propagated_mount.clone() {
        Some(dir) => Some(kernel_path(s, &dir)?),
        None => None,
    };
    let text = s
        .read_file(Path::new(MOUNTINFO))
        .map_err(sys("read mountinfo"))?;
    for m in mountinfo::parse(&text) {
        let Some(group) = m.shared else { continue };
        ctx.host_peer_groups.insert(group);
        let at = Path::new(&m.mountpoint);
        if keep.as_deref() == Some(at) {
            ctx.propagated_group = Some(group);
        }
        if keep.as_deref().is_some_and(|k| at.starts_with(k)) {
            continue;
        }
        // EINVAL: no longer a mount point where mountinfo says (covered by a later mount); guard
        // 2 catches such a mount if it ends up in the sandbox.
        match s.mount(None, At::Path(at), None, MsFlags::MS_SLAVE, None) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => return Err(sys(format!("make {} a slave", at.display()))(e)),
        }
    }
    Ok(())
}

/// `dir` as the kernel spells it (mountinfo's mount points are canonical).
fn kernel_path(s: &dyn Syscall, dir: &Path) -> Result<PathBuf, Failure> {
    let fd = s
        .open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(sys(format!("open {}", dir.display())))?;
    s.fd_path(fd.as_fd())
        .map_err(sys(format!("readlink {}", dir.display())))
}

/// Guard 2, after pivot_root: refuses a sandbox mount that is in one of the host's peer groups,
/// unless it is the propagated mount (a mount in the propagated-mount directory's group) or
/// mounted under it.
pub fn check_host_peers(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    if ctx.host_peer_groups.is_empty() {
        return Ok(());
    }
    let text = s
        .read_file(Path::new(MOUNTINFO))
        .map_err(sys("read mountinfo"))
        .map_err(StepError::HostPeers)?;
    let mounts = mountinfo::parse(&text);
    let allowed: Vec<&Path> = mounts
        .iter()
        .filter(|m| m.shared.is_some() && m.shared == ctx.propagated_group)
        .map(|m| Path::new(&m.mountpoint))
        .collect();
    let leaks: Vec<String> = mounts
        .iter()
        .filter_map(|m| {
            let group = m.shared.filter(|g| ctx.host_peer_groups.contains(g))?;
            let at = Path::new(&m.mountpoint);
            (!allowed.iter().any(|a| at.starts_with(a)))
                .then(|| format!("{} (shared:{group})", m.mountpoint))
        })
        .collect();
    if leaks.is_empty() {
        return Ok(());
    }
    Err(StepError::HostPeers(Failure::Refused(format!(
        "sandbox mounts in a host mount's peer group (a mount made on them would reach the host): {}",
        leaks.join(", ")
    ))))
}
