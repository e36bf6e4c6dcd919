//! Detached mount trees with attributes set before anyone can see them: the one place plugd calls
//! `mount_setattr(2)` (rustix has no wrapper; Linux ≥ 5.12).
//!
//! A tree cloned with `open_tree(OPEN_TREE_CLONE)` is attached to no path: plugd sets its
//! attributes (`nodev`, `nosuid`, ...) while it is still invisible and only then, if at all,
//! attaches it (`move_mount`). There is no moment at which the mount exists without them.
#![allow(unsafe_code)]

use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// `MOUNT_ATTR_RDONLY`.
pub const RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub const NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub const NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub const NOEXEC: u64 = 0x8;
/// `MS_PRIVATE`, as a propagation type.
pub const PRIVATE: u64 = 1 << 18;

/// `struct mount_attr` of `<linux/mount.h>` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at the directory `dir` (an `O_PATH` descriptor), with the mounts
/// below it when `recursive`.
pub fn clone_tree(dir: &impl AsFd, recursive: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(open_tree(dir, "", flags)?)
}

/// Sets `attrs` (the `RDONLY`… bits) and, if non-zero, the `propagation` type on the tree `tree`
/// (all of it when `recursive`).
pub fn set_attrs(
    tree: &impl AsFd,
    attrs: u64,
    propagation: u64,
    recursive: bool,
) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is a NUL-terminated empty string, `attr` is a live `mount_attr` whose size
    // is passed with it, and the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_fd().as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Attaches the detached `tree` on the existing directory `target`.
pub fn attach(tree: &impl AsFd, target: &Path) -> std::io::Result<()> {
    Ok(move_mount(
        tree,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?)
}
