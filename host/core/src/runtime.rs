//! The one interface the manager uses to run a plugin, whatever runs it.
//!
//! Life of a plugin under a runtime:
//! 1. [`Runtime::prepare`] at create and at enable: refuse what this runtime cannot honour (by name),
//!    and do the expensive one-off work (compiling a component) so `start` is cheap.
//! 2. [`Runtime::start`] at enable and at plugd start: returns an [`Instance`] once it is **ready**.
//! 3. [`Instance::call`] for every protocol request plugd's engine-facing socket receives.
//! 4. [`Instance::health`] whenever the manager asks; [`Instance::stop`] at disable, rm and shutdown.
//!
//! **Ready** means the instance answers protocol calls: for wasm the component is instantiated; for a
//! native process its socket accepts a connection (dockerd's own test, without its fixed 500 ms sleep).
//! **Healthy** means the next call can be served without the manager doing anything. A runtime repairs
//! what it can by itself (a wasm instance that trapped is replaced on the next call) and reports
//! [`Health::Failed`] only when it cannot; the manager then stops the instance and starts it again with
//! backoff, leaving the plugin enabled and its engine-facing socket in place.

use crate::config::{PluginConfig, Settings};
use bytes::Bytes;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future, so the traits stay object-safe (the manager holds `Arc<dyn Runtime>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The body of a reply that arrives in pieces (`LogDriver.ReadLogs`): chunks as the plugin
/// produced them, with no framing implied; an `Err` ends the stream as failed.
pub type ByteStream = Pin<Box<dyn futures_core::Stream<Item = Result<Bytes, String>> + Send>>;

/// A [`ByteStream`] of one chunk: a whole reply body as a stream.
pub fn one_chunk(body: Bytes) -> ByteStream {
    struct Once(Option<Bytes>);
    impl futures_core::Stream for Once {
        type Item = Result<Bytes, String>;
        fn poll_next(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take().map(Ok))
        }
    }
    Box::pin(Once(Some(body)))
}

/// Everything a runtime needs to run one plugin, resolved by the manager from the store.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// 64-hex plugin id.
    pub id: String,
    /// `name:tag`, for log tags and errors.
    pub name: String,
    /// The declared configuration.
    pub config: PluginConfig,
    /// The effective settings (env, args, mount sources, device paths).
    pub settings: Settings,
    /// The plugin's root filesystem on the host.
    pub rootfs: PathBuf,
    /// Host directory backing `PropagatedMount`, created by the manager; `None` when not declared.
    pub propagated_mount: Option<PathBuf>,
    /// The plugin's runtime dir under the exec-root: where it puts its socket. The native runtime
    /// binds it at `/run/docker/plugins` inside the sandbox, so **the plugin can write here**:
    /// nothing plugd trusts may live in it.
    pub runtime_dir: PathBuf,
    /// A per-plugin directory for the runtime's own bookkeeping (state files, log FIFOs), created
    /// 0700 by the manager and never visible to the plugin.
    pub state_dir: PathBuf,
    /// Where the plugin's output and the runtime's faults go (its own log, metrics, events).
    pub observer: crate::Observer,
}

impl PluginSpec {
    /// What this plugin gets, read once from config and settings; both runtimes build from it.
    pub fn effective(&self) -> crate::effective::Effective {
        crate::effective::Effective::of(&self.config, &self.settings)
    }

    /// argv: entrypoint followed by the effective args.
    pub fn argv(&self) -> Vec<String> {
        self.effective().args
    }
}

/// One protocol reply, relayed to the engine as is (plugd only rewrites paths and tracks mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status; only 200 is success for dockerd.
    pub status: u16,
    /// JSON body.
    pub body: Bytes,
}

impl Reply {
    /// A 200 with a JSON body.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Reply {
            status: crate::protocol::status::OK,
            body: body.into(),
        }
    }

    /// An error in the protocol's shape: `{"Err": message}` with the given status, one of
    /// [`crate::protocol::status`].
    pub fn err(status: u16, message: &str) -> Self {
        let body = serde_json::to_vec(&crate::protocol::ErrBody {
            err: message.to_string(),
        })
        .expect("a string always serializes");
        Reply {
            status,
            body: body.into(),
        }
    }
}

/// Counters of one log stream (a container logging to a log plugin), from the FIFO dockerd
/// writes to the driver: what a user needs to know whether lines were lost, and which.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogStream {
    /// The FIFO's path as dockerd named it.
    #[serde(rename = "File")]
    pub file: String,
    /// The container.
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// Entries plugd read from the FIFO.
    #[serde(rename = "Received")]
    pub received: u64,
    /// Entries the driver accepted (wasm: `log` returned ok; native: written whole to the
    /// plugin's FIFO).
    #[serde(rename = "Delivered")]
    pub delivered: u64,
    /// Entries lost: buffer full, a failed or trapped `log` call, a frame cut by a crash.
    #[serde(rename = "Dropped")]
    pub dropped: u64,
    /// Whether the stream is still open (false: stopped, kept for the record until the plugin
    /// stops).
    #[serde(rename = "Open")]
    pub open: bool,
}

/// What an instance reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Ready,
    /// Cannot serve and cannot repair itself (process gone, component cannot be instantiated).
    Failed(String),
}

/// Why a runtime refused or failed. Messages name the plugin field or file involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The bundle declares something this runtime cannot enforce; nothing was started.
    #[error("{runtime} runtime cannot honour {what}")]
    Unsupported {
        /// `wasm` or `native`.
        runtime: &'static str,
        /// The declared privilege or field, e.g. `network type "host"`.
        what: String,
    },
    /// The bundle is malformed for this runtime (entrypoint missing, not a component...).
    #[error("{0}")]
    Bundle(String),
    /// Starting or stopping failed.
    #[error("{0}")]
    Start(String),
}

/// A way of running plugins (wasm, native).
pub trait Runtime: Send + Sync {
    /// `wasm` or `native`, for messages and `inspect`.
    fn name(&self) -> &'static str;

    /// Refuse what this runtime cannot honour and do one-off work (compile) ahead of `start`.
    fn prepare<'a>(&'a self, spec: &'a PluginSpec) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Start the plugin and return once it is ready to serve calls. The manager bounds the wait
    /// and cancels a start (drops the future) when the user disables or removes the plugin
    /// meanwhile, so dropping it at any point must leave nothing running: what was started is
    /// stopped, if need be on a task that [`Runtime::settle`] waits for.
    fn start<'a>(
        &'a self,
        spec: &'a PluginSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Instance>, RuntimeError>>;

    /// Starts plugd's probe (`plugd check`) **in place of the plugin's entrypoint**, in the
    /// sandbox this runtime would give the plugin `spec` describes — same grants, mounts,
    /// namespaces, imports — and returns once it answers [`crate::check::probe::CHECK_METHOD`]
    /// through [`Instance::call`]. The manager gives a spec of its own for the check (its own id
    /// suffix, runtime, state and propagated-mount dirs, [`crate::check::probe::PROBE_SOCKET`]), so
    /// a probe never touches the running plugin, and stops the instance when done. A runtime
    /// without a probe answers [`RuntimeError::Unsupported`].
    fn start_probe<'a>(
        &'a self,
        spec: &'a PluginSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn Instance>, RuntimeError>> {
        let _ = spec;
        let runtime = self.name();
        Box::pin(async move {
            Err(RuntimeError::Unsupported {
                runtime,
                what: "plugd check (no probe for this runtime)".to_string(),
            })
        })
    }

    /// Whether a mount the plugin makes can appear inside its filesystem as plugd sees it from the
    /// host (its propagated mount): then looking up a path the plugin reports may block for as long
    /// as the plugin likes (a FUSE filesystem that never answers), and plugd's gateway resolves its
    /// paths off its async workers. Otherwise it resolves them in place, which saves two thread
    /// hand-offs per `Get`. The default is the safe answer.
    fn plugin_can_mount(&self, spec: &PluginSpec) -> bool {
        let _ = spec;
        true
    }

    /// Waits until the cleanup of a cancelled [`Runtime::start`] of this plugin is over, so a
    /// disable or rm reports done only once nothing of the plugin runs or stays mounted. The
    /// default is for runtimes whose cancelled starts leave nothing behind.
    fn settle<'a>(&'a self, spec: &'a PluginSpec) -> BoxFuture<'a, ()> {
        let _ = spec;
        Box::pin(async {})
    }
}

/// A running plugin.
pub trait Instance: Send + Sync {
    /// Serve one protocol call. `method` is the path without its leading `/` (`VolumeDriver.Get`);
    /// `body` is the request body as the engine sent it (maybe empty). Never panics and never hangs
    /// past the runtime's per-call deadline: failures come back as an error [`Reply`].
    fn call<'a>(&'a self, method: &'a str, body: Bytes) -> BoxFuture<'a, Reply>;

    /// Serve a call whose successful reply is a stream rather than one JSON body
    /// (`LogDriver.ReadLogs`, which dockerd reads until the stream ends and which may stay open
    /// while a container runs). `Err` is the whole reply of a call that failed before streaming.
    /// No deadline applies once streaming has started: the consumer (dockerd) ends it by going
    /// away. The default serves it as an ordinary call whose body is one chunk.
    fn stream<'a>(
        &'a self,
        method: &'a str,
        body: Bytes,
    ) -> BoxFuture<'a, Result<ByteStream, Reply>> {
        Box::pin(async move {
            let reply = self.call(method, body).await;
            if reply.status == crate::protocol::status::OK {
                Ok(one_chunk(reply.body))
            } else {
                Err(reply)
            }
        })
    }

    /// See the module docs for what healthy means.
    fn health(&self) -> Health;

    /// The log streams of a log driver, with their counters; empty for other plugins.
    fn log_streams(&self) -> Vec<LogStream> {
        Vec::new()
    }

    /// What the instance holds now, for `plugd ps` and the metrics; all unknown by default.
    fn usage(&self) -> Usage {
        Usage::default()
    }

    /// Stop serving and release everything; `grace` bounds a graceful stop before a forced one.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()>;
}

/// What one running plugin holds, as its runtime measures it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The plugin's main process on the host (native).
    pub pid: Option<u32>,
    /// Live instances (wasm; more than one with an instance pool).
    pub instances: Option<u32>,
    /// Resident memory: the processes' RSS (native), the instances' linear memories and tables
    /// (wasm).
    pub memory_bytes: Option<u64>,
}
