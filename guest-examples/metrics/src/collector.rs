//! [`ScrapeKeeper`]: at every tick, scrape the engine's metrics and keep the latest scrape where
//! the host can read it.
//!
//! Under its directory (`METRICS_DIR`, the propagated mount `/data` by default, so the files are
//! on the host under the plugin's propagated-mount directory):
//! - `metrics.prom`: the latest scrape, Prometheus text, replaced whole (written beside, then
//!   renamed) so a reader never sees half of one;
//! - `scrapes`: how many scrapes were kept, in decimal;
//! - `ticks`: how many ticks began (a tick that fails before keeping its scrape counts here only).
//!
//! The counts are on disk, not in memory, because a wasm instance is replaced after a failed
//! tick. `INTERVAL_MS` is the tick interval asked for at start. `FAULT` (for plugd's tests) makes
//! every third tick fail after counting itself: `panic` (a trap in wasm), `loop` (spins until
//! plugd's call deadline stops it; wasm only, a native server has nothing to stop it) or `error`.

use plugd_plugin_sdk::{Error, MetricsCollector, scrape};
use std::path::PathBuf;

/// The collector; its settings come from the plugin's environment ([`ScrapeKeeper::from_env`]).
#[derive(Debug, Clone)]
pub struct ScrapeKeeper {
    dir: PathBuf,
    interval_ms: u32,
    fault: Fault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Panic,
    Loop,
    Error,
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::internal(format!("{what}: {e}"))
}

impl ScrapeKeeper {
    /// From `METRICS_DIR` (default `/data`), `INTERVAL_MS` (default 1000) and `FAULT`.
    pub fn from_env() -> ScrapeKeeper {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        ScrapeKeeper {
            dir: var("METRICS_DIR").unwrap_or_else(|| "/data".into()).into(),
            interval_ms: var("INTERVAL_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000),
            fault: match var("FAULT").as_deref() {
                Some("panic") => Fault::Panic,
                Some("loop") => Fault::Loop,
                Some("error") => Fault::Error,
                _ => Fault::None,
            },
        }
    }

    fn count(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.dir.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Replaces `name` whole: written beside it, then renamed over it.
    fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data).map_err(|e| io("writing the scrape", e))?;
        std::fs::rename(&tmp, self.dir.join(name)).map_err(|e| io("keeping the scrape", e))
    }

    fn bump(&self, name: &str) -> Result<u64, Error> {
        let n = self.count(name) + 1;
        self.put(name, format!("{n}\n").as_bytes())?;
        Ok(n)
    }
}

impl MetricsCollector for ScrapeKeeper {
    fn start(&self) -> Result<u32, Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io("creating the metrics directory", e))?;
        Ok(self.interval_ms)
    }

    fn tick(&self) -> Result<(), Error> {
        let tick = self.bump("ticks")?;
        if tick.is_multiple_of(3) {
            match self.fault {
                Fault::None => {}
                Fault::Panic => panic!("FAULT=panic: tick {tick} panics"),
                Fault::Loop => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Fault::Error => return Err(Error::internal(format!("FAULT=error: tick {tick}"))),
            }
        }
        let metrics = scrape()?;
        self.put("metrics.prom", metrics.as_bytes())?;
        self.bump("scrapes").map(drop)
    }
}
