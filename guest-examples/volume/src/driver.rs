//! The volume driver itself, shared by both packagings: the wasm component (`src/lib.rs`) and the
//! native binary (`native/src/main.rs`, which includes this file).
//!
//! Each volume is a directory `<root>/<name>`, where `<root>` is the environment variable
//! `VOLUME_ROOT` (default `/data`, the plugin's `PropagatedMount`). Mount and Path return that
//! directory as a plugin-internal path; the host translates it for dockerd. Names that could leave
//! the root (`/` inside, `.`, `..`, empty) are refused with `invalid-argument`.

use plugd_plugin_sdk::{Error, Volume, VolumeDriver};
use std::io;
use std::path::{Path, PathBuf};

/// Volumes as directories under one root.
pub struct VolumeDirs {
    root: PathBuf,
}

impl VolumeDirs {
    /// Volumes under `root`.
    pub fn new(root: impl Into<PathBuf>) -> VolumeDirs {
        VolumeDirs { root: root.into() }
    }

    /// Volumes under `$VOLUME_ROOT`, default `/data`. Read once: a plugin's environment is fixed
    /// while it runs (`plugd set` needs a disabled plugin).
    pub fn from_env() -> VolumeDirs {
        let root = std::env::var_os("VOLUME_ROOT").filter(|v| !v.is_empty());
        VolumeDirs::new(root.unwrap_or_else(|| "/data".into()))
    }

    /// The directory of volume `name`, after refusing names that are not a single path component.
    fn dir(&self, name: &str) -> Result<PathBuf, Error> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Error::invalid_argument(format!(
                "invalid volume name {name:?}"
            )));
        }
        Ok(self.root.join(name))
    }

    /// The directory of volume `name`, which must exist.
    fn existing(&self, name: &str) -> Result<PathBuf, Error> {
        let dir = self.dir(name)?;
        let meta = std::fs::metadata(&dir).map_err(|e| io_error(name, e))?;
        if !meta.is_dir() {
            return Err(no_such_volume(name));
        }
        Ok(dir)
    }
}

fn no_such_volume(name: &str) -> Error {
    Error::not_found(format!("no such volume {name:?}"))
}

/// Maps an I/O error on volume `name` onto the driver error codes, keeping host paths out of the
/// message.
fn io_error(name: &str, err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::NotFound => no_such_volume(name),
        io::ErrorKind::AlreadyExists => {
            Error::conflict(format!("volume {name:?} exists and is not a directory"))
        }
        _ => Error::internal(format!("volume {name:?}: {err}")),
    }
}

fn path_string(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

/// Describes a volume. `created_at` stays none: WASI 0.2 reports no birth time (only access,
/// modification and status-change times, which move whenever the volume's contents change), and
/// dockerd prefers an absent `CreatedAt` to a wrong one. The native packaging leaves it out too,
/// so both answer alike.
fn describe(name: String, dir: &Path) -> Volume {
    Volume::new(name, path_string(dir))
}

impl VolumeDriver for VolumeDirs {
    fn create(&self, name: &str, _opts: &[(String, String)]) -> Result<(), Error> {
        let dir = self.dir(name)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(()),
            // Idempotent: dockerd calls Create whenever Get failed, and a retry must not fail.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(io_error(name, e)),
        }
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        let dir = self.existing(name)?;
        std::fs::remove_dir_all(dir).map_err(|e| io_error(name, e))
    }

    fn mount(&self, name: &str, _id: &str) -> Result<String, Error> {
        self.existing(name).map(|d| path_string(&d))
    }

    fn unmount(&self, name: &str, _id: &str) -> Result<(), Error> {
        self.existing(name).map(drop)
    }

    fn path(&self, name: &str) -> Result<String, Error> {
        self.existing(name).map(|d| path_string(&d))
    }

    fn get(&self, name: &str) -> Result<Volume, Error> {
        let dir = self.existing(name)?;
        Ok(describe(name.to_string(), &dir))
    }

    fn list(&self) -> Result<Vec<Volume>, Error> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| {
            Error::internal(format!(
                "cannot read volume root {}: {e}",
                self.root.display()
            ))
        })?;
        let mut volumes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::internal(e.to_string()))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if entry.metadata().is_ok_and(|m| m.is_dir()) {
                volumes.push(describe(name, &entry.path()));
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }
}
