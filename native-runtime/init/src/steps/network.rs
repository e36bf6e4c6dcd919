//! The loopback interface of a new network namespace starts down; runc brings it up
//! (`specconv` adds a loopback network), and a plugin talking to itself over 127.0.0.1
//! relies on it. A host-network plugin keeps the host's interfaces untouched.

use crate::ctx::Ctx;
use crate::error::{StepError, sys};
use crate::sys::Syscall;

/// `lo` up, in a new netns only.
pub fn loopback_up(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    if !ctx.ns.net {
        return Ok(());
    }
    s.loopback_up()
        .map_err(sys("SIOCSIFFLAGS lo up"))
        .map_err(StepError::Network)
}
