//! Small filesystem helpers with one job each: durable atomic writes and directory removal by rename,
//! so a crash never leaves a half-written state file or a half-removed plugin visible.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Writes `data` to `path` so that readers see the old content or the new, never a mix: temp file in
/// the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename or create in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `mkdir -p` with a mode for the directories it creates.
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

/// Removes a directory tree by first renaming it to `<dir>-removing`, so a crash midway leaves a name
/// the next start recognises and finishes, never a half-removed plugin that still loads. Refused,
/// before anything is renamed or deleted, while anything is mounted in the tree
/// ([`crate::unmount`]).
pub fn remove_dir_atomic(path: &Path) -> io::Result<()> {
    if let Some(mount) = crate::unmount::mounts_under(path)
        .map_err(io::Error::other)?
        .into_iter()
        .next()
    {
        return Err(io::Error::other(format!(
            "{} is still mounted",
            mount.display()
        )));
    }
    let mut removing = path.as_os_str().to_owned();
    removing.push("-removing");
    let removing = std::path::PathBuf::from(removing);
    match fs::rename(path, &removing) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    crate::unmount::remove_dir_all(&removing).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("plugd-fsutil-{}", std::process::id()));
        create_dir_all(&dir, 0o700).unwrap();
        let p = dir.join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        remove_dir_atomic(&dir).unwrap();
        assert!(!dir.exists());
    }
}
