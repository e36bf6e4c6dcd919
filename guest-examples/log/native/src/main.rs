//! `plugd-example-log`: the example log driver as a native plugin binary, serving Docker's plugin
//! protocol on `/run/docker/plugins/log.sock` (`Interface.Socket` of `config-native.json`;
//! `plugd_plugin_sdk::socket_path` lists the overrides). The SDK reads each FIFO dockerd names
//! and calls the driver with batches, as plugd's wasm host does for the component.

#[cfg(target_arch = "wasm32")]
compile_error!(
    "plugd-example-log-native is the native packaging; for wasm32 build plugd-example-log"
);

// The driver lives in the wasm crate, one copy of the logic for both packagings; it is included
// rather than depended on because that crate is a `cdylib`.
#[path = "../../src/driver.rs"]
#[allow(dead_code)]
mod driver;

use std::process::ExitCode;

fn main() -> ExitCode {
    plugd_plugin_sdk::run_log_driver(driver::FileLogs::from_env(), "log.sock")
}
