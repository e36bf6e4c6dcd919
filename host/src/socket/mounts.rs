//! Which volumes a plugin has mounted, and the plugd-owned paths dockerd gets for them.
//!
//! Every path plugd hands dockerd in a volume reply is a **pin**: the directory the plugin named is
//! opened once, inside the plugin's filesystem, and bind-mounted (`nosuid,nodev`, recursively)
//! onto a directory under `<state-dir>/mounts/`, which only plugd controls. dockerd follows such a
//! path when it binds a volume into a container, so a plugin's own path would let the plugin swap a
//! component for a symlink after plugd checked it and have dockerd bind any host directory; a pin
//! names one inode for as long as it exists. `nosuid,nodev` keep a plugin from handing containers a
//! setuid binary or a device node it created.
//!
//! - a `Mount` reply gets `mounts/<mount id>`, removed at the matching `Unmount`;
//! - a `Path`, `Get` or `List` reply gets the volume's live mount pin if it has one, else a *view*
//!   `mounts/view-<hash of the name>`, kept until the volume is removed (refreshed when the plugin
//!   reports another directory);
//! - disable and rm remove them all.
//!
//! The `(volume, mount id)` pairs of live mounts are also kept in `mounts.json`, so a restarted
//! plugd still refuses to disable a plugin whose volumes containers hold.

use nix::libc;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The mount table of one plugin; see the module docs.
#[derive(Debug, Default)]
pub struct Mounts {
    set: Mutex<BTreeSet<(String, String)>>,
    file: Option<PathBuf>,
    pins: Option<PathBuf>,
}

impl Mounts {
    /// A table persisted in `state_dir`, starting from what an earlier plugd left there.
    pub fn persisted(state_dir: &Path) -> Mounts {
        let file = state_dir.join("mounts.json");
        let set = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeSet<(String, String)>>(&b).ok())
            .unwrap_or_default();
        Mounts {
            set: Mutex::new(set),
            file: Some(file),
            pins: Some(state_dir.join("mounts")),
        }
    }

    fn change(&self, f: impl FnOnce(&mut BTreeSet<(String, String)>)) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut set);
        if let Some(file) = &self.file {
            let bytes = serde_json::to_vec(&*set).unwrap_or_default();
            if let Err(e) = crate::fsutil::write_atomic(file, &bytes, 0o600) {
                tracing::warn!(path = %file.display(), error = %e, "cannot record mounted volumes");
            }
        }
    }

    /// Where the pin of mount `id` lives; `None` for an id that is not a plain name.
    fn pin_path(&self, id: &str) -> Option<PathBuf> {
        let ok = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with("view-")
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        self.pins.as_ref().filter(|_| ok).map(|d| d.join(id))
    }

    /// Where the view of volume `name` lives: its name hashed, since names are any string.
    fn view_path(&self, name: &str) -> Option<PathBuf> {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.pins.as_ref().map(|d| d.join(format!("view-{hex}")))
    }

    /// Pins `dir` (an `O_PATH` fd of the volume's directory) for mount `id` and records the mount.
    pub fn mount(&self, name: &str, id: &str, dir: &OwnedFd) -> Result<PathBuf, String> {
        let target = self
            .pin_path(id)
            .ok_or_else(|| format!("mount id {id:?} is not a plain name"))?;
        pin(&target, dir)?;
        self.change(|s| {
            s.insert((name.to_string(), id.to_string()));
        });
        Ok(target)
    }

    /// Forgets mount `id` of `name` and removes its pin.
    pub fn unmount(&self, name: &str, id: &str) {
        if let Some(target) = self.pin_path(id) {
            unpin(&target);
        }
        self.change(|s| {
            s.remove(&(name.to_string(), id.to_string()));
        });
    }

    /// The path to report for volume `name` in a Path, Get or List reply: its live mount pin if
    /// it has one, else its view of `dir` (created, or refreshed if it shows another inode).
    pub fn report(&self, name: &str, dir: &OwnedFd) -> Result<PathBuf, String> {
        let live = {
            let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
            set.iter()
                .filter(|(n, _)| n == name)
                .find_map(|(_, id)| self.pin_path(id).filter(|p| p.exists()))
        };
        if let Some(p) = live {
            return Ok(p);
        }
        let target = self
            .view_path(name)
            .ok_or_else(|| "no state directory for views".to_string())?;
        if !same_inode(&target, dir) {
            pin(&target, dir)?;
        }
        Ok(target)
    }

    /// Removes the view of a volume the plugin removed.
    pub fn forget(&self, name: &str) {
        if let Some(target) = self.view_path(name) {
            unpin(&target);
        }
    }

    /// Names of mounted volumes, deduplicated and sorted.
    pub fn in_use(&self) -> Vec<String> {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let names: BTreeSet<_> = set.iter().map(|(n, _)| n.clone()).collect();
        names.into_iter().collect()
    }

    /// Forgets everything and removes every pin and view (the plugin was disabled or removed).
    pub fn clear(&self) {
        if let Some(dir) = &self.pins
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                unpin(&e.path());
            }
        }
        self.change(BTreeSet::clear);
    }
}

/// True when `target` is (the root of) the very directory `dir` is.
fn same_inode(target: &Path, dir: &OwnedFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(t), Ok(d)) = (
        std::fs::metadata(target),
        std::fs::metadata(format!("/proc/self/fd/{}", dir.as_raw_fd())),
    ) else {
        return false;
    };
    // A leftover directory at `target` that is not a bind of `dir` is another inode.
    t.dev() == d.dev() && t.ino() == d.ino()
}

/// Binds `dir` onto `target` (replacing what was there), `nosuid,nodev` all the way down.
fn pin(target: &Path, dir: &OwnedFd) -> Result<PathBuf, String> {
    if let Some(parent) = target.parent() {
        crate::fsutil::create_dir_all(parent, 0o700).map_err(|e| e.to_string())?;
    }
    unpin(target);
    std::fs::create_dir(target).map_err(|e| format!("{}: {e}", target.display()))?;
    let source = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let bound = mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("pinning the volume at {}: {e}", target.display()))
    .and_then(|()| restrict(target));
    if let Err(e) = bound {
        unpin(target);
        return Err(e);
    }
    Ok(target.to_path_buf())
}

/// Sets `nosuid,nodev` on the pin and every mount below it (`mount_setattr`, Linux 5.12), or on
/// the pin itself by a bind remount that keeps its read-only and noexec flags (older kernels).
fn restrict(target: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|_| format!("{}: NUL in path", target.display()))?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a valid `mount_attr` of the size
    // passed; the kernel reads both and writes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = nix::errno::Errno::last();
    if err != nix::errno::Errno::ENOSYS {
        return Err(format!("making {} nosuid,nodev: {err}", target.display()));
    }
    let vfs = nix::sys::statvfs::statvfs(target)
        .map_err(|e| format!("statvfs {}: {e}", target.display()))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let kept = vfs.flags();
    if kept.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        flags |= MsFlags::MS_RDONLY;
    }
    if kept.contains(nix::sys::statvfs::FsFlags::ST_NOEXEC) {
        flags |= MsFlags::MS_NOEXEC;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remounting {} nosuid,nodev: {e}", target.display()))
}

/// Lazily unmounts a pin (and what was mounted below it) and removes its directory.
fn unpin(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
    let _ = std::fs::remove_dir(target);
}
