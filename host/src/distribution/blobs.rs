//! The blob store: `<data-root>/blobs/sha256/<hex>`, one file per blob, written once under its
//! digest (temporary name, fsync, rename), never changed. It holds every plugin's manifest,
//! config and layers, so a push sends exactly the bytes that were pulled or created (the same
//! digests), and blobs no plugin references are deleted after every remove and upgrade.

use crate::fsutil;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::media::{Descriptor, check_digest};

/// The store.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl Blobs {
    /// Opens (creating) `<root>/blobs/sha256`, removing temporary files a crash left.
    pub fn open(root: &Path) -> io::Result<Blobs> {
        let dir = root.join("blobs").join("sha256");
        fsutil::create_dir_all(&dir, 0o700)?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Blobs { dir })
    }

    /// The file of a (checked) digest.
    pub fn path(&self, digest: &str) -> Result<PathBuf, String> {
        Ok(self.dir.join(check_digest(digest)?))
    }

    /// Whether the blob is here.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// A fresh temporary file in the store's directory (same filesystem, so it can be renamed in).
    pub fn temp(&self) -> io::Result<(PathBuf, fs::File)> {
        let path = self
            .dir
            .join(format!(".tmp-{}", &crate::store::new_id()[..16]));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&path)?;
        Ok((path, file))
    }

    /// Moves a finished temporary file in under `digest` (which the caller verified while writing
    /// it); an existing blob of that digest is kept (same bytes).
    pub fn commit(&self, temp: &Path, digest: &str) -> io::Result<()> {
        let dest = self.path(digest).map_err(io::Error::other)?;
        fs::File::open(temp)?.sync_all()?;
        fs::rename(temp, &dest)?;
        fsutil::sync_dir(&self.dir)
    }

    /// Stores `bytes`, returning a descriptor of `media_type` for them.
    pub fn put(&self, media_type: &str, bytes: &[u8]) -> io::Result<Descriptor> {
        let digest = digest_of(bytes);
        if !self.has(&digest) {
            let (temp, mut file) = self.temp()?;
            let written = file.write_all(bytes).and_then(|()| file.sync_all());
            if let Err(e) = written.and_then(|()| self.commit(&temp, &digest)) {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        }
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            platform: None,
        })
    }

    /// A blob's bytes, checked against its digest (a blob changed on disk is not sent on).
    pub fn read(&self, digest: &str) -> io::Result<Vec<u8>> {
        let path = self.path(digest).map_err(io::Error::other)?;
        let mut bytes = Vec::new();
        fs::File::open(&path)?.read_to_end(&mut bytes)?;
        if digest_of(&bytes) != digest {
            return Err(io::Error::other(format!(
                "blob {} does not match its digest (changed on disk)",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// Deletes every blob not in `keep`.
    pub fn retain(&self, keep: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || keep.contains(&format!("sha256:{name}")) {
                continue;
            }
            fs::remove_file(entry.path())?;
            removed += 1;
        }
        Ok(removed)
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_retain() {
        let root = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(root.path()).unwrap();
        let a = blobs.put("x", b"a").unwrap();
        let b = blobs.put("x", b"b").unwrap();
        assert_eq!(blobs.read(&a.digest).unwrap(), b"a");
        assert_eq!(a.size, 1);
        fs::write(blobs.path(&b.digest).unwrap(), b"tampered").unwrap();
        assert!(
            blobs
                .read(&b.digest)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        assert_eq!(blobs.retain(&HashSet::from([a.digest.clone()])).unwrap(), 1);
        assert!(blobs.has(&a.digest) && !blobs.has(&b.digest));
        assert!(blobs.path("sha256:../../x").is_err());
    }
}
