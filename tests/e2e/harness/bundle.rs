//! Plugin bundle directories as `docker plugin create` (and `plugd create`) take them:
//! `<dir>/config.json` plus `<dir>/rootfs/...`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A bundle directory being built. Every method writes immediately and panics on I/O errors.
#[derive(Debug)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// Creates `dir` and `dir/rootfs` (both may already exist).
    pub fn new(dir: impl Into<PathBuf>) -> Bundle {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("rootfs"))
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Bundle { dir }
    }

    /// Writes `config.json` (pretty JSON).
    pub fn config(self, config: &Value) -> Bundle {
        let text = serde_json::to_string_pretty(config).expect("serialise config");
        self.config_text(&text)
    }

    /// Writes `config.json` verbatim (for invalid or oddly-cased configs).
    pub fn config_text(self, text: &str) -> Bundle {
        self.extra("config.json", text.as_bytes(), 0o644)
    }

    /// Writes a file at `rel` inside the bundle dir itself (outside `rootfs/`).
    pub fn extra(self, rel: &str, bytes: &[u8], mode: u32) -> Bundle {
        write_file(&self.dir.join(rel), bytes, mode);
        self
    }

    /// Writes a file at `rel` inside `rootfs/`.
    pub fn file(self, rel: &str, bytes: &[u8], mode: u32) -> Bundle {
        write_file(
            &self.rootfs().join(rel.trim_start_matches('/')),
            bytes,
            mode,
        );
        self
    }

    /// Copies `src` to `rel` inside `rootfs/`.
    pub fn copy(self, rel: &str, src: &Path, mode: u32) -> Bundle {
        let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        self.file(rel, &bytes, mode)
    }

    /// Creates an (empty) directory `rel` inside `rootfs/`.
    pub fn dir(self, rel: &str) -> Bundle {
        let d = self.rootfs().join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        self
    }

    /// The bundle directory (what to pass to `docker plugin create NAME DIR`).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<bundle>/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Consumes the builder, returning the bundle directory.
    pub fn into_path(self) -> PathBuf {
        self.dir
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
