//! Parity with dockerd 20.10's captured plugin specs, and every rule and deliberate difference on
//! its own.
//!
//! **The normaliser** ([`normalise`]): a captured spec holds three host paths that depend on where
//! each daemon keeps its state, and nothing else is touched:
//! 1. `root.path` (`<dockerd root>/plugins/<id>/rootfs`) becomes [`PluginSpec::rootfs`];
//! 2. the source of the bind at `/run/docker/plugins` (`/run/docker/plugins/<id>`) becomes
//!    [`PluginSpec::runtime_dir`];
//! 3. the source of the propagated mount (`<dockerd root>/plugins/<id>/propagated-mount`) becomes
//!    [`PluginSpec::propagated_mount`].
//!
//! Each replacement checks that the captured value has dockerd's shape for this plugin id and
//! happens exactly once, so the normaliser cannot hide a difference elsewhere. The comparison then
//! drops our `plugd` section (difference 1), which is asserted on its own.

use super::*;
use plugd_core::config::{self, PluginConfig, PluginObject, Settings};
use std::collections::BTreeMap;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dockerd");

/// The device nodes the captured cases saw on dockerd's host.
struct FakeDevices(BTreeMap<&'static str, Vec<Device>>);

impl FakeDevices {
    fn dockerd_host() -> Self {
        let fuse = Device {
            path: "/dev/fuse".into(),
            kind: "c".into(),
            major: 10,
            minor: 229,
            file_mode: Some(0o600),
            uid: Some(0),
            gid: Some(0),
        };
        FakeDevices(BTreeMap::from([("/dev/fuse", vec![fuse])]))
    }
}

impl DeviceSource for FakeDevices {
    fn devices_from_path(&self, path: &str) -> Result<Vec<Device>, SpecError> {
        self.0.get(path).cloned().ok_or_else(|| SpecError::Device {
            path: path.into(),
            reason: "not a device node".into(),
        })
    }
}

fn read_fixture(name: &str) -> String {
    let path = format!("{FIXTURES}/{name}");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The plugin as `docker plugin inspect` showed it, as plugd's manager would hand it over.
fn plugin_spec(inspect: &str) -> PluginSpec {
    let mut objects: Vec<PluginObject> = serde_json::from_str(&read_fixture(inspect)).unwrap();
    let p = objects.remove(0);
    let dir = PathBuf::from("/var/lib/plugd/plugins").join(&p.id);
    PluginSpec {
        propagated_mount: (!p.config.propagated_mount.is_empty())
            .then(|| dir.join("propagated-mount")),
        rootfs: dir.join("rootfs"),
        runtime_dir: PathBuf::from("/run/plugd/plugins").join(&p.id),
        state_dir: PathBuf::from("/run/plugd/state").join(&p.id),
        observer: Default::default(),
        id: p.id,
        name: p.name,
        config: p.config,
        settings: p.settings,
    }
}

fn sandbox_paths(id: &str) -> SandboxPaths {
    SandboxPaths {
        stdout: PathBuf::from(format!("/run/plugd/native/{id}/stdout")),
        stderr: PathBuf::from(format!("/run/plugd/native/{id}/stderr")),
        cgroups: vec![PathBuf::from(format!("/sys/fs/cgroup/devices/plugd-{id}"))],
        no_pivot: false,
        metrics_socket: None,
        log_fifos: None,
        probe: false,
        faults: Vec::new(),
    }
}

/// See the module docs.
fn normalise(mut captured: SandboxSpec, spec: &PluginSpec) -> SandboxSpec {
    let id = &spec.id;
    let root = captured.root.path.to_string_lossy().into_owned();
    assert!(
        root.ends_with(&format!("/plugins/{id}/rootfs")),
        "captured root {root}"
    );
    captured.root.path = spec.rootfs.clone();

    let mut runtime: Vec<_> = captured
        .mounts
        .iter_mut()
        .filter(|m| m.destination == PLUGIN_RUNTIME_DESTINATION)
        .collect();
    assert_eq!(runtime.len(), 1, "one runtime dir bind");
    assert_eq!(runtime[0].source, format!("/run/docker/plugins/{id}"));
    runtime[0].source = spec.runtime_dir.to_string_lossy().into_owned();

    let dest = &spec.config.propagated_mount;
    let mut propagated: Vec<_> = captured
        .mounts
        .iter_mut()
        .filter(|m| !dest.is_empty() && &m.destination == dest)
        .collect();
    match &spec.propagated_mount {
        Some(host) => {
            assert_eq!(propagated.len(), 1, "one propagated mount");
            let source = &mut propagated[0].source;
            assert!(source.ends_with(&format!("/plugins/{id}/propagated-mount")));
            *source = host.to_string_lossy().into_owned();
        }
        None => assert!(propagated.is_empty()),
    }
    captured
}

fn json(spec: &SandboxSpec) -> String {
    serde_json::to_string_pretty(spec).unwrap()
}

/// Builds the spec for `<inspect>` and compares it whole with dockerd's `<oci_spec>`.
fn assert_parity(inspect: &str, oci_spec: &str) {
    let spec = plugin_spec(inspect);
    let paths = sandbox_paths(&spec.id);
    let mut built = build_with(&spec, &paths, &FakeDevices::dockerd_host()).unwrap();

    let plugd = built.plugd.take().expect("plugd section");
    assert_eq!(plugd.id, spec.id);
    assert_eq!(plugd.stdout, paths.stdout);
    assert_eq!(plugd.stderr, paths.stderr);
    assert_eq!(plugd.cgroups, paths.cgroups);
    assert!(!plugd.no_pivot);
    assert_eq!(plugd.propagated_mount, spec.propagated_mount);

    let captured: SandboxSpec = serde_json::from_str(&read_fixture(oci_spec)).unwrap();
    assert!(captured.plugd.is_none());
    let expected = normalise(captured, &spec);
    assert_eq!(
        json(&built),
        json(&expected),
        "{inspect} differs from {oci_spec}"
    );
    assert_eq!(built, expected);
}

#[test]
fn parity_refvol_with_propagated_mount() {
    assert_parity("04-plugin-inspect.json", "04-plugin-oci-spec.json");
}

#[test]
fn parity_nocaps_netnone() {
    assert_parity(
        "probes/nocaps-netnone.plugin-inspect.json",
        "probes/nocaps-netnone.oci-spec.json",
    );
}

#[test]
fn parity_sysadmin_nethost() {
    assert_parity(
        "probes/sysadmin-nethost.plugin-inspect.json",
        "probes/sysadmin-nethost.oci-spec.json",
    );
}

#[test]
fn parity_device_fuse() {
    assert_parity(
        "probes/device-fuse.plugin-inspect.json",
        "probes/device-fuse.oci-spec.json",
    );
}

#[test]
fn parity_bindmount() {
    assert_parity(
        "probes/bindmount.plugin-inspect.json",
        "probes/bindmount.oci-spec.json",
    );
}

/// The same case through the real host lookup, where this host's `/dev/fuse` is what dockerd's was.
#[test]
fn parity_device_fuse_from_this_host() {
    let md = match fs::metadata("/dev/fuse") {
        Ok(md) if md.rdev() == 0xae5 && md.mode() & 0o7777 == 0o600 && md.uid() == 0 => md,
        _ => return eprintln!("skipped: this host has no /dev/fuse c 10:229 0600 root"),
    };
    assert!(md.file_type().is_char_device());
    let spec = plugin_spec("probes/device-fuse.plugin-inspect.json");
    let mut built = build(&spec, &sandbox_paths(&spec.id)).unwrap();
    built.plugd = None;
    let captured = serde_json::from_str(&read_fixture("probes/device-fuse.oci-spec.json")).unwrap();
    assert_eq!(built, normalise(captured, &spec));
}

/// A plugin built from scratch: no mounts, devices, caps or env.
fn minimal() -> PluginSpec {
    let mut config = PluginConfig {
        entrypoint: Some(vec!["/plugin".into()]),
        ..PluginConfig::default()
    };
    config.interface.socket = "p.sock".into();
    PluginSpec {
        id: "a".repeat(64),
        name: "p:latest".into(),
        settings: Settings::initial(&config),
        config,
        rootfs: "/var/lib/plugd/plugins/a/rootfs".into(),
        propagated_mount: None,
        runtime_dir: "/run/plugd/plugins/a".into(),
        state_dir: "/run/plugd/state/a".into(),
        observer: Default::default(),
    }
}

fn build_minimal(spec: &PluginSpec) -> Result<SandboxSpec, SpecError> {
    build_with(spec, &SandboxPaths::default(), &FakeDevices::dockerd_host())
}

fn destinations(s: &SandboxSpec) -> Vec<&str> {
    s.mounts.iter().map(|m| m.destination.as_str()).collect()
}

fn namespaces(s: &SandboxSpec) -> Vec<&str> {
    s.linux.namespaces.iter().map(|n| n.kind.as_str()).collect()
}

#[test]
fn empty_network_type_keeps_netns_and_binds_no_etc_files() {
    let s = build_minimal(&minimal()).unwrap();
    assert_eq!(namespaces(&s), ["mount", "network", "uts", "pid", "ipc"]);
    assert_eq!(
        destinations(&s),
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
            "/run/docker/plugins"
        ]
    );
    assert_eq!(s.mounts[7].source, "/run/plugd/plugins/a");
    assert_eq!(s.mounts[7].options, ["rbind", "rshared"]);
    assert!(s.linux.rootfs_propagation.is_empty());
}

#[test]
fn any_non_empty_network_type_binds_hosts_and_resolv_read_only() {
    for kind in ["none", "bridge", "host"] {
        let mut p = minimal();
        p.config.network.kind = kind.into();
        let s = build_minimal(&p).unwrap();
        let tail: Vec<_> = s.mounts[8..]
            .iter()
            .map(|m| (&*m.destination, &*m.source, &*m.kind, m.options.join(",")))
            .collect();
        assert_eq!(
            tail,
            [
                ("/etc/hosts", "/etc/hosts", "bind", "rbind,ro".to_owned()),
                (
                    "/etc/resolv.conf",
                    "/etc/resolv.conf",
                    "bind",
                    "rbind,ro".to_owned()
                )
            ],
            "{kind}"
        );
        let has_net = namespaces(&s).contains(&"network");
        assert_eq!(has_net, kind != "host", "{kind}");
    }
}

#[test]
fn pid_host_and_ipc_host_drop_their_namespaces() {
    let mut p = minimal();
    p.config.pid_host = true;
    assert_eq!(
        namespaces(&build_minimal(&p).unwrap()),
        ["mount", "network", "uts", "ipc"]
    );
    p.config.ipc_host = true;
    p.config.network.kind = "host".into();
    assert_eq!(namespaces(&build_minimal(&p).unwrap()), ["mount", "uts"]);
}

/// 20.10 parity: no time namespace (docker ≥ 29.5 asks for one), 20.10's masked paths.
#[test]
fn follows_dockerd_20_10_not_newer_dockerd() {
    let s = build_minimal(&minimal()).unwrap();
    assert!(!namespaces(&s).contains(&"time"));
    assert_eq!(s.linux.masked_paths, MASKED_PATHS);
    for newer in ["/proc/interrupts", "/sys/devices/virtual/powercap"] {
        assert!(!s.linux.masked_paths.iter().any(|p| p == newer));
    }
    assert_eq!(s.linux.readonly_paths, READONLY_PATHS);
}

#[test]
fn process_env_args_cwd_and_user() {
    let mut p = minimal();
    p.config.entrypoint = Some(vec!["/bin/plugin".into(), "--serve".into()]);
    p.config.work_dir = "/srv".into();
    p.config.user.uid = Some(1000);
    p.settings.env = vec!["PATH=/mine".into(), "DEBUG=1".into()];
    p.settings.args = vec!["-v".into(), "x".into()];
    let s = build_minimal(&p).unwrap();
    assert_eq!(s.process.args, ["/bin/plugin", "--serve", "-v", "x"]);
    assert_eq!(s.process.env, [DEFAULT_PATH_ENV, "PATH=/mine", "DEBUG=1"]);
    assert_eq!(s.process.cwd, "/srv");
    assert_eq!((s.process.user.uid, s.process.user.gid), (0, 0));
    assert!(!s.process.no_new_privileges);
    assert_eq!(s.hostname, None);
    assert!(!s.root.readonly);

    p.config.work_dir.clear();
    assert_eq!(build_minimal(&p).unwrap().process.cwd, "/");
}

#[test]
fn declared_capabilities_are_appended_raw_and_alone_in_inheritable() {
    let mut p = minimal();
    p.config.linux.capabilities = Some(vec!["CAP_SYS_ADMIN".into(), "sys_module".into()]);
    let caps = build_minimal(&p).unwrap().process.capabilities;
    let mut want: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    want.extend(["CAP_SYS_ADMIN".to_owned(), "sys_module".to_owned()]);
    assert_eq!(caps.bounding, want);
    assert_eq!(caps.effective, want);
    assert_eq!(caps.permitted, want);
    assert_eq!(caps.inheritable, ["CAP_SYS_ADMIN", "sys_module"]);
    assert!(caps.ambient.is_empty());
}

#[test]
fn allow_all_devices_replaces_the_rules_and_devices_still_append() {
    let mut p = minimal();
    p.config.linux.allow_all_devices = true;
    let s = build_minimal(&p).unwrap();
    assert_eq!(
        s.linux.resources.devices,
        [DeviceRule {
            allow: true,
            kind: None,
            major: None,
            minor: None,
            access: "rwm".into()
        }]
    );
    assert!(s.linux.devices.is_empty());

    p.settings.devices = vec![config::Device {
        path: Some("/dev/fuse".into()),
        ..config::Device::default()
    }];
    let s = build_minimal(&p).unwrap();
    assert_eq!(s.linux.resources.devices.len(), 2);
    assert_eq!(s.linux.resources.devices[1].major, Some(10));
    assert_eq!(s.linux.devices[0].path, "/dev/fuse");
}

#[test]
fn devices_come_from_settings_not_config() {
    let mut p = minimal();
    p.config.linux.devices = Some(vec![config::Device {
        path: Some("/dev/fuse".into()),
        ..config::Device::default()
    }]);
    let s = build_minimal(&p).unwrap();
    assert!(s.linux.devices.is_empty(), "dockerd reads Settings.Devices");
}

#[test]
fn plugin_mounts_come_from_config_in_order_after_the_propagated_mount() {
    let mut p = minimal();
    p.config.propagated_mount = "/data".into();
    p.propagated_mount = Some("/var/lib/plugd/plugins/a/propagated-mount".into());
    let mount = |name: &str, dest: &str, source: Option<&str>| config::Mount {
        name: name.into(),
        destination: dest.into(),
        source: source.map(Into::into),
        kind: "bind".into(),
        options: Some(vec!["rbind".into()]),
        ..config::Mount::default()
    };
    p.config.mounts = Some(vec![
        mount("one", "/one", Some("/h1")),
        mount("two", "/two", Some("/h2")),
    ]);
    // A stale settings copy does not matter: the mount list is Config's.
    p.settings.mounts = vec![mount("one", "/one", Some("/stale"))];
    let s = build_minimal(&p).unwrap();
    assert_eq!(
        &destinations(&s)[7..],
        ["/data", "/one", "/two", "/run/docker/plugins"]
    );
    assert_eq!(s.mounts[7].options, ["rbind", "rw", "rshared"]);
    assert_eq!(
        s.mounts[7].source,
        "/var/lib/plugd/plugins/a/propagated-mount"
    );
    assert_eq!(s.mounts[8].source, "/h1");
    assert_eq!(s.linux.rootfs_propagation, "rshared");

    p.config.mounts = Some(vec![mount("nosrc", "/x", None)]);
    assert_eq!(
        build_minimal(&p).unwrap_err().to_string(),
        r#"plugin mount "nosrc" (destination "/x"): mount source is not specified"#
    );
}

/// What dockerd's `/dev/*` override loop does (`for i, m := range s.Mounts { … s.Mounts =
/// append(s.Mounts[:i], s.Mounts[i+1:]...) }`): range keeps the original length and backing array,
/// each removal shifts the array under the index. `None` where Go would panic.
fn dockerd_dev_override(mounts: &[Mount], user: &[&str]) -> Option<Vec<Mount>> {
    let mut array = mounts.to_vec();
    let mut len = array.len();
    for i in 0..mounts.len() {
        let m = array[i].clone();
        if m.destination.starts_with("/dev/") && user.contains(&m.destination.as_str()) {
            if i + 1 > len {
                return None;
            }
            // Go's append copies the tail down one place and leaves the old last element in place.
            for j in i..len - 1 {
                array[j] = array[j + 1].clone();
            }
            len -= 1;
        }
    }
    array.truncate(len);
    Some(array)
}

/// Difference 2, asserted against dockerd's loop on the specs it would start from.
#[test]
fn dev_override_replaces_only_default_mounts_unlike_dockerd() {
    let user_mount = |dest: &str| config::Mount {
        name: "m".into(),
        destination: dest.into(),
        source: Some(format!("/host{dest}")),
        kind: "bind".into(),
        options: Some(vec!["rbind".into()]),
        ..config::Mount::default()
    };
    for (dest, propagated, dockerd_keeps_user_mount) in [
        ("/dev/shm", false, true),
        ("/dev/shm", true, false),
        ("/dev/fuse", false, false),
        ("/dev/mqueue", false, false),
    ] {
        let mut p = minimal();
        p.config.network.kind = "none".into();
        if propagated {
            p.config.propagated_mount = "/data".into();
            p.propagated_mount = Some("/pm".into());
        }
        p.config.mounts = Some(vec![user_mount(dest)]);
        p.settings.mounts = p.config.mounts.clone().unwrap();
        let ours = build_minimal(&p).unwrap();

        // dockerd's list before its loop: all defaults, then everything else we built.
        let defaults = default_mounts();
        let mut unfiltered = defaults.clone();
        unfiltered.extend(
            ours.mounts
                .iter()
                .filter(|m| !defaults.contains(m))
                .cloned(),
        );
        let theirs = dockerd_dev_override(&unfiltered, &[dest]).unwrap();

        let user_in = |ms: &[Mount]| ms.iter().any(|m| m.destination == dest && m.kind == "bind");
        let default_in =
            |ms: &[Mount]| ms.iter().any(|m| m.destination == dest && m.kind != "bind");
        assert!(
            user_in(&ours.mounts),
            "{dest}: ours keeps the plugin's mount"
        );
        assert!(!default_in(&ours.mounts), "{dest}: ours drops the default");
        assert_eq!(
            user_in(&theirs),
            dockerd_keeps_user_mount,
            "{dest} propagated={propagated}"
        );
        assert!(!default_in(&theirs));
        // Everything else is the same list in the same order.
        let others = |ms: &[Mount]| -> Vec<String> {
            ms.iter()
                .filter(|m| m.destination != dest)
                .map(|m| m.destination.clone())
                .collect()
        };
        assert_eq!(others(&ours.mounts), others(&theirs));
    }
}

#[test]
fn null_device_path_and_missing_device_are_errors() {
    let mut p = minimal();
    p.settings.devices = vec![config::Device {
        name: "gpu".into(),
        path: None,
        ..config::Device::default()
    }];
    assert_eq!(
        build_minimal(&p).unwrap_err(),
        SpecError::DevicePath {
            index: 0,
            name: "gpu".into()
        }
    );
    p.settings.devices[0].path = Some("/dev/nothing".into());
    assert_eq!(
        build_minimal(&p).unwrap_err().to_string(),
        r#"error gathering device information while adding custom device "/dev/nothing": not a device node"#
    );
}

#[test]
fn propagated_mount_needs_a_host_dir_and_argv_must_not_be_empty() {
    let mut p = minimal();
    p.config.propagated_mount = "/data".into();
    assert!(matches!(
        build_minimal(&p),
        Err(SpecError::PropagatedMountDir { .. })
    ));
    let mut p = minimal();
    p.config.entrypoint = None;
    assert_eq!(build_minimal(&p).unwrap_err(), SpecError::NoArgs);
    p.settings.args = vec!["/only-args".into()];
    assert_eq!(build_minimal(&p).unwrap().process.args, ["/only-args"]);
}

/// Difference 5: dockerd's metrics socket is bound last, for exact `docker.metricscollector/1.0`
/// plugins, only when plugd has one.
#[test]
fn metrics_socket_is_bound_for_metrics_collectors_when_given() {
    let mut p = minimal();
    p.config.interface.types = Some(vec!["docker.metricscollector/1.0".into()]);
    assert!(!destinations(&build_minimal(&p).unwrap()).contains(&METRICS_DESTINATION));
    let paths = SandboxPaths {
        metrics_socket: Some("/run/plugd/metrics.sock".into()),
        ..SandboxPaths::default()
    };
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    let last = s.mounts.last().unwrap();
    assert_eq!(
        (&*last.destination, &*last.source, last.options.join(",")),
        (
            METRICS_DESTINATION,
            "/run/plugd/metrics.sock",
            "bind,ro".to_owned()
        )
    );
    p.config.interface.types = Some(vec!["Docker.MetricsCollector/1.0".into()]);
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    assert!(!destinations(&s).contains(&METRICS_DESTINATION));
}

/// Difference 7: a log driver gets plugd's relayed FIFO directory read-only at
/// `/run/docker/logging`, last; other plugins never do, and nothing is bound without a directory.
#[test]
fn log_fifos_are_bound_read_only_for_log_drivers_only() {
    let logging = plugd_core::protocol::logdriver::LOGGING_DIR;
    let paths = SandboxPaths {
        log_fifos: Some("/run/plugd/state/a/logging".into()),
        ..SandboxPaths::default()
    };
    let mut p = minimal();
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    assert!(!destinations(&s).contains(&logging));
    p.config.interface.types = Some(vec!["docker.logdriver/1.0".into()]);
    assert!(!destinations(&build_minimal(&p).unwrap()).contains(&logging));
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    let last = s.mounts.last().unwrap();
    assert_eq!(
        (&*last.destination, &*last.source, last.options.join(",")),
        (logging, "/run/plugd/state/a/logging", "rbind,ro".to_owned())
    );
    assert_eq!(
        s.mounts
            .iter()
            .filter(|m| m.destination.starts_with("/run/docker/logging"))
            .count(),
        1
    );
}

#[test]
fn plugd_section_carries_the_sandbox_paths() {
    let p = minimal();
    let paths = SandboxPaths {
        stdout: "/run/x/out".into(),
        stderr: "/run/x/err".into(),
        cgroups: vec!["/sys/fs/cgroup/pids/plugd-a".into()],
        no_pivot: true,
        metrics_socket: None,
        log_fifos: None,
        probe: false,
        faults: Vec::new(),
    };
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    assert_eq!(
        s.plugd,
        Some(PlugdExt {
            id: p.id.clone(),
            stdout: paths.stdout.clone(),
            stderr: paths.stderr.clone(),
            cgroups: paths.cgroups.clone(),
            no_pivot: true,
            propagated_mount: None,
            probe: false,
        })
    );
    let mut p = minimal();
    p.config.propagated_mount = "/data".into();
    p.propagated_mount = Some("/var/lib/plugd/plugins/a/propagated-mount".into());
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    assert_eq!(
        s.plugd.unwrap().propagated_mount,
        Some(PathBuf::from("/var/lib/plugd/plugins/a/propagated-mount"))
    );
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("plugd-spec-{tag}-"))
            .tempdir()
            .unwrap();
        Scratch(dir.keep())
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mkfifo(path: &str) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {path}");
}

#[test]
fn host_lookup_of_a_node_and_of_a_symlink_to_it() {
    let d = devices_from_path("/dev/null").unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (&*d[0].path, &*d[0].kind, d[0].major, d[0].minor),
        ("/dev/null", "c", 1, 3)
    );
    assert_eq!(d[0].file_mode, Some(0o666));

    let scratch = Scratch::new("symlink");
    let link = scratch.path("null-link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let d = devices_from_path(&link).unwrap();
    assert_eq!((&*d[0].path, d[0].major, d[0].minor), (&*link, 1, 3));
}

#[test]
fn host_lookup_walks_a_directory_in_lexical_order_without_following_symlinks() {
    let scratch = Scratch::new("walk");
    fs::create_dir_all(scratch.path("devs/sub")).unwrap();
    mkfifo(&scratch.path("devs/b"));
    mkfifo(&scratch.path("devs/a"));
    mkfifo(&scratch.path("devs/sub/c"));
    fs::write(scratch.path("devs/plain"), "").unwrap();
    std::os::unix::fs::symlink("/dev/null", scratch.path("devs/link")).unwrap();

    let top = scratch.path("devs");
    let d = devices_from_path(&top).unwrap();
    let got: Vec<_> = d.iter().map(|d| (d.path.clone(), d.kind.clone())).collect();
    let want: Vec<_> = ["a", "b", "sub/c"]
        .iter()
        .map(|n| (format!("{top}/{n}"), "p".to_owned()))
        .collect();
    assert_eq!(got, want);

    // A symlink to the directory keeps the configured prefix.
    let alias = scratch.path("alias");
    std::os::unix::fs::symlink(&top, &alias).unwrap();
    let d = devices_from_path(&alias).unwrap();
    assert_eq!(d[2].path, format!("{alias}/sub/c"));
}

#[test]
fn host_lookup_errors() {
    let scratch = Scratch::new("errors");
    fs::create_dir_all(scratch.path("empty")).unwrap();
    fs::write(scratch.path("file"), "").unwrap();
    for (path, reason) in [
        (scratch.path("empty"), "not a device node"),
        (scratch.path("file"), "not a device node"),
    ] {
        assert_eq!(
            devices_from_path(&path).unwrap_err(),
            SpecError::Device {
                path: path.clone(),
                reason: reason.into()
            }
        );
    }
    let missing = scratch.path("missing");
    match devices_from_path(&missing).unwrap_err() {
        SpecError::Device { reason, .. } => assert!(reason.starts_with("lstat "), "{reason}"),
        e => panic!("{e}"),
    }
}

#[test]
fn dev_numbers_split_like_glibc() {
    assert_eq!(split_dev(0xae5), (10, 229));
    assert_eq!(split_dev(0x0103), (1, 3));
    // major 259, minor 0x10101: the minor's low byte in bits 0-7, the rest from bit 20 up.
    let dev: u64 = (259 << 8) | 0x01 | (0x1_0100 << 12);
    assert_eq!(split_dev(dev), (259, 0x1_0101));
}

/// The sandbox holds exactly what `plugd_core::effective` says the plugin gets, for every config
/// of the shared table (the wasm policy's tests check the same table against the same model).
#[test]
fn sandbox_matches_the_effective_model_for_every_shared_case() {
    let any_node = |path: &str| Device {
        path: path.into(),
        kind: "c".into(),
        major: 1,
        minor: 3,
        ..Device::default()
    };
    for (case, config, settings) in plugd_core::effective::cases("/srv") {
        let p = PluginSpec {
            config,
            settings,
            ..minimal()
        };
        let e = plugd_core::Effective::of(&p.config, &p.settings);
        let paths: Vec<&str> = e.devices.iter().filter_map(|d| d.path.as_deref()).collect();
        // FakeDevices keys are 'static (the captured hosts' paths); a few leaked strings in a test.
        let leak = |d: &str| -> &'static str { Box::leak(d.to_owned().into_boxed_str()) };
        let host = FakeDevices(
            paths
                .iter()
                .map(|&d| (leak(d), vec![any_node(d)]))
                .collect(),
        );
        let s = build_with(&p, &sandbox_paths(&p.id), &host).unwrap();
        let plugin_mounts: Vec<(String, String, Vec<String>)> = s
            .mounts
            .iter()
            .filter(|m| !default_mounts().contains(m))
            .filter(|m| m.destination != PLUGIN_RUNTIME_DESTINATION)
            .map(|m| (m.destination.clone(), m.source.clone(), m.options.clone()))
            .collect();
        let expected: Vec<(String, String, Vec<String>)> = e
            .mounts
            .iter()
            .map(|m| {
                let source = m.source.clone().unwrap_or_default();
                let options = m.options.clone().unwrap_or_default();
                (m.destination.clone(), source, options)
            })
            .collect();
        let (plugin_mounts, network_binds) = plugin_mounts.split_at(expected.len());
        assert_eq!(plugin_mounts, expected, "{case}: mounts");
        assert_eq!(network_binds.is_empty(), e.network.is_empty(), "{case}");
        let devices: Vec<&str> = s.linux.devices.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(devices, paths, "{case}: devices");
        assert_eq!(s.process.env[0], DEFAULT_PATH_ENV, "{case}");
        assert_eq!(s.process.env[1..], e.env, "{case}: env");
        assert_eq!(s.process.args, e.args, "{case}: args");
        assert_eq!(
            s.process.capabilities.inheritable, e.capabilities,
            "{case}: capabilities"
        );
        let ns = namespaces(&s);
        assert_eq!(!ns.contains(&"network"), e.host_network(), "{case}");
        assert_eq!(!ns.contains(&"pid"), e.pid_host, "{case}");
        assert_eq!(!ns.contains(&"ipc"), e.ipc_host, "{case}");
    }
}

/// The test faults weaken exactly what they name, and only when asked for.
#[test]
fn test_faults_weaken_the_bounding_set_and_device_rules_only() {
    use plugd_core::check::fault::TestFault;
    let mut p = minimal();
    p.settings.devices = vec![config::Device {
        path: Some("/dev/fuse".into()),
        ..config::Device::default()
    }];
    let clean = build_minimal(&p).unwrap();
    assert!(
        !clean
            .process
            .capabilities
            .bounding
            .contains(&"CAP_SYS_ADMIN".to_owned())
    );
    let fuse_allowed = |s: &SandboxSpec| {
        s.linux
            .resources
            .devices
            .iter()
            .any(|r| r.allow && r.major == Some(10) && r.minor == Some(229))
    };
    assert!(fuse_allowed(&clean));

    let paths = SandboxPaths {
        faults: vec![TestFault::NativeBoundingCap],
        ..SandboxPaths::default()
    };
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    let caps = &s.process.capabilities;
    assert_eq!(
        caps.bounding.last().map(String::as_str),
        Some("CAP_SYS_ADMIN")
    );
    assert_eq!(
        caps.bounding.len(),
        clean.process.capabilities.bounding.len() + 1
    );
    for set in [&caps.effective, &caps.permitted, &caps.inheritable] {
        assert!(!set.contains(&"CAP_SYS_ADMIN".to_owned()), "{set:?}");
    }
    assert_eq!(s.linux.resources, clean.linux.resources);

    let paths = SandboxPaths {
        faults: vec![TestFault::NativeDeviceRule],
        ..SandboxPaths::default()
    };
    let s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    assert!(!fuse_allowed(&s));
    assert_eq!(
        s.linux.devices, clean.linux.devices,
        "the node is still made"
    );
    assert_eq!(s.process, clean.process);

    // A probe launch changes nothing but the plugd section's switch.
    let paths = SandboxPaths {
        probe: true,
        ..SandboxPaths::default()
    };
    let mut s = build_with(&p, &paths, &FakeDevices::dockerd_host()).unwrap();
    assert!(s.plugd.as_ref().unwrap().probe);
    s.plugd.as_mut().unwrap().probe = false;
    assert_eq!(s, clean);
}
