//! An example volume driver for plugd's wasm runtime.
//!
//! Each volume is a directory `<root>/<name>`, where `<root>` is the environment variable
//! `VOLUME_ROOT` (default `/data`, the plugin's `PropagatedMount`). Mount and Path return that
//! directory as a plugin-internal path; plugd translates it to the host path for dockerd. Names
//! that could leave the root (`/` inside, `.`, `..`, empty) are refused with `invalid-argument`.

wit_bindgen::generate!({ world: "volume-plugin", path: "../../wit" });

use docker::plugin::types::{Error, ErrorCode};
use exports::docker::plugin::volume_driver::{Guest, Scope, Volume};
use std::io;
use std::path::PathBuf;

struct Driver;

/// The directory holding every volume.
fn root() -> PathBuf {
    PathBuf::from(std::env::var("VOLUME_ROOT").unwrap_or_else(|_| "/data".to_string()))
}

fn error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
    }
}

/// The directory of volume `name`, after refusing names that are not a single path component.
fn volume_dir(name: &str) -> Result<PathBuf, Error> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(error(
            ErrorCode::InvalidArgument,
            format!("invalid volume name {name:?}"),
        ));
    }
    Ok(root().join(name))
}

/// Maps an I/O error on volume `name` onto the driver error codes.
fn io_error(name: &str, err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::NotFound => error(ErrorCode::NotFound, format!("no such volume {name:?}")),
        io::ErrorKind::AlreadyExists => error(
            ErrorCode::Conflict,
            format!("volume {name:?} exists and is not a directory"),
        ),
        _ => error(ErrorCode::Internal, format!("volume {name:?}: {err}")),
    }
}

/// The volume's directory, which must exist.
fn existing(name: &str) -> Result<PathBuf, Error> {
    let dir = volume_dir(name)?;
    let meta = std::fs::metadata(&dir).map_err(|e| io_error(name, e))?;
    if !meta.is_dir() {
        return Err(error(
            ErrorCode::NotFound,
            format!("no such volume {name:?}"),
        ));
    }
    Ok(dir)
}

fn path_string(dir: PathBuf) -> String {
    dir.to_string_lossy().into_owned()
}

/// Describes a volume. `created_at` stays none: WASI 0.2 reports no birth time (only access,
/// modification and status-change times, which move whenever the volume's contents change), and
/// dockerd prefers an absent `CreatedAt` to a wrong one.
fn describe(name: String, dir: PathBuf) -> Volume {
    Volume {
        name,
        mountpoint: path_string(dir),
        created_at: None,
        status: Vec::new(),
    }
}

impl Guest for Driver {
    fn create(name: String, _opts: Vec<(String, String)>) -> Result<(), Error> {
        let dir = volume_dir(&name)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(()),
            // Idempotent: dockerd calls Create whenever Get failed, and a retry must not fail.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(io_error(&name, e)),
        }
    }

    fn remove(name: String) -> Result<(), Error> {
        let dir = existing(&name)?;
        std::fs::remove_dir_all(dir).map_err(|e| io_error(&name, e))
    }

    fn mount(name: String, _id: String) -> Result<String, Error> {
        existing(&name).map(path_string)
    }

    fn unmount(name: String, _id: String) -> Result<(), Error> {
        existing(&name).map(drop)
    }

    fn path(name: String) -> Result<String, Error> {
        existing(&name).map(path_string)
    }

    fn get(name: String) -> Result<Volume, Error> {
        let dir = existing(&name)?;
        Ok(describe(name, dir))
    }

    fn list() -> Result<Vec<Volume>, Error> {
        let root = root();
        let entries = std::fs::read_dir(&root).map_err(|e| {
            error(
                ErrorCode::Internal,
                format!("cannot read volume root {}: {e}", root.display()),
            )
        })?;
        let mut volumes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => volumes.push(describe(name, entry.path())),
                _ => continue,
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    fn capabilities() -> Scope {
        Scope::Local
    }
}

export!(Driver);
