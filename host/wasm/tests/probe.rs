//! `Runtime::start_probe` with the real probe component (guest-examples/probe): what a wasm
//! plugin's grants let the probe do, attempt by attempt.
//!
//! The guests must be built first (see tests/guests.rs; these tests fail, never skip, without
//! `plugd_probe.wasm`). Like plugd, they run as root: every preopen is a mount clone.

use bytes::Bytes;
use plugd_core::check::fault::TestFault;
use plugd_core::check::probe::{self, Attempt, CHECK_METHOD, Host, Plan, PlanMount, Report};
use plugd_core::config::{Env, Interface, Mount, Network, Settings};
use plugd_core::{Instance, PluginConfig, PluginSpec, Runtime, RuntimeError};
use plugd_wasm::WasmRuntime;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PROBE: &str = plugd_wasm::PROBE_FILE;
const VOLUME_GUEST: &str = "plugd_example_volume.wasm";

fn guests_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLUGD_WASM_GUESTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("wasm-guests/wasm32-wasip2/release")
}

fn built(file: &str) -> PathBuf {
    let path = guests_dir().join(file);
    assert!(
        path.is_file(),
        "guest component {} is missing. Build the guests first:\n  \
         cd guest-examples && CARGO_TARGET_DIR=$CARGO_TARGET_DIR/wasm-guests \
         cargo build --release --target wasm32-wasip2",
        path.display()
    );
    path
}

fn runtime(faults: Vec<TestFault>, probe: bool) -> WasmRuntime {
    WasmRuntime::builder()
        .cache_dir(guests_dir().join("plugd-test-cache"))
        .call_timeout(Duration::from_secs(10))
        .probe_component(probe.then(|| built(PROBE)))
        .test_faults(faults)
        .build()
        .expect("wasm runtime")
}

/// A temp directory removed on drop; `.0` is its path.
struct TempDir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let t = tempfile::Builder::new()
            .prefix(&format!("plugd-probe-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(t.path().to_path_buf(), t)
    }
}

/// The example volume plugin's bundle (its rootfs holds the plugin, never run here), with an env
/// value and an extra arg set.
fn spec(dir: &Path) -> PluginSpec {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(built(VOLUME_GUEST), rootfs.join("plugin.wasm")).unwrap();
    PluginSpec {
        id: format!("check-{:016x}", 7),
        name: "example/volume:latest".into(),
        config: PluginConfig {
            entrypoint: Some(vec!["/plugin.wasm".into()]),
            interface: Interface {
                socket: probe::PROBE_SOCKET.into(),
                types: Some(vec!["docker.volumedriver/1.0".into()]),
                ..Default::default()
            },
            network: Network {
                kind: "none".into(),
            },
            env: Some(vec![Env {
                name: "VOLUME_ROOT".into(),
                value: Some("/data".into()),
                ..Default::default()
            }]),
            ..Default::default()
        },
        settings: Settings {
            env: vec!["VOLUME_ROOT=/data".into()],
            args: vec!["--verbose".into()],
            ..Default::default()
        },
        rootfs,
        propagated_mount: None,
        runtime_dir: dir.join("run"),
        state_dir: dir.join("state"),
        observer: Default::default(),
    }
}

fn bind(source: &Path, destination: &str, ro: bool) -> Mount {
    let mut options = vec!["rbind".to_string()];
    if ro {
        options.push("ro".into());
    }
    Mount {
        source: Some(source.to_str().unwrap().into()),
        destination: destination.into(),
        kind: "bind".into(),
        options: Some(options),
        ..Default::default()
    }
}

/// The host side of a check: a canary holding the nonce (outside every mount) and a loopback
/// listener that would give it to whoever connects.
struct HostSide {
    plan: Plan,
    listener: std::net::TcpListener,
}

fn host_side(dir: &Path, spec: &PluginSpec) -> HostSide {
    let nonce = "0123456789abcdef".to_string();
    let canary = dir.join("canary");
    std::fs::write(&canary, &nonce).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mounts = spec
        .settings
        .mounts
        .iter()
        .map(|m| PlanMount {
            destination: m.destination.clone(),
            directory: true,
            writable: !m.read_only(),
        })
        .collect();
    let pm = &spec.config.propagated_mount;
    HostSide {
        plan: Plan {
            nonce,
            host: Host {
                loopback_port: listener.local_addr().unwrap().port(),
                canary: canary.to_str().unwrap().into(),
                pid: std::process::id(),
                comm: "probe-test".into(),
            },
            mounts,
            propagated_mount: (!pm.is_empty()).then(|| pm.clone()),
            devices: Vec::new(),
            capabilities: Vec::new(),
        },
        listener,
    }
}

async fn check(instance: &Arc<dyn Instance>, plan: &Plan) -> Report {
    let body = Bytes::from(serde_json::to_vec(plan).unwrap());
    let reply = instance.call(CHECK_METHOD, body).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).expect("a Report")
}

fn attempt<'a>(report: &'a Report, id: &str) -> &'a Attempt {
    report
        .attempts
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("no attempt {id:?} in {:#?}", report.attempts))
}

fn host_listing(dir: &Path) -> String {
    probe::listing(
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mounts_the_probe_gets_env_and_args_and_nothing_else() {
    let dir = TempDir::new("none");
    let spec = spec(&dir.0);
    let side = host_side(&dir.0, &spec);
    let rt = runtime(Vec::new(), true);
    let instance = rt.start_probe(&spec).await.unwrap();
    let report = check(&instance, &side.plan).await;

    let version = report.probe.strip_prefix("wasm ").expect("a wasm probe");
    assert!(
        !version.is_empty() && version.split('.').count() == 3,
        "{version}"
    );
    let env: Vec<String> = serde_json::from_str(&attempt(&report, "env").detail).unwrap();
    assert_eq!(env, ["VOLUME_ROOT=/data"]);
    let args: Vec<String> = serde_json::from_str(&attempt(&report, "args").detail).unwrap();
    assert_eq!(args, ["/plugin.wasm", "--verbose"]);
    assert_eq!(attempt(&report, "cwd").detail, "/");
    for id in ["net:host-loopback", "net:bind", "net:lookup"] {
        assert!(!attempt(&report, id).ok, "{:?}", attempt(&report, id));
    }
    assert!(
        side.listener.accept().is_err(),
        "nobody connected to the host's loopback"
    );
    for id in ["escape:absolute", "escape:dotdot"] {
        assert!(!attempt(&report, id).ok, "{:?}", attempt(&report, id));
    }
    assert_eq!(
        attempt(&report, "escape:symlink"),
        &Attempt::failed("escape:symlink", "no writable mount")
    );
    for (kind, major, minor, _) in probe::UNDECLARED_DEVICES {
        let a = attempt(&report, &probe::mknod_id(kind, major, minor));
        assert!(!a.ok && a.detail.contains("WASI has no mknod"), "{a:?}");
    }
    // A volume driver gets neither import.
    let links = attempt(&report, "import:host-links");
    assert!(
        !links.ok && links.detail.starts_with("unsupported: "),
        "{links:?}"
    );
    let m = attempt(&report, "import:engine-metrics");
    assert!(
        !m.ok && m.detail.starts_with("unsupported: ") && m.detail.contains("metricscollector"),
        "{m:?}"
    );

    // Only the check is answered.
    let other = instance
        .call("VolumeDriver.List", Bytes::from_static(b"{}"))
        .await;
    assert_eq!(other.status, 404);
    instance.stop(Duration::from_secs(1)).await;
}

/// A spec with a read-write bind at /rw, a read-only one at /ro and a propagated mount at /pm.
fn mounted_spec(dir: &Path) -> (PluginSpec, PathBuf, PathBuf, PathBuf) {
    let mut spec = spec(dir);
    let (rw, ro, pm) = (dir.join("src/rw"), dir.join("src/ro"), dir.join("pm"));
    for d in [&rw, &ro, &pm] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(rw.join("state.json"), "{}").unwrap();
    std::fs::create_dir(ro.join("conf.d")).unwrap();
    std::fs::write(ro.join("a"), "").unwrap();
    spec.settings.mounts = vec![bind(&rw, "/rw", false), bind(&ro, "/ro", true)];
    spec.config.propagated_mount = "/pm".into();
    spec.propagated_mount = Some(pm.clone());
    (spec, rw, ro, pm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_are_what_the_declaration_says_and_nothing_escapes() {
    let dir = TempDir::new("mounts");
    let (spec, rw, ro, pm) = mounted_spec(&dir.0);
    let side = host_side(&dir.0, &spec);
    let rt = runtime(Vec::new(), true);
    let instance = rt.start_probe(&spec).await.unwrap();
    let report = check(&instance, &side.plan).await;

    for (dest, host) in [("/rw", &rw), ("/ro", &ro)] {
        let read = attempt(&report, &probe::mount_id(dest, "read"));
        assert!(read.ok, "{read:?}");
        let identity = attempt(&report, &probe::mount_id(dest, "identity"));
        assert_eq!(
            identity,
            &Attempt::ok(identity.id.clone(), host_listing(host))
        );
    }
    assert!(attempt(&report, "mount:/rw:write").ok);
    let ro_write = attempt(&report, "mount:/ro:write");
    assert!(!ro_write.ok, "{ro_write:?}");
    assert_eq!(
        host_listing(&ro),
        "a/conf.d",
        "nothing was left in the sources"
    );
    assert_eq!(
        std::fs::read_dir(&rw).unwrap().count(),
        1,
        "the check's file and link were removed"
    );
    let symlink = attempt(&report, "escape:symlink");
    assert!(
        symlink.detail.contains("symlink to"),
        "it was tried in /rw: {symlink:?}"
    );
    for id in [
        "escape:absolute",
        "escape:dotdot",
        "escape:symlink",
        "escape:mount:/rw",
        "escape:mount:/ro",
    ] {
        assert!(!attempt(&report, id).ok, "{:?}", attempt(&report, id));
    }
    assert!(attempt(&report, "propagated:write").ok);
    let made = pm.join(probe::propagated_name(&side.plan.nonce));
    assert_eq!(std::fs::read_to_string(made).unwrap(), side.plan.nonce);
    instance.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wide_preopen_fault_shows_in_the_identity() {
    let dir = TempDir::new("wide");
    let (spec, rw, ro, _) = mounted_spec(&dir.0);
    let side = host_side(&dir.0, &spec);
    let rt = runtime(vec![TestFault::WasmWidePreopen], true);
    let instance = rt.start_probe(&spec).await.unwrap();
    let report = check(&instance, &side.plan).await;
    for (dest, host) in [("/rw", &rw), ("/ro", &ro)] {
        let identity = attempt(&report, &probe::mount_id(dest, "identity"));
        assert!(identity.ok, "{identity:?}");
        assert_ne!(identity.detail, host_listing(host));
        assert_eq!(identity.detail, "ro/rw", "the sources' parent");
    }
    instance.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_driver_with_host_and_net_admin_gets_host_links() {
    let dir = TempDir::new("links");
    let mut spec = spec(&dir.0);
    spec.config.interface.types = Some(vec!["docker.networkdriver/1.0".into()]);
    spec.config.network.kind = "host".into();
    spec.config.linux.capabilities = Some(vec!["CAP_NET_ADMIN".into()]);
    let side = host_side(&dir.0, &spec);
    let rt = runtime(Vec::new(), true);
    let instance = rt.start_probe(&spec).await.unwrap();
    let report = check(&instance, &side.plan).await;
    assert_eq!(
        attempt(&report, "import:host-links"),
        &Attempt::ok("import:host-links", "works")
    );
    // Still no sockets: host networking means the import, nothing more.
    assert!(!attempt(&report, "net:host-loopback").ok);
    assert!(!attempt(&report, "net:bind").ok);
    instance.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_declaration_is_refused_alike_and_no_component_is_unsupported() {
    let dir = TempDir::new("refused");
    let mut spec = spec(&dir.0);
    spec.config.linux.capabilities = Some(vec!["CAP_SYS_ADMIN".into()]);
    let rt = runtime(Vec::new(), true);
    let plugin = rt.start(&spec).await.err().expect("a refusal");
    let probe = rt.start_probe(&spec).await.err().expect("a refusal");
    assert!(
        matches!(&probe, RuntimeError::Unsupported { .. }),
        "{probe}"
    );
    assert_eq!(probe, plugin);

    let spec = self::spec(&dir.0);
    let err = runtime(Vec::new(), false)
        .start_probe(&spec)
        .await
        .err()
        .expect("no probe");
    assert!(
        matches!(&err, RuntimeError::Unsupported { runtime: "wasm", what } if what.contains("probe")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_metrics_works_for_a_collector_only() {
    use std::io::{Read as _, Write as _};
    let dir = TempDir::new("metrics");
    let sock = dir.0.join("metrics.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut req = [0u8; 256];
        let _ = c.read(&mut req).unwrap();
        c.write_all(b"HTTP/1.0 200 OK\r\n\r\nengine_daemon_engine_info 1\n")
            .unwrap();
    });
    let rt = WasmRuntime::builder()
        .cache_dir(guests_dir().join("plugd-test-cache"))
        .probe_component(Some(built(PROBE)))
        .engine_metrics_socket(Some(sock))
        .build()
        .unwrap();

    let mut collector = spec(&dir.0);
    collector.config.interface.types = Some(vec!["docker.metricscollector/1.0".into()]);
    let side = host_side(&dir.0, &collector);
    let instance = rt.start_probe(&collector).await.unwrap();
    let report = check(&instance, &side.plan).await;
    assert_eq!(
        attempt(&report, "import:engine-metrics"),
        &Attempt::ok("import:engine-metrics", "read 28 bytes")
    );
    instance.stop(Duration::from_secs(1)).await;
    server.join().unwrap();

    // The same runtime, the same socket: a volume driver's probe gets nothing from it.
    let volume = spec(&dir.0);
    let instance = rt.start_probe(&volume).await.unwrap();
    let report = check(&instance, &side.plan).await;
    assert!(!attempt(&report, "import:engine-metrics").ok);
    instance.stop(Duration::from_secs(1)).await;
}
