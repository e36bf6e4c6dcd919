//! Which engine-facing sockets plugd created, so that plugd removes its own stale sockets at start
//! and never unlinks one it did not create (another program's, or a dockerd-managed plugin's).
//!
//! Each socket plugd binds gets a marker file in `<exec-root>/sockets/` recording its path and inode.
//! A path is only ever unlinked when the file there is still that very inode.

use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Inode numbers are reused; the change time (set by our chmod right after bind) tells a new
    /// socket at the same path and inode number from ours.
    ctime: (i64, i64),
}

/// The marker directory.
#[derive(Debug, Clone)]
pub struct SocketRegistry {
    dir: PathBuf,
}

fn marker_name(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl SocketRegistry {
    /// Uses (creating) `dir`.
    pub fn new(dir: &Path) -> io::Result<SocketRegistry> {
        fsutil::create_dir_all(dir, 0o700)?;
        Ok(SocketRegistry {
            dir: dir.to_path_buf(),
        })
    }

    /// Records a socket plugd just bound.
    pub fn record(&self, path: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        let marker = Marker {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        let bytes = serde_json::to_vec(&marker).map_err(io::Error::other)?;
        fsutil::write_runtime_state(&self.dir.join(marker_name(path)), &bytes, 0o600)
    }

    /// Unlinks `path` if it is still the socket plugd recorded there, and forgets the marker.
    pub fn release(&self, path: &Path) -> io::Result<()> {
        let marker_path = self.dir.join(marker_name(path));
        if let Ok(bytes) = fs::read(&marker_path)
            && let Ok(marker) = serde_json::from_slice::<Marker>(&bytes)
        {
            remove_if_same(&marker)?;
        }
        match fs::remove_file(&marker_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// At start: removes every recorded socket that is still plugd's, and all markers.
    pub fn remove_stale(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Ok(bytes) = fs::read(entry.path())
                && let Ok(marker) = serde_json::from_slice::<Marker>(&bytes)
                && remove_if_same(&marker)?
            {
                tracing::info!(path = %marker.path.display(), "removed stale plugin socket");
                removed += 1;
            }
            fs::remove_file(entry.path())?;
        }
        Ok(removed)
    }
}

fn remove_if_same(marker: &Marker) -> io::Result<bool> {
    match fs::symlink_metadata(&marker.path) {
        Ok(m)
            if m.file_type().is_socket()
                && m.dev() == marker.dev
                && m.ino() == marker.ino
                && (m.ctime(), m.ctime_nsec()) == marker.ctime =>
        {
            fs::remove_file(&marker.path)?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn removes_only_its_own_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let reg = SocketRegistry::new(&root.join("markers")).unwrap();
        let ours = root.join("ours.sock");
        let l1 = UnixListener::bind(&ours).unwrap();
        reg.record(&ours).unwrap();
        let replaced = root.join("replaced.sock");
        let l2 = UnixListener::bind(&replaced).unwrap();
        reg.record(&replaced).unwrap();
        // Someone else replaced this one after us: a different inode.
        drop(l2);
        fs::remove_file(&replaced).unwrap();
        let _l3 = UnixListener::bind(&replaced).unwrap();
        assert_eq!(reg.remove_stale().unwrap(), 1);
        assert!(!ours.exists());
        assert!(
            replaced.exists(),
            "a socket plugd did not create is never unlinked"
        );
        drop(l1);
        fs::remove_dir_all(&root).unwrap();
    }
}
