//! After pivot_root, what must be read-only or hidden (runc `finalizeRootfs`, `readonlyPath`,
//! `maskPath`), each path looked up inside the new root and mounted on through its fd:
//! - tmpfs mounts the spec wanted `ro` (mounted rw so they could be filled) are remounted ro,
//!   and so is `/` when `root.readonly` is set;
//! - `readonlyPaths` are bound onto themselves and remounted read-only, keeping the
//!   nosuid/nodev/noexec they had (`/proc/sys` stays `ro,nosuid,nodev,noexec`);
//! - `maskedPaths`: a file gets the sandbox's `/dev/null` bound over it (after checking it is
//!   char 1:3: CVE-2025-31133), a directory an empty read-only tmpfs.
//!
//! Paths that do not exist on this kernel (e.g. `/proc/kcore` here) are skipped.

use std::collections::HashSet;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::resolve::{self, Root};
use crate::steps::devnull;
use crate::sys::{At, Syscall};

/// Looks `path` up in the root; None if it does not exist.
fn lookup(s: &dyn Syscall, root: &Root, path: &str) -> Result<Option<OwnedFd>, Failure> {
    match resolve::open(s, root, Path::new(path), OFlag::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(sys(format!("openat2 {path}"))(e)),
    }
}

/// Remounts the deferred tmpfs mounts read-only.
pub fn deferred_readonly(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let root = ctx.root().map_err(|source| StepError::ReadonlyPath {
        path: "/".into(),
        source,
    })?;
    for (path, flags) in &ctx.deferred_ro {
        let err = |source| StepError::ReadonlyPath {
            path: path.clone(),
            source,
        };
        let fd = resolve::open(s, root, Path::new(path), OFlag::empty())
            .map_err(sys(format!("openat2 {path}")))
            .map_err(err)?;
        let flags = *flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        s.mount(None, At::Fd(fd.as_fd()), None, flags, None)
            .map_err(sys("remount ro"))
            .map_err(err)?;
    }
    Ok(())
}

/// `root.readonly` (dockerd: never for plugins): `/` remounted read-only, retried with its
/// current flags if the kernel insists on keeping them (runc `setReadonly`).
pub fn readonly_root(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    if !ctx.spec.root.readonly {
        return Ok(());
    }
    let err = |source| StepError::ReadonlyPath {
        path: "/".into(),
        source,
    };
    let root = At::Path(Path::new("/"));
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    match s.mount(None, root, None, flags, None) {
        Err(Errno::EPERM) => {
            let st = s.statfs(root).map_err(sys("statfs /")).map_err(err)?;
            let flags = flags | MsFlags::from_bits_truncate(st.flags);
            s.mount(None, root, None, flags, None)
        }
        other => other,
    }
    .map_err(sys("remount / ro"))
    .map_err(err)
}

/// Makes each `readonlyPaths` entry a read-only bind of itself.
pub fn readonly_paths(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let root = ctx.root().map_err(|source| StepError::ReadonlyPath {
        path: "/".into(),
        source,
    })?;
    for path in &ctx.spec.linux.readonly_paths {
        readonly(s, root, path).map_err(|source| StepError::ReadonlyPath {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn readonly(s: &dyn Syscall, root: &Root, path: &str) -> Result<(), Failure> {
    let Some(fd) = lookup(s, root, path)? else {
        return Ok(());
    };
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    s.mount(
        Some(At::Fd(fd.as_fd())),
        At::Fd(fd.as_fd()),
        None,
        bind,
        None,
    )
    .map_err(sys("bind onto itself"))?;
    let top = resolve::reopen(s, root, fd.as_fd())?;
    let st = s.statfs(At::Fd(top.as_fd())).map_err(sys("statfs"))?;
    let keep = MsFlags::from_bits_truncate(st.flags)
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let flags = keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    s.mount(None, At::Fd(top.as_fd()), None, flags, None)
        .map_err(sys("remount ro"))
}

/// Hides each `maskedPaths` entry.
pub fn masked_paths(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let paths = &ctx.spec.linux.masked_paths;
    if paths.is_empty() {
        return Ok(());
    }
    let root = ctx.root().map_err(|source| StepError::MaskedPath {
        path: "/dev/null".into(),
        source,
    })?;
    let null =
        devnull::open_verified(s, OFlag::O_PATH).map_err(|source| StepError::MaskedPath {
            path: "/dev/null".into(),
            source,
        })?;
    let mut seen = HashSet::new();
    for path in paths {
        if !seen.insert(resolve::clean(path.as_ref())) {
            continue;
        }
        mask(s, root, &null, path).map_err(|source| StepError::MaskedPath {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn mask(s: &dyn Syscall, root: &Root, null: &OwnedFd, path: &str) -> Result<(), Failure> {
    let Some(fd) = lookup(s, root, path)? else {
        return Ok(());
    };
    let st = s.fstat(fd.as_fd()).map_err(sys("fstat"))?;
    if st.is_dir() {
        let tmpfs = At::Path(Path::new("tmpfs"));
        s.mount(
            Some(tmpfs),
            At::Fd(fd.as_fd()),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
        .map_err(sys("mount ro tmpfs"))
    } else {
        s.mount(
            Some(At::Fd(null.as_fd())),
            At::Fd(fd.as_fd()),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(sys("bind /dev/null"))
    }
}
