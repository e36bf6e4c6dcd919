//! Root integration tests of `NativeRuntime::start_probe`: the real `plugd-probe` in real
//! sandboxes built from a few declarations, asked `Probe.Check` as plugd's check asks it; the
//! attempts must show what each declaration (and each native test fault) enforces.
//!
//! Needs what the sandbox tests need (see `tests/sandbox`), plus the probe:
//! `cargo build -p plugd-probe --target x86_64-unknown-linux-musl` (or `$PLUGD_PROBE_BINARY`).

#[allow(dead_code)]
#[path = "../sandbox/harness.rs"]
mod harness;

use bytes::Bytes;
use harness::{Env, block_on, init_binary, random_hex};
use plugd_core::check::fault::TestFault;
use plugd_core::check::probe::{
    CHECK_METHOD, Host, PROBE_SOCKET, Plan, PlanMount, Report, leak_name, propagated_name,
};
use plugd_core::{Instance, PluginSpec, Runtime};
use plugd_native::NativeRuntime;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

/// moby's 14 default capabilities as a `/proc/<pid>/status` mask.
const DEFAULT_CAPS: &str = "00000000a80425fb";
/// The same with CAP_SYS_ADMIN (bit 21).
const DEFAULT_CAPS_AND_SYS_ADMIN: &str = "00000000a82425fb";

fn probe_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PLUGD_PROBE_BINARY") {
        return PathBuf::from(p);
    }
    let path = harness::target_dir().join("x86_64-unknown-linux-musl/debug/plugd-probe");
    assert!(
        path.is_file(),
        "plugd-probe not found at {}: build it with `cargo build -p plugd-probe --target x86_64-unknown-linux-musl`",
        path.display()
    );
    path
}

fn runtime(faults: Vec<TestFault>) -> NativeRuntime {
    NativeRuntime::builder()
        .init_binary(init_binary())
        .probe_binary(probe_binary())
        .test_faults(faults)
        .build()
        .expect("native runtime builds")
}

/// The static fixture's declaration with `edit`, as the manager makes a check's spec of it: an id
/// `check-<16 hex>` and the probe's socket.
fn check_spec(env: &Env, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PluginSpec {
    let mut spec = env.static_plugin(tag, edit);
    spec.id = format!("check-{}", &random_hex()[..16]);
    spec.config.interface.socket = PROBE_SOCKET.to_string();
    spec
}

/// What plugd's side of a check holds: the canary file and a loopback listener writing the nonce.
struct HostSide {
    plan: Plan,
}

impl HostSide {
    fn new(env: &Env, spec: &PluginSpec) -> Self {
        let nonce = random_hex()[..16].to_string();
        let canary = env.dir().join(format!("canary-{nonce}"));
        std::fs::write(&canary, &nonce).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let n = nonce.clone();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let _ = s.write_all(n.as_bytes());
            }
        });
        let effective = spec.effective();
        let mounts = effective
            .mounts
            .iter()
            .map(|m| PlanMount {
                destination: m.destination.clone(),
                directory: m
                    .source
                    .as_ref()
                    .is_none_or(|s| std::path::Path::new(s).is_dir()),
                writable: !m.read_only(),
            })
            .collect();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        HostSide {
            plan: Plan {
                nonce,
                host: Host {
                    loopback_port: port,
                    canary: canary.display().to_string(),
                    pid: std::process::id(),
                    comm: comm.trim().to_string(),
                },
                mounts,
                propagated_mount: (!spec.config.propagated_mount.is_empty())
                    .then(|| spec.config.propagated_mount.clone()),
                devices: effective
                    .devices
                    .iter()
                    .filter_map(|d| d.path.clone())
                    .collect(),
                capabilities: plugd_core::config::CAPABILITIES
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            },
        }
    }
}

/// The attempts of one report by id (each id once).
struct Attempts(BTreeMap<String, (bool, String)>);

impl Attempts {
    fn of(report: Report) -> Self {
        let mut map = BTreeMap::new();
        for a in report.attempts {
            assert!(
                map.insert(a.id.clone(), (a.ok, a.detail)).is_none(),
                "{} twice",
                a.id
            );
        }
        Attempts(map)
    }

    fn get(&self, id: &str) -> &(bool, String) {
        self.0
            .get(id)
            .unwrap_or_else(|| panic!("no attempt {id} in {:#?}", self.0))
    }

    fn ok(&self, id: &str) -> bool {
        self.get(id).0
    }

    fn detail(&self, id: &str) -> &str {
        &self.get(id).1
    }

    fn expect(&self, id: &str, ok: bool) {
        assert_eq!(self.ok(id), ok, "{id}: {:?}", self.get(id));
    }
}

/// Starts the probe for `spec`, runs the check, and returns the attempts and the instance.
async fn check(
    rt: &NativeRuntime,
    spec: &PluginSpec,
    plan: &Plan,
) -> (Attempts, std::sync::Arc<dyn Instance>) {
    let instance = match rt.start_probe(spec).await {
        Ok(i) => i,
        Err(e) => panic!("start_probe: {e}"),
    };
    let reply = instance
        .call(CHECK_METHOD, Bytes::from(serde_json::to_vec(plan).unwrap()))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let report: Report = serde_json::from_slice(&reply.body).expect("a strict report");
    assert!(report.probe.starts_with("native "), "{}", report.probe);
    for a in &report.attempts {
        println!("attempt {} {} {}", a.id, a.ok, a.detail);
    }
    (Attempts::of(report), instance)
}

/// No cgroup named after the check is left, nor anything mounted under its propagated dir.
fn assert_released(spec: &PluginSpec) {
    let name = format!("plugd-{}", spec.id);
    let cgroup_left = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            post.starts_with("cgroup")
                .then(|| pre.split(' ').nth(4).map(str::to_owned))?
        })
        .any(|mp| walk_has(std::path::Path::new(&mp), &name, 4));
    assert!(!cgroup_left, "cgroup {name} left");
    let dir = spec.propagated_mount.as_ref().unwrap();
    assert!(
        harness::mounts_under(dir).is_empty(),
        "{:?}",
        harness::mounts_under(dir)
    );
}

fn walk_has(dir: &std::path::Path, name: &str, depth: usize) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().filter(|e| e.path().is_dir()).any(|e| {
        e.file_name().to_string_lossy() == name
            || (depth > 0 && walk_has(&e.path(), name, depth - 1))
    })
}

#[test]
fn the_default_sandbox_as_the_probe_sees_it() {
    harness::isolated(|env| {
        harness::init_logging();
        let spec = check_spec(env, "default", |_| {});
        let host = HostSide::new(env, &spec);
        let rt = runtime(Vec::new());
        block_on(async {
            let (a, instance) = check(&rt, &spec, &host.plan).await;
            assert_eq!(a.detail("status:CapEff"), DEFAULT_CAPS);
            assert_eq!(a.detail("status:CapBnd"), DEFAULT_CAPS);
            assert_eq!(a.detail("status:CapAmb"), "0000000000000000");
            for (cap, ok) in [
                ("CAP_CHOWN", true),
                ("CAP_DAC_OVERRIDE", true),
                ("CAP_FOWNER", true),
                ("CAP_MKNOD", true),
                ("CAP_NET_RAW", true),
                ("CAP_NET_BIND_SERVICE", true),
                ("CAP_SETUID", true),
                ("CAP_SETGID", true),
                ("CAP_SYS_CHROOT", true),
                ("CAP_SETPCAP", true),
                ("CAP_NET_ADMIN", false),
                ("CAP_SYS_ADMIN", false),
            ] {
                a.expect(&format!("op:{cap}"), ok);
            }
            // Network "none": its own namespace, only lo, the host's loopback unreachable.
            assert_eq!(a.detail("net:interfaces"), "lo");
            a.expect("net:host-loopback", false);
            a.expect("net:bind", true);
            for id in ["escape:absolute", "escape:dotdot", "escape:symlink"] {
                a.expect(id, false);
            }
            a.expect("device:mknod:c:10:229", false);
            a.expect("device:mknod:b:7:0", false);
            assert!(
                a.detail("device:mknod:c:10:229").starts_with("open: EPERM"),
                "{:?}",
                a.get("device:mknod:c:10:229")
            );
            a.expect("proc:host-pid", false);
            a.expect("propagated:write", true);
            assert!(
                !a.0.contains_key("propagated:mount"),
                "no CAP_SYS_ADMIN, no mount attempt"
            );
            let written = spec
                .propagated_mount
                .as_ref()
                .unwrap()
                .join(propagated_name(&host.plan.nonce));
            assert_eq!(std::fs::read_to_string(&written).unwrap(), host.plan.nonce);
            assert_eq!(a.detail("args"), r#"["/static-plugin"]"#);
            assert_eq!(a.detail("cwd"), "/");
            assert!(
                a.detail("env").contains("DATA_DIR=/data"),
                "{}",
                a.detail("env")
            );
            a.expect("import:engine-metrics", false);
            // dockerd's read-only /proc/sys and /sys.
            for id in ["sandbox:proc-sys-write", "sandbox:sys-write"] {
                assert_eq!(a.get(id), &(false, "EROFS".to_string()), "{id}");
            }
            assert!(
                !a.0.keys().any(|k| k.starts_with("leak:")),
                "no CAP_SYS_ADMIN, no leak attempt"
            );
            assert!(
                !a.0.values().any(|(_, d)| d.starts_with("untried: ")),
                "everything was tried: {:#?}",
                a.0
            );
            let host_ns = std::fs::metadata("/proc/self/ns/net").unwrap();
            assert_ne!(a.detail("ns:net"), host_ns.ino().to_string());

            // The form dockerd's column uses: the check as a volume, its report in the Status.
            let mut plan = host.plan.clone();
            plan.nonce = random_hex()[..16].to_string();
            let create = serde_json::json!({
                "Name": "c1",
                "Opts": {"plan": serde_json::to_string(&plan).unwrap()}
            });
            let reply = instance
                .call("VolumeDriver.Create", Bytes::from(create.to_string()))
                .await;
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(
                (reply.status, &body["Err"]),
                (200, &serde_json::json!("")),
                "{body}"
            );
            let reply = instance
                .call("VolumeDriver.Get", Bytes::from(r#"{"Name":"c1"}"#))
                .await;
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            let report: Report =
                serde_json::from_value(body["Volume"]["Status"]["plugd-check"].clone()).unwrap();
            let again = Attempts::of(report);
            assert_eq!(again.detail("status:CapEff"), DEFAULT_CAPS);
            again.expect("propagated:write", true);

            instance.stop(Duration::from_secs(5)).await;
            assert_released(&spec);
        });
    });
}

#[test]
fn sys_admin_a_read_only_bind_and_a_device() {
    harness::isolated(|env| {
        harness::init_logging();
        if !std::path::Path::new("/dev/fuse").exists() {
            println!("skipped: no /dev/fuse on this host");
            return;
        }
        let src = env.dir().join("ro-src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("b"), "").unwrap();
        std::fs::write(src.join("a"), "").unwrap();
        let source = src.display().to_string();
        let rw_src = env.dir().join("rw-src");
        std::fs::create_dir_all(&rw_src).unwrap();
        let rw_source = rw_src.display().to_string();
        let spec = check_spec(env, "admin", |c| {
            c["linux"] = serde_json::json!({
                "capabilities": ["CAP_SYS_ADMIN"],
                "devices": [{"path": "/dev/fuse"}]
            });
            c["mounts"] = serde_json::json!([{
                "source": source, "destination": "/ro", "type": "bind", "options": ["rbind", "ro"]
            }, {
                "source": rw_source, "destination": "/rw", "type": "bind", "options": ["rbind"]
            }]);
        });
        let host = HostSide::new(env, &spec);
        // A file by the probe's name is already in the rw mount (a plugin's leftover, say).
        let taken = rw_src.join(format!(".plugd-check-{}", host.plan.nonce));
        std::fs::write(&taken, "left").unwrap();
        let rt = runtime(Vec::new());
        block_on(async {
            let (a, instance) = check(&rt, &spec, &host.plan).await;
            a.expect("mount:/rw:write", false);
            assert!(
                a.detail("mount:/rw:write").starts_with("untried: "),
                "a name already taken is no denial: {:?}",
                a.get("mount:/rw:write")
            );
            assert_eq!(std::fs::read_to_string(&taken).unwrap(), "left");
            a.expect("mount:/rw:read", true);
            assert_eq!(a.detail("status:CapEff"), DEFAULT_CAPS_AND_SYS_ADMIN);
            a.expect("op:CAP_SYS_ADMIN", true);
            a.expect("mount:/ro:read", true);
            a.expect("mount:/ro:write", false);
            assert_eq!(a.detail("mount:/ro:write"), "EROFS");
            assert_eq!(a.detail("mount:/ro:identity"), "a/b");
            a.expect("escape:mount:/ro", false);
            a.expect("escape:absolute", false);
            a.expect("device:/dev/fuse", true);
            // Declared: the cgroup lets the fuse node open wherever it is made.
            a.expect("device:mknod:c:10:229", true);
            a.expect("device:mknod:b:7:0", false);
            a.expect("propagated:mount", true);
            // The binds are their sources: same device and inode as the host's stat.
            for (dest, src) in [("/ro", &src), ("/rw", &rw_src)] {
                let st = std::fs::metadata(src).unwrap();
                let want = format!(
                    "{}:{}:{}",
                    libc::major(st.dev()),
                    libc::minor(st.dev()),
                    st.ino()
                );
                let id = format!("mount:{dest}:inode");
                assert_eq!(a.get(&id), &(true, want), "{id}");
            }
            let fuse = std::fs::metadata("/dev/fuse").unwrap().rdev();
            assert_eq!(
                a.detail("device:/dev/fuse"),
                format!("c {}:{}", libc::major(fuse), libc::minor(fuse))
            );
            // CAP_SYS_ADMIN does not make /proc/sys or /sys writable.
            for id in ["sandbox:proc-sys-write", "sandbox:sys-write"] {
                assert_eq!(a.get(id), &(false, "EROFS".to_string()), "{id}");
            }
            // Leak mounts: tried in / and the rw bind (not the ro one), made inside, and the
            // host does not see them (a bind's mounts are not shared back).
            let leak = leak_name(&host.plan.nonce);
            assert_eq!(
                a.get("leak:/rw"),
                &(true, format!("/rw/{leak}")),
                "{:?}",
                a.get("leak:/rw")
            );
            assert_eq!(a.get("leak:/"), &(true, format!("/{leak}")));
            assert!(!a.0.contains_key("leak:/ro"));
            assert!(rw_src.join(&leak).is_dir(), "the mkdir reached the source");
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(
                !mountinfo.contains(&leak),
                "a leak mount reached the host: {mountinfo}"
            );
            let dir = spec.propagated_mount.as_ref().unwrap();
            let mounted = dir
                .join(format!("{}.mnt", propagated_name(&host.plan.nonce)))
                .join("nonce");
            assert_eq!(
                std::fs::read_to_string(&mounted).unwrap(),
                host.plan.nonce,
                "the probe's mount reached the host"
            );
            instance.stop(Duration::from_secs(5)).await;
            assert_released(&spec);
        });
    });
}

#[test]
fn the_bounding_cap_fault_leaves_sys_admin_to_the_probe() {
    harness::isolated(|env| {
        harness::init_logging();
        let spec = check_spec(env, "fault-bnd", |_| {});
        let host = HostSide::new(env, &spec);
        let rt = runtime(vec![TestFault::NativeBoundingCap]);
        block_on(async {
            let (a, instance) = check(&rt, &spec, &host.plan).await;
            assert_eq!(a.detail("status:CapBnd"), DEFAULT_CAPS_AND_SYS_ADMIN);
            assert_eq!(a.detail("status:CapInh"), "0000000000000000");
            // The sandbox's process runs as uid 0, and execve gives a root process every
            // capability of its bounding set: one left there is as good as granted.
            assert_eq!(a.detail("status:CapEff"), DEFAULT_CAPS_AND_SYS_ADMIN);
            a.expect("op:CAP_SYS_ADMIN", true);
            instance.stop(Duration::from_secs(5)).await;
            assert_released(&spec);
        });
    });
}

#[test]
fn the_device_rule_fault_denies_the_declared_device() {
    harness::isolated(|env| {
        harness::init_logging();
        if !std::path::Path::new("/dev/fuse").exists() {
            println!("skipped: no /dev/fuse on this host");
            return;
        }
        let spec = check_spec(env, "fault-dev", |c| {
            c["linux"] = serde_json::json!({"devices": [{"path": "/dev/fuse"}]});
        });
        let host = HostSide::new(env, &spec);
        let rt = runtime(vec![TestFault::NativeDeviceRule]);
        block_on(async {
            let (a, instance) = check(&rt, &spec, &host.plan).await;
            a.expect("device:/dev/fuse", false);
            assert_eq!(a.detail("device:/dev/fuse"), "EPERM");
            a.expect("device:mknod:c:10:229", false);
            instance.stop(Duration::from_secs(5)).await;
            assert_released(&spec);
        });
    });
}
