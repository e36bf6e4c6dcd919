//! [`NativeRuntime`]: plugd's [`Runtime`] for rootfs plugins whose entrypoint is a native program.
//!
//! `start` first tries to **adopt** a plugin a previous plugd launched (`state.json`, in the
//! plugin's state dir, which the plugin cannot see, names a pid
//! whose start time and plugin id still match: a pidfd is opened, the output FIFOs reopened, and
//! readiness checked), so a plugd that was killed does not restart its plugins, as dockerd with
//! containerd does not. Otherwise it cleans up whatever is left (processes through the cgroup,
//! propagated mounts, FIFOs) and **launches**: host side ([`crate::host`]), `plugd-init` on the
//! launcher thread ([`crate::launcher`]), `state.json`, then readiness.
//!
//! `start_probe` (`plugd check`) launches the same way, with the plugin's own sandbox spec, but
//! `plugd-init` execs the probe binary (a sealed memfd handed over as an fd, so nothing is written
//! into the plugin's rootfs) with the plugin's argv; a probe is never adopted and has no
//! `state.json` (a plugd that dies mid-check leaves its cgroup to be killed with the rest of
//! plugd's exec root: the check's id is random, never reused).

use crate::forward::DEFAULT_CALL_TIMEOUT;
use crate::host::{HostSide, LaunchKind};
use crate::instance::{NativeInstance, StartGuard};
use crate::launcher::{Launcher, SealedInit};
use crate::logrelay::Relays;
use crate::process::{PluginProcess, start_time};
use crate::state::State;
use crate::{RUNTIME_NAME, rootfs};
use plugd_core::check::fault::TestFault;
use plugd_core::runtime::BoxFuture;
use plugd_core::{Instance, PluginSpec, Runtime, RuntimeError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// The log driver's relayed FIFOs, in its state dir; bound at `/run/docker/logging`.
const LOG_FIFO_DIR: &str = "logging";
/// The `StartLogging` bodies of a log driver's open streams, in its state dir (not bound).
const LOG_RECORD_DIR: &str = "logstreams";

/// Longest unix socket path (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// Why a [`NativeRuntime`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// [`NativeRuntimeBuilder::init_binary`] was not called.
    #[error("the native runtime needs the path of the plugd-init binary")]
    NoInitBinary,
    /// The init binary cannot be read or sealed.
    #[error("cannot use {path} as plugd-init: {source}")]
    InitBinary {
        /// The configured path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The probe binary cannot be read or sealed.
    #[error("cannot use {path} as plugd-probe: {source}")]
    ProbeBinary {
        /// The configured path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The launcher thread could not be started.
    #[error("cannot start the native runtime's launcher thread: {0}")]
    Launcher(#[source] std::io::Error),
    /// A setting is out of range.
    #[error("invalid native runtime setting: {0}")]
    Invalid(String),
}

/// Builds a [`NativeRuntime`]; see [`NativeRuntime::builder`].
#[derive(Debug, Clone)]
pub struct NativeRuntimeBuilder {
    init_binary: Option<PathBuf>,
    call_timeout: Duration,
    no_pivot: bool,
    engine_metrics: Option<PathBuf>,
    engine_logging_dir: PathBuf,
    probe_binary: Option<PathBuf>,
    faults: Vec<TestFault>,
}

impl NativeRuntimeBuilder {
    /// The static `plugd-probe` binary `plugd check` runs in a plugin's sandbox
    /// ([`Runtime::start_probe`]). Optional: without it a check of a native plugin is
    /// [`RuntimeError::Unsupported`]. Copied once, at [`build`](Self::build), into a sealed
    /// in-memory file, as the init is.
    pub fn probe_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.probe_binary = Some(path.into());
        self
    }

    /// Deliberate weakenings of every sandbox this runtime builds, for the tests of
    /// `plugd check` (the daemon reads them from `PLUGD_TEST_FAULT`); the wasm ones are ignored
    /// here. Default none.
    pub fn test_faults(mut self, faults: Vec<TestFault>) -> Self {
        self.faults = faults;
        self
    }

    /// The `plugd-init` binary (built from `native-runtime/init`). Required. It is copied once,
    /// at [`build`](Self::build), into a sealed in-memory file; the path is not used afterwards.
    pub fn init_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.init_binary = Some(path.into());
        self
    }

    /// Deadline of each protocol call forwarded to a plugin. Default [`DEFAULT_CALL_TIMEOUT`]
    /// (120 s: dockerd's longest, for `VolumeDriver.Create` and `Mount`).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Use `MS_MOVE` + `chroot` instead of `pivot_root` (for hosts whose root is a ramfs, where
    /// `pivot_root` fails; the init also falls back by itself). Default off.
    pub fn no_pivot(mut self, no_pivot: bool) -> Self {
        self.no_pivot = no_pivot;
        self
    }

    /// The engine's metrics socket (dockerd's `<exec-root>/metrics.sock`), bound read-only at
    /// `/run/docker/metrics.sock` into every `docker.metricscollector/1.0` plugin, as dockerd binds
    /// its own into its managed ones. Default none: nothing is bound.
    pub fn engine_metrics_socket(mut self, socket: Option<PathBuf>) -> Self {
        self.engine_metrics = socket;
        self
    }

    /// Where the engine creates log plugins' FIFOs (dockerd: `/run/docker/logging`, the
    /// default). A log plugin is handed only the FIFO each `StartLogging` names.
    pub fn engine_logging_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.engine_logging_dir = dir.into();
        self
    }

    /// Seals the init binary and starts the launcher thread.
    pub fn build(self) -> Result<NativeRuntime, BuildError> {
        let path = self.init_binary.ok_or(BuildError::NoInitBinary)?;
        if self.call_timeout.is_zero() {
            return Err(BuildError::Invalid("call timeout is zero".to_string()));
        }
        let init = SealedInit::copy_of(&path).map_err(|source| BuildError::InitBinary {
            path: path.clone(),
            source,
        })?;
        let probe =
            match &self.probe_binary {
                None => None,
                Some(path) => Some(SealedInit::copy_static(path, "plugd-probe").map_err(
                    |source| BuildError::ProbeBinary {
                        path: path.clone(),
                        source,
                    },
                )?),
            };
        let has_probe = probe.is_some();
        for f in &self.faults {
            tracing::warn!(
                fault = f.name(),
                "native runtime built with a test fault: its sandboxes are weakened on purpose"
            );
        }
        let launcher = Launcher::start(init, probe).map_err(BuildError::Launcher)?;
        Ok(NativeRuntime {
            shared: Arc::new(Shared {
                launcher,
                call_timeout: self.call_timeout,
                no_pivot: self.no_pivot,
                engine_metrics: self.engine_metrics,
                engine_logging_dir: self.engine_logging_dir,
                has_probe,
                faults: self.faults,
                locks: Mutex::new(HashMap::new()),
                relays: Mutex::new(HashMap::new()),
            }),
        })
    }
}

#[derive(Debug)]
struct Shared {
    launcher: Launcher,
    call_timeout: Duration,
    no_pivot: bool,
    engine_metrics: Option<PathBuf>,
    /// See [`NativeRuntimeBuilder::engine_logging_dir`].
    engine_logging_dir: PathBuf,
    /// The launcher holds a probe binary.
    has_probe: bool,
    /// See [`NativeRuntimeBuilder::test_faults`].
    faults: Vec<TestFault>,
    /// One lock per plugin id: a start waits for the cleanup of a cancelled one.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Log drivers' relayed streams per plugin id: they outlive a crashed process, so that the
    /// next one resumes them (see [`crate::logrelay`]).
    relays: Mutex<HashMap<String, Arc<Relays>>>,
}

/// The native runtime (name `native`): runs a plugin's rootfs in plugd's own sandbox through
/// `plugd-init`, without an OCI runtime or a shim per plugin. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NativeRuntime {
    shared: Arc<Shared>,
}

impl NativeRuntime {
    /// A builder with the defaults and no init binary yet.
    pub fn builder() -> NativeRuntimeBuilder {
        NativeRuntimeBuilder {
            init_binary: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            no_pivot: false,
            engine_metrics: None,
            engine_logging_dir: PathBuf::from(plugd_core::protocol::logdriver::LOGGING_DIR),
            probe_binary: None,
            faults: Vec::new(),
        }
    }

    /// Kills and removes what a `plugd check` probe (`id` `check-<nonce>`) left when plugd died
    /// during the check: its processes, through its cgroup only (a probe has no `state.json` and
    /// is never adopted). The daemon calls it at start for every check scratch dir it finds.
    pub fn release_probe(&self, id: &str) {
        if !id.starts_with("check-") {
            return;
        }
        match crate::cgroup::PluginCgroup::open_existing(id) {
            Ok(Some(cg)) => {
                if let Err(e) = cg.kill_all().and_then(|()| cg.remove()) {
                    tracing::warn!(probe = id, error = %e, "cannot release a probe left by an earlier plugd");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(probe = id, error = %e, "cannot read the cgroup layout"),
        }
    }

    /// The configured per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.shared.call_timeout
    }

    /// Where the engine creates log plugins' FIFOs.
    pub fn engine_logging_dir(&self) -> &std::path::Path {
        &self.shared.engine_logging_dir
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.shared.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// The log relays of a log driver plugin (made on its first start), `None` for others.
    fn relays_for(&self, spec: &PluginSpec) -> Option<Arc<Relays>> {
        if !crate::spec::is_log_driver(spec) {
            return None;
        }
        let mut relays = self.shared.relays.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            relays
                .entry(spec.id.clone())
                .or_insert_with(|| {
                    Arc::new(Relays::new(
                        &spec.name,
                        &self.shared.engine_logging_dir,
                        spec.state_dir.join(LOG_FIFO_DIR),
                        spec.state_dir.join(LOG_RECORD_DIR),
                    ))
                })
                .clone(),
        )
    }

    fn socket_path(spec: &PluginSpec) -> Result<PathBuf, RuntimeError> {
        let name = &spec.config.interface.socket;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(RuntimeError::Bundle(format!(
                "Interface.Socket {name:?} is not a file name"
            )));
        }
        let path = spec.runtime_dir.join(name);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(RuntimeError::Start(format!(
                "plugin {}: socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter exec-root",
                spec.name,
                path.display()
            )));
        }
        Ok(path)
    }

    fn check(spec: &PluginSpec) -> Result<(), RuntimeError> {
        let scheme = spec.config.interface.protocol_scheme.as_str();
        if !matches!(scheme, "" | "moby.plugins.http/v1") {
            return Err(RuntimeError::Unsupported {
                runtime: RUNTIME_NAME,
                what: format!("interface protocol scheme {scheme:?} (only HTTP is spoken)"),
            });
        }
        Self::socket_path(spec)?;
        rootfs::check_entrypoint(spec)?;
        if !rustix::process::geteuid().is_root() {
            return Err(RuntimeError::Unsupported {
                runtime: RUNTIME_NAME,
                what: "a plugin sandbox while plugd does not run as root".to_string(),
            });
        }
        Ok(())
    }

    async fn start_plugin(&self, spec: &PluginSpec) -> Result<Arc<NativeInstance>, RuntimeError> {
        let socket = Self::socket_path(spec)?;
        let lock = self.lock_for(&spec.id);
        let guard = lock.clone().lock_owned().await;
        let guard = match self.adopt(spec, &socket, lock.clone(), guard).await? {
            Adopted::Yes(instance) => return Ok(instance),
            Adopted::No(guard) => guard,
        };
        self.launch(spec, &socket, lock, guard, false).await
    }

    /// [`Runtime::start_probe`]: the plugin's sandbox with the probe as its process. The check's
    /// spec has an id of its own, so the probe never shares a lock, cgroup or state with the
    /// plugin; its lock is not kept in the runtime's table (nothing else starts that id).
    async fn start_probe_instance(
        &self,
        spec: &PluginSpec,
    ) -> Result<Arc<NativeInstance>, RuntimeError> {
        if !self.shared.has_probe {
            return Err(RuntimeError::Unsupported {
                runtime: RUNTIME_NAME,
                what: "plugd check (the daemon was started without a plugd-probe binary)"
                    .to_string(),
            });
        }
        let socket = Self::socket_path(spec)?;
        if !rustix::process::geteuid().is_root() {
            return Err(RuntimeError::Unsupported {
                runtime: RUNTIME_NAME,
                what: "a plugin sandbox while plugd does not run as root".to_string(),
            });
        }
        // The probe's own id (`check-<nonce>`): registered like a plugin's, so that `settle`
        // waits for the teardown of a cancelled probe start before plugd removes its scratch dir.
        let lock = self.lock_for(&spec.id);
        let guard = lock.clone().lock_owned().await;
        self.launch(spec, &socket, lock, guard, true).await
    }

    /// Adopts the plugin recorded in `state.json` if it is still the same process; otherwise
    /// cleans up after it and hands the lock back.
    async fn adopt(
        &self,
        spec: &PluginSpec,
        socket: &std::path::Path,
        lock: Arc<tokio::sync::Mutex<()>>,
        guard: OwnedMutexGuard<()>,
    ) -> Result<Adopted, RuntimeError> {
        let recorded = match State::load(&spec.state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(plugin = %spec.name, error = %e, "ignoring unreadable state.json");
                None
            }
        };
        let alive = recorded.as_ref().filter(|s| s.id == spec.id).and_then(|s| {
            // pidfd first, then the start time: if it still matches, the pidfd is that process.
            // And only a process in the plugin's own cgroup: a record is never enough to make
            // plugd adopt (and later kill) some other process.
            let process = PluginProcess::open(s.pid).ok()?;
            (start_time(s.pid).ok()? == s.start_time
                && process.try_exit().is_none()
                && crate::cgroup::process_is_in(&spec.id, s.pid))
            .then_some(process)
        });
        let mut host = HostSide::new(spec);
        let cgroups = recorded
            .as_ref()
            .filter(|s| s.id == spec.id)
            .map(|s| s.cgroups.clone())
            .unwrap_or_default();
        let Some(process) = alive else {
            if recorded.is_some() {
                tracing::info!(plugin = %spec.name, "the plugin recorded by a previous plugd is gone; cleaning up after it");
            }
            host.clean_leftovers(cgroups).await;
            return Ok(Adopted::No(guard));
        };
        let pid = process.pid();
        host.adopt(cgroups).await;
        let relays = self.relays_for(spec);
        let (instance, start) = self.instance(spec, socket, process, host, (lock, guard), relays);
        match instance.wait_ready().await {
            Ok(()) => {
                instance.reattach_logging().await;
                start.disarm();
                tracing::info!(plugin = %spec.name, pid, "adopted the running plugin");
                Ok(Adopted::Yes(instance))
            }
            Err(msg) => {
                start.fail().await;
                Err(RuntimeError::Start(format!("adopted {msg}")))
            }
        }
    }

    /// The instance of a running plugin process, and the guard that stops it unless the start
    /// that made it is disarmed (it is ready).
    fn instance(
        &self,
        spec: &PluginSpec,
        socket: &std::path::Path,
        process: PluginProcess,
        host: HostSide,
        (lock, guard): (Arc<tokio::sync::Mutex<()>>, OwnedMutexGuard<()>),
        relays: Option<Arc<Relays>>,
    ) -> (Arc<NativeInstance>, StartGuard) {
        let instance = Arc::new(NativeInstance::new(
            &spec.name,
            socket,
            process,
            host,
            self.shared.call_timeout,
            lock,
            relays,
        ));
        let start = StartGuard::new(instance.clone(), guard);
        (instance, start)
    }

    async fn launch(
        &self,
        spec: &PluginSpec,
        socket: &std::path::Path,
        lock: Arc<tokio::sync::Mutex<()>>,
        guard: OwnedMutexGuard<()>,
        probe: bool,
    ) -> Result<Arc<NativeInstance>, RuntimeError> {
        let started = std::time::Instant::now();
        // A probe gets no log relay: it is not a log driver's process, whatever the plugin is.
        let relays = if probe { None } else { self.relays_for(spec) };
        // Until the instance owns it, the host side is released if this launch fails or is
        // cancelled (dropped) at any await below: a plugd-init that already cloned the plugin has
        // put it in the cgroup, which the teardown kills.
        let mut pending = PendingHost::new(HostSide::new(spec), guard);
        // A socket left by an earlier run would make readiness succeed at once.
        remove_stale_socket(socket);
        let log_fifos = match relays.as_ref().map(|r| r.dir().map(Path::to_path_buf)) {
            None => None,
            Some(Ok(dir)) => Some(dir),
            Some(Err(e)) => {
                pending.fail().await;
                return Err(RuntimeError::Start(format!(
                    "plugin {}: its log FIFO directory: {e}",
                    spec.name
                )));
            }
        };
        let sandbox = match pending
            .host()
            .setup(
                spec,
                &LaunchKind {
                    no_pivot: self.shared.no_pivot,
                    probe,
                    faults: &self.shared.faults,
                },
                self.shared.engine_metrics.as_deref(),
                log_fifos,
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                pending.fail().await;
                return Err(e);
            }
        };
        let process = match self
            .shared
            .launcher
            .launch(&spec.name, sandbox, probe)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                pending.fail().await;
                return Err(RuntimeError::Start(format!("plugin {}: {e}", spec.name)));
            }
        };
        let pid = process.pid();
        let (host, guard) = pending.into_parts();
        let state = match probe {
            // Never adopted: nothing to record.
            true => Ok(None),
            false => start_time(pid).map(|t| {
                Some(State::new(
                    &spec.id,
                    &spec.name,
                    pid,
                    t,
                    host.cgroup_paths(),
                ))
            }),
        };
        let (instance, start) = self.instance(spec, socket, process, host, (lock, guard), relays);
        if let Err(e) = state.and_then(|s| s.map_or(Ok(()), |s| s.save(&spec.state_dir))) {
            start.fail().await;
            return Err(RuntimeError::Start(format!(
                "plugin {}: cannot record its state: {e}",
                spec.name
            )));
        }
        let launched = started.elapsed();
        match instance.wait_ready().await {
            Ok(()) => {
                instance.resume_logging().await;
                start.disarm();
                tracing::info!(
                    plugin = %spec.name,
                    pid,
                    launch_ms = launched.as_millis() as u64,
                    ready_ms = started.elapsed().as_millis() as u64,
                    "native plugin started"
                );
                Ok(instance)
            }
            Err(msg) => {
                start.fail().await;
                Err(RuntimeError::Start(msg))
            }
        }
    }
}

/// The host side of a launch before its plugin process is known, with the plugin's lock: torn
/// down on failure, or on a task (still holding the lock, so the next start and
/// [`Runtime::settle`] wait for it) when the launch is dropped.
struct PendingHost {
    parts: Option<(HostSide, OwnedMutexGuard<()>)>,
}

impl PendingHost {
    fn new(host: HostSide, guard: OwnedMutexGuard<()>) -> Self {
        PendingHost {
            parts: Some((host, guard)),
        }
    }

    fn host(&mut self) -> &mut HostSide {
        match &mut self.parts {
            Some((host, _)) => host,
            None => unreachable!("a PendingHost is consumed only by fail or into_parts"),
        }
    }

    /// The launch failed: release everything now.
    async fn fail(mut self) {
        if let Some((mut host, _guard)) = self.parts.take() {
            host.teardown().await;
        }
    }

    /// The plugin process is known: an instance takes over.
    fn into_parts(mut self) -> (HostSide, OwnedMutexGuard<()>) {
        match self.parts.take() {
            Some(parts) => parts,
            None => unreachable!("a PendingHost is consumed only by fail or into_parts"),
        }
    }
}

impl Drop for PendingHost {
    fn drop(&mut self) {
        let Some((mut host, guard)) = self.parts.take() else {
            return;
        };
        tracing::warn!("launch cancelled: releasing the plugin's host side");
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    host.teardown().await;
                    drop(guard);
                });
            }
            Err(_) => tracing::error!(
                "launch cancelled outside a tokio runtime: the host side is left for the next start"
            ),
        }
    }
}

enum Adopted {
    Yes(Arc<NativeInstance>),
    No(OwnedMutexGuard<()>),
}

fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt as _;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Runtime for NativeRuntime {
    /// Mounting needs `CAP_SYS_ADMIN` in the sandbox's own user namespace (the host's); without
    /// it a plugin's only mounts are in a user namespace of its own, whose mounts never propagate
    /// back to the host.
    fn plugin_can_mount(&self, spec: &PluginSpec) -> bool {
        spec.effective()
            .capabilities
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
    }

    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    fn prepare<'a>(&'a self, spec: &'a PluginSpec) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { Self::check(spec) })
    }

    fn start<'a>(
        &'a self,
        spec: &'a PluginSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Instance>, RuntimeError>> {
        Box::pin(async move {
            let instance = self.start_plugin(spec).await?;
            tracing::debug!(plugin = %spec.name, pid = instance.pid(), "native instance ready");
            Ok(instance as Arc<dyn Instance>)
        })
    }

    /// The plugin's sandbox, spec and cgroup (with this runtime's test faults), with the probe
    /// exec'd in place of the entrypoint; see [`NativeRuntimeBuilder::probe_binary`].
    fn start_probe<'a>(
        &'a self,
        spec: &'a PluginSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Instance>, RuntimeError>> {
        Box::pin(async move {
            let instance = self.start_probe_instance(spec).await?;
            tracing::debug!(plugin = %spec.name, pid = instance.pid(), "native probe ready");
            Ok(instance as Arc<dyn Instance>)
        })
    }

    /// A cancelled start kills its plugin at once and releases the host side on a task that
    /// holds the plugin's lock; taking the lock waits for that.
    fn settle<'a>(&'a self, spec: &'a PluginSpec) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            drop(self.lock_for(&spec.id).lock_owned().await);
            // A probe's id is used once: its lock goes with it (plugd settles after each probe).
            if spec.id.starts_with("check-") {
                let mut locks = self.shared.locks.lock().unwrap_or_else(|p| p.into_inner());
                locks.remove(&spec.id);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, plugin_spec};
    use std::path::Path;

    #[test]
    fn build_needs_a_readable_elf_init() {
        assert!(matches!(
            NativeRuntime::builder().build(),
            Err(BuildError::NoInitBinary)
        ));
        let err = NativeRuntime::builder()
            .init_binary("/nonexistent/plugd-init")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot use /nonexistent/plugd-init as plugd-init: "),
            "{err}"
        );
        let rt = NativeRuntime::builder()
            .init_binary("/proc/self/exe")
            .build()
            .unwrap();
        assert_eq!(rt.name(), "native");
        assert_eq!(rt.call_timeout(), DEFAULT_CALL_TIMEOUT);
        let zero = NativeRuntime::builder()
            .init_binary("/proc/self/exe")
            .call_timeout(Duration::ZERO)
            .build();
        assert!(matches!(zero, Err(BuildError::Invalid(_))));
    }

    #[tokio::test]
    async fn prepare_refuses_what_cannot_run() {
        let dir = TempDir::new("prepare");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let rt = NativeRuntime::builder()
            .init_binary("/proc/self/exe")
            .build()
            .unwrap();
        let mut spec = plugin_spec(&rootfs, &dir.path().join("run"));

        let err = rt.prepare(&spec).await.unwrap_err();
        assert_eq!(
            err,
            RuntimeError::Bundle("entrypoint \"/plugin\" does not exist in the rootfs".into())
        );

        std::fs::copy("/proc/self/exe", rootfs.join("plugin")).unwrap();
        if rustix::process::geteuid().is_root() {
            rt.prepare(&spec).await.unwrap();
        }

        spec.config.interface.protocol_scheme = "moby.plugins.grpc/v1".into();
        let err = rt.prepare(&spec).await.unwrap_err();
        assert!(
            matches!(
                err,
                RuntimeError::Unsupported {
                    runtime: "native",
                    ..
                }
            ),
            "{err}"
        );
        spec.config.interface.protocol_scheme = String::new();

        spec.runtime_dir = Path::new("/run").join("x".repeat(100));
        let err = rt.prepare(&spec).await.unwrap_err().to_string();
        assert!(err.contains("is longer than 107 bytes"), "{err}");
    }

    #[tokio::test]
    async fn a_probe_needs_a_probe_binary() {
        let dir = TempDir::new("probe");
        let spec = plugin_spec(&dir.path().join("rootfs"), &dir.path().join("run"));
        let rt = NativeRuntime::builder()
            .init_binary("/proc/self/exe")
            .build()
            .unwrap();
        let err = match rt.start_probe(&spec).await {
            Err(e) => e,
            Ok(_) => panic!("a probe started without a probe binary"),
        };
        assert!(
            matches!(&err, RuntimeError::Unsupported { runtime: "native", what } if what.contains("plugd-probe")),
            "{err}"
        );
        let err = NativeRuntime::builder()
            .init_binary("/proc/self/exe")
            .probe_binary("/nonexistent/plugd-probe")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot use /nonexistent/plugd-probe as plugd-probe: "),
            "{err}"
        );
    }
}
