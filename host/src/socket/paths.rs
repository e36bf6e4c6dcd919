//! Translating the paths a plugin returns (plugin-internal) into host paths dockerd can bind-mount.
//!
//! dockerd does this for managed plugins (`ScopedPath`): under `PropagatedMount` a path maps into the
//! plugin's propagated-mount directory, anything else into its rootfs. plugd does the same for every
//! path-bearing reply (Mount, Path, Get, List — dockerd skips Get) and, unlike dockerd, resolves the
//! result inside that directory without letting a symlink lead out of it: a plugin that returns
//! `/data/v1` where `v1` is a symlink to `/etc` gets `<propagated-mount>/etc`, never the host's `/etc`.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// One plugin's view-to-host mapping.
#[derive(Debug, Clone)]
pub struct PathMap {
    rootfs: PathBuf,
    propagated: Option<(PathBuf, PathBuf)>,
}

impl PathMap {
    /// `rootfs` and the propagated-mount host dir must exist; they are canonicalised once here.
    pub fn new(rootfs: &Path, propagated: Option<(&str, &Path)>) -> std::io::Result<PathMap> {
        let propagated = match propagated {
            Some((inside, host)) => Some((PathBuf::from(inside), host.canonicalize()?)),
            None => None,
        };
        Ok(PathMap {
            rootfs: rootfs.canonicalize()?,
            propagated,
        })
    }

    /// Opens (`O_PATH`) the existing directory a plugin-internal path names, resolved inside the
    /// plugin's filesystem: what a `Mount` reply hands dockerd is then pinned to this very inode
    /// (see `Mounts::pin`), so no symlink the plugin creates later can redirect dockerd's bind.
    pub fn open_dir(&self, inside: &str) -> Result<std::os::fd::OwnedFd, String> {
        let (base, rel) = self.split(inside)?;
        let dir = File::open(base).map_err(|e| format!("opening {}: {e}", base.display()))?;
        let target = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(&dir, &target, how)
            .map_err(|e| format!("plugin returned mountpoint {inside:?}, which is not a directory inside its filesystem: {e}"))
    }

    /// The host path for a path the plugin returned, or a message saying why it was refused.
    pub fn to_host(&self, inside: &str) -> Result<PathBuf, String> {
        let (base, rel) = self.split(inside)?;
        resolve_beneath(base, &rel)
            .map_err(|e| format!("cannot resolve {inside:?} inside the plugin's filesystem: {e}"))
    }

    /// Which base (propagated mount or rootfs) a plugin path is under, and the rest of it.
    fn split(&self, inside: &str) -> Result<(&Path, PathBuf), String> {
        let path = Path::new(inside);
        if !path.is_absolute() {
            return Err(format!("plugin returned a relative path {inside:?}"));
        }
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(p) => parts.push(p),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(format!("plugin returned a path with '..': {inside:?}"));
                }
            }
        }
        let clean: PathBuf = parts.iter().collect();
        let (base, rel) = match &self.propagated {
            Some((pm, host)) if Path::new("/").join(&clean).starts_with(pm) => {
                let rest = Path::new("/").join(&clean);
                let rel = rest
                    .strip_prefix(pm)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                (host.as_path(), rel)
            }
            _ => (self.rootfs.as_path(), clean),
        };
        Ok((base, rel))
    }
}

/// Resolves `rel` under `base` the way the plugin sees it (symlinks followed but clamped to `base`).
/// Components that do not exist yet are appended as they are.
fn resolve_beneath(base: &Path, rel: &Path) -> std::io::Result<PathBuf> {
    let parts: Vec<_> = rel.components().collect();
    let dir = File::open(base)?;
    for existing in (0..=parts.len()).rev() {
        let prefix: PathBuf = parts[..existing].iter().collect();
        let target = if prefix.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            prefix
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(&dir, &target, how) {
            Ok(fd) => {
                use std::os::fd::AsRawFd;
                let mut real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
                if !real.starts_with(base) {
                    return Err(std::io::Error::other(
                        "resolved outside the plugin's filesystem",
                    ));
                }
                for p in &parts[existing..] {
                    real.push(p);
                }
                return Ok(real);
            }
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) if existing > 0 => {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other("unresolvable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture(tag: &str) -> (PathBuf, PathMap) {
        let root = std::env::temp_dir().join(format!("plugd-paths-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("rootfs/etc")).unwrap();
        std::fs::create_dir_all(root.join("pm/volumes/v1")).unwrap();
        let map = PathMap::new(&root.join("rootfs"), Some(("/data", &root.join("pm")))).unwrap();
        (root, map)
    }

    #[test]
    fn maps_propagated_mount_and_rootfs() {
        let (root, map) = fixture("map");
        let root = root.canonicalize().unwrap();
        assert_eq!(
            map.to_host("/data/volumes/v1").unwrap(),
            root.join("pm/volumes/v1")
        );
        assert_eq!(map.to_host("/data").unwrap(), root.join("pm"));
        assert_eq!(map.to_host("/etc").unwrap(), root.join("rootfs/etc"));
        // Not created yet: appended lexically under the deepest existing directory.
        assert_eq!(
            map.to_host("/data/volumes/new/x").unwrap(),
            root.join("pm/volumes/new/x")
        );
        // `/database` is not under `/data`.
        assert_eq!(
            map.to_host("/database").unwrap(),
            root.join("rootfs/database")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_relative_and_dotdot() {
        let (root, map) = fixture("bad");
        assert!(map.to_host("data/v1").unwrap_err().contains("relative"));
        assert!(map.to_host("/data/../../etc").unwrap_err().contains(".."));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn symlinks_stay_inside() {
        let (root, map) = fixture("link");
        symlink("/etc", root.join("pm/volumes/evil")).unwrap();
        symlink("../../../../../../etc", root.join("pm/volumes/evil2")).unwrap();
        let pm = root.canonicalize().unwrap().join("pm");
        let a = map.to_host("/data/volumes/evil").unwrap();
        let b = map.to_host("/data/volumes/evil2").unwrap();
        assert!(a.starts_with(&pm), "{a:?}");
        assert!(b.starts_with(&pm), "{b:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
