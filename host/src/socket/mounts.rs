//! Which volumes a plugin has mounted, and the plugd-owned paths dockerd gets for them.
//!
//! Every path plugd hands dockerd in a volume reply is a **pin**: the directory the plugin named is
//! opened once, inside the plugin's filesystem, and bind-mounted (`nosuid,nodev`, recursively)
//! onto a directory under `<state-dir>/mounts/`, which only plugd controls. dockerd follows such a
//! path when it binds a volume into a container, so a plugin's own path would let the plugin swap a
//! component for a symlink after plugd checked it and have dockerd bind any host directory; a pin
//! names one inode for as long as it exists. `nosuid,nodev` keep a plugin from handing containers a
//! setuid binary or a device node it created, and pins are private mounts, so nothing the plugin
//! mounts under its directory afterwards propagates into them.
//!
//! - a `Mount` reply gets `mounts/<mount id>`, removed at the matching `Unmount`;
//! - a `Path` or `Get` reply gets the volume's live mount pin if it has one, else a *view*
//!   `mounts/view-<hash of the name dockerd asked for>` (at most [`MAX_VIEWS`]), kept until the
//!   volume is removed (refreshed when the plugin reports another directory); a `List` reply, whose
//!   names are the plugin's, gets live pins and existing views only, `""` otherwise;
//! - disable and rm remove them all.
//!
//! The `(volume, mount id)` pairs of live mounts are also kept in `mounts.json`, so a restarted
//! plugd still refuses to disable a plugin whose volumes containers hold.

use nix::mount::{MntFlags, umount2};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most views one plugin may have (each is a mount in the host's mount table).
pub const MAX_VIEWS: usize = 1024;

/// The mount table of one plugin; see the module docs.
#[derive(Debug, Default)]
pub struct Mounts {
    set: Mutex<BTreeSet<(String, String)>>,
    file: Option<PathBuf>,
    pins: Option<PathBuf>,
    /// The views this table made or checked, by path, with the `(dev, ino)` each shows. Only
    /// plugd mounts or unmounts under `pins` (root's 0700 state dir), so a view found here still
    /// shows that inode: a Get of a volume whose directory is unchanged is answered from here,
    /// without a path lookup through the view (the costliest step of a Get).
    views: Mutex<HashMap<PathBuf, Inode>>,
}

/// A directory's identity: `(st_dev, st_ino)`.
type Inode = (u64, u64);

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
            views: Mutex::default(),
        }
    }

    fn change(&self, f: impl FnOnce(&mut BTreeSet<(String, String)>)) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut set);
        if let Some(file) = &self.file {
            let bytes = serde_json::to_vec(&*set).unwrap_or_default();
            if let Err(e) = crate::fsutil::write_runtime_state(file, &bytes, 0o600) {
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(name.as_bytes());
        let mut file = String::with_capacity(5 + 32);
        file.push_str("view-");
        for b in &digest[..16] {
            file.push(HEX[usize::from(b >> 4)] as char);
            file.push(HEX[usize::from(b & 0xf)] as char);
        }
        self.pins.as_ref().map(|d| d.join(file))
    }

    /// The views this table made or checked (see the field), locked: whoever checks, makes or
    /// removes a view holds it, so what it records is what is mounted.
    fn views(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Inode>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins `dir` (an `O_PATH` fd of the volume's directory) for mount `id` and records the mount.
    pub fn mount(&self, name: &str, id: &str, dir: &OwnedFd) -> Result<PathBuf, String> {
        let target = self
            .pin_path(id)
            .ok_or_else(|| format!("mount id {id:?} is not a plain name"))?;
        // Rootless: the engine cannot see plugd's mounts, so it gets the directory itself.
        let target = match crate::rootless::active() {
            true => crate::rootless::engine_path(dir)?,
            false => pin(&target, dir)?,
        };
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
    /// it has one; else its view of `dir` (created, or refreshed if it shows another inode) when
    /// `may_create`, or an existing view; else `None`. Views are created only for names dockerd
    /// asked about (Path, Get) and at most [`MAX_VIEWS`] per plugin: a List reply names whatever
    /// the plugin likes, and each view is a mount in the host's table.
    pub fn report(
        &self,
        name: &str,
        dir: &OwnedFd,
        may_create: bool,
    ) -> Result<Option<PathBuf>, String> {
        if crate::rootless::active() {
            // No pins or views to report (see `mount`): the directory itself.
            return crate::rootless::engine_path(dir).map(Some);
        }
        // The ids are read under the lock; the filesystem is looked at after it is released.
        let ids: Vec<String> = {
            let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
            set.iter()
                .filter(|(n, _)| n == name)
                .map(|(_, id)| id.clone())
                .collect()
        };
        if let Some(p) = ids
            .iter()
            .find_map(|id| self.pin_path(id).filter(|p| p.exists()))
        {
            return Ok(Some(p));
        }
        let target = self
            .view_path(name)
            .ok_or_else(|| "no state directory for views".to_string())?;
        let shown = inode_of_fd(dir).map_err(|e| format!("volume {name:?}: fstat: {e}"))?;
        let mut views = self.views();
        if views.get(&target) == Some(&shown) {
            return Ok(Some(target));
        }
        if inode_at(&target) == Some(shown) {
            // A leftover directory at `target` that is not a bind of `dir` is another inode.
            views.insert(target.clone(), shown);
            return Ok(Some(target));
        }
        if !may_create && !target.exists() {
            return Ok(None);
        }
        if !target.exists() && self.count_views() >= MAX_VIEWS {
            return Ok(None);
        }
        views.remove(&target);
        pin(&target, dir)?;
        views.insert(target.clone(), shown);
        Ok(Some(target))
    }

    /// How many views exist now.
    fn count_views(&self) -> usize {
        self.pins
            .as_ref()
            .and_then(|d| std::fs::read_dir(d).ok())
            .map_or(0, |entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("view-"))
                    .count()
            })
    }

    /// Removes the view of a volume the plugin removed.
    pub fn forget(&self, name: &str) {
        if let Some(target) = self.view_path(name) {
            let mut views = self.views();
            unpin(&target);
            views.remove(&target);
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
        let mut views = self.views();
        if let Some(dir) = &self.pins
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                unpin(&e.path());
            }
        }
        views.clear();
        drop(views);
        self.change(BTreeSet::clear);
    }
}

/// The identity of the directory behind `dir` (an `O_PATH` descriptor: `fstat` works on it).
fn inode_of_fd(dir: &OwnedFd) -> nix::Result<Inode> {
    let st = nix::sys::stat::fstat(dir)?;
    Ok((st.st_dev, st.st_ino))
}

/// The identity of what `target` names now, if anything.
fn inode_at(target: &Path) -> Option<Inode> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(target).ok().map(|m| (m.dev(), m.ino()))
}

/// Binds `dir` onto `target` (replacing what was there), `nosuid,nodev` all the way down: a
/// detached clone of the tree at `dir` gets the attributes first and is attached only then, so
/// the pin never exists without them.
fn pin(target: &Path, dir: &OwnedFd) -> Result<PathBuf, String> {
    use plugd_fs::mount;
    if let Some(parent) = target.parent() {
        crate::fsutil::create_dir_all(parent, 0o700).map_err(|e| e.to_string())?;
    }
    unpin(target);
    std::fs::create_dir(target).map_err(|e| format!("{}: {e}", target.display()))?;
    let bound = mount::clone_tree(dir, true)
        .and_then(|tree| {
            // Private: nothing the plugin mounts under its directory later reaches the pin (and through
            // it a container) without these flags.
            mount::set_attrs(&tree, mount::NOSUID | mount::NODEV, mount::PRIVATE, true)?;
            mount::attach(&tree, target)
        })
        .map_err(|e| format!("pinning the volume at {}: {e}", target.display()));
    if let Err(e) = bound {
        unpin(target);
        return Err(e);
    }
    Ok(target.to_path_buf())
}

/// Lazily unmounts a pin (and what was mounted below it) and removes its directory.
fn unpin(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
    let _ = std::fs::remove_dir(target);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn open_dir(path: &Path) -> OwnedFd {
        plugd_fs::InRoot::open(path)
            .and_then(|r| r.resolve_dir("").map_err(std::io::Error::from))
            .unwrap()
    }

    fn shows(target: &Path, dir: &Path) -> bool {
        let (a, b) = (
            std::fs::metadata(target).unwrap(),
            std::fs::metadata(dir).unwrap(),
        );
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    }

    /// Needs root (views are bind mounts), as plugd does.
    #[test]
    fn a_view_is_remembered_until_forgotten_and_remade_for_another_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let volume = tmp.path().join("plugin/v");
        std::fs::create_dir_all(&volume).unwrap();
        // Whatever happens, no view stays mounted on the host.
        struct Cleared(Mounts);
        impl Drop for Cleared {
            fn drop(&mut self) {
                self.0.clear();
            }
        }
        let cleared = Cleared(Mounts::persisted(&tmp.path().join("state")));
        let m = &cleared.0;

        let target = m.report("v", &open_dir(&volume), true).unwrap().unwrap();
        assert!(shows(&target, &volume));
        assert_eq!(
            m.report("v", &open_dir(&volume), false).unwrap(),
            Some(target.clone())
        );

        // The plugin replaced the directory: the view is made again for the new one.
        std::fs::remove_dir(&volume).unwrap();
        std::fs::create_dir(&volume).unwrap();
        let again = m.report("v", &open_dir(&volume), true).unwrap().unwrap();
        assert_eq!(again, target);
        assert!(shows(&target, &volume), "the view shows the new directory");

        // Forgotten (the volume was removed): not reported from memory, and gone from the host.
        m.forget("v");
        assert!(!target.exists());
        assert_eq!(m.report("v", &open_dir(&volume), false).unwrap(), None);
    }
}
