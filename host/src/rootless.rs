//! Rootless mode: `plugd daemon` run by an ordinary user, serving wasm plugins only.
//!
//! A wasm plugin needs no privilege of its own (docs/privileges.md), so plugd does not need root
//! to serve one. What does need root is refused or replaced here, in one place:
//!
//! - **paths**: the defaults under `/run` and `/var/lib` become `$XDG_RUNTIME_DIR/plugd` (exec
//!   root, API socket `plugd.sock`, engine-facing plugin sockets in `plugins/`) and
//!   `$XDG_DATA_HOME/plugd` (data root; `~/.local/share/plugd` without it), see [`Defaults`];
//! - **native plugins**: refused at create and enable ([`NATIVE_REFUSED`]). Their sandbox is
//!   dockerd's — uid 0 with the default capabilities, device cgroup rules, host binds — and a user
//!   namespace gives none of that for real (no device cgroup, no host devices, capabilities that
//!   mean nothing outside it), so a "native" plugin would silently get a different sandbox;
//! - **host-links** (a wasm network driver's veths): refused, since making an interface in the
//!   host's network namespace takes `CAP_NET_ADMIN` there ([`check_wasm`]);
//! - **views** (the `nodev,nosuid,noexec` clones a wasm guest gets instead of its bind sources,
//!   `plugd_wasm::view`): kept, by making them in a user and mount namespace of plugd's own
//!   ([`enter_user_namespace`]), where plugd holds `CAP_SYS_ADMIN` over its copy of the mounts —
//!   so the guest gets exactly what it gets under a root plugd, never more;
//! - **pins** (the binds plugd makes for each volume path the engine gets): a rootless engine
//!   (rootless podman) lives in a user and mount namespace of its own, where plugd's mounts are
//!   not visible, so it gets the volume's own directory instead, found and checked by
//!   [`engine_path`]; docs/privileges.md ("Rootless") says what that leaves open.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Whether this plugd runs without root. The euid is the real user's also inside plugd's own
/// user namespace (it is mapped to itself), so this stays true after [`enter_user_namespace`].
pub fn active() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// Why a native plugin is refused in rootless mode; create and enable say it.
pub const NATIVE_REFUSED: &str = "plugd runs rootless: native plugins need root for their \
     sandbox (uid 0 with dockerd's capabilities, mount and pid namespaces, device cgroup rules, \
     host binds), which a user namespace cannot give for real; run plugd as root for native \
     plugins, or build the plugin as a wasm component";

/// The rootless defaults of `plugd daemon`'s paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// `$XDG_RUNTIME_DIR/plugd`: a per-user tmpfs in normal use, like `/run/plugd`.
    pub exec_root: PathBuf,
    /// `$XDG_DATA_HOME/plugd`, or `$HOME/.local/share/plugd`.
    pub data_root: PathBuf,
    /// `unix://$XDG_RUNTIME_DIR/plugd/plugd.sock`.
    pub host: String,
    /// `$XDG_RUNTIME_DIR/plugd/plugins`: a rootless engine is told where each socket is (podman's
    /// `volume_plugins`), since `/run/docker/plugins` is root's.
    pub plugin_socket_dir: PathBuf,
}

impl Defaults {
    /// The defaults from the process environment, or why there are none.
    pub fn from_env() -> Result<Defaults, String> {
        Self::from(|name| std::env::var_os(name))
    }

    /// The defaults from an environment lookup (separate for the tests). Relative values are
    /// refused, as the XDG spec says to ignore them: plugd would otherwise put a root-equivalent
    /// socket wherever its cwd happens to be.
    pub fn from(env: impl Fn(&str) -> Option<OsString>) -> Result<Defaults, String> {
        let absolute = |name: &str| -> Result<Option<PathBuf>, String> {
            match env(name).filter(|v| !v.is_empty()).map(PathBuf::from) {
                Some(p) if p.is_absolute() => Ok(Some(p)),
                Some(p) => Err(format!(
                    "${name} is {:?}, not an absolute path",
                    p.display()
                )),
                None => Ok(None),
            }
        };
        let runtime = absolute("XDG_RUNTIME_DIR")?.ok_or(
            "$XDG_RUNTIME_DIR is not set: plugd runs rootless and keeps its sockets under \
             $XDG_RUNTIME_DIR/plugd (set it, e.g. to /run/user/$(id -u), or pass --exec-root, \
             -H and --plugin-socket-dir)",
        )?;
        let data = match absolute("XDG_DATA_HOME")? {
            Some(d) => d,
            None => absolute("HOME")?
                .ok_or(
                    "neither $XDG_DATA_HOME nor $HOME is set: plugd runs rootless and keeps \
                     plugins under $XDG_DATA_HOME/plugd (set one, or pass --data-root)",
                )?
                .join(".local/share"),
        };
        let exec_root = runtime.join("plugd");
        Ok(Defaults {
            host: format!("unix://{}", exec_root.join("plugd.sock").display()),
            plugin_socket_dir: exec_root.join("plugins"),
            exec_root,
            data_root: data.join("plugd"),
        })
    }
}

/// The default of one of `plugd daemon`'s path flags: `root` (root's default) unless plugd runs
/// rootless, then the [`Defaults`] field named `flag` (`data-root`, `exec-root`, `host`,
/// `plugin-socket-dir`); when the environment gives none, the unexpanded form (`$XDG_...`), which
/// [`check_flags`] refuses with the reason, unless the flag was passed.
pub fn flag_default(flag: &str, root: &str) -> OsString {
    if !active() {
        return root.into();
    }
    let d = Defaults::from_env().unwrap_or_else(|_| Defaults {
        exec_root: "$XDG_RUNTIME_DIR/plugd".into(),
        data_root: "$XDG_DATA_HOME/plugd".into(),
        host: "unix://$XDG_RUNTIME_DIR/plugd/plugd.sock".into(),
        plugin_socket_dir: "$XDG_RUNTIME_DIR/plugd/plugins".into(),
    });
    match flag {
        "data-root" => d.data_root.into(),
        "exec-root" => d.exec_root.into(),
        "host" => d.host.into(),
        "plugin-socket-dir" => d.plugin_socket_dir.into(),
        _ => root.into(),
    }
}

/// Refuses a path flag still in its unexpanded rootless default (the environment had no
/// `$XDG_RUNTIME_DIR`, ...), saying what is missing.
pub fn check_flags(values: &[&std::ffi::OsStr]) -> Result<(), String> {
    let unexpanded = |v: &&std::ffi::OsStr| {
        let b = v.as_encoded_bytes();
        b.starts_with(b"$") || b.starts_with(b"unix://$")
    };
    if values.iter().any(unexpanded) {
        return Err(Defaults::from_env()
            .err()
            .unwrap_or_else(|| "a path flag names an unset environment variable".to_string()));
    }
    Ok(())
}

/// The runtime selector of a rootless plugd: native plugins were already refused (the daemon
/// gives the selector no native runtime, with [`NATIVE_REFUSED`] as the reason); a wasm plugin is
/// refused what [`check_wasm`] names, at create as at enable.
pub fn selector(inner: crate::manager::RuntimeSelector) -> crate::manager::RuntimeSelector {
    use plugd_core::runtime::RuntimeError;
    std::sync::Arc::new(move |spec| {
        let runtime = inner(spec)?;
        if runtime.name() == "wasm" {
            check_wasm(spec).map_err(|what| RuntimeError::Unsupported {
                runtime: "wasm",
                what,
            })?;
        }
        Ok(runtime)
    })
}

/// Moves this (still single-threaded) process into a new user namespace, in which its uid and gid
/// map to themselves, and a new mount namespace owned by it. plugd keeps its uid, so everything
/// it creates stays the user's; until it execs (it never does in rootless mode) it holds every
/// capability **inside** that namespace, which is what `open_tree`/`mount_setattr` need for the
/// views of wasm guests. Nothing outside is affected: the mounts are copies, locked as the kernel
/// locks mounts handed to a less privileged namespace, and unix sockets and files plugd creates
/// are on the same filesystems as before, so the engine reaches them.
pub fn enter_user_namespace() -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|e| {
        format!(
            "cannot make a user namespace ({e}); rootless plugd needs unprivileged user \
             namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"
        )
    })?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text.as_bytes())
            .map_err(|e| format!("writing /proc/self/{file}: {e}"))
    };
    // `setgroups` must be denied before an unprivileged process may write its gid_map.
    write("setgroups", "deny".to_string())?;
    write("uid_map", format!("{uid} {uid} 1\n"))?;
    write("gid_map", format!("{gid} {gid} 1\n"))?;
    // Nothing plugd does to its copy of the mounts may reach the user's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making plugd's mount namespace private: {e}"))?;
    Ok(())
}

/// Refuses, for a wasm plugin of a rootless plugd, what needs a host privilege plugd lacks.
pub fn check_wasm(spec: &plugd_core::runtime::PluginSpec) -> Result<(), String> {
    let effective = spec.effective();
    let net_admin = effective.capabilities.iter().any(|c| c == "CAP_NET_ADMIN");
    if effective.host_network() && net_admin {
        return Err(
            "network type \"host\" with CAP_NET_ADMIN (the host-links import): plugd runs \
             rootless and cannot make interfaces in the host's network namespace"
                .to_string(),
        );
    }
    Ok(())
}

/// The path a rootless engine gets for the volume directory `dir` (an `O_PATH` descriptor
/// resolved inside the plugin's filesystem, `socket::paths`): the directory's own path, and only
/// if that path, looked up again now from `/` without following any symlink, still reaches the
/// very same directory (mounts may be crossed: `$HOME` is often a filesystem of its own). A path with a symlink in it is refused
/// rather than handed on: the engine follows symlinks, and a symlink is the plugin's to change.
pub fn engine_path(dir: &OwnedFd) -> Result<PathBuf, String> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
    let path = plugd_fs::fd_path(dir).map_err(|e| format!("naming the volume directory: {e}"))?;
    if !path.is_absolute() || path.to_string_lossy().ends_with(" (deleted)") {
        return Err(format!(
            "the volume directory {} is gone or unreachable",
            path.display()
        ));
    }
    let again = rustix::fs::openat2(
        CWD,
        &path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| {
        format!(
            "the volume directory {} cannot be reached without following a symlink: {e}",
            path.display()
        )
    })?;
    let (a, b) = (
        rustix::fs::fstat(dir).map_err(|e| format!("fstat: {e}"))?,
        rustix::fs::fstat(&again).map_err(|e| format!("fstat: {e}"))?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(format!(
            "the volume directory {} changed while plugd looked at it",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn defaults_follow_xdg() {
        let d = Defaults::from(env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_DATA_HOME", "/d"),
            ("HOME", "/home/u"),
        ]))
        .unwrap();
        assert_eq!(d.exec_root, Path::new("/run/user/1000/plugd"));
        assert_eq!(d.host, "unix:///run/user/1000/plugd/plugd.sock");
        assert_eq!(
            d.plugin_socket_dir,
            Path::new("/run/user/1000/plugd/plugins")
        );
        assert_eq!(d.data_root, Path::new("/d/plugd"));
        let d = Defaults::from(env(&[("XDG_RUNTIME_DIR", "/r"), ("HOME", "/home/u")])).unwrap();
        assert_eq!(d.data_root, Path::new("/home/u/.local/share/plugd"));
    }

    #[test]
    fn missing_or_relative_xdg_dirs_are_named() {
        let e = Defaults::from(env(&[("HOME", "/home/u")])).unwrap_err();
        assert!(e.contains("$XDG_RUNTIME_DIR is not set"), "{e}");
        let e = Defaults::from(env(&[("XDG_RUNTIME_DIR", "run"), ("HOME", "/h")])).unwrap_err();
        assert!(
            e.contains("$XDG_RUNTIME_DIR is \"run\", not an absolute path"),
            "{e}"
        );
        let e = Defaults::from(env(&[("XDG_RUNTIME_DIR", "/r")])).unwrap_err();
        assert!(e.contains("neither $XDG_DATA_HOME nor $HOME"), "{e}");
    }

    fn spec(config: serde_json::Value) -> plugd_core::runtime::PluginSpec {
        let (config, _) =
            plugd_core::config::PluginConfig::parse(config.to_string().as_bytes()).unwrap();
        plugd_core::runtime::PluginSpec {
            id: "0".repeat(64),
            name: "p:latest".into(),
            settings: plugd_core::config::Settings::initial(&config),
            config,
            rootfs: "/nonexistent".into(),
            propagated_mount: None,
            runtime_dir: "/nonexistent".into(),
            state_dir: "/nonexistent".into(),
            observer: Default::default(),
        }
    }

    #[test]
    fn host_links_are_refused_and_a_plain_network_driver_is_not() {
        let base = serde_json::json!({
            "Entrypoint": ["/p.wasm"],
            "Interface": {"Socket": "p.sock", "Types": ["docker.networkdriver/1.0"]},
            "Network": {"Type": "host"},
            "Linux": {"Capabilities": ["CAP_NET_ADMIN"]},
        });
        let e = check_wasm(&spec(base.clone())).unwrap_err();
        assert!(e.contains("host-links") && e.contains("rootless"), "{e}");
        let mut plain = base;
        plain["Network"]["Type"] = "none".into();
        plain["Linux"]["Capabilities"] = serde_json::json!([]);
        check_wasm(&spec(plain)).unwrap();
    }

    fn open(path: &Path) -> OwnedFd {
        plugd_fs::InRoot::open(path)
            .and_then(|r| r.resolve_dir("").map_err(std::io::Error::from))
            .unwrap()
    }

    #[test]
    fn engine_path_is_the_directory_itself_and_never_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let v = root.join("volumes/v1");
        std::fs::create_dir_all(&v).unwrap();
        assert_eq!(engine_path(&open(&v)).unwrap(), v);

        // The directory was renamed after it was resolved: its new name, checked again.
        let fd = open(&v);
        std::fs::rename(&v, root.join("volumes/v2")).unwrap();
        assert_eq!(engine_path(&fd).unwrap(), root.join("volumes/v2"));

        // Removed: refused, not handed on as "<path> (deleted)".
        std::fs::remove_dir(root.join("volumes/v2")).unwrap();
        let e = engine_path(&fd).unwrap_err();
        assert!(e.contains("gone"), "{e}");
    }

    #[test]
    fn a_directory_moved_behind_a_symlink_is_named_by_its_real_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/v")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        let fd = open(&root.join("a/v"));
        // The plugin moves its directory away and puts a symlink where a component was: the name
        // the kernel gives the fd is the new real one, so the engine never sees the symlink.
        std::fs::rename(root.join("a"), root.join("b")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("a")).unwrap();
        assert_eq!(engine_path(&fd).unwrap(), root.join("b/v"));
    }
}
