//! Small filesystem helpers with one job each: durable atomic writes and directory removal by rename,
//! so a crash never leaves a half-written state file or a half-removed plugin visible.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Writes `data` to `path` so that readers see the old content or the new, never a mix: temp file in
/// the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_renamed(path, data, mode, true)
}

/// Like [`write_atomic`] (readers see the old or the new file, whole), without `fsync`: for state
/// under the exec-root, which describes things that do not outlive a reboot (sockets, mounts, a
/// tmpfs in normal use). A crash of plugd loses none of it (the page cache survives a process);
/// a crash of the machine takes the sockets and mounts it describes with it. Saves two disk
/// flushes on every enable and on every volume Mount and Unmount.
pub fn write_runtime_state(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_renamed(path, data, mode, false)
}

fn write_renamed(path: &Path, data: &[u8], mode: u32, durable: bool) -> io::Result<()> {
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
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
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

/// Binds a listening unix socket at `path` that is born with `mode` (less the process umask), so
/// there is no moment at which it exists with the wider default mode and a caller outside the
/// intended group could connect. Linux takes a socket file's mode from the socket inode's mode,
/// which `fchmod` sets before `bind`.
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<tokio::net::UnixListener> {
    tokio::net::UnixListener::from_std(bind_unix_std(path, mode)?)
}

/// [`bind_unix`] without registering the listener with the current runtime (for one that is
/// served on another).
pub fn bind_unix_std(path: &Path, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use nix::sys::stat::{Mode, fchmod};
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    let addr = UnixAddr::new(path)?;
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    nix::sys::socket::listen(&fd, Backlog::MAXCONN)?;
    Ok(std::os::unix::net::UnixListener::from(fd))
}

/// A file read as a stream of 1 MiB chunks, for uploads that may be gigabytes (a pushed layer, the
/// probe bundle handed to dockerd) and must not sit in memory whole.
pub fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_core::Stream<Item = io::Result<bytes::Bytes>> + Send {
    futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
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

    /// The socket file never exists with more than the mode asked for (less the umask): it is
    /// born with it, where a plain `bind` gives `0777 & !umask` until a later chmod.
    #[tokio::test]
    async fn sockets_are_born_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let umask = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _l = bind_unix(&path, 0o600).unwrap();
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600 & !umask);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }
}
