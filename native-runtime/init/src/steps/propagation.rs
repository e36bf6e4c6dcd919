//! Propagation of `/` in the new mount namespace. Before anything is mounted, `/` becomes
//! recursively slave (runc's and youki's default), or shared when the spec says `rshared`
//! (dockerd does, for a plugin with a propagated mount): no mount made in the sandbox can then
//! reach the host except through a mount that is explicitly shared. After pivot_root the new `/`
//! is made shared again if asked, since the pre-pivot call applied to the host's root.

use std::path::Path;

use nix::mount::MsFlags;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::mountopt;
use crate::sys::{At, Syscall};

/// The flags `rootfsPropagation` asks for; empty means runc's default, `rslave`.
pub fn root_flags(ctx: &Ctx) -> Result<MsFlags, Failure> {
    match ctx.spec.linux.rootfs_propagation.as_str() {
        "" => Ok(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        word => mountopt::propagation(word)
            .ok_or_else(|| Failure::Refused(format!("unknown rootfsPropagation {word:?}"))),
    }
}

/// `mount(NULL, "/", NULL, <propagation>)` before any other mount.
pub fn before_pivot(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let flags = root_flags(ctx).map_err(StepError::RootPropagation)?;
    s.mount(None, At::Path(Path::new("/")), None, flags, None)
        .map_err(sys("mount / propagation"))
        .map_err(StepError::RootPropagation)
}

/// The same on the new root, when it is shared or unbindable (private and slave were handled
/// by the parent-private step, as in runc).
pub fn after_pivot(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let flags = root_flags(ctx).map_err(StepError::RootPropagation)?;
    if flags.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE) {
        return Ok(());
    }
    s.mount(None, At::Path(Path::new("/")), None, flags, None)
        .map_err(sys("mount / propagation"))
        .map_err(StepError::RootPropagation)
}
