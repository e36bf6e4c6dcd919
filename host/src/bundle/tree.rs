//! Writing into the staging rootfs without ever following a symlink.
//!
//! The archive may legitimately contain symlinks pointing anywhere (`etc/mtab -> /proc/mounts`): they
//! are resolved inside the plugin's own root at run time. What must never happen is that *we* resolve
//! one while unpacking, or a `rootfs/a -> /etc` entry followed by `rootfs/a/passwd` writes to the
//! host's `/etc`. So every operation starts from the rootfs directory fd and walks one component at a
//! time with `openat(O_NOFOLLOW | O_DIRECTORY)`, and the final component is only ever created with
//! `O_EXCL`/`mkdirat`/`symlinkat`/`linkat`, none of which follow a symlink in the last position.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use super::name::Components;

/// Mode of directories the archive implies but does not list, as dockerd and GNU tar create them.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Why an operation on the tree failed. Indices point into the components passed in, so the caller
/// can name the exact offending prefix.
#[derive(Debug)]
pub(super) enum TreeError {
    /// `components[..=i]` is a symlink and would have to be followed.
    Symlink(usize),
    /// `components[..=i]` exists and is neither a directory nor a symlink.
    NotDir(usize),
    /// The entry's own path is a directory and the entry is not.
    ReplacesDir,
    /// A hardlink's target is missing or not a regular file.
    LinkTarget,
    /// A syscall failed for another reason.
    Sys(&'static str, Errno),
}

type Result<T> = std::result::Result<T, TreeError>;

/// The rootfs being unpacked, addressed only through its directory fd.
pub(super) struct Tree {
    root: OwnedFd,
    /// The last directory walked to; tar writers emit a directory's entries together, so this saves
    /// most of the per-component `openat` calls. Sound because a directory is never replaced once
    /// created ([`TreeError::ReplacesDir`]), so a cached fd always names what its path names.
    cache: Option<(Components, OwnedFd)>,
}

impl Tree {
    /// Opens the (already created, empty) rootfs directory.
    pub(super) fn open(rootfs: &Path) -> std::result::Result<Tree, Errno> {
        let root = openat(nix::fcntl::AT_FDCWD, rootfs, dir_flags(), Mode::empty())?;
        fchmod(&root, Mode::from_bits_truncate(IMPLIED_DIR_MODE))?;
        Ok(Tree { root, cache: None })
    }

    /// Creates a directory at `path` (parents implied), replacing a non-directory that is in the way.
    pub(super) fn mkdir(&mut self, path: &[Vec<u8>]) -> Result<()> {
        let (dir, name) = split(path);
        let parent = self.dir(dir, true)?;
        match kind_at(parent, name)? {
            Some(SFlag::S_IFDIR) => return Ok(()),
            Some(_) => unlink(parent, name)?,
            None => {}
        }
        make_dir(parent, name)?;
        Ok(())
    }

    /// Creates an empty regular file at `path` for the caller to fill, replacing a non-directory.
    pub(super) fn create_file(&mut self, path: &[Vec<u8>]) -> Result<File> {
        let (dir, name) = split(path);
        let parent = self.dir(dir, true)?;
        clear_slot(parent, name)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            parent,
            name.as_slice(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| TreeError::Sys("create file", e))?;
        Ok(File::from(fd))
    }

    /// Creates a symlink at `path` pointing at `target`, which is stored verbatim and never resolved.
    pub(super) fn symlink(&mut self, path: &[Vec<u8>], target: &[u8]) -> Result<()> {
        let (dir, name) = split(path);
        let parent = self.dir(dir, true)?;
        clear_slot(parent, name)?;
        symlinkat(target, parent, name.as_slice()).map_err(|e| TreeError::Sys("create symlink", e))
    }

    /// Creates `path` as another name for the regular file `target` (both relative to the rootfs).
    pub(super) fn hardlink(&mut self, path: &[Vec<u8>], target: &[Vec<u8>]) -> Result<()> {
        let (target_dir, target_name) = split(target);
        let target_parent = self
            .walk(self.root.as_fd(), target_dir, 0, false)
            .map_err(|_| TreeError::LinkTarget)?;
        if kind_at(target_parent.as_fd(), target_name)? != Some(SFlag::S_IFREG) {
            return Err(TreeError::LinkTarget);
        }
        let (dir, name) = split(path);
        let parent = self.dir(dir, true)?;
        clear_slot(parent, name)?;
        // No AT_SYMLINK_FOLLOW: even if the target were a symlink, the link would be to the symlink.
        linkat(
            &target_parent,
            target_name.as_slice(),
            parent,
            name.as_slice(),
            AtFlags::empty(),
        )
        .map_err(|e| TreeError::Sys("create hardlink", e))
    }

    /// Sets the owner of the symlink at `path` itself.
    pub(super) fn chown_symlink(&mut self, path: &[Vec<u8>], uid: u32, gid: u32) -> Result<()> {
        let (dir, name) = split(path);
        let parent = self.dir(dir, false)?;
        fchownat(
            parent,
            name.as_slice(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| TreeError::Sys("chown", e))
    }

    /// Applies an existing directory's final owner and mode.
    pub(super) fn set_dir_meta(
        &mut self,
        path: &[Vec<u8>],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        let fd = self.dir(path, false)?;
        if let Some((uid, gid)) = owner {
            fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| TreeError::Sys("chown", e))?;
        }
        fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|e| TreeError::Sys("chmod", e))
    }

    /// Removes whatever is at `path` (a whole directory tree included) without following a symlink
    /// anywhere: for whiteouts. Nothing there, or a non-directory on the way, is not an error (there
    /// is nothing to remove); a symlink on the way is, as for every other entry.
    pub(super) fn remove(&mut self, path: &[Vec<u8>]) -> Result<()> {
        let (dir, name) = split(path);
        let Some(parent) = absent_is_none(self.dir(dir, false))? else {
            return Ok(());
        };
        match kind_at(parent, name)? {
            None => return Ok(()),
            Some(SFlag::S_IFDIR) => {
                // std's remove_dir_all opens each level with O_NOFOLLOW relative to the one above;
                // `/proc/self/fd/N` names this very directory, not a path that could be swapped.
                let at = in_proc(parent).join(std::ffi::OsStr::from_bytes(name));
                std::fs::remove_dir_all(&at).map_err(|e| TreeError::Sys("remove", errno_of(&e)))?;
            }
            Some(_) => return unlink(parent, name),
        }
        if matches!(&self.cache, Some((cached, _)) if cached.starts_with(path)) {
            self.cache = None;
        }
        Ok(())
    }

    /// The names in the directory at `path`, each with whether it is a directory (not following a
    /// symlink); empty if there is no directory there.
    pub(super) fn children(&mut self, path: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, bool)>> {
        let Some(fd) = absent_is_none(self.dir(path, false))? else {
            return Ok(Vec::new());
        };
        let sys = |e: std::io::Error| TreeError::Sys("read directory", errno_of(&e));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(in_proc(fd)).map_err(sys)? {
            let entry = entry.map_err(sys)?;
            let is_dir = entry.file_type().map_err(sys)?.is_dir();
            out.push((entry.file_name().into_vec(), is_dir));
        }
        Ok(out)
    }

    /// The directory at `path`, walked from the cached directory when it is a prefix.
    fn dir(&mut self, path: &[Vec<u8>], create: bool) -> Result<BorrowedFd<'_>> {
        if path.is_empty() {
            return Ok(self.root.as_fd());
        }
        let start = match &self.cache {
            Some((cached, _)) if path.starts_with(cached) => cached.len(),
            _ => 0,
        };
        if start < path.len() {
            let from = match &self.cache {
                Some((_, fd)) if start > 0 => fd.as_fd(),
                _ => self.root.as_fd(),
            };
            let fd = self.walk(from, path, start, create)?;
            self.cache = Some((path.to_vec(), fd));
        }
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("cache was just filled"))
    }

    /// Opens `path[start..]` below `from` (which is `path[..start]`), one component at a time.
    fn walk(
        &self,
        from: BorrowedFd<'_>,
        path: &[Vec<u8>],
        start: usize,
        create: bool,
    ) -> Result<OwnedFd> {
        let mut current: Option<OwnedFd> = None;
        for (i, name) in path.iter().enumerate().skip(start) {
            let base = current.as_ref().map_or(from, |fd| fd.as_fd());
            current = Some(open_dir(base, name, create).map_err(|e| match e {
                Step::Symlink => TreeError::Symlink(i),
                Step::NotDir => TreeError::NotDir(i),
                Step::Sys(op, errno) => TreeError::Sys(op, errno),
            })?);
        }
        match current {
            Some(fd) => Ok(fd),
            None => from
                .try_clone_to_owned()
                .map_err(|e| TreeError::Sys("dup", errno_of(&e))),
        }
    }
}

/// Why one step of a walk failed.
enum Step {
    Symlink,
    NotDir,
    Sys(&'static str, Errno),
}

/// Opens the directory `name` in `parent` without following a symlink, creating it if asked.
fn open_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    create: bool,
) -> std::result::Result<OwnedFd, Step> {
    match openat(parent, name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) if create => make_dir(parent, name).map_err(|e| match e {
            TreeError::Sys(op, errno) => Step::Sys(op, errno),
            _ => Step::Sys("create directory", Errno::EIO),
        }),
        // O_NOFOLLOW|O_DIRECTORY on a symlink gives ELOOP or ENOTDIR depending on the kernel path
        // taken; ask what is really there so the message is right.
        Err(Errno::ELOOP | Errno::ENOTDIR) => match kind_at(parent, name) {
            Ok(Some(SFlag::S_IFLNK)) => Err(Step::Symlink),
            Ok(_) => Err(Step::NotDir),
            Err(TreeError::Sys(op, errno)) => Err(Step::Sys(op, errno)),
            Err(_) => Err(Step::NotDir),
        },
        Err(errno) => Err(Step::Sys("open directory", errno)),
    }
}

/// `mkdirat` then an explicit `fchmod`, so the umask does not decide the mode; returns the new
/// directory's fd.
fn make_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd> {
    mkdirat(parent, name, Mode::from_bits_truncate(0o700))
        .map_err(|e| TreeError::Sys("create directory", e))?;
    let fd = openat(parent, name, dir_flags(), Mode::empty())
        .map_err(|e| TreeError::Sys("open directory", e))?;
    fchmod(&fd, Mode::from_bits_truncate(IMPLIED_DIR_MODE))
        .map_err(|e| TreeError::Sys("chmod", e))?;
    Ok(fd)
}

/// Makes room for a non-directory at `name`: a later tar entry replaces an earlier one (as with
/// dockerd), except that a directory is never replaced (that would need a recursive removal, and
/// would invalidate the walk cache).
fn clear_slot(parent: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    match kind_at(parent, name)? {
        None => Ok(()),
        Some(SFlag::S_IFDIR) => Err(TreeError::ReplacesDir),
        Some(_) => unlink(parent, name),
    }
}

fn unlink(parent: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
        .map_err(|e| TreeError::Sys("remove existing entry", e))
}

/// The file type at `name` (not following a symlink), `None` if nothing is there.
fn kind_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<Option<SFlag>> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(
            st.st_mode & SFlag::S_IFMT.bits(),
        ))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(TreeError::Sys("stat", e)),
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn split(path: &[Vec<u8>]) -> (&[Vec<u8>], &Vec<u8>) {
    let (name, dir) = path
        .split_last()
        .expect("entry paths below the rootfs are never empty");
    (dir, name)
}

/// A directory fd as a path that reopens exactly it.
fn in_proc(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A walk that found nothing to walk to (missing, or a non-directory on the way) as `None`.
fn absent_is_none<T>(walked: Result<T>) -> Result<Option<T>> {
    match walked {
        Ok(fd) => Ok(Some(fd)),
        Err(TreeError::NotDir(_) | TreeError::Sys(_, Errno::ENOENT)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}
