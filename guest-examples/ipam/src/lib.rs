//! An example IPAM plugin for plugd, written once on `plugd-plugin-sdk` and packaged twice: this
//! crate is the wasm component (`plugd_example_ipam.wasm`), `native/` the static binary. The
//! driver is [`FilePools`].

mod driver;

pub use driver::FilePools;

plugd_plugin_sdk::export_ipam_driver!(FilePools, FilePools::from_env());
