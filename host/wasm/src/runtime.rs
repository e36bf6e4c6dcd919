//! [`WasmRuntime`]: plugd's [`Runtime`] for component bundles.

use crate::RUNTIME_NAME;
use crate::cache::{CacheError, ComponentCache, sha256_hex};
use crate::drivers::{Exports, Prepared};
use crate::engine::{EpochTicker, new_engine};
use crate::entrypoint::{MAX_ENTRYPOINT_BYTES, read_component};
use crate::instance::{CallLimits, HostState, ThreadBudgets, WasmInstance};
use crate::links::HostLinks;
use crate::logstreams::LogStreams;
use crate::metrics::EngineMetrics;
use crate::policy::Policy;
use bytes::Bytes;
use plugd_core::check::fault::TestFault;
use plugd_core::protocol::metrics;
use plugd_core::runtime::BoxFuture;
use plugd_core::{Health, Instance, PluginSpec, Reply, Runtime, RuntimeError};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Default per-call deadline: well under dockerd's 60 s per-call timeout (2 min for Create and
/// Mount), so a hung plugin is reported by plugd, not by dockerd's generic timeout.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on the memory of one plugin instance: all its linear memories and tables together.
pub const DEFAULT_MEMORY_LIMIT: usize = 128 << 20;

/// Why a [`WasmRuntime`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// [`WasmRuntimeBuilder::cache_dir`] was not called.
    #[error("the wasm runtime needs a cache directory")]
    NoCacheDir,
    /// A limit is zero.
    #[error("invalid wasm runtime setting: {0}")]
    Invalid(String),
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The cache directory is unusable.
    #[error("{0}")]
    Cache(String),
    /// The epoch ticker thread could not be spawned.
    #[error("cannot start the wasm epoch thread: {0}")]
    Ticker(#[source] std::io::Error),
}

/// Builds a [`WasmRuntime`]; see [`WasmRuntime::builder`].
#[derive(Debug, Clone)]
pub struct WasmRuntimeBuilder {
    cache_dir: Option<PathBuf>,
    call_timeout: Duration,
    memory_limit: usize,
    engine_logging_dir: PathBuf,
    engine_metrics: Option<PathBuf>,
    probe_component: Option<PathBuf>,
    test_faults: Vec<TestFault>,
}

impl WasmRuntimeBuilder {
    /// Where precompiled components are kept (created mode 0700; must be plugd's own, e.g.
    /// `<data-root>/wasm-cache`). Required.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Wall-clock budget of each protocol call (and of each instantiation). Default
    /// [`DEFAULT_CALL_TIMEOUT`]; resolution 10 ms.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Bytes one instance may hold in all its linear memories and tables together (a table
    /// element counts 16 bytes). A per-instance cap, not per memory: a component can declare many
    /// memories, and plugd's RSS must stay bounded by plugins × this. Default
    /// [`DEFAULT_MEMORY_LIMIT`].
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Where the engine creates log plugins' FIFOs (dockerd: `/run/docker/logging`, the
    /// default). plugd reads the FIFO each `StartLogging` names for the guest.
    pub fn engine_logging_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.engine_logging_dir = dir.into();
        self
    }

    /// The engine's metrics socket (dockerd's `<exec-root>/metrics.sock`), the one thing the
    /// `engine-metrics` import reads for a metrics collector. Unset, it gives every collector an
    /// error saying so.
    pub fn engine_metrics_socket(mut self, socket: Option<PathBuf>) -> Self {
        self.engine_metrics = socket;
        self
    }

    /// plugd's probe component (`plugd_probe.wasm`), which [`Runtime::start_probe`] instantiates
    /// in place of a plugin's entrypoint for `plugd check`. Unset, `start_probe` is
    /// [`RuntimeError::Unsupported`]. Read (and compiled through the cache) at each check, so a
    /// replaced file is picked up.
    pub fn probe_component(mut self, path: Option<PathBuf>) -> Self {
        self.probe_component = path;
        self
    }

    /// Deliberate weakenings for tests of `plugd check` (`PLUGD_TEST_FAULT`, read by the daemon
    /// alone): `TestFault::WasmWidePreopen` preopens each bind mount from its source's parent
    /// directory, for plugins and probes alike. Faults of other runtimes are ignored.
    pub fn test_faults(mut self, faults: Vec<TestFault>) -> Self {
        self.test_faults = faults;
        self
    }

    /// Creates the engine, starts its epoch thread and opens the cache directory.
    pub fn build(self) -> Result<WasmRuntime, BuildError> {
        let cache_dir = self.cache_dir.ok_or(BuildError::NoCacheDir)?;
        if self.call_timeout.is_zero() {
            return Err(BuildError::Invalid("call timeout is zero".to_string()));
        }
        if self.memory_limit < 1 << 16 {
            return Err(BuildError::Invalid(format!(
                "memory limit {} is below one wasm page (64 KiB)",
                self.memory_limit
            )));
        }
        let engine = new_engine().map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        crate::links::add_to_linker(&mut linker)
            .map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        crate::metrics::add_to_linker(&mut linker)
            .map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        let cache = ComponentCache::open(&cache_dir, &engine)
            .map_err(|e| BuildError::Cache(e.to_string()))?;
        let ticker = EpochTicker::start(engine.clone()).map_err(BuildError::Ticker)?;
        let limits = CallLimits {
            call_timeout: self.call_timeout,
            memory_limit: self.memory_limit,
        };
        Ok(WasmRuntime {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                limits,
                engine_logging_dir: self.engine_logging_dir,
                engine_metrics: self.engine_metrics,
                probe_component: self.probe_component,
                test_faults: self.test_faults,
                _ticker: ticker,
                prepared: Default::default(),
                shared_prepared: Default::default(),
                threads: ThreadBudgets::default(),
            }),
        })
    }
}

/// What the runtime and its instances share. The last holder to drop it stops the epoch thread,
/// so running instances keep their deadlines even if the runtime is dropped first.
struct Shared {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    limits: CallLimits,
    /// See [`WasmRuntimeBuilder::engine_logging_dir`].
    engine_logging_dir: PathBuf,
    /// See [`WasmRuntimeBuilder::engine_metrics_socket`].
    engine_metrics: Option<PathBuf>,
    /// See [`WasmRuntimeBuilder::probe_component`].
    probe_component: Option<PathBuf>,
    /// See [`WasmRuntimeBuilder::test_faults`].
    test_faults: Vec<TestFault>,
    _ticker: EpochTicker,
    /// What the last `prepare` of each plugin (by id) resolved, so the `start` that follows it at
    /// enable does not read, hash and load the component again. Entries expire after
    /// [`PREPARED_TTL`]: a `prepare` at create is not followed by a `start`.
    prepared:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Arc<Prepared>)>>,
    /// Each plugin's threads (by id), so a restart does not reset how many may be blocked.
    threads: ThreadBudgets,
    /// Every running component by what it is (the wasm's sha256 and the declared types): plugins
    /// of the same bundle share one loaded component — its code mapped once, its imports resolved
    /// once — for as long as one of them holds it. 500 plugins of one bundle would otherwise map
    /// 500 copies of the same code; and an enable of a bundle already running skips the load.
    shared_prepared: std::sync::Mutex<std::collections::HashMap<PreparedKey, Weak<Prepared>>>,
}

/// What [`WasmRuntime::prepared`] found: a running plugin's prepared component, or the component
/// loaded (or compiled) from the cache, still to be prepared.
enum Loaded {
    Running(Arc<Prepared>),
    Compiled(Component),
}

/// What makes two plugins' [`Prepared`] the same: the component's bytes (by sha256) and the
/// interfaces located in it (the declared `Interface.Types`).
type PreparedKey = (String, Vec<String>);

impl Shared {
    /// The prepared component a running plugin holds for `key`, if one does.
    fn running_prepared(&self, key: &PreparedKey) -> Option<Arc<Prepared>> {
        self.shared_prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .and_then(Weak::upgrade)
    }
}

/// How long a `prepare` result waits for its `start`.
const PREPARED_TTL: Duration = Duration::from_secs(60);

/// The wasm runtime: one engine per daemon, components compiled once and cached on disk, one
/// long-lived instance per enabled plugin. Implements [`Runtime`] (name `wasm`).
#[derive(Clone)]
pub struct WasmRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// A builder with the defaults ([`DEFAULT_CALL_TIMEOUT`], [`DEFAULT_MEMORY_LIMIT`]) and no
    /// cache directory yet.
    pub fn builder() -> WasmRuntimeBuilder {
        WasmRuntimeBuilder {
            cache_dir: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            engine_logging_dir: PathBuf::from(plugd_core::protocol::logdriver::LOGGING_DIR),
            engine_metrics: None,
            probe_component: None,
            test_faults: Vec::new(),
        }
    }

    /// The configured per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.shared.limits.call_timeout
    }

    /// The configured per-instance memory cap.
    pub fn memory_limit(&self) -> usize {
        self.shared.limits.memory_limit
    }

    /// The plugin's component, prepared: the one a running plugin of the same bundle holds, else
    /// read from the entrypoint and loaded from the compile cache, compiling on a miss (off the
    /// async threads: compiling takes 0.1–25 s).
    async fn prepared(&self, spec: &PluginSpec) -> Result<Arc<Prepared>, RuntimeError> {
        let shared = self.shared.clone();
        let task_spec = spec.clone();
        let types = spec.config.interface.types.clone().unwrap_or_default();
        let task = tokio::task::spawn_blocking(move || {
            let spec = task_spec;
            let wasm = read_component(&spec)?;
            let key = (sha256_hex(&wasm), types);
            if let Some(running) = shared.running_prepared(&key) {
                return Ok((key, Loaded::Running(running)));
            }
            let component = shared
                .cache
                .load_or_compile_digest(&shared.engine, &wasm, &key.0, &spec.name)
                .map(|(c, _)| c)
                .map_err(|e| match e {
                    CacheError::Compile(_) => RuntimeError::Bundle(format!("{}: {e}", spec.name)),
                    e => RuntimeError::Start(e.to_string()),
                })?;
            Ok((key, Loaded::Compiled(component)))
        });
        let (key, found) = task
            .await
            .map_err(|e| RuntimeError::Start(format!("component load task failed: {e}")))??;
        match found {
            Loaded::Running(running) => Ok(running),
            Loaded::Compiled(component) => {
                let pre = self.pre(spec, &component)?;
                let mut all = self
                    .shared
                    .shared_prepared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                all.retain(|_, p| p.strong_count() > 0);
                all.insert(key, Arc::downgrade(&pre));
                Ok(pre)
            }
        }
    }

    /// The policy of a plugin start (and of a probe start: the same one), faults applied.
    fn policy(&self, spec: &PluginSpec) -> Result<Policy, RuntimeError> {
        Policy::resolve_with(spec, &self.shared.test_faults)
    }

    /// The probe component, loaded through the same cache as plugins and linked against the same
    /// imports; `Unsupported` without one.
    async fn probe_pre(&self) -> Result<Arc<Prepared>, RuntimeError> {
        let path =
            self.shared
                .probe_component
                .clone()
                .ok_or_else(|| RuntimeError::Unsupported {
                    runtime: RUNTIME_NAME,
                    what: "plugd check (no probe component was given to the wasm runtime)"
                        .to_string(),
                })?;
        let shared = self.shared.clone();
        let task = tokio::task::spawn_blocking(move || {
            let wasm = read_probe(&path)?;
            shared
                .cache
                .load_or_compile(&shared.engine, &wasm, "plugd-probe")
                .map(|(c, _)| c)
                .map_err(|e| RuntimeError::Start(format!("probe {}: {e}", path.display())))
        });
        let component = task
            .await
            .map_err(|e| RuntimeError::Start(format!("probe load task failed: {e}")))??;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| {
                RuntimeError::Start(format!(
                    "the probe component imports what plugd does not provide: {e:#}"
                ))
            })?;
        let exports = Exports::probe(&pre).map_err(RuntimeError::Start)?;
        Ok(Arc::new(Prepared { pre, exports }))
    }

    /// Starts an instance of `pre` for `spec` with `policy`: the host imports (`host-links`,
    /// `engine-metrics`), limits and threads a plugin gets, whichever component `pre` is.
    async fn instantiate(
        &self,
        spec: &PluginSpec,
        policy: Policy,
        pre: Arc<Prepared>,
        what: &str,
        links: fn(&str, bool) -> HostLinks,
    ) -> Result<Arc<dyn Instance>, RuntimeError> {
        let host_links = policy.host_links;
        let keepalive: Arc<dyn Send + Sync> = self.shared.clone();
        let logs = pre.exports.is_log_driver().then(|| {
            Arc::new(LogStreams::new(
                &spec.name,
                self.shared.engine_logging_dir.clone(),
                self.shared.limits.call_timeout,
                Some(spec.state_dir.join("logstreams")),
            ))
        });
        let types = spec.config.interface.types.as_deref().unwrap_or_default();
        // Exactly the type the native sandbox binds the socket for, never more.
        let collector = types.iter().any(|t| t == metrics::TYPE);
        if collector && self.shared.engine_metrics.is_none() {
            tracing::warn!(plugin = %spec.name,
                "metrics collector started without an engine metrics socket (plugd daemon --engine-metrics-socket): its every scrape fails");
        }
        let metrics = Arc::new(EngineMetrics::new(
            collector,
            self.shared.engine_metrics.clone(),
        ));
        let instance = WasmInstance::start(
            spec.name.clone(),
            spec.observer.clone(),
            pre,
            policy,
            self.shared.limits,
            Arc::new(links(&spec.id, host_links)),
            logs,
            metrics,
            self.shared.threads.get(&spec.id),
            keepalive,
            // Checked at prepare (Policy::check); a spec that skipped it gets one instance.
            spec.effective().instances().unwrap_or(1),
        )
        .await
        .map_err(|e| {
            RuntimeError::Start(format!("plugin {:?}: cannot instantiate: {e}", spec.name))
        })?;
        tracing::info!(plugin = %spec.name, "{what} started");
        Ok(instance as Arc<dyn Instance>)
    }

    /// Resolves imports and locates the exports of the declared `Interface.Types`.
    fn pre(&self, spec: &PluginSpec, component: &Component) -> Result<Arc<Prepared>, RuntimeError> {
        let pre = self
            .shared
            .linker
            .instantiate_pre(component)
            .map_err(|e| {
                RuntimeError::Bundle(format!(
                    "{}: the component imports what plugd does not provide (WASI 0.2 and docker:plugin@0.1.0): {e:#}",
                    spec.name
                ))
            })?;
        let types = spec.config.interface.types.as_deref().unwrap_or_default();
        let exports = Exports::find(&pre, types)
            .map_err(|e| RuntimeError::Bundle(format!("{}: {e}", spec.name)))?;
        Ok(Arc::new(Prepared { pre, exports }))
    }
}

impl Runtime for WasmRuntime {
    /// A guest has no `mount`: its filesystem is plugd's directories and what it wrote in them.
    fn plugin_can_mount(&self, _spec: &PluginSpec) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    fn prepare<'a>(&'a self, spec: &'a PluginSpec) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            Policy::check(spec)?;
            let pre = self.prepared(spec).await?;
            let mut prepared = self
                .shared
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            prepared.retain(|_, (at, _)| at.elapsed() < PREPARED_TTL);
            prepared.insert(spec.id.clone(), (std::time::Instant::now(), pre));
            Ok(())
        })
    }

    fn start<'a>(
        &'a self,
        spec: &'a PluginSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Instance>, RuntimeError>> {
        Box::pin(async move {
            let policy = self.policy(spec)?;
            let prepared = self
                .shared
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&spec.id)
                .filter(|(at, _)| at.elapsed() < PREPARED_TTL);
            let pre = match prepared {
                Some((_, pre)) => pre,
                None => self.prepared(spec).await?,
            };
            self.instantiate(spec, policy, pre, "wasm plugin", HostLinks::new)
                .await
        })
    }

    /// The probe component, instantiated with exactly what a start of `spec` would give the
    /// plugin: the same policy (so a refused declaration is refused with the same error), the
    /// same preopens, env, args and cwd, the same `host-links` and `engine-metrics` grants, the
    /// same limits. Only the component differs, and it answers `Probe.Check` alone.
    fn start_probe<'a>(
        &'a self,
        spec: &'a PluginSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Instance>, RuntimeError>> {
        Box::pin(async move {
            let policy = self.policy(spec)?;
            let pre = self.probe_pre().await?;
            self.instantiate(spec, policy, pre, "wasm probe", HostLinks::for_check)
                .await
        })
    }
}

/// The probe component's file name, as guest-examples/probe builds it.
pub const PROBE_FILE: &str = "plugd_probe.wasm";

/// Where plugd finds its probe component when not told (the daemon's default for
/// [`WasmRuntimeBuilder::probe_component`]): beside plugd's executable (an install), else where
/// the repository builds it for the same target dir (`<target>/debug/plugd` →
/// `<target>/wasm-guests/wasm32-wasip2/release/plugd_probe.wasm`, as `.ci/test` lays it out).
pub fn default_probe_component() -> Option<PathBuf> {
    probe_component_near(&std::env::current_exe().ok()?)
}

fn probe_component_near(exe: &std::path::Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    [
        dir.join(PROBE_FILE),
        dir.join("../wasm-guests/wasm32-wasip2/release")
            .join(PROBE_FILE),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Reads the probe component, capped as an entrypoint is.
fn read_probe(path: &std::path::Path) -> Result<Vec<u8>, RuntimeError> {
    use std::io::Read;
    let what = |e: String| RuntimeError::Start(format!("probe {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| what(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_ENTRYPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| what(e.to_string()))?;
    if bytes.len() as u64 > MAX_ENTRYPOINT_BYTES {
        return Err(what(format!(
            "is larger than {} MiB",
            MAX_ENTRYPOINT_BYTES >> 20
        )));
    }
    if !crate::entrypoint::is_component(&bytes) {
        return Err(what("is not a WebAssembly component".to_string()));
    }
    Ok(bytes)
}

impl Instance for WasmInstance {
    fn call<'a>(&'a self, method: &'a str, body: Bytes) -> BoxFuture<'a, Reply> {
        Box::pin(async move { WasmInstance::call(self, method, &body).await })
    }

    fn stream<'a>(
        &'a self,
        method: &'a str,
        body: Bytes,
    ) -> BoxFuture<'a, Result<plugd_core::runtime::ByteStream, Reply>> {
        Box::pin(async move { WasmInstance::stream(self, method, &body).await })
    }

    fn health(&self) -> Health {
        WasmInstance::health(self)
    }

    fn log_streams(&self) -> Vec<plugd_core::LogStream> {
        WasmInstance::log_streams(self)
    }

    fn usage(&self) -> plugd_core::Usage {
        WasmInstance::usage(self)
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(WasmInstance::stop(self, grace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn the_probe_is_found_beside_plugd_or_where_the_guests_are_built() {
        let dir = TempDir::new("probe-near");
        let exe = dir.path().join("target/debug/plugd");
        let built = dir.path().join("target/wasm-guests/wasm32-wasip2/release");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&built).unwrap();
        assert_eq!(probe_component_near(&exe), None);
        std::fs::write(built.join(PROBE_FILE), b"").unwrap();
        let found = probe_component_near(&exe).unwrap();
        assert_eq!(
            found.canonicalize().unwrap(),
            built.join(PROBE_FILE).canonicalize().unwrap()
        );
        std::fs::write(exe.with_file_name(PROBE_FILE), b"").unwrap();
        assert_eq!(
            probe_component_near(&exe),
            Some(exe.with_file_name(PROBE_FILE)),
            "an installed one first"
        );
    }
}
