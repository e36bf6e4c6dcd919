//! Opening a path inside a plugin's filesystem, the one way plugd does it.
//!
//! A plugin's rootfs and propagated mount are written by the plugin: any component of a path in
//! them may be a symlink to `/etc`, a `..`, or a device node or FIFO planted while plugd looks. plugd
//! runs as root, so it never opens such a path with the host's view. [`InRoot::resolve`] resolves a
//! path as the plugin sees it — the root as `/`, symlinks followed but clamped to it, `..` stopping
//! at it, magic links refused — and returns an `O_PATH` descriptor, which opens nothing: no device
//! driver's `open`, no FIFO wait. Only after the descriptor's type is checked does a caller read
//! through it ([`read_regular`]), and what it reads is that very inode, whatever is renamed later.
//!
//! Resolution is `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`. Where the kernel lacks it
//! (Linux < 5.6) or a seccomp filter refuses it, the one fallback is a component-by-component
//! walk with `O_NOFOLLOW` that refuses every symlink and every `..`: stricter, never looser.

#![deny(unsafe_code)]

pub mod mount;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, open, openat, openat2};
pub use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// How paths are resolved; `Walk` is the fallback, selectable so tests cover it on any kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT)`, falling back to [`Resolver::Walk`] on `ENOSYS`/`EPERM`.
    Openat2,
    /// `openat(O_NOFOLLOW)` per component: any symlink or `..` fails.
    Walk,
}

/// A directory treated as `/` for the paths resolved in it.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
    resolver: Resolver,
}

impl InRoot {
    /// Opens `root` (a host path plugd chose, never one a plugin named).
    pub fn open(root: &Path) -> std::io::Result<InRoot> {
        let root = open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(InRoot {
            root,
            resolver: Resolver::Openat2,
        })
    }

    /// The same root resolved with `resolver` (tests force the fallback with it).
    pub fn with_resolver(mut self, resolver: Resolver) -> InRoot {
        self.resolver = resolver;
        self
    }

    /// An `O_PATH` descriptor of `path` (absolute or not, always taken from the root). `""` and `/`
    /// are the root itself.
    pub fn resolve(&self, path: &str) -> Result<OwnedFd, Errno> {
        self.resolve_with(path, OFlags::empty())
    }

    /// Like [`InRoot::resolve`], but the result must be a directory (`ENOTDIR` otherwise).
    pub fn resolve_dir(&self, path: &str) -> Result<OwnedFd, Errno> {
        self.resolve_with(path, OFlags::DIRECTORY)
    }

    fn resolve_with(&self, path: &str, extra: OFlags) -> Result<OwnedFd, Errno> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let flags = OFlags::PATH | OFlags::CLOEXEC | extra;
        match self.resolver {
            Resolver::Openat2 => {
                let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
                match openat2(&self.root, rel, flags, Mode::empty(), how) {
                    Err(Errno::NOSYS | Errno::PERM) => walk_nofollow(&self.root, rel, flags),
                    other => other,
                }
            }
            Resolver::Walk => walk_nofollow(&self.root, rel, flags),
        }
    }
}

/// Opens `rel` below `root` one component at a time with `O_NOFOLLOW`: a symlink anywhere fails
/// (`ELOOP` for the last component, `ENOTDIR` before it) and `..` fails with `EXDEV`.
fn walk_nofollow(root: &OwnedFd, rel: &str, last: OFlags) -> Result<OwnedFd, Errno> {
    let parts: Vec<_> = Path::new(rel)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let mut fd: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else {
            return Err(Errno::XDEV);
        };
        let at = fd.as_ref().unwrap_or(root);
        let flags = if i + 1 == parts.len() {
            last | OFlags::NOFOLLOW
        } else {
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
        };
        fd = Some(openat(at, *name, flags, Mode::empty())?);
    }
    let fd = match fd {
        Some(fd) => fd,
        None => openat(root, ".", last, Mode::empty())?,
    };
    // `O_PATH | O_NOFOLLOW` opens a final symlink itself instead of failing: refuse it here.
    if file_type(&fd)? == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    Ok(fd)
}

/// The file type of a descriptor (an `O_PATH` one included).
pub fn file_type(fd: &impl AsFd) -> Result<FileType, Errno> {
    Ok(FileType::from_raw_mode(fstat(fd)?.st_mode))
}

/// Opens the regular file behind an `O_PATH` descriptor for reading. Anything else — a device
/// node, a FIFO, a socket, a directory — is refused before it is opened, so no driver's `open`
/// runs and no FIFO can make plugd wait. The reopen goes through `/proc/self/fd`, which names the
/// inode checked, not a path that could have changed since.
pub fn read_regular(fd: &OwnedFd) -> std::io::Result<File> {
    let ft = file_type(fd)?;
    if ft != FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is not a regular file (it is {})", describe(ft)),
        ));
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let file = open(
        proc_path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    Ok(File::from(file))
}

/// The host path of a descriptor as the kernel names it now.
pub fn fd_path(fd: &impl AsRawFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A file type in words, for messages.
pub fn describe(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/file"), "inside").unwrap();
        std::fs::write(dir.path().join("outside"), "outside").unwrap();
        symlink("/etc/file", root.join("abs")).unwrap();
        symlink("../../../outside", root.join("up")).unwrap();
        symlink("/proc/self/root/etc", root.join("magic")).unwrap();
        (dir, root)
    }

    fn read(root: &InRoot, path: &str) -> Result<String, String> {
        let fd = root.resolve(path).map_err(|e| e.to_string())?;
        let mut s = String::new();
        read_regular(&fd)
            .map_err(|e| e.to_string())?
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn symlinks_are_clamped_to_the_root() {
        let (_d, root) = fixture();
        let r = InRoot::open(&root).unwrap();
        assert_eq!(read(&r, "/etc/file").unwrap(), "inside");
        assert_eq!(
            read(&r, "/abs").unwrap(),
            "inside",
            "absolute link = inside the root"
        );
        // `../../../outside` stops at the root: `/outside` inside it does not exist.
        assert!(read(&r, "/up").is_err());
        assert!(read(&r, "/../../outside").is_err());
        assert!(r.resolve("/magic/file").is_err(), "magic links refused");
    }

    #[test]
    fn the_fallback_refuses_every_symlink_and_dotdot() {
        let (_d, root) = fixture();
        let r = InRoot::open(&root).unwrap().with_resolver(Resolver::Walk);
        assert_eq!(read(&r, "etc/file").unwrap(), "inside");
        assert_eq!(r.resolve("/abs").unwrap_err(), Errno::LOOP);
        assert_eq!(r.resolve("/etc/../etc/file").unwrap_err(), Errno::XDEV);
        assert!(r.resolve_dir("/").is_ok());
    }

    #[test]
    fn special_files_are_never_opened() {
        let (_d, root) = fixture();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let r = InRoot::open(&root).unwrap();
        // A FIFO opened for reading would block until a writer came: refused before opening.
        let err = read(&r, "/fifo").unwrap_err();
        assert!(err.contains("a FIFO"), "{err}");
        let err = read(&r, "/etc").unwrap_err();
        assert!(err.contains("a directory"), "{err}");
        // Through a link to a host device: the link resolves inside the root, where there is none.
        symlink("/dev/zero", root.join("zero")).unwrap();
        assert!(read(&r, "/zero").is_err());
    }

    #[test]
    fn resolve_dir_wants_a_directory() {
        let (_d, root) = fixture();
        let r = InRoot::open(&root).unwrap();
        assert!(r.resolve_dir("/etc").is_ok());
        assert_eq!(r.resolve_dir("/etc/file").unwrap_err(), Errno::NOTDIR);
        let p = fd_path(&r.resolve_dir("").unwrap()).unwrap();
        assert_eq!(p, root.canonicalize().unwrap());
    }
}
