//! The plugin's stdio: stdin is `/dev/null` (dockerd attaches none), stdout and stderr are the
//! daemon's FIFOs, opened **read-write** so the plugin always holds a reader itself and never
//! gets EPIPE/SIGPIPE while the daemon restarts (a pipe would be gone with the old daemon).
//! The FIFOs live in the plugin's state dir, which the plugin never sees; they are still opened
//! with `O_NOFOLLOW` and must be FIFOs.

use std::os::fd::AsFd as _;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::sys::Syscall;

/// Points fds 0, 1 and 2 at /dev/null and the FIFOs (an empty FIFO path keeps the inherited fd).
pub fn redirect(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    attach(s, Path::new("/dev/null"), 0, None).map_err(StepError::Stdio)?;
    attach(s, &ctx.ext.stdout, 1, Some(SFlag::S_IFIFO)).map_err(StepError::Stdio)?;
    attach(s, &ctx.ext.stderr, 2, Some(SFlag::S_IFIFO)).map_err(StepError::Stdio)
}

/// Opens `path` read-write, checks its type, and dup3s it onto `target`.
fn attach(s: &dyn Syscall, path: &Path, target: i32, kind: Option<SFlag>) -> Result<(), Failure> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    let flags = match kind {
        Some(_) => OFlag::O_RDWR | OFlag::O_NOFOLLOW,
        None => OFlag::O_RDWR,
    };
    let fd = s
        .open(path, flags)
        .map_err(sys(format!("open {}", path.display())))?;
    let st = s
        .fstat(fd.as_fd())
        .map_err(sys(format!("fstat {}", path.display())))?;
    let want = kind.unwrap_or(SFlag::S_IFCHR);
    if st.kind() != want {
        return Err(Failure::Refused(format!(
            "{} is not a {want:?}",
            path.display()
        )));
    }
    s.dup3(fd.as_fd(), target)
        .map_err(sys(format!("dup3 {} -> {target}", path.display())))
}
