//! `device:<path>` for each declared device (opened read-only, non-blocking), and
//! `device:mknod:*` for [`UNDECLARED_DEVICES`]: a node made in the scratch directory and opened,
//! so the device cgroup (not the absence of a node) decides.

use crate::sys::{cpath, err_name, errno_name, last_errno};
use plugd_core::check::probe::{Attempt, UNDECLARED_DEVICES, device_id, mknod_id};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

fn open_ro(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// One attempt per declared device path.
pub fn declared(paths: &[String]) -> Vec<Attempt> {
    paths
        .iter()
        .map(|p| match open_ro(Path::new(p)) {
            Ok(_) => Attempt::ok(device_id(p), "opened"),
            Err(e) => Attempt::failed(device_id(p), err_name(&e)),
        })
        .collect()
}

/// One attempt per [`UNDECLARED_DEVICES`] entry.
pub fn undeclared(scratch: &Path) -> Vec<Attempt> {
    UNDECLARED_DEVICES
        .iter()
        .map(|&(kind, major, minor, what)| {
            let id = mknod_id(kind, major, minor);
            let node = scratch.join(format!("node-{what}"));
            let a = mknod_open(&node, kind, major, minor)
                .map_or_else(|e| Attempt::failed(&id, e), |d| Attempt::ok(&id, d));
            let _ = std::fs::remove_file(&node);
            a
        })
        .collect()
}

fn mknod_open(node: &Path, kind: char, major: u32, minor: u32) -> Result<String, String> {
    let _ = std::fs::remove_file(node);
    let c = cpath(node).ok_or("path holds a NUL")?;
    let ty = if kind == 'b' {
        libc::S_IFBLK
    } else {
        libc::S_IFCHR
    };
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::mknod(c.as_ptr(), ty | 0o600, libc::makedev(major, minor)) } != 0 {
        return Err(format!("mknod: {}", errno_name(last_errno())));
    }
    open_verdict(open_ro(node).map(drop))
}

/// The device cgroup's verdict from an open: no driver behind the node (ENXIO, ENODEV) still
/// means the cgroup let the open through.
pub fn open_verdict(r: std::io::Result<()>) -> Result<String, String> {
    match r {
        Ok(()) => Ok("open: ok".to_owned()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) => {
            Ok(format!("open: {}", err_name(&e)))
        }
        Err(e) => Err(format!("open: {}", err_name(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_is_not_a_denial() {
        let e = |n| Err(std::io::Error::from_raw_os_error(n));
        assert_eq!(open_verdict(e(libc::ENXIO)), Ok("open: ENXIO".into()));
        assert_eq!(open_verdict(e(libc::ENODEV)), Ok("open: ENODEV".into()));
        assert_eq!(open_verdict(e(libc::EPERM)), Err("open: EPERM".into()));
        assert_eq!(open_verdict(Ok(())), Ok("open: ok".into()));
    }

    #[test]
    fn declared_devices_are_opened_without_blocking() {
        let a = declared(&["/dev/null".into(), "/dev/nonexistent-dev".into()]);
        assert_eq!(a[0], Attempt::ok("device:/dev/null", "opened"));
        assert_eq!(
            a[1],
            Attempt::failed("device:/dev/nonexistent-dev", "ENOENT")
        );
    }
}
