//! Hostile rootfs: plugin bundles whose rootfs has symlinks pointing out of the rootfs, at mount
//! destinations ([`symlinks_at_mount_destinations`]), at device paths and at files the runtime
//! creates itself ([`symlinks_at_device_paths_and_created_files`]), and at `/proc` and `/sys`
//! ([`symlinks_at_proc_and_sys`]). Every target is a file or directory under the test dir,
//! outside the rootfs.
//!
//! Under plugd, for each bundle, `enable` either fails cleanly (an exit code and a message, the
//! plugin left disabled) or succeeds with what the symlink redirects landing *inside* the
//! rootfs (the probe sees the mount, or the device, at the destination or at the symlink's target
//! resolved inside the root). In no case may a host file outside the rootfs change (the
//! targets' type, content and mtime are compared before/after), a host mount appear outside
//! plugd's own dirs (the test's mountinfo is compared before/after), or `plugd create` copy a
//! symlink's target instead of the symlink.
//!
//! A control bundle (the same probe, no symlinks) must be enabled first, so that a refusal means
//! the symlinks were refused. The same bundles also run under dockerd; what dockerd does is
//! printed, not asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{self, Bundle, Dockerd, Env, PLUGIN_SOCKET_DIR, Plugd};
use crate::parity::{
    Case, Enabled, NOCAPS_NETNONE, PROBE_IN_ROOTFS, dockerd_socket, enable_on_dockerd,
    enable_on_plugd, parse_mountinfo, plugd_id, plugd_socket, probe_binary, probe_config,
    probe_report,
};

/// What a symlink in the rootfs points at (created under the test dir before the bundle).
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A regular file with this content.
    File(&'static str),
    /// An empty directory.
    Dir,
}

/// Where a safe runtime puts what a redirected path stands for, if it does not refuse.
#[derive(Clone, Copy, Debug)]
enum Landing {
    /// A mount at this destination, or at the symlink target resolved inside the root.
    Mount(&'static str),
    /// The device node `c 10:229` at `/dev/fuse` (or at its in-root resolution).
    Fuse,
}

/// One hostile bundle.
#[derive(Clone, Copy, Debug)]
struct Hostile {
    name: &'static str,
    /// The probe configuration (network, devices, bind mount) it starts from.
    case: Case,
    /// Symlinks: path in the rootfs → a target (named by the link, created under the test dir).
    links: &'static [(&'static str, Target)],
    landings: &'static [Landing],
}

const SECRET: &str = "host file: must not change\n";

const FUSE: Case = Case {
    devices: &["/dev/fuse"],
    ..NOCAPS_NETNONE
};
const BIND: Case = Case {
    bind_mount: true,
    ..NOCAPS_NETNONE
};

#[test]
fn symlinks_at_mount_destinations() {
    harness::isolated(|env| {
        run_hostile(
            env,
            &[
                // network none: /etc/hosts is bound from the host.
                Hostile {
                    name: "etc-hosts",
                    case: NOCAPS_NETNONE,
                    links: &[("etc/hosts", Target::File(SECRET))],
                    landings: &[Landing::Mount("/etc/hosts")],
                },
                // The parent of /etc/hosts and /etc/resolv.conf, and of the files the runtime
                // creates in /etc.
                Hostile {
                    name: "etc-dir",
                    case: NOCAPS_NETNONE,
                    links: &[("etc", Target::Dir)],
                    landings: &[
                        Landing::Mount("/etc/hosts"),
                        Landing::Mount("/etc/resolv.conf"),
                    ],
                },
                // The plugin's bind mount (rbind, rw).
                Hostile {
                    name: "hostdir",
                    case: BIND,
                    links: &[("hostdir", Target::Dir)],
                    landings: &[Landing::Mount("/hostdir")],
                },
                // The propagated mount (rshared).
                Hostile {
                    name: "data",
                    case: NOCAPS_NETNONE,
                    links: &[("data", Target::Dir)],
                    landings: &[Landing::Mount("/data")],
                },
                // The runtime dir (where the plugin's socket is).
                Hostile {
                    name: "run-plugins",
                    case: NOCAPS_NETNONE,
                    links: &[("run", Target::Dir)],
                    landings: &[Landing::Mount("/run/docker/plugins")],
                },
            ],
        );
    });
}

#[test]
fn symlinks_at_device_paths_and_created_files() {
    harness::isolated(|env| {
        run_hostile(
            env,
            &[
                // Hidden by the fresh /dev tmpfs, if the runtime mounts it first.
                Hostile {
                    name: "dev-fuse",
                    case: FUSE,
                    links: &[("dev/fuse", Target::File(SECRET))],
                    landings: &[Landing::Fuse],
                },
                // The whole /dev: the tmpfs, the device nodes, /dev/pts, /dev/shm, /dev/mqueue.
                Hostile {
                    name: "dev-dir",
                    case: FUSE,
                    links: &[("dev", Target::Dir)],
                    landings: &[Landing::Mount("/dev"), Landing::Fuse],
                },
                // Files dockerd's initlayer creates in the rootfs (`/.dockerenv`, `/etc/hostname`,
                // `/etc/mtab`), and a file bind destination (`/etc/resolv.conf`).
                Hostile {
                    name: "created-files",
                    case: NOCAPS_NETNONE,
                    links: &[
                        (".dockerenv", Target::File(SECRET)),
                        ("etc/hostname", Target::File(SECRET)),
                        ("etc/mtab", Target::File(SECRET)),
                        ("etc/resolv.conf", Target::File(SECRET)),
                    ],
                    landings: &[Landing::Mount("/etc/resolv.conf")],
                },
            ],
        );
    });
}

#[test]
fn symlinks_at_proc_and_sys() {
    harness::isolated(|env| {
        run_hostile(
            env,
            &[
                Hostile {
                    name: "proc",
                    case: NOCAPS_NETNONE,
                    links: &[("proc", Target::Dir)],
                    landings: &[Landing::Mount("/proc")],
                },
                Hostile {
                    name: "sys",
                    case: NOCAPS_NETNONE,
                    links: &[("sys", Target::Dir)],
                    landings: &[Landing::Mount("/sys")],
                },
            ],
        );
    });
}

/// Runs every bundle under dockerd (printed) and plugd (asserted; all bundles run before the
/// first failure is reported).
fn run_hostile(env: &Env, bundles: &[Hostile]) {
    let d = env.dockerd();
    let p = env.plugd(&[]);
    // The same probe without hostile links must run, or a refusal below would prove nothing.
    let control = Hostile {
        name: "control",
        case: NOCAPS_NETNONE,
        links: &[],
        landings: &[Landing::Mount("/etc/hosts"), Landing::Mount("/data")],
    };
    let outcome = on_plugd(env, &p, &control);
    assert!(
        outcome.as_ref().is_ok_and(|o| o.starts_with("enabled")),
        "the control bundle (no symlinks) must be enabled by plugd: {outcome:?}"
    );
    let mut failures = Vec::new();
    for h in bundles {
        let dockerd = on_dockerd(env, &d, h);
        println!("hostile {}: dockerd (informational): {dockerd}", h.name);
        match on_plugd(env, &p, h) {
            Ok(outcome) => println!("hostile {}: plugd: {outcome}", h.name),
            Err(e) => {
                println!("hostile {}: plugd: FAILED: {e}", h.name);
                failures.push(format!("{}: {e}", h.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "hostile rootfs under plugd:\n  {}",
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// One side

/// The bundle for one side, with its targets under `outside`.
fn hostile_bundle(
    env: &Env,
    name: &str,
    h: &Hostile,
    outside: &Path,
    bind: Option<&Path>,
) -> Bundle {
    let b = env
        .bundle(name)
        .config(&probe_config(&h.case, bind))
        .copy(PROBE_IN_ROOTFS, &probe_binary(), 0o755)
        // A unique layer for dockerd, outside /etc (which may be a link here).
        .file("plugd-bundle", format!("{name}\n").as_bytes(), 0o644);
    let rootfs = b.rootfs();
    let linked = |dir: &str| h.links.iter().any(|(l, _)| Path::new(dir).starts_with(l));
    for dir in ["data", "hostdir", "tmp", "run/docker/plugins", "etc"] {
        if !linked(dir) {
            harness_mkdir(&rootfs.join(dir));
        }
    }
    if !linked("tmp") {
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod tmp");
    }
    for (link, target) in h.links {
        let at = target_path(outside, link);
        match target {
            Target::File(content) => std::fs::write(&at, content).expect("write target"),
            Target::Dir => harness_mkdir(&at),
        }
        let path = rootfs.join(link);
        if let Some(parent) = path.parent() {
            harness_mkdir(parent);
        }
        std::os::unix::fs::symlink(&at, &path)
            .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", path.display(), at.display()));
    }
    b
}

fn harness_mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

/// The host path a link's target gets: `<outside>/<link with / replaced by _>`.
fn target_path(outside: &Path, link: &str) -> PathBuf {
    outside.join(link.replace('/', "_"))
}

/// What the host looks like, for the before/after comparison.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    /// Every entry under the outside dir, plus the host files plugins bind: path → description.
    files: BTreeMap<String, String>,
    /// The test's mounts: (mount point, fstype, root).
    mounts: BTreeSet<(String, String, String)>,
}

impl HostState {
    fn read(outside: &Path) -> HostState {
        let mut files = BTreeMap::new();
        describe_tree(outside, &mut files);
        for f in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
            files.insert(f.to_owned(), describe(Path::new(f)));
        }
        let mounts =
            parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
                .into_iter()
                .map(|m| (m.mount_point, m.fstype, m.root))
                .collect();
        HostState { files, mounts }
    }

    /// What changed since `before`, except new mounts under `allowed` (the daemon's own dirs).
    fn changes(&self, before: &HostState, allowed: &[&Path]) -> Vec<String> {
        let mut out = Vec::new();
        let keys: BTreeSet<&String> = before.files.keys().chain(self.files.keys()).collect();
        for k in keys {
            let (b, a) = (before.files.get(k), self.files.get(k));
            if b != a {
                out.push(format!("host file {k}: {b:?} -> {a:?}"));
            }
        }
        for m in self.mounts.difference(&before.mounts) {
            if !allowed.iter().any(|a| Path::new(&m.0).starts_with(a)) {
                out.push(format!("new host mount: {} ({}, root {})", m.0, m.1, m.2));
            }
        }
        for m in before.mounts.difference(&self.mounts) {
            if !allowed.iter().any(|a| Path::new(&m.0).starts_with(a)) {
                out.push(format!("host mount gone: {} ({})", m.0, m.1));
            }
        }
        out
    }
}

/// Type, size, mtime and content (files) or target (links) of one path.
fn describe(path: &Path) -> String {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return format!("error {e}"),
    };
    let ft = m.file_type();
    if ft.is_symlink() {
        format!("l -> {:?}", std::fs::read_link(path).ok())
    } else if ft.is_file() {
        let content = std::fs::read(path).unwrap_or_default();
        format!(
            "f {} bytes, mtime {}.{}, {:?}",
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            String::from_utf8_lossy(&content)
        )
    } else if ft.is_char_device() || ft.is_block_device() {
        format!("device {:#x}", m.rdev())
    } else if ft.is_dir() {
        format!(
            "d {:o} mtime {}.{}",
            m.mode() & 0o7777,
            m.mtime(),
            m.mtime_nsec()
        )
    } else {
        "other".to_owned()
    }
}

fn describe_tree(dir: &Path, out: &mut BTreeMap<String, String>) {
    out.insert(dir.display().to_string(), describe(dir));
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            describe_tree(&path, out);
        } else {
            out.insert(path.display().to_string(), describe(&path));
        }
    }
}

/// Where each [`Landing`] of `h` is, by the probe's report: `Ok(where)` per landing, or the
/// problems. With `rootfs` (the plugin's rootfs on the host), a mount at a link's target must also
/// exist as a path inside that rootfs: the proof, from outside, that it landed inside.
fn check_landings(
    h: &Hostile,
    outside: &Path,
    report: &Value,
    rootfs: Option<&Path>,
) -> Result<Vec<String>, Vec<String>> {
    let mount_points: BTreeSet<&str> = report["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["mount_point"].as_str())
        .collect();
    // `dest` or, if a link covers it, the link's target with the rest of `dest` appended.
    let candidates = |dest: &str| -> Vec<String> {
        let mut c = vec![dest.to_owned()];
        for (link, _) in h.links {
            if let Ok(rest) = Path::new(dest).strip_prefix(format!("/{link}")) {
                let t = target_path(outside, link);
                // (`join("")` would add a trailing slash.)
                let t = if rest.as_os_str().is_empty() {
                    t
                } else {
                    t.join(rest)
                };
                c.push(t.display().to_string());
            }
        }
        c
    };
    let (mut landed, mut problems) = (Vec::new(), Vec::new());
    for l in h.landings {
        match l {
            Landing::Mount(dest) => {
                let c = candidates(dest);
                match c.iter().find(|p| mount_points.contains(p.as_str())) {
                    None => problems.push(format!(
                        "enabled, but no mount at any of {c:?} inside the sandbox (mounts: {mount_points:?})"
                    )),
                    Some(at) => {
                        let on_host = rootfs.map(|r| r.join(at.trim_start_matches('/')));
                        if on_host.as_ref().is_some_and(|p| p.symlink_metadata().is_err()) {
                            problems.push(format!(
                                "{dest} is mounted at {at} inside the sandbox, but {} does not exist on the host",
                                on_host.unwrap_or_default().display()
                            ));
                        }
                        landed.push(format!("{dest} at {at}"));
                    }
                }
            }
            Landing::Fuse => {
                if report["paths"]["/dev/fuse"] == "c 10:229" {
                    landed.push("/dev/fuse is c 10:229".to_owned());
                } else {
                    problems.push(format!(
                        "enabled, but /dev/fuse is {} inside the sandbox",
                        report["paths"]["/dev/fuse"]
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(landed)
    } else {
        Err(problems)
    }
}

/// The plugd side: asserted. `Ok` describes what happened.
fn on_plugd(env: &Env, p: &Plugd, h: &Hostile) -> Result<String, String> {
    let name = format!("phostile-{}", h.name);
    let outside = env.path(format!("o-p-{}", h.name));
    harness_mkdir(&outside);
    let bind = h
        .case
        .bind_mount
        .then(|| crate::parity::mkdir(&env.path(format!("bind-p-{}", h.name))));
    let bundle = hostile_bundle(env, &name, h, &outside, bind.as_deref());
    let before = HostState::read(&outside);
    let enabled = enable_on_plugd(env, p, &name, bundle.path());
    let mut problems = Vec::new();
    let outcome = match &enabled {
        Enabled::Yes(id) => {
            let report = probe_report(&plugd_socket(&name));
            let rootfs = p.data_root().join("plugins").join(id).join("rootfs");
            let landed = check_landings(h, &outside, &report, Some(&rootfs)).unwrap_or_else(|e| {
                problems.extend(e);
                Vec::new()
            });
            if h.case.bind_mount && report["checks"]["hostdir_write"] != "ok" {
                problems.push(format!(
                    "the probe could not write to /hostdir: {}",
                    report["checks"]["hostdir_write"]
                ));
            }
            format!("enabled; landed inside the rootfs: {}", landed.join(", "))
        }
        Enabled::No(out) => {
            if out.code.is_none() || out.stderr.trim().is_empty() {
                problems.push(format!(
                    "enable did not fail cleanly (an exit code and a message):\n{out}"
                ));
            }
            let first = out.stderr.lines().next().unwrap_or("").to_owned();
            format!("refused: {first}")
        }
    };
    let allowed = [p.data_root(), p.exec_root(), Path::new(PLUGIN_SOCKET_DIR)];
    problems.extend(HostState::read(&outside).changes(&before, &allowed));
    // The stored rootfs keeps each link as a link (create must not copy what it points at) —
    // except at dockerd's initlayer paths, which an enable replaces by real files and dirs (as
    // dockerd does, fd-relative: the link is removed, never followed); `/etc/mtab` becomes the
    // link `/proc/mounts`.
    const INITLAYER: [&str; 7] = [
        "etc/hosts",
        "etc",
        "dev",
        ".dockerenv",
        "etc/hostname",
        "etc/mtab",
        "etc/resolv.conf",
    ];
    if let Some(id) = created_id(env, p, &name) {
        let rootfs = p.data_root().join("plugins").join(&id).join("rootfs");
        for (link, _) in h.links {
            let stored = std::fs::read_link(rootfs.join(link));
            let outside_target = target_path(&outside, link);
            if matches!(enabled, Enabled::Yes(_)) && INITLAYER.contains(link) {
                let ok = match stored.as_deref() {
                    Err(_) => rootfs.join(link).exists(),
                    Ok(t) => *link == "etc/mtab" && t == Path::new("/proc/mounts"),
                };
                if !ok || stored.as_deref().ok() == Some(outside_target.as_path()) {
                    problems.push(format!(
                        "after enable, {link} in plugd's rootfs is {stored:?}, not dockerd's initlayer file"
                    ));
                }
                continue;
            }
            if stored.as_deref().ok() != Some(outside_target.as_path()) {
                problems.push(format!(
                    "plugd's stored rootfs has {link} as {stored:?}, not the bundle's symlink"
                ));
            }
        }
        if matches!(enabled, Enabled::No(_)) {
            let inspected = env.plugd_cli(p, ["inspect", &name]).assert_ok().json();
            if inspected[0]["Enabled"] != Value::Bool(false) {
                problems.push(format!(
                    "enable failed but the plugin is not disabled: {}",
                    inspected[0]["Enabled"]
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(outcome)
    } else {
        Err(format!("{outcome}; but:\n    {}", problems.join("\n    ")))
    }
}

/// The plugin's id if `plugd create` succeeded.
fn created_id(env: &Env, p: &Plugd, name: &str) -> Option<String> {
    env.plugd_cli(p, ["inspect", name])
        .success()
        .then(|| plugd_id(env, p, name))
}

/// The dockerd side: what happened, as text (never fails the test).
fn on_dockerd(env: &Env, d: &Dockerd, h: &Hostile) -> String {
    let name = format!("dhostile-{}", h.name);
    let outside = env.path(format!("o-d-{}", h.name));
    harness_mkdir(&outside);
    let bind = h
        .case
        .bind_mount
        .then(|| crate::parity::mkdir(&env.path(format!("bind-d-{}", h.name))));
    let bundle = hostile_bundle(env, &name, h, &outside, bind.as_deref());
    let before = HostState::read(&outside);
    let mut notes = Vec::new();
    match enable_on_dockerd(env, d, &name, bundle.path()) {
        Enabled::Yes(id) => {
            let report = probe_report(&dockerd_socket(&id));
            let rootfs = d.plugin_dir(&id).join("rootfs");
            for (link, _) in h.links {
                notes.push(format!(
                    "its rootfs has {link} as {}",
                    describe(&rootfs.join(link))
                ));
            }
            notes.push(match check_landings(h, &outside, &report, Some(&rootfs)) {
                Ok(landed) => format!("enabled; landed inside the rootfs: {}", landed.join(", ")),
                Err(problems) => format!("enabled; {}", problems.join("; ")),
            });
        }
        Enabled::No(out) => notes.push(format!(
            "refused: {}",
            out.stderr.lines().next().unwrap_or("")
        )),
    }
    let allowed = [
        d.data_root(),
        d.exec_root(),
        Path::new(PLUGIN_SOCKET_DIR),
        Path::new("/run/containerd"),
    ];
    let changes = HostState::read(&outside).changes(&before, &allowed);
    notes.push(if changes.is_empty() {
        "host unchanged".to_owned()
    } else {
        format!("HOST CHANGED: {}", changes.join("; "))
    });
    notes.join("; ")
}
