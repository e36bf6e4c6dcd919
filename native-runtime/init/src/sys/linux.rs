//! The real [`Syscall`]: each method is one kernel call (through `nix` where it has a wrapper,
//! `libc` where it has none: clone, capset, prctl, close_range, the loopback ioctl). This is the
//! only module of the crate with `unsafe` outside tests.

use std::ffi::{CStr, CString};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{At, CapSets, FileStat, Forked, FsStat, SysResult, Syscall};

/// The kernel. Stateless: every call goes straight to the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

/// `CLOSE_RANGE_CLOEXEC` from `<linux/close_range.h>` (not in every libc target).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Highest signal number (`_NSIG - 1` for the kernel).
const SIGNAL_MAX: libc::c_int = 64;

/// The kernel's `struct sigaction` for `rt_sigaction(2)` (not libc's, whose mask is larger).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `/proc/self/fd/N` for an fd: how the old mount API is pointed at an already-open object.
fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn at_path(at: At<'_>) -> PathBuf {
    match at {
        At::Path(p) => p.to_path_buf(),
        At::Fd(fd) => proc_fd(fd),
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn to_stat(st: &libc::stat) -> FileStat {
    FileStat {
        mode: st.st_mode,
        rdev: st.st_rdev,
    }
}

/// `prctl` with integer arguments; every use here is an int-only option.
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> SysResult<()> {
    // SAFETY: prctl with integer-only arguments for the options used here (CAPBSET_DROP,
    // SET_KEEPCAPS, CAP_AMBIENT, SET_DUMPABLE, SET_NO_NEW_PRIVS); no pointers are passed.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Errno::result(rc).map(drop)
}

impl Linux {
    /// Takes ownership of an fd inherited from the daemon (the launch protocol's fds 3 and 4),
    /// after checking it is open.
    pub fn take_inherited_fd(&self, fd: RawFd) -> SysResult<OwnedFd> {
        // SAFETY: F_GETFD on any integer is harmless; it only tells whether fd is open.
        Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
        // SAFETY: the fd is open (checked above) and, by the launch protocol, owned by nobody
        // else in this single-threaded process; it is taken exactly once.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Ends the process without running atexit handlers or flushing stdio buffers that were
    /// copied from the parent by the fork-style clone.
    pub fn exit_now(&self, code: i32) -> ! {
        // SAFETY: _exit(2) ends the process; nothing runs after it, so no Rust invariant can be
        // observed broken.
        unsafe { libc::_exit(code) }
    }
}

impl Syscall for Linux {
    fn clone_parent(&self, flags: CloneFlags) -> SysResult<Forked> {
        let bits = (flags | CloneFlags::CLONE_PARENT).bits() as libc::c_ulong
            | libc::SIGCHLD as libc::c_ulong;
        // SAFETY: a fork-style clone (null stack: the child continues on a copy of this stack,
        // as after fork(2)). plugd-init is single-threaded, so no lock is held by another thread
        // in the child; no CLONE_VM/CLONE_THREAD, so nothing is shared with the parent. The
        // pointer arguments (parent_tid, child_tid, tls) are null and unused.
        let rc = unsafe { libc::syscall(libc::SYS_clone, bits, 0usize, 0usize, 0usize, 0usize) };
        match Errno::result(rc)? {
            0 => Ok(Forked::Child),
            pid => Ok(Forked::Parent(pid as i32)),
        }
    }

    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        nix::sched::unshare(flags)
    }

    fn setsid(&self) -> SysResult<()> {
        nix::unistd::setsid().map(drop)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        nix::unistd::sethostname(name)
    }

    fn open(&self, path: &Path, flags: OFlag) -> SysResult<OwnedFd> {
        nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
    }

    fn open_in_root(&self, root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> SysResult<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        nix::fcntl::openat2(root, path, how)
    }

    fn openat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        flags: OFlag,
        mode: Mode,
    ) -> SysResult<OwnedFd> {
        nix::fcntl::openat(dir, name, flags | OFlag::O_CLOEXEC, mode)
    }

    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &Path, mode: Mode) -> SysResult<()> {
        nix::sys::stat::mkdirat(dir, name, mode)
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> SysResult<()> {
        nix::sys::stat::mknodat(dir, name, kind, perm, dev)
    }

    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &Path) -> SysResult<()> {
        nix::unistd::symlinkat(target, dir, name)
    }

    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &Path) -> SysResult<()> {
        nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
    }

    fn readlinkat(&self, dir: BorrowedFd<'_>, name: &Path) -> SysResult<PathBuf> {
        nix::fcntl::readlinkat(dir, name).map(PathBuf::from)
    }

    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> SysResult<()> {
        nix::unistd::fchownat(
            fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_EMPTY_PATH,
        )
    }

    fn fstat(&self, fd: BorrowedFd<'_>) -> SysResult<FileStat> {
        nix::sys::stat::fstat(fd).map(|st| to_stat(&st))
    }

    fn stat(&self, path: &Path) -> SysResult<FileStat> {
        nix::sys::stat::stat(path).map(|st| to_stat(&st))
    }

    fn statfs(&self, at: At<'_>) -> SysResult<FsStat> {
        let st = match at {
            At::Path(p) => nix::sys::statfs::statfs(p)?,
            At::Fd(fd) => nix::sys::statfs::fstatfs(fd)?,
        };
        Ok(FsStat {
            fs_type: super::magic(st.filesystem_type()),
            flags: st.flags().bits(),
        })
    }

    fn fd_path(&self, fd: BorrowedFd<'_>) -> SysResult<PathBuf> {
        nix::fcntl::readlink(&proc_fd(fd)).map(PathBuf::from)
    }

    fn read_file(&self, path: &Path) -> SysResult<String> {
        let mut s = String::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut s))
            .map_err(io_errno)?;
        Ok(s)
    }

    fn write_file(&self, path: &Path, data: &str) -> SysResult<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(data.as_bytes()))
            .map_err(io_errno)
    }

    fn write_fd(&self, fd: BorrowedFd<'_>, mut data: &[u8]) -> SysResult<()> {
        while !data.is_empty() {
            match nix::unistd::write(fd, data) {
                Ok(n) => data = &data[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn dup3(&self, fd: BorrowedFd<'_>, target: RawFd) -> SysResult<()> {
        // SAFETY: dup3 only takes integers; replacing `target` (0, 1 or 2 here) is the intent,
        // and nothing else in this single-threaded process holds those as owned fds.
        Errno::result(unsafe { libc::dup3(fd.as_raw_fd(), target, 0) }).map(drop)
    }

    fn umask(&self, mode: Mode) -> Mode {
        nix::sys::stat::umask(mode)
    }

    fn close_range_cloexec(&self, first: u32) -> SysResult<()> {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds; no fd is closed
        // or invalidated, so no Rust-owned fd is affected until exec.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn reader_gone(&self, fd: BorrowedFd<'_>) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
        match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
            Err(_) => false,
        }
    }

    fn mount(
        &self,
        source: Option<At<'_>>,
        target: At<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        let source = source.map(at_path);
        nix::mount::mount(source.as_deref(), &at_path(target), fstype, flags, data)
    }

    fn umount2(&self, target: At<'_>, flags: MntFlags) -> SysResult<()> {
        nix::mount::umount2(&at_path(target), flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chdir(path)
    }

    fn fchdir(&self, fd: BorrowedFd<'_>) -> SysResult<()> {
        nix::unistd::fchdir(fd)
    }

    fn getcwd(&self) -> SysResult<PathBuf> {
        nix::unistd::getcwd()
    }

    fn loopback_up(&self) -> SysResult<()> {
        // SAFETY: socket(2) takes integers only.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        // SAFETY: on success, `raw` is a new fd that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(Errno::result(raw)?) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let fd = sock.as_fd().as_raw_fd();
        // SAFETY: SIOCGIFFLAGS writes ifr_flags into `req`, a valid, live ifreq.
        Errno::result(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) })?;
        // SAFETY: reading the union member SIOCGIFFLAGS just filled in.
        let up = unsafe { req.ifr_ifru.ifru_flags } | libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = up;
        // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq naming "lo" with the new flags.
        Errno::result(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) }).map(drop)
    }

    fn drop_bounding(&self, cap: u8) -> SysResult<()> {
        prctl(libc::PR_CAPBSET_DROP, cap.into(), 0)
    }

    fn set_keepcaps(&self, on: bool) -> SysResult<()> {
        prctl(libc::PR_SET_KEEPCAPS, on.into(), 0)
    }

    fn setgroups(&self, gids: &[u32]) -> SysResult<()> {
        let gids: Vec<Gid> = gids.iter().copied().map(Gid::from_raw).collect();
        nix::unistd::setgroups(&gids)
    }

    fn setresgid(&self, gid: u32) -> SysResult<()> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g)
    }

    fn setresuid(&self, uid: u32) -> SysResult<()> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u)
    }

    fn capset(&self, sets: CapSets) -> SysResult<()> {
        let header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let word = |shift: u32| CapData {
            effective: (sets.effective >> shift) as u32,
            permitted: (sets.permitted >> shift) as u32,
            inheritable: (sets.inheritable >> shift) as u32,
        };
        let data = [word(0), word(32)];
        // SAFETY: capset(2) reads one header and, for version 3, two data structs; both are
        // live, correctly laid out (#[repr(C)]) and outlive the call.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
        Errno::result(rc).map(drop)
    }

    fn ambient_clear(&self) -> SysResult<()> {
        prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as _, 0)
    }

    fn ambient_raise(&self, cap: u8) -> SysResult<()> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as _,
            cap.into(),
        )
    }

    fn set_dumpable(&self, on: bool) -> SysResult<()> {
        prctl(libc::PR_SET_DUMPABLE, on.into(), 0)
    }

    fn set_no_new_privs(&self) -> SysResult<()> {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
    }

    fn reset_signals(&self) -> SysResult<()> {
        // SAFETY: an all-zero sigset_t is a valid (empty) set; sigemptyset makes that explicit.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, live sigset_t.
        Errno::result(unsafe { libc::sigemptyset(&mut set) })?;
        // SAFETY: sets this (only) thread's mask from a valid set; the old mask is not wanted.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
        Errno::result(rc)?;
        let dfl = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=SIGNAL_MAX {
            // SAFETY: rt_sigaction with a kernel-layout struct installing SIG_DFL (no handler
            // code); the old action is not read back. The libc wrappers refuse the signals libc
            // keeps for itself (32-34), which a launcher may have left ignored; the raw call does
            // not. Errors (SIGKILL, SIGSTOP) are expected and ignored.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl,
                    std::ptr::null::<u8>(),
                    8usize,
                )
            };
        }
        Ok(())
    }

    fn execve(&self, path: &CStr, argv: &[CString], envp: &[CString]) -> SysResult<()> {
        match nix::unistd::execve(path, argv, envp) {
            Err(e) => Err(e),
            Ok(never) => match never {},
        }
    }

    fn execveat_fd(&self, fd: RawFd, argv: &[CString], envp: &[CString]) -> SysResult<()> {
        let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let (argv, envp) = (ptrs(argv), ptrs(envp));
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to C strings that outlive
        // the call (the CStrings are borrowed, the arrays are locals); the path is an empty C
        // string, as AT_EMPTY_PATH requires. On success the call does not return.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd,
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        Errno::result(rc).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_gone_sees_a_closed_read_end() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        assert!(!Linux.reader_gone(w.as_fd()));
        drop(r);
        assert!(Linux.reader_gone(w.as_fd()));
    }

    #[test]
    fn fd_path_and_open_in_root_stay_in_the_root() {
        let root = Linux
            .open(Path::new("/proc/self"), OFlag::O_PATH | OFlag::O_DIRECTORY)
            .unwrap();
        // "/" inside the root is the root itself, and ".." cannot climb out of it.
        let fd = Linux
            .open_in_root(root.as_fd(), Path::new("/../.."), OFlag::O_PATH)
            .unwrap();
        assert_eq!(
            Linux.fd_path(fd.as_fd()).unwrap(),
            Linux.fd_path(root.as_fd()).unwrap()
        );
        // Magic links are refused.
        let err = Linux
            .open_in_root(root.as_fd(), Path::new("/cwd"), OFlag::O_PATH)
            .unwrap_err();
        assert_eq!(err, Errno::ELOOP);
    }
}
