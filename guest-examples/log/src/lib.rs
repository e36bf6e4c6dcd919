//! An example log driver for plugd, written once on `plugd-plugin-sdk` and packaged twice: this
//! crate is the wasm component (`plugd_example_log.wasm`), `native/` the static binary. The
//! driver is [`FileLogs`].

mod driver;

pub use driver::FileLogs;

plugd_plugin_sdk::export_log_driver!(FileLogs, FileLogs::from_env());
