//! Precompiled components on disk.
//!
//! Compiling a component costs 0.1–0.3 s for a Rust guest and 14–24 s for Python or JS ones;
//! loading a precompiled artifact with [`Component::deserialize_file`] costs well under 10 ms. So
//! the native code is cached in a directory only plugd writes to, one file per
//! `(sha256 of the wasm bytes, engine compatibility hash)` pair:
//! `<sha256-hex>-<engine-hash-hex>.cwasm`. A different wasmtime build or engine configuration gives
//! a different file name, never a stale artifact.
//!
//! Files are written atomically (a fresh temp file in the same directory, fsync, rename, fsync of
//! the directory) and never modified afterwards, so a reader either finds a complete artifact or
//! none, and a file that is mapped by a loaded component is never rewritten under it (a
//! concurrent writer replaces the directory entry, not the inode). Old artifacts are not collected.

use sha2::{Digest, Sha256};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Why the cache could not produce a component.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// The cache directory is unusable (cannot be created, not ours, open to others).
    #[error("wasm cache directory {path}: {reason}")]
    Dir {
        /// The configured directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an artifact failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a component this engine can compile.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// An artifact plugd wrote could not be loaded.
    #[error("cannot load precompiled {path}: {message}")]
    Load {
        /// The artifact.
        path: PathBuf,
        /// wasmtime's error.
        message: String,
    },
}

/// Whether [`ComponentCache::load_or_compile`] compiled or reused an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheOutcome {
    /// An artifact was on disk and was loaded.
    Hit,
    /// The component was compiled and the artifact written.
    Compiled,
}

/// A directory of precompiled components for one engine.
pub(crate) struct ComponentCache {
    dir: PathBuf,
    /// Hex of [`Engine::precompile_compatibility_hash`], computed once.
    engine_hash: String,
}

/// Tells temp files of concurrent writers in this process apart (the pid tells processes apart).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ComponentCache {
    /// Opens (creating it with mode 0700 if needed) the cache directory for `engine`. Refuses a
    /// directory that is a symlink, is not owned by this process's user, or is writable by others:
    /// artifacts in it are executed as native code.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let fail = |reason: String| CacheError::Dir {
            path: dir.to_path_buf(),
            reason,
        };
        match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) => return Err(fail(format!("cannot create: {e}"))),
        }
        let meta = fs::symlink_metadata(dir).map_err(|e| fail(e.to_string()))?;
        if !meta.is_dir() {
            return Err(fail(
                "is not a directory (symlinks are refused)".to_string(),
            ));
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(fail(format!(
                "is owned by uid {}, not by plugd",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(format!("cannot restrict to mode 0700: {e}")))?;
        }
        Ok(ComponentCache {
            dir: dir.to_path_buf(),
            engine_hash: engine_hash_hex(engine),
        })
    }

    /// The artifact path for `wasm` under this engine.
    #[cfg(test)]
    fn artifact_path(&self, wasm: &[u8]) -> PathBuf {
        self.dir
            .join(artifact_name(&sha256_hex(wasm), &self.engine_hash))
    }

    /// Loads the precompiled artifact for `wasm`, compiling and writing it first when missing.
    /// Blocking (compilation is CPU-bound): call it from `spawn_blocking`.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        plugin: &str,
    ) -> Result<(Component, CacheOutcome), CacheError> {
        self.load_or_compile_digest(engine, wasm, &sha256_hex(wasm), plugin)
    }

    /// [`ComponentCache::load_or_compile`] for a caller that has hashed `wasm` already
    /// (`digest`: its lower-case hex sha256).
    pub(crate) fn load_or_compile_digest(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
        plugin: &str,
    ) -> Result<(Component, CacheOutcome), CacheError> {
        let path = self.dir.join(artifact_name(digest, &self.engine_hash));
        let t0 = Instant::now();
        if self.is_our_artifact(&path) {
            match load(engine, &path) {
                Ok(component) => {
                    tracing::info!(plugin, artifact = %path.display(), elapsed = ?t0.elapsed(),
                        "wasm cache hit: loaded precompiled component");
                    return Ok((component, CacheOutcome::Hit));
                }
                // Same engine hash but unloadable: recompile and replace it.
                Err(e) => tracing::warn!(plugin, error = %e, "discarding unloadable cache entry"),
            }
        }
        let cwasm = engine
            .precompile_component(wasm)
            .map_err(|e| CacheError::Compile(format!("{e:#}")))?;
        let compiled = t0.elapsed();
        write_atomic(&path, &cwasm)?;
        let component = load(engine, &path)?;
        tracing::info!(plugin, artifact = %path.display(), compile = ?compiled,
            total = ?t0.elapsed(), wasm_bytes = wasm.len(), native_bytes = cwasm.len(),
            "wasm cache miss: compiled component");
        Ok((component, CacheOutcome::Compiled))
    }

    /// Only regular files owned by us and not writable by others are trusted as artifacts.
    fn is_our_artifact(&self, path: &Path) -> bool {
        match fs::symlink_metadata(path) {
            Ok(meta) => {
                meta.is_file()
                    && meta.uid() == rustix::process::geteuid().as_raw()
                    && meta.mode() & 0o022 == 0
            }
            Err(_) => false,
        }
    }
}

fn load(engine: &Engine, path: &Path) -> Result<Component, CacheError> {
    // SAFETY: `deserialize_file` maps the file and runs its native code, so it must be an artifact
    // produced by `Engine::precompile_component` of a compatible engine and must not change while
    // mapped. Both hold: `path` is in the cache directory, which `ComponentCache::open` made or
    // checked to be a real directory owned by our uid with mode 0700 (no one else can create or
    // replace files in it); the name is derived from the engine's compatibility hash; the callers
    // check the file is a regular file owned by us (`is_our_artifact`) or just wrote it; and every
    // file here was written by `write_atomic` from `precompile_component`'s output, then renamed
    // into place and never opened for writing again. wasmtime additionally validates the header
    // and refuses artifacts from another engine configuration.
    let loaded = unsafe { Component::deserialize_file(engine, path) };
    loaded.map_err(|e| CacheError::Load {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    })
}

/// Writes `bytes` to `path` so that readers see either nothing or the complete file: a new temp
/// file in the same directory (mode 0600, `O_EXCL`), fsync, rename over `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let werr = |source| CacheError::Write {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

/// `<sha256-hex>-<engine-hash-hex>.cwasm`.
pub(crate) fn artifact_name(wasm_sha256: &str, engine_hash: &str) -> String {
    format!("{wasm_sha256}-{engine_hash}.cwasm")
}

/// Lower-case hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A stable hex digest of the engine's compatibility hash: wasmtime only offers it as
/// `impl Hash`, so it is fed through a sha256-backed [`Hasher`] (the value is deterministic for a
/// given wasmtime build and configuration, unlike `DefaultHasher`'s seeds).
pub(crate) fn engine_hash_hex(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..16])
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn artifact_name_has_both_hashes() {
        let engine = crate::engine::new_engine().unwrap();
        let dir = TempDir::new("cache-key");
        let cache = ComponentCache::open(&dir.path().join("c"), &engine).unwrap();
        let a = cache.artifact_path(b"\0asm\x0d\0\x01\0");
        let b = cache.artifact_path(b"\0asm\x0d\0\x01\0 ");
        assert_ne!(a, b, "different bytes, different key");
        assert_eq!(
            a,
            cache.artifact_path(b"\0asm\x0d\0\x01\0"),
            "key is deterministic"
        );
        let name = a.file_name().unwrap().to_str().unwrap().to_string();
        let wasm_hex = sha256_hex(b"\0asm\x0d\0\x01\0");
        assert_eq!(
            name,
            format!("{wasm_hex}-{}.cwasm", engine_hash_hex(&engine))
        );
        assert_eq!(wasm_hex.len(), 64);
        assert_eq!(
            engine_hash_hex(&engine),
            engine_hash_hex(&crate::engine::new_engine().unwrap())
        );
    }

    #[test]
    fn cache_dir_is_private() {
        let engine = crate::engine::new_engine().unwrap();
        let dir = TempDir::new("cache-mode");
        let path = dir.path().join("cache");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        ComponentCache::open(&path, &engine).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o700);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            ComponentCache::open(&link, &engine).is_err(),
            "a symlinked cache dir is refused"
        );
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = TempDir::new("atomic");
        let target = dir.path().join("x.cwasm");
        write_atomic(&target, b"first version").unwrap();
        write_atomic(&target, b"second").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["x.cwasm"], "no temp file left behind");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = TempDir::new("atomic-fail");
        let target = dir.path().join("missing-subdir").join("x.cwasm");
        assert!(write_atomic(&target, b"data").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn foreign_files_are_not_trusted() {
        let engine = crate::engine::new_engine().unwrap();
        let dir = TempDir::new("foreign");
        let cache = ComponentCache::open(&dir.path().join("c"), &engine).unwrap();
        let path = cache.artifact_path(b"x");
        fs::write(&path, b"not an artifact").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(
            !cache.is_our_artifact(&path),
            "group/other-writable file refused"
        );
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(!cache.is_our_artifact(&path), "symlink refused");
    }
}
