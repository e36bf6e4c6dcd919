//! A new session: the plugin must not share the daemon's session or controlling terminal
//! (runc stage-2 and youki do this first thing in the init).

use crate::ctx::Ctx;
use crate::error::{StepError, sys};
use crate::sys::Syscall;

/// `setsid()`.
pub fn setsid(_ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    s.setsid().map_err(sys("setsid")).map_err(StepError::Setsid)
}
