//! An example network plugin for plugd, written once on `plugd-plugin-sdk` and packaged twice:
//! this crate is the wasm component (`plugd_example_network.wasm`), `native/` the static binary.

mod driver;

pub use driver::VethDriver;

plugd_plugin_sdk::export_network_driver!(VethDriver);
