//! What dockerd's `initlayer.Setup(rootfs)` puts in a plugin's rootfs before starting it
//! (moby `daemon/initlayer/setup_unix.go`): the directories `/dev/pts`, `/dev/shm`, `/proc`,
//! `/sys`, the empty files `/.dockerenv`, `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`,
//! `/dev/console` (mode 0755, owner 0:0, as dockerd makes them) and the symlink
//! `/etc/mtab -> /proc/mounts`, with their parent directories. Like dockerd's, they are made in
//! the rootfs itself (so they stay there, as they do under dockerd), before any mount.
//!
//! Everything is done relative to directory fds opened one component at a time from the sandbox
//! root with `O_NOFOLLOW`, so nothing in the (untrusted) rootfs can redirect a creation out of
//! it, and nothing is ever followed:
//! - a missing entry is created (`mkdirat`, `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `symlinkat`);
//! - a **symlink** at one of these paths or at a parent (`/etc`, `/dev`) is removed
//!   (`unlinkat` on the link itself) and replaced, as dockerd does, except at `/proc` and `/sys`:
//!   those are left for the mount step to refuse (runc refuses a procfs or sysfs destination that
//!   is a symlink; dockerd's rewrite would accept it);
//! - an existing directory is used, and an existing file (or other non-symlink) is **left as it
//!   is**; under it nothing is created. dockerd also unlinks regular files at these paths and
//!   recreates them empty; plugd keeps the plugin's content (`docs/native-parity.md`).

use std::ffi::OsStr;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::sys::Syscall;

/// What one initlayer path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A directory (0755).
    Dir,
    /// An empty regular file (0755, as dockerd's `os.OpenFile(…, O_CREATE, 0755)`).
    File,
    /// A symlink to this target.
    Symlink(&'static str),
}

/// dockerd's list (a Go map there, so its order varies; this one is fixed).
pub const ENTRIES: [(&str, Entry); 10] = [
    ("/dev/pts", Entry::Dir),
    ("/dev/shm", Entry::Dir),
    ("/proc", Entry::Dir),
    ("/sys", Entry::Dir),
    ("/.dockerenv", Entry::File),
    ("/etc/resolv.conf", Entry::File),
    ("/etc/hosts", Entry::File),
    ("/etc/hostname", Entry::File),
    ("/dev/console", Entry::File),
    ("/etc/mtab", Entry::Symlink("/proc/mounts")),
];

/// Symlinks at these paths are kept (and then refused by the mount step).
const KEEP_LINKS: [&str; 2] = ["/proc", "/sys"];

/// The mode of what dockerd creates.
const MODE: u32 = 0o755;

/// Creates the initlayer entries that are missing (see the module docs).
pub fn setup(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let root = ctx.root().map_err(|source| StepError::InitLayer {
        path: "/".into(),
        source,
    })?;
    for (path, entry) in ENTRIES {
        ensure(s, root.fd(), Path::new(path), entry).map_err(|source| StepError::InitLayer {
            path: path.into(),
            source,
        })?;
    }
    Ok(())
}

/// What is at one name of a directory, not following a symlink.
enum Found {
    Missing,
    Link,
    Dir(OwnedFd),
    Other,
}

fn lookup(s: &dyn Syscall, dir: BorrowedFd<'_>, name: &Path) -> Result<Found, Failure> {
    let fd = match s.openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(Found::Missing),
        Err(e) => return Err(sys(format!("open {}", name.display()))(e)),
    };
    let st = s
        .fstat(fd.as_fd())
        .map_err(sys(format!("fstat {}", name.display())))?;
    Ok(match st.kind() {
        SFlag::S_IFLNK => Found::Link,
        SFlag::S_IFDIR => Found::Dir(fd),
        _ => Found::Other,
    })
}

/// Makes `path` (absolute, no `..`) exist as `entry`, component by component from `root`.
fn ensure(s: &dyn Syscall, root: BorrowedFd<'_>, path: &Path, entry: Entry) -> Result<(), Failure> {
    let names: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut dir: Option<OwnedFd> = None;
    let mut at = std::path::PathBuf::from("/");
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let want = if last { entry } else { Entry::Dir };
        let parent = dir.as_ref().map_or(root, |d| d.as_fd());
        let name = Path::new(name);
        at.push(name);
        let found = match lookup(s, parent, name)? {
            Found::Link if KEEP_LINKS.iter().any(|k| at == Path::new(k)) => return Ok(()),
            Found::Link => {
                s.unlinkat(parent, name)
                    .map_err(sys(format!("remove the symlink {}", at.display())))?;
                Found::Missing
            }
            other => other,
        };
        let next = match found {
            Found::Missing => create(s, parent, name, &at, want)?,
            // An existing directory, or the last entry of the right kind or not: kept.
            Found::Dir(fd) if !last => Some(fd),
            Found::Dir(_) | Found::Other | Found::Link => return Ok(()),
        };
        match next {
            Some(fd) => dir = Some(fd),
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Creates `name` in `dir` (`at` inside the root) as `want`; returns the new directory (to
/// descend into).
fn create(
    s: &dyn Syscall,
    dir: BorrowedFd<'_>,
    name: &Path,
    at: &Path,
    want: Entry,
) -> Result<Option<OwnedFd>, Failure> {
    let mode = Mode::from_bits_truncate(MODE);
    let what = at.display();
    match want {
        Entry::Dir => {
            s.mkdirat(dir, name, mode)
                .map_err(sys(format!("mkdir {what}")))?;
            let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY;
            let fd = s
                .openat(dir, name, flags, Mode::empty())
                .map_err(sys(format!("open {what}")))?;
            s.fchown(fd.as_fd(), 0, 0)
                .map_err(sys(format!("chown {what}")))?;
            Ok(Some(fd))
        }
        Entry::File => {
            let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY;
            let fd = s
                .openat(dir, name, flags, mode)
                .map_err(sys(format!("create {what}")))?;
            s.fchown(fd.as_fd(), 0, 0)
                .map_err(sys(format!("chown {what}")))?;
            Ok(None)
        }
        Entry::Symlink(target) => {
            s.symlinkat(Path::new(target), dir, name)
                .map_err(sys(format!("symlink {what}")))?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Root;
    use crate::sys::recording::{Recording, regular};

    fn run(r: &Recording) -> Result<(), Failure> {
        let root = Root::open(r, Path::new("/rootfs")).unwrap();
        for (path, entry) in ENTRIES {
            ensure(r, root.fd(), Path::new(path), entry)?;
        }
        Ok(())
    }

    fn changes(r: &Recording) -> Vec<String> {
        r.calls()
            .into_iter()
            .filter(|c| {
                ["mkdirat", "unlinkat", "symlinkat", "fchown"]
                    .iter()
                    .any(|k| c.starts_with(k))
                    || c.contains("O_CREAT")
            })
            .collect()
    }

    #[test]
    fn missing_entries_are_created_and_existing_ones_kept() {
        let r = Recording::new();
        r.set_absent("/rootfs/.dockerenv")
            .set_absent("/rootfs/etc/hostname")
            .set_absent("/rootfs/etc/mtab")
            .set_absent("/rootfs/dev")
            .set_absent("/rootfs/dev/pts")
            .set_absent("/rootfs/dev/shm")
            .set_absent("/rootfs/dev/console");
        r.set_stat("/rootfs/etc/hosts", regular(0o644))
            .set_stat("/rootfs/etc/resolv.conf", regular(0o644));
        run(&r).unwrap();
        assert_eq!(
            changes(&r),
            [
                "mkdirat /rootfs/dev 755",
                "fchown fd:/rootfs/dev 0:0",
                "mkdirat /rootfs/dev/pts 755",
                "fchown fd:/rootfs/dev/pts 0:0",
                "mkdirat /rootfs/dev/shm 755",
                "fchown fd:/rootfs/dev/shm 0:0",
                "openat /rootfs/.dockerenv O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/.dockerenv 0:0",
                "openat /rootfs/etc/hostname O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/etc/hostname 0:0",
                "openat /rootfs/dev/console O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/dev/console 0:0",
                "symlinkat /rootfs/etc/mtab -> /proc/mounts",
            ]
        );
    }

    #[test]
    fn symlinks_are_replaced_without_being_followed_but_proc_and_sys_are_kept() {
        let r = Recording::new();
        r.set_symlink("/rootfs/etc", "/home/secret-dir")
            .set_absent("/rootfs/etc/resolv.conf")
            .set_absent("/rootfs/etc/hosts")
            .set_absent("/rootfs/etc/hostname")
            .set_absent("/rootfs/etc/mtab")
            .set_symlink("/rootfs/.dockerenv", "/etc/shadow")
            .set_symlink("/rootfs/proc", "/")
            .set_symlink("/rootfs/sys", "../../sys");
        run(&r).unwrap();
        let calls = r.calls();
        assert!(
            calls.iter().all(|c| !c.starts_with("readlinkat")),
            "{calls:#?}"
        );
        assert_eq!(
            changes(&r),
            [
                "unlinkat /rootfs/.dockerenv",
                "openat /rootfs/.dockerenv O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/.dockerenv 0:0",
                "unlinkat /rootfs/etc",
                "mkdirat /rootfs/etc 755",
                "fchown fd:/rootfs/etc 0:0",
                "openat /rootfs/etc/resolv.conf O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/etc/resolv.conf 0:0",
                "openat /rootfs/etc/hosts O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/etc/hosts 0:0",
                "openat /rootfs/etc/hostname O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755",
                "fchown fd:/rootfs/etc/hostname 0:0",
                "symlinkat /rootfs/etc/mtab -> /proc/mounts",
            ]
        );
        // /proc and /sys stay symlinks: the mount step refuses them.
        assert_eq!(
            r.calls_of("unlinkat"),
            ["unlinkat /rootfs/.dockerenv", "unlinkat /rootfs/etc"]
        );
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_kept_and_nothing_made_under_it() {
        let r = Recording::new();
        r.set_stat("/rootfs/dev", regular(0o644))
            .set_absent("/rootfs/.dockerenv");
        run(&r).unwrap();
        let made = changes(&r);
        assert!(made.iter().all(|c| !c.contains("/rootfs/dev")), "{made:#?}");
        assert!(made.iter().any(|c| c.contains("/rootfs/.dockerenv")));
    }

    #[test]
    fn a_failed_creation_names_the_path() {
        let r = Recording::new();
        r.set_absent("/rootfs/.dockerenv").fail_matching(
            "openat",
            "/rootfs/.dockerenv O_CREAT",
            Errno::EROFS,
        );
        let err = run(&r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "create /.dockerenv: EROFS: Read-only file system"
        );
    }
}
