//! Metrics collectors (`docker.metricscollector/1.0`): the [`MetricsCollector`] trait, [`scrape`]
//! for the engine's metrics, the native server ([`run_metrics_collector`]) and the wasm export
//! ([`export_metrics_collector!`](crate::export_metrics_collector)).
//!
//! A collector is started once it may read the engine's metrics (by plugd, which calls
//! `StartMetrics` after enabling it; dockerd does the same for its managed plugins) and answers
//! with a tick interval; it is then ticked at that interval until it is stopped, and reads the
//! engine's Prometheus text with [`scrape`] whenever it likes (from a tick, typically). Both
//! packagings give the same contract:
//!
//! * **wasm**: plugd ticks the guest (a component has no threads or timers) and [`scrape`] is
//!   plugd's `engine-metrics` import, which reads the engine socket plugd was started with;
//! * **native**: the SDK's server ticks the collector on its own thread, between calls (never
//!   during one: calls and ticks never overlap), and [`scrape`] does `GET /metrics` on
//!   `/run/docker/metrics.sock`, where plugd (and dockerd, for its managed plugins) binds the
//!   engine's socket read-only.
//!
//! A failing tick is logged and the ticks go on. In wasm a tick that traps or runs past plugd's
//! deadline also replaces the instance (its memory is fresh afterwards): keep what must survive
//! on disk.

use crate::Error;

/// A Docker metrics collector, written once for both packagings. Calls and ticks never overlap.
pub trait MetricsCollector {
    /// `StartMetrics`: the engine's metrics may now be read. Returns the interval in
    /// milliseconds at which [`tick`](Self::tick) is to be called (0: never; hosts raise
    /// anything under 100 to 100).
    fn start(&self) -> Result<u32, Error>;

    /// `StopMetrics`: no tick follows. Default: nothing to do.
    fn stop(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Called every interval between `start` and `stop`.
    fn tick(&self) -> Result<(), Error>;
}

/// The engine's metrics now: Prometheus text (`engine_daemon_*`), at most
/// [`MAX_SCRAPE`](plugd_core::protocol::metrics::MAX_SCRAPE) bytes, within 5 s.
pub fn scrape() -> Result<String, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::bindings::docker::plugin::engine_metrics::scrape()
            .map_err(crate::network::wasm::from_wit)
    }
    #[cfg(all(unix, not(target_arch = "wasm32")))]
    {
        use plugd_core::protocol::metrics::{MAX_SCRAPE, SANDBOX_SOCKET};
        plugd_core::protocol::metrics::scrape(
            std::path::Path::new(SANDBOX_SOCKET),
            std::time::Duration::from_secs(5),
            MAX_SCRAPE,
        )
        .map_err(|e| Error::internal(format!("engine metrics: {e}")))
    }
    #[cfg(not(any(unix, target_arch = "wasm32")))]
    {
        Err(Error::unsupported("no engine metrics on this target"))
    }
}

/// The native packaging: the protocol handler and the tick loop on the server's thread.
#[cfg(all(unix, not(target_arch = "wasm32")))]
mod native {
    use super::MetricsCollector;
    use crate::protocol::Reply;
    use crate::server::{Handler, run, serve};
    use plugd_core::protocol::metrics::{Request, Response, encode};
    use std::cell::Cell;
    use std::io::Write as _;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::Path;
    use std::process::ExitCode;
    use std::rc::Rc;
    use std::time::Duration;

    /// Shortest interval, as plugd's wasm host has it.
    const MIN_TICK: Duration = Duration::from_millis(100);

    /// A [`MetricsCollector`] as a [`Handler`], with its schedule: ticks run as a task of the
    /// server's current-thread runtime, so they interleave with calls but never overlap one.
    struct Collector<C> {
        collector: Rc<C>,
        /// Bumped at every start and stop, which ends the ticks of an earlier start.
        generation: Rc<Cell<u64>>,
    }

    fn log(message: std::fmt::Arguments<'_>) {
        let _ = writeln!(std::io::stderr(), "metrics collector: {message}");
    }

    impl<C: MetricsCollector + 'static> Collector<C> {
        fn start(&self) -> Result<Response, crate::Error> {
            let ms = self.collector.start()?;
            self.generation.set(self.generation.get() + 1);
            if ms > 0 {
                let every = Duration::from_millis(ms.into()).max(MIN_TICK);
                let (collector, generation) = (self.collector.clone(), self.generation.clone());
                let mine = generation.get();
                // `handle` runs inside the server's LocalSet.
                tokio::task::spawn_local(async move {
                    let mut failing = false;
                    loop {
                        tokio::time::sleep(every).await;
                        if generation.get() != mine {
                            break;
                        }
                        let ticked = catch_unwind(AssertUnwindSafe(|| collector.tick()))
                            .unwrap_or_else(|_| Err(crate::Error::internal("tick panicked")));
                        match ticked {
                            Ok(()) => failing = false,
                            Err(e) if !failing => {
                                log(format_args!("tick failed: {e}; ticking on"));
                                failing = true;
                            }
                            Err(_) => {}
                        }
                    }
                });
            }
            Ok(Response::Done)
        }
    }

    impl<C: MetricsCollector + 'static> Handler for Collector<C> {
        fn handle(&self, endpoint: &str, body: &[u8]) -> Reply {
            let request = match Request::decode(endpoint, body) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            encode(match request {
                Request::Activate => Ok(Response::Activate),
                Request::Start => self.start(),
                Request::Stop => {
                    self.generation.set(self.generation.get() + 1);
                    self.collector.stop().map(|()| Response::Done)
                }
            })
        }
    }

    fn handler<C: MetricsCollector + 'static>(collector: C) -> Collector<C> {
        Collector {
            collector: Rc::new(collector),
            generation: Rc::new(Cell::new(0)),
        }
    }

    /// A metrics collector's `main`: [`run`] for a [`MetricsCollector`].
    pub fn run_metrics_collector<C: MetricsCollector + 'static>(
        collector: C,
        default_socket: &str,
    ) -> ExitCode {
        run(handler(collector), default_socket)
    }

    /// [`serve`] for a [`MetricsCollector`].
    pub fn serve_metrics_collector<C: MetricsCollector + 'static>(
        collector: C,
        socket: &Path,
    ) -> std::io::Result<()> {
        serve(handler(collector), socket)
    }
}

#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use native::{run_metrics_collector, serve_metrics_collector};

/// The wasm packaging: the guest side of world `metrics-plugin`, generated in a module of its own
/// like the other worlds, and the conversions
/// [`export_metrics_collector!`](crate::export_metrics_collector) calls.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm {
    use super::MetricsCollector;

    /// The guest side of `wit/metrics.wit`.
    pub mod bindings {
        wit_bindgen::generate!({
            world: "metrics-plugin",
            path: "../../wit",
            // One `types` for every world: one error type, converted in one place (`crate::wasm`).
            with: { "docker:plugin/types@0.1.0": crate::wasm::bindings::docker::plugin::types, },
            pub_export_macro: true,
            export_macro_name: "__export_metrics_plugin",
        });
    }

    use crate::wasm::bindings::docker::plugin::types as wit_types;
    use crate::wasm::error;

    pub use bindings::exports::docker::plugin::metrics_collector::Guest;
    /// WIT `error`.
    pub type WitError = wit_types::Error;

    pub fn start<C: MetricsCollector>(c: &C) -> Result<u32, WitError> {
        c.start().map_err(error)
    }

    pub fn stop<C: MetricsCollector>(c: &C) -> Result<(), WitError> {
        c.stop().map_err(error)
    }

    pub fn tick<C: MetricsCollector>(c: &C) -> Result<(), WitError> {
        c.tick().map_err(error)
    }
}
