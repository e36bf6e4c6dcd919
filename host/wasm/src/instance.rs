//! One long-lived component instance per enabled plugin.
//!
//! The instance is created from a [`VolumePluginPre`] (imports resolved and type-checked once) at
//! start; "ready" means instantiated. Calls are serialized through a tokio mutex around the
//! [`Store`] (a p2 instance is single-threaded; measured fastest). Every call is bounded twice:
//! - **epoch deadline**: before every call the store's deadline is re-armed one epoch tick ahead
//!   and a wall-clock deadline of `call_timeout` is recorded; at each tick (10 ms) the epoch callback
//!   yields the tokio worker (a computing guest never holds a worker for more than one tick) and,
//!   once the wall-clock deadline has passed, interrupts the guest with a trap;
//! - **`tokio::time::timeout`** of `call_timeout` plus a small grace: epochs cannot interrupt a
//!   guest blocked in a host call (a WASI sleep), but dropping the call future can.
//!
//! Any fault (a trap, the interrupt, the timeout, memory growth past the cap) fails that call with
//! a 500 naming the plugin, the call and what happened, and drops the store: a trapped instance
//! would answer "cannot enter component instance" forever. The next call instantiates afresh.

use crate::bindings::{VolumePlugin, VolumePluginPre};
use crate::output::GuestOutput;
use crate::policy::Policy;
use crate::volume;
use plugd_core::{Health, Reply};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Extra time the hard timeout gives the epoch interrupt, so a computing guest is stopped by the
/// cleaner of the two (a trap inside the guest rather than a dropped future).
const TIMEOUT_GRACE: Duration = Duration::from_millis(100);
/// Most resource handles (files, streams) an instance may hold at once.
const MAX_RESOURCES: usize = 10_000;
/// Most bytes a guest may pass to the host in one host call.
const HOSTCALL_FUEL: usize = 16 << 20;
/// Linear memories per instance (each capped at the memory limit).
const MAX_MEMORIES: usize = 16;
/// Core instances and tables per component instance.
const MAX_INSTANCES: usize = 256;

/// Per-instance limits, from the runtime's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    /// Wall-clock budget of one call (and of instantiation).
    pub(crate) call_timeout: Duration,
    /// Bytes each linear memory may grow to.
    pub(crate) memory_limit: usize,
}

/// What a store carries: the WASI context, its resource table, the limiter and the deadline.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    /// Wall-clock end of the current call, checked at every epoch tick.
    deadline: Instant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// [`StoreLimits`] that also remembers whether the memory cap was what failed, for the message.
struct Limits {
    inner: StoreLimits,
    memory_limit: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// An instantiated component and its store.
struct Live {
    store: Store<HostState>,
    bindings: VolumePlugin,
}

/// A running wasm plugin; implements [`plugd_core::Instance`] (see `runtime`).
pub(crate) struct WasmInstance {
    name: String,
    pre: VolumePluginPre<HostState>,
    policy: Policy,
    limits: CallLimits,
    /// Keeps the engine's epoch ticker running while this instance exists.
    _keepalive: Arc<dyn Send + Sync>,
    live: tokio::sync::Mutex<Option<Live>>,
    health: Mutex<Health>,
    stopped: AtomicBool,
    /// Instantiations so far (1 after start), for the logs.
    generation: AtomicU64,
}

impl WasmInstance {
    /// Instantiates the component; returns once it is ready.
    pub(crate) async fn start(
        name: String,
        pre: VolumePluginPre<HostState>,
        policy: Policy,
        limits: CallLimits,
        keepalive: Arc<dyn Send + Sync>,
    ) -> Result<Self, String> {
        let instance = WasmInstance {
            name,
            pre,
            policy,
            limits,
            _keepalive: keepalive,
            live: tokio::sync::Mutex::new(None),
            health: Mutex::new(Health::Ready),
            stopped: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        };
        let live = instance.instantiate().await?;
        *instance.live.lock().await = Some(live);
        Ok(instance)
    }

    /// A fresh store (new WASI context, limits, output budget) and instance.
    async fn instantiate(&self) -> Result<Live, String> {
        let t0 = Instant::now();
        let (stdout, stderr) = GuestOutput::pair(&self.name);
        let wasi = self.policy.wasi_ctx(stdout, stderr)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let limits = Limits {
            inner: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_limit)
                .memories(MAX_MEMORIES)
                .instances(MAX_INSTANCES)
                .tables(MAX_INSTANCES)
                .trap_on_grow_failure(true)
                .build(),
            memory_limit: self.limits.memory_limit,
            memory_exceeded: false,
        };
        let state = HostState {
            wasi,
            table,
            limits,
            deadline: Instant::now(),
        };
        let mut store = Store::new(self.pre.engine(), state);
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
        let bindings =
            match tokio::time::timeout(budget, self.pre.instantiate_async(&mut store)).await {
                Ok(Ok(bindings)) => bindings,
                Ok(Err(e)) => {
                    return Err(describe_fault(
                        &e,
                        store.data(),
                        &self.limits,
                        "instantiation",
                    ));
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
        Ok(Live { store, bindings })
    }

    /// Re-arms the deadlines of `store` for one call.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data_mut().deadline = Instant::now() + self.limits.call_timeout;
        store.set_epoch_deadline(1);
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    }

    /// Serves one protocol call; see the module docs for the fault handling.
    pub(crate) async fn call(&self, method: &str, body: &[u8]) -> Reply {
        let req = match volume::decode(method, body) {
            Ok(req) => req,
            Err(reply) => return reply,
        };
        let name = &self.name;
        let mut slot = self.live.lock().await;
        if self.stopped.load(Ordering::Acquire) {
            return Reply::err(500, &format!("plugin {name:?} is stopped"));
        }
        let mut live = match slot.take() {
            Some(live) => live,
            None => match self.instantiate().await {
                Ok(live) => {
                    self.set_health(Health::Ready);
                    live
                }
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "cannot instantiate wasm plugin");
                    self.set_health(Health::Failed(e.clone()));
                    return Reply::err(500, &format!("plugin {name:?}: cannot instantiate: {e}"));
                }
            },
        };
        self.arm(&mut live.store);
        let budget = self.limits.call_timeout + TIMEOUT_GRACE;
        let outcome = tokio::time::timeout(
            budget,
            volume::invoke(&req, &live.bindings, &mut live.store),
        )
        .await;
        let fault = match outcome {
            Ok(Ok(reply)) => {
                if !self.stopped.load(Ordering::Acquire) {
                    *slot = Some(live);
                }
                return reply;
            }
            Ok(Err(e)) => describe_fault(&e, live.store.data(), &self.limits, "call"),
            Err(_) => format!("timed out after {}", human(self.limits.call_timeout)),
        };
        // Discard the faulted instance; the next call instantiates a fresh one.
        drop(live);
        tracing::warn!(plugin = %name, method, fault = %fault,
            "wasm plugin call failed; instance discarded");
        Reply::err(500, &format!("plugin {name:?}: call {method} {fault}"))
    }

    /// See [`plugd_core::Instance::health`].
    pub(crate) fn health(&self) -> Health {
        if self.stopped.load(Ordering::Acquire) {
            return Health::Failed("stopped".to_string());
        }
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the instance. An in-flight call ends within its deadline and then drops it itself.
    pub(crate) async fn stop(&self, grace: Duration) {
        self.stopped.store(true, Ordering::Release);
        if let Ok(mut slot) = tokio::time::timeout(grace, self.live.lock()).await {
            slot.take();
        }
        tracing::debug!(plugin = %self.name, "wasm instance stopped");
    }
}

/// Says what went wrong in words for the error reply: memory cap, timeout or trap.
fn describe_fault(
    err: &wasmtime::Error,
    state: &HostState,
    limits: &CallLimits,
    what: &str,
) -> String {
    if state.limits.memory_exceeded {
        return format!(
            "exceeded its memory limit of {}",
            human_bytes(limits.memory_limit)
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("timed out after {}", human(limits.call_timeout)),
        Some(trap) => format!("trapped ({trap})"),
        None => format!("{what} failed: {err:#}"),
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
    fn durations_and_sizes_read_well() {
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_millis(10)), "10ms");
        assert_eq!(human_bytes(32 << 20), "32 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
