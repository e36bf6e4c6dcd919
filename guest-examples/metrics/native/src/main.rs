//! `plugd-example-metrics`: the example metrics collector as a native plugin binary, serving
//! Docker's plugin protocol on `/run/docker/plugins/scrape.sock` (`Interface.Socket` of
//! `config-native.json`) and reading the engine's metrics at `/run/docker/metrics.sock`.

#[cfg(target_arch = "wasm32")]
compile_error!(
    "plugd-example-metrics-native is the native packaging; for wasm32 build plugd-example-metrics"
);

// The collector lives in the wasm crate, one copy of the logic for both packagings; it is
// included rather than depended on because that crate is a `cdylib`.
#[path = "../../src/collector.rs"]
mod collector;

use std::process::ExitCode;

fn main() -> ExitCode {
    plugd_plugin_sdk::run_metrics_collector(collector::ScrapeKeeper::from_env(), "scrape.sock")
}
