//! Is there something to run? The entrypoint (`argv[0]`) is looked up the way the sandbox will:
//! inside the rootfs as if it were `/` ([`plugd_fs::InRoot`], `O_PATH` only, nothing is opened:
//! symlinks resolve within the rootfs, `..` stops at it), relative to the working directory when it
//! has a `/`, else in each directory of the sandbox's `PATH` (the last `PATH=` of dockerd's default
//! followed by the settings' env). It must be a regular file with an execute bit.
//!
//! The plugin's rootfs is untrusted content, so nothing here follows a path outside it.

use plugd_core::{PluginSpec, RuntimeError};
use plugd_fs::InRoot;
use rustix::fs::{Mode, fstat};
use rustix::io::Errno;

// The sandbox's `PATH` unless the settings override it (dockerd's `oci.DefaultPathEnv`).
use plugd_init::spec::DEFAULT_PATH;

/// What looking up the entrypoint found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// An executable regular file.
    Executable,
    /// Something else at that path.
    NotExecutable(&'static str),
    /// Nothing.
    Missing,
}

/// Refuses a plugin whose entrypoint cannot be run (see the module docs).
pub(crate) fn check_entrypoint(spec: &PluginSpec) -> Result<(), RuntimeError> {
    let argv = spec.argv();
    let entry = match argv.first() {
        Some(e) if !e.is_empty() => e.as_str(),
        _ => {
            return Err(RuntimeError::Bundle(
                "config declares no Entrypoint (and no Args): nothing to run".to_string(),
            ));
        }
    };
    let root = InRoot::open(&spec.rootfs).map_err(|e| {
        RuntimeError::Bundle(format!("cannot open rootfs {}: {e}", spec.rootfs.display()))
    })?;
    let cwd = if spec.config.work_dir.is_empty() {
        "/"
    } else {
        spec.config.work_dir.as_str()
    };
    let candidates: Vec<String> = if entry.contains('/') {
        vec![join(cwd, entry)]
    } else {
        search_path(spec)
            .split(':')
            .map(|dir| join(cwd, &join(if dir.is_empty() { "." } else { dir }, entry)))
            .collect()
    };
    let mut first_problem = None;
    for candidate in &candidates {
        match lookup(&root, candidate) {
            Ok(Found::Executable) => return Ok(()),
            Ok(Found::NotExecutable(what)) => {
                first_problem.get_or_insert(format!("{candidate:?} {what}"));
            }
            Ok(Found::Missing) => {}
            Err(e) => {
                first_problem.get_or_insert(format!("{candidate:?} cannot be opened: {e}"));
            }
        }
    }
    Err(RuntimeError::Bundle(match first_problem {
        Some(p) => format!("entrypoint {entry:?}: {p}"),
        None if entry.contains('/') => format!("entrypoint {entry:?} does not exist in the rootfs"),
        None => format!(
            "entrypoint {entry:?} is not found in the rootfs in PATH {}",
            search_path(spec)
        ),
    }))
}

/// The last `PATH=` of dockerd's env list (`PATH` first, then the settings' env).
fn search_path(spec: &PluginSpec) -> String {
    let effective = spec.effective();
    effective
        .env_pairs()
        .filter(|(k, _)| *k == "PATH")
        .map(|(_, v)| v)
        .last()
        .unwrap_or(DEFAULT_PATH)
        .to_owned()
}

fn join(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        rel.to_string()
    } else {
        format!("{}/{rel}", base.trim_end_matches('/'))
    }
}

fn lookup(root: &InRoot, path: &str) -> Result<Found, Errno> {
    if path.trim_start_matches('/').is_empty() {
        return Ok(Found::NotExecutable("is the rootfs itself"));
    }
    let fd = match root.resolve(path) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    let st = fstat(&fd)?;
    let mode = Mode::from_raw_mode(st.st_mode);
    Ok(
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            Found::NotExecutable("is not a regular file")
        } else if !mode.intersects(Mode::XUSR | Mode::XGRP | Mode::XOTH) {
            Found::NotExecutable("is not executable")
        } else {
            Found::Executable
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, plugin_spec};
    use std::os::unix::fs::{PermissionsExt as _, symlink};
    use std::path::Path;

    fn exe(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"\x7fELF").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn check(root: &Path, entry: &str, env: &[&str]) -> Result<(), RuntimeError> {
        let mut spec = plugin_spec(root, Path::new("/nonexistent"));
        spec.config.entrypoint = Some(vec![entry.to_string()]);
        spec.settings.env = env.iter().map(|s| s.to_string()).collect();
        check_entrypoint(&spec)
    }

    #[test]
    fn absolute_relative_and_path_lookups() {
        let dir = TempDir::new("entry");
        let root = dir.path();
        exe(&root.join("bin/busybox"));
        symlink("busybox", root.join("bin/sh")).unwrap();
        // An absolute symlink resolves inside the rootfs, not on the host.
        symlink("/bin/busybox", root.join("bin/abs")).unwrap();
        exe(&root.join("opt/tool"));
        check(root, "/bin/busybox", &[]).unwrap();
        check(root, "/bin/sh", &[]).unwrap();
        check(root, "/bin/abs", &[]).unwrap();
        check(root, "sh", &[]).unwrap();
        check(root, "./bin/sh", &[]).unwrap();
        check(root, "tool", &["PATH=/opt"]).unwrap();
        let err = check(root, "tool", &[]).unwrap_err().to_string();
        assert!(
            err.contains("\"tool\" is not found in the rootfs in PATH /usr/local/sbin:"),
            "{err}"
        );
        let err = check(root, "/missing", &[]).unwrap_err().to_string();
        assert_eq!(err, "entrypoint \"/missing\" does not exist in the rootfs");
    }

    #[test]
    fn escapes_resolve_inside_the_rootfs() {
        let dir = TempDir::new("entry-escape");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        // Exists on the host, not in the rootfs: must not be found through `..` or a symlink.
        exe(&dir.path().join("outside"));
        symlink("../../outside", root.join("bin/out")).unwrap();
        assert!(check(&root, "/../outside", &[]).is_err());
        assert!(check(&root, "/bin/out", &[]).is_err());
        symlink(dir.path().join("outside"), root.join("bin/hostabs")).unwrap();
        assert!(check(&root, "/bin/hostabs", &[]).is_err());
    }

    #[test]
    fn not_executable_or_not_a_file() {
        let dir = TempDir::new("entry-kind");
        let root = dir.path();
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("plain"), b"x").unwrap();
        let err = check(root, "/d", &[]).unwrap_err().to_string();
        assert_eq!(err, "entrypoint \"/d\": \"/d\" is not a regular file");
        let err = check(root, "/plain", &[]).unwrap_err().to_string();
        assert_eq!(err, "entrypoint \"/plain\": \"/plain\" is not executable");
        let mut spec = plugin_spec(root, Path::new("/nonexistent"));
        spec.config.entrypoint = None;
        assert!(
            check_entrypoint(&spec)
                .unwrap_err()
                .to_string()
                .contains("no Entrypoint")
        );
    }
}
