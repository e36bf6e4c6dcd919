//! [`WasmRuntime`]: plugd's [`Runtime`] for component bundles.

use crate::RUNTIME_NAME;
use crate::cache::{CacheError, ComponentCache};
use crate::drivers::{Exports, Prepared};
use crate::engine::{EpochTicker, new_engine};
use crate::entrypoint::read_component;
use crate::instance::{CallLimits, HostState, ThreadBudgets, WasmInstance};
use crate::links::HostLinks;
use crate::logstreams::LogStreams;
use crate::metrics::EngineMetrics;
use crate::policy::Policy;
use bytes::Bytes;
use plugd_core::protocol::metrics;
use plugd_core::runtime::BoxFuture;
use plugd_core::{Health, Instance, PluginSpec, Reply, Runtime, RuntimeError};
use std::path::PathBuf;
use std::sync::Arc;
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
                _ticker: ticker,
                prepared: Default::default(),
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
    _ticker: EpochTicker,
    /// What the last `prepare` of each plugin (by id) resolved, so the `start` that follows it at
    /// enable does not read, hash and load the component again. Entries expire after
    /// [`PREPARED_TTL`]: a `prepare` at create is not followed by a `start`.
    prepared:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Arc<Prepared>)>>,
    /// Each plugin's threads (by id), so a restart does not reset how many may be blocked.
    threads: ThreadBudgets,
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

    /// Reads the entrypoint and loads its precompiled code, compiling on a cache miss (off the
    /// async threads: compiling takes 0.1–25 s).
    async fn load(&self, spec: &PluginSpec) -> Result<Component, RuntimeError> {
        let shared = self.shared.clone();
        let spec = spec.clone();
        let task = tokio::task::spawn_blocking(move || {
            let wasm = read_component(&spec)?;
            shared
                .cache
                .load_or_compile(&shared.engine, &wasm, &spec.name)
                .map(|(c, _)| c)
                .map_err(|e| match e {
                    CacheError::Compile(_) => RuntimeError::Bundle(format!("{}: {e}", spec.name)),
                    e => RuntimeError::Start(e.to_string()),
                })
        });
        task.await
            .map_err(|e| RuntimeError::Start(format!("component load task failed: {e}")))?
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
    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    fn prepare<'a>(&'a self, spec: &'a PluginSpec) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            Policy::check(spec)?;
            let component = self.load(spec).await?;
            let pre = self.pre(spec, &component)?;
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
            let policy = Policy::resolve(spec)?;
            let host_links = policy.host_links;
            let prepared = self
                .shared
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&spec.id)
                .filter(|(at, _)| at.elapsed() < PREPARED_TTL);
            let pre = match prepared {
                Some((_, pre)) => pre,
                None => {
                    let component = self.load(spec).await?;
                    self.pre(spec, &component)?
                }
            };
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
                pre,
                policy,
                self.shared.limits,
                Arc::new(HostLinks::new(&spec.id, host_links)),
                logs,
                metrics,
                self.shared.threads.get(&spec.id),
                keepalive,
            )
            .await
            .map_err(|e| {
                RuntimeError::Start(format!("plugin {:?}: cannot instantiate: {e}", spec.name))
            })?;
            tracing::info!(plugin = %spec.name, "wasm plugin started");
            Ok(instance as Arc<dyn Instance>)
        })
    }
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

    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(WasmInstance::stop(self, grace))
    }
}
