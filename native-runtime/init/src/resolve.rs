//! Paths inside the sandbox root, resolved so that nothing in an (untrusted) plugin rootfs can
//! redirect the init to a host path: every lookup is `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` from the root's fd (symlinks are followed, but `/` and `..` stop at
//! the root, and `/proc/self/...` magic links are refused), missing components are created with
//! `*at` calls relative to an already-resolved parent (`O_NOFOLLOW`, `O_EXCL`), and what the
//! caller gets is an `O_PATH` fd to mount on — never a path for the kernel to resolve again
//! (runc's CVE-2021-30465 / CVE-2024-45310 / CVE-2026-41579 class).
//!
//! A dangling symlink in the rootfs (`/etc/resolv.conf -> ../run/resolv.conf`) is followed
//! inside the root and its target created there, as runc does.

use std::ffi::OsString;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Failure, sys};
use crate::sys::Syscall;

/// How many symlinks one creation may follow (the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// The sandbox root: an `O_PATH` fd and the path it has as seen from the current root
/// (the host rootfs path before pivot_root, `/` after).
#[derive(Debug)]
pub struct Root {
    /// The root directory.
    pub fd: OwnedFd,
    /// Its path from the process's current root, as the kernel reports it.
    pub path: PathBuf,
}

/// What to create when a destination is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (mount points for directories and filesystems).
    Dir,
    /// An empty file (mount points for file binds).
    File,
}

impl Root {
    /// Opens `path` as the root (host path before pivot, `/` after) and records where the
    /// kernel says it is.
    pub fn open(s: &dyn Syscall, path: &Path) -> Result<Root, Failure> {
        let fd = s
            .open(path, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(sys(format!("open {}", path.display())))?;
        let path = s.fd_path(fd.as_fd()).map_err(sys("readlink root fd"))?;
        Ok(Root { fd, path })
    }

    /// The root fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `dest` made relative to the root, with `.`, `..` and repeated slashes resolved lexically
/// (`..` stops at the root), as an absolute path.
pub fn clean(dest: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Looks `dest` up inside the root as an `O_PATH` fd (plus `extra` flags).
pub fn open(s: &dyn Syscall, root: &Root, dest: &Path, extra: OFlag) -> Result<OwnedFd, Errno> {
    s.open_in_root(root.fd(), &clean(dest), OFlag::O_PATH | extra)
}

/// Splits a clean path into its parent and last component; None for `/`.
fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    Some((
        path.parent()?.to_path_buf(),
        path.file_name()?.to_os_string(),
    ))
}

/// Opens `dest` inside the root, creating it (as `kind`) and any missing parent directories.
/// Returns the fd and whether it already existed.
pub fn open_or_create(
    s: &dyn Syscall,
    root: &Root,
    dest: &Path,
    kind: Kind,
) -> Result<(OwnedFd, bool), Failure> {
    let dest = clean(dest);
    match open(s, root, &dest, OFlag::empty()) {
        Ok(fd) => Ok((fd, true)),
        Err(Errno::ENOENT) => create(s, root, &dest, kind, 0).map(|fd| (fd, false)),
        Err(e) => Err(sys(format!("openat2 {}", dest.display()))(e)),
    }
}

/// The parent directory of `dest` (created if missing) and the last component's name, for
/// calls that create the last component themselves (mknodat, symlinkat).
pub fn parent_of(
    s: &dyn Syscall,
    root: &Root,
    dest: &Path,
) -> Result<(OwnedFd, OsString), Failure> {
    let dest = clean(dest);
    let (parent, name) = split(&dest)
        .ok_or_else(|| Failure::Refused(format!("{} is the sandbox root", dest.display())))?;
    let (fd, _) = open_or_create(s, root, &parent, Kind::Dir)?;
    Ok((fd, name))
}

/// Creates the missing `path` (clean, absolute) and returns an `O_PATH` fd to it.
fn create(
    s: &dyn Syscall,
    root: &Root,
    path: &Path,
    kind: Kind,
    links: usize,
) -> Result<OwnedFd, Failure> {
    if links > MAX_LINKS {
        return Err(Failure::Refused(format!(
            "{}: too many symlinks",
            path.display()
        )));
    }
    let (parent, name) =
        split(path).ok_or_else(|| Failure::Refused("the sandbox root does not exist".into()))?;
    let (dir, _) = open_or_create(s, root, &parent, Kind::Dir)?;
    let name = Path::new(&name);
    match make(s, dir.as_fd(), name, kind) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return follow(s, root, dir.as_fd(), &parent, name, kind, links),
        Err(e) => return Err(sys(format!("create {}", path.display()))(e)),
    }
    let dir_flag = if kind == Kind::Dir {
        OFlag::O_DIRECTORY
    } else {
        OFlag::empty()
    };
    s.openat(
        dir.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | dir_flag,
        Mode::empty(),
    )
    .map_err(sys(format!("reopen {}", path.display())))
}

/// Creates one directory entry without following a symlink there.
fn make(s: &dyn Syscall, dir: BorrowedFd<'_>, name: &Path, kind: Kind) -> Result<(), Errno> {
    match kind {
        Kind::Dir => match s.mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
            // A directory that appeared meanwhile is as good as ours.
            Err(Errno::EEXIST) => match s.openat(dir, name, dir_nofollow(), Mode::empty()) {
                Ok(_) => Ok(()),
                Err(_) => Err(Errno::EEXIST),
            },
            other => other,
        },
        Kind::File => {
            let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY;
            s.openat(dir, name, flags, Mode::from_bits_truncate(0o644))
                .map(drop)
        }
    }
}

fn dir_nofollow() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY
}

/// `name` exists but its full path did not resolve: a symlink whose target is missing.
/// Creates the target inside the root instead.
fn follow(
    s: &dyn Syscall,
    root: &Root,
    dir: BorrowedFd<'_>,
    parent: &Path,
    name: &Path,
    kind: Kind,
    links: usize,
) -> Result<OwnedFd, Failure> {
    let target = s
        .readlinkat(dir, name)
        .map_err(sys(format!("readlink {}", parent.join(name).display())))?;
    let next = clean(&parent.join(target));
    match open(s, root, &next, OFlag::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => create(s, root, &next, kind, links + 1),
        Err(e) => Err(sys(format!("openat2 {}", next.display()))(e)),
    }
}

/// Where `fd` is inside the root, as an absolute in-root path; refuses an fd outside it.
pub fn in_root_path(s: &dyn Syscall, root: &Root, fd: BorrowedFd<'_>) -> Result<PathBuf, Failure> {
    let full = s.fd_path(fd).map_err(sys("readlink mount point fd"))?;
    let rel = full
        .strip_prefix(&root.path)
        .map_err(|_| Failure::Refused(format!("{} is outside the sandbox root", full.display())))?;
    Ok(Path::new("/").join(rel))
}

/// After mounting on `fd`, an fd to the new mount on top (the old fd still points at the
/// covered directory, where a remount or propagation change would hit the wrong mount). As in
/// runc's `reopenAfterMount`: re-resolve the same in-root path and check it did not move.
pub fn reopen(s: &dyn Syscall, root: &Root, fd: BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
    let path = in_root_path(s, root, fd)?;
    let new =
        open(s, root, &path, OFlag::empty()).map_err(sys(format!("reopen {}", path.display())))?;
    let again = in_root_path(s, root, new.as_fd())?;
    if again != path {
        return Err(Failure::Refused(format!(
            "mount point {} moved to {} while reopening",
            path.display(),
            again.display()
        )));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::recording::Recording;

    fn root(r: &Recording) -> Root {
        Root::open(r, Path::new("/rootfs")).unwrap()
    }

    #[test]
    fn clean_stops_dotdot_at_the_root() {
        assert_eq!(
            clean(Path::new("/../../etc//./hosts")),
            Path::new("/etc/hosts")
        );
        assert_eq!(clean(Path::new("data/../x")), Path::new("/x"));
        assert_eq!(clean(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn missing_parents_are_created_relative_to_resolved_dirs() {
        let r = Recording::new();
        r.set_absent("/rootfs/a").set_absent("/rootfs/a/b");
        let rt = root(&r);
        let (_, existed) = open_or_create(&r, &rt, Path::new("/a/b"), Kind::File).unwrap();
        assert!(!existed);
        let made: Vec<_> = r
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("mkdirat") || c.contains("O_CREAT"))
            .collect();
        assert_eq!(
            made,
            [
                "mkdirat /rootfs/a 755",
                "openat /rootfs/a/b O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 644",
            ]
        );
    }

    #[test]
    fn dangling_symlink_target_is_created_inside_the_root() {
        let r = Recording::new();
        r.set_symlink("/rootfs/etc/hosts", "/etc/shadow")
            .set_absent("/rootfs/etc/shadow");
        let rt = root(&r);
        open_or_create(&r, &rt, Path::new("/etc/hosts"), Kind::File).unwrap();
        let calls = r.calls();
        assert!(
            calls.contains(&"readlinkat /rootfs/etc/hosts".to_string()),
            "{calls:#?}"
        );
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("openat /rootfs/etc/shadow O_CREAT|O_EXCL")),
            "{calls:#?}"
        );
    }

    #[test]
    fn symlink_loops_are_refused() {
        let r = Recording::new();
        r.set_symlink("/rootfs/a", "/b")
            .set_symlink("/rootfs/b", "/a");
        let rt = root(&r);
        let err = open_or_create(&r, &rt, Path::new("/a"), Kind::Dir).unwrap_err();
        assert!(err.to_string().contains("too many symlinks"), "{err}");
    }

    #[test]
    fn fds_outside_the_root_are_refused() {
        let r = Recording::new();
        let rt = root(&r);
        let other = r.open(Path::new("/etc"), OFlag::O_PATH).unwrap();
        let err = in_root_path(&r, &rt, other.as_fd()).unwrap_err();
        assert!(err.to_string().contains("outside the sandbox root"));
    }
}
