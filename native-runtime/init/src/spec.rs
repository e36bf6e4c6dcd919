//! What one sandbox must look like: an OCI-runtime-spec-shaped document (same JSON field names, the
//! subset dockerd's plugin spec uses) plus a `plugd` section for what only plugd needs.
//!
//! Using OCI's shape is deliberate: dockerd's own plugin spec (captured in
//! `../shared/reference/dockerd-observed/04-plugin-oci-spec.json`) deserializes into the same type,
//! so parity with dockerd is checked by comparing two values of this type.
//!
//! The daemon builds it (plugd-native `spec` module, from a `PluginSpec`, by moby's rules); the init
//! executes it. Fields the init does not act on (device cgroup rules) are applied by the daemon
//! before launch and kept here so the comparison is complete.

use serde::{Deserialize, Serialize};

/// Facts of dockerd's plugin sandbox that the privilege check expects too: one copy, in plugd-core.
pub use plugd_core::effective::{DEFAULT_CAPABILITIES, DEFAULT_PATH, DEFAULT_PATH_ENV};
use std::path::PathBuf;

/// moby's `DefaultLinuxSpec` mounts, in its order: the daemon starts every spec with them and the
/// init's tests build dockerd's captured specs from them.
pub fn default_mounts() -> Vec<Mount> {
    let m = |destination: &str, kind: &str, source: &str, options: &[&str]| Mount {
        destination: destination.to_owned(),
        kind: kind.to_owned(),
        source: source.to_owned(),
        options: options.iter().map(|o| o.to_string()).collect(),
    };
    vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777"],
        ),
    ]
}

/// The whole plan for one sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxSpec {
    /// The plugin process.
    pub process: Process,
    /// The root filesystem (host path).
    pub root: Root,
    /// Set only when a spec asks for one; plugins keep the host's name (copied into the new UTS ns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// Namespaces, devices, masks.
    pub linux: Linux,
    /// plugd-only parts; absent from dockerd's spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugd: Option<PlugdExt>,
}

/// `process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// uid/gid (always 0:0 for plugins, as dockerd ignores `Config.User`).
    pub user: User,
    /// argv; `args[0]` is resolved with the sandbox's `PATH` inside the new root.
    pub args: Vec<String>,
    /// `NAME=value`, `PATH` first.
    pub env: Vec<String>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Capability sets, canonical `CAP_*` names.
    pub capabilities: Capabilities,
    /// dockerd leaves it false for plugins.
    #[serde(rename = "noNewPrivileges", skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
}

/// `process.user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// `process.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// The real limit for a root process.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// dockerd puts only the plugin's declared caps here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Always empty for plugins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

/// `root`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Root {
    /// Host path of the rootfs.
    pub path: PathBuf,
    /// Plugins' roots are writable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// Absolute path inside the sandbox; resolved inside the root, never through a symlink out of it.
    pub destination: String,
    /// `bind`, `tmpfs`, `proc`, `sysfs`, `devpts`, `mqueue`, `cgroup`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Host path for binds, the fs name otherwise.
    pub source: String,
    /// `rbind`, `ro`, `rshared`, `nosuid`, `mode=755`, ... (flags and data, as in OCI).
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Linux {
    /// Device cgroup rules (applied by the daemon before launch).
    pub resources: Resources,
    /// Namespaces to create: `mount`, `network`, `uts`, `pid`, `ipc`.
    pub namespaces: Vec<Namespace>,
    /// Device nodes to create in the sandbox's `/dev` (beyond the default ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// `rshared` when the plugin has a propagated mount; empty otherwise (then `rslave`, as runc).
    #[serde(rename = "rootfsPropagation", skip_serializing_if = "String::is_empty")]
    pub rootfs_propagation: String,
    /// Paths hidden from the plugin.
    #[serde(rename = "maskedPaths")]
    pub masked_paths: Vec<String>,
    /// Paths remounted read-only.
    #[serde(rename = "readonlyPaths")]
    pub readonly_paths: Vec<String>,
}

/// `linux.resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Device cgroup rules, in order (deny-all first).
    pub devices: Vec<DeviceRule>,
}

/// One device cgroup rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `c`, `b` or absent for all.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// `rwm` subset.
    pub access: String,
}

/// One namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespace {
    /// `mount`, `network`, `uts`, `pid`, `ipc`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One device node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Device {
    /// Path inside the sandbox.
    pub path: String,
    /// `c` or `b`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    #[serde(rename = "fileMode", skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    /// Owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// What only plugd needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlugdExt {
    /// Plugin id, for diagnostics.
    pub id: String,
    /// Host FIFO the plugin's stdout goes to (opened read-write by the init, so the plugin never
    /// gets EPIPE while the daemon restarts).
    pub stdout: PathBuf,
    /// Same for stderr.
    pub stderr: PathBuf,
    /// Cgroup directories (one per v1 hierarchy, or one v2 dir) to join before the clone.
    pub cgroups: Vec<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (a test switch; also chosen automatically when
    /// pivot_root fails with EINVAL on a ramfs/tmpfs root).
    pub no_pivot: bool,
    /// The host directory behind the propagated mount (already an rshared mount point of its
    /// own): the one host mount whose peer group the sandbox may join. With a shared root, every
    /// other mount that is a peer of a host mount is made a slave before `/` is made shared, so
    /// no other sandbox mount can propagate to the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagated_mount: Option<PathBuf>,
    /// Exec `plugd check`'s probe, passed as [`crate::launch::PROBE_FD`], instead of `args[0]`
    /// (with `args` unchanged): the probe then sees exactly the plugin's sandbox, and nothing is
    /// written into the plugin's rootfs to get it there.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}
