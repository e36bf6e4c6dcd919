//! An example volume plugin for plugd, written once on `plugd-plugin-sdk` and packaged twice:
//! this crate is the wasm component (`plugd_example_volume.wasm`), `native/` the static binary.
//! The driver is [`VolumeDirs`]; the README shows how to make a plugin bundle of each packaging.

mod driver;

pub use driver::VolumeDirs;

plugd_plugin_sdk::export_volume_driver!(VolumeDirs, VolumeDirs::from_env());
