//! The rootfs as its own mount point. pivot_root needs the new root to be a mount whose parent
//! is not shared, and the self-bind must not propagate to the host: so first the nearest mount
//! at or above the rootfs is made private (slave with the default propagation) — walking up while
//! `mount(MS_PRIVATE)` says EINVAL, "not a mount point" (runc `rootfsParentMountPropagation`) —
//! then the rootfs is bound onto itself, and only then opened: an fd taken before the bind would
//! point under it, and every later in-root lookup starts from this fd.
//!
//! One step comes before runc's: the rootfs is first bound onto itself *once more*
//! ([`mount_point`]), so the mount made private above is that bind and never the namespace's copy
//! of a host filesystem. Under dockerd the plugin rootfs always sits under dockerd's data root,
//! which dockerd makes a mount of its own (`setupDaemonRootPropagation`), so runc's "parent
//! private" never touches the copy of the host's `/`; plugd's data root may be a plain directory
//! on `/`, and making `/` private there would make the binds of `/etc/hosts`, `/etc/resolv.conf`
//! and plugin mounts private, where dockerd's are shared (see [`crate::steps::propagation`]).
//! That first bind is under the old root and goes away with it at pivot_root.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::resolve::Root;
use crate::steps::propagation::root_flags;
use crate::sys::{At, Syscall};

/// Binds the rootfs onto itself, recursively, so that it is a mount point (see the module docs).
/// Nothing propagates from it to the host: with a slave or private root the parent sends nothing,
/// and with a shared root the host's peers were made slaves first (`propagation::before_pivot`).
pub fn mount_point(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let p = ctx.rootfs.as_path();
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    s.mount(Some(At::Path(p)), At::Path(p), None, flags, None)
        .map_err(sys(format!("bind {} onto itself", p.display())))
        .map_err(StepError::Rootfs)
}

/// Makes the mount the rootfs lives on private (or slave).
pub fn make_parent_private(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let root = root_flags(ctx).map_err(StepError::Rootfs)?;
    let flag = if root.contains(MsFlags::MS_SLAVE) {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    let mut path: &Path = &ctx.rootfs;
    loop {
        match s.mount(None, At::Path(path), None, flag, None) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if path != Path::new("/") => {
                path = path.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => {
                let call = format!("mount {} {flag:?}", path.display());
                return Err(StepError::Rootfs(sys(call)(e)));
            }
        }
    }
}

/// Binds the rootfs onto itself (recursively) and opens it as the sandbox root.
pub fn bind_self(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let p = ctx.rootfs.as_path();
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    s.mount(Some(At::Path(p)), At::Path(p), None, flags, None)
        .map_err(sys(format!("bind {} onto itself", p.display())))
        .map_err(StepError::Rootfs)?;
    let root = Root::open(s, p).map_err(StepError::Rootfs)?;
    if root.path == Path::new("/") {
        return Err(StepError::Rootfs(Failure::Refused(
            "the rootfs is the host's /".into(),
        )));
    }
    ctx.root = Some(root);
    Ok(())
}
