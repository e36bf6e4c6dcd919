//! Where a path a plugin returns (plugin-internal) is on the host.
//!
//! dockerd does this for managed plugins (`ScopedPath`): under `PropagatedMount` a path maps into the
//! plugin's propagated-mount directory, anything else into its rootfs. plugd does the same for every
//! path-bearing reply (Mount, Path, Get, List — dockerd skips Get), but resolves the result inside
//! that directory ([`plugd_fs::InRoot`]): a plugin that returns `/data/v1` where `v1` is a symlink
//! to `/etc` gets `<propagated-mount>/etc`, never the host's `/etc`. The caller gets an `O_PATH`
//! descriptor of the directory, which it pins ([`super::mounts`]); no host path string derived
//! from the plugin's reply is ever handed on.

use plugd_fs::InRoot;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Why a plugin path has no directory to pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Nothing is there (yet), inside the plugin's filesystem: a volume a driver creates only when
    /// it is mounted reports such a path.
    Missing(String),
    /// A path plugd does not follow (relative, with `..`) or cannot open.
    Refused(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Missing(m) | OpenError::Refused(m) => f.write_str(m),
        }
    }
}

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
    /// plugin's filesystem, or says why it cannot.
    pub fn open_dir(&self, inside: &str) -> Result<OwnedFd, OpenError> {
        let (base, rel) = self.split(inside).map_err(OpenError::Refused)?;
        let root = InRoot::open(base)
            .map_err(|e| OpenError::Refused(format!("opening {}: {e}", base.display())))?;
        root.resolve_dir(&rel.to_string_lossy()).map_err(|e| {
            let msg = format!("{inside:?} is not a directory inside the plugin's filesystem: {e}");
            match e {
                plugd_fs::Errno::NOENT | plugd_fs::Errno::NOTDIR => OpenError::Missing(msg),
                _ => OpenError::Refused(msg),
            }
        })
    }

    /// Which base (propagated mount or rootfs) a plugin path is under, and the rest of it.
    fn split(&self, inside: &str) -> Result<(&Path, PathBuf), String> {
        let path = Path::new(inside);
        if !path.is_absolute() {
            return Err(format!("{inside:?} is a relative path"));
        }
        let mut clean = PathBuf::from("/");
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(p) => clean.push(p),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(format!("{inside:?} contains '..'"));
                }
            }
        }
        Ok(match &self.propagated {
            Some((pm, host)) if clean.starts_with(pm) => (
                host.as_path(),
                clean
                    .strip_prefix(pm)
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            ),
            _ => (
                self.rootfs.as_path(),
                clean
                    .strip_prefix("/")
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, PathBuf, PathMap) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("rootfs/etc")).unwrap();
        std::fs::create_dir_all(root.join("pm/volumes/v1")).unwrap();
        let map = PathMap::new(&root.join("rootfs"), Some(("/data", &root.join("pm")))).unwrap();
        (dir, root, map)
    }

    fn host(map: &PathMap, inside: &str) -> Result<PathBuf, String> {
        map.open_dir(inside)
            .map(|fd| plugd_fs::fd_path(&fd).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn maps_propagated_mount_and_rootfs() {
        let (_d, root, map) = fixture();
        assert_eq!(
            host(&map, "/data/volumes/v1").unwrap(),
            root.join("pm/volumes/v1")
        );
        assert_eq!(host(&map, "/data").unwrap(), root.join("pm"));
        assert_eq!(host(&map, "/etc").unwrap(), root.join("rootfs/etc"));
        // `/database` is not under `/data`.
        assert!(
            host(&map, "/database")
                .unwrap_err()
                .contains("not a directory")
        );
        assert!(host(&map, "/data/volumes/missing").is_err());
    }

    #[test]
    fn refuses_relative_and_dotdot() {
        let (_d, _root, map) = fixture();
        assert!(
            matches!(map.open_dir("data/v1"), Err(OpenError::Refused(m)) if m.contains("relative"))
        );
        assert!(
            matches!(map.open_dir("/data/../../etc"), Err(OpenError::Refused(m)) if m.contains(".."))
        );
        assert!(matches!(
            map.open_dir("/data/none"),
            Err(OpenError::Missing(_))
        ));
    }

    #[test]
    fn symlinks_stay_inside() {
        let (_d, root, map) = fixture();
        symlink("/etc", root.join("pm/volumes/evil")).unwrap();
        symlink("../../../../../../etc", root.join("pm/volumes/evil2")).unwrap();
        std::fs::create_dir(root.join("pm/etc")).unwrap();
        // Both resolve inside the propagated mount (to its own `etc`), never to the host's.
        assert_eq!(
            host(&map, "/data/volumes/evil").unwrap(),
            root.join("pm/etc")
        );
        assert_eq!(
            host(&map, "/data/volumes/evil2").unwrap(),
            root.join("pm/etc")
        );
    }
}
