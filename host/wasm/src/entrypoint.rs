//! Which runtime a bundle needs, and reading its component, without leaving the rootfs.
//!
//! A bundle's entrypoint is `config.Entrypoint[0]`, a path inside the plugin's root filesystem. It
//! is resolved the way the plugin itself would see it: as if the rootfs were `/` (a symlink to
//! `/usr/lib/x.wasm` means `<rootfs>/usr/lib/x.wasm`; `..` stops at the rootfs), via
//! [`plugd_fs::InRoot`] (plugd's one in-root resolver and its one fallback). The path is resolved
//! to an `O_PATH` descriptor, which opens nothing; only if that inode is a regular file is it
//! opened for reading (a device node or FIFO a running plugin planted there is never opened), and
//! at most [`MAX_ENTRYPOINT_BYTES`] are read.

use plugd_core::{PluginSpec, RuntimeError};
use plugd_fs::{InRoot, Resolver};
use rustix::io::Errno;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest entrypoint plugd reads (componentize-py output is about 18 MB).
pub const MAX_ENTRYPOINT_BYTES: u64 = 256 << 20;

/// The wasm binary magic, `\0asm`.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// What a bundle's entrypoint is, which decides the runtime that handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntrypointKind {
    /// A WebAssembly component: the wasm runtime.
    Component,
    /// A core WebAssembly module: no runtime takes these yet (the manager should refuse it).
    CoreModule,
    /// Anything else (an ELF binary, a script, a `PATH` lookup): the native runtime.
    NotWasm,
}

/// True when `bytes` start like a WebAssembly component: the `\0asm` magic followed by a version
/// whose layer field (bytes 6..8) is 1. A core module has layer 0 (`\0asm\x01\0\0\0`). Only the
/// header is looked at; wasmtime validates the rest when compiling.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == WASM_MAGIC && bytes[6..8] == [1, 0]
}

fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == WASM_MAGIC && bytes[6..8] == [0, 0]
}

/// Classifies the bundle's entrypoint by its first bytes (never by its name).
///
/// An entrypoint without a `/` is a `PATH` lookup, which only a native runtime does: `NotWasm`.
/// Errors (as [`RuntimeError::Bundle`]) when there is no entrypoint, or the file is missing, is
/// not a regular file, or cannot be reached without leaving the rootfs.
pub fn entrypoint_kind(spec: &PluginSpec) -> Result<EntrypointKind, RuntimeError> {
    let entry = entrypoint(spec)?;
    if !entry.contains('/') {
        return Ok(EntrypointKind::NotWasm);
    }
    let mut header = Vec::with_capacity(8);
    let file = open_in_root(&spec.rootfs, entry)?;
    file.take(8)
        .read_to_end(&mut header)
        .map_err(|e| bundle(entry, &e.to_string()))?;
    Ok(if is_component(&header) {
        EntrypointKind::Component
    } else if is_core_module(&header) {
        EntrypointKind::CoreModule
    } else {
        EntrypointKind::NotWasm
    })
}

/// Reads the component named by the bundle's entrypoint, refusing anything that is not one.
pub(crate) fn read_component(spec: &PluginSpec) -> Result<Vec<u8>, RuntimeError> {
    let entry = entrypoint(spec)?;
    let file = open_in_root(&spec.rootfs, entry)?;
    let mut bytes = Vec::new();
    file.take(MAX_ENTRYPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bundle(entry, &e.to_string()))?;
    if bytes.len() as u64 > MAX_ENTRYPOINT_BYTES {
        return Err(bundle(
            entry,
            &format!("is larger than {} MiB", MAX_ENTRYPOINT_BYTES >> 20),
        ));
    }
    if !is_component(&bytes) {
        let what = if is_core_module(&bytes) {
            "is a core wasm module, not a component (build for wasm32-wasip2)"
        } else {
            "is not a WebAssembly component"
        };
        return Err(bundle(entry, what));
    }
    Ok(bytes)
}

fn entrypoint(spec: &PluginSpec) -> Result<&str, RuntimeError> {
    match spec.config.entrypoint.as_deref() {
        Some([first, ..]) if !first.is_empty() => Ok(first.as_str()),
        _ => Err(RuntimeError::Bundle(
            "config declares no Entrypoint".to_string(),
        )),
    }
}

fn bundle(entry: &str, what: &str) -> RuntimeError {
    RuntimeError::Bundle(format!("entrypoint {entry:?} {what}"))
}

/// Opens `entry` (a path as the plugin sees it) inside `rootfs` for reading; see the module docs.
fn open_in_root(rootfs: &Path, entry: &str) -> Result<File, RuntimeError> {
    open_in_root_with(rootfs, entry, Resolver::Openat2)
}

fn open_in_root_with(rootfs: &Path, entry: &str, resolver: Resolver) -> Result<File, RuntimeError> {
    let root = InRoot::open(rootfs)
        .map_err(|e| RuntimeError::Bundle(format!("cannot open rootfs {}: {e}", rootfs.display())))?
        .with_resolver(resolver);
    if entry.trim_start_matches('/').is_empty() {
        return Err(bundle(entry, "names the rootfs itself"));
    }
    let fd = root.resolve(entry).map_err(|e| match e {
        Errno::NOENT => bundle(entry, "does not exist in the rootfs"),
        Errno::LOOP | Errno::NOTDIR => bundle(
            entry,
            "cannot be resolved inside the rootfs (a symlink on the way is refused)",
        ),
        Errno::XDEV => bundle(entry, "resolves outside the rootfs"),
        e => bundle(entry, &format!("cannot be opened: {e}")),
    })?;
    // Checked on the O_PATH descriptor before anything is opened for reading: a device node or a
    // FIFO the plugin planted is never opened (no driver `open`, no wait for a writer).
    plugd_fs::read_regular(&fd).map_err(|e| bundle(entry, &e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use plugd_core::PluginConfig;
    use rustix::fs::Mode;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    pub(crate) use crate::testutil::TempDir;

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0rest";
    const CORE: &[u8] = b"\0asm\x01\0\0\0rest";

    fn spec_with(rootfs: PathBuf, entry: &str) -> PluginSpec {
        PluginSpec {
            id: "0".repeat(64),
            name: "test:latest".to_string(),
            config: PluginConfig {
                entrypoint: Some(vec![entry.to_string()]),
                ..Default::default()
            },
            settings: Default::default(),
            rootfs,
            propagated_mount: None,
            runtime_dir: PathBuf::from("/nonexistent"),
            state_dir: PathBuf::from("/nonexistent/state"),
            observer: Default::default(),
        }
    }

    #[test]
    fn is_component_looks_at_the_header_only() {
        assert!(is_component(COMPONENT));
        assert!(
            is_component(b"\0asm\x0e\0\x01\0"),
            "a later component version is still one"
        );
        assert!(!is_component(CORE), "a core module is not a component");
        assert!(!is_component(b"\x7fELF\x02\x01\x01\0"));
        assert!(!is_component(b"\0asm"), "truncated");
        assert!(!is_component(b""));
        assert!(!is_component(b"#!/bin/sh\necho hi\n"));
    }

    #[test]
    fn kinds_by_content_not_name() {
        let dir = TempDir::new("kinds");
        std::fs::write(dir.path().join("a.wasm"), CORE).unwrap();
        std::fs::write(dir.path().join("plugin"), COMPONENT).unwrap();
        std::fs::write(dir.path().join("b.wasm"), b"#!/bin/sh\n").unwrap();
        let kind = |e: &str| entrypoint_kind(&spec_with(dir.path().to_path_buf(), e));
        assert_eq!(kind("/a.wasm").unwrap(), EntrypointKind::CoreModule);
        assert_eq!(kind("/plugin").unwrap(), EntrypointKind::Component);
        assert_eq!(kind("/b.wasm").unwrap(), EntrypointKind::NotWasm);
        assert_eq!(kind("sh").unwrap(), EntrypointKind::NotWasm, "PATH lookup");
        assert!(
            kind("/missing.wasm")
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn read_component_refuses_core_modules_and_dirs() {
        let dir = TempDir::new("read");
        std::fs::write(dir.path().join("core.wasm"), CORE).unwrap();
        std::fs::create_dir(dir.path().join("d.wasm")).unwrap();
        std::fs::write(dir.path().join("ok.wasm"), COMPONENT).unwrap();
        let read = |e: &str| read_component(&spec_with(dir.path().to_path_buf(), e));
        assert!(
            read("/core.wasm")
                .unwrap_err()
                .to_string()
                .contains("core wasm module")
        );
        assert!(
            read("/d.wasm")
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        assert_eq!(read("/ok.wasm").unwrap(), COMPONENT);
        let no_entry = PluginSpec {
            config: PluginConfig::default(),
            ..spec_with(dir.path().to_path_buf(), "/x")
        };
        assert!(
            read_component(&no_entry)
                .unwrap_err()
                .to_string()
                .contains("no Entrypoint")
        );
    }

    #[test]
    fn symlink_to_dev_zero_is_refused() {
        let dir = TempDir::new("devzero");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        symlink("/dev/zero", rootfs.join("plugin.wasm")).unwrap();
        for resolver in [Resolver::Openat2, Resolver::Walk] {
            let err = open_in_root_with(&rootfs, "/plugin.wasm", resolver).unwrap_err();
            assert!(
                matches!(err, RuntimeError::Bundle(_)),
                "{resolver:?}: {err}"
            );
        }
        // Even with a dev/zero inside the rootfs, it is not a regular file.
        std::fs::create_dir(rootfs.join("dev")).unwrap();
        symlink("/dev/zero", rootfs.join("dev/zero")).unwrap();
        let err = read_component(&spec_with(rootfs.clone(), "/plugin.wasm")).unwrap_err();
        assert!(matches!(err, RuntimeError::Bundle(_)), "{err}");
        let kind = entrypoint_kind(&spec_with(rootfs, "/plugin.wasm"));
        assert!(kind.is_err());
    }

    #[test]
    fn symlink_out_of_rootfs_is_refused() {
        let dir = TempDir::new("escape");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("sub")).unwrap();
        let outside = dir.path().join("outside.wasm");
        std::fs::write(&outside, COMPONENT).unwrap();
        symlink(&outside, rootfs.join("abs.wasm")).unwrap();
        symlink("../outside.wasm", rootfs.join("rel.wasm")).unwrap();
        symlink("../../outside.wasm", rootfs.join("sub/deep.wasm")).unwrap();
        symlink(dir.path(), rootfs.join("updir")).unwrap();
        for resolver in [Resolver::Openat2, Resolver::Walk] {
            for entry in [
                "/abs.wasm",
                "/rel.wasm",
                "/sub/deep.wasm",
                "/updir/outside.wasm",
                "/../outside.wasm",
            ] {
                let r = open_in_root_with(&rootfs, entry, resolver);
                assert!(r.is_err(), "{resolver:?} {entry} escaped the rootfs");
            }
        }
    }

    #[test]
    fn symlink_inside_rootfs_resolves_as_the_plugin_sees_it() {
        let dir = TempDir::new("inside");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/lib")).unwrap();
        std::fs::write(rootfs.join("usr/lib/p.wasm"), COMPONENT).unwrap();
        symlink("/usr/lib/p.wasm", rootfs.join("plugin.wasm")).unwrap();
        let bytes = read_component(&spec_with(rootfs.clone(), "/plugin.wasm"));
        // openat2 is on every kernel this runs on (>= 5.6); the fallback refuses all symlinks.
        assert_eq!(bytes.unwrap(), COMPONENT);
        assert!(open_in_root_with(&rootfs, "/plugin.wasm", Resolver::Walk).is_err());
        assert!(open_in_root_with(&rootfs, "/usr/lib/p.wasm", Resolver::Walk).is_ok());
    }

    /// A FIFO or device node planted as the entrypoint is never opened: inotify reports no
    /// `IN_OPEN` on it (an `O_PATH` lookup is not an open). Reading it used to open it first
    /// and check its type afterwards.
    #[test]
    fn special_files_are_never_opened() {
        use rustix::fs::inotify;
        let dir = TempDir::new("fifo");
        let fifo = dir.path().join("plugin.wasm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let ino =
            inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(&ino, &fifo, inotify::WatchFlags::OPEN).unwrap();
        let spec = spec_with(dir.path().to_path_buf(), "/plugin.wasm");
        assert!(entrypoint_kind(&spec).is_err());
        let err = read_component(&spec).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let mut buf = [std::mem::MaybeUninit::uninit(); 1024];
        let mut reader = inotify::Reader::new(&ino, &mut buf);
        match reader.next() {
            Err(Errno::AGAIN) => {}
            Ok(event) => panic!("the FIFO was opened: {event:?}"),
            Err(e) => panic!("inotify: {e}"),
        }
    }
}
