//! The seam between sandbox policy and the kernel.
//!
//! Every privileged or state-changing call the init makes goes through [`Syscall`], so the step
//! code can be run against `recording::Recording` (tests only: no root, exact call log, injected errors)
//! as well as against [`linux::Linux`], the one module that talks to the kernel. The methods are
//! deliberately thin: one kernel operation each, no policy, no retries — policy (fallbacks,
//! verification, ordering) lives in the steps where the tests can see it.

pub mod linux;
#[cfg(test)]
pub mod recording;

use std::ffi::{CStr, CString};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// What every [`Syscall`] method returns: the kernel's errno on failure.
pub type SysResult<T> = Result<T, Errno>;

/// A mount source or target: a plain path, or an open file (mounted through
/// `/proc/self/fd/N`, so the kernel never re-resolves an untrusted path).
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// A path resolved by the kernel (only for trusted host paths or after pivot_root).
    Path(&'a Path),
    /// An fd whose object is the target (`/proc/self/fd/N`).
    Fd(BorrowedFd<'a>),
}

/// The parts of `struct stat` the init checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// `st_rdev`: device number for device nodes.
    pub rdev: u64,
}

impl FileStat {
    /// The `S_IFMT` part of the mode.
    pub fn kind(&self) -> SFlag {
        SFlag::from_bits_truncate(self.mode & SFlag::S_IFMT.bits())
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind() == SFlag::S_IFDIR
    }
}

/// The parts of `struct statfs` the init checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStat {
    /// `f_type`: the filesystem magic.
    pub fs_type: i64,
    /// `f_flags`: `ST_*` mount flags (same bit values as `MS_RDONLY|NOSUID|NODEV|NOEXEC`).
    pub flags: u64,
}

/// A filesystem magic (`FsType`) as [`FsStat::fs_type`] holds it.
#[allow(clippy::unnecessary_cast)] // `fs_type_t` is i64 with glibc but an unsigned long with musl
pub fn magic(t: nix::sys::statfs::FsType) -> i64 {
    t.0 as i64
}

/// The three capability sets `capset(2)` takes, as bit masks (bit = capability number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
}

/// Which side of a clone the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process; the new process has this pid (in the caller's pid namespace).
    Parent(i32),
    /// The new process.
    Child,
}

/// Every privileged call the init makes. See the module docs.
pub trait Syscall {
    /// `clone(CLONE_PARENT | flags)` fork-style (no new stack): the child is the caller's
    /// parent's child, so the daemon reaps the plugin directly.
    fn clone_parent(&self, flags: CloneFlags) -> SysResult<Forked>;
    /// `unshare(flags)`; only used for namespaces `clone` cannot create (time).
    fn unshare(&self, flags: CloneFlags) -> SysResult<()>;
    /// `setsid()`.
    fn setsid(&self) -> SysResult<()>;
    /// `sethostname(name)`.
    fn sethostname(&self, name: &str) -> SysResult<()>;

    /// `open(path)` with `O_CLOEXEC` added: host paths and post-pivot paths only.
    fn open(&self, path: &Path, flags: OFlag) -> SysResult<OwnedFd>;
    /// `openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` with `O_CLOEXEC` added:
    /// symlinks are followed but never out of `root`, and `/proc` magic links not at all.
    fn open_in_root(&self, root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> SysResult<OwnedFd>;
    /// `openat(dir, name, flags, mode)` with `O_CLOEXEC` added.
    fn openat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        flags: OFlag,
        mode: Mode,
    ) -> SysResult<OwnedFd>;
    /// `mkdirat(dir, name, mode)`.
    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &Path, mode: Mode) -> SysResult<()>;
    /// `mknodat(dir, name, kind | perm, dev)`.
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> SysResult<()>;
    /// `symlinkat(target, dir, name)`.
    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &Path) -> SysResult<()>;
    /// `unlinkat(dir, name, 0)`: removes the entry itself (a symlink is not followed).
    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &Path) -> SysResult<()>;
    /// `readlinkat(dir, name)`: a symlink's target, to follow it inside the root.
    fn readlinkat(&self, dir: BorrowedFd<'_>, name: &Path) -> SysResult<PathBuf>;
    /// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`: works on `O_PATH` fds.
    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> SysResult<()>;
    /// `fstat(fd)`.
    fn fstat(&self, fd: BorrowedFd<'_>) -> SysResult<FileStat>;
    /// `stat(path)` (follows symlinks): host bind sources, post-pivot executables.
    fn stat(&self, path: &Path) -> SysResult<FileStat>;
    /// `statfs(path)` or `fstatfs(fd)`.
    fn statfs(&self, at: At<'_>) -> SysResult<FsStat>;
    /// `readlink(/proc/self/fd/N)`: where an fd really is, as seen from the current root.
    fn fd_path(&self, fd: BorrowedFd<'_>) -> SysResult<PathBuf>;
    /// Read a whole (small) file: `/proc/self/mountinfo`, `/proc/self/cgroup`, `/etc/passwd`.
    fn read_file(&self, path: &Path) -> SysResult<String>;
    /// Write a whole (small) file: `cgroup.procs`.
    fn write_file(&self, path: &Path, data: &str) -> SysResult<()>;
    /// `write(fd, data)` until done: messages on the error pipe.
    fn write_fd(&self, fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<()>;
    /// `dup3(fd, target, 0)`: stdio.
    fn dup3(&self, fd: BorrowedFd<'_>, target: RawFd) -> SysResult<()>;
    /// `umask(mode)`, returning the previous mask.
    fn umask(&self, mode: Mode) -> Mode;
    /// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`.
    fn close_range_cloexec(&self, first: u32) -> SysResult<()>;
    /// True when the read end of the pipe whose write end is `fd` is closed (`POLLERR`): the
    /// process waiting on it (plugd-init) is gone.
    fn reader_gone(&self, fd: BorrowedFd<'_>) -> bool;

    /// `mount(source, target, fstype, flags, data)`.
    fn mount(
        &self,
        source: Option<At<'_>>,
        target: At<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    /// `umount2(target, flags)`.
    fn umount2(&self, target: At<'_>, flags: MntFlags) -> SysResult<()>;
    /// `pivot_root(new_root, put_old)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    /// `chroot(path)`.
    fn chroot(&self, path: &Path) -> SysResult<()>;
    /// `chdir(path)`.
    fn chdir(&self, path: &Path) -> SysResult<()>;
    /// `fchdir(fd)`.
    fn fchdir(&self, fd: BorrowedFd<'_>) -> SysResult<()>;
    /// `getcwd()`; the kernel prefixes `(unreachable)` (here: a relative result or ENOENT)
    /// when the cwd is outside the root.
    fn getcwd(&self) -> SysResult<PathBuf>;

    /// `ioctl(SIOCGIFFLAGS / SIOCSIFFLAGS)` setting `IFF_UP` on `lo` of the current netns.
    fn loopback_up(&self) -> SysResult<()>;

    /// `prctl(PR_CAPBSET_DROP, cap)`.
    fn drop_bounding(&self, cap: u8) -> SysResult<()>;
    /// `prctl(PR_SET_KEEPCAPS, on)`.
    fn set_keepcaps(&self, on: bool) -> SysResult<()>;
    /// `setgroups(gids)`.
    fn setgroups(&self, gids: &[u32]) -> SysResult<()>;
    /// `setresgid(gid, gid, gid)`.
    fn setresgid(&self, gid: u32) -> SysResult<()>;
    /// `setresuid(uid, uid, uid)`.
    fn setresuid(&self, uid: u32) -> SysResult<()>;
    /// One `capset(2)` of effective, permitted and inheritable together.
    fn capset(&self, sets: CapSets) -> SysResult<()>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
    fn ambient_clear(&self) -> SysResult<()>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)`.
    fn ambient_raise(&self, cap: u8) -> SysResult<()>;

    /// `prctl(PR_SET_DUMPABLE, on)`: a non-dumpable process cannot be ptraced and its
    /// `/proc/<pid>` files (`mem`, `fd/`, `exe`: the sealed init) are root-owned, so nothing in
    /// the sandbox reaches into plugd-init or the half-built sandbox; `execve` resets it.
    fn set_dumpable(&self, on: bool) -> SysResult<()>;
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    fn set_no_new_privs(&self) -> SysResult<()>;
    /// Every signal unblocked and back to `SIG_DFL`: an ignored disposition survives `execve`,
    /// and plugd-init has some (the Rust runtime ignores SIGPIPE; a launcher's libc may leave
    /// its internal signals 32-34 ignored). The plugin starts with a clean signal state.
    fn reset_signals(&self) -> SysResult<()>;

    /// `execve(path, argv, envp)`. The real implementation returns only on failure; a test
    /// double returns `Ok(())` to mean "would have replaced the process here".
    fn execve(&self, path: &CStr, argv: &[CString], envp: &[CString]) -> SysResult<()>;

    /// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: execs the file `fd` is open on (the
    /// probe's sealed memfd, which no path in the sandbox names). Same return contract as
    /// [`Syscall::execve`].
    fn execveat_fd(&self, fd: RawFd, argv: &[CString], envp: &[CString]) -> SysResult<()>;
}
