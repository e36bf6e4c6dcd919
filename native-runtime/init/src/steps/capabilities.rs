//! Credentials and capabilities, in runc's order (reference §1.2 step 26): the bounding set
//! first (dropping needs CAP_SETPCAP, which is about to go), then keep-caps across the id change,
//! groups/gid/uid, keep-caps off, one capset of effective+permitted+inheritable, and the ambient
//! set cleared and raised (empty for plugins); then `no_new_privs` if the spec asks (dockerd
//! never does for plugins; crun sets it at this point).
//!
//! For a root plugin with no file capabilities, exec makes `P' = I | bounding` and `E' = P'`:
//! the bounding set is the real limit, which is why dockerd's default gives `CapEff a80425fb`.

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::sys::{CapSets, Syscall};

/// The highest capability a u64 mask can hold.
const MASK_LAST: u8 = 63;

/// Applies ids and capability sets.
pub fn apply(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    apply_inner(ctx, s).map_err(StepError::Capabilities)
}

fn apply_inner(ctx: &Ctx, s: &dyn Syscall) -> Result<(), Failure> {
    let c = ctx.caps;
    let user = &ctx.spec.process.user;
    for cap in 0..=c.last_cap {
        if cap > MASK_LAST || c.bounding & (1 << cap) == 0 {
            s.drop_bounding(cap)
                .map_err(sys(format!("drop bounding cap {cap}")))?;
        }
    }
    s.set_keepcaps(true).map_err(sys("keepcaps on"))?;
    s.setgroups(&[]).map_err(sys("setgroups"))?;
    s.setresgid(user.gid).map_err(sys("setresgid"))?;
    s.setresuid(user.uid).map_err(sys("setresuid"))?;
    s.set_keepcaps(false).map_err(sys("keepcaps off"))?;
    let sets = CapSets {
        effective: c.effective,
        permitted: c.permitted,
        inheritable: c.inheritable,
    };
    s.capset(sets).map_err(sys("capset"))?;
    s.ambient_clear().map_err(sys("clear ambient"))?;
    for cap in (0..=c.last_cap.min(MASK_LAST)).filter(|n| c.ambient & (1 << n) != 0) {
        s.ambient_raise(cap)
            .map_err(sys(format!("raise ambient cap {cap}")))?;
    }
    if ctx.spec.process.no_new_privileges {
        s.set_no_new_privs().map_err(sys("no_new_privs"))?;
    }
    Ok(())
}
