//! Switching to the new root.
//!
//! pivot_root, the runc/LXC way without a put-old directory: `fchdir(new root)`,
//! `pivot_root(".", ".")` (the old root ends up stacked under the new one), `fchdir(old root)`,
//! make it recursively slave so the unmount cannot propagate to the host, `umount2(".",
//! MNT_DETACH)`, `chdir("/")`.
//!
//! pivot_root cannot move a root that is the initial ramfs/tmpfs ("rootfs") and says EINVAL;
//! then, or when `plugd.no_pivot` asks for it (a test switch, like moby's `DOCKER_RAMDISK`), the
//! fallback is runc's `msMoveRoot`: hide every full proc/sysfs mount of the host first (in a
//! chroot they stay reachable, and their presence lets the sandbox mount a fresh procfs), then
//! `mount(rootfs, "/", MS_MOVE)` and `chroot(".")`.

use std::os::fd::AsFd as _;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::statfs::TMPFS_MAGIC;

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::mountinfo;
use crate::resolve::Root;
use crate::sys::{At, Syscall, magic};

/// `RAMFS_MAGIC` (nix has no constant for it).
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Enters the new root and reopens it as `/`.
pub fn pivot(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let root = ctx
        .root
        .take()
        .ok_or(StepError::PivotRoot(Failure::Refused(
            "the sandbox root is not open".into(),
        )))?;
    let result = match ctx.ext.no_pivot {
        true => move_root(s, &root),
        false => match pivot_root(s, &root) {
            Err(f) if f.errno() == Some(Errno::EINVAL) && on_initramfs(s) => move_root(s, &root),
            other => other,
        },
    };
    result.map_err(StepError::PivotRoot)?;
    drop(root);
    ctx.root = Some(Root::open(s, Path::new("/")).map_err(StepError::PivotRoot)?);
    Ok(())
}

fn pivot_root(s: &dyn Syscall, root: &Root) -> Result<(), Failure> {
    let dot = Path::new(".");
    let old = s
        .open(Path::new("/"), OFlag::O_DIRECTORY | OFlag::O_PATH)
        .map_err(sys("open /"))?;
    s.fchdir(root.fd()).map_err(sys("fchdir new root"))?;
    s.pivot_root(dot, dot).map_err(sys("pivot_root"))?;
    s.fchdir(old.as_fd()).map_err(sys("fchdir old root"))?;
    s.mount(
        None,
        At::Path(dot),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )
    .map_err(sys("make old root rslave"))?;
    s.umount2(At::Path(dot), MntFlags::MNT_DETACH)
        .map_err(sys("unmount old root"))?;
    s.chdir(Path::new("/")).map_err(sys("chdir /"))
}

/// True when `/` is a ramfs or tmpfs, where pivot_root's EINVAL means "initramfs".
fn on_initramfs(s: &dyn Syscall) -> bool {
    s.statfs(At::Path(Path::new("/")))
        .is_ok_and(|f| f.fs_type == RAMFS_MAGIC || f.fs_type == magic(TMPFS_MAGIC))
}

fn move_root(s: &dyn Syscall, root: &Root) -> Result<(), Failure> {
    s.fchdir(root.fd()).map_err(sys("fchdir new root"))?;
    hide_host_pseudo_fs(s, &root.path)?;
    s.mount(
        Some(At::Path(&root.path)),
        At::Path(Path::new("/")),
        None,
        MsFlags::MS_MOVE,
        None,
    )
    .map_err(sys("move rootfs onto /"))?;
    s.chroot(Path::new(".")).map_err(sys("chroot"))?;
    s.chdir(Path::new("/")).map_err(sys("chdir /"))
}

/// Unmounts (or covers with an empty tmpfs) every full proc and sysfs mount outside the rootfs.
fn hide_host_pseudo_fs(s: &dyn Syscall, rootfs: &Path) -> Result<(), Failure> {
    let text = s
        .read_file(Path::new("/proc/self/mountinfo"))
        .map_err(sys("read mountinfo"))?;
    let full = mountinfo::parse(&text).into_iter().filter(|m| {
        m.root == "/"
            && (m.fstype == "proc" || m.fstype == "sysfs")
            && !Path::new(&m.mountpoint).starts_with(rootfs)
    });
    for m in full {
        let p = Path::new(&m.mountpoint);
        match s.mount(
            None,
            At::Path(p),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(sys(format!("make {} rslave", p.display()))(e)),
        }
        match s.umount2(At::Path(p), MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::EPERM) => {
                s.mount(
                    Some(At::Path(Path::new("tmpfs"))),
                    At::Path(p),
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None,
                )
                .map_err(sys(format!("cover {}", p.display())))?;
            }
            Err(e) => return Err(sys(format!("unmount {}", p.display()))(e)),
        }
    }
    Ok(())
}
