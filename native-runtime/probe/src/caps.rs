//! `op:<CAP_*>`: the one harmless operation each capability gates ([`CAP_OPERATIONS`]), tried
//! once. Whatever changes the probe's own credentials or root (setuid, setgroups, chroot,
//! dropping a bounding capability) is tried in a forked child; files and nodes are made in the
//! probe's scratch directory and removed; nothing outside the sandbox is changed (lo's MTU is set
//! to the value it has, a low port is only bound).

use crate::sys::{cpath, errno_name, in_child, last_errno, raw, setup_failed, untried};
use plugd_core::check::probe::{Attempt, CAP_OPERATIONS, UNTRIED};
use std::path::Path;

/// The port `CAP_NET_BIND_SERVICE` binds (below 1024, and unlikely to be in use).
const LOW_PORT: u16 = 1023;

/// Capabilities whose operation works on a file or directory in the scratch directory.
const NEEDS_SCRATCH: [&str; 5] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SYS_ADMIN",
];

/// One `op:<CAP>` attempt per [`CAP_OPERATIONS`] entry that `wanted` names, in that order. With
/// no `scratch` directory, those that need one are untried.
pub fn attempts(wanted: &[String], scratch: Option<&Path>) -> Vec<Attempt> {
    let file = scratch.map(|s| s.join("owned"));
    let mut chowned = false;
    let mut out = Vec::new();
    for (cap, what) in CAP_OPERATIONS {
        if !wanted.iter().any(|w| w == cap) {
            continue;
        }
        let result = match (cap, scratch, &file) {
            (c, None, _) | (c, _, None) if NEEDS_SCRATCH.contains(&c) => {
                Err(untried("no scratch directory"))
            }
            ("CAP_CHOWN", _, Some(file)) => {
                let r = chown_file(file);
                chowned = r.is_ok();
                r
            }
            ("CAP_DAC_OVERRIDE", _, Some(file)) => write_mode_000(file, chowned),
            ("CAP_FOWNER", _, _) if !chowned => Err(untried(
                "no file owned by uid 1 (the CAP_CHOWN operation failed)",
            )),
            ("CAP_FOWNER", _, Some(file)) => chmod(file, 0o600),
            ("CAP_MKNOD", Some(dir), _) => mknod_null(&dir.join("null")),
            ("CAP_NET_RAW", ..) => raw_socket(),
            ("CAP_NET_BIND_SERVICE", ..) => bind_low_port(),
            ("CAP_NET_ADMIN", ..) => lo_mtu(),
            ("CAP_SETUID", ..) => child(setresuid_1),
            ("CAP_SETGID", ..) => child(setgroups_1),
            ("CAP_SYS_CHROOT", ..) => child(chroot_root),
            ("CAP_SYS_ADMIN", Some(dir), _) => mount_tmpfs(&dir.join("mnt")),
            ("CAP_SETPCAP", ..) => child(drop_bounding),
            _ => Err(untried("no operation")),
        };
        out.push(op_attempt(cap, what, result));
    }
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
    out
}

/// `op:<cap>` with `<what>: <result>`; an untried result keeps the `untried: ` prefix first.
pub fn op_attempt(cap: &str, what: &str, result: OpResult) -> Attempt {
    let id = format!("op:{cap}");
    match result {
        Ok(detail) => Attempt::ok(id, format!("{what}: {detail}")),
        Err(detail) => match detail.strip_prefix(UNTRIED) {
            Some(why) => Attempt::failed(id, untried(format!("{what}: {why}"))),
            None => Attempt::failed(id, format!("{what}: {detail}")),
        },
    }
}

/// An operation's outcome: the detail when it succeeded, else the errno (or an [`untried`] reason).
pub type OpResult = Result<String, String>;

fn rc(r: libc::c_int) -> OpResult {
    if r == 0 {
        Ok("ok".to_owned())
    } else {
        Err(errno_name(last_errno()))
    }
}

fn child(op: fn() -> i32) -> OpResult {
    match in_child(op) {
        Ok(Ok(())) => Ok("ok".to_owned()),
        Ok(Err(e)) => Err(errno_name(e)),
        Err(untried) => Err(untried),
    }
}

/// Creates `file` (mode 000, ours) and gives it to 1:1.
fn chown_file(file: &Path) -> OpResult {
    let _ = std::fs::remove_file(file);
    let c = cpath(file).ok_or("path holds a NUL")?;
    // SAFETY: `c` is a valid C string; the fd is closed right away.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o000,
        )
    };
    if fd < 0 {
        // The file is the setup, not the operation: failing to make it is no denial.
        return Err(setup_failed("create", last_errno()));
    }
    // SAFETY: `fd` was just opened by us.
    unsafe { libc::close(fd) };
    // SAFETY: `c` is a valid C string.
    rc(unsafe { libc::chown(c.as_ptr(), 1, 1) })
}

/// Opens the mode-000 `file` for writing (owned by uid 1 if `chowned`; else by us, and mode 000
/// refuses its owner too without the capability).
fn write_mode_000(file: &Path, chowned: bool) -> OpResult {
    let c = cpath(file).ok_or("path holds a NUL")?;
    if !chowned && std::fs::symlink_metadata(file).is_err() {
        return Err(untried("the mode-000 file could not be made"));
    }
    // SAFETY: `c` is a valid C string; the fd is closed right away.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(errno_name(last_errno()));
    }
    // SAFETY: `fd` was just opened by us.
    unsafe { libc::close(fd) };
    Ok("ok".to_owned())
}

fn chmod(file: &Path, mode: libc::mode_t) -> OpResult {
    let c = cpath(file).ok_or("path holds a NUL")?;
    // SAFETY: `c` is a valid C string.
    rc(unsafe { libc::chmod(c.as_ptr(), mode) })
}

fn mknod_null(node: &Path) -> OpResult {
    let _ = std::fs::remove_file(node);
    let c = cpath(node).ok_or("path holds a NUL")?;
    // SAFETY: `c` is a valid C string.
    let r = if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) } == 0 {
        Ok("ok".to_owned())
    } else {
        match last_errno() {
            libc::EEXIST => Err(untried("the node already exists")),
            e => Err(errno_name(e)),
        }
    };
    let _ = std::fs::remove_file(node);
    r
}

fn raw_socket() -> OpResult {
    // SAFETY: plain syscall; the fd is closed right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(errno_name(last_errno()));
    }
    // SAFETY: `fd` was just opened by us.
    unsafe { libc::close(fd) };
    Ok("ok".to_owned())
}

fn bind_low_port() -> OpResult {
    match std::net::TcpListener::bind(("127.0.0.1", LOW_PORT)) {
        Ok(_) => Ok(format!("port {LOW_PORT}")),
        // Someone holds it: the bind passed the permission check.
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            Ok(format!("port {LOW_PORT}: EADDRINUSE"))
        }
        Err(e) => Err(crate::sys::err_name(&e)),
    }
}

/// `SIOCGIFMTU` then `SIOCSIFMTU` on `lo` with the same value.
fn lo_mtu() -> OpResult {
    // SAFETY: plain syscall; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", errno_name(last_errno())));
    }
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming lo; the kernel fills ifru_mtu.
    let got = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU as _, &mut req) };
    let result = if got != 0 {
        Err(format!("get: {}", errno_name(last_errno())))
    } else {
        // SAFETY: the same ifreq, now holding lo's current MTU.
        let set = unsafe { libc::ioctl(fd, libc::SIOCSIFMTU as _, &mut req) };
        // SAFETY: reading the union field the kernel filled.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        if set == 0 {
            Ok(format!("mtu {mtu}"))
        } else {
            Err(errno_name(last_errno()))
        }
    };
    // SAFETY: `fd` was opened above.
    unsafe { libc::close(fd) };
    result
}

fn mount_tmpfs(dir: &Path) -> OpResult {
    crate::sys::mkdir(dir).map_err(|e| setup_failed("mkdir", e))?;
    let c = cpath(dir).ok_or("path holds a NUL")?;
    let result = crate::sys::mount_tmpfs(dir)
        .map(|()| "ok".to_owned())
        .map_err(errno_name);
    if result.is_ok() {
        // SAFETY: `c` is a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(dir);
    result
}

fn setresuid_1() -> i32 {
    // SAFETY: a raw syscall (the libc wrapper would synchronise threads a forked child lacks).
    raw(unsafe { libc::syscall(libc::SYS_setresuid, 1, 1, 1) })
}

fn setgroups_1() -> i32 {
    let groups: [libc::gid_t; 1] = [1];
    // SAFETY: a raw syscall with a valid one-entry array.
    raw(unsafe { libc::syscall(libc::SYS_setgroups, 1, groups.as_ptr()) })
}

fn chroot_root() -> i32 {
    // SAFETY: a raw syscall with a valid C string.
    raw(unsafe { libc::syscall(libc::SYS_chroot, c"/".as_ptr()) })
}

fn drop_bounding() -> i32 {
    // CAP_MKNOD (27): in the default set, and any one will do.
    // SAFETY: a raw prctl.
    raw(unsafe { libc::syscall(libc::SYS_prctl, libc::PR_CAPBSET_DROP, 27, 0, 0, 0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untried_operation_says_so_first() {
        let a = op_attempt("CAP_X", "do x", Err(untried("no scratch directory")));
        assert_eq!(
            a,
            Attempt::failed("op:CAP_X", "untried: do x: no scratch directory")
        );
        let a = op_attempt("CAP_X", "do x", Err("EPERM".into()));
        assert_eq!(a, Attempt::failed("op:CAP_X", "do x: EPERM"));
        let a = op_attempt("CAP_X", "do x", Ok("ok".into()));
        assert_eq!(a, Attempt::ok("op:CAP_X", "do x: ok"));
    }

    #[test]
    fn without_scratch_the_file_operations_are_untried() {
        let wanted: Vec<String> = [
            "CAP_CHOWN",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_SYS_ADMIN",
            "CAP_NET_RAW",
        ]
        .map(String::from)
        .to_vec();
        let a = attempts(&wanted, None);
        assert_eq!(a.len(), 5);
        for x in &a {
            let untried = x.detail.starts_with("untried: ");
            assert_eq!(untried, x.id != "op:CAP_NET_RAW", "{x:?}");
            assert!(!untried || !x.ok, "{x:?}");
        }
    }
}
