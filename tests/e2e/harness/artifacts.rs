//! Paths of built artifacts (plugd, the wasm guests, the static fixture plugin) and the cached
//! busybox rootfs tarball. Missing artifacts panic with how to build them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// Machine-wide cache shared by all test runs.
pub const CACHE_DIR: &str = "/var/cache/plugd";
/// The wasm compile cache every test's plugd gets unless the test passes its own `--wasm-cache`.
pub const WASM_CACHE_DIR: &str = "/var/cache/plugd/wasm-cache";
/// Crate name (= file stem) of the example volume guest.
pub const EXAMPLE_VOLUME_GUEST: &str = "plugd_example_volume";
/// Crate name (= file stem) of the fault-injection guest.
pub const FAULT_GUEST: &str = "plugd_fault_guest";
/// Rust target of the static fixture plugin.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Name of the static fixture binary inside a plugin rootfs (its config.json entrypoint).
pub const STATIC_PLUGIN_IN_ROOTFS: &str = "static-plugin";
/// The fixture's managed-plugin config.json template (`tests/fixtures/static-plugin/config.json`).
pub const STATIC_PLUGIN_CONFIG: &str = include_str!("../../fixtures/static-plugin/config.json");

const BUILD_HINT: &str =
    "build it with .ci/test (it builds every test artifact), or see tests/README.md";

/// The `plugd` binary under test.
pub fn plugd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plugd"))
}

/// Cargo's target directory at test time, derived from where cargo put `plugd`
/// (`<target>/debug/plugd`, or `<target>/<triple>/debug/plugd` when built with `--target`).
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = plugd_binary();
        let profile_dir = exe.parent().expect("plugd has a parent dir");
        let root = profile_dir.parent().expect("profile dir has a parent");
        // Cargo marks the target root with CACHEDIR.TAG; a `--target` build adds a triple level.
        if !root.join("CACHEDIR.TAG").exists()
            && let Some(up) = root.parent()
            && up.join("CACHEDIR.TAG").exists()
        {
            return up.to_path_buf();
        }
        root.to_path_buf()
    })
    .clone()
}

#[track_caller]
fn must_exist(what: &str, path: PathBuf) -> PathBuf {
    if !path.is_file() {
        panic!("{what} not found at {}: {BUILD_HINT}", path.display());
    }
    path
}

/// A wasm guest built from `guest-examples/` (release, wasm32-wasip2), by crate name.
#[track_caller]
pub fn wasm_guest(name: &str) -> PathBuf {
    let path = target_dir()
        .join("wasm-guests/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    must_exist(&format!("wasm guest `{name}`"), path)
}

/// `plugd_example_volume.wasm`.
#[track_caller]
pub fn example_volume_wasm() -> PathBuf {
    wasm_guest(EXAMPLE_VOLUME_GUEST)
}

/// `plugd_fault_guest.wasm`.
#[track_caller]
pub fn fault_guest_wasm() -> PathBuf {
    wasm_guest(FAULT_GUEST)
}

/// The Python example volume guest (`guest-examples/python-volume`), built by its `build.sh`
/// (componentize-py) straight into the guest target dir, not by cargo.
#[track_caller]
pub fn python_volume_wasm() -> PathBuf {
    let path = target_dir().join("wasm-guests/python-volume.wasm");
    if !path.is_file() {
        panic!(
            "Python guest not found at {}: build it with guest-examples/python-volume/build.sh \
             (after .ci/setup installed componentize-py), or run .ci/test",
            path.display()
        );
    }
    path
}

/// The static (musl) fixture plugin binary `tests/fixtures/static-plugin`.
#[track_caller]
pub fn static_plugin_binary() -> PathBuf {
    let path = target_dir()
        .join(MUSL_TARGET)
        .join("debug/plugd-static-plugin");
    let path = must_exist("static fixture plugin", path);
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/static-plugin/src/main.rs");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(bin), Some(src_t)) = (mtime(&path), mtime(&src))
        && src_t > bin
    {
        eprintln!(
            "harness: warning: {} is older than {}; rebuild it ({BUILD_HINT})",
            path.display(),
            src.display()
        );
    }
    path
}

/// The fixture's config.json template, parsed.
pub fn static_plugin_config() -> Value {
    serde_json::from_str(STATIC_PLUGIN_CONFIG).expect("fixture config.json is JSON")
}

/// The busybox:local rootfs tarball (Debian's static `/bin/busybox` plus a symlink for every
/// applet and a minimal /etc), built once per machine and cached in [`CACHE_DIR`]. Safe to call
/// from parallel tests: it is written to a temporary name and renamed into place.
pub fn busybox_rootfs_tar() -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    let meta = std::fs::metadata(busybox).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; install busybox-static (.ci/setup)",
            busybox.display()
        )
    });
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let tar_path =
        Path::new(CACHE_DIR).join(format!("busybox-local-v1-{}-{mtime}.tar", meta.len()));
    if tar_path.is_file() {
        return tar_path;
    }
    std::fs::create_dir_all(CACHE_DIR).expect("create cache dir");
    let work = Path::new(CACHE_DIR).join(format!(".busybox-{}", super::util::random_suffix(8)));
    let rootfs = work.join("rootfs");
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for d in [
            "bin", "etc", "root", "tmp", "data", "proc", "sys", "dev", "run", "var",
        ] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
        let list = std::process::Command::new(busybox).arg("--list").output()?;
        for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            if applet != "busybox" && !applet.contains('/') {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
        let tmp_tar = work.join("rootfs.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tmp_tar)?);
        b.follow_symlinks(false);
        let mut names: Vec<_> = std::fs::read_dir(&rootfs)?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            b.append_dir_all(&n, rootfs.join(&n))?;
        }
        b.into_inner()?.sync_all()?;
        std::fs::rename(&tmp_tar, &tar_path)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result.unwrap_or_else(|e| panic!("building {}: {e}", tar_path.display()));
    tar_path
}
