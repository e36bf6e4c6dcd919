//! Long-lived component instances of an enabled plugin, each on a thread of its own.
//!
//! An instance is created from a [`Prepared`] component (imports resolved and type-checked once,
//! declared exports located); "ready" means the first one is instantiated. A p2 instance serves
//! one call at a time (a tokio mutex around its [`Store`]).
//!
//! **How many instances.** By default one, and every call of the plugin is serialised on it: what
//! the guest keeps in memory between calls is seen by every later call. A plugin whose guest keeps
//! no such state (the SDK's volume example keeps its volumes as directories) declares
//! `PLUGD_INSTANCES=N` in its `config.json` env ([`plugd_core::effective::INSTANCES_ENV`]) and gets
//! a **pool**: a call goes to an idle instance, and when every instance is busy and there are fewer
//! than N, a new one is made (the call that needed it waits for its instantiation); instances are
//! kept until the plugin stops. Log drivers and metrics collectors keep per-stream and per-schedule
//! state in their instance, so the runtime refuses a pool for them at prepare.
//!
//! **The plugin's thread.** Each plugin's store lives on an [`Executor`]: one OS thread running a
//! current-thread tokio runtime, which every call of that plugin is spawned onto. wasmtime-wasi
//! does file I/O on the calling thread (`allow_blocking_current_thread`, 7x faster than
//! `spawn_blocking`), and a guest can make that I/O block in the kernel: a FIFO with no writer in
//! its bind, a hung network filesystem. On the plugin's own thread that blocks only the plugin,
//! never one of plugd's tokio workers (which serve every other plugin and the API) nor plugd's
//! shared blocking pool. What wasmtime-wasi still sends to `spawn_blocking` (stream reads) goes to
//! the executor's own pool of [`BLOCKING_THREADS`].
//!
//! Every call is bounded three times:
//! - **epoch deadline**: before every call the store's deadline is re-armed one epoch tick ahead
//!   and a wall-clock deadline of `call_timeout` is recorded; at each tick (10 ms) the epoch callback
//!   yields (a computing guest never holds its thread for more than one tick) and, once the
//!   wall-clock deadline has passed, interrupts the guest with a trap;
//! - **`tokio::time::timeout`** of `call_timeout` plus a small grace: epochs cannot interrupt a
//!   guest blocked in an async host call (a WASI sleep), but dropping the call future can;
//! - **the watchdog** of the caller, on plugd's runtime: a thread blocked in a system call runs
//!   neither of the two above. Once a call has been running for `call_timeout` plus
//!   [`WEDGE_GRACE`], the caller answers 500 and abandons the executor: its thread ends by itself if
//!   the system call ever returns, and the next call gets a new executor and a fresh instance. A
//!   plugin may have at most its instances plus [`MAX_BLOCKED`] plugin threads (the serving ones
//!   and the abandoned ones still blocked), each with a blocking pool of [`BLOCKING_THREADS`],
//!   however they ended up blocked, counted per plugin id across restarts; past that its calls and
//!   starts fail fast and its health is `Failed` until one of them returns.
//!
//! Any fault (a trap, the interrupt, the timeout, memory growth past the cap) fails that call with
//! a 500 naming the plugin, the call and what happened, and drops the store: a trapped instance
//! would answer "cannot enter component instance" forever. The next call instantiates afresh.
//!
//! **Memory** is capped per instance, not per memory: [`Limits`] counts every linear memory and
//! every table of the store together against `memory_limit` (a table element at
//! [`TABLE_ELEMENT_BYTES`]), so 16 memories cannot take 16 times the cap.

use crate::drivers::{self, Answer, Call, Guests, Prepared};
use crate::links::HostLinks;
use crate::logstreams::LogStreams;
use crate::metrics::{self, EngineMetrics};
use crate::output::GuestOutput;
use crate::policy::Policy;
use plugd_core::observe::{Fault, FaultKind};
use plugd_core::protocol::metrics::Request as MetricsRequest;
use plugd_core::protocol::status;
use plugd_core::{Health, Observer, Reply};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Extra time the hard timeout gives the epoch interrupt, so a computing guest is stopped by the
/// cleaner of the two (a trap inside the guest rather than a dropped future).
const TIMEOUT_GRACE: Duration = Duration::from_millis(100);
/// How long past its deadline a call may go on before its thread counts as blocked in a system
/// call (the in-thread bounds above fire within a tick or two of the deadline when they can).
pub(crate) const WEDGE_GRACE: Duration = Duration::from_millis(500);
/// How often a waiting caller checks the executor.
const WATCHDOG_TICK: Duration = Duration::from_millis(50);
/// Abandoned plugin threads (still blocked in the kernel) a plugin may leave behind on top of the
/// ones serving it. Bounds what one plugin can make plugd hold, whatever it blocks on.
pub(crate) const MAX_BLOCKED: usize = 3;
/// `spawn_blocking` threads of one executor (wasmtime-wasi's stream reads and writes).
const BLOCKING_THREADS: usize = 2;
/// Most resource handles (files, streams) an instance may hold at once.
const MAX_RESOURCES: usize = 10_000;
/// Most bytes a guest may pass to the host in one host call.
const HOSTCALL_FUEL: usize = 16 << 20;
/// Linear memories per instance (all counted together against the memory limit).
const MAX_MEMORIES: usize = 16;
/// Tables per instance (all counted together against the memory limit).
const MAX_TABLES: usize = 256;
/// Core instances per component instance.
const MAX_INSTANCES: usize = 256;
/// What one table element is counted as against the memory limit: the largest element wasmtime
/// keeps for a table (a function reference is a pointer; continuation references take two).
pub(crate) const TABLE_ELEMENT_BYTES: usize = 16;

/// Per-instance limits, from the runtime's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    /// Wall-clock budget of one call (and of instantiation).
    pub(crate) call_timeout: Duration,
    /// Bytes all linear memories and tables of one instance may take together.
    pub(crate) memory_limit: usize,
}

/// What a store carries: the WASI context, its resource table, the limiter and the deadline.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    /// Wall-clock end of the current call, checked at every epoch tick.
    pub(crate) deadline: Instant,
    /// The plugin's `host-links` grant and links, shared by its successive instances.
    pub(crate) links: Arc<HostLinks>,
    /// The plugin's `engine-metrics` grant and tick schedule, shared by its successive instances.
    pub(crate) metrics: Arc<EngineMetrics>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory cap was reached: the growth (or instantiation) traps with this error.
#[derive(Debug, thiserror::Error)]
#[error(
    "growing {what} by {bytes} bytes would pass the instance's memory limit of {limit} bytes ({used} in use)"
)]
pub(crate) struct LimitExceeded {
    what: &'static str,
    bytes: usize,
    used: usize,
    limit: usize,
}

/// One store's accounting: the bytes of all its linear memories and tables together, against one
/// cap. Growth past the cap traps (the instance is then replaced), as does a growth the cap allowed
/// but the allocator could not satisfy.
pub(crate) struct Limits {
    limit: usize,
    used: usize,
    /// What every store of the plugin holds together ([`plugd_core::Usage::memory_bytes`]).
    total: Arc<AtomicUsize>,
    /// The last growth allowed, taken back if the allocation then fails.
    pending: usize,
    /// The cap was what stopped the guest (for the message).
    exceeded: bool,
}

impl Limits {
    pub(crate) fn new(limit: usize, total: Arc<AtomicUsize>) -> Self {
        Limits {
            limit,
            used: 0,
            total,
            pending: 0,
            exceeded: false,
        }
    }

    fn reserve(&mut self, what: &'static str, bytes: usize) -> wasmtime::Result<bool> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.pending = bytes;
                self.total.fetch_add(bytes, Ordering::Relaxed);
                Ok(true)
            }
            _ => {
                self.exceeded = true;
                Err(wasmtime::Error::new(LimitExceeded {
                    what,
                    bytes,
                    used: self.used,
                    limit: self.limit,
                }))
            }
        }
    }

    fn undo(&mut self) {
        self.used -= self.pending;
        self.total.fetch_sub(self.pending, Ordering::Relaxed);
        self.pending = 0;
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.total.fetch_sub(self.used, Ordering::Relaxed);
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.reserve("a linear memory", desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Err(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.reserve("a table", elements.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Err(error)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// An instantiated component and its store.
struct Live {
    store: Store<HostState>,
    guests: Guests,
    /// Which instantiation this is (1 after start): a log stream is started per generation.
    generation: u64,
}

/// The threads of one plugin (by id), shared by its successive instances, so a plugin restarted by
/// the manager does not get a fresh allowance of blocked threads.
#[derive(Default)]
pub(crate) struct ThreadBudget {
    /// Plugin threads (executors) not ended yet.
    alive: AtomicUsize,
    /// Those and the threads of their blocking pools.
    all: AtomicUsize,
}

/// The thread budgets of a runtime, by plugin id.
#[derive(Default)]
pub(crate) struct ThreadBudgets(Mutex<HashMap<String, Arc<ThreadBudget>>>);

impl ThreadBudgets {
    /// The budget of plugin `id`; forgets budgets nobody holds and no thread uses any more.
    pub(crate) fn get(&self, id: &str) -> Arc<ThreadBudget> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, b| Arc::strong_count(b) > 1 || b.all.load(Ordering::Acquire) > 0);
        map.entry(id.to_string()).or_default().clone()
    }
}

/// Gives a plugin thread back to its budget when the thread ends.
struct ThreadSlot(Arc<ThreadBudget>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
        self.0.all.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One plugin thread and the store that lives on it (module docs).
struct Executor {
    handle: tokio::runtime::Handle,
    live: tokio::sync::Mutex<Option<Live>>,
    /// Calls given to this executor and not finished (the pool picks an idle one).
    in_flight: AtomicUsize,
    /// When the running phase (an instantiation or a call) began, if one is running.
    busy_since: Mutex<Option<Instant>>,
    abandoned: AtomicBool,
    /// Dropping it ends the thread (once whatever runs on it returns).
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Executor {
    /// Starts a plugin thread, if the plugin's budget allows one more: `serving` threads (its
    /// instances) and [`MAX_BLOCKED`] abandoned ones, each with its blocking pool.
    fn spawn(name: &str, budget: &Arc<ThreadBudget>, serving: usize) -> Result<Arc<Self>, String> {
        let max = serving + MAX_BLOCKED;
        let max_all = max * (1 + BLOCKING_THREADS);
        let before = budget.alive.fetch_add(1, Ordering::AcqRel);
        let all = budget.all.fetch_add(1, Ordering::AcqRel);
        let slot = ThreadSlot(budget.clone());
        if before >= max {
            return Err(format!(
                "{before} of its threads are serving it or still blocked in host I/O (at most {max})"
            ));
        }
        if all >= max_all {
            return Err(format!(
                "{all} of its threads are still running (at most {max_all})"
            ));
        }
        let (up, down) = (budget.clone(), budget.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, handle) = std::sync::mpsc::sync_channel(1);
        // The plugin's log lines (its output included) go where its starter's go.
        let log = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::Builder::new()
            .name("plugd-wasm-plugin".to_string())
            .spawn(move || {
                let _slot = slot;
                let _log = tracing::dispatcher::set_default(&log);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(BLOCKING_THREADS)
                    .thread_name("plugd-wasm-blocking")
                    .on_thread_start(move || {
                        up.all.fetch_add(1, Ordering::AcqRel);
                    })
                    .on_thread_stop(move || {
                        down.all.fetch_sub(1, Ordering::AcqRel);
                    })
                    .build();
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Never wait for a blocking-pool thread stuck in the kernel.
                rt.shutdown_background();
            })
            .map_err(|e| format!("cannot start a thread for plugin {name:?}: {e}"))?;
        let handle = handle
            .recv()
            .map_err(|_| format!("the thread of plugin {name:?} ended at start"))??;
        Ok(Arc::new(Executor {
            handle,
            live: tokio::sync::Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            busy_since: Mutex::new(None),
            abandoned: AtomicBool::new(false),
            stop: Mutex::new(Some(stop)),
        }))
    }

    fn set_busy(&self, since: Option<Instant>) {
        *self.busy_since.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }

    fn busy_for(&self) -> Option<Duration> {
        self.busy_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Lets the thread end as soon as it can; whatever runs on it is dropped then.
    fn shut(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// A call given to an executor: counted in its `in_flight` until dropped.
struct Claim(Arc<Executor>);

impl Claim {
    fn new(exec: &Arc<Executor>) -> Claim {
        exec.in_flight.fetch_add(1, Ordering::AcqRel);
        Claim(exec.clone())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clears `busy_since` when a phase ends, however it ends.
struct Busy<'a>(&'a Executor);

impl<'a> Busy<'a> {
    fn start(exec: &'a Executor) -> Self {
        exec.set_busy(Some(Instant::now()));
        Busy(exec)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set_busy(None);
    }
}

/// What a plugin's calls share, whichever executor runs them.
struct Inner {
    name: String,
    /// Where the guest's output and the faults go (the plugin's own log, metrics, events).
    observer: Observer,
    /// Bytes of linear memory and tables all of the plugin's stores hold.
    memory: Arc<AtomicUsize>,
    prepared: Arc<Prepared>,
    policy: Policy,
    limits: CallLimits,
    /// Links made for the plugin through `host-links`; deleted at stop.
    links: Arc<HostLinks>,
    /// Keeps the engine's epoch ticker running while this instance exists.
    _keepalive: Arc<dyn Send + Sync>,
    health: Mutex<Health>,
    stopped: AtomicBool,
    /// Instantiations so far (1 after start), for the logs.
    generation: AtomicU64,
    /// A log driver's FIFO streams (`None` for other plugins).
    logs: Option<Arc<LogStreams>>,
    /// A metrics collector's grant and ticks (`metrics`).
    metrics: Arc<EngineMetrics>,
    /// Most instances serving at once (module docs).
    instances: usize,
}

/// A running wasm plugin; implements [`plugd_core::Instance`] (see `runtime`).
pub(crate) struct WasmInstance {
    /// Itself, for the tasks of its log streams (which must not keep it alive).
    me: Weak<WasmInstance>,
    inner: Arc<Inner>,
    budget: Arc<ThreadBudget>,
    /// The executors serving the plugin, at most `inner.instances`; an abandoned one is taken out
    /// (the next call that needs one makes a new one).
    pool: Mutex<Vec<Arc<Executor>>>,
}

impl WasmInstance {
    /// Starts the plugin's thread and instantiates the component there; returns once it is ready.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        name: String,
        observer: Observer,
        prepared: Arc<Prepared>,
        policy: Policy,
        limits: CallLimits,
        links: Arc<HostLinks>,
        logs: Option<Arc<LogStreams>>,
        metrics: Arc<EngineMetrics>,
        budget: Arc<ThreadBudget>,
        keepalive: Arc<dyn Send + Sync>,
        instances: usize,
    ) -> Result<Arc<Self>, String> {
        let instance = Arc::new_cyclic(|me| WasmInstance {
            me: me.clone(),
            inner: Arc::new(Inner {
                name,
                observer,
                memory: Arc::new(AtomicUsize::new(0)),
                prepared,
                policy,
                limits,
                links,
                _keepalive: keepalive,
                health: Mutex::new(Health::Ready),
                stopped: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                logs,
                metrics,
                instances: instances.max(1),
            }),
            budget,
            pool: Mutex::new(Vec::new()),
        });
        let claim = instance.executor()?;
        let exec = claim.0.clone();
        let (inner, on) = (instance.inner.clone(), exec.clone());
        let task = exec.handle.spawn(async move {
            let mut slot = on.live.lock().await;
            let _busy = Busy::start(&on);
            *slot = Some(inner.instantiate().await?);
            Ok::<(), String>(())
        });
        instance.finish(&exec, task).await??;
        if let Some(logs) = &instance.inner.logs {
            logs.resume(instance.me.clone());
        }
        Ok(instance)
    }

    /// The executor for the next call: an idle one; else a new one while the pool has room; else
    /// the least busy (the call queues behind its calls).
    fn executor(&self) -> Result<Claim, String> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idle) = pool
            .iter()
            .find(|e| e.in_flight.load(Ordering::Acquire) == 0)
        {
            return Ok(Claim::new(idle));
        }
        if pool.len() < self.inner.instances {
            match Executor::spawn(&self.inner.name, &self.budget, self.inner.instances) {
                Ok(exec) => {
                    pool.push(exec.clone());
                    if pool.len() > 1 {
                        tracing::debug!(plugin = %self.inner.name, instances = pool.len(), "wasm instance pool grew");
                    }
                    return Ok(Claim::new(&exec));
                }
                // No thread to grow with (its budget is held by blocked ones): queue the call
                // on one that serves, if there is one.
                Err(e) if pool.is_empty() => return Err(e),
                Err(e) => {
                    tracing::debug!(plugin = %self.inner.name, error = %e, "wasm instance pool cannot grow")
                }
            }
        }
        let least = pool
            .iter()
            .min_by_key(|e| e.in_flight.load(Ordering::Acquire))
            .expect("a full pool has an executor");
        Ok(Claim::new(least))
    }

    /// Waits for `task` on `exec`, and abandons `exec` if its thread is blocked (module docs).
    async fn finish<R>(
        &self,
        exec: &Arc<Executor>,
        mut task: tokio::task::JoinHandle<R>,
    ) -> Result<R, String> {
        let wedged_after = self.inner.limits.call_timeout + TIMEOUT_GRACE + WEDGE_GRACE;
        // The first look is one tick away (an interval's first tick is immediate: work for
        // nothing on every call).
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + WATCHDOG_TICK, WATCHDOG_TICK);
        loop {
            tokio::select! {
                done = &mut task => {
                    return done.map_err(|e| if e.is_cancelled() {
                        "was cancelled: the plugin was stopped".to_string()
                    } else {
                        "panicked in the host".to_string()
                    });
                }
                _ = tick.tick() => {
                    if exec.abandoned.load(Ordering::Acquire) {
                        task.abort();
                        return Err(format!(
                            "failed: an earlier call is blocked in host I/O (over {})",
                            human(self.inner.limits.call_timeout)
                        ));
                    }
                    if exec.busy_for().is_some_and(|d| d > wedged_after) {
                        self.abandon(exec);
                        task.abort();
                        return Err(format!(
                            "timed out after {} (blocked in host I/O; its thread was abandoned)",
                            human(self.inner.limits.call_timeout)
                        ));
                    }
                }
            }
        }
    }

    /// Gives up on `exec`: its thread ends by itself when it can; the next call gets a new one.
    fn abandon(&self, exec: &Arc<Executor>) {
        if exec.abandoned.swap(true, Ordering::AcqRel) {
            return;
        }
        exec.shut();
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| !Arc::ptr_eq(e, exec));
        tracing::warn!(plugin = %self.inner.name,
            "wasm plugin thread blocked in host I/O past its deadline; abandoned");
    }

    /// Serves one protocol call; see the module docs for the fault handling. A log driver's
    /// `StartLogging` and `StopLogging` also open and drain the FIFO (`logstreams`); a metrics
    /// collector's successful `StartMetrics` starts its ticks.
    pub(crate) async fn call(&self, method: &str, body: &[u8]) -> Reply {
        let req = match self.inner.prepared.exports.decode(method, body) {
            Ok(req) => req,
            Err(reply) => return reply,
        };
        if req == Call::Metrics(metrics::Call::Protocol(MetricsRequest::Start)) {
            let reply = self.run(method, req).await.into_reply();
            if reply.status == status::OK {
                self.tick_loop();
            }
            return reply;
        }
        use plugd_core::protocol::logdriver::Request as Log;
        match (req, &self.inner.logs) {
            (Call::Log(Log::StartLogging { file, info }), Some(logs)) => {
                logs.start(self, self.me.clone(), file, info, body).await
            }
            (Call::Log(Log::StopLogging { file }), Some(logs)) => logs.stop(self, file).await,
            (Call::Log(Log::ReadLogs { .. }), _) => Reply::err(
                status::PLUGIN_ERROR,
                "LogDriver.ReadLogs is answered as a stream",
            ),
            (req, _) => self.run(method, req).await.into_reply(),
        }
    }

    /// A log driver's `ReadLogs`, as a stream of framed entries (`logstreams`).
    pub(crate) async fn stream(
        &self,
        method: &str,
        body: &[u8],
    ) -> Result<plugd_core::runtime::ByteStream, Reply> {
        use plugd_core::protocol::logdriver::Request as Log;
        match (
            self.inner.prepared.exports.decode(method, body)?,
            &self.inner.logs,
        ) {
            (Call::Log(Log::ReadLogs { info, config }), Some(logs)) => {
                logs.read(self.me.clone(), info, config).await
            }
            _ => Err(self.call(method, body).await),
        }
    }

    /// Ticks a metrics collector at the interval its last `start-metrics` asked for, until the
    /// schedule changes (another start, a stop) or the instance stops or goes away. One tick at a
    /// time, the next one interval after the previous returned; a failed tick (an error, a trap,
    /// a timeout: the instance is then replaced as after any failed call) is logged and the
    /// ticks go on.
    fn tick_loop(&self) {
        let Some((every, generation)) = self.inner.metrics.ticks() else {
            return;
        };
        let me = self.me.clone();
        let name = self.inner.name.clone();
        tracing::info!(plugin = %name, every = %human(every), "metrics collector ticks started");
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(instance) = me.upgrade() else { break };
                let inner = &instance.inner;
                if inner.stopped.load(Ordering::Acquire) || !inner.metrics.is_current(generation) {
                    break;
                }
                let reply = instance
                    .run("tick", Call::Metrics(metrics::Call::Tick))
                    .await
                    .into_reply();
                if reply.status == status::OK {
                    if failing {
                        tracing::info!(plugin = %name, "metrics collector ticks succeed again");
                    }
                    failing = false;
                } else {
                    let why = String::from_utf8_lossy(&reply.body);
                    if failing {
                        tracing::debug!(plugin = %name, reply = %why, "metrics collector tick failed");
                    } else {
                        tracing::warn!(plugin = %name, reply = %why,
                            "metrics collector tick failed; ticking on (further failures are logged at debug)");
                    }
                    failing = true;
                }
            }
            tracing::debug!(plugin = %name, "metrics collector ticks ended");
        });
    }

    /// Live instances and the memory their stores hold.
    pub(crate) fn usage(&self) -> plugd_core::Usage {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        plugd_core::Usage {
            pid: None,
            instances: Some(u32::try_from(pool.len()).unwrap_or(u32::MAX)),
            memory_bytes: Some(self.inner.memory.load(Ordering::Relaxed) as u64),
        }
    }

    /// The counters of a log driver's streams.
    pub(crate) fn log_streams(&self) -> Vec<plugd_core::LogStream> {
        self.inner
            .logs
            .as_ref()
            .map(|l| l.snapshot())
            .unwrap_or_default()
    }

    /// Runs one decoded call on the plugin's thread, within the call limits.
    pub(crate) async fn run(&self, method: &str, req: Call) -> Answer {
        let name = &self.inner.name;
        if self.inner.stopped.load(Ordering::Acquire) {
            return Answer::Reply(Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {name:?} is stopped"),
            ));
        }
        let claim = match self.executor() {
            Ok(claim) => claim,
            Err(e) => {
                self.inner.set_health(Health::Failed(e.clone()));
                return Answer::Reply(Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {name:?}: call {method} failed: {e}"),
                ));
            }
        };
        let exec = claim.0.clone();
        let serve = Inner::serve(self.inner.clone(), exec.clone(), method.to_string(), req);
        // The claim goes with the call's task: a caller that gives up (dockerd hung up) does not
        // make an instance still running its call look idle.
        let task = exec.handle.spawn(async move {
            let _claim = claim;
            serve.await
        });
        match self.finish(&exec, task).await {
            Ok(answer) => answer,
            Err(fault) => {
                tracing::warn!(plugin = %name, method, fault = %fault, "wasm plugin call failed");
                self.inner.observer.fault(&Fault {
                    kind: FaultKind::Timeout,
                    method: Some(method.to_string()),
                    detail: fault.clone(),
                });
                Answer::Reply(Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {name:?}: call {method} {fault}"),
                ))
            }
        }
    }

    /// See [`plugd_core::Instance::health`].
    pub(crate) fn health(&self) -> Health {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Health::Failed("stopped".to_string());
        }
        self.inner
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the instance and lets its thread end. An in-flight call ends within its deadline (or
    /// is abandoned by its caller) and then drops it itself.
    pub(crate) async fn stop(&self, grace: Duration) {
        self.inner.stopped.store(true, Ordering::Release);
        let pool = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|p| p.into_inner()));
        let until = tokio::time::Instant::now() + grace;
        for exec in pool {
            if let Ok(mut slot) = tokio::time::timeout_at(until, exec.live.lock()).await {
                slot.take();
            }
            exec.shut();
        }
        self.inner.links.release_all();
        self.inner.metrics.stopped();
        if let Some(logs) = &self.inner.logs {
            logs.close_all();
        }
        tracing::debug!(plugin = %self.inner.name, "wasm instance stopped");
    }
}

impl Drop for WasmInstance {
    fn drop(&mut self) {
        for exec in self
            .pool
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            exec.shut();
        }
    }
}

impl Inner {
    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    }

    /// A fresh store (new WASI context, limits, output budget) and instance.
    async fn instantiate(&self) -> Result<Live, String> {
        let t0 = Instant::now();
        let (stdout, stderr) = GuestOutput::pair(self.observer.clone());
        let wasi = self.policy.wasi_ctx(stdout, stderr)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = HostState {
            wasi,
            table,
            limits: Limits::new(self.limits.memory_limit, self.memory.clone()),
            deadline: Instant::now(),
            links: self.links.clone(),
            metrics: self.metrics.clone(),
        };
        let mut store = Store::new(self.prepared.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        self.arm(&mut store);
        let budget = self.limits.call_timeout + TIMEOUT_GRACE;
        let instantiated = async {
            let instance = self.prepared.pre.instantiate_async(&mut store).await?;
            self.prepared.exports.load(&mut store, &instance)
        };
        let guests = match tokio::time::timeout(budget, instantiated).await {
            Ok(Ok(guests)) => guests,
            Ok(Err(e)) => {
                return Err(describe_fault(&e, store.data(), &self.limits, "instantiation").1);
            }
            Err(_) => {
                return Err(format!(
                    "instantiation timed out after {}",
                    human(self.limits.call_timeout)
                ));
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(plugin = %self.name, generation, elapsed = ?t0.elapsed(), "wasm instance ready");
        Ok(Live {
            store,
            guests,
            generation,
        })
    }

    /// Re-arms the deadlines of `store` for one call.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data_mut().deadline = Instant::now() + self.limits.call_timeout;
        store.set_epoch_deadline(1);
    }

    /// One call, on the plugin's thread.
    async fn serve(self: Arc<Self>, exec: Arc<Executor>, method: String, req: Call) -> Answer {
        let name = &self.name;
        let mut slot = exec.live.lock().await;
        if self.stopped.load(Ordering::Acquire) {
            return Answer::Reply(Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {name:?} is stopped"),
            ));
        }
        let mut live = match slot.take() {
            Some(live) => live,
            None => {
                let _busy = Busy::start(&exec);
                match self.instantiate().await {
                    Ok(live) => {
                        self.set_health(Health::Ready);
                        live
                    }
                    Err(e) => {
                        tracing::error!(plugin = %name, error = %e, "cannot instantiate wasm plugin");
                        self.set_health(Health::Failed(e.clone()));
                        return Answer::Reply(Reply::err(
                            status::PLUGIN_ERROR,
                            &format!("plugin {name:?}: cannot instantiate: {e}"),
                        ));
                    }
                }
            }
        };
        let _busy = Busy::start(&exec);
        let budget = self.limits.call_timeout + TIMEOUT_GRACE;
        // A log stream reaches a new instance only after its `start-logging` (logstreams).
        let replay = match (&req, &self.logs) {
            (Call::LogBatch { file, .. }, Some(logs)) => logs
                .needs_start(file, live.generation)
                .map(|info| (file.clone(), info)),
            _ => None,
        };
        if let Some((file, info)) = replay {
            self.arm(&mut live.store);
            let start = Call::Log(plugd_core::protocol::logdriver::Request::StartLogging {
                file: file.clone(),
                info,
            });
            let started = tokio::time::timeout(
                budget,
                drivers::invoke(
                    &start,
                    &self.prepared.exports,
                    &live.guests,
                    &mut live.store,
                ),
            )
            .await;
            match started {
                Ok(Ok(Answer::Reply(r))) if r.status == status::OK => {
                    if let Some(logs) = &self.logs {
                        logs.started(&file, live.generation);
                    }
                    tracing::info!(plugin = %name, file, generation = live.generation,
                        "log stream started again on a new instance");
                    // The batch's call is a call of its own, with its own deadline: the watchdog
                    // must not count the replay against it.
                    exec.set_busy(Some(Instant::now()));
                }
                Ok(Ok(answer)) => {
                    *slot = Some(live);
                    return answer;
                }
                Ok(Err(_)) | Err(_) => {
                    drop(live);
                    return Answer::Reply(Reply::err(
                        status::PLUGIN_ERROR,
                        &format!("plugin {name:?}: start-logging {file} failed on a new instance"),
                    ));
                }
            }
        }
        self.arm(&mut live.store);
        let outcome = tokio::time::timeout(
            budget,
            drivers::invoke(&req, &self.prepared.exports, &live.guests, &mut live.store),
        )
        .await;
        let fault = match outcome {
            Ok(Ok(answer)) => {
                if let (
                    Call::Log(plugd_core::protocol::logdriver::Request::StartLogging {
                        file, ..
                    }),
                    Some(logs),
                    Answer::Reply(r),
                ) = (&req, &self.logs, &answer)
                    && r.status == status::OK
                {
                    logs.started(file, live.generation);
                }
                if !self.stopped.load(Ordering::Acquire) && !exec.abandoned.load(Ordering::Acquire)
                {
                    *slot = Some(live);
                }
                return answer;
            }
            Ok(Err(e)) => describe_fault(&e, live.store.data(), &self.limits, "call"),
            Err(_) => (
                FaultKind::Timeout,
                format!("timed out after {}", human(self.limits.call_timeout)),
            ),
        };
        self.observer.fault(&Fault {
            kind: fault.0,
            method: Some(method.clone()),
            detail: fault.1.clone(),
        });
        let fault = fault.1;
        // Discard the faulted instance; the next call instantiates a fresh one.
        drop(live);
        tracing::warn!(plugin = %name, method, fault = %fault,
            "wasm plugin call failed; instance discarded");
        Answer::Reply(Reply::err(
            status::PLUGIN_ERROR,
            &format!("plugin {name:?}: call {method} {fault}"),
        ))
    }
}

/// Says what went wrong, as a class (for metrics and events) and in words for the error reply:
/// memory cap, timeout or trap. A host error that is none of these counts as a trap: the guest's
/// call ended abnormally all the same.
fn describe_fault(
    err: &wasmtime::Error,
    state: &HostState,
    limits: &CallLimits,
    what: &str,
) -> (FaultKind, String) {
    if state.limits.exceeded {
        return (
            FaultKind::MemoryCap,
            format!(
                "exceeded its memory limit of {} (all memories and tables together)",
                human_bytes(limits.memory_limit)
            ),
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => (
            FaultKind::Timeout,
            format!("timed out after {}", human(limits.call_timeout)),
        ),
        Some(trap) => (FaultKind::Trap, format!("trapped ({trap})")),
        None => (FaultKind::Trap, format!("{what} failed: {err:#}")),
    }
}

/// `2s`, `1500ms`.
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `32 MiB`, or bytes when not a whole number of MiB.
fn human_bytes(n: usize) -> String {
    if n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_cap() {
        let mib = 1 << 20;
        let mut l = Limits::new(32 * mib, Arc::default());
        // Two memories of 12 MiB: each under the cap, and together too.
        assert!(l.memory_growing(0, 12 * mib, None).unwrap());
        assert!(l.memory_growing(0, 12 * mib, None).unwrap());
        // A third memory's 12 MiB is not: the growth traps and says why.
        let err = l.memory_growing(0, 12 * mib, None).unwrap_err();
        let err = err
            .downcast_ref::<LimitExceeded>()
            .expect("a LimitExceeded");
        assert_eq!((err.used, err.bytes), (24 * mib, 12 * mib));
        assert!(l.exceeded);
        // A table's elements count as well: 8 MiB left = 512 Ki elements of 16 bytes.
        assert!(l.table_growing(0, 512 << 10, None).unwrap());
        assert!(l.table_growing(512 << 10, (512 << 10) + 1, None).is_err());
        // Growing an existing memory counts only the difference.
        let mut l = Limits::new(32 * mib, Arc::default());
        assert!(l.memory_growing(0, 16 * mib, None).unwrap());
        assert!(l.memory_growing(16 * mib, 32 * mib, None).unwrap());
        assert!(l.memory_growing(32 * mib, 32 * mib + 65536, None).is_err());
    }

    #[test]
    fn a_growth_the_allocator_refused_is_taken_back() {
        let mib = 1 << 20;
        let mut l = Limits::new(32 * mib, Arc::default());
        assert!(l.memory_growing(0, 30 * mib, None).unwrap());
        assert!(
            l.memory_grow_failed(wasmtime::Error::msg("mmap failed"))
                .is_err(),
            "a failed growth still traps"
        );
        assert!(
            l.memory_growing(0, 30 * mib, None).unwrap(),
            "30 MiB free again"
        );
        assert!(l.table_growing(0, 1000, None).unwrap());
        let _ = l.table_grow_failed(wasmtime::Error::msg("no memory"));
        assert_eq!(l.used, 30 * mib);
    }

    #[test]
    fn blocking_pool_threads_count_against_the_plugin_even_after_shutdown() {
        let budget = Arc::new(ThreadBudget::default());
        let exec = Executor::spawn("p", &budget, 1).unwrap();
        assert_eq!(budget.all.load(Ordering::Acquire), 1);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        for _ in 0..2 {
            let released = released.clone();
            // Stuck until released, like a read in the kernel.
            exec.handle.spawn_blocking(move || {
                let _ = released.lock().unwrap().recv();
            });
        }
        let counted = |n: usize| {
            let t0 = Instant::now();
            while budget.all.load(Ordering::Acquire) != n {
                assert!(t0.elapsed() < Duration::from_secs(10), "never {n} threads");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        counted(3);
        exec.shut();
        drop(exec);
        // The plugin thread ends; its stuck pool threads still count.
        counted(2);
        assert_eq!(budget.alive.load(Ordering::Acquire), 0);
        drop(release);
        counted(0);
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_millis(10)), "10ms");
        assert_eq!(human_bytes(32 << 20), "32 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
