//! After pivot_root, any of fds 0-2 that is a `/dev/null` (the host's, opened by the stdio
//! step) is replaced by the sandbox's own `/dev/null`, checked to be char 1:3 first — so no fd
//! of the plugin keeps pointing into the host's `/dev` (runc `reOpenDevNull`).

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::{SFlag, makedev};

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::sys::Syscall;

/// Opens `/dev/null` (in the current root) and checks it is the null device.
pub fn open_verified(s: &dyn Syscall, flags: OFlag) -> Result<OwnedFd, Failure> {
    let fd = s
        .open(Path::new("/dev/null"), flags)
        .map_err(sys("open /dev/null"))?;
    let st = s.fstat(fd.as_fd()).map_err(sys("fstat /dev/null"))?;
    if st.kind() != SFlag::S_IFCHR || st.rdev != makedev(1, 3) {
        return Err(Failure::Refused(
            "/dev/null is not the null device (char 1:3)".into(),
        ));
    }
    Ok(fd)
}

/// Re-points fds 0-2 that are /dev/null at the sandbox's /dev/null.
pub fn reopen(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    if !ctx.setup_dev {
        return Ok(());
    }
    let null = open_verified(s, OFlag::O_RDWR).map_err(StepError::DevNull)?;
    let want = makedev(1, 3);
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio: [BorrowedFd<'_>; 3] = [i.as_fd(), o.as_fd(), e.as_fd()];
    for (n, fd) in stdio.into_iter().enumerate() {
        let st = s
            .fstat(fd)
            .map_err(sys(format!("fstat fd {n}")))
            .map_err(StepError::DevNull)?;
        if st.kind() == SFlag::S_IFCHR && st.rdev == want {
            s.dup3(null.as_fd(), n as i32)
                .map_err(sys(format!("dup3 /dev/null -> {n}")))
                .map_err(StepError::DevNull)?;
        }
    }
    Ok(())
}
