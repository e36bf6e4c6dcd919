//! An example metrics collector for plugd, written once on `plugd-plugin-sdk` and packaged twice:
//! this crate is the wasm component (`plugd_example_metrics.wasm`), `native/` the static binary.
//! The collector is [`ScrapeKeeper`]; the README shows how to make a plugin bundle of each.

mod collector;

pub use collector::ScrapeKeeper;

plugd_plugin_sdk::export_metrics_collector!(ScrapeKeeper, ScrapeKeeper::from_env());
