//! Runs the real guest components (guest-examples/) in-process through `plugd_core::Instance`.
//!
//! The guests must be built first; these tests fail (never skip) when they are missing:
//!
//! ```sh
//! cd guest-examples
//! CARGO_TARGET_DIR=/var/cache/plugd/target/wasm-guests cargo build --release --target wasm32-wasip2
//! ```
//!
//! They are found in `$PLUGD_WASM_GUESTS`, else `$CARGO_TARGET_DIR/wasm-guests/wasm32-wasip2/release`.
//! Precompiled components are cached in `<that dir>/plugd-test-cache`, shared across runs.
//!
//! Like plugd itself, they run as root: every preopen is a mount clone (`view`), and the hostile-
//! plugin tests make device nodes, FIFOs and a procfs mount to point guests at.

use bytes::Bytes;
use plugd_core::config::{Env, Interface, Mount, Network, Settings};
use plugd_core::{Health, Instance, PluginConfig, PluginSpec, Reply, Runtime, RuntimeError};
use plugd_wasm::{EntrypointKind, WasmRuntime, entrypoint_kind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VOLUME_GUEST: &str = "plugd_example_volume.wasm";
const FAULT_GUEST: &str = "plugd_fault_guest.wasm";

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

fn guest(file: &str) -> Vec<u8> {
    let path = guests_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}). Build the guests first:\n  \
             cd guest-examples && CARGO_TARGET_DIR=/var/cache/plugd/target/wasm-guests \
             cargo build --release --target wasm32-wasip2\n\
             (or point PLUGD_WASM_GUESTS at the directory holding {VOLUME_GUEST} and {FAULT_GUEST})",
            path.display()
        )
    })
}

fn cache_dir() -> PathBuf {
    guests_dir().join("plugd-test-cache")
}

/// A temp directory removed on drop.
/// `.0` is its path; `.1` is `tempfile`'s guard, which removes it.
struct TempDir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let t = tempfile::Builder::new()
            .prefix(&format!("plugd-guests-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(t.path().to_path_buf(), t)
    }
}

/// A bundle on disk (rootfs/plugin.wasm) and its spec: the example volume config.json.
fn bundle(dir: &Path, wasm: &[u8], name: &str) -> PluginSpec {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("plugin.wasm"), wasm).unwrap();
    let config = PluginConfig {
        entrypoint: Some(vec!["/plugin.wasm".into()]),
        interface: Interface {
            socket: "volume.sock".into(),
            types: Some(vec!["docker.volumedriver/1.0".into()]),
            ..Default::default()
        },
        network: Network {
            kind: "none".into(),
        },
        env: Some(vec![Env {
            name: "VOLUME_ROOT".into(),
            settable: Some(vec!["value".into()]),
            value: Some("/data".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    PluginSpec {
        id: format!("{:064x}", 1),
        name: name.to_string(),
        config,
        settings: Settings {
            env: vec!["VOLUME_ROOT=/data".into()],
            ..Default::default()
        },
        rootfs,
        propagated_mount: None,
        runtime_dir: dir.join("run"),
        state_dir: dir.join("state"),
        observer: Default::default(),
    }
}

/// The example bundle with `PropagatedMount: /data` backed by `<dir>/propagated`.
fn volume_bundle(dir: &Path) -> (PluginSpec, PathBuf) {
    let mut spec = bundle(dir, &guest(VOLUME_GUEST), "example/volume:latest");
    let host = dir.join("propagated");
    std::fs::create_dir_all(&host).unwrap();
    spec.config.propagated_mount = "/data".into();
    spec.propagated_mount = Some(host.clone());
    (spec, host)
}

fn runtime(timeout: Duration, memory: usize) -> WasmRuntime {
    WasmRuntime::builder()
        .cache_dir(cache_dir())
        .call_timeout(timeout)
        .memory_limit(memory)
        .build()
        .expect("wasm runtime")
}

async fn call(i: &Arc<dyn Instance>, method: &str, body: Value) -> (u16, Value) {
    let Reply { status, body } = i.call(method, Bytes::from(body.to_string())).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{method}: reply is not JSON ({e}): {body:?}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_round_trip_through_instance_call() {
    let dir = TempDir::new("roundtrip");
    let (spec, host) = volume_bundle(&dir.0);
    assert_eq!(entrypoint_kind(&spec).unwrap(), EntrypointKind::Component);
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    assert_eq!(rt.name(), "wasm");
    rt.prepare(&spec).await.unwrap();
    rt.prepare(&spec).await.unwrap(); // a cache hit (logged)
    let i = rt.start(&spec).await.unwrap();
    assert_eq!(i.health(), Health::Ready);

    let (s, b) = call(&i, "VolumeDriver.Capabilities", json!({})).await;
    assert_eq!((s, b), (200, json!({"Capabilities": {"Scope": "local"}})));
    let (s, b) = call(&i, "VolumeDriver.List", json!({})).await;
    assert_eq!((s, b), (200, json!({"Volumes": [], "Err": ""})));

    let (s, b) = call(
        &i,
        "VolumeDriver.Create",
        json!({"Name": "v1", "Opts": null}),
    )
    .await;
    assert_eq!((s, b), (200, json!({"Err": ""})));
    assert!(
        host.join("v1").is_dir(),
        "the volume directory appears on the host"
    );
    let (s, _) = call(
        &i,
        "VolumeDriver.Create",
        json!({"Name": "v1", "Opts": {"a": "b"}}),
    )
    .await;
    assert_eq!(s, 200, "create is idempotent");
    std::fs::write(host.join("v1/hello.txt"), b"hi").unwrap();

    let (s, b) = call(&i, "VolumeDriver.Get", json!({"Name": "v1"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Err"], "");
    assert_eq!(b["Volume"]["Name"], "v1");
    assert_eq!(
        b["Volume"]["Mountpoint"], "/data/v1",
        "paths stay plugin-internal"
    );
    if let Some(created) = b["Volume"].get("CreatedAt") {
        assert!(
            created.as_str().unwrap().ends_with('Z'),
            "RFC 3339: {created}"
        );
    }

    let (s, b) = call(&i, "VolumeDriver.Mount", json!({"Name": "v1", "ID": "abc"})).await;
    assert_eq!((s, b), (200, json!({"Mountpoint": "/data/v1", "Err": ""})));
    let (s, b) = call(&i, "VolumeDriver.Path", json!({"Name": "v1"})).await;
    assert_eq!((s, b), (200, json!({"Mountpoint": "/data/v1", "Err": ""})));
    let (s, b) = call(
        &i,
        "VolumeDriver.Unmount",
        json!({"Name": "v1", "ID": "abc"}),
    )
    .await;
    assert_eq!((s, b), (200, json!({"Err": ""})));

    call(&i, "VolumeDriver.Create", json!({"Name": "v2"})).await;
    let (s, b) = call(&i, "VolumeDriver.List", json!({})).await;
    assert_eq!(s, 200);
    let names: Vec<_> = b["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].clone())
        .collect();
    assert_eq!(names, [json!("v1"), json!("v2")]);

    let (s, b) = call(&i, "VolumeDriver.Remove", json!({"Name": "v1"})).await;
    assert_eq!((s, b), (200, json!({"Err": ""})));
    assert!(!host.join("v1").exists(), "removed on the host");

    // Errors: guest-reported, protocol-level.
    let (s, b) = call(&i, "VolumeDriver.Get", json!({"Name": "v1"})).await;
    assert_eq!(s, 500);
    assert!(b["Err"].as_str().unwrap().contains("no such volume"), "{b}");
    for bad in ["../evil", "a/b", ".", "..", ""] {
        let (s, b) = call(&i, "VolumeDriver.Create", json!({"Name": bad})).await;
        assert_eq!(s, 500, "{bad:?}");
        assert!(
            b["Err"].as_str().unwrap().contains("invalid volume name"),
            "{bad:?}: {b}"
        );
    }
    assert!(!dir.0.join("evil").exists());
    let r = i
        .call("VolumeDriver.Get", Bytes::from_static(b"{oops"))
        .await;
    assert_eq!(r.status, 400);
    let (s, b) = call(&i, "VolumeDriver.Frobnicate", json!({})).await;
    assert_eq!(s, 404);
    assert!(b["Err"].as_str().unwrap().contains("not implemented"));
    let r = i.call("VolumeDriver.List", Bytes::new()).await;
    assert_eq!(r.status, 200, "an empty body is {{}}");

    i.stop(Duration::from_secs(1)).await;
    let (s, b) = call(&i, "VolumeDriver.List", json!({})).await;
    assert_eq!(s, 500);
    assert!(b["Err"].as_str().unwrap().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_preopen_refuses_writes() {
    let dir = TempDir::new("ro");
    let mut spec = bundle(&dir.0, &guest(VOLUME_GUEST), "example/volume-ro:latest");
    let ro = dir.0.join("ro-source");
    std::fs::create_dir_all(ro.join("existing")).unwrap();
    spec.settings.mounts = vec![Mount {
        name: "data".into(),
        source: Some(ro.to_str().unwrap().into()),
        destination: "/data".into(),
        kind: "bind".into(),
        options: Some(vec!["rbind".into(), "ro".into()]),
        ..Default::default()
    }];
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    let i = rt.start(&spec).await.unwrap();

    let (s, b) = call(&i, "VolumeDriver.List", json!({})).await;
    assert_eq!(s, 200, "reading is allowed: {b}");
    assert_eq!(b["Volumes"][0]["Name"], "existing");
    let (s, b) = call(&i, "VolumeDriver.Create", json!({"Name": "new"})).await;
    assert_eq!(s, 500, "{b}");
    assert!(
        !ro.join("new").exists(),
        "nothing written through a read-only preopen"
    );
    let (s, _) = call(&i, "VolumeDriver.Remove", json!({"Name": "existing"})).await;
    assert_eq!(s, 500);
    assert!(ro.join("existing").is_dir());
    // The guest error did not cost the instance.
    let (s, _) = call(&i, "VolumeDriver.Get", json!({"Name": "existing"})).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_refuses_what_it_cannot_honour() {
    let dir = TempDir::new("refuse");
    let rt = runtime(Duration::from_secs(5), 64 << 20);

    let mut spec = bundle(&dir.0, &guest(VOLUME_GUEST), "refuse:latest");
    spec.config.network.kind = "host".into();
    match rt.prepare(&spec).await {
        Err(RuntimeError::Unsupported {
            runtime: "wasm",
            what,
        }) => assert!(what.contains("host")),
        other => panic!("network host: {other:?}"),
    }

    let core_module = b"\0asm\x01\0\0\0";
    let spec = bundle(&dir.0.join("core"), core_module, "core:latest");
    assert_eq!(entrypoint_kind(&spec).unwrap(), EntrypointKind::CoreModule);
    let err = rt.prepare(&spec).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Bundle(m) if m.contains("core wasm module")),
        "{err}"
    );

    let mut broken = guest(VOLUME_GUEST);
    broken.truncate(broken.len() / 2);
    let spec = bundle(&dir.0.join("broken"), &broken, "broken:latest");
    let err = rt.prepare(&spec).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Bundle(m) if m.contains("cannot compile")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_prepare_loads_from_the_cache() {
    let dir = TempDir::new("cache");
    let spec = bundle(&dir.0, &guest(VOLUME_GUEST), "cache:latest");
    let rt = WasmRuntime::builder()
        .cache_dir(dir.0.join("fresh-cache"))
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.prepare(&spec).await.unwrap();
    let cold = t0.elapsed();
    // A second runtime (a plugd restart): nothing in memory, only the cache on disk.
    let rt2 = WasmRuntime::builder()
        .cache_dir(dir.0.join("fresh-cache"))
        .build()
        .unwrap();
    let t1 = Instant::now();
    rt2.prepare(&spec).await.unwrap();
    let warm = t1.elapsed();
    eprintln!("prepare: cold compile {cold:?}, cache hit {warm:?}");
    let artifacts: Vec<_> = std::fs::read_dir(dir.0.join("fresh-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].to_str().unwrap().ends_with(".cwasm"));
    assert!(
        warm < cold,
        "cache hit ({warm:?}) should beat compiling ({cold:?})"
    );
}

/// Plugins of one bundle share the loaded component while one of them runs: with the compile
/// cache emptied under a running plugin, a second plugin of the same bundle starts without
/// compiling (nothing is written to the cache); once both are stopped, the next start compiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_of_one_bundle_share_the_loaded_component_while_one_runs() {
    let dir = TempDir::new("share");
    let cache = dir.0.join("cache");
    let rt = WasmRuntime::builder().cache_dir(&cache).build().unwrap();
    let artifacts = || std::fs::read_dir(&cache).unwrap().count();
    let mut a = bundle(&dir.0.join("a"), &guest(VOLUME_GUEST), "a:latest");
    a.id = format!("{:064x}", 0xa);
    let mut b = bundle(&dir.0.join("b"), &guest(VOLUME_GUEST), "b:latest");
    b.id = format!("{:064x}", 0xb);
    let ia = rt.start(&a).await.unwrap();
    assert_eq!(artifacts(), 1, "the first start compiled into the cache");
    for e in std::fs::read_dir(&cache).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let ib = rt.start(&b).await.unwrap();
    assert_eq!(
        artifacts(),
        0,
        "b reused a's component: no compile, no load"
    );
    let (s, body) = call(&ib, "VolumeDriver.Capabilities", json!({})).await;
    assert_eq!(s, 200, "{body}");
    ia.stop(Duration::from_secs(1)).await;
    ib.stop(Duration::from_secs(1)).await;
    drop((ia, ib));
    let mut c = bundle(&dir.0.join("c"), &guest(VOLUME_GUEST), "c:latest");
    c.id = format!("{:064x}", 0xc);
    let _ic = rt.start(&c).await.unwrap();
    assert_eq!(
        artifacts(),
        1,
        "with no plugin holding it, the component is compiled again"
    );
}

/// The fault guest with a 1 s timeout and a 32 MiB memory cap.
async fn fault_instance(tag: &str) -> (TempDir, Arc<dyn Instance>, WasmRuntime) {
    let dir = TempDir::new(tag);
    let spec = bundle(&dir.0, &guest(FAULT_GUEST), &format!("fault-{tag}:latest"));
    let rt = runtime(Duration::from_secs(1), 32 << 20);
    let i = rt.start(&spec).await.unwrap();
    (dir, i, rt)
}

async fn calls_reported(i: &Arc<dyn Instance>) -> u64 {
    let (s, b) = call(i, "VolumeDriver.Get", json!({"Name": "ok"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Volume"]["Mountpoint"], "/data/ok");
    b["Volume"]["Status"]["calls"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Calls `method` with volume `name`, expects a bounded 500 mentioning `expect`, then proves the
/// next call runs on a fresh instance.
async fn fault_then_recover(tag: &str, method: &str, name: &str, expect: &str) {
    let (_dir, i, _rt) = fault_instance(tag).await;
    assert_eq!(calls_reported(&i).await, 1);
    assert_eq!(
        calls_reported(&i).await,
        2,
        "same instance between good calls"
    );

    let t0 = Instant::now();
    let (s, b) = call(&i, method, json!({"Name": name})).await;
    let took = t0.elapsed();
    let err = b["Err"].as_str().unwrap_or_default().to_string();
    assert_eq!(s, 500, "{name}: {b}");
    assert!(
        err.contains(&format!("plugin \"fault-{tag}:latest\"")),
        "names the plugin: {err}"
    );
    assert!(err.contains(method), "names the call: {err}");
    assert!(
        err.contains(expect),
        "{name}: expected {expect:?} in {err:?}"
    );
    assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    eprintln!("{name}: {took:?}: {err}");

    assert_eq!(
        calls_reported(&i).await,
        1,
        "a fresh instance after the {name} fault"
    );
    assert_eq!(i.health(), Health::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_is_interrupted() {
    fault_then_recover("spin", "VolumeDriver.Get", "spin", "timed out after 1s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_in_create_is_interrupted() {
    fault_then_recover(
        "spin-create",
        "VolumeDriver.Create",
        "spin",
        "timed out after 1s",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_fails_the_call() {
    fault_then_recover("trap", "VolumeDriver.Get", "trap", "trapped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_cap() {
    fault_then_recover("bomb", "VolumeDriver.Get", "bomb", "memory limit of 32 MiB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_in_host_call_times_out() {
    fault_then_recover("sleep", "VolumeDriver.Get", "sleep", "timed out after 1s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_not_found_is_500_and_keeps_the_instance() {
    let (_dir, i, _rt) = fault_instance("missing").await;
    let (s, b) = call(&i, "VolumeDriver.Get", json!({"Name": "missing"})).await;
    assert_eq!((s, b), (500, json!({"Err": "no such volume"})));
    assert_eq!(calls_reported(&i).await, 2, "a guest error is not a fault");
}

/// Starts the fault guest with `PLUGD_INSTANCES=instances`, makes a half-second call (`nap`) and,
/// while it runs, a quick one; returns the quick call's per-instance call count, which tells
/// whether it ran on the napping instance (3: one call before, the nap, itself) or another (1).
async fn call_beside_a_slow_one(tag: &str, instances: &str) -> u64 {
    let dir = TempDir::new(tag);
    let mut spec = bundle(&dir.0, &guest(FAULT_GUEST), &format!("fault-{tag}:latest"));
    spec.settings
        .env
        .push(format!("PLUGD_INSTANCES={instances}"));
    let rt = runtime(Duration::from_secs(5), 32 << 20);
    let i = rt.start(&spec).await.unwrap();
    assert_eq!(calls_reported(&i).await, 1);
    let napping = i.clone();
    let nap =
        tokio::spawn(
            async move { call(&napping, "VolumeDriver.Get", json!({"Name": "nap"})).await },
        );
    // The nap has claimed its instance well before this (the claim is the call's first step).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = calls_reported(&i).await;
    let (s, b) = nap.await.unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["Volume"]["Status"]["calls"], "2",
        "the nap ran on the first instance"
    );
    i.stop(Duration::from_secs(1)).await;
    quick
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_plugin_serves_a_call_beside_a_slow_one_on_another_instance() {
    assert_eq!(
        call_beside_a_slow_one("pool2", "2").await,
        1,
        "a pool of two: the quick call went to a new instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpooled_plugin_serialises_every_call_on_its_one_instance() {
    assert_eq!(
        call_beside_a_slow_one("pool1", "1").await,
        3,
        "one instance: the quick call waited for the nap and saw its count"
    );
}

/// The guest's stderr and its trap reach the plugin's own observer (its log, metrics and events
/// in the daemon), not plugd's log.
#[tokio::test]
async fn guest_stderr_and_the_trap_go_to_the_plugins_observer() {
    let dir = TempDir::new("log");
    let mut spec = bundle(&dir.0, &guest(FAULT_GUEST), "fault-log:latest");
    let (observer, seen) = plugd_core::Observer::recording();
    spec.observer = observer;
    let rt = runtime(Duration::from_secs(1), 32 << 20);
    let i = rt.start(&spec).await.unwrap();
    let (s, _) = call(&i, "VolumeDriver.Get", json!({"Name": "say"})).await;
    assert_eq!(s, 200);
    let (s, _) = call(&i, "VolumeDriver.Get", json!({"Name": "trap"})).await;
    assert_eq!(s, 500);
    use plugd_core::observe::{FaultKind, OutputStream};
    let lines = seen.lines();
    assert!(
        lines.contains(&(
            OutputStream::Stdout,
            "fault guest says hello on stdout".into()
        )),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|(s, l)| *s == OutputStream::Stderr && l.contains("fault guest: trap requested")),
        "the guest's panic message is its stderr: {lines:#?}"
    );
    let faults = seen.faults();
    assert_eq!(faults.len(), 1, "{faults:#?}");
    assert_eq!(faults[0].kind, FaultKind::Trap);
    assert_eq!(faults[0].method.as_deref(), Some("VolumeDriver.Get"));
}

// ---- Hostile plugins: what a bind reaches, blocking I/O, memory across memories and tables ----

/// Runs a command that must succeed (test setup needing root: mknod, mount).
fn run(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A procfs mounted for a test, lazily unmounted on drop.
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        run("mount", &["-t", "proc", "proc", at.to_str().unwrap()]);
        ProcMount(at.to_path_buf())
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l", self.0.to_str().unwrap()])
            .status();
    }
}

/// The fault guest with `host` bound read-write at `/host`.
fn fault_with_bind(dir: &Path, tag: &str, host: &Path) -> PluginSpec {
    let mut spec = bundle(dir, &guest(FAULT_GUEST), &format!("fault-{tag}:latest"));
    spec.id = format!("{:064x}", 0x600 + tag.len());
    spec.settings.mounts = vec![Mount {
        name: "host".into(),
        source: Some(host.to_str().unwrap().into()),
        destination: "/host".into(),
        kind: "bind".into(),
        options: Some(vec!["rbind".into()]),
        ..Default::default()
    }];
    spec
}

/// `get read:<path>`: `Ok(bytes read)` or `Err(the error message)`.
async fn guest_read(i: &Arc<dyn Instance>, path: &str) -> Result<u64, String> {
    let (s, b) = call(
        i,
        "VolumeDriver.Get",
        json!({"Name": format!("read:{path}")}),
    )
    .await;
    if s == 200 {
        Ok(b["Volume"]["Status"]["read"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap())
    } else {
        Err(b["Err"].as_str().unwrap_or_default().to_string())
    }
}

/// The major:minor of the device holding `/` (a real block device on the test VMs).
fn root_block_device() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major, minor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_reaches_no_device_node_nor_procfs_below_it() {
    let dir = TempDir::new("devices");
    let host = dir.0.join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("file.txt"), b"hello").unwrap();
    let mut nodes = vec!["/host/null", "/host/zero"];
    run(
        "mknod",
        &[host.join("null").to_str().unwrap(), "c", "1", "3"],
    );
    run(
        "mknod",
        &[host.join("zero").to_str().unwrap(), "c", "1", "5"],
    );
    let (major, minor) = root_block_device();
    let disk = host.join("disk");
    let (maj, min) = (major.to_string(), minor.to_string());
    run("mknod", &[disk.to_str().unwrap(), "b", &maj, &min]);
    // Where plugd's own device cgroup lets it read the disk (not on every test VM), so must this.
    match std::fs::File::open(&disk) {
        Ok(_) => nodes.push("/host/disk"),
        Err(e) => eprintln!("block device {major}:{minor} not openable by plugd either: {e}"),
    }
    run("mkfifo", &[host.join("fifo").to_str().unwrap()]);
    let _proc = ProcMount::new(&host.join("proc"));
    // plugd's own environment, and pid 1's where plugd may read it (not where plugd lacks a
    // capability pid 1 has, as in some test VMs).
    let mut environs = vec![format!("/host/proc/{}/environ", std::process::id())];
    match std::fs::read(host.join("proc/1/environ")) {
        Ok(_) => environs.push("/host/proc/1/environ".to_string()),
        Err(e) => eprintln!("/proc/1/environ not readable by plugd either: {e}"),
    }

    let mut spec = fault_with_bind(&dir.0, "devices", &host);
    // The propagated mount too: containers using a volume can mknod in it.
    let propagated = dir.0.join("propagated");
    std::fs::create_dir_all(&propagated).unwrap();
    run(
        "mknod",
        &[propagated.join("zero").to_str().unwrap(), "c", "1", "5"],
    );
    std::fs::write(propagated.join("file.txt"), b"volume").unwrap();
    spec.config.propagated_mount = "/data".into();
    spec.propagated_mount = Some(propagated);
    nodes.push("/data/zero");
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    let i = rt.start(&spec).await.unwrap();
    assert_eq!(guest_read(&i, "/host/file.txt").await, Ok(5));
    assert_eq!(guest_read(&i, "/data/file.txt").await, Ok(6));
    for node in nodes {
        let err = guest_read(&i, node).await.expect_err(node);
        assert!(err.contains(node), "{err}");
    }
    for environ in &environs {
        let err = guest_read(&i, environ).await.expect_err(environ);
        assert!(err.contains(environ.as_str()), "{err}");
    }
    assert_eq!(
        guest_read(&i, "/host/file.txt").await,
        Ok(5),
        "refusals are plain I/O errors"
    );
    i.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_of_root_reaches_no_device_nor_procfs() {
    let dir = TempDir::new("root");
    let spec = fault_with_bind(&dir.0, "root", Path::new("/"));
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    let i = rt.start(&spec).await.unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap().len().min(4096) as u64;
    assert_eq!(guest_read(&i, "/host/etc/passwd").await, Ok(passwd));
    let own = format!("/host/proc/{}/environ", std::process::id());
    for path in [
        own.as_str(),
        "/host/proc/1/environ",
        "/host/dev/null",
        "/host/sys/kernel/uevent_seqnum",
    ] {
        let err = guest_read(&i, path).await.expect_err(path);
        assert!(err.contains(path), "{err}");
    }
    i.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procfs_source_is_refused_by_name() {
    let dir = TempDir::new("procsrc");
    let spec = fault_with_bind(&dir.0, "procsrc", Path::new("/proc"));
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    match rt.start(&spec).await.err() {
        Some(RuntimeError::Unsupported {
            runtime: "wasm",
            what,
        }) => assert!(what.contains("procfs"), "{what}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Opens the FIFO's write end once (non-blocking: readers are waiting) and closes it, so every
/// guest blocked opening it goes on and reads end-of-file.
fn release_fifo(fifo: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo);
}

/// Releases the FIFO on drop, so a failing test does not leave threads blocked behind it.
struct FifoRelease(PathBuf);

impl Drop for FifoRelease {
    fn drop(&mut self) {
        for _ in 0..20 {
            release_fifo(&self.0);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_blocks_only_its_own_plugin_and_a_bounded_number_of_threads() {
    let dir = TempDir::new("fifo");
    let host = dir.0.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let fifo = host.join("fifo");
    run("mkfifo", &[fifo.to_str().unwrap()]);
    let _release = FifoRelease(fifo.clone());

    let rt = runtime(Duration::from_secs(1), 32 << 20);
    let spec = fault_with_bind(&dir.0, "fifo", &host);
    let i = rt.start(&spec).await.unwrap();
    let other_dir = TempDir::new("fifo-bystander");
    let (other_spec, _) = volume_bundle(&other_dir.0);
    let other = rt.start(&other_spec).await.unwrap();
    assert_eq!(calls_reported(&i).await, 1);

    let blocked = {
        let i = i.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            (guest_read(&i, "/host/fifo").await, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile every other plugin is served, promptly.
    for _ in 0..3 {
        let (s, _) = tokio::time::timeout(
            Duration::from_secs(3),
            call(&other, "VolumeDriver.List", json!({})),
        )
        .await
        .expect("another plugin is served while one is blocked in a FIFO");
        assert_eq!(s, 200);
    }
    let (result, took) = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("a call blocked opening a FIFO returns at its deadline")
        .unwrap();
    let err = result.unwrap_err();
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        calls_reported(&i).await,
        1,
        "a fresh instance on a fresh thread"
    );

    // Each further blocked call costs one more thread, up to the plugin's bound; then its calls
    // fail fast and it reports unhealthy, without costing plugd another thread.
    let mut fast_failure = None;
    for _ in 0..6 {
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), guest_read(&i, "/host/fifo"))
            .await
            .expect("bounded");
        let err = r.unwrap_err();
        if err.contains("still blocked in host I/O") {
            fast_failure = Some((err, t0.elapsed()));
            break;
        }
        assert!(err.contains("timed out after 1s"), "{err}");
    }
    let (err, took) = fast_failure.expect("the plugin's threads are bounded");
    assert!(
        took < Duration::from_secs(1),
        "fails fast, not at a deadline: {took:?}"
    );
    assert!(err.contains("at most 4"), "{err}");
    assert!(matches!(i.health(), Health::Failed(_)), "{:?}", i.health());
    let (s, _) = call(&other, "VolumeDriver.List", json!({})).await;
    assert_eq!(s, 200, "others still served");

    // Once the FIFO has a writer the blocked threads end, and the plugin is served again.
    release_fifo(&fifo);
    let t0 = Instant::now();
    loop {
        release_fifo(&fifo);
        let (s, _) = call(&i, "VolumeDriver.Get", json!({"Name": "ok"})).await;
        if s == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "plugin not recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(i.health(), Health::Ready);
    i.stop(Duration::from_secs(1)).await;
    other.stop(Duration::from_secs(1)).await;
}

/// A component written by hand (no guest toolchain makes one): the `volume-driver` exports over
/// one core module with 16 linear memories and a table. `create` grows each of the 15 extra
/// memories by 4 MiB, `mount` by 1 MiB, `remove` grows the table by 4 M elements; every other
/// export answers with an empty success.
fn memories_and_tables_component() -> Vec<u8> {
    let memories: String = (1..=15).map(|n| format!("(memory $m{n} 0)\n")).collect();
    let grows: String = (1..=15)
        .map(|n| format!("(drop (memory.grow $m{n} (local.get $pages)))\n"))
        .collect();
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    {memories}
    (table $t 0 funcref)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $bump))
      (global.set $bump
        (i32.and (i32.add (i32.add (global.get $bump) (local.get 3)) (i32.const 7)) (i32.const -8)))
      (local.get $p))
    (func $grow (param $pages i32)
      {grows})
    ;; Results are read from a zeroed area at 16: ok, empty strings, no volumes, scope local.
    (func (export "create") (param i32 i32 i32 i32) (result i32)
      (call $grow (i32.const 64)) (i32.const 16))
    (func (export "mount") (param i32 i32 i32 i32) (result i32)
      (call $grow (i32.const 16)) (i32.const 16))
    (func (export "remove") (param i32 i32) (result i32)
      (drop (table.grow $t (ref.null func) (i32.const 4000000))) (i32.const 16))
    (func (export "ret0") (result i32) (i32.const 16))
    (func (export "ret2") (param i32 i32) (result i32) (i32.const 16))
    (func (export "ret4") (param i32 i32 i32 i32) (result i32) (i32.const 16))
    (func (export "scope") (result i32) (i32.const 0)))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))

  (type $error-code' (enum "not-found" "invalid-argument" "conflict" "unsupported" "internal"))
  (export $error-code "error-code" (type $error-code'))
  (type $error' (record (field "code" $error-code) (field "message" string)))
  (export $error "error" (type $error'))
  (type $scope' (enum "local" "global"))
  (export $scope "scope" (type $scope'))
  (type $volume' (record
    (field "name" string)
    (field "mountpoint" string)
    (field "created-at" (option string))
    (field "status" (list (tuple string string)))))
  (export $volume "volume" (type $volume'))

  (func $create (param "name" string) (param "opts" (list (tuple string string)))
    (result (result (error $error)))
    (canon lift (core func $i "create") (memory $mem) (realloc $realloc)))
  (func $remove (param "name" string) (result (result (error $error)))
    (canon lift (core func $i "remove") (memory $mem) (realloc $realloc)))
  (func $mount (param "name" string) (param "id" string) (result (result string (error $error)))
    (canon lift (core func $i "mount") (memory $mem) (realloc $realloc)))
  (func $unmount (param "name" string) (param "id" string) (result (result (error $error)))
    (canon lift (core func $i "ret4") (memory $mem) (realloc $realloc)))
  (func $path (param "name" string) (result (result string (error $error)))
    (canon lift (core func $i "ret2") (memory $mem) (realloc $realloc)))
  (func $get (param "name" string) (result (result $volume (error $error)))
    (canon lift (core func $i "ret2") (memory $mem) (realloc $realloc)))
  (func $list (result (result (list $volume) (error $error)))
    (canon lift (core func $i "ret0") (memory $mem) (realloc $realloc)))
  (func $capabilities (result $scope)
    (canon lift (core func $i "scope")))

  (instance $driver
    (export "error-code" (type $error-code))
    (export "error" (type $error))
    (export "scope" (type $scope))
    (export "volume" (type $volume))
    (export "create" (func $create))
    (export "remove" (func $remove))
    (export "mount" (func $mount))
    (export "unmount" (func $unmount))
    (export "path" (func $path))
    (export "get" (func $get))
    (export "list" (func $list))
    (export "capabilities" (func $capabilities)))
  (export "docker:plugin/volume-driver@0.1.0" (instance $driver)))"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("test component: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_and_tables_count_together_against_the_cap() {
    let dir = TempDir::new("memories");
    let spec = bundle(&dir.0, &memories_and_tables_component(), "memories:latest");
    assert_eq!(entrypoint_kind(&spec).unwrap(), EntrypointKind::Component);
    let rt = runtime(Duration::from_secs(5), 32 << 20);
    rt.prepare(&spec).await.unwrap();
    let i = rt.start(&spec).await.unwrap();
    let get_ok = |i: Arc<dyn Instance>| async move {
        let (s, b) = call(&i, "VolumeDriver.Get", json!({"Name": "x"})).await;
        assert_eq!(s, 200, "{b}");
    };
    get_ok(i.clone()).await;

    // 15 memories of 1 MiB, then 2 MiB each: under 32 MiB together. At 3 MiB each, 45 MiB: over.
    for round in 1..=2 {
        let (s, b) = call(&i, "VolumeDriver.Mount", json!({"Name": "x", "ID": "1"})).await;
        assert_eq!(s, 200, "round {round}: {b}");
    }
    let (s, b) = call(&i, "VolumeDriver.Mount", json!({"Name": "x", "ID": "1"})).await;
    assert_eq!(s, 500, "{b}");
    let err = b["Err"].as_str().unwrap();
    assert!(err.contains("exceeded its memory limit of 32 MiB"), "{err}");
    get_ok(i.clone()).await;
    assert_eq!(i.health(), Health::Ready, "replaced, not failed");

    // 15 × 4 MiB at once: each memory is far under the cap, all of them are not.
    let (s, b) = call(&i, "VolumeDriver.Create", json!({"Name": "x"})).await;
    assert_eq!(s, 500, "{b}");
    assert!(b["Err"].as_str().unwrap().contains("memory limit"), "{b}");
    get_ok(i.clone()).await;

    // A table of 4 M elements counts too.
    let (s, b) = call(&i, "VolumeDriver.Remove", json!({"Name": "x"})).await;
    assert_eq!(s, 500, "{b}");
    assert!(b["Err"].as_str().unwrap().contains("memory limit"), "{b}");
    get_ok(i.clone()).await;
    i.stop(Duration::from_secs(1)).await;
}

const AUTHZ_GUEST: &str = "plugd_example_authz.wasm";
const FAULT_AUTHZ_GUEST: &str = "plugd_fault_authz_guest.wasm";

/// An authz bundle of `wasm` (`Interface.Types: ["docker.authz/1.0"]`) with `DENY=deny`.
fn authz_bundle(dir: &Path, wasm: &[u8], deny: &str) -> PluginSpec {
    let mut spec = bundle(dir, wasm, "example/authz:latest");
    spec.config.interface = Interface {
        socket: "authz.sock".into(),
        types: Some(vec!["docker.authz/1.0".into()]),
        ..Default::default()
    };
    spec.config.env = Some(vec![Env {
        name: "DENY".into(),
        settable: Some(vec!["value".into()]),
        value: Some(String::new()),
        ..Default::default()
    }]);
    spec.settings.env = vec![format!("DENY={deny}")];
    spec
}

fn authz_req(uri: &str) -> Value {
    json!({"RequestMethod": "GET", "RequestUri": uri, "RequestHeaders": {"User-Agent": "t"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_example_allows_and_denies_by_uri() {
    let dir = TempDir::new("authz");
    let spec = authz_bundle(&dir.0, &guest(AUTHZ_GUEST), "/volumes,/secrets");
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    rt.prepare(&spec).await.unwrap();
    let i = rt.start(&spec).await.unwrap();
    let allow = json!({"Allow": true, "Msg": "", "Err": ""});
    assert_eq!(
        call(&i, "Plugin.Activate", json!({})).await,
        (200, json!({"Implements": ["authz"]}))
    );
    let req = "AuthZPlugin.AuthZReq";
    assert_eq!(
        call(&i, req, authz_req("/v1.41/containers/json")).await,
        (200, allow.clone())
    );
    assert_eq!(
        call(&i, req, authz_req("/v1.41/volumes")).await,
        (
            200,
            json!({"Allow": false, "Msg": "GET /v1.41/volumes is denied: it matches \"/volumes\" (DENY)", "Err": ""})
        )
    );
    // The response phase: the example's default, allow; bodies arrive decoded (bad base64: 400).
    let mut res = authz_req("/v1.41/volumes");
    res["ResponseStatusCode"] = json!(200);
    res["ResponseBody"] = json!("e30=");
    assert_eq!(call(&i, "AuthZPlugin.AuthZRes", res).await, (200, allow));
    let (s, b) = call(&i, req, json!({"RequestBody": "not base64"})).await;
    assert_eq!(s, 400, "{b}");
    // Only the declared type's calls.
    assert_eq!(call(&i, "VolumeDriver.List", json!({})).await.0, 404);
    i.stop(Duration::from_secs(1)).await;
}

/// A trap, a loop and an error result each fail the call (a 500 naming the plugin, which the
/// gateway turns into a deny), and the next call is served by a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_guest_faults_fail_the_call_and_the_next_call_is_served() {
    let dir = TempDir::new("authz-fault");
    let spec = authz_bundle(&dir.0, &guest(FAULT_AUTHZ_GUEST), "");
    let rt = runtime(Duration::from_secs(1), 64 << 20);
    rt.prepare(&spec).await.unwrap();
    let i = rt.start(&spec).await.unwrap();
    let req = "AuthZPlugin.AuthZReq";
    for (uri, expect) in [
        ("/v1.41/volumes/fault-trap", "trapped"),
        ("/v1.41/volumes/fault-spin", "timed out after 1s"),
        (
            "/v1.41/volumes/fault-error",
            "fault authz guest: error requested",
        ),
    ] {
        let started = Instant::now();
        let (s, b) = call(&i, req, authz_req(uri)).await;
        let took = started.elapsed();
        assert_eq!(s, 500, "{uri}: {b}");
        let err = b["Err"].as_str().unwrap();
        assert!(err.contains(expect), "{uri}: {err}");
        if expect != "fault authz guest: error requested" {
            assert!(err.starts_with("plugin \"example/authz:latest\""), "{err}");
        }
        assert!(took < Duration::from_secs(3), "{uri}: {took:?}");
        let (s, b) = call(&i, req, authz_req("/v1.41/_ping")).await;
        assert_eq!((s, b["Allow"].clone()), (200, json!(true)), "after {uri}");
    }
    i.stop(Duration::from_secs(1)).await;
}

/// What one AuthZ call costs in the wasm runtime, warm (the instance lives across calls):
/// decode, cross into the guest, decide, encode. Printed; bounded loosely (debug builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_per_call_overhead_is_small() {
    let dir = TempDir::new("authz-bench");
    let spec = authz_bundle(&dir.0, &guest(AUTHZ_GUEST), "/secrets");
    let rt = runtime(Duration::from_secs(5), 64 << 20);
    rt.prepare(&spec).await.unwrap();
    let i = rt.start(&spec).await.unwrap();
    let body = Bytes::from(authz_req("/v1.41/volumes").to_string());
    for _ in 0..100 {
        i.call("AuthZPlugin.AuthZReq", body.clone()).await;
    }
    const N: u32 = 2000;
    let started = Instant::now();
    for _ in 0..N {
        let r = i.call("AuthZPlugin.AuthZReq", body.clone()).await;
        assert_eq!(r.status, 200);
    }
    let per_call = started.elapsed() / N;
    eprintln!("wasm authz: {per_call:?} per AuthZReq call, warm instance ({N} calls)");
    assert!(per_call < Duration::from_millis(5), "{per_call:?}");
    i.stop(Duration::from_secs(1)).await;
}
