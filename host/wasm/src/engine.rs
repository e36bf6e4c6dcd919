//! The one [`Engine`] of a daemon and the thread that advances its epoch.
//!
//! Wall-clock deadlines use epoch interruption: a plain OS thread calls
//! [`Engine::increment_epoch`] every [`EPOCH_TICK`], and every store sets a deadline a few ticks
//! ahead before each call (see `instance`). The thread is not a tokio task on purpose: a guest
//! spinning on a tokio worker must not be able to starve its own interrupter.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity of call deadlines, and how often a guest that
/// computes without returning yields its tokio worker.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine configuration every plugin runs under. Precompiled artifacts are tied to it (the
/// cache key includes [`Engine::precompile_compatibility_hash`]), so changing it recompiles.
pub(crate) fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    Engine::new(&config)
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped; dropping stops and joins the thread.
pub(crate) struct EpochTicker {
    /// Dropping the sender wakes the thread at once (`Disconnected`), so shutdown takes no tick.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plugd-wasm-epoch".to_string())
            .spawn(move || {
                // Ends when the sender is dropped (`Disconnected`) or sends.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the wasm epoch ticker thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_stops_promptly_on_drop() {
        let engine = new_engine().unwrap();
        let ticker = EpochTicker::start(engine).unwrap();
        std::thread::sleep(EPOCH_TICK * 3);
        let t0 = std::time::Instant::now();
        drop(ticker);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "drop took {:?}",
            t0.elapsed()
        );
    }
}
