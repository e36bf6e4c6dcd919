//! `/dev` contents, unless a bind mount covers all of `/dev` (runc `needsSetupDev`).
//!
//! Nodes: the spec's `linux.devices` first, then the runtime-spec defaults not already listed
//! (null, zero, full, tty, random, urandom; 0666). Each is made with `mknodat` relative to its
//! in-root parent directory under `umask(0)` (so the mode is exact), then re-opened
//! `O_PATH|O_NOFOLLOW` and checked for type and rdev before it is chowned — a symlink or another
//! node swapped in is refused (runc `mknodDevice`). Symlinks: `/dev/ptmx -> pts/ptmx`,
//! `/dev/fd`, `/dev/std{in,out,err}` and `/dev/core` when the kernel has `/proc/kcore`.

use std::os::fd::AsFd as _;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, makedev};

use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::resolve::{self, Root};
use crate::spec::Device;
use crate::sys::Syscall;

/// The runtime-spec's default devices: path, major, minor.
const DEFAULTS: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/tty", 5, 0),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
];

/// Symlinks made in /dev: (target, path).
const LINKS: [(&str, &str); 5] = [
    ("pts/ptmx", "/dev/ptmx"),
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// The nodes to create: the spec's (but `/dev/ptmx`, which is the devpts symlink), then the
/// defaults it does not override.
pub fn planned(devices: &[Device]) -> Vec<Device> {
    let mut all: Vec<Device> = devices
        .iter()
        .filter(|d| resolve::clean(d.path.as_ref()) != Path::new("/dev/ptmx"))
        .cloned()
        .collect();
    for (path, major, minor) in DEFAULTS {
        if !devices
            .iter()
            .any(|d| resolve::clean(d.path.as_ref()) == Path::new(path))
        {
            let kind = "c".to_owned();
            all.push(Device {
                path: path.into(),
                kind,
                major,
                minor,
                file_mode: Some(0o666),
                uid: None,
                gid: None,
            });
        }
    }
    all
}

/// Creates every planned node under `umask(0)`.
pub fn create_nodes(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    if !ctx.setup_dev {
        return Ok(());
    }
    let root = ctx.root().map_err(|source| StepError::Device {
        path: "/dev".into(),
        source,
    })?;
    let old = s.umask(Mode::empty());
    let result = planned(&ctx.spec.linux.devices).iter().try_for_each(|d| {
        node(root, s, d).map_err(|source| StepError::Device {
            path: d.path.clone(),
            source,
        })
    });
    s.umask(old);
    result
}

fn node_type(kind: &str) -> Result<SFlag, Failure> {
    match kind {
        "c" | "u" => Ok(SFlag::S_IFCHR),
        "b" => Ok(SFlag::S_IFBLK),
        "p" => Ok(SFlag::S_IFIFO),
        other => Err(Failure::Refused(format!("unknown device type {other:?}"))),
    }
}

/// One node: mknodat, re-open without following, verify, chown.
fn node(root: &Root, s: &dyn Syscall, d: &Device) -> Result<(), Failure> {
    let kind = node_type(&d.kind)?;
    let perm = Mode::from_bits_truncate(d.file_mode.unwrap_or(0o666) & 0o7777);
    let rdev = match kind {
        SFlag::S_IFIFO => 0,
        _ => makedev(d.major as u64, d.minor as u64),
    };
    let (dir, name) = resolve::parent_of(s, root, d.path.as_ref())?;
    let name = Path::new(&name);
    match s.mknodat(dir.as_fd(), name, kind, perm, rdev) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(sys("mknodat")(e)),
    }
    let fd = s
        .openat(
            dir.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(sys("reopen node"))?;
    let st = s.fstat(fd.as_fd()).map_err(sys("fstat node"))?;
    if st.kind() != kind || (kind != SFlag::S_IFIFO && st.rdev != rdev) {
        return Err(Failure::Refused(format!(
            "the node is not what was made (type {:?}, rdev {}:{})",
            st.kind(),
            nix::sys::stat::major(st.rdev),
            nix::sys::stat::minor(st.rdev)
        )));
    }
    if d.uid.is_some() || d.gid.is_some() {
        let (uid, gid) = (d.uid.unwrap_or(0), d.gid.unwrap_or(0));
        s.fchown(fd.as_fd(), uid, gid).map_err(sys("fchown"))?;
    }
    Ok(())
}

/// The /dev symlinks (existing entries are left alone, as in runc).
pub fn symlinks(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    if !ctx.setup_dev {
        return Ok(());
    }
    let mut links = LINKS.to_vec();
    if s.stat(Path::new("/proc/kcore")).is_ok() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    let root = ctx.root().map_err(|source| StepError::Device {
        path: "/dev".into(),
        source,
    })?;
    for (target, path) in links {
        link(root, s, target, path).map_err(|source| StepError::Device {
            path: path.into(),
            source,
        })?;
    }
    Ok(())
}

fn link(root: &Root, s: &dyn Syscall, target: &str, path: &str) -> Result<(), Failure> {
    let (dir, name) = resolve::parent_of(s, root, path.as_ref())?;
    match s.symlinkat(Path::new(target), dir.as_fd(), Path::new(&name)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(sys("symlinkat")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_devices_come_first_and_override_defaults() {
        let fuse = Device {
            path: "/dev/fuse".into(),
            kind: "c".into(),
            major: 10,
            minor: 229,
            file_mode: Some(0o600),
            uid: Some(0),
            gid: Some(0),
        };
        let null = Device {
            path: "/dev/null".into(),
            kind: "c".into(),
            major: 1,
            minor: 3,
            file_mode: Some(0o600),
            uid: None,
            gid: None,
        };
        let ptmx = Device {
            path: "/dev/ptmx".into(),
            kind: "c".into(),
            major: 5,
            minor: 2,
            ..Default::default()
        };
        let p = planned(&[fuse, null, ptmx]);
        let paths: Vec<&str> = p.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/fuse",
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/tty",
                "/dev/random",
                "/dev/urandom"
            ]
        );
        assert_eq!(p[1].file_mode, Some(0o600));
    }
}
