//! The few system helpers every probe module uses: errno names, C strings, a time bound on any
//! attempt, and "run this in a forked child" for operations that would change the probe itself.

use std::ffi::CString;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// How long one attempt may take: a FIFO, a hung FUSE mount or a slow device must not hang the
/// whole check (the attempt's thread is left behind; the probe is stopped after the check).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The errno name of an I/O error (`EPERM`), or its text when it has no errno.
pub fn err_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// The symbolic name of `n` (the kernel's), or `errno <n>`.
pub fn errno_name(n: i32) -> String {
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {n}"),
    };
    name.to_owned()
}

/// The calling thread's errno.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `path` as a C string (`None` if it holds a NUL byte).
pub fn cpath(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).ok()
}

/// Runs `f` on a thread of its own and waits at most `limit` for it: on timeout (or when no
/// thread could be started) an [`untried`] reason.
pub fn bounded<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("attempt".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        return Err(untried(format!("no thread for it: {}", err_name(&e))));
    }
    rx.recv_timeout(limit).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => {
            untried(format!("time limit of {}s hit", limit.as_secs_f32()))
        }
        mpsc::RecvTimeoutError::Disconnected => untried("it panicked"),
    })
}

/// Forks, runs `op` in the child (which must only make raw syscalls: the probe has threads) and
/// returns its result: `Ok(Ok(()))` if `op` returned 0, `Ok(Err(errno))` with the errno it
/// returned. `Err` holds an [`untried`] reason when the operation was not made as designed: the
/// fork failed, or the child was killed after [`ATTEMPT_TIMEOUT`].
pub fn in_child(op: fn() -> i32) -> Result<Result<(), i32>, String> {
    // SAFETY: the child calls only `op` (raw syscalls by contract) and `_exit`, both
    // async-signal-safe, so forking a threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(untried(format!("fork: {}", errno_name(last_errno()))));
    }
    if pid == 0 {
        let rc = op();
        // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(rc.clamp(0, 255)) }
    }
    let deadline = std::time::Instant::now() + ATTEMPT_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-parameter; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(match libc::WIFEXITED(status) {
                true if libc::WEXITSTATUS(status) == 0 => Ok(()),
                true => Err(libc::WEXITSTATUS(status)),
                // Killed by a signal (seccomp's kill action, say): the operation was refused.
                false => Err(libc::EINTR),
            });
        }
        if r < 0 {
            return Err(untried(format!("waitpid: {}", errno_name(last_errno()))));
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: plain syscalls on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(untried(format!(
                "time limit of {}s hit",
                ATTEMPT_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The errno of a raw syscall's result (`0` on success), for [`in_child`] operations.
pub fn raw(rc: libc::c_long) -> i32 {
    if rc < 0 { last_errno() } else { 0 }
}

/// Opens `path` read-only without blocking (a FIFO or a slow device must not hang) and reads at
/// most `limit` bytes of it.
pub fn read_capped(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let mut out = Vec::new();
    file.take(limit as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// `mount("tmpfs", at, "tmpfs", nosuid|nodev|noexec)`: the probe's one kind of mount (the
/// `CAP_SYS_ADMIN` operation and the propagated-mount attempt); the errno on failure.
pub fn mount_tmpfs(at: &Path) -> Result<(), i32> {
    let c = cpath(at).ok_or(libc::EINVAL)?;
    // SAFETY: valid C strings; a NULL data pointer is allowed.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if r == 0 { Ok(()) } else { Err(last_errno()) }
}

/// `untried: <reason>`: the detail of an attempt that could not be made as designed (plugd counts
/// it as a mismatch, never as a denial).
pub fn untried(reason: impl std::fmt::Display) -> String {
    format!("{}{reason}", plugd_core::check::probe::UNTRIED)
}

/// The detail of a step that had to create `what` fresh and failed with `e`: a name already taken
/// (by a plugin's leftover or a concurrent check) means the attempt was not made, not denied.
pub fn create_failed(what: &str, e: i32) -> String {
    if e == libc::EEXIST {
        untried(format!("{what} already exists"))
    } else {
        format!("{what}: {}", errno_name(e))
    }
}

/// The detail of a setup step (not the attempt itself) that failed: always [`untried`].
pub fn setup_failed(what: &str, e: i32) -> String {
    let d = create_failed(what, e);
    if d.starts_with(plugd_core::check::probe::UNTRIED) {
        d
    } else {
        untried(d)
    }
}

/// Whether the filesystem holding `path` is mounted `nodev` (device nodes there cannot be
/// opened, so a device attempt made there would not ask the device cgroup).
pub fn is_nodev(path: &Path) -> std::io::Result<bool> {
    let c = cpath(path).ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: an all-zero statvfs is valid; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the kernel fills `st`.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_flag & libc::ST_NODEV != 0)
}

/// `Ok` when `/proc` is procfs; else why not, as an [`untried`] detail: what a plugin's rootfs or
/// a mount over `/proc` puts there must not pass for the kernel's view.
pub fn procfs_check() -> Result<(), String> {
    // SAFETY: an all-zero statfs is valid; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the kernel fills `st`.
    if unsafe { libc::statfs(c"/proc".as_ptr(), &mut st) } != 0 {
        return Err(untried(format!(
            "/proc: statfs: {}",
            errno_name(last_errno())
        )));
    }
    procfs_verdict(st.f_type as i64)
}

/// procfs's `f_type` (`linux/magic.h`), fixed by the kernel's ABI.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// [`procfs_check`]'s verdict on a filesystem magic.
pub fn procfs_verdict(f_type: i64) -> Result<(), String> {
    if f_type == PROC_SUPER_MAGIC {
        Ok(())
    } else {
        Err(untried(format!("/proc is not procfs (magic {f_type:#x})")))
    }
}

/// `faccessat(AT_FDCWD, path, W_OK)`: the errno when `path` is not writable.
pub fn writable(path: &Path) -> Result<(), i32> {
    let c = cpath(path).ok_or(libc::EINVAL)?;
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, 0) } == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `mkdir(path, 0700)`: the errno on failure.
pub fn mkdir(path: &Path) -> Result<(), i32> {
    let c = cpath(path).ok_or(libc::EINVAL)?;
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `<major>:<minor>` of a device number.
pub fn dev_pair(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_procfs_magic_is_procfs() {
        assert_eq!(procfs_verdict(0x9fa0), Ok(()));
        let e = procfs_verdict(0x01021994).unwrap_err();
        assert!(e.starts_with("untried: /proc is not procfs"), "{e}");
        assert_eq!(procfs_check(), Ok(()), "this host's /proc");
    }

    #[test]
    fn a_name_already_taken_is_untried_not_denied() {
        assert_eq!(
            create_failed("mkdir", libc::EEXIST),
            "untried: mkdir already exists"
        );
        assert_eq!(create_failed("mkdir", libc::EROFS), "mkdir: EROFS");
        assert_eq!(dev_pair(libc::makedev(10, 229)), "10:229");
    }

    #[test]
    fn write_access_and_nodev_are_the_kernel_answers() {
        let d = std::env::temp_dir().join(format!("plugd-probe-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(mkdir(&d), Ok(()));
        assert_eq!(mkdir(&d), Err(libc::EEXIST));
        assert_eq!(writable(&d), Ok(()));
        assert_eq!(writable(&d.join("missing")), Err(libc::ENOENT));
        assert!(is_nodev(&d.join("missing")).is_err());
        // The probe's own tmpfs is nodev (needs root to mount).
        // SAFETY: a plain syscall.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(mount_tmpfs(&d), Ok(()));
            let nodev = is_nodev(&d);
            let c = cpath(&d).unwrap();
            // SAFETY: `c` is a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            assert!(nodev.unwrap());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn errnos_have_their_kernel_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(libc::ENXIO), "ENXIO");
        assert_eq!(errno_name(4095), "errno 4095");
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(err_name(&e), "EACCES");
    }

    #[test]
    fn a_hung_attempt_is_cut_off() {
        let started = std::time::Instant::now();
        let r = bounded(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
            1
        });
        assert_eq!(r, Err("untried: time limit of 0.05s hit".to_owned()));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(bounded(Duration::from_secs(1), || 7), Ok(7));
    }

    #[test]
    fn child_results_come_back_as_errnos() {
        assert_eq!(in_child(|| 0), Ok(Ok(())));
        assert_eq!(in_child(|| libc::EPERM), Ok(Err(libc::EPERM)));
        // A child that hangs is killed at the time limit: untried, not an errno.
        let hung = in_child(|| {
            // SAFETY: a raw pause, ended by the parent's SIGKILL.
            raw(unsafe { libc::syscall(libc::SYS_pause) })
        });
        assert_eq!(hung, Err("untried: time limit of 5s hit".to_owned()));
    }
}
