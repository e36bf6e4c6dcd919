//! What is still mounted under a plugin's directories is released before they are deleted: a
//! recursive delete crosses mount points, so deleting through a bind mount (a volume pin, a mount
//! the plugin made under its propagated mount, one that survived in its rootfs) would delete
//! whatever that mount shows — a volume's data, a host directory. Every mount at or below a
//! directory is lazily unmounted, deepest first; one that stays is named and nothing is deleted.

use std::io;
use std::path::{Path, PathBuf};

/// Why a directory was not released or deleted.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// A mount at or below the directory could not be unmounted.
    #[error("{mount} is still mounted ({reason})")]
    StillMounted {
        /// The mount point.
        mount: PathBuf,
        /// What the unmount said.
        reason: String,
    },
    /// The mount table could not be read, so nothing is known to be safe to delete.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(#[source] io::Error),
    /// Deleting failed.
    #[error("{path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The mount points at or below `dir` in this mount namespace, deepest first (none when `dir`
/// does not exist).
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, UnmountError> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(UnmountError::Mountinfo(e)),
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(UnmountError::Mountinfo)?;
    let mut under: Vec<PathBuf> = text
        .lines()
        .filter_map(plugd_init::mountinfo::mount_point_of)
        .filter(|m| m.starts_with(&dir))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    under.dedup();
    Ok(under)
}

/// `umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW)`: gone from the namespace at once, released once
/// unused.
pub fn lazy_unmount(path: &Path) -> io::Result<()> {
    use nix::mount::{MntFlags, umount2};
    umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(io::Error::from)
}

/// Unmounts (with `unmount`) every mount at or below `dir` until none is left; the first one that
/// stays is the error.
pub fn release(dir: &Path, unmount: &dyn Fn(&Path) -> io::Result<()>) -> Result<(), UnmountError> {
    // Mounts stacked on one mount point need a round each.
    for _ in 0..16 {
        let under = mounts_under(dir)?;
        let Some(first) = under.first().cloned() else {
            return Ok(());
        };
        for m in &under {
            if let Err(e) = unmount(m) {
                // Already detached with its parent, or raced away: the next round tells.
                let gone = [nix::errno::Errno::EINVAL, nix::errno::Errno::ENOENT]
                    .iter()
                    .any(|g| e.raw_os_error() == Some(*g as i32));
                if !gone {
                    return Err(UnmountError::StillMounted {
                        mount: m.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if mounts_under(dir)?.first() == Some(&first) {
            return Err(UnmountError::StillMounted {
                mount: first,
                reason: "unmounting it did not remove it".to_string(),
            });
        }
    }
    match mounts_under(dir)?.into_iter().next() {
        None => Ok(()),
        Some(mount) => Err(UnmountError::StillMounted {
            mount,
            reason: "mounts keep appearing".to_string(),
        }),
    }
}

/// Deletes `dir` and everything in it, refusing (and deleting nothing) while anything is mounted
/// at or below it. A missing `dir` is fine.
pub fn remove_dir_all(dir: &Path) -> Result<(), UnmountError> {
    if let Some(mount) = mounts_under(dir)?.into_iter().next() {
        return Err(UnmountError::StillMounted {
            mount,
            reason: "not unmounted".to_string(),
        });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(UnmountError::Remove {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch dir with `victim/data` outside `tree/` and `victim` bound onto `tree/sub/pin`
    /// (root only); the mount is undone on drop whatever happened.
    struct Bound {
        dir: PathBuf,
        _tmp: tempfile::TempDir,
    }

    impl Bound {
        fn new(tag: &str) -> Option<Bound> {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("skipped: not root");
                return None;
            }
            let tmp = tempfile::Builder::new()
                .prefix(&format!("plugd-unmount-{tag}-"))
                .tempdir()
                .unwrap();
            let b = Bound {
                dir: tmp.path().to_path_buf(),
                _tmp: tmp,
            };
            std::fs::create_dir_all(b.victim()).unwrap();
            std::fs::write(b.victim().join("data"), "keep").unwrap();
            std::fs::create_dir_all(b.pin()).unwrap();
            nix::mount::mount(
                Some(&b.victim()),
                &b.pin(),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
            Some(b)
        }

        fn victim(&self) -> PathBuf {
            self.dir.join("victim")
        }

        fn tree(&self) -> PathBuf {
            self.dir.join("tree")
        }

        fn pin(&self) -> PathBuf {
            self.dir.join("tree/sub/pin")
        }
    }

    impl Drop for Bound {
        fn drop(&mut self) {
            // Unmounted before the temp dir is removed (fields drop after this).
            while lazy_unmount(&self.pin()).is_ok() {}
        }
    }

    #[test]
    fn nothing_is_deleted_through_a_mount() {
        let Some(b) = Bound::new("refuse") else {
            return;
        };
        assert_eq!(mounts_under(&b.tree()).unwrap(), [b.pin()]);
        let err = remove_dir_all(&b.tree()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is still mounted (not unmounted)", b.pin().display())
        );
        assert_eq!(
            std::fs::read_to_string(b.victim().join("data")).unwrap(),
            "keep"
        );
        assert!(b.tree().exists());
    }

    #[test]
    fn a_failed_unmount_is_named_and_a_released_tree_is_deleted() {
        let Some(b) = Bound::new("release") else {
            return;
        };
        let refuse = |_: &Path| {
            Err(io::Error::from_raw_os_error(
                nix::errno::Errno::EBUSY as i32,
            ))
        };
        let err = release(&b.tree(), &refuse).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is still mounted (Device or resource busy (os error 16))",
                b.pin().display()
            )
        );
        release(&b.tree(), &lazy_unmount).unwrap();
        assert!(mounts_under(&b.tree()).unwrap().is_empty());
        remove_dir_all(&b.tree()).unwrap();
        assert!(!b.tree().exists());
        assert_eq!(
            std::fs::read_to_string(b.victim().join("data")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_missing_dir_has_no_mounts() {
        let gone = Path::new("/nonexistent/plugd-unmount");
        assert!(mounts_under(gone).unwrap().is_empty());
        remove_dir_all(gone).unwrap();
        release(gone, &lazy_unmount).unwrap();
    }
}
