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

use bytes::Bytes;
use plugd_core::config::{Env, Interface, Mount, Network, Settings};
use plugd_core::{Health, Instance, PluginConfig, PluginSpec, Reply, Runtime, RuntimeError};
use plugd_wasm::{EntrypointKind, WasmRuntime, entrypoint_kind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("plugd-guests-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    let t1 = Instant::now();
    rt.prepare(&spec).await.unwrap();
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

/// Records the guest-output events (`plugd_wasm::guest`) emitted on the current thread.
#[derive(Clone, Default)]
struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "plugd_wasm::guest"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", f.name(), v));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Current-thread runtime, so the thread-local subscriber sees the guest's writes.
#[tokio::test(flavor = "current_thread")]
async fn guest_stderr_goes_to_the_log_tagged_with_the_plugin() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let (_dir, i, _rt) = fault_instance("log").await;
    let (s, _) = call(&i, "VolumeDriver.Get", json!({"Name": "trap"})).await;
    assert_eq!(s, 500);
    let lines = recorder.0.lock().unwrap().clone();
    let panic_line = lines
        .iter()
        .find(|l| l.contains("fault guest: trap requested"))
        .unwrap_or_else(|| panic!("the guest's panic message is logged: {lines:#?}"));
    assert!(
        panic_line.contains("plugin=fault-log:latest"),
        "{panic_line}"
    );
    assert!(panic_line.contains("stream=\"stderr\""), "{panic_line}");
}
