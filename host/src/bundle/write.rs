//! Writing a rootfs as one image layer, for `push` (and for the image a `create`d plugin becomes).
//!
//! The tree is one plugd unpacked, but a running plugin may have changed it since (its rootfs is its
//! own), so it is read like the unpacker writes: fd-relative, every component opened `O_NOFOLLOW`,
//! every file checked to be the inode that was listed. The layer is deterministic — the same tree
//! gives the same bytes and so the same digest, which keeps a re-push of an unchanged plugin a no-op
//! for the registry.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// Writes `rootfs` as one gzip-compressed tar layer and returns `sha256:<hex>` and the size of the
/// gzip bytes written (the blob's digest and size for the manifest).
///
/// Deterministic: depth-first with the names of each directory sorted bytewise (the order of Go's
/// `filepath.Walk`, which dockerd's layers follow), names rootfs-relative without `./`, the root
/// itself not listed, mode/uid/gid/size from the files, every mtime 0 (the unpacker does not keep
/// an archive's mtimes, so the files' own are only when they were unpacked: with them the same
/// bundle, created twice, would give two digests), symlinks stored as symlinks and never
/// followed, a second path of an inode already written stored as a hardlink to the first. A device
/// node, FIFO or socket is an error: plugd never unpacks one, so finding one means the tree is not
/// what plugd wrote and pushing it would hand it to every puller.
pub fn write_layer(rootfs: &Path, out: impl Write) -> io::Result<(String, u64)> {
    let root = openat(nix::fcntl::AT_FDCWD, rootfs, dir_flags(), Mode::empty())?;
    let mut hashing = Hashing {
        inner: out,
        hasher: Sha256::new(),
        written: 0,
    };
    {
        let gzip = GzEncoder::new(&mut hashing, Compression::default());
        let mut builder = tar::Builder::new(gzip);
        let mut walk = Walk {
            builder: &mut builder,
            seen: HashMap::new(),
            dev: fstat(&root)?.st_dev,
        };
        walk.dir(root.as_fd(), &[])?;
        builder.into_inner()?.finish()?;
    }
    hashing.inner.flush()?;
    let digest = format!("sha256:{:x}", hashing.hasher.finalize());
    Ok((digest, hashing.written))
}

/// Writes a plugin bundle as `POST /plugins/create` reads it — `config.json`, then `rootfs/` with
/// the tree read by the same rules as [`write_layer`], then `extra` files (`(name, bytes, mode)`)
/// under `rootfs/` — as one plain tar. `plugd check --docker-host` hands dockerd the plugin's
/// rootfs with the probe added this way.
pub fn write_bundle(
    config: &[u8],
    rootfs: &Path,
    extra: &[(&str, &[u8], u32)],
    out: impl Write,
) -> io::Result<()> {
    let root = openat(nix::fcntl::AT_FDCWD, rootfs, dir_flags(), Mode::empty())?;
    let mut builder = tar::Builder::new(out);
    let file = |builder: &mut tar::Builder<_>, name: &str, bytes: &[u8], mode: u32| {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(mode);
        header.set_size(bytes.len() as u64);
        builder.append_data(&mut header, name, bytes)
    };
    file(&mut builder, "config.json", config, 0o644)?;
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    builder.append_data(&mut header, "rootfs", io::empty())?;
    {
        let mut walk = Walk {
            builder: &mut builder,
            seen: HashMap::new(),
            dev: fstat(&root)?.st_dev,
        };
        walk.dir(root.as_fd(), b"rootfs")?;
    }
    for (name, bytes, mode) in extra {
        file(&mut builder, &format!("rootfs/{name}"), bytes, *mode)?;
    }
    builder.into_inner()?.flush()
}

/// Counts and hashes what goes through to the caller's writer.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Walk<'b, W: Write> {
    builder: &'b mut tar::Builder<W>,
    /// Regular files with more than one link, by (device, inode): the name written first.
    seen: HashMap<(u64, u64), Vec<u8>>,
    /// The rootfs's filesystem: a directory on another one is a mount point, whose contents are
    /// not the plugin's files (a `/proc` mounted there would be walked as files).
    dev: u64,
}

impl<W: Write> Walk<'_, W> {
    /// Writes the entries of the directory `dir`, whose rootfs-relative name is `prefix`.
    fn dir(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
            names.push(entry?.file_name().into_vec());
        }
        names.sort();
        for name in names {
            let mut rel = prefix.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            self.entry(dir, &name, &rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: &[u8]) -> io::Result<()> {
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let mut header = header_for(&st);
        let path = Path::new(OsStr::from_bytes(rel));
        match file_kind(&st) {
            SFlag::S_IFDIR => {
                let sub = openat(dir, name, dir_flags(), Mode::empty())?;
                same_inode(&sub, &st, rel)?;
                if st.st_dev != self.dev {
                    return Err(io::Error::other(format!(
                        "`{}` is a mount point; a layer is written from the plugin's own files only",
                        String::from_utf8_lossy(rel)
                    )));
                }
                header.set_entry_type(EntryType::Directory);
                self.builder.append_data(&mut header, path, io::empty())?;
                self.dir(sub.as_fd(), rel)
            }
            SFlag::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.seen.get(&key).cloned() {
                        header.set_entry_type(EntryType::Link);
                        header.set_size(0);
                        return self.link(header, path, &first);
                    }
                    self.seen.insert(key, rel.to_vec());
                }
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
                let file = File::from(openat(dir, name, flags, Mode::empty())?);
                let st = same_inode(&file, &st, rel)?;
                let size = u64::try_from(st.st_size).unwrap_or(0);
                header.set_entry_type(EntryType::Regular);
                header.set_size(size);
                let data = Exact {
                    inner: file.take(size),
                    left: size,
                    rel,
                };
                self.builder.append_data(&mut header, path, data)
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(dir, name)?.into_vec();
                header.set_entry_type(EntryType::Symlink);
                header.set_size(0);
                self.link(header, path, &target)
            }
            _ => Err(io::Error::other(format!(
                "`{}` is a device node, FIFO or socket, which a plugin layer never carries",
                String::from_utf8_lossy(rel)
            ))),
        }
    }

    /// Appends a symlink or hardlink with its target byte for byte (the tar crate's setter would
    /// normalise `a//b` or a trailing `/`), long targets in a GNU `K` entry as the tar crate does.
    fn link(&mut self, mut header: Header, path: &Path, target: &[u8]) -> io::Result<()> {
        let slot = &mut header.as_old_mut().linkname;
        if target.len() > slot.len() {
            let mut long = Header::new_gnu();
            long.set_path("././@LongLink")?;
            long.set_mode(0o644);
            long.set_entry_type(EntryType::GNULongLink);
            long.set_size(target.len() as u64 + 1);
            long.set_cksum();
            self.builder.append(&long, target.chain(&[0u8][..]))?;
        }
        let n = target.len().min(slot.len());
        slot[..n].copy_from_slice(&target[..n]);
        self.builder.append_data(&mut header, path, io::empty())
    }
}

/// A header with the metadata every entry type shares.
fn header_for(st: &FileStat) -> Header {
    let mut header = Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(u64::from(st.st_uid));
    header.set_gid(u64::from(st.st_gid));
    // See `write_layer`: a layer is a function of the files' contents and metadata alone.
    header.set_mtime(0);
    header.set_size(0);
    header
}

fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Checks that the opened `fd` is the inode `listed` was stat'ed as (a rename in between would
/// otherwise let a plugin swap in something else), and returns its current stat.
fn same_inode(fd: &impl AsFd, listed: &FileStat, rel: &[u8]) -> io::Result<FileStat> {
    let st = fstat(fd)?;
    if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino)
        || file_kind(&st) != file_kind(listed)
    {
        return Err(io::Error::other(format!(
            "`{}` changed while the layer was being written",
            String::from_utf8_lossy(rel)
        )));
    }
    Ok(st)
}

/// Reads exactly the size put in the header: a file that shrinks meanwhile would otherwise corrupt
/// the archive (the tar crate pads by what it read, not by what it announced).
struct Exact<'r, R> {
    inner: R,
    left: u64,
    rel: &'r [u8],
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::other(format!(
                "`{}` shrank while the layer was being written",
                String::from_utf8_lossy(self.rel)
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}
