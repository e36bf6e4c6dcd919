//! Parity, live: the probe plugin (`tests/fixtures/probe-plugin`) runs as a managed plugin under
//! a real dockerd and under plugd in the same test, and the two reports must be equal after
//! [`normalise`] — except for the deliberate differences [`deliberate`] lists, each asserted as
//! exactly that difference.
//!
//! Cases (the ones captured from dockerd 20.10.24 in `tests/fixtures/probe-plugin/dockerd-observed/`):
//! `nocaps-netnone` (no extra capability, network none), `sysadmin-nethost` (`CAP_SYS_ADMIN`,
//! host network), `device-fuse` (device `/dev/fuse`), `bindmount` (a test-created host dir bound
//! on `/hostdir`, `rbind,rw`). Every case also has `propagatedMount: /data`.
//!
//! Names differ between the daemons (`dprobe-*` on dockerd, `pprobe-*` on plugd): a dockerd
//! managed plugin of the same name would shadow plugd's socket.
//!
//! Besides the report itself, each side is asked to mount a tmpfs under `/data`
//! (`/Probe.Propagate`), and the test records whether that mount reached the host, and what the
//! probe wrote into the bind mount's host directory.
//!
//! The dockerd half is also compared loosely with the capture ([`assert_like_capture`]): that
//! checks the probe, independently of plugd.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::harness::{self, Bundle, Cli, Dockerd, Env, PLUGIN_SOCKET_DIR, Plugd, target_dir};

// ---------------------------------------------------------------------------------------------
// The cases

/// One probe configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Case {
    /// The capture's name (`dockerd-observed/<name>.txt`), also the probe's `PROBE_CASE`.
    pub name: &'static str,
    /// `Linux.Capabilities`.
    pub capabilities: &'static [&'static str],
    /// `Network.Type`.
    pub network: &'static str,
    /// `Linux.Devices` paths.
    pub devices: &'static [&'static str],
    /// A bind mount of a test-created host dir onto `/hostdir` (`rbind,rw`).
    pub bind_mount: bool,
}

pub(crate) const NOCAPS_NETNONE: Case = Case {
    name: "nocaps-netnone",
    capabilities: &[],
    network: "none",
    devices: &[],
    bind_mount: false,
};
pub(crate) const SYSADMIN_NETHOST: Case = Case {
    name: "sysadmin-nethost",
    capabilities: &["CAP_SYS_ADMIN"],
    network: "host",
    devices: &[],
    bind_mount: false,
};
pub(crate) const DEVICE_FUSE: Case = Case {
    name: "device-fuse",
    capabilities: &[],
    network: "none",
    devices: &["/dev/fuse"],
    bind_mount: false,
};
pub(crate) const BINDMOUNT: Case = Case {
    name: "bindmount",
    capabilities: &[],
    network: "none",
    devices: &[],
    bind_mount: true,
};

/// Every case, in the captures' order.
pub(crate) const CASES: [Case; 4] = [NOCAPS_NETNONE, SYSADMIN_NETHOST, DEVICE_FUSE, BINDMOUNT];

/// The probe's socket name (`Interface.Socket`).
pub(crate) const PROBE_SOCKET: &str = "probe.sock";
/// Where the probe binary sits in a bundle's rootfs (the entrypoint).
pub(crate) const PROBE_IN_ROOTFS: &str = "probe-plugin";

#[test]
fn nocaps_netnone() {
    harness::isolated(|env| run_case(env, NOCAPS_NETNONE));
}

#[test]
fn sysadmin_nethost() {
    harness::isolated(|env| run_case(env, SYSADMIN_NETHOST));
}

#[test]
fn device_fuse() {
    harness::isolated(|env| run_case(env, DEVICE_FUSE));
}

#[test]
fn bindmount() {
    harness::isolated(|env| run_case(env, BINDMOUNT));
}

/// Where dockerd and plugd are expected to differ, on purpose. Each entry is asserted as that
/// exact difference (normalised values; `None` = the key is absent on that side), so a
/// deliberate difference that disappears fails the test too. `docs/native-parity.md` says why,
/// entry by entry.
fn deliberate(host: &HostView, dockerd: &PluginPaths, plugd: &PluginPaths) -> Vec<Deliberate> {
    let mut out = vec![
        // plugd differs: the plugin's stdout and stderr are the FIFOs `init-stdout` and
        // `init-stderr` themselves (no shim copying a pipe into them), so a restarted plugd can
        // reopen them; they live in plugd's private state dir, never visible in the sandbox
        // (native-runtime/src/logs.rs).
        Deliberate::new("fd 1", Some("pipe:[…]"), Some("<state-dir>/init-stdout")),
        Deliberate::new("fd 2", Some("pipe:[…]"), Some("<state-dir>/init-stderr")),
        // plugd differs: nothing of plugd's is in the plugin-writable runtime dir; dockerd's holds
        // containerd's FIFOs.
        Deliberate::new(
            "runtime dir entries",
            Some("init-stderr p init-stdout p probe.sock s"),
            Some("probe.sock s"),
        ),
    ];
    // plugd differs: no shim, so the plugin inherits plugd's own oom_score_adj instead of
    // containerd-shim's (containerd's + 1).
    let (shim, own) = (oom_of_shim(), oom_of_plugd());
    if shim != own {
        out.push(Deliberate::new("oom_score_adj", Some(&shim), Some(&own)));
    }
    // plugd differs: its runtime dir is `<exec-root>/plugins/<id>` (plugd_core's
    // `PluginSpec::runtime_dir`), not `/run/docker/plugins/<id>`; the bind on
    // /run/docker/plugins shows whichever host filesystem holds that dir. Only a difference when
    // the two dirs are on different filesystems (here: the test's exec-root vs a tmpfs).
    let (d, p) = (
        runtime_dir_mount(host, &dockerd.runtime_dir),
        runtime_dir_mount(host, &plugd.runtime_dir),
    );
    if d != p {
        out.push(Deliberate::new(
            "mount /run/docker/plugins",
            Some(&d),
            Some(&p),
        ));
    }
    out
}

/// The normalised `/run/docker/plugins` mount of a plugin whose runtime dir is `dir`: a bind
/// (its own peer group) with the type, source and options of the host filesystem holding `dir`.
fn runtime_dir_mount(host: &HostView, dir: &Path) -> String {
    let fs = host
        .holding(dir)
        .unwrap_or_else(|| panic!("no host mount holds {}", dir.display()));
    // runc makes the sandbox's `/` shared before its binds, so a bind from the filesystem that
    // also holds /etc/hosts joins the same peer group as the /etc/hosts bind.
    let peer = match host.holding(Path::new("/etc/hosts")) {
        Some(h) if std::ptr::eq(h, fs) => "shared:=/etc/hosts",
        _ => "shared:own",
    };
    format!(
        "{} {} {} {peer} super={} root=<runtime-dir>",
        fs.fstype, fs.source, fs.options, fs.super_options
    )
}

/// plugd's own `oom_score_adj` (what its plugins inherit).
fn oom_of_plugd() -> String {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// What a dockerd plugin gets: containerd-shim's value, containerd's + 1 (capped at 1000).
fn oom_of_shim() -> String {
    let own: i64 = oom_of_plugd().parse().unwrap_or(0);
    (own + 1).min(1000).to_string()
}

/// One expected difference; see [`deliberate`].
#[derive(Clone, Debug)]
pub(crate) struct Deliberate {
    pub key: String,
    pub dockerd: Option<String>,
    pub plugd: Option<String>,
}

impl Deliberate {
    fn new(key: &str, dockerd: Option<&str>, plugd: Option<&str>) -> Deliberate {
        Deliberate {
            key: key.to_owned(),
            dockerd: dockerd.map(str::to_owned),
            plugd: plugd.map(str::to_owned),
        }
    }
}

/// One side's normalised report and the plugin's host paths.
struct Half {
    flat: Flat,
    paths: PluginPaths,
}

fn run_case(env: &Env, case: Case) {
    let started = Instant::now();
    let d = env.dockerd();
    let p = env.plugd(&[]);
    let dockerd = dockerd_half(env, &d, &case);
    assert_like_capture(&case, &dockerd.flat);
    let plugd = plugd_half(env, &p, &case);
    let expected = deliberate(&HostView::read(), &dockerd.paths, &plugd.paths);
    assert_parity(&case, &dockerd.flat, &plugd.flat, &expected);
    eprintln!(
        "parity {}: {} keys compared, equal but for {} deliberate difference(s), in {:?}",
        case.name,
        dockerd.flat.len(),
        expected.len(),
        started.elapsed()
    );
}

/// The probe under dockerd (`dprobe-<case>`), normalised, plus its effects on the host.
fn dockerd_half(env: &Env, d: &Dockerd, case: &Case) -> Half {
    let name = format!("dprobe-{}", case.name);
    let bind = case.bind_mount.then(|| mkdir(&env.path("bind-d")));
    let bundle = probe_bundle(env, &name, case, bind.as_deref());
    let t = Instant::now();
    let id = enable_on_dockerd(env, d, &name, bundle.path()).assert_enabled();
    eprintln!("parity {}: dockerd enabled in {:?}", case.name, t.elapsed());
    let paths = PluginPaths::dockerd(env, d, &id, bind.as_deref());
    let flat = probe_half("dockerd", case, &dockerd_socket(&id), &paths);
    Half { flat, paths }
}

/// The probe under plugd (`pprobe-<case>`), normalised, plus its effects on the host.
fn plugd_half(env: &Env, p: &Plugd, case: &Case) -> Half {
    let name = format!("pprobe-{}", case.name);
    let bind = case.bind_mount.then(|| mkdir(&env.path("bind-p")));
    let bundle = probe_bundle(env, &name, case, bind.as_deref());
    let t = Instant::now();
    let id = enable_on_plugd(env, p, &name, bundle.path()).assert_enabled();
    eprintln!("parity {}: plugd enabled in {:?}", case.name, t.elapsed());
    let paths = PluginPaths::plugd(env, p, &id, bind.as_deref());
    let flat = probe_half("plugd", case, &plugd_socket(&name), &paths);
    Half { flat, paths }
}

/// Asks the enabled probe for its report, normalises it and adds [`host_effects`].
fn probe_half(daemon: &str, case: &Case, socket: &Path, paths: &PluginPaths) -> Flat {
    let report = probe_report(socket);
    let mut flat = normalise(&report, &HostView::read(), paths);
    flat.extend(host_effects(socket, paths));
    let lines: Vec<String> = flat.iter().map(|(k, v)| format!("  {k} = {v}")).collect();
    println!(
        "parity {}: {daemon}, normalised:\n{}",
        case.name,
        lines.join("\n")
    );
    flat
}

// ---------------------------------------------------------------------------------------------
// Bundles, enabling, calling the probe

/// The probe binary, `cargo build -p plugd-probe-plugin --target x86_64-unknown-linux-musl`.
#[track_caller]
pub(crate) fn probe_binary() -> PathBuf {
    let path = target_dir().join("x86_64-unknown-linux-musl/debug/plugd-probe-plugin");
    assert!(
        path.is_file(),
        "probe plugin not found at {}: build it with `cargo build -p plugd-probe-plugin --target x86_64-unknown-linux-musl`",
        path.display()
    );
    path
}

/// The managed-plugin config of a probe case (as in the captured `plugin-inspect`s, plus
/// `propagatedMount: /data`).
pub(crate) fn probe_config(case: &Case, bind_source: Option<&Path>) -> Value {
    let devices: Vec<Value> = case.devices.iter().map(|p| json!({"path": p})).collect();
    let mut config = json!({
        "description": format!("parity probe: {}", case.name),
        "documentation": "tests/fixtures/probe-plugin",
        "interface": {"socket": PROBE_SOCKET, "types": ["docker.volumedriver/1.0"]},
        "entrypoint": [format!("/{PROBE_IN_ROOTFS}")],
        "workdir": "/",
        "network": {"type": case.network},
        "propagatedMount": "/data",
        "env": [{"name": "PROBE_CASE", "description": "", "settable": ["value"], "value": case.name}],
        "linux": {"capabilities": case.capabilities, "devices": devices},
    });
    if let Some(src) = bind_source {
        config["mounts"] = json!([{
            "name": "hostdir",
            "description": "probe output dir",
            "source": src,
            "destination": "/hostdir",
            "type": "bind",
            "options": ["rbind", "rw"],
            "settable": ["source"],
        }]);
    }
    config
}

/// A probe bundle: the config, `/probe-plugin`, `/etc/plugd-bundle` (a unique layer for
/// dockerd), and the directories the probe uses (`/tmp` is 1777).
pub(crate) fn probe_bundle(
    env: &Env,
    name: &str,
    case: &Case,
    bind_source: Option<&Path>,
) -> Bundle {
    let b = env
        .bundle(name)
        .config(&probe_config(case, bind_source))
        .copy(PROBE_IN_ROOTFS, &probe_binary(), 0o755)
        .file("etc/plugd-bundle", format!("{name}\n").as_bytes(), 0o644)
        .dir("data")
        .dir("hostdir")
        .dir("tmp")
        .dir("run/docker/plugins");
    let tmp = b.rootfs().join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", tmp.display()));
    b
}

pub(crate) fn mkdir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    path.to_path_buf()
}

/// What `create` + `enable` did: the plugin id, or the failing command's output.
pub(crate) enum Enabled {
    Yes(String),
    /// `create` or `enable` failed (its output).
    No(harness::Output),
}

impl Enabled {
    #[track_caller]
    pub(crate) fn assert_enabled(self) -> String {
        match self {
            Enabled::Yes(id) => id,
            Enabled::No(out) => panic!("expected the plugin to be enabled:\n{out}"),
        }
    }
}

/// `docker plugin create` + `enable`; the id comes from `inspect` (also after a failed enable).
pub(crate) fn enable_on_dockerd(env: &Env, d: &Dockerd, name: &str, bundle: &Path) -> Enabled {
    let out = env
        .docker_cmd(Cli::Docker28, d, ["plugin", "create", name])
        .arg(bundle)
        .run();
    if !out.success() {
        return Enabled::No(out);
    }
    let out = env.docker(Cli::Docker28, d, ["plugin", "enable", name]);
    if !out.success() {
        return Enabled::No(out);
    }
    let id = env.docker(
        Cli::Docker28,
        d,
        ["plugin", "inspect", "--format", "{{.Id}}", name],
    );
    Enabled::Yes(id.assert_ok().trimmed().to_owned())
}

/// `plugd create` + `enable`; the id comes from `plugd inspect`.
pub(crate) fn enable_on_plugd(env: &Env, p: &Plugd, name: &str, bundle: &Path) -> Enabled {
    let out = env.plugd_cli_cmd(p, ["create", name]).arg(bundle).run();
    if !out.success() {
        return Enabled::No(out);
    }
    let out = env.plugd_cli(p, ["enable", name]);
    if !out.success() {
        return Enabled::No(out);
    }
    Enabled::Yes(plugd_id(env, p, name))
}

pub(crate) fn plugd_id(env: &Env, p: &Plugd, name: &str) -> String {
    let inspected = env.plugd_cli(p, ["inspect", name]).assert_ok().json();
    inspected[0]["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no Id in plugd inspect {name}: {inspected}"))
        .to_owned()
}

/// dockerd 20.10's socket of a managed plugin: `/run/docker/plugins/<id>/<socket>`.
pub(crate) fn dockerd_socket(id: &str) -> PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(id).join(PROBE_SOCKET)
}

/// plugd's engine-facing socket of plugin `name` (it forwards to the plugin's own socket).
pub(crate) fn plugd_socket(name: &str) -> PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"))
}

/// `POST /Probe.Report`: the probe's report (JSON).
#[track_caller]
pub(crate) fn probe_report(socket: &Path) -> Value {
    let r = harness::http(socket, "POST", "/Probe.Report", Some(b"{}"))
        .unwrap_or_else(|e| panic!("POST /Probe.Report on {}: {e}", socket.display()));
    assert_eq!(
        r.status,
        200,
        "POST /Probe.Report on {}: {}",
        socket.display(),
        r.text()
    );
    r.json()
}

/// What the plugin did to the host, as extra report keys (normalised like the report):
/// - `host: /Probe.Propagate`: the reply to a tmpfs mount under `/data`, and which mounts under
///   the host side of the propagated mount the host sees afterwards (as a set: dockerd's data
///   root is itself shared, in the same peer group, so the host gets the mount twice, stacked);
/// - `host: bind source`: the files in the bind mount's host dir (the probe writes one).
fn host_effects(socket: &Path, paths: &PluginPaths) -> Flat {
    let mut flat = Flat::new();
    let r = harness::http(socket, "POST", "/Probe.Propagate", Some(b"{}"))
        .unwrap_or_else(|e| panic!("POST /Probe.Propagate on {}: {e}", socket.display()));
    let err = r.json()["Err"].as_str().unwrap_or("").to_owned();
    let seen: BTreeSet<String> = paths.propagated.as_ref().map_or_else(BTreeSet::new, |dir| {
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
            .into_iter()
            .filter(|m| {
                Path::new(&m.mount_point).starts_with(dir) && Path::new(&m.mount_point) != dir
            })
            .map(|m| format!("{} at {}", m.fstype, paths.subst(&m.mount_point)))
            .collect()
    });
    flat.insert(
        "host: /Probe.Propagate".into(),
        format!(
            "{} {err:?}; mounts the host sees under it: {seen:?}",
            r.status
        ),
    );
    if let Some(src) = &paths.bind_source {
        flat.insert("host: bind source".into(), format!("{:?}", dir_names(src)));
    }
    flat
}

pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// What the normaliser knows about the host and about each plugin

/// The host's side of what the probe reports, read by the test itself (dockerd and plugd are
/// its children, so the test's namespaces and cgroups are the daemons' "host").
pub(crate) struct HostView {
    /// `/proc/self/ns/*` inode numbers.
    pub ns: BTreeMap<String, u64>,
    pub hostname: String,
    /// `/sys/class/net` names.
    pub ifaces: BTreeSet<String>,
    /// `/proc/self/cgroup`: controllers (`cpu`, `name=systemd`, `""` for v2) → path.
    pub cgroups: BTreeMap<String, String>,
    /// `/proc/self/mountinfo`, for peer groups and filesystem-relative paths.
    pub mounts: Vec<MountLine>,
}

impl HostView {
    pub(crate) fn read() -> HostView {
        let ns = NAMESPACES
            .iter()
            .filter_map(|n| {
                let m = std::fs::metadata(format!("/proc/self/ns/{n}")).ok()?;
                Some(((*n).to_owned(), m.ino()))
            })
            .collect();
        let cgroups = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .filter_map(cgroup_line)
            .map(|(c, p)| (c.to_owned(), p.to_owned()))
            .collect();
        HostView {
            ns,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            ifaces: dir_names(Path::new("/sys/class/net")).into_iter().collect(),
            cgroups,
            mounts: parse_mountinfo(
                &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            ),
        }
    }

    /// The mount `path` is on (the deepest mount point above it; the newest if stacked).
    fn holding(&self, path: &Path) -> Option<&MountLine> {
        self.mounts
            .iter()
            .filter(|m| path.starts_with(&m.mount_point))
            .max_by_key(|m| Path::new(&m.mount_point).components().count())
    }

    /// `path` as a mountinfo `root` field shows it: relative to the filesystem holding it (a dir
    /// on a tmpfs mounted at `/run/docker/plugins` is `/<rest>`), if that differs from `path`.
    fn fs_relative(&self, path: &Path) -> Option<String> {
        let m = self.holding(path)?;
        let rest = path.strip_prefix(&m.mount_point).ok()?;
        let rel = Path::new(&m.root).join(rest).display().to_string();
        (rel != path.display().to_string()).then_some(rel)
    }
}

/// `id:controllers:path` → (controllers, path).
fn cgroup_line(line: &str) -> Option<(&str, &str)> {
    let mut it = line.splitn(3, ':');
    let _id = it.next()?;
    Some((it.next()?, it.next()?))
}

/// Host paths of one plugin, each with the placeholder the normaliser puts in its place.
pub(crate) struct PluginPaths {
    /// (host path, placeholder).
    pub names: Vec<(PathBuf, &'static str)>,
    pub runtime_dir: PathBuf,
    pub propagated: Option<PathBuf>,
    pub bind_source: Option<PathBuf>,
}

impl PluginPaths {
    fn new(
        rootfs: PathBuf,
        runtime_dir: PathBuf,
        propagated: Option<PathBuf>,
        bind_source: Option<&Path>,
        test_dir: Option<&Path>,
    ) -> PluginPaths {
        let mut names = vec![(rootfs, "<rootfs>"), (runtime_dir.clone(), "<runtime-dir>")];
        if let Some(p) = &propagated {
            names.push((p.clone(), "<propagated-mount>"));
        }
        if let Some(b) = bind_source {
            names.push((b.to_path_buf(), "<bind-source>"));
        }
        if let Some(t) = test_dir {
            names.push((t.to_path_buf(), "<test-dir>"));
        }
        PluginPaths {
            names,
            runtime_dir,
            propagated,
            bind_source: bind_source.map(Path::to_path_buf),
        }
    }

    /// dockerd 20.10's layout: `<data-root>/plugins/<id>/{rootfs,propagated-mount}`, runtime dir
    /// `/run/docker/plugins/<id>`.
    pub(crate) fn dockerd(env: &Env, d: &Dockerd, id: &str, bind: Option<&Path>) -> PluginPaths {
        PluginPaths::new(
            d.plugin_dir(id).join("rootfs"),
            Path::new(PLUGIN_SOCKET_DIR).join(id),
            Some(d.propagated_mount(id)),
            bind,
            Some(env.dir()),
        )
    }

    /// plugd's layout: `<data-root>/plugins/<id>/{rootfs,propagated-mount}`, runtime dir
    /// `<exec-root>/plugins/<id>`.
    pub(crate) fn plugd(env: &Env, p: &Plugd, id: &str, bind: Option<&Path>) -> PluginPaths {
        let dir = p.data_root().join("plugins").join(id);
        let mut paths = PluginPaths::new(
            dir.join("rootfs"),
            p.exec_root().join("plugins").join(id),
            Some(dir.join("propagated-mount")),
            bind,
            Some(env.dir()),
        );
        // plugd's private per-plugin state dir (state.json, log FIFOs), never in the sandbox.
        paths
            .names
            .push((p.exec_root().join("state").join(id), "<state-dir>"));
        paths
    }

    /// Replaces a leading host path (whole components only) by its placeholder.
    pub(crate) fn subst(&self, s: &str) -> String {
        subst_with(s, &self.substitutions(None))
    }

    /// Every (from, to) pair, as absolute paths and (with `host`) as filesystem-relative ones,
    /// longest first.
    fn substitutions(&self, host: Option<&HostView>) -> Vec<(String, String)> {
        let mut subs = Vec::new();
        for (path, name) in &self.names {
            subs.push((path.display().to_string(), (*name).to_owned()));
            if let Some(rel) = host.and_then(|h| h.fs_relative(path)) {
                subs.push((rel, (*name).to_owned()));
            }
        }
        subs.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        subs
    }
}

fn subst_with(s: &str, subs: &[(String, String)]) -> String {
    for (from, to) in subs {
        if s == from {
            return to.clone();
        }
        if let Some(rest) = s.strip_prefix(from.as_str())
            && rest.starts_with('/')
        {
            return format!("{to}{rest}");
        }
    }
    s.to_owned()
}

// ---------------------------------------------------------------------------------------------
// The normaliser

/// A normalised report: key → value, compared key by key.
pub(crate) type Flat = BTreeMap<String, String>;

/// Namespaces the probe reports, in its order.
const NAMESPACES: [&str; 8] = ["mnt", "pid", "uts", "ipc", "net", "cgroup", "user", "time"];

/// One `/proc/<pid>/mountinfo` line without the mount and parent ids and the device number.
#[derive(Clone, Debug, Default)]
pub(crate) struct MountLine {
    pub mount_point: String,
    pub root: String,
    pub options: String,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Turns a probe report (or a parsed capture) into a [`Flat`] map with every host-specific value
/// replaced. The rules, item by item:
///
/// 1. **Host paths** (`root`, mount point and source of each mount, `/proc/self/fd` targets,
///    symlink targets in `/dev` and `paths`): the plugin's rootfs → `<rootfs>`, its
///    propagated-mount dir → `<propagated-mount>`, its runtime dir → `<runtime-dir>`, the bind
///    mount's source → `<bind-source>`, the test dir → `<test-dir>`. Each is matched as an
///    absolute path *and* as mountinfo's `root` shows it, relative to the filesystem holding it
///    (a runtime dir on the tmpfs at `/run/docker/plugins` is `/<id>` there). Why: each daemon
///    lays its plugins out in its own dirs.
/// 2. **Cgroup paths**: each `/proc/self/cgroup` line becomes `cgroup <controllers>` =
///    `<host's>` if the path is the test's own for those controllers, else `<own>`; the `root`
///    of a `cgroup`/`cgroup2` mount that is one of the plugin's own cgroup paths becomes
///    `<own-cgroup>`. Why: where a plugin's cgroup lives is each daemon's choice; *whether* the
///    plugin has its own cgroup in each hierarchy is what must match.
/// 3. **Peer groups**: N in `shared:N`, `master:N`, `propagate_from:N` becomes
///    `host <mount point>` if a host mount is in that group (its mount point by rule 1, a
///    placeholder preferred, e.g. `host <propagated-mount>`), else `own` on the first sandbox mount (in the order of rule 4)
///    that is `shared:N` and `=<that mount point>` on the others, else `unknown`. Why: N is a
///    global counter; whether a mount is shared or a slave, which mounts share a group, and which
///    host mounts a sandbox mount propagates to or from are what must match. Labels name mounts,
///    not positions, so one extra shared mount does not relabel all the others.
/// 4. **Mount ids, parent ids, device numbers** are dropped and mounts are sorted by mount point
///    (stably: stacked mounts keep their order; the second is `mount <path> #2`). Why: ids and
///    anonymous device numbers are counters, and the order of unrelated mounts is the order a
///    runtime happened to make them in.
/// 5. **Namespaces**: the inode numbers become one key, `ns shared with host`, listing the
///    namespaces whose inode equals the test's own (plus `ns missing`). Why: inode numbers are
///    per boot; sharing is the property.
/// 6. **Hostname**: the host's own → `<host>`. Why: it is the machine's name.
/// 7. **Network interfaces**: `lo` and interfaces the host does not have keep their name and
///    flags (`net <name>`); the host's other interfaces (visible with host networking) are
///    counted in `net host interfaces` as `k of n`. Why: their names and flags are the machine's.
/// 8. **Kernel object ids** in fd targets (`pipe:[N]`, `socket:[N]`, `anon_inode:[N]`) →
///    `pipe:[…]` etc. Why: inode numbers.
/// 9. Everything else is kept verbatim: `status <field>` (caps as hex), `pid`, `args`, `cwd`,
///    `env <NAME>` plus `env order`, `nofile`, `oom_score_adj`, `dev <name>` (`<type> <rdev>
///    <mode> <uid:gid>` or `l -> <target>`), `check <name>`, `path <path>`, `root entries`,
///    `runtime dir entries`, `fd <n>`.
pub(crate) fn normalise(report: &Value, host: &HostView, paths: &PluginPaths) -> Flat {
    let mut flat = Flat::new();
    let subs = paths.substitutions(Some(host));
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();

    // 9. Verbatim (status fields, process facts, checks, paths).
    for (k, v) in report["status"].as_object().into_iter().flatten() {
        flat.insert(format!("status {k}"), s(v));
    }
    for key in ["pid", "cwd", "nofile", "oom_score_adj"] {
        if let Some(v) = report.get(key) {
            flat.insert(
                key.into(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            );
        }
    }
    if let Some(args) = report["args"].as_array() {
        let args: Vec<String> = args.iter().map(s).collect();
        flat.insert("args".into(), args.join(" "));
    }
    if let Some(env) = report["env"].as_array() {
        let mut order = Vec::new();
        for var in env.iter().map(s) {
            let (k, v) = var.split_once('=').unwrap_or((&var, ""));
            flat.insert(format!("env {k}"), v.to_owned());
            order.push(k.to_owned());
        }
        flat.insert("env order".into(), order.join(" "));
    }
    for (k, v) in report["checks"].as_object().into_iter().flatten() {
        flat.insert(format!("check {k}"), s(v));
    }
    for (k, v) in report["paths"].as_object().into_iter().flatten() {
        flat.insert(format!("path {k}"), subst_link(&s(v), &subs));
    }
    for (key, field) in [
        ("root entries", "root_entries"),
        ("runtime dir entries", "runtime_dir_entries"),
    ] {
        if let Some(list) = report[field].as_array() {
            flat.insert(key.into(), list.iter().map(s).collect::<Vec<_>>().join(" "));
        }
    }
    for e in report["dev"].as_array().into_iter().flatten() {
        let value = if e["type"] == "l" {
            format!("l -> {}", subst_with(&s(&e["target"]), &subs))
        } else {
            let rdev = e["rdev"]
                .as_str()
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            format!(
                "{}{rdev} {} {}",
                s(&e["type"]),
                s(&e["mode"]),
                s(&e["owner"])
            )
        };
        flat.insert(format!("dev {}", s(&e["name"])), value);
    }
    // 8. fd targets.
    for e in report["fds"].as_array().into_iter().flatten() {
        let target = subst_with(&kernel_ids(&s(&e["target"])), &subs);
        flat.insert(format!("fd {}", e["fd"]), target);
    }
    // 6. Hostname.
    if let Some(h) = report["hostname"].as_str() {
        let h = if h == host.hostname { "<host>" } else { h };
        flat.insert("hostname".into(), h.to_owned());
    }
    // 5. Namespaces.
    if let Some(ns) = report["ns"].as_object() {
        let shared: Vec<&str> = NAMESPACES
            .iter()
            .copied()
            .filter(|n| {
                ns.get(*n)
                    .and_then(Value::as_u64)
                    .is_some_and(|i| host.ns.get(*n) == Some(&i))
            })
            .collect();
        flat.insert("ns shared with host".into(), shared.join(" "));
        let missing: Vec<&str> = NAMESPACES
            .iter()
            .copied()
            .filter(|n| ns.get(*n).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            flat.insert("ns missing".into(), missing.join(" "));
        }
    }
    // 7. Network interfaces.
    if let Some(net) = report["net"].as_array() {
        let host_other: BTreeSet<&String> = host.ifaces.iter().filter(|n| *n != "lo").collect();
        let mut seen_host = 0;
        for e in net {
            let name = s(&e["name"]);
            if name != "lo" && host_other.contains(&name) {
                seen_host += 1;
            } else {
                flat.insert(format!("net {name}"), s(&e["flags"]));
            }
        }
        if seen_host > 0 {
            flat.insert(
                "net host interfaces".into(),
                format!("{seen_host} of {}", host_other.len()),
            );
        }
    }
    // 2. Cgroup lines.
    let mut own_cgroups = BTreeSet::new();
    for line in report["cgroup"].as_array().into_iter().flatten() {
        let Some((controllers, path)) = cgroup_line(line.as_str().unwrap_or("")) else {
            continue;
        };
        let value = if host.cgroups.get(controllers).is_some_and(|h| h == path) {
            "<host's>"
        } else {
            own_cgroups.insert(path.to_owned());
            "<own>"
        };
        let name = if controllers.is_empty() {
            "(unified)"
        } else {
            controllers
        };
        flat.insert(format!("cgroup {name}"), value.to_owned());
    }
    // 1-4. Mounts.
    let mut mounts: Vec<MountLine> = report["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(mount_from_json)
        .collect();
    for m in &mut mounts {
        m.mount_point = subst_with(&m.mount_point, &subs);
        m.source = subst_with(&m.source, &subs);
        m.root = if matches!(m.fstype.as_str(), "cgroup" | "cgroup2")
            && m.root != "/"
            && own_cgroups.contains(&m.root)
        {
            "<own-cgroup>".to_owned()
        } else {
            subst_with(&m.root, &subs)
        };
    }
    mounts.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    let peers = PeerLabels::new(host, &mounts, &subs);
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mounts {
        let optional: Vec<String> = m
            .optional
            .iter()
            .map(|o| peers.relabel(o, &m.mount_point))
            .collect();
        let n = count.entry(m.mount_point.clone()).or_insert(0);
        *n += 1;
        let key = if *n == 1 {
            format!("mount {}", m.mount_point)
        } else {
            format!("mount {} #{n}", m.mount_point)
        };
        let optional = if optional.is_empty() {
            "-".to_owned()
        } else {
            optional.join(",")
        };
        flat.insert(
            key,
            format!(
                "{} {} {} {optional} super={} root={}",
                m.fstype, m.source, m.options, m.super_options, m.root
            ),
        );
    }
    flat
}

/// Rule 3: what each peer group number stands for.
struct PeerLabels {
    /// N → `host <mount point>` for the host's shared mounts.
    host: BTreeMap<String, String>,
    /// N → the first sandbox mount point that is `shared:N`.
    first: BTreeMap<String, String>,
}

impl PeerLabels {
    fn new(host: &HostView, sandbox: &[MountLine], subs: &[(String, String)]) -> PeerLabels {
        let shared = |m: &MountLine| -> Vec<String> {
            m.optional
                .iter()
                .filter_map(|o| o.strip_prefix("shared:").map(str::to_owned))
                .collect()
        };
        let mut labels = PeerLabels {
            host: BTreeMap::new(),
            first: BTreeMap::new(),
        };
        // A host group may have several members (dockerd's data root is shared, and each
        // plugin's propagated-mount dir is in its group): name it by a member that is one of
        // the plugin's own paths if there is one.
        for m in &host.mounts {
            let at = subst_with(&m.mount_point, subs);
            let own = at.starts_with('<') && at.ends_with('>');
            for n in shared(m) {
                let label = labels.host.entry(n).or_insert_with(|| format!("host {at}"));
                if own && !label.ends_with('>') {
                    *label = format!("host {at}");
                }
            }
        }
        for m in sandbox {
            for n in shared(m) {
                labels.first.entry(n).or_insert(m.mount_point.clone());
            }
        }
        labels
    }

    /// One optional field (`shared:N` and the like) of the sandbox mount at `mount_point`.
    fn relabel(&self, field: &str, mount_point: &str) -> String {
        let Some((tag, n)) = field.split_once(':') else {
            return field.to_owned();
        };
        let label = match (self.host.get(n), self.first.get(n)) {
            (Some(h), _) => h.clone(),
            (None, Some(first)) if first == mount_point => "own".to_owned(),
            (None, Some(first)) => format!("={first}"),
            (None, None) => "unknown".to_owned(),
        };
        format!("{tag}:{label}")
    }
}

/// Rule 8: `pipe:[1234]` → `pipe:[…]` (also `socket:`, `anon_inode:` and the like).
fn kernel_ids(target: &str) -> String {
    match target.split_once(":[") {
        Some((kind, rest))
            if rest.ends_with(']')
                && rest[..rest.len() - 1].bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{kind}:[…]")
        }
        _ => target.to_owned(),
    }
}

/// Rule 1 inside a `paths` value: `l -> <host path>`.
fn subst_link(v: &str, subs: &[(String, String)]) -> String {
    match v.strip_prefix("l -> ") {
        Some(target) => format!("l -> {}", subst_with(target, subs)),
        None => v.to_owned(),
    }
}

fn mount_from_json(m: &Value) -> MountLine {
    let s = |k: &str| m[k].as_str().unwrap_or("").to_owned();
    MountLine {
        mount_point: s("mount_point"),
        root: s("root"),
        options: s("options"),
        optional: m["optional"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        fstype: s("fstype"),
        source: s("source"),
        super_options: s("super_options"),
    }
}

fn mount_to_json(m: &MountLine) -> Value {
    json!({
        "mount_point": m.mount_point, "root": m.root, "options": m.options,
        "optional": m.optional, "fstype": m.fstype, "source": m.source,
        "super_options": m.super_options,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text (the probe does the same inside).
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountLine {
                mount_point: unescape(f.get(4)?),
                root: unescape(f.get(3)?),
                options: (*f.get(5)?).to_owned(),
                optional: f
                    .get(6..)
                    .unwrap_or(&[])
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                fstype: (*p.first()?).to_owned(),
                source: unescape(p.get(1)?),
                super_options: p.get(2).copied().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// One key whose normalised values differ (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Difference {
    pub key: String,
    pub dockerd: Option<String>,
    pub plugd: Option<String>,
}

pub(crate) fn diff(dockerd: &Flat, plugd: &Flat) -> Vec<Difference> {
    let keys: BTreeSet<&String> = dockerd.keys().chain(plugd.keys()).collect();
    keys.into_iter()
        .filter(|k| dockerd.get(*k) != plugd.get(*k))
        .map(|k| Difference {
            key: k.clone(),
            dockerd: dockerd.get(k).cloned(),
            plugd: plugd.get(k).cloned(),
        })
        .collect()
}

fn matches(d: &Difference, e: &Deliberate) -> bool {
    d.key == e.key && d.dockerd == e.dockerd && d.plugd == e.plugd
}

/// A readable table of differences.
pub(crate) fn render(diffs: &[Difference], expected: &[Deliberate]) -> String {
    let show = |v: &Option<String>| v.as_deref().map_or("(absent)".to_owned(), |v| v.to_owned());
    diffs
        .iter()
        .map(|d| {
            let tag = if expected.iter().any(|e| matches(d, e)) {
                "deliberate"
            } else {
                "UNEXPECTED"
            };
            format!(
                "  [{tag}] {}\n      dockerd: {}\n      plugd:   {}\n",
                d.key,
                show(&d.dockerd),
                show(&d.plugd)
            )
        })
        .collect()
}

/// The normalised reports are equal except for exactly the `expected` differences.
#[track_caller]
fn assert_parity(case: &Case, dockerd: &Flat, plugd: &Flat, expected: &[Deliberate]) {
    let diffs = diff(dockerd, plugd);
    let unexpected = diffs
        .iter()
        .filter(|d| !expected.iter().any(|e| matches(d, e)))
        .count();
    let gone: Vec<&Deliberate> = expected
        .iter()
        .filter(|e| !diffs.iter().any(|d| matches(d, e)))
        .collect();
    if unexpected > 0 || !gone.is_empty() {
        panic!(
            "parity {}: {unexpected} unexpected difference(s) between dockerd and plugd (normalised; all {} differences listed):\n{}{}",
            case.name,
            diffs.len(),
            render(&diffs, expected),
            if gone.is_empty() {
                String::new()
            } else {
                format!(
                    "deliberate differences that did not show up (update `deliberate`): {gone:#?}\n"
                )
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The captured dockerd probes

/// `tests/fixtures/probe-plugin/dockerd-observed/<case>.txt`.
fn captured_text(case: &str) -> &'static str {
    match case {
        "nocaps-netnone" => {
            include_str!("../fixtures/probe-plugin/dockerd-observed/nocaps-netnone.txt")
        }
        "sysadmin-nethost" => {
            include_str!("../fixtures/probe-plugin/dockerd-observed/sysadmin-nethost.txt")
        }
        "device-fuse" => include_str!("../fixtures/probe-plugin/dockerd-observed/device-fuse.txt"),
        "bindmount" => include_str!("../fixtures/probe-plugin/dockerd-observed/bindmount.txt"),
        "host" => include_str!("../fixtures/probe-plugin/dockerd-observed/host.txt"),
        other => panic!("no capture {other}"),
    }
}

/// The `### title` sections of a capture.
fn sections(text: &str) -> BTreeMap<String, Vec<&str>> {
    let mut out: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            current = title.to_owned();
            out.entry(current.clone()).or_default();
        } else {
            out.entry(current.clone()).or_default().push(line);
        }
    }
    out
}

/// `name name:[inode]` lines → name → inode.
fn captured_ns(lines: &[&str]) -> BTreeMap<String, u64> {
    lines
        .iter()
        .filter_map(|l| {
            let (name, link) = l.split_once(' ')?;
            let ino = link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()?;
            NAMESPACES.contains(&name).then(|| (name.to_owned(), ino))
        })
        .collect()
}

/// The captured machine's own view (`host.txt`); its interfaces are the ones the
/// `sysadmin-nethost` capture lists (`ip link`), as `host.txt` has none.
fn captured_host() -> HostView {
    let text = captured_text("host");
    let ns_lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("cgroup cgroup:"))
        .take_while(|l| !l.starts_with("dockerd pid"))
        .collect();
    HostView {
        ns: captured_ns(&ns_lines),
        hostname: "vm".into(),
        ifaces: ["lo", "ifb0", "ifb1", "eth0"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        cgroups: BTreeMap::new(),
        mounts: Vec::new(),
    }
}

/// The captured plugin's host paths: its id is in its rootfs's mountinfo `root`.
fn captured_paths(report: &Value) -> PluginPaths {
    let root = report["mounts"][0]["root"]
        .as_str()
        .expect("captured / mount");
    let rootfs = PathBuf::from(root);
    let id = rootfs
        .parent()
        .and_then(Path::file_name)
        .expect("…/plugins/<id>/rootfs")
        .to_string_lossy()
        .into_owned();
    PluginPaths::new(
        rootfs,
        Path::new(PLUGIN_SOCKET_DIR).join(id),
        None,
        Some(Path::new("/srv/harness/probes/bindsrc")),
        None,
    )
}

/// `ls -la` mode string → (type letter, octal permission bits).
fn ls_mode(perms: &str) -> (String, String) {
    let b = perms.as_bytes();
    let kind = ls_type_letter(b[0]);
    let mut mode = 0u32;
    for (i, c) in b[1..10].iter().enumerate() {
        let bit = 1 << (8 - i);
        match c {
            b'r' | b'w' | b'x' => mode |= bit,
            b's' | b't' => mode |= bit | special_bit(i),
            b'S' | b'T' => mode |= special_bit(i),
            _ => {}
        }
    }
    (kind.to_owned(), format!("{mode:04o}"))
}

fn ls_type_letter(c: u8) -> &'static str {
    match c {
        b'-' => "f",
        b'd' => "d",
        b'l' => "l",
        b'c' => "c",
        b'b' => "b",
        b'p' => "p",
        b's' => "s",
        _ => "?",
    }
}

/// setuid/setgid/sticky for the x position `i` (2, 5, 8) of an `ls` mode string.
fn special_bit(i: usize) -> u32 {
    match i {
        2 => 0o4000,
        5 => 0o2000,
        _ => 0o1000,
    }
}

/// `ip link` flag names → the `/sys/class/net/*/flags` value (`LOWER_UP` is not in it).
fn ip_link_flags(names: &str) -> String {
    let mut flags = 0u32;
    for n in names.split(',') {
        flags |= match n {
            "UP" => 0x1,
            "BROADCAST" => 0x2,
            "LOOPBACK" => 0x8,
            "POINTOPOINT" => 0x10,
            "NOARP" => 0x80,
            "PROMISC" => 0x100,
            "MULTICAST" => 0x1000,
            _ => 0,
        };
    }
    format!("{flags:#x}")
}

/// A captured `.txt` as a probe-shaped report (the parts the shell probe printed).
pub(crate) fn captured_report(case: &str) -> Value {
    let sec = sections(captured_text(case));
    let get = |t: &str| sec.get(t).cloned().unwrap_or_default();
    let mut status = serde_json::Map::new();
    for l in get("/proc/self/status (selected)") {
        if let Some((k, v)) = l.split_once(':')
            && [
                "Uid",
                "Gid",
                "Groups",
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ]
            .contains(&k)
        {
            status.insert(
                k.into(),
                json!(v.split_whitespace().collect::<Vec<_>>().join(" ")),
            );
        }
    }
    let ns: serde_json::Map<String, Value> =
        captured_ns(&get("namespaces (readlink /proc/self/ns/*)"))
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
    let dev: Vec<Value> = get("ls -la /dev")
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 9 || f[0] == "total" {
                return None;
            }
            let (kind, mode) = ls_mode(f[0]);
            // `c`/`b` lines have `major, minor` where others have a size.
            let (rdev, rest) = if kind == "c" || kind == "b" {
                (Some(format!("{}:{}", f[4].trim_end_matches(','), f[5])), &f[9..])
            } else {
                (None, &f[8..])
            };
            let name = rest.first()?;
            if *name == "." || *name == ".." {
                return None;
            }
            let mut e = json!({"name": name, "type": kind, "mode": mode, "owner": format!("{}:{}", f[2], f[3])});
            if let Some(r) = rdev {
                e["rdev"] = json!(r);
            }
            if kind == "l" {
                e["target"] = json!(rest.get(2).copied().unwrap_or(""));
            }
            Some(e)
        })
        .collect();
    let net: Vec<Value> = get("ip link")
        .iter()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _index = f.next()?;
            let name = f.next()?.trim_end_matches(':');
            let flags = f.next()?.trim_start_matches('<').trim_end_matches('>');
            Some(json!({"name": name, "flags": ip_link_flags(flags)}))
        })
        .collect();
    let env: Vec<&str> = get("env")
        .into_iter()
        // Set by the shell that ran the captured probe, not by the runtime.
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL="))
        .collect();
    let mounts: Vec<Value> = parse_mountinfo(&get("/proc/self/mountinfo").join("\n"))
        .iter()
        .map(mount_to_json)
        .collect();
    let all = captured_text(case);
    let result =
        |prefix: &str| -> Option<&str> { all.lines().find_map(|l| l.strip_prefix(prefix)) };
    let errno = |r: &str| -> String {
        if r == "OK" {
            "ok".into()
        } else if r == "absent" || r.contains("No such file") {
            "ENOENT".into()
        } else if r.contains("Read-only") {
            "EROFS".into()
        } else if r.contains("permission denied") || r.contains("Operation not permitted") {
            "EPERM".into()
        } else {
            r.into()
        }
    };
    let mut checks = serde_json::Map::new();
    let mut check = |name: &str, prefix: &str| {
        if let Some(r) = result(prefix) {
            checks.insert(name.into(), json!(errno(r)));
        }
    };
    check("dev_fuse_open", "open-read /dev/fuse: ");
    check("mount_tmpfs", "mount tmpfs: ");
    check("proc_sys_write", "proc/sys write: ");
    if let (Some(mk), Some(open)) = (result("mknod: "), result("open mknod'ed 10:229: ")) {
        checks.insert(
            "mknod_fuse_10_229".into(),
            json!(format!("mknod {}, open {}", errno(mk), errno(open))),
        );
    }
    json!({
        "status": status,
        "ns": ns,
        "hostname": get("hostname").first().copied().unwrap_or(""),
        "cgroup": get("/proc/self/cgroup"),
        "dev": dev,
        "net": net,
        "env": env,
        "mounts": mounts,
        "checks": checks,
    })
}

/// Keys the live dockerd half must share with the capture (the shell probe printed these).
const LIKE_CAPTURE: [&str; 14] = [
    "status Uid",
    "status Gid",
    "status CapInh",
    "status CapPrm",
    "status CapEff",
    "status CapBnd",
    "status CapAmb",
    "status NoNewPrivs",
    "status Seccomp",
    "ns shared with host",
    "check dev_fuse_open",
    "check mount_tmpfs",
    "check proc_sys_write",
    "check mknod_fuse_10_229",
];

/// The live dockerd report agrees with the capture: the [`LIKE_CAPTURE`] values, the same `/dev`
/// entries and interfaces, the same mount points (but `/data`, which the captured plugins did
/// not have), `PATH` and `HOME`.
#[track_caller]
fn assert_like_capture(case: &Case, live: &Flat) {
    let report = captured_report(case.name);
    let captured = normalise(&report, &captured_host(), &captured_paths(&report));
    let mut problems = Vec::new();
    for key in LIKE_CAPTURE {
        if captured.get(key) != live.get(key) {
            problems.push(format!(
                "{key}: captured {:?}, live {:?}",
                captured.get(key),
                live.get(key)
            ));
        }
    }
    let keys = |f: &Flat, prefix: &str| -> BTreeSet<String> {
        f.keys()
            .filter(|k| k.starts_with(prefix) && !k.starts_with("mount /data"))
            .cloned()
            .collect()
    };
    for prefix in ["dev ", "net ", "mount "] {
        let (c, l) = (keys(&captured, prefix), keys(live, prefix));
        if c != l {
            problems.push(format!(
                "{prefix}*: only captured {:?}, only live {:?}",
                c.difference(&l).collect::<Vec<_>>(),
                l.difference(&c).collect::<Vec<_>>()
            ));
        }
    }
    for key in ["env PATH", "env HOME"] {
        if captured.get(key) != live.get(key) {
            problems.push(format!(
                "{key}: captured {:?}, live {:?}",
                captured.get(key),
                live.get(key)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "parity {}: the live dockerd report does not match the capture:\n  {}",
        case.name,
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Unit tests of the normaliser, on the captures

fn normalised_capture(case: &str) -> Flat {
    let report = captured_report(case);
    normalise(&report, &captured_host(), &captured_paths(&report))
}

/// The keys whose normalised values differ, for compact assertions.
fn diff_keys(a: &Flat, b: &Flat) -> Vec<String> {
    diff(a, b).into_iter().map(|d| d.key).collect()
}

#[test]
fn normaliser_maps_host_values_of_a_capture() {
    let n = normalised_capture("nocaps-netnone");
    let get = |k: &str| {
        n.get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {k:?} in {n:#?}"))
    };
    // 1 + 3: the rootfs and the runtime dir by placeholder; `/` a slave, the runtime dir shared.
    assert_eq!(
        get("mount /"),
        "ext4 /dev/vda rw,relatime master:unknown super=rw,discard,resv_strict,resuid=65534,resgid=65534 root=<rootfs>"
    );
    assert_eq!(
        get("mount /run/docker/plugins"),
        "ext4 /dev/vda rw,relatime shared:own super=rw,discard,resv_strict,resuid=65534,resgid=65534 root=<runtime-dir>"
    );
    // 2: cgroup mount roots and lines (memory's path differs from the others, still `<own>`).
    assert_eq!(
        get("mount /sys/fs/cgroup/memory"),
        "cgroup cgroup ro,nosuid,nodev,noexec,relatime - super=rw,memory root=<own-cgroup>"
    );
    assert_eq!(get("cgroup memory"), "<own>");
    assert_eq!(get("cgroup (unified)"), "<own>");
    // 5, 6, 7.
    assert_eq!(get("ns shared with host"), "cgroup user time");
    assert_eq!(get("hostname"), "<host>");
    assert_eq!(get("net lo"), "0x9");
    assert!(!n.contains_key("net host interfaces"));
    // 9: verbatim.
    assert_eq!(get("status CapEff"), "00000000a80425fb");
    assert_eq!(get("dev ptmx"), "l -> pts/ptmx");
    assert_eq!(get("dev null"), "c 1:3 0666 0:0");
    assert_eq!(get("dev shm"), "d 1777 0:0");
    assert_eq!(get("check mount_tmpfs"), "EPERM");
    assert_eq!(get("check mknod_fuse_10_229"), "mknod ok, open EPERM");
    assert_eq!(get("env order"), "HOME PATH PROBE_CASE");
    // 4: masked paths bound from /dev's tmpfs keep their root (a file of that tmpfs).
    assert_eq!(
        get("mount /proc/keys"),
        "tmpfs tmpfs rw,nosuid - super=rw,size=65536k,mode=755 root=/null"
    );
    assert!(n.keys().all(|k| !k.contains("acfa6ad39e3f")), "{n:#?}");
}

#[test]
fn normaliser_leaves_only_the_settings_differences_between_captures() {
    let base = normalised_capture("nocaps-netnone");
    assert_eq!(
        diff_keys(&base, &normalised_capture("bindmount")),
        ["env PROBE_CASE", "mount /hostdir"]
    );
    assert_eq!(
        normalised_capture("bindmount")["mount /hostdir"],
        "ext4 /dev/vda rw,relatime - super=rw,discard,resv_strict,resuid=65534,resgid=65534 root=<bind-source>"
    );
    assert_eq!(
        diff_keys(&base, &normalised_capture("device-fuse")),
        [
            "check dev_fuse_open",
            "check mknod_fuse_10_229",
            "dev fuse",
            "env PROBE_CASE"
        ]
    );
    let sysadmin = normalised_capture("sysadmin-nethost");
    assert_eq!(
        diff_keys(&base, &sysadmin),
        [
            "check mount_tmpfs",
            "env PROBE_CASE",
            // With the host's network namespace, sysfs is the host's superblock (rw).
            "mount /sys",
            "net host interfaces",
            "ns shared with host",
            "status CapBnd",
            "status CapEff",
            "status CapInh",
            "status CapPrm",
        ]
    );
    assert_eq!(sysadmin["net host interfaces"], "3 of 3");
    assert_eq!(sysadmin["ns shared with host"], "net cgroup user time");
    assert_eq!(sysadmin["status CapInh"], "0000000000200000");
}

#[test]
fn normaliser_relabels_peer_groups_and_filesystem_relative_paths() {
    // The host: a tmpfs on /run/docker/plugins, a shared daemon root and, in its peer group (7),
    // the propagated-mount dir.
    let host_mountinfo = "\
20 1 254:0 / / rw,relatime - ext4 /dev/vda rw
25 20 254:0 /srv/d /srv/d rw,relatime shared:7 - ext4 /dev/vda rw
30 20 0:50 / /run/docker/plugins rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k
40 20 254:0 /srv/d/plugins/ID/propagated-mount /srv/d/plugins/ID/propagated-mount rw,relatime shared:7 - ext4 /dev/vda rw";
    let host = HostView {
        ns: BTreeMap::new(),
        hostname: "h".into(),
        ifaces: BTreeSet::new(),
        cgroups: BTreeMap::new(),
        mounts: parse_mountinfo(host_mountinfo),
    };
    let paths = PluginPaths::new(
        "/srv/d/plugins/ID/rootfs".into(),
        "/run/docker/plugins/ID".into(),
        Some("/srv/d/plugins/ID/propagated-mount".into()),
        None,
        None,
    );
    let sandbox_mountinfo = "\
100 99 254:0 /srv/d/plugins/ID/rootfs / rw,relatime shared:12 master:3 - ext4 /dev/vda rw
101 100 254:0 /srv/d/plugins/ID/propagated-mount /data rw,relatime shared:7 - ext4 /dev/vda rw
102 100 0:50 /ID /run/docker/plugins rw,relatime shared:12 - tmpfs tmpfs rw,size=65536k
103 100 0:51 / /mnt rw shared:13 - tmpfs tmpfs rw";
    let report = json!({
        "mounts": parse_mountinfo(sandbox_mountinfo).iter().map(mount_to_json).collect::<Vec<_>>(),
        "fds": [{"fd": 1, "target": "pipe:[4242]"}, {"fd": 2, "target": "/run/docker/plugins/ID/stderr"}],
    });
    let n = normalise(&report, &host, &paths);
    assert_eq!(
        n["mount /"],
        "ext4 /dev/vda rw,relatime shared:own,master:unknown super=rw root=<rootfs>"
    );
    assert_eq!(
        n["mount /data"],
        "ext4 /dev/vda rw,relatime shared:host <propagated-mount> super=rw root=<propagated-mount>"
    );
    // Same peer group as `/` → same label; the tmpfs-relative `/ID` is the runtime dir.
    assert_eq!(
        n["mount /run/docker/plugins"],
        "tmpfs tmpfs rw,relatime shared:=/ super=rw,size=65536k root=<runtime-dir>"
    );
    assert_eq!(n["mount /mnt"], "tmpfs tmpfs rw shared:own super=rw root=/");
    assert_eq!(n["fd 1"], "pipe:[…]");
    assert_eq!(n["fd 2"], "<runtime-dir>/stderr");
}

#[test]
fn parity_assertion_names_every_difference() {
    let mut a = normalised_capture("nocaps-netnone");
    let mut b = a.clone();
    b.insert("dev console".into(), "c 5:1 0600 0:0".into());
    b.insert("status Seccomp".into(), "2".into());
    a.insert("only dockerd".into(), "x".into());
    let expected = [Deliberate::new("status Seccomp", Some("0"), Some("2"))];
    let table = render(&diff(&a, &b), &expected);
    assert_eq!(
        table,
        "  [UNEXPECTED] dev console\n      dockerd: (absent)\n      plugd:   c 5:1 0600 0:0\n\
         \x20 [UNEXPECTED] only dockerd\n      dockerd: x\n      plugd:   (absent)\n\
         \x20 [deliberate] status Seccomp\n      dockerd: 0\n      plugd:   2\n"
    );
    let failed = std::panic::catch_unwind(|| assert_parity(&NOCAPS_NETNONE, &a, &b, &expected));
    assert!(failed.is_err(), "two unexpected differences must fail");
    b.remove("dev console");
    a.remove("only dockerd");
    assert_parity(&NOCAPS_NETNONE, &a, &b, &expected);
    let failed = std::panic::catch_unwind(|| assert_parity(&NOCAPS_NETNONE, &a, &a, &expected));
    assert!(
        failed.is_err(),
        "a deliberate difference that is gone must fail"
    );
}
