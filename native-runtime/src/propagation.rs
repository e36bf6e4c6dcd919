//! The host side of a plugin's `PropagatedMount`.
//!
//! Before launch the host directory becomes a separate **shared** mount (moby's `MakeRShared`:
//! bind it onto itself unless it already is a mount point, then `MS_SHARED|MS_REC`), so the
//! plugin's bind of it joins the same peer group and the mounts the plugin makes there appear on
//! the host, where the engine uses them as volume paths.
//!
//! Those mounts outlive the plugin (a mount namespace going away does not propagate unmounts), so
//! after the plugin stops everything under the directory is lazily unmounted, deepest first, and
//! then the directory's own self-bind ([`unmount_all`]).

use rustix::mount::{MountPropagationFlags, UnmountFlags, mount_bind, mount_change, unmount};
use std::path::{Path, PathBuf};

/// Makes `dir` a separate rshared mount (see the module docs).
pub(crate) fn make_rshared(dir: &Path) -> std::io::Result<()> {
    let dir = dir.canonicalize()?;
    if !mount_points()?.contains(&dir) {
        mount_bind(&dir, &dir)
            .map_err(|e| annotate(e.into(), &format!("bind {} onto itself", dir.display())))?;
    }
    mount_change(
        &dir,
        MountPropagationFlags::SHARED | MountPropagationFlags::REC,
    )
    .map_err(|e| annotate(e.into(), &format!("make {} rshared", dir.display())))
}

/// Lazily unmounts every mount at or below `dir`, deepest first, until none is left. Returns how
/// many unmounts were done. A missing `dir` is nothing to do.
pub(crate) fn unmount_all(dir: &Path) -> std::io::Result<usize> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut done = 0;
    // Mounts stacked on one mount point need one round each; a few rounds always suffice unless
    // something keeps mounting.
    for _ in 0..16 {
        let mut under: Vec<PathBuf> = mount_points()?
            .into_iter()
            .filter(|m| m.starts_with(&dir))
            .collect();
        if under.is_empty() {
            return Ok(done);
        }
        under.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        under.dedup();
        for m in &under {
            match unmount(m, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
                Ok(()) => done += 1,
                // Already detached with its parent, or raced away.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(annotate(e.into(), &format!("unmount {}", m.display()))),
            }
        }
    }
    Err(std::io::Error::other(format!(
        "mounts keep appearing under {}",
        dir.display()
    )))
}

/// Mount points of this mount namespace, from `/proc/self/mountinfo`.
pub(crate) fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(mount_point).collect())
}

/// Field 5 of one mountinfo line, byte-exact (the init's parser: one place for the format).
pub(crate) fn mount_point(line: &str) -> Option<PathBuf> {
    plugd_init::mountinfo::mount_point_of(line)
}

fn annotate(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let line = r"36 35 98:0 /mnt1 /mnt/with\040space\011tab rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        assert_eq!(
            mount_point(line),
            Some(PathBuf::from("/mnt/with space\ttab"))
        );
        let line = "22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw";
        assert_eq!(mount_point(line), Some(PathBuf::from("/run")));
        assert_eq!(mount_point("garbage"), None);
        // A lone backslash or a short escape is kept as is.
    }

    #[test]
    fn this_namespace_has_a_root_mount() {
        assert!(mount_points().unwrap().iter().any(|m| m == Path::new("/")));
    }

    #[test]
    fn nothing_to_unmount_under_a_missing_dir() {
        assert_eq!(
            unmount_all(Path::new("/nonexistent/plugd-test")).unwrap(),
            0
        );
    }
}
