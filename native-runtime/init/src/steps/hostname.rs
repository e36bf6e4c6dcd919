//! The hostname, only when the spec has one: dockerd sets none for plugins, so they keep the
//! host's name as copied into their new UTS namespace.

use crate::ctx::Ctx;
use crate::error::{StepError, sys};
use crate::sys::Syscall;

/// `sethostname(spec.hostname)` if set.
pub fn set(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let Some(name) = ctx.spec.hostname.as_deref() else {
        return Ok(());
    };
    s.sethostname(name)
        .map_err(sys("sethostname"))
        .map_err(StepError::Hostname)
}
