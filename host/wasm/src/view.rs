//! Plugd-private views of the host directories a guest is given.
//!
//! plugd runs as full root, and wasmtime-wasi opens files with plugd's credentials: cap-std keeps a
//! guest inside its preopened directory, but inside it a device node, `/proc/1/environ` or a sysfs
//! file opens with every capability plugd has. A native plugin with the same bind would be stopped
//! by its device cgroup and its reduced capability set (no `CAP_SYS_PTRACE`, so no other root
//! process's `environ`). The wasm runtime must not grant more, so a guest never sees the source
//! directory itself but a **view** of it:
//!
//! - a **non-recursive** clone of the mount at the source (`open_tree(OPEN_TREE_CLONE)` without
//!   `AT_RECURSIVE`): submounts under the source (a `/proc`, `/sys` or `/dev` under a bind of `/`,
//!   a procfs mounted anywhere below) are not in it; the guest sees the empty directories beneath;
//! - with `nodev,nosuid,noexec` (and `ro` when the mount is declared read-only) set by
//!   `mount_setattr`: the kernel refuses to open any device node in it, whoever asks (a node a
//!   container made with `mknod` in a volume included), and a read-only mount is read-only for the
//!   kernel too, not only for wasmtime-wasi's permission checks;
//! - **detached**: never attached to any path, so no other process sees it, nothing propagates in
//!   or out, and there is nothing to unmount. The kernel frees it when its last file descriptor
//!   closes: at instance replacement, stop, disable, daemon shutdown, and after a crash of plugd.
//!
//! A source that *is* a kernel pseudo-filesystem (procfs, sysfs, cgroupfs, ...) has nothing to
//! hide beneath it and is refused ([`ViewError::PseudoFs`]); a source under `/dev` was refused
//! before (`policy`).
//!
//! FIFOs and sockets are not device nodes: a view keeps them. A socket file cannot be connected to
//! (WASI here has no sockets) and a FIFO open or read that blocks is bounded by the call deadline
//! and the per-plugin threads of `instance`.

use plugd_fs::mount;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use std::path::{Path, PathBuf};

/// Why a view could not be made. Each names the source directory.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ViewError {
    /// The source could not be opened without following a symlink.
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The source is a kernel pseudo-filesystem; it is not data a plugin may be given.
    #[error("{path} is on {fs} (kernel state, not a data directory)")]
    PseudoFs { path: PathBuf, fs: &'static str },
    /// The mount clone or its attributes failed (needs root and Linux ≥ 5.12).
    #[error("cannot make a nodev view of {path} ({step}): {source}")]
    Mount {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A detached, non-recursive `nodev,nosuid,noexec` (and maybe `ro`) clone of a source directory.
/// Dropping it closes the descriptor; the kernel frees the mount once nothing else holds it.
#[derive(Debug)]
pub(crate) struct View {
    fd: OwnedFd,
}

impl View {
    /// Makes the view of `source` (an absolute, canonical directory path).
    pub(crate) fn new(source: &Path, read_only: bool) -> Result<Self, ViewError> {
        // No symlink may redirect the view between the policy's canonicalization and now.
        let dir = rustix::fs::openat2(
            CWD,
            source,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| ViewError::Open {
            path: source.to_path_buf(),
            source: e.into(),
        })?;
        if let Some(fs) = pseudo_fs(&dir).map_err(|e| ViewError::Open {
            path: source.to_path_buf(),
            source: e,
        })? {
            return Err(ViewError::PseudoFs {
                path: source.to_path_buf(),
                fs,
            });
        }
        let mount_err = |step: &'static str| {
            move |e: std::io::Error| ViewError::Mount {
                path: source.to_path_buf(),
                step,
                source: e,
            }
        };
        // Not recursive: only the mount the source is on, submounts left out.
        let fd = mount::clone_tree(&dir, false).map_err(mount_err("open_tree"))?;
        let mut set = mount::NODEV | mount::NOSUID | mount::NOEXEC;
        if read_only {
            set |= mount::RDONLY;
        }
        // Private: nothing mounted on the source later propagates into the view.
        mount::set_attrs(&fd, set, mount::PRIVATE, false).map_err(mount_err("mount_setattr"))?;
        Ok(View { fd })
    }

    /// A path that opens the view's root for as long as the view lives (`/proc/self/fd/<n>`):
    /// wasmtime-wasi takes preopens by path only.
    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Kernel pseudo-filesystems (`statfs` `f_type`, `<linux/magic.h>`): their files are kernel state
/// and controls, not data, and what root may do with them goes far past what a plugin's reduced
/// capabilities allow.
const PSEUDO_FS: &[(i64, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2fs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpffs"),
    (0x6265_6570, "configfs"),
    (0xde5e_81e4, "efivarfs"),
    (0x6165_676c, "pstorefs"),
    (0x1cd1, "devpts"),
    (0x1980_0202, "mqueue"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6573_5543, "fusectl"),
    (0x6e73_6673, "nsfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
];

/// The pseudo-filesystem `dir` is on, if any.
fn pseudo_fs(dir: &OwnedFd) -> std::io::Result<Option<&'static str>> {
    let st = rustix::fs::fstatfs(dir)?;
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64 & 0xffff_ffff;
    Ok(PSEUDO_FS.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::io::ErrorKind;

    #[test]
    fn pseudo_filesystems_are_refused() {
        for src in ["/proc", "/proc/1", "/sys", "/sys/kernel"] {
            match View::new(Path::new(src), true) {
                Err(ViewError::PseudoFs { fs, .. }) => {
                    assert!(fs == "procfs" || fs == "sysfs", "{src}: {fs}")
                }
                other => panic!("{src}: expected a pseudo-fs refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_view_is_attached_nowhere() {
        let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let before = mounts();
        let dir = TempDir::new("view-detached");
        let view = View::new(dir.path(), false).unwrap();
        std::fs::write(view.path().join("f"), b"x").unwrap();
        assert_eq!(mounts(), before, "no mount appears in plugd's namespace");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
        drop(view);
        assert_eq!(mounts(), before);
    }

    #[test]
    fn a_symlinked_source_is_not_followed() {
        let dir = TempDir::new("view-link");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        assert!(matches!(
            View::new(&link, true),
            Err(ViewError::Open { .. })
        ));
    }

    #[test]
    fn read_only_views_are_read_only_for_the_kernel() {
        let dir = TempDir::new("view-ro");
        std::fs::write(dir.path().join("f"), b"data").unwrap();
        let view = View::new(dir.path(), true).unwrap();
        assert_eq!(std::fs::read(view.path().join("f")).unwrap(), b"data");
        let err = std::fs::write(view.path().join("g"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        let rw = View::new(dir.path(), false).unwrap();
        std::fs::write(rw.path().join("g"), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"x");
        assert_eq!(
            std::fs::read(view.path().join("missing"))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }
}
