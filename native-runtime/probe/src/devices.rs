//! `device:<path>` for each declared device (opened read-only, non-blocking), and
//! `device:mknod:*` for [`UNDECLARED_DEVICES`]: a node made in the scratch directory and opened,
//! so the device cgroup (not the absence of a node) decides.

use crate::sys::{cpath, create_failed, dev_pair, err_name, is_nodev, last_errno, untried};
use plugd_core::check::probe::{Attempt, UNDECLARED_DEVICES, device_id, mknod_id};
use std::os::unix::fs::MetadataExt as _;
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
        .map(|p| match open_ro(Path::new(p)).and_then(|f| f.metadata()) {
            Ok(m) => Attempt::ok(device_id(p), node_of(m.mode(), m.rdev())),
            Err(e) => Attempt::failed(device_id(p), err_name(&e)),
        })
        .collect()
}

/// `<c|b> <major>:<minor>` of an opened node (`fstat`), so plugd can see it is the host's device
/// and not another behind the same path; `other <major>:<minor>` for what is not a device.
pub fn node_of(mode: u32, rdev: u64) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFCHR => "c",
        libc::S_IFBLK => "b",
        _ => "other",
    };
    format!("{kind} {}", dev_pair(rdev))
}

/// One attempt per [`UNDECLARED_DEVICES`] entry, made in `scratch` (`None`: no scratch directory
/// without `nodev` could be made, and the attempts are untried).
pub fn undeclared(scratch: Option<&Path>) -> Vec<Attempt> {
    let usable = match scratch {
        None => Err(untried("no scratch directory without nodev")),
        Some(dir) => match is_nodev(dir) {
            Ok(false) => Ok(dir),
            Ok(true) => Err(untried(format!("{} is nodev", dir.display()))),
            Err(e) => Err(untried(format!(
                "statvfs {}: {}",
                dir.display(),
                err_name(&e)
            ))),
        },
    };
    UNDECLARED_DEVICES
        .iter()
        .map(|&(kind, major, minor, what)| {
            let id = mknod_id(kind, major, minor);
            let scratch = match &usable {
                Ok(dir) => dir,
                Err(why) => return Attempt::failed(&id, why.clone()),
            };
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
        return Err(create_failed("mknod", last_errno()));
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
    fn nodes_are_named_by_kind_and_number() {
        assert_eq!(
            node_of(libc::S_IFCHR | 0o666, libc::makedev(10, 229)),
            "c 10:229"
        );
        assert_eq!(node_of(libc::S_IFBLK | 0o600, libc::makedev(7, 0)), "b 7:0");
        assert_eq!(node_of(libc::S_IFREG | 0o600, 0), "other 0:0");
    }

    #[test]
    fn without_a_usable_scratch_directory_nothing_is_tried() {
        let a = undeclared(None);
        assert_eq!(a.len(), UNDECLARED_DEVICES.len());
        assert!(
            a.iter().all(|a| !a.ok && a.detail.starts_with("untried: ")),
            "{a:?}"
        );
        let missing = undeclared(Some(Path::new("/nonexistent-scratch")));
        assert!(
            missing
                .iter()
                .all(|a| a.detail.starts_with("untried: statvfs")),
            "{missing:?}"
        );
    }

    #[test]
    fn declared_devices_are_opened_without_blocking() {
        let a = declared(&["/dev/null".into(), "/dev/nonexistent-dev".into()]);
        assert_eq!(a[0], Attempt::ok("device:/dev/null", "c 1:3"));
        assert_eq!(
            a[1],
            Attempt::failed("device:/dev/nonexistent-dev", "ENOENT")
        );
    }
}
