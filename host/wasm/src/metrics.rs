//! Metrics collectors: the `docker:plugin/metrics-collector` WIT interface ↔
//! [`plugd_core::protocol::metrics`], the tick schedule a guest asks for at `start-metrics`
//! (run by `instance`), and the `docker:plugin/engine-metrics` import.
//!
//! What a guest can do with the import is bounded by plugd, not by the guest:
//! - **only with the declaration**: it works only for a plugin whose `Interface.Types` declare
//!   `docker.metricscollector/*`; it is linked for every component all the same (so a component
//!   importing it still instantiates), and every other plugin's calls fail `unsupported`, naming
//!   the missing declaration;
//! - **only the engine's socket**: the one path given to `plugd daemon --engine-metrics-socket`
//!   (dockerd's `<exec-root>/metrics.sock`), and only `GET /metrics` on it; the guest names no
//!   path, address or request. Without the flag every call fails `unsupported`, saying so;
//! - **bounded**: one request per call, answered within [`SCRAPE_TIMEOUT`] or what is left of the
//!   calling guest's deadline if that is sooner (the call runs on the plugin's own thread, so a
//!   slow engine holds only that plugin), and at most [`MAX_SCRAPE`] bytes of UTF-8.
//!
//! This is what a native collector gets from the same declaration: dockerd's socket bound
//! read-only at `/run/docker/metrics.sock`, which serves nothing but `GET /metrics`.

use crate::bindings::metrics_collector::Guest;
use crate::bindings::{ErrorCode, GuestError, engine_metrics};
use crate::drivers::driver_error;
use crate::instance::HostState;
use plugd_core::Reply;
use plugd_core::protocol::metrics::{MAX_SCRAPE, Request, Response, encode, scrape};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

/// Longest one scrape may take (dockerd answers in milliseconds).
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest tick interval: a guest asking for less gets this, so a collector cannot keep its
/// thread (and plugd's log, when its ticks fail) busy.
pub(crate) const MIN_TICK: Duration = Duration::from_millis(100);

/// One plugin's grant and tick schedule, shared by its successive instances (a tick that traps
/// replaces the instance, not the schedule).
pub(crate) struct EngineMetrics {
    /// The socket when granted, else why not (the message every scrape fails with).
    socket: Result<PathBuf, String>,
    schedule: Mutex<Schedule>,
}

/// The ticks the last `start-metrics` asked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    every: Option<Duration>,
    /// Bumped at every start and stop, so a tick loop of an earlier start ends.
    generation: u64,
}

fn error(code: ErrorCode, message: impl Into<String>) -> GuestError {
    GuestError {
        code,
        message: message.into(),
    }
}

impl EngineMetrics {
    /// The grant of a plugin: `declared` is whether it declares `docker.metricscollector/*`,
    /// `socket` the daemon's `--engine-metrics-socket`.
    pub(crate) fn new(declared: bool, socket: Option<PathBuf>) -> EngineMetrics {
        let socket = match (declared, socket) {
            (false, _) => Err("engine-metrics works only for a plugin declaring \
                               docker.metricscollector/1.0 in Interface.Types"
                .to_string()),
            (true, None) => Err("plugd was started without --engine-metrics-socket, \
                                 so it has no engine metrics to give"
                .to_string()),
            (true, Some(path)) => Ok(path),
        };
        EngineMetrics {
            socket,
            schedule: Mutex::new(Schedule::default()),
        }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `start-metrics` answered `ms`: ticks from now on, replacing any earlier schedule.
    fn started(&self, ms: u32) {
        let mut s = self.schedule();
        s.generation += 1;
        s.every = (ms > 0).then(|| Duration::from_millis(ms.into()).max(MIN_TICK));
    }

    /// No more ticks (`stop-metrics`, whatever it answers).
    pub(crate) fn stopped(&self) {
        let mut s = self.schedule();
        s.generation += 1;
        s.every = None;
    }

    /// The current schedule: its interval and generation, if it ticks.
    pub(crate) fn ticks(&self) -> Option<(Duration, u64)> {
        let s = *self.schedule();
        s.every.map(|every| (every, s.generation))
    }

    /// Whether schedule `generation` is still the current one.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        let s = *self.schedule();
        s.every.is_some() && s.generation == generation
    }

    /// One scrape, ending by `deadline` at the latest.
    pub(crate) fn scrape(&self, deadline: Instant) -> Result<String, GuestError> {
        let socket = self
            .socket
            .as_ref()
            .map_err(|why| error(ErrorCode::Unsupported, why.clone()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(error(ErrorCode::Internal, "the call's deadline has passed"));
        }
        let t0 = Instant::now();
        let text = scrape(socket, left.min(SCRAPE_TIMEOUT), MAX_SCRAPE)
            .map_err(|e| error(ErrorCode::Internal, format!("engine metrics: {e}")))?;
        tracing::debug!(bytes = text.len(), elapsed = ?t0.elapsed(), "engine metrics scraped");
        Ok(text)
    }
}

/// What plugd calls a collector for: a protocol call, or a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Protocol(Request),
    Tick,
}

/// Calls the guest. `Ok` carries the reply, guest-reported errors included; `Err` is a fault of
/// the instance itself (trap, interrupt), after which it must be discarded.
pub(crate) async fn invoke(
    call: Call,
    guest: &Guest,
    store: &mut Store<HostState>,
) -> wasmtime::Result<Reply> {
    let s = &mut *store;
    let answer = match call {
        Call::Protocol(Request::Activate) => Ok(Response::Activate),
        Call::Protocol(Request::Start) => match guest.call_start_metrics(&mut *s).await? {
            Ok(ms) => {
                s.data().metrics.started(ms);
                Ok(Response::Done)
            }
            Err(e) => Err(e),
        },
        Call::Protocol(Request::Stop) => {
            // No tick after a stop, whatever the guest answers.
            s.data().metrics.stopped();
            guest
                .call_stop_metrics(&mut *s)
                .await?
                .map(|()| Response::Done)
        }
        Call::Tick => guest.call_tick(&mut *s).await?.map(|()| Response::Done),
    };
    Ok(encode(answer.map_err(driver_error)))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    engine_metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl engine_metrics::Host for HostState {
    fn scrape(&mut self) -> Result<String, GuestError> {
        self.metrics.scrape(self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_declaration_or_the_flag_every_scrape_says_why() {
        let far = Instant::now() + Duration::from_secs(5);
        let m = EngineMetrics::new(false, Some("/run/docker/metrics.sock".into()));
        let e = m.scrape(far).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(
            e.message.contains("docker.metricscollector"),
            "{}",
            e.message
        );
        let m = EngineMetrics::new(true, None);
        let e = m.scrape(far).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(
            e.message.contains("--engine-metrics-socket"),
            "{}",
            e.message
        );
        let m = EngineMetrics::new(true, Some("/nonexistent/metrics.sock".into()));
        let e = m.scrape(far).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.contains("cannot connect"), "{}", e.message);
        assert_eq!(
            m.scrape(Instant::now()).unwrap_err().code,
            ErrorCode::Internal
        );
    }

    #[test]
    fn schedules_are_floored_replaced_and_ended() {
        let m = EngineMetrics::new(true, None);
        assert_eq!(m.ticks(), None);
        m.started(1);
        let (every, first) = m.ticks().unwrap();
        assert_eq!(every, MIN_TICK);
        assert!(m.is_current(first));
        m.started(2500);
        let (every, second) = m.ticks().unwrap();
        assert_eq!(every, Duration::from_millis(2500));
        assert!(!m.is_current(first) && m.is_current(second));
        m.stopped();
        assert!(!m.is_current(second));
        m.started(0);
        assert_eq!(m.ticks(), None);
    }
}
