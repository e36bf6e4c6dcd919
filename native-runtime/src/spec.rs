//! Builds a plugin's [`SandboxSpec`] from what the manager hands a runtime ([`PluginSpec`]), by the
//! rules dockerd uses for a managed plugin: moby's `DefaultLinuxSpec` (`oci/defaults.go`) followed
//! by `InitSpec` (`plugin/v2/plugin_linux.go`) and `DevicesFromPath` (`oci/devices_linux.go`).
//!
//! The parity target is **dockerd 20.10**, the dockerd on plugd's machines: the unit tests build the
//! spec for every plugin whose OCI spec was captured from a real dockerd 20.10.24
//! (`tests/fixtures/dockerd/`) and compare the two values of [`SandboxSpec`] whole.
//!
//! What the spec holds, in dockerd's order:
//! - root `{rootfs, readonly: false}`; uid/gid 0 (`Config.User` is ignored, as dockerd does);
//! - mounts: the 7 defaults (`/proc`, `/dev`, `/dev/pts`, `/sys`, `/sys/fs/cgroup`, `/dev/mqueue`,
//!   `/dev/shm`), the propagated mount (`[rbind, rw, rshared]`, and `rootfsPropagation: rshared`),
//!   `Config.Mounts` in order, the runtime dir bound `[rbind, rshared]` at `/run/docker/plugins`,
//!   then `/etc/hosts` and `/etc/resolv.conf` `[rbind, ro]` when `Network.Type` is not empty;
//! - namespaces mount, network, uts, pid, ipc, less network for `Network.Type == "host"`, pid for
//!   `PidHost`, ipc for `IpcHost`;
//! - dockerd 20.10's masked and read-only paths;
//! - capabilities: the 14 defaults plus `Linux.Capabilities` (raw, unnormalised) in bounding,
//!   effective and permitted; the declared ones alone in inheritable; no ambient;
//! - env `PATH=…` first, then `Settings.Env`; args `Entrypoint ++ Settings.Args`; cwd `WorkDir` or
//!   `/`;
//! - device cgroup rules: deny all, allow `c 1:5`, `1:3`, `1:9`, `1:8`, `5:0`, `5:1`, deny `c 10:229`
//!   (replaced by one allow-all rule for `AllowAllDevices`), then for each `Settings.Devices` path
//!   the node(s) found on the host (`linux.devices`) and an allow rule for each. runc appends its
//!   built-in allow list (mknod of anything, ptys, tun, …) when it applies the rules;
//!   [`crate::cgroup`] does the same at that point, so the spec itself stays equal to dockerd's.
//!
//! Which list dockerd reads is decided once, in `plugd_core::effective` (mounts from
//! `Config.Mounts`, devices, env and args from `Settings`, capabilities and namespaces from
//! `Config`); this module and the wasm policy both build from that `Effective`. dockerd keys its
//! `/dev/*` override on `Settings.Mounts`; we key it on the effective mounts, whose destinations
//! `set` never changes.
//!
//! **Deliberate differences from dockerd 20.10** (1–5 and 7 are each asserted by a test in
//! `spec/tests.rs`; 6 is covered by the parity tests, whose binds carry exactly dockerd's options):
//! 1. The `plugd` section ([`PlugdExt`]) is filled from [`SandboxPaths`] (and names the
//!    propagated-mount directory, the one host mount the sandbox may share a peer group with);
//!    dockerd's spec has none.
//! 2. The `/dev/*` override: dockerd removes every mount, its own defaults *and the plugin's*, whose
//!    destination starts with `/dev/` and equals a `Settings.Mounts` destination, in a loop that
//!    shifts the slice under its own index (so it also skips the entry after each removal). The
//!    result: a lone plugin mount at `/dev/fuse` is dropped, and one at `/dev/shm` survives or not
//!    depending on whether a `PropagatedMount` precedes it. We do what the code means to do: a
//!    plugin mount replaces the *default* mount with the same `/dev/*` destination, and plugin
//!    mounts are never dropped.
//! 3. A `Settings.Devices` entry with a `null` path is an error here; it panics dockerd.
//! 4. An empty argv (no `Entrypoint`, no args) is an error here; dockerd builds the spec and runc
//!    refuses it at create. Same outcome, earlier and with the field named.
//! 5. dockerd's metrics socket (`/run/docker/metrics.sock`, `[bind, ro]`, for
//!    `docker.metricscollector/1.0` plugins) is bound only when [`SandboxPaths::metrics_socket`]
//!    names one: the engine's socket given to `plugd daemon --engine-metrics-socket`, when it
//!    exists at the plugin's start.
//! 7. A log driver (`docker.logdriver/*` in `Interface.Types`) gets [`SandboxPaths::log_fifos`]
//!    bound read-only at `/run/docker/logging`, last: dockerd gives a managed log plugin the FIFOs
//!    it creates inside the plugin's own rootfs, while a legacy plugin (what plugd is to dockerd)
//!    is sent host paths; plugd's relay (`logrelay`) puts one FIFO per open stream there, under
//!    the name dockerd sent, so the path in `StartLogging` is the path inside the sandbox too.
//! 6. The rootless/user-namespace branch (adding locked mount flags to binds) is not implemented:
//!    the native runtime needs real root, and 20.10 did not have it either.
//!
//! Where newer dockerd differs and we keep 20.10's behaviour: docker ≥ 29.5 adds a **time**
//! namespace (not removed for plugins even on kernels without one); newer `DefaultLinuxSpec`s also
//! mask `/proc/interrupts`, `/sys/devices/virtual/powercap` and each
//! `/sys/devices/system/cpu/cpu*/thermal_throttle`, and order the list differently.
//!
//! Side effects: none, except reading the host's device nodes for `Settings.Devices`. The runtime
//! dir and the propagated-mount directory are created by the manager (dockerd creates the first in
//! `InitSpec`), and `initlayer.Setup`'s files inside the rootfs are the init's business.

use plugd_core::check::fault::TestFault;
use plugd_core::runtime::PluginSpec;
use plugd_init::spec::{
    Capabilities, Device, DeviceRule, Linux, Mount, Namespace, PlugdExt, Process, Resources, Root,
    SandboxSpec, User, default_mounts,
};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[cfg(test)]
mod tests;

/// Where the plugin sees its runtime dir (and so its socket): dockerd's `defaultPluginRuntimeDestination`.
pub const PLUGIN_RUNTIME_DESTINATION: &str = "/run/docker/plugins";

/// dockerd's `oci.DefaultPathEnv` (defined with the spec types in `plugd-init`).
pub use plugd_init::spec::DEFAULT_PATH_ENV;

/// moby's default capabilities (defined with the spec types in `plugd-init`).
pub use plugd_init::spec::DEFAULT_CAPABILITIES;

/// dockerd 20.10's masked paths, in its order (captured spec).
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// dockerd 20.10's read-only paths, in its order.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The interface type dockerd gives its metrics socket to (`RegisterRuntimeOpt`, matched exactly).
pub(crate) const METRICS_TYPE: &str = plugd_core::protocol::metrics::TYPE;
/// Where a metrics collector plugin finds dockerd's metrics socket.
const METRICS_DESTINATION: &str = plugd_core::protocol::metrics::SANDBOX_SOCKET;

/// Host paths and switches the sandbox needs that [`PluginSpec`] does not carry; they go to the
/// spec's `plugd` section (and, for the metrics socket, to a mount).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPaths {
    /// Host FIFO the plugin's stdout is written to.
    pub stdout: PathBuf,
    /// Host FIFO the plugin's stderr is written to.
    pub stderr: PathBuf,
    /// The cgroup directories the init joins before the clone (`PluginCgroup::join_paths`).
    pub cgroups: Vec<PathBuf>,
    /// MS_MOVE + chroot instead of pivot_root (test switch; see [`PlugdExt::no_pivot`]).
    pub no_pivot: bool,
    /// The engine's metrics socket (`plugd daemon --engine-metrics-socket`, dockerd's
    /// `<exec-root>/metrics.sock`), bound for metrics collector plugins as dockerd binds its own;
    /// `None` without the flag (or while the socket is missing), and then nothing is bound.
    pub metrics_socket: Option<PathBuf>,
    /// plugd's per-plugin directory of relayed log FIFOs, bound read-only at
    /// `/run/docker/logging` for log drivers (difference 7); `None`: no such mount.
    pub log_fifos: Option<PathBuf>,
    /// A `plugd check` probe launch: the init execs the probe instead of `args[0]`
    /// ([`PlugdExt::probe`]); the sandbox is otherwise the plugin's.
    pub probe: bool,
    /// Deliberate weakenings for the tests of `plugd check` (`NativeRuntimeBuilder::test_faults`);
    /// empty outside them.
    pub faults: Vec<TestFault>,
}

/// Why a spec could not be built; each names the plugin field or host path involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A `Config.Mounts` entry has a `null` source (dockerd's message, plus which mount).
    #[error("plugin mount {name:?} (destination {destination:?}): mount source is not specified")]
    MountSource {
        /// The mount's `Name`.
        name: String,
        /// The mount's `Destination`.
        destination: String,
    },
    /// A `Settings.Devices` entry has a `null` path (dockerd panics on this).
    #[error("Settings.Devices[{index}] ({name:?}): device path is not specified")]
    DevicePath {
        /// Index in `Settings.Devices`.
        index: usize,
        /// The device's `Name`.
        name: String,
    },
    /// A device path names no device node on the host (dockerd's message).
    #[error("error gathering device information while adding custom device {path:?}: {reason}")]
    Device {
        /// The host path as configured.
        path: String,
        /// `not a device node`, or the error reading it.
        reason: String,
    },
    /// The plugin declares a `PropagatedMount` but the manager gave no host directory for it.
    #[error(
        "plugin declares PropagatedMount {destination:?} but no host directory was given for it"
    )]
    PropagatedMountDir {
        /// `Config.PropagatedMount`.
        destination: String,
    },
    /// Neither `Entrypoint` nor `Settings.Args` gives a program to run.
    #[error("the plugin has no Entrypoint and no Args: nothing to run")]
    NoArgs,
}

/// Builds the sandbox spec dockerd 20.10 would build for this plugin (see the module docs for the
/// deliberate differences), reading `Settings.Devices` nodes from the host.
pub fn build(spec: &PluginSpec, paths: &SandboxPaths) -> Result<SandboxSpec, SpecError> {
    build_with(spec, paths, &HostDevices)
}

/// Finds the device nodes behind a configured device path; a seam so tests do not depend on the
/// host's `/dev`.
trait DeviceSource {
    /// dockerd's `DevicesFromPath(path, path, "rwm")`, nodes only (rules are derived from them).
    fn devices_from_path(&self, path: &str) -> Result<Vec<Device>, SpecError>;
}

/// The real host.
struct HostDevices;

impl DeviceSource for HostDevices {
    fn devices_from_path(&self, path: &str) -> Result<Vec<Device>, SpecError> {
        devices_from_path(path)
    }
}

fn build_with(
    spec: &PluginSpec,
    paths: &SandboxPaths,
    host: &dyn DeviceSource,
) -> Result<SandboxSpec, SpecError> {
    let config = &spec.config;
    let effective = spec.effective();

    let mut namespaces = ["mount", "network", "uts", "pid", "ipc"].to_vec();
    if effective.host_network() {
        namespaces.retain(|n| *n != "network");
    }
    if effective.pid_host {
        namespaces.retain(|n| *n != "pid");
    }
    if effective.ipc_host {
        namespaces.retain(|n| *n != "ipc");
    }

    let mut mounts = default_mounts();
    // Difference 2: a plugin mount replaces the default mount at the same /dev/* destination.
    mounts.retain(|m| {
        !(m.destination.starts_with("/dev/")
            && effective
                .mounts
                .iter()
                .any(|u| u.destination == m.destination))
    });
    let mut rootfs_propagation = String::new();
    if !config.propagated_mount.is_empty() {
        let source =
            spec.propagated_mount
                .as_deref()
                .ok_or_else(|| SpecError::PropagatedMountDir {
                    destination: config.propagated_mount.clone(),
                })?;
        mounts.push(bind(
            source,
            &config.propagated_mount,
            &["rbind", "rw", "rshared"],
        ));
        rootfs_propagation = "rshared".to_owned();
    }
    for m in &effective.mounts {
        let source = m.source.as_ref().ok_or_else(|| SpecError::MountSource {
            name: m.name.clone(),
            destination: m.destination.clone(),
        })?;
        mounts.push(Mount {
            destination: m.destination.clone(),
            kind: m.kind.clone(),
            source: source.clone(),
            options: m.options.clone().unwrap_or_default(),
        });
    }
    mounts.push(bind(
        &spec.runtime_dir,
        PLUGIN_RUNTIME_DESTINATION,
        &["rbind", "rshared"],
    ));
    if !effective.network.is_empty() {
        for f in ["/etc/hosts", "/etc/resolv.conf"] {
            mounts.push(bind(Path::new(f), f, &["rbind", "ro"]));
        }
    }

    let mut rules = default_device_rules();
    if effective.allow_all_devices {
        rules = vec![DeviceRule {
            allow: true,
            access: "rwm".to_owned(),
            ..DeviceRule::default()
        }];
    }
    let mut devices = Vec::new();
    for (index, dev) in effective.devices.iter().enumerate() {
        let path = dev.path.as_deref().ok_or_else(|| SpecError::DevicePath {
            index,
            name: dev.name.clone(),
        })?;
        let found = host.devices_from_path(path)?;
        // Test fault: the node is made, the device cgroup does not allow it.
        if !paths.faults.contains(&TestFault::NativeDeviceRule) {
            rules.extend(found.iter().map(allow_rule));
        }
        devices.extend(found);
    }

    let args = effective.args.clone();
    if args.is_empty() {
        return Err(SpecError::NoArgs);
    }
    let mut env = vec![DEFAULT_PATH_ENV.to_owned()];
    env.extend(effective.env.iter().cloned());
    let cwd = if config.work_dir.is_empty() {
        "/".to_owned()
    } else {
        config.work_dir.clone()
    };
    let declared = effective.capabilities.clone();
    let all_caps: Vec<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .chain(declared.iter().cloned())
        .collect();
    let mut bounding = all_caps.clone();
    // Test fault: CAP_SYS_ADMIN kept in the bounding set alone, as a capability step that
    // forgot to drop it would leave it.
    if paths.faults.contains(&TestFault::NativeBoundingCap)
        && !bounding.iter().any(|c| c == "CAP_SYS_ADMIN")
    {
        bounding.push("CAP_SYS_ADMIN".to_owned());
    }

    // dockerd's modifyRuntimeSpec for metrics collectors runs last, after the /dev override.
    if let Some(sock) = &paths.metrics_socket
        && config
            .interface
            .types
            .iter()
            .flatten()
            .any(|t| t == METRICS_TYPE)
    {
        mounts.push(bind(sock, METRICS_DESTINATION, &["bind", "ro"]));
    }
    if let Some(dir) = &paths.log_fifos
        && is_log_driver(spec)
    {
        mounts.push(bind(
            dir,
            plugd_core::protocol::logdriver::LOGGING_DIR,
            &["rbind", "ro"],
        ));
    }

    Ok(SandboxSpec {
        process: Process {
            user: User { uid: 0, gid: 0 },
            args,
            env,
            cwd,
            capabilities: Capabilities {
                bounding,
                effective: all_caps.clone(),
                inheritable: declared,
                permitted: all_caps,
                ambient: Vec::new(),
            },
            no_new_privileges: false,
        },
        root: Root {
            path: spec.rootfs.clone(),
            readonly: false,
        },
        hostname: None,
        mounts,
        linux: Linux {
            resources: Resources { devices: rules },
            namespaces: namespaces
                .into_iter()
                .map(|kind| Namespace {
                    kind: kind.to_owned(),
                })
                .collect(),
            devices,
            rootfs_propagation,
            masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        },
        plugd: Some(PlugdExt {
            id: spec.id.clone(),
            stdout: paths.stdout.clone(),
            stderr: paths.stderr.clone(),
            cgroups: paths.cgroups.clone(),
            no_pivot: paths.no_pivot,
            propagated_mount: (!config.propagated_mount.is_empty())
                .then(|| spec.propagated_mount.clone())
                .flatten(),
            probe: paths.probe,
        }),
    })
}

/// Whether the plugin declares a log driver type (`docker.logdriver/<version>`), so that it gets
/// the relayed FIFOs.
pub fn is_log_driver(spec: &PluginSpec) -> bool {
    spec.config
        .interface
        .types
        .iter()
        .flatten()
        .any(|t| t.starts_with("docker.logdriver/"))
}

/// `DefaultLinuxSpec`'s device cgroup rules: deny all, the six always-allowed character devices,
/// and an explicit deny of `/dev/fuse` (10:229).
fn default_device_rules() -> Vec<DeviceRule> {
    let c = |allow: bool, major: i64, minor: i64| DeviceRule {
        allow,
        kind: Some("c".to_owned()),
        major: Some(major),
        minor: Some(minor),
        access: "rwm".to_owned(),
    };
    vec![
        DeviceRule {
            allow: false,
            access: "rwm".to_owned(),
            ..DeviceRule::default()
        },
        c(true, 1, 5),
        c(true, 1, 3),
        c(true, 1, 9),
        c(true, 1, 8),
        c(true, 5, 0),
        c(true, 5, 1),
        c(false, 10, 229),
    ]
}

fn bind(source: &Path, destination: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.to_owned(),
        kind: "bind".to_owned(),
        source: source.to_string_lossy().into_owned(),
        options: options.iter().map(|o| o.to_string()).collect(),
    }
}

/// dockerd's `deviceCgroup`: an `rwm` allow rule for exactly this node.
fn allow_rule(d: &Device) -> DeviceRule {
    DeviceRule {
        allow: true,
        kind: Some(d.kind.clone()),
        major: Some(d.major),
        minor: Some(d.minor),
        access: "rwm".to_owned(),
    }
}

/// dockerd's `DevicesFromPath(path, path, "rwm")`: the node at `path` (a symlink at `path` itself is
/// resolved first, and the node keeps the configured path); or, when that is a directory, every
/// node below it, walked in lexical order without following symlinks, each at its path with the
/// resolved prefix replaced by the configured one. Anything else is an error.
fn devices_from_path(path: &str) -> Result<Vec<Device>, SpecError> {
    let error = |reason: String| SpecError::Device {
        path: path.to_owned(),
        reason,
    };
    let mut resolved = path.to_owned();
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && let Ok(target) = fs::canonicalize(path)
    {
        resolved = target.to_string_lossy().into_owned();
    }
    match device_from_path(Path::new(&resolved)) {
        Ok(Some(mut device)) => {
            device.path = path.to_owned();
            return Ok(vec![device]);
        }
        Ok(None) => {}
        Err(e) => return Err(error(format!("lstat {resolved}: {e}"))),
    }
    let mut devices = Vec::new();
    if fs::metadata(&resolved).is_ok_and(|m| m.is_dir()) {
        walk(&resolved, &mut |child| {
            if let Ok(Some(mut device)) = device_from_path(Path::new(child)) {
                device.path = child.replacen(&resolved, path, 1);
                devices.push(device);
            }
        });
    }
    if devices.is_empty() {
        return Err(error("not a device node".to_owned()));
    }
    Ok(devices)
}

/// Go's `filepath.Walk`: `visit(root)`, then each entry of a directory sorted by name, recursively,
/// never following symlinks; unreadable directories are skipped (dockerd ignores walk errors).
fn walk(root: &str, visit: &mut dyn FnMut(&str)) {
    visit(root);
    if !fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let child = if root.ends_with('/') {
            format!("{root}{name}")
        } else {
            format!("{root}/{name}")
        };
        walk(&child, visit);
    }
}

/// runc's `DeviceFromPath`: `Ok(None)` when the path exists but is not a block, character or FIFO
/// node (`ErrNotADevice`).
fn device_from_path(path: &Path) -> std::io::Result<Option<Device>> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let kind = if ft.is_block_device() {
        "b"
    } else if ft.is_char_device() {
        "c"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Ok(None);
    };
    let (major, minor) = split_dev(md.rdev());
    Ok(Some(Device {
        path: path.to_string_lossy().into_owned(),
        kind: kind.to_owned(),
        major: i64::from(major),
        minor: i64::from(minor),
        file_mode: Some(md.mode() & 0o7777),
        uid: Some(md.uid()),
        gid: Some(md.gid()),
    }))
}

/// glibc's `major()`/`minor()` for Linux's 64-bit `dev_t`.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    (major as u32, minor as u32)
}
