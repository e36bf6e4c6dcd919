//! A plugin's declared privileges → what its WASI context may do. Deny by default.
//!
//! The wasm runtime grants exactly what `config.json` (and the user's `plugin set` values) declare
//! and it can enforce, and refuses, by name, every declaration it cannot honour: nothing is
//! silently granted or dropped. docs/privileges.md has the same table for users.
//!
//! | declaration                                   | wasm runtime                                           |
//! |-----------------------------------------------|--------------------------------------------------------|
//! | `Mounts[]` bind (`Type` `bind`, or `""`/`none` with a `bind`/`rbind` option) | preopen a nodev view of `Source` (a directory, `view`) at `Destination`; `ro` → read-only |
//! | mount `Source` on procfs, sysfs or another kernel pseudo-filesystem | refused (`view`)     |
//! | mount option `bind` `rbind` `ro` `rw`         | honoured as above                                       |
//! | propagation options (`[r]private` `[r]shared` `[r]slave`) | accepted, no-op: a guest cannot mount anything, so nothing can propagate |
//! | any other mount option, any other mount type  | refused                                                 |
//! | mount `Source` at or under `/dev`             | refused (WASI has no device cgroup to stop device I/O)  |
//! | mount `Source` that is a file                 | refused (WASI preopens are directories)                 |
//! | `PropagatedMount`                             | preopen a nodev view of the manager's host directory read-write there |
//! | `Env` (settings)                              | WASI environment                                        |
//! | `Entrypoint` + `Args` (settings)              | WASI arguments (`argv[0]` is the component path)        |
//! | `Network.Type` `""` `none` `bridge` `null` (any but `host`) | no sockets at all, no name lookup         |
//! | `Network.Type` `host` + `Linux.Capabilities` exactly `[CAP_NET_ADMIN]`, on a `docker.networkdriver/*` plugin | the `host-links` import works (veth pairs plugd names, tracks and deletes; `links`); still no sockets |
//! | `Network.Type` `host` otherwise               | refused                                                 |
//! | `Linux.Capabilities` otherwise, `Linux.Devices`, `Linux.AllowAllDevices`, `IpcHost`, `PidHost` | refused |
//! | `Interface.Types` `docker.volumedriver/*`, `docker.authz/*`, `docker.ipamdriver/*`, `docker.networkdriver/*`, `docker.logdriver/*` | the component must export that interface; the grants above are the same for all (an authz or IPAM plugin gets what it declares: an IPAM driver only computes addresses, usually with a mount for its state). A log driver never gets the FIFO: plugd reads it and calls `log` (`logstreams`) |
//! | `Interface.Types` `docker.metricscollector/*` | as above, plus the working `engine-metrics` import (`metrics`: the engine's metrics from `--engine-metrics-socket`, read by plugd) and plugd's ticks |
//! | any other `Interface.Types`                   | refused (no WIT world for it yet)                       |
//! | `Interface.ProtocolScheme` other than `""`/`moby.plugins.http/v1` | refused                        |
//! | `WorkDir`                                     | WASI initial cwd (a name only; grants nothing)          |
//! | `User`                                        | ignored, as dockerd ignores it                          |
//! | the rootfs                                    | never preopened                                         |
//!
//! Mounts, devices, env, args, capabilities and namespaces are read from
//! `plugd_core::effective::Effective`, the model the native sandbox is built from too, so the two
//! runtimes agree on which copy (config or settings) counts.

use crate::RUNTIME_NAME;
use crate::drivers;
use crate::output::GuestOutput;
use crate::view::{View, ViewError};
use plugd_core::check::fault::TestFault;
use plugd_core::config::Mount;
use plugd_core::{Effective, PluginSpec, RuntimeError};
use std::path::{Component, Path, PathBuf};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// Mount options that change nothing for a guest, which cannot mount: propagation modes.
const PROPAGATION_OPTIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// Whether a plugin gets the working `host-links` import: a network driver declaring exactly what
/// a native one needs to make links dockerd can see — the host's network namespace and
/// `CAP_NET_ADMIN`, nothing more. For such a plugin `Network.Type` `host` + `CAP_NET_ADMIN` mean
/// that import and nothing else (still no sockets); any other combination is refused as before,
/// and a network driver declaring neither gets an import that refuses every call
/// (`crate::links`).
pub(crate) fn host_links(spec: &PluginSpec) -> bool {
    let effective = spec.effective();
    let types = spec.config.interface.types.as_deref().unwrap_or_default();
    let network_driver = drivers::declares(types, plugd_core::protocol::network::IMPLEMENTS);
    network_driver && effective.host_network() && effective.capabilities == ["CAP_NET_ADMIN"]
}

/// Largest buffer a guest may ask `wasi:random` for in one call.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// One directory the guest may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Preopen {
    /// Host directory (canonical once resolved).
    pub(crate) host: PathBuf,
    /// Absolute path the guest uses.
    pub(crate) guest: String,
    /// Whether the guest may write.
    pub(crate) read_only: bool,
}

/// Everything a plugin's WASI context is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The `host-links` import works (see [`host_links`]).
    pub(crate) host_links: bool,
    pub(crate) preopens: Vec<Preopen>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: String,
}

fn unsupported(what: Vec<String>) -> Result<(), RuntimeError> {
    if what.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::Unsupported {
            runtime: RUNTIME_NAME,
            what: what.join(", "),
        })
    }
}

fn mount_label(m: &Mount) -> String {
    if m.name.is_empty() {
        format!("mount at {:?}", m.destination)
    } else {
        format!("mount {:?}", m.name)
    }
}

/// Normalises an absolute guest path (`/data/` → `/data`); `None` if relative or using `..`.
fn guest_path(p: &str) -> Option<String> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let parts: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    Some(format!("/{}", parts.join("/")))
}

impl Policy {
    /// Refuses what the wasm runtime cannot honour, without touching the filesystem: usable at
    /// create time, before mount sources are set. Lists every refusal in one error.
    pub(crate) fn check(spec: &PluginSpec) -> Result<(), RuntimeError> {
        let c = &spec.config;
        let effective = spec.effective();
        let mut refused = Vec::new();
        if !host_links(spec) {
            if effective.host_network() {
                refused.push("network type \"host\" (wasm plugins get no sockets)".to_string());
            }
            let caps = &effective.capabilities;
            if !caps.is_empty() {
                refused.push(format!("Linux.Capabilities {caps:?}"));
            }
        }
        if effective.allow_all_devices {
            refused.push("Linux.AllowAllDevices true".to_string());
        }
        for d in effective.named_devices() {
            let path = d.path.as_deref().unwrap_or("<unset>");
            refused.push(format!("device {:?} (path {path:?})", d.name));
        }
        if effective.ipc_host {
            refused.push("IpcHost true".to_string());
        }
        if effective.pid_host {
            refused.push("PidHost true".to_string());
        }
        for t in c.interface.types.iter().flatten() {
            if !drivers::has_interface(t) {
                refused.push(format!(
                    "interface type {t:?} (a wasm component implements only {})",
                    drivers::WASM_TYPES.join(", ")
                ));
            }
        }
        if !matches!(
            c.interface.protocol_scheme.as_str(),
            "" | "moby.plugins.http/v1"
        ) {
            refused.push(format!(
                "interface protocol scheme {:?}",
                c.interface.protocol_scheme
            ));
        }
        for m in &effective.mounts {
            let label = mount_label(m);
            if !m.is_bind() {
                refused.push(format!(
                    "{label} type {:?} (only bind mounts become directories)",
                    m.kind
                ));
                continue;
            }
            for o in m.options.iter().flatten() {
                let known = matches!(o.as_str(), "bind" | "rbind" | "ro" | "rw")
                    || PROPAGATION_OPTIONS.contains(&o.as_str());
                if !known {
                    refused.push(format!("{label} option {o:?}"));
                }
            }
        }
        let instances = effective.instances().map_err(RuntimeError::Bundle)?;
        if instances > 1 {
            for t in c.interface.types.iter().flatten() {
                let stateful = [
                    plugd_core::protocol::logdriver::IMPLEMENTS,
                    plugd_core::protocol::metrics::IMPLEMENTS,
                ];
                if let Some(i) = plugd_core::protocol::implements_for_type(t)
                    && stateful.contains(&i)
                {
                    refused.push(format!(
                        "{}={instances} for interface type {t:?} (a {i} keeps its streams or schedule in its one instance)",
                        plugd_core::effective::INSTANCES_ENV
                    ));
                }
            }
        }
        unsupported(refused)?;
        if c.interface.types.as_deref().unwrap_or_default().is_empty() {
            return Err(RuntimeError::Bundle(
                "config declares no Interface.Types (a wasm plugin needs one of docker.volumedriver/1.0, docker.authz/1.0, docker.ipamdriver/1.0, docker.networkdriver/1.0, docker.logdriver/1.0, docker.metricscollector/1.0)"
                    .to_string(),
            ));
        }
        Self::guest_layout(spec, &effective).map(drop)
    }

    /// Checks destinations: absolute, no `..`, no two mounts at the same place.
    fn guest_layout(spec: &PluginSpec, effective: &Effective) -> Result<Vec<String>, RuntimeError> {
        let mut seen: Vec<String> = Vec::new();
        let mut add = |what: String, dest: &str| -> Result<String, RuntimeError> {
            let g = guest_path(dest).ok_or_else(|| {
                RuntimeError::Bundle(format!(
                    "{what}: destination {dest:?} is not an absolute path"
                ))
            })?;
            if seen.contains(&g) {
                return Err(RuntimeError::Bundle(format!("{what}: two mounts at {g:?}")));
            }
            seen.push(g.clone());
            Ok(g)
        };
        let mut out = Vec::new();
        let pm = &spec.config.propagated_mount;
        if !pm.is_empty() {
            out.push(add("PropagatedMount".to_string(), pm)?);
        }
        for m in &effective.mounts {
            out.push(add(mount_label(m), &m.destination)?);
        }
        Ok(out)
    }

    /// Resolves the full policy at start: runs [`Policy::check`], then needs every mount source set
    /// and an existing directory, and the propagated-mount directory from the manager.
    #[cfg(test)]
    pub(crate) fn resolve(spec: &PluginSpec) -> Result<Self, RuntimeError> {
        Self::resolve_with(spec, &[])
    }

    /// [`Policy::resolve`] with the runtime's test faults applied: the one path a plugin start and
    /// a probe start share, so a probe gets what the plugin would, faults included.
    /// `TestFault::WasmWidePreopen` preopens each bind mount from its source's parent directory
    /// (the propagated mount is left alone: it is the manager's directory, not a declared source).
    pub(crate) fn resolve_with(
        spec: &PluginSpec,
        faults: &[TestFault],
    ) -> Result<Self, RuntimeError> {
        let wide = faults.contains(&TestFault::WasmWidePreopen);
        Self::check(spec)?;
        let effective = spec.effective();
        let guests = Self::guest_layout(spec, &effective)?;
        let mut guests = guests.into_iter();
        let mut preopens = Vec::new();
        if !spec.config.propagated_mount.is_empty() {
            let host = spec.propagated_mount.clone().ok_or_else(|| {
                RuntimeError::Start(
                    "PropagatedMount is declared but plugd gave it no host directory".into(),
                )
            })?;
            let host = host_dir("PropagatedMount", &host)?;
            preopens.push(Preopen {
                host,
                guest: guests.next().unwrap_or_default(),
                read_only: false,
            });
        }
        for m in &effective.mounts {
            let label = mount_label(m);
            let source = m
                .source
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    RuntimeError::Start(format!("{label}: mount source is not specified"))
                })?;
            let host = host_dir(&label, Path::new(source))?;
            if host.starts_with("/dev") {
                return Err(RuntimeError::Unsupported {
                    runtime: RUNTIME_NAME,
                    what: format!(
                        "{label} source {source:?} (device files are not available to wasm plugins)"
                    ),
                });
            }
            let host = match host.parent() {
                Some(parent) if wide => parent.to_path_buf(),
                _ => host,
            };
            // mount(8) semantics: the last of ro/rw wins; default read-write.
            let read_only = m.read_only();
            preopens.push(Preopen {
                host,
                guest: guests.next().unwrap_or_default(),
                read_only,
            });
        }
        // Each preopen becomes a view at every instantiation; make one now so that a source that
        // cannot have one is refused at start, by name.
        for p in &preopens {
            let label = if p.guest.is_empty() {
                "mount"
            } else {
                p.guest.as_str()
            };
            View::new(&p.host, p.read_only).map_err(|e| match e {
                ViewError::PseudoFs { .. } => RuntimeError::Unsupported {
                    runtime: RUNTIME_NAME,
                    what: format!("mount at {label:?}: source {e}"),
                },
                e => RuntimeError::Start(format!("mount at {label:?}: {e}")),
            })?;
        }
        let env = effective
            .env_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cwd = guest_path(&spec.config.work_dir).unwrap_or_else(|| "/".to_string());
        Ok(Policy {
            host_links: host_links(spec),
            preopens,
            env,
            args: effective.args,
            cwd,
        })
    }

    /// Builds the WASI context: the preopens, env and args above, the given stdout/stderr, stdin
    /// closed, no sockets, no name lookup, host clocks and randomness.
    pub(crate) fn wasi_ctx(
        &self,
        stdout: GuestOutput,
        stderr: GuestOutput,
    ) -> Result<WasiCtx, String> {
        let mut b = WasiCtxBuilder::new();
        // Filesystem calls run on the calling thread instead of spawn_blocking (7x faster per call,
        // measured). That thread is the plugin's own (`instance`), never a tokio worker of plugd's,
        // so a call blocked in a FIFO blocks nobody else. Must come before `preopened_dir`, which
        // captures it.
        b.allow_blocking_current_thread(true);
        for p in &self.preopens {
            let perms = if p.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            // The guest gets a nodev view, never the directory itself; the preopen holds the
            // view's mount once opened, so the view's own descriptor can go.
            let view = View::new(&p.host, p.read_only).map_err(|e| e.to_string())?;
            b.preopened_dir(view.path(), &p.guest, perms)
                .map_err(|e| format!("cannot open {} for {}: {e}", p.host.display(), p.guest))?;
        }
        b.envs(&self.env).args(&self.args).initial_cwd(&self.cwd);
        b.stdout(stdout).stderr(stderr);
        // Deny-by-default is wasmtime-wasi 48's default too; say it anyway.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.max_random_size(MAX_RANDOM_BYTES);
        Ok(b.build())
    }
}

/// Canonicalizes a host directory to preopen: it must exist and be a directory (WASI preopens are
/// directories; a file bind cannot be granted).
fn host_dir(label: &str, path: &Path) -> Result<PathBuf, RuntimeError> {
    if !path.is_absolute() {
        return Err(RuntimeError::Bundle(format!(
            "{label}: source {} is not absolute",
            path.display()
        )));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| RuntimeError::Start(format!("{label}: source {}: {e}", path.display())))?;
    if !canonical.is_dir() {
        return Err(RuntimeError::Unsupported {
            runtime: RUNTIME_NAME,
            what: format!(
                "{label} source {} (not a directory; wasm plugins get directories only)",
                path.display()
            ),
        });
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use plugd_core::PluginConfig;
    use plugd_core::config::{Device, Interface, Network, Settings};

    fn spec(config: PluginConfig) -> PluginSpec {
        PluginSpec {
            id: "0".repeat(64),
            name: "p:latest".to_string(),
            config,
            settings: Settings::default(),
            rootfs: PathBuf::from("/nonexistent/rootfs"),
            propagated_mount: None,
            runtime_dir: PathBuf::from("/nonexistent/run"),
            state_dir: PathBuf::from("/nonexistent/state"),
            observer: Default::default(),
        }
    }

    fn volume_config() -> PluginConfig {
        PluginConfig {
            entrypoint: Some(vec!["/plugin.wasm".into()]),
            interface: Interface {
                socket: "v.sock".into(),
                types: Some(vec!["docker.volumedriver/1.0".into()]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn bind(name: &str, source: &str, dest: &str, opts: &[&str]) -> Mount {
        Mount {
            name: name.into(),
            source: Some(source.into()),
            destination: dest.into(),
            kind: "bind".into(),
            options: Some(opts.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn refusal(config: PluginConfig) -> String {
        match Policy::check(&spec(config)) {
            Err(RuntimeError::Unsupported {
                runtime: "wasm",
                what,
            }) => what,
            other => panic!("expected an Unsupported refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_pool_is_for_stateless_types_and_its_size_is_checked() {
        let with = |t: &str, env: &str| {
            let mut c = volume_config();
            c.interface.types = Some(vec![t.into()]);
            let mut s = spec(c);
            s.settings.env = vec![env.to_string()];
            Policy::check(&s)
        };
        with("docker.volumedriver/1.0", "PLUGD_INSTANCES=4").unwrap();
        with("docker.logdriver/1.0", "PLUGD_INSTANCES=1").unwrap();
        for t in ["docker.logdriver/1.0", "docker.metricscollector/1.0"] {
            match with(t, "PLUGD_INSTANCES=2") {
                Err(RuntimeError::Unsupported { what, .. }) => {
                    assert!(
                        what.contains("PLUGD_INSTANCES=2") && what.contains(t),
                        "{what}"
                    )
                }
                other => panic!("{t}: expected a refusal, got {other:?}"),
            }
        }
        match with("docker.volumedriver/1.0", "PLUGD_INSTANCES=many") {
            Err(RuntimeError::Bundle(m)) => assert!(m.contains("PLUGD_INSTANCES"), "{m}"),
            other => panic!("expected a bundle error, got {other:?}"),
        }
    }

    #[test]
    fn host_network_and_net_admin_mean_host_links_for_a_network_driver_only() {
        let net = |kind: &str, caps: &[&str], t: &str| {
            let mut c = volume_config();
            c.interface.types = Some(vec![t.into()]);
            c.network.kind = kind.into();
            c.linux.capabilities = Some(caps.iter().map(|s| s.to_string()).collect());
            c
        };
        let c = net("host", &["CAP_NET_ADMIN"], "docker.networkdriver/1.0");
        Policy::check(&spec(c.clone())).unwrap();
        assert!(host_links(&spec(c)));
        let c = net("none", &[], "docker.networkdriver/1.0");
        Policy::check(&spec(c.clone())).unwrap();
        assert!(!host_links(&spec(c)));
        let c = net("host", &["CAP_NET_ADMIN"], "docker.volumedriver/1.0");
        assert!(refusal(c).contains("network type \"host\""));
        let c = net("host", &[], "docker.networkdriver/1.0");
        assert!(refusal(c).contains("network type \"host\""));
        let c = net("none", &["CAP_NET_ADMIN"], "docker.networkdriver/1.0");
        assert!(refusal(c).contains("CAP_NET_ADMIN"));
        let c = net(
            "host",
            &["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
            "docker.networkdriver/1.0",
        );
        assert!(refusal(c).contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn plain_volume_plugin_is_accepted() {
        Policy::check(&spec(volume_config())).unwrap();
        for net in ["", "none", "bridge", "null"] {
            let c = PluginConfig {
                network: Network { kind: net.into() },
                ..volume_config()
            };
            Policy::check(&spec(c)).unwrap_or_else(|e| panic!("network {net:?}: {e}"));
        }
    }

    #[test]
    fn each_unsupported_privilege_is_refused_by_name() {
        let mut c = volume_config();
        c.network.kind = "host".into();
        assert!(refusal(c).contains("network type \"host\""));

        let mut c = volume_config();
        c.linux.capabilities = Some(vec!["CAP_SYS_ADMIN".into()]);
        assert!(refusal(c).contains("CAP_SYS_ADMIN"));

        let mut c = volume_config();
        c.linux.allow_all_devices = true;
        assert!(refusal(c).contains("AllowAllDevices"));

        let mut c = volume_config();
        c.linux.devices = Some(vec![Device {
            name: "fuse".into(),
            path: Some("/dev/fuse".into()),
            ..Default::default()
        }]);
        assert!(refusal(c).contains("/dev/fuse"));

        let mut c = volume_config();
        c.ipc_host = true;
        assert!(refusal(c).contains("IpcHost"));

        let mut c = volume_config();
        c.pid_host = true;
        assert!(refusal(c).contains("PidHost"));

        let mut c = volume_config();
        c.mounts = Some(vec![Mount {
            name: "t".into(),
            destination: "/tmp".into(),
            kind: "tmpfs".into(),
            ..Default::default()
        }]);
        assert!(refusal(c).contains("mount \"t\" type \"tmpfs\""));

        let mut c = volume_config();
        c.mounts = Some(vec![Mount {
            name: "n".into(),
            source: Some("/srv".into()),
            destination: "/srv".into(),
            kind: "".into(),
            ..Default::default()
        }]);
        assert!(
            refusal(c).contains("type \"\""),
            "no bind option: not a bind mount"
        );

        let mut c = volume_config();
        c.mounts = Some(vec![bind("s", "/srv", "/srv", &["rbind", "nosuid"])]);
        assert!(refusal(c).contains("mount \"s\" option \"nosuid\""));

        let mut c = volume_config();
        c.interface.types = Some(vec![
            "docker.volumedriver/1.0".into(),
            "docker.secretprovider/1.0".into(),
        ]);
        assert!(refusal(c).contains("interface type \"docker.secretprovider/1.0\""));

        // A log driver gets what a volume driver would; plugd reads its FIFOs for it.
        let mut c = volume_config();
        c.interface.types = Some(vec!["docker.logdriver/1.0".into()]);
        Policy::check(&spec(c)).unwrap();

        let mut c = volume_config();
        c.interface.types = Some(vec!["docker.authz/1.0".into()]);
        Policy::check(&spec(c)).unwrap();

        // An IPAM component gets the same grants as a volume one (its mounts, no sockets).
        let mut c = volume_config();
        c.interface.types = Some(vec!["docker.ipamdriver/1.0".into()]);
        Policy::check(&spec(c)).unwrap();

        let mut c = volume_config();
        c.interface.protocol_scheme = "grpc".into();
        assert!(refusal(c).contains("protocol scheme"));
    }

    #[test]
    fn all_refusals_are_reported_together() {
        let mut c = volume_config();
        c.pid_host = true;
        c.network.kind = "host".into();
        let what = refusal(c);
        assert!(
            what.contains("PidHost") && what.contains("network"),
            "{what}"
        );
    }

    #[test]
    fn settings_devices_are_refused_too() {
        let mut s = spec(volume_config());
        s.settings.devices = vec![Device {
            name: "d".into(),
            path: Some("/dev/sda".into()),
            ..Default::default()
        }];
        assert!(matches!(
            Policy::check(&s),
            Err(RuntimeError::Unsupported { .. })
        ));
    }

    #[test]
    fn propagation_options_are_accepted_as_no_ops() {
        let mut c = volume_config();
        let opts = [
            "rbind", "rshared", "private", "rprivate", "shared", "slave", "rslave", "rw",
        ];
        c.mounts = Some(vec![bind("s", "/srv", "/srv", &opts)]);
        Policy::check(&spec(c)).unwrap();
        // OCI-style: type "none" with rbind is a bind mount.
        let mut c = volume_config();
        c.mounts = Some(vec![Mount {
            kind: "none".into(),
            ..bind("s", "/srv", "/srv", &["rbind"])
        }]);
        Policy::check(&spec(c)).unwrap();
    }

    #[test]
    fn missing_types_and_bad_destinations_are_bundle_errors() {
        let mut c = volume_config();
        c.interface.types = None;
        assert!(matches!(
            Policy::check(&spec(c)),
            Err(RuntimeError::Bundle(_))
        ));
        let mut c = volume_config();
        c.mounts = Some(vec![bind("a", "/srv", "relative", &[])]);
        assert!(matches!(
            Policy::check(&spec(c)),
            Err(RuntimeError::Bundle(_))
        ));
        let mut c = volume_config();
        c.propagated_mount = "/data".into();
        c.mounts = Some(vec![bind("a", "/srv", "/data/", &[])]);
        let err = Policy::check(&spec(c)).unwrap_err().to_string();
        assert!(err.contains("two mounts at \"/data\""), "{err}");
    }

    #[test]
    fn preopens_map_binds_and_propagated_mount() {
        let dir = TempDir::new("policy");
        let (rw, ro, pm) = (
            dir.path().join("rw"),
            dir.path().join("ro"),
            dir.path().join("pm"),
        );
        for d in [&rw, &ro, &pm] {
            std::fs::create_dir(d).unwrap();
        }
        let mut c = volume_config();
        c.propagated_mount = "/data".into();
        c.mounts = Some(vec![
            bind("state", rw.to_str().unwrap(), "/state", &["rbind"]),
            bind("cfg", ro.to_str().unwrap(), "/etc/cfg/", &["rbind", "ro"]),
            bind("flip", ro.to_str().unwrap(), "/flip", &["ro", "rw"]),
        ]);
        c.work_dir = "/state".into();
        let mut s = spec(c);
        s.propagated_mount = Some(pm.clone());
        s.settings.env = vec!["VOLUME_ROOT=/data".into(), "EMPTY".into()];
        s.settings.args = vec!["--debug".into()];
        let p = Policy::resolve(&s).unwrap();
        let canon = |d: &Path| d.canonicalize().unwrap();
        assert_eq!(
            p.preopens,
            vec![
                Preopen {
                    host: canon(&pm),
                    guest: "/data".into(),
                    read_only: false
                },
                Preopen {
                    host: canon(&rw),
                    guest: "/state".into(),
                    read_only: false
                },
                Preopen {
                    host: canon(&ro),
                    guest: "/etc/cfg".into(),
                    read_only: true
                },
                Preopen {
                    host: canon(&ro),
                    guest: "/flip".into(),
                    read_only: false
                },
            ]
        );
        assert_eq!(
            p.env,
            vec![
                ("VOLUME_ROOT".into(), "/data".into()),
                ("EMPTY".into(), String::new())
            ]
        );
        assert_eq!(
            p.args,
            vec!["/plugin.wasm".to_string(), "--debug".to_string()]
        );
        assert_eq!(p.cwd, "/state");
        assert!(
            !p.preopens.iter().any(|o| o.host.ends_with("rootfs")),
            "rootfs is never preopened"
        );
    }

    #[test]
    fn the_wide_preopen_fault_preopens_each_bind_source_parent_and_only_those() {
        let dir = TempDir::new("policy-wide");
        let (pm, src) = (dir.path().join("pm"), dir.path().join("deep/src"));
        for d in [&pm, &src] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut c = volume_config();
        c.propagated_mount = "/data".into();
        c.mounts = Some(vec![bind(
            "s",
            src.to_str().unwrap(),
            "/s",
            &["rbind", "ro"],
        )]);
        let mut s = spec(c);
        s.propagated_mount = Some(pm.clone());
        let canon = |d: &Path| d.canonicalize().unwrap();
        let plain = Policy::resolve_with(&s, &[]).unwrap();
        assert_eq!(plain, Policy::resolve(&s).unwrap());
        assert_eq!(plain.preopens[1].host, canon(&src));
        let other = [TestFault::NativeBoundingCap, TestFault::NativeDeviceRule];
        assert_eq!(Policy::resolve_with(&s, &other).unwrap(), plain);
        let wide = Policy::resolve_with(&s, &[TestFault::WasmWidePreopen]).unwrap();
        assert_eq!(
            wide.preopens[0], plain.preopens[0],
            "the propagated mount is left alone"
        );
        assert_eq!(
            wide.preopens[1],
            Preopen {
                host: canon(&dir.path().join("deep")),
                guest: "/s".into(),
                read_only: true,
            }
        );
    }

    #[test]
    fn settings_mounts_override_config_sources() {
        let dir = TempDir::new("policy-set");
        let mut c = volume_config();
        c.mounts = Some(vec![Mount {
            source: None,
            ..bind("state", "", "/state", &["rbind"])
        }]);
        let mut s = spec(c.clone());
        s.settings.mounts = c.mounts.clone().unwrap();
        let err = Policy::resolve(&s).unwrap_err().to_string();
        assert!(err.contains("mount source is not specified"), "{err}");
        s.settings.mounts[0].source = Some(dir.path().to_str().unwrap().into());
        let p = Policy::resolve(&s).unwrap();
        assert_eq!(p.preopens[0].host, dir.path().canonicalize().unwrap());
    }

    #[test]
    fn resolve_refuses_devices_files_and_missing_dirs() {
        let dir = TempDir::new("policy-bad");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let with = |src: &str| {
            let mut c = volume_config();
            c.mounts = Some(vec![bind("m", src, "/m", &["rbind"])]);
            Policy::resolve(&spec(c))
        };
        assert!(matches!(
            with("/dev"),
            Err(RuntimeError::Unsupported { .. })
        ));
        assert!(matches!(
            with(file.to_str().unwrap()),
            Err(RuntimeError::Unsupported { .. })
        ));
        assert!(matches!(
            with("/nonexistent/plugd"),
            Err(RuntimeError::Start(_))
        ));
        let mut c = volume_config();
        c.propagated_mount = "/data".into();
        assert!(
            matches!(Policy::resolve(&spec(c)), Err(RuntimeError::Start(_))),
            "no host dir given"
        );
    }

    /// What the policy grants (or refuses, by value) is what `plugd_core::effective` says the
    /// plugin gets, for every config of the shared table the native spec's tests check too.
    #[test]
    fn grants_match_the_effective_model_for_every_shared_case() {
        let dir = TempDir::new("policy-effective");
        let root = dir.path().to_str().unwrap();
        for sub in ["old", "new", "ro"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for (case, config, settings) in plugd_core::effective::cases(root) {
            let mut s = spec(PluginConfig {
                interface: volume_config().interface,
                ..config
            });
            s.settings = settings;
            let e = plugd_core::Effective::of(&s.config, &s.settings);
            let refusable = e.host_network()
                || e.pid_host
                || e.ipc_host
                || e.allow_all_devices
                || !e.capabilities.is_empty()
                || e.named_devices().next().is_some();
            if refusable {
                let what = match Policy::check(&s) {
                    Err(RuntimeError::Unsupported { what, .. }) => what,
                    other => panic!("{case}: expected a refusal, got {other:?}"),
                };
                for value in e
                    .capabilities
                    .iter()
                    .chain(e.named_devices().filter_map(|d| d.path.as_ref()))
                {
                    assert!(
                        what.contains(value.as_str()),
                        "{case}: {what} names {value}"
                    );
                }
                continue;
            }
            let p = Policy::resolve(&s).unwrap_or_else(|err| panic!("{case}: {err}"));
            let granted: Vec<(String, PathBuf, bool)> = p
                .preopens
                .iter()
                .map(|o| (o.guest.clone(), o.host.clone(), o.read_only))
                .collect();
            let expected: Vec<(String, PathBuf, bool)> = e
                .mounts
                .iter()
                .map(|m| {
                    let source = Path::new(m.source.as_deref().unwrap());
                    let ro = m.options.iter().flatten().any(|o| o == "ro");
                    (m.destination.clone(), source.canonicalize().unwrap(), ro)
                })
                .collect();
            assert_eq!(granted, expected, "{case}: mounts");
            let env: Vec<(&str, &str)> = p
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(env, e.env_pairs().collect::<Vec<_>>(), "{case}: env");
            assert_eq!(p.args, e.args, "{case}: args");
        }
    }
}
