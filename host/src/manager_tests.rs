//! The manager against a fake runtime whose starts can hang, become ready, or report a crash:
//! a disable or rm never waits behind a start, and leaves nothing running.

use super::*;
use bytes::Bytes;
use plugd_core::Reply;
use plugd_core::runtime::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What the fake's next start does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Never becomes ready.
    Hang,
    /// Ready, and stays so.
    Ready,
    /// Ready, then reports it crashed.
    Crash,
    /// Fails to start at once.
    Fail,
}

/// One "process" of the fake: counted while it exists.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::SeqCst);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Fake {
    mode: Mutex<Mode>,
    starts: AtomicUsize,
    live: Arc<AtomicUsize>,
    /// Every call the manager made to an instance, in order.
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(mode: Mode) -> Arc<Fake> {
        Arc::new(Fake {
            mode: Mutex::new(mode),
            starts: AtomicUsize::new(0),
            live: Arc::new(AtomicUsize::new(0)),
            calls: Arc::default(),
        })
    }

    fn set(&self, mode: Mode) {
        *lock(&self.mode) = mode;
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) until `n` starts have begun.
    async fn started(&self, n: usize) {
        let t = Instant::now();
        while self.starts.load(Ordering::SeqCst) < n {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "start {n} never began"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

struct FakeInstance {
    live: Mutex<Option<Live>>,
    crashed: bool,
    calls: Arc<Mutex<Vec<String>>>,
}

/// Like a real process, an instance dropped without `stop` keeps running.
impl Drop for FakeInstance {
    fn drop(&mut self) {
        if let Some(live) = lock(&self.live).take() {
            std::mem::forget(live);
        }
    }
}

impl Instance for FakeInstance {
    fn call<'a>(&'a self, method: &'a str, _body: Bytes) -> BoxFuture<'a, Reply> {
        lock(&self.calls).push(method.to_string());
        Box::pin(async { Reply::ok("{}") })
    }

    fn health(&self) -> Health {
        match self.crashed {
            true => Health::Failed("exited with status 1".into()),
            false => Health::Ready,
        }
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        lock(&self.live).take();
        Box::pin(async {})
    }
}

impl Runtime for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn prepare<'a>(
        &'a self,
        _spec: &'a PluginSpec,
    ) -> BoxFuture<'a, std::result::Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn start<'a>(
        &'a self,
        _spec: &'a PluginSpec,
    ) -> BoxFuture<'a, std::result::Result<Arc<dyn Instance>, RuntimeError>> {
        Box::pin(async move {
            let live = Live::new(&self.live);
            self.starts.fetch_add(1, Ordering::SeqCst);
            let mode = *lock(&self.mode);
            if mode == Mode::Hang {
                std::future::pending::<()>().await;
            }
            if mode == Mode::Fail {
                return Err(RuntimeError::Start("exited with status 1 at start".into()));
            }
            Ok(Arc::new(FakeInstance {
                live: Mutex::new(Some(live)),
                crashed: mode == Mode::Crash,
                calls: self.calls.clone(),
            }) as Arc<dyn Instance>)
        })
    }
}

struct Setup {
    manager: Arc<Manager>,
    fake: Arc<Fake>,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(tag: &str, mode: Mode) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix(&format!("plugd-mgr-{tag}-"))
        .tempdir()
        .unwrap()
        .keep();
    let fake = Fake::new(mode);
    let runtime: Arc<dyn Runtime> = fake.clone();
    let cfg = ManagerConfig {
        data_root: dir.join("data"),
        exec_root: dir.join("exec"),
        plugin_socket_dir: dir.join("sockets"),
        default_enable_timeout: Duration::from_secs(60),
        stop_grace: Duration::from_secs(10),
        max_bundle_size: 1 << 20,
        authz_timeout: crate::socket::authz::DEFAULT_DEADLINE,
        registries: Default::default(),
        plugin_logs: crate::observe::plugin_log::Limits {
            size: 1 << 20,
            files: 2,
        },
    };
    let manager = Manager::new(cfg, Arc::new(move |_| Ok(runtime.clone()))).unwrap();
    Setup {
        manager: Arc::new(manager),
        fake,
        dir,
    }
}

/// Stores a disabled volume plugin `name` (`x:latest`) and returns its id.
fn add(m: &Manager, name: &str) -> String {
    add_typed(m, name, "docker.volumedriver/1.0")
}

/// Stores a disabled plugin `name` of interface type `kind` and returns its id.
fn add_typed(m: &Manager, name: &str, kind: &str) -> String {
    let mut store = lock(&m.store);
    let staging = store.staging_path();
    fsutil::create_dir_all(&staging.join("rootfs"), 0o755).unwrap();
    let mut config = PluginConfig::default();
    config.interface.types = Some(vec![kind.into()]);
    config.interface.socket = "p.sock".into();
    let id = new_id();
    let record = Record {
        plugin: PluginObject {
            config,
            enabled: false,
            id: id.clone(),
            name: name.into(),
            plugin_reference: name.into(),
            settings: Settings::default(),
        },
        warnings: vec![],
        image: None,
    };
    store.commit_new(&staging, record).unwrap();
    id
}

/// Runs `verb`, which must answer well within 3 s (it waited 30 s and more before).
async fn quickly<T>(what: &str, verb: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(3), verb)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within 3 s"));
    eprintln!("{what} answered in {:?}", t.elapsed());
    out
}

fn enabled(m: &Manager, name: &str) -> (bool, bool) {
    let (shown, _) = m.inspect(name).unwrap();
    let stored = lock(&m.store).resolve(name).unwrap().plugin.enabled;
    (shown.enabled, stored)
}

#[tokio::test]
async fn disable_cancels_an_enable_that_never_becomes_ready() {
    let s = setup("disable-hang", Mode::Hang);
    add(&s.manager, "hang:latest");
    let m = s.manager.clone();
    let enable =
        tokio::spawn(async move { m.enable("hang:latest", Duration::from_secs(1000)).await });
    s.fake.started(1).await;
    quickly("disable", s.manager.disable("hang:latest", false))
        .await
        .unwrap();
    let err = quickly("the cancelled enable", enable)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, Kind::Conflict, "{err}");
    assert_eq!(s.fake.live(), 0, "the cancelled start left a process");
    assert_eq!(enabled(&s.manager, "hang:latest"), (false, false));

    // Nothing of the cancelled start is left registered: the next enable works.
    s.fake.set(Mode::Ready);
    s.manager
        .enable("hang:latest", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(enabled(&s.manager, "hang:latest"), (true, true));
    assert_eq!(s.fake.live(), 1);
    s.manager.disable("hang:latest", false).await.unwrap();
    assert_eq!(s.fake.live(), 0);
}

#[tokio::test]
async fn forced_rm_cancels_an_enable_that_never_becomes_ready() {
    let s = setup("rm-hang", Mode::Hang);
    add(&s.manager, "hang:latest");
    let m = s.manager.clone();
    let enable =
        tokio::spawn(async move { m.enable("hang:latest", Duration::from_secs(1000)).await });
    s.fake.started(1).await;
    let err = quickly("rm", s.manager.remove("hang:latest", false))
        .await
        .unwrap_err();
    assert_eq!(err.message, "plugin hang:latest is enabled");
    quickly("rm -f", s.manager.remove("hang:latest", true))
        .await
        .unwrap();
    assert!(
        quickly("the cancelled enable", enable)
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(s.fake.live(), 0, "the cancelled start left a process");
    assert_eq!(
        s.manager.inspect("hang:latest").unwrap_err().kind,
        Kind::NotFound
    );
}

#[tokio::test]
async fn disable_of_a_crash_looping_plugin_answers_at_once() {
    let s = setup("crashloop", Mode::Crash);
    add(&s.manager, "loop:latest");
    s.manager
        .enable("loop:latest", Duration::ZERO)
        .await
        .unwrap();
    // It crashed; its restart hangs (up to the 60 s default readiness wait).
    s.fake.set(Mode::Hang);
    let m = s.manager.clone();
    let supervise = tokio::spawn(async move { m.supervise().await });
    s.fake.started(2).await;
    quickly("disable", s.manager.disable("loop:latest", false))
        .await
        .unwrap();
    let restarted = quickly("the supervision pass", supervise).await.unwrap();
    assert!(restarted.is_empty(), "{restarted:?}");
    assert_eq!(s.fake.live(), 0, "the cancelled restart left a process");
    assert_eq!(enabled(&s.manager, "loop:latest"), (false, false));
    // Disabled means no more restarts.
    s.fake.set(Mode::Ready);
    assert!(s.manager.supervise().await.is_empty());
    assert_eq!(s.fake.starts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn verbs_on_other_plugins_do_not_wait_behind_a_start() {
    let s = setup("others", Mode::Hang);
    add(&s.manager, "hang:latest");
    add(&s.manager, "other:latest");
    let m = s.manager.clone();
    let enable =
        tokio::spawn(async move { m.enable("hang:latest", Duration::from_secs(1000)).await });
    s.fake.started(1).await;
    quickly(
        "set on another plugin",
        s.manager.set("other:latest", &["DEBUG=1".into()]),
    )
    .await
    .unwrap_or_else(|e| assert!(e.message.contains("DEBUG"), "{e}"));
    let err = quickly(
        "a second enable",
        s.manager.enable("hang:latest", Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, Kind::Conflict, "{err}");
    enable.abort();
}

#[test]
fn enable_timeout_zero_is_the_default_and_large_ones_are_capped() {
    let default = Duration::from_secs(30);
    assert_eq!(enable_timeout(Duration::ZERO, default), default);
    assert_eq!(
        enable_timeout(Duration::from_secs(5), default),
        Duration::from_secs(5)
    );
    assert_eq!(
        enable_timeout(Duration::from_secs(i64::MAX as u64), default),
        MAX_ENABLE_TIMEOUT
    );
    assert_eq!(MAX_ENABLE_TIMEOUT, Duration::from_secs(300));
}

/// A failure after the runtime started the plugin (here the engine-facing side cannot be set up:
/// the rootfs went away) stops the plugin again.
#[tokio::test]
async fn a_failure_after_the_start_stops_the_plugin() {
    let s = setup("after-start", Mode::Ready);
    let id = add(&s.manager, "late:latest");
    let rootfs = lock(&s.manager.store).plugin_dir(&id).join("rootfs");
    std::fs::remove_dir(&rootfs).unwrap();
    let err = s
        .manager
        .enable("late:latest", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.message.contains("rootfs"), "{err}");
    assert_eq!(s.fake.starts.load(Ordering::SeqCst), 1);
    assert_eq!(s.fake.live(), 0, "the started plugin was left running");
    assert_eq!(enabled(&s.manager, "late:latest"), (false, false));
}

/// rm -f of a plugin with something still mounted in its directory (a mount its runtime failed to
/// release): the mount is unmounted first, and what it showed is never deleted through it.
#[tokio::test]
async fn rm_never_deletes_through_a_mount_left_in_the_plugin_dir() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: not root");
        return;
    }
    let s = setup("rm-mount", Mode::Ready);
    let id = add(&s.manager, "mnt:latest");
    let victim = s.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("data"), "keep").unwrap();
    let target = lock(&s.manager.store)
        .plugin_dir(&id)
        .join("propagated-mount/v1");
    std::fs::create_dir_all(&target).unwrap();
    nix::mount::mount(
        Some(&victim),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let removed = s.manager.remove("mnt:latest", true).await;
    let left = unmount::mounts_under(&s.dir).unwrap();
    for m in &left {
        let _ = unmount::lazy_unmount(m);
    }
    let data = std::fs::read_to_string(victim.join("data"));
    assert_eq!(
        data.ok().as_deref(),
        Some("keep"),
        "deleted through the mount"
    );
    removed.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        s.manager.inspect("mnt:latest").unwrap_err().kind,
        Kind::NotFound
    );
}

/// One `AuthZPlugin.AuthZReq` on an engine-facing socket (blocking, off the test's runtime).
async fn authz_call(sock: PathBuf) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            b"POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nHost:\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_authz_plugin_keeps_its_socket_through_a_restart_and_denies_meanwhile() {
    use std::os::unix::fs::MetadataExt;
    let s = setup("authz-park", Mode::Crash);
    add_typed(&s.manager, "authz:latest", "docker.authz/1.0");
    s.manager
        .enable("authz:latest", Duration::ZERO)
        .await
        .unwrap();
    let sock = s.dir.join("sockets/authz.sock");
    let inode = std::fs::metadata(&sock).unwrap().ino();
    // It crashed, and its restart fails: the socket stays and denies, naming the plugin.
    s.fake.set(Mode::Fail);
    assert!(s.manager.supervise().await.is_empty());
    assert_eq!(s.fake.live(), 0, "the crashed instance was stopped");
    let v = authz_call(sock.clone()).await;
    assert_eq!(v["Allow"], false);
    let msg = v["Msg"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "plugin authz:latest is being restarted after a failure: exited with status 1"
        ),
        "{msg}"
    );
    // Nobody else takes the socket name meanwhile.
    add_typed(&s.manager, "authz:v2", "docker.authz/1.0");
    let err = s
        .manager
        .enable("authz:v2", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind, Kind::Conflict, "{err}");
    assert!(err.message.contains("a restarting"), "{err}");
    // The restart succeeds: the new instance answers on the very same socket.
    s.fake.set(Mode::Ready);
    lock(&s.manager.backoff).clear();
    assert_eq!(s.manager.supervise().await, ["authz:latest"]);
    assert_eq!(std::fs::metadata(&sock).unwrap().ino(), inode);
    let v = authz_call(sock.clone()).await;
    assert_eq!(v["Msg"], "", "the fake's own answer (`{{}}`, decoded): {v}");
    // Disable closes it.
    quickly("disable", s.manager.disable("authz:latest", false))
        .await
        .unwrap();
    assert!(!sock.exists());
    assert_eq!(s.fake.live(), 0);
}

#[tokio::test]
async fn a_disabled_parked_authz_plugin_loses_its_socket() {
    let s = setup("authz-park-off", Mode::Crash);
    add_typed(&s.manager, "authz:latest", "docker.authz/1.0");
    s.manager
        .enable("authz:latest", Duration::ZERO)
        .await
        .unwrap();
    let sock = s.dir.join("sockets/authz.sock");
    s.fake.set(Mode::Fail);
    assert!(s.manager.supervise().await.is_empty());
    assert!(sock.exists(), "parked");
    quickly("disable", s.manager.disable("authz:latest", false))
        .await
        .unwrap();
    assert!(!sock.exists(), "a disable removes a parked socket");
    assert_eq!(enabled(&s.manager, "authz:latest"), (false, false));
    // Nothing restarts it.
    s.fake.set(Mode::Ready);
    lock(&s.manager.backoff).clear();
    assert!(s.manager.supervise().await.is_empty());
    assert!(!sock.exists());
}

#[tokio::test]
async fn plugd_starts_a_metrics_collector_after_enable_and_stops_it_before_it_stops() {
    let s = setup("metrics", Mode::Ready);
    let m = &s.manager;
    add_typed(m, "mc:latest", "docker.metricscollector/1.0");
    add(m, "vol:latest");
    let calls = || lock(&s.fake.calls).clone();
    m.enable("vol:latest", Duration::ZERO).await.unwrap();
    m.disable("vol:latest", false).await.unwrap();
    assert!(calls().is_empty(), "a volume driver gets no metrics calls");

    m.enable("mc:latest", Duration::ZERO).await.unwrap();
    assert_eq!(calls(), [metrics::START]);
    m.disable("mc:latest", false).await.unwrap();
    assert_eq!(calls(), [metrics::START, metrics::STOP]);
    assert_eq!(s.fake.live(), 0);
    // And at plugd's shutdown.
    m.enable("mc:latest", Duration::ZERO).await.unwrap();
    m.shutdown().await;
    assert_eq!(
        calls(),
        [metrics::START, metrics::STOP, metrics::START, metrics::STOP]
    );
    assert_eq!(s.fake.live(), 0);
}

#[tokio::test]
async fn a_restarted_metrics_collector_is_started_again() {
    let s = setup("metrics-restart", Mode::Crash);
    let m = &s.manager;
    add_typed(m, "mc:latest", "docker.metricscollector/1.0");
    m.enable("mc:latest", Duration::ZERO).await.unwrap();
    s.fake.set(Mode::Ready);
    // The crashed one is stopped (no StopMetrics: it failed) and started again.
    m.supervise().await;
    m.supervise().await;
    let calls = lock(&s.fake.calls).clone();
    assert_eq!(calls, [metrics::START, metrics::START]);
    m.disable("mc:latest", false).await.unwrap();
}
